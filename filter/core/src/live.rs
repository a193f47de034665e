//! The inputs of a decision that change at run time: each ramp's current share and each guard's
//! state. The router reads them through [`Conditions`]; a worker keeps them in [`LiveState`]
//! (atomics: written once a second by its tick, read by every request, shareable between the
//! threads of the native build).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::ramp::RampShare;

/// What a decision needs to know beyond the request.
pub trait Conditions {
    /// The current share of ramp `ramp` (index among the configuration's ramps).
    fn ramp_share(&self, ramp: usize) -> RampShare;
    /// Whether guard `guard` (index in `guards`) has taken its subset out of the splits.
    fn guard_open(&self, guard: usize) -> bool;
}

/// Configured weights and every guard closed: a decision as the configuration reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsConfigured;

impl Conditions for AsConfigured {
    fn ramp_share(&self, _ramp: usize) -> RampShare {
        RampShare::Configured
    }

    fn guard_open(&self, _guard: usize) -> bool {
        false
    }
}

/// Fixed conditions (the CLI's `simulate --at`, tests). Missing entries read as configured /
/// closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub ramps: Vec<RampShare>,
    pub open: Vec<bool>,
}

impl Conditions for Snapshot {
    fn ramp_share(&self, ramp: usize) -> RampShare {
        self.ramps
            .get(ramp)
            .copied()
            .unwrap_or(RampShare::Configured)
    }

    fn guard_open(&self, guard: usize) -> bool {
        self.open.get(guard).copied().unwrap_or(false)
    }
}

/// One worker's conditions.
#[derive(Debug)]
pub struct LiveState {
    /// [`RampShare::encode`]d high-water marks.
    ramps: Vec<AtomicU32>,
    open: Vec<AtomicBool>,
}

impl LiveState {
    pub fn new(ramps: usize, guards: usize) -> Self {
        Self {
            ramps: (0..ramps).map(|_| AtomicU32::new(0)).collect(),
            open: (0..guards).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Raises ramp `ramp` to `share` unless it is already further: within a worker the share
    /// never decreases, so a wall clock that steps back holds the current share. Returns the
    /// share now in effect.
    pub fn advance_ramp(&self, ramp: usize, share: RampShare) -> RampShare {
        match self.ramps.get(ramp) {
            Some(slot) => {
                let before = slot.fetch_max(share.encode(), Ordering::Relaxed);
                RampShare::decode(before.max(share.encode()))
            }
            None => RampShare::Configured,
        }
    }

    pub fn set_open(&self, guard: usize, open: bool) {
        if let Some(slot) = self.open.get(guard) {
            slot.store(open, Ordering::Relaxed);
        }
    }
}

impl Conditions for LiveState {
    fn ramp_share(&self, ramp: usize) -> RampShare {
        self.ramps.get(ramp).map_or(RampShare::Configured, |s| {
            RampShare::decode(s.load(Ordering::Relaxed))
        })
    }

    fn guard_open(&self, guard: usize) -> bool {
        self.open
            .get(guard)
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}
