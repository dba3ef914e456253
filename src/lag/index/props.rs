//! Property tests of the offset → timestamp index (proptest): for any
//! stream the ingest thread can feed it (contiguous offsets, transaction
//! markers, offsets read by another replica, re-reads after a seek,
//! records without a timestamp, any timestamp steps), checked against the
//! stream itself:
//! - every indexed offset is found, and when timestamps do not decrease the
//!   true timestamp lies in `[timestamp_ms, timestamp_ms + error_bound_ms]`;
//! - lookups are monotonic in the offset;
//! - while the index never had to thin, every lookup is exact and the
//!   offsets it did not read are not covered;
//! - the point count never exceeds the capacity (1,024 by default).
//!
//! A failing case is shrunk by proptest to a minimal stream and printed.

use std::sync::Arc;

use proptest::prelude::*;

use super::{IndexWriter, Lookup, TimeIndex};

/// One record as the consumer hands it over, relative to the previous one.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// 0: a re-read of an earlier offset (after a seek back); 1: the next
    /// offset; 2: one offset skipped (a transaction marker); more: a gap.
    offset_step: i64,
    /// Added to the previous timestamp (may be negative when timestamps
    /// are allowed to go back).
    timestamp_step: i64,
    /// `false`: a record without a timestamp (old message format).
    has_timestamp: bool,
}

fn steps(max_len: usize, timestamps_go_back: bool) -> impl Strategy<Value = Vec<Step>> {
    let offset_step = prop_oneof![85 => Just(1i64), 6 => Just(2i64), 5 => 3i64..40, 4 => Just(0i64)];
    let timestamp_step =
        if timestamps_go_back { prop_oneof![6 => Just(0i64), 4 => -50i64..50].boxed() } else { (0i64..40).boxed() };
    let has_timestamp = prop::bool::weighted(0.98);
    prop::collection::vec(
        (offset_step, timestamp_step, has_timestamp).prop_map(|(offset_step, timestamp_step, has_timestamp)| Step {
            offset_step,
            timestamp_step,
            has_timestamp,
        }),
        1..max_len,
    )
}

/// What the index was fed: the first reading of each offset with a
/// timestamp, in offset order, and every offset between them it did not
/// read, with the width of its gap.
struct Fed {
    read: Vec<(i64, i64)>,
    unread: Vec<(i64, i64)>,
    /// Distinct runs (a new timestamp or a skip starts one): points needed
    /// if nothing were ever dropped.
    runs_and_gaps: usize,
}

