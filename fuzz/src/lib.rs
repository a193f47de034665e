//! A deterministic fuzz / property run over the two functions that see untrusted input:
//! the configuration loader (`subset_router_core::load`, i.e. `on_configure`) and the per-request
//! decision (`Router::decide`, i.e. `on_http_request_headers`).
//!
//! Every case `i` is derived from `(seed, i)` alone, so any failure can be replayed on its own
//! (`--seed S --start i --cases 1 --verbose`). A case is:
//!
//! 1. a configuration: a structure-aware JSON generator (every documented field, mostly valid
//!    values, sometimes invalid ones, wrong types, unknown and missing fields), then, for a part
//!    of the cases, byte-level mutations of that JSON (bit flips, deletions, insertions of JSON
//!    tokens, duplications, truncation), or plain random bytes, or deeply nested JSON;
//! 2. `load(bytes)`: must not panic; an `Err` must carry at least one non-empty `path: reason`;
//! 3. for an accepted configuration, the filter's own per-request code,
//!    `adapter::Filter::on_request` (what the wasm adapter's `on_http_request_headers` runs),
//!    through [`host`], a proxy presented as the wasm adapter presents Envoy, for several
//!    requests with arbitrary attributes (method, path with query strings and broken
//!    percent-encoding, authority, cookies, repeated and random headers, sometimes more than
//!    `DecodedRequest`'s table holds, non-UTF-8 bytes, an IPv4/IPv6/IPv4-mapped/garbage/absent
//!    `source.address`), serialised with `HeaderPairs::encode` (sometimes a truncated or lying
//!    buffer). What it did is checked against the JSON the configuration came from by an oracle
//!    that does not reuse the filter's code: the request went on with exactly one decision
//!    counted and no host call failed; the client's routing headers were removed (and counted)
//!    exactly when sent; the decision was written (the cluster templated); [`reference`] (a
//!    simple matcher written from the documentation) says the deciding rule's `match` holds and no
//!    earlier rule's does; the subset belongs to that rule's route, a split never picks a
//!    weight-0 subset; and a sticky decision with its key is the same under other random sources.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};
use subset_router_core::adapter::{Filter, Verdict};
use subset_router_core::request::HeaderPairs;
use subset_router_core::{RandomSource, WyRand};

use host::{Effects, Wire};

pub mod host;
pub mod reference;

/// The case being run (for the panic hook of the binary).
pub static CURRENT_CASE: AtomicU64 = AtomicU64::new(0);

/// Small deterministic PRNG helpers over the filter's own wyrand.
pub struct Rng {
    inner: WyRand,
    /// Whether the config generator may pick invalid values (about half of the configs).
    pub allow_bad: bool,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        // One warm-up step so that nearby seeds diverge at once.
        let mut inner = WyRand::new(seed ^ 0x5851_f42d_4c95_7f2d);
        inner.next_u64();
        Rng {
            inner,
            allow_bad: true,
        }
    }
    pub fn u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
    /// 1 in `n`, only while invalid values are allowed.
    pub fn bad(&mut self, n: u64) -> bool {
        let hit = self.one_in(n);
        self.allow_bad && hit
    }
    /// Uniform in `0..n` (0 when n == 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.u64() % n
        }
    }
    pub fn idx(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.idx(xs.len())]
    }
    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let n = self.idx(max_len + 1);
        (0..n).map(|_| self.u64() as u8).collect()
    }
}

