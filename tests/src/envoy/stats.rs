//! The stats Envoy's admin interface prints (`/stats`), as integers by name.

use super::Envoy;
use crate::http::Client;
use std::collections::BTreeMap;

impl Envoy {
    /// All `subset_router` counters from admin `/stats`, as printed (names unchanged).
    pub fn raw_stats(&self) -> Result<BTreeMap<String, u64>, String> {
        let mut admin = Client::new(self.admin());
        let r = admin.get("/stats?filter=subset_router", &[])?;
        if r.status != 200 {
            return Err(format!("/stats answered {}", r.status));
        }
        Ok(parse_stats(&r.body_str()))
    }

    /// Admin `/stats?filter=<regex>`: every integer stat whose name matches.
    pub fn stats(&self, filter: &str) -> Result<BTreeMap<String, u64>, String> {
        let mut admin = Client::new(self.admin());
        let r = admin.get(&format!("/stats?filter={filter}"), &[])?;
        if r.status != 200 {
            return Err(format!("/stats answered {}", r.status));
        }
        Ok(parse_stats(&r.body_str()))
    }
}

/// Parses admin `/stats` text (`name: value` lines), keeping integer values.
pub fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(": ")?;
            Some((k.trim().to_string(), v.trim().parse::<u64>().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stats() {
        let m = parse_stats(
            "wasmcustom.subset_router.rule.a.subset.v1: 3\nfoo.hist: P0(nan,1)\nx: 0\n",
        );
        assert_eq!(m.get("wasmcustom.subset_router.rule.a.subset.v1"), Some(&3));
        assert_eq!(m.len(), 2);
    }
}
