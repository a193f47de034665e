//! Compiled match conditions. A [`Match`] holds when every condition in it holds.

use std::net::IpAddr;

use crate::bytemap::ByteMap;
use crate::cidr::Cidr;
use crate::error::quoted;
use crate::request::{self, RequestView};

/// The operator of a header, cookie or query condition.
#[derive(Debug, Clone)]
pub enum ValueOp {
    Exact(Box<[u8]>),
    /// `oneOf`: the value is one of the set's keys.
    OneOf(ByteMap),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    Contains(Box<[u8]>),
    /// Anchored at both ends (full match), like Envoy's `safe_regex` and Istio's `regex`.
    /// A value that is not UTF-8 never matches a regex.
    Regex(regex_lite::Regex),
    /// `present: true` holds when the value exists, `present: false` when it does not.
    Present(bool),
}

impl ValueOp {
    /// Whether one value satisfies a value operator (not `Present`, which is about existence).
    fn test(&self, value: &[u8]) -> bool {
        match self {
            ValueOp::Exact(s) => value == &**s,
            ValueOp::OneOf(set) => set.contains(value),
            ValueOp::Prefix(s) => value.starts_with(s),
            ValueOp::Suffix(s) => value.ends_with(s),
            ValueOp::Contains(s) => contains(value, s),
            ValueOp::Regex(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
            ValueOp::Present(_) => true,
        }
    }

    /// The result over all values of a name (none, one or several): a present-check looks at
    /// existence, any other operator holds if any value satisfies it.
    fn any<'a>(&self, mut values: impl Iterator<Item = &'a [u8]>) -> bool {
        match self {
            ValueOp::Present(want) => values.next().is_some() == *want,
            _ => values.any(|v| self.test(v)),
        }
    }
}

/// Compiles a `regex` condition: `pattern` must be valid as written, and then matches whole values.
///
/// The pattern is compiled on its own before it is anchored: wrapping first would let a broken
/// pattern such as `debug)|(.*` close the wrapper's group and turn into `^(?:debug)|(.*)$`, which
/// is valid, unanchored and matches everything. The error is the reason only (no path).
pub fn full_match_regex(pattern: &str) -> Result<regex_lite::Regex, String> {
    if pattern.is_empty() {
        return Err("must not be empty".to_owned());
    }
    regex_lite::Regex::new(pattern)
        .map_err(|e| format!("{} is not a valid regex: {}", quoted(pattern), one_line(&e)))?;
    // A valid pattern is a complete expression, so `(?:…)` holds all of it. The one exception is
    // a verbose-mode (`(?x)`) `#` comment running to the end of the pattern, which would swallow
    // the closing `)$`: then, and only then, a newline ends the comment (and, being whitespace in
    // verbose mode, matches nothing).
    regex_lite::Regex::new(&format!("^(?:{pattern})$"))
        .or_else(|_| regex_lite::Regex::new(&format!("^(?:{pattern}\n)$")))
        .map_err(|e| format!("{} cannot be anchored: {}", quoted(pattern), one_line(&e)))
}

/// regex-lite's multi-line error text (pattern, caret, reason) as one log-friendly line.
fn one_line(error: &regex_lite::Error) -> String {
    error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where a named value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    Header,
    Cookie,
    Query,
}

/// `{name, <operator>, invert}` on a header, cookie or query parameter.
#[derive(Debug, Clone)]
pub struct ValueCondition {
    pub source: ValueSource,
    /// Lower-cased for headers (names are case-insensitive); as written for cookies and query.
    pub name: String,
    pub op: ValueOp,
    pub invert: bool,
}

impl ValueCondition {
    pub fn matches(&self, req: &impl RequestView) -> bool {
        let name = self.name.as_bytes();
        let result = match self.source {
            ValueSource::Header => self.op.any(req.header_values(&self.name)),
            ValueSource::Cookie => {
                let mut values = req
                    .header_values("cookie")
                    .flat_map(request::cookie_pairs)
                    .filter(|(n, _)| *n == name)
                    .map(|(_, v)| v);
                self.op.any(&mut values)
            }
            ValueSource::Query => {
                let query = req.first_header(":path").and_then(request::query_string);
                let mut params = query
                    .into_iter()
                    .flat_map(request::query_params)
                    .filter(|(n, _)| n.as_ref() == name);
                match &self.op {
                    ValueOp::Present(want) => params.next().is_some() == *want,
                    op => params.any(|(_, v)| op.test(&v)),
                }
            }
        };
        result != self.invert
    }
}

