//! `envoy-config`: renders the Envoy configs of subset-router (see the library docs).
//!
//! ```text
//! envoy-config render CONFIG [--build wasm|native] [--wasm PATH] [--listen ADDR:PORT]
//!                            [--admin ADDR:PORT] [--upstream-port N] [--cluster NAME=ADDR:PORT]... [-o OUT]
//! envoy-config examples [--check]     (re)generate examples/**/envoy.yaml (make examples), and
//!                                     envoy-route.yaml from a config-route.json
//! envoy-config subsets CONFIG         the subsets a config can choose, one a line
//! envoy-config bench A|B|N|N2|W|C --listen ADDR:PORT --admin ADDR:PORT --v1 ADDR:PORT --v2 ADDR:PORT
//!                    [--wasm PATH] [--plugin-config CONFIG] [--cluster NAME=ADDR:PORT]... [-o OUT]
//! envoy-config bench upstream --admin ADDR:PORT --v1 ADDR:PORT --v2 ADDR:PORT [-o OUT]
//!                                     a benchmark's front Envoy / upstream Envoy (bench/run.py)
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use envoy_config::bench::{self, Front, Shape};
use envoy_config::{
    render, Addr, Build, Delivery, ExternalCluster, NativeForm, PluginRoutes, Spec,
};

/// Where the examples' compose files mount the filter and publish Envoy.
const EXAMPLE_WASM: &str = "/etc/envoy/subset_router.wasm";
const EXAMPLE_LISTEN: &str = "0.0.0.0:10000";
const EXAMPLE_ADMIN: &str = "0.0.0.0:9901";
const EXAMPLE_UPSTREAM_PORT: u16 = 10001;
/// Where a guard's `fleet.cluster` points unless `--cluster` says otherwise: the host of that
/// name (the Prometheus service of examples/fleet/docker-compose.yaml) on Prometheus's port.
const FLEET_PORT: u16 = 9090;

#[derive(Parser)]
#[command(
    name = "envoy-config",
    version,
    about = "Render subset-router's Envoy configs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum BuildArg {
    Wasm,
    Native,
}

impl BuildArg {
    /// The build to render: the Wasm one loads `wasm` (the `--wasm` path); the native one ignores it.
    fn with_wasm(self, wasm: String) -> Build {
        match self {
            BuildArg::Wasm => Build::Wasm { file: wasm },
            BuildArg::Native => Build::Native,
        }
    }
}

/// A benchmark configuration's Envoy (BENCHMARKS.md, "Method"). B2 and B3 are B with their own
/// plugin configuration.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum BenchShapeArg {
    /// Native routing: `user-agent: debug` -> v2, else weighted_clusters v1 90 / v2 10.
    #[value(name = "A")]
    A,
    /// subset-router, Wasm build (--wasm, --plugin-config).
    #[value(name = "B")]
    B,
    /// subset-router, native build, as an HTTP filter (--plugin-config).
    #[value(name = "N")]
    N,
    /// subset-router, native build, as the route's cluster specifier (--plugin-config).
    #[value(name = "N2")]
    N2,
    /// The Wasm floor (--wasm).
    #[value(name = "W")]
    W,
    /// Straight to v1, no filter.
    #[value(name = "C")]
    C,
    /// The direct_response upstream Envoy (bench/run.py --upstream envoy); no --listen.
    #[value(name = "upstream")]
    Upstream,
}

