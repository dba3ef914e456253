//! The benchmark topic: check it, (re)create it, fill it with agent events.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use serde::Serialize;
use time::OffsetDateTime;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Admin and metadata clients for the broker.
pub struct Kafka {
    admin: AdminClient<DefaultClientContext>,
    meta: BaseConsumer,
    runtime: tokio::runtime::Runtime,
    bootstrap: String,
}

/// What the topic holds now.
struct TopicState {
    partitions: usize,
    records: i64,
    starts_at_zero: bool,
}

#[derive(Debug, Serialize)]
pub struct Preload {
    /// The topic already held exactly the expected records.
    pub skipped: bool,
    pub seconds: Option<f64>,
    pub events_per_second: Option<f64>,
    pub megabytes_per_second: Option<f64>,
}

impl Kafka {
    pub fn connect(bootstrap: &str) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        let admin = config.create().context("failed to create the kafka admin client")?;
        let meta: BaseConsumer = config.create().context("failed to create the kafka metadata client")?;
        meta.fetch_metadata(None, METADATA_TIMEOUT)
            .with_context(|| format!("no Kafka broker reachable at {bootstrap}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Self { admin, meta, runtime, bootstrap: bootstrap.to_string() })
    }

    fn topic_state(&self, topic: &str) -> anyhow::Result<Option<TopicState>> {
        let metadata = self.meta.fetch_metadata(None, METADATA_TIMEOUT)?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        let mut state = TopicState { partitions: found.partitions().len(), records: 0, starts_at_zero: true };
        for partition in found.partitions() {
            let (low, high) = self
                .meta
                .fetch_watermarks(topic, partition.id(), METADATA_TIMEOUT)
                .with_context(|| format!("watermarks of {topic}/{}", partition.id()))?;
            state.records += high;
            state.starts_at_zero &= low == 0;
        }
        Ok(Some(state))
    }

    fn delete_topic(&self, topic: &str) -> anyhow::Result<()> {
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = self.runtime.block_on(self.admin.delete_topics(&[topic], &opts))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => bail!("deleting topic {name}: {code}"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.topic_state(topic)?.is_some() {
            if Instant::now() > deadline {
                bail!("topic {topic} still listed 60 s after deletion");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    }

    fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let results = self.runtime.block_on(self.admin.create_topics([&new], &opts))?;
            match results.into_iter().next() {
                Some(Ok(_)) => break,
                // A deletion may still be in progress on the broker.
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Some(Err((name, code))) => bail!("creating topic {name}: {code}"),
                None => bail!("creating topic {topic}: no result"),
            }
        }
        // Wait until every partition has a leader.
        loop {
            let metadata = self.meta.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
            let ready = metadata.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            });
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("topic {topic} has no leaders 60 s after creation");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Deletes consumer groups, ignoring errors (the bench's groups are
    /// single-use; this only keeps the broker tidy).
    pub fn delete_groups(&self, groups: &[String]) {
        if groups.is_empty() {
            return;
        }
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let _ = self.runtime.block_on(self.admin.delete_groups(&names, &opts));
    }

    /// Makes sure `topic` holds exactly `records` benchmark events over
    /// `partitions` partitions, producing them if it does not.
    pub fn ensure_topic(&self, topic: &str, records: u64, partitions: i32, size: usize) -> anyhow::Result<Preload> {
        match self.topic_state(topic)? {
            Some(s) if s.partitions == partitions as usize && s.records == records as i64 && s.starts_at_zero => {
                println!(
                    "preload: topic {topic} already holds {records} records over {partitions} partitions; skipped"
                );
                return Ok(Preload {
                    skipped: true,
                    seconds: None,
                    events_per_second: None,
                    megabytes_per_second: None,
                });
            }
            Some(s) => {
                println!(
                    "preload: topic {topic} holds {} records over {} partitions{}; recreating it",
                    s.records,
                    s.partitions,
                    if s.starts_at_zero { "" } else { " (some deleted by retention)" }
                );
                self.delete_topic(topic)?;
            }
            None => {}
        }
        for attempt in 1..=2 {
            if attempt > 1 {
                self.delete_topic(topic)?;
            }
            self.create_topic(topic, partitions)?;
            let preload = produce(&self.bootstrap, topic, records, size)?;
            match self.topic_state(topic)? {
                Some(s) if s.records == records as i64 && s.starts_at_zero => return Ok(preload),
                Some(s) => eprintln!(
                    "preload: topic {topic} holds {} records instead of {records} (duplicates from producer retries?)",
                    s.records
                ),
                None => eprintln!("preload: topic {topic} vanished after the preload"),
            }
        }
        bail!("could not preload {topic} with exactly {records} records")
    }
}

/// Counts delivery failures.
#[derive(Default)]
struct DeliveryCounter {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((err, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap();
            first.get_or_insert_with(|| err.to_string());
        }
    }
}

fn produce(bootstrap: &str, topic: &str, records: u64, size: usize) -> anyhow::Result<Preload> {
    let producer: ThreadedProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "pipewarden-bench")
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("compression.type", "none")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097152")
        .create_with_context(DeliveryCounter::default())
        .context("failed to create the producer")?;

    let mut events = EventGen::new(0x7069_7065_7761_7264, size);
    let started = Instant::now();
    let mut bytes: u64 = 0;
    let step = (records / 10).max(1);
    for i in 0..records {
        events.next_event();
        bytes += events.payload.len() as u64;
        let headers = OwnedHeaders::new_with_capacity(1)
            .insert(Header { key: "traceparent", value: Some(events.traceparent.as_str()) });
        let mut record =
            BaseRecord::to(topic).key(events.trace_id.as_str()).payload(events.payload.as_str()).headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((err, _)) => bail!("producing record {i}: {err}"),
            }
        }
        if (i + 1) % step == 0 {
            eprint!("\rpreload: {:>3}%", (i + 1) * 100 / records);
        }
    }
    producer.flush(Duration::from_secs(300)).context("flushing the producer")?;
    eprintln!();
    let seconds = started.elapsed().as_secs_f64();
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = producer.context().first_error.lock().unwrap().clone();
        bail!("{failed} of {records} records were not delivered (first error: {})", first.unwrap_or_default());
    }
    let preload = Preload {
        skipped: false,
        seconds: Some(seconds),
        events_per_second: Some(records as f64 / seconds),
        megabytes_per_second: Some(bytes as f64 / seconds / 1e6),
    };
    println!(
        "preload: {records} records, {:.0} MB in {seconds:.1} s: {:.0} events/s, {:.1} MB/s",
        bytes as f64 / 1e6,
        records as f64 / seconds,
        bytes as f64 / seconds / 1e6
    );
    Ok(preload)
}

