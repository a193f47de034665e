//! progressive scenario 5: Below minRequests -> no trip

use super::*;

pub(super) fn guard_min_requests(cx: &mut Ctx) -> Result<(), String> {
    // The canary gets every split request (the other subset has weight 0): the count that
    // reaches it is exact, and once open nothing can be diverted (undivertable).
    let plugin = r#"{
      "rules": [
        {"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]},
         "route": {"subset": "v2"}},
        {"name": "canary", "match": {"pathPrefix": "/"},
         "route": {"split": [{"subset": "red", "weight": 0}, {"subset": "blue", "weight": 100}]}}
      ],
      "guards": [{"subset": "blue", "maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 30,
                  "cooldownSeconds": 60}],
      "default": {"subset": "v1"}
    }"#;
    let envoy = cx.start(
        "guard-min-requests",
        plugin,
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
    let per_worker: Vec<usize> = (0..2).map(|w| evs.iter().filter(|e| e.worker == w).count()).collect();
    std::thread::sleep(Duration::from_millis(2500));
    let below = guard_stats(cx.env, &envoy, "blue")?;
    cx.row(
        "5 minRequests: 19 failing requests (< 20) -> no trip",
        "after 2.5 s (2+ ticks on each worker): tripped 0, open 0",
        &format!(
            "{below}; {} of 19 answered 503 (worker 0: {}, worker 1: {})",
            evs.iter().filter(|e| e.status == 503 && e.served == "blue").count(),
            per_worker[0],
            per_worker[1]
        ),
        below == GuardStats::default(),
    );
    // The 20th: the window now holds minRequests failures across the two workers.
    send(&mut clients, 1, &mut evs);
    let t20 = t0.elapsed().as_secs_f64();
    let tripped = wait_until(Duration::from_secs(5), Duration::from_millis(25), || {
        guard_stats(cx.env, &envoy, "blue")
            .ok()
            .filter(|g| g.tripped >= 1)
            .map(|_| t0.elapsed().as_secs_f64())
    });
    cx.row(
        "5 minRequests: the 20th failing request -> trip",
        "tripped 1 within 2 ticks",
        &tripped
            .map(|t| format!("tripped {:.2}s after the 20th", t - t20))
            .unwrap_or_else(|| "no trip in 5 s".into()),
        tripped.is_some(),
    );
    // Open, but the split has nothing else: the requests still go to blue, as undivertable
    // (once both workers have read the open state, at their next tick).
    std::thread::sleep(Duration::from_millis(2000));
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
    cx.final_counters(&envoy, "5 minRequests: counters", &st, &[(plugin, &all)]);
    Ok(())
}
