//! Status of a consumer group's partitions over a sliding window.
//!
//! The lag thread feeds one [`Sample`] (poll time, committed offset, lag in
//! messages) per partition and poll into that partition's
//! [`PartitionWindow`]; [`PartitionWindow::evaluate`] applies the rules
//! below, and a group's status is the worst of its partitions'. The rules
//! (also in docs/lag.md), first match wins:
//!
//! 1. **rewound**: the committed offset went down between two samples of the
//!    window (a reset to an earlier offset, a replay).
//! 2. **ok**: the lag is 0 now (caught up, whatever happened before).
//! 3. **stopped**: lag > 0, the committed offset has not moved for at least
//!    the window, and the group has no active member: nothing is consuming.
//!    (The broker does not say when a group last committed; a frozen offset
//!    in a group without members is the observable form of "no commits".)
//! 4. **stalled**: lag > 0 and the committed offset has not moved for at
//!    least the window although the group has members: consumers are alive
//!    but not progressing (a poison record, a deadlock, a paused partition).
//! 5. **lagging**: the lag grew over the window: it never shrank between two
//!    samples and the last is larger than the first, with at least
//!    [`MIN_SAMPLES_FOR_TREND`] samples.
//! 6. **ok** otherwise.
//!
//! "Frozen for" counts from the first poll that saw the current committed
//! offset, so it under-states by up to one poll interval, and a partition
//! first seen frozen needs a whole window before it can be stalled.

use std::collections::VecDeque;

/// Samples kept per partition at most, whatever the window: with the default
/// 10 s poll and 120 s window a window holds 13; 64 leaves room for short
/// poll intervals while bounding memory at 1.5 KiB per partition.
pub const MAX_SAMPLES: usize = 64;

/// A trend needs a few points: two samples cannot tell growth from noise.
pub const MIN_SAMPLES_FOR_TREND: usize = 3;

/// The status of a partition or a group; ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    Lagging,
    Rewound,
    Stalled,
    Stopped,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Ok, Status::Lagging, Status::Rewound, Status::Stalled, Status::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Lagging => "lagging",
            Status::Rewound => "rewound",
            Status::Stalled => "stalled",
            Status::Stopped => "stopped",
        }
    }
}

/// One poll's view of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: i64,
    pub committed: i64,
    pub lag: i64,
}

/// The recent samples of one (group, topic, partition).
#[derive(Debug, Clone, Default)]
pub struct PartitionWindow {
    samples: VecDeque<Sample>,
    /// Poll time of the first sample that saw the current committed offset.
    changed_at_ms: i64,
}

impl PartitionWindow {
    /// Adds a sample and forgets those older than the window (keeping the
    /// newest one before it, so the window's span is known).
    pub fn push(&mut self, sample: Sample, window_ms: i64) {
        if self.samples.back().is_none_or(|last| last.committed != sample.committed) {
            self.changed_at_ms = sample.at_ms;
        }
        self.samples.push_back(sample);
        while self.samples.len() > MAX_SAMPLES
            || (self.samples.len() > 1 && self.samples[1].at_ms <= sample.at_ms - window_ms)
        {
            self.samples.pop_front();
        }
    }

    /// How long the committed offset has not moved, as of the last sample.
    pub fn frozen_for_ms(&self) -> i64 {
        self.samples.back().map_or(0, |last| last.at_ms - self.changed_at_ms)
    }

