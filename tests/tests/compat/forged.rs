//! compat cell `forged`: 1,000 forged routing headers on the main configuration.

use super::*;

const FORGED_N: u64 = 1000;

/// Clusters of the Envoy template no rule of [`PLUGIN_MAIN`] selects.
const UNSELECTED: &[&str] = &["v3", "red", "color-red", "color-blue", "internal-admin"];

/// The forged-header check of the reliability suite, on the main configuration: no rule of it
/// selects v3, red, color-red, color-blue or internal-admin.
pub(super) fn forged(
    cx: &mut Ctx,
    envoy: &Envoy,
    expected: &mut ExpectedStats,
) -> Result<(), String> {
    let variants: &[(&str, &str, bool)] = &[
        ("lower case", "x-upstream-cluster: internal-admin\r\n", false),
        ("Mixed-Case", "X-Upstream-Cluster: internal-admin\r\n", false),
        ("UPPER, no space", "X-UPSTREAM-CLUSTER:internal-admin\r\n", false),
        ("tabs/spaces around value", "x-upstream-cluster:\t  internal-admin \t\r\n", false),
        (
            "repeated x3, two spellings",
            "x-upstream-cluster: internal-admin\r\nX-Upstream-Cluster: v3\r\nx-upstream-cluster: color-red\r\n",
            false,
        ),
        ("comma list", "x-upstream-cluster: internal-admin, v3\r\n", false),
        ("other real cluster", "x-upstream-cluster: color-red\r\n", false),
        ("subsetHeader x-subset: v3", "x-subset: v3\r\n", false),
        ("subsetHeader mixed case, repeated", "X-Subset: v3\r\nx-SUBSET:internal-admin\r\n", false),
        ("both headers", "x-subset: v3\r\nX-Upstream-Cluster: internal-admin\r\n", false),
        (
            "both + debug user-agent",
            "user-agent: debug\r\nx-upstream-cluster: internal-admin\r\nx-subset: v3\r\n",
            true,
        ),
    ];
    let ex = expect_main();
    let before = envoy.stats("subset_router")?;
    let mut conn = Conn::new(envoy.front());
    let mut forge = Tally::default();
    let mut debug = Tally::default();
    for i in 0..FORGED_N {
        let (label, lines, is_debug) = variants[i as usize % variants.len()];
        let req = format!("GET /app/{i} HTTP/1.1\r\nhost: subset-router.test\r\n{lines}\r\n");
        let t = if is_debug { &mut debug } else { &mut forge };
        match conn.send(req.as_bytes()) {
            Ok(r) => match ex.check(&r) {
                Ok(s) => t.add(&s),
                Err(e) => t.error(format!("{label}: {e}")),
            },
            Err(e) => t.error(format!("{label}: {e}")),
        }
    }
    let after = envoy.stats("subset_router")?;
    let spoofed = sum_suffix(&after, "subset_router.spoofed_header_removed")
        - sum_suffix(&before, "subset_router.spoofed_header_removed");
    let upstream = envoy.stats("upstream_rq_total")?;
    // A missing counter counts as reached: the check must not pass on a renamed stat.
    let reached = |c: &str| {
        upstream
            .get(&format!("cluster.{c}.upstream_rq_total"))
            .copied()
            .unwrap_or(u64::MAX / 8)
    };
    let forbidden: u64 = UNSELECTED.iter().map(|c| reached(c)).sum();
    let mut all = forge.clone();
    all.merge(&debug);
    let off_rules = all
        .counts
        .iter()
        .filter(|(k, _)| *k != "v1" && *k != "v2")
        .map(|(_, v)| v)
        .sum::<u64>();
    cx.check(
        &format!("{FORGED_N} requests, {} variants", variants.len()),
        "all 200, served by the rules' v1/v2, upstream saw only the filter's headers",
        &format!(
            "{}{}",
            all.describe(&["v1", "v2"]),
            all.error_samples
                .first()
                .map(|e| format!(" -- first error: {e}"))
                .unwrap_or_default()
        ),
        all.errors == 0 && off_rules == 0 && all.total == FORGED_N,
    );
    cx.check(
        "clusters no rule selects",
        &format!("{} upstream_rq_total = 0", UNSELECTED.join(" + ")),
        &UNSELECTED
            .iter()
            .map(|c| format!("{c} {}", reached(c)))
            .collect::<Vec<_>>()
            .join(", "),
        forbidden == 0,
    );
    cx.check(
        "debug rule still decides",
        &format!("{} debug requests -> v2", debug.total),
        &debug.describe(&["v2"]),
        debug.errors == 0 && debug.get("v2") == debug.total,
    );
    cx.check(
        "spoofed_header_removed",
        &format!("+{FORGED_N}"),
        &format!("+{spoofed}"),
        spoofed == FORGED_N,
    );
    expected
        .rule_tally("forge", &forge)
        .rule_tally("debug-ua", &debug)
        .spoofed(spoofed.min(FORGED_N));
    Ok(())
}
