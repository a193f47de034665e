//! The proxy-wasm host calls the filter makes, declared here rather than taken from the SDK's
//! `hostcalls`: the SDK `panic!`s (a VM trap, a 503 under `FAIL_CLOSED`) on any status it does
//! not expect, while every function here returns the host's status as a number. Statuses are
//! read as `u32`, never as an enum, so an unknown value cannot be undefined behaviour.
//!
//! The only module of this crate with `unsafe`.
#![allow(unsafe_code)]

/// proxy-wasm `Status` values this crate looks at.
pub const OK: u32 = 0;
pub const NOT_FOUND: u32 = 1;
pub const CAS_MISMATCH: u32 = 8;

/// proxy-wasm `MapType`.
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
/// proxy-wasm `BufferType::HttpCallResponseBody`.
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
/// proxy-wasm `BufferType::PluginConfiguration`.
const PLUGIN_CONFIGURATION: u32 = 7;
/// proxy-wasm `MetricType::Counter` and `MetricType::Gauge`.
const COUNTER: u32 = 0;
const GAUGE: u32 = 1;
/// WASI `clockid::monotonic`; Envoy answers it from its process-wide steady clock.
const WASI_CLOCK_MONOTONIC: u32 = 1;
/// proxy-wasm `StreamType::HttpRequest`.
const HTTP_REQUEST_STREAM: u32 = 0;

#[derive(Clone, Copy)]
pub enum HeaderMap {
    Request,
    Response,
    /// The headers of an answer to an HTTP call (in `on_http_call_response`).
    HttpCallResponse,
}

impl HeaderMap {
    fn abi(self) -> u32 {
        match self {
            HeaderMap::Request => REQUEST_HEADERS,
            HeaderMap::Response => RESPONSE_HEADERS,
            HeaderMap::HttpCallResponse => HTTP_CALL_RESPONSE_HEADERS,
        }
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_call_foreign_function(
        name_data: *const u8,
        name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    /// WASI `clock_time_get(id, precision, *time) -> errno` (the same import std uses).
    fn clock_time_get(id: u32, precision: u64, time: *mut u64) -> u32;
}

/// Takes ownership of a buffer the host returned. The host allocates it through the SDK's
/// `proxy_on_memory_allocate`, which leaks a `Box<[u8]>` of exactly `size` bytes.
fn owned(status: u32, data: *mut u8, size: usize) -> Result<Vec<u8>, u32> {
    match status {
        OK if data.is_null() || size == 0 => Ok(Vec::new()),
        // SAFETY: on Ok with a non-null pointer the host handed us a buffer of `size` bytes
        // allocated by `proxy_on_memory_allocate` (a boxed slice: capacity == length == size)
        // that nobody else owns; rebuilding the Vec gives it back to the allocator on drop.
        OK => Ok(unsafe { Vec::from_raw_parts(data, size, size) }),
        status => Err(status),
    }
}

pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length of a live &str; the host copies the bytes.
    unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// The plugin configuration (`on_configure`).
pub fn plugin_configuration() -> Result<Vec<u8>, u32> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: the out-pointers are valid locals; ownership of the result is taken by `owned`.
    let status = unsafe {
        proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, usize::MAX, &mut data, &mut size)
    };
    owned(status, data, size)
}

/// The first `max` bytes of the body of an answer to an HTTP call (in
/// `on_http_call_response`).
pub fn http_call_response_body(max: usize) -> Result<Vec<u8>, u32> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: the out-pointers are valid locals; ownership of the result is taken by `owned`.
    let status =
        unsafe { proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, max, &mut data, &mut size) };
    owned(status, data, size)
}

/// A whole header map in the ABI serialisation, in one host call.
pub fn header_map_pairs(map: HeaderMap) -> Result<Vec<u8>, u32> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: the out-pointers are valid locals; ownership of the result is taken by `owned`.
    let status = unsafe { proxy_get_header_map_pairs(map.abi(), &mut data, &mut size) };
    owned(status, data, size)
}

pub fn replace_header(map: HeaderMap, name: &str, value: &str) -> u32 {
    // SAFETY: pointers and lengths of live &strs; the host copies the bytes.
    unsafe {
        proxy_replace_header_map_value(
            map.abi(),
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    }
}

pub fn remove_header(map: HeaderMap, name: &str) -> u32 {
    // SAFETY: pointer and length of a live &str; the host copies the bytes.
    unsafe { proxy_remove_header_map_value(map.abi(), name.as_ptr(), name.len()) }
}

/// A property by its serialised path (segments joined by NUL), e.g. `b"source\0address"`.
pub fn property(path: &[u8]) -> Result<Option<Vec<u8>>, u32> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: `path` is a live slice; out-pointers are valid locals; see `owned`.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match status {
        NOT_FOUND => Ok(None),
        status => owned(status, data, size).map(Some),
    }
}

