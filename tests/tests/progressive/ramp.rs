//! progressive scenario 1: Ramp

use super::*;

/// v2's share (ppm) of a 90/10 split ramped to 50% from `start_ms` over 60 s, as documented:
/// ⌈p0⌉ + (to − p0)·f, or with `steps` N the ⌊N·f⌋/N of it, rounded down to a ppm.
pub(super) fn ramp_ppm(start_ms: i64, steps: u64, t_ms: i64) -> u64 {
    const FROM: u64 = 100_000;
    const TO: u64 = 500_000;
    const DURATION: u64 = 60_000;
    if t_ms < start_ms {
        return FROM;
    }
    let elapsed = (t_ms - start_ms) as u64;
    if elapsed >= DURATION {
        return TO;
    }
    let span = TO - FROM;
    FROM + match steps {
        0 => span * elapsed / DURATION,
        n => span * (n * elapsed / DURATION) / n,
    }
}

/// A batch of exchanges checked against the ramp at their send times: its v2 count must lie
/// within 4.5σ of n·p̄, where p̄ is the mean share over the batch, between its value
/// `RAMP_LAG_MS` earlier (the clock a worker last read) and at sending.
pub(super) struct RampCheck {
    n: u64,
    v2: u64,
    p_lo: f64,
    p_hi: f64,
    lo: u64,
    hi: u64,
}

impl RampCheck {
    fn of(evs: &[&Ev], start_ms: i64, steps: u64) -> RampCheck {
        let n = evs.len() as u64;
        let v2 = evs.iter().filter(|e| e.served == "v2").count() as u64;
        let mean = |lag: i64| {
            evs.iter()
                .map(|e| ramp_ppm(start_ms, steps, e.sent_unix_ms - lag) as f64 / 1e6)
                .sum::<f64>()
                / n.max(1) as f64
        };
        let (p_lo, p_hi) = (mean(RAMP_LAG_MS), mean(0));
        let (lo, _) = binomial_bounds(n, p_lo);
        let (_, hi) = binomial_bounds(n, p_hi);
        RampCheck {
            n,
            v2,
            p_lo,
            p_hi,
            lo,
            hi,
        }
    }

    fn pass(&self) -> bool {
        self.v2 >= self.lo && self.v2 <= self.hi
    }

    fn expected(&self) -> String {
        if (self.p_hi - self.p_lo).abs() < 5e-5 {
            format!("{:.1}% [{}..{}]", 100.0 * self.p_hi, self.lo, self.hi)
        } else {
            format!(
                "{:.1}–{:.1}% [{}..{}]",
                100.0 * self.p_lo,
                100.0 * self.p_hi,
                self.lo,
                self.hi
            )
        }
    }

    fn observed(&self) -> String {
        format!("{}/{} ({:.1}%)", self.v2, self.n, pct(self.v2, self.n))
    }
}

pub(super) const RAMP_IDS: usize = 500;
/// Requests per rule (`/ramp`, `/steps`) per batch, and a batch every 250 ms: a light, steady
/// load of 800 requests/s for the ~30 s the ramp has left.
pub(super) const RAMP_BATCH: usize = 100;
pub(super) const RAMP_BATCH_EVERY: Duration = Duration::from_millis(250);

