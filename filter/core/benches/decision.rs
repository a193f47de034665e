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

use criterion::{criterion_group, criterion_main, Criterion};
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

criterion_group!(benches, bench_decide);
criterion_main!(benches);
