//! One running Envoy (native child or container): addresses, readiness, logs, exit, stop.

use super::{first_error_line, log_excerpt, Ports};
use crate::http::Client;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `wait_ready` waits for admin `/ready` before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(40);

/// What stops with the Envoy: its container or its child process.
pub(super) enum Proc {
    Docker { id: String },
    Native { child: Child },
}

/// One running Envoy. Dropping it stops it (and removes the container).
pub struct Envoy {
    pub name: String,
    pub ports: Ports,
    pub dir: PathBuf,
    // Set by `launch`; `None` once stopped.
    pub(super) proc: Option<Proc>,
    pub(super) log_file: PathBuf,
    /// The scenario directory as Envoy sees it (`CONTAINER_DIR` in Docker, `dir` natively).
    pub(super) run_dir: String,
}

impl Envoy {
    pub fn front(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.front))
    }

    /// The `i`-th front listener: 0 the first, 1.. those of [`LaunchOptions::more_fronts`]
    /// (`front-2`, …).
    ///
    /// [`LaunchOptions::more_fronts`]: super::LaunchOptions::more_fronts
    pub fn front_n(&self, i: usize) -> SocketAddr {
        let port = match i {
            0 => self.ports.front,
            i => self.ports.more_fronts.get(i - 1).copied().unwrap_or(0),
        };
        SocketAddr::from(([127, 0, 0, 1], port))
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

    pub fn stop(&mut self) {
        match self.proc.take() {
            Some(Proc::Native { mut child }) => {
                // SIGTERM first so Envoy cleans its shared memory, then make sure.
                terminate(
                    &mut child,
                    Duration::from_secs(5),
                    Duration::from_millis(20),
                );
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
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a child process the way a supervisor would: SIGTERM, polled every `poll` for up to
/// `grace`, then SIGKILL; it is reaped when this returns. A child that already exited is only
/// reaped.
pub fn terminate(child: &mut Child, grace: Duration, poll: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(poll);
    }
    let _ = child.kill();
    let _ = child.wait();
}
