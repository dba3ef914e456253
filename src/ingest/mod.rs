//! Ingest: the Kafka consumer loop.
//!
//! A librdkafka `BaseConsumer` is polled on a dedicated OS thread, not on
//! the async runtime: the per-record work is synchronous and short, and a
//! blocking poll loop has no per-record task wake-up. For each record the
//! loop calls the observe stage and then stores the record's offset; the
//! stored offsets are committed by librdkafka every
//! `kafka.commit_interval_ms`, before partitions are revoked, and once more
//! at shutdown. An offset is therefore never committed before its record's
//! outcome is complete (at-least-once).
//!
//! The subscription is an explicit topic list kept up to date by
//! [`topics::TopicFilter`] (see there for why not a librdkafka regex).
//!
//! Rebalances arrive through [`IngestContext`], which logs and counts them,
//! keeps `pipewarden_assigned_partitions` current, commits stored offsets
//! before a revocation and flips the readiness latch on the first
//! assignment.

pub mod offsets;
pub mod topics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::decode::Headers;
use crate::metrics::{CommitResult, ConsumerErrorKind, Metrics, RebalanceKind};
use crate::observe::{Observer, Record};
use topics::TopicFilter;

/// How long one poll waits for a record; bounds how quickly the loop sees a
/// shutdown request and a due topic refresh.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// How long a metadata request for the topic list may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// How soon a failed topic listing is retried.
const METADATA_RETRY: Duration = Duration::from_secs(1);

/// Shared health state, read by `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once the group coordinator has given this instance an assignment.
    assigned: AtomicBool,
    /// Set when shutdown starts, so load balancers stop sending traffic.
    stopping: AtomicBool,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.assigned.load(Ordering::Acquire) && !self.stopping.load(Ordering::Acquire)
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

/// Consumer callbacks: logging, errors, rebalances, commits.
pub struct IngestContext {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl ClientContext for IngestContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.record_consumer_error(ConsumerErrorKind::client);
        warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                self.metrics.record_rebalance(RebalanceKind::revoke);
                info!(partitions = partitions.count(), "partitions revoked");
                // Commit what was processed so the next owner does not
                // re-read it (at-least-once allows it, but it costs).
                commit(consumer, &self.metrics, "revoke");
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(err) => {
                self.metrics.record_rebalance(RebalanceKind::error);
                warn!(error = %err, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.metrics.record_rebalance(RebalanceKind::assign);
            info!(partitions = partitions.count(), "partitions assigned");
            self.health.assigned.store(true, Ordering::Release);
        }
        if let Ok(assignment) = consumer.assignment() {
            self.metrics.assigned_partitions.set(assignment.count() as i64);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.metrics.record_commit(CommitResult::success),
            // Nothing new was stored since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                self.metrics.record_commit(CommitResult::failure);
                self.metrics.record_consumer_error(ConsumerErrorKind::commit);
                warn!(error = %err, "offset commit failed");
            }
        }
    }
}

/// Synchronous commit of the stored offsets; the commit callback counts it.
fn commit(consumer: &BaseConsumer<IngestContext>, metrics: &Metrics, when: &'static str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => debug!(when, "offsets committed"),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => {
            metrics.record_consumer_error(ConsumerErrorKind::commit);
            warn!(when, error = %err, "offset commit failed");
        }
    }
}

/// rdkafka headers seen through the decode stage's [`Headers`] trait.
/// librdkafka parses a record's headers into a list on first access, so
/// they are only touched when an envelope source actually needs a header.
struct KafkaHeaders<'a>(&'a BorrowedMessage<'a>);

impl Headers for KafkaHeaders<'_> {
    fn last(&self, name: &str) -> Option<&[u8]> {
        let headers = self.0.headers()?;
        (0..headers.count()).rev().map(|i| headers.get(i)).find(|h| h.key == name).and_then(|h| h.value)
    }
}

/// The consumer and everything the loop needs; built on the caller's thread
/// so configuration errors surface at start-up, then moved to its own thread.
pub struct Ingest {
    consumer: BaseConsumer<IngestContext>,
    filter: TopicFilter,
    observer: Observer,
    metrics: Arc<Metrics>,
    refresh_interval: Duration,
    subscription: Vec<String>,
}

