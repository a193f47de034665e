//! The adapter end to end through the exported hooks, against the fake Envoy of
//! `ffi::fake`: configuration load and counters, and the request/response paths.

use std::ffi::c_void;
use std::ptr;

use crate::ffi::fake::{envoy_ptr, inspect, setup, FakeEnvoy};
use crate::ffi::{
    envoy_dynamic_module_on_http_filter_config_destroy as config_destroy,
    envoy_dynamic_module_on_http_filter_config_new as config_new,
    envoy_dynamic_module_on_http_filter_destroy as filter_destroy,
    envoy_dynamic_module_on_http_filter_new as filter_new,
    envoy_dynamic_module_on_http_filter_request_headers as request_headers,
    envoy_dynamic_module_on_http_filter_response_headers as response_headers, EnvoyBuffer,
};

const CONFIG: &str = r#"{
  "responseHeader": "x-routed-subset",
  "rules": [
    {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
     "route": {"subset": "v2"}},
    {"name": "office", "match": {"sourceCidrs": ["10.0.0.0/8"]}, "route": {"subset": "v3"}},
    {"name": "canary", "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}}
  ],
  "default": {"subset": "v1"}
}"#;

fn buffer(bytes: &[u8]) -> EnvoyBuffer {
    EnvoyBuffer {
        ptr: bytes.as_ptr().cast(),
        length: bytes.len(),
    }
}

fn load(name: &str, json: &str) -> *const c_void {
    config_new(
        envoy_ptr(),
        buffer(name.as_bytes()),
        buffer(json.as_bytes()),
    )
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// Runs one request (and its response) through a fresh stream; returns the request status.
fn run(config: *const c_void, request: &[(&str, &str)], source: Option<&str>) -> u32 {
    FAKE_RESET_STREAM(request, source);
    let stream = filter_new(config, envoy_ptr());
    assert!(!stream.is_null());
    let status = request_headers(envoy_ptr(), stream, true);
    response_headers(envoy_ptr(), stream, false);
    filter_destroy(stream);
    status
}

#[allow(non_snake_case)]
fn FAKE_RESET_STREAM(request: &[(&str, &str)], source: Option<&str>) {
    crate::ffi::fake::FAKE.with(|fake| {
        let mut fake = fake.borrow_mut();
        fake.request = headers(request);
        fake.response = headers(&[(":status", "200")]);
        fake.source = source.map(|s| s.as_bytes().to_vec());
        fake.route_cache_clears = 0;
        fake.sent = None;
    });
}

#[test]
fn accepted_config_defines_every_counter_at_zero() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    assert!(!config.is_null());
    let router = subset_router_core::load(CONFIG.as_bytes()).unwrap();
    let expected = subset_router_core::adapter::counter_names(&router);
    inspect(|fake| {
        let names: Vec<_> = fake.counters.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, expected);
        assert!(fake.counters.iter().all(|(_, v)| *v == 0));
        assert!(names.contains(&"subset_router.spoofed_header_removed".to_owned()));
        assert!(fake
            .logs
            .iter()
            .any(|(l, m)| *l == 2 && m.contains("configuration accepted")));
    });
    config_destroy(config);
}

#[test]
fn invalid_config_is_rejected_with_path_reason_lines() {
    setup(|_| {});
    let json = r#"{"rules": [{"name": "a", "route": {"split": [{"subset": "v1", "weight": 1000001}]}}], "default": {"subset": "v1"}}"#;
    assert!(load("subset_router", json).is_null());
    inspect(|fake| {
        let errors: Vec<_> = fake
            .logs
            .iter()
            .filter(|(level, _)| *level == 4)
            .map(|(_, m)| m.as_str())
            .collect();
        assert!(
            errors
                .iter()
                .any(|m| m.starts_with("subset-router: invalid configuration: ")
                    && m.contains("weight: 1000001 exceeds 1000000")),
            "{errors:?}"
        );
        assert!(errors
            .iter()
            .any(|m| m.starts_with("subset-router: configuration rejected")));
        assert!(
            fake.counters.is_empty(),
            "no counter for a rejected configuration"
        );
    });
    // Unknown fields, empty (no filter_config) and non-JSON are rejected too.
    setup(|_| {});
    assert!(load(
        "subset_router",
        r#"{"default": {"subset": "v1"}, "bogus": 1}"#
    )
    .is_null());
    inspect(|fake| {
        assert!(fake
            .logs
            .iter()
            .any(|(_, m)| m
                .starts_with("subset-router: invalid configuration: bogus: unknown field")));
    });
    assert!(load("subset_router", "").is_null());
    assert!(load("subset_router", "not json").is_null());
}

#[test]
fn other_filter_names_and_frozen_stats_are_rejected() {
    setup(|_| {});
    assert!(load("something_else", CONFIG).is_null());
    inspect(|fake| {
        assert!(fake
            .logs
            .iter()
            .any(|(l, m)| *l == 4 && m.contains("unknown filter_name")))
    });
    setup(|fake| fake.frozen = true);
    assert!(load("subset_router", CONFIG).is_null());
    inspect(|fake| {
        assert!(fake
            .logs
            .iter()
            .any(|(l, m)| *l == 4 && m.contains("could not define counter")))
    });
}

