//! fleet scenario 3: Prometheus stopped: requests still served, every round counted as failed.

use super::*;

const SPAN: Duration = Duration::from_secs(5);

pub(super) fn fleet_prometheus_down(cx: &mut Ctx) -> Result<(), String> {
    if cx.composition == Composition::Mixed {
        cx.not_applicable.push((
            "fleet_prometheus_down".into(),
            "each build's own behaviour, checked by the FLEET=wasm and FLEET=native runs".into(),
        ));
        println!("    not applicable to a mixed fleet");
        return Ok(());
    }
    cx.with_fleet(run)
}

fn run(cx: &mut Ctx, fleet: &mut Fleet) -> Result<(), String> {
    // A new configuration: guards closed, and the warning's once-a-minute clock fresh.
    fleet.reset()?;
    let log_from: Vec<usize> = fleet
        .proxies
        .iter()
        .map(|p| p.envoy.logs().lines().count())
        .collect();
    if let Some(mut f) = fleet.fake.take() {
        f.stop();
    }
    fleet.stop_prometheus();
    let base = fleet.snaps()?;
    let load = Load::start(&fleet.load_spec(), false);
    // Rounds begin once the window since the (re)configuration covers 2 s.
    std::thread::sleep(Duration::from_secs(3));
    let (s1, t1) = (fleet.snaps()?, Instant::now());
    std::thread::sleep(SPAN);
    let s2 = fleet.snaps()?;
    let span = t1.elapsed().as_secs_f64();
    let evs = load.finish();
    let fin = fleet.snaps()?;
    fleet.expect(&evs);
    let logs: Vec<String> = fleet.proxies.iter().map(|p| p.envoy.logs()).collect();

    cx.errors_row("3 Prometheus down: requests (all 200)", &evs);
    let failed: Vec<u64> = s2
        .iter()
        .zip(&s1)
        .map(|(b, a)| b.failed - a.failed)
        .collect();
    let rounds = span / INTERVAL_S as f64;
    let (lo, hi) = (rounds.floor() as u64 - 1, rounds.ceil() as u64 + 1);
    let tripped: Vec<u64> = fin
        .iter()
        .zip(&base)
        .map(|(f, b)| f.tripped - b.tripped)
        .collect();
    cx.row(
        "3 Prometheus down: rounds fail, nothing trips",
        &format!(
            "in {span:.1}s: fleet_query_failed +{lo}..{hi} on every proxy (one a round); \
             tripped +0"
        ),
        &format!(
            "failed {}; tripped {}",
            per_proxy(&failed),
            per_proxy(&tripped)
        ),
        failed.iter().all(|f| (lo..=hi).contains(f)) && tripped.iter().all(|t| *t == 0),
    );
    let warned: Vec<usize> = logs
        .iter()
        .zip(&log_from)
        .map(|(l, from)| {
            l.lines()
                .skip(*from)
                .filter(|l| {
                    l.contains(
                        "subset-router: guard v2: fleet query to cluster prometheus failed: ",
                    )
                })
                .count()
        })
        .collect();
    // Who may warn: the Wasm build has a VM per worker and one on the main thread (each ticks
    // and may claim a round, each keeps its own once-a-minute clock); the dynamic module one
    // filter per configuration.
    let warners: Vec<usize> = fleet
        .proxies
        .iter()
        .map(|p| match p.env.build.name() {
            "wasm" => 1 + if p.role == "busy" { 2 } else { 1 },
            _ => 1,
        })
        .collect();
    cx.row(
        "3 Prometheus down: logged",
        "each proxy warns `fleet query to cluster prometheus failed: …` once (the Wasm build: \
         at most once per VM) in the span: at most once a minute",
        &format!(
            "{} line(s)",
            per_proxy(&warned.iter().map(|n| *n as u64).collect::<Vec<_>>())
        ),
        warned
            .iter()
            .zip(&warners)
            .all(|(n, w)| (1..=*w).contains(n)),
    );
    cx.counters_row(fleet, "3 Prometheus down: counters");
    Ok(())
}
