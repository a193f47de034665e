//! compat cells `debug`, `split` and `sticky`: the main configuration's rules, request by
//! request, on one connection.

use super::*;

/// Requests of the 90/10 split: 4.5 σ is ±60 around 200 on v2.
pub(super) const N_SPLIT: u64 = 2000;
/// Sticky ids and requests per id.
pub(super) const STICKY_IDS: u64 = 400;
pub(super) const STICKY_REPEAT: u64 = 3;

/// Debug routing: header, cookie, query, and requests that almost match (exact counts).
pub(super) fn debug_routing(
    cx: &mut Ctx,
    c: &mut Client,
    ex: &Expect,
    expected: &mut ExpectedStats,
) {
    let sent = DebugRouting::send(
        c,
        ex,
        &DebugRequests {
            user_agent: 100,
            other_user_agents: 150,
            cookie: 100,
            other_cookies: 100,
            query: 100,
            other_queries: 100,
        },
    );
    for (check, t, subset) in sent.checks("blue") {
        cx.all_to(check, t, subset);
    }
    sent.add_expected(expected);
}

/// A v1 90 / v2 10 split, N = 2,000, 4.5 σ.
pub(super) fn split_90_10(cx: &mut Ctx, c: &mut Client, ex: &Expect, expected: &mut ExpectedStats) {
    let split = send(c, N_SPLIT, ex, |i| (format!("/canary/{}", i % 7), vec![]));
    cx.split("v1 90 / v2 10", &split, &[("v1", 90), ("v2", 10)]);
    expected.rule_tally("canary", &split);
}

/// Sticky determinism: every id always on one subset, the one the filter's own core computes
/// (rendezvous hashing, the same on every Envoy); ids on v2 within 4.5 σ.
pub(super) fn sticky(
    cx: &mut Ctx,
    c: &mut Client,
    ex: &Expect,
    expected: &mut ExpectedStats,
) -> Result<(), String> {
    let router = subset_router_core::load(PLUGIN_MAIN.as_bytes())
        .map_err(|e| format!("the core refuses the main config: {e:?}"))?;
    let mut rng = subset_router_core::WyRand::new(1);
    let sent = send_sticky_ids(c, ex, "/sticky/cart", STICKY_IDS, STICKY_REPEAT);
    let (seen, sticky) = (sent.subsets, sent.all);
    let mut off_core = 0u64;
    let mut off_core_sample = None;
    for (id, subsets) in &seen {
        let uid = sticky_user(*id);
        let req = OwnedRequest::new()
            .header(":path", "/sticky/cart")
            .header(":method", "GET")
            .header("x-user-id", &uid);
        let want = router
            .decide(&req, &mut rng)
            .filter(|d| d.rule == "sticky")
            .map(|d| d.target.subset.clone());
        if subsets.len() != 1 || want.as_ref() != subsets.iter().next() {
            off_core += 1;
            off_core_sample.get_or_insert(format!("{uid}: Envoy {subsets:?}, core {want:?}"));
        }
    }
    let one_subset = seen.values().filter(|s| s.len() == 1).count() as u64;
    let on_v2 = seen
        .values()
        .filter(|s| s.len() == 1 && s.contains("v2"))
        .count() as u64;
    let (lo, hi) = binomial_bounds(STICKY_IDS, 0.10);
    cx.check(
        "every id on one subset, the core's",
        &format!(
            "{STICKY_IDS} ids x{STICKY_REPEAT}: each on 1 subset = the core's rendezvous choice"
        ),
        &format!(
            "{one_subset} ids on one subset, {off_core} differ from the core{}; {} requests{}",
            off_core_sample
                .map(|s| format!(" (first: {s})"))
                .unwrap_or_default(),
            sticky.total,
            sticky
                .error_samples
                .first()
                .map(|e| format!(" -- first error: {e}"))
                .unwrap_or_default()
        ),
        sticky.errors == 0 && one_subset == STICKY_IDS && off_core == 0,
    );
    cx.check(
        "ids on v2",
        &format!("10% of {STICKY_IDS} ids [{lo}..{hi}]"),
        &format!("{on_v2} ({:.1}%)", 100.0 * on_v2 as f64 / STICKY_IDS as f64),
        on_v2 >= lo && on_v2 <= hi,
    );
    expected.rule_tally("sticky", &sticky);
    Ok(())
}
