//! The canary guard as a pure state machine over a proxy-wide [`Record`]: the window of
//! per-second counts, the state (closed → open → closed, or latched) and the trip count. Time
//! is an argument (monotonic milliseconds), never read here.
//!
//! ```text
//!            breach                 k-th trip, k < maxTrips
//!   closed ─────────▶ open (k × cooldown) ──────────────────▶ closed (window empty)
//!      ▲                                    cooldown over        │
//!      └─────────────────────────────────────────────────────────┘
//!   closed ── maxTrips-th breach ──▶ latched (until a new configuration)
//! ```
//!
//! The record is what workers share (see [`crate::aggregate`]): every change to it is one
//! compare-and-swap, so every transition has exactly one writer, which logs and counts it.

use crate::ramp::PPM;

/// A guard as compiled from `guards[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSpec {
    pub subset: String,
    pub baseline: Option<String>,
    /// `maxErrorPercent` in ppm.
    pub max_error_ppm: u32,
    pub min_requests: u64,
    pub window_s: u64,
    pub cooldown_ms: u64,
    pub max_trips: u32,
    /// `minMarginPercent` in ppm (used only with a baseline).
    pub min_margin_ppm: u32,
    pub slow: Option<SlowTrigger>,
    /// `fleet`: also trip on the fleet's totals.
    pub fleet: Option<crate::fleet::FleetSpec>,
}

/// `slowMs` / `maxSlowPercent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowTrigger {
    pub slow_ms: u64,
    pub max_slow_ppm: u32,
}

/// What was observed: the guarded subset's requests, errors and slow responses, and the
/// baseline subset's requests, errors and slow responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
    pub slow: u64,
    pub baseline_requests: u64,
    pub baseline_errors: u64,
    pub baseline_slow: u64,
}

/// How many counts a [`Counts`] holds.
pub const COUNT_FIELDS: usize = 6;

impl Counts {
    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    pub fn add(&mut self, other: &Counts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.slow = self.slow.saturating_add(other.slow);
        self.baseline_requests = self
            .baseline_requests
            .saturating_add(other.baseline_requests);
        self.baseline_errors = self.baseline_errors.saturating_add(other.baseline_errors);
        self.baseline_slow = self.baseline_slow.saturating_add(other.baseline_slow);
    }

    /// In the order of the exported counters (`requests`, `errors`, `slow`,
    /// `baseline_requests`, `baseline_errors`, `baseline_slow`).
    pub fn fields(&self) -> [u64; COUNT_FIELDS] {
        [
            self.requests,
            self.errors,
            self.slow,
            self.baseline_requests,
            self.baseline_errors,
            self.baseline_slow,
        ]
    }

    pub fn from_fields(
        [requests, errors, slow, baseline_requests, baseline_errors, baseline_slow]: [u64;
            COUNT_FIELDS],
    ) -> Self {
        Self {
            requests,
            errors,
            slow,
            baseline_requests,
            baseline_errors,
            baseline_slow,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardState {
    Closed,
    /// Open until this monotonic time (ms).
    Open {
        until_ms: u64,
    },
    /// Tripped `maxTrips` times: open until a new configuration.
    Latched,
}

/// The counts of one second (of the monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub second: u64,
    pub counts: Counts,
}

/// The proxy-wide state of one guard, as stored under its shared key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The configuration load this record belongs to (see [`crate::aggregate`]).
    pub load: u64,
    pub state: GuardState,
    pub trips: u32,
    /// Non-empty seconds of the current window, oldest first.
    pub window: Vec<Bucket>,
    /// Everything ever merged into this record (also while open): the conservation check.
    pub totals: Counts,
    /// Monotonic ms of the record's start or of the guard's last close: the fleet window never
    /// reaches back before it, so the errors that opened a guard cannot trip it again.
    pub fresh_since_ms: u64,
}

/// Why a guard tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Errors,
    Slow,
}

/// A state change, reported by the one worker whose write made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Tripped(Trip),
    /// The cooldown is over: configured weights apply again.
    Closed {
        trip: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    /// 1 for the first trip.
    pub trip: u32,
    pub cause: Cause,
    /// The window's counts that tripped it (the fleet's, for a fleet trip).
    pub window: Counts,
    /// Tripped by the fleet's totals rather than this proxy's window.
    pub by_fleet: bool,
    /// The seconds `window` covers: the guard's window, or the fleet query's range.
    pub span_s: u64,
    /// How long it stays open; `None`: latched.
    pub open_ms: Option<u64>,
}

impl Record {
    /// A fresh record of configuration load `load`, started at monotonic `now_ms`.
    pub fn new(load: u64, now_ms: u64) -> Self {
        Self {
            load,
            state: GuardState::Closed,
            trips: 0,
            window: Vec::new(),
            totals: Counts::default(),
            fresh_since_ms: now_ms,
        }
    }

