//! reliability scenario 6: Envoy Gateway's shape: the filter disabled at the listener, enabled per route

use super::*;

pub(super) const EG_FORGED_N: u64 = 1000;

/// Envoy Gateway adds an EnvoyExtensionPolicy's filter disabled at the listener and enables
/// it per targeted route (`typed_per_filter_config`). The routes here are those of
/// examples/envoy-gateway: HTTPRoute `app` (`x-subset: v1` and the default rule -> v1) and
/// HTTPRoute `app-v2` (`x-subset: v2` -> v2). A policy on the Gateway enables the filter on
/// every route: a forged `x-subset: v2` is removed and never reaches v2. A policy on HTTPRoute
/// `app` alone leaves the `x-subset: v2` route without the filter: the forged header reaches
/// v2 and nothing counts it -- the leak the README warns about, demonstrated here.
pub(super) fn envoy_gateway_shapes(cx: &mut Ctx) -> Result<(), String> {
    let plugin = r#"{"subsetHeader": "x-subset", "rules": [], "default": {"subset": "v1"}}"#;
    let every_route = ["v1", "v2", "v3", envoy_config::FINAL_ROUTE];
    let app_only = ["v1", envoy_config::FINAL_ROUTE];
    for (shape, routes, leaks) in [
        (
            "policy on the Gateway (every route)",
            &every_route[..],
            false,
        ),
        ("policy on HTTPRoute app only", &app_only[..], true),
    ] {
        let opts = LaunchOptions {
            filter_routes: Some(routes.iter().map(|r| r.to_string()).collect()),
            ..LaunchOptions::default()
        };
        let name = if leaks {
            "eg-one-route"
        } else {
            "eg-every-route"
        };
        let envoy = Envoy::start_with(&cx.hardened, name, plugin, &opts)?;
        let before = envoy.stats("subset_router")?;
        let mut conn = Conn::new(envoy.front());
        let mut served: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..EG_FORGED_N {
            let req =
                format!("GET /eg/{i} HTTP/1.1\r\nhost: subset-router.test\r\nx-subset: v2\r\n\r\n");
            let by = match conn.send(req.as_bytes()) {
                Ok(r) if r.status == 200 => r.header("x-served-by").unwrap_or("-").to_string(),
                Ok(r) => format!("status {}", r.status),
                Err(_) => "error".to_string(),
            };
            *served.entry(by).or_default() += 1;
        }
        cx.count(EG_FORGED_N, 0);
        let after = envoy.stats("subset_router")?;
        let spoofed = stat(&after, "subset_router.spoofed_header_removed")
            - stat(&before, "subset_router.spoofed_header_removed");
        let v1 = served.get("v1").copied().unwrap_or(0);
        let v2 = served.get("v2").copied().unwrap_or(0);
        let obs = served
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(" / ");
        if leaks {
            cx.row(
                &format!("6 Envoy Gateway shape: {shape}"),
                &format!(
                    "the leak: {EG_FORGED_N} forged x-subset: v2 reach v2 (route without the \
                     filter), spoofed_header_removed +0"
                ),
                &format!("{obs}; spoofed_header_removed +{spoofed}"),
                v2 == EG_FORGED_N && spoofed == 0,
            );
        } else {
            cx.row(
                &format!("6 Envoy Gateway shape: {shape}"),
                &format!(
                    "0 of {EG_FORGED_N} forged x-subset: v2 reach v2 (all v1), \
                     spoofed_header_removed +{EG_FORGED_N}"
                ),
                &format!("{obs}; spoofed_header_removed +{spoofed}"),
                v1 == EG_FORGED_N && v2 == 0 && spoofed == EG_FORGED_N,
            );
        }
    }
    Ok(())
}
