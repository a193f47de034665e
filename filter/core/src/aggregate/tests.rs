use std::cell::{Cell, RefCell};

use proptest::prelude::*;

use super::*;
use crate::guard::GuardState;
use crate::testing::FakeStore;

fn spec(cooldown_ms: u64, max_trips: u32) -> GuardSpec {
    GuardSpec {
        subset: "v2".into(),
        baseline: None,
        max_error_ppm: 200_000, // 20%
        min_requests: 20,
        window_s: 5,
        cooldown_ms,
        max_trips,
        min_margin_ppm: 10_000,
        slow: None,
        fleet: None,
    }
}

fn errors(n: u64) -> Counts {
    Counts {
        requests: n,
        errors: n,
        ..Counts::default()
    }
}

/// Plugin `p`'s first configuration slot, guard 0.
const GUARD_KEY: &str = "subset_router.p.0.guard.0";

fn record(store: &FakeStore, key: &str) -> Record {
    Record::decode(&store.value(key).expect("a record")).expect("a valid record")
}

fn trips(report: &TickReport) -> usize {
    report
        .events
        .iter()
        .filter(|e| matches!(e, Event::Tripped { .. }))
        .count()
}

#[test]
fn workers_share_one_window_and_the_trip_is_reported_once() {
    let specs = [spec(60_000, 3)];
    let store = FakeStore::default();
    let workers: Vec<Aggregator> = (0..3).map(|_| Aggregator::new(&specs, "p", 42)).collect();
    // 3 × 8 = 24 failing requests: no worker alone reaches minRequests 20.
    for w in &workers {
        w.observe(0, &errors(8));
    }
    let reports: Vec<TickReport> = workers
        .iter()
        .map(|w| w.tick(&specs, &store, 10_000))
        .collect();
    assert_eq!(reports.iter().map(trips).collect::<Vec<_>>(), [0, 0, 1]);
    assert_eq!(reports[2].open, [Some(true)]);
    // The others learn it on their next tick.
    assert_eq!(workers[0].tick(&specs, &store, 11_000).open, [Some(true)]);
    let r = record(&store, GUARD_KEY);
    assert_eq!(r.trips, 1);
    assert_eq!(r.totals, errors(24));
    assert_eq!(r.state, GuardState::Open { until_ms: 70_000 });
    // Bounded keys: the slot table and one per guard.
    assert_eq!(store.keys(), [GUARD_KEY, "subset_router.p.configs"]);
}

#[test]
fn a_lost_swap_is_retried_and_counts_that_never_land_wait_for_the_next_tick() {
    let specs = [spec(60_000, 3)];
    let store = FakeStore::default();
    let w = Aggregator::new(&specs, "p", 42);
    w.tick(&specs, &store, 1_000); // joins, creates the record
    w.observe(0, &errors(5));
    store.lose_next.set(2);
    w.tick(&specs, &store, 2_000);
    assert_eq!(record(&store, GUARD_KEY).totals, errors(5));
    w.observe(0, &errors(3));
    store.lose_next.set(ATTEMPTS + 1); // the slot mark of the new second loses first
    let report = w.tick(&specs, &store, 3_000);
    assert_eq!(report.open, [Some(false)]);
    assert_eq!(w.pending(0), errors(3));
    w.tick(&specs, &store, 4_000);
    assert_eq!(w.pending(0), Counts::default());
    assert_eq!(record(&store, GUARD_KEY).totals, errors(8));
}

#[test]
fn a_failing_host_keeps_the_counts() {
    let specs = [spec(60_000, 3)];
    let store = FakeStore::default();
    let w = Aggregator::new(&specs, "p", 42);
    w.observe(0, &errors(4));
    store.broken.set(true);
    let report = w.tick(&specs, &store, 1_000);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(w.load(), 0, "not joined yet");
    store.broken.set(false);
    w.tick(&specs, &store, 2_000);
    assert_eq!(record(&store, GUARD_KEY).totals, errors(4));
}

