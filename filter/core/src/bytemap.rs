//! A read-only map from byte strings to small integers, built once at configure time and read on
//! the request path: the set of a `oneOf` condition, and the value → rule index of a run of
//! exact-match rules (see [`crate::router`]'s index).
//!
//! Written here rather than taken from `std::collections::HashMap<Box<[u8]>, u32>`:
//!
//! * size: the keys live back to back in one buffer, with no allocation and no pointer per key,
//!   and a set stores no values. A 100,000-value `oneOf` of 10-byte ids is 3 allocations and
//!   2.4 MB; as a `HashSet<Box<[u8]>>` it is 100,001 allocations and 3.2 MB requested (more once
//!   the allocator rounds each 10-byte box up) — and a Wasm build holds one copy per VM (one per
//!   worker plus the main thread's);
//! * case-insensitive keys (hosts) are looked up as they arrive: the hash and the comparison fold
//!   ASCII case themselves, so the request path never lower-cases into a buffer.
//!
//! The hash is unkeyed: the table never changes after it is built, so a client can only look
//! keys up, and no lookup costs more than the longest run of occupied slots, which the operator's
//! keys fix (at most half the slots are ever occupied). No lookup allocates.

/// See the module documentation.
#[derive(Clone)]
pub struct ByteMap {
    /// Every key, back to back, in insertion order (lower case when `caseless`).
    arena: Box<[u8]>,
    /// Where key `i` ends in `arena`; it starts where key `i - 1` ends.
    ends: Box<[u32]>,
    /// The value of key `i`; empty for a set (every value 0).
    values: Box<[u32]>,
    /// Open addressing with linear probing: 0 is empty, `i + 1` is key `i`. A power of two in
    /// length, never more than half full, so every probe sequence reaches an empty slot.
    slots: Box<[u32]>,
    caseless: bool,
}

