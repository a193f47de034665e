//! Reliability and security of the filter in a real Envoy 1.40 (issue 6, items 1-5):
//!
//! 1. `forged_headers`: 1,000 requests forging `x-upstream-cluster` / `x-subset` (mixed case,
//!    repeated, odd whitespace) reach only clusters the rules chose.
//! 2. `invalid_configs`: invalid plugin configs (the filter's own table of `path: reason`
//!    errors, which must hold a case of every error class of the SPEC): `envoy --mode validate`
//!    and real start-ups refuse them and log the exact line; nothing ever serves.
//! 3. `live_reload`: the filter config delivered by ECDS from a watched file, swapped by rename
//!    under continuous load: 90/10 -> invalid -> 50/50 -> sticky 80/20; no request fails, the
//!    invalid one is rejected, splits measured.
//! 4. `hostile_requests`: raw-socket requests (60 KiB header, 100 cookies, non-UTF-8 bytes,
//!    malformed cookies, huge query, bad percent-encoding, no :authority): each answered by
//!    exactly the subset the rules give (the fixed default where none may match) or refused by
//!    Envoy; the filter never fails a request nor the VM; later requests route.
//! 5. `soak`: 200,000 requests at concurrency 32 through 10 sticky rules and a debug rule: no
//!    non-2xx, every response routed by the rules (sticky ids stay, debug goes to v2, shares
//!    and counters per rule and subset), Envoy RSS growth < 10% from the 50,000th to the last.
//!
//! Every Envoy started here first shows every counter its config declares, at 0.
//!
//! Own `main` (harness = false) like `rollouts.rs`: arguments not starting with `-` (or env
//! `SCENARIO`) select scenarios by substring, `--list` lists them. Prints a check table and a
//! figures table; exits non-zero if any check failed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subset_router_it::envoy::{self, FilterBuild, LaunchOptions};
use subset_router_it::load::{get_request, one_shot, rss_kib, Conn, Load, LoadSpec, FAILED};
use subset_router_it::*;

// ---------------------------------------------------------------------------------------
// Context, tables
// ---------------------------------------------------------------------------------------
struct Ctx {
    env: Env,
    /// `env` with the hardened template (raised header limits, HTTP/1.0 accepted).
    hardened: Env,
    rows: Vec<[String; 4]>,
    figures: Vec<(String, String)>,
    failed: bool,
    requests: u64,
    request_failures: u64,
}

impl Ctx {
    fn row(&mut self, check: &str, expected: &str, observed: &str, pass: bool) {
        println!(
            "    [{}] {check}: expected {expected}; observed {observed}",
            if pass { "PASS" } else { "FAIL" }
        );
        self.failed |= !pass;
        self.rows.push([
            check.into(),
            expected.into(),
            observed.into(),
            if pass { "PASS" } else { "FAIL" }.into(),
        ]);
    }

    fn figure(&mut self, name: &str, value: impl Into<String>) {
        let v = value.into();
        println!("    figure: {name} = {v}");
        self.figures.push((name.into(), v));
    }

    fn count(&mut self, sent: u64, failures: u64) {
        self.requests += sent;
        self.request_failures += failures;
    }

    /// Starts Envoy (hardened template) with `plugin` and checks that every counter the config
    /// declares is in `/stats` at 0 before the first request (a FAIL row otherwise).
    fn start(&mut self, name: &str, plugin: &str) -> Result<Envoy, String> {
        let t = Instant::now();
        let e = Envoy::start(&self.hardened, name, plugin)?;
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
}

fn render(head: [&str; 4], rows: &[[String; 4]]) -> String {
    let mut w = head.map(|h| h.chars().count());
    for r in rows {
        for i in 0..4 {
            w[i] = w[i].max(r[i].chars().count());
        }
    }
    let line = |c: [&str; 4]| {
        let mut s = String::from("|");
        for i in 0..4 {
            s.push_str(&format!(
                " {}{} |",
                c[i],
                " ".repeat(w[i] - c[i].chars().count())
            ));
        }
        s.push('\n');
        s
    };
    let mut out = line(head);
    out.push('|');
    for wi in w {
        out.push_str(&format!("{}|", "-".repeat(wi + 2)));
    }
    out.push('\n');
    for r in rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Sum of the filter's decision counters (`subset_router.rule.*`) in a stats map.
fn decisions(stats: &BTreeMap<String, u64>) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| k.contains("subset_router.rule."))
        .map(|(_, v)| v)
        .sum()
}

fn stat(stats: &BTreeMap<String, u64>, suffix: &str) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .map(|(_, v)| *v)
        .sum()
}

/// Wasm-related Envoy stats that reveal a crashed or reloaded VM, and request outcomes.
fn health(envoy: &Envoy) -> Result<BTreeMap<String, u64>, String> {
    let mut m = envoy.stats("wasm")?;
    m.extend(envoy.stats("http.front.downstream_rq")?);
    m.extend(envoy.stats("host_call_failed")?);
    Ok(m)
}

/// Lines of the Envoy log that would mean the filter (its Wasm VM, or the dynamic module)
/// failed.
fn filter_failure_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            ((l.contains("][wasm]") || l.contains("][dynamic_modules]"))
                && (l.contains("][critical][") || l.contains("][error][")))
                || l.contains("panicked")
                || l.contains("Function: proxy_on")
                || l.contains("wasm trap")
                || l.contains("RuntimeError")
        })
        .map(|l| l.chars().take(300).collect())
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Forged routing headers
// ---------------------------------------------------------------------------------------
const FORGED_N: u64 = 1000;

