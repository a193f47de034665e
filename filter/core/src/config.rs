//! The plugin configuration exactly as operators write it (see docs/configuration.md).
//!
//! These types only describe the JSON shape: [`crate::reader`] fills them from JSON (rejecting
//! unknown fields, with the JSON path of every error), and [`crate::compile`] checks every value
//! and turns the result into a [`crate::Router`]. "Exactly one of" choices are plain optional
//! fields checked at compile time, so that a typo gets a precise message.
//!
//! The serde and schemars attributes (host `cli` feature only) generate the JSON Schema
//! (`examples/config.schema.json`) and a serde parser that tests compare with the reader.

/// Header that carries the chosen cluster unless configured otherwise.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-upstream-cluster";
/// Cluster name template unless configured otherwise: the bare subset name.
pub const DEFAULT_CLUSTER_TEMPLATE: &str = "{subset}";

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "schema", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    serde(deny_unknown_fields, rename_all = "camelCase")
)]
#[cfg_attr(feature = "schema", schemars(
    title = "subset-router plugin configuration",
    extend("anyOf" = [
        {"not": {"properties": {"clusterHeader": {"type": "null"}}, "required": ["clusterHeader"]}},
        {"required": ["subsetHeader"]}
    ])
))]
/// The filter's configuration: rules evaluated in order, then the default route.
pub struct PluginConfig {
    /// Optional instance name, `[a-z0-9_-]{1,64}`: namespaces every stat
    /// (`subset_router.<name>.…`) and tells two configurations of identical text apart.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = INSTANCE_NAME_PATTERN)))]
    pub name: Option<String>,
    /// Request header set to the chosen cluster name (for an Envoy route with `cluster_header`).
    /// Absent: `x-upstream-cluster`; `null`: no cluster header is written (then `subsetHeader` is required).
    #[cfg_attr(feature = "schema", serde(default = "default_cluster_header"))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = OUTPUT_HEADER_PATTERN)))]
    pub cluster_header: Option<String>,
    /// Cluster name made from the subset: `{subset}` (exactly once) is replaced by the subset name.
    #[cfg_attr(feature = "schema", serde(default = "default_cluster_template"))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = TEMPLATE_PATTERN)))]
    pub cluster_template: String,
    /// Optional request header carrying the bare subset name (for an Istio VirtualService header match).
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = OUTPUT_HEADER_PATTERN)))]
    pub subset_header: Option<String>,
    /// Optional response header naming the subset that served the request.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = OUTPUT_HEADER_PATTERN)))]
    pub response_header: Option<String>,
    /// Evaluated in order; the first whose `match` holds decides.
    #[cfg_attr(feature = "schema", serde(default))]
    pub rules: Vec<RuleConfig>,
    /// The route when no rule matches.
    pub default: RouteConfig,
    /// Canary guards: each takes its subset out of every split while that subset fails.
    #[cfg_attr(feature = "schema", serde(default))]
    pub guards: Vec<GuardConfig>,
}

#[cfg(feature = "schema")]
fn default_cluster_header() -> Option<String> {
    Some(DEFAULT_CLUSTER_HEADER.to_owned())
}

#[cfg(feature = "schema")]
fn default_cluster_template() -> String {
    DEFAULT_CLUSTER_TEMPLATE.to_owned()
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "schema", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct RuleConfig {
    /// Unique; names the rule's stats (`subset_router.rule.<name>.subset.<subset>`) and salts sticky keys.
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = RULE_NAME_PATTERN, "not" = {"const": "default"})))]
    pub name: String,
    /// Absent or empty: the rule always matches.
    #[cfg_attr(feature = "schema", serde(default, rename = "match"))]
    pub matches: MatchConfig,
    pub route: RouteConfig,
}

