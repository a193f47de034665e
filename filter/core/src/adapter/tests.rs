//! The adapter's own logic against a fake host that records every call and can be told to
//! fail any of them.

use std::cell::RefCell;
use std::net::IpAddr;

use super::*;
use crate::host::{Gauges, HostCall};
use crate::live::Conditions;
use crate::request::HeaderPairs;
use crate::rng::WyRand;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    ReadHeaders,
    SourceAddress,
    Remove(String),
    Set(String, String),
    ClearRouteCache,
    LocalReply(u32),
    ResetStream,
    SetResponse(String, String),
    ReadStatus,
}

#[derive(Default)]
struct FakeHost {
    headers: Vec<(String, String)>,
    source: Option<IpAddr>,
    calls: Vec<Call>,
    fail: Vec<HostCall>,
    route_cache_unsupported: bool,
    /// The response's `:status`.
    status: Option<u32>,
}

impl FakeHost {
    fn with_headers(headers: &[(&str, &str)]) -> Self {
        Self {
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Self::default()
        }
    }

    fn failing(mut self, calls: &[HostCall]) -> Self {
        self.fail = calls.to_vec();
        self
    }

    fn outcome(&mut self, call: HostCall, record: Call) -> Result<(), HostError> {
        self.calls.push(record);
        if self.fail.contains(&call) {
            Err(HostError { call, code: 2 })
        } else {
            Ok(())
        }
    }
}

impl RequestHost for FakeHost {
    fn with_request_headers<R>(
        &mut self,
        f: impl FnOnce(HeaderSource<'_>) -> R,
    ) -> Result<R, HostError> {
        self.outcome(HostCall::ReadRequestHeaders, Call::ReadHeaders)?;
        // The proxy-wasm serialisation, as the wasm build reads it.
        let buf = HeaderPairs::encode(&self.headers);
        Ok(f(HeaderPairs::new(&buf).into()))
    }

    fn source_address(&mut self) -> Result<Option<IpAddr>, HostError> {
        self.outcome(HostCall::SourceAddress, Call::SourceAddress)?;
        Ok(self.source)
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.outcome(HostCall::RemoveRequestHeader, Call::Remove(name.into()))?;
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        Ok(())
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.outcome(
            HostCall::SetRequestHeader,
            Call::Set(name.into(), value.into()),
        )?;
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        Ok(())
    }

    fn clear_route_cache(&mut self) -> Result<RouteCache, HostError> {
        self.outcome(HostCall::ClearRouteCache, Call::ClearRouteCache)?;
        Ok(if self.route_cache_unsupported {
            RouteCache::Unsupported
        } else {
            RouteCache::Cleared
        })
    }

    fn send_local_reply(&mut self, status: u32, _body: &str) -> Result<(), HostError> {
        self.outcome(HostCall::SendLocalReply, Call::LocalReply(status))
    }

    fn reset_stream(&mut self) -> Result<(), HostError> {
        self.outcome(HostCall::ResetStream, Call::ResetStream)
    }
}

impl ResponseHost for FakeHost {
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.outcome(
            HostCall::SetResponseHeader,
            Call::SetResponse(name.into(), value.into()),
        )
    }

    fn response_status(&mut self) -> Result<Option<u32>, HostError> {
        self.outcome(HostCall::ReadResponseStatus, Call::ReadStatus)?;
        Ok(self.status)
    }
}

#[derive(Default)]
struct FakeCounters(RefCell<Vec<u64>>);

impl Counters for FakeCounters {
    fn increment(&self, counter: usize, by: u64) {
        let mut values = self.0.borrow_mut();
        if values.len() <= counter {
            values.resize(counter + 1, 0);
        }
        values[counter] += by;
    }
}

impl FakeCounters {
    /// Non-zero counters by name.
    fn by_name(&self, filter: &Filter) -> Vec<(String, u64)> {
        let names = counter_names(filter.router());
        self.0
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, &v)| v > 0)
            .map(|(i, &v)| (names[i].clone(), v))
            .collect()
    }
}

#[derive(Default)]
struct FakeLog(RefCell<Vec<String>>);

impl Log for FakeLog {
    fn warn(&self, message: &str) {
        self.0.borrow_mut().push(message.to_owned());
    }

