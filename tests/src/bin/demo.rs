//! `subset-router-demo`: the helpers of the quick start (`make run`, scripts/run.sh) and of
//! `scripts/test-examples.sh run`.
//!
//! ```text
//! subset-router-demo free-ports PORT...          exit 1 (naming them) if any port is taken on 127.0.0.1
//! subset-router-demo wait-ready ADMIN_URL SECS   poll ADMIN_URL/ready until it answers 200 (else exit 1)
//! subset-router-demo burst CONFIG FRONT_HOST:PORT ADMIN_URL [--requests N] [--curl-host H]
//! subset-router-demo watch FRONT_HOST:PORT ADMIN_URL [--rate N] [--fail SUBSET] [--seconds N]
//! subset-router-demo shift-ramps CONFIG --start-in DURATION [--duration DURATION] -o OUT
//! subset-router-demo COMMAND --help
//! ```
//!
//! `burst` sends traffic shaped by the plugin config and prints the observed split:
//!
//! * "plain": N requests `GET /`, each with its own sticky key (user-0, user-1, ...);
//! * one probe of 20 requests per rule with a fixed subset whose match can be built from the
//!   config (headers, cookies, query, path, method, host; not regex/invert);
//! * a probe for each split rule the plain requests do not reach;
//! * "sticky": the same key 20 times (when a route is sticky by header, cookie or query).
//!
//! Which rule decides each request, and for a fixed subset or a sticky key which subset, is
//! the decision of the filter's own core (`subset_router_core`: `Router::decide` on the request
//! as Envoy's filter sees it); nothing here re-implements matching. A request built for a rule
//! that the core does not route to that rule (an earlier rule takes it, or a condition such as
//! `sourceCidrs` excludes this client) is not sent. The "decided by" column is read from the
//! filter's counters in admin `/stats` (delta before/after each probe), which must agree with
//! the core. Exit 1 when a check fails: a non-200 answer, a fixed-subset probe not all on its
//! subset, a sticky probe spread over several subsets, a responseHeader that disagrees with the
//! upstream that served, counters that disagree with the core, or a request the core routes
//! to one subset served by another. Then three ready-to-paste curl lines (plain, debug, sticky).
//! For a configuration with a ramp or guards, the table shows beside the configured split the
//! effective one now: each ramp at the current time, each guard as the filter's stats say.
//!
//! `shift-ramps` writes a copy of a configuration whose ramps start DURATION from now (and last
//! `--duration`), so that `make run RAMP_START_IN=10s` shows the share moving.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use subset_router_core::config::{MatchConfig, PluginConfig, ValueMatchConfig};
use subset_router_core::live::Snapshot;
use subset_router_core::request::OwnedRequest;
use subset_router_core::router::{RouteSummary, Router, StickyKey};
use subset_router_core::time::{format_rfc3339, UnixMs};
use subset_router_core::WyRand;
use subset_router_it::http::{self, Client, Response};
use subset_router_it::load::Conn;

#[path = "demo/watch.rs"]
mod watch;

const USAGE: &str = "usage:
  subset-router-demo free-ports PORT...
  subset-router-demo wait-ready ADMIN_URL SECONDS
  subset-router-demo burst CONFIG FRONT_HOST:PORT ADMIN_URL [--requests N] [--curl-host H]
  subset-router-demo watch FRONT_HOST:PORT ADMIN_URL [--rate N] [--fail SUBSET] [--seconds N]
  subset-router-demo shift-ramps CONFIG --start-in DURATION [--duration DURATION] -o OUT
  subset-router-demo COMMAND --help";

/// Each command's `--help`.
const HELP: &[(&str, &str)] = &[
    (
        "free-ports",
        "usage: subset-router-demo free-ports PORT...

Exit 1, naming them, if any PORT cannot be bound on 127.0.0.1 (connections of an earlier run
in TIME_WAIT do not count).",
    ),
    (
        "wait-ready",
        "usage: subset-router-demo wait-ready ADMIN_URL SECONDS

Poll ADMIN_URL/ready until Envoy answers 200; exit 1 if it has not after SECONDS.",
    ),
    (
        "burst",
        "usage: subset-router-demo burst CONFIG FRONT_HOST:PORT ADMIN_URL [--requests N] [--curl-host H]

Send traffic shaped by the plugin configuration CONFIG through Envoy at FRONT_HOST:PORT and
print the observed split per probe (plain users, one probe per rule, a sticky user), the
configured split and, for ramps and guards, the effective one now; exit 1 if a check fails.

Options:
  --requests N     plain requests, each with its own sticky key (default 1000)
  --curl-host H    host name in the printed curl lines (default localhost)",
    ),
    (
        "watch",
        "usage: subset-router-demo watch FRONT_HOST:PORT ADMIN_URL [--rate N] [--fail SUBSET] [--seconds N]

A live view of a rollout: one line a second with the last second's split per rule, each
ramp's share and each guard's state (from the filter's stats in ADMIN_URL/stats), while a
steady trickle of users (x-user-id: user-0 .. user-999) goes to FRONT_HOST:PORT. Ctrl-C stops.

Options:
  --rate N         users a second (default 50)
  --fail SUBSET    every request carries x-fail: SUBSET, which the demo's upstream of that
                   subset answers with 503: watch its guard trip
  --seconds N      stop after N seconds (default: until Ctrl-C)",
    ),
    (
        "shift-ramps",
        "usage: subset-router-demo shift-ramps CONFIG --start-in DURATION [--duration DURATION] -o OUT

Write to OUT a copy of the plugin configuration CONFIG in which every ramp starts DURATION
from now (and, with --duration, lasts that long), so a demo shows the share moving. DURATION
is seconds, or a number with s, m or h (10s, 2m, 1h). CONFIG itself is not changed.",
    ),
];

/// Requests per fixed-subset probe and in the sticky probe.
const PROBE_REQUESTS: usize = 20;
/// Methods a probe may use (bodiless requests every upstream answers).
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            eprintln!("subset-router-demo: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Error(msg)) => {
            eprintln!("subset-router-demo: {msg}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Error(String),
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure::Error(msg)
    }
}

fn run(args: &[String]) -> Result<ExitCode, Failure> {
    let (command, rest) = args
        .split_first()
        .ok_or_else(|| Failure::Usage("no subcommand".into()))?;
    let help = |command: &str| HELP.iter().find(|(c, _)| *c == command).map(|(_, h)| *h);
    if let Some(text) = help(command) {
        if rest.iter().any(|a| a == "-h" || a == "--help") {
            println!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
    }
    match command.as_str() {
        "free-ports" => free_ports(rest),
        "wait-ready" => match rest {
            [admin, secs] => {
                let secs: f64 = secs
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| {
                        Failure::Usage(format!(
                            "wait-ready: SECONDS must be a number, not {secs:?}"
                        ))
                    })?;
                Ok(wait_ready(admin, Duration::from_secs_f64(secs))?)
            }
            _ => Err(Failure::Usage("wait-ready takes ADMIN_URL SECONDS".into())),
        },
        "burst" => {
            let args = BurstArgs::parse(rest).map_err(Failure::Usage)?;
            Ok(burst(&args)?)
        }
        "watch" => {
            let args = watch::WatchArgs::parse(rest).map_err(Failure::Usage)?;
            watch::watch(&args)
        }
        "shift-ramps" => Ok(shift_ramps(rest)?),
        "help" if !rest.is_empty() => {
            let name = rest.first().map_or("", String::as_str);
            let text = help(name).ok_or_else(|| Failure::Usage(format!("no command {name:?}")))?;
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(Failure::Usage(format!("unknown subcommand {other:?}"))),
    }
}

// ---- free-ports, wait-ready ------------------------------------------------------------

/// Exit 1, naming them, if any port cannot be bound on 127.0.0.1. Like Envoy's listeners
/// (std sets SO_REUSEADDR on Unix), connections of a previous run in TIME_WAIT do not count.
fn free_ports(ports: &[String]) -> Result<ExitCode, Failure> {
    let mut taken = Vec::new();
    for p in ports {
        let port: u16 = p
            .parse()
            .map_err(|_| Failure::Usage(format!("free-ports: {p:?} is not a port number")))?;
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            taken.push(p.as_str());
        }
    }
    if taken.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("port(s) already in use: {}", taken.join(" "));
        Ok(ExitCode::FAILURE)
    }
}

