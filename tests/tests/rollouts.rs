//! The rollout scenarios, each against the real filter in a real Envoy.
//!
//! Own `main` (harness = false): scenarios run in order, each boots the Envoy(s) its plugin
//! config needs, sends real requests, checks the split (4.5 binomial standard deviations, or
//! exact counts), then checks that the filter's counters in admin `/stats` equal what was
//! sent. A summary table is printed at the end; the exit code is non-zero if any row failed.
//!
//! Arguments not starting with `-` (or env `SCENARIO`) select scenarios by substring;
//! `--list` lists them. A scenario that does not apply to the build under test
//! (`cluster_specifier`, native only) is named in the summary as not applicable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use subset_router_it::envoy::{FilterBuild, LaunchOptions};
use subset_router_it::report::{compare_stats, judge_split};
use subset_router_it::scenarios::{send_sticky_ids, DebugRequests, DebugRouting};
use subset_router_it::suite::{self, first_line, Outcome, Suite, SuiteContext};
use subset_router_it::*;

#[path = "rollouts/cluster_specifier.rs"]
mod cluster_specifier;
use cluster_specifier::cluster_specifier;

/// Requests per statistical measurement.
const N: u64 = 2000;

struct Ctx<'a> {
    env: &'a Env,
    table: &'a mut Table,
    failed: bool,
    stats_prefix: BTreeSet<&'static str>,
    /// Scenarios that do not apply to the build under test: `(scenario, why)`, named in the
    /// summary (they neither pass nor fail).
    not_applicable: Vec<(String, String)>,
}

impl SuiteContext for Ctx<'_> {
    fn scenario_failed(&mut self, scenario: &str, observed: &str) {
        self.row(scenario, "", observed, false);
    }
}

impl Ctx<'_> {
    fn row(&mut self, scenario: &str, expected: &str, observed: &str, pass: bool) {
        self.failed |= !pass;
        self.table.push(scenario, expected, observed, pass);
    }

    /// Starts Envoy with `plugin` and checks that every counter the config declares is in
    /// `/stats` at 0 before the first request (a FAIL row otherwise).
    fn start(&mut self, name: &str, plugin: &str) -> Result<Envoy, String> {
        self.start_with(name, plugin, &LaunchOptions::default())
    }

    /// [`Ctx::start`] with a launch's options (the native build's form).
    fn start_with(
        &mut self,
        name: &str,
        plugin: &str,
        opts: &LaunchOptions,
    ) -> Result<Envoy, String> {
        let t = Instant::now();
        let e = Envoy::start_with(self.env, name, plugin, opts)?;
        println!(
            "    envoy `{name}` ready in {:.2}s (front :{}, admin :{}, dir {})",
            t.elapsed().as_secs_f64(),
            e.ports.front,
            e.ports.admin,
            e.dir.display()
        );
        match counters_at_start(&e, plugin) {
            Ok(seen) => println!("    counters at start: {seen}"),
            Err(err) => self.row(
                &format!("{name}: counters before the first request"),
                "every counter the config declares in /stats, at 0",
                &err,
                false,
            ),
        }
        Ok(e)
    }

    /// `scenario` does not apply to the build under test: said now and in the summary.
    fn not_applicable(&mut self, scenario: &str, why: &str) {
        println!(
            "    NOT APPLICABLE to the {} build: {scenario}: {why}",
            self.env.build.name()
        );
        self.not_applicable.push((scenario.into(), why.into()));
    }

    /// Split check ([`judge_split`]): every subset's count within 4.5 sd of `n * w / sum(w)`
    /// (exact when the probability is 0 or 1), and no response broke an invariant.
    fn split(&mut self, label: &str, t: &Tally, weights: &[(&str, u64)]) {
        let j = judge_split(t, weights);
        self.row(label, &j.expected, &j.observed, j.pass);
    }

    /// Exact check: every request to `subset`.
    fn all_to(&mut self, label: &str, t: &Tally, subset: &str) {
        self.split(label, t, &[(subset, 1)]);
    }

    /// Counters in `/stats` must equal `expected` (absent = 0). Adds a row only when
    /// `show` or on mismatch.
    fn stats(&mut self, envoy: &Envoy, label: &str, expected: &ExpectedStats, show: bool) {
        let res = envoy
            .raw_stats()
            .and_then(|p| compare_stats(&p, &expected.0));
        match res {
            Ok(prefix) => {
                self.stats_prefix.insert(prefix);
                if show {
                    self.row(
                        label,
                        &expected.describe(),
                        &format!("equal (printed as {prefix}subset_router.*)"),
                        true,
                    );
                } else {
                    println!("    stats ok: {}", expected.describe());
                }
            }
            Err(e) => self.row(
                label,
                &expected.describe(),
                &format!("MISMATCH: {e}"),
                false,
            ),
        }
    }
}

