//! reliability scenario 3: Live reload through ECDS under load

use super::*;

pub(super) const MEASURE: u64 = 3000;
pub(super) const RELOAD_IDS: u64 = 600;

pub(super) fn reload_plugin(route: &str) -> String {
    format!(
        r#"{{"responseHeader": "x-routed-subset",
  "rules": [{{"name": "canary", "match": {{"pathPrefix": "/"}}, "route": {route}}}],
  "default": {{"subset": "v1"}}}}"#
    )
}

pub(super) fn ecds_counter(envoy: &Envoy, what: &str) -> u64 {
    envoy
        .stats(&format!(
            "extension_config_discovery.http_filter.{}",
            envoy_config::ECDS_NAME
        ))
        .map(|m| stat(&m, &format!(".{what}")))
        .unwrap_or(0)
}

pub(super) fn wait_counter(
    envoy: &Envoy,
    what: &str,
    above: u64,
    timeout: Duration,
) -> Result<Duration, String> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if ecds_counter(envoy, what) > above {
            return Ok(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!(
        "extension_config_discovery.http_filter.{}.{what} did not move within {timeout:?}",
        envoy_config::ECDS_NAME
    ))
}

pub(super) fn live_reload(cx: &mut Ctx) -> Result<(), String> {
    let p90 = reload_plugin(
        r#"{"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}]}"#,
    );
    let invalid = reload_plugin(
        r#"{"split": [{"subset": "v1", "weight": 1000001}, {"subset": "v2", "weight": 10}]}"#,
    );
    let invalid_line = "rules[0].route.split[0].weight: 1000001 exceeds 1000000";
    let p50 = reload_plugin(
        r#"{"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}]}"#,
    );
    let sticky = reload_plugin(
        r#"{"split": [{"subset": "v1", "weight": 80}, {"subset": "v2", "weight": 20}], "stickyBy": {"header": "x-user-id"}}"#,
    );

    let opts = LaunchOptions {
        ecds: true,
        ..LaunchOptions::default()
    };
    let (mut envoy, validation) = Envoy::launch_with(&cx.hardened, "live-reload", &p90, &opts)?;
    if !validation.ok {
        return Err(format!(
            "validate rejected the ECDS config: {}",
            envoy::first_error_line(&validation.output)
        ));
    }
    envoy.wait_ready()?;
    println!(
        "    envoy `live-reload` ready (ECDS file {}/{}/{})",
        envoy.dir.display(),
        envoy::ECDS_DIR,
        envoy_config::ECDS_FILE
    );

    let ex = Expect {
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    };
    let labels = vec!["v1".to_string(), "v2".to_string()];
    let load = Load::start(LoadSpec {
        addr: envoy.front(),
        threads: 4,
        total: None,
        labels: labels.clone(),
        make: Arc::new(|seq| {
            let id = seq % RELOAD_IDS;
            (
                get_request(
                    &format!("/reload/{seq}"),
                    &[("x-user-id", &format!("user-{id:04}"))],
                ),
                id as u32,
            )
        }),
        check: Arc::new(move |r| ex.check(r)),
        checkpoints: vec![],
        sample: None,
    });

    // Phases: odd = measured window, even = swap in progress.
    let mut steps: Vec<(String, Result<Duration, String>)> = Vec::new();
    let mut phases = || -> Result<(), String> {
        load.set_phase(1);
        load.wait_more(MEASURE, Duration::from_secs(60));
        let swap =
            |label: &str, plugin: &str, counter: &str, phase: u32| -> Result<Duration, String> {
                load.set_phase(phase);
                let before = ecds_counter(&envoy, counter);
                let t = Instant::now();
                envoy.replace_ecds(&cx.env, plugin)?;
                let d = wait_counter(&envoy, counter, before, Duration::from_secs(20))
                    .map(|_| t.elapsed());
                // Workers pick the new filter config up through their thread-local slots.
                std::thread::sleep(Duration::from_millis(300));
                load.set_phase(phase + 1);
                load.wait_more(MEASURE, Duration::from_secs(60));
                println!("    swap {label}: {d:?}");
                d
            };
        steps.push((
            "invalid (weight 1000001)".into(),
            swap("invalid", &invalid, "config_fail", 2),
        ));
        steps.push(("50/50".into(), swap("50/50", &p50, "update_success", 4)));
        steps.push((
            "sticky 80/20".into(),
            swap("sticky 80/20", &sticky, "update_success", 6),
        ));
        Ok(())
    };
    let run = phases();
    let res = load.finish(true);
    run?;
    cx.count(res.sent, res.failures);
    for (label, d) in &steps {
        if let Err(e) = d {
            cx.row(
                &format!("3 reload: swap to {label}"),
                "Envoy notices the renamed file",
                &format!("ERROR: {e}"),
                false,
            );
        }
    }

    let window =
        |phase: u32| -> Vec<_> { res.records.iter().filter(|r| r.phase == phase).collect() };
    let split_row = |cx: &mut Ctx, label: &str, phase: u32, p_v2: f64| {
        let w = window(phase);
        let n = w.len() as u64;
        let v2 = w.iter().filter(|r| r.outcome == 1).count() as u64;
        let failed = w.iter().filter(|r| r.outcome == FAILED).count();
        let (lo, hi) = binomial_bounds(n, p_v2);
        cx.row(
            label,
            &format!("v2 {:.0}% of N={n}: [{lo}..{hi}]", p_v2 * 100.0),
            &format!(
                "v2 {v2} ({:.1}%), failed {failed}",
                100.0 * v2 as f64 / n.max(1) as f64
            ),
            failed == 0 && v2 >= lo && v2 <= hi && n >= MEASURE,
        );
    };
    split_row(cx, "3 reload: initial 90/10", 1, 0.10);

    let fails = ecds_counter(&envoy, "config_fail");
    let log = envoy.logs();
    let line = logged(&log, invalid_line);
    cx.row(
        "3 reload: invalid config rejected",
        &format!("ECDS config_fail = 1, log: {invalid_line}"),
        &format!(
            "config_fail {fails}, update_rejected {}, line in log: {line}",
            ecds_counter(&envoy, "update_rejected")
        ),
        fails == 1 && line,
    );
    split_row(
        cx,
        "3 reload: after the invalid swap, 90/10 keeps serving",
        3,
        0.10,
    );
    split_row(cx, "3 reload: after swap to 50/50", 5, 0.50);

    // Sticky 80/20: every id on one subset; share of ids on v2 ~ 20%.
    let w = window(7);
    let mut by_id: BTreeMap<u32, BTreeSet<u16>> = BTreeMap::new();
    for r in &w {
        if r.outcome != FAILED {
            by_id.entry(r.key).or_default().insert(r.outcome);
        }
    }
    let split_ids = by_id.values().filter(|s| s.len() > 1).count();
    let ids_v2 = by_id
        .values()
        .filter(|s| s.len() == 1 && s.contains(&1))
        .count() as u64;
    let ids = by_id.len() as u64;
    let (lo, hi) = binomial_bounds(ids, 0.20);
    let failed = w.iter().filter(|r| r.outcome == FAILED).count();
    cx.row(
        "3 reload: after swap to sticky 80/20",
        &format!("{ids} ids: each on 1 subset, ids on v2 20% [{lo}..{hi}]"),
        &format!(
            "{} requests, ids on v2 {ids_v2} ({:.1}%), ids on 2 subsets {split_ids}, failed {failed}",
            w.len(),
            100.0 * ids_v2 as f64 / ids.max(1) as f64
        ),
        failed == 0 && split_ids == 0 && ids_v2 >= lo && ids_v2 <= hi && ids == RELOAD_IDS,
    );
    let ok_swaps = ecds_counter(&envoy, "update_success");
    cx.row(
        "3 reload: whole run under load",
        "0 failed requests (resets, errors, non-2xx); 3 valid configs applied (update_success 3)",
        &format!(
            "{} requests at {:.0}/s, {} failed, {} graceful reconnects; update_success {ok_swaps}{}",
            res.sent,
            res.rps(),
            res.failures,
            res.reconnects,
            res.failure_samples.first().map(|s| format!(" (first failure: {s})")).unwrap_or_default()
        ),
        res.failures == 0 && ok_swaps == 3,
    );
    // The rejected update logs the filter's lines and Envoy's "failed to load" lines; any
    // other wasm error would be a failure.
    let expected_rejection = [
        "subset-router: invalid configuration:",
        "subset-router: configuration rejected",
        "Failed to configure base Wasm plugin",
        "Plugin subset_router failed to load",
        "Plugin configured to fail closed failed to load",
    ];
    let wasm_fail = filter_failure_lines(&log)
        .into_iter()
        .filter(|l| !expected_rejection.iter().any(|e| l.contains(e)))
        .collect::<Vec<_>>();
    if !wasm_fail.is_empty() {
        cx.row(
            "3 reload: Envoy log",
            "no wasm failure besides the rejected config",
            &wasm_fail[0],
            false,
        );
    }
    cx.figure(
        "live reload: requests / failed / reconnects",
        format!("{} / {} / {}", res.sent, res.failures, res.reconnects),
    );
    cx.figure(
        "live reload: configs rejected by Envoy (ECDS config_fail)",
        fails.to_string(),
    );
    Ok(())
}
