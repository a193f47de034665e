//! Everything `unsafe` of the module, in one place: the dynamic-module ABI types, the Envoy
//! callbacks this module calls, the event hooks Envoy calls, and safe handles over the raw
//! pointers of one hook invocation.
//!
//! Source of every name, signature and semantic here: Envoy's
//! `source/extensions/dynamic_modules/abi/abi.h` (the pure-C ABI header; the HTTP filter's side
//! is implemented in `source/extensions/filters/http/dynamic_modules/{filter_config,abi_impl}.cc`),
//! read at the newest 1.40 development snapshot available here (`VERSION.txt` `1.40.0-dev`,
//! 2026-08-07) and checked against the Envoy 1.40.0 release binary: `readelf --dyn-syms` lists
//! every callback declared below, and its strings list every hook exported below and the ABI
//! version `v0.2.0`. The ABI header's own compatibility rule (v0.1.y modules stay compatible
//! with v0.2.x; existing functions are only deprecated, never changed) is what makes the
//! signatures below the v0.2.0 ones; a real Envoy 1.40.0 loads and drives this module
//! (`filter/native/smoke/`).
//!
//! The callbacks added for ramps and guards — gauges (`http_filter_config_define_gauge`,
//! `http_filter_set_gauge`), the config-level metric setters (`http_filter_config_set_gauge`,
//! `http_filter_config_increment_counter`), the per-configuration scheduler
//! (`http_filter_config_scheduler_{new,commit,delete}` with the optional hook
//! `on_http_filter_config_scheduled`), `http_get_header` and `is_validation_mode` — have the same
//! signatures in every 1.38–1.40-dev snapshot read (the `dio`, `wbpcode`, `ElvinEfendi` and
//! `mmorel-35` forks); the Envoy 1.40.0 binary exports every callback declared here and looks up
//! every hook exported here (`readelf --dyn-syms`, `strings`).
//!
//! The config-level HTTP callout that fleet guards query Prometheus with
//! (`http_filter_config_http_callout`, its answer in the optional hook
//! `on_http_filter_config_http_callout_done`, the enums `http_callout_init_result` and
//! `http_callout_result`) is declared as abi.h documents it in the newest development snapshot
//! of it available here (header `v0.1.0`, the 1.40 cycle), with Envoy's side in
//! `filter_config.cc`: the request needs `:method`, `:path` and `:authority`; the id is Envoy's,
//! written only on success; a refused callout gets no answer; an answer comes on the main
//! thread, later than the call, as Success with the response headers and body chunks, or as a
//! failure with neither; the configuration's destructor cancels those in flight after
//! `on_http_filter_config_destroy`, without an answer. The Envoy 1.40.0 binary exports the
//! callback (`nm -D`) and names the hook, and its code reads the arguments as declared here:
//! 32-byte header entries from the fifth, their count from the sixth, the body buffer and the
//! 64-bit timeout from the stack.
//!
//! Rules of this module:
//! * no Rust panic ever unwinds into Envoy: every hook runs under [`guard`], and its fallback is
//!   a safe answer. The `.so` is built with the cargo profile `native` (`panic = "unwind"`, so
//!   that a panic can be caught; see `scripts/build-native.sh`); the crate refuses to compile
//!   with `panic = "abort"`, and `filter/native/unwind/check.sh` checks the shipped `.so`;
//! * a pointer Envoy hands to a hook is wrapped in a handle whose lifetime is that hook's call,
//!   so safe code cannot keep it;
//! * header slices borrowed from Envoy's header map are only visible inside
//!   [`FilterHandle::with_headers`], which holds the handle mutably: no header write (which
//!   could invalidate them) can happen while they are in use.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use crate::module::{self, FilterConfig, StreamFilter};
use subset_router_core::adapter::Verdict;

pub mod cluster_specifier;
#[cfg(test)]
pub(crate) mod fake;

/// The ABI version this module is built against, returned by
/// `envoy_dynamic_module_on_program_init`.
///
/// Source: Envoy v1.40.0, `source/extensions/dynamic_modules/abi/abi.h`:
/// `#define ENVOY_DYNAMIC_MODULES_ABI_VERSION "v0.2.0"` — the string the Envoy 1.40.0 release
/// binary carries and compares the module's answer with (a mismatch is only a warning:
/// "Dynamic module ABI version {} is deprecated ..."; a match logs
/// "Dynamic module ABI version v0.2.0 matched.").
pub const ABI_VERSION: &str = "v0.2.0";

/// [`ABI_VERSION`] as the NUL-terminated C string Envoy reads (a unit test keeps the two equal).
static ABI_VERSION_C: &[u8] = b"v0.2.0\0";

// ------------------------------------------------------------------------------------------
// ABI types (abi.h "Common Types" and "HTTP Filter Types").
// ------------------------------------------------------------------------------------------

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