fn split_json(weights: &[(&str, u64)]) -> String {
    weights
        .iter()
        .map(|(s, w)| format!(r#"{{"subset":"{s}","weight":{w}}}"#))
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------------------
// 1. Dark launch
// ---------------------------------------------------------------------------------------
fn dark_launch(cx: &mut Ctx) -> Result<(), String> {
    let plugin = r#"{
      "responseHeader": "x-routed-subset",
      "rules": [
        {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
         "route": {"subset": "v2"}},
        {"name": "canary", "match": {"pathPrefix": "/"},
         "route": {"split": [{"subset": "v1", "weight": 100}, {"subset": "v2", "weight": 0}]}}
      ],
      "default": {"subset": "v1"}
    }"#;
    let envoy = cx.start("dark-launch", plugin)?;
    let mut c = envoy.client();
    let ex = Expect {
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let users = send_same(
        &mut c,
        N,
        &ex,
        "/productpage",
        &[("user-agent", "Mozilla/5.0")],
    );
    cx.split(
        "1 dark launch: v1 100 / v2 weight 0",
        &users,
        &[("v1", 100), ("v2", 0)],
    );
    let testers = send_same(&mut c, 50, &ex, "/productpage", &[("user-agent", "debug")]);
    cx.all_to("1 dark launch: testers (user-agent: debug)", &testers, "v2");
    let mut st = ExpectedStats::default();
    st.rule_tally("canary", &users)
        .rule_tally("debug", &testers);
    cx.stats(&envoy, "1 dark launch: stats", &st, false);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Debug routing: header, cookie, query
// ---------------------------------------------------------------------------------------
fn debug_routing(cx: &mut Ctx) -> Result<(), String> {
    let plugin = r#"{
      "responseHeader": "x-routed-subset",
      "rules": [
        {"name": "debug-ua", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
         "route": {"subset": "v2"}},
        {"name": "debug-cookie", "match": {"cookies": [{"name": "canary", "exact": "always"}]},
         "route": {"subset": "v2"}},
        {"name": "debug-query", "match": {"query": [{"name": "debug", "exact": "1"}]},
         "route": {"subset": "v3"}}
      ],
      "default": {"subset": "v1"}
    }"#;
    let envoy = cx.start("debug-routing", plugin)?;
    let mut c = envoy.client();
    let ex = Expect {
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let sent = DebugRouting::send(
        &mut c,
        &ex,
        &DebugRequests {
            user_agent: 200,
            other_user_agents: 300,
            cookie: 100,
            other_cookies: 100,
            query: 100,
            other_queries: 100,
        },
    );
    for (check, t, subset) in sent.checks("v3") {
        cx.all_to(&format!("2 debug: {check}"), t, subset);
    }
    let mut st = ExpectedStats::default();
    sent.add_expected(&mut st);
    cx.stats(&envoy, "2 debug: stats", &st, false);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Weighted canary steps, 75/25, red/blue
// ---------------------------------------------------------------------------------------
fn weighted(
    cx: &mut Ctx,
    label: &str,
    name: &str,
    weights: &[(&str, u64)],
    template: &str,
) -> Result<(), String> {
    let plugin = format!(
        r#"{{
      "clusterTemplate": "{template}",
      "responseHeader": "x-routed-subset",
      "rules": [
        {{"name": "canary", "match": {{"pathPrefix": "/"}}, "route": {{"split": [{}]}}}}
      ],
      "default": {{"subset": "{}"}}
    }}"#,
        split_json(weights),
        weights[0].0
    );
    let envoy = cx.start(name, &plugin)?;
    let mut c = envoy.client();
    let ex = Expect {
        cluster_template: Some(template.into()),
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let t = send(&mut c, N, &ex, |i| (format!("/reviews/{}", i % 7), vec![]));
    cx.split(label, &t, weights);
    let mut st = ExpectedStats::default();
    st.rule_tally("canary", &t);
    cx.stats(&envoy, &format!("{label}: stats"), &st, false);
    Ok(())
}

fn canary_steps(cx: &mut Ctx) -> Result<(), String> {
    let mut err = None;
    for (a, b) in [(90, 10), (80, 20), (50, 50), (0, 100)] {
        let label = format!("3 canary v1/v2 {a}/{b}");
        if let Err(e) = weighted(
            cx,
            &label,
            &format!("canary-{a}-{b}"),
            &[("v1", a), ("v2", b)],
            "{subset}",
        ) {
            cx.row(&label, "", &format!("ERROR: {}", first_line(&e)), false);
            err.get_or_insert(e);
        }
    }
    err.map_or(Ok(()), Err)
}

fn canary_75_25(cx: &mut Ctx) -> Result<(), String> {
    weighted(
        cx,
        "3 VPC Lattice v1/v2 25/75",
        "lattice-25-75",
        &[("v1", 25), ("v2", 75)],
        "{subset}",
    )
}

fn red_blue(cx: &mut Ctx) -> Result<(), String> {
    weighted(
        cx,
        "3 App Mesh red/blue 50/50 color-{subset}",
        "red-blue",
        &[("red", 50), ("blue", 50)],
        "color-{subset}",
    )
}

// ---------------------------------------------------------------------------------------
// 4. Three-way split
// ---------------------------------------------------------------------------------------
fn three_way(cx: &mut Ctx) -> Result<(), String> {
    weighted(
        cx,
        "4 three-way v1/v2/v3 60/30/10",
        "three-way",
        &[("v1", 60), ("v2", 30), ("v3", 10)],
        "{subset}",
    )
}

// ---------------------------------------------------------------------------------------
// 5. Sticky canary with a weight ramp across Envoy restarts
// ---------------------------------------------------------------------------------------
const IDS: u64 = 500;
const REPEAT: u64 = 5;

/// Sends every id REPEAT times (interleaved) and returns id -> subset, or the ids that
/// were not consistent.
fn sticky_round(
    cx: &mut Ctx,
    canary: u64,
    label: &str,
    name: &str,
) -> Result<BTreeMap<u64, String>, String> {
    let plugin = format!(
        r#"{{
      "responseHeader": "x-routed-subset",
      "rules": [
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{}], "stickyBy": {{"header": "x-user-id"}}}}}}
      ],
      "default": {{"subset": "v1"}}
    }}"#,
        split_json(&[("v1", 100 - canary), ("v2", canary)])
    );
    let envoy = cx.start(name, &plugin)?;
    let mut c = envoy.client();
    let ex = Expect {
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let sticky = send_sticky_ids(&mut c, &ex, "/cart", IDS, REPEAT);
    let (seen, all) = (sticky.subsets, sticky.all);
    let inconsistent = seen.values().filter(|s| s.len() != 1).count();
    let map: BTreeMap<u64, String> = seen
        .iter()
        .filter(|(_, s)| s.len() == 1)
        .map(|(id, s)| (*id, s.iter().next().unwrap().clone()))
        .collect();
    let on_v2 = map.values().filter(|s| *s == "v2").count() as u64;
    let p = canary as f64 / 100.0;
    let (lo, hi) = binomial_bounds(IDS, p);
    let pass = all.errors == 0
        && inconsistent == 0
        && map.len() as u64 == IDS
        && on_v2 >= lo
        && on_v2 <= hi;
    let mut obs = format!(
        "v2 ids {on_v2} ({:.1}%), requests {}; ids not always on one subset: {inconsistent}",
        100.0 * on_v2 as f64 / IDS as f64,
        all.describe(&["v1", "v2"])
    );
    if let Some(e) = all.error_samples.first() {
        obs.push_str(&format!(" -- first error: {e}"));
    }
    cx.row(
        label,
        &format!("{IDS} ids x{REPEAT}: v2 {canary}% of ids [{lo}..{hi}], each id 1 subset"),
        &obs,
        pass,
    );
    let mut st = ExpectedStats::default();
    st.rule_tally("canary", &all);
    cx.stats(&envoy, &format!("{label}: stats"), &st, false);
    Ok(map)
}

