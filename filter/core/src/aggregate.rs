//! Guard observations, from per-worker counters to one proxy-wide decision.
//!
//! Each worker (a Wasm VM per Envoy worker thread, or a thread of the native module) counts its
//! own requests in memory — no host call on the request path. Once a second its tick merges the
//! counts into the guard's shared [`Record`] with a compare-and-swap, evaluates the guard on the
//! merged window and writes both in the same swap: the one worker whose write changes the
//! state is the one that logs and counts the transition, so a trip is counted once per proxy.
//! A lost swap is retried a few times with a fresh read; counts that still could not be merged
//! stay for the next tick. Each proxy decides from its own traffic only.
//!
//! # Keys and configuration loads
//!
//! Shared data is process-wide and cannot be deleted, so the key set is bounded: one key per
//! plugin (`subset_router.<plugin>.load`) and one per guarded subset
//! (`subset_router.<plugin>.guard.<subset>`), whatever the number of workers, seconds or
//! reconfigurations (without a plugin name: `subset_router.load`, `subset_router.guard.<subset>`). A new configuration must reset every guard, while the workers of one
//! configuration must share their guards: the `load` key holds the hash of the configuration
//! in effect and a load number. A worker's first tick with a configuration whose hash differs
//! from it starts a new load (number + 1); a worker whose hash matches joins that load. Every
//! record carries its load number: a record of an older load is replaced by a fresh one, and a
//! worker still running an older configuration leaves a newer record alone.
//! (Keys are named by subset rather than by a hash of the guard definition so that tuning a
//! guard does not leave a new key behind each time; the load number does the separation.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::guard::{Counts, GuardSpec, Record, Transition, Trip};
use crate::host::{CasOutcome, HostError, SharedStore};
use crate::selection::{fnv1a64, fnv1a64_start};

/// A CAS token for "create, but do not overwrite": a missing key is created whatever the
/// token, and an existing key's token is this value only after 2³² − 1 writes.
pub const CREATE_ONLY: u32 = u32::MAX;

/// Swap attempts per key and tick before the counts wait for the next tick.
pub const ATTEMPTS: usize = 4;

/// A change of a guard's state, reported by the worker whose write made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Tripped { guard: usize, trip: Trip },
    Closed { guard: usize, trip: u32 },
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub events: Vec<Event>,
    /// Per guard: whether it is open, as read now (`None`: not read this tick).
    pub open: Vec<Option<bool>>,
    /// Host calls that failed (each already left its counts pending).
    pub failures: Vec<HostError>,
}

/// The per-worker side of every guard of one configuration.
#[derive(Debug)]
pub struct Aggregator {
    load_key: String,
    keys: Vec<String>,
    config_hash: u64,
    /// The load this worker joined; 0 before its first successful tick.
    load: AtomicU64,
    pending: Vec<Pending>,
}

/// Counts observed by this worker and not yet merged.
///
/// One lock over all five counts, not five atomics: workers add while the tick takes, and a
/// take must see each observation whole. With separate atomics a take could get an
/// observation's error but not its request (left for the next tick), and merge more errors
/// than requests. Both sides hold the lock for a few additions; nothing in it can panic, so a
/// poisoned lock still holds sound counts and is used as is.
#[derive(Debug, Default)]
struct Pending(Mutex<Counts>);

impl Pending {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, c: &Counts) {
        self.counts().add(c);
    }

    fn take(&self) -> Counts {
        std::mem::take(&mut *self.counts())
    }

    fn peek(&self) -> Counts {
        *self.counts()
    }
}

impl Aggregator {
    /// `plugin`: the plugin's name (proxy-wasm `plugin_name`), which separates plugins that
    /// share a VM id; `config_hash`: identifies the configuration (see the module notes).
    pub fn new(specs: &[GuardSpec], plugin: &str, config_hash: u64) -> Self {
        let prefix = match plugin {
            "" => "subset_router.".to_owned(),
            name => format!("subset_router.{name}."),
        };
        Self {
            load_key: format!("{prefix}load"),
            keys: specs
                .iter()
                .map(|s| format!("{prefix}guard.{}", s.subset))
                .collect(),
            config_hash,
            load: AtomicU64::new(0),
            pending: specs.iter().map(|_| Pending::default()).collect(),
        }
    }

    /// The shared key of guard `guard`.
    pub fn key(&self, guard: usize) -> Option<&str> {
        self.keys.get(guard).map(String::as_str)
    }

    pub fn load_key(&self) -> &str {
        &self.load_key
    }

    /// The load this worker joined (0: not yet).
    pub fn load(&self) -> u64 {
        self.load.load(Ordering::Relaxed)
    }

    /// Counts one observation for guard `guard` (request path: memory only).
    pub fn observe(&self, guard: usize, counts: &Counts) {
        if let Some(p) = self.pending.get(guard) {
            p.add(counts);
        }
    }

    /// Counts observed here and not merged yet (for tests and diagnostics).
    pub fn pending(&self, guard: usize) -> Counts {
        self.pending
            .get(guard)
            .map_or_else(Counts::default, Pending::peek)
    }

