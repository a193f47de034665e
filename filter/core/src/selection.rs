//! Weighted subset selection: random per request, or sticky by a key.
//!
//! # Sticky selection (weighted rendezvous hashing)
//!
//! For a request with key `K` on rule `R`, every subset `S` with weight `w > 0` gets a score and
//! the lowest score wins (ties: the subset listed first):
//!
//! ```text
//! h      = fnv1a64(R ‖ 0xFF ‖ K)                 key hash, salted by the rule name
//! x_S    = fmix64(h XOR fnv1a64(S))              one independent-looking 64-bit value per subset
//! u_S    = ((x_S >> 11) + 0.5) / 2^53            uniform in (0, 1)
//! score  = -ln(u_S) / w_S                        exponential with rate w_S
//! ```
//!
//! The minimum of independent exponentials with rates `w_i` is subset `i` with probability
//! `w_i / Σw`, so shares follow the weights. `fnv1a64` is 64-bit FNV-1a, `fmix64` MurmurHash3's
//! finaliser, and `ln` the pure-Rust `libm::log`, so the choice is bit-for-bit the same on every
//! platform (host and wasm32), replica, restart and build. It depends only on the rule name, the
//! key, the subset names and the weights — not on their order in the list, except for ties.
//!
//! Ramp property: raising one subset's weight lowers only its own score and lowering other
//! weights raises only theirs, so a key on the growing subset stays there. When the others shrink
//! in proportion (as in a two-way ramp 10% → 20% → 50% → 100%), their relative order is kept too,
//! so keys move only *into* the growing subset.

