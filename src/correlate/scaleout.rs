//! Scale-out mode (`correlate.mode = "kafka"`): correlation partitioned by
//! trace ID through an internal topic, the way Kafka Streams repartitions.
//!
//! With several replicas in one consumer group, the events of one trace are
//! read by different replicas (they sit in different topics and
//! partitions). So each replica's ingest thread does not correlate: it
//! encodes every record's [`Observation`] (see `observation.rs` for the
//! format) and produces it to `correlate.kafka.topic`, keyed by trace ID, so
//! every event of a trace lands in the same partition. A second consumer
//! per replica (group `kafka.group_id` + `correlate.kafka.group_suffix`)
//! reads the partitions of that topic it is assigned and feeds its own
//! [`Correlator`]: each trace is correlated by exactly one replica, and
//! per-flow counters and histograms sum across replicas.
//!
//! Event time across replicas: a replica's correlator sees only some traces
//! of each input partition, so the events it receives cannot tell it how
//! far an input partition has progressed. Once a second, each replica
//! therefore broadcasts a *watermark* (input topic, partition, event time
//! reached) for every input partition it reads to every partition of the
//! observations topic. A watermark follows, in the same observations
//! partition and from the same (idempotent, ordered) producer, every
//! observation of that input partition sent before it, so a correlator that
//! has seen the watermark has seen those observations: stalls are declared
//! exactly as in one process.
//!
//! Delivery: observations are produced without waiting (the ingest thread
//! never blocks on them). At most `correlate.kafka.max_in_flight` may await
//! acknowledgement; beyond that, and on delivery failure, observations are
//! dropped and counted (`pipewarden_observations_total{result="dropped"}`).
//! The observation consumer stores offsets after correlating each record and
//! commits them periodically, so a restart re-reads (at least once) rather
//! than skips.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prometheus_client::metrics::counter::Counter;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use tracing::{info, warn};

use super::clock::IDLE_MS;
use super::observation::DecodeError;
use super::{Correlator, Observation};
use crate::config::Config;
use crate::metrics::{Metrics, ResultLabels};

/// First byte of a watermark value (observations start with their version, 1).
const WATERMARK_KIND: u8 = 0x57;

/// How long the observation consumer waits for a record.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Encodes a watermark: `0x57`, topic (u16 length, bytes), partition (i32), event time (i64 ms), little-endian.
pub fn encode_watermark(topic: &str, partition: i32, event_ms: i64, out: &mut Vec<u8>) {
    let topic = crate::metrics::truncate_label(topic, super::observation::MAX_FIELD_BYTES);
    out.clear();
    out.push(WATERMARK_KIND);
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&partition.to_le_bytes());
    out.extend_from_slice(&event_ms.to_le_bytes());
}

/// What one value of the observations topic holds.
#[derive(Debug, PartialEq, Eq)]
pub enum ObservationValue<'a> {
    Observation(Observation<'a>),
    Watermark { topic: &'a str, partition: i32, event_ms: i64 },
}

pub fn decode(bytes: &[u8]) -> Result<ObservationValue<'_>, DecodeError> {
    if bytes.first() != Some(&WATERMARK_KIND) {
        return Observation::decode(bytes).map(ObservationValue::Observation);
    }
    let rest = &bytes[1..];
    let (len, rest) = rest.split_first_chunk::<2>().ok_or(DecodeError::Truncated)?;
    let len = u16::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(DecodeError::Truncated);
    }
    let (topic, rest) = rest.split_at(len);
    let topic = std::str::from_utf8(topic).map_err(|_| DecodeError::NotUtf8)?;
    let (partition, rest) = rest.split_first_chunk::<4>().ok_or(DecodeError::Truncated)?;
    let (event_ms, rest) = rest.split_first_chunk::<8>().ok_or(DecodeError::Truncated)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(ObservationValue::Watermark {
        topic,
        partition: i32::from_le_bytes(*partition),
        event_ms: i64::from_le_bytes(*event_ms),
    })
}

/// Counts failed deliveries as dropped.
pub struct ObservationContext {
    dropped: Counter,
}

impl ClientContext for ObservationContext {}

impl ProducerContext for ObservationContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.dropped.inc();
        }
    }
}

/// Latest event time of one input partition on this replica, and when it moved.
#[derive(Debug, Clone, Copy)]
struct InputClock {
    event_ms: i64,
    wall_ms: i64,
}

/// The ingest side of scale-out mode: observations and watermarks out.
pub struct ObservationProducer {
    producer: ThreadedProducer<ObservationContext>,
    topic: String,
    partitions: i32,
    buffer: Vec<u8>,
    produced: Counter,
    dropped: Counter,
    /// Input partitions read by this replica: topic → clock per partition.
    inputs: ahash::AHashMap<Box<str>, Vec<Option<InputClock>>>,
}

fn observations_counter(metrics: &Metrics, result: &'static str) -> Counter {
    metrics.correlation.observations.get_or_create_owned(&ResultLabels { result })
}

