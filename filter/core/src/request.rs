//! The request as the decision sees it, and the parsing of the few structured values it reads
//! (cookies, query string, authority, peer address). No proxy-wasm types here.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Read access to a request's headers and peer address.
///
/// Header names are given in lower case. Pseudo-headers (`:path`, `:authority`, `:method`) are
/// headers too, as in Envoy's header map.
pub trait RequestView {
    /// Every value of the header `name`, in arrival order (a header sent twice yields two values).
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// The downstream peer's IP address, if known.
    fn source_ip(&self) -> Option<IpAddr>;

    /// The first value of a header.
    fn first_header<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.header_values(name).next()
    }
}

/// A header map in the proxy-wasm ABI serialisation, as `proxy_get_header_map_pairs` returns it:
/// `u32 count`, then `count` × (`u32 name_len`, `u32 value_len`), then each name and value
/// followed by a NUL byte (all integers little-endian).
///
/// Reading it in place costs one host call and one buffer per request, and no copy per header,
/// whatever the rules need. A malformed buffer simply ends the iteration early.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPairs<'a> {
    buf: &'a [u8],
}

impl<'a> HeaderPairs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// All (name, value) pairs in order.
    pub fn iter(&self) -> HeaderPairsIter<'a> {
        let count = read_u32(self.buf, 0).unwrap_or(0) as usize;
        // Sizes table: 8 bytes per pair after the count; data follows it.
        let data_start = count.checked_mul(8).and_then(|n| n.checked_add(4));
        HeaderPairsIter {
            buf: self.buf,
            index: 0,
            count: if data_start.is_some_and(|s| s <= self.buf.len()) {
                count
            } else {
                0
            },
            data_offset: data_start.unwrap_or(0),
        }
    }

    /// Serialises pairs into the ABI format: used by tests and host tools to build requests.
    pub fn encode<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
        for (name, value) in pairs {
            out.extend_from_slice(&(name.as_ref().len() as u32).to_le_bytes());
            out.extend_from_slice(&(value.as_ref().len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            out.extend_from_slice(name.as_ref());
            out.push(0);
            out.extend_from_slice(value.as_ref());
            out.push(0);
        }
        out
    }
}

pub struct HeaderPairsIter<'a> {
    buf: &'a [u8],
    index: usize,
    count: usize,
    data_offset: usize,
}

impl<'a> Iterator for HeaderPairsIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        let sizes_at = 4 + self.index * 8;
        let name_len = read_u32(self.buf, sizes_at)? as usize;
        let value_len = read_u32(self.buf, sizes_at + 4)? as usize;
        let name_start = self.data_offset;
        let name_end = name_start.checked_add(name_len)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_len)?;
        let name = self.buf.get(name_start..name_end)?;
        let value = self.buf.get(value_start..value_end)?;
        self.data_offset = value_end + 1;
        self.index += 1;
        Some((name, value))
    }
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// A request made of a serialised header map and the peer address: what the filter sees.
#[derive(Debug, Clone, Copy)]
pub struct SerializedRequest<'a> {
    pub headers: HeaderPairs<'a>,
    pub source: Option<IpAddr>,
}

impl RequestView for SerializedRequest<'_> {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.source
    }
}

/// A request header map as a host hands it over: the proxy-wasm serialisation
/// ([`HeaderPairs`]) or a list of (name, value) slices (the Envoy dynamic-module ABI).
#[derive(Debug, Clone, Copy)]
pub enum HeaderSource<'a> {
    Serialized(HeaderPairs<'a>),
    Pairs(&'a [(&'a [u8], &'a [u8])]),
}

impl<'a> HeaderSource<'a> {
    pub fn iter(&self) -> HeaderSourceIter<'a> {
        match self {
            HeaderSource::Serialized(pairs) => HeaderSourceIter::Serialized(pairs.iter()),
            HeaderSource::Pairs(list) => HeaderSourceIter::Pairs(list.iter()),
        }
    }
}

