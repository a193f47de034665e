//! The cluster-specifier form of the native build: the route's
//! `inline_cluster_specifier_plugin` asks the module for the cluster, instead of an HTTP filter
//! writing `clusterHeader` for the route to read. The decision is the same
//! [`Filter::on_request`] as the HTTP filter's; only the host differs:
//!
//! * the decision's `clusterHeader` value becomes the route's cluster (`set_cluster_name`), and
//!   nothing is written to the request;
//! * a client-sent `clusterHeader` is still counted in `spoofed_header_removed` but needs no
//!   removal: the route no longer reads that header, so it cannot choose anything;
//! * there is no route cache to clear: the selection *is* the route's cluster.
//!
//! What needs a stream cannot be had here, so a configuration that uses it is refused with a
//! `path: reason` line per feature ([`route_form::load`]): `subsetHeader` (a header write),
//! `responseHeader` and `guard` (they need the response), `ramp` (it moves on a tick, which only
//! the HTTP filter's configuration has), `clusterHeader: null`.

use std::net::IpAddr;

use subset_router_core::adapter::{counter_names, load_logged_with, Filter, Verdict};
use subset_router_core::host::{Counters, HostCall, HostError, RequestHost, RouteCache};
use subset_router_core::request::{parse_peer_address, HeaderSource};
use subset_router_core::rng::WyRand;
use subset_router_core::route_form;

use crate::ffi::cluster_specifier::{SelectContext, SpecifierStats};
use crate::ffi::{self, LogLevel};
use crate::module::{define_all, EnvoyLog, FILTER_NAME};
use crate::process::NativeClock;

/// One accepted cluster-specifier configuration, shared by every worker.
#[derive(Debug)]
pub struct SpecifierConfig {
    filter: Filter,
    /// Envoy's counter id per core counter index (the order of [`counter_names`]).
    counter_ids: Vec<usize>,
    stats: SpecifierStats,
}

// Envoy hands the configuration to every worker thread as a raw pointer (`ffi`): checked here,
// so that a field that is not thread-safe fails the build instead of racing.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SpecifierConfig>();
};

/// `on_cluster_specifier_config_new`: the same JSON as the HTTP filter's `filter_config`.
pub fn new_config(stats: SpecifierStats, name: &[u8], json: &[u8]) -> Option<SpecifierConfig> {
    if name != FILTER_NAME.as_bytes() {
        ffi::log(
            LogLevel::Error,
            &format!(
                "subset-router: specifier_name {:?} is not {FILTER_NAME:?}; rejected",
                String::from_utf8_lossy(name)
            ),
        );
        return None;
    }
    let router = load_logged_with(route_form::load, json, &EnvoyLog, None)?;
    let counter_ids = define_all("counter", &counter_names(&router), |name| {
        stats.define_counter(name)
    })?;
    ffi::log(
        LogLevel::Info,
        &format!(
            "subset-router: cluster-specifier configuration accepted: {} rule(s) + default, {} \
             counter(s)",
            router.rule_names().count().saturating_sub(1),
            counter_ids.len()
        ),
    );
    Some(SpecifierConfig {
        filter: Filter::for_plugin(router, FILTER_NAME),
        counter_ids,
        stats,
    })
}

/// `on_cluster_specifier_select`: the decision, as the route's cluster. `false` when the
/// decision names no cluster (the route's own cluster then serves).
///
/// Envoy selects again when a retry re-selects the cluster or a filter refreshes the route. The
/// random draws come from Envoy's random value for the request, the same in every selection,
/// so a request keeps its subset across retries (sticky keys keep theirs anyway); each
/// selection is counted.
pub fn select(config: &SpecifierConfig, context: &mut SelectContext<'_>) -> bool {
    let mut rng = WyRand::new(context.random_value());
    let mut selection = Selection {
        context,
        cluster_header: config.filter.router().cluster_header(),
        chosen: false,
    };
    let verdict =
        config
            .filter
            .on_request(&mut selection, &mut rng, config, &EnvoyLog, &NativeClock);
    matches!(verdict, Verdict::Continue(_)) && selection.chosen
}

impl Counters for SpecifierConfig {
    fn increment(&self, counter: usize, by: u64) {
        if let Some(&id) = self.counter_ids.get(counter) {
            // A failed increment is dropped: counting never fails a request.
            let _ = self.stats.increment(id, by);
        }
    }
}

/// The core's request host over one selection.
struct Selection<'c, 'hook, 'cfg> {
    context: &'c mut SelectContext<'hook>,
    cluster_header: Option<&'cfg str>,
    chosen: bool,
}

impl RequestHost for Selection<'_, '_, '_> {
    fn with_request_headers<R>(
        &mut self,
        f: impl FnOnce(HeaderSource<'_>) -> R,
    ) -> Result<R, HostError> {
        self.context
            .with_headers(|pairs| f(HeaderSource::Pairs(pairs)))
            .ok_or(HostError {
                call: HostCall::ReadRequestHeaders,
                code: 0,
            })
    }

    fn source_address(&mut self) -> Result<Option<IpAddr>, HostError> {
        Ok(self.context.source_address(parse_peer_address).flatten())
    }

    /// Nothing to remove: the route does not read the header, so a forged one chooses nothing.
    fn remove_request_header(&mut self, _name: &str) -> Result<(), HostError> {
        Ok(())
    }

    /// The cluster header's value is the route's cluster; no other header is ever set (the
    /// configuration has no `subsetHeader`).
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if self.cluster_header == Some(name) {
            self.context.set_cluster_name(value);
            self.chosen = true;
        }
        Ok(())
    }

    /// The selection is the route's cluster: there is no cached route to clear.
    fn clear_route_cache(&mut self) -> Result<RouteCache, HostError> {
        Ok(RouteCache::Unsupported)
    }

    /// Unreachable: removing a header never fails here.
    fn send_local_reply(&mut self, _status: u32, _body: &str) -> Result<(), HostError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
