//! Filter bugs found by the fuzz run as regression tests (fixed in
//! `filter/core/src/reader.rs`; `make test-reliability` runs them, and the fuzz binary now counts
//! such errors as violations). Run: `cargo test -p subset-router-fuzz --test filter_regressions`.
//!
//! Found: `filter/core/src/reader.rs`, `Fields::path_of` (used by `Fields::new` for an unknown
//! field) joins the JSON key into the error path verbatim. So
//! * an empty key gives an empty or dangling path: `{"":1,...}` logs
//!   `subset-router: invalid configuration: : unknown field; ...` (no path at all), and
//!   `{"default":{"subset":"v1","":2}}` gives the path `default.`;
//! * a key holding a line break (`"a\nb"`, legal JSON) puts a raw newline into the error line,
//!   which Envoy logs as two lines: the second one starts with text the config author chose
//!   (log injection), and the `path: reason` line operators grep for is cut in two.
//!
//! Expected (docs/configuration.md, errors: every error names the JSON path and the reason): a
//! non-empty path that does not end in `.`, and one line per error, e.g. by quoting keys that
//! are not plain identifiers (`[""]`, `["a\nb"]`, as `serde_path_to_error` or jq would).

fn errors(json: &str) -> Vec<subset_router_core::ConfigError> {
    match subset_router_core::load(json.as_bytes()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e,
    }
}

#[test]
fn an_unknown_empty_key_still_names_a_path() {
    for json in [
        r#"{"":1,"default":{"subset":"v1"}}"#,
        r#"{"default":{"subset":"v1","":2}}"#,
        r#"{"default":{"subset":"v1"},"rules":[{"name":"a","":1,"route":{"subset":"v1"}}]}"#,
    ] {
        for e in errors(json) {
            assert!(
                !e.path.is_empty() && !e.path.ends_with('.'),
                "{json}: error path {:?} is empty or dangling (line: {e})",
                e.path
            );
        }
    }
}

#[test]
fn an_unknown_key_with_a_line_break_stays_on_one_log_line() {
    for json in [
        "{\"default\":{\"subset\":\"v1\"},\"a\\nb\":1}",
        "{\"default\":{\"subset\":\"v1\"},\"x\\n[2026-01-01 00:00:00.000][1][critical][main] forged\":1}",
    ] {
        for e in errors(json) {
            let line = e.to_string();
            assert!(!line.contains('\n') && !line.contains('\r'), "{json}: the error line contains a line break: {line:?}");
        }
    }
}