    /// Whether the committed offset moved within the window.
    pub fn progressed_within(&self, window_ms: i64) -> bool {
        self.samples.len() >= 2 && self.frozen_for_ms() < window_ms
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// The rules of the module doc. `has_members`: the group has at least one
    /// active member.
    pub fn evaluate(&self, window_ms: i64, has_members: bool) -> Status {
        let Some(last) = self.samples.back() else { return Status::Ok };
        let pairs = || self.samples.iter().zip(self.samples.iter().skip(1));
        if pairs().any(|(a, b)| b.committed < a.committed) {
            return Status::Rewound;
        }
        if last.lag == 0 {
            return Status::Ok;
        }
        if self.frozen_for_ms() >= window_ms {
            return if has_members { Status::Stalled } else { Status::Stopped };
        }
        let first = &self.samples[0];
        if self.samples.len() >= MIN_SAMPLES_FOR_TREND && pairs().all(|(a, b)| b.lag >= a.lag) && last.lag > first.lag {
            return Status::Lagging;
        }
        Status::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 60_000;

    /// A window fed with one sample per 10 s: (committed, lag) pairs.
    fn window(samples: &[(i64, i64)]) -> PartitionWindow {
        let mut window = PartitionWindow::default();
        for (n, (committed, lag)) in samples.iter().enumerate() {
            window.push(Sample { at_ms: n as i64 * 10_000, committed: *committed, lag: *lag }, WINDOW);
        }
        window
    }

    #[test]
    fn a_consumer_keeping_up_is_ok() {
        let w = window(&[(100, 5), (200, 3), (300, 6), (400, 2)]);
        assert_eq!(w.evaluate(WINDOW, true), Status::Ok);
        // Caught up and idle for a long time is still ok.
        let idle: Vec<(i64, i64)> = (0..20).map(|_| (500, 0)).collect();
        assert_eq!(window(&idle).evaluate(WINDOW, false), Status::Ok);
    }

    #[test]
    fn growing_lag_with_progress_is_lagging() {
        let w = window(&[(100, 10), (150, 20), (180, 20), (200, 45)]);
        assert_eq!(w.evaluate(WINDOW, true), Status::Lagging);
        // One shrink in the window breaks the trend.
        let w = window(&[(100, 10), (150, 20), (180, 15), (200, 45)]);
        assert_eq!(w.evaluate(WINDOW, true), Status::Ok);
        // Two samples are not a trend.
        assert_eq!(window(&[(100, 10), (150, 20)]).evaluate(WINDOW, true), Status::Ok);
    }

    #[test]
    fn a_frozen_offset_with_lag_is_stalled_with_members_and_stopped_without() {
        // Frozen at 100 from t=0 to t=60 s: a whole window.
        let frozen: Vec<(i64, i64)> = (0..7).map(|n| (100, 10 + n)).collect();
        let w = window(&frozen);
        assert_eq!(w.frozen_for_ms(), 60_000);
        assert_eq!(w.evaluate(WINDOW, true), Status::Stalled);
        assert_eq!(w.evaluate(WINDOW, false), Status::Stopped);
        // Frozen for less than the window: only the lag trend counts.
        let w = window(&frozen[..6]);
        assert_eq!(w.evaluate(WINDOW, true), Status::Lagging);
        // Frozen with no lag is just an idle, caught-up consumer.
        let w = window(&[(100, 0); 7]);
        assert_eq!(w.evaluate(WINDOW, true), Status::Ok);
    }

    #[test]
    fn a_committed_offset_going_back_is_rewound_until_it_leaves_the_window() {
        let mut samples = vec![(500, 10), (520, 10), (100, 400)];
        assert_eq!(window(&samples).evaluate(WINDOW, true), Status::Rewound);
        // Seven more samples later (70 s) the rewind has left the 60 s window.
        samples.extend((1..=7).map(|n| (100 + n * 50, 400 - n * 50)));
        assert_eq!(window(&samples).evaluate(WINDOW, true), Status::Ok);
    }

    #[test]
    fn the_window_forgets_old_samples_but_keeps_its_span() {
        let samples: Vec<(i64, i64)> = (0..200).map(|n| (n, 1)).collect();
        let w = window(&samples);
        // 60 s window at 10 s spacing: the samples at 1930..=1990 s plus one before.
        assert_eq!(w.samples.len(), 7);
        assert!(w.samples.len() <= MAX_SAMPLES);
        assert!(w.progressed_within(WINDOW));
    }

    #[test]
    fn statuses_are_ordered_by_severity() {
        let worst = [Status::Ok, Status::Stalled, Status::Lagging].into_iter().max().unwrap();
        assert_eq!(worst, Status::Stalled);
        assert!(Status::Stopped > Status::Stalled && Status::Rewound > Status::Lagging);
    }
}
