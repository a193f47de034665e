//! Guard observations, from per-worker counters to one proxy-wide decision.
//!
//! Each worker (a Wasm VM per Envoy worker thread, or a thread of the native module) counts its
//! own requests in memory — no host call on the request path. Once a second its tick merges the
//! counts into the guard's shared [`Record`] with a compare-and-swap, evaluates the guard on the
//! merged window (and on the fleet's totals, when a fleet round answered) and writes both in the
//! same swap: the one worker whose write changes the state is the one that logs and counts the
//! transition, so a trip is counted once per proxy. A lost swap is retried a few times with a
//! fresh read; counts that still could not be merged stay for the next tick.
//!
//! # Configurations never share records
//!
//! Shared data is process-wide and cannot be deleted, so the key set must stay bounded, while
//! several configurations of one plugin can be alive at once (two listeners, two routes, two
//! Envoy Gateway policies) and each must keep its own guards. A table under
//! `subset_router.<plugin>.configs` gives each live configuration (by the hash of its text) one
//! of [`SLOTS`] slots and a load number; its guards live under
//! `subset_router.<plugin>.<slot>.guard.<i>` and its fleet rounds under `….fleet.<i>`. The
//! workers of one configuration find its hash, share its slot and mark it seen every second. A
//! configuration not seen for [`STALE_S`] seconds (replaced, or its listener removed) frees its
//! slot; a configuration that takes a slot gets a new load number, and every record of an older
//! load is replaced by a fresh one, so a new configuration starts every guard afresh (the same
//! text applied again after another counts as new: see [`REJOIN_S`]). Two identical texts
//! alive at once are one configuration: a top-level `name` tells them apart.

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

/// Configurations of one plugin alive at once in one proxy, each with its own guards.
pub const SLOTS: usize = 16;

/// A configuration whose workers have not ticked for this long has gone; its slot is free.
pub const STALE_S: u64 = 60;

/// A configuration's text found in a slot nobody has marked for this long is the same text
/// applied anew (its workers tick, and mark it, every second).
pub const REJOIN_S: u64 = 5;

/// The shortest fleet window worth a query: `increase()` needs two scrapes in it.
pub const MIN_FLEET_RANGE_S: u64 = 2;

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
    /// Per guard: this worker's counts that this tick merged into the guard's window (what the
    /// exported `requests`, `errors`, … counters add up).
    pub observed: Vec<Counts>,
    /// Host calls that failed (each already left its counts pending).
    pub failures: Vec<HostError>,
}

/// A fleet round this worker won: query the fleet's totals over the last `range_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetRound {
    pub guard: usize,
    pub range_s: u64,
    /// Monotonic ms the queried window starts at: an answer about a window that reaches back
    /// before the guard's last close is ignored.
    pub window_start_ms: u64,
}

/// The per-worker side of every guard of one configuration.
#[derive(Debug)]
pub struct Aggregator {
    /// `subset_router.<plugin>.` (or `subset_router.`).
    prefix: String,
    config_hash: u64,
    /// The slot (low 8 bits) and load (the rest) this worker joined; 0 before its first tick.
    joined: AtomicU64,
    pending: Vec<Pending>,
    /// Per guard: the fleet's totals from the last answered round, and the window's start.
    fleet: Vec<Mutex<Option<(Counts, u64)>>>,
}

/// Counts observed by this worker and not yet merged.
///
/// One lock over all the counts, not one atomic each: workers add while the tick takes, and a
/// take must see each observation whole. With separate atomics a take could get an
/// observation's error but not its request (left for the next tick), and merge more errors
/// than requests. Both sides hold the lock for a few additions; nothing in it can panic, so a
/// poisoned lock still holds sound counts and is used as is.
#[derive(Debug, Default)]
struct Pending(Mutex<Counts>);

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pending {
    fn add(&self, c: &Counts) {
        locked(&self.0).add(c);
    }

    fn take(&self) -> Counts {
        std::mem::take(&mut *locked(&self.0))
    }

    fn peek(&self) -> Counts {
        *locked(&self.0)
    }
}

/// Where a worker's configuration lives in the slot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Joined {
    slot: usize,
    load: u64,
}

impl Joined {
    fn pack(self) -> u64 {
        (self.load << 8) | (self.slot as u64 & 0xFF)
    }

