//! Raw HTTP/1.1 over TCP for the reliability suite: exact request bytes (hostile requests,
//! forged headers), a keep-alive connection that tells a graceful close from a failure, a
//! multi-threaded load generator, and the RSS of a process.

use crate::http::{read_response, Response};
use std::io::{BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `GET <path> HTTP/1.1` with `host` and the given headers, byte for byte.
pub fn get_request(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    crate::http::request_bytes("GET", path, headers)
}

/// Sends `request` on a fresh connection and reads one response (until close when it has no
/// length). `Err` is a transport error (reset, timeout, unparsable response).
pub fn one_shot(addr: SocketAddr, request: &[u8], timeout: Duration) -> Result<Response, String> {
    let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    w.write_all(request).map_err(|e| format!("write: {e}"))?;
    let mut r = BufReader::with_capacity(64 * 1024, s);
    read_response(&mut r)
        .map(|(resp, _)| resp)
        .map_err(|e| format!("read: {e} ({:?})", e.kind()))
}

/// A keep-alive connection that behaves like an ordinary HTTP client: before reusing the
/// connection it checks whether the server closed it (FIN) and reconnects if so; a reused
/// connection closed before the first byte of the response is also a graceful close
/// (reconnect, send again). Everything else — a reset, a timeout, a truncated response — is
/// a failure, reported and never retried.
pub struct Conn {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    timeout: Duration,
    /// Graceful closes answered by reconnecting (not failures).
    pub reconnects: u64,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            conn: None,
            timeout: Duration::from_secs(10),
            reconnects: 0,
        }
    }

    fn connect(&self) -> std::io::Result<BufReader<TcpStream>> {
        let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        Ok(BufReader::with_capacity(16 * 1024, s))
    }

    /// True when the peer has closed the idle connection (a zero-length non-blocking peek).
    fn closed_by_peer(conn: &BufReader<TcpStream>) -> bool {
        if !conn.buffer().is_empty() {
            return false; // unread bytes: not a clean idle connection, let the read decide
        }
        let s = conn.get_ref();
        if s.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let closed = match s.peek(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        };
        let _ = s.set_nonblocking(false);
        closed
    }

    pub fn send(&mut self, request: &[u8]) -> Result<Response, String> {
        if let Some(c) = &self.conn {
            if Conn::closed_by_peer(c) {
                self.conn = None;
                self.reconnects += 1;
            }
        }
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            if self.conn.is_none() {
                self.conn = Some(self.connect().map_err(|e| format!("connect: {e}"))?);
            }
            let c = self.conn.as_mut().expect("connected above");
            if let Err(e) = c.get_mut().write_all(request) {
                self.conn = None;
                return Err(format!("write: {e} ({:?})", e.kind()));
            }
            match read_response(c) {
                Ok((resp, keep)) => {
                    if !keep {
                        self.conn = None;
                    }
                    return Ok(resp);
                }
                // FIN before any byte of the response on a reused connection: the server
                // closed it gracefully while our request was on its way. Reconnect once.
                Err(e) if reused && attempt == 0 && e.kind() == ErrorKind::UnexpectedEof => {
                    self.conn = None;
                    self.reconnects += 1;
                }
                Err(e) => {
                    self.conn = None;
                    return Err(format!("read: {e} ({:?})", e.kind()));
                }
            }
        }
        Err("connection closed twice in a row".into())
    }
}

/// Resident set size of a process, in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Outcome of one request of a load run, as the checker classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Phase (set by the driver) when the request was sent.
    pub phase: u32,
    /// Key the generator attached (e.g. a user id number).
    pub key: u32,
    /// Index into `LoadSpec::labels` of what served it, or `u16::MAX` for a failure.
    pub outcome: u16,
}

pub const FAILED: u16 = u16::MAX;

/// Builds request `seq`: its bytes and a key to record with it.
pub type MakeRequest = Arc<dyn Fn(u64) -> (Vec<u8>, u32) + Send + Sync>;
/// Classifies a response: `Ok(label)` when routed as expected, `Err(why)` for a failure.
pub type CheckResponse = Arc<dyn Fn(&Response) -> Result<String, String> + Send + Sync>;
/// Samples a value (e.g. an RSS) at a checkpoint.
pub type Sampler = Arc<dyn Fn() -> Option<u64> + Send + Sync>;
/// (checkpoint, sampled value)
type Samples = Arc<Mutex<Vec<(u64, Option<u64>)>>>;
/// What one load thread returns: records, failures, failure samples, reconnects.
type ThreadResult = (Vec<Record>, u64, Vec<String>, u64);

