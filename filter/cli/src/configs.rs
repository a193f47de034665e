//! The subset-router configurations a file holds, for `validate`, `simulate` and `schedule`: the
//! same files `set-weights` edits (plain plugin JSON, Envoy configs, ECDS resources, Istio
//! WasmPlugins, Envoy Gateway EnvoyExtensionPolicies, multi-document YAML), found by
//! [`crate::locate`].

use crate::locate::{self, Format, Kind, Node, LOOKED_FOR};

/// The keys of a plugin configuration's top level.
const PLUGIN_KEYS: &[&str] = &[
    "clusterHeader",
    "clusterTemplate",
    "subsetHeader",
    "responseHeader",
    "rules",
    "default",
    "guards",
];

/// One configuration found in a file.
pub struct Config {
    /// Where it is, the prefix of every message about it: `FILE` for a file that is the
    /// configuration itself, else `FILE: <location>` (`FILE: WasmPlugin ns/name: spec.pluginConfig`).
    pub at: String,
    /// The JSON the filter would be given, or why it cannot be made.
    pub json: Result<Vec<u8>, String>,
}

/// What one file holds.
pub struct FileConfigs {
    pub configs: Vec<Config>,
    /// `FILE: <location>: <why>` for each candidate that is not a subset-router configuration.
    pub skipped: Vec<String>,
}

impl FileConfigs {
    /// The lines saying that the file holds no configuration, and what was looked for.
    pub fn none_found(&self, path: &str) -> Vec<String> {
        let mut lines = vec![format!(
            "{path}: no subset-router configuration found ({LOOKED_FOR})"
        )];
        lines.extend(self.skipped.iter().cloned());
        lines
    }
}

/// The file's bytes; `-` is standard input.
fn read_bytes(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("-: cannot read standard input: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))
    }
}

/// Every subset-router configuration in the file at `path`, or why the file cannot be read.
pub fn read(path: &str) -> Result<FileConfigs, Vec<String>> {
    let bytes = read_bytes(path).map_err(|e| vec![e])?;
    let bare = |bytes: Vec<u8>| FileConfigs {
        configs: vec![Config {
            at: path.to_owned(),
            json: Ok(bytes),
        }],
        skipped: Vec::new(),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Err(vec![format!("{path}: not UTF-8 text")]);
    };
    if text.trim().is_empty() {
        // The filter's own message for an empty configuration.
        return Ok(bare(bytes));
    }
    let (format, docs) = match locate::parse_file(text) {
        Ok(parsed) => parsed,
        // Broken JSON: the filter's reader says where, as it would to Envoy.
        Err(_) if text.trim_start().starts_with('{') || is_json_file(path) => {
            return Ok(bare(bytes))
        }
        Err(e) => return Err(vec![format!("{path}: {e}")]),
    };
    let discovery = locate::discover(text, format, &docs);
    let skipped = discovery
        .skipped
        .iter()
        .map(|s| format!("{path}: {s}"))
        .collect();
    if discovery.found.is_empty() {
        if let [doc] = docs.as_slice() {
            // A `.json` file that is no Envoy or Kubernetes document is a plugin configuration
            // to the filter, whatever its mistake (`42`, `[]`, `{}`): the reader names it.
            if is_json_file(path) && !marks_envoy_or_kubernetes(doc) {
                return Ok(bare(bytes));
            }
            if looks_like_plugin_config(doc) {
                // A plugin configuration with a mistake (no `default`, …): the filter's
                // reader names it.
                let json = match format {
                    Format::Json => Ok(bytes),
                    Format::Yaml => doc
                        .to_json()
                        .and_then(|v| serde_json::to_vec(&v).map_err(|e| e.to_string())),
                };
                return Ok(FileConfigs {
                    configs: vec![Config {
                        at: path.to_owned(),
                        json,
                    }],
                    skipped,
                });
            }
        }
    }
    let configs = discovery
        .found
        .iter()
        .map(|found| Config {
            at: if found.bare {
                path.to_owned()
            } else {
                format!("{path}: {}", found.label)
            },
            json: found.config_json(text),
        })
        .collect();
    Ok(FileConfigs { configs, skipped })
}

fn is_json_file(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".json")
}

/// A mapping with a key only Kubernetes objects and Envoy configurations have.
fn marks_envoy_or_kubernetes(doc: &Node) -> bool {
    let Kind::Map(entries) = &doc.kind else {
        return false;
    };
    entries.iter().filter_map(|(k, _)| k.scalar()).any(|k| {
        matches!(
            k,
            "kind"
                | "apiVersion"
                | "@type"
                | "static_resources"
                | "dynamic_resources"
                | "resources"
        )
    })
}

/// A mapping with one of the plugin configuration's top-level keys and nothing that marks a
/// Kubernetes object or an Envoy message.
fn looks_like_plugin_config(doc: &Node) -> bool {
    let Kind::Map(entries) = &doc.kind else {
        return false;
    };
    let keys = || entries.iter().filter_map(|(k, _)| k.scalar());
    keys().any(|k| PLUGIN_KEYS.contains(&k))
        && !keys().any(|k| matches!(k, "kind" | "apiVersion" | "@type"))
}

/// Why `simulate` or `schedule` could not pick one configuration.
pub enum PickError {
    /// Exit 1: unreadable file, or no configuration in it.
    Invalid(Vec<String>),
    /// Exit 2: several different configurations and no (or a wrong) `--config-index`.
    Usage(String),
}

/// The configuration `simulate` and `schedule` work on: the file's only one (or several equal
/// ones, e.g. the same configuration in a Wasm and a dynamic module filter), else number
/// `index` (from 1, in file order, as `validate` lists them).
pub fn pick(path: &str, index: Option<usize>) -> Result<Config, PickError> {
    let file = read(path).map_err(PickError::Invalid)?;
    let count = file.configs.len();
    if count == 0 {
        return Err(PickError::Invalid(file.none_found(path)));
    }
    let listing: String = file
        .configs
        .iter()
        .enumerate()
        .map(|(i, c)| format!("\n  {}: {}", i + 1, c.at))
        .collect();
    let chosen = match index {
        Some(i) if (1..=count).contains(&i) => i - 1,
        Some(i) => {
            return Err(PickError::Usage(format!(
                "--config-index {i}: {path} holds {count} subset-router configuration(s):{listing}"
            )))
        }
        None if count == 1 || all_equal(&file.configs) => 0,
        None => {
            return Err(PickError::Usage(format!(
                "{path} holds {count} different subset-router configurations; choose one with \
                 --config-index N:{listing}"
            )))
        }
    };
    Ok(file
        .configs
        .into_iter()
        .nth(chosen)
        .unwrap_or_else(|| unreachable!("index checked against the count")))
}

/// The configurations are all the same JSON value.
fn all_equal(configs: &[Config]) -> bool {
    let value = |c: &Config| {
        c.json
            .as_ref()
            .ok()
            .and_then(|j| serde_json::from_slice::<serde_json::Value>(j).ok())
    };
    let first = configs.first().and_then(value);
    first.is_some() && configs.iter().all(|c| value(c) == first)
}
