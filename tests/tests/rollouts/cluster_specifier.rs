//! rollouts scenario 9: the native build as the final route's cluster specifier
//! (`envoy.router.cluster_specifier_plugin.dynamic_modules`, Envoy 1.40): the route asks the
//! module for the cluster instead of an HTTP filter writing `x-upstream-cluster`. The same JSON,
//! the same decisions and counters; what only the HTTP filter can do is refused at load.
//!
//! Native build only: for `FILTER=wasm` the scenario says it does not apply, now and in the
//! summary, and checks nothing.

use super::*;
use subset_router_core::request::OwnedRequest;
use subset_router_it::scenarios::sticky_user;

/// Debug rules (header, cookie, query: what [`DebugRouting`] sends), a sticky 80/20 and a
/// random 90/10 — everything the specifier form can carry out.
const PLUGIN: &str = r#"{
  "rules": [
    {"name": "debug-ua", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
     "route": {"subset": "v2"}},
    {"name": "debug-cookie", "match": {"cookies": [{"name": "canary", "exact": "always"}]},
     "route": {"subset": "v2"}},
    {"name": "debug-query", "match": {"query": [{"name": "debug", "exact": "1"}]},
     "route": {"subset": "v3"}},
    {"name": "sticky", "match": {"pathPrefix": "/sticky"},
     "route": {"split": [{"subset": "v1", "weight": 80}, {"subset": "v2", "weight": 20}],
               "stickyBy": {"header": "x-user-id"}}},
    {"name": "canary", "match": {"pathPrefix": "/app"},
     "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}}
  ],
  "default": {"subset": "v1"}
}"#;

const STICKY_IDS: u64 = 500;
const STICKY_ROUNDS: u64 = 5;

/// The cluster a client forges: no rule picks it.
const FORGED: &str = "internal-admin";

/// Configurations the HTTP filter accepts and the specifier form refuses, with the exact
/// `path: reason` line(s) the module logs (`subset_router_core::route_form::refusals`).
const REFUSED: &[(&str, &str, &[&str])] = &[
    (
        "subsetHeader",
        r#"{"subsetHeader": "x-subset",
            "rules": [{"name": "canary", "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}}],
            "default": {"subset": "v1"}}"#,
        &["subsetHeader: the cluster-specifier form writes no request header (use the HTTP filter)"],
    ),
    (
        "guard",
        r#"{"rules": [{"name": "canary", "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}}],
            "default": {"subset": "v1"},
            "guards": [{"subset": "v2", "maxErrorPercent": 20}]}"#,
        &["guards[0]: a guard watches responses, which the cluster-specifier form never sees (use the HTTP filter)"],
    ),
];

pub(super) fn cluster_specifier(cx: &mut Ctx) -> Result<(), String> {
    if !matches!(cx.env.build, FilterBuild::Native(_)) {
        cx.not_applicable(
            "cluster_specifier",
            "native build only: the route's cluster specifier is an Envoy dynamic module; run \
             it with FILTER=native",
        );
        return Ok(());
    }
    let envoy = cx.start_with(
        "cluster-specifier",
        PLUGIN,
        &LaunchOptions::cluster_specifier(),
    )?;
    let at_start = counters_at_start(&envoy, PLUGIN);
    cx.row(
        "9 specifier: before any request",
        "every counter the config declares in /stats, at 0",
        at_start.as_ref().unwrap_or_else(|e| e),
        at_start.is_ok(),
    );
    let mut c = envoy.client();
    // Every response: served by the cluster of its subset; the upstream saw no
    // x-upstream-cluster (the module writes none).
    let ex = Expect::specifier(None);

    let split = send(&mut c, N, &ex, |i| (format!("/app/{}", i % 7), vec![]));
    cx.split(
        "9 specifier: canary v1/v2 90/10",
        &split,
        &[("v1", 90), ("v2", 10)],
    );

    let sticky = sticky_ids(cx, &mut c, &ex)?;

    let debug = DebugRouting::send(
        &mut c,
        &ex,
        &DebugRequests {
            user_agent: 100,
            other_user_agents: 150,
            cookie: 50,
            other_cookies: 50,
            query: 50,
            other_queries: 50,
        },
    );
    for (check, t, subset) in debug.checks("v3") {
        cx.all_to(&format!("9 specifier debug: {check}"), t, subset);
    }

    let forged = forged_cluster_header(cx, &envoy, &mut c)?;

    // Every decision and spoofing attempt counted exactly; the upstreams got exactly what the
    // responses say.
    let mut st = ExpectedStats::default();
    st.rule_tally("canary", &split)
        .rule_tally("sticky", &sticky);
    debug.add_expected(&mut st);
    st.rule_tally("default", &forged.default)
        .rule_tally("canary", &forged.canary)
        .rule_tally("debug-ua", &forged.debug)
        .spoofed(forged.total());
    cx.stats(&envoy, "9 specifier: counters = requests sent", &st, true);
    upstreams_equal_responses(cx, &envoy, &st)?;

    refused_configs(cx)
}

