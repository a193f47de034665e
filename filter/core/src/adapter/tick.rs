//! The once-a-second side of the filter: ramps move with the wall clock, guard counts merge
//! proxy-wide, transitions are logged and counted, gauges follow.

use std::sync::atomic::Ordering;

use super::Filter;
use crate::aggregate::{Event, FleetRound};
use crate::fleet::FleetFailure;
use crate::guard::closed_message;
use crate::host::{Clock, Counters, Gauges, Log, SharedStore};
use crate::live::Conditions;
use crate::router::Router;

/// Every gauge, in index order: `subset_router.rule.<rule>.ramp_ppm` per ramp (the ramped
/// subset's share in parts per million), then `subset_router.guard.<subset>.open` (0 or 1) per
/// guard. Adapters define them with the counters and [`Filter::start`] gives them their values.
pub fn gauge_names(router: &Router) -> Vec<String> {
    let prefix = router.stat_prefix();
    router
        .ramps()
        .iter()
        .map(|r| format!("{prefix}rule.{}.ramp_ppm", r.rule))
        .chain(
            router
                .guards()
                .iter()
                .map(|g| format!("{prefix}guard.{}.open", g.subset)),
        )
        .collect()
}

/// A fleet round to send through the host (see [`crate::fleet`]): `GET path` with
/// `:authority` to Envoy cluster `cluster`, answered within `timeout_ms`. Hand the answer to
/// [`Filter::on_fleet_answer`] with the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetQuery {
    pub round: FleetRound,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
}

/// How often a guard's failing fleet rounds are logged, after the first.
const FLEET_WARNING_EVERY_MS: u64 = 60_000;

impl Filter {
    /// Call once when the configuration is accepted: evaluates the ramps at the current time (so
    /// the first requests already get the right share) and gives every gauge its value. Touches
    /// no shared state, so it is harmless in Envoy's throwaway configure-time VM.
    pub fn start(
        &self,
        clock: &impl Clock,
        counters: &impl Counters,
        gauges: &impl Gauges,
        log: &impl Log,
    ) {
        self.advance_ramps(clock, counters, gauges, log);
        for guard in 0..self.router.guards().len() {
            gauges.set_gauge(self.ramps + guard, u64::from(self.live.guard_open(guard)));
        }
    }

    /// Once a second on every worker (proxy-wasm: the root context's `on_tick`): moves the ramps
    /// to the current time, merges this worker's guard counts into the proxy-wide state,
    /// applies the guards' transitions, logs and counts those this worker made. Returns the
    /// fleet rounds this worker won, for the adapter to send.
    pub fn on_tick(
        &self,
        store: &impl SharedStore,
        clock: &impl Clock,
        counters: &impl Counters,
        gauges: &impl Gauges,
        log: &impl Log,
    ) -> Vec<FleetQuery> {
        let now_ms = self.monotonic_ms(clock, counters, log);
        self.advance_ramps(clock, counters, gauges, log);
        let Some(now_ms) = now_ms else {
            return Vec::new();
        };
        let guards = self.router.guards();
        let report = self.aggregator.tick(guards, store, now_ms);
        for e in report.failures {
            self.failed(e, counters, log, ());
        }
        for (guard, observed) in report.observed.iter().enumerate() {
            self.count_observed(guard, observed, counters);
        }
        for (guard, open) in report.open.iter().enumerate() {
            if let Some(open) = *open {
                self.live.set_open(guard, open);
            }
            gauges.set_gauge(self.ramps + guard, u64::from(self.live.guard_open(guard)));
        }
        for event in report.events {
            match event {
                Event::Tripped { guard, trip } => {
                    if let Some(spec) = guards.get(guard) {
                        log.warn(&trip.message(spec));
                    }
                    counters.increment(self.guard_counter(guard), 1);
                    if trip.by_fleet {
                        if let Some(c) = self.fleet_counter(guard) {
                            counters.increment(c, 1);
                        }
                    }
                }
                Event::Closed { guard, trip } => {
                    if let Some(spec) = guards.get(guard) {
                        log.info(&closed_message(spec, trip));
                    }
                }
            }
        }
        self.fleet_rounds(store, now_ms, counters, log)
    }

