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
        more_fronts: Vec::new(),
        external_clusters: Vec::new(),
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

/// Every stat of every name a configuration can have, with and without a top-level `name`:
/// the named ones print the unnamed ones' families plus an `instance` tag, so one Prometheus
/// family holds every configuration of a fleet.
#[test]
fn stats_tags_give_named_configurations_the_unnamed_families_plus_an_instance_tag() {
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
        let guard_stats = [
            "tripped",
            "diverted",
            "undivertable",
            "open",
            "requests",
            "errors",
            "slow",
            "baseline_requests",
            "baseline_errors",
            "baseline_slow",
            "tripped_by_fleet",
            "fleet_query_failed",
        ];
        // (stat after the configuration's prefix, name after extraction, tags but instance)
        let mut cases = vec![
            (
                "rule.canary.subset.v2".to_string(),
                "rule.subset".to_string(),
                vec![t("rule", "canary"), t("subset", "v2")],
            ),
            (
                "rule.canary.subset.v2.1-rc.3".into(),
                "rule.subset".into(),
                vec![t("rule", "canary"), t("subset", "v2.1-rc.3")],
            ),
            (
                "rule.guard.subset.open".into(),
                "rule.subset".into(),
                vec![t("rule", "guard"), t("subset", "open")],
            ),
            (
                "rule.rule.subset.guard.v2".into(),
                "rule.subset".into(),
                vec![t("rule", "rule"), t("subset", "guard.v2")],
            ),
            (
                "rule.canary.ramp_ppm".into(),
                "rule.ramp_ppm".into(),
                vec![t("rule", "canary")],
            ),
            (
                "spoofed_header_removed".into(),
                "spoofed_header_removed".into(),
                vec![],
            ),
            (
                "sticky_key_missing".into(),
                "sticky_key_missing".into(),
                vec![],
            ),
            ("host_call_failed".into(), "host_call_failed".into(), vec![]),
        ];
        for what in guard_stats {
            for subset in ["v2", "v2.1-rc.3", "rule.x"] {
                cases.push((
                    format!("guard.{subset}.{what}"),
                    format!("guard.{what}"),
                    vec![t("subset", subset)],
                ));
            }
        }
        for (stat, name, tags) in &cases {
            let want_name = format!("{p}subset_router.{name}");
            // Unnamed: today's names, no instance tag.
            let unnamed = format!("{p}subset_router.{stat}");
            let mut want = tags.clone();
            want.sort();
            assert_eq!(
                extract_tags(&yaml, &unnamed),
                (want_name.clone(), want),
                "{unnamed} ({})",
                build.name()
            );
            // Named: the same family and tags, plus instance. Names that look like a stat's
            // own segments included (every character class, the longest name).
            for instance in [
                "checkout",
                "a",
                "ab",
                "rul",
                "rules",
                "ruler",
                "guar",
                "guards",
                "subset",
                "spoofed_header_removed",
                "host_call_failed",
                "ramp_ppm",
                "open",
                "default",
                "0-9_z",
                &"x".repeat(64),
            ] {
                let named = format!("{p}subset_router.{instance}.{stat}");
                let mut want = tags.clone();
                want.push(t("instance", instance));
                want.sort();
                assert_eq!(
                    extract_tags(&yaml, &named),
                    (want_name.clone(), want),
                    "{named} ({})",
                    build.name()
                );
            }
        }
        // The ramp gauge, whose name ends like a decision would: `rule.<rule>.ramp_ppm`.
        assert_eq!(
            extract_tags(
                &yaml,
                &format!("{p}subset_router.shop.rule.ramp_ppm.subset.v1")
            ),
            (
                format!("{p}subset_router.rule.subset"),
                vec![
                    t("instance", "shop"),
                    t("rule", "ramp_ppm"),
                    t("subset", "v1")
                ]
            )
        );
        // Names are at most 64 characters: a 65-character second segment is no instance.
        let long = format!("{p}subset_router.{}.host_call_failed", "x".repeat(65));
        assert_eq!(extract_tags(&yaml, &long), (long.clone(), vec![]));
    }
}

/// The instance-name regex is exactly `[a-z0-9_-]{1,64}` minus `rule` and `guard`: checked
/// against every name of up to 3 characters over a sample alphabet, every one-letter change
/// of the excluded words, and lengths around them.
#[test]
fn the_instance_name_regex_accepts_every_name_but_rule_and_guard() {
    let re = regex::Regex::new(&format!("^{}$", instance_name_regex())).unwrap();
    let alphabet: Vec<char> = "abdeglruz09_-".chars().collect();
    let mut names: Vec<String> = Vec::new();
    for len in 1..=3 {
        let mut idx = vec![0usize; len];
        loop {
            names.push(idx.iter().map(|&i| alphabet[i]).collect());
            let mut k = len;
            while k > 0 {
                k -= 1;
                idx[k] += 1;
                if idx[k] < alphabet.len() {
                    break;
                }
                idx[k] = 0;
            }
            if idx.iter().all(|&i| i == 0) {
                break;
            }
        }
    }
    for word in ["rule", "guard"] {
        for i in 0..word.len() {
            for c in "abcdefghijklmnopqrstuvwxyz0123456789_-".chars() {
                let mut w: Vec<char> = word.chars().collect();
                w[i] = c;
                names.push(w.into_iter().collect());
            }
        }
        names.push(format!("{word}s"));
        names.push(word[1..].to_string());
    }
    for len in [4, 5, 6, 63, 64, 65] {
        names.push("q".repeat(len));
    }
    for name in &names {
        let valid = name.len() <= 64 && name != "rule" && name != "guard";
        assert_eq!(re.is_match(name), valid, "{name:?}");
    }
    for not_a_name in ["", "Rule", "a.b", "a b", "é"] {
        assert!(!re.is_match(not_a_name), "{not_a_name:?}");
    }
}

