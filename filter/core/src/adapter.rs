//! What every build of the filter does per request, written once over the [`crate::host`]
//! traits: strip forged routing headers, decide on the stripped view, write the decision, make
//! the router recompute the route, count. The proxy-wasm and dynamic-module adapters only
//! translate these calls to their FFI.
//!
//! Host-call failures never fail a request: each is counted in `subset_router.host_call_failed`
//! (and logged as a warning the first time each kind fails in a VM), and the request goes on
//! with what did succeed. One exception keeps the security promise: if a client's forged
//! routing header could be neither removed nor overwritten, the request is answered locally
//! with 503 instead of being routed where the client asked.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::host::{Counters, HostError, Log, RequestHost, ResponseHost, RouteCache};
use crate::request::{DecodedRequest, HeaderSource, RequestView};
use crate::rng::RandomSource;
use crate::router::Router;

/// Counter names that are not decisions, in index order after the decision slots.
const SPOOFED: &str = "subset_router.spoofed_header_removed";
const STICKY_KEY_MISSING: &str = "subset_router.sticky_key_missing";
const HOST_CALL_FAILED: &str = "subset_router.host_call_failed";

/// Status and body of the local reply sent when a forged routing header cannot be removed.
pub const FORGED_HEADER_REPLY: (u32, &str) =
    (503, "subset-router: a forged routing header could not be removed\n");

/// Every counter an adapter defines when a configuration is accepted, in index order: one per
/// decision slot ([`Router::slots`]), then `spoofed_header_removed`, `sticky_key_missing`,
/// `host_call_failed`. All exist, at 0, before the first request.
pub fn counter_names(router: &Router) -> Vec<String> {
    router
        .slots()
        .iter()
        .map(|slot| slot.stat_name.clone())
        .chain([SPOOFED, STICKY_KEY_MISSING, HOST_CALL_FAILED].map(String::from))
        .collect()
}

/// A compiled configuration plus the little per-VM (or per-module) state the request path
/// keeps. Shared by every request; safe to share between threads.
#[derive(Debug)]
pub struct Filter {
    router: Router,
    /// Cleared once the host says it has no `clear_route_cache`, to stop asking.
    route_cache_supported: AtomicBool,
    /// One bit per [`HostCall`] that has already been logged.
    warned: AtomicU32,
}

/// What the request path leaves for the response path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Served {
    /// The decision's slot ([`Router::slots`]), if a decision was written.
    pub slot: Option<usize>,
}

/// Whether the request continues to the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue(Served),
    /// A local reply was sent (or attempted): stop iterating filters.
    Stop,
}