/// Event types of two simulated pipelines, each with its producing agent.
const FLOWS: &[&[(&str, &str)]] = &[
    &[
        ("support.ticket.created", "intake-agent"),
        ("support.ticket.classified", "triage-agent"),
        ("support.reply.drafted", "responder-agent"),
        ("support.reply.reviewed", "qa-agent"),
    ],
    &[
        ("document.received", "intake-agent"),
        ("document.extracted", "extraction-agent"),
        ("document.summarized", "summarizer-agent"),
    ],
];

const MODELS: &[&str] = &["gpt-4o-mini", "claude-sonnet-4", "llama-3.1-70b-instruct"];

/// ASCII filler without characters that JSON would escape.
const FILLER: &str = "Customer reports that the export job fails after the latest update. \
    The agent checked the account settings, the recent invoices and the integration logs, \
    then proposed a workaround and escalated the root cause to the platform team for review. \
    Summary of the attached document: quarterly figures, contract terms, renewal dates and \
    the list of open action items with owners and due dates. ";

/// A trace in progress: its ID, pipeline and next step.
struct Trace {
    id: String,
    flow: usize,
    step: usize,
    reference: u32,
}

/// Generates realistic agent events, many traces interleaved, each trace
/// walking through its pipeline's event types in order.
struct EventGen {
    rng: SmallRng,
    size: usize,
    traces: Vec<Trace>,
    trace_id: String,
    traceparent: String,
    payload: String,
}