#[test]
fn more_fronts_each_run_the_filter_with_their_own_configuration() {
    for build in [
        Build::Wasm {
            file: "/f.wasm".into(),
        },
        Build::Native,
    ] {
        let mut s = spec(build.clone(), Delivery::Inline);
        let (a, b) = (
            r#"{"name":"a","clusterTemplate":"a-{subset}","default":{"subset":"v1"}}"#,
            r#"{"name":"b","clusterTemplate":"b-{subset}","default":{"subset":"v1"}}"#,
        );
        s.more_fronts = vec![
            Front {
                name: "front-a".into(),
                address: Addr::new("0.0.0.0", 10001),
                plugin_json: a.into(),
            },
            Front {
                name: "front-b".into(),
                address: Addr::new("0.0.0.0", 10002),
                plugin_json: b.into(),
            },
        ];
        let yaml = render(&s);
        let listener = |name: &str| {
            let from = yaml.find(&format!("  - name: {name}\n")).unwrap();
            let len = yaml[from + 1..].find("\n  - name: ").unwrap();
            yaml[from..from + 1 + len].to_string()
        };
        let (front, fa, fb) = (listener("front"), listener("front-a"), listener("front-b"));
        assert!(fa.contains("port_value: 10001") && fb.contains("port_value: 10002"));
        assert!(fa.contains("stat_prefix: \"front-a\"") && fa.contains("name: front-a\n"));
        // Each with its own configuration, the same filter and routes as the front listener.
        assert!(fa.contains(&yaml::q(a)) && !fa.contains(&yaml::q(b)));
        assert!(fb.contains(&yaml::q(b)) && !fb.contains(&yaml::q(a)));
        assert!(!front.contains(&yaml::q(a)) && !front.contains(&yaml::q(b)));
        let routes =
            |l: &str| l[l.find("routes:").unwrap()..l.find("http_filters:").unwrap()].to_string();
        assert_eq!(routes(&fa), routes(&front));
        assert_eq!(routes(&fb), routes(&front));
        let filter = filter_name(&build);
        for l in [&front, &fa, &fb] {
            assert_eq!(l.matches(filter).count(), 1, "{l}");
        }
        // In the Wasm build the three share the module (and so one VM per worker).
        if let Build::Wasm { .. } = build {
            assert_eq!(yaml.matches("vm_id: subset_router").count(), 3);
        }
        // ECDS delivers only the first listener's filter; the others stay inline.
        s.delivery = Delivery::Ecds { dir: "/x".into() };
        let yaml = render(&s);
        assert_eq!(yaml.matches("config_discovery:").count(), 1);
        assert!(yaml.contains(&yaml::q(a)) && yaml.contains(&yaml::q(b)));
    }
}

#[test]
fn an_external_cluster_points_outside_the_envoy() {
    let mut s = spec(Build::Native, Delivery::Inline);
    let without = render(&s);
    s.external_clusters = vec![ExternalCluster {
        name: "prometheus".into(),
        address: Addr::new("127.0.0.1", 9090),
    }];
    let yaml = render(&s);
    assert!(yaml.contains(
        "  - name: \"prometheus\"\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: \"prometheus\"\n      endpoints:\n      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: \"127.0.0.1\", port_value: 9090 } } }\n"
    ), "{yaml}");
    // Nothing else changes: no listener serves it.
    assert_eq!(yaml.replace(&without, "").matches("- name:").count(), 1);
    assert!(yaml.starts_with(&without));
}

#[test]
fn an_external_cluster_at_a_host_name_is_resolved_by_dns() {
    let mut s = spec(Build::Native, Delivery::Inline);
    s.external_clusters = vec![ExternalCluster {
        name: "prometheus".into(),
        address: Addr::new("prometheus", 9090),
    }];
    let yaml = render(&s);
    assert!(yaml.contains(
        "  - name: \"prometheus\"\n    type: STRICT_DNS\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: \"prometheus\"\n      endpoints:\n      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: \"prometheus\", port_value: 9090 } } }\n    dns_lookup_family: V4_PREFERRED\n"
    ), "{yaml}");
}

#[test]
fn the_fleet_clusters_are_the_guards_each_once() {
    let guard = |subset: &str, cluster: &str| {
        format!(
            r#"{{"subset":"{subset}","maxErrorPercent":5,"minRequests":10,"windowSeconds":30,
                "fleet":{{"cluster":"{cluster}","selector":""}}}}"#
        )
    };
    let json = format!(
        r#"{{"rules":[{{"name":"c","match":{{"pathPrefix":"/"}},"route":{{"split":[
            {{"subset":"v1","weight":80}},{{"subset":"v2","weight":10}},{{"subset":"v3","weight":10}}]}}}}],
           "guards":[{},{},{}],"default":{{"subset":"v1"}}}}"#,
        guard("v2", "thanos"),
        guard("v3", "prometheus"),
        r#"{"subset":"v1","maxErrorPercent":5,"minRequests":10,"windowSeconds":30}"#
    );
    let routes = PluginRoutes::from_json(&json).unwrap();
    assert_eq!(routes.fleet_clusters, ["thanos", "prometheus"]);
    assert!(PluginRoutes::from_json(PLUGIN)
        .unwrap()
        .fleet_clusters
        .is_empty());
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
            clusters: Vec::new(),
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