#[test]
fn debug_rule_strips_forged_header_writes_decision_and_names_subset() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    let status = run(
        config,
        &[
            (":method", "GET"),
            (":path", "/"),
            ("user-agent", "debug"),
            ("x-upstream-cluster", "internal-admin"),
            ("X-Upstream-Cluster", "v1"),
        ],
        Some("127.0.0.1:4242"),
    );
    assert_eq!(status, 0, "Continue");
    inspect(|fake| {
        assert_eq!(
            FakeEnvoy::header(&fake.request, "x-upstream-cluster"),
            ["v2"]
        );
        assert_eq!(FakeEnvoy::header(&fake.response, "x-routed-subset"), ["v2"]);
        assert_eq!(fake.route_cache_clears, 1);
        assert_eq!(
            fake.counter("subset_router.spoofed_header_removed"),
            Some(1)
        );
        assert_eq!(fake.counter("subset_router.host_call_failed"), Some(0));
        assert_eq!(
            fake.counters.iter().map(|(_, v)| v).sum::<u64>(),
            2,
            "{:?}",
            fake.counters
        );
        assert!(fake.sent.is_none());
    });
    config_destroy(config);
}

#[test]
fn source_cidr_rule_reads_source_address() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    run(config, &[(":path", "/")], Some("10.1.2.3:5678"));
    inspect(|fake| {
        assert_eq!(
            FakeEnvoy::header(&fake.request, "x-upstream-cluster"),
            ["v3"]
        );
        assert_eq!(
            fake.counter("subset_router.spoofed_header_removed"),
            Some(0)
        );
    });
    // No source address from Envoy: counted as a failed host call, the request goes on.
    run(config, &[(":path", "/")], None);
    inspect(|fake| {
        assert_eq!(fake.counter("subset_router.host_call_failed"), Some(1));
        assert_eq!(
            FakeEnvoy::header(&fake.request, "x-upstream-cluster").len(),
            1
        );
    });
    config_destroy(config);
}

#[test]
fn split_follows_weights() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    let mut v2 = 0;
    for _ in 0..2000 {
        run(config, &[(":path", "/")], Some("192.0.2.1:1"));
        if inspect(|fake| FakeEnvoy::header(&fake.request, "x-upstream-cluster")) == ["v2"] {
            v2 += 1;
        }
    }
    assert!((120..=290).contains(&v2), "v2 got {v2} of 2000 at 10%");
    config_destroy(config);
}

#[test]
fn forged_header_that_cannot_be_removed_is_answered_503() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    crate::ffi::fake::FAKE.with(|fake| fake.borrow_mut().refuse_set = true);
    let status = run(
        config,
        &[(":path", "/"), ("x-upstream-cluster", "internal-admin")],
        Some("127.0.0.1:1"),
    );
    assert_eq!(status, 1, "StopIteration");
    inspect(|fake| {
        let (code, body, details) = fake.sent.clone().unwrap();
        assert_eq!(code, 503);
        assert!(String::from_utf8_lossy(&body).contains("forged routing header"));
        assert_eq!(details, b"subset_router_forged_routing_header");
    });
    config_destroy(config);
}

#[test]
fn null_pointers_are_harmless() {
    assert!(filter_new(ptr::null(), envoy_ptr()).is_null());
    assert_eq!(request_headers(envoy_ptr(), ptr::null(), true), 0);
    assert_eq!(response_headers(envoy_ptr(), ptr::null(), true), 0);
    filter_destroy(ptr::null());
    config_destroy(ptr::null());
}

#[test]
fn a_stream_keeps_its_config_alive_after_config_destroy() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    FAKE_RESET_STREAM(
        &[(":path", "/"), ("user-agent", "debug")],
        Some("127.0.0.1:1"),
    );
    let stream = filter_new(config, envoy_ptr());
    config_destroy(config);
    assert_eq!(request_headers(envoy_ptr(), stream, true), 0);
    filter_destroy(stream);
    inspect(|fake| {
        assert_eq!(
            FakeEnvoy::header(&fake.request, "x-upstream-cluster"),
            ["v2"]
        )
    });
}

// ---------------------------------------------------------------------------------------------
// Ramps and guards: gauges, ticks (the main-thread ticker and the lazy fallback), observation of
// `:status` and of streams that end without response headers.
// ---------------------------------------------------------------------------------------------

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::ffi::{
    config_of, envoy_dynamic_module_on_http_filter_config_scheduled as config_scheduled,
    envoy_dynamic_module_on_http_filter_stream_complete as stream_complete, TICK_EVENT,
};
use crate::process::SKEW_MS;
use subset_router_core::time::format_rfc3339;

/// A 60-second ramp of v2 from 10% to 50% that started 30 s ago (now at 30%).
fn ramp_config() -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    format!(
        r#"{{"rules": [{{"name": "canary", "route": {{
             "split": [{{"subset": "v1", "weight": 90}}, {{"subset": "v2", "weight": 10}}],
             "ramp": {{"subset": "v2", "toPercent": 50, "start": "{}", "durationSeconds": 60}}}}}}],
           "default": {{"subset": "v1"}}}}"#,
        format_rfc3339(now_ms - 30_000)
    )
}

const GUARDED: &str = r#"{
  "responseHeader": "x-routed-subset",
  "rules": [
    {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
     "route": {"subset": "v2"}},
    {"name": "canary", "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}]}}
  ],
  "default": {"subset": "v1"},
  "guards": [{"subset": "v2", "maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 5,
              "cooldownSeconds": 5}]
}"#;