/// Sticky by `x-user-id`: every id on one subset in every round, the one the filter's own core
/// computes (`Router::decide`: the same as the HTTP filter's and the Wasm build's), ids on v2
/// within 4.5σ of 20%.
fn sticky_ids(cx: &mut Ctx, c: &mut Client, ex: &Expect) -> Result<Tally, String> {
    let router = subset_router_core::load(PLUGIN.as_bytes())
        .map_err(|e| format!("the core refuses the scenario's config: {e:?}"))?;
    let mut rng = subset_router_core::WyRand::new(1);
    let sent = send_sticky_ids(c, ex, "/sticky/cart", STICKY_IDS, STICKY_ROUNDS);
    let mut off_core = 0u64;
    let mut sample = None;
    for (id, subsets) in &sent.subsets {
        let uid = sticky_user(*id);
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
            sample.get_or_insert(format!("{uid}: Envoy {subsets:?}, core {want:?}"));
        }
    }
    let one_subset = sent.subsets.values().filter(|s| s.len() == 1).count() as u64;
    let on_v2 = sent
        .subsets
        .values()
        .filter(|s| s.len() == 1 && s.contains("v2"))
        .count() as u64;
    let (lo, hi) = binomial_bounds(STICKY_IDS, 0.2);
    let all = sent.all;
    cx.row(
        "9 specifier: sticky x-user-id 80/20",
        &format!(
            "{STICKY_IDS} ids x{STICKY_ROUNDS}: each id on 1 subset, the core's; ids on v2 20% \
             [{lo}..{hi}]"
        ),
        &format!(
            "{one_subset} ids on one subset, {off_core} differ from the core{}; ids on v2 {on_v2} \
             ({:.1}%); requests {}",
            sample.map(|s| format!(" (first: {s})")).unwrap_or_default(),
            100.0 * on_v2 as f64 / STICKY_IDS as f64,
            all.describe(&["v1", "v2"])
        ),
        all.errors == 0 && one_subset == STICKY_IDS && off_core == 0 && (lo..=hi).contains(&on_v2),
    );
    Ok(all)
}

/// What the forged requests got, by the rule that decides them.
struct Forged {
    default: Tally,
    canary: Tally,
    debug: Tally,
}

impl Forged {
    fn total(&self) -> u64 {
        self.default.total + self.canary.total + self.debug.total
    }
}

/// `x-upstream-cluster: internal-admin` from the client, on requests the default, the canary
/// split and the debug rule decide (and in two spellings of the name): none reaches that
/// cluster (its `upstream_rq_total` stays 0), each goes where the rules say, the upstream sees
/// the client's header untouched (the route does not read it; the module writes none).
fn forged_cluster_header(cx: &mut Ctx, envoy: &Envoy, c: &mut Client) -> Result<Forged, String> {
    let ex = Expect::specifier(Some(FORGED));
    let f = Forged {
        default: send(c, 100, &ex, |i| {
            let name = if i % 2 == 0 {
                "x-upstream-cluster"
            } else {
                "X-Upstream-Cluster"
            };
            ("/".into(), owned_headers(&[(name, FORGED)]))
        }),
        canary: send_same(
            c,
            200,
            &ex,
            "/app/forged",
            &[("x-upstream-cluster", FORGED)],
        ),
        debug: send_same(
            c,
            50,
            &ex,
            "/",
            &[("user-agent", "debug"), ("x-upstream-cluster", FORGED)],
        ),
    };
    let upstream = envoy.stats("upstream_rq_total")?;
    // A missing counter counts as reached: the check must not pass on a renamed stat.
    let reached = upstream
        .get(&format!("cluster.{FORGED}.upstream_rq_total"))
        .copied()
        .unwrap_or(u64::MAX);
    let mut all = f.default.clone();
    all.merge(&f.canary);
    all.merge(&f.debug);
    let canary_only_split = f.canary.counts.keys().all(|k| k == "v1" || k == "v2");
    let first_error = all
        .error_samples
        .first()
        .map(|e| format!(" -- first error: {e}"))
        .unwrap_or_default();
    cx.row(
        &format!("9 specifier: client-sent x-upstream-cluster: {FORGED}"),
        &format!(
            "0 reach {FORGED} (upstream_rq_total 0); routed by the rules: default v1 x{}, debug \
             v2 x{}, canary v1/v2 only x{}; the upstream sees the client's header untouched",
            f.default.total, f.debug.total, f.canary.total
        ),
        &format!(
            "{FORGED} upstream_rq_total {}; default: {}; debug: {}; canary: {}{first_error}",
            if reached == u64::MAX {
                "MISSING".to_string()
            } else {
                reached.to_string()
            },
            f.default.describe(&["v1"]),
            f.debug.describe(&["v2"]),
            f.canary.describe(&["v1", "v2"]),
        ),
        reached == 0
            && all.errors == 0
            && f.default.get("v1") == f.default.total
            && f.debug.get("v2") == f.debug.total
            && canary_only_split,
    );
    Ok(f)
}

