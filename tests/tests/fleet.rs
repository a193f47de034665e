//! The fleet guard (docs/progressive-delivery.md, the fleet guard) against a real Prometheus: three Envoys of one
//! service (`app="checkout"`) — one busy (`--concurrency 2`), two quiet — scraped every second
//! by a Prometheus server started here, each Envoy with a `prometheus` cluster to it and the
//! same configuration: a 50/50 split of v1/v2, a debug rule to v2, and a guard on v2 with
//! `fleet: {cluster: "prometheus", selector: "app=\"checkout\"", intervalSeconds: 1,
//! timeoutMs: 1000}` whose `minRequests` only the busy proxy reaches on its own.
//!
//! 1. `fleet_healthy`: v2 healthy: no proxy trips (a decoy target at 100% errors is scraped
//!    under `app="payments"` and as a named configuration: the selector and `name` keep it
//!    out), every round's answer is read (`fleet_query_failed` still), at most one query per
//!    proxy per interval (Envoy's `cluster.prometheus.upstream_rq_total`, and Prometheus's own
//!    `prometheus_http_requests_total{handler="/api/v1/query"}`).
//! 2. `fleet_trip`: v2 fails (`x-fail: v2`): the busy proxy trips on its own window, the quiet
//!    ones on the fleet's totals (`tripped_by_fleet` 1, `tripped` 1) with fewer than
//!    `minRequests` of their own; the seconds from the busy proxy's trip to each are printed;
//!    then their split traffic avoids v2 while testers still reach it.
//! 3. `fleet_prometheus_down`: Prometheus stopped: every request served (200), every proxy's
//!    `fleet_query_failed` grows with its rounds, nothing trips.
//! 4. `fleet_junk`: a fake metrics server on Prometheus's port answers junk, one kind at a time
//!    (not JSON, 500, empty vector, NaN, +Inf, negative, errors > requests, no answer past
//!    `timeoutMs`, connection refused): no trip, no crash, every failed round counted; then a
//!    valid breach (the control) trips all three by fleet. It also checks the query each proxy
//!    sends.
//!
//! The fleet is made of one build (`FLEET=wasm|native`, default the `FILTER` build) or of both
//! (`FLEET=mixed`: the busy proxy native, the quiet ones Wasm), so that one build's proxies
//! trip on the other build's families. Envoys, Prometheus and the decoy are started once and
//! shared by the scenarios; a scenario that needs closed guards re-applies the configuration
//! (a new text: a new configuration, every guard closed) through ECDS. Own `main` like the
//! other suites (`--list`, substring filters, `SCENARIO`, `CI=true`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use subset_router_it::envoy::{FilterBuild, LaunchOptions};
use subset_router_it::report::{compare_stats, split_namespace};
use subset_router_it::suite::{self, Outcome, Suite, SuiteContext};
use subset_router_it::*;

#[path = "fleet/fake.rs"]
mod fake;
#[path = "fleet/prometheus.rs"]
mod prometheus;
#[path = "fleet/traffic.rs"]
mod traffic;

#[path = "fleet/healthy.rs"]
mod healthy;
#[path = "fleet/junk.rs"]
mod junk;
#[path = "fleet/outage.rs"]
mod outage;
#[path = "fleet/trip.rs"]
mod trip;

use fake::{Decoy, FakeMetrics};
use prometheus::{Prometheus, Target};
use traffic::{Ev, Kind, Load};

/// The guard's fleet settings and thresholds.
const INTERVAL_S: u64 = 1;
const TIMEOUT_MS: u64 = 1000;
const MIN_REQUESTS: u64 = 30;
const WINDOW_S: u64 = 10;
const MAX_ERROR_PERCENT: u64 = 20;

/// Paces (ms between two requests of one connection): the busy proxy's two connections at
/// 25/s each (~22 split requests/s to v2), a quiet proxy's one at 2/s (~0.9/s to v2: ~9 in a
/// 10 s window, never 30 at 4.5σ).
const BUSY_CONNS: usize = 2;
const BUSY_PACE_MS: u64 = 40;
const QUIET_PACE_MS: u64 = 500;

