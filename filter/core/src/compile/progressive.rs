//! Validation of the progressive-delivery fields: `route.ramp` and the top-level `guards`, and
//! wiring the guards into the compiled splits.

use std::collections::HashMap;

use super::{is_name, Compiler, MAX_NAME_LEN};
use crate::config::{
    FleetConfig, GuardConfig, PluginConfig, RampConfig, SplitEntryConfig, DEFAULT_FLEET_PATH,
    DEFAULT_MIN_MARGIN_PERCENT,
};
use crate::error::quoted;
use crate::fleet::FleetSpec;
use crate::guard::{percent, GuardSpec, SlowTrigger};
use crate::ramp::{percent_to_ppm, start_ppm, Ramp};
use crate::router::{Observer, Role, Route, Split};
use crate::time::parse_rfc3339;

/// Longest ramp: one year.
pub const MAX_RAMP_SECONDS: i64 = 31_536_000;
/// Longest guard window: one hour.
pub const MAX_WINDOW_SECONDS: i64 = 3600;
/// Longest fleet interval: five minutes.
pub const MAX_FLEET_INTERVAL_SECONDS: i64 = 300;
/// Longest fleet query timeout: one minute.
pub const MAX_FLEET_TIMEOUT_MS: i64 = 60_000;

// Out of line like every step of the compiler: see `Compiler`.
impl Compiler {
    /// A split's ramp. `split`: the split's entries and weights when the split itself is valid
    /// (the checks against the split need them).
    #[inline(never)]
    pub(super) fn ramp(
        &mut self,
        path: &str,
        r: &RampConfig,
        split: Option<(&[SplitEntryConfig], &[u32])>,
    ) -> Option<Ramp> {
        let errors_before = self.errors.len();
        if !(0.0..=100.0).contains(&r.to_percent) {
            self.error(
                format!("{path}.toPercent"),
                format!("{} is not between 0 and 100", number(r.to_percent)),
            );
        }
        let start = parse_rfc3339(&r.start)
            .map_err(|reason| {
                self.error(
                    format!("{path}.start"),
                    format!(
                        "{} is not an RFC 3339 time such as 2026-12-01T10:00:00Z: it {reason}",
                        quoted(&r.start)
                    ),
                )
            })
            .ok();
        if !(1..=MAX_RAMP_SECONDS).contains(&r.duration_seconds) {
            self.error(
                format!("{path}.durationSeconds"),
                format!(
                    "{} is not between 1 and {MAX_RAMP_SECONDS} (one year)",
                    r.duration_seconds
                ),
            );
        }
        if r.steps < 0 {
            self.error(
                format!("{path}.steps"),
                format!("{} is negative; 0 means continuous", r.steps),
            );
        }
        let (entries, weights) = split?;
        let Some(target) = entries.iter().position(|e| e.subset == r.subset) else {
            let names: Vec<&str> = entries.iter().map(|e| e.subset.as_str()).collect();
            self.error(
                format!("{path}.subset"),
                format!(
                    "{} is not in this split ({})",
                    quoted(&r.subset),
                    names.join(", ")
                ),
            );
            return None;
        };
        let to_ppm = percent_to_ppm(r.to_percent);
        let weight = weights.get(target).map_or(0, |&w| u64::from(w));
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let from_ppm = start_ppm(weight, total);
        if self.errors.len() == errors_before && to_ppm < from_ppm {
            self.error(
                format!("{path}.toPercent"),
                format!(
                    "{} is below {}'s configured share ({}); a ramp only grows (a ramp down is a new configuration)",
                    number(r.to_percent),
                    r.subset,
                    percent(u64::from(from_ppm))
                ),
            );
        }
        if self.errors.len() != errors_before {
            return None;
        }
        let index = self.ramps;
        self.ramps += 1;
        Some(Ramp::new(
            index,
            target,
            weights,
            to_ppm,
            start?,
            r.duration_seconds.saturating_mul(1000),
            u64::try_from(r.steps).unwrap_or(0),
        ))
    }