fn forged_headers(cx: &mut Ctx) -> Result<(), String> {
    // clusterHeader (default x-upstream-cluster) and subsetHeader x-subset: the template routes
    // `x-subset: v1|v2|v3` first, then `cluster_header: x-upstream-cluster`. No rule selects
    // v3, color-red or internal-admin.
    let plugin = r#"{
      "subsetHeader": "x-subset",
      "responseHeader": "x-routed-subset",
      "rules": [
        {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
         "route": {"subset": "v2"}},
        {"name": "canary", "match": {"pathPrefix": "/"},
         "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}]}}
      ],
      "default": {"subset": "v1"}
    }"#;
    let forged: &[(&str, &str, bool)] = &[
        ("lower case", "x-upstream-cluster: internal-admin\r\n", false),
        ("Mixed-Case", "X-Upstream-Cluster: internal-admin\r\n", false),
        ("UPPER, no space", "X-UPSTREAM-CLUSTER:internal-admin\r\n", false),
        ("tabs/spaces around value", "x-upstream-cluster:\t  internal-admin \t\r\n", false),
        ("odd case, padded", "x-Upstream-CLUSTER:     internal-admin     \r\n", false),
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
        ("both + debug user-agent", "user-agent: debug\r\nx-upstream-cluster: internal-admin\r\nx-subset: v3\r\n", true),
    ];
    let envoy = cx.start("forged-headers", plugin)?;
    let ex = Expect {
        cluster_template: Some("{subset}".into()),
        subset_header: true,
        response_header: Some("x-routed-subset".into()),
    };
    let before = envoy.stats("subset_router")?;
    let mut conn = Conn::new(envoy.front());
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_variant: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let mut errors = 0u64;
    let mut error_samples = Vec::new();
    let mut debug_sent = 0u64;
    let mut debug_wrong = 0u64;
    for i in 0..FORGED_N {
        let (label, lines, debug) = forged[i as usize % forged.len()];
        let req = format!("GET /app/{i} HTTP/1.1\r\nhost: subset-router.test\r\n{lines}\r\n");
        if debug {
            debug_sent += 1;
        }
        match conn.send(req.as_bytes()) {
            Ok(r) => {
                let by = r.header("x-served-by").unwrap_or("-").to_string();
                *served.entry(by.clone()).or_default() += 1;
                *per_variant
                    .entry(label)
                    .or_default()
                    .entry(by.clone())
                    .or_default() += 1;
                if let Err(e) = ex.check(&r) {
                    errors += 1;
                    if error_samples.len() < 3 {
                        error_samples.push(format!("{label}: {e}"));
                    }
                }
                if debug && by != "v2" {
                    debug_wrong += 1;
                }
            }
            Err(e) => {
                errors += 1;
                if error_samples.len() < 3 {
                    error_samples.push(format!("{label}: {e}"));
                }
            }
        }
    }
    cx.count(FORGED_N, errors);
    let after = envoy.stats("subset_router")?;
    let spoofed = stat(&after, "subset_router.spoofed_header_removed")
        - stat(&before, "subset_router.spoofed_header_removed");
    let upstream = envoy.stats("upstream_rq_total")?;
    // A missing counter counts as reached: the check must not pass on a renamed stat.
    let reached = |c: &str| {
        upstream
            .get(&format!("cluster.{c}.upstream_rq_total"))
            .copied()
            .unwrap_or(u64::MAX / 4)
    };
    let forbidden: u64 = ["internal-admin", "v3", "color-red"]
        .iter()
        .map(|c| reached(c))
        .sum();
    let off_rules: u64 = served
        .iter()
        .filter(|(k, _)| *k != "v1" && *k != "v2")
        .map(|(_, v)| v)
        .sum();

    let obs = served
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(" / ");
    cx.row(
        &format!(
            "1 forged headers: {FORGED_N} requests, {} variants",
            forged.len()
        ),
        "all 200, served by v1/v2 only (rules), upstream saw only the filter's headers",
        &format!(
            "{obs}; invariant errors {errors}{}",
            error_samples
                .first()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ),
        errors == 0 && off_rules == 0,
    );
    cx.row(
        "1 forged: clusters no rule selects",
        "internal-admin + v3 + color-red upstream_rq_total = 0",
        &format!(
            "internal-admin {}, v3 {}, color-red {}",
            reached("internal-admin"),
            reached("v3"),
            reached("color-red")
        ),
        forbidden == 0,
    );
    cx.row(
        "1 forged: debug rule still decides",
        &format!("{debug_sent} debug requests -> v2"),
        &format!("{} elsewhere", debug_wrong),
        debug_wrong == 0,
    );
    cx.row(
        "1 forged: spoofed_header_removed",
        &format!("+{FORGED_N}"),
        &format!("+{spoofed}"),
        spoofed == FORGED_N,
    );
    let dec = decisions(&after) - decisions(&before);
    cx.row(
        "1 forged: decision counters",
        &format!("+{FORGED_N}"),
        &format!("+{dec}"),
        dec == FORGED_N,
    );
    for (label, m) in &per_variant {
        println!("      {label}: {m:?}");
    }
    cx.figure(
        "forged requests (reached internal-admin/v3/color-red)",
        format!("{FORGED_N} ({forbidden})"),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Invalid configurations at start-up
// ---------------------------------------------------------------------------------------

/// How a case of the filter's table `filter/core/tests/data/invalid-configs.json` is recognised
/// as one of the SPEC's error classes (the table's wording is the filter's, not ours).
enum Class {
    /// Every substring occurs in the case's config text or its `path: reason` line.
    Has(&'static [&'static str]),
    /// Refused as "not a valid regex" although the pattern would compile once anchored as
    /// `^(?:…)$` (a `)` that closes the anchoring group, a `(` its `)` closes).
    RegexValidOnlyOnceAnchored,
}

/// The error classes of the SPEC the table must hold, each at least once: a class with no case
/// fails the check (the first unused case of each class is the one run).
const INVALID_CLASSES: &[(&str, Class)] = &[
    ("empty configuration", Class::Has(&["is empty"])),
    ("invalid JSON", Class::Has(&["invalid JSON"])),
    ("trailing data", Class::Has(&["trailing"])),
    ("not an object", Class::Has(&["expected an object, found"])),
    ("missing default", Class::Has(&["default: is required"])),
    ("unknown field", Class::Has(&["rulez", "unknown field"])),
    ("unknown operator", Class::Has(&["regexp", "unknown field"])),
    ("weight > 1000000", Class::Has(&["exceeds 1000000"])),
    ("negative weight", Class::Has(&["is negative"])),
    (
        "weight not an integer",
        Class::Has(&["expected an integer"]),
    ),
    ("weights sum to 0", Class::Has(&["sum to 0"])),
    ("duplicate subset", Class::Has(&["appears twice"])),
    (
        "stickyBy without one key",
        Class::Has(&["needs exactly one of header"]),
    ),
    ("invalid regex", Class::Has(&["is not a valid regex"])),
    (
        "regex valid only once anchored",
        Class::RegexValidOnlyOnceAnchored,
    ),
    (
        "CIDR prefix length",
        Class::Has(&["is not a CIDR block", "prefix length"]),
    ),
    (
        "CIDR address",
        Class::Has(&["is not a CIDR block", "is not an IP address"]),
    ),
    (
        "bad header name",
        Class::Has(&["is not a valid header name"]),
    ),
    (
        "template without {subset}",
        Class::Has(&["exactly once (found 0)"]),
    ),
    ("pseudo-header output", Class::Has(&["is a pseudo-header"])),
    ("reserved rule name", Class::Has(&["is reserved"])),
    ("duplicate rule name", Class::Has(&["must be unique"])),
    (
        "lower-case method",
        Class::Has(&["not an upper-case HTTP method"]),
    ),
    ("host with a port", Class::Has(&["must not contain a port"])),
    (
        "bad subset name",
        Class::Has(&["subset: \"", "[A-Za-z0-9._-]"]),
    ),
    ("two operators", Class::Has(&["has 2 operators"])),
    (
        "clusterHeader null without subsetHeader",
        Class::Has(&["is null"]),
    ),
    ("subsetHeader = clusterHeader", Class::Has(&["must differ"])),
    ("wrong type", Class::Has(&["expected a string, found"])),
    (
        "condition on the filter's own routing header",
        Class::Has(&[".match.headers[", "own routing header"]),
    ),
    (
        "stickyBy.header on the filter's own routing header",
        Class::Has(&["stickyBy.header", "own routing header"]),
    ),
];

impl Class {
    fn holds(&self, config: &str, error: &str) -> bool {
        match self {
            Class::Has(parts) => parts
                .iter()
                .all(|p| config.contains(p) || error.contains(p)),
            Class::RegexValidOnlyOnceAnchored => {
                error.contains("is not a valid regex")
                    && serde_json::from_str(config)
                        .is_ok_and(|c| regexes(&c).iter().any(|r| closes_before_it_opens(r)))
            }
        }
    }
}

/// Every `regex` value in a config.
fn regexes(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v.as_str()) {
                ("regex", Some(r)) => vec![r.to_string()],
                _ => regexes(v),
            })
            .collect(),
        serde_json::Value::Array(a) => a.iter().flat_map(regexes).collect(),
        _ => Vec::new(),
    }
}