    fn info(&self, message: &str) {
        self.0.borrow_mut().push(format!("info: {message}"));
    }
}

#[derive(Default)]
struct FakeGauges(RefCell<Vec<u64>>);

impl Gauges for FakeGauges {
    fn set_gauge(&self, gauge: usize, value: u64) {
        let mut values = self.0.borrow_mut();
        if values.len() <= gauge {
            values.resize(gauge + 1, 0);
        }
        values[gauge] = value;
    }
}

const CONFIG: &str = r#"{
  "subsetHeader": "x-subset",
  "responseHeader": "x-routed-subset",
  "rules": [
    {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
     "route": {"subset": "v2"}}
  ],
  "default": {"subset": "v1"}
}"#;

fn filter(json: &str) -> Filter {
    Filter::new(crate::load(json.as_bytes()).unwrap())
}

fn run(filter: &Filter, host: &mut FakeHost) -> (Verdict, FakeCounters, FakeLog) {
    let counters = FakeCounters::default();
    let log = FakeLog::default();
    let verdict = filter.on_request_headers(host, &mut WyRand::new(1), &counters, &log);
    (verdict, counters, log)
}

fn set(name: &str, value: &str) -> Call {
    Call::Set(name.into(), value.into())
}

#[test]
fn counter_names_list_every_slot_then_the_filter_counters() {
    let f = filter(CONFIG);
    assert_eq!(
        counter_names(f.router()),
        [
            "subset_router.rule.debug.subset.v2",
            "subset_router.rule.default.subset.v1",
            "subset_router.spoofed_header_removed",
            "subset_router.sticky_key_missing",
            "subset_router.host_call_failed",
        ]
    );
}

#[test]
fn a_plain_request_is_decided_written_rerouted_and_counted() {
    let f = filter(CONFIG);
    let mut host = FakeHost::with_headers(&[(":path", "/"), ("user-agent", "debug")]);
    let (verdict, counters, log) = run(&f, &mut host);
    assert_eq!(
        verdict,
        Verdict::Continue(Served {
            slot: Some(0),
            ..Served::default()
        })
    );
    assert_eq!(
        host.calls,
        [
            Call::ReadHeaders,
            set("x-upstream-cluster", "v2"),
            set("x-subset", "v2"),
            Call::ClearRouteCache,
        ]
    );
    assert_eq!(
        counters.by_name(&f),
        [("subset_router.rule.debug.subset.v2".to_string(), 1)]
    );
    assert!(log.0.borrow().is_empty());
}

#[test]
fn forged_routing_headers_are_removed_counted_once_and_never_decide() {
    let f = filter(CONFIG);
    let mut host = FakeHost::with_headers(&[
        ("x-upstream-cluster", "v2"),
        ("X-Subset", "v2"),
        ("x-subset", "v3"),
    ]);
    let (verdict, counters, _) = run(&f, &mut host);
    assert_eq!(
        verdict,
        Verdict::Continue(Served {
            slot: Some(1),
            ..Served::default()
        })
    );
    assert_eq!(
        host.calls,
        [
            Call::ReadHeaders,
            Call::Remove("x-upstream-cluster".into()),
            Call::Remove("x-subset".into()),
            set("x-upstream-cluster", "v1"),
            set("x-subset", "v1"),
            Call::ClearRouteCache,
        ]
    );
    assert_eq!(
        counters.by_name(&f),
        [
            ("subset_router.rule.default.subset.v1".to_string(), 1),
            ("subset_router.spoofed_header_removed".to_string(), 1),
        ]
    );
    assert_eq!(
        host.headers,
        [
            ("x-upstream-cluster".to_string(), "v1".to_string()),
            ("x-subset".to_string(), "v1".to_string())
        ]
    );
}

#[test]
fn the_decision_reads_the_request_without_the_routing_headers() {
    let headers = HeaderPairs::encode(&[("x-subset", "v2"), (":path", "/a"), ("x-other", "1")]);
    let view = DecodedRequest::new(HeaderPairs::new(&headers), None);
    let stripped = WithoutRoutingHeaders {
        inner: &view,
        hidden: [Some("x-upstream-cluster"), Some("x-subset")],
    };
    assert_eq!(stripped.first_header("x-subset"), None);
    assert_eq!(stripped.first_header("X-Subset"), None);
    assert_eq!(stripped.header_values("x-subset").count(), 0);
    assert_eq!(stripped.first_header(":path"), Some(&b"/a"[..]));
    assert_eq!(stripped.header_values("x-other").count(), 1);
}

