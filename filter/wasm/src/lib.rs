//! subset-router as a proxy-wasm filter (`dist/subset_router.wasm`): the thin adapter between
//! the proxy-wasm ABI and the decision core. Every decision and every step of the request path
//! is [`subset_router_core::adapter::Filter`]; this crate only maps its host traits to host
//! calls ([`ffi`], the one module with `unsafe`) and keeps the per-VM state.
//!
//! The SDK is used for context dispatch and memory allocation only: none of its `hostcalls`
//! (which `panic!` on an unexpected status) is called.
#![deny(unsafe_code)]
// The request path must never panic: no unwrap, expect, panic or fallible indexing outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

mod ffi;

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use subset_router_core::adapter::{counter_names, Filter, Served, Verdict};
use subset_router_core::host::{
    Counters, HostCall, HostError, Log, RequestHost, ResponseHost, RouteCache,
};
use subset_router_core::request::{self, HeaderPairs, HeaderSource};
use subset_router_core::rng::WyRand;

use ffi::HeaderMap;

/// proxy-wasm log levels.
const INFO: u32 = 2;
const WARN: u32 = 3;
const ERROR: u32 = 4;

/// `source.address`, serialised once (path segments joined by NUL).
const SOURCE_ADDRESS: &[u8] = b"source\0address";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { vm: None }) });
}}

/// The compiled configuration and the counters of this VM, shared by every request.
struct Vm {
    filter: Filter,
    /// Metric id per counter index ([`counter_names`] order).
    metrics: Vec<u32>,
    /// PRNG state for random splits (a VM is single-threaded).
    rng: Cell<WyRand>,
}

struct Root {
    vm: Option<Rc<Vm>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let json = ffi::plugin_configuration().unwrap_or_default();
        let router = match subset_router_core::load(&json) {
            Ok(router) => router,
            Err(errors) => {
                for error in &errors {
                    ffi::log(
                        ERROR,
                        &format!("subset-router: invalid configuration: {error}"),
                    );
                }
                ffi::log(
                    ERROR,
                    &format!(
                        "subset-router: configuration rejected ({} error(s)); {}",
                        errors.len(),
                        if self.vm.is_some() {
                            "the previous configuration stays in effect"
                        } else {
                            "no configuration is active"
                        }
                    ),
                );
                return false;
            }
        };
        let names = counter_names(&router);
        let metrics = match names
            .iter()
            .map(|name| ffi::define_counter(name))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(metrics) => metrics,
            Err(status) => {
                ffi::log(
                    ERROR,
                    &format!("subset-router: could not define stats (status {status})"),
                );
                return false;
            }
        };
        let rng = self.vm.as_ref().map_or_else(|| WyRand::new(seed()), |vm| vm.rng.get());
        ffi::log(
            INFO,
            &format!(
                "subset-router: configuration accepted: {} rule(s) + default, {} counter(s)",
                router.rule_names().count().saturating_sub(1),
                metrics.len()
            ),
        );
        self.vm = Some(Rc::new(Vm {
            filter: Filter::new(router),
            metrics,
            rng: Cell::new(rng),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            vm: self.vm.clone(),
            served: Served::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One random seed per VM from the host's entropy (WASI `random_get`); a constant if that
/// fails (random splits then repeat across VMs, which skews nothing within one).
fn seed() -> u64 {
    getrandom::u64().unwrap_or(0x9e37_79b9_7f4a_7c15)
}

struct Request {
    vm: Option<Rc<Vm>>,
    served: Served,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(vm) = &self.vm else {
            return Action::Continue;
        };
        let mut rng = vm.rng.get();
        let verdict = vm
            .filter
            .on_request_headers(&mut WasmHost, &mut rng, vm.as_ref(), &WasmHost);
        vm.rng.set(rng);
        match verdict {
            Verdict::Continue(served) => {
                self.served = served;
                Action::Continue
            }
            Verdict::Stop => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(vm) = &self.vm {
            vm.filter
                .on_response_headers(self.served, &mut WasmHost, vm.as_ref(), &WasmHost);
        }
        Action::Continue
    }
}

impl Counters for Vm {
    fn increment(&self, counter: usize, by: u64) {
        if let Some(&id) = self.metrics.get(counter) {
            // A failed increment only loses a count; the request goes on.
            ffi::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }
}

/// The proxy-wasm host as the core's traits see it.
struct WasmHost;

fn status(call: HostCall, code: u32) -> Result<(), HostError> {
    match code {
        ffi::OK => Ok(()),
        code => Err(HostError { call, code }),
    }
}

impl RequestHost for WasmHost {
    fn with_request_headers<R>(
        &mut self,
        f: impl FnOnce(HeaderSource<'_>) -> R,
    ) -> Result<R, HostError> {
        let buf = ffi::header_map_pairs(HeaderMap::Request).map_err(|code| HostError {
            call: HostCall::ReadRequestHeaders,
            code,
        })?;
        Ok(f(HeaderPairs::new(&buf).into()))
    }

    fn source_address(&mut self) -> Result<Option<IpAddr>, HostError> {
        let raw = ffi::property(SOURCE_ADDRESS).map_err(|code| HostError {
            call: HostCall::SourceAddress,
            code,
        })?;
        Ok(raw.as_deref().and_then(request::parse_peer_address))
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        status(
            HostCall::RemoveRequestHeader,
            ffi::remove_header(HeaderMap::Request, name),
        )
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        status(
            HostCall::SetRequestHeader,
            ffi::replace_header(HeaderMap::Request, name, value),
        )
    }

    fn clear_route_cache(&mut self) -> Result<RouteCache, HostError> {
        match ffi::call_foreign_function("clear_route_cache") {
            ffi::OK => Ok(RouteCache::Cleared),
            ffi::NOT_FOUND => Ok(RouteCache::Unsupported),
            code => Err(HostError {
                call: HostCall::ClearRouteCache,
                code,
            }),
        }
    }

    fn send_local_reply(&mut self, status_code: u32, body: &str) -> Result<(), HostError> {
        status(
            HostCall::SendLocalReply,
            ffi::send_local_response(status_code, "subset_router_forged_header", body),
        )
    }
}

impl ResponseHost for WasmHost {
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        status(
            HostCall::SetResponseHeader,
            ffi::replace_header(HeaderMap::Response, name, value),
        )
    }
}

impl Log for WasmHost {
    fn warn(&self, message: &str) {
        ffi::log(WARN, message);
    }
}
