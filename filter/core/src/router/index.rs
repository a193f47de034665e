//! The evaluation plan: the rules in order, with runs of rules that need no scan replaced by one
//! hash lookup each.
//!
//! A rule is *indexable* when its whole match is one key compared for equality: one `exact` or
//! `oneOf` condition (not inverted) on a header, cookie or query parameter; or only `hosts`, all
//! exact names; or only `path`. Such a rule holds exactly when one of the request's values of that
//! key is one of the rule's values. Consecutive indexable rules on the same key form a run, and a
//! run is one map from value to the *first* rule of the run that lists it: the rule that holds
//! first is the smallest rule found for any of the request's values (a repeated header, cookie or
//! parameter has several). Every other rule — and so any rule between two runs — is evaluated as
//! it was, in its place, so first-match order is exactly that of the linear scan (the proptest
//! below checks it against the scan).
//!
//! A rule with a large `oneOf` is left out of runs: its own set already answers in one lookup,
//! and copying it into a run would hold its values twice (per Wasm VM).

use std::ops::Range;

use crate::bytemap::ByteMap;
use crate::matching::{HostPattern, Match, ValueOp, ValueSource};
use crate::request::{self, RequestView};

use super::Rule;

/// The fewest rules worth a map: a single rule is one comparison (or one set lookup) already.
const MIN_RUN: usize = 2;
/// A `oneOf` with more values than this stays out of runs (see the module documentation).
const MAX_VALUES_COPIED: usize = 1_024;

/// One step of the plan.
#[derive(Debug)]
pub(crate) enum Step {
    /// These rules, one after the other.
    Scan(Range<usize>),
    /// A run: the first of these rules that holds is found with one lookup per request value.
    Lookup(RunIndex),
}

#[derive(Debug)]
pub(crate) struct RunIndex {
    key: Key,
    /// Value → index (into the router's rules) of the first rule of the run that lists it.
    map: ByteMap,
}

/// What the rules of a run compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// A header (name in lower case), cookie or query parameter.
    Value(ValueSource, String),
    /// `:authority` without its port, ASCII case ignored.
    Host,
    /// `:path` without the query string.
    Path,
}

/// The plan of `rules`: runs of at least [`MIN_RUN`] indexable rules on one key become lookups,
/// everything else is scanned in place.
pub(crate) fn plan(rules: &[Rule]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut scan_from = 0;
    let mut i = 0;
    while i < rules.len() {
        let Some(key) = rules.get(i).and_then(|r| key_of(&r.matcher)) else {
            i += 1;
            continue;
        };
        let end = (i + 1..rules.len())
            .find(|&j| rules.get(j).and_then(|r| key_of(&r.matcher)).as_ref() != Some(&key))
            .unwrap_or(rules.len());
        let index = (end - i >= MIN_RUN)
            .then(|| RunIndex::build(key, rules, i..end))
            .flatten();
        if let Some(index) = index {
            if scan_from < i {
                steps.push(Step::Scan(scan_from..i));
            }
            steps.push(Step::Lookup(index));
            scan_from = end;
        }
        i = end;
    }
    if scan_from < rules.len() {
        steps.push(Step::Scan(scan_from..rules.len()));
    }
    steps
}