    /// The once-a-second merge: joins the configuration's load on the first call, then merges
    /// and evaluates every guard at `now_ms` (monotonic).
    pub fn tick(&self, specs: &[GuardSpec], store: &impl SharedStore, now_ms: u64) -> TickReport {
        let mut report = TickReport {
            open: vec![None; specs.len()],
            ..TickReport::default()
        };
        let load = match self.load() {
            0 => match self.join(store) {
                Ok(Some(load)) => {
                    self.load.store(load, Ordering::Relaxed);
                    load
                }
                Ok(None) => return report,
                Err(e) => {
                    report.failures.push(e);
                    return report;
                }
            },
            load => load,
        };
        for (guard, (spec, (key, pending))) in specs
            .iter()
            .zip(self.keys.iter().zip(&self.pending))
            .enumerate()
        {
            let delta = pending.take();
            match sync(spec, key, store, load, &delta, now_ms) {
                Ok(Synced::Written { open, transition }) => {
                    if let Some(slot) = report.open.get_mut(guard) {
                        *slot = Some(open);
                    }
                    match transition {
                        Some(Transition::Tripped(trip)) => {
                            report.events.push(Event::Tripped { guard, trip })
                        }
                        Some(Transition::Closed { trip }) => {
                            report.events.push(Event::Closed { guard, trip })
                        }
                        None => {}
                    }
                }
                Ok(Synced::Contended { open }) => {
                    pending.add(&delta);
                    if let Some(slot) = report.open.get_mut(guard) {
                        *slot = open;
                    }
                }
                // A newer configuration owns the guard: this one's counts no longer matter.
                Ok(Synced::Superseded) => {}
                Err(e) => {
                    pending.add(&delta);
                    report.failures.push(e);
                }
            }
        }
        report
    }

    /// Finds or starts this configuration's load: `Ok(None)` if every attempt lost a swap.
    fn join(&self, store: &impl SharedStore) -> Result<Option<u64>, HostError> {
        for _ in 0..ATTEMPTS {
            let (next, cas) = match store.get(&self.load_key)? {
                None => (1, CREATE_ONLY),
                Some((bytes, cas)) => match decode_load(&bytes) {
                    Some((hash, load)) if hash == self.config_hash => return Ok(Some(load)),
                    Some((_, load)) => (load.saturating_add(1), cas),
                    None => (1, cas),
                },
            };
            if store.set(&self.load_key, &encode_load(self.config_hash, next), cas)?
                == CasOutcome::Stored
            {
                return Ok(Some(next));
            }
        }
        Ok(None)
    }
}

enum Synced {
    /// The record now holds the counts (or there was nothing to write).
    Written {
        open: bool,
        transition: Option<Transition>,
    },
    /// Every attempt lost its swap: the counts wait for the next tick.
    Contended {
        open: Option<bool>,
    },
    Superseded,
}

/// Merges `delta` into one guard's record and evaluates it, in one swap.
fn sync(
    spec: &GuardSpec,
    key: &str,
    store: &impl SharedStore,
    load: u64,
    delta: &Counts,
    now_ms: u64,
) -> Result<Synced, HostError> {
    let now_s = now_ms / 1000;
    let mut last_open = None;
    for _ in 0..ATTEMPTS {
        let (current, cas) = match store.get(key)? {
            None => (None, CREATE_ONLY),
            Some((bytes, cas)) => (Record::decode(&bytes), cas),
        };
        let mut next = match &current {
            Some(r) if r.load == load => r.clone(),
            Some(r) if r.load > load => return Ok(Synced::Superseded),
            // Absent, unreadable or from an older load: this load starts it afresh.
            _ => Record::new(load),
        };
        let fresh = current.as_ref().is_none_or(|r| r.load != load);
        // What is stored now, should every attempt fail.
        last_open = current
            .as_ref()
            .filter(|r| r.load == load)
            .map(Record::is_open);
        next.merge(delta, now_s);
        let transition = next.evaluate(spec, now_ms);
        if !fresh && delta.is_zero() && transition.is_none() {
            // Nothing to write (pruning old seconds alone can wait for a write that matters).
            return Ok(Synced::Written {
                open: next.is_open(),
                transition: None,
            });
        }
        if store.set(key, &next.encode(), cas)? == CasOutcome::Stored {
            return Ok(Synced::Written {
                open: next.is_open(),
                transition,
            });
        }
    }
    Ok(Synced::Contended { open: last_open })
}

fn encode_load(hash: u64, load: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&hash.to_le_bytes());
    out.extend_from_slice(&load.to_le_bytes());
    out
}

fn decode_load(bytes: &[u8]) -> Option<(u64, u64)> {
    let (hash, rest) = bytes.split_first_chunk::<8>()?;
    let load: &[u8; 8] = rest.try_into().ok()?;
    Some((u64::from_le_bytes(*hash), u64::from_le_bytes(*load)))
}

/// The identity of a configuration for [`Aggregator::new`]: a hash of its text.
pub fn config_hash(text: &[u8]) -> u64 {
    fnv1a64(fnv1a64_start(), text)
}

#[cfg(test)]
mod tests;
