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

const READY_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Debug, Clone)]
pub enum Runtime {
    Docker { image: String },
    Native,
}

/// Everything the suite needs from its environment, resolved once.
#[derive(Debug, Clone)]
pub struct Env {
    pub runtime: Runtime,
    /// Host path of the filter under test.
    pub wasm: PathBuf,
    /// Native envoy binary: runs the native runtime and `--mode validate`. Optional in
    /// Docker mode (validation then runs in the container).
    pub envoy_bin: Option<PathBuf>,
    pub template: String,
    pub template_path: PathBuf,
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
    /// Reads `WASM`, `ENVOY_RUNTIME` (docker|native|auto), `ENVOY_IMAGE`, `ENVOY_BIN`.
    /// Missing values fall back to `dist/subset_router.wasm`, `scripts/envoy-image.sh`,
    /// `scripts/envoy-native.sh` / `envoy` on PATH.
    /// `scratch` is the parent of the per-run directory (the test passes CARGO_TARGET_TMPDIR).
    pub fn from_env(scratch: &Path) -> Result<Env, String> {
        let root = repo_root();
        let wasm = env_nonempty("WASM")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("dist/subset_router.wasm"));
        let wasm = if wasm.is_relative() {
            root.join(wasm)
        } else {
            wasm
        };
        if !wasm.is_file() {
            return Err(format!(
                "filter not found at {} (set WASM=<path> or run `make build` first)",
                wasm.display()
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

        let template_path = root.join("envoy/envoy.template.yaml");
        let template = fs::read_to_string(&template_path)
            .map_err(|e| format!("{}: {e}", template_path.display()))?;

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
            wasm,
            envoy_bin,
            template,
            template_path,
            work_dir,
        })
    }