#[test]
fn on_request_decides_on_the_request_without_the_clients_routing_headers() {
    // Validation refuses a rule on a routing header, so such rules are compiled while the
    // filter writes other headers, then the filter is pointed at the headers they read. Each
    // rule holds as soon as it sees any value of its header.
    let json = r#"{
      "clusterHeader": "x-decided-cluster",
      "subsetHeader": "x-decided-subset",
      "rules": [
        {"name": "reads-cluster", "match": {"headers": [{"name": "x-upstream-cluster", "present": true}]},
         "route": {"subset": "v2"}},
        {"name": "reads-subset", "match": {"headers": [{"name": "x-subset", "present": true}]},
         "route": {"subset": "v3"}}
      ],
      "default": {"subset": "v1"}
    }"#;
    let compiled = || crate::load(json.as_bytes()).unwrap();
    let served_rule = |filter: &Filter, headers: &[(&str, &str)]| {
        let mut host = FakeHost::with_headers(headers);
        let (verdict, _, _) = run(filter, &mut host);
        let Verdict::Continue(Served {
            slot: Some(slot), ..
        }) = verdict
        else {
            panic!("{verdict:?}");
        };
        filter.router().slots()[slot].rule.clone()
    };
    let forged_cluster = [(":path", "/"), ("x-upstream-cluster", "v2")];
    let forged_subset = [(":path", "/"), ("X-Subset", "v3"), ("x-subset", "v3")];

    // While they are not the filter's headers, the rules do see them.
    let reading = Filter::new(compiled());
    assert_eq!(served_rule(&reading, &forged_cluster), "reads-cluster");
    assert_eq!(served_rule(&reading, &forged_subset), "reads-subset");

    let mut router = compiled();
    router.cluster_header = Some("x-upstream-cluster".into());
    router.subset_header = Some("x-subset".into());
    let stripping = Filter::new(router);
    assert_eq!(served_rule(&stripping, &forged_cluster), "default");
    assert_eq!(served_rule(&stripping, &forged_subset), "default");
}

#[test]
fn unreadable_headers_remove_both_routing_headers_and_route_by_default() {
    let f = filter(CONFIG);
    let mut host =
        FakeHost::with_headers(&[("x-subset", "v2")]).failing(&[HostCall::ReadRequestHeaders]);
    let (verdict, counters, log) = run(&f, &mut host);
    assert_eq!(
        verdict,
        Verdict::Continue(Served {
            slot: Some(1),
            ..Served::default()
        })
    );
    assert_eq!(
        host.calls,
        [
            Call::ReadHeaders,
            Call::Remove("x-upstream-cluster".into()),
            Call::Remove("x-subset".into()),
            set("x-upstream-cluster", "v1"),
            set("x-subset", "v1"),
            Call::ClearRouteCache,
        ]
    );
    // Nothing was seen, so nothing counts as forged: the failure is the read's alone.
    assert_eq!(
        counters.by_name(&f),
        [
            ("subset_router.rule.default.subset.v1".to_string(), 1),
            ("subset_router.host_call_failed".to_string(), 1),
        ]
    );
    assert_eq!(log.0.borrow().len(), 1);
    assert!(log.0.borrow()[0].contains("read request headers"));
}

#[test]
fn unreadable_headers_that_can_be_neither_removed_nor_overwritten_get_a_local_503() {
    // The client may have sent a routing header nobody could read, remove or overwrite.
    let f = filter(CONFIG);
    let mut host = FakeHost::with_headers(&[("x-subset", "v2")]).failing(&[
        HostCall::ReadRequestHeaders,
        HostCall::RemoveRequestHeader,
        HostCall::SetRequestHeader,
    ]);
    let (verdict, counters, _) = run(&f, &mut host);
    assert_eq!(verdict, Verdict::Stop);
    assert_eq!(host.calls.last(), Some(&Call::LocalReply(503)));
    // 1 read + 2 removes + 2 writes; no forgery was seen, and a stopped request is no decision.
    assert_eq!(
        counters.by_name(&f),
        [("subset_router.host_call_failed".to_string(), 5)]
    );
}

