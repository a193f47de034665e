//! Counting, statistical bounds, the stats comparison and the summary table.

use crate::http::Response;
use std::collections::{BTreeMap, BTreeSet};

/// Allowed deviation, in binomial standard deviations.
pub const SIGMAS: f64 = 4.5;

/// `|observed - n p| <= 4.5 sqrt(n p (1-p))`. For p = 0 or 1 the bound is 0: exact.
pub fn within_binomial(observed: u64, n: u64, p: f64) -> bool {
    let (lo, hi) = binomial_bounds(n, p);
    observed >= lo && observed <= hi
}

/// Inclusive integer bounds `[lo, hi]` for a count out of `n` with probability `p`.
pub fn binomial_bounds(n: u64, p: f64) -> (u64, u64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).max(0.0).sqrt();
    let lo = (mean - SIGMAS * sd).ceil().max(0.0) as u64;
    let hi = (mean + SIGMAS * sd).floor().min(n as f64) as u64;
    (lo, hi)
}

/// Counts per subset (plus non-routed outcomes under `!<status>` style keys).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub counts: BTreeMap<String, u64>,
    pub total: u64,
    /// Requests whose response broke an invariant (first few messages kept).
    pub errors: u64,
    pub error_samples: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, key: &str) {
        *self.counts.entry(key.to_string()).or_default() += 1;
        self.total += 1;
    }

    pub fn error(&mut self, msg: String) {
        self.errors += 1;
        self.total += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(msg);
        }
    }

    pub fn get(&self, k: &str) -> u64 {
        self.counts.get(k).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, o: &Tally) {
        for (k, v) in &o.counts {
            *self.counts.entry(k.clone()).or_default() += v;
        }
        self.total += o.total;
        self.errors += o.errors;
        for e in &o.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e.clone());
            }
        }
    }

    /// `v1 1803 (90.2%) / v2 197 (9.9%)`, in the order of `keys` then any others.
    pub fn describe(&self, keys: &[&str]) -> String {
        let mut parts = Vec::new();
        let n = self.total.max(1) as f64;
        for k in keys {
            let c = self.get(k);
            parts.push(format!("{k} {c} ({:.1}%)", 100.0 * c as f64 / n));
        }
        for (k, c) in &self.counts {
            if !keys.contains(&k.as_str()) {
                parts.push(format!("{k} {c}"));
            }
        }
        if self.errors > 0 {
            parts.push(format!("ERRORS {}", self.errors));
        }
        parts.join(" / ")
    }
}

/// One check's row: what was expected, what was observed, and whether they agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub expected: String,
    pub observed: String,
    pub pass: bool,
}

/// The split check of the rollout and compat suites: every subset's count within 4.5 binomial
/// standard deviations of `n * w / sum(w)` (exact when the probability is 0 or 1), no response
/// broke an invariant, and nothing landed outside the configured subsets.
pub fn judge_split(t: &Tally, weights: &[(&str, u64)]) -> Judgement {
    let sum: u64 = weights.iter().map(|(_, w)| w).sum();
    let n = t.total;
    let mut pass = t.errors == 0;
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
    // Nothing may land outside the configured subsets.
    let known: Vec<&str> = weights.iter().map(|(s, _)| *s).collect();
    pass &= t.counts.keys().all(|k| known.contains(&k.as_str()));
    let mut observed = t.describe(&known);
    if let Some(e) = t.error_samples.first() {
        observed.push_str(&format!(" -- first error: {e}"));
    }
    Judgement {
        expected: format!("N={n}: {}", exp.join(" / ")),
        observed,
        pass,
    }
}

/// How the front route found the request's cluster, and so which `x-upstream-cluster` the
/// upstream must have received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClusterChoice {
    /// The filter wrote `clusterHeader` (the templated cluster, replacing whatever the client
    /// sent) and a `cluster_header` route read it: the upstream saw the templated cluster.
    #[default]
    Header,
    /// The native build's cluster specifier named the route's cluster (the served one must be
    /// the templated cluster). It writes no header, so the upstream saw the client's own
    /// `x-upstream-cluster`, untouched (`Some`), or none.
    Specifier { client_sent: Option<String> },
}

