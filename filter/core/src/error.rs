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
