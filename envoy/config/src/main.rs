//! `envoy-config`: renders the Envoy configs of subset-router (see the library docs).
//!
//! ```text
//! envoy-config render CONFIG [--build wasm|native] [--wasm PATH] [--listen ADDR:PORT]
//!                            [--admin ADDR:PORT] [--upstream-port N] [-o OUT]
//! envoy-config examples [--check]     (re)generate examples/**/envoy.yaml (make examples)
//! envoy-config subsets CONFIG         the subsets a config can choose, one a line
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use envoy_config::{render, Addr, Build, Delivery, PluginRoutes, Spec};

/// Where the examples' compose files mount the filter and publish Envoy.
const EXAMPLE_WASM: &str = "/etc/envoy/subset_router.wasm";
const EXAMPLE_LISTEN: &str = "0.0.0.0:10000";
const EXAMPLE_ADMIN: &str = "0.0.0.0:9901";
const EXAMPLE_UPSTREAM_PORT: u16 = 10001;

#[derive(Parser)]
#[command(name = "envoy-config", version, about = "Render subset-router's Envoy configs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum BuildArg {
    Wasm,
    Native,
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
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Regenerate examples/**/envoy.yaml from each config.json (the native build under
    /// examples/native/); with --check, fail when one is stale instead.
    Examples {
        #[arg(long)]
        check: bool,
    },
    /// The subsets a config can choose, one a line.
    Subsets { config: PathBuf },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("envoy-config: {message}");
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
            output,
        } => {
            let build = match build {
                BuildArg::Wasm => Build::Wasm { file: wasm },
                BuildArg::Native => Build::Native,
            };
            let json = read(&config)?;
            let spec = plugin_spec(&json, build, addr(&listen)?, addr(&admin)?, upstream_port)
                .map_err(|e| format!("{}: {e}", config.display()))?;
            let yaml = render(&spec);
            match output {
                Some(path) => std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?,
                None => print!("{yaml}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Examples { check } => examples(check),
        Command::Subsets { config } => {
            let subsets = envoy_config::subsets_of(&read(&config)?)
                .map_err(|e| format!("{}: {e}", config.display()))?;
            for subset in subsets {
                println!("{subset}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The Envoy config for a plugin config: the filter in front of one upstream per subset.
fn plugin_spec(json: &str, build: Build, front: Addr, admin: Addr, upstream_port: u16) -> Result<Spec, String> {
    let routes = PluginRoutes::from_json(json)?;
    let mut comment = vec![format!(
        "Front listener {}:{} -> subset-router ({}) -> router.",
        front.host,
        front.port,
        match &build {
            Build::Wasm { .. } => "proxy-wasm, V8, fail closed",
            Build::Native => "Envoy dynamic module libsubset_router.so",
        }
    )];
    if let Some(header) = &routes.subset_header {
        comment.push(format!("Routes on the `{header}` header the filter sets (as an Istio VirtualService would);"));
    }
    match &routes.cluster_header {
        Some(header) => comment.push(format!("routes to the cluster named in `{header}` (cluster_header; 404 when unknown).")),
        None => comment.push("clusterHeader is null: requests no header route takes go to the default subset.".into()),
    }
    comment.push("Upstreams: one direct_response listener per subset in this same Envoy, answering its name.".into());
    comment.push("stats_tags: /stats/prometheus labels the decisions by rule and subset.".into());
    comment.push("`x-fail: <subset>` on a request makes that subset's upstream answer 503 (try a guard).".into());
    let mut spec = Spec {
        comment,
        admin,
        front,
        build,
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
        fail_header: Some("x-fail".into()),
    };
    routes.apply(&mut spec, upstream_port);
    Ok(spec)
}

fn examples(check: bool) -> Result<ExitCode, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut configs = Vec::new();
    find_configs(&root.join("examples"), &mut configs)?;
    configs.sort();
    let mut stale = 0;
    for config in configs {
        let dir = config.parent().unwrap_or(Path::new("."));
        let yaml_path = dir.join("envoy.yaml");
        let rel = |p: &Path| p.strip_prefix(&root).unwrap_or(p).display().to_string();
        let native = config.components().any(|c| c.as_os_str() == "native");
        let build = if native { Build::Native } else { Build::Wasm { file: EXAMPLE_WASM.into() } };
        let json = read(&config)?;
        let mut spec = plugin_spec(&json, build, addr(EXAMPLE_LISTEN)?, addr(EXAMPLE_ADMIN)?, EXAMPLE_UPSTREAM_PORT)
            .map_err(|e| format!("{}: {e}", rel(&config)))?;
        spec.comment.splice(
            0..0,
            [
                "Generated by `make examples` (envoy-config, envoy/config) from config.json: do not edit by hand.".to_string(),
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
            std::fs::write(&yaml_path, want).map_err(|e| format!("{}: {e}", yaml_path.display()))?;
            println!("wrote {}", rel(&yaml_path));
        }
    }
    Ok(if stale > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn find_configs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            find_configs(&path, out)?;
        } else if path.file_name().is_some_and(|n| n == "config.json") {
            out.push(path);
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn addr(spec: &str) -> Result<Addr, String> {
    let (host, port) = spec
        .rsplit_once(':')
        .ok_or_else(|| format!("bad address {spec:?}: expected ADDR:PORT"))?;
    let port = port.parse().map_err(|_| format!("bad port in {spec:?}"))?;
    Ok(Addr::new(host.trim_matches(['[', ']']), port))
}
