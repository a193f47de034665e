//! Progressive delivery in the proxy (the README's "Progressive delivery"):
//! time-based ramps and canary guards, in a real Envoy 1.40 with `--concurrency 2`, so that
//! two workers — two Wasm VMs, or two threads of the dynamic module — must agree.
//!
//! 1. `ramp`: a 60 s ramp of v2 from 10% to 50% that started 30 s ago: the share observed in
//!    short batches matches the formula at the time of sending (4.5σ); 500 sticky ids sampled
//!    at three moments never leave v2 and reach 50% past the end; with `steps: 4` every
//!    observation is one of the step values.
//! 2. `guard_trip`: v2 answers 503 on a 50/50 split: from the first 503 to the last split
//!    request that reaches v2 is at most `windowSeconds` + 2 s, then v2 gets no split request
//!    while `user-agent: debug` still reaches it; `tripped` = 1, `diverted` = requests moved.
//! 3. `guard_cooldown_latch`: the guard closes after k × cooldown, v2 gets split traffic again
//!    and re-trips; after `maxTrips` it stays open; an ECDS reload resets it.
//! 4. `guard_baseline`: v1 and v2 both fail → no trip (a guard without baseline, same traffic,
//!    trips). 5. `guard_min_requests`: 19 failing requests → no trip; the 20th trips.
//! 6. `guard_latency`: v2 answers after 300 ms; `slowMs` 100, `maxSlowPercent` 50 → trips.
//! 7. `sticky_guard`: a sticky 3-way split: after the trip every id that was on v2 lands on the
//!    same other subset every time; ids elsewhere never move.
//!
//! Failing and slow versions are upstream listeners rendered by envoy/config with another
//! `direct_response` status or a fault-filter delay (`LaunchOptions::upstreams`). Connections
//! are opened until each worker holds its share (Envoy's per-worker listener stats say which
//! worker accepted a connection), so the traffic of every scenario reaches both workers.
//! Guards aggregate once a second: stats are polled with a timeout, never read once.
//!
//! Own `main` (harness = false) like `rollouts.rs`: arguments not starting with `-` (or env
//! `SCENARIO`) select scenarios by substring, `--list` lists them. Prints a check table and
//! the measured figures; exits non-zero if any check failed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subset_router_core::request::OwnedRequest;
use subset_router_core::WyRand;
use subset_router_it::envoy::{LaunchOptions, UpstreamBehaviour};
use subset_router_it::report::{compare_stats, split_namespace};
use subset_router_it::suite::{Outcome, Suite, SuiteContext};
use subset_router_it::*;

#[path = "progressive/baseline.rs"]
mod baseline;
#[path = "progressive/cohort.rs"]
mod cohort;
#[path = "progressive/cooldown_latch.rs"]
mod cooldown_latch;
#[path = "progressive/guard_trips.rs"]
mod guard_trips;
#[path = "progressive/isolation.rs"]
mod isolation;
#[path = "progressive/latency.rs"]
mod latency;
#[path = "progressive/min_requests.rs"]
mod min_requests;
#[path = "progressive/ramp.rs"]
mod ramp;
#[path = "progressive/sticky_guard.rs"]
mod sticky_guard;
use baseline::*;
use cohort::*;
use cooldown_latch::*;
use guard_trips::*;
use isolation::*;
use latency::*;
use min_requests::*;
use ramp::*;
use sticky_guard::*;

/// Envoy worker threads: two VMs (or module threads) must agree.
const CONCURRENCY: u32 = 2;
/// Allowed lag of a ramp's share behind the wall clock. A worker reads the clock on its 1 s
/// tick but at most once a second, so a tick that fires a millisecond early skips its read and
/// the share can be up to 2 s old; plus scheduling jitter on a loaded 2-core machine.
const RAMP_LAG_MS: i64 = 3000;

