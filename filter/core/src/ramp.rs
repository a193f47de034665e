//! Time-based ramps (`route.ramp`): the share of one subset of a split as a pure function of
//! the time, and the split's effective weights at that share.
//!
//! # Exact scaling
//!
//! At share `P` (parts per million) the ramped subset's effective weight is `P · O` and every
//! other subset's is `w_i · (10⁶ − P)`, where `O` is the sum of the other configured weights.
//! The ramped share is then exactly `P / 10⁶`, and the others keep their configured proportions
//! *exactly* (all are multiplied by the same integer). Rendezvous hashing orders the others by
//! `score_i / w_i`, an order a common factor cannot change, so as `P` grows a sticky key can
//! only move *into* the ramped subset — never out of it, never between the others. Rounding
//! each subset to its own percentage instead was measured to move ~15% of the keys between the
//! others on a 3-way ramp.
//!
//! The share starts at `⌈p0⌉` (the configured share rounded *up* to a ppm), so that the first
//! moment of the ramp cannot move a key out of the ramped subset either.

use crate::time::UnixMs;

/// Parts per million: the resolution of shares.
pub const PPM: u64 = 1_000_000;

/// A ramp as compiled: everything needed to compute the share at any time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ramp {
    /// Index among the configuration's ramps (rules in order, then `default`).
    pub index: usize,
    /// Index of the ramped subset in its split.
    pub target: usize,
    /// Its configured weight and the sum of the split's weights: `p0 = weight / total`.
    weight: u64,
    total: u64,
    /// `⌈p0⌉` in ppm: the share at `start`.
    pub from_ppm: u32,
    /// The share at the end, in ppm.
    pub to_ppm: u32,
    pub start_ms: UnixMs,
    pub duration_ms: i64,
    /// 0: continuous.
    pub steps: u64,
}

/// The ramped subset's share at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RampShare {
    /// Before `start`: the configured weights, exactly as without a ramp.
    Configured,
    /// Under way or over: this many parts per million.
    Ppm(u32),
}

impl RampShare {
    /// A `u32` whose order is the shares' order (for an atomic high-water mark): 0 for
    /// `Configured`, `ppm + 1` otherwise.
    pub fn encode(self) -> u32 {
        match self {
            RampShare::Configured => 0,
            RampShare::Ppm(p) => p.saturating_add(1),
        }
    }

    pub fn decode(raw: u32) -> Self {
        match raw {
            0 => RampShare::Configured,
            p => RampShare::Ppm(p - 1),
        }
    }
}

impl Ramp {
    /// `to_ppm` must be at least `⌈weight · 10⁶ / total⌉` (validation checks it) and
    /// `total > 0`.
    pub fn new(
        index: usize,
        target: usize,
        weights: &[u32],
        to_ppm: u32,
        start_ms: UnixMs,
        duration_ms: i64,
        steps: u64,
    ) -> Self {
        let weight = weights.get(target).map_or(0, |&w| u64::from(w));
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        Self {
            index,
            target,
            weight,
            total,
            from_ppm: start_ppm(weight, total),
            to_ppm,
            start_ms,
            duration_ms,
            steps,
        }
    }

    /// The share at `now`: configured before the start, `to_ppm` from the end on, and in
    /// between `from + (to − from)·f` with `f` the elapsed fraction (or `⌊N·f⌋/N` with steps),
    /// rounded down to a ppm. Time counts in whole seconds: the share is a function of
    /// ⌊now⌋, so every worker (and every replica, up to clock skew) uses the same share in the
    /// same second, and no sticky key flips between workers at a moving boundary.
    pub fn share_at(&self, now: UnixMs) -> RampShare {
        let now = now - now.rem_euclid(1000);
        if now < self.start_ms {
            return RampShare::Configured;
        }
        let elapsed = now.abs_diff(self.start_ms);
        let duration = self.duration_ms.unsigned_abs().max(1);
        if elapsed >= duration {
            return RampShare::Ppm(self.to_ppm);
        }
        // In u64 (no 128-bit division in the `.wasm`): span ≤ 10⁶ and elapsed < one year in
        // ms, so span · elapsed < 2⁵⁵. So many steps that the product overflows are finer than a
        // millisecond: the ramp is then as good as continuous.
        let span = u64::from(self.to_ppm.saturating_sub(self.from_ppm));
        let continuous = span.saturating_mul(elapsed) / duration;
        let grown = match self.steps {
            0 => continuous,
            steps => steps
                .checked_mul(elapsed)
                .map(|n| n / duration)
                .and_then(|k| span.checked_mul(k))
                .map_or(continuous, |n| n / steps),
        };
        let grown = u32::try_from(grown).unwrap_or(u32::MAX);
        RampShare::Ppm(self.from_ppm.saturating_add(grown).min(self.to_ppm))
    }

    /// The share in ppm as the gauge reports it (`Configured`: the configured share, rounded).
    pub fn ppm(&self, share: RampShare) -> u32 {
        match share {
            RampShare::Ppm(p) => p,
            RampShare::Configured if self.total == 0 => 0,
            RampShare::Configured => {
                u32::try_from((self.weight * PPM + self.total / 2) / self.total).unwrap_or(0)
            }
        }
    }

    /// The effective weight of target `i` (configured weight `base`) at `share`.
    pub fn weight(&self, i: usize, base: u32, share: RampShare) -> u64 {
        let others = self.total - self.weight;
        match share {
            // Alone with a positive weight, the subset already has everything.
            RampShare::Ppm(_) if others == 0 => u64::from(base),
            RampShare::Ppm(p) if i == self.target => u64::from(p) * others,
            RampShare::Ppm(p) => u64::from(base) * (PPM - u64::from(p).min(PPM)),
            RampShare::Configured => u64::from(base),
        }
    }

    /// When the ramp ends.
    pub fn end_ms(&self) -> UnixMs {
        self.start_ms.saturating_add(self.duration_ms)
    }

    /// The moment of the `k`-th of `steps` jumps: `start + ⌈k·duration/N⌉` (in milliseconds,
    /// the first at which the share has jumped).
    pub fn step_ms(&self, k: u64) -> UnixMs {
        let steps = u128::from(self.steps.max(1));
        let offset = (u128::from(k) * u128::from(self.duration_ms.unsigned_abs())).div_ceil(steps);
        self.start_ms
            .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
    }
}

/// `⌈weight · 10⁶ / total⌉`: the configured share in ppm, rounded up.
pub fn start_ppm(weight: u64, total: u64) -> u32 {
    if total == 0 {
        return 0;
    }
    u32::try_from((weight * PPM).div_ceil(total)).unwrap_or(u32::MAX)
}

/// A percentage of the configuration (`toPercent`, `maxErrorPercent`, …) in ppm, rounded to
/// the nearest: the resolution shares are computed at.
pub fn percent_to_ppm(percent: f64) -> u32 {
    let ppm = libm::round(percent * 10_000.0);
    if ppm <= 0.0 {
        0
    } else if ppm >= 1_000_000.0 {
        1_000_000
    } else {
        ppm as u32
    }
}

#[cfg(test)]
mod tests;
