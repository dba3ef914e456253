//! Faults against real brokers, each with exact counts that are printed so
//! docs/reliability.md can quote them:
//! - the broker stops mid-stream and comes back (a broker of the test's own,
//!   so the shared one keeps serving the other tests): `/readyz` follows
//!   it, and nothing is lost or judged twice unnoticed;
//! - one of two replicas of a group is killed: the survivor takes every
//!   partition, keeps counting and keeps correlating;
//! - a flood of distinct label values: every series family stays within
//!   its cap plus the `__overflow__` bucket, which carries the rest.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::broker::OwnBroker;
use common::*;
use rdkafka::message::Message;

const WAIT: Duration = Duration::from_secs(120);

/// Waits of the broker-restart test: on a loaded 2-core machine a broker
/// restart alone takes up to a minute, and the re-reads after it follow.
const BROKER_WAIT: Duration = Duration::from_secs(240);

/// Quarantine every invalid record; no schema checks (no registry needed).
const GOVERNANCE: &str = r#"
[quarantine]
retry_backoff_ms = 200
[[policies]]
topics = [".*"]
schema = "off"
pii = "off"
"#;

fn verdicts(text: &str, topic: &str, verdict: &str) -> f64 {
    sample(text, &format!("pipewarden_verdicts_total{{topic=\"{topic}\",verdict=\"{verdict}\"}}"))
}

