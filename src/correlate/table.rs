//! The trace table: every open (and recently finished) trace by trace ID.
//!
//! One thread writes (the correlating thread: the ingest thread in the
//! default mode, the observation consumer in scale-out mode); the HTTP API
//! reads. The table is split into shards, each a `std::sync::Mutex` around
//! an index (trace key → slot) and a dense slab of [`Trace`]s. The writer
//! locks one shard per record for one hash lookup; a reader locks one shard
//! at a time, so a reader never holds up ingest for more than one shard's
//! scan. No lock is ever held across an `.await`, which is why a std mutex
//! is right here.
//!
//! Why a sharded std mutex and not dashmap: measured on this machine with a
//! single writer updating 100 000 traces in place (20 M updates, best of 9
//! rounds), a 16-shard `Mutex<HashMap>` took 43.5 ns per update and dashmap
//! 6 (16 shards) 46.6 ns: the same within noise. The std version needs no
//! new dependency and lets each shard keep its traces in a dense slab next
//! to a small index (24 bytes per slot), which is what keeps an open trace
//! at 150-230 bytes (see `pipewarden-trace-memory` and docs/correlation.md).
//!
//! Bounds: at most `correlate.max_traces` traces (split evenly over the
//! shards); a new trace that finds its shard full is not tracked (counted).
//! The periodic sweep forgets traces idle for `correlate.trace_ttl_ms` of
//! event time and, above 90 % of the cap, evicts the least recently active
//! down to 80 %.

use std::sync::{Mutex, MutexGuard};

use super::trace::{Trace, TraceKey};

/// Why a trace left the table (the `cause` label of `pipewarden_trace_evictions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// A finished trace reached its TTL.
    TtlFinished,
    /// A trace still open (or stalled) reached its TTL.
    TtlOpen,
    /// The table was above 90 % of its cap; the least recently active went.
    Capacity,
    /// A new trace found its shard full and was not tracked.
    Rejected,
}

impl Eviction {
    pub const ALL: [Eviction; 4] = [Eviction::TtlFinished, Eviction::TtlOpen, Eviction::Capacity, Eviction::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::TtlFinished => "ttl_finished",
            Eviction::TtlOpen => "ttl_open",
            Eviction::Capacity => "capacity",
            Eviction::Rejected => "rejected",
        }
    }
}

/// One lock's worth of traces.
#[derive(Debug, Default)]
pub struct Shard {
    index: std::collections::HashMap<TraceKey, u32, ahash::RandomState>,
    slots: Vec<Trace>,
    /// Vacant slots, reused before the slab grows.
    free: Vec<u32>,
    /// The text of the trace in each slot when its ID is not a W3C trace ID
    /// (those are their key), by slot: a map keyed by trace would cost ~70
    /// bytes per trace in buckets alone. Empty until the first such ID, so
    /// W3C-only pipelines pay nothing for it.
    texts: Vec<Option<Box<str>>>,
}

impl Shard {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn get(&self, key: &TraceKey) -> Option<&Trace> {
        self.index.get(key).map(|slot| &self.slots[*slot as usize])
    }

    pub fn get_mut(&mut self, key: &TraceKey) -> Option<&mut Trace> {
        self.index.get(key).map(|slot| &mut self.slots[*slot as usize])
    }

    /// The text of a trace ID that is not a W3C trace ID.
    pub fn text(&self, key: &TraceKey) -> Option<&str> {
        let slot = *self.index.get(key)? as usize;
        self.texts.get(slot)?.as_deref()
    }

    /// Inserts a new trace (with its ID's text unless it is a W3C ID);
    /// `None` when the shard holds `limit` traces.
    pub fn insert(&mut self, key: TraceKey, trace: Trace, text: Option<&str>, limit: usize) -> Option<&mut Trace> {
        if self.index.len() >= limit {
            return None;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = trace;
                slot
            }
            None => {
                self.slots.push(trace);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, slot);
        let at = slot as usize;
        match text {
            Some(text) => {
                if self.texts.len() <= at {
                    self.texts.resize_with(self.slots.len(), || None);
                }
                self.texts[at] = Some(text.into());
            }
            None => {
                if let Some(old) = self.texts.get_mut(at) {
                    *old = None;
                }
            }
        }
        Some(&mut self.slots[at])
    }

