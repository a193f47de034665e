use super::*;

fn spec() -> GuardSpec {
    GuardSpec {
        subset: "v2".into(),
        baseline: None,
        max_error_ppm: 50_000, // 5%
        min_requests: 20,
        window_s: 30,
        cooldown_ms: 60_000,
        max_trips: 3,
        min_margin_ppm: 10_000,
        slow: None,
        fleet: None,
    }
}

fn counts(requests: u64, errors: u64) -> Counts {
    Counts {
        requests,
        errors,
        ..Counts::default()
    }
}

/// A closed record with `c` merged at second 100, evaluated at 100.5 s.
fn trips(spec: &GuardSpec, c: Counts) -> Option<Transition> {
    let mut r = Record::new(1, 0);
    r.merge(&c, 100);
    r.evaluate(spec, 100_500)
}

#[test]
fn below_min_requests_nothing_is_decided() {
    let s = spec();
    assert_eq!(trips(&s, counts(19, 19)), None);
    assert!(matches!(
        trips(&s, counts(20, 20)),
        Some(Transition::Tripped(_))
    ));
}

#[test]
fn exactly_max_error_percent_trips() {
    let s = spec();
    // 1/20 = 5% exactly.
    let Some(Transition::Tripped(trip)) = trips(&s, counts(20, 1)) else {
        panic!("5% of 20 must trip")
    };
    assert_eq!(trip.trip, 1);
    assert_eq!(trip.cause, Cause::Errors);
    assert_eq!(trip.window, counts(20, 1));
    assert_eq!(trip.open_ms, Some(60_000));
    // 1/21 < 5%.
    assert_eq!(trips(&s, counts(21, 1)), None);
    // A fractional threshold: 12.5% of 40 is 5 errors.
    let s = GuardSpec {
        max_error_ppm: 125_000,
        ..spec()
    };
    assert_eq!(trips(&s, counts(40, 4)), None);
    assert!(trips(&s, counts(40, 5)).is_some());
}

#[test]
fn a_baseline_failing_as_much_does_not_trip() {
    let s = GuardSpec {
        baseline: Some("v1".into()),
        min_margin_ppm: 20_000, // 2 points
        ..spec()
    };
    let with_base = |errors, base_requests, base_errors| Counts {
        requests: 100,
        errors,
        baseline_requests: base_requests,
        baseline_errors: base_errors,
        ..Counts::default()
    };
    // A shared outage: both at 50%.
    assert_eq!(trips(&s, with_base(50, 100, 50)), None);
    // 10% against 8.5%: only 1.5 points above.
    assert_eq!(trips(&s, with_base(10, 200, 17)), None);
    // 10% against 8%: exactly 2 points above.
    assert!(trips(&s, with_base(10, 200, 16)).is_some());
    // No baseline traffic: compared with 0%.
    assert!(trips(&s, with_base(10, 0, 0)).is_some());
    // Still needs the absolute threshold: 4% against 0% is below 5%.
    assert_eq!(trips(&s, with_base(4, 200, 0)), None);
}

#[test]
fn the_latency_pair_trips_on_slow_responses() {
    let s = GuardSpec {
        slow: Some(SlowTrigger {
            slow_ms: 100,
            max_slow_ppm: 500_000,
        }),
        ..spec()
    };
    let slow = |n| Counts {
        requests: 20,
        slow: n,
        ..Counts::default()
    };
    assert_eq!(trips(&s, slow(9)), None);
    let Some(Transition::Tripped(trip)) = trips(&s, slow(10)) else {
        panic!("50% slow must trip")
    };
    assert_eq!(trip.cause, Cause::Slow);
    assert!(
        trip.message(&s)
            .contains("10/20 requests slower than 100ms"),
        "{}",
        trip.message(&s)
    );
    // Without the pair, slowness is not looked at.
    assert_eq!(trips(&spec(), slow(20)), None);
}

