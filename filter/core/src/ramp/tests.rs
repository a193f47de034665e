use proptest::prelude::*;

use super::*;
use crate::live::{LiveState, Snapshot};
use crate::request::OwnedRequest;
use crate::rng::WyRand;
use crate::time::parse_rfc3339;

const START: &str = "2026-12-01T10:00:00Z";

fn start() -> UnixMs {
    parse_rfc3339(START).unwrap()
}

/// v1 90 / v2 10, v2 ramps to 50% over two hours.
fn ramp(steps: u64) -> Ramp {
    Ramp::new(0, 1, &[90, 10], 500_000, start(), 7_200_000, steps)
}

const MINUTE: i64 = 60_000;

#[test]
fn share_at_start_mid_and_end() {
    let r = ramp(0);
    assert_eq!(r.share_at(start() - 1), RampShare::Configured);
    assert_eq!(r.ppm(RampShare::Configured), 100_000);
    assert_eq!(r.share_at(start()), RampShare::Ppm(100_000));
    assert_eq!(r.share_at(start() + 30 * MINUTE), RampShare::Ppm(200_000));
    assert_eq!(r.share_at(start() + 60 * MINUTE), RampShare::Ppm(300_000));
    // Whole seconds: the last second before the end is 7,199/7,200 of the way.
    assert_eq!(
        r.share_at(start() + 120 * MINUTE - 1),
        RampShare::Ppm(499_944)
    );
    assert_eq!(
        r.share_at(start() + 120 * MINUTE - 1000),
        r.share_at(start() + 120 * MINUTE - 1)
    );
    assert_eq!(r.share_at(start() + 120 * MINUTE), RampShare::Ppm(500_000));
    assert_eq!(r.share_at(start() + 1000 * MINUTE), RampShare::Ppm(500_000));
}

#[test]
fn steps_jump_at_k_times_duration_over_n() {
    let r = ramp(4);
    // 10% → 50% in 4 jumps of 10 points, every 30 minutes.
    assert_eq!(r.share_at(start()), RampShare::Ppm(100_000));
    assert_eq!(
        r.share_at(start() + 30 * MINUTE - 1),
        RampShare::Ppm(100_000)
    );
    assert_eq!(r.share_at(start() + 30 * MINUTE), RampShare::Ppm(200_000));
    assert_eq!(r.share_at(start() + 89 * MINUTE), RampShare::Ppm(300_000));
    assert_eq!(r.share_at(start() + 90 * MINUTE), RampShare::Ppm(400_000));
    assert_eq!(r.share_at(start() + 120 * MINUTE), RampShare::Ppm(500_000));
    for k in 0..=4 {
        assert_eq!(r.step_ms(k), start() + 30 * MINUTE * k as i64);
    }
    // Every moment gives one of the step values.
    for t in (0..130).map(|m| start() + m * MINUTE + 17) {
        let RampShare::Ppm(p) = r.share_at(t) else {
            panic!()
        };
        assert!(
            [100_000, 200_000, 300_000, 400_000, 500_000].contains(&p),
            "{p}"
        );
    }
}

#[test]
fn a_start_in_the_past_is_already_under_way() {
    // The issue's Envoy scenario: start = now − 30 s, 60 s, 10% → 50%: 30% now.
    let now = 1_900_000_000_000;
    let r = Ramp::new(0, 1, &[90, 10], 500_000, now - 30_000, 60_000, 0);
    assert_eq!(r.share_at(now), RampShare::Ppm(300_000));
    assert_eq!(r.share_at(now + 30_000), RampShare::Ppm(500_000));
}

#[test]
fn a_clock_that_steps_back_holds_the_share() {
    let r = ramp(0);
    let live = LiveState::new(1, 0);
    let at = |t| live.advance_ramp(0, r.share_at(t));
    assert_eq!(at(start() + 60 * MINUTE), RampShare::Ppm(300_000));
    // NTP steps the clock back an hour, then before the start: the share is held.
    assert_eq!(at(start()), RampShare::Ppm(300_000));
    assert_eq!(at(start() - 60 * MINUTE), RampShare::Ppm(300_000));
    assert_eq!(live_share(&live), RampShare::Ppm(300_000));
    // And moves on once the clock passes the high-water mark.
    assert_eq!(at(start() + 90 * MINUTE), RampShare::Ppm(400_000));
}

fn live_share(live: &LiveState) -> RampShare {
    crate::live::Conditions::ramp_share(live, 0)
}

#[test]
fn the_others_are_scaled_exactly_and_the_share_is_exact() {
    let weights = [60u32, 35, 5];
    let r = Ramp::new(0, 2, &weights, 500_000, start(), 7_200_000, 0);
    for p in [50_000u32, 123_457, 333_333, 500_000, 999_999, 1_000_000] {
        let share = RampShare::Ppm(p);
        let eff: Vec<u64> = (0..3).map(|i| r.weight(i, weights[i], share)).collect();
        let total: u64 = eff.iter().sum();
        // The ramped share is exactly p ppm …
        assert_eq!(
            u128::from(eff[2]) * 1_000_000,
            u128::from(p) * u128::from(total)
        );
        // … and v1 : v2 stays exactly 60 : 35.
        assert_eq!(eff[0] * 35, eff[1] * 60, "at {p}");
    }
    // Before the start: the configured weights themselves.
    assert_eq!(r.weight(0, 60, RampShare::Configured), 60);
    // Alone in its split, the ramped subset keeps its weight (nothing to scale against).
    let alone = Ramp::new(0, 0, &[10, 0], 1_000_000, start(), 60_000, 0);
    assert_eq!(alone.weight(0, 10, RampShare::Ppm(1_000_000)), 10);
    assert_eq!(alone.weight(1, 0, RampShare::Ppm(1_000_000)), 0);
}

