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
            let (low, high) = self.watermarks(topic, partition.id())?;
            state.records += high;
            state.starts_at_zero &= low == 0;
        }
        Ok(Some(state))
    }

    /// A partition's watermarks. Right after the broker starts, its
    /// partitions may have no leader yet for a few seconds: retried for
    /// up to 60 s while the error says so.
    fn watermarks(&self, topic: &str, partition: i32) -> anyhow::Result<(i64, i64)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.meta.fetch_watermarks(topic, partition, METADATA_TIMEOUT) {
                Err(rdkafka::error::KafkaError::MetadataFetch(
                    RDKafkaErrorCode::NotLeaderForPartition | RDKafkaErrorCode::LeaderNotAvailable,
                )) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
                result => return result.with_context(|| format!("watermarks of {topic}/{partition}")),
            }
        }
    }

    pub fn delete_topic(&self, topic: &str) -> anyhow::Result<()> {
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

    pub fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
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

    /// Deletes many topics in one request and waits until the metadata lists
    /// none of them (watermarks are not read: they fail while a deletion is
    /// in progress).
    pub fn delete_topics(&self, topics: &[String]) -> anyhow::Result<()> {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in self.runtime.block_on(self.admin.delete_topics(&names, &opts))? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => bail!("deleting topic {name}: {code}"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let metadata = self.meta.fetch_metadata(None, METADATA_TIMEOUT)?;
            let left = metadata.topics().iter().filter(|t| names.contains(&t.name())).count();
            if left == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{left} topic(s) still listed 60 s after deletion");
            }
            std::thread::sleep(Duration::from_millis(250));
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
    pub fn ensure_topic(
        &self,
        topic: &str,
        records: u64,
        partitions: i32,
        size: usize,
        encoding: &Encoding,
    ) -> anyhow::Result<Preload> {
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
            let preload = produce(&self.bootstrap, topic, records, size, encoding)?;
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

/// How the events of a topic are serialized.
pub enum Encoding {
    /// Plain JSON, padded to the target size.
    Json,
    /// Confluent wire format: magic byte 0, the 4-byte big-endian schema
    /// ID, then the Avro binary body (padded to the target size in all).
    Avro { schema: apache_avro::Schema, id: u32 },
}

fn produce(bootstrap: &str, topic: &str, records: u64, size: usize, encoding: &Encoding) -> anyhow::Result<Preload> {
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
    let mut avro = match encoding {
        Encoding::Json => None,
        Encoding::Avro { schema, id } => Some(AvroEncoder::new(schema, *id)?),
    };
    let started = Instant::now();
    let mut bytes: u64 = 0;
    let step = (records / 10).max(1);
    for i in 0..records {
        events.next_event();
        let payload: &[u8] = match &mut avro {
            None => events.payload.as_bytes(),
            Some(avro) => avro.encode(&events).with_context(|| format!("encoding record {i} as Avro"))?,
        };
        bytes += payload.len() as u64;
        let headers = OwnedHeaders::new_with_capacity(1)
            .insert(Header { key: "traceparent", value: Some(events.traceparent.as_str()) });
        let mut record = BaseRecord::to(topic).key(events.trace_id.as_str()).payload(payload).headers(headers);
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

/// Every event type the generator produces, in pipeline order.
pub fn event_types() -> impl Iterator<Item = &'static str> {
    FLOWS.iter().flat_map(|flow| flow.iter().map(|(event_type, _)| *event_type))
}

/// Generates realistic agent events, many traces interleaved, each trace
/// walking through its pipeline's event types in order.
pub(crate) struct EventGen {
    rng: SmallRng,
    size: usize,
    traces: Vec<Trace>,
    trace_id: String,
    traceparent: String,
    /// The current event as JSON, padded to `size` bytes.
    pub(crate) payload: String,
    /// The current event's fields (the JSON and Avro forms carry the same).
    event_type: &'static str,
    producer: &'static str,
    event_id: String,
    created_at_ms: i64,
    model: &'static str,
    input_tokens: u32,
    output_tokens: u32,
    reference: u32,
    step: usize,
    /// Where in FILLER the text of `data.text` starts.
    filler_offset: usize,
}

impl EventGen {
    pub(crate) fn new(seed: u64, size: usize) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let traces = (0..64).map(|_| new_trace(&mut rng)).collect();
        Self {
            rng,
            size,
            traces,
            trace_id: String::new(),
            traceparent: String::new(),
            payload: String::with_capacity(size + 64),
            event_type: "",
            producer: "",
            event_id: String::new(),
            created_at_ms: 0,
            model: "",
            input_tokens: 0,
            output_tokens: 0,
            reference: 0,
            step: 0,
            filler_offset: 0,
        }
    }

    /// Appends `len` bytes of filler text starting at `filler_offset`.
    fn push_filler(&self, out: &mut Vec<u8>, len: usize) {
        let mut offset = self.filler_offset;
        let mut left = len;
        while left > 0 {
            let take = left.min(FILLER.len() - offset);
            out.extend_from_slice(&FILLER.as_bytes()[offset..offset + take]);
            left -= take;
            offset = 0;
        }
    }

    /// Fills `trace_id`, `traceparent` and `payload` with the next event.
    pub(crate) fn next_event(&mut self) {
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
        self.event_id.clear();
        let _ = write!(
            self.event_id,
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (uuid >> 96) as u32,
            (uuid >> 80) as u16,
            (uuid >> 64) as u16 & 0x0fff,
            ((uuid >> 48) as u16 & 0x3fff) | 0x8000,
            uuid as u64 & 0xffff_ffff_ffff,
        );
        let now = OffsetDateTime::now_utc();
        self.created_at_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let created_at = rfc3339_ms(now);
        self.event_type = event_type;
        self.producer = producer;
        self.model = MODELS[rng.random_range(0..MODELS.len())];
        self.input_tokens = rng.random_range(200..4000u32);
        self.output_tokens = rng.random_range(20..800u32);
        self.reference = reference;
        self.step = step;
        self.filler_offset = rng.random_range(0..FILLER.len());

        let p = &mut self.payload;
        p.clear();
        let _ = write!(
            p,
            r#"{{"event_type":"{event_type}","trace_id":"{}","event_id":"{}","created_at":"{created_at}","schema_version":"1.0","producer":"{producer}","llm":{{"model":"{}","input_tokens":{},"output_tokens":{}}},"data":{{"reference":"REF-{reference:08}","step":{step},"text":""#,
            self.trace_id, self.event_id, self.model, self.input_tokens, self.output_tokens,
        );
        const TAIL: &str = r#""}}"#;
        let filler = self.size.saturating_sub(p.len() + TAIL.len());
        let mut text = std::mem::take(p).into_bytes();
        self.push_filler(&mut text, filler);
        text.extend_from_slice(TAIL.as_bytes());
        // FILLER is ASCII.
        self.payload = String::from_utf8(text).expect("ASCII filler");
    }
}

/// Field names and shape of the Avro form of the bench events (the JSON
/// form's fields, nested the same way; `created_at` as timestamp-millis).
pub const AVRO_SCHEMA: &str = r#"{
  "type": "record",
  "name": "AgentEvent",
  "namespace": "dev.pipewarden.bench",
  "doc": "An agent event of the pipewarden ingest benchmark.",
  "fields": [
    {"name": "event_type", "type": "string"},
    {"name": "trace_id", "type": "string"},
    {"name": "event_id", "type": "string"},
    {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "schema_version", "type": "string"},
    {"name": "producer", "type": "string"},
    {"name": "causation_id", "type": ["null", "string"], "default": null},
    {"name": "llm", "type": {
      "type": "record",
      "name": "Llm",
      "fields": [
        {"name": "model", "type": "string"},
        {"name": "input_tokens", "type": "int"},
        {"name": "output_tokens", "type": "int"}
      ]
    }},
    {"name": "data", "type": {
      "type": "record",
      "name": "Data",
      "fields": [
        {"name": "reference", "type": "string"},
        {"name": "step", "type": "int"},
        {"name": "text", "type": "string"}
      ]
    }}
  ]
}"#;

/// Encodes events in the Confluent wire format with [`AVRO_SCHEMA`].
pub(crate) struct AvroEncoder<'s> {
    writer: apache_avro::writer::datum::GenericDatumWriter<'s>,
    id: u32,
    buf: Vec<u8>,
}

impl<'s> AvroEncoder<'s> {
    pub(crate) fn new(schema: &'s apache_avro::Schema, id: u32) -> anyhow::Result<Self> {
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .context("building the Avro writer")?;
        Ok(Self { writer, id, buf: Vec::with_capacity(1024) })
    }

    /// The wire-format bytes of the current event, `events.size` bytes when
    /// the fields leave room for filler text.
    pub(crate) fn encode(&mut self, events: &EventGen) -> anyhow::Result<&[u8]> {
        use apache_avro::types::Value;
        let s = |v: &str| Value::String(v.to_string());
        let value = Value::Record(vec![
            ("event_type".into(), s(events.event_type)),
            ("trace_id".into(), s(&events.trace_id)),
            ("event_id".into(), s(&events.event_id)),
            ("created_at".into(), Value::TimestampMillis(events.created_at_ms)),
            ("schema_version".into(), s("1.0")),
            ("producer".into(), s(events.producer)),
            ("causation_id".into(), Value::Union(0, Box::new(Value::Null))),
            (
                "llm".into(),
                Value::Record(vec![
                    ("model".into(), s(events.model)),
                    ("input_tokens".into(), Value::Int(events.input_tokens as i32)),
                    ("output_tokens".into(), Value::Int(events.output_tokens as i32)),
                ]),
            ),
            (
                "data".into(),
                Value::Record(vec![
                    ("reference".into(), Value::String(format!("REF-{:08}", events.reference))),
                    ("step".into(), Value::Int(events.step as i32)),
                    // Filled in below: `text` is the datum's last field.
                    ("text".into(), s("")),
                ]),
            ),
        ]);
        self.buf.clear();
        self.buf.push(0);
        self.buf.extend_from_slice(&self.id.to_be_bytes());
        self.writer.write_value_ref(&mut self.buf, &value).context("Avro encoding")?;
        // The datum ends with the empty `text` string: its length 0 (one
        // byte). Replace it with the filler's length and bytes, so the record
        // has the target size without a second encoding.
        debug_assert_eq!(self.buf.last(), Some(&0));
        self.buf.pop();
        let fixed = self.buf.len();
        let target = events.size;
        let mut len = target.saturating_sub(fixed + 1);
        while len > 0 && fixed + zigzag_len(len as i64) + len > target {
            len -= 1;
        }
        put_zigzag(&mut self.buf, len as i64);
        events.push_filler(&mut self.buf, len);
        Ok(&self.buf)
    }
}

/// Bytes of the zig-zag varint encoding of `n` (Avro `long`).
fn zigzag_len(n: i64) -> usize {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut len = 1;
    while z >= 0x80 {
        z >>= 7;
        len += 1;
    }
    len
}

fn put_zigzag(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
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
