//! `subset-router schedule CONFIG`: each ramp's timeline — the moments its share changes and
//! the split's effective shares then — computed by the filter's own ramp code.

use std::process::ExitCode;

use subset_router_core::guard::duration;
use subset_router_core::live::Snapshot;
use subset_router_core::ramp::{Ramp, RampShare};
use subset_router_core::router::RampView;
use subset_router_core::time::{format_rfc3339, UnixMs};
use subset_router_core::Router;

/// Rows of a continuous ramp (every tenth of its duration); a stepped ramp gets one per step,
/// up to this many.
const CONTINUOUS_ROWS: u64 = 10;
const MAX_STEP_ROWS: u64 = 100;

pub fn run(path: &str, index: Option<usize>) -> ExitCode {
    let (at, router) = match crate::load_one(path, index) {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    let ramps = router.ramps();
    if ramps.is_empty() {
        println!("{at}: no ramps");
        return ExitCode::SUCCESS;
    }
    if at != path {
        println!("configuration: {at}");
    }
    let now = crate::now_ms();
    for (i, view) in ramps.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_ramp(&router, view, now);
    }
    ExitCode::SUCCESS
}

fn print_ramp(router: &Router, view: &RampView<'_>, now: UnixMs) {
    let ramp = view.ramp;
    let how = match ramp.steps {
        0 => "continuous".to_owned(),
        1 => "in 1 step".to_owned(),
        n => format!("in {n} steps"),
    };
    println!(
        "rule {}: {} from {} to {} between {} and {} ({}, {how})",
        view.rule,
        view.subset,
        ppm_percent(ramp.ppm(RampShare::Configured)),
        ppm_percent(ramp.to_ppm),
        format_rfc3339(ramp.start_ms),
        format_rfc3339(ramp.end_ms()),
        duration(ramp.duration_ms.unsigned_abs()),
    );
    let subsets = subsets_of(router, view.rule);
    print!("  {:<26}", "time");
    for subset in &subsets {
        print!(" {subset:>12}");
    }
    println!();
    let row = |label: &str, share: RampShare| {
        print!("  {label:<26}");
        for share in shares(router, view, share) {
            print!(" {share:>12}");
        }
        println!();
    };
    row("before start (configured)", RampShare::Configured);
    for at in moments(ramp) {
        row(&format_rfc3339(at), ramp.share_at(at));
    }
    let state = if now < ramp.start_ms {
        "not started"
    } else if now >= ramp.end_ms() {
        "over"
    } else {
        "under way"
    };
    println!(
        "  now ({}): {state}, {} at {}",
        format_rfc3339(now),
        view.subset,
        ppm_percent(ramp.ppm(ramp.share_at(now)))
    );
}

/// The rows' times: the start, then each step (or each tenth), the end last.
fn moments(ramp: &Ramp) -> Vec<UnixMs> {
    let count = match ramp.steps {
        0 => CONTINUOUS_ROWS,
        n => n,
    };
    let at = |k: u64| match ramp.steps {
        0 => {
            let offset = i128::from(ramp.duration_ms) * i128::from(k) / i128::from(CONTINUOUS_ROWS);
            ramp.start_ms
                .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
        }
        _ => ramp.step_ms(k),
    };
    let stride = count.div_ceil(MAX_STEP_ROWS).max(1);
    let mut out: Vec<UnixMs> = (0..=count).step_by(stride as usize).map(&at).collect();
    if count % stride != 0 {
        out.push(at(count));
    }
    out.dedup();
    out
}

/// The subsets of `rule`'s split, in order.
fn subsets_of(router: &Router, rule: &str) -> Vec<String> {
    router
        .summaries()
        .into_iter()
        .find(|s| s.rule == rule)
        .map(|s| s.targets.into_iter().map(|(t, _)| t.subset).collect())
        .unwrap_or_default()
}

/// Each subset's effective share of `view`'s split when its ramp is at `share`.
fn shares(router: &Router, view: &RampView<'_>, share: RampShare) -> Vec<String> {
    let mut ramps = vec![RampShare::Configured; view.ramp.index + 1];
    if let Some(slot) = ramps.get_mut(view.ramp.index) {
        *slot = share;
    }
    let conditions = Snapshot {
        ramps,
        open: Vec::new(),
    };
    let Some(summary) = router
        .summaries_with(&conditions)
        .into_iter()
        .find(|s| s.rule == view.rule)
    else {
        return Vec::new();
    };
    let total: u64 = summary.targets.iter().filter_map(|(_, w)| *w).sum();
    summary
        .targets
        .iter()
        .map(|(_, w)| {
            let w = w.unwrap_or(0);
            let ppm = if total == 0 {
                0
            } else {
                (u128::from(w) * 1_000_000 + u128::from(total) / 2) / u128::from(total)
            };
            ppm_percent(u32::try_from(ppm).unwrap_or(0))
        })
        .collect()
}

/// `12.3456%`: a share in ppm at full resolution.
fn ppm_percent(ppm: u32) -> String {
    format!("{}.{:04}%", ppm / 10_000, ppm % 10_000)
}
