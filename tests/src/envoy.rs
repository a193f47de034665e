//! Starting and stopping Envoy (Docker container or native process) with a rendered config.

use crate::http::Client;
use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Upstream clusters in the template, each served by its own listener.
pub const CLUSTERS: &[&str] = &[
    "v1",
    "v2",
    "v3",
    "red",
    "blue",
    "color-red",
    "color-blue",
    "internal-admin",
];

/// Where the scenario directory is mounted inside the container.
pub const CONTAINER_DIR: &str = "/etc/subset-router";

/// The envoy binary inside the image (official and local image alike).
pub const ENVOY_IN_IMAGE: &str = "/usr/local/bin/envoy";

/// Where Envoy looks for `lib<name>.so` dynamic modules (the native build).
const MODULES_PATH_VAR: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";

const READY_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Debug, Clone)]
pub enum Runtime {
    Docker { image: String },
    Native,
}

/// The build of the filter under test, and where its file is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterBuild {
    /// `dist/subset_router.wasm` (proxy-wasm).
    Wasm(PathBuf),
    /// `dist/libsubset_router.so` (Envoy dynamic module).
    Native(PathBuf),
}

impl FilterBuild {
    /// `wasm` or `native`.
    pub fn name(&self) -> &'static str {
        match self {
            FilterBuild::Wasm(_) => "wasm",
            FilterBuild::Native(_) => "native",
        }
    }

    pub fn file(&self) -> &Path {
        match self {
            FilterBuild::Wasm(p) | FilterBuild::Native(p) => p,
        }
    }

    /// The file name Envoy is given (the module is found by name in a search path).
    fn file_name(&self) -> &'static str {
        match self {
            FilterBuild::Wasm(_) => "subset_router.wasm",
            FilterBuild::Native(_) => "libsubset_router.so",
        }
    }

    /// The renderer's build, with the filter file as Envoy sees it in `run_dir`.
    fn render_build(&self, run_dir: &str) -> envoy_config::Build {
        match self {
            FilterBuild::Wasm(_) => envoy_config::Build::Wasm {
                file: format!("{run_dir}/subset_router.wasm"),
            },
            FilterBuild::Native(_) => envoy_config::Build::Native,
        }
    }

    /// Envoy's prefix for the filter's own stats: `wasmcustom.` or `dynamicmodulescustom.`.
    pub fn stat_prefix(&self) -> &'static str {
        self.render_build("").stat_prefix()
    }
}

