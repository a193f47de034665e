//! Host-side decision time (`make bench-core`): `Router::decide` on the request the Envoy
//! benchmark sends, seen as the filter sees it (the serialised header map of one
//! `proxy_get_header_map_pairs` call), for 1, 20 and 200 rules with the match at the last rule.
//!
//! * `rules/1`   — one rule: sticky 90/10 by `x-user-id` (bench/config/B2.json's last rule);
//! * `rules/20`  — bench/config/B2.json: 19 header/cookie/query/host/path rules that do not
//!   match, then the sticky rule;
//! * `rules/200` — the 19 non-matching rules repeated (renamed) to 199, then the sticky rule;
//! * `B`         — bench/config/B.json (debug rule, then random 90/10 default);
//! * `decode_headers` — decoding the serialised header map once into the lookup table;
//! * `parse_headers` — walking the serialised header map once (the cost of each lookup before
//!   the table).
//!
//! Each configuration is measured as the filter does it (`DecodedRequest`: the header map decoded
//! once per request, included in the time) and, as `…/in-place`, as it was before that
//! optimisation (`SerializedRequest`: every lookup walks the ABI buffer).
//!
//! Growth with the size of the configuration (groups `growth` and `load`):
//!
//! * `growth/exact/N` — N rules `x-user-id: user-i` → v2 (N = 1, 20, 200, 2,000, 20,000), the
//!   request carrying `user-(N-1)`: the match is at the last rule;
//! * `growth/oneOf/100000` — one rule whose `oneOf` lists `user-0` … `user-99999`, the request
//!   carrying the last; `…/miss` a request whose id is not in the list;
//! * `load/…` — `subset_router_core::load` (parse, validate, compile: `on_configure`) of each.
//!
//! Before the measurements, the bytes each compiled router keeps (and the peak while loading)
//! are printed, as counted by the allocation counter the tests use.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::Value;
use std::hint::black_box;
use subset_router_core::request::{DecodedRequest, HeaderPairs, SerializedRequest};
use subset_router_core::{RequestView, WyRand};

const B: &str = include_str!("../../../bench/config/B.json");
const B2: &str = include_str!("../../../bench/config/B2.json");

/// What Envoy hands the filter for one request of bench/requests.txt.
fn request_headers() -> Vec<u8> {
    HeaderPairs::encode(&[
        (":authority", "shop.example.com"),
        (":path", "/api/v1/items?page=2&sort=price"),
        (":method", "GET"),
        (":scheme", "http"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
        ("accept", "*/*"),
        ("cookie", "session=s0042; theme=dark; consent=yes"),
        ("x-user-id", "user-332598"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "5f2d3f0e-8c4b-4c8e-9d6a-3b1f2e4d5c6b"),
    ])
}

/// B2 with its non-matching rules repeated so that there are `n` rules, the sticky one last.
fn config_with_rules(n: usize) -> String {
    let mut cfg: Value = serde_json::from_str(B2).expect("B2.json");
    let rules = cfg["rules"].as_array().expect("rules").clone();
    let (last, fillers) = rules.split_last().expect("at least one rule");
    let mut out = Vec::with_capacity(n);
    for i in 0..n - 1 {
        let mut r = fillers[i % fillers.len()].clone();
        let name = format!("{}-{}", r["name"].as_str().expect("name"), i);
        r["name"] = Value::String(name);
        out.push(r);
    }
    out.push(last.clone());
    cfg["rules"] = Value::Array(out);
    cfg.to_string()
}

fn bench_decide(c: &mut Criterion) {
    let raw = request_headers();
    // Before: lookups walk the ABI buffer (`SerializedRequest`). Now (the filter): the map is
    // decoded once per request into a table (`DecodedRequest::new`, counted in each iteration).
    let in_place = SerializedRequest {
        headers: HeaderPairs::new(&raw),
        source: None,
    };
    let mut group = c.benchmark_group("decide");
    for n in [1usize, 20, 200] {
        let json = config_with_rules(n);
        let router = subset_router_core::load(json.as_bytes()).expect("valid config");
        let mut rng = WyRand::new(7);
        let d = router.decide(&in_place, &mut rng).expect("decision");
        assert_eq!(d.rule, "canary", "the match must be at the last rule");
        group.bench_function(format!("rules/{n}"), |b| {
            b.iter(|| {
                let req = DecodedRequest::new(HeaderPairs::new(black_box(&raw)), None);
                black_box(router.decide(&req, &mut rng).map(|d| d.target.slot))
            })
        });
        group.bench_function(format!("rules/{n}/in-place"), |b| {
            b.iter(|| {
                let d = router.decide(black_box(&in_place), &mut rng);
                black_box(d.map(|d| d.target.slot))
            })
        });
    }
    let router = subset_router_core::load(B.as_bytes()).expect("B.json");
    let mut rng = WyRand::new(7);
    group.bench_function("B", |b| {
        b.iter(|| {
            let req = DecodedRequest::new(HeaderPairs::new(black_box(&raw)), None);
            black_box(router.decide(&req, &mut rng).map(|d| d.target.slot))
        })
    });
    group.bench_function("B/in-place", |b| {
        b.iter(|| {
            black_box(
                router
                    .decide(black_box(&in_place), &mut rng)
                    .map(|d| d.target.slot),
            )
        })
    });
    group.bench_function("decode_headers", |b| {
        b.iter(|| {
            black_box(DecodedRequest::new(HeaderPairs::new(black_box(&raw)), None)).source_ip()
        })
    });
    group.bench_function("parse_headers", |b| {
        b.iter(|| black_box(in_place.header_values("x-user-id").count()))
    });
    group.finish();
}

/// N exact-match rules on `x-user-id`, each its own user.
fn exact_rules(n: usize) -> String {
    let rules: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"name":"user-{i}","match":{{"headers":[{{"name":"x-user-id","exact":"user-{i}"}}]}},"route":{{"subset":"v2"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"rules":[{}],"default":{{"subset":"v1"}}}}"#,
        rules.join(",")
    )
}