/// How a test's upstream answers: `Some(status)`, or `None` for a stream that ends without
/// response headers.
type Upstream = fn(&str) -> Option<u32>;

fn v2_fails(subset: &str) -> Option<u32> {
    Some(if subset == "v2" { 503 } else { 200 })
}

fn all_ok(_: &str) -> Option<u32> {
    Some(200)
}

/// One stream through every hook Envoy calls: request headers, response headers (if the
/// upstream answers), stream complete, destroy. Returns the decided subset.
fn serve(config: *const c_void, request: &[(&str, &str)], upstream: Upstream) -> String {
    FAKE_RESET_STREAM(request, Some("192.0.2.1:1"));
    let stream = filter_new(config, envoy_ptr());
    assert_eq!(request_headers(envoy_ptr(), stream, true), 0);
    let subset = inspect(|f| FakeEnvoy::header(&f.request, "x-upstream-cluster"))
        .pop()
        .unwrap();
    if let Some(status) = upstream(&subset) {
        crate::ffi::fake::FAKE
            .with(|f| f.borrow_mut().response = headers(&[(":status", &status.to_string())]));
        response_headers(envoy_ptr(), stream, false);
    }
    stream_complete(envoy_ptr(), stream);
    filter_destroy(stream);
    subset
}

fn serve_many(config: *const c_void, n: usize, upstream: Upstream) -> (usize, usize) {
    let mut v2 = 0;
    for _ in 0..n {
        if serve(config, &[(":path", "/")], upstream) == "v2" {
            v2 += 1;
        }
    }
    (n - v2, v2)
}

fn tick(config: *const c_void) {
    config_scheduled(envoy_ptr(), config, TICK_EVENT);
}

fn skew(ms: u64) {
    SKEW_MS.with(|s| s.set(s.get() + ms));
}

fn counter(name: &str) -> u64 {
    inspect(|f| f.counter(name)).unwrap_or_else(|| panic!("no counter {name}"))
}

fn gauge(name: &str) -> u64 {
    inspect(|f| f.gauge(name)).unwrap_or_else(|| panic!("no gauge {name}"))
}

fn logs_with(level: u32, text: &str) -> Vec<String> {
    inspect(|f| {
        f.logs
            .iter()
            .filter(|(l, m)| *l == level && m.contains(text))
            .map(|(_, m)| m.clone())
            .collect()
    })
}

#[test]
fn gauges_are_defined_at_load_and_the_ramp_starts_at_its_current_share() {
    setup(|_| {});
    let json = ramp_config();
    let config = load("subset_router", &json);
    assert!(!config.is_null());
    let router = subset_router_core::load(json.as_bytes()).unwrap();
    inspect(|fake| {
        let names: Vec<_> = fake.gauges.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, subset_router_core::adapter::gauge_names(&router));
        assert_eq!(names, ["subset_router.rule.canary.ramp_ppm"]);
    });
    // 30 s into 60 s from 10% to 50%: 30%, set by the config-level setter (no stream yet). The
    // share is that of the current whole second, up to a second (0.67%) behind the clock.
    let ppm = gauge("subset_router.rule.canary.ramp_ppm");
    assert!((293_000..=301_000).contains(&ppm), "ramp_ppm {ppm}");
    assert!(inspect(|f| f.config_metric_calls) >= 1);
    assert_eq!(
        logs_with(
            2,
            "1 gauge(s), 1 ramp(s), 0 guard(s); ticks once a second on the main thread"
        )
        .len(),
        1
    );
    config_destroy(config);
}

#[test]
fn guard_gauges_and_counters_exist_at_zero_before_the_first_request() {
    setup(|_| {});
    let config = load("subset_router", GUARDED);
    inspect(|fake| {
        assert_eq!(fake.gauges, [("subset_router.guard.v2.open".to_owned(), 0)]);
        for what in ["tripped", "diverted", "undivertable"] {
            assert_eq!(
                fake.counter(&format!("subset_router.guard.v2.{what}")),
                Some(0)
            );
        }
    });
    config_destroy(config);
}

#[test]
fn frozen_gauges_reject_the_configuration() {
    setup(|fake| fake.frozen = true);
    assert!(load("subset_router", GUARDED).is_null());
    assert!(!logs_with(4, "could not define counter").is_empty());
}

#[test]
fn the_ticker_commits_every_period_and_stops_with_its_configuration() {
    setup(|_| {});
    let config = load("subset_router", GUARDED);
    assert!(config_of(config).has_ticker());
    let scheduler = inspect(|f| f.schedulers.clone());
    assert_eq!(scheduler.len(), 1, "one scheduler per configuration");
    let scheduler = &scheduler[0];
    let deadline = Instant::now() + Duration::from_secs(5);
    while scheduler.commits.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the ticker does not commit");
        std::thread::sleep(crate::ticker::PERIOD);
    }
    // Destroy joins the thread, which frees the scheduler after its last commit.
    config_destroy(config);
    assert!(scheduler.deleted.load(Ordering::SeqCst));
    let after = scheduler.commits.load(Ordering::SeqCst);
    std::thread::sleep(crate::ticker::PERIOD * 3);
    assert_eq!(scheduler.commits.load(Ordering::SeqCst), after);
}

