//! Configuration errors: every one names the JSON path of the offending field and the reason.

use std::fmt;

/// One configuration error, printed as `path: reason`,
/// e.g. `rules[1].route.split[0].weight: 1000001 exceeds 1000000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the field (`configuration` for the document as a whole).
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// How many characters of a value from the configuration (or the command line) a message
/// repeats.
pub const ECHO_CHARS: usize = 80;

/// The first [`ECHO_CHARS`] characters of `value`, and its length in bytes when that is not all
/// of it.
pub fn truncate(value: &str) -> (&str, Option<usize>) {
    match value.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => (value.get(..cut).unwrap_or(value), Some(value.len())),
        None => (value, None),
    }
}

/// A value as every message repeats it: quoted and escaped as `{:?}` would, and past
/// [`ECHO_CHARS`] characters cut to `"<first 80 characters>"… (N bytes)`, so that one 5 MB regex
/// cannot make a 5 MB error or log line.
pub fn quoted(value: &str) -> Quoted<'_> {
    Quoted(value)
}

/// See [`quoted`].
#[derive(Clone, Copy)]
pub struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, cut) = truncate(self.0);
        write!(f, "{head:?}")?;
        match cut {
            Some(bytes) => write!(f, "… ({bytes} bytes)"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_after_80_characters_with_their_size() {
        assert_eq!(quoted("debug").to_string(), r#""debug""#);
        assert_eq!(quoted("a\nb").to_string(), r#""a\nb""#);
        let exact = "é".repeat(ECHO_CHARS);
        assert_eq!(quoted(&exact).to_string(), format!("{exact:?}"));
        let long = format!("{exact}xyz");
        assert_eq!(
            quoted(&long).to_string(),
            format!("{exact:?}… ({} bytes)", 2 * ECHO_CHARS + 3)
        );
        let huge = "a".repeat(5 << 20);
        let shown = quoted(&huge).to_string();
        assert_eq!(
            shown,
            format!("\"{}\"… (5242880 bytes)", "a".repeat(ECHO_CHARS))
        );
    }
}