fn feed(writer: &mut IndexWriter, first_offset: i64, first_timestamp: i64, steps: &[Step]) -> Fed {
    let (mut offset, mut timestamp) = (first_offset, first_timestamp);
    let mut fed = Fed { read: Vec::new(), unread: Vec::new(), runs_and_gaps: 0 };
    let mut last: Option<(i64, i64)> = None;
    for step in steps {
        timestamp += step.timestamp_step;
        if step.offset_step == 0 {
            // A re-read: some earlier offset, with a different timestamp; ignored by the index.
            if let Some(&(earlier, _)) = fed.read.first() {
                writer.record("t", 0, earlier, Some(timestamp + 7));
            }
            continue;
        }
        offset += step.offset_step;
        if !step.has_timestamp {
            // Not indexed: neither read (for lookups) nor a skip marker.
            writer.record("t", 0, offset, None);
            continue;
        }
        writer.record("t", 0, offset, Some(timestamp));
        match last {
            None => fed.runs_and_gaps += 1,
            Some((last_offset, last_timestamp)) => {
                let skipped = offset - last_offset - 1;
                fed.unread.extend((last_offset + 1..offset).map(|unread| (unread, skipped)));
                fed.runs_and_gaps += usize::from(skipped > 1) + usize::from(skipped > 0 || timestamp != last_timestamp);
            }
        }
        fed.read.push((offset, timestamp));
        last = Some((offset, timestamp));
    }
    fed
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Non-decreasing timestamps (LogAppendTime, or sane producer clocks).
    #[test]
    fn lookups_bound_the_true_timestamp(
        capacity in 4usize..80,
        first_offset in 0i64..1_000_000,
        first_timestamp in 0i64..2_000_000_000_000,
        steps in steps(3_000, false),
    ) {
        let index = Arc::new(TimeIndex::new(capacity));
        let mut writer = IndexWriter::new(index.clone());
        let fed = feed(&mut writer, first_offset, first_timestamp, &steps);
        let Some(partition) = index.partition("t", 0) else {
            // Nothing with a timestamp was read: nothing indexed.
            prop_assert!(fed.read.is_empty());
            return Ok(());
        };
        prop_assert!(partition.point_count() <= capacity);
        let mut previous = i64::MIN;
        for &(offset, true_timestamp) in &fed.read {
            let Lookup::Found { timestamp_ms, error_bound_ms } = partition.lookup(offset) else {
                return Err(TestCaseError::fail(format!("offset {offset} not covered")));
            };
            prop_assert!(error_bound_ms >= 0);
            prop_assert!(timestamp_ms <= true_timestamp, "offset {}: {} after the truth {}", offset, timestamp_ms, true_timestamp);
            prop_assert!(true_timestamp <= timestamp_ms + error_bound_ms, "offset {}: truth {} beyond {} + {}", offset, true_timestamp, timestamp_ms, error_bound_ms);
            prop_assert!(timestamp_ms >= previous, "lookups not monotonic at {}", offset);
            previous = timestamp_ms;
        }
        let (first, last) = (fed.read[0].0, fed.read[fed.read.len() - 1].0);
        prop_assert_eq!(partition.lookup(first - 1), Lookup::NotCovered);
        prop_assert_eq!(partition.lookup(last + 1), Lookup::NotCovered);
        prop_assert_eq!(partition.last_offset(), last);
    }

    /// Any timestamps, even going back: while the index never thinned,
    /// every read offset is exact and every unread one (gaps of two or
    /// more offsets) is not covered.
    #[test]
    fn an_index_that_never_thinned_is_exact(
        first_offset in 0i64..1_000,
        steps in steps(400, true),
    ) {
        let index = Arc::new(TimeIndex::new(1_024));
        let mut writer = IndexWriter::new(index.clone());
        let fed = feed(&mut writer, first_offset, 1_700_000_000_000, &steps);
        let Some(partition) = index.partition("t", 0) else { return Ok(()) };
        prop_assert!(fed.runs_and_gaps <= 1_024);
        prop_assert_eq!(partition.point_count(), fed.runs_and_gaps);
        for &(offset, true_timestamp) in &fed.read {
            prop_assert_eq!(partition.lookup(offset), Lookup::Found { timestamp_ms: true_timestamp, error_bound_ms: 0 });
        }
        for &(offset, gap) in &fed.unread {
            if gap == 1 {
                // One skipped offset is taken for a transaction marker: it
                // sits inside the previous record's run.
                prop_assert_eq!(partition.lookup(offset), partition.lookup(offset - 1));
            } else {
                // Wider gaps were read elsewhere: marked, never claimed.
                prop_assert_eq!(partition.lookup(offset), Lookup::NotCovered, "unread offset {}", offset);
            }
        }
    }
}

/// The default capacity holds under a long stream of distinct timestamps:
/// 20,000 records, each a new point, never more than 1,024 points; the
/// newest offsets stay exact and the oldest is still found, coarsened.
#[test]
fn the_default_capacity_bounds_a_long_stream() {
    let index = Arc::new(TimeIndex::new(1_024));
    let mut writer = IndexWriter::new(index.clone());
    writer.record("t", 0, 0, Some(0));
    let partition = index.partition("t", 0).unwrap();
    let mut most = 0;
    for offset in 1..20_000 {
        writer.record("t", 0, offset, Some(offset * 3));
        most = most.max(partition.point_count());
    }
    assert_eq!(most, 1_024);
    assert_eq!(partition.lookup(19_999), Lookup::Found { timestamp_ms: 59_997, error_bound_ms: 0 });
    let Lookup::Found { timestamp_ms: 0, error_bound_ms } = partition.lookup(0) else { panic!("oldest offset lost") };
    assert!(error_bound_ms > 0, "the oldest region is coarsened");
    for offset in 0..20_000 {
        let Lookup::Found { timestamp_ms, error_bound_ms } = partition.lookup(offset) else { panic!("{offset}") };
        assert!(timestamp_ms <= offset * 3 && offset * 3 <= timestamp_ms + error_bound_ms, "offset {offset}");
    }
}