pub(super) fn ramp(cx: &mut Ctx) -> Result<(), String> {
    let start_s = unix_ms() / 1000 - 30;
    let start_ms = start_s * 1000;
    let end_ms = start_ms + 60_000;
    let ramp = |steps: u32| {
        format!(
            r#""ramp": {{"subset": "v2", "toPercent": 50, "start": "{}", "durationSeconds": 60, "steps": {steps}}}"#,
            rfc3339(start_s)
        )
    };
    let split = r#""split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]"#;
    let plugin = format!(
        r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "ramp", "match": {{"pathPrefix": "/ramp"}}, "route": {{{split}, {}}}}},
        {{"name": "steps", "match": {{"pathPrefix": "/steps"}}, "route": {{{split}, {}}}}},
        {{"name": "sticky", "match": {{"pathPrefix": "/sticky"}},
          "route": {{{split}, "stickyBy": {{"header": "x-user-id"}}, {}}}}}
      ],
      "default": {{"subset": "v1"}}
    }}"#,
        ramp(0),
        ramp(4),
        ramp(0)
    );
    println!(
        "    ramp: v2 10% -> 50% from {} over 60 s (now: start + 30 s)",
        rfc3339(start_s)
    );
    let envoy = cx.start("ramp", &plugin, vec![], false)?;
    let (mut clients, probes) = balanced_clients(&envoy, 1)?;
    let t0 = Instant::now();
    let mut evs: Vec<Ev> = Vec::new();
    // Sticky samples: (label, exchanges).
    let mut samples: Vec<(String, Vec<Ev>)> = Vec::new();
    let moments = [
        ("now", 0),
        ("start+47s", start_ms + 47_000),
        // Both workers have read a clock past the end.
        ("past the end (start+63.5s)", end_ms + RAMP_LAG_MS + 500),
    ];
    // Gauge reads: (before, after, ramp, steps, sticky).
    let mut gauges: Vec<(i64, i64, u64, u64, u64)> = Vec::new();
    let mut next_batch = Instant::now();
    loop {
        let now = unix_ms();
        if let Some((label, _)) = moments.get(samples.len()).filter(|(_, at)| now >= *at) {
            let mut sample = Vec::with_capacity(RAMP_IDS);
            for id in 0..RAMP_IDS {
                let (c, w) = &mut clients[(id + samples.len()) % 2];
                sample.push(exchange(
                    c,
                    *w,
                    t0,
                    &Req::sticky("/sticky", format!("id-{id:03}")),
                ));
            }
            samples.push((label.to_string(), sample));
            continue;
        }
        if samples.len() == moments.len() {
            break;
        }
        std::thread::sleep(next_batch.saturating_duration_since(Instant::now()));
        next_batch += RAMP_BATCH_EVERY;
        for i in 0..2 * RAMP_BATCH {
            // /ramp and /steps alternate, each on both workers in turn.
            let (c, w) = &mut clients[(i / 2) % 2];
            let path = if i % 2 == 0 { "/ramp" } else { "/steps" };
            evs.push(exchange(c, *w, t0, &Req::split(path)));
        }
        let before = unix_ms();
        let s = filter_stats(cx.env, &envoy)?;
        let after = unix_ms();
        let g = |r: &str| {
            s.get(&format!("subset_router.rule.{r}.ramp_ppm"))
                .copied()
                .unwrap_or(u64::MAX)
        };
        gauges.push((before, after, g("ramp"), g("steps"), g("sticky")));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let all: Vec<Ev> = evs
        .iter()
        .chain(samples.iter().flat_map(|(_, s)| s.iter()))
        .cloned()
        .collect();
    errors_row(cx, "1 ramp: requests", &all);

    // Continuous: batches of RAMP_BATCH in send order, then pooled (and per worker).
    for (rule, steps) in [("ramp", 0u64), ("steps", 4)] {
        let of_rule: Vec<&Ev> = evs
            .iter()
            .filter(|e| e.path == format!("/{rule}"))
            .collect();
        let batches: Vec<RampCheck> = of_rule
            .chunks(RAMP_BATCH)
            .map(|b| RampCheck::of(b, start_ms, steps))
            .collect();
        let bad: Vec<&RampCheck> = batches.iter().filter(|b| !b.pass()).collect();
        let pooled = RampCheck::of(&of_rule, start_ms, steps);
        let per_worker: Vec<RampCheck> = (0..CONCURRENCY as usize)
            .map(|w| {
                let mine: Vec<&Ev> = of_rule.iter().copied().filter(|e| e.worker == w).collect();
                RampCheck::of(&mine, start_ms, steps)
            })
            .collect();
        let label = if steps == 0 {
            "1 ramp continuous 10% -> 50% (60 s, started 30 s ago)".to_string()
        } else {
            "1 ramp steps: 4 (10/20/30/40/50%)".to_string()
        };
        cx.row(
            &format!("{label}: batches of {RAMP_BATCH}"),
            "each batch's v2 count within 4.5σ of the formula at its send times",
            &format!(
                "{}/{} batches within; {}",
                batches.len() - bad.len(),
                batches.len(),
                bad.first()
                    .map(|b| format!("first outside: {} vs {}", b.observed(), b.expected()))
                    .unwrap_or_else(|| format!(
                        "shares {:.1}% .. {:.1}%",
                        batches.first().map_or(0.0, |b| pct(b.v2, b.n)),
                        batches.last().map_or(0.0, |b| pct(b.v2, b.n))
                    ))
            ),
            bad.is_empty() && batches.len() >= 20,
        );
        cx.row(
            &format!("{label}: pooled"),
            &pooled.expected(),
            &format!(
                "{}; worker 0 {} vs {}, worker 1 {} vs {}",
                pooled.observed(),
                per_worker[0].observed(),
                per_worker[0].expected(),
                per_worker[1].observed(),
                per_worker[1].expected()
            ),
            pooled.pass() && per_worker.iter().all(|w| w.pass() && w.n > 0),
        );
        cx.figure(
            &format!("ramp ({rule}): v2 observed vs expected"),
            format!(
                "{} vs {} over {} batches",
                pooled.observed(),
                pooled.expected(),
                batches.len()
            ),
        );
        if steps > 0 {
            // Every request whose step is certain (not within the lag of a jump), pooled by
            // step value: each pool within 4.5σ of its step value; the gauge only ever shows a
            // step value.
            let mut pools: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
            for e in &of_rule {
                let (a, b) = (
                    ramp_ppm(start_ms, 4, e.sent_unix_ms - RAMP_LAG_MS),
                    ramp_ppm(start_ms, 4, e.sent_unix_ms),
                );
                if a == b {
                    let p = pools.entry(b).or_default();
                    p.0 += 1;
                    p.1 += u64::from(e.served == "v2");
                }
            }
            let values = [100_000u64, 200_000, 300_000, 400_000, 500_000];
            let gauge_steps: BTreeSet<u64> = gauges.iter().map(|g| g.3).collect();
            let gauge_ok = gauge_steps.iter().all(|v| values.contains(v));
            let pools_ok = pools
                .iter()
                .all(|(ppm, (n, v2))| within_binomial(*v2, *n, *ppm as f64 / 1e6));
            cx.row(
                "1 ramp steps: 4: every observation a step value",
                "requests pooled by the step at their send time: each pool within 4.5σ of 10/20/30/40/50%; gauge ramp_ppm only ever a step value",
                &format!(
                    "{}; gauge values {:?}",
                    pools
                        .iter()
                        .map(|(ppm, (n, v2))| {
                            let (lo, hi) = binomial_bounds(*n, *ppm as f64 / 1e6);
                            format!("{}%: {v2}/{n} ({:.1}%) [{lo}..{hi}]", ppm / 10_000, pct(*v2, *n))
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    gauge_steps
                ),
                gauge_ok && pools_ok && pools.len() >= 2,
            );
            cx.figure(
                "ramp (steps: 4) by step",
                pools
                    .iter()
                    .map(|(ppm, (n, v2))| format!("{}%: {:.1}% of {n}", ppm / 10_000, pct(*v2, *n)))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }

    // Gauges against the formula at the time of reading (lagging by at most a tick).
    let mut gauge_bad = Vec::new();
    for &(before, after, r, st, sk) in &gauges {
        for (name, v, steps) in [("ramp", r, 0), ("steps", st, 4), ("sticky", sk, 0)] {
            let (lo, hi) = (
                ramp_ppm(start_ms, steps, before - RAMP_LAG_MS),
                ramp_ppm(start_ms, steps, after),
            );
            if v < lo || v > hi {
                gauge_bad.push(format!("{name}={v} not in [{lo}, {hi}]"));
            }
        }
    }
    // How far behind the clock the continuous gauge was: the time the formula gives its value.
    let max_lag = gauges
        .iter()
        .filter(|g| g.2 < 500_000)
        .map(|&(before, _, r, _, _)| before - (start_ms + (r as i64 - 100_000) * 60_000 / 400_000))
        .max()
        .unwrap_or(0);
    cx.figure(
        "ramp gauge: largest lag behind the clock",
        format!("{max_lag} ms"),
    );
    let last = gauges.last().copied().unwrap_or_default();
    cx.row(
        "1 ramp: gauge rule.<rule>.ramp_ppm",
        &format!("the formula's ppm at the time of reading (≤ {RAMP_LAG_MS} ms behind); 500000 past the end"),
        &format!(
            "{} reads, {} off{}; last: ramp {} steps {} sticky {}",
            gauges.len(),
            gauge_bad.len(),
            gauge_bad.first().map(|b| format!(" (first: {b})")).unwrap_or_default(),
            last.2,
            last.3,
            last.4
        ),
        gauge_bad.is_empty() && !gauges.is_empty() && last.0 > end_ms + RAMP_LAG_MS && [last.2, last.3, last.4] == [500_000; 3],
    );

    // Sticky ids at three moments.
    let mut prev: Option<BTreeMap<String, String>> = None;
    for (label, sample) in &samples {
        let map: BTreeMap<String, String> = sample
            .iter()
            .filter_map(|e| Some((e.id.clone()?, e.served.clone())))
            .collect();
        let refs: Vec<&Ev> = sample.iter().collect();
        let chk = RampCheck::of(&refs, start_ms, 0);
        let left: Vec<&String> = prev
            .iter()
            .flat_map(|p| p.iter())
            .filter(|(id, s)| *s == "v2" && map.get(*id).map(String::as_str) != Some("v2"))
            .map(|(id, _)| id)
            .collect();
        let joined = prev
            .as_ref()
            .map(|p| {
                p.iter()
                    .filter(|(id, s)| *s == "v1" && map.get(*id).map(String::as_str) == Some("v2"))
                    .count()
            })
            .unwrap_or(0);
        let other = map.values().filter(|s| *s != "v1" && *s != "v2").count();
        cx.row(
            &format!("1 ramp sticky: {RAMP_IDS} ids at {label}"),
            &format!("ids on v2 {}; 0 ids leave v2", chk.expected()),
            &format!(
                "ids on v2 {}; {} left v2, {joined} joined v2 from v1",
                chk.observed(),
                left.len()
            ),
            chk.pass() && left.is_empty() && other == 0 && map.len() == RAMP_IDS,
        );
        cx.figure(
            &format!("ramp sticky ids at {label}"),
            format!("{} on v2 vs {}", chk.observed(), chk.expected()),
        );
        prev = Some(map);
    }
    let rule_of = |e: &Ev| match (e.kind, e.path.as_str()) {
        (Kind::Debug, _) => "debug",
        (_, "/ramp") => "ramp",
        (_, "/steps") => "steps",
        _ => "sticky",
    };
    let mut with_probes = all.clone();
    with_probes.extend(probes);
    cx.final_counters(
        &envoy,
        "1 ramp: counters",
        &expected_from(&with_probes, rule_of),
        &[(&plugin, &with_probes)],
    );
    println!(
        "    {} requests in {elapsed:.1}s ({:.0}/s)",
        all.len(),
        all.len() as f64 / elapsed
    );
    Ok(())
}
