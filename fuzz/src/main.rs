//! `subset-router-fuzz [--cases N] [--seed S] [--start I] [--requests R] [--verbose]`
//!
//! Runs cases `I .. I+N` (default 0 .. 1,000,000, seed 0x5eed, 8 requests per accepted config;
//! `FUZZ_CASES` / `FUZZ_SEED` override the defaults) and prints the counts. Exit code 1 on a
//! property violation; a panic prints the case and the command that replays it alone.

use std::sync::atomic::Ordering;
use std::time::Instant;
use subset_router_fuzz::{run_case, Stats, CURRENT_CASE};

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.trim().parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases: u64 = arg(&args, "--cases")
        .or_else(|| env("FUZZ_CASES"))
        .unwrap_or(1_000_000);
    let seed: u64 = arg(&args, "--seed")
        .or_else(|| env("FUZZ_SEED"))
        .unwrap_or(0x5eed);
    let start: u64 = arg(&args, "--start").unwrap_or(0);
    let requests: u32 = arg(&args, "--requests").unwrap_or(8);
    let verbose = args.iter().any(|a| a == "--verbose");

    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let i = CURRENT_CASE.load(Ordering::Relaxed);
        eprintln!(
            "\nsubset-router-fuzz: PANIC in case {i} (seed {seed}); replay it alone with:\n  \
             cargo run -p subset-router-fuzz --release -- --seed {seed} --start {i} --cases 1 --verbose"
        );
        default_hook(info);
    }));

    println!(
        "subset-router-fuzz: cases {start}..{} (seed {seed}), up to {requests} requests per accepted config",
        start + cases
    );
    let t0 = Instant::now();
    let mut stats = Stats::default();
    let mut failures = Vec::new();
    let progress_every = (cases / 4).max(1);
    for i in start..start + cases {
        if let Err(e) = run_case(seed, i, requests, &mut stats, verbose) {
            eprintln!(
                "VIOLATION in case {i}: {e}\n  replay: cargo run -p subset-router-fuzz --release -- --seed {seed} --start {i} --cases 1 --verbose"
            );
            failures.push(i);
            if failures.len() >= 10 {
                break;
            }
        }
        let done = i - start + 1;
        if done.is_multiple_of(progress_every) && done < cases {
            println!("  {done} cases, {:.1}s", t0.elapsed().as_secs_f64());
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "subset-router-fuzz: {} cases in {secs:.1}s ({:.0}/s): configs {} generated + {} mutated + {} random bytes + {} deeply nested; \
         {} accepted, {} rejected ({} path: reason lines); {} decisions ({} on malformed header buffers, {} sticky key missing); \
         {} rule matches judged by the reference matcher ({} not judged); {} violations, 0 panics",
        stats.cases,
        stats.cases as f64 / secs.max(1e-9),
        stats.generated,
        stats.mutated,
        stats.random_bytes,
        stats.deep_nesting,
        stats.accepted,
        stats.rejected,
        stats.error_lines,
        stats.decisions,
        stats.malformed_buffers,
        stats.sticky_key_missing,
        stats.reference_judged,
        stats.reference_unknown,
        failures.len()
    );
    println!(
        "FUZZ_CASES={} FUZZ_DECISIONS={} FUZZ_SECONDS={secs:.1}",
        stats.cases, stats.decisions
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
