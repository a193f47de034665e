//! `observability-scrape`: a real Envoy's `/stats/prometheus`, for the checks of
//! examples/observability (scripts/test-observability.sh).
//!
//! ```text
//! observability-scrape OUT.prom [--before BEFORE.prom] [--config CONFIG.json]
//! ```
//!
//! (`--config` defaults to examples/progressive/config.json; `--before` also saves the scrape
//! taken right after start-up, before any request: with OUT.prom, two real samples of every
//! series, which tests/observability/replay_rules.py turns into a `promtool test rules` file.)
//!
//! Boots the suite's Envoy (tests/src/envoy/: the build `FILTER` names, the runtime
//! `ENVOY_RUNTIME` names, the project's renderer with `stats_tags`) with the plugin config
//! delivered by file-based ECDS, as Istio delivers a WasmPlugin; sends traffic — sticky users,
//! requests without the sticky key, the debug rule, and requests with a forged
//! `x-upstream-cluster` — then pushes an invalid configuration through ECDS, which Envoy
//! rejects (`extension_config_discovery.http_filter.subset_router.config_fail`), and checks
//! that the old one keeps serving. A second listener runs the same configuration with a
//! top-level `name` ([`NAMED`]) and a fleet guard whose `prometheus` cluster reaches nothing,
//! so the scrape also holds a named configuration's series (label `instance`) and the fleet
//! counters moving (`fleet_query_failed`). Writes the scrape taken after all that to OUT.prom,
//! and exits 1 unless it shows what was done: the decisions family equal to the requests per
//! rule and subset (per configuration), the forged requests in `spoofed_header_removed`, the
//! rejected config in `config_fail`, the ramp gauge labelled `rule`, the guard stats labelled
//! `subset`, the named configuration's failed fleet rounds.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use subset_router_it::envoy::LaunchOptions;
use subset_router_it::prometheus;
use subset_router_it::{send, send_same, Env, Envoy, Expect, Tally};

const USAGE: &str =
    "usage: observability-scrape OUT.prom [--before BEFORE.prom] [--config CONFIG.json]";

/// A configuration the filter rejects (a weight above 1,000,000): Envoy keeps the last good one.
const INVALID: &str =
    r#"{"rules": [], "default": {"split": [{"subset": "v1", "weight": 1000001}]}}"#;

/// The second listener's configuration name.
const NAMED: &str = "checkout";

/// `plugin` with a top-level `name` and, on each guard, a fleet query through cluster
/// `prometheus` every second.
fn named_variant(plugin: &str) -> Result<String, String> {
    let mut v: serde_json::Value =
        serde_json::from_str(plugin).map_err(|e| format!("plugin config: {e}"))?;
    let obj = v.as_object_mut().ok_or("plugin config: not an object")?;
    obj.insert("name".into(), NAMED.into());
    for g in obj
        .get_mut("guards")
        .and_then(|g| g.as_array_mut())
        .into_iter()
        .flatten()
    {
        if let Some(g) = g.as_object_mut() {
            g.insert(
                "fleet".into(),
                serde_json::json!({"cluster": "prometheus", "selector": "app=\"checkout\"",
                                   "intervalSeconds": 1, "timeoutMs": 500}),
            );
        }
    }
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}

