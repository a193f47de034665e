//! Parsing and validation: JSON → [`PluginConfig`] → [`Router`], or every error as `path: reason`.

use std::collections::HashMap;

mod progressive;

use crate::bytemap::{ByteMap, TooLarge};
use crate::cidr::Cidr;
use crate::config::{
    MatchConfig, PluginConfig, RampConfig, RouteConfig, StickyByConfig, ValueMatchConfig,
};
use crate::error::{quoted, ConfigError};
use crate::matching::{full_match_regex, HostPattern, Match, ValueCondition, ValueOp, ValueSource};
use crate::router::{
    Route, Router, Rule, Slot, Split, Sticky, StickyKey, Target, DEFAULT_RULE_NAME,
};
use crate::selection::{self, StickyHasher};

/// Largest weight of one split entry.
pub const MAX_WEIGHT: i64 = 1_000_000;
/// Longest subset or rule name.
pub const MAX_NAME_LEN: usize = 63;
/// Most values of one `oneOf` condition (a beta-tester list, not a user database).
pub const MAX_ONE_OF: usize = 100_000;
/// The placeholder in `clusterTemplate`.
pub const SUBSET_PLACEHOLDER: &str = "{subset}";

/// Parses and validates a configuration in one step, as `on_configure` does.
pub fn load(json: &[u8]) -> Result<Router, Vec<ConfigError>> {
    let config = parse(json).map_err(|e| vec![e])?;
    compile_loaded(json, &config)
}

/// [`compile`] for a configuration parsed from `json`, as [`load`] does it.
pub(crate) fn compile_loaded(
    json: &[u8],
    config: &PluginConfig,
) -> Result<Router, Vec<ConfigError>> {
    let mut router = compile(config)?;
    // Every worker receives the same text: its hash tells the workers of one configuration
    // apart from those of another (see `crate::aggregate`).
    router.config_hash = crate::aggregate::config_hash(json);
    Ok(router)
}

/// Strict JSON parsing into the configuration types (see [`crate::reader`]).
pub fn parse(json: &[u8]) -> Result<PluginConfig, ConfigError> {
    crate::reader::read_config(json)
}

/// Validates every field and compiles the router. All errors are collected, not just the first.
pub fn compile(config: &PluginConfig) -> Result<Router, Vec<ConfigError>> {
    let mut c = Compiler::default();
    if let Some(name) = &config.name {
        c.instance_name(name);
    }
    c.stat_prefix = stat_prefix(config.name.as_deref());
    let cluster_header = config
        .cluster_header
        .as_deref()
        .and_then(|h| c.output_header("clusterHeader", h));
    let subset_header = config
        .subset_header
        .as_deref()
        .and_then(|h| c.output_header("subsetHeader", h));
    c.routing_headers = [
        ("clusterHeader", &cluster_header),
        ("subsetHeader", &subset_header),
    ]
    .into_iter()
    .filter_map(|(field, header)| Some((field, header.clone()?)))
    .collect();
    let response_header = config
        .response_header
        .as_deref()
        .and_then(|h| c.output_header("responseHeader", h));
    if config.cluster_header.is_none() && config.subset_header.is_none() {
        c.error(
            "clusterHeader",
            "is null and no subsetHeader is set: the decision would not be written anywhere",
        );
    }
    if cluster_header.is_some() && cluster_header == subset_header {
        c.error("subsetHeader", "must differ from clusterHeader");
    }
    c.template_check(&config.cluster_template);

    let mut seen_rules: HashMap<&str, usize> = HashMap::new();
    let mut rules = Vec::with_capacity(config.rules.len());
    for (i, rule) in config.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        c.rule_name(&format!("{path}.name"), &rule.name);
        if let Some(first) = seen_rules.insert(rule.name.as_str(), i) {
            c.error(
                format!("{path}.name"),
                format!(
                    "{} is already the name of rules[{first}]; rule names must be unique",
                    quoted(&rule.name)
                ),
            );
        }
        let matcher = c.matcher(&format!("{path}.match"), &rule.matches);
        let route = c.route(
            &format!("{path}.route"),
            &rule.name,
            &rule.route,
            &config.cluster_template,
        );
        if let Some(route) = route {
            rules.push(Rule {
                name: rule.name.clone(),
                matcher,
                route,
            });
        }
    }
    let default = c.route(
        "default",
        DEFAULT_RULE_NAME,
        &config.default,
        &config.cluster_template,
    );
    let guards = c.guards(config);

    match default {
        Some(mut default) if c.errors.is_empty() => {
            let uses_source_ip = rules
                .iter()
                .any(|r| r.matcher.uses_source_ip() || route_uses_source_ip(&r.route))
                || route_uses_source_ip(&default);
            let routes = rules
                .iter_mut()
                .map(|r| &mut r.route)
                .chain(std::iter::once(&mut default));
            let observers = progressive::attach_guards(routes, &guards);
            let plan = crate::router::index::plan(&rules);
            Ok(Router {
                name: config.name.clone(),
                stat_prefix: c.stat_prefix,
                cluster_header,
                subset_header,
                response_header,
                rules,
                plan,
                default,
                slots: c.slots,
                uses_source_ip,
                guards,
                observers,
                // Set by `load` from the configuration's text.
                config_hash: 0,
            })
        }
        _ => Err(c.errors),
    }
}

fn route_uses_source_ip(route: &Route) -> bool {
    matches!(
        route,
        Route::Split(Split {
            sticky: Some(Sticky {
                key: StickyKey::SourceIp,
                ..
            }),
            ..
        })
    )
}

