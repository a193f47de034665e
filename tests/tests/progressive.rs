//! Progressive delivery in the proxy (issue 11; SPEC.md "Progressive delivery in the proxy"):
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subset_router_core::request::OwnedRequest;
use subset_router_core::WyRand;
use subset_router_it::envoy::{LaunchOptions, UpstreamBehaviour};
use subset_router_it::report::{compare_stats, split_namespace};
use subset_router_it::*;

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
        let t = Instant::now();
        let opts = LaunchOptions {
            ecds,
            concurrency: Some(CONCURRENCY),
            upstreams,
            ..LaunchOptions::default()
        };
        let e = Envoy::start_with(self.env, name, plugin, &opts)?;
        println!(
            "    envoy `{name}` ready in {:.2}s (front :{}, admin :{}, dir {})",
            t.elapsed().as_secs_f64(),
            e.ports.front,
            e.ports.admin,
            e.dir.display()
        );
        match self.at_start(&e, plugin) {
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

    fn at_start(&self, envoy: &Envoy, plugin: &str) -> Result<String, String> {
        let mut declared = report::declared_counters(plugin)?;
        let (guards, ramps) = progressive_of(plugin)?;
        for g in &guards {
            for c in ["tripped", "diverted", "undivertable"] {
                declared.insert(format!("subset_router.guard.{g}.{c}"));
            }
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
        for g in &guards {
            let name = format!("subset_router.guard.{g}.open");
            match gauges.get(name.as_str()) {
                Some(0) => {}
                other => return Err(format!("gauge {name}: {other:?}, want 0")),
            }
        }
        for r in &ramps {
            let name = format!("subset_router.rule.{r}.ramp_ppm");
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
    fn final_counters(&mut self, envoy: &Envoy, label: &str, expected: &ExpectedStats) {
        let res = envoy.raw_stats().and_then(|p| {
            let counters: BTreeMap<String, u64> = p
                .into_iter()
                .filter(|(k, _)| !is_gauge(split_namespace(k).1))
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
    name.ends_with(".ramp_ppm") || (name.starts_with("subset_router.guard.") && name.ends_with(".open"))
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
    let s = filter_stats(env, envoy)?;
    let get = |what: &str| {
        let k = format!("subset_router.guard.{subset}.{what}");
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
fn wait_until<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
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
fn balanced_clients(
    envoy: &Envoy,
    per_worker: usize,
) -> Result<(Conns, Vec<Ev>), String> {
    let prefix = format!("listener.0.0.0.0_{}.worker_", envoy.ports.front);
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
        let mut c = envoy.client();
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
    /// A transport error or a broken invariant.
    err: Option<String>,
}

impl Ev {
    fn latency(&self) -> f64 {
        self.recv - self.sent
    }
}

/// Sends `req` on `client` and records what came back. Invariants: an upstream answered
/// (`x-served-by`), the body is its subset, it saw `x-upstream-cluster` = its own cluster.
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
        err: None,
    };
    match res {
        Ok(r) => {
            ev.status = r.status;
            ev.served = r.header("x-served-by").unwrap_or("").to_string();
            let echo = r.header("x-echo-cluster-header").unwrap_or("");
            if ev.served.is_empty() {
                ev.err = Some(format!(
                    "status {} without x-served-by (x-front-flags {:?}): {:?}",
                    r.status,
                    r.header("x-front-flags"),
                    r.body_str()
                ));
            } else if r.body_str().trim_end_matches('\n') != ev.served || echo != ev.served {
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
                        next += DRIVE_INTERVAL;
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
// 1. Ramp
// ---------------------------------------------------------------------------------------

/// v2's share (ppm) of a 90/10 split ramped to 50% from `start_ms` over 60 s, as SPEC says:
/// ⌈p0⌉ + (to − p0)·f, or with `steps` N the ⌊N·f⌋/N of it, rounded down to a ppm.
fn ramp_ppm(start_ms: i64, steps: u64, t_ms: i64) -> u64 {
    const FROM: u64 = 100_000;
    const TO: u64 = 500_000;
    const DURATION: u64 = 60_000;
    if t_ms < start_ms {
        return FROM;
    }
    let elapsed = (t_ms - start_ms) as u64;
    if elapsed >= DURATION {
        return TO;
    }
    let span = TO - FROM;
    FROM + match steps {
        0 => span * elapsed / DURATION,
        n => span * (n * elapsed / DURATION) / n,
    }
}

/// A batch of exchanges checked against the ramp at their send times: its v2 count must lie
/// within 4.5σ of n·p̄, where p̄ is the mean share over the batch, between its value
/// `RAMP_LAG_MS` earlier (the clock a worker last read) and at sending.
struct RampCheck {
    n: u64,
    v2: u64,
    p_lo: f64,
    p_hi: f64,
    lo: u64,
    hi: u64,
}

impl RampCheck {
    fn of(evs: &[&Ev], start_ms: i64, steps: u64) -> RampCheck {
        let n = evs.len() as u64;
        let v2 = evs.iter().filter(|e| e.served == "v2").count() as u64;
        let mean = |lag: i64| {
            evs.iter()
                .map(|e| ramp_ppm(start_ms, steps, e.sent_unix_ms - lag) as f64 / 1e6)
                .sum::<f64>()
                / n.max(1) as f64
        };
        let (p_lo, p_hi) = (mean(RAMP_LAG_MS), mean(0));
        let (lo, _) = binomial_bounds(n, p_lo);
        let (_, hi) = binomial_bounds(n, p_hi);
        RampCheck {
            n,
            v2,
            p_lo,
            p_hi,
            lo,
            hi,
        }
    }

    fn pass(&self) -> bool {
        self.v2 >= self.lo && self.v2 <= self.hi
    }

    fn expected(&self) -> String {
        if (self.p_hi - self.p_lo).abs() < 5e-5 {
            format!("{:.1}% [{}..{}]", 100.0 * self.p_hi, self.lo, self.hi)
        } else {
            format!(
                "{:.1}–{:.1}% [{}..{}]",
                100.0 * self.p_lo,
                100.0 * self.p_hi,
                self.lo,
                self.hi
            )
        }
    }

    fn observed(&self) -> String {
        format!("{}/{} ({:.1}%)", self.v2, self.n, pct(self.v2, self.n))
    }
}

const RAMP_IDS: usize = 500;
/// Requests per rule (`/ramp`, `/steps`) per batch, and a batch every 250 ms: a light, steady
/// load of 800 requests/s for the ~30 s the ramp has left.
const RAMP_BATCH: usize = 100;
const RAMP_BATCH_EVERY: Duration = Duration::from_millis(250);

fn ramp(cx: &mut Ctx) -> Result<(), String> {
    let start_s = unix_ms() / 1000 - 30;
    let start_ms = start_s * 1000;
    let end_ms = start_ms + 60_000;
    let ramp = |steps: u32| {
        format!(
            r#""ramp": {{"subset": "v2", "toPercent": 50, "start": "{}", "durationSeconds": 60, "steps": {steps}}}"#,
            rfc3339(start_s)
        )
    };
    let split = r#""split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]"#;
    let plugin = format!(
        r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "ramp", "match": {{"pathPrefix": "/ramp"}}, "route": {{{split}, {}}}}},
        {{"name": "steps", "match": {{"pathPrefix": "/steps"}}, "route": {{{split}, {}}}}},
        {{"name": "sticky", "match": {{"pathPrefix": "/sticky"}},
          "route": {{{split}, "stickyBy": {{"header": "x-user-id"}}, {}}}}}
      ],
      "default": {{"subset": "v1"}}
    }}"#,
        ramp(0),
        ramp(4),
        ramp(0)
    );
    println!("    ramp: v2 10% -> 50% from {} over 60 s (now: start + 30 s)", rfc3339(start_s));
    let envoy = cx.start("ramp", &plugin, vec![], false)?;
    let (mut clients, probes) = balanced_clients(&envoy, 1)?;
    let t0 = Instant::now();
    let mut evs: Vec<Ev> = Vec::new();
    // Sticky samples: (label, exchanges).
    let mut samples: Vec<(String, Vec<Ev>)> = Vec::new();
    let moments = [
        ("now", 0),
        ("start+47s", start_ms + 47_000),
        // Both workers have read a clock past the end.
        ("past the end (start+63.5s)", end_ms + RAMP_LAG_MS + 500),
    ];
    // Gauge reads: (before, after, ramp, steps, sticky).
    let mut gauges: Vec<(i64, i64, u64, u64, u64)> = Vec::new();
    let mut next_batch = Instant::now();
    loop {
        let now = unix_ms();
        if let Some((label, _)) = moments
            .get(samples.len())
            .filter(|(_, at)| now >= *at)
        {
            let mut sample = Vec::with_capacity(RAMP_IDS);
            for id in 0..RAMP_IDS {
                let (c, w) = &mut clients[(id + samples.len()) % 2];
                sample.push(exchange(c, *w, t0, &Req::sticky("/sticky", format!("id-{id:03}"))));
            }
            samples.push((label.to_string(), sample));
            continue;
        }
        if samples.len() == moments.len() {
            break;
        }
        std::thread::sleep(next_batch.saturating_duration_since(Instant::now()));
        next_batch += RAMP_BATCH_EVERY;
        for i in 0..2 * RAMP_BATCH {
            // /ramp and /steps alternate, each on both workers in turn.
            let (c, w) = &mut clients[(i / 2) % 2];
            let path = if i % 2 == 0 { "/ramp" } else { "/steps" };
            evs.push(exchange(c, *w, t0, &Req::split(path)));
        }
        let before = unix_ms();
        let s = filter_stats(cx.env, &envoy)?;
        let after = unix_ms();
        let g = |r: &str| {
            s.get(&format!("subset_router.rule.{r}.ramp_ppm"))
                .copied()
                .unwrap_or(u64::MAX)
        };
        gauges.push((before, after, g("ramp"), g("steps"), g("sticky")));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let all: Vec<Ev> = evs
        .iter()
        .chain(samples.iter().flat_map(|(_, s)| s.iter()))
        .cloned()
        .collect();
    errors_row(cx, "1 ramp: requests", &all);

    // Continuous: batches of RAMP_BATCH in send order, then pooled (and per worker).
    for (rule, steps) in [("ramp", 0u64), ("steps", 4)] {
        let of_rule: Vec<&Ev> = evs.iter().filter(|e| e.path == format!("/{rule}")).collect();
        let batches: Vec<RampCheck> = of_rule
            .chunks(RAMP_BATCH)
            .map(|b| RampCheck::of(b, start_ms, steps))
            .collect();
        let bad: Vec<&RampCheck> = batches.iter().filter(|b| !b.pass()).collect();
        let pooled = RampCheck::of(&of_rule, start_ms, steps);
        let per_worker: Vec<RampCheck> = (0..CONCURRENCY as usize)
            .map(|w| {
                let mine: Vec<&Ev> = of_rule.iter().copied().filter(|e| e.worker == w).collect();
                RampCheck::of(&mine, start_ms, steps)
            })
            .collect();
        let label = if steps == 0 {
            "1 ramp continuous 10% -> 50% (60 s, started 30 s ago)".to_string()
        } else {
            "1 ramp steps: 4 (10/20/30/40/50%)".to_string()
        };
        cx.row(
            &format!("{label}: batches of {RAMP_BATCH}"),
            "each batch's v2 count within 4.5σ of the formula at its send times",
            &format!(
                "{}/{} batches within; {}",
                batches.len() - bad.len(),
                batches.len(),
                bad.first()
                    .map(|b| format!("first outside: {} vs {}", b.observed(), b.expected()))
                    .unwrap_or_else(|| format!(
                        "shares {:.1}% .. {:.1}%",
                        batches.first().map_or(0.0, |b| pct(b.v2, b.n)),
                        batches.last().map_or(0.0, |b| pct(b.v2, b.n))
                    ))
            ),
            bad.is_empty() && batches.len() >= 20,
        );
        cx.row(
            &format!("{label}: pooled"),
            &pooled.expected(),
            &format!(
                "{}; worker 0 {} vs {}, worker 1 {} vs {}",
                pooled.observed(),
                per_worker[0].observed(),
                per_worker[0].expected(),
                per_worker[1].observed(),
                per_worker[1].expected()
            ),
            pooled.pass() && per_worker.iter().all(|w| w.pass() && w.n > 0),
        );
        cx.figure(
            &format!("ramp ({rule}): v2 observed vs expected"),
            format!(
                "{} vs {} over {} batches",
                pooled.observed(),
                pooled.expected(),
                batches.len()
            ),
        );
        if steps > 0 {
            // Every request whose step is certain (not within the lag of a jump), pooled by
            // step value: each pool within 4.5σ of its step value; the gauge only ever shows a
            // step value.
            let mut pools: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
            for e in &of_rule {
                let (a, b) = (
                    ramp_ppm(start_ms, 4, e.sent_unix_ms - RAMP_LAG_MS),
                    ramp_ppm(start_ms, 4, e.sent_unix_ms),
                );
                if a == b {
                    let p = pools.entry(b).or_default();
                    p.0 += 1;
                    p.1 += u64::from(e.served == "v2");
                }
            }
            let values = [100_000u64, 200_000, 300_000, 400_000, 500_000];
            let gauge_steps: BTreeSet<u64> = gauges.iter().map(|g| g.3).collect();
            let gauge_ok = gauge_steps.iter().all(|v| values.contains(v));
            let pools_ok = pools
                .iter()
                .all(|(ppm, (n, v2))| within_binomial(*v2, *n, *ppm as f64 / 1e6));
            cx.row(
                "1 ramp steps: 4: every observation a step value",
                "requests pooled by the step at their send time: each pool within 4.5σ of 10/20/30/40/50%; gauge ramp_ppm only ever a step value",
                &format!(
                    "{}; gauge values {:?}",
                    pools
                        .iter()
                        .map(|(ppm, (n, v2))| {
                            let (lo, hi) = binomial_bounds(*n, *ppm as f64 / 1e6);
                            format!("{}%: {v2}/{n} ({:.1}%) [{lo}..{hi}]", ppm / 10_000, pct(*v2, *n))
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    gauge_steps
                ),
                gauge_ok && pools_ok && pools.len() >= 2,
            );
            cx.figure(
                "ramp (steps: 4) by step",
                pools
                    .iter()
                    .map(|(ppm, (n, v2))| format!("{}%: {:.1}% of {n}", ppm / 10_000, pct(*v2, *n)))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }

    // Gauges against the formula at the time of reading (lagging by at most a tick).
    let mut gauge_bad = Vec::new();
    for &(before, after, r, st, sk) in &gauges {
        for (name, v, steps) in [("ramp", r, 0), ("steps", st, 4), ("sticky", sk, 0)] {
            let (lo, hi) = (
                ramp_ppm(start_ms, steps, before - RAMP_LAG_MS),
                ramp_ppm(start_ms, steps, after),
            );
            if v < lo || v > hi {
                gauge_bad.push(format!("{name}={v} not in [{lo}, {hi}]"));
            }
        }
    }
    // How far behind the clock the continuous gauge was: the time the formula gives its value.
    let max_lag = gauges
        .iter()
        .filter(|g| g.2 < 500_000)
        .map(|&(before, _, r, _, _)| before - (start_ms + (r as i64 - 100_000) * 60_000 / 400_000))
        .max()
        .unwrap_or(0);
    cx.figure("ramp gauge: largest lag behind the clock", format!("{max_lag} ms"));
    let last = gauges.last().copied().unwrap_or_default();
    cx.row(
        "1 ramp: gauge rule.<rule>.ramp_ppm",
        &format!("the formula's ppm at the time of reading (≤ {RAMP_LAG_MS} ms behind); 500000 past the end"),
        &format!(
            "{} reads, {} off{}; last: ramp {} steps {} sticky {}",
            gauges.len(),
            gauge_bad.len(),
            gauge_bad.first().map(|b| format!(" (first: {b})")).unwrap_or_default(),
            last.2,
            last.3,
            last.4
        ),
        gauge_bad.is_empty() && !gauges.is_empty() && last.0 > end_ms + RAMP_LAG_MS && [last.2, last.3, last.4] == [500_000; 3],
    );

    // Sticky ids at three moments.
    let mut prev: Option<BTreeMap<String, String>> = None;
    for (label, sample) in &samples {
        let map: BTreeMap<String, String> = sample
            .iter()
            .filter_map(|e| Some((e.id.clone()?, e.served.clone())))
            .collect();
        let refs: Vec<&Ev> = sample.iter().collect();
        let chk = RampCheck::of(&refs, start_ms, 0);
        let left: Vec<&String> = prev
            .iter()
            .flat_map(|p| p.iter())
            .filter(|(id, s)| *s == "v2" && map.get(*id).map(String::as_str) != Some("v2"))
            .map(|(id, _)| id)
            .collect();
        let joined = prev
            .as_ref()
            .map(|p| {
                p.iter()
                    .filter(|(id, s)| *s == "v1" && map.get(*id).map(String::as_str) == Some("v2"))
                    .count()
            })
            .unwrap_or(0);
        let other = map.values().filter(|s| *s != "v1" && *s != "v2").count();
        cx.row(
            &format!("1 ramp sticky: {RAMP_IDS} ids at {label}"),
            &format!("ids on v2 {}; 0 ids leave v2", chk.expected()),
            &format!(
                "ids on v2 {}; {} left v2, {joined} joined v2 from v1",
                chk.observed(),
                left.len()
            ),
            chk.pass() && left.is_empty() && other == 0 && map.len() == RAMP_IDS,
        );
        cx.figure(
            &format!("ramp sticky ids at {label}"),
            format!("{} on v2 vs {}", chk.observed(), chk.expected()),
        );
        prev = Some(map);
    }
    let rule_of = |e: &Ev| match (e.kind, e.path.as_str()) {
        (Kind::Debug, _) => "debug",
        (_, "/ramp") => "ramp",
        (_, "/steps") => "steps",
        _ => "sticky",
    };
    let mut with_probes = all.clone();
    with_probes.extend(probes);
    cx.final_counters(&envoy, "1 ramp: counters", &expected_from(&with_probes, rule_of));
    println!(
        "    {} requests in {elapsed:.1}s ({:.0}/s)",
        all.len(),
        all.len() as f64 / elapsed
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Guard trips
// ---------------------------------------------------------------------------------------

/// Where a sticky id goes under a plugin config as configured (guards closed): the filter's
/// own core (`Router::decide`), as a prediction that the responses before the trip verify one
/// by one; after the trip it tells which requests were moved off v2.
struct Oracle {
    router: subset_router_core::Router,
}

impl Oracle {
    fn new(plugin: &str) -> Result<Oracle, String> {
        let router = subset_router_core::load(plugin.as_bytes()).map_err(|es| {
            es.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(Oracle { router })
    }

    fn subset(&self, path: &str, id: &str) -> String {
        let req = OwnedRequest::new()
            .header(":method", "GET")
            .header(":path", path)
            .header(":authority", "subset-router.test")
            .header("x-user-id", id);
        self.router
            .decide(&req, &mut WyRand::new(1))
            .map(|d| d.target.subset.clone())
            .unwrap_or_default()
    }
}

/// Trip latency: from the first bad response (received) to the last split request routed to
/// the subset (sent).
struct Cut {
    first_bad: f64,
    last_v2: f64,
    /// Split requests sent after `last_v2`, and over how long.
    tail: usize,
    tail_s: f64,
}

fn cut_of(evs: &[Ev], bad: impl Fn(&Ev) -> bool) -> Option<Cut> {
    let split: Vec<&Ev> = evs.iter().filter(|e| e.kind == Kind::Split).collect();
    let first_bad = split
        .iter()
        .filter(|e| bad(e))
        .map(|e| e.recv)
        .min_by(f64::total_cmp)?;
    let last_v2 = split
        .iter()
        .filter(|e| e.served == "v2")
        .map(|e| e.sent)
        .max_by(f64::total_cmp)?;
    let after: Vec<&&Ev> = split.iter().filter(|e| e.sent > last_v2).collect();
    let tail_s = after.last().map_or(0.0, |e| e.sent - last_v2);
    Some(Cut {
        first_bad,
        last_v2,
        tail: after.len(),
        tail_s,
    })
}

fn guard_trip(cx: &mut Ctx) -> Result<(), String> {
    let plugin = format!(
        r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": 50}}, {{"subset": "v2", "weight": 50}}],
                    "stickyBy": {{"header": "x-user-id"}}}}}}
      ],
      {},
      "default": {{"subset": "v1"}}
    }}"#,
        guard_json(
            r#""maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 5, "cooldownSeconds": 5"#
        )
    );
    let oracle = Oracle::new(&plugin)?;
    let envoy = cx.start(
        "guard-trip",
        &plugin,
        vec![UpstreamBehaviour::failing("v2", 503)],
        false,
    )?;
    let (mut clients, probes) = balanced_clients(&envoy, 2)?;
    let t0 = Instant::now();
    // Every request a fresh user id (a 50/50 split of requests); 1 in 10 a tester's.
    let make = |thread: usize, seq: u64| {
        if seq % 10 == 9 {
            Req::debug()
        } else {
            Req::sticky("/", format!("t{thread}-{seq}"))
        }
    };
    let env = cx.env;
    let (evs, (trip_at, at_stop)) = drive(&mut clients, t0, &make, || {
        let trip_at = wait_until(Duration::from_secs(20), Duration::from_millis(25), || {
            guard_stats(env, &envoy, "v2")
                .ok()
                .filter(|g| g.tripped >= 1)
                .map(|_| t0.elapsed().as_secs_f64())
        });
        // Keep sending for 3 s of the 5 s cooldown: v2 must get nothing from the splits.
        if trip_at.is_some() {
            std::thread::sleep(Duration::from_secs(3));
        }
        (trip_at, guard_stats(env, &envoy, "v2"))
    });
    let stopped = evs.last().map_or(0.0, |e| e.sent);
    errors_row(cx, "2 guard trip: requests", &evs);
    let trip_at = trip_at.ok_or("the guard did not trip within 20 s")?;
    let at_stop = at_stop?;
    let fin = guard_stats(cx.env, &envoy, "v2")?;

    let cut = cut_of(&evs, |e| e.status == 503).ok_or("no 503 / no v2 response at all")?;
    let latency = cut.last_v2 - cut.first_bad;
    cx.row(
        "2 guard trip: first 503 -> last split request to v2",
        "≤ windowSeconds + 2 s = 7 s; then no split request to v2",
        &format!(
            "{latency:.2}s (trip seen in /stats {:.2}s after the first 503); then {} split requests over {:.2}s, 0 to v2",
            trip_at - cut.first_bad,
            cut.tail,
            cut.tail_s
        ),
        latency <= 7.0 && cut.tail >= 100 && cut.tail_s >= 1.5 && stopped < trip_at + 4.9,
    );
    cx.figure("trip latency (first 503 -> v2 cut)", format!("{latency:.2}s"));
    debug_row(cx, "2 guard trip: testers while open", &evs, cut.last_v2);

    // Each split request against the prediction with the guard closed: a request may only
    // differ by being moved off v2.
    let split: Vec<&Ev> = evs.iter().filter(|e| e.kind == Kind::Split && e.err.is_none()).collect();
    let (mut same, mut moved, mut wrong) = (0u64, 0u64, Vec::new());
    let mut predicted_v2 = 0u64;
    for e in &split {
        let id = e.id.as_deref().unwrap_or("");
        let want = oracle.subset("/", id);
        predicted_v2 += u64::from(want == "v2");
        if e.served == want {
            same += 1;
        } else if want == "v2" && e.served == "v1" && e.sent >= cut.first_bad {
            moved += 1;
        } else {
            wrong.push(format!("{id}: predicted {want}, served {} at {:.2}s", e.served, e.sent));
        }
    }
    let (lo, hi) = binomial_bounds(split.len() as u64, 0.5);
    cx.row(
        "2 guard trip: 50/50 split, requests moved",
        &format!(
            "each id where its key puts it, or moved v2 -> v1 after the first 503; ids on v2 {lo}..{hi} of {}",
            split.len()
        ),
        &format!(
            "{same} where predicted, {moved} moved v2 -> v1, {} otherwise{}; ids on v2 {predicted_v2}",
            wrong.len(),
            wrong.first().map(|w| format!(" (first: {w})")).unwrap_or_default()
        ),
        wrong.is_empty() && (lo..=hi).contains(&predicted_v2),
    );
    cx.row(
        "2 guard trip: counters",
        &format!("tripped 1, diverted = {moved} moved, undivertable 0, open 1 while open"),
        &format!("{fin} (open {} when the load stopped)", at_stop.open),
        fin.tripped == 1 && fin.diverted == moved && fin.undivertable == 0 && at_stop.open == 1,
    );
    cx.figure("guard trip: diverted vs moved", format!("{} vs {moved}", fin.diverted));
    let warns = log_lines(&envoy, "subset-router: guard v2 tripped");
    cx.row(
        "2 guard trip: log",
        "one warning: guard v2 tripped (trip 1 of 3) ... for 5s",
        &warns
            .first()
            .map(|l| format!("{} line(s): {}", warns.len(), l.rsplit("] ").next().unwrap_or(l)))
            .unwrap_or_else(|| "none".into()),
        warns.len() == 1 && warns[0].contains("trip 1 of 3") && warns[0].contains("for 5s"),
    );
    let mut all = evs;
    all.extend(probes);
    let mut st = expected_from(&all, rule_of_path);
    set_guard(&mut st, "v2", &fin);
    cx.final_counters(&envoy, "2 guard trip: counters", &st);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Cooldown, re-trip, latch, reset by a reload
// ---------------------------------------------------------------------------------------

const COOLDOWN_S: f64 = 2.0;

fn guard_cooldown_latch(cx: &mut Ctx) -> Result<(), String> {
    let plugin = format!(
        r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": 50}}, {{"subset": "v2", "weight": 50}}]}}}}
      ],
      {},
      "default": {{"subset": "v1"}}
    }}"#,
        guard_json(
            r#""maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 5, "cooldownSeconds": 2, "maxTrips": 3"#
        )
    );
    let envoy = cx.start(
        "guard-cooldown",
        &plugin,
        vec![UpstreamBehaviour::failing("v2", 503)],
        true,
    )?;
    let (mut clients, probes) = balanced_clients(&envoy, 1)?;
    let t0 = Instant::now();
    let make = |_: usize, seq: u64| {
        if seq % 10 == 9 {
            Req::debug()
        } else {
            Req::split("/")
        }
    };
    let env = cx.env;
    // The same configuration, re-applied as a new version (same rules, new text).
    let reloaded = plugin.replace("\"rules\"", "\"rules\" ");
    // Timeline of (time, tripped, open) polled every 25 ms, and the reload's moments.
    let (evs, control) = drive(&mut clients, t0, &make, || -> Result<_, String> {
        let mut timeline: Vec<(f64, GuardStats)> = Vec::new();
        let poll_until = |timeline: &mut Vec<(f64, GuardStats)>,
                              what: &str,
                              timeout: f64,
                              done: &dyn Fn(&GuardStats) -> bool|
         -> Result<f64, String> {
            let deadline = t0.elapsed().as_secs_f64() + timeout;
            loop {
                let g = guard_stats(env, &envoy, "v2")?;
                let t = t0.elapsed().as_secs_f64();
                timeline.push((t, g));
                if done(&g) {
                    return Ok(t);
                }
                if t > deadline {
                    return Err(format!("{what}: not within {timeout}s (last: {g})"));
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        };
        // A trip: the counter moves and the gauge reads 1; then, for a close, the gauge 0.
        let t1 = poll_until(&mut timeline, "trip 1", 15.0, &|g| g.tripped >= 1 && g.open == 1)?;
        let c1 = poll_until(&mut timeline, "close 1", 10.0, &|g| g.open == 0)?;
        let t2 = poll_until(&mut timeline, "trip 2", 15.0, &|g| g.tripped >= 2 && g.open == 1)?;
        let c2 = poll_until(&mut timeline, "close 2", 12.0, &|g| g.open == 0)?;
        let t3 = poll_until(&mut timeline, "trip 3 (latch)", 15.0, &|g| g.tripped >= 3 && g.open == 1)?;
        // Latched: open well past the 3 × cooldown a fourth trip would get.
        let hold = 3.0 * COOLDOWN_S + 2.0;
        let _ = poll_until(&mut timeline, "latched hold", hold, &|g| g.open == 0 || g.tripped > 3);
        let held_until = t0.elapsed().as_secs_f64();
        let before = ecds_counter(&envoy, "update_success");
        envoy.replace_ecds(env, &reloaded)?;
        let reload = t0.elapsed().as_secs_f64();
        wait_until(Duration::from_secs(10), Duration::from_millis(25), || {
            (ecds_counter(&envoy, "update_success") > before).then_some(())
        })
        .ok_or("the ECDS reload was not applied within 10 s")?;
        let applied = t0.elapsed().as_secs_f64();
        let r = poll_until(&mut timeline, "reset after reload", 10.0, &|g| g.open == 0)?;
        let t4 = poll_until(&mut timeline, "trip after reload", 15.0, &|g| g.tripped >= 4 && g.open == 1)?;
        let c4 = poll_until(&mut timeline, "close after reload", 10.0, &|g| g.open == 0)?;
        Ok((timeline, [t1, c1, t2, c2, t3, held_until, reload, applied, r, t4, c4]))
    });
    errors_row(cx, "3 cooldown: requests", &evs);
    let (timeline, [t1, c1, t2, c2, t3, held_until, reload, applied, r, t4, c4]) = control?;
    let fin = guard_stats(cx.env, &envoy, "v2")?;
    let split: Vec<&Ev> = evs.iter().filter(|e| e.kind == Kind::Split).collect();
    let v2_between = |a: f64, b: f64| {
        split
            .iter()
            .filter(|e| e.served == "v2" && e.sent > a && e.sent < b)
            .count()
    };
    let open_ok = |d: f64, k: f64| d >= k * COOLDOWN_S - 0.5 && d <= k * COOLDOWN_S + 2.0;
    cx.row(
        "3 cooldown: trip 1 open 1 x cooldown, then v2 back in the split",
        "open 2 s (±1 tick); v2 gets split requests again before trip 2",
        &format!(
            "open {:.2}s; {} split requests to v2 between close and trip 2",
            c1 - t1,
            v2_between(c1, t2)
        ),
        open_ok(c1 - t1, 1.0) && v2_between(c1, t2) > 0,
    );
    cx.row(
        "3 cooldown: trip 2 open 2 x cooldown, then v2 back",
        "open 4 s (±1 tick); v2 gets split requests again before trip 3",
        &format!(
            "open {:.2}s; {} split requests to v2 between close and trip 3",
            c2 - t2,
            v2_between(c2, t3)
        ),
        open_ok(c2 - t2, 2.0) && v2_between(c2, t3) > 0,
    );
    let latched_polls: Vec<&(f64, GuardStats)> = timeline
        .iter()
        .filter(|(t, _)| *t >= t3 && *t <= held_until)
        .collect();
    let latched_ok = latched_polls.iter().all(|(_, g)| g.open == 1 && g.tripped == 3);
    let v2_latched = v2_between(t3 + 1.5, reload);
    cx.row(
        "3 latch: after maxTrips (3) v2 stays out",
        &format!("open and tripped = 3 for {:.0}+ s (> 3 x cooldown); 0 split requests to v2", 3.0 * COOLDOWN_S + 2.0),
        &format!(
            "{} polls over {:.1}s: {}; {v2_latched} split requests to v2 (from trip + 1.5 s to the reload)",
            latched_polls.len(),
            held_until - t3,
            if latched_ok { "all open, tripped 3" } else { "NOT always open" }
        ),
        latched_ok && held_until - t3 >= 3.0 * COOLDOWN_S + 1.5 && v2_latched == 0,
    );
    cx.row(
        "3 reload (ECDS): resets the guard",
        "closed after the reload, v2 back in the split, next trip is trip 1 (open 1 x cooldown)",
        &format!(
            "applied {:.2}s after the swap, closed {:.2}s after; {} split requests to v2 before it re-tripped; re-trip open {:.2}s",
            applied - reload,
            r - applied,
            v2_between(r, t4),
            c4 - t4
        ),
        v2_between(r, t4) > 0 && open_ok(c4 - t4, 1.0) && fin.tripped == 4,
    );
    let warns = log_lines(&envoy, "subset-router: guard v2 tripped");
    let trips: Vec<String> = warns
        .iter()
        .filter_map(|l| {
            let i = l.find("(trip ")?;
            Some(l[i + 1..].split(')').next()?.to_string())
        })
        .collect();
    let latched = warns.iter().filter(|l| l.contains("latched")).count();
    let closes = log_lines(&envoy, "subset-router: guard v2 closed").len();
    cx.row(
        "3 log: trips, latch, closes",
        "trips 1,2,3 of 3 (3rd latched), after the reload trip 1 of 3; 3 closes",
        &format!("{trips:?}; {latched} latched; {closes} closes"),
        trips == ["trip 1 of 3", "trip 2 of 3", "trip 3 of 3", "trip 1 of 3"]
            && latched == 1
            && closes == 3,
    );
    // Not sticky: requests whose first choice was v2 are those served by v2 plus the diverted
    // ones, a binomial count of the split requests.
    let n = split.iter().filter(|e| !e.served.is_empty()).count() as u64;
    let served_v2 = split.iter().filter(|e| e.served == "v2").count() as u64;
    let (lo, hi) = binomial_bounds(n, 0.5);
    let first_v2 = served_v2 + fin.diverted;
    cx.row(
        "3 cooldown: diverted (random split)",
        &format!("served by v2 + diverted within 4.5σ of half the {n} split requests [{lo}..{hi}]"),
        &format!("{served_v2} + {} = {first_v2}", fin.diverted),
        (lo..=hi).contains(&first_v2) && fin.undivertable == 0,
    );
    debug_row(cx, "3 cooldown: testers", &evs, t3 + 1.5);
    cx.figure(
        "cooldown timeline (s from start)",
        format!(
            "trip1 {t1:.1} close {c1:.1} | trip2 {t2:.1} close {c2:.1} | trip3 (latched) {t3:.1} held to {held_until:.1} | reload {reload:.1} applied {applied:.1} | trip {t4:.1} close {c4:.1}"
        ),
    );
    let mut all = evs;
    all.extend(probes);
    let mut st = expected_from(&all, rule_of_path);
    set_guard(&mut st, "v2", &fin);
    cx.final_counters(&envoy, "3 cooldown: counters", &st);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Baseline: everything fails -> no trip
// ---------------------------------------------------------------------------------------
fn guard_baseline(cx: &mut Ctx) -> Result<(), String> {
    let guard = r#""maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 3, "cooldownSeconds": 30"#;
    let plugin = format!(
        r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "control", "match": {{"pathPrefix": "/control"}},
          "route": {{"split": [{{"subset": "red", "weight": 50}}, {{"subset": "v3", "weight": 50}}]}}}},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": 50}}, {{"subset": "v2", "weight": 50}}]}}}}
      ],
      "guards": [
        {{"subset": "v2", {guard}, "baseline": "v1"}},
        {{"subset": "v3", {guard}}}
      ],
      "default": {{"subset": "v1"}}
    }}"#
    );
    let envoy = cx.start(
        "guard-baseline",
        &plugin,
        vec![
            UpstreamBehaviour::failing("v1", 503),
            UpstreamBehaviour::failing("v2", 503),
            UpstreamBehaviour::failing("v3", 503),
        ],
        false,
    )?;
    let (mut clients, probes) = balanced_clients(&envoy, 1)?;
    let t0 = Instant::now();
    let make = |_: usize, seq: u64| Req::split(if seq % 4 == 3 { "/control" } else { "/" });
    let env = cx.env;
    // Run until the control guard (no baseline) has tripped and 2 windows (6 s) have passed.
    let (evs, control_trip) = drive(&mut clients, t0, &make, || {
        let trip = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            guard_stats(env, &envoy, "v3")
                .ok()
                .filter(|g| g.tripped >= 1)
                .map(|_| t0.elapsed().as_secs_f64())
        });
        let left = Duration::from_millis(6300).saturating_sub(t0.elapsed());
        std::thread::sleep(left.max(Duration::from_secs(1)));
        trip
    });
    errors_row(cx, "4 baseline: requests", &evs);
    let v2 = guard_stats(cx.env, &envoy, "v2")?;
    let v3 = guard_stats(cx.env, &envoy, "v3")?;
    let canary: Vec<&Ev> = evs.iter().filter(|e| e.path == "/").collect();
    let n = canary.len() as u64;
    let on_v2 = canary.iter().filter(|e| e.served == "v2").count() as u64;
    let failed = canary.iter().filter(|e| e.status == 503).count();
    let (lo, hi) = binomial_bounds(n, 0.5);
    let dur = evs.last().map_or(0.0, |e| e.sent);
    cx.row(
        "4 baseline: v1 and v2 both 503 -> no trip",
        &format!("guard v2 (baseline v1): tripped 0, open 0, diverted 0; v2 keeps 50% [{lo}..{hi}]"),
        &format!(
            "{v2}; v2 {on_v2}/{n} ({:.1}%), {failed} of them 503, over {dur:.1}s (2 windows)",
            pct(on_v2, n)
        ),
        v2 == GuardStats::default() && (lo..=hi).contains(&on_v2) && dur >= 6.0,
    );
    cx.row(
        "4 baseline: control guard without baseline (v3) trips",
        "guard v3 trips on the same traffic",
        &format!(
            "{v3}{}",
            control_trip.map(|t| format!(", tripped {t:.2}s in")).unwrap_or_default()
        ),
        v3.tripped == 1,
    );
    let rule_of = |e: &Ev| match (e.kind, e.path.as_str()) {
        (Kind::Debug, _) => "debug",
        (_, "/control") => "control",
        _ => "canary",
    };
    let mut all = evs;
    all.extend(probes);
    let mut st = expected_from(&all, rule_of);
    set_guard(&mut st, "v3", &v3);
    cx.final_counters(&envoy, "4 baseline: counters", &st);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Below minRequests -> no trip
// ---------------------------------------------------------------------------------------
fn guard_min_requests(cx: &mut Ctx) -> Result<(), String> {
    // The canary gets every split request (the other subset has weight 0): the count that
    // reaches it is exact, and once open nothing can be diverted (undivertable).
    let plugin = r#"{
      "rules": [
        {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
         "route": {"subset": "v2"}},
        {"name": "canary", "match": {"pathPrefix": "/"},
         "route": {"split": [{"subset": "red", "weight": 0}, {"subset": "blue", "weight": 100}]}}
      ],
      "guards": [{"subset": "blue", "maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 30,
                  "cooldownSeconds": 60}],
      "default": {"subset": "v1"}
    }"#;
    let envoy = cx.start(
        "guard-min-requests",
        plugin,
        vec![UpstreamBehaviour::failing("blue", 503)],
        false,
    )?;
    let (mut clients, probes) = balanced_clients(&envoy, 1)?;
    let t0 = Instant::now();
    let mut evs = Vec::new();
    let send = |clients: &mut Conns, n: usize, evs: &mut Vec<Ev>| {
        for _ in 0..n {
            let (c, w) = &mut clients[evs.len() % 2];
            let e = exchange(c, *w, t0, &Req::split("/"));
            evs.push(e);
        }
    };
    // 19 failing requests, spread over both workers: no worker alone has them all.
    send(&mut clients, 19, &mut evs);
    let per_worker: Vec<usize> = (0..2).map(|w| evs.iter().filter(|e| e.worker == w).count()).collect();
    std::thread::sleep(Duration::from_millis(2500));
    let below = guard_stats(cx.env, &envoy, "blue")?;
    cx.row(
        "5 minRequests: 19 failing requests (< 20) -> no trip",
        "after 2.5 s (2+ ticks on each worker): tripped 0, open 0",
        &format!(
            "{below}; {} of 19 answered 503 (worker 0: {}, worker 1: {})",
            evs.iter().filter(|e| e.status == 503 && e.served == "blue").count(),
            per_worker[0],
            per_worker[1]
        ),
        below == GuardStats::default(),
    );
    // The 20th: the window now holds minRequests failures across the two workers.
    send(&mut clients, 1, &mut evs);
    let t20 = t0.elapsed().as_secs_f64();
    let tripped = wait_until(Duration::from_secs(5), Duration::from_millis(25), || {
        guard_stats(cx.env, &envoy, "blue")
            .ok()
            .filter(|g| g.tripped >= 1)
            .map(|_| t0.elapsed().as_secs_f64())
    });
    cx.row(
        "5 minRequests: the 20th failing request -> trip",
        "tripped 1 within 2 ticks",
        &tripped
            .map(|t| format!("tripped {:.2}s after the 20th", t - t20))
            .unwrap_or_else(|| "no trip in 5 s".into()),
        tripped.is_some(),
    );
    // Open, but the split has nothing else: the requests still go to blue, as undivertable
    // (once both workers have read the open state, at their next tick).
    std::thread::sleep(Duration::from_millis(2000));
    let before = evs.len();
    send(&mut clients, 10, &mut evs);
    let after: Vec<&Ev> = evs[before..].iter().collect();
    let fin = guard_stats(cx.env, &envoy, "blue")?;
    cx.row(
        "5 minRequests: open with no other positive weight",
        "10 more requests all to blue, undivertable 10, diverted 0, open 1",
        &format!(
            "{} to blue; {fin}",
            after.iter().filter(|e| e.served == "blue").count()
        ),
        after.iter().all(|e| e.served == "blue")
            && fin.tripped == 1
            && fin.undivertable == 10
            && fin.diverted == 0
            && fin.open == 1,
    );
    errors_row(cx, "5 minRequests: requests", &evs);
    let mut all = evs;
    all.extend(probes);
    let mut st = expected_from(&all, rule_of_path);
    set_guard(&mut st, "blue", &fin);
    cx.final_counters(&envoy, "5 minRequests: counters", &st);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. Latency trigger
// ---------------------------------------------------------------------------------------
fn guard_latency(cx: &mut Ctx) -> Result<(), String> {
    let plugin = format!(
        r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": 50}}, {{"subset": "v2", "weight": 50}}]}}}}
      ],
      {},
      "default": {{"subset": "v1"}}
    }}"#,
        guard_json(
            r#""maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 5, "cooldownSeconds": 30, "slowMs": 100, "maxSlowPercent": 50"#
        )
    );
    let envoy = cx.start(
        "guard-latency",
        &plugin,
        vec![UpstreamBehaviour::slow("v2", 300)],
        false,
    )?;
    // 4 connections per worker: a v2 request holds its connection for 300 ms.
    let (mut clients, probes) = balanced_clients(&envoy, 4)?;
    let t0 = Instant::now();
    let make = |_: usize, seq: u64| {
        if seq % 10 == 9 {
            Req::debug()
        } else {
            Req::split("/")
        }
    };
    let env = cx.env;
    let (evs, trip_at) = drive(&mut clients, t0, &make, || {
        let trip = wait_until(Duration::from_secs(20), Duration::from_millis(25), || {
            guard_stats(env, &envoy, "v2")
                .ok()
                .filter(|g| g.tripped >= 1)
                .map(|_| t0.elapsed().as_secs_f64())
        });
        if trip.is_some() {
            std::thread::sleep(Duration::from_secs(3));
        }
        trip
    });
    errors_row(cx, "6 latency: requests", &evs);
    let trip_at = trip_at.ok_or("the latency guard did not trip within 20 s")?;
    let fin = guard_stats(cx.env, &envoy, "v2")?;
    let split: Vec<&Ev> = evs.iter().filter(|e| e.kind == Kind::Split).collect();
    let lat = |s: &str| {
        let mut v: Vec<f64> = split
            .iter()
            .filter(|e| e.served == s)
            .map(|e| e.latency())
            .collect();
        v.sort_by(f64::total_cmp);
        (v.len(), v.first().copied().unwrap_or(0.0), v.get(v.len() / 2).copied().unwrap_or(0.0))
    };
    let (n2, min2, med2) = lat("v2");
    let (n1, _, med1) = lat("v1");
    let ok_status = split.iter().all(|e| e.status == 200);
    let cut = cut_of(&evs, |e| e.served == "v2" && e.latency() > 0.1)
        .ok_or("no slow v2 response at all")?;
    let latency = cut.last_v2 - cut.first_bad;
    cx.row(
        "6 latency: v2 answers after 300 ms (slowMs 100, maxSlowPercent 50) -> trips",
        "first slow response -> last split request to v2 ≤ 7 s; then none; tripped 1; all 200",
        &format!(
            "{latency:.2}s (trip in /stats {:.2}s after it); then {} split requests over {:.2}s, 0 to v2; {fin}; v2 {n2} responses (min {:.0} ms, median {:.0} ms), v1 {n1} (median {:.1} ms); {}",
            trip_at - cut.first_bad,
            cut.tail,
            cut.tail_s,
            min2 * 1e3,
            med2 * 1e3,
            med1 * 1e3,
            if ok_status { "all 200" } else { "NOT all 200" }
        ),
        latency <= 7.0
            && cut.tail >= 20
            && cut.tail_s >= 1.5
            && fin.tripped == 1
            && min2 >= 0.28
            && ok_status,
    );
    cx.figure("latency trip (first slow response -> v2 cut)", format!("{latency:.2}s"));
    let warns = log_lines(&envoy, "subset-router: guard v2 tripped");
    cx.row(
        "6 latency: log",
        "one warning naming the slow requests (slower than 100ms)",
        &warns
            .first()
            .map(|l| format!("{} line(s): {}", warns.len(), l.rsplit("] ").next().unwrap_or(l)))
            .unwrap_or_else(|| "none".into()),
        warns.len() == 1 && warns[0].contains("slower than 100ms"),
    );
    debug_row(cx, "6 latency: testers while open", &evs, cut.last_v2);
    let mut all = evs;
    all.extend(probes);
    let mut st = expected_from(&all, rule_of_path);
    set_guard(&mut st, "v2", &fin);
    cx.final_counters(&envoy, "6 latency: counters", &st);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 7. Sticky split with a guarded canary
