//! Span export against a real OpenTelemetry Collector (scripts/otel.sh: an
//! OTLP receiver on gRPC and HTTP that appends every span it receives to a
//! file as OTLP/JSON). Each test reads back exactly the spans of its own
//! random traces and asserts IDs, parent chaining, names, kinds, times and
//! attributes; the daemon test produces records to the real broker.
//!
//! `scripts/test.sh` starts the collector and sets OTLP_GRPC_ENDPOINT,
//! OTLP_HTTP_ENDPOINT and OTEL_TRACES_FILE; without them the defaults of
//! `scripts/otel.sh start` are used.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pipewarden::config::Config;
use pipewarden::metrics::{Metrics, SpanDropLabels, SpanDropReason, SpanExportFailure, SpanExportFailureLabels};
use pipewarden::spans::{Offered, SpanEvent, SpanId, SpanSink, SpanVerdict, TokenUsage, TraceId};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn grpc_endpoint() -> String {
    std::env::var("OTLP_GRPC_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4317".into())
}

fn http_endpoint() -> String {
    std::env::var("OTLP_HTTP_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4318".into())
}

fn traces_file() -> String {
    std::env::var("OTEL_TRACES_FILE")
        .unwrap_or_else(|_| format!("{}/.run/otel/traces.jsonl", env!("CARGO_MANIFEST_DIR")))
}

/// One span as the collector wrote it, flattened for exact comparison.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    service: String,
    scope: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i64,
    start_ns: u64,
    end_ns: u64,
    attributes: BTreeMap<String, String>,
    /// (trace ID, span ID) of each link.
    links: Vec<(String, String)>,
    /// (code, message); code 0 when unset.
    status: (i64, String),
}

fn text(value: &Value) -> String {
    value.as_str().map(str::to_string).unwrap_or_default()
}

/// OTLP/JSON encodes 64-bit integers as strings.
fn number(value: &Value) -> u64 {
    value.as_str().and_then(|s| s.parse().ok()).or(value.as_u64()).unwrap_or(0)
}

fn attribute_value(value: &Value) -> String {
    if let Some(s) = value.get("stringValue") {
        return text(s);
    }
    if let Some(i) = value.get("intValue") {
        return format!("int:{}", number(i));
    }
    format!("{value}")
}

fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array().into_iter().flatten().map(|kv| (text(&kv["key"]), attribute_value(&kv["value"]))).collect()
}

/// Every span in the collector's file whose trace ID is one of `traces`.
fn received(traces: &[String]) -> Vec<Received> {
    let content = std::fs::read_to_string(traces_file()).unwrap_or_default();
    let mut out = Vec::new();
    for line in content.lines() {
        let Ok(data) = serde_json::from_str::<Value>(line) else { continue };
        for resource in data["resourceSpans"].as_array().into_iter().flatten() {
            let service = attributes(&resource["resource"]["attributes"]).remove("service.name").unwrap_or_default();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let trace_id = text(&span["traceId"]);
                    if !traces.contains(&trace_id) {
                        continue;
                    }
                    out.push(Received {
                        service: service.clone(),
                        scope: text(&scope["scope"]["name"]),
                        trace_id,
                        span_id: text(&span["spanId"]),
                        parent_span_id: text(&span["parentSpanId"]),
                        name: text(&span["name"]),
                        kind: span["kind"].as_i64().unwrap_or(0),
                        start_ns: number(&span["startTimeUnixNano"]),
                        end_ns: number(&span["endTimeUnixNano"]),
                        attributes: attributes(&span["attributes"]),
                        links: span["links"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|link| (text(&link["traceId"]), text(&link["spanId"])))
                            .collect(),
                        status: (span["status"]["code"].as_i64().unwrap_or(0), text(&span["status"]["message"])),
                    });
                }
            }
        }
    }
    out
}

