//! compat cell `istio`: an ECDS update to an Istio-style configuration (`subsetHeader` on,
//! `clusterHeader` off), measured like the first one.

use super::*;

const ISTIO_N: u64 = 1000;

/// The second configuration, delivered by an ECDS update: Istio's way (a VirtualService
/// matching `x-subset` against DestinationRule subsets; no cluster header).
const PLUGIN_ISTIO: &str = r#"{
  "clusterHeader": null,
  "subsetHeader": "x-subset",
  "responseHeader": "x-routed-subset",
  "rules": [
    {"name": "istio-pin", "match": {"pathPrefix": "/stable"}, "route": {"subset": "v1"}},
    {"name": "istio-reviews", "match": {"pathPrefix": "/"},
     "route": {"split": [{"subset": "v1", "weight": 80}, {"subset": "v2", "weight": 20}]}}
  ],
  "default": {"subset": "v1"}
}"#;

pub(super) fn expect_istio() -> Expect {
    Expect {
        cluster_template: None,
        subset_header: true,
        response_header: Some("x-routed-subset".into()),
        ..Expect::default()
    }
}

/// ECDS update to the Istio-style configuration, then the same kind of measurements.
pub(super) fn istio(cx: &mut Ctx, envoy: &Envoy) -> Result<(), String> {
    let before = ecds_counter(envoy, "update_success");
    let t = Instant::now();
    envoy.replace_ecds(&cx.env, PLUGIN_ISTIO)?;
    let applied = wait_until(Duration::from_secs(20), || {
        ecds_counter(envoy, "update_success") > before
            && envoy
                .stats("subset_router.rule.istio")
                .map(|m| !m.is_empty())
                .unwrap_or(false)
    });
    if !applied {
        return Err("the ECDS update to the Istio config was not applied within 20s".into());
    }
    // The worker picks the new filter config up through its thread-local slot: wait for the
    // first response routed the new way (no x-upstream-cluster upstream).
    let ex = expect_istio();
    let mut c = envoy.client();
    let mut warm = 0u64;
    let switched = wait_until(Duration::from_secs(10), || {
        warm += 1;
        c.get("/stable/warm", &[])
            .map(|r| ex.check(&r).is_ok())
            .unwrap_or(false)
    });
    cx.check(
        "ECDS update applied",
        "update_success +1, the new rules' counters defined, requests routed the new way",
        &format!(
            "after {:.2}s, {warm} warm-up request(s)",
            t.elapsed().as_secs_f64()
        ),
        switched,
    );
    if !switched {
        return Err("requests still routed by the first config".into());
    }
    let declared = report::declared_counters(PLUGIN_ISTIO)?;
    let before = filter_counters(envoy)?;
    let missing: Vec<&String> = declared
        .iter()
        .filter(|d| !before.contains_key(*d))
        .collect();
    cx.check(
        "counters of the new config",
        "every counter it declares is in /stats",
        &if missing.is_empty() {
            format!("{} present", declared.len())
        } else {
            format!("missing {missing:?}")
        },
        missing.is_empty(),
    );
    let t = send(&mut c, ISTIO_N, &ex, |i| {
        (format!("/reviews/{}", i % 5), vec![])
    });
    cx.split(
        "x-subset route 80/20, clusterHeader off",
        &t,
        &[("v1", 80), ("v2", 20)],
    );
    let spoof = send_same(&mut c, 200, &ex, "/stable", &[("x-subset", "v2")]);
    cx.all_to("client-sent x-subset: v2 replaced", &spoof, "v1");
    let after = filter_counters(envoy)?;
    let mut st = ExpectedStats::default();
    st.rule_tally("istio-reviews", &t)
        .rule_tally("istio-pin", &spoof)
        .spoofed(spoof.total);
    let res = compare_delta(&before, &after, &st);
    cx.check(
        "counters = requests sent",
        &st.describe(),
        &res.clone()
            .map(|_| "equal".to_string())
            .unwrap_or_else(|e| e),
        res.is_ok(),
    );
    Ok(())
}
