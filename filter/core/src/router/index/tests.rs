use proptest::prelude::*;
use serde_json::{json, Value};

use super::{first_match, Step};
use crate::request::{DecodedRequest, HeaderPairs, OwnedRequest, RequestView};
use crate::router::Router;

/// Small pools, so that rules share keys and values and requests hit them.
const VALUES: &[&str] = &["a", "b", "c", "A", "", "a b"];
const HEADERS: &[&str] = &["x-user-id", "X-User-Id", "x-group"];
const COOKIES: &[&str] = &["uid", "UID"];
const PARAMS: &[&str] = &["u", "v"];
const HOSTS: &[&str] = &[
    "a.example.com",
    "A.Example.COM",
    "b.example.com",
    "example.com",
];
const PATHS: &[&str] = &["/", "/a", "/A", "/b"];

fn value() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(VALUES)
}

/// `{name, exact | oneOf, invert}` on `name`; mostly not inverted.
fn equality(name: &'static str) -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            value().prop_map(|v| json!({"exact": v})),
            proptest::collection::vec(value(), 1..4).prop_map(|vs| json!({"oneOf": vs})),
        ],
        proptest::bool::weighted(0.15),
    )
        .prop_map(move |(op, invert)| {
            let mut c = op;
            c["name"] = json!(name);
            if invert {
                c["invert"] = json!(true);
            }
            c
        })
}

/// A rule's `match` of kind `kind` (the first ones indexable, so that runs form; the others
/// not: other operators, several conditions, wildcards, other fields).
fn matcher(kind: usize, name: usize) -> BoxedStrategy<Value> {
    let header = HEADERS[name % HEADERS.len()];
    let host = proptest::sample::select(HOSTS);
    let path = proptest::sample::select(PATHS);
    match kind {
        0 => equality(header)
            .prop_map(|c| json!({"headers": [c]}))
            .boxed(),
        1 => equality(COOKIES[name % COOKIES.len()])
            .prop_map(|c| json!({"cookies": [c]}))
            .boxed(),
        2 => equality(PARAMS[name % PARAMS.len()])
            .prop_map(|c| json!({"query": [c]}))
            .boxed(),
        3 => proptest::collection::vec(host, 1..3)
            .prop_map(|h| json!({"hosts": h}))
            .boxed(),
        4 => path.prop_map(|p| json!({"path": p})).boxed(),
        5 => value()
            .prop_map(move |v| json!({"headers": [{"name": header, "prefix": format!("{v}x")}]}))
            .boxed(),
        6 => Just(json!({"headers": [{"name": header, "present": true}]})).boxed(),
        7 => (
            equality(header),
            equality(HEADERS[(name + 1) % HEADERS.len()]),
        )
            .prop_map(|(a, b)| json!({"headers": [a, b]}))
            .boxed(),
        8 => (equality(header), path)
            .prop_map(|(c, p)| json!({"headers": [c], "path": p}))
            .boxed(),
        9 => (host, path)
            .prop_map(|(h, p)| json!({"hosts": [h], "path": p}))
            .boxed(),
        10 => host
            .prop_map(|h| json!({"hosts": [h, "*.example.com"]}))
            .boxed(),
        11 => path.prop_map(|p| json!({"pathPrefix": p})).boxed(),
        _ => Just(json!({"methods": ["POST"]})).boxed(),
    }
}

/// Blocks of 1 to 4 rules of one kind on one name, mostly indexable kinds.
fn rule_list() -> impl Strategy<Value = Vec<Value>> {
    let kind = prop_oneof![6 => 0..5usize, 2 => 5..13usize];
    let block = (kind, 0..3usize, 1..5usize)
        .prop_flat_map(|(kind, name, n)| proptest::collection::vec(matcher(kind, name), n));
    proptest::collection::vec(block, 0..8).prop_map(|blocks| blocks.concat())
}

fn config(matches: &[Value]) -> String {
    let rules: Vec<Value> = matches
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"name": format!("r{i}"), "match": m, "route": {"subset": "v2"}}))
        .collect();
    json!({"rules": rules, "default": {"subset": "v1"}}).to_string()
}

