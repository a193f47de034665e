use super::*;

const PLUGIN: &str = r#"{"subsetHeader":"x-subset","clusterTemplate":"c-{subset}",
  "rules":[{"name":"debug","match":{"headers":[{"name":"user-agent","exact":"debug"}]},"route":{"subset":"v2"}}],
  "default":{"split":[{"subset":"v1","weight":90},{"subset":"v3","weight":10}]}}"#;

fn spec(build: Build, delivery: Delivery) -> Spec {
    let mut spec = Spec {
        comment: vec!["test".into()],
        admin: Addr::new("127.0.0.1", 9901),
        front: Addr::new("0.0.0.0", 10000),
        build,
        plugin_json: PLUGIN.into(),
        delivery,
        header_routes: None,
        cluster_header: None,
        fallback_cluster: None,
        upstreams: Vec::new(),
        echo_headers: vec![("x-echo-subset".into(), "x-subset".into())],
        front_flags: true,
        hardened: false,
        stats_tags: false,
    };
    PluginRoutes::from_json(PLUGIN).unwrap().apply(&mut spec, 20000);
    spec
}

#[test]
fn routes_and_upstreams_follow_the_plugin_config() {
    let routes = PluginRoutes::from_json(PLUGIN).unwrap();
    assert_eq!(
        routes.subsets,
        [("v1", "c-v1"), ("v3", "c-v3"), ("v2", "c-v2")].map(|(s, c)| (s.to_string(), c.to_string()))
    );
    let yaml = render(&spec(Build::Wasm { file: "/f.wasm".into() }, Delivery::Inline));
    for (value, cluster) in [("v1", "c-v1"), ("v3", "c-v3"), ("v2", "c-v2")] {
        assert!(yaml.contains(&format!(
            "headers: [ {{ name: \"x-subset\", string_match: {{ exact: \"{value}\" }} }} ] }}\n                route: {{ cluster: \"{cluster}\" }}"
        )));
    }
    assert!(yaml.contains("cluster_header: \"x-upstream-cluster\""));
    assert!(yaml.contains("port_value: 20002"));
    assert!(yaml.contains("value: \"%REQ(x-subset)%\""));
    assert!(yaml.contains("x-front-flags"));
    assert!(yaml.contains("failure_policy: FAIL_CLOSED"));
    assert!(yaml.contains("filename: \"/f.wasm\""));
}

#[test]
fn an_invalid_plugin_config_is_refused_with_the_filters_errors() {
    let err = PluginRoutes::from_json(r#"{"default":{"subset":"v 1"}}"#).unwrap_err();
    assert!(err.starts_with("default.subset: "), "{err}");
}

#[test]
fn the_native_build_is_a_dynamic_module_with_the_same_json() {
    let yaml = render(&spec(Build::Native, Delivery::Inline));
    assert!(yaml.contains("envoy.filters.http.dynamic_modules"));
    assert!(yaml.contains("dynamic_module_config: { name: subset_router }"));
    assert!(yaml.contains("filter_name: subset_router"));
    assert!(!yaml.contains("wasm"));
    // The same JSON text, as a literal block.
    assert!(yaml.contains("value: |\n"));
    assert!(yaml.contains(r#"  "default":{"split":[{"subset":"v1","weight":90},{"subset":"v3","weight":10}]}}"#));
}

#[test]
fn ecds_moves_the_filter_into_a_watched_resource() {
    for build in [Build::Wasm { file: "/f.wasm".into() }, Build::Native] {
        let yaml = render(&spec(build.clone(), Delivery::Ecds { dir: "/x/xds".into() }));
        assert!(yaml.starts_with("# test\nnode:"));
        assert!(yaml.contains("path: \"/x/xds/subset_router.yaml\""));
        assert!(yaml.contains(build.type_url()));
        assert!(!yaml.contains("filter_config") && !yaml.contains("vm_config"));
        let resource = ecds_resource(&build, PLUGIN);
        assert!(resource.contains("name: subset_router\n  typed_config:\n    \"@type\": "));
        assert!(resource.contains(r#"  "rules":[{"name":"debug""#));
    }
}

#[test]
fn hardened_raises_the_limits_of_every_connection_manager() {
    let mut s = spec(Build::Native, Delivery::Inline);
    s.hardened = true;
    let yaml = render(&s);
    let managers = yaml.matches("stat_prefix:").count();
    assert_eq!(managers, 1 + s.upstreams.len());
    assert_eq!(yaml.matches("max_request_headers_kb: 96").count(), managers);
    assert_eq!(yaml.matches("accept_http_10: true").count(), managers);
}

#[test]
fn a_pretty_config_is_a_literal_block_and_anything_odd_is_quoted() {
    assert_eq!(yaml::block_or_quoted("{\n  \"a\": 1\n}\n", 2), "|\n  {\n    \"a\": 1\n  }");
    assert_eq!(yaml::block_or_quoted("{\"a\":\"\u{1}\"\n}", 2), "\"{\\\"a\\\":\\\"\\x01\\\"\\n}\"");
    assert_eq!(yaml::block_or_quoted("{}", 2), "\"{}\"");
}
