//! The built `subset-router` binary, as operators and CI pipelines run it: help, exit statuses
//! (0 success, 1 invalid configuration, 2 usage error) and what `simulate` sends through the
//! filter's decision code.

use std::path::{Path, PathBuf};

mod common;
use common::{example_path as example, run, stderr, stdout};

/// Writes `json` to a file of its own (tests run in parallel) and returns its path.
fn config_file(name: &str, json: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}.json"));
    std::fs::write(&path, json).expect("write a temporary config");
    path
}

/// The `requests` column of a `simulate` row (`rule subset requests share weight`).
fn requests_of(table: &str, rule: &str, subset: &str) -> u64 {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.len() == 5 && cols[0] == rule && cols[1] == subset)
        .unwrap_or_else(|| panic!("no row for {rule}/{subset} in\n{table}"))[2]
        .parse()
        .expect("a request count")
}

#[test]
fn help_is_printed_without_an_error_and_exits_0() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["validate", "--help"],
        &["simulate", "-h"],
        &["schedule", "--help"],
        &["set-weights", "-h"],
        &["schema", "--help"],
    ] {
        let out = run(args);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(text.contains("Usage: subset-router"), "{args:?}: {text}");
        assert!(
            !text.to_lowercase().contains("error:") && stderr(&out).is_empty(),
            "{args:?} printed an error: {text}{}",
            stderr(&out)
        );
    }
    let version = run(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(stdout(&version).starts_with("subset-router "));
}

#[test]
fn usage_errors_exit_2() {
    let config = example("sticky-canary/config.json");
    for args in [
        &[][..],
        &["frobnicate"],
        &["validate"],
        &["simulate"],
        &["simulate", &config, "--bogus"],
        &["simulate", &config, "--requests", "many"],
        &["simulate", &config, "-H", "no-colon"],
        &["simulate", &config, "--source-ip", "10.0.0.300"],
        &["simulate", &config, "--at", "tomorrow"],
        &["simulate", &config, "--at", "2026-12-01T10:00:00"],
        &["schedule"],
        &["set-weights", &config, "--rule", "canary"],
        &["set-weights", &config, "--rule", "canary", "v2"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?}: nothing on stderr");
    }
}

#[test]
fn an_invalid_config_exits_1_with_path_and_reason() {
    let path = config_file(
        "invalid",
        r#"{"rules":[{"name":"debug","match":{"headers":[{"name":"user-agent","regex":"debug)|(.*"}]},"route":{"subset":"v2"}}],"default":{"subset":"v1"}}"#,
    );
    let path = path.to_string_lossy();
    let expected = format!(
        "{path}: rules[0].match.headers[0].regex: \"debug)|(.*\" is not a valid regex: found closing ')' without matching '('\n"
    );
    for command in ["validate", "simulate"] {
        let out = run(&[command, &path]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        assert_eq!(stderr(&out), expected, "{command}");
    }
    // Valid and invalid together: every file is reported, and the status says "invalid".
    let valid = example("sticky-canary/config.json");
    let out = run(&["validate", &valid, &path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with(&format!("{valid}: ok (2 rule(s) + default")));
}

#[test]
fn valid_configs_exit_0() {
    let out = run(&["validate", &example("sticky-canary/config.json")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(&["schema"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"$schema\""));
}

/// The sticky-canary example routes every path (`pathPrefix: "/"`) 90/10 by `x-user-id`: a
/// simulated request must carry `:path: /` like a real one, or the canary rule never matches.
#[test]
fn sticky_canary_sends_about_ten_percent_of_users_to_v2() {
    const KEYS: u64 = 2_000;
    let requests = (10 * KEYS).to_string();
    let out = run(&[
        "simulate",
        &example("sticky-canary/config.json"),
        "--requests",
        &requests,
        "--sticky-keys",
        &KEYS.to_string(),
        "--seed",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    let v1 = requests_of(&table, "canary", "v1");
    let v2 = requests_of(&table, "canary", "v2");
    assert_eq!(
        v1 + v2,
        10 * KEYS,
        "every request is decided by the canary rule\n{table}"
    );
    // Each key always gets the same subset, so the share varies with the keys, not the requests.
    let share = v2 as f64 / (v1 + v2) as f64;
    let sigma = (0.1 * 0.9 / KEYS as f64).sqrt();
    assert!(
        (share - 0.1).abs() <= 4.5 * sigma,
        "v2 share {share:.4}, expected 0.1 ± {:.4}\n{table}",
        4.5 * sigma
    );
    assert!(!table.contains("sticky key missing"), "{table}");
}

#[test]
fn a_simulated_request_is_get_slash_to_localhost_unless_overridden() {
    let path = config_file(
        "pseudo-headers",
        r#"{"rules":[
            {"name":"x","match":{"path":"/x"},"route":{"subset":"x"}},
            {"name":"post","match":{"methods":["POST"]},"route":{"subset":"post"}},
            {"name":"shop","match":{"hosts":["shop.example.com"]},"route":{"subset":"shop"}},
            {"name":"plain","match":{"path":"/","methods":["GET"],"hosts":["localhost"]},"route":{"subset":"plain"}}
        ],"default":{"subset":"v1"}}"#,
    );
    let path = path.to_string_lossy();
    let rule_taking_all = |headers: &[&str]| {
        let mut args = vec!["simulate", &path, "--requests", "50", "--seed", "1"];
        args.extend(headers.iter().flat_map(|h| ["-H", h]));
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let table = stdout(&out);
        let all: Vec<_> = [
            ("x", "x"),
            ("post", "post"),
            ("shop", "shop"),
            ("plain", "plain"),
        ]
        .into_iter()
        .filter(|(rule, subset)| requests_of(&table, rule, subset) == 50)
        .map(|(rule, _)| rule)
        .collect();
        assert_eq!(
            all.len(),
            1,
            "{headers:?}: one rule takes every request\n{table}"
        );
        all[0]
    };
    assert_eq!(rule_taking_all(&[]), "plain");
    assert_eq!(rule_taking_all(&[":path: /x"]), "x");
    assert_eq!(rule_taking_all(&[":method: POST"]), "post");
    assert_eq!(
        rule_taking_all(&[":authority: shop.example.com:8443"]),
        "shop"
    );
    assert_eq!(rule_taking_all(&["Host: shop.example.com"]), "shop");
}

/// v2 ramps from 10% to 50% between 10:00 and 12:00 (`steps` jumps, or continuous).
fn ramp_config(name: &str, steps: u32) -> String {
    let path = config_file(
        name,
        &format!(
            r#"{{"rules":[{{"name":"canary","route":{{
                "split":[{{"subset":"v1","weight":90}},{{"subset":"v2","weight":10}}],
                "stickyBy":{{"header":"x-user-id"}},
                "ramp":{{"subset":"v2","toPercent":50,"start":"2026-12-01T10:00:00Z","durationSeconds":7200,"steps":{steps}}}}}}}],
              "default":{{"subset":"v1"}},
              "guards":[{{"subset":"v2","maxErrorPercent":5}}]}}"#
        ),
    );
    path.to_string_lossy().into_owned()
}

