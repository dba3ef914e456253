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
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
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
    pub event_age: Family<TopicLabels, Histogram, fn() -> Histogram>,
    pub processing: Histogram,
    pub consumer_errors: Family<ConsumerErrorLabels, Counter>,
    pub rebalances: Family<RebalanceLabels, Counter>,
    pub offset_commits: Family<CommitLabels, Counter>,
    pub assigned_partitions: Gauge,
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
            event_age: Family::new_with_constructor(|| Histogram::new(AGE_BUCKETS)),
            processing: Histogram::new(PROCESSING_BUCKETS),
            consumer_errors: Family::default(),
            rebalances: Family::default(),
            offset_commits: Family::default(),
            assigned_partitions: Gauge::default(),
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
        for kind in [RebalanceKind::assign, RebalanceKind::revoke, RebalanceKind::error] {
            let _ = metrics.rebalances.get_or_create(&RebalanceLabels { kind });
        }
        for reason in ["schema_unavailable", "quarantine_failed"] {
            let _ = metrics.paused_partitions.get_or_create(&PauseLabels { reason });
        }
        for result in [CommitResult::success, CommitResult::failure] {
            let _ = metrics.offset_commits.get_or_create(&CommitLabels { result });
        }
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
        let mut text = String::new();
        metrics.encode_prometheus(&mut text).unwrap();
        let names: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        assert!(names.len() >= 28, "{names:?}");
        for name in names {
            assert!(docs.contains(&format!("`{name}`")), "{name} is not documented in docs/metrics.md");
        }
    }
}
