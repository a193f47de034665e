//! The Envoys the matrix runs: `(version, binary)` pairs, each binary's build line, and
//! whether it has V8 at all.

use super::*;

/// The build line of `envoy --version` (`<sha>/1.40.0/Clean/RELEASE/BoringSSL`), `?` if none.
pub(super) fn envoy_build_line(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.split_once("version: ").map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_else(|| "?".into())
}

/// `(version, binary)` pairs: `COMPAT_ENVOYS="1.36.4=/p/envoy …"`, else `ENVOY_BIN`.
pub(super) fn envoys() -> Result<Vec<(String, PathBuf)>, String> {
    if let Ok(list) = std::env::var("COMPAT_ENVOYS") {
        let mut out = Vec::new();
        for item in list.split_whitespace() {
            let (v, p) = item
                .split_once('=')
                .ok_or_else(|| format!("COMPAT_ENVOYS: {item:?} is not version=path"))?;
            out.push((v.to_string(), PathBuf::from(p)));
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    let bin = std::env::var("ENVOY_BIN")
        .map_err(|_| "set COMPAT_ENVOYS (scripts/test-compat.sh does) or ENVOY_BIN".to_string())?;
    let build = envoy_build_line(Path::new(&bin));
    let version = build.split('/').nth(1).unwrap_or("?").to_string();
    Ok(vec![(version, PathBuf::from(bin))])
}

/// `Some(Envoy's words)` when this binary cannot create a V8 VM: `envoy --mode validate` of the
/// probe's config (a config with a Wasm filter creates the VM during validation).
pub(super) fn v8_missing(cx: &Ctx) -> Result<Option<String>, String> {
    let mut env = cx.env.clone();
    env.build = FilterBuild::Wasm(cx.probe_wasm.clone());
    let v = Envoy::validate_only(&env, "v8-check", "{}", &LaunchOptions::default())?;
    Ok(v.output
        .lines()
        .find(|l| l.contains("compiled without support"))
        .map(|l| {
            l.rsplit_once("] ")
                .map(|(_, m)| m)
                .unwrap_or(l)
                .trim()
                .to_string()
        }))
}
