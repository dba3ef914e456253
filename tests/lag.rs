//! Consumer lag against a real Kafka broker: groups with known committed
//! offsets and backlogs give exact lag in messages; records with crafted
//! timestamps give exact lag in seconds; a group on a topic pipewarden does
//! not watch is interpolated; a rewind is reported; a KIP-848 group is
//! included with its protocol and members; a stuck partition is named with
//! the key of its record and whether pipewarden quarantined it; end offsets
//! of more partitions than one ListOffsets call carries are all exact. Each test
//! uses its own random topics and groups and reports only its own groups.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pipewarden::lag::client::LagClient;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// Poll every 500 ms, judge status over 3 s, and report only this test's groups.
fn lag_config(group_pattern: &str) -> String {
    format!(
        "[lag]\npoll_interval_ms = 500\nstatus_window_ms = 3000\npartition_metrics = true\n\
         [lag.groups]\ninclude = [\"{}\"]\n",
        group_pattern.replace('\\', "\\\\")
    )
}

fn timestamped_producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap()).set("linger.ms", "5").create().expect("producer")
}

/// Sends one record with an explicit key and CreateTime timestamp.
fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: i32,
    key: &str,
    value: &[u8],
    ts: i64,
) {
    let record = BaseRecord::to(topic).partition(partition).key(key).payload(value).timestamp(ts);
    producer.send(record).map_err(|(err, _)| err).expect("send");
}

fn commit(groups: &[pipewarden::lag::client::GroupCommit]) {
    let client = LagClient::new(&[("bootstrap.servers".into(), bootstrap())], Duration::from_secs(10), 10).unwrap();
    client.commit_offsets(groups).expect("commit offsets");
}

/// The group's report from `/api/v1/lag/{group}`, once `ready` accepts it.
fn wait_group(daemon: &mut Daemon, group: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut found = Value::Null;
    let mut last = String::new();
    let deadline = Instant::now() + WAIT;
    daemon.wait_for(what, WAIT + Duration::from_secs(5), |d| {
        let Some((200, body)) = d.http_get(&format!("/api/v1/lag/{group}")) else { return false };
        let report: Value = serde_json::from_str(&body).expect("json");
        let ok = ready(&report);
        assert!(ok || Instant::now() < deadline, "timed out waiting for {what}; last report: {last}");
        if ok {
            found = report;
        } else {
            last = body;
        }
        ok
    });
    found
}

fn partition<'a>(report: &'a Value, topic: &str, partition: i64) -> &'a Value {
    report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == topic && p["partition"] == partition)
        .unwrap_or_else(|| panic!("no {topic}/{partition} in {report}"))
}

fn assert_seconds(report: &Value, p: &Value, record_ts: i64) {
    // The poll that produced the report measured now − timestamp at polled_at.
    let polled_at = report["polled_at_ms"].as_i64().unwrap_or(0);
    let expected = (polled_at - record_ts) as f64 / 1e3;
    let got = p["lag_seconds"].as_f64().unwrap();
    assert!((got - expected).abs() < 1e-9, "lag_seconds {got}, expected {expected}: {p}");
}

