//! Unit tests of the span sink and the protobuf mapping: no receiver, the
//! queue is read directly.

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use super::chain::LastSpans;
use super::*;
use crate::metrics::{SpanDropLabels, SpanDropReason};

const TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn event<'a>(correlation_id: &'a str, offset: i64) -> SpanEvent<'a> {
    SpanEvent {
        traceparent: None,
        correlation_id: Some(correlation_id),
        event_id: Some("evt-1"),
        event_type: Some("support.ticket.classified"),
        topic: "support.tickets",
        partition: 2,
        offset,
        consumer_group: "pipewarden",
        created_at_us: Some(1_700_000_000_000_000),
        record_timestamp_us: Some(1_700_000_000_250_000),
        producer: Some("classifier-agent"),
        verdict: SpanVerdict::Valid,
        model: None,
        tokens: TokenUsage::default(),
        previous: None,
    }
}

fn rendered(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => format!("int:{i}"),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn dropped(metrics: &Metrics, reason: SpanDropReason) -> u64 {
    metrics.spans_dropped.get_or_create(&SpanDropLabels { reason }).get()
}

#[test]
fn an_llm_event_maps_to_a_producer_span_with_messaging_and_genai_attributes() {
    let metrics = Metrics::new(10);
    let (sink, queue, _) = test_sink(8, 1.0, &metrics);
    let mut llm = event("ticket-7", 1234);
    llm.model = Some("gpt-4o-mini");
    llm.tokens = TokenUsage { input: Some(812), output: Some(96), cached: Some(512), reasoning: Some(40) };
    assert_eq!(sink.offer(&llm), Offered::Queued);
    let queued = queue.try_recv().unwrap();
    let span = convert::to_proto(&queued, None);

    assert_eq!(span.name, "send support.ticket.classified");
    assert_eq!(span.kind, SpanKind::Producer as i32);
    assert_eq!(span.trace_id, TraceId::from_correlation_id("ticket-7").0.to_vec());
    assert_eq!(span.span_id, SpanId::for_record("support.tickets", 2, 1234).0.to_vec());
    assert!(span.parent_span_id.is_empty());
    assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_700_000_000_250_000_000);
    assert_eq!(span.status, None);
    assert!(span.links.is_empty());
    assert_eq!(
        rendered(&span.attributes),
        pairs(&[
            ("messaging.system", "kafka"),
            ("messaging.operation.type", "send"),
            ("messaging.operation.name", "send"),
            ("messaging.destination.name", "support.tickets"),
            ("messaging.destination.partition.id", "2"),
            ("messaging.kafka.offset", "int:1234"),
            ("messaging.consumer.group.name", "pipewarden"),
            ("messaging.message.id", "evt-1"),
            ("messaging.message.conversation_id", "ticket-7"),
            ("pipewarden.event_type", "support.ticket.classified"),
            ("pipewarden.producer", "classifier-agent"),
            ("pipewarden.verdict", "valid"),
            ("gen_ai.request.model", "gpt-4o-mini"),
            ("gen_ai.response.model", "gpt-4o-mini"),
            ("gen_ai.usage.input_tokens", "int:812"),
            ("gen_ai.usage.output_tokens", "int:96"),
            ("gen_ai.usage.cache_read.input_tokens", "int:512"),
            ("gen_ai.usage.reasoning.output_tokens", "int:40"),
        ])
    );
    assert_eq!(metrics.spans_queued.get(), 1);
}

#[test]
fn an_invalid_event_without_optional_fields_has_an_error_status_and_no_empty_attributes() {
    let metrics = Metrics::new(10);
    let (sink, queue, _) = test_sink(8, 1.0, &metrics);
    let mut poison = event("ticket-8", 5);
    poison.event_id = None;
    poison.event_type = None;
    poison.producer = Some("");
    poison.verdict = SpanVerdict::Invalid("schema_mismatch");
    poison.created_at_us = None;
    sink.offer(&poison);
    let queued = queue.try_recv().unwrap();
    let span = convert::to_proto(&queued, None);
    assert_eq!(span.name, "send support.tickets");
    // Only the Kafka timestamp: a zero-length span at it.
    assert_eq!(
        (span.start_time_unix_nano, span.end_time_unix_nano),
        (1_700_000_000_250_000_000, 1_700_000_000_250_000_000)
    );
    let status = span.status.unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "invalid record: schema_mismatch"));
    let keys: Vec<String> = rendered(&span.attributes).into_iter().map(|(k, _)| k).collect();
    assert!(!keys
        .iter()
        .any(|k| k == "messaging.message.id" || k == "pipewarden.event_type" || k.starts_with("gen_ai")));
    assert!(rendered(&span.attributes).contains(&("pipewarden.verdict.reason".into(), "schema_mismatch".into())));
    // No producer: the span goes to the unknown service.
    let request = convert::request(&[queued], &mut LastSpans::new(10));
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(rendered(&resource.attributes), pairs(&[("service.name", convert::UNKNOWN_SERVICE)]));
}

