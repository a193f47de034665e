//! `subset-router set-weights`, run as the built binary on copies of the shipped examples: only
//! the weight numbers change, the result is validated before anything is written, the file is
//! replaced by a rename, and the sticky keys it reports as moving are the ones that move.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use subset_router_core::selection::StickyHasher;

mod common;
use common::{example_text as example, run, stderr, stdout};

/// `contents` in a directory of its own (tests run in parallel; the temporary file of the
/// rename is created beside the file).
fn work_file(test: &str, file_name: &str, contents: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("set-weights")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a test directory");
    let path = dir.join(file_name);
    std::fs::write(&path, contents).expect("write the test file");
    path
}

fn set_weights(path: &Path, rule: &str, weights: &[&str]) -> Output {
    let path = path.to_string_lossy();
    let mut args = vec!["set-weights", &path, "--rule", rule];
    args.extend_from_slice(weights);
    run(&args)
}

/// Asserts `after` is `before` with exactly `lines` lines changed, each by `replacements`
/// (applied in order) and by nothing else.
fn assert_only_weights_changed(
    before: &str,
    after: &str,
    lines: usize,
    replacements: &[(&str, &str)],
) {
    let old: Vec<&str> = before.split_inclusive('\n').collect();
    let new: Vec<&str> = after.split_inclusive('\n').collect();
    assert_eq!(
        old.len(),
        new.len(),
        "the number of lines changed:\n{after}"
    );
    let changed: Vec<(usize, &str, &str)> = old
        .iter()
        .zip(&new)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i + 1, *a, *b))
        .collect();
    assert_eq!(
        changed.len(),
        lines,
        "expected {lines} changed line(s), got {changed:#?}"
    );
    for (number, a, b) in changed {
        let expected = replacements
            .iter()
            .fold(a.to_owned(), |line, (from, to)| line.replace(from, to));
        assert_ne!(
            expected, a,
            "line {number}: no replacement applies to {a:?}"
        );
        assert_eq!(b, expected, "line {number} changed more than its weights");
    }
}

/// The change succeeded, was written, and the file is still a valid configuration (checked
/// again by the file kind's own reader below where the CLI has one).
fn assert_written(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(out), stderr(out));
    assert!(stdout(out).ends_with(": written\n"), "{}", stdout(out));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read the edited file")
}

#[test]
fn plugin_json_changes_only_the_weights() {
    let before = example("sticky-canary/config.json");
    let path = work_file("plugin-json", "config.json", &before);
    let out = set_weights(&path, "canary", &["v1=80", "v2=20"]);
    assert_written(&out);
    let after = read(&path);
    assert_only_weights_changed(
        &before,
        &after,
        1,
        &[
            ("\"weight\": 90", "\"weight\": 80"),
            ("\"weight\": 10", "\"weight\": 20"),
        ],
    );
    let text = stdout(&out);
    assert!(
        text.contains("plugin configuration: rule canary (rules[1].route.split)"),
        "{text}"
    );
    assert!(
        text.contains("  old: v1=90 v2=10 (90.0% / 10.0%)\n"),
        "{text}"
    );
    assert!(
        text.contains("  new: v1=80 v2=20 (80.0% / 20.0%)\n"),
        "{text}"
    );
    let valid = run(&["validate", &path.to_string_lossy()]);
    assert_eq!(valid.status.code(), Some(0), "{}", stderr(&valid));
}