/// Record `n` of the stream: every fourth is poison (its JSON lacks the
/// closing brace). Every record's bytes are distinct.
fn stream_record(n: usize) -> Vec<u8> {
    let mut record = valid_event("order.created", "shop-agent", n);
    if n.is_multiple_of(4) {
        record.pop();
    }
    record
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing_and_readiness_follows_the_broker() {
    let broker = OwnBroker::start("faults-broker");
    let bootstrap = broker.bootstrap();
    let topic = unique("faults-restart");
    create_topics_on(&bootstrap, &[(&topic, 3)]);
    let group = unique("faults-restart-group");
    let mut options = DaemonOptions::new(&topic, &group);
    options.bootstrap = Some(&bootstrap);
    options.governance = GOVERNANCE;
    options.commit_interval_ms = 200;
    // Diagnostics for a failure seen in CI (the consumer not reconnecting
    // to the restarted broker): librdkafka's connection and group logs go
    // to a file, printed if the test fails.
    let log_dir = tempfile::tempdir().expect("log dir");
    let log = log_dir.path().join("daemon.log");
    options.log_file = Some(&log);
    options.kafka_properties = "\"debug\" = \"broker,cgrp\"\n";
    options.env = &[("PIPEWARDEN_LOG", "info,librdkafka=debug")];
    let mut daemon = Daemon::start(options);
    daemon.wait_ready();
    assert_eq!(daemon.metric("pipewarden_kafka_up"), 1.0);

    // Load: 6,000 records at about 400 a second from a producer thread,
    // through the stop and the restart (it queues while the broker is down
    // and is idempotent, so no record is written twice). On a loaded
    // machine a few may time out in the test's producer: every count below
    // is taken from what the topic holds.
    const RECORDS: usize = 6_000;
    let load = {
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        std::thread::spawn(move || {
            let producer = producer_on(&bootstrap);
            for n in 0..RECORDS {
                producer.send(&topic, Some((n % 3) as i32), &stream_record(n), &[]);
                if n % 20 == 19 {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            producer.flush_bootstrapping_again(&bootstrap, Duration::from_secs(150));
        })
    };
    let judged = |d: &Daemon| {
        let text = d.scrape().unwrap_or_default();
        verdicts(&text, &topic, "valid") + verdicts(&text, &topic, "invalid")
    };
    daemon.wait_for("1,000 records judged", BROKER_WAIT, |d| judged(d) >= 1_000.0);

    let stopped_at = Instant::now();
    broker.stop();
    let judged_at_stop = judged(&daemon);
    let mut not_ready_body = String::new();
    daemon.wait_for("/readyz to report the broker loss", BROKER_WAIT, |d| match d.http_get("/readyz") {
        Some((503, body)) => {
            not_ready_body = body;
            true
        }
        _ => false,
    });
    let detected = stopped_at.elapsed();
    assert!(not_ready_body.contains("degraded: kafka brokers unreachable"), "{not_ready_body}");
    assert_eq!(daemon.metric("pipewarden_kafka_up"), 0.0);
    let down_errors = daemon.metric("pipewarden_consumer_errors_total{kind=\"metadata\"}")
        + daemon.metric("pipewarden_consumer_errors_total{kind=\"client\"}");
    assert!(down_errors >= 1.0, "the outage is counted as consumer errors");
    // Stay down a while: the producer queues, pipewarden waits. 3 s by
    // default; FAULTS_DOWN_SECONDS=45 outlasts the consumer's session and
    // the quarantine write timeout (at-least-once re-reads then show).
    let down = std::env::var("FAULTS_DOWN_SECONDS").map_or(3, |s| s.parse().expect("FAULTS_DOWN_SECONDS"));
    std::thread::sleep(Duration::from_secs(down));

    let restarted_at = Instant::now();
    broker.restart();
    daemon.wait_for("/readyz to recover by itself", BROKER_WAIT, |d| d.status("/readyz") == Some(200));
    let recovered = restarted_at.elapsed();
    assert_eq!(daemon.metric("pipewarden_kafka_up"), 1.0);
    load.join().expect("producer thread");

    let source = read_all_on(&bootstrap, &topic, 3);
    let written = source.len();
    let distinct: BTreeSet<&[u8]> = source.iter().map(|m| m.payload().unwrap()).collect();
    assert_eq!(distinct.len(), written, "the idempotent producer wrote no record twice");
    // At least what pipewarden had judged before the stop; the test's own
    // producer may give up on more on a loaded machine (see above), and
    // every check below counts what the topic holds.
    assert!(written >= 1_000, "only {written} of {RECORDS} records written");
    let poison: BTreeSet<(i32, i64)> = source
        .iter()
        .filter(|m| serde_json::from_slice::<serde_json::Value>(m.payload().unwrap()).is_err())
        .map(|m| (m.partition(), m.offset()))
        .collect();
    assert!(!poison.is_empty());
    let valid = written - poison.len();
    daemon.wait_for("every record judged and committed", BROKER_WAIT, |d| {
        let text = d.scrape().unwrap_or_default();
        verdicts(&text, &topic, "valid") >= valid as f64
            && verdicts(&text, &topic, "invalid") >= poison.len() as f64
            && end_offsets_on(&bootstrap, &topic, 3) == committed_offsets_on(&bootstrap, &group, &topic, 3)
    });
    let text = daemon.scrape().unwrap();
    let (valid_verdicts, invalid_verdicts) = (verdicts(&text, &topic, "valid"), verdicts(&text, &topic, "invalid"));
    assert_eq!(verdicts(&text, &topic, "unverified"), 0.0);
    assert!(daemon.terminate().success());

    // Every poison record is in quarantine, byte for byte, and nothing else.
    let copies = read_all_on(&bootstrap, &format!("{topic}.quarantine"), 3);
    let mut origins = BTreeSet::new();
    for copy in &copies {
        let partition: i32 = header(copy, "pipewarden.origin.partition").unwrap().parse().unwrap();
        let offset: i64 = header(copy, "pipewarden.origin.offset").unwrap().parse().unwrap();
        let original = source.iter().find(|m| (m.partition(), m.offset()) == (partition, offset)).unwrap();
        assert_eq!(copy.payload(), original.payload(), "copy of {partition}/{offset}");
        assert_eq!(header(copy, "pipewarden.reason"), Some("not_json"));
        origins.insert((partition, offset));
    }
    assert_eq!(origins, poison, "de-duplicated quarantine = the poison set (no valid record in it)");
    let duplicates = (valid_verdicts + invalid_verdicts) as usize - written;
    // How often the daemon's clients were given the bootstrap servers again
    // (src/rebootstrap.rs): 0 when librdkafka kept its broker through the restart.
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    let rebootstraps = daemon_log.matches("adding the bootstrap servers to the clients again").count();
    // How often librdkafka dropped a broker a metadata answer did not list
    // (the case the re-bootstrap exists for), from its `broker` debug log.
    // (A client's bootstrap handles are decommissioned at every start.)
    let decommissioned: Vec<&str> = daemon_log
        .lines()
        .filter(|line| line.contains("Decommissioning this broker") && !line.contains("/bootstrap:"))
        .collect();
    // When it happened, the timeline of the recovery (a few lines).
    if !decommissioned.is_empty() {
        let timeline = daemon_log.lines().filter(|line| {
            (line.contains("Decommissioning this broker") && !line.contains("/bootstrap:"))
                || line.contains("adding the bootstrap servers")
                || line.contains("kafka brokers reachable again")
        });
        for line in timeline.take(20) {
            eprintln!("  {}", line.chars().take(300).collect::<String>());
        }
    }
    eprintln!(
        "broker restart: {written} of {RECORDS} records written ({valid} valid, {} poison); stopped after {judged_at_stop} judged; \
         /readyz 503 after {:.1} s ({}); ready again {:.1} s after the restart began; verdicts valid={valid_verdicts} \
         invalid={invalid_verdicts} ({duplicates} judged twice); quarantine {} copies, {} distinct = poison set; \
         bootstrap servers added again {} times (brokers decommissioned by librdkafka: {})",
        poison.len(),
        detected.as_secs_f64(),
        not_ready_body.trim(),
        recovered.as_secs_f64(),
        copies.len(),
        origins.len(),
        rebootstraps,
        decommissioned.len(),
    );
}

/// Every sample of `family` (exact name, no suffix) as (labels, value).
/// The mechanism behind the broker-restart recovery (`src/rebootstrap.rs`):
/// a client whose every known broker is gone reaches the cluster as soon as
/// the bootstrap servers are added to it again. Here the only broker the
/// consumer knows is a closed port.
#[test]
fn a_client_without_a_live_broker_reaches_the_cluster_once_the_bootstrap_servers_are_added_again() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let dead = closed.local_addr().expect("its address").to_string();
    drop(closed);
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &dead)
        .set("group.id", unique("faults-rebootstrap"))
        .set("reconnect.backoff.max.ms", "1000")
        .create()
        .expect("consumer");
    assert!(
        consumer.fetch_metadata(None, Duration::from_secs(2)).is_err(),
        "no metadata while the only known broker is {dead}, a closed port"
    );
    let bootstrap = pipewarden::rebootstrap::Bootstrap::new(&bootstrap()).expect("bootstrap servers");
    assert!(bootstrap.add_to(consumer.client()) >= 1, "librdkafka took the servers");
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(30)).expect("metadata once the servers are added");
    assert!(!metadata.brokers().is_empty(), "the cluster's brokers are known");
}

