//! Kafka plumbing for the simulator: topic and group naming, topic creation,
//! producer/consumer configuration, record headers, sending, and consumer-group
//! lag measurement (used for the summary line and to detect a drained pipeline).

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::event::traceparent;
use super::topology::Agent;

/// How long a blocking metadata/offset request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `<prefix><name>`.
pub fn topic_name(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

/// Consumer group of an agent: `<prefix>sim.<agent-name>`.
pub fn group_id(prefix: &str, agent: Agent) -> String {
    format!("{prefix}sim.{}", agent.name())
}

/// Creates the topics (ignoring those that already exist).
pub async fn create_topics(bootstrap: &str, topics: &[String], partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "pipewarden-simulate-admin")
        .create()
        .context("creating kafka admin client")?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let results = admin.create_topics(&new, &opts).await.with_context(|| format!("creating topics on {bootstrap}"))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, partitions, "created topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic already exists")
            }
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// One producer shared by every simulated agent.
pub fn producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "pipewarden-simulate")
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .set("queue.buffering.max.messages", "100000")
        .create()
        .context("creating kafka producer")
}

/// Consumer of one agent. Offsets are stored explicitly after the agent has
/// produced its output (at-least-once) and auto-committed every second.
pub fn consumer(bootstrap: &str, group: &str) -> anyhow::Result<StreamConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("client.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        // Keep the prefetch buffer small: a slow agent should leave its lag
        // on the broker, not in memory.
        .set("queued.max.messages.kbytes", "4096")
        .create()
        .with_context(|| format!("creating kafka consumer for group {group}"))
}

/// Headers of a good event: `traceparent` and `content-type`.
pub fn event_headers(trace_id: &str, span_id: &str) -> OwnedHeaders {
    let tp = traceparent(trace_id, span_id);
    json_content_type().insert(Header { key: "traceparent", value: Some(tp.as_str()) })
}

/// Just `content-type: application/json`.
pub fn json_content_type() -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(2).insert(Header { key: "content-type", value: Some("application/json") })
}

/// Original headers of a record plus the `dlq.*` headers.
pub fn dlq_headers(
    original: Option<&OwnedHeaders>,
    reason: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    agent: Agent,
) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(8);
    if let Some(orig) = original {
        for header in orig.iter() {
            if !header.key.starts_with("dlq.") {
                h = h.insert(Header { key: header.key, value: header.value });
            }
        }
    }
    let partition = partition.to_string();
    let offset = offset.to_string();
    h.insert(Header { key: "dlq.reason", value: Some(reason) })
        .insert(Header { key: "dlq.original.topic", value: Some(topic) })
        .insert(Header { key: "dlq.original.partition", value: Some(partition.as_str()) })
        .insert(Header { key: "dlq.original.offset", value: Some(offset.as_str()) })
        .insert(Header { key: "dlq.agent", value: Some(agent.name()) })
}

/// Produces one record and waits for its delivery report.
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: OwnedHeaders,
) -> Result<(), KafkaError> {
    let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
    if let Some(k) = key {
        record = record.key(k);
    }
    producer.send(record, Timeout::After(Duration::from_secs(10))).await.map(|_| ()).map_err(|(e, _)| e)
}

/// A client that only reads metadata and watermarks. Agents' own consumers
/// are unsuitable: their pending long-poll fetches delay such requests by up
/// to `fetch.wait.max.ms` each.
pub fn observer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "pipewarden-simulate-observer")
        .set("group.id", "pipewarden-simulate-observer")
        .create()
        .context("creating kafka observer client")
}

/// Total lag of the consumer's group on `topic`: sum over partitions of
/// high watermark minus committed offset (or the low watermark when nothing
/// was committed yet). Blocking; call from `spawn_blocking`.
pub fn group_lag(observer: &BaseConsumer, consumer: &StreamConsumer, topic: &str) -> anyhow::Result<i64> {
    let metadata = observer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} has no partitions yet");
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for p in &partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(tpl, REQUEST_TIMEOUT)?;
    let mut lag = 0;
    for p in partitions {
        let (low, high) = observer.fetch_watermarks(topic, p, REQUEST_TIMEOUT)?;
        let done = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => low,
        };
        lag += (high - done).max(0);
    }
    Ok(lag)
}
