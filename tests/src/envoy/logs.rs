//! What to show of an Envoy log (or `--mode validate` output) when something went wrong.

/// Warning/error/critical lines of an Envoy log plus its last lines: what explains a
/// failed start without the start-up banner.
pub fn log_excerpt(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let tail_from = lines.len().saturating_sub(12);
    let mut out: Vec<&str> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let important =
            l.contains("][warning][") || l.contains("][error][") || l.contains("][critical][");
        if important || i >= tail_from {
            out.push(l);
        }
    }
    let n = out.len();
    out[n.saturating_sub(60)..].join("\n")
}

/// The first error/critical line of an Envoy log, without its timestamp prefix.
pub fn first_error_line(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("][error][") || l.contains("][critical]["))
        .or_else(|| log.lines().rev().find(|l| !l.trim().is_empty()))
        .map(|l| {
            l.rsplit_once("] ")
                .map(|(_, m)| m)
                .unwrap_or(l)
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "(empty log)".into())
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