fn family_samples(text: &str, family: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let prefix = format!("{family}{{");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            let (labels, value) = rest.split_once("} ").unwrap();
            let labels = labels
                .split("\",")
                .map(|pair| {
                    let (name, value) = pair.split_once("=\"").unwrap();
                    (name.to_string(), value.trim_end_matches('"').to_string())
                })
                .collect();
            (labels, value.trim().parse().unwrap())
        })
        .collect()
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
}

/// Resident set size of a process, from /proc, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The topic label at the limiter itself, without a broker: 10,000
/// distinct topic names (too many to create on a shared broker) make
/// exactly `cap` labelled series and one `__overflow__` series, which
/// carries every other record; each refused name is counted once.
#[test]
fn ten_thousand_distinct_topic_names_make_cap_plus_one_series() {
    use pipewarden::metrics::{Metrics, TopicLabels};
    const CAP: usize = 1_000; // the default metrics.max_label_values
    const NAMES: usize = 10_000;
    let metrics = Metrics::new(CAP);
    for n in 0..NAMES {
        let label = metrics.topic_label(&format!("agents.flood.{n}"));
        metrics.records.get_or_create(&TopicLabels { topic: label }).inc_by(2);
        // A name seen again keeps its own label, or stays in overflow.
        let again = metrics.topic_label(&format!("agents.flood.{n}"));
        assert_eq!(again == "__overflow__", n >= CAP, "name {n}");
    }
    let mut text = String::new();
    metrics.encode_prometheus(&mut text).unwrap();
    let records = family_samples(&text, "pipewarden_records_total");
    assert_eq!(records.len(), CAP + 1);
    let overflow: f64 = records.iter().filter(|(l, _)| label(l, "topic") == "__overflow__").map(|(_, v)| v).sum();
    assert_eq!(overflow, 2.0 * (NAMES - CAP) as f64);
    assert_eq!(records.iter().map(|(_, v)| v).sum::<f64>(), 2.0 * NAMES as f64);
    // Each refused name was asked for twice.
    let refused = sample(&text, "pipewarden_label_overflow_total{label=\"topic\"}");
    assert_eq!(refused, 2.0 * (NAMES - CAP) as f64);
    eprintln!(
        "topic limiter: {NAMES} distinct topic names, cap {CAP}: {} series, __overflow__ = {overflow} of {} records, \
         label_overflow_total{{label=\"topic\"}} = {refused}",
        records.len(),
        2 * NAMES
    );
}

