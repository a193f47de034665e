//! compat cell `invalid`: an invalid configuration, refused at start-up (`--mode validate`)
//! and as an ECDS update, after which the previous configuration keeps serving.

use super::*;

/// Refused at start-up and as an ECDS update, with this line in the log.
const PLUGIN_INVALID: &str = r#"{
  "rules": [{"name": "canary", "match": {"pathPrefix": "/"},
             "route": {"split": [{"subset": "v1", "weight": 1000001}, {"subset": "v2", "weight": 1}]}}],
  "default": {"subset": "v1"}
}"#;
const INVALID_LINE: &str = "rules[0].route.split[0].weight: 1000001 exceeds 1000000";

/// The invalid configuration: refused by `--mode validate` (the start-up path) and as an ECDS
/// update, after which the Istio configuration keeps serving.
pub(super) fn invalid(cx: &mut Ctx, envoy: &Envoy) -> Result<(), String> {
    let v = Envoy::validate_only(
        &cx.env,
        "invalid-static",
        PLUGIN_INVALID,
        &LaunchOptions::default(),
    )?;
    cx.note_deprecations(&v.output);
    let named = v.output.contains(INVALID_LINE);
    cx.check(
        "envoy --mode validate (start-up)",
        &format!("fails, output names `{INVALID_LINE}`"),
        &format!(
            "{}, line in output: {}",
            if v.ok { "PASSED" } else { "failed" },
            if named { "yes" } else { "no" }
        ),
        !v.ok && named,
    );

    let fails = ecds_counter(envoy, "config_fail");
    let ok_before = ecds_counter(envoy, "update_success");
    let before = filter_counters(envoy)?;
    envoy.replace_ecds(&cx.env, PLUGIN_INVALID)?;
    let rejected = wait_until(Duration::from_secs(20), || {
        ecds_counter(envoy, "config_fail") > fails
    });
    // Give a wrongly accepted update the time to show before measuring.
    std::thread::sleep(Duration::from_millis(300));
    let log = envoy.logs();
    let logged = log.contains(INVALID_LINE);
    cx.check(
        "ECDS update rejected",
        &format!("config_fail +1, update_success +0, log names `{INVALID_LINE}`"),
        &format!(
            "config_fail +{}, update_success +{}, line in log: {}",
            ecds_counter(envoy, "config_fail") - fails,
            ecds_counter(envoy, "update_success") - ok_before,
            if logged { "yes" } else { "no" }
        ),
        rejected && logged && ecds_counter(envoy, "update_success") == ok_before,
    );
    let mut c = envoy.client();
    let ex = expect_istio();
    let pin = send_same(&mut c, 100, &ex, "/stable/after-invalid", &[]);
    let reviews = send(&mut c, 100, &ex, |i| {
        (format!("/reviews/after-invalid/{i}"), vec![])
    });
    let after = filter_counters(envoy)?;
    let mut st = ExpectedStats::default();
    st.rule_tally("istio-pin", &pin)
        .rule_tally("istio-reviews", &reviews);
    let res = compare_delta(&before, &after, &st);
    let mut both = pin.clone();
    both.merge(&reviews);
    cx.check(
        "previous (Istio) config keeps serving",
        "200 requests routed by istio-pin / istio-reviews, counters = requests",
        &format!(
            "{}; counters {}",
            both.describe(&["v1", "v2"]),
            res.clone()
                .map(|_| "equal".to_string())
                .unwrap_or_else(|e| e)
        ),
        both.errors == 0 && pin.get("v1") == pin.total && res.is_ok(),
    );
    Ok(())
}