#[test]
fn the_kth_trip_stays_open_k_cooldowns_and_the_last_latches() {
    let s = spec();
    let mut r = Record::new(1, 0);
    let mut now = 1_000_000u64;
    for k in 1..=2u64 {
        r.merge(&counts(20, 20), now / 1000);
        let Some(Transition::Tripped(trip)) = r.evaluate(&s, now) else {
            panic!("trip {k}")
        };
        assert_eq!(trip.trip, k as u32);
        assert_eq!(trip.open_ms, Some(k * 60_000));
        assert_eq!(
            r.state,
            GuardState::Open {
                until_ms: now + k * 60_000
            }
        );
        // While open, counts go to the totals only.
        r.merge(&counts(50, 50), now / 1000 + 1);
        assert!(r.window.is_empty());
        assert_eq!(r.evaluate(&s, now + k * 60_000 - 1), None);
        now += k * 60_000;
        assert_eq!(
            r.evaluate(&s, now),
            Some(Transition::Closed { trip: k as u32 })
        );
        assert_eq!(r.state, GuardState::Closed);
        assert!(
            r.window.is_empty(),
            "the window starts empty after the cooldown"
        );
        now += 1000;
    }
    r.merge(&counts(20, 20), now / 1000);
    let Some(Transition::Tripped(trip)) = r.evaluate(&s, now) else {
        panic!("trip 3")
    };
    assert_eq!((trip.trip, trip.open_ms), (3, None));
    assert_eq!(r.state, GuardState::Latched);
    assert!(trip.message(&s).contains("latched"), "{}", trip.message(&s));
    assert_eq!(r.evaluate(&s, now + 365 * 86_400_000), None);
    assert!(r.is_open());
    assert_eq!(r.totals.requests, 20 * 3 + 50 * 2);
}

#[test]
fn the_window_slides_over_seconds() {
    let s = GuardSpec {
        window_s: 5,
        ..spec()
    };
    let mut r = Record::new(1, 0);
    r.merge(&counts(10, 10), 100);
    r.merge(&counts(9, 9), 104);
    // Seconds 100..=104 are the window at 104: 19 requests, below minRequests.
    assert_eq!(r.evaluate(&s, 104_999), None);
    assert_eq!(r.window_counts(104, 5), counts(19, 19));
    r.merge(&counts(11, 0), 105);
    // At 105 the window is 101..=105: second 100 has left it.
    assert_eq!(r.window_counts(105, 5), counts(20, 9));
    assert!(r.evaluate(&s, 105_000).is_some());
}

#[test]
fn buckets_stay_sorted_when_clocks_disagree() {
    let mut r = Record::new(1, 0);
    r.merge(&counts(1, 0), 10);
    r.merge(&counts(1, 0), 8);
    r.merge(&counts(1, 0), 10);
    r.merge(&counts(1, 0), 9);
    let seconds: Vec<u64> = r.window.iter().map(|b| b.second).collect();
    assert_eq!(seconds, [8, 9, 10]);
    assert_eq!(r.window_counts(10, 30).requests, 4);
}

#[test]
fn records_round_trip_and_garbage_reads_as_none() {
    let mut r = Record::new(7, 0);
    r.merge(
        &Counts {
            requests: 5,
            errors: 2,
            slow: 1,
            baseline_requests: 9,
            baseline_errors: 3,
            baseline_slow: 0,
        },
        42,
    );
    r.merge(&counts(1, 1), 43);
    r.trips = 2;
    r.state = GuardState::Open { until_ms: 99_000 };
    let bytes = r.encode();
    assert_eq!(Record::decode(&bytes), Some(r.clone()));
    r.state = GuardState::Latched;
    assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
    for cut in 0..bytes.len() {
        assert_eq!(Record::decode(&bytes[..cut]), None, "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Record::decode(&longer), None);
    let mut other_version = bytes;
    other_version[0] = 1;
    assert_eq!(Record::decode(&other_version), None);
    assert_eq!(Record::decode(b""), None);
}

#[test]
fn messages_name_the_subset_the_counts_the_share_and_the_time() {
    let s = GuardSpec {
        baseline: Some("v1".into()),
        min_margin_ppm: 20_000,
        ..spec()
    };
    let trip = Trip {
        trip: 1,
        cause: Cause::Errors,
        window: Counts {
            requests: 40,
            errors: 12,
            slow: 0,
            baseline_requests: 100,
            baseline_errors: 1,
            baseline_slow: 0,
        },
        by_fleet: false,
        span_s: 30,
        open_ms: Some(90_000),
    };
    assert_eq!(
        trip.message(&s),
        "subset-router: guard v2 tripped (trip 1 of 3): 12/40 requests failed in the last 30s \
         (30.0% >= 5%; baseline v1: 1/100 (1.0%), margin 2%); v2 is taken out of every split for 1m30s"
    );
    assert_eq!(
        closed_message(&s, 1),
        "subset-router: guard v2 closed after trip 1 of 3: v2 receives its configured weight again"
    );
    assert_eq!(percent(125_000), "12.5%");
    assert_eq!(percent(1), "0.0001%");
    assert_eq!(duration(3_600_000), "1h");
    assert_eq!(duration(5_400_000), "1h30m");
}
