//! What one launch may change: ECDS delivery, worker count, how each upstream answers, and
//! the routes the filter is enabled on.

/// Extras of a launch: the filter delivered by ECDS from a file Envoy watches (as Istio
/// delivers WasmPlugin updates; [`Envoy::replace_ecds`] swaps it), and the worker count.
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
