//! The safe side of the module: configuration load, the per-stream hooks and the
//! once-a-second tick, and the core's host traits over the [`crate::ffi`] handles. Every
//! per-request decision and bookkeeping step is [`subset_router_core::adapter::Filter`]'s; this
//! only translates.
//!
//! # Ticks
//!
//! Ramps move and guard counts merge in [`Filter::on_tick`], once a second. One configuration is
//! one [`Filter`] shared by every worker thread (its live state is atomics, its pending guard
//! counts one short lock per guard), so one tick per configuration and second covers the
//! traffic of the whole proxy — no per-worker tick is needed. Two things can run it:
//!
//! * normally the configuration's [`Ticker`]: Envoy's per-configuration scheduler runs it on the
//!   main thread every second (see [`crate::ticker`]), whether traffic flows or not;
//! * as a fallback, the request path ("lazy" ticks): when no tick has run for [`LAZY_STALLED_MS`]
//!   (main thread blocked) — or, without a ticker (`--mode validate`, or Envoy gave no scheduler /
//!   no thread could be started), for [`TICK_MS`] — the first request to notice claims the tick
//!   with a compare-and-swap on the last-tick timestamp and runs it before its own decision.
//!   The trade-off of lazy ticks: with no traffic nothing moves (gauges stay, a guard's cooldown
//!   ends in its record only when the next request arrives — which is the first moment it
//!   matters, as only a request can be diverted), and the request that ticks pays for the merge
//!   (microseconds).
//!
//! Two ticks never run at once (a `try_lock`: a tick that finds another running is skipped).
//!
//! # State
//!
//! Each configuration owns the shared data its guards merge into ([`SharedData`], dropped with
//! it): every worker reaches it through the one [`FilterConfig`], and no other configuration
//! (another listener, another route) can reach it, whatever their texts.
//!
//! # Fleet queries
//!
//! The rounds a tick wins ([`Filter::on_tick`]) go out as config-level HTTP callouts through
//! Envoy's cluster, only ever from the main thread ([`on_scheduled_tick`]), never from a
//! stream: a round a lazy tick wins waits for the next main-thread tick (one per guard; a newer
//! round replaces it, and the replaced one counts as a failed query). The answer comes back on
//! the main thread ([`on_callout_done`]) and goes to [`Filter::on_fleet_answer`]; the next tick
//! evaluates it. No request ever waits on a query.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use subset_router_core::adapter::{
    counter_names, gauge_names, load_logged, Filter, FleetQuery, Served, Verdict,
};
use subset_router_core::host::{
    Counters, Gauges, HostCall, HostError, Log, RequestHost, ResponseHost, RouteCache,
};
use subset_router_core::request::{parse_peer_address, HeaderSource};
use subset_router_core::rng::WyRand;

use crate::ffi::{
    self, CalloutResult, ConfigHandle, FilterHandle, HeaderMap, LogLevel, StatsHandle,
};
use crate::process::{self, NativeClock, SharedData};
use crate::ticker::Ticker;

/// The `filter_name` this module answers to (Envoy config `filter_name: subset_router`). Also
/// the plugin name in the guard keys of a configuration's store
/// (`subset_router.subset_router.<slot>.guard.<i>`).
pub const FILTER_NAME: &str = "subset_router";

/// The largest fleet answer read, as in the Wasm build (a Prometheus vector of a few series is
/// a few hundred bytes).
pub const FLEET_ANSWER_MAX_BYTES: usize = 64 * 1024;

/// How long after its own timeout a fleet query Envoy has not answered is given up. Envoy
/// answers every callout it accepted (a failure at the timeout), so this only keeps the table
/// of queries in flight bounded should an answer never come.
pub const CALLOUT_GRACE_MS: u64 = 5_000;

/// Response-code details of a local reply sent by the filter (Envoy's `%RESPONSE_CODE_DETAILS%`).
const LOCAL_REPLY_DETAILS: &[u8] = b"subset_router_forged_routing_header";

