//! A fake Envoy for the unit tests: definitions of the callbacks declared in [`super`], over a
//! per-thread in-memory stream (header maps, counters, logs). The tests drive the real exported
//! hooks, so the pointer and slice conversions are exercised too.

use std::cell::RefCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{
    AttributeId, CalloutInitResult, ConfigSchedulerPtr, EnvoyBuffer, EnvoyHttpHeader,
    FilterConfigEnvoyPtr, FilterEnvoyPtr, HeaderType, LogLevelAbi, MetricsResult, ModuleBuffer,
    ModuleHttpHeader, ATTRIBUTE_ID_SOURCE_ADDRESS, HEADER_TYPE_REQUEST_HEADER,
    HEADER_TYPE_RESPONSE_HEADER,
};

pub type Headers = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Default)]
pub struct FakeEnvoy {
    pub request: Headers,
    pub response: Headers,
    /// `source.address`; `None`: the attribute call fails.
    pub source: Option<Vec<u8>>,
    /// Defined counters, by id.
    pub counters: Vec<(String, u64)>,
    /// `define_counter` answers Frozen.
    pub frozen: bool,
    /// `set_header` answers false.
    pub refuse_set: bool,
    pub route_cache_clears: u32,
    pub sent: Option<(u32, Vec<u8>, Vec<u8>)>,
    pub logs: Vec<(u32, String)>,
    /// Defined gauges, by id.
    pub gauges: Vec<(String, u64)>,
    /// Config-level metric calls (no stream): counter increments and gauge sets.
    pub config_metric_calls: u32,
    /// Stream-level gauge sets.
    pub stream_gauge_sets: u32,
    /// `envoy --mode validate`.
    pub validation_mode: bool,
    /// `config_scheduler_new` answers null.
    pub no_scheduler: bool,
    /// Every scheduler handed out, in order.
    pub schedulers: Vec<FakeScheduler>,
    /// `get_header` answers as for a missing header map (false, zero values).
    pub refuse_get_header: bool,
    /// Cluster specifier: every name `set_cluster_name` was given, in order.
    pub specifier_clusters: Vec<String>,
    /// Cluster specifier: `get_request_headers` answers false (the header map cannot be read).
    pub refuse_specifier_headers: bool,
    /// Cluster specifier: `get_random_value` answers this (the request's random value, the same
    /// in every selection of one request); `None`: a new value per call.
    pub random_value: Option<u64>,
    /// Cluster specifier: `get_random_value` calls so far.
    pub random_calls: u64,
    /// Every config-level callout the module asked for, in order (refused ones included).
    pub callouts: Vec<FakeCallout>,
    /// What `http_filter_config_http_callout` answers (0: Success).
    pub callout_init_result: CalloutInitResult,
}

