//! The proxy as the filter's per-request code sees it, presented the way the wasm adapter's
//! `WasmHost` (filter/wasm/src/lib.rs) presents Envoy: the request header map in the proxy-wasm
//! serialisation, `source.address` read through `request::parse_peer_address`; and a record of
//! what `Filter::on_request` did to the request (headers removed and written, local replies,
//! counters). Host calls never fail here.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;

use subset_router_core::adapter::{Filter, Verdict};
use subset_router_core::host::{Clock, Counters, Gauges, HostError, Log, RequestHost, RouteCache};
use subset_router_core::request::{self, HeaderPairs, HeaderSource};
use subset_router_core::RandomSource;

/// A request as Envoy hands it to the filter.
#[derive(Clone, Copy)]
pub struct Wire<'a> {
    /// `proxy_get_header_map_pairs` for the request headers (possibly truncated or lying).
    pub headers: &'a [u8],
    /// The `source.address` property, if Envoy has one.
    pub source_address: Option<&'a [u8]>,
}

/// What one `on_http_request_headers` did.
#[derive(Debug)]
pub struct Effects {
    pub verdict: Verdict,
    pub removed: Vec<String>,
    pub written: Vec<(String, String)>,
    pub local_replies: u32,
    /// Counter index (the order of `adapter::counter_names`) -> increments.
    pub counts: BTreeMap<usize, u64>,
}

struct Request<'a> {
    wire: Wire<'a>,
    removed: Vec<String>,
    written: Vec<(String, String)>,
    local_replies: u32,
}

impl RequestHost for Request<'_> {
    fn with_request_headers<R>(
        &mut self,
        f: impl FnOnce(HeaderSource<'_>) -> R,
    ) -> Result<R, HostError> {
        Ok(f(HeaderPairs::new(self.wire.headers).into()))
    }

    fn source_address(&mut self) -> Result<Option<IpAddr>, HostError> {
        Ok(self
            .wire
            .source_address
            .and_then(request::parse_peer_address))
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.removed.push(name.to_string());
        Ok(())
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.written.push((name.to_string(), value.to_string()));
        Ok(())
    }

    fn clear_route_cache(&mut self) -> Result<RouteCache, HostError> {
        Ok(RouteCache::Cleared)
    }

    fn send_local_reply(&mut self, _status: u32, _body: &str) -> Result<(), HostError> {
        self.local_replies += 1;
        Ok(())
    }
}

#[derive(Default)]
struct Counts(RefCell<BTreeMap<usize, u64>>);

impl Counters for Counts {
    fn increment(&self, counter: usize, by: u64) {
        *self.0.borrow_mut().entry(counter).or_default() += by;
    }
}

/// Clock, gauges and log of a proxy at a fixed instant that discards gauges and messages.
pub struct Still;

impl Clock for Still {
    fn wall_ns(&self) -> Result<u64, HostError> {
        Ok(1_796_083_200_000_000_000) // 2026-12-01T00:00:00Z
    }

    fn monotonic_ns(&self) -> Result<u64, HostError> {
        Ok(1_000_000_000)
    }
}

impl Gauges for Still {
    fn set_gauge(&self, _gauge: usize, _value: u64) {}
}

impl Log for Still {
    fn warn(&self, _message: &str) {}
}

/// The filter for an accepted configuration, started as the wasm adapter starts it.
pub fn start(router: subset_router_core::Router) -> Filter {
    let filter = Filter::new(router);
    filter.start(&Still, &Counts::default(), &Still, &Still);
    filter
}

/// `on_http_request_headers` for one request, as the wasm adapter runs it.
pub fn serve(filter: &Filter, wire: Wire, rng: &mut impl RandomSource) -> Effects {
    let mut req = Request {
        wire,
        removed: Vec::new(),
        written: Vec::new(),
        local_replies: 0,
    };
    let counts = Counts::default();
    let verdict = filter.on_request(&mut req, rng, &counts, &Still, &Still);
    Effects {
        verdict,
        removed: req.removed,
        written: req.written,
        local_replies: req.local_replies,
        counts: counts.0.into_inner(),
    }
}
