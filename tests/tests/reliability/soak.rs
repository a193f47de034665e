//! reliability scenario 5: Soak

use super::*;

pub(super) fn soak_total() -> u64 {
    std::env::var("SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// One rule of the soak config: the requests it decides (by path prefix) and its route.
pub(super) struct SoakRule {
    name: String,
    split: Vec<(&'static str, u64)>,
}

/// Soak requests carrying `user-agent: debug` (1 in `SOAK_DEBUG_EVERY`) go to the `debug` rule.
pub(super) const SOAK_DEBUG_EVERY: u64 = 17;
pub(super) const SOAK_DEBUG_SUBSET: &str = "v2";

pub(super) fn soak(cx: &mut Ctx) -> Result<(), String> {
    let total = soak_total();
    let checkpoint = total / 4; // the 50,000th of 200,000
                                // User ids: few enough that each comes back to its rule (about 2.6 requests per id and
                                // rule), so "one id, one subset" is tested; 6,666 for 200,000 requests.
    let n_ids = (total / 30).clamp(100, 10_000);
    // Rules 0..=8: svc0..svc8 (`/svc<i>/`), v2 at 5% .. 85%, sticky by header, cookie or query;
    // 9: catch-all (`/`), sticky by header, 60/30/10; 10: debug (user-agent), fixed v2, first.
    let mut rules: Vec<SoakRule> = (0..9u64)
        .map(|i| SoakRule {
            name: format!("svc{i}"),
            split: vec![("v1", 95 - i * 10), ("v2", 5 + i * 10)],
        })
        .collect();
    rules.push(SoakRule {
        name: "catch-all".into(),
        split: vec![("v1", 60), ("v2", 30), ("v3", 10)],
    });
    rules.push(SoakRule {
        name: "debug".into(),
        split: vec![(SOAK_DEBUG_SUBSET, 1)],
    });
    let (catch_all, debug) = (9usize, 10usize);
    let split_json = |r: &SoakRule| {
        r.split
            .iter()
            .map(|(s, w)| format!(r#"{{"subset": "{s}", "weight": {w}}}"#))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut json = vec![format!(
        r#"{{"name": "debug", "match": {{"headers": [{{"name": "user-agent", "exact": "debug"}}]}},
          "route": {{"subset": "{SOAK_DEBUG_SUBSET}"}}}}"#
    )];
    for (i, r) in rules.iter().enumerate().take(debug) {
        let (prefix, key) = match i {
            _ if i == catch_all => ("/".to_string(), r#"{"header": "x-user-id"}"#),
            _ => (
                format!("/svc{i}/"),
                [
                    r#"{"header": "x-user-id"}"#,
                    r#"{"cookie": "uid"}"#,
                    r#"{"query": "user"}"#,
                ][i % 3],
            ),
        };
        json.push(format!(
            r#"{{"name": "{}", "match": {{"pathPrefix": "{prefix}"}},
              "route": {{"split": [{}], "stickyBy": {key}}}}}"#,
            r.name,
            split_json(r)
        ));
    }
    let plugin = format!(
        r#"{{"rules": [{}], "default": {{"subset": "v1"}}}}"#,
        json.join(",\n")
    );
    let envoy = cx.start("soak", &plugin)?;
    let pid = envoy
        .host_pid()
        .ok_or("no host PID for the Envoy process")?;
    let rss_start = rss_kib(pid);
    let ex = Expect::default();
    let labels = vec!["v1".to_string(), "v2".to_string(), "v3".to_string()];
    let t = Instant::now();
    let load = Load::start(LoadSpec {
        addr: envoy.front(),
        threads: 32,
        total: Some(total),
        labels: labels.clone(),
        // The record's key is (rule that must decide) * n_ids + user id.
        make: Arc::new(move |seq| {
            let uid = (seq.wrapping_mul(2_654_435_761)) % n_ids;
            let svc = seq % 11;
            let path = if svc < 10 {
                format!("/svc{svc}/item?user=u{uid}")
            } else {
                format!("/other/{seq}")
            };
            let is_debug = seq % SOAK_DEBUG_EVERY == SOAK_DEBUG_EVERY - 1;
            let rule = match svc {
                _ if is_debug => debug as u64,
                0..=8 => svc,
                _ => catch_all as u64, // /svc9/ and /other/ have no rule of their own
            };
            let id = format!("u{uid}");
            let cookie = format!("session=s{seq}; uid=u{uid}");
            let mut headers = vec![("x-user-id", id.as_str()), ("cookie", cookie.as_str())];
            if is_debug {
                headers.push(("user-agent", "debug"));
            }
            (get_request(&path, &headers), (rule * n_ids + uid) as u32)
        }),
        check: Arc::new(move |r| ex.check(r)),
        checkpoints: vec![checkpoint, total],
        sample: Some(Arc::new(move || rss_kib(pid))),
    });
    let res = load.finish(false);
    let secs = t.elapsed().as_secs_f64();
    cx.count(res.sent, res.failures);
    let rss = |n: u64| {
        res.samples
            .iter()
            .find(|(c, _)| *c == n)
            .and_then(|(_, v)| *v)
    };
    let (r1, r2) = (rss(checkpoint), rss(total));
    let counts: BTreeMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                l.as_str(),
                res.records.iter().filter(|r| r.outcome == i as u16).count(),
            )
        })
        .collect();
    cx.row(
        &format!("5 soak: {total} requests, concurrency 32, 10 sticky rules + debug"),
        "no non-2xx",
        &format!(
            "{} sent in {secs:.1}s ({:.0}/s), failed {}, {counts:?}, reconnects {}{}",
            res.sent,
            res.rps(),
            res.failures,
            res.reconnects,
            res.failure_samples
                .first()
                .map(|s| format!(" (first failure: {s})"))
                .unwrap_or_default()
        ),
        res.failures == 0 && res.sent == total,
    );

    // Every response routed by the rules: per rule, the subsets each user id landed on, and
    // how many responses each subset served.
    // (subsets seen, requests) per user id and rule; responses per rule and subset.
    let mut ids: Vec<BTreeMap<u32, (BTreeSet<u16>, u32)>> = vec![BTreeMap::new(); rules.len()];
    let mut served: Vec<BTreeMap<u16, u64>> = vec![BTreeMap::new(); rules.len()];
    let mut outside = Vec::new();
    for r in res.records.iter().filter(|r| r.outcome != FAILED) {
        let (rule, uid) = ((r.key as u64 / n_ids) as usize, r.key % n_ids as u32);
        let id = ids[rule].entry(uid).or_default();
        id.0.insert(r.outcome);
        id.1 += 1;
        *served[rule].entry(r.outcome).or_default() += 1;
        let label = labels[r.outcome as usize].as_str();
        if !rules[rule].split.iter().any(|(s, _)| *s == label) {
            outside.push(format!("{} -> {label}", rules[rule].name));
        }
    }
    let debug_sent: u64 = served[debug].values().sum();
    let debug_ok: u64 = served[debug]
        .iter()
        .filter(|(o, _)| labels[**o as usize] == SOAK_DEBUG_SUBSET)
        .map(|(_, n)| n)
        .sum();
    let sticky = || ids[..debug].iter().flat_map(BTreeMap::values);
    let moved = sticky().filter(|(s, _)| s.len() > 1).count();
    let returning = sticky().filter(|(_, n)| *n > 1).count();
    let sticky_ids = sticky().count();
    cx.row(
        "5 soak: every response routed by the rules",
        &format!(
            "debug requests (1 in {SOAK_DEBUG_EVERY}) all {SOAK_DEBUG_SUBSET}; per rule, each sticky id on one subset; no subset outside its rule's split"
        ),
        &format!(
            "debug {debug_ok}/{debug_sent} on {SOAK_DEBUG_SUBSET}; ids on 2+ subsets {moved} of {sticky_ids} ({returning} seen more than once); outside their rule {}{}",
            outside.len(),
            outside.first().map(|o| format!(" (first: {o})")).unwrap_or_default()
        ),
        debug_sent > 0 && debug_ok == debug_sent && moved == 0 && outside.is_empty() && returning > 0,
    );

    // Shares: the user ids of each sticky rule split by its weights (each id counted once).
    let mut off = Vec::new();
    let mut checked = 0;
    for (i, r) in rules.iter().enumerate().take(debug) {
        let n = ids[i].len() as u64;
        let sum: u64 = r.split.iter().map(|(_, w)| w).sum();
        for (s, w) in &r.split {
            let idx = labels.iter().position(|l| l == s).unwrap_or(0) as u16;
            let got = ids[i]
                .values()
                .filter(|(o, _)| o.len() == 1 && o.contains(&idx))
                .count() as u64;
            let (lo, hi) = binomial_bounds(n, *w as f64 / sum as f64);
            checked += 1;
            if got < lo || got > hi {
                off.push(format!(
                    "{} {s}: {got} of {n} ids, want [{lo}..{hi}]",
                    r.name
                ));
            }
        }
    }
    cx.row(
        "5 soak: sticky ids per subset, per rule",
        &format!("{checked} (rule, subset) shares of ids within 4.5σ of their weights"),
        &if off.is_empty() {
            format!("all {checked} within")
        } else {
            format!("{} off: {}", off.len(), off.join("; "))
        },
        off.is_empty() && checked > 0,
    );

    // The filter's counters agree with what the responses show, per rule and subset (no key
    // was missing, nothing was spoofed: those stay 0).
    let mut expected = ExpectedStats::default();
    for (i, r) in rules.iter().enumerate() {
        for (o, n) in &served[i] {
            expected.rule(&r.name, &labels[*o as usize], *n);
        }
    }
    let printed = envoy.raw_stats()?;
    let cmp = report::compare_stats(&printed, &expected.0);
    let dec = decisions(&printed);
    cx.row(
        "5 soak: counters per rule and subset",
        &format!(
            "= responses served per rule and subset (total {total}); sticky_key_missing, spoofed 0"
        ),
        &match &cmp {
            Ok(_) => format!("equal (decisions {dec})"),
            Err(e) => format!("MISMATCH: {e}"),
        },
        cmp.is_ok() && dec == total,
    );
    let kib = |v: Option<u64>| {
        v.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or("?".into())
    };
    let growth = match (r1, r2) {
        (Some(a), Some(b)) if a > 0 => Some((b as f64 - a as f64) / a as f64 * 100.0),
        _ => None,
    };
    cx.row(
        "5 soak: Envoy RSS growth",
        &format!("< 10% from request {checkpoint} to {total}"),
        &format!(
            "start {}, at {checkpoint}: {}, at {total}: {} -> {}",
            kib(rss_start),
            kib(r1),
            kib(r2),
            growth
                .map(|g| format!("{g:+.2}%"))
                .unwrap_or("unknown".into())
        ),
        growth.is_some_and(|g| g < 10.0),
    );
    let log_fail = filter_failure_lines(&envoy.logs());
    if !log_fail.is_empty() {
        cx.row("5 soak: Envoy log", "no wasm error", &log_fail[0], false);
    }
    cx.figure(
        "soak requests / failed",
        format!("{} / {}", res.sent, res.failures),
    );
    cx.figure(
        &format!("soak RSS at {checkpoint} / {total} (KiB)"),
        format!(
            "{} / {} ({})",
            r1.map_or("?".into(), |v| v.to_string()),
            r2.map_or("?".into(), |v| v.to_string()),
            growth.map(|g| format!("{g:+.2}%")).unwrap_or("?".into())
        ),
    );
    cx.figure(
        "soak throughput",
        format!("{:.0} requests/s ({secs:.1}s)", res.rps()),
    );
    Ok(())
}