/// What a correctly routed response looks like for a given plugin config.
#[derive(Debug, Clone)]
pub struct Expect {
    /// `clusterTemplate` (with `{subset}`); `None` when `clusterHeader` is off.
    pub cluster_template: Option<String>,
    /// `subsetHeader` configured (as `x-subset`).
    pub subset_header: bool,
    /// `responseHeader` configured: its name.
    pub response_header: Option<String>,
    /// Who chose the cluster: the filter's header (default) or the cluster specifier.
    pub chosen_by: ClusterChoice,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            cluster_template: Some("{subset}".into()),
            subset_header: false,
            response_header: None,
            chosen_by: ClusterChoice::Header,
        }
    }
}

impl Expect {
    /// The cluster-specifier form: cluster `{subset}`, no routing header written, the upstream
    /// sees `client_sent` as `x-upstream-cluster` (the client's own value) or none.
    pub fn specifier(client_sent: Option<&str>) -> Expect {
        Expect {
            chosen_by: ClusterChoice::Specifier {
                client_sent: client_sent.map(String::from),
            },
            ..Expect::default()
        }
    }
}

impl Expect {
    /// Checks a response from the front listener and returns the subset that served it.
    /// Invariants: 200, body = `x-served-by`, the upstream saw exactly the routing headers
    /// the config asks for (and not a client's spoofed value; with the cluster specifier,
    /// which writes none, exactly the client's own), served by the templated cluster,
    /// `responseHeader` if set.
    pub fn check(&self, r: &Response) -> Result<String, String> {
        if r.status != 200 {
            return Err(format!(
                "status {} (x-front-flags {:?}) body {:?}",
                r.status,
                r.header("x-front-flags"),
                r.body_str()
            ));
        }
        let served = r
            .header("x-served-by")
            .ok_or("no x-served-by header")?
            .to_string();
        // Upstreams answer their subset name and a newline (curl-friendly).
        if r.body_str().trim_end_matches('\n') != served {
            return Err(format!("body {:?} != x-served-by {served:?}", r.body_str()));
        }
        let cluster = r.header("x-served-cluster").unwrap_or("");
        match &self.cluster_template {
            Some(t) => {
                let want = t.replace("{subset}", &served);
                let echo = r.header("x-echo-cluster-header");
                // What reached the upstream: the filter's own value, or (the cluster specifier
                // writes none) exactly what the client sent.
                match &self.chosen_by {
                    ClusterChoice::Header if echo != Some(want.as_str()) => {
                        return Err(format!(
                            "upstream {cluster} saw x-upstream-cluster {echo:?}, want {want:?}"
                        ));
                    }
                    ClusterChoice::Specifier { client_sent } if echo != client_sent.as_deref() => {
                        return Err(format!(
                            "upstream {cluster} saw x-upstream-cluster {echo:?}; the client sent \
                             {client_sent:?} and the cluster specifier writes none"
                        ));
                    }
                    _ => {}
                }
                if cluster != want {
                    return Err(format!("served by cluster {cluster:?}, want {want:?}"));
                }
            }
            None => {
                if let Some(echo) = r.header("x-echo-cluster-header") {
                    return Err(format!(
                        "clusterHeader is off but upstream saw x-upstream-cluster {echo:?}"
                    ));
                }
            }
        }
        let echo_subset = r.header("x-echo-subset-header");
        if self.subset_header {
            if echo_subset != Some(served.as_str()) {
                return Err(format!("upstream {served} saw x-subset {echo_subset:?}"));
            }
        } else if let Some(v) = echo_subset {
            return Err(format!(
                "subsetHeader is off but upstream saw x-subset {v:?}"
            ));
        }
        if let Some(h) = &self.response_header {
            let got = r.header(h);
            if got != Some(served.as_str()) {
                return Err(format!("response header {h}: {got:?}, want {served:?}"));
            }
            if r.header_count(h) != 1 {
                return Err(format!(
                    "response header {h} appears {} times",
                    r.header_count(h)
                ));
            }
        }
        Ok(served)
    }
}

/// Envoy's namespace of the filter's own stats, per build (`wasmcustom.` for the Wasm filter,
/// `dynamicmodulescustom.` for the dynamic module), split from the stat name.
pub fn split_namespace(stat: &str) -> (&'static str, &str) {
    for ns in ["wasmcustom.", "dynamicmodulescustom."] {
        if let Some(name) = stat.strip_prefix(ns) {
            return (ns, name);
        }
    }
    ("", stat)
}

