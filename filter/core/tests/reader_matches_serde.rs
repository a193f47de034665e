//! The hand-written reader (used by the filter) and the serde attributes on the config types
//! (which generate the JSON Schema) must describe the same format: same field names, same
//! defaults, same unknown-field rejection. Checked on every example config and every invalid one.
#![cfg(feature = "schema")]

use std::path::{Path, PathBuf};

use subset_router_core::config::PluginConfig;
use subset_router_core::reader::read_config;

fn example_configs() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "config.json") {
                // Plugin configurations only (not the schema, dashboards or digest files).
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn both_parsers_read_every_example_identically() {
    let configs = example_configs();
    assert!(
        configs.len() >= 12,
        "only {} example configs found",
        configs.len()
    );
    for path in configs {
        let json = std::fs::read(&path).unwrap();
        let by_reader = read_config(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let by_serde: PluginConfig = serde_json::from_slice(&json).unwrap();
        assert_eq!(by_reader, by_serde, "{}", path.display());
    }
}

#[test]
fn both_parsers_reject_the_same_structural_errors() {
    let data: serde_json::Value =
        serde_json::from_str(include_str!("data/invalid-configs.json")).unwrap();
    for case in data.as_array().unwrap() {
        let json = case["config"].as_str().unwrap();
        let by_reader = read_config(json.as_bytes());
        let by_serde = serde_json::from_str::<PluginConfig>(json);
        match (&by_reader, &by_serde) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{json}"),
            (Err(_), Err(_)) => {}
            // serde accepts a struct written as an array; the reader (and the schema) do not.
            (Err(_), Ok(_)) if json.trim_start().starts_with('[') => {}
            _ => panic!(
                "parsers disagree on {json}: reader {by_reader:?}, serde {:?}",
                by_serde.map(|_| ())
            ),
        }
    }
}

/// Every ramp and guard field, given and defaulted, reads the same through both parsers.
#[test]
fn both_parsers_read_ramps_and_guards_identically() {
    for json in [
        r#"{"default": {"split": [{"subset": "v1", "weight": 95}, {"subset": "v2", "weight": 5}],
             "stickyBy": {"header": "x-user-id"},
             "ramp": {"subset": "v2", "toPercent": 50, "start": "2026-12-01T10:00:00Z",
                      "durationSeconds": 7200, "steps": 0}},
            "guards": [{"subset": "v2", "maxErrorPercent": 5, "minRequests": 50, "windowSeconds": 30,
                        "cooldownSeconds": 60, "maxTrips": 3, "baseline": "v1", "minMarginPercent": 2,
                        "slowMs": 1000, "maxSlowPercent": 10}]}"#,
        r#"{"default": {"split": [{"subset": "v1", "weight": 1}, {"subset": "v2", "weight": 0}],
             "ramp": {"subset": "v2", "toPercent": 12.5, "start": "2026-12-01T12:00:00.5+02:00",
                      "durationSeconds": 60}},
            "guards": [{"subset": "v2", "maxErrorPercent": 0.5}, {"subset": "v1", "maxErrorPercent": 100,
                        "baseline": null, "slowMs": null, "maxSlowPercent": null}]}"#,
    ] {
        let by_reader = read_config(json.as_bytes()).unwrap();
        let by_serde: PluginConfig = serde_json::from_str(json).unwrap();
        assert_eq!(by_reader, by_serde, "{json}");
        assert!(subset_router_core::load(json.as_bytes()).is_ok(), "{json}");
    }
}

/// `oneOf` on every source, given, `null` and beside `invert`, reads the same through both parsers.
#[test]
fn both_parsers_read_one_of_identically() {
    let json = r#"{"rules": [{"name": "beta", "match": {
            "headers": [{"name": "x-user-id", "oneOf": ["alice", "bob", ""]}],
            "cookies": [{"name": "uid", "oneOf": ["alice"], "invert": true}],
            "query": [{"name": "user", "oneOf": null, "exact": "carol"}]},
          "route": {"subset": "v2"}}],
        "default": {"subset": "v1"}}"#;
    let by_reader = read_config(json.as_bytes()).unwrap();
    let by_serde: PluginConfig = serde_json::from_str(json).unwrap();
    assert_eq!(by_reader, by_serde);
    let header = &by_reader.rules[0].matches.headers[0];
    assert_eq!(
        header.one_of.as_deref(),
        Some(&["alice".to_owned(), "bob".into(), "".into()][..])
    );
    assert!(subset_router_core::load(json.as_bytes()).is_ok());
}
