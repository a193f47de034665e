//! progressive scenario 7: Sticky split with a guarded canary

use super::*;

pub(super) const STICKY_IDS: usize = 400;

pub(super) fn sticky_guard(cx: &mut Ctx) -> Result<(), String> {
    let base = |guards: &str| {
        format!(
            r#"{{
      "rules": [
        {DEBUG_RULE},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": 40}}, {{"subset": "v2", "weight": 30}}, {{"subset": "v3", "weight": 30}}],
                    "stickyBy": {{"header": "x-user-id"}}}}}}
      ],{guards}
      "default": {{"subset": "v1"}}
    }}"#
        )
    };
    let unguarded = base("");
    let guarded = base(&format!(
        "\n      {},",
        guard_json(
            r#""maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 5, "cooldownSeconds": 60"#
        )
    ));
    // Where each id is, with nothing guarded yet (v2 already failing: no guard to see it).
    let envoy = cx.start(
        "sticky-guard",
        &unguarded,
        vec![UpstreamBehaviour::failing("v2", 503)],
        true,
    )?;
    let (mut clients, probes) = balanced_clients(&envoy, 1)?;
    let t0 = Instant::now();
    let id = |i: usize| format!("user-{i:03}");
    let round = |clients: &mut Conns, r: usize| -> Vec<Ev> {
        (0..STICKY_IDS)
            .map(|i| {
                let (c, w) = &mut clients[(i + r) % 2];
                exchange(c, *w, t0, &Req::sticky("/", id(i)))
            })
            .collect()
    };
    let learn = round(&mut clients, 0);
    let home: BTreeMap<String, String> = learn
        .iter()
        .filter_map(|e| Some((e.id.clone()?, e.served.clone())))
        .collect();
    let count = |s: &str| home.values().filter(|v| *v == s).count() as u64;
    let n = STICKY_IDS as u64;
    let shares_ok = [("v1", 0.4), ("v2", 0.3), ("v3", 0.3)]
        .iter()
        .all(|(s, p)| within_binomial(count(s), n, *p));
    cx.row(
        "7 sticky guard: ids before any guard",
        "v1 40% / v2 30% / v3 30% of ids (4.5σ)",
        &format!(
            "v1 {} / v2 {} / v3 {}",
            count("v1"),
            count("v2"),
            count("v3")
        ),
        shares_ok && home.len() == STICKY_IDS,
    );

    // The guard arrives by ECDS; rounds of every id until it trips, then 3 more.
    let before = ecds_counter(&envoy, "update_success");
    envoy.replace_ecds(cx.env, &guarded)?;
    wait_until(Duration::from_secs(10), Duration::from_millis(25), || {
        (ecds_counter(&envoy, "update_success") > before).then_some(())
    })
    .ok_or("the guarded configuration was not applied within 10 s")?;
    let mut rounds: Vec<Vec<Ev>> = Vec::new();
    let mut tripped_after = None;
    for r in 1..=20 {
        rounds.push(round(&mut clients, r));
        if guard_stats(cx.env, &envoy, "v2")?.tripped >= 1 {
            tripped_after = Some(r);
            break;
        }
    }
    let tripped_after = tripped_after.ok_or("the guard did not trip in 20 rounds")?;
    // Both workers have read the open state by their next tick.
    std::thread::sleep(Duration::from_millis(1500));
    let post: Vec<Vec<Ev>> = (0..3).map(|r| round(&mut clients, 100 + r)).collect();
    let fin = guard_stats(cx.env, &envoy, "v2")?;

    let mut moved_to: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in post.iter().flatten() {
        moved_to
            .entry(e.id.clone().unwrap_or_default())
            .or_default()
            .insert(e.served.clone());
    }
    let on_v2: Vec<&String> = home
        .iter()
        .filter(|(_, s)| *s == "v2")
        .map(|(i, _)| i)
        .collect();
    let mut dest: BTreeMap<String, u64> = BTreeMap::new();
    let mut unstable = 0;
    for i in &on_v2 {
        match moved_to.get(*i) {
            Some(s) if s.len() == 1 && !s.contains("v2") => {
                *dest
                    .entry(s.iter().next().cloned().unwrap_or_default())
                    .or_default() += 1
            }
            _ => unstable += 1,
        }
    }
    // After the trip the ids of v2 go to their next-best subset by weight: v1 40 : v3 30.
    let to_v1 = dest.get("v1").copied().unwrap_or(0);
    let (lo, hi) = binomial_bounds(on_v2.len() as u64, 4.0 / 7.0);
    cx.row(
        "7 sticky guard: ids of v2 after the trip",
        &format!(
            "each on one subset, not v2, in all 3 rounds (both workers); v1 : v3 as 40 : 30 ({lo}..{hi} to v1)"
        ),
        &format!(
            "{} ids of v2: {dest:?}, {unstable} not on one non-v2 subset; tripped after round {tripped_after}",
            on_v2.len()
        ),
        unstable == 0 && (lo..=hi).contains(&to_v1),
    );
    let all_after: Vec<&Ev> = rounds
        .iter()
        .flatten()
        .chain(post.iter().flatten())
        .collect();
    let strays: Vec<String> = all_after
        .iter()
        .filter(|e| {
            let h = home.get(e.id.as_deref().unwrap_or("")).map(String::as_str);
            h != Some("v2") && h != Some(e.served.as_str())
        })
        .map(|e| {
            format!(
                "{} {:?} -> {}",
                e.id.as_deref().unwrap_or(""),
                home.get(e.id.as_deref().unwrap_or("")),
                e.served
            )
        })
        .collect();
    cx.row(
        "7 sticky guard: ids of v1 and v3 never move",
        "every request of an id on v1 or v3 served where it was",
        &format!(
            "{} requests of {} ids, {} elsewhere{}",
            all_after
                .iter()
                .filter(|e| home
                    .get(e.id.as_deref().unwrap_or(""))
                    .is_some_and(|h| h != "v2"))
                .count(),
            home.len() - on_v2.len(),
            strays.len(),
            strays
                .first()
                .map(|s| format!(" (first: {s})"))
                .unwrap_or_default()
        ),
        strays.is_empty(),
    );
    let moved = all_after
        .iter()
        .filter(|e| {
            home.get(e.id.as_deref().unwrap_or("")).map(String::as_str) == Some("v2")
                && e.served != "v2"
        })
        .count() as u64;
    cx.row(
        "7 sticky guard: counters",
        &format!("tripped 1, diverted = {moved} requests of v2's ids served elsewhere, open 1"),
        &fin.to_string(),
        fin.tripped == 1 && fin.diverted == moved && fin.undivertable == 0 && fin.open == 1,
    );
    cx.figure(
        "sticky guard: diverted vs moved",
        format!("{} vs {moved}", fin.diverted),
    );
    let mut all: Vec<Ev> = learn;
    all.extend(rounds.into_iter().flatten());
    all.extend(post.into_iter().flatten());
    errors_row(cx, "7 sticky guard: requests", &all);
    all.extend(probes);
    let mut st = expected_from(&all, rule_of_path);
    set_guard(&mut st, "v2", &fin);
    cx.final_counters(&envoy, "7 sticky guard: counters", &st, &[(&guarded, &all)]);
    Ok(())
}