/// Compares the `subset_router` counters Envoy printed with the expected values (names
/// without Envoy's `wasmcustom.` / `dynamicmodulescustom.` namespace). Absent counters count as 0. Returns the
/// namespace prefix seen (`"wasmcustom."` or `""`) or the list of differences.
pub fn compare_stats(
    printed: &BTreeMap<String, u64>,
    expected: &BTreeMap<String, u64>,
) -> Result<&'static str, String> {
    let mut prefix = None;
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in printed {
        let (p, name) = split_namespace(k);
        if !name.starts_with("subset_router.") {
            continue;
        }
        prefix.get_or_insert(p);
        *got.entry(name.to_string()).or_default() += v;
    }
    let mut diffs = Vec::new();
    let keys: std::collections::BTreeSet<&String> = got.keys().chain(expected.keys()).collect();
    for k in keys {
        let g = got.get(k).copied().unwrap_or(0);
        let e = expected.get(k).copied().unwrap_or(0);
        if g != e {
            diffs.push(format!("{k}: printed {g}, expected {e}"));
        }
    }
    if got.is_empty() && expected.values().any(|v| *v > 0) {
        return Err(format!(
            "no subset_router counters in /stats at all (looked for `subset_router.*` and \
             `<namespace>.subset_router.*`); expected {expected:?}"
        ));
    }
    if diffs.is_empty() {
        Ok(prefix.unwrap_or(""))
    } else {
        Err(diffs.join("; "))
    }
}

/// The `subset_router` counters a plugin config declares, read from its JSON (not from the
/// filter): `subset_router.rule.<rule>.subset.<subset>` for every subset of every rule's route
/// and of the default route (`default`), weight 0 included, plus
/// `subset_router.spoofed_header_removed`, `subset_router.sticky_key_missing` and
/// `subset_router.host_call_failed` (defined at load, not on a first failure) — all under
/// `subset_router.<name>.` instead when the config has a top-level `name`.
pub fn declared_counters(plugin: &str) -> Result<BTreeSet<String>, String> {
    let cfg: serde_json::Value =
        serde_json::from_str(plugin).map_err(|e| format!("plugin config: {e}"))?;
    let mut routes = vec![("default", cfg.get("default"))];
    for r in cfg
        .get("rules")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let name = r
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or("a rule without a name")?;
        routes.push((name, r.get("route")));
    }
    let prefix = prefix_of(&cfg);
    let mut out: BTreeSet<String> = [
        "spoofed_header_removed",
        "sticky_key_missing",
        "host_call_failed",
    ]
    .iter()
    .map(|c| format!("{prefix}{c}"))
    .collect();
    for (rule, route) in routes {
        let route = route.ok_or_else(|| format!("rule {rule} has no route"))?;
        let split = route.get("split").and_then(|s| s.as_array());
        let subsets = route
            .get("subset")
            .into_iter()
            .chain(split.into_iter().flatten().filter_map(|e| e.get("subset")));
        for subset in subsets {
            let subset = subset.as_str().ok_or("a subset that is not a string")?;
            out.insert(format!("{prefix}rule.{rule}.subset.{subset}"));
        }
    }
    Ok(out)
}

/// With a top-level `name`, every stat is `subset_router.<name>.…`.
fn prefix_of(cfg: &serde_json::Value) -> String {
    match cfg.get("name").and_then(|n| n.as_str()) {
        Some(name) => format!("subset_router.{name}."),
        None => "subset_router.".to_string(),
    }
}

/// The stat prefix of a plugin configuration: `subset_router.` or `subset_router.<name>.`.
pub fn stat_prefix(plugin: &str) -> String {
    serde_json::from_str::<serde_json::Value>(plugin)
        .map(|cfg| prefix_of(&cfg))
        .unwrap_or_else(|_| "subset_router.".into())
}