/// Header pairs as a client might send them: the keys the rules read, repeated, in any case.
fn request() -> impl Strategy<Value = Vec<(String, String)>> {
    let cookie = proptest::collection::vec(
        (proptest::sample::select(COOKIES), value()).prop_map(|(n, v)| format!("{n}={v}")),
        0..3,
    )
    .prop_map(|pairs| ("cookie".to_owned(), pairs.join("; ")));
    let escaped = |v: &str| v.replace('a', "%61").replace(' ', "%20");
    let path = (
        proptest::sample::select(PATHS),
        proptest::collection::vec(
            (proptest::sample::select(PARAMS), value(), any::<bool>()).prop_map(
                move |(n, v, esc)| format!("{n}={}", if esc { escaped(v) } else { v.to_owned() }),
            ),
            0..3,
        ),
    )
        .prop_map(|(p, params)| {
            let query = if params.is_empty() {
                String::new()
            } else {
                format!("?{}", params.join("&"))
            };
            (":path".to_owned(), format!("{p}{query}"))
        });
    let authority = (
        proptest::sample::select(HOSTS),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(h, port, host_header)| {
            let name = if host_header { "host" } else { ":authority" };
            let port = if port { ":8080" } else { "" };
            (name.to_owned(), format!("{h}{port}"))
        });
    let header = (proptest::sample::select(HEADERS), value())
        .prop_map(|(n, v)| (n.to_owned(), v.to_owned()));
    proptest::collection::vec(
        prop_oneof![3 => header, 1 => cookie, 1 => path, 1 => authority],
        0..6,
    )
}

/// The plain evaluation: every rule in order.
fn linear(router: &Router, req: &impl RequestView) -> Option<usize> {
    router.rules.iter().position(|r| r.matcher.matches(req))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The plan finds the rule the linear scan finds, for every rule list and request, as the
    /// filter sees the request (`DecodedRequest`) and as the simulator does (`OwnedRequest`).
    #[test]
    fn the_plan_decides_as_the_linear_scan(
        matches in rule_list(),
        requests in proptest::collection::vec(request(), 1..8),
    ) {
        let router = crate::load(config(&matches).as_bytes()).unwrap();
        for headers in &requests {
            let buf = HeaderPairs::encode(headers);
            let decoded = DecodedRequest::new(HeaderPairs::new(&buf), None);
            let owned = headers
                .iter()
                .fold(OwnedRequest::new(), |r, (n, v)| r.header(n, v));
            let want = linear(&router, &decoded);
            prop_assert_eq!(first_match(&router.plan, &router.rules, &decoded), want, "{:?}", headers);
            prop_assert_eq!(first_match(&router.plan, &router.rules, &owned), want, "{:?}", headers);
            let decided = router.decide(&decoded, &mut crate::WyRand::new(1)).unwrap().rule;
            let expected = want.map_or("default".to_owned(), |i| format!("r{i}"));
            prop_assert_eq!(decided, expected.as_str());
        }
    }
}

/// The generator above forms runs of every kind (or the proptest would compare nothing).
#[test]
fn the_generated_rule_lists_form_runs_of_every_key() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut keys = std::collections::BTreeSet::new();
    let mut lookups = 0;
    for _ in 0..500 {
        let matches = rule_list().new_tree(&mut runner).unwrap().current();
        let router = crate::load(config(&matches).as_bytes()).unwrap();
        for step in &router.plan {
            if let Step::Lookup(index) = step {
                lookups += 1;
                keys.insert(format!("{:?}", index.key));
            }
        }
    }
    assert!(lookups > 500, "{lookups} runs in 500 rule lists");
    // Two header names (case folded), two cookies, two parameters, hosts, path.
    assert_eq!(keys.len(), 8, "{keys:?}");
}