/// One rule whose `oneOf` lists `user-0` … `user-(n-1)`.
fn one_of_rule(n: usize) -> String {
    let values: Vec<String> = (0..n).map(|i| format!(r#""user-{i}""#)).collect();
    format!(
        r#"{{"rules":[{{"name":"testers","match":{{"headers":[{{"name":"x-user-id","oneOf":[{}]}}]}},"route":{{"subset":"v2"}}}}],"default":{{"subset":"v1"}}}}"#,
        values.join(",")
    )
}

/// The benchmark request with its `x-user-id` replaced by `user`.
fn request_for(user: &str) -> Vec<u8> {
    let raw = request_headers();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = HeaderPairs::new(&raw)
        .iter()
        .map(|(n, v)| {
            let v = if n == b"x-user-id" {
                user.as_bytes()
            } else {
                v
            };
            (n.to_vec(), v.to_vec())
        })
        .collect();
    HeaderPairs::encode(&pairs)
}

/// (name, configuration, request, rule expected to decide).
fn growth_cases() -> Vec<(String, String, Vec<u8>, String)> {
    let mut cases: Vec<_> = [1usize, 20, 200, 2_000, 20_000]
        .into_iter()
        .map(|n| {
            let last = format!("user-{}", n - 1);
            (
                format!("exact/{n}"),
                exact_rules(n),
                request_for(&last),
                last,
            )
        })
        .collect();
    let one_of = one_of_rule(100_000);
    cases.push((
        "oneOf/100000".into(),
        one_of.clone(),
        request_for("user-99999"),
        "testers".into(),
    ));
    cases.push((
        "oneOf/100000/miss".into(),
        one_of,
        request_for("user-100000"),
        "default".into(),
    ));
    cases
}

fn bench_growth(c: &mut Criterion) {
    let cases = growth_cases();
    println!("compiled router size (bytes kept after load; peak while loading; allocations kept):");
    for (name, json, _, _) in &cases {
        let mut router = None;
        let info = allocation_counter::measure(|| {
            router = Some(subset_router_core::load(json.as_bytes()).expect("valid config"));
        });
        println!(
            "  {name:<20} config {:>9} B  kept {:>10} B  peak {:>10} B  allocations kept {:>7}",
            json.len(),
            info.bytes_current,
            info.bytes_max,
            info.count_current
        );
        drop(router);
    }
    let mut group = c.benchmark_group("growth");
    for (name, json, raw, rule) in &cases {
        let router = subset_router_core::load(json.as_bytes()).expect("valid config");
        let mut rng = WyRand::new(7);
        let req = DecodedRequest::new(HeaderPairs::new(raw), None);
        assert_eq!(router.decide(&req, &mut rng).expect("decision").rule, rule);
        group.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let req = DecodedRequest::new(HeaderPairs::new(black_box(raw)), None);
                black_box(router.decide(&req, &mut rng).map(|d| d.target.slot))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for (name, json, _, _) in cases.iter().filter(|(name, ..)| !name.ends_with("/miss")) {
        group.bench_function(name.as_str(), |b| {
            // The router is dropped outside the timed part: `on_configure` keeps it.
            b.iter_batched(
                || (),
                |()| subset_router_core::load(black_box(json.as_bytes())).expect("valid config"),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decide, bench_growth);
criterion_main!(benches);