#[test]
fn validate_mode_starts_no_ticker() {
    setup(|fake| fake.validation_mode = true);
    let config = load("subset_router", GUARDED);
    assert!(!config.is_null());
    assert!(!config_of(config).has_ticker());
    assert!(inspect(|f| f.schedulers.is_empty()));
    assert_eq!(logs_with(2, "ticks from the request path").len(), 1);
    config_destroy(config);
}

#[test]
fn main_thread_ticks_move_the_ramp_and_its_share() {
    setup(|_| {});
    let config = load("subset_router", &ramp_config());
    // +20 s: 30 + 40 * 20/60 = 43.3% (of the whole second: up to 0.67% less).
    skew(20_000);
    tick(config);
    let ppm = gauge("subset_router.rule.canary.ramp_ppm");
    assert!((426_000..=434_000).contains(&ppm), "ramp_ppm {ppm}");
    let (_, v2) = serve_many(config, 2000, all_ok);
    assert!((780..=960).contains(&v2), "v2 got {v2} of 2000 at 43%");
    assert_eq!(
        counter("subset_router.rule.canary.subset.v1")
            + counter("subset_router.rule.canary.subset.v2"),
        2000
    );
    // Past the end: exactly toPercent.
    skew(60_000);
    tick(config);
    assert_eq!(gauge("subset_router.rule.canary.ramp_ppm"), 500_000);
    config_destroy(config);
}

#[test]
fn guard_trips_on_5xx_diverts_split_requests_only_and_closes_after_the_cooldown() {
    setup(|_| {});
    let config = load("subset_router", GUARDED);
    let (_, v2) = serve_many(config, 100, v2_fails);
    assert!(v2 > 20, "v2 got {v2}");
    // Observed in memory on the response path; merged by the tick.
    let pending = config_of(config).filter().aggregator().pending(0);
    assert_eq!((pending.requests, pending.errors), (v2 as u64, v2 as u64));
    assert_eq!(counter("subset_router.guard.v2.tripped"), 0);
    tick(config);
    assert_eq!(counter("subset_router.guard.v2.tripped"), 1);
    assert_eq!(gauge("subset_router.guard.v2.open"), 1);
    let trips = logs_with(3, "v2");
    assert_eq!(trips.len(), 1, "one warning per trip: {trips:?}");

    // Open: no split request reaches v2, each one that would have is diverted.
    let (v1, v2) = serve_many(config, 200, v2_fails);
    assert_eq!((v1, v2), (200, 0));
    let diverted = counter("subset_router.guard.v2.diverted");
    assert!((60..=140).contains(&diverted), "diverted {diverted}");
    // The fixed debug route still reaches v2 (and is not observed).
    assert_eq!(
        serve(config, &[(":path", "/"), ("user-agent", "debug")], v2_fails),
        "v2"
    );
    assert_eq!(
        config_of(config).filter().aggregator().pending(0).requests,
        0
    );

    // A second tick on another "worker" changes nothing: a trip is counted once.
    tick(config);
    assert_eq!(counter("subset_router.guard.v2.tripped"), 1);

    // After the 5 s cooldown the guard closes (info log) and v2 gets requests again.
    skew(5_500);
    tick(config);
    assert_eq!(gauge("subset_router.guard.v2.open"), 0);
    assert_eq!(
        logs_with(2, "v2")
            .iter()
            .filter(|m| m.contains("clos"))
            .count(),
        1
    );
    let (_, v2) = serve_many(config, 100, all_ok);
    assert!(v2 > 20, "v2 got {v2} after the close");
    config_destroy(config);
}

#[test]
fn a_stream_that_ends_without_response_headers_counts_as_an_error_once() {
    setup(|_| {});
    let config = load("subset_router", GUARDED);
    // No response headers: stream_complete counts the error; destroy does not count it again.
    let (_, v2) = serve_many(config, 60, |_| None);
    let pending = config_of(config).filter().aggregator().pending(0);
    assert_eq!((pending.requests, pending.errors), (v2 as u64, v2 as u64));
    // A stream destroyed without stream_complete (defensive path) is counted by destroy.
    let mut counted = 0;
    while counted == 0 {
        FAKE_RESET_STREAM(&[(":path", "/")], Some("192.0.2.1:1"));
        let stream = filter_new(config, envoy_ptr());
        request_headers(envoy_ptr(), stream, true);
        let subset = inspect(|f| FakeEnvoy::header(&f.request, "x-upstream-cluster"));
        filter_destroy(stream);
        if subset == ["v2"] {
            counted = 1;
        }
    }
    let pending = config_of(config).filter().aggregator().pending(0);
    assert_eq!(pending.errors, v2 as u64 + 1);
    tick(config);
    assert_eq!(counter("subset_router.guard.v2.tripped"), 1);
    config_destroy(config);
}

#[test]
fn a_5xx_only_counts_for_guarded_split_requests_and_2xx_never_trips() {
    setup(|_| {});
    let config = load("subset_router", GUARDED);
    let (_, v2) = serve_many(config, 100, all_ok);
    let pending = config_of(config).filter().aggregator().pending(0);
    assert_eq!((pending.requests, pending.errors), (v2 as u64, 0));
    tick(config);
    assert_eq!(counter("subset_router.guard.v2.tripped"), 0);
    assert_eq!(gauge("subset_router.guard.v2.open"), 0);
    config_destroy(config);
}