/// Lazy ticks without a ticker: at most once a second, as the ticker would.
pub const TICK_MS: u64 = 1000;
/// Lazy ticks with a ticker: only when it has missed a few seconds.
pub const LAZY_STALLED_MS: u64 = 3000;

/// One accepted configuration, shared (read-only, `Sync`) by every stream on every worker.
#[derive(Debug)]
pub struct FilterConfig {
    filter: Filter,
    /// Envoy's counter id per core counter index (the order of [`counter_names`]).
    counter_ids: Vec<usize>,
    /// Envoy's gauge id per core gauge index (the order of [`gauge_names`]).
    gauge_ids: Vec<usize>,
    /// The shared data this configuration's guards merge into: every worker's, no other
    /// configuration's.
    store: SharedData,
    /// Monotonic milliseconds + 1 of the last tick (0: never).
    last_tick: AtomicU64,
    /// How old the last tick must be for a request to run one.
    lazy_after_ms: u64,
    /// Held while a tick runs.
    ticking: Mutex<()>,
    /// `None` once stopped, or when there is none.
    ticker: Mutex<Option<Ticker>>,
    /// Fleet rounds a request-path tick won, for the next main-thread tick to send: at most one
    /// per guard.
    deferred: Mutex<Vec<FleetQuery>>,
    /// Fleet queries Envoy accepted and has not answered, by callout id.
    in_flight: Mutex<HashMap<u64, InFlight>>,
}

/// A fleet query sent and not answered yet.
#[derive(Debug)]
struct InFlight {
    query: FleetQuery,
    /// Monotonic ms after which it is given up ([`CALLOUT_GRACE_MS`] after its timeout).
    expires_ms: u64,
}

/// Every lock here guards plain data that each update leaves whole (an insert, a take), so a
/// lock poisoned by a panic elsewhere still holds sound data.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// Envoy hands the configuration to every worker thread as a raw pointer (`ffi`), and its ticker
// runs on a thread of its own: checked here, so that a field that is not thread-safe fails the
// build instead of racing.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FilterConfig>();
};

impl FilterConfig {
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Whether a ticker thread runs for this configuration.
    pub fn has_ticker(&self) -> bool {
        self.ticker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Runs the tick now, unless one is already running; returns the fleet rounds it won.
    fn tick(&self, stats: &(impl Counters + Gauges)) -> Vec<FleetQuery> {
        let _running = match self.ticking.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Vec::new(),
        };
        self.filter
            .on_tick(&self.store, &NativeClock, stats, stats, &EnvoyLog)
    }

    /// Keeps rounds a request-path tick won for the next main-thread tick: a stream may not
    /// send them. A round still waiting for its guard is replaced by the newer one and counts
    /// as a failed query (no main-thread tick ran for a whole interval).
    fn defer(&self, queries: Vec<FleetQuery>, counters: &impl Counters) {
        if queries.is_empty() {
            return;
        }
        let mut replaced = Vec::new();
        {
            let mut deferred = locked(&self.deferred);
            for query in queries {
                match deferred
                    .iter_mut()
                    .find(|d| d.round.guard == query.round.guard)
                {
                    Some(waiting) => replaced.push(std::mem::replace(waiting, query)),
                    None => deferred.push(query),
                }
            }
        }
        for query in replaced {
            self.answer(
                &query,
                Err("not sent: no main-thread tick ran before the next round was due"),
                counters,
            );
        }
    }

    /// Sends one fleet round through Envoy's cluster (main thread). A round Envoy refuses is
    /// a failed query at once.
    fn send(&self, handle: &ConfigHandle<'_>, query: FleetQuery, counters: &impl Counters) {
        let headers = [
            (":method", "GET"),
            (":path", query.path.as_str()),
            (":authority", query.authority.as_str()),
            ("accept", "application/json"),
        ];
        match handle.http_callout(&query.cluster, &headers, query.timeout_ms) {
            Ok(id) => {
                let expires_ms = process::monotonic_ms()
                    .saturating_add(query.timeout_ms)
                    .saturating_add(CALLOUT_GRACE_MS);
                // Envoy records the callout before returning its id and answers it from a later
                // event of the main loop, so the answer cannot overtake this insert.
                let previous = locked(&self.in_flight).insert(id, InFlight { query, expires_ms });
                if let Some(previous) = previous {
                    self.answer(
                        &previous.query,
                        Err("no answer: Envoy reused its callout id"),
                        counters,
                    );
                }
            }
            Err(refused) => self.answer(
                &query,
                Err(&format!("the callout could not be sent: {refused}")),
                counters,
            ),
        }
    }