/// The plugin configuration; `reload` extra spaces make each re-application a new text.
fn plugin(reload: usize) -> String {
    format!(
        r#"{{
  "rules"{}: [
    {{"name": "debug", "match": {{"headers": [{{"name": "user-agent", "exact": "debug"}}]}},
     "route": {{"subset": "v2"}}}},
    {{"name": "canary", "match": {{"pathPrefix": "/"}},
     "route": {{"split": [{{"subset": "v1", "weight": 50}}, {{"subset": "v2", "weight": 50}}]}}}}
  ],
  "guards": [{{"subset": "v2", "maxErrorPercent": {MAX_ERROR_PERCENT}, "minRequests": {MIN_REQUESTS},
               "windowSeconds": {WINDOW_S}, "cooldownSeconds": 600,
               "fleet": {{"cluster": "prometheus", "selector": "app=\"checkout\"",
                          "intervalSeconds": {INTERVAL_S}, "timeoutMs": {TIMEOUT_MS}}}}}],
  "default": {{"subset": "v1"}}
}}"#,
        " ".repeat(reload)
    )
}

/// Which builds the fleet's three proxies run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Composition {
    Wasm,
    Native,
    /// The busy proxy native, the quiet ones Wasm.
    Mixed,
}

impl Composition {
    fn from_env(filter_build: &str) -> Result<Composition, String> {
        let v = std::env::var("FLEET").ok().filter(|v| !v.is_empty());
        match v.as_deref().unwrap_or(filter_build) {
            "wasm" => Ok(Composition::Wasm),
            "native" => Ok(Composition::Native),
            "mixed" => Ok(Composition::Mixed),
            other => Err(format!(
                "FLEET must be wasm, native or mixed, not {other:?}"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Composition::Wasm => "wasm",
            Composition::Native => "native",
            Composition::Mixed => "mixed",
        }
    }

    /// `(role, build, --concurrency)` of each proxy.
    fn proxies(self) -> [(&'static str, &'static str, u32); 3] {
        let (busy, quiet) = match self {
            Composition::Wasm => ("wasm", "wasm"),
            Composition::Native => ("native", "native"),
            Composition::Mixed => ("native", "wasm"),
        };
        [
            ("busy", busy, 2),
            ("quiet-1", quiet, 1),
            ("quiet-2", quiet, 1),
        ]
    }
}

/// One proxy of the fleet.
struct Proxy {
    role: &'static str,
    env: Env,
    envoy: Envoy,
    /// The decision counters its responses add up to, over the whole run.
    expected: ExpectedStats,
}

/// The fleet: three Envoys, the Prometheus scraping them (or, in its place, the fake), the
/// decoy target.
struct Fleet {
    proxies: Vec<Proxy>,
    prom_port: u16,
    prometheus: Option<Prometheus>,
    fake: Option<FakeMetrics>,
    decoy: Decoy,
    bin: PathBuf,
    dir: PathBuf,
    /// Configuration re-applications so far.
    reloads: usize,
    /// A guard may be open: re-apply before a scenario that needs them closed.
    dirty: bool,
}

/// A proxy's guard counters and its queries, read together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Snap {
    tripped: u64,
    by_fleet: u64,
    failed: u64,
    open: u64,
    requests: u64,
    errors: u64,
    /// `cluster.prometheus.upstream_rq_total`: fleet queries sent.
    queries: u64,
}

impl Proxy {
    fn snap(&self) -> Result<Snap, String> {
        let ns = self.env.build.stat_prefix();
        let own = self.envoy.raw_stats()?;
        let get = |what: &str| -> Result<u64, String> {
            let k = format!("{ns}subset_router.guard.v2.{what}");
            own.get(&k)
                .copied()
                .ok_or_else(|| format!("{}: {k} not in /stats", self.role))
        };
        let cluster = self.envoy.stats("cluster.prometheus.upstream_rq_total")?;
        Ok(Snap {
            tripped: get("tripped")?,
            by_fleet: get("tripped_by_fleet")?,
            failed: get("fleet_query_failed")?,
            open: get("open")?,
            requests: get("requests")?,
            errors: get("errors")?,
            queries: cluster
                .get("cluster.prometheus.upstream_rq_total")
                .copied()
                .unwrap_or(0),
        })
    }