/// Every condition must hold; an empty match always holds.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "schema", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    serde(deny_unknown_fields, rename_all = "camelCase")
)]
pub struct MatchConfig {
    /// Header conditions (names case-insensitive; a repeated header matches if any value does).
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("items" = {"$ref": "#/$defs/ValueMatchConfig", "properties": {"name": {"pattern": MATCH_HEADER_PATTERN}}})))]
    pub headers: Vec<ValueMatchConfig>,
    /// Conditions on cookies of the `cookie` header.
    #[cfg_attr(feature = "schema", serde(default))]
    pub cookies: Vec<ValueMatchConfig>,
    /// Conditions on percent-decoded query parameters of `:path`.
    #[cfg_attr(feature = "schema", serde(default))]
    pub query: Vec<ValueMatchConfig>,
    /// Prefix of `:path` without the query string.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = PATH_PATTERN)))]
    pub path_prefix: Option<String>,
    /// Exact `:path` without the query string.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = PATH_PATTERN)))]
    pub path: Option<String>,
    /// Any of these `:method`s (case-sensitive).
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("items" = {"type": "string", "pattern": "^[A-Z_-]+$"})))]
    pub methods: Vec<String>,
    /// Any of these hosts (`:authority` without port); `*.example.com` matches any subdomain; `*` any host.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("items" = {"type": "string", "pattern": HOST_PATTERN})))]
    pub hosts: Vec<String>,
    /// The downstream peer address is in any of these blocks (`10.0.0.0/8`, `::1/128`).
    #[cfg_attr(feature = "schema", serde(default))]
    pub source_cidrs: Vec<String>,
}

/// A condition on a named value (header, cookie or query parameter): exactly one operator.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "schema", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("oneOf" = [
    {"required": ["exact"]}, {"required": ["oneOf"]}, {"required": ["prefix"]}, {"required": ["suffix"]},
    {"required": ["contains"]}, {"required": ["regex"]}, {"required": ["present"]}
])))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct ValueMatchConfig {
    #[cfg_attr(feature = "schema", schemars(extend("minLength" = 1)))]
    pub name: String,
    #[cfg_attr(feature = "schema", serde(default))]
    pub exact: Option<String>,
    /// A value equals one of these (1 to 100,000 values; a set, decided in constant time).
    #[cfg_attr(feature = "schema", serde(default, rename = "oneOf"))]
    #[cfg_attr(feature = "schema", schemars(extend("minItems" = 1, "maxItems" = 100_000)))]
    pub one_of: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("minLength" = 1)))]
    pub prefix: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("minLength" = 1)))]
    pub suffix: Option<String>,
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("minLength" = 1)))]
    pub contains: Option<String>,
    /// Full match (anchored at both ends), RE2-like syntax.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("minLength" = 1)))]
    pub regex: Option<String>,
    /// `true`: the value exists; `false`: it does not.
    #[cfg_attr(feature = "schema", serde(default))]
    pub present: Option<bool>,
    /// Negates the result.
    #[cfg_attr(feature = "schema", serde(default))]
    pub invert: bool,
}

/// Exactly one of `subset` or `split`; `stickyBy` only with `split`.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "schema", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("oneOf" = [
    {"required": ["subset"], "not": {"anyOf": [{"required": ["stickyBy"]}, {"required": ["ramp"]}]}},
    {"required": ["split"]}
])))]
#[cfg_attr(
    feature = "schema",
    serde(deny_unknown_fields, rename_all = "camelCase")
)]
pub struct RouteConfig {
    /// Always this subset.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = SUBSET_PATTERN)))]
    pub subset: Option<String>,
    /// Weighted subsets: probability = weight / sum; weight 0 never receives a request.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("minItems" = 1, "contains" = {"properties": {"weight": {"minimum": 1}}})))]
    pub split: Option<Vec<SplitEntryConfig>>,
    /// Makes the split sticky: the same key always gets the same subset. Absent key: random.
    #[cfg_attr(feature = "schema", serde(default))]
    pub sticky_by: Option<StickyByConfig>,
    /// Grows one subset of the split over time (only with `split`).
    #[cfg_attr(feature = "schema", serde(default))]
    pub ramp: Option<RampConfig>,
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "schema", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub struct SplitEntryConfig {
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = SUBSET_PATTERN)))]
    pub subset: String,
    /// 0 to 1,000,000, relative to the other weights of the split.
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 0, "maximum" = 1_000_000)))]
    // Signed so that a negative weight gets its own "is negative" message.
    pub weight: i64,
}

