//! What one launch may change: ECDS delivery, worker count, how each upstream answers, the
//! routes the filter is enabled on, and the native build's form.

use super::FilterBuild;

/// Extras of a launch: the filter delivered by ECDS from a file Envoy watches (as Istio
/// delivers WasmPlugin updates; [`Envoy::replace_ecds`] swaps it), the worker count, and
/// the native build's form.
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    pub ecds: bool,
    /// `--concurrency` (default 1; 2 makes two VMs / worker threads share the traffic).
    pub concurrency: Option<u32>,
    /// Upstreams that do not answer 200 at once (a failing or slow version, for the canary
    /// guard); every cluster not named here behaves as always.
    pub upstreams: Vec<UpstreamBehaviour>,
    /// `Some(routes)`: the filter disabled at the listener and enabled only on these routes
    /// (Envoy Gateway's shape for a policy attached to routes; see envoy_config::Spec).
    pub filter_routes: Option<Vec<String>>,
    /// The native build's form: the HTTP filter (default), or the final route's cluster
    /// specifier (`envoy.router.cluster_specifier_plugin.dynamic_modules`), which the route asks
    /// for its cluster. The specifier form exists only for `FILTER=native`, and takes neither
    /// ECDS (its configuration is part of the route) nor `filter_routes` (there is no HTTP
    /// filter): [`LaunchOptions::check`] refuses those combinations.
    pub native_form: envoy_config::NativeForm,
    /// More front listeners, each with the filter and its own plugin configuration (inline,
    /// even with `ecds`), in the order of [`Ports::more_fronts`](super::Ports): two services
    /// behind one proxy. At most [`MAX_MORE_FRONTS`](super::MAX_MORE_FRONTS).
    pub more_fronts: Vec<String>,
    /// Clusters outside this Envoy, `(name, port on 127.0.0.1)`: e.g. `prometheus` for a
    /// guard's fleet queries.
    pub external_clusters: Vec<(String, u16)>,
    /// `Some(header)`: every upstream answers 503 to a request whose `header` names its subset
    /// (`x-fail: v2`), so one Envoy can serve a version healthy and failing by request.
    pub fail_header: Option<String>,
}

impl LaunchOptions {
    /// The native build as the final route's cluster specifier.
    pub fn cluster_specifier() -> Self {
        Self {
            native_form: envoy_config::NativeForm::ClusterSpecifier,
            ..Self::default()
        }
    }

    /// `true` for the cluster-specifier form.
    pub fn specifier_form(&self) -> bool {
        self.native_form == envoy_config::NativeForm::ClusterSpecifier
    }

    /// Refuses what cannot be rendered for `build`: the cluster-specifier form of a Wasm
    /// build, or with ECDS delivery, or with a per-route filter.
    pub fn check(&self, build: &FilterBuild) -> Result<(), String> {
        if self.more_fronts.len() > super::MAX_MORE_FRONTS {
            return Err(format!(
                "{} more front listeners; at most {}",
                self.more_fronts.len(),
                super::MAX_MORE_FRONTS
            ));
        }
        if !self.specifier_form() {
            return Ok(());
        }
        if !self.more_fronts.is_empty() {
            return Err(
                "more front listeners are HTTP filters (not the cluster-specifier form)".into(),
            );
        }
        if !matches!(build, FilterBuild::Native(_)) {
            return Err(format!(
                "the cluster-specifier form is the native build's (FILTER=native), not the {} \
                 build's",
                build.name()
            ));
        }
        if self.ecds {
            return Err(
                "the cluster-specifier form cannot be delivered by ECDS: its \
                        configuration is part of the route (use the HTTP filter form)"
                    .into(),
            );
        }
        if self.filter_routes.is_some() {
            return Err(
                "the cluster-specifier form has no HTTP filter to enable per route \
                 (filter_routes)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// How one upstream cluster of [`CLUSTERS`] answers in a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBehaviour {
    pub cluster: String,
    /// Response status (`None`: 200); body and `x-served-by` stay the subset's.
    pub status: Option<u16>,
    /// Answer after this many milliseconds (`None`: at once).
    pub delay_ms: Option<u64>,
}

impl UpstreamBehaviour {
    /// `cluster` answers `status`.
    pub fn failing(cluster: &str, status: u16) -> Self {
        Self {
            cluster: cluster.into(),
            status: Some(status),
            delay_ms: None,
        }
    }

    /// `cluster` answers 200 after `delay_ms`.
    pub fn slow(cluster: &str, delay_ms: u64) -> Self {
        Self {
            cluster: cluster.into(),
            status: None,
            delay_ms: Some(delay_ms),
        }
    }
}
