//! The fleet's traffic: keep-alive connections to each proxy's front listener, each thread
//! pacing itself by its proxy's interval (which the scenario may change while it runs), one
//! request in ten a tester's (`user-agent: debug`, the fixed route to v2), and, when
//! `failing`, `x-fail: v2` on every request (v2's upstream answers 503).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use subset_router_it::Client;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Decided by the 50/50 split.
    Split,
    /// `user-agent: debug`: the fixed route to v2.
    Debug,
}

/// One request and what came back.
#[derive(Debug, Clone)]
pub struct Ev {
    /// The proxy (index in the fleet).
    pub proxy: usize,
    pub kind: Kind,
    /// Seconds since the load started, before sending.
    pub sent: f64,
    /// 0: no response.
    pub status: u16,
    /// `x-served-by` ("" if no upstream answered).
    pub served: String,
    /// A transport error or a broken invariant.
    pub err: Option<String>,
}

pub struct Load {
    pub t0: Instant,
    stop: Arc<AtomicBool>,
    interval_ms: Vec<Arc<AtomicU64>>,
    threads: Vec<JoinHandle<Vec<Ev>>>,
}

impl Load {
    /// `proxies`: each proxy's front address, its connection count and its pace (ms between
    /// one connection's requests).
    pub fn start(proxies: &[(SocketAddr, usize, u64)], failing: bool) -> Load {
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let interval_ms: Vec<Arc<AtomicU64>> = proxies
            .iter()
            .map(|(_, _, ms)| Arc::new(AtomicU64::new(*ms)))
            .collect();
        let mut threads = Vec::new();
        for (proxy, (addr, conns, _)) in proxies.iter().enumerate() {
            for conn in 0..*conns {
                let (stop, interval) = (stop.clone(), interval_ms[proxy].clone());
                let addr = *addr;
                threads.push(std::thread::spawn(move || {
                    let mut client = Client::new(addr).with_timeout(Duration::from_secs(5));
                    let mut evs = Vec::new();
                    let mut seq = conn as u64;
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let kind = if seq % 10 == 9 {
                            Kind::Debug
                        } else {
                            Kind::Split
                        };
                        seq += 1;
                        evs.push(exchange(&mut client, proxy, t0, kind, failing));
                        next += Duration::from_millis(interval.load(Ordering::Relaxed));
                        let now = Instant::now();
                        if next < now {
                            next = now;
                        }
                        // Sleep in short steps so that a stop or a new pace is seen quickly.
                        while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(
                                next.saturating_duration_since(Instant::now())
                                    .min(Duration::from_millis(20)),
                            );
                        }
                    }
                    evs
                }));
            }
        }
        Load {
            t0,
            stop,
            interval_ms,
            threads,
        }
    }

    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    pub fn set_pace(&self, proxy: usize, ms: u64) {
        if let Some(i) = self.interval_ms.get(proxy) {
            i.store(ms, Ordering::Relaxed);
        }
    }

    /// Stops every thread; every exchange, by send time.
    pub fn finish(self) -> Vec<Ev> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Ev> = self
            .threads
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        all.sort_by(|a, b| a.sent.total_cmp(&b.sent));
        all
    }
}

fn exchange(client: &mut Client, proxy: usize, t0: Instant, kind: Kind, failing: bool) -> Ev {
    let mut headers = vec![];
    if kind == Kind::Debug {
        headers.push(("user-agent", "debug"));
    }
    if failing {
        headers.push(("x-fail", "v2"));
    }
    let sent = t0.elapsed().as_secs_f64();
    let mut ev = Ev {
        proxy,
        kind,
        sent,
        status: 0,
        served: String::new(),
        err: None,
    };
    match client.get("/", &headers) {
        Ok(r) => {
            ev.status = r.status;
            ev.served = r.header("x-served-by").unwrap_or("").to_string();
            let echo = r.header("x-echo-cluster-header").unwrap_or("");
            // v2 failing by `x-fail` answers from its failure route, which echoes nothing.
            let failed_v2 = failing && ev.served == "v2";
            let want = if failed_v2 { 503 } else { 200 };
            if ev.served.is_empty() {
                ev.err = Some(format!(
                    "status {} without x-served-by: {:?}",
                    r.status,
                    r.body_str()
                ));
            } else if (!failed_v2 && echo != ev.served) || r.status != want {
                ev.err = Some(format!(
                    "served by {} with status {} (want {want}), upstream saw x-upstream-cluster {echo:?}",
                    ev.served, r.status
                ));
            } else if kind == Kind::Debug && ev.served != "v2" {
                ev.err = Some(format!("a tester's request served by {}", ev.served));
            }
        }
        Err(e) => ev.err = Some(e),
    }
    ev
}
