//! The two YAML scalar forms the renderer writes.

/// A double-quoted YAML scalar holding `s` verbatim (JSON string syntax is valid YAML).
pub fn q(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => o.push_str(&format!("\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A multi-line text as a literal block (`|`, each line indented by `indent`), which keeps a
/// pretty-printed JSON configuration readable in the YAML; anything a literal block cannot
/// carry verbatim (control characters, a leading space) as a quoted scalar instead.
pub fn block_or_quoted(text: &str, indent: usize) -> String {
    let body = text.trim_end_matches('\n');
    let plain = body.contains('\n')
        && !body.starts_with([' ', '\t'])
        && !body
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        && !body.lines().any(|l| l.trim().is_empty() && !l.is_empty());
    if !plain {
        return q(text);
    }
    let pad = " ".repeat(indent);
    let mut out = String::from("|");
    for line in body.lines() {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    out
}
