//! Ingest against a real Kafka broker: exact counts on matching topics,
//! non-matching topics ignored, new topics picked up, restart from committed
//! offsets, clean SIGTERM. Each test uses its own random topics and group.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(90);

fn records(topic: &str) -> String {
    format!("pipewarden_records_total{{topic=\"{topic}\"}}")
}

#[test]
fn matching_topics_are_counted_exactly_and_others_ignored() {
    let id = unique("it-count");
    let (a, b, other, quarantine) = (
        format!("{id}.watched.a"),
        format!("{id}.watched.b"),
        format!("{id}.other"),
        format!("{id}.watched.a.quarantine"),
    );
    create_topics(&[(&a, 3), (&b, 1), (&other, 1), (&quarantine, 1)]);

    let producer = producer();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for n in 0..300 {
        producer.send(
            &a,
            Some(n as i32 % 3),
            &valid_event("order.created", "intake-agent", n),
            &[("traceparent", traceparent)],
        );
    }
    for n in 0..90 {
        producer.send(&b, None, &valid_event("order.shipped", "shipping-agent", n), &[]);
    }
    // Poison on b: malformed JSON, and an event with no trace ID anywhere.
    for _ in 0..7 {
        producer.send(&b, None, br#"{"event_type":"order.shipped","trace_id":"#, &[]);
    }
    for _ in 0..3 {
        producer.send(&b, None, br#"{"event_type":"order.shipped","event_id":"e","created_at":"2026-01-01T00:00:00Z","schema_version":"1","producer":"p"}"#, &[]);
    }
    for n in 0..50 {
        producer.send(&other, None, &valid_event("noise", "noise-agent", n), &[]);
        producer.send(&quarantine, None, &valid_event("noise", "noise-agent", n), &[]);
    }
    producer.flush();

    let group = unique("it-count-group");
    let include = format!("{}\\.watched\\..*", regex_escape(&id));
    let mut daemon = Daemon::start(DaemonOptions::new(&include, &group));
    daemon.wait_for("300 + 100 records", WAIT, |d| d.metric(&records(&a)) >= 300.0 && d.metric(&records(&b)) >= 100.0);
    // Let any duplicate delivery show up before asserting exact counts.
    std::thread::sleep(Duration::from_secs(2));
    let text = daemon.scrape().expect("scrape");
    assert_eq!(sample(&text, &records(&a)), 300.0, "{text}");
    assert_eq!(sample(&text, &records(&b)), 100.0, "{text}");
    assert!(!mentions(&text, &other), "non-matching topic was consumed:\n{text}");
    assert!(!mentions(&text, &quarantine), "quarantine topic was consumed:\n{text}");
    assert_eq!(sample(&text, "pipewarden_watched_topics"), 2.0);

    let events = |topic: &str, event_type: &str| {
        sample(&text, &format!("pipewarden_events_total{{topic=\"{topic}\",event_type=\"{event_type}\"}}"))
    };
    assert_eq!(events(&a, "order.created"), 300.0);
    assert_eq!(events(&b, "order.shipped"), 93.0);
    assert_eq!(events(&b, "__unknown__"), 7.0);
    let producer_events =
        sample(&text, &format!("pipewarden_producer_events_total{{topic=\"{a}\",producer=\"intake-agent\"}}"));
    assert_eq!(producer_events, 300.0);
    let problems = |topic: &str, reason: &str| {
        sample(&text, &format!("pipewarden_envelope_problems_total{{topic=\"{topic}\",reason=\"{reason}\"}}"))
    };
    assert_eq!(problems(&b, "invalid_json"), 7.0);
    assert_eq!(problems(&b, "missing_trace_id"), 3.0);
    assert_eq!(problems(&a, "missing_trace_id"), 0.0);
    let bytes = sample(&text, &format!("pipewarden_record_bytes_total{{topic=\"{a}\"}}"));
    assert!(bytes > 300.0 * 150.0, "bytes {bytes}");
    let ages = sample(&text, &format!("pipewarden_event_age_seconds_count{{topic=\"{a}\"}}"));
    assert_eq!(ages, 300.0);
    assert!(sample(&text, "pipewarden_assigned_partitions") >= 4.0, "{text}");
    assert!(sample(&text, "pipewarden_consumer_rebalances_total{kind=\"assign\"}") >= 1.0);
    assert!(sample(&text, "pipewarden_record_processing_seconds_count") >= 400.0);
    assert_eq!(daemon.status("/healthz"), Some(200));

    // Content negotiation: OpenMetrics for scrapers that ask (Prometheus
    // does), the classic text format otherwise.
    let (content_type, body) = daemon.scrape_as("application/openmetrics-text;version=1.0.0,text/plain;q=0.5");
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE pipewarden_records counter"), "{body}");
    let (content_type, body) = daemon.scrape_as("text/plain");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    assert!(!body.contains("# EOF"));
    assert!(body.contains("# TYPE pipewarden_records_total counter"));
    assert!(daemon.terminate().success());
}

#[test]
fn a_topic_created_after_start_is_picked_up() {
    let id = unique("it-new");
    let first = format!("{id}.first");
    create_topics(&[(&first, 1)]);
    let group = unique("it-new-group");
    let mut daemon = Daemon::start(DaemonOptions::new(&format!("{}\\..*", regex_escape(&id)), &group));
    daemon.wait_ready();

    let late = format!("{id}.late");
    create_topics(&[(&late, 2)]);
    let producer = producer();
    for n in 0..40 {
        producer.send(&late, None, &valid_event("late.event", "late-agent", n), &[]);
    }
    producer.flush();
    daemon.wait_for("records on the late topic", WAIT, |d| d.metric(&records(&late)) >= 40.0);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(daemon.metric(&records(&late)), 40.0);
    assert_eq!(daemon.metric("pipewarden_watched_topics"), 2.0);
    assert!(daemon.terminate().success());
}

#[test]
fn sigterm_commits_offsets_and_a_restart_resumes_without_recounting() {
    let id = unique("it-restart");
    let topic = format!("{id}.events");
    create_topics(&[(&topic, 2)]);
    let producer = producer();
    for n in 0..120 {
        producer.send(&topic, Some(n as i32 % 2), &valid_event("tick", "clock-agent", n), &[]);
    }
    producer.flush();

    let group = unique("it-restart-group");
    // A commit interval far longer than the test: only the shutdown commit
    // can have stored the offsets checked below.
    let include = regex_escape(&topic);
    let mut options = DaemonOptions::new(&include, &group);
    options.commit_interval_ms = 3_600_000;
    let mut daemon = Daemon::start(options);
    daemon.wait_for("120 records", WAIT, |d| d.metric(&records(&topic)) >= 120.0);
    let status = daemon.terminate();
    assert!(status.success(), "SIGTERM exit status {status}");
    assert_eq!(committed_offsets(&group, &topic, 2), vec![60, 60], "offsets committed at shutdown");
    assert_eq!(end_offsets(&topic, 2), vec![60, 60]);

    for n in 120..170 {
        producer.send(&topic, Some(n as i32 % 2), &valid_event("tick", "clock-agent", n), &[]);
    }
    producer.flush();
    daemon.restart();
    daemon.wait_for("50 new records", WAIT, |d| d.metric(&records(&topic)) >= 50.0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(daemon.metric(&records(&topic)), 50.0, "records before the restart were counted again");
    assert!(daemon.terminate().success());
    assert_eq!(committed_offsets(&group, &topic, 2), vec![85, 85]);
}

#[test]
fn readiness_follows_assignment_and_shutdown() {
    let id = unique("it-ready");
    let topic = format!("{id}.events");
    // No topic matches yet: alive but not ready.
    let group = unique("it-ready-group");
    let mut daemon = Daemon::start(DaemonOptions::new(&regex_escape(&topic), &group));
    daemon.wait_for("http up", WAIT, |d| d.status("/healthz") == Some(200));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(daemon.status("/readyz"), Some(503));
    create_topics(&[(&topic, 1)]);
    daemon.wait_ready();
    assert!(daemon.terminate().success());
}

fn regex_escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}
