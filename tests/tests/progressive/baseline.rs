//! progressive scenario 4: Baseline: everything fails -> no trip

use super::*;

pub(super) fn guard_baseline(cx: &mut Ctx) -> Result<(), String> {
    let guard =
        r#""maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 3, "cooldownSeconds": 30"#;
    let plugin = format!(
        r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "control", "match": {{"pathPrefix": "/control"}},
          "route": {{"split": [{{"subset": "red", "weight": 50}}, {{"subset": "v3", "weight": 50}}]}}}},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": 50}}, {{"subset": "v2", "weight": 50}}]}}}}
      ],
      "guards": [
        {{"subset": "v2", {guard}, "baseline": "v1"}},
        {{"subset": "v3", {guard}}}
      ],
      "default": {{"subset": "v1"}}
    }}"#
    );
    let envoy = cx.start(
        "guard-baseline",
        &plugin,
        vec![
            UpstreamBehaviour::failing("v1", 503),
            UpstreamBehaviour::failing("v2", 503),
            UpstreamBehaviour::failing("v3", 503),
        ],
        false,
    )?;
    let (mut clients, probes) = balanced_clients(&envoy, 1)?;
    let t0 = Instant::now();
    let make = |_: usize, seq: u64| Req::split(if seq % 4 == 3 { "/control" } else { "/" });
    let env = cx.env;
    // Run until the control guard (no baseline) has tripped and 2 windows (6 s) have passed.
    let (evs, control_trip) = drive(&mut clients, t0, &make, || {
        let trip = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            guard_stats(env, &envoy, "v3")
                .ok()
                .filter(|g| g.tripped >= 1)
                .map(|_| t0.elapsed().as_secs_f64())
        });
        let left = Duration::from_millis(6300).saturating_sub(t0.elapsed());
        std::thread::sleep(left.max(Duration::from_secs(1)));
        trip
    });
    errors_row(cx, "4 baseline: requests", &evs);
    let v2 = guard_stats(cx.env, &envoy, "v2")?;
    let v3 = guard_stats(cx.env, &envoy, "v3")?;
    let canary: Vec<&Ev> = evs.iter().filter(|e| e.path == "/").collect();
    let n = canary.len() as u64;
    let on_v2 = canary.iter().filter(|e| e.served == "v2").count() as u64;
    let failed = canary.iter().filter(|e| e.status == 503).count();
    let (lo, hi) = binomial_bounds(n, 0.5);
    let dur = evs.last().map_or(0.0, |e| e.sent);
    cx.row(
        "4 baseline: v1 and v2 both 503 -> no trip",
        &format!(
            "guard v2 (baseline v1): tripped 0, open 0, diverted 0; v2 keeps 50% [{lo}..{hi}]"
        ),
        &format!(
            "{v2}; v2 {on_v2}/{n} ({:.1}%), {failed} of them 503, over {dur:.1}s (2 windows)",
            pct(on_v2, n)
        ),
        v2 == GuardStats::default() && (lo..=hi).contains(&on_v2) && dur >= 6.0,
    );
    cx.row(
        "4 baseline: control guard without baseline (v3) trips",
        "guard v3 trips on the same traffic",
        &format!(
            "{v3}{}",
            control_trip
                .map(|t| format!(", tripped {t:.2}s in"))
                .unwrap_or_default()
        ),
        v3.tripped == 1,
    );
    let rule_of = |e: &Ev| match (e.kind, e.path.as_str()) {
        (Kind::Debug, _) => "debug",
        (_, "/control") => "control",
        _ => "canary",
    };
    let mut all = evs;
    all.extend(probes);
    let mut st = expected_from(&all, rule_of);
    set_guard(&mut st, "v3", &v3);
    cx.final_counters(&envoy, "4 baseline: counters", &st, &[(&plugin, &all)]);
    Ok(())
}
