//! Consumer group lag: in messages, in seconds, and a status per partition.
//!
//! ```text
//! ingest thread ── IndexWriter::record(topic, partition, offset, timestamp) ──► TimeIndex (Arc, shared)
//!                                                                                   │ lookups
//! lag thread (own OS thread, every lag.poll_interval_ms):                           ▼
//!   ListConsumerGroups → DescribeConsumerGroups + ListConsumerGroupOffsets (pipelined)
//!   → ListOffsets (high watermark; last stable offset for read_committed groups)
//!   → lag per partition (messages; seconds from the index, else interpolated)
//!   → status windows, stuck partitions → metrics + LagSnapshot (read by /api/v1/lag)
//! ```
//!
//! The poll runs on its own thread with its own librdkafka handle: a slow or
//! unreachable broker delays the next lag figures, never a scrape (scrapes
//! read gauges and the last published snapshot) and never ingest (the index
//! is written without waiting on the lag thread; see [`index`]).
//!
//! Which end offset: a group matched by `lag.groups.read_committed` is
//! measured to the partition's last stable offset (a read_committed consumer
//! cannot read past it, so records of open transactions are not its lag);
//! every other group to the high watermark. The broker does not tell which
//! isolation level a group's consumers use, hence the setting.
//!
//! Files: [`client`] (admin requests, over `ffi`), [`index`] (offset →
//! timestamp), [`interpolate`] (the fallback), [`status`] (sliding-window rules),
//! [`report`] (what one poll publishes), [`api`] (HTTP handlers).
//! docs/lag.md explains every figure.

pub mod api;
pub mod client;
mod ffi;
pub mod index;
pub mod interpolate;
mod keys;
pub mod report;
pub mod status;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use crate::config::{Config, LagConfig};
use crate::metrics::Metrics;
use client::{ClientError, GroupState, GroupType, Isolation, LagClient, Topic};
use index::{Lookup, TimeIndex};
use interpolate::{Estimate, HighWatermarkSamples};
pub use report::{GroupReport, LagSnapshot, PartitionReport, StuckPartition, TopicReport};
use status::{PartitionWindow, Sample};

type HashMap<K, V> = ahash::AHashMap<K, V>;

/// High-watermark samples kept per partition for interpolation. Idle runs
/// keep two samples, so 128 cover at least 21 min of a partition written at
/// every 10 s poll, and far longer for quieter ones; beyond that the lag is
/// reported as a lower bound (see `interpolate::Estimate::Before`).
const HIGH_WATERMARK_SAMPLES: usize = 128;

/// The snapshot the lag thread publishes and the HTTP handlers read. The
/// lock is held only to swap or clone an `Arc`.
#[derive(Debug, Default)]
pub struct LagShared {
    snapshot: Mutex<Arc<LagSnapshot>>,
}

impl LagShared {
    pub fn snapshot(&self) -> Arc<LagSnapshot> {
        self.snapshot.lock().expect("lag snapshot lock poisoned").clone()
    }

    fn publish(&self, snapshot: LagSnapshot) {
        *self.snapshot.lock().expect("lag snapshot lock poisoned") = Arc::new(snapshot);
    }
}

/// Wall clock in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One group as this poll sees it.
struct GroupView {
    group: String,
    state: GroupState,
    kind: GroupType,
    members: usize,
    read_committed: bool,
}

/// The lag monitor: its client, its per-partition memory, and where it
/// publishes.
pub struct LagMonitor {
    config: LagConfig,
    client: LagClient,
    index: Arc<TimeIndex>,
    shared: Arc<LagShared>,
    metrics: Arc<Metrics>,
    /// Status windows per (group, topic, partition); entries of partitions a
    /// group no longer has committed offsets for are dropped each poll.
    windows: HashMap<(Arc<str>, Topic, i32), PartitionWindow>,
    /// Interpolation samples per partition; dropped with the partition.
    samples: HashMap<(Topic, i32), HighWatermarkSamples>,
    keys: keys::KeyReader,
    published: report::PublishedSeries,
    /// The bootstrap servers, added to the clients again while every cycle
    /// fails (see `rebootstrap.rs`).
    rebootstrap: crate::rebootstrap::Rebootstrap,
}

