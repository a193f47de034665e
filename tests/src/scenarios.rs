//! Request sequences the rollout suite and the compat matrix both send, written once: the
//! debug routes (header, cookie, query, and requests that almost match) and sticky ids sent
//! round after round. Each suite checks and counts the results its own way.

use crate::http::Client;
use crate::report::{Expect, ExpectedStats, Tally};
use crate::{owned_headers, send, send_same};
use std::collections::{BTreeMap, BTreeSet};

/// How many requests of each kind [`DebugRouting::send`] sends.
#[derive(Debug, Clone, Copy)]
pub struct DebugRequests {
    /// `user-agent: debug`, the header name in both spellings.
    pub user_agent: u64,
    /// No user-agent, another one, one that only starts with `debug`.
    pub other_user_agents: u64,
    /// A `canary=always` cookie, alone or among others.
    pub cookie: u64,
    /// Cookies that almost match.
    pub other_cookies: u64,
    /// `debug=1` in the query (also `%31`).
    pub query: u64,
    /// `debug=0` or another parameter.
    pub other_queries: u64,
}

/// What the debug-routing requests got. The plugin config must have the rules `debug-ua`
/// (`user-agent: debug` -> v2), `debug-cookie` (cookie `canary=always` -> v2), `debug-query`
/// (query `debug=1` -> a subset of the suite's choice) and the default v1.
pub struct DebugRouting {
    pub user_agent: Tally,
    pub other_user_agents: Tally,
    pub cookie: Tally,
    pub other_cookies: Tally,
    pub query: Tally,
    pub other_queries: Tally,
}

impl DebugRouting {
    /// Sends the requests, kind after kind, on one connection.
    pub fn send(client: &mut Client, expect: &Expect, n: &DebugRequests) -> DebugRouting {
        // Gateway API traffic-shifting guide: user-agent debug -> v2, everyone else -> v1.
        let user_agent = send(client, n.user_agent, expect, |i| {
            let name = if i % 2 == 0 {
                "user-agent"
            } else {
                "User-Agent"
            };
            ("/".into(), owned_headers(&[(name, "debug")]))
        });
        let other_user_agents = send(client, n.other_user_agents, expect, |i| match i % 3 {
            0 => ("/".into(), vec![]),
            1 => ("/".into(), owned_headers(&[("user-agent", "Mozilla/5.0")])),
            _ => ("/".into(), owned_headers(&[("user-agent", "debugger")])),
        });
        let cookie = send(client, n.cookie, expect, |i| {
            let v = if i % 2 == 0 {
                "session=abc; canary=always; theme=dark"
            } else {
                "canary=always"
            };
            ("/".into(), owned_headers(&[("cookie", v)]))
        });
        let other_cookies = send(client, n.other_cookies, expect, |i| {
            let v = if i % 2 == 0 {
                "canary=never"
            } else {
                "notcanary=always; x=canary"
            };
            ("/".into(), owned_headers(&[("cookie", v)]))
        });
        let query = send(client, n.query, expect, |i| {
            let p = if i % 2 == 0 {
                "/?debug=1"
            } else {
                "/search?q=shoes&debug=%31"
            };
            (p.into(), vec![])
        });
        let other_queries = send(client, n.other_queries, expect, |i| {
            let p = if i % 2 == 0 {
                "/?debug=0"
            } else {
                "/?nodebug=1"
            };
            (p.into(), vec![])
        });
        DebugRouting {
            user_agent,
            other_user_agents,
            cookie,
            other_cookies,
            query,
            other_queries,
        }
    }

    /// `(check, requests, the subset every one of them must reach)`, in the order sent;
    /// `query_subset` is where the config's `debug-query` rule routes.
    pub fn checks<'a>(&'a self, query_subset: &'a str) -> [(&'static str, &'a Tally, &'a str); 6] {
        [
            ("user-agent: debug", &self.user_agent, "v2"),
            ("no / other user-agent", &self.other_user_agents, "v1"),
            ("cookie canary=always", &self.cookie, "v2"),
            ("other cookies", &self.other_cookies, "v1"),
            ("query debug=1 (also %31)", &self.query, query_subset),
            ("query debug=0 / other parameter", &self.other_queries, "v1"),
        ]
    }

    /// Adds the decision counters these requests must have moved to `expected`.
    pub fn add_expected(&self, expected: &mut ExpectedStats) {
        expected
            .rule_tally("debug-ua", &self.user_agent)
            .rule_tally("debug-cookie", &self.cookie)
            .rule_tally("debug-query", &self.query)
            .rule_tally("default", &self.other_user_agents)
            .rule_tally("default", &self.other_cookies)
            .rule_tally("default", &self.other_queries);
    }
}

/// The `x-user-id` of sticky id `id`: `user-0042`.
pub fn sticky_user(id: u64) -> String {
    format!("user-{id:04}")
}

/// What [`send_sticky_ids`] saw: every subset each id was served by, and all the requests.
pub struct StickyIds {
    /// Id -> the subsets that served it (one, if the split is sticky). An id whose every
    /// request failed is absent.
    pub subsets: BTreeMap<u64, BTreeSet<String>>,
    pub all: Tally,
}

/// `rounds` rounds of one request per id (`x-user-id: user-0000` …, ids interleaved, so that
/// an id's requests are spread over the run) to `{path}?r={round}`.
pub fn send_sticky_ids(
    client: &mut Client,
    expect: &Expect,
    path: &str,
    ids: u64,
    rounds: u64,
) -> StickyIds {
    let mut subsets: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut all = Tally::default();
    for round in 0..rounds {
        for id in 0..ids {
            let uid = sticky_user(id);
            let t = send_same(
                client,
                1,
                expect,
                &format!("{path}?r={round}"),
                &[("x-user-id", &uid)],
            );
            for s in t.counts.keys() {
                subsets.entry(id).or_default().insert(s.clone());
            }
            all.merge(&t);
        }
    }
    StickyIds { subsets, all }
}
