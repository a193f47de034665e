//! A deliberately simple reference for "does this rule's `match` hold for this request", written
//! from the documentation apart from the filter's `matching.rs` / `request.rs`: it reads the conditions
//! straight from the configuration JSON, sees the request as a plain list of (name, value) byte
//! pairs decoded here from the proxy-wasm header-map buffer, and evaluates every condition the
//! obvious way, with no precompiled fast paths. The fuzz oracle uses it to check that the rule
//! that decided matches and that no earlier rule does.
//!
//! Choices the documentation leaves open, made here as an Envoy operator would expect them:
//! header names compare case-insensitively (pseudo-headers included); the client's values of
//! `clusterHeader` / `subsetHeader` are gone before any rule looks (the first step of every request); `:path` is cut
//! at `#` (a fragment is never a query) then at `?`; query names and values are percent-decoded,
//! a malformed escape stays as written and `+` stays `+`; cookies are the `name=value` pairs of
//! every `cookie` header, trimmed of spaces and tabs, one pair of surrounding quotes removed;
//! hosts compare case-insensitively to `:authority` without its port and one trailing dot; an
//! IPv4-mapped IPv6 peer is its IPv4 address; a regex must be valid as written (as documented) and
//! match the whole (UTF-8) value.

use std::net::IpAddr;

use serde_json::Value;

/// The request as the host hands it over: the header pairs of the serialised map, in order.
pub struct Request<'a> {
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// The peer address the request really came from (canonical: IPv4-mapped is IPv4).
    pub peer: Option<IpAddr>,
}

/// Decodes a proxy-wasm header map (`u32 count`, `count` × (`u32 name_len`, `u32 value_len`),
/// then every name and value followed by a NUL; little-endian). A pair that does not fit in the
/// buffer ends the list, as does a size table longer than the buffer.
pub fn decode_header_map(buf: &[u8]) -> Vec<(&[u8], &[u8])> {
    let u32_at = |at: usize| -> Option<usize> {
        let b = buf.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let mut pairs = Vec::new();
    let Some(count) = u32_at(0) else {
        return pairs;
    };
    let Some(mut at) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return pairs;
    };
    if at > buf.len() {
        return pairs;
    }
    for i in 0..count {
        let pair = (|| {
            let name_end = at.checked_add(u32_at(4 + 8 * i)?)?;
            let value_end = (name_end + 1).checked_add(u32_at(8 + 8 * i)?)?;
            let pair = (buf.get(at..name_end)?, buf.get(name_end + 1..value_end)?);
            at = value_end + 1;
            Some(pair)
        })();
        match pair {
            Some(p) => pairs.push(p),
            None => break,
        }
    }
    pairs
}

impl<'a> Request<'a> {
    /// The request a rule sees: the filter's own routing headers removed first.
    pub fn new(
        mut headers: Vec<(&'a [u8], &'a [u8])>,
        peer: Option<IpAddr>,
        routing: &RoutingHeaders,
    ) -> Self {
        headers.retain(|(n, _)| {
            !routing
                .names()
                .any(|r| n.eq_ignore_ascii_case(r.as_bytes()))
        });
        Request { headers, peer }
    }

    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }

    fn first(&self, name: &str) -> Option<&'a [u8]> {
        self.values(name).next()
    }
}

/// The headers the filter writes (and so strips from the client's request).
pub struct RoutingHeaders {
    /// `clusterHeader`: `x-upstream-cluster` unless set, none when `null`.
    pub cluster: Option<String>,
    pub subset: Option<String>,
}

impl RoutingHeaders {
    pub fn from_config(cfg: &Value) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(String::from);
        RoutingHeaders {
            cluster: match cfg.get("clusterHeader") {
                None => Some("x-upstream-cluster".to_string()),
                v => text(v),
            },
            subset: text(cfg.get("subsetHeader")),
        }
    }

    /// Cluster header first, then subset header.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.cluster.iter().chain(&self.subset).map(String::as_str)
    }
}

