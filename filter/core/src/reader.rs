//! Reads a [`PluginConfig`] from JSON, rejecting unknown fields and wrong types with the JSON
//! path of the offending field (`rules[1].route.split[0].weight: expected an integer, found 1.5`).
//!
//! Written by hand over `serde_json::Value` rather than derived: the derived parser plus a
//! path-tracking wrapper cost about 60 KB of the `.wasm`, this costs a few. Tests with the `cli`
//! feature check that the serde attributes on the config types (which generate the JSON Schema)
//! accept exactly what this reader accepts.

use serde_json::{Map, Value};

use crate::config::{
    FleetConfig, GuardConfig, MatchConfig, PluginConfig, RampConfig, RouteConfig, RuleConfig,
    SplitEntryConfig, StickyByConfig, ValueMatchConfig, DEFAULT_CLUSTER_HEADER,
    DEFAULT_CLUSTER_TEMPLATE, DEFAULT_COOLDOWN_SECONDS, DEFAULT_FLEET_INTERVAL_SECONDS,
    DEFAULT_FLEET_TIMEOUT_MS, DEFAULT_MAX_TRIPS, DEFAULT_MIN_REQUESTS, DEFAULT_WINDOW_SECONDS,
};
use crate::error::{truncate, ConfigError};

type Result<T> = std::result::Result<T, ConfigError>;

/// Parses the whole document. Only the first structural error is reported; value checks
/// (weights, names, regexes, …) are [`crate::compile`]'s and are all reported.
pub fn read_config(json: &[u8]) -> Result<PluginConfig> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(
            "configuration",
            "is empty: expected a JSON object with at least a \"default\" route",
        ));
    }
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| ConfigError::new("configuration", format!("invalid JSON: {e}")))?;
    let root = Fields::new(&value, String::new(), PLUGIN_FIELDS)?;
    Ok(PluginConfig {
        name: root.opt_string("name")?,
        cluster_header: match root.get("clusterHeader") {
            None => Some(DEFAULT_CLUSTER_HEADER.to_owned()),
            Some(_) => root.opt_string("clusterHeader")?,
        },
        cluster_template: root
            .opt_string("clusterTemplate")?
            .unwrap_or_else(|| DEFAULT_CLUSTER_TEMPLATE.to_owned()),
        subset_header: root.opt_string("subsetHeader")?,
        response_header: root.opt_string("responseHeader")?,
        rules: root.list("rules", rule)?,
        default: route(root.required("default")?, root.path_of("default"))?,
        guards: root.list("guards", guard)?,
    })
}

const PLUGIN_FIELDS: &[&str] = &[
    "name",
    "clusterHeader",
    "clusterTemplate",
    "subsetHeader",
    "responseHeader",
    "rules",
    "default",
    "guards",
];
const RULE_FIELDS: &[&str] = &["name", "match", "route"];
const MATCH_FIELDS: &[&str] = &[
    "headers",
    "cookies",
    "query",
    "pathPrefix",
    "path",
    "methods",
    "hosts",
    "sourceCidrs",
];
const VALUE_MATCH_FIELDS: &[&str] = &[
    "name", "exact", "oneOf", "prefix", "suffix", "contains", "regex", "present", "invert",
];
const ROUTE_FIELDS: &[&str] = &["subset", "split", "stickyBy", "ramp"];
const RAMP_FIELDS: &[&str] = &["subset", "toPercent", "start", "durationSeconds", "steps"];
const GUARD_FIELDS: &[&str] = &[
    "subset",
    "maxErrorPercent",
    "minRequests",
    "windowSeconds",
    "cooldownSeconds",
    "maxTrips",
    "baseline",
    "minMarginPercent",
    "slowMs",
    "maxSlowPercent",
    "fleet",
];
const FLEET_FIELDS: &[&str] = &[
    "cluster",
    "authority",
    "path",
    "selector",
    "intervalSeconds",
    "timeoutMs",
];
const SPLIT_FIELDS: &[&str] = &["subset", "weight"];
const STICKY_FIELDS: &[&str] = &["header", "cookie", "query", "sourceIp", "cohort"];

