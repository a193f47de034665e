//! subset-router as an Envoy **dynamic module** (`dist/libsubset_router.so`) for Envoy 1.40's
//! `envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter` (ABI `v0.2.0`).
//!
//! A thin adapter, like the proxy-wasm build: every per-request decision and bookkeeping step
//! lives in [`subset_router_core::adapter::Filter`]; this crate only translates the core's host
//! traits to Envoy's dynamic-module callbacks.
//!
//! * [`ffi`]: the only `unsafe` code — the ABI types, the `extern "C"` declarations of the Envoy
//!   callbacks this module calls, the exported `envoy_dynamic_module_on_*` event hooks, and
//!   small safe handles over the raw pointers Envoy passes to a hook.
//! * [`module`]: the safe side — configuration load, counter and gauge definition, the stream
//!   hooks and the once-a-second tick, and the core's host traits over those handles.
//! * [`process`]: the clocks, and the in-memory shared data (proxy-wasm's shared-data CAS
//!   rules) that one configuration's guards merge every worker's counts into.
//! * [`ticker`]: the thread that has Envoy run each configuration's tick on the main thread
//!   once a second (the ABI's per-configuration scheduler).
//!
//! Envoy configuration (the module file is found as `lib<name>.so` in
//! `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`):
//!
//! ```yaml
//! - name: envoy.filters.http.dynamic_modules
//!   typed_config:
//!     "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
//!     dynamic_module_config: { name: subset_router }
//!     filter_name: subset_router
//!     filter_config:
//!       "@type": type.googleapis.com/google.protobuf.StringValue
//!       value: '{"rules": [...], "default": {"subset": "v1"}}'
//! ```
//!
//! Counters and gauges are defined when a configuration is accepted (all at their value before
//! the first request); Envoy shows them under its `dynamicmodulescustom.` prefix, e.g.
//! `dynamicmodulescustom.subset_router.spoofed_header_removed`,
//! `dynamicmodulescustom.subset_router.rule.canary.ramp_ppm`,
//! `dynamicmodulescustom.subset_router.guard.v2.tripped`.
//!
//! Ramps and guards behave as in the proxy-wasm build: one configuration is one core `Filter`
//! shared by every worker thread, ticked once a second on the main thread; guard observations
//! of every worker merge into shared data that the configuration owns, so each proxy decides
//! from its own traffic, all workers together, and two configurations in one Envoy (two
//! listeners, two routes) never share guard state. Fleet guards query Prometheus through an
//! Envoy cluster with the configuration's HTTP callout, from the main thread only.

#![deny(unsafe_code)]
// The request path must never panic: no unwrap, expect, panic or fallible indexing outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

// Every FFI hook catches a panic (`ffi::guard`) so that it never takes Envoy down; with
// panic = "abort" (the workspace's release profile, right for the .wasm) that catch is a no-op.
// Tests and clippy use the dev/test profiles, which unwind.
#[cfg(panic = "abort")]
compile_error!(
    "subset-router-native must be built with panic = \"unwind\": use scripts/build-native.sh \
     or `cargo build --profile native -p subset-router-native`, not --release"
);

pub mod ffi;
pub mod module;
pub mod process;
pub mod specifier;
pub mod ticker;

pub use ffi::ABI_VERSION;
pub use module::FILTER_NAME;