// ---------------------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------------------
struct Ctx<'a> {
    env: &'a Env,
    table: &'a mut Table,
    failed: bool,
    /// Measured numbers, printed after the table.
    figures: Vec<(String, String)>,
    /// Requests sent by the scenarios (connection probes aside).
    requests: usize,
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

    /// Starts Envoy (`--concurrency 2`) with `plugin` and the given upstream behaviours, and
    /// checks that every counter the config declares — decisions, guards — is in `/stats` at
    /// 0 and every guard's `open` gauge at 0 before the first request.
    fn start(
        &mut self,
        name: &str,
        plugin: &str,
        upstreams: Vec<UpstreamBehaviour>,
        ecds: bool,
    ) -> Result<Envoy, String> {
        let opts = LaunchOptions {
            ecds,
            upstreams,
            ..LaunchOptions::default()
        };
        self.start_all(name, &[plugin], opts)
    }

    /// [`Ctx::start`] with launch options and one configuration per front listener: the
    /// first on the front listener, the others on `front-2`, … (`--concurrency 2` unless the
    /// options say otherwise). Checks every configuration's counters at 0.
    fn start_all(
        &mut self,
        name: &str,
        plugins: &[&str],
        mut opts: LaunchOptions,
    ) -> Result<Envoy, String> {
        let t = Instant::now();
        let (plugin, more) = plugins.split_first().ok_or("no configuration")?;
        opts.concurrency.get_or_insert(CONCURRENCY);
        opts.more_fronts = more.iter().map(|p| p.to_string()).collect();
        let e = Envoy::start_with(self.env, name, plugin, &opts)?;
        println!(
            "    envoy `{name}` ready in {:.2}s (front :{}, admin :{}, dir {})",
            t.elapsed().as_secs_f64(),
            e.ports.front,
            e.ports.admin,
            e.dir.display()
        );
        match self.at_start_all(&e, plugins) {
            Ok(seen) => println!("    at start: {seen}"),
            Err(err) => self.row(
                &format!("{name}: stats before the first request"),
                "every declared counter (rules, guards) at 0, every guard open gauge 0",
                &err,
                false,
            ),
        }
        Ok(e)
    }

    /// Every counter the configurations declare (one per listener) is in `/stats` at 0, every
    /// guard's `open` gauge is 0 and every ramp's gauge is there.
    fn at_start_all(&self, envoy: &Envoy, plugins: &[&str]) -> Result<String, String> {
        let mut declared = BTreeSet::new();
        let mut guards = Vec::new();
        let mut ramps = Vec::new();
        for plugin in plugins {
            declared.extend(report::declared_counters(plugin)?);
            declared.extend(report::guard_counters(plugin)?);
            let prefix = report::stat_prefix(plugin);
            let (gs, rs) = progressive_of(plugin)?;
            guards.extend(gs.iter().map(|g| format!("{prefix}guard.{g}.open")));
            ramps.extend(rs.into_iter().map(|r| format!("{prefix}rule.{r}.ramp_ppm")));
        }
        let printed = envoy.raw_stats()?;
        let (counters, gauges): (BTreeMap<String, u64>, BTreeMap<String, u64>) = printed
            .into_iter()
            .partition(|(k, _)| !is_gauge(split_namespace(k).1));
        let seen = report::check_counters_at_zero(&counters, &declared)?;
        let gauges: BTreeMap<&str, u64> = gauges
            .iter()
            .map(|(k, v)| (split_namespace(k).1, *v))
            .collect();
        for name in &guards {
            match gauges.get(name.as_str()) {
                Some(0) => {}
                other => return Err(format!("gauge {name}: {other:?}, want 0")),
            }
        }
        for name in &ramps {
            if !gauges.contains_key(name.as_str()) {
                return Err(format!("gauge {name} missing"));
            }
        }
        Ok(format!(
            "{seen}; gauges: {}",
            gauges
                .iter()
                .map(|(k, v)| format!("{}={v}", k.trim_start_matches("subset_router.")))
                .collect::<Vec<_>>()
                .join(" ")
        ))
    }

    /// The filter's counters (gauges aside) must equal `expected`; `host_call_failed` is 0.
    /// The guards' observation counters are checked against `observed`: each configuration
    /// (plugin JSON) with the exchanges it decided ([`check_observed`]).
    fn final_counters(
        &mut self,
        envoy: &Envoy,
        label: &str,
        expected: &ExpectedStats,
        observed: &[(&str, &[Ev])],
    ) {
        check_observed(self, envoy, label, observed);
        let res = envoy.raw_stats().and_then(|p| {
            let counters: BTreeMap<String, u64> = p
                .into_iter()
                .filter(|(k, _)| {
                    let name = split_namespace(k).1;
                    !is_gauge(name) && !is_observation(name)
                })
                .collect();
            compare_stats(&counters, &expected.0)
        });
        match res {
            Ok(prefix) => println!(
                "    counters = requests sent ({} counters above 0, printed as {prefix}subset_router.*)",
                expected.0.len()
            ),
            Err(e) => self.row(
                label,
                "every counter = what the responses show",
                &format!("MISMATCH: {e}"),
                false,
            ),
        }
    }
}

