//! Quarantine: re-publish poison records, with their origin and reason, to
//! a quarantine topic, and report each acknowledgement back to the ingest
//! loop so the record's offset is stored only once its copy is durable.
//!
//! In: an invalid record (borrowed from the consumer) and its verdict.
//! Out: an [`Ack`] per record on a bounded channel, sent from librdkafka's
//! delivery callback.
//!
//! The copy keeps the original key, value bytes, headers and timestamp, goes
//! to the same partition number when the quarantine topic has it, and adds
//! the headers listed in `docs/governance.md` (origin coordinates, reason,
//! bounded error text, schema ID, pipewarden version, observed-at time;
//! optionally Kafka Connect's `__connect.errors.*` headers). The producer is
//! idempotent with `acks=all`, so a retried send never duplicates a copy and
//! an acknowledged copy survives a broker failure. Downstream readers can
//! still see a copy twice after a pipewarden crash (at-least-once) and drop
//! duplicates by the origin headers.

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use time::format_description::well_known::Rfc3339;
use tracing::{info, warn};

use crate::config::{Config, QuarantineConfig};
use crate::ingest::access::Denied;

/// The client settings every pipewarden producer (quarantine copies,
/// observations, budget alerts) starts from: the cluster's connection
/// properties, idempotent writes acknowledged by all in-sync replicas (no
/// record lost or written twice by a retry, each partition kept in order),
/// and a short linger so records batch without waiting long.
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut client_config = ClientConfig::new();
    for (key, value) in config.client_properties() {
        client_config.set(key, value);
    }
    client_config.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5");
    client_config
}

/// Header names added to every quarantined record.
pub mod header {
    pub const ORIGIN_TOPIC: &str = "pipewarden.origin.topic";
    pub const ORIGIN_PARTITION: &str = "pipewarden.origin.partition";
    pub const ORIGIN_OFFSET: &str = "pipewarden.origin.offset";
    pub const ORIGIN_TIMESTAMP: &str = "pipewarden.origin.timestamp";
    pub const REASON: &str = "pipewarden.reason";
    pub const ERROR: &str = "pipewarden.error";
    pub const SCHEMA_ID: &str = "pipewarden.schema.id";
    pub const VERSION: &str = "pipewarden.version";
    pub const OBSERVED_AT: &str = "pipewarden.observed.at";
}

/// The outcome of one quarantine write, for the ingest loop.
#[derive(Debug)]
pub struct Ack {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The bounded reason code of the copy (for dead-letter accounting).
    pub reason: &'static str,
    /// `Err` carries librdkafka's error (for logs only, never a label).
    pub result: Result<(), String>,
    /// Set when the write failed for a missing ACL or a refused login.
    pub denied: Option<Denied>,
}

/// Identifies the source record of a copy in the delivery callback.
pub struct Ticket {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    reason: &'static str,
}

pub struct QuarantineContext {
    acks: SyncSender<Ack>,
}

impl ClientContext for QuarantineContext {}

impl ProducerContext for QuarantineContext {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        let denied = result
            .as_ref()
            .err()
            .and_then(|(err, _)| err.rdkafka_error_code())
            .and_then(|code| Denied::of_quarantine_error(code, false));
        let result = result.as_ref().map(|_| ()).map_err(|(err, _)| err.to_string());
        // Never blocks: the ingest loop keeps fewer records in flight than
        // the channel holds (see `Quarantine::capacity`).
        let _ = self.acks.send(Ack {
            topic: ticket.topic,
            partition: ticket.partition,
            offset: ticket.offset,
            reason: ticket.reason,
            result,
            denied,
        });
    }
}

/// What to write about a poison record.
pub struct Poison<'a> {
    /// Bounded reason code (a label value elsewhere).
    pub reason: &'static str,
    /// Human-readable error; cut to `quarantine.max_error_bytes`.
    pub error: &'a str,
    pub schema_id: Option<u32>,
}

/// The quarantine producer; shared with the transaction handling in
/// exactly-once mode.
pub type QuarantineProducer = ThreadedProducer<QuarantineContext>;

