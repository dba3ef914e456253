//! Governance against the real broker and a real schema registry: a corpus
//! of bad records interleaved with valid JSON and Avro records lands in
//! quarantine exactly, byte for byte; a kill -9 loses no poison record; a
//! registry outage produces no verdict until the registry is back; the
//! embedded schema folder governs without any registry.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use apache_avro::types::Value as AvroValue;
use common::*;
use rdkafka::message::{Headers as _, Message, OwnedMessage};

const WAIT: Duration = Duration::from_secs(120);

const JSON_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["event_type", "trace_id", "data"],
  "properties": {
    "event_type": {"type": "string"},
    "data": {"type": "object", "required": ["order_id", "amount"],
             "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}}}
  }
}"#;

const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "OrderPaid", "namespace": "test",
  "fields": [{"name": "order_id", "type": "string"}, {"name": "amount", "type": "double"}]}"#;

fn event(n: usize, data: &str) -> String {
    format!(
        r#"{{"event_type":"order.created","trace_id":"trace-{n}","event_id":"evt-{n}","created_at":"2026-11-29T06:00:00Z","schema_version":"1","producer":"shop-agent","data":{data}}}"#
    )
}

fn valid_json(n: usize) -> Vec<u8> {
    event(n, &format!(r#"{{"order_id":"o-{n}","amount":{n}.5,"note":"gift wrap, ref 2026-11-29, v1.2.3"}}"#))
        .into_bytes()
}

fn avro_record(schema: &apache_avro::Schema, id: u32, n: usize) -> Vec<u8> {
    let value = AvroValue::Record(vec![
        ("order_id".into(), AvroValue::String(format!("o-{n}"))),
        ("amount".into(), AvroValue::Double(n as f64)),
    ]);
    let mut bytes = vec![0];
    bytes.extend_from_slice(&id.to_be_bytes());
    #[allow(deprecated)] // the plain datum encoder is all a test needs
    bytes.extend(apache_avro::to_avro_datum(schema, value).unwrap());
    bytes
}

fn wire(id: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// The bad-record corpus: (name, expected reason, payload). Every kind the
/// governance checks know, each one distinct.
fn corpus(avro_id: u32) -> Vec<(&'static str, &'static str, Option<Vec<u8>>)> {
    let e = |data: &str| Some(event(0, data).into_bytes());
    let without = |field: &str| {
        let mut value: serde_json::Value = serde_json::from_slice(&valid_json(0)).unwrap();
        value.as_object_mut().unwrap().remove(field);
        Some(value.to_string().into_bytes())
    };
    let with = |field: &str, replacement: serde_json::Value| {
        let mut value: serde_json::Value = serde_json::from_slice(&valid_json(0)).unwrap();
        value[field] = replacement;
        Some(value.to_string().into_bytes())
    };
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    vec![
        ("truncated json", "not_json", Some(valid_json(0)[..40].to_vec())),
        ("invalid utf-8", "not_json", Some(b"{\"event_type\":\"\xff\xfe\"}".to_vec())),
        ("json array", "not_json", Some(b"[1,2,3]".to_vec())),
        ("wrong magic byte", "not_json", Some(vec![1, 0, 0, 0, 1, b'{', b'}'])),
        ("unknown schema id", "unknown_schema_id", Some(wire(2_000_000_000, &valid_json(0)))),
        ("avro bytes not matching", "schema_mismatch", Some(wire(avro_id, &[0x02, 0xff, 0xff, 0xff]))),
        (
            "avro trailing bytes",
            "schema_mismatch",
            Some({
                let schema = apache_avro::Schema::parse_str(AVRO_SCHEMA).unwrap();
                let mut bytes = avro_record(&schema, avro_id, 1);
                bytes.extend_from_slice(b"extra");
                bytes
            }),
        ),
        ("json schema violation", "schema_mismatch", e(r#"{"order_id":"o-1","amount":"lots"}"#)),
        ("json schema missing field", "schema_mismatch", e(r#"{"order_id":"o-1"}"#)),
        ("missing event_type", "missing_field", without("event_type")),
        ("missing event_id", "missing_field", without("event_id")),
        ("missing trace_id", "missing_field", without("trace_id")),
        ("missing created_at", "missing_field", without("created_at")),
        ("missing schema_version", "missing_field", without("schema_version")),
        ("missing producer", "missing_field", without("producer")),
        ("numeric event_id", "bad_field_type", with("event_id", serde_json::json!(42))),
        ("boolean producer", "bad_field_type", with("producer", serde_json::json!(true))),
        ("created_at not rfc 3339", "bad_field_type", with("created_at", serde_json::json!("yesterday at noon"))),
        ("oversize", "oversize", e(&format!(r#"{{"order_id":"o-1","amount":1,"blob":"{}"}}"#, "x".repeat(40_000)))),
        ("nested 10000 deep", "too_deep", Some(deep.into_bytes())),
        ("email", "pii", e(r#"{"order_id":"o-1","amount":1,"contact":"write to jane.doe@example.com please"}"#)),
        ("payment card", "pii", e(r#"{"order_id":"o-1","amount":1,"card":"4111 1111 1111 1111"}"#)),
        ("phone", "pii", e(r#"{"order_id":"o-1","amount":1,"callback":"+44 20 7946 0958"}"#)),
        ("iban", "pii", e(r#"{"order_id":"o-1","amount":1,"payout":"DE89 3704 0044 0532 0130 00"}"#)),
        ("empty value", "empty_payload", Some(Vec::new())),
    ]
}

fn governance(registry: &str) -> String {
    format!(
        r#"
[registry]
{registry}
timeout_ms = 2000
[quarantine]
connect_headers = true
retry_backoff_ms = 200
[[policies]]
topics = [".*"]
max_payload_bytes = 32768
pii = "quarantine"
"#
    )
}

/// Produces the corpus interleaved with valid JSON and Avro records over
/// three partitions; returns the expected reason of each poison record by
/// (partition, offset) and the number of valid records.
/// Poison records by (partition, offset): (corpus name, expected reason).
type PoisonSet = BTreeMap<(i32, i64), (&'static str, &'static str)>;

fn produce_mixed(topic: &str, avro_id: u32) -> (PoisonSet, usize) {
    let producer = producer();
    let schema = apache_avro::Schema::parse_str(AVRO_SCHEMA).unwrap();
    let mut next = [0i64; 3];
    let mut poison = BTreeMap::new();
    let mut valid = 0;
    let mut n = 0;
    let mut send = |payload: &[u8], headers: &[(&str, &str)], next: &mut [i64; 3]| {
        n += 1;
        let partition = n % 3;
        producer.send(topic, Some(partition), payload, headers);
        next[partition as usize] += 1;
        (partition, next[partition as usize] - 1)
    };
    let headers = [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("x-tenant", "acme")];
    for (i, (name, reason, payload)) in corpus(avro_id).into_iter().enumerate() {
        for k in 0..4 {
            let good = valid_json(i * 10 + k);
            send(&good, &headers, &mut next);
            valid += 1;
        }
        let avro = avro_record(&schema, avro_id, i);
        send(&avro, &[], &mut next);
        valid += 1;
        // No traceparent on the bad records: it would stand in for a missing trace_id.
        let at = send(payload.as_deref().unwrap_or_default(), &headers[1..], &mut next);
        poison.insert(at, (name, reason));
    }
    // Keys that name their schema in a `__key_schema_id` header: one that
    // matches it (valid) and one that does not (bad_key).
    let key_schema = avro_id.to_string();
    let good_key = avro_record(&schema, avro_id, 99)[5..].to_vec();
    for (key, bad) in [(good_key.as_slice(), false), (&[0xffu8][..], true)] {
        n += 1;
        let partition = n % 3;
        let headers = [("__key_schema_id", key_schema.as_str())];
        producer.send_keyed(topic, Some(partition), Some(key), &valid_json(1_000 + n as usize), &headers);
        next[partition as usize] += 1;
        if bad {
            poison.insert((partition, next[partition as usize] - 1), ("key not matching its schema", "bad_key"));
        } else {
            valid += 1;
        }
    }
    producer.flush();
    (poison, valid)
}

/// Checks every copy against its source record; returns the de-duplicated origins.
fn check_copies(source: &[OwnedMessage], copies: &[OwnedMessage]) -> BTreeMap<(i32, i64), String> {
    let by_origin: BTreeMap<(i32, i64), &OwnedMessage> =
        source.iter().map(|m| ((m.partition(), m.offset()), m)).collect();
    let mut origins = BTreeMap::new();
    for copy in copies {
        let partition: i32 = header(copy, "pipewarden.origin.partition").unwrap().parse().unwrap();
        let offset: i64 = header(copy, "pipewarden.origin.offset").unwrap().parse().unwrap();
        let original = by_origin[&(partition, offset)];
        assert_eq!(copy.key(), original.key(), "key of {partition}/{offset}");
        assert_eq!(copy.payload(), original.payload(), "value of {partition}/{offset}");
        assert_eq!(copy.timestamp().to_millis(), original.timestamp().to_millis(), "timestamp of {partition}/{offset}");
        assert_eq!(copy.partition(), original.partition(), "same partition number");
        let original_headers = original.headers().map_or(0, |h| h.count());
        for i in 0..original_headers {
            let (a, b) = (original.headers().unwrap().get(i), copy.headers().unwrap().get(i));
            assert_eq!((a.key, a.value), (b.key, b.value), "header {i} of {partition}/{offset}");
        }
        assert_eq!(header(copy, "pipewarden.origin.topic"), Some(original.topic()));
        assert_eq!(
            header(copy, "pipewarden.origin.timestamp").map(|t| t.parse::<i64>().unwrap()),
            original.timestamp().to_millis()
        );
        assert!(header(copy, "pipewarden.error").is_some_and(|e| !e.is_empty() && e.len() <= 512));
        assert_eq!(header(copy, "pipewarden.version"), Some(env!("CARGO_PKG_VERSION")));
        assert!(header(copy, "pipewarden.observed.at").is_some());
        if let Some(connect_offset) = header(copy, "__connect.errors.offset") {
            assert_eq!(connect_offset, offset.to_string());
            assert_eq!(header(copy, "__connect.errors.topic"), Some(original.topic()));
        }
        origins.insert((partition, offset), header(copy, "pipewarden.reason").unwrap().to_string());
    }
    origins
}

fn total_verdicts(daemon: &Daemon, topic: &str) -> f64 {
    ["valid", "invalid", "unverified"]
        .iter()
        .map(|v| daemon.metric(&format!("pipewarden_verdicts_total{{topic=\"{topic}\",verdict=\"{v}\"}}")))
        .sum()
}

#[test]
fn exactly_the_bad_records_land_in_quarantine_byte_for_byte() {
    let base = registry_url();
    let topic = unique("gov-corpus");
    create_topics(&[(&topic, 3)]);
    register_schema(&base, &format!("{topic}-value"), "JSON", JSON_SCHEMA);
    let avro_id = register_schema(&base, &unique("gov-avro"), "AVRO", AVRO_SCHEMA);
    let (poison, valid) = produce_mixed(&topic, avro_id);
    assert!(poison.len() >= 15, "corpus of {} kinds", poison.len());
    // A tombstone passes by default.
    rdkafka_tombstone(&topic);
    let total = poison.len() + valid + 1;

    let group = unique("gov-corpus-group");
    let governance = governance(&format!("url = \"{base}\""));
    let mut options = DaemonOptions::new(&topic, &group);
    options.governance = &governance;
    let mut daemon = Daemon::start(options);
    daemon.wait_for("every record judged and quarantined", WAIT, |d| {
        total_verdicts(d, &topic) >= total as f64
            && d.metric(&format!("pipewarden_quarantined_records_total{{topic=\"{topic}\"}}")) >= poison.len() as f64
    });
    let text = daemon.scrape().unwrap();
    assert!(daemon.terminate().success());

    let quarantine = format!("{topic}.quarantine");
    let copies = read_all(&quarantine, 3);
    let source = read_all(&topic, 3);
    assert_eq!(copies.len(), poison.len(), "one copy per poison record (a clean run has no duplicates)");
    let origins = check_copies(&source, &copies);
    let expected: BTreeMap<(i32, i64), String> =
        poison.iter().map(|(k, (_, reason))| (*k, reason.to_string())).collect();
    for (at, (name, reason)) in &poison {
        assert_eq!(origins.get(at).map(String::as_str), Some(*reason), "{name} at {at:?}");
    }
    assert_eq!(origins, expected);
    let valid_count = sample(&text, &format!("pipewarden_verdicts_total{{topic=\"{topic}\",verdict=\"valid\"}}"));
    assert_eq!(valid_count, (valid + 1) as f64, "{text}");
    println!("corpus: {} bad kinds, {} valid records (JSON and Avro), 1 tombstone", poison.len(), valid);
}

fn rdkafka_tombstone(topic: &str) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).create().unwrap();
    producer.send(BaseRecord::<str, [u8]>::to(topic).key("gone").partition(0)).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// The poison set, the copies a `read_committed` reader sees, and their
/// de-duplicated origins.
type KillOutcome = (BTreeSet<(i32, i64)>, Vec<OwnedMessage>, BTreeSet<(i32, i64)>);

/// Kills pipewarden with SIGKILL while it quarantines, `rounds` times, then
/// lets it finish; returns the poison set, the quarantine copies a
/// `read_committed` reader sees and their de-duplicated origins.
fn kill_while_quarantining(prefix: &str, rounds: u64, quarantine: &str) -> KillOutcome {
    let base = registry_url();
    let topic = unique(prefix);
    create_topics(&[(&topic, 3)]);
    register_schema(&base, &format!("{topic}-value"), "JSON", JSON_SCHEMA);
    let producer = producer();
    let mut poison = BTreeSet::new();
    // The records come in chunks, one before each start: a kill then always
    // lands while there is work left (pipewarden reads a whole topic of a
    // few thousand records in well under a second, faster than a group
    // rejoin).
    const CHUNK: usize = 600;
    let mut produce_chunk = |chunk: usize| {
        for n in chunk * CHUNK..(chunk + 1) * CHUNK {
            let partition = (n % 3) as i32;
            if n % 4 == 0 {
                producer.send(&topic, Some(partition), &valid_json(n)[..30], &[]);
                poison.insert((partition, (n / 3) as i64));
            } else {
                producer.send(&topic, Some(partition), &valid_json(n), &[]);
            }
        }
        producer.flush();
    };
    produce_chunk(0);

    let group = unique(&format!("{prefix}-group"));
    let governance =
        governance(&format!("url = \"{base}\"")).replace("[quarantine]", &format!("[quarantine]\n{quarantine}"));
    let mut options = DaemonOptions::new(&topic, &group);
    options.governance = &governance;
    options.commit_interval_ms = 200;
    // A killed member holds its partitions until its session times out:
    // keep that short so each restart takes over quickly.
    options.kafka_properties = "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"";
    let mut daemon = Daemon::start(options);
    let quarantined = format!("pipewarden_quarantined_records_total{{topic=\"{topic}\"}}");
    for round in 0..rounds {
        // Kill while quarantining, at a different point of the run each round.
        daemon.wait_for("some records quarantined", WAIT, |d| d.metric(&quarantined) >= 1.0);
        std::thread::sleep(Duration::from_millis(40 * round));
        daemon.kill();
        produce_chunk(round as usize + 1);
        daemon.restart();
    }
    daemon.wait_for("all records judged after the restarts", WAIT, |_| {
        end_offsets(&topic, 3) == committed_offsets(&group, &topic, 3)
    });
    assert!(daemon.terminate().success());

    let copies = read_committed(&format!("{topic}.quarantine"), 3);
    let source = read_all(&topic, 3);
    let origins = check_copies(&source, &copies);
    assert!(origins.values().all(|reason| reason == "not_json"));
    let found: BTreeSet<(i32, i64)> = origins.keys().copied().collect();
    (poison, copies, found)
}

#[test]
fn kill_9_while_quarantining_loses_no_poison_record() {
    let rounds = 5;
    let (poison, copies, found) = kill_while_quarantining("gov-kill", rounds, "");
    assert_eq!(found, poison, "de-duplicated quarantine equals the poison set");
    println!(
        "kill -9 x{rounds}: {} poison records, {} copies, {} duplicates, de-duplicated = poison set",
        poison.len(),
        copies.len(),
        copies.len() - found.len()
    );
}

#[test]
fn transactional_quarantine_has_each_poison_record_exactly_once_after_kills() {
    let rounds = 5;
    let (poison, copies, found) = kill_while_quarantining("gov-eos", rounds, "transactional = true");
    assert_eq!(found, poison, "the quarantine holds exactly the poison set");
    assert_eq!(copies.len(), poison.len(), "no duplicates for a read_committed reader");
    let topic = copies[0].topic().to_string();
    let log_offsets: i64 = end_offsets(&topic, 3).iter().sum();
    println!(
        "transactional, kill -9 x{rounds}: {} poison records, {} committed copies, {log_offsets} log offsets \
         (committed copies, aborted copies and transaction markers)",
        poison.len(),
        copies.len()
    );
}

/// A second replica joins the group while the first is busy with a
/// backlog: the first gives up its partitions with records taken but not
/// yet judged (it takes the next batch while judging one). Those records
/// are the new owners' now: the first must neither judge them nor store
/// their offsets, and no poison record may be lost on the way.
#[test]
fn a_replica_joining_mid_stream_takes_over_without_a_lost_or_misplaced_record() {
    let base = registry_url();
    let topic = unique("gov-join");
    const PARTITIONS: i32 = 6;
    create_topics(&[(&topic, PARTITIONS)]);
    register_schema(&base, &format!("{topic}-value"), "JSON", JSON_SCHEMA);
    let producer = producer();
    let mut poison = BTreeSet::new();
    const RECORDS: usize = 200_000;
    for n in 0..RECORDS {
        let partition = (n % PARTITIONS as usize) as i32;
        let offset = (n / PARTITIONS as usize) as i64;
        if n % 4 == 0 {
            producer.send(&topic, Some(partition), &valid_json(n)[..30], &[]);
            poison.insert((partition, offset));
        } else {
            producer.send(&topic, Some(partition), &valid_json(n), &[]);
        }
    }
    producer.flush();

    let group = unique("gov-join-group");
    let governance = governance(&format!("url = \"{base}\""));
    let options = || {
        let mut options = DaemonOptions::new(&topic, &group);
        options.governance = &governance;
        options.commit_interval_ms = 200;
        options
    };
    let records = format!("pipewarden_records_total{{topic=\"{topic}\"}}");
    let mut first = Daemon::start(options());
    first.wait_for("the first replica to be busy", WAIT, |d| d.metric(&records) >= 1_000.0);
    let mut second = Daemon::start(options());
    second.wait_for("the partitions to be shared", WAIT, |d| {
        let (mine, theirs) =
            (d.metric("pipewarden_assigned_partitions"), first.metric("pipewarden_assigned_partitions"));
        mine >= 1.0 && theirs >= 1.0 && mine + theirs == PARTITIONS as f64
    });
    second.wait_for("every record judged", WAIT, |_| {
        end_offsets(&topic, PARTITIONS) == committed_offsets(&group, &topic, PARTITIONS)
    });
    let (a, b) = (first.scrape().expect("scrape"), second.scrape().expect("scrape"));
    let (by_first, by_second) = (sample(&a, &records), sample(&b, &records));
    assert!(
        by_second > 0.0,
        "the second replica joined after the first had judged everything ({by_first} and {by_second} records): \
         nothing was taken over mid-stream"
    );
    assert!(by_first + by_second >= RECORDS as f64, "{by_first} + {by_second} records judged");
    for text in [&a, &b] {
        assert_eq!(sample(text, "pipewarden_consumer_errors_total{kind=\"offset_store\"}"), 0.0, "{text}");
    }
    assert!(first.terminate().success());
    assert!(second.terminate().success());

    let copies = read_all(&format!("{topic}.quarantine"), PARTITIONS);
    let origins = check_copies(&read_all(&topic, PARTITIONS), &copies);
    let found: BTreeSet<(i32, i64)> = origins.keys().copied().collect();
    assert_eq!(found, poison, "de-duplicated quarantine equals the poison set");
    println!(
        "join mid-stream: {by_first} + {by_second} records judged of {RECORDS}, {} poison records, {} copies",
        poison.len(),
        copies.len()
    );
}

#[test]
fn a_registry_outage_gives_no_verdict_until_the_registry_is_back() {
    let base = registry_url();
    let url: reqwest::Url = base.parse().unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap()).parse().unwrap();
    let outage = Outage::forward_to(target);
    let proxied = format!("http://127.0.0.1:{}{}", outage.port, url.path());

    let topic = unique("gov-outage");
    create_topics(&[(&topic, 1)]);
    register_schema(&base, &format!("{topic}-value"), "JSON", JSON_SCHEMA);
    let producer = producer();
    for n in 0..40 {
        producer.send(&topic, None, &valid_json(n), &[]);
    }
    for n in 0..5 {
        producer.send(&topic, None, event(n, r#"{"order_id":"o-1","amount":"lots"}"#).as_bytes(), &[]);
    }
    producer.flush();

    outage.set_up(false);
    let group = unique("gov-outage-group");
    let governance = governance(&format!("url = \"{proxied}\""));
    let mut options = DaemonOptions::new(&topic, &group);
    options.governance = &governance;
    let mut daemon = Daemon::start(options);
    daemon.wait_for("the outage to be seen", WAIT, |d| {
        d.metric("pipewarden_schema_fetches_total{result=\"unavailable\"}") >= 2.0
    });
    std::thread::sleep(Duration::from_secs(2));
    let text = daemon.scrape().unwrap();
    assert_eq!(total_verdicts(&daemon, &topic), 0.0, "no verdict during the outage:\n{text}");
    assert_eq!(sample(&text, &format!("pipewarden_quarantined_records_total{{topic=\"{topic}\"}}")), 0.0);
    assert_eq!(sample(&text, "pipewarden_schema_registry_up"), 0.0);
    assert_eq!(sample(&text, "pipewarden_paused_partitions{reason=\"schema_unavailable\"}"), 1.0);
    assert_eq!(daemon.status("/readyz"), Some(503));
    assert_eq!(committed_offsets(&group, &topic, 1), vec![-1], "no offset moved");

    outage.set_up(true);
    daemon.wait_for("validation to resume", WAIT, |d| total_verdicts(d, &topic) >= 45.0);
    daemon.wait_for("quarantine of the 5 invalid records", WAIT, |d| {
        d.metric(&format!("pipewarden_quarantined_records_total{{topic=\"{topic}\"}}")) >= 5.0
    });
    let text = daemon.scrape().unwrap();
    assert_eq!(sample(&text, &format!("pipewarden_verdicts_total{{topic=\"{topic}\",verdict=\"valid\"}}")), 40.0);
    assert_eq!(sample(&text, &format!("pipewarden_verdicts_total{{topic=\"{topic}\",verdict=\"invalid\"}}")), 5.0);
    assert_eq!(sample(&text, "pipewarden_schema_registry_up"), 1.0);
    daemon.wait_for("ready again", WAIT, |d| d.status("/readyz") == Some(200));
    assert!(daemon.terminate().success());
    assert_eq!(read_all(&format!("{topic}.quarantine"), 1).len(), 5);
}

#[test]
fn the_embedded_schema_folder_governs_without_a_registry() {
    let topic = unique("gov-local");
    create_topics(&[(&topic, 3)]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{topic}-value.json")), JSON_SCHEMA).unwrap();
    std::fs::create_dir(dir.path().join("ids")).unwrap();
    std::fs::write(dir.path().join("ids").join("7.avsc"), AVRO_SCHEMA).unwrap();
    let (poison, valid) = produce_mixed(&topic, 7);

    let group = unique("gov-local-group");
    let governance = governance(&format!("url = \"\"\nschemas_dir = \"{}\"", dir.path().display()));
    let mut options = DaemonOptions::new(&topic, &group);
    options.governance = &governance;
    let mut daemon = Daemon::start(options);
    daemon.wait_for("every record judged and quarantined", WAIT, |d| {
        total_verdicts(d, &topic) >= (poison.len() + valid) as f64
            && d.metric(&format!("pipewarden_quarantined_records_total{{topic=\"{topic}\"}}")) >= poison.len() as f64
    });
    assert!(daemon.terminate().success());
    let origins = check_copies(&read_all(&topic, 3), &read_all(&format!("{topic}.quarantine"), 3));
    let expected: BTreeMap<(i32, i64), String> =
        poison.iter().map(|(k, (_, reason))| (*k, reason.to_string())).collect();
    assert_eq!(origins, expected);
}

#[test]
fn an_unwritable_quarantine_pauses_the_partition_until_it_can_be_written() {
    let topic = unique("gov-nowrite");
    create_topics(&[(&topic, 1)]);
    let producer = producer();
    for n in 0..10 {
        producer.send(&topic, None, &valid_json(n), &[]);
    }
    producer.send(&topic, None, &valid_json(10)[..25], &[]);
    for n in 11..20 {
        producer.send(&topic, None, &valid_json(n), &[]);
    }
    producer.flush();

    let group = unique("gov-nowrite-group");
    // The quarantine topic is missing and may not be created.
    let quarantine = format!("{topic}.quarantine");
    let governance = "[registry]\nschemas_dir = \"schemas\"\n[quarantine]\ncreate_topics = false\nretry_backoff_ms = 200\n[[policies]]\ntopics = [\".*\"]\n";
    let mut options = DaemonOptions::new(&topic, &group);
    options.governance = governance;
    let mut daemon = Daemon::start(options);
    daemon.wait_for("the failed quarantine write", WAIT, |d| {
        d.metric(&format!("pipewarden_quarantine_failures_total{{topic=\"{topic}\"}}")) >= 2.0
    });
    let text = daemon.scrape().unwrap();
    assert_eq!(sample(&text, "pipewarden_paused_partitions{reason=\"quarantine_failed\"}"), 1.0, "{text}");
    assert_eq!(daemon.status("/readyz"), Some(503));
    // Nothing past the poison record (offset 10) is stored: the committed
    // offset, if any, is at most 10.
    std::thread::sleep(Duration::from_millis(1500));
    let committed = committed_offsets(&group, &topic, 1)[0];
    assert!(committed <= 10, "committed offset {committed} moved past the unquarantined record");

    // Once the topic exists, the retry writes the copy and consumption goes on.
    create_topics(&[(&quarantine, 1)]);
    daemon.wait_for("the copy to be written", WAIT, |d| {
        d.metric(&format!("pipewarden_quarantined_records_total{{topic=\"{topic}\"}}")) >= 1.0
    });
    daemon.wait_for("every record committed", WAIT, |_| committed_offsets(&group, &topic, 1) == vec![20]);
    assert_eq!(daemon.metric("pipewarden_paused_partitions{reason=\"quarantine_failed\"}"), 0.0);
    daemon.wait_for("ready again", WAIT, |d| d.status("/readyz") == Some(200));
    assert!(daemon.terminate().success());
    let copies = read_all(&quarantine, 1);
    let origins = check_copies(&read_all(&topic, 1), &copies);
    assert_eq!(origins.keys().copied().collect::<Vec<_>>(), vec![(0, 10)]);
}

#[test]
fn a_registry_behind_tls_and_basic_auth_is_used_with_its_ca_and_credentials() {
    let registry = SecureRegistry::from_env();
    let topic = unique("gov-secure");
    create_topics(&[(&topic, 1)]);
    registry.register_schema(&format!("{topic}-value"), "JSON", JSON_SCHEMA);
    let producer = producer();
    for n in 0..20 {
        producer.send(&topic, None, &valid_json(n), &[]);
    }
    for n in 0..5 {
        producer.send(&topic, None, event(n, r#"{"order_id":"o-1","amount":"lots"}"#).as_bytes(), &[]);
    }
    producer.flush();
    let quarantined = format!("pipewarden_quarantined_records_total{{topic=\"{topic}\"}}");

    // Wrong password: the registry answers 401, which is an outage, never a verdict.
    let registry_section = |password_var: &str| {
        format!(
            "url = \"{}\"\nusername = \"{}\"\npassword = \"${{{password_var}}}\"\nca_file = \"{}\"",
            registry.url,
            registry.username,
            registry.ca_file.display()
        )
    };
    let governance_denied = governance(&registry_section("TEST_REGISTRY_PASSWORD"));
    let group = unique("gov-secure-group");
    let mut options = DaemonOptions::new(&topic, &group);
    options.governance = &governance_denied;
    options.env = &[("TEST_REGISTRY_PASSWORD", "not-the-password")];
    let mut daemon = Daemon::start(options);
    daemon.wait_for("the rejected credentials to be seen", WAIT, |d| {
        d.metric("pipewarden_schema_fetches_total{result=\"unavailable\"}") >= 1.0
    });
    let text = daemon.scrape().unwrap();
    assert_eq!(total_verdicts(&daemon, &topic), 0.0, "no verdict without access to the registry:\n{text}");
    assert_eq!(sample(&text, &quarantined), 0.0);
    assert_eq!(sample(&text, "pipewarden_schema_registry_up"), 0.0);
    assert_eq!(daemon.status("/readyz"), Some(503));
    assert!(daemon.terminate().success());
    assert_eq!(committed_offsets(&group, &topic, 1), vec![-1], "no offset moved");

    // The right password (from the environment) and the test CA: governed as usual.
    let governance_ok = governance(&registry_section("TEST_REGISTRY_PASSWORD"));
    let env = [("TEST_REGISTRY_PASSWORD", registry.password.as_str())];
    let mut options = DaemonOptions::new(&topic, &group);
    options.governance = &governance_ok;
    options.env = &env;
    let mut daemon = Daemon::start(options);
    daemon.wait_for("every record judged", WAIT, |d| total_verdicts(d, &topic) >= 25.0);
    daemon.wait_for("the 5 invalid records quarantined", WAIT, |d| d.metric(&quarantined) >= 5.0);
    let text = daemon.scrape().unwrap();
    assert_eq!(sample(&text, &format!("pipewarden_verdicts_total{{topic=\"{topic}\",verdict=\"valid\"}}")), 20.0);
    assert_eq!(
        sample(&text, &format!("pipewarden_invalid_records_total{{topic=\"{topic}\",reason=\"schema_mismatch\"}}")),
        5.0
    );
    assert_eq!(sample(&text, "pipewarden_schema_registry_up"), 1.0);
    assert!(daemon.terminate().success());
    assert_eq!(read_all(&format!("{topic}.quarantine"), 1).len(), 5);
}
