//! The committed JSON Schema (`examples/config.schema.json`) is the one the Rust types generate:
//! regenerate it with `make schema` after changing `src/config.rs`.
#![cfg(feature = "schema")]

#[test]
fn committed_schema_matches_the_rust_types() {
    let generated = schemars::schema_for!(subset_router_core::config::PluginConfig);
    let generated = serde_json::to_string_pretty(&generated).unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/config.schema.json"
    ))
    .unwrap();
    assert_eq!(
        committed.trim_end(),
        generated.trim_end(),
        "examples/config.schema.json is stale: run `make schema`"
    );
}
