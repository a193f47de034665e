//! Ramps and guards through the adapter: ticks, gauges, observation on the response path,
//! diversion on the request path, against the fake host, store and clock.

use super::*;
use crate::testing::{FakeClock, FakeStore};
use crate::time::parse_rfc3339;

/// One proxy worker: a filter plus the fake host objects around it.
struct Worker<'s> {
    filter: Filter,
    store: &'s FakeStore,
    clock: FakeClock,
    counters: FakeCounters,
    gauges: FakeGauges,
    log: FakeLog,
    rng: WyRand,
}

impl<'s> Worker<'s> {
    fn new(json: &str, store: &'s FakeStore, clock: FakeClock) -> Self {
        let w = Self {
            filter: Filter::for_plugin(crate::load(json.as_bytes()).unwrap(), "test"),
            store,
            clock,
            counters: FakeCounters::default(),
            gauges: FakeGauges::default(),
            log: FakeLog::default(),
            rng: WyRand::new(3),
        };
        w.filter.start(&w.clock, &w.counters, &w.gauges, &w.log);
        w
    }

    fn tick(&self) {
        self.filter.on_tick(
            self.store,
            &self.clock,
            &self.counters,
            &self.gauges,
            &self.log,
        );
    }

    /// One request: decided, answered with `status(subset)` (`None`: the stream ends without
    /// response headers), observed. Returns the subset and the host calls of the response.
    fn serve(
        &mut self,
        headers: &[(&str, &str)],
        status: impl Fn(&str) -> Option<u32>,
    ) -> (String, Vec<Call>) {
        let mut host = FakeHost::with_headers(headers);
        let verdict = self.filter.on_request(
            &mut host,
            &mut self.rng,
            &self.counters,
            &self.log,
            &self.clock,
        );
        let Verdict::Continue(mut served) = verdict else {
            panic!("stopped")
        };
        let subset = host
            .headers
            .iter()
            .find(|(n, _)| n == "x-upstream-cluster")
            .map(|(_, v)| v.clone())
            .unwrap();
        let mut response = FakeHost {
            status: status(&subset),
            ..FakeHost::default()
        };
        if response.status.is_some() {
            self.filter.on_response(
                &mut served,
                &mut response,
                &self.counters,
                &self.log,
                &self.clock,
            );
        }
        self.filter.on_stream_done(&mut served);
        (subset, response.calls)
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters
            .by_name(&self.filter)
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    fn gauge(&self, name: &str) -> u64 {
        let names = gauge_names(self.filter.router());
        let i = names.iter().position(|n| n == name).unwrap();
        self.gauges.0.borrow().get(i).copied().unwrap_or(0)
    }

    fn logs(&self) -> Vec<String> {
        self.log.0.borrow().clone()
    }
}

const START: &str = "2026-12-01T10:00:00Z";

fn ms(text: &str) -> i64 {
    parse_rfc3339(text).unwrap()
}

const RAMP: &str = r#"{
  "rules": [{"name": "canary", "route": {
    "split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}],
    "stickyBy": {"header": "x-user-id"},
    "ramp": {"subset": "v2", "toPercent": 50, "start": "2026-12-01T10:00:00Z", "durationSeconds": 7200}}}],
  "default": {"subset": "v1"},
  "guards": [{"subset": "v2", "maxErrorPercent": 20}]
}"#;

const GUARDED: &str = r#"{
  "rules": [{"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
             "route": {"subset": "v2"}}],
  "default": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}]},
  "guards": [{"subset": "v2", "maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 5,
              "cooldownSeconds": 5, "maxTrips": 2}]
}"#;

fn fails_on_v2(subset: &str) -> Option<u32> {
    Some(if subset == "v2" { 503 } else { 200 })
}

#[test]
fn counter_and_gauge_names_cover_ramps_and_guards() {
    let router = crate::load(RAMP.as_bytes()).unwrap();
    assert_eq!(
        counter_names(&router),
        [
            "subset_router.rule.canary.subset.v1",
            "subset_router.rule.canary.subset.v2",
            "subset_router.rule.default.subset.v1",
            "subset_router.spoofed_header_removed",
            "subset_router.sticky_key_missing",
            "subset_router.host_call_failed",
            "subset_router.guard.v2.tripped",
            "subset_router.guard.v2.diverted",
            "subset_router.guard.v2.undivertable",
            "subset_router.guard.v2.requests",
            "subset_router.guard.v2.errors",
            "subset_router.guard.v2.slow",
        ]
    );
    assert_eq!(
        gauge_names(&router),
        [
            "subset_router.rule.canary.ramp_ppm",
            "subset_router.guard.v2.open"
        ]
    );
}