#[test]
fn a_flood_of_distinct_label_values_stays_within_the_caps() {
    // 25 real topics (topic labels come only from real topic names), and
    // 10,000 records whose event type, producer and model are all distinct
    // (those labels come from the data).
    const CAP: usize = 20;
    const TOPICS: usize = 25;
    const RECORDS: usize = 10_000;
    let id = unique("faults-flood");
    let topics: Vec<String> = (0..TOPICS).map(|i| format!("{id}.t{i:02}")).collect();
    create_topics(&topics.iter().map(|t| (t.as_str(), 1)).collect::<Vec<_>>());
    let group = unique("faults-flood-group");
    let include = format!("{id}\\..*");
    // The lag monitor is off: it reports every group of the (shared)
    // cluster, so its series would join this test's in the scrape.
    let extra = format!("[metrics]\nmax_label_values = {CAP}\n[lag]\nenabled = false\n");
    let mut options = DaemonOptions::new(&include, &group);
    options.extra = &extra;
    options.governance = "[[policies]]\ntopics = [\".*\"]\nschema = \"off\"\npii = \"off\"\n";
    let mut daemon = Daemon::start(options);
    daemon.wait_ready();
    daemon.wait_for("every topic assigned", WAIT, |d| d.metric("pipewarden_assigned_partitions") == TOPICS as f64);
    let rss_before = rss_bytes(daemon.pid());

    let producer = producer();
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    for n in 0..RECORDS {
        let payload = format!(
            r#"{{"event_type":"flood.type-{n}","trace_id":"flood-{n}","event_id":"e-{n}","created_at":"{now}","schema_version":"1","producer":"agent-{n}","model":"model-{n}","usage":{{"prompt_tokens":10,"completion_tokens":5}}}}"#
        );
        producer.send(&topics[n % TOPICS], Some(0), payload.as_bytes(), &[]);
    }
    producer.flush();
    let total = |text: &str, family: &str| family_samples(text, family).iter().map(|(_, v)| v).sum::<f64>();
    daemon.wait_for("every record counted", WAIT, |d| {
        total(&d.scrape().unwrap_or_default(), "pipewarden_records_total") >= RECORDS as f64
    });
    let text = daemon.scrape().unwrap();
    let rss_after = rss_bytes(daemon.pid());

    let records = family_samples(&text, "pipewarden_records_total");
    let overflow_topic: f64 = records.iter().filter(|(l, _)| label(l, "topic") == "__overflow__").map(|(_, v)| v).sum();
    assert_eq!(records.len(), CAP + 1, "topic label: {CAP} topics and __overflow__: {records:?}");
    assert_eq!(total(&text, "pipewarden_records_total"), RECORDS as f64);
    // The 5 topics past the cap, 400 records each, all under __overflow__.
    assert_eq!(overflow_topic, ((TOPICS - CAP) * RECORDS / TOPICS) as f64);

    let mut report = Vec::new();
    for (family, data_label, per_record) in [
        ("pipewarden_events_total", "event_type", 1.0),
        ("pipewarden_producer_events_total", "producer", 1.0),
        ("pipewarden_llm_unpriced_tokens_total", "model", 15.0),
    ] {
        let samples = family_samples(&text, family);
        let values: BTreeSet<&str> = samples.iter().map(|(l, _)| label(l, data_label)).collect();
        let topics: BTreeSet<&str> = samples.iter().map(|(l, _)| label(l, "topic")).collect();
        let sum: f64 = samples.iter().map(|(_, v)| v).sum();
        let overflowed: f64 =
            samples.iter().filter(|(l, _)| label(l, data_label) == "__overflow__").map(|(_, v)| v).sum();
        // At most CAP real values plus the overflow bucket, per label.
        assert_eq!(values.len(), CAP + 1, "{family}: {data_label} values {values:?}");
        assert!(values.contains("__overflow__"));
        assert!(topics.len() <= CAP + 1, "{family}: topics {topics:?}");
        assert!(samples.len() <= (CAP + 1) * (CAP + 1), "{family}: {} series", samples.len());
        // Nothing is lost: every record is counted once, and each admitted
        // value (all distinct) carries exactly one record.
        assert_eq!(sum, RECORDS as f64 * per_record, "{family}");
        assert_eq!(overflowed, (RECORDS - CAP) as f64 * per_record, "{family}: __overflow__ carries the rest");
        let replaced = sample(&text, &format!("pipewarden_label_overflow_total{{label=\"{data_label}\"}}"));
        assert!(replaced >= 1.0, "{data_label} overflow counted");
        report.push(format!(
            "{family}: {} series, {} {data_label} values, __overflow__ = {overflowed} of {sum}, label_overflow_total = {replaced}",
            samples.len(),
            values.len()
        ));
    }
    let series = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    let growth = rss_after.saturating_sub(rss_before);
    assert!(growth < 64 << 20, "RSS grew by {growth} bytes");
    assert!(daemon.terminate().success());
    eprintln!(
        "label flood: {RECORDS} records, {TOPICS} topics, cap {CAP}; topic label {} series, __overflow__ = {overflow_topic} \
         records; {}; {series} samples in the whole scrape; RSS {} -> {} KiB (+{} KiB)",
        records.len(),
        report.join("; "),
        rss_before / 1024,
        rss_after / 1024,
        growth / 1024
    );
}