impl LagMonitor {
    pub fn new(
        config: &Config,
        index: Arc<TimeIndex>,
        shared: Arc<LagShared>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClientError> {
        let lag = config.lag.clone();
        let properties = config.client_properties();
        let client = LagClient::new(&properties, lag.request_timeout, lag.max_in_flight_requests)?;
        Ok(Self {
            client,
            index,
            shared,
            metrics,
            windows: HashMap::default(),
            samples: HashMap::default(),
            keys: keys::KeyReader::new(properties),
            published: report::PublishedSeries::default(),
            rebootstrap: crate::rebootstrap::Rebootstrap::new(&config.kafka.bootstrap_servers),
            config: lag,
        })
    }

    /// Polls every `lag.poll_interval_ms` until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        info!(interval_ms = self.config.poll_interval.as_millis() as u64, "lag monitor started");
        while !stop.load(Ordering::Acquire) {
            let started = Instant::now();
            let result = self.poll_once(now_ms());
            if let Err(err) = &result {
                warn!(error = %err, "lag poll failed");
            }
            if let Some(bootstrap) = self.rebootstrap.due(result.is_ok(), Instant::now()) {
                warn!(servers = %bootstrap, "lag polls keep failing: adding the bootstrap servers to the clients again");
                self.client.add_brokers(bootstrap);
                self.keys.add_brokers(bootstrap);
            }
            let next = started + self.config.poll_interval;
            // Sleep in short slices so shutdown is not held up by a long interval.
            while !stop.load(Ordering::Acquire) && Instant::now() < next {
                std::thread::sleep(Duration::from_millis(100).min(next.saturating_duration_since(Instant::now())));
            }
        }
        info!("lag monitor stopped");
    }