    fn front(&self) -> SocketAddr {
        self.envoy.front()
    }
}

impl Fleet {
    fn snaps(&self) -> Result<Vec<Snap>, String> {
        self.proxies.iter().map(Proxy::snap).collect()
    }

    /// What the load generator drives: the busy proxy's connections and the quiet ones'.
    fn load_spec(&self) -> Vec<(SocketAddr, usize, u64)> {
        self.proxies
            .iter()
            .map(|p| {
                if p.role == "busy" {
                    (p.front(), BUSY_CONNS, BUSY_PACE_MS)
                } else {
                    (p.front(), 1, QUIET_PACE_MS)
                }
            })
            .collect()
    }

    fn targets(&self) -> Vec<Target> {
        let mut t: Vec<Target> = self
            .proxies
            .iter()
            .map(|p| Target {
                job: "envoy",
                port: p.envoy.ports.admin,
                path: "/stats/prometheus",
                labels: vec![
                    ("app", "checkout".into()),
                    ("proxy", p.role.into()),
                    ("build", p.env.build.name().into()),
                ],
            })
            .collect();
        t.push(Target {
            job: "decoy-payments",
            port: self.decoy.port,
            path: "/payments",
            labels: vec![("app", "payments".into())],
        });
        t.push(Target {
            job: "decoy-named",
            port: self.decoy.port,
            path: "/named",
            labels: vec![("app", "checkout".into())],
        });
        t
    }

    /// Prometheus running (the fake stopped), every target scraped (`up` 1).
    fn ensure_prometheus(&mut self) -> Result<&Prometheus, String> {
        if let Some(mut f) = self.fake.take() {
            f.stop();
        }
        if self.prometheus.is_none() {
            let t = Instant::now();
            let cfg = prometheus::config(&self.targets());
            let p = Prometheus::start(&self.bin, &self.dir, self.prom_port, &cfg)?;
            println!(
                "    prometheus ready on :{} in {:.2}s (log {})",
                self.prom_port,
                t.elapsed().as_secs_f64(),
                p.log.display()
            );
            self.prometheus = Some(p);
        }
        let p = self.prometheus.as_ref().ok_or("no prometheus")?;
        let up = wait_until(Duration::from_secs(20), Duration::from_millis(250), || {
            let n = p.scalar("count(up == 1)").ok().flatten()?;
            (n as usize == self.proxies.len() + 2).then_some(())
        });
        up.ok_or_else(|| {
            format!(
                "prometheus: not every target up within 20 s: {:?}",
                p.query("up").unwrap_or_default()
            )
        })?;
        Ok(p)
    }

    fn stop_prometheus(&mut self) {
        if let Some(mut p) = self.prometheus.take() {
            p.stop();
        }
    }

    /// Re-applies the configuration (a new text) on every proxy through ECDS and waits for
    /// each Envoy to take it: every guard closed, the fleet window starting now.
    fn reset(&mut self) -> Result<(), String> {
        self.reloads += 1;
        let text = plugin(self.reloads);
        for p in &self.proxies {
            let before = ecds_counter(&p.envoy, "update_success");
            p.envoy.replace_ecds(&p.env, &text)?;
            wait_until(Duration::from_secs(10), Duration::from_millis(25), || {
                (ecds_counter(&p.envoy, "update_success") > before).then_some(())
            })
            .ok_or_else(|| {
                format!(
                    "{}: the ECDS re-application was not applied in 10 s",
                    p.role
                )
            })?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Adds the responses to each proxy's expected decision counters.
    fn expect(&mut self, evs: &[Ev]) {
        for e in evs.iter().filter(|e| !e.served.is_empty()) {
            let rule = match e.kind {
                Kind::Debug => "debug",
                Kind::Split => "canary",
            };
            if let Some(p) = self.proxies.get_mut(e.proxy) {
                p.expected.rule(rule, &e.served, 1);
            }
        }
    }
}

fn ecds_counter(envoy: &Envoy, what: &str) -> u64 {
    envoy
        .stats(&format!(
            "extension_config_discovery.http_filter.{}",
            envoy_config::ECDS_NAME
        ))
        .ok()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.ends_with(&format!(".{what}")))
                .map(|(_, v)| *v)
        })
        .unwrap_or(0)
}