fn rule(v: &Value, path: String) -> Result<RuleConfig> {
    let f = Fields::new(v, path, RULE_FIELDS)?;
    Ok(RuleConfig {
        name: f.string("name")?,
        matches: match f.get("match") {
            None | Some(Value::Null) => MatchConfig::default(),
            Some(m) => matcher(m, f.path_of("match"))?,
        },
        route: route(f.required("route")?, f.path_of("route"))?,
    })
}

fn matcher(v: &Value, path: String) -> Result<MatchConfig> {
    let f = Fields::new(v, path, MATCH_FIELDS)?;
    Ok(MatchConfig {
        headers: f.list("headers", value_match)?,
        cookies: f.list("cookies", value_match)?,
        query: f.list("query", value_match)?,
        path_prefix: f.opt_string("pathPrefix")?,
        path: f.opt_string("path")?,
        methods: f.list("methods", string)?,
        hosts: f.list("hosts", string)?,
        source_cidrs: f.list("sourceCidrs", string)?,
    })
}

fn value_match(v: &Value, path: String) -> Result<ValueMatchConfig> {
    let f = Fields::new(v, path, VALUE_MATCH_FIELDS)?;
    Ok(ValueMatchConfig {
        name: f.string("name")?,
        exact: f.opt_string("exact")?,
        one_of: match f.get("oneOf") {
            None | Some(Value::Null) => None,
            Some(_) => Some(f.list("oneOf", string)?),
        },
        prefix: f.opt_string("prefix")?,
        suffix: f.opt_string("suffix")?,
        contains: f.opt_string("contains")?,
        regex: f.opt_string("regex")?,
        present: f.opt_bool("present")?,
        invert: f.opt_bool("invert")?.unwrap_or(false),
    })
}

fn route(v: &Value, path: String) -> Result<RouteConfig> {
    let f = Fields::new(v, path, ROUTE_FIELDS)?;
    Ok(RouteConfig {
        subset: f.opt_string("subset")?,
        split: match f.get("split") {
            None | Some(Value::Null) => None,
            Some(_) => Some(f.list("split", split_entry)?),
        },
        sticky_by: match f.get("stickyBy") {
            None | Some(Value::Null) => None,
            Some(s) => Some(sticky_by(s, f.path_of("stickyBy"))?),
        },
        ramp: match f.get("ramp") {
            None | Some(Value::Null) => None,
            Some(r) => Some(ramp(r, f.path_of("ramp"))?),
        },
    })
}

fn ramp(v: &Value, path: String) -> Result<RampConfig> {
    let f = Fields::new(v, path, RAMP_FIELDS)?;
    Ok(RampConfig {
        subset: f.string("subset")?,
        to_percent: f.number("toPercent")?,
        start: f.string("start")?,
        duration_seconds: f.integer("durationSeconds")?,
        steps: f.integer_or("steps", 0)?,
    })
}

fn guard(v: &Value, path: String) -> Result<GuardConfig> {
    let f = Fields::new(v, path, GUARD_FIELDS)?;
    Ok(GuardConfig {
        subset: f.string("subset")?,
        max_error_percent: f.number("maxErrorPercent")?,
        min_requests: f.integer_or("minRequests", DEFAULT_MIN_REQUESTS)?,
        window_seconds: f.integer_or("windowSeconds", DEFAULT_WINDOW_SECONDS)?,
        cooldown_seconds: f.integer_or("cooldownSeconds", DEFAULT_COOLDOWN_SECONDS)?,
        max_trips: f.integer_or("maxTrips", DEFAULT_MAX_TRIPS)?,
        baseline: f.opt_string("baseline")?,
        min_margin_percent: f.opt_number("minMarginPercent")?,
        slow_ms: f.opt_integer("slowMs")?,
        max_slow_percent: f.opt_number("maxSlowPercent")?,
        fleet: match f.get("fleet") {
            None | Some(Value::Null) => None,
            Some(v) => Some(fleet(v, f.path_of("fleet"))?),
        },
    })
}