/// Seed of case `i`: every case is independent of the others.
pub fn case_seed(seed: u64, i: u64) -> u64 {
    seed ^ (i.wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

// ---------------------------------------------------------------------------------------
// Vocabulary: mostly valid values, and the invalid ones the documentation names.
// ---------------------------------------------------------------------------------------
const SUBSETS: &[&str] = &[
    "v1", "v2", "v3", "canary", "stable", "blue", "red", "a.b_c-D", "x", "V-9",
];
const BAD_SUBSETS: &[&str] = &[
    "",
    "v 1",
    "ü",
    "v1/",
    "{subset}",
    "a\u{0}",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
const RULE_NAMES: &[&str] = &["debug", "canary", "r", "api-v2", "a_b", "sticky", "x"];
const BAD_RULE_NAMES: &[&str] = &["default", "a.b", "", "ü", "a b"];
const HEADER_NAMES: &[&str] = &[
    "user-agent",
    "x-user-id",
    "X-Debug",
    ":path",
    ":authority",
    ":method",
    "cookie",
    "x-a",
    "x-upstream-cluster",
];
const BAD_HEADER_NAMES: &[&str] = &["", "a b", "ü", "x\n", "x:y", "(x)"];
const OUT_HEADERS: &[&str] = &[
    "x-upstream-cluster",
    "x-subset",
    "x-cluster",
    "x-routed-subset",
    "x-a",
];
const BAD_OUT_HEADERS: &[&str] = &[":authority", ":path", "X-Upper", "a b", "", "ü"];
const VALUES: &[&str] = &[
    "",
    "debug",
    "1",
    "v2",
    "/",
    "a",
    "ü",
    "%41",
    " ",
    "\u{0}",
    "always",
    "*.x",
    "Mozilla/5.0",
    "\u{feff}",
];
const REGEXES: &[&str] = &[
    "debug",
    "v[0-9]+",
    ".*",
    "(a|b)+c?",
    "\\d{1,3}",
    "[a-z]{2,}",
    "^x$",
    "(?i)DEBUG",
    "\\w+@\\w+",
    "a{0,5}",
];
const BAD_REGEXES: &[&str] = &[
    "",
    "(",
    "[",
    "a{2,1}",
    "*",
    "\\",
    "(?P<n>",
    "\\p{Nope}",
    "a{99999999}",
    "(?z)",
    // Invalid as written, valid once wrapped in `^(?:…)$`: must be refused before anchoring.
    "a)|(b",
    "debug)|(.*",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "::1/128",
    "0.0.0.0/0",
    "127.0.0.1/32",
    "2001:db8::/32",
    "::/0",
    "::ffff:0:0/96",
];
const BAD_CIDRS: &[&str] = &[
    "10.0.0.0/33",
    "10.0.0/8",
    "x",
    "::/129",
    "1.2.3.4",
    "1.2.3.4/",
    "/8",
    "10.0.0.0/-1",
    "10.0.0.0/08",
    "",
];
const HOSTS: &[&str] = &[
    "example.com",
    "*.example.com",
    "EXAMPLE.com",
    "localhost",
    "a.b.c",
];
const BAD_HOSTS: &[&str] = &["foo.*.com", "a:80", "", "*", "*.", "[::1]", "a b"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];
const BAD_METHODS: &[&str] = &["get", "", "G ET", "ü"];
const PATHS: &[&str] = &["/", "/api", "/api/", "/reviews", "/a/b"];
const BAD_PATHS: &[&str] = &["api", "/a?b", "/a#b", ""];
const TEMPLATES: &[&str] = &[
    "{subset}",
    "outbound|9080|{subset}|reviews.default.svc.cluster.local",
    "color-{subset}",
    "{subset}-x",
];
const BAD_TEMPLATES: &[&str] = &[
    "x",
    "{subset}{subset}",
    "a b{subset}",
    "",
    "{SUBSET}",
    "{subset}\n",
];
const OPS: &[&str] = &[
    "exact", "oneOf", "prefix", "suffix", "contains", "regex", "present",
];

fn scalar(r: &mut Rng) -> Value {
    match r.below(9) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(5),
        3 => json!(-1),
        4 => json!(1.5),
        5 => json!("str"),
        6 => json!([]),
        7 => json!({}),
        _ => json!(u64::MAX),
    }
}

/// Sometimes (1 in `n`) the wrong type instead of `v`.
fn or_wrong(r: &mut Rng, n: u64, v: Value) -> Value {
    if r.bad(n) {
        scalar(r)
    } else {
        v
    }
}

fn pick_str(r: &mut Rng, good: &[&str], bad: &[&str], bad_one_in: u64) -> Value {
    if r.bad(bad_one_in) {
        json!(r.pick(bad))
    } else {
        json!(r.pick(good))
    }
}

fn weight(r: &mut Rng) -> Value {
    let k = r.below(100);
    let k = if !r.allow_bad && k >= 94 { k - 20 } else { k };
    match k {
        0..=79 => json!(r.below(101)),
        80..=89 => json!(0),
        90..=93 => json!(1_000_000),
        94 => json!(1_000_001),
        95 => json!(-1),
        96 => json!(1.5),
        97 => json!("10"),
        98 => json!(i64::MAX),
        _ => Value::Null,
    }
}

fn value_match(r: &mut Rng, header: bool) -> Value {
    let mut m = Map::new();
    let name = if header {
        pick_str(r, HEADER_NAMES, BAD_HEADER_NAMES, 30)
    } else {
        pick_str(
            r,
            &["a", "uid", "debug", "canary", "session", "q"],
            &["", "a b"],
            30,
        )
    };
    if !r.bad(60) {
        let v = or_wrong(r, 80, name);
        m.insert("name".into(), v);
    }
    // Usually exactly one operator; sometimes none or two.
    let n_ops = match r.below(40) {
        0 if r.allow_bad => 0,
        1 if r.allow_bad => 2,
        _ => 1,
    };
    for _ in 0..n_ops {
        let op = r.pick(OPS);
        let v = match op {
            "present" => json!(r.one_in(4)),
            "regex" => pick_str(r, REGEXES, BAD_REGEXES, 10),
            "exact" => json!(r.pick(VALUES)),
            "oneOf" => one_of(r),
            _ if r.allow_bad => json!(r.pick(VALUES)),
            _ => json!(r.pick(&VALUES[1..])),
        };
        m.insert(op.into(), or_wrong(r, 80, v));
    }
    if r.one_in(4) {
        let v = json!(r.one_in(2));
        let v = or_wrong(r, 60, v);
        m.insert("invert".into(), v);
    }
    if r.bad(100) {
        m.insert("regexp".into(), json!("x"));
    }
    Value::Object(m)
}

/// A `oneOf` list: usually 1 to 5 of the usual values (repeats included), sometimes many
/// generated ones (one of which requests can carry), empty or holding a non-string when bad
/// values are allowed.
fn one_of(r: &mut Rng) -> Value {
    if r.bad(20) {
        return if r.one_in(2) {
            json!([])
        } else {
            json!([r.pick(VALUES), scalar(r)])
        };
    }
    if r.one_in(40) {
        let n = 1 + r.below(1_000);
        let mut values: Vec<Value> = (0..n).map(|i| json!(format!("user-{i}"))).collect();
        values.push(json!(r.pick(VALUES)));
        return Value::Array(values);
    }
    let n = 1 + r.below(5);
    Value::Array((0..n).map(|_| json!(r.pick(VALUES))).collect())
}

fn list(r: &mut Rng, max: u64, mut f: impl FnMut(&mut Rng) -> Value) -> Value {
    let n = r.below(max + 1);
    Value::Array((0..n).map(|_| f(r)).collect())
}

fn match_obj(r: &mut Rng) -> Value {
    let mut m = Map::new();
    if r.one_in(3) {
        m.insert("headers".into(), list(r, 3, |r| value_match(r, true)));
    }
    if r.one_in(5) {
        m.insert("cookies".into(), list(r, 2, |r| value_match(r, false)));
    }
    if r.one_in(5) {
        m.insert("query".into(), list(r, 2, |r| value_match(r, false)));
    }
    if r.one_in(3) {
        m.insert("pathPrefix".into(), pick_str(r, PATHS, BAD_PATHS, 20));
    }
    if r.one_in(8) {
        m.insert("path".into(), pick_str(r, PATHS, BAD_PATHS, 20));
    }
    if r.one_in(6) {
        m.insert(
            "methods".into(),
            list(r, 3, |r| pick_str(r, METHODS, BAD_METHODS, 20)),
        );
    }
    if r.one_in(6) {
        m.insert(
            "hosts".into(),
            list(r, 3, |r| pick_str(r, HOSTS, BAD_HOSTS, 15)),
        );
    }
    if r.one_in(6) {
        m.insert(
            "sourceCidrs".into(),
            list(r, 3, |r| pick_str(r, CIDRS, BAD_CIDRS, 10)),
        );
    }
    if r.bad(100) {
        m.insert("headerz".into(), json!([]));
    }
    or_wrong(r, 100, Value::Object(m))
}

fn route(r: &mut Rng) -> Value {
    let mut m = Map::new();
    let split = r.one_in(2);
    if !split || r.bad(50) {
        let v = pick_str(r, SUBSETS, BAD_SUBSETS, 25);
        let v = or_wrong(r, 100, v);
        m.insert("subset".into(), v);
    }
    if split {
        let n = if r.bad(30) { 0 } else { 1 + r.below(4) };
        let mut used: Vec<Value> = Vec::new();
        let entries: Vec<Value> = (0..n)
            .map(|_| {
                let mut e = Map::new();
                // Distinct subsets, except for a few duplicates when invalid values are allowed.
                let mut subset = pick_str(r, SUBSETS, BAD_SUBSETS, 40);
                let allow_dup = r.bad(30);
                for _ in 0..8 {
                    if allow_dup || !used.contains(&subset) {
                        break;
                    }
                    subset = pick_str(r, SUBSETS, BAD_SUBSETS, 40);
                }
                used.push(subset.clone());
                e.insert("subset".into(), subset);
                if !r.bad(80) {
                    e.insert("weight".into(), weight(r));
                }
                if r.bad(200) {
                    e.insert("wieght".into(), json!(1));
                }
                Value::Object(e)
            })
            .collect();
        m.insert("split".into(), or_wrong(r, 100, Value::Array(entries)));
        if r.one_in(2) {
            let k = r.below(20);
            let k = if !r.allow_bad && k >= 18 { k - 10 } else { k };
            let key = match k {
                0..=6 => {
                    let h: &[&str] = if r.allow_bad {
                        &["x-user-id", "user-agent", "X-User", "a b"]
                    } else {
                        &["x-user-id", "user-agent"]
                    };
                    json!({"header": r.pick(h)})
                }
                7..=11 => {
                    let c: &[&str] = if r.allow_bad {
                        &["uid", "session", ""]
                    } else {
                        &["uid", "session"]
                    };
                    json!({"cookie": r.pick(c)})
                }
                12..=15 => {
                    let q: &[&str] = if r.allow_bad {
                        &["user", "u", ""]
                    } else {
                        &["user", "u"]
                    };
                    json!({"query": r.pick(q)})
                }
                16..=17 => json!({"sourceIp": true}),
                18 => json!({"sourceIp": false}),
                _ => json!({"header": "x-user-id", "cookie": "uid"}),
            };
            m.insert("stickyBy".into(), or_wrong(r, 100, key));
        }
    } else if r.bad(80) {
        m.insert("stickyBy".into(), json!({"header": "x-user-id"}));
    }
    Value::Object(m)
}

/// A structure-aware configuration: every documented field, mostly valid.
pub fn gen_config(r: &mut Rng) -> Value {
    r.allow_bad = r.one_in(2);
    let mut m = Map::new();
    match r.below(10) {
        0 => {
            m.insert("clusterHeader".into(), Value::Null);
        }
        1 => {
            let v = pick_str(r, OUT_HEADERS, BAD_OUT_HEADERS, 4);
            let v = or_wrong(r, 10, v);
            m.insert("clusterHeader".into(), v);
        }
        _ => {}
    }
    if r.one_in(3) {
        m.insert(
            "subsetHeader".into(),
            pick_str(r, OUT_HEADERS, BAD_OUT_HEADERS, 10),
        );
    }
    if r.one_in(3) {
        m.insert(
            "responseHeader".into(),
            pick_str(r, OUT_HEADERS, BAD_OUT_HEADERS, 10),
        );
    }
    if r.one_in(3) {
        let v = pick_str(r, TEMPLATES, BAD_TEMPLATES, 8);
        let v = or_wrong(r, 40, v);
        m.insert("clusterTemplate".into(), v);
    }
    let n_rules = r.below(7);
    let rules: Vec<Value> = (0..n_rules)
        .map(|i| {
            let mut rule = Map::new();
            let name = if r.bad(40) {
                json!(r.pick(BAD_RULE_NAMES))
            } else if r.bad(30) {
                json!(r.pick(RULE_NAMES)) // may collide with another rule: duplicate name
            } else {
                json!(format!("{}{i}", r.pick(RULE_NAMES)))
            };
            if !r.bad(100) {
                rule.insert("name".into(), name);
            }
            if !r.one_in(4) {
                rule.insert("match".into(), match_obj(r));
            }
            if !r.bad(100) {
                rule.insert("route".into(), route(r));
            }
            or_wrong(r, 200, Value::Object(rule))
        })
        .collect();
    if !rules.is_empty() || r.one_in(2) {
        m.insert("rules".into(), or_wrong(r, 200, Value::Array(rules)));
    }
    if !r.bad(60) {
        m.insert("default".into(), route(r));
    }
    if r.bad(100) {
        m.insert("rulez".into(), json!([]));
    }
    r.allow_bad = true;
    Value::Object(m)
}

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-",
    b"0",
    b"1e999",
    b"-0",
    b"99999999999999999999",
    b"\\u0000",
    b"\\ud800",
    b"\\",
    b"\xff",
    b"\xc3\x28",
    b" ",
    b"\n",
    b"{subset}",
    b"\"default\"",
    b"\"rules\"",
    b"\"weight\":",
];

/// 1-4 byte-level mutations of a JSON document.
pub fn mutate(r: &mut Rng, doc: &mut Vec<u8>) {
    for _ in 0..1 + r.below(4) {
        let len = doc.len();
        match r.below(8) {
            0 if len > 0 => {
                let i = r.idx(len);
                doc[i] ^= 1 << r.below(8);
            }
            1 if len > 0 => {
                let a = r.idx(len);
                let b = (a + 1 + r.idx(16)).min(len);
                doc.drain(a..b);
            }
            2 => {
                let at = r.idx(len + 1);
                let t = r.pick(TOKENS);
                doc.splice(at..at, t.iter().copied());
            }
            3 if len > 0 => {
                let a = r.idx(len);
                let b = (a + 1 + r.idx(32)).min(len);
                let chunk: Vec<u8> = doc[a..b].to_vec();
                let at = r.idx(len + 1);
                doc.splice(at..at, chunk);
            }
            4 if len > 0 => {
                let at = r.idx(len);
                doc.truncate(at);
            }
            5 => {
                let at = r.idx(len + 1);
                doc.insert(at, r.u64() as u8);
            }
            6 if len > 0 => {
                // Replace a digit run with an extreme number.
                if let Some(p) = doc.iter().position(|b| b.is_ascii_digit()) {
                    let end = doc[p..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(doc.len(), |e| p + e);
                    let big: &[u8] = r.pick(&[
                        &b"1000001"[..],
                        b"4294967296",
                        b"-9223372036854775809",
                        b"1e3",
                        b"0.0",
                    ]);
                    doc.splice(p..end, big.iter().copied());
                }
            }
            _ => {
                let at = r.idx(len + 1);
                doc.splice(at..at, r.bytes(4));
            }
        }
    }
}

/// What kind of input a case fed to `load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Generated,
    Mutated,
    RandomBytes,
    DeepNesting,
}

/// The configuration bytes of case `r`.
pub fn gen_input(r: &mut Rng) -> (Vec<u8>, InputKind) {
    match r.below(100) {
        0..=1 => (r.bytes(64), InputKind::RandomBytes),
        2 => {
            let depth = 100 + r.idx(5000);
            let (open, close): (&[u8], &[u8]) = match r.below(3) {
                0 => (b"[", b"]"),
                1 => (b"{\"a\":", b"}"),
                _ => (b"{\"default\":{\"subset\":[", b"]}}"),
            };
            let mut v = Vec::new();
            for _ in 0..depth {
                v.extend_from_slice(open);
            }
            v.extend_from_slice(b"1");
            if !r.one_in(3) {
                for _ in 0..depth {
                    v.extend_from_slice(close);
                }
            }
            (v, InputKind::DeepNesting)
        }
        p => {
            let cfg = gen_config(r);
            let mut doc = if r.one_in(4) {
                serde_json::to_vec_pretty(&cfg).unwrap_or_default()
            } else {
                serde_json::to_vec(&cfg).unwrap_or_default()
            };
            if p < 45 {
                mutate(r, &mut doc);
                (doc, InputKind::Mutated)
            } else {
                (doc, InputKind::Generated)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------
const METHOD_VALUES: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"get",
    b"",
    b"DELETE",
    b"\xff\xfe",
    b"CONNECT",
];
const PATH_PREFIXES: &[&[u8]] = &[
    b"/",
    b"/api",
    b"/api/x",
    b"/reviews/1",
    b"",
    b"api",
    b"/%zz",
    b"/\xc3\xbc",
    b"/a%2Fb",
    b"/\xff",
    b"//",
    b"?",
];
const QUERY_NAMES: &[&[u8]] = &[
    b"debug", b"user", b"u", b"", b"%64ebug", b"a%", b"x%4", b"\xff", b"deb%75g",
];
const QUERY_VALUES: &[&[u8]] = &[
    b"1",
    b"%31",
    b"",
    b"%",
    b"%zz",
    b"a+b",
    b"\xff",
    b"v2",
    b"%00",
    b"%C3%28",
    b"==",
    b"user-7",
    b"user%2D12",
];
const AUTHORITIES: &[&[u8]] = &[
    b"example.com",
    b"a.example.com",
    b"A.EXAMPLE.COM.",
    b"example.com:8080",
    b"[::1]:80",
    b"[::1",
    b"",
    b":80",
    b"\xff.com",
    b"x.example.com.:443",
    b"*.example.com",
    b"localhost:",
];
const COOKIE_PARTS: &[&[u8]] = &[
    b"a=1",
    b"uid=42",
    b"a=user-5",
    b"canary=always",
    b" = ",
    b"",
    b";",
    b"x",
    b"q=\"quoted\"",
    b"q=\"",
    b"\xff=\xfe",
    b"uid=",
    b"session=abc",
    b"==",
    b"=v",
];
const REQ_HEADER_NAMES: &[&[u8]] = &[
    b"user-agent",
    b"User-Agent",
    b"x-user-id",
    b"X-User-Id",
    b"x-debug",
    b"x-upstream-cluster",
    b"x-subset",
    b"cookie",
    b":path",
    b":authority",
    b"x-a",
    b"",
    b"\xff",
];
const REQ_VALUES: &[&[u8]] = &[
    b"debug",
    b"Mozilla/5.0",
    b"1",
    b"",
    b"v2",
    b"internal-admin",
    b"\xff\xfe",
    b"  debug  ",
    b"DEBUG",
    b"a,b",
    b"\x00",
    b"user-7",
    b"user-1999",
];

/// Header pairs (name, value), pseudo-headers included, in the order the host gives them.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One request: header pairs and the peer.
pub fn gen_request(r: &mut Rng) -> (Pairs, Peer) {
    let mut h: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if !r.one_in(10) {
        h.push((b":method".to_vec(), r.pick(METHOD_VALUES).to_vec()));
    }
    if !r.one_in(20) {
        let mut p = r.pick(PATH_PREFIXES).to_vec();
        if r.one_in(2) {
            p.push(b'?');
            for i in 0..r.below(6) {
                if i > 0 {
                    p.extend_from_slice(if r.one_in(8) { b"&&" } else { b"&" });
                }
                p.extend_from_slice(r.pick(QUERY_NAMES));
                if !r.one_in(5) {
                    p.push(b'=');
                    p.extend_from_slice(r.pick(QUERY_VALUES));
                }
            }
        }
        if r.one_in(10) {
            p.extend_from_slice(b"#frag?x=1");
        }
        if r.one_in(300) {
            p.extend(std::iter::repeat_n(b'a', 20_000));
        }
        h.push((b":path".to_vec(), p));
    }
    if !r.one_in(7) {
        h.push((b":authority".to_vec(), r.pick(AUTHORITIES).to_vec()));
    }
    h.push((b":scheme".to_vec(), b"http".to_vec()));
    for _ in 0..r.below(4) {
        let mut c = Vec::new();
        for i in 0..r.below(5) {
            if i > 0 {
                c.extend_from_slice(r.pick(&[&b"; "[..], b";", b" ; "]));
            }
            c.extend_from_slice(r.pick(COOKIE_PARTS));
        }
        h.push((b"cookie".to_vec(), c));
    }
    for _ in 0..r.below(7) {
        let name = if r.one_in(8) {
            r.bytes(12)
        } else {
            r.pick(REQ_HEADER_NAMES).to_vec()
        };
        let value = if r.one_in(6) {
            r.bytes(40)
        } else {
            r.pick(REQ_VALUES).to_vec()
        };
        h.push((name, value));
    }
    if r.one_in(200) {
        h.push((b"x-big".to_vec(), vec![b'b'; 10 * 1024]));
    }
    if r.one_in(16) {
        // More headers than DecodedRequest's table holds: lookups then walk the buffer.
        for i in 0..subset_router_core::request::MAX_DECODED_HEADERS as u64 + r.below(24) {
            let name = r.pick(REQ_HEADER_NAMES).to_vec();
            let at = r.idx(h.len() + 1);
            h.insert(at, (name, format!("pad{i}").into_bytes()));
        }
    }
    (h, gen_peer(r))
}

/// The downstream peer: Envoy's `source.address` property as the host would return it, and
/// the address it stands for (what the reference matcher uses).
#[derive(Debug, Clone)]
pub struct Peer {
    pub property: Option<Vec<u8>>,
    pub ip: Option<IpAddr>,
}

fn gen_peer(r: &mut Rng) -> Peer {
    let port = 1 + r.below(65535);
    let v4 = |r: &mut Rng| match r.below(3) {
        0 => Ipv4Addr::new(10, r.u64() as u8, r.u64() as u8, r.u64() as u8),
        1 => Ipv4Addr::LOCALHOST,
        _ => Ipv4Addr::from(r.u64() as u32),
    };
    let (property, ip) = match r.below(12) {
        0..=2 => {
            return Peer {
                property: None,
                ip: None,
            }
        }
        3..=6 => {
            let a = v4(r);
            (format!("{a}:{port}"), Some(IpAddr::V4(a)))
        }
        7 => {
            let a = v4(r);
            (a.to_string(), Some(IpAddr::V4(a)))
        }
        8 => {
            // A dual-stack listener reports an IPv4 client as IPv4-mapped IPv6.
            let a = v4(r);
            (
                format!("[{}]:{port}", a.to_ipv6_mapped()),
                Some(IpAddr::V4(a)),
            )
        }
        9 => (
            format!("[::1]:{port}"),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ),
        10 => {
            let a = Ipv6Addr::from((u128::from(r.u64()) << 64) | u128::from(r.u64()));
            let ip = a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4);
            (format!("[{a}]:{port}"), Some(ip))
        }
        _ => {
            let junk = r.pick(&[
                "",
                "not-an-ip",
                "[::1",
                "10.0.0.300:80",
                "pipe:/tmp/x",
                "\u{ff}",
            ]);
            (junk.to_string(), None)
        }
    };
    Peer {
        property: Some(property.into_bytes()),
        ip,
    }
}

// ---------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------

/// The accepted configuration as the oracle reads it, independently of the filter: the JSON
/// itself and the reference matcher's reading of every rule's `match`.
struct Oracle {
    cfg: Value,
    rules: Vec<Value>,
    matches: Vec<reference::Match>,
    routing: reference::RoutingHeaders,
}

/// What the filter decided for one request, read from its effects on the request.
struct Outcome<'r> {
    slot: usize,
    rule: &'r str,
    subset: &'r str,
    sticky_key_missing: bool,
}

impl Oracle {
    fn new(input: &[u8]) -> Result<Self, String> {
        let cfg: Value = serde_json::from_slice(input)
            .map_err(|e| format!("load accepted a document serde_json::Value rejects: {e}"))?;
        let rules = cfg
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let matches = rules
            .iter()
            .map(|r| reference::Match::from_json(r.get("match")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                format!("load accepted a match the documentation does not describe: {e}")
            })?;
        let routing = reference::RoutingHeaders::from_config(&cfg);
        Ok(Oracle {
            cfg,
            rules,
            matches,
            routing,
        })
    }

    /// The decision `on_request` made, checked against what any request must see: it went on
    /// to the router, no host call failed, exactly one decision was counted, the client's
    /// routing headers were removed (and counted as spoofed) exactly when it sent them, and
    /// the decision was written to the routing headers (the cluster templated).
    fn outcome<'f>(
        &self,
        filter: &'f Filter,
        wire: Wire,
        effects: &Effects,
    ) -> Result<Outcome<'f>, String> {
        let slots = filter.router().slots();
        let count = |i: usize| effects.counts.get(&i).copied().unwrap_or(0);
        let (spoofed, sticky_missing, host_failed) = (
            count(slots.len()),
            count(slots.len() + 1),
            count(slots.len() + 2),
        );
        let decided: Vec<(&usize, &u64)> = effects
            .counts
            .range(..slots.len())
            .filter(|(_, n)| **n > 0)
            .collect();
        let slot = match (effects.verdict, decided.as_slice()) {
            (Verdict::Continue(served), [(slot, 1)]) if served.slot == Some(**slot) => **slot,
            (verdict, _) => {
                let want = "one +1, for the served slot";
                return Err(format!(
                    "{verdict:?}, decision counters {decided:?}; want {want}"
                ));
            }
        };
        if effects.local_replies > 0 || host_failed > 0 {
            return Err(format!(
                "{} local replies, host_call_failed +{host_failed}",
                effects.local_replies
            ));
        }
        let sent = reference::decode_header_map(wire.headers);
        let forged: Vec<String> = self
            .routing
            .names()
            .filter(|h| {
                sent.iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(h.as_bytes()))
            })
            .map(String::from)
            .collect();
        if effects.removed != forged || spoofed != u64::from(!forged.is_empty()) {
            return Err(format!(
                "client sent routing headers {forged:?}; the filter removed {:?}, spoofed_header_removed +{spoofed}",
                effects.removed
            ));
        }
        let (rule, subset) = (slots[slot].rule.as_str(), slots[slot].subset.as_str());
        let template = self
            .cfg
            .get("clusterTemplate")
            .and_then(Value::as_str)
            .unwrap_or("{subset}");
        let want: Vec<(String, String)> = [
            (
                &self.routing.cluster,
                template.replacen("{subset}", subset, 1),
            ),
            (&self.routing.subset, subset.to_string()),
        ]
        .into_iter()
        .filter_map(|(h, v)| Some((h.clone()?, v)))
        .collect();
        if effects.written != want {
            return Err(format!(
                "slot {rule}/{subset}: wrote {:?}, want {want:?}",
                effects.written
            ));
        }
        Ok(Outcome {
            slot,
            rule,
            subset,
            sticky_key_missing: sticky_missing > 0,
        })
    }

    /// Checks one request through `filter` against the configuration it was compiled from.
    fn check(
        &self,
        filter: &Filter,
        wire: Wire,
        seen: &reference::Request,
        rng: &mut WyRand,
        replay_seed: u64,
        stats: &mut Stats,
    ) -> Result<String, String> {
        let effects = host::serve(filter, wire, rng);
        let decision = self.outcome(filter, wire, &effects)?;
        let (rule, subset) = (decision.rule, decision.subset);
        stats.decisions += 1;
        stats.sticky_key_missing += u64::from(decision.sticky_key_missing);
        let rules = &self.rules;
        let (route, rule_pos) = if rule == "default" {
            (
                self.cfg
                    .get("default")
                    .ok_or("accepted config without default")?,
                rules.len(),
            )
        } else {
            let pos = rules
                .iter()
                .position(|r| r.get("name").and_then(Value::as_str) == Some(rule))
                .ok_or_else(|| {
                    format!("decided by rule {rule:?}, which the config does not have")
                })?;
            (rules[pos].get("route").ok_or("rule without route")?, pos)
        };
        // First match wins: the reference matcher must agree that no earlier rule matches and
        // that the deciding rule does (`None`: a condition it cannot judge).
        for (i, m) in self.matches.iter().enumerate().take(rule_pos + 1) {
            let holds = m.holds(seen);
            match holds {
                Some(_) => stats.reference_judged += 1,
                None => stats.reference_unknown += 1,
            }
            match holds {
                Some(true) if i < rule_pos => {
                    return Err(format!(
                        "rule {rule:?} decided although the earlier rule {} (rules[{i}]) matches",
                        rules[i].get("name").cloned().unwrap_or_default()
                    ))
                }
                Some(false) if i == rule_pos => {
                    return Err(format!(
                        "rule {rule:?} decided although its match does not hold"
                    ))
                }
                _ => {}
            }
        }
        if let Some(fixed) = route.get("subset").and_then(Value::as_str) {
            if fixed != subset {
                return Err(format!("fixed route to {fixed:?} chose {subset:?}"));
            }
        } else {
            let split = route
                .get("split")
                .and_then(Value::as_array)
                .ok_or("route is neither subset nor split")?;
            let entry = split
                .iter()
                .find(|e| e.get("subset").and_then(Value::as_str) == Some(subset))
                .ok_or_else(|| format!("split chose {subset:?}, which it does not list"))?;
            let w = entry.get("weight").and_then(Value::as_i64).unwrap_or(-1);
            if w <= 0 {
                return Err(format!("split chose {subset:?} whose weight is {w}"));
            }
        }
        let sticky = route.get("stickyBy").is_some_and(|v| !v.is_null());
        if decision.sticky_key_missing && !sticky {
            return Err("sticky_key_missing on a route without stickyBy".into());
        }
        if sticky && !decision.sticky_key_missing {
            // Sticky with its key: a pure function of the request, whatever the random source.
            for k in 1..=2u64 {
                let mut other = WyRand::new(replay_seed.wrapping_mul(k).wrapping_add(k));
                let again = host::serve(filter, wire, &mut other);
                let again = self.outcome(filter, wire, &again)?;
                if again.slot != decision.slot {
                    return Err(format!(
                        "sticky decision not stable: {rule}/{subset}, then {}/{} with another random source",
                        again.rule, again.subset
                    ));
                }
            }
        }
        Ok(format!(
            "rule {rule} subset {subset} (wrote {:?})",
            effects.written
        ))
    }
}

