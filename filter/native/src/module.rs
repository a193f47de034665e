//! The safe side of the module: configuration load, and the core's host traits over the
//! [`crate::ffi`] handles. Every per-request decision and bookkeeping step is
//! [`subset_router_core::adapter::Filter`]'s; this only translates.

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::Arc;

use subset_router_core::adapter::{counter_names, Filter, Served, Verdict};
use subset_router_core::host::{
    Counters, HostCall, HostError, Log, RequestHost, ResponseHost, RouteCache,
};
use subset_router_core::request::{parse_peer_address, HeaderSource};
use subset_router_core::rng::WyRand;

use crate::ffi::{self, ConfigHandle, FilterHandle, HeaderMap, LogLevel, StatsHandle};

/// The `filter_name` this module answers to (Envoy config `filter_name: subset_router`).
pub const FILTER_NAME: &str = "subset_router";

/// Response-code details of a local reply sent by the filter (Envoy's `%RESPONSE_CODE_DETAILS%`).
const LOCAL_REPLY_DETAILS: &[u8] = b"subset_router_forged_routing_header";

/// One accepted configuration, shared (read-only, `Sync`) by every stream on every worker.
#[derive(Debug)]
pub struct FilterConfig {
    filter: Filter,
    /// Envoy's counter id per core counter index (the order of [`counter_names`]).
    counter_ids: Vec<usize>,
}

/// Per-stream state: the configuration and what the request path left for the response.
#[derive(Debug)]
pub struct StreamFilter {
    config: Arc<FilterConfig>,
    served: Served,
}

impl StreamFilter {
    pub fn new(config: Arc<FilterConfig>) -> Self {
        Self {
            config,
            served: Served::default(),
        }
    }
}

/// `on_http_filter_config_new`: validates the JSON configuration and defines every counter.
/// `None` (after logging why at error level) makes Envoy reject the configuration.
pub fn new_config(handle: &ConfigHandle<'_>, name: &[u8], json: &[u8]) -> Option<FilterConfig> {
    if name != FILTER_NAME.as_bytes() {
        ffi::log(
            LogLevel::Error,
            &format!(
                "subset-router: unknown filter_name {:?}: this module provides \"{FILTER_NAME}\"; \
                 configuration rejected",
                String::from_utf8_lossy(name)
            ),
        );
        return None;
    }
    let router = match subset_router_core::load(json) {
        Ok(router) => router,
        Err(errors) => {
            for error in &errors {
                ffi::log(
                    LogLevel::Error,
                    &format!("subset-router: invalid configuration: {error}"),
                );
            }
            ffi::log(
                LogLevel::Error,
                &format!(
                    "subset-router: configuration rejected ({} error(s))",
                    errors.len()
                ),
            );
            return None;
        }
    };
    // Defined now, while Envoy still allows it (it freezes stat creation once this hook
    // returns), so every counter exists at 0 before the first request.
    let names = counter_names(&router);
    let mut counter_ids = Vec::with_capacity(names.len());
    for name in &names {
        match handle.define_counter(name) {
            Ok(id) => counter_ids.push(id),
            Err(code) => {
                ffi::log(
                    LogLevel::Error,
                    &format!(
                        "subset-router: could not define counter {name} (metrics result {code}); \
                         configuration rejected"
                    ),
                );
                return None;
            }
        }
    }
    ffi::log(
        LogLevel::Info,
        &format!(
            "subset-router: configuration accepted: {} rule(s) + default, {} counter(s)",
            router.rule_names().count().saturating_sub(1),
            counter_ids.len()
        ),
    );
    Some(FilterConfig {
        filter: Filter::new(router),
        counter_ids,
    })
}

/// `on_http_filter_request_headers`.
pub fn on_request_headers(stream: &mut StreamFilter, handle: &mut FilterHandle<'_>) -> Verdict {
    let config = &*stream.config;
    let counters = EnvoyCounters {
        stats: handle.stats(),
        ids: &config.counter_ids,
    };
    let verdict = with_rng(|rng| {
        config
            .filter
            .on_request_headers(&mut EnvoyRequest { handle }, rng, &counters, &EnvoyLog)
    });
    if let Verdict::Continue(served) = verdict {
        stream.served = served;
    }
    verdict
}