/// Everything the suite needs from its environment, resolved once.
#[derive(Debug, Clone)]
pub struct Env {
    pub runtime: Runtime,
    /// The filter under test.
    pub build: FilterBuild,
    /// Native envoy binary: runs the native runtime and `--mode validate`. Optional in
    /// Docker mode (validation then runs in the container).
    pub envoy_bin: Option<PathBuf>,
    /// Raised codec limits and HTTP/1.0 on every connection manager (hostile requests).
    pub hardened: bool,
    /// Per-run scratch directory (rendered configs, logs).
    pub work_dir: PathBuf,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn env_nonempty(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

/// Runs a project script and returns its last stdout line (the contract of scripts/*.sh).
fn script_last_line(script: &str) -> Option<String> {
    let path = repo_root().join("scripts").join(script);
    if !path.exists() {
        return None;
    }
    eprintln!("[it] running {} ...", path.display());
    let out = Command::new("bash")
        .arg(&path)
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// Label on every container the suite starts; its value is the suite's PID.
pub const CONTAINER_LABEL: &str = "org.subset-router.it.pid";

/// Removes containers left by an earlier run of the suite that was killed before its Drop
/// guards ran (the label's PID no longer exists). Containers of a live run are kept.
fn remove_orphan_containers() {
    let Ok(out) = Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label={CONTAINER_LABEL}")])
        .args([
            "--format",
            &format!("{{{{.ID}}}} {{{{.Label \"{CONTAINER_LABEL}\"}}}}"),
        ])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((id, pid)) = line.split_once(' ') else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            eprintln!("[it] removing container {id} left by dead run (pid {pid})");
            let _ = Command::new("docker")
                .args(["rm", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

pub fn docker_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

impl Env {
    /// Reads `FILTER` (wasm|native, default wasm), `WASM` / `NATIVE_SO` (the filter files),
    /// `ENVOY_RUNTIME` (docker|native|auto), `ENVOY_IMAGE`, `ENVOY_BIN`.
    /// Missing values fall back to `dist/subset_router.wasm` / `dist/libsubset_router.so`,
    /// `scripts/envoy-image.sh`, `scripts/envoy-native.sh` / `envoy` on PATH.
    /// `scratch` is the parent of the per-run directory (the test passes CARGO_TARGET_TMPDIR).
    pub fn from_env(scratch: &Path) -> Result<Env, String> {
        let root = repo_root();
        let file = |var: &str, default: &str| {
            let path = env_nonempty(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(default));
            if path.is_relative() {
                root.join(path)
            } else {
                path
            }
        };
        let build = match env_nonempty("FILTER").as_deref().unwrap_or("wasm") {
            "wasm" => FilterBuild::Wasm(file("WASM", "dist/subset_router.wasm")),
            "native" => FilterBuild::Native(file("NATIVE_SO", "dist/libsubset_router.so")),
            other => return Err(format!("FILTER must be wasm or native, not {other:?}")),
        };
        if !build.file().is_file() {
            return Err(format!(
                "filter not found at {} (run `make build` first, or set WASM= / NATIVE_SO=)",
                build.file().display()
            ));
        }

        let want = env_nonempty("ENVOY_RUNTIME").unwrap_or_else(|| "auto".into());
        let docker = match want.as_str() {
            "docker" => true,
            "native" => false,
            "auto" => docker_answers(),
            other => {
                return Err(format!(
                    "ENVOY_RUNTIME must be docker|native|auto, not {other:?}"
                ))
            }
        };
        if docker && !docker_answers() {
            return Err(
                "ENVOY_RUNTIME=docker but no Docker engine answers `docker info` \
                        (scripts/dockerd.sh start)"
                    .into(),
            );
        }

        let mut envoy_bin = env_nonempty("ENVOY_BIN").map(PathBuf::from);
        if envoy_bin.is_none() {
            envoy_bin = which("envoy");
        }
        if envoy_bin.is_none() && !docker {
            envoy_bin = script_last_line("envoy-native.sh").map(PathBuf::from);
        }
        if let Some(b) = &envoy_bin {
            if !b.is_file() {
                return Err(format!("ENVOY_BIN={} is not a file", b.display()));
            }
        }

        let runtime = if docker {
            let image = env_nonempty("ENVOY_IMAGE")
                .or_else(|| script_last_line("envoy-image.sh"))
                .unwrap_or_else(|| "envoyproxy/envoy:v1.40.0".into());
            Runtime::Docker { image }
        } else {
            if envoy_bin.is_none() {
                return Err("native runtime: no envoy binary (set ENVOY_BIN)".into());
            }
            Runtime::Native
        };

        if docker {
            remove_orphan_containers();
        }

        let parent = scratch.join("subset-router-it");
        // Remove scratch dirs of earlier runs whose process is gone.
        if let Ok(rd) = fs::read_dir(&parent) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("run-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let work_dir = parent.join(format!("run-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work_dir);
        fs::create_dir_all(&work_dir).map_err(|e| format!("{}: {e}", work_dir.display()))?;

        Ok(Env {
            runtime,
            build,
            envoy_bin,
            hardened: false,
            work_dir,
        })
    }

    /// This environment with raised header limits (the reliability suite's hostile requests).
    pub fn with_hardened(&self) -> Env {
        Env {
            hardened: true,
            ..self.clone()
        }
    }

    pub fn describe(&self) -> String {
        let bin = self
            .envoy_bin
            .as_ref()
            .map(|b| b.display().to_string())
            .unwrap_or("-".into());
        let filter = format!(
            "filter={} ({})",
            self.build.name(),
            self.build.file().display()
        );
        match &self.runtime {
            Runtime::Docker { image } => {
                format!("runtime=docker image={image} (validate with: {bin}) {filter}")
            }
            Runtime::Native => format!("runtime=native envoy={bin} {filter}"),
        }
    }

    pub fn runtime_name(&self) -> &'static str {
        match self.runtime {
            Runtime::Docker { .. } => "docker",
            Runtime::Native => "native",
        }
    }
}

/// Ports of one Envoy instance: admin, front, one per upstream cluster.
#[derive(Debug, Clone)]
pub struct Ports {
    pub base: u16,
    pub admin: u16,
    pub front: u16,
    pub upstream: BTreeMap<&'static str, u16>,
}

static PORT_SEQ: AtomicU32 = AtomicU32::new(0);

/// Picks a block of free ports that no leftover Envoy (ours or anyone's) is bound to.
fn allocate_ports() -> Result<Ports, String> {
    let width = 2 + CLUSTERS.len() as u32;
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0));
    for _ in 0..200 {
        let n = PORT_SEQ.fetch_add(1, Ordering::Relaxed);
        let slot = (seed.wrapping_add(n.wrapping_mul(7919))) % 3000;
        let base = 20_000 + slot * 12;
        let all_free =
            (0..width).all(|i| TcpListener::bind(("0.0.0.0", (base + i) as u16)).is_ok());
        if all_free {
            let base = base as u16;
            let upstream = CLUSTERS
                .iter()
                .enumerate()
                .map(|(i, c)| (*c, base + 2 + i as u16))
                .collect();
            return Ok(Ports {
                base,
                admin: base,
                front: base + 1,
                upstream,
            });
        }
    }
    Err("no free port block found".into())
}

/// The Envoy config of one scenario, from the project's renderer (envoy/config): the filter
/// under test in front of one upstream listener per cluster of [`CLUSTERS`]; `x-subset`
/// routes for v1..v3 (the Istio way), then `cluster_header: x-upstream-cluster` (404 when the
/// cluster does not exist, `x-front-flags` saying NC); each upstream echoes the routing
/// headers it received (`x-echo-cluster-header`, `x-echo-subset-header`).
pub fn render(
    env: &Env,
    ports: &Ports,
    run_dir: &str,
    plugin_json: &str,
    ecds: bool,
) -> String {
    let opts = LaunchOptions {
        ecds,
        ..LaunchOptions::default()
    };
    render_with(env, ports, run_dir, plugin_json, &opts)
}

/// [`render`] with a launch's options: ECDS delivery and each upstream's behaviour
/// ([`LaunchOptions::upstreams`]; the others answer 200 at once).
pub fn render_with(
    env: &Env,
    ports: &Ports,
    run_dir: &str,
    plugin_json: &str,
    opts: &LaunchOptions,
) -> String {
    let ecds = opts.ecds;
    let behaviour = |cluster: &str| opts.upstreams.iter().find(|u| u.cluster == cluster);
    let subset_of = |cluster: &str| cluster.strip_prefix("color-").unwrap_or(cluster).to_string();
    let spec = envoy_config::Spec {
        comment: vec![
            "subset-router integration suite: one scenario's Envoy (rendered by envoy/config)."
                .into(),
        ],
        admin: envoy_config::Addr::new("127.0.0.1", ports.admin),
        front: envoy_config::Addr::new("0.0.0.0", ports.front),
        build: env.build.render_build(run_dir),
        plugin_json: plugin_json.to_owned(),
        delivery: if ecds {
            envoy_config::Delivery::Ecds {
                dir: format!("{run_dir}/{ECDS_DIR}"),
            }
        } else {
            envoy_config::Delivery::Inline
        },
        header_routes: Some((
            "x-subset".into(),
            ["v1", "v2", "v3"]
                .iter()
                .map(|s| (s.to_string(), s.to_string()))
                .collect(),
        )),
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
        fail_header: None,
    };
    envoy_config::render(&spec)
}

/// Directory of the ECDS resource, relative to the scenario directory.
pub const ECDS_DIR: &str = "xds";

enum Proc {
    Docker { id: String },
    Native { child: Child },
}

/// One running Envoy. Dropping it stops it (and removes the container).
pub struct Envoy {
    pub name: String,
    pub ports: Ports,
    pub dir: PathBuf,
    proc: Option<Proc>,
    log_file: PathBuf,
    /// The scenario directory as Envoy sees it (`CONTAINER_DIR` in Docker, `dir` natively).
    run_dir: String,
}

/// Extras of a launch: the filter delivered by ECDS from a file Envoy watches (as Istio
/// delivers WasmPlugin updates; [`Envoy::replace_ecds`] swaps it), and the worker count.
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    pub ecds: bool,
    /// `--concurrency` (default 1; 2 makes two VMs / worker threads share the traffic).
    pub concurrency: Option<u32>,
    /// Upstreams that do not answer 200 at once (a failing or slow version, for the canary
    /// guard); every cluster not named here behaves as always.
    pub upstreams: Vec<UpstreamBehaviour>,
    /// `Some(routes)`: the filter disabled at the listener and enabled only on these routes
    /// (Envoy Gateway's shape for a policy attached to routes; see envoy_config::Spec).
    pub filter_routes: Option<Vec<String>>,
}

/// How one upstream cluster of [`CLUSTERS`] answers in a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBehaviour {
    pub cluster: String,
    /// Response status (`None`: 200); body and `x-served-by` stay the subset's.
    pub status: Option<u16>,
    /// Answer after this many milliseconds (`None`: at once).
    pub delay_ms: Option<u64>,
}

impl UpstreamBehaviour {
    /// `cluster` answers `status`.
    pub fn failing(cluster: &str, status: u16) -> Self {
        Self {
            cluster: cluster.into(),
            status: Some(status),
            delay_ms: None,
        }
    }