impl EventGen {
    fn new(seed: u64, size: usize) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let traces = (0..64).map(|_| new_trace(&mut rng)).collect();
        Self {
            rng,
            size,
            traces,
            trace_id: String::new(),
            traceparent: String::new(),
            payload: String::with_capacity(size + 64),
        }
    }

    /// Fills `trace_id`, `traceparent` and `payload` with the next event.
    fn next_event(&mut self) {
        let rng = &mut self.rng;
        let slot = rng.random_range(0..self.traces.len());
        let trace = &mut self.traces[slot];
        let (event_type, producer) = FLOWS[trace.flow][trace.step];
        let step = trace.step;
        let reference = trace.reference;
        self.trace_id.clear();
        self.trace_id.push_str(&trace.id);
        trace.step += 1;
        if trace.step == FLOWS[trace.flow].len() {
            self.traces[slot] = new_trace(rng);
        }

        self.traceparent.clear();
        let _ = write!(self.traceparent, "00-{}-{:016x}-01", self.trace_id, rng.random::<u64>() | 1);

        let uuid: u128 = rng.random();
        let created_at = rfc3339_ms(OffsetDateTime::now_utc());
        let model = MODELS[rng.random_range(0..MODELS.len())];
        let input_tokens = rng.random_range(200..4000u32);
        let output_tokens = rng.random_range(20..800u32);
        let p = &mut self.payload;
        p.clear();
        let _ = write!(
            p,
            r#"{{"event_type":"{event_type}","trace_id":"{}","event_id":"{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}","created_at":"{created_at}","schema_version":"1.0","producer":"{producer}","llm":{{"model":"{model}","input_tokens":{input_tokens},"output_tokens":{output_tokens}}},"data":{{"reference":"REF-{reference:08}","step":{step},"text":""#,
            self.trace_id,
            (uuid >> 96) as u32,
            (uuid >> 80) as u16,
            (uuid >> 64) as u16 & 0x0fff,
            ((uuid >> 48) as u16 & 0x3fff) | 0x8000,
            uuid as u64 & 0xffff_ffff_ffff,
        );
        const TAIL: &str = r#""}}"#;
        let filler = self.size.saturating_sub(p.len() + TAIL.len());
        let mut offset = rng.random_range(0..FILLER.len());
        let mut left = filler;
        while left > 0 {
            let take = left.min(FILLER.len() - offset);
            p.push_str(&FILLER[offset..offset + take]);
            left -= take;
            offset = 0;
        }
        p.push_str(TAIL);
    }
}

fn new_trace(rng: &mut SmallRng) -> Trace {
    Trace {
        id: format!("{:032x}", rng.random::<u128>() | 1),
        flow: rng.random_range(0..FLOWS.len()),
        step: 0,
        reference: rng.random_range(0..100_000_000),
    }
}

/// RFC 3339 UTC with milliseconds, e.g. 2026-01-31T12:00:00.123Z.
fn rfc3339_ms(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_json_of_the_target_size() {
        let mut events = EventGen::new(1, 500);
        for _ in 0..1000 {
            events.next_event();
            assert_eq!(events.payload.len(), 500, "{}", events.payload);
            let v: serde_json::Value = serde_json::from_str(&events.payload).unwrap();
            assert_eq!(v["trace_id"].as_str().unwrap(), events.trace_id);
            assert_eq!(events.trace_id.len(), 32);
            assert!(events.traceparent.contains(&events.trace_id));
            assert_eq!(v["created_at"].as_str().unwrap().len(), 24);
        }
    }
}