/// Exactly one key source.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "schema", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(extend("oneOf" = [
    {"required": ["header"]}, {"required": ["cookie"]}, {"required": ["query"]}, {"required": ["sourceIp"]}
])))]
#[cfg_attr(
    feature = "schema",
    serde(deny_unknown_fields, rename_all = "camelCase")
)]
pub struct StickyByConfig {
    /// The first value of this request header is the key.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = MATCH_HEADER_PATTERN)))]
    pub header: Option<String>,
    /// The value of this cookie is the key.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("minLength" = 1)))]
    pub cookie: Option<String>,
    /// The percent-decoded value of this query parameter is the key.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("minLength" = 1)))]
    pub query: Option<String>,
    /// The downstream peer's IP address is the key.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("const" = true)))]
    pub source_ip: Option<bool>,
    /// Aligned cohorts: splits that share this name, a key and the same subsets put the same
    /// users on each subset, nested by share. Default: the rule's name.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = COHORT_PATTERN)))]
    pub cohort: Option<String>,
}

/// A time-based ramp of one subset of a split: its share grows from the configured one to
/// `toPercent` between `start` and `start + durationSeconds`, continuously or in `steps` jumps.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "schema", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    serde(deny_unknown_fields, rename_all = "camelCase")
)]
pub struct RampConfig {
    /// The subset that grows; must be in the split.
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = SUBSET_PATTERN)))]
    pub subset: String,
    /// Its share at the end, in percent (one-part-per-million resolution); at least its configured share.
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 0, "maximum" = 100)))]
    pub to_percent: f64,
    /// RFC 3339 time (`Z` or an offset) at which the ramp begins; may be in the past.
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = RFC3339_PATTERN)))]
    pub start: String,
    /// Length of the ramp, 1 second to 365 days.
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 1, "maximum" = 31_536_000)))]
    pub duration_seconds: i64,
    /// 0: continuous; N: N equal jumps, the k-th at `start + k·duration/N`.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 0)))]
    pub steps: i64,
}

/// A canary guard: while its subset's error (or slow) share over the window is too high, every
/// split treats that subset's weight as 0.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "schema", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    serde(deny_unknown_fields, rename_all = "camelCase")
)]
#[cfg_attr(feature = "schema", schemars(extend("dependentRequired" = {
    "slowMs": ["maxSlowPercent"], "maxSlowPercent": ["slowMs"], "minMarginPercent": ["baseline"]
})))]
pub struct GuardConfig {
    /// The guarded subset; must appear in at least one split; one guard per subset.
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = SUBSET_PATTERN)))]
    pub subset: String,
    /// Trips when the subset's error share (5xx or no response) over the window reaches this.
    #[cfg_attr(feature = "schema", schemars(extend("exclusiveMinimum" = 0, "maximum" = 100)))]
    pub max_error_percent: f64,
    /// Below this many requests in the window nothing is decided.
    #[cfg_attr(feature = "schema", serde(default = "default_min_requests"))]
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 1)))]
    pub min_requests: i64,
    /// The sliding window, 1 to 3600 seconds.
    #[cfg_attr(feature = "schema", serde(default = "default_window_seconds"))]
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 1, "maximum" = 3600)))]
    pub window_seconds: i64,
    /// The k-th trip keeps the guard open k × this.
    #[cfg_attr(feature = "schema", serde(default = "default_cooldown_seconds"))]
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 1)))]
    pub cooldown_seconds: i64,
    /// After this many trips the guard stays open until a new configuration.
    #[cfg_attr(feature = "schema", serde(default = "default_max_trips"))]
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 1)))]
    pub max_trips: i64,
    /// Trip only if the error share is also `minMarginPercent` above this subset's.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = SUBSET_PATTERN)))]
    pub baseline: Option<String>,
    /// With `baseline`: the margin in percentage points (default 1).
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 0, "maximum" = 100, "default" = 1)))]
    pub min_margin_percent: Option<f64>,
    /// With `maxSlowPercent`: a response whose headers take longer than this is slow.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 1)))]
    pub slow_ms: Option<i64>,
    /// With `slowMs`: also trips when the slow share over the window reaches this.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("exclusiveMinimum" = 0, "maximum" = 100)))]
    pub max_slow_percent: Option<f64>,
    /// Fleet guard: also trip on the fleet's totals, read from Prometheus.
    #[cfg_attr(feature = "schema", serde(default))]
    pub fleet: Option<FleetConfig>,
}

