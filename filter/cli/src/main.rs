//! `subset-router`: the filter's own validation and decision code as a host command, for CI
//! pipelines and for trying a configuration before it ships.
//!
//! ```text
//! subset-router validate FILE...
//! subset-router simulate FILE [--requests N] [-H 'name: value']... [--sticky-keys K]
//!                             [--source-ip IP] [--at TIME] [--seed S] [--config-index I]
//! subset-router schedule FILE [--config-index I]
//! subset-router set-weights FILE --rule RULE SUBSET=WEIGHT... [--dry-run]
//! subset-router schema
//! ```
//!
//! Every command reads the same files: a plugin configuration (JSON), or an Envoy config, ECDS
//! resource, Istio WasmPlugin or Envoy Gateway EnvoyExtensionPolicy holding one or more
//! ([`locate`]).
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

mod configs;
mod locate;
mod schedule;
mod set_weights;

#[derive(Parser)]
#[command(
    name = "subset-router",
    version,
    about = "Validate, simulate and change subset-router plugin configurations with the filter's own code",
    after_help = "FILE is a plugin configuration (JSON), an Envoy config (YAML or JSON: listeners, \
                  ECDS resources; the Wasm filter, the dynamic module filter or cluster specifier), \
                  an Istio WasmPlugin or an Envoy Gateway EnvoyExtensionPolicy, with one or more \
                  documents; - is standard input. Messages name each configuration's place \
                  (FILE: WasmPlugin ns/name: spec.pluginConfig: rules[1]...: reason).\n\
                  Exit status: 0 success, 1 invalid or unreadable configuration, 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every configuration in the files: prints `path: reason` errors, exit 1 if any
    #[command(
        after_help = "Each configuration found is reported with its place in the file \
        (FILE: ok, or FILE: Kind ns/name: spec.pluginConfig: ok, …). A file holding none (a \
        Deployment, a Service) is noted and passes, so `validate k8s/*.yaml` checks the \
        manifests that carry the filter; if no file holds one, that is an error (exit 1) naming \
        what was looked for."
    )]
    Validate {
        /// Files holding configurations (see `subset-router --help`); - for standard input
        #[arg(required = true, value_name = "FILE")]
        configs: Vec<String>,
    },
    /// Decide N requests and print the split per rule and subset
    Simulate(SimulateArgs),
    /// Print each ramp's timeline: time → effective weights, steps included
    #[command(after_help = PICK_HELP)]
    Schedule {
        /// File holding the configuration (see `subset-router --help`); - for standard input
        #[arg(value_name = "FILE")]
        config: String,
        /// Which configuration of a file holding several different ones (1, 2, …)
        #[arg(long, value_name = "I")]
        config_index: Option<usize>,
    },
    /// Change one split's weights in the file that holds the configuration (plugin JSON, Envoy
    /// config, Istio WasmPlugin, EnvoyExtensionPolicy): validated, then replaced atomically
    SetWeights(set_weights::SetWeightsArgs),
    /// Print the JSON Schema of the configuration
    Schema,
}

/// How `simulate` and `schedule` choose among a file's configurations.
const PICK_HELP: &str = "A file holding one configuration (or several equal ones, e.g. the same \
    configuration in a Wasm and a dynamic module filter) is used as it is. A file holding \
    several different ones (a multi-document YAML, several WasmPlugins) needs --config-index I: \
    the I-th configuration in file order, as `subset-router validate FILE` lists them; without \
    it the command lists them and exits 2.";

#[derive(Args)]
#[command(
    after_help = format!("Every simulated request is a plain `GET /` to `localhost`, as Envoy \
                        would see it, unless -H ':method: …', -H ':path: …' or -H ':authority: …' \
                        (or -H 'host: …') says otherwise.\n\n{PICK_HELP}")
)]
struct SimulateArgs {
    /// File holding the configuration (see `subset-router --help`); - for standard input
    #[arg(value_name = "FILE")]
    config: String,
    /// Which configuration of a file holding several different ones (1, 2, …)
    #[arg(long, value_name = "I")]
    config_index: Option<usize>,
    /// Requests to simulate (a positive number)
    #[arg(long, value_name = "N", default_value_t = 10_000, allow_negative_numbers = true,
          value_parser = parse_positive)]
    requests: u64,
    /// A request header for every request (repeatable); ':method', ':path' and ':authority'
    /// replace the defaults, any other header is added
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Give the requests K distinct sticky keys (user-0 .. user-K-1), put wherever the config's
    /// sticky splits read them (header, cookie, query parameter or source IP); the configuration
    /// must have a sticky split (stickyBy)
    #[arg(long, value_name = "K", allow_negative_numbers = true, value_parser = parse_positive)]
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: printed on stdout, exit 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprint!("{}", usage_error(&e));
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Validate { configs } => validate(&configs),
        Command::Simulate(args) => simulate(&args),
        Command::Schedule {
            config,
            config_index,
        } => schedule::run(&config, config_index),
        Command::SetWeights(args) => set_weights::run(&args),
        Command::Schema => schema(),
    }
}