    /// `cluster` answers 200 after `delay_ms`.
    pub fn slow(cluster: &str, delay_ms: u64) -> Self {
        Self {
            cluster: cluster.into(),
            status: None,
            delay_ms: Some(delay_ms),
        }
    }
}

/// A scenario directory written and ready to validate or run.
struct Prepared {
    ports: Ports,
    dir: PathBuf,
    cfg_path_for_run: String,
    run_dir: String,
    concurrency: u32,
}

/// Outcome of `--mode validate`.
pub struct Validation {
    pub ok: bool,
    pub output: String,
}

impl Envoy {
    /// Writes the scenario directory (config, plugin JSON, a copy of the wasm), validates
    /// the config with `envoy --mode validate`, and starts Envoy. Waits for admin `/ready`.
    pub fn start(env: &Env, name: &str, plugin_json: &str) -> Result<Envoy, String> {
        Envoy::start_with(env, name, plugin_json, &LaunchOptions::default())
    }

    /// [`Envoy::start`] with the extras of [`LaunchOptions`].
    pub fn start_with(
        env: &Env,
        name: &str,
        plugin_json: &str,
        opts: &LaunchOptions,
    ) -> Result<Envoy, String> {
        let (mut envoy, validation) = Envoy::launch_with(env, name, plugin_json, opts)?;
        if !validation.ok {
            return Err(format!(
                "`envoy --mode validate` rejected {}: {}\n--- validate output (excerpt) ---\n{}",
                envoy.dir.join("envoy.host.yaml").display(),
                first_error_line(&validation.output),
                log_excerpt(&validation.output)
            ));
        }
        envoy.wait_ready()?;
        Ok(envoy)
    }

