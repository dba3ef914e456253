//! Every metric family pipewarden exports, in one place.
//!
//! Names and labels are an API (dashboards, alerts and users' queries depend
//! on them) and are listed in `docs/metrics.md`. Conventions: the
//! `pipewarden_` prefix, base units (seconds, bytes) in the name, counters
//! end in `_total`. Label values that come from the data (topic, event type,
//! producer) pass through a [`LabelLimiter`]: once a label has
//! `metrics.max_label_values` distinct values, new ones are reported as
//! [`OVERFLOW`] and counted in `pipewarden_label_overflow_total`, so a flood
//! of distinct values can never grow the series count without bound.
//!
//! The hot path does not look labels up per record: the observe stage keeps
//! per-topic handles (see `observe.rs`), built with the `*_handle` methods
//! here.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::decode::{EnvelopeProblem, PayloadFormat};

/// Label value used once a label has reached its cap of distinct values.
pub const OVERFLOW: &str = "__overflow__";

/// Label value for an event type or producer the record did not carry.
pub const UNKNOWN: &str = "__unknown__";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormatLabels {
    pub topic: String,
    pub format: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub topic: String,
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PiiLabels {
    pub topic: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PauseLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventTypeLabels {
    pub topic: String,
    pub event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProducerLabels {
    pub topic: String,
    pub producer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProblemLabels {
    pub topic: String,
    pub reason: &'static str,
}

/// Bounded kinds of consumer errors.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ConsumerErrorKind {
    /// An error delivered instead of a message (e.g. partition EOF errors, broker down).
    consume,
    /// Storing an offset after processing failed.
    offset_store,
    /// A periodic or final offset commit failed.
    commit,
    /// Listing topics for the subscription failed.
    metadata,
    /// Changing the subscription failed.
    subscribe,
    /// A client-level error reported by librdkafka (connection, authentication, ...).
    client,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerErrorLabels {
    pub kind: ConsumerErrorKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabels {
    pub kind: crate::ingest::access::Denied,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RebalanceKind {
    assign,
    revoke,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RebalanceLabels {
    pub kind: RebalanceKind,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CommitResult {
    success,
    failure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabels {
    pub result: CommitResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LabelNameLabels {
    pub label: &'static str,
}

/// Why a span was not exported (`pipewarden_spans_dropped_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SpanDropReason {
    /// The export queue was full: the receiver is slower than the traffic.
    queue_full,
    /// The record has neither a `traceparent` header nor a correlation ID.
    no_trace_id,
    /// The record has neither `created_at` nor a Kafka timestamp.
    no_timestamp,
    /// The span's export request failed (after retries).
    export_failed,
    /// The receiver accepted the request but rejected the span (partial success).
    rejected,
    /// The exporter thread is gone (only at shutdown).
    exporter_stopped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpanDropLabels {
    pub reason: SpanDropReason,
}

/// Why an export request failed (`pipewarden_span_export_failures_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SpanExportFailure {
    timeout,
    /// Connection failures and transient statuses (gRPC UNAVAILABLE, HTTP 429/502/503/504).
    unavailable,
    /// Permanent refusals (bad request, unauthenticated, ...).
    rejected,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpanExportFailureLabels {
    pub reason: SpanExportFailure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Caps the distinct values one label may take.
#[derive(Debug)]
pub struct LabelLimiter {
    name: &'static str,
    max_values: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelLimiter {
    pub fn new(name: &'static str, max_values: usize) -> Self {
        Self { name, max_values, seen: Mutex::new(HashSet::new()) }
    }

    /// The label value to use for `value`: itself while there is room (or it
    /// was admitted before), [`OVERFLOW`] after that.
    pub fn admit(&self, value: &str, overflow: &Family<LabelNameLabels, Counter>) -> String {
        // The lock is held only for a set lookup; called on cache misses only.
        let mut seen = self.seen.lock().expect("label limiter lock poisoned");
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() < self.max_values {
            seen.insert(value.to_string());
            return value.to_string();
        }
        drop(seen);
        overflow.get_or_create(&LabelNameLabels { label: self.name }).inc();
        OVERFLOW.to_string()
    }
}

/// Cuts a data-derived label value to at most `max_len` bytes on a character
/// boundary, so one huge event type cannot bloat every scrape.
pub fn truncate_label(value: &str, max_len: usize) -> &str {
    if value.len() <= max_len {
        return value;
    }
    let mut end = max_len;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Bucket bounds (seconds) for ages and latencies of events in agent
/// pipelines: from 5 ms (a fast service) to 1 h (a stalled flow).
pub const AGE_BUCKETS: [f64; 16] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// A histogram its writers fill in batches: each counts into its own
/// [`BatchHandle`] and adds its counts here once per batch
/// ([`BatchHandle::flush`]). prometheus-client's `Histogram` takes
/// a lock per observation, which was about 3.6 % of the ingest thread's
/// time for the per-record histograms. Exposed exactly as a `Histogram`
/// with the same bounds; `_count` is the sum of the buckets, so a scrape
/// never sees them disagree (`_sum` may trail by the batch being added).
#[derive(Clone, Debug)]
pub struct BatchHistogram {
    inner: std::sync::Arc<BatchInner>,
}

#[derive(Debug)]
struct BatchInner {
    bounds: &'static [f64],
    /// One per bound, then `+Inf`; not cumulative.
    counts: Box<[AtomicU64]>,
    /// `f64` bits.
    sum: AtomicU64,
}

/// Observations not yet added to a [`BatchHistogram`].
#[derive(Debug)]
struct Observations {
    bounds: &'static [f64],
    counts: Box<[u64]>,
    sum: f64,
    any: bool,
}

impl Observations {
    /// Counts one value (in the first bucket whose bound is not below it).
    fn observe(&mut self, value: f64) {
        let bucket = self.bounds.iter().position(|&bound| value <= bound).unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.any = true;
    }
}

impl BatchHistogram {
    /// Finite, increasing bucket bounds; `+Inf` is added.
    pub fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        BatchHistogram { inner: std::sync::Arc::new(BatchInner { bounds, counts, sum: AtomicU64::new(0) }) }
    }

    /// An empty batch for this histogram's bounds.
    fn observations(&self) -> Observations {
        let bounds = self.inner.bounds;
        Observations { bounds, counts: vec![0; bounds.len() + 1].into_boxed_slice(), sum: 0.0, any: false }
    }

    /// Adds one value at once, without a batch (tests; writers use a
    /// [`BatchHandle`]).
    #[cfg(test)]
    pub fn observe(&self, value: f64) {
        let mut one = self.observations();
        one.observe(value);
        self.add(&mut one);
    }

    /// Adds a batch (and empties it).
    fn add(&self, batch: &mut Observations) {
        if !std::mem::take(&mut batch.any) {
            return;
        }
        for (count, added) in self.inner.counts.iter().zip(batch.counts.iter_mut()) {
            if *added > 0 {
                count.fetch_add(std::mem::take(added), Ordering::Relaxed);
            }
        }
        let sum = std::mem::take(&mut batch.sum);
        let _ = self
            .inner
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + sum).to_bits()));
    }
}

/// A [`BatchHistogram`] with what its one owner observed and has not added
/// yet: [`flush`](Self::flush) adds it, and so does dropping the handle.
#[derive(Debug)]
pub struct BatchHandle {
    histogram: BatchHistogram,
    pending: Observations,
}

impl BatchHandle {
    pub fn new(histogram: BatchHistogram) -> Self {
        let pending = histogram.observations();
        BatchHandle { histogram, pending }
    }

    pub fn observe(&mut self, value: f64) {
        self.pending.observe(value);
    }

    /// Adds what was observed since the last flush.
    pub fn flush(&mut self) {
        self.histogram.add(&mut self.pending);
    }
}

impl Drop for BatchHandle {
    fn drop(&mut self) {
        self.flush();
    }
}

impl prometheus_client::metrics::TypedMetric for BatchHistogram {
    const TYPE: prometheus_client::metrics::MetricType = prometheus_client::metrics::MetricType::Histogram;
}

impl prometheus_client::encoding::EncodeMetric for BatchHistogram {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed));
        let bounds = self.inner.bounds.iter().copied().chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds.zip(counts).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = f64::from_bits(self.inner.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        <Self as prometheus_client::metrics::TypedMetric>::TYPE
    }
}

/// Bucket bounds (seconds) for per-record processing: 1 µs to 10 ms.
pub const PROCESSING_BUCKETS: [f64; 12] =
    [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2];

pub struct Metrics {
    registry: Registry,
    pub records: Family<TopicLabels, Counter>,
    pub record_bytes: Family<TopicLabels, Counter>,
    pub records_by_format: Family<FormatLabels, Counter>,
    pub events: Family<EventTypeLabels, Counter>,
    pub producer_events: Family<ProducerLabels, Counter>,
    pub envelope_problems: Family<ProblemLabels, Counter>,
    pub event_age: Family<TopicLabels, BatchHistogram, fn() -> BatchHistogram>,
    pub processing: BatchHistogram,
    pub consumer_errors: Family<ConsumerErrorLabels, Counter>,
    /// Refused logins and missing ACLs (see `ingest/access.rs`).
    pub access_denied: Family<DeniedLabels, Counter>,
    pub rebalances: Family<RebalanceLabels, Counter>,
    pub offset_commits: Family<CommitLabels, Counter>,
    pub assigned_partitions: Gauge,
    /// 1 while the consumer reaches the cluster (see `ingest::health`).
    pub kafka_up: Gauge,
    pub watched_topics: Gauge,
    pub label_overflow: Family<LabelNameLabels, Counter>,
    pub verdicts: Family<VerdictLabels, Counter>,
    pub invalid_records: Family<ProblemLabels, Counter>,
    pub unverified_records: Family<ProblemLabels, Counter>,
    pub pii_detections: Family<PiiLabels, Counter>,
    pub quarantined_records: Family<TopicLabels, Counter>,
    pub quarantine_failures: Family<TopicLabels, Counter>,
    pub quarantine_in_flight: Gauge,
    pub paused_partitions: Family<PauseLabels, Gauge>,
    pub schema_registry_up: Gauge,
    pub schema_cache_schemas: Gauge,
    pub schema_cache_lookups: Family<ResultLabels, Counter>,
    pub schema_fetches: Family<ResultLabels, Counter>,
    pub topic_naming_warnings: Family<TopicLabels, Gauge>,
    pub spans_queued: Counter,
    pub spans_not_sampled: Counter,
    pub spans_exported: Counter,
    pub spans_dropped: Family<SpanDropLabels, Counter>,
    pub span_export_failures: Family<SpanExportFailureLabels, Counter>,
    pub topic_limiter: LabelLimiter,
    pub event_type_limiter: LabelLimiter,
    pub producer_limiter: LabelLimiter,
    pub lag: LagMetrics,
    /// LLM cost, budgets and dead-letter families.
    pub accounting: AccountingMetrics,
    /// Families of the correlator (flows, stages, stalls, trace table, reliability).
    pub correlation: CorrelationMetrics,
}

impl Metrics {
    pub fn new(max_label_values: usize) -> Self {
        let mut registry = Registry::with_prefix("pipewarden");
        let metrics = Self {
            records: Family::default(),
            record_bytes: Family::default(),
            records_by_format: Family::default(),
            events: Family::default(),
            producer_events: Family::default(),
            envelope_problems: Family::default(),
            event_age: Family::new_with_constructor(age_histogram),
            processing: BatchHistogram::new(&PROCESSING_BUCKETS),
            consumer_errors: Family::default(),
            access_denied: Family::default(),
            rebalances: Family::default(),
            offset_commits: Family::default(),
            assigned_partitions: Gauge::default(),
            kafka_up: Gauge::default(),
            watched_topics: Gauge::default(),
            label_overflow: Family::default(),
            verdicts: Family::default(),
            invalid_records: Family::default(),
            unverified_records: Family::default(),
            pii_detections: Family::default(),
            quarantined_records: Family::default(),
            quarantine_failures: Family::default(),
            quarantine_in_flight: Gauge::default(),
            paused_partitions: Family::default(),
            schema_registry_up: Gauge::default(),
            schema_cache_schemas: Gauge::default(),
            schema_cache_lookups: Family::default(),
            schema_fetches: Family::default(),
            topic_naming_warnings: Family::default(),
            spans_queued: Counter::default(),
            spans_not_sampled: Counter::default(),
            spans_exported: Counter::default(),
            spans_dropped: Family::default(),
            span_export_failures: Family::default(),
            topic_limiter: LabelLimiter::new("topic", max_label_values),
            event_type_limiter: LabelLimiter::new("event_type", max_label_values),
            producer_limiter: LabelLimiter::new("producer", max_label_values),
            lag: LagMetrics::new(max_label_values),
            accounting: AccountingMetrics::new(max_label_values),
            correlation: CorrelationMetrics::default(),
            registry: Registry::default(),
        };
        registry.register(
            "build",
            "pipewarden build information; always 1",
            Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION") }),
        );
        registry.register("records", "Records consumed from watched topics", metrics.records.clone());
        registry.register(
            "record_bytes",
            "Bytes of record values consumed from watched topics",
            metrics.record_bytes.clone(),
        );
        registry.register(
            "records_by_format",
            "Records by payload format (json, confluent_json, confluent_binary, tombstone, empty)",
            metrics.records_by_format.clone(),
        );
        registry.register("events", "Records by topic and event type", metrics.events.clone());
        registry.register("producer_events", "Records by topic and producing agent", metrics.producer_events.clone());
        registry.register(
            "envelope_problems",
            "Records that break the event contract, by bounded reason (a record may have several)",
            metrics.envelope_problems.clone(),
        );
        registry.register(
            "event_age_seconds",
            "Age of events when pipewarden observes them: now minus created_at (else the Kafka record timestamp)",
            metrics.event_age.clone(),
        );
        registry.register(
            "record_processing_seconds",
            "Time pipewarden spends processing one record (decode and observe), excluding Kafka fetch",
            metrics.processing.clone(),
        );
        registry.register(
            "consumer_errors",
            "Errors of pipewarden's Kafka consumer, by kind",
            metrics.consumer_errors.clone(),
        );
        registry.register(
            "kafka_access_denied",
            "Kafka requests refused for a failed login or a missing ACL, by what was refused",
            metrics.access_denied.clone(),
        );
        registry.register(
            "consumer_rebalances",
            "Consumer group rebalance events of pipewarden's consumer (assign, revoke, error)",
            metrics.rebalances.clone(),
        );
        registry.register(
            "offset_commits",
            "Offset commits of pipewarden's consumer, by result",
            metrics.offset_commits.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Partitions currently assigned to this pipewarden instance",
            metrics.assigned_partitions.clone(),
        );
        registry.register(
            "kafka_up",
            "1 while the consumer reaches the Kafka cluster (last topic listing succeeded), else 0",
            metrics.kafka_up.clone(),
        );
        registry.register(
            "watched_topics",
            "Topics currently matching the include/exclude patterns",
            metrics.watched_topics.clone(),
        );
        registry.register(
            "label_overflow",
            "Label values replaced by __overflow__ because a label reached metrics.max_label_values",
            metrics.label_overflow.clone(),
        );
        registry.register(
            "verdicts",
            "Records by validation verdict: valid, invalid, unverified",
            metrics.verdicts.clone(),
        );
        registry.register(
            "invalid_records",
            "Invalid records by bounded reason (see docs/governance.md)",
            metrics.invalid_records.clone(),
        );
        registry.register(
            "unverified_records",
            "Records that passed without a full check, by reason (registry_unavailable, no_schema, unusable_schema)",
            metrics.unverified_records.clone(),
        );
        registry.register(
            "pii_detections",
            "Records whose string values contain PII, by kind (email, payment_card, phone, iban)",
            metrics.pii_detections.clone(),
        );
        registry.register(
            "quarantined_records",
            "Invalid records whose quarantine copy the broker acknowledged, by source topic",
            metrics.quarantined_records.clone(),
        );
        registry.register(
            "quarantine_failures",
            "Quarantine writes that failed (the partition pauses and retries), by source topic",
            metrics.quarantine_failures.clone(),
        );
        registry.register(
            "quarantine_in_flight",
            "Quarantine copies sent and not yet acknowledged",
            metrics.quarantine_in_flight.clone(),
        );
        registry.register(
            "paused_partitions",
            "Partitions paused by pipewarden, by reason (schema_unavailable, quarantine_failed)",
            metrics.paused_partitions.clone(),
        );
        registry.register(
            "schema_registry_up",
            "1 when the last schema registry request succeeded (or no registry is used), else 0",
            metrics.schema_registry_up.clone(),
        );
        registry.register(
            "schema_cache_schemas",
            "Compiled schemas held in the schema cache",
            metrics.schema_cache_schemas.clone(),
        );
        registry.register(
            "schema_cache_lookups",
            "Schema cache lookups by result (hit, miss)",
            metrics.schema_cache_lookups.clone(),
        );
        registry.register(
            "schema_fetches",
            "Schema fetches from the registry by result (ok, not_found, unavailable)",
            metrics.schema_fetches.clone(),
        );
        registry.register(
            "topic_naming_warnings",
            "1 for watched topics whose names describe agents (agent2_to_agent3) rather than events",
            metrics.topic_naming_warnings.clone(),
        );
        metrics.lag.register(&mut registry);
        metrics.correlation.register(&mut registry);
        registry.register(
            "spans_queued",
            "Spans of observed events queued for OTLP export (sampled in)",
            metrics.spans_queued.clone(),
        );
        registry.register(
            "spans_not_sampled",
            "Spans of observed events left out by otlp.sample_ratio",
            metrics.spans_not_sampled.clone(),
        );
        registry.register("spans_exported", "Spans the OTLP receiver accepted", metrics.spans_exported.clone());
        registry.register(
            "spans_dropped",
            "Spans not exported, by reason (queue_full, no_trace_id, no_timestamp, export_failed, rejected, exporter_stopped)",
            metrics.spans_dropped.clone(),
        );
        registry.register(
            "span_export_failures",
            "OTLP export requests that failed after retries, by reason (timeout, unavailable, rejected)",
            metrics.span_export_failures.clone(),
        );
        // Pre-create the bounded error series so rate() works from the first scrape.
        for kind in [
            ConsumerErrorKind::consume,
            ConsumerErrorKind::offset_store,
            ConsumerErrorKind::commit,
            ConsumerErrorKind::metadata,
            ConsumerErrorKind::subscribe,
            ConsumerErrorKind::client,
        ] {
            let _ = metrics.consumer_errors.get_or_create(&ConsumerErrorLabels { kind });
        }
        for kind in crate::ingest::access::Denied::ALL {
            let _ = metrics.access_denied.get_or_create(&DeniedLabels { kind });
        }
        for kind in [RebalanceKind::assign, RebalanceKind::revoke, RebalanceKind::error] {
            let _ = metrics.rebalances.get_or_create(&RebalanceLabels { kind });
        }
        for reason in ["schema_unavailable", "quarantine_failed"] {
            let _ = metrics.paused_partitions.get_or_create(&PauseLabels { reason });
        }
        for result in [CommitResult::success, CommitResult::failure] {
            let _ = metrics.offset_commits.get_or_create(&CommitLabels { result });
        }
        metrics.accounting.register(&mut registry);
        for reason in [
            SpanDropReason::queue_full,
            SpanDropReason::no_trace_id,
            SpanDropReason::no_timestamp,
            SpanDropReason::export_failed,
            SpanDropReason::rejected,
            SpanDropReason::exporter_stopped,
        ] {
            let _ = metrics.spans_dropped.get_or_create(&SpanDropLabels { reason });
        }
        for reason in [SpanExportFailure::timeout, SpanExportFailure::unavailable, SpanExportFailure::rejected] {
            let _ = metrics.span_export_failures.get_or_create(&SpanExportFailureLabels { reason });
        }
        Self { registry, ..metrics }
    }

    /// Renders every family in the OpenMetrics text format.
    pub fn encode_openmetrics(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::text::encode(out, &self.registry)
    }

    /// Renders every family in the Prometheus text format 0.0.4.
    pub fn encode_prometheus(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::prometheus_text::encode(out, &self.registry)
    }

    pub fn record_consumer_error(&self, kind: ConsumerErrorKind) {
        self.consumer_errors.get_or_create(&ConsumerErrorLabels { kind }).inc();
    }

    pub fn record_access_denied(&self, kind: crate::ingest::access::Denied) {
        self.access_denied.get_or_create(&DeniedLabels { kind }).inc();
    }

    pub fn record_rebalance(&self, kind: RebalanceKind) {
        self.rebalances.get_or_create(&RebalanceLabels { kind }).inc();
    }

    pub fn record_commit(&self, result: CommitResult) {
        self.offset_commits.get_or_create(&CommitLabels { result }).inc();
    }

    /// Admits a topic name as a label value (or [`OVERFLOW`]).
    pub fn topic_label(&self, topic: &str) -> String {
        self.topic_limiter.admit(topic, &self.label_overflow)
    }

    pub fn event_type_label(&self, event_type: &str) -> String {
        self.event_type_limiter.admit(event_type, &self.label_overflow)
    }

    pub fn producer_label(&self, producer: &str) -> String {
        self.producer_limiter.admit(producer, &self.label_overflow)
    }

    pub fn format_counter(&self, topic: &str, format: PayloadFormat) -> Counter {
        self.records_by_format.get_or_create_owned(&FormatLabels { topic: topic.to_string(), format: format.as_str() })
    }

    pub fn span_drop_counter(&self, reason: SpanDropReason) -> Counter {
        self.spans_dropped.get_or_create_owned(&SpanDropLabels { reason })
    }

    pub fn span_export_failure_counter(&self, reason: SpanExportFailure) -> Counter {
        self.span_export_failures.get_or_create_owned(&SpanExportFailureLabels { reason })
    }

    pub fn problem_counter(&self, topic: &str, problem: EnvelopeProblem) -> Counter {
        self.envelope_problems
            .get_or_create_owned(&ProblemLabels { topic: topic.to_string(), reason: problem.as_str() })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupTopicLabels {
    pub group: String,
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupTopicMethodLabels {
    pub group: String,
    pub topic: String,
    /// `exact` (pipewarden's offset → timestamp index) or `interpolated`.
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupStateLabels {
    pub group: String,
    pub state: &'static str,
    /// `classic` or `consumer` (KIP-848).
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupStatusLabels {
    pub group: String,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagErrorLabels {
    /// `list_groups`, `describe_group`, `group_offsets`, `end_offsets`.
    pub kind: &'static str,
}

/// Bucket bounds (seconds) of one lag poll: 10 ms (a few groups) to 30 s
/// (a large cluster on a slow link).
pub const LAG_POLL_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// Consumer group lag families, written by the lag thread once per poll
/// (see `lag/`). Group label values pass through `group_limiter`, topics
/// through `topic_limiter`: a limiter of their own, because the lag
/// monitor reports every group of the cluster, and on a cluster with more
/// topics than the cap it would otherwise take every place in the shared
/// topic limiter before the watched topics' first records.
pub struct LagMetrics {
    pub lag_messages: Family<GroupTopicLabels, Gauge>,
    pub partition_lag_messages: Family<GroupPartitionLabels, Gauge>,
    pub lag_seconds: Family<GroupTopicMethodLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub members: Family<GroupLabels, Gauge>,
    pub state: Family<GroupStateLabels, Gauge>,
    pub status: Family<GroupStatusLabels, Gauge>,
    pub stuck_partitions: Family<GroupLabels, Gauge>,
    pub monitored_groups: Gauge,
    pub poll_duration: Histogram,
    pub poll_errors: Family<LagErrorLabels, Counter>,
    pub index_partitions: Gauge,
    pub index_points: Gauge,
    pub group_limiter: LabelLimiter,
    pub topic_limiter: LabelLimiter,
}

impl LagMetrics {
    fn new(max_label_values: usize) -> Self {
        Self {
            lag_messages: Family::default(),
            partition_lag_messages: Family::default(),
            lag_seconds: Family::default(),
            members: Family::default(),
            state: Family::default(),
            status: Family::default(),
            stuck_partitions: Family::default(),
            monitored_groups: Gauge::default(),
            poll_duration: Histogram::new(LAG_POLL_BUCKETS),
            poll_errors: Family::default(),
            index_partitions: Gauge::default(),
            index_points: Gauge::default(),
            group_limiter: LabelLimiter::new("group", max_label_values),
            topic_limiter: LabelLimiter::new("topic", max_label_values),
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "consumergroup_lag_messages",
            "Records a consumer group has not consumed yet, summed over a topic's partitions",
            self.lag_messages.clone(),
        );
        registry.register(
            "consumergroup_partition_lag_messages",
            "Records a consumer group has not consumed yet on one partition (lag.partition_metrics)",
            self.partition_lag_messages.clone(),
        );
        registry.register(
            "consumergroup_lag_seconds",
            "Age of the oldest record a consumer group has not consumed, max over a topic's partitions, by method",
            self.lag_seconds.clone(),
        );
        registry.register("consumergroup_members", "Active members of a consumer group", self.members.clone());
        registry.register(
            "consumergroup_state",
            "1 for a consumer group's current state and protocol (classic or consumer)",
            self.state.clone(),
        );
        registry.register(
            "consumergroup_status",
            "1 for a consumer group's lag status (ok, lagging, rewound, stalled, stopped), else 0",
            self.status.clone(),
        );
        registry.register(
            "consumergroup_stuck_partitions",
            "Partitions whose committed offset is frozen while the same group progresses elsewhere",
            self.stuck_partitions.clone(),
        );
        registry.register(
            "lag_monitored_groups",
            "Consumer groups the lag monitor reports",
            self.monitored_groups.clone(),
        );
        registry.register("lag_poll_duration_seconds", "Duration of one lag poll", self.poll_duration.clone());
        registry.register("lag_poll_errors", "Failed lag monitor requests, by kind", self.poll_errors.clone());
        registry.register(
            "lag_index_partitions",
            "Partitions in the offset to timestamp index",
            self.index_partitions.clone(),
        );
        registry.register(
            "lag_index_points",
            "Points held by the offset to timestamp index (16 bytes each)",
            self.index_points.clone(),
        );
        for kind in ["list_groups", "describe_group", "group_offsets", "end_offsets"] {
            let _ = self.poll_errors.get_or_create(&LagErrorLabels { kind });
        }
    }

    pub fn record_poll_error(&self, kind: &'static str) {
        self.poll_errors.get_or_create(&LagErrorLabels { kind }).inc();
    }
}

/// A counter of US dollars kept as an integer number of pico-dollars
/// (1e-12 USD), so that sums of per-token prices are exact (a float
/// accumulator drifts after millions of small additions) and scrapes show
/// the exact decimal amount. Wraps after 2^64 pico-dollars (about 18
/// million USD) per process lifetime; counters restart at zero anyway.
#[derive(Debug, Default)]
pub struct PicoUsd(std::sync::atomic::AtomicU64);

impl PicoUsd {
    pub fn add_pico(&self, pico: u64) {
        self.0.fetch_add(pico, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn pico(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl prometheus_client::metrics::counter::Atomic<f64> for PicoUsd {
    fn inc(&self) -> f64 {
        self.inc_by(1.0)
    }

    fn inc_by(&self, usd: f64) -> f64 {
        let before = self.get();
        self.add_pico((usd.max(0.0) * 1e12).round() as u64);
        before
    }

    fn get(&self) -> f64 {
        // One correctly rounded division: the nearest double to the exact
        // decimal amount, which prints as that decimal.
        self.pico() as f64 / 1e12
    }
}

/// A dollar counter with exact sums (see [`PicoUsd`]).
pub type UsdCounter = Counter<f64, PicoUsd>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub topic: String,
    pub model: String,
    /// One of `input`, `cached_input`, `cache_write`, `output`, `reasoning`.
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub topic: String,
    pub model: String,
}

/// The flow of a completed flow's cost.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowCostLabels {
    pub flow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    pub budget: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetAlertLabels {
    pub budget: String,
    /// `sent` (acknowledged by the broker) or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DlqLabels {
    pub dlq_topic: String,
    pub source_topic: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DlqTopicLabels {
    pub dlq_topic: String,
}

/// Bucket bounds (USD) for the cost of one completed flow: from a tenth of
/// a cent (a few small-model calls) to 10 USD (a runaway agent loop).
pub const FLOW_COST_BUCKETS: [f64; 12] = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 10.0];

/// Families of LLM cost accounting, budgets and dead-letter analytics
/// (see `docs/cost.md` and `docs/dlq.md`).
pub struct AccountingMetrics {
    pub llm_tokens: Family<TokenLabels, Counter>,
    pub llm_cost: Family<ModelLabels, UsdCounter>,
    pub llm_unpriced_tokens: Family<ModelLabels, Counter>,
    pub flow_cost: Family<FlowCostLabels, Histogram>,
    pub budget_used: Family<BudgetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub budget_alerts: Family<BudgetAlertLabels, Counter>,
    pub dlq_records: Family<DlqLabels, Counter>,
    pub dlq_newest_age: Family<DlqTopicLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub dlq_newest_timestamp: Family<DlqTopicLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub model_limiter: LabelLimiter,
    pub flow_limiter: LabelLimiter,
    pub source_topic_limiter: LabelLimiter,
}

impl AccountingMetrics {
    fn new(max_label_values: usize) -> Self {
        Self {
            llm_tokens: Family::default(),
            llm_cost: Family::default(),
            llm_unpriced_tokens: Family::default(),
            flow_cost: Family::new_with_constructor(|| Histogram::new(FLOW_COST_BUCKETS)),
            budget_used: Family::default(),
            budget_alerts: Family::default(),
            dlq_records: Family::default(),
            dlq_newest_age: Family::default(),
            dlq_newest_timestamp: Family::default(),
            model_limiter: LabelLimiter::new("model", max_label_values),
            flow_limiter: LabelLimiter::new("flow", max_label_values),
            source_topic_limiter: LabelLimiter::new("source_topic", max_label_values),
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "llm_tokens",
            "LLM tokens reported by events, by topic, model and disjoint type (input, cached_input, cache_write, output, reasoning)",
            self.llm_tokens.clone(),
        );
        registry.register(
            "llm_cost_usd",
            "Cost in USD of the LLM tokens reported by events, by topic and model (priced models only)",
            self.llm_cost.clone(),
        );
        registry.register(
            "llm_unpriced_tokens",
            "LLM tokens of models without a price (never counted as free), by topic and model",
            self.llm_unpriced_tokens.clone(),
        );
        registry.register(
            "flow_cost_usd",
            "Cost in USD of one completed flow (the LLM costs of its events)",
            self.flow_cost.clone(),
        );
        registry.register(
            "budget_used_ratio",
            "Spend of the current clock hour divided by the budget's usd_per_hour, per budget",
            self.budget_used.clone(),
        );
        registry.register(
            "budget_alerts",
            "Budget alert events published to the alerts topic, by budget and result (sent, failed)",
            self.budget_alerts.clone(),
        );
        registry.register(
            "dlq_records",
            "Dead-letter records by dead-letter topic, source topic and bounded reason",
            self.dlq_records.clone(),
        );
        registry.register(
            "dlq_newest_record_age_seconds",
            "Age of the newest record seen on each dead-letter topic",
            self.dlq_newest_age.clone(),
        );
        registry.register(
            "dlq_newest_record_timestamp_seconds",
            "Time (seconds since the epoch) of the newest record seen on each dead-letter topic",
            self.dlq_newest_timestamp.clone(),
        );
    }

    /// Admits a model name as a label value (or [`OVERFLOW`]).
    pub fn model_label(&self, model: &str, overflow: &Family<LabelNameLabels, Counter>) -> String {
        self.model_limiter.admit(model, overflow)
    }

    /// The histogram of one flow's completed cost; callers that observe
    /// many flows of the same name should keep the handle.
    pub fn flow_cost_handle(&self, flow: &str, overflow: &Family<LabelNameLabels, Counter>) -> Histogram {
        let flow = self.flow_limiter.admit(flow, overflow);
        self.flow_cost.get_or_create_owned(&FlowCostLabels { flow })
    }
}

impl Metrics {
    /// Records the cost of one completed flow (the correlator calls this
    /// when a flow completes; `usd` is the sum of its events' costs).
    pub fn record_flow_cost(&self, flow: &str, usd: f64) {
        self.accounting.flow_cost_handle(flow, &self.label_overflow).observe(usd);
    }
}

/// Label of a flow's end-to-end figures: `outcome` is `success` or `failure`
/// (and `timed_out` for the trace counter).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub flow: String,
    pub outcome: &'static str,
}

/// A stalled trace's flow and the last stage (event type) it reached.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StallLabels {
    pub flow: String,
    pub last_stage: String,
}

/// One stage edge: the event type before and after, within a trace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeLabels {
    pub from_event_type: String,
    pub to_event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabels {
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicProducerLabels {
    pub topic: String,
    pub producer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProducerOnlyLabels {
    pub producer: String,
}

/// The exemplar of an end-to-end latency: the trace it came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    pub trace_id: String,
}

/// Bucket bounds (seconds) of producer clock skew (record timestamp minus
/// created_at), negative when created_at is later than the record timestamp.
pub const SKEW_BUCKETS: [f64; 13] = [-60.0, -5.0, -1.0, -0.1, -0.01, 0.0, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 60.0];

pub type FlowHistogram = HistogramWithExemplars<TraceExemplar>;

fn flow_histogram() -> FlowHistogram {
    HistogramWithExemplars::new(AGE_BUCKETS.into_iter())
}

fn age_histogram() -> BatchHistogram {
    BatchHistogram::new(&AGE_BUCKETS)
}

fn skew_histogram() -> BatchHistogram {
    BatchHistogram::new(&SKEW_BUCKETS)
}

/// The correlator's families (see docs/correlation.md and docs/metrics.md).
#[derive(Clone)]
pub struct CorrelationMetrics {
    pub flow_duration: Family<FlowLabels, FlowHistogram, fn() -> FlowHistogram>,
    pub flow_traces: Family<FlowLabels, Counter>,
    pub stalled_total: Family<StallLabels, Counter>,
    pub stalled: Family<StallLabels, Gauge>,
    pub stage_duration: Family<EdgeLabels, BatchHistogram, fn() -> BatchHistogram>,
    pub open_traces: Gauge,
    pub table_bytes: Gauge,
    pub evictions: Family<EvictionLabels, Counter>,
    pub duplicates: Family<TopicLabels, Counter>,
    pub out_of_order: Family<TopicLabels, Counter>,
    pub uncorrelated: Family<TopicProducerLabels, Counter>,
    pub clock_skew: Family<ProducerOnlyLabels, BatchHistogram, fn() -> BatchHistogram>,
    pub observations: Family<ResultLabels, Counter>,
}

impl Default for CorrelationMetrics {
    fn default() -> Self {
        Self {
            flow_duration: Family::new_with_constructor(flow_histogram),
            flow_traces: Family::default(),
            stalled_total: Family::default(),
            stalled: Family::default(),
            stage_duration: Family::new_with_constructor(age_histogram),
            open_traces: Gauge::default(),
            table_bytes: Gauge::default(),
            evictions: Family::default(),
            duplicates: Family::default(),
            out_of_order: Family::default(),
            uncorrelated: Family::default(),
            clock_skew: Family::new_with_constructor(skew_histogram),
            observations: Family::default(),
        }
    }
}

impl CorrelationMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "flow_duration_seconds",
            "End-to-end latency of finished traces by flow and outcome: terminal event time minus first event time",
            self.flow_duration.clone(),
        );
        registry.register(
            "flow_traces",
            "Traces by flow and outcome: success, failure (terminal event seen), timed_out (SLA passed first)",
            self.flow_traces.clone(),
        );
        registry.register(
            "stalled_traces",
            "Traces counted as stalled (SLA passed without a terminal event), by flow and last stage reached",
            self.stalled_total.clone(),
        );
        registry.register(
            "stalled_open_traces",
            "Traces stalled now (not finished, still in the table), by flow and last stage reached",
            self.stalled.clone(),
        );
        registry.register(
            "stage_duration_seconds",
            "Event-time latency between consecutive events of a trace, by event type before and after",
            self.stage_duration.clone(),
        );
        registry.register("trace_table_traces", "Traces held in the trace table", self.open_traces.clone());
        registry.register(
            "trace_table_bytes",
            "Estimated memory held by the trace table (index, slots and timelines)",
            self.table_bytes.clone(),
        );
        registry.register(
            "trace_evictions",
            "Traces that left the trace table, by cause (ttl_finished, ttl_open, capacity, rejected)",
            self.evictions.clone(),
        );
        registry.register(
            "duplicate_events",
            "Events whose event_id was already seen in the same trace (redeliveries), by topic",
            self.duplicates.clone(),
        );
        registry.register(
            "out_of_order_events",
            "Events older (in event time) than an event of the same trace observed before them, by topic",
            self.out_of_order.clone(),
        );
        registry.register(
            "uncorrelated_events",
            "Events without a correlation ID (broken propagation), by topic and producer",
            self.uncorrelated.clone(),
        );
        registry.register(
            "clock_skew_seconds",
            "Kafka record timestamp minus created_at, by producer",
            self.clock_skew.clone(),
        );
        registry.register(
            "observations",
            "Observations in scale-out mode by result (produced, dropped, consumed, undecodable)",
            self.observations.clone(),
        );
        for cause in ["ttl_finished", "ttl_open", "capacity", "rejected"] {
            let _ = self.evictions.get_or_create(&EvictionLabels { cause });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_admits_up_to_the_cap_then_overflows() {
        let metrics = Metrics::new(2);
        assert_eq!(metrics.event_type_label("a"), "a");
        assert_eq!(metrics.event_type_label("b"), "b");
        assert_eq!(metrics.event_type_label("a"), "a");
        assert_eq!(metrics.event_type_label("c"), OVERFLOW);
        assert_eq!(metrics.event_type_label("d"), OVERFLOW);
        // Each label name has its own cap.
        assert_eq!(metrics.producer_label("c"), "c");
        let overflowed = metrics.label_overflow.get_or_create(&LabelNameLabels { label: "event_type" }).get();
        assert_eq!(overflowed, 2);
    }

    #[test]
    fn dollar_counters_sum_exactly() {
        let counter = UsdCounter::default();
        for _ in 0..1_000_000 {
            counter.inner().add_pico(75_000); // 0.075 USD per million tokens, one token
        }
        assert_eq!(counter.get(), 0.075);
        counter.inc_by(0.000_001);
        assert_eq!(counter.inner().pico(), 75_001_000_000);
        let mut text = String::new();
        let mut registry = Registry::default();
        registry.register("cost_usd", "test", counter);
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("cost_usd_total 0.075001\n"), "{text}");
    }

    #[test]
    fn a_batch_histogram_reads_as_the_histogram_it_replaces() {
        let values = [0.0, 1e-6, 1.5e-6, 7e-6, 7e-6, 3e-4, 0.02, 5.0, 2.5e-3];
        let (histogram, batched) = (Histogram::new(PROCESSING_BUCKETS), BatchHistogram::new(&PROCESSING_BUCKETS));
        let mut batch = batched.observations();
        for (i, value) in values.into_iter().enumerate() {
            histogram.observe(value);
            batch.observe(value);
            if i % 4 == 3 {
                batched.add(&mut batch);
            }
        }
        let text = |name: &str| {
            let mut registry = Registry::default();
            match name {
                "histogram" => registry.register("seconds", "test", histogram.clone()),
                _ => registry.register("seconds", "test", batched.clone()),
            }
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        // Not added yet: the last value.
        assert_ne!(text("histogram"), text("batched"));
        batched.add(&mut batch);
        assert_eq!(text("histogram"), text("batched"));
        assert!(text("batched").contains("seconds_bucket{le=\"0.000005\"} 3\n"), "{}", text("batched"));
        assert!(text("batched").contains("seconds_count 9\n"), "{}", text("batched"));
        // Adding an empty batch changes nothing.
        batched.add(&mut batch);
        assert_eq!(text("histogram"), text("batched"));
    }

    #[test]
    fn a_batch_handle_adds_on_flush_and_when_dropped() {
        let histogram = BatchHistogram::new(&AGE_BUCKETS);
        let count = || {
            let mut registry = Registry::default();
            registry.register("age", "test", histogram.clone());
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text.lines().find_map(|l| l.strip_prefix("age_count ")).unwrap().parse::<u64>().unwrap()
        };
        let mut handle = BatchHandle::new(histogram.clone());
        handle.observe(0.2);
        handle.observe(7.0);
        assert_eq!(count(), 0);
        handle.flush();
        assert_eq!(count(), 2);
        handle.observe(1.0);
        histogram.observe(3.0);
        assert_eq!(count(), 3);
        drop(handle);
        assert_eq!(count(), 4);
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_label("short", 10), "short");
        assert_eq!(truncate_label("abcdef", 3), "abc");
        assert_eq!(truncate_label("aé", 2), "a");
    }

    #[test]
    fn both_text_formats_render_the_same_families() {
        let metrics = Metrics::new(10);
        metrics.records.get_or_create(&TopicLabels { topic: "t\"x".into() }).inc();
        let mut open = String::new();
        metrics.encode_openmetrics(&mut open).unwrap();
        let mut text = String::new();
        metrics.encode_prometheus(&mut text).unwrap();
        assert!(open.contains("pipewarden_records_total{topic=\"t\\\"x\"} 1"), "{open}");
        assert!(open.ends_with("# EOF\n"));
        assert!(text.contains("# TYPE pipewarden_records_total counter"), "{text}");
        assert!(text.contains("pipewarden_records_total{topic=\"t\\\"x\"} 1"), "{text}");
        assert!(!text.contains("# EOF"));
        assert!(text.contains("pipewarden_build_info{version=\""), "{text}");
    }

    #[test]
    fn every_family_is_documented_in_docs_metrics_md() {
        let docs = include_str!("../docs/metrics.md");
        let metrics = Metrics::new(1);
        // Families appear in a scrape once they have a series.
        let topic = || TopicLabels { topic: "t".into() };
        metrics.records.get_or_create(&topic()).inc();
        metrics.record_bytes.get_or_create(&topic()).inc();
        metrics.event_age.get_or_create(&topic()).observe(1.0);
        metrics.format_counter("t", PayloadFormat::Json).inc();
        metrics.problem_counter("t", EnvelopeProblem::InvalidJson).inc();
        metrics.events.get_or_create(&EventTypeLabels { topic: "t".into(), event_type: "e".into() }).inc();
        metrics.producer_events.get_or_create(&ProducerLabels { topic: "t".into(), producer: "p".into() }).inc();
        metrics.topic_label("a");
        metrics.topic_label("b");
        metrics.verdicts.get_or_create(&VerdictLabels { topic: "t".into(), verdict: "valid" }).inc();
        metrics.invalid_records.get_or_create(&ProblemLabels { topic: "t".into(), reason: "pii" }).inc();
        metrics.unverified_records.get_or_create(&ProblemLabels { topic: "t".into(), reason: "no_schema" }).inc();
        metrics.pii_detections.get_or_create(&PiiLabels { topic: "t".into(), kind: "email" }).inc();
        metrics.quarantined_records.get_or_create(&topic()).inc();
        metrics.quarantine_failures.get_or_create(&topic()).inc();
        metrics.schema_cache_lookups.get_or_create(&ResultLabels { result: "hit" }).inc();
        metrics.schema_fetches.get_or_create(&ResultLabels { result: "ok" }).inc();
        metrics.topic_naming_warnings.get_or_create(&topic()).set(1);
        let group_topic = || GroupTopicLabels { group: "g".into(), topic: "t".into() };
        metrics.lag.lag_messages.get_or_create(&group_topic()).set(1);
        let partition = GroupPartitionLabels { group: "g".into(), topic: "t".into(), partition: 0 };
        metrics.lag.partition_lag_messages.get_or_create(&partition).set(1);
        let method = GroupTopicMethodLabels { group: "g".into(), topic: "t".into(), method: "exact" };
        metrics.lag.lag_seconds.get_or_create(&method).set(1.0);
        metrics.lag.members.get_or_create(&GroupLabels { group: "g".into() }).set(1);
        let state = GroupStateLabels { group: "g".into(), state: "stable", protocol: "classic" };
        metrics.lag.state.get_or_create(&state).set(1);
        metrics.lag.status.get_or_create(&GroupStatusLabels { group: "g".into(), status: "ok" }).set(1);
        metrics.lag.stuck_partitions.get_or_create(&GroupLabels { group: "g".into() }).set(0);
        let accounting = &metrics.accounting;
        let model = || ModelLabels { topic: "t".into(), model: "m".into() };
        accounting
            .llm_tokens
            .get_or_create(&TokenLabels { topic: "t".into(), model: "m".into(), r#type: "input" })
            .inc();
        accounting.llm_cost.get_or_create(&model()).inc_by(0.5);
        accounting.llm_unpriced_tokens.get_or_create(&model()).inc();
        metrics.record_flow_cost("f", 0.01);
        accounting.budget_used.get_or_create(&BudgetLabels { budget: "b".into() }).set(0.5);
        accounting.budget_alerts.get_or_create(&BudgetAlertLabels { budget: "b".into(), result: "sent" }).inc();
        let dlq = || DlqTopicLabels { dlq_topic: "d".into() };
        accounting
            .dlq_records
            .get_or_create(&DlqLabels { dlq_topic: "d".into(), source_topic: "t".into(), reason: "r".into() })
            .inc();
        accounting.dlq_newest_age.get_or_create(&dlq()).set(1.0);
        accounting.dlq_newest_timestamp.get_or_create(&dlq()).set(1.0);
        let correlation = &metrics.correlation;
        let flow = FlowLabels { flow: "f".into(), outcome: "success" };
        correlation.flow_duration.get_or_create(&flow).observe(1.0, None, None);
        correlation.flow_traces.get_or_create(&flow).inc();
        let stall = StallLabels { flow: "f".into(), last_stage: "s".into() };
        correlation.stalled_total.get_or_create(&stall).inc();
        correlation.stalled.get_or_create(&stall).inc();
        let edge = EdgeLabels { from_event_type: "a".into(), to_event_type: "b".into() };
        correlation.stage_duration.get_or_create(&edge).observe(1.0);
        correlation.duplicates.get_or_create(&topic()).inc();
        correlation.out_of_order.get_or_create(&topic()).inc();
        correlation.uncorrelated.get_or_create(&TopicProducerLabels { topic: "t".into(), producer: "p".into() }).inc();
        correlation.clock_skew.get_or_create(&ProducerOnlyLabels { producer: "p".into() }).observe(0.0);
        correlation.observations.get_or_create(&ResultLabels { result: "produced" }).inc();
        let mut text = String::new();
        metrics.encode_prometheus(&mut text).unwrap();
        let names: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        assert!(names.len() >= 58, "{names:?}");
        for name in names {
            assert!(docs.contains(&format!("`{name}`")), "{name} is not documented in docs/metrics.md");
        }
    }
}
