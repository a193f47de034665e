//! A scenario's Envoy config, from the project's renderer (envoy/config).

use super::{Env, FilterBuild, LaunchOptions, Ports, ECDS_DIR};

/// The Envoy config of one scenario, from the project's renderer (envoy/config): the filter
/// under test in front of one upstream listener per cluster of [`CLUSTERS`]; `x-subset`
/// routes for v1..v3 (the Istio way), then `cluster_header: x-upstream-cluster` (404 when the
/// cluster does not exist, `x-front-flags` saying NC); each upstream echoes the routing
/// headers it received (`x-echo-cluster-header`, `x-echo-subset-header`).
pub fn render(env: &Env, ports: &Ports, run_dir: &str, plugin_json: &str, ecds: bool) -> String {
    let opts = LaunchOptions {
        ecds,
        ..LaunchOptions::default()
    };
    render_with(env, ports, run_dir, plugin_json, &opts)
}

/// [`render`] with a launch's options: ECDS delivery, each upstream's behaviour
/// ([`LaunchOptions::upstreams`]; the others answer 200 at once) and the native build's form.
/// The cluster-specifier form ([`LaunchOptions::native_form`]; [`LaunchOptions::check`] says
/// when it applies) has one front route, whose cluster the module names: no `x-subset` routes
/// before it (the form writes no `subsetHeader`, so they could only let a client's `x-subset`
/// pass the module by), no `cluster_header` route, no HTTP filter but the router.
pub fn render_with(
    env: &Env,
    ports: &Ports,
    run_dir: &str,
    plugin_json: &str,
    opts: &LaunchOptions,
) -> String {
    let ecds = opts.ecds;
    let specifier = opts.specifier_form() && matches!(env.build, FilterBuild::Native(_));
    let behaviour = |cluster: &str| opts.upstreams.iter().find(|u| u.cluster == cluster);
    // `color-red` answers `red`, `a-v2` answers `v2`: the subset its template was filled with.
    let subset_of = |cluster: &str| {
        ["color-", "a-", "b-"]
            .iter()
            .find_map(|p| cluster.strip_prefix(p))
            .unwrap_or(cluster)
            .to_string()
    };
    let spec = envoy_config::Spec {
        comment: vec![
            "subset-router integration suite: one scenario's Envoy (rendered by envoy/config)."
                .into(),
        ],
        admin: envoy_config::Addr::new("127.0.0.1", ports.admin),
        front: envoy_config::Addr::new("0.0.0.0", ports.front),
        build: env.build.render_build(run_dir),
        native_form: opts.native_form,
        plugin_json: plugin_json.to_owned(),
        delivery: if ecds {
            envoy_config::Delivery::Ecds {
                dir: format!("{run_dir}/{ECDS_DIR}"),
            }
        } else {
            envoy_config::Delivery::Inline
        },
        header_routes: (!specifier).then(|| {
            (
                "x-subset".into(),
                ["v1", "v2", "v3"]
                    .iter()
                    .map(|s| (s.to_string(), s.to_string()))
                    .collect(),
            )
        }),
        cluster_header: Some("x-upstream-cluster".into()),
        fallback_cluster: None,
        upstreams: ports
            .upstream
            .iter()
            .map(|(cluster, port)| envoy_config::Upstream {
                cluster: cluster.to_string(),
                subset: subset_of(cluster),
                port: *port,
                status: behaviour(cluster).and_then(|u| u.status),
                delay_ms: behaviour(cluster).and_then(|u| u.delay_ms),
            })
            .collect(),
        echo_headers: vec![
            ("x-echo-cluster-header".into(), "x-upstream-cluster".into()),
            ("x-echo-subset-header".into(), "x-subset".into()),
        ],
        front_flags: true,
        hardened: env.hardened,
        stats_tags: true,
        filter_routes: opts.filter_routes.clone(),
        fail_header: opts.fail_header.clone(),
        more_fronts: opts
            .more_fronts
            .iter()
            .zip(&ports.more_fronts)
            .enumerate()
            .map(|(i, (plugin_json, port))| envoy_config::Front {
                name: format!("front-{}", i + 2),
                address: envoy_config::Addr::new("0.0.0.0", *port),
                plugin_json: plugin_json.clone(),
            })
            .collect(),
        external_clusters: opts
            .external_clusters
            .iter()
            .map(|(name, port)| envoy_config::ExternalCluster {
                name: name.clone(),
                address: envoy_config::Addr::new("127.0.0.1", *port),
            })
            .collect(),
    };
    envoy_config::render(&spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::ports::allocate_ports;
    use crate::envoy::{Runtime, UpstreamBehaviour, CLUSTERS};

    #[test]
    fn renders_the_filter_under_test_for_each_build() {
        let ports = allocate_ports().unwrap();
        for build in [
            FilterBuild::Wasm("/x/subset_router.wasm".into()),
            FilterBuild::Native("/x/libsubset_router.so".into()),
        ] {
            let env = Env {
                runtime: Runtime::Native,
                build: build.clone(),
                envoy_bin: None,
                hardened: false,
                work_dir: "/tmp".into(),
            };
            let out = render(
                &env,
                &ports,
                "/run",
                r#"{"default":{"subset":"v1"}}"#,
                false,
            );
            assert!(out.contains(r#"value: "{\"default\":{\"subset\":\"v1\"}}""#));
            assert_eq!(
                out.contains("/run/subset_router.wasm"),
                build.name() == "wasm"
            );
            assert_eq!(
                out.contains("dynamic_module_config"),
                build.name() == "native"
            );
            assert_eq!(out.matches("direct_response").count(), CLUSTERS.len());
        }
    }

    #[test]
    fn a_launch_chooses_each_upstreams_behaviour() {
        let ports = allocate_ports().unwrap();
        let env = Env {
            runtime: Runtime::Native,
            build: FilterBuild::Native("/x/libsubset_router.so".into()),
            envoy_bin: None,
            hardened: false,
            work_dir: "/tmp".into(),
        };
        let opts = LaunchOptions {
            upstreams: vec![
                UpstreamBehaviour::failing("v2", 503),
                UpstreamBehaviour::slow("v3", 300),
            ],
            ..LaunchOptions::default()
        };
        let out = render_with(
            &env,
            &ports,
            "/run",
            r#"{"default":{"subset":"v1"}}"#,
            &opts,
        );
        assert_eq!(out.matches("direct_response: { status: 503,").count(), 1);
        assert!(out.contains("status: 503, body: { inline_string: \"v2\\n\" }"));
        assert_eq!(out.matches("fixed_delay: 0.300s").count(), 1);
        assert_eq!(
            out.matches("direct_response: { status: 200,").count(),
            CLUSTERS.len() - 1
        );
    }

    #[test]
    fn a_launch_adds_listeners_with_their_own_configuration_and_outside_clusters() {
        let ports = allocate_ports().unwrap();
        let env = env_of(FilterBuild::Wasm("/x/subset_router.wasm".into()));
        let (a, b) = (
            r#"{"clusterTemplate":"a-{subset}","default":{"subset":"v1"}}"#,
            r#"{"clusterTemplate":"b-{subset}","default":{"subset":"v1"}}"#,
        );
        let opts = LaunchOptions {
            more_fronts: vec![b.into()],
            external_clusters: vec![("prometheus".into(), 9090)],
            fail_header: Some("x-fail".into()),
            ..LaunchOptions::default()
        };
        let out = render_with(&env, &ports, "/run", a, &opts);
        assert!(out.contains(&format!(
            "  - name: front-2\n    address: {{ socket_address: {{ address: \"0.0.0.0\", port_value: {} }} }}",
            ports.more_fronts[0]
        )));
        assert_eq!(out.matches("envoy.filters.http.wasm").count(), 2);
        assert_eq!(out.matches("a-{subset}").count(), 1);
        assert_eq!(out.matches("b-{subset}").count(), 1);
        assert!(out.contains("socket_address: { address: \"127.0.0.1\", port_value: 9090 }"));
        // a-v2 answers its subset, v2, and fails on `x-fail: v2` like v2 itself.
        assert!(out.contains("- header: { key: x-served-cluster, value: \"a-v2\" }"));
        assert_eq!(out.matches("string_match: { exact: \"v2\" } } ] }\n                direct_response: { status: 503").count(), 3);
        // Too many listeners, or listeners for the cluster specifier, are refused.
        let too_many = LaunchOptions {
            more_fronts: vec![b.into(); crate::envoy::MAX_MORE_FRONTS + 1],
            ..LaunchOptions::default()
        };
        assert!(too_many.check(&env.build).is_err());
        let specifier = LaunchOptions {
            more_fronts: vec![b.into()],
            ..LaunchOptions::cluster_specifier()
        };
        assert!(specifier
            .check(&FilterBuild::Native("/x/libsubset_router.so".into()))
            .is_err());
    }

    fn env_of(build: FilterBuild) -> Env {
        Env {
            runtime: Runtime::Native,
            build,
            envoy_bin: None,
            hardened: false,
            work_dir: "/tmp".into(),
        }
    }

    #[test]
    fn the_specifier_form_is_the_final_route_and_no_http_filter() {
        let ports = allocate_ports().unwrap();
        let env = env_of(FilterBuild::Native("/x/libsubset_router.so".into()));
        let plugin = r#"{"default":{"subset":"v1"}}"#;
        let filter = render_with(&env, &ports, "/run", plugin, &LaunchOptions::default());
        let specifier = render_with(
            &env,
            &ports,
            "/run",
            plugin,
            &LaunchOptions::cluster_specifier(),
        );
        assert!(filter.contains("envoy.filters.http.dynamic_modules"));
        assert!(filter.contains("cluster_header: \"x-upstream-cluster\""));
        assert!(filter.contains("name: \"x-subset\""));
        assert!(!filter.contains("inline_cluster_specifier_plugin"));
        assert_eq!(
            specifier.matches("inline_cluster_specifier_plugin").count(),
            1
        );
        assert!(specifier.contains(envoy_config::SPECIFIER_TYPE_URL));
        assert!(specifier.contains(r#"value: "{\"default\":{\"subset\":\"v1\"}}""#));
        assert!(!specifier.contains("envoy.filters.http.dynamic_modules"));
        assert!(!specifier.contains("cluster_header:"));
        assert!(!specifier.contains("name: \"x-subset\""));
        // The upstreams are the same.
        assert_eq!(specifier.matches("direct_response").count(), CLUSTERS.len());
    }

    #[test]
    fn the_specifier_form_refuses_what_it_cannot_render() {
        let native = FilterBuild::Native("/x/libsubset_router.so".into());
        let wasm = FilterBuild::Wasm("/x/subset_router.wasm".into());
        let spec = LaunchOptions::cluster_specifier();
        assert!(spec.check(&native).is_ok());
        assert!(LaunchOptions::default().check(&wasm).is_ok());
        let e = spec.check(&wasm).unwrap_err();
        assert!(e.contains("FILTER=native"), "{e}");
        let ecds = LaunchOptions {
            ecds: true,
            ..LaunchOptions::cluster_specifier()
        };
        assert!(ecds.check(&native).unwrap_err().contains("ECDS"));
        let per_route = LaunchOptions {
            filter_routes: Some(vec!["v1".into()]),
            ..LaunchOptions::cluster_specifier()
        };
        assert!(per_route
            .check(&native)
            .unwrap_err()
            .contains("filter_routes"));
        // The HTTP filter form takes both, as before.
        let both = LaunchOptions {
            ecds: true,
            filter_routes: Some(vec!["v1".into()]),
            ..LaunchOptions::default()
        };
        assert!(both.check(&native).is_ok());
    }
}