/// Every guard's counters, by full stat name (`<prefix>guard.<subset>.<counter>`; every one
/// exists at 0 from the start): `tripped`, `diverted`, `undivertable`, what it observes
/// (`requests`, `errors`, `slow`, and with a baseline `baseline_*`), and with `fleet`
/// `tripped_by_fleet`, `fleet_query_failed`. Written from the configuration reference, not
/// from the filter's code.
pub fn guard_counters(plugin: &str) -> Result<BTreeSet<String>, String> {
    let cfg: serde_json::Value =
        serde_json::from_str(plugin).map_err(|e| format!("plugin config: {e}"))?;
    let prefix = prefix_of(&cfg);
    let mut out = BTreeSet::new();
    for guard in cfg
        .get("guards")
        .and_then(|g| g.as_array())
        .into_iter()
        .flatten()
    {
        let subset = guard
            .get("subset")
            .and_then(|s| s.as_str())
            .ok_or("a guard without a subset")?;
        let mut names = vec![
            "tripped",
            "diverted",
            "undivertable",
            "requests",
            "errors",
            "slow",
        ];
        if guard.get("baseline").is_some() {
            names.extend(["baseline_requests", "baseline_errors", "baseline_slow"]);
        }
        if guard.get("fleet").is_some() {
            names.extend(["tripped_by_fleet", "fleet_query_failed"]);
        }
        out.extend(names.iter().map(|c| format!("{prefix}guard.{subset}.{c}")));
    }
    Ok(out)
}

/// Before any request: every `declared` counter is printed (in either namespace) and every
/// `subset_router` counter is 0. `Ok` says how many and in which namespace.
pub fn check_counters_at_zero(
    printed: &BTreeMap<String, u64>,
    declared: &BTreeSet<String>,
) -> Result<String, String> {
    let mut prefix = "";
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    for (k, v) in printed {
        let (p, name) = split_namespace(k);
        if name.starts_with("subset_router.") {
            prefix = p;
            *seen.entry(name).or_default() += v;
        }
    }
    let missing: Vec<&String> = declared
        .iter()
        .filter(|c| !seen.contains_key(c.as_str()))
        .collect();
    let nonzero: Vec<String> = seen
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if missing.is_empty() && nonzero.is_empty() {
        Ok(format!(
            "{} counters declared by the config, all present at 0 (as {prefix}subset_router.*)",
            declared.len()
        ))
    } else {
        Err(format!(
            "{} of {} declared counters missing from /stats: {missing:?}; above 0 before any request: {nonzero:?}",
            missing.len(),
            declared.len()
        ))
    }
}

/// Expected-counter builder: `rule/subset -> n`.
#[derive(Debug, Default, Clone)]
pub struct ExpectedStats(pub BTreeMap<String, u64>);

impl ExpectedStats {
    pub fn rule(&mut self, rule: &str, subset: &str, n: u64) -> &mut Self {
        if n > 0 {
            *self
                .0
                .entry(format!("subset_router.rule.{rule}.subset.{subset}"))
                .or_default() += n;
        }
        self
    }
    pub fn rule_tally(&mut self, rule: &str, t: &Tally) -> &mut Self {
        for (s, n) in &t.counts {
            self.rule(rule, s, *n);
        }
        self
    }
    pub fn spoofed(&mut self, n: u64) -> &mut Self {
        if n > 0 {
            *self
                .0
                .entry("subset_router.spoofed_header_removed".into())
                .or_default() += n;
        }
        self
    }
    pub fn sticky_missing(&mut self, n: u64) -> &mut Self {
        if n > 0 {
            *self
                .0
                .entry("subset_router.sticky_key_missing".into())
                .or_default() += n;
        }
        self
    }
    /// `debug-ua/v2=100 default/v1=450 spoofed_header_removed=200`: the counters as the
    /// check rows show them (`rule/subset`, other counters without `subset_router.`).
    pub fn describe(&self) -> String {
        self.0
            .iter()
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
}

#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub expected: String,
    pub observed: String,
    pub pass: bool,
}

