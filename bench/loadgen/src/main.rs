//! Fixed-rate HTTP/1.1 load generator (the part of wrk2 that Debian does not ship).
//!
//! `C` keep-alive connections, one thread each. Connection `c` sends request `k` at the
//! *intended* time `start + (k + c / C) * C / rate`, so the aggregate arrival rate is `rate`
//! requests/s, evenly interleaved across connections, whatever the server does (open loop).
//! If a response arrives late, the next request is sent at once, and its latency is measured
//! from its intended time (coordinated-omission corrected, as wrk2 does). Two latencies per
//! request are recorded:
//!
//! * `service`: from the moment the request was written to the moment the last byte of the
//!   response was read — what the proxy adds, without the generator's timer jitter;
//! * `corrected`: from the intended send time — also includes queueing behind a slow response
//!   and the generator's sleep overshoot.
//!
//! Requests cycle through a fixed pool (one per user id) read from a file: blocks separated by a
//! line `%%`, each a full request head (without the final blank line). Output: one JSON object.
//!
//! ```text
//! bench-loadgen --addr 127.0.0.1:10000 --rate 1000 --connections 4 --duration 5 \
//!               --warmup 1 --requests bench/requests.txt
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    addr: String,
    rate: f64,
    connections: usize,
    duration: f64,
    warmup: f64,
    requests: Vec<Vec<u8>>,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut rate = 1000.0;
    let mut connections = 4;
    let mut duration = 5.0;
    let mut warmup = 1.0;
    let mut file = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = Some(value()?),
            "--rate" => rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--connections" => {
                connections = value()?.parse().map_err(|e| format!("--connections: {e}"))?
            }
            "--duration" => duration = value()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--warmup" => warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--requests" => file = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let addr = addr.ok_or("--addr is required")?;
    let text = match file {
        Some(f) => std::fs::read_to_string(&f).map_err(|e| format!("{f}: {e}"))?,
        None => "GET / HTTP/1.1\r\nHost: localhost".to_owned(),
    };
    let requests: Vec<Vec<u8>> = text
        .split("\n%%\n")
        .map(|block| block.trim_matches('\n'))
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut head = block.lines().map(str::trim_end).collect::<Vec<_>>().join("\r\n");
            head.push_str("\r\n\r\n");
            head.into_bytes()
        })
        .collect();
    if requests.is_empty() || rate <= 0.0 || connections == 0 || duration <= 0.0 {
        return Err("need requests, rate > 0, connections > 0, duration > 0".into());
    }
    Ok(Args { addr, rate, connections, duration, warmup, requests })
}

#[derive(Default)]
struct ConnResult {
    service_us: Vec<u32>,
    corrected_us: Vec<u32>,
    sent: u64,
    /// Requests completed during the warm-up (not in the latency figures).
    warmup: u64,
    non2xx: u64,
    errors: u64,
    bodies: BTreeMap<String, u64>,
    late_sends: u64,
}

/// Reads one HTTP/1.1 response with a Content-Length body. Returns (status, body).
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            let total = end + 4 + len;
            while buf.len() < total {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            return Ok((status, body));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

fn run_connection(
    c: usize,
    args: Arc<Args>,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> ConnResult {
    let mut r = ConnResult::default();
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let phase = interval.mul_f64(c as f64 / args.connections as f64);
    let mut stream = connect(&args.addr).ok();
    let mut buf = Vec::with_capacity(8192);
    let mut k: u32 = 0;
    loop {
        let intended = start + phase + interval * k;
        if intended >= end {
            break;
        }
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        } else if now - intended > Duration::from_micros(100) && intended >= measure_from {
            r.late_sends += 1;
        }
        let req = &args.requests[(k as usize * args.connections + c) % args.requests.len()];
        k += 1;
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match connect(&args.addr) {
                Ok(s) => {
                    buf.clear();
                    stream.insert(s)
                }
                Err(_) => {
                    r.errors += 1;
                    continue;
                }
            },
        };
        let sent_at = Instant::now();
        let result = s.write_all(req).and_then(|_| read_response(s, &mut buf));
        let done = Instant::now();
        if intended < measure_from {
            match result {
                Ok(_) => r.warmup += 1,
                Err(_) => stream = None,
            }
            continue;
        }
        r.sent += 1;
        match result {
            Ok((status, body)) => {
                if !(200..300).contains(&status) {
                    r.non2xx += 1;
                }
                let key = String::from_utf8_lossy(&body[..body.len().min(32)]).into_owned();
                *r.bodies.entry(key).or_default() += 1;
                r.service_us.push((done - sent_at).as_micros().min(u32::MAX as u128) as u32);
                r.corrected_us.push((done - intended).as_micros().min(u32::MAX as u128) as u32);
            }
            Err(_) => {
                r.errors += 1;
                stream = None;
            }
        }
    }
    r
}

fn percentiles(mut v: Vec<u32>) -> String {
    if v.is_empty() {
        return "null".into();
    }
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    format!(
        "{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{},\"mean\":{:.1}}}",
        p(0.5),
        p(0.9),
        p(0.99),
        p(0.999),
        v[v.len() - 1],
        mean
    )
}

fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("bench-loadgen: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let threads: Vec<_> = (0..args.connections)
        .map(|c| {
            let args = Arc::clone(&args);
            std::thread::spawn(move || run_connection(c, args, start, measure_from, end))
        })
        .collect();
    let mut total = ConnResult::default();
    for t in threads {
        let r = t.join().unwrap_or_default();
        total.service_us.extend(r.service_us);
        total.corrected_us.extend(r.corrected_us);
        total.sent += r.sent;
        total.warmup += r.warmup;
        total.non2xx += r.non2xx;
        total.errors += r.errors;
        total.late_sends += r.late_sends;
        for (k, v) in r.bodies {
            *total.bodies.entry(k).or_default() += v;
        }
    }
    let bodies = total
        .bodies
        .iter()
        .map(|(k, v)| format!("{:?}:{v}", k))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "{{\"rate\":{},\"connections\":{},\"duration_s\":{},\"requests\":{},\"warmup_requests\":{},\"achieved_rps\":{:.1},\
         \"errors\":{},\"non2xx\":{},\"late_sends\":{},\"bodies\":{{{}}},\"service_us\":{},\"corrected_us\":{}}}",
        args.rate,
        args.connections,
        args.duration,
        total.sent,
        total.warmup,
        total.sent as f64 / args.duration,
        total.errors,
        total.non2xx,
        total.late_sends,
        bodies,
        percentiles(total.service_us),
        percentiles(total.corrected_us),
    )
}