/// Group nesting (outside escapes and `[...]`) drops below 0 and ends at 0: invalid as
/// written, balanced inside `(?:…)`.
fn closes_before_it_opens(re: &str) -> bool {
    let (mut depth, mut lowest, mut class) = (0i32, 0i32, false);
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' => class = true,
            ']' => class = false,
            '(' if !class => depth += 1,
            ')' if !class => depth -= 1,
            _ => {}
        }
        lowest = lowest.min(depth);
    }
    lowest < 0 && depth == 0
}

/// Several errors at once (from compile.rs `all_errors_are_reported_not_just_the_first`):
/// every one must be logged, and nothing of the config may serve.
const MULTI_ERROR: (&str, &[&str]) = (
    r#"{"clusterTemplate":"x","rules":[{"name":"a.b","route":{"split":[{"subset":"v1","weight":2000000}]}}],"default":{"subset":"!"}}"#,
    &[
        "clusterTemplate: \"x\" must contain {subset} exactly once (found 0)",
        "rules[0].name: \"a.b\" must be 1-63 characters of [A-Za-z0-9_-] (it names stats)",
        "rules[0].route.split[0].weight: 2000000 exceeds 1000000",
        "default.subset: \"!\" must be 1-63 characters of [A-Za-z0-9._-]",
    ],
);