    /// Gives up the queries Envoy should have answered long ago (see [`CALLOUT_GRACE_MS`]).
    fn expire_callouts(&self, counters: &impl Counters) {
        let now = process::monotonic_ms();
        let mut expired = Vec::new();
        locked(&self.in_flight).retain(|_, f| {
            let keep = f.expires_ms > now;
            if !keep {
                expired.push(f.query.clone());
            }
            keep
        });
        for query in expired {
            self.answer(
                &query,
                Err("Envoy never answered (given up after the timeout)"),
                counters,
            );
        }
    }

    fn answer(
        &self,
        query: &FleetQuery,
        answer: Result<(u64, &[u8]), &str>,
        counters: &impl Counters,
    ) {
        self.filter.on_fleet_answer(
            query,
            answer,
            &self.store,
            &NativeClock,
            counters,
            &EnvoyLog,
        );
    }

    /// The request path's fallback tick (see the module notes).
    fn tick_lazily(&self, stats: &(impl Counters + Gauges)) {
        let now = process::monotonic_ms();
        let last = self.last_tick.load(Ordering::Relaxed);
        if last != 0 && now < (last - 1).saturating_add(self.lazy_after_ms) {
            return;
        }
        // One claimant per period, whatever the number of workers noticing at once.
        if self
            .last_tick
            .compare_exchange(
                last,
                now.saturating_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            let won = self.tick(stats);
            self.defer(won, stats);
        }
    }
}

/// Per-stream state: the configuration and what the request path left for the response.
#[derive(Debug)]
pub struct StreamFilter {
    config: Arc<FilterConfig>,
    served: Served,
}

impl StreamFilter {
    pub fn new(config: Arc<FilterConfig>) -> Self {
        Self {
            config,
            served: Served::default(),
        }
    }
}

/// Defines one stat per name with `define`; logs and returns `None` on the first refusal.
pub(crate) fn define_all(
    kind: &str,
    names: &[String],
    define: impl Fn(&str) -> Result<usize, u32>,
) -> Option<Vec<usize>> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        match define(name) {
            Ok(id) => ids.push(id),
            Err(code) => {
                ffi::log(
                    LogLevel::Error,
                    &format!(
                        "subset-router: could not define {kind} {name} (metrics result {code}); \
                         configuration rejected"
                    ),
                );
                return None;
            }
        }
    }
    Some(ids)
}