#[test]
fn a_name_namespaces_every_stat_and_a_baseline_or_fleet_adds_their_counters() {
    let named = RAMP.replacen('{', r#"{"name": "checkout","#, 1).replace(
        r#""maxErrorPercent": 20}"#,
        r#""maxErrorPercent": 20, "baseline": "v1",
            "fleet": {"cluster": "prometheus", "selector": ""}}"#,
    );
    let router = crate::load(named.as_bytes()).unwrap();
    assert_eq!(
        counter_names(&router),
        [
            "subset_router.checkout.rule.canary.subset.v1",
            "subset_router.checkout.rule.canary.subset.v2",
            "subset_router.checkout.rule.default.subset.v1",
            "subset_router.checkout.spoofed_header_removed",
            "subset_router.checkout.sticky_key_missing",
            "subset_router.checkout.host_call_failed",
            "subset_router.checkout.guard.v2.tripped",
            "subset_router.checkout.guard.v2.diverted",
            "subset_router.checkout.guard.v2.undivertable",
            "subset_router.checkout.guard.v2.requests",
            "subset_router.checkout.guard.v2.errors",
            "subset_router.checkout.guard.v2.slow",
            "subset_router.checkout.guard.v2.baseline_requests",
            "subset_router.checkout.guard.v2.baseline_errors",
            "subset_router.checkout.guard.v2.baseline_slow",
            "subset_router.checkout.guard.v2.tripped_by_fleet",
            "subset_router.checkout.guard.v2.fleet_query_failed",
        ]
    );
    assert_eq!(
        gauge_names(&router),
        [
            "subset_router.checkout.rule.canary.ramp_ppm",
            "subset_router.checkout.guard.v2.open"
        ]
    );
}

#[test]
fn start_applies_the_ramp_and_sets_every_gauge_without_shared_state() {
    let store = FakeStore::default();
    let w = Worker::new(RAMP, &store, FakeClock::at(ms(START) + 3_600_000, 5_000));
    assert_eq!(w.gauge("subset_router.rule.canary.ramp_ppm"), 300_000);
    assert_eq!(w.gauges.0.borrow().len(), 2, "the guard gauge is set too");
    assert_eq!(w.gauge("subset_router.guard.v2.open"), 0);
    assert_eq!((store.gets.get(), store.sets.get()), (0, 0));
    assert_eq!(
        w.filter.live().ramp_share(0),
        crate::ramp::RampShare::Ppm(300_000)
    );
}

#[test]
fn a_ramp_share_is_a_function_of_the_whole_second_and_holds_when_the_clock_steps_back() {
    let store = FakeStore::default();
    // 7,200 s from 10% to 50%: 55.55… ppm more each second.
    let w = Worker::new(RAMP, &store, FakeClock::at(ms(START) + 100_000, 5_000));
    let at_100_s = w.filter.live().ramp_share(0);
    assert_eq!(at_100_s, crate::ramp::RampShare::Ppm(105_555));
    // Anywhere within that second, on the tick or on the request path, the share is the same.
    for _ in 0..3 {
        w.clock.advance_ms(300);
        w.tick();
        assert_eq!(w.filter.live().ramp_share(0), at_100_s);
    }
    let mut rng = WyRand::new(1);
    let mut host = FakeHost::with_headers(&[("x-user-id", "a")]);
    let _ = w
        .filter
        .on_request(&mut host, &mut rng, &w.counters, &w.log, &w.clock);
    assert_eq!(w.filter.live().ramp_share(0), at_100_s);
    // The next second begins: the request path alone moves the share on.
    w.clock.advance_ms(100);
    let _ = w
        .filter
        .on_request(&mut host, &mut rng, &w.counters, &w.log, &w.clock);
    assert_eq!(
        w.filter.live().ramp_share(0),
        crate::ramp::RampShare::Ppm(105_611)
    );
    w.clock
        .wall_ns
        .set(u64::try_from(ms(START) + 3_600_000).unwrap() * 1_000_000);
    w.tick();
    assert_eq!(w.gauge("subset_router.rule.canary.ramp_ppm"), 300_000);
    // NTP steps the wall clock back before the start: the share is held.
    w.clock
        .wall_ns
        .set(u64::try_from(ms(START) - 60_000).unwrap() * 1_000_000);
    w.tick();
    assert_eq!(w.gauge("subset_router.rule.canary.ramp_ppm"), 300_000);
}