fn is_gauge(name: &str) -> bool {
    name.ends_with(".ramp_ppm") || guard_stat_what(name) == Some("open")
}

/// The last segment of a guard stat, `subset_router[.<instance>].guard.<subset>.<what>`.
fn guard_stat_what(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("subset_router.")?;
    let rest = match rest.strip_prefix("guard.") {
        Some(r) => r,
        None => rest.split_once('.')?.1.strip_prefix("guard.")?,
    };
    Some(rest.rsplit_once('.')?.1)
}

/// What a guard observes (exported so a fleet can be summed), and its fleet counters.
const OBSERVATION: [&str; 8] = [
    "requests",
    "errors",
    "slow",
    "baseline_requests",
    "baseline_errors",
    "baseline_slow",
    "tripped_by_fleet",
    "fleet_query_failed",
];

fn is_observation(name: &str) -> bool {
    guard_stat_what(name).is_some_and(|w| OBSERVATION.contains(&w))
}

/// The guards' observation counters (`requests`, `errors`, `slow`, `baseline_*`) against the
/// exchanges each configuration decided. A guard counts the split requests to its subset
/// (and baseline) while it is closed, merged once a second: never more than the responses
/// show (errors: 5xx; slow: answered no sooner than `slowMs`); exactly those when the guard
/// never opened (polled up to 3 s for the last merge); at least `minRequests` per trip on
/// local evidence. Configurations that share stat names (no `name`) are summed.
fn check_observed(cx: &mut Ctx, envoy: &Envoy, label: &str, observed: &[(&str, &[Ev])]) {
    // stat name -> (upper bound, guard subset's tripped stat, lower bound per local trip)
    let mut bounds: BTreeMap<String, (u64, String, u64)> = BTreeMap::new();
    for (plugin, evs) in observed {
        let Ok(cfg) = serde_json::from_str::<serde_json::Value>(plugin) else {
            continue;
        };
        let prefix = report::stat_prefix(plugin);
        for g in cfg
            .get("guards")
            .and_then(|g| g.as_array())
            .into_iter()
            .flatten()
        {
            let Some(subset) = g.get("subset").and_then(|s| s.as_str()) else {
                continue;
            };
            let min = g.get("minRequests").and_then(|m| m.as_u64()).unwrap_or(20);
            let slow_ms = g.get("slowMs").and_then(|m| m.as_u64());
            let split_to = |s: &str| -> Vec<&Ev> {
                evs.iter()
                    .filter(|e| e.kind == Kind::Split && e.served == s)
                    .collect()
            };
            let count = |evs: &[&Ev]| {
                let errors = evs.iter().filter(|e| e.status >= 500).count() as u64;
                let slow = slow_ms.map_or(0, |ms| {
                    evs.iter()
                        .filter(|e| e.latency() * 1000.0 >= ms as f64)
                        .count() as u64
                });
                (evs.len() as u64, errors, slow)
            };
            let tripped = format!("{prefix}guard.{subset}.tripped");
            // Configurations that share the stat (no `name`) add their responses up; each trip
            // needs at least the smallest of their minRequests.
            let mut add = |what: &str, hi: u64, per_trip: u64| {
                let e = bounds
                    .entry(format!("{prefix}guard.{subset}.{what}"))
                    .or_insert((0, tripped.clone(), u64::MAX));
                e.0 += hi;
                e.2 = e.2.min(per_trip);
            };
            let (r, e, sl) = count(&split_to(subset));
            add("requests", r, min);
            add("errors", e, 0);
            add("slow", sl, 0);
            if let Some(b) = g.get("baseline").and_then(|b| b.as_str()) {
                let (r, e, sl) = count(&split_to(b));
                add("baseline_requests", r, 0);
                add("baseline_errors", e, 0);
                add("baseline_slow", sl, 0);
            }
        }
    }
    if bounds.is_empty() {
        return;
    }
    let judge = |stats: &BTreeMap<String, u64>| -> (bool, Vec<String>) {
        let mut ok = true;
        let mut out = Vec::new();
        for (name, (hi, tripped, per_trip)) in &bounds {
            let got = stats.get(name).copied();
            let trips = stats.get(tripped).copied().unwrap_or(0);
            let by_fleet = stats
                .get(&tripped.replace(".tripped", ".tripped_by_fleet"))
                .copied()
                .unwrap_or(0);
            let lo = if trips == 0 {
                *hi
            } else {
                per_trip * (trips - by_fleet)
            };
            let pass = got.is_some_and(|g| (lo..=*hi).contains(&g));
            ok &= pass;
            let short = name.trim_start_matches("subset_router.");
            out.push(if lo == *hi {
                format!(
                    "{short} {} (= {hi})",
                    got.map_or("-".into(), |g| g.to_string())
                )
            } else {
                format!(
                    "{short} {} in {lo}..{hi}",
                    got.map_or("-".into(), |g| g.to_string())
                )
            });
        }
        (ok, out)
    };
    let env = cx.env;
    let mut last = (false, vec!["/stats unreadable".to_string()]);
    let _ = wait_until(Duration::from_secs(3), Duration::from_millis(100), || {
        let stats = filter_stats(env, envoy).ok()?;
        last = judge(&stats);
        last.0.then_some(())
    });
    cx.row(
        &format!("{label} (observed)"),
        "each guard's requests/errors/slow: what the split responses show, exactly while it \
         never opened, else at most that and at least minRequests per local trip",
        &last.1.join(", "),
        last.0,
    );
}

