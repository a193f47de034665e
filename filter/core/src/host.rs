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
    ResetStream,
    ReadResponseStatus,
    WallClock,
    MonotonicClock,
    SharedDataGet,
    SharedDataSet,
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
            HostCall::ResetStream => "reset the stream",
            HostCall::ReadResponseStatus => "read response :status",
            HostCall::WallClock => "read the wall clock",
            HostCall::MonotonicClock => "read the monotonic clock",
            HostCall::SharedDataGet => "get shared data",
            HostCall::SharedDataSet => "set shared data",
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

    /// Resets the request's stream, without a reply: the last resort when the local reply above
    /// could not be sent, since the forged header is then still in the request. The default is
    /// for a host whose local reply cannot fail: it has no reset to offer and says so.
    fn reset_stream(&mut self) -> Result<(), HostError> {
        Err(HostError {
            call: HostCall::ResetStream,
            code: 0,
        })
    }
}

/// Access to the response (`on_http_response_headers`).
pub trait ResponseHost {
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;

    /// The response's `:status`, `Ok(None)` when it has none. Read once, only for a request a
    /// guard observes. The default (for an adapter written before guards) reports no status,
    /// which leaves the response unobserved: guards then never trip on that host.
    fn response_status(&mut self) -> Result<Option<u32>, HostError> {
        Ok(None)
    }
}

/// The proxy's clocks.
pub trait Clock {
    /// Wall-clock time in nanoseconds since the Unix epoch: ramps are scheduled in it.
    fn wall_ns(&self) -> Result<u64, HostError>;

    /// Monotonic time in nanoseconds, from an origin shared by the whole process: guard windows
    /// and cooldowns are stored in shared state that every worker (VM or thread) compares with
    /// its own reading. (proxy-wasm: WASI `clock_time_get(MONOTONIC)`, which Envoy answers
    /// from its process-wide steady clock; native: `Instant` against one process-wide origin.)
    fn monotonic_ns(&self) -> Result<u64, HostError>;

    /// Whether [`Clock::wall_ns`] can be asked at all (a request path without a clock says no,
    /// and its ramps then move with the tick only).
    fn has_wall_clock(&self) -> bool {
        true
    }
}

/// The outcome of a compare-and-swap write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    Stored,
    /// Someone wrote the key after the token was read: read again and retry.
    Mismatch,
}

/// Proxy-wide key/value state shared by every worker, with proxy-wasm shared-data semantics:
///
/// * every successful write gives the key a new token (`cas`) from one counter for the whole
///   store; tokens are never 0;
/// * [`SharedStore::set`] with `cas == 0` writes unconditionally; with the key's current token
///   it writes; with any other token it fails with [`CasOutcome::Mismatch`];
/// * a key that does not exist is created whatever `cas` is;
/// * keys are never deleted.
///
/// The native build can implement it with one process-wide `Mutex<HashMap<String, (Vec<u8>, u32)>>`.
pub trait SharedStore {
    /// The value and its token, `Ok(None)` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<CasOutcome, HostError>;
}

/// The filter's gauges, by index in [`crate::adapter::gauge_names`] order. Setting never fails
/// the caller: an adapter that cannot set a gauge drops the value.
pub trait Gauges {
    fn set_gauge(&self, gauge: usize, value: u64);
}

/// The filter's counters, by [`crate::adapter::Counter`] index (the order of
/// [`crate::adapter::counter_names`]). Incrementing never fails the request: an adapter that
/// cannot count drops the increment.
pub trait Counters {
    fn increment(&self, counter: usize, by: u64);
}

/// Where an adapter's messages go (Envoy's log).
pub trait Log {
    fn warn(&self, message: &str);

    /// Errors (a rejected configuration). The default logs them as warnings.
    fn error(&self, message: &str) {
        self.warn(message);
    }

    /// Informational messages (a guard closing). The default drops them.
    fn info(&self, message: &str) {
        let _ = message;
    }
}
