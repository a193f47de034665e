//! `watch`: a live view of a rollout, one line a second — the split of the last second per
//! rule, each ramp's share and each guard's state, read from the filter's own stats — while
//! it sends a steady trickle of users (optionally with `x-fail: SUBSET`, which the examples'
//! upstreams answer with 503, to watch a guard trip).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use subset_router_it::http::Client;

use super::{counters, host_addr, url_addr, Failure};

pub struct WatchArgs {
    front: String,
    admin: String,
    rate: u32,
    fail: Option<String>,
    seconds: Option<u64>,
}

impl WatchArgs {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut it = args.iter();
        let (Some(front), Some(admin)) = (it.next(), it.next()) else {
            return Err(
                "watch takes FRONT_HOST:PORT ADMIN_URL [--rate N] [--fail SUBSET] [--seconds N]"
                    .into(),
            );
        };
        let mut a = WatchArgs {
            front: front.clone(),
            admin: admin.clone(),
            rate: 50,
            fail: None,
            seconds: None,
        };
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--rate" => {
                    a.rate = value
                        .parse()
                        .map_err(|_| format!("--rate: not a number: {value:?}"))?
                }
                "--fail" => a.fail = Some(value.clone()),
                "--seconds" => {
                    a.seconds = Some(
                        value
                            .parse()
                            .map_err(|_| format!("--seconds: not a number: {value:?}"))?,
                    )
                }
                other => return Err(format!("watch: unknown option {other:?}")),
            }
        }
        Ok(a)
    }
}

pub fn watch(a: &WatchArgs) -> Result<std::process::ExitCode, Failure> {
    let front_addr = host_addr(&a.front).map_err(|e| format!("FRONT: {e}"))?;
    let admin_addr = url_addr(&a.admin).map_err(|e| format!("ADMIN: {e}"))?;
    let mut front = Client::new(front_addr).with_timeout(Duration::from_secs(2));
    let mut admin = Client::new(admin_addr).with_timeout(Duration::from_secs(2));
    println!(
        "watching {} ({} users/s{}); one line a second: the last second's split per rule, ramps, guards. Ctrl-C stops.",
        a.front,
        a.rate,
        a.fail
            .as_ref()
            .map(|s| format!(", each with x-fail: {s} (its upstream answers 503)"))
            .unwrap_or_default()
    );
    let started = Instant::now();
    let mut before = counters(&mut admin)?;
    let mut user = 0u64;
    loop {
        let second = Instant::now();
        let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
        for _ in 0..a.rate {
            user += 1;
            let id = format!("user-{}", user % 1000);
            let mut headers = vec![("x-user-id", id.as_str())];
            if let Some(s) = &a.fail {
                headers.push(("x-fail", s.as_str()));
            }
            let status = front.get("/", &headers).map(|r| r.status).unwrap_or(0);
            *statuses.entry(status).or_default() += 1;
        }
        if let Some(rest) = Duration::from_secs(1).checked_sub(second.elapsed()) {
            std::thread::sleep(rest);
        }
        let now = counters(&mut admin)?;
        let gauges = gauges(&mut admin)?;
        println!(
            "{}",
            line(started.elapsed(), &before, &now, &gauges, &statuses)
        );
        before = now;
        if a.seconds
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s))
        {
            return Ok(std::process::ExitCode::SUCCESS);
        }
    }
}

type Decisions = BTreeMap<(String, String), u64>;

fn line(
    t: Duration,
    before: &Decisions,
    now: &Decisions,
    gauges: &BTreeMap<String, u64>,
    statuses: &BTreeMap<u16, u64>,
) -> String {
    let mut per_rule: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for ((rule, subset), v) in now {
        let d = v.saturating_sub(
            before
                .get(&(rule.clone(), subset.clone()))
                .copied()
                .unwrap_or(0),
        );
        per_rule.entry(rule).or_default().push((subset, d));
    }
    let mut parts = vec![format!("{:>4}s", t.as_secs())];
    for (rule, subsets) in per_rule {
        let total: u64 = subsets.iter().map(|(_, d)| d).sum();
        if total == 0 {
            continue;
        }
        let split = subsets
            .iter()
            .map(|(s, d)| format!("{s} {:.0}%", *d as f64 * 100.0 / total as f64))
            .collect::<Vec<_>>()
            .join(" ");
        parts.push(format!("{rule}: {split} ({total}/s)"));
    }
    for (name, v) in gauges {
        if let Some(rule) = name
            .strip_suffix(".ramp_ppm")
            .and_then(|n| n.strip_prefix("rule."))
        {
            parts.push(format!("ramp {rule} {:.2}%", *v as f64 / 10_000.0));
        }
        if let Some(subset) = name
            .strip_suffix(".open")
            .and_then(|n| n.strip_prefix("guard."))
        {
            let tripped = gauges
                .get(&format!("guard.{subset}.tripped"))
                .copied()
                .unwrap_or(0);
            let state = if *v == 1 { "OPEN" } else { "closed" };
            parts.push(format!("guard {subset} {state} (tripped {tripped})"));
        }
    }
    let codes = statuses
        .iter()
        .map(|(s, n)| format!("{s}x{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    parts.push(format!("responses {codes}"));
    parts.join(" | ")
}

/// The filter's ramp and guard stats (`rule.<r>.ramp_ppm`, `guard.<s>.open`, `.tripped`),
/// without Envoy's namespace and the `subset_router.` prefix.
pub(super) fn gauges(admin: &mut Client) -> Result<BTreeMap<String, u64>, String> {
    let r = admin
        .get("/stats?filter=subset_router", &[])
        .map_err(|e| format!("admin /stats: {e}"))?;
    Ok(subset_router_it::envoy::parse_stats(&r.body_str())
        .into_iter()
        .filter_map(|(name, v)| {
            let (_, name) = subset_router_it::report::split_namespace(&name);
            let name = name.strip_prefix("subset_router.")?;
            (name.ends_with(".ramp_ppm") || name.ends_with(".open") || name.ends_with(".tripped"))
                .then(|| (name.to_owned(), v))
        })
        .collect())
}