#[test]
fn nothing_but_the_slot_mark_is_written_when_nothing_changed() {
    let specs = [spec(60_000, 3)];
    let store = FakeStore::default();
    let workers: Vec<Aggregator> = (0..3).map(|_| Aggregator::new(&specs, "p", 42)).collect();
    for w in &workers {
        w.tick(&specs, &store, 1_000);
    }
    let sets = store.sets.get();
    for t in 2..10 {
        for w in &workers {
            w.tick(&specs, &store, t * 1000 + 100);
        }
    }
    // Once a second the first worker marks the configuration's slot seen; nothing else.
    assert_eq!(store.sets.get() - sets, 8);
}

#[test]
fn a_new_configuration_resets_every_guard() {
    let specs = [spec(60_000, 1)];
    let store = FakeStore::default();
    let a = Aggregator::new(&specs, "p", 0xA);
    a.observe(0, &errors(20));
    assert_eq!(trips(&a.tick(&specs, &store, 1_000)), 1);
    assert_eq!(record(&store, GUARD_KEY).state, GuardState::Latched);
    // Another worker of the same configuration joins the latched guard.
    let a2 = Aggregator::new(&specs, "p", 0xA);
    assert_eq!(a2.tick(&specs, &store, 2_000).open, [Some(true)]);
    // Configuration B (say, new weights) replaces A: a new load, a fresh guard.
    let b = Aggregator::new(&specs, "p", 0xB);
    assert_eq!(b.tick(&specs, &store, 3_000).open, [Some(false)]);
    assert_eq!(b.load(), a.load() + 1);
    // A's workers are gone (no more ticks); after a while A is applied again: although its
    // text was seen before, it is a new configuration and starts afresh.
    for t in 4..10 {
        b.tick(&specs, &store, t * 1000);
    }
    let a_again = Aggregator::new(&specs, "p", 0xA);
    assert_eq!(a_again.tick(&specs, &store, 10_000).open, [Some(false)]);
    assert_eq!(a_again.load(), b.load() + 1);
    assert_eq!(
        a_again.key(0),
        Some(GUARD_KEY.to_owned()),
        "A's slot, new load"
    );
    assert_eq!(record(&store, GUARD_KEY).load, a_again.load());
}

#[test]
fn configurations_alive_at_once_never_share_a_guard() {
    // Two listeners, two configurations of one plugin, both failing: each trips its own.
    let specs = [spec(60_000, 3)];
    let store = FakeStore::default();
    let (a, b) = (
        Aggregator::new(&specs, "p", 0xA),
        Aggregator::new(&specs, "p", 0xB),
    );
    for t in 1..=3 {
        a.observe(0, &errors(10));
        b.observe(0, &errors(10));
        let (ra, rb) = (
            a.tick(&specs, &store, t * 1000),
            b.tick(&specs, &store, t * 1000 + 10),
        );
        assert_eq!(
            (trips(&ra), trips(&rb)),
            if t == 2 { (1, 1) } else { (0, 0) }
        );
    }
    assert_ne!(a.key(0), b.key(0));
    assert_eq!(record(&store, &a.key(0).unwrap()).trips, 1);
    assert_eq!(record(&store, &b.key(0).unwrap()).trips, 1);
    // Slots are bounded: configurations that went away free theirs for new ones.
    let c = Aggregator::new(&specs, "p", 0xC);
    c.tick(&specs, &store, (3 + STALE_S) * 1000 + 500);
    assert_eq!(
        c.key(0),
        Some(GUARD_KEY.to_owned()),
        "A's and B's slots are free again"
    );
}