/// `envoy_dynamic_module_type_envoy_http_header`: one header of Envoy's header map.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

// C enums are passed as their underlying `int`-sized values. They are plain integers here, so
// that a value Envoy passes in (e.g. a reset reason) can never be an invalid Rust enum.

/// `envoy_dynamic_module_type_http_header_type`.
type HeaderType = u32;
const HEADER_TYPE_REQUEST_HEADER: HeaderType = 0;
const HEADER_TYPE_RESPONSE_HEADER: HeaderType = 2;

/// `envoy_dynamic_module_type_log_level`: Trace, Debug, Info, Warn, Error, Critical, Off.
type LogLevelAbi = u32;

/// `envoy_dynamic_module_type_metrics_result`: Success, MetricNotFound, InvalidLabels, Frozen.
type MetricsResult = u32;
const METRICS_RESULT_SUCCESS: MetricsResult = 0;

/// `envoy_dynamic_module_type_attribute_id`; `SourceAddress` (`source.address`) is the 25th
/// enumerator (RequestPath = 0 ... ResponseBackendLatency = 23, SourceAddress = 24).
type AttributeId = u32;
const ATTRIBUTE_ID_SOURCE_ADDRESS: AttributeId = 24;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (and the response-headers
/// one): Continue = 0, StopIteration = 1, ...
type HeadersStatus = u32;
const HEADERS_STATUS_CONTINUE: HeadersStatus = 0;
const HEADERS_STATUS_STOP_ITERATION: HeadersStatus = 1;
/// `..._request_body_status` / `..._response_body_status`: Continue = 0.
type BodyStatus = u32;
const BODY_STATUS_CONTINUE: BodyStatus = 0;
/// `..._request_trailers_status` / `..._response_trailers_status`: Continue = 0.
type TrailersStatus = u32;
const TRAILERS_STATUS_CONTINUE: TrailersStatus = 0;

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr` (`void*`).
type FilterConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr` (`const void*`).
type FilterConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_envoy_ptr` (`void*`).
type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr` (`const void*`).
type FilterModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr` (`void*`): an Envoy-owned
/// `DynamicModuleHttpFilterConfigScheduler` (a weak reference to the filter configuration and
/// its main-thread dispatcher), created by `..._config_scheduler_new`, freed by `..._delete`.
type ConfigSchedulerPtr = *mut c_void;

/// `envoy_dynamic_module_type_http_callout_init_result`: Success = 0, MissingRequiredHeaders,
/// ClusterNotFound, DuplicateCalloutId, CannotCreateRequest.
type CalloutInitResult = u32;
const CALLOUT_INIT_SUCCESS: CalloutInitResult = 0;
/// `envoy_dynamic_module_type_http_callout_result`: Success = 0, Reset,
/// ExceedResponseBufferLimit (Envoy's `AsyncClient::FailureReason` plus Success).
type CalloutResultAbi = u32;
const CALLOUT_RESULT_SUCCESS: CalloutResultAbi = 0;

// ------------------------------------------------------------------------------------------
// Callbacks implemented by Envoy (exported by the envoy binary; resolved when Envoy dlopens
// the module).
// ------------------------------------------------------------------------------------------

extern "C" {
    fn envoy_dynamic_module_callback_log(level: LogLevelAbi, message: ModuleBuffer);

    fn envoy_dynamic_module_callback_log_enabled(level: LogLevelAbi) -> bool;

    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> MetricsResult;

    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        filter_config_envoy_ptr: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        gauge_id_ptr: *mut usize,
    ) -> MetricsResult;

    fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter_envoy_ptr: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    // The config-level metric setters need no stream: usable in `on_http_filter_config_new`
    // and in `on_http_filter_config_scheduled` (main thread).
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        filter_config_envoy_ptr: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        filter_config_envoy_ptr: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    ) -> ConfigSchedulerPtr;

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler_module_ptr: ConfigSchedulerPtr,
        event_id: u64,
    );

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler_module_ptr: ConfigSchedulerPtr,
    );

    /// Main thread only (Envoy reports a bug and answers false elsewhere).
    fn envoy_dynamic_module_callback_is_validation_mode() -> bool;

    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
    ) -> usize;

    fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        result_buffer: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_clear_route_cache(filter_envoy_ptr: FilterEnvoyPtr);

    fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: FilterEnvoyPtr,
        status_code: u32,
        headers_vector: *mut ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy_ptr: FilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut EnvoyBuffer,
    ) -> bool;

    // A request through an Envoy cluster owned by the configuration, not by a stream: usable
    // from the configuration's main-thread hooks. Envoy copies the headers (lower-casing the
    // names) and the body before it returns; the answer (or the failure) arrives in
    // `on_http_filter_config_http_callout_done` with the id written to `callout_id_out`.
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        filter_config_envoy_ptr: FilterConfigEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> CalloutInitResult;
}

fn module_buffer(bytes: &[u8]) -> ModuleBuffer {
    ModuleBuffer {
        ptr: bytes.as_ptr().cast(),
        length: bytes.len(),
    }
}

const NULL_MODULE_BUFFER: ModuleBuffer = ModuleBuffer {
    ptr: ptr::null(),
    length: 0,
};

/// Views `length` bytes at `ptr` (an empty slice for a null pointer or zero length).
///
/// # Safety
/// Unless null or empty, `ptr..ptr+length` must be readable and unchanged for `'a`.
unsafe fn envoy_bytes<'a>(ptr: *const c_char, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        &[]
    } else {
        // SAFETY: non-null, and the caller guarantees `length` readable bytes that stay
        // unchanged for 'a.
        unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), length) }
    }
}