#[test]
fn traceparent_names_the_trace_and_links_the_agents_own_span() {
    let metrics = Metrics::new(10);
    let (sink, queue, _) = test_sink(8, 1.0, &metrics);
    let mut traced = event("ticket-9", 1);
    traced.traceparent = Some(TRACEPARENT);
    sink.offer(&traced);
    let span = convert::to_proto(&queue.try_recv().unwrap(), None);
    assert_eq!(TraceId(span.trace_id.clone().try_into().unwrap()).to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.links.len(), 1);
    assert_eq!(span.links[0].trace_id, span.trace_id);
    assert_eq!(SpanId(span.links[0].span_id.clone().try_into().unwrap()).to_string(), "00f067aa0ba902b7");
    // A malformed traceparent falls back to the correlation ID.
    traced.traceparent = Some(b"00-nothex");
    sink.offer(&traced);
    let span = convert::to_proto(&queue.try_recv().unwrap(), None);
    assert_eq!(span.trace_id, TraceId::from_correlation_id("ticket-9").0.to_vec());
    assert!(span.links.is_empty());
}

#[test]
fn end_before_start_is_clamped_and_records_without_ids_or_times_are_dropped_and_counted() {
    let metrics = Metrics::new(10);
    let (sink, queue, _) = test_sink(8, 1.0, &metrics);
    let mut skewed = event("t", 1);
    skewed.record_timestamp_us = Some(1_699_999_999_000_000);
    sink.offer(&skewed);
    let queued = queue.try_recv().unwrap();
    assert_eq!((queued.start_us, queued.end_us), (1_700_000_000_000_000, 1_700_000_000_000_000));

    let mut anonymous = event("", 2);
    assert_eq!(sink.offer(&anonymous), Offered::Dropped(SpanDropReason::no_trace_id));
    anonymous.correlation_id = None;
    assert_eq!(sink.offer(&anonymous), Offered::Dropped(SpanDropReason::no_trace_id));
    let mut timeless = event("t", 3);
    timeless.created_at_us = None;
    timeless.record_timestamp_us = None;
    assert_eq!(sink.offer(&timeless), Offered::Dropped(SpanDropReason::no_timestamp));
    assert_eq!(dropped(&metrics, SpanDropReason::no_trace_id), 2);
    assert_eq!(dropped(&metrics, SpanDropReason::no_timestamp), 1);
    assert_eq!(metrics.spans_queued.get(), 1);
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let metrics = Metrics::new(10);
    let (sink, queue, _) = test_sink(3, 1.0, &metrics);
    let results: Vec<Offered> = (0..10).map(|offset| sink.offer(&event("t", offset))).collect();
    assert_eq!(results.iter().filter(|r| **r == Offered::Queued).count(), 3);
    assert_eq!(dropped(&metrics, SpanDropReason::queue_full), 7);
    assert_eq!(metrics.spans_queued.get(), 3);
    // The queue keeps the first spans, in order; room frees up as the exporter takes them.
    let offsets: Vec<i64> = queue.try_iter().map(|span| span.offset).collect();
    assert_eq!(offsets, [0, 1, 2]);
    assert_eq!(sink.offer(&event("t", 10)), Offered::Queued);
    drop(queue);
    assert_eq!(sink.offer(&event("t", 11)), Offered::Dropped(SpanDropReason::exporter_stopped));
}

#[test]
fn sampling_keeps_or_drops_whole_traces() {
    let metrics = Metrics::new(10);
    let (sink, queue, _) = test_sink(10_000, 0.3, &metrics);
    let mut kept_traces = 0;
    for trace in 0..1_000 {
        let id = format!("flow-{trace}");
        let decisions: Vec<Offered> = (0..4).map(|n| sink.offer(&event(&id, trace * 4 + n))).collect();
        assert!(decisions.windows(2).all(|w| w[0] == w[1]), "trace {id} split: {decisions:?}");
        let expected = Sampler::new(0.3).keeps(&TraceId::from_correlation_id(&id));
        assert_eq!(decisions[0] == Offered::Queued, expected);
        kept_traces += usize::from(expected);
    }
    assert!((250..=350).contains(&kept_traces), "kept {kept_traces} of 1000 traces at 0.3");
    assert_eq!(queue.try_iter().count(), kept_traces * 4);
    assert_eq!(metrics.spans_queued.get(), kept_traces as u64 * 4);
    assert_eq!(metrics.spans_not_sampled.get(), (1_000 - kept_traces) as u64 * 4);
}

