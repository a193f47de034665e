//! The fleet guard's conversation with Prometheus: the label selector operators write, the one
//! query a round sends, and the strict reading of the answer.
//!
//! Everything here is pure: the adapters send the request through an Envoy cluster (proxy-wasm
//! `dispatch_http_call`, the dynamic module's config-level HTTP callout) and hand the answer
//! back to [`parse_answer`]. The answer is outside data and is read like a configuration: any
//! doubt is a [`FleetFailure`], never a decision.
//!
//! # The query
//!
//! For guard `v2` over a 30 s window, without a top-level `name`, with selector
//! `namespace="shop"`, one round asks (one line; shown wrapped):
//!
//! ```text
//! sum by (counter) (
//!   label_replace(increase(subset_router_guard_requests{subset="v2",exported_instance="",namespace="shop"}[30s]),
//!                 "counter", "requests", "__name__", ".*")
//!   or label_replace(increase(envoy_dynamicmodulescustom_subset_router_guard_requests{…}[30s]), …)
//!   or … the same for errors (and slow, baseline_requests, baseline_errors when the guard uses them)
//! )
//! ```
//!
//! `increase()` drops the metric name, `label_replace` names each counter, `or` joins the two
//! builds' families (a proxy runs one build, so no series hides another) and `sum by (counter)`
//! adds the fleet up. The top-level `name` reaches Envoy's stats as the `instance` tag, which
//! Prometheus stores as `exported_instance` (its own `instance` is the scraped target);
//! `exported_instance=""` picks the configurations without a name.

use serde_json::Value;

use crate::guard::{Counts, GuardSpec};

/// The counters a fleet round sums, by the name of their series label `counter` and of the
/// stat (`subset_router.guard.<subset>.<what>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Requests,
    Errors,
    Slow,
    BaselineRequests,
    BaselineErrors,
}

impl Counter {
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Requests => "requests",
            Counter::Errors => "errors",
            Counter::Slow => "slow",
            Counter::BaselineRequests => "baseline_requests",
            Counter::BaselineErrors => "baseline_errors",
        }
    }

    fn set(self, counts: &mut Counts, value: u64) {
        match self {
            Counter::Requests => counts.requests = value,
            Counter::Errors => counts.errors = value,
            Counter::Slow => counts.slow = value,
            Counter::BaselineRequests => counts.baseline_requests = value,
            Counter::BaselineErrors => counts.baseline_errors = value,
        }
    }
}

/// The Prometheus families of a guard counter, one per build, as the shipped `stats_tags`
/// expose `subset_router.guard.<subset>.<what>` (Envoy strips the Wasm namespace `wasmcustom.`
/// from Prometheus names but keeps the dynamic module's `dynamicmodulescustom.`).
pub const FAMILY_PREFIXES: [&str; 2] = [
    "subset_router_guard_",
    "envoy_dynamicmodulescustom_subset_router_guard_",
];

/// The counters a guard's fleet breach reads: what [`crate::guard::breach`] looks at.
pub fn counters(spec: &GuardSpec) -> Vec<Counter> {
    let mut out = vec![Counter::Requests, Counter::Errors];
    if spec.slow.is_some() {
        out.push(Counter::Slow);
    }
    if spec.baseline.is_some() {
        out.push(Counter::BaselineRequests);
        out.push(Counter::BaselineErrors);
    }
    out
}

/// A guard's `fleet`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSpec {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    /// The selector as validated matchers, rendered back canonically: nothing but label
    /// matchers can reach the query.
    pub matchers: Vec<Matcher>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

/// One PromQL label matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    const fn text(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// Labels the query sets itself; a selector may not name them.
pub const RESERVED_LABELS: [&str; 4] = ["__name__", "subset", "exported_instance", "counter"];