fn sticky_ramp(cx: &mut Ctx) -> Result<(), String> {
    let first = sticky_round(cx, 10, "5 sticky 90/10", "sticky-10")?;
    // A new Envoy with the same config: the same users land on the same subsets.
    let again = sticky_round(cx, 10, "5 sticky 90/10 after restart", "sticky-10-restart")?;
    let changed = first
        .iter()
        .filter(|(id, s)| again.get(id) != Some(s))
        .count();
    cx.row(
        "5 sticky: restart keeps every id",
        "0 ids change subset",
        &format!("{changed} of {} changed", first.len()),
        changed == 0 && first.len() as u64 == IDS,
    );
    let mut prev = again;
    let mut prev_w = 10;
    for w in [20, 50] {
        let cur = sticky_round(
            cx,
            w,
            &format!("5 sticky {}/{w}", 100 - w),
            &format!("sticky-{w}"),
        )?;
        let back = prev
            .iter()
            .filter(|(id, s)| *s == "v2" && cur.get(id).map(|c| c != "v2").unwrap_or(true))
            .count();
        let moved_in = prev
            .iter()
            .filter(|(id, s)| *s == "v1" && cur.get(id).map(|c| c == "v2").unwrap_or(false))
            .count();
        cx.row(
            &format!("5 sticky ramp {prev_w}% -> {w}%"),
            "0 ids leave v2 (keys only move into the canary)",
            &format!("{back} left v2, {moved_in} moved v1 -> v2"),
            back == 0,
        );
        prev = cur;
        prev_w = w;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. Istio style: subsetHeader drives a header-matched route, clusterHeader off
// ---------------------------------------------------------------------------------------
fn istio_subset_header(cx: &mut Ctx) -> Result<(), String> {
    let plugin = r#"{
      "clusterHeader": null,
      "subsetHeader": "x-subset",
      "responseHeader": "x-routed-subset",
      "rules": [
        {"name": "stable-pin", "match": {"pathPrefix": "/stable"}, "route": {"subset": "v1"}},
        {"name": "reviews", "match": {"pathPrefix": "/"},
         "route": {"split": [{"subset": "v1", "weight": 80}, {"subset": "v2", "weight": 20}]}}
      ],
      "default": {"subset": "v1"}
    }"#;
    let envoy = cx.start("istio-subset-header", plugin)?;
    let mut c = envoy.client();
    // Every response: upstream saw x-subset = its own subset, and no x-upstream-cluster.
    let ex = Expect {
        cluster_template: None,
        subset_header: true,
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let t = send(&mut c, N, &ex, |i| (format!("/reviews/{}", i % 5), vec![]));
    cx.split(
        "6 Istio x-subset route 80/20, clusterHeader off",
        &t,
        &[("v1", 80), ("v2", 20)],
    );
    // A client cannot pick the subset by sending x-subset itself.
    let spoof = send_same(&mut c, 200, &ex, "/stable", &[("x-subset", "v2")]);
    cx.all_to("6 Istio: client-sent x-subset: v2 ignored", &spoof, "v1");
    let mut st = ExpectedStats::default();
    st.rule_tally("reviews", &t)
        .rule_tally("stable-pin", &spoof)
        .spoofed(spoof.total);
    cx.stats(&envoy, "6 Istio: stats", &st, false);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 7. Stats: counters equal requests, per rule and subset; spoofing; sticky key missing; the
//    same numbers as labelled families in /stats/prometheus (a dotted subset and a guard too)
// ---------------------------------------------------------------------------------------
fn stats(cx: &mut Ctx) -> Result<(), String> {
    let plugin = r#"{
      "rules": [
        {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
         "route": {"subset": "v2"}},
        {"name": "sticky", "match": {"pathPrefix": "/sticky"},
         "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}],
                   "stickyBy": {"header": "x-user-id"}}},
        {"name": "canary", "match": {"pathPrefix": "/app", "methods": ["GET"]},
         "route": {"split": [{"subset": "v1", "weight": 70}, {"subset": "v2", "weight": 30}]}},
        {"name": "dotted", "match": {"pathPrefix": "/dotted"},
         "route": {"split": [{"subset": "v1.0-rc.1", "weight": 1}]}}
      ],
      "guards": [{"subset": "v1.0-rc.1", "maxErrorPercent": 50}],
      "default": {"subset": "v3"}
    }"#;
    // `dotted`: a subset name with dots (allowed; rule names are one stat segment) must still
    // be one `subset` label in /stats/prometheus, for the decisions and the guard stats. No
    // cluster has that name: Envoy answers 404 (NC), which the guard does not count as an error.
    let envoy = cx.start("stats", plugin)?;
    let mut c = envoy.client();
    let ex = Expect::default();
    // (`start` checks this for every scenario; shown here as a row of its own.)
    let at_start = counters_at_start(&envoy, plugin);
    cx.row(
        "7 stats: before any request",
        "every counter of every rule/subset + spoofed_header_removed + sticky_key_missing + host_call_failed in /stats, at 0",
        at_start.as_ref().unwrap_or_else(|e| e),
        at_start.is_ok(),
    );

    let debug = send_same(&mut c, 100, &ex, "/app", &[("user-agent", "debug")]);
    let sticky = send(&mut c, 300, &ex, |i| {
        (
            "/sticky".into(),
            owned_headers(&[("x-user-id", &format!("u{}", i % 100))]),
        )
    });
    let sticky_nokey = send_same(&mut c, 50, &ex, "/sticky/x", &[]);
    let canary = send_same(&mut c, 500, &ex, "/app/home", &[]);
    let dflt = send_same(&mut c, 100, &ex, "/other", &[]);
    let dotted_n = 40;
    let mut dotted_codes: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..dotted_n {
        let k = match c.get("/dotted", &[]) {
            Ok(r) => format!("{} {}", r.status, r.header("x-front-flags").unwrap_or("-")),
            Err(e) => format!("error {e}"),
        };
        *dotted_codes.entry(k).or_default() += 1;
    }
    // Spoofing: a client names a cluster no rule selects. It must never get there, the
    // header must be replaced (upstream sees only the filter's value) and counted.
    let spoof_canary = send_same(
        &mut c,
        100,
        &ex,
        "/app/spoof",
        &[("x-upstream-cluster", "internal-admin")],
    );
    let spoof_default = send_same(
        &mut c,
        50,
        &ex,
        "/other",
        &[
            ("X-Upstream-Cluster", "internal-admin"),
            ("x-upstream-cluster", "v1"),
        ],
    );
    let mut spoof_all = spoof_canary.clone();
    spoof_all.merge(&spoof_default);
    cx.row(
        "7 spoofed x-upstream-cluster: internal-admin",
        "0 reach internal-admin; routed by rules",
        &spoof_all.describe(&["v1", "v2", "v3"]),
        spoof_all.errors == 0
            && spoof_all.get("internal-admin") == 0
            && spoof_default.get("v3") == 50,
    );
    cx.all_to("7 stats: default route", &dflt, "v3");
    cx.all_to("7 stats: debug rule", &debug, "v2");
    cx.row(
        "7 stats: dotted subset v1.0-rc.1 (no such cluster)",
        &format!("{dotted_n} x 404 NC"),
        &codes_str(&dotted_codes),
        dotted_codes.get("404 NC").copied() == Some(dotted_n) && dotted_codes.len() == 1,
    );

    let mut st = ExpectedStats::default();
    st.rule_tally("debug", &debug)
        .rule_tally("sticky", &sticky)
        .rule_tally("sticky", &sticky_nokey)
        .rule_tally("canary", &canary)
        .rule_tally("canary", &spoof_canary)
        .rule_tally("default", &dflt)
        .rule_tally("default", &spoof_default)
        .rule("dotted", "v1.0-rc.1", dotted_n)
        .spoofed(spoof_all.total)
        .sticky_missing(sticky_nokey.total);
    // What the guard observes: every dotted request (a split's), none an error (404 is not a
    // 5xx), so it never opens and counts them all; merged once a second, so waited for.
    let observed = "subset_router.guard.v1.0-rc.1.requests";
    st.0.insert(observed.into(), dotted_n);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline
        && envoy.raw_stats().is_ok_and(|m| {
            m.iter()
                .find(|(k, _)| k.ends_with(observed))
                .map(|(_, v)| *v)
                != Some(dotted_n)
        })
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let errors = debug.errors + sticky.errors + sticky_nokey.errors + canary.errors + dflt.errors;
    if errors > 0 {
        cx.row(
            "7 stats: requests",
            "all routed",
            &format!("{errors} errors"),
            false,
        );
    }
    cx.stats(&envoy, "7 stats: counters = requests sent", &st, true);
    stats_prometheus(cx, &envoy, plugin, &st, &["v1.0-rc.1"]);
    Ok(())
}

fn codes_str(codes: &BTreeMap<String, u64>) -> String {
    codes
        .iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The stats scenario through admin `/stats/prometheus`, where the config's `stats_tags` make
/// the decisions one family labelled `rule` and `subset` (`subset_router_rule_subset` for the
/// Wasm build, `envoy_dynamicmodulescustom_subset_router_rule_subset` for the dynamic module)
/// and the guard stats one family each labelled `subset`. Two rows: every `{rule, subset}`
/// the config declares (0 included) equals the requests sent, and no other name of the filter
/// is printed (a regex that missed a stat leaves a name per rule and subset); the guard
/// families, `spoofed_header_removed` and `sticky_key_missing` are labelled and exact.
fn stats_prometheus(
    cx: &mut Ctx,
    envoy: &Envoy,
    plugin: &str,
    st: &ExpectedStats,
    guarded: &[&str],
) {
    let p = prometheus::filter_prefix(cx.env.build.stat_prefix());
    let scrape = match prometheus::scrape(envoy) {
        Ok(s) => s,
        Err(e) => {
            cx.row("7 stats: /stats/prometheus", "a parsable scrape", &e, false);
            return;
        }
    };
    let decisions = format!("{p}subset_router_rule_subset");
    let mut expected: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for counter in report::declared_counters(plugin).unwrap_or_default() {
        if let Some((rule, subset)) = counter
            .strip_prefix("subset_router.rule.")
            .and_then(|r| r.split_once(".subset."))
        {
            let n = st.0.get(&counter).copied().unwrap_or(0);
            expected.insert(vec![rule.to_string(), subset.to_string()], n);
        }
    }
    let families: Vec<String> = [
        "rule_subset",
        "rule_ramp_ppm",
        "guard_tripped",
        "guard_diverted",
        "guard_undivertable",
        "guard_open",
        "guard_requests",
        "guard_errors",
        "guard_slow",
        "spoofed_header_removed",
        "sticky_key_missing",
        "host_call_failed",
    ]
    .iter()
    .map(|f| format!("{p}subset_router_{f}"))
    .collect();
    let family_refs: Vec<&str> = families.iter().map(String::as_str).collect();
    let leftovers = prometheus::unlabelled_leftovers(&scrape, &p, &family_refs);
    let compared = prometheus::compare_family(&scrape, &decisions, &["rule", "subset"], &expected);
    let pass = compared.is_ok() && leftovers.is_empty();
    let observed = match (&compared, leftovers.is_empty()) {
        (Ok(m), true) => format!("equal: {m}; no other {p}subset_router_* name"),
        (Ok(_), false) => format!("names left unlabelled: {leftovers:?}"),
        (Err(e), _) => format!("MISMATCH: {e}; unlabelled names: {leftovers:?}"),
    };
    let exp = expected
        .iter()
        .map(|(k, v)| format!("{}/{}={v}", k[0], k[1]))
        .collect::<Vec<_>>()
        .join(" ");
    cx.row(
        "7 stats: /stats/prometheus {rule,subset} = requests sent",
        &format!("{decisions}{{rule,subset}}: {exp}"),
        &observed,
        pass,
    );

    // Guard stats labelled `subset` (dotted names whole), and the unlabelled totals.
    let mut problems = Vec::new();
    for what in [
        "tripped",
        "diverted",
        "undivertable",
        "open",
        "requests",
        "errors",
        "slow",
    ] {
        let family = format!("{p}subset_router_guard_{what}");
        let want: BTreeMap<Vec<String>, u64> = guarded
            .iter()
            .map(|s| {
                let n = st.0.get(&format!("subset_router.guard.{s}.{what}"));
                (vec![s.to_string()], n.copied().unwrap_or(0))
            })
            .collect();
        if let Err(e) = prometheus::compare_family(&scrape, &family, &["subset"], &want) {
            problems.push(e);
        }
    }
    for (what, n) in [
        (
            "spoofed_header_removed",
            "subset_router.spoofed_header_removed",
        ),
        ("sticky_key_missing", "subset_router.sticky_key_missing"),
        ("host_call_failed", "subset_router.host_call_failed"),
    ] {
        let family = format!("{p}subset_router_{what}");
        let want = st.0.get(n).copied().unwrap_or(0) as f64;
        match scrape.value(&family, &[]) {
            Some(v) if v == want => {}
            got => problems.push(format!("{family}{{}} {got:?}, expected {want}")),
        }
    }
    for (family, kind) in [
        (decisions.clone(), "counter"),
        (format!("{p}subset_router_guard_open"), "gauge"),
    ] {
        if scrape.types.get(&family).map(String::as_str) != Some(kind) {
            problems.push(format!(
                "# TYPE {family} {:?}, expected {kind}",
                scrape.types.get(&family)
            ));
        }
    }
    let spoofed =
        st.0.get("subset_router.spoofed_header_removed")
            .copied()
            .unwrap_or(0);
    let missing =
        st.0.get("subset_router.sticky_key_missing")
            .copied()
            .unwrap_or(0);
    cx.row(
        "7 stats: /stats/prometheus guard + totals",
        &format!(
            "{p}subset_router_guard_{{tripped,diverted,undivertable,open,errors,slow}}{{subset=\"{}\"}}=0 \
             (counter/gauge), …_guard_requests = its split requests, spoofed_header_removed={spoofed} \
             sticky_key_missing={missing} host_call_failed=0",
            guarded.join("|")
        ),
        &if problems.is_empty() {
            "equal".to_string()
        } else {
            format!("MISMATCH: {}", problems.join("; "))
        },
        problems.is_empty(),
    );
}

// ---------------------------------------------------------------------------------------
// 8. A subset whose cluster does not exist
// ---------------------------------------------------------------------------------------
fn unknown_cluster(cx: &mut Ctx) -> Result<(), String> {
    let plugin = r#"{
      "rules": [{"name": "typo", "match": {"pathPrefix": "/"}, "route": {"subset": "v9"}}],
      "default": {"subset": "v1"}
    }"#;
    let envoy = cx.start("unknown-cluster", plugin)?;
    let mut c = envoy.client();
    let n = 200;
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..n {
        let k = match c.get("/", &[]) {
            Ok(r) => format!("{} {}", r.status, r.header("x-front-flags").unwrap_or("-")),
            Err(e) => format!("error {e}"),
        };
        *codes.entry(k).or_default() += 1;
    }
    let ok = codes.get("404 NC").copied() == Some(n) && codes.len() == 1;
    cx.row(
        "8 unknown subset cluster (v9)",
        &format!("{n} x 404 (cluster_not_found_response_code: NOT_FOUND, flag NC)"),
        &codes
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect::<Vec<_>>()
            .join(", "),
        ok,
    );
    let mut st = ExpectedStats::default();
    st.rule("typo", "v9", n);
    cx.stats(&envoy, "8 unknown cluster: stats", &st, false);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Extra: an invalid plugin config keeps Envoy from starting (docs/configuration.md, errors)
// ---------------------------------------------------------------------------------------
fn invalid_config(cx: &mut Ctx) -> Result<(), String> {
    let plugin = r#"{
      "rules": [{"name": "canary", "match": {"pathPrefix": "/"},
                 "route": {"split": [{"subset": "v1", "weight": 1000001}, {"subset": "v2", "weight": 1}]}}],
      "default": {"subset": "v1"}
    }"#;
    let (mut envoy, validation) = Envoy::launch(cx.env, "invalid-config", plugin)?;
    let exited = envoy.wait_exit(Duration::from_secs(20));
    let log = format!("{}\n{}", validation.output, envoy.logs());
    let path = "rules[0].route.split[0].weight";
    let named = log.contains(path);
    cx.row(
        "extra: invalid config (weight 1000001)",
        &format!("validate fails, Envoy exits, log names {path}"),
        &format!(
            "validate {}, {}, path in log: {}",
            if validation.ok { "PASSED" } else { "failed" },
            exited
                .clone()
                .unwrap_or_else(|| "still running after 20s".into()),
            if named { "yes" } else { "no" }
        ),
        !validation.ok && exited.is_some() && named,
    );
    if exited.is_none() || !named {
        println!(
            "--- validate output + Envoy log (excerpt) ---\n{}",
            envoy::log_excerpt(&log)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 10. A beta-tester list and pinned users: `oneOf` and a run of exact-match rules (one lookup)
// ---------------------------------------------------------------------------------------
fn beta_list(cx: &mut Ctx) -> Result<(), String> {
    // 5,000 testers as one `oneOf` (case-insensitive header name, exact value); 200 users each
    // pinned by a rule of their own (a run the filter decides by one lookup), the pinned rules
    // split by a rule on another header to keep first-match order visible: `pin-0` is also a
    // tester, and the earlier tester rule wins for it.
    const TESTERS: usize = 5_000;
    const PINNED: usize = 200;
    let testers: Vec<String> = (0..TESTERS).map(|i| format!("\"beta-{i}\"")).collect();
    let mut rules = vec![format!(
        r#"{{"name": "testers", "match": {{"headers": [{{"name": "X-User-Id", "oneOf": [{}, "pin-0"]}}]}}, "route": {{"subset": "v2"}}}}"#,
        testers.join(",")
    )];
    for i in 0..PINNED {
        rules.push(format!(
            r#"{{"name": "pin-{i}", "match": {{"headers": [{{"name": "x-user-id", "exact": "pin-{i}"}}]}}, "route": {{"subset": "v3"}}}}"#
        ));
        if i == PINNED / 2 {
            rules.push(
                r#"{"name": "mobile", "match": {"headers": [{"name": "x-client", "exact": "mobile"}]}, "route": {"subset": "v1"}}"#
                    .into(),
            );
        }
    }
    let plugin = format!(
        r#"{{"responseHeader": "x-routed-subset", "rules": [{}], "default": {{"subset": "v1"}}}}"#,
        rules.join(",")
    );
    let envoy = cx.start("beta-list", &plugin)?;
    let mut c = envoy.client();
    let ex = Expect {
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let user = |id: String| vec![("x-user-id".to_string(), id)];
    // Testers spread over the whole list, the last one included.
    let t = send(&mut c, 300, &ex, |i| {
        (
            "/".into(),
            user(format!(
                "beta-{}",
                (i as usize * 17 + TESTERS - 1) % TESTERS
            )),
        )
    });
    cx.all_to(
        "10 oneOf: 300 testers of a 5,000-value list -> v2",
        &t,
        "v2",
    );
    let t = send(&mut c, 20, &ex, |_| ("/".into(), user("pin-0".into())));
    cx.all_to("10 first match: pin-0 is a tester first -> v2", &t, "v2");
    let t = send(&mut c, 199, &ex, |i| {
        ("/".into(), user(format!("pin-{}", i + 1)))
    });
    cx.all_to(
        "10 pinned users pin-1..pin-199 (indexed run) -> v3",
        &t,
        "v3",
    );
    // After `mobile`, the run resumes: a mobile pinned user of the second half is v1.
    let t = send(&mut c, 50, &ex, |i| {
        let mut h = user(format!("pin-{}", PINNED / 2 + 1 + i as usize));
        h.push(("x-client".into(), "mobile".into()));
        ("/".into(), h)
    });
    cx.all_to(
        "10 first match: mobile before pin-101..pin-150 -> v1",
        &t,
        "v1",
    );
    let t = send(&mut c, 200, &ex, |i| {
        let id = ["BETA-1", "beta-5000", "pin-200", "beta", "pin-", ""][i as usize % 6];
        ("/".into(), user(id.into()))
    });
    cx.all_to(
        "10 not on any list (case, range, prefix, empty) -> default v1",
        &t,
        "v1",
    );
    let mut st = ExpectedStats::default();
    st.rule("testers", "v2", 320);
    for i in 1..PINNED {
        st.rule(&format!("pin-{i}"), "v3", 1);
    }
    st.rule("pin-0", "v3", 0);
    st.rule("mobile", "v1", 50);
    st.rule("default", "v1", 200);
    cx.stats(&envoy, "10 oneOf and indexed rules: stats", &st, false);
    Ok(())
}

type ScenarioFn = fn(&mut Ctx) -> Result<(), String>;

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    ("dark_launch", dark_launch),
    ("debug_routing", debug_routing),
    ("canary_steps", canary_steps),
    ("canary_75_25", canary_75_25),
    ("red_blue", red_blue),
    ("three_way", three_way),
    ("sticky_ramp", sticky_ramp),
    ("istio_subset_header", istio_subset_header),
    ("stats", stats),
    ("unknown_cluster", unknown_cluster),
    ("invalid_config", invalid_config),
    ("cluster_specifier", cluster_specifier),
    ("beta_list", beta_list),
];

fn main() {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let Some(suite) = Suite::start("integration", SCENARIOS, scratch) else {
        return;
    };
    let env = suite.env();
    let mut table = Table::default();
    let mut cx = Ctx {
        env,
        table: &mut table,
        failed: false,
        stats_prefix: BTreeSet::new(),
        not_applicable: Vec::new(),
    };
    let title = format!(
        "subset-router integration suite ({} build)",
        env.build.name()
    );
    let timings = suite.run(&title, &mut cx);
    let failed = cx.failed;
    let not_applicable = std::mem::take(&mut cx.not_applicable);
    let prefixes: Vec<_> = cx
        .stats_prefix
        .iter()
        .map(|p| format!("{p}subset_router.*"))
        .collect();

    println!(
        "\n=== subset-router integration: summary ({} runtime) ===\n",
        env.runtime_name()
    );
    print!("{}", table.render());
    println!();
    if let Some(line) = suite::not_applicable_line(env.build.name(), &not_applicable) {
        println!("{line}\n");
    }
    println!("{timings}");
    if !prefixes.is_empty() {
        println!(
            "filter counters appear in admin /stats as: {}",
            prefixes.join(", ")
        );
    }
    suite.finish(Outcome {
        count: table.rows.len(),
        unit: "rows",
        failed: table.rows.iter().filter(|r| !r.pass).count(),
        pass: !failed,
    });
}
