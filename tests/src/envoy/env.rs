//! The suite's environment, resolved once: where Envoy runs, which filter build is under test,
//! which envoy binary validates, and the per-run scratch directory.

use super::host::{
    docker_answers, env_nonempty, remove_orphan_containers, script_last_line, which,
};
use super::FilterBuild;
use std::fs;
use std::path::{Path, PathBuf};

/// Where Envoy runs: a container of `image`, or the native binary ([`Env::envoy_bin`]).
#[derive(Debug, Clone)]
pub enum Runtime {
    Docker { image: String },
    Native,
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

impl Env {
    /// Reads `FILTER` (wasm|native, default wasm), `WASM` / `NATIVE_SO` (the filter files),
    /// `ENVOY_RUNTIME` (docker|native|auto), `ENVOY_IMAGE`, `ENVOY_BIN`.
    /// Missing values fall back to `dist/subset_router.wasm` / `dist/libsubset_router.so`,
    /// `scripts/envoy-image.sh`, `scripts/envoy-native.sh` / `envoy` on PATH.
    /// `scratch` is the parent of the per-run directory (the test passes CARGO_TARGET_TMPDIR).
    pub fn from_env(scratch: &Path) -> Result<Env, String> {
        let build = FilterBuild::from_env(env_nonempty("FILTER").as_deref().unwrap_or("wasm"))?;

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

    /// This environment with another filter build under test (a fleet that mixes the two).
    pub fn with_build(&self, build: FilterBuild) -> Env {
        Env {
            build,
            ..self.clone()
        }
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
