//! progressive scenario 10: aligned cohorts across two services in one Envoy
//!
//! Two configurations on two listeners of one Envoy — services `checkout` (v2 10%) and
//! `payments` (v2 20%), rules of different names — whose sticky splits share
//! `stickyBy.cohort: "shop"` and the key `x-user-id`. docs/progressive-delivery.md (aligned cohorts): the same users are on
//! the canary, nested by share, so every user on v2 in `checkout` is on v2 in `payments`
//! (exact), and each share is its weight (4.5σ). A third listener runs `payments` without the
//! cohort (the cohort is then its rule's name): the control, whose v2 users are drawn
//! independently, so the nesting check is seen to fail where nothing aligns them.

use super::*;

const USERS: usize = 2000;

fn service(rule: &str, v2: u32, cohort: Option<&str>) -> String {
    let cohort = cohort
        .map(|c| format!(r#", "cohort": "{c}""#))
        .unwrap_or_default();
    format!(
        r#"{{
      "rules": [
        {{"name": "{rule}", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": {}}}, {{"subset": "v2", "weight": {v2}}}],
                    "stickyBy": {{"header": "x-user-id"{cohort}}}}}}}
      ],
      "default": {{"subset": "v1"}}
    }}"#,
        100 - v2
    )
}

pub(super) fn cohort(cx: &mut Ctx) -> Result<(), String> {
    let checkout = service("checkout", 10, Some("shop"));
    let payments = service("payments", 20, Some("shop"));
    let control = service("payments", 20, None);
    let plugins = [checkout.as_str(), payments.as_str(), control.as_str()];
    let envoy = cx.start_all("cohort", &plugins, LaunchOptions::default())?;
    let t0 = Instant::now();
    // Each user once through each listener, alternating the two workers' connections.
    let mut on_v2: Vec<BTreeSet<String>> = Vec::new();
    let mut all: Vec<Vec<Ev>> = Vec::new();
    // The connections' probes (`user-agent: debug`, no user id): no debug rule here, so the
    // split decides them at random and counts `sticky_key_missing`.
    let mut probes: Vec<Vec<Ev>> = Vec::new();
    for listener in 0..plugins.len() {
        let (mut clients, p) = balanced_clients_on(&envoy, listener, 1)?;
        probes.push(p);
        let evs: Vec<Ev> = (0..USERS)
            .map(|i| {
                let (c, w) = &mut clients[i % 2];
                exchange(c, *w, t0, &Req::sticky("/", format!("user-{i:05}")))
            })
            .collect();
        errors_row(
            cx,
            &format!("10 cohort: listener {listener} requests"),
            &evs,
        );
        on_v2.push(
            evs.iter()
                .filter(|e| e.served == "v2")
                .filter_map(|e| e.id.clone())
                .collect(),
        );
        all.push(evs);
    }
    let n = USERS as u64;
    let share = |i: usize, p: f64| {
        let k = on_v2[i].len() as u64;
        let (lo, hi) = binomial_bounds(n, p);
        ((lo..=hi).contains(&k), format!("{k} of {n} [{lo}..{hi}]"))
    };
    let (a_ok, a) = share(0, 0.1);
    let (b_ok, b) = share(1, 0.2);
    let (c_ok, c) = share(2, 0.2);
    cx.row(
        "10 cohort: shares",
        "users on v2: checkout 10%, payments 20%, control 20% (4.5σ each)",
        &format!("checkout {a}; payments {b}; control {c}"),
        a_ok && b_ok && c_ok,
    );
    let outside = |i: usize| on_v2[0].difference(&on_v2[i]).count();
    let (nested, control_out) = (outside(1), outside(2));
    cx.row(
        "10 cohort: nested by share (cohort shop)",
        "every checkout user on v2 (10%) is on v2 in payments (20%): 0 outside",
        &format!(
            "{} checkout users on v2, {nested} of them not on v2 in payments",
            on_v2[0].len()
        ),
        nested == 0 && !on_v2[0].is_empty(),
    );
    // Independent draws leave ~80% of them outside; 4.5σ below that is far above 0.
    let (lo, _) = binomial_bounds(on_v2[0].len() as u64, 0.8);
    cx.row(
        "10 cohort: control without the cohort",
        &format!(
            "payments' own cohort (its rule name): checkout's v2 users drawn independently, \
             ≥ {lo} of them outside (4.5σ below 80%)"
        ),
        &format!("{control_out} of {} outside", on_v2[0].len()),
        control_out as u64 >= lo && lo > 0,
    );
    cx.figure(
        "cohort: users on v2 (checkout 10% ⊂ payments 20%; control)",
        format!(
            "{} ⊂ {} ({nested} outside); control {} ({control_out} outside)",
            on_v2[0].len(),
            on_v2[1].len(),
            on_v2[2].len()
        ),
    );
    // Counters: the three configurations share no rule name but payments/control (summed).
    let mut st = ExpectedStats::default();
    for ((evs, probes), rule) in all
        .iter()
        .zip(&probes)
        .zip(["checkout", "payments", "payments"])
    {
        for e in evs.iter().chain(probes).filter(|e| !e.served.is_empty()) {
            st.rule(rule, &e.served, 1);
        }
        st.sticky_missing(probes.len() as u64);
    }
    let observed: Vec<(&str, &[Ev])> = plugins
        .iter()
        .zip(&all)
        .map(|(p, e)| (*p, e.as_slice()))
        .collect();
    cx.final_counters(&envoy, "10 cohort: counters", &st, &observed);
    Ok(())
}