#[test]
fn a_response_without_a_readable_status_is_not_observed() {
    // Envoy answers a missing `:status` and a missing header map alike: no status, the outcome
    // is unknown, so the request is not counted (as in the Wasm build), and nothing failed.
    setup(|fake| fake.refuse_get_header = true);
    let config = load("subset_router", GUARDED);
    serve_many(config, 40, v2_fails);
    assert_eq!(
        config_of(config).filter().aggregator().pending(0).requests,
        0
    );
    assert_eq!(counter("subset_router.host_call_failed"), 0);
    config_destroy(config);

    // An unparsable `:status` likewise: unknown outcome, not counted.
    setup(|_| {});
    let config = load("subset_router", GUARDED);
    let mut v2 = 0;
    while v2 < 5 {
        FAKE_RESET_STREAM(&[(":path", "/")], Some("192.0.2.1:1"));
        let stream = filter_new(config, envoy_ptr());
        request_headers(envoy_ptr(), stream, true);
        if inspect(|f| FakeEnvoy::header(&f.request, "x-upstream-cluster")) == ["v2"] {
            v2 += 1;
        }
        crate::ffi::fake::FAKE.with(|f| f.borrow_mut().response = headers(&[(":status", "5xx")]));
        response_headers(envoy_ptr(), stream, false);
        stream_complete(envoy_ptr(), stream);
        filter_destroy(stream);
    }
    assert_eq!(
        config_of(config).filter().aggregator().pending(0).requests,
        0
    );
    config_destroy(config);
}

#[test]
fn without_a_scheduler_the_request_path_ticks_at_most_once_a_second() {
    setup(|fake| fake.no_scheduler = true);
    let config = load("subset_router", GUARDED);
    assert!(!config_of(config).has_ticker());
    assert_eq!(
        logs_with(3, "Envoy gave no configuration scheduler").len(),
        1
    );
    let started = Instant::now();
    serve_many(config, 100, v2_fails);
    let ticks = inspect(|f| f.stream_gauge_sets);
    let elapsed_s = started.elapsed().as_secs() as u32;
    assert!(
        ticks <= elapsed_s + 1,
        "{ticks} lazy ticks in {elapsed_s} s"
    );
    assert_eq!(
        counter("subset_router.guard.v2.tripped"),
        0,
        "not merged yet"
    );
    // A second later the next request ticks first: the guard trips, and that very request is
    // already diverted.
    skew(1_100);
    assert_eq!(serve(config, &[(":path", "/")], v2_fails), "v1");
    assert_eq!(counter("subset_router.guard.v2.tripped"), 1);
    assert_eq!(gauge("subset_router.guard.v2.open"), 1);
    // The cooldown ends in the record at the first request after it.
    skew(5_500);
    serve(config, &[(":path", "/")], all_ok);
    assert_eq!(gauge("subset_router.guard.v2.open"), 0);
    config_destroy(config);
}

#[test]
fn with_a_ticker_the_request_path_ticks_only_when_the_ticker_stalls() {
    setup(|_| {});
    let config = load("subset_router", GUARDED);
    serve_many(config, 50, v2_fails);
    skew(1_500);
    serve_many(config, 5, v2_fails);
    assert_eq!(inspect(|f| f.stream_gauge_sets), 0, "the ticker's job");
    skew(super::LAZY_STALLED_MS);
    serve(config, &[(":path", "/")], v2_fails);
    assert_eq!(
        inspect(|f| f.stream_gauge_sets),
        1,
        "stalled ticker: one lazy tick"
    );
    assert_eq!(counter("subset_router.guard.v2.tripped"), 1);
    config_destroy(config);
}

#[test]
fn a_new_configuration_resets_the_guard() {
    setup(|_| {});
    let first = load("subset_router", GUARDED);
    serve_many(first, 100, v2_fails);
    tick(first);
    assert_eq!(gauge("subset_router.guard.v2.open"), 1);
    config_destroy(first);
    // A changed configuration (a new threshold) replaces it: a fresh guard, in a fresh store.
    let changed = GUARDED.replace("\"maxErrorPercent\": 20", "\"maxErrorPercent\": 30");
    let second = load("subset_router", &changed);
    tick(second);
    let open = inspect(|f| f.gauges.last().map(|(_, v)| *v));
    assert_eq!(open, Some(0));
    let (_, v2) = serve_many(second, 100, all_ok);
    assert!(v2 > 20, "v2 reachable again: {v2}");
    config_destroy(second);
}

// ---------------------------------------------------------------------------------------------
// Isolation: each configuration owns its guard state.
// ---------------------------------------------------------------------------------------------

use subset_router_core::adapter::{counter_names, gauge_names};
use subset_router_core::guard::Record;
use subset_router_core::host::SharedStore;

/// Counter `name` of one configuration: configurations define the same names, each with ids of
/// its own.
fn counter_of(config: *const c_void, name: &str) -> u64 {
    let config = config_of(config);
    let index = counter_names(config.filter().router())
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no counter {name}"));
    let id = config.counter_ids[index];
    inspect(|f| f.counters[id].1)
}

