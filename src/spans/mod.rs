//! Spans: every observed event becomes an OpenTelemetry span, exported over
//! OTLP (gRPC or HTTP/protobuf) so a tracing backend shows each agent
//! workflow as one distributed trace.
//!
//! In the data path this sits after validate, next to observe: the ingest
//! thread hands each processed record to [`SpanSink::observe`] (or a
//! correlator hands a ready [`SpanEvent`] to [`SpanSink::offer`]). The sink
//! derives the trace ID, decides sampling, packs the span into one owned
//! value and `try_send`s it into a bounded queue; it never waits. A
//! background thread ([`export`]) takes spans off the queue, chains each to
//! the previous span of its trace, and exports them in batches.
//!
//! What a span says (the full list is in docs/tracing.md):
//! - IDs are derived from the record ([`ids`]), so replicas and restarts agree.
//! - Kind PRODUCER, name `send <event_type>`: the span's times come from the
//!   event itself (`created_at` → Kafka record timestamp), so it describes the
//!   producing agent publishing the event, which pipewarden reconstructs; a
//!   CONSUMER span would have to be timed by pipewarden's own read, which is
//!   exactly the clock pipewarden never reports latency from.
//! - The resource's `service.name` is the producing agent, so backends draw
//!   one service per agent; the instrumentation scope is `pipewarden`.
//!
//! Bounds: the queue holds `otlp.queue_size` spans (full → dropped and
//! counted, reason `queue_full`); each text field of a span is cut to
//! [`MAX_TEXT_BYTES`]; the exporter remembers the last span of at most
//! `otlp.max_chained_traces` traces.
//!
//! Allocation: a span's strings share one buffer. The exporter hands
//! buffers back through a second bounded channel (`2 × otlp.batch_size`
//! buffers: enough for the spans of the batch being sent and the next one),
//! so in steady state queueing a span allocates nothing.

mod chain;
mod convert;
mod export;
pub mod ids;

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tracing::warn;

use crate::config::{Config, Source};
use crate::decode::{Envelope, Headers};
use crate::metrics::{truncate_label, Metrics, SpanDropReason};
use crate::observe::Record;
use crate::validate::Verdict;
pub use ids::{Sampler, SpanId, TraceId};

/// Longest text attribute value (bytes, cut on a character boundary): IDs
/// and names from the data are short; this keeps a hostile 1 MiB event ID
/// from growing every queued span.
pub const MAX_TEXT_BYTES: usize = 256;

/// Buffers larger than this are not recycled (a rare event with long
/// fields should not pin its large buffer in the pool).
pub(crate) const MAX_RECYCLED_CAPACITY: usize = 1_024;

/// Longest wait at shutdown for queued spans to be exported.
const MAX_FLUSH_WAIT: Duration = Duration::from_secs(5);

/// The validation outcome a span reports (`pipewarden.verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanVerdict {
    Valid,
    /// With the bounded reason of `pipewarden_invalid_records_total`.
    Invalid(&'static str),
    /// With the bounded reason of `pipewarden_unverified_records_total`.
    Unverified(&'static str),
}

impl SpanVerdict {
    /// `None` for [`Verdict::Wait`]: such a record is read again later.
    pub fn from_verdict(verdict: &Verdict) -> Option<SpanVerdict> {
        match verdict {
            Verdict::Valid => Some(SpanVerdict::Valid),
            Verdict::Invalid { reason, .. } => Some(SpanVerdict::Invalid(reason.as_str())),
            Verdict::Unverified(reason) => Some(SpanVerdict::Unverified(reason.as_str())),
            Verdict::Wait => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpanVerdict::Valid => "valid",
            SpanVerdict::Invalid(_) => "invalid",
            SpanVerdict::Unverified(_) => "unverified",
        }
    }

    pub fn reason(self) -> Option<&'static str> {
        match self {
            SpanVerdict::Valid => None,
            SpanVerdict::Invalid(reason) | SpanVerdict::Unverified(reason) => Some(reason),
        }
    }
}

