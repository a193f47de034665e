//! compat cell `boot`: the filter's one Envoy, its configuration delivered by file-based ECDS;
//! validated, ready, every declared counter at 0 before the first request.

use super::*;

/// Launches the Envoy every later cell of the main configuration runs on.
pub(super) fn boot(cx: &mut Ctx) -> Result<Envoy, String> {
    let t = Instant::now();
    let opts = LaunchOptions {
        ecds: true,
        ..LaunchOptions::default()
    };
    let (mut envoy, validation) = Envoy::launch_with(&cx.env, "compat", PLUGIN_MAIN, &opts)?;
    cx.note_deprecations(&validation.output);
    if !validation.ok {
        return Err(format!(
            "`envoy --mode validate` rejected the rendered config: {}",
            envoy::first_error_line(&validation.output)
        ));
    }
    envoy.wait_ready()?;
    // The listener serves once the ECDS resource is applied; the counters are defined then.
    let mut at_start = Err(String::from("not checked"));
    wait_until(Duration::from_secs(10), || {
        at_start = counters_at_start(&envoy, PLUGIN_MAIN);
        at_start.is_ok()
    });
    cx.boot_secs = t.elapsed().as_secs_f64();
    let ok = at_start.is_ok();
    cx.check(
        "validate, ready, counters before the first request",
        "ready; every counter the config declares in /stats at 0",
        &format!(
            "ready in {:.1}s; {}",
            cx.boot_secs,
            at_start.unwrap_or_else(|e| e)
        ),
        ok,
    );
    let prefixes: BTreeSet<&str> = envoy
        .raw_stats()?
        .keys()
        .filter(|k| split_namespace(k).1.starts_with("subset_router."))
        .map(|k| split_namespace(k).0)
        .collect();
    cx.fact(
        "prefix",
        prefixes
            .iter()
            .map(|p| format!("`{p}subset_router.*`"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    cx.fact(
        "wasm-config",
        if validation.ok {
            "accepted"
        } else {
            "rejected"
        },
    );
    Ok(envoy)
}
