//! The one Envoy-config renderer of subset-router: every Envoy config the project runs — the
//! integration and reliability suites, the examples (`make examples`), `make run` and the
//! benchmarks — is made here, for either build of the filter.
//!
//! The Envoy it describes:
//! * a front listener: the subset-router filter (the Wasm build, V8, fail closed; or the
//!   dynamic module), then the router. Routes: one per `(subsetHeader, subset)` pair (what an
//!   Istio VirtualService or a Gateway API HTTPRoute does), then a `cluster_header` route on
//!   `clusterHeader` (404 for an unknown cluster: never confused with a fail-closed 503 or an
//!   upstream failure), or a final route to a fallback cluster; or, for the native build's
//!   cluster-specifier form ([`NativeForm`]), no filter and a final route that asks the module
//!   for its cluster;
//! * one upstream per cluster, served by a `direct_response` listener in the same Envoy that
//!   answers its subset name (and, for the suites, echoes the routing headers it received) —
//!   with 200 at once, or, for the canary-guard tests, another status and/or after a fixed
//!   delay ([`Upstream::status`], [`Upstream::delay_ms`]);
//! * optionally: the filter delivered by file-based ECDS (as Istio delivers WasmPlugin
//!   updates), raised header limits for hostile-request tests, `stats_tags` so that
//!   `/stats/prometheus` labels decisions by `rule` and `subset`.
//!
//! The benchmarks' Envoys ([`bench`](mod@bench)) are made of the same pieces, but their
//! clusters point at the benchmark's own upstream process instead of listeners in the same
//! Envoy, and some run Envoy's own routing or the Wasm floor instead of the filter.
//!
//! YAML is written by hand (strings as JSON-quoted scalars, which YAML reads verbatim): the
//! output is small, fixed in shape, and reviewed as text in `examples/`.

#![forbid(unsafe_code)]

pub mod bench;
mod plugin;
mod yaml;

pub use plugin::{cluster_specifier_refusals, subsets_of, PluginRoutes};

use std::fmt::Write as _;

use yaml::q;

/// Which build of the filter runs in the front listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Build {
    /// `dist/subset_router.wasm` at this path (as Envoy sees it).
    Wasm { file: String },
    /// `libsubset_router.so`, found by Envoy in `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    Native,
}

impl Build {
    /// `wasm` or `native`.
    pub fn name(&self) -> &'static str {
        match self {
            Build::Wasm { .. } => "wasm",
            Build::Native => "native",
        }
    }

    /// The type URL of the filter's `typed_config` (ECDS `type_urls`).
    pub fn type_url(&self) -> &'static str {
        match self {
            Build::Wasm { .. } => "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            Build::Native => {
                "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
            }
        }
    }

    /// Envoy's prefix for the filter's own stats (`wasmcustom.subset_router.…`).
    pub fn stat_prefix(&self) -> &'static str {
        match self {
            Build::Wasm { .. } => "wasmcustom.",
            Build::Native => "dynamicmodulescustom.",
        }
    }
}

/// Where in Envoy's config the native build decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NativeForm {
    /// An HTTP filter (`envoy.filters.http.dynamic_modules`) that writes `clusterHeader`, which a
    /// `cluster_header` route reads: every feature.
    #[default]
    HttpFilter,
    /// The final route's cluster specifier (`envoy.router.cluster_specifier_plugin.dynamic_modules`):
    /// the route asks the module for its cluster — no header write, no route recomputation, no
    /// HTTP filter. No `subsetHeader`, `responseHeader`, `ramp` or `guard` (the module refuses
    /// such a configuration), and no ECDS (the configuration is part of the route).
    ClusterSpecifier,
}

/// How the filter's configuration reaches Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// In the static config.
    Inline,
    /// By Extension Config Discovery from `{dir}/subset_router.yaml`, a file Envoy watches
    /// (replace it by rename); [`ecds_resource`] renders that file.
    Ecds { dir: String },
}

/// Name of the ECDS resource (and of the dynamic filter).
pub const ECDS_NAME: &str = "subset_router";
/// File name of the ECDS resource inside [`Delivery::Ecds`]'s directory.
pub const ECDS_FILE: &str = "subset_router.yaml";