/// Each cluster's `upstream_rq_total` equals the decisions the counters say went to it: the
/// route sent every request where the module said, and nothing else anywhere.
fn upstreams_equal_responses(
    cx: &mut Ctx,
    envoy: &Envoy,
    st: &ExpectedStats,
) -> Result<(), String> {
    let mut want: BTreeMap<String, u64> =
        envoy::CLUSTERS.iter().map(|c| (c.to_string(), 0)).collect();
    for (counter, n) in &st.0 {
        if let Some((_, subset)) = counter
            .strip_prefix("subset_router.rule.")
            .and_then(|r| r.split_once(".subset."))
        {
            *want.entry(subset.to_string()).or_default() += n;
        }
    }
    let printed = envoy.stats("upstream_rq_total")?;
    let mut diffs = Vec::new();
    for (cluster, n) in &want {
        let got = printed.get(&format!("cluster.{cluster}.upstream_rq_total"));
        if got != Some(n) {
            diffs.push(format!("{cluster}: {got:?}, expected {n}"));
        }
    }
    let describe = want
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    cx.row(
        "9 specifier: cluster.<c>.upstream_rq_total = decisions",
        &format!("{describe}, every other cluster 0"),
        &if diffs.is_empty() {
            "equal".to_string()
        } else {
            format!("MISMATCH: {}", diffs.join("; "))
        },
        diffs.is_empty(),
    );
    Ok(())
}

/// `envoy --mode validate` of a configuration the form refuses fails with the module's exact
/// `path: reason` line(s) (and no other), while the HTTP filter form accepts the same JSON.
fn refused_configs(cx: &mut Ctx) -> Result<(), String> {
    const PREFIX: &str = "subset-router: invalid configuration: ";
    for (i, (feature, json, lines)) in REFUSED.iter().enumerate() {
        let specifier = Envoy::validate_only(
            cx.env,
            &format!("specifier-refuses-{i}"),
            json,
            &LaunchOptions::cluster_specifier(),
        )?;
        let filter = Envoy::validate_only(
            cx.env,
            &format!("specifier-refuses-{i}-filter"),
            json,
            &LaunchOptions::default(),
        )?;
        // Every `invalid configuration` line, from its message on.
        let logged: Vec<&str> = specifier
            .output
            .lines()
            .filter_map(|l| l.find(PREFIX).map(|at| &l[at + PREFIX.len()..]))
            .map(str::trim_end)
            .collect();
        let rejected = format!(
            "subset-router: configuration rejected ({} error(s))",
            lines.len()
        );
        let summary = specifier.output.contains(&rejected);
        let pass = !specifier.ok && logged == *lines && summary && filter.ok;
        cx.row(
            &format!("9 specifier refuses {feature}: envoy --mode validate"),
            &format!(
                "exit 1 with `{PREFIX}{}` (and no other), `{rejected}`; the HTTP filter form \
                 validates the same JSON",
                lines.join("` + `")
            ),
            &format!(
                "specifier form: {}, lines {logged:?}, summary line: {}; HTTP filter form: {}",
                if specifier.ok { "PASSED" } else { "refused" },
                if summary { "yes" } else { "no" },
                if filter.ok { "validates" } else { "REFUSED" },
            ),
            pass,
        );
        if !pass {
            println!(
                "--- validate output of the specifier form (excerpt) ---\n{}",
                envoy::log_excerpt(&specifier.output)
            );
            if !filter.ok {
                println!(
                    "--- validate output of the HTTP filter form (excerpt) ---\n{}",
                    envoy::log_excerpt(&filter.output)
                );
            }
        }
    }
    Ok(())
}