/// Validates and compiles one configuration, collecting every error.
///
/// Each of its steps stays a function of its own (`#[inline(never)]`), however many callers it
/// has. The Wasm build's memory depends on it: Envoy's V8 compiles every function of the module
/// with its optimising compiler when the module loads, and that compiler's working memory grows
/// faster than a function's size; the allocator keeps the peak for the life of the proxy. Inlined
/// into one another, these steps made one 13 KB function that cost ~6 MiB per proxy
/// (BENCHMARKS.md, "Memory per proxy"). They only run when a configuration loads.
#[derive(Default)]
struct Compiler {
    errors: Vec<ConfigError>,
    slots: Vec<Slot>,
    /// The valid `clusterHeader` / `subsetHeader` (field name, header): no rule may read them.
    routing_headers: Vec<(&'static str, String)>,
    /// Ramps compiled so far (the next ramp's index).
    ramps: usize,
    /// `subset_router.` or `subset_router.<name>.`: the start of every stat name.
    stat_prefix: String,
}

/// Longest instance name (`name`) and cohort name (`stickyBy.cohort`).
pub const MAX_INSTANCE_NAME_LEN: usize = 64;

/// The start of every stat name of a configuration: `subset_router.`, or with a top-level
/// `name`, `subset_router.<name>.`.
pub fn stat_prefix(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("subset_router.{name}."),
        None => "subset_router.".to_owned(),
    }
}

