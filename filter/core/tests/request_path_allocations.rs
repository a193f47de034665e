//! What BENCHMARKS.md says about allocation on the request path, checked: with a counting
//! global allocator, `Filter::on_request` (and `on_response`) over a host that itself allocates
//! nothing makes no allocation for the benchmark configurations, sticky or random, plain or
//! progressive; a query parameter holding a real `%XX` escape is the one documented exception.
//! (The header buffer is the host's: proxy-wasm hands it over already allocated.)

use std::cell::Cell;
use std::net::IpAddr;

use subset_router_core::adapter::{Filter, Served, Verdict};
use subset_router_core::host::{
    Clock, Counters, HostError, Log, RequestHost, ResponseHost, RouteCache,
};
use subset_router_core::request::{HeaderPairs, HeaderSource};
use subset_router_core::rng::WyRand;

// The counting allocator is the `allocation-counter` crate's (thread-local counts), so the
// core crate has no `unsafe` of its own, not even in tests.

/// A host over a pre-encoded header map that allocates nothing itself.
struct StaticHost<'a> {
    headers: &'a [u8],
}

impl RequestHost for StaticHost<'_> {
    fn with_request_headers<R>(
        &mut self,
        f: impl FnOnce(HeaderSource<'_>) -> R,
    ) -> Result<R, HostError> {
        Ok(f(HeaderPairs::new(self.headers).into()))
    }
    fn source_address(&mut self) -> Result<Option<IpAddr>, HostError> {
        Ok(None)
    }
    fn remove_request_header(&mut self, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn set_request_header(&mut self, _: &str, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn clear_route_cache(&mut self) -> Result<RouteCache, HostError> {
        Ok(RouteCache::Cleared)
    }
    fn send_local_reply(&mut self, _: u32, _: &str) -> Result<(), HostError> {
        Ok(())
    }
}

impl ResponseHost for StaticHost<'_> {
    fn set_response_header(&mut self, _: &str, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn response_status(&mut self) -> Result<Option<u32>, HostError> {
        Ok(Some(200))
    }
}

struct Quiet;
impl Counters for Quiet {
    fn increment(&self, _: usize, _: u64) {}
}
impl Log for Quiet {
    fn warn(&self, _: &str) {}
}

/// A clock that moves a millisecond per reading (2026-12-01T12:00:00Z onwards).
struct Ticking(Cell<u64>);
impl Clock for Ticking {
    fn wall_ns(&self) -> Result<u64, HostError> {
        Ok(1_795_176_000_000_000_000 + self.monotonic_ns()?)
    }
    fn monotonic_ns(&self) -> Result<u64, HostError> {
        self.0.set(self.0.get() + 1_000_000);
        Ok(self.0.get())
    }
}

/// Allocations made by `n` requests through the filter (after one warm-up request).
fn allocations(config: &str, headers: &[(&str, &str)], n: usize) -> usize {
    let filter = Filter::new(subset_router_core::load(config.as_bytes()).unwrap());
    let buf = HeaderPairs::encode(headers);
    let clock = Ticking(Cell::new(0));
    let mut rng = WyRand::new(7);
    let run = |rng: &mut WyRand| {
        let mut host = StaticHost { headers: &buf };
        let mut served = match filter.on_request(&mut host, rng, &Quiet, &Quiet, &clock) {
            Verdict::Continue(served) => served,
            Verdict::Stop => Served::default(),
        };
        filter.on_response(&mut served, &mut host, &Quiet, &Quiet, &clock);
        filter.on_stream_done(&mut served);
    };
    run(&mut rng);
    let info = allocation_counter::measure(|| {
        for _ in 0..n {
            run(&mut rng);
        }
    });
    usize::try_from(info.count_total).unwrap()
}

const B: &str = include_str!("../../../bench/config/B.json");
const B2: &str = include_str!("../../../bench/config/B2.json");
const B3: &str = include_str!("../../../bench/config/B3.json");

const BROWSER: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/api/v1/items?page=2&sort=desc"),
    (":authority", "shop.example.com"),
    ("user-agent", "Mozilla/5.0"),
    ("x-user-id", "user-42"),
    ("cookie", "session=abc; theme=dark"),
    ("accept", "*/*"),
];

#[test]
fn the_benchmark_configurations_allocate_nothing_per_request() {
    for (name, config) in [("B", B), ("B2", B2), ("B3", B3)] {
        assert_eq!(allocations(config, BROWSER, 1000), 0, "{name}");
    }
}

/// Runs of exact-match rules (one lookup each: header, cookie, query parameter, host, path) and
/// `oneOf` sets allocate nothing either, whichever rule holds, or none.
#[test]
fn indexed_rules_and_one_of_allocate_nothing_per_request() {
    let matches = [
        r#"{"headers":[{"name":"x-user-id","exact":"user-1"}]}"#,
        r#"{"headers":[{"name":"X-User-Id","oneOf":["user-2","user-3"]}]}"#,
        r#"{"cookies":[{"name":"session","exact":"x"}]}"#,
        r#"{"cookies":[{"name":"session","oneOf":["y","abc"]}]}"#,
        r#"{"query":[{"name":"page","exact":"1"}]}"#,
        r#"{"query":[{"name":"page","oneOf":["2","3"]}]}"#,
        r#"{"hosts":["canary.example.com"]}"#,
        r#"{"hosts":["shop.example.com","admin.example.com"]}"#,
        r#"{"path":"/healthz"}"#,
        r#"{"path":"/api/v1/items"}"#,
        r#"{"headers":[{"name":"x-tester","oneOf":["a","b","c"]}]}"#,
    ];
    let rules: Vec<String> = matches
        .iter()
        .enumerate()
        .map(|(i, m)| format!(r#"{{"name":"r{i}","match":{m},"route":{{"subset":"v2"}}}}"#))
        .collect();
    let config = format!(
        r#"{{"rules":[{}],"default":{{"subset":"v1"}}}}"#,
        rules.join(",")
    );
    let router = subset_router_core::load(config.as_bytes()).unwrap();
    assert_eq!(
        format!("{router:?}").matches("Lookup(").count(),
        5,
        "five runs"
    );
    let miss: &[(&str, &str)] = &[
        (":method", "GET"),
        (":path", "/api?page=9"),
        (":authority", "www.example.com"),
        ("x-user-id", "user-42"),
        ("cookie", "session=zzz"),
    ];
    let with = |name: &str, value: &'static str| -> Vec<(String, String)> {
        miss.iter()
            .filter(|(n, _)| *n != name)
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .chain([(name.to_owned(), value.to_owned())])
            .collect()
    };
    for (headers, rule) in [
        (with("x-other", "1"), "default"),
        (with("x-user-id", "user-3"), "r1"),
        (with("cookie", "a=1; session=abc"), "r3"),
        (with(":path", "/x?page=%33"), "r5"),
        (with(":path", "/x?page=3"), "r5"),
        (with(":authority", "Shop.Example.com:443"), "r7"),
        (with(":path", "/healthz"), "r8"),
        (with("x-tester", "b"), "r10"),
    ] {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let buf = HeaderPairs::encode(&pairs);
        let req = subset_router_core::request::DecodedRequest::new(HeaderPairs::new(&buf), None);
        let decided = router.decide(&req, &mut WyRand::new(1)).unwrap().rule;
        assert_eq!(decided, rule, "{pairs:?}");
        // A real `%XX` escape in the parameter a rule reads is the documented allocation.
        let expected = if pairs.iter().any(|(_, v)| v.contains("%33")) {
            1000
        } else {
            0
        };
        assert_eq!(allocations(&config, &pairs, 1000), expected, "{pairs:?}");
    }
}

#[test]
fn a_real_percent_escape_in_a_queried_parameter_is_the_one_allocation() {
    let config = r#"{"rules":[{"name":"q","match":{"query":[{"name":"debug","exact":"1"}]},
        "route":{"subset":"v2"}}],"default":{"subset":"v1"}}"#;
    let plain = [(":path", "/?debug=1&x=%zz")];
    assert_eq!(allocations(config, &plain, 100), 0);
    let escaped = [(":path", "/?debug=%31")];
    assert_eq!(allocations(config, &escaped, 100), 100);
}
