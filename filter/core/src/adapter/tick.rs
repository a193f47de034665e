//! The once-a-second side of the filter: ramps move with the wall clock, guard counts merge
//! proxy-wide, transitions are logged and counted, gauges follow.

use std::sync::atomic::Ordering;

use super::Filter;
use crate::aggregate::Event;
use crate::guard::closed_message;
use crate::host::{Clock, Counters, Gauges, Log, SharedStore};
use crate::live::Conditions;
use crate::router::Router;

/// Every gauge, in index order: `subset_router.rule.<rule>.ramp_ppm` per ramp (the ramped
/// subset's share in parts per million), then `subset_router.guard.<subset>.open` (0 or 1) per
/// guard. Adapters define them with the counters and [`Filter::start`] gives them their values.
pub fn gauge_names(router: &Router) -> Vec<String> {
    router
        .ramps()
        .iter()
        .map(|r| format!("subset_router.rule.{}.ramp_ppm", r.rule))
        .chain(
            router
                .guards()
                .iter()
                .map(|g| format!("subset_router.guard.{}.open", g.subset)),
        )
        .collect()
}

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
        let now_ms = self.monotonic_ms(clock, counters, log);
        self.advance_ramps(clock, now_ms, counters, gauges, log);
        for guard in 0..self.router.guards().len() {
            gauges.set_gauge(self.ramps + guard, u64::from(self.live.guard_open(guard)));
        }
    }

    /// Once a second on every worker (proxy-wasm: the root context's `on_tick`): moves the ramps
    /// to the current time, merges this worker's guard counts into the proxy-wide state,
    /// applies the guards' transitions, logs and counts those this worker made.
    pub fn on_tick(
        &self,
        store: &impl SharedStore,
        clock: &impl Clock,
        counters: &impl Counters,
        gauges: &impl Gauges,
        log: &impl Log,
    ) {
        let now_ms = self.monotonic_ms(clock, counters, log);
        self.advance_ramps(clock, now_ms, counters, gauges, log);
        let Some(now_ms) = now_ms else {
            return;
        };
        let guards = self.router.guards();
        let report = self.aggregator.tick(guards, store, now_ms);
        for e in report.failures {
            self.failed(e, counters, log, ());
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
                }
                Event::Closed { guard, trip } => {
                    if let Some(spec) = guards.get(guard) {
                        log.info(&closed_message(spec, trip));
                    }
                }
            }
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

    /// Reads the wall clock (at most once a second) and raises each ramp to its share now.
    fn advance_ramps(
        &self,
        clock: &impl Clock,
        now_ms: Option<u64>,
        counters: &impl Counters,
        gauges: &impl Gauges,
        log: &impl Log,
    ) {
        if self.ramps == 0 {
            return;
        }
        if let Some(now) = now_ms {
            let last = self.wall_read_at.load(Ordering::Relaxed);
            if last != 0 && now < (last - 1).saturating_add(1000) {
                return;
            }
            self.wall_read_at
                .store(now.saturating_add(1), Ordering::Relaxed);
        }
        let wall_ms = match clock.wall_ns() {
            Ok(ns) => i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX),
            Err(e) => return self.failed(e, counters, log, ()),
        };
        for view in self.router.ramps() {
            let share = self
                .live
                .advance_ramp(view.ramp.index, view.ramp.share_at(wall_ms));
            gauges.set_gauge(view.ramp.index, u64::from(view.ramp.ppm(share)));
        }
    }
}