/// A `hosts` entry: `example.com`, `*.example.com` (any name ending in `.example.com`, at any
/// depth, not `example.com` itself, as Envoy's domain wildcards), or `*` (any host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// The suffix including its leading dot, lower case.
    Suffix(String),
    Any,
}

impl HostPattern {
    fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h.as_bytes()),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host
                        .get(host.len() - s.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(s.as_bytes()))
            }
            HostPattern::Any => true,
        }
    }
}

/// All conditions of a rule; empty lists and `None`s hold.
#[derive(Debug, Clone, Default)]
pub struct Match {
    pub methods: Vec<String>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub hosts: Vec<HostPattern>,
    pub source_cidrs: Vec<Cidr>,
    /// Headers, cookies and query parameters, in the order written.
    pub values: Vec<ValueCondition>,
}

impl Match {
    /// Cheap conditions first (method, path, host), then header, cookie and query values.
    pub fn matches(&self, req: &impl RequestView) -> bool {
        if !self.methods.is_empty() {
            let method = req.first_header(":method").unwrap_or_default();
            if !self.methods.iter().any(|m| m.as_bytes() == method) {
                return false;
            }
        }
        if self.path.is_some() || self.path_prefix.is_some() {
            let path = request::path_only(req.first_header(":path").unwrap_or_default());
            if self.path.as_ref().is_some_and(|p| p.as_bytes() != path) {
                return false;
            }
            if self
                .path_prefix
                .as_ref()
                .is_some_and(|p| !path.starts_with(p.as_bytes()))
            {
                return false;
            }
        }
        if !self.hosts.is_empty() {
            let authority = req
                .first_header(":authority")
                .or_else(|| req.first_header("host"));
            let host = request::authority_host(authority.unwrap_or_default());
            if !self.hosts.iter().any(|h| h.matches(host)) {
                return false;
            }
        }
        if !self.source_cidrs.is_empty() {
            let ip: Option<IpAddr> = req.source_ip();
            if !ip.is_some_and(|ip| self.source_cidrs.iter().any(|c| c.contains(ip))) {
                return false;
            }
        }
        self.values.iter().all(|c| c.matches(req))
    }