    /// The top-level `guards`.
    #[inline(never)]
    pub(super) fn guards(&mut self, config: &PluginConfig) -> Vec<GuardSpec> {
        let in_splits: Vec<&str> = config
            .rules
            .iter()
            .map(|r| &r.route)
            .chain(std::iter::once(&config.default))
            .filter_map(|r| r.split.as_ref())
            .flatten()
            .map(|e| e.subset.as_str())
            .collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(config.guards.len());
        for (i, g) in config.guards.iter().enumerate() {
            let path = format!("guards[{i}]");
            let errors_before = self.errors.len();
            if !is_name(&g.subset, true) {
                self.error(
                    format!("{path}.subset"),
                    format!(
                        "{} must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9._-]",
                        quoted(&g.subset)
                    ),
                );
            } else if !in_splits.contains(&g.subset.as_str()) {
                self.error(
                    format!("{path}.subset"),
                    format!(
                        "{} is not in any split; a guard takes its subset out of splits",
                        quoted(&g.subset)
                    ),
                );
            } else if let Some(first) = seen.insert(g.subset.as_str(), i) {
                self.error(
                    format!("{path}.subset"),
                    format!(
                        "{} already has a guard (guards[{first}]); one guard per subset",
                        quoted(&g.subset)
                    ),
                );
            }
            self.guard_numbers(&path, g);
            self.guard_baseline(&path, g, &in_splits);
            let fleet = g
                .fleet
                .as_ref()
                .and_then(|f| self.fleet(&format!("{path}.fleet"), f));
            if self.errors.len() == errors_before {
                out.push(GuardSpec { fleet, ..spec(g) });
            }
        }
        out
    }

    #[inline(never)]
    fn guard_numbers(&mut self, path: &str, g: &GuardConfig) {
        self.percent_above_zero(&format!("{path}.maxErrorPercent"), g.max_error_percent);
        for (field, value) in [
            ("minRequests", g.min_requests),
            ("cooldownSeconds", g.cooldown_seconds),
            ("maxTrips", g.max_trips),
        ] {
            if value < 1 {
                self.error(
                    format!("{path}.{field}"),
                    format!("{value} must be at least 1"),
                );
            }
        }
        if !(1..=MAX_WINDOW_SECONDS).contains(&g.window_seconds) {
            self.error(
                format!("{path}.windowSeconds"),
                format!(
                    "{} is not between 1 and {MAX_WINDOW_SECONDS}",
                    g.window_seconds
                ),
            );
        }
        match (g.slow_ms, g.max_slow_percent) {
            (Some(ms), Some(share)) => {
                if ms < 1 {
                    self.error(format!("{path}.slowMs"), format!("{ms} must be at least 1"));
                }
                self.percent_above_zero(&format!("{path}.maxSlowPercent"), share);
            }
            (Some(_), None) => self.error(
                format!("{path}.slowMs"),
                "needs maxSlowPercent: the two set the latency trigger together",
            ),
            (None, Some(_)) => self.error(
                format!("{path}.maxSlowPercent"),
                "needs slowMs: the two set the latency trigger together",
            ),
            (None, None) => {}
        }
    }

    #[inline(never)]
    fn guard_baseline(&mut self, path: &str, g: &GuardConfig, in_splits: &[&str]) {
        match &g.baseline {
            Some(b) if *b == g.subset => self.error(
                format!("{path}.baseline"),
                format!(
                    "{} is the guarded subset itself; the baseline is another subset to compare with",
                    quoted(b)
                ),
            ),
            Some(b) if !is_name(b, true) => self.error(
                format!("{path}.baseline"),
                format!(
                    "{} must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9._-]",
                    quoted(b)
                ),
            ),
            Some(b) if !in_splits.contains(&b.as_str()) => self.error(
                format!("{path}.baseline"),
                format!(
                    "{} is not in any split; only requests a split sends to it are observed",
                    quoted(b)
                ),
            ),
            Some(_) => {}
            None if g.min_margin_percent.is_some() => self.error(
                format!("{path}.minMarginPercent"),
                "only applies with a baseline",
            ),
            None => {}
        }
        if let Some(margin) = g.min_margin_percent {
            if !(0.0..=100.0).contains(&margin) {
                self.error(
                    format!("{path}.minMarginPercent"),
                    format!("{} is not between 0 and 100", number(margin)),
                );
            }
        }
    }