#[derive(Debug, Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    pub fn push(&mut self, scenario: &str, expected: &str, observed: &str, pass: bool) {
        println!(
            "    [{}] {scenario}: expected {expected}; observed {observed}",
            if pass { "PASS" } else { "FAIL" }
        );
        self.rows.push(Row {
            scenario: scenario.into(),
            expected: expected.into(),
            observed: observed.into(),
            pass,
        });
    }

    pub fn render(&self) -> String {
        let head = ["scenario", "expected split", "observed split", "verdict"];
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.scenario.clone(),
                    r.expected.clone(),
                    r.observed.clone(),
                    if r.pass { "PASS".into() } else { "FAIL".into() },
                ]
            })
            .collect();
        let mut w = head.map(|h| h.chars().count());
        for c in &cells {
            for i in 0..4 {
                w[i] = w[i].max(c[i].chars().count());
            }
        }
        let line = |c: &[String; 4]| {
            let mut s = String::from("|");
            for i in 0..4 {
                let pad = w[i] - c[i].chars().count();
                s.push(' ');
                s.push_str(&c[i]);
                s.push_str(&" ".repeat(pad));
                s.push_str(" |");
            }
            s
        };
        let mut out = String::new();
        out.push_str(&line(&head.map(String::from)));
        out.push('\n');
        let mut sep = String::from("|");
        for wi in w {
            sep.push_str(&"-".repeat(wi + 2));
            sep.push('|');
        }
        out.push_str(&sep);
        out.push('\n');
        for c in &cells {
            out.push_str(&line(c));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counters_follow_baseline_fleet_and_name() {
        let plugin = r#"{"name": "shop", "default": {"subset": "v1"}, "guards": [
            {"subset": "v2", "maxErrorPercent": 5, "baseline": "v1"},
            {"subset": "v3", "maxErrorPercent": 5, "fleet": {"cluster": "prometheus", "selector": "a=\"b\""}}]}"#;
        let names: Vec<String> = guard_counters(plugin).unwrap().into_iter().collect();
        let expect = |subset: &str, whats: &[&str]| {
            whats
                .iter()
                .map(|w| format!("subset_router.shop.guard.{subset}.{w}"))
                .collect::<Vec<_>>()
        };
        let base = [
            "tripped",
            "diverted",
            "undivertable",
            "requests",
            "errors",
            "slow",
        ];
        let mut want = expect("v2", &base);
        want.extend(expect(
            "v2",
            &["baseline_requests", "baseline_errors", "baseline_slow"],
        ));
        want.extend(expect("v3", &base));
        want.extend(expect("v3", &["tripped_by_fleet", "fleet_query_failed"]));
        want.sort();
        assert_eq!(names, want);
        assert_eq!(stat_prefix(plugin), "subset_router.shop.");
        assert_eq!(
            stat_prefix(r#"{"default": {"subset": "v1"}}"#),
            "subset_router."
        );
        assert!(guard_counters(r#"{"default": {"subset": "v1"}}"#)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bounds() {
        // n=2000, p=0.1: mean 200, sd 13.42, 4.5 sd = 60.4
        assert_eq!(binomial_bounds(2000, 0.1), (140, 260));
        assert_eq!(binomial_bounds(2000, 0.0), (0, 0));
        assert_eq!(binomial_bounds(2000, 1.0), (2000, 2000));
        assert!(within_binomial(1000, 2000, 0.5));
        assert!(!within_binomial(1, 2000, 0.0));
    }

    #[test]
    fn judges_a_split_and_describes_what_it_saw() {
        let mut t = Tally::default();
        for _ in 0..1800 {
            t.add("v1");
        }
        for _ in 0..200 {
            t.add("v2");
        }
        let j = judge_split(&t, &[("v1", 90), ("v2", 10)]);
        assert!(j.pass, "{j:?}");
        assert_eq!(
            j.expected,
            "N=2000: v1 90% [1740..1860] / v2 10% [140..260]"
        );
        assert_eq!(j.observed, "v1 1800 (90.0%) / v2 200 (10.0%)");
        // Exact when every request must reach one subset; nothing may land elsewhere.
        let j = judge_split(&t, &[("v1", 1)]);
        assert!(!j.pass);
        assert_eq!(j.expected, "N=2000: v1 2000 exact");
        t.error("no x-served-by".into());
        let j = judge_split(&t, &[("v1", 90), ("v2", 10)]);
        assert!(!j.pass);
        assert!(j.observed.ends_with(" -- first error: no x-served-by"));
    }

    fn response(served: &str, cluster: &str, echo: Option<&str>) -> Response {
        let mut headers = vec![
            ("x-served-by".to_string(), served.to_string()),
            ("x-served-cluster".to_string(), cluster.to_string()),
        ];
        if let Some(e) = echo {
            headers.push(("x-echo-cluster-header".into(), e.into()));
        }
        Response {
            status: 200,
            headers,
            body: format!("{served}\n").into_bytes(),
        }
    }

    #[test]
    fn the_upstream_sees_what_the_cluster_choice_says() {
        let by_header = Expect::default();
        assert_eq!(
            by_header.check(&response("v2", "v2", Some("v2"))),
            Ok("v2".into())
        );
        assert!(by_header.check(&response("v2", "v2", None)).is_err());
        // The cluster specifier writes no header: none reaches the upstream, or the client's.
        let quiet = Expect::specifier(None);
        assert_eq!(quiet.check(&response("v2", "v2", None)), Ok("v2".into()));
        assert!(quiet.check(&response("v2", "v2", Some("v2"))).is_err());
        assert!(quiet.check(&response("v2", "v1", None)).is_err());
        let forged = Expect::specifier(Some("internal-admin"));
        assert_eq!(
            forged.check(&response("v1", "v1", Some("internal-admin"))),
            Ok("v1".into())
        );
        let e = forged.check(&response("v1", "v1", Some("v1"))).unwrap_err();
        assert!(e.contains("the cluster specifier writes none"), "{e}");
    }

    #[test]
    fn describes_expected_counters_as_the_rows_show_them() {
        let mut st = ExpectedStats::default();
        st.rule("debug-ua", "v2", 100)
            .rule("default", "v1", 3)
            .spoofed(7);
        assert_eq!(
            st.describe(),
            "debug-ua/v2=100 default/v1=3 spoofed_header_removed=7"
        );
    }

    #[test]
    fn every_declared_counter_must_be_printed_at_zero() {
        let plugin = r#"{"rules":[{"name":"debug","route":{"subset":"v2"}},
            {"name":"c","route":{"split":[{"subset":"v1","weight":1},{"subset":"v3","weight":0}]}}],
            "default":{"subset":"v1"}}"#;
        let declared = declared_counters(plugin).unwrap();
        let names: Vec<&str> = declared.iter().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "subset_router.host_call_failed",
                "subset_router.rule.c.subset.v1",
                "subset_router.rule.c.subset.v3",
                "subset_router.rule.debug.subset.v2",
                "subset_router.rule.default.subset.v1",
                "subset_router.spoofed_header_removed",
                "subset_router.sticky_key_missing",
            ]
        );
        let mut printed: BTreeMap<String, u64> = declared
            .iter()
            .map(|c| (format!("wasmcustom.{c}"), 0))
            .collect();
        printed.insert("wasm.subset_router.vm_reload".into(), 0);
        assert!(check_counters_at_zero(&printed, &declared).is_ok());
        // A counter defined only on first use (the weight-0 subset) is missing.
        printed.remove("wasmcustom.subset_router.rule.c.subset.v3");
        let e = check_counters_at_zero(&printed, &declared).unwrap_err();
        assert!(e.contains("rule.c.subset.v3"), "{e}");
        // host_call_failed must be defined at load too, not on its first failure.
        printed.insert("wasmcustom.subset_router.rule.c.subset.v3".into(), 0);
        printed.remove("wasmcustom.subset_router.host_call_failed");
        let e = check_counters_at_zero(&printed, &declared).unwrap_err();
        assert!(e.contains("subset_router.host_call_failed"), "{e}");
        printed.insert("wasmcustom.subset_router.host_call_failed".into(), 0);
        assert!(check_counters_at_zero(&printed, &declared).is_ok());
        // Above 0 before any request.
        printed.insert("wasmcustom.subset_router.sticky_key_missing".into(), 1);
        assert!(check_counters_at_zero(&printed, &declared).is_err());
    }

    #[test]
    fn stats_compare_handles_namespace_and_zeroes() {
        let mut printed = BTreeMap::new();
        printed.insert("wasmcustom.subset_router.rule.c.subset.v1".to_string(), 5);
        printed.insert("wasmcustom.subset_router.rule.c.subset.v2".to_string(), 0);
        let mut e = ExpectedStats::default();
        e.rule("c", "v1", 5).rule("c", "v2", 0);
        assert_eq!(compare_stats(&printed, &e.0), Ok("wasmcustom."));
        e.spoofed(1);
        assert!(compare_stats(&printed, &e.0).is_err());
    }
}
