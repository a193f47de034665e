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
        native_form: NativeForm::HttpFilter,
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
        filter_routes: None,
        fail_header: None,
    };
    PluginRoutes::from_json(PLUGIN)
        .unwrap()
        .apply(&mut spec, 20000);
    spec
}

#[test]
fn routes_and_upstreams_follow_the_plugin_config() {
    let routes = PluginRoutes::from_json(PLUGIN).unwrap();
    assert_eq!(
        routes.subsets,
        [("v1", "c-v1"), ("v3", "c-v3"), ("v2", "c-v2")]
            .map(|(s, c)| (s.to_string(), c.to_string()))
    );
    let yaml = render(&spec(
        Build::Wasm {
            file: "/f.wasm".into(),
        },
        Delivery::Inline,
    ));
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
    assert!(yaml.contains(
        r#"  "default":{"split":[{"subset":"v1","weight":90},{"subset":"v3","weight":10}]}}"#
    ));
}

#[test]
fn ecds_moves_the_filter_into_a_watched_resource() {
    for build in [
        Build::Wasm {
            file: "/f.wasm".into(),
        },
        Build::Native,
    ] {
        let yaml = render(&spec(
            build.clone(),
            Delivery::Ecds {
                dir: "/x/xds".into(),
            },
        ));
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
    assert_eq!(
        yaml::block_or_quoted("{\n  \"a\": 1\n}\n", 2),
        "|\n  {\n    \"a\": 1\n  }"
    );
    assert_eq!(
        yaml::block_or_quoted("{\"a\":\"\u{1}\"\n}", 2),
        "\"{\\\"a\\\":\\\"\\x01\\\"\\n}\""
    );
    assert_eq!(yaml::block_or_quoted("{}", 2), "\"{}\"");
}

#[test]
fn an_upstream_can_fail_or_answer_late_and_the_others_are_unchanged() {
    let mut s = spec(Build::Native, Delivery::Inline);
    let healthy = render(&s);
    // Today's behaviour by default: 200 at once, no fault filter anywhere.
    assert_eq!(
        healthy.matches("direct_response: { status: 200,").count(),
        s.upstreams.len()
    );
    assert!(!healthy.contains("envoy.filters.http.fault"));

    let (failing, slow) = (
        s.upstreams[1].cluster.clone(),
        s.upstreams[2].cluster.clone(),
    );
    s.upstreams[1].status = Some(503);
    s.upstreams[2].delay_ms = Some(1300);
    let yaml = render(&s);
    let listener = |cluster: &str| {
        let from = yaml
            .find(&format!("- name: \"upstream_{cluster}\""))
            .unwrap();
        let len = yaml[from + 1..]
            .find("\n  - name: ")
            .or_else(|| yaml[from..].find("\n  clusters:"))
            .unwrap();
        yaml[from..from + 1 + len].to_string()
    };
    let failing = listener(&failing);
    assert!(
        failing.contains("direct_response: { status: 503, body: { inline_string: \"v3\\n\" } }"),
        "{failing}"
    );
    assert!(failing.contains("key: x-served-by, value: \"v3\""));
    assert!(!failing.contains("fault"));
    let slow = listener(&slow);
    assert!(slow.contains("direct_response: { status: 200,"));
    let fault = slow.find("- name: envoy.filters.http.fault").unwrap();
    assert!(
        fault < slow.find("- name: envoy.filters.http.router").unwrap(),
        "fault filter before the router"
    );
    assert!(slow.contains(
        "delay: { fixed_delay: 1.300s, percentage: { numerator: 100, denominator: HUNDRED } }"
    ));
    // Only that listener is slowed, and only the one fails.
    assert_eq!(yaml.matches("envoy.filters.http.fault").count(), 1);
    assert_eq!(yaml.matches("status: 503").count(), 1);
    // The front listener and the clusters are as before.
    assert_eq!(
        yaml.split("  - name: \"upstream_").next(),
        healthy.split("  - name: \"upstream_").next()
    );
    assert_eq!(
        yaml.split("  clusters:\n").nth(1),
        healthy.split("  clusters:\n").nth(1)
    );
}

/// Envoy's tag extraction over one stat name with the `stats_tags` of a rendered config: every
/// regex is matched against the full name; its first capture group is cut from the name and its
/// second (else the first) is the tag value. Returns the tag-extracted name and the tags.
fn extract_tags(yaml: &str, stat: &str) -> (String, Vec<(String, String)>) {
    let section = yaml
        .split("stats_config:\n  stats_tags:\n")
        .nth(1)
        .expect("stats_tags rendered");
    let mut tags = Vec::new();
    let mut cut: Vec<std::ops::Range<usize>> = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let Some(tag) = line.strip_prefix("  - tag_name: ") else {
            break;
        };
        let quoted = lines.next().unwrap().strip_prefix("    regex: ").unwrap();
        // `q` writes a JSON-style string: `\\` for a backslash, no other escape in a regex here.
        let re = quoted.trim_matches('"').replace(r"\\", r"\");
        let re = regex::Regex::new(&re).unwrap();
        if let Some(c) = re.captures(stat) {
            let remove = c.get(1).expect("a first capture group");
            tags.push((
                tag.to_string(),
                c.get(2).unwrap_or(remove).as_str().to_string(),
            ));
            cut.push(remove.range());
        }
    }
    let name = stat
        .char_indices()
        .filter(|(i, _)| !cut.iter().any(|r| r.contains(i)))
        .map(|(_, ch)| ch)
        .collect();
    tags.sort();
    (name, tags)
}

#[test]
fn stats_tags_label_every_subset_router_stat_of_either_build_dotted_subsets_included() {
    for build in [
        Build::Wasm {
            file: "/f.wasm".into(),
        },
        Build::Native,
    ] {
        let mut s = spec(build.clone(), Delivery::Inline);
        s.stats_tags = true;
        let yaml = render(&s);
        let p = build.stat_prefix();
        let t = |k: &str, v: &str| (k.to_string(), v.to_string());
        // (stat under `<prefix>subset_router.`, name after extraction, tags)
        let cases = [
            (
                "rule.canary.subset.v2",
                "rule.subset",
                vec![t("rule", "canary"), t("subset", "v2")],
            ),
            (
                "rule.default.subset.v1",
                "rule.subset",
                vec![t("rule", "default"), t("subset", "v1")],
            ),
            // Subset names may hold dots; rule names may not.
            (
                "rule.canary.subset.v2.1-rc.3",
                "rule.subset",
                vec![t("rule", "canary"), t("subset", "v2.1-rc.3")],
            ),
            (
                "rule.subset.subset.v1",
                "rule.subset",
                vec![t("rule", "subset"), t("subset", "v1")],
            ),
            (
                "rule.ramp_ppm.subset.x",
                "rule.subset",
                vec![t("rule", "ramp_ppm"), t("subset", "x")],
            ),
            (
                "rule.canary.ramp_ppm",
                "rule.ramp_ppm",
                vec![t("rule", "canary")],
            ),
            ("guard.v2.tripped", "guard.tripped", vec![t("subset", "v2")]),
            (
                "guard.v2.1-rc.3.diverted",
                "guard.diverted",
                vec![t("subset", "v2.1-rc.3")],
            ),
            (
                "guard.a.b.c.undivertable",
                "guard.undivertable",
                vec![t("subset", "a.b.c")],
            ),
            ("guard.v2.open", "guard.open", vec![t("subset", "v2")]),
            ("spoofed_header_removed", "spoofed_header_removed", vec![]),
            ("sticky_key_missing", "sticky_key_missing", vec![]),
            ("host_call_failed", "host_call_failed", vec![]),
        ];
        for (stat, name, tags) in cases {
            let (stat, name) = (
                format!("{p}subset_router.{stat}"),
                format!("{p}subset_router.{name}"),
            );
            assert_eq!(
                extract_tags(&yaml, &stat),
                (name, tags),
                "{stat} ({})",
                build.name()
            );
        }
        // ECDS stats of any HTTP filter resource: one family labelled with the resource name.
        for (stat, name, resource) in [
            (
                "extension_config_discovery.http_filter.subset_router.config_fail",
                "extension_config_discovery.http_filter.config_fail",
                "subset_router",
            ),
            (
                "extension_config_discovery.http_filter.istio-system.subset-router.config_reload",
                "extension_config_discovery.http_filter.config_reload",
                "istio-system.subset-router",
            ),
        ] {
            assert_eq!(
                extract_tags(&yaml, stat),
                (name.to_string(), vec![t("ecds_name", resource)]),
                "{stat}"
            );
        }
        // The other build's names, and Envoy's own stats, are left alone.
        let other = if p == "wasmcustom." {
            "dynamicmodulescustom."
        } else {
            "wasmcustom."
        };
        for stat in [
            format!("{other}subset_router.rule.canary.subset.v2"),
            "wasm.subset_router.vm_reload".into(),
        ] {
            assert_eq!(extract_tags(&yaml, &stat), (stat.clone(), vec![]), "{stat}");
        }
    }
    // Off unless asked for.
    assert!(!render(&spec(Build::Native, Delivery::Inline)).contains("stats_config"));
}

#[test]
fn a_fail_header_makes_only_the_named_subsets_upstream_answer_503() {
    let mut s = spec(Build::Native, Delivery::Inline);
    s.fail_header = Some("x-fail".into());
    let yaml = render(&s);
    for subset in ["v1", "v2", "v3"] {
        assert!(yaml.contains(&format!(
            "headers: [ {{ name: \"x-fail\", string_match: {{ exact: \"{subset}\" }} }} ] }}\n                direct_response: {{ status: 503"
        )));
    }
    assert_eq!(yaml.matches("status: 503").count(), s.upstreams.len());
}

mod bench_configs {
    use super::*;
    use crate::bench::{render_front, render_upstream, Front, Shape, WEIGHTED_CLUSTERS};

    const BENCH_PLUGIN: &str = "{\n  \"clusterHeader\": \"x-upstream-cluster\",\n  \"default\": { \"subset\": \"v1\" }\n}\n";

    fn front(shape: Shape) -> String {
        render_front(&Front {
            shape,
            admin: Addr::new("127.0.0.1", 19901),
            listen: Addr::new("127.0.0.1", 20001),
            v1: Addr::new("127.0.0.1", 30001),
            v2: Addr::new("127.0.0.2", 30002),
        })
    }

    /// The names of the front listener's HTTP filters, in order.
    fn http_filters(yaml: &str) -> Vec<&str> {
        let filters = yaml
            .split("          http_filters:\n")
            .nth(1)
            .expect("http_filters");
        filters
            .lines()
            .take_while(|line| !line.starts_with("  clusters:"))
            .filter_map(|line| line.strip_prefix("          - name: "))
            .collect()
    }

    /// The front listener's routes, each as its lines.
    fn routes(yaml: &str) -> Vec<String> {
        let routes = yaml
            .split("              routes:\n")
            .nth(1)
            .expect("routes");
        let routes = routes
            .split("          http_filters:")
            .next()
            .expect("routes end");
        routes
            .split("              - match:")
            .skip(1)
            .map(|r| format!("- match:{r}"))
            .collect()
    }

    #[test]
    fn every_front_listens_where_told_and_its_clusters_point_outside() {
        let shapes = [
            Shape::NativeRouting,
            Shape::StraightToV1,
            Shape::WasmFloor {
                file: "/b/floor.wasm".into(),
            },
            Shape::SubsetRouter {
                build: Build::Wasm {
                    file: "/b/sr.wasm".into(),
                },
                plugin_json: BENCH_PLUGIN.into(),
            },
            Shape::SubsetRouter {
                build: Build::Native,
                plugin_json: BENCH_PLUGIN.into(),
            },
            Shape::ClusterSpecifier {
                plugin_json: BENCH_PLUGIN.into(),
            },
        ];
        for shape in shapes {
            let yaml = front(shape.clone());
            assert!(yaml.contains("admin:\n  address: { socket_address: { address: \"127.0.0.1\", port_value: 19901 } }"), "{shape:?}");
            assert!(yaml.contains("  - name: front\n    address: { socket_address: { address: \"127.0.0.1\", port_value: 20001 } }"));
            // One listener: the upstream is the benchmark's, never served by this Envoy.
            assert_eq!(
                yaml.matches("\n    address:").count(),
                1,
                "{shape:?}\n{yaml}"
            );
            assert!(!yaml.contains("direct_response"));
            let clusters = yaml.split("\n  clusters:\n").nth(1).expect("clusters");
            assert_eq!(clusters.matches("  - name: ").count(), 2);
            assert!(clusters.contains("cluster_name: \"v1\"\n      endpoints:\n      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: \"127.0.0.1\", port_value: 30001 } } }"));
            assert!(clusters.contains("cluster_name: \"v2\"\n      endpoints:\n      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: \"127.0.0.2\", port_value: 30002 } } }"));
            assert_eq!(yaml.matches("connect_timeout: 1s").count(), 2);
            // Nothing but the listener, the router and the clusters differs between shapes:
            // no access logs, no stats settings.
            assert!(!yaml.contains("access_log") && !yaml.contains("stats_config"));
            assert_eq!(
                *http_filters(&yaml).last().unwrap(),
                "envoy.filters.http.router"
            );
        }
    }

    #[test]
    fn a_routes_debug_to_v2_then_weights_90_10_with_no_filter() {
        let yaml = front(Shape::NativeRouting);
        assert_eq!(http_filters(&yaml), ["envoy.filters.http.router"]);
        let routes = routes(&yaml);
        assert_eq!(routes.len(), 2, "{routes:?}");
        assert_eq!(
            routes[0],
            "- match: { prefix: \"/\", headers: [ { name: \"user-agent\", string_match: { exact: \"debug\" } } ] }\n                route: { cluster: \"v2\" }\n"
        );
        assert!(routes[1].starts_with("- match: { prefix: \"/\" }\n                route:\n                  weighted_clusters:\n"));
        assert!(
            routes[1].contains("- { name: \"v1\", weight: 90 }\n")
                && routes[1].contains("- { name: \"v2\", weight: 10 }\n")
        );
        assert_eq!(
            WEIGHTED_CLUSTERS
                .iter()
                .map(|(_, weight)| weight)
                .sum::<u32>(),
            100
        );
    }

    #[test]
    fn c_goes_straight_to_v1_with_no_filter() {
        let yaml = front(Shape::StraightToV1);
        assert_eq!(http_filters(&yaml), ["envoy.filters.http.router"]);
        assert_eq!(
            routes(&yaml),
            ["- match: { prefix: \"/\" }\n                route: { cluster: \"v1\" }\n"]
        );
    }

    #[test]
    fn w_runs_the_given_floor_module_without_a_configuration() {
        let yaml = front(Shape::WasmFloor {
            file: "/b/floor.wasm".into(),
        });
        assert_eq!(
            http_filters(&yaml),
            ["envoy.filters.http.wasm", "envoy.filters.http.router"]
        );
        assert!(yaml.contains("config:\n                name: wasm_floor\n                vm_config:\n                  vm_id: wasm_floor\n                  runtime: envoy.wasm.runtime.v8\n                  code: { local: { filename: \"/b/floor.wasm\" } }\n"));
        assert!(!yaml.contains("configuration:") && !yaml.contains("subset_router"));
        assert!(yaml.contains("failure_policy: FAIL_CLOSED"));
        let routes = routes(&yaml);
        assert_eq!(routes.len(), 1);
        assert!(
            routes[0].contains("cluster_header: \"x-upstream-cluster\"")
                && routes[0].contains("cluster_not_found_response_code: NOT_FOUND")
        );
    }

    #[test]
    fn b_and_n_run_subset_router_with_the_plugin_config_as_written() {
        let wasm = front(Shape::SubsetRouter {
            build: Build::Wasm {
                file: "/b/sr.wasm".into(),
            },
            plugin_json: BENCH_PLUGIN.into(),
        });
        let native = front(Shape::SubsetRouter {
            build: Build::Native,
            plugin_json: BENCH_PLUGIN.into(),
        });
        assert_eq!(
            http_filters(&wasm),
            ["envoy.filters.http.wasm", "envoy.filters.http.router"]
        );
        assert_eq!(
            http_filters(&native),
            [
                "envoy.filters.http.dynamic_modules",
                "envoy.filters.http.router"
            ]
        );
        assert!(wasm.contains("name: subset_router\n                vm_config:\n                  vm_id: subset_router\n"));
        assert!(wasm.contains("code: { local: { filename: \"/b/sr.wasm\" } }"));
        assert!(wasm.contains("failure_policy: FAIL_CLOSED"));
        assert!(native.contains("dynamic_module_config: { name: subset_router }\n              filter_name: subset_router\n"));
        assert!(!native.contains("wasm"));
        // The JSON text, verbatim, as a literal block.
        assert!(wasm.contains("configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n                  value: |\n                    {\n                      \"clusterHeader\": \"x-upstream-cluster\",\n"));
        assert!(native.contains("filter_config:\n                \"@type\": type.googleapis.com/google.protobuf.StringValue\n                value: |\n                  {\n                    \"clusterHeader\": \"x-upstream-cluster\",\n"));
        // Routed like W: by the cluster header alone.
        assert_eq!(
            routes(&wasm),
            routes(&front(Shape::WasmFloor {
                file: "/b/floor.wasm".into()
            }))
        );
        assert_eq!(routes(&native), routes(&wasm));
    }

    #[test]
    fn n2_is_the_native_module_as_the_routes_cluster_specifier_with_only_the_router() {
        let n2 = front(Shape::ClusterSpecifier {
            plugin_json: BENCH_PLUGIN.into(),
        });
        let n = front(Shape::SubsetRouter {
            build: Build::Native,
            plugin_json: BENCH_PLUGIN.into(),
        });
        assert!(n2.contains("\n# N2: "), "{n2}");
        // No HTTP filter but the router: the route carries the module.
        assert_eq!(http_filters(&n2), ["envoy.filters.http.router"]);
        assert!(
            !n2.contains("envoy.filters.http.dynamic_modules")
                && !n2.contains("filter_config")
                && !n2.contains("wasm")
        );
        // One route, the renderer's own cluster-specifier route: the same text as an example's
        // or a suite's final route in this form (lib.rs specifier_route).
        let routes = routes(&n2);
        assert_eq!(routes.len(), 1, "{routes:?}");
        let mut expected = String::new();
        crate::specifier_route(&mut expected, BENCH_PLUGIN);
        assert_eq!(format!("              {}", routes[0]), expected);
        assert!(!routes[0].contains("cluster_header:"));
        assert!(routes[0].contains("cluster_not_found_response_code: NOT_FOUND\n                  inline_cluster_specifier_plugin:\n"));
        assert!(routes[0].contains(&format!("\"@type\": {SPECIFIER_TYPE_URL}\n")));
        assert!(routes[0].contains("dynamic_module_config: { name: subset_router }\n                        specifier_name: subset_router\n"));
        // B's JSON text, verbatim, as the specifier's StringValue.
        assert!(routes[0].contains("specifier_config:\n                          \"@type\": type.googleapis.com/google.protobuf.StringValue\n                          value: |\n                            {\n                              \"clusterHeader\": \"x-upstream-cluster\",\n"));
        // Everything outside the route config and the filter chain is N's.
        let outside = |yaml: &str| {
            let (head, rest) = yaml.split_once("              routes:\n").unwrap();
            let head = head
                .lines()
                .filter(|l| !l.starts_with("# "))
                .collect::<Vec<_>>()
                .join("\n");
            (
                head,
                rest.split_once("\n  clusters:\n").unwrap().1.to_string(),
            )
        };
        assert_eq!(outside(&n2), outside(&n));
    }

    #[test]
    fn the_upstream_envoy_answers_each_subset_name_on_its_own_address() {
        let yaml = render_upstream(
            &Addr::new("127.0.0.1", 19902),
            &Addr::new("127.0.0.1", 30001),
            &Addr::new("127.0.0.2", 30002),
        );
        assert!(yaml.contains("port_value: 19902"));
        for (subset, host, port) in [("v1", "127.0.0.1", 30001), ("v2", "127.0.0.2", 30002)] {
            let listener = yaml
                .split(&format!("  - name: \"upstream_{subset}\"\n"))
                .nth(1)
                .expect("listener");
            assert!(listener.starts_with(&format!("    address: {{ socket_address: {{ address: \"{host}\", port_value: {port} }} }}\n")));
            // The bare name: the load generators and sanity checks compare bodies exactly.
            let answer = format!(
                "direct_response: {{ status: 200, body: {{ inline_string: \"{subset}\" }} }}"
            );
            assert!(
                listener
                    .split("\n  - name: ")
                    .next()
                    .unwrap()
                    .contains(&answer),
                "{listener}"
            );
        }
        assert!(!yaml.contains("clusters:"));
    }
}

#[test]
fn the_cluster_specifier_form_puts_the_module_in_the_final_route_and_no_filter_in_the_chain() {
    let mut s = spec(Build::Native, Delivery::Inline);
    s.native_form = NativeForm::ClusterSpecifier;
    let text = render(&s);
    assert!(text.contains("inline_cluster_specifier_plugin:"), "{text}");
    assert!(text.contains(SPECIFIER_TYPE_URL), "{text}");
    assert!(text.contains("specifier_name: subset_router"), "{text}");
    assert!(
        !text.contains("envoy.filters.http.dynamic_modules"),
        "no HTTP filter:\n{text}"
    );
    assert!(
        !text.contains("cluster_header:"),
        "no cluster_header route:\n{text}"
    );
    // PLUGIN has a subsetHeader: its header routes would be the client's to choose here.
    assert!(
        !text.contains("string_match: { exact: \"v1\" }"),
        "no header route:\n{text}"
    );
    // The plugin JSON is the specifier's StringValue, after the cluster_header-free final route.
    let specifier = text
        .find("inline_cluster_specifier_plugin:")
        .expect("a specifier");
    let filters = text.find("http_filters:").expect("http_filters");
    assert!(
        specifier < filters,
        "the specifier is in the route config:\n{text}"
    );
    assert!(
        text[specifier..filters].contains("\"debug\""),
        "the plugin JSON:\n{text}"
    );
    let front_end = text[filters..]
        .find("  - name: \"upstream_")
        .map_or(text.len(), |i| filters + i);
    assert_eq!(
        text[filters..front_end]
            .matches("- name: envoy.filters.http.")
            .count(),
        1,
        "only the router in the front listener:\n{text}"
    );
}

#[test]
fn the_cluster_specifier_form_only_applies_to_the_native_build() {
    let mut s = spec(
        Build::Wasm {
            file: "/x.wasm".into(),
        },
        Delivery::Inline,
    );
    s.native_form = NativeForm::ClusterSpecifier;
    assert!(!s.specifier_form());
    assert!(render(&s).contains("envoy.filters.http.wasm"));
}

#[test]
fn the_cluster_specifier_refusals_are_the_modules() {
    let refusals = |json: &str| cluster_specifier_refusals(json).unwrap();
    assert!(refusals(r#"{"default":{"subset":"v1"}}"#).is_empty());
    // PLUGIN has a subsetHeader.
    assert_eq!(
        refusals(PLUGIN),
        ["subsetHeader: the cluster-specifier form writes no request header (use the HTTP filter)"]
    );
    let all = refusals(
        r#"{"clusterHeader":null,"subsetHeader":"x-subset","responseHeader":"x-routed-subset",
            "rules":[{"name":"canary","route":{"split":[{"subset":"v1","weight":90},{"subset":"v2","weight":10}],
              "ramp":{"subset":"v2","toPercent":50,"start":"2026-01-01T00:00:00Z","durationSeconds":60,"steps":0}}}],
            "default":{"subset":"v1"},
            "guards":[{"subset":"v2","maxErrorPercent":5}]}"#,
    );
    assert_eq!(all.len(), 5, "{all:?}");
    for (reason, start) in all.iter().zip([
        "clusterHeader: null",
        "subsetHeader:",
        "responseHeader:",
        "rules[0].route.ramp:",
        "guards[0]:",
    ]) {
        assert!(reason.starts_with(start), "{reason}");
    }
    assert!(
        cluster_specifier_refusals(r#"{"default":{"subset":"v 1"}}"#)
            .unwrap_err()
            .starts_with("default.subset: ")
    );
}

/// examples/native/ runs the HTTP filter from config.json and the cluster specifier from
/// config-route.json: the same decisions, the route form only without the response header.
#[test]
fn the_native_examples_route_config_is_its_filter_config_without_the_response_header() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/native");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let (filter, route) = (read("config.json"), read("config-route.json"));
    assert_eq!(
        PluginRoutes::from_json(&filter).unwrap(),
        PluginRoutes::from_json(&route).unwrap()
    );
    let (filter, route) = (
        subset_router_core::load(filter.as_bytes()).unwrap(),
        subset_router_core::load(route.as_bytes()).unwrap(),
    );
    assert_eq!(filter.summaries(), route.summaries());
    assert_eq!(filter.response_header(), Some("x-routed-subset"));
    assert_eq!(route.response_header(), None);
    assert!(cluster_specifier_refusals(&read("config-route.json"))
        .unwrap()
        .is_empty());
}