#[test]
fn a_failing_canary_is_cut_off_diverted_and_let_back_after_the_cooldown() {
    let store = FakeStore::default();
    let mut w = Worker::new(GUARDED, &store, FakeClock::at(ms(START), 10_000));
    // Closed: about half the split goes to v2, whose answers are counted.
    let mut to_v2 = 0;
    for _ in 0..60 {
        let (subset, calls) = w.serve(&[], fails_on_v2);
        to_v2 += usize::from(subset == "v2");
        // Only the guarded subset's answers are read (v1 is nobody's baseline here).
        assert_eq!(calls.contains(&Call::ReadStatus), subset == "v2");
    }
    assert!(to_v2 > 15, "{to_v2}");
    w.clock.advance_ms(1000);
    w.tick();
    assert_eq!(w.counter("subset_router.guard.v2.tripped"), 1);
    assert_eq!(w.gauge("subset_router.guard.v2.open"), 1);
    let logs = w.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0].starts_with(&format!(
            "subset-router: guard v2 tripped (trip 1 of 2): {to_v2}/{to_v2} requests failed in the last 5s (100.0% >= 20%)"
        )),
        "{logs:?}"
    );
    assert!(
        logs[0].ends_with("v2 is taken out of every split for 5s"),
        "{logs:?}"
    );

    // Open: the split sends nothing to v2; each request it would have sent there is diverted.
    for _ in 0..100 {
        let (subset, _) = w.serve(&[], fails_on_v2);
        assert_eq!(subset, "v1");
    }
    let diverted = w.counter("subset_router.guard.v2.diverted");
    assert!((30..=70).contains(&diverted), "{diverted}");
    assert_eq!(
        w.counter("subset_router.rule.default.subset.v1"),
        (60 - to_v2 + 100) as u64
    );
    // A fixed route still reaches v2, and is neither observed nor diverted.
    for _ in 0..10 {
        let (subset, calls) = w.serve(&[("user-agent", "debug")], fails_on_v2);
        assert_eq!(subset, "v2");
        assert!(!calls.contains(&Call::ReadStatus));
    }
    assert_eq!(w.counter("subset_router.guard.v2.diverted"), diverted);
    assert_eq!(
        w.filter.aggregator().pending(0),
        crate::guard::Counts::default()
    );

    // After the cooldown (5 s for the first trip) the guard closes and v2 is back.
    w.clock.advance_ms(4000);
    w.tick();
    assert_eq!(w.gauge("subset_router.guard.v2.open"), 1);
    w.clock.advance_ms(1000);
    w.tick();
    assert_eq!(w.gauge("subset_router.guard.v2.open"), 0);
    assert_eq!(
        w.logs().last().map(String::as_str),
        Some("info: subset-router: guard v2 closed after trip 1 of 2: v2 receives its configured weight again")
    );
    let back = (0..40)
        .filter(|_| w.serve(&[], |_| Some(200)).0 == "v2")
        .count();
    assert!(back > 5, "{back}");
}

