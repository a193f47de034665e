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
