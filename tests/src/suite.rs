//! The start-up and the ending every suite's own `main` (harness = false) shares: scenario
//! selection (`--list`, substring filters, `SCENARIO`, `CI=true`), the environment, the
//! header, each scenario run and timed (an error or a panic becomes a failed row), the line
//! naming what the filter left out, and the `result:` line with the exit code.
//!
//! The summary between the scenarios and the `result:` line stays in each suite: the tables
//! and figures differ from suite to suite. That is why [`Suite`] is three calls (`start`,
//! `run`, `finish`) rather than one function: the suites' contexts borrow the [`Env`] it owns.

use crate::envoy::Env;
use std::fmt;
use std::path::Path;
use std::time::Instant;

/// `CI=true` (or `1`): whatever would be skipped locally (an empty scenario selection, a check
/// that cannot run here) is a failure instead.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// `--list` among the arguments (libtest's way to ask for the test names).
pub fn list_requested() -> bool {
    std::env::args().skip(1).any(|a| a == "--list")
}

/// The names, one `name: test` line each (libtest's `--list` format).
pub fn print_list<'a>(names: impl IntoIterator<Item = &'a str>) {
    for name in names {
        println!("{name}: test");
    }
}

/// The scenarios a suite runs, and those the filters left out (named in its summary).
pub struct Selection<'a, F> {
    pub run: Vec<&'a (&'a str, F)>,
    pub not_run: Vec<&'a str>,
}

/// Scenario selection for the suites' own `main`s (harness = false): arguments that do not
/// start with `-` and the `SCENARIO` variable (comma or space separated) are substring
/// filters; libtest-style flags (`--test-threads=1`, `--nocapture`, …) are accepted and
/// ignored. `--list` prints the names. Returns `None` when there is nothing to run: after
/// `--list`, or when the filters match no scenario, which prints `SKIPPED: …` and, under
/// `CI=true`, exits 1.
pub fn select_scenarios<'a, F>(
    suite: &str,
    scenarios: &'a [(&'a str, F)],
) -> Option<Selection<'a, F>> {
    if list_requested() {
        print_list(scenarios.iter().map(|(name, _)| *name));
        return None;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters: Vec<String> = Vec::new();
    let mut skip_next = false;
    for a in &args {
        if skip_next {
            skip_next = false;
        } else if a == "--test-threads" || a == "--skip" || a == "--format" || a == "--color" {
            skip_next = true;
        } else if !a.starts_with('-') {
            filters.push(a.clone());
        }
    }
    if let Ok(s) = std::env::var("SCENARIO") {
        filters.extend(
            s.split([',', ' '])
                .filter(|x| !x.is_empty())
                .map(String::from),
        );
    }
    let (run, not_run): (Vec<_>, Vec<_>) = scenarios
        .iter()
        .partition(|(n, _)| filters.is_empty() || filters.iter().any(|f| n.contains(f.as_str())));
    let not_run: Vec<&str> = not_run.iter().map(|(n, _)| *n).collect();
    if run.is_empty() {
        println!(
            "SKIPPED: subset-router {suite}: no scenario matches {filters:?}; nothing ran \
             (scenarios: {})",
            not_run.join(", ")
        );
        if ci() {
            println!("subset-router {suite}: FAIL: CI=true and no scenario selected");
            std::process::exit(1);
        }
        return None;
    }
    Some(Selection { run, not_run })
}