/// Views an array of `length` values at `ptr` (empty for a null pointer or zero length).
///
/// # Safety
/// Unless null or empty, `ptr..ptr+length` must be valid, initialised `T`s, unchanged for `'a`.
unsafe fn envoy_slice<'a, T>(ptr: *const T, length: usize) -> &'a [T] {
    if ptr.is_null() || length == 0 {
        &[]
    } else {
        // SAFETY: non-null, and the caller guarantees `length` valid values that stay unchanged
        // for 'a.
        unsafe { std::slice::from_raw_parts(ptr, length) }
    }
}

// ------------------------------------------------------------------------------------------
// Safe wrappers.
// ------------------------------------------------------------------------------------------

/// Log levels of `envoy_dynamic_module_callback_log` (Envoy's `dynamic_modules` logger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// Logs `message` to Envoy's `dynamic_modules` logger, if that level is enabled.
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: plain value arguments; callable from any thread.
    if !unsafe { envoy_dynamic_module_callback_log_enabled(level as LogLevelAbi) } {
        return;
    }
    // SAFETY: `message` is readable for the duration of the call; Envoy copies it.
    unsafe {
        envoy_dynamic_module_callback_log(level as LogLevelAbi, module_buffer(message.as_bytes()))
    }
}

/// Envoy's filter configuration during `envoy_dynamic_module_on_http_filter_config_new`.
pub struct ConfigHandle<'hook> {
    raw: FilterConfigEnvoyPtr,
    _hook: PhantomData<&'hook mut ()>,
}

impl ConfigHandle<'_> {
    /// Defines a counter without labels; returns its id, or Envoy's `metrics_result` code.
    pub fn define_counter(&self, name: &str) -> Result<usize, u32> {
        let mut id: usize = 0;
        // SAFETY: `raw` is the config pointer Envoy passed to the hook that is running (the
        // handle cannot outlive it); `name` is readable for the call (Envoy copies it into its
        // stat name pool); no labels: null with length 0, as the ABI allows; `id` is a valid
        // out-pointer.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.raw,
                module_buffer(name.as_bytes()),
                ptr::null_mut(),
                0,
                &mut id,
            )
        };
        defined(result, id)
    }

    /// Defines a gauge without labels (Envoy's import mode `Accumulate`); returns its id, or
    /// Envoy's `metrics_result` code. Like counters, only while the configuration is being
    /// created: Envoy freezes stat creation when `on_http_filter_config_new` returns.
    pub fn define_gauge(&self, name: &str) -> Result<usize, u32> {
        let mut id: usize = 0;
        // SAFETY: as in `define_counter`: the running hook's config pointer, a name readable
        // for the call (copied by Envoy), no labels (null, 0), a valid out-pointer.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_gauge(
                self.raw,
                module_buffer(name.as_bytes()),
                ptr::null_mut(),
                0,
                &mut id,
            )
        };
        defined(result, id)
    }

    /// Adds `by` to counter `id` without a stream (configuration load, main-thread tick).
    pub fn increment_counter(&self, id: usize, by: u64) -> bool {
        // SAFETY: the running hook's config pointer; no labels (null, 0), as defined.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.raw,
                id,
                ptr::null_mut(),
                0,
                by,
            )
        };
        result == METRICS_RESULT_SUCCESS
    }

    /// Sets gauge `id` without a stream (configuration load, main-thread tick).
    pub fn set_gauge(&self, id: usize, value: u64) -> bool {
        // SAFETY: the running hook's config pointer; no labels (null, 0), as defined.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_set_gauge(
                self.raw,
                id,
                ptr::null_mut(),
                0,
                value,
            )
        };
        result == METRICS_RESULT_SUCCESS
    }

    /// A scheduler that runs `envoy_dynamic_module_on_http_filter_config_scheduled` for this
    /// configuration on Envoy's main thread; `None` if Envoy gives none.
    pub fn scheduler(&self) -> Option<ConfigScheduler> {
        // SAFETY: the running hook's config pointer. Envoy allocates a scheduler holding a
        // weak reference to the configuration; ownership passes to the returned value.
        let raw =
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.raw) };
        // Not `then_some`: that would build (and drop, i.e. delete) a scheduler for null too.
        (!raw.is_null()).then(|| ConfigScheduler { raw })
    }

    /// Sends a request without a body to Envoy cluster `cluster` on behalf of the configuration
    /// (main thread). `headers` must hold `:method`, `:path` and `:authority`. Returns the
    /// callout id its answer will carry in `on_http_filter_config_http_callout_done`, or why
    /// Envoy refused to send it (no answer will come then).
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<u64, CalloutRefused> {
        let mut raw_headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(name, value)| ModuleHttpHeader {
                key_ptr: name.as_ptr().cast(),
                key_length: name.len(),
                value_ptr: value.as_ptr().cast(),
                value_length: value.len(),
            })
            .collect();
        let mut id: u64 = 0;
        // SAFETY: the running hook's config pointer; the cluster name, the header array (its
        // length passed with it) and the strings it points into are readable for the call, and
        // Envoy copies them into its request before returning; no body (null, 0), which Envoy
        // checks before reading; `id` is a valid out-pointer.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.raw,
                &mut id,
                module_buffer(cluster.as_bytes()),
                raw_headers.as_mut_ptr(),
                raw_headers.len(),
                NULL_MODULE_BUFFER,
                timeout_ms,
            )
        };
        if result == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(CalloutRefused(result))
        }
    }
}