// ---------------------------------------------------------------------------------------
const STICKY_IDS: usize = 400;

fn sticky_guard(cx: &mut Ctx) -> Result<(), String> {
    let base = |guards: &str| {
        format!(
            r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": 40}}, {{"subset": "v2", "weight": 30}}, {{"subset": "v3", "weight": 30}}],
                    "stickyBy": {{"header": "x-user-id"}}}}}}
      ],{guards}
      "default": {{"subset": "v1"}}
    }}"#
        )
    };
    let unguarded = base("");
    let guarded = base(&format!(
        "\n      {},",
        guard_json(r#""maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 5, "cooldownSeconds": 60"#)
    ));
    // Where each id is, with nothing guarded yet (v2 already failing: no guard to see it).
    let envoy = cx.start(
        "sticky-guard",
        &unguarded,
        vec![UpstreamBehaviour::failing("v2", 503)],
        true,
    )?;
    let (mut clients, probes) = balanced_clients(&envoy, 1)?;
    let t0 = Instant::now();
    let id = |i: usize| format!("user-{i:03}");
    let round = |clients: &mut Conns, r: usize| -> Vec<Ev> {
        (0..STICKY_IDS)
            .map(|i| {
                let (c, w) = &mut clients[(i + r) % 2];
                exchange(c, *w, t0, &Req::sticky("/", id(i)))
            })
            .collect()
    };
    let learn = round(&mut clients, 0);
    let home: BTreeMap<String, String> = learn
        .iter()
        .filter_map(|e| Some((e.id.clone()?, e.served.clone())))
        .collect();
    let count = |s: &str| home.values().filter(|v| *v == s).count() as u64;
    let n = STICKY_IDS as u64;
    let shares_ok = [("v1", 0.4), ("v2", 0.3), ("v3", 0.3)]
        .iter()
        .all(|(s, p)| within_binomial(count(s), n, *p));
    cx.row(
        "7 sticky guard: ids before any guard",
        "v1 40% / v2 30% / v3 30% of ids (4.5σ)",
        &format!("v1 {} / v2 {} / v3 {}", count("v1"), count("v2"), count("v3")),
        shares_ok && home.len() == STICKY_IDS,
    );

    // The guard arrives by ECDS; rounds of every id until it trips, then 3 more.
    let before = ecds_counter(&envoy, "update_success");
    envoy.replace_ecds(cx.env, &guarded)?;
    wait_until(Duration::from_secs(10), Duration::from_millis(25), || {
        (ecds_counter(&envoy, "update_success") > before).then_some(())
    })
    .ok_or("the guarded configuration was not applied within 10 s")?;
    let mut rounds: Vec<Vec<Ev>> = Vec::new();
    let mut tripped_after = None;
    for r in 1..=20 {
        rounds.push(round(&mut clients, r));
        if guard_stats(cx.env, &envoy, "v2")?.tripped >= 1 {
            tripped_after = Some(r);
            break;
        }
    }
    let tripped_after = tripped_after.ok_or("the guard did not trip in 20 rounds")?;
    // Both workers have read the open state by their next tick.
    std::thread::sleep(Duration::from_millis(1500));
    let post: Vec<Vec<Ev>> = (0..3).map(|r| round(&mut clients, 100 + r)).collect();
    let fin = guard_stats(cx.env, &envoy, "v2")?;

    let mut moved_to: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in post.iter().flatten() {
        moved_to
            .entry(e.id.clone().unwrap_or_default())
            .or_default()
            .insert(e.served.clone());
    }
    let on_v2: Vec<&String> = home.iter().filter(|(_, s)| *s == "v2").map(|(i, _)| i).collect();
    let mut dest: BTreeMap<String, u64> = BTreeMap::new();
    let mut unstable = 0;
    for i in &on_v2 {
        match moved_to.get(*i) {
            Some(s) if s.len() == 1 && !s.contains("v2") => {
                *dest.entry(s.iter().next().cloned().unwrap_or_default()).or_default() += 1
            }
            _ => unstable += 1,
        }
    }
    // After the trip the ids of v2 go to their next-best subset by weight: v1 40 : v3 30.
    let to_v1 = dest.get("v1").copied().unwrap_or(0);
    let (lo, hi) = binomial_bounds(on_v2.len() as u64, 4.0 / 7.0);
    cx.row(
        "7 sticky guard: ids of v2 after the trip",
        &format!(
            "each on one subset, not v2, in all 3 rounds (both workers); v1 : v3 as 40 : 30 ({lo}..{hi} to v1)"
        ),
        &format!(
            "{} ids of v2: {dest:?}, {unstable} not on one non-v2 subset; tripped after round {tripped_after}",
            on_v2.len()
        ),
        unstable == 0 && (lo..=hi).contains(&to_v1),
    );
    let all_after: Vec<&Ev> = rounds.iter().flatten().chain(post.iter().flatten()).collect();
    let strays: Vec<String> = all_after
        .iter()
        .filter(|e| {
            let h = home.get(e.id.as_deref().unwrap_or("")).map(String::as_str);
            h != Some("v2") && h != Some(e.served.as_str())
        })
        .map(|e| format!("{} {:?} -> {}", e.id.as_deref().unwrap_or(""), home.get(e.id.as_deref().unwrap_or("")), e.served))
        .collect();
    cx.row(
        "7 sticky guard: ids of v1 and v3 never move",
        "every request of an id on v1 or v3 served where it was",
        &format!(
            "{} requests of {} ids, {} elsewhere{}",
            all_after
                .iter()
                .filter(|e| home.get(e.id.as_deref().unwrap_or("")).is_some_and(|h| h != "v2"))
                .count(),
            home.len() - on_v2.len(),
            strays.len(),
            strays.first().map(|s| format!(" (first: {s})")).unwrap_or_default()
        ),
        strays.is_empty(),
    );
    let moved = all_after
        .iter()
        .filter(|e| {
            home.get(e.id.as_deref().unwrap_or("")).map(String::as_str) == Some("v2")
                && e.served != "v2"
        })
        .count() as u64;
    cx.row(
        "7 sticky guard: counters",
        &format!("tripped 1, diverted = {moved} requests of v2's ids served elsewhere, open 1"),
        &fin.to_string(),
        fin.tripped == 1 && fin.diverted == moved && fin.undivertable == 0 && fin.open == 1,
    );
    cx.figure("sticky guard: diverted vs moved", format!("{} vs {moved}", fin.diverted));
    let mut all: Vec<Ev> = learn;
    all.extend(rounds.into_iter().flatten());
    all.extend(post.into_iter().flatten());
    errors_row(cx, "7 sticky guard: requests", &all);
    all.extend(probes);
    let mut st = expected_from(&all, rule_of_path);
    set_guard(&mut st, "v2", &fin);
    cx.final_counters(&envoy, "7 sticky guard: counters", &st);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

type ScenarioFn = fn(&mut Ctx) -> Result<(), String>;

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    ("ramp", ramp),
    ("guard_trip", guard_trip),
    ("guard_cooldown_latch", guard_cooldown_latch),
    ("guard_baseline", guard_baseline),
    ("guard_min_requests", guard_min_requests),
    ("guard_latency", guard_latency),
    ("sticky_guard", sticky_guard),
];