impl Ingest {
    pub fn new(config: &Config, metrics: Arc<Metrics>, health: Arc<Health>) -> anyhow::Result<Self> {
        let mut client_config = ClientConfig::new();
        for (key, value) in config.consumer_properties() {
            client_config.set(key, value);
        }
        let context = IngestContext { metrics: metrics.clone(), health };
        let consumer: BaseConsumer<IngestContext> =
            client_config.create_with_context(context).context("failed to create the kafka consumer")?;
        let observer = Observer::new(config, metrics.clone()).context("failed to build the envelope extractor")?;
        Ok(Self {
            consumer,
            filter: TopicFilter::new(config.topics.clone()),
            observer,
            metrics,
            refresh_interval: config.topics.refresh_interval,
            subscription: Vec::new(),
        })
    }

    /// Runs until `stop` is set: poll, observe, store offset. Then commits
    /// the stored offsets and closes the consumer (leaving the group).
    pub fn run(mut self, stop: &AtomicBool) {
        let mut next_refresh = Instant::now();
        let mut records: u64 = 0;
        while !stop.load(Ordering::Acquire) {
            if Instant::now() >= next_refresh {
                let ok = self.refresh_subscription();
                next_refresh = Instant::now() + if ok { self.refresh_interval } else { METADATA_RETRY };
            }
            match self.consumer.poll(POLL_TIMEOUT) {
                None => {}
                Some(Ok(message)) => {
                    let started = Instant::now();
                    let headers = KafkaHeaders(&message);
                    let record = Record {
                        topic: message.topic(),
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp_ms: message.timestamp().to_millis(),
                        payload: message.payload(),
                        headers: &headers,
                    };
                    self.observer.handle(&record, now_us());
                    self.metrics.processing.observe(started.elapsed().as_secs_f64());
                    // The outcome is complete: only now may the offset be committed.
                    if let Err(err) = self.consumer.store_offset_from_message(&message) {
                        self.metrics.record_consumer_error(ConsumerErrorKind::offset_store);
                        warn!(topic = message.topic(), partition = message.partition(), error = %err, "offset store failed");
                    }
                    records += 1;
                }
                Some(Err(err)) => {
                    self.metrics.record_consumer_error(ConsumerErrorKind::consume);
                    warn!(error = %err, "consume error");
                }
            }
        }
        info!(records, "ingest stopping: committing offsets");
        commit(&self.consumer, &self.metrics, "shutdown");
        // Dropping the consumer closes it: it leaves the group so its
        // partitions move to other replicas at once.
        drop(self.consumer);
        info!("consumer closed");
    }

    /// Re-reads the topic list and resubscribes if the watched set changed.
    /// Returns false when the listing failed.
    fn refresh_subscription(&mut self) -> bool {
        let metadata = match self.consumer.fetch_metadata(None, METADATA_TIMEOUT) {
            Ok(metadata) => metadata,
            Err(err) => {
                self.metrics.record_consumer_error(ConsumerErrorKind::metadata);
                warn!(error = %err, "listing topics failed");
                return false;
            }
        };
        let watched = self.filter.select(metadata.topics().iter().map(|t| t.name()));
        if watched == self.subscription {
            return true;
        }
        self.metrics.watched_topics.set(watched.len() as i64);
        let result = if watched.is_empty() {
            self.consumer.unsubscribe();
            Ok(())
        } else {
            let names: Vec<&str> = watched.iter().map(String::as_str).collect();
            self.consumer.subscribe(&names)
        };
        match result {
            Ok(()) => {
                let added = watched.iter().filter(|t| !self.subscription.contains(t)).count();
                let removed = self.subscription.iter().filter(|t| !watched.contains(t)).count();
                info!(topics = watched.len(), added, removed, "subscription updated");
                self.subscription = watched;
                true
            }
            Err(err) => {
                self.metrics.record_consumer_error(ConsumerErrorKind::subscribe);
                error!(error = %err, "subscribe failed");
                false
            }
        }
    }
}

/// librdkafka's version and the features compiled into it (TLS, SASL
/// mechanisms, compression codecs), for the start-up banner.
pub fn librdkafka_build() -> (String, String) {
    let version = rdkafka::util::get_rdkafka_version().1;
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|config| config.get("builtin.features"))
        .unwrap_or_else(|_| "unknown".to_string());
    (version, features)
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_is_built_with_tls_sasl_and_compression() {
        let (version, features) = librdkafka_build();
        assert!(version.starts_with('2'), "librdkafka {version}");
        let features: Vec<&str> = features.split(',').collect();
        for needed in
            ["ssl", "sasl_plain", "sasl_scram", "sasl_gssapi", "sasl_oauthbearer", "zstd", "lz4", "snappy", "gzip"]
        {
            assert!(features.contains(&needed), "librdkafka lacks {needed}: {features:?}");
        }
    }
}
