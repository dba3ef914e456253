//! Queued spans → OTLP protobuf messages (`opentelemetry-proto`).
//!
//! In: a batch of [`QueuedSpan`]s in queue order and the exporter's chain of
//! last spans. Out: one `ExportTraceServiceRequest` with one resource per
//! producing agent (`service.name`), each with one `pipewarden` scope.
//! Attribute names follow the OpenTelemetry messaging conventions for Kafka
//! and the GenAI conventions; docs/tracing.md lists them.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::chain::LastSpans;
use super::{QueuedSpan, SpanId, SpanVerdict, Text};

/// `service.name` of spans whose event names no producer (OpenTelemetry's
/// own default for an unnamed service).
pub(crate) const UNKNOWN_SERVICE: &str = "unknown_service";

/// W3C trace flags of every exported span: sampled (it was kept).
const SAMPLED: u32 = 0x01;

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..Default::default()
    }
}

fn nanos(unix_us: i64) -> u64 {
    // Event times before 1970 are nonsense; they become the epoch rather than wrap.
    (unix_us.max(0) as u64).saturating_mul(1_000)
}

/// The span's name: `send <event type>`, or `send <topic>` without one.
pub(crate) fn span_name(span: &QueuedSpan) -> String {
    let target = span.text(Text::EventType).or(span.text(Text::Topic)).unwrap_or_default();
    format!("send {target}")
}

/// Every attribute of one span, in a fixed order.
pub(crate) fn attributes(span: &QueuedSpan) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(20);
    out.push(string("messaging.system", "kafka"));
    out.push(string("messaging.operation.type", "send"));
    out.push(string("messaging.operation.name", "send"));
    out.push(string("messaging.destination.name", span.text(Text::Topic).unwrap_or_default()));
    out.push(string("messaging.destination.partition.id", &span.partition.to_string()));
    out.push(int("messaging.kafka.offset", span.offset));
    if let Some(group) = span.text(Text::ConsumerGroup) {
        out.push(string("messaging.consumer.group.name", group));
    }
    if let Some(id) = span.text(Text::EventId) {
        out.push(string("messaging.message.id", id));
    }
    if let Some(id) = span.text(Text::CorrelationId) {
        out.push(string("messaging.message.conversation_id", id));
    }
    if let Some(event_type) = span.text(Text::EventType) {
        out.push(string("pipewarden.event_type", event_type));
    }
    if let Some(producer) = span.text(Text::Producer) {
        out.push(string("pipewarden.producer", producer));
    }
    out.push(string("pipewarden.verdict", span.verdict.as_str()));
    if let Some(reason) = span.verdict.reason() {
        out.push(string("pipewarden.verdict.reason", reason));
    }
    if let Some(model) = span.text(Text::Model) {
        out.push(string("gen_ai.request.model", model));
        out.push(string("gen_ai.response.model", model));
    }
    let tokens = [
        ("gen_ai.usage.input_tokens", span.tokens.input),
        ("gen_ai.usage.output_tokens", span.tokens.output),
        ("gen_ai.usage.cache_read.input_tokens", span.tokens.cached),
        ("gen_ai.usage.reasoning.output_tokens", span.tokens.reasoning),
    ];
    for (key, count) in tokens {
        if let Some(count) = count {
            out.push(int(key, count.min(i64::MAX as u64) as i64));
        }
    }
    out
}

/// One protobuf span; `parent` is the previous span of its trace, if any.
pub(crate) fn to_proto(span: &QueuedSpan, parent: Option<SpanId>) -> Span {
    let status = match span.verdict {
        SpanVerdict::Invalid(reason) => {
            Some(Status { code: StatusCode::Error as i32, message: format!("invalid record: {reason}") })
        }
        _ => None,
    };
    let links = span
        .linked
        .map(|agent_span| Link {
            trace_id: span.trace_id.0.to_vec(),
            span_id: agent_span.0.to_vec(),
            attributes: vec![string("pipewarden.link", "traceparent")],
            flags: SAMPLED,
            ..Default::default()
        })
        .into_iter()
        .collect();
    Span {
        trace_id: span.trace_id.0.to_vec(),
        span_id: span.span_id.0.to_vec(),
        parent_span_id: parent.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: SAMPLED,
        name: span_name(span),
        kind: SpanKind::Producer as i32,
        start_time_unix_nano: nanos(span.start_us),
        end_time_unix_nano: nanos(span.end_us),
        attributes: attributes(span),
        links,
        status,
        ..Default::default()
    }
}

/// One export request for a batch, in queue order within each producer.
/// Each span's parent is the caller's `previous`, else the last span the
/// chain remembers for its trace; the chain then remembers this span.
pub(crate) fn request(batch: &[QueuedSpan], chain: &mut LastSpans) -> ExportTraceServiceRequest {
    let mut by_service: BTreeMap<&str, Vec<Span>> = BTreeMap::new();
    for span in batch {
        let remembered = chain.replace(span.trace_id, span.span_id);
        // A record read twice (a replay after a retry) must not become its own parent.
        let parent = span.previous.or(remembered).filter(|parent| *parent != span.span_id);
        let service = span.text(Text::Producer).unwrap_or(UNKNOWN_SERVICE);
        by_service.entry(service).or_default().push(to_proto(span, parent));
    }
    let scope = InstrumentationScope {
        name: "pipewarden".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    let resource_spans = by_service
        .into_iter()
        .map(|(service, spans)| ResourceSpans {
            resource: Some(Resource { attributes: vec![string("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans { scope: Some(scope.clone()), spans, ..Default::default() }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}
