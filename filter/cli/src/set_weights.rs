//! `subset-router set-weights FILE --rule RULE SUBSET=WEIGHT…`: changes one split's weights in
//! the file that holds the configuration, and nothing else.
//!
//! * The weights are edited as text: only the digits of the changed weights are replaced, at the
//!   byte positions [`crate::locate`] finds for them, so comments, key order, quoting and
//!   indentation stay exactly as they were.
//! * Before anything is written, the edited file is read again from scratch: the split must
//!   read back as the new weights, every configuration must equal the old one with only those
//!   weights changed, and each must pass the filter's own validation ([`subset_router_core::load`]).
//! * The file is replaced atomically: a temporary file in the same directory, then a rename
//!   over the target (what Envoy's file-based ECDS watches for; a reader never sees half a file).
//!   A rename needs only the directory to be writable, so the file's own permissions are checked
//!   first: a file the caller may not write (a read-only `0444` file, another user's file) is
//!   refused unless `--force` is given.
//! * A file holding several subset-router configurations (several WasmPlugins in one YAML
//!   stream, a Wasm and a dynamic-module filter in one Envoy config, …) is edited as one: every
//!   configuration must have the rule with the same split (subsets and weights), and all get
//!   the new weights. If they differ, nothing is written (exit 1): keep them in separate files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;
use subset_router_core::error::quoted;
use subset_router_core::router::StickyKey;
use subset_router_core::selection::StickyHasher;
use subset_router_core::{load, Router};

use crate::locate::{self, Found, SplitAt, SplitError};

/// Keys whose sticky subset is compared before and after the change.
pub const STICKY_KEYS: u32 = 10_000;

#[derive(Args)]
#[command(
    after_help = "FILE is a plugin configuration (JSON), an Envoy config (YAML or JSON) with \
    subset-router's Wasm filter, dynamic module filter or dynamic module cluster specifier \
    (listeners, routes or ECDS resources), an Istio \
    WasmPlugin or an Envoy Gateway EnvoyExtensionPolicy. Subsets not named keep their weight. \
    Only the weight numbers change in the file; the result is validated first and the file is \
    replaced atomically (rename). A file you may not write (e.g. mode 0444) is refused unless \
    --force is given. Several configurations in one file must agree on the rule's split and are \
    all changed.\n\
    Example: subset-router set-weights wasmplugin.yaml --rule canary v1=80 v2=20\n\
    Exit status: 0 changed (or already so), 1 invalid change or configuration (file untouched), \
    2 usage error."
)]
pub struct SetWeightsArgs {
    /// The file to edit in place
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The rule whose split changes (`default`: the default route)
    #[arg(long, value_name = "RULE")]
    rule: String,
    /// New weights, 0 to 1000000 each (e.g. v1=80 v2=20)
    #[arg(value_name = "SUBSET=WEIGHT", required = true, value_parser = parse_weight)]
    weights: Vec<(String, i64)>,
    /// Validate and print the change without writing the file
    #[arg(long)]
    dry_run: bool,
    /// Replace the file even if its permissions do not let you write it (the rename only needs
    /// a writable directory); the new file keeps the old one's mode
    #[arg(long)]
    force: bool,
}

/// `SUBSET=WEIGHT`.
fn parse_weight(text: &str) -> Result<(String, i64), String> {
    let (subset, weight) = text
        .split_once('=')
        .filter(|(s, _)| !s.is_empty())
        .ok_or("expected SUBSET=WEIGHT, e.g. v2=20")?;
    let weight = weight
        .trim()
        .parse()
        .map_err(|_| format!("the weight {} is not an integer", quoted(weight)))?;
    Ok((subset.to_owned(), weight))
}

/// Why nothing was written.
enum Failure {
    /// Exit 2.
    Usage(String),
    /// Exit 1.
    Invalid(Vec<String>),
}

fn invalid(line: impl Into<String>) -> Failure {
    Failure::Invalid(vec![line.into()])
}

pub fn run(args: &SetWeightsArgs) -> ExitCode {
    match set_weights(args) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            eprintln!(
                "error: {message}\n\nFor more information, try 'subset-router set-weights --help'."
            );
            ExitCode::from(2)
        }
        Err(Failure::Invalid(lines)) => {
            lines.iter().for_each(|l| eprintln!("{l}"));
            ExitCode::FAILURE
        }
    }
}

/// One configuration's change, for the report.
struct Change {
    label: String,
    /// The split's JSON path in the configuration.
    split_path: String,
    old_json: Vec<u8>,
    new_json: Vec<u8>,
}

