//! Envoy for the suites: Docker container or native process, with a config rendered per
//! scenario. One job per module:
//!
//! * `env`, `filter_build`, `host`: what the suite runs on (runtime, filter build, binaries),
//!   resolved once from the environment;
//! * `ports`: a free block of ports per Envoy;
//! * `options`, `render`: what a launch may change, and the config the renderer
//!   (envoy/config) makes of it;
//! * `launch`: the scenario directory written, validated and Envoy started on it;
//! * `process`: the running Envoy (readiness, logs, exit, stop);
//! * `stats`, `validate`, `logs`: admin `/stats`, `envoy --mode validate`, log excerpts.
//!
//! Everything public is re-exported here: callers name `envoy::X`, never a submodule.

mod env;
mod filter_build;
mod host;
mod launch;
mod logs;
mod options;
mod ports;
mod process;
mod render;
mod stats;
mod validate;

pub use env::{Env, Runtime};
pub use filter_build::FilterBuild;
pub use host::docker_answers;
pub use logs::{first_error_line, log_excerpt, tail};
pub use options::{LaunchOptions, UpstreamBehaviour};
pub use ports::Ports;
pub use process::{terminate, Envoy};
pub use render::{render, render_with};
pub use stats::parse_stats;
pub use validate::Validation;

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
    // Two services behind one proxy (clusterTemplate `a-{subset}` / `b-{subset}`): the
    // isolation scenarios' two configurations, one listener each.
    "a-v1",
    "a-v2",
    "b-v1",
    "b-v2",
];

/// The most front listeners one launch may add to the first ([`LaunchOptions::more_fronts`]).
pub const MAX_MORE_FRONTS: usize = 3;

/// Where the scenario directory is mounted inside the container.
pub const CONTAINER_DIR: &str = "/etc/subset-router";

/// The envoy binary inside the image (official and local image alike).
pub const ENVOY_IN_IMAGE: &str = "/usr/local/bin/envoy";

/// Where Envoy looks for `lib<name>.so` dynamic modules (the native build).
const MODULES_PATH_VAR: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";

/// Label on every container the suite starts; its value is the suite's PID.
pub const CONTAINER_LABEL: &str = "org.subset-router.it.pid";

/// Directory of the ECDS resource, relative to the scenario directory.
pub const ECDS_DIR: &str = "xds";
