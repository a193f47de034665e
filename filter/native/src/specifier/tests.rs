//! The cluster-specifier form end to end through its exported hooks
//! (`envoy_dynamic_module_on_cluster_specifier_{config_new,select,config_destroy}`), against the
//! fake Envoy of `ffi::fake`: which configurations the form refuses and why, the cluster each
//! selection names, the counters, a forged `clusterHeader`, and failing host calls.

use std::ffi::c_void;
use std::ptr;

use crate::ffi::cluster_specifier::{
    envoy_dynamic_module_on_cluster_specifier_config_destroy as config_destroy,
    envoy_dynamic_module_on_cluster_specifier_config_new as config_new,
    envoy_dynamic_module_on_cluster_specifier_select as select,
};
use crate::ffi::fake::{envoy_ptr, inspect, setup, FakeEnvoy, FAKE};
use crate::ffi::EnvoyBuffer;

/// Envoy's `dynamicmodulescustom.` prefix is Envoy's; the module defines these names.
const SPOOFED: &str = "subset_router.spoofed_header_removed";
const HOST_CALL_FAILED: &str = "subset_router.host_call_failed";

const CONFIG: &str = r#"{
  "rules": [
    {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
     "route": {"subset": "v2"}},
    {"name": "office", "match": {"sourceCidrs": ["10.0.0.0/8"]}, "route": {"subset": "v3"}},
    {"name": "sticky", "match": {"pathPrefix": "/sticky"},
     "route": {"split": [{"subset": "v1", "weight": 80}, {"subset": "v2", "weight": 20}],
               "stickyBy": {"header": "x-user-id"}}},
    {"name": "canary", "match": {"pathPrefix": "/app"},
     "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}}
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

/// One selection over `request` (and `source`): what `select` answered and the cluster it set
/// (`None`: no `set_cluster_name` call).
fn pick(
    config: *const c_void,
    request: &[(&str, &str)],
    source: Option<&str>,
) -> (bool, Option<String>) {
    FAKE.with(|fake| {
        let mut fake = fake.borrow_mut();
        fake.request = request
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        fake.source = source.map(|s| s.as_bytes().to_vec());
        fake.specifier_clusters.clear();
    });
    let chosen = select(config, envoy_ptr());
    let clusters = inspect(|fake| fake.specifier_clusters.clone());
    assert!(
        clusters.len() <= 1,
        "one cluster per selection: {clusters:?}"
    );
    (chosen, clusters.into_iter().next())
}

fn counter(name: &str) -> u64 {
    inspect(|f| f.counter(name)).unwrap_or_else(|| panic!("no counter {name}"))
}

fn counter_total() -> u64 {
    inspect(|f| f.counters.iter().map(|(_, v)| v).sum())
}

fn error_logs() -> Vec<String> {
    inspect(|f| {
        f.logs
            .iter()
            .filter(|(level, _)| *level == 4)
            .map(|(_, m)| m.clone())
            .collect()
    })
}

/// A ramp that started long ago (the core accepts any start).
const RAMP: &str = r#"{"rules": [{"name": "canary", "route": {
    "split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}],
    "ramp": {"subset": "v2", "toPercent": 50, "start": "2026-01-01T00:00:00Z", "durationSeconds": 60}}}],
  "default": {"subset": "v1"}}"#;

const GUARD: &str = r#"{"rules": [{"name": "canary", "route": {
    "split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}}],
  "default": {"subset": "v1"},
  "guards": [{"subset": "v2", "maxErrorPercent": 20}]}"#;

/// Each feature only the HTTP filter can carry out: a configuration the core accepts, and the
/// exact `path: reason` line the form refuses it with.
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "subsetHeader",
        r#"{"subsetHeader": "x-subset", "default": {"subset": "v1"}}"#,
        "subsetHeader: the cluster-specifier form writes no request header (use the HTTP filter)",
    ),
    (
        "responseHeader",
        r#"{"responseHeader": "x-routed-subset", "default": {"subset": "v1"}}"#,
        "responseHeader: the cluster-specifier form never sees the response (use the HTTP \
         filter)",
    ),
    (
        "ramp",
        RAMP,
        "rules[0].route.ramp: a ramp moves on a once-a-second tick, which only the HTTP filter has",
    ),
    (
        "guard",
        GUARD,
        "guards[0]: a guard watches responses, which the cluster-specifier form never sees (use \
         the HTTP filter)",
    ),
];

