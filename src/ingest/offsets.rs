//! Which offset may be stored now: in-order completion per partition.
//!
//! Kafka commits one offset per partition, meaning "everything before this
//! is done". Most records are done the moment they are observed, but a
//! poison record is done only when its quarantine copy is acknowledged, and
//! records after it may finish first. This tracker keeps, per partition, the
//! records still waiting (only while there are any) and releases the highest
//! offset below which everything is done.
//!
//! A partition can also be *blocked* at an offset: its schema is not
//! available yet, or its quarantine write failed. Records at or after that
//! offset are dropped unprocessed (they are re-read after the consumer seeks
//! back), and nothing at or after it is ever stored, so no offset moves past
//! an unfinished record. The ingest loop pauses a blocked partition and, when
//! the retry is due, seeks back to the blocked offset and resumes.
//!
//! Pure bookkeeping: no Kafka calls, unit-tested below.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// A topic partition.
pub type TopicPartition = (Arc<str>, i32);

/// Why a partition is blocked; also the `reason` label of the paused-partitions gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockReason {
    /// A schema could not be fetched (registry unavailable).
    SchemaUnavailable,
    /// A quarantine copy could not be written.
    QuarantineFailed,
}

impl BlockReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::SchemaUnavailable => "schema_unavailable",
            BlockReason::QuarantineFailed => "quarantine_failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// First offset that is not done; consumption restarts here.
    pub offset: i64,
    pub reason: BlockReason,
    pub retry_at: Instant,
    /// Consecutive blocks of this partition, for the retry backoff.
    pub attempts: u32,
}

#[derive(Debug, Default)]
struct Partition {
    /// Records still in flight and records done after them, in offset order.
    /// Empty in the common case: then a done record is stored at once.
    waiting: VecDeque<(i64, bool)>,
    blocked: Option<Blocked>,
    /// Blocks in a row without a record getting through, for backoff.
    attempts: u32,
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<TopicPartition, Partition>,
    in_flight: usize,
    blocked: usize,
}