/// Where and how often a guard reads the fleet's totals (a Prometheus HTTP API reached through
/// an Envoy cluster).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "schema", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    serde(deny_unknown_fields, rename_all = "camelCase")
)]
pub struct FleetConfig {
    /// The Envoy cluster that reaches the Prometheus HTTP API.
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = PRINTABLE_PATTERN)))]
    pub cluster: String,
    /// `:authority` of the query; default: the cluster name.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = PRINTABLE_PATTERN)))]
    pub authority: Option<String>,
    /// The query endpoint; default `/api/v1/query`.
    #[cfg_attr(feature = "schema", serde(default))]
    #[cfg_attr(feature = "schema", schemars(extend("pattern" = FLEET_PATH_PATTERN)))]
    pub path: Option<String>,
    /// PromQL label matchers, without braces, that pick this service's proxies (may be "").
    pub selector: String,
    /// At most one round of queries per proxy per this many seconds, 1 to 300.
    #[cfg_attr(feature = "schema", serde(default = "default_fleet_interval_seconds"))]
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 1, "maximum" = 300)))]
    pub interval_seconds: i64,
    /// A query that has not answered after this many milliseconds has failed, 1 to 60,000.
    #[cfg_attr(feature = "schema", serde(default = "default_fleet_timeout_ms"))]
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 1, "maximum" = 60_000)))]
    pub timeout_ms: i64,
}

pub const DEFAULT_FLEET_INTERVAL_SECONDS: i64 = 5;
pub const DEFAULT_FLEET_TIMEOUT_MS: i64 = 2_000;
pub const DEFAULT_FLEET_PATH: &str = "/api/v1/query";

#[cfg(feature = "schema")]
fn default_fleet_interval_seconds() -> i64 {
    DEFAULT_FLEET_INTERVAL_SECONDS
}

#[cfg(feature = "schema")]
fn default_fleet_timeout_ms() -> i64 {
    DEFAULT_FLEET_TIMEOUT_MS
}

/// Guard defaults (docs/configuration.md, guards).
pub const DEFAULT_MIN_REQUESTS: i64 = 20;
pub const DEFAULT_WINDOW_SECONDS: i64 = 30;
pub const DEFAULT_COOLDOWN_SECONDS: i64 = 60;
pub const DEFAULT_MAX_TRIPS: i64 = 3;
pub const DEFAULT_MIN_MARGIN_PERCENT: f64 = 1.0;

#[cfg(feature = "schema")]
fn default_min_requests() -> i64 {
    DEFAULT_MIN_REQUESTS
}

#[cfg(feature = "schema")]
fn default_window_seconds() -> i64 {
    DEFAULT_WINDOW_SECONDS
}

#[cfg(feature = "schema")]
fn default_cooldown_seconds() -> i64 {
    DEFAULT_COOLDOWN_SECONDS
}

#[cfg(feature = "schema")]
fn default_max_trips() -> i64 {
    DEFAULT_MAX_TRIPS
}

// Patterns for the JSON Schema (the validator in `compile.rs` is the authority; these mirror it).
#[cfg(feature = "schema")]
const INSTANCE_NAME_PATTERN: &str = "^[a-z0-9_-]{1,64}$";
#[cfg(feature = "schema")]
const PRINTABLE_PATTERN: &str = "^[!-~]+$";
#[cfg(feature = "schema")]
const FLEET_PATH_PATTERN: &str = "^/[!-\"$-~]*$";
#[cfg(feature = "schema")]
const COHORT_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";
#[cfg(feature = "schema")]
const SUBSET_PATTERN: &str = "^[A-Za-z0-9._-]{1,63}$";
#[cfg(feature = "schema")]
const RULE_NAME_PATTERN: &str = "^[A-Za-z0-9_-]{1,63}$";
#[cfg(feature = "schema")]
const OUTPUT_HEADER_PATTERN: &str = "^[a-z0-9!#$%&'*+.^_`|~-]+$";
#[cfg(feature = "schema")]
const MATCH_HEADER_PATTERN: &str = "^:?[A-Za-z0-9!#$%&'*+.^_`|~-]+$";
#[cfg(feature = "schema")]
const TEMPLATE_PATTERN: &str = "^(?!.*\\{subset\\}.*\\{subset\\})[!-~]*\\{subset\\}[!-~]*$";
#[cfg(feature = "schema")]
const RFC3339_PATTERN: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$";
#[cfg(feature = "schema")]
const PATH_PATTERN: &str = "^/[^?#]*$";
#[cfg(feature = "schema")]
const HOST_PATTERN: &str = "^(\\*|(\\*\\.)?([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\]))$";
