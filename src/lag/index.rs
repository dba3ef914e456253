//! Offset → timestamp index per partition, and the interpolation fallback.
//!
//! pipewarden reads every record of its watched topics, so the ingest thread
//! feeds each record's (offset, Kafka record timestamp) here; the lag thread
//! asks "when was the record at offset `c` written?" to turn a group's
//! committed offset into an exact lag in seconds.
//!
//! # Which timestamp
//!
//! The Kafka record timestamp (CreateTime set by the producer, or
//! LogAppendTime set by the broker), not the envelope's `created_at`: it is
//! what every Kafka tool calls the time of a record, every record has one
//! (no payload parsing needed), and it is what the broker's own time index
//! holds. Records without a timestamp (pre-0.10 message format) are not
//! indexed.
//!
//! # Layout and memory bound
//!
//! A partition's index is a list of *points* `(offset, timestamp)`: a new
//! point starts whenever a record's timestamp differs from the previous
//! record's, so every record between two adjacent points carries the
//! timestamp of the earlier one. While no point has been dropped this is
//! exact for every offset, at one point per distinct millisecond at most
//! (a partition receiving 100k records/s adds at most 1,000 points/s).
//!
//! Offsets skipped between two records read by this process (the partition
//! was owned by another replica for a while) are marked by a gap point, and
//! lookups there are not covered.
//!
//! The list holds at most `capacity` points (`lag.index_points_per_partition`,
//! 16 bytes each). When it is full, every other point of its *older half* is
//! dropped (the oldest point is always kept): recent offsets stay exact,
//! older ones get coarser, geometrically with age, and the index still spans
//! everything pipewarden has read on the partition. A lookup in a coarsened
//! region answers the timestamp of the nearest point at or before the offset
//! (so the lag is never under-stated) and an error bound: the gap to the next
//! point, which, when timestamps do not decrease within a partition
//! (LogAppendTime, or producers with sane clocks), bounds the true
//! timestamp: `ts ≤ true ≤ ts + error_bound_ms`.
//!
//! # Concurrency
//!
//! The ingest thread is the only writer; it reaches each partition through
//! its own cache ([`IndexWriter`]) without touching the shared map, and it
//! takes the partition's mutex only when a record starts a new point. The
//! highest indexed offset is an atomic, so records that extend the current
//! run cost one relaxed load of local state and one atomic store. The lag
//! thread (reader) locks a partition for one binary search per lookup, so
//! the lock is never held long on either side.
//!
//! For offsets the index does not cover, [`super::interpolate`] estimates.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

type HashMap<K, V> = ahash::AHashMap<K, V>;

/// Offsets of recently quarantined records remembered per partition. A
/// consumer stuck on a poison record is usually stuck on one of the last few
/// poison records of its partition; 128 offsets cost 1 KiB per partition.
const QUARANTINED_PER_PARTITION: usize = 128;

/// Timestamp of a *gap point*: the offsets from it to the next point were
/// not read by this process (the partition was owned by another replica for
/// a while, or fetched past by a seek), so lookups there are not covered.
const GAP: i64 = i64::MIN;

/// What the index knows about the timestamp of one offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The offset is in the index: its record's timestamp is `timestamp_ms`
    /// exactly when `error_bound_ms` is 0, otherwise the true timestamp lies
    /// in `[timestamp_ms, timestamp_ms + error_bound_ms]` (see the module doc).
    Found { timestamp_ms: i64, error_bound_ms: i64 },
    /// pipewarden has not read that offset (not watched, not read yet, or
    /// read before this process started).
    NotCovered,
}

#[derive(Debug, Default)]
struct Points {
    /// `(offset, timestamp_ms)`, offsets strictly increasing.
    list: Vec<(i64, i64)>,
    /// Points at or after this offset have never had a neighbour dropped,
    /// so lookups from here on are exact.
    exact_from: i64,
    /// Ring of recently quarantined offsets.
    quarantined: VecDeque<i64>,
}

