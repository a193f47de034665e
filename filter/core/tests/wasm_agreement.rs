//! Golden vectors and core decisions, compiled both for the host (`cargo test`) and for wasm32
//! (`make test-wasm`, run by wasm-bindgen-test under Node). Identical results prove that the
//! sticky choice a user gets does not depend on where the code runs; a change of the sticky
//! algorithm (which would reshuffle users in a running canary) fails here.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use subset_router_core::request::OwnedRequest;
use subset_router_core::selection::{fmix64, fnv1a64, fnv1a64_start, StickyHasher};
use subset_router_core::{load, RandomSource, Router, WyRand};

const TWO_WAY: &[u8] = br#"{
  "rules": [
    {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]}, "route": {"subset": "v2"}},
    {"name": "canary", "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}],
                                 "stickyBy": {"header": "x-user-id"}}}
  ],
  "default": {"subset": "v1"}
}"#;

const THREE_WAY: &[u8] =
    br#"{"default": {"split": [{"subset": "a", "weight": 60}, {"subset": "b", "weight": 30},
  {"subset": "c", "weight": 10}], "stickyBy": {"cookie": "session"}}}"#;

fn router(json: &[u8]) -> Router {
    match load(json) {
        Ok(r) => r,
        Err(e) => panic!("{e:?}"),
    }
}

/// The subset a request goes to.
fn subset(router: &Router, req: &OwnedRequest, rng: &mut WyRand) -> String {
    router
        .decide(req, rng)
        .map(|d| d.target.subset.clone())
        .unwrap_or_default()
}

#[test]
fn hash_primitives_match_their_published_definitions() {
    // FNV-1a 64 test vectors (Fowler/Noll/Vo reference).
    assert_eq!(fnv1a64(fnv1a64_start(), b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(fnv1a64_start(), b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(fnv1a64_start(), b"foobar"), 0x8594_4171_f739_67e8);
    assert_eq!(
        fnv1a64(fnv1a64_start(), b"subset-router"),
        0x5154_dff3_4a74_f70b
    );
    assert_eq!(fmix64(42), 0x8108_7960_8e42_59cc);
}

#[test]
fn prng_sequence_is_fixed() {
    let mut r = WyRand::new(42);
    assert_eq!(
        [r.next_u64(), r.next_u64(), r.next_u64()],
        [
            0xae4a_7cbf_dda9_b434,
            0xe9cc_09d3_3d38_d9d2,
            0xcb57_5651_2b93_433a
        ]
    );
}

#[test]
fn golden_sticky_two_way_90_10() {
    let r = router(TWO_WAY);
    let mut rng = WyRand::new(1);
    let got: String = (0..40)
        .map(|k| {
            let req = OwnedRequest::new().header("x-user-id", format!("user-{k}"));
            if subset(&r, &req, &mut rng) == "v2" {
                '2'
            } else {
                '1'
            }
        })
        .collect();
    assert_eq!(got, "1111112111112121111111211112111111211121");
}

#[test]
fn golden_sticky_three_way_60_30_10_by_cookie() {
    let r = router(THREE_WAY);
    let mut rng = WyRand::new(1);
    let got: String = (0..40)
        .map(|k| {
            let req = OwnedRequest::new().header("cookie", format!("session=s{k}"));
            subset(&r, &req, &mut rng).chars().next().unwrap_or('?')
        })
        .collect();
    assert_eq!(got, "aaaaabcaaaaaaaaaacacabaaaaaaaaabbaabbaaa");
}

#[test]
fn golden_ramp_never_moves_a_user_back() {
    let h = StickyHasher::new("canary", ["v1", "v2"]);
    for k in 0..2_000 {
        let key = format!("user-{k}");
        let mut on_canary = false;
        for w in [[90, 10], [80, 20], [50, 50], [0, 100]] {
            let now = h.pick(key.as_bytes(), &w) == Some(1);
            assert!(now || !on_canary, "{key} left the canary at {w:?}");
            on_canary = now;
        }
        assert!(on_canary);
    }
}

#[test]
fn debug_rule_wins_and_default_applies() {
    let r = router(TWO_WAY);
    let mut rng = WyRand::new(7);
    let debug = OwnedRequest::new()
        .header("user-agent", "debug")
        .header("x-user-id", "user-1");
    for _ in 0..100 {
        let d = r
            .decide(&debug, &mut rng)
            .map(|d| (d.rule, d.target.subset.as_str()));
        assert_eq!(d, Some(("debug", "v2")));
    }
    let plain = router(br#"{"rules":[{"name":"debug","match":{"headers":[{"name":"user-agent","exact":"debug"}]},"route":{"subset":"v2"}}],"default":{"subset":"v1"}}"#);
    let d = plain.decide(&OwnedRequest::new().header("user-agent", "curl"), &mut rng);
    assert_eq!(
        d.map(|d| (d.rule, d.target.subset.as_str(), d.target.cluster.as_str())),
        Some(("default", "v1", "v1"))
    );
}

#[test]
fn missing_sticky_key_falls_back_to_random_and_says_so() {
    let r = router(TWO_WAY);
    let mut rng = WyRand::new(3);
    let mut v2 = 0;
    for _ in 0..10_000 {
        let d = r
            .decide(&OwnedRequest::new(), &mut rng)
            .unwrap_or_else(|| panic!("no decision"));
        assert!(d.sticky_key_missing);
        assert_eq!(d.rule, "canary");
        v2 += usize::from(d.target.subset == "v2");
    }
    // 10% of 10,000 = 1,000, sd = 30: 4.5 sd bounds.
    assert!((865..=1135).contains(&v2), "v2 got {v2}");
}

#[test]
fn weight_zero_gets_nothing_in_100k_decisions() {
    let r = router(
        br#"{"default":{"split":[{"subset":"v1","weight":100},{"subset":"v2","weight":0}]}}"#,
    );
    let mut rng = WyRand::new(11);
    let req = OwnedRequest::new();
    let v2 = (0..100_000)
        .filter(|_| subset(&r, &req, &mut rng) == "v2")
        .count();
    assert_eq!(v2, 0);
}
