//! What one lag poll publishes: the [`LagSnapshot`] served by
//! `/api/v1/lag`, and the metric series derived from it.
//!
//! Metric series follow the snapshot: a series written by the previous poll
//! and absent from this one (a deleted group, a topic a group stopped
//! consuming) is removed, so the scrape never shows stale lag. Group and
//! topic label values pass through the label limiters; groups past the cap
//! are summed (messages, members, stuck partitions) or maxed (seconds,
//! status) into the `__overflow__` series.

use std::collections::HashSet;
use std::hash::Hash;

use prometheus_client::metrics::family::Family;
use serde::{Serialize, Serializer};

use super::client::Topic;
use super::status::Status;
use crate::metrics::{
    GroupLabels, GroupPartitionLabels, GroupStateLabels, GroupStatusLabels, GroupTopicLabels, GroupTopicMethodLabels,
    Metrics,
};

type HashMap<K, V> = ahash::AHashMap<K, V>;

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Everything one poll found.
#[derive(Debug, Default, Serialize)]
pub struct LagSnapshot {
    /// Wall-clock time of the poll, milliseconds since the epoch (0 before the first poll).
    pub polled_at_ms: i64,
    pub poll_duration_ms: f64,
    /// Groups whose description or offsets could not be read in this poll.
    pub failed_groups: usize,
    pub groups: Vec<GroupReport>,
}

#[derive(Debug, Serialize)]
pub struct GroupReport {
    pub group: String,
    /// stable, empty, preparing_rebalance, completing_rebalance, dead, unknown.
    pub state: &'static str,
    /// classic or consumer (KIP-848).
    pub protocol: &'static str,
    pub members: usize,
    /// read_committed groups are measured to the last stable offset.
    pub isolation: &'static str,
    /// The worst status of its partitions.
    pub status: Status,
    pub lag_messages: i64,
    /// Max over its partitions.
    pub lag_seconds: f64,
    pub topics: Vec<TopicReport>,
    pub partitions: Vec<PartitionReport>,
    pub stuck: Vec<StuckPartition>,
}