/// Polls `ADMIN_URL/ready` (at least once) until it answers 200 or `limit` has passed.
fn wait_ready(admin: &str, limit: Duration) -> Result<ExitCode, String> {
    let addr = url_addr(admin)?;
    let deadline = Instant::now() + limit;
    loop {
        let mut client = Client::new(addr).with_timeout(Duration::from_secs(1));
        if client.get("/ready", &[]).is_ok_and(|r| r.status == 200) {
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() >= deadline {
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `http://host:port[/]` → the address to connect to.
fn url_addr(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let hostport = rest.split('/').next().unwrap_or_default();
    host_addr(hostport).map_err(|e| format!("{url:?}: {e}"))
}

/// `host:port` → the first address it resolves to.
fn host_addr(hostport: &str) -> Result<SocketAddr, String> {
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport:?} (expected HOST:PORT): {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport:?} resolves to no address"))
}

// ---- burst: arguments and config -------------------------------------------------------

struct BurstArgs {
    config: String,
    front: String,
    admin: String,
    requests: usize,
    curl_host: String,
}

impl BurstArgs {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut positional = Vec::new();
        let mut requests = 1000;
        let mut curl_host = "localhost".to_owned();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (a.as_str(), None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("burst: {name} needs a value"))
            };
            match flag {
                "--requests" => {
                    let v = value("--requests")?;
                    requests = v
                        .parse()
                        .map_err(|_| format!("burst: --requests must be a number, not {v:?}"))?;
                }
                "--curl-host" => curl_host = value("--curl-host")?,
                f if f.starts_with("--") => return Err(format!("burst: unknown option {f}")),
                _ => positional.push(a.clone()),
            }
        }
        match <[String; 3]>::try_from(positional) {
            Ok([config, front, admin]) => Ok(Self {
                config,
                front,
                admin,
                requests,
                curl_host,
            }),
            Err(p) => Err(format!(
                "burst takes CONFIG FRONT ADMIN, got {} argument(s)",
                p.len()
            )),
        }
    }
}

/// The plugin config as written (to build requests from its matches) and as the filter
/// compiles it (to decide, describe routes and list subsets).
struct Plugin {
    config: PluginConfig,
    router: Router,
    /// Routes whose split can change at run time (a `ramp`, or any `guards`): the subset a
    /// sticky key gets there is not checked against the core's as-configured decision.
    live_routes: BTreeSet<String>,
}

impl Plugin {
    fn read(path: &str) -> Result<Self, String> {
        let json = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let invalid = |errors: Vec<String>| {
            format!(
                "{path} is not a valid plugin config:\n  {}",
                errors.join("\n  ")
            )
        };
        let config = subset_router_core::parse(&json).map_err(|e| invalid(vec![e.to_string()]))?;
        let router = subset_router_core::compile(&config)
            .map_err(|es| invalid(es.iter().map(ToString::to_string).collect()))?;
        let live_routes = live_routes(&json);
        Ok(Self {
            config,
            router,
            live_routes,
        })
    }

    /// Every sticky key a request can carry (header, cookie, query parameter), each once, in
    /// rule order then the default route's.
    fn sticky_sources(&self) -> Vec<StickyKey> {
        let mut out: Vec<StickyKey> = Vec::new();
        for s in self.router.summaries() {
            if let Some(key) = s.sticky {
                if !matches!(key, StickyKey::SourceIp) && !out.contains(&key) {
                    out.push(key);
                }
            }
        }
        out
    }
}

/// The rules (and `default`) whose split depends on the time or on upstream health: those with
/// a `ramp`, or every route when the config has `guards`. Read from the JSON so that this
/// works whatever the core's version of those features.
fn live_routes(json: &[u8]) -> BTreeSet<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else {
        return BTreeSet::new();
    };
    let guarded = v["guards"].as_array().is_some_and(|g| !g.is_empty());
    let rules = v["rules"].as_array().map(Vec::as_slice).unwrap_or_default();
    rules
        .iter()
        .map(|r| (r["name"].as_str().unwrap_or_default(), &r["route"]))
        .chain(std::iter::once(("default", &v["default"])))
        .filter(|(_, route)| guarded || !route["ramp"].is_null())
        .map(|(name, _)| name.to_owned())
        .collect()
}

// ---- requests ----------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    cookies: Vec<(String, String)>,
    /// `None`: the HTTP client's own `host`.
    host: Option<String>,
}

impl Req {
    fn new() -> Self {
        Self {
            method: "GET".into(),
            path: "/".into(),
            query: Vec::new(),
            headers: Vec::new(),
            cookies: Vec::new(),
            host: None,
        }
    }

    fn with_key(mut self, sources: &[StickyKey], key: &str) -> Self {
        for source in sources {
            match source {
                StickyKey::Header(n) => self.headers.push((n.clone(), key.into())),
                StickyKey::Cookie(n) => self.cookies.push((n.clone(), key.into())),
                StickyKey::Query(n) => self.query.push((n.clone(), key.into())),
                StickyKey::SourceIp => {}
            }
        }
        self
    }

    /// Path and percent-encoded query string, as sent.
    fn target(&self) -> String {
        let mut t = self.path.clone();
        for (i, (n, v)) in self.query.iter().enumerate() {
            t.push(if i == 0 { '?' } else { '&' });
            t.push_str(&percent_encode(n));
            t.push('=');
            t.push_str(&percent_encode(v));
        }
        t
    }

