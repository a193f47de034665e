//! Harness for the subset-router integration suite: renders `envoy/envoy.template.yaml`
//! per scenario, runs Envoy 1.40 (Docker container or native binary) with the built
//! `subset_router.wasm`, sends real HTTP requests and compares what it observes with the
//! rollout each scenario models. The scenarios live in `tests/rollouts.rs`.

pub mod envoy;
pub mod http;
/// Raw requests, a keep-alive load generator and RSS (reliability suite).
pub mod load;
pub mod report;
/// Template variants: raised header limits, Wasm filter config via ECDS (reliability suite).
pub mod variants;

pub use envoy::{Env, Envoy, Runtime};
pub use http::{Client, Response};
pub use report::{binomial_bounds, within_binomial, Expect, ExpectedStats, Table, Tally};

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