impl ObservationProducer {
    pub fn new(config: &Config, metrics: &Metrics) -> anyhow::Result<Self> {
        let settings = &config.correlate.kafka;
        // Idempotence keeps each partition's order (a watermark must follow
        // the observations sent before it) across retries.
        let mut client_config = crate::quarantine::producer_config(config);
        client_config.set("queue.buffering.max.messages", settings.max_in_flight.to_string());
        let dropped = observations_counter(metrics, "dropped");
        let producer: ThreadedProducer<ObservationContext> = client_config
            .create_with_context(ObservationContext { dropped: dropped.clone() })
            .context("failed to create the observation producer")?;
        ensure_topic(&client_config, &settings.topic, settings.partitions)?;
        Ok(Self {
            producer,
            topic: settings.topic.clone(),
            partitions: settings.partitions,
            buffer: Vec::with_capacity(256),
            produced: observations_counter(metrics, "produced"),
            dropped,
            inputs: ahash::AHashMap::default(),
        })
    }

    /// Encodes and sends one observation keyed by its trace ID; never blocks.
    pub fn send(&mut self, observation: &Observation<'_>, wall_ms: i64) {
        if let (Some(event_ms), Ok(partition)) = (observation.event_time_ms(), usize::try_from(observation.partition)) {
            self.note_input(observation.topic, partition, event_ms.min(wall_ms), wall_ms);
        }
        observation.encode(&mut self.buffer);
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(&self.buffer);
        if let Some(trace_id) = observation.trace_id {
            record = record.key(trace_id.as_bytes());
        }
        match self.producer.send(record) {
            Ok(()) => self.produced.inc(),
            Err(_) => self.dropped.inc(),
        };
    }

    fn note_input(&mut self, topic: &str, partition: usize, event_ms: i64, wall_ms: i64) {
        if partition >= 1 << 16 {
            return;
        }
        if !self.inputs.contains_key(topic) {
            self.inputs.insert(topic.into(), Vec::new());
        }
        let clocks = self.inputs.get_mut(topic).expect("inserted above");
        if clocks.len() <= partition {
            clocks.resize(partition + 1, None);
        }
        let clock = &mut clocks[partition];
        *clock = Some(match *clock {
            Some(previous) => InputClock { event_ms: previous.event_ms.max(event_ms), wall_ms },
            None => InputClock { event_ms, wall_ms },
        });
    }

    /// Once a second: every input partition's event time reached, to every
    /// observations partition. An input partition idle for longer than
    /// [`IDLE_MS`] is projected forward with wall time, as in one process.
    pub fn broadcast_watermarks(&mut self, wall_ms: i64) {
        for (topic, clocks) in &self.inputs {
            for (partition, clock) in clocks.iter().enumerate() {
                let Some(clock) = clock else { continue };
                let event_ms = (clock.event_ms + (wall_ms - clock.wall_ms - IDLE_MS).max(0)).min(wall_ms);
                encode_watermark(topic, partition as i32, event_ms, &mut self.buffer);
                for target in 0..self.partitions {
                    let record = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(&self.buffer).partition(target);
                    if self.producer.send(record).is_err() {
                        self.dropped.inc();
                    }
                }
            }
        }
    }
}

impl Drop for ObservationProducer {
    /// Shutdown: observations already handed over are delivered (bounded wait).
    fn drop(&mut self) {
        if let Err(err) = self.producer.flush(Duration::from_secs(5)) {
            warn!(error = %err, in_flight = self.producer.in_flight_count(), "observation flush incomplete");
        }
    }
}