impl<'a> From<HeaderPairs<'a>> for HeaderSource<'a> {
    fn from(pairs: HeaderPairs<'a>) -> Self {
        HeaderSource::Serialized(pairs)
    }
}

impl<'a> From<&'a [(&'a [u8], &'a [u8])]> for HeaderSource<'a> {
    fn from(list: &'a [(&'a [u8], &'a [u8])]) -> Self {
        HeaderSource::Pairs(list)
    }
}

pub enum HeaderSourceIter<'a> {
    Serialized(HeaderPairsIter<'a>),
    Pairs(std::slice::Iter<'a, (&'a [u8], &'a [u8])>),
}

impl<'a> Iterator for HeaderSourceIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            HeaderSourceIter::Serialized(it) => it.next(),
            HeaderSourceIter::Pairs(it) => it.next().copied(),
        }
    }
}

/// How many headers [`DecodedRequest`] decodes into its table; a larger map is read in place.
pub const MAX_DECODED_HEADERS: usize = 32;

/// What the filter decides on: the serialised header map decoded **once** into a table of
/// (name, value) slices on the stack, so that the many lookups a rule set makes (every header,
/// cookie, query, host and path condition asks for a header by name) scan slices instead of
/// re-decoding the ABI buffer each time; and `:path`, `:authority`, `:method` and `cookie` —
/// which most rules read — are found during that one pass and answered without any scan.
/// No allocation. A map with more than [`MAX_DECODED_HEADERS`] headers is read in place, as
/// [`SerializedRequest`] does, with the same results.
pub struct DecodedRequest<'a> {
    table: [(&'a [u8], &'a [u8]); MAX_DECODED_HEADERS],
    len: usize,
    /// `Some` when the table could not hold the map: lookups walk the host's map.
    overflow: Option<HeaderSource<'a>>,
    path: Option<&'a [u8]>,
    authority: Option<&'a [u8]>,
    method: Option<&'a [u8]>,
    /// The first `cookie` value, and whether there are more.
    cookie: Option<&'a [u8]>,
    more_cookies: bool,
    source: Option<IpAddr>,
}

impl<'a> DecodedRequest<'a> {
    pub fn new(headers: impl Into<HeaderSource<'a>>, source: Option<IpAddr>) -> Self {
        let headers = headers.into();
        let mut req = Self {
            table: [(&[], &[]); MAX_DECODED_HEADERS],
            len: 0,
            overflow: None,
            path: None,
            authority: None,
            method: None,
            cookie: None,
            more_cookies: false,
            source,
        };
        for (name, value) in headers.iter() {
            let hot = match name.len() {
                5 if name.eq_ignore_ascii_case(b":path") => &mut req.path,
                6 if name.eq_ignore_ascii_case(b"cookie") => {
                    req.more_cookies |= req.cookie.is_some();
                    &mut req.cookie
                }
                7 if name.eq_ignore_ascii_case(b":method") => &mut req.method,
                10 if name.eq_ignore_ascii_case(b":authority") => &mut req.authority,
                _ => &mut None,
            };
            if hot.is_none() {
                *hot = Some(value);
            }
            match req.table.get_mut(req.len) {
                Some(entry) => {
                    *entry = (name, value);
                    req.len += 1;
                }
                None => req.overflow = Some(headers),
            }
        }
        req
    }
}

/// The values of one header name in a [`DecodedRequest`].
pub struct DecodedValues<'r, 'a> {
    name: &'r [u8],
    table: std::slice::Iter<'r, (&'a [u8], &'a [u8])>,
    overflow: Option<HeaderSourceIter<'a>>,
    /// A value already known (the only `cookie` header): yielded once, nothing is scanned.
    known: Option<Option<&'a [u8]>>,
}

