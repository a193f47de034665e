//! A real Prometheus server (the binary from Debian's `prometheus` package) scraping the
//! fleet's Envoys every second: its config written per start, its TSDB in a fresh directory,
//! stopped (SIGTERM) with the suite or when a scenario takes it away.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use subset_router_it::envoy::terminate;
use subset_router_it::Client;

/// One scrape target: `127.0.0.1:<port>`, its metrics path and its target labels.
pub struct Target {
    pub job: &'static str,
    pub port: u16,
    pub path: &'static str,
    pub labels: Vec<(&'static str, String)>,
}

pub struct Prometheus {
    pub port: u16,
    child: Option<Child>,
    pub log: PathBuf,
}

/// `PROMETHEUS_BIN`, else `prometheus` on `PATH`, else the binary scripts/test-fleet.sh
/// extracts from Debian's package into `.cache/prometheus-deb`.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("prometheus"))
            .find(|f| f.is_file())
    }) {
        return Some(p);
    }
    let cached =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/prometheus-deb/usr/bin/prometheus");
    cached.is_file().then_some(cached)
}

/// The config: every target scraped every second (`scrape_interval: 1s`), Envoy's
/// `/stats/prometheus` filtered to the filter's own stats (less to scrape on a small machine).
pub fn config(targets: &[Target]) -> String {
    let mut out = String::from(
        "# subset-router fleet suite: one Prometheus scraping every proxy each second.\n\
         global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n",
    );
    let mut jobs: Vec<&str> = targets.iter().map(|t| t.job).collect();
    jobs.dedup();
    for job in jobs {
        let of_job: Vec<&Target> = targets.iter().filter(|t| t.job == job).collect();
        out.push_str(&format!(
            "  - job_name: {job}\n    metrics_path: {}\n",
            of_job[0].path
        ));
        if of_job[0].path == "/stats/prometheus" {
            out.push_str("    params: { filter: [\"subset_router\"] }\n");
        }
        out.push_str("    static_configs:\n");
        for t in of_job {
            let labels = t
                .labels
                .iter()
                .map(|(k, v)| format!("{k}: \"{v}\""))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "      - targets: [\"127.0.0.1:{}\"]\n        labels: {{ {labels} }}\n",
                t.port
            ));
        }
    }
    out
}

impl Prometheus {
    /// Writes `config` and a fresh TSDB directory under `dir`, starts the server on
    /// `127.0.0.1:port` and waits for `/-/ready`.
    pub fn start(bin: &Path, dir: &Path, port: u16, config: &str) -> Result<Prometheus, String> {
        let n = (0..)
            .find(|i| !dir.join(format!("tsdb-{i}")).exists())
            .unwrap_or(0);
        let tsdb = dir.join(format!("tsdb-{n}"));
        fs::create_dir_all(&tsdb).map_err(|e| format!("{}: {e}", tsdb.display()))?;
        let cfg = dir.join("prometheus.yml");
        fs::write(&cfg, config).map_err(|e| e.to_string())?;
        let log = dir.join(format!("prometheus-{n}.log"));
        let out = fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut p = Prometheus {
            port,
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if p.get("/-/ready").is_ok_and(|(s, _)| s == 200) {
                return Ok(p);
            }
            if let Some(Ok(Some(st))) = p.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "prometheus exited at start ({st}): {}",
                    fs::read_to_string(&p.log).unwrap_or_default()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "prometheus not ready after 30 s (log {})",
                    p.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get(&self, path: &str) -> Result<(u16, String), String> {
        let mut c = Client::new(std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))
            .with_timeout(Duration::from_secs(5));
        let r = c.get(path, &[])?;
        Ok((r.status, r.body_str()))
    }

    /// An instant query: the `data.result` list.
    pub fn query(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let path = format!(
            "/api/v1/query?query={}",
            subset_router_core::fleet::percent_encode(promql)
        );
        let (status, body) = self.get(&path)?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{promql}: {e}: {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{promql}: {status} {body}"));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The first sample's value of an instant query, if any.
    pub fn scalar(&self, promql: &str) -> Result<Option<f64>, String> {
        Ok(self.query(promql)?.first().and_then(|s| {
            s["value"]
                .get(1)
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse().ok())
        }))
    }

    /// Queries Prometheus itself has answered on `/api/v1/query`, every status code: the sum
    /// of `prometheus_http_requests_total{handler="/api/v1/query"}` in its own `/metrics`
    /// (read there, not through the query API, so reading it adds no query).
    pub fn queries_served(&self) -> Result<u64, String> {
        let (status, body) = self.get("/metrics")?;
        if status != 200 {
            return Err(format!("/metrics answered {status}"));
        }
        Ok(body
            .lines()
            .filter(|l| {
                l.starts_with("prometheus_http_requests_total{")
                    && l.contains("handler=\"/api/v1/query\"")
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    /// SIGTERM, then SIGKILL after 10 s; the port is free once this returns.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(
                &mut child,
                Duration::from_secs(10),
                Duration::from_millis(50),
            );
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
