//! The cluster-specifier side of the ABI (`envoy.router.cluster_specifier_plugin.dynamic_modules`):
//! the route asks the module for its cluster, so no header is written and the route is never
//! recomputed. Envoy 1.40.0 exports every callback declared here and looks up the three hooks
//! exported here (`nm -D`); names and signatures are those of `abi.h`'s "Cluster Specifier"
//! section (`envoy_dynamic_module_type_cluster_specifier_*`), whose implementation is
//! `source/extensions/router/cluster_specifiers/dynamic_modules/`.
//!
//! Envoy calls `..._select` while it resolves the route (and again when a filter refreshes the
//! route cluster or a retry re-selects it) on the worker thread of the stream; the context
//! pointer is valid for that call only. Returning `false` keeps the matched route's own cluster.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr;
use std::sync::Arc;

use super::{
    defined, envoy_bytes, guard, log, module_buffer, with_header_array, AttributeId, EnvoyBuffer,
    EnvoyHttpHeader, LogLevel, MetricsResult, ModuleBuffer, ATTRIBUTE_ID_SOURCE_ADDRESS,
    METRICS_RESULT_SUCCESS,
};
use crate::specifier::{self, SpecifierConfig};

/// `envoy_dynamic_module_type_cluster_specifier_config_envoy_ptr` (`void*`): Envoy's
/// `DynamicModuleClusterSpecifierConfig`, alive as long as the in-module configuration.
type SpecifierConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_cluster_specifier_config_module_ptr` (`const void*`).
type SpecifierConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_cluster_specifier_context_envoy_ptr` (`void*`): one selection.
type SelectContextEnvoyPtr = *mut c_void;

extern "C" {
    fn envoy_dynamic_module_callback_cluster_specifier_config_define_counter(
        config_envoy_ptr: SpecifierConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> MetricsResult;

    fn envoy_dynamic_module_callback_cluster_specifier_config_increment_counter(
        config_envoy_ptr: SpecifierConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    fn envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size(
        context_envoy_ptr: SelectContextEnvoyPtr,
    ) -> usize;

    fn envoy_dynamic_module_callback_cluster_specifier_get_request_headers(
        context_envoy_ptr: SelectContextEnvoyPtr,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    fn envoy_dynamic_module_callback_cluster_specifier_get_attribute_string(
        context_envoy_ptr: SelectContextEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut EnvoyBuffer,
    ) -> bool;

    fn envoy_dynamic_module_callback_cluster_specifier_get_random_value(
        context_envoy_ptr: SelectContextEnvoyPtr,
    ) -> u64;

    fn envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(
        context_envoy_ptr: SelectContextEnvoyPtr,
        cluster_name: ModuleBuffer,
    );
}

/// Envoy's cluster-specifier configuration: defines counters (only while the configuration is
/// created) and increments them (any thread, for as long as the configuration lives).
#[derive(Debug)]
pub struct SpecifierStats {
    raw: SpecifierConfigEnvoyPtr,
}

// SAFETY: the pointer is Envoy's configuration object, which outlives the in-module
// configuration that holds this; the only calls made through it after creation are counter
// increments, which Envoy's stats make thread-safe (atomic adds), from any worker.
unsafe impl Send for SpecifierStats {}
// SAFETY: as above: shared use is counter increments only.
unsafe impl Sync for SpecifierStats {}

impl SpecifierStats {
    /// Only inside `on_cluster_specifier_config_new` (Envoy freezes stat creation after it).
    pub fn define_counter(&self, name: &str) -> Result<usize, u32> {
        let mut id = 0usize;
        // SAFETY: `raw` is the configuration being created; the name buffer is live for the
        // call (Envoy copies it); no labels; `id` is a valid out-pointer.
        let result = unsafe {
            envoy_dynamic_module_callback_cluster_specifier_config_define_counter(
                self.raw,
                module_buffer(name.as_bytes()),
                ptr::null_mut(),
                0,
                &mut id,
            )
        };
        defined(result, id)
    }

    pub fn increment(&self, id: usize, by: u64) -> bool {
        // SAFETY: `raw` is alive (see the `Send` impl); plain values, no labels.
        let result = unsafe {
            envoy_dynamic_module_callback_cluster_specifier_config_increment_counter(
                self.raw,
                id,
                ptr::null_mut(),
                0,
                by,
            )
        };
        result == METRICS_RESULT_SUCCESS
    }
}

/// One selection's context: the request headers and the cluster setter.
pub struct SelectContext<'hook> {
    raw: SelectContextEnvoyPtr,
    _hook: PhantomData<&'hook mut ()>,
}

impl SelectContext<'_> {
    /// Runs `f` over the request headers, read with one call; `None` when Envoy refuses.
    pub fn with_headers<R>(
        &mut self,
        f: impl for<'s> FnOnce(&'s [(&'s [u8], &'s [u8])]) -> R,
    ) -> Option<R> {
        // SAFETY: `raw` is the context of the running selection.
        let count = unsafe {
            envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size(self.raw)
        };
        // SAFETY: the array has room for every header, just counted; Envoy keeps each key and
        // value readable for the selection, and nothing changes the map during it (no setter
        // of this ABI touches headers).
        unsafe {
            with_header_array(
                count,
                |array| {
                    envoy_dynamic_module_callback_cluster_specifier_get_request_headers(
                        self.raw, array,
                    )
                },
                f,
            )
        }
    }

    /// Runs `f` over `source.address` (`ip:port`), `None` when Envoy has none.
    pub fn source_address<R>(&mut self, f: impl for<'s> FnOnce(&'s [u8]) -> R) -> Option<R> {
        let mut result = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: `raw` is the running selection's context; `result` is a valid out-pointer.
        let found = unsafe {
            envoy_dynamic_module_callback_cluster_specifier_get_attribute_string(
                self.raw,
                ATTRIBUTE_ID_SOURCE_ADDRESS,
                &mut result,
            )
        };
        // SAFETY: on success Envoy's buffer is readable for the selection; `f` sees it only
        // for this call.
        found.then(|| f(unsafe { envoy_bytes(result.ptr, result.length) }))
    }

    /// Envoy's random value for this request: the same in every selection of the request (a
    /// retry that re-selects, a filter that refreshes the route).
    pub fn random_value(&self) -> u64 {
        // SAFETY: `raw` is the running selection's context.
        unsafe { envoy_dynamic_module_callback_cluster_specifier_get_random_value(self.raw) }
    }

    pub fn set_cluster_name(&mut self, name: &str) {
        // SAFETY: `raw` is the running selection's context; Envoy copies the name.
        unsafe {
            envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(
                self.raw,
                module_buffer(name.as_bytes()),
            )
        }
    }
}