/// `on_http_filter_response_headers`.
pub fn on_response_headers(stream: &StreamFilter, handle: &mut FilterHandle<'_>) {
    let config = &*stream.config;
    let counters = EnvoyCounters {
        stats: handle.stats(),
        ids: &config.counter_ids,
    };
    config.filter.on_response_headers(
        stream.served,
        &mut EnvoyResponse { handle },
        &counters,
        &EnvoyLog,
    );
}

fn failed(call: HostCall) -> HostError {
    // The dynamic-module callbacks report a bool, not a status number.
    HostError { call, code: 0 }
}

struct EnvoyRequest<'h, 'hook> {
    handle: &'h mut FilterHandle<'hook>,
}

impl RequestHost for EnvoyRequest<'_, '_> {
    fn with_request_headers<R>(
        &mut self,
        f: impl FnOnce(HeaderSource<'_>) -> R,
    ) -> Result<R, HostError> {
        self.handle
            .with_headers(HeaderMap::Request, |pairs| f(HeaderSource::Pairs(pairs)))
            .ok_or(failed(HostCall::ReadRequestHeaders))
    }

    fn source_address(&mut self) -> Result<Option<IpAddr>, HostError> {
        // `ip:port` (`[ip]:port` for IPv6); anything else (a pipe) is no IP address.
        self.handle
            .source_address(parse_peer_address)
            .ok_or(failed(HostCall::SourceAddress))
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        if self
            .handle
            .set_header(HeaderMap::Request, name.as_bytes(), None)
        {
            Ok(())
        } else {
            Err(failed(HostCall::RemoveRequestHeader))
        }
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if self
            .handle
            .set_header(HeaderMap::Request, name.as_bytes(), Some(value.as_bytes()))
        {
            Ok(())
        } else {
            Err(failed(HostCall::SetRequestHeader))
        }
    }

    fn clear_route_cache(&mut self) -> Result<RouteCache, HostError> {
        // Always present in the dynamic-module ABI; required for the router to see the header.
        self.handle.clear_route_cache();
        Ok(RouteCache::Cleared)
    }

    fn send_local_reply(&mut self, status: u32, body: &str) -> Result<(), HostError> {
        self.handle
            .send_response(status, body.as_bytes(), LOCAL_REPLY_DETAILS);
        Ok(())
    }
}

struct EnvoyResponse<'h, 'hook> {
    handle: &'h mut FilterHandle<'hook>,
}

impl ResponseHost for EnvoyResponse<'_, '_> {
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if self
            .handle
            .set_header(HeaderMap::Response, name.as_bytes(), Some(value.as_bytes()))
        {
            Ok(())
        } else {
            Err(failed(HostCall::SetResponseHeader))
        }
    }
}

struct EnvoyCounters<'a, 'hook> {
    stats: StatsHandle<'hook>,
    ids: &'a [usize],
}

impl Counters for EnvoyCounters<'_, '_> {
    fn increment(&self, counter: usize, by: u64) {
        if let Some(&id) = self.ids.get(counter) {
            // A failed increment is dropped: counting never fails a request.
            let _ = self.stats.increment(id, by);
        }
    }
}

struct EnvoyLog;

impl Log for EnvoyLog {
    fn warn(&self, message: &str) {
        ffi::log(LogLevel::Warn, message);
    }
}

thread_local! {
    /// One PRNG per worker thread, seeded on first use: no lock, no host call per request.
    static RNG: Cell<Option<WyRand>> = const { Cell::new(None) };
}

fn with_rng<R>(f: impl FnOnce(&mut WyRand) -> R) -> R {
    let mut rng = RNG
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| WyRand::new(seed()));
    let out = f(&mut rng);
    // During thread teardown the slot may be gone: the state is then simply dropped.
    let _ = RNG.try_with(|slot| slot.set(Some(rng)));
    out
}

/// A per-thread seed from the OS; the clock mixed with a stack address if that fails.
fn seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        let local = 0u8;
        nanos ^ (std::ptr::addr_of!(local) as u64).rotate_left(32)
    })
}

#[cfg(test)]
mod tests;