/// The guarded subsets and the rules with a ramp, read from the plugin JSON.
fn progressive_of(plugin: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let cfg: serde_json::Value =
        serde_json::from_str(plugin).map_err(|e| format!("plugin config: {e}"))?;
    let guards = cfg
        .get("guards")
        .and_then(|g| g.as_array())
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("subset")?.as_str().map(String::from))
        .collect();
    let mut ramps: Vec<String> = cfg
        .get("rules")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .filter(|r| r.pointer("/route/ramp").is_some())
        .filter_map(|r| r.get("name")?.as_str().map(String::from))
        .collect();
    if cfg.pointer("/default/ramp").is_some() {
        ramps.push("default".into());
    }
    Ok((guards, ramps))
}

/// The filter's own stats of `envoy`, namespace removed (only the build's namespace).
fn filter_stats(env: &Env, envoy: &Envoy) -> Result<BTreeMap<String, u64>, String> {
    let want = env.build.stat_prefix();
    Ok(envoy
        .raw_stats()?
        .into_iter()
        .filter_map(|(k, v)| {
            let (ns, name) = split_namespace(&k);
            (ns == want && name.starts_with("subset_router.")).then(|| (name.to_string(), v))
        })
        .collect())
}

/// A guard's counters and gauge, as printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct GuardStats {
    tripped: u64,
    diverted: u64,
    undivertable: u64,
    open: u64,
}

impl std::fmt::Display for GuardStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tripped {} diverted {} undivertable {} open {}",
            self.tripped, self.diverted, self.undivertable, self.open
        )
    }
}

fn guard_stats(env: &Env, envoy: &Envoy, subset: &str) -> Result<GuardStats, String> {
    guard_stats_of(env, envoy, "subset_router.", subset)
}

/// [`guard_stats`] of the configuration whose stats start with `prefix` (`subset_router.` or
/// `subset_router.<name>.`).
fn guard_stats_of(
    env: &Env,
    envoy: &Envoy,
    prefix: &str,
    subset: &str,
) -> Result<GuardStats, String> {
    guard_stats_with(env, &filter_stats(env, envoy)?, prefix, subset)
}

/// [`guard_stats`] from stats already read ([`filter_stats`]).
fn guard_stats_in(
    env: &Env,
    s: &BTreeMap<String, u64>,
    subset: &str,
) -> Result<GuardStats, String> {
    guard_stats_with(env, s, "subset_router.", subset)
}