    /// Headers as sent, the cookies joined in one `cookie` header.
    fn all_headers(&self) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        if !self.cookies.is_empty() {
            let joined: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            h.push(("cookie".into(), joined.join("; ")));
        }
        h
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .all_headers()
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        if self.method != "GET" {
            parts.insert(0, self.method.clone());
        }
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        let target = self.target();
        if target != "/" {
            parts.push(target);
        }
        if parts.is_empty() {
            "GET /".into()
        } else {
            parts.join(", ")
        }
    }

    fn curl(&self, base: &str) -> String {
        let mut args = vec!["curl".to_owned(), "-s".to_owned()];
        if self.method != "GET" {
            args.extend(["-X".to_owned(), self.method.clone()]);
        }
        for (n, v) in self.all_headers() {
            args.extend(["-H".to_owned(), shell_quote(&format!("{n}: {v}"))]);
        }
        if let Some(h) = &self.host {
            args.extend(["-H".to_owned(), shell_quote(&format!("host: {h}"))]);
        }
        args.push(shell_quote(&format!("{base}{}", self.target())));
        args.join(" ")
    }

    /// The request as the filter in Envoy sees it: the pseudo-headers Envoy's HTTP/1 codec
    /// makes of the request line and `host`, the headers sent (values trimmed, as Envoy does),
    /// what the connection manager adds before the filter runs, and the peer address.
    fn envoy_view(&self, authority: &str, source: Option<IpAddr>) -> OwnedRequest {
        let mut r = OwnedRequest::new()
            .header(":authority", self.host.as_deref().unwrap_or(authority))
            .header(":path", self.target())
            .header(":method", &self.method)
            .header(":scheme", "http");
        for (n, v) in self.all_headers() {
            r = r.header(&n, v.trim_matches([' ', '\t']));
        }
        r = r
            .header("x-forwarded-proto", "http")
            .header("x-request-id", "00000000-0000-4000-8000-000000000000");
        match source {
            Some(ip) => r.source(ip),
            None => r,
        }
    }
}

/// Percent-encodes all but RFC 3986 unreserved characters (the filter decodes `%XX` and
/// leaves `+` alone, so a space must travel as `%20`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@%+,-".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A rule's match that cannot be turned into a request (regex or invert, a pseudo-header
/// other than `:authority`, no usable method, or a value HTTP/1.1 cannot carry).
#[derive(Debug)]
struct Unbuildable;

/// A value satisfying one value condition, or `None` to leave the value out.
fn value_for(c: &ValueMatchConfig) -> Result<Option<String>, Unbuildable> {
    if c.invert || c.regex.is_some() {
        return Err(Unbuildable);
    }
    if let Some(present) = c.present {
        return Ok(present.then(|| "1".to_owned()));
    }
    [&c.exact, &c.prefix, &c.suffix, &c.contains]
        .into_iter()
        .find_map(|v| v.clone())
        .map(Some)
        .ok_or(Unbuildable)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// A request meant to satisfy `m` (the core judges whether it does), or why none is built.
fn build(m: &MatchConfig) -> Result<Req, Unbuildable> {
    let mut r = Req::new();
    for c in &m.headers {
        let Some(v) = value_for(c)? else { continue };
        let name = c.name.to_ascii_lowercase();
        if name == "host" || name == ":authority" {
            r.host = Some(v);
        } else if name.starts_with(':') {
            return Err(Unbuildable);
        } else {
            r.headers.push((c.name.clone(), v));
        }
    }
    for c in &m.cookies {
        if let Some(v) = value_for(c)? {
            r.cookies.push((c.name.clone(), v));
        }
    }
    for c in &m.query {
        if let Some(v) = value_for(c)? {
            r.query.push((c.name.clone(), v));
        }
    }
    if let Some(p) = m.path.as_ref().filter(|p| !p.is_empty()) {
        r.path = p.clone();
    } else if let Some(p) = m.path_prefix.as_ref().filter(|p| !p.is_empty()) {
        r.path = if p.starts_with('/') {
            p.clone()
        } else {
            format!("/{p}")
        };
    }
    if !m.methods.is_empty() {
        let method = m
            .methods
            .iter()
            .map(|x| x.to_ascii_uppercase())
            .find(|x| METHODS.contains(&x.as_str()))
            .ok_or(Unbuildable)?;
        r.method = method;
    }
    if let Some(h) = m.hosts.first() {
        if let Some(domain) = h.strip_prefix("*.") {
            r.host = Some(format!("demo.{domain}"));
        } else if h != "*" {
            r.host = Some(h.clone());
        }
    }
    // What HTTP/1.1 cannot carry as written.
    let headers_ok = r
        .all_headers()
        .iter()
        .all(|(n, v)| is_token(n) && is_field_value(v));
    let host_ok = r
        .host
        .as_deref()
        .is_none_or(|h| !h.is_empty() && is_field_value(h) && !h.contains(' '));
    let path_ok = r.path.bytes().all(|b| (b'!'..=b'~').contains(&b));
    if !(headers_ok && host_ok && path_ok) {
        return Err(Unbuildable);
    }
    Ok(r)
}

// ---- sending -----------------------------------------------------------------------------

/// The `host` the crate's HTTP client sends, read from the request bytes it writes.
fn client_authority() -> Result<String, String> {
    let bytes = http::request_bytes("GET", "/", &[]);
    let text = String::from_utf8_lossy(&bytes);
    text.split("\r\n")
        .skip(1)
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case("host").then(|| v.trim().to_owned())
        })
        .ok_or_else(|| "the HTTP client sends no host header".to_owned())
}

/// The client's request bytes with its `host` line replaced by `host`.
fn with_host(bytes: Vec<u8>, host: &str) -> Result<Vec<u8>, String> {
    let text = String::from_utf8(bytes).map_err(|_| "request bytes are not UTF-8".to_owned())?;
    let mut lines: Vec<String> = text.split("\r\n").map(str::to_owned).collect();
    let line = lines
        .iter_mut()
        .skip(1)
        .find(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case("host"))
        })
        .ok_or_else(|| "the HTTP client sends no host header".to_owned())?;
    *line = format!("host: {host}");
    Ok(lines.join("\r\n").into_bytes())
}

struct Front {
    addr: SocketAddr,
    /// Requests with the client's own `host`.
    client: Client,
    /// Requests with another `host` (`hosts` and `:authority` conditions), same client bytes.
    other_host: Conn,
    response_header: Option<String>,
}

impl Front {
    fn send(&mut self, req: &Req) -> Result<Response, String> {
        let headers = req.all_headers();
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match &req.host {
            None => self.client.request(&req.method, &req.target(), &refs),
            Some(host) => {
                let bytes =
                    with_host(http::request_bytes(&req.method, &req.target(), &refs), host)?;
                self.other_host.send(&bytes).map_err(|e| {
                    format!(
                        "{} {} (host {host}) on {}: {e}",
                        req.method,
                        req.target(),
                        self.addr
                    )
                })
            }
        }
    }
}