const NULL_CLUSTER_HEADER: &str =
    r#"{"clusterHeader": null, "subsetHeader": "x-subset", "default": {"subset": "v1"}}"#;
const NULL_CLUSTER_HEADER_LINE: &str = "clusterHeader: null: the cluster-specifier form routes \
     to the cluster the decision names, so it needs clusterHeader's cluster (use the HTTP filter \
     to write subsetHeader only)";
const SUBSET_HEADER_LINE: &str =
    "subsetHeader: the cluster-specifier form writes no request header (use the HTTP filter)";

#[test]
fn new_config_refuses_what_only_the_http_filter_can_do_with_path_reason_lines() {
    let cases = REFUSED
        .iter()
        .map(|(feature, json, line)| (*feature, *json, vec![*line]))
        .chain([(
            "clusterHeader null",
            NULL_CLUSTER_HEADER,
            vec![NULL_CLUSTER_HEADER_LINE, SUBSET_HEADER_LINE],
        )]);
    for (feature, json, lines) in cases {
        setup(|_| {});
        assert!(load("subset_router", json).is_null(), "{feature} accepted");
        let errors = error_logs();
        let mut want: Vec<String> = lines
            .iter()
            .map(|l| format!("subset-router: invalid configuration: {l}"))
            .collect();
        want.push(format!(
            "subset-router: configuration rejected ({} error(s))",
            lines.len()
        ));
        assert_eq!(errors, want, "{feature}");
        assert!(
            inspect(|f| f.counters.is_empty()),
            "{feature}: no counter for a refused configuration"
        );
    }
}

#[test]
fn invalid_json_and_other_specifier_names_are_refused() {
    setup(|_| {});
    let json = r#"{"rules": [{"name": "a", "route": {"split": [{"subset": "v1", "weight": 1000001}]}}], "default": {"subset": "v1"}}"#;
    assert!(load("subset_router", json).is_null());
    assert!(error_logs().iter().any(|m| m
        == "subset-router: invalid configuration: rules[0].route.split[0].weight: \
                       1000001 exceeds 1000000"));
    setup(|_| {});
    assert!(load("subset_router", "").is_null());
    assert!(load("subset_router", "not json").is_null());

    setup(|_| {});
    assert!(load("something_else", CONFIG).is_null());
    let errors = error_logs();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("specifier_name \"something_else\""),
        "{errors:?}"
    );
    assert!(inspect(|f| f.counters.is_empty()));

    setup(|fake| fake.frozen = true);
    assert!(load("subset_router", CONFIG).is_null());
    assert!(error_logs()
        .iter()
        .any(|m| m.contains("could not define counter")));
}

#[test]
fn accepted_config_defines_every_counter_at_zero() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    assert!(!config.is_null());
    let router = subset_router_core::load(CONFIG.as_bytes()).unwrap();
    inspect(|fake| {
        let names: Vec<_> = fake.counters.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, subset_router_core::adapter::counter_names(&router));
        assert!(fake.counters.iter().all(|(_, v)| *v == 0));
        assert!(names.iter().any(|n| n == SPOOFED));
        let accepted = format!(
            "subset-router: cluster-specifier configuration accepted: 4 rule(s) + default, {} \
             counter(s)",
            names.len()
        );
        assert!(
            fake.logs
                .iter()
                .any(|(level, m)| *level == 2 && *m == accepted),
            "{:?}",
            fake.logs
        );
    });
    config_destroy(config);
}

