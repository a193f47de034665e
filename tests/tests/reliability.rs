//! Reliability and security of the filter in a real Envoy 1.40:
//!
//! 1. `forged_headers`: 1,000 requests forging `x-upstream-cluster` / `x-subset` (mixed case,
//!    repeated, odd whitespace) reach only clusters the rules chose.
//! 2. `invalid_configs`: invalid plugin configs (the filter's own table of `path: reason`
//!    errors, which must hold a case of every documented error class): `envoy --mode validate`
//!    and real start-ups refuse them and log the exact line; nothing ever serves.
//! 3. `live_reload`: the filter config delivered by ECDS from a watched file, swapped by rename
//!    under continuous load: 90/10 -> invalid -> 50/50 -> sticky 80/20; no request fails, the
//!    invalid one is rejected, splits measured.
//! 4. `hostile_requests`: raw-socket requests (60 KiB header, 100 cookies, non-UTF-8 bytes,
//!    malformed cookies, huge query, bad percent-encoding, no :authority): each answered by
//!    exactly the subset the rules give (the fixed default where none may match) or refused by
//!    Envoy; the filter never fails a request nor the VM; later requests route. The same Envoy
//!    then takes requests from eight loopback source addresses (sockets bound to 127.0.0.1-8):
//!    `sourceCidrs` rules match exactly their addresses, `stickyBy` `sourceIp` keeps each
//!    source on the subset the filter's core computes for it.
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
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subset_router_it::envoy::{self, FilterBuild, LaunchOptions};
use subset_router_it::load::{get_request, one_shot, rss_kib, Conn, Load, LoadSpec, FAILED};
use subset_router_it::suite::{Outcome, Suite, SuiteContext};
use subset_router_it::*;

#[path = "reliability/envoy_gateway.rs"]
mod envoy_gateway;
#[path = "reliability/forged_headers.rs"]
mod forged_headers;
#[path = "reliability/hostile_requests.rs"]
mod hostile_requests;
#[path = "reliability/invalid_configs.rs"]
mod invalid_configs;
#[path = "reliability/live_reload.rs"]
mod live_reload;
#[path = "reliability/soak.rs"]
mod soak;
use envoy_gateway::*;
use forged_headers::*;
use hostile_requests::*;
use invalid_configs::*;
use live_reload::*;
use soak::*;

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

impl SuiteContext for Ctx {
    fn scenario_failed(&mut self, scenario: &str, observed: &str) {
        self.row(scenario, "", observed, false);
    }
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
// main
// ---------------------------------------------------------------------------------------
type ScenarioFn = fn(&mut Ctx) -> Result<(), String>;

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    ("forged_headers", forged_headers),
    ("invalid_configs", invalid_configs),
    ("live_reload", live_reload),
    ("hostile_requests", hostile_requests),
    ("soak", soak),
    ("envoy_gateway_shapes", envoy_gateway_shapes),
];

fn main() {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let Some(suite) = Suite::start("reliability", SCENARIOS, scratch) else {
        return;
    };
    let env = suite.env();
    let mut cx = Ctx {
        env: env.clone(),
        hardened: env.with_hardened(),
        rows: Vec::new(),
        figures: Vec::new(),
        failed: false,
        requests: 0,
        request_failures: 0,
    };
    let title = format!(
        "subset-router reliability suite ({} build)",
        env.build.name()
    );
    let timings = suite.run(&title, &mut cx);

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
    println!("\n{timings}");
    suite.finish(Outcome {
        count: cx.rows.len(),
        unit: "checks",
        failed: cx.rows.iter().filter(|r| r[3] != "PASS").count(),
        pass: !cx.failed,
    });
}