/// LLM token usage an event reports, each count when known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    /// Input tokens served from the provider's prompt cache.
    pub cached: Option<u64>,
    /// Output tokens spent on reasoning (part of `output`).
    pub reasoning: Option<u64>,
}

/// One observed event, borrowed from the record it came from.
#[derive(Debug, Clone, Copy)]
pub struct SpanEvent<'a> {
    /// The W3C `traceparent` header value, when the record has one: its
    /// trace ID wins over the correlation ID.
    pub traceparent: Option<&'a [u8]>,
    /// The event's correlation ID (the envelope's trace ID field).
    pub correlation_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The consumer group that read the record (pipewarden's own, or an
    /// agent's when the caller knows it).
    pub consumer_group: &'a str,
    /// `created_at`, microseconds since the epoch: the span's start.
    pub created_at_us: Option<i64>,
    /// Kafka record timestamp, microseconds since the epoch: the span's end.
    pub record_timestamp_us: Option<i64>,
    /// The producing agent: the span's `service.name`.
    pub producer: Option<&'a str>,
    pub verdict: SpanVerdict,
    pub model: Option<&'a str>,
    pub tokens: TokenUsage,
    /// The span of the previous event of the same trace (its parent), when
    /// the caller knows it (the correlator does). `None`: the exporter chains
    /// the span to the last span it exported for the trace, if any.
    pub previous: Option<SpanId>,
}

/// What [`SpanSink::offer`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Queued,
    NotSampled,
    Dropped(SpanDropReason),
}

/// Text fields of a queued span, in their order inside [`QueuedSpan::text`].
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
enum Text {
    Topic,
    EventType,
    EventId,
    CorrelationId,
    Producer,
    Model,
    ConsumerGroup,
}

const TEXT_FIELDS: usize = 7;

/// A span waiting for export: fixed-size fields plus every string packed
/// into one buffer, so queueing a span costs one allocation.
#[derive(Debug)]
pub(crate) struct QueuedSpan {
    trace_id: TraceId,
    span_id: SpanId,
    previous: Option<SpanId>,
    /// The agent's own span from `traceparent`, exported as a link.
    linked: Option<SpanId>,
    start_us: i64,
    end_us: i64,
    partition: i32,
    offset: i64,
    verdict: SpanVerdict,
    tokens: TokenUsage,
    text: String,
    /// End of each [`Text`] field in `text`; an empty field is absent.
    ends: [u32; TEXT_FIELDS],
}

impl QueuedSpan {
    fn text(&self, field: Text) -> Option<&str> {
        let index = field as usize;
        let start = if index == 0 { 0 } else { self.ends[index - 1] as usize };
        let value = &self.text[start..self.ends[index] as usize];
        (!value.is_empty()).then_some(value)
    }

    fn build(
        event: &SpanEvent<'_>,
        mut text: String,
        trace_id: TraceId,
        linked: Option<SpanId>,
        start_us: i64,
        end_us: i64,
    ) -> Self {
        let mut fields = [""; TEXT_FIELDS];
        fields[Text::Topic as usize] = event.topic;
        fields[Text::EventType as usize] = event.event_type.unwrap_or("");
        fields[Text::EventId as usize] = event.event_id.unwrap_or("");
        fields[Text::CorrelationId as usize] = event.correlation_id.unwrap_or("");
        fields[Text::Producer as usize] = event.producer.unwrap_or("");
        fields[Text::Model as usize] = event.model.unwrap_or("");
        fields[Text::ConsumerGroup as usize] = event.consumer_group;
        let fields = fields.map(|value| truncate_label(value, MAX_TEXT_BYTES));
        text.clear();
        text.reserve(fields.iter().map(|f| f.len()).sum());
        let mut ends = [0; TEXT_FIELDS];
        for (end, value) in ends.iter_mut().zip(fields) {
            text.push_str(value);
            // At most TEXT_FIELDS × MAX_TEXT_BYTES bytes: fits in u32.
            *end = text.len() as u32;
        }
        QueuedSpan {
            trace_id,
            span_id: SpanId::for_record(event.topic, event.partition, event.offset),
            previous: event.previous,
            linked,
            start_us,
            end_us,
            partition: event.partition,
            offset: event.offset,
            verdict: event.verdict,
            tokens: event.tokens,
            text,
            ends,
        }
    }
}

