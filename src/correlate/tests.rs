//! The correlator end to end without a broker: observations in, metrics,
//! API views and topology out, with known answers.

use std::sync::{Arc, Mutex};

use super::api::{list, trace_view};
use super::trace::TraceState;
use super::*;

const CONFIG: &str = r#"
[correlate]
max_timeline_events = 8
trace_ttl_ms = 600000
[[flows]]
name = "triage"
start = ["ticket.created"]
success = ["answer.sent"]
failure = ["answer.rejected"]
sla_ms = 60000
"#;

/// Base event time: 2026-01-01T00:00:00Z in ms.
const T0: i64 = 1_767_225_600_000;

fn correlator(toml: &str) -> (Correlator, Arc<Metrics>) {
    let config = Config::from_toml(toml, &|_| None).unwrap();
    let metrics = Arc::new(Metrics::new(config.metrics.max_label_values));
    (Correlator::new(&config, metrics.clone()), metrics)
}

fn event<'a>(trace: &'a str, id: &'a str, event_type: &'a str, producer: &'a str, at_ms: i64) -> Observation<'a> {
    Observation {
        trace_id: Some(trace),
        event_id: Some(id),
        event_type: Some(event_type),
        topic: "events",
        partition: 0,
        offset: at_ms,
        created_at_us: Some((T0 + at_ms) * 1_000),
        record_timestamp_ms: Some(T0 + at_ms + 20),
        producer: Some(producer),
        verdict: VerdictKind::Valid,
        tokens: 0,
        cost_micro_usd: 0,
        model: None,
    }
}