use crate::rng::RandomSource;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a, continued from `state` (start with [`fnv1a64_start`]).
pub fn fnv1a64(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

pub const fn fnv1a64_start() -> u64 {
    FNV_OFFSET
}

/// MurmurHash3's 64-bit finaliser: a bijection with full avalanche.
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The rendezvous hashing state of one sticky split, prepared at configure time.
#[derive(Debug, Clone, PartialEq)]
pub struct StickyHasher {
    /// FNV state after `rule name ‖ 0xFF`: per request only the key is hashed.
    rule_state: u64,
    /// `fnv1a64(subset name)` per subset, in split order.
    subset_salts: Vec<u64>,
}

impl StickyHasher {
    pub fn new<'a>(rule_name: &str, subsets: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            rule_state: fnv1a64(fnv1a64(fnv1a64_start(), rule_name.as_bytes()), &[0xFF]),
            subset_salts: subsets
                .into_iter()
                .map(|s| fnv1a64(fnv1a64_start(), s.as_bytes()))
                .collect(),
        }
    }

    /// The index of the subset a key sticks to, or `None` when every weight is 0.
    pub fn pick(&self, key: &[u8], weights: &[u32]) -> Option<usize> {
        self.pick_by(key, |i| weights.get(i).map_or(0, |&w| u64::from(w)))
    }

    /// [`Self::pick`] with the weight of subset `i` given by `weight(i)` (effective weights of a
    /// ramp or a guard, which need more than 32 bits). A `u32` weight gives the same `f64` either
    /// way, so both agree bit for bit.
    pub fn pick_by(&self, key: &[u8], weight: impl Fn(usize) -> u64) -> Option<usize> {
        let h = fnv1a64(self.rule_state, key);
        let mut best: Option<(usize, f64)> = None;
        for (i, &salt) in self.subset_salts.iter().enumerate() {
            let w = weight(i);
            if w == 0 {
                continue;
            }
            let x = fmix64(h ^ salt);
            let u = ((x >> 11) as f64 + 0.5) * (1.0 / 9_007_199_254_740_992.0);
            // Weights stay far below 2^53 (at most 10^6 × 10^6 × subsets): exact in an f64.
            let score = -libm::log(u) / w as f64;
            if best.is_none_or(|(_, s)| score < s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Random weighted choice among `n` subsets with weights `weight(i)`, by a linear scan (for
/// effective weights that change at run time; static splits use [`pick_random`]).
pub fn pick_random_by(
    n: usize,
    weight: impl Fn(usize) -> u64,
    rng: &mut impl RandomSource,
) -> Option<usize> {
    let total = (0..n).fold(0u64, |sum, i| sum.saturating_add(weight(i)));
    if total == 0 {
        return None;
    }
    let point = ((u128::from(rng.next_u64()) * u128::from(total)) >> 64) as u64;
    let mut upper = 0u64;
    for i in 0..n {
        upper = upper.saturating_add(weight(i));
        if point < upper {
            return Some(i);
        }
    }
    None
}

/// Random weighted choice over prefix sums (`cumulative[i]` = Σ weights[..=i], last = total).
/// A subset of weight 0 has an empty interval and is never chosen.
pub fn pick_random(cumulative: &[u64], rng: &mut impl RandomSource) -> Option<usize> {
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    // Lemire's multiply-shift maps 64 random bits onto [0, total) without a division.
    let point = ((u128::from(rng.next_u64()) * u128::from(total)) >> 64) as u64;
    let index = cumulative.partition_point(|&c| c <= point);
    (index < cumulative.len()).then_some(index)
}

/// Prefix sums of weights, for [`pick_random`].
pub fn cumulative(weights: &[u32]) -> Vec<u64> {
    weights
        .iter()
        .scan(0u64, |sum, &w| {
            *sum += u64::from(w);
            Some(*sum)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::WyRand;

    /// Asserts `observed` is within 4.5 binomial standard deviations of `n * p`.
    fn assert_binomial(observed: u64, n: u64, p: f64, what: &str) {
        let mean = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        let lo = mean - 4.5 * sd;
        let hi = mean + 4.5 * sd;
        assert!(
            (observed as f64) >= lo && (observed as f64) <= hi,
            "{what}: observed {observed} of {n}, expected {mean:.0} within [{lo:.0}, {hi:.0}]"
        );
    }

    fn random_shares(weights: &[u32], n: u64, seed: u64) -> Vec<u64> {
        let cum = cumulative(weights);
        let mut rng = WyRand::new(seed);
        let mut counts = vec![0u64; weights.len()];
        for _ in 0..n {
            counts[pick_random(&cum, &mut rng).unwrap()] += 1;
        }
        counts
    }

    fn sticky_shares(weights: &[u32], n: u64) -> Vec<u64> {
        let names: Vec<String> = (0..weights.len()).map(|i| format!("s{i}")).collect();
        let hasher = StickyHasher::new("rule", names.iter().map(String::as_str));
        let mut counts = vec![0u64; weights.len()];
        for k in 0..n {
            counts[hasher
                .pick(format!("user-{k}").as_bytes(), weights)
                .unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn random_distributions_follow_weights() {
        for weights in [
            &[90, 10][..],
            &[75, 25],
            &[50, 50],
            &[60, 30, 10],
            &[1, 999_999],
        ] {
            let n = 200_000;
            let total: u32 = weights.iter().sum();
            let counts = random_shares(weights, n, 0x5eed);
            for (i, &w) in weights.iter().enumerate() {
                assert_binomial(
                    counts[i],
                    n,
                    f64::from(w) / f64::from(total),
                    &format!("{weights:?}[{i}]"),
                );
            }
        }
    }

    #[test]
    fn sticky_distributions_follow_weights() {
        for weights in [&[90, 10][..], &[75, 25], &[50, 50], &[60, 30, 10]] {
            let n = 100_000;
            let total: u32 = weights.iter().sum();
            let counts = sticky_shares(weights, n);
            for (i, &w) in weights.iter().enumerate() {
                assert_binomial(
                    counts[i],
                    n,
                    f64::from(w) / f64::from(total),
                    &format!("sticky {weights:?}[{i}]"),
                );
            }
        }
    }

    #[test]
    fn weight_zero_is_never_chosen() {
        let counts = random_shares(&[0, 100, 0], 100_000, 1);
        assert_eq!(counts, vec![0, 100_000, 0]);
        let counts = random_shares(&[1_000_000, 0], 100_000, 2);
        assert_eq!(counts[1], 0);
        let counts = sticky_shares(&[0, 1, 0], 100_000);
        assert_eq!(counts, vec![0, 100_000, 0]);
    }

    #[test]
    fn all_zero_weights_choose_nothing() {
        assert_eq!(pick_random(&cumulative(&[0, 0]), &mut WyRand::new(1)), None);
        assert_eq!(pick_random(&[], &mut WyRand::new(1)), None);
        assert_eq!(StickyHasher::new("r", ["a", "b"]).pick(b"k", &[0, 0]), None);
    }

    #[test]
    fn extreme_random_points_stay_in_range() {
        struct Fixed(u64);
        impl RandomSource for Fixed {
            fn next_u64(&mut self) -> u64 {
                self.0
            }
        }
        let cum = cumulative(&[3, 0, 5]);
        assert_eq!(pick_random(&cum, &mut Fixed(0)), Some(0));
        assert_eq!(pick_random(&cum, &mut Fixed(u64::MAX)), Some(2));
    }

    #[test]
    fn sticky_is_a_pure_function() {
        let a = StickyHasher::new("canary", ["v1", "v2"]);
        let b = StickyHasher::new("canary", ["v1", "v2"]);
        for k in 0..1000 {
            let key = format!("id-{k}");
            assert_eq!(
                a.pick(key.as_bytes(), &[90, 10]),
                b.pick(key.as_bytes(), &[90, 10])
            );
        }
        // The rule name salts the hash: another rule spreads the same keys differently.
        let other = StickyHasher::new("other", ["v1", "v2"]);
        let differ = (0..1000)
            .filter(|k| {
                let key = format!("id-{k}");
                a.pick(key.as_bytes(), &[50, 50]) != other.pick(key.as_bytes(), &[50, 50])
            })
            .count();
        assert!(differ > 300, "rule salt had too little effect: {differ}");
    }

    #[test]
    fn subset_order_does_not_change_sticky_choice() {
        let ab = StickyHasher::new("r", ["a", "b", "c"]);
        let ca = StickyHasher::new("r", ["c", "a", "b"]);
        for k in 0..2000 {
            let key = format!("{k}");
            let x = ab.pick(key.as_bytes(), &[60, 30, 10]).unwrap();
            let y = ca.pick(key.as_bytes(), &[10, 60, 30]).unwrap();
            assert_eq!(["a", "b", "c"][x], ["c", "a", "b"][y]);
        }
    }

    mod ramp {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any number of subsets, any weights: when one subset's weight grows and every
            /// other weight shrinks (arbitrarily), no key leaves the growing subset.
            #[test]
            fn no_key_leaves_the_growing_subset(
                old in prop::collection::vec(0u32..=1_000_000, 2..6),
                grow_to in 0u32..=1_000_000,
                shrink in prop::collection::vec(0.0f64..=1.0, 6),
                grower_pick in 0usize..6,
                keys in prop::collection::vec("[a-zA-Z0-9_-]{1,24}", 200),
            ) {
                let n = old.len();
                let g = grower_pick % n;
                let mut new = old.clone();
                new[g] = old[g].max(grow_to);
                for i in (0..n).filter(|&i| i != g) {
                    new[i] = (f64::from(old[i]) * shrink[i]) as u32;
                }
                let names: Vec<String> = (0..n).map(|i| format!("subset-{i}")).collect();
                let h = StickyHasher::new("ramp", names.iter().map(String::as_str));
                for key in &keys {
                    if h.pick(key.as_bytes(), &old) == Some(g) {
                        prop_assert_eq!(h.pick(key.as_bytes(), &new), Some(g), "key {} left the grower", key);
                    }
                }
            }

            /// When the others shrink in proportion, a key either stays or moves into the grower.
            /// Others are `base_i × m`, so scaling `m` down keeps their proportions exact.
            #[test]
            fn keys_move_only_into_the_growing_subset(
                base in prop::collection::vec(1u32..=1_000, 2..6),
                m_old in 1u32..=1_000,
                m_new_fraction in 0.0f64..=1.0,
                g_old in 0u32..=1_000_000,
                g_growth in 0u32..=1_000_000,
                grower_pick in 0usize..6,
                keys in prop::collection::vec("[a-zA-Z0-9_-]{1,24}", 200),
            ) {
                let n = base.len();
                let g = grower_pick % n;
                let m_new = (f64::from(m_old) * m_new_fraction) as u32;
                let mut old: Vec<u32> = base.iter().map(|&b| b * m_old).collect();
                let mut new: Vec<u32> = base.iter().map(|&b| b * m_new).collect();
                old[g] = g_old;
                new[g] = g_old.saturating_add(g_growth).min(1_000_000);
                let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
                let h = StickyHasher::new("ramp", names.iter().map(String::as_str));
                for key in &keys {
                    let before = h.pick(key.as_bytes(), &old).unwrap();
                    let Some(after) = h.pick(key.as_bytes(), &new) else { continue };
                    prop_assert!(after == before || after == g, "key {} moved {} -> {}, grower {}", key, before, after, g);
                }
            }
        }

        /// The canary ramp of the rollout guides, over many keys: 10% → 20% → 50% → 100%.
        #[test]
        fn canary_ramp_never_sends_a_user_back() {
            let h = StickyHasher::new("canary", ["v1", "v2"]);
            let steps: [[u32; 2]; 4] = [[90, 10], [80, 20], [50, 50], [0, 100]];
            let mut moved_in = 0;
            for k in 0..20_000 {
                let key = format!("user-{k}");
                let path: Vec<usize> = steps
                    .iter()
                    .map(|w| h.pick(key.as_bytes(), w).unwrap())
                    .collect();
                for pair in path.windows(2) {
                    assert!(
                        !(pair[0] == 1 && pair[1] == 0),
                        "{key} went back from v2 to v1: {path:?}"
                    );
                    moved_in += usize::from(pair[0] == 0 && pair[1] == 1);
                }
                assert_eq!(path[3], 1, "at 100% every key is on v2");
            }
            assert!(moved_in > 15_000);
        }
    }
}
