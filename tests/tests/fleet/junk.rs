//! fleet scenario 4: a fake metrics server answers junk: no trip, no crash, every round counted;
//! then a valid breach (the control) trips every proxy by the fleet.

use super::*;
use fake::Answer;

/// Each kind's measured span, after the rounds of the previous kind have ended.
const SPAN: Duration = Duration::from_secs(3);
const SETTLE: Duration = Duration::from_millis(1200);

pub(super) fn fleet_junk(cx: &mut Ctx) -> Result<(), String> {
    if cx.composition == Composition::Mixed {
        cx.not_applicable.push((
            "fleet_junk".into(),
            "each build's own behaviour, checked by the FLEET=wasm and FLEET=native runs".into(),
        ));
        println!("    not applicable to a mixed fleet");
        return Ok(());
    }
    cx.with_fleet(run)
}

/// A kind of answer, or no server at all.
#[derive(Debug, Clone, Copy)]
enum Junk {
    Answer(Answer),
    Refused,
}

impl Junk {
    fn name(self) -> &'static str {
        match self {
            Junk::Answer(a) => a.name(),
            Junk::Refused => "connection refused",
        }
    }
}

fn run(cx: &mut Ctx, fleet: &mut Fleet) -> Result<(), String> {
    fleet.reset()?;
    fleet.stop_prometheus();
    if fleet.fake.is_none() {
        fleet.fake = Some(FakeMetrics::start(fleet.prom_port, Answer::NotJson)?);
    }
    let base = fleet.snaps()?;
    // Every request the fake servers received (a new server after `refused`).
    let mut seen = Vec::new();
    let load = Load::start(&fleet.load_spec(), false);
    // Rounds begin once the window since the re-application covers 2 s.
    std::thread::sleep(Duration::from_millis(2500));
    let kinds = [
        Junk::Answer(Answer::NotJson),
        Junk::Answer(Answer::Status500),
        Junk::Answer(Answer::EmptyVector),
        Junk::Answer(Answer::NaN),
        Junk::Answer(Answer::PlusInf),
        Junk::Answer(Answer::Negative),
        Junk::Answer(Answer::ErrorsAboveRequests),
        Junk::Answer(Answer::Hang),
        Junk::Refused,
    ];
    let mut results = Vec::new();
    for kind in kinds {
        match kind {
            Junk::Answer(a) => {
                if fleet.fake.is_none() {
                    fleet.fake = Some(FakeMetrics::start(fleet.prom_port, a)?);
                }
                if let Some(f) = &fleet.fake {
                    f.set(a);
                }
            }
            Junk::Refused => {
                if let Some(mut f) = fleet.fake.take() {
                    f.stop();
                    seen.extend(f.seen());
                }
            }
        }
        // Rounds sent under the previous kind end (answered, or timed out after timeoutMs).
        std::thread::sleep(SETTLE);
        let answered = |fleet: &Fleet| {
            fleet.fake.as_ref().map_or(0, |f| {
                f.seen()
                    .iter()
                    .filter(|s| matches!(kind, Junk::Answer(a) if s.answer == a))
                    .count()
            })
        };
        let (s1, t1, a1) = (fleet.snaps()?, Instant::now(), answered(fleet));
        std::thread::sleep(SPAN);
        let (s2, a2) = (fleet.snaps()?, answered(fleet));
        let exited: Vec<String> = fleet
            .proxies
            .iter_mut()
            .filter_map(|p| p.envoy.exited().map(|why| format!("{}: {why}", p.role)))
            .collect();
        results.push((kind, s1, s2, t1.elapsed().as_secs_f64(), a2 - a1, exited));
    }
    // The control: a valid answer that is a fleet breach trips every proxy.
    if fleet.fake.is_none() {
        fleet.fake = Some(FakeMetrics::start(fleet.prom_port, Answer::Breach)?);
    }
    let before = fleet.snaps()?;
    let t_control = Instant::now();
    if let Some(f) = &fleet.fake {
        f.set(Answer::Breach);
    }
    let mut tripped_at: Vec<Option<f64>> = vec![None; fleet.proxies.len()];
    wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        for (i, p) in fleet.proxies.iter().enumerate() {
            if tripped_at[i].is_none() && p.snap().is_ok_and(|s| s.by_fleet > before[i].by_fleet) {
                tripped_at[i] = Some(t_control.elapsed().as_secs_f64());
            }
        }
        tripped_at.iter().all(Option::is_some).then_some(())
    });
    let evs = load.finish();
    let fin = fleet.snaps()?;
    fleet.expect(&evs);
    fleet.dirty = true;
    seen.extend(
        fleet
            .fake
            .as_ref()
            .map(FakeMetrics::seen)
            .unwrap_or_default(),
    );

    cx.errors_row("4 junk: requests (all 200)", &evs);
    for (kind, s1, s2, span, answered, exited) in &results {
        let failed: Vec<u64> = s2
            .iter()
            .zip(s1)
            .map(|(b, a)| b.failed - a.failed)
            .collect();
        let queries: Vec<u64> = s2
            .iter()
            .zip(s1)
            .map(|(b, a)| b.queries - a.queries)
            .collect();
        let tripped: Vec<u64> = s2
            .iter()
            .zip(&base)
            .map(|(b, a)| b.tripped - a.tripped)
            .collect();
        // At least one round per interval of the span, but the one in flight at its end; with a
        // server to talk to, at least every query Envoy sent but that one.
        let rounds = (span / INTERVAL_S as f64).floor() as u64 - 1;
        let counted = failed.iter().zip(&queries).all(|(f, q)| {
            *f >= rounds
                && match kind {
                    Junk::Refused => true,
                    Junk::Answer(_) => *f + 1 >= *q,
                }
        });
        cx.row(
            &format!("4 junk: {}", kind.name()),
            &format!(
                "no trip, no crash; in {span:.1}s every proxy counts ≥ {rounds} failed rounds \
                 (and every query sent but one in flight)"
            ),
            &format!(
                "failed {}; queries {} (the fake received {answered}); tripped {}{}",
                per_proxy(&failed),
                per_proxy(&queries),
                per_proxy(&tripped),
                if exited.is_empty() {
                    String::new()
                } else {
                    format!("; EXITED: {}", exited.join(", "))
                }
            ),
            counted && tripped.iter().all(|t| *t == 0) && exited.is_empty(),
        );
    }
    let by_fleet: Vec<u64> = fin
        .iter()
        .zip(&before)
        .map(|(a, b)| a.by_fleet - b.by_fleet)
        .collect();
    cx.row(
        "4 junk: control (a valid breach) trips every proxy",
        "tripped_by_fleet +1 on every proxy within intervalSeconds + timeoutMs + a tick (≤ 4 s)",
        &format!(
            "tripped_by_fleet {}; after {}",
            per_proxy(&by_fleet),
            tripped_at
                .iter()
                .zip(ROLES)
                .map(|(t, r)| format!("{r} {}", t.map_or("-".into(), |t| format!("{t:.2}s"))))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        by_fleet.iter().all(|n| *n == 1) && tripped_at.iter().all(|t| t.is_some_and(|t| t <= 4.0)),
    );
    // The query every proxy sent, as the fake received it.
    let want = [
        "subset=\"v2\"",
        "exported_instance=\"\"",
        "app=\"checkout\"",
        "increase(subset_router_guard_requests{",
        "increase(subset_router_guard_errors{",
        "increase(envoy_dynamicmodulescustom_subset_router_guard_requests{",
        "increase(envoy_dynamicmodulescustom_subset_router_guard_errors{",
        "sum by (counter)",
    ];
    let bad: Vec<String> = seen
        .iter()
        .filter_map(|s| {
            let query = s.path.strip_prefix("/api/v1/query?query=")?;
            let promql = percent_decode(query);
            let missing: Vec<&&str> = want.iter().filter(|w| !promql.contains(**w)).collect();
            (!missing.is_empty() || s.authority != "prometheus").then(|| {
                format!(
                    "{} (authority {:?}, missing {missing:?})",
                    s.path, s.authority
                )
            })
        })
        .chain(
            seen.iter()
                .filter(|s| !s.path.starts_with("/api/v1/query?query="))
                .map(|s| format!("path {}", s.path)),
        )
        .collect();
    cx.row(
        "4 junk: the query",
        "every request: GET /api/v1/query?query=<PromQL>, :authority prometheus, the guard's \
         subset, no name, the selector, both builds' families, summed by counter",
        &format!(
            "{} requests, {} otherwise{}",
            seen.len(),
            bad.len(),
            bad.first()
                .map(|b| format!(" (first: {b})"))
                .unwrap_or_default()
        ),
        !seen.is_empty() && bad.is_empty(),
    );
    cx.counters_row(fleet, "4 junk: counters");
    Ok(())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                match u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