    pub fn uses_source_ip(&self) -> bool {
        !self.source_cidrs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::OwnedRequest;

    fn cond(source: ValueSource, name: &str, op: ValueOp, invert: bool) -> ValueCondition {
        ValueCondition {
            source,
            name: name.into(),
            op,
            invert,
        }
    }

    fn bytes(s: &str) -> Box<[u8]> {
        s.as_bytes().into()
    }

    fn re(s: &str) -> ValueOp {
        ValueOp::Regex(full_match_regex(s).unwrap())
    }

    #[test]
    fn header_operators_positive_and_negative() {
        let req = OwnedRequest::new().header("user-agent", "Mozilla/5.0 debug-build");
        let h = |op, invert| cond(ValueSource::Header, "user-agent", op, invert).matches(&req);
        assert!(h(ValueOp::Exact(bytes("Mozilla/5.0 debug-build")), false));
        assert!(!h(ValueOp::Exact(bytes("Mozilla/5.0")), false));
        assert!(h(ValueOp::Prefix(bytes("Mozilla/")), false));
        assert!(!h(ValueOp::Prefix(bytes("curl/")), false));
        assert!(h(ValueOp::Suffix(bytes("-build")), false));
        assert!(!h(ValueOp::Suffix(bytes("Mozilla")), false));
        assert!(h(ValueOp::Contains(bytes("debug")), false));
        assert!(!h(ValueOp::Contains(bytes("release")), false));
        assert!(h(re(r"Mozilla/\d\.\d .*"), false));
        assert!(
            !h(re(r"debug"), false),
            "regex is a full match, not a search"
        );
        assert!(h(ValueOp::Present(true), false));
        assert!(!h(ValueOp::Present(false), false));
        let one_of = |values: &[&str]| {
            ValueOp::OneOf(ByteMap::set(values.iter().map(|v| v.as_bytes())).unwrap())
        };
        assert!(h(one_of(&["curl/8", "Mozilla/5.0 debug-build"]), false));
        assert!(!h(one_of(&["curl/8", "Mozilla/5.0"]), false));
        assert!(!h(one_of(&["curl/8", "Mozilla/5.0 debug-build"]), true));
        assert!(
            h(one_of(&["mozilla/5.0 debug-build"]), true),
            "case-sensitive"
        );
        // invert negates each of them
        assert!(!h(ValueOp::Exact(bytes("Mozilla/5.0 debug-build")), true));
        assert!(h(ValueOp::Exact(bytes("Mozilla/5.0")), true));
        assert!(!h(ValueOp::Present(true), true));
    }

    #[test]
    fn regex_is_a_full_match_of_the_whole_pattern() {
        let full = |pattern: &str, value: &str| full_match_regex(pattern).unwrap().is_match(value);
        assert!(full("a|b", "a") && full("a|b", "b"));
        assert!(!full("a|b", "ab"), "the anchors hold every alternative");
        assert!(
            !full("debug", "x-debug-build"),
            "a full match, not a search"
        );
        assert!(
            full("(?i)DEBUG", "debug"),
            "inline flags stay inside the pattern"
        );
        // A verbose-mode comment at the end must not swallow the anchors (it would, naively).
        assert!(regex_lite::Regex::new("^(?:(?x) debug # testers)$").is_err());
        assert!(full("(?x) debug # testers", "debug"));
        assert!(!full("(?x) debug # testers", "debugger"));
    }

    #[test]
    fn regex_must_be_valid_as_written_before_anchoring() {
        // Each becomes a valid, unanchored regex once wrapped in `^(?:…)$`.
        for pattern in ["debug)|(.*", "x)|(y", "a)(b", ")(", "(x"] {
            let reason = full_match_regex(pattern).unwrap_err();
            assert!(
                reason.starts_with(&format!("{pattern:?} is not a valid regex: ")),
                "{pattern}: {reason}"
            );
        }
        assert_eq!(full_match_regex("").unwrap_err(), "must not be empty");
    }

    #[test]
    fn absent_header_fails_value_operators_and_invert_flips_it() {
        let req = OwnedRequest::new();
        let h = |op, invert| cond(ValueSource::Header, "x-missing", op, invert).matches(&req);
        assert!(!h(ValueOp::Exact(bytes("")), false));
        assert!(!h(ValueOp::Contains(bytes("a")), false));
        assert!(h(ValueOp::Contains(bytes("a")), true));
        assert!(!h(ValueOp::Present(true), false));
        assert!(h(ValueOp::Present(false), false));
    }

    #[test]
    fn repeated_header_matches_if_any_value_matches() {
        let req = OwnedRequest::new()
            .header("x-group", "alpha")
            .header("x-group", "beta");
        assert!(cond(
            ValueSource::Header,
            "x-group",
            ValueOp::Exact(bytes("beta")),
            false
        )
        .matches(&req));
        assert!(cond(
            ValueSource::Header,
            "x-group",
            ValueOp::Exact(bytes("alpha")),
            false
        )
        .matches(&req));
        assert!(!cond(
            ValueSource::Header,
            "x-group",
            ValueOp::Exact(bytes("gamma")),
            false
        )
        .matches(&req));
    }

    #[test]
    fn non_utf8_values_never_match_regex_but_match_bytes() {
        let req = OwnedRequest::new().header("x-bin", b"\xff\xfeabc".as_slice());
        assert!(!cond(ValueSource::Header, "x-bin", re(".*"), false).matches(&req));
        assert!(cond(
            ValueSource::Header,
            "x-bin",
            ValueOp::Suffix(bytes("abc")),
            false
        )
        .matches(&req));
    }

    #[test]
    fn cookie_conditions() {
        let req = OwnedRequest::new()
            .header("cookie", "session=abc; canary=yes")
            .header("cookie", "theme=dark");
        let c = |name: &str, op| cond(ValueSource::Cookie, name, op, false).matches(&req);
        assert!(c("canary", ValueOp::Exact(bytes("yes"))));
        assert!(!c("canary", ValueOp::Exact(bytes("no"))));
        assert!(c("theme", ValueOp::Prefix(bytes("da"))));
        assert!(c("session", ValueOp::Present(true)));
        assert!(
            !c("Session", ValueOp::Present(true)),
            "cookie names are case-sensitive"
        );
        assert!(c("missing", ValueOp::Present(false)));
        assert!(!c("missing", ValueOp::Exact(bytes(""))));
        let no_cookie = OwnedRequest::new();
        assert!(
            !cond(ValueSource::Cookie, "canary", ValueOp::Present(true), false).matches(&no_cookie)
        );
    }

    #[test]
    fn query_conditions_are_percent_decoded() {
        let req = OwnedRequest::new().header(":path", "/api?debug=tr%75e&user%20id=a%2Fb&flag");
        let q = |name: &str, op| cond(ValueSource::Query, name, op, false).matches(&req);
        assert!(q("debug", ValueOp::Exact(bytes("true"))));
        assert!(q("user id", ValueOp::Exact(bytes("a/b"))));
        assert!(q("flag", ValueOp::Present(true)));
        assert!(q("flag", ValueOp::Exact(bytes(""))));
        assert!(!q("debug", ValueOp::Exact(bytes("false"))));
        assert!(q("other", ValueOp::Present(false)));
        let no_query = OwnedRequest::new().header(":path", "/api");
        assert!(
            !cond(ValueSource::Query, "debug", ValueOp::Present(true), false).matches(&no_query)
        );
    }

    #[test]
    fn method_path_host_conditions() {
        let req = OwnedRequest::new()
            .header(":method", "POST")
            .header(":path", "/api/v2/items?x=1")
            .header(":authority", "Shop.Example.com:8443");
        let m = |f: &dyn Fn(&mut Match)| {
            let mut m = Match::default();
            f(&mut m);
            m.matches(&req)
        };
        assert!(m(&|_| {}), "an empty match holds");
        assert!(m(&|m| m.methods = vec!["GET".into(), "POST".into()]));
        assert!(!m(&|m| m.methods = vec!["GET".into()]));
        assert!(m(&|m| m.path = Some("/api/v2/items".into())));
        assert!(!m(&|m| m.path = Some("/api/v2".into())));
        assert!(m(&|m| m.path_prefix = Some("/api/".into())));
        assert!(!m(&|m| m.path_prefix = Some("/admin".into())));
        assert!(m(
            &|m| m.hosts = vec![HostPattern::Exact("shop.example.com".into())]
        ));
        assert!(m(
            &|m| m.hosts = vec![HostPattern::Suffix(".example.com".into())]
        ));
        assert!(!m(
            &|m| m.hosts = vec![HostPattern::Suffix(".example.org".into())]
        ));
        assert!(!m(
            &|m| m.hosts = vec![HostPattern::Exact("example.com".into())]
        ));
        assert!(m(&|m| m.hosts = vec![HostPattern::Any]));
        // wildcard does not match the bare domain
        let bare = OwnedRequest::new().header(":authority", "example.com");
        let wildcard = Match {
            hosts: vec![HostPattern::Suffix(".example.com".into())],
            ..Match::default()
        };
        assert!(!wildcard.matches(&bare));
    }

    #[test]
    fn source_cidr_conditions() {
        let m = Match {
            source_cidrs: vec![
                Cidr::parse("10.0.0.0/8").unwrap(),
                Cidr::parse("::1/128").unwrap(),
            ],
            ..Match::default()
        };
        assert!(m.matches(&OwnedRequest::new().source("10.2.3.4".parse().unwrap())));
        assert!(m.matches(&OwnedRequest::new().source("::1".parse().unwrap())));
        assert!(!m.matches(&OwnedRequest::new().source("192.168.0.1".parse().unwrap())));
        assert!(
            !m.matches(&OwnedRequest::new()),
            "unknown peer never matches a CIDR list"
        );
    }

    #[test]
    fn all_conditions_must_hold() {
        let m = Match {
            methods: vec!["GET".into()],
            values: vec![cond(
                ValueSource::Header,
                "user-agent",
                ValueOp::Exact(bytes("debug")),
                false,
            )],
            ..Match::default()
        };
        let both = OwnedRequest::new()
            .header(":method", "GET")
            .header("user-agent", "debug");
        let one = OwnedRequest::new()
            .header(":method", "POST")
            .header("user-agent", "debug");
        assert!(m.matches(&both));
        assert!(!m.matches(&one));
    }
}
