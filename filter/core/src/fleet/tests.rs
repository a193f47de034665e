use proptest::prelude::*;

use super::*;
use crate::guard::SlowTrigger;

fn guard(baseline: bool, slow: bool) -> GuardSpec {
    GuardSpec {
        subset: "v2".to_owned(),
        baseline: baseline.then(|| "v1".to_owned()),
        max_error_ppm: 50_000,
        min_requests: 20,
        window_s: 30,
        cooldown_ms: 60_000,
        max_trips: 3,
        min_margin_ppm: 10_000,
        slow: slow.then_some(SlowTrigger {
            slow_ms: 1000,
            max_slow_ppm: 100_000,
        }),
        fleet: None,
    }
}

fn fleet(selector: &str) -> FleetSpec {
    FleetSpec {
        cluster: "prometheus".to_owned(),
        authority: "prometheus".to_owned(),
        path: "/api/v1/query".to_owned(),
        matchers: parse_selector(selector).expect("valid selector"),
        interval_ms: 5000,
        timeout_ms: 2000,
    }
}

fn render(matchers: &[Matcher]) -> String {
    matchers
        .iter()
        .map(|m| format!("{}{}{}", m.label, m.op.text(), quote(&m.value)))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn selectors_are_label_matchers() {
    assert_eq!(parse_selector("").unwrap(), vec![]);
    assert_eq!(parse_selector("  ").unwrap(), vec![]);
    let m = parse_selector(r#" namespace = "shop" , app=~"check.*",pod!="a\"b",x!~"y", "#).unwrap();
    assert_eq!(
        m,
        vec![
            Matcher {
                label: "namespace".into(),
                op: MatchOp::Equal,
                value: "shop".into()
            },
            Matcher {
                label: "app".into(),
                op: MatchOp::Regex,
                value: "check.*".into()
            },
            Matcher {
                label: "pod".into(),
                op: MatchOp::NotEqual,
                value: "a\"b".into()
            },
            Matcher {
                label: "x".into(),
                op: MatchOp::NotRegex,
                value: "y".into()
            },
        ]
    );
}

#[test]
fn nothing_but_matchers_gets_into_the_query() {
    for (selector, reason) in [
        (
            r#"job="x"} or vector(1) #"#,
            "expected ',' between matchers at byte 7, found '}'",
        ),
        (
            r#"job="x"}"#,
            "expected ',' between matchers at byte 7, found '}'",
        ),
        (
            r#"{job="x"}"#,
            "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at byte 0, found '{'",
        ),
        (
            r#"job="x" or vector(1)"#,
            "expected ',' between matchers at byte 8, found 'o'",
        ),
        (
            r#"job=x"#,
            "expected a double-quoted value at byte 4, found 'x'",
        ),
        (
            r#"job='x'"#,
            "expected a double-quoted value at byte 4, found '''",
        ),
        (r#"job="x"#, "a quoted value is not closed"),
        (r#"job="x\"#, "a quoted value ends in a lone backslash"),
        (
            r#"job="\x41""#,
            "unsupported escape '\\x' in a quoted value (use \\\\, \\\", \\n or \\t)",
        ),
        ("job=\"a\nb\"", "a quoted value holds a line break"),
        (
            r#"1job="x""#,
            "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at byte 0, found '1'",
        ),
        (
            r#"job=="x""#,
            "expected a double-quoted value at byte 4, found '='",
        ),
        (
            r#"job<"x""#,
            "expected one of =, !=, =~, !~ at byte 3, found '<'",
        ),
        (r#"job"#, "expected one of =, !=, =~, !~ at the end"),
        (
            r#"job="x",,"#,
            "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at byte 8, found ','",
        ),
        (
            r#"subset="v3""#,
            "label \"subset\" is set by the query itself and cannot be matched here",
        ),
        (
            r#"__name__=~".+""#,
            "label \"__name__\" is set by the query itself and cannot be matched here",
        ),
        (
            r#"exported_instance="a""#,
            "label \"exported_instance\" is set by the query itself and cannot be matched here",
        ),
        (
            r#"app=~"(""#,
            "the regex of label \"app\" is not a valid pattern",
        ),
        (
            r#"app=~"a)|(b""#,
            "the regex of label \"app\" is not a valid pattern",
        ),
    ] {
        assert_eq!(
            parse_selector(selector).as_ref().map_err(String::as_str),
            Err(reason),
            "{selector}"
        );
    }
}

#[test]
fn the_query_sums_both_builds_families_by_counter() {
    let q = query(
        &guard(false, false),
        &fleet(r#"namespace="shop""#),
        None,
        30,
    );
    let sel = r#"{subset="v2",exported_instance="",namespace="shop"}[30s]"#;
    let term = |family: &str, c: &str| {
        format!(r#"label_replace(increase({family}{c}{sel}),"counter","{c}","__name__",".*")"#)
    };
    let expected = format!(
        "sum by (counter) ({} or {} or {} or {})",
        term("subset_router_guard_", "requests"),
        term(
            "envoy_dynamicmodulescustom_subset_router_guard_",
            "requests"
        ),
        term("subset_router_guard_", "errors"),
        term("envoy_dynamicmodulescustom_subset_router_guard_", "errors"),
    );
    assert_eq!(q, expected);

    let named = query(&guard(true, true), &fleet(""), Some("checkout"), 7);
    assert!(
        named.contains(r#"{subset="v2",exported_instance="checkout"}[7s]"#),
        "{named}"
    );
    for c in [
        "requests",
        "errors",
        "slow",
        "baseline_requests",
        "baseline_errors",
    ] {
        assert_eq!(
            named.matches(&format!("\"counter\",\"{c}\"")).count(),
            2,
            "{c}: {named}"
        );
    }
}

#[test]
fn the_request_path_percent_encodes_the_query() {
    let f = fleet("");
    assert_eq!(
        request_path(&f, r#"sum(x{a="b"}[5s])"#),
        "/api/v1/query?query=sum%28x%7Ba%3D%22b%22%7D%5B5s%5D%29"
    );
    let f = FleetSpec {
        path: "/prometheus/api/v1/query?dedup=true".to_owned(),
        ..fleet("")
    };
    assert_eq!(
        request_path(&f, "a b"),
        "/prometheus/api/v1/query?dedup=true&query=a%20b"
    );
}

fn answer(samples: &[(&str, &str)]) -> Vec<u8> {
    let result: Vec<String> = samples
        .iter()
        .map(|(c, v)| format!(r#"{{"metric":{{"counter":"{c}"}},"value":[1733000000.123,"{v}"]}}"#))
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        result.join(",")
    )
    .into_bytes()
}

#[test]
fn a_well_formed_answer_gives_the_fleet_counts() {
    let g = guard(true, true);
    let body = answer(&[
        ("requests", "120.4"),
        ("errors", "30"),
        ("slow", "2.5"),
        ("baseline_requests", "1000"),
        ("baseline_errors", "1e1"),
    ]);
    assert_eq!(
        parse_answer(&g, 200, &body),
        Ok(Counts {
            requests: 120,
            errors: 30,
            slow: 3,
            baseline_requests: 1000,
            baseline_errors: 10,
            baseline_slow: 0,
        })
    );
}

#[test]
fn every_kind_of_junk_is_a_failure_not_a_decision() {
    let g = guard(false, false);
    let ok = answer(&[("requests", "10"), ("errors", "1")]);
    assert!(parse_answer(&g, 200, &ok).is_ok());
    let cases: Vec<(u64, Vec<u8>, FleetFailure)> = vec![
        (503, ok.clone(), FleetFailure::Status(503)),
        (
            200,
            b"<html>oops</html>".to_vec(),
            FleetFailure::Malformed("the body is not JSON".into()),
        ),
        (
            200,
            br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#.to_vec(),
            FleetFailure::Malformed("status is not \"success\"".into()),
        ),
        (
            200,
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.to_vec(),
            FleetFailure::Malformed("data.resultType is not \"vector\"".into()),
        ),
        (200, answer(&[]), FleetFailure::Empty("requests")),
        (200, answer(&[("requests", "10")]), FleetFailure::Empty("errors")),
        (
            200,
            answer(&[("requests", "NaN"), ("errors", "0")]),
            FleetFailure::BadValue {
                counter: "requests".into(),
                value: "NaN".into(),
            },
        ),
        (
            200,
            answer(&[("requests", "+Inf"), ("errors", "0")]),
            FleetFailure::BadValue {
                counter: "requests".into(),
                value: "+Inf".into(),
            },
        ),
        (
            200,
            answer(&[("requests", "10"), ("errors", "-1")]),
            FleetFailure::BadValue {
                counter: "errors".into(),
                value: "-1".into(),
            },
        ),
        (
            200,
            answer(&[("requests", "10"), ("errors", "11")]),
            FleetFailure::Inconsistent("errors > requests (11 > 10)".into()),
        ),
        (
            200,
            answer(&[("requests", "10"), ("errors", "1"), ("errors", "1")]),
            FleetFailure::Malformed("counter errors appears twice".into()),
        ),
        (
            200,
            answer(&[("requests", "10"), ("errors", "1"), ("bogus", "1")]),
            FleetFailure::Malformed("unexpected counter \"bogus\"".into()),
        ),
        (
            200,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#.to_vec(),
            FleetFailure::Malformed("a sample has no counter label".into()),
        ),
        (
            200,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"counter":"requests"},"value":[1,2]}]}}"#.to_vec(),
            FleetFailure::Malformed("the value of requests is not [time, \"number\"]".into()),
        ),
        (
            200,
            answer(&[("requests", "1e300"), ("errors", "0")]),
            FleetFailure::BadValue {
                counter: "requests".into(),
                value: "1e300".into(),
            },
        ),
    ];
    for (status, body, expected) in cases {
        assert_eq!(
            parse_answer(&g, status, &body),
            Err(expected),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

fn arb_matcher() -> impl Strategy<Value = Matcher> {
    (
        "[a-zA-Z_][a-zA-Z0-9_]{0,12}",
        prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::Regex),
            Just(MatchOp::NotRegex)
        ],
        "[ -~]{0,16}",
    )
        .prop_filter("reserved", |(l, _, _)| {
            !RESERVED_LABELS.contains(&l.as_str())
        })
        .prop_filter("regex", |(_, op, v)| {
            !matches!(op, MatchOp::Regex | MatchOp::NotRegex)
                || (regex_lite::Regex::new(v).is_ok()
                    && regex_lite::Regex::new(&format!("^(?:{v})$")).is_ok())
        })
        .prop_map(|(label, op, value)| Matcher { label, op, value })
}

proptest! {
    #[test]
    fn rendered_matchers_read_back_the_same(matchers in proptest::collection::vec(arb_matcher(), 0..5)) {
        prop_assert_eq!(parse_selector(&render(&matchers)).unwrap(), matchers);
    }

    /// Whatever a selector holds, an accepted one reaches the query only as the canonical
    /// rendering of its matchers: the query's selector braces hold nothing else.
    #[test]
    fn an_accepted_selector_is_only_matchers(selector in "[ -~]{0,40}") {
        if let Ok(matchers) = parse_selector(&selector) {
            let q = query(&guard(false, false), &FleetSpec { matchers: matchers.clone(), ..fleet("") }, None, 30);
            let inside = format!("{{subset=\"v2\",exported_instance=\"\"{}{}}}[30s]",
                if matchers.is_empty() { "" } else { "," }, render(&matchers));
            prop_assert_eq!(q.matches(&inside).count(), 4);
        }
    }

    #[test]
    fn answers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200), status in 0u64..600) {
        let _ = parse_answer(&guard(true, true), status, &body);
    }
}
