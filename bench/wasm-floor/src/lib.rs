//! Benchmark fixture **W** ("Wasm floor"): a proxy-wasm 0.2.5 filter that, on every request,
//! makes exactly one host call — it sets `x-upstream-cluster: v1` — and nothing else. No
//! configuration, no header reads, no metrics, no `clear_route_cache`. Whatever it costs is
//! the price of running *any* proxy-wasm filter in Envoy (VM entry per hook, context
//! bookkeeping in the SDK), which is the floor subset-router is measured against.

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
            self.set_http_request_header("x-upstream-cluster", Some("v1"));
            Action::Continue
        }
    }
}
