//! Dead-letter analytics against the real broker: records carrying each
//! header convention (Kafka Connect, Spring Kafka, Kafka Streams, the demo
//! agents), records with no headers (source from the topic name, reason
//! from a payload field), and pipewarden's own quarantine writes are each
//! counted exactly by dead-letter topic, source topic and reason, next to
//! the source topic's record count (the DLQ ratio's two counters).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

const WAIT: Duration = Duration::from_secs(90);

fn regex_escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn every_convention_names_source_and_reason_and_quarantine_counts_too() {
    let id = unique("it-dlq");
    let orders = format!("{id}.orders");
    let connect = format!("{id}.orders.dlq");
    let spring = format!("{id}.orders.DLT");
    let streams = format!("dlq.{id}.clicks");
    let billing = format!("{id}.billing-dlq");
    let support = format!("{id}.support.dlq");
    create_topics(&[(&orders, 2), (&connect, 1), (&spring, 1), (&streams, 1), (&billing, 1), (&support, 1)]);
    let started = now_seconds();

    let producer = producer();
    for n in 0..20 {
        producer.send(&orders, Some(n % 2), &valid_event("order.created", "shop-agent", n as usize), &[]);
    }
    // Poison on the source topic: quarantined by pipewarden as not_json.
    for n in 0..3 {
        producer.send(&orders, Some(n % 2), br#"{"event_type":"order.created","trace_id":"#, &[]);
    }
    let broken = br#"{"id":42,"amount":"#;
    let connect_class = "org.apache.kafka.connect.errors.DataException";
    for _ in 0..4 {
        let headers = [
            ("__connect.errors.topic", orders.as_str()),
            ("__connect.errors.partition", "0"),
            ("__connect.errors.offset", "17"),
            ("__connect.errors.exception.class.name", connect_class),
            ("__connect.errors.exception.message", "Converting byte[] to Kafka Connect data failed"),
        ];
        producer.send(&connect, None, broken, &headers);
    }
    let spring_class = "org.springframework.kafka.support.serializer.DeserializationException";
    for _ in 0..2 {
        let headers = [
            ("kafka_dlt-original-topic", orders.as_str()),
            ("kafka_dlt-original-partition", "1"),
            ("kafka_dlt-exception-fqcn", spring_class),
            ("kafka_dlt-exception-message", "failed to deserialize"),
        ];
        producer.send(&spring, None, broken, &headers);
    }
    let clicks = format!("{id}.clicks");
    let streams_class = "org.apache.kafka.common.errors.SerializationException";
    for _ in 0..3 {
        let headers = [
            ("__streams.errors.topic", clicks.as_str()),
            ("__streams.errors.exception", streams_class),
            ("__streams.errors.message", "Size of data received is not 8"),
        ];
        producer.send(&streams, None, b"\x00\x01", &headers);
    }
    // No headers: the source comes from the topic name, the reason from the payload.
    for _ in 0..5 {
        producer.send(&billing, None, br#"{"error":{"code":"card_declined"},"invoice":"INV-1"}"#, &[]);
    }
    let classified = format!("{id}.support.ticket.classified");
    for _ in 0..2 {
        let headers = [("dlq.original.topic", classified.as_str()), ("dlq.reason", "llm_timeout")];
        producer.send(&support, None, &valid_event("support.ticket.classified", "classifier-agent", 1), &headers);
    }
    producer.flush();

    let governance = r#"
[quarantine]
retry_backoff_ms = 200
[[policies]]
topics = [".+[._-](?i:dlq|dlt)", "(?i:dlq|dlt)[._-].+"]
required_fields = []
schema = "off"
invalid = "count"
[[policies]]
topics = [".*"]
schema = "off"
"#;
    let extra = "[dlq]\nreason_field = \"/error/code\"\n";
    let group = unique("it-dlq-group");
    let include = format!("{0}\\..*|dlq\\.{0}\\..*", regex_escape(&id));
    let mut options = DaemonOptions::new(&include, &group);
    options.governance = governance;
    options.extra = extra;
    let mut daemon = Daemon::start(options);

    let quarantine = format!("{orders}.quarantine");
    let dlq = |text: &str, dlq_topic: &str, source: &str, reason: &str| {
        sample(
            text,
            &format!(
                "pipewarden_dlq_records_total{{dlq_topic=\"{dlq_topic}\",source_topic=\"{source}\",reason=\"{reason}\"}}"
            ),
        )
    };
    daemon.wait_for("every dead letter", WAIT, |d| {
        let text = d.scrape().unwrap_or_default();
        dlq(&text, &quarantine, &orders, "not_json") >= 3.0
            && dlq(&text, &support, &classified, "llm_timeout") >= 2.0
            && dlq(&text, &billing, &format!("{id}.billing"), "card_declined") >= 5.0
            && dlq(&text, &connect, &orders, connect_class) >= 4.0
            && dlq(&text, &spring, &orders, spring_class) >= 2.0
            && dlq(&text, &streams, &clicks, streams_class) >= 3.0
    });
    std::thread::sleep(Duration::from_secs(2));
    let text = daemon.scrape().expect("scrape");
    let expected: &[(&str, &str, &str, f64)] = &[
        (&quarantine, &orders, "not_json", 3.0),
        (&connect, &orders, connect_class, 4.0),
        (&spring, &orders, spring_class, 2.0),
        (&streams, &clicks, streams_class, 3.0),
        (&billing, &format!("{id}.billing"), "card_declined", 5.0),
        (&support, &classified, "llm_timeout", 2.0),
    ];
    for (dlq_topic, source, reason, count) in expected {
        assert_eq!(dlq(&text, dlq_topic, source, reason), *count, "{dlq_topic} {source} {reason}:\n{text}");
    }
    let series = text.lines().filter(|l| l.starts_with("pipewarden_dlq_records_total{") && l.contains(&id)).count();
    assert_eq!(series, expected.len(), "no other dead-letter series:\n{text}");

    // The two counters of the DLQ ratio of the orders topic: 9 dead letters
    // (3 quarantined, 4 via Connect, 2 via Spring) for 23 records.
    assert_eq!(sample(&text, &format!("pipewarden_records_total{{topic=\"{orders}\"}}")), 23.0);
    let from_orders: f64 = text
        .lines()
        .filter(|l| l.starts_with("pipewarden_dlq_records_total{") && l.contains(&format!("source_topic=\"{orders}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(from_orders, 9.0);

    // Newest dead letter per topic: produced during this test, age counted from it.
    let finished = now_seconds();
    for dlq_topic in [&connect, &spring, &streams, &billing, &support, &quarantine] {
        let newest =
            sample(&text, &format!("pipewarden_dlq_newest_record_timestamp_seconds{{dlq_topic=\"{dlq_topic}\"}}"));
        assert!((started - 1.0..=finished).contains(&newest), "{dlq_topic}: {newest} not in [{started}, {finished}]");
        let age = sample(&text, &format!("pipewarden_dlq_newest_record_age_seconds{{dlq_topic=\"{dlq_topic}\"}}"));
        assert!((0.0..=finished - started + 2.0).contains(&age), "{dlq_topic}: age {age}");
    }
    // The age keeps growing while no dead letter arrives.
    std::thread::sleep(Duration::from_secs(2));
    let later = daemon.metric(&format!("pipewarden_dlq_newest_record_age_seconds{{dlq_topic=\"{connect}\"}}"));
    let before = sample(&text, &format!("pipewarden_dlq_newest_record_age_seconds{{dlq_topic=\"{connect}\"}}"));
    assert!(later >= before + 1.0, "age {before} then {later}");
    assert!(daemon.terminate().success());
}