    /// `guards[i].fleet`: where the fleet's totals are read, and how often.
    #[inline(never)]
    fn fleet(&mut self, path: &str, f: &FleetConfig) -> Option<FleetSpec> {
        let errors_before = self.errors.len();
        let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        if !printable(&f.cluster) {
            self.error(
                format!("{path}.cluster"),
                "must name an Envoy cluster: printable characters, no spaces",
            );
        }
        if let Some(a) = &f.authority {
            if !printable(a) {
                self.error(
                    format!("{path}.authority"),
                    "must be a host[:port]: printable characters, no spaces",
                );
            }
        }
        let query_path = f.path.as_deref().unwrap_or(DEFAULT_FLEET_PATH);
        if !query_path.starts_with('/') || !printable(query_path) || query_path.contains('#') {
            self.error(
                format!("{path}.path"),
                "must be an absolute path such as /api/v1/query (printable, no spaces, no #)",
            );
        }
        let matchers = match crate::fleet::parse_selector(&f.selector) {
            Ok(m) => Some(m),
            Err(why) => {
                self.error(
                    format!("{path}.selector"),
                    format!("is not a list of PromQL label matchers: {why}"),
                );
                None
            }
        };
        if !(1..=MAX_FLEET_INTERVAL_SECONDS).contains(&f.interval_seconds) {
            self.error(
                format!("{path}.intervalSeconds"),
                format!(
                    "{} is not between 1 and {MAX_FLEET_INTERVAL_SECONDS}",
                    f.interval_seconds
                ),
            );
        }
        if !(1..=MAX_FLEET_TIMEOUT_MS).contains(&f.timeout_ms) {
            self.error(
                format!("{path}.timeoutMs"),
                format!(
                    "{} is not between 1 and {MAX_FLEET_TIMEOUT_MS}",
                    f.timeout_ms
                ),
            );
        }
        if self.errors.len() != errors_before {
            return None;
        }
        Some(FleetSpec {
            cluster: f.cluster.clone(),
            authority: f.authority.clone().unwrap_or_else(|| f.cluster.clone()),
            path: query_path.to_owned(),
            matchers: matchers?,
            interval_ms: u64::try_from(f.interval_seconds)
                .unwrap_or(1)
                .saturating_mul(1000),
            timeout_ms: u64::try_from(f.timeout_ms).unwrap_or(1),
        })
    }

    #[inline(never)]
    fn percent_above_zero(&mut self, path: &str, value: f64) {
        if !(value > 0.0 && value <= 100.0) {
            self.error(
                path,
                format!(
                    "{} is out of range: it must be more than 0 and at most 100",
                    number(value)
                ),
            );
        }
    }
}

/// A number as the operator wrote it (`150`, `33.3`), through serde_json's formatter, which
/// the reader links anyway, rather than `core`'s float formatting (kilobytes of `.wasm`).
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        (x as i64).to_string()
    } else {
        serde_json::Number::from_f64(x).map_or_else(|| "NaN".to_owned(), |n| n.to_string())
    }
}

/// A validated guard.
fn spec(g: &GuardConfig) -> GuardSpec {
    let positive = |v: i64| u64::try_from(v).unwrap_or(1).max(1);
    GuardSpec {
        subset: g.subset.clone(),
        baseline: g.baseline.clone(),
        // A threshold below one part per million still means "any error".
        max_error_ppm: percent_to_ppm(g.max_error_percent).max(1),
        min_requests: positive(g.min_requests),
        window_s: positive(g.window_seconds),
        cooldown_ms: positive(g.cooldown_seconds).saturating_mul(1000),
        max_trips: u32::try_from(g.max_trips).unwrap_or(u32::MAX).max(1),
        min_margin_ppm: percent_to_ppm(g.min_margin_percent.unwrap_or(DEFAULT_MIN_MARGIN_PERCENT)),
        fleet: None,
        slow: match (g.slow_ms, g.max_slow_percent) {
            (Some(ms), Some(share)) => Some(SlowTrigger {
                slow_ms: positive(ms),
                max_slow_ppm: percent_to_ppm(share).max(1),
            }),
            _ => None,
        },
    }
}

/// Marks every split's guarded subsets and every observed target; returns the observer table
/// that [`crate::router::Target::observe`] indexes (one entry per subset some guard watches).
#[inline(never)]
pub(super) fn attach_guards<'a>(
    routes: impl Iterator<Item = &'a mut Route>,
    guards: &[GuardSpec],
) -> Vec<Vec<Observer>> {
    fn watch<'g>(table: &mut Vec<(&'g str, Vec<Observer>)>, subset: &'g str, observer: Observer) {
        match table.iter_mut().find(|(s, _)| *s == subset) {
            Some((_, list)) => list.push(observer),
            None => table.push((subset, vec![observer])),
        }
    }
    let mut table: Vec<(&str, Vec<Observer>)> = Vec::new();
    for (guard, spec) in guards.iter().enumerate() {
        watch(
            &mut table,
            &spec.subset,
            Observer {
                guard,
                role: Role::Guarded,
            },
        );
        if let Some(b) = &spec.baseline {
            watch(
                &mut table,
                b,
                Observer {
                    guard,
                    role: Role::Baseline,
                },
            );
        }
    }
    for route in routes {
        let Route::Split(Split {
            targets, guarded, ..
        }) = route
        else {
            continue;
        };
        for (i, target) in targets.iter_mut().enumerate() {
            target.observe = table.iter().position(|(s, _)| *s == target.subset);
            guarded.extend(
                guards
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| g.subset == target.subset)
                    .map(|(g, _)| (i, g)),
            );
        }
    }
    table.into_iter().map(|(_, list)| list).collect()
}