    /// Like `start` but does not judge: returns the running (or exited) Envoy and the
    /// validation outcome. Used by the negative scenario.
    pub fn launch(env: &Env, name: &str, plugin_json: &str) -> Result<(Envoy, Validation), String> {
        Envoy::launch_with(env, name, plugin_json, &LaunchOptions::default())
    }

    /// Writes the scenario directory and runs only `envoy --mode validate` (no Envoy starts).
    pub fn validate_only(
        env: &Env,
        name: &str,
        plugin_json: &str,
        opts: &LaunchOptions,
    ) -> Result<Validation, String> {
        let p = Envoy::prepare(env, name, plugin_json, opts)?;
        validate(env, &p.dir)
    }

    /// `launch` with the extras of [`LaunchOptions`].
    pub fn launch_with(
        env: &Env,
        name: &str,
        plugin_json: &str,
        opts: &LaunchOptions,
    ) -> Result<(Envoy, Validation), String> {
        let prepared = Envoy::prepare(env, name, plugin_json, opts)?;
        Envoy::run_prepared(env, name, prepared)
    }

    fn prepare(
        env: &Env,
        name: &str,
        plugin_json: &str,
        opts: &LaunchOptions,
    ) -> Result<Prepared, String> {
        if let Some(u) = opts.upstreams.iter().find(|u| !CLUSTERS.contains(&u.cluster.as_str())) {
            return Err(format!("no upstream cluster {:?} (clusters: {CLUSTERS:?})", u.cluster));
        }
        let ports = allocate_ports()?;
        let dir = env.work_dir.join(format!("{name}-{}", ports.base));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let filter_copy = dir.join(env.build.file_name());
        fs::copy(env.build.file(), &filter_copy).map_err(|e| format!("copy filter: {e}"))?;
        fs::write(dir.join("plugin.json"), plugin_json).map_err(|e| e.to_string())?;

        let host_dir = dir.to_string_lossy().into_owned();
        let run_dir = match env.runtime {
            Runtime::Docker { .. } => CONTAINER_DIR.to_string(),
            Runtime::Native => host_dir.clone(),
        };
        // `--mode validate` runs natively (host paths) when a binary is known.
        let host_cfg = render_with(env, &ports, &host_dir, plugin_json, opts);
        let cfg_for_run = render_with(env, &ports, &run_dir, plugin_json, opts);
        fs::write(dir.join("envoy.yaml"), &cfg_for_run).map_err(|e| e.to_string())?;
        fs::write(dir.join("envoy.host.yaml"), &host_cfg).map_err(|e| e.to_string())?;
        if opts.ecds {
            let xds = dir.join(ECDS_DIR);
            fs::create_dir_all(&xds).map_err(|e| format!("{}: {e}", xds.display()))?;
            let resource = envoy_config::ecds_resource(&env.build.render_build(&run_dir), plugin_json);
            fs::write(xds.join(envoy_config::ECDS_FILE), resource).map_err(|e| e.to_string())?;
        }
        let cfg_path_for_run = match env.runtime {
            Runtime::Docker { .. } => format!("{CONTAINER_DIR}/envoy.yaml"),
            Runtime::Native => dir.join("envoy.yaml").to_string_lossy().into_owned(),
        };
        Ok(Prepared {
            ports,
            dir,
            cfg_path_for_run,
            run_dir,
            concurrency: opts.concurrency.unwrap_or(1),
        })
    }