/// Polls `f` every `every` until it returns `Some`, or `timeout`.
fn wait_until<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------------------

struct Ctx<'a> {
    env: &'a Env,
    composition: Composition,
    prometheus_bin: PathBuf,
    table: &'a mut Table,
    failed: bool,
    figures: Vec<(String, String)>,
    not_applicable: Vec<(String, String)>,
    requests: usize,
    fleet: Option<Fleet>,
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

    fn figure(&mut self, name: &str, value: String) {
        println!("    figure: {name}: {value}");
        self.figures.push((name.to_string(), value));
    }

    /// Runs `f` on the fleet, started on first use (the decoy, three Envoys whose
    /// `prometheus` cluster points at a port chosen now, each checked for its counters at 0)
    /// and kept for the next scenario.
    fn with_fleet(
        &mut self,
        f: impl FnOnce(&mut Ctx, &mut Fleet) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut fleet = match self.fleet.take() {
            Some(fleet) => fleet,
            None => self.start_fleet()?,
        };
        let r = f(self, &mut fleet);
        self.fleet = Some(fleet);
        r
    }

    fn start_fleet(&mut self) -> Result<Fleet, String> {
        let decoy = Decoy::start()?;
        let prom_port = free_port()?;
        let dir = self.env.work_dir.join("prometheus");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let text = plugin(0);
        let mut proxies = Vec::new();
        for (role, build, concurrency) in self.composition.proxies() {
            let env = self.env.with_build(FilterBuild::from_env(build)?);
            let opts = LaunchOptions {
                ecds: true,
                concurrency: Some(concurrency),
                external_clusters: vec![("prometheus".into(), prom_port)],
                fail_header: Some("x-fail".into()),
                ..LaunchOptions::default()
            };
            let t = Instant::now();
            let envoy = Envoy::start_with(&env, &format!("fleet-{role}"), &text, &opts)?;
            println!(
                "    envoy `{role}` ({build}, --concurrency {concurrency}) ready in {:.2}s \
                 (front :{}, admin :{}, dir {})",
                t.elapsed().as_secs_f64(),
                envoy.ports.front,
                envoy.ports.admin,
                envoy.dir.display()
            );
            let at_start = at_start(&envoy, &text);
            match at_start {
                Ok(seen) => println!("    at start: {seen}"),
                Err(e) => self.row(
                    &format!("{role}: stats before the first request"),
                    "every declared counter (rules, guard, fleet) at 0",
                    &e,
                    false,
                ),
            }
            proxies.push(Proxy {
                role,
                env,
                envoy,
                expected: ExpectedStats::default(),
            });
        }
        Ok(Fleet {
            proxies,
            prom_port,
            prometheus: None,
            fake: None,
            decoy,
            bin: self.prometheus_bin.clone(),
            dir,
            reloads: 0,
            dirty: false,
        })
    }

    /// Transport and invariant errors among `evs`: a FAIL row if any.
    fn errors_row(&mut self, label: &str, evs: &[Ev]) {
        self.requests += evs.len();
        let errs: Vec<&Ev> = evs.iter().filter(|e| e.err.is_some()).collect();
        self.row(
            label,
            "every request answered by the upstream the filter chose (200; v2 503 only while it fails)",
            &format!(
                "{} requests, {} failed{}",
                evs.len(),
                errs.len(),
                errs.first()
                    .map(|e| format!(
                        "; first: {} at {:.2}s: {}",
                        ROLES[e.proxy.min(2)],
                        e.sent,
                        e.err.as_deref().unwrap_or("")
                    ))
                    .unwrap_or_default()
            ),
            errs.is_empty() && !evs.is_empty(),
        );
    }

    /// Every proxy's decision counters equal its responses (over the run so far).
    fn counters_row(&mut self, fleet: &Fleet, label: &str) {
        let mut bad = Vec::new();
        for p in &fleet.proxies {
            let res = p.envoy.raw_stats().and_then(|printed| {
                let decisions: BTreeMap<String, u64> = printed
                    .into_iter()
                    .filter(|(k, _)| !split_namespace(k).1.contains(".guard."))
                    .collect();
                compare_stats(&decisions, &p.expected.0)
            });
            if let Err(e) = res {
                bad.push(format!("{}: {e}", p.role));
            }
        }
        self.row(
            label,
            "each proxy's decision counters = its responses per rule and subset",
            &if bad.is_empty() {
                "equal on every proxy".into()
            } else {
                format!("MISMATCH: {}", bad.join("; "))
            },
            bad.is_empty(),
        );
    }
}