fn fleet(v: &Value, path: String) -> Result<FleetConfig> {
    let f = Fields::new(v, path, FLEET_FIELDS)?;
    Ok(FleetConfig {
        cluster: f.string("cluster")?,
        authority: f.opt_string("authority")?,
        path: f.opt_string("path")?,
        selector: f.string("selector")?,
        interval_seconds: f.integer_or("intervalSeconds", DEFAULT_FLEET_INTERVAL_SECONDS)?,
        timeout_ms: f.integer_or("timeoutMs", DEFAULT_FLEET_TIMEOUT_MS)?,
    })
}

fn split_entry(v: &Value, path: String) -> Result<SplitEntryConfig> {
    let f = Fields::new(v, path, SPLIT_FIELDS)?;
    Ok(SplitEntryConfig {
        subset: f.string("subset")?,
        weight: f.integer("weight")?,
    })
}

fn sticky_by(v: &Value, path: String) -> Result<StickyByConfig> {
    let f = Fields::new(v, path, STICKY_FIELDS)?;
    Ok(StickyByConfig {
        header: f.opt_string("header")?,
        cookie: f.opt_string("cookie")?,
        query: f.opt_string("query")?,
        source_ip: f.opt_bool("sourceIp")?,
        cohort: f.opt_string("cohort")?,
    })
}

fn string(v: &Value, path: String) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(ConfigError::new(
            path,
            format!("expected a string, found {}", describe(other)),
        )),
    }
}

/// The fields of one JSON object, with its path for error messages.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// Checks that `v` is an object with no field outside `allowed`.
    fn new(v: &'a Value, path: String, allowed: &[&str]) -> Result<Self> {
        let Value::Object(map) = v else {
            let at = if path.is_empty() {
                "configuration".to_owned()
            } else {
                path
            };
            return Err(ConfigError::new(
                at,
                format!("expected an object, found {}", describe(v)),
            ));
        };
        let fields = Self { map, path };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ConfigError::new(
                fields.path_of(unknown),
                format!("unknown field; expected one of {}", allowed.join(", ")),
            ));
        }
        Ok(fields)
    }

    /// `parent.key`, or `parent["key"]` (JSON-quoted) when the key is not a plain identifier:
    /// an unknown key is the operator's text, and must neither vanish (`""`) nor break the
    /// one-line log message (`"a\nb"`).
    fn path_of(&self, key: &str) -> String {
        let plain = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match (plain, self.path.is_empty()) {
            (true, true) => key.to_owned(),
            (true, false) => format!("{}.{key}", self.path),
            (false, _) => {
                let (head, cut) = truncate(key);
                let more = cut.map_or(String::new(), |bytes| format!("… ({bytes} bytes)"));
                format!("{}[{}{more}]", self.path, Value::String(head.to_owned()))
            }
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn required(&self, key: &str) -> Result<&'a Value> {
        self.get(key)
            .ok_or_else(|| ConfigError::new(self.path_of(key), "is required"))
    }

    fn string(&self, key: &str) -> Result<String> {
        string(self.required(key)?, self.path_of(key))
    }

    /// Absent or `null`: `None`.
    fn opt_string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => string(v, self.path_of(key)).map(Some),
        }
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ConfigError::new(
                self.path_of(key),
                format!("expected true or false, found {}", describe(other)),
            )),
        }
    }

    fn integer(&self, key: &str) -> Result<i64> {
        let v = self.required(key)?;
        match v.as_i64() {
            Some(n) => Ok(n),
            // Beyond i64 (serde_json keeps it as u64 or f64): too large for any range we accept.
            None if v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0) => Err(
                ConfigError::new(self.path_of(key), format!("{} is too large", describe(v))),
            ),
            None => Err(ConfigError::new(
                self.path_of(key),
                format!("expected an integer, found {}", describe(v)),
            )),
        }
    }

    /// A present field that must be an integer; absent: `default`. (`null` is an error, as in
    /// the serde format, where these fields are plain integers with a default.)
    fn integer_or(&self, key: &str, default: i64) -> Result<i64> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.integer(key),
        }
    }

    /// Absent or `null`: `None`.
    fn opt_integer(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.integer(key).map(Some),
        }
    }

    /// Any JSON number, integer or not.
    fn number(&self, key: &str) -> Result<f64> {
        let v = self.required(key)?;
        v.as_f64().ok_or_else(|| {
            ConfigError::new(
                self.path_of(key),
                format!("expected a number, found {}", describe(v)),
            )
        })
    }

    /// Absent or `null`: `None`.
    fn opt_number(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.number(key).map(Some),
        }
    }

    /// Absent or `null`: empty. Each element is read by `read` with its own path (`key[i]`).
    fn list<T>(&self, key: &str, read: fn(&Value, String) -> Result<T>) -> Result<Vec<T>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                let base = self.path_of(key);
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| read(item, format!("{base}[{i}]")))
                    .collect()
            }
            Some(other) => Err(ConfigError::new(
                self.path_of(key),
                format!("expected a list, found {}", describe(other)),
            )),
        }
    }
}