fn gauge_of(config: *const c_void, name: &str) -> u64 {
    let config = config_of(config);
    let index = gauge_names(config.filter().router())
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no gauge {name}"));
    let id = config.gauge_ids[index];
    inspect(|f| f.gauges[id].1)
}

/// The first guard's record, as stored in the configuration's own store.
fn guard_record(config: *const c_void) -> Record {
    let config = config_of(config);
    let key = config.filter().aggregator().key(0).expect("joined a slot");
    let (bytes, _) = config.store.get(&key).unwrap().expect("a guard record");
    Record::decode(&bytes).expect("a readable record")
}

#[test]
fn two_configurations_of_one_text_trip_each_on_its_own_traffic() {
    // Two listeners with the same filter text: one Envoy, two configurations alive at once.
    setup(|_| {});
    let first = load("subset_router", GUARDED);
    let second = load("subset_router", GUARDED);
    let (_, first_v2) = serve_many(first, 100, v2_fails);
    let (_, second_v2) = serve_many(second, 100, v2_fails);
    tick(first);
    tick(second);
    let both = [(first, first_v2), (second, second_v2)];
    for (config, v2) in both {
        assert_eq!(counter_of(config, "subset_router.guard.v2.tripped"), 1);
        assert_eq!(gauge_of(config, "subset_router.guard.v2.open"), 1);
        // Each window holds its own traffic, never the other's.
        assert_eq!(
            counter_of(config, "subset_router.guard.v2.requests"),
            v2 as u64
        );
    }
    for (config, v2) in both {
        let record = guard_record(config);
        assert_eq!(
            (record.totals.requests, record.totals.errors),
            (v2 as u64, v2 as u64)
        );
    }
    config_destroy(first);
    config_destroy(second);
}

#[test]
fn a_tripped_guard_diverts_only_its_own_configuration() {
    setup(|_| {});
    let failing = load("subset_router", GUARDED);
    let same_text = load("subset_router", GUARDED);
    let other_text = load(
        "subset_router",
        &GUARDED.replace("\"maxErrorPercent\": 20", "\"maxErrorPercent\": 30"),
    );
    serve_many(failing, 100, v2_fails);
    for config in [failing, same_text, other_text] {
        tick(config);
    }
    assert_eq!(gauge_of(failing, "subset_router.guard.v2.open"), 1);
    assert_eq!(serve_many(failing, 100, all_ok).1, 0, "diverted");
    for healthy in [same_text, other_text] {
        assert_eq!(gauge_of(healthy, "subset_router.guard.v2.open"), 0);
        let (_, v2) = serve_many(healthy, 100, all_ok);
        assert!(
            v2 > 20,
            "v2 got {v2}: another configuration's trip leaked in"
        );
        tick(healthy);
        assert_eq!(counter_of(healthy, "subset_router.guard.v2.tripped"), 0);
        assert_eq!(counter_of(healthy, "subset_router.guard.v2.diverted"), 0);
        assert_eq!(guard_record(healthy).totals.errors, 0);
    }
    for config in [failing, same_text, other_text] {
        config_destroy(config);
    }
}

// ---------------------------------------------------------------------------------------------
// Fleet guards: rounds sent as config-level callouts from the main-thread tick, answers read in
// the callout-done hook and evaluated by the next tick.
// ---------------------------------------------------------------------------------------------

use crate::ffi::fake::{deliver_callout, FakeCallout};
use subset_router_core::fleet::{query, request_path};

const FLEET: &str = r#"{
  "rules": [
    {"name": "canary", "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}]}}
  ],
  "default": {"subset": "v1"},
  "guards": [{"subset": "v2", "maxErrorPercent": 5, "minRequests": 50, "windowSeconds": 30,
              "cooldownSeconds": 60,
              "fleet": {"cluster": "prometheus", "authority": "prometheus.monitoring:9090",
                        "selector": "namespace=\"shop\",app=\"checkout\"",
                        "intervalSeconds": 5, "timeoutMs": 2000}}]
}"#;

/// The fleet saw 40 errors in 100 requests to v2: a breach of 5%.
const FLEET_BREACH: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"counter":"requests"},"value":[1,"100"]},{"metric":{"counter":"errors"},"value":[1,"40"]}]}}"#;

const TRIPPED: &str = "subset_router.guard.v2.tripped";
const TRIPPED_BY_FLEET: &str = "subset_router.guard.v2.tripped_by_fleet";
const FLEET_FAILED: &str = "subset_router.guard.v2.fleet_query_failed";
const OPEN: &str = "subset_router.guard.v2.open";

fn callouts() -> Vec<FakeCallout> {
    inspect(|f| f.callouts.clone())
}

/// Ticks a fresh fleet configuration until its first round goes out (the guard's record must
/// span 2 s first: `increase()` needs two scrapes); returns that round's callout.
fn first_fleet_round(config: *const c_void) -> FakeCallout {
    tick(config);
    assert!(
        callouts().is_empty(),
        "no round before the window spans 2 s"
    );
    skew(3_000);
    tick(config);
    let sent = callouts();
    assert_eq!(sent.len(), 1, "{sent:?}");
    sent[0].clone()
}

/// Lets the next round fall due (intervalSeconds 5) and ticks; returns its callout.
fn next_fleet_round(config: *const c_void) -> FakeCallout {
    let before = callouts().len();
    skew(5_000);
    tick(config);
    let sent = callouts();
    assert_eq!(sent.len(), before + 1, "{sent:?}");
    sent[before].clone()
}