/// Runs one scenario, turning a panic into an error message like any other failure, so that
/// one broken scenario still lets the others run and the table be printed.
pub fn run_caught(f: impl FnOnce() -> Result<(), String>) -> Option<String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(p) => Some(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// The first line of an error message: what a table cell has room for.
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The summary line naming the selected scenarios that do not apply to the build under test
/// (`(scenario, why)`), which ran no check and neither passed nor failed: `NOT APPLICABLE to the
/// wasm build (no check ran; neither PASS nor FAIL): cluster_specifier (why)`. `None` when
/// every scenario applied.
pub fn not_applicable_line(build: &str, scenarios: &[(String, String)]) -> Option<String> {
    if scenarios.is_empty() {
        return None;
    }
    Some(format!(
        "NOT APPLICABLE to the {build} build (no check ran; neither PASS nor FAIL): {}",
        scenarios
            .iter()
            .map(|(name, why)| format!("{name} ({why})"))
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// Prints `subset-router <suite>: cannot start: <why>` and exits 1.
pub fn cannot_start(suite: &str, why: &str) -> ! {
    eprintln!("subset-router {suite}: cannot start: {why}");
    std::process::exit(1)
}

/// The header lines every suite prints: the filter file under test (with its size, which
/// tells builds apart) and the scratch directory (configs and logs for a post-mortem).
pub fn print_filter_and_scratch(env: &Env) {
    let filter_len = std::fs::metadata(env.build.file())
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "  filter: {} ({filter_len} bytes)",
        env.build.file().display()
    );
    println!("  scratch: {}", env.work_dir.display());
}

/// Seconds per scenario (or per Envoy version), printed as
/// `timings: a 1.0s, b 2.0s; total 3.1s` with the total since the suite began.
pub struct Timings {
    t0: Instant,
    each: Vec<(String, f64)>,
}

impl Timings {
    pub fn since(t0: Instant) -> Timings {
        Timings {
            t0,
            each: Vec::new(),
        }
    }

    pub fn push(&mut self, name: &str, secs: f64) {
        self.each.push((name.to_string(), secs));
    }
}

impl fmt::Display for Timings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timings: {}; total {:.1}s",
            self.each
                .iter()
                .map(|(n, s)| format!("{n} {s:.1}s"))
                .collect::<Vec<_>>()
                .join(", "),
            self.t0.elapsed().as_secs_f64()
        )
    }
}

/// How a suite ended: `result: <count> <unit>, <failed> failed -> PASS|FAIL`.
pub struct Outcome {
    pub count: usize,
    /// What was counted: `rows`, `checks`, `Envoy version(s)`.
    pub unit: &'static str,
    pub failed: usize,
    pub pass: bool,
}

impl Outcome {
    /// Prints the `result:` line; exits 1 unless the suite passed.
    pub fn conclude(&self) {
        println!(
            "result: {} {}, {} failed -> {}",
            self.count,
            self.unit,
            self.failed,
            if self.pass { "PASS" } else { "FAIL" }
        );
        if !self.pass {
            std::process::exit(1);
        }
    }
}

/// A suite's context as the shared scenario loop sees it.
pub trait SuiteContext {
    /// Adds the failed row of a scenario that returned an error or panicked; `observed` is
    /// `ERROR: <first line of the message>` (the whole message is printed above the table).
    fn scenario_failed(&mut self, scenario: &str, observed: &str);
}

/// One run of a scenario suite: the selected scenarios, the environment, the start time.
pub struct Suite<'a, F> {
    selection: Selection<'a, F>,
    env: Env,
    t0: Instant,
}

impl<'a, F> Suite<'a, F> {
    /// Selects the scenarios ([`select_scenarios`]; `None`: nothing to run) and resolves the
    /// environment, its per-run directory under `scratch` (the suites pass
    /// `CARGO_TARGET_TMPDIR`). Exits 1 when the environment cannot be resolved.
    pub fn start(suite: &str, scenarios: &'a [(&'a str, F)], scratch: &Path) -> Option<Self> {
        let selection = select_scenarios(suite, scenarios)?;
        let t0 = Instant::now();
        let env = Env::from_env(scratch).unwrap_or_else(|e| cannot_start(suite, &e));
        Some(Suite { selection, env, t0 })
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Prints the header (`title`, the environment, the scenarios), then runs each selected
    /// scenario in order on `cx`, printing its name and time. A scenario that fails with an
    /// error or a panic is printed whole and becomes a failed row; the next one still runs.
    pub fn run<C>(&self, title: &str, cx: &mut C) -> Timings
    where
        C: SuiteContext,
        F: Fn(&mut C) -> Result<(), String>,
    {
        println!("{title}");
        println!("  {}", self.env.describe());
        print_filter_and_scratch(&self.env);
        println!(
            "  scenarios: {}",
            self.selection
                .run
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut timings = Timings::since(self.t0);
        for (name, scenario) in self.selection.run.iter().copied() {
            println!("\n=== {name} ===");
            let t = Instant::now();
            if let Some(e) = run_caught(|| scenario(cx)) {
                println!("    ERROR: {e}");
                cx.scenario_failed(name, &format!("ERROR: {}", first_line(&e)));
            }
            let secs = t.elapsed().as_secs_f64();
            println!("    ({name}: {secs:.1}s)");
            timings.push(name, secs);
        }
        timings
    }

    /// Names the scenarios the filter left out, then prints `outcome` (exit 1 if it failed).
    pub fn finish(&self, outcome: Outcome) {
        if !self.selection.not_run.is_empty() {
            println!(
                "not run (left out by the scenario filter): {}",
                self.selection.not_run.join(", ")
            );
        }
        outcome.conclude();
    }
}