#[test]
fn the_debug_rule_names_its_cluster_and_counts_the_decision() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    let request = [
        (":method", "GET"),
        (":path", "/app/home"),
        ("User-Agent", "debug"),
    ];
    assert_eq!(
        pick(config, &request, Some("192.0.2.1:1")),
        (true, Some("v2".into()))
    );
    assert_eq!(counter("subset_router.rule.debug.subset.v2"), 1);
    assert_eq!(counter_total(), 1, "{:?}", inspect(|f| f.counters.clone()));
    // Nothing is written to the request: the selection is the route's cluster.
    inspect(|fake| {
        assert_eq!(fake.request.len(), 3);
        assert!(FakeEnvoy::header(&fake.request, "x-upstream-cluster").is_empty());
    });
    // Every other rule and the default, by the same rules as the HTTP filter's.
    // (request, source address, deciding rule, its subset or "" for a split)
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str, &'a str);
    let cases: &[Case] = &[
        (&[(":path", "/")], Some("10.1.2.3:5678"), "office", "v3"),
        (&[(":path", "/")], Some("192.0.2.1:1"), "default", "v1"),
        (&[(":path", "/app/x")], Some("[::1]:80"), "canary", ""),
    ];
    for (request, source, rule, subset) in cases {
        let (chosen, cluster) = pick(config, request, *source);
        assert!(chosen);
        let cluster = cluster.unwrap();
        if !subset.is_empty() {
            assert_eq!(cluster, *subset, "{rule}");
        }
        assert_eq!(
            counter(&format!("subset_router.rule.{rule}.subset.{cluster}")),
            1,
            "{rule}"
        );
    }
    assert_eq!(counter_total(), 4);
    assert_eq!(counter(HOST_CALL_FAILED), 0);
    config_destroy(config);
}

#[test]
fn a_forged_cluster_header_is_counted_and_chooses_nothing() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    // Forged in two spellings, naming a cluster no rule picks and the debug subset: the default
    // decides (v1), as if the header were absent.
    let forged = [
        (":path", "/"),
        ("x-upstream-cluster", "internal-admin"),
        ("X-Upstream-Cluster", "v2"),
    ];
    assert_eq!(
        pick(config, &forged, Some("192.0.2.1:1")),
        (true, Some("v1".into()))
    );
    assert_eq!(counter(SPOOFED), 1, "one request, counted once");
    assert_eq!(counter("subset_router.rule.default.subset.v1"), 1);
    // The request is left as the client sent it (the route does not read the header).
    inspect(|fake| {
        assert_eq!(
            FakeEnvoy::header(&fake.request, "x-upstream-cluster"),
            ["internal-admin", "v2"]
        )
    });
    // A rule still decides with a forged header present.
    let forged_debug = [
        (":path", "/app"),
        ("user-agent", "debug"),
        ("x-upstream-cluster", "internal-admin"),
    ];
    assert_eq!(
        pick(config, &forged_debug, Some("192.0.2.1:1")),
        (true, Some("v2".into()))
    );
    assert_eq!(counter(SPOOFED), 2);
    assert_eq!(counter("subset_router.rule.debug.subset.v2"), 1);
    // Without one, nothing is counted as spoofed.
    pick(config, &[(":path", "/")], Some("192.0.2.1:1"));
    assert_eq!(counter(SPOOFED), 2);
    assert_eq!(counter_total(), 5, "3 decisions + 2 spoofed");
    config_destroy(config);
}

#[test]
fn unreadable_headers_still_pick_the_cluster_of_the_decision_over_no_headers() {
    setup(|fake| fake.refuse_specifier_headers = true);
    let config = load("subset_router", CONFIG);
    // The debug header is there but cannot be read: no `:path`, no header, so only the default
    // holds.
    let request = [(":path", "/app"), ("user-agent", "debug")];
    assert_eq!(
        pick(config, &request, Some("192.0.2.1:1")),
        (true, Some("v1".into()))
    );
    assert_eq!(counter("subset_router.rule.default.subset.v1"), 1);
    assert_eq!(counter(HOST_CALL_FAILED), 1);
    // Unreadable headers are not seen to be forged (the HTTP filter still removes both routing
    // headers blindly): the failure counts in host_call_failed only, here too.
    assert_eq!(counter(SPOOFED), 0);
    let warnings = || {
        inspect(|f| {
            f.logs
                .iter()
                .filter(|(level, m)| *level == 3 && m.contains("read request headers"))
                .count()
        })
    };
    assert_eq!(warnings(), 1);
    // Warned once; counted every time.
    pick(config, &request, Some("192.0.2.1:1"));
    assert_eq!(counter(HOST_CALL_FAILED), 2);
    assert_eq!(warnings(), 1);
    config_destroy(config);
}

