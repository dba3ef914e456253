//! Correlation against a real broker, with known answers: records carry
//! crafted `created_at` and record timestamps, so every end-to-end and stage
//! latency, stall, duplicate, out-of-order event, topology link and
//! timeline entry is known in advance and asserted exactly, through the
//! daemon's `/metrics` and `/api/v1` endpoints.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(90);

const FLOWS: &str = r#"
[[flows]]
name = "triage"
start = ["ticket.created"]
success = ["answer.sent"]
failure = ["answer.rejected"]
sla_ms = 60000
"#;

/// Count invalid records but never quarantine: this test is about correlation.
const GOVERNANCE: &str = "[[policies]]\ntopics = [\".*\"]\nschema = \"off\"\ninvalid = \"count\"\npii = \"off\"\n";

/// Trace IDs: one W3C ID (kept as its 128-bit value) and plain ones.
const A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap().format(&Rfc3339).unwrap()
}

fn event(trace: Option<&str>, id: &str, event_type: &str, producer: &str, created_ms: i64) -> Vec<u8> {
    let trace = trace.map_or_else(String::new, |t| format!(r#""trace_id":"{t}","#));
    format!(
        r#"{{"event_type":"{event_type}",{trace}"event_id":"{id}","created_at":"{}","schema_version":"1","producer":"{producer}"}}"#,
        rfc3339(created_ms)
    )
    .into_bytes()
}

/// One record: (trace, event id, event type, producer, ms after the base).
type Spec = (Option<&'static str>, &'static str, &'static str, &'static str, i64);

/// The main flow's records, in the order they are written to one partition.
const EVENTS: &[Spec] = &[
    // A: success in 3 s.
    (Some(A), "a1", "ticket.created", "intake", 0),
    (Some(A), "a2", "ticket.classified", "classifier", 1_000),
    (Some(A), "a3", "answer.sent", "delivery", 3_000),
    // B: failure in 40 s.
    (Some("trace-b"), "b1", "ticket.created", "intake", 10_000),
    (Some("trace-b"), "b2", "ticket.classified", "classifier", 10_400),
    (Some("trace-b"), "b3", "answer.rejected", "qa", 50_000),
    // C: stalls after classification.
    (Some("trace-c"), "c1", "ticket.created", "intake", 20_000),
    (Some("trace-c"), "c2", "ticket.classified", "classifier", 22_000),
    // D: a redelivered start, then success in 0.2 s.
    (Some("trace-d"), "d1", "ticket.created", "intake", 30_000),
    (Some("trace-d"), "d1", "ticket.created", "intake", 30_000),
    (Some("trace-d"), "d2", "answer.sent", "delivery", 30_200),
    // E: classified written before created (out of order), success in 2 s.
    (Some("trace-e"), "e2", "ticket.classified", "classifier", 40_000),
    (Some("trace-e"), "e1", "ticket.created", "intake", 39_000),
    (Some("trace-e"), "e3", "answer.sent", "delivery", 41_000),
    // Broken propagation: no trace ID.
    (None, "x1", "ticket.created", "legacy", 45_000),
    (None, "x2", "ticket.created", "legacy", 46_000),
    // Z: moves this partition's event time to 200 s (C is then past its SLA).
    (Some("trace-z"), "z1", "ticket.created", "intake", 200_000),
];

/// A second topic: another pipeline, no flow.
const SIDE: &[Spec] = &[
    (Some("trace-f"), "f1", "doc.extracted", "extractor", 5_000),
    (Some("trace-f"), "f2", "doc.validated", "validator", 6_000),
    (Some("trace-y"), "y1", "doc.extracted", "extractor", 200_000),
];

/// Record timestamps are 20 ms after created_at (clock skew 0.02 s).
const SKEW_MS: i64 = 20;

fn produce(topic: &str, partition: i32, specs: &[Spec], base: i64) {
    let producer = producer();
    for (trace, id, event_type, who, at) in specs {
        producer.send_at(topic, partition, &event(*trace, id, event_type, who, base + at), base + at + SKEW_MS);
    }
    producer.flush();
}

/// A histogram bucket by its labels, whatever their order in the line and
/// however the bound is written (`5` in Prometheus text, `5.0` in OpenMetrics).
fn bucket(text: &str, name: &str, labels: &[(&str, &str)], le: &str) -> f64 {
    let prefix = format!("{name}_bucket{{");
    let le: f64 = le.parse().unwrap();
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter(|line| {
            let set = &line[prefix.len()..line.find('}').unwrap_or(line.len())];
            let parts: Vec<&str> = set.split(',').collect();
            let bound = parts.iter().find_map(|p| p.strip_prefix("le=\"")?.strip_suffix('"')?.parse::<f64>().ok());
            bound == Some(le)
                && parts.len() == labels.len() + 1
                && labels.iter().all(|(k, v)| parts.contains(&format!("{k}=\"{v}\"").as_str()))
        })
        .find_map(|line| line.split('}').nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn get_json(daemon: &Daemon, path: &str) -> (u16, Value) {
    let response = reqwest::blocking::get(format!("http://127.0.0.1:{}{path}", daemon.port)).expect("request");
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn get_text(daemon: &Daemon, path: &str) -> String {
    reqwest::blocking::get(format!("http://127.0.0.1:{}{path}", daemon.port)).unwrap().text().unwrap()
}

/// The answers every assertion below follows from (see `EVENTS` and `SIDE`).
fn assert_flow_metrics(text: &str) {
    let flow = |outcome: &str, le: &str| {
        bucket(text, "pipewarden_flow_duration_seconds", &[("flow", "triage"), ("outcome", outcome)], le)
    };
    // Successes: A 3 s, D 0.2 s, E 2 s. Failure: B 40 s.
    assert_eq!(flow("success", "0.1"), 0.0, "{text}");
    assert_eq!(flow("success", "0.25"), 1.0, "{text}");
    assert_eq!(flow("success", "2.5"), 2.0, "{text}");
    assert_eq!(flow("success", "5.0"), 3.0, "{text}");
    assert_eq!(flow("success", "+Inf"), 3.0, "{text}");
    assert_eq!(flow("failure", "30.0"), 0.0, "{text}");
    assert_eq!(flow("failure", "60.0"), 1.0, "{text}");
    let traces =
        |outcome: &str| sample(text, &format!("pipewarden_flow_traces_total{{flow=\"triage\",outcome=\"{outcome}\"}}"));
    assert_eq!((traces("success"), traces("failure"), traces("timed_out")), (3.0, 1.0, 1.0), "{text}");
    let stall = "{flow=\"triage\",last_stage=\"ticket.classified\"}";
    assert_eq!(sample(text, &format!("pipewarden_stalled_traces_total{stall}")), 1.0, "{text}");
    assert_eq!(sample(text, &format!("pipewarden_stalled_open_traces{stall}")), 1.0, "{text}");

    let edge = |from: &str, to: &str, le: &str| {
        bucket(text, "pipewarden_stage_duration_seconds", &[("from_event_type", from), ("to_event_type", to)], le)
    };
    // created→classified: A 1 s, B 0.4 s, C 2 s, E 1 s (E's created arrived late but is earliest).
    assert_eq!(edge("ticket.created", "ticket.classified", "0.25"), 0.0, "{text}");
    assert_eq!(edge("ticket.created", "ticket.classified", "0.5"), 1.0, "{text}");
    assert_eq!(edge("ticket.created", "ticket.classified", "1.0"), 3.0, "{text}");
    assert_eq!(edge("ticket.created", "ticket.classified", "2.5"), 4.0, "{text}");
    assert_eq!(edge("ticket.created", "ticket.classified", "+Inf"), 4.0, "{text}");
    // classified→sent: A 2 s, E 1 s.
    assert_eq!(edge("ticket.classified", "answer.sent", "1.0"), 1.0, "{text}");
    assert_eq!(edge("ticket.classified", "answer.sent", "+Inf"), 2.0, "{text}");
    assert_eq!(edge("ticket.classified", "answer.rejected", "30.0"), 0.0, "{text}");
    assert_eq!(edge("ticket.classified", "answer.rejected", "60.0"), 1.0, "{text}");
    assert_eq!(edge("ticket.created", "answer.sent", "0.1"), 0.0, "{text}");
    assert_eq!(edge("ticket.created", "answer.sent", "0.25"), 1.0, "{text}");
    assert_eq!(edge("doc.extracted", "doc.validated", "1.0"), 1.0, "{text}");
    assert_eq!(edge("doc.extracted", "doc.validated", "0.5"), 0.0, "{text}");
    let edges = text.lines().filter(|l| l.starts_with("pipewarden_stage_duration_seconds_count{")).count();
    assert_eq!(edges, 5, "{text}");
}

#[test]
fn latencies_stalls_duplicates_topology_and_timelines_have_known_answers() {
    let id = unique("it-corr");
    let (events, side) = (format!("{id}.events"), format!("{id}.side"));
    create_topics(&[(&events, 1), (&side, 1)]);
    // An hour ago: well inside the trace TTL, far from the wall clock.
    let base = (OffsetDateTime::now_utc().unix_timestamp() - 3_600) * 1_000;
    produce(&events, 0, EVENTS, base);
    produce(&side, 0, SIDE, base);

    let (include, group) = (format!("{id}\\..*"), unique("it-corr-group"));
    let mut options = DaemonOptions::new(&include, &group);
    options.extra = FLOWS;
    options.governance = GOVERNANCE;
    let mut daemon = Daemon::start(options);
    let records = |topic: &str| format!("pipewarden_records_total{{topic=\"{topic}\"}}");
    daemon.wait_for("every record", WAIT, |d| {
        d.metric(&records(&events)) >= EVENTS.len() as f64 && d.metric(&records(&side)) >= SIDE.len() as f64
    });
    // The stall sweep runs once a second; give it two.
    daemon.wait_for("the stall", WAIT, |d| {
        d.metric("pipewarden_flow_traces_total{flow=\"triage\",outcome=\"timed_out\"}") >= 1.0
    });
    std::thread::sleep(Duration::from_millis(2_500));
    let text = daemon.scrape().expect("scrape");
    assert_flow_metrics(&text);

    assert_eq!(sample(&text, &format!("pipewarden_duplicate_events_total{{topic=\"{events}\"}}")), 1.0, "{text}");
    assert_eq!(sample(&text, &format!("pipewarden_out_of_order_events_total{{topic=\"{events}\"}}")), 1.0, "{text}");
    let uncorrelated = format!("pipewarden_uncorrelated_events_total{{topic=\"{events}\",producer=\"legacy\"}}");
    assert_eq!(sample(&text, &uncorrelated), 2.0, "{text}");
    let uncorrelated_series = text.lines().filter(|l| l.starts_with("pipewarden_uncorrelated_events_total{")).count();
    assert_eq!(uncorrelated_series, 1, "{text}");
    // Every record is 20 ms late on its timestamp: skew 0.02 s, in (0.01, 0.05].
    let skew = |producer: &str, le: &str| bucket(&text, "pipewarden_clock_skew_seconds", &[("producer", producer)], le);
    assert_eq!(skew("intake", "0.01"), 0.0, "{text}");
    assert_eq!(skew("intake", "0.05"), 7.0, "{text}");
    assert_eq!(skew("legacy", "0.05"), 2.0, "{text}");
    // A, B, C, D, E, Z and F, Y.
    assert_eq!(sample(&text, "pipewarden_trace_table_traces"), 8.0, "{text}");

    // The exemplar of A's latency carries its trace ID (OpenMetrics only).
    let (_, open) = daemon.scrape_as("application/openmetrics-text; version=1.0.0");
    assert!(open.contains(&format!("# {{trace_id=\"{A}\"}} 3.0")), "{open}");

    // Stalled traces: only C, with its last stage and age (clock at ≥ 200 s, C started at 20 s).
    let (status, stalled) = get_json(&daemon, "/api/v1/traces?state=stalled");
    assert_eq!(status, 200, "{stalled}");
    let list = stalled["traces"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{stalled}");
    assert_eq!(list[0]["trace_id"], "trace-c");
    assert_eq!(list[0]["flow"], "triage");
    assert_eq!(list[0]["last_stage"], "ticket.classified");
    let age = list[0]["age_seconds"].as_f64().unwrap();
    assert!((180.0..240.0).contains(&age), "age {age}");
    let (_, completed) = get_json(&daemon, "/api/v1/traces?state=completed&limit=2");
    let ids: Vec<&str> =
        completed["traces"].as_array().unwrap().iter().map(|t| t["trace_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["trace-e", "trace-d"], "newest first, limited");
    assert_eq!(get_json(&daemon, "/api/v1/traces?state=lost").0, 400);

    // A's timeline: types, topics, offsets, both timestamps, producers, verdicts.
    let (status, trace) = get_json(&daemon, &format!("/api/v1/traces/{A}"));
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["trace_id"], A);
    assert_eq!(trace["flow"], "triage");
    assert_eq!(trace["state"], "completed");
    assert_eq!(trace["events"], 3);
    assert_eq!(trace["duration_seconds"], 3.0);
    assert_eq!(trace["stages"], serde_json::json!(["ticket.created", "ticket.classified", "answer.sent"]));
    let timeline = trace["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 3, "{trace}");
    for (offset, (_, _, event_type, producer, at)) in EVENTS[..3].iter().enumerate() {
        let step = &timeline[offset];
        assert_eq!(step["event_type"], *event_type);
        assert_eq!(step["topic"], events.as_str());
        assert_eq!(step["partition"], 0);
        assert_eq!(step["offset"], offset as i64);
        assert_eq!(step["created_at_ms"], base + at);
        assert_eq!(step["record_timestamp_ms"], base + at + SKEW_MS);
        assert_eq!(step["producer"], *producer);
        assert_eq!(step["verdict"], "valid");
    }
    // D's timeline holds its start once.
    let (_, d) = get_json(&daemon, "/api/v1/traces/trace-d");
    assert_eq!(d["events"], 2, "{d}");
    assert_eq!(get_json(&daemon, "/api/v1/traces/never-seen").0, 404);

    // Topology: who emits what where, and who reacts to which topic.
    let (_, topology) = get_json(&daemon, "/api/v1/topology");
    let links = |kind: &str, fields: [&str; 3]| -> Vec<String> {
        topology[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| fields.iter().map(|f| l[*f].as_str().unwrap().to_string()).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let (e, s) = (events.as_str(), side.as_str());
    let mut expected_emits = vec![
        format!("classifier ticket.classified {e}"),
        format!("delivery answer.sent {e}"),
        format!("extractor doc.extracted {s}"),
        format!("intake ticket.created {e}"),
        format!("legacy ticket.created {e}"),
        format!("qa answer.rejected {e}"),
        format!("validator doc.validated {s}"),
    ];
    expected_emits.sort();
    assert_eq!(links("emits", ["producer", "event_type", "topic"]), expected_emits, "{topology}");
    let mut expected_consumes = vec![
        format!("{e} ticket.classified delivery"),
        format!("{e} ticket.classified qa"),
        format!("{e} ticket.created classifier"),
        format!("{e} ticket.created delivery"),
        format!("{s} doc.extracted validator"),
    ];
    expected_consumes.sort();
    assert_eq!(links("consumes", ["topic", "event_type", "producer"]), expected_consumes, "{topology}");
    let mermaid = get_text(&daemon, "/api/v1/topology?format=mermaid");
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert_eq!(mermaid.lines().filter(|l| l.contains("-->|")).count(), 7, "{mermaid}");
    assert_eq!(mermaid.lines().filter(|l| l.contains("-.->")).count(), 5, "{mermaid}");
}

/// Every sample of the families named by `prefixes`, keyed by series (with
/// `le` normalised, so both text formats compare equal).
fn series(text: &str, prefixes: &[&str]) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| prefixes.iter().any(|p| l.starts_with(p))) {
        let Some((name, rest)) = line.split_once('{') else { continue };
        let Some((labels, value)) = rest.split_once('}') else { continue };
        let mut labels: Vec<String> = labels
            .split(',')
            .map(|l| match l.strip_prefix("le=\"").and_then(|v| v.strip_suffix('"')) {
                Some(bound) => format!("le={}", bound.parse::<f64>().unwrap()),
                None => l.to_string(),
            })
            .collect();
        labels.sort();
        let value: f64 = value.split_whitespace().next().unwrap().parse().unwrap();
        *out.entry(format!("{name}{{{}}}", labels.join(","))).or_insert(0.0) += value;
    }
    out
}

const COMPARED: &[&str] = &[
    "pipewarden_flow_duration_seconds_bucket",
    "pipewarden_flow_duration_seconds_count",
    "pipewarden_flow_traces_total",
    "pipewarden_stalled_traces_total",
    "pipewarden_stalled_open_traces",
    "pipewarden_stage_duration_seconds_bucket",
    "pipewarden_duplicate_events_total",
    "pipewarden_out_of_order_events_total",
];

#[test]
fn two_replicas_in_scale_out_mode_count_what_one_process_counts() {
    let id = unique("it-scale");
    let (input, observations) = (format!("{id}.flow"), format!("pipewarden.observations.{id}"));
    create_topics(&[(&input, 4), (&observations, 4)]);
    let include = format!("{id}\\..*");

    // One process, in-process correlation, its own group.
    let single_group = unique("it-scale-single");
    let mut options = DaemonOptions::new(&include, &single_group);
    options.extra = FLOWS;
    options.governance = GOVERNANCE;
    let mut single = Daemon::start(options);
    // Two replicas of one group, correlating through the observations topic.
    let replica_group = unique("it-scale-replicas");
    let scale_out = format!(
        "{FLOWS}\n[correlate]\nmode = \"kafka\"\n[correlate.kafka]\ntopic = \"{observations}\"\npartitions = 4\n"
    );
    let start_replica = || {
        let mut options = DaemonOptions::new(&include, &replica_group);
        options.extra = &scale_out;
        options.governance = GOVERNANCE;
        Daemon::start(options)
    };
    let (mut first, mut second) = (start_replica(), start_replica());
    single.wait_ready();
    first.wait_ready();
    second.wait_ready();
    // Both replicas must own input partitions before any record is written.
    first.wait_for("the input partitions to be shared", WAIT, |d| {
        let (mine, theirs) =
            (d.metric("pipewarden_assigned_partitions"), second.metric("pipewarden_assigned_partitions"));
        mine >= 1.0 && theirs >= 1.0 && mine + theirs == 4.0
    });
    // The observation consumers rebalance alongside; let them settle.
    std::thread::sleep(Duration::from_secs(5));

    // 40 traces, each within one partition: i % 5 == 0 stalls, == 1 fails
    // after 10 s, the rest succeed after 1 … 7 s. A heartbeat per partition
    // moves every partition's event time to 300 s.
    let base = (OffsetDateTime::now_utc().unix_timestamp() - 3_600) * 1_000;
    let producer = producer();
    let mut records = 0;
    let send = |partition: i32, trace: &str, id: &str, event_type: &str, who: &str, at: i64| {
        let value = event(Some(trace), id, event_type, who, base + at);
        producer.send_at(&input, partition, &value, base + at + SKEW_MS);
    };
    let (mut success, mut failure, mut stalled) = (0.0, 0.0, 0.0);
    for i in 0..40i64 {
        let (partition, trace, start) = ((i % 4) as i32, format!("scale-{i}"), i * 1_000);
        send(partition, &trace, &format!("{i}-1"), "ticket.created", "intake", start);
        send(partition, &trace, &format!("{i}-2"), "ticket.classified", "classifier", start + 500);
        records += 2;
        match i % 5 {
            0 => stalled += 1.0,
            1 => {
                send(partition, &trace, &format!("{i}-3"), "answer.rejected", "qa", start + 10_000);
                failure += 1.0;
                records += 1;
            }
            _ => {
                send(partition, &trace, &format!("{i}-3"), "answer.sent", "delivery", start + (i % 7 + 1) * 1_000);
                success += 1.0;
                records += 1;
            }
        }
    }
    for partition in 0..4 {
        send(partition, &format!("heartbeat-{partition}"), &format!("hb-{partition}"), "heartbeat", "clock", 300_000);
        records += 1;
    }
    producer.flush();

    let traces = |d: &Daemon, outcome: &str| {
        d.metric(&format!("pipewarden_flow_traces_total{{flow=\"triage\",outcome=\"{outcome}\"}}"))
    };
    let settled = |d: &Daemon| traces(d, "timed_out");
    single.wait_for("one process to settle", WAIT, |d| settled(d) >= stalled);
    first.wait_for("the replicas to settle", WAIT, |d| settled(d) + settled(&second) >= stalled);
    // Two more sweeps, then nothing may change.
    std::thread::sleep(Duration::from_millis(2_500));

    let one = single.scrape().expect("scrape");
    let (a, b) = (first.scrape().expect("scrape"), second.scrape().expect("scrape"));
    let consumed = |text: &str| sample(text, "pipewarden_observations_total{result=\"consumed\"}");
    assert_eq!(consumed(&a) + consumed(&b), records as f64, "every observation correlated once\n{a}\n{b}");
    assert_eq!(sample(&a, "pipewarden_observations_total{result=\"dropped\"}"), 0.0);
    assert_eq!(sample(&b, "pipewarden_observations_total{result=\"dropped\"}"), 0.0);
    assert!(consumed(&a) > 0.0 && consumed(&b) > 0.0, "both replicas correlate a share");
    let outcome = |text: &str, outcome: &str| {
        sample(text, &format!("pipewarden_flow_traces_total{{flow=\"triage\",outcome=\"{outcome}\"}}"))
    };
    assert_eq!(
        (outcome(&one, "success"), outcome(&one, "failure"), outcome(&one, "timed_out")),
        (success, failure, stalled),
        "{one}"
    );

    let expected = series(&one, COMPARED);
    let mut combined = series(&a, COMPARED);
    for (key, value) in series(&b, COMPARED) {
        *combined.entry(key).or_insert(0.0) += value;
    }
    combined.retain(|_, v| *v != 0.0);
    let expected: std::collections::BTreeMap<String, f64> = expected.into_iter().filter(|(_, v)| *v != 0.0).collect();
    assert!(expected.len() > 40, "{expected:#?}");
    assert_eq!(combined, expected, "two replicas differ from one process");
    eprintln!(
        "scale-out: one process success={} failure={} timed_out={}; replicas {}+{} observations",
        outcome(&one, "success"),
        outcome(&one, "failure"),
        outcome(&one, "timed_out"),
        consumed(&a),
        consumed(&b)
    );
}
