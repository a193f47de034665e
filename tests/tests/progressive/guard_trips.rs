//! progressive scenario 2: Guard trips

use super::*;

/// Where a sticky id goes under a plugin config as configured (guards closed): the filter's
/// own core (`Router::decide`), as a prediction that the responses before the trip verify one
/// by one; after the trip it tells which requests were moved off v2.
pub(super) struct Oracle {
    router: subset_router_core::Router,
}

impl Oracle {
    fn new(plugin: &str) -> Result<Oracle, String> {
        let router = subset_router_core::load(plugin.as_bytes()).map_err(|es| {
            es.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(Oracle { router })
    }

    fn subset(&self, path: &str, id: &str) -> String {
        let req = OwnedRequest::new()
            .header(":method", "GET")
            .header(":path", path)
            .header(":authority", "subset-router.test")
            .header("x-user-id", id);
        self.router
            .decide(&req, &mut WyRand::new(1))
            .map(|d| d.target.subset.clone())
            .unwrap_or_default()
    }
}

/// Trip latency: from the first bad response (received) to the last split request routed to
/// the subset (sent).
pub(super) struct Cut {
    pub(super) first_bad: f64,
    pub(super) last_v2: f64,
    /// Split requests sent after `last_v2`, and over how long.
    pub(super) tail: usize,
    pub(super) tail_s: f64,
}

pub(super) fn cut_of(evs: &[Ev], bad: impl Fn(&Ev) -> bool) -> Option<Cut> {
    let split: Vec<&Ev> = evs.iter().filter(|e| e.kind == Kind::Split).collect();
    let first_bad = split
        .iter()
        .filter(|e| bad(e))
        .map(|e| e.recv)
        .min_by(f64::total_cmp)?;
    let last_v2 = split
        .iter()
        .filter(|e| e.served == "v2")
        .map(|e| e.sent)
        .max_by(f64::total_cmp)?;
    let after: Vec<&&Ev> = split.iter().filter(|e| e.sent > last_v2).collect();
    let tail_s = after.last().map_or(0.0, |e| e.sent - last_v2);
    Some(Cut {
        first_bad,
        last_v2,
        tail: after.len(),
        tail_s,
    })
}

pub(super) fn guard_trip(cx: &mut Ctx) -> Result<(), String> {
    let plugin = format!(
        r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": 50}}, {{"subset": "v2", "weight": 50}}],
                    "stickyBy": {{"header": "x-user-id"}}}}}}
      ],
      {},
      "default": {{"subset": "v1"}}
    }}"#,
        guard_json(
            r#""maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 5, "cooldownSeconds": 5"#
        )
    );
    let oracle = Oracle::new(&plugin)?;
    let envoy = cx.start(
        "guard-trip",
        &plugin,
        vec![UpstreamBehaviour::failing("v2", 503)],
        false,
    )?;
    let (mut clients, probes) = balanced_clients(&envoy, 2)?;
    let t0 = Instant::now();
    // Every request a fresh user id (a 50/50 split of requests); 1 in 10 a tester's.
    let make = |thread: usize, seq: u64| {
        if seq % 10 == 9 {
            Req::debug()
        } else {
            Req::sticky("/", format!("t{thread}-{seq}"))
        }
    };
    let env = cx.env;
    let (evs, (trip_at, at_stop)) = drive(&mut clients, t0, &make, || {
        let trip_at = wait_until(Duration::from_secs(20), Duration::from_millis(25), || {
            guard_stats(env, &envoy, "v2")
                .ok()
                .filter(|g| g.tripped >= 1)
                .map(|_| t0.elapsed().as_secs_f64())
        });
        // Keep sending for 3 s of the 5 s cooldown: v2 must get nothing from the splits.
        if trip_at.is_some() {
            std::thread::sleep(Duration::from_secs(3));
        }
        (trip_at, guard_stats(env, &envoy, "v2"))
    });
    let stopped = evs.last().map_or(0.0, |e| e.sent);
    errors_row(cx, "2 guard trip: requests", &evs);
    let trip_at = trip_at.ok_or("the guard did not trip within 20 s")?;
    let at_stop = at_stop?;
    let fin = guard_stats(cx.env, &envoy, "v2")?;

    let cut = cut_of(&evs, |e| e.status == 503).ok_or("no 503 / no v2 response at all")?;
    let latency = cut.last_v2 - cut.first_bad;
    cx.row(
        "2 guard trip: first 503 -> last split request to v2",
        "≤ windowSeconds + 2 s = 7 s; then no split request to v2",
        &format!(
            "{latency:.2}s (trip seen in /stats {:.2}s after the first 503); then {} split requests over {:.2}s, 0 to v2",
            trip_at - cut.first_bad,
            cut.tail,
            cut.tail_s
        ),
        latency <= 7.0 && cut.tail >= 100 && cut.tail_s >= 1.5 && stopped < trip_at + 4.9,
    );
    cx.figure(
        "trip latency (first 503 -> v2 cut)",
        format!("{latency:.2}s"),
    );
    debug_row(cx, "2 guard trip: testers while open", &evs, cut.last_v2);

    // Each split request against the prediction with the guard closed: a request may only
    // differ by being moved off v2.
    let split: Vec<&Ev> = evs
        .iter()
        .filter(|e| e.kind == Kind::Split && e.err.is_none())
        .collect();
    let (mut same, mut moved, mut wrong) = (0u64, 0u64, Vec::new());
    let mut predicted_v2 = 0u64;
    for e in &split {
        let id = e.id.as_deref().unwrap_or("");
        let want = oracle.subset("/", id);
        predicted_v2 += u64::from(want == "v2");
        if e.served == want {
            same += 1;
        } else if want == "v2" && e.served == "v1" && e.sent >= cut.first_bad {
            moved += 1;
        } else {
            wrong.push(format!(
                "{id}: predicted {want}, served {} at {:.2}s",
                e.served, e.sent
            ));
        }
    }
    let (lo, hi) = binomial_bounds(split.len() as u64, 0.5);
    cx.row(
        "2 guard trip: 50/50 split, requests moved",
        &format!(
            "each id where its key puts it, or moved v2 -> v1 after the first 503; ids on v2 {lo}..{hi} of {}",
            split.len()
        ),
        &format!(
            "{same} where predicted, {moved} moved v2 -> v1, {} otherwise{}; ids on v2 {predicted_v2}",
            wrong.len(),
            wrong.first().map(|w| format!(" (first: {w})")).unwrap_or_default()
        ),
        wrong.is_empty() && (lo..=hi).contains(&predicted_v2),
    );
    cx.row(
        "2 guard trip: counters",
        &format!("tripped 1, diverted = {moved} moved, undivertable 0, open 1 while open"),
        &format!("{fin} (open {} when the load stopped)", at_stop.open),
        fin.tripped == 1 && fin.diverted == moved && fin.undivertable == 0 && at_stop.open == 1,
    );
    cx.figure(
        "guard trip: diverted vs moved",
        format!("{} vs {moved}", fin.diverted),
    );
    let warns = log_lines(&envoy, "subset-router: guard v2 tripped");
    cx.row(
        "2 guard trip: log",
        "one warning: guard v2 tripped (trip 1 of 3) ... for 5s",
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
        warns.len() == 1 && warns[0].contains("trip 1 of 3") && warns[0].contains("for 5s"),
    );
    let mut all = evs;
    all.extend(probes);
    let mut st = expected_from(&all, rule_of_path);
    set_guard(&mut st, "v2", &fin);
    cx.final_counters(&envoy, "2 guard trip: counters", &st, &[(&plugin, &all)]);
    Ok(())
}
