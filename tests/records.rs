//! The ingest loop's record queue (`pipewarden::ingest::records`) against a
//! real Kafka broker: every assigned partition's records come through it,
//! a batch at a time, with their fields and headers intact, also after the
//! partitions are revoked and assigned again; a partition that is not
//! forwarded still reads through the consumer's own poll; stored offsets
//! are committed as `offset + 1`.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pipewarden::ingest::records::{Fetched, Forwarding, RecordQueue};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, Timestamp};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

const PARTITIONS: i32 = 3;
const WAIT: Duration = Duration::from_secs(60);

/// A consumer context that forwards assigned partitions, as pipewarden's does.
struct Forwarder {
    forwarding: Arc<Forwarding>,
    assignments: AtomicUsize,
}

impl ClientContext for Forwarder {}

impl ConsumerContext for Forwarder {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            assert_eq!(self.forwarding.forward(consumer, partitions), 0, "every partition is forwarded");
            self.assignments.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn consumer(topic: &str) -> BaseConsumer<Forwarder> {
    let consumer: BaseConsumer<Forwarder> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("it-records-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .create_with_context(Forwarder { forwarding: Arc::default(), assignments: AtomicUsize::new(0) })
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// `n` records per partition, each with a key, an explicit timestamp and
/// three headers: one with a value, one with an empty value, one without.
fn produce(topic: &str, n: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("producer");
    for i in 0..n {
        for partition in 0..PARTITIONS {
            let (key, payload) = (format!("key-{partition}-{i}"), format!("{{\"n\":{i}}}"));
            let headers = OwnedHeaders::new()
                .insert(Header { key: "n", value: Some(&i.to_string()) })
                .insert(Header { key: "empty", value: Some("") })
                .insert(Header::<&str> { key: "none", value: None });
            let record = BaseRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&payload)
                .timestamp(1_700_000_000_000 + i as i64)
                .headers(headers);
            producer.send(record).map_err(|(err, _)| err).expect("send");
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// What one record said, read through `Fetched`'s `Message` implementation.
#[derive(Debug, PartialEq)]
struct Seen {
    offset: i64,
    key: Vec<u8>,
    payload: Vec<u8>,
    timestamp: Timestamp,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn seen(record: &Fetched<'_>) -> Seen {
    let headers = record.headers().expect("headers");
    Seen {
        offset: record.offset(),
        key: record.key().expect("key").to_vec(),
        payload: record.payload().expect("payload").to_vec(),
        timestamp: record.timestamp(),
        headers: headers.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect(),
    }
}

fn expected(partition: i32, i: usize) -> Seen {
    Seen {
        offset: i as i64,
        key: format!("key-{partition}-{i}").into_bytes(),
        payload: format!("{{\"n\":{i}}}").into_bytes(),
        timestamp: Timestamp::CreateTime(1_700_000_000_000 + i as i64),
        headers: vec![
            ("n".into(), Some(i.to_string().into_bytes())),
            ("empty".into(), Some(Vec::new())),
            ("none".into(), None),
        ],
    }
}

/// Reads `want` records through `queue` (the consumer's own poll serves
/// the rebalances and must return no record), storing each offset.
fn read(
    consumer: &BaseConsumer<Forwarder>,
    queue: &RecordQueue<'_>,
    topic: &str,
    want: usize,
) -> BTreeMap<i32, Vec<Seen>> {
    let mut by_partition: BTreeMap<i32, Vec<Seen>> = BTreeMap::new();
    let (mut records, mut errors) = (Vec::new(), Vec::new());
    let (mut count, mut batches) = (0, 0);
    let deadline = Instant::now() + WAIT;
    while count < want {
        assert!(Instant::now() < deadline, "{topic}: {count} of {want} records read");
        if let Some(result) = consumer.poll(Duration::ZERO) {
            panic!("the consumer's poll returned {:?} instead of the record queue", result.map(|m| m.offset()));
        }
        queue.consume(Duration::from_millis(100), 64, &mut records, &mut errors);
        assert!(errors.is_empty(), "consume errors: {errors:?}");
        assert!(records.len() <= 64, "a batch holds at most the limit");
        batches += usize::from(!records.is_empty());
        for record in records.drain(..) {
            assert_eq!(record.topic(), topic);
            record.store_offset().expect("store offset");
            by_partition.entry(record.partition()).or_default().push(seen(&record));
            count += 1;
        }
    }
    assert_eq!(count, want, "no record beyond those produced");
    assert!(batches < want, "records came {batches} batches for {want} records: not batched");
    by_partition
}

#[test]
fn every_assigned_partition_reads_through_the_record_queue_also_after_reassignment() {
    let topic = unique("it-records");
    create_topics(&[(&topic, PARTITIONS)]);
    const PER_PARTITION: usize = 200;
    produce(&topic, PER_PARTITION);

    let consumer = consumer(&topic);
    let queue = RecordQueue::new(&consumer, consumer.context().forwarding.clone());
    let read_back = read(&consumer, &queue, &topic, PER_PARTITION * PARTITIONS as usize);
    for partition in 0..PARTITIONS {
        let records = &read_back[&partition];
        assert_eq!(records.len(), PER_PARTITION, "partition {partition}");
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record, &expected(partition, i), "partition {partition}, record {i}");
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
    // Stored offsets are committed as the next offset to read.
    let committed = consumer.committed(Duration::from_secs(10)).expect("committed");
    for partition in 0..PARTITIONS {
        let offset = committed.find_partition(&topic, partition).expect("partition").offset();
        assert_eq!(offset, rdkafka::Offset::Offset(PER_PARTITION as i64), "partition {partition}");
    }

    // Revoked and assigned again: librdkafka clears a stopped partition's
    // forwarding, the next assignment sets it again, and reading goes on
    // from the committed offsets.
    let assigned = consumer.context().assignments.load(Ordering::SeqCst);
    consumer.unsubscribe();
    consumer.subscribe(&[&topic]).expect("subscribe again");
    produce(&topic, PER_PARTITION + 20);
    let read_back = read(&consumer, &queue, &topic, (PER_PARTITION + 20) * PARTITIONS as usize);
    assert!(consumer.context().assignments.load(Ordering::SeqCst) > assigned, "assigned again");
    for partition in 0..PARTITIONS {
        let offsets: Vec<i64> = read_back[&partition].iter().map(|s| s.offset).collect();
        let want: Vec<i64> = (PER_PARTITION as i64..(2 * PER_PARTITION + 20) as i64).collect();
        assert_eq!(offsets, want, "partition {partition} after reassignment");
    }
    drop(queue);
}

#[test]
fn a_partition_that_is_not_forwarded_reads_through_the_consumers_poll() {
    let topic = unique("it-records-polled");
    create_topics(&[(&topic, PARTITIONS)]);
    produce(&topic, 20);
    // No record queue registered: nothing is forwarded.
    let consumer = consumer(&topic);
    let mut read_back: BTreeMap<i32, Vec<Seen>> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while read_back.values().map(Vec::len).sum::<usize>() < 20 * PARTITIONS as usize {
        assert!(Instant::now() < deadline, "{topic}: records not read");
        if let Some(result) = consumer.poll(Duration::from_millis(100)) {
            let record = Fetched::polled(result.expect("record"));
            assert_eq!(record.topic(), topic);
            record.store_offset().expect("store offset");
            read_back.entry(record.partition()).or_default().push(seen(&record));
        }
    }
    for partition in 0..PARTITIONS {
        for (i, record) in read_back[&partition].iter().enumerate() {
            assert_eq!(record, &expected(partition, i), "partition {partition}, record {i}");
        }
    }
}

#[test]
fn the_record_queue_sees_the_events_waiting_on_the_consumers_own_queue() {
    let topic = unique("it-records-events");
    create_topics(&[(&topic, PARTITIONS)]);
    let consumer = consumer(&topic);
    let queue = RecordQueue::new(&consumer, consumer.context().forwarding.clone());
    // Joining the group ends in an assignment event, which waits on the
    // consumer's queue until it is polled.
    let deadline = Instant::now() + WAIT;
    while queue.events_queued() == 0 {
        assert!(Instant::now() < deadline, "no event queued after joining the group");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(consumer.context().assignments.load(Ordering::SeqCst), 0, "not assigned before the poll");
    // `poll` answers `None` whether or not it served an event; the count
    // says when every waiting event was served.
    let mut polls = 0;
    while queue.events_queued() > 0 {
        assert!(consumer.poll(Duration::ZERO).is_none(), "no record was produced");
        polls += 1;
        assert!(polls < 10_000, "events keep coming");
    }
    assert_eq!(consumer.context().assignments.load(Ordering::SeqCst), 1, "the assignment was served");
}