#[test]
fn committed_offsets_and_timestamps_give_exact_lag_and_a_rewind_is_reported() {
    let id = unique("it-lag");
    let (watched, unwatched) = (format!("{id}.watched"), format!("{id}.other"));
    create_topics(&[(&watched, 2), (&unwatched, 1)]);
    let producer = timestamped_producer();
    // Crafted timestamps: record n of partition 0 was written 600 − n seconds ago.
    let base = now_ms() - 600_000;
    let ts = |n: i64| base + n * 1_000;
    for n in 0..10 {
        send(&producer, &watched, 0, &format!("k{n}"), &valid_event("order.created", "intake", n as usize), ts(n));
    }
    for n in 0..5 {
        send(&producer, &watched, 1, "k", &valid_event("order.created", "intake", n), ts(n as i64));
    }
    for n in 0..10 {
        send(&producer, &unwatched, 0, "k", b"{}", ts(n));
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let (group, other_group) = (format!("{id}-g1"), format!("{id}-g2"));
    commit(&[
        (group.clone(), vec![(watched.clone(), 0, 4), (watched.clone(), 1, 5)]),
        (other_group.clone(), vec![(unwatched.clone(), 0, 2)]),
    ]);

    let own_group = format!("{id}-pipewarden");
    let include = format!("{}\\.watched", regex::escape(&id));
    let mut options = DaemonOptions::new(&include, &own_group);
    let extra = lag_config(&format!("{}-.*", regex::escape(&id)));
    options.extra = &extra;
    let mut daemon = Daemon::start(options);

    // Exact once pipewarden has read and indexed the records.
    let report = wait_group(&mut daemon, &group, "exact lag of g1", |r| {
        r["partitions"].as_array().is_some_and(|ps| ps.len() == 2 && ps.iter().all(|p| p["method"] == "exact"))
    });
    assert_eq!(report["lag_messages"], 6, "{report}");
    assert_eq!(report["protocol"], "classic");
    assert_eq!(report["members"], 0);
    let p0 = partition(&report, &watched, 0);
    assert_eq!((p0["committed"].as_i64(), p0["high_watermark"].as_i64()), (Some(4), Some(10)));
    assert_eq!(p0["lag_messages"], 6);
    assert_eq!(p0["error_bound_ms"], 0);
    // The first record g1 has not consumed is offset 4, written at ts(4).
    assert_seconds(&report, p0, ts(4));
    let p1 = partition(&report, &watched, 1);
    assert_eq!((p1["lag_messages"].as_i64(), p1["lag_seconds"].as_f64()), (Some(0), Some(0.0)), "caught up is 0");
    assert_eq!(report["topics"][0]["lag_messages"], 6);

    // pipewarden does not read the other topic: its figure is interpolated,
    // here a lower bound (the records predate every sample), never NaN.
    let other =
        wait_group(&mut daemon, &other_group, "g2", |r| r["partitions"].as_array().is_some_and(|p| p.len() == 1));
    let p = partition(&other, &unwatched, 0);
    assert_eq!((p["lag_messages"].as_i64(), p["method"].as_str()), (Some(8), Some("interpolated")), "{other}");
    assert_eq!(p["error_bound_ms"], -1);
    let seconds = p["lag_seconds"].as_f64().unwrap();
    assert!(seconds.is_finite() && seconds >= 0.0, "{p}");

    // pipewarden's own group is reported too, caught up once it has committed.
    wait_group(&mut daemon, &own_group, "pipewarden's own group", |r| {
        r["lag_messages"] == 0 && r["partitions"].as_array().is_some_and(|p| p.len() == 2)
    });

    let text = daemon.scrape().unwrap();
    let series = |name: &str, labels: &str| sample(&text, &format!("{name}{{{labels}}}"));
    let g1 = format!("group=\"{group}\",topic=\"{watched}\"");
    assert_eq!(series("pipewarden_consumergroup_lag_messages", &g1), 6.0, "{text}");
    assert_eq!(series("pipewarden_consumergroup_partition_lag_messages", &format!("{g1},partition=\"0\"")), 6.0);
    assert!(series("pipewarden_consumergroup_lag_seconds", &format!("{g1},method=\"exact\"")) >= 600.0 - 4.0);
    let g2 = format!("group=\"{other_group}\",topic=\"{unwatched}\",method=\"interpolated\"");
    assert!(mentions(&text, &g2), "{text}");
    assert_eq!(series("pipewarden_consumergroup_members", &format!("group=\"{group}\"")), 0.0);
    assert_eq!(
        series("pipewarden_consumergroup_state", &format!("group=\"{group}\",state=\"empty\",protocol=\"classic\"")),
        1.0
    );

    // Moving g1 back from 4 to 2 on partition 0 is a rewind.
    commit(&[(group.clone(), vec![(watched.clone(), 0, 2)])]);
    let report = wait_group(&mut daemon, &group, "rewound", |r| r["status"] == "rewound");
    let p0 = partition(&report, &watched, 0);
    assert_eq!((p0["status"].as_str(), p0["lag_messages"].as_i64()), (Some("rewound"), Some(8)));
    assert_seconds(&report, p0, ts(2));
    let text = daemon.scrape().unwrap();
    assert_eq!(sample(&text, &format!("pipewarden_consumergroup_status{{group=\"{group}\",status=\"rewound\"}}")), 1.0);
    assert_eq!(daemon.status("/api/v1/lag/no-such-group"), Some(404));
}

#[test]
fn a_kip_848_group_is_reported_with_its_protocol_members_and_exact_lag() {
    let id = unique("it-lag848");
    let topic = format!("{id}.events");
    create_topics(&[(&topic, 1)]);
    let producer = timestamped_producer();
    let base = now_ms() - 120_000;
    for n in 0..10 {
        send(&producer, &topic, 0, "k", &valid_event("e", "p", n), base + n as i64 * 500);
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    // A consumer on the new consumer group protocol: it commits offset 6 and stays in the group.
    let group = format!("{id}-consumer");
    let stop = Arc::new(AtomicBool::new(false));
    let member = {
        let (group, topic, stop) = (group.clone(), topic.clone(), stop.clone());
        std::thread::spawn(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap())
                .set("group.id", &group)
                .set("group.protocol", "consumer")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create()
                .expect("kip-848 consumer");
            consumer.subscribe(&[&topic]).unwrap();
            let mut committed = false;
            while !stop.load(Ordering::Acquire) {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    if !committed && message.offset() == 5 {
                        let mut list = TopicPartitionList::new();
                        list.add_partition_offset(&topic, 0, Offset::Offset(6)).unwrap();
                        consumer.commit(&list, CommitMode::Sync).expect("commit");
                        committed = true;
                    }
                }
            }
        })
    };

    let include = format!("{}\\.events", regex::escape(&id));
    let own_group = format!("{id}-pipewarden");
    let mut options = DaemonOptions::new(&include, &own_group);
    let extra = lag_config(&group);
    options.extra = &extra;
    let mut daemon = Daemon::start(options);
    let report = wait_group(&mut daemon, &group, "the kip-848 group with a member and exact lag", |r| {
        r["members"] == 1 && r["partitions"].as_array().is_some_and(|p| p.len() == 1 && p[0]["method"] == "exact")
    });
    stop.store(true, Ordering::Release);
    member.join().unwrap();
    assert_eq!(report["protocol"], "consumer", "{report}");
    assert_eq!(report["state"], "stable");
    let p = partition(&report, &topic, 0);
    assert_eq!((p["committed"].as_i64(), p["lag_messages"].as_i64()), (Some(6), Some(4)));
    assert_seconds(&report, p, base + 6 * 500);
    let text = daemon.scrape().unwrap();
    let state = format!("pipewarden_consumergroup_state{{group=\"{group}\",state=\"stable\",protocol=\"consumer\"}}");
    assert_eq!(sample(&text, &state), 1.0, "{text}");
    assert_eq!(sample(&text, &format!("pipewarden_consumergroup_members{{group=\"{group}\"}}")), 1.0);
}