fn steps(json: &str) -> Vec<String> {
    let router = crate::load(json.as_bytes()).unwrap();
    router
        .plan
        .iter()
        .map(|s| match s {
            Step::Scan(r) => format!("scan {}..{}", r.start, r.end),
            Step::Lookup(i) => format!("lookup {:?} ({} values)", i.key, i.map.len()),
        })
        .collect()
}

#[test]
fn runs_are_consecutive_rules_on_one_key() {
    let exact = |i: usize, name: &str| {
        json!({"name": format!("r{i}"), "match": {"headers": [{"name": name, "exact": format!("u{i}")}]},
               "route": {"subset": "v2"}})
    };
    let other = |i: usize| json!({"name": format!("r{i}"), "match": {"pathPrefix": "/x"}, "route": {"subset": "v2"}});
    let rules = vec![
        exact(0, "x-user-id"),
        exact(1, "X-User-Id"),
        exact(2, "x-user-id"),
        other(3),
        exact(4, "x-user-id"),
        exact(5, "x-group"),
        exact(6, "x-group"),
    ];
    let json = json!({"rules": rules, "default": {"subset": "v1"}}).to_string();
    assert_eq!(
        steps(&json),
        [
            "lookup Value(Header, \"x-user-id\") (3 values)",
            "scan 3..5",
            "lookup Value(Header, \"x-group\") (2 values)",
        ],
        "a lone indexable rule is scanned with its neighbours"
    );
}

#[test]
fn a_value_listed_by_two_rules_of_a_run_decides_for_the_first() {
    let json = r#"{"rules":[
        {"name":"first","match":{"headers":[{"name":"x-user-id","oneOf":["alice","bob"]}]},"route":{"subset":"v2"}},
        {"name":"second","match":{"headers":[{"name":"x-user-id","exact":"bob"}]},"route":{"subset":"v3"}},
        {"name":"third","match":{"headers":[{"name":"x-user-id","exact":"carol"}]},"route":{"subset":"v3"}}],
        "default":{"subset":"v1"}}"#;
    assert_eq!(
        steps(json),
        ["lookup Value(Header, \"x-user-id\") (3 values)"]
    );
    let router = crate::load(json.as_bytes()).unwrap();
    let rule = |values: &[&str]| {
        let req = values
            .iter()
            .fold(OwnedRequest::new(), |r, v| r.header("x-user-id", v));
        router
            .decide(&req, &mut crate::WyRand::new(1))
            .unwrap()
            .rule
            .to_owned()
    };
    assert_eq!(rule(&["bob"]), "first");
    assert_eq!(rule(&["carol"]), "third");
    assert_eq!(
        rule(&["carol", "bob"]),
        "first",
        "the smallest rule over repeated values"
    );
    assert_eq!(rule(&["dave"]), "default");
}

#[test]
fn inverted_and_large_one_of_rules_stay_out_of_runs() {
    let big: Vec<String> = (0..=super::MAX_VALUES_COPIED)
        .map(|i| format!("u{i}"))
        .collect();
    let json = json!({"rules": [
        {"name": "a", "match": {"headers": [{"name": "x", "exact": "1"}]}, "route": {"subset": "v2"}},
        {"name": "b", "match": {"headers": [{"name": "x", "exact": "2", "invert": true}]}, "route": {"subset": "v2"}},
        {"name": "c", "match": {"headers": [{"name": "x", "exact": "3"}]}, "route": {"subset": "v2"}},
        {"name": "d", "match": {"headers": [{"name": "x", "oneOf": big}]}, "route": {"subset": "v2"}},
        {"name": "e", "match": {"hosts": ["a.example.com"]}, "route": {"subset": "v2"}},
        {"name": "f", "match": {"hosts": ["B.example.com", "c.example.com"]}, "route": {"subset": "v2"}},
        {"name": "g", "match": {"path": "/a"}, "route": {"subset": "v2"}},
        {"name": "h", "match": {"path": "/b"}, "route": {"subset": "v2"}},
    ], "default": {"subset": "v1"}})
    .to_string();
    assert_eq!(
        steps(&json),
        [
            "scan 0..4",
            "lookup Host (3 values)",
            "lookup Path (2 values)"
        ]
    );
}
