//! The Envoy configs of the benchmarks (`bench/run.py`, `bench/compare.py`): one front Envoy
//! per configuration, each a single listener in front of the clusters `v1` and `v2`, and the
//! optional `direct_response` upstream Envoy (`bench/run.py --upstream envoy`).
//!
//! Unlike [`render`](crate::render), a benchmark front Envoy serves no upstream itself: its
//! clusters point at the benchmark's own upstream process (`bench-upstream`, or
//! [`render_upstream`]), shared by every configuration and pinned to another CPU, so the front
//! Envoy's CPU counts only the proxying. The configurations differ only in what runs between
//! the listener and the router, and in the routes ([`Shape`]); everything else — one
//! connection manager without access logs, no stats settings, 1 s connect timeouts — is the
//! same for all, so their costs compare.

use std::fmt::Write as _;

use crate::yaml::q;
use crate::{
    admin, cluster_header_route, cluster_route, connection_manager, external_cluster, filter_name,
    filter_typed_config, front_listener_start, header_route, router_filter, specifier_route,
    static_cluster, wasm_plugin, Addr, Build, ExternalCluster,
};

/// The request header the Wasm floor and subset-router set, and the `cluster_header` route
/// reads (`clusterHeader` of `bench/config/*.json`).
pub const CLUSTER_HEADER: &str = "x-upstream-cluster";
/// Configuration A's debug route: this header with this value goes to [`DEBUG_CLUSTER`].
pub const DEBUG_HEADER: (&str, &str) = ("user-agent", "debug");
pub const DEBUG_CLUSTER: &str = "v2";
/// Configuration A's `weighted_clusters` (the weights sum to 100).
pub const WEIGHTED_CLUSTERS: [(&str, u32); 2] = [("v1", 90), ("v2", 10)];
/// Configuration C's one route.
pub const FLOOR_CLUSTER: &str = "v1";

