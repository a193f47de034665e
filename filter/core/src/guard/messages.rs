//! What the guard says in Envoy's log: the warning on each trip and the info line on close.
//! Integer arithmetic only: float formatting would add kilobytes to the `.wasm`.

use super::{Cause, GuardSpec, Trip};

/// `12.5%` from a ppm value (trailing zeros dropped).
pub fn percent(ppm: u64) -> String {
    let whole = ppm / 10_000;
    let frac = ppm % 10_000;
    if frac == 0 {
        format!("{whole}%")
    } else {
        let digits = format!("{frac:04}");
        format!("{whole}.{}%", digits.trim_end_matches('0'))
    }
}

/// `part/whole` as a percentage with one decimal, rounded (integers only: no float formatting
/// code in the `.wasm`).
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".to_owned();
    }
    // u64, not u128: 128-bit division and formatting would add kilobytes to the `.wasm`.
    let permille = part.saturating_mul(1000).saturating_add(whole / 2) / whole;
    format!("{}.{}%", permille / 10, permille % 10)
}

/// `90s`, `2m`, `1h30m`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

impl Trip {
    /// The warning logged by the worker that tripped the guard (docs/progressive-delivery.md: the subset, the
    /// errors/requests in the window, the share, the threshold, how long it stays open).
    pub fn message(&self, spec: &GuardSpec) -> String {
        let w = &self.window;
        let what = match (self.cause, spec.slow) {
            (Cause::Slow, Some(slow)) => format!(
                "{}/{} requests slower than {}ms in the last {}s ({} >= {})",
                w.slow,
                w.requests,
                slow.slow_ms,
                self.span_s,
                share(w.slow, w.requests),
                percent(u64::from(slow.max_slow_ppm))
            ),
            _ => {
                let baseline = match &spec.baseline {
                    Some(b) => format!(
                        "; baseline {b}: {}/{} ({}), margin {}",
                        w.baseline_errors,
                        w.baseline_requests,
                        share(w.baseline_errors, w.baseline_requests),
                        percent(u64::from(spec.min_margin_ppm))
                    ),
                    None => String::new(),
                };
                format!(
                    "{}/{} requests failed in the last {}s ({} >= {}{baseline})",
                    w.errors,
                    w.requests,
                    self.span_s,
                    share(w.errors, w.requests),
                    percent(u64::from(spec.max_error_ppm))
                )
            }
        };
        let how_long = match self.open_ms {
            Some(ms) => format!(
                "{} is taken out of every split for {}",
                spec.subset,
                duration(ms)
            ),
            None => format!(
                "latched: {} stays out of every split until a new configuration is applied",
                spec.subset
            ),
        };
        // A fleet trip names the fleet's totals: "fleet: 40/200 requests failed in the last 30s".
        let whose = if self.by_fleet { "fleet: " } else { "" };
        format!(
            "subset-router: guard {} tripped (trip {} of {}): {whose}{what}; {how_long}",
            spec.subset, self.trip, spec.max_trips
        )
    }
}

/// The info line logged by the worker that closed the guard.
pub fn closed_message(spec: &GuardSpec, trip: u32) -> String {
    format!(
        "subset-router: guard {} closed after trip {} of {}: {} receives its configured weight again",
        spec.subset, trip, spec.max_trips, spec.subset
    )
}
