//! `validate`, `simulate` and `schedule` read the files operators keep configurations in (Envoy
//! configs, the cluster-specifier route, Istio WasmPlugins, EnvoyExtensionPolicies, directories of
//! multi-document Kubernetes YAML), run as the built binary on the shipped examples.

use std::path::{Path, PathBuf};

mod common;
use common::{example_path as example, example_text, run, stderr, stdout};

/// An empty directory of the test's own.
fn work_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("files")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a test directory");
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.to_string_lossy().into_owned()
}

#[test]
fn validate_reads_every_kind_of_file_and_names_each_configurations_place() {
    let files = [
        "istio/wasmplugin.yaml",
        "native/envoy-route.yaml",
        "native/envoy.yaml",
        "sticky-canary/envoy.yaml",
        "envoy-gateway/policy-oci.yaml",
        "envoy-gateway/variants/dynamic-module/policy.yaml",
        "sticky-canary/config.json",
    ]
    .map(example);
    let args: Vec<&str> = ["validate"]
        .into_iter()
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        format!(
            "{}: WasmPlugin default/subset-router: spec.pluginConfig: ok (3 rule(s) + default; subsets: v1, v2, v3)\n",
            files[0]
        ),
        format!(
            "{}: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.\
             virtual_hosts[0].routes[0].route.inline_cluster_specifier_plugin.extension.typed_config.\
             specifier_config.value: ok (2 rule(s) + default; subsets: v1, v2)\n",
            files[1]
        ),
        format!("{}: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.filter_config.value: ok", files[2]),
        format!("{}: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.config.configuration.value: ok", files[3]),
        format!("{}: EnvoyExtensionPolicy default/subset-router: spec.wasm[0].config: ok", files[4]),
        format!("{}: EnvoyExtensionPolicy default/subset-router: spec.dynamicModule[0].config: ok", files[5]),
        format!("{}: ok (2 rule(s) + default", files[6]),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in\n{text}");
    }
    assert_eq!(text.lines().count(), files.len(), "{text}");
}

#[test]
fn an_error_in_a_wasmplugin_names_the_file_the_object_and_the_field() {
    let dir = work_dir("wasmplugin-error");
    let wasmplugin = example_text("istio/wasmplugin.yaml");
    assert!(wasmplugin.contains("weight: 90"));
    let path = write(
        &dir,
        "wasmplugin.yaml",
        &wasmplugin.replacen("weight: 90", "weight: -90", 1),
    );
    let expected = format!(
        "{path}: WasmPlugin default/subset-router: spec.pluginConfig: rules[2].route.split[0].weight: \
         -90 is negative; weights are 0 to 1000000\n"
    );
    for args in [
        &["validate", &path][..],
        &["simulate", &path],
        &["schedule", &path],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), expected, "{args:?}");
    }
}