/// A load run: `threads` keep-alive connections sending `make(seq) -> (request, key)` until
/// `total` requests were sent or `stop` is raised, each response classified by `check`
/// (`Ok(label)` for a routed request, `Err(why)` for a failure).
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub threads: usize,
    pub total: Option<u64>,
    pub labels: Vec<String>,
    pub make: MakeRequest,
    pub check: CheckResponse,
    /// Completed-request counts at which `sample` is called (e.g. RSS at 50,000).
    pub checkpoints: Vec<u64>,
    pub sample: Option<Sampler>,
}

/// What a load run observed.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub records: Vec<Record>,
    pub sent: u64,
    pub failures: u64,
    pub failure_samples: Vec<String>,
    pub reconnects: u64,
    pub elapsed: Duration,
    /// (checkpoint, sampled value)
    pub samples: Vec<(u64, Option<u64>)>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A load run in progress: raise the phase while it runs, then `finish`.
pub struct Load {
    pub phase: Arc<AtomicU32>,
    pub stop: Arc<AtomicBool>,
    pub completed: Arc<AtomicU64>,
    handles: Vec<std::thread::JoinHandle<ThreadResult>>,
    samples: Samples,
    started: Instant,
}

impl Load {
    pub fn start(spec: LoadSpec) -> Load {
        let spec = Arc::new(spec);
        let phase = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let completed = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let handles = (0..spec.threads)
            .map(|_| {
                let (spec, phase, stop, next, completed, samples) = (
                    spec.clone(),
                    phase.clone(),
                    stop.clone(),
                    next.clone(),
                    completed.clone(),
                    samples.clone(),
                );
                std::thread::spawn(move || {
                    let mut conn = Conn::new(spec.addr);
                    let mut records = Vec::new();
                    let mut failures = 0u64;
                    let mut fail_samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let seq = next.fetch_add(1, Ordering::Relaxed);
                        if spec.total.is_some_and(|t| seq >= t) {
                            break;
                        }
                        let ph = phase.load(Ordering::Relaxed);
                        let (req, key) = (spec.make)(seq);
                        let outcome = match conn.send(&req).and_then(|r| (spec.check)(&r)) {
                            Ok(label) => spec
                                .labels
                                .iter()
                                .position(|l| *l == label)
                                .map_or(FAILED, |i| i as u16),
                            Err(e) => {
                                if fail_samples.len() < 5 {
                                    fail_samples.push(format!("request {seq}: {e}"));
                                }
                                FAILED
                            }
                        };
                        if outcome == FAILED {
                            failures += 1;
                        }
                        records.push(Record {
                            phase: ph,
                            key,
                            outcome,
                        });
                        let done = completed.fetch_add(1, Ordering::Relaxed) + 1;
                        if spec.checkpoints.contains(&done) {
                            let v = spec.sample.as_ref().and_then(|f| f());
                            samples.lock().unwrap().push((done, v));
                        }
                    }
                    (records, failures, fail_samples, conn.reconnects)
                })
            })
            .collect();
        Load {
            phase,
            stop,
            completed,
            handles,
            samples,
            started,
        }
    }

    pub fn set_phase(&self, p: u32) {
        self.phase.store(p, Ordering::SeqCst);
    }

    /// Requests completed so far.
    pub fn done(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more requests completed (or `timeout`).
    pub fn wait_more(&self, n: u64, timeout: Duration) -> bool {
        let target = self.done() + n;
        let deadline = Instant::now() + timeout;
        while self.done() < target {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Stops (if not bounded by `total`) and joins the threads.
    pub fn finish(self, stop: bool) -> LoadResult {
        if stop {
            self.stop.store(true, Ordering::SeqCst);
        }
        let mut res = LoadResult::default();
        for h in self.handles {
            let (records, failures, samples, reconnects) = h.join().unwrap_or_default();
            res.sent += records.len() as u64;
            res.records.extend(records);
            res.failures += failures;
            res.reconnects += reconnects;
            for s in samples {
                if res.failure_samples.len() < 5 {
                    res.failure_samples.push(s);
                }
            }
        }
        res.elapsed = self.started.elapsed();
        res.samples = self.samples.lock().unwrap().clone();
        res.samples.sort();
        res
    }
}