/// A map whose keys add up to 4 GiB or more (a configuration no proxy accepts: Envoy's
/// configuration messages are limited to 2 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl ByteMap {
    /// Builds the map of `pairs`; a key given twice keeps its first value (first match wins).
    /// `caseless`: keys compare ignoring ASCII case.
    /// (The pairs are walked twice, sizes first, rather than collected: 100,000 of them would
    /// need a 2.4 MB buffer for nothing.)
    pub fn build<'k, I>(pairs: I, caseless: bool) -> Result<Self, TooLarge>
    where
        I: IntoIterator<Item = (&'k [u8], u32)>,
        I::IntoIter: Clone,
    {
        let pairs = pairs.into_iter();
        let (count, bytes) = pairs.clone().fold((0usize, 0usize), |(n, b), (k, _)| {
            (n + 1, b.saturating_add(k.len()))
        });
        let slot_count = count
            .checked_mul(2)
            .and_then(usize::checked_next_power_of_two)
            .ok_or(TooLarge)?
            .max(2);
        let mask = slot_count - 1;
        let mut slots = vec![0u32; slot_count];
        let mut arena = Vec::with_capacity(bytes);
        let mut ends = Vec::with_capacity(count);
        // Filled from the first value that is not 0: a set stores none.
        let mut values = Vec::new();
        for (key, value) in pairs {
            let mut i = hash(key, caseless) as usize & mask;
            // Stops: at most half the slots are taken.
            let fresh = loop {
                let k = match slots.get(i) {
                    Some(&slot) => slot.checked_sub(1),
                    None => return Err(TooLarge),
                };
                let Some(k) = k else { break true };
                if key_at(&arena, &ends, k as usize).is_some_and(|s| same(s, key, caseless)) {
                    break false; // given before: its first value stays
                }
                i = (i + 1) & mask;
            };
            if !fresh {
                continue;
            }
            let number = u32::try_from(ends.len() + 1).map_err(|_| TooLarge)?;
            if caseless {
                arena.extend(key.iter().map(u8::to_ascii_lowercase));
            } else {
                arena.extend_from_slice(key);
            }
            ends.push(u32::try_from(arena.len()).map_err(|_| TooLarge)?);
            if value != 0 || !values.is_empty() {
                values.resize(ends.len() - 1, 0);
                values.push(value);
            }
            if let Some(slot) = slots.get_mut(i) {
                *slot = number;
            }
        }
        Ok(Self {
            arena: arena.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
            values: values.into_boxed_slice(),
            slots: slots.into_boxed_slice(),
            caseless,
        })
    }

    /// A set: every key maps to 0.
    pub fn set<'k, I>(keys: I) -> Result<Self, TooLarge>
    where
        I: IntoIterator<Item = &'k [u8]>,
        I::IntoIter: Clone,
    {
        Self::build(keys.into_iter().map(|k| (k, 0)), false)
    }

    /// The value of `key`, if it is in the map.
    pub fn get(&self, key: &[u8]) -> Option<u32> {
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = hash(key, self.caseless) as usize & mask;
        // Ends: at least half the slots are empty.
        loop {
            let k = self.slots.get(i)?.checked_sub(1)? as usize;
            if same(self.key(k)?, key, self.caseless) {
                return Some(self.value(k));
            }
            i = (i + 1) & mask;
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Distinct keys.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Keys in insertion order (lower case for a caseless map), each with its value.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u32)> + Clone {
        (0..self.len()).filter_map(|k| Some((self.key(k)?, self.value(k))))
    }

    /// Bytes this map holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.arena.len()
            + std::mem::size_of_val(&*self.ends)
            + std::mem::size_of_val(&*self.values)
            + std::mem::size_of_val(&*self.slots)
    }

    fn key(&self, k: usize) -> Option<&[u8]> {
        key_at(&self.arena, &self.ends, k)
    }

    fn value(&self, k: usize) -> u32 {
        self.values.get(k).copied().unwrap_or(0)
    }

    /// The longest probe sequence of any key in the map (for tests of the hash's spread).
    #[cfg(test)]
    fn longest_probe(&self) -> usize {
        let mask = self.slots.len() - 1;
        self.iter()
            .map(|(key, _)| {
                let mut i = hash(key, self.caseless) as usize & mask;
                let mut probes = 1;
                while self.key(self.slots[i] as usize - 1) != Some(key) {
                    i = (i + 1) & mask;
                    probes += 1;
                }
                probes
            })
            .max()
            .unwrap_or(0)
    }
}

impl std::fmt::Debug for ByteMap {
    /// The size, not 100,000 keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteMap")
            .field("keys", &self.len())
            .field("caseless", &self.caseless)
            .finish()
    }
}

/// Key `k` of an arena whose keys end at `ends`.
fn key_at<'a>(arena: &'a [u8], ends: &[u32], k: usize) -> Option<&'a [u8]> {
    let start = match k.checked_sub(1) {
        Some(previous) => *ends.get(previous)? as usize,
        None => 0,
    };
    arena.get(start..*ends.get(k)? as usize)
}

