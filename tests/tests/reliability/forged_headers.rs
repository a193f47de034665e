//! reliability scenario 1: Forged routing headers

use super::*;

pub(super) const FORGED_N: u64 = 1000;

pub(super) fn forged_headers(cx: &mut Ctx) -> Result<(), String> {
    // clusterHeader (default x-upstream-cluster) and subsetHeader x-subset: the template routes
    // `x-subset: v1|v2|v3` first, then `cluster_header: x-upstream-cluster`. No rule selects
    // v3, color-red or internal-admin.
    let plugin = r#"{
      "subsetHeader": "x-subset",
      "responseHeader": "x-routed-subset",
      "rules": [
        {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
         "route": {"subset": "v2"}},
        {"name": "canary", "match": {"pathPrefix": "/"},
         "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}]}}
      ],
      "default": {"subset": "v1"}
    }"#;
    let forged: &[(&str, &str, bool)] = &[
        ("lower case", "x-upstream-cluster: internal-admin\r\n", false),
        ("Mixed-Case", "X-Upstream-Cluster: internal-admin\r\n", false),
        ("UPPER, no space", "X-UPSTREAM-CLUSTER:internal-admin\r\n", false),
        ("tabs/spaces around value", "x-upstream-cluster:\t  internal-admin \t\r\n", false),
        ("odd case, padded", "x-Upstream-CLUSTER:     internal-admin     \r\n", false),
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
        ("both + debug user-agent", "user-agent: debug\r\nx-upstream-cluster: internal-admin\r\nx-subset: v3\r\n", true),
    ];
    let envoy = cx.start("forged-headers", plugin)?;
    let ex = Expect {
        cluster_template: Some("{subset}".into()),
        subset_header: true,
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let before = envoy.stats("subset_router")?;
    let mut conn = Conn::new(envoy.front());
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_variant: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let mut errors = 0u64;
    let mut error_samples = Vec::new();
    let mut debug_sent = 0u64;
    let mut debug_wrong = 0u64;
    for i in 0..FORGED_N {
        let (label, lines, debug) = forged[i as usize % forged.len()];
        let req = format!("GET /app/{i} HTTP/1.1\r\nhost: subset-router.test\r\n{lines}\r\n");
        if debug {
            debug_sent += 1;
        }
        match conn.send(req.as_bytes()) {
            Ok(r) => {
                let by = r.header("x-served-by").unwrap_or("-").to_string();
                *served.entry(by.clone()).or_default() += 1;
                *per_variant
                    .entry(label)
                    .or_default()
                    .entry(by.clone())
                    .or_default() += 1;
                if let Err(e) = ex.check(&r) {
                    errors += 1;
                    if error_samples.len() < 3 {
                        error_samples.push(format!("{label}: {e}"));
                    }
                }
                if debug && by != "v2" {
                    debug_wrong += 1;
                }
            }
            Err(e) => {
                errors += 1;
                if error_samples.len() < 3 {
                    error_samples.push(format!("{label}: {e}"));
                }
            }
        }
    }
    cx.count(FORGED_N, errors);
    let after = envoy.stats("subset_router")?;
    let spoofed = stat(&after, "subset_router.spoofed_header_removed")
        - stat(&before, "subset_router.spoofed_header_removed");
    let upstream = envoy.stats("upstream_rq_total")?;
    // A missing counter counts as reached: the check must not pass on a renamed stat.
    let reached = |c: &str| {
        upstream
            .get(&format!("cluster.{c}.upstream_rq_total"))
            .copied()
            .unwrap_or(u64::MAX / 4)
    };
    let forbidden: u64 = ["internal-admin", "v3", "color-red"]
        .iter()
        .map(|c| reached(c))
        .sum();
    let off_rules: u64 = served
        .iter()
        .filter(|(k, _)| *k != "v1" && *k != "v2")
        .map(|(_, v)| v)
        .sum();

    let obs = served
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(" / ");
    cx.row(
        &format!(
            "1 forged headers: {FORGED_N} requests, {} variants",
            forged.len()
        ),
        "all 200, served by v1/v2 only (rules), upstream saw only the filter's headers",
        &format!(
            "{obs}; invariant errors {errors}{}",
            error_samples
                .first()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ),
        errors == 0 && off_rules == 0,
    );
    cx.row(
        "1 forged: clusters no rule selects",
        "internal-admin + v3 + color-red upstream_rq_total = 0",
        &format!(
            "internal-admin {}, v3 {}, color-red {}",
            reached("internal-admin"),
            reached("v3"),
            reached("color-red")
        ),
        forbidden == 0,
    );
    cx.row(
        "1 forged: debug rule still decides",
        &format!("{debug_sent} debug requests -> v2"),
        &format!("{} elsewhere", debug_wrong),
        debug_wrong == 0,
    );
    cx.row(
        "1 forged: spoofed_header_removed",
        &format!("+{FORGED_N}"),
        &format!("+{spoofed}"),
        spoofed == FORGED_N,
    );
    let dec = decisions(&after) - decisions(&before);
    cx.row(
        "1 forged: decision counters",
        &format!("+{FORGED_N}"),
        &format!("+{dec}"),
        dec == FORGED_N,
    );
    for (label, m) in &per_variant {
        println!("      {label}: {m:?}");
    }
    cx.figure(
        "forged requests (reached internal-admin/v3/color-red)",
        format!("{FORGED_N} ({forbidden})"),
    );
    Ok(())
}
