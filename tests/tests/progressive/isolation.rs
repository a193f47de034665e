//! progressive scenarios 8 and 9: two configurations in one Envoy, each with its own guard
//!
//! One Envoy, two front listeners — two services behind one proxy: configuration `a` routes to
//! clusters `a-{subset}`, configuration `b` to `b-{subset}`; each splits v1/v2 50/50 with a
//! guard on v2, and both canaries (`a-v2`, `b-v2`) answer 503. Traffic goes to both listeners
//! at once, on both workers. docs/configuration.md (`name`, guards): two configurations alive at once
//! never read or write each other's guard records, so **both** guards trip and each listener's
//! split traffic stops reaching its own v2. `isolation`: the two texts differ only by their
//! template, no `name` (their stats share names, so `tripped` sums to 2); `isolation_named`:
//! with `name`s `a` and `b`, every stat is its own (`subset_router.a.guard.v2.tripped` 1,
//! `subset_router.b.guard.v2.tripped` 1) and `/stats/prometheus` prints them as the unnamed
//! families with an `instance` label.
//!
//! The traffic is slow on purpose (10 requests/s per connection, ~4–5 split requests/s to
//! each v2 per worker): a guard reaches `minRequests` only by adding up several ticks of both
//! workers in its own window, which a guard record the other configuration keeps resetting
//! (or adding to) never does the same way.

use super::*;
use subset_router_it::prometheus;

/// The two services, their listener (0: front, 1: front-2) and the path their requests take.
const SERVICES: [(&str, usize, &str); 2] = [("a", 0, "/a"), ("b", 1, "/b")];
const WINDOW_S: f64 = 10.0;
/// Each connection's pace.
const PACE: Duration = Duration::from_millis(100);
/// Split requests after the cut, none to v2 (each would go there with probability 1/2 were
/// the guard not open: 2⁻³⁰ by chance).
const TAIL: usize = 30;

fn service_config(service: &str, named: bool) -> String {
    let name = if named {
        format!(r#""name": "{service}","#)
    } else {
        String::new()
    };
    format!(
        r#"{{{name}
      "clusterTemplate": "{service}-{{subset}}",
      "rules": [
        {DEBUG_RULE},
        {{"name": "canary", "match": {{"pathPrefix": "/"}},
          "route": {{"split": [{{"subset": "v1", "weight": 50}}, {{"subset": "v2", "weight": 50}}]}}}}
      ],
      {},
      "default": {{"subset": "v1"}}
    }}"#,
        guard_json(
            r#""maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 10, "cooldownSeconds": 60"#
        )
    )
}

pub(super) fn isolation(cx: &mut Ctx) -> Result<(), String> {
    two_services(cx, false)
}

pub(super) fn isolation_named(cx: &mut Ctx) -> Result<(), String> {
    two_services(cx, true)
}

