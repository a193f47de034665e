//! The plugin configuration exactly as operators write it (see SPEC.md / README.md).
//!
//! These types only describe the JSON shape; [`crate::compile`] checks every value and turns the
//! result into a [`crate::Router`]. Operators' typos must fail loudly, so every struct denies
//! unknown fields, and "exactly one of" choices are plain optional fields checked at compile time
//! (serde's untagged enums would turn a typo into an unhelpful "did not match any variant").

use serde::Deserialize;

/// Header that carries the chosen cluster unless configured otherwise.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-upstream-cluster";
/// Cluster name template unless configured otherwise: the bare subset name.
pub const DEFAULT_CLUSTER_TEMPLATE: &str = "{subset}";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginConfig {
    /// Absent: `x-upstream-cluster`; `null`: no cluster header is written.
    #[serde(default = "default_cluster_header")]
    pub cluster_header: Option<String>,
    #[serde(default = "default_cluster_template")]
    pub cluster_template: String,
    #[serde(default)]
    pub subset_header: Option<String>,
    #[serde(default)]
    pub response_header: Option<String>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    pub default: RouteConfig,
}

fn default_cluster_header() -> Option<String> {
    Some(DEFAULT_CLUSTER_HEADER.to_owned())
}

fn default_cluster_template() -> String {
    DEFAULT_CLUSTER_TEMPLATE.to_owned()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// Absent or empty: the rule always matches.
    #[serde(default, rename = "match")]
    pub matches: MatchConfig,
    pub route: RouteConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchConfig {
    #[serde(default)]
    pub headers: Vec<ValueMatchConfig>,
    #[serde(default)]
    pub cookies: Vec<ValueMatchConfig>,
    #[serde(default)]
    pub query: Vec<ValueMatchConfig>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub source_cidrs: Vec<String>,
}

/// A condition on a named value (header, cookie or query parameter): exactly one operator.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatchConfig {
    pub name: String,
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default)]
    pub invert: bool,
}

/// Exactly one of `subset` or `split`; `stickyBy` only with `split`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteConfig {
    #[serde(default)]
    pub subset: Option<String>,
    #[serde(default)]
    pub split: Option<Vec<SplitEntryConfig>>,
    #[serde(default)]
    pub sticky_by: Option<StickyByConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntryConfig {
    pub subset: String,
    /// Signed so that a negative weight gets our own "is negative" message, not serde's.
    pub weight: i64,
}

/// Exactly one key source.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StickyByConfig {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub source_ip: Option<bool>,
}