impl Compiler {
    /// `name`: `[a-z0-9_-]{1,64}`, one stat segment (and one Prometheus label value).
    #[inline(never)]
    fn instance_name(&mut self, name: &str) {
        let valid = !name.is_empty()
            && name.len() <= MAX_INSTANCE_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            self.error(
                "name",
                format!(
                    "{} must be 1-{MAX_INSTANCE_NAME_LEN} characters of [a-z0-9_-]",
                    crate::error::quoted(name)
                ),
            );
        } else if matches!(name, "rule" | "guard") {
            // `subset_router.rule.…` would read as an unnamed configuration's rule stats.
            self.error(
                "name",
                format!("{name:?} is reserved: stat names already use it after subset_router."),
            );
        }
    }

    #[inline(never)]
    fn error(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError::new(path, reason));
    }

    /// Refuses a rule input (`reader`: "this condition", "this sticky key") that is one of the
    /// filter's own routing headers. The filter strips those from every request before deciding
    /// (a client must not pick its cluster), so the input could only see a forged value that
    /// survived a misconfigured or bypassed filter: a rule on it is always a mistake.
    /// Returns whether `name` was refused.
    #[inline(never)]
    fn routing_header_read(&mut self, path: &str, name: &str, reader: &str) -> bool {
        let Some(field) = self
            .routing_headers
            .iter()
            .find(|(_, header)| header.eq_ignore_ascii_case(name))
            .map(|(field, _)| *field)
        else {
            return false;
        };
        self.error(
            path,
            format!(
                "{} is the filter's own routing header ({field}); it is removed from every \
                 request before the decision, so {reader} could only ever see a forged value",
                quoted(name)
            ),
        );
        true
    }

    #[inline(never)]
    fn output_header(&mut self, path: &str, name: &str) -> Option<String> {
        if name.starts_with(':') {
            self.error(
                path,
                format!(
                    "{} is a pseudo-header; the filter may not set it",
                    quoted(name)
                ),
            );
            return None;
        }
        match header_name_problem(name) {
            Some(problem) => {
                self.error(path, format!("{} {problem}", quoted(name)));
                None
            }
            None if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.error(path, format!("{} must be lower case", quoted(name)));
                None
            }
            None => Some(name.to_owned()),
        }
    }

    #[inline(never)]
    fn template_check(&mut self, template: &str) {
        let count = template.matches(SUBSET_PLACEHOLDER).count();
        if count != 1 {
            self.error(
                "clusterTemplate",
                format!(
                    "{} must contain {SUBSET_PLACEHOLDER} exactly once (found {count})",
                    quoted(template)
                ),
            );
        } else if let Some(bad) = template.chars().find(|ch| !ch.is_ascii_graphic()) {
            self.error(
                "clusterTemplate",
                format!(
                    "{} contains {bad:?}; cluster names are visible ASCII without spaces",
                    quoted(template)
                ),
            );
        }
    }

    #[inline(never)]
    fn rule_name(&mut self, path: &str, name: &str) {
        if name == DEFAULT_RULE_NAME {
            self.error(path, "\"default\" is reserved for the default route");
        } else if !is_name(name, false) {
            self.error(
                path,
                format!(
                    "{} must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9_-] (it names stats)",
                    quoted(name)
                ),
            );
        }
    }

    #[inline(never)]
    fn matcher(&mut self, path: &str, m: &MatchConfig) -> Match {
        let mut out = Match::default();
        for (i, h) in m.headers.iter().enumerate() {
            let p = format!("{path}.headers[{i}]");
            let name = match header_name_problem(h.name.strip_prefix(':').unwrap_or(&h.name)) {
                Some(problem) => {
                    self.error(
                        format!("{p}.name"),
                        format!("{} {problem}", quoted(&h.name)),
                    );
                    continue;
                }
                None => h.name.to_ascii_lowercase(),
            };
            // Still checks the operator, so that every error of the condition is reported.
            let forbidden =
                self.routing_header_read(&format!("{p}.name"), &h.name, "this condition");
            if let Some(op) = self.value_op(&p, h).filter(|_| !forbidden) {
                out.values.push(ValueCondition {
                    source: ValueSource::Header,
                    name,
                    op,
                    invert: h.invert,
                });
            }
        }
        for (source, list, field) in [
            (ValueSource::Cookie, &m.cookies, "cookies"),
            (ValueSource::Query, &m.query, "query"),
        ] {
            for (i, v) in list.iter().enumerate() {
                let p = format!("{path}.{field}[{i}]");
                if v.name.is_empty() {
                    self.error(format!("{p}.name"), "must not be empty");
                    continue;
                }
                if let Some(op) = self.value_op(&p, v) {
                    out.values.push(ValueCondition {
                        source,
                        name: v.name.clone(),
                        op,
                        invert: v.invert,
                    });
                }
            }
        }
        for (field, value, slot) in [
            ("path", &m.path, &mut out.path),
            ("pathPrefix", &m.path_prefix, &mut out.path_prefix),
        ] {
            if let Some(p) = value {
                if !p.starts_with('/') {
                    self.errors.push(ConfigError::new(
                        format!("{path}.{field}"),
                        format!("{} must start with '/'", quoted(p)),
                    ));
                } else if p.contains(['?', '#']) {
                    self.errors.push(ConfigError::new(
                        format!("{path}.{field}"),
                        format!(
                            "{} must not contain '?' or '#': it is matched against the path \
                             without the query string",
                            quoted(p)
                        ),
                    ));
                } else {
                    *slot = Some(p.clone());
                }
            }
        }
        for (i, method) in m.methods.iter().enumerate() {
            if method.is_empty()
                || !method
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
            {
                self.error(
                    format!("{path}.methods[{i}]"),
                    format!(
                        "{} is not an upper-case HTTP method (methods are case-sensitive, e.g. \"GET\")",
                        quoted(method)
                    ),
                );
            } else {
                out.methods.push(method.clone());
            }
        }
        for (i, host) in m.hosts.iter().enumerate() {
            match host_pattern(host) {
                Ok(pattern) => out.hosts.push(pattern),
                Err(reason) => self.error(
                    format!("{path}.hosts[{i}]"),
                    format!("{} {reason}", quoted(host)),
                ),
            }
        }
        for (i, cidr) in m.source_cidrs.iter().enumerate() {
            match Cidr::parse(cidr) {
                Ok(c) => out.source_cidrs.push(c),
                Err(reason) => self.error(format!("{path}.sourceCidrs[{i}]"), reason),
            }
        }
        out
    }

    #[inline(never)]
    fn value_op(&mut self, path: &str, v: &ValueMatchConfig) -> Option<ValueOp> {
        let given: Vec<&str> = [
            ("exact", v.exact.is_some()),
            ("oneOf", v.one_of.is_some()),
            ("prefix", v.prefix.is_some()),
            ("suffix", v.suffix.is_some()),
            ("contains", v.contains.is_some()),
            ("regex", v.regex.is_some()),
            ("present", v.present.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if given.len() != 1 {
            let reason = if given.is_empty() {
                "needs one operator: exact, oneOf, prefix, suffix, contains, regex or present"
                    .to_owned()
            } else {
                format!(
                    "has {} operators ({}); exactly one is allowed",
                    given.len(),
                    given.join(", ")
                )
            };
            self.error(path, reason);
            return None;
        }
        let non_empty = |this: &mut Self, field: &str, s: &String| {
            if s.is_empty() {
                this.error(format!("{path}.{field}"), "must not be empty");
                None
            } else {
                Some(s.as_bytes().into())
            }
        };
        if let Some(s) = &v.exact {
            return Some(ValueOp::Exact(s.as_bytes().into()));
        }
        if let Some(values) = &v.one_of {
            return self.one_of(&format!("{path}.oneOf"), values);
        }
        if let Some(s) = &v.prefix {
            return non_empty(self, "prefix", s).map(ValueOp::Prefix);
        }
        if let Some(s) = &v.suffix {
            return non_empty(self, "suffix", s).map(ValueOp::Suffix);
        }
        if let Some(s) = &v.contains {
            return non_empty(self, "contains", s).map(ValueOp::Contains);
        }
        if let Some(pattern) = &v.regex {
            return match full_match_regex(pattern) {
                Ok(re) => Some(ValueOp::Regex(re)),
                Err(reason) => {
                    self.error(format!("{path}.regex"), reason);
                    None
                }
            };
        }
        v.present.map(ValueOp::Present)
    }

    /// `oneOf`: 1 to [`MAX_ONE_OF`] values, built into a set once, here. A value listed twice is
    /// harmless (lists are often generated) and kept once.
    #[inline(never)]
    fn one_of(&mut self, path: &str, values: &[String]) -> Option<ValueOp> {
        if values.is_empty() {
            self.error(path, "must list at least one value");
            return None;
        }
        if let Some(first_over) = values.get(MAX_ONE_OF) {
            self.error(
                path,
                format!(
                    "has {} values; at most {MAX_ONE_OF} are allowed (oneOf[{MAX_ONE_OF}] is {})",
                    values.len(),
                    quoted(first_over)
                ),
            );
            return None;
        }
        match ByteMap::set(values.iter().map(String::as_bytes)) {
            Ok(set) => Some(ValueOp::OneOf(set)),
            Err(TooLarge) => {
                self.error(path, "values add up to 4 GiB or more");
                None
            }
        }
    }

    #[inline(never)]
    fn route(&mut self, path: &str, rule: &str, r: &RouteConfig, template: &str) -> Option<Route> {
        match (&r.subset, &r.split) {
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    "has both subset and split; a route is exactly one of them",
                );
                None
            }
            (None, None) => {
                self.error(
                    path,
                    "needs either \"subset\" (one subset) or \"split\" (weighted subsets)",
                );
                None
            }
            (Some(subset), None) => {
                if r.sticky_by.is_some() {
                    self.error(
                        format!("{path}.stickyBy"),
                        "only applies to a split; this route has a fixed subset",
                    );
                }
                if r.ramp.is_some() {
                    self.error(
                        format!("{path}.ramp"),
                        "only applies to a split; this route has a fixed subset",
                    );
                }
                let target = self.target(&format!("{path}.subset"), rule, subset, template)?;
                Some(Route::Fixed(target))
            }
            (None, Some(split)) => self.split(
                path,
                rule,
                split,
                (r.sticky_by.as_ref(), r.ramp.as_ref()),
                template,
            ),
        }
    }

    #[inline(never)]
    fn split(
        &mut self,
        path: &str,
        rule: &str,
        split: &[crate::config::SplitEntryConfig],
        (sticky_by, ramp): (Option<&StickyByConfig>, Option<&RampConfig>),
        template: &str,
    ) -> Option<Route> {
        if split.is_empty() {
            self.error(format!("{path}.split"), "must list at least one subset");
            return None;
        }
        let errors_before = self.errors.len();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut targets = Vec::with_capacity(split.len());
        let mut weights = Vec::with_capacity(split.len());
        for (i, entry) in split.iter().enumerate() {
            let p = format!("{path}.split[{i}]");
            if let Some(first) = seen.insert(entry.subset.as_str(), i) {
                self.error(
                    format!("{p}.subset"),
                    format!(
                        "{} appears twice in this split (also split[{first}])",
                        quoted(&entry.subset)
                    ),
                );
                continue;
            }
            if entry.weight < 0 {
                self.error(
                    format!("{p}.weight"),
                    format!(
                        "{} is negative; weights are 0 to {MAX_WEIGHT}",
                        entry.weight
                    ),
                );
            } else if entry.weight > MAX_WEIGHT {
                self.error(
                    format!("{p}.weight"),
                    format!("{} exceeds {MAX_WEIGHT}", entry.weight),
                );
            }
            let target = self.target(&format!("{p}.subset"), rule, &entry.subset, template);
            if let (Some(target), Ok(weight)) =
                (target, u32::try_from(entry.weight.clamp(0, MAX_WEIGHT)))
            {
                targets.push(target);
                weights.push(weight);
            }
        }
        if self.errors.len() == errors_before && weights.iter().all(|&w| w == 0) {
            self.error(
                format!("{path}.split"),
                "weights sum to 0; at least one weight must be positive",
            );
        }
        let split_valid = self.errors.len() == errors_before;
        // Every part is checked (and every error reported) before anything is given up.
        let cohort = sticky_by.and_then(|s| self.cohort(&format!("{path}.stickyBy.cohort"), s));
        let sticky = sticky_by
            .and_then(|s| self.sticky_key(&format!("{path}.stickyBy"), s))
            .map(|key| Sticky {
                key,
                // The rule's name salts its keys unless a cohort aligns several splits.
                hasher: StickyHasher::new(
                    cohort.unwrap_or(rule),
                    targets.iter().map(|t| t.subset.as_str()),
                ),
            });
        let ramp = match ramp {
            None => None,
            Some(r) => {
                let valid = split_valid.then_some((split, weights.as_slice()));
                self.ramp(&format!("{path}.ramp"), r, valid)
            }
        };
        if self.errors.len() != errors_before {
            return None;
        }
        let cumulative = selection::cumulative(&weights);
        Some(Route::Split(Split {
            targets,
            weights,
            cumulative,
            sticky,
            ramp,
            guarded: Vec::new(),
        }))
    }

    /// `stickyBy.cohort`: `[A-Za-z0-9._-]{1,64}`.
    #[inline(never)]
    fn cohort<'s>(&mut self, path: &str, s: &'s StickyByConfig) -> Option<&'s str> {
        let cohort = s.cohort.as_deref()?;
        let valid = !cohort.is_empty()
            && cohort.len() <= MAX_INSTANCE_NAME_LEN
            && cohort
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Some(cohort)
        } else {
            self.error(
                path,
                format!(
                    "{} must be 1-{MAX_INSTANCE_NAME_LEN} characters of [A-Za-z0-9._-]",
                    crate::error::quoted(cohort)
                ),
            );
            None
        }
    }

    #[inline(never)]
    fn sticky_key(&mut self, path: &str, s: &StickyByConfig) -> Option<StickyKey> {
        let given = [
            s.header.is_some(),
            s.cookie.is_some(),
            s.query.is_some(),
            s.source_ip.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        if given != 1 {
            self.error(
                path,
                format!("needs exactly one of header, cookie, query or sourceIp (found {given})"),
            );
            return None;
        }
        if let Some(h) = &s.header {
            if let Some(problem) = header_name_problem(h) {
                self.error(format!("{path}.header"), format!("{} {problem}", quoted(h)));
                return None;
            }
            if self.routing_header_read(&format!("{path}.header"), h, "this sticky key") {
                return None;
            }
            return Some(StickyKey::Header(h.to_ascii_lowercase()));
        }
        for (field, name, make) in [
            (
                "cookie",
                &s.cookie,
                StickyKey::Cookie as fn(String) -> StickyKey,
            ),
            ("query", &s.query, StickyKey::Query),
        ] {
            if let Some(n) = name {
                if n.is_empty() {
                    self.error(format!("{path}.{field}"), "must not be empty");
                    return None;
                }
                return Some(make(n.clone()));
            }
        }
        if s.source_ip == Some(true) {
            Some(StickyKey::SourceIp)
        } else {
            self.error(format!("{path}.sourceIp"), "must be true when given");
            None
        }
    }

    /// Validates a subset name and registers the (rule, subset) stat slot.
    #[inline(never)]
    fn target(&mut self, path: &str, rule: &str, subset: &str, template: &str) -> Option<Target> {
        if !is_name(subset, true) {
            self.error(
                path,
                format!(
                    "{} must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9._-]",
                    quoted(subset)
                ),
            );
            return None;
        }
        let slot = self.slots.len();
        self.slots.push(Slot {
            stat_name: format!("{}rule.{rule}.subset.{subset}", self.stat_prefix),
            rule: rule.to_owned(),
            subset: subset.to_owned(),
        });
        Some(Target {
            subset: subset.to_owned(),
            cluster: template.replacen(SUBSET_PLACEHOLDER, subset, 1),
            slot,
            observe: None,
        })
    }
}