/// Flows of the replica test: one per phase, so each phase's outcome has its own series.
const PHASE_FLOWS: &str = r#"
[[flows]]
name = "before"
start = ["before.created"]
success = ["before.done"]
sla_ms = 600000
[[flows]]
name = "across"
start = ["across.created"]
success = ["across.done"]
sla_ms = 600000
[[flows]]
name = "after"
start = ["after.created"]
success = ["after.done"]
sla_ms = 600000
"#;

fn flow_event(trace: &str, event_type: &str, n: usize) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    format!(
        r#"{{"event_type":"{event_type}","trace_id":"{trace}","event_id":"{event_type}-{n}","created_at":"{now}","schema_version":"1","producer":"replica-test"}}"#
    )
    .into_bytes()
}

#[test]
fn a_killed_replica_leaves_every_partition_to_the_survivor_which_keeps_counting_and_correlating() {
    const TRACES: usize = 20;
    let id = unique("faults-replica");
    let (input, observations) = (format!("{id}.flow"), format!("pipewarden.observations.{id}"));
    create_topics(&[(&input, 4), (&observations, 4)]);
    let include = format!("{id}\\..*");
    let group = unique("faults-replica-group");
    let extra = format!(
        "{PHASE_FLOWS}\n[correlate]\nmode = \"kafka\"\n[correlate.kafka]\ntopic = \"{observations}\"\npartitions = 4\n"
    );
    let start_replica = || {
        let mut options = DaemonOptions::new(&include, &group);
        options.extra = &extra;
        options.governance = "[[policies]]\ntopics = [\".*\"]\nschema = \"off\"\ninvalid = \"count\"\npii = \"off\"\n";
        options.commit_interval_ms = 200;
        // The killed member's partitions move once its session times out.
        options.kafka_properties = "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"";
        Daemon::start(options)
    };
    let (mut survivor, mut victim) = (start_replica(), start_replica());
    survivor.wait_ready();
    victim.wait_ready();
    let assigned = |d: &Daemon| d.metric("pipewarden_assigned_partitions");
    survivor.wait_for("the input partitions to be shared", WAIT, |d| {
        let (mine, theirs) = (assigned(d), assigned(&victim));
        mine >= 1.0 && theirs >= 1.0 && mine + theirs == 4.0
    });
    // The observation consumers rebalance alongside; let them settle.
    std::thread::sleep(Duration::from_secs(5));

    let producer = producer();
    // Keyed by trace: each trace's events share an input partition, in order.
    let send = |trace: &str, event_type: &str, n: usize| {
        producer.send_keyed(&input, None, Some(trace.as_bytes()), &flow_event(trace, event_type, n), &[]);
    };
    // Before the kill: `before` traces complete; `across` traces start.
    for n in 0..TRACES {
        send(&format!("before-{n}"), "before.created", n);
        send(&format!("before-{n}"), "before.done", n);
        send(&format!("across-{n}"), "across.created", n);
    }
    producer.flush();
    let phase_one = 3 * TRACES;
    let judged = |d: &Daemon| d.metric(&format!("pipewarden_verdicts_total{{topic=\"{input}\",verdict=\"valid\"}}"));
    let consumed = |d: &Daemon| d.metric("pipewarden_observations_total{result=\"consumed\"}");
    let flow = |d: &Daemon, name: &str| {
        d.metric(&format!("pipewarden_flow_traces_total{{flow=\"{name}\",outcome=\"success\"}}"))
    };
    survivor.wait_for("phase one judged and correlated", WAIT, |d| {
        judged(d) + judged(&victim) == phase_one as f64
            && consumed(d) + consumed(&victim) == phase_one as f64
            && flow(d, "before") + flow(&victim, "before") == TRACES as f64
    });
    // Let both replicas commit input and observation offsets.
    std::thread::sleep(Duration::from_secs(2));
    // Which replica holds each open `across` trace (the owner of its observations partition).
    let held_by =
        |d: &Daemon| (0..TRACES).filter(|n| d.status(&format!("/api/v1/traces/across-{n}")) == Some(200)).count();
    let (survivor_held, victim_held) = (held_by(&survivor), held_by(&victim));
    assert_eq!(survivor_held + victim_held, TRACES, "every open trace is held by one replica");
    let (victim_judged, victim_before) = (judged(&victim), flow(&victim, "before"));
    let (survivor_judged_before_kill, survivor_before) = (judged(&survivor), flow(&survivor, "before"));

    victim.kill();
    let killed_at = Instant::now();
    survivor.wait_for("the survivor to own every input partition", WAIT, |d| assigned(d) == 4.0);
    let takeover = killed_at.elapsed();
    let readiness = survivor.http_get("/readyz").unwrap();
    assert_eq!(readiness.0, 200, "{readiness:?}");

    // After the kill: `across` traces finish; `after` traces start and finish.
    for n in 0..TRACES {
        send(&format!("across-{n}"), "across.done", n);
        send(&format!("after-{n}"), "after.created", n);
        send(&format!("after-{n}"), "after.done", n);
    }
    producer.flush();
    let total = 6 * TRACES;
    survivor.wait_for("every record judged at least once", WAIT, |d| {
        victim_judged + judged(d) >= total as f64 && flow(d, "after") >= TRACES as f64
    });
    // Two more seconds: anything still arriving would change the counts.
    std::thread::sleep(Duration::from_secs(2));
    let survivor_judged = judged(&survivor);
    let judged_twice = victim_judged + survivor_judged - total as f64;
    let (after, across, before) = (flow(&survivor, "after"), flow(&survivor, "across"), flow(&survivor, "before"));
    // Traces wholly after the kill are all correlated, exactly once.
    assert_eq!(after, TRACES as f64);
    // Traces open on the survivor complete there; those open on the killed
    // replica lost their start with its memory (its observation offsets
    // were committed), so their end opens nothing.
    assert_eq!(across, survivor_held as f64, "across traces completed by the survivor");
    // Completed traces are not counted again by the survivor.
    assert_eq!(before, survivor_before);
    assert_eq!(victim_before + survivor_before, TRACES as f64);
    assert!(judged_twice >= 0.0);
    assert!(survivor.terminate().success());
    eprintln!(
        "replica killed: {total} records ({phase_one} before the kill); before the kill victim judged {victim_judged}, \
         survivor {survivor_judged_before_kill}; survivor owned 4/4 partitions {:.1} s after kill -9; survivor judged \
         {survivor_judged} in all, {judged_twice} judged twice; flows: before {victim_before}+{survivor_before}/{TRACES}, \
         after {after}/{TRACES} (all on the survivor), across {across}/{TRACES} completed (the {survivor_held} open on \
         the survivor; the {victim_held} open on the killed replica lost their start)",
        takeover.as_secs_f64()
    );
}
