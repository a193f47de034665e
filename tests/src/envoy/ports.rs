//! A block of free ports per Envoy: admin, front, one per upstream cluster, and the more front
//! listeners a launch may add.

use super::{CLUSTERS, MAX_MORE_FRONTS};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Ports of one Envoy instance: admin, front, one per upstream cluster, and
/// [`MAX_MORE_FRONTS`] for more front listeners (used or not).
#[derive(Debug, Clone)]
pub struct Ports {
    pub base: u16,
    pub admin: u16,
    pub front: u16,
    pub upstream: BTreeMap<&'static str, u16>,
    pub more_fronts: Vec<u16>,
}

/// Ports in one block, and the distance between two blocks.
const WIDTH: u32 = 2 + CLUSTERS.len() as u32 + MAX_MORE_FRONTS as u32;
const STRIDE: u32 = WIDTH.next_multiple_of(4);
/// Blocks from port 20,000 up to 65,000.
const BLOCKS: u32 = 45_000 / STRIDE;

static PORT_SEQ: AtomicU32 = AtomicU32::new(0);

/// Picks a block of free ports that no leftover Envoy (ours or anyone's) is bound to.
pub(super) fn allocate_ports() -> Result<Ports, String> {
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0));
    for _ in 0..200 {
        let n = PORT_SEQ.fetch_add(1, Ordering::Relaxed);
        let slot = (seed.wrapping_add(n.wrapping_mul(7919))) % BLOCKS;
        let base = 20_000 + slot * STRIDE;
        let all_free =
            (0..WIDTH).all(|i| TcpListener::bind(("0.0.0.0", (base + i) as u16)).is_ok());
        if all_free {
            let base = base as u16;
            let upstream = CLUSTERS
                .iter()
                .enumerate()
                .map(|(i, c)| (*c, base + 2 + i as u16))
                .collect();
            let first_more = base + 2 + CLUSTERS.len() as u16;
            return Ok(Ports {
                base,
                admin: base,
                front: base + 1,
                upstream,
                more_fronts: (0..MAX_MORE_FRONTS as u16)
                    .map(|i| first_more + i)
                    .collect(),
            });
        }
    }
    Err("no free port block found".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_do_not_overlap_and_stay_below_65536() {
        const { assert!(STRIDE >= WIDTH) };
        const { assert!(20_000 + BLOCKS * STRIDE <= 65_536) };
        let p = allocate_ports().unwrap();
        let mut all: Vec<u16> = vec![p.admin, p.front];
        all.extend(p.upstream.values());
        all.extend(&p.more_fronts);
        assert_eq!(all.len() as u32, WIDTH);
        all.sort();
        all.dedup();
        assert_eq!(all.len() as u32, WIDTH, "every port once");
        assert!(all
            .iter()
            .all(|&x| (p.base..p.base + WIDTH as u16).contains(&x)));
    }
}
