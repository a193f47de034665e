//! `subset-router`: the filter's own validation and decision code as a host command, for CI
//! pipelines and for trying a configuration before it ships.
//!
//! ```text
//! subset-router validate CONFIG...
//! subset-router simulate CONFIG [--requests N] [-H 'name: value']... [--sticky-keys K]
//!                               [--source-ip IP] [--at TIME] [--seed S]
//! subset-router schedule CONFIG
//! subset-router set-weights FILE --rule RULE SUBSET=WEIGHT... [--dry-run]
//! subset-router schema
//! ```
//!
//! Exit status: 0 success, 1 invalid (or unreadable) configuration, 2 usage error.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use subset_router_core::live::Snapshot;
use subset_router_core::request::OwnedRequest;
use subset_router_core::router::StickyKey;
use subset_router_core::time::{format_rfc3339, parse_rfc3339, UnixMs};
use subset_router_core::{load, Router, WyRand};

mod locate;
mod schedule;
mod set_weights;

#[derive(Parser)]
#[command(
    name = "subset-router",
    version,
    about = "Validate, simulate and change subset-router plugin configurations with the filter's own code",
    after_help = "CONFIG may be - for standard input.\n\
                  Exit status: 0 success, 1 invalid or unreadable configuration, 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check configurations: prints `path: reason` errors, exit 1 if any
    Validate {
        /// Plugin configuration files (JSON); - for standard input
        #[arg(required = true, value_name = "CONFIG")]
        configs: Vec<String>,
    },
    /// Decide N requests and print the split per rule and subset
    Simulate(SimulateArgs),
    /// Print each ramp's timeline: time → effective weights, steps included
    Schedule {
        /// Plugin configuration file (JSON); - for standard input
        #[arg(value_name = "CONFIG")]
        config: String,
    },
    /// Change one split's weights in the file that holds the configuration (plugin JSON, Envoy
    /// config, Istio WasmPlugin, EnvoyExtensionPolicy): validated, then replaced atomically
    SetWeights(set_weights::SetWeightsArgs),
    /// Print the JSON Schema of the configuration
    Schema,
}

#[derive(Args)]
#[command(
    after_help = "Every simulated request is a plain `GET /` to `localhost`, as Envoy \
                        would see it, unless -H ':method: …', -H ':path: …' or -H ':authority: …' \
                        (or -H 'host: …') says otherwise."
)]
struct SimulateArgs {
    /// Plugin configuration file (JSON); - for standard input
    #[arg(value_name = "CONFIG")]
    config: String,
    /// Requests to simulate
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    requests: u64,
    /// A request header for every request (repeatable); ':method', ':path' and ':authority'
    /// replace the defaults, any other header is added
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Give the requests K distinct sticky keys (user-0 .. user-K-1), put wherever the config's
    /// sticky splits read them (header, cookie, query parameter or source IP)
    #[arg(long, value_name = "K")]
    sticky_keys: Option<u64>,
    /// The downstream peer address
    #[arg(long, value_name = "IP")]
    source_ip: Option<IpAddr>,
    /// Evaluate ramps at this RFC 3339 time (e.g. 2026-12-01T11:00:00Z) instead of now;
    /// guards are taken as closed
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<UnixMs>,
    /// Seed of the random splits (default: time-based)
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
}