#[test]
fn the_start_share_is_the_configured_one_rounded_up() {
    assert_eq!(start_ppm(1, 3), 333_334);
    assert_eq!(start_ppm(10, 100), 100_000);
    assert_eq!(start_ppm(0, 100), 0);
    assert_eq!(percent_to_ppm(12.5), 125_000);
    assert_eq!(percent_to_ppm(33.333_333_3), 333_333);
    assert_eq!(percent_to_ppm(100.0), 1_000_000);
}

fn three_way(steps: u64) -> crate::Router {
    crate::load(
        format!(
            r#"{{"rules":[{{"name":"canary","route":{{
              "split":[{{"subset":"v1","weight":60}},{{"subset":"v2","weight":35}},{{"subset":"v3","weight":5}}],
              "stickyBy":{{"header":"x-user-id"}},
              "ramp":{{"subset":"v3","toPercent":50,"start":"{START}","durationSeconds":7200,"steps":{steps}}}}}}}],
              "default":{{"subset":"v1"}}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

/// The subset a sticky key gets from `router` under `at`.
fn sticky(router: &crate::Router, at: &Snapshot, key: &str) -> String {
    let req = OwnedRequest::new().header("x-user-id", key);
    let d = router.decide_with(&req, &mut WyRand::new(1), at).unwrap();
    d.target.subset.clone()
}

fn at(router: &crate::Router, t: UnixMs) -> Snapshot {
    Snapshot {
        ramps: router.ramps().iter().map(|r| r.ramp.share_at(t)).collect(),
        open: Vec::new(),
    }
}

/// The issue's measurement: a 3-way ramp of v3 from 5% to 50%. With exact scaling no key moves
/// between v1 and v2, and none leaves v3; the share follows the schedule.
#[test]
fn a_three_way_ramp_moves_keys_only_into_the_ramped_subset() {
    let router = three_way(0);
    let times: Vec<UnixMs> = (0..=4).map(|k| start() - 1 + k * 30 * MINUTE).collect();
    let snapshots: Vec<Snapshot> = times.iter().map(|&t| at(&router, t)).collect();
    let mut moved_between_others = 0;
    let mut on_v3_at_end = 0;
    for k in 0..20_000 {
        let key = format!("user-{k}");
        let path: Vec<String> = snapshots.iter().map(|s| sticky(&router, s, &key)).collect();
        for pair in path.windows(2) {
            assert!(
                !(pair[0] == "v3" && pair[1] != "v3"),
                "{key} left v3: {path:?}"
            );
            moved_between_others += usize::from(pair[0] != pair[1] && pair[1] != "v3");
        }
        on_v3_at_end += usize::from(path[4] == "v3");
    }
    assert_eq!(moved_between_others, 0);
    // 50% at the end ± 4.5σ.
    let sigma = (20_000.0f64 * 0.25).sqrt();
    assert!(
        (on_v3_at_end as f64 - 10_000.0).abs() < 4.5 * sigma,
        "{on_v3_at_end}"
    );
}

#[test]
fn random_splits_follow_the_ramped_share() {
    let router = three_way(0);
    let mid = at(&router, start() + 60 * MINUTE); // v3 at 27.5%
    let mut rng = WyRand::new(7);
    let n = 100_000;
    let v3 = (0..n)
        .filter(|_| {
            let d = router
                .decide_with(&OwnedRequest::new(), &mut rng, &mid)
                .unwrap();
            d.target.subset == "v3"
        })
        .count();
    let sigma = (n as f64 * 0.275 * 0.725).sqrt();
    assert!((v3 as f64 - 27_500.0).abs() < 4.5 * sigma, "{v3}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any 2–4-subset split, any ramp of any of its subsets, any two moments: a sticky key
    /// never leaves the ramped subset and never moves between the others.
    #[test]
    fn sticky_keys_only_ever_move_into_the_ramped_subset(
        weights in prop::collection::vec(0u32..=1_000, 2..=4),
        ramped_pick in 0usize..4,
        to_extra in 0.0f64..=1.0,
        steps in prop_oneof![Just(0u64), 1u64..=10],
        t1 in -100i64..8_000,
        t2 in -100i64..8_000,
        keys in prop::collection::vec("[a-z0-9]{1,12}", 150),
    ) {
        let mut weights = weights;
        let n = weights.len();
        let ramped = ramped_pick % n;
        if weights.iter().all(|&w| w == 0) {
            weights[0] = 1;
        }
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let from = start_ppm(u64::from(weights[ramped]), total);
        let to_percent = (f64::from(from) + (1_000_000.0 - f64::from(from)) * to_extra) / 10_000.0;
        let split: Vec<String> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| format!(r#"{{"subset":"s{i}","weight":{w}}}"#))
            .collect();
        let json = format!(
            r#"{{"default":{{"split":[{}],"stickyBy":{{"header":"x-user-id"}},
                "ramp":{{"subset":"s{ramped}","toPercent":{to_percent},"start":"{START}","durationSeconds":7200,"steps":{steps}}}}}}}"#,
            split.join(",")
        );
        let router = crate::load(json.as_bytes()).unwrap();
        let (early, late) = (t1.min(t2), t1.max(t2));
        let before = at(&router, start() + early * 1000);
        let after = at(&router, start() + late * 1000);
        let ramped_name = format!("s{ramped}");
        for key in &keys {
            let a = sticky(&router, &before, key);
            let b = sticky(&router, &after, key);
            prop_assert!(
                a == b || b == ramped_name,
                "{} moved {} -> {} (ramped {}, weights {:?}, {}s -> {}s)",
                key, a, b, ramped_name, weights, early, late
            );
        }
    }
}
