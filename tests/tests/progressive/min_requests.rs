//! progressive scenario 5: Below minRequests -> no trip

use super::*;

/// Ticks (wall seconds in which the filter's tick ran, read from the `clock` rule's ramp gauge)
/// that must follow the 19th failing request while the guard is watched for a trip.
const QUIET_TICKS: u64 = 3;

/// The `clock` rule's ramp gauge: a ramp from 0 to 1,000,000 ppm over 1,000,000 s reads as
/// the whole seconds since its start, as of the last tick that ran (a tick moves the ramps,
/// then merges the guard counts; nothing else moves the gauge).
const CLOCK_GAUGE: &str = "subset_router.rule.clock.ramp_ppm";

/// One read of `/stats`: the guard of `blue` and the clock gauge.
fn read(env: &Env, envoy: &Envoy) -> Result<(GuardStats, u64), String> {
    let s = filter_stats(env, envoy)?;
    let clock = s
        .get(CLOCK_GAUGE)
        .copied()
        .ok_or_else(|| format!("gauge {CLOCK_GAUGE} not in /stats"))?;
    Ok((guard_stats_in(env, &s, "blue")?, clock))
}

pub(super) fn guard_min_requests(cx: &mut Ctx) -> Result<(), String> {
    // The canary gets every split request (the other subset has weight 0): the count that
    // reaches it is exact, and once open nothing can be diverted (undivertable). `clock` takes
    // no request; its ramp gauge shows when the filter's once-a-second tick last ran.
    let clock_start_s = unix_ms().div_euclid(1000) - 1;
    let plugin = format!(
        r#"{{
      "rules": [
        {{"name": "debug", "match": {{"headers": [{{"name": "user-agent", "exact": "debug"}}]}},
         "route": {{"subset": "v2"}}}},
        {{"name": "clock", "match": {{"pathPrefix": "/clock"}},
         "route": {{"split": [{{"subset": "v1", "weight": 1}}, {{"subset": "v3", "weight": 0}}],
                   "ramp": {{"subset": "v3", "toPercent": 100, "start": "{}",
                            "durationSeconds": 1000000}}}}}},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
         "route": {{"split": [{{"subset": "red", "weight": 0}}, {{"subset": "blue", "weight": 100}}]}}}}
      ],
      "guards": [{{"subset": "blue", "maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 30,
                  "cooldownSeconds": 60}}],
      "default": {{"subset": "v1"}}
    }}"#,
        rfc3339(clock_start_s)
    );
    let envoy = cx.start(
        "guard-min-requests",
        &plugin,
        vec![UpstreamBehaviour::failing("blue", 503)],
        false,
    )?;
    let (mut clients, probes) = balanced_clients(&envoy, 1)?;
    let t0 = Instant::now();
    let mut evs = Vec::new();
    let send = |clients: &mut Conns, n: usize, evs: &mut Vec<Ev>| {
        for _ in 0..n {
            let (c, w) = &mut clients[evs.len() % 2];
            let e = exchange(c, *w, t0, &Req::split("/"));
            evs.push(e);
        }
    };
    // 19 failing requests, spread over both workers: no worker alone has them all.
    send(&mut clients, 19, &mut evs);
    let per_worker: Vec<usize> = (0..2)
        .map(|w| evs.iter().filter(|e| e.worker == w).count())
        .collect();
    // Watch the guard from the 19th response until the filter has ticked in QUIET_TICKS more
    // wall seconds: the last of them runs more than (QUIET_TICKS - 1) s after the 19th, so every
    // worker's 1 s tick has merged its requests into the window and found no trip since.
    let t19 = Instant::now();
    let (_, clock_at_19) = read(cx.env, &envoy)?;
    let mut polls = 0u64;
    let mut ticks = BTreeSet::new();
    let mut moved: Option<(f64, GuardStats)> = None;
    let quiet = wait_until(Duration::from_secs(10), Duration::from_millis(25), || {
        let (g, clock) = read(cx.env, &envoy).ok()?;
        polls += 1;
        if clock > clock_at_19 {
            ticks.insert(clock);
        }
        if g != GuardStats::default() && moved.is_none() {
            moved = Some((t19.elapsed().as_secs_f64(), g));
        }
        (clock >= clock_at_19 + QUIET_TICKS).then(|| t19.elapsed().as_secs_f64())
    });
    let span = quiet.unwrap_or_else(|| t19.elapsed().as_secs_f64());
    let failing = evs
        .iter()
        .filter(|e| e.status == 503 && e.served == "blue")
        .count();
    cx.row(
        "5 minRequests: 19 failing requests (< 20) -> no trip",
        &format!(
            "tripped 0, open 0 at every poll until the tick gauge has moved {QUIET_TICKS} seconds \
             past the 19th response"
        ),
        &format!(
            "{}; {polls} polls over {span:.2}s; ticks seen in {} seconds after the 19th \
             (gauge {clock_at_19} -> {}); {failing} of 19 answered 503 (worker 0: {}, worker 1: {})",
            match moved {
                Some((at, g)) => format!("MOVED {at:.2}s after the 19th: {g}"),
                None => format!("{} at every poll", GuardStats::default()),
            },
            ticks.len(),
            ticks.last().copied().unwrap_or(clock_at_19),
            per_worker[0],
            per_worker[1]
        ),
        quiet.is_some() && moved.is_none() && failing == 19,
    );
    cx.figure(
        "minRequests: span watched with 19 failures in the window",
        format!(
            "{span:.2}s, {polls} polls, ticks in {} seconds",
            ticks.len()
        ),
    );
    // The 20th: the window now holds minRequests failures across the two workers.
    send(&mut clients, 1, &mut evs);
    let t20 = t0.elapsed().as_secs_f64();
    let tripped = wait_until(Duration::from_secs(5), Duration::from_millis(25), || {
        read(cx.env, &envoy)
            .ok()
            .filter(|(g, _)| g.tripped >= 1)
            .map(|(_, clock)| (t0.elapsed().as_secs_f64(), clock))
    });
    cx.row(
        "5 minRequests: the 20th failing request -> trip",
        "tripped 1 within 2 ticks",
        &tripped
            .map(|(t, _)| format!("tripped {:.2}s after the 20th", t - t20))
            .unwrap_or_else(|| "no trip in 5 s".into()),
        tripped.is_some(),
    );
    // Open, but the split has nothing else: the requests still go to blue, as undivertable,
    // once every worker has read the open state at a tick of its own. Wait for a tick more than
    // 1 s after the trip was seen (the gauge two seconds past its value then).
    let (seen_at, clock_at_trip) = tripped.unwrap_or((t0.elapsed().as_secs_f64(), 0));
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let read_open = wait_until(Duration::from_secs(6), Duration::from_millis(25), || {
        let (g, clock) = read(cx.env, &envoy).ok()?;
        if seen.last() != Some(&(clock, g.open)) {
            seen.push((clock, g.open));
        }
        (clock >= clock_at_trip + 2 && g.open == 1)
            .then(|| (t0.elapsed().as_secs_f64() - seen_at, clock))
    });
    let seen = seen
        .iter()
        .map(|(clock, open)| format!("{clock}/{open}"))
        .collect::<Vec<_>>()
        .join(" ");
    if read_open.is_none() {
        cx.row(
            "5 minRequests: every worker has read the open state",
            "open 1 and a tick more than 1 s after the trip was seen, within 6 s",
            &format!("not within 6 s (tick gauge/open seen: {seen})"),
            false,
        );
    }
    if let Some((waited, clock)) = read_open {
        println!(
            "    open state read by every worker: {waited:.2}s after the trip was seen (tick gauge \
             {clock_at_trip} -> {clock}; tick gauge/open seen: {seen})"
        );
    }
    let before = evs.len();
    send(&mut clients, 10, &mut evs);
    let after: Vec<&Ev> = evs[before..].iter().collect();
    let fin = guard_stats(cx.env, &envoy, "blue")?;
    cx.row(
        "5 minRequests: open with no other positive weight",
        "10 more requests all to blue, undivertable 10, diverted 0, open 1",
        &format!(
            "{} to blue; {fin}",
            after.iter().filter(|e| e.served == "blue").count()
        ),
        after.iter().all(|e| e.served == "blue")
            && fin.tripped == 1
            && fin.undivertable == 10
            && fin.diverted == 0
            && fin.open == 1,
    );
    errors_row(cx, "5 minRequests: requests", &evs);
    let mut all = evs;
    all.extend(probes);
    let mut st = expected_from(&all, rule_of_path);
    set_guard(&mut st, "blue", &fin);
    cx.final_counters(
        &envoy,
        "5 minRequests: counters",
        &st,
        &[(plugin.as_str(), &all)],
    );
    Ok(())
}