/// Counter handles of the hot path, looked up once.
struct SinkCounters {
    queued: Counter,
    not_sampled: Counter,
    queue_full: Counter,
    no_trace_id: Counter,
    no_timestamp: Counter,
    exporter_stopped: Counter,
}

/// The ingest thread's end of span export. Dropping it (or
/// [`SpanSink::shutdown`]) lets the exporter flush and stop.
pub struct SpanSink {
    sender: SyncSender<QueuedSpan>,
    /// Emptied text buffers coming back from the exporter.
    recycled: mpsc::Receiver<String>,
    sampler: Sampler,
    counters: SinkCounters,
    /// pipewarden's consumer group, for spans built by [`SpanSink::observe`].
    consumer_group: String,
    /// Header the W3C trace context is read from (the first `traceparent:`
    /// envelope source, else `traceparent`).
    traceparent_header: String,
    exporter: export::Handle,
}

impl SpanSink {
    /// Starts the exporter thread; `None` when `[otlp] endpoint` is unset.
    pub fn start(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Option<SpanSink>> {
        if !config.otlp.enabled() {
            return Ok(None);
        }
        let (sender, receiver) = mpsc::sync_channel(config.otlp.queue_size);
        let (recycle, recycled) = mpsc::sync_channel(config.otlp.batch_size.saturating_mul(2));
        let exporter = export::spawn(&config.otlp, receiver, recycle, &metrics)?;
        let traceparent_header = config
            .envelope
            .trace_id
            .iter()
            .find_map(|source| match source {
                Source::TraceParent(name) => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "traceparent".to_string());
        Ok(Some(SpanSink::with_exporter(
            sender,
            recycled,
            Sampler::new(config.otlp.sample_ratio),
            &metrics,
            config.kafka.group_id.clone(),
            traceparent_header,
            exporter,
        )))
    }

    fn with_exporter(
        sender: SyncSender<QueuedSpan>,
        recycled: mpsc::Receiver<String>,
        sampler: Sampler,
        metrics: &Metrics,
        consumer_group: String,
        traceparent_header: String,
        exporter: export::Handle,
    ) -> SpanSink {
        let counters = SinkCounters {
            queued: metrics.spans_queued.clone(),
            not_sampled: metrics.spans_not_sampled.clone(),
            queue_full: metrics.span_drop_counter(SpanDropReason::queue_full),
            no_trace_id: metrics.span_drop_counter(SpanDropReason::no_trace_id),
            no_timestamp: metrics.span_drop_counter(SpanDropReason::no_timestamp),
            exporter_stopped: metrics.span_drop_counter(SpanDropReason::exporter_stopped),
        };
        SpanSink { sender, recycled, sampler, counters, consumer_group, traceparent_header, exporter }
    }

    /// The ingest hook: the span of one processed record, with the model and
    /// token usage the cost stage read. `previous` is the span of the event
    /// before it in the correlator's event order (same correlation ID); it
    /// is used only when the span's trace comes from that correlation ID: a
    /// record with a `traceparent` belongs to the agent's trace, which the
    /// exporter's per-trace chain follows instead.
    pub fn observe<H: Headers + ?Sized>(
        &self,
        record: &Record<'_, H>,
        envelope: &Envelope<'_>,
        verdict: &Verdict,
        cost: Option<&crate::cost::EventCost>,
        previous: Option<SpanId>,
    ) {
        let Some(verdict) = SpanVerdict::from_verdict(verdict) else { return };
        let traceparent = record.headers.last(&self.traceparent_header);
        let previous = if traceparent.and_then(TraceId::from_traceparent).is_some() { None } else { previous };
        self.offer(&SpanEvent {
            traceparent,
            correlation_id: envelope.trace_id.as_deref(),
            event_id: envelope.event_id.as_deref(),
            event_type: envelope.event_type.as_deref(),
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            consumer_group: &self.consumer_group,
            created_at_us: envelope.created_at_us,
            record_timestamp_us: record.timestamp_ms.map(|ms| ms.saturating_mul(1_000)),
            producer: envelope.producer.as_deref(),
            verdict,
            model: envelope.accounting.model.as_deref(),
            // Back from pipewarden's disjoint buckets to the GenAI
            // attributes' meaning: input includes cache reads and writes,
            // output includes reasoning.
            tokens: cost.map_or_else(TokenUsage::default, |cost| {
                let t = &cost.tokens;
                TokenUsage {
                    input: Some(t.input + t.cached_input + t.cache_write),
                    output: Some(t.output + t.reasoning),
                    cached: Some(t.cached_input),
                    reasoning: Some(t.reasoning),
                }
            }),
            previous,
        });
    }

    /// Samples the event and queues its span; never blocks.
    pub fn offer(&self, event: &SpanEvent<'_>) -> Offered {
        let from_header = event.traceparent.and_then(TraceId::from_traceparent);
        let (trace_id, linked) = match (from_header, event.correlation_id) {
            (Some((trace, agent_span)), _) => (trace, Some(agent_span)),
            (None, Some(id)) if !id.is_empty() => (TraceId::from_correlation_id(id), None),
            (None, _) => return self.dropped(SpanDropReason::no_trace_id),
        };
        if !self.sampler.keeps(&trace_id) {
            self.counters.not_sampled.inc();
            return Offered::NotSampled;
        }
        // Event time only: created_at → record timestamp, either alone
        // giving a zero-length span; an end before the start (producer clock
        // ahead of the broker's) is clamped to the start.
        let (start_us, end_us) = match (event.created_at_us, event.record_timestamp_us) {
            (Some(start), Some(end)) => (start, end.max(start)),
            (Some(at), None) | (None, Some(at)) => (at, at),
            (None, None) => return self.dropped(SpanDropReason::no_timestamp),
        };
        let buffer = self.recycled.try_recv().unwrap_or_default();
        let span = QueuedSpan::build(event, buffer, trace_id, linked, start_us, end_us);
        match self.sender.try_send(span) {
            Ok(()) => {
                self.counters.queued.inc();
                Offered::Queued
            }
            Err(TrySendError::Full(_)) => self.dropped(SpanDropReason::queue_full),
            Err(TrySendError::Disconnected(_)) => self.dropped(SpanDropReason::exporter_stopped),
        }
    }

    fn dropped(&self, reason: SpanDropReason) -> Offered {
        let counter = match reason {
            SpanDropReason::queue_full => &self.counters.queue_full,
            SpanDropReason::no_trace_id => &self.counters.no_trace_id,
            SpanDropReason::no_timestamp => &self.counters.no_timestamp,
            _ => &self.counters.exporter_stopped,
        };
        counter.inc();
        Offered::Dropped(reason)
    }

    /// Closes the queue and waits (at most `otlp.timeout`, capped at 5 s)
    /// for the exporter to send what it holds. Returns whether it finished.
    pub fn shutdown(self) -> bool {
        let SpanSink { sender, exporter, .. } = self;
        drop(sender);
        let finished = exporter.wait(MAX_FLUSH_WAIT);
        if !finished {
            warn!("span exporter did not finish flushing in time; queued spans are lost");
        }
        finished
    }
}

/// A sink whose queue the test reads directly (no exporter thread), and
/// the channel that recycles its buffers.
#[cfg(test)]
pub(crate) fn test_sink(
    queue_size: usize,
    sample_ratio: f64,
    metrics: &Metrics,
) -> (SpanSink, mpsc::Receiver<QueuedSpan>, SyncSender<String>) {
    let (sender, receiver) = mpsc::sync_channel(queue_size);
    let (recycle, recycled) = mpsc::sync_channel(4);
    let sink = SpanSink::with_exporter(
        sender,
        recycled,
        Sampler::new(sample_ratio),
        metrics,
        "pipewarden".into(),
        "traceparent".into(),
        export::Handle::detached(),
    );
    (sink, receiver, recycle)
}

#[cfg(test)]
mod tests;
