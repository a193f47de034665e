//! reliability scenario 4: Hostile requests over raw sockets

use super::*;
use std::net::{IpAddr, Ipv4Addr};
use subset_router_core::request::OwnedRequest;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Want {
    /// 200, routed by the filter to exactly this subset (a rule's, or the fixed default `v1`
    /// when no rule may match).
    Routed(&'static str),
    /// Routed by the sticky rule (`/sticky`, v1/v2 50/50): every repetition on one subset.
    Sticky,
    /// The sticky rule without its key: random between its subsets v1 and v2.
    StickySplit,
    /// Envoy itself refuses it (this status) before any filter runs.
    EnvoyRefuses(u16),
}

/// The subsets of the hostile config's sticky split.
pub(super) const STICKY_SUBSETS: [&str; 2] = ["v1", "v2"];

pub(super) fn raw(start: impl AsRef<[u8]>, host: Option<&str>, headers: &[u8]) -> Vec<u8> {
    let mut v = start.as_ref().to_vec();
    v.extend_from_slice(b"\r\n");
    if let Some(h) = host {
        v.extend_from_slice(format!("host: {h}\r\n").as_bytes());
    }
    v.extend_from_slice(headers);
    v.extend_from_slice(b"\r\n");
    v
}

pub(super) fn hostile_cases() -> Vec<(&'static str, Vec<u8>, Want)> {
    use Want::*;
    let h = Some("subset-router.test");
    let get = "GET / HTTP/1.1";
    let big = "a".repeat(60 * 1024);
    let cookies100: Vec<String> = (0..100).map(|i| format!("c{i}=v{i}")).collect();
    let cookie_headers: String = cookies100
        .iter()
        .map(|c| format!("cookie: {c}\r\n"))
        .collect();
    let query: String = (0..8000).map(|i| format!("p{i}={i}&")).collect();
    let repeated: String = (0..400).map(|i| format!("x-rep: {i}\r\n")).collect();
    vec![
        (
            "60 KiB header value",
            raw(get, h, format!("x-big: {big}\r\n").as_bytes()),
            Routed("v1"),
        ),
        (
            "60 KiB user-agent through a regex rule",
            raw(get, h, format!("user-agent: debug{big}\r\n").as_bytes()),
            Routed("v2"),
        ),
        (
            "100 cookies in one header (rule on c99)",
            raw(
                get,
                h,
                format!("cookie: {}\r\n", cookies100.join("; ")).as_bytes(),
            ),
            Routed("v2"),
        ),
        (
            "100 cookie headers (rule on c99)",
            raw(get, h, cookie_headers.as_bytes()),
            Routed("v2"),
        ),
        (
            "non-UTF-8 header values (regex rule must not match)",
            raw(
                get,
                h,
                b"x-bin: \xff\xfe\x80\x81\r\nuser-agent: \xc3\x28debug\r\n",
            ),
            Routed("v1"),
        ),
        (
            "non-UTF-8 sticky cookie key",
            raw(
                "GET /sticky HTTP/1.1",
                h,
                b"cookie: uid=\xff\xfe\x80abc\r\n",
            ),
            Sticky,
        ),
        (
            "non-UTF-8 after percent-decoding",
            raw("GET /?debug=%ff%fe HTTP/1.1", h, b""),
            Routed("v1"),
        ),
        (
            "malformed cookie header (c99 quoted, padded)",
            raw(
                get,
                h,
                b"cookie: ;;;=;==a; ;uid=\"unterminated; =; a==b=c;\t; c99 = \"v99\" ;\r\n",
            ),
            Routed("v2"),
        ),
        (
            "malformed cookie header (no pairs)",
            raw(get, h, b"cookie: =;;;==;\"\";uid;;=x;\"\r\n"),
            Routed("v1"),
        ),
        (
            "huge query string (8,000 params, ~85 KB, debug=1 last)",
            raw(format!("GET /?{query}debug=1 HTTP/1.1"), h, b""),
            Routed("v3"),
        ),
        (
            "percent-encoding errors, then debug=%31",
            raw("GET /%zz/%/a%?x=%&y=%4&z=%ZZ&debug=%31 HTTP/1.1", h, b""),
            Routed("v3"),
        ),
        (
            "percent-encoded parameter name de%62ug=1",
            raw("GET /?de%62ug=1 HTTP/1.1", h, b""),
            Routed("v3"),
        ),
        (
            "truncated escape debug=%3",
            raw("GET /?debug=%3 HTTP/1.1", h, b""),
            Routed("v1"),
        ),
        (
            "NUL from %00 in a value",
            raw("GET /?debug=1%00 HTTP/1.1", h, b""),
            Routed("v1"),
        ),
        (
            "percent-encoded non-UTF-8 path",
            raw("GET /caf%E9/%FF/%C3%28?debug=%E9 HTTP/1.1", h, b""),
            Routed("v1"),
        ),
        (
            "raw non-UTF-8 bytes in the path",
            raw(b"GET /caf\xe9/\xff HTTP/1.1", h, b""),
            EnvoyRefuses(400),
        ),
        (
            "empty Host (empty :authority)",
            raw(get, Some(""), b""),
            Routed("v1"),
        ),
        (
            "Host with port and trailing dot (*.example.com)",
            raw(get, Some("api.example.com.:8080"), b""),
            Routed("v3"),
        ),
        (
            "absolute-form URI",
            raw(
                "GET http://api.example.com/x HTTP/1.1",
                Some("api.example.com"),
                b"",
            ),
            Routed("v3"),
        ),
        (
            "HTTP/1.0 with Host",
            raw("GET / HTTP/1.0", h, b""),
            Routed("v1"),
        ),
        (
            "400 repeated headers",
            raw(get, h, repeated.as_bytes()),
            Routed("v1"),
        ),
        (
            "8 KiB header name",
            raw(get, h, format!("x-{}: 1\r\n", "n".repeat(8190)).as_bytes()),
            Routed("v1"),
        ),
        (
            "whitespace-only user-agent",
            raw(get, h, b"user-agent: \t  \t\r\n"),
            Routed("v1"),
        ),
        (
            "trusted header from outside sourceCidrs",
            raw(get, h, b"x-trusted: 1\r\n"),
            Routed("v1"),
        ),
        (
            "sticky rule without its cookie",
            raw("GET /sticky/x HTTP/1.1", h, b""),
            StickySplit,
        ),
        (
            "missing :authority: HTTP/1.0 without Host",
            raw("GET / HTTP/1.0", None, b""),
            EnvoyRefuses(400),
        ),
        (
            "missing :authority: HTTP/1.1 without Host",
            raw(get, None, b""),
            EnvoyRefuses(400),
        ),
        (
            "NUL byte in a header value",
            raw(get, h, b"x-nul: a\x00b\r\n"),
            EnvoyRefuses(400),
        ),
        (
            "space before the colon",
            raw(get, h, b"user-agent : debug\r\n"),
            EnvoyRefuses(400),
        ),
    ]
}

pub(super) const HOSTILE_REPEAT: usize = 3;

pub(super) fn hostile_requests(cx: &mut Ctx) -> Result<(), String> {
    let plugin = r#"{
      "responseHeader": "x-routed-subset",
      "rules": [
        {"name": "debug-ua", "match": {"headers": [{"name": "user-agent", "regex": "(?i)debug.*"}]}, "route": {"subset": "v2"}},
        {"name": "cookie", "match": {"cookies": [{"name": "c99", "exact": "v99"}]}, "route": {"subset": "v2"}},
        {"name": "query", "match": {"query": [{"name": "debug", "exact": "1"}]}, "route": {"subset": "v3"}},
        {"name": "hosts", "match": {"hosts": ["*.example.com"]}, "route": {"subset": "v3"}},
        {"name": "trusted", "match": {"sourceCidrs": ["192.0.2.0/24"], "headers": [{"name": "x-trusted", "present": true}]},
         "route": {"subset": "v3"}},
        {"name": "lan", "match": {"pathPrefix": "/lan/", "sourceCidrs": ["127.0.0.0/8"]}, "route": {"subset": "v2"}},
        {"name": "one-host", "match": {"pathPrefix": "/host/", "sourceCidrs": ["127.0.0.2/32"]}, "route": {"subset": "v3"}},
        {"name": "by-ip", "match": {"pathPrefix": "/by-ip/"},
         "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}], "stickyBy": {"sourceIp": true}}},
        {"name": "sticky", "match": {"pathPrefix": "/sticky"},
         "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}], "stickyBy": {"cookie": "uid"}}},
        {"name": "canary", "match": {"pathPrefix": "/after/"},
         "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}}
      ],
      "default": {"subset": "v1"}
    }"#;
    // Every request here that no rule may match falls to the fixed default, v1, so its answer is
    // exact: a wrong match of a header, cookie, query, host or trusted rule answers v2 or v3 (the
    // splits, which also hold v1, only match /sticky, /by-ip/ and /after/, paths those requests
    // avoid; so do the source-address rules' /lan/ and /host/).
    let envoy = cx.start("hostile", plugin)?;
    let ex = Expect {
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let health_before = health(&envoy)?;
    let dec_before = decisions(&envoy.stats("subset_router")?);
    let cases = hostile_cases();
    let mut routed_expected = 0u64;
    let mut bad = Vec::new();
    let mut sent = 0u64;
    for (label, bytes, want) in &cases {
        let mut seen = Vec::new();
        for _ in 0..HOSTILE_REPEAT {
            sent += 1;
            let r = one_shot(envoy.front(), bytes, Duration::from_secs(10));
            let got = match &r {
                Ok(resp) => match ex.check(resp) {
                    Ok(s) => s,
                    Err(e) => format!("{} ({e})", resp.status),
                },
                Err(e) => format!("transport error: {e}"),
            };
            let ok = match want {
                Want::Routed(s) => got == *s,
                Want::Sticky | Want::StickySplit => STICKY_SUBSETS.contains(&got.as_str()),
                Want::EnvoyRefuses(code) => r.as_ref().is_ok_and(|x| x.status == *code),
            };
            if !matches!(want, Want::EnvoyRefuses(_)) {
                routed_expected += 1;
            }
            if !ok {
                bad.push(format!("{label}: want {want:?}, got {got}"));
            }
            seen.push(got);
        }
        let distinct: BTreeSet<&String> = seen.iter().collect();
        if *want == Want::Sticky && distinct.len() != 1 {
            bad.push(format!("{label}: sticky key landed on {distinct:?}"));
        }
        println!(
            "      {label} ({} bytes): {}",
            bytes.len(),
            distinct
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    cx.row(
        &format!("4 hostile: {} kinds x{HOSTILE_REPEAT} over raw sockets", cases.len()),
        "each as specified: 200 and routed by the rules (exact subset where a rule decides), or Envoy's own 400 before any filter",
        &if bad.is_empty() { format!("all {} as specified", cases.len() * HOSTILE_REPEAT) } else { format!("{} wrong; first: {}", bad.len(), bad[0]) },
        bad.is_empty(),
    );
    for b in bad.iter().skip(1).take(10) {
        println!("      also: {b}");
    }
    let dec_mid = decisions(&envoy.stats("subset_router")?);
    cx.row(
        "4 hostile: filter decisions",
        &format!(
            "+{routed_expected} (one per request that reached the filter, 0 for Envoy's 400s)"
        ),
        &format!("+{}", dec_mid - dec_before),
        dec_mid - dec_before == routed_expected,
    );

    sent += source_address_rules(cx, &envoy, plugin, &ex)?;

    // Later requests still route with the configured split.
    let mut c = envoy.client();
    let after = send(&mut c, 1000, &ex, |i| (format!("/after/{i}"), vec![]));
    sent += 1000;
    let (lo, hi) = binomial_bounds(1000, 0.10);
    let v2 = after.get("v2");
    cx.row(
        "4 hostile: 1,000 normal requests afterwards",
        &format!("all 200, canary v2 10% [{lo}..{hi}]"),
        &after.describe(&["v1", "v2"]),
        after.errors == 0 && v2 >= lo && v2 <= hi && after.get("v3") == 0,
    );
    cx.count(sent, bad.len() as u64 + after.errors);

    let health_after = health(&envoy)?;
    let delta = |k: &str| {
        health_after.get(k).copied().unwrap_or(0) as i64
            - health_before.get(k).copied().unwrap_or(0) as i64
    };
    let vm_keys: Vec<&String> = health_after
        .keys()
        .filter(|k| {
            k.contains("runtime.v8.") || k.contains("vm_reload") || k.ends_with("wasm_vm_count")
        })
        .collect();
    let vm_changes: Vec<String> = vm_keys
        .iter()
        .filter(|k| delta(k) != 0)
        .map(|k| format!("{k} {:+}", delta(k)))
        .collect();
    let rq5xx = delta("http.front.downstream_rq_5xx");
    let log_fail = filter_failure_lines(&envoy.logs());
    let host_failed = health_after
        .iter()
        .filter(|(k, _)| k.ends_with("subset_router.host_call_failed"))
        .map(|(k, _)| delta(k))
        .sum::<i64>();
    let shown: Vec<String> = vm_keys
        .iter()
        .map(|k| format!("{}={}", k.trim_start_matches("wasm."), health_after[*k]))
        .collect();
    // The Wasm build has VM counters that a failure or reload moves; the dynamic module has
    // none (it cannot be reloaded apart from Envoy): there, a failure shows in the log and in
    // host_call_failed.
    let vm_ok = match cx.env.build {
        FilterBuild::Wasm(_) => vm_changes.is_empty() && !vm_keys.is_empty(),
        FilterBuild::Native(_) => vm_keys.is_empty(),
    };
    cx.row(
        &format!("4 hostile: filter health ({} build: stats, log)", cx.env.build.name()),
        "no VM failure/reload (wasm.* VM counters unchanged), host_call_failed +0, 0 front 5xx, \
         no filter error in the log",
        &format!(
            "{}; changed: {}; host_call_failed {host_failed:+}; front 5xx {rq5xx}; filter error lines {}{}",
            shown.join(" "),
            if vm_changes.is_empty() { "none".to_string() } else { vm_changes.join(", ") },
            log_fail.len(),
            log_fail.first().map(|l| format!(" (first: {l})")).unwrap_or_default()
        ),
        vm_ok && host_failed == 0 && rq5xx == 0 && log_fail.is_empty(),
    );
    cx.figure(
        "hostile requests sent (incl. 1,000 afterwards) / wrong",
        format!("{sent} / {}", bad.len()),
    );
    Ok(())
}

/// Client addresses for the source-address rules: all on the loopback (127.0.0.0/8), where Envoy
/// (native, or in a container on the host's network) sees each as the peer address.
pub(super) const SOURCES: [Ipv4Addr; 8] = [
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
    Ipv4Addr::new(127, 0, 0, 5),
    Ipv4Addr::new(127, 0, 0, 6),
    Ipv4Addr::new(127, 0, 0, 7),
    Ipv4Addr::new(127, 0, 0, 8),
];

/// Requests per source address and path, each on a new connection (a new source port).
pub(super) const PER_SOURCE: u64 = 12;

/// The hostile config's source-address rules with real peer addresses: `lan` (`sourceCidrs`
/// 127.0.0.0/8 -> v2) takes every source; `one-host` (127.0.0.2/32 -> v3) only 127.0.0.2, the
/// others fall to the default v1; `by-ip` (v1/v2 50/50 `stickyBy` `sourceIp`) puts each source on one subset, the one the
/// filter's own core computes for that address. Exact counts; the decision counters moved by
/// exactly these requests. Returns the requests sent.
fn source_address_rules(
    cx: &mut Ctx,
    envoy: &Envoy,
    plugin: &str,
    ex: &Expect,
) -> Result<u64, String> {
    let router = subset_router_core::load(plugin.as_bytes())
        .map_err(|e| format!("the core refuses the hostile config: {e:?}"))?;
    let mut rng = subset_router_core::WyRand::new(1);
    let core_by_ip = |src: Ipv4Addr, rng: &mut subset_router_core::WyRand| {
        let req = OwnedRequest::new()
            .header(":path", "/by-ip/x")
            .header(":method", "GET")
            .header(":authority", "subset-router.test")
            .source(IpAddr::V4(src));
        router
            .decide(&req, rng)
            .filter(|d| d.rule == "by-ip")
            .map(|d| d.target.subset.clone())
            .unwrap_or_else(|| "(not the by-ip rule)".into())
    };
    let before = envoy.stats("subset_router")?;
    let mut sent = 0u64;
    // (path, source, extra headers) -> what each of PER_SOURCE fresh connections was served by.
    let mut send = |path: &str, src: Ipv4Addr, headers: &[(&str, &str)]| {
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        for _ in 0..PER_SOURCE {
            sent += 1;
            let got = match Client::new(envoy.front())
                .from_source(src)
                .get(path, headers)
            {
                Ok(r) => ex
                    .check(&r)
                    .unwrap_or_else(|e| format!("{} ({e})", r.status)),
                Err(e) => format!("transport error: {e}"),
            };
            *seen.entry(got).or_default() += 1;
        }
        seen
    };
    let all_on = |seen: &BTreeMap<String, u64>, subset: &str| {
        seen.len() == 1 && seen.get(subset) == Some(&PER_SOURCE)
    };
    let show = |seen: &BTreeMap<String, u64>| {
        seen.iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let n_all = PER_SOURCE * SOURCES.len() as u64;

    // lan: every loopback source.
    let mut lan_wrong = Vec::new();
    let mut lan_v2 = 0;
    for src in SOURCES {
        let seen = send("/lan/x", src, &[]);
        lan_v2 += seen.get("v2").copied().unwrap_or(0);
        if !all_on(&seen, "v2") {
            lan_wrong.push(format!("{src}: {}", show(&seen)));
        }
    }
    cx.row(
        "4 source address: sourceCidrs 127.0.0.0/8 -> v2 (rule lan)",
        &format!(
            "{} sources x{PER_SOURCE} (new connection each): {n_all} of {n_all} on v2",
            SOURCES.len()
        ),
        &format!(
            "{lan_v2} of {n_all} on v2{}",
            lan_wrong
                .first()
                .map(|w| format!("; first wrong: {w}"))
                .unwrap_or_default()
        ),
        lan_wrong.is_empty() && lan_v2 == n_all,
    );

    // one-host: 127.0.0.2 only.
    let mut host_rows = Vec::new();
    let mut host_ok = true;
    let (mut v3, mut v1) = (0, 0);
    for src in SOURCES {
        let want = if src == SOURCES[1] { "v3" } else { "v1" };
        let seen = send("/host/x", src, &[]);
        v3 += seen.get("v3").copied().unwrap_or(0);
        v1 += seen.get("v1").copied().unwrap_or(0);
        if !all_on(&seen, want) {
            host_ok = false;
            host_rows.push(format!("{src}: {} (want {want})", show(&seen)));
        }
    }
    let others = PER_SOURCE * (SOURCES.len() as u64 - 1);
    cx.row(
        "4 source address: sourceCidrs 127.0.0.2/32 -> v3 (rule one-host)",
        &format!(
            "from 127.0.0.2: {PER_SOURCE} of {PER_SOURCE} on v3; from the other {} sources: \
             {others} of {others} on v1 (default)",
            SOURCES.len() - 1
        ),
        &format!(
            "v3 {v3}, v1 {v1} of {n_all}{}",
            host_rows
                .first()
                .map(|w| format!("; first wrong: {w}"))
                .unwrap_or_default()
        ),
        host_ok && v3 == PER_SOURCE && v1 == others,
    );

    // A client cannot claim another source: x-forwarded-for: 127.0.0.2 from 127.0.0.1 is still
    // 127.0.0.1 (the front listener uses the peer address, use_remote_address: true).
    let forged = send("/host/x", SOURCES[0], &[("x-forwarded-for", "127.0.0.2")]);
    cx.row(
        "4 source address: a forged x-forwarded-for does not move the source",
        &format!(
            "from 127.0.0.1 with x-forwarded-for: 127.0.0.2: {PER_SOURCE} of {PER_SOURCE} on v1 \
             (default), none on v3"
        ),
        &show(&forged),
        all_on(&forged, "v1"),
    );

    // by-ip: one subset per source, the core's; both subsets among the sources.
    let mut by_ip: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut off_core = Vec::new();
    let mut by_ip_counts: BTreeMap<String, u64> = BTreeMap::new();
    for src in SOURCES {
        let want = core_by_ip(src, &mut rng);
        let seen = send("/by-ip/x", src, &[]);
        for (k, v) in &seen {
            *by_ip_counts.entry(k.clone()).or_default() += v;
        }
        if !all_on(&seen, &want) {
            off_core.push(format!("{src}: {} (core: {want})", show(&seen)));
        }
        let last = src.octets()[3].to_string();
        by_ip.entry(want).or_default().push(last);
    }
    let both = by_ip.contains_key("v1") && by_ip.contains_key("v2") && by_ip.len() == 2;
    cx.row(
        "4 source address: stickyBy sourceIp, v1/v2 50/50 (rule by-ip)",
        &format!(
            "each of {} sources: {PER_SOURCE} of {PER_SOURCE} on one subset, the core's \
             (Router::decide with that source); the sources on both subsets",
            SOURCES.len()
        ),
        &format!(
            "{} of {} sources as the core says ({}); requests {}{}",
            SOURCES.len() - off_core.len(),
            SOURCES.len(),
            by_ip
                .iter()
                .map(|(subset, ips)| format!("{subset}: 127.0.0.{{{}}}", ips.join(",")))
                .collect::<Vec<_>>()
                .join(", "),
            show(&by_ip_counts),
            off_core
                .first()
                .map(|w| format!("; first wrong: {w}"))
                .unwrap_or_default()
        ),
        off_core.is_empty() && both,
    );

    // The decision counters moved by exactly these requests.
    let after = envoy.stats("subset_router")?;
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    want.insert("rule.lan.subset.v2".into(), n_all);
    want.insert("rule.one-host.subset.v3".into(), PER_SOURCE);
    want.insert("rule.default.subset.v1".into(), others + PER_SOURCE);
    for (subset, ips) in &by_ip {
        want.insert(
            format!("rule.by-ip.subset.{subset}"),
            PER_SOURCE * ips.len() as u64,
        );
    }
    let delta = |k: &str| {
        let k = format!("subset_router.{k}");
        stat(&after, &k) as i64 - stat(&before, &k) as i64
    };
    let total = decisions(&after) as i64 - decisions(&before) as i64;
    let mismatched: Vec<String> = want
        .iter()
        .filter(|(k, v)| delta(k) != **v as i64)
        .map(|(k, v)| format!("{k} {:+} (want +{v})", delta(k)))
        .collect();
    cx.row(
        "4 source address: decision counters",
        &format!(
            "{}; +{} in all",
            want.iter()
                .map(|(k, v)| format!("{k} +{v}"))
                .collect::<Vec<_>>()
                .join(", "),
            sent
        ),
        &if mismatched.is_empty() {
            format!("equal; +{total} in all")
        } else {
            format!("MISMATCH: {}; +{total} in all", mismatched.join(", "))
        },
        mismatched.is_empty() && total == sent as i64,
    );
    Ok(sent)
}
