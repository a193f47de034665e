//! Benchmark fixture **W** ("Wasm floor"): a proxy-wasm 0.2.5 filter that, on every request,
//! makes exactly one host call — it sets `x-upstream-cluster: v1` — and nothing else. No
//! configuration, no header reads, no metrics, no `clear_route_cache`. Whatever it costs is
//! the price of running *any* proxy-wasm filter in Envoy (VM entry per hook, context
//! bookkeeping in the SDK), which is the floor subset-router is measured against.
//!
//! # Host-call probes (not part of `make bench`)
//!
//! Built with one `probe-*` feature, the fixture additionally repeats one host call
//! [`PROBE_REPEAT`] times per request, so that the price of a single call stands out of the
//! benchmark's noise: `(CPU/request of the probe − CPU/request of W) / PROBE_REPEAT`.
//!
//! ```text
//! scripts/build-wasm.sh wasm-floor /tmp/w-clear.wasm -- --features probe-clear-route-cache
//! bench/run.sh --configs W --extra Wclear=W:/tmp/w-clear.wasm
//! ```
//!
//! | feature | the call repeated |
//! |---|---|
//! | `probe-header-pairs` | `proxy_get_header_map_pairs` (the whole request header map) |
//! | `probe-header-value` | `proxy_get_header_map_value("user-agent")` |
//! | `probe-header-absent` | `proxy_get_header_map_value` of a header the request lacks |
//! | `probe-set-header` | `proxy_replace_header_map_value("x-probe", "v1")` |
//! | `probe-clear-route-cache` | `proxy_call_foreign_function("clear_route_cache")` |
//! | `probe-metric` | `proxy_increment_metric` on a counter |
//! | `probe-once` | with any of the above: one call per request instead of 100 |
//! | `probe-compute` | no host call: FNV-1a over 256 bytes (pure Wasm work, to compare the speed of
//! Envoy's V8 with Node's on the same code: `node bench/wasm-micro.mjs` on the same module) |

#[cfg(target_os = "wasi")]
mod floor {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}

    struct Root;

    impl Context for Root {}

    impl RootContext for Root {
        #[cfg(feature = "probe-metric")]
        fn on_configure(&mut self, _size: usize) -> bool {
            super::probe::define_metric()
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Floor))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Floor;

    impl Context for Floor {}

    impl HttpContext for Floor {
        fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
            #[cfg(any(
                feature = "probe-header-pairs",
                feature = "probe-header-value",
                feature = "probe-header-absent",
                feature = "probe-set-header",
                feature = "probe-clear-route-cache",
                feature = "probe-metric",
                feature = "probe-compute"
            ))]
            for _ in 0..super::probe::PROBE_REPEAT {
                super::probe::call();
            }
            self.set_http_request_header("x-upstream-cluster", Some("v1"));
            Action::Continue
        }
    }
}

#[cfg(target_os = "wasi")]
#[allow(dead_code)]
mod probe {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::{MapType, MetricType, Status};
    use std::cell::Cell;

    /// How many times a probe repeats its host call per request (1 with `probe-once`: the
    /// price of the first call in a request, which is not the price of the hundredth).
    pub const PROBE_REPEAT: usize = if cfg!(feature = "probe-once") { 1 } else { 100 };

    thread_local! {
        static METRIC: Cell<u32> = const { Cell::new(0) };
    }

    pub fn define_metric() -> bool {
        match hostcalls::define_metric(MetricType::Counter, "wasm_floor.probe") {
            Ok(id) => {
                METRIC.with(|m| m.set(id));
                true
            }
            Err(_) => false,
        }
    }

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> Status;
    }

    /// The same raw call subset-router makes: the buffer is taken back as a `Vec` and freed.
    fn header_pairs() -> usize {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: as in subset-router's filter.rs: the host hands over a buffer it allocated
        // with the SDK's `proxy_on_memory_allocate`.
        let v = unsafe {
            match proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
                Status::Ok if !data.is_null() && size > 0 => Vec::from_raw_parts(data, size, size),
                _ => Vec::new(),
            }
        };
        std::hint::black_box(v).len()
    }

    pub fn call() {
        #[cfg(feature = "probe-header-pairs")]
        std::hint::black_box(header_pairs());
        #[cfg(feature = "probe-header-value")]
        let _ = std::hint::black_box(hostcalls::get_map_value_bytes(
            MapType::HttpRequestHeaders,
            "user-agent",
        ));
        #[cfg(feature = "probe-header-absent")]
        let _ = std::hint::black_box(hostcalls::get_map_value_bytes(
            MapType::HttpRequestHeaders,
            "x-probe-absent",
        ));
        #[cfg(feature = "probe-set-header")]
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-probe", Some("v1"));
        #[cfg(feature = "probe-clear-route-cache")]
        let _ = hostcalls::call_foreign_function("clear_route_cache", Some(&[]));
        #[cfg(feature = "probe-metric")]
        let _ = hostcalls::increment_metric(METRIC.with(Cell::get), 1);
        #[cfg(feature = "probe-compute")]
        std::hint::black_box(fnv1a(std::hint::black_box(&[0x5a; 256])));
    }

    fn fnv1a(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
}