/// Reads `selector` as PromQL label matchers without braces: `label op "value"`, separated by
/// commas, `op` one of `=`, `!=`, `=~`, `!~`, values in double quotes (PromQL escapes). An
/// empty selector picks every scraped proxy. Anything else is refused with the reason.
pub fn parse_selector(selector: &str) -> Result<Vec<Matcher>, String> {
    let mut p = Parser {
        s: selector.as_bytes(),
        at: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_space();
        if p.done() {
            return Ok(out);
        }
        let label = p.label()?;
        if RESERVED_LABELS.contains(&label.as_str()) {
            return Err(format!(
                "label {label:?} is set by the query itself and cannot be matched here"
            ));
        }
        p.skip_space();
        let op = p.op()?;
        p.skip_space();
        let value = p.quoted()?;
        if matches!(op, MatchOp::Regex | MatchOp::NotRegex) {
            regex_lite::Regex::new(&format!("^(?:{value})$"))
                .and_then(|_| regex_lite::Regex::new(&value))
                .map_err(|_| format!("the regex of label {label:?} is not a valid pattern"))?;
        }
        out.push(Matcher { label, op, value });
        p.skip_space();
        if p.done() {
            return Ok(out);
        }
        p.expect(b',')?;
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn unexpected(&self, wanted: &str) -> String {
        match self.peek() {
            Some(b) if b.is_ascii_graphic() => {
                format!(
                    "expected {wanted} at byte {}, found '{}'",
                    self.at, b as char
                )
            }
            Some(b) => format!(
                "expected {wanted} at byte {}, found byte 0x{b:02x}",
                self.at
            ),
            None => format!("expected {wanted} at the end"),
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{}' between matchers", b as char)))
        }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`
    fn label(&mut self) -> Result<String, String> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.at += 1;
        }
        let label = self.s.get(start..self.at).unwrap_or_default();
        match label.first() {
            Some(b) if !b.is_ascii_digit() => Ok(String::from_utf8_lossy(label).into_owned()),
            _ => {
                self.at = start;
                Err(self.unexpected("a label name ([a-zA-Z_][a-zA-Z0-9_]*)"))
            }
        }
    }

    fn op(&mut self) -> Result<MatchOp, String> {
        let two = self.s.get(self.at..self.at + 2).unwrap_or_default();
        let (op, len) = match two {
            b"=~" => (MatchOp::Regex, 2),
            b"!=" => (MatchOp::NotEqual, 2),
            b"!~" => (MatchOp::NotRegex, 2),
            [b'=', ..] => (MatchOp::Equal, 1),
            _ => return Err(self.unexpected("one of =, !=, =~, !~")),
        };
        self.at += len;
        Ok(op)
    }

    /// A double-quoted PromQL string, unescaped.
    fn quoted(&mut self) -> Result<String, String> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a double-quoted value"));
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err("a quoted value is not closed".to_owned());
            };
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err("a quoted value ends in a lone backslash".to_owned());
                    };
                    self.at += 1;
                    out.push(match e {
                        b'\\' => b'\\',
                        b'"' => b'"',
                        b'n' => b'\n',
                        b't' => b'\t',
                        _ => {
                            return Err(format!(
                                "unsupported escape '\\{}' in a quoted value (use \\\\, \\\", \\n or \\t)",
                                e as char
                            ))
                        }
                    });
                }
                b'\n' | b'\r' => return Err("a quoted value holds a line break".to_owned()),
                b => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| "a quoted value is not UTF-8".to_owned())
    }
}

/// A PromQL double-quoted string literal.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The PromQL of one round: the fleet's `increase()` of each counter the guard reads, over the
/// last `range_s` seconds, summed by counter (see the module notes).
pub fn query(spec: &GuardSpec, fleet: &FleetSpec, instance: Option<&str>, range_s: u64) -> String {
    let mut labels = format!(
        "subset={},exported_instance={}",
        quote(&spec.subset),
        quote(instance.unwrap_or(""))
    );
    for m in &fleet.matchers {
        labels.push(',');
        labels.push_str(&m.label);
        labels.push_str(m.op.text());
        labels.push_str(&quote(&m.value));
    }
    let mut terms = Vec::new();
    for counter in counters(spec) {
        for family in FAMILY_PREFIXES {
            terms.push(format!(
                "label_replace(increase({family}{}{{{labels}}}[{range_s}s]),\"counter\",\"{}\",\"__name__\",\".*\")",
                counter.name(),
                counter.name()
            ));
        }
    }
    format!("sum by (counter) ({})", terms.join(" or "))
}

/// The request path (with its query string) of one round.
pub fn request_path(fleet: &FleetSpec, promql: &str) -> String {
    let sep = if fleet.path.contains('?') { '&' } else { '?' };
    format!("{}{sep}query={}", fleet.path, percent_encode(promql))
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0xF] {
                out.push(HEX.get(usize::from(nibble)).map_or('0', |&h| char::from(h)));
            }
        }
    }
    out
}

/// Why a round gave no decision (each counts in `fleet_query_failed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetFailure {
    /// No answer: the cluster is unknown or unreachable, the call could not be sent, or it
    /// timed out.
    Unreachable(String),
    /// An HTTP status other than 200.
    Status(u64),
    /// The body is not a Prometheus instant-vector answer of the expected shape.
    Malformed(String),
    /// The answer holds no sample for a counter the guard reads (no proxy scraped yet).
    Empty(&'static str),
    /// A value that is not a finite, non-negative number.
    BadValue { counter: String, value: String },
    /// Counts that cannot be true together (errors > requests).
    Inconsistent(String),
}

impl core::fmt::Display for FleetFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FleetFailure::Unreachable(why) => write!(f, "no answer ({why})"),
            // Envoy answers 503 itself when the cluster has no healthy host (Prometheus down).
            FleetFailure::Status(503) => write!(
                f,
                "HTTP status 503 (Prometheus unreachable through the cluster, or answering 503)"
            ),
            FleetFailure::Status(s) => write!(f, "HTTP status {s}"),
            FleetFailure::Malformed(why) => write!(f, "not a Prometheus vector answer: {why}"),
            FleetFailure::Empty(counter) => write!(f, "no sample for {counter}"),
            FleetFailure::BadValue { counter, value } => {
                write!(f, "{counter} is {value}, not a finite non-negative number")
            }
            FleetFailure::Inconsistent(why) => write!(f, "inconsistent counts: {why}"),
        }
    }
}

/// Largest count accepted from an answer (far above any real window; keeps sums exact).
const MAX_COUNT: f64 = 1e15;

/// Reads a Prometheus `/api/v1/query` answer into the fleet's counts for `spec`.
///
/// Strict: `status` must be `success`, `data.resultType` `vector`, every sample must carry a
/// `counter` label naming one the guard reads, at most once, with a finite non-negative
/// value; every counter the guard reads must be there; errors may not exceed requests (nor
/// slow, nor the baseline's errors its requests). `increase()` extrapolates, so values are
/// rounded to whole requests.
pub fn parse_answer(spec: &GuardSpec, status: u64, body: &[u8]) -> Result<Counts, FleetFailure> {
    if status != 200 {
        return Err(FleetFailure::Status(status));
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|_| FleetFailure::Malformed("the body is not JSON".to_owned()))?;
    let field = |v: &Value, name: &str| v.get(name).cloned();
    if field(&doc, "status").as_ref().and_then(Value::as_str) != Some("success") {
        return Err(FleetFailure::Malformed(
            "status is not \"success\"".to_owned(),
        ));
    }
    let data = field(&doc, "data").ok_or_else(|| FleetFailure::Malformed("no data".to_owned()))?;
    if field(&data, "resultType").as_ref().and_then(Value::as_str) != Some("vector") {
        return Err(FleetFailure::Malformed(
            "data.resultType is not \"vector\"".to_owned(),
        ));
    }
    let Some(Value::Array(samples)) = field(&data, "result") else {
        return Err(FleetFailure::Malformed(
            "data.result is not a list".to_owned(),
        ));
    };
    let wanted = counters(spec);
    let mut seen: Vec<Option<u64>> = vec![None; wanted.len()];
    for sample in &samples {
        let name = sample
            .get("metric")
            .and_then(|m| m.get("counter"))
            .and_then(Value::as_str)
            .ok_or_else(|| FleetFailure::Malformed("a sample has no counter label".to_owned()))?;
        let index = wanted
            .iter()
            .position(|c| c.name() == name)
            .ok_or_else(|| FleetFailure::Malformed(format!("unexpected counter {name:?}")))?;
        let text = match sample.get("value") {
            Some(Value::Array(pair))
                if pair.len() == 2 && pair.first().is_some_and(Value::is_number) =>
            {
                pair.get(1).and_then(Value::as_str)
            }
            _ => None,
        }
        .ok_or_else(|| {
            FleetFailure::Malformed(format!("the value of {name} is not [time, \"number\"]"))
        })?;
        let value = parse_count(text).ok_or_else(|| FleetFailure::BadValue {
            counter: name.to_owned(),
            value: text.chars().take(32).collect(),
        })?;
        match seen.get_mut(index) {
            Some(slot @ None) => *slot = Some(value),
            _ => {
                return Err(FleetFailure::Malformed(format!(
                    "counter {name} appears twice"
                )))
            }
        }
    }
    let mut counts = Counts::default();
    for (counter, value) in wanted.iter().zip(&seen) {
        let value = value.ok_or(FleetFailure::Empty(counter.name()))?;
        counter.set(&mut counts, value);
    }
    for (part, whole, what) in [
        (counts.errors, counts.requests, "errors > requests"),
        (counts.slow, counts.requests, "slow > requests"),
        (
            counts.baseline_errors,
            counts.baseline_requests,
            "baseline errors > baseline requests",
        ),
    ] {
        if part > whole {
            return Err(FleetFailure::Inconsistent(format!(
                "{what} ({part} > {whole})"
            )));
        }
    }
    Ok(counts)
}

/// A sample value as Prometheus prints it (`"12"`, `"12.5"`, `"1e3"`), rounded to a whole
/// count; `None` for NaN, ±Inf, negatives and absurd sizes.
fn parse_count(text: &str) -> Option<u64> {
    let x: f64 = text.trim().parse().ok()?;
    if !x.is_finite() || !(0.0..=MAX_COUNT).contains(&x) {
        return None;
    }
    Some(libm::round(x) as u64)
}

#[cfg(test)]
mod tests;
