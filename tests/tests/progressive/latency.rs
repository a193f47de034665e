//! progressive scenario 6: Latency trigger

use super::*;

pub(super) fn guard_latency(cx: &mut Ctx) -> Result<(), String> {
    let plugin = format!(
        r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": 50}}, {{"subset": "v2", "weight": 50}}]}}}}
      ],
      {},
      "default": {{"subset": "v1"}}
    }}"#,
        guard_json(
            r#""maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 5, "cooldownSeconds": 30, "slowMs": 100, "maxSlowPercent": 50"#
        )
    );
    let envoy = cx.start(
        "guard-latency",
        &plugin,
        vec![UpstreamBehaviour::slow("v2", 300)],
        false,
    )?;
    // 4 connections per worker: a v2 request holds its connection for 300 ms.
    let (mut clients, probes) = balanced_clients(&envoy, 4)?;
    let t0 = Instant::now();
    let make = |_: usize, seq: u64| {
        if seq % 10 == 9 {
            Req::debug()
        } else {
            Req::split("/")
        }
    };
    let env = cx.env;
    let (evs, trip_at) = drive(&mut clients, t0, &make, || {
        let trip = wait_until(Duration::from_secs(20), Duration::from_millis(25), || {
            guard_stats(env, &envoy, "v2")
                .ok()
                .filter(|g| g.tripped >= 1)
                .map(|_| t0.elapsed().as_secs_f64())
        });
        if trip.is_some() {
            std::thread::sleep(Duration::from_secs(3));
        }
        trip
    });
    errors_row(cx, "6 latency: requests", &evs);
    let trip_at = trip_at.ok_or("the latency guard did not trip within 20 s")?;
    let fin = guard_stats(cx.env, &envoy, "v2")?;
    let split: Vec<&Ev> = evs.iter().filter(|e| e.kind == Kind::Split).collect();
    let lat = |s: &str| {
        let mut v: Vec<f64> = split
            .iter()
            .filter(|e| e.served == s)
            .map(|e| e.latency())
            .collect();
        v.sort_by(f64::total_cmp);
        (
            v.len(),
            v.first().copied().unwrap_or(0.0),
            v.get(v.len() / 2).copied().unwrap_or(0.0),
        )
    };
    let (n2, min2, med2) = lat("v2");
    let (n1, _, med1) = lat("v1");
    let ok_status = split.iter().all(|e| e.status == 200);
    let cut = cut_of(&evs, |e| e.served == "v2" && e.latency() > 0.1)
        .ok_or("no slow v2 response at all")?;
    let latency = cut.last_v2 - cut.first_bad;
    cx.row(
        "6 latency: v2 answers after 300 ms (slowMs 100, maxSlowPercent 50) -> trips",
        "first slow response -> last split request to v2 ≤ 7 s; then none; tripped 1; all 200",
        &format!(
            "{latency:.2}s (trip in /stats {:.2}s after it); then {} split requests over {:.2}s, 0 to v2; {fin}; v2 {n2} responses (min {:.0} ms, median {:.0} ms), v1 {n1} (median {:.1} ms); {}",
            trip_at - cut.first_bad,
            cut.tail,
            cut.tail_s,
            min2 * 1e3,
            med2 * 1e3,
            med1 * 1e3,
            if ok_status { "all 200" } else { "NOT all 200" }
        ),
        latency <= 7.0
            && cut.tail >= 20
            && cut.tail_s >= 1.5
            && fin.tripped == 1
            && min2 >= 0.28
            && ok_status,
    );
    cx.figure(
        "latency trip (first slow response -> v2 cut)",
        format!("{latency:.2}s"),
    );
    let warns = log_lines(&envoy, "subset-router: guard v2 tripped");
    cx.row(
        "6 latency: log",
        "one warning naming the slow requests (slower than 100ms)",
        &warns
            .first()
            .map(|l| {
                format!(
                    "{} line(s): {}",
                    warns.len(),
                    l.rsplit("] ").next().unwrap_or(l)
                )
            })
            .unwrap_or_else(|| "none".into()),
        warns.len() == 1 && warns[0].contains("slower than 100ms"),
    );
    debug_row(cx, "6 latency: testers while open", &evs, cut.last_v2);
    let mut all = evs;
    all.extend(probes);
    let mut st = expected_from(&all, rule_of_path);
    set_guard(&mut st, "v2", &fin);
    cx.final_counters(&envoy, "6 latency: counters", &st, &[(&plugin, &all)]);
    Ok(())
}