/// Waits until the collector has written `count` spans of `traces`; fails
/// the test (with the collector's whereabouts) otherwise.
fn wait_for_spans(traces: &[String], count: usize) -> Vec<Received> {
    let deadline = Instant::now() + WAIT;
    loop {
        let spans = received(traces);
        if spans.len() >= count {
            // A duplicate write would show up here: give it a moment, then take the final list.
            std::thread::sleep(Duration::from_millis(500));
            return received(traces);
        }
        assert!(
            Instant::now() < deadline,
            "the collector wrote {} of {count} spans to {} (is it running? scripts/otel.sh start)",
            spans.len(),
            traces_file()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sink(endpoint: &str, protocol: &str, metrics: &Arc<Metrics>) -> SpanSink {
    let toml = format!(
        "[otlp]\nendpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\nexport_interval_ms = 100\nbatch_size = 3\ntimeout_ms = 2000\n"
    );
    let config = Config::from_toml(&toml, &|_| None).unwrap();
    SpanSink::start(&config, metrics.clone()).unwrap().expect("export is on")
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// 2026-03-01T12:00:00Z in microseconds; the crafted events are offsets from it.
const T0_US: i64 = 1_772_366_400_000_000;

/// One valid event of `correlation_id`; times are milliseconds after T0.
fn crafted<'a>(
    correlation_id: &'a str,
    event_type: &'a str,
    (topic, partition, offset): (&'a str, i32, i64),
    producer: &'a str,
    (created_ms, appended_ms): (i64, i64),
) -> SpanEvent<'a> {
    SpanEvent {
        traceparent: None,
        correlation_id: Some(correlation_id),
        event_id: Some(event_type),
        event_type: Some(event_type),
        topic,
        partition,
        offset,
        consumer_group: "pipewarden-it",
        created_at_us: Some(T0_US + created_ms * 1_000),
        record_timestamp_us: Some(T0_US + appended_ms * 1_000),
        producer: Some(producer),
        verdict: SpanVerdict::Valid,
        model: None,
        tokens: TokenUsage::default(),
        previous: None,
    }
}

/// A support-triage trace of four events (one with LLM usage, one invalid)
/// plus a one-event trace named by a `traceparent` header, through the
/// exporter alone; everything the collector received is asserted.
fn exports_a_chained_trace(endpoint: &str, protocol: &str) {
    let correlation_id = unique("ticket");
    let traceparent_trace = format!("{:032x}", rand::random::<u128>() | 1);
    let traceparent = format!("00-{traceparent_trace}-00f067aa0ba902b7-01");
    let metrics = Arc::new(Metrics::new(100));
    let sink = sink(endpoint, protocol, &metrics);

    let event = |event_type, topic, partition, offset, producer, created_ms, appended_ms| {
        crafted(&correlation_id, event_type, (topic, partition, offset), producer, (created_ms, appended_ms))
    };
    let created = event("support.ticket.created", "support.tickets", 0, 10, "intake", 0, 4);
    let classified = SpanEvent {
        model: Some("gpt-4o-mini"),
        tokens: TokenUsage { input: Some(812), output: Some(96), cached: Some(512), reasoning: None },
        ..event("support.ticket.classified", "support.triage", 1, 20, "classifier", 1_250, 1_262)
    };
    let drafted = event("support.answer.drafted", "support.answers", 2, 30, "drafter", 3_000, 3_001);
    let rejected = SpanEvent {
        verdict: SpanVerdict::Invalid("schema_mismatch"),
        ..event("support.answer.rejected", "support.answers", 2, 31, "reviewer", 4_500, 4_507)
    };
    let foreign = SpanEvent {
        traceparent: Some(traceparent.as_bytes()),
        correlation_id: Some("ignored-when-traceparent-is-valid"),
        ..event("doc.extracted", "doc.events", 0, 7, "extractor", 9_000, 9_010)
    };
    for event in [&created, &classified, &drafted, &rejected, &foreign] {
        assert_eq!(sink.offer(event), Offered::Queued);
    }
    assert!(sink.shutdown(), "the exporter flushed before its deadline");

    let trace = TraceId::from_correlation_id(&correlation_id).to_string();
    let spans = wait_for_spans(&[trace.clone(), traceparent_trace.clone()], 5);
    assert_eq!(spans.len(), 5, "each span exactly once: {spans:#?}");
    let by_id: BTreeMap<String, Received> = spans.into_iter().map(|s| (s.span_id.clone(), s)).collect();
    let id = |e: &SpanEvent| SpanId::for_record(e.topic, e.partition, e.offset).to_string();

    let common = |e: &SpanEvent, conversation: &str| {
        let mut attributes = map(&[
            ("messaging.system", "kafka"),
            ("messaging.operation.type", "send"),
            ("messaging.operation.name", "send"),
            ("messaging.consumer.group.name", "pipewarden-it"),
            ("messaging.message.conversation_id", conversation),
            ("pipewarden.verdict", e.verdict.as_str()),
        ]);
        attributes.insert("messaging.destination.name".into(), e.topic.into());
        attributes.insert("messaging.destination.partition.id".into(), e.partition.to_string());
        attributes.insert("messaging.kafka.offset".into(), format!("int:{}", e.offset));
        attributes.insert("messaging.message.id".into(), e.event_id.unwrap().into());
        attributes.insert("pipewarden.event_type".into(), e.event_type.unwrap().into());
        attributes.insert("pipewarden.producer".into(), e.producer.unwrap().into());
        attributes
    };
    let expect = |e: &SpanEvent, trace: &str, parent: String, conversation: &str| Received {
        service: e.producer.unwrap().into(),
        scope: "pipewarden".into(),
        trace_id: trace.into(),
        span_id: id(e),
        parent_span_id: parent,
        name: format!("send {}", e.event_type.unwrap()),
        kind: 4,
        start_ns: e.created_at_us.unwrap() as u64 * 1_000,
        end_ns: e.record_timestamp_us.unwrap() as u64 * 1_000,
        attributes: common(e, conversation),
        links: vec![],
        status: (0, String::new()),
    };

    assert_eq!(by_id[&id(&created)], expect(&created, &trace, String::new(), &correlation_id));
    let mut llm = expect(&classified, &trace, id(&created), &correlation_id);
    llm.attributes.extend(map(&[
        ("gen_ai.request.model", "gpt-4o-mini"),
        ("gen_ai.response.model", "gpt-4o-mini"),
        ("gen_ai.usage.input_tokens", "int:812"),
        ("gen_ai.usage.output_tokens", "int:96"),
        ("gen_ai.usage.cache_read.input_tokens", "int:512"),
    ]));
    assert_eq!(by_id[&id(&classified)], llm);
    assert_eq!(by_id[&id(&drafted)], expect(&drafted, &trace, id(&classified), &correlation_id));
    let mut invalid = expect(&rejected, &trace, id(&drafted), &correlation_id);
    invalid.attributes.insert("pipewarden.verdict.reason".into(), "schema_mismatch".into());
    invalid.status = (2, "invalid record: schema_mismatch".into());
    assert_eq!(by_id[&id(&rejected)], invalid);
    let mut linked = expect(&foreign, &traceparent_trace, String::new(), "ignored-when-traceparent-is-valid");
    linked.links = vec![(traceparent_trace.clone(), "00f067aa0ba902b7".into())];
    assert_eq!(by_id[&id(&foreign)], linked);

    assert_eq!(metrics.spans_exported.get(), 5);
    assert_eq!(metrics.spans_queued.get(), 5);
    for reason in [SpanDropReason::queue_full, SpanDropReason::export_failed, SpanDropReason::rejected] {
        assert_eq!(metrics.spans_dropped.get_or_create(&SpanDropLabels { reason }).get(), 0, "{reason:?}");
    }
}

#[test]
fn a_chained_trace_arrives_over_grpc() {
    exports_a_chained_trace(&grpc_endpoint(), "grpc");
}

#[test]
fn a_chained_trace_arrives_over_http_protobuf() {
    exports_a_chained_trace(&http_endpoint(), "http/protobuf");
}

#[test]
fn an_unreachable_receiver_costs_counted_drops_not_ingest_time() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = Arc::new(Metrics::new(100));
    let toml = format!(
        "[otlp]\nendpoint = \"http://127.0.0.1:{port}\"\nqueue_size = 4\nbatch_size = 2\nexport_interval_ms = 50\ntimeout_ms = 500\n"
    );
    let config = Config::from_toml(&toml, &|_| None).unwrap();
    let sink = SpanSink::start(&config, metrics.clone()).unwrap().unwrap();
    let started = Instant::now();
    let mut outcomes = BTreeMap::new();
    for offset in 0..1_000 {
        let event = crafted("unreachable", "e", ("t", 0, offset), "p", (0, 0));
        *outcomes.entry(format!("{:?}", sink.offer(&event))).or_insert(0) += 1;
    }
    // 1000 offers against a dead receiver: no wait on the caller's side.
    assert!(started.elapsed() < Duration::from_millis(500), "offers took {:?}", started.elapsed());
    let queued = metrics.spans_queued.get();
    let dropped = |reason| metrics.spans_dropped.get_or_create(&SpanDropLabels { reason }).get();
    assert_eq!(outcomes.get("Queued").copied().unwrap_or(0), queued);
    assert_eq!(queued + dropped(SpanDropReason::queue_full), 1_000, "{outcomes:?}");
    // The queue (4) and the batch in the exporter's hands (2) hold the rest.
    assert!((4..=6).contains(&queued), "{outcomes:?}");
    // Every queued span ends in a failed export, after its retries (about
    // 1.2 s of backoff per batch; shutdown's flush may give up before that).
    sink.shutdown();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dropped(SpanDropReason::export_failed) < queued {
        assert!(Instant::now() < deadline, "export_failed {} of {queued}", dropped(SpanDropReason::export_failed));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(dropped(SpanDropReason::export_failed), queued);
    assert_eq!(metrics.spans_exported.get(), 0);
    let failures = |reason| metrics.span_export_failures.get_or_create(&SpanExportFailureLabels { reason }).get();
    assert_eq!(failures(SpanExportFailure::unavailable), queued.div_ceil(2), "one failed request per batch of 2");
    assert_eq!(failures(SpanExportFailure::rejected), 0);
}

/// Records produced to the real broker, one at a time so pipewarden sees
/// them in order, become one chained trace in the collector.
#[test]
fn the_daemon_exports_a_span_per_record_produced_to_kafka() {
    let id = unique("it-spans");
    let (tickets, answers) = (format!("{id}.tickets"), format!("{id}.answers"));
    create_topics(&[(&tickets, 1), (&answers, 1)]);
    let group = unique("it-spans-group");
    let include = format!("{id}\\..*");
    let extra = format!("[otlp]\nendpoint = \"{}\"\nexport_interval_ms = 100\n", grpc_endpoint());
    // No schema lookups: every record's verdict is `valid` (its contract is complete).
    let governance = "[[policies]]\ntopics = [\".*\"]\nschema = \"off\"\n";
    let mut daemon = Daemon::start(DaemonOptions { extra: &extra, governance, ..DaemonOptions::new(&include, &group) });
    daemon.wait_ready();

    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("producer");
    let correlation_id = unique("flow");
    let traceparent_trace = format!("{:032x}", rand::random::<u128>() | 1);
    let traceparent = format!("00-{traceparent_trace}-b7ad6b7169203331-01");
    // (topic, event type, producer, created_at ms after T0, record timestamp ms after T0, traceparent)
    let events = [
        (&tickets, "support.ticket.created", "intake", 0, 30, None),
        (&answers, "support.answer.drafted", "drafter", 2_000, 2_015, None),
        (&tickets, "support.ticket.closed", "closer", 5_000, 5_002, None),
        (&answers, "doc.extracted", "extractor", 7_000, 7_001, Some(traceparent.as_str())),
    ];
    for (n, (topic, event_type, agent, created_ms, timestamp_ms, header)) in events.iter().enumerate() {
        let created_at = time::OffsetDateTime::from_unix_timestamp_nanos((T0_US + created_ms * 1_000) as i128 * 1_000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let payload = format!(
            r#"{{"event_type":"{event_type}","trace_id":"{correlation_id}","event_id":"evt-{n}","created_at":"{created_at}","schema_version":"1.0","producer":"{agent}"}}"#
        );
        let mut headers = OwnedHeaders::new();
        if let Some(value) = header {
            headers = headers.insert(Header { key: "traceparent", value: Some(*value) });
        }
        let record =
            BaseRecord::<(), str>::to(topic).payload(&payload).timestamp(T0_US / 1_000 + timestamp_ms).headers(headers);
        producer.send(record).map_err(|(err, _)| err).expect("send");
        producer.flush(Duration::from_secs(30)).expect("flush");
        // One at a time: the next record is produced once this one's span is queued.
        daemon.wait_for("the record's span", WAIT, |d| d.metric("pipewarden_spans_queued_total") >= (n + 1) as f64);
    }

    let trace = TraceId::from_correlation_id(&correlation_id).to_string();
    let mut spans = wait_for_spans(&[trace.clone(), traceparent_trace.clone()], 4);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    spans.sort_by_key(|span| span.start_ns);
    let summary: Vec<(String, String, String, String, u64, u64, String)> = spans
        .iter()
        .map(|s| {
            (
                s.trace_id.clone(),
                s.span_id.clone(),
                s.parent_span_id.clone(),
                s.name.clone(),
                s.start_ns,
                s.end_ns,
                s.attributes["messaging.consumer.group.name"].clone(),
            )
        })
        .collect();
    let span = |topic: &str, offset| SpanId::for_record(topic, 0, offset).to_string();
    let at = |ms: i64| ((T0_US + ms * 1_000) * 1_000) as u64;
    assert_eq!(
        summary,
        vec![
            (
                trace.clone(),
                span(&tickets, 0),
                String::new(),
                "send support.ticket.created".into(),
                at(0),
                at(30),
                group.clone()
            ),
            (
                trace.clone(),
                span(&answers, 0),
                span(&tickets, 0),
                "send support.answer.drafted".into(),
                at(2_000),
                at(2_015),
                group.clone()
            ),
            (
                trace.clone(),
                span(&tickets, 1),
                span(&answers, 0),
                "send support.ticket.closed".into(),
                at(5_000),
                at(5_002),
                group.clone()
            ),
            (
                traceparent_trace.clone(),
                span(&answers, 1),
                String::new(),
                "send doc.extracted".into(),
                at(7_000),
                at(7_001),
                group.clone()
            ),
        ]
    );
    let closed = &spans[2];
    assert_eq!(closed.service, "closer");
    assert_eq!(closed.attributes["messaging.destination.name"], tickets);
    assert_eq!(closed.attributes["messaging.kafka.offset"], "int:1");
    assert_eq!(closed.attributes["messaging.message.id"], "evt-2");
    assert_eq!(closed.attributes["messaging.message.conversation_id"], correlation_id);
    assert_eq!(closed.attributes["pipewarden.verdict"], "valid");
    assert_eq!(spans[3].links, vec![(traceparent_trace.clone(), "b7ad6b7169203331".to_string())]);

    daemon.wait_for("spans exported", WAIT, |d| d.metric("pipewarden_spans_exported_total") >= 4.0);
    let text = daemon.scrape().unwrap();
    assert_eq!(sample(&text, "pipewarden_spans_queued_total"), 4.0);
    assert_eq!(sample(&text, "pipewarden_spans_exported_total"), 4.0);
    assert_eq!(sample(&text, "pipewarden_spans_dropped_total{reason=\"queue_full\"}"), 0.0);
    assert_eq!(sample(&text, "pipewarden_spans_dropped_total{reason=\"export_failed\"}"), 0.0);
    assert!(daemon.terminate().success());
}