fn set_weights(args: &SetWeightsArgs) -> Result<String, Failure> {
    let rule = args.rule.as_str();
    let rule_q = quoted(rule);
    let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
    for (subset, weight) in &args.weights {
        if wanted.insert(subset, *weight).is_some() {
            return Err(Failure::Usage(format!(
                "subset {} is given twice",
                quoted(subset)
            )));
        }
    }
    let shown = args.file.display().to_string();
    let bytes =
        std::fs::read(&args.file).map_err(|e| invalid(format!("{shown}: cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| invalid(format!("{shown}: not UTF-8 text")))?;

    let (format, docs) = locate::parse_file(&text).map_err(|e| invalid(format!("{shown}: {e}")))?;
    let discovery = locate::discover(&text, format, &docs);
    if discovery.found.is_empty() {
        let mut lines = vec![format!(
            "{shown}: no subset-router configuration found ({})",
            locate::LOOKED_FOR
        )];
        lines.extend(discovery.skipped.iter().map(|s| format!("{shown}: {s}")));
        return Err(Failure::Invalid(lines));
    }

    // The split in each configuration, which must all agree.
    let mut splits = Vec::with_capacity(discovery.found.len());
    for found in &discovery.found {
        let at = |what: String| format!("{shown}: {}: {what}", found.label);
        let split = locate::locate_split(&text, found, rule).map_err(|e| {
            invalid(at(match e {
                SplitError::UnknownRule { known } => {
                    format!("no rule named {rule_q} (rules: {})", known.join(", "))
                }
                SplitError::NotASplit { subset } => format!(
                    "rule {rule_q} routes to one subset{}, not a split: set-weights changes a split's weights",
                    subset.map_or(String::new(), |s| format!(" ({s})"))
                ),
                SplitError::Unreadable(reason) => reason,
            }))
        })?;
        splits.push(split);
    }
    let old: Vec<(String, i64)> = pairs(&splits[0]);
    if splits.iter().any(|s| pairs(s) != old) {
        let mut lines = vec![format!(
            "{shown}: its {} subset-router configurations split rule {rule_q} differently; \
             set-weights changes them together and needs them equal (keep differing ones in separate files):",
            splits.len()
        )];
        for (found, split) in discovery.found.iter().zip(&splits) {
            lines.push(format!("  {}: {}", found.label, show_split(&pairs(split))));
        }
        return Err(Failure::Invalid(lines));
    }
    let unknown: Vec<&str> = wanted
        .keys()
        .copied()
        .filter(|s| !old.iter().any(|(o, _)| o == s))
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(format!(
            "{shown}: rule {rule_q} has no subset {} (its split: {})",
            unknown
                .iter()
                .map(|s| quoted(s).to_string())
                .collect::<Vec<_>>()
                .join(", "),
            old.iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let new: Vec<(String, i64)> = old
        .iter()
        .map(|(s, w)| (s.clone(), wanted.get(s.as_str()).copied().unwrap_or(*w)))
        .collect();
    if new == old {
        return Ok(format!(
            "{shown}: rule {rule} is already {}; file left as it is\n",
            show_split(&old)
        ));
    }

    // The edit: the changed weights' digits, in every configuration.
    let mut edits: Vec<(Range<usize>, String)> = splits
        .iter()
        .flat_map(|split| split.entries.iter().zip(&new))
        .filter(|(entry, (_, weight))| entry.weight != *weight)
        .map(|(entry, (_, weight))| (entry.file_span.clone(), weight.to_string()))
        .collect();
    edits.sort_by_key(|(span, _)| span.start);
    edits.dedup_by(|a, b| a.0 == b.0);
    if edits.windows(2).any(|w| w[0].0.end > w[1].0.start) {
        return Err(invalid(format!(
            "{shown}: overlapping weights; nothing written"
        )));
    }
    let mut edited = text.clone();
    for (span, digits) in edits.iter().rev() {
        edited.replace_range(span.clone(), digits);
    }

    let changes = verify(
        &shown,
        rule,
        &text,
        &discovery.found,
        &splits,
        &new,
        &edited,
    )?;

    let mut report = String::new();
    for change in &changes {
        describe(&mut report, &shown, rule, change, &old, &new);
    }
    if args.dry_run {
        let _ = writeln!(report, "{shown}: valid; not written (--dry-run)");
    } else {
        if !args.force {
            writable(&args.file).map_err(|e| {
                invalid(format!(
                    "{shown}: not written: the file is not writable by you ({e}); the directory \
                     would allow replacing it, but its permissions say it is not to be changed: \
                     make it writable, or pass --force to replace it anyway"
                ))
            })?;
        }
        replace_atomically(&args.file, text.as_bytes(), edited.as_bytes())
            .map_err(|e| invalid(format!("{shown}: not written: {e}")))?;
        let _ = writeln!(report, "{shown}: written");
    }
    Ok(report)
}

fn pairs(split: &SplitAt) -> Vec<(String, i64)> {
    split
        .entries
        .iter()
        .map(|e| (e.subset.clone(), e.weight))
        .collect()
}

/// Reads the edited file again as if new: the same configurations, each equal to the old one
/// with only the split's weights changed, each valid for the filter.
fn verify(
    shown: &str,
    rule: &str,
    text: &str,
    found: &[Found],
    splits: &[SplitAt],
    new: &[(String, i64)],
    edited: &str,
) -> Result<Vec<Change>, Failure> {
    let internal = |what: &str| {
        invalid(format!(
            "{shown}: internal error: {what}; nothing written (please report this file's layout)"
        ))
    };
    let (format, docs) =
        locate::parse_file(edited).map_err(|e| internal(&format!("edited file: {e}")))?;
    let refound = locate::discover(edited, format, &docs).found;
    if refound.len() != found.len() {
        return Err(internal("the edited file holds other configurations"));
    }
    let mut changes = Vec::with_capacity(found.len());
    let mut errors = Vec::new();
    for ((old_found, split), new_found) in found.iter().zip(splits).zip(&refound) {
        let read_back = locate::locate_split(edited, new_found, rule)
            .map_err(|_| internal("the edited split cannot be read back"))?;
        if pairs(&read_back) != new {
            return Err(internal("the edited split reads back differently"));
        }
        let old_json = old_found
            .config_json(text)
            .map_err(|e| invalid(format!("{shown}: {}: {e}", old_found.label)))?;
        let new_json = new_found.config_json(edited).map_err(|e| internal(&e))?;
        let mut expected: Value =
            serde_json::from_slice(&old_json).map_err(|e| internal(&e.to_string()))?;
        let actual: Value =
            serde_json::from_slice(&new_json).map_err(|e| internal(&e.to_string()))?;
        let route = match split.rule_index {
            Some(i) => format!("/rules/{i}/route"),
            None => "/default".to_owned(),
        };
        for (j, (_, weight)) in new.iter().enumerate() {
            let slot = expected
                .pointer_mut(&format!("{route}/split/{j}/weight"))
                .ok_or_else(|| internal("the split is not where it was read"))?;
            *slot = Value::from(*weight);
        }
        if expected != actual {
            return Err(internal("the edit changed more than the weights"));
        }
        if let Err(problems) = load(&new_json) {
            errors.extend(
                problems
                    .iter()
                    .map(|p| format!("{shown}: {}: {p}", new_found.label)),
            );
        }
        changes.push(Change {
            label: new_found.label.clone(),
            split_path: split.path.clone(),
            old_json,
            new_json,
        });
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        let weights: Vec<String> = new.iter().map(|(s, w)| format!("{s}={w}")).collect();
        errors.push(format!(
            "{shown}: rule {rule} → {} would make the configuration invalid; nothing written",
            weights.join(" ")
        ));
        Err(Failure::Invalid(errors))
    }
}

/// `v1=90 v2=10 (90.0% / 10.0%)`
fn show_split(split: &[(String, i64)]) -> String {
    let total: i64 = split.iter().map(|(_, w)| (*w).max(0)).sum();
    let weights: Vec<String> = split.iter().map(|(s, w)| format!("{s}={w}")).collect();
    if total <= 0 {
        return weights.join(" ");
    }
    let shares: Vec<String> = split
        .iter()
        .map(|(_, w)| format!("{:.1}%", 100.0 * (*w).max(0) as f64 / total as f64))
        .collect();
    format!("{} ({})", weights.join(" "), shares.join(" / "))
}

fn describe(
    out: &mut String,
    shown: &str,
    rule: &str,
    change: &Change,
    old: &[(String, i64)],
    new: &[(String, i64)],
) {
    let _ = writeln!(
        out,
        "{shown}: {}: rule {rule} ({})",
        change.label, change.split_path
    );
    let _ = writeln!(out, "  old: {}", show_split(old));
    let _ = writeln!(out, "  new: {}", show_split(new));
    let moved = match (load(&change.old_json), load(&change.new_json)) {
        (Ok(before), Ok(after)) => sticky_moves(&before, &after, rule),
        (Err(_), _) => Moved::NotComparable("the current configuration is invalid".into()),
        (_, Err(_)) => Moved::NotComparable("the new configuration is invalid".into()),
    };
    let _ = match moved {
        Moved::Sticky {
            key,
            moved,
            flows,
            ramp,
        } => writeln!(
            out,
            "  sticky keys moved: {moved} of {STICKY_KEYS} (sticky by {}{}){}",
            describe_key(&key),
            if ramp { ", ramp evaluated now" } else { "" },
            if flows.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    flows
                        .iter()
                        .map(|((from, to), n)| format!("{from} → {to} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        Moved::NotSticky => writeln!(
            out,
            "  sticky keys moved: n/a (a random split, not sticky: every request is drawn anew)"
        ),
        Moved::NotComparable(why) => writeln!(out, "  sticky keys moved: n/a ({why})"),
    };
}

fn describe_key(key: &StickyKey) -> String {
    match key {
        StickyKey::Header(name) => format!("header {name}"),
        StickyKey::Cookie(name) => format!("cookie {name}"),
        StickyKey::Query(name) => format!("query parameter {name}"),
        StickyKey::SourceIp => "source IP".into(),
    }
}

enum Moved {
    Sticky {
        key: StickyKey,
        moved: u32,
        /// (from, to) → keys.
        flows: BTreeMap<(String, String), u32>,
        /// The split has a ramp: weights are its effective ones now.
        ramp: bool,
    },
    NotSticky,
    NotComparable(String),
}

/// Of keys `key-0` … `key-9999`, how many the filter's sticky selection (weighted rendezvous
/// hashing salted by the rule name) sends to another subset after the change.
fn sticky_moves(before: &Router, after: &Router, rule: &str) -> Moved {
    let now = crate::now_ms();
    let summary = |router: &Router| {
        router
            .summaries_with(&crate::conditions_at(router, now))
            .into_iter()
            .find(|s| s.rule == rule)
    };
    let (Some(old), Some(new)) = (summary(before), summary(after)) else {
        return Moved::NotComparable(format!("no rule {rule} in the compiled configuration"));
    };
    let Some(key) = new.sticky.clone() else {
        return Moved::NotSticky;
    };
    let names: Vec<&str> = new.targets.iter().map(|(t, _)| t.subset.as_str()).collect();
    if old.targets.len() != names.len() {
        return Moved::NotComparable("the split's subsets differ".into());
    }
    let weights = |s: &subset_router_core::router::RouteSummary| -> Vec<u64> {
        s.targets.iter().map(|(_, w)| w.unwrap_or(0)).collect()
    };
    let (old_w, new_w) = (weights(&old), weights(&new));
    let hasher = StickyHasher::new(rule, names.iter().copied());
    let mut moved = 0;
    let mut flows = BTreeMap::new();
    for k in 0..STICKY_KEYS {
        let id = format!("key-{k}");
        let from = hasher.pick_by(id.as_bytes(), |i| old_w.get(i).copied().unwrap_or(0));
        let to = hasher.pick_by(id.as_bytes(), |i| new_w.get(i).copied().unwrap_or(0));
        if from != to {
            moved += 1;
            let name = |i: Option<usize>| i.and_then(|i| names.get(i)).unwrap_or(&"-").to_string();
            *flows.entry((name(from), name(to))).or_insert(0) += 1;
        }
    }
    Moved::Sticky {
        key,
        moved,
        flows,
        ramp: before.ramps().iter().any(|r| r.rule == rule),
    }
}

/// Whether the caller may write the file itself, as the kernel decides it (mode, owner, ACLs,
/// read-only mounts): faccessat(2) with the effective user and group, which touches nothing.
#[cfg(unix)]
fn writable(path: &Path) -> std::io::Result<()> {
    use rustix::fs::{accessat, Access, AtFlags, CWD};
    accessat(CWD, path, Access::WRITE_OK, AtFlags::EACCESS).map_err(std::io::Error::from)
}

/// Whether the caller may write the file itself: opening it for writing, without truncating.
#[cfg(not(unix))]
fn writable(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(path).map(drop)
}

/// Replaces `path` by a temporary file renamed over it, if it still holds `expected`. A
/// symbolic link is followed: its target is replaced, the link kept. The new file keeps the
/// old one's permissions (and owner, where allowed).
fn replace_atomically(path: &Path, expected: &[u8], contents: &[u8]) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("the file has no directory"))?;
    let metadata = std::fs::metadata(&target)?;
    let name = target
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".set-weights")
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.as_file().set_permissions(metadata.permissions())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Best effort: only root may give a file to another owner.
        let _ =
            std::os::unix::fs::fchown(temp.as_file(), Some(metadata.uid()), Some(metadata.gid()));
    }
    temp.as_file().sync_all()?;
    if std::fs::read(&target)? != expected {
        return Err(std::io::Error::other(
            "the file changed while it was being edited; run set-weights again",
        ));
    }
    temp.persist(&target).map_err(|e| e.error)?;
    if let Ok(directory) = std::fs::File::open(dir) {
        // Makes the rename durable; not every platform can sync a directory.
        let _ = directory.sync_all();
    }
    Ok(())
}