    pub fn describe(&self) -> String {
        let bin = self
            .envoy_bin
            .as_ref()
            .map(|b| b.display().to_string())
            .unwrap_or("-".into());
        match &self.runtime {
            Runtime::Docker { image } => {
                format!("runtime=docker image={image} (validate with: {bin})")
            }
            Runtime::Native => format!("runtime=native envoy={bin}"),
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

/// Renders the template: `{{KEY}}` placeholders only; any one left over is an error.
pub fn render_template(
    template: &str,
    ports: &Ports,
    wasm_file: &str,
    plugin_json: &str,
) -> Result<String, String> {
    render_template_with(template, ports, wasm_file, plugin_json, &[])
}

/// `render_template` with more `{{KEY}}` placeholders.
pub fn render_template_with(
    template: &str,
    ports: &Ports,
    wasm_file: &str,
    plugin_json: &str,
    extra: &[(&str, &str)],
) -> Result<String, String> {
    let mut vars: Vec<(String, String)> = vec![
        ("ADMIN_PORT".into(), ports.admin.to_string()),
        ("FRONT_PORT".into(), ports.front.to_string()),
        ("WASM_FILE".into(), wasm_file.to_string()),
        ("PLUGIN_CONFIG".into(), yaml_quote(plugin_json)),
    ];
    for (c, p) in &ports.upstream {
        vars.push((
            format!("PORT_{}", c.to_ascii_uppercase().replace('-', "_")),
            p.to_string(),
        ));
    }
    for (k, v) in extra {
        vars.push((k.to_string(), v.to_string()));
    }
    let mut out = template.to_string();
    for (k, v) in &vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(i) = out.find("{{") {
        let end = out[i..]
            .find("}}")
            .map(|j| i + j + 2)
            .unwrap_or(out.len().min(i + 40));
        return Err(format!(
            "unrendered placeholder {} in the Envoy template",
            &out[i..end]
        ));
    }
    Ok(out)
}

/// A YAML double-quoted scalar holding `s` verbatim.
pub fn yaml_quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

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

/// Extras of a launch (used by the reliability suite): another template than
/// `Env::template`, and more files written into the scenario directory before Envoy starts.
/// Templates and file contents are rendered with the usual placeholders plus
/// `{{CONFIG_DIR}}`, the scenario directory as Envoy sees it.
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    pub template: Option<String>,
    /// (path relative to the scenario directory, content template)
    pub files: Vec<(String, String)>,
}

/// A scenario directory written and ready to validate or run.
struct Prepared {
    ports: Ports,
    dir: PathBuf,
    cfg_path_for_run: String,
    run_dir: String,
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
        let (mut envoy, validation) = Envoy::launch(env, name, plugin_json)?;
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
        let Prepared {
            ports,
            dir,
            cfg_path_for_run,
            run_dir,
        } = Envoy::prepare(env, name, plugin_json, opts)?;
        Envoy::run_prepared(env, name, ports, dir, cfg_path_for_run, run_dir)
    }

    fn prepare(
        env: &Env,
        name: &str,
        plugin_json: &str,
        opts: &LaunchOptions,
    ) -> Result<Prepared, String> {
        let template = opts.template.as_deref().unwrap_or(&env.template);
        let ports = allocate_ports()?;
        let dir = env.work_dir.join(format!("{name}-{}", ports.base));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let wasm_copy = dir.join("subset_router.wasm");
        fs::copy(&env.wasm, &wasm_copy).map_err(|e| format!("copy wasm: {e}"))?;
        fs::write(dir.join("plugin.json"), plugin_json).map_err(|e| e.to_string())?;

        let host_dir = dir.to_string_lossy().into_owned();
        let host_cfg = render_template_with(
            template,
            &ports,
            &wasm_copy.to_string_lossy(),
            plugin_json,
            &[("CONFIG_DIR", host_dir.as_str())],
        )?;
        let run_dir = match env.runtime {
            Runtime::Docker { .. } => CONTAINER_DIR.to_string(),
            Runtime::Native => host_dir.clone(),
        };
        let run_vars = [("CONFIG_DIR", run_dir.as_str())];
        let run_wasm = format!("{run_dir}/subset_router.wasm");
        let (cfg_for_run, cfg_path_for_run) = match env.runtime {
            Runtime::Docker { .. } => (
                render_template_with(template, &ports, &run_wasm, plugin_json, &run_vars)?,
                format!("{CONTAINER_DIR}/envoy.yaml"),
            ),
            Runtime::Native => (
                host_cfg.clone(),
                dir.join("envoy.yaml").to_string_lossy().into_owned(),
            ),
        };
        fs::write(dir.join("envoy.yaml"), &cfg_for_run).map_err(|e| e.to_string())?;
        fs::write(dir.join("envoy.host.yaml"), &host_cfg).map_err(|e| e.to_string())?;
        for (rel, content) in &opts.files {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let text = render_template_with(content, &ports, &run_wasm, plugin_json, &run_vars)?;
            fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(Prepared {
            ports,
            dir,
            cfg_path_for_run,
            run_dir,
        })
    }

    fn run_prepared(
        env: &Env,
        name: &str,
        ports: Ports,
        dir: PathBuf,
        cfg_path_for_run: String,
        run_dir: String,
    ) -> Result<(Envoy, Validation), String> {
        let validation = validate(env, &dir)?;
        let log_file = dir.join("envoy.log");
        let base_id = ports.base.to_string();
        let envoy_args = [
            "-c",
            cfg_path_for_run.as_str(),
            "--concurrency",
            "1",
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

    /// Renders `content` like a [`LaunchOptions`] file and puts it at `rel` (relative to the
    /// scenario directory) by writing a temporary file next to it and renaming it over the
    /// old one, the way a file-based xDS update must be made.
    pub fn replace_file(&self, rel: &str, content: &str, plugin_json: &str) -> Result<(), String> {
        let run_wasm = format!("{}/subset_router.wasm", self.run_dir);
        let text = render_template_with(
            content,
            &self.ports,
            &run_wasm,
            plugin_json,
            &[("CONFIG_DIR", self.run_dir.as_str())],
        )?;
        let path = self.dir.join(rel);
        let tmp = path.with_extension("tmp-swap");
        fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
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
            .output()
    } else if let Runtime::Docker { image } = &env.runtime {
        Command::new("docker")
            .args(["run", "--rm", "--network", "none", "-v"])
            .arg(format!("{}:{CONTAINER_DIR}:ro", dir.display()))
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
    fn yaml_quote_escapes() {
        assert_eq!(yaml_quote(r#"{"a":"b\"c"}"#), r#""{\"a\":\"b\\\"c\"}""#);
    }

    #[test]
    fn renders_every_placeholder() {
        let t = fs::read_to_string(repo_root().join("envoy/envoy.template.yaml")).unwrap();
        let ports = allocate_ports().unwrap();
        let out = render_template(&t, &ports, "/x.wasm", r#"{"default":{"subset":"v1"}}"#).unwrap();
        assert!(out.contains(r#"value: "{\"default\":{\"subset\":\"v1\"}}""#));
        assert!(!out.contains("{{"));
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
