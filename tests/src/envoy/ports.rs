//! A block of free ports per Envoy: admin, front, one per upstream cluster.

use super::CLUSTERS;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Ports of one Envoy instance: admin, front, one per upstream cluster.
#[derive(Debug, Clone)]
pub struct Ports {
    pub base: u16,
    pub admin: u16,
    pub front: u16,
    pub upstream: BTreeMap<&'static str, u16>,
}

static PORT_SEQ: AtomicU32 = AtomicU32::new(0);

/// Picks a block of free ports that no leftover Envoy (ours or anyone's) is bound to.
pub(super) fn allocate_ports() -> Result<Ports, String> {
    let width = 2 + CLUSTERS.len() as u32;
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0));
    for _ in 0..200 {
        let n = PORT_SEQ.fetch_add(1, Ordering::Relaxed);
        let slot = (seed.wrapping_add(n.wrapping_mul(7919))) % 3000;
        let base = 20_000 + slot * 12;
        let all_free =
            (0..width).all(|i| TcpListener::bind(("0.0.0.0", (base + i) as u16)).is_ok());
        if all_free {
            let base = base as u16;
            let upstream = CLUSTERS
                .iter()
                .enumerate()
                .map(|(i, c)| (*c, base + 2 + i as u16))
                .collect();
            return Ok(Ports {
                base,
                admin: base,
                front: base + 1,
                upstream,
            });
        }
    }
    Err("no free port block found".into())
}