#[test]
fn spans_chain_to_the_previous_span_of_their_trace_across_batches() {
    let metrics = Metrics::new(10);
    let (sink, queue, _) = test_sink(16, 1.0, &metrics);
    // Trace a: offsets 0, 2, 3; trace b: 1, 4 (interleaved as a consumer sees them).
    for (id, offset) in [("a", 0), ("b", 1), ("a", 2), ("a", 3), ("b", 4)] {
        sink.offer(&event(id, offset));
    }
    let spans: Vec<QueuedSpan> = queue.try_iter().collect();
    let mut chain = LastSpans::new(100);
    let (first, second) = spans.split_at(3);
    let mut parents = Vec::new();
    for batch in [first, second] {
        let request = convert::request(batch, &mut chain);
        for span in &request.resource_spans[0].scope_spans[0].spans {
            parents.push((span.span_id.clone(), span.parent_span_id.clone()));
        }
    }
    let id = |offset| SpanId::for_record("support.tickets", 2, offset).0.to_vec();
    let expected = vec![(id(0), vec![]), (id(1), vec![]), (id(2), id(0)), (id(3), id(2)), (id(4), id(1))];
    assert_eq!(parents, expected);
}

#[test]
fn a_parent_named_by_the_caller_wins_over_the_exporters_chain() {
    let metrics = Metrics::new(10);
    let (sink, queue, _) = test_sink(16, 1.0, &metrics);
    let named = SpanId([7; 8]);
    sink.offer(&event("a", 0));
    sink.offer(&SpanEvent { previous: Some(named), ..event("a", 1) });
    // The same record read twice never becomes its own parent.
    sink.offer(&event("a", 1));
    let spans: Vec<QueuedSpan> = queue.try_iter().collect();
    let request = convert::request(&spans, &mut LastSpans::new(10));
    let parents: Vec<Vec<u8>> =
        request.resource_spans[0].scope_spans[0].spans.iter().map(|s| s.parent_span_id.clone()).collect();
    assert_eq!(parents, vec![vec![], named.0.to_vec(), vec![]]);
}

#[test]
fn spans_are_grouped_by_producing_agent_and_scoped_to_pipewarden() {
    let metrics = Metrics::new(10);
    let (sink, queue, _) = test_sink(16, 1.0, &metrics);
    for (offset, producer) in [(0, "triage"), (1, "drafter"), (2, "triage")] {
        sink.offer(&SpanEvent { producer: Some(producer), ..event("a", offset) });
    }
    let spans: Vec<QueuedSpan> = queue.try_iter().collect();
    let request = convert::request(&spans, &mut LastSpans::new(10));
    type Summary = (Vec<(String, String)>, String, Vec<i64>);
    let summary: Vec<Summary> = request
        .resource_spans
        .iter()
        .map(|resource| {
            let scope = &resource.scope_spans[0];
            let offsets = scope
                .spans
                .iter()
                .map(|span| match rendered(&span.attributes)[5].1.strip_prefix("int:") {
                    Some(offset) => offset.parse().unwrap(),
                    None => -1,
                })
                .collect();
            (
                rendered(&resource.resource.as_ref().unwrap().attributes),
                scope.scope.as_ref().unwrap().name.clone(),
                offsets,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (pairs(&[("service.name", "drafter")]), "pipewarden".to_string(), vec![1]),
            (pairs(&[("service.name", "triage")]), "pipewarden".to_string(), vec![0, 2]),
        ]
    );
}

#[test]
fn long_text_is_cut_on_a_character_boundary() {
    let metrics = Metrics::new(10);
    let (sink, queue, _) = test_sink(4, 1.0, &metrics);
    let huge_id = "é".repeat(1_000);
    sink.offer(&SpanEvent { event_id: Some(&huge_id), ..event("t", 0) });
    let queued = queue.try_recv().unwrap();
    let id = queued.text(Text::EventId).unwrap();
    assert_eq!(id.len(), MAX_TEXT_BYTES);
    assert_eq!(id, "é".repeat(MAX_TEXT_BYTES / 2));
    assert_eq!(queued.text(Text::Topic), Some("support.tickets"));
    assert_eq!(queued.text(Text::ConsumerGroup), Some("pipewarden"));
}

#[test]
fn http_endpoints_get_the_traces_path_once() {
    assert_eq!(export::traces_url("http://c:4318"), "http://c:4318/v1/traces");
    assert_eq!(export::traces_url("http://c:4318/"), "http://c:4318/v1/traces");
    assert_eq!(export::traces_url("https://c/otlp/v1/traces"), "https://c/otlp/v1/traces");
}

#[test]
fn a_queued_span_is_small() {
    // The queue's memory bound in docs/tracing.md and config.toml rests on this.
    let size = std::mem::size_of::<QueuedSpan>();
    assert!(size <= 224, "QueuedSpan is {size} bytes");
}

#[test]
fn buffers_the_exporter_hands_back_are_reused() {
    let metrics = Metrics::new(10);
    let (sink, queue, recycle) = test_sink(4, 1.0, &metrics);
    sink.offer(&event("a", 0));
    let first = queue.try_recv().unwrap();
    let mut buffer = first.text;
    let address = buffer.as_ptr();
    buffer.clear();
    recycle.try_send(buffer).unwrap();
    sink.offer(&event("a", 1));
    let second = queue.try_recv().unwrap();
    assert_eq!(second.text.as_ptr(), address, "the recycled buffer carries the next span");
    assert_eq!(second.text(Text::Topic), Some("support.tickets"));
    assert_eq!(second.offset, 1);
}
