//! reliability scenario 2: Invalid configurations at start-up

use super::*;

/// How a case of the filter's table `filter/core/tests/data/invalid-configs.json` is recognised
/// as one of the documented error classes (the table's wording is the filter's, not ours).
pub(super) enum Class {
    /// Every substring occurs in the case's config text or its `path: reason` line.
    Has(&'static [&'static str]),
    /// Refused as "not a valid regex" although the pattern would compile once anchored as
    /// `^(?:…)$` (a `)` that closes the anchoring group, a `(` its `)` closes).
    RegexValidOnlyOnceAnchored,
}

/// The documented error classes the table must hold, each at least once: a class with no case
/// fails the check (the first unused case of each class is the one run).
pub(super) const INVALID_CLASSES: &[(&str, Class)] = &[
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
pub(super) fn regexes(v: &serde_json::Value) -> Vec<String> {
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
pub(super) fn closes_before_it_opens(re: &str) -> bool {
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
pub(super) const MULTI_ERROR: (&str, &[&str]) = (
    r#"{"clusterTemplate":"x","rules":[{"name":"a.b","route":{"split":[{"subset":"v1","weight":2000000}]}}],"default":{"subset":"!"}}"#,
    &[
        "clusterTemplate: \"x\" must contain {subset} exactly once (found 0)",
        "rules[0].name: \"a.b\" must be 1-63 characters of [A-Za-z0-9_-] (it names stats)",
        "rules[0].route.split[0].weight: 2000000 exceeds 1000000",
        "default.subset: \"!\" must be 1-63 characters of [A-Za-z0-9._-]",
    ],
);

pub(super) struct InvalidCase {
    config: String,
    errors: Vec<String>,
}

/// The first unused case of every class of [`INVALID_CLASSES`] in the filter's table (read now,
/// so cases added to it count), then [`MULTI_ERROR`]; and the classes the table lacks.
pub(super) fn invalid_cases() -> Result<(Vec<InvalidCase>, Vec<&'static str>), String> {
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

pub(super) fn logged(log: &str, error: &str) -> bool {
    log.contains(&format!("subset-router: invalid configuration: {error}"))
}

pub(super) fn invalid_configs(cx: &mut Ctx) -> Result<(), String> {
    let (cases, missing) = invalid_cases()?;
    cx.row(
        "2 invalid configs: error classes in the filter's table",
        &format!(
            "each of the documented {} classes has a case",
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
pub(super) fn watch_refusal(envoy: &mut Envoy, timeout: Duration) -> (bool, bool, Option<String>) {
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
