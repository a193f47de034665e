//! fleet scenario 2: v2 fails on every proxy; the quiet ones trip on the fleet's evidence.

use super::*;

/// After the last trip: the quiet proxies' pace (20 requests/s) and how long.
const AFTER_PACE_MS: u64 = 50;
const AFTER: Duration = Duration::from_millis(4500);
/// A trip is decided by whichever VM's tick evaluates the fleet's answer; the proxy's other VMs
/// (its worker's included) read the open guard at their own next tick, within a second
/// (docs/progressive-delivery.md). `tripped` can move before then, so "diverts" counts the
/// requests sent from one tick after the trip was seen, with half a tick of slack for a loaded
/// machine's timers.
const PROPAGATION_S: f64 = 1.5;
/// Seconds from the busy proxy's trip to a quiet one's: Prometheus's scrape (1 s) + a round
/// (intervalSeconds 1) + the tick that evaluates the answer (1 s), and slack for a loaded
/// machine.
const MAX_FLEET_LAG_S: f64 = 6.0;

pub(super) fn fleet_trip(cx: &mut Ctx) -> Result<(), String> {
    cx.with_fleet(run)
}

fn run(cx: &mut Ctx, fleet: &mut Fleet) -> Result<(), String> {
    fleet.ensure_prometheus()?;
    if fleet.dirty {
        fleet.reset()?;
    }
    let base = fleet.snaps()?;
    let load = Load::start(&fleet.load_spec(), true);
    // Each proxy's trip as /stats shows it (polled every 50 ms), with its counters then.
    let mut trips: Vec<Option<(f64, Snap)>> = vec![None; fleet.proxies.len()];
    wait_until(Duration::from_secs(40), Duration::from_millis(50), || {
        for (i, p) in fleet.proxies.iter().enumerate() {
            if trips[i].is_none() {
                if let Ok(s) = p.snap() {
                    if s.tripped > base[i].tripped {
                        trips[i] = Some((load.now(), s));
                    }
                }
            }
        }
        trips.iter().all(Option::is_some).then_some(())
    });
    // The quiet proxies faster now (open or not, their traffic shows where the split sends).
    for (i, p) in fleet.proxies.iter().enumerate() {
        if p.role != "busy" {
            load.set_pace(i, AFTER_PACE_MS);
        }
    }
    std::thread::sleep(AFTER);
    let evs = load.finish();
    let fin = fleet.snaps()?;
    fleet.expect(&evs);
    fleet.dirty = true;
    let logs: Vec<String> = fleet.proxies.iter().map(|p| p.envoy.logs()).collect();

    cx.errors_row("2 trip: requests", &evs);
    let busy_at = trips[0].map(|(t, _)| t);
    let first_503 = evs
        .iter()
        .filter(|e| e.status == 503)
        .map(|e| e.sent)
        .min_by(f64::total_cmp);
    match (busy_at, &trips[0]) {
        (Some(t), Some((_, s))) => cx.row(
            "2 trip: the busy proxy",
            &format!("trips on its own window (≥ {MIN_REQUESTS} requests, ≥ {MAX_ERROR_PERCENT}% failing)"),
            &format!(
                "tripped {:.2}s after the first 503 with {} requests, {} errors observed \
                 (tripped_by_fleet +{})",
                t - first_503.unwrap_or(0.0),
                s.requests - base[0].requests,
                s.errors - base[0].errors,
                s.by_fleet - base[0].by_fleet
            ),
            s.requests - base[0].requests >= MIN_REQUESTS,
        ),
        _ => cx.row(
            "2 trip: the busy proxy",
            "trips within 40 s",
            "did not trip",
            false,
        ),
    }
    let mut lags = Vec::new();
    for (i, p) in fleet.proxies.iter().enumerate().skip(1) {
        let role = p.role;
        let Some((at, s)) = trips[i] else {
            cx.row(
                &format!("2 trip: {role} by the fleet"),
                "trips on the fleet's totals within 40 s",
                &format!(
                    "did not trip: tripped +{}, fleet_query_failed +{}, {} queries sent",
                    fin[i].tripped - base[i].tripped,
                    fin[i].failed - base[i].failed,
                    fin[i].queries - base[i].queries
                ),
                false,
            );
            continue;
        };
        let own = s.requests - base[i].requests;
        let lag = busy_at.map(|b| at - b);
        let line = logs[i]
            .lines()
            .find(|l| l.contains("subset-router: guard v2 tripped (trip 1 of 3): fleet: "))
            .map(|l| l.rsplit("] ").next().unwrap_or(l).to_string());
        // "fleet: E/R requests failed in the last Ns": the fleet's numbers.
        let fleet_counts = line.as_deref().and_then(|l| {
            let rest = l.split("fleet: ").nth(1)?;
            let (e, rest) = rest.split_once('/')?;
            let r = rest.split_whitespace().next()?;
            Some((e.parse::<u64>().ok()?, r.parse::<u64>().ok()?))
        });
        let counted =
            fin[i].tripped - base[i].tripped == 1 && fin[i].by_fleet - base[i].by_fleet == 1;
        let fleet_ok = fleet_counts
            .is_some_and(|(e, r)| r >= MIN_REQUESTS && e * 100 >= MAX_ERROR_PERCENT * r);
        cx.row(
            &format!("2 trip: {role} by the fleet"),
            &format!(
                "tripped 1, tripped_by_fleet 1 with < {MIN_REQUESTS} requests of its own; the \
                 warning names the fleet's ≥ {MIN_REQUESTS} requests, ≥ {MAX_ERROR_PERCENT}% \
                 failed; ≤ {MAX_FLEET_LAG_S:.0} s after the busy proxy"
            ),
            &format!(
                "tripped +{}, tripped_by_fleet +{}, {own} requests of its own, {} after the \
                 busy proxy; {}",
                fin[i].tripped - base[i].tripped,
                fin[i].by_fleet - base[i].by_fleet,
                lag.map_or("-".into(), |l| format!("{l:.2}s")),
                line.as_deref()
                    .unwrap_or("no fleet trip warning in its log")
            ),
            counted && own < MIN_REQUESTS && fleet_ok && lag.is_some_and(|l| l <= MAX_FLEET_LAG_S),
        );
        if let Some(l) = lag {
            lags.push(format!("{role} {l:.2}s"));
        }
        // Its traffic from the trip on: split requests avoid v2, testers still reach it.
        let after: Vec<&Ev> = evs
            .iter()
            .filter(|e| e.proxy == i && e.sent > at + PROPAGATION_S)
            .collect();
        let split: Vec<&&Ev> = after.iter().filter(|e| e.kind == Kind::Split).collect();
        let split_v2 = split.iter().filter(|e| e.served == "v2").count();
        let debug: Vec<&&Ev> = after.iter().filter(|e| e.kind == Kind::Debug).collect();
        let debug_v2 = debug
            .iter()
            .filter(|e| e.served == "v2" && e.status == 503)
            .count();
        cx.row(
            &format!("2 trip: {role} diverts"),
            "from one tick after its trip: ≥ 30 split requests, none to v2; every tester's \
             request still reaches v2 (503)",
            &format!(
                "{} split requests, {split_v2} to v2; testers {debug_v2}/{} on v2",
                split.len(),
                debug.len()
            ),
            split.len() >= 30 && split_v2 == 0 && !debug.is_empty() && debug_v2 == debug.len(),
        );
    }
    if !lags.is_empty() {
        cx.figure(
            &format!(
                "seconds from the busy proxy's trip to each quiet one's ({} fleet)",
                cx.composition.name()
            ),
            lags.join(", "),
        );
    }
    cx.counters_row(fleet, "2 trip: counters");
    Ok(())
}
