//! The proxy-wasm adapter: host calls only. Every decision is made by [`Router`].
//!
//! Per request: one host call reads the whole request header map (it also reveals any forged
//! routing header), the router decides in plain Rust, then the filter writes one or two headers,
//! asks Envoy to recompute the route and counts the outcome.

use std::cell::Cell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType, Status};

use crate::request::{self, DecodedRequest, HeaderPairs, RequestView};
use crate::rng::WyRand;
use crate::router::Router;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(SubsetRouterRoot::new()) });
}}

/// The compiled configuration and the metric ids of this VM, shared by every request.
struct Shared {
    router: Router,
    /// Metric id per [`Router::slots`] entry.
    decision_metrics: Vec<u32>,
    spoofed_metric: u32,
    sticky_missing_metric: u32,
    /// Cleared once the host says `clear_route_cache` does not exist, to stop asking.
    clear_route_cache_available: Cell<bool>,
    /// PRNG state for random splits (a VM is single-threaded).
    rng: Cell<WyRand>,
}

struct SubsetRouterRoot {
    shared: Option<Rc<Shared>>,
}

impl SubsetRouterRoot {
    fn new() -> Self {
        Self { shared: None }
    }
}

impl Context for SubsetRouterRoot {}

impl RootContext for SubsetRouterRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let json = self.get_plugin_configuration().unwrap_or_default();
        let router = match crate::load(&json) {
            Ok(router) => router,
            Err(errors) => {
                for error in &errors {
                    log::error!("subset-router: invalid configuration: {error}");
                }
                log::error!(
                    "subset-router: configuration rejected ({} error(s)); {}",
                    errors.len(),
                    if self.shared.is_some() {
                        "the previous configuration stays in effect"
                    } else {
                        "no configuration is active"
                    }
                );
                return false;
            }
        };
        match Shared::new(router, self.shared.as_ref().map(|s| s.rng.get())) {
            Ok(shared) => {
                log::info!(
                    "subset-router: configuration accepted: {} rule(s) + default, {} decision counter(s)",
                    shared.router.rule_names().count() - 1,
                    shared.decision_metrics.len()
                );
                self.shared = Some(Rc::new(shared));
                true
            }
            Err(status) => {
                log::error!("subset-router: could not define stats: {status:?}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RequestContext {
            shared: self.shared.clone(),
            served_slot: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Shared {
    fn new(router: Router, rng: Option<WyRand>) -> Result<Self, Status> {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name);
        let decision_metrics = router
            .slots()
            .iter()
            .map(|slot| counter(&slot.stat_name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            decision_metrics,
            spoofed_metric: counter("subset_router.spoofed_header_removed")?,
            sticky_missing_metric: counter("subset_router.sticky_key_missing")?,
            clear_route_cache_available: Cell::new(true),
            rng: Cell::new(rng.unwrap_or_else(|| WyRand::new(seed()))),
            router,
        })
    }
}

/// One random seed per VM from the host's entropy (WASI `random_get`); the clock if that fails.
fn seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
    })
}

struct RequestContext {
    shared: Option<Rc<Shared>>,
    /// The decision's stat slot, for `responseHeader`.
    served_slot: Option<usize>,
}

impl Context for RequestContext {}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(shared) = self.shared.clone() {
            self.served_slot = route_request(&shared);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let (Some(shared), Some(slot)) = (&self.shared, self.served_slot) {
            if let (Some(name), Some(slot)) = (
                shared.router.response_header(),
                shared.router.slots().get(slot),
            ) {
                let _ = hostcalls::set_map_value(
                    MapType::HttpResponseHeaders,
                    name,
                    Some(&slot.subset),
                );
            }
        }
        Action::Continue
    }
}

/// Strips forged routing headers, decides, writes the decision. Returns the decision's slot.
/// Host-call failures are ignored: a request never fails because of the filter.
fn route_request(shared: &Shared) -> Option<usize> {
    let router = &shared.router;
    let raw = request_header_pairs();
    let source = if router.uses_source_ip() {
        hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()
            .and_then(|raw| request::parse_peer_address(&raw))
    } else {
        None
    };
    // Decoded once; every lookup below reads this table.
    let view = DecodedRequest::new(HeaderPairs::new(&raw), source);

    // 1. A client can never choose the upstream: remove every value it sent for our headers.
    let mut spoofed = false;
    for name in [router.cluster_header(), router.subset_header()]
        .into_iter()
        .flatten()
    {
        if view.first_header(name).is_some() {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
            spoofed = true;
        }
    }
    if spoofed {
        let _ = hostcalls::increment_metric(shared.spoofed_metric, 1);
    }

    // 2. Decide.
    let mut rng = shared.rng.get();
    let decision = router.decide(&view, &mut rng);
    shared.rng.set(rng);
    let decision = decision?;

    // 3. Write it and let Envoy's router see the new headers.
    if let Some(name) = router.cluster_header() {
        let _ = hostcalls::set_map_value(
            MapType::HttpRequestHeaders,
            name,
            Some(&decision.target.cluster),
        );
    }
    if let Some(name) = router.subset_header() {
        let _ = hostcalls::set_map_value(
            MapType::HttpRequestHeaders,
            name,
            Some(&decision.target.subset),
        );
    }
    if shared.clear_route_cache_available.get() {
        if let Err(Status::NotFound) =
            hostcalls::call_foreign_function("clear_route_cache", Some(&[]))
        {
            // Older Envoys clear the route cache by themselves when a filter changes headers.
            shared.clear_route_cache_available.set(false);
        }
    }

    // 4. Count it.
    if let Some(&metric) = shared.decision_metrics.get(decision.target.slot) {
        let _ = hostcalls::increment_metric(metric, 1);
    }
    if decision.sticky_key_missing {
        let _ = hostcalls::increment_metric(shared.sticky_missing_metric, 1);
    }
    Some(decision.target.slot)
}

/// The request header map in the ABI serialisation, in one host call, without the per-header
/// `String` allocations (and UTF-8 assumptions) of the SDK's `get_http_request_headers`.
fn request_header_pairs() -> Vec<u8> {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> Status;
    }
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through the SDK's `proxy_on_memory_allocate`
    // (a leaked `Vec<u8>` of exactly `size` bytes) and its length; we take that ownership back.
    unsafe {
        match proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
            Status::Ok if !data.is_null() && size > 0 => Vec::from_raw_parts(data, size, size),
            _ => Vec::new(),
        }
    }
}