#[test]
fn a_fleet_breach_trips_a_closed_guard_once_and_never_with_stale_totals() {
    let fleet = crate::fleet::FleetSpec {
        cluster: "prometheus".into(),
        authority: "prometheus".into(),
        path: "/api/v1/query".into(),
        matchers: vec![],
        interval_ms: 5_000,
        timeout_ms: 1_000,
    };
    let specs = [GuardSpec {
        fleet: Some(fleet),
        ..spec(10_000, 3)
    }];
    let store = FakeStore::default();
    let (w1, w2) = (
        Aggregator::new(&specs, "p", 7),
        Aggregator::new(&specs, "p", 7),
    );
    w1.tick(&specs, &store, 1_000);
    w2.tick(&specs, &store, 1_000);
    // Too soon after the start: the window would be under MIN_FLEET_RANGE_S.
    assert_eq!(w1.fleet_round(0, &specs[0], &store, 2_500), Ok(None));
    // One round per interval per proxy, whichever worker asks first.
    let round = w1
        .fleet_round(0, &specs[0], &store, 4_000)
        .unwrap()
        .unwrap();
    assert_eq!((round.range_s, round.window_start_ms), (3, 1_000));
    assert_eq!(w2.fleet_round(0, &specs[0], &store, 4_100), Ok(None));
    assert_eq!(w2.fleet_round(0, &specs[0], &store, 8_999), Ok(None));
    assert!(w2
        .fleet_round(0, &specs[0], &store, 9_000)
        .unwrap()
        .is_some());
    // The fleet failed 30 of 100: this proxy saw nothing, yet the guard trips, once.
    w1.fleet_answered(&round, errors(30));
    let report = w1.tick(&specs, &store, 9_500);
    assert_eq!(trips(&report), 1);
    let Event::Tripped { trip, .. } = &report.events[0] else {
        panic!()
    };
    assert!(trip.by_fleet);
    assert_eq!(trip.window, errors(30));
    assert_eq!(w2.tick(&specs, &store, 9_600).events, []);
    // While open, no rounds; after the close, totals about a window that began before the close
    // (an answer in flight when it closed) are ignored.
    assert_eq!(w1.fleet_round(0, &specs[0], &store, 15_000), Ok(None));
    assert_eq!(w1.tick(&specs, &store, 19_600).events.len(), 1, "closed");
    w1.fleet_answered(&round, errors(30));
    assert_eq!(trips(&w1.tick(&specs, &store, 20_000)), 0);
    let after = w1
        .fleet_round(0, &specs[0], &store, 22_000)
        .unwrap()
        .unwrap();
    assert_eq!(
        after.window_start_ms, 20_000,
        "2 whole seconds since the close at 19.6 s"
    );
    w1.fleet_answered(&after, errors(30));
    assert_eq!(trips(&w1.tick(&specs, &store, 22_100)), 1);
}

#[test]
fn plugins_do_not_share_guards() {
    let specs = [spec(60_000, 3)];
    let store = FakeStore::default();
    let p = Aggregator::new(&specs, "p", 1);
    let q = Aggregator::new(&specs, "q", 1);
    p.observe(0, &errors(20));
    assert_eq!(trips(&p.tick(&specs, &store, 1_000)), 1);
    assert_eq!(q.tick(&specs, &store, 1_000).open, [Some(false)]);
}

/// A store through which one worker's swap can be overtaken by other workers' whole ticks
/// (the interleavings real workers produce), plus injected mismatches.
struct Interleaved<'a> {
    inner: &'a FakeStore,
    others: &'a [Aggregator],
    specs: &'a [GuardSpec],
    now_ms: u64,
    /// Per `set`: which other worker ticks first (`None`: nobody).
    script: RefCell<std::vec::IntoIter<Option<usize>>>,
    events: &'a RefCell<Vec<Event>>,
    depth: Cell<u32>,
}

impl SharedStore for Interleaved<'_> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<CasOutcome, HostError> {
        let next = self.script.borrow_mut().next().flatten();
        if let (Some(other), 0) = (next, self.depth.get()) {
            if let Some(worker) = self.others.get(other) {
                self.depth.set(1);
                let report = worker.tick(self.specs, self, self.now_ms);
                self.events.borrow_mut().extend(report.events);
                self.depth.set(0);
            }
        }
        self.inner.set(key, value, cas)
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Worker observes requests (all failing or all fine).
    Observe {
        worker: usize,
        requests: u64,
        failing: bool,
    },
    /// Worker ticks; its writes may be overtaken as scripted; the clock moves by `advance_ms`.
    Tick {
        worker: usize,
        advance_ms: u64,
        overtakers: Vec<Option<usize>>,
        lose: usize,
    },
}

