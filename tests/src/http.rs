//! A minimal HTTP/1.1 client over `std::net::TcpStream`: keep-alive, `content-length` and
//! `chunked` bodies. Enough to talk to Envoy's listeners and admin interface quickly.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in arrival order (repeated headers kept).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(k, _)| *k == name).count()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    timeout: Duration,
    /// The local address every connection is bound to (`None`: the kernel's choice).
    source: Option<Ipv4Addr>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            timeout: Duration::from_secs(10),
            source: None,
        }
    }

    pub fn with_timeout(mut self, t: Duration) -> Client {
        self.timeout = t;
        self
    }

    /// Connects from `source` (see [`connect_from`]): the peer address Envoy sees.
    pub fn from_source(mut self, source: Ipv4Addr) -> Client {
        self.source = Some(source);
        self
    }

    fn connect(&self) -> std::io::Result<BufReader<TcpStream>> {
        let s = match self.source {
            Some(ip) => connect_from(ip, self.addr)?,
            None => TcpStream::connect_timeout(&self.addr, self.timeout)?,
        };
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        Ok(BufReader::with_capacity(16 * 1024, s))
    }

    /// `GET path` with extra headers, on the kept-alive connection (reconnects once if the
    /// reused connection turns out to be closed).
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        self.request("GET", path, headers)
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        let req = request_bytes(method, path, headers);
        let reused = self.conn.is_some();
        match self.try_once(&req) {
            Ok(r) => Ok(r),
            Err(e) if reused => {
                // A kept-alive connection may have been closed by the peer between
                // requests: retry once on a fresh one.
                self.conn = None;
                self.try_once(&req)
                    .map_err(|e2| format!("{method} {path} on {}: {e2} (after {e})", self.addr))
            }
            Err(e) => Err(format!("{method} {path} on {}: {e}", self.addr)),
        }
    }

    fn try_once(&mut self, req: &[u8]) -> std::io::Result<Response> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let conn = self.conn.as_mut().unwrap();
        let res = (|| {
            conn.get_mut().write_all(req)?;
            read_response(conn)
        })();
        match res {
            Ok((resp, keep)) => {
                if !keep {
                    self.conn = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// A TCP connection to `addr` from local address `source` (port chosen by the kernel), so the
/// peer address Envoy sees is `source`: any address of 127.0.0.0/8 is on Linux's loopback
/// without configuration. `std` binds only after choosing a source itself, hence the three
/// libc calls. The connect is blocking: meant for loopback listeners, which answer at once.
#[cfg(target_os = "linux")]
pub fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    #[repr(C)]
    struct SockaddrIn {
        family: u16,
        port: [u8; 2],
        addr: [u8; 4],
        zero: [u8; 8],
    }
    extern "C" {
        fn socket(domain: i32, kind: i32, protocol: i32) -> i32;
        fn bind(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
        fn connect(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
    }
    const AF_INET: i32 = 2;
    const SOCK_STREAM: i32 = 1;
    const SOCK_CLOEXEC: i32 = 0o2_000_000;
    let SocketAddr::V4(to) = addr else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr}: only IPv4 peers can be reached from an IPv4 source"),
        ));
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| SockaddrIn {
        family: AF_INET as u16,
        port: port.to_be_bytes(),
        addr: ip.octets(),
        zero: [0; 8],
    };
    let len = std::mem::size_of::<SockaddrIn>() as u32;
    // SAFETY: plain socket calls on a descriptor this function owns (closed by `OwnedFd` on
    // every path), with pointers to live, correctly laid out `sockaddr_in` values.
    unsafe {
        let fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(fd);
        let from = sockaddr(source, 0);
        if bind(fd, &from, len) != 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::new(e.kind(), format!("bind {source}: {e}")));
        }
        let to = sockaddr(*to.ip(), to.port());
        if connect(fd, &to, len) != 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::new(
                e.kind(),
                format!("connect {addr} from {source}: {e}"),
            ));
        }
        Ok(TcpStream::from(owned))
    }
}

#[cfg(not(target_os = "linux"))]
pub fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("connecting to {addr} from {source}: Linux only"),
    ))
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

/// Reads one response; returns it and whether the connection may be reused.
pub fn read_response(r: &mut impl BufRead) -> std::io::Result<(Response, bool)> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("bad status line {status_line:?}")));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header {line:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let mut keep = version == "HTTP/1.1" && get("connection").as_deref() != Some("close");
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let size_line = read_line(r)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // trailers, then the blank line
                while !read_line(r)?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?; // CRLF after the chunk
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad content-length {len:?}")))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        // no body
    } else {
        r.read_to_end(&mut body)?;
        keep = false;
    }
    Ok((
        Response {
            status,
            headers,
            body,
        },
        keep,
    ))
}

/// `<method> <path> HTTP/1.1` with `host: subset-router.test` and the given headers, byte for byte.
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: subset-router.test\r\n");
    for (k, v) in headers {
        req.push_str(k);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn connects_from_the_source_address_it_is_given() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        for last in [3u8, 7] {
            let source = Ipv4Addr::new(127, 0, 0, last);
            let stream = connect_from(source, to).unwrap();
            let (_, peer) = listener.accept().unwrap();
            assert_eq!(peer.ip(), std::net::IpAddr::V4(source));
            assert_eq!(stream.local_addr().unwrap(), peer);
        }
    }

    #[test]
    fn parses_content_length_and_chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Served-By: v1\r\ncontent-length: 2\r\n\r\nv1\
HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n\
HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let (a, keep) = read_response(&mut r).unwrap();
        assert_eq!(
            (
                a.status,
                a.header("x-served-by"),
                a.body_str().as_str(),
                keep
            ),
            (200, Some("v1"), "v1", true)
        );
        let (b, _) = read_response(&mut r).unwrap();
        assert_eq!(b.body_str(), "abcde");
        let (c, keep) = read_response(&mut r).unwrap();
        assert_eq!((c.status, keep), (404, false));
    }
}
