//! fleet scenario 1: a healthy canary: no trip, every answer read, one query per proxy per
//! interval.

use super::*;

/// The measured span.
const SPAN: Duration = Duration::from_secs(8);

pub(super) fn fleet_healthy(cx: &mut Ctx) -> Result<(), String> {
    cx.with_fleet(run)
}

fn run(cx: &mut Ctx, fleet: &mut Fleet) -> Result<(), String> {
    fleet.ensure_prometheus()?;
    if fleet.dirty {
        fleet.reset()?;
    }
    let base = fleet.snaps()?;
    let load = Load::start(&fleet.load_spec(), false);
    // Warm-up: every proxy's rounds go out and are answered with data (Prometheus has two
    // samples of every proxy in the window): `fleet_query_failed` still for 3 s while at least
    // two rounds went out.
    let mut history: Vec<Vec<Snap>> = Vec::new();
    let warm = wait_until(Duration::from_secs(25), Duration::from_secs(1), || {
        history.push(fleet.snaps().ok()?);
        let now = history.last()?;
        let then = history.len().checked_sub(4).and_then(|i| history.get(i))?;
        now.iter()
            .zip(then)
            .all(|(n, t)| n.failed == t.failed && n.queries >= t.queries + 2)
            .then(|| load.now())
    });
    let warm_row = match warm {
        Some(t) => Ok(t),
        None => Err(history
            .last()
            .map(|s| {
                let failed: Vec<u64> = s
                    .iter()
                    .zip(&base)
                    .map(|(n, b)| n.failed - b.failed)
                    .collect();
                let queries: Vec<u64> = s
                    .iter()
                    .zip(&base)
                    .map(|(n, b)| n.queries - b.queries)
                    .collect();
                format!(
                    "not within 25 s: queries sent {}; failed {}",
                    per_proxy(&queries),
                    per_proxy(&failed)
                )
            })
            .unwrap_or_else(|| "stats unreadable".into())),
    };
    // The measured span: no query of this suite's own reaches Prometheus meanwhile.
    let prom = fleet.prometheus.as_ref().ok_or("no prometheus")?;
    let (s1, c1, t1) = (fleet.snaps()?, prom.queries_served()?, Instant::now());
    std::thread::sleep(SPAN);
    let (s2, c2) = (fleet.snaps()?, prom.queries_served()?);
    let span = t1.elapsed().as_secs_f64();
    // What the quiet proxies read: the guard's own query, asked here.
    let router =
        subset_router_core::load(plugin(fleet.reloads).as_bytes()).map_err(|e| format!("{e:?}"))?;
    let spec = router.guards().first().ok_or("no guard")?;
    let fleet_spec = spec.fleet.as_ref().ok_or("no fleet")?;
    let promql = subset_router_core::fleet::query(spec, fleet_spec, router.name(), WINDOW_S);
    let seen = prom.query(&promql)?;
    let decoy_errors = prom.scalar(&format!(
        "sum(increase(subset_router_guard_errors{{subset=\"v2\"}}[{WINDOW_S}s]))"
    ))?;
    let evs = load.finish();
    let fin = fleet.snaps()?;
    fleet.expect(&evs);

    cx.errors_row("1 healthy: requests", &evs);
    match warm_row {
        Ok(t) => println!("    every proxy's rounds answered with data {t:.1}s into the load"),
        Err(e) => cx.row(
            "1 healthy: rounds answered",
            "within 25 s every proxy sends rounds and reads every answer",
            &e,
            false,
        ),
    }
    let queries: Vec<u64> = s2
        .iter()
        .zip(&s1)
        .map(|(b, a)| b.queries - a.queries)
        .collect();
    let failed: Vec<u64> = s2
        .iter()
        .zip(&s1)
        .map(|(b, a)| b.failed - a.failed)
        .collect();
    let rounds = span / INTERVAL_S as f64;
    let (lo, hi) = (rounds.floor() as u64 - 2, rounds.ceil() as u64 + 1);
    cx.row(
        "1 healthy: queries per proxy per interval",
        &format!(
            "in {span:.1}s at intervalSeconds {INTERVAL_S}: {lo}..{hi} queries per proxy \
             (one per interval, whatever the workers; cluster.prometheus.upstream_rq_total)"
        ),
        &per_proxy(&queries),
        queries.iter().all(|q| (lo..=hi).contains(q)),
    );
    cx.figure(
        &format!(
            "queries per proxy per interval ({} fleet)",
            cx.composition.name()
        ),
        queries
            .iter()
            .zip(ROLES)
            .map(|(q, r)| format!("{r} {:.2}", *q as f64 / rounds))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let sum: u64 = queries.iter().sum();
    let served = c2 - c1;
    cx.row(
        "1 healthy: Prometheus's own count",
        "prometheus_http_requests_total{handler=\"/api/v1/query\"} grows by the proxies' \
         queries (± 3 in flight at the ends), nobody else's",
        &format!("+{served}; the proxies sent {sum}"),
        served.abs_diff(sum) <= 3 && served > 0,
    );
    cx.row(
        "1 healthy: every answer read",
        "fleet_query_failed unchanged on every proxy over the span",
        &per_proxy(&failed),
        failed.iter().all(|f| *f == 0),
    );
    let totals: Vec<String> = seen
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["metric"]["counter"].as_str().unwrap_or("?"),
                s["value"][1].as_str().unwrap_or("?")
            )
        })
        .collect();
    let value = |counter: &str| {
        seen.iter()
            .find(|s| s["metric"]["counter"] == counter)
            .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
    };
    let query_ok = value("requests").is_some_and(|r| r > 0.0) && value("errors") == Some(0.0);
    let tripped: Vec<u64> = fin
        .iter()
        .zip(&base)
        .map(|(f, b)| f.tripped - b.tripped)
        .collect();
    cx.row(
        "1 healthy: no trip; the decoys are not counted",
        "tripped +0 on every proxy; the guard's query reads requests > 0, errors 0, while \
         Prometheus holds a decoy at 100% errors under app=\"payments\" and as \
         exported_instance=\"other\"",
        &format!(
            "tripped {}; the guard's query reads {}; all subset_router_guard_errors{{subset=\"v2\"}} \
             over {WINDOW_S}s: {}",
            per_proxy(&tripped),
            totals.join(", "),
            decoy_errors.map_or("none".into(), |v| format!("{v:.0}"))
        ),
        tripped.iter().all(|t| *t == 0) && query_ok && decoy_errors.is_some_and(|v| v > 1000.0),
    );
    cx.counters_row(fleet, "1 healthy: counters");
    Ok(())
}