/// The `weight` column of a `simulate` row.
fn weight_of(table: &str, rule: &str, subset: &str) -> String {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.len() == 5 && cols[0] == rule && cols[1] == subset)
        .unwrap_or_else(|| panic!("no row for {rule}/{subset} in\n{table}"))[4]
        .to_owned()
}

#[test]
fn simulate_at_evaluates_ramps_at_that_time() {
    const KEYS: u64 = 4_000;
    let config = ramp_config("simulate-at", 0);
    for (at, share) in [
        ("2026-12-01T09:00:00Z", 0.10),
        ("2026-12-01T11:00:00Z", 0.30),
        ("2026-12-01T12:30:00+02:00", 0.20), // 10:30 UTC: a quarter of the way
        ("2026-12-02T00:00:00Z", 0.50),
    ] {
        let out = run(&[
            "simulate",
            &config,
            "--requests",
            &(2 * KEYS).to_string(),
            "--sticky-keys",
            &KEYS.to_string(),
            "--seed",
            "1",
            "--at",
            at,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let table = stdout(&out);
        assert!(table.contains("ramps evaluated at 2026-12-0"), "{table}");
        let expected = format!("{:.1}%", 100.0 * share);
        assert_eq!(weight_of(&table, "canary", "v2"), expected, "{at}\n{table}");
        let v2 = requests_of(&table, "canary", "v2") as f64 / (2 * KEYS) as f64;
        let sigma = (share * (1.0 - share) / KEYS as f64).sqrt();
        assert!(
            (v2 - share).abs() <= 4.5 * sigma,
            "{at}: v2 share {v2:.4}, expected {share} ± {:.4}\n{table}",
            4.5 * sigma
        );
    }
}

#[test]
fn simulate_without_at_uses_the_current_time() {
    // A ramp that ended long ago: now is past its end.
    let path = config_file(
        "simulate-now",
        r#"{"default":{"split":[{"subset":"v1","weight":90},{"subset":"v2","weight":10}],
            "ramp":{"subset":"v2","toPercent":100,"start":"2020-01-01T00:00:00Z","durationSeconds":60}}}"#,
    );
    let out = run(&[
        "simulate",
        &path.to_string_lossy(),
        "--requests",
        "100",
        "--seed",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    assert_eq!(requests_of(&table, "default", "v2"), 100, "{table}");
    assert_eq!(weight_of(&table, "default", "v2"), "100.0%");
}

#[test]
fn schedule_prints_each_ramps_timeline_steps_included() {
    let out = run(&["schedule", &ramp_config("schedule-steps", 4)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "rule canary: v2 from 10.0000% to 50.0000% between 2026-12-01T10:00:00Z and \
             2026-12-01T12:00:00Z (2h, in 4 steps)\n"
        ),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() == 3 && cols[0].starts_with("2026-"))
        .collect();
    assert_eq!(
        rows,
        [
            ["2026-12-01T10:00:00Z", "90.0000%", "10.0000%"],
            ["2026-12-01T10:30:00Z", "80.0000%", "20.0000%"],
            ["2026-12-01T11:00:00Z", "70.0000%", "30.0000%"],
            ["2026-12-01T11:30:00Z", "60.0000%", "40.0000%"],
            ["2026-12-01T12:00:00Z", "50.0000%", "50.0000%"],
        ],
        "{text}"
    );
    assert!(text.contains("before start (configured)"), "{text}");
    assert!(text.contains("  now ("), "{text}");

    let out = run(&["schedule", &ramp_config("schedule-continuous", 0)]);
    let text = stdout(&out);
    let times = text
        .lines()
        .filter(|l| l.trim_start().starts_with("2026-"))
        .count();
    assert_eq!(times, 11, "a continuous ramp in tenths\n{text}");
    assert!(
        text.contains("2026-12-01T10:12:00Z           86.0000%     14.0000%"),
        "{text}"
    );
}

#[test]
fn schedule_without_ramps_or_with_an_invalid_config() {
    let out = run(&["schedule", &example("sticky-canary/config.json")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).ends_with(": no ramps\n"), "{}", stdout(&out));
    let bad = config_file(
        "schedule-invalid",
        r#"{"default":{"split":[{"subset":"v1","weight":1}],"ramp":{"subset":"v9","toPercent":50,"start":"2026-12-01T10:00:00Z","durationSeconds":60}}}"#,
    );
    let out = run(&["schedule", &bad.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("default.ramp.subset: \"v9\" is not in this split (v1)"),
        "{}",
        stderr(&out)
    );
}

/// A 5 MB regex is refused in one short line: the pattern is repeated up to 80 characters, with
/// its size; so are values given on the command line.
#[test]
fn a_huge_value_is_repeated_cut_to_80_characters() {
    let pattern = "a".repeat(5 << 20);
    let path = config_file(
        "huge-regex",
        &format!(
            r#"{{"rules":[{{"name":"debug","match":{{"headers":[{{"name":"user-agent","regex":"{pattern}"}}]}},"route":{{"subset":"v2"}}}}],"default":{{"subset":"v1"}}}}"#
        ),
    );
    let path = path.to_string_lossy();
    let out = run(&["validate", &path]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.len() < 400, "{} bytes: {}…", text.len(), &text[..400]);
    assert_eq!(
        text,
        format!(
            "{path}: rules[0].match.headers[0].regex: \"{}\"… (5242880 bytes) is not a valid regex: \
             compiled regex exceeded size limit\n",
            "a".repeat(80)
        )
    );

    let long = "9".repeat(100_000);
    let config = example("sticky-canary/config.json");
    for args in [
        &["simulate", &config, "--seed", &long][..],
        &["simulate", &config, "--at", &long],
        &["simulate", &config, &long],
        &[
            "set-weights",
            &config,
            "--rule",
            "canary",
            &format!("v2={long}"),
        ],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let text = stderr(&out);
        assert!(text.len() < 600, "{} bytes: {}…", text.len(), &text[..600]);
        assert!(text.contains(" bytes)"), "{text}");
    }
}

#[test]
fn simulate_says_what_is_wrong_with_its_numbers_and_sticky_keys() {
    let config = example("sticky-canary/config.json");
    for (option, value) in [
        ("--requests", "-5"),
        ("--requests", "0"),
        ("--sticky-keys", "-1"),
    ] {
        let out = run(&["simulate", &config, option, value]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).starts_with(&format!("error: invalid value '{value}' for '{option} <"))
                && stderr(&out).contains("must be a positive number (1, 2, …)"),
            "{option} {value}: {}",
            stderr(&out)
        );
    }
    // red-blue has no sticky split: sticky keys would change nothing.
    let red_blue = example("red-blue/config.json");
    let out = run(&["simulate", &red_blue, "--sticky-keys", "100"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).starts_with(&format!(
            "error: --sticky-keys: no split of {red_blue} is sticky (stickyBy), so no decision \
             reads a key; simulate without --sticky-keys\n"
        )),
        "{}",
        stderr(&out)
    );
}