/// Why Envoy did not send a configuration's callout
/// (`envoy_dynamic_module_type_http_callout_init_result`, never Success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalloutRefused(pub u32);

impl std::fmt::Display for CalloutRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            1 => f.write_str(
                "Envoy refused its headers (:method, :path and :authority are required)",
            ),
            2 => f.write_str("Envoy has no cluster of that name"),
            3 => f.write_str("Envoy reported a duplicate callout id"),
            4 => f.write_str(
                "Envoy could not create the request (e.g. no healthy host in the cluster)",
            ),
            n => write!(f, "Envoy refused it (callout init result {n})"),
        }
    }
}

/// How a configuration's callout ended (`envoy_dynamic_module_type_http_callout_result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalloutResult {
    /// An HTTP answer arrived (any status).
    Success,
    /// No answer: Envoy's failure reason, as its ABI number.
    Failed(u32),
}

impl CalloutResult {
    fn from_abi(result: CalloutResultAbi) -> Self {
        if result == CALLOUT_RESULT_SUCCESS {
            CalloutResult::Success
        } else {
            CalloutResult::Failed(result)
        }
    }
}

impl std::fmt::Display for CalloutResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalloutResult::Success => f.write_str("answered"),
            CalloutResult::Failed(1) => {
                f.write_str("reset: unreachable, refused, reset or timed out")
            }
            CalloutResult::Failed(2) => f.write_str("the answer exceeds Envoy's buffer limit"),
            CalloutResult::Failed(n) => write!(f, "failed (callout result {n})"),
        }
    }
}

/// Whether Envoy runs with `--mode validate` (main thread only: call it from
/// `on_http_filter_config_new`).
pub fn is_validation_mode() -> bool {
    // SAFETY: no arguments; called on the main thread, as Envoy requires.
    unsafe { envoy_dynamic_module_callback_is_validation_mode() }
}

/// Event id of the once-a-second tick ([`ConfigScheduler::commit`]).
pub const TICK_EVENT: u64 = 1;

/// Envoy's per-configuration scheduler, owned: freed (`..._scheduler_delete`) on drop.
///
/// `commit` may be called from any thread (Envoy posts the event to the main thread's
/// dispatcher); once the configuration is gone it is a no-op, as the scheduler only holds a weak
/// reference to it. The scheduler itself must outlive every `commit`, which ownership ensures.
#[derive(Debug)]
pub struct ConfigScheduler {
    raw: ConfigSchedulerPtr,
}

// SAFETY: the pointer is an Envoy heap object used only through `commit` (documented by the ABI
// as callable from any thread, including module-owned ones) and `delete` (once, in `Drop`);
// nothing else dereferences it.
unsafe impl Send for ConfigScheduler {}

impl ConfigScheduler {
    /// Asks Envoy to run `on_http_filter_config_scheduled(.., event_id)` on the main thread.
    pub fn commit(&self, event_id: u64) {
        // SAFETY: `raw` is a live scheduler from `..._scheduler_new` (freed only in `drop`).
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.raw, event_id)
        }
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `..._scheduler_new` and is deleted exactly once, here.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.raw) }
    }
}

/// Which header map of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMap {
    Request,
    Response,
}

impl HeaderMap {
    fn abi(self) -> HeaderType {
        match self {
            HeaderMap::Request => HEADER_TYPE_REQUEST_HEADER,
            HeaderMap::Response => HEADER_TYPE_RESPONSE_HEADER,
        }
    }
}