/// A stored key (lower case when `caseless`) against a looked-up one.
fn same(stored: &[u8], key: &[u8], caseless: bool) -> bool {
    if caseless {
        stored.eq_ignore_ascii_case(key)
    } else {
        stored == key
    }
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// 8 bytes at a time, multiply and rotate, then a final avalanche (MurmurHash3's fmix64) so that
/// the low bits, which pick the slot, depend on every byte: ids such as `user-1` … `user-99999`
/// differ in a few bytes only.
fn hash(key: &[u8], caseless: bool) -> u64 {
    let mut h = (key.len() as u64).wrapping_mul(K);
    for chunk in key.chunks(8) {
        let mut word = [0u8; 8];
        for (w, &b) in word.iter_mut().zip(chunk) {
            *w = if caseless { b.to_ascii_lowercase() } else { b };
        }
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(31);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn keys_values_and_first_value_wins() {
        let m = ByteMap::build(
            [(&b"alice"[..], 1), (b"bob", 2), (b"", 3), (b"alice", 4)],
            false,
        )
        .unwrap();
        assert_eq!(
            m.get(b"alice"),
            Some(1),
            "the first value of a repeated key"
        );
        assert_eq!(m.get(b"bob"), Some(2));
        assert_eq!(m.get(b""), Some(3));
        assert_eq!(m.get(b"Bob"), None);
        assert_eq!(m.get(b"bo"), None);
        assert_eq!(m.get(b"bobb"), None);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [(&b"alice"[..], 1), (b"bob", 2), (b"", 3)]
        );
        let empty = ByteMap::set([]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.get(b""), None);
    }

    #[test]
    fn a_caseless_map_folds_ascii_case_only() {
        let m = ByteMap::build([(&b"Shop.Example.COM"[..], 7), (b"\xc3\x9c.de", 8)], true).unwrap();
        assert_eq!(m.get(b"shop.example.com"), Some(7));
        assert_eq!(m.get(b"SHOP.EXAMPLE.COM"), Some(7));
        assert_eq!(m.get(b"\xc3\x9c.DE"), Some(8));
        assert_eq!(
            m.get(b"\xc3\xbc.de"),
            None,
            "non-ASCII bytes are compared as they are"
        );
        let again = ByteMap::build([(&b"a"[..], 1), (b"A", 2)], true).unwrap();
        assert_eq!((again.len(), again.get(b"A")), (1, Some(1)));
    }

    #[test]
    fn sequential_ids_spread_over_the_table() {
        let ids: Vec<String> = (0..100_000).map(|i| format!("user-{i}")).collect();
        let m = ByteMap::set(ids.iter().map(|s| s.as_bytes())).unwrap();
        assert_eq!(m.len(), 100_000);
        assert!(ids.iter().all(|id| m.contains(id.as_bytes())));
        assert!(!m.contains(b"user-100000"));
        // At a load of 100,000 / 262,144, a uniform hash's longest probe is a few dozen slots.
        let longest = m.longest_probe();
        assert!(longest <= 64, "longest probe {longest}");
    }

    /// What the module documentation says about size, measured (bytes requested; the allocator's
    /// rounding of 100,000 small boxes comes on top for the `HashSet`).
    #[test]
    fn a_set_of_100000_ids_is_a_few_allocations_and_smaller_than_a_hash_set() {
        let ids: Vec<String> = (0..100_000).map(|i| format!("user-{i:05}")).collect();
        let mut kept = None;
        let ours = allocation_counter::measure(|| {
            kept = Some(ByteMap::set(ids.iter().map(|s| s.as_bytes())).unwrap());
        });
        let mut kept_std = None;
        let std = allocation_counter::measure(|| {
            let set: std::collections::HashSet<Box<[u8]>> =
                ids.iter().map(|s| s.as_bytes().into()).collect();
            kept_std = Some(set);
        });
        assert!(ours.count_current <= 3, "{ours:?}");
        assert!(
            ours.bytes_max as i64 <= ours.bytes_current + 1_000,
            "no scratch copy: {ours:?}"
        );
        let bytes = u64::try_from(ours.bytes_current).unwrap();
        assert_eq!(bytes, kept.as_ref().unwrap().heap_bytes() as u64);
        assert!(bytes < 2_500_000, "{bytes} bytes");
        assert!(std.count_current > 100_000, "{std:?}");
        assert!(std.bytes_current > 3_000_000, "{std:?}");
    }

    proptest! {
        /// Agrees with a HashMap (first value wins) on every key in the map and on others.
        #[test]
        fn agrees_with_a_hash_map(
            pairs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..12), any::<u32>()), 0..200),
            probes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..50),
            caseless in any::<bool>(),
        ) {
            let fold = |k: &[u8]| if caseless { k.to_ascii_lowercase() } else { k.to_vec() };
            let mut want: HashMap<Vec<u8>, u32> = HashMap::new();
            for (k, v) in &pairs {
                want.entry(fold(k)).or_insert(*v);
            }
            let m = ByteMap::build(pairs.iter().map(|(k, v)| (k.as_slice(), *v)), caseless).unwrap();
            prop_assert_eq!(m.len(), want.len());
            for k in pairs.iter().map(|(k, _)| k).chain(&probes) {
                prop_assert_eq!(m.get(k), want.get(&fold(k)).copied());
            }
        }
    }
}
