//! subset-router as a proxy-wasm filter (`dist/subset_router.wasm`): the thin adapter between
//! the proxy-wasm ABI and the decision core. Every decision and every step of the request path
//! is [`subset_router_core::adapter::Filter`]; this crate only maps its host traits to host
//! calls ([`ffi`], the one module with `unsafe`) and keeps the per-VM state.
//!
//! The SDK is used for context dispatch and memory allocation only: none of its `hostcalls`
//! (which `panic!` on an unexpected status) is called, directly or through its traits' default
//! methods; clippy.toml lists them and this crate denies their use.
#![deny(unsafe_code)]
#![deny(clippy::disallowed_methods)]
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
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use subset_router_core::adapter::{
    counter_names, gauge_names, load_logged, Filter, FleetQuery, Served, Verdict,
};
use subset_router_core::host::{
    CasOutcome, Clock, Counters, Gauges, HostCall, HostError, Log, RequestHost, ResponseHost,
    RouteCache, SharedStore,
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
/// The plugin's name: keeps the shared guard state of plugins sharing a VM id apart.
const PLUGIN_NAME: &[u8] = b"plugin_name";
/// Ramps move and guard counts merge once a second.
const TICK_MS: u32 = 1000;
/// The largest answer to a fleet query read (a Prometheus vector of a few series is < 1 KiB).
const FLEET_ANSWER_MAX_BYTES: usize = 64 * 1024;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root {
        vm: None,
        fleet_calls: HashMap::new(),
    }) });
}}

/// The compiled configuration and the counters of this VM, shared by every request.
struct Vm {
    filter: Filter,
    /// Metric id per counter index ([`counter_names`] order).
    metrics: Vec<u32>,
    /// Metric id per gauge index ([`gauge_names`] order).
    gauges: Vec<u32>,
    /// PRNG state for random splits (a VM is single-threaded).
    rng: Cell<WyRand>,
}

