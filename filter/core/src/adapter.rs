//! What every build of the filter does per request, written once over the [`crate::host`]
//! traits: strip forged routing headers, decide on the stripped view, write the decision, make
//! the router recompute the route, count. The proxy-wasm and dynamic-module adapters only
//! translate these calls to their FFI.
//!
//! Progressive delivery adds two things: the decision reads the worker's [`LiveState`] (ramp
//! shares, open guards), and [`Filter::on_tick`] — once a second on every worker — moves ramps
//! forward and merges guard observations proxy-wide (see [`crate::aggregate`]). Requests a guard
//! observes are counted in memory on the response path ([`Filter::on_response`]) or when the
//! stream ends without a response ([`Filter::on_stream_done`]).
//!
//! Host-call failures never fail a request: each is counted in `subset_router.host_call_failed`
//! (and logged as a warning the first time each kind fails in a VM), and the request goes on
//! with what did succeed. One exception keeps the security promise: if a client's forged
//! routing header could be neither removed nor overwritten, the request is answered locally
//! with 503 (or, if that reply fails, its stream is reset) instead of being routed where the
//! client asked.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::aggregate::Aggregator;
use crate::guard::GuardSpec;
use crate::host::{
    Clock, Counters, HostCall, HostError, Log, RequestHost, ResponseHost, RouteCache,
};
use crate::live::LiveState;
use crate::request::{DecodedRequest, HeaderSource, RequestView};
use crate::rng::RandomSource;
use crate::router::Router;

/// Counter names that are not decisions, in index order after the decision slots (each after
/// the configuration's stat prefix, `subset_router.` or `subset_router.<name>.`).
const FILTER_COUNTERS: [&str; 3] = [
    "spoofed_header_removed",
    "sticky_key_missing",
    "host_call_failed",
];

/// Status and body of the local reply sent when a forged routing header cannot be removed.
pub const FORGED_HEADER_REPLY: (u32, &str) = (
    503,
    "subset-router: a forged routing header could not be removed\n",
);

/// Loads a configuration the way `on_configure` must, for both builds: each error logged at
/// error level as `subset-router: invalid configuration: <path: reason>`, then one line saying
/// the configuration was rejected — and, where the adapter knows (`previous`), whether an
/// earlier configuration stays in effect.
pub fn load_logged(json: &[u8], log: &impl Log, previous: Option<bool>) -> Option<Router> {
    load_logged_with(crate::load, json, log, previous)
}

/// [`load_logged`] with another loader (the native build's route form:
/// [`crate::route_form::load`]).
pub fn load_logged_with(
    load: impl FnOnce(&[u8]) -> Result<Router, Vec<crate::ConfigError>>,
    json: &[u8],
    log: &impl Log,
    previous: Option<bool>,
) -> Option<Router> {
    let errors = match load(json) {
        Ok(router) => return Some(router),
        Err(errors) => errors,
    };
    for error in &errors {
        log.error(&format!("subset-router: invalid configuration: {error}"));
    }
    let after = match previous {
        Some(true) => "; the previous configuration stays in effect",
        Some(false) => "; no configuration is active",
        None => "",
    };
    log.error(&format!(
        "subset-router: configuration rejected ({} error(s)){after}",
        errors.len()
    ));
    None
}

/// Every counter an adapter defines when a configuration is accepted, in index order: one per
/// decision slot ([`Router::slots`]), then `spoofed_header_removed`, `sticky_key_missing`,
/// `host_call_failed`, then for each guard `subset_router.guard.<subset>.<what>` for every
/// `<what>` of [`guard_counters`]. All exist, at 0, before the first request. With a top-level
/// `name`, every name starts `subset_router.<name>.` instead of `subset_router.`.
pub fn counter_names(router: &Router) -> Vec<String> {
    let prefix = router.stat_prefix();
    router
        .slots()
        .iter()
        .map(|slot| slot.stat_name.clone())
        .chain(FILTER_COUNTERS.map(|what| format!("{prefix}{what}")))
        .chain(router.guards().iter().flat_map(|g| {
            guard_counters(g)
                .into_iter()
                .map(move |what| format!("{prefix}guard.{}.{what}", g.subset))
        }))
        .collect()
}

