//! Harness for the subset-router integration and reliability suites: renders each scenario's
//! Envoy config with the project's renderer (envoy/config), runs Envoy 1.40 (Docker container
//! or native binary) with the built filter — `FILTER=wasm` (`subset_router.wasm`) or
//! `FILTER=native` (`libsubset_router.so`) — sends real HTTP requests and compares what it
//! observes with the rollout each scenario models. The scenarios live in `tests/*.rs`.

pub mod envoy;
pub mod http;
/// Raw requests, a keep-alive load generator and RSS (reliability suite).
pub mod load;
/// `/stats/prometheus`: fetch, parse, compare the filter's labelled families.
pub mod prometheus;
pub mod report;

pub use envoy::{Env, Envoy, Runtime};
pub use http::{Client, Response};
pub use report::{binomial_bounds, within_binomial, Expect, ExpectedStats, Table, Tally};

/// `CI=true` (or `1`): whatever would be skipped locally (an empty scenario selection, a check
/// that cannot run here) is a failure instead.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The scenarios a suite runs, and those the filters left out (named in its summary).
pub struct Selection<'a, F> {
    pub run: Vec<&'a (&'a str, F)>,
    pub not_run: Vec<&'a str>,
}

/// Scenario selection for the suites' own `main`s (harness = false): arguments that do not
/// start with `-` and the `SCENARIO` variable (comma or space separated) are substring
/// filters; libtest-style flags (`--test-threads=1`, `--nocapture`, …) are accepted and
/// ignored. `--list` prints the names. Returns `None` when there is nothing to run: after
/// `--list`, or when the filters match no scenario, which prints `SKIPPED: …` and, under
/// `CI=true`, exits 1.
pub fn select_scenarios<'a, F>(
    suite: &str,
    scenarios: &'a [(&'a str, F)],
) -> Option<Selection<'a, F>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in scenarios {
            println!("{name}: test");
        }
        return None;
    }
    let mut filters: Vec<String> = Vec::new();
    let mut skip_next = false;
    for a in &args {
        if skip_next {
            skip_next = false;
        } else if a == "--test-threads" || a == "--skip" || a == "--format" || a == "--color" {
            skip_next = true;
        } else if !a.starts_with('-') {
            filters.push(a.clone());
        }
    }
    if let Ok(s) = std::env::var("SCENARIO") {
        filters.extend(
            s.split([',', ' '])
                .filter(|x| !x.is_empty())
                .map(String::from),
        );
    }
    let (run, not_run): (Vec<_>, Vec<_>) = scenarios
        .iter()
        .partition(|(n, _)| filters.is_empty() || filters.iter().any(|f| n.contains(f.as_str())));
    let not_run: Vec<&str> = not_run.iter().map(|(n, _)| *n).collect();
    if run.is_empty() {
        println!(
            "SKIPPED: subset-router {suite}: no scenario matches {filters:?}; nothing ran \
             (scenarios: {})",
            not_run.join(", ")
        );
        if ci() {
            println!("subset-router {suite}: FAIL: CI=true and no scenario selected");
            std::process::exit(1);
        }
        return None;
    }
    Some(Selection { run, not_run })
}

/// Every counter the filter must define for `plugin` is in admin `/stats` at 0 before the
/// first request (SPEC: "every counter exists (at 0) from the moment a configuration is
/// accepted"), and no `subset_router` counter is above 0. `Ok` describes what was seen.
pub fn counters_at_start(envoy: &Envoy, plugin: &str) -> Result<String, String> {
    let declared = report::declared_counters(plugin)?;
    report::check_counters_at_zero(&envoy.raw_stats()?, &declared)
}

/// Runs one scenario, turning a panic into an error message like any other failure, so that
/// one broken scenario still lets the others run and the table be printed.
pub fn run_caught(f: impl FnOnce() -> Result<(), String>) -> Option<String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(p) => Some(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// Sends `n` requests built by `req(i)` (path, headers) and tallies the serving subset.
/// Responses that break `expect`'s invariants are counted as errors.
pub fn send<F>(client: &mut Client, n: u64, expect: &Expect, mut req: F) -> Tally
where
    F: FnMut(u64) -> (String, Vec<(String, String)>),
{
    let mut t = Tally::default();
    for i in 0..n {
        let (path, headers) = req(i);
        let hs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match client.get(&path, &hs) {
            Ok(r) => match expect.check(&r) {
                Ok(s) => t.add(&s),
                Err(e) => t.error(format!("GET {path} {headers:?}: {e}")),
            },
            Err(e) => t.error(e),
        }
    }
    t
}

/// Same request `n` times.
pub fn send_same(
    client: &mut Client,
    n: u64,
    expect: &Expect,
    path: &str,
    headers: &[(&str, &str)],
) -> Tally {
    let hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    send(client, n, expect, |_| (path.to_string(), hs.clone()))
}