fn op(workers: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..workers, 1u64..15, any::<bool>()).prop_map(|(worker, requests, failing)| Op::Observe {
            worker,
            requests,
            failing
        }),
        (
            0..workers,
            0u64..1500,
            prop::collection::vec(prop::option::of(0..workers), 0..6),
            0usize..3
        )
            .prop_map(|(worker, advance_ms, overtakers, lose)| Op::Tick {
                worker,
                advance_ms,
                overtakers,
                lose
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// N workers, random traffic, random tick interleavings (a worker's swap overtaken by
    /// others' ticks) and injected mismatches: every request and error observed ends up in the
    /// proxy-wide totals exactly once, every trip and close is reported by exactly one worker,
    /// and a breach that all workers' traffic makes trips the guard.
    #[test]
    fn counts_are_conserved_and_each_breach_trips_exactly_once(
        (workers, ops) in (2usize..=5).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..80))),
        cooldown_s in 1u64..5,
        max_trips in 1u32..4,
    ) {
        let specs = [spec(cooldown_s * 1000, max_trips)];
        let store = FakeStore::default();
        let pool: Vec<Aggregator> = (0..workers).map(|_| Aggregator::new(&specs, "p", 9)).collect();
        let events = RefCell::new(Vec::new());
        let mut observed = Counts::default();
        let mut now_ms = 1_000_000u64;
        // Every worker of a configuration starts ticking when it is applied (a worker that first
        // ticks REJOIN_S after the others stopped would start a new configuration load).
        for w in &pool {
            w.tick(&specs, &store, now_ms);
        }
        for op in ops {
            match op {
                Op::Observe { worker, requests, failing } => {
                    let c = Counts { requests, errors: if failing { requests } else { 0 }, ..Counts::default() };
                    pool[worker].observe(0, &c);
                    observed.add(&c);
                }
                Op::Tick { worker, advance_ms, overtakers, lose } => {
                    now_ms += advance_ms;
                    store.lose_next.set(lose);
                    let through = Interleaved {
                        inner: &store,
                        others: &pool,
                        specs: &specs,
                        now_ms,
                        script: RefCell::new(overtakers.into_iter()),
                        events: &events,
                        depth: Cell::new(0),
                    };
                    let report = pool[worker].tick(&specs, &through, now_ms);
                    events.borrow_mut().extend(report.events);
                }
            }
        }
        // Drain: every worker ticks until nothing is pending (no more injected losses).
        store.lose_next.set(0);
        for _ in 0..3 {
            for w in &pool {
                let report = w.tick(&specs, &store, now_ms);
                events.borrow_mut().extend(report.events);
            }
        }
        for w in &pool {
            prop_assert_eq!(w.pending(0), Counts::default());
        }
        let r = record(&store, GUARD_KEY);
        prop_assert_eq!(r.totals, observed);
        let events = events.into_inner();
        let tripped = events.iter().filter(|e| matches!(e, Event::Tripped { .. })).count();
        let closed = events.iter().filter(|e| matches!(e, Event::Closed { .. })).count();
        prop_assert_eq!(tripped as u32, r.trips, "every trip reported once: {:?}", events);
        let still_open = u32::from(r.is_open());
        prop_assert_eq!(closed as u32 + still_open, r.trips, "every close reported once");
        // Trips are numbered 1, 2, 3… in the order they were reported.
        let numbers: Vec<u32> = events.iter().filter_map(|e| match e {
            Event::Tripped { trip, .. } => Some(trip.trip),
            _ => None,
        }).collect();
        prop_assert_eq!(numbers, (1..=r.trips).collect::<Vec<_>>());
        prop_assert!(r.trips <= max_trips);
    }

    /// A breach seen by no single worker but by all of them together trips the guard once.
    #[test]
    fn a_breach_spread_over_workers_trips_once(
        workers in 2usize..=6,
        per_worker in 4u64..12,
        order in prop::collection::vec(0usize..6, 6..20),
    ) {
        let specs = [spec(600_000, 3)];
        let store = FakeStore::default();
        let pool: Vec<Aggregator> = (0..workers).map(|_| Aggregator::new(&specs, "p", 9)).collect();
        for w in &pool {
            w.observe(0, &errors(per_worker));
        }
        let mut reported = 0;
        for (i, w) in order.iter().copied().chain(0..workers).enumerate() {
            let report = pool[w % workers].tick(&specs, &store, 1_000_000 + i as u64 * 10);
            reported += trips(&report);
        }
        let expected = usize::from(per_worker * workers as u64 >= 20);
        prop_assert_eq!(reported, expected);
    }
}

