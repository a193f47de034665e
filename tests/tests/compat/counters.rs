//! compat cell `stats`: every counter of the main configuration equals the requests sent, in
//! admin `/stats` and as the labelled family of `/stats/prometheus`.

use super::*;

/// `expected` (everything the earlier cells sent) against admin `/stats` and
/// `/stats/prometheus`.
pub(super) fn counters(
    cx: &mut Ctx,
    envoy: &Envoy,
    expected: &ExpectedStats,
) -> Result<(), String> {
    // ---- stats ----
    cx.cell = "stats";
    let printed = envoy.raw_stats()?;
    match compare_stats(&printed, &expected.0) {
        Ok(prefix) => cx.check(
            "admin /stats = requests sent",
            &expected.describe(),
            &format!("equal (as {prefix}subset_router.*)"),
            true,
        ),
        Err(e) => cx.check(
            "admin /stats = requests sent",
            &expected.describe(),
            &format!("MISMATCH: {e}"),
            false,
        ),
    }
    let want_prom: BTreeMap<(String, String), u64> = expected
        .0
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("subset_router.rule.")?;
            let (rule, subset) = rest.split_once(".subset.")?;
            Some(((rule.to_string(), subset.to_string()), *v))
        })
        .collect();
    let (names, got_prom) = prometheus_decisions(envoy)?;
    let prom_diffs: Vec<String> = want_prom
        .keys()
        .chain(got_prom.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|k| {
            let (w, g) = (
                want_prom.get(k).copied().unwrap_or(0),
                got_prom.get(k).copied().unwrap_or(0),
            );
            (w != g).then(|| format!("{}/{}: {g}, expected {w}", k.0, k.1))
        })
        .collect();
    cx.fact(
        "prometheus",
        if names.is_empty() {
            "no labelled family".to_string()
        } else {
            names
                .iter()
                .map(|n| format!("`{n}{{rule,subset}}`"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    cx.check(
        "/stats/prometheus labelled family = requests sent",
        "one family labelled rule, subset; every series = the requests sent",
        &if prom_diffs.is_empty() && !names.is_empty() {
            format!(
                "{} series equal (family {})",
                got_prom.len(),
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        } else {
            format!("{names:?}: {}", prom_diffs.join("; "))
        },
        prom_diffs.is_empty() && !names.is_empty(),
    );
    Ok(())
}

/// `(rule, subset) -> value` of the labelled decision family.
type PromSeries = BTreeMap<(String, String), u64>;

/// The `rule`/`subset`-labelled decision family in `/stats/prometheus`: its metric name(s) and
/// `(rule, subset) -> value`.
fn prometheus_decisions(envoy: &Envoy) -> Result<(BTreeSet<String>, PromSeries), String> {
    let mut admin = Client::new(envoy.admin());
    let r = admin.get("/stats/prometheus", &[])?;
    if r.status != 200 {
        return Err(format!("/stats/prometheus answered {}", r.status));
    }
    let mut names = BTreeSet::new();
    let mut values = BTreeMap::new();
    for line in r.body_str().lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        if !name.ends_with("subset_router_rule_subset") {
            continue;
        }
        let label = |l: &str| {
            labels
                .trim_end_matches('}')
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{l}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        if let (Some(rule), Some(subset), Ok(v)) =
            (label("rule"), label("subset"), value.trim().parse::<u64>())
        {
            names.insert(name.to_string());
            *values.entry((rule, subset)).or_default() += v;
        }
    }
    Ok((names, values))
}