impl OffsetTracker {
    /// Nothing waits and nothing is blocked: every record can be stored the
    /// moment it is done, without looking anything up (the common case).
    pub fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.blocked == 0
    }

    /// Whether a record at `offset` must be skipped because its partition is
    /// blocked at or before it.
    pub fn skips(&self, tp: &TopicPartition, offset: i64) -> bool {
        self.partitions.get(tp).and_then(|p| p.blocked).is_some_and(|b| offset >= b.offset)
    }

    /// A record is done at once. Returns the offset to store now, if any.
    pub fn done(&mut self, tp: &TopicPartition, offset: i64) -> Option<i64> {
        let partition = self.partitions.entry(tp.clone()).or_default();
        partition.attempts = 0;
        if partition.waiting.is_empty() {
            return Some(offset);
        }
        partition.waiting.push_back((offset, true));
        None
    }

    /// A record waits for an acknowledgement (its quarantine copy).
    pub fn begin(&mut self, tp: &TopicPartition, offset: i64) {
        let partition = self.partitions.entry(tp.clone()).or_default();
        partition.attempts = 0;
        partition.waiting.push_back((offset, false));
        self.in_flight += 1;
    }

    /// The record at `offset` was acknowledged. Returns the offset to store
    /// now (the last of the records done in a row from the front), if any.
    pub fn acknowledged(&mut self, tp: &TopicPartition, offset: i64) -> Option<i64> {
        let partition = self.partitions.get_mut(tp)?;
        let slot = partition.waiting.iter_mut().find(|(o, done)| *o == offset && !*done)?;
        slot.1 = true;
        self.in_flight -= 1;
        let mut store = None;
        while let Some(&(front, true)) = partition.waiting.front() {
            store = Some(front);
            partition.waiting.pop_front();
        }
        // Nothing at or after a block point may be stored.
        match (store, partition.blocked) {
            (Some(o), Some(b)) if o >= b.offset => None,
            _ => store,
        }
    }

    /// Blocks the partition at `offset` (the first record that is not done).
    /// Waiting records at or after it are forgotten: they will be re-read.
    /// Returns the block now in force (an earlier block point wins).
    pub fn block(&mut self, tp: &TopicPartition, offset: i64, reason: BlockReason, retry_at: Instant) -> Blocked {
        let partition = self.partitions.entry(tp.clone()).or_default();
        let forgotten = partition.waiting.iter().filter(|(o, done)| *o >= offset && !*done).count();
        self.in_flight -= forgotten;
        partition.waiting.retain(|(o, _)| *o < offset);
        partition.attempts += 1;
        let blocked = match partition.blocked {
            Some(existing) if existing.offset <= offset => existing,
            _ => Blocked { offset, reason, retry_at, attempts: partition.attempts },
        };
        if partition.blocked.replace(blocked).is_none() {
            self.blocked += 1;
        }
        blocked
    }

    /// Consecutive blocks of a partition (0 once a record got through).
    pub fn attempts(&self, tp: &TopicPartition) -> u32 {
        self.partitions.get(tp).map_or(0, |p| p.attempts)
    }

    /// Blocked partitions whose retry is due; they are unblocked and returned
    /// with the offset to seek back to.
    pub fn due(&mut self, now: Instant) -> Vec<(TopicPartition, i64)> {
        let mut due = Vec::new();
        for (tp, partition) in self.partitions.iter_mut() {
            if let Some(blocked) = partition.blocked.filter(|b| b.retry_at <= now) {
                partition.blocked = None;
                due.push((tp.clone(), blocked.offset));
            }
        }
        self.blocked -= due.len();
        due
    }

    /// Number of blocked partitions per reason.
    pub fn blocked_count(&self, reason: BlockReason) -> usize {
        self.partitions.values().filter(|p| p.blocked.is_some_and(|b| b.reason == reason)).count()
    }

    /// Records waiting for an acknowledgement.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Forgets a partition that is no longer assigned (after a rebalance):
    /// its waiting records will be re-read by the next owner.
    pub fn forget(&mut self, tp: &TopicPartition) {
        if let Some(partition) = self.partitions.remove(tp) {
            self.in_flight -= partition.waiting.iter().filter(|(_, done)| !done).count();
            self.blocked -= usize::from(partition.blocked.is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tp(partition: i32) -> TopicPartition {
        (Arc::from("orders"), partition)
    }

    #[test]
    fn done_records_are_stored_at_once() {
        let mut tracker = OffsetTracker::default();
        assert!(tracker.is_idle());
        assert_eq!(tracker.done(&tp(0), 0), Some(0));
        assert_eq!(tracker.done(&tp(0), 1), Some(1));
        assert_eq!(tracker.done(&tp(1), 7), Some(7));
    }

    #[test]
    fn a_waiting_record_holds_back_later_ones_until_acknowledged() {
        let mut tracker = OffsetTracker::default();
        assert_eq!(tracker.done(&tp(0), 0), Some(0));
        tracker.begin(&tp(0), 1);
        assert_eq!(tracker.done(&tp(0), 2), None);
        tracker.begin(&tp(0), 3);
        assert_eq!(tracker.done(&tp(0), 4), None);
        assert_eq!(tracker.in_flight(), 2);
        // Other partitions are not held back.
        assert_eq!(tracker.done(&tp(1), 0), Some(0));
        // Acknowledgements out of order: 3 first releases nothing.
        assert_eq!(tracker.acknowledged(&tp(0), 3), None);
        assert_eq!(tracker.acknowledged(&tp(0), 1), Some(4));
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.done(&tp(0), 5), Some(5));
        // Unknown or repeated acknowledgements change nothing.
        assert_eq!(tracker.acknowledged(&tp(0), 1), None);
        assert_eq!(tracker.acknowledged(&tp(9), 1), None);
    }

    #[test]
    fn a_blocked_partition_skips_and_never_stores_past_the_block() {
        let mut tracker = OffsetTracker::default();
        let now = Instant::now();
        tracker.begin(&tp(0), 10);
        assert_eq!(tracker.done(&tp(0), 11), None);
        tracker.begin(&tp(0), 12);
        let blocked = tracker.block(&tp(0), 12, BlockReason::QuarantineFailed, now + Duration::from_secs(1));
        assert_eq!(blocked.offset, 12);
        assert_eq!(tracker.in_flight(), 1, "the failed record no longer counts as in flight");
        assert!(tracker.skips(&tp(0), 12) && tracker.skips(&tp(0), 13));
        assert!(!tracker.skips(&tp(0), 11));
        assert!(!tracker.skips(&tp(1), 12));
        // Record 10 is acknowledged: 10 and 11 are done, 12 is not.
        assert_eq!(tracker.acknowledged(&tp(0), 10), Some(11));
        assert_eq!(tracker.blocked_count(BlockReason::QuarantineFailed), 1);
        // An earlier block point wins; a later one does not move it.
        let blocked = tracker.block(&tp(0), 15, BlockReason::SchemaUnavailable, now);
        assert_eq!((blocked.offset, blocked.reason), (12, BlockReason::QuarantineFailed));
        assert!(tracker.due(now).is_empty());
        assert!(!tracker.is_idle());
        assert_eq!(tracker.due(now + Duration::from_secs(1)), vec![(tp(0), 12)]);
        assert_eq!(tracker.blocked_count(BlockReason::QuarantineFailed), 0);
        assert!(!tracker.skips(&tp(0), 12));
        assert_eq!(tracker.attempts(&tp(0)), 2);
        assert_eq!(tracker.done(&tp(0), 12), Some(12));
        assert_eq!(tracker.attempts(&tp(0)), 0);
    }

    #[test]
    fn acknowledgements_after_a_block_point_store_nothing() {
        let mut tracker = OffsetTracker::default();
        tracker.begin(&tp(0), 5);
        let later = Instant::now() + Duration::from_secs(60);
        tracker.block(&tp(0), 3, BlockReason::SchemaUnavailable, later);
        // Record 5 was forgotten by the block; its late acknowledgement is ignored.
        assert_eq!(tracker.acknowledged(&tp(0), 5), None);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn forgetting_a_revoked_partition_drops_its_waiting_records() {
        let mut tracker = OffsetTracker::default();
        tracker.begin(&tp(0), 1);
        tracker.begin(&tp(1), 1);
        tracker.forget(&tp(0));
        assert_eq!(tracker.in_flight(), 1);
        assert_eq!(tracker.acknowledged(&tp(0), 1), None);
        tracker.block(&tp(1), 0, BlockReason::SchemaUnavailable, Instant::now());
        assert!(!tracker.is_idle());
        tracker.forget(&tp(1));
        assert!(tracker.is_idle());
    }
}