    /// The fleet rounds due on this proxy that this worker claims.
    fn fleet_rounds(
        &self,
        store: &impl SharedStore,
        now_ms: u64,
        counters: &impl Counters,
        log: &impl Log,
    ) -> Vec<FleetQuery> {
        let mut out = Vec::new();
        for (guard, spec) in self.router.guards().iter().enumerate() {
            let Some(fleet) = &spec.fleet else {
                continue;
            };
            match self.aggregator.fleet_round(guard, spec, store, now_ms) {
                Ok(Some(round)) => {
                    let promql =
                        crate::fleet::query(spec, fleet, self.router.name(), round.range_s);
                    out.push(FleetQuery {
                        round,
                        cluster: fleet.cluster.clone(),
                        authority: fleet.authority.clone(),
                        path: crate::fleet::request_path(fleet, &promql),
                        timeout_ms: fleet.timeout_ms,
                    });
                }
                Ok(None) => {}
                Err(e) => self.failed(e, counters, log, ()),
            }
        }
        out
    }

    /// The answer to a [`FleetQuery`]: `Ok((status, body))`, or `Err(why)` when no answer came
    /// (unknown cluster, refused, reset, timed out). A valid answer is evaluated on the next
    /// tick; anything else counts in `fleet_query_failed` and is logged (the first time, then at
    /// most once a minute per guard). Never a decision by itself.
    pub fn on_fleet_answer(
        &self,
        query: &FleetQuery,
        answer: Result<(u64, &[u8]), &str>,
        store: &impl SharedStore,
        clock: &impl Clock,
        counters: &impl Counters,
        log: &impl Log,
    ) {
        let guard = query.round.guard;
        let Some(spec) = self.router.guards().get(guard) else {
            return;
        };
        let parsed = match answer {
            Ok((status, body)) => crate::fleet::parse_answer(spec, status, body),
            Err(why) => Err(FleetFailure::Unreachable(why.to_owned())),
        };
        let failure = match parsed {
            Ok(counts) => return self.aggregator.fleet_answered(&query.round, counts),
            Err(f) => f,
        };
        if let Some(c) = self.fleet_counter(guard) {
            counters.increment(c + 1, 1);
        }
        let now_ms = clock.monotonic_ns().map_or(0, |ns| ns / 1_000_000);
        let due = self
            .aggregator
            .fleet_warning_due(guard, store, now_ms, FLEET_WARNING_EVERY_MS)
            .unwrap_or_else(|e| self.failed(e, counters, log, false));
        if due {
            log.warn(&format!(
                "subset-router: guard {}: fleet query to cluster {} failed: {failure}; no fleet \
                 decision this round, the local guard keeps working (counted in \
                 {}guard.{}.fleet_query_failed; logged at most once a minute)",
                spec.subset,
                query.cluster,
                self.router.stat_prefix(),
                spec.subset
            ));
        }
    }

    fn monotonic_ms(
        &self,
        clock: &impl Clock,
        counters: &impl Counters,
        log: &impl Log,
    ) -> Option<u64> {
        match clock.monotonic_ns() {
            Ok(ns) => Some(ns / 1_000_000),
            Err(e) => self.failed(e, counters, log, None),
        }
    }

    /// Reads the wall clock and gives each ramp its share in the current second, with the gauges.
    pub(super) fn advance_ramps(
        &self,
        clock: &impl Clock,
        counters: &impl Counters,
        gauges: &impl Gauges,
        log: &impl Log,
    ) {
        if self.ramps == 0 {
            return;
        }
        self.refresh_ramps(clock, counters, log);
        for view in self.router.ramps() {
            let share = self.live.ramp_share(view.ramp.index);
            gauges.set_gauge(view.ramp.index, u64::from(view.ramp.ppm(share)));
        }
    }

    /// When a new wall-clock second has begun, raises each ramp to its share in that second. A
    /// share is a function of the whole second only: every worker uses the same share in the
    /// same second. Called on the request path too (one clock read; the shares are computed
    /// once a second).
    pub(super) fn refresh_ramps(
        &self,
        clock: &impl Clock,
        counters: &impl Counters,
        log: &impl Log,
    ) {
        let second = match clock.wall_ns() {
            Ok(ns) => ns / 1_000_000_000,
            Err(e) => return self.failed(e, counters, log, ()),
        };
        let marker = second.saturating_add(1);
        if self.ramp_second.load(Ordering::Relaxed) == marker {
            return;
        }
        self.ramp_second.store(marker, Ordering::Relaxed);
        let wall_ms = i64::try_from(second.saturating_mul(1000)).unwrap_or(i64::MAX);
        for view in self.router.ramp_views() {
            self.live
                .advance_ramp(view.ramp.index, view.ramp.share_at(wall_ms));
        }
    }
}