/// The index of one partition.
#[derive(Debug)]
pub struct PartitionIndex {
    points: Mutex<Points>,
    /// Highest offset indexed; -1 before the first record.
    last_offset: AtomicI64,
    capacity: usize,
}

impl PartitionIndex {
    fn new(capacity: usize) -> Self {
        Self { points: Mutex::new(Points::default()), last_offset: AtomicI64::new(-1), capacity: capacity.max(4) }
    }

    /// Adds a point; called by the writer only when the timestamp changes.
    fn push_point(&self, offset: i64, timestamp_ms: i64) {
        let mut points = self.points.lock().expect("time index lock poisoned");
        if points.list.len() >= self.capacity {
            thin_older_half(&mut points);
        }
        points.list.push((offset, timestamp_ms));
    }

    /// Timestamp of the record at `offset`.
    pub fn lookup(&self, offset: i64) -> Lookup {
        // Acquire pairs with the writer's release store: every point pushed
        // before `last_offset` was raised is visible under the lock below.
        let last = self.last_offset.load(Ordering::Acquire);
        if offset > last {
            return Lookup::NotCovered;
        }
        let points = self.points.lock().expect("time index lock poisoned");
        let at_or_before = points.list.partition_point(|(o, _)| *o <= offset);
        if at_or_before == 0 {
            return Lookup::NotCovered;
        }
        let (point_offset, timestamp_ms) = points.list[at_or_before - 1];
        if timestamp_ms == GAP {
            return Lookup::NotCovered;
        }
        let error_bound_ms = if point_offset >= points.exact_from {
            0
        } else {
            // The next point with a timestamp (a gap point has none; the
            // records of a gap lie between its neighbours all the same).
            points.list[at_or_before..]
                .iter()
                .find(|(_, ts)| *ts != GAP)
                .map_or(0, |(_, next_ts)| (next_ts - timestamp_ms).max(0))
        };
        Lookup::Found { timestamp_ms, error_bound_ms }
    }

    /// Highest offset indexed, -1 before the first record.
    pub fn last_offset(&self) -> i64 {
        self.last_offset.load(Ordering::Acquire)
    }

    pub fn point_count(&self) -> usize {
        self.points.lock().expect("time index lock poisoned").list.len()
    }

    /// Whether pipewarden quarantined the record at `offset` recently.
    pub fn was_quarantined(&self, offset: i64) -> bool {
        self.points.lock().expect("time index lock poisoned").quarantined.contains(&offset)
    }

    fn add_quarantined(&self, offset: i64) {
        let mut points = self.points.lock().expect("time index lock poisoned");
        if points.quarantined.len() >= QUARANTINED_PER_PARTITION {
            points.quarantined.pop_front();
        }
        points.quarantined.push_back(offset);
    }
}

/// Drops every other point of the older half, keeping the oldest point, and
/// moves the exact boundary to the first point of the untouched newer half.
/// A point right after a gap point is kept (dropping it would put its
/// records under the gap), unless that would leave nothing to drop.
fn thin_older_half(points: &mut Points) {
    let half = points.list.len() / 2;
    let list = &points.list;
    let mut keep: Vec<bool> = (0..list.len()).map(|i| i >= half || i % 2 == 0 || list[i - 1].1 == GAP).collect();
    if keep.iter().all(|k| *k) {
        keep = (0..list.len()).map(|i| i >= half || i % 2 == 0).collect();
    }
    let mut index = 0;
    points.list.retain(|_| {
        let kept = keep[index];
        index += 1;
        kept
    });
    // A lookup at the last kept older point may have lost its right
    // neighbour, so exactness starts at the first point of the newer half.
    let kept_older = keep[..half].iter().filter(|k| **k).count();
    points.exact_from = points.list.get(kept_older).map_or(i64::MAX, |(offset, _)| *offset);
}

type PartitionMap = HashMap<(Arc<str>, i32), Arc<PartitionIndex>>;

