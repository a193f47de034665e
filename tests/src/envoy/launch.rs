//! Launching Envoy for a scenario: its directory written (configs, plugin JSON, a copy of the
//! filter, the ECDS resource), `envoy --mode validate` run, the process or container started;
//! and the ECDS resource swapped later.

use super::ports::allocate_ports;
use super::process::Proc;
use super::validate::validate;
use super::{
    first_error_line, log_excerpt, render_with, Env, Envoy, LaunchOptions, Ports, Runtime,
    Validation, CLUSTERS, CONTAINER_DIR, CONTAINER_LABEL, ECDS_DIR, ENVOY_IN_IMAGE,
    MODULES_PATH_VAR,
};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A scenario directory written and ready to validate or run.
struct Prepared {
    ports: Ports,
    dir: PathBuf,
    cfg_path_for_run: String,
    run_dir: String,
    concurrency: u32,
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
        opts.check(&env.build)?;
        if let Some(u) = opts
            .upstreams
            .iter()
            .find(|u| !CLUSTERS.contains(&u.cluster.as_str()))
        {
            return Err(format!(
                "no upstream cluster {:?} (clusters: {CLUSTERS:?})",
                u.cluster
            ));
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
            let resource =
                envoy_config::ecds_resource(&env.build.render_build(&run_dir), plugin_json);
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

    /// Replaces the ECDS resource (a [`LaunchOptions::ecds`] launch) with one holding
    /// `plugin_json`, by writing a temporary file next to it and renaming it over the old one,
    /// the way a file-based xDS update must be made.
    pub fn replace_ecds(&self, env: &Env, plugin_json: &str) -> Result<(), String> {
        let resource =
            envoy_config::ecds_resource(&env.build.render_build(&self.run_dir), plugin_json);
        let path = self.dir.join(ECDS_DIR).join(envoy_config::ECDS_FILE);
        let tmp = path.with_extension("tmp-swap");
        fs::write(&tmp, resource).map_err(|e| format!("{}: {e}", tmp.display()))?;
        fs::rename(&tmp, &path)
            .map_err(|e| format!("rename {} -> {}: {e}", tmp.display(), path.display()))
    }
}