/// Main thread: a cluster-specifier configuration (`specifier_name`, `specifier_config` — the
/// value of its `google.protobuf.StringValue`). Null rejects it (Envoy refuses the route).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_specifier_config_new(
    config_envoy_ptr: SpecifierConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> SpecifierConfigModulePtr {
    guard(
        || {
            // SAFETY: Envoy passes the name and configuration bytes valid for this hook;
            // `specifier::new_config` copies what it keeps.
            let (name, config) = unsafe {
                (
                    envoy_bytes(name.ptr, name.length),
                    envoy_bytes(config.ptr, config.length),
                )
            };
            let stats = SpecifierStats {
                raw: config_envoy_ptr,
            };
            match specifier::new_config(stats, name, config) {
                Some(config) => Arc::into_raw(Arc::new(config)).cast(),
                None => ptr::null(),
            }
        },
        || {
            log(
                LogLevel::Error,
                "subset-router: internal error while loading the cluster-specifier \
                 configuration; rejected",
            );
            ptr::null()
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_specifier_config_destroy(
    config_ptr: SpecifierConfigModulePtr,
) {
    if config_ptr.is_null() {
        return;
    }
    // SAFETY: a non-null pointer is one `Arc::into_raw` of `on_cluster_specifier_config_new`,
    // and Envoy destroys each configuration once.
    drop(unsafe { Arc::from_raw(config_ptr.cast::<SpecifierConfig>()) });
}

/// Worker thread, per request: picks the cluster. `false` (no configuration, or a panic caught)
/// keeps the matched route's own cluster.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_specifier_select(
    config_ptr: SpecifierConfigModulePtr,
    context_envoy_ptr: SelectContextEnvoyPtr,
) -> bool {
    guard(
        || {
            // SAFETY: non-null config pointers are `Arc<SpecifierConfig>`s alive until
            // `..._config_destroy`, which Envoy calls only once no route uses them; shared
            // access only (`SpecifierConfig` is `Sync`).
            let Some(config) = (unsafe { config_ptr.cast::<SpecifierConfig>().as_ref() }) else {
                return false;
            };
            let mut context = SelectContext {
                raw: context_envoy_ptr,
                _hook: PhantomData,
            };
            specifier::select(config, &mut context)
        },
        || false,
    )
}