pub struct Quarantine {
    producer: Arc<QuarantineProducer>,
    admin: AdminClient<DefaultClientContext>,
    /// Drives the admin client's topic creation; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    settings: QuarantineConfig,
    /// Partition count of each quarantine topic known to exist.
    topics: HashMap<String, i32>,
    capacity: usize,
    /// Why the last `send` failed, when the cluster refused it (see `take_denied`).
    denied: Option<Denied>,
}

impl Quarantine {
    /// Builds the producer; acknowledgements arrive on the returned receiver.
    pub fn new(config: &Config) -> anyhow::Result<(Self, Receiver<Ack>)> {
        let settings = config.quarantine.clone();
        let capacity = settings.max_in_flight;
        let (acks, receiver) = sync_channel(capacity);
        let mut client_config = producer_config(config);
        client_config.set("message.timeout.ms", settings.write_timeout.as_millis().to_string());
        if let Some(id) = &settings.transactional_id {
            // The broker aborts a transaction left open longer than this (a
            // replica that died and never came back under the same id).
            client_config.set("transactional.id", id).set("transaction.timeout.ms", "60000");
        }
        let producer: QuarantineProducer = client_config
            .create_with_context(QuarantineContext { acks })
            .context("failed to create the quarantine producer")?;
        let admin = client_config.create().context("failed to create the admin client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the admin runtime")?;
        let producer = Arc::new(producer);
        Ok((
            Self { producer, admin, runtime: Some(runtime), settings, topics: HashMap::new(), capacity, denied: None },
            receiver,
        ))
    }

    /// Adds the bootstrap servers to the producer and the admin client again
    /// (see `rebootstrap.rs`).
    pub fn add_brokers(&self, bootstrap: &crate::rebootstrap::Bootstrap) {
        bootstrap.add_to(self.producer.client());
        bootstrap.add_to(self.admin.inner());
    }

    /// The producer's fatal error, if it had one: then every later write
    /// fails (an idempotent producer's sequence could not be recovered).
    pub fn fatal_error(&self) -> Option<(rdkafka::types::RDKafkaErrorCode, String)> {
        self.producer.client().fatal_error()
    }

    pub fn producer(&self) -> Arc<QuarantineProducer> {
        self.producer.clone()
    }

    /// Most copies that may wait for acknowledgement at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sends the copy of `message`. An `Err` means it could not even be
    /// queued (the caller blocks the partition and retries later).
    pub fn send(&mut self, message: &impl Message, poison: &Poison<'_>, source_partitions: i32) -> Result<(), String> {
        let topic = quarantine_topic_for(&self.settings.topic_template, message.topic());
        let partitions = self.ensure_topic(&topic, source_partitions)?;
        let headers = self.headers(message, poison);
        let ticket = Box::new(Ticket {
            topic: Arc::from(message.topic()),
            partition: message.partition(),
            offset: message.offset(),
            reason: poison.reason,
        });
        let mut record =
            BaseRecord::with_opaque_to(&topic, ticket).headers(headers).partition(message.partition() % partitions);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        if let Some(timestamp) = message.timestamp().to_millis() {
            record = record.timestamp(timestamp);
        }
        self.producer.send::<[u8], [u8]>(record).map_err(|(err, _)| err.to_string())
    }