/// One upstream: a cluster and the listener that serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstream {
    pub cluster: String,
    /// What it answers (its subset name).
    pub subset: String,
    pub port: u16,
    /// The `direct_response` status; `None`: 200. A failing version for the canary guard's
    /// tests (`Some(503)`): the body and headers stay those of a healthy answer.
    pub status: Option<u16>,
    /// Answer only after this many milliseconds: an `envoy.filters.http.fault` filter with a
    /// fixed delay on every request, before the router of this upstream's listener. `None`: at
    /// once (no fault filter).
    pub delay_ms: Option<u64>,
}

/// A `host:port` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub host: String,
    pub port: u16,
}

impl Addr {
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
        }
    }
}

/// Everything one Envoy config is made of.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Comment lines at the top (without `# `).
    pub comment: Vec<String>,
    pub admin: Addr,
    pub front: Addr,
    pub build: Build,
    /// With [`Build::Native`]: an HTTP filter, or the final route's cluster specifier (which
    /// replaces both the filter and the `cluster_header` route; `delivery` must be `Inline`).
    pub native_form: NativeForm,
    /// The plugin configuration (JSON text), as given.
    pub plugin_json: String,
    pub delivery: Delivery,
    /// `(header, [(value, cluster)])`: a route per value of the header, first.
    pub header_routes: Option<(String, Vec<(String, String)>)>,
    /// The header a `cluster_header` route reads, after the header routes.
    pub cluster_header: Option<String>,
    /// Where a request goes that no earlier route takes (without `cluster_header`).
    pub fallback_cluster: Option<String>,
    pub upstreams: Vec<Upstream>,
    /// `(response header, request header)`: each upstream echoes the value of a request header
    /// it received (the suites read them to see what reached the upstream).
    pub echo_headers: Vec<(String, String)>,
    /// Front response header `x-front-flags: %RESPONSE_FLAGS%` (NC = no cluster found).
    pub front_flags: bool,
    /// Raised codec limits on every connection manager, and HTTP/1.0 accepted, so that the
    /// hostile-request tests reach the filter.
    pub hardened: bool,
    /// `stats_tags`: the decision counters as one family labelled `rule` and `subset`.
    pub stats_tags: bool,
    /// `Some(routes)`: the filter is disabled at the listener and enabled only on these routes
    /// (`typed_per_filter_config`) — the shape Envoy Gateway renders for a policy that targets
    /// routes rather than the Gateway. A header route is named by its header value, the final
    /// route by [`FINAL_ROUTE`]. `None`: the filter runs on every route.
    pub filter_routes: Option<Vec<String>>,
    /// `Some(header)`: each upstream answers 503 to a request whose `header` names its subset
    /// (`x-fail: v2`), so a person can make one version fail and watch a guard trip.
    pub fail_header: Option<String>,
    /// More front listeners in the same Envoy, each with the filter and its own plugin
    /// configuration (always inline), and the same routes as the front listener: two services
    /// (or two teams' configurations) behind one proxy. Not with the cluster-specifier form.
    pub more_fronts: Vec<Front>,
    /// Clusters outside this Envoy, e.g. `prometheus` for a guard's `fleet` queries: a
    /// cluster of one endpoint each (`STATIC` at an IP address, `STRICT_DNS` at a host name).
    pub external_clusters: Vec<ExternalCluster>,
}

/// One more front listener ([`Spec::more_fronts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Front {
    /// The listener's name (and its connection manager's `stat_prefix`).
    pub name: String,
    pub address: Addr,
    /// Its filter's plugin configuration (JSON text), as given.
    pub plugin_json: String,
}

/// A cluster outside this Envoy ([`Spec::external_clusters`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalCluster {
    pub name: String,
    pub address: Addr,
}

/// The name of the final (`cluster_header` or fallback) route in [`Spec::filter_routes`].
pub const FINAL_ROUTE: &str = "final";

/// Header limits of a [`Spec::hardened`] config.
pub const MAX_REQUEST_HEADERS_KB: u32 = 96;
pub const MAX_HEADERS_COUNT: u32 = 500;

