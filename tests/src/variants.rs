//! Variants of `envoy/envoy.template.yaml` for the reliability suite, derived from it by text
//! transforms so that the listeners, clusters and the Wasm filter block stay exactly those of
//! the rollouts suite.
//!
//! * [`hardened`]: every HTTP connection manager accepts what the hostile-request tests send
//!   (request headers up to 96 KiB instead of 60, up to 500 headers instead of 100, HTTP/1.0),
//!   so that such requests reach the filter instead of being refused by Envoy's codec.
//! * [`ecds`]: the front listener's Wasm filter is taken from a file Envoy watches, through
//!   the Extension Config Discovery Service (`config_discovery` with a `path_config_source`),
//!   as Istio delivers WasmPlugin updates. The resource file is returned separately: a
//!   `DiscoveryResponse` holding one `TypedExtensionConfig` whose `typed_config` is the
//!   template's own Wasm filter config.

/// Path of the ECDS resource file, relative to the scenario directory.
pub const ECDS_FILE: &str = "xds/subset_router.yaml";
/// Name of the dynamic filter (ECDS resource name); also its stats prefix
/// `extension_config_discovery.http_filter.<name>.*`.
pub const ECDS_NAME: &str = "subset_router";

/// Header limits of the hardened template.
pub const MAX_REQUEST_HEADERS_KB: u32 = 96;
pub const MAX_HEADERS_COUNT: u32 = 500;

/// Raises the request header limits of every HTTP connection manager and accepts HTTP/1.0.
/// Keys the template already sets are left as they are.
pub fn hardened(template: &str) -> Result<String, String> {
    let mut extra: Vec<String> = Vec::new();
    if !template.contains("max_request_headers_kb") {
        extra.push(format!("max_request_headers_kb: {MAX_REQUEST_HEADERS_KB}"));
    }
    if !template.contains("common_http_protocol_options") {
        extra.push(format!(
            "common_http_protocol_options: {{ max_headers_count: {MAX_HEADERS_COUNT} }}"
        ));
    }
    if !template.contains("http_protocol_options:") {
        extra.push("http_protocol_options: { accept_http_10: true }".into());
    }
    let mut out = String::with_capacity(template.len() + 4096);
    let mut managers = 0;
    for line in template.lines() {
        out.push_str(line);
        out.push('\n');
        let trimmed = line.trim_start();
        // `stat_prefix:` is a direct field of every HttpConnectionManager in the template.
        if trimmed.starts_with("stat_prefix:") && !line.trim_start().starts_with('#') {
            managers += 1;
            let indent = &line[..line.len() - trimmed.len()];
            for e in &extra {
                out.push_str(indent);
                out.push_str(e);
                out.push('\n');
            }
        }
    }
    if managers == 0 {
        return Err("hardened template: no `stat_prefix:` (HTTP connection manager) found".into());
    }
    Ok(out)
}

/// Returns (template with the Wasm filter delivered by ECDS, ECDS resource file template).
/// Both still use the usual placeholders plus `{{CONFIG_DIR}}`.
pub fn ecds(template: &str) -> Result<(String, String), String> {
    let lines: Vec<&str> = template.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start() == "- name: envoy.filters.http.wasm")
        .ok_or("ECDS template: no `- name: envoy.filters.http.wasm` filter in the template")?;
    let indent = lines[start].len() - lines[start].trim_start().len();
    // The filter's block: following lines indented deeper than its `- name:` line.
    let mut end = start + 1;
    while end < lines.len() {
        let l = lines[end];
        let t = l.trim_start();
        if !t.is_empty() && l.len() - t.len() <= indent {
            break;
        }
        end += 1;
    }
    let block = &lines[start + 1..end];
    let tc = block
        .iter()
        .position(|l| l.trim_start() == "typed_config:")
        .ok_or("ECDS template: the wasm filter has no `typed_config:`")?;
    let tc_indent = block[tc].len() - block[tc].trim_start().len();
    let body: Vec<&str> = block[tc + 1..]
        .iter()
        .copied()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > tc_indent)
        .collect();
    let body_indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .ok_or("ECDS template: empty typed_config")?;

    let mut resource = String::from(
        "# ECDS resource (a DiscoveryResponse), replaced by rename while Envoy runs.\n\
         resources:\n\
         - \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n",
    );
    resource.push_str(&format!("  name: {ECDS_NAME}\n  typed_config:\n"));
    for l in &body {
        if l.trim().is_empty() {
            resource.push('\n');
        } else {
            resource.push_str("    ");
            resource.push_str(&l[body_indent..]);
            resource.push('\n');
        }
    }

    let pad = " ".repeat(indent);
    let discovery = format!(
        "{pad}- name: {ECDS_NAME}\n\
         {pad}  config_discovery:\n\
         {pad}    config_source:\n\
         {pad}      resource_api_version: V3\n\
         {pad}      path_config_source:\n\
         {pad}        path: \"{{{{CONFIG_DIR}}}}/{ECDS_FILE}\"\n\
         {pad}        watched_directory: {{ path: \"{{{{CONFIG_DIR}}}}/xds\" }}\n\
         {pad}    type_urls: [\"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\"]\n"
    );
    let mut out = String::with_capacity(template.len() + 512);
    // xDS subscriptions need a node identity.
    let mut node_added = template.lines().any(|l| l.starts_with("node:"));
    for (i, l) in lines.iter().enumerate() {
        if !node_added && l.starts_with("admin:") {
            out.push_str(
                "node: { id: subset-router-reliability, cluster: subset-router-reliability }\n",
            );
            node_added = true;
        }
        if i == start {
            out.push_str(&discovery);
        }
        if i >= start && i < end {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !node_added {
        return Err("ECDS template: no top-level `admin:` to put `node:` before".into());
    }
    Ok((out, resource))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy/envoy.template.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn hardened_raises_limits_on_every_connection_manager() {
        let t = base();
        let h = hardened(&t).unwrap();
        let managers = t
            .lines()
            .filter(|l| l.trim_start().starts_with("stat_prefix:"))
            .count();
        assert!(managers >= 9);
        assert_eq!(h.matches("max_request_headers_kb: 96").count(), managers);
        assert_eq!(h.matches("accept_http_10: true").count(), managers);
    }

    #[test]
    fn ecds_moves_the_wasm_config_into_the_resource() {
        let (t, r) = ecds(&base()).unwrap();
        assert!(!t.contains("envoy.filters.http.wasm\n"));
        assert!(t.contains("config_discovery:"));
        assert!(t.contains("{{CONFIG_DIR}}/xds/subset_router.yaml"));
        assert!(t.starts_with("node:") || t.contains("\nnode:"));
        // The router still follows the dynamic filter.
        let d = t.find("config_discovery").unwrap();
        assert!(t[d..].contains("envoy.filters.http.router"));
        assert!(r.contains("{{PLUGIN_CONFIG}}") && r.contains("{{WASM_FILE}}"));
        assert!(
            r.contains("\"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")
        );
        assert!(r.contains("failure_policy: FAIL_CLOSED"));
    }
}
