//! A [`Record`] as the bytes of its shared-data value: a fixed little-endian layout with a
//! version byte, read back without ever panicking (anything else reads as absent).

use super::{Bucket, Counts, GuardState, Record, COUNT_FIELDS};

/// Layout version: a record in any other layout is read as absent (and replaced).
const VERSION: u8 = 2;
const BUCKET_SIZE: usize = 8 + COUNT_FIELDS * 4;

impl Record {
    /// Little-endian: version, load, state (0 closed, 1 open, 2 latched), open-until, trips,
    /// fresh-since, totals (6 × u64), bucket count, buckets (second u64, 6 × u32 counts,
    /// saturated).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(1 + 8 + 1 + 8 + 4 + 8 + 48 + 4 + self.window.len() * BUCKET_SIZE);
        out.push(VERSION);
        out.extend_from_slice(&self.load.to_le_bytes());
        let (state, until) = match self.state {
            GuardState::Closed => (0u8, 0u64),
            GuardState::Open { until_ms } => (1, until_ms),
            GuardState::Latched => (2, 0),
        };
        out.push(state);
        out.extend_from_slice(&until.to_le_bytes());
        out.extend_from_slice(&self.trips.to_le_bytes());
        out.extend_from_slice(&self.fresh_since_ms.to_le_bytes());
        for v in self.totals.fields() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let n = u32::try_from(self.window.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        for b in self.window.iter().take(n as usize) {
            out.extend_from_slice(&b.second.to_le_bytes());
            for v in b.counts.fields() {
                out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
            }
        }
        out
    }

    /// `None` for anything that is not a complete record of this layout.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let load = r.u64()?;
        let state = match (r.u8()?, r.u64()?) {
            (0, _) => GuardState::Closed,
            (1, until_ms) => GuardState::Open { until_ms },
            (2, _) => GuardState::Latched,
            _ => return None,
        };
        let trips = r.u32()?;
        let fresh_since_ms = r.u64()?;
        let mut totals = [0u64; COUNT_FIELDS];
        for v in &mut totals {
            *v = r.u64()?;
        }
        let totals = Counts::from_fields(totals);
        let n = r.u32()? as usize;
        if r.0.len() != n.checked_mul(BUCKET_SIZE)? {
            return None;
        }
        let mut window = Vec::with_capacity(n);
        for _ in 0..n {
            let second = r.u64()?;
            let mut c = [0u64; COUNT_FIELDS];
            for v in &mut c {
                *v = u64::from(r.u32()?);
            }
            window.push(Bucket {
                second,
                counts: Counts::from_fields(c),
            });
        }
        Some(Self {
            load,
            state,
            trips,
            window,
            totals,
            fresh_since_ms,
        })
    }
}

/// A cursor over a byte slice that never panics.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}
