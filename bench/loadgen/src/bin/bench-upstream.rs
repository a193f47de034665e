//! The upstream of the Envoy benchmark: HTTP/1.1 keep-alive listeners that answer every request
//! with `200` and a fixed body (the subset name, so the load generators can count the split).
//!
//! It exists so that the *front* Envoy (the one under measurement) is the bottleneck: an upstream
//! Envoy with `direct_response` costs about as much CPU per request as the front Envoy itself,
//! and it shares the load generators' core, so closed-loop throughput would measure that core
//! instead of the proxy. This server does one `read` and one `write` per request (or per batch of
//! pipelined requests) and nothing else. One thread per connection, std only.
//!
//! ```text
//! bench-upstream 127.0.0.1:20001=v1 127.0.0.1:20002=v2
//! ```
//! prints `READY` on stdout once every listener is bound, then serves until killed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Serves one keep-alive connection: every complete request head (plus its `content-length`
/// body, if any) gets `response`. Pipelined requests are answered in one write.
fn serve(mut stream: TcpStream, response: &[u8]) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    let mut out: Vec<u8> = Vec::with_capacity(4 * 1024);
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        while let Some(end) = find(&buf[consumed..], b"\r\n\r\n") {
            let head = &buf[consumed..consumed + end];
            let body = content_length(head);
            let total = end + 4 + body;
            if buf.len() - consumed < total {
                break;
            }
            consumed += total;
            out.extend_from_slice(response);
        }
        buf.drain(..consumed);
        if !out.is_empty() {
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
    }
}

fn content_length(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            if !name.eq_ignore_ascii_case(b"content-length") {
                return None;
            }
            std::str::from_utf8(&value[1..]).ok()?.trim().parse().ok()
        })
        .next()
        .unwrap_or(0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn main() {
    let specs: Vec<String> = std::env::args().skip(1).collect();
    if specs.is_empty() {
        eprintln!("usage: bench-upstream ADDR=BODY [ADDR=BODY ...]");
        std::process::exit(2);
    }
    let mut listeners = Vec::new();
    for spec in &specs {
        let Some((addr, body)) = spec.split_once('=') else {
            eprintln!("bench-upstream: {spec:?} is not ADDR=BODY");
            std::process::exit(2);
        };
        let listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bench-upstream: bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        listeners.push((listener, response));
    }
    println!("READY");
    let _ = std::io::stdout().flush();
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|(listener, response)| {
            std::thread::spawn(move || {
                let response: &'static [u8] = Box::leak(response.into_boxed_slice());
                for stream in listener.incoming().flatten() {
                    std::thread::spawn(move || serve(stream, response));
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
