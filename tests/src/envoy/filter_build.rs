//! The build of the filter under test (proxy-wasm `.wasm` or dynamic-module `.so`): its file,
//! the name Envoy loads it by, and how the renderer and the stats name it.

use super::host::{env_nonempty, repo_root};
use std::path::{Path, PathBuf};

/// The build of the filter under test, and where its file is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterBuild {
    /// `dist/subset_router.wasm` (proxy-wasm).
    Wasm(PathBuf),
    /// `dist/libsubset_router.so` (Envoy dynamic module).
    Native(PathBuf),
}

impl FilterBuild {
    /// The build `name` (`wasm` or `native`) from its file: `WASM` / `NATIVE_SO`, else
    /// `dist/subset_router.wasm` / `dist/libsubset_router.so` (relative paths from the
    /// repository). The file must exist.
    pub fn from_env(name: &str) -> Result<FilterBuild, String> {
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
        let build = match name {
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
        Ok(build)
    }

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
    pub(super) fn file_name(&self) -> &'static str {
        match self {
            FilterBuild::Wasm(_) => "subset_router.wasm",
            FilterBuild::Native(_) => "libsubset_router.so",
        }
    }

    /// The renderer's build, with the filter file as Envoy sees it in `run_dir`.
    pub(super) fn render_build(&self, run_dir: &str) -> envoy_config::Build {
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