struct InvalidCase {
    config: String,
    errors: Vec<String>,
}

/// The first unused case of every class of [`INVALID_CLASSES`] in the filter's table (read now,
/// so cases added to it count), then [`MULTI_ERROR`]; and the classes the table lacks.
fn invalid_cases() -> Result<(Vec<InvalidCase>, Vec<&'static str>), String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../filter/core/tests/data/invalid-configs.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let data: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let all: Vec<(&str, &str)> = data
        .as_array()
        .ok_or("invalid-configs.json is not an array")?
        .iter()
        .filter_map(|c| Some((c.get("config")?.as_str()?, c.get("error")?.as_str()?)))
        .collect();
    let mut out = Vec::new();
    let mut used = BTreeSet::new();
    let mut missing = Vec::new();
    for (label, class) in INVALID_CLASSES {
        match (0..all.len()).find(|i| !used.contains(i) && class.holds(all[*i].0, all[*i].1)) {
            Some(i) => {
                used.insert(i);
                out.push(InvalidCase {
                    config: all[i].0.to_string(),
                    errors: all[i].1.split(" | ").map(String::from).collect(),
                });
            }
            None => {
                println!("    MISSING: no case of class {label:?} in invalid-configs.json");
                missing.push(*label);
            }
        }
    }
    out.push(InvalidCase {
        config: MULTI_ERROR.0.to_string(),
        errors: MULTI_ERROR.1.iter().map(|s| s.to_string()).collect(),
    });
    Ok((out, missing))
}

fn logged(log: &str, error: &str) -> bool {
    log.contains(&format!("subset-router: invalid configuration: {error}"))
}

fn invalid_configs(cx: &mut Ctx) -> Result<(), String> {
    let (cases, missing) = invalid_cases()?;
    cx.row(
        "2 invalid configs: error classes in the filter's table",
        &format!(
            "each of the SPEC's {} classes has a case",
            INVALID_CLASSES.len()
        ),
        &if missing.is_empty() {
            format!("all {} present", INVALID_CLASSES.len())
        } else {
            format!("MISSING {}: {}", missing.len(), missing.join("; "))
        },
        missing.is_empty(),
    );
    // (a) `envoy --mode validate` on every case: it loads the wasm and runs on_configure, so
    // the filter's error line is in its output. Two at a time.
    let t = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(usize, Result<envoy::Validation, String>)>> =
        Default::default();
    let env = &cx.env;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(c) = cases.get(i) else { break };
                let v = Envoy::validate_only(
                    env,
                    &format!("invalid-{i:02}"),
                    &c.config,
                    &LaunchOptions::default(),
                );
                results.lock().unwrap().push((i, v));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let validate_secs = t.elapsed().as_secs_f64();
    let mut refused = 0;
    let mut bad = Vec::new();
    for (i, res) in &results {
        let c = &cases[*i];
        match res {
            Ok(v) if !v.ok && c.errors.iter().all(|e| logged(&v.output, e)) => refused += 1,
            Ok(v) => bad.push(format!(
                "#{i} {:?}: validate {}, missing line(s) {:?}",
                c.config.chars().take(60).collect::<String>(),
                if v.ok { "PASSED" } else { "failed" },
                c.errors
                    .iter()
                    .filter(|e| !logged(&v.output, e))
                    .collect::<Vec<_>>()
            )),
            Err(e) => bad.push(format!("#{i}: {e}")),
        }
    }
    cx.row(
        &format!("2 invalid configs: envoy --mode validate x{}", cases.len()),
        "each refused (exit 1), output has `subset-router: invalid configuration: <path: reason>` exactly",
        &format!(
            "{refused}/{} refused with the exact line(s) ({validate_secs:.1}s, {:.2}s each){}",
            cases.len(),
            validate_secs * 2.0 / cases.len().max(1) as f64,
            bad.first().map(|b| format!("; FIRST PROBLEM: {b}")).unwrap_or_default()
        ),
        refused == cases.len(),
    );
    for b in bad.iter().skip(1) {
        println!("      also: {b}");
    }

    // (b) real start-ups in the runtime under test (Docker by default): Envoy exits 1 with the
    // line in its log, and neither the front listener nor /ready ever answered.
    let picks: Vec<&InvalidCase> = ["exceeds 1000000", "is not a valid regex", "is empty"]
        .iter()
        .filter_map(|k| {
            cases
                .iter()
                .find(|c| c.errors.iter().any(|e| e.contains(k)))
        })
        .chain(cases.last())
        .collect();
    let mut started_ok = 0;
    for (n, c) in picks.iter().enumerate() {
        let t = Instant::now();
        let (mut envoy, _validation) =
            Envoy::launch(&cx.env, &format!("invalid-start-{n}"), &c.config)?;
        let (served, ready, exited) = watch_refusal(&mut envoy, Duration::from_secs(30));
        let log = envoy.logs();
        let lines_ok = c.errors.iter().all(|e| logged(&log, e));
        let exit1 = exited
            .as_deref()
            .is_some_and(|w| w.trim_end().ends_with(" 1"));
        let pass = exit1 && lines_ok && !served && !ready;
        started_ok += pass as usize;
        cx.row(
            &format!("2 invalid config start-up ({}) #{n}", cx.env.runtime_name()),
            &format!("exit 1, never serves, log: {}", c.errors.join(" + ")),
            &format!(
                "{} after {:.1}s; front answered: {served}; /ready LIVE: {ready}; line(s) in log: {lines_ok}",
                exited.clone().unwrap_or_else(|| "STILL RUNNING".into()),
                t.elapsed().as_secs_f64()
            ),
            pass,
        );
        if !pass {
            println!("--- Envoy log (excerpt) ---\n{}", envoy::log_excerpt(&log));
        }
    }
    cx.figure(
        "invalid configs refused (validate + real start-ups)",
        format!("{refused} + {started_ok}"),
    );
    Ok(())
}