/// Subset names: `[A-Za-z0-9._-]`; rule names: the same without `.` (they are one stat segment).
fn is_name(s: &str, allow_dot: bool) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (allow_dot && b == b'.')
        })
}

/// Why `name` is not an HTTP header name (an RFC 9110 token), or `None` if it is one.
fn header_name_problem(name: &str) -> Option<&'static str> {
    const TCHAR_SYMBOLS: &[u8] = b"!#$%&'*+-.^_`|~";
    if name.is_empty() {
        Some("is not a valid header name: it is empty")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || TCHAR_SYMBOLS.contains(&b))
    {
        Some("is not a valid header name: only letters, digits and !#$%&'*+-.^_`|~ are allowed")
    } else {
        None
    }
}

fn host_pattern(host: &str) -> Result<HostPattern, &'static str> {
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    if name.is_empty() {
        return Err("is not a host name");
    }
    if name.contains('*') {
        return Err("may only use a wildcard as a leading \"*.\"");
    }
    let bracketed = name.starts_with('[') && name.ends_with(']');
    if !bracketed && name.contains(':') {
        return Err("must not contain a port: the port of :authority is ignored");
    }
    let valid = if bracketed {
        name.get(1..name.len() - 1)
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !valid {
        return Err("is not a host name (letters, digits, '-' and '.', or an [IPv6] literal)");
    }
    let lower = name.to_ascii_lowercase();
    Ok(if wildcard {
        HostPattern::Suffix(format!(".{lower}"))
    } else {
        HostPattern::Exact(lower)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one error a configuration produces, as `path: reason`.
    fn error_of(json: &str) -> String {
        match load(json.as_bytes()) {
            Ok(_) => panic!("accepted an invalid configuration: {json}"),
            Err(errors) => {
                assert_eq!(
                    errors.len(),
                    1,
                    "expected one error for {json}, got {errors:?}"
                );
                errors[0].to_string()
            }
        }
    }

    /// A full config with `rule` as its only rule.
    fn with_rule(rule: &str) -> String {
        format!(r#"{{"rules":[{rule}],"default":{{"subset":"v1"}}}}"#)
    }

    fn split_rule(split: &str) -> String {
        with_rule(&format!(
            r#"{{"name":"canary","route":{{"split":{split}}}}}"#
        ))
    }

    fn header_rule(cond: &str) -> String {
        with_rule(&format!(
            r#"{{"name":"debug","match":{{"headers":[{cond}]}},"route":{{"subset":"v2"}}}}"#
        ))
    }

    /// Every value an error repeats is cut after 80 characters, with its size: a 5 MB regex
    /// (or name, host, path, CIDR, key) must not make a 5 MB error and log line.
    #[test]
    fn errors_repeat_at_most_80_characters_of_a_value() {
        let long = "a".repeat(5 << 20);
        let head = format!("\"{}\"… (52428", "a".repeat(80));
        for (json, path, reason) in [
            (
                header_rule(&format!(r#"{{"name":"user-agent","regex":"{long}"}}"#)),
                "rules[0].match.headers[0].regex",
                "is not a valid regex: compiled regex exceeded size limit",
            ),
            (
                with_rule(&format!(r#"{{"name":"{long}","route":{{"subset":"v1"}}}}"#)),
                "rules[0].name",
                "must be 1-63 characters of [A-Za-z0-9_-] (it names stats)",
            ),
            (
                with_rule(&format!(
                    r#"{{"name":"h","match":{{"hosts":["{long}:80"]}},"route":{{"subset":"v1"}}}}"#
                )),
                "rules[0].match.hosts[0]",
                "must not contain a port",
            ),
            (
                with_rule(&format!(
                    r#"{{"name":"c","match":{{"sourceCidrs":["{long}"]}},"route":{{"subset":"v1"}}}}"#
                )),
                "rules[0].match.sourceCidrs[0]",
                "is not a CIDR block",
            ),
            (
                format!(r#"{{"default":{{"subset":"{long}"}}}}"#),
                "default.subset",
                "must be 1-63 characters of [A-Za-z0-9._-]",
            ),
        ] {
            let error = error_of(&json);
            assert!(error.len() < 400, "{}…", &error[..400]);
            assert!(
                error.starts_with(&format!("{path}: {head}")),
                "{path}: {error}"
            );
            assert!(error.contains(reason), "{error}");
        }
        // An unknown field's name is part of the path.
        let json = format!(r#"{{"default":{{"subset":"v1","{long}-":1}}}}"#);
        let error = error_of(&json);
        assert!(error.len() < 400, "{}…", &error[..400]);
        assert!(
            error.starts_with(&format!(
                "default[\"{}\"… (5242881 bytes)]: unknown field",
                "a".repeat(80)
            )),
            "{error}"
        );
    }

    #[test]
    fn the_spec_example_is_valid() {
        let router = load(
            br#"{
              "clusterHeader": "x-upstream-cluster",
              "clusterTemplate": "{subset}",
              "subsetHeader": "x-subset",
              "responseHeader": "x-routed-subset",
              "rules": [
                {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]}, "route": {"subset": "v2"}},
                {"name": "canary", "match": {"pathPrefix": "/"},
                 "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}], "stickyBy": {"header": "x-user-id"}}}
              ],
              "default": {"subset": "v1"}
            }"#,
        )
        .unwrap();
        assert_eq!(router.cluster_header(), Some("x-upstream-cluster"));
        assert_eq!(router.subset_header(), Some("x-subset"));
        assert_eq!(router.response_header(), Some("x-routed-subset"));
        let stats: Vec<_> = router
            .slots()
            .iter()
            .map(|s| s.stat_name.as_str())
            .collect();
        assert_eq!(
            stats,
            [
                "subset_router.rule.debug.subset.v2",
                "subset_router.rule.canary.subset.v1",
                "subset_router.rule.canary.subset.v2",
                "subset_router.rule.default.subset.v1"
            ]
        );
    }

    #[test]
    fn defaults_and_null_cluster_header() {
        let r = load(br#"{"default":{"subset":"v1"}}"#).unwrap();
        assert_eq!(r.cluster_header(), Some("x-upstream-cluster"));
        assert_eq!(r.subset_header(), None);
        assert_eq!(r.response_header(), None);
        let r =
            load(br#"{"clusterHeader":null,"subsetHeader":"x-subset","default":{"subset":"v1"}}"#)
                .unwrap();
        assert_eq!(r.cluster_header(), None);
        assert_eq!(r.subset_header(), Some("x-subset"));
    }

    #[test]
    fn templates_are_applied_once_at_configure_time() {
        let r = load(br#"{"clusterTemplate":"outbound|9080|{subset}|reviews.default.svc.cluster.local","default":{"subset":"v3"}}"#)
            .unwrap();
        match &r.default {
            Route::Fixed(t) => assert_eq!(
                t.cluster,
                "outbound|9080|v3|reviews.default.svc.cluster.local"
            ),
            Route::Split(_) => panic!("expected a fixed route"),
        }
    }

    /// One invalid configuration of `tests/data/invalid-configs.json` (shared with the JSON Schema
    /// and Envoy start-up tests): its text, the exact `path: reason`, and whether the JSON Schema
    /// can see the problem (`rejects`), cannot (`semantic`) or never gets a document (`not-json`).
    struct InvalidCase {
        config: String,
        error: String,
        schema: String,
    }

    fn invalid_cases() -> Vec<InvalidCase> {
        let data: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/invalid-configs.json")).unwrap();
        let field = |case: &serde_json::Value, key: &str| case[key].as_str().unwrap().to_owned();
        data.as_array()
            .unwrap()
            .iter()
            .map(|c| InvalidCase {
                config: field(c, "config"),
                error: field(c, "error"),
                schema: field(c, "schema"),
            })
            .collect()
    }

    /// Every invalid configuration, with the exact `path: reason` it must produce.
    #[test]
    fn invalid_configurations_name_the_path_and_the_reason() {
        let cases = invalid_cases();
        assert!(
            cases.len() >= 30,
            "only {} invalid configurations",
            cases.len()
        );
        let mut failures = Vec::new();
        for case in &cases {
            assert!(
                ["rejects", "semantic", "not-json"].contains(&case.schema.as_str()),
                "{}",
                case.schema
            );
            let got = match load(case.config.as_bytes()) {
                Ok(_) => "ACCEPTED".to_owned(),
                Err(errors) => errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" | "),
            };
            if got != case.error {
                failures.push(format!(
                    "config: {}\n  expected: {}\n  got:      {got}",
                    case.config, case.error
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn all_errors_are_reported_not_just_the_first() {
        let json = r#"{"clusterTemplate":"x","rules":[{"name":"a.b","route":{"split":[{"subset":"v1","weight":2000000}]}}],"default":{"subset":"!"}}"#;
        let errors: Vec<String> = load(json.as_bytes())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "clusterTemplate: \"x\" must contain {subset} exactly once (found 0)",
                "rules[0].name: \"a.b\" must be 1-63 characters of [A-Za-z0-9_-] (it names stats)",
                "rules[0].route.split[0].weight: 2000000 exceeds 1000000",
                "default.subset: \"!\" must be 1-63 characters of [A-Za-z0-9._-]",
            ]
        );
    }

    #[test]
    fn every_error_of_a_guard_and_a_ramp_is_reported() {
        let json = r#"{"default":{"split":[{"subset":"v1","weight":50},{"subset":"v2","weight":50}],
            "ramp":{"subset":"v2","toPercent":101,"start":"soon","durationSeconds":0,"steps":-1}},
            "guards":[{"subset":"v2","maxErrorPercent":0,"windowSeconds":0,"baseline":"v2","slowMs":5}]}"#;
        let errors: Vec<String> = load(json.as_bytes())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "default.ramp.toPercent: 101 is not between 0 and 100",
                "default.ramp.start: \"soon\" is not an RFC 3339 time such as 2026-12-01T10:00:00Z: it has a non-digit where 4 digit(s) are expected (position 1)",
                "default.ramp.durationSeconds: 0 is not between 1 and 31536000 (one year)",
                "default.ramp.steps: -1 is negative; 0 means continuous",
                "guards[0].maxErrorPercent: 0 is out of range: it must be more than 0 and at most 100",
                "guards[0].windowSeconds: 0 is not between 1 and 3600",
                "guards[0].slowMs: needs maxSlowPercent: the two set the latency trigger together",
                "guards[0].baseline: \"v2\" is the guarded subset itself; the baseline is another subset to compare with",
            ]
        );
    }

    #[test]
    fn guards_are_wired_into_every_split_that_holds_their_subset() {
        let r = load(
            br#"{"rules":[{"name":"a","route":{"split":[{"subset":"v1","weight":1},{"subset":"v2","weight":1}]}},
                          {"name":"b","route":{"subset":"v2"}}],
                 "default":{"split":[{"subset":"v2","weight":1},{"subset":"v3","weight":1}]},
                 "guards":[{"subset":"v2","maxErrorPercent":5,"baseline":"v3"}]}"#,
        )
        .unwrap();
        let Route::Split(a) = &r.rules[0].route else {
            panic!()
        };
        assert_eq!(a.guarded, [(1, 0)]);
        assert_eq!(a.targets[0].observe, None);
        let Route::Fixed(b) = &r.rules[1].route else {
            panic!()
        };
        assert_eq!(b.observe, None, "fixed routes are never observed");
        let Route::Split(d) = &r.default else {
            panic!()
        };
        assert_eq!(d.guarded, [(0, 0)]);
        let v2 = d.targets[0].observe.unwrap();
        assert_eq!(a.targets[1].observe, Some(v2));
        let v3 = d.targets[1].observe.unwrap();
        assert_eq!(r.observers(v3)[0].role, crate::router::Role::Baseline);
        let spec = &r.guards()[0];
        assert_eq!(
            (
                spec.min_requests,
                spec.window_s,
                spec.cooldown_ms,
                spec.max_trips,
                spec.min_margin_ppm
            ),
            (20, 30, 60_000, 3, 10_000),
            "documented defaults"
        );
    }

    #[test]
    fn the_configuration_hash_is_the_texts() {
        let a = load(br#"{"default":{"subset":"v1"}}"#).unwrap();
        let b = load(br#"{"default":{"subset":"v1"}}"#).unwrap();
        let c = load(br#"{"default":{"subset":"v2"}}"#).unwrap();
        let d = load(br#"{ "default": {"subset":"v1"}}"#).unwrap();
        assert_eq!(a.config_hash(), b.config_hash());
        assert_ne!(a.config_hash(), c.config_hash());
        // Envoy applies a new text as a new configuration, whitespace included.
        assert_ne!(a.config_hash(), d.config_hash());
    }

    #[test]
    fn error_of_helper_reports_single_errors() {
        assert_eq!(
            error_of(&split_rule(r#"[{"subset":"v1","weight":1000001}]"#)),
            "rules[0].route.split[0].weight: 1000001 exceeds 1000000"
        );
    }

    #[test]
    fn weight_bounds_are_inclusive() {
        load(
            split_rule(r#"[{"subset":"v1","weight":1000000},{"subset":"v2","weight":0}]"#)
                .as_bytes(),
        )
        .unwrap();
    }

    /// The rule that decides a request carrying `user-agent: agent`.
    fn rule_for_agent(router: &Router, agent: &str) -> String {
        let req = crate::request::OwnedRequest::new().header("user-agent", agent);
        let decision = router.decide(&req, &mut crate::WyRand::new(1)).unwrap();
        decision.rule.to_owned()
    }

    #[test]
    fn a_regex_condition_matches_whole_values_only() {
        let router =
            load(header_rule(r#"{"name":"user-agent","regex":"a|b"}"#).as_bytes()).unwrap();
        assert_eq!(rule_for_agent(&router, "a"), "debug");
        assert_eq!(rule_for_agent(&router, "b"), "debug");
        assert_eq!(rule_for_agent(&router, "ab"), DEFAULT_RULE_NAME);
    }

    #[test]
    fn a_regex_that_is_only_valid_once_wrapped_is_refused() {
        // `^(?:x)|(y)$` would compile, unanchored: it would match every value containing x or y.
        assert_eq!(
            error_of(&header_rule(r#"{"name":"user-agent","regex":"x)|(y"}"#)),
            "rules[0].match.headers[0].regex: \"x)|(y\" is not a valid regex: found closing ')' without matching '('"
        );
    }

    #[test]
    fn routing_headers_are_only_forbidden_while_they_are_the_filters_own() {
        // With clusterHeader off, `x-upstream-cluster` is an ordinary request header.
        let json = r#"{"clusterHeader":null,"subsetHeader":"x-subset","rules":[{"name":"debug","match":{"headers":[{"name":"x-upstream-cluster","exact":"v2"}]},"route":{"split":[{"subset":"v2","weight":1}],"stickyBy":{"header":"x-upstream-cluster"}}}],"default":{"subset":"v1"}}"#;
        load(json.as_bytes()).unwrap();
        // The response header is never stripped from requests.
        load(
            header_rule(r#"{"name":"x-routed-subset","present":true}"#)
                .replace(
                    "\"rules\"",
                    "\"responseHeader\":\"x-routed-subset\",\"rules\"",
                )
                .as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn a_condition_on_a_routing_header_still_reports_its_other_errors() {
        let errors: Vec<String> =
            load(header_rule(r#"{"name":"X-Upstream-Cluster","regex":"(x"}"#).as_bytes())
                .unwrap_err()
                .iter()
                .map(ToString::to_string)
                .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("rules[0].match.headers[0].name: \"X-Upstream-Cluster\" is the filter's own routing header (clusterHeader)"));
        assert!(
            errors[1].starts_with("rules[0].match.headers[0].regex: \"(x\" is not a valid regex")
        );
    }

    /// The rule that decides `req` under a one-rule configuration with `matches`.
    fn rule_for(matches: &str, req: &crate::request::OwnedRequest) -> String {
        let router = load(
            with_rule(&format!(
                r#"{{"name":"beta","match":{matches},"route":{{"subset":"v2"}}}}"#
            ))
            .as_bytes(),
        )
        .unwrap();
        let decision = router.decide(req, &mut crate::WyRand::new(1)).unwrap();
        decision.rule.to_owned()
    }

    #[test]
    fn one_of_is_exact_membership_for_headers_cookies_and_query() {
        use crate::request::OwnedRequest;
        let testers = r#"["alice","bob",""]"#;
        let header = format!(r#"{{"headers":[{{"name":"X-User-Id","oneOf":{testers}}}]}}"#);
        let h = |v: &str| rule_for(&header, &OwnedRequest::new().header("x-user-id", v));
        assert_eq!(h("alice"), "beta");
        assert_eq!(h("bob"), "beta");
        assert_eq!(h(""), "beta", "an empty string is a value like any other");
        assert_eq!(h("Alice"), "default", "values are case-sensitive");
        assert_eq!(h("alic"), "default", "membership, not a prefix");
        assert_eq!(h("alicex"), "default");
        assert_eq!(rule_for(&header, &OwnedRequest::new()), "default");
        let twice = OwnedRequest::new()
            .header("x-user-id", "mallory")
            .header("x-user-id", "bob");
        assert_eq!(
            rule_for(&header, &twice),
            "beta",
            "any value of a repeated header"
        );

        let cookie = format!(r#"{{"cookies":[{{"name":"uid","oneOf":{testers}}}]}}"#);
        let c = |v: &str| rule_for(&cookie, &OwnedRequest::new().header("cookie", v));
        assert_eq!(c("a=1; uid=bob"), "beta");
        assert_eq!(c("uid=\"alice\""), "beta");
        assert_eq!(c("UID=bob"), "default");
        assert_eq!(c("uid=carol"), "default");

        let query = format!(r#"{{"query":[{{"name":"user","oneOf":{testers}}}]}}"#);
        let q = |p: &str| rule_for(&query, &OwnedRequest::new().header(":path", p));
        assert_eq!(q("/?user=b%6Fb"), "beta", "percent-decoded");
        assert_eq!(q("/x?a=1&user=alice"), "beta");
        assert_eq!(q("/?user=carol"), "default");
        assert_eq!(q("/alice"), "default");
    }

    #[test]
    fn one_of_can_be_inverted() {
        use crate::request::OwnedRequest;
        let m = r#"{"headers":[{"name":"x-user-id","oneOf":["alice","bob"],"invert":true}]}"#;
        let h = |v: &str| rule_for(m, &OwnedRequest::new().header("x-user-id", v));
        assert_eq!(h("alice"), "default");
        assert_eq!(h("carol"), "beta");
        assert_eq!(
            rule_for(m, &OwnedRequest::new()),
            "beta",
            "absent is not a member"
        );
    }

    #[test]
    fn one_of_holds_up_to_100000_values() {
        use crate::request::OwnedRequest;
        let values = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("\"user-{i}\"")).collect();
            format!(
                r#"{{"headers":[{{"name":"x-user-id","oneOf":[{}]}}]}}"#,
                list.join(",")
            )
        };
        let max = values(MAX_ONE_OF);
        for (user, rule) in [
            ("user-0", "beta"),
            ("user-99999", "beta"),
            ("user-100000", "default"),
        ] {
            let req = OwnedRequest::new().header("x-user-id", user);
            assert_eq!(rule_for(&max, &req), rule, "{user}");
        }
        assert_eq!(
            error_of(&with_rule(&format!(
                r#"{{"name":"beta","match":{},"route":{{"subset":"v2"}}}}"#,
                values(MAX_ONE_OF + 1)
            ))),
            "rules[0].match.headers[0].oneOf: has 100001 values; at most 100000 are allowed \
             (oneOf[100000] is \"user-100000\")"
        );
        // The value it repeats is cut like every other.
        let long = "u".repeat(1000);
        let over = values(MAX_ONE_OF).replace("]}]}", &format!(r#","{long}"]}}]}}"#));
        let error = error_of(&with_rule(&format!(
            r#"{{"name":"beta","match":{over},"route":{{"subset":"v2"}}}}"#
        )));
        assert!(
            error.ends_with(&format!(
                "(oneOf[100000] is \"{}\"… (1000 bytes))",
                &long[..80]
            )),
            "{error}"
        );
    }

    #[test]
    fn match_header_names_are_case_insensitive_and_pseudo_headers_allowed() {
        let r = load(header_rule(r#"{"name":"User-Agent","exact":"debug"}"#).as_bytes()).unwrap();
        assert_eq!(r.rules[0].matcher.values[0].name, "user-agent");
        load(header_rule(r#"{"name":":path","prefix":"/api"}"#).as_bytes()).unwrap();
    }
}