/// The scrape's samples of one configuration: without an `instance` label (`None`) or with
/// `instance` = the name.
fn of_instance(scrape: &prometheus::Scrape, instance: Option<&str>) -> prometheus::Scrape {
    let mut out = scrape.clone();
    out.samples
        .retain(|s| s.labels.get("instance").map(String::as_str) == instance);
    for s in &mut out.samples {
        s.labels.remove("instance");
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = None;
    let mut config = root.join("examples/progressive/config.json");
    let mut before = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => match it.next() {
                Some(c) => config = PathBuf::from(c),
                None => return usage("--config needs a file"),
            },
            "--before" => match it.next() {
                Some(b) => before = Some(PathBuf::from(b)),
                None => return usage("--before needs a file"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            s if out.is_none() && !s.starts_with('-') => out = Some(PathBuf::from(s)),
            s => return usage(&format!("unexpected argument {s:?}")),
        }
    }
    let Some(out) = out else {
        return usage("no output file");
    };
    match run(&root, &config, &out, before.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("observability-scrape: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("observability-scrape: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn run(root: &Path, config: &Path, out: &Path, before: Option<&Path>) -> Result<(), String> {
    let plugin =
        std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
    let env = Env::from_env(&root.join("target/tmp"))?;
    println!(
        "observability-scrape: {} build, {}",
        env.build.name(),
        env.describe()
    );
    let named = named_variant(&plugin)?;
    // Nothing listens there: every fleet round of the named configuration fails.
    let nowhere = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())?;
    let opts = LaunchOptions {
        ecds: true,
        more_fronts: vec![named.clone()],
        external_clusters: vec![("prometheus".into(), nowhere)],
        ..LaunchOptions::default()
    };
    let envoy = Envoy::start_with(&env, "observability", &plugin, &opts)?;
    println!(
        "  envoy ready (front :{}, admin :{}, plugin config {} by ECDS)",
        envoy.ports.front,
        envoy.ports.admin,
        config.display()
    );

    if let Some(path) = before {
        let text = prometheus::fetch(&envoy)?;
        std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "  /stats/prometheus before any request -> {}",
            path.display()
        );
    }
    let expect = Expect {
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let mut c = envoy.client();
    let sticky = send(&mut c, 300, &expect, |i| {
        ("/".into(), vec![("x-user-id".into(), format!("user-{i}"))])
    });
    let no_key = send_same(&mut c, 50, &expect, "/", &[]);
    let debug = send_same(&mut c, 30, &expect, "/", &[("user-agent", "debug")]);
    let forged = send_same(
        &mut c,
        40,
        &expect,
        "/",
        &[
            ("x-upstream-cluster", "internal-admin"),
            ("x-user-id", "mallory"),
        ],
    );

    // A configuration the filter refuses, through ECDS: Envoy must reject it and keep serving
    // with the last good one.
    let fails = || ecds(&envoy, "config_fail");
    let before = fails();
    envoy.replace_ecds(&env, INVALID)?;
    let t = Instant::now();
    while fails() <= before {
        if t.elapsed() > Duration::from_secs(20) {
            return Err(format!(
                "ECDS config_fail did not move within 20s after an invalid config\n{}",
                envoy.logs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "  invalid config pushed by ECDS: rejected in {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let after = send(&mut c, 30, &expect, |i| {
        ("/".into(), vec![("x-user-id".into(), format!("user-{i}"))])
    });
    // The named configuration: sticky users and testers; then its fleet rounds fail.
    let mut c2 = subset_router_it::Client::new(envoy.front_n(1));
    let named_sticky = send(&mut c2, 100, &expect, |i| {
        ("/".into(), vec![("x-user-id".into(), format!("user-{i}"))])
    });
    let named_debug = send_same(&mut c2, 10, &expect, "/", &[("user-agent", "debug")]);
    let ns = env.build.stat_prefix();
    let failed_rounds = || {
        envoy
            .raw_stats()
            .ok()
            .and_then(|m| {
                m.get(&format!(
                    "{ns}subset_router.{NAMED}.guard.v2.fleet_query_failed"
                ))
                .copied()
            })
            .unwrap_or(0)
    };
    let t = Instant::now();
    while failed_rounds() < 2 {
        if t.elapsed() > Duration::from_secs(15) {
            return Err(format!(
                "{NAMED}: fleet_query_failed below 2 after 15 s (a fleet round a second, to a \
                 cluster that reaches nothing)"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut errors = Vec::new();
    for (what, t) in [
        ("sticky", &sticky),
        ("no key", &no_key),
        ("debug", &debug),
        ("forged", &forged),
        ("after reject", &after),
        ("named sticky", &named_sticky),
        ("named debug", &named_debug),
    ] {
        if t.errors > 0 {
            errors.push(format!(
                "{what}: {} errors, first: {:?}",
                t.errors,
                t.error_samples.first()
            ));
        }
    }
    let text = prometheus::fetch(&envoy)?;
    std::fs::write(out, &text).map_err(|e| format!("{}: {e}", out.display()))?;
    let scrape = prometheus::parse(&text)?;
    println!(
        "  /stats/prometheus: {} samples, {} names -> {}",
        scrape.samples.len(),
        scrape.names().len(),
        out.display()
    );

    // Decisions: canary takes everything the debug rule does not.
    let mut canary = Tally::default();
    for t in [&sticky, &no_key, &forged, &after] {
        canary.merge(t);
    }
    let mut expected: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for subset in prometheus_subsets(&plugin)? {
        expected.insert(vec!["canary".into(), subset.clone()], canary.get(&subset));
    }
    expected.insert(vec!["debug".into(), "v2".into()], debug.get("v2"));
    expected.insert(vec!["default".into(), "v1".into()], 0);
    let p = prometheus::filter_prefix(env.build.stat_prefix());
    let decisions = format!("{p}subset_router_rule_subset");
    let unnamed = of_instance(&scrape, None);
    match prometheus::compare_family(&unnamed, &decisions, &["rule", "subset"], &expected) {
        Ok(m) => println!("  {m}: {}", describe(&expected)),
        Err(e) => errors.push(format!("{decisions}: {e}")),
    }
    // The named configuration's: the same family, labelled instance="checkout".
    let mut named_expected: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for subset in prometheus_subsets(&plugin)? {
        named_expected.insert(
            vec!["canary".into(), subset.clone()],
            named_sticky.get(&subset),
        );
    }
    named_expected.insert(vec!["debug".into(), "v2".into()], named_debug.get("v2"));
    named_expected.insert(vec!["default".into(), "v1".into()], 0);
    let named_scrape = of_instance(&scrape, Some(NAMED));
    match prometheus::compare_family(
        &named_scrape,
        &decisions,
        &["rule", "subset"],
        &named_expected,
    ) {
        Ok(m) => println!("  instance=\"{NAMED}\": {m}: {}", describe(&named_expected)),
        Err(e) => errors.push(format!("{decisions}{{instance=\"{NAMED}\"}}: {e}")),
    }
    match named_scrape.value(
        &format!("{p}subset_router_guard_fleet_query_failed"),
        &[("subset", "v2")],
    ) {
        Some(v) if v >= 2.0 => println!(
            "  {p}subset_router_guard_fleet_query_failed{{instance=\"{NAMED}\",subset=\"v2\"}} {v} (no metrics server)"
        ),
        got => errors.push(format!(
            "{p}subset_router_guard_fleet_query_failed{{instance=\"{NAMED}\",subset=\"v2\"}}: {got:?}, expected >= 2"
        )),
    }
    let scrape = unnamed;
    let forged_n = forged.total as f64;
    let no_key_n = no_key.total as f64;
    let checks = [
        Check::exact(
            format!("{p}subset_router_spoofed_header_removed"),
            &[],
            forged_n,
            "forged requests",
        ),
        Check::exact(
            format!("{p}subset_router_sticky_key_missing"),
            &[],
            no_key_n,
            "requests without x-user-id",
        ),
        Check {
            name: format!("{p}subset_router_rule_ramp_ppm"),
            labels: &[("rule", "canary")],
            range: (0.0, 1e6),
            what: "a share in ppm",
        },
        Check::exact(
            format!("{p}subset_router_guard_open"),
            &[("subset", "v2")],
            0.0,
            "closed",
        ),
        Check::exact(
            format!("{p}subset_router_guard_tripped"),
            &[("subset", "v2")],
            0.0,
            "no trip",
        ),
        Check::exact(
            format!("{p}subset_router_guard_diverted"),
            &[("subset", "v2")],
            0.0,
            "nothing diverted",
        ),
        Check::exact(
            format!("{p}subset_router_guard_undivertable"),
            &[("subset", "v2")],
            0.0,
            "nothing undivertable",
        ),
        Check::exact(
            format!("{p}subset_router_host_call_failed"),
            &[],
            0.0,
            "no failure",
        ),
    ];
    for c in checks {
        let (lo, hi) = c.range;
        let want = if lo == hi {
            format!("= {lo} ({})", c.what)
        } else {
            format!("in {lo}..={hi} ({})", c.what)
        };
        match scrape.value(&c.name, c.labels) {
            Some(v) if (lo..=hi).contains(&v) => {
                println!("  {}{} {v} {want}", c.name, fmt_labels(c.labels))
            }
            got => errors.push(format!(
                "{}{}: {got:?}, expected {want}",
                c.name,
                fmt_labels(c.labels)
            )),
        }
    }
    let rejected: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| {
            s.name.starts_with("envoy_extension_config_discovery")
                && s.name.ends_with("config_fail")
        })
        .collect();
    match rejected.as_slice() {
        [s] if s.value >= 1.0 => println!(
            "  {}{} {} (the invalid config)",
            s.name,
            fmt_map(&s.labels),
            s.value
        ),
        other => errors.push(format!(
            "ECDS config_fail: {other:?}, expected one series >= 1"
        )),
    }
    if errors.is_empty() {
        println!("observability-scrape: PASS ({} build)", env.build.name());
        Ok(())
    } else {
        Err(errors.join("\n  "))
    }
}

/// One labelled sample the scrape must print, with its value in `range` (inclusive).
struct Check {
    name: String,
    labels: &'static [(&'static str, &'static str)],
    range: (f64, f64),
    what: &'static str,
}

impl Check {
    fn exact(
        name: String,
        labels: &'static [(&'static str, &'static str)],
        v: f64,
        what: &'static str,
    ) -> Check {
        Check {
            name,
            labels,
            range: (v, v),
            what,
        }
    }
}

/// Admin `/stats` value of `extension_config_discovery.http_filter.subset_router.<what>`.
fn ecds(envoy: &Envoy, what: &str) -> u64 {
    let name = format!(
        "extension_config_discovery.http_filter.{}.{what}",
        envoy_config::ECDS_NAME
    );
    envoy
        .stats(&format!("^{}$", name.replace('.', "\\.")))
        .ok()
        .and_then(|m| m.get(&name).copied())
        .unwrap_or(0)
}

/// The subsets of the plugin config's canary split.
fn prometheus_subsets(plugin: &str) -> Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_str(plugin).map_err(|e| e.to_string())?;
    let rule = v["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "canary"))
        .ok_or(
            "the config has no rule named canary (use examples/progressive/config.json or alike)",
        )?;
    Ok(rule["route"]["split"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["subset"].as_str().map(String::from))
        .collect())
}

fn describe(m: &BTreeMap<Vec<String>, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{}={v}", k.join("/")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt_labels(l: &[(&str, &str)]) -> String {
    format!(
        "{{{}}}",
        l.iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",")
    )
}

fn fmt_map(l: &prometheus::Labels) -> String {
    format!(
        "{{{}}}",
        l.iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",")
    )
}