/// Envoy's HTTP filter (one stream) during one event hook.
pub struct FilterHandle<'hook> {
    raw: FilterEnvoyPtr,
    _hook: PhantomData<&'hook mut ()>,
}

impl<'hook> FilterHandle<'hook> {
    /// Counting only: usable while [`Self::with_headers`] holds the handle (incrementing a
    /// counter does not touch the header maps).
    pub fn stats(&self) -> StatsHandle<'hook> {
        StatsHandle {
            raw: self.raw,
            _hook: PhantomData,
        }
    }

    /// Runs `f` over the whole header map, read with one `get_headers` call. `None` when Envoy
    /// has no such map (or refuses).
    pub fn with_headers<R>(
        &mut self,
        map: HeaderMap,
        f: impl for<'s> FnOnce(&'s [(&'s [u8], &'s [u8])]) -> R,
    ) -> Option<R> {
        // SAFETY: `raw` is the filter pointer of the running hook.
        let count =
            unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.raw, map.abi()) };
        // SAFETY: the ABI's precondition is a result array with room for every header, which
        // `get_headers_size` just counted (nothing can change the map in between: a stream's
        // hooks run on one thread, and this handle is held mutably). Envoy keeps each key and
        // value readable until the end of the current hook unless a header setter is called,
        // and `self` stays borrowed mutably while `f` runs, so no setter can.
        unsafe {
            with_header_array(
                count,
                |array| envoy_dynamic_module_callback_http_get_headers(self.raw, map.abi(), array),
                f,
            )
        }
    }

    /// Runs `f` over the first value of header `name`, `None` when there is none. Envoy answers
    /// a missing header and a missing header map alike (false, zero values), so both are `None`.
    pub fn with_header<R>(
        &mut self,
        map: HeaderMap,
        name: &[u8],
        f: impl for<'s> FnOnce(Option<&'s [u8]>) -> R,
    ) -> R {
        let mut result = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: `raw` is the filter pointer of the running hook; the key is readable for the
        // call; `result` is a valid out-pointer (the ABI requires a non-null one; the size
        // out-pointer is optional).
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.raw,
                map.abi(),
                module_buffer(name),
                &mut result,
                0,
                ptr::null_mut(),
            )
        };
        // SAFETY: Envoy keeps the value readable until the end of the hook unless a header
        // setter is called; `self` is borrowed mutably while `f` runs, so none can be.
        let value = found.then(|| unsafe { envoy_bytes(result.ptr, result.length) });
        f(value)
    }

    /// Sets a header (replacing every value), or removes every value when `value` is `None`.
    /// NB: Envoy also treats an *empty* value as "remove" (`setHeaderValueImpl`).
    pub fn set_header(&mut self, map: HeaderMap, name: &[u8], value: Option<&[u8]>) -> bool {
        let value = value.map_or(NULL_MODULE_BUFFER, module_buffer);
        // SAFETY: `raw` is the filter pointer of the running hook; key and value are readable
        // for the call (Envoy copies them).
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.raw,
                map.abi(),
                module_buffer(name),
                value,
            )
        }
    }

    /// Makes the router recompute the route (a no-op outside the request path).
    pub fn clear_route_cache(&mut self) {
        // SAFETY: `raw` is the filter pointer of the running hook.
        unsafe { envoy_dynamic_module_callback_http_clear_route_cache(self.raw) }
    }

    /// Ends the stream with a local reply.
    pub fn send_response(&mut self, status: u32, body: &[u8], details: &[u8]) {
        // SAFETY: `raw` is the filter pointer of the running hook; no extra headers (null, 0);
        // body and details are readable for the call (Envoy copies them).
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.raw,
                status,
                ptr::null_mut(),
                0,
                module_buffer(body),
                module_buffer(details),
            )
        }
    }

    /// Runs `f` over the `source.address` attribute (`ip:port`); `None` when Envoy has none.
    pub fn source_address<R>(&mut self, f: impl for<'s> FnOnce(&'s [u8]) -> R) -> Option<R> {
        let mut result = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: `raw` is the filter pointer of the running hook; `result` is a valid
        // out-pointer.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.raw,
                ATTRIBUTE_ID_SOURCE_ADDRESS,
                &mut result,
            )
        };
        if !ok {
            return None;
        }
        // SAFETY: the address string belongs to the stream's connection info, which outlives
        // this hook; the slice is only lent to `f` for this call.
        let bytes = unsafe { envoy_bytes(result.ptr, result.length) };
        Some(f(bytes))
    }
}

/// Counter increments for the stream of the running hook.
#[derive(Clone, Copy)]
pub struct StatsHandle<'hook> {
    raw: FilterEnvoyPtr,
    _hook: PhantomData<&'hook ()>,
}