    fn run_prepared(
        env: &Env,
        name: &str,
        prepared: Prepared,
    ) -> Result<(Envoy, Validation), String> {
        let Prepared {
            ports,
            dir,
            cfg_path_for_run,
            run_dir,
            concurrency,
        } = prepared;
        let validation = validate(env, &dir)?;
        let log_file = dir.join("envoy.log");
        let base_id = ports.base.to_string();
        let concurrency = concurrency.to_string();
        let envoy_args = [
            "-c",
            cfg_path_for_run.as_str(),
            "--concurrency",
            concurrency.as_str(),
            "--base-id",
            base_id.as_str(),
            "--log-level",
            "info",
        ];
        let proc = match &env.runtime {
            Runtime::Docker { image } => {
                let cname = format!("subset-router-it-{}-{}", std::process::id(), ports.base);
                // No --rm: if Envoy exits at start-up its log must still be readable
                // (`docker logs`); Drop always runs `docker rm -f`.
                let out = Command::new("docker")
                    .args(["run", "-d", "--name", &cname, "--network", "host"])
                    .arg("--label")
                    .arg(format!("{CONTAINER_LABEL}={}", std::process::id()))
                    .arg("-v")
                    .arg(format!("{}:{CONTAINER_DIR}:ro", dir.display()))
                    // The native build: Envoy loads libsubset_router.so from this directory.
                    .arg("-e")
                    .arg(format!("{MODULES_PATH_VAR}={CONTAINER_DIR}"))
                    // Same path in the official image (whose entrypoint is a shell script)
                    // and in the local FROM-scratch image (entrypoint envoy, no shell).
                    .args(["--entrypoint", ENVOY_IN_IMAGE])
                    .arg(image)
                    .args(envoy_args)
                    .output()
                    .map_err(|e| format!("docker run: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "docker run failed: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                Proc::Docker { id }
            }
            Runtime::Native => {
                let log = fs::File::create(&log_file).map_err(|e| e.to_string())?;
                let log2 = log.try_clone().map_err(|e| e.to_string())?;
                let child = Command::new(env.envoy_bin.as_ref().unwrap())
                    .args(envoy_args)
                    .env(MODULES_PATH_VAR, &dir)
                    .stdin(Stdio::null())
                    .stdout(log)
                    .stderr(log2)
                    .spawn()
                    .map_err(|e| format!("spawn envoy: {e}"))?;
                Proc::Native { child }
            }
        };
        Ok((
            Envoy {
                name: name.to_string(),
                ports,
                dir,
                proc: Some(proc),
                log_file,
                run_dir,
            },
            validation,
        ))
    }

    pub fn front(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.front))
    }

    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.admin))
    }

    pub fn client(&self) -> Client {
        Client::new(self.front())
    }

    /// Envoy's log so far (container log or the native log file).
    pub fn logs(&self) -> String {
        match &self.proc {
            Some(Proc::Docker { id }) => Command::new("docker")
                .args(["logs", id])
                .output()
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_else(|e| format!("(docker logs failed: {e})")),
            _ => fs::read_to_string(&self.log_file).unwrap_or_default(),
        }
    }

    /// `Some(description)` once the process/container has exited.
    pub fn exited(&mut self) -> Option<String> {
        match &mut self.proc {
            Some(Proc::Native { child }) => match child.try_wait() {
                Ok(Some(st)) => Some(format!("envoy exited: {st}")),
                _ => None,
            },
            Some(Proc::Docker { id }) => {
                let out = Command::new("docker")
                    .args([
                        "inspect",
                        "-f",
                        "{{.State.Running}} {{.State.ExitCode}}",
                        id,
                    ])
                    .output()
                    .ok()?;
                let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
                match s.split_once(' ') {
                    Some(("false", code)) => Some(format!("container exited with code {code}")),
                    _ => None,
                }
            }
            None => Some("stopped".into()),
        }
    }

    /// Polls admin `/ready` until `LIVE`; fails early if Envoy exits.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut admin = Client::new(self.admin()).with_timeout(Duration::from_secs(2));
        let mut polls = 0u32;
        loop {
            if let Ok(r) = admin.get("/ready", &[]) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            polls += 1;
            // Checking the process is cheap natively; a `docker inspect` every ~0.5 s.
            let check = matches!(self.proc, Some(Proc::Native { .. })) || polls.is_multiple_of(10);
            if check {
                if let Some(why) = self.exited() {
                    let log = self.logs();
                    return Err(format!(
                        "Envoy `{}` did not become ready ({why}): {}. Config: {}\n--- Envoy log (excerpt) ---\n{}",
                        self.name,
                        first_error_line(&log),
                        self.dir.join("envoy.yaml").display(),
                        log_excerpt(&log)
                    ));
                }
            }
            if Instant::now() > deadline {
                let log = self.logs();
                return Err(format!(
                    "Envoy `{}` not ready after {:?} (admin {}): {}. Config: {}\n--- Envoy log (excerpt) ---\n{}",
                    self.name,
                    READY_TIMEOUT,
                    self.admin(),
                    first_error_line(&log),
                    self.dir.join("envoy.yaml").display(),
                    log_excerpt(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for Envoy to exit by itself (for the rejected-config case).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(why) = self.exited() {
                return Some(why);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// All `subset_router` counters from admin `/stats`, as printed (names unchanged).
    pub fn raw_stats(&self) -> Result<BTreeMap<String, u64>, String> {
        let mut admin = Client::new(self.admin());
        let r = admin.get("/stats?filter=subset_router", &[])?;
        if r.status != 200 {
            return Err(format!("/stats answered {}", r.status));
        }
        Ok(parse_stats(&r.body_str()))
    }

    pub fn stop(&mut self) {
        match self.proc.take() {
            Some(Proc::Native { mut child }) => {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                // SIGTERM first so Envoy cleans its shared memory, then make sure.
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .stderr(Stdio::null())
                    .status();
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Proc::Docker { id }) => {
                // Keep the container log next to the config for post-mortems.
                if let Ok(o) = Command::new("docker").args(["logs", &id]).output() {
                    let mut log = o.stdout;
                    log.extend_from_slice(&o.stderr);
                    let _ = fs::write(&self.log_file, log);
                }
                let _ = Command::new("docker")
                    .args(["rm", "-f", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            None => {}
        }
    }
}

/// Helpers of the reliability suite: the process, any stats, files Envoy watches.
impl Envoy {
    /// The Envoy process as the host sees it (native child, or the container's init process,
    /// which is envoy itself: the suite runs the image with `--entrypoint envoy`).
    pub fn host_pid(&self) -> Option<u32> {
        match &self.proc {
            Some(Proc::Native { child }) => Some(child.id()),
            Some(Proc::Docker { id }) => {
                let out = Command::new("docker")
                    .args(["inspect", "-f", "{{.State.Pid}}", id])
                    .output()
                    .ok()?;
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
            }
            None => None,
        }
    }

    /// Admin `/stats?filter=<regex>`: every integer stat whose name matches.
    pub fn stats(&self, filter: &str) -> Result<BTreeMap<String, u64>, String> {
        let mut admin = Client::new(self.admin());
        let r = admin.get(&format!("/stats?filter={filter}"), &[])?;
        if r.status != 200 {
            return Err(format!("/stats answered {}", r.status));
        }
        Ok(parse_stats(&r.body_str()))
    }

    /// Replaces the ECDS resource (a [`LaunchOptions::ecds`] launch) with one holding
    /// `plugin_json`, by writing a temporary file next to it and renaming it over the old one,
    /// the way a file-based xDS update must be made.
    pub fn replace_ecds(&self, env: &Env, plugin_json: &str) -> Result<(), String> {
        let resource = envoy_config::ecds_resource(&env.build.render_build(&self.run_dir), plugin_json);
        let path = self.dir.join(ECDS_DIR).join(envoy_config::ECDS_FILE);
        let tmp = path.with_extension("tmp-swap");
        fs::write(&tmp, resource).map_err(|e| format!("{}: {e}", tmp.display()))?;
        fs::rename(&tmp, &path)
            .map_err(|e| format!("rename {} -> {}: {e}", tmp.display(), path.display()))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `envoy --mode validate -c <config with host paths>`: natively when a binary is known,
/// else inside the container image.
fn validate(env: &Env, dir: &Path) -> Result<Validation, String> {
    let out = if let Some(bin) = &env.envoy_bin {
        Command::new(bin)
            .args(["--mode", "validate", "--log-level", "info", "-c"])
            .arg(dir.join("envoy.host.yaml"))
            .env(MODULES_PATH_VAR, dir)
            .output()
    } else if let Runtime::Docker { image } = &env.runtime {
        Command::new("docker")
            .args(["run", "--rm", "--network", "none", "-v"])
            .arg(format!("{}:{CONTAINER_DIR}:ro", dir.display()))
            .arg("-e")
            .arg(format!("{MODULES_PATH_VAR}={CONTAINER_DIR}"))
            .args(["--entrypoint", ENVOY_IN_IMAGE])
            .arg(image)
            .args([
                "--mode",
                "validate",
                "-c",
                &format!("{CONTAINER_DIR}/envoy.yaml"),
            ])
            .output()
    } else {
        return Err("no envoy binary for --mode validate".into());
    }
    .map_err(|e| format!("envoy --mode validate: {e}"))?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::write(dir.join("validate.log"), &output);
    Ok(Validation {
        ok: out.status.success(),
        output,
    })
}

/// Parses admin `/stats` text (`name: value` lines), keeping integer values.
pub fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(": ")?;
            Some((k.trim().to_string(), v.trim().parse::<u64>().ok()?))
        })
        .collect()
}

/// Warning/error/critical lines of an Envoy log plus its last lines: what explains a
/// failed start without the start-up banner.
pub fn log_excerpt(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let tail_from = lines.len().saturating_sub(12);
    let mut out: Vec<&str> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let important =
            l.contains("][warning][") || l.contains("][error][") || l.contains("][critical][");
        if important || i >= tail_from {
            out.push(l);
        }
    }
    let n = out.len();
    out[n.saturating_sub(60)..].join("\n")
}

/// The first error/critical line of an Envoy log, without its timestamp prefix.
pub fn first_error_line(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("][error][") || l.contains("][critical]["))
        .or_else(|| log.lines().rev().find(|l| !l.trim().is_empty()))
        .map(|l| {
            l.rsplit_once("] ")
                .map(|(_, m)| m)
                .unwrap_or(l)
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "(empty log)".into())
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let out = render(&env, &ports, "/run", r#"{"default":{"subset":"v1"}}"#, false);
            assert!(out.contains(r#"value: "{\"default\":{\"subset\":\"v1\"}}""#));
            assert_eq!(out.contains("/run/subset_router.wasm"), build.name() == "wasm");
            assert_eq!(out.contains("dynamic_module_config"), build.name() == "native");
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
            upstreams: vec![UpstreamBehaviour::failing("v2", 503), UpstreamBehaviour::slow("v3", 300)],
            ..LaunchOptions::default()
        };
        let out = render_with(&env, &ports, "/run", r#"{"default":{"subset":"v1"}}"#, &opts);
        assert_eq!(out.matches("direct_response: { status: 503,").count(), 1);
        assert!(out.contains("status: 503, body: { inline_string: \"v2\\n\" }"));
        assert_eq!(out.matches("fixed_delay: 0.300s").count(), 1);
        assert_eq!(out.matches("direct_response: { status: 200,").count(), CLUSTERS.len() - 1);
    }

    #[test]
    fn parses_stats() {
        let m = parse_stats(
            "wasmcustom.subset_router.rule.a.subset.v1: 3\nfoo.hist: P0(nan,1)\nx: 0\n",
        );
        assert_eq!(m.get("wasmcustom.subset_router.rule.a.subset.v1"), Some(&3));
        assert_eq!(m.len(), 2);
    }
}