#[test]
fn a_stuck_partition_is_named_with_its_record_key_and_quarantine() {
    let id = unique("it-lagstuck");
    let topic = format!("{id}.orders");
    create_topics(&[(&topic, 2)]);
    let producer = timestamped_producer();
    // Partition 0: three valid records, a poison record at offset 3, two valid after it.
    for n in 0..3 {
        send(&producer, &topic, 0, "fine", &valid_event("order.created", "intake", n), now_ms());
    }
    send(&producer, &topic, 0, "poison-key", br#"{"event_type": "order.created", "broken"#, now_ms());
    for n in 4..6 {
        send(&producer, &topic, 0, "fine", &valid_event("order.created", "intake", n), now_ms());
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    // pipewarden watches the topic and quarantines the poison record.
    let include = format!("{}\\.orders", regex::escape(&id));
    let group = format!("{id}-worker");
    let own_group = format!("{id}-pipewarden");
    let mut options = DaemonOptions::new(&include, &own_group);
    let extra = lag_config(&group);
    options.extra = &extra;
    let mut daemon = Daemon::start(options);
    let quarantined = format!("pipewarden_quarantined_records_total{{topic=\"{topic}\"}}");
    daemon.wait_for("the poison record quarantined", WAIT, |d| d.metric(&quarantined) >= 1.0);

    // A worker that chokes on the poison record: it commits partition 0 up to
    // offset 3 and never past it, while partition 1 keeps flowing.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (group, topic, stop) = (group.clone(), topic.clone(), stop.clone());
        std::thread::spawn(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap())
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create()
                .expect("worker");
            consumer.subscribe(&[&topic]).unwrap();
            let producer = timestamped_producer();
            let mut next_send = Instant::now();
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                if Instant::now() >= next_send {
                    send(&producer, &topic, 1, "flow", &valid_event("order.created", "intake", n), now_ms());
                    n += 1;
                    next_send = Instant::now() + Duration::from_millis(200);
                }
                let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) else { continue };
                if message.partition() == 0 && message.offset() >= 3 {
                    continue;
                }
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&topic, message.partition(), Offset::Offset(message.offset() + 1)).unwrap();
                consumer.commit(&list, CommitMode::Sync).expect("commit");
            }
        })
    };

    let report = wait_group(&mut daemon, &group, "a stuck partition", |r| {
        r["stuck"].as_array().is_some_and(|s| s.len() == 1 && !s[0]["key"].is_null())
    });
    stop.store(true, Ordering::Release);
    worker.join().unwrap();
    let stuck = &report["stuck"][0];
    assert_eq!(stuck["topic"], topic.as_str(), "{report}");
    assert_eq!((stuck["partition"].as_i64(), stuck["offset"].as_i64()), (Some(0), Some(3)));
    assert_eq!(stuck["key"], "poison-key");
    assert_eq!(stuck["key_offset"], 3);
    assert_eq!(stuck["quarantined"], true);
    assert!(stuck["frozen_for_ms"].as_i64().unwrap() >= 3_000);
    assert_eq!(report["status"], "stalled");
    let p0 = partition(&report, &topic, 0);
    assert_eq!((p0["status"].as_str(), p0["lag_messages"].as_i64()), (Some("stalled"), Some(3)));
    // Partition 1 keeps flowing: never stalled. Its lag flickers between 0
    // and a record or two as the worker commits each one, so on a loaded
    // machine a snapshot may catch it "lagging" for a moment.
    let p1 = partition(&report, &topic, 1);
    assert!(matches!(p1["status"].as_str(), Some("ok" | "lagging")), "{report}");
    assert!(p1["lag_messages"].as_i64().is_some_and(|lag| lag <= 5), "{report}");
    let text = daemon.scrape().unwrap();
    assert_eq!(sample(&text, &format!("pipewarden_consumergroup_stuck_partitions{{group=\"{group}\"}}")), 1.0);
    // The summary lists the stuck partition too.
    let (status, body) = daemon.http_get("/api/v1/lag").unwrap();
    assert_eq!(status, 200);
    let summary: Value = serde_json::from_str(&body).unwrap();
    let listed = summary["groups"].as_array().unwrap().iter().find(|g| g["group"] == group.as_str()).unwrap();
    assert_eq!(listed["stuck"][0]["offset"], 3);
}