#[test]
fn sticky_users_on_a_tripped_canary_move_to_one_place_and_nobody_else_moves() {
    let json = r#"{"default": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 30},
                    {"subset": "v3", "weight": 20}], "stickyBy": {"header": "x-user-id"}},
                   "guards": [{"subset": "v3", "maxErrorPercent": 50}]}"#;
    let store = FakeStore::default();
    let mut w = Worker::new(json, &store, FakeClock::at(ms(START), 10_000));
    let users: Vec<String> = (0..500).map(|k| format!("user-{k}")).collect();
    let serve = |w: &mut Worker<'_>, user: &str| w.serve(&[("x-user-id", user)], |_| Some(200)).0;
    let before: Vec<String> = users.iter().map(|u| serve(&mut w, u)).collect();
    w.filter.live().set_open(0, true);
    for _ in 0..2 {
        for (user, was) in users.iter().zip(&before) {
            let now = serve(&mut w, user);
            if was == "v3" {
                assert_ne!(now, "v3");
            } else {
                assert_eq!(&now, was, "{user} moved although it was not on v3");
            }
        }
    }
    // Deterministic: the same user lands on the same subset every time.
    let again: Vec<String> = users.iter().map(|u| serve(&mut w, u)).collect();
    let again2: Vec<String> = users.iter().map(|u| serve(&mut w, u)).collect();
    assert_eq!(again, again2);
    let on_v3 = before.iter().filter(|s| *s == "v3").count() as u64;
    assert_eq!(w.counter("subset_router.guard.v3.diverted"), 4 * on_v3);
}

#[test]
fn a_split_with_nothing_else_sends_to_the_open_subset_and_counts_undivertable() {
    let json = r#"{"default": {"split": [{"subset": "v1", "weight": 0}, {"subset": "v2", "weight": 1}]},
                   "guards": [{"subset": "v2", "maxErrorPercent": 50}]}"#;
    let store = FakeStore::default();
    let mut w = Worker::new(json, &store, FakeClock::at(ms(START), 10_000));
    w.filter.live().set_open(0, true);
    for _ in 0..5 {
        assert_eq!(w.serve(&[], |_| Some(200)).0, "v2");
    }
    assert_eq!(w.counter("subset_router.guard.v2.undivertable"), 5);
    assert_eq!(w.counter("subset_router.guard.v2.diverted"), 0);
}

#[test]
fn a_ramp_at_100_percent_still_diverts_to_the_configured_others() {
    let json = r#"{"default": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}],
                   "ramp": {"subset": "v2", "toPercent": 100, "start": "2026-12-01T10:00:00Z", "durationSeconds": 60}},
                   "guards": [{"subset": "v2", "maxErrorPercent": 50}]}"#;
    let store = FakeStore::default();
    let mut w = Worker::new(json, &store, FakeClock::at(ms(START) + 120_000, 10_000));
    assert_eq!(w.serve(&[], |_| Some(200)).0, "v2");
    w.filter.live().set_open(0, true);
    assert_eq!(w.serve(&[], |_| Some(200)).0, "v1");
    assert_eq!(w.counter("subset_router.guard.v2.diverted"), 1);
}

#[test]
fn a_stream_without_response_headers_is_an_error_counted_once() {
    let json = r#"{"default": {"split": [{"subset": "v2", "weight": 1}]},
                   "guards": [{"subset": "v2", "maxErrorPercent": 50}]}"#;
    let store = FakeStore::default();
    let mut w = Worker::new(json, &store, FakeClock::at(ms(START), 10_000));
    w.serve(&[], |_| None);
    w.serve(&[], |_| Some(200));
    w.serve(&[], |_| Some(502));
    let pending = w.filter.aggregator().pending(0);
    assert_eq!((pending.requests, pending.errors), (3, 2));
    // A status that cannot be read leaves the request uncounted (and the failure counted).
    let mut host = FakeHost::default();
    let Verdict::Continue(mut served) =
        w.filter
            .on_request(&mut host, &mut w.rng, &w.counters, &w.log, &w.clock)
    else {
        panic!()
    };
    let mut response = FakeHost::default().failing(&[HostCall::ReadResponseStatus]);
    w.filter
        .on_response(&mut served, &mut response, &w.counters, &w.log, &w.clock);
    w.filter.on_stream_done(&mut served);
    assert_eq!(w.filter.aggregator().pending(0).requests, 3);
    assert_eq!(w.counter("subset_router.host_call_failed"), 1);
}

