//! Test doubles of the proxy shared by the unit tests: a shared-data store with the host's CAS
//! rules and a settable clock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::host::{CasOutcome, Clock, HostCall, HostError, SharedStore};

/// proxy-wasm shared data as Envoy implements it: one CAS counter for the whole store, starting
/// at 1 and never 0; `cas == 0` overwrites; a missing key is created whatever `cas` is; a stale
/// `cas` is a mismatch. It can also be told to lose the next swaps (as if another worker had
/// written first) or to fail outright.
#[derive(Default)]
pub struct FakeStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    last_cas: Cell<u32>,
    /// The next this-many `set`s with a non-zero token fail as mismatches.
    pub lose_next: Cell<usize>,
    /// Every call fails with a host error.
    pub broken: Cell<bool>,
    pub gets: Cell<usize>,
    pub sets: Cell<usize>,
}

impl FakeStore {
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.map.borrow().get(key).map(|(v, _)| v.clone())
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.map.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl SharedStore for FakeStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.gets.set(self.gets.get() + 1);
        if self.broken.get() {
            return Err(HostError {
                call: HostCall::SharedDataGet,
                code: 10,
            });
        }
        Ok(self.map.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<CasOutcome, HostError> {
        self.sets.set(self.sets.get() + 1);
        if self.broken.get() {
            return Err(HostError {
                call: HostCall::SharedDataSet,
                code: 10,
            });
        }
        let mut map = self.map.borrow_mut();
        if let Some((_, current)) = map.get(key) {
            if cas != 0 && cas != *current {
                return Ok(CasOutcome::Mismatch);
            }
            if cas != 0 && self.lose_next.get() > 0 {
                self.lose_next.set(self.lose_next.get() - 1);
                return Ok(CasOutcome::Mismatch);
            }
        }
        let mut next = self.last_cas.get().wrapping_add(1);
        if next == 0 {
            next = 1;
        }
        self.last_cas.set(next);
        map.insert(key.to_owned(), (value.to_vec(), next));
        Ok(CasOutcome::Stored)
    }
}

/// A clock the test moves by hand; counts wall-clock reads.
pub struct FakeClock {
    pub wall_ns: Cell<u64>,
    pub monotonic_ns: Cell<u64>,
    pub wall_reads: Cell<usize>,
}

impl FakeClock {
    /// Wall clock at `wall_ms` (Unix), monotonic clock at `monotonic_ms`.
    pub fn at(wall_ms: i64, monotonic_ms: u64) -> Self {
        Self {
            wall_ns: Cell::new(u64::try_from(wall_ms).unwrap() * 1_000_000),
            monotonic_ns: Cell::new(monotonic_ms * 1_000_000),
            wall_reads: Cell::new(0),
        }
    }

    /// Moves both clocks forward.
    pub fn advance_ms(&self, ms: u64) {
        self.wall_ns.set(self.wall_ns.get() + ms * 1_000_000);
        self.monotonic_ns
            .set(self.monotonic_ns.get() + ms * 1_000_000);
    }
}

impl Clock for FakeClock {
    fn wall_ns(&self) -> Result<u64, HostError> {
        self.wall_reads.set(self.wall_reads.get() + 1);
        Ok(self.wall_ns.get())
    }

    fn monotonic_ns(&self) -> Result<u64, HostError> {
        Ok(self.monotonic_ns.get())
    }
}

#[test]
fn the_fake_store_follows_the_hosts_cas_rules() {
    let store = FakeStore::default();
    assert_eq!(store.get("a").unwrap(), None);
    // A missing key is created whatever the token; tokens start at 1 and are store-wide.
    assert_eq!(store.set("a", b"1", 77).unwrap(), CasOutcome::Stored);
    assert_eq!(store.get("a").unwrap(), Some((b"1".to_vec(), 1)));
    assert_eq!(store.set("b", b"x", 0).unwrap(), CasOutcome::Stored);
    assert_eq!(store.get("b").unwrap(), Some((b"x".to_vec(), 2)));
    // A stale token loses; the current one wins; 0 overwrites.
    assert_eq!(store.set("a", b"2", 2).unwrap(), CasOutcome::Mismatch);
    assert_eq!(store.set("a", b"2", 1).unwrap(), CasOutcome::Stored);
    assert_eq!(store.get("a").unwrap(), Some((b"2".to_vec(), 3)));
    assert_eq!(store.set("a", b"3", 0).unwrap(), CasOutcome::Stored);
    assert_eq!(store.get("a").unwrap(), Some((b"3".to_vec(), 4)));
    // An injected loss.
    store.lose_next.set(1);
    assert_eq!(store.set("a", b"4", 4).unwrap(), CasOutcome::Mismatch);
    assert_eq!(store.set("a", b"4", 4).unwrap(), CasOutcome::Stored);
}