/// A guard's counters, in index order: `tripped`, `diverted`, `undivertable`; what its window
/// observes, `requests`, `errors`, `slow` (and with a baseline `baseline_requests`,
/// `baseline_errors`, `baseline_slow`); with `fleet`, `tripped_by_fleet` and
/// `fleet_query_failed`.
pub fn guard_counters(g: &GuardSpec) -> Vec<&'static str> {
    let mut out = vec![
        "tripped",
        "diverted",
        "undivertable",
        "requests",
        "errors",
        "slow",
    ];
    if g.baseline.is_some() {
        out.extend(["baseline_requests", "baseline_errors", "baseline_slow"]);
    }
    if g.fleet.is_some() {
        out.extend(["tripped_by_fleet", "fleet_query_failed"]);
    }
    out
}

/// Offsets in a guard's block of counters (see [`guard_counters`]).
pub(crate) const DIVERTED: usize = 1;
pub(crate) const UNDIVERTABLE: usize = 2;
/// `requests`, `errors`, `slow`: the first three observed counts.
const OBSERVED: usize = 3;

/// The first counter of each guard's block, and where its optional counters sit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GuardCounterIndex {
    base: usize,
    baseline: Option<usize>,
    fleet: Option<usize>,
}

fn guard_counter_index(router: &Router) -> Vec<GuardCounterIndex> {
    let mut next = router.slots().len() + FILTER_COUNTERS.len();
    router
        .guards()
        .iter()
        .map(|g| {
            let index = GuardCounterIndex {
                base: next,
                baseline: g.baseline.is_some().then_some(next + OBSERVED + 3),
                fleet: g
                    .fleet
                    .is_some()
                    .then_some(next + OBSERVED + 3 + if g.baseline.is_some() { 3 } else { 0 }),
            };
            next += guard_counters(g).len();
            index
        })
        .collect()
}

/// A compiled configuration plus the little per-VM (or per-module) state the request path
/// keeps. Shared by every request; safe to share between threads.
#[derive(Debug)]
pub struct Filter {
    router: Router,
    /// Cleared once the host says it has no `clear_route_cache`, to stop asking.
    route_cache_supported: AtomicBool,
    /// One bit per [`HostCall`] that has already been logged.
    warned: AtomicU32,
    /// Ramp shares and open guards, as this worker last saw them.
    live: LiveState,
    /// Guard observations not yet merged, and the merge.
    aggregator: Aggregator,
    /// The wall-clock second (+ 1; 0: never) the ramp shares were last computed for.
    ramp_second: AtomicU64,
    ramps: usize,
    guard_counters: Vec<GuardCounterIndex>,
}

/// What the request path leaves for the response path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Served {
    /// The decision's slot ([`Router::slots`]), if a decision was written.
    pub slot: Option<usize>,
    /// A split sent the request to a subset a guard watches: its observer entry
    /// ([`Router::observers`]).
    pub observe: Option<usize>,
    /// Monotonic nanoseconds at the request headers, when a watching guard measures latency.
    pub started_ns: Option<u64>,
    /// The observation has been counted (response headers seen, or the stream ended).
    pub counted: bool,
}

/// Whether the request continues to the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue(Served),
    /// A local reply was sent or, when it could not be, the stream reset (or, should even that
    /// fail, nothing more can be done without routing a forged header): stop iterating filters.
    Stop,
}

/// For the request path of a host without a clock: latency is then not measured.
struct NoClock;

impl Clock for NoClock {
    fn wall_ns(&self) -> Result<u64, HostError> {
        Err(HostError {
            call: HostCall::WallClock,
            code: 0,
        })
    }

    fn monotonic_ns(&self) -> Result<u64, HostError> {
        Err(HostError {
            call: HostCall::MonotonicClock,
            code: 0,
        })
    }

    fn has_wall_clock(&self) -> bool {
        false
    }
}

impl Filter {
    /// A filter whose shared guard keys carry no plugin name (one plugin per process).
    pub fn new(router: Router) -> Self {
        Self::for_plugin(router, "")
    }