enum Op {
    Exact(Vec<u8>),
    /// `oneOf`: the listed values, searched one by one (the filter's set is not reused).
    OneOf(Vec<Vec<u8>>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Contains(Vec<u8>),
    /// `None`: a pattern this reference cannot anchor (a `(?x)` comment running to its end);
    /// conditions on it are "unknown" and not judged.
    Regex(Option<regex_lite::Regex>),
    Present(bool),
}

#[derive(Clone, Copy, PartialEq)]
enum From {
    Header,
    Cookie,
    Query,
}

struct Condition {
    from: From,
    name: String,
    op: Op,
    invert: bool,
}

/// One rule's `match`, as written.
#[derive(Default)]
pub struct Match {
    methods: Vec<String>,
    path: Option<String>,
    path_prefix: Option<String>,
    hosts: Vec<String>,
    cidrs: Vec<String>,
    conditions: Vec<Condition>,
}

fn strings(v: Option<&Value>) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(String::from)
                    .ok_or(format!("not a string: {s}"))
            })
            .collect(),
        Some(other) => Err(format!("not a list: {other}")),
    }
}

fn opt_string(v: Option<&Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("not a string: {other}")),
    }
}

fn condition(from: From, c: &Value) -> Result<Condition, String> {
    let text = |k: &str| opt_string(c.get(k));
    let bytes = |s: String| s.into_bytes();
    let op = if let Some(s) = text("exact")? {
        Op::Exact(bytes(s))
    } else if let Some(list) = c.get("oneOf").filter(|v| !v.is_null()) {
        let values = strings(Some(list))?;
        // As documented: a set of up to 100,000 values (an empty one could never hold).
        if values.is_empty() || values.len() > 100_000 {
            return Err(format!(
                "oneOf holds {} values, not 1 to 100,000",
                values.len()
            ));
        }
        Op::OneOf(values.into_iter().map(bytes).collect())
    } else if let Some(s) = text("prefix")? {
        Op::Prefix(bytes(s))
    } else if let Some(s) = text("suffix")? {
        Op::Suffix(bytes(s))
    } else if let Some(s) = text("contains")? {
        Op::Contains(bytes(s))
    } else if let Some(s) = text("regex")? {
        // As documented: valid as written, checked before any anchoring. Wrapped first, a pattern
        // like `a)|(b` closes the wrapper's group and becomes a valid, unanchored `^(?:a)|(b)$`.
        if let Err(e) = regex_lite::Regex::new(&s) {
            let reason = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            return Err(format!("{s:?} is not a valid regex as written: {reason}"));
        }
        Op::Regex(regex_lite::Regex::new(&format!("^(?:{s})$")).ok())
    } else if let Some(p) = c.get("present").and_then(Value::as_bool) {
        Op::Present(p)
    } else {
        return Err(format!("no operator in {c}"));
    };
    Ok(Condition {
        from,
        name: text("name")?.ok_or(format!("no name in {c}"))?,
        op,
        invert: c.get("invert").and_then(Value::as_bool).unwrap_or(false),
    })
}

