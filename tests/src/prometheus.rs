//! Envoy's admin `/stats/prometheus`: fetching it, parsing the text exposition format, and
//! comparing the filter's labelled families with what the suites sent.
//!
//! The shipped Envoy configs carry `stats_tags` (envoy/config), so the decision counters
//! `<ns>subset_router.rule.<rule>.subset.<subset>` are one family labelled `rule` and `subset`,
//! the ramp gauge `<ns>subset_router.rule.<rule>.ramp_ppm` is labelled `rule` and the guard
//! stats `<ns>subset_router.guard.<subset>.<what>` are labelled `subset`. Envoy strips the Wasm
//! namespace `wasmcustom.` from Prometheus names (`subset_router_rule_subset`) but not the
//! dynamic module's (`envoy_dynamicmodulescustom_subset_router_rule_subset`).

use crate::envoy::Envoy;
use crate::http::Client;
use std::collections::{BTreeMap, BTreeSet};

/// Labels of one sample, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// `# TYPE name kind` lines: family name -> `counter`, `gauge`, `histogram`, ...
    pub types: BTreeMap<String, String>,
}

/// The Prometheus name prefix of the filter's own stats for a build, from Envoy's stat
/// namespace (`FilterBuild::stat_prefix`): `wasmcustom.` -> `""` (Envoy strips it),
/// `dynamicmodulescustom.` -> `envoy_dynamicmodulescustom_`.
pub fn filter_prefix(stat_namespace: &str) -> String {
    match stat_namespace {
        "wasmcustom." | "" => String::new(),
        ns => format!("envoy_{}", ns.replace('.', "_")),
    }
}

/// `GET /stats/prometheus` on the Envoy's admin interface.
pub fn fetch(envoy: &Envoy) -> Result<String, String> {
    let mut admin = Client::new(envoy.admin());
    let r = admin.get("/stats/prometheus", &[])?;
    if r.status != 200 {
        return Err(format!("/stats/prometheus answered {}", r.status));
    }
    Ok(r.body_str())
}

/// [`fetch`] and [`parse`].
pub fn scrape(envoy: &Envoy) -> Result<Scrape, String> {
    parse(&fetch(envoy)?)
}

/// Parses the text exposition format (what Envoy prints: `# TYPE` comments, then
/// `name{a="x",b="y"} value` lines; label values escape `\\`, `\"` and `\n`).
pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut out = Scrape::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            if words.next() == Some("TYPE") {
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    out.types.insert(name.to_string(), kind.to_string());
                }
            }
            continue;
        }
        let sample = parse_sample(line).map_err(|e| format!("line {}: {e}: {line:?}", i + 1))?;
        out.samples.push(sample);
    }
    Ok(out)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut labels = Labels::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end;
        loop {
            // Skip separators, then `}` or `key="value"`.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            match chars.peek() {
                Some((j, '}')) => {
                    end = *j;
                    break;
                }
                None => return Err("unterminated label set".into()),
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} without a quoted value"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("unterminated escape".into()),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            labels.insert(key.trim().to_string(), value);
        }
        rest = &body[end + 1..];
    }
    let value_text = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