fn two_services(cx: &mut Ctx, named: bool) -> Result<(), String> {
    let n = if named {
        "9 isolation (named)"
    } else {
        "8 isolation"
    };
    let plugins: Vec<String> = SERVICES
        .iter()
        .map(|(s, _, _)| service_config(s, named))
        .collect();
    let refs: Vec<&str> = plugins.iter().map(String::as_str).collect();
    let prefixes: Vec<String> = refs.iter().map(|p| report::stat_prefix(p)).collect();
    let envoy = cx.start_all(
        if named {
            "isolation-named"
        } else {
            "isolation"
        },
        &refs,
        LaunchOptions {
            upstreams: vec![
                UpstreamBehaviour::failing("a-v2", 503),
                UpstreamBehaviour::failing("b-v2", 503),
            ],
            ..LaunchOptions::default()
        },
    )?;
    // One connection per worker and listener: a's two first, then b's.
    let mut clients = Vec::new();
    let mut probes = Vec::new();
    for (_, listener, path) in SERVICES {
        let (c, p) = balanced_clients_on(&envoy, listener, 1)?;
        clients.extend(c);
        probes.extend(p.into_iter().map(|e| Ev {
            path: path.to_string(),
            ..e
        }));
    }
    let t0 = Instant::now();
    let make = |thread: usize, seq: u64| {
        let path = SERVICES[thread / 2].2;
        if seq % 10 == 9 {
            Req {
                path: path.into(),
                ..Req::debug()
            }
        } else {
            Req::split(path)
        }
    };
    let env = cx.env;
    // Both services' trips: the shared `tripped` at 2 (unnamed), or each at 1 (named).
    let trips = |envoy: &Envoy| -> Option<Vec<GuardStats>> {
        let each: Vec<GuardStats> = if named {
            prefixes
                .iter()
                .map(|p| guard_stats_of(env, envoy, p, "v2"))
                .collect::<Result<_, _>>()
                .ok()?
        } else {
            vec![guard_stats(env, envoy, "v2").ok()?]
        };
        Some(each)
    };
    let (evs, tripped_at) = drive_every(&mut clients, t0, PACE, &make, || {
        let at = wait_until(Duration::from_secs(20), Duration::from_millis(25), || {
            let each = trips(&envoy)?;
            let done = if named {
                each.iter().all(|g| g.tripped >= 1)
            } else {
                each[0].tripped >= 2
            };
            done.then(|| t0.elapsed().as_secs_f64())
        });
        // 4 s more of the 60 s cooldown: neither v2 may get a split request.
        std::thread::sleep(Duration::from_secs(4));
        at
    });
    errors_row(cx, &format!("{n}: requests"), &evs);
    let mut all = evs;
    all.extend(probes);
    let of = |path: &str| -> Vec<Ev> { all.iter().filter(|e| e.path == path).cloned().collect() };

    // Each listener's requests reach only its own service's clusters.
    let foreign: Vec<String> = SERVICES
        .iter()
        .flat_map(|(s, _, path)| {
            of(path)
                .into_iter()
                .filter(|e| !e.cluster.is_empty() && !e.cluster.starts_with(&format!("{s}-")))
                .map(|e| format!("{path} served by {}", e.cluster))
                .collect::<Vec<_>>()
        })
        .collect();
    cx.row(
        &format!("{n}: each listener's own clusters"),
        "requests on a's listener served by a-v1/a-v2 only, b's by b-v1/b-v2 only",
        &format!(
            "{} outside{}",
            foreign.len(),
            foreign
                .first()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        ),
        foreign.is_empty(),
    );

    let mut summary = Vec::new();
    for (service, _, path) in SERVICES {
        let evs = of(path);
        let Some(cut) = cut_of(&evs, |e| {
            e.status == 503 && e.cluster == format!("{service}-v2")
        }) else {
            cx.row(
                &format!("{n}: {service}-v2 cut"),
                "split requests to v2, some 503",
                "no 503 from v2 or no split request to v2 at all",
                false,
            );
            continue;
        };
        let latency = cut.last_v2 - cut.first_bad;
        let split = evs.iter().filter(|e| e.kind == Kind::Split).count();
        let before = evs
            .iter()
            .filter(|e| e.kind == Kind::Split && e.served == "v2")
            .count();
        cx.row(
            &format!("{n}: {service}'s guard trips"),
            &format!(
                "first 503 of {service}-v2 -> last split request to it ≤ windowSeconds + 2 s = {:.0} s; \
                 then ≥ {TAIL} split requests over ≥ 2 s, none to {service}-v2",
                WINDOW_S + 2.0
            ),
            &format!(
                "{latency:.2}s ({before} of {split} split requests reached {service}-v2 before); \
                 then {} split requests over {:.2}s, 0 to {service}-v2",
                cut.tail, cut.tail_s
            ),
            latency <= WINDOW_S + 2.0 && cut.tail >= TAIL && cut.tail_s >= 2.0,
        );
        summary.push(format!("{service} {latency:.2}s"));
        debug_row(cx, &format!("{n}: {service}'s testers"), &evs, cut.last_v2);
    }
    if !summary.is_empty() {
        cx.figure(
            &format!("{n}: first 503 -> v2 cut per service"),
            summary.join(", "),
        );
    }
    let first_503 = all
        .iter()
        .filter(|e| e.status == 503)
        .map(|e| e.recv)
        .min_by(f64::total_cmp)
        .unwrap_or(0.0);
    let tripped_at = tripped_at.map(|t| t - first_503);

    // The guards' counters: each configuration's own (named), or summed under the shared names.
    let guards = trips(&envoy).ok_or("guard stats not readable")?;
    let served_v2 = |path: &str| {
        all.iter()
            .filter(|e| e.kind == Kind::Split && e.path == path && e.served == "v2")
            .count() as u64
    };
    let split_n = |path: &str| {
        all.iter()
            .filter(|e| e.kind == Kind::Split && e.path == path)
            .count() as u64
    };
    let mut expected = BTreeMap::<String, u64>::new();
    if named {
        let mut ok = true;
        let mut seen = Vec::new();
        for ((service, _, path), (g, prefix)) in SERVICES.iter().zip(guards.iter().zip(&prefixes)) {
            let (lo, hi) = binomial_bounds(split_n(path), 0.5);
            let chose_v2 = served_v2(path) + g.diverted;
            ok &= g.tripped == 1
                && g.open == 1
                && g.undivertable == 0
                && (lo..=hi).contains(&chose_v2);
            seen.push(format!(
                "{}guard.v2: {g}; served v2 + diverted {chose_v2} in {lo}..{hi}",
                prefix
                    .trim_start_matches("subset_router.")
                    .replace(".guard", "")
            ));
            let _ = service;
            set_guard_named(&mut expected, prefix, "v2", g);
        }
        cx.row(
            &format!("{n}: each configuration's own stats"),
            "subset_router.a.guard.v2.tripped 1 and subset_router.b.guard.v2.tripped 1, each \
             open 1, undivertable 0; per service, v2 served + diverted = half its split requests (4.5σ)",
            &seen.join("; "),
            ok,
        );
    } else {
        let g = guards[0];
        let chose_v2 = served_v2("/a") + served_v2("/b") + g.diverted;
        let (lo, hi) = binomial_bounds(split_n("/a") + split_n("/b"), 0.5);
        cx.row(
            &format!("{n}: both trips counted"),
            "subset_router.guard.v2.tripped 2 (both configurations count under the same unnamed \
             name, once each), open 1, undivertable 0; v2 served + diverted = half the split \
             requests (4.5σ)",
            &format!("{g}; served v2 + diverted {chose_v2} in {lo}..{hi}"),
            g.tripped == 2 && g.open == 1 && g.undivertable == 0 && (lo..=hi).contains(&chose_v2),
        );
        set_guard_named(&mut expected, "subset_router.", "v2", &g);
    }
    if let Some(t) = tripped_at {
        cx.figure(
            &format!("{n}: first 503 -> both trips in /stats"),
            format!("{t:.2}s"),
        );
    }

    // Decisions per configuration's prefix (one shared prefix when unnamed).
    for ((_, _, path), prefix) in SERVICES.iter().zip(&prefixes) {
        for e in all
            .iter()
            .filter(|e| e.path == *path && !e.served.is_empty())
        {
            let rule = if e.kind == Kind::Debug {
                "debug"
            } else {
                "canary"
            };
            *expected
                .entry(format!("{prefix}rule.{rule}.subset.{}", e.served))
                .or_default() += 1;
        }
    }
    let observed: Vec<(&str, Vec<Ev>)> = SERVICES
        .iter()
        .zip(&refs)
        .map(|((_, _, path), plugin)| (*plugin, of(path)))
        .collect();
    let observed: Vec<(&str, &[Ev])> = observed.iter().map(|(p, e)| (*p, e.as_slice())).collect();
    cx.final_counters(
        &envoy,
        &format!("{n}: counters"),
        &ExpectedStats(expected.clone()),
        &observed,
    );

    if named {
        prometheus_families(cx, &envoy, n, &expected)?;
    }
    Ok(())
}