/// Renders the Envoy config.
pub fn render(spec: &Spec) -> String {
    let mut out = String::with_capacity(8192);
    for line in &spec.comment {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
    if matches!(spec.delivery, Delivery::Ecds { .. }) {
        // xDS subscriptions need a node identity.
        out.push_str("node: { id: subset-router, cluster: subset-router }\n");
    }
    admin(&mut out, &spec.admin);
    if spec.stats_tags {
        stats_tags(&mut out, &spec.build);
    }
    out.push_str("static_resources:\n  listeners:\n");
    front_listener(
        &mut out,
        spec,
        "front",
        &spec.front,
        &spec.plugin_json,
        &spec.delivery,
    );
    for front in &spec.more_fronts {
        front_listener(
            &mut out,
            spec,
            &front.name,
            &front.address,
            &front.plugin_json,
            &Delivery::Inline,
        );
    }
    for upstream in &spec.upstreams {
        upstream_listener(&mut out, spec, upstream);
    }
    out.push_str("  clusters:\n");
    for upstream in &spec.upstreams {
        static_cluster(&mut out, &upstream.cluster, "127.0.0.1", upstream.port);
    }
    for cluster in &spec.external_clusters {
        external_cluster(&mut out, cluster);
    }
    out
}

/// The `admin:` section.
fn admin(out: &mut String, admin: &Addr) {
    let _ = writeln!(
        out,
        "admin:\n  address: {{ socket_address: {{ address: {}, port_value: {} }} }}",
        q(&admin.host),
        admin.port
    );
}

/// A `STATIC` cluster of one endpoint; `endpoint_host` is written as given (a YAML scalar).
fn static_cluster(out: &mut String, cluster: &str, endpoint_host: &str, port: u16) {
    one_endpoint_cluster(out, cluster, "STATIC", endpoint_host, port);
}

fn one_endpoint_cluster(
    out: &mut String,
    cluster: &str,
    kind: &str,
    endpoint_host: &str,
    port: u16,
) {
    let _ = write!(
        out,
        "  - name: {cluster}\n    type: {kind}\n    connect_timeout: 1s\n    load_assignment:\n      \
         cluster_name: {cluster}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: \
         {{ address: {{ socket_address: {{ address: {endpoint_host}, port_value: {port} }} }} }}\n",
        cluster = q(cluster),
    );
}

/// A cluster outside this Envoy: `STATIC` at an IP address; at a host name (a Compose service,
/// a Kubernetes Service), `STRICT_DNS`, which Envoy keeps resolving, so a peer that starts
/// later or moves is found without restarting Envoy.
fn external_cluster(out: &mut String, cluster: &ExternalCluster) {
    let host = &cluster.address.host;
    if host.parse::<std::net::IpAddr>().is_ok() {
        static_cluster(out, &cluster.name, &q(host), cluster.address.port);
    } else {
        one_endpoint_cluster(
            out,
            &cluster.name,
            "STRICT_DNS",
            &q(host),
            cluster.address.port,
        );
        // The A record first (Docker's networks are IPv4 unless configured otherwise), the
        // AAAA record when there is none.
        out.push_str("    dns_lookup_family: V4_PREFERRED\n");
    }
}

/// The ECDS resource file for [`Delivery::Ecds`]: a `DiscoveryResponse` holding the filter.
pub fn ecds_resource(build: &Build, plugin_json: &str) -> String {
    let mut out = String::from(
        "# ECDS resource (a DiscoveryResponse), replaced by rename while Envoy runs.\n\
         resources:\n\
         - \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n",
    );
    let _ = writeln!(out, "  name: {ECDS_NAME}\n  typed_config:");
    filter_typed_config(&mut out, 4, build, plugin_json);
    out
}

fn connection_manager(out: &mut String, indent: &str, stat_prefix: &str, hardened: bool) {
    let _ = writeln!(
        out,
        "{indent}- name: envoy.filters.network.http_connection_manager"
    );
    let _ = writeln!(out, "{indent}  typed_config:");
    let _ = writeln!(out, "{indent}    \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
    let _ = writeln!(out, "{indent}    stat_prefix: {}", q(stat_prefix));
    // The peer address is the downstream address: with Envoy's default (false) a client's own
    // x-forwarded-for would become `source.address`, and `sourceCidrs` / `stickyBy.sourceIp`
    // would trust whatever the client wrote. Behind a trusted proxy, set xff_num_trusted_hops.
    let _ = writeln!(out, "{indent}    use_remote_address: true");
    if hardened {
        let _ = writeln!(
            out,
            "{indent}    max_request_headers_kb: {MAX_REQUEST_HEADERS_KB}"
        );
        let _ = writeln!(
            out,
            "{indent}    common_http_protocol_options: {{ max_headers_count: {MAX_HEADERS_COUNT} }}"
        );
        let _ = writeln!(
            out,
            "{indent}    http_protocol_options: {{ accept_http_10: true }}"
        );
    }
}

fn router_filter(out: &mut String, indent: &str) {
    let _ = writeln!(out, "{indent}- name: envoy.filters.http.router");
    let _ = writeln!(out, "{indent}  typed_config:");
    let _ = writeln!(
        out,
        "{indent}    \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    );
}

/// A front listener `name` on `address` whose filter has `plugin_json`, delivered as `delivery`.
fn front_listener(
    out: &mut String,
    spec: &Spec,
    name: &str,
    address: &Addr,
    plugin_json: &str,
    delivery: &Delivery,
) {
    front_listener_start(out, name, address, spec.hardened);
    // In the cluster-specifier form nothing writes the subset header: a route on it could only
    // be chosen by the client's own header, so there is none.
    let header_routes = spec
        .header_routes
        .as_ref()
        .filter(|_| !spec.specifier_form());
    if let Some((header, values)) = header_routes {
        for (value, cluster) in values {
            header_route(out, header, value, cluster);
            enable_on_route(out, spec, value);
        }
    }
    if spec.specifier_form() {
        specifier_route(out, plugin_json);
    } else if let Some(header) = &spec.cluster_header {
        cluster_header_route(out, header);
        enable_on_route(out, spec, FINAL_ROUTE);
    } else if let Some(cluster) = &spec.fallback_cluster {
        cluster_route(out, cluster);
        enable_on_route(out, spec, FINAL_ROUTE);
    }
    if spec.front_flags {
        out.push_str("              response_headers_to_add:\n              - header: { key: x-front-flags, value: \"%RESPONSE_FLAGS%\" }\n");
    }
    out.push_str("          http_filters:\n");
    match delivery {
        // The route carries the module: the router is the only HTTP filter.
        _ if spec.specifier_form() => {}
        Delivery::Inline => {
            let _ = writeln!(out, "          - name: {}", filter_name(&spec.build));
            if spec.filter_routes.is_some() {
                out.push_str("            disabled: true\n");
            }
            out.push_str("            typed_config:\n");
            filter_typed_config(out, 14, &spec.build, plugin_json);
        }
        Delivery::Ecds { dir } => {
            let _ = writeln!(
                out,
                "          - name: {ECDS_NAME}\n            config_discovery:\n              config_source:\n                \
                 resource_api_version: V3\n                path_config_source:\n                  path: {}\n                  \
                 watched_directory: {{ path: {} }}\n              type_urls: [{}]",
                q(&format!("{dir}/{ECDS_FILE}")),
                q(dir),
                q(spec.build.type_url())
            );
        }
    }
    router_filter(out, "          ");
}

/// A front listener up to its routes: the listener `name` on `address`, its connection
/// manager, the route config `name` with the one virtual host `app`, `routes:`.
fn front_listener_start(out: &mut String, name: &str, address: &Addr, hardened: bool) {
    let _ = writeln!(
        out,
        "  - name: {name}\n    address: {{ socket_address: {{ address: {}, port_value: {} }} }}\n    \
         filter_chains:\n    - filters:",
        q(&address.host),
        address.port
    );
    connection_manager(out, "      ", name, hardened);
    let _ = writeln!(
        out,
        "          route_config:\n            name: {name}\n            virtual_hosts:\n            - name: app\n              domains: [\"*\"]\n              routes:"
    );
}

/// A front route: requests whose `header` is exactly `value` go to `cluster`.
fn header_route(out: &mut String, header: &str, value: &str, cluster: &str) {
    let _ = writeln!(
        out,
        "              - match: {{ prefix: \"/\", headers: [ {{ name: {}, string_match: {{ exact: {} }} }} ] }}\n                route: {{ cluster: {} }}",
        q(header),
        q(value),
        q(cluster)
    );
}

/// A front route to the cluster named in `header` (what the filter sets).
fn cluster_header_route(out: &mut String, header: &str) {
    let _ = writeln!(
        out,
        "              - match: {{ prefix: \"/\" }}\n                route:\n                  \
         cluster_header: {}\n                  # 404 (not Envoy's default 503) for a cluster that \
         does not exist: never\n                  # confused with a fail-closed 503 or an upstream \
         failure.\n                  cluster_not_found_response_code: NOT_FOUND",
        q(header)
    );
}

/// The final front route of [`NativeForm::ClusterSpecifier`]: the module picks its cluster.
fn specifier_route(out: &mut String, plugin_json: &str) {
    let _ = writeln!(
        out,
        "              - match: {{ prefix: \"/\" }}\n                route:\n                  \
         # 404 for a cluster that does not exist, as with the HTTP filter's cluster_header route.\n                  \
         cluster_not_found_response_code: NOT_FOUND\n                  \
         inline_cluster_specifier_plugin:\n                    extension:\n                      \
         name: subset_router\n                      typed_config:\n                        \
         \"@type\": {SPECIFIER_TYPE_URL}\n                        \
         dynamic_module_config: {{ name: subset_router }}\n                        \
         specifier_name: subset_router\n                        specifier_config:\n                          \
         \"@type\": type.googleapis.com/google.protobuf.StringValue\n                          value: {}",
        yaml::block_or_quoted(plugin_json, 28)
    );
}

/// The cluster specifier's `typed_config` type.
pub const SPECIFIER_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier";

impl Spec {
    /// The native build as the final route's cluster specifier (not an HTTP filter).
    pub fn specifier_form(&self) -> bool {
        self.build == Build::Native && self.native_form == NativeForm::ClusterSpecifier
    }
}

/// A front route sending every request to `cluster`.
fn cluster_route(out: &mut String, cluster: &str) {
    let _ = writeln!(
        out,
        "              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: {} }}",
        q(cluster)
    );
}

/// `typed_per_filter_config` enabling the listener-disabled filter on one route.
fn enable_on_route(out: &mut String, spec: &Spec, route: &str) {
    if spec
        .filter_routes
        .as_ref()
        .is_some_and(|routes| routes.iter().any(|r| r == route))
    {
        let _ = writeln!(
            out,
            "                typed_per_filter_config:\n                  {}:\n                    \
             \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                    config: {{}}",
            filter_name(&spec.build)
        );
    }
}

fn filter_name(build: &Build) -> &'static str {
    match build {
        Build::Wasm { .. } => "envoy.filters.http.wasm",
        Build::Native => "envoy.filters.http.dynamic_modules",
    }
}

/// The filter's `typed_config` body, at `indent` spaces.
fn filter_typed_config(out: &mut String, indent: usize, build: &Build, plugin_json: &str) {
    let pad = " ".repeat(indent);
    let _ = writeln!(out, "{pad}\"@type\": {}", build.type_url());
    match build {
        Build::Wasm { file } => {
            wasm_plugin(
                out,
                &pad,
                "subset_router",
                file,
                Some(&yaml::block_or_quoted(plugin_json, indent + 6)),
            );
        }
        Build::Native => {
            let _ = writeln!(
                out,
                "{pad}dynamic_module_config: {{ name: subset_router }}\n{pad}filter_name: subset_router\n{pad}filter_config:\n{pad}  \
                 \"@type\": type.googleapis.com/google.protobuf.StringValue\n{pad}  value: {}",
                yaml::block_or_quoted(plugin_json, indent + 4)
            );
        }
    }
}

/// The `config:` of an `envoy.filters.http.wasm` filter (after its `@type`, at `pad`): plugin
/// and VM `name`, the module `file`, V8, fail closed; `configuration`: the plugin configuration
/// as a YAML scalar, or none at all.
fn wasm_plugin(out: &mut String, pad: &str, name: &str, file: &str, configuration: Option<&str>) {
    let _ = writeln!(
        out,
        "{pad}config:\n{pad}  name: {name}\n{pad}  vm_config:\n{pad}    vm_id: {name}\n{pad}    \
         runtime: envoy.wasm.runtime.v8\n{pad}    code: {{ local: {{ filename: {} }} }}",
        q(file)
    );
    if let Some(value) = configuration {
        let _ = writeln!(
            out,
            "{pad}  configuration:\n{pad}    \"@type\": type.googleapis.com/google.protobuf.StringValue\n{pad}    value: {value}"
        );
    }
    let _ = writeln!(
        out,
        "{pad}  # Fail closed: if the Wasm VM fails, requests get 503 rather than bypassing the decision\n{pad}  \
         # (a fail-open filter would let the client's own routing header through).\n{pad}  failure_policy: FAIL_CLOSED"
    );
}

fn upstream_listener(out: &mut String, spec: &Spec, upstream: &Upstream) {
    let name = format!("upstream_{}", upstream.cluster);
    let _ = writeln!(
        out,
        "  - name: {}\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}\n    \
         filter_chains:\n    - filters:",
        q(&name),
        upstream.port
    );
    connection_manager(out, "      ", &name, spec.hardened);
    let _ = writeln!(
        out,
        "          route_config:\n            virtual_hosts:\n            - name: {}\n              domains: [\"*\"]\n              \
         routes:",
        q(&upstream.subset)
    );
    if let Some(header) = &spec.fail_header {
        let _ = writeln!(
            out,
            "              - match: {{ prefix: \"/\", headers: [ {{ name: {}, string_match: {{ exact: {} }} }} ] }}\n                \
             direct_response: {{ status: 503, body: {{ inline_string: {} }} }}\n                \
             response_headers_to_add:\n                - header: {{ key: x-served-by, value: {} }}",
            q(header),
            q(&upstream.subset),
            q(&format!("{} failing ({header})\n", upstream.subset)),
            q(&upstream.subset)
        );
    }
    let _ = writeln!(
        out,
        "              - match: {{ prefix: \"/\" }}\n                direct_response: {{ status: {}, body: {{ inline_string: {} }} }}\n                \
         response_headers_to_add:\n                - header: {{ key: x-served-by, value: {} }}\n                \
         - header: {{ key: x-served-cluster, value: {} }}",
        upstream.status.unwrap_or(200),
        q(&format!("{}\n", upstream.subset)),
        q(&upstream.subset),
        q(&upstream.cluster)
    );
    for (response, request) in &spec.echo_headers {
        let _ = writeln!(
            out,
            "                - header: {{ key: {}, value: {} }}",
            q(response),
            q(&format!("%REQ({request})%"))
        );
    }
    out.push_str("          http_filters:\n");
    if let Some(ms) = upstream.delay_ms {
        delay_filter(out, "          ", ms);
    }
    router_filter(out, "          ");
}

/// `envoy.filters.http.fault` delaying every request by `ms` (a slow version, for the canary
/// guard's latency trigger). It must come before the router, which sends the direct response.
fn delay_filter(out: &mut String, indent: &str, ms: u64) {
    let _ = writeln!(out, "{indent}- name: envoy.filters.http.fault");
    let _ = writeln!(out, "{indent}  typed_config:");
    let _ = writeln!(
        out,
        "{indent}    \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
    );
    let _ = writeln!(
        out,
        "{indent}    delay: {{ fixed_delay: {}.{:03}s, percentage: {{ numerator: 100, denominator: HUNDRED }} }}",
        ms / 1000,
        ms % 1000
    );
}

/// `stats_config.stats_tags`: `…subset_router.rule.<rule>.subset.<subset>` becomes the family
/// `…subset_router.rule.subset` with labels `rule` and `subset` (and `…rule.<rule>.ramp_ppm`
/// becomes `…rule.ramp_ppm{rule}`); the guard stats `…guard.<subset>.<what>` become
/// `…guard.<what>{subset}`. Envoy matches every regex against the full stat name, removes its
/// first capture group from the name and takes the second as the tag value.
///
/// A configuration with a top-level `name` prefixes every stat with it
/// (`…subset_router.<name>.rule.<rule>.subset.<subset>`, `…subset_router.<name>.guard.<subset>.<what>`,
/// `…subset_router.<name>.spoofed_header_removed`, …): the `instance` tag takes that segment out,
/// so named and unnamed configurations print the same families, the named ones with an
/// `instance` label (which a Prometheus scrape stores as `exported_instance`, its own
/// `instance` being the target). An unnamed stat's second segment is always `rule`, `guard` or
/// a one-segment counter name, so a name is any `[a-z0-9_-]{1,64}` segment other than `rule` and
/// `guard` ([`INSTANCE_NAME`]) that more segments follow.
///
/// Rule names are one stat segment (`[A-Za-z0-9_-]`), but subset names may hold dots
/// (`v2.1-rc.1`): the subset is everything after `.subset.` to the end, and everything between
/// `.guard.` and the last segment (the counter or gauge name), never just up to the next dot.
///
/// And Envoy's ECDS stats `extension_config_discovery.http_filter.<resource>.<what>` become
/// `extension_config_discovery.http_filter.<what>{ecds_name}` (`config_fail` counts rejected
/// filter configurations): one family for alerts, whatever the resource is called (Istio names
/// a WasmPlugin's `<namespace>.<name>`, dots included).
fn stats_tags(out: &mut String, build: &Build) {
    out.push_str("stats_config:\n  stats_tags:\n");
    for (tag, regex) in stats_tag_regexes(build) {
        let _ = writeln!(out, "  - tag_name: {tag}\n    regex: {}", q(&regex));
    }
}

/// The `(tag_name, regex)` pairs of [`stats_tags`], in order.
pub fn stats_tag_regexes(build: &Build) -> Vec<(&'static str, String)> {
    let prefix = regex_escape(build.stat_prefix());
    let name = instance_name_regex();
    vec![
        (
            "instance",
            format!(
                r"^{prefix}subset_router\.(({name})\.)(?:rule\.|guard\.|spoofed_header_removed$|sticky_key_missing$|host_call_failed$)"
            ),
        ),
        (
            "rule",
            format!(r"^{prefix}subset_router\.(?:{name}\.)?rule\.(([^.]+)\.)"),
        ),
        (
            "subset",
            format!(r"^{prefix}subset_router\.(?:{name}\.)?rule\.[^.]+\.subset(\.(.+))$"),
        ),
        (
            "subset",
            format!(r"^{prefix}subset_router\.(?:{name}\.)?guard\.((.+)\.)[^.]+$"),
        ),
        (
            "ecds_name",
            r"^extension_config_discovery\.http_filter\.((.+)\.)[^.]+$".to_string(),
        ),
    ]
}

/// The characters of a configuration's `name` (`[a-z0-9_-]{1,64}`).
const NAME_CHARS: &str = "a-z0-9_-";
/// Second segments of unnamed stats that more segments follow: never an instance name.
const NOT_INSTANCE_NAMES: [&str; 2] = ["rule", "guard"];

/// A regex (no lookaround: Envoy's ECMAScript `std::regex` and the tests' `regex` crate both
/// read it) matching exactly the instance names `[a-z0-9_-]{1,64}` other than
/// [`NOT_INSTANCE_NAMES`]: every length without an excluded word as is, and for the length of
/// each excluded word the strings that differ from it at some first position.
fn instance_name_regex() -> String {
    let class = |except: Option<char>| match except {
        None => format!("[{NAME_CHARS}]"),
        // `[a-z]` minus one lowercase letter: two ranges around it.
        Some(c) => {
            let (before, after) = ((c as u8 - 1) as char, (c as u8 + 1) as char);
            let low = match c {
                'a' => String::new(),
                'b' => "a".to_string(),
                _ => format!("a-{before}"),
            };
            let high = match c {
                'z' => String::new(),
                'y' => "z".to_string(),
                _ => format!("{after}-z"),
            };
            format!("[{low}{high}0-9_-]")
        }
    };
    let mut alternatives = Vec::new();
    let mut free_from = 1;
    for n in 1..=subset_router_core::compile::MAX_INSTANCE_NAME_LEN {
        // One excluded word per length (two of one length would need a trie; a unit test
        // checks the regex against every name).
        let Some(word) = NOT_INSTANCE_NAMES.iter().find(|w| w.len() == n).copied() else {
            continue;
        };
        if free_from < n {
            alternatives.push(format!("[{NAME_CHARS}]{{{free_from},{}}}", n - 1));
        }
        for (i, c) in word.char_indices() {
            let rest = n - i - 1;
            let mut alt = format!("{}{}", &word[..i], class(Some(c)));
            match rest {
                0 => {}
                1 => alt.push_str(&class(None)),
                _ => alt.push_str(&format!("{}{{{rest}}}", class(None))),
            }
            alternatives.push(alt);
        }
        free_from = n + 1;
    }
    alternatives.push(format!(
        "[{NAME_CHARS}]{{{free_from},{}}}",
        subset_router_core::compile::MAX_INSTANCE_NAME_LEN
    ));
    format!("(?:{})", alternatives.join("|"))
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

#[cfg(test)]
mod tests;