fn now_ms() -> i64 {
    pipewarden::lag::now_ms()
}

#[test]
fn read_committed_groups_are_measured_to_the_last_stable_offset() {
    let id = unique("it-lagtx");
    let topic = format!("{id}.payments");
    create_topics(&[(&topic, 1)]);
    // Five committed records (offsets 0..=4), then a transaction left open
    // with three more (5..=7): high watermark 8, last stable offset 5.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("transactional.id", format!("{id}-tx"))
        .create()
        .expect("transactional producer");
    producer.init_transactions(Duration::from_secs(30)).expect("init transactions");
    producer.begin_transaction().unwrap();
    for n in 0..5 {
        send(&producer, &topic, 0, "k", &valid_event("e", "p", n), now_ms());
    }
    producer.commit_transaction(Duration::from_secs(30)).expect("commit transaction");
    producer.begin_transaction().unwrap();
    for n in 5..8 {
        send(&producer, &topic, 0, "k", &valid_event("e", "p", n), now_ms());
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let (committed_reader, plain_reader) = (format!("{id}-rc"), format!("{id}-ru"));
    commit(&[
        (committed_reader.clone(), vec![(topic.clone(), 0, 2)]),
        (plain_reader.clone(), vec![(topic.clone(), 0, 2)]),
    ]);
    let include = format!("{}\\.nothing", regex::escape(&id));
    let own_group = format!("{id}-pipewarden");
    let mut options = DaemonOptions::new(&include, &own_group);
    let extra = format!("{}read_committed = [\"{committed_reader}\"]\n", lag_config(&format!("{id}-r.")));
    options.extra = &extra;
    let mut daemon = Daemon::start(options);
    let rc = wait_group(&mut daemon, &committed_reader, "the read_committed group", |r| r["partitions"][0].is_object());
    let p = partition(&rc, &topic, 0);
    assert_eq!(rc["isolation"], "read_committed", "{rc}");
    // The commit marker of the first transaction takes offset 5: the open
    // transaction's records are 6..=8, the high watermark 9, the last stable offset 6.
    assert_eq!((p["high_watermark"].as_i64(), p["last_stable_offset"].as_i64()), (Some(9), Some(6)), "{p}");
    assert_eq!(p["lag_messages"], 4);
    let ru = wait_group(&mut daemon, &plain_reader, "the read_uncommitted group", |r| r["partitions"][0].is_object());
    assert_eq!(ru["isolation"], "read_uncommitted");
    assert_eq!(partition(&ru, &topic, 0)["lag_messages"], 7, "{ru}");
    producer.abort_transaction(Duration::from_secs(30)).unwrap();
}

/// End offsets over more partitions than one ListOffsets call carries
/// (`LIST_OFFSETS_CHUNK`): every partition answers, each with its own
/// offset, whichever call it went in.
#[test]
fn end_offsets_of_more_partitions_than_one_call_carries_are_all_exact() {
    use pipewarden::lag::client::{Isolation, Topic, LIST_OFFSETS_CHUNK};
    let count = LIST_OFFSETS_CHUNK as i32 + 44;
    let topic = unique("lag-chunks");
    create_topics(&[(&topic, count)]);
    // Records in the first and last partition of each call, in different numbers.
    let filled = [(0, 1), (LIST_OFFSETS_CHUNK as i32 - 1, 2), (LIST_OFFSETS_CHUNK as i32, 3), (count - 1, 4)];
    let producer = producer();
    for (partition, records) in filled {
        for n in 0..records {
            producer.send(&topic, Some(partition), format!("{n}").as_bytes(), &[]);
        }
    }
    producer.flush();
    let client = LagClient::new(&[("bootstrap.servers".into(), bootstrap())], Duration::from_secs(10), 10).unwrap();
    let name: Topic = Topic::from(topic.as_str());
    let partitions: Vec<(Topic, i32)> = (0..count).map(|p| (name.clone(), p)).collect();
    let deadline = Instant::now() + WAIT;
    let ends = loop {
        let ends = client.end_offsets(&partitions, Isolation::ReadUncommitted).expect("end offsets");
        // Right after creation some leaders may not be known yet.
        if ends.len() == count as usize || Instant::now() > deadline {
            break ends;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(ends.len(), count as usize, "every partition answers");
    for p in 0..count {
        let expected = filled.iter().find(|(q, _)| *q == p).map_or(0, |(_, records)| *records);
        assert_eq!(ends[&(name.clone(), p)], expected, "partition {p}");
    }
}
