//! Consumer callbacks: librdkafka logs, client errors, rebalances, commits.
//!
//! They run on the ingest thread, inside `poll()`. Rebalances are logged
//! and counted; before partitions are revoked the stored offsets are
//! committed, and the revoked partitions are handed to the loop so it
//! forgets their pending state; assigned partitions are forwarded to the
//! loop's record queue before they are assigned (see `records.rs`); the
//! first assignment makes `/readyz` ready.
//! See <https://docs.confluent.io/platform/current/clients/librdkafka/html/classRdKafka_1_1RebalanceCb.html>.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::access::{self, Denied};
use super::records::Forwarding;
use super::transactions::Transactions;
use super::Health;
use crate::metrics::{CommitResult, ConsumerErrorKind, Metrics, RebalanceKind};

pub struct IngestContext {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    /// Assigned partitions are forwarded to the loop's record queue.
    forwarding: Arc<Forwarding>,
    /// Exactly-once mode: offsets are committed through the transaction.
    transactions: Option<Arc<Transactions>>,
}

impl IngestContext {
    pub fn new(
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        revoked: Arc<Mutex<Vec<(String, i32)>>>,
        forwarding: Arc<Forwarding>,
        transactions: Option<Arc<Transactions>>,
    ) -> Self {
        Self { metrics, health, revoked, forwarding, transactions }
    }
}

impl ClientContext for IngestContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => info!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.record_consumer_error(ConsumerErrorKind::client);
        // librdkafka's own verdict that no broker answers; the loop's next
        // successful topic listing clears it (see `Ingest::refresh_subscription`).
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.set_kafka_down(true);
            self.metrics.kafka_up.set(0);
        }
        match Denied::of_consumer_error(&error) {
            Some(kind) => access::report(&self.health, &self.metrics, kind, &reason),
            None => warn!(error = %error, reason, "kafka client error"),
        }
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
                match &self.transactions {
                    // Commits, or aborts if copies are still unacknowledged
                    // (the loop then rewinds what it keeps).
                    Some(transactions) => {
                        transactions.commit(consumer, "revoke");
                    }
                    None => commit(consumer, &self.metrics, "revoke"),
                }
                let mut revoked = self.revoked.lock().expect("revoked list lock poisoned");
                revoked.extend(partitions.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
            }
            // Before librdkafka starts fetching them, so none of their
            // records reaches the consumer's own queue.
            Rebalance::Assign(partitions) => {
                self.forwarding.forward(consumer, partitions);
            }
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
            // The group coordinator accepted this member: login and group ACL work.
            self.health.access.allow(&[Denied::authentication, Denied::group_read]);
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
pub fn commit(consumer: &BaseConsumer<IngestContext>, metrics: &Metrics, when: &'static str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => debug!(when, "offsets committed"),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => {
            metrics.record_consumer_error(ConsumerErrorKind::commit);
            warn!(when, error = %err, "offset commit failed");
        }
    }
}