fn in_flight(config: *const c_void) -> usize {
    config_of(config).in_flight.lock().unwrap().len()
}

#[test]
fn a_fleet_round_is_one_callout_to_the_guards_cluster() {
    setup(|_| {});
    let config = load("subset_router", FLEET);
    let call = first_fleet_round(config);
    let spec = &config_of(config).filter().router().guards()[0];
    let fleet = spec.fleet.as_ref().unwrap();
    // The window reaches back to the guard's start, 3 s ago.
    let path = request_path(fleet, &query(spec, fleet, None, 3));
    assert!(path.starts_with("/api/v1/query?query=sum%20by%20%28counter%29"));
    assert_eq!(call.cluster, "prometheus");
    assert_eq!(call.header(":method"), Some("GET"));
    assert_eq!(call.header(":path"), Some(path.as_str()));
    assert_eq!(
        call.header(":authority"),
        Some("prometheus.monitoring:9090")
    );
    assert_eq!(call.timeout_ms, 2000);
    assert!(call.body.is_empty());
    assert_eq!(in_flight(config), 1);
    // At most one round per interval, however often the tick runs.
    skew(1_000);
    tick(config);
    tick(config);
    assert_eq!(callouts().len(), 1);
    config_destroy(config);
}

#[test]
fn a_fleet_breach_trips_a_guard_whose_proxy_saw_no_traffic() {
    setup(|_| {});
    let config = load("subset_router", FLEET);
    let call = first_fleet_round(config);
    // The answer in two body chunks, as Envoy's buffer may hold it.
    let (head, tail) = FLEET_BREACH.as_bytes().split_at(FLEET_BREACH.len() / 2);
    deliver_callout(
        config,
        call.id,
        0,
        &[(":status", "200"), ("content-type", "application/json")],
        &[head, tail],
    );
    assert_eq!(in_flight(config), 0);
    // Read in the hook, decided by the next tick (which merges and evaluates in one swap).
    assert_eq!(counter(TRIPPED), 0);
    tick(config);
    assert_eq!(counter(TRIPPED), 1);
    assert_eq!(counter(TRIPPED_BY_FLEET), 1);
    assert_eq!(gauge(OPEN), 1);
    assert_eq!(counter(FLEET_FAILED), 0);
    assert_eq!(
        counter("subset_router.guard.v2.requests"),
        0,
        "no traffic here"
    );
    let warnings = logs_with(3, "v2");
    assert!(
        warnings.iter().any(|m| m.contains("40")),
        "the trip is logged with the fleet's numbers: {warnings:?}"
    );
    // Open on this proxy too: its split sends nothing to v2.
    assert_eq!(serve_many(config, 50, all_ok).1, 0);
    // No round while the guard is open.
    skew(5_000);
    tick(config);
    assert_eq!(callouts().len(), 1);
    config_destroy(config);
}

#[test]
fn unreadable_fleet_answers_count_as_failed_queries_and_trip_nothing() {
    setup(|_| {});
    let config = load("subset_router", FLEET);
    let breach = FLEET_BREACH.as_bytes();
    let oversized = vec![b' '; super::FLEET_ANSWER_MAX_BYTES + 1];
    // (callout result, response headers, body chunks)
    type Answer<'a> = (u32, &'a [(&'a str, &'a str)], &'a [&'a [u8]]);
    let answers: [Answer; 5] = [
        // Prometheus' own error status, whatever the body says.
        (0, &[(":status", "503")], &[breach]),
        // Not JSON.
        (0, &[(":status", "200")], &[b"<html>bad gateway</html>"]),
        // No status.
        (0, &[("content-type", "application/json")], &[breach]),
        // Bigger than any answer worth reading.
        (0, &[(":status", "200")], &[breach, &oversized]),
        // No answer at all: Envoy's Reset (unreachable, refused, timed out).
        (1, &[], &[]),
    ];
    for (i, (result, headers, body)) in answers.into_iter().enumerate() {
        let call = if i == 0 {
            first_fleet_round(config)
        } else {
            next_fleet_round(config)
        };
        deliver_callout(config, call.id, result, headers, body);
        tick(config);
        assert_eq!(counter(FLEET_FAILED), i as u64 + 1, "answer {i}");
        assert_eq!(counter(TRIPPED), 0, "answer {i}");
        assert_eq!(gauge(OPEN), 0, "answer {i}");
    }
    assert_eq!(in_flight(config), 0);
    // Warned the first time, then at most once a minute.
    let warnings = logs_with(3, "fleet query to cluster prometheus failed");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("HTTP status 503"), "{warnings:?}");
    config_destroy(config);
}

#[test]
fn a_callout_envoy_refuses_counts_as_a_failed_query() {
    // Envoy's ClusterNotFound: the guard names a cluster this Envoy does not have.
    setup(|fake| fake.callout_init_result = 2);
    let config = load("subset_router", FLEET);
    let call = first_fleet_round(config);
    assert_eq!(call.id, 0, "refused: no id");
    assert_eq!(counter(FLEET_FAILED), 1);
    assert_eq!(in_flight(config), 0);
    let warnings = logs_with(3, "fleet query to cluster prometheus failed");
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("Envoy has no cluster of that name"),
        "{warnings:?}"
    );
    tick(config);
    assert_eq!(counter(TRIPPED), 0);
    config_destroy(config);
}

