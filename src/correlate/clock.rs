//! Event-time clock for stall detection and the trace TTL.
//!
//! A trace is stalled when its flow's SLA has passed without a terminal
//! event. "Passed" must be measured in event time, not in the time
//! pipewarden reads records: a lagging or restarted pipewarden catching up
//! on an hour of backlog would otherwise call every trace of that hour
//! stalled. And the terminal event of a trace may sit in another partition
//! that pipewarden reads later than the start's.
//!
//! So the clock is a low watermark over the partitions observed: each
//! partition's clock is the latest event time seen on it, advanced by the
//! wall time elapsed once it has been idle for [`IDLE_MS`] (a partition
//! that is caught up and idle moves on with real time), never ahead of the wall clock (a producer whose clock
//! runs ahead must not make traces stall early). The correlator's clock is
//! the minimum over partitions: a trace is only declared stalled once every
//! partition has moved past its deadline, so its terminal event, had it
//! been written in time, would already have been read.

/// Latest event time of one partition and the wall time it was observed.
#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    event_ms: i64,
    wall_ms: i64,
}

/// Partition clocks indexed by interned topic id, then partition (no hashing per record).
#[derive(Debug, Default)]
pub struct Watermark {
    topics: Vec<Vec<Option<PartitionClock>>>,
}

/// A partition with no record for this long is taken to be caught up: its
/// clock then moves on with wall time. While records keep coming its clock
/// is exactly the latest event time read, even when pipewarden (or the
/// pipeline) falls behind.
pub const IDLE_MS: i64 = 1_000;

/// Partitions per topic tracked at most (Kafka topics rarely exceed a few thousand).
const MAX_PARTITIONS: usize = 1 << 16;

impl Watermark {
    /// Notes an event of `topic`/`partition` with event time `event_ms`, read at `wall_ms`.
    pub fn observe(&mut self, topic: u16, partition: i32, event_ms: i64, wall_ms: i64) {
        let Ok(partition) = usize::try_from(partition) else { return };
        if partition >= MAX_PARTITIONS {
            return;
        }
        let topic = topic as usize;
        if self.topics.len() <= topic {
            self.topics.resize_with(topic + 1, Vec::new);
        }
        let partitions = &mut self.topics[topic];
        if partitions.len() <= partition {
            partitions.resize(partition + 1, None);
        }
        let event_ms = event_ms.min(wall_ms);
        let clock = &mut partitions[partition];
        match clock {
            // Event times within a partition are not strictly ordered
            // (several producers): keep the latest.
            Some(clock) => *clock = PartitionClock { event_ms: clock.event_ms.max(event_ms), wall_ms },
            None => *clock = Some(PartitionClock { event_ms, wall_ms }),
        }
    }

    /// The low watermark at wall time `wall_ms`; `None` before any event.
    pub fn now(&self, wall_ms: i64) -> Option<i64> {
        self.topics
            .iter()
            .flatten()
            .flatten()
            .map(|clock| (clock.event_ms + (wall_ms - clock.wall_ms - IDLE_MS).max(0)).min(wall_ms))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_partition_holds_the_clock_back() {
        let mut clock = Watermark::default();
        assert_eq!(clock.now(1_000), None);
        clock.observe(0, 0, 500, 1_000);
        clock.observe(1, 3, 100, 1_000);
        assert_eq!(clock.now(1_000), Some(100));
        // Partitions idle for longer than IDLE_MS advance with wall time.
        assert_eq!(clock.now(1_000 + IDLE_MS), Some(100));
        assert_eq!(clock.now(1_200 + IDLE_MS), Some(300));
        // Catching up on partition 1 moves the clock to partition 0's projection.
        clock.observe(1, 3, 900, 1_200 + IDLE_MS);
        assert_eq!(clock.now(1_200 + IDLE_MS), Some(700));
        // A partition read steadily but slowly is not projected forward.
        clock.observe(0, 0, 600, 1_200 + IDLE_MS);
        clock.observe(1, 3, 901, 1_200 + IDLE_MS);
        assert_eq!(clock.now(1_900 + IDLE_MS), Some(600));
    }

    #[test]
    fn future_event_times_are_capped_at_the_wall_clock() {
        let mut clock = Watermark::default();
        clock.observe(0, 0, 10_000, 1_000);
        assert_eq!(clock.now(1_000), Some(1_000));
        clock.observe(0, 0, 400, 1_000);
        assert_eq!(clock.now(1_000), Some(1_000), "an older event never moves the clock back");
        clock.observe(0, -1, 0, 1_000);
        assert_eq!(clock.now(1_000), Some(1_000), "negative partitions are ignored");
    }
}