#[test]
fn latency_runs_from_request_headers_to_response_headers() {
    let json = r#"{"default": {"split": [{"subset": "v1", "weight": 1}, {"subset": "v2", "weight": 1}],
                   "stickyBy": {"header": "x-user-id"}},
                   "guards": [{"subset": "v2", "maxErrorPercent": 50, "slowMs": 100, "maxSlowPercent": 50,
                               "baseline": "v1"}]}"#;
    let store = FakeStore::default();
    let w = Worker::new(json, &store, FakeClock::at(ms(START), 10_000));
    let user_on = |subset: &str| {
        (0..100)
            .map(|k| format!("u{k}"))
            .find(|u| {
                let req = crate::request::OwnedRequest::new().header("x-user-id", u);
                w.filter
                    .router()
                    .decide(&req, &mut WyRand::new(1))
                    .unwrap()
                    .target
                    .subset
                    == subset
            })
            .unwrap()
    };
    let (on_v1, on_v2) = (user_on("v1"), user_on("v2"));
    let mut rng = WyRand::new(1);
    for (user, delay_ms, status) in [(&on_v2, 150, 200), (&on_v2, 100, 200), (&on_v1, 500, 503)] {
        let mut host = FakeHost::with_headers(&[("x-user-id", user)]);
        let Verdict::Continue(mut served) =
            w.filter
                .on_request(&mut host, &mut rng, &w.counters, &w.log, &w.clock)
        else {
            panic!()
        };
        w.clock.advance_ms(delay_ms);
        let mut response = FakeHost {
            status: Some(status),
            ..FakeHost::default()
        };
        w.filter
            .on_response(&mut served, &mut response, &w.counters, &w.log, &w.clock);
    }
    let pending = w.filter.aggregator().pending(0);
    // v2: two requests, the one above 100 ms is slow; v1 (the baseline): one slow error.
    assert_eq!(
        pending,
        crate::guard::Counts {
            requests: 2,
            errors: 0,
            slow: 1,
            baseline_requests: 1,
            baseline_errors: 1,
            baseline_slow: 1,
        }
    );
}

#[test]
fn a_new_configuration_resets_a_latched_guard() {
    let store = FakeStore::default();
    let mut a = Worker::new(GUARDED, &store, FakeClock::at(ms(START), 10_000));
    for trip in 1..=2 {
        for _ in 0..60 {
            a.serve(&[], fails_on_v2);
        }
        a.clock.advance_ms(1000);
        a.tick();
        assert_eq!(a.counter("subset_router.guard.v2.tripped"), trip);
        a.clock.advance_ms(10_000);
        a.tick();
    }
    assert!(a.logs().iter().any(|l| l.contains("latched")));
    assert_eq!(a.gauge("subset_router.guard.v2.open"), 1);
    // The same guard in a new configuration (another weight): closed again.
    let b_json = GUARDED.replace(
        r#""weight": 50}, {"subset": "v2""#,
        r#""weight": 60}, {"subset": "v2""#,
    );
    assert_ne!(b_json, GUARDED);
    let mut b = Worker::new(&b_json, &store, FakeClock::at(ms(START), 40_000));
    b.tick();
    assert_eq!(b.gauge("subset_router.guard.v2.open"), 0);
    assert!((0..40).any(|_| b.serve(&[], |_| Some(200)).0 == "v2"));
}

#[test]
fn two_workers_trip_once_between_them() {
    let store = FakeStore::default();
    let mut a = Worker::new(GUARDED, &store, FakeClock::at(ms(START), 10_000));
    let mut b = Worker::new(GUARDED, &store, FakeClock::at(ms(START), 10_000));
    // 12 failing v2 requests each: 24 together, over minRequests only combined.
    for w in [&mut a, &mut b] {
        let mut on_v2 = 0;
        while on_v2 < 12 {
            on_v2 += usize::from(w.serve(&[], fails_on_v2).0 == "v2");
        }
        w.clock.advance_ms(1000);
    }
    a.tick();
    assert_eq!(a.gauge("subset_router.guard.v2.open"), 0);
    b.tick();
    a.tick();
    let total =
        a.counter("subset_router.guard.v2.tripped") + b.counter("subset_router.guard.v2.tripped");
    assert_eq!(total, 1);
    assert_eq!(a.gauge("subset_router.guard.v2.open"), 1);
    assert_eq!(b.gauge("subset_router.guard.v2.open"), 1);
    assert_eq!(a.logs().len() + b.logs().len(), 1);
}