/// Calls a host foreign function without arguments; the result is discarded.
pub fn call_foreign_function(name: &str) -> u32 {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: `name` is a live &str, no arguments (null, 0); out-pointers are valid locals.
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            std::ptr::null(),
            0,
            &mut data,
            &mut size,
        )
    };
    // Free any result buffer.
    drop(owned(status, data, size));
    status
}

pub fn send_local_response(status: u32, details: &str, body: &str) -> u32 {
    // An empty serialised header map: a u32 count of 0.
    let headers = 0u32.to_le_bytes();
    // SAFETY: pointers and lengths of live buffers; the host copies them.
    unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    }
}

/// Resets the current request's stream, with no reply. Envoy resets it once the filter
/// callback has returned.
pub fn reset_request_stream() -> u32 {
    // SAFETY: plain value only.
    unsafe { proxy_close_stream(HTTP_REQUEST_STREAM) }
}

pub fn define_counter(name: &str) -> Result<u32, u32> {
    let mut id = 0u32;
    // SAFETY: pointer and length of a live &str; `id` is a valid out-pointer.
    match unsafe { proxy_define_metric(COUNTER, name.as_ptr(), name.len(), &mut id) } {
        OK => Ok(id),
        status => Err(status),
    }
}

pub fn increment_metric(id: u32, by: i64) -> u32 {
    // SAFETY: plain values only.
    unsafe { proxy_increment_metric(id, by) }
}

pub fn define_gauge(name: &str) -> Result<u32, u32> {
    let mut id = 0u32;
    // SAFETY: pointer and length of a live &str; `id` is a valid out-pointer.
    match unsafe { proxy_define_metric(GAUGE, name.as_ptr(), name.len(), &mut id) } {
        OK => Ok(id),
        status => Err(status),
    }
}

pub fn record_metric(id: u32, value: u64) -> u32 {
    // SAFETY: plain values only.
    unsafe { proxy_record_metric(id, value) }
}

/// One header value; `Ok(None)` when the map has no such header.
pub fn header_value(map: HeaderMap, name: &str) -> Result<Option<Vec<u8>>, u32> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: `name` is a live &str; out-pointers are valid locals; see `owned`.
    let status = unsafe {
        proxy_get_header_map_value(map.abi(), name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match status {
        NOT_FOUND => Ok(None),
        status => owned(status, data, size).map(Some),
    }
}

/// Asks the host to call the root context's `on_tick` every `period_ms` (0: never).
pub fn set_tick_period_ms(period_ms: u32) -> u32 {
    // SAFETY: plain value only.
    unsafe { proxy_set_tick_period_milliseconds(period_ms) }
}

/// The host's wall clock, nanoseconds since the Unix epoch.
pub fn current_time_ns() -> Result<u64, u32> {
    let mut ns = 0u64;
    // SAFETY: `ns` is a valid out-pointer.
    match unsafe { proxy_get_current_time_nanoseconds(&mut ns) } {
        OK => Ok(ns),
        status => Err(status),
    }
}

/// The host's monotonic clock in nanoseconds; `Err` carries the WASI errno.
pub fn monotonic_ns() -> Result<u64, u32> {
    let mut ns = 0u64;
    // SAFETY: `ns` is a valid out-pointer; precision is a plain value.
    match unsafe { clock_time_get(WASI_CLOCK_MONOTONIC, 1, &mut ns) } {
        0 => Ok(ns),
        errno => Err(errno),
    }
}

/// A shared-data value and its CAS token; `Ok(None)` when the key does not exist.
pub fn get_shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, u32> {
    let (mut data, mut size, mut cas) = (std::ptr::null_mut(), 0usize, 0u32);
    // SAFETY: `key` is a live &str; out-pointers are valid locals; see `owned`.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        NOT_FOUND => Ok(None),
        status => owned(status, data, size).map(|value| Some((value, cas))),
    }
}

/// Writes a shared-data value under CAS rules; returns the host status (`CAS_MISMATCH` included).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> u32 {
    // SAFETY: pointers and lengths of live buffers; the host copies them.
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) }
}

/// The module's allocator: talc instead of wasi-libc's dlmalloc. dlmalloc's `malloc` is one
/// 6.6 KB function, and Envoy's V8 compiles every function of a module with its optimising
/// compiler at load, whose working memory (kept by the proxy's allocator afterwards) grows with
/// the largest functions; talc's largest is under 1 KB. Measured: 5-6 MiB less per proxy, the
/// same time per request (BENCHMARKS.md, "Memory per proxy"). Host builds keep the system's.
#[cfg(target_family = "wasm")]
#[global_allocator]
// SAFETY: `new_global` requires a single-threaded Wasm module that owns the linear memory: a
// proxy-wasm VM runs one thread, and nothing else in this module allocates (the linker drops
// dlmalloc once no code calls it). It grows memory with `memory.grow`, which is always allowed.
static ALLOCATOR: talc::TalckWasm = unsafe { talc::TalckWasm::new_global() };