impl Match {
    /// Reads a rule's `match` (absent or `null`: always holds). `Err` when the JSON is not a
    /// match the documentation describes (the filter accepted something it should not have).
    pub fn from_json(m: Option<&Value>) -> Result<Match, String> {
        let m = match m {
            None | Some(Value::Null) => return Ok(Match::default()),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(format!("match is not an object: {other}")),
        };
        let mut out = Match {
            methods: strings(m.get("methods"))?,
            path: opt_string(m.get("path"))?,
            path_prefix: opt_string(m.get("pathPrefix"))?,
            hosts: strings(m.get("hosts"))?,
            cidrs: strings(m.get("sourceCidrs"))?,
            conditions: Vec::new(),
        };
        for (field, from) in [
            ("headers", From::Header),
            ("cookies", From::Cookie),
            ("query", From::Query),
        ] {
            match m.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::Array(list)) => {
                    for c in list {
                        out.conditions.push(condition(from, c)?);
                    }
                }
                Some(other) => return Err(format!("{field} is not a list: {other}")),
            }
        }
        for c in &out.cidrs {
            cidr_contains(c, None).ok_or(format!("{c:?} is not a CIDR block"))?;
        }
        Ok(out)
    }

    /// `Some(holds)`, or `None` when a condition could not be judged (and none is false).
    pub fn holds(&self, req: &Request) -> Option<bool> {
        let mut unknown = false;
        let mut all = |result: Option<bool>| match result {
            Some(false) => false,
            Some(true) => true,
            None => {
                unknown = true;
                true
            }
        };
        let path = req.first(":path").unwrap_or_default();
        let path = &path[..path.iter().position(|&b| b == b'#').unwrap_or(path.len())];
        let (path_only, query) = match path.iter().position(|&b| b == b'?') {
            Some(q) => (&path[..q], Some(&path[q + 1..])),
            None => (path, None),
        };
        let method = req.first(":method");
        let ok = (self.methods.is_empty()
            || self.methods.iter().any(|m| Some(m.as_bytes()) == method))
            && self.path.as_ref().is_none_or(|p| p.as_bytes() == path_only)
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|p| path_only.starts_with(p.as_bytes()))
            && (self.hosts.is_empty() || {
                let host = host_of(req.first(":authority").unwrap_or_default());
                self.hosts.iter().any(|h| host_matches(h, host))
            })
            && (self.cidrs.is_empty()
                || self
                    .cidrs
                    .iter()
                    .any(|c| cidr_contains(c, req.peer) == Some(true)))
            && self.conditions.iter().all(|c| all(c.holds(req, query)));
        if !ok {
            Some(false)
        } else if unknown {
            None
        } else {
            Some(true)
        }
    }
}

impl Condition {
    fn holds(&self, req: &Request, query: Option<&[u8]>) -> Option<bool> {
        let values: Vec<Vec<u8>> = match self.from {
            From::Header => req.values(&self.name).map(<[u8]>::to_vec).collect(),
            From::Cookie => req
                .values("cookie")
                .flat_map(cookies)
                .filter(|(n, _)| *n == self.name.as_bytes())
                .map(|(_, v)| v.to_vec())
                .collect(),
            From::Query => query
                .unwrap_or_default()
                .split(|&b| b == b'&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.iter().position(|&b| b == b'=') {
                    Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
                    None => (decode(p), Vec::new()),
                })
                .filter(|(n, _)| n == self.name.as_bytes())
                .map(|(_, v)| v)
                .collect(),
        };
        let result = match &self.op {
            Op::Present(want) => Some(values.is_empty() != *want),
            Op::Regex(None) => None,
            Op::Regex(Some(re)) => Some(
                values
                    .iter()
                    .any(|v| std::str::from_utf8(v).is_ok_and(|s| re.is_match(s))),
            ),
            Op::Exact(s) => Some(values.iter().any(|v| v == s)),
            Op::OneOf(set) => Some(values.iter().any(|v| set.contains(v))),
            Op::Prefix(s) => Some(values.iter().any(|v| v.starts_with(s))),
            Op::Suffix(s) => Some(values.iter().any(|v| v.ends_with(s))),
            Op::Contains(s) => Some(
                values
                    .iter()
                    .any(|v| v.windows(s.len()).any(|w| w == s.as_slice())),
            ),
        };
        result.map(|r| r != self.invert)
    }
}

/// `name=value` pairs of one `cookie` header.
fn cookies(header: &[u8]) -> Vec<(&[u8], &[u8])> {
    fn trim(mut s: &[u8]) -> &[u8] {
        while let [b' ' | b'\t', rest @ ..] = s {
            s = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = s {
            s = rest;
        }
        s
    }
    header
        .split(|&b| b == b';')
        .filter_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let name = trim(&pair[..eq]);
            let mut value = trim(&pair[eq + 1..]);
            if let [b'"', inner @ .., b'"'] = value {
                value = inner;
            }
            (!name.is_empty()).then_some((name, value))
        })
        .collect()
}