    /// Whether the subset is out of the splits.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, GuardState::Closed)
    }

    /// Adds a worker's counts at `now_s`. While open, only the totals grow: the window starts
    /// empty when the guard closes.
    pub fn merge(&mut self, delta: &Counts, now_s: u64) {
        self.totals.add(delta);
        if self.is_open() || delta.is_zero() {
            return;
        }
        match self.window.iter_mut().rev().find(|b| b.second == now_s) {
            Some(bucket) => bucket.counts.add(delta),
            None => {
                // Keep the buckets sorted even if a worker's clock reading lags another's.
                let at = self.window.partition_point(|b| b.second < now_s);
                self.window.insert(
                    at,
                    Bucket {
                        second: now_s,
                        counts: *delta,
                    },
                );
            }
        }
    }

    /// Drops the seconds that left the window `(now_s − window_s, now_s]`.
    pub fn prune(&mut self, now_s: u64, window_s: u64) {
        self.window
            .retain(|b| b.second.saturating_add(window_s) > now_s);
    }

    /// The sum of the window `(now_s − window_s, now_s]`.
    pub fn window_counts(&self, now_s: u64, window_s: u64) -> Counts {
        let mut sum = Counts::default();
        for b in self
            .window
            .iter()
            .filter(|b| b.second.saturating_add(window_s) > now_s && b.second <= now_s)
        {
            sum.add(&b.counts);
        }
        sum
    }

    /// Applies the guard's rules at `now_ms`: a closed guard whose window breaches trips; an
    /// open one whose cooldown is over closes.
    pub fn evaluate(&mut self, spec: &GuardSpec, now_ms: u64) -> Option<Transition> {
        let now_s = now_ms / 1000;
        self.prune(now_s, spec.window_s);
        match self.state {
            GuardState::Latched => None,
            GuardState::Open { until_ms } if now_ms >= until_ms => {
                self.state = GuardState::Closed;
                self.window.clear();
                self.fresh_since_ms = now_ms;
                Some(Transition::Closed { trip: self.trips })
            }
            GuardState::Open { .. } => None,
            GuardState::Closed => {
                let window = self.window_counts(now_s, spec.window_s);
                let cause = breach(spec, &window)?;
                Some(self.trip(spec, now_ms, cause, window, None))
            }
        }
    }

    /// Applies the fleet's totals (see [`crate::fleet`]) to a closed guard: a breach trips it
    /// exactly as a local one does, whatever this proxy's own window holds. Fleet evidence only
    /// adds trips: an open or latched guard is left as it is.
    /// `span_s`: the seconds the fleet's totals cover.
    pub fn evaluate_fleet(
        &mut self,
        spec: &GuardSpec,
        fleet: &Counts,
        span_s: u64,
        now_ms: u64,
    ) -> Option<Transition> {
        if self.is_open() {
            return None;
        }
        let cause = breach(spec, fleet)?;
        Some(self.trip(spec, now_ms, cause, *fleet, Some(span_s)))
    }

    fn trip(
        &mut self,
        spec: &GuardSpec,
        now_ms: u64,
        cause: Cause,
        window: Counts,
        fleet_span_s: Option<u64>,
    ) -> Transition {
        self.trips = self.trips.saturating_add(1);
        self.window.clear();
        let open_ms = if self.trips >= spec.max_trips {
            self.state = GuardState::Latched;
            None
        } else {
            let open_ms = spec.cooldown_ms.saturating_mul(u64::from(self.trips));
            self.state = GuardState::Open {
                until_ms: now_ms.saturating_add(open_ms),
            };
            Some(open_ms)
        };
        Transition::Tripped(Trip {
            trip: self.trips,
            cause,
            window,
            by_fleet: fleet_span_s.is_some(),
            span_s: fleet_span_s.unwrap_or(spec.window_s),
            open_ms,
        })
    }
}

/// Whether the window's counts trip the guard, and why. Shares are compared in exact integer
/// arithmetic, so a share exactly at the threshold trips.
pub fn breach(spec: &GuardSpec, c: &Counts) -> Option<Cause> {
    if c.requests == 0 || c.requests < spec.min_requests {
        return None;
    }
    let ppm = u128::from(PPM);
    let requests = u128::from(c.requests);
    let at_least = |part: u64, threshold_ppm: u32| {
        u128::from(part) * ppm >= u128::from(threshold_ppm) * requests
    };
    let errors_high = at_least(c.errors, spec.max_error_ppm);
    // errors/requests − baseline_errors/baseline_requests ≥ margin, without division. No
    // baseline traffic counts as a baseline error share of 0.
    let above_baseline = spec.baseline.is_none() || {
        let base_requests = u128::from(c.baseline_requests.max(1));
        let base_errors = if c.baseline_requests == 0 {
            0
        } else {
            u128::from(c.baseline_errors)
        };
        let lhs = u128::from(c.errors) * base_requests * ppm;
        let rhs = base_errors * requests * ppm
            + u128::from(spec.min_margin_ppm) * requests * base_requests;
        lhs >= rhs
    };
    if errors_high && above_baseline {
        return Some(Cause::Errors);
    }
    match spec.slow {
        Some(slow) if at_least(c.slow, slow.max_slow_ppm) => Some(Cause::Slow),
        _ => None,
    }
}

mod encoding;
mod messages;

pub use messages::{closed_message, duration, percent};

#[cfg(test)]
mod tests;
