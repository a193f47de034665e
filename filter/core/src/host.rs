//! What an adapter needs from its proxy, as small traits. The proxy-wasm build and the Envoy
//! dynamic-module build each implement them over their own FFI; unit tests use a fake host
//! that records every call. Every method reports failure as a value: no host status ever
//! becomes a panic or a trap.

use std::net::IpAddr;

use crate::request::HeaderSource;

/// A host call that did not succeed. `code` is the host's own status number (proxy-wasm
/// `Status`, or 0 where the host gives no number), for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    pub call: HostCall,
    pub code: u32,
}

/// Which host call failed: one counter-worthy kind per call on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCall {
    ReadRequestHeaders,
    SourceAddress,
    RemoveRequestHeader,
    SetRequestHeader,
    ClearRouteCache,
    SetResponseHeader,
    SendLocalReply,
}

impl HostCall {
    pub fn name(self) -> &'static str {
        match self {
            HostCall::ReadRequestHeaders => "read request headers",
            HostCall::SourceAddress => "read source.address",
            HostCall::RemoveRequestHeader => "remove request header",
            HostCall::SetRequestHeader => "set request header",
            HostCall::ClearRouteCache => "clear route cache",
            HostCall::SetResponseHeader => "set response header",
            HostCall::SendLocalReply => "send local reply",
        }
    }
}

/// The outcome of asking the host to recompute the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteCache {
    Cleared,
    /// The host has no such function (older Envoys clear the cache by themselves when a filter
    /// changes headers): remembered, and not asked again.
    Unsupported,
}

/// Access to the request being decided (`on_http_request_headers`).
pub trait RequestHost {
    /// Runs `f` over the whole request header map, read from the host once.
    fn with_request_headers<R>(
        &mut self,
        f: impl FnOnce(HeaderSource<'_>) -> R,
    ) -> Result<R, HostError>;

    /// The downstream peer address (Envoy's `source.address`); `Ok(None)` when the host has none.
    fn source_address(&mut self) -> Result<Option<IpAddr>, HostError>;

    /// Removes every value of a request header.
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;

    /// Sets a request header, replacing every value it had.
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;

    /// Makes the router pick the route again from the rewritten headers.
    fn clear_route_cache(&mut self) -> Result<RouteCache, HostError>;

    /// Ends the request here with a local reply (used only when a forged routing header could
    /// be neither removed nor overwritten: refusing beats letting the client choose).
    fn send_local_reply(&mut self, status: u32, body: &str) -> Result<(), HostError>;
}

/// Access to the response (`on_http_response_headers`).
pub trait ResponseHost {
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
}

/// The filter's counters, by [`crate::adapter::Counter`] index (the order of
/// [`crate::adapter::counter_names`]). Incrementing never fails the request: an adapter that
/// cannot count drops the increment.
pub trait Counters {
    fn increment(&self, counter: usize, by: u64);
}

/// Where an adapter's warnings go (Envoy's log).
pub trait Log {
    fn warn(&self, message: &str);
}