/// Creates the observations topic when it does not exist.
fn ensure_topic(client_config: &ClientConfig, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        client_config.create().context("failed to create the admin client")?;
    let timeout = Duration::from_secs(10);
    let metadata = admin.inner().fetch_metadata(None, timeout).context("failed to list topics")?;
    if metadata.topics().iter().any(|t| t.name() == topic && !t.partitions().is_empty()) {
        return Ok(());
    }
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    // Called from the daemon's async start-up: a runtime can neither block
    // nor be dropped inside another one, so the request runs on a thread and
    // runtime of its own.
    let created = std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<_> {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                Ok(runtime.block_on(admin.create_topics([&new], &options))?)
            })
            .join()
    })
    .map_err(|_| anyhow::anyhow!("creating the observations topic {topic} panicked"))?;
    for result in created? {
        match result {
            Ok(_) => info!(topic, partitions, "observations topic created"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => anyhow::bail!("cannot create the observations topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// The correlating side of scale-out mode: the observations consumer and
/// the replica's correlator, run on their own thread.
pub struct ObservationConsumer {
    consumer: BaseConsumer,
    correlator: Correlator,
    consumed: Counter,
    undecodable: Counter,
}

impl ObservationConsumer {
    pub fn new(config: &Config, correlator: Correlator, metrics: &Metrics) -> anyhow::Result<Self> {
        let settings = &config.correlate.kafka;
        let mut client_config = ClientConfig::new();
        for (key, value) in config.consumer_properties() {
            client_config.set(key, value);
        }
        let group = format!("{}{}", config.kafka.group_id, settings.group_suffix);
        client_config.set("group.id", &group).set("client.id", format!("{}-observations", config.kafka.client_id));
        let consumer: BaseConsumer = client_config.create().context("failed to create the observation consumer")?;
        consumer.subscribe(&[&settings.topic]).context("failed to subscribe to the observations topic")?;
        info!(topic = %settings.topic, group = %group, "correlating observations (scale-out mode)");
        Ok(Self {
            consumer,
            correlator,
            consumed: observations_counter(metrics, "consumed"),
            undecodable: observations_counter(metrics, "undecodable"),
        })
    }

    /// Runs until `stop` is set, then commits stored offsets.
    pub fn run(mut self, stop: &AtomicBool) {
        let mut next_sweep = Instant::now();
        while !stop.load(Ordering::Acquire) {
            let now = Instant::now();
            if now >= next_sweep {
                self.correlator.sweep(super::wall_ms());
                next_sweep = now + Duration::from_secs(1);
            }
            match self.consumer.poll(POLL_TIMEOUT) {
                None => {}
                Some(Ok(message)) => {
                    let wall_ms = super::wall_ms();
                    match message.payload().map(decode) {
                        Some(Ok(ObservationValue::Observation(observation))) => {
                            self.consumed.inc();
                            self.correlator.observe(&observation, wall_ms);
                        }
                        Some(Ok(ObservationValue::Watermark { topic, partition, event_ms })) => {
                            self.correlator.advance(topic, partition, event_ms, wall_ms);
                        }
                        Some(Err(_)) | None => {
                            self.undecodable.inc();
                        }
                    }
                    if let Err(err) = self.consumer.store_offset_from_message(&message) {
                        warn!(error = %err, "observation offset store failed");
                    }
                }
                Some(Err(err)) => warn!(error = %err, "observation consume error"),
            }
        }
        if let Err(err) = self.consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            warn!(error = %err, "final observation commit failed");
        }
    }
}

/// The correlator and what the HTTP API reads, per mode.
pub struct Started {
    pub input: super::Input,
    pub shared: Arc<super::Shared>,
    /// In scale-out mode, the observation consumer to run on its own thread.
    pub consumer: Option<ObservationConsumer>,
}

impl Started {
    /// Installs the per-event callback (span export) on this replica's
    /// correlator, whichever thread it will run on.
    pub fn set_sink(&mut self, sink: Box<dyn super::EventSink>) {
        match (&mut self.input, &mut self.consumer) {
            (super::Input::InProcess(correlator), _) => correlator.set_sink(sink),
            (_, Some(consumer)) => consumer.correlator.set_sink(sink),
            (super::Input::Kafka(_), None) => {}
        }
    }
}

/// Builds correlation for the configured mode.
pub fn start(config: &Config, metrics: Arc<Metrics>, budgets: Arc<crate::cost::Budgets>) -> anyhow::Result<Started> {
    let correlator = Correlator::new(config, metrics.clone()).with_budgets(budgets);
    let shared = correlator.shared();
    Ok(match config.correlate.mode {
        crate::config::CorrelateMode::InProcess => {
            Started { input: super::Input::InProcess(Box::new(correlator)), shared, consumer: None }
        }
        crate::config::CorrelateMode::Kafka => Started {
            input: super::Input::Kafka(ObservationProducer::new(config, &metrics)?),
            shared,
            consumer: Some(ObservationConsumer::new(config, correlator, &metrics)?),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_round_trip_and_are_told_apart_from_observations() {
        let mut buffer = Vec::new();
        encode_watermark("orders", 3, 1_767_225_600_000, &mut buffer);
        assert_eq!(buffer[0], WATERMARK_KIND);
        assert_eq!(buffer.len(), 1 + 2 + 6 + 4 + 8);
        assert_eq!(
            decode(&buffer),
            Ok(ObservationValue::Watermark { topic: "orders", partition: 3, event_ms: 1_767_225_600_000 })
        );
        for cut in 1..buffer.len() {
            assert_eq!(decode(&buffer[..cut]), Err(DecodeError::Truncated), "cut at {cut}");
        }
        buffer.push(0);
        assert_eq!(decode(&buffer), Err(DecodeError::TrailingBytes));
        let observation = Observation {
            trace_id: Some("t"),
            event_id: None,
            event_type: Some("e"),
            topic: "orders",
            partition: 1,
            offset: 2,
            created_at_us: Some(3_000),
            record_timestamp_ms: None,
            producer: None,
            verdict: crate::correlate::VerdictKind::Valid,
            tokens: 0,
            cost_micro_usd: 0,
            model: None,
        };
        observation.encode(&mut buffer);
        assert_eq!(decode(&buffer), Ok(ObservationValue::Observation(observation)));
    }
}
