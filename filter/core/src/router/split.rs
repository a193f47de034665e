//! A split's choice under the run-time conditions: the configured weights (the fast path), a
//! ramp's effective weights, and the second choice when an open guard's subset is picked.

use super::{Split, Target};
use crate::live::Conditions;
use crate::ramp::RampShare;
use crate::request::RequestView;
use crate::rng::RandomSource;
use crate::selection;

/// What a split chose.
pub(super) struct Choice<'r> {
    pub(super) target: &'r Target,
    pub(super) sticky_key_missing: bool,
    pub(super) diverted: Option<usize>,
    pub(super) undivertable: Option<usize>,
}

impl Split {
    pub(super) fn choose<'r>(
        &'r self,
        req: &impl RequestView,
        rng: &mut impl RandomSource,
        now: &impl Conditions,
    ) -> Option<Choice<'r>> {
        let share = self
            .ramp
            .as_ref()
            .map_or(RampShare::Configured, |r| now.ramp_share(r.index));
        let open = |i: usize| {
            self.guarded
                .iter()
                .any(|&(t, g)| t == i && now.guard_open(g))
        };
        let choice = |index: usize, missing: bool| -> Option<Choice<'r>> {
            Some(Choice {
                target: self.targets.get(index)?,
                sticky_key_missing: missing,
                diverted: None,
                undivertable: None,
            })
        };
        if share == RampShare::Configured && !self.guarded.iter().any(|&(_, g)| now.guard_open(g)) {
            // As configured: the static weights and their precomputed prefix sums.
            let (index, missing) = self.pick_static(req, rng)?;
            return choice(index, missing);
        }
        let ramped = |i: usize| self.effective_weight_at(i, share);
        let (first, missing) = self.pick_by(req, rng, ramped)?;
        let Some(guard) = self
            .guarded
            .iter()
            .find(|&&(t, g)| t == first && now.guard_open(g))
            .map(|&(_, g)| g)
        else {
            return choice(first, missing);
        };
        // The subset is out: choose again among the others (sticky: the key's next-best subset,
        // so keys already elsewhere never move). A ramp scales the others by one common factor,
        // so if the ramped subset itself is out, their configured weights give the same choice —
        // and still have weight when the ramp has reached 100%.
        let ramped_out = self.ramp.as_ref().is_some_and(|r| open(r.target));
        let others = |i: usize| match self.weights.get(i) {
            _ if open(i) => 0,
            Some(&w) if ramped_out => u64::from(w),
            Some(_) => ramped(i),
            None => 0,
        };
        match self.pick_by(req, rng, others) {
            Some((index, missing)) => Some(Choice {
                diverted: Some(guard),
                ..choice(index, missing)?
            }),
            None => Some(Choice {
                undivertable: Some(guard),
                ..choice(first, missing)?
            }),
        }
    }

    /// The configured weights: one binary search, or one rendezvous hash.
    fn pick_static(
        &self,
        req: &impl RequestView,
        rng: &mut impl RandomSource,
    ) -> Option<(usize, bool)> {
        match &self.sticky {
            None => Some((selection::pick_random(&self.cumulative, rng)?, false)),
            Some(sticky) => {
                match sticky.with_key(req, |key| sticky.hasher.pick(key, &self.weights)) {
                    Some(index) => Some((index?, false)),
                    None => Some((selection::pick_random(&self.cumulative, rng)?, true)),
                }
            }
        }
    }

    /// Weights given by `weight(i)`; `None` when all are 0.
    fn pick_by(
        &self,
        req: &impl RequestView,
        rng: &mut impl RandomSource,
        weight: impl Fn(usize) -> u64,
    ) -> Option<(usize, bool)> {
        let n = self.targets.len();
        match &self.sticky {
            None => Some((selection::pick_random_by(n, &weight, rng)?, false)),
            Some(sticky) => match sticky.with_key(req, |key| sticky.hasher.pick_by(key, &weight)) {
                Some(index) => Some((index?, false)),
                None => Some((selection::pick_random_by(n, &weight, rng)?, true)),
            },
        }
    }

    /// Target `i`'s weight at ramp share `share` (guards aside).
    fn effective_weight_at(&self, i: usize, share: RampShare) -> u64 {
        let base = self.weights.get(i).copied().unwrap_or(0);
        match &self.ramp {
            Some(ramp) => ramp.weight(i, base, share),
            None => u64::from(base),
        }
    }

    /// Target `i`'s weight under `now`, open guards included (for summaries).
    pub(super) fn effective_weight(&self, i: usize, now: &impl Conditions) -> u64 {
        if self
            .guarded
            .iter()
            .any(|&(t, g)| t == i && now.guard_open(g))
        {
            return 0;
        }
        let share = self
            .ramp
            .as_ref()
            .map_or(RampShare::Configured, |r| now.ramp_share(r.index));
        self.effective_weight_at(i, share)
    }
}