const ROLES: [&str; 3] = ["busy", "quiet-1", "quiet-2"];

/// Every counter the configuration declares — decisions, the guard's, its fleet counters — is
/// in `/stats` at 0 before the first request.
fn at_start(envoy: &Envoy, plugin: &str) -> Result<String, String> {
    let mut declared = report::declared_counters(plugin)?;
    declared.extend(report::guard_counters(plugin)?);
    report::check_counters_at_zero(&envoy.raw_stats()?, &declared)
}

/// Per-proxy deltas between two snapshots, as `busy 3, quiet-1 2, quiet-2 2`.
fn per_proxy(values: &[u64]) -> String {
    values
        .iter()
        .zip(ROLES)
        .map(|(v, r)| format!("{r} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

type ScenarioFn = fn(&mut Ctx) -> Result<(), String>;

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    ("fleet_healthy", healthy::fleet_healthy),
    ("fleet_trip", trip::fleet_trip),
    ("fleet_prometheus_down", outage::fleet_prometheus_down),
    ("fleet_junk", junk::fleet_junk),
];

fn main() {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let Some(suite) = Suite::start("fleet", SCENARIOS, scratch) else {
        return;
    };
    let env = suite.env();
    let composition = Composition::from_env(env.build.name())
        .unwrap_or_else(|e| suite::cannot_start("fleet", &e));
    let Some(prometheus_bin) = prometheus::find_binary() else {
        let why = "no prometheus binary (PROMETHEUS_BIN, PATH, or .cache/prometheus-deb from \
                   scripts/test-fleet.sh)";
        if suite::ci() {
            suite::cannot_start("fleet", &format!("{why}; CI=true: required"));
        }
        println!("SKIPPED: subset-router fleet: {why}; nothing ran");
        return;
    };
    let mut table = Table::default();
    let mut cx = Ctx {
        env,
        composition,
        prometheus_bin,
        table: &mut table,
        failed: false,
        figures: Vec::new(),
        not_applicable: Vec::new(),
        requests: 0,
        fleet: None,
    };
    let title = format!(
        "subset-router fleet-guard suite (fleet: {}; busy --concurrency 2, two quiet proxies; \
         Prometheus scraping every 1 s)",
        composition.name()
    );
    let timings = suite.run(&title, &mut cx);
    // Stop everything before the summary (Envoys, Prometheus, the fake and the decoy).
    cx.fleet = None;
    let failed = cx.failed;
    let requests = cx.requests;
    let figures = std::mem::take(&mut cx.figures);
    let not_applicable = std::mem::take(&mut cx.not_applicable);
    println!(
        "\n=== subset-router fleet guard: summary (fleet {}, {} runtime) ===\n",
        composition.name(),
        env.runtime_name()
    );
    print!("{}", table.render());
    println!();
    for (k, v) in &figures {
        println!("{k}: {v}");
    }
    if let Some(line) = suite::not_applicable_line(composition.name(), &not_applicable) {
        println!("{line}");
    }
    println!("{requests} requests; {timings}");
    suite.finish(Outcome {
        count: table.rows.len(),
        unit: "rows",
        failed: table.rows.iter().filter(|r| !r.pass).count(),
        pass: !failed,
    });
}