impl StatsHandle<'_> {
    /// Adds `by` to the counter `id` (from [`ConfigHandle::define_counter`]).
    pub fn increment(&self, id: usize, by: u64) -> bool {
        // SAFETY: `raw` is the filter pointer of the running hook; no labels (null, 0), as
        // the counter was defined without labels.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.raw,
                id,
                ptr::null_mut(),
                0,
                by,
            )
        };
        result == METRICS_RESULT_SUCCESS
    }

    /// Sets gauge `id` (from [`ConfigHandle::define_gauge`]).
    pub fn set_gauge(&self, id: usize, value: u64) -> bool {
        // SAFETY: `raw` is the filter pointer of the running hook; no labels (null, 0), as
        // the gauge was defined without labels.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_set_gauge(
                self.raw,
                id,
                ptr::null_mut(),
                0,
                value,
            )
        };
        result == METRICS_RESULT_SUCCESS
    }
}

/// A `define_*` callback's answer: the new metric's id, or Envoy's `metrics_result` code.
fn defined(result: MetricsResult, id: usize) -> Result<usize, u32> {
    if result == METRICS_RESULT_SUCCESS {
        Ok(id)
    } else {
        Err(result)
    }
}

/// Reads a header map of `count` headers with one call of Envoy's `fill` (a `get_headers`
/// callback: it writes every header into the array it is given, `false` when it refuses) and
/// runs `f` over them as byte pairs. `None` when `fill` refuses. The HTTP filter and the
/// cluster specifier each have their own `get_headers` callback; this is the rest of both.
///
/// # Safety
/// `fill` must write `count` headers into an array with room for `count`, and every key and
/// value it points at must stay readable and unchanged while `f` runs.
unsafe fn with_header_array<R>(
    count: usize,
    fill: impl FnOnce(*mut EnvoyHttpHeader) -> bool,
    f: impl for<'s> FnOnce(&'s [(&'s [u8], &'s [u8])]) -> R,
) -> Option<R> {
    let empty = EnvoyHttpHeader {
        key_ptr: ptr::null(),
        key_length: 0,
        value_ptr: ptr::null(),
        value_length: 0,
    };
    let mut raw_headers = vec![empty; count];
    if !fill(raw_headers.as_mut_ptr()) {
        return None;
    }
    let pairs: Vec<(&[u8], &[u8])> = raw_headers
        .iter()
        // SAFETY: the caller keeps these bytes readable and unchanged while `f` runs; the
        // slices live only in `pairs`, which `f` sees for this call only (higher-ranked
        // lifetime).
        .map(|h| unsafe {
            (
                envoy_bytes(h.key_ptr, h.key_length),
                envoy_bytes(h.value_ptr, h.value_length),
            )
        })
        .collect();
    Some(f(&pairs))
}

/// Runs a hook body; a panic becomes `fallback()` instead of unwinding into Envoy.
fn guard<R>(f: impl FnOnce() -> R, fallback: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| fallback())
}

/// What [`subset_router_selftest_panic_guard`] returns when [`guard`] caught its panic.
pub const PANIC_GUARD_SELFTEST_ANSWER: u32 = 0x5afe;

/// Not an Envoy hook (Envoy never looks it up): proof that this very `.so` catches a panic at
/// the FFI boundary. It panics under [`guard`], as a hook body would, and returns
/// [`PANIC_GUARD_SELFTEST_ANSWER`] from the fallback. A module built with `panic = "abort"`
/// would abort the calling process here instead — and so take Envoy down on any panic in a
/// hook; `filter/native/unwind/check.sh` calls this on the shipped `.so` to rule that out.
#[no_mangle]
#[allow(clippy::panic)] // The panic is the point: it must be caught.
pub extern "C" fn subset_router_selftest_panic_guard() -> u32 {
    guard(
        || panic!("subset-router: panic-guard self-test (a deliberate panic, caught)"),
        || PANIC_GUARD_SELFTEST_ANSWER,
    )
}

// ------------------------------------------------------------------------------------------
// Event hooks (called by Envoy). Envoy 1.40 refuses a filter config whose module lacks any
// of the required HTTP-filter hooks, so the ones this filter has no use for are exported as
// no-ops that let the stream continue.
// ------------------------------------------------------------------------------------------

/// Called once when Envoy loads the module: returns the ABI version (non-null = success).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION_C.as_ptr().cast()
}

/// Main thread: a filter configuration (`filter_name`, `filter_config` bytes — the value of
/// the `google.protobuf.StringValue`). Null rejects the configuration.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> FilterConfigModulePtr {
    guard(
        || {
            // SAFETY: Envoy passes the filter name and configuration bytes valid for this hook;
            // `new_config` copies what it keeps.
            let (name, config) = unsafe {
                (
                    envoy_bytes(name.ptr, name.length),
                    envoy_bytes(config.ptr, config.length),
                )
            };
            let handle = ConfigHandle {
                raw: filter_config_envoy_ptr,
                _hook: PhantomData,
            };
            match module::new_config(&handle, name, config) {
                Some(config) => Arc::into_raw(Arc::new(config)).cast(),
                None => ptr::null(),
            }
        },
        || {
            log(
                LogLevel::Error,
                "subset-router: internal error while loading the configuration; rejected",
            );
            ptr::null()
        },
    )
}