    /// Every trace with its key.
    pub fn iter(&self) -> impl Iterator<Item = (&TraceKey, &Trace)> {
        self.index.iter().map(|(key, slot)| (key, &self.slots[*slot as usize]))
    }

    /// Every trace, mutably (key order is arbitrary).
    pub fn for_each_mut(&mut self, mut visit: impl FnMut(&TraceKey, &mut Trace)) {
        let slots = &mut self.slots;
        for (key, slot) in &self.index {
            visit(key, &mut slots[*slot as usize]);
        }
    }

    /// Removes the traces for which `evict` returns true; returns how many went.
    pub fn evict(&mut self, mut evict: impl FnMut(&Trace) -> bool) -> usize {
        let before = self.index.len();
        let (slots, free, texts) = (&mut self.slots, &mut self.free, &mut self.texts);
        self.index.retain(|_, slot| {
            let trace = &mut slots[*slot as usize];
            if evict(trace) {
                if let Some(text) = texts.get_mut(*slot as usize) {
                    *text = None;
                }
                // Drop the timeline now; the slot is reused by a later trace.
                *trace = Trace::default();
                free.push(*slot);
                false
            } else {
                true
            }
        });
        before - self.index.len()
    }

    /// Estimated bytes held: index, slab and every trace's heap blocks.
    pub fn bytes(&self) -> usize {
        let index = self.index.capacity() * (std::mem::size_of::<(TraceKey, u32)>() + 1);
        let slab = self.slots.capacity() * std::mem::size_of::<Trace>() + self.free.capacity() * 4;
        let texts = self.texts.capacity() * std::mem::size_of::<Option<Box<str>>>()
            + self.texts.iter().flatten().map(|t| t.len()).sum::<usize>();
        index + slab + texts + self.iter().map(|(_, t)| t.heap_bytes()).sum::<usize>()
    }
}

pub struct TraceTable {
    shards: Box<[Mutex<Shard>]>,
    /// Traces per shard at most.
    shard_limit: usize,
}

impl TraceTable {
    pub fn new(shards: usize, max_traces: usize) -> Self {
        let shards = shards.max(1);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            shard_limit: max_traces.div_ceil(shards).max(1),
        }
    }

    pub fn shard_limit(&self) -> usize {
        self.shard_limit
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that holds `key` (W3C IDs are random; hashed keys are too).
    pub fn shard_for(&self, key: &TraceKey) -> MutexGuard<'_, Shard> {
        let mixed = (key[0] ^ key[1].rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let index = ((mixed >> 32) as usize) % self.shards.len();
        self.lock(index)
    }

    pub fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A panic while a shard is locked leaves plain data behind; keep serving it.
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Traces held now (locks each shard in turn).
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_shards_are_bounded() {
        let mut shard = Shard::default();
        for n in 0..3u64 {
            assert!(shard.insert([n, n], Trace::new(n as i64), Some(&format!("id-{n}")), 3).is_some());
        }
        assert!(shard.insert([9, 9], Trace::new(9), None, 3).is_none(), "full");
        assert_eq!(shard.text(&[1, 1]), Some("id-1"));
        assert_eq!(shard.evict(|t| t.base_ms == 1), 1);
        assert!(shard.get(&[1, 1]).is_none());
        assert_eq!(shard.text(&[1, 1]), None, "the text goes with its trace");
        assert!(shard.insert([4, 4], Trace::new(4), None, 3).is_some());
        assert_eq!(shard.text(&[4, 4]), None);
        assert_eq!(shard.text(&[2, 2]), Some("id-2"));
        assert_eq!(shard.slots.len(), 3, "the vacant slot was reused");
        assert_eq!(shard.get(&[4, 4]).unwrap().base_ms, 4);
        assert_eq!(shard.get(&[2, 2]).unwrap().base_ms, 2);
        assert_eq!(shard.len(), 3);
    }

    #[test]
    fn the_cap_is_split_over_shards() {
        let table = TraceTable::new(4, 10);
        assert_eq!(table.shard_limit(), 3);
        let mut inserted = 0;
        for n in 0..100u64 {
            let key = [n.wrapping_mul(0x2545_f491_4f6c_dd1d), n];
            let mut shard = table.shard_for(&key);
            let limit = table.shard_limit();
            inserted += usize::from(shard.insert(key, Trace::new(0), None, limit).is_some());
        }
        assert_eq!(inserted, 12);
        assert_eq!(table.len(), 12);
    }
}