/// `on_http_filter_config_new`: validates the JSON configuration, defines every counter and
/// gauge, evaluates the ramps at the current time and starts the configuration's ticker.
/// `None` (after logging why at error level) makes Envoy reject the configuration.
pub fn new_config(handle: &ConfigHandle<'_>, name: &[u8], json: &[u8]) -> Option<FilterConfig> {
    if name != FILTER_NAME.as_bytes() {
        ffi::log(
            LogLevel::Error,
            &format!(
                "subset-router: unknown filter_name {:?}: this module provides \"{FILTER_NAME}\"; \
                 configuration rejected",
                String::from_utf8_lossy(name)
            ),
        );
        return None;
    }
    // Envoy keeps a previous configuration of its own; the module does not know of one.
    let router = load_logged(json, &EnvoyLog, None)?;
    // Defined now, while Envoy still allows it (it freezes stat creation once this hook
    // returns), so every counter and gauge exists at 0 before the first request.
    let counter_ids = define_all("counter", &counter_names(&router), |n| {
        handle.define_counter(n)
    })?;
    let gauge_ids = define_all("gauge", &gauge_names(&router), |n| handle.define_gauge(n))?;
    let (ramps, guards) = (router.ramps().len(), router.guards().len());
    let router_has_fleet = router.guards().iter().any(|g| g.fleet.is_some());
    let rules = router.rule_names().count().saturating_sub(1);

    let filter = Filter::for_plugin(router, FILTER_NAME);
    let stats = ConfigStats {
        handle,
        counters: &counter_ids,
        gauges: &gauge_ids,
    };
    // Ramps at their share now (the first requests already get it), every gauge at its value.
    // Touches no shared state: only a tick joins the proxy-wide guard state.
    filter.start(&NativeClock, &stats, &stats, &EnvoyLog);

    // No thread for `envoy --mode validate`, which never runs the main loop.
    let ticker = if ffi::is_validation_mode() {
        None
    } else {
        match handle.scheduler().map(Ticker::spawn) {
            Some(Ok(ticker)) => Some(ticker),
            failure => {
                let why = match failure {
                    Some(Err(e)) => format!("no thread for the ticker ({e})"),
                    _ => "Envoy gave no configuration scheduler".to_owned(),
                };
                // Fleet queries are sent from the main thread only, which nothing runs here.
                let fleet = if router_has_fleet {
                    "; fleet guards send no queries (each round due counts in \
                     fleet_query_failed) and decide on this proxy's traffic alone"
                } else {
                    ""
                };
                ffi::log(
                    LogLevel::Warn,
                    &format!(
                        "subset-router: {why}: ramps and guards tick from the request path \
                         instead (at most once a second, only while requests arrive){fleet}"
                    ),
                );
                None
            }
        }
    };
    let lazy_after_ms = if ticker.is_some() {
        LAZY_STALLED_MS
    } else {
        TICK_MS
    };
    ffi::log(
        LogLevel::Info,
        &format!(
            "subset-router: configuration accepted: {rules} rule(s) + default, {} counter(s), \
             {} gauge(s), {ramps} ramp(s), {guards} guard(s); ticks {}",
            counter_ids.len(),
            gauge_ids.len(),
            if ticker.is_some() {
                "once a second on the main thread"
            } else {
                "from the request path"
            }
        ),
    );
    Some(FilterConfig {
        filter,
        counter_ids,
        gauge_ids,
        store: SharedData::default(),
        // The configuration starts ticked: `start` just evaluated the ramps.
        last_tick: AtomicU64::new(process::monotonic_ms().saturating_add(1)),
        lazy_after_ms,
        ticking: Mutex::new(()),
        ticker: Mutex::new(ticker),
        deferred: Mutex::new(Vec::new()),
        in_flight: Mutex::new(HashMap::new()),
    })
}

/// `on_http_filter_config_destroy`: stops the ticker (joined).
pub fn config_destroyed(config: &FilterConfig) {
    let ticker = config
        .ticker
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(ticker) = ticker {
        ticker.stop();
    }
}

/// `on_http_filter_config_scheduled` (main thread, once a second): the tick, then the fleet
/// rounds it won and those request-path ticks left, sent through Envoy.
pub fn on_scheduled_tick(config: &FilterConfig, handle: &ConfigHandle<'_>) {
    config
        .last_tick
        .store(process::monotonic_ms().saturating_add(1), Ordering::Relaxed);
    let stats = ConfigStats {
        handle,
        counters: &config.counter_ids,
        gauges: &config.gauge_ids,
    };
    config.expire_callouts(&stats);
    let mut queries = std::mem::take(&mut *locked(&config.deferred));
    queries.extend(config.tick(&stats));
    for query in queries {
        config.send(handle, query, &stats);
    }
}

/// `on_http_filter_config_http_callout_done` (main thread): a fleet query's answer, or its
/// failure, for the core to read. An id not in flight (given up already) is ignored.
pub fn on_callout_done(
    config: &FilterConfig,
    handle: &ConfigHandle<'_>,
    callout_id: u64,
    result: CalloutResult,
    headers: &[(&[u8], &[u8])],
    body_chunks: &[&[u8]],
) {
    let Some(InFlight { query, .. }) = locked(&config.in_flight).remove(&callout_id) else {
        return;
    };
    let stats = ConfigStats {
        handle,
        counters: &config.counter_ids,
        gauges: &config.gauge_ids,
    };
    let answer = match result {
        CalloutResult::Success => read_answer(headers, body_chunks),
        CalloutResult::Failed(_) => Err(result.to_string()),
    };
    let answer = match &answer {
        Ok((status, body)) => Ok((*status, body.as_slice())),
        Err(why) => Err(why.as_str()),
    };
    config.answer(&query, answer, &stats);
}