#[test]
fn a_query_envoy_never_answers_is_given_up_once() {
    setup(|_| {});
    let config = load("subset_router", FLEET);
    let call = first_fleet_round(config);
    // Until its timeout and the grace after it, the query is waited for.
    skew(2_000);
    tick(config);
    assert_eq!((in_flight(config), counter(FLEET_FAILED)), (1, 0));
    skew(super::CALLOUT_GRACE_MS);
    tick(config);
    assert_eq!(counter(FLEET_FAILED), 1);
    let waiting = config_of(config)
        .in_flight
        .lock()
        .unwrap()
        .contains_key(&call.id);
    assert!(!waiting, "given up");
    // (That tick's own round went out: the next interval had begun.)
    assert_eq!((callouts().len(), in_flight(config)), (2, 1));
    // A late answer to it is ignored: counted once, and no decision from it.
    deliver_callout(
        config,
        call.id,
        0,
        &[(":status", "200")],
        &[FLEET_BREACH.as_bytes()],
    );
    tick(config);
    assert_eq!(counter(FLEET_FAILED), 1);
    assert_eq!(counter(TRIPPED), 0);
    config_destroy(config);
}

#[test]
fn fleet_rounds_won_on_the_request_path_are_sent_from_the_main_thread() {
    // A stalled ticker: requests tick (lazily), and may win a round, but never send it.
    setup(|_| {});
    let config = load("subset_router", FLEET);
    tick(config);
    skew(super::LAZY_STALLED_MS + 500);
    serve(config, &[(":path", "/")], all_ok);
    assert_eq!(inspect(|f| f.stream_gauge_sets), 1, "one lazy tick");
    assert!(callouts().is_empty(), "a stream sent a fleet query");
    // The main thread's next tick sends it.
    tick(config);
    let sent = callouts();
    assert_eq!(sent.len(), 1);
    let spec = &config_of(config).filter().router().guards()[0];
    let fleet = spec.fleet.as_ref().unwrap();
    let range_s = (super::LAZY_STALLED_MS + 500) / 1000;
    assert_eq!(
        sent[0].header(":path"),
        Some(request_path(fleet, &query(spec, fleet, None, range_s)).as_str())
    );
    config_destroy(config);
}

#[test]
fn without_a_main_thread_tick_fleet_rounds_are_never_sent_and_count_as_failed() {
    setup(|fake| fake.no_scheduler = true);
    let config = load("subset_router", FLEET);
    assert_eq!(logs_with(3, "fleet guards send no queries").len(), 1);
    // Lazy ticks at most once a second: the first joins, the next ones win a round per
    // interval, and each round that cannot go out is replaced by the next one.
    for _ in 0..4 {
        skew(5_100);
        serve(config, &[(":path", "/")], all_ok);
    }
    assert!(callouts().is_empty(), "a stream sent a fleet query");
    assert_eq!(counter(FLEET_FAILED), 2, "3 rounds won, 1 still waiting");
    assert_eq!(config_of(config).deferred.lock().unwrap().len(), 1);
    config_destroy(config);
}

// Allocations per request (BENCHMARKS.md's numbers), counted by allocation-counter's global
// allocator. The fake Envoy's own allocations (its header writes, its copy of `:status`) are
// Envoy's memory, not the module's, and are not counted (`fake::envoy_side`).
// ---------------------------------------------------------------------------------------------

const BENCH_B: &str = include_str!("../../../../bench/config/B.json");
const BENCH_B3: &str = include_str!("../../../../bench/config/B3.json");

const BROWSER: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/api/v1/items?page=2&sort=desc"),
    (":authority", "shop.example.com"),
    ("user-agent", "Mozilla/5.0"),
    ("x-user-id", "user-42"),
    ("cookie", "session=abc; theme=dark"),
    ("accept", "*/*"),
];

/// The module's allocations for `n` streams through every hook Envoy calls (new, request
/// headers, response headers with `:status` 200, stream complete, destroy), after a warm-up one.
fn module_allocations(config: *const c_void, n: u64) -> u64 {
    let one_stream = || {
        allocation_counter::opt_out(|| FAKE_RESET_STREAM(BROWSER, Some("192.0.2.1:1")));
        let stream = filter_new(config, envoy_ptr());
        assert_eq!(request_headers(envoy_ptr(), stream, true), 0);
        response_headers(envoy_ptr(), stream, false);
        stream_complete(envoy_ptr(), stream);
        filter_destroy(stream);
    };
    one_stream();
    allocation_counter::measure(|| (0..n).for_each(|_| one_stream())).count_total
}

#[test]
fn a_request_through_the_http_filter_makes_three_allocations_guarded_or_not() {
    for (name, json) in [("B", BENCH_B), ("B3 (guarded)", BENCH_B3)] {
        setup(|_| {});
        let config = load("subset_router", json);
        assert!(!config.is_null(), "{name}");
        // The stream's `Box<StreamFilter>` (on_http_filter_new), the header array
        // `get_headers` fills, the `Vec` of (name, value) slices over it. The core adds none,
        // and reading `:status` for the guard borrows Envoy's bytes.
        assert_eq!(module_allocations(config, 1000), 3 * 1000, "{name}");
        config_destroy(config);
    }
}