/// The filter's decision counters in admin `/stats`: (rule, subset) → value. Accepts the Wasm
/// build's `wasmcustom.` and the native build's `dynamicmodulescustom.` namespace (or none).
fn counters(admin: &mut Client) -> Result<BTreeMap<(String, String), u64>, String> {
    let r = admin
        .get("/stats?filter=subset_router", &[])
        .map_err(|e| format!("reading the filter's counters from admin /stats: {e}"))?;
    if r.status != 200 {
        return Err(format!(
            "admin /stats?filter=subset_router answered HTTP {}",
            r.status
        ));
    }
    Ok(decision_counters(&r.body_str()))
}

fn decision_counters(stats: &str) -> BTreeMap<(String, String), u64> {
    subset_router_it::envoy::parse_stats(stats)
        .into_iter()
        .filter_map(|(name, value)| {
            let name = ["wasmcustom.", "dynamicmodulescustom."]
                .iter()
                .find_map(|p| name.strip_prefix(p))
                .unwrap_or(&name);
            // Rule names have no dot; subset names may.
            let rest = name.strip_prefix("subset_router.rule.")?;
            let (rule, subset) = rest.split_once(".subset.")?;
            (!rule.contains('.') && !subset.is_empty())
                .then(|| ((rule.to_owned(), subset.to_owned()), value))
        })
        .collect()
}

// ---- probes ------------------------------------------------------------------------------

/// The core's decision for one request: the rule, and the subset when it does not depend on
/// chance (a fixed subset, or a sticky split that finds its key).
struct Expected {
    rule: String,
    subset: Option<String>,
    /// A sticky route decided, by the request's key.
    sticky: bool,
}

struct Decider<'a> {
    plugin: &'a Plugin,
    summaries: BTreeMap<String, RouteSummary>,
    authority: String,
    source: Option<IpAddr>,
    rng: WyRand,
}

impl<'a> Decider<'a> {
    fn new(plugin: &'a Plugin, authority: String, source: Option<IpAddr>) -> Self {
        let summaries = plugin
            .router
            .summaries()
            .into_iter()
            .map(|s| (s.rule.clone(), s))
            .collect();
        Self {
            plugin,
            summaries,
            authority,
            source,
            rng: WyRand::new(0x5eed),
        }
    }

    fn decide(&mut self, req: &Req) -> Result<Expected, String> {
        let view = req.envoy_view(&self.authority, self.source);
        let d = self
            .plugin
            .router
            .decide(&view, &mut self.rng)
            .ok_or_else(|| format!("the core decided nothing for {}", req.describe()))?;
        let summary = self.summaries.get(d.rule);
        let fixed = summary.is_some_and(|s| s.targets.iter().all(|(_, w)| w.is_none()));
        let sticky = summary.is_some_and(|s| s.sticky.is_some()) && !d.sticky_key_missing;
        let settled = fixed || (sticky && !self.plugin.live_routes.contains(d.rule));
        Ok(Expected {
            rule: d.rule.to_owned(),
            subset: settled.then(|| d.target.subset.clone()),
            sticky,
        })
    }
}

struct Probe {
    label: String,
    reqs: Vec<Req>,
    expected: Vec<Expected>,
    expect_subset: Option<String>,
    expect_sticky: bool,
    served: BTreeMap<String, u64>,
    unlabelled: u64,
    errors: BTreeMap<u16, u64>,
    failures: Vec<String>,
    header_mismatch: u64,
    off_core: u64,
    /// Decisions per rule, from the filter's counters.
    rules: BTreeMap<String, u64>,
}