fn scrape(metrics: &Metrics) -> String {
    let mut text = String::new();
    metrics.encode_openmetrics(&mut text).unwrap();
    text
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// A histogram bucket by its labels, whatever their order.
fn bucket(text: &str, name: &str, labels: &[(&str, &str)], le: &str) -> f64 {
    let prefix = format!("{name}_bucket{{");
    let le = format!("le=\"{le}\"");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter(|line| {
            let set = &line[prefix.len()..line.find('}').unwrap_or(line.len())];
            let parts: Vec<&str> = set.split(',').collect();
            parts.contains(&le.as_str())
                && parts.len() == labels.len() + 1
                && labels.iter().all(|(k, v)| parts.contains(&format!("{k}=\"{v}\"").as_str()))
        })
        .find_map(|line| line.split('}').nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn flows_stages_stalls_and_delivery_problems_have_known_answers() {
    let (mut correlator, metrics) = correlator(CONFIG);
    let wall = T0 + 10_000_000;
    // t1 succeeds in 3 s, t2 fails in 40 s, t3 stalls after the classifier.
    let records = [
        event("t1", "a", "ticket.created", "intake", 0),
        event("t1", "b", "ticket.classified", "classifier", 1_000),
        event("t1", "c", "answer.sent", "delivery", 3_000),
        event("t1", "c", "answer.sent", "delivery", 3_000),
        event("t2", "d", "ticket.created", "intake", 0),
        event("t2", "e", "answer.rejected", "qa", 40_000),
        event("t3", "f", "ticket.created", "intake", 10_000),
        event("t3", "g", "ticket.classified", "classifier", 12_000),
        // Out of order: created after classified in event time, seen later.
        event("t4", "i", "ticket.classified", "classifier", 20_000),
        event("t4", "h", "ticket.created", "intake", 19_500),
        // Moves the clock to 200 s: t3 is past its 60 s SLA.
        event("t5", "j", "ticket.created", "intake", 200_000),
    ];
    for record in &records {
        correlator.observe(record, wall);
    }
    let mut orphan = event("x", "k", "ticket.created", "intake", 5);
    orphan.trace_id = None;
    correlator.observe(&orphan, wall);
    correlator.sweep(wall);

    let text = scrape(&metrics);
    let flow = |outcome: &str, le: &str| {
        bucket(&text, "pipewarden_flow_duration_seconds", &[("flow", "triage"), ("outcome", outcome)], le)
    };
    assert_eq!(flow("success", "2.5"), 0.0, "{text}");
    assert_eq!(flow("success", "5.0"), 1.0, "{text}");
    assert_eq!(flow("failure", "30.0"), 0.0, "{text}");
    assert_eq!(flow("failure", "60.0"), 1.0, "{text}");
    // The exemplar carries the trace ID.
    assert!(text.contains("# {trace_id=\"t1\"} 3.0"), "{text}");
    let traces = |outcome: &str| {
        sample(&text, &format!("pipewarden_flow_traces_total{{flow=\"triage\",outcome=\"{outcome}\"}}"))
    };
    assert_eq!((traces("success"), traces("failure"), traces("timed_out")), (1.0, 1.0, 2.0), "{text}");
    // t3 (last stage classified) and t4 (classified at 20 s, created at 19.5 s) are both stalled.
    let stalled = "{flow=\"triage\",last_stage=\"ticket.classified\"}";
    assert_eq!(sample(&text, &format!("pipewarden_stalled_traces_total{stalled}")), 2.0, "{text}");
    assert_eq!(sample(&text, &format!("pipewarden_stalled_open_traces{stalled}")), 2.0, "{text}");
    let edge = |from: &str, to: &str, le: &str| {
        bucket(&text, "pipewarden_stage_duration_seconds", &[("from_event_type", from), ("to_event_type", to)], le)
    };
    // created→classified: t1 1 s, t3 2 s, t4 0.5 s (out of order, joined to its predecessor in event time).
    assert_eq!(edge("ticket.created", "ticket.classified", "0.5"), 1.0, "{text}");
    assert_eq!(edge("ticket.created", "ticket.classified", "1.0"), 2.0);
    assert_eq!(edge("ticket.created", "ticket.classified", "2.5"), 3.0);
    assert_eq!(edge("ticket.classified", "answer.sent", "2.5"), 1.0);
    assert_eq!(edge("ticket.created", "answer.rejected", "60.0"), 1.0);
    assert_eq!(sample(&text, "pipewarden_duplicate_events_total{topic=\"events\"}"), 1.0);
    assert_eq!(sample(&text, "pipewarden_out_of_order_events_total{topic=\"events\"}"), 1.0);
    assert_eq!(sample(&text, "pipewarden_uncorrelated_events_total{topic=\"events\",producer=\"intake\"}"), 1.0);
    assert_eq!(bucket(&text, "pipewarden_clock_skew_seconds", &[("producer", "intake")], "0.01"), 0.0, "{text}");
    assert_eq!(bucket(&text, "pipewarden_clock_skew_seconds", &[("producer", "intake")], "0.05"), 6.0);
    assert_eq!(sample(&text, "pipewarden_trace_table_traces"), 5.0);

    let shared = correlator.shared();
    let stalled = list(&shared, TraceState::Stalled, 10);
    let ids: Vec<&str> = stalled.traces.iter().map(|t| t.trace_id.as_str()).collect();
    assert_eq!(ids, vec!["t4", "t3"], "newest first");
    assert_eq!(stalled.traces[1].age_seconds, 190.0);
    assert_eq!(stalled.traces[1].last_stage, "ticket.classified");
    let view = trace_view(&shared, "t1").unwrap();
    assert_eq!(view.state, "completed");
    assert_eq!(view.flow.as_deref(), Some("triage"));
    assert_eq!(view.stages, vec!["ticket.created", "ticket.classified", "answer.sent"]);
    assert_eq!(view.events, 3);
    assert_eq!(view.timeline[2].created_at_ms, Some(T0 + 3_000));
    assert_eq!(view.timeline[2].record_timestamp_ms, Some(T0 + 3_020));
    assert_eq!(view.timeline[2].producer, "delivery");
    assert_eq!(view.timeline[2].offset, 3_000);
    assert_eq!(view.duration_seconds, 3.0);
    assert!(trace_view(&shared, "nope").is_none());

    // A late terminal completes the stalled t3: the gauge goes down, the
    // counter of stalls stays.
    correlator.observe(&event("t3", "l", "answer.sent", "delivery", 100_000), wall);
    let text = scrape(&metrics);
    assert_eq!(sample(&text, "pipewarden_stalled_open_traces{flow=\"triage\",last_stage=\"ticket.classified\"}"), 1.0);
    assert_eq!(sample(&text, "pipewarden_flow_traces_total{flow=\"triage\",outcome=\"success\"}"), 2.0);

    let topology = shared.topology.snapshot(&shared.names);
    assert!(topology
        .consumes
        .iter()
        .any(|c| c.topic == "events" && c.event_type == "ticket.created" && c.producer == "classifier"));
    assert!(topology.emits.iter().any(|e| e.producer == "qa" && e.event_type == "answer.rejected"));
}

#[test]
fn expired_and_excess_traces_are_evicted_by_cause() {
    let (mut correlator, metrics) = correlator("[correlate]\nmax_traces = 20\nshards = 1\ntrace_ttl_ms = 1000\n");
    let wall = T0 + 1_000_000;
    for n in 0..25 {
        let id = format!("trace-{n}");
        correlator.observe(&event(&id, "e", "a", "p", n * 100), wall);
    }
    let text = scrape(&metrics);
    assert_eq!(sample(&text, "pipewarden_trace_evictions_total{cause=\"rejected\"}"), 5.0, "{text}");
    correlator.sweep(wall);
    let text = scrape(&metrics);
    // The clock is at 2.4 s (the latest event; the partition is not idle):
    // traces whose last event is more than 1 s older expire (0 … 1.3 s).
    assert_eq!(sample(&text, "pipewarden_trace_evictions_total{cause=\"ttl_open\"}"), 14.0, "{text}");
    assert_eq!(sample(&text, "pipewarden_trace_table_traces"), 6.0, "{text}");
    for n in 25..39 {
        let id = format!("trace-{n}");
        correlator.observe(&event(&id, "e", "a", "p", 2_400), wall);
    }
    correlator.sweep(wall);
    let text = scrape(&metrics);
    // 20 traces > 90 % of 20: the 4 least recently active (1.4 … 1.7 s) go, down to 16.
    assert_eq!(sample(&text, "pipewarden_trace_evictions_total{cause=\"capacity\"}"), 4.0, "{text}");
    assert_eq!(sample(&text, "pipewarden_trace_evictions_total{cause=\"ttl_open\"}"), 14.0, "{text}");
    assert_eq!(sample(&text, "pipewarden_trace_table_traces"), 16.0, "{text}");
    assert!(sample(&text, "pipewarden_trace_table_bytes") > 0.0);
}

#[test]
fn edges_are_capped_with_an_overflow_bucket() {
    let (mut correlator, metrics) = correlator("[correlate]\nmax_edges = 3\n");
    let wall = T0 + 1_000_000;
    for n in 0..10 {
        let id = format!("e{n}");
        let next = format!("type-{n}");
        correlator.observe(&event("t", &format!("{id}a"), "start", "p", n * 10), wall);
        correlator.observe(&event("t", &format!("{id}b"), &next, "p", n * 10 + 1), wall);
    }
    correlator.flush();
    let text = scrape(&metrics);
    let series: Vec<&str> =
        text.lines().filter(|l| l.starts_with("pipewarden_stage_duration_seconds_count{")).collect();
    assert_eq!(series.len(), 3, "{series:?}");
    let overflow =
        "pipewarden_stage_duration_seconds_count{from_event_type=\"__overflow__\",to_event_type=\"__overflow__\"}";
    assert_eq!(sample(&text, overflow), 17.0, "{text}");
}

/// Records what the span-export hook receives.
type Seen = Vec<(String, Option<(String, i64)>)>;

struct Recorder(Arc<Mutex<Seen>>);

impl EventSink for Recorder {
    fn on_event(&mut self, event: &Observation<'_>, previous: Option<&PreviousEvent<'_>>) {
        let previous = previous.map(|p| (p.event_type.to_string(), p.offset));
        self.0.lock().unwrap().push((event.event_type.unwrap_or_default().to_string(), previous));
    }
}

#[test]
fn the_event_sink_sees_each_event_with_its_predecessor() {
    let (mut correlator, _) = correlator(CONFIG);
    let seen = Arc::new(Mutex::new(Vec::new()));
    correlator.set_sink(Box::new(Recorder(seen.clone())));
    let wall = T0 + 1_000_000;
    correlator.observe(&event("t", "a", "ticket.created", "intake", 0), wall);
    correlator.observe(&event("t", "b", "ticket.classified", "classifier", 500), wall);
    correlator.observe(&event("t", "b", "ticket.classified", "classifier", 500), wall);
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            ("ticket.created".to_string(), None),
            ("ticket.classified".to_string(), Some(("ticket.created".to_string(), 0))),
        ],
        "duplicates are not exported twice"
    );
}

#[test]
fn the_demo_topology_in_the_docs_is_what_pipewarden_draws() {
    use crate::simulate::topology::Agent::{self, *};
    let (mut correlator, _) = correlator(CONFIG);
    let wall = T0 + 1_000_000;
    // Every path through each simulated flow: each agent consumes its input
    // and emits one of its outputs (topics are named after event types).
    let mut trace = 0;
    let mut walk = |path: &[(Agent, usize)]| {
        trace += 1;
        let trace_id = format!("demo-{trace}");
        for (step, (agent, output)) in path.iter().enumerate() {
            let event_type = agent.outputs()[*output].as_str();
            let event_id = format!("{trace}-{step}");
            let mut observation = event(&trace_id, &event_id, event_type, agent.name(), step as i64 * 100);
            observation.topic = event_type;
            correlator.observe(&observation, wall);
        }
    };
    walk(&[(Intake, 0), (Classifier, 0), (Knowledge, 0), (Qa, 0), (Delivery, 0)]);
    walk(&[(Intake, 0), (Classifier, 0), (Knowledge, 0), (Qa, 1)]);
    walk(&[(DocExtractor, 0), (DocValidator, 0), (EntityResolver, 0)]);
    walk(&[(DocExtractor, 0), (DocValidator, 1)]);
    let shared = correlator.shared();
    let mermaid = shared.topology.snapshot(&shared.names).mermaid();
    let docs = include_str!("../../docs/correlation.md");
    assert!(docs.contains(&format!("```mermaid\n{mermaid}```")), "docs/correlation.md should show:\n{mermaid}");
}

#[test]
fn observe_names_the_previous_record_of_the_trace_in_event_order() {
    let (mut correlator, _) = correlator("");
    let wall = T0 + 1_000_000;
    let record = |offset| Some(PreviousRecord { topic: Arc::from("events"), partition: 0, offset });
    assert_eq!(correlator.observe(&event("t", "e1", "a", "p", 100), wall), None, "first event of its trace");
    assert_eq!(correlator.observe(&event("t", "e3", "c", "p", 300), wall), record(100));
    // Read late but earlier in event time: its predecessor is the event at 100, not the one read last.
    assert_eq!(correlator.observe(&event("t", "e2", "b", "p", 200), wall), record(100));
    assert_eq!(correlator.observe(&event("t", "e4", "d", "p", 400), wall), record(300));
    assert_eq!(correlator.observe(&event("u", "e1", "a", "p", 500), wall), None, "another trace");
}