impl<'r, 'a: 'r> Iterator for DecodedValues<'r, 'a> {
    type Item = &'r [u8];

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(known) = &mut self.known {
            return known.take();
        }
        let name = self.name;
        if let Some(raw) = &mut self.overflow {
            return raw
                .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v);
        }
        for &(n, v) in self.table.by_ref() {
            if n.len() == name.len() && n.eq_ignore_ascii_case(name) {
                return Some(v);
            }
        }
        None
    }
}

impl RequestView for DecodedRequest<'_> {
    fn header_values<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'r [u8]> + 'r {
        let known = (self.overflow.is_none() && !self.more_cookies && name == "cookie")
            .then_some(self.cookie);
        DecodedValues {
            name: name.as_bytes(),
            table: self.table.get(..self.len).unwrap_or_default().iter(),
            overflow: self.overflow.map(|h| h.iter()),
            known,
        }
    }

    fn first_header<'r>(&'r self, name: &'r str) -> Option<&'r [u8]> {
        match name {
            ":path" => self.path,
            ":authority" => self.authority,
            ":method" => self.method,
            "cookie" => self.cookie,
            _ => self.header_values(name).next(),
        }
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.source
    }
}

/// A simple owned request, for tests and the simulator.
#[derive(Debug, Clone, Default)]
pub struct OwnedRequest {
    pub headers: Vec<(String, Vec<u8>)>,
    pub source: Option<IpAddr>,
}

impl OwnedRequest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// The first value of a header, as text (lossy).
    pub fn first_header_owned(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn source(mut self, ip: IpAddr) -> Self {
        self.source = Some(ip);
        self
    }
}

impl RequestView for OwnedRequest {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.source
    }
}

/// `:path` without the query string and fragment.
pub fn path_only(path: &[u8]) -> &[u8] {
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// The query string of `:path` (after `?`, before `#`), if any.
pub fn query_string(path: &[u8]) -> Option<&[u8]> {
    let start = path.iter().position(|&b| b == b'?')? + 1;
    let rest = path.get(start..)?;
    let end = rest.iter().position(|&b| b == b'#').unwrap_or(rest.len());
    rest.get(..end)
}

/// Query parameters as percent-decoded (name, value) pairs. `+` is kept as is (it only means a
/// space in HTML form bodies), and a malformed `%` escape is kept literally, as Envoy does.
pub fn query_params(query: &[u8]) -> impl Iterator<Item = (Cow<'_, [u8]>, Cow<'_, [u8]>)> {
    query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (
                    pair.get(..i).unwrap_or(pair),
                    pair.get(i + 1..).unwrap_or(&[]),
                ),
                None => (pair, &[][..]),
            };
            (percent_decode(name), percent_decode(value))
        })
}

/// Percent-decoding that borrows (allocates nothing) unless the input holds at least one
/// valid `%XX` escape: a value without `%`, or with only malformed escapes, is unchanged.
pub fn percent_decode(input: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = first_escape(input) else {
        return Cow::Borrowed(input);
    };
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(input.get(..first).unwrap_or_default());
    let mut i = first;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            let hi = input.get(i + 1).and_then(|&c| hex_value(c));
            let lo = input.get(i + 2).and_then(|&c| hex_value(c));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

/// Where the first valid `%XX` escape starts, if any.
fn first_escape(input: &[u8]) -> Option<usize> {
    input.windows(3).position(
        |w| matches!(w, [b'%', hi, lo] if hex_value(*hi).is_some() && hex_value(*lo).is_some()),
    )
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Cookies of one `cookie` header value as (name, value) pairs; surrounding double quotes of a
/// value are removed (RFC 6265 allows them), pairs without `=` are skipped.
pub fn cookie_pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').filter_map(|pair| {
        let i = pair.iter().position(|&b| b == b'=')?;
        let name = trim(pair.get(..i)?);
        let mut value = trim(pair.get(i + 1..)?);
        if value.len() >= 2 && value.first() == Some(&b'"') && value.last() == Some(&b'"') {
            value = value.get(1..value.len() - 1)?;
        }
        if name.is_empty() {
            None
        } else {
            Some((name, value))
        }
    })
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(&[])
}