/// An HTTP answer's `:status` and whole body (its chunks joined), or why it cannot be read.
fn read_answer(
    headers: &[(&[u8], &[u8])],
    body_chunks: &[&[u8]],
) -> Result<(u64, Vec<u8>), String> {
    let status = headers
        .iter()
        .find(|(name, _)| *name == b":status")
        .and_then(|(_, value)| std::str::from_utf8(value).ok()?.trim().parse::<u64>().ok())
        .ok_or_else(|| "an answer without a readable :status".to_owned())?;
    let size = body_chunks
        .iter()
        .fold(0usize, |n, chunk| n.saturating_add(chunk.len()));
    if size > FLEET_ANSWER_MAX_BYTES {
        return Err(format!(
            "an answer of {size} bytes (more than {FLEET_ANSWER_MAX_BYTES})"
        ));
    }
    Ok((status, body_chunks.concat()))
}

/// `on_http_filter_request_headers`.
pub fn on_request_headers(stream: &mut StreamFilter, handle: &mut FilterHandle<'_>) -> Verdict {
    let config = &*stream.config;
    let stats = StreamStats {
        stats: handle.stats(),
        counters: &config.counter_ids,
        gauges: &config.gauge_ids,
    };
    // Before the decision, so that it sees a guard that has just closed.
    config.tick_lazily(&stats);
    let verdict = with_rng(|rng| {
        config.filter.on_request(
            &mut EnvoyRequest { handle },
            rng,
            &stats,
            &EnvoyLog,
            &NativeClock,
        )
    });
    if let Verdict::Continue(served) = verdict {
        stream.served = served;
    }
    verdict
}

/// `on_http_filter_response_headers`: names the serving subset, and for a guarded request reads
/// `:status` once and counts the outcome.
pub fn on_response_headers(stream: &mut StreamFilter, handle: &mut FilterHandle<'_>) {
    let config = &*stream.config;
    let stats = StreamStats {
        stats: handle.stats(),
        counters: &config.counter_ids,
        gauges: &config.gauge_ids,
    };
    config.filter.on_response(
        &mut stream.served,
        &mut EnvoyResponse { handle },
        &stats,
        &EnvoyLog,
        &NativeClock,
    );
}

/// `on_http_filter_stream_complete` (and `on_http_filter_destroy`): a guarded request that never
/// got response headers counts as an error. Idempotent.
pub fn on_stream_done(stream: &mut StreamFilter) {
    stream.config.filter.on_stream_done(&mut stream.served);
}

fn failed(call: HostCall) -> HostError {
    // The dynamic-module callbacks report a bool, not a status number.
    HostError { call, code: 0 }
}

struct EnvoyRequest<'h, 'hook> {
    handle: &'h mut FilterHandle<'hook>,
}