/// [`set_guard`] under a configuration's stat prefix.
fn set_guard_named(st: &mut BTreeMap<String, u64>, prefix: &str, subset: &str, g: &GuardStats) {
    for (what, v) in [
        ("tripped", g.tripped),
        ("diverted", g.diverted),
        ("undivertable", g.undivertable),
    ] {
        if v > 0 {
            st.insert(format!("{prefix}guard.{subset}.{what}"), v);
        }
    }
}

/// `/stats/prometheus` of the named configurations, through the renderer's `stats_tags` in the
/// real Envoy: the decisions and the guard stats are the unnamed families with an `instance`
/// label, and no name per configuration is left.
fn prometheus_families(
    cx: &mut Ctx,
    envoy: &Envoy,
    n: &str,
    expected: &BTreeMap<String, u64>,
) -> Result<(), String> {
    let scrape = prometheus::scrape(envoy)?;
    let fam = prometheus::filter_prefix(cx.env.build.stat_prefix());
    let mut decisions: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    let mut tripped: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (service, _, _) in SERVICES {
        for (rule, subsets) in [("debug", &["v2"][..]), ("canary", &["v1", "v2"][..])] {
            for subset in subsets {
                let k = format!("subset_router.{service}.rule.{rule}.subset.{subset}");
                decisions.insert(
                    vec![service.into(), rule.into(), subset.to_string()],
                    expected.get(&k).copied().unwrap_or(0),
                );
            }
        }
        // The default route's decision counter exists at 0.
        decisions.insert(vec![service.into(), "default".into(), "v1".into()], 0);
        tripped.insert(
            vec![service.into(), "v2".into()],
            expected
                .get(&format!("subset_router.{service}.guard.v2.tripped"))
                .copied()
                .unwrap_or(0),
        );
    }
    let families = [
        "rule_subset",
        "guard_tripped",
        "guard_diverted",
        "guard_undivertable",
        "guard_open",
        "guard_requests",
        "guard_errors",
        "guard_slow",
        "spoofed_header_removed",
        "sticky_key_missing",
        "host_call_failed",
    ]
    .map(|f| format!("{fam}subset_router_{f}"));
    let family_refs: Vec<&str> = families.iter().map(String::as_str).collect();
    let leftovers = prometheus::unlabelled_leftovers(&scrape, &fam, &family_refs);
    let results = [
        prometheus::compare_family(
            &scrape,
            &format!("{fam}subset_router_rule_subset"),
            &["instance", "rule", "subset"],
            &decisions,
        ),
        prometheus::compare_family(
            &scrape,
            &format!("{fam}subset_router_guard_tripped"),
            &["instance", "subset"],
            &tripped,
        ),
    ];
    let spoofed: Vec<String> = SERVICES
        .iter()
        .map(|(s, _, _)| {
            format!(
                "{s}: {:?}",
                scrape.value(
                    &format!("{fam}subset_router_spoofed_header_removed"),
                    &[("instance", s)]
                )
            )
        })
        .collect();
    let spoofed_ok = SERVICES.iter().all(|(s, _, _)| {
        scrape.value(
            &format!("{fam}subset_router_spoofed_header_removed"),
            &[("instance", s)],
        ) == Some(0.0)
    });
    let ok = results.iter().all(Result::is_ok) && leftovers.is_empty() && spoofed_ok;
    cx.row(
        &format!("{n}: /stats/prometheus"),
        &format!(
            "{fam}subset_router_rule_subset{{instance,rule,subset}} and …_guard_tripped{{instance,subset}} \
             = /stats per configuration, …_spoofed_header_removed{{instance}} 0; no other \
             {fam}subset_router_* name"
        ),
        &format!(
            "{}; spoofed {}; leftovers {leftovers:?}",
            results
                .iter()
                .map(|r| match r {
                    Ok(s) => s.clone(),
                    Err(e) => format!("MISMATCH: {e}"),
                })
                .collect::<Vec<_>>()
                .join("; "),
            spoofed.join(", ")
        ),
        ok,
    );
    Ok(())
}