#[test]
fn envoy_yaml_with_the_wasm_filter_changes_only_the_weights() {
    let before = example("sticky-canary/envoy.yaml");
    let path = work_file("envoy-wasm", "envoy.yaml", &before);
    let out = set_weights(&path, "canary", &["v1=80", "v2=20"]);
    assert_written(&out);
    assert_only_weights_changed(
        &before,
        &read(&path),
        1,
        &[
            ("\"weight\": 90", "\"weight\": 80"),
            ("\"weight\": 10", "\"weight\": 20"),
        ],
    );
    assert!(
        stdout(&out).contains("typed_config.config.configuration.value: rule canary"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn envoy_yaml_with_the_dynamic_module_changes_only_the_weights() {
    let before = example("native/envoy.yaml");
    let path = work_file("envoy-native", "envoy.yaml", &before);
    let out = set_weights(&path, "canary", &["v2=35"]);
    assert_written(&out);
    assert_only_weights_changed(
        &before,
        &read(&path),
        1,
        &[("\"weight\": 10", "\"weight\": 35")],
    );
    let text = stdout(&out);
    assert!(
        text.contains("typed_config.filter_config.value: rule canary"),
        "{text}"
    );
    // v1 was not named: it keeps its weight.
    assert!(
        text.contains("  new: v1=90 v2=35 (72.0% / 28.0%)\n"),
        "{text}"
    );
}

#[test]
fn istio_wasmplugin_changes_only_the_weights() {
    let before = example("istio/wasmplugin.yaml");
    let path = work_file("istio", "wasmplugin.yaml", &before);
    let out = set_weights(&path, "canary", &["v1=80", "v3=20"]);
    assert_written(&out);
    assert_only_weights_changed(
        &before,
        &read(&path),
        2,
        &[("weight: 90", "weight: 80"), ("weight: 10", "weight: 20")],
    );
    assert!(
        stdout(&out).contains("WasmPlugin default/subset-router: spec.pluginConfig: rule canary"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn envoy_extension_policies_change_only_the_weights() {
    for (i, (name, slot)) in [
        ("envoy-gateway/policy-oci.yaml", "spec.wasm[0].config"),
        (
            "envoy-gateway/variants/dynamic-module/policy.yaml",
            "spec.dynamicModule[0].config",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let before = example(name);
        let path = work_file(&format!("eep-{i}"), "policy.yaml", &before);
        let out = set_weights(&path, "canary", &["v1=80", "v2=20"]);
        assert_written(&out);
        assert_only_weights_changed(
            &before,
            &read(&path),
            2,
            &[("weight: 90", "weight: 80"), ("weight: 10", "weight: 20")],
        );
        assert!(
            stdout(&out).contains(&format!(
                "EnvoyExtensionPolicy default/subset-router: {slot}: rule canary"
            )),
            "{name}: {}",
            stdout(&out)
        );
    }
}

/// The plugin configuration as one JSON string: an ECDS resource file (YAML, double-quoted, as
/// the live-reload test writes it) and an Envoy config in JSON.
#[test]
fn quoted_json_strings_in_ecds_and_json_envoy_configs() {
    let config = r#"{"rules":[{"name":"canary","route":{"split":[{"subset":"v1","weight":90},{"subset":"v2","weight":10}],"stickyBy":{"header":"x-user-id"}}}],"default":{"subset":"v1"}}"#;
    let quoted = serde_json::to_string(config).unwrap();
    let ecds = format!(
        "# ECDS resource (a DiscoveryResponse), replaced by rename while Envoy runs.\n\
         resources:\n\
         - \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  \
           name: subset_router\n  \
           typed_config:\n    \
             \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n    \
             config:\n      \
               name: subset_router\n      \
               configuration:\n        \
                 \"@type\": type.googleapis.com/google.protobuf.StringValue\n        \
                 value: {quoted}\n      \
               failure_policy: FAIL_CLOSED\n"
    );
    let json = format!(
        "{{\n  \"name\": \"envoy.filters.http.dynamic_modules\",\n  \"typed_config\": {{\n    \
         \"@type\": \"type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter\",\n    \
         \"dynamic_module_config\": {{\"name\": \"subset_router\"}},\n    \"filter_name\": \"subset_router\",\n    \
         \"filter_config\": {{\"@type\": \"type.googleapis.com/google.protobuf.StringValue\", \"value\": {quoted}}}\n  }}\n}}\n"
    );
    for (file, before) in [("ecds.yaml", ecds), ("filter.json", json)] {
        let path = work_file(&format!("quoted-{file}"), file, &before);
        let out = set_weights(&path, "canary", &["v1=50", "v2=50"]);
        assert_written(&out);
        assert_only_weights_changed(
            &before,
            &read(&path),
            1,
            &[
                (r#"\"weight\":90"#, r#"\"weight\":50"#),
                (r#"\"weight\":10"#, r#"\"weight\":50"#),
            ],
        );
    }
}

/// A plugin configuration kept as YAML (converted to JSON for validation, edited as YAML).
#[test]
fn a_plugin_configuration_in_yaml() {
    let before = "# canary of the shop\nrules:\n- name: canary\n  route:\n    split:\n    - subset: v1\n      weight: 90 # stable\n    - subset: v2\n      weight: 10\n    stickyBy: {cookie: session}\ndefault: {subset: v1}\n";
    let path = work_file("plugin-yaml", "config.yaml", before);
    let out = set_weights(&path, "canary", &["v1=0", "v2=100"]);
    assert_written(&out);
    assert_only_weights_changed(
        before,
        &read(&path),
        2,
        &[("weight: 90", "weight: 0"), ("weight: 10", "weight: 100")],
    );
    assert!(
        stdout(&out).contains("sticky by cookie session"),
        "{}",
        stdout(&out)
    );
}

/// Metadata that a write would change.
fn fingerprint(path: &Path) -> (Vec<u8>, std::time::SystemTime, u64) {
    let meta = std::fs::metadata(path).unwrap();
    (
        std::fs::read(path).unwrap(),
        meta.modified().unwrap(),
        meta.ino(),
    )
}

#[test]
fn an_invalid_change_exits_1_and_leaves_the_file_untouched() {
    let before = example("istio/wasmplugin.yaml");
    let path = work_file("invalid", "wasmplugin.yaml", &before);
    let untouched = fingerprint(&path);
    for (weights, reason) in [
        (
            &["v1=0", "v3=0"][..],
            "rules[2].route.split: weights sum to 0; at least one weight must be positive",
        ),
        (
            &["v3=1000001"],
            "rules[2].route.split[1].weight: 1000001 exceeds 1000000",
        ),
        (
            &["v1=-5"],
            "rules[2].route.split[0].weight: -5 is negative; weights are 0 to 1000000",
        ),
    ] {
        let out = set_weights(&path, "canary", weights);
        assert_eq!(out.status.code(), Some(1), "{weights:?}: {}", stdout(&out));
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "wasmplugin.yaml: WasmPlugin default/subset-router: spec.pluginConfig: {reason}\n"
            )),
            "{weights:?}: {err}"
        );
        assert!(err.contains("nothing written"), "{err}");
        assert_eq!(
            fingerprint(&path),
            untouched,
            "{weights:?}: the file was touched"
        );
    }
    // The largest weight is fine.
    let out = set_weights(&path, "canary", &["v3=1000000"]);
    assert_written(&out);
}

#[test]
fn unknown_rules_subsets_and_fixed_routes_exit_1() {
    let before = example("sticky-canary/envoy.yaml");
    let path = work_file("unknown", "envoy.yaml", &before);
    let untouched = fingerprint(&path);
    for (rule, weights, message) in [
        (
            "canry",
            &["v2=20"][..],
            r#"no rule named "canry" (rules: debug, canary, default)"#,
        ),
        (
            "canary",
            &["v1=80", "v9=20"],
            r#"rule "canary" has no subset "v9" (its split: v1, v2)"#,
        ),
        (
            "debug",
            &["v2=20"],
            r#"rule "debug" routes to one subset (v2), not a split"#,
        ),
        (
            "default",
            &["v1=1"],
            r#"rule "default" routes to one subset (v1), not a split"#,
        ),
    ] {
        let out = set_weights(&path, rule, weights);
        assert_eq!(out.status.code(), Some(1), "{rule} {weights:?}");
        assert!(stderr(&out).contains(message), "{rule}: {}", stderr(&out));
        assert_eq!(fingerprint(&path), untouched);
    }
    // A file without any subset-router configuration.
    let other = work_file(
        "unknown-none",
        "other.yaml",
        "kind: ConfigMap\ndata: {a: b}\n",
    );
    let out = set_weights(&other, "canary", &["v2=20"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no subset-router configuration found"),
        "{}",
        stderr(&out)
    );
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("set-weights-no-such-file.yaml");
    assert_eq!(
        set_weights(&missing, "canary", &["v2=1"]).status.code(),
        Some(1)
    );
}

#[test]
fn usage_errors_exit_2() {
    let path = work_file(
        "usage",
        "config.json",
        &example("sticky-canary/config.json"),
    );
    let file = path.to_string_lossy();
    let untouched = fingerprint(&path);
    for args in [
        &["set-weights", &file, "--rule", "canary"][..],
        &["set-weights", &file, "v2=20"],
        &["set-weights", "--rule", "canary"],
        &["set-weights", &file, "--rule", "canary", "v2"],
        &["set-weights", &file, "--rule", "canary", "=20"],
        &["set-weights", &file, "--rule", "canary", "v2=twenty"],
        &["set-weights", &file, "--rule", "canary", "v2=1.5"],
        &["set-weights", &file, "--rule", "canary", "v2=20", "v2=30"],
        &["set-weights", &file, "--rule", "canary", "v2=20", "--bogus"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?}");
    }
    assert_eq!(fingerprint(&path), untouched);
    let help = run(&["set-weights", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("Usage: subset-router set-weights"));
}

#[test]
fn round_trip_gives_back_the_original_bytes() {
    for (name, v2) in [
        ("sticky-canary/config.json", "v2"),
        ("sticky-canary/envoy.yaml", "v2"),
        ("native/envoy.yaml", "v2"),
        ("istio/wasmplugin.yaml", "v3"),
        ("envoy-gateway/policy-oci.yaml", "v2"),
    ] {
        let before = example(name);
        let file_name = Path::new(name).file_name().unwrap().to_string_lossy();
        let path = work_file(
            &format!("round-trip-{}", name.replace('/', "-")),
            &file_name,
            &before,
        );
        assert_written(&set_weights(
            &path,
            "canary",
            &["v1=50", &format!("{v2}=50")],
        ));
        assert_ne!(read(&path), before, "{name}");
        assert_written(&set_weights(
            &path,
            "canary",
            &["v1=90", &format!("{v2}=10")],
        ));
        assert_eq!(
            read(&path),
            before,
            "{name}: the round trip changed the file"
        );
    }
}

/// The `sticky keys moved: N of 10000` line.
fn moved_keys(text: &str) -> u32 {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("sticky keys moved: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no 'sticky keys moved' line in\n{text}"))
        .parse()
        .unwrap_or_else(|_| panic!("not a number of keys in\n{text}"))
}

#[test]
fn sticky_keys_that_move_are_counted_by_the_filters_own_selection() {
    let path = work_file(
        "sticky",
        "config.json",
        &example("sticky-canary/config.json"),
    );
    let out = set_weights(&path, "canary", &["v1=80", "v2=20"]);
    assert_written(&out);
    let text = stdout(&out);
    let printed = moved_keys(&text);

    // Independently: the core's rendezvous hashing, salted by the rule name, on key-0..key-9999.
    let hasher = StickyHasher::new("canary", ["v1", "v2"]);
    let mut moved = 0;
    for k in 0..10_000 {
        let key = format!("key-{k}");
        let before = hasher.pick(key.as_bytes(), &[90, 10]).unwrap();
        let after = hasher.pick(key.as_bytes(), &[80, 20]).unwrap();
        if before != after {
            assert_eq!((before, after), (0, 1), "{key} left the growing subset");
            moved += 1;
        }
    }
    assert_eq!(printed, moved, "{text}");
    // About a tenth of the keys (the 10 points v2 gains), within 4.5 sigma.
    let sigma = (10_000.0_f64 * 0.1 * 0.9).sqrt();
    assert!(
        (f64::from(moved) - 1_000.0).abs() <= 4.5 * sigma,
        "{moved} keys moved"
    );
    assert!(
        text.contains(&format!(
            "  sticky keys moved: {moved} of 10000 (sticky by header x-user-id): v1 → v2 {moved}\n"
        )),
        "{text}"
    );

    // A random split: no key is sticky.
    let random = work_file(
        "sticky-random",
        "config.json",
        r#"{"default":{"split":[{"subset":"v1","weight":90},{"subset":"v2","weight":10}]}}"#,
    );
    let out = set_weights(&random, "default", &["v1=80", "v2=20"]);
    assert_written(&out);
    assert!(
        stdout(&out).contains("  sticky keys moved: n/a (a random split, not sticky"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_file_is_replaced_by_a_rename() {
    let before = example("sticky-canary/envoy.yaml");
    let path = work_file("atomic", "envoy.yaml", &before);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    // A second name for the old inode: an in-place write would show through it.
    let link = path.with_file_name("envoy.yaml.old");
    std::fs::hard_link(&path, &link).unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();

    assert_written(&set_weights(&path, "canary", &["v1=80", "v2=20"]));
    let meta = std::fs::metadata(&path).unwrap();
    assert_ne!(meta.ino(), inode, "written in place, not renamed");
    assert_eq!(meta.permissions().mode() & 0o777, 0o640, "permissions kept");
    assert_eq!(read(&link), before, "the old inode was modified");
    assert_ne!(read(&path), before);
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "a temporary file was left behind: {names:?}"
    );

    // Through a symbolic link: the target is replaced, the link stays a link.
    let target = path.with_file_name("target.yaml");
    std::fs::write(&target, &before).unwrap();
    let link = path.with_file_name("link.yaml");
    std::os::unix::fs::symlink("target.yaml", &link).unwrap();
    assert_written(&set_weights(&link, "canary", &["v2=15"]));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_only_weights_changed(
        &before,
        &read(&target),
        1,
        &[("\"weight\": 10", "\"weight\": 15")],
    );
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&target).unwrap();

    // Nothing to change, or --dry-run: no write at all.
    let untouched = fingerprint(&path);
    let out = set_weights(&path, "canary", &["v1=80", "v2=20"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("file left as it is"),
        "{}",
        stdout(&out)
    );
    let out = set_weights(&path, "canary", &["v1=70", "v2=30", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("new: v1=70 v2=30"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).ends_with("not written (--dry-run)\n"));
    assert_eq!(fingerprint(&path), untouched);
}

/// Several configurations in one file (a YAML stream of WasmPlugins): edited together when
/// they agree on the split, refused when they differ; other plugins' WasmPlugins are skipped.
#[test]
fn several_configurations_in_one_file_must_agree() {
    let plugin = |name: &str, v2: u32| {
        format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: {name}\n  namespace: shop\n\
             spec:\n  url: oci://registry.example.com/subset-router:0.1.0\n  pluginConfig:\n    \
             rules:\n    - name: canary  # the canary\n      route:\n        \
             split: [{{subset: v1, weight: 90}}, {{subset: v2, weight: {v2}}}]  # flow style\n    \
             default: {{subset: v1}}\n"
        )
    };
    let other =
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: other\n\
                 spec:\n  pluginConfig:\n    level: debug\n";
    let agreeing = format!(
        "{}---\n{other}---\n{}",
        plugin("gateway", 10),
        plugin("sidecar", 10)
    );
    let path = work_file("several", "wasmplugins.yaml", &agreeing);
    let out = set_weights(&path, "canary", &["v1=75", "v2=25"]);
    assert_written(&out);
    assert_only_weights_changed(
        &agreeing,
        &read(&path),
        2,
        &[("weight: 90", "weight: 75"), ("weight: 10", "weight: 25")],
    );
    let text = stdout(&out);
    assert!(
        text.contains("document 1: WasmPlugin shop/gateway: spec.pluginConfig"),
        "{text}"
    );
    assert!(
        text.contains("document 3: WasmPlugin shop/sidecar: spec.pluginConfig"),
        "{text}"
    );

    let differing = format!("{}---\n{}", plugin("gateway", 10), plugin("sidecar", 20));
    let path = work_file("several-differ", "wasmplugins.yaml", &differing);
    let out = set_weights(&path, "canary", &["v2=30"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("split rule \"canary\" differently"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read(&path), differing);
}

/// The native build's route form: the configuration in a `DynamicModuleClusterSpecifier`'s
/// `specifier_config`.
#[test]
fn the_cluster_specifier_route_changes_only_the_weights() {
    let before = example("native/envoy-route.yaml");
    let path = work_file("envoy-route", "envoy-route.yaml", &before);
    let out = set_weights(&path, "canary", &["v1=70", "v2=30"]);
    assert_written(&out);
    assert_only_weights_changed(
        &before,
        &read(&path),
        1,
        &[
            ("\"weight\": 90", "\"weight\": 70"),
            ("\"weight\": 10", "\"weight\": 30"),
        ],
    );
    assert!(
        stdout(&out).contains("typed_config.specifier_config.value: rule canary"),
        "{}",
        stdout(&out)
    );
}

/// `args` run as a user the permission check applies to. Root may write any file, so as root
/// (containers, CI) the binary runs under `setpriv` as `nobody`; without setpriv the test is
/// skipped loudly, except under CI=true, where that is a failure.
fn run_unprivileged(args: &[&str]) -> Option<Output> {
    let probe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("set-weights-whoami");
    std::fs::write(&probe, "").unwrap();
    let root = std::fs::metadata(&probe).unwrap().uid() == 0;
    if !root {
        return Some(run(args));
    }
    let setpriv = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_subset-router"))
        .args(args)
        .output();
    match setpriv {
        Ok(out) => Some(out),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "running as root needs setpriv (util-linux) to test as an unprivileged user: {e}"
            )
        }
        Err(e) => {
            eprintln!("SKIPPED (loud): running as root and setpriv cannot run ({e}): the read-only file check was NOT tested");
            None
        }
    }
}

/// A rename needs only a writable directory: a file whose own permissions forbid writing is
/// refused (untouched, exit 1) unless --force is given.
#[test]
fn a_read_only_file_is_refused_unless_forced() {
    let before = example("sticky-canary/config.json");
    let path = work_file("read-only", "config.json", &before);
    let dir = path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let file = path.to_string_lossy();
    let untouched = fingerprint(&path);
    let Some(out) = run_unprivileged(&["set-weights", &file, "--rule", "canary", "v2=20"]) else {
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stderr(&out),
        format!(
            "{file}: not written: the file is not writable by you (Permission denied (os error 13)); \
             the directory would allow replacing it, but its permissions say it is not to be \
             changed: make it writable, or pass --force to replace it anyway\n"
        )
    );
    assert_eq!(fingerprint(&path), untouched);

    // --dry-run writes nothing, so it needs no permission.
    let out = run_unprivileged(&[
        "set-weights",
        &file,
        "--rule",
        "canary",
        "v2=20",
        "--dry-run",
    ])
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fingerprint(&path), untouched);

    let out =
        run_unprivileged(&["set-weights", &file, "--rule", "canary", "v2=20", "--force"]).unwrap();
    assert_written(&out);
    assert_only_weights_changed(
        &before,
        &read(&path),
        1,
        &[("\"weight\": 10", "\"weight\": 20")],
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o444, "the mode is kept");

    // A file the caller may write is replaced without --force.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = run_unprivileged(&["set-weights", &file, "--rule", "canary", "v2=25"]).unwrap();
    assert_written(&out);
}