/// One guarded request that failed, slowly, beside a failed baseline request: every field 1, so
/// any number of them taken together has six equal fields.
const FAILED_REQUEST: Counts = Counts {
    requests: 1,
    errors: 1,
    slow: 1,
    baseline_requests: 1,
    baseline_errors: 1,
    baseline_slow: 1,
};

#[test]
fn a_tick_takes_whole_observations_while_workers_keep_observing() {
    // Workers observe on their threads while the tick takes the pending counts on another. A
    // take that split an observation (its error taken, its request left for the next tick)
    // would merge more errors than requests into the record: every take must hold whole
    // observations, and all of them together exactly what was observed.
    const OBSERVERS: usize = 3;
    const PER_OBSERVER: u64 = 200_000;
    let specs = [spec(60_000, 3)];
    let aggregator = Aggregator::new(&specs, "p", 42);
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let (taken, takes, torn) = std::thread::scope(|s| {
        for _ in 0..OBSERVERS {
            s.spawn(|| {
                for _ in 0..PER_OBSERVER {
                    aggregator.observe(0, &FAILED_REQUEST);
                }
                finished.fetch_add(1, Ordering::Relaxed);
            });
        }
        let (mut taken, mut takes, mut torn) = (Counts::default(), 0u64, Vec::new());
        loop {
            let last = finished.load(Ordering::Relaxed) == OBSERVERS;
            let delta = aggregator.pending[0].take();
            let n = delta.requests;
            if [
                delta.errors,
                delta.slow,
                delta.baseline_requests,
                delta.baseline_errors,
                delta.baseline_slow,
            ] != [n; 5]
            {
                torn.push(delta);
            }
            taken.add(&delta);
            takes += 1;
            if last {
                break (taken, takes, torn);
            }
        }
    });
    assert!(
        torn.is_empty(),
        "{} of {takes} takes split an observation, e.g. {:?}",
        torn.len(),
        torn.first()
    );
    let total = OBSERVERS as u64 * PER_OBSERVER;
    assert_eq!(
        taken,
        Counts {
            requests: total,
            errors: total,
            slow: total,
            baseline_requests: total,
            baseline_errors: total,
            baseline_slow: total,
        }
    );
}

fn fleet_spec(interval_ms: u64) -> GuardSpec {
    GuardSpec {
        fleet: Some(crate::fleet::FleetSpec {
            cluster: "prometheus".into(),
            authority: "prometheus".into(),
            path: "/api/v1/query".into(),
            matchers: vec![],
            interval_ms,
            timeout_ms: 1_000,
        }),
        ..spec(10_000, 3)
    }
}

#[test]
fn fleet_rounds_keep_their_schedule_when_ticks_come_early() {
    // One worker ticking every 999 ms with a 1 s interval: a schedule that slid with the ticks
    // (next = this tick + 1 s) would skip every other round.
    let specs = [fleet_spec(1_000)];
    let store = FakeStore::default();
    let w = Aggregator::new(&specs, "p", 7);
    let mut rounds = 0;
    for k in 0..40u64 {
        let now = 1_000 + k * 999;
        w.tick(&specs, &store, now);
        if w.fleet_round(0, &specs[0], &store, now).unwrap().is_some() {
            rounds += 1;
        }
    }
    // 39 s of ticks, none before the window reaches MIN_FLEET_RANGE_S (2 s): one round a second.
    assert!((36..=38).contains(&rounds), "{rounds} rounds in 39 s");
}

#[test]
fn a_failed_fleet_round_is_logged_once_a_minute_per_proxy_whatever_the_worker() {
    let specs = [fleet_spec(5_000)];
    let store = FakeStore::default();
    let workers: Vec<Aggregator> = (0..3).map(|_| Aggregator::new(&specs, "p", 7)).collect();
    for w in &workers {
        w.tick(&specs, &store, 1_000);
    }
    let mut logged = Vec::new();
    for (k, w) in workers.iter().cycle().take(30).enumerate() {
        let now = 2_000 + k as u64 * 5_000;
        if w.fleet_warning_due(0, &store, now, 60_000).unwrap() {
            logged.push(now);
        }
    }
    assert_eq!(logged, [2_000, 62_000, 122_000]);
}