impl RequestHost for EnvoyRequest<'_, '_> {
    fn with_request_headers<R>(
        &mut self,
        f: impl FnOnce(HeaderSource<'_>) -> R,
    ) -> Result<R, HostError> {
        self.handle
            .with_headers(HeaderMap::Request, |pairs| f(HeaderSource::Pairs(pairs)))
            .ok_or(failed(HostCall::ReadRequestHeaders))
    }

    fn source_address(&mut self) -> Result<Option<IpAddr>, HostError> {
        // `ip:port` (`[ip]:port` for IPv6); anything else (a pipe) is no IP address.
        self.handle
            .source_address(parse_peer_address)
            .ok_or(failed(HostCall::SourceAddress))
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        if self
            .handle
            .set_header(HeaderMap::Request, name.as_bytes(), None)
        {
            Ok(())
        } else {
            Err(failed(HostCall::RemoveRequestHeader))
        }
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if self
            .handle
            .set_header(HeaderMap::Request, name.as_bytes(), Some(value.as_bytes()))
        {
            Ok(())
        } else {
            Err(failed(HostCall::SetRequestHeader))
        }
    }

    fn clear_route_cache(&mut self) -> Result<RouteCache, HostError> {
        // Always present in the dynamic-module ABI; required for the router to see the header.
        self.handle.clear_route_cache();
        Ok(RouteCache::Cleared)
    }

    fn send_local_reply(&mut self, status: u32, body: &str) -> Result<(), HostError> {
        self.handle
            .send_response(status, body.as_bytes(), LOCAL_REPLY_DETAILS);
        Ok(())
    }
}

struct EnvoyResponse<'h, 'hook> {
    handle: &'h mut FilterHandle<'hook>,
}

impl ResponseHost for EnvoyResponse<'_, '_> {
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if self
            .handle
            .set_header(HeaderMap::Response, name.as_bytes(), Some(value.as_bytes()))
        {
            Ok(())
        } else {
            Err(failed(HostCall::SetResponseHeader))
        }
    }

    /// No `:status` (or an unparsable one) leaves the response unobserved, as in the Wasm build.
    fn response_status(&mut self) -> Result<Option<u32>, HostError> {
        Ok(self
            .handle
            .with_header(HeaderMap::Response, b":status", |value| {
                value.and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
            }))
    }
}

/// Counters and gauges from a stream's hook.
struct StreamStats<'a, 'hook> {
    stats: StatsHandle<'hook>,
    counters: &'a [usize],
    gauges: &'a [usize],
}

impl Counters for StreamStats<'_, '_> {
    fn increment(&self, counter: usize, by: u64) {
        if let Some(&id) = self.counters.get(counter) {
            // A failed increment is dropped: counting never fails a request.
            let _ = self.stats.increment(id, by);
        }
    }
}

impl Gauges for StreamStats<'_, '_> {
    fn set_gauge(&self, gauge: usize, value: u64) {
        if let Some(&id) = self.gauges.get(gauge) {
            // A failed write only leaves the gauge stale until the next tick.
            let _ = self.stats.set_gauge(id, value);
        }
    }
}

/// Counters and gauges from a configuration hook (load, main-thread tick): no stream needed.
struct ConfigStats<'a, 'h> {
    handle: &'a ConfigHandle<'h>,
    counters: &'a [usize],
    gauges: &'a [usize],
}

impl Counters for ConfigStats<'_, '_> {
    fn increment(&self, counter: usize, by: u64) {
        if let Some(&id) = self.counters.get(counter) {
            let _ = self.handle.increment_counter(id, by);
        }
    }
}

impl Gauges for ConfigStats<'_, '_> {
    fn set_gauge(&self, gauge: usize, value: u64) {
        if let Some(&id) = self.gauges.get(gauge) {
            let _ = self.handle.set_gauge(id, value);
        }
    }
}

pub(crate) struct EnvoyLog;

impl Log for EnvoyLog {
    fn warn(&self, message: &str) {
        ffi::log(LogLevel::Warn, message);
    }

    fn error(&self, message: &str) {
        ffi::log(LogLevel::Error, message);
    }

    fn info(&self, message: &str) {
        ffi::log(LogLevel::Info, message);
    }
}

thread_local! {
    /// One PRNG per worker thread, seeded on first use: no lock, no host call per request.
    static RNG: Cell<Option<WyRand>> = const { Cell::new(None) };
}

fn with_rng<R>(f: impl FnOnce(&mut WyRand) -> R) -> R {
    let mut rng = RNG
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| WyRand::new(seed()));
    let out = f(&mut rng);
    // During thread teardown the slot may be gone: the state is then simply dropped.
    let _ = RNG.try_with(|slot| slot.set(Some(rng)));
    out
}

/// A per-thread seed from the OS; the clock mixed with a stack address if that fails.
fn seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        let local = 0u8;
        nanos ^ (std::ptr::addr_of!(local) as u64).rotate_left(32)
    })
}

#[cfg(test)]
mod tests;