fn main() {
    let Some(selection) = subset_router_it::select_scenarios("progressive", SCENARIOS) else {
        return;
    };
    let t0 = Instant::now();
    let env = match Env::from_env(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("subset-router progressive: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let filter_len = std::fs::metadata(env.build.file()).map(|m| m.len()).unwrap_or(0);
    println!("subset-router progressive-delivery suite ({} build, --concurrency {CONCURRENCY})", env.build.name());
    println!("  {}", env.describe());
    println!("  filter: {} ({filter_len} bytes)", env.build.file().display());
    println!("  scratch: {}", env.work_dir.display());
    println!(
        "  scenarios: {}",
        selection.run.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    );

    let mut table = Table::default();
    let mut cx = Ctx {
        env: &env,
        table: &mut table,
        failed: false,
        figures: Vec::new(),
        requests: 0,
    };
    let mut timings = Vec::new();
    for (name, f) in selection.run.iter().copied() {
        println!("\n=== {name} ===");
        let t = Instant::now();
        if let Some(e) = subset_router_it::run_caught(|| f(&mut cx)) {
            println!("    ERROR: {e}");
            cx.row(name, "", &format!("ERROR: {}", first_line(&e)), false);
        }
        let d = t.elapsed();
        println!("    ({name}: {:.1}s)", d.as_secs_f64());
        timings.push((*name, d));
    }
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
    println!(
        "{requests} requests; timings: {}; total {:.1}s",
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
    let nfail = table.rows.iter().filter(|r| !r.pass).count();
    println!(
        "result: {} rows, {} failed -> {}",
        table.rows.len(),
        nfail,
        if failed { "FAIL" } else { "PASS" }
    );
    if failed {
        std::process::exit(1);
    }
}
