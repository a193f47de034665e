//! The adapter's request-headers hook over a fake host (the proxy-wasm imports are not linked
//! on the host, so nothing here may reach `ffi`).

use std::cell::{Cell, RefCell};
use std::net::IpAddr;

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    ReadHeaders,
    Remove(String),
    Set(String, String),
    ClearRouteCache,
    LocalReply(u32),
    ResetStream,
}

/// A host that serves `headers`, records every call and fails the calls in `fail`.
#[derive(Default)]
struct FakeHost {
    headers: Vec<(String, String)>,
    fail: Vec<HostCall>,
    calls: Vec<Call>,
}

impl FakeHost {
    fn new(headers: &[(&str, &str)], fail: &[HostCall]) -> Self {
        Self {
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            fail: fail.to_vec(),
            calls: Vec::new(),
        }
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
        let buf = HeaderPairs::encode(&self.headers);
        Ok(f(HeaderPairs::new(&buf).into()))
    }

    fn source_address(&mut self) -> Result<Option<IpAddr>, HostError> {
        Ok(None)
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.outcome(HostCall::RemoveRequestHeader, Call::Remove(name.into()))
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.outcome(
            HostCall::SetRequestHeader,
            Call::Set(name.into(), value.into()),
        )
    }

    fn clear_route_cache(&mut self) -> Result<RouteCache, HostError> {
        self.outcome(HostCall::ClearRouteCache, Call::ClearRouteCache)?;
        Ok(RouteCache::Cleared)
    }

    fn send_local_reply(&mut self, status: u32, _body: &str) -> Result<(), HostError> {
        self.outcome(HostCall::SendLocalReply, Call::LocalReply(status))
    }

    fn reset_stream(&mut self) -> Result<(), HostError> {
        self.outcome(HostCall::ResetStream, Call::ResetStream)
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
    fn get(&self, filter: &Filter, name: &str) -> u64 {
        let index = counter_names(filter.router())
            .iter()
            .position(|n| n == name)
            .unwrap();
        self.0.borrow().get(index).copied().unwrap_or(0)
    }
}

#[derive(Default)]
struct FakeLog(RefCell<Vec<String>>);

impl Log for FakeLog {
    fn warn(&self, message: &str) {
        self.0.borrow_mut().push(message.to_owned());
    }
}

struct FixedClock;

impl Clock for FixedClock {
    fn wall_ns(&self) -> Result<u64, HostError> {
        Ok(0)
    }

    fn monotonic_ns(&self) -> Result<u64, HostError> {
        Ok(0)
    }
}

const CONFIG: &str = r#"{
  "subsetHeader": "x-subset",
  "rules": [
    {"name": "canary", "match": {"pathPrefix": "/app"},
     "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}]}}
  ],
  "default": {"subset": "v1"}
}"#;

const HOST_CALL_FAILED: &str = "subset_router.host_call_failed";

fn filter() -> Filter {
    Filter::new(subset_router_core::load(CONFIG.as_bytes()).unwrap())
}

fn run(filter: &Filter, host: &mut FakeHost) -> (Action, Served, FakeCounters, FakeLog) {
    let counters = FakeCounters::default();
    let log = FakeLog::default();
    let rng = Cell::new(WyRand::new(1));
    let (action, served) = request_headers(filter, host, &rng, &counters, &log, &FixedClock);
    (action, served, counters, log)
}

#[test]
fn a_decided_request_continues_with_what_the_response_path_needs() {
    let f = filter();
    let mut host = FakeHost::new(&[(":path", "/app")], &[]);
    let counters = FakeCounters::default();
    let rng = Cell::new(WyRand::new(1));
    let before = rng.get();
    let (action, served) = request_headers(
        &f,
        &mut host,
        &rng,
        &counters,
        &FakeLog::default(),
        &FixedClock,
    );
    assert_eq!(action, Action::Continue);
    assert!(served.slot.is_some(), "{served:?}");
    assert_eq!(host.calls.last(), Some(&Call::ClearRouteCache));
    // The split's draw is kept for the next request.
    assert_ne!(rng.get(), before);
}

#[test]
fn a_forged_header_that_stays_gets_a_local_reply_and_the_request_pauses() {
    let f = filter();
    let mut host = FakeHost::new(
        &[(":path", "/other"), ("x-subset", "v2")],
        &[HostCall::RemoveRequestHeader, HostCall::SetRequestHeader],
    );
    let (action, served, _, _) = run(&f, &mut host);
    assert_eq!(action, Action::Pause);
    assert_eq!(served, Served::default());
    assert_eq!(host.calls.last(), Some(&Call::LocalReply(503)));
    assert!(!host.calls.contains(&Call::ResetStream));
}

#[test]
fn a_failed_local_reply_resets_the_stream_instead_of_routing_the_forged_header() {
    let f = filter();
    let mut host = FakeHost::new(
        &[(":path", "/other"), ("x-subset", "v2")],
        &[
            HostCall::RemoveRequestHeader,
            HostCall::SetRequestHeader,
            HostCall::SendLocalReply,
        ],
    );
    let (action, _, counters, log) = run(&f, &mut host);
    assert_eq!(
        host.calls,
        [
            Call::ReadHeaders,
            Call::Remove("x-subset".into()),
            Call::Set("x-upstream-cluster".into(), "v1".into()),
            Call::Set("x-subset".into(), "v1".into()),
            Call::LocalReply(503),
            Call::ResetStream,
        ]
    );
    // Envoy resets the stream once the callback returns; until then nothing may go on.
    assert_eq!(action, Action::Pause);
    // 1 remove + 2 writes + the local reply.
    assert_eq!(counters.get(&f, HOST_CALL_FAILED), 4);
    let lines = log.0.borrow();
    assert!(
        lines.iter().any(|l| l.contains("send local reply")),
        "{lines:?}"
    );
}