struct Root {
    vm: Option<Rc<Vm>>,
    /// Fleet queries in flight, by the host's call token.
    fleet_calls: HashMap<u32, FleetQuery>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        let (Some(query), Some(vm)) = (self.fleet_calls.remove(&token_id), &self.vm) else {
            return;
        };
        // Envoy answers a call that failed (timeout, reset, no healthy host) with no headers.
        let answer = if num_headers == 0 {
            Err("no response: timed out, reset or refused".to_owned())
        } else {
            let status = ffi::header_value(HeaderMap::HttpCallResponse, ":status")
                .ok()
                .flatten()
                .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u64>().ok());
            match status {
                None => Err("an answer without a readable :status".to_owned()),
                Some(status) => ffi::http_call_response_body(FLEET_ANSWER_MAX_BYTES)
                    .map(|body| (status, body))
                    .map_err(|code| format!("its body could not be read (status {code})")),
            }
        };
        let answer = match &answer {
            Ok((status, body)) => Ok((*status, body.as_slice())),
            Err(why) => Err(why.as_str()),
        };
        vm.filter.on_fleet_answer(
            &query,
            answer,
            &WasmStore,
            &WasmClock,
            vm.as_ref(),
            &WasmHost,
        );
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let json = ffi::plugin_configuration().unwrap_or_default();
        let Some(router) = load_logged(&json, &WasmHost, Some(self.vm.is_some())) else {
            return false;
        };
        let defined = counter_names(&router)
            .iter()
            .map(|name| ffi::define_counter(name))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|metrics| {
                let gauges = gauge_names(&router)
                    .iter()
                    .map(|name| ffi::define_gauge(name))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((metrics, gauges))
            });
        let (metrics, gauges) = match defined {
            Ok(ids) => ids,
            Err(status) => {
                ffi::log(
                    ERROR,
                    &format!("subset-router: could not define stats (status {status})"),
                );
                return false;
            }
        };
        let rng = self
            .vm
            .as_ref()
            .map_or_else(|| WyRand::new(seed()), |vm| vm.rng.get());
        let plugin = ffi::property(PLUGIN_NAME)
            .ok()
            .flatten()
            .map(|name| String::from_utf8_lossy(&name).into_owned())
            .unwrap_or_default();
        ffi::log(
            INFO,
            &format!(
                "subset-router: configuration accepted: {} rule(s) + default, {} counter(s), \
                 {} ramp(s), {} guard(s)",
                router.rule_names().count().saturating_sub(1),
                metrics.len(),
                router.ramps().len(),
                router.guards().len()
            ),
        );
        let vm = Rc::new(Vm {
            filter: Filter::for_plugin(router, &plugin),
            metrics,
            gauges,
            rng: Cell::new(rng),
        });
        // Envoy first runs on_configure in a throwaway VM on the main thread: `start` touches
        // no shared state (only a tick joins the proxy-wide guard state), and should that VM
        // tick, it joins the same configuration's state with no traffic of its own: it can
        // neither reset the guards nor count anything twice.
        vm.filter
            .start(&WasmClock, vm.as_ref(), vm.as_ref(), &WasmHost);
        // Ticks also run without ramps or guards: the first one records this configuration
        // as the plugin's current one, which is what resets the guards of a later one.
        let status = ffi::set_tick_period_ms(TICK_MS);
        if status != ffi::OK {
            ffi::log(
                WARN,
                &format!(
                    "subset-router: could not set the tick period (status {status}): ramps keep \
                     their share at configure time and guards never trip"
                ),
            );
        }
        self.vm = Some(vm);
        true
    }

    fn on_tick(&mut self) {
        let Some(vm) = self.vm.clone() else {
            return;
        };
        let rounds = vm
            .filter
            .on_tick(&WasmStore, &WasmClock, vm.as_ref(), vm.as_ref(), &WasmHost);
        for query in rounds {
            self.dispatch_fleet_query(&vm, query);
        }
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

impl Root {
    /// Sends one fleet round through Envoy's cluster; the answer arrives in
    /// `on_http_call_response`. A call the host refuses (an unknown cluster) is a failed round.
    fn dispatch_fleet_query(&mut self, vm: &Vm, query: FleetQuery) {
        let headers = vec![
            (":method", "GET"),
            (":path", query.path.as_str()),
            (":authority", query.authority.as_str()),
            ("accept", "application/json"),
        ];
        // The SDK's dispatch is the one way to have the answer routed back to this context (it
        // registers the call's token with the SDK's dispatcher). Envoy's `proxy_http_call`
        // answers Ok, BadArgument (unknown cluster, bad headers) or InternalFailure, all of
        // which it returns as values; no other status reaches the SDK's panic.
        #[allow(clippy::disallowed_methods)]
        let sent = self.dispatch_http_call(
            &query.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(query.timeout_ms),
        );
        match sent {
            Ok(token) => {
                self.fleet_calls.insert(token, query);
            }
            Err(status) => {
                let why = format!("the call could not be sent (status {})", status as u32);
                vm.filter
                    .on_fleet_answer(&query, Err(&why), &WasmStore, &WasmClock, vm, &WasmHost);
            }
        }
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

impl Request {
    /// The stream is over: an observed request without response headers counts as an error.
    fn done(&mut self) {
        if let Some(vm) = &self.vm {
            vm.filter.on_stream_done(&mut self.served);
        }
    }
}

impl Context for Request {
    fn on_done(&mut self) -> bool {
        self.done();
        true
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(vm) = &self.vm else {
            return Action::Continue;
        };
        let (action, served) = request_headers(
            &vm.filter,
            &mut WasmHost,
            &vm.rng,
            vm.as_ref(),
            &WasmHost,
            &WasmClock,
        );
        self.served = served;
        action
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(vm) = &self.vm {
            vm.filter.on_response(
                &mut self.served,
                &mut WasmHost,
                vm.as_ref(),
                &WasmHost,
                &WasmClock,
            );
        }
        Action::Continue
    }

    // Both end-of-stream hooks close the observation (the first one counts): Envoy calls
    // `on_log` at access-log time and `on_done` when the stream is destroyed.
    fn on_log(&mut self) {
        self.done();
    }
}

/// `on_http_request_headers` over any host: the core decides, and its verdict becomes the
/// ABI's action.
fn request_headers(
    filter: &Filter,
    host: &mut impl RequestHost,
    rng: &Cell<WyRand>,
    counters: &impl Counters,
    log: &impl Log,
    clock: &impl Clock,
) -> (Action, Served) {
    let mut draws = rng.get();
    let verdict = filter.on_request(host, &mut draws, counters, log, clock);
    rng.set(draws);
    match verdict {
        Verdict::Continue(served) => (Action::Continue, served),
        // Envoy is sending the local reply, or resets the stream once this callback returns.
        // Should both have failed, the request waits here for Envoy's stream timeout: going on
        // would route it by the client's own routing header.
        Verdict::Stop => (Action::Pause, Served::default()),
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

impl Gauges for Vm {
    fn set_gauge(&self, gauge: usize, value: u64) {
        if let Some(&id) = self.gauges.get(gauge) {
            // A failed write only leaves the gauge stale until the next tick.
            ffi::record_metric(id, value);
        }
    }
}

/// The proxy-wasm host as the core's traits see it.
struct WasmHost;

/// The host's clocks: `proxy_get_current_time_nanoseconds` (wall) and WASI's monotonic clock.
struct WasmClock;

impl Clock for WasmClock {
    fn wall_ns(&self) -> Result<u64, HostError> {
        ffi::current_time_ns().map_err(|code| HostError {
            call: HostCall::WallClock,
            code,
        })
    }

    fn monotonic_ns(&self) -> Result<u64, HostError> {
        ffi::monotonic_ns().map_err(|code| HostError {
            call: HostCall::MonotonicClock,
            code,
        })
    }
}

/// proxy-wasm shared data: process-wide per VM id, with the CAS rules [`SharedStore`] states.
struct WasmStore;

impl SharedStore for WasmStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        ffi::get_shared_data(key).map_err(|code| HostError {
            call: HostCall::SharedDataGet,
            code,
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<CasOutcome, HostError> {
        match ffi::set_shared_data(key, value, cas) {
            ffi::OK => Ok(CasOutcome::Stored),
            ffi::CAS_MISMATCH => Ok(CasOutcome::Mismatch),
            code => Err(HostError {
                call: HostCall::SharedDataSet,
                code,
            }),
        }
    }
}

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

    fn reset_stream(&mut self) -> Result<(), HostError> {
        status(HostCall::ResetStream, ffi::reset_request_stream())
    }
}

impl ResponseHost for WasmHost {
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        status(
            HostCall::SetResponseHeader,
            ffi::replace_header(HeaderMap::Response, name, value),
        )
    }

    fn response_status(&mut self) -> Result<Option<u32>, HostError> {
        let value =
            ffi::header_value(HeaderMap::Response, ":status").map_err(|code| HostError {
                call: HostCall::ReadResponseStatus,
                code,
            })?;
        Ok(value.and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok()))
    }
}

impl Log for WasmHost {
    fn warn(&self, message: &str) {
        ffi::log(WARN, message);
    }

    fn error(&self, message: &str) {
        ffi::log(ERROR, message);
    }

    fn info(&self, message: &str) {
        ffi::log(INFO, message);
    }
}

#[cfg(test)]
mod tests;
