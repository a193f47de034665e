//! The response side of a guard: an observed request's outcome (5xx, slow, or no response at
//! all) is counted in this worker's memory, for the next tick to merge.

use super::{Filter, Served};
use crate::guard::Counts;
use crate::host::{Clock, Counters, Log, ResponseHost};
use crate::router::Role;

impl Filter {
    /// Whether a guard watching observed subset `observe` has a latency trigger.
    pub(super) fn measures_latency(&self, observe: usize) -> bool {
        // The baseline's slow responses are counted too (`baseline_slow`).
        self.router.observers(observe).iter().any(|o| {
            self.router
                .guards()
                .get(o.guard)
                .is_some_and(|g| g.slow.is_some())
        })
    }

    /// `on_http_response_headers` with guards: names the serving subset (as
    /// [`Self::on_response_headers`]) and, for an observed request, reads `:status` once and
    /// counts the outcome (5xx: error; slower than `slowMs`: slow).
    pub fn on_response(
        &self,
        served: &mut Served,
        host: &mut impl ResponseHost,
        counters: &impl Counters,
        log: &impl Log,
        clock: &impl Clock,
    ) {
        self.on_response_headers(*served, host, counters, log);
        let Some(observe) = served.observe.filter(|_| !served.counted) else {
            return;
        };
        served.counted = true;
        match host.response_status() {
            Ok(Some(status)) => {
                let elapsed_ms = served.started_ns.and_then(|t0| {
                    clock
                        .monotonic_ns()
                        .ok()
                        .map(|t1| t1.saturating_sub(t0) / 1_000_000)
                });
                self.observe(observe, (500..=599).contains(&status), elapsed_ms);
            }
            // No status, or it could not be read: the outcome is unknown, so not counted.
            Ok(None) => {}
            Err(e) => self.failed(e, counters, log, ()),
        }
    }

    /// The stream is over (proxy-wasm `on_done` / `on_log`): an observed request that never got
    /// response headers counts as an error. Idempotent.
    pub fn on_stream_done(&self, served: &mut Served) {
        if let Some(observe) = served.observe.filter(|_| !served.counted) {
            served.counted = true;
            self.observe(observe, true, None);
        }
    }

    /// Counts one outcome for every guard watching the subset (memory only).
    fn observe(&self, observe: usize, error: bool, elapsed_ms: Option<u64>) {
        let error = u64::from(error);
        for o in self.router.observers(observe) {
            let slow = u64::from(
                self.router
                    .guards()
                    .get(o.guard)
                    .and_then(|g| g.slow)
                    .zip(elapsed_ms)
                    .is_some_and(|(slow, ms)| ms > slow.slow_ms),
            );
            let counts = match o.role {
                Role::Guarded => Counts {
                    requests: 1,
                    errors: error,
                    slow,
                    ..Counts::default()
                },
                Role::Baseline => Counts {
                    baseline_requests: 1,
                    baseline_errors: error,
                    baseline_slow: slow,
                    ..Counts::default()
                },
            };
            self.aggregator.observe(o.guard, &counts);
        }
    }
}