impl BenchShapeArg {
    /// The name on the command line.
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

#[derive(Subcommand)]
enum Command {
    /// A self-contained Envoy config for a plugin config: the filter, one upstream per subset.
    Render {
        config: PathBuf,
        #[arg(long, value_enum, default_value = "wasm")]
        build: BuildArg,
        /// The .wasm as Envoy sees it (wasm build).
        #[arg(long, default_value = EXAMPLE_WASM)]
        wasm: String,
        #[arg(long, default_value = EXAMPLE_LISTEN)]
        listen: String,
        #[arg(long, default_value = EXAMPLE_ADMIN)]
        admin: String,
        /// First upstream port (one per subset, consecutive).
        #[arg(long, default_value_t = EXAMPLE_UPSTREAM_PORT)]
        upstream_port: u16,
        /// A cluster outside this Envoy (repeatable): where a guard's `fleet.cluster` sends its
        /// queries (default: the host of the cluster's name, port 9090).
        #[arg(long = "cluster", value_name = "NAME=ADDR:PORT", value_parser = cluster_arg)]
        clusters: Vec<ExternalCluster>,
        /// Deliver the filter by file-based ECDS from DIR/subset_router.yaml (as Istio delivers
        /// WasmPlugin updates), and write that file with this configuration; `envoy-config ecds`
        /// renders a later one (replace the file by rename: Envoy watches the directory).
        #[arg(long, value_name = "DIR")]
        ecds: Option<PathBuf>,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// The ECDS resource (a DiscoveryResponse) holding the filter with this plugin config: the
    /// file an Envoy rendered with `render --ecds DIR` watches.
    Ecds {
        config: PathBuf,
        #[arg(long, value_enum, default_value = "wasm")]
        build: BuildArg,
        /// The .wasm as Envoy sees it (wasm build).
        #[arg(long, default_value = EXAMPLE_WASM)]
        wasm: String,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Regenerate examples/**/envoy.yaml from each config.json (the native build under
    /// examples/native/), and envoy-route.yaml from each config-route.json (the native build as
    /// the route's cluster specifier); with --check, fail when one is stale instead.
    Examples {
        #[arg(long)]
        check: bool,
    },
    /// The subsets a config can choose, one a line.
    Subsets { config: PathBuf },
    /// A benchmark's front Envoy (bench/run.py): clusters v1 and v2 at the given addresses,
    /// served by the benchmark's upstream, not by this Envoy. Or its upstream Envoy.
    Bench {
        #[arg(value_enum)]
        shape: BenchShapeArg,
        /// The listener under measurement (every shape but `upstream`).
        #[arg(long)]
        listen: Option<String>,
        /// Envoy's admin interface.
        #[arg(long)]
        admin: String,
        /// Cluster v1's endpoint (for `upstream`: its listener).
        #[arg(long)]
        v1: String,
        /// Cluster v2's endpoint (for `upstream`: its listener).
        #[arg(long)]
        v2: String,
        /// The .wasm (B: subset-router, W: the floor), as Envoy sees it.
        #[arg(long)]
        wasm: Option<String>,
        /// The plugin configuration (B, N, N2): a JSON file, embedded as written. Not validated
        /// here: a variant .wasm under test may accept what this tree's filter does not; Envoy
        /// and bench/run.py's sanity checks judge it.
        #[arg(long)]
        plugin_config: Option<PathBuf>,
        /// A cluster outside this Envoy (repeatable), e.g. `prometheus=127.0.0.1:9090` for a
        /// guard's `fleet` queries (B3-fleet).
        #[arg(long = "cluster", value_name = "NAME=ADDR:PORT", value_parser = cluster_arg)]
        clusters: Vec<ExternalCluster>,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(message) => {
            // A configuration's errors are one `path: reason` a line: each is prefixed.
            for line in message.lines() {
                eprintln!("envoy-config: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Render {
            config,
            build,
            wasm,
            listen,
            admin,
            upstream_port,
            clusters,
            ecds,
            output,
        } => {
            let build = build.with_wasm(wasm);
            let json = read(&config)?;
            let mut spec = plugin_spec(
                &json,
                build,
                NativeForm::HttpFilter,
                addr(&listen)?,
                addr(&admin)?,
                upstream_port,
                &clusters,
            )
            .map_err(|e| at(&config.display(), &e))?;
            if let Some(dir) = ecds {
                let resource = envoy_config::ecds_resource(&spec.build, &json);
                write_or_print(Some(dir.join(envoy_config::ECDS_FILE)), &resource)?;
                spec.delivery = Delivery::Ecds {
                    dir: dir.display().to_string(),
                };
            }
            write_or_print(output, &render(&spec))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ecds {
            config,
            build,
            wasm,
            output,
        } => {
            let build = build.with_wasm(wasm);
            let json = read(&config)?;
            write_or_print(output, &envoy_config::ecds_resource(&build, &json))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Examples { check } => examples(check),
        Command::Bench {
            shape,
            listen,
            admin,
            v1,
            v2,
            wasm,
            plugin_config,
            clusters,
            output,
        } => {
            let (v1, v2) = (addr(&v1)?, addr(&v2)?);
            let yaml = if shape == BenchShapeArg::Upstream {
                let given = [
                    ("--listen", listen.is_some()),
                    ("--wasm", wasm.is_some()),
                    ("--plugin-config", plugin_config.is_some()),
                    ("--cluster", !clusters.is_empty()),
                ];
                refuse_options(shape, given)?;
                bench::render_upstream(&addr(&admin)?, &v1, &v2)
            } else {
                let listen = listen
                    .ok_or_else(|| format!("bench {}: --listen is required", shape.name()))?;
                let shape = bench_shape(shape, wasm, plugin_config)?;
                let front = Front {
                    shape,
                    admin: addr(&admin)?,
                    listen: addr(&listen)?,
                    v1,
                    v2,
                    clusters,
                };
                bench::render_front(&front)
            };
            write_or_print(output, &yaml)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Subsets { config } => {
            let subsets =
                envoy_config::subsets_of(&read(&config)?).map_err(|e| at(&config.display(), &e))?;
            for subset in subsets {
                println!("{subset}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The Envoy config for a plugin config: the filter in front of one upstream per subset, and a
/// cluster for each guard's `fleet.cluster` (at its address in `clusters`, else the host of its
/// name on [`FLEET_PORT`]); a cluster in `clusters` that no guard names is added too. With
/// [`NativeForm::ClusterSpecifier`] (native build only), the module is the final route's
/// cluster specifier instead; a configuration that form cannot run is refused here, with the
/// reasons the module would log.
fn plugin_spec(
    json: &str,
    build: Build,
    form: NativeForm,
    front: Addr,
    admin: Addr,
    upstream_port: u16,
    clusters: &[ExternalCluster],
) -> Result<Spec, String> {
    let routes = PluginRoutes::from_json(json)?;
    let specifier = form == NativeForm::ClusterSpecifier;
    if specifier {
        if build != Build::Native {
            return Err("the cluster-specifier form is the native build's only".into());
        }
        let refused = envoy_config::cluster_specifier_refusals(json)?;
        if !refused.is_empty() {
            return Err(format!(
                "{}\n(the cluster-specifier form cannot do this; use the HTTP filter)",
                refused.join("\n")
            ));
        }
    }
    let mut comment = if specifier {
        vec![
            format!(
                "Front listener {}:{} -> router, whose final route asks subset-router (Envoy dynamic module",
                front.host, front.port
            ),
            "libsubset_router.so, inline_cluster_specifier_plugin) for its cluster: no HTTP filter, no header written.".into(),
        ]
    } else {
        vec![format!(
            "Front listener {}:{} -> subset-router ({}) -> router.",
            front.host,
            front.port,
            match &build {
                Build::Wasm { .. } => "proxy-wasm, V8, fail closed",
                Build::Native => "Envoy dynamic module libsubset_router.so",
            }
        )]
    };
    if let Some(header) = &routes.subset_header {
        comment.push(format!(
            "Routes on the `{header}` header the filter sets (as an Istio VirtualService would);"
        ));
    }
    match &routes.cluster_header {
        Some(_) if specifier => {
            comment.push("Routes to the cluster the decision names (404 when unknown).".into())
        }
        Some(header) => comment.push(format!(
            "routes to the cluster named in `{header}` (cluster_header; 404 when unknown)."
        )),
        None => comment.push(
            "clusterHeader is null: requests no header route takes go to the default subset."
                .into(),
        ),
    }
    comment.push("Upstreams: one direct_response listener per subset in this same Envoy, answering its name.".into());
    comment.push("stats_tags: /stats/prometheus labels the decisions by rule and subset.".into());
    if !specifier {
        comment.push("`x-fail: <subset>` on a request makes that subset's upstream answer 503 (try a guard).".into());
    }
    let mut spec = Spec {
        comment,
        admin,
        front,
        build,
        native_form: form,
        plugin_json: json.to_owned(),
        delivery: Delivery::Inline,
        header_routes: None,
        cluster_header: None,
        fallback_cluster: None,
        upstreams: Vec::new(),
        echo_headers: Vec::new(),
        front_flags: false,
        hardened: false,
        stats_tags: true,
        filter_routes: None,
        // Guards need the HTTP filter: nothing to try with a failing upstream.
        fail_header: (!specifier).then(|| "x-fail".into()),
        more_fronts: Vec::new(),
        external_clusters: Vec::new(),
    };
    routes.apply(&mut spec, upstream_port);
    let mut external: Vec<ExternalCluster> = routes
        .fleet_clusters
        .iter()
        .map(|name| {
            clusters
                .iter()
                .find(|c| c.name == *name)
                .cloned()
                .unwrap_or_else(|| ExternalCluster {
                    name: name.clone(),
                    address: Addr::new(name, FLEET_PORT),
                })
        })
        .collect();
    external.extend(
        clusters
            .iter()
            .filter(|c| !routes.fleet_clusters.contains(&c.name))
            .cloned(),
    );
    // Two clusters of one name would make Envoy refuse the config: a subset's own cluster wins
    // (a guard may query through an upstream the filter also routes to).
    external.retain(|c| !spec.upstreams.iter().any(|u| u.cluster == c.name));
    for c in &external {
        spec.comment.push(format!(
            "Cluster `{}`: {}:{}, outside this Envoy ({}).",
            c.name,
            c.address.host,
            c.address.port,
            if routes.fleet_clusters.contains(&c.name) {
                "a guard's fleet queries to Prometheus go through it"
            } else {
                "--cluster"
            }
        ));
    }
    spec.external_clusters = external;
    Ok(spec)
}

/// An example's plugin configuration file and the Envoy config rendered from it, next to it.
const EXAMPLE_FILES: [(&str, &str, NativeForm); 2] = [
    ("config.json", "envoy.yaml", NativeForm::HttpFilter),
    // The native build as the route's cluster specifier (examples/native/).
    (
        "config-route.json",
        "envoy-route.yaml",
        NativeForm::ClusterSpecifier,
    ),
];

fn examples(check: bool) -> Result<ExitCode, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut configs = Vec::new();
    find_configs(&root.join("examples"), &mut configs)?;
    configs.sort();
    let mut stale = 0;
    for config in configs {
        let dir = config.parent().unwrap_or(Path::new("."));
        let file_name = config
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(&(_, yaml_name, form)) = EXAMPLE_FILES.iter().find(|(c, _, _)| *c == file_name)
        else {
            continue;
        };
        let yaml_path = dir.join(yaml_name);
        let rel = |p: &Path| p.strip_prefix(&root).unwrap_or(p).display().to_string();
        let native = form == NativeForm::ClusterSpecifier
            || config.components().any(|c| c.as_os_str() == "native");
        let build = if native {
            Build::Native
        } else {
            Build::Wasm {
                file: EXAMPLE_WASM.into(),
            }
        };
        let json = read(&config)?;
        let mut spec = plugin_spec(
            &json,
            build,
            form,
            addr(EXAMPLE_LISTEN)?,
            addr(EXAMPLE_ADMIN)?,
            EXAMPLE_UPSTREAM_PORT,
            &[],
        )
        .map_err(|e| at(&rel(&config), &e))?;
        spec.comment.splice(
            0..0,
            [
                format!("Generated by `make examples` (envoy-config, envoy/config) from {file_name}: do not edit by hand."),
                String::new(),
            ],
        );
        let want = render(&spec);
        let have = std::fs::read_to_string(&yaml_path).ok();
        if have.as_deref() == Some(want.as_str()) {
            println!("up to date: {}", rel(&yaml_path));
        } else if check {
            println!("STALE: {} (run make examples)", rel(&yaml_path));
            stale += 1;
        } else {
            std::fs::write(&yaml_path, want)
                .map_err(|e| format!("{}: {e}", yaml_path.display()))?;
            println!("wrote {}", rel(&yaml_path));
        }
    }
    Ok(if stale > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn find_configs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            find_configs(&path, out)?;
        } else if path
            .file_name()
            .is_some_and(|n| EXAMPLE_FILES.iter().any(|(config, _, _)| n == *config))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// A benchmark front Envoy's shape from its options: each shape takes exactly the files it
/// uses, so a mistaken invocation fails instead of silently rendering something else.
fn bench_shape(
    shape: BenchShapeArg,
    wasm: Option<String>,
    plugin_config: Option<PathBuf>,
) -> Result<Shape, String> {
    let (wasm_given, config_given) = (wasm.is_some(), plugin_config.is_some());
    let required = |what: &str| format!("bench {}: {what} is required", shape.name());
    Ok(match shape {
        BenchShapeArg::A => {
            refuse_options(
                shape,
                [("--wasm", wasm_given), ("--plugin-config", config_given)],
            )?;
            Shape::NativeRouting
        }
        BenchShapeArg::C => {
            refuse_options(
                shape,
                [("--wasm", wasm_given), ("--plugin-config", config_given)],
            )?;
            Shape::StraightToV1
        }
        BenchShapeArg::W => {
            refuse_options(shape, [("--plugin-config", config_given)])?;
            Shape::WasmFloor {
                file: wasm.ok_or_else(|| required("--wasm"))?,
            }
        }
        BenchShapeArg::B => {
            let file = wasm.ok_or_else(|| required("--wasm"))?;
            let config = plugin_config.ok_or_else(|| required("--plugin-config"))?;
            Shape::SubsetRouter {
                build: Build::Wasm { file },
                plugin_json: read(&config)?,
            }
        }
        BenchShapeArg::N => {
            refuse_options(shape, [("--wasm", wasm_given)])?;
            let config = plugin_config.ok_or_else(|| required("--plugin-config"))?;
            Shape::SubsetRouter {
                build: Build::Native,
                plugin_json: read(&config)?,
            }
        }
        BenchShapeArg::N2 => {
            refuse_options(shape, [("--wasm", wasm_given)])?;
            let config = plugin_config.ok_or_else(|| required("--plugin-config"))?;
            Shape::ClusterSpecifier {
                plugin_json: read(&config)?,
            }
        }
        BenchShapeArg::Upstream => return Err("bench upstream is not a front Envoy".into()),
    })
}

/// Fails on the first given option this shape does not use.
fn refuse_options<const N: usize>(
    shape: BenchShapeArg,
    options: [(&str, bool); N],
) -> Result<(), String> {
    match options.iter().find(|(_, given)| *given) {
        Some((option, _)) => Err(format!("bench {} takes no {option}", shape.name())),
        None => Ok(()),
    }
}

fn write_or_print(output: Option<PathBuf>, yaml: &str) -> Result<(), String> {
    match output {
        Some(path) => std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            print!("{yaml}");
            Ok(())
        }
    }
}

/// `errors` (one a line) each prefixed by the file they are about.
fn at(file: &dyn std::fmt::Display, errors: &str) -> String {
    errors
        .lines()
        .map(|line| format!("{file}: {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `NAME=ADDR:PORT` of `--cluster`.
fn cluster_arg(spec: &str) -> Result<ExternalCluster, String> {
    let (name, address) = spec
        .split_once('=')
        .ok_or_else(|| format!("bad cluster {spec:?}: expected NAME=ADDR:PORT"))?;
    if name.is_empty() {
        return Err(format!("bad cluster {spec:?}: no name before '='"));
    }
    Ok(ExternalCluster {
        name: name.to_owned(),
        address: addr(address)?,
    })
}

fn addr(spec: &str) -> Result<Addr, String> {
    let (host, port) = spec
        .rsplit_once(':')
        .ok_or_else(|| format!("bad address {spec:?}: expected ADDR:PORT"))?;
    let port = port.parse().map_err(|_| format!("bad port in {spec:?}"))?;
    Ok(Addr::new(host.trim_matches(['[', ']']), port))
}