#[test]
fn no_source_address_means_no_address_rule_matches() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    assert_eq!(
        pick(config, &[(":path", "/")], None),
        (true, Some("v1".into()))
    );
    assert_eq!(counter("subset_router.rule.default.subset.v1"), 1);
    // Envoy having no `source.address` is not a failure of this form's host.
    assert_eq!(counter(HOST_CALL_FAILED), 0);
    config_destroy(config);
}

#[test]
fn the_split_follows_the_weights_and_sticky_keys_stay() {
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    let n = 4000;
    let mut v2 = 0;
    for _ in 0..n {
        match pick(config, &[(":path", "/app")], Some("192.0.2.1:1")) {
            (true, Some(c)) if c == "v2" => v2 += 1,
            (true, Some(c)) => assert_eq!(c, "v1"),
            other => panic!("{other:?}"),
        }
    }
    // 10% of 4000 = 400, sd 19: 4.5 sd = 85.
    assert!((315..=485).contains(&v2), "v2 got {v2} of {n} at 10%");
    assert_eq!(counter("subset_router.rule.canary.subset.v2"), v2);
    assert_eq!(counter("subset_router.rule.canary.subset.v1"), n - v2);

    // Sticky: each id on one subset whatever Envoy's random value for the request.
    for id in 0..200 {
        let uid = format!("user-{id:04}");
        let request = [(":path", "/sticky/cart"), ("x-user-id", uid.as_str())];
        let first = pick(config, &request, None).1.unwrap();
        for _ in 0..3 {
            assert_eq!(pick(config, &request, None).1.unwrap(), first, "{uid}");
        }
    }
    config_destroy(config);
}

#[test]
fn a_request_selected_again_keeps_its_subset_and_each_selection_counts() {
    // A retry re-selects with the request's own random value (the same in every selection).
    setup(|_| {});
    let config = load("subset_router", CONFIG);
    for value in 0..50u64 {
        FAKE.with(|f| {
            f.borrow_mut().random_value = Some(value.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        });
        let first = pick(config, &[(":path", "/app")], None);
        let again = pick(config, &[(":path", "/app")], None);
        assert_eq!(first, again, "random value {value}");
    }
    assert_eq!(
        counter("subset_router.rule.canary.subset.v1")
            + counter("subset_router.rule.canary.subset.v2"),
        100
    );
    config_destroy(config);
}

#[test]
fn null_pointers_are_harmless() {
    setup(|_| {});
    assert!(!select(ptr::null(), envoy_ptr()));
    assert!(inspect(|f| f.specifier_clusters.is_empty()));
    config_destroy(ptr::null());
}

#[test]
fn a_selection_makes_two_allocations() {
    // Counted by allocation-counter's global allocator; the fake Envoy's own allocations (its
    // copy of the cluster name) are Envoy's memory and not counted (`fake::envoy_side`).
    setup(|_| {});
    let config = load(
        "subset_router",
        include_str!("../../../../bench/config/B.json"),
    );
    assert!(!config.is_null());
    FAKE.with(|fake| {
        fake.borrow_mut().request = [
            (":method", "GET"),
            (":path", "/api/v1/items?page=2&sort=desc"),
            (":authority", "shop.example.com"),
            ("user-agent", "Mozilla/5.0"),
            ("x-user-id", "user-42"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    });
    assert!(select(config, envoy_ptr()));
    let n = 1000;
    let info = allocation_counter::measure(|| {
        for _ in 0..n {
            assert!(select(config, envoy_ptr()));
        }
    });
    // The header array `get_request_headers` fills and the `Vec` of (name, value) slices over
    // it; no stream object (Envoy asks the configuration), the core adds none.
    assert_eq!(info.count_total, 2 * n);
    config_destroy(config);
}
