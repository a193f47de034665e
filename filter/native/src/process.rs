//! What the native build provides itself where proxy-wasm has host calls: the clocks, and the
//! shared data that the guards of one configuration merge every worker's counts into. A dynamic
//! module runs in Envoy's own process, on every worker thread at once, so one configuration's
//! state is proxy-wide by being one object that every worker reaches.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use subset_router_core::host::{CasOutcome, Clock, HostCall, HostError, SharedStore};

/// The process's clocks: wall time from the OS (`SystemTime`); monotonic time as an `Instant`
/// against one process-wide origin, so that readings from any thread compare (guard windows and
/// cooldowns are stored in shared state that every worker compares with its own reading).
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeClock;

/// The monotonic clock's origin: its first reading in this process (in practice the first
/// configuration load).
static ORIGIN: OnceLock<Instant> = OnceLock::new();

impl Clock for NativeClock {
    fn wall_ns(&self) -> Result<u64, HostError> {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_nanos()).ok())
            .map(|ns| ns.saturating_add(test_skew_ns()))
            .ok_or(HostError {
                call: HostCall::WallClock,
                code: 0,
            })
    }

    fn monotonic_ns(&self) -> Result<u64, HostError> {
        let elapsed = ORIGIN.get_or_init(Instant::now).elapsed();
        Ok(u64::try_from(elapsed.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(test_skew_ns()))
    }
}

/// Monotonic milliseconds (see [`NativeClock`]).
pub fn monotonic_ms() -> u64 {
    NativeClock.monotonic_ns().unwrap_or(0) / 1_000_000
}

#[cfg(test)]
thread_local! {
    /// Unit tests move both clocks of their thread forward by this much.
    pub static SKEW_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn test_skew_ns() -> u64 {
    SKEW_MS.with(|s| s.get()) * 1_000_000
}

#[cfg(not(test))]
fn test_skew_ns() -> u64 {
    0
}

/// proxy-wasm shared data, re-implemented in memory: one `Mutex<HashMap>` with the CAS rules of
/// Envoy's Wasm shared data, which the core's guard aggregation relies on (see [`SharedStore`]):
/// one token counter for the whole store starting at 1 (never 0); `cas == 0` overwrites; the
/// key's current token writes; any other token is a mismatch; a missing key is created whatever
/// `cas` is; keys are never deleted.
///
/// Each accepted configuration owns one (see `module::FilterConfig`) and drops it with itself:
/// Wasm shared data is one table per VM id, shared by every configuration in it, so the core keys
/// its records by configuration; here no key of one configuration can ever reach another's
/// store, and a configuration's records do not outlive it.
#[derive(Debug, Default)]
pub struct SharedData {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl SharedData {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every update is a single insert: a panic elsewhere cannot leave the map half-written,
        // so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SharedStore for SharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        Ok(self.entries().map.get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<CasOutcome, HostError> {
        let mut entries = self.entries();
        if let Some((_, current)) = entries.map.get(key) {
            if cas != 0 && cas != *current {
                return Ok(CasOutcome::Mismatch);
            }
        }
        let next = match entries.last_cas.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        entries.last_cas = next;
        entries.map.insert(key.to_owned(), (value.to_vec(), next));
        Ok(CasOutcome::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_data_follows_the_proxy_wasm_cas_rules() {
        let store = SharedData::default();
        assert_eq!(store.get("a").unwrap(), None);
        // A missing key is created whatever the token; tokens start at 1 and are store-wide.
        assert_eq!(store.set("a", b"1", 77).unwrap(), CasOutcome::Stored);
        assert_eq!(store.get("a").unwrap(), Some((b"1".to_vec(), 1)));
        assert_eq!(store.set("b", b"x", 0).unwrap(), CasOutcome::Stored);
        assert_eq!(store.get("b").unwrap(), Some((b"x".to_vec(), 2)));
        // A stale token loses; the current one wins; 0 overwrites.
        assert_eq!(store.set("a", b"2", 2).unwrap(), CasOutcome::Mismatch);
        assert_eq!(store.get("a").unwrap(), Some((b"1".to_vec(), 1)));
        assert_eq!(store.set("a", b"2", 1).unwrap(), CasOutcome::Stored);
        assert_eq!(store.get("a").unwrap(), Some((b"2".to_vec(), 3)));
        assert_eq!(store.set("a", b"3", 0).unwrap(), CasOutcome::Stored);
        assert_eq!(store.get("a").unwrap(), Some((b"3".to_vec(), 4)));
    }

    #[test]
    fn the_token_counter_skips_zero_when_it_wraps() {
        let store = SharedData::default();
        store.entries().last_cas = u32::MAX - 1;
        store.set("a", b"1", 0).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().1, u32::MAX);
        store.set("a", b"2", u32::MAX).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().1, 1);
    }

    #[test]
    fn concurrent_cas_increments_lose_nothing() {
        // The pattern of the guard aggregation: read, modify, CAS, retry on mismatch.
        let store = SharedData::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        loop {
                            let (n, cas) = store.get("n").unwrap().map_or((0u64, 0), |(v, c)| {
                                (u64::from_le_bytes(v.try_into().unwrap()), c)
                            });
                            let cas = if cas == 0 { u32::MAX } else { cas };
                            if store.set("n", &(n + 1).to_le_bytes(), cas).unwrap()
                                == CasOutcome::Stored
                            {
                                break;
                            }
                        }
                    }
                });
            }
        });
        let (v, _) = store.get("n").unwrap().unwrap();
        assert_eq!(u64::from_le_bytes(v.try_into().unwrap()), 2000);
    }

    #[test]
    fn monotonic_clock_is_process_wide_and_moves() {
        let here = NativeClock.monotonic_ns().unwrap();
        let there = std::thread::spawn(|| NativeClock.monotonic_ns().unwrap())
            .join()
            .unwrap();
        assert!(there >= here, "one origin for every thread");
        let wall = NativeClock.wall_ns().unwrap();
        assert!(wall > 1_700_000_000_000_000_000, "Unix nanoseconds: {wall}");
    }
}