/// Totals of a run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub cases: u64,
    pub generated: u64,
    pub mutated: u64,
    pub random_bytes: u64,
    pub deep_nesting: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub error_lines: u64,
    pub decisions: u64,
    pub malformed_buffers: u64,
    pub sticky_key_missing: u64,
    /// Rule matches the reference matcher judged (the deciding rule and every earlier one).
    pub reference_judged: u64,
    /// ... and could not judge (a regex it cannot anchor).
    pub reference_unknown: u64,
}

/// Runs case `index` of `seed`. `Err` is a property violation (a panic propagates).
pub fn run_case(
    seed: u64,
    index: u64,
    requests: u32,
    stats: &mut Stats,
    verbose: bool,
) -> Result<(), String> {
    CURRENT_CASE.store(index, Ordering::Relaxed);
    let s = case_seed(seed, index);
    let mut r = Rng::new(s);
    let (input, kind) = gen_input(&mut r);
    stats.cases += 1;
    match kind {
        InputKind::Generated => stats.generated += 1,
        InputKind::Mutated => stats.mutated += 1,
        InputKind::RandomBytes => stats.random_bytes += 1,
        InputKind::DeepNesting => stats.deep_nesting += 1,
    }
    if verbose {
        println!(
            "case {index} ({kind:?}) config: {}",
            String::from_utf8_lossy(&input)
        );
    }
    let router = match subset_router_core::load(&input) {
        Err(errors) => {
            stats.rejected += 1;
            if errors.is_empty() {
                return Err("load rejected the config with an empty error list".into());
            }
            for e in &errors {
                stats.error_lines += 1;
                let line = e.to_string();
                if e.reason.is_empty() || !line.contains(": ") {
                    return Err(format!("error without a reason: {line:?}"));
                }
                // Every error names a path and stays on one log line (regression: a JSON key
                // used to be copied into the path verbatim; see tests/filter_regressions.rs).
                // (A key that needs it is quoted, `parent[".[odd"]`, so only the ends are checked.)
                if e.path.is_empty() || e.path.ends_with('.') || e.path.starts_with('.') {
                    return Err(format!("error with an empty or dangling path: {line:?}"));
                }
                if line.chars().any(|c| c == '\n' || c == '\r') {
                    return Err(format!("error line contains a line break: {line:?}"));
                }
            }
            if verbose {
                for e in &errors {
                    println!("  rejected: {e}");
                }
            }
            return Ok(());
        }
        Ok(router) => router,
    };
    stats.accepted += 1;
    // An accepted document is valid JSON: the oracle reads it independently of the filter.
    let oracle = Oracle::new(&input)?;
    let filter = host::start(router);
    let mut rng = WyRand::new(s.rotate_left(17));
    for q in 0..requests {
        let (pairs, peer) = gen_request(&mut r);
        let mut buf = HeaderPairs::encode(&pairs);
        let malformed = r.one_in(50);
        if malformed {
            stats.malformed_buffers += 1;
            if r.one_in(2) {
                let at = r.idx(buf.len());
                buf.truncate(at);
            } else {
                let lie = (r.u64() as u32).to_le_bytes();
                buf[..4].copy_from_slice(&lie);
            }
        }
        let wire = Wire {
            headers: &buf,
            source_address: peer.property.as_deref(),
        };
        let seen =
            reference::Request::new(reference::decode_header_map(&buf), peer.ip, &oracle.routing);
        if verbose {
            let shown: Vec<String> = pairs
                .iter()
                .map(|(n, v)| {
                    format!(
                        "{}: {}",
                        String::from_utf8_lossy(n),
                        String::from_utf8_lossy(v)
                    )
                })
                .collect();
            println!(
                "  request {q}: {shown:?} source.address {:?} ({:?}) malformed {malformed}",
                peer.property.as_deref().map(String::from_utf8_lossy),
                peer.ip
            );
        }
        let replay = s ^ u64::from(q);
        let decided = oracle
            .check(&filter, wire, &seen, &mut rng, replay, stats)
            .map_err(|e| format!("request {q}: {e}"))?;
        if verbose {
            println!("    -> {decided}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_thousand_cases_without_a_violation() {
        let mut stats = Stats::default();
        for i in 0..20_000 {
            if let Err(e) = run_case(7, i, 8, &mut stats, false) {
                panic!("case {i}: {e}\nreplay: cargo run -p subset-router-fuzz --release -- --seed 7 --start {i} --cases 1 --verbose");
            }
        }
        // The generator must exercise both outcomes and every input kind.
        assert!(stats.accepted > 1_000, "{stats:?}");
        assert!(stats.rejected > 1_000, "{stats:?}");
        assert!(
            stats.mutated > 0 && stats.random_bytes > 0 && stats.deep_nesting > 0,
            "{stats:?}"
        );
        assert!(stats.decisions > 10_000, "{stats:?}");
    }

    #[test]
    fn the_oracle_refuses_a_regex_that_is_only_valid_once_anchored() {
        // What the fuzz reports if the filter ever anchored a pattern before validating it.
        let cfg = br#"{"rules":[{"name":"r","match":{"headers":[{"name":"x","regex":"a)|(b"}]},
            "route":{"subset":"v2"}}],"default":{"subset":"v1"}}"#;
        assert!(subset_router_core::load(cfg).is_err());
        let e = Oracle::new(cfg)
            .err()
            .expect("the oracle read the pattern as valid");
        assert!(
            e.contains("load accepted a match the documentation does not describe"),
            "{e}"
        );
        assert!(e.contains("not a valid regex"), "{e}");
    }

    #[test]
    fn cases_are_reproducible() {
        let a = gen_input(&mut Rng::new(case_seed(1, 42)));
        let b = gen_input(&mut Rng::new(case_seed(1, 42)));
        assert_eq!(a.0, b.0);
    }
}
