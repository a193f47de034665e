//! `subset-router`: the filter's own validation and decision code as a host command, for CI
//! pipelines and for trying a configuration before it ships.
//!
//! ```text
//! subset-router validate CONFIG...
//! subset-router simulate CONFIG [--requests N] [-H 'name: value']... [--sticky-keys K] [--seed S]
//! subset-router schema
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;

use subset_router::request::OwnedRequest;
use subset_router::router::StickyKey;
use subset_router::{load, Router, WyRand};

const USAGE: &str = "usage:
  subset-router validate CONFIG...        check configurations; prints `path: reason` errors, exit 1 if any
  subset-router simulate CONFIG [options] decide N requests and print the split per rule and subset
      --requests N          requests to simulate (default 10000)
      -H, --header 'n: v'   add a request header to every request (repeatable; ':path', ':authority',
                            ':method' are headers too)
      --sticky-keys K       give requests K distinct sticky keys (user-0 .. user-K-1), put wherever the
                            config's sticky rules read them (header, cookie, query or source IP)
      --source-ip IP        the downstream peer address
      --seed S              seed of the random splits (default: time-based)
  subset-router schema                    print the JSON Schema of the configuration
CONFIG may be - for standard input.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("validate") if args.len() > 1 => Ok(validate(&args[1..])),
        Some("simulate") if args.len() > 1 => simulate(&args[1..]),
        Some("schema") => schema(),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(USAGE.to_owned()),
    };
    result.unwrap_or_else(|message| {
        eprintln!("{message}");
        ExitCode::from(2)
    })
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("stdin: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))
    }
}

fn validate(paths: &[String]) -> ExitCode {
    let mut failed = false;
    for path in paths {
        match read(path).map_err(|e| vec![e]).and_then(|json| {
            load(&json).map_err(|errors| errors.iter().map(ToString::to_string).collect())
        }) {
            Ok(router) => println!(
                "{path}: ok ({} rule(s) + default; subsets: {})",
                router.rule_names().count() - 1,
                subsets(&router).join(", ")
            ),
            Err(errors) => {
                failed = true;
                for e in errors {
                    eprintln!("{path}: {e}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn subsets(router: &Router) -> Vec<String> {
    let mut all: Vec<String> = router.slots().iter().map(|s| s.subset.clone()).collect();
    all.sort();
    all.dedup();
    all
}

fn simulate(args: &[String]) -> Result<ExitCode, String> {
    let mut config = None;
    let mut requests: u64 = 10_000;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut sticky_keys: Option<u64> = None;
    let mut source: Option<std::net::IpAddr> = None;
    let mut seed: Option<u64> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or(format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--requests" => {
                requests = value("--requests")?
                    .parse()
                    .map_err(|e| format!("--requests: {e}"))?
            }
            "-H" | "--header" => headers.push(parse_header(&value("-H")?)?),
            "--sticky-keys" => {
                sticky_keys = Some(
                    value("--sticky-keys")?
                        .parse()
                        .map_err(|e| format!("--sticky-keys: {e}"))?,
                )
            }
            "--source-ip" => {
                source = Some(
                    value("--source-ip")?
                        .parse()
                        .map_err(|e| format!("--source-ip: {e}"))?,
                )
            }
            "--seed" => {
                seed = Some(
                    value("--seed")?
                        .parse()
                        .map_err(|e| format!("--seed: {e}"))?,
                )
            }
            path if config.is_none() && !path.starts_with('-') || path == "-" => {
                config = Some(path.to_owned())
            }
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    let path = config.ok_or(USAGE)?;
    let router = match load(&read(&path)?) {
        Ok(r) => r,
        Err(errors) => {
            for e in errors {
                eprintln!("{path}: {e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let sticky: Vec<StickyKey> = router
        .summaries()
        .into_iter()
        .filter_map(|s| s.sticky)
        .collect();
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut rng = WyRand::new(seed);
    let mut counts: BTreeMap<usize, u64> = BTreeMap::new();
    let mut missing = 0u64;
    for i in 0..requests {
        let mut req = OwnedRequest::new();
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        req.source = source;
        if let Some(k) = sticky_keys.filter(|&k| k > 0) {
            req = with_sticky_key(req, &sticky, &format!("user-{}", i % k), i % k);
        }
        match router.decide(&req, &mut rng) {
            Some(d) => {
                *counts.entry(d.target.slot).or_default() += 1;
                missing += u64::from(d.sticky_key_missing);
            }
            None => return Err("no decision (a split without positive weight)".into()),
        }
    }
    println!(
        "{requests} requests, seed {seed}{}",
        sticky_keys.map_or(String::new(), |k| format!(", {k} sticky keys"))
    );
    println!(
        "{:<24} {:<16} {:>10} {:>8} {:>9}",
        "rule", "subset", "requests", "share", "weight"
    );
    for summary in router.summaries() {
        let total_weight: u64 = summary
            .targets
            .iter()
            .filter_map(|(_, w)| w.map(u64::from))
            .sum();
        for (target, weight) in &summary.targets {
            let n = counts.get(&target.slot).copied().unwrap_or(0);
            let weight = match weight {
                Some(w) if total_weight > 0 => {
                    format!("{:.1}%", 100.0 * f64::from(*w) / total_weight as f64)
                }
                Some(_) => "0".into(),
                None => "fixed".into(),
            };
            println!(
                "{:<24} {:<16} {:>10} {:>7.1}% {:>9}",
                summary.rule,
                target.subset,
                n,
                100.0 * n as f64 / requests.max(1) as f64,
                weight
            );
        }
    }
    if missing > 0 {
        println!("sticky key missing (fell back to random): {missing}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `name: value`; a pseudo-header keeps its leading colon (`:path: /api`).
fn parse_header(text: &str) -> Result<(String, String), String> {
    let skip = usize::from(text.starts_with(':'));
    let colon = text
        .get(skip..)
        .and_then(|rest| rest.find(':'))
        .map(|i| i + skip)
        .filter(|&i| i > skip)
        .ok_or(format!("-H {text:?}: expected 'name: value'"))?;
    Ok((
        text[..colon].trim().to_ascii_lowercase(),
        text[colon + 1..].trim().to_owned(),
    ))
}

/// Puts one sticky key wherever the config's sticky splits read it.
fn with_sticky_key(
    mut req: OwnedRequest,
    sources: &[StickyKey],
    key: &str,
    index: u64,
) -> OwnedRequest {
    for source in sources {
        req = match source {
            StickyKey::Header(name) => req.header(name, key),
            StickyKey::Cookie(name) => req.header("cookie", format!("{name}={key}")),
            StickyKey::Query(name) => {
                let path = req
                    .first_header_owned(":path")
                    .unwrap_or_else(|| "/".into());
                let sep = if path.contains('?') { '&' } else { '?' };
                req.headers.retain(|(n, _)| n != ":path");
                req.header(":path", format!("{path}{sep}{name}={key}"))
            }
            StickyKey::SourceIp => {
                let b = index.to_be_bytes();
                req.source(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                    10, b[5], b[6], b[7],
                )))
            }
        };
    }
    req
}

fn schema() -> Result<ExitCode, String> {
    let schema = schemars::schema_for!(subset_router::config::PluginConfig);
    let text = serde_json::to_string_pretty(&schema).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