    fn unpack(v: u64) -> Option<Self> {
        (v != 0).then_some(Self {
            slot: (v & 0xFF) as usize,
            load: v >> 8,
        })
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
            prefix,
            config_hash,
            joined: AtomicU64::new(0),
            pending: specs.iter().map(|_| Pending::default()).collect(),
            fleet: specs.iter().map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The key of the slot table.
    pub fn table_key(&self) -> String {
        format!("{}configs", self.prefix)
    }

    /// The shared key of guard `guard`, once this worker has joined a slot.
    pub fn key(&self, guard: usize) -> Option<String> {
        let j = Joined::unpack(self.joined.load(Ordering::Relaxed))?;
        Some(self.guard_key(j.slot, guard))
    }

    fn guard_key(&self, slot: usize, guard: usize) -> String {
        format!("{}{slot}.guard.{guard}", self.prefix)
    }

    fn fleet_key(&self, slot: usize, guard: usize) -> String {
        format!("{}{slot}.fleet.{guard}", self.prefix)
    }

    /// The load this worker joined (0: not yet).
    pub fn load(&self) -> u64 {
        Joined::unpack(self.joined.load(Ordering::Relaxed)).map_or(0, |j| j.load)
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

    /// The once-a-second merge: finds (or takes) the configuration's slot, then merges and
    /// evaluates every guard at `now_ms` (monotonic), with the fleet's totals where a round
    /// answered since the last tick.
    pub fn tick(&self, specs: &[GuardSpec], store: &impl SharedStore, now_ms: u64) -> TickReport {
        let mut report = TickReport {
            open: vec![None; specs.len()],
            observed: vec![Counts::default(); specs.len()],
            ..TickReport::default()
        };
        let joined = match self.join(store, now_ms / 1000) {
            Ok(Some(j)) => j,
            Ok(None) => return report,
            Err(e) => {
                report.failures.push(e);
                return report;
            }
        };
        for (guard, (spec, pending)) in specs.iter().zip(&self.pending).enumerate() {
            let key = self.guard_key(joined.slot, guard);
            let delta = pending.take();
            let fleet = self.fleet.get(guard).and_then(|f| locked(f).take());
            match sync(spec, &key, store, joined.load, &delta, fleet, now_ms) {
                Ok(Synced::Written {
                    open,
                    transition,
                    observed,
                }) => {
                    if let Some(slot) = report.open.get_mut(guard) {
                        *slot = Some(open);
                    }
                    if let Some(slot) = report.observed.get_mut(guard) {
                        *slot = observed;
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
                    self.keep_fleet(guard, fleet);
                    if let Some(slot) = report.open.get_mut(guard) {
                        *slot = open;
                    }
                }
                // A newer configuration owns the slot: this one's counts no longer matter.
                Ok(Synced::Superseded) => {}
                Err(e) => {
                    pending.add(&delta);
                    self.keep_fleet(guard, fleet);
                    report.failures.push(e);
                }
            }
        }
        report
    }

    /// Puts unapplied fleet totals back, unless a newer answer arrived meanwhile.
    fn keep_fleet(&self, guard: usize, fleet: Option<(Counts, u64)>) {
        if let (Some(slot), Some(f)) = (self.fleet.get(guard), fleet) {
            locked(slot).get_or_insert(f);
        }
    }

    /// Finds this configuration's slot in the table (marking it seen, once a second per
    /// configuration), or takes a free (or the stalest) slot with a new load number. A worker
    /// new to the configuration that finds its text in a slot nobody has marked for
    /// [`REJOIN_S`] seconds starts a new load there: the same text applied again after another
    /// one is a new configuration, and starts every guard afresh. `Ok(None)`: every swap was
    /// lost.
    fn join(&self, store: &impl SharedStore, now_s: u64) -> Result<Option<Joined>, HostError> {
        let key = self.table_key();
        let mine = Joined::unpack(self.joined.load(Ordering::Relaxed));
        for _ in 0..ATTEMPTS {
            let (mut table, cas) = match store.get(&key)? {
                None => (SlotTable::default(), CREATE_ONLY),
                Some((bytes, cas)) => (SlotTable::decode(&bytes).unwrap_or_default(), cas),
            };
            let (joined, write) = match table.find(self.config_hash) {
                Some((slot, entry))
                    if mine.is_some() || entry.seen_s.saturating_add(REJOIN_S) > now_s =>
                {
                    let found = Joined {
                        slot,
                        load: entry.load,
                    };
                    if entry.seen_s >= now_s {
                        self.joined.store(found.pack(), Ordering::Relaxed);
                        return Ok(Some(found));
                    }
                    table.touch(slot, now_s);
                    (found, false)
                }
                Some((slot, _)) => (table.restart(slot, now_s), true),
                None => (table.take(self.config_hash, now_s), true),
            };
            match store.set(&key, &table.encode(), cas)? {
                CasOutcome::Stored => {
                    self.joined.store(joined.pack(), Ordering::Relaxed);
                    return Ok(Some(joined));
                }
                // Marking the slot seen can wait: another worker, or the next tick, does it.
                CasOutcome::Mismatch if !write => {
                    self.joined.store(joined.pack(), Ordering::Relaxed);
                    return Ok(Some(joined));
                }
                CasOutcome::Mismatch => {}
            }
        }
        Ok(None)
    }

    /// Claims guard `guard`'s fleet round if one is due on this proxy (at most one per
    /// `intervalSeconds`, whichever worker asks first) and the guard is closed. The window is
    /// the guard's, cut to start no earlier than its last close or its configuration's start.
    pub fn fleet_round(
        &self,
        guard: usize,
        spec: &GuardSpec,
        store: &impl SharedStore,
        now_ms: u64,
    ) -> Result<Option<FleetRound>, HostError> {
        let (Some(fleet), Some(joined)) = (
            spec.fleet.as_ref(),
            Joined::unpack(self.joined.load(Ordering::Relaxed)),
        ) else {
            return Ok(None);
        };
        let record = match store.get(&self.guard_key(joined.slot, guard))? {
            Some((bytes, _)) => Record::decode(&bytes).filter(|r| r.load == joined.load),
            None => None,
        };
        let Some(record) = record.filter(|r| !r.is_open()) else {
            return Ok(None);
        };
        let since_s = now_ms.saturating_sub(record.fresh_since_ms) / 1000;
        let range_s = spec.window_s.min(since_s);
        if range_s < MIN_FLEET_RANGE_S {
            return Ok(None);
        }
        let key = self.fleet_key(joined.slot, guard);
        let (due_ms, cas) = match store.get(&key)? {
            None => (0, CREATE_ONLY),
            Some((bytes, cas)) => match decode_load(&bytes) {
                Some((load, due_ms)) if load == joined.load => (due_ms, cas),
                _ => (0, cas),
            },
        };
        if now_ms < due_ms {
            return Ok(None);
        }
        // The next round is due one interval after this one was due (not after this tick: ticks
        // come a few ms early or late, and a schedule that slid with them would skip rounds),
        // unless this proxy fell a whole interval behind.
        let next_due = match due_ms.saturating_add(fleet.interval_ms) {
            on_schedule if due_ms > 0 && on_schedule > now_ms => on_schedule,
            _ => now_ms.saturating_add(fleet.interval_ms),
        };
        let next = encode_load(joined.load, next_due);
        if store.set(&key, &next, cas)? != CasOutcome::Stored {
            return Ok(None);
        }
        Ok(Some(FleetRound {
            guard,
            range_s,
            window_start_ms: now_ms.saturating_sub(range_s.saturating_mul(1000)),
        }))
    }

    /// Whether this worker may log guard `guard`'s failed fleet round now: at most once per
    /// `every_ms` per proxy (a claim on a shared key, as rounds are claimed), the first at once.
    pub fn fleet_warning_due(
        &self,
        guard: usize,
        store: &impl SharedStore,
        now_ms: u64,
        every_ms: u64,
    ) -> Result<bool, HostError> {
        let Some(joined) = Joined::unpack(self.joined.load(Ordering::Relaxed)) else {
            return Ok(true);
        };
        let key = format!("{}{}.fleet_warned.{guard}", self.prefix, joined.slot);
        let (last_ms, cas) = match store.get(&key)? {
            None => (None, CREATE_ONLY),
            Some((bytes, cas)) => match decode_load(&bytes) {
                Some((load, last)) if load == joined.load => (Some(last), cas),
                _ => (None, cas),
            },
        };
        if last_ms.is_some_and(|last| now_ms < last.saturating_add(every_ms)) {
            return Ok(false);
        }
        Ok(store.set(&key, &encode_load(joined.load, now_ms), cas)? == CasOutcome::Stored)
    }

    /// The fleet's totals from an answered round, for the next tick to evaluate.
    pub fn fleet_answered(&self, round: &FleetRound, counts: Counts) {
        if let Some(slot) = self.fleet.get(round.guard) {
            *locked(slot) = Some((counts, round.window_start_ms));
        }
    }
}

/// The slot table: one entry per live configuration, and the next load number.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct SlotTable {
    next_load: u64,
    entries: Vec<Option<SlotEntry>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlotEntry {
    hash: u64,
    load: u64,
    seen_s: u64,
}

impl SlotTable {
    fn find(&self, hash: u64) -> Option<(usize, SlotEntry)> {
        self.entries
            .iter()
            .enumerate()
            .find_map(|(i, e)| e.filter(|e| e.hash == hash).map(|e| (i, e)))
    }

    fn touch(&mut self, slot: usize, now_s: u64) {
        if let Some(Some(e)) = self.entries.get_mut(slot) {
            e.seen_s = e.seen_s.max(now_s);
        }
    }

    /// Starts a new load in `slot` (same text, applied anew).
    fn restart(&mut self, slot: usize, now_s: u64) -> Joined {
        let load = self.next_load.max(1);
        self.next_load = load.saturating_add(1);
        if let Some(Some(e)) = self.entries.get_mut(slot) {
            e.load = load;
            e.seen_s = now_s;
        }
        Joined { slot, load }
    }

    /// Gives `hash` a slot: a free one, else one not seen for [`STALE_S`], else the one seen
    /// longest ago (more than [`SLOTS`] live configurations share slots in turn).
    fn take(&mut self, hash: u64, now_s: u64) -> Joined {
        // Slots of configurations that have gone are freed first.
        for e in &mut self.entries {
            if e.is_some_and(|e| e.seen_s.saturating_add(STALE_S) <= now_s) {
                *e = None;
            }
        }
        let free = self.entries.iter().position(Option::is_none);
        let slot = match free {
            Some(i) => i,
            None if self.entries.len() < SLOTS => {
                self.entries.push(None);
                self.entries.len() - 1
            }
            None => self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.map_or(0, |e| e.seen_s))
                .map_or(0, |(i, _)| i),
        };
        let load = self.next_load.max(1);
        self.next_load = load.saturating_add(1);
        if let Some(e) = self.entries.get_mut(slot) {
            *e = Some(SlotEntry {
                hash,
                load,
                seen_s: now_s,
            });
        }
        Joined { slot, load }
    }

    /// Little-endian: next load, entry count, entries (hash, load, seen; all-zero: free).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.entries.len() * 24);
        out.extend_from_slice(&self.next_load.to_le_bytes());
        out.push(self.entries.len().min(SLOTS) as u8);
        for e in self.entries.iter().take(SLOTS) {
            let e = e.unwrap_or(SlotEntry {
                hash: 0,
                load: 0,
                seen_s: 0,
            });
            for v in [e.hash, e.load, e.seen_s] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (next_load, rest) = bytes.split_first_chunk::<8>()?;
        let (&n, mut rest) = rest.split_first()?;
        let n = usize::from(n);
        if n > SLOTS || rest.len() != n * 24 {
            return None;
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let (h, r) = rest.split_first_chunk::<8>()?;
            let (l, r) = r.split_first_chunk::<8>()?;
            let (s, r) = r.split_first_chunk::<8>()?;
            rest = r;
            let load = u64::from_le_bytes(*l);
            entries.push((load != 0).then_some(SlotEntry {
                hash: u64::from_le_bytes(*h),
                load,
                seen_s: u64::from_le_bytes(*s),
            }));
        }
        Some(Self {
            next_load: u64::from_le_bytes(*next_load),
            entries,
        })
    }
}

enum Synced {
    /// The record now holds the counts (or there was nothing to write).
    Written {
        open: bool,
        transition: Option<Transition>,
        /// The part of the delta that went into the window (none while open).
        observed: Counts,
    },
    /// Every attempt lost its swap: the counts wait for the next tick.
    Contended {
        open: Option<bool>,
    },
    Superseded,
}

/// Merges `delta` into one guard's record and evaluates it — on its window, then on the fleet's
/// totals — in one swap.
fn sync(
    spec: &GuardSpec,
    key: &str,
    store: &impl SharedStore,
    load: u64,
    delta: &Counts,
    fleet: Option<(Counts, u64)>,
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
            _ => Record::new(load, now_ms),
        };
        let fresh = current.as_ref().is_none_or(|r| r.load != load);
        // What is stored now, should every attempt fail.
        last_open = current
            .as_ref()
            .filter(|r| r.load == load)
            .map(Record::is_open);
        let observed = if next.is_open() {
            Counts::default()
        } else {
            *delta
        };
        next.merge(delta, now_s);
        let transition = next.evaluate(spec, now_ms).or_else(|| {
            // Fleet totals about a window that began before the last close (or before this
            // configuration's start) are stale: they may hold the errors that opened it.
            let (counts, since_ms) = fleet?;
            let span_s = now_ms.saturating_sub(since_ms) / 1000;
            (since_ms >= next.fresh_since_ms)
                .then(|| next.evaluate_fleet(spec, &counts, span_s, now_ms))
                .flatten()
        });
        if !fresh && delta.is_zero() && transition.is_none() {
            // Nothing to write (pruning old seconds alone can wait for a write that matters).
            return Ok(Synced::Written {
                open: next.is_open(),
                transition: None,
                observed,
            });
        }
        if store.set(key, &next.encode(), cas)? == CasOutcome::Stored {
            return Ok(Synced::Written {
                open: next.is_open(),
                transition,
                observed,
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
