//! compat cell `route-cache`: a second, tiny boot with the route-cache probe (`probe.rs`),
//! which asks this Envoy about `clear_route_cache` and whether its router follows a rewritten
//! routing header.

use super::*;

/// What the probe's responses said, counted per value.
struct ProbeResult {
    served: BTreeMap<String, u64>,
    codes: BTreeMap<String, u64>,
    /// `xds.cluster_name` as the probe read it before rewriting (`-`: no route resolved yet).
    routes: BTreeMap<String, u64>,
    /// The same property read when the response arrived (the control).
    routes_after: BTreeMap<String, u64>,
    errors: Vec<String>,
}

fn probe_mode(envoy: &Envoy, path: &str, n: u64) -> ProbeResult {
    let mut c = envoy.client();
    let mut r = ProbeResult {
        served: BTreeMap::new(),
        codes: BTreeMap::new(),
        routes: BTreeMap::new(),
        routes_after: BTreeMap::new(),
        errors: Vec::new(),
    };
    for i in 0..n {
        match c.get(
            &format!("{path}/{i}"),
            &[(probe::HEADER, probe::CLIENT_VALUE)],
        ) {
            Ok(resp) => {
                let by = if resp.status == 200 {
                    resp.header("x-served-by").unwrap_or("?").to_string()
                } else {
                    format!(
                        "{} {}",
                        resp.status,
                        resp.header("x-front-flags").unwrap_or("-")
                    )
                };
                *r.served.entry(by).or_default() += 1;
                let code = resp
                    .header(probe::RESULT_HEADER)
                    .unwrap_or("absent")
                    .to_string();
                *r.codes.entry(code).or_default() += 1;
                let route = resp
                    .header(probe::ROUTE_HEADER)
                    .unwrap_or("absent")
                    .to_string();
                *r.routes.entry(route).or_default() += 1;
                let after = resp
                    .header(probe::ROUTE_AFTER_HEADER)
                    .unwrap_or("absent")
                    .to_string();
                *r.routes_after.entry(after).or_default() += 1;
            }
            Err(e) => r.errors.push(e),
        }
    }
    r
}

fn code_name(code: &str) -> String {
    match code.parse::<u32>() {
        Ok(probe::FFI_OK) => "Ok".into(),
        Ok(probe::FFI_NOT_FOUND) => "NotFound".into(),
        Ok(n) => format!("status {n}"),
        Err(_) => format!("{code:?}"),
    }
}

/// One value when every request agreed, else the counts.
fn only(m: &BTreeMap<String, u64>) -> Option<&str> {
    (m.len() == 1).then(|| m.keys().next().unwrap().as_str())
}

fn describe_counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn router_uses(r: &ProbeResult) -> String {
    match only(&r.served) {
        Some(v) if v == probe::CLIENT_VALUE => "the stale route (`v1`)".into(),
        Some(v) if v == probe::REWRITTEN_VALUE => "the rewritten header (`v2`)".into(),
        _ => format!("mixed: {}", describe_counts(&r.served)),
    }
}

pub(super) fn probe_run(cx: &mut Ctx) -> Result<(), String> {
    cx.cell = "route-cache";
    let mut env = cx.env.clone();
    env.build = FilterBuild::Wasm(cx.probe_wasm.clone());
    let (mut envoy, validation) =
        Envoy::launch_with(&env, "route-cache-probe", "{}", &LaunchOptions::default())?;
    if !validation.ok {
        return Err(format!(
            "`envoy --mode validate` rejected the probe: {}",
            envoy::first_error_line(&validation.output)
        ));
    }
    envoy.wait_ready()?;
    const N: u64 = 20;
    let clear = probe_mode(&envoy, probe::CLEAR_PATH, N);
    let auto = probe_mode(&envoy, probe::AUTO_PATH, N);
    let nosuch = probe_mode(&envoy, probe::NOSUCH_PATH, N);
    println!(
        "    probe: /clear served {:?} codes {:?} route before {:?}; /auto served {:?} route before {:?}; /nosuch served {:?} codes {:?}",
        clear.served, clear.codes, clear.routes, auto.served, auto.routes, nosuch.served, nosuch.codes
    );
    let errors: Vec<&String> = clear
        .errors
        .iter()
        .chain(&auto.errors)
        .chain(&nosuch.errors)
        .collect();
    let ffi = only(&clear.codes).map(code_name);
    cx.fact(
        "ffi",
        ffi.clone()
            .unwrap_or_else(|| format!("mixed: {}", describe_counts(&clear.codes))),
    );
    let mut routes = auto.routes.clone();
    for (k, v) in clear.routes.iter().chain(&nosuch.routes) {
        *routes.entry(k.clone()).or_default() += v;
    }
    // The control: once the response arrives, the property names the cluster that served.
    let readable = [&clear, &auto]
        .iter()
        .all(|r| !r.served.is_empty() && r.routes_after == r.served);
    cx.check(
        "probe control: xds.cluster_name readable once routed",
        "read in on_response_headers = the cluster that served",
        &format!(
            "with clear: {}; without: {}",
            describe_counts(&clear.routes_after),
            describe_counts(&auto.routes_after)
        ),
        readable,
    );
    cx.fact(
        "pre-route",
        match only(&routes) {
            _ if !readable => "unknown (the property could not be read)".to_string(),
            Some("-") | Some("") => "no (resolved after the filter)".to_string(),
            Some(c) => format!("yes (`{c}`, the client's header)"),
            None => format!("mixed: {}", describe_counts(&routes)),
        },
    );
    cx.fact("no-clear", router_uses(&auto));
    cx.fact("clear", router_uses(&clear));
    let control = only(&nosuch.codes).map(code_name);
    cx.check(
        "probe control: an unknown foreign function",
        "NotFound (the probe reads statuses right)",
        &control
            .clone()
            .unwrap_or_else(|| describe_counts(&nosuch.codes)),
        control.as_deref() == Some("NotFound") && errors.is_empty(),
    );
    let followed = |r: &ProbeResult| only(&r.served) == Some(probe::REWRITTEN_VALUE);
    let (expected, pass) = match ffi.as_deref() {
        Some("Ok") => (
            "clear_route_cache Ok → router follows the rewritten header",
            followed(&clear),
        ),
        Some("NotFound") => (
            "clear_route_cache NotFound → the Envoy follows the rewritten header by itself",
            followed(&auto),
        ),
        _ => ("clear_route_cache Ok or NotFound", false),
    };
    cx.check(
        "the filter's route-cache assumption holds",
        expected,
        &format!(
            "clear_route_cache {}; with it: {}; without: {}{}",
            ffi.unwrap_or_else(|| "?".into()),
            describe_counts(&clear.served),
            describe_counts(&auto.served),
            errors
                .first()
                .map(|e| format!(" -- first error: {e}"))
                .unwrap_or_default()
        ),
        pass && errors.is_empty(),
    );
    cx.note_deprecations(&envoy.logs());
    Ok(())
}