fn guard_stats_with(
    env: &Env,
    s: &BTreeMap<String, u64>,
    prefix: &str,
    subset: &str,
) -> Result<GuardStats, String> {
    let get = |what: &str| {
        let k = format!("{prefix}guard.{subset}.{what}");
        s.get(&k).copied().ok_or_else(|| {
            format!(
                "{}{k} not in /stats (namespace {})",
                env.build.stat_prefix(),
                env.build.stat_prefix()
            )
        })
    };
    Ok(GuardStats {
        tripped: get("tripped")?,
        diverted: get("diverted")?,
        undivertable: get("undivertable")?,
        open: get("open")?,
    })
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

/// Lines of the Envoy log containing `needle`.
fn log_lines(envoy: &Envoy, needle: &str) -> Vec<String> {
    envoy
        .logs()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2026-12-01T10:00:00Z` for a Unix time in seconds.
fn rfc3339(unix_s: i64) -> String {
    let (days, secs) = (unix_s.div_euclid(86_400), unix_s.rem_euclid(86_400));
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn pct(part: u64, n: u64) -> f64 {
    100.0 * part as f64 / n.max(1) as f64
}

// ---------------------------------------------------------------------------------------
// Connections on both workers, responses, a multi-threaded driver
// ---------------------------------------------------------------------------------------

/// Keep-alive connections to the front listener, each with the worker that accepted it.
type Conns = Vec<(Client, usize)>;

/// Keep-alive connections, `per_worker` accepted by each of Envoy's workers (read from the
/// front listener's per-worker `downstream_cx_total` after each connect; surplus connections
/// are closed). Each connection is opened by one `user-agent: debug` request (a fixed route:
/// never counted by a guard), returned as the probes. Ordered worker 0, 1, 0, 1, …
fn balanced_clients(envoy: &Envoy, per_worker: usize) -> Result<(Conns, Vec<Ev>), String> {
    balanced_clients_on(envoy, 0, per_worker)
}

/// [`balanced_clients`] to the `listener`-th front listener ([`Envoy::front_n`]).
fn balanced_clients_on(
    envoy: &Envoy,
    listener: usize,
    per_worker: usize,
) -> Result<(Conns, Vec<Ev>), String> {
    let addr = envoy.front_n(listener);
    let prefix = format!("listener.0.0.0.0_{}.worker_", addr.port());
    let per_worker_cx = || -> Result<Vec<u64>, String> {
        let m = envoy.stats("downstream_cx_total")?;
        let mut v = vec![0u64; CONCURRENCY as usize];
        for (k, n) in m {
            if let Some(rest) = k.strip_prefix(&prefix) {
                if let Some(w) = rest
                    .strip_suffix(".downstream_cx_total")
                    .and_then(|w| w.parse::<usize>().ok())
                {
                    if w < v.len() {
                        v[w] = n;
                    }
                }
            }
        }
        Ok(v)
    };
    let t0 = Instant::now();
    let mut by_worker: Vec<Vec<Client>> = (0..CONCURRENCY).map(|_| Vec::new()).collect();
    let mut probes = Vec::new();
    let mut before = per_worker_cx()?;
    for _ in 0..64 {
        if by_worker.iter().all(|c| c.len() >= per_worker) {
            break;
        }
        let mut c = Client::new(addr);
        let ev = exchange(&mut c, 0, t0, &Req::debug());
        if let Some(e) = &ev.err {
            return Err(format!("opening a connection: {e}"));
        }
        let after = per_worker_cx()?;
        let grew: Vec<usize> = (0..after.len()).filter(|&w| after[w] > before[w]).collect();
        before = after;
        if grew.len() != 1 {
            return Err(format!(
                "cannot tell which worker accepted a connection (per-worker {prefix}N.downstream_cx_total grew on {grew:?})"
            ));
        }
        let w = grew[0];
        probes.push(Ev { worker: w, ..ev });
        if by_worker[w].len() < per_worker {
            by_worker[w].push(c);
        }
    }
    if by_worker.iter().any(|c| c.len() < per_worker) {
        return Err(format!(
            "64 connections did not give {per_worker} per worker: {:?}",
            by_worker.iter().map(Vec::len).collect::<Vec<_>>()
        ));
    }
    let mut out = Vec::new();
    for _ in 0..per_worker {
        for (w, cs) in by_worker.iter_mut().enumerate() {
            out.push((cs.remove(0), w));
        }
    }
    Ok((out, probes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Decided by a split rule.
    Split,
    /// `user-agent: debug`: the fixed debug route to v2.
    Debug,
}

struct Req {
    path: String,
    headers: Vec<(String, String)>,
    kind: Kind,
    /// The sticky id (`x-user-id`), if any.
    id: Option<String>,
}

impl Req {
    fn debug() -> Req {
        Req {
            path: "/".into(),
            headers: vec![("user-agent".into(), "debug".into())],
            kind: Kind::Debug,
            id: None,
        }
    }

    fn split(path: &str) -> Req {
        Req {
            path: path.into(),
            headers: vec![],
            kind: Kind::Split,
            id: None,
        }
    }

    fn sticky(path: &str, id: String) -> Req {
        Req {
            path: path.into(),
            headers: vec![("x-user-id".into(), id.clone())],
            kind: Kind::Split,
            id: Some(id),
        }
    }
}

/// One request and its response.
#[derive(Debug, Clone)]
struct Ev {
    /// The worker whose connection carried it.
    worker: usize,
    kind: Kind,
    path: String,
    id: Option<String>,
    /// Seconds since the scenario's start, before sending and after the response.
    sent: f64,
    recv: f64,
    /// Wall clock (Unix ms) before sending.
    sent_unix_ms: i64,
    /// 0: no response.
    status: u16,
    /// `x-served-by`: the subset whose upstream answered ("" if none did).
    served: String,
    /// `x-served-cluster`: the cluster of that upstream (`v2`, `a-v2`, …).
    cluster: String,
    /// A transport error or a broken invariant.
    err: Option<String>,
}

impl Ev {
    fn latency(&self) -> f64 {
        self.recv - self.sent
    }
}

/// Sends `req` on `client` and records what came back. Invariants: an upstream answered
/// (`x-served-by`), the body is its subset, it saw `x-upstream-cluster` = its own cluster
/// (`x-served-cluster`: the subset, or the template's cluster such as `a-v2`).
fn exchange(client: &mut Client, worker: usize, t0: Instant, req: &Req) -> Ev {
    let hs: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let sent_unix_ms = unix_ms();
    let sent = t0.elapsed().as_secs_f64();
    let res = client.get(&req.path, &hs);
    let recv = t0.elapsed().as_secs_f64();
    let mut ev = Ev {
        worker,
        kind: req.kind,
        path: req.path.clone(),
        id: req.id.clone(),
        sent,
        recv,
        sent_unix_ms,
        status: 0,
        served: String::new(),
        cluster: String::new(),
        err: None,
    };
    match res {
        Ok(r) => {
            ev.status = r.status;
            ev.served = r.header("x-served-by").unwrap_or("").to_string();
            ev.cluster = r.header("x-served-cluster").unwrap_or("").to_string();
            let echo = r.header("x-echo-cluster-header").unwrap_or("");
            if ev.served.is_empty() {
                ev.err = Some(format!(
                    "status {} without x-served-by (x-front-flags {:?}): {:?}",
                    r.status,
                    r.header("x-front-flags"),
                    r.body_str()
                ));
            } else if r.body_str().trim_end_matches('\n') != ev.served
                || echo != ev.cluster
                || !ev.cluster.ends_with(ev.served.as_str())
            {
                ev.err = Some(format!(
                    "served by {} but body {:?}, upstream saw x-upstream-cluster {echo:?}",
                    ev.served,
                    r.body_str()
                ));
            }
        }
        Err(e) => ev.err = Some(e),
    }
    ev
}

/// Each driver thread sends at most one request per interval (500/s): enough to show a cut
/// (thousands of requests) while leaving the 2 cores to Envoy.
const DRIVE_INTERVAL: Duration = Duration::from_millis(2);

/// Runs one thread per client, each sending `make(thread, seq)` until `control` returns;
/// returns every exchange (ordered by send time) and `control`'s result. `control` runs on
/// the calling thread (it polls stats, reloads configs, …).
fn drive<R>(
    clients: &mut [(Client, usize)],
    t0: Instant,
    make: &(dyn Fn(usize, u64) -> Req + Sync),
    control: impl FnOnce() -> R,
) -> (Vec<Ev>, R) {
    drive_every(clients, t0, DRIVE_INTERVAL, make, control)
}

/// [`drive`] with each thread sending at most one request per `interval`.
fn drive_every<R>(
    clients: &mut [(Client, usize)],
    t0: Instant,
    interval: Duration,
    make: &(dyn Fn(usize, u64) -> Req + Sync),
    control: impl FnOnce() -> R,
) -> (Vec<Ev>, R) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(i, (client, worker))| {
                let stop = &stop;
                let worker = *worker;
                s.spawn(move || {
                    let mut evs = Vec::new();
                    let mut seq = 0u64;
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let req = make(i, seq);
                        seq += 1;
                        evs.push(exchange(client, worker, t0, &req));
                        next += interval;
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                    evs
                })
            })
            .collect();
        let r = control();
        stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Ev> = Vec::new();
        for h in handles {
            all.extend(h.join().unwrap_or_default());
        }
        all.sort_by(|a, b| a.sent.total_cmp(&b.sent));
        (all, r)
    })
}

/// Expected decision counters from what the responses show: `rule` for each exchange.
fn expected_from(evs: &[Ev], rule_of: impl Fn(&Ev) -> &'static str) -> ExpectedStats {
    let mut st = ExpectedStats::default();
    for e in evs.iter().filter(|e| !e.served.is_empty()) {
        st.rule(rule_of(e), &e.served, 1);
    }
    st
}

fn set_guard(st: &mut ExpectedStats, subset: &str, g: &GuardStats) {
    for (what, v) in [
        ("tripped", g.tripped),
        ("diverted", g.diverted),
        ("undivertable", g.undivertable),
    ] {
        if v > 0 {
            st.0.insert(format!("subset_router.guard.{subset}.{what}"), v);
        }
    }
}

/// Invariant and transport errors among `evs`: a FAIL row if any.
fn errors_row(cx: &mut Ctx, label: &str, evs: &[Ev]) {
    cx.requests += evs.len();
    let errs: Vec<&Ev> = evs.iter().filter(|e| e.err.is_some()).collect();
    if !errs.is_empty() {
        cx.row(
            label,
            "every request answered by the upstream the filter chose",
            &format!(
                "{} of {} failed; first: {}",
                errs.len(),
                evs.len(),
                errs[0].err.as_deref().unwrap_or("")
            ),
            false,
        );
    }
}

fn debug_row(cx: &mut Ctx, label: &str, evs: &[Ev], after: f64) {
    let debug: Vec<&Ev> = evs.iter().filter(|e| e.kind == Kind::Debug).collect();
    let on_v2 = debug.iter().filter(|e| e.served == "v2").count();
    let late = debug.iter().filter(|e| e.sent > after).count();
    let late_v2 = debug
        .iter()
        .filter(|e| e.sent > after && e.served == "v2")
        .count();
    cx.row(
        label,
        "every user-agent: debug request reaches v2 (a fixed route: never diverted)",
        &format!(
            "{on_v2}/{} on v2; after the cut {late_v2}/{late}",
            debug.len()
        ),
        on_v2 == debug.len() && late > 0 && late_v2 == late,
    );
}

fn guard_json(fields: &str) -> String {
    format!(r#""guards": [{{"subset": "v2", {fields}}}]"#)
}

const DEBUG_RULE: &str = r#"{"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
         "route": {"subset": "v2"}}"#;

fn rule_of_path(e: &Ev) -> &'static str {
    if e.kind == Kind::Debug {
        "debug"
    } else {
        "canary"
    }
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

type ScenarioFn = fn(&mut Ctx) -> Result<(), String>;

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    ("ramp", ramp),
    ("guard_trip", guard_trip),
    ("guard_cooldown_latch", guard_cooldown_latch),
    ("guard_baseline", guard_baseline),
    ("guard_min_requests", guard_min_requests),
    ("guard_latency", guard_latency),
    ("sticky_guard", sticky_guard),
    ("isolation", isolation),
    ("isolation_named", isolation_named),
    ("cohort", cohort),
];

fn main() {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let Some(suite) = Suite::start("progressive", SCENARIOS, scratch) else {
        return;
    };
    let env = suite.env();
    let mut table = Table::default();
    let mut cx = Ctx {
        env,
        table: &mut table,
        failed: false,
        figures: Vec::new(),
        requests: 0,
    };
    let title = format!(
        "subset-router progressive-delivery suite ({} build, --concurrency {CONCURRENCY})",
        env.build.name()
    );
    let timings = suite.run(&title, &mut cx);
    let failed = cx.failed;
    let requests = cx.requests;
    let figures = std::mem::take(&mut cx.figures);

    println!(
        "\n=== subset-router progressive delivery: summary ({} build, {} runtime, --concurrency {CONCURRENCY}) ===\n",
        env.build.name(),
        env.runtime_name()
    );
    print!("{}", table.render());
    println!();
    for (k, v) in &figures {
        println!("{k}: {v}");
    }
    println!("{requests} requests; {timings}");
    suite.finish(Outcome {
        count: table.rows.len(),
        unit: "rows",
        failed: table.rows.iter().filter(|r| !r.pass).count(),
        pass: !failed,
    });
}
