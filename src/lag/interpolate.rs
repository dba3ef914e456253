//! The interpolation fallback of lag in seconds: for offsets pipewarden's
//! index does not cover (topics it does not watch, offsets it has not
//! read), a record's time is estimated from the (high watermark, poll time)
//! pairs the lag thread samples at every poll. See docs/lag.md.

use std::collections::VecDeque;

/// What the interpolation fallback estimates for one offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimate {
    /// The record was appended between two polls; `timestamp_ms` is linear
    /// between them by offset, the true time within `error_bound_ms` of it
    /// (the two polls' distance).
    Between { timestamp_ms: i64, error_bound_ms: i64 },
    /// The record was appended before the oldest sample: `timestamp_ms` is
    /// that sample's time, so the lag it gives is a lower bound.
    Before { timestamp_ms: i64 },
    /// No sample yet.
    Unknown,
}

/// (high watermark, poll time) pairs of one partition, sampled at each poll,
/// for the interpolation fallback. Bounded: `max_samples` pairs, and a run of
/// polls with the same high watermark (an idle partition) keeps only its first
/// and its latest sample.
#[derive(Debug, Clone)]
pub struct HighWatermarkSamples {
    samples: VecDeque<(i64, i64)>,
    max_samples: usize,
}

impl HighWatermarkSamples {
    pub fn new(max_samples: usize) -> Self {
        Self { samples: VecDeque::new(), max_samples: max_samples.max(2) }
    }

    pub fn push(&mut self, high_watermark: i64, at_ms: i64) {
        let len = self.samples.len();
        if len >= 2 && self.samples[len - 1].0 == high_watermark && self.samples[len - 2].0 == high_watermark {
            self.samples[len - 1].1 = at_ms;
            return;
        }
        // A high watermark going down (topic recreated, truncation) makes the
        // older samples meaningless.
        if self.samples.back().is_some_and(|(hw, _)| *hw > high_watermark) {
            self.samples.clear();
        }
        if self.samples.len() >= self.max_samples {
            self.samples.pop_front();
        }
        self.samples.push_back((high_watermark, at_ms));
    }

    /// When the record at `offset` was appended.
    pub fn estimate(&self, offset: i64) -> Estimate {
        // The first sample whose high watermark is past the offset: the
        // record existed at that poll and not at the one before.
        let after = self.samples.partition_point(|(hw, _)| *hw <= offset);
        if after == self.samples.len() {
            return Estimate::Unknown;
        }
        let (hw_after, t_after) = self.samples[after];
        if after == 0 {
            return Estimate::Before { timestamp_ms: t_after };
        }
        let (hw_before, t_before) = self.samples[after - 1];
        // Offsets hw_before..hw_after were appended in (t_before, t_after];
        // place the offset linearly in that span.
        let span = (hw_after - hw_before).max(1) as f64;
        let fraction = ((offset + 1 - hw_before) as f64 / span).clamp(0.0, 1.0);
        let timestamp_ms = t_before + (fraction * (t_after - t_before) as f64).round() as i64;
        Estimate::Between { timestamp_ms, error_bound_ms: (t_after - t_before).max(0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_places_an_offset_between_two_polls() {
        let mut samples = HighWatermarkSamples::new(16);
        assert_eq!(samples.estimate(0), Estimate::Unknown);
        samples.push(100, 10_000);
        samples.push(200, 20_000);
        // Offset 149 is the 50th record appended between the polls.
        assert_eq!(samples.estimate(149), Estimate::Between { timestamp_ms: 15_000, error_bound_ms: 10_000 });
        assert_eq!(samples.estimate(50), Estimate::Before { timestamp_ms: 10_000 });
        // Not appended yet at the last poll.
        assert_eq!(samples.estimate(200), Estimate::Unknown);
    }

    #[test]
    fn idle_runs_keep_their_first_and_latest_sample() {
        let mut samples = HighWatermarkSamples::new(4);
        samples.push(10, 1_000);
        for at in 2..=50 {
            samples.push(20, at * 1_000);
        }
        assert_eq!(samples.samples, VecDeque::from(vec![(10, 1_000), (20, 2_000), (20, 50_000)]));
        // Offset 15 appeared between 1 s and 2 s, however long the partition idles after.
        assert!(matches!(samples.estimate(15), Estimate::Between { error_bound_ms: 1_000, .. }));
        samples.push(5, 60_000);
        assert_eq!(samples.samples, VecDeque::from(vec![(5, 60_000)]), "a shrinking watermark resets");
    }
}