/// Until Envoy exits (or `timeout`): did the front listener answer an HTTP request, did admin
/// `/ready` say LIVE, and how did it exit.
fn watch_refusal(envoy: &mut Envoy, timeout: Duration) -> (bool, bool, Option<String>) {
    let deadline = Instant::now() + timeout;
    let (mut served, mut ready) = (false, false);
    let probe = get_request("/", &[]);
    let mut polls = 0u32;
    loop {
        if one_shot(envoy.front(), &probe, Duration::from_millis(300)).is_ok() {
            served = true;
        }
        if let Ok(r) = Client::new(envoy.admin())
            .with_timeout(Duration::from_millis(300))
            .get("/ready", &[])
        {
            ready |= r.status == 200;
        }
        polls += 1;
        if polls.is_multiple_of(4) {
            if let Some(why) = envoy.exited() {
                return (served, ready, Some(why));
            }
        }
        if Instant::now() > deadline {
            return (served, ready, None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// 3. Live reload through ECDS under load
// ---------------------------------------------------------------------------------------
const MEASURE: u64 = 3000;
const RELOAD_IDS: u64 = 600;

fn reload_plugin(route: &str) -> String {
    format!(
        r#"{{"responseHeader": "x-routed-subset",
  "rules": [{{"name": "canary", "match": {{"pathPrefix": "/"}}, "route": {route}}}],
  "default": {{"subset": "v1"}}}}"#
    )
}

fn ecds_counter(envoy: &Envoy, what: &str) -> u64 {
    envoy
        .stats(&format!(
            "extension_config_discovery.http_filter.{}",
            envoy_config::ECDS_NAME
        ))
        .map(|m| stat(&m, &format!(".{what}")))
        .unwrap_or(0)
}

fn wait_counter(
    envoy: &Envoy,
    what: &str,
    above: u64,
    timeout: Duration,
) -> Result<Duration, String> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if ecds_counter(envoy, what) > above {
            return Ok(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!(
        "extension_config_discovery.http_filter.{}.{what} did not move within {timeout:?}",
        envoy_config::ECDS_NAME
    ))
}

fn live_reload(cx: &mut Ctx) -> Result<(), String> {
    let p90 = reload_plugin(
        r#"{"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}"#,
    );
    let invalid = reload_plugin(
        r#"{"split": [{"subset": "v1", "weight": 1000001}, {"subset": "v2", "weight": 10}]}"#,
    );
    let invalid_line = "rules[0].route.split[0].weight: 1000001 exceeds 1000000";
    let p50 = reload_plugin(
        r#"{"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}]}"#,
    );
    let sticky = reload_plugin(
        r#"{"split": [{"subset": "v1", "weight": 80}, {"subset": "v2", "weight": 20}], "stickyBy": {"header": "x-user-id"}}"#,
    );

    let opts = LaunchOptions {
        ecds: true,
        ..LaunchOptions::default()
    };
    let (mut envoy, validation) = Envoy::launch_with(&cx.hardened, "live-reload", &p90, &opts)?;
    if !validation.ok {
        return Err(format!(
            "validate rejected the ECDS config: {}",
            envoy::first_error_line(&validation.output)
        ));
    }
    envoy.wait_ready()?;
    println!(
        "    envoy `live-reload` ready (ECDS file {}/{}/{})",
        envoy.dir.display(),
        envoy::ECDS_DIR,
        envoy_config::ECDS_FILE
    );

    let ex = Expect {
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let labels = vec!["v1".to_string(), "v2".to_string()];
    let load = Load::start(LoadSpec {
        addr: envoy.front(),
        threads: 4,
        total: None,
        labels: labels.clone(),
        make: Arc::new(|seq| {
            let id = seq % RELOAD_IDS;
            (
                get_request(
                    &format!("/reload/{seq}"),
                    &[("x-user-id", &format!("user-{id:04}"))],
                ),
                id as u32,
            )
        }),
        check: Arc::new(move |r| ex.check(r)),
        checkpoints: vec![],
        sample: None,
    });

    // Phases: odd = measured window, even = swap in progress.
    let mut steps: Vec<(String, Result<Duration, String>)> = Vec::new();
    let mut phases = || -> Result<(), String> {
        load.set_phase(1);
        load.wait_more(MEASURE, Duration::from_secs(60));
        let swap =
            |label: &str, plugin: &str, counter: &str, phase: u32| -> Result<Duration, String> {
                load.set_phase(phase);
                let before = ecds_counter(&envoy, counter);
                let t = Instant::now();
                envoy.replace_ecds(&cx.env, plugin)?;
                let d = wait_counter(&envoy, counter, before, Duration::from_secs(20))
                    .map(|_| t.elapsed());
                // Workers pick the new filter config up through their thread-local slots.
                std::thread::sleep(Duration::from_millis(300));
                load.set_phase(phase + 1);
                load.wait_more(MEASURE, Duration::from_secs(60));
                println!("    swap {label}: {d:?}");
                d
            };
        steps.push((
            "invalid (weight 1000001)".into(),
            swap("invalid", &invalid, "config_fail", 2),
        ));
        steps.push(("50/50".into(), swap("50/50", &p50, "update_success", 4)));
        steps.push((
            "sticky 80/20".into(),
            swap("sticky 80/20", &sticky, "update_success", 6),
        ));
        Ok(())
    };
    let run = phases();
    let res = load.finish(true);
    run?;
    cx.count(res.sent, res.failures);
    for (label, d) in &steps {
        if let Err(e) = d {
            cx.row(
                &format!("3 reload: swap to {label}"),
                "Envoy notices the renamed file",
                &format!("ERROR: {e}"),
                false,
            );
        }
    }

    let window =
        |phase: u32| -> Vec<_> { res.records.iter().filter(|r| r.phase == phase).collect() };
    let split_row = |cx: &mut Ctx, label: &str, phase: u32, p_v2: f64| {
        let w = window(phase);
        let n = w.len() as u64;
        let v2 = w.iter().filter(|r| r.outcome == 1).count() as u64;
        let failed = w.iter().filter(|r| r.outcome == FAILED).count();
        let (lo, hi) = binomial_bounds(n, p_v2);
        cx.row(
            label,
            &format!("v2 {:.0}% of N={n}: [{lo}..{hi}]", p_v2 * 100.0),
            &format!(
                "v2 {v2} ({:.1}%), failed {failed}",
                100.0 * v2 as f64 / n.max(1) as f64
            ),
            failed == 0 && v2 >= lo && v2 <= hi && n >= MEASURE,
        );
    };
    split_row(cx, "3 reload: initial 90/10", 1, 0.10);

    let fails = ecds_counter(&envoy, "config_fail");
    let log = envoy.logs();
    let line = logged(&log, invalid_line);
    cx.row(
        "3 reload: invalid config rejected",
        &format!("ECDS config_fail = 1, log: {invalid_line}"),
        &format!(
            "config_fail {fails}, update_rejected {}, line in log: {line}",
            ecds_counter(&envoy, "update_rejected")
        ),
        fails == 1 && line,
    );
    split_row(
        cx,
        "3 reload: after the invalid swap, 90/10 keeps serving",
        3,
        0.10,
    );
    split_row(cx, "3 reload: after swap to 50/50", 5, 0.50);

    // Sticky 80/20: every id on one subset; share of ids on v2 ~ 20%.
    let w = window(7);
    let mut by_id: BTreeMap<u32, BTreeSet<u16>> = BTreeMap::new();
    for r in &w {
        if r.outcome != FAILED {
            by_id.entry(r.key).or_default().insert(r.outcome);
        }
    }
    let split_ids = by_id.values().filter(|s| s.len() > 1).count();
    let ids_v2 = by_id
        .values()
        .filter(|s| s.len() == 1 && s.contains(&1))
        .count() as u64;
    let ids = by_id.len() as u64;
    let (lo, hi) = binomial_bounds(ids, 0.20);
    let failed = w.iter().filter(|r| r.outcome == FAILED).count();
    cx.row(
        "3 reload: after swap to sticky 80/20",
        &format!("{ids} ids: each on 1 subset, ids on v2 20% [{lo}..{hi}]"),
        &format!(
            "{} requests, ids on v2 {ids_v2} ({:.1}%), ids on 2 subsets {split_ids}, failed {failed}",
            w.len(),
            100.0 * ids_v2 as f64 / ids.max(1) as f64
        ),
        failed == 0 && split_ids == 0 && ids_v2 >= lo && ids_v2 <= hi && ids == RELOAD_IDS,
    );
    let ok_swaps = ecds_counter(&envoy, "update_success");
    cx.row(
        "3 reload: whole run under load",
        "0 failed requests (resets, errors, non-2xx); 3 valid configs applied (update_success 3)",
        &format!(
            "{} requests at {:.0}/s, {} failed, {} graceful reconnects; update_success {ok_swaps}{}",
            res.sent,
            res.rps(),
            res.failures,
            res.reconnects,
            res.failure_samples.first().map(|s| format!(" (first failure: {s})")).unwrap_or_default()
        ),
        res.failures == 0 && ok_swaps == 3,
    );
    // The rejected update logs the filter's lines and Envoy's "failed to load" lines; any
    // other wasm error would be a failure.
    let expected_rejection = [
        "subset-router: invalid configuration:",
        "subset-router: configuration rejected",
        "Failed to configure base Wasm plugin",
        "Plugin subset_router failed to load",
        "Plugin configured to fail closed failed to load",
    ];
    let wasm_fail = filter_failure_lines(&log)
        .into_iter()
        .filter(|l| !expected_rejection.iter().any(|e| l.contains(e)))
        .collect::<Vec<_>>();
    if !wasm_fail.is_empty() {
        cx.row(
            "3 reload: Envoy log",
            "no wasm failure besides the rejected config",
            &wasm_fail[0],
            false,
        );
    }
    cx.figure(
        "live reload: requests / failed / reconnects",
        format!("{} / {} / {}", res.sent, res.failures, res.reconnects),
    );
    cx.figure(
        "live reload: configs rejected by Envoy (ECDS config_fail)",
        fails.to_string(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Hostile requests over raw sockets
// ---------------------------------------------------------------------------------------
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
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
const STICKY_SUBSETS: [&str; 2] = ["v1", "v2"];

fn raw(start: impl AsRef<[u8]>, host: Option<&str>, headers: &[u8]) -> Vec<u8> {
    let mut v = start.as_ref().to_vec();
    v.extend_from_slice(b"\r\n");
    if let Some(h) = host {
        v.extend_from_slice(format!("host: {h}\r\n").as_bytes());
    }
    v.extend_from_slice(headers);
    v.extend_from_slice(b"\r\n");
    v
}

fn hostile_cases() -> Vec<(&'static str, Vec<u8>, Want)> {
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

const HOSTILE_REPEAT: usize = 3;

fn hostile_requests(cx: &mut Ctx) -> Result<(), String> {
    let plugin = r#"{
      "responseHeader": "x-routed-subset",
      "rules": [
        {"name": "debug-ua", "match": {"headers": [{"name": "user-agent", "regex": "(?i)debug.*"}]}, "route": {"subset": "v2"}},
        {"name": "cookie", "match": {"cookies": [{"name": "c99", "exact": "v99"}]}, "route": {"subset": "v2"}},
        {"name": "query", "match": {"query": [{"name": "debug", "exact": "1"}]}, "route": {"subset": "v3"}},
        {"name": "hosts", "match": {"hosts": ["*.example.com"]}, "route": {"subset": "v3"}},
        {"name": "trusted", "match": {"sourceCidrs": ["192.0.2.0/24"], "headers": [{"name": "x-trusted", "present": true}]},
         "route": {"subset": "v3"}},
        {"name": "sticky", "match": {"pathPrefix": "/sticky"},
         "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}], "stickyBy": {"cookie": "uid"}}},
        {"name": "canary", "match": {"pathPrefix": "/after/"},
         "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}}
      ],
      "default": {"subset": "v1"}
    }"#;
    // Every request here that no rule may match falls to the fixed default, v1, so its answer is
    // exact: a wrong match of a header, cookie, query, host or trusted rule answers v2 or v3 (the
    // splits, which also hold v1, only match /sticky and /after/, paths those requests avoid).
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

// ---------------------------------------------------------------------------------------
// 5. Soak
// ---------------------------------------------------------------------------------------
fn soak_total() -> u64 {
    std::env::var("SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// One rule of the soak config: the requests it decides (by path prefix) and its route.
struct SoakRule {
    name: String,
    split: Vec<(&'static str, u64)>,
}

/// Soak requests carrying `user-agent: debug` (1 in `SOAK_DEBUG_EVERY`) go to the `debug` rule.
const SOAK_DEBUG_EVERY: u64 = 17;
const SOAK_DEBUG_SUBSET: &str = "v2";

fn soak(cx: &mut Ctx) -> Result<(), String> {
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

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------
type ScenarioFn = fn(&mut Ctx) -> Result<(), String>;

// ---------------------------------------------------------------------------------------
// 6. Envoy Gateway's shape: the filter disabled at the listener, enabled per route
// ---------------------------------------------------------------------------------------
const EG_FORGED_N: u64 = 1000;

/// Envoy Gateway adds an EnvoyExtensionPolicy's filter disabled at the listener and enables
/// it per targeted route (`typed_per_filter_config`). The routes here are those of
/// examples/envoy-gateway: HTTPRoute `app` (`x-subset: v1` and the default rule -> v1) and
/// HTTPRoute `app-v2` (`x-subset: v2` -> v2). A policy on the Gateway enables the filter on
/// every route: a forged `x-subset: v2` is removed and never reaches v2. A policy on HTTPRoute
/// `app` alone leaves the `x-subset: v2` route without the filter: the forged header reaches
/// v2 and nothing counts it -- the leak the README warns about, demonstrated here.
fn envoy_gateway_shapes(cx: &mut Ctx) -> Result<(), String> {
    let plugin = r#"{"subsetHeader": "x-subset", "rules": [], "default": {"subset": "v1"}}"#;
    let every_route = ["v1", "v2", "v3", envoy_config::FINAL_ROUTE];
    let app_only = ["v1", envoy_config::FINAL_ROUTE];
    for (shape, routes, leaks) in [
        ("policy on the Gateway (every route)", &every_route[..], false),
        ("policy on HTTPRoute app only", &app_only[..], true),
    ] {
        let opts = LaunchOptions {
            filter_routes: Some(routes.iter().map(|r| r.to_string()).collect()),
            ..LaunchOptions::default()
        };
        let name = if leaks { "eg-one-route" } else { "eg-every-route" };
        let envoy = Envoy::start_with(&cx.hardened, name, plugin, &opts)?;
        let before = envoy.stats("subset_router")?;
        let mut conn = Conn::new(envoy.front());
        let mut served: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..EG_FORGED_N {
            let req = format!(
                "GET /eg/{i} HTTP/1.1\r\nhost: subset-router.test\r\nx-subset: v2\r\n\r\n"
            );
            let by = match conn.send(req.as_bytes()) {
                Ok(r) if r.status == 200 => r.header("x-served-by").unwrap_or("-").to_string(),
                Ok(r) => format!("status {}", r.status),
                Err(_) => "error".to_string(),
            };
            *served.entry(by).or_default() += 1;
        }
        cx.count(EG_FORGED_N, 0);
        let after = envoy.stats("subset_router")?;
        let spoofed = stat(&after, "subset_router.spoofed_header_removed")
            - stat(&before, "subset_router.spoofed_header_removed");
        let v1 = served.get("v1").copied().unwrap_or(0);
        let v2 = served.get("v2").copied().unwrap_or(0);
        let obs = served
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(" / ");
        if leaks {
            cx.row(
                &format!("6 Envoy Gateway shape: {shape}"),
                &format!(
                    "the leak: {EG_FORGED_N} forged x-subset: v2 reach v2 (route without the \
                     filter), spoofed_header_removed +0"
                ),
                &format!("{obs}; spoofed_header_removed +{spoofed}"),
                v2 == EG_FORGED_N && spoofed == 0,
            );
        } else {
            cx.row(
                &format!("6 Envoy Gateway shape: {shape}"),
                &format!(
                    "0 of {EG_FORGED_N} forged x-subset: v2 reach v2 (all v1), \
                     spoofed_header_removed +{EG_FORGED_N}"
                ),
                &format!("{obs}; spoofed_header_removed +{spoofed}"),
                v1 == EG_FORGED_N && v2 == 0 && spoofed == EG_FORGED_N,
            );
        }
    }
    Ok(())
}

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    ("forged_headers", forged_headers),
    ("invalid_configs", invalid_configs),
    ("live_reload", live_reload),
    ("hostile_requests", hostile_requests),
    ("soak", soak),
    ("envoy_gateway_shapes", envoy_gateway_shapes),
];

fn main() {
    let Some(selection) = subset_router_it::select_scenarios("reliability", SCENARIOS) else {
        return;
    };
    let selected = &selection.run;

    let t0 = Instant::now();
    let env = match Env::from_env(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("subset-router reliability: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let hardened = env.with_hardened();
    println!("subset-router reliability suite ({} build)", env.build.name());
    println!("  {}", env.describe());
    println!(
        "  filter: {} ({} bytes)",
        env.build.file().display(),
        std::fs::metadata(env.build.file()).map(|m| m.len()).unwrap_or(0)
    );
    println!("  scratch: {}", env.work_dir.display());
    println!(
        "  scenarios: {}",
        selected
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut cx = Ctx {
        env,
        hardened,
        rows: Vec::new(),
        figures: Vec::new(),
        failed: false,
        requests: 0,
        request_failures: 0,
    };
    let mut timings = Vec::new();
    for (name, f) in selected.iter().copied() {
        println!("\n=== {name} ===");
        let t = Instant::now();
        let msg = subset_router_it::run_caught(|| f(&mut cx));
        if let Some(e) = msg {
            println!("    ERROR: {e}");
            cx.row(name, "", &format!("ERROR: {}", first_line(&e)), false);
        }
        let d = t.elapsed();
        println!("    ({name}: {:.1}s)", d.as_secs_f64());
        timings.push((*name, d));
    }

    println!(
        "\n=== subset-router reliability: checks ({} runtime) ===\n",
        cx.env.runtime_name()
    );
    print!(
        "{}",
        render(["check", "expected", "observed", "verdict"], &cx.rows)
    );
    let (requests, failures) = (cx.requests, cx.request_failures);
    cx.figures.insert(
        0,
        (
            "requests sent (all scenarios) / failed".into(),
            format!("{requests} / {failures}"),
        ),
    );
    println!("\n=== figures ===\n");
    let fig_rows: Vec<[String; 4]> = cx
        .figures
        .iter()
        .map(|(k, v)| [k.clone(), v.clone(), String::new(), String::new()])
        .collect();
    for line in render(["figure", "value", "", ""], &fig_rows).lines() {
        // Two columns are enough here.
        let cols: Vec<&str> = line.split('|').collect();
        println!(
            "|{}|{}|",
            cols.get(1).unwrap_or(&""),
            cols.get(2).unwrap_or(&"")
        );
    }
    println!(
        "\ntimings: {}; total {:.1}s",
        timings
            .iter()
            .map(|(n, d)| format!("{n} {:.1}s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        t0.elapsed().as_secs_f64()
    );
    if !selection.not_run.is_empty() {
        println!(
            "not run (left out by the scenario filter): {}",
            selection.not_run.join(", ")
        );
    }
    let nfail = cx.rows.iter().filter(|r| r[3] != "PASS").count();
    println!(
        "result: {} checks, {} failed -> {}",
        cx.rows.len(),
        nfail,
        if cx.failed { "FAIL" } else { "PASS" }
    );
    if cx.failed {
        std::process::exit(1);
    }
}