/// The configuration is gone from Envoy: stop its ticker (joined, so that no module thread
/// outlives the configuration: Envoy may unload the module right after this hook), then release
/// our reference (streams keep their own).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    filter_config_ptr: FilterConfigModulePtr,
) {
    if filter_config_ptr.is_null() {
        return;
    }
    // SAFETY: a non-null config pointer is one `Arc::into_raw` returned from
    // `on_http_filter_config_new`, and Envoy destroys each configuration once.
    let config = unsafe { Arc::from_raw(filter_config_ptr.cast::<FilterConfig>()) };
    guard(|| module::config_destroyed(&config), || ());
    drop(config);
}

/// The configuration behind Envoy's in-module config pointer, borrowed for one hook.
fn config_ref<'a>(filter_config_ptr: FilterConfigModulePtr) -> Option<&'a FilterConfig> {
    // SAFETY: non-null in-module config pointers are `Arc<FilterConfig>`s from
    // `on_http_filter_config_new`, alive until `on_http_filter_config_destroy`, which Envoy calls
    // from the configuration's destructor; Envoy runs a config hook only while it holds the
    // configuration. Only shared access: `FilterConfig` is `Sync`.
    unsafe { filter_config_ptr.cast::<FilterConfig>().as_ref() }
}

/// Main thread: an event committed by the configuration's ticker ([`ConfigScheduler`]), once a
/// second: ramps move, guard counts merge, gauges follow.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    filter_config_ptr: FilterConfigModulePtr,
    event_id: u64,
) {
    guard(
        || {
            let Some(config) = config_ref(filter_config_ptr) else {
                return;
            };
            if event_id == TICK_EVENT {
                let handle = ConfigHandle {
                    raw: filter_config_envoy_ptr,
                    _hook: PhantomData,
                };
                module::on_scheduled_tick(config, &handle);
            }
        },
        || {
            log(
                LogLevel::Error,
                "subset-router: internal error in the once-a-second tick",
            )
        },
    )
}

/// Main thread: the answer to a callout that [`ConfigHandle::http_callout`] sent (a fleet
/// query), or its failure (then without headers or body). Envoy calls it only while the
/// configuration lives: its destructor cancels the callouts still in flight after
/// `on_http_filter_config_destroy`, without calling this.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // The ABI's signature.
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    filter_config_ptr: FilterConfigModulePtr,
    callout_id: u64,
    result: CalloutResultAbi,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) {
    guard(
        || {
            let Some(config) = config_ref(filter_config_ptr) else {
                return;
            };
            // SAFETY: Envoy keeps the header and body-chunk arrays, and the bytes they point
            // at, valid until this hook returns (null with size 0 for a failure or an empty
            // body); the slices live in this closure only, and the module copies what it keeps.
            let (headers, chunks) = unsafe {
                (
                    envoy_slice(headers.cast_const(), headers_size),
                    envoy_slice(body_chunks.cast_const(), body_chunks_size),
                )
            };
            let headers: Vec<(&[u8], &[u8])> = headers
                .iter()
                // SAFETY: as above, each key and value is readable until the hook returns.
                .map(|h| unsafe {
                    (
                        envoy_bytes(h.key_ptr, h.key_length),
                        envoy_bytes(h.value_ptr, h.value_length),
                    )
                })
                .collect();
            let chunks: Vec<&[u8]> = chunks
                .iter()
                // SAFETY: as above.
                .map(|c| unsafe { envoy_bytes(c.ptr, c.length) })
                .collect();
            let handle = ConfigHandle {
                raw: filter_config_envoy_ptr,
                _hook: PhantomData,
            };
            module::on_callout_done(
                config,
                &handle,
                callout_id,
                CalloutResult::from_abi(result),
                &headers,
                &chunks,
            );
        },
        || {
            log(
                LogLevel::Error,
                "subset-router: internal error while reading a fleet query's answer",
            )
        },
    )
}

/// Worker thread: a new stream. Null closes the stream.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: FilterConfigModulePtr,
    _filter_envoy_ptr: FilterEnvoyPtr,
) -> FilterModulePtr {
    if filter_config_ptr.is_null() {
        return ptr::null();
    }
    let config_ptr = filter_config_ptr.cast::<FilterConfig>();
    // SAFETY: `config_ptr` came from `Arc::into_raw` and that reference is alive (Envoy keeps a
    // configuration until its filters are gone, and destroys it once); taking one more strong
    // reference for the stream keeps it alive whatever the order of destruction.
    let config = unsafe {
        Arc::increment_strong_count(config_ptr);
        Arc::from_raw(config_ptr)
    };
    Box::into_raw(Box::new(StreamFilter::new(config)))
        .cast_const()
        .cast()
}