/// Every partition's index, shared by the ingest thread (writer) and the
/// lag thread (reader). Entries are created on a partition's first record
/// and kept for the life of the process: their number is bounded by the
/// partitions of the watched topics.
#[derive(Debug)]
pub struct TimeIndex {
    partitions: RwLock<PartitionMap>,
    capacity: usize,
}

impl TimeIndex {
    /// `capacity`: points per partition (`lag.index_points_per_partition`).
    pub fn new(capacity: usize) -> Self {
        Self { partitions: RwLock::new(HashMap::default()), capacity }
    }

    /// The index of one partition, if pipewarden has read any of its records.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<PartitionIndex>> {
        let map = self.partitions.read().expect("time index map lock poisoned");
        map.get(&(Arc::<str>::from(topic), partition)).cloned()
    }

    /// [`TimeIndex::partition`] for a caller that holds the shared topic
    /// name already: no allocation per lookup (the lag thread does one per
    /// committed partition and poll).
    pub fn partition_of(&self, topic_partition: &(Arc<str>, i32)) -> Option<Arc<PartitionIndex>> {
        self.partitions.read().expect("time index map lock poisoned").get(topic_partition).cloned()
    }

    /// Partitions indexed and points held, for the index metrics.
    pub fn stats(&self) -> (usize, usize) {
        let map = self.partitions.read().expect("time index map lock poisoned");
        (map.len(), map.values().map(|p| p.point_count()).sum())
    }

    fn get_or_create(&self, topic: &str, partition: i32) -> Arc<PartitionIndex> {
        let mut map = self.partitions.write().expect("time index map lock poisoned");
        map.entry((Arc::from(topic), partition)).or_insert_with(|| Arc::new(PartitionIndex::new(self.capacity))).clone()
    }
}

/// One partition as the writer caches it.
struct WriterSlot {
    index: Arc<PartitionIndex>,
    /// Timestamp of the current run (the last point), so records that extend
    /// it never take the lock.
    run_timestamp_ms: i64,
    last_offset: i64,
}

/// The ingest thread's handle on the index: one cheap call per record.
pub struct IndexWriter {
    index: Arc<TimeIndex>,
    /// Per topic, slots indexed by partition number.
    topics: HashMap<Box<str>, Vec<Option<WriterSlot>>>,
}

impl IndexWriter {
    pub fn new(index: Arc<TimeIndex>) -> Self {
        Self { index, topics: HashMap::default() }
    }

    /// Records one consumed record. Re-reads (offsets at or below the highest
    /// indexed one, after a seek back) are ignored: their timestamps are known.
    /// No allocation and no lock unless the record starts a new point (or is
    /// the partition's first).
    #[inline]
    pub fn record(&mut self, topic: &str, partition: i32, offset: i64, timestamp_ms: Option<i64>) {
        let Some(timestamp_ms) = timestamp_ms else { return };
        let cached =
            self.topics.get_mut(topic).and_then(|slots| slots.get_mut(partition as usize)).and_then(Option::as_mut);
        let slot = match cached {
            Some(slot) => slot,
            None => self.create_slot(topic, partition),
        };
        if offset <= slot.last_offset {
            return;
        }
        // Offsets skipped since the last record: one is a transaction marker
        // (it belongs to no run, the next record starts one); more are
        // records this process did not read (another replica owned the
        // partition meanwhile), marked as a gap so no lookup claims them.
        let skipped = slot.last_offset >= 0 && offset > slot.last_offset + 1;
        if skipped && offset > slot.last_offset + 2 {
            slot.index.push_point(slot.last_offset + 1, GAP);
        }
        if timestamp_ms != slot.run_timestamp_ms || slot.last_offset < 0 || skipped {
            slot.index.push_point(offset, timestamp_ms);
            slot.run_timestamp_ms = timestamp_ms;
        }
        slot.last_offset = offset;
        slot.index.last_offset.store(offset, Ordering::Release);
    }