/// Percent-decoding: `%XX` with two hex digits becomes that byte, anything else stays.
fn decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if let (b'%', Some(Some(hi)), Some(Some(lo))) = (
            s[i],
            s.get(i + 1).map(|&b| hex(b)),
            s.get(i + 2).map(|&b| hex(b)),
        ) {
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// The host of an `:authority`: no port (`host:digits`, `[v6]:digits`), one trailing dot off.
fn host_of(authority: &[u8]) -> &[u8] {
    let host = if authority.starts_with(b"[") {
        match authority.iter().position(|&b| b == b']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(c) if authority[c + 1..].iter().all(u8::is_ascii_digit) => &authority[..c],
            _ => authority,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
}

fn host_matches(pattern: &str, host: &[u8]) -> bool {
    let host = host.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    if pattern == "*" {
        true
    } else if let Some(domain) = pattern.strip_prefix('*') {
        // `*.example.com`: any name ending in `.example.com`, not `example.com` itself.
        host.len() > domain.len() && host.ends_with(domain.as_bytes())
    } else {
        host == pattern.as_bytes()
    }
}

/// Whether `ip` is in the block `cidr` (`None` when the block does not parse). An IPv4 block
/// holds only IPv4 peers, an IPv6 block only IPv6 ones.
fn cidr_contains(cidr: &str, ip: Option<IpAddr>) -> Option<bool> {
    let (addr, len) = cidr.split_once('/').unwrap_or((cidr, ""));
    let net: IpAddr = addr.parse().ok()?;
    let (bits, net_bits): (u32, u128) = match net {
        IpAddr::V4(v4) => (32, u128::from(u32::from(v4)) << 96),
        IpAddr::V6(v6) => (128, u128::from(v6)),
    };
    let len: u32 = if len.is_empty() {
        bits
    } else {
        len.parse().ok()?
    };
    if len > bits || cidr.ends_with('/') {
        return None;
    }
    let ip_bits = match (net, ip) {
        (IpAddr::V4(_), Some(IpAddr::V4(v4))) => u128::from(u32::from(v4)) << 96,
        (IpAddr::V6(_), Some(IpAddr::V6(v6))) => u128::from(v6),
        _ => return Some(false),
    };
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    Some(ip_bits & mask == net_bits & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(h: &[(&'a str, &'a str)]) -> Request<'a> {
        Request::new(
            h.iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
                .collect(),
            Some("10.1.2.3".parse().unwrap()),
            &RoutingHeaders {
                cluster: Some("x-upstream-cluster".into()),
                subset: None,
            },
        )
    }

    fn holds(m: &str, r: &Request) -> Option<bool> {
        Match::from_json(Some(&serde_json::from_str(m).unwrap()))
            .unwrap()
            .holds(r)
    }

    #[test]
    fn conditions_as_the_spec_describes_them() {
        let r = req(&[
            (":method", "GET"),
            (":path", "/api/x?de%62ug=1&flag#frag?user=2"),
            (":authority", "Shop.Example.com.:8080"),
            ("User-Agent", "debug"),
            ("cookie", "a=1; uid = \"42\" ;junk"),
            ("x-upstream-cluster", "internal-admin"),
        ]);
        assert_eq!(holds(r#"{}"#, &r), Some(true));
        assert_eq!(
            holds(r#"{"pathPrefix":"/api","methods":["GET"]}"#, &r),
            Some(true)
        );
        assert_eq!(holds(r#"{"path":"/api/x"}"#, &r), Some(true));
        assert_eq!(holds(r#"{"path":"/api"}"#, &r), Some(false));
        assert_eq!(holds(r#"{"hosts":["*.example.com"]}"#, &r), Some(true));
        assert_eq!(holds(r#"{"hosts":["example.com"]}"#, &r), Some(false));
        assert_eq!(holds(r#"{"sourceCidrs":["10.0.0.0/8"]}"#, &r), Some(true));
        assert_eq!(holds(r#"{"sourceCidrs":["::/0"]}"#, &r), Some(false));
        assert_eq!(
            holds(r#"{"headers":[{"name":"user-agent","regex":"deb.*"}]}"#, &r),
            Some(true)
        );
        assert_eq!(
            holds(r#"{"headers":[{"name":"user-agent","regex":"deb"}]}"#, &r),
            Some(false)
        );
        assert_eq!(
            holds(r#"{"cookies":[{"name":"uid","exact":"42"}]}"#, &r),
            Some(true)
        );
        assert_eq!(
            holds(r#"{"query":[{"name":"debug","exact":"1"}]}"#, &r),
            Some(true)
        );
        assert_eq!(
            holds(r#"{"query":[{"name":"flag","exact":""}]}"#, &r),
            Some(true)
        );
        assert_eq!(
            holds(r#"{"query":[{"name":"user","present":true}]}"#, &r),
            Some(false)
        );
        for (one_of, holds_then) in [
            (
                r#"{"headers":[{"name":"USER-AGENT","oneOf":["x","debug"]}]}"#,
                true,
            ),
            (
                r#"{"headers":[{"name":"user-agent","oneOf":["Debug","debu"]}]}"#,
                false,
            ),
            (r#"{"cookies":[{"name":"uid","oneOf":["41","42"]}]}"#, true),
            (
                r#"{"query":[{"name":"debug","oneOf":["1"],"invert":true}]}"#,
                false,
            ),
            (
                r#"{"query":[{"name":"user","oneOf":["2"],"invert":true}]}"#,
                true,
            ),
        ] {
            assert_eq!(holds(one_of, &r), Some(holds_then), "{one_of}");
        }
        assert!(
            Match::from_json(Some(
                &serde_json::json!({"headers":[{"name":"x","oneOf":[]}]})
            ))
            .is_err(),
            "an empty oneOf is not a match the documentation describes"
        );
        // The client's routing header is stripped before any rule looks.
        let forged = r#"{"headers":[{"name":"x-upstream-cluster","present":true}]}"#;
        assert_eq!(holds(forged, &r), Some(false));
        assert_eq!(
            holds(
                r#"{"headers":[{"name":"x-a","exact":"1","invert":true}]}"#,
                &r
            ),
            Some(true)
        );
    }

    #[test]
    fn a_regex_must_be_valid_as_written_before_it_is_anchored() {
        // Invalid as written; wrapped first it would become `^(?:a)|(b)$`: valid, unanchored,
        // and true for any value that starts with `a` or ends with `b`.
        for pattern in ["a)|(b", "debug)|(.*"] {
            let m = format!(r#"{{"headers":[{{"name":"x","regex":"{pattern}"}}]}}"#);
            let e = Match::from_json(Some(&serde_json::from_str(&m).unwrap()))
                .err()
                .unwrap_or_else(|| panic!("{pattern:?} was read as a valid condition"));
            assert!(e.contains("not a valid regex"), "{e}");
        }
        // A valid pattern still matches whole values only.
        let r = req(&[("x", "ab")]);
        assert_eq!(
            holds(r#"{"headers":[{"name":"x","regex":"a|ab"}]}"#, &r),
            Some(true)
        );
        assert_eq!(
            holds(r#"{"headers":[{"name":"x","regex":"a|b"}]}"#, &r),
            Some(false)
        );
    }

    #[test]
    fn header_map_decoding_stops_at_the_first_pair_that_does_not_fit() {
        let buf = subset_router_core::HeaderPairs::encode(&[("a", "1"), ("bb", "22")]);
        assert_eq!(
            decode_header_map(&buf),
            vec![(&b"a"[..], &b"1"[..]), (&b"bb"[..], &b"22"[..])]
        );
        assert_eq!(decode_header_map(&buf[..buf.len() - 3]).len(), 1);
        assert!(decode_header_map(&buf[..10]).is_empty());
    }
}