/// What one benchmark configuration runs between its listener and the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// **A**: Envoy's own routing, what an Istio VirtualService with a `user-agent: debug` match
    /// to v2 and a 90/10 weighted route compiles to: a header-match route, then
    /// `weighted_clusters`. No filter but the router.
    NativeRouting,
    /// **C**: the floor. A route straight to v1: no filter, no weights.
    StraightToV1,
    /// **W**: the Wasm floor (`bench/wasm-floor`: only sets `x-upstream-cluster: v1`, one host
    /// call per request), the least any proxy-wasm filter costs. No plugin configuration (the
    /// floor reads none); routed like B.
    WasmFloor { file: String },
    /// **B**, B2, B3 (the Wasm build) and **N** (the native build, a dynamic module found in
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`): subset-router with `plugin_json` (JSON text, as
    /// given), routed by `cluster_header` on [`CLUSTER_HEADER`].
    SubsetRouter { build: Build, plugin_json: String },
    /// **N2**: the native build as the final route's cluster specifier
    /// ([`NativeForm::ClusterSpecifier`](crate::NativeForm::ClusterSpecifier), the route the
    /// renderer writes for it everywhere): the route asks the module for its cluster, so there is
    /// no HTTP filter but the router, no header write and no route recomputation. `plugin_json`
    /// as for `SubsetRouter`; it must name `clusterHeader` (the decision's cluster) and use none
    /// of what only the HTTP filter can do (Envoy refuses the route config otherwise).
    ClusterSpecifier { plugin_json: String },
}

impl Shape {
    /// What the configuration measures, for the comment at the top of the rendered file.
    fn description(&self) -> &'static str {
        match self {
            Shape::NativeRouting => {
                "A: native Istio-equivalent: route `user-agent: debug` -> v2, else weighted_clusters v1 90 / v2 10; no filter."
            }
            Shape::StraightToV1 => "C: the floor: a route straight to v1; no filter, no weights.",
            Shape::WasmFloor { .. } => {
                "W: the Wasm floor (bench/wasm-floor sets x-upstream-cluster: v1, nothing else); routed like B."
            }
            Shape::SubsetRouter { build: Build::Wasm { .. }, .. } => {
                "B/B2/B3: subset-router (proxy-wasm, V8, fail closed), routed by cluster_header x-upstream-cluster."
            }
            Shape::SubsetRouter { build: Build::Native, .. } => {
                "N: subset-router's native build (dynamic module libsubset_router.so), routed by cluster_header x-upstream-cluster."
            }
            Shape::ClusterSpecifier { .. } => {
                "N2: subset-router's native build as the route's cluster specifier (libsubset_router.so); no filter but the router."
            }
        }
    }
}

/// The front Envoy of one benchmark configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Front {
    pub shape: Shape,
    pub admin: Addr,
    /// The listener under measurement.
    pub listen: Addr,
    /// Where the clusters `v1` and `v2` send requests: the benchmark's upstream, outside this
    /// Envoy.
    pub v1: Addr,
    pub v2: Addr,
    /// More clusters, outside this Envoy: `prometheus` for a guard's `fleet` queries (B3-fleet,
    /// answered by the benchmark's fake metrics server). Never on the request path.
    pub clusters: Vec<ExternalCluster>,
}

/// Renders a benchmark front Envoy.
pub fn render_front(front: &Front) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# Benchmark front Envoy (rendered by envoy-config bench, envoy/config; bench/run.py).\n# {}\n\
         # Clusters v1 and v2 are served by the benchmark's upstream, outside this Envoy.",
        front.shape.description()
    );
    admin(&mut out, &front.admin);
    out.push_str("static_resources:\n  listeners:\n");
    front_listener_start(&mut out, "front", &front.listen, false);
    match &front.shape {
        Shape::NativeRouting => {
            let (header, value) = DEBUG_HEADER;
            header_route(&mut out, header, value, DEBUG_CLUSTER);
            weighted_clusters_route(&mut out, &WEIGHTED_CLUSTERS);
        }
        Shape::StraightToV1 => cluster_route(&mut out, FLOOR_CLUSTER),
        Shape::WasmFloor { .. } | Shape::SubsetRouter { .. } => {
            cluster_header_route(&mut out, CLUSTER_HEADER)
        }
        Shape::ClusterSpecifier { plugin_json } => specifier_route(&mut out, plugin_json),
    }
    out.push_str("          http_filters:\n");
    match &front.shape {
        // The route carries the module (N2): the router is the only HTTP filter.
        Shape::NativeRouting | Shape::StraightToV1 | Shape::ClusterSpecifier { .. } => {}
        Shape::WasmFloor { file } => {
            let build = Build::Wasm { file: file.clone() };
            let _ = writeln!(
                out,
                "          - name: {}\n            typed_config:\n              \"@type\": {}",
                filter_name(&build),
                build.type_url()
            );
            wasm_plugin(&mut out, &" ".repeat(14), "wasm_floor", file, None);
        }
        Shape::SubsetRouter { build, plugin_json } => {
            let _ = writeln!(
                out,
                "          - name: {}\n            typed_config:",
                filter_name(build)
            );
            filter_typed_config(&mut out, 14, build, plugin_json);
        }
    }
    router_filter(&mut out, "          ");
    out.push_str("  clusters:\n");
    for (cluster, address) in [("v1", &front.v1), ("v2", &front.v2)] {
        static_cluster(&mut out, cluster, &q(&address.host), address.port);
    }
    for cluster in &front.clusters {
        external_cluster(&mut out, cluster);
    }
    out
}

/// The last route of configuration A: every request to `clusters`, by weight.
fn weighted_clusters_route(out: &mut String, clusters: &[(&str, u32)]) {
    out.push_str(
        "              - match: { prefix: \"/\" }\n                route:\n                  weighted_clusters:\n                    clusters:\n",
    );
    for (cluster, weight) in clusters {
        let _ = writeln!(
            out,
            "                    - {{ name: {}, weight: {weight} }}",
            q(cluster)
        );
    }
}

/// The upstream Envoy of `bench/run.py --upstream envoy`: one listener per subset (`v1` at
/// `v1`, `v2` at `v2`), each a `direct_response` 200 whose body is the bare subset name (the
/// load generators and the sanity checks count bodies).
pub fn render_upstream(admin_address: &Addr, v1: &Addr, v2: &Addr) -> String {
    let mut out = String::from(
        "# The benchmark's upstream Envoy (rendered by envoy-config bench, envoy/config; bench/run.py\n\
         # --upstream envoy): one direct_response listener per subset, answering its name. A separate\n\
         # process, so the front Envoy's CPU counts only the proxying.\n",
    );
    admin(&mut out, admin_address);
    out.push_str("static_resources:\n  listeners:\n");
    for (subset, address) in [("v1", v1), ("v2", v2)] {
        let name = format!("upstream_{subset}");
        let _ = writeln!(
            out,
            "  - name: {}\n    address: {{ socket_address: {{ address: {}, port_value: {} }} }}\n    \
             filter_chains:\n    - filters:",
            q(&name),
            q(&address.host),
            address.port
        );
        connection_manager(&mut out, "      ", &name, false);
        let _ = writeln!(
            out,
            "          route_config:\n            virtual_hosts:\n            - name: {subset}\n              \
             domains: [\"*\"]\n              routes:\n              - match: {{ prefix: \"/\" }}\n                \
             direct_response: {{ status: 200, body: {{ inline_string: {subset} }} }}\n          http_filters:",
            subset = q(subset)
        );
        router_filter(&mut out, "          ");
    }
    out
}