#[derive(Debug, Serialize)]
pub struct TopicReport {
    pub topic: Topic,
    pub lag_messages: i64,
    pub lag_seconds: f64,
    /// The method of the partition with the largest lag in seconds.
    pub method: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub topic: Topic,
    pub partition: i32,
    /// Next offset the group will consume.
    pub committed: i64,
    pub high_watermark: i64,
    /// Present when some monitored group is read_committed.
    pub last_stable_offset: Option<i64>,
    pub lag_messages: i64,
    pub lag_seconds: f64,
    /// exact (pipewarden's index) or interpolated (high-watermark samples).
    pub method: &'static str,
    /// The true lag is at most this much smaller (exact: 0 unless the index
    /// was coarsened there; interpolated: the span of the two polls around
    /// the record); -1 when only a lower bound is known.
    pub error_bound_ms: i64,
    pub status: Status,
    /// How long the committed offset has not moved (as seen by the polls).
    pub frozen_for_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct StuckPartition {
    pub topic: Topic,
    pub partition: i32,
    /// Offset of the record the group is stuck on (its committed offset).
    pub offset: i64,
    /// That record's key (UTF-8, lossy, at most 256 bytes); None when the
    /// record has no key or could not be read.
    pub key: Option<String>,
    /// Offset of the record the key was read from: the stuck offset, or the
    /// next existing one if that record was compacted away; None if unread.
    pub key_offset: Option<i64>,
    /// Whether pipewarden quarantined that record (recently: see the index).
    pub quarantined: bool,
    pub frozen_for_ms: i64,
}

/// Builds a group's report from its partitions.
pub fn group_report(
    group: &str,
    state: &'static str,
    protocol: &'static str,
    members: usize,
    read_committed: bool,
    partitions: Vec<PartitionReport>,
    stuck: Vec<StuckPartition>,
) -> GroupReport {
    let mut topics: Vec<TopicReport> = Vec::new();
    for partition in &partitions {
        // Partitions arrive sorted by topic, so a topic's partitions are adjacent.
        match topics.last_mut() {
            Some(topic) if topic.topic == partition.topic => {
                topic.lag_messages += partition.lag_messages;
                if partition.lag_seconds > topic.lag_seconds {
                    topic.lag_seconds = partition.lag_seconds;
                    topic.method = partition.method;
                }
            }
            _ => topics.push(TopicReport {
                topic: partition.topic.clone(),
                lag_messages: partition.lag_messages,
                lag_seconds: partition.lag_seconds,
                method: partition.method,
            }),
        }
    }
    GroupReport {
        group: group.to_string(),
        state,
        protocol,
        members,
        isolation: if read_committed { "read_committed" } else { "read_uncommitted" },
        status: partitions.iter().map(|p| p.status).max().unwrap_or(Status::Ok),
        lag_messages: partitions.iter().map(|p| p.lag_messages).sum(),
        lag_seconds: partitions.iter().map(|p| p.lag_seconds).fold(0.0, f64::max),
        topics,
        partitions,
        stuck,
    }
}

/// Label sets written by the previous poll, per family.
#[derive(Default)]
pub struct PublishedSeries {
    lag_messages: HashSet<GroupTopicLabels>,
    partition_lag: HashSet<GroupPartitionLabels>,
    lag_seconds: HashSet<GroupTopicMethodLabels>,
    members: HashSet<GroupLabels>,
    state: HashSet<GroupStateLabels>,
    status: HashSet<GroupStatusLabels>,
    stuck: HashSet<GroupLabels>,
}

impl PublishedSeries {
    /// Writes the snapshot's series and removes the previous poll's leftovers.
    pub fn publish(&mut self, metrics: &Metrics, snapshot: &LagSnapshot, partition_metrics: bool) {
        let lag = &metrics.lag;
        let mut topic_labels: HashMap<&str, String> = HashMap::default();
        let mut lag_messages: HashMap<GroupTopicLabels, i64> = HashMap::default();
        let mut partition_lag: HashMap<GroupPartitionLabels, i64> = HashMap::default();
        let mut lag_seconds: HashMap<GroupTopicMethodLabels, f64> = HashMap::default();
        let mut members: HashMap<GroupLabels, i64> = HashMap::default();
        let mut state: HashMap<GroupStateLabels, i64> = HashMap::default();
        let mut status: HashMap<GroupLabels, Status> = HashMap::default();
        let mut stuck: HashMap<GroupLabels, i64> = HashMap::default();
        for report in &snapshot.groups {
            let group = lag.group_limiter.admit(&report.group, &metrics.label_overflow);
            let group_labels = GroupLabels { group: group.clone() };
            *members.entry(group_labels.clone()).or_default() += report.members as i64;
            *stuck.entry(group_labels.clone()).or_default() += report.stuck.len() as i64;
            let worst = status.entry(group_labels).or_insert(Status::Ok);
            *worst = (*worst).max(report.status);
            state.insert(GroupStateLabels { group: group.clone(), state: report.state, protocol: report.protocol }, 1);
            for partition in &report.partitions {
                let topic = topic_labels
                    .entry(partition.topic.as_ref())
                    .or_insert_with(|| lag.topic_limiter.admit(&partition.topic, &metrics.label_overflow))
                    .clone();
                let labels = GroupTopicLabels { group: group.clone(), topic: topic.clone() };
                *lag_messages.entry(labels).or_default() += partition.lag_messages;
                let labels =
                    GroupTopicMethodLabels { group: group.clone(), topic: topic.clone(), method: partition.method };
                let seconds = lag_seconds.entry(labels).or_default();
                *seconds = seconds.max(partition.lag_seconds);
                if partition_metrics {
                    let labels = GroupPartitionLabels { group: group.clone(), topic, partition: partition.partition };
                    *partition_lag.entry(labels).or_default() += partition.lag_messages;
                }
            }
        }
        let status: HashMap<GroupStatusLabels, i64> = status
            .into_iter()
            .flat_map(|(labels, current)| {
                Status::ALL.into_iter().map(move |s| {
                    (GroupStatusLabels { group: labels.group.clone(), status: s.as_str() }, i64::from(s == current))
                })
            })
            .collect();
        replace(&lag.lag_messages, &mut self.lag_messages, lag_messages, |g, v| g.set(v));
        replace(&lag.partition_lag_messages, &mut self.partition_lag, partition_lag, |g, v| g.set(v));
        replace(&lag.lag_seconds, &mut self.lag_seconds, lag_seconds, |g, v| g.set(v));
        replace(&lag.members, &mut self.members, members, |g, v| g.set(v));
        replace(&lag.state, &mut self.state, state, |g, v| g.set(v));
        replace(&lag.status, &mut self.status, status, |g, v| g.set(v));
        replace(&lag.stuck_partitions, &mut self.stuck, stuck, |g, v| g.set(v));
    }
}

/// Sets every series of `current` and removes those only `previous` had.
fn replace<L, M, V, R>(
    family: &Family<L, M>,
    previous: &mut HashSet<L>,
    current: HashMap<L, V>,
    set: impl Fn(&M, V) -> R,
) where
    L: Clone + Hash + Eq,
    M: Default,
{
    for labels in previous.iter() {
        if !current.contains_key(labels) {
            family.remove(labels);
        }
    }
    previous.clear();
    for (labels, value) in current {
        set(&family.get_or_create(&labels), value);
        previous.insert(labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn partition(topic: &Topic, partition: i32, lag: i64, seconds: f64, method: &'static str) -> PartitionReport {
        PartitionReport {
            topic: topic.clone(),
            partition,
            committed: 0,
            high_watermark: lag,
            last_stable_offset: None,
            lag_messages: lag,
            lag_seconds: seconds,
            method,
            error_bound_ms: 0,
            status: if lag > 0 { Status::Lagging } else { Status::Ok },
            frozen_for_ms: 0,
        }
    }

    fn scrape(metrics: &Metrics) -> String {
        let mut text = String::new();
        metrics.encode_prometheus(&mut text).unwrap();
        text
    }

    #[test]
    fn topics_sum_messages_and_take_the_max_seconds() {
        let (a, b): (Topic, Topic) = (Arc::from("a"), Arc::from("b"));
        let partitions = vec![
            partition(&a, 0, 5, 1.5, "exact"),
            partition(&a, 1, 7, 9.0, "interpolated"),
            partition(&b, 0, 0, 0.0, "exact"),
        ];
        let report = group_report("g", "stable", "consumer", 2, false, partitions, Vec::new());
        assert_eq!(report.lag_messages, 12);
        assert_eq!(report.lag_seconds, 9.0);
        assert_eq!(report.status, Status::Lagging);
        assert_eq!(report.topics.len(), 2);
        assert_eq!((report.topics[0].lag_messages, report.topics[0].lag_seconds), (12, 9.0));
        assert_eq!(report.topics[0].method, "interpolated");
        assert_eq!((report.topics[1].lag_messages, report.topics[1].method), (0, "exact"));
    }

    #[test]
    fn series_of_vanished_groups_are_removed_and_overflow_groups_summed() {
        let metrics = Metrics::new(1);
        let topic: Topic = Arc::from("t");
        let group = |name: &str, lag: i64| {
            group_report(name, "empty", "classic", 0, false, vec![partition(&topic, 0, lag, 1.0, "exact")], Vec::new())
        };
        let mut published = PublishedSeries::default();
        let snapshot =
            LagSnapshot { groups: vec![group("g1", 3), group("g2", 4), group("g3", 5)], ..Default::default() };
        published.publish(&metrics, &snapshot, true);
        let text = scrape(&metrics);
        assert!(text.contains("pipewarden_consumergroup_lag_messages{group=\"g1\",topic=\"t\"} 3"), "{text}");
        assert!(text.contains("pipewarden_consumergroup_lag_messages{group=\"__overflow__\",topic=\"t\"} 9"), "{text}");
        assert!(text.contains("pipewarden_consumergroup_status{group=\"g1\",status=\"lagging\"} 1"), "{text}");
        assert!(text.contains("pipewarden_consumergroup_status{group=\"g1\",status=\"ok\"} 0"), "{text}");

        let snapshot = LagSnapshot { groups: vec![group("g1", 0)], ..Default::default() };
        published.publish(&metrics, &snapshot, true);
        let text = scrape(&metrics);
        assert!(text.contains("pipewarden_consumergroup_lag_messages{group=\"g1\",topic=\"t\"} 0"), "{text}");
        assert!(!text.contains("__overflow__\",topic"), "{text}");
        assert!(text.contains("pipewarden_consumergroup_status{group=\"g1\",status=\"ok\"} 1"), "{text}");
    }

    #[test]
    fn lag_topics_do_not_take_the_places_of_watched_topics() {
        // Cap 2: the lag monitor reports three topics of other groups first.
        let metrics = Metrics::new(2);
        let topics: Vec<Topic> = ["x", "y", "z"].into_iter().map(Arc::from).collect();
        let partitions = topics.iter().map(|t| partition(t, 0, 1, 1.0, "exact")).collect();
        let report = group_report("g", "stable", "classic", 1, false, partitions, Vec::new());
        let snapshot = LagSnapshot { groups: vec![report], ..Default::default() };
        PublishedSeries::default().publish(&metrics, &snapshot, false);
        let text = scrape(&metrics);
        assert!(text.contains("pipewarden_consumergroup_lag_messages{group=\"g\",topic=\"x\"} 1"), "{text}");
        assert!(text.contains("pipewarden_consumergroup_lag_messages{group=\"g\",topic=\"__overflow__\"} 1"), "{text}");
        // The watched topics still get their own label values.
        assert_eq!(metrics.topic_label("watched-1"), "watched-1");
        assert_eq!(metrics.topic_label("watched-2"), "watched-2");
        assert_eq!(metrics.topic_label("watched-3"), "__overflow__");
    }
}