/// Compiles one configuration found in a file, or its errors as `FILE[: location]: path: reason`
/// lines.
fn compile(config: &configs::Config) -> Result<Router, Vec<String>> {
    let at = &config.at;
    let json = config
        .json
        .as_ref()
        .map_err(|e| vec![format!("{at}: {e}")])?;
    load(json).map_err(|errors| errors.iter().map(|e| format!("{at}: {e}")).collect())
}

fn validate(paths: &[String]) -> ExitCode {
    let files: Vec<(&String, Result<configs::FileConfigs, Vec<String>>)> =
        paths.iter().map(|p| (p, configs::read(p))).collect();
    // A file without a configuration is only an error when no file has one.
    let found_any = files
        .iter()
        .any(|(_, f)| f.as_ref().is_ok_and(|f| !f.configs.is_empty()));
    let mut failed = !found_any;
    for (path, file) in &files {
        let file = match file {
            Ok(file) => file,
            Err(errors) => {
                failed = true;
                errors.iter().for_each(|e| eprintln!("{e}"));
                continue;
            }
        };
        if file.configs.is_empty() {
            if found_any {
                println!("{path}: no subset-router configuration; skipped");
            } else {
                file.none_found(path).iter().for_each(|e| eprintln!("{e}"));
            }
            continue;
        }
        for config in &file.configs {
            match compile(config) {
                Ok(router) => println!(
                    "{}: ok ({} rule(s) + default; subsets: {})",
                    config.at,
                    router.rule_names().count() - 1,
                    subsets(&router).join(", ")
                ),
                Err(errors) => {
                    failed = true;
                    errors.iter().for_each(|e| eprintln!("{e}"));
                }
            }
        }
        file.skipped.iter().for_each(|s| println!("{s}; skipped"));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The one configuration `simulate` and `schedule` work on, compiled, and where it is; or the
/// exit status once the errors are printed.
fn load_one(path: &str, index: Option<usize>) -> Result<(String, Router), ExitCode> {
    let config = configs::pick(path, index).map_err(|e| match e {
        configs::PickError::Invalid(lines) => {
            lines.iter().for_each(|l| eprintln!("{l}"));
            ExitCode::FAILURE
        }
        configs::PickError::Usage(message) => {
            eprintln!("error: {message}\n\nFor more information, try '--help'.");
            ExitCode::from(2)
        }
    })?;
    match compile(&config) {
        Ok(router) => Ok((config.at, router)),
        Err(errors) => {
            errors.iter().for_each(|e| eprintln!("{e}"));
            Err(ExitCode::FAILURE)
        }
    }
}

fn subsets(router: &Router) -> Vec<String> {
    let mut all: Vec<String> = router.slots().iter().map(|s| s.subset.clone()).collect();
    all.sort();
    all.dedup();
    all
}

/// clap's message for a usage error, with the value it repeats (an argument can be 100 kB)
/// cut as every message of the tool cuts values.
fn usage_error(error: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let mut text = error.render().to_string();
    for kind in [ContextKind::InvalidValue, ContextKind::InvalidArg] {
        if let Some(ContextValue::String(value)) = error.get(kind) {
            if let (head, Some(bytes)) = subset_router_core::error::truncate(value) {
                text = text.replace(value.as_str(), &format!("{head}… ({bytes} bytes)"));
            }
        }
    }
    text
}

/// `--at`: an RFC 3339 time.
fn parse_time(text: &str) -> Result<UnixMs, String> {
    // clap's message repeats the value: `invalid value '…' for '--at <TIME>': not an RFC …`.
    parse_rfc3339(text)
        .map_err(|reason| format!("not an RFC 3339 time such as 2026-12-01T10:00:00Z: it {reason}"))
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

/// `--requests`, `--sticky-keys`: a positive whole number.
fn parse_positive(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a positive number (1, 2, …)".to_owned()),
    }
}

fn simulate(args: &SimulateArgs) -> ExitCode {
    let (at_file, router) = match load_one(&args.config, args.config_index) {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    let sticky = sticky_sources(&router);
    if args.sticky_keys.is_some() && sticky.is_empty() {
        eprintln!(
            "error: --sticky-keys: no split of {at_file} is sticky (stickyBy), so no decision \
             reads a key; simulate without --sticky-keys\n\n\
             For more information, try '--help'."
        );
        return ExitCode::from(2);
    }
    if at_file != args.config {
        println!("configuration: {at_file}");
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let at = args.at.unwrap_or_else(now_ms);
    let conditions = conditions_at(&router, at);
    let Some(tally) = run(&router, args, seed, &conditions, &sticky) else {
        // Cannot happen for a configuration that compiled (every split has a positive weight).
        eprintln!("{at_file}: no decision (a split without positive weight)");
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

/// Where the configuration's sticky splits read their key, each place once (however many
/// splits read it): one request carries one value per place, as a real client's would.
fn sticky_sources(router: &Router) -> Vec<StickyKey> {
    let mut places: Vec<StickyKey> = Vec::new();
    for key in router.summaries().into_iter().filter_map(|s| s.sticky) {
        let key = match key {
            StickyKey::Header(name) => StickyKey::Header(name.to_ascii_lowercase()),
            other => other,
        };
        if !places.contains(&key) {
            places.push(key);
        }
    }
    places
}

fn run(
    router: &Router,
    args: &SimulateArgs,
    seed: u64,
    conditions: &Snapshot,
    sticky: &[StickyKey],
) -> Option<Tally> {
    let base = base_request(&args.headers, args.source_ip);
    let mut rng = WyRand::new(seed);
    let mut tally = Tally {
        counts: BTreeMap::new(),
        missing: 0,
    };
    for i in 0..args.requests {
        let req = match args.sticky_keys.filter(|&k| k > 0) {
            Some(k) => with_sticky_key(base.clone(), sticky, i % k),
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

/// Puts sticky key number `index` (`user-<index>`) wherever the config's sticky splits read it:
/// `sources` as [`sticky_sources`] gives them, each place once. The cookies go in one `cookie`
/// header, the query parameters in one query string.
fn with_sticky_key(mut req: OwnedRequest, sources: &[StickyKey], index: u64) -> OwnedRequest {
    let key = format!("user-{index}");
    let mut cookies = Vec::new();
    let mut query = Vec::new();
    for source in sources {
        match source {
            StickyKey::Header(name) => req = req.header(name, &key),
            StickyKey::Cookie(name) => cookies.push(format!("{name}={key}")),
            StickyKey::Query(name) => query.push(format!("{name}={key}")),
            StickyKey::SourceIp => {
                let b = index.to_be_bytes();
                req = req.source(IpAddr::V4(Ipv4Addr::new(10, b[5], b[6], b[7])));
            }
        }
    }
    if !cookies.is_empty() {
        req = req.header("cookie", cookies.join("; "));
    }
    if !query.is_empty() {
        let path = req
            .first_header_owned(":path")
            .unwrap_or_else(|| "/".into());
        let sep = if path.contains('?') { '&' } else { '?' };
        req.headers.retain(|(n, _)| n != ":path");
        req = req.header(":path", format!("{path}{sep}{}", query.join("&")));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration of `splits` sticky splits, taking turns at reading the header
    /// `x-user-id`, the cookies `uid` and `sid` and the query parameter `u`.
    fn sticky_config(splits: usize) -> Router {
        let rules: Vec<String> = (0..splits)
            .map(|i| {
                let by = [
                    r#"{"header":"x-user-id"}"#,
                    r#"{"header":"X-User-Id"}"#,
                    r#"{"cookie":"uid"}"#,
                    r#"{"cookie":"sid"}"#,
                    r#"{"query":"u"}"#,
                ][i % 5];
                format!(
                    r#"{{"name":"r{i}","match":{{"pathPrefix":"/r{i}/"}},"route":{{"split":[{{"subset":"v1","weight":1}},{{"subset":"v2","weight":1}}],"stickyBy":{by}}}}}"#
                )
            })
            .collect();
        let json = format!(
            r#"{{"rules":[{}],"default":{{"subset":"v1"}}}}"#,
            rules.join(",")
        );
        load(json.as_bytes()).expect("a valid configuration")
    }

    /// 5,000 sticky splits reading four places: a simulated request carries one value in each
    /// (not 5,000 copies of the header, which made `--sticky-keys` quadratic).
    #[test]
    fn a_simulated_request_carries_each_sticky_key_once() {
        let router = sticky_config(5_000);
        let sources = sticky_sources(&router);
        let base = base_request(&[], None);
        let req = with_sticky_key(base.clone(), &sources, 7);
        assert!(
            req.headers.len() <= base.headers.len() + 2,
            "{} headers for {} sticky splits",
            req.headers.len(),
            router.summaries().len()
        );
        let values = |name: &str| -> Vec<String> {
            req.headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect()
        };
        assert_eq!(values("x-user-id"), ["user-7"]);
        assert_eq!(values("cookie"), ["uid=user-7; sid=user-7"]);
        assert_eq!(values(":path"), ["/?u=user-7"]);
    }
}