#[test]
fn a_forged_header_that_cannot_be_removed_is_overwritten() {
    let f = filter(CONFIG);
    let mut host =
        FakeHost::with_headers(&[("x-subset", "v2")]).failing(&[HostCall::RemoveRequestHeader]);
    let (verdict, counters, _) = run(&f, &mut host);
    assert_eq!(
        verdict,
        Verdict::Continue(Served {
            slot: Some(1),
            ..Served::default()
        })
    );
    assert!(host.headers.contains(&("x-subset".into(), "v1".into())));
    assert!(counters
        .by_name(&f)
        .contains(&("subset_router.host_call_failed".into(), 1)));
}

#[test]
fn a_forged_header_that_can_be_neither_removed_nor_overwritten_gets_a_local_503() {
    let f = filter(CONFIG);
    let mut host = FakeHost::with_headers(&[("x-subset", "v2")])
        .failing(&[HostCall::RemoveRequestHeader, HostCall::SetRequestHeader]);
    let (verdict, _, log) = run(&f, &mut host);
    assert_eq!(verdict, Verdict::Stop);
    assert_eq!(host.calls.last(), Some(&Call::LocalReply(503)));
    assert!(!host.calls.contains(&Call::ClearRouteCache));
    // Two kinds failed: each is logged once.
    assert_eq!(log.0.borrow().len(), 2);
}

#[test]
fn a_forged_header_whose_local_reply_fails_resets_the_stream() {
    // The forged value is still in the request: going on would route it where the client
    // asked, and stopping without a reply would leave it waiting for Envoy's timeout.
    let f = filter(CONFIG);
    let mut host = FakeHost::with_headers(&[("x-subset", "v2")]).failing(&[
        HostCall::RemoveRequestHeader,
        HostCall::SetRequestHeader,
        HostCall::SendLocalReply,
    ]);
    let (verdict, counters, log) = run(&f, &mut host);
    assert_eq!(verdict, Verdict::Stop);
    assert_eq!(
        host.calls[host.calls.len() - 2..],
        [Call::LocalReply(503), Call::ResetStream]
    );
    assert!(!host.calls.contains(&Call::ClearRouteCache));
    // 1 remove + 2 writes + the local reply.
    assert!(counters
        .by_name(&f)
        .contains(&("subset_router.host_call_failed".into(), 4)));
    let lines = log.0.borrow();
    assert!(lines[2].contains("send local reply"), "{lines:?}");

    // A reset that fails too is counted; the request still stops (it is never routed).
    let f = filter(CONFIG);
    let mut host = FakeHost::with_headers(&[("x-subset", "v2")]).failing(&[
        HostCall::RemoveRequestHeader,
        HostCall::SetRequestHeader,
        HostCall::SendLocalReply,
        HostCall::ResetStream,
    ]);
    let (verdict, counters, log) = run(&f, &mut host);
    assert_eq!(verdict, Verdict::Stop);
    assert_eq!(host.calls.last(), Some(&Call::ResetStream));
    assert!(counters
        .by_name(&f)
        .contains(&("subset_router.host_call_failed".into(), 5)));
    let lines = log.0.borrow();
    assert!(lines[3].contains("reset the stream"), "{lines:?}");
}

#[test]
fn failed_writes_without_a_forged_header_still_continue() {
    let f = filter(CONFIG);
    let mut host = FakeHost::default().failing(&[HostCall::SetRequestHeader]);
    let (verdict, counters, log) = run(&f, &mut host);
    assert_eq!(
        verdict,
        Verdict::Continue(Served {
            slot: Some(1),
            ..Served::default()
        })
    );
    assert!(counters
        .by_name(&f)
        .contains(&("subset_router.host_call_failed".into(), 2)));
    // The second failure of the same call is counted, not logged again.
    assert_eq!(log.0.borrow().len(), 1);
}

#[test]
fn a_host_without_clear_route_cache_is_not_asked_again() {
    let f = filter(CONFIG);
    let mut host = FakeHost {
        route_cache_unsupported: true,
        ..FakeHost::default()
    };
    run(&f, &mut host);
    run(&f, &mut host);
    let asked = host
        .calls
        .iter()
        .filter(|c| **c == Call::ClearRouteCache)
        .count();
    assert_eq!(asked, 1);
}