/// The host of an `:authority` value: the port and one trailing dot removed
/// (`[::1]:8080` → `[::1]`, `Example.com.:443` → `Example.com`). Case is left to the caller.
pub fn authority_host(authority: &[u8]) -> &[u8] {
    let host = if authority.first() == Some(&b'[') {
        // IPv6 literal: keep up to and including the closing bracket.
        match authority.iter().position(|&b| b == b']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        }
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => {
                let port = authority.get(colon + 1..).unwrap_or(&[]);
                if port.iter().all(u8::is_ascii_digit) {
                    authority.get(..colon).unwrap_or(authority)
                } else {
                    authority
                }
            }
            None => authority,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
}

/// Parses Envoy's `source.address` property: `10.1.2.3:5678`, `[::1]:5678`, or a bare address.
/// IPv4-mapped IPv6 addresses are returned as IPv4 so that IPv4 CIDRs match them.
pub fn parse_peer_address(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let ip = if let Some(rest) = text.strip_prefix('[') {
        let end = rest.find(']')?;
        IpAddr::V6(rest.get(..end)?.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else {
        let (host, _port) = text.rsplit_once(':')?;
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_allocates_only_for_a_real_escape() {
        for unchanged in [&b"plain"[..], b"100%", b"debug=%3", b"%zz%4", b"%", b""] {
            assert!(
                matches!(percent_decode(unchanged), Cow::Borrowed(b) if b == unchanged),
                "{:?} was copied",
                String::from_utf8_lossy(unchanged)
            );
        }
        assert_eq!(percent_decode(b"a%2Fb%zz").as_ref(), b"a/b%zz");
        assert!(matches!(percent_decode(b"%31"), Cow::Owned(v) if v == b"1"));
        assert_eq!(percent_decode(b"x%3%31").as_ref(), b"x%31");
    }

    #[test]
    fn header_pairs_round_trip_and_repeated_headers() {
        let buf = HeaderPairs::encode(&[
            (":path", "/a?b=c"),
            ("x-user-id", "42"),
            ("X-Multi", "one"),
            ("x-multi", "two"),
        ]);
        let pairs: Vec<_> = HeaderPairs::new(&buf).iter().collect();
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs[1], (&b"x-user-id"[..], &b"42"[..]));
        let req = SerializedRequest {
            headers: HeaderPairs::new(&buf),
            source: None,
        };
        let values: Vec<_> = req.header_values("x-multi").collect();
        assert_eq!(values, vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(req.first_header(":path"), Some(&b"/a?b=c"[..]));
        assert_eq!(req.first_header("absent"), None);
    }

    /// The decoded table answers every lookup exactly as the in-place walk does: hot and other
    /// names, any case, repeated headers, absent ones, more headers than the table holds, and
    /// truncated buffers.
    #[test]
    fn decoded_request_answers_like_the_serialized_one() {
        let names = [
            ":path",
            ":authority",
            ":method",
            "cookie",
            "Cookie",
            "x-multi",
            "X-MULTI",
            "host",
            "absent",
            "x-user-id",
            "",
            "user-agent",
        ];
        let mut maps: Vec<Vec<(String, String)>> = vec![
            vec![],
            vec![
                (":authority".into(), "shop.example.com".into()),
                (":path".into(), "/a?b=c".into()),
                (":method".into(), "GET".into()),
                ("cookie".into(), "a=1; b=2".into()),
                ("x-user-id".into(), "42".into()),
            ],
            vec![
                (":PATH".into(), "/first".into()),
                (":path".into(), "/second".into()),
                ("Cookie".into(), "a=1".into()),
                ("cookie".into(), "b=2".into()),
                ("X-Multi".into(), "one".into()),
                ("x-multi".into(), "two".into()),
                ("host".into(), "h".into()),
            ],
        ];
        // More headers than the table holds, hot ones and repeats on both sides of the limit.
        let mut big: Vec<(String, String)> = (0..MAX_DECODED_HEADERS + 9)
            .map(|i| (format!("x-h{i}"), format!("v{i}")))
            .collect();
        big.insert(3, ("cookie".into(), "early=1".into()));
        big.push(("cookie".into(), "late=1".into()));
        big.push((":path".into(), "/late".into()));
        big.push(("x-multi".into(), "late".into()));
        big.insert(1, ("x-multi".into(), "early".into()));
        maps.push(big);
        for map in &maps {
            let full = HeaderPairs::encode(map);
            for cut in [full.len(), full.len().saturating_sub(7), full.len() / 2] {
                let buf = &full[..cut];
                let walk = SerializedRequest {
                    headers: HeaderPairs::new(buf),
                    source: None,
                };
                let table = DecodedRequest::new(HeaderPairs::new(buf), None);
                for name in names {
                    let a: Vec<_> = walk.header_values(name).collect();
                    let b: Vec<_> = table.header_values(name).collect();
                    assert_eq!(a, b, "header_values({name:?}) on {map:?} cut at {cut}");
                    assert_eq!(
                        walk.first_header(name),
                        table.first_header(name),
                        "first_header({name:?}) on {map:?} cut at {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_header_buffers_end_iteration_without_panic() {
        let good = HeaderPairs::encode(&[("a", "1"), ("b", "2")]);
        for cut in 0..good.len() {
            let _ = HeaderPairs::new(&good[..cut]).iter().count();
        }
        // A count claiming more pairs than the buffer holds.
        let mut lying = good.clone();
        lying[0] = 200;
        assert_eq!(HeaderPairs::new(&lying).iter().count(), 0);
        let mut huge = good;
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderPairs::new(&huge).iter().count(), 0);
        assert_eq!(HeaderPairs::new(&[]).iter().count(), 0);
    }

    #[test]
    fn path_and_query_split() {
        assert_eq!(path_only(b"/a/b?x=1#f"), b"/a/b");
        assert_eq!(path_only(b"/a/b"), b"/a/b");
        assert_eq!(query_string(b"/a?x=1&y=2#frag"), Some(&b"x=1&y=2"[..]));
        assert_eq!(query_string(b"/a"), None);
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let params: Vec<_> = query_params(b"a=1&na%6De=v%20x&flag&bad=%zz%4&plus=a+b&&")
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            params,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"name".to_vec(), b"v x".to_vec()),
                (b"flag".to_vec(), b"".to_vec()),
                (b"bad".to_vec(), b"%zz%4".to_vec()),
                (b"plus".to_vec(), b"a+b".to_vec()),
            ]
        );
    }

    #[test]
    fn cookies_are_split_trimmed_and_unquoted() {
        let pairs: Vec<_> = cookie_pairs(b"a=1; b = \"two\" ;junk; =x; c=").collect();
        assert_eq!(
            pairs,
            vec![
                (&b"a"[..], &b"1"[..]),
                (&b"b"[..], &b"two"[..]),
                (&b"c"[..], &b""[..])
            ]
        );
    }

    #[test]
    fn authority_host_strips_port_and_trailing_dot() {
        assert_eq!(authority_host(b"example.com:8080"), b"example.com");
        assert_eq!(authority_host(b"example.com."), b"example.com");
        assert_eq!(authority_host(b"[::1]:8080"), b"[::1]");
        assert_eq!(authority_host(b"example.com"), b"example.com");
        assert_eq!(authority_host(b"a:b"), b"a:b");
    }

    #[test]
    fn peer_addresses_parse() {
        assert_eq!(
            parse_peer_address(b"10.1.2.3:5678"),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            parse_peer_address(b"[::1]:5678"),
            Some("::1".parse().unwrap())
        );
        assert_eq!(
            parse_peer_address(b"[::ffff:10.0.0.1]:1"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_peer_address(b"2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_peer_address(b"not-an-ip"), None);
        assert_eq!(parse_peer_address(b"\xff\xfe"), None);
    }
}