/// A JSON value as an error message shows it: its kind, and short scalars themselves.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        read_config(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn odd_unknown_keys_are_quoted_in_the_path() {
        assert_eq!(
            error(r#"{"":1,"default":{"subset":"v1"}}"#),
            r#"[""]: unknown field; expected one of name, clusterHeader, clusterTemplate, subsetHeader, responseHeader, rules, default, guards"#
        );
        assert_eq!(
            error(r#"{"default":{"subset":"v1","":2}}"#),
            r#"default[""]: unknown field; expected one of subset, split, stickyBy, ramp"#
        );
        let e = error("{\"default\":{\"subset\":\"v1\",\"a\\nb [critical]\":2}}");
        assert_eq!(
            e,
            r#"default["a\nb [critical]"]: unknown field; expected one of subset, split, stickyBy, ramp"#
        );
        assert!(!e.contains('\n'), "an error must stay on one log line: {e}");
        assert_eq!(
            error(r#"{"default":{"subset":"v1","sticky-by":2}}"#),
            r#"default["sticky-by"]: unknown field; expected one of subset, split, stickyBy, ramp"#
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        assert_eq!(
            error(r#"{"default":{"subset":"v1"},"rules":{}}"#),
            "rules: expected a list, found an object"
        );
        assert_eq!(
            error(r#"{"default":{"subset":["v1"]}}"#),
            "default.subset: expected a string, found a list"
        );
        assert_eq!(
            error(r#"{"default":{"split":[{"subset":"a","weight":"10"}]}}"#),
            r#"default.split[0].weight: expected an integer, found the string "10""#
        );
        assert_eq!(
            error(
                r#"{"default":{"subset":"v1"},"rules":[{"name":"r","route":{"subset":"v1"},"match":{"headers":[{"name":"x","present":"yes"}]}}]}"#
            ),
            r#"rules[0].match.headers[0].present: expected true or false, found the string "yes""#
        );
        assert_eq!(
            error(r#"{"default":{"split":[{"subset":"a","weight":18446744073709551615}]}}"#),
            "default.split[0].weight: 18446744073709551615 is too large"
        );
        assert_eq!(
            error(r#"{"default":{"split":[{"subset":"a","weight":99999999999999999999}]}}"#),
            "default.split[0].weight: 1e+20 is too large"
        );
        assert_eq!(
            error(r#"{"default":{"split":[{"subset":"a","weight":0.5}]}}"#),
            "default.split[0].weight: expected an integer, found 0.5"
        );
    }
}