#[test]
fn a_failing_clear_route_cache_is_counted_and_asked_again() {
    let f = filter(CONFIG);
    let mut host = FakeHost::default().failing(&[HostCall::ClearRouteCache]);
    let (verdict, counters, _) = run(&f, &mut host);
    run(&f, &mut host);
    assert_eq!(
        verdict,
        Verdict::Continue(Served {
            slot: Some(1),
            ..Served::default()
        })
    );
    let asked = host
        .calls
        .iter()
        .filter(|c| **c == Call::ClearRouteCache)
        .count();
    assert_eq!(asked, 2);
    assert!(counters
        .by_name(&f)
        .contains(&("subset_router.host_call_failed".into(), 1)));
}

#[test]
fn the_source_address_is_read_only_when_a_rule_needs_it() {
    let plain = filter(CONFIG);
    let mut host = FakeHost::default();
    run(&plain, &mut host);
    assert!(!host.calls.contains(&Call::SourceAddress));

    let fenced = filter(
        r#"{"rules":[{"name":"office","match":{"sourceCidrs":["10.0.0.0/8"]},"route":{"subset":"v2"}}],
            "default":{"subset":"v1"}}"#,
    );
    let mut host = FakeHost {
        source: Some("10.1.2.3".parse().unwrap()),
        ..FakeHost::default()
    };
    let (verdict, _, _) = run(&fenced, &mut host);
    assert_eq!(host.calls.first(), Some(&Call::SourceAddress));
    assert_eq!(
        verdict,
        Verdict::Continue(Served {
            slot: Some(0),
            ..Served::default()
        })
    );

    // An unreadable address is no address: the fenced rule does not match.
    let mut host = FakeHost {
        source: Some("10.1.2.3".parse().unwrap()),
        ..FakeHost::default()
    }
    .failing(&[HostCall::SourceAddress]);
    let (verdict, _, _) = run(&fenced, &mut host);
    assert_eq!(
        verdict,
        Verdict::Continue(Served {
            slot: Some(1),
            ..Served::default()
        })
    );
}

#[test]
fn the_response_names_the_serving_subset() {
    let f = filter(CONFIG);
    let counters = FakeCounters::default();
    let log = FakeLog::default();
    let mut host = FakeHost::default();
    f.on_response_headers(
        Served {
            slot: Some(0),
            ..Served::default()
        },
        &mut host,
        &counters,
        &log,
    );
    assert_eq!(
        host.calls,
        [Call::SetResponse("x-routed-subset".into(), "v2".into())]
    );
    let mut host = FakeHost::default().failing(&[HostCall::SetResponseHeader]);
    f.on_response_headers(
        Served {
            slot: Some(1),
            ..Served::default()
        },
        &mut host,
        &counters,
        &log,
    );
    assert!(counters
        .by_name(&f)
        .contains(&("subset_router.host_call_failed".into(), 1)));
    // No decision, no header.
    let mut host = FakeHost::default();
    f.on_response_headers(Served::default(), &mut host, &counters, &log);
    assert!(host.calls.is_empty());
}

mod progressive;

#[test]
fn a_rejected_configuration_logs_each_error_then_what_stays_in_effect() {
    let bad = br#"{"rules":[{"name":"a.b","route":{"subset":"v1"}}],"default":{"subset":"!"}}"#;
    for (previous, tail) in [
        (Some(true), "; the previous configuration stays in effect"),
        (Some(false), "; no configuration is active"),
        (None, ""),
    ] {
        let log = FakeLog::default();
        assert!(load_logged(bad, &log, previous).is_none());
        let lines = log.0.borrow();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("subset-router: invalid configuration: rules[0].name: "));
        assert!(lines[1].starts_with("subset-router: invalid configuration: default.subset: "));
        assert_eq!(
            lines[2],
            format!("subset-router: configuration rejected (2 error(s)){tail}")
        );
    }
    let log = FakeLog::default();
    assert!(load_logged(CONFIG.as_bytes(), &log, None).is_some());
    assert!(log.0.borrow().is_empty());
}
