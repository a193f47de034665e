//! The route form of the native build: the final route's cluster specifier asks for the
//! cluster while Envoy resolves the route. It sees the request headers and nothing else of the
//! stream — no header write, no response, no tick — so a configuration that needs one of those
//! is refused at load, with a `path: reason` line per feature, rather than silently doing less.

use crate::config::PluginConfig;
use crate::error::ConfigError;
use crate::router::Router;

/// What the route form cannot carry out in `config`, in document order.
pub fn refusals(config: &PluginConfig) -> Vec<ConfigError> {
    let mut refused = Vec::new();
    if config.cluster_header.is_none() {
        refused.push(ConfigError::new(
            "clusterHeader",
            "null: the cluster-specifier form routes to the cluster the decision names, so it \
             needs clusterHeader's cluster (use the HTTP filter to write subsetHeader only)",
        ));
    }
    if config.subset_header.is_some() {
        refused.push(ConfigError::new(
            "subsetHeader",
            "the cluster-specifier form writes no request header (use the HTTP filter)",
        ));
    }
    if config.response_header.is_some() {
        refused.push(ConfigError::new(
            "responseHeader",
            "the cluster-specifier form never sees the response (use the HTTP filter)",
        ));
    }
    let routes = config
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| (format!("rules[{i}].route"), &rule.route))
        .chain([("default".to_owned(), &config.default)]);
    for (path, route) in routes {
        if route.ramp.is_some() {
            refused.push(ConfigError::new(
                format!("{path}.ramp"),
                "a ramp moves on a once-a-second tick, which only the HTTP filter has",
            ));
        }
    }
    for i in 0..config.guards.len() {
        refused.push(ConfigError::new(
            format!("guards[{i}]"),
            "a guard watches responses, which the cluster-specifier form never sees (use the \
             HTTP filter)",
        ));
    }
    refused
}

/// [`crate::load`] for the route form: the configuration's own errors, then what the form
/// cannot carry out; a router only when there is neither.
pub fn load(json: &[u8]) -> Result<Router, Vec<ConfigError>> {
    let config = crate::parse(json).map_err(|e| vec![e])?;
    let refused = refusals(&config);
    match crate::compile::compile_loaded(json, &config) {
        Ok(router) if refused.is_empty() => Ok(router),
        Ok(_) => Err(refused),
        Err(mut errors) => {
            errors.extend(refused);
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(json: &str) -> Vec<String> {
        match load(json.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_plain_split_with_rules_and_stickiness_is_accepted() {
        let json = r#"{"rules":[{"name":"debug","match":{"headers":[{"name":"user-agent","exact":"debug"}]},"route":{"subset":"v2"}}],
            "default":{"split":[{"subset":"v1","weight":90},{"subset":"v2","weight":10}],"stickyBy":{"header":"x-user-id"}}}"#;
        assert!(load(json.as_bytes()).is_ok(), "{:?}", reasons(json));
    }

    #[test]
    fn each_feature_that_needs_the_stream_is_refused_at_its_path() {
        let json = r#"{"clusterHeader":null,"subsetHeader":"x-subset","responseHeader":"x-routed-subset",
            "rules":[{"name":"canary","route":{"split":[{"subset":"v1","weight":90},{"subset":"v2","weight":10}],
              "ramp":{"subset":"v2","toPercent":50,"start":"2026-01-01T00:00:00Z","durationSeconds":600}}}],
            "guards":[{"subset":"v2","maxErrorPercent":5}],
            "default":{"subset":"v1"}}"#;
        let got = reasons(json);
        let paths: Vec<&str> = got
            .iter()
            .map(|r| r.split_once(": ").map_or(r.as_str(), |(path, _)| path))
            .collect();
        assert_eq!(
            paths,
            [
                "clusterHeader",
                "subsetHeader",
                "responseHeader",
                "rules[0].route.ramp",
                "guards[0]"
            ],
            "{got:#?}"
        );
    }

    #[test]
    fn the_configurations_own_errors_come_first() {
        let json = r#"{"responseHeader":"x-routed-subset","default":{"split":[{"subset":"v1","weight":1000001}]}}"#;
        let got = reasons(json);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].contains("weight"), "{got:#?}");
        assert!(got[1].starts_with("responseHeader: "), "{got:#?}");
    }
}