/// The stream behind a module pointer. Relies on Envoy's contract: `filter_module_ptr` is a
/// live pointer from `on_http_filter_new`, used by one thread at a time.
fn stream<'a>(filter_module_ptr: FilterModulePtr) -> Option<&'a mut StreamFilter> {
    // SAFETY: non-null stream pointers are `Box<StreamFilter>`s from `on_http_filter_new`,
    // alive until `on_http_filter_destroy`; a stream's hooks run sequentially on its worker
    // thread, so this is the only reference during the hook.
    unsafe { filter_module_ptr.cast::<StreamFilter>().cast_mut().as_mut() }
}

fn filter_handle<'hook>(filter_envoy_ptr: FilterEnvoyPtr) -> FilterHandle<'hook> {
    FilterHandle {
        raw: filter_envoy_ptr,
        _hook: PhantomData,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    _end_of_stream: bool,
) -> HeadersStatus {
    guard(
        || {
            let Some(stream) = stream(filter_module_ptr) else {
                return HEADERS_STATUS_CONTINUE;
            };
            match module::on_request_headers(stream, &mut filter_handle(filter_envoy_ptr)) {
                Verdict::Continue(_) => HEADERS_STATUS_CONTINUE,
                Verdict::Stop => HEADERS_STATUS_STOP_ITERATION,
            }
        },
        // Fail closed, as the Wasm build does (FAIL_CLOSED): a request whose routing headers
        // may not have been stripped must not be routed.
        || {
            log(
                LogLevel::Error,
                "subset-router: internal error on the request path; answered 503",
            );
            filter_handle(filter_envoy_ptr).send_response(
                503,
                b"subset-router: internal error\n",
                b"subset_router_internal_error",
            );
            HEADERS_STATUS_STOP_ITERATION
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    _end_of_stream: bool,
) -> HeadersStatus {
    guard(
        || {
            if let Some(stream) = stream(filter_module_ptr) {
                module::on_response_headers(stream, &mut filter_handle(filter_envoy_ptr));
            }
            HEADERS_STATUS_CONTINUE
        },
        || HEADERS_STATUS_CONTINUE,
    )
}

/// The stream is over (called for every stream, reset ones included, before the access logs
/// and before `on_http_filter_destroy`): a guarded request without response headers counts as
/// an error.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
) {
    guard(
        || {
            if let Some(stream) = stream(filter_module_ptr) {
                module::on_stream_done(stream);
            }
        },
        || (),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module_ptr: FilterModulePtr) {
    if filter_module_ptr.is_null() {
        return;
    }
    // SAFETY: a non-null stream pointer is the `Box` from `on_http_filter_new`; Envoy destroys
    // each stream filter once, after its last hook.
    let mut stream = unsafe { Box::from_raw(filter_module_ptr.cast::<StreamFilter>().cast_mut()) };
    // Normally already done by `stream_complete`; idempotent.
    guard(|| module::on_stream_done(&mut stream), || ());
    drop(stream);
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _end_of_stream: bool,
) -> BodyStatus {
    BODY_STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) -> TrailersStatus {
    TRAILERS_STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _end_of_stream: bool,
) -> BodyStatus {
    BODY_STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) -> TrailersStatus {
    TRAILERS_STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *mut EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) {
}

/// The configuration behind a pointer `on_http_filter_config_new` returned (unit tests).
#[cfg(test)]
pub(crate) fn config_of<'a>(filter_config_ptr: FilterConfigModulePtr) -> &'a FilterConfig {
    config_ref(filter_config_ptr).expect("a configuration pointer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_version_is_the_one_envoy_1_40_expects() {
        // Envoy v1.40.0, source/extensions/dynamic_modules/abi/abi.h:
        //   #define ENVOY_DYNAMIC_MODULES_ABI_VERSION "v0.2.0"
        // (also the only `v0.N.M` string in the Envoy 1.40.0 release binary).
        assert_eq!(ABI_VERSION, "v0.2.0");
        let c = std::ffi::CStr::from_bytes_with_nul(ABI_VERSION_C).unwrap();
        assert_eq!(c.to_str().unwrap(), ABI_VERSION);
        // SAFETY: program_init returns a pointer to a static NUL-terminated string.
        let returned = unsafe { std::ffi::CStr::from_ptr(envoy_dynamic_module_on_program_init()) };
        assert_eq!(returned.to_str().unwrap(), ABI_VERSION);
    }

    #[test]
    fn the_panic_guard_self_test_answers_from_the_fallback() {
        assert_eq!(
            subset_router_selftest_panic_guard(),
            PANIC_GUARD_SELFTEST_ANSWER
        );
    }
}