    /// `plugin`: the plugin's name, which keeps the shared guard state of plugins that share a
    /// VM id (or a process) apart.
    pub fn for_plugin(router: Router, plugin: &str) -> Self {
        let ramps = router.ramps().len();
        Self {
            live: LiveState::new(ramps, router.guards().len()),
            aggregator: Aggregator::new(router.guards(), plugin, router.config_hash()),
            guard_counters: guard_counter_index(&router),
            router,
            route_cache_supported: AtomicBool::new(true),
            warned: AtomicU32::new(0),
            ramp_second: AtomicU64::new(0),
            ramps,
        }
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// This worker's ramp shares and guard states.
    pub fn live(&self) -> &LiveState {
        &self.live
    }

    /// This worker's guard counts and its side of the proxy-wide merge.
    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    fn spoofed_counter(&self) -> usize {
        self.router.slots().len()
    }

    fn sticky_missing_counter(&self) -> usize {
        self.router.slots().len() + 1
    }

    fn host_failed_counter(&self) -> usize {
        self.router.slots().len() + 2
    }

    /// Counter index of guard `guard`'s `tripped` (`+ DIVERTED`, `+ UNDIVERTABLE`, …).
    fn guard_counter(&self, guard: usize) -> usize {
        self.guard_counters
            .get(guard)
            .map_or(usize::MAX, |g| g.base)
    }

    /// Adds what a tick merged into guard `guard`'s window to its exported counters.
    fn count_observed(&self, guard: usize, c: &crate::guard::Counts, counters: &impl Counters) {
        let Some(index) = self.guard_counters.get(guard) else {
            return;
        };
        let [requests, errors, slow, baseline_requests, baseline_errors, baseline_slow] =
            c.fields();
        let add = |at: usize, by: u64| {
            if by > 0 {
                counters.increment(at, by);
            }
        };
        add(index.base + OBSERVED, requests);
        add(index.base + OBSERVED + 1, errors);
        add(index.base + OBSERVED + 2, slow);
        if let Some(b) = index.baseline {
            add(b, baseline_requests);
            add(b + 1, baseline_errors);
            add(b + 2, baseline_slow);
        }
    }

    /// Counter index of guard `guard`'s `tripped_by_fleet` (`+ 1`: `fleet_query_failed`).
    fn fleet_counter(&self, guard: usize) -> Option<usize> {
        self.guard_counters.get(guard)?.fleet
    }

    /// `on_http_request_headers` without a clock: ramps and guards apply, latency is not
    /// measured (see [`Self::on_request`]).
    pub fn on_request_headers(
        &self,
        host: &mut impl RequestHost,
        rng: &mut impl RandomSource,
        counters: &impl Counters,
        log: &impl Log,
    ) -> Verdict {
        self.on_request(host, rng, counters, log, &NoClock)
    }

    /// `on_http_request_headers`. `clock` times the request when a guard measures latency.
    pub fn on_request(
        &self,
        host: &mut impl RequestHost,
        rng: &mut impl RandomSource,
        counters: &impl Counters,
        log: &impl Log,
        clock: &impl Clock,
    ) -> Verdict {
        if self.ramps > 0 && clock.has_wall_clock() {
            self.refresh_ramps(clock, counters, log);
        }
        let router = &self.router;
        let own_headers = [router.cluster_header(), router.subset_header()];
        let source = if router.uses_source_ip() {
            host.source_address()
                .unwrap_or_else(|e| self.failed(e, counters, log, None))
        } else {
            None
        };

        // Decide on the request as the router will see it: without the routing headers.
        // `forged`: the routing headers the client was seen sending; `strip`: those to remove.
        let read = host.with_request_headers(|headers| {
            let view = DecodedRequest::new(headers, source);
            let forged =
                own_headers.map(|name| name.is_some_and(|n| view.first_header(n).is_some()));
            let stripped = WithoutRoutingHeaders {
                inner: &view,
                hidden: own_headers,
            };
            (
                forged,
                forged,
                router.decide_with(&stripped, rng, &self.live),
            )
        });
        let (forged, strip, decision) = read.unwrap_or_else(|e| {
            // Headers unreadable: whatever the client sent is unknown, so both routing headers
            // are removed blindly, but nothing counts as forged (the failure is counted as
            // such). Decide on an empty request.
            let empty: &[(&[u8], &[u8])] = &[];
            let view = DecodedRequest::new(HeaderSource::Pairs(empty), source);
            let decision = router.decide_with(&view, rng, &self.live);
            self.failed(e, counters, log, ([false, false], [true, true], decision))
        });

        // 1. A client can never choose the upstream: remove every value it sent for our headers.
        let mut stuck = [false; 2];
        for ((name, strip), stuck) in own_headers.iter().zip(strip).zip(stuck.iter_mut()) {
            if let (Some(name), true) = (name, strip) {
                if let Err(e) = host.remove_request_header(name) {
                    *stuck = self.failed(e, counters, log, true);
                }
            }
        }
        if forged
            .iter()
            .zip(own_headers)
            .any(|(&f, h)| f && h.is_some())
        {
            counters.increment(self.spoofed_counter(), 1);
        }

        // 2. Write the decision (a write replaces, so it also overwrites a forged value).
        if let Some(target) = decision.map(|d| d.target) {
            let values = [target.cluster.as_str(), target.subset.as_str()];
            for ((name, value), stuck) in own_headers.iter().zip(values).zip(stuck.iter_mut()) {
                if let Some(name) = name {
                    match host.set_request_header(name, value) {
                        Ok(()) => *stuck = false,
                        Err(e) => self.failed(e, counters, log, ()),
                    }
                }
            }
        }
        if stuck.contains(&true) {
            let (status, body) = FORGED_HEADER_REPLY;
            if let Err(e) = host.send_local_reply(status, body) {
                self.failed(e, counters, log, ());
                // The header is still in the request: routing it would let the client choose,
                // and stopping without a reply would hold it until Envoy's stream timeout.
                if let Err(e) = host.reset_stream() {
                    self.failed(e, counters, log, ());
                }
            }
            return Verdict::Stop;
        }

        // 3. Let the router see the new headers.
        if self.route_cache_supported.load(Ordering::Relaxed) {
            match host.clear_route_cache() {
                Ok(RouteCache::Cleared) => {}
                Ok(RouteCache::Unsupported) => {
                    self.route_cache_supported.store(false, Ordering::Relaxed)
                }
                Err(e) => self.failed(e, counters, log, ()),
            }
        }

        // 4. Count it.
        let Some(decision) = decision else {
            return Verdict::Continue(Served::default());
        };
        counters.increment(decision.target.slot, 1);
        if decision.sticky_key_missing {
            counters.increment(self.sticky_missing_counter(), 1);
        }
        if let Some(guard) = decision.diverted {
            counters.increment(self.guard_counter(guard) + DIVERTED, 1);
        }
        if let Some(guard) = decision.undivertable {
            counters.increment(self.guard_counter(guard) + UNDIVERTABLE, 1);
        }
        let observe = decision.target.observe;
        let started_ns = match observe {
            Some(o) if self.measures_latency(o) => clock.monotonic_ns().ok(),
            _ => None,
        };
        Verdict::Continue(Served {
            slot: Some(decision.target.slot),
            observe,
            started_ns,
            counted: false,
        })
    }

    /// `on_http_response_headers` without guards: names the serving subset in `responseHeader`,
    /// if configured.
    pub fn on_response_headers(
        &self,
        served: Served,
        host: &mut impl ResponseHost,
        counters: &impl Counters,
        log: &impl Log,
    ) {
        let (Some(name), Some(slot)) = (self.router.response_header(), served.slot) else {
            return;
        };
        if let Some(slot) = self.router.slots().get(slot) {
            if let Err(e) = host.set_response_header(name, &slot.subset) {
                self.failed(e, counters, log, ());
            }
        }
    }

    /// Counts a failed host call, logs the first failure of each kind, and returns `fallback`.
    fn failed<T>(&self, e: HostError, counters: &impl Counters, log: &impl Log, fallback: T) -> T {
        counters.increment(self.host_failed_counter(), 1);
        let bit = 1u32 << (e.call as u32);
        if self.warned.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            log.warn(&format!(
                "subset-router: host call failed: {} (status {}); the request continues \
                 (counted in {}host_call_failed; further failures of this call are not logged)",
                e.call.name(),
                e.code,
                self.router.stat_prefix()
            ));
        }
        fallback
    }
}

/// The request without the filter's own routing headers: whatever a client sent in them is
/// invisible to the rules (validation already refuses rules that name them; this is the
/// second line of defence).
struct WithoutRoutingHeaders<'v, V> {
    inner: &'v V,
    hidden: [Option<&'v str>; 2],
}

impl<V: RequestView> WithoutRoutingHeaders<'_, V> {
    fn hides(&self, name: &str) -> bool {
        self.hidden
            .iter()
            .flatten()
            .any(|h| h.eq_ignore_ascii_case(name))
    }
}

impl<V: RequestView> RequestView for WithoutRoutingHeaders<'_, V> {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let hidden = self.hides(name);
        self.inner.header_values(name).filter(move |_| !hidden)
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.inner.source_ip()
    }

    fn first_header<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        if self.hides(name) {
            None
        } else {
            self.inner.first_header(name)
        }
    }
}

mod observe;
mod tick;

pub use tick::{gauge_names, FleetQuery};

#[cfg(test)]
mod tests;