impl Filter {
    pub fn new(router: Router) -> Self {
        Self {
            router,
            route_cache_supported: AtomicBool::new(true),
            warned: AtomicU32::new(0),
        }
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    fn spoofed_counter(&self) -> usize {
        self.router.slots().len()
    }

    fn sticky_missing_counter(&self) -> usize {
        self.router.slots().len() + 1
    }

    fn host_failed_counter(&self) -> usize {
        self.router.slots().len() + 2
    }

    /// `on_http_request_headers`.
    pub fn on_request_headers(
        &self,
        host: &mut impl RequestHost,
        rng: &mut impl RandomSource,
        counters: &impl Counters,
        log: &impl Log,
    ) -> Verdict {
        let router = &self.router;
        let own_headers = [router.cluster_header(), router.subset_header()];
        let source = if router.uses_source_ip() {
            host.source_address()
                .unwrap_or_else(|e| self.failed(e, counters, log, None))
        } else {
            None
        };

        // Decide on the request as the router will see it: without the routing headers.
        let read = host.with_request_headers(|headers| {
            let view = DecodedRequest::new(headers, source);
            let forged = own_headers.map(|name| name.is_some_and(|n| view.first_header(n).is_some()));
            let stripped = WithoutRoutingHeaders {
                inner: &view,
                hidden: own_headers,
            };
            (forged, router.decide(&stripped, rng))
        });
        let (forged, decision) = read.unwrap_or_else(|e| {
            // Headers unreadable: remove both routing headers blindly, decide on an empty request.
            let empty: &[(&[u8], &[u8])] = &[];
            let view = DecodedRequest::new(HeaderSource::Pairs(empty), source);
            self.failed(e, counters, log, ([true, true], router.decide(&view, rng)))
        });

        // 1. A client can never choose the upstream: remove every value it sent for our headers.
        let mut stuck = [false; 2];
        for ((name, forged), stuck) in own_headers.iter().zip(forged).zip(stuck.iter_mut()) {
            if let (Some(name), true) = (name, forged) {
                if let Err(e) = host.remove_request_header(name) {
                    *stuck = self.failed(e, counters, log, true);
                }
            }
        }
        if forged.iter().zip(own_headers).any(|(&f, h)| f && h.is_some()) {
            counters.increment(self.spoofed_counter(), 1);
        }

        // 2. Write the decision (a write replaces, so it also overwrites a forged value).
        if let Some(target) = decision.map(|d| d.target) {
            let values = [target.cluster.as_str(), target.subset.as_str()];
            for ((name, value), stuck) in own_headers.iter().zip(values).zip(stuck.iter_mut()) {
                if let Some(name) = name {
                    match host.set_request_header(name, value) {
                        Ok(()) => *stuck = false,
                        Err(e) => self.failed(e, counters, log, ()),
                    }
                }
            }
        }
        if stuck.contains(&true) {
            let (status, body) = FORGED_HEADER_REPLY;
            if let Err(e) = host.send_local_reply(status, body) {
                self.failed(e, counters, log, ());
            }
            return Verdict::Stop;
        }

        // 3. Let the router see the new headers.
        if self.route_cache_supported.load(Ordering::Relaxed) {
            match host.clear_route_cache() {
                Ok(RouteCache::Cleared) => {}
                Ok(RouteCache::Unsupported) => {
                    self.route_cache_supported.store(false, Ordering::Relaxed)
                }
                Err(e) => self.failed(e, counters, log, ()),
            }
        }

        // 4. Count it.
        let Some(decision) = decision else {
            return Verdict::Continue(Served::default());
        };
        counters.increment(decision.target.slot, 1);
        if decision.sticky_key_missing {
            counters.increment(self.sticky_missing_counter(), 1);
        }
        Verdict::Continue(Served {
            slot: Some(decision.target.slot),
        })
    }

    /// `on_http_response_headers`: names the serving subset in `responseHeader`, if configured.
    pub fn on_response_headers(
        &self,
        served: Served,
        host: &mut impl ResponseHost,
        counters: &impl Counters,
        log: &impl Log,
    ) {
        let (Some(name), Some(slot)) = (self.router.response_header(), served.slot) else {
            return;
        };
        if let Some(slot) = self.router.slots().get(slot) {
            if let Err(e) = host.set_response_header(name, &slot.subset) {
                self.failed(e, counters, log, ());
            }
        }
    }

    /// Counts a failed host call, logs the first failure of each kind, and returns `fallback`.
    fn failed<T>(&self, e: HostError, counters: &impl Counters, log: &impl Log, fallback: T) -> T {
        counters.increment(self.host_failed_counter(), 1);
        let bit = 1u32 << (e.call as u32);
        if self.warned.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            log.warn(&format!(
                "subset-router: host call failed: {} (status {}); the request continues \
                 (counted in {HOST_CALL_FAILED}; further failures of this call are not logged)",
                e.call.name(),
                e.code
            ));
        }
        fallback
    }
}

/// The request without the filter's own routing headers: whatever a client sent in them is
/// invisible to the rules (validation already refuses rules that name them; this is the
/// second line of defence).
struct WithoutRoutingHeaders<'v, V> {
    inner: &'v V,
    hidden: [Option<&'v str>; 2],
}

impl<V: RequestView> WithoutRoutingHeaders<'_, V> {
    fn hides(&self, name: &str) -> bool {
        self.hidden
            .iter()
            .flatten()
            .any(|h| h.eq_ignore_ascii_case(name))
    }
}

impl<V: RequestView> RequestView for WithoutRoutingHeaders<'_, V> {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let hidden = self.hides(name);
        self.inner.header_values(name).filter(move |_| !hidden)
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.inner.source_ip()
    }

    fn first_header<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        if self.hides(name) {
            None
        } else {
            self.inner.first_header(name)
        }
    }
}

#[cfg(test)]
mod tests;