/// `validate k8s/*.yaml`: files of several documents, some holding the filter's configuration,
/// some (DestinationRules, Gateways, VirtualServices) not.
#[test]
fn a_directory_of_kubernetes_yaml_validates_as_a_whole() {
    let dir = work_dir("k8s");
    let mut stream = String::new();
    for name in [
        "istio/destinationrule.yaml",
        "istio/wasmplugin.yaml",
        "istio/virtualservice.yaml",
        "istio/progressive/wasmplugin.yaml",
    ] {
        stream.push_str("---\n");
        stream.push_str(&example_text(name));
    }
    let mesh = write(&dir, "mesh.yaml", &stream);
    let gateway = write(
        &dir,
        "gateway.yaml",
        &example_text("istio/gateway/gateway.yaml"),
    );
    let policy = write(
        &dir,
        "policy.yaml",
        &example_text("envoy-gateway/policy-oci.yaml"),
    );
    let out = run(&["validate", &gateway, &mesh, &policy]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "{gateway}: no subset-router configuration; skipped\n\
             {mesh}: document 2: WasmPlugin default/subset-router: spec.pluginConfig: ok (3 rule(s) + default; subsets: v1, v2, v3)\n\
             {mesh}: document 4: WasmPlugin default/subset-router: spec.pluginConfig: ok (2 rule(s) + default; subsets: v1, v2)\n\
             {policy}: EnvoyExtensionPolicy default/subset-router: spec.wasm[0].config: ok (2 rule(s) + default; subsets: v1, v2)\n"
        )
    );

    // simulate and schedule need to be told which of the two different configurations.
    for command in ["simulate", "schedule"] {
        let out = run(&[command, &mesh]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "{mesh} holds 2 different subset-router configurations; choose one with --config-index N:\n  \
                 1: {mesh}: document 2: WasmPlugin default/subset-router: spec.pluginConfig\n  \
                 2: {mesh}: document 4: WasmPlugin default/subset-router: spec.pluginConfig\n"
            )),
            "{command}: {}",
            stderr(&out)
        );
        let out = run(&[command, &mesh, "--config-index", "3"]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
    }
    let out = run(&["schedule", &mesh, "--config-index", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "configuration: {mesh}: document 4: WasmPlugin default/subset-router: spec.pluginConfig\n\
             rule canary: v2 from 5.0000% to 50.0000% between 2026-12-01T10:00:00Z"
        )),
        "{text}"
    );
    let out = run(&[
        "simulate",
        &mesh,
        "--config-index",
        "1",
        "--requests",
        "100",
        "-H",
        "user-agent: debug",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "configuration: {mesh}: document 2:"
                .replace("{mesh}", &mesh)
                .as_str()
        ),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_file_holding_no_configuration_says_what_was_looked_for() {
    let file = example("istio/destinationrule.yaml");
    for args in [
        &["validate", &file][..],
        &["simulate", &file],
        &["schedule", &file],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!(
                "{file}: no subset-router configuration found (looked for a plugin configuration, \
                 Envoy's Wasm filter (config.configuration), dynamic module filter (filter_config) \
                 or dynamic module cluster specifier (specifier_config), an Istio WasmPlugin's \
                 spec.pluginConfig, an EnvoyExtensionPolicy's spec.wasm[].config or \
                 spec.dynamicModule[].config)\n"
            ),
            "{args:?}"
        );
    }
    // A JSON plugin configuration with a mistake is still one: the filter's reader says what.
    let dir = work_dir("no-default");
    let path = write(&dir, "config.json", r#"{"rules": []}"#);
    let out = run(&["validate", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("{path}: default: is required\n"));
}

/// The cluster-specifier form of the native build (`DynamicModuleClusterSpecifier`).
#[test]
fn the_cluster_specifier_route_simulates_and_schedules() {
    let file = example("native/envoy-route.yaml");
    let out = run(&[
        "simulate",
        &file,
        "--requests",
        "200",
        "--sticky-keys",
        "50",
        "--seed",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("specifier_config.value\n200 requests"),
        "{text}"
    );
    assert!(!text.contains("sticky key missing"), "{text}");
    let out = run(&["schedule", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).ends_with("specifier_config.value: no ramps\n"));
}

/// The same configuration twice (a Wasm and a dynamic module filter, or a stream holding one
/// WasmPlugin twice) is not ambiguous.
#[test]
fn equal_configurations_need_no_index() {
    let dir = work_dir("equal");
    let wasmplugin = example_text("istio/progressive/wasmplugin.yaml");
    let path = write(
        &dir,
        "twice.yaml",
        &format!("{wasmplugin}---\n{wasmplugin}"),
    );
    let out = run(&["schedule", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("document 1: WasmPlugin"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_json_file_that_is_no_envoy_or_kubernetes_document_is_read_as_a_plugin_configuration() {
    let dir = work_dir("bare_json");
    for (text, error) in [
        ("42", "configuration: expected an object, found 42"),
        ("[]", "configuration: expected an object, found a list"),
        ("{}", "default: is required"),
        (
            "not json",
            "configuration: invalid JSON: expected ident at line 1 column 2",
        ),
    ] {
        let file = dir.join("plugin.json");
        std::fs::write(&file, text).unwrap();
        let out = run(&["validate", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(stderr(&out).contains(error), "{text}: {}", stderr(&out));
    }
}