/// One config-level callout request, as Envoy would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCallout {
    /// The id handed back (0 when refused).
    pub id: u64,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl FakeCallout {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a test sees of one scheduler: commits can come from the module's ticker thread, so
/// they are counted outside the thread-local fake.
#[derive(Debug, Clone, Default)]
pub struct FakeScheduler {
    pub commits: Arc<AtomicU64>,
    pub deleted: Arc<AtomicBool>,
}

impl FakeEnvoy {
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    pub fn gauge(&self, name: &str) -> Option<u64> {
        self.gauges.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    pub fn header(map: &Headers, name: &str) -> Vec<String> {
        map.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
}

thread_local! {
    pub static FAKE: RefCell<FakeEnvoy> = RefCell::new(FakeEnvoy::default());
}

/// Resets the fake and runs `f` on it. Also resets the clock skew.
pub fn setup(f: impl FnOnce(&mut FakeEnvoy)) {
    crate::process::SKEW_MS.with(|s| s.set(0));
    FAKE.with(|fake| {
        let mut fake = fake.borrow_mut();
        *fake = FakeEnvoy::default();
        f(&mut fake);
    });
}

pub fn inspect<R>(f: impl FnOnce(&FakeEnvoy) -> R) -> R {
    FAKE.with(|fake| f(&fake.borrow()))
}

/// A non-null stand-in for Envoy's opaque pointers (never dereferenced by the fake).
pub fn envoy_ptr() -> *mut c_void {
    std::ptr::NonNull::<u64>::dangling().as_ptr().cast()
}

/// Runs the body of a fake callback that allocates (Envoy's memory, not the module's): the
/// per-request allocation tests count the module's allocations only.
fn envoy_side<R>(body: impl FnOnce() -> R) -> R {
    let mut out = None;
    allocation_counter::opt_out(|| out = Some(body()));
    out.expect("the body ran")
}

fn bytes(buffer: ModuleBuffer) -> Vec<u8> {
    if buffer.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the module passes buffers readable for the duration of the call.
    unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) }.to_vec()
}

fn with_map<R>(
    fake: &mut FakeEnvoy,
    header_type: HeaderType,
    f: impl FnOnce(&mut Headers) -> R,
) -> Option<R> {
    match header_type {
        HEADER_TYPE_REQUEST_HEADER => Some(f(&mut fake.request)),
        HEADER_TYPE_RESPONSE_HEADER => Some(f(&mut fake.response)),
        _ => None,
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_log(level: LogLevelAbi, message: ModuleBuffer) {
    envoy_side(|| {
        let message = String::from_utf8_lossy(&bytes(message)).into_owned();
        FAKE.with(|fake| fake.borrow_mut().logs.push((level, message)));
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_log_enabled(_level: LogLevelAbi) -> bool {
    true
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_counter(
    _filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    name: ModuleBuffer,
    _label_names: *mut ModuleBuffer,
    label_names_length: usize,
    counter_id_ptr: *mut usize,
) -> MetricsResult {
    assert_eq!(label_names_length, 0);
    define_counter(name, counter_id_ptr)
}

/// Defines a counter (Frozen when the test says so); the id is its index in `counters`.
fn define_counter(name: ModuleBuffer, counter_id_ptr: *mut usize) -> MetricsResult {
    define_metric(name, counter_id_ptr, |fake| &mut fake.counters)
}

/// Defines a metric in the list `metrics` picks (Frozen when the test says so); the id is its
/// index there.
fn define_metric(
    name: ModuleBuffer,
    id_ptr: *mut usize,
    metrics: impl FnOnce(&mut FakeEnvoy) -> &mut Vec<(String, u64)>,
) -> MetricsResult {
    let name = String::from_utf8_lossy(&bytes(name)).into_owned();
    FAKE.with(|fake| {
        let mut fake = fake.borrow_mut();
        if fake.frozen {
            return 3;
        }
        let metrics = metrics(&mut fake);
        metrics.push((name, 0));
        // SAFETY: the module passes a valid out-pointer.
        unsafe { *id_ptr = metrics.len() - 1 };
        0
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_increment_counter(
    _filter_envoy_ptr: FilterEnvoyPtr,
    id: usize,
    _label_values: *mut ModuleBuffer,
    label_values_length: usize,
    value: u64,
) -> MetricsResult {
    assert_eq!(label_values_length, 0);
    increment_counter(id, value)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_headers_size(
    _filter_envoy_ptr: FilterEnvoyPtr,
    header_type: HeaderType,
) -> usize {
    FAKE.with(|fake| with_map(&mut fake.borrow_mut(), header_type, |m| m.len()).unwrap_or(0))
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_headers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    header_type: HeaderType,
    result_headers: *mut EnvoyHttpHeader,
) -> bool {
    FAKE.with(|fake| {
        with_map(&mut fake.borrow_mut(), header_type, |map| {
            fill_headers(map, result_headers)
        })
        .is_some()
    })
}

/// Writes `map` into the module's array (room for `map.len()` entries, counted just before).
fn fill_headers(map: &Headers, result_headers: *mut EnvoyHttpHeader) {
    for (i, (name, value)) in map.iter().enumerate() {
        // SAFETY: the module's array has room for `get_headers_size` entries. The pointers stay
        // valid until the map is next modified (as in Envoy: until a setter is called).
        unsafe {
            *result_headers.add(i) = EnvoyHttpHeader {
                key_ptr: name.as_ptr().cast(),
                key_length: name.len(),
                value_ptr: value.as_ptr().cast(),
                value_length: value.len(),
            };
        }
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_set_header(
    _filter_envoy_ptr: FilterEnvoyPtr,
    header_type: HeaderType,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    envoy_side(|| {
        let key = bytes(key);
        let value = bytes(value);
        FAKE.with(|fake| {
            let mut fake = fake.borrow_mut();
            if fake.refuse_set {
                return false;
            }
            // As Envoy's setHeaderValueImpl: a null or empty value removes the header.
            with_map(&mut fake, header_type, |map| {
                map.retain(|(n, _)| !n.eq_ignore_ascii_case(&key));
                if !value.is_empty() {
                    map.push((key.to_ascii_lowercase(), value));
                }
            })
            .is_some()
        })
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_clear_route_cache(
    _filter_envoy_ptr: FilterEnvoyPtr,
) {
    FAKE.with(|fake| fake.borrow_mut().route_cache_clears += 1);
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_send_response(
    _filter_envoy_ptr: FilterEnvoyPtr,
    status_code: u32,
    _headers_vector: *mut ModuleHttpHeader,
    headers_vector_size: usize,
    body: ModuleBuffer,
    details: ModuleBuffer,
) {
    assert_eq!(headers_vector_size, 0);
    envoy_side(|| {
        let sent = (status_code, bytes(body), bytes(details));
        FAKE.with(|fake| fake.borrow_mut().sent = Some(sent));
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
    _filter_envoy_ptr: FilterEnvoyPtr,
    attribute_id: AttributeId,
    result: *mut EnvoyBuffer,
) -> bool {
    source_address(attribute_id, result)
}

/// `source.address` from the fake (false for any other attribute, or when it has none).
fn source_address(attribute_id: AttributeId, result: *mut EnvoyBuffer) -> bool {
    if attribute_id != ATTRIBUTE_ID_SOURCE_ADDRESS {
        return false;
    }
    FAKE.with(|fake| match &fake.borrow().source {
        Some(source) => {
            // SAFETY: valid out-pointer; the bytes live in the fake until the next setup().
            unsafe {
                *result = EnvoyBuffer {
                    ptr: source.as_ptr().cast(),
                    length: source.len(),
                }
            };
            true
        }
        None => false,
    })
}

fn set_gauge(id: usize, value: u64) -> MetricsResult {
    FAKE.with(|fake| match fake.borrow_mut().gauges.get_mut(id) {
        Some((_, v)) => {
            *v = value;
            0
        }
        None => 1,
    })
}

fn increment_counter(id: usize, value: u64) -> MetricsResult {
    FAKE.with(|fake| match fake.borrow_mut().counters.get_mut(id) {
        Some((_, v)) => {
            *v += value;
            0
        }
        None => 1,
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
    _filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    name: ModuleBuffer,
    _label_names: *mut ModuleBuffer,
    label_names_length: usize,
    gauge_id_ptr: *mut usize,
) -> MetricsResult {
    assert_eq!(label_names_length, 0);
    define_metric(name, gauge_id_ptr, |fake| &mut fake.gauges)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_set_gauge(
    _filter_envoy_ptr: FilterEnvoyPtr,
    id: usize,
    _label_values: *mut ModuleBuffer,
    label_values_length: usize,
    value: u64,
) -> MetricsResult {
    assert_eq!(label_values_length, 0);
    FAKE.with(|fake| fake.borrow_mut().stream_gauge_sets += 1);
    set_gauge(id, value)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
    _filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    id: usize,
    _label_values: *mut ModuleBuffer,
    label_values_length: usize,
    value: u64,
) -> MetricsResult {
    assert_eq!(label_values_length, 0);
    FAKE.with(|fake| fake.borrow_mut().config_metric_calls += 1);
    set_gauge(id, value)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
    _filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    id: usize,
    _label_values: *mut ModuleBuffer,
    label_values_length: usize,
    value: u64,
) -> MetricsResult {
    assert_eq!(label_values_length, 0);
    FAKE.with(|fake| fake.borrow_mut().config_metric_calls += 1);
    increment_counter(id, value)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_header(
    _filter_envoy_ptr: FilterEnvoyPtr,
    header_type: HeaderType,
    key: ModuleBuffer,
    result_buffer: *mut EnvoyBuffer,
    index: usize,
    optional_size: *mut usize,
) -> bool {
    envoy_side(|| {
        let key = bytes(key);
        FAKE.with(|fake| {
            let mut fake = fake.borrow_mut();
            let refuse = fake.refuse_get_header;
            // As Envoy's getHeaderValueImpl: the number of values (also when out of range), and
            // false with a null buffer for a missing map, a missing key or an index out of range.
            let values: Vec<Vec<u8>> = with_map(&mut fake, header_type, |map| {
                map.iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(&key))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .filter(|_| !refuse)
            .unwrap_or_default();
            let (found, ptr, length) = match values.get(index) {
                // Leaked: the module reads the bytes after this call (tests only).
                Some(v) => {
                    let v: &'static [u8] = Box::leak(v.clone().into_boxed_slice());
                    (true, v.as_ptr().cast(), v.len())
                }
                None => (false, std::ptr::null(), 0),
            };
            // SAFETY: the module passes a valid result pointer; the size pointer may be null.
            unsafe {
                *result_buffer = EnvoyBuffer { ptr, length };
                if !optional_size.is_null() {
                    *optional_size = values.len();
                }
            }
            found
        })
    })
}

/// The fake's scheduler object (Envoy's is a C++ object behind the same opaque pointer).
struct SchedulerBox(FakeScheduler);

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
    _filter_config_envoy_ptr: FilterConfigEnvoyPtr,
) -> ConfigSchedulerPtr {
    FAKE.with(|fake| {
        let mut fake = fake.borrow_mut();
        if fake.no_scheduler {
            return std::ptr::null_mut();
        }
        let scheduler = FakeScheduler::default();
        fake.schedulers.push(scheduler.clone());
        Box::into_raw(Box::new(SchedulerBox(scheduler))).cast()
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
    scheduler_module_ptr: ConfigSchedulerPtr,
    _event_id: u64,
) {
    assert!(
        !scheduler_module_ptr.is_null(),
        "commit on a null scheduler"
    );
    // SAFETY: a live pointer from `config_scheduler_new` (any thread).
    let scheduler = unsafe { &*scheduler_module_ptr.cast::<SchedulerBox>() };
    assert!(
        !scheduler.0.deleted.load(Ordering::SeqCst),
        "commit after delete"
    );
    scheduler.0.commits.fetch_add(1, Ordering::SeqCst);
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
    scheduler_module_ptr: ConfigSchedulerPtr,
) {
    assert!(
        !scheduler_module_ptr.is_null(),
        "delete of a null scheduler"
    );
    // SAFETY: a pointer from `config_scheduler_new`, deleted once.
    let scheduler = unsafe { Box::from_raw(scheduler_module_ptr.cast::<SchedulerBox>()) };
    assert!(
        !scheduler.0.deleted.swap(true, Ordering::SeqCst),
        "deleted twice"
    );
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_is_validation_mode() -> bool {
    FAKE.with(|fake| fake.borrow().validation_mode)
}

// ------------------------------------------------------------------------------------------
// The cluster specifier's callbacks (`ffi::cluster_specifier`): counters shared with the HTTP
// filter's (`counters`), the request headers and `source.address` of the fake stream, the
// cluster each selection names (`specifier_clusters`).
// ------------------------------------------------------------------------------------------

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_cluster_specifier_config_define_counter(
    _config_envoy_ptr: *mut c_void,
    name: ModuleBuffer,
    _label_names: *mut ModuleBuffer,
    label_names_length: usize,
    counter_id_ptr: *mut usize,
) -> MetricsResult {
    assert_eq!(label_names_length, 0);
    define_counter(name, counter_id_ptr)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_cluster_specifier_config_increment_counter(
    _config_envoy_ptr: *mut c_void,
    id: usize,
    _label_values: *mut ModuleBuffer,
    label_values_length: usize,
    value: u64,
) -> MetricsResult {
    assert_eq!(label_values_length, 0);
    FAKE.with(|fake| fake.borrow_mut().config_metric_calls += 1);
    increment_counter(id, value)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size(
    _context_envoy_ptr: *mut c_void,
) -> usize {
    FAKE.with(|fake| fake.borrow().request.len())
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_cluster_specifier_get_request_headers(
    _context_envoy_ptr: *mut c_void,
    result_headers: *mut EnvoyHttpHeader,
) -> bool {
    FAKE.with(|fake| {
        let fake = fake.borrow();
        if fake.refuse_specifier_headers {
            return false;
        }
        fill_headers(&fake.request, result_headers);
        true
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_cluster_specifier_get_attribute_string(
    _context_envoy_ptr: *mut c_void,
    attribute_id: AttributeId,
    result: *mut EnvoyBuffer,
) -> bool {
    source_address(attribute_id, result)
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_cluster_specifier_get_random_value(
    _context_envoy_ptr: *mut c_void,
) -> u64 {
    FAKE.with(|fake| {
        let mut fake = fake.borrow_mut();
        fake.random_calls += 1;
        // splitmix64 of the call number: a different, well-mixed value per request.
        fake.random_value.unwrap_or_else(|| {
            let mut z = fake.random_calls.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(
    _context_envoy_ptr: *mut c_void,
    cluster_name: ModuleBuffer,
) {
    envoy_side(|| {
        let name = String::from_utf8_lossy(&bytes(cluster_name)).into_owned();
        FAKE.with(|fake| fake.borrow_mut().specifier_clusters.push(name));
    })
}

// ------------------------------------------------------------------------------------------
// Config-level HTTP callouts: each request is recorded (`callouts`); a test delivers the answer
// with [`deliver_callout`], through the module's exported hook, as Envoy's main loop would.
// ------------------------------------------------------------------------------------------

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_http_callout(
    _filter_config_envoy_ptr: FilterConfigEnvoyPtr,
    callout_id_out: *mut u64,
    cluster_name: ModuleBuffer,
    headers: *mut ModuleHttpHeader,
    headers_size: usize,
    body: ModuleBuffer,
    timeout_milliseconds: u64,
) -> CalloutInitResult {
    let headers: Vec<(String, String)> = (0..headers_size)
        .map(|i| {
            // SAFETY: the module passes an array of `headers_size` headers, readable for the call.
            let h = unsafe { *headers.add(i) };
            let text = |ptr: *const std::ffi::c_char, length| {
                String::from_utf8_lossy(&bytes(ModuleBuffer { ptr, length })).into_owned()
            };
            // As Envoy: names are lower-cased when copied into the request.
            (
                text(h.key_ptr, h.key_length).to_ascii_lowercase(),
                text(h.value_ptr, h.value_length),
            )
        })
        .collect();
    let cluster = String::from_utf8_lossy(&bytes(cluster_name)).into_owned();
    let body = bytes(body);
    FAKE.with(|fake| {
        let mut fake = fake.borrow_mut();
        let result = fake.callout_init_result;
        let id = if result == 0 {
            // As Envoy: a per-configuration sequence, written only on success.
            let id = fake.callouts.iter().filter(|c| c.id != 0).count() as u64 + 1;
            // SAFETY: the module passes a valid out-pointer.
            unsafe { *callout_id_out = id };
            id
        } else {
            0
        };
        fake.callouts.push(FakeCallout {
            id,
            cluster,
            headers,
            body,
            timeout_ms: timeout_milliseconds,
        });
        result
    })
}

/// Delivers callout `id`'s outcome to configuration `config` through the exported done hook:
/// `result` 0 (Success) with response headers and body chunks, or a failure (Envoy then passes
/// null arrays).
pub fn deliver_callout(
    config: *const c_void,
    id: u64,
    result: u32,
    headers: &[(&str, &str)],
    body_chunks: &[&[u8]],
) {
    let mut headers: Vec<EnvoyHttpHeader> = headers
        .iter()
        .map(|(k, v)| EnvoyHttpHeader {
            key_ptr: k.as_ptr().cast(),
            key_length: k.len(),
            value_ptr: v.as_ptr().cast(),
            value_length: v.len(),
        })
        .collect();
    let mut chunks: Vec<EnvoyBuffer> = body_chunks
        .iter()
        .map(|c| EnvoyBuffer {
            ptr: c.as_ptr().cast(),
            length: c.len(),
        })
        .collect();
    let (headers_ptr, chunks_ptr) = if result == 0 {
        (headers.as_mut_ptr(), chunks.as_mut_ptr())
    } else {
        (std::ptr::null_mut(), std::ptr::null_mut())
    };
    super::envoy_dynamic_module_on_http_filter_config_http_callout_done(
        envoy_ptr(),
        config,
        id,
        result,
        headers_ptr,
        if result == 0 { headers.len() } else { 0 },
        chunks_ptr,
        if result == 0 { chunks.len() } else { 0 },
    );
}