/// The index of the first rule that holds for `req`, by `plan`.
pub(crate) fn first_match(plan: &[Step], rules: &[Rule], req: &impl RequestView) -> Option<usize> {
    for step in plan {
        let found = match step {
            Step::Scan(range) => range
                .clone()
                .find(|&i| rules.get(i).is_some_and(|r| r.matcher.matches(req))),
            Step::Lookup(index) => index.first(req),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The key an indexable rule compares, or `None` when it has to be evaluated as written.
fn key_of(m: &Match) -> Option<Key> {
    let only_values = m.methods.is_empty()
        && m.path.is_none()
        && m.path_prefix.is_none()
        && m.hosts.is_empty()
        && m.source_cidrs.is_empty();
    if only_values {
        let [condition] = m.values.as_slice() else {
            return None;
        };
        let small = match &condition.op {
            ValueOp::Exact(_) => true,
            ValueOp::OneOf(set) => set.len() <= MAX_VALUES_COPIED,
            _ => false,
        };
        return (small && !condition.invert)
            .then(|| Key::Value(condition.source, condition.name.clone()));
    }
    let nothing_but = |hosts: bool, path: bool| {
        m.values.is_empty()
            && m.methods.is_empty()
            && m.path_prefix.is_none()
            && m.source_cidrs.is_empty()
            && m.hosts.is_empty() != hosts
            && m.path.is_none() != path
    };
    if nothing_but(true, false) && m.hosts.iter().all(|h| matches!(h, HostPattern::Exact(_))) {
        return Some(Key::Host);
    }
    nothing_but(false, true).then_some(Key::Path)
}

/// The values an indexable rule lists (as `key_of` classified it).
fn values_of(m: &Match) -> impl Iterator<Item = &[u8]> + Clone {
    let (exact, set) = match m.values.first().map(|c| &c.op) {
        Some(ValueOp::Exact(value)) => (Some(&**value), None),
        Some(ValueOp::OneOf(set)) => (None, Some(set)),
        _ => (None, None),
    };
    let hosts = m.hosts.iter().filter_map(|h| match h {
        HostPattern::Exact(host) => Some(host.as_bytes()),
        _ => None,
    });
    exact
        .into_iter()
        .chain(
            set.into_iter()
                .flat_map(|s| s.iter().map(|(value, _)| value)),
        )
        .chain(hosts)
        .chain(m.path.as_deref().map(str::as_bytes))
}

impl RunIndex {
    /// `None` when the run cannot be indexed (more rules than a map value holds): it is scanned.
    fn build(key: Key, rules: &[Rule], run: Range<usize>) -> Option<Self> {
        let last = u32::try_from(run.end).ok()?;
        let first = u32::try_from(run.start).ok()?;
        let pairs = (first..last).flat_map(|i| {
            let rule = rules.get(i as usize);
            rule.into_iter()
                .flat_map(|r| values_of(&r.matcher))
                .map(move |value| (value, i))
        });
        // A value listed by several rules keeps the first: the rule a scan would reach first.
        let map = ByteMap::build(pairs, key == Key::Host).ok()?;
        Some(Self { key, map })
    }

    /// The first rule of the run that holds for `req`: the smallest found for any of its values.
    fn first(&self, req: &impl RequestView) -> Option<usize> {
        let mut best: Option<u32> = None;
        let mut consider = |value: &[u8]| {
            if let Some(rule) = self.map.get(value) {
                best = Some(best.map_or(rule, |b| b.min(rule)));
            }
        };
        match &self.key {
            Key::Value(ValueSource::Header, name) => req.header_values(name).for_each(consider),
            Key::Value(ValueSource::Cookie, name) => req
                .header_values("cookie")
                .flat_map(request::cookie_pairs)
                .filter(|(n, _)| *n == name.as_bytes())
                .for_each(|(_, value)| consider(value)),
            Key::Value(ValueSource::Query, name) => {
                let query = req.first_header(":path").and_then(request::query_string);
                query
                    .into_iter()
                    .flat_map(request::query_params)
                    .filter(|(n, _)| n.as_ref() == name.as_bytes())
                    .for_each(|(_, value)| consider(&value));
            }
            Key::Host => {
                let authority = req
                    .first_header(":authority")
                    .or_else(|| req.first_header("host"));
                consider(request::authority_host(authority.unwrap_or_default()));
            }
            Key::Path => consider(request::path_only(
                req.first_header(":path").unwrap_or_default(),
            )),
        }
        best.map(|rule| rule as usize)
    }
}

#[cfg(test)]
mod tests;