    /// Remembers that the record at `offset` was copied to quarantine.
    pub fn quarantined(&mut self, topic: &str, partition: i32, offset: i64) {
        let cached =
            self.topics.get_mut(topic).and_then(|slots| slots.get_mut(partition as usize)).and_then(Option::as_mut);
        let slot = match cached {
            Some(slot) => slot,
            None => self.create_slot(topic, partition),
        };
        slot.index.add_quarantined(offset);
    }

    /// The slow path of a partition's first record: a slot in the cache,
    /// backed by the shared index's entry (created if needed).
    #[cold]
    fn create_slot(&mut self, topic: &str, partition: i32) -> &mut WriterSlot {
        let shared = self.index.get_or_create(topic, partition);
        let last_offset = shared.last_offset();
        let slots = self.topics.entry(topic.into()).or_default();
        let position = partition.max(0) as usize;
        if slots.len() <= position {
            slots.resize_with(position + 1, || None);
        }
        slots[position].insert(WriterSlot { index: shared, run_timestamp_ms: i64::MIN, last_offset })
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn found(timestamp_ms: i64) -> Lookup {
        Lookup::Found { timestamp_ms, error_bound_ms: 0 }
    }

    #[test]
    fn every_offset_of_a_run_has_the_runs_timestamp() {
        let index = Arc::new(TimeIndex::new(64));
        let mut writer = IndexWriter::new(index.clone());
        // Offsets 10..=12 at t=1000, 13 at 1005, a gap (a transaction marker) then 15 at 1009.
        for (offset, ts) in [(10, 1000), (11, 1000), (12, 1000), (13, 1005), (15, 1009)] {
            writer.record("t", 0, offset, Some(ts));
        }
        let partition = index.partition("t", 0).unwrap();
        assert_eq!(partition.point_count(), 3);
        assert_eq!(partition.lookup(9), Lookup::NotCovered);
        assert_eq!(partition.lookup(10), found(1000));
        assert_eq!(partition.lookup(12), found(1000));
        assert_eq!(partition.lookup(13), found(1005));
        assert_eq!(partition.lookup(14), found(1005));
        assert_eq!(partition.lookup(15), found(1009));
        assert_eq!(partition.lookup(16), Lookup::NotCovered);
        assert!(index.partition("t", 1).is_none());
    }

    #[test]
    fn offsets_another_replica_read_are_not_covered() {
        let index = Arc::new(TimeIndex::new(64));
        let mut writer = IndexWriter::new(index.clone());
        writer.record("t", 0, 0, Some(100));
        writer.record("t", 0, 1, Some(100));
        // Offsets 2..=9 were read elsewhere; 10 and 11 here, with the same timestamp as before.
        writer.record("t", 0, 10, Some(100));
        writer.record("t", 0, 11, Some(100));
        // A transaction marker at 12, then 13.
        writer.record("t", 0, 13, Some(100));
        let partition = index.partition("t", 0).unwrap();
        assert_eq!(partition.lookup(1), found(100));
        assert_eq!(partition.lookup(2), Lookup::NotCovered);
        assert_eq!(partition.lookup(9), Lookup::NotCovered);
        assert_eq!(partition.lookup(10), found(100));
        assert_eq!(partition.lookup(13), found(100));
    }

    #[test]
    fn re_reads_and_records_without_timestamps_are_ignored() {
        let index = Arc::new(TimeIndex::new(64));
        let mut writer = IndexWriter::new(index.clone());
        writer.record("t", 2, 5, Some(100));
        writer.record("t", 2, 6, Some(200));
        // A seek back re-reads 5 and 6 with (here, deliberately) other timestamps.
        writer.record("t", 2, 5, Some(999));
        writer.record("t", 2, 6, Some(999));
        writer.record("t", 2, 7, None);
        let partition = index.partition("t", 2).unwrap();
        assert_eq!(partition.lookup(5), found(100));
        assert_eq!(partition.lookup(6), found(200));
        assert_eq!(partition.last_offset(), 6);
    }

    #[test]
    fn a_full_index_thins_its_older_half_and_reports_the_error_bound() {
        let index = Arc::new(TimeIndex::new(8));
        let mut writer = IndexWriter::new(index.clone());
        // One record per millisecond: offsets 0..=8 at 1000 + 10 * offset.
        for offset in 0..=8 {
            writer.record("t", 0, offset, Some(1000 + 10 * offset));
        }
        let partition = index.partition("t", 0).unwrap();
        // 8 points were full at offset 8: the older half (0..=3) lost 1 and 3.
        assert_eq!(partition.point_count(), 7);
        assert_eq!(partition.lookup(0), Lookup::Found { timestamp_ms: 1000, error_bound_ms: 20 });
        assert_eq!(partition.lookup(1), Lookup::Found { timestamp_ms: 1000, error_bound_ms: 20 });
        assert_eq!(partition.lookup(3), Lookup::Found { timestamp_ms: 1020, error_bound_ms: 20 });
        // The newer half stays exact.
        for offset in 4..=8 {
            assert_eq!(partition.lookup(offset), found(1000 + 10 * offset), "offset {offset}");
        }
    }

    #[test]
    fn quarantined_offsets_are_remembered_within_the_bound() {
        let index = Arc::new(TimeIndex::new(8));
        let mut writer = IndexWriter::new(index.clone());
        for offset in 0..(QUARANTINED_PER_PARTITION as i64 + 5) {
            writer.quarantined("t", 0, offset);
        }
        let partition = index.partition("t", 0).unwrap();
        assert!(!partition.was_quarantined(4), "the oldest ones are forgotten");
        assert!(partition.was_quarantined(5));
        assert!(partition.was_quarantined(QUARANTINED_PER_PARTITION as i64 + 4));
        assert!(!partition.was_quarantined(10_000));
    }

    /// Property test over random partitions with non-decreasing timestamps:
    /// lookups never under-state a record's age, stay within the reported
    /// error bound, are monotonic in the offset, and the point count never
    /// exceeds the capacity.
    #[test]
    fn lookups_bound_the_true_timestamp_for_random_streams() {
        for seed in 0..200u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let capacity = rng.random_range(4..64);
            let index = Arc::new(TimeIndex::new(capacity));
            let mut writer = IndexWriter::new(index.clone());
            let mut truth = Vec::new();
            let (mut offset, mut ts) = (rng.random_range(0..1_000i64), rng.random_range(0..1_000_000i64));
            for _ in 0..rng.random_range(1..3_000) {
                offset += if rng.random_bool(0.05) { rng.random_range(2..5) } else { 1 };
                ts += if rng.random_bool(0.6) { 0 } else { rng.random_range(1..50) };
                writer.record("t", 0, offset, Some(ts));
                truth.push((offset, ts));
            }
            let partition = index.partition("t", 0).unwrap();
            assert!(partition.point_count() <= capacity.max(4), "seed {seed}");
            let mut previous = i64::MIN;
            for &(offset, true_ts) in &truth {
                let Lookup::Found { timestamp_ms, error_bound_ms } = partition.lookup(offset) else {
                    panic!("seed {seed}: offset {offset} not covered");
                };
                assert!(error_bound_ms >= 0);
                assert!(timestamp_ms <= true_ts, "seed {seed}: offset {offset} estimate after the truth");
                assert!(true_ts <= timestamp_ms + error_bound_ms, "seed {seed}: offset {offset} outside the bound");
                assert!(timestamp_ms >= previous, "seed {seed}: lookups not monotonic at {offset}");
                previous = timestamp_ms;
            }
            assert_eq!(partition.lookup(truth.last().unwrap().0 + 1), Lookup::NotCovered);
            assert_eq!(partition.lookup(truth[0].0 - 1), Lookup::NotCovered);
        }
    }
}
