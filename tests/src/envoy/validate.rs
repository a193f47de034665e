//! `envoy --mode validate` of a scenario's config, natively or in the container image.

use super::{Env, Runtime, CONTAINER_DIR, ENVOY_IN_IMAGE, MODULES_PATH_VAR};
use std::fs;
use std::path::Path;
use std::process::Command;

/// Outcome of `--mode validate`.
pub struct Validation {
    pub ok: bool,
    pub output: String,
}

/// `envoy --mode validate -c <config with host paths>`: natively when a binary is known,
/// else inside the container image.
pub(super) fn validate(env: &Env, dir: &Path) -> Result<Validation, String> {
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