impl Probe {
    fn new(label: String, reqs: Vec<Req>, decider: &mut Decider) -> Result<Self, String> {
        let expected = reqs
            .iter()
            .map(|r| decider.decide(r))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            label,
            reqs,
            expected,
            expect_subset: None,
            expect_sticky: false,
            served: BTreeMap::new(),
            unlabelled: 0,
            errors: BTreeMap::new(),
            failures: Vec::new(),
            header_mismatch: 0,
            off_core: 0,
            rules: BTreeMap::new(),
        })
    }

    /// Decisions per rule according to the core.
    fn core_rules(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for e in &self.expected {
            *out.entry(e.rule.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Whether the core routes every request of the probe to `rule`.
    fn all_decided_by(&self, rule: &str) -> bool {
        self.expected.iter().all(|e| e.rule == rule)
    }

    fn run(&mut self, front: &mut Front, admin: &mut Client) -> Result<(), String> {
        let before = counters(admin)?;
        for (req, expected) in self.reqs.iter().zip(&self.expected) {
            let r = match front.send(req) {
                Ok(r) => r,
                Err(e) => {
                    self.failures.push(e);
                    continue;
                }
            };
            if r.status != 200 {
                *self.errors.entry(r.status).or_insert(0) += 1;
                continue;
            }
            let served = r.header("x-served-by").map(str::to_owned);
            match &served {
                Some(s) => *self.served.entry(s.clone()).or_insert(0) += 1,
                None => self.unlabelled += 1,
            }
            if let Some(h) = &front.response_header {
                if r.header(h) != served.as_deref() {
                    self.header_mismatch += 1;
                }
            }
            if expected.subset.is_some() && expected.subset != served {
                self.off_core += 1;
            }
        }
        let after = counters(admin)?;
        for ((rule, subset), v) in after {
            let d = v.saturating_sub(before.get(&(rule.clone(), subset)).copied().unwrap_or(0));
            if d > 0 {
                *self.rules.entry(rule).or_insert(0) += d;
            }
        }
        Ok(())
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.errors.is_empty() {
            let e: Vec<String> = self
                .errors
                .iter()
                .map(|(s, n)| format!("{s} x{n}"))
                .collect();
            p.push(format!("HTTP {}", e.join(", ")));
        }
        if let Some(first) = self.failures.first() {
            p.push(format!(
                "{} request(s) failed: {first}",
                self.failures.len()
            ));
        }
        if self.unlabelled > 0 {
            p.push(format!(
                "{} response(s) without x-served-by",
                self.unlabelled
            ));
        }
        if self.header_mismatch > 0 {
            p.push(format!(
                "{} response(s) whose response header disagrees with the upstream",
                self.header_mismatch
            ));
        }
        let mut off_subset = false;
        if let Some(s) = &self.expect_subset {
            if self.unlabelled > 0 || self.served.keys().any(|k| k != s) {
                p.push(format!("expected every request on {s}"));
                off_subset = true;
            }
        }
        if self.expect_sticky && self.served.len() > 1 {
            p.push("the same key landed on several subsets".into());
            off_subset = true;
        }
        if self.off_core > 0 && !off_subset {
            p.push(format!(
                "{} request(s) not on the subset the core decides",
                self.off_core
            ));
        }
        let core = self.core_rules();
        if self.rules != core {
            p.push(format!(
                "the filter's counters disagree with the core, which decides {}",
                rule_counts(&core)
            ));
        }
        p
    }
}

fn rule_counts(rules: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = rules.iter().map(|(r, c)| format!("{r} x{c}")).collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// What the config says for the rules that decided a probe.
fn configured(summaries: &[RouteSummary], rule_names: &BTreeMap<String, u64>) -> String {
    let mut out = Vec::new();
    for name in rule_names.keys() {
        let Some(s) = summaries.iter().find(|s| &s.rule == name) else {
            continue;
        };
        match s.targets.as_slice() {
            [(t, None)] => out.push(format!("{name}: -> {}", t.subset)),
            targets if !targets.is_empty() => {
                let weight = |w: &Option<_>| weight_of(*w);
                let total: u64 = targets.iter().map(|(_, w)| weight(w)).sum();
                let total = if total == 0 { 1 } else { total };
                let split: Vec<String> = targets
                    .iter()
                    .map(|(t, w)| {
                        let pct = 100.0 * weight(w) as f64 / total as f64;
                        format!("{} {}%", t.subset, format_g(pct))
                    })
                    .collect();
                let sticky = if s.sticky.is_some() { " sticky" } else { "" };
                out.push(format!("{name}: {}{sticky}", split.join(" / ")));
            }
            _ => {}
        }
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join("; ")
    }
}

/// A summary's weight (`None`, a fixed subset, counts 0), whatever the core's integer width.
fn weight_of<W: Into<u64>>(w: Option<W>) -> u64 {
    w.map_or(0, Into::into)
}

/// A number as C's / Python's `%g`: 6 significant digits, trailing zeros removed.
fn format_g(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return if x == 0.0 { "0".into() } else { x.to_string() };
    }
    let sci = format!("{x:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if (-4..6).contains(&exp) {
        let decimals = usize::try_from(5 - exp).unwrap_or(0);
        trim(&format!("{x:.decimals$}"))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    }
}

// ---- ramps and guards now ----------------------------------------------------------------

/// The wall clock now, in Unix milliseconds.
fn now_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The routes as the filter decides them at `at` with the guards `open` (by index in
/// `guards`): each ramp's share then, each open guard's subset out of its splits.
fn effective_summaries(plugin: &Plugin, at: UnixMs, open: Vec<bool>) -> Vec<RouteSummary> {
    let conditions = Snapshot {
        ramps: plugin
            .router
            .ramps()
            .iter()
            .map(|r| r.ramp.share_at(at))
            .collect(),
        open,
    };
    plugin.router.summaries_with(&conditions)
}

/// Which guards the filter has open, by index in `guards`, from its `guard.<subset>.open` gauges.
fn open_guards(plugin: &Plugin, gauges: &BTreeMap<String, u64>) -> Vec<bool> {
    plugin
        .config
        .guards
        .iter()
        .map(|g| gauges.get(&format!("guard.{}.open", g.subset)) == Some(&1))
        .collect()
}

/// `10s`, `2m`, `1h` or plain seconds.
fn parse_duration(text: &str) -> Result<i64, String> {
    let (number, unit) = match text.strip_suffix(['s', 'm', 'h']) {
        Some(n) => (n, &text[n.len()..]),
        None => (text, "s"),
    };
    let n: i64 = number
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("{text:?} is not a duration such as 10s, 2m or 1h"))?;
    Ok(n * match unit {
        "h" => 3600,
        "m" => 60,
        _ => 1,
    })
}

/// `shift-ramps CONFIG --start-in DURATION [--duration DURATION] -o OUT`.
fn shift_ramps(args: &[String]) -> Result<ExitCode, Failure> {
    let mut config = None;
    let (mut start_in, mut duration, mut out) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| Failure::Usage(format!("shift-ramps: {a} needs a value")))
        };
        match a.as_str() {
            "--start-in" => start_in = Some(parse_duration(&value()?).map_err(Failure::Usage)?),
            "--duration" => duration = Some(parse_duration(&value()?).map_err(Failure::Usage)?),
            "-o" | "--output" => out = Some(value()?),
            f if f.starts_with('-') => {
                return Err(Failure::Usage(format!("shift-ramps: unknown option {f}")))
            }
            _ if config.is_none() => config = Some(a.clone()),
            _ => return Err(Failure::Usage("shift-ramps takes one CONFIG".into())),
        }
    }
    let (Some(config), Some(start_in), Some(out)) = (config, start_in, out) else {
        return Err(Failure::Usage(
            "shift-ramps takes CONFIG --start-in DURATION -o OUT".into(),
        ));
    };
    let json = std::fs::read(&config).map_err(|e| format!("cannot read {config}: {e}"))?;
    let shifted = with_ramps_from(&json, now_ms() + 1000 * start_in, duration)
        .map_err(|e| format!("{config}: {e}"))?;
    std::fs::write(&out, shifted).map_err(|e| format!("cannot write {out}: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// The configuration with every ramp starting at `start` (and lasting `duration` seconds);
/// checked by the filter's own validation.
fn with_ramps_from(json: &[u8], start: UnixMs, duration: Option<i64>) -> Result<Vec<u8>, String> {
    let mut v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut routes: Vec<&mut serde_json::Value> = vec![];
    let serde_json::Value::Object(root) = &mut v else {
        return Err("not a JSON object".into());
    };
    for (key, value) in root.iter_mut() {
        match (key.as_str(), value) {
            ("default", route) => routes.push(route),
            ("rules", serde_json::Value::Array(rules)) => {
                routes.extend(rules.iter_mut().filter_map(|r| r.get_mut("route")));
            }
            _ => {}
        }
    }
    let mut ramps = 0;
    let ramps_of = routes.into_iter().filter_map(|r| r.get_mut("ramp"));
    for ramp in ramps_of.filter(|r| r.is_object()) {
        ramps += 1;
        ramp["start"] = format_rfc3339(start - start % 1000).into();
        if let Some(seconds) = duration {
            ramp["durationSeconds"] = seconds.into();
        }
    }
    if ramps == 0 {
        return Err("no ramp to shift".into());
    }
    let mut text = serde_json::to_vec_pretty(&v).map_err(|e| e.to_string())?;
    text.push(b'\n');
    subset_router_core::load(&text).map_err(|errors| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(
            "the shifted configuration is invalid: {}",
            errors.join("; ")
        )
    })?;
    Ok(text)
}

// ---- burst -------------------------------------------------------------------------------

/// The local address a connection to `to` leaves from: the peer address Envoy sees.
fn local_ip_towards(to: SocketAddr) -> Option<IpAddr> {
    let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(to).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// The request (without its key) of the sticky probe: a plain request when a sticky route
/// decides it with a key, else the first split rule's own request that the core sends to a
/// sticky route, else a plain request.
fn sticky_base(
    plugin: &Plugin,
    decider: &mut Decider,
    sources: &[StickyKey],
) -> Result<Req, String> {
    let split_rules = plugin
        .config
        .rules
        .iter()
        .filter(|r| r.route.split.is_some());
    let candidates =
        std::iter::once(Req::new()).chain(split_rules.filter_map(|r| build(&r.matches).ok()));
    for c in candidates {
        if decider
            .decide(&c.clone().with_key(sources, "user-42"))?
            .sticky
        {
            return Ok(c);
        }
    }
    Ok(Req::new())
}

fn burst(a: &BurstArgs) -> Result<ExitCode, String> {
    let plugin = Plugin::read(&a.config)?;
    let front_addr = host_addr(&a.front).map_err(|e| format!("FRONT: {e}"))?;
    let admin_addr = url_addr(&a.admin).map_err(|e| format!("ADMIN: {e}"))?;
    let routes = envoy_config::PluginRoutes::from_router(&plugin.router);
    let subsets: Vec<String> = routes.subsets.iter().map(|(s, _)| s.clone()).collect();
    let summaries = plugin.router.summaries();
    let sources = plugin.sticky_sources();
    let mut decider = Decider::new(&plugin, client_authority()?, local_ip_towards(front_addr));
    let mut front = Front {
        addr: front_addr,
        client: Client::new(front_addr),
        other_host: Conn::new(front_addr),
        response_header: plugin.router.response_header().map(str::to_owned),
    };
    let mut admin = Client::new(admin_addr).with_timeout(Duration::from_secs(5));
    let n = a.requests;
    let t0 = Instant::now();

    let mut probes: Vec<Probe> = Vec::new();
    let plain_label = if sources.is_empty() {
        "plain".to_owned()
    } else {
        format!("plain, {n} different users")
    };
    let plain_reqs = (0..n)
        .map(|i| Req::new().with_key(&sources, &format!("user-{i}")))
        .collect();
    let mut plain = Probe::new(plain_label, plain_reqs, &mut decider)?;
    plain.run(&mut front, &mut admin)?;
    let plain_rules = plain.core_rules();
    probes.push(plain);

    let mut debug: Option<(Req, String)> = None;
    for rule in &plugin.config.rules {
        let Ok(req) = build(&rule.matches) else {
            continue;
        };
        let mut probe = if let Some(subset) = &rule.route.subset {
            let mut p = Probe::new(
                req.describe(),
                vec![req.clone(); PROBE_REQUESTS],
                &mut decider,
            )?;
            if !p.all_decided_by(&rule.name) {
                continue; // an earlier rule takes this request, or it does not match after all
            }
            p.expect_subset = Some(subset.clone());
            if debug.is_none() {
                debug = Some((req, subset.clone()));
            }
            p
        } else if !plain_rules.contains_key(&rule.name) {
            let reqs = (0..n / 2)
                .map(|i| req.clone().with_key(&sources, &format!("user-{i}")))
                .collect();
            let p = Probe::new(
                format!("rule {}: {}", rule.name, req.describe()),
                reqs,
                &mut decider,
            )?;
            if !p.all_decided_by(&rule.name) {
                continue;
            }
            p
        } else {
            continue;
        };
        probe.run(&mut front, &mut admin)?;
        probes.push(probe);
    }
    let mut sticky_req: Option<Req> = None;
    if !sources.is_empty() {
        let base = sticky_base(&plugin, &mut decider, &sources)?;
        let req = base.clone().with_key(&sources, "user-42");
        let label = format!("sticky: {}, {PROBE_REQUESTS} times", req.describe());
        let mut p = Probe::new(label, vec![req; PROBE_REQUESTS], &mut decider)?;
        p.expect_sticky = true;
        p.run(&mut front, &mut admin)?;
        probes.push(p);
        sticky_req = Some(base);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // Ramps and guards: the split the filter applies now, beside the configured one.
    let now = (!plugin.live_routes.is_empty())
        .then(|| -> Result<_, String> {
            let gauges = watch::gauges(&mut admin)?;
            let at = now_ms();
            Ok((
                at,
                effective_summaries(&plugin, at, open_guards(&plugin, &gauges)),
            ))
        })
        .transpose()?;

    // ---- the table ----
    let mut cols = subsets.clone();
    let mut extra: Vec<String> = probes
        .iter()
        .flat_map(|p| p.served.keys())
        .filter(|s| !subsets.contains(s))
        .cloned()
        .collect();
    extra.sort();
    extra.dedup();
    cols.extend(extra);
    let mut head: Vec<String> = [
        "traffic",
        "requests",
        "decided by (filter counters)",
        "configured",
    ]
    .map(String::from)
    .to_vec();
    if now.is_some() {
        head.push("now (ramps, guards applied)".into());
    }
    let text_columns = head.len();
    head.extend(cols.iter().cloned());
    head.push("check".into());
    let mut failed = false;
    let rows: Vec<Vec<String>> = probes
        .iter()
        .map(|p| {
            let total = p.reqs.len();
            let mut cells = vec![
                p.label.clone(),
                total.to_string(),
                rule_counts(&p.rules),
                configured(&summaries, &p.rules),
            ];
            if let Some((_, effective)) = &now {
                cells.push(configured(effective, &p.rules));
            }
            for s in &cols {
                let c = p.served.get(s).copied().unwrap_or(0);
                cells.push(if c > 0 && total > 0 {
                    format!("{c} ({:.1}%)", 100.0 * c as f64 / total as f64)
                } else {
                    c.to_string()
                });
            }
            let problems = p.problems();
            failed |= !problems.is_empty();
            cells.push(if problems.is_empty() {
                "ok".into()
            } else {
                format!("FAIL: {}", problems.join("; "))
            });
            cells
        })
        .collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .chain(std::iter::once(&head))
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let last = head.len() - 1;
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, &w))| {
                if i < text_columns {
                    format!("{c:<w$}")
                } else if i < last {
                    format!("{c:>w$}")
                } else {
                    c.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let sent: usize = probes.iter().map(|p| p.reqs.len()).sum();
    let upstreams: Vec<String> = routes
        .subsets
        .iter()
        .map(|(s, cluster)| {
            if s == cluster {
                s.clone()
            } else {
                format!("{s} (cluster {cluster})")
            }
        })
        .collect();
    println!();
    println!(
        "Upstreams (each answers its subset name): {}",
        upstreams.join(", ")
    );
    println!(
        "Observed split: {sent} requests in {elapsed:.1}s through Envoy at {} \
         (column = subset whose upstream answered)",
        a.front
    );
    if let Some((at, _)) = &now {
        println!(
            "Now ({}): each ramp at its share then, each guard as the filter's stats say \
             (`subset-router schedule CONFIG` prints the ramps' timelines)",
            format_rfc3339(*at)
        );
    }
    println!();
    println!("{}", line(&head));
    println!(
        "{}",
        line(&widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>())
    );
    for r in &rows {
        println!("{}", line(r));
    }
    println!();

    // ---- curl lines ----
    let base = format!("http://{}:{}", a.curl_host, front_addr.port());
    println!("Try it yourself:");
    let mut lines = vec![(Req::new().curl(&base), "plain request".to_owned())];
    match &debug {
        Some((req, subset)) => {
            lines.push((req.curl(&base), format!("debug rule: always {subset}")))
        }
        None => {
            let mut req = Req::new();
            req.headers.push(("user-agent".into(), "debug".into()));
            lines.push((
                req.curl(&base),
                "no debug (fixed-subset) rule in this config: same as plain".into(),
            ));
        }
    }
    if let Some(req) = sticky_req {
        lines.push((
            req.with_key(&sources, "alice").curl(&base),
            "sticky user: the same subset every time".into(),
        ));
    } else {
        lines.push((
            Req::new()
                .with_key(&[StickyKey::Header("x-user-id".into())], "alice")
                .curl(&base),
            "no sticky rule in this config: same as plain".into(),
        ));
    }
    let width = lines
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(0);
    for (c, why) in &lines {
        println!("  {c:<width$}   # {why}");
    }
    if let Some(h) = plugin.router.response_header() {
        println!("  (add -i to see the `{h}` response header)");
    }
    println!(
        "  Filter counters: curl -s '{}/stats?filter=subset_router'",
        a.admin
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use subset_router_core::time::parse_rfc3339;

    fn plugin(json: &str) -> Plugin {
        let config = subset_router_core::parse(json.as_bytes()).unwrap();
        let router = subset_router_core::compile(&config).unwrap();
        let live_routes = live_routes(json.as_bytes());
        Plugin {
            config,
            router,
            live_routes,
        }
    }

    #[test]
    fn ramps_and_guards_make_routes_live() {
        let j = br#"{"rules":[{"name":"a","route":{"split":[],"ramp":{}}},{"name":"b","route":{}}],"default":{}}"#;
        assert_eq!(live_routes(j), BTreeSet::from(["a".to_owned()]));
        let j = br#"{"rules":[{"name":"a","route":{}}],"default":{},"guards":[{}]}"#;
        assert_eq!(
            live_routes(j),
            BTreeSet::from(["a".to_owned(), "default".to_owned()])
        );
    }

    fn example(name: &str) -> Plugin {
        let path = format!(
            "{}/../examples/{name}/config.json",
            env!("CARGO_MANIFEST_DIR")
        );
        Plugin::read(&path).unwrap()
    }

    /// The README's quick-start table: 1000 users, 91 of them sticky on v2 (the filter's hash
    /// in Envoy and the core's agree, and neither changes across builds).
    #[test]
    fn the_core_predicts_the_quick_start_split() {
        let p = example("sticky-canary");
        let sources = p.sticky_sources();
        let mut d = Decider::new(
            &p,
            client_authority().unwrap(),
            Some(IpAddr::from([127, 0, 0, 1])),
        );
        let mut v2 = 0;
        for i in 0..1000 {
            let e = d
                .decide(&Req::new().with_key(&sources, &format!("user-{i}")))
                .unwrap();
            assert_eq!((e.rule.as_str(), e.sticky), ("canary", true));
            v2 += u32::from(e.subset.as_deref() == Some("v2"));
        }
        assert_eq!(v2, 91);
        assert_eq!(sticky_base(&p, &mut d, &sources).unwrap(), Req::new());
    }

    #[test]
    fn the_sticky_probe_goes_where_a_sticky_route_decides() {
        let p = plugin(
            r#"{"rules":[
              {"name":"api","match":{"pathPrefix":"/api"},"route":{"split":[{"subset":"v1","weight":1},{"subset":"v2","weight":1}],"stickyBy":{"cookie":"uid"}}}
            ],"default":{"split":[{"subset":"v1","weight":1},{"subset":"v2","weight":1}]}}"#,
        );
        let sources = p.sticky_sources();
        let mut d = Decider::new(&p, client_authority().unwrap(), None);
        let base = sticky_base(&p, &mut d, &sources).unwrap();
        assert_eq!(base.path, "/api");
        let plain = d.decide(&Req::new().with_key(&sources, "k")).unwrap();
        assert_eq!(
            (plain.rule.as_str(), plain.sticky, plain.subset),
            ("default", false, None)
        );
    }

    #[test]
    fn a_probe_fails_when_the_counters_disagree_with_the_core() {
        let p = example("debug-header");
        let mut d = Decider::new(&p, client_authority().unwrap(), None);
        let mut probe = Probe::new("x".into(), vec![Req::new(); 2], &mut d).unwrap();
        probe.served.insert("v1".into(), 2);
        probe.rules.insert("default".into(), 2);
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        probe.rules = BTreeMap::from([("debug".to_owned(), 2)]);
        assert_eq!(
            probe.problems(),
            ["the filter's counters disagree with the core, which decides default x2"]
        );
    }

    #[test]
    fn g_format_matches_python() {
        assert_eq!(format_g(90.0), "90");
        assert_eq!(format_g(10.0), "10");
        assert_eq!(format_g(100.0), "100");
        assert_eq!(format_g(100.0 / 3.0), "33.3333");
        assert_eq!(format_g(12.5), "12.5");
        assert_eq!(format_g(0.0001), "0.0001");
        assert_eq!(format_g(0.00001), "1e-05");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(
            shell_quote("http://localhost:10000/"),
            "http://localhost:10000/"
        );
        assert_eq!(shell_quote("user-agent: debug"), "'user-agent: debug'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn counters_in_both_namespaces() {
        let c = decision_counters(
            "wasmcustom.subset_router.rule.canary.subset.v1: 3\n\
             dynamicmodulescustom.subset_router.rule.debug.subset.v2.beta: 2\n\
             subset_router.rule.default.subset.v1: 1\n\
             wasmcustom.subset_router.rule.canary.ramp_ppm: 5\n\
             wasmcustom.subset_router.spoofed_header_removed: 4\n",
        );
        let want: BTreeMap<(String, String), u64> = [
            (("canary".into(), "v1".into()), 3),
            (("debug".into(), "v2.beta".into()), 2),
            (("default".into(), "v1".into()), 1),
        ]
        .into();
        assert_eq!(c, want);
    }

    #[test]
    fn the_core_labels_built_requests() {
        let p = plugin(
            r#"{"rules":[
              {"name":"debug","match":{"headers":[{"name":"user-agent","exact":"debug"}]},"route":{"subset":"v2"}},
              {"name":"shadowed","match":{"headers":[{"name":"user-agent","exact":"debug"}]},"route":{"subset":"v3"}},
              {"name":"q","match":{"query":[{"name":"v r","exact":"a b"}]},"route":{"subset":"v3"}},
              {"name":"beta","match":{"hosts":["*.example.com"]},"route":{"subset":"v2"}},
              {"name":"lan","match":{"sourceCidrs":["10.0.0.0/8"]},"route":{"subset":"v2"}},
              {"name":"canary","route":{"split":[{"subset":"v1","weight":90},{"subset":"v2","weight":10}],"stickyBy":{"header":"x-user-id"}}}
            ],"default":{"subset":"v1"}}"#,
        );
        let mut d = Decider::new(
            &p,
            client_authority().unwrap(),
            Some(IpAddr::from([127, 0, 0, 1])),
        );
        let rule = |d: &mut Decider, i: usize| {
            let req = build(&p.config.rules[i].matches).unwrap();
            d.decide(&req).unwrap().rule
        };
        assert_eq!(rule(&mut d, 0), "debug");
        assert_eq!(rule(&mut d, 1), "debug");
        assert_eq!(rule(&mut d, 2), "q");
        assert_eq!(rule(&mut d, 3), "beta");
        assert_eq!(rule(&mut d, 4), "canary");
        let plain = d.decide(&Req::new()).unwrap();
        assert_eq!((plain.rule.as_str(), plain.subset), ("canary", None));
        let sticky = d
            .decide(&Req::new().with_key(&p.sticky_sources(), "user-42"))
            .unwrap();
        assert_eq!(sticky.rule, "canary");
        assert!(sticky.subset.is_some());
        let q = build(&p.config.rules[2].matches).unwrap();
        assert_eq!(q.target(), "/?v%20r=a%20b");
        assert_eq!(q.describe(), "/?v%20r=a%20b");
    }

    #[test]
    fn requests_describe_and_curl_like_before() {
        let mut r = Req::new().with_key(
            &[
                StickyKey::Header("x-user-id".into()),
                StickyKey::Cookie("uid".into()),
            ],
            "alice",
        );
        assert_eq!(r.describe(), "x-user-id: alice, cookie: uid=alice");
        assert_eq!(
            r.curl("http://localhost:10000"),
            "curl -s -H 'x-user-id: alice' -H 'cookie: uid=alice' http://localhost:10000/"
        );
        r.method = "POST".into();
        r.host = Some("beta.example.com".into());
        assert_eq!(
            r.describe(),
            "POST, x-user-id: alice, cookie: uid=alice, host beta.example.com"
        );
        assert_eq!(Req::new().describe(), "GET /");
    }

    #[test]
    fn other_host_keeps_the_client_bytes() {
        let b = with_host(
            http::request_bytes("GET", "/x", &[("a", "1")]),
            "beta.example.com",
        )
        .unwrap();
        let text = String::from_utf8(b).unwrap();
        assert!(
            text.starts_with("GET /x HTTP/1.1\r\nhost: beta.example.com\r\na: 1\r\n\r\n"),
            "{text}"
        );
    }

    /// Every command answers --help (and `help COMMAND`) with its usage, exit 0.
    #[test]
    fn every_command_has_help() {
        for (command, text) in HELP {
            for args in [
                vec![*command, "--help"],
                vec![*command, "-h"],
                vec!["help", command],
            ] {
                let args: Vec<String> = args.into_iter().map(String::from).collect();
                assert!(
                    matches!(run(&args), Ok(code) if code == ExitCode::SUCCESS),
                    "{args:?}"
                );
            }
            assert!(text.starts_with(&format!("usage: subset-router-demo {command} ")));
        }
        assert_eq!(
            HELP.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            ["free-ports", "wait-ready", "burst", "watch", "shift-ramps"]
        );
    }

    /// The progressive example: configured 95/5, its ramp (over long ago) at 50/50 now, and
    /// with the guard open v2 out of the split.
    #[test]
    fn the_effective_split_now_applies_ramps_and_guards() {
        let p = example("progressive");
        let rules = BTreeMap::from([("canary".to_owned(), 1)]);
        let summaries = p.router.summaries();
        assert_eq!(
            configured(&summaries, &rules),
            "canary: v1 95% / v2 5% sticky"
        );
        let ramp_end = parse_rfc3339("2026-12-01T12:00:00Z").unwrap();
        let at =
            |t: UnixMs, open: bool| configured(&effective_summaries(&p, t, vec![open]), &rules);
        assert_eq!(at(ramp_end, false), "canary: v1 50% / v2 50% sticky");
        assert_eq!(
            at(ramp_end - 3_600_000, false),
            "canary: v1 72.5% / v2 27.5% sticky"
        );
        assert_eq!(at(ramp_end, true), "canary: v1 100% / v2 0% sticky");
        let gauges = BTreeMap::from([("guard.v2.open".to_owned(), 1)]);
        assert_eq!(open_guards(&p, &gauges), [true]);
        assert_eq!(open_guards(&p, &BTreeMap::new()), [false]);
    }

    /// `shift-ramps`: a copy whose ramp starts then (and lasts --duration), nothing else
    /// changed, valid for the filter.
    #[test]
    fn shift_ramps_moves_only_the_ramps_start_and_duration() {
        let path = format!(
            "{}/../examples/progressive/config.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let json = std::fs::read(&path).unwrap();
        let start = parse_rfc3339("2030-01-02T03:04:05Z").unwrap();
        let shifted = with_ramps_from(&json, start + 678, Some(120)).unwrap();
        let mut expected: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let ramp = &mut expected["rules"][1]["route"]["ramp"];
        ramp["start"] = "2030-01-02T03:04:05Z".into();
        ramp["durationSeconds"] = 120.into();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&shifted).unwrap(),
            expected
        );
        let router = subset_router_core::load(&shifted).unwrap();
        assert_eq!(router.ramps()[0].ramp.start_ms, start);
        assert!(
            with_ramps_from(br#"{"default":{"subset":"v1"}}"#, start, None)
                .unwrap_err()
                .contains("no ramp")
        );
        assert_eq!(parse_duration("10s"), Ok(10));
        assert_eq!(parse_duration("2m"), Ok(120));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("soon").is_err());

        let out = std::env::temp_dir().join(format!("shift-ramps-{}.json", std::process::id()));
        let args: Vec<String> = [&path, "--start-in", "10s", "-o", &out.to_string_lossy()]
            .map(|s| s.to_string())
            .to_vec();
        let before = now_ms();
        assert!(matches!(shift_ramps(&args), Ok(code) if code == ExitCode::SUCCESS));
        let router = subset_router_core::load(&std::fs::read(&out).unwrap()).unwrap();
        let start = router.ramps()[0].ramp.start_ms;
        assert!(
            (before + 9_000..=now_ms() + 10_000).contains(&start),
            "{start}"
        );
        std::fs::remove_file(&out).unwrap();
    }

    #[test]
    fn burst_arguments() {
        let a: Vec<String> = [
            "c.json",
            "127.0.0.1:1",
            "http://127.0.0.1:2",
            "--requests=5",
            "--curl-host",
            "h",
        ]
        .map(String::from)
        .to_vec();
        let b = BurstArgs::parse(&a).unwrap();
        assert_eq!(
            (b.requests, b.curl_host.as_str(), b.admin.as_str()),
            (5, "h", "http://127.0.0.1:2")
        );
        assert!(BurstArgs::parse(&a[..2]).is_err());
    }
}
