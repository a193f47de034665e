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
/// Request sequences more than one suite sends (debug routes, sticky ids).
pub mod scenarios;
/// The suites' shared start-up, scenario loop and ending.
pub mod suite;

pub use envoy::{Env, Envoy, Runtime};
pub use http::{Client, Response};
pub use report::{
    binomial_bounds, within_binomial, ClusterChoice, Expect, ExpectedStats, Table, Tally,
};
pub use suite::{ci, run_caught, select_scenarios, Selection};

/// Every counter the filter must define for `plugin` is in admin `/stats` at 0 before the
/// first request ("every counter exists (at 0) from the moment a configuration is
/// accepted"), and no `subset_router` counter is above 0. `Ok` describes what was seen.
pub fn counters_at_start(envoy: &Envoy, plugin: &str) -> Result<String, String> {
    let declared = report::declared_counters(plugin)?;
    report::check_counters_at_zero(&envoy.raw_stats()?, &declared)
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

/// `[("user-agent", "debug")]` as the owned pairs a [`send`] closure returns.
pub fn owned_headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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
