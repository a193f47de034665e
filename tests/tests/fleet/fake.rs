//! Loopback HTTP servers the fleet suite runs itself:
//!
//! * [`FakeMetrics`] answers the guards' `GET /api/v1/query` in place of Prometheus (on its
//!   port, once it is stopped) with one kind of junk at a time — or, as the control, a valid
//!   answer that is a fleet breach. Every junk answer is a breach too if misread (100%
//!   errors), so a guard that took it for data would trip. It records each request's path.
//! * [`Decoy`] is a scrape target for the real Prometheus that no guard may count: the same
//!   guard families at 100% errors, under `app="payments"` (outside the selector) and as a
//!   named configuration (`instance="other"`, stored as `exported_instance`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What [`FakeMetrics`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with an HTML page.
    NotJson,
    /// 500 with a valid breaching body.
    Status500,
    /// A valid answer with no sample (`result: []`).
    EmptyVector,
    /// `errors` is `"NaN"`.
    NaN,
    /// `errors` is `"+Inf"`.
    PlusInf,
    /// `requests` is negative.
    Negative,
    /// `errors` (1000) above `requests` (100).
    ErrorsAboveRequests,
    /// Reads the request and never answers (the guard's `timeoutMs` runs out first).
    Hang,
    /// The control: 1000 requests, 1000 errors.
    Breach,
}

impl Answer {
    pub fn name(self) -> &'static str {
        match self {
            Answer::NotJson => "not JSON (200, HTML)",
            Answer::Status500 => "HTTP 500 (breaching body)",
            Answer::EmptyVector => "empty vector",
            Answer::NaN => "errors NaN",
            Answer::PlusInf => "errors +Inf",
            Answer::Negative => "requests -1000",
            Answer::ErrorsAboveRequests => "errors 1000 > requests 100",
            Answer::Hang => "no answer past timeoutMs",
            Answer::Breach => "valid breach 1000/1000",
        }
    }

    fn response(self) -> Option<(u16, &'static str, String)> {
        let vector = |requests: &str, errors: &str| {
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"counter":"requests"}},"value":[1765000000.5,"{requests}"]}},{{"metric":{{"counter":"errors"}},"value":[1765000000.5,"{errors}"]}}]}}}}"#
            )
        };
        let json = "application/json";
        Some(match self {
            Answer::NotJson => (
                200,
                "text/html",
                "<html><body>requests 1000 errors 1000</body></html>".into(),
            ),
            Answer::Status500 => (500, json, vector("1000", "1000")),
            Answer::EmptyVector => (
                200,
                json,
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
            ),
            Answer::NaN => (200, json, vector("1000", "NaN")),
            Answer::PlusInf => (200, json, vector("1000", "+Inf")),
            Answer::Negative => (200, json, vector("-1000", "1000")),
            Answer::ErrorsAboveRequests => (200, json, vector("100", "1000")),
            Answer::Hang => return None,
            Answer::Breach => (200, json, vector("1000", "1000")),
        })
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub answer: Answer,
    pub path: String,
    pub authority: String,
}

/// The fake metrics server on `127.0.0.1:<port>`; stopping it closes the port (connection
/// refused).
pub struct FakeMetrics {
    answer: Arc<Mutex<Answer>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeMetrics {
    pub fn start(port: u16, answer: Answer) -> Result<FakeMetrics, String> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| format!("fake metrics server on :{port}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let answer = Arc::new(Mutex::new(answer));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (answer, seen, stop) = (answer.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (answer, seen, stop) = (answer.clone(), seen.clone(), stop.clone());
                            std::thread::spawn(move || serve(conn, &answer, &seen, &stop));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(FakeMetrics {
            answer,
            seen,
            stop,
            accept: Some(accept),
        })
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = answer;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Closes the listening socket (and ends hanging connections).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for FakeMetrics {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one request head (up to the blank line) from `conn`.
fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if Instant::now() > deadline || buf.len() > 64 * 1024 {
            return None;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn serve(mut conn: TcpStream, answer: &Mutex<Answer>, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    // One request per connection: the answer says `connection: close`.
    let Some(head) = read_head(&mut conn) else {
        return;
    };
    let answer = *answer.lock().unwrap_or_else(|e| e.into_inner());
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let authority = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
        answer,
        path,
        authority,
    });
    match answer.response() {
        Some((status, kind, body)) => {
            let reason = if status == 200 {
                "OK"
            } else {
                "Internal Server Error"
            };
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        None => {
            // Hang: hold the connection, unanswered, until the caller gives up (or 10 s).
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut b = [0u8; 256];
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                match conn.read(&mut b) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        }
    }
}

/// A scrape target whose guard counters grow by 1000 errors out of 1000 requests per scrape:
/// `/payments` serves them unnamed (scraped with `app="payments"`), `/named` as configuration
/// `other` (scraped with `app="checkout"`). A guard selecting `app="checkout"` without a name
/// must count neither.
pub struct Decoy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Decoy {
    pub fn start() -> Result<Decoy, String> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let scrapes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (scrapes, stop) = (scrapes.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut conn, _)) => {
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
                            let Some(head) = read_head(&mut conn) else {
                                continue;
                            };
                            let n = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
                            let v = n * 1000;
                            let labels = if head.starts_with("GET /named") {
                                "instance=\"other\",subset=\"v2\""
                            } else {
                                "subset=\"v2\""
                            };
                            let mut body = String::new();
                            for family in [
                                "subset_router_guard_",
                                "envoy_dynamicmodulescustom_subset_router_guard_",
                            ] {
                                for what in ["requests", "errors"] {
                                    body.push_str(&format!(
                                        "# TYPE {family}{what} counter\n{family}{what}{{{labels}}} {v}\n"
                                    ));
                                }
                            }
                            let _ = conn.write_all(
                                format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            );
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(Decoy {
            port,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Decoy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}