impl Scrape {
    /// Every sample of the metric `name`.
    pub fn family(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// Every metric name in the scrape.
    pub fn names(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }

    /// The value of `name{labels}` (exactly those labels), if printed.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

/// Compares a labelled family with the expected values, keyed by the values of `keys` (in
/// that order). Every sample must carry exactly the labels `keys`, every expected key must be
/// printed (a value of 0 included) and nothing else may be: `Ok` describes what was compared,
/// `Err` lists the differences.
pub fn compare_family(
    scrape: &Scrape,
    family: &str,
    keys: &[&str],
    expected: &BTreeMap<Vec<String>, u64>,
) -> Result<String, String> {
    let want_keys: BTreeSet<&str> = keys.iter().copied().collect();
    let mut got: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    let mut problems = Vec::new();
    for s in scrape.family(family) {
        let have: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
        if have != want_keys {
            problems.push(format!(
                "{family}{:?}: labels {have:?}, want {want_keys:?}",
                s.labels
            ));
            continue;
        }
        let k: Vec<String> = keys.iter().map(|k| s.labels[*k].clone()).collect();
        if got.insert(k.clone(), s.value).is_some() {
            problems.push(format!("{family}{k:?} printed twice"));
        }
    }
    if got.is_empty() && problems.is_empty() {
        return Err(format!("no {family} samples in /stats/prometheus"));
    }
    let all: BTreeSet<&Vec<String>> = got.keys().chain(expected.keys()).collect();
    for k in all {
        let label = keys
            .iter()
            .zip(k)
            .map(|(n, v)| format!("{n}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        match (got.get(k), expected.get(k)) {
            (Some(g), Some(e)) if *g == *e as f64 => {}
            (Some(g), Some(e)) => problems.push(format!("{{{label}}} {g}, expected {e}")),
            (Some(g), None) => problems.push(format!("{{{label}}} {g}: not expected at all")),
            (None, Some(e)) => problems.push(format!("{{{label}}} missing, expected {e}")),
            (None, None) => {}
        }
    }
    if problems.is_empty() {
        Ok(format!("{} {family} samples equal", expected.len()))
    } else {
        Err(problems.join("; "))
    }
}

/// Metric names of the filter (`<prefix>subset_router_…`) that are not one of `families`:
/// what a `stats_tags` regex that missed a stat leaves behind (one name per rule and subset).
pub fn unlabelled_leftovers(scrape: &Scrape, prefix: &str, families: &[&str]) -> Vec<String> {
    let own = format!("{prefix}subset_router_");
    scrape
        .names()
        .into_iter()
        .filter(|n| n.starts_with(&own) && !families.iter().any(|f| f == n))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVOY: &str = "# TYPE envoy_cluster_upstream_rq_xx counter
envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"v1\"} 12
# TYPE subset_router_rule_subset counter
subset_router_rule_subset{rule=\"canary\",subset=\"v1\"} 8
subset_router_rule_subset{rule=\"canary\",subset=\"v2.1-rc.3\"} 13
subset_router_rule_subset{rule=\"default\",subset=\"v1\"} 0
# TYPE subset_router_spoofed_header_removed counter
subset_router_spoofed_header_removed{} 1
# TYPE subset_router_guard_open gauge
subset_router_guard_open{subset=\"v2.1-rc.3\"} 0
# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"v1\",le=\"+Inf\"} 12
odd{a=\"q\\\"uo\\\\te\\nx\"} 1.5e3
";

    #[test]
    fn parses_what_envoy_prints() {
        let s = parse(ENVOY).unwrap();
        assert_eq!(s.samples.len(), 8);
        assert_eq!(s.types["subset_router_guard_open"], "gauge");
        assert_eq!(
            s.value(
                "subset_router_rule_subset",
                &[("rule", "canary"), ("subset", "v2.1-rc.3")]
            ),
            Some(13.0)
        );
        assert_eq!(
            s.value("subset_router_spoofed_header_removed", &[]),
            Some(1.0)
        );
        assert_eq!(s.value("odd", &[("a", "q\"uo\\te\nx")]), Some(1500.0));
        assert_eq!(
            s.value(
                "envoy_cluster_upstream_rq_time_bucket",
                &[("envoy_cluster_name", "v1"), ("le", "+Inf")]
            ),
            Some(12.0)
        );
        assert!(parse("x{a=\"1\" 2").is_err());
        assert!(parse("x{a=1} 2").is_err());
    }

    #[test]
    fn compares_a_family_exactly() {
        let s = parse(ENVOY).unwrap();
        let k = |r: &str, sub: &str| vec![r.to_string(), sub.to_string()];
        let mut want = BTreeMap::from([
            (k("canary", "v1"), 8),
            (k("canary", "v2.1-rc.3"), 13),
            (k("default", "v1"), 0),
        ]);
        let fam = "subset_router_rule_subset";
        assert!(compare_family(&s, fam, &["rule", "subset"], &want).is_ok());
        want.insert(k("canary", "v1"), 9);
        want.insert(k("debug", "v2"), 0);
        want.remove(&k("default", "v1"));
        let err = compare_family(&s, fam, &["rule", "subset"], &want).unwrap_err();
        assert!(
            err.contains("{rule=\"canary\",subset=\"v1\"} 8, expected 9"),
            "{err}"
        );
        assert!(
            err.contains("{rule=\"debug\",subset=\"v2\"} missing"),
            "{err}"
        );
        assert!(
            err.contains("{rule=\"default\",subset=\"v1\"} 0: not expected"),
            "{err}"
        );
        assert!(compare_family(&s, fam, &["rule"], &BTreeMap::new())
            .unwrap_err()
            .contains("labels"));
    }

    #[test]
    fn names_the_prefix_of_each_build_and_finds_leftovers() {
        assert_eq!(filter_prefix("wasmcustom."), "");
        assert_eq!(
            filter_prefix("dynamicmodulescustom."),
            "envoy_dynamicmodulescustom_"
        );
        let s = parse("subset_router_rule_subset{rule=\"a\",subset=\"b\"} 1\nsubset_router_rule_subset_v1_0{rule=\"a\"} 1\n").unwrap();
        assert_eq!(
            unlabelled_leftovers(&s, "", &["subset_router_rule_subset"]),
            vec!["subset_router_rule_subset_v1_0".to_string()]
        );
    }
}