fn main() -> ExitCode {
    // Parse errors exit with 2, --help and --version with 0 (clap's own `exit`).
    match Cli::parse().command {
        Command::Validate { configs } => validate(&configs),
        Command::Simulate(args) => simulate(&args),
        Command::Schedule { config } => schedule::run(&config),
        Command::SetWeights(args) => set_weights::run(&args),
        Command::Schema => schema(),
    }
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

/// Reads and compiles one configuration, or its errors as `path: reason` lines.
fn load_file(path: &str) -> Result<Router, Vec<String>> {
    let json = read(path).map_err(|e| vec![e])?;
    load(&json).map_err(|errors| errors.iter().map(|e| format!("{path}: {e}")).collect())
}

fn validate(paths: &[String]) -> ExitCode {
    let mut failed = false;
    for path in paths {
        match load_file(path) {
            Ok(router) => println!(
                "{path}: ok ({} rule(s) + default; subsets: {})",
                router.rule_names().count() - 1,
                subsets(&router).join(", ")
            ),
            Err(errors) => {
                failed = true;
                errors.iter().for_each(|e| eprintln!("{e}"));
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

/// `--at`: an RFC 3339 time.
fn parse_time(text: &str) -> Result<UnixMs, String> {
    parse_rfc3339(text).map_err(|reason| {
        format!("{text:?} is not an RFC 3339 time such as 2026-12-01T10:00:00Z: it {reason}")
    })
}

/// The wall clock now, in Unix milliseconds.
fn now_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Every ramp at `at`, every guard closed.
fn conditions_at(router: &Router, at: UnixMs) -> Snapshot {
    Snapshot {
        ramps: router.ramps().iter().map(|r| r.ramp.share_at(at)).collect(),
        open: Vec::new(),
    }
}

fn simulate(args: &SimulateArgs) -> ExitCode {
    let router = match load_file(&args.config) {
        Ok(router) => router,
        Err(errors) => {
            errors.iter().for_each(|e| eprintln!("{e}"));
            return ExitCode::FAILURE;
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let at = args.at.unwrap_or_else(now_ms);
    let conditions = conditions_at(&router, at);
    let Some(tally) = run(&router, args, seed, &conditions) else {
        // Cannot happen for a configuration that compiled (every split has a positive weight).
        eprintln!(
            "{}: no decision (a split without positive weight)",
            args.config
        );
        return ExitCode::FAILURE;
    };
    if !router.ramps().is_empty() {
        println!("ramps evaluated at {}", format_rfc3339(at));
    }
    print_tally(&router, args, seed, &tally, &conditions);
    ExitCode::SUCCESS
}

/// Decisions per stat slot, and how many sticky splits found no key.
struct Tally {
    counts: BTreeMap<usize, u64>,
    missing: u64,
}

fn run(router: &Router, args: &SimulateArgs, seed: u64, conditions: &Snapshot) -> Option<Tally> {
    let base = base_request(&args.headers, args.source_ip);
    let sticky: Vec<StickyKey> = router
        .summaries()
        .into_iter()
        .filter_map(|s| s.sticky)
        .collect();
    let mut rng = WyRand::new(seed);
    let mut tally = Tally {
        counts: BTreeMap::new(),
        missing: 0,
    };
    for i in 0..args.requests {
        let req = match args.sticky_keys.filter(|&k| k > 0) {
            Some(k) => with_sticky_key(base.clone(), &sticky, i % k),
            None => base.clone(),
        };
        let decision = router.decide_with(&req, &mut rng, conditions)?;
        *tally.counts.entry(decision.target.slot).or_default() += 1;
        tally.missing += u64::from(decision.sticky_key_missing);
    }
    Some(tally)
}

fn print_tally(
    router: &Router,
    args: &SimulateArgs,
    seed: u64,
    tally: &Tally,
    conditions: &Snapshot,
) {
    println!(
        "{} requests, seed {seed}{}",
        args.requests,
        args.sticky_keys
            .map_or(String::new(), |k| format!(", {k} sticky keys"))
    );
    println!(
        "{:<24} {:<16} {:>10} {:>8} {:>9}",
        "rule", "subset", "requests", "share", "weight"
    );
    for summary in router.summaries_with(conditions) {
        let total_weight: u64 = summary.targets.iter().filter_map(|(_, w)| *w).sum();
        for (target, weight) in &summary.targets {
            let n = tally.counts.get(&target.slot).copied().unwrap_or(0);
            let weight = match weight {
                Some(w) if total_weight > 0 => {
                    format!("{:.1}%", 100.0 * *w as f64 / total_weight as f64)
                }
                Some(_) => "0".into(),
                None => "fixed".into(),
            };
            println!(
                "{:<24} {:<16} {:>10} {:>7.1}% {:>9}",
                summary.rule,
                target.subset,
                n,
                100.0 * n as f64 / args.requests.max(1) as f64,
                weight
            );
        }
    }
    if tally.missing > 0 {
        println!(
            "sticky key missing (fell back to random): {}",
            tally.missing
        );
    }
}

/// The request every simulated one starts from: what Envoy would hand the filter for a plain
/// `GET /` to `localhost`, with the `-H` headers applied. Without the pseudo-headers no `path`,
/// `pathPrefix`, `methods` or `hosts` condition could ever hold.
fn base_request(headers: &[(String, String)], source: Option<IpAddr>) -> OwnedRequest {
    let mut pseudo = [
        (":method", "GET"),
        (":path", "/"),
        (":authority", "localhost"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()));
    let mut others = Vec::new();
    for (name, value) in headers {
        // Envoy turns an HTTP/1 `Host` into `:authority`; a request has one of each pseudo-header.
        let name = if name == "host" { ":authority" } else { name };
        match pseudo.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1.clone_from(value),
            None => others.push((name, value)),
        }
    }
    let mut req = OwnedRequest::new();
    for (name, value) in &pseudo {
        req = req.header(name, value);
    }
    for (name, value) in others {
        req = req.header(name, value);
    }
    req.source = source;
    req
}

/// `name: value`; a pseudo-header keeps its leading colon (`:path: /api`).
fn parse_header(text: &str) -> Result<(String, String), String> {
    let skip = usize::from(text.starts_with(':'));
    let colon = text
        .get(skip..)
        .and_then(|rest| rest.find(':'))
        .map(|i| i + skip)
        .filter(|&i| i > skip)
        .ok_or("expected 'name: value'")?;
    Ok((
        text[..colon].trim().to_ascii_lowercase(),
        text[colon + 1..].trim().to_owned(),
    ))
}

/// Puts sticky key number `index` (`user-<index>`) wherever the config's sticky splits read it.
fn with_sticky_key(mut req: OwnedRequest, sources: &[StickyKey], index: u64) -> OwnedRequest {
    let key = format!("user-{index}");
    for source in sources {
        req = match source {
            StickyKey::Header(name) => req.header(name, &key),
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
                req.source(IpAddr::V4(Ipv4Addr::new(10, b[5], b[6], b[7])))
            }
        };
    }
    req
}

fn schema() -> ExitCode {
    let schema = schemars::schema_for!(subset_router_core::config::PluginConfig);
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("schema: {e}");
            ExitCode::FAILURE
        }
    }
}