    /// One lag cycle at wall-clock time `now_ms`: query the cluster, compute,
    /// publish. Returns how many groups it reported.
    pub fn poll_once(&mut self, now_ms: i64) -> Result<usize, ClientError> {
        let started = Instant::now();
        self.client.serve_events();
        let lag_metrics = &self.metrics.lag;
        let listing = self.client.list_groups().inspect_err(|_| lag_metrics.record_poll_error("list_groups"))?;
        let monitored: Vec<_> = listing.into_iter().filter(|g| self.config.monitors(&g.group)).collect();
        let describe: Vec<&str> =
            monitored.iter().filter(|g| g.state.may_have_members()).map(|g| g.group.as_str()).collect();
        let all: Vec<&str> = monitored.iter().map(|g| g.group.as_str()).collect();
        let round = self.client.group_round(&describe, &all).inspect_err(|_| {
            lag_metrics.record_poll_error("group_offsets");
        })?;
        for (group, err) in &round.failures {
            let kind = match err {
                ClientError::Request { what: "describe group" | "describe groups", .. } => "describe_group",
                _ => "group_offsets",
            };
            lag_metrics.record_poll_error(kind);
            debug!(group, error = %err, "lag request failed for a group");
        }

        let described: HashMap<&str, &client::GroupDescription> =
            round.descriptions.iter().map(|d| (d.group.as_str(), d)).collect();
        let views: HashMap<&str, GroupView> = monitored
            .iter()
            .map(|listing| {
                let description = described.get(listing.group.as_str());
                let view = GroupView {
                    group: listing.group.clone(),
                    state: description.map_or(listing.state, |d| d.state),
                    kind: description.map_or(listing.kind, |d| d.kind),
                    members: description.map_or(0, |d| d.members),
                    read_committed: self.config.is_read_committed(&listing.group),
                };
                (listing.group.as_str(), view)
            })
            .collect();

        let mut partitions: HashSet<(Topic, i32)> = HashSet::new();
        for group in &round.offsets {
            partitions.extend(group.offsets.iter().map(|(t, p, _)| (t.clone(), *p)));
        }
        let partitions: Vec<(Topic, i32)> = partitions.into_iter().collect();
        let high_watermarks = self
            .client
            .end_offsets(&partitions, Isolation::ReadUncommitted)
            .inspect_err(|_| lag_metrics.record_poll_error("end_offsets"))?;
        let last_stable = if views.values().any(|v| v.read_committed) {
            self.client
                .end_offsets(&partitions, Isolation::ReadCommitted)
                .inspect_err(|_| lag_metrics.record_poll_error("end_offsets"))?
        } else {
            HashMap::default()
        };
        for (tp, high_watermark) in &high_watermarks {
            self.samples
                .entry(tp.clone())
                .or_insert_with(|| HighWatermarkSamples::new(HIGH_WATERMARK_SAMPLES))
                .push(*high_watermark, now_ms);
        }
        self.samples.retain(|tp, _| high_watermarks.contains_key(tp));

        let window_ms = self.config.status_window.as_millis() as i64;
        let mut seen_windows: HashSet<(Arc<str>, Topic, i32)> = HashSet::new();
        let mut reports = Vec::with_capacity(round.offsets.len());
        let mut stuck_wanted = Vec::new();
        for group_offsets in &round.offsets {
            let Some(view) = views.get(group_offsets.group.as_str()) else { continue };
            let group_key: Arc<str> = Arc::from(view.group.as_str());
            let mut partition_reports = Vec::with_capacity(group_offsets.offsets.len());
            // Stuck candidates: frozen for a whole window with lag; they are
            // stuck only if another partition of the group progressed.
            let (mut progressing, mut frozen) = (false, Vec::new());
            for (topic, partition, committed) in &group_offsets.offsets {
                let tp = (topic.clone(), *partition);
                let Some(&high_watermark) = high_watermarks.get(&tp) else { continue };
                let last_stable_offset = last_stable.get(&tp).copied();
                let end =
                    if view.read_committed { last_stable_offset.unwrap_or(high_watermark) } else { high_watermark };
                let lag_messages = (end - committed).max(0);
                let (lag_seconds, method, error_bound_ms) = self.lag_seconds(&tp, *committed, lag_messages, now_ms);
                let key = (group_key.clone(), topic.clone(), *partition);
                let window = self.windows.entry(key.clone()).or_default();
                window.push(Sample { at_ms: now_ms, committed: *committed, lag: lag_messages }, window_ms);
                let status = window.evaluate(window_ms, view.members > 0);
                let frozen_for_ms = window.frozen_for_ms();
                progressing |= window.progressed_within(window_ms);
                if lag_messages > 0 && frozen_for_ms >= window_ms {
                    frozen.push((topic.clone(), *partition, *committed, frozen_for_ms));
                }
                seen_windows.insert(key);
                partition_reports.push(PartitionReport {
                    topic: topic.clone(),
                    partition: *partition,
                    committed: *committed,
                    high_watermark,
                    last_stable_offset,
                    lag_messages,
                    lag_seconds,
                    method,
                    error_bound_ms,
                    status,
                    frozen_for_ms,
                });
            }
            partition_reports.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            let stuck = if progressing { frozen } else { Vec::new() };
            stuck_wanted.extend(stuck.iter().map(|(topic, partition, offset, _)| (topic.clone(), *partition, *offset)));
            reports.push((view, partition_reports, stuck));
        }
        self.windows.retain(|key, _| seen_windows.contains(key));
        self.keys.forget_except(&stuck_wanted);

        let mut groups = Vec::with_capacity(reports.len());
        for (view, partitions, stuck) in reports {
            let stuck = stuck
                .into_iter()
                .map(|(topic, partition, offset, frozen_for_ms)| {
                    let quarantined = self
                        .index
                        .partition_of(&(topic.clone(), partition))
                        .is_some_and(|index| index.was_quarantined(offset));
                    let key = self.keys.key_at(&topic, partition, offset);
                    StuckPartition {
                        topic,
                        partition,
                        offset,
                        key: key.key,
                        key_offset: key.offset,
                        quarantined,
                        frozen_for_ms,
                    }
                })
                .collect();
            groups.push(report::group_report(
                &view.group,
                view.state.as_str(),
                view.kind.as_str(),
                view.members,
                view.read_committed,
                partitions,
                stuck,
            ));
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        let count = groups.len();
        let elapsed = started.elapsed();
        let (index_partitions, index_points) = self.index.stats();
        let snapshot = LagSnapshot {
            polled_at_ms: now_ms,
            poll_duration_ms: elapsed.as_secs_f64() * 1e3,
            groups,
            failed_groups: round.failures.len(),
        };
        self.published.publish(&self.metrics, &snapshot, self.config.partition_metrics);
        let lag_metrics = &self.metrics.lag;
        lag_metrics.monitored_groups.set(count as i64);
        lag_metrics.index_partitions.set(index_partitions as i64);
        lag_metrics.index_points.set(index_points as i64);
        lag_metrics.poll_duration.observe(elapsed.as_secs_f64());
        debug!(groups = count, partitions = partitions.len(), elapsed_ms = elapsed.as_millis() as u64, "lag poll");
        self.shared.publish(snapshot);
        Ok(count)
    }

    /// Lag in seconds of one partition: (seconds, method, error bound in ms).
    fn lag_seconds(
        &self,
        tp: &(Topic, i32),
        committed: i64,
        lag_messages: i64,
        now_ms: i64,
    ) -> (f64, &'static str, i64) {
        let indexed = self.index.partition_of(tp);
        let age = |timestamp_ms: i64| (now_ms - timestamp_ms).max(0) as f64 / 1e3;
        if lag_messages == 0 {
            // Caught up: 0 whatever the method; the label stays that of the
            // partition's source so a series does not flip as lag comes and goes.
            return (0.0, if indexed.is_some() { "exact" } else { "interpolated" }, 0);
        }
        if let Some(index) = &indexed {
            if let Lookup::Found { timestamp_ms, error_bound_ms } = index.lookup(committed) {
                return (age(timestamp_ms), "exact", error_bound_ms);
            }
        }
        match self.samples.get(tp).map_or(Estimate::Unknown, |s| s.estimate(committed)) {
            Estimate::Between { timestamp_ms, error_bound_ms } => (age(timestamp_ms), "interpolated", error_bound_ms),
            // A lower bound; the error is unknown, reported as -1.
            Estimate::Before { timestamp_ms } => (age(timestamp_ms), "interpolated", -1),
            Estimate::Unknown => (0.0, "interpolated", -1),
        }
    }
}