    fn headers(&self, message: &impl Message, poison: &Poison<'_>) -> OwnedHeaders {
        let original = message.headers();
        let mut headers = OwnedHeaders::new_with_capacity(original.map_or(0, |h| h.count()) + 16);
        for header in original.iter().flat_map(|h| h.iter()) {
            headers = headers.insert(header);
        }
        let error = crate::metrics::truncate_label(poison.error, self.settings.max_error_bytes);
        let observed_at = time::OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
        let mut add = |key: &str, value: &str| {
            headers = std::mem::take(&mut headers).insert(Header { key, value: Some(value) });
        };
        add(header::ORIGIN_TOPIC, message.topic());
        add(header::ORIGIN_PARTITION, &message.partition().to_string());
        add(header::ORIGIN_OFFSET, &message.offset().to_string());
        if let Some(timestamp) = message.timestamp().to_millis() {
            add(header::ORIGIN_TIMESTAMP, &timestamp.to_string());
        }
        add(header::REASON, poison.reason);
        add(header::ERROR, error);
        if let Some(id) = poison.schema_id {
            add(header::SCHEMA_ID, &id.to_string());
        }
        add(header::VERSION, env!("CARGO_PKG_VERSION"));
        add(header::OBSERVED_AT, &observed_at);
        if self.settings.connect_headers {
            add("__connect.errors.topic", message.topic());
            add("__connect.errors.partition", &message.partition().to_string());
            add("__connect.errors.offset", &message.offset().to_string());
            add("__connect.errors.exception.class.name", &format!("pipewarden.{}", poison.reason));
            add("__connect.errors.exception.message", error);
        }
        headers
    }

    /// Partition count of `topic`, creating it (with the source's partition
    /// count) when missing and allowed. Blocks the caller: runs once per topic.
    fn ensure_topic(&mut self, topic: &str, source_partitions: i32) -> Result<i32, String> {
        if let Some(&partitions) = self.topics.get(topic) {
            return Ok(partitions);
        }
        let timeout = Duration::from_secs(10);
        // Listing all topics never triggers broker-side auto-creation.
        let existing = |admin: &AdminClient<DefaultClientContext>| -> Result<Option<i32>, String> {
            let metadata = admin.inner().fetch_metadata(None, timeout).map_err(|e| e.to_string())?;
            Ok(metadata.topics().iter().find(|t| t.name() == topic).map(|t| t.partitions().len() as i32))
        };
        let partitions = match existing(&self.admin)? {
            Some(partitions) if partitions > 0 => partitions,
            _ if self.settings.create_topics => {
                let new = NewTopic::new(topic, source_partitions.max(1), TopicReplication::Fixed(-1));
                let options = AdminOptions::new().operation_timeout(Some(timeout));
                let runtime = self.runtime.as_ref().expect("the admin runtime lives until drop");
                let results =
                    runtime.block_on(self.admin.create_topics([&new], &options)).map_err(|e| e.to_string())?;
                for result in results {
                    match result {
                        Ok(_) => info!(topic, partitions = source_partitions, "quarantine topic created"),
                        Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((_, code)) => {
                            self.denied = Denied::of_quarantine_error(code, true);
                            return Err(format!("cannot create quarantine topic {topic}: {code}"));
                        }
                    }
                }
                source_partitions.max(1)
            }
            _ => return Err(format!("quarantine topic {topic} does not exist and quarantine.create_topics is false")),
        };
        self.topics.insert(topic.to_string(), partitions);
        Ok(partitions)
    }

    /// The access problem behind the last failed `send`, if it was one.
    pub fn take_denied(&mut self) -> Option<Denied> {
        self.denied.take()
    }

    /// Waits up to `timeout` for every queued copy to be acknowledged.
    pub fn flush(&self, timeout: Duration) {
        if let Err(err) = self.producer.flush(timeout) {
            warn!(error = %err, in_flight = self.producer.in_flight_count(), "quarantine flush incomplete");
        }
    }
}

impl Drop for Quarantine {
    fn drop(&mut self) {
        // A failed start-up drops the stage inside the daemon's async
        // runtime, where a runtime may not be dropped the blocking way.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `{topic}` in the template is replaced by the source topic; a template
/// without it names one shared quarantine topic.
pub fn quarantine_topic_for(template: &str, topic: &str) -> String {
    template.replace("{topic}", topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_the_template() {
        assert_eq!(quarantine_topic_for("{topic}.quarantine", "orders"), "orders.quarantine");
        assert_eq!(quarantine_topic_for("quarantine.{topic}", "a.b"), "quarantine.a.b");
        assert_eq!(quarantine_topic_for("pipeline-quarantine", "orders"), "pipeline-quarantine");
    }
}
