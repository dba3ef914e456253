//! Reads the key of the record a stuck partition is stuck on.
//!
//! The index keeps no keys (that would cost memory per record for a figure
//! needed only for stuck partitions), so the lag thread fetches the one
//! record on demand with its own consumer (`assign` at the offset, one
//! poll, never a commit, never a group join). Bounded: at most [`FETCHES_PER_POLL`] fetches
//! per poll, each waiting at most [`FETCH_TIMEOUT`], and a key is read once
//! per (topic, partition, offset) and kept only while that partition stays
//! stuck there.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::debug;

use super::client::Topic;
use crate::metrics::truncate_label;

type HashMap<K, V> = ahash::AHashMap<K, V>;

/// Key fetches per poll: a burst of newly stuck partitions delays one poll
/// by at most 4 × [`FETCH_TIMEOUT`]; the rest are read in the next polls.
const FETCHES_PER_POLL: usize = 4;

/// How long one fetch may wait for its record.
const FETCH_TIMEOUT: Duration = Duration::from_secs(1);

/// librdkafka refuses `assign` without a group id. The reader never commits
/// and never joins, so this group never exists on the broker.
const KEY_READER_GROUP: &str = "pipewarden.lag-key-reader";

/// Longest key reported, in bytes.
const MAX_KEY_BYTES: usize = 256;

/// The key of a record and the offset it was read at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyAt {
    pub key: Option<String>,
    pub offset: Option<i64>,
}

pub struct KeyReader {
    properties: Vec<(String, String)>,
    consumer: Option<BaseConsumer>,
    known: HashMap<(Topic, i32, i64), KeyAt>,
    budget: usize,
}

impl KeyReader {
    pub fn new(properties: Vec<(String, String)>) -> Self {
        Self { properties, consumer: None, known: HashMap::default(), budget: FETCHES_PER_POLL }
    }

    /// Called once per poll with the stuck positions: forgets the others and
    /// refills the fetch budget.
    pub fn forget_except(&mut self, wanted: &[(Topic, i32, i64)]) {
        self.known.retain(|key, _| wanted.contains(key));
        self.budget = FETCHES_PER_POLL;
    }

    /// The key at (topic, partition, offset): known, fetched now (within the
    /// budget), or unknown for now.
    pub fn key_at(&mut self, topic: &Topic, partition: i32, offset: i64) -> KeyAt {
        let position = (topic.clone(), partition, offset);
        if let Some(known) = self.known.get(&position) {
            return known.clone();
        }
        if self.budget == 0 {
            return KeyAt::default();
        }
        self.budget -= 1;
        match self.fetch(topic, partition, offset) {
            Some(found) => {
                self.known.insert(position, found.clone());
                found
            }
            None => KeyAt::default(),
        }
    }

    /// Adds the bootstrap servers to the reader's consumer again, if it has
    /// one (see `rebootstrap.rs`).
    pub fn add_brokers(&self, bootstrap: &crate::rebootstrap::Bootstrap) {
        if let Some(consumer) = &self.consumer {
            bootstrap.add_to(consumer.client());
        }
    }

    fn fetch(&mut self, topic: &str, partition: i32, offset: i64) -> Option<KeyAt> {
        if self.consumer.is_none() {
            let mut config = ClientConfig::new();
            for (key, value) in &self.properties {
                config.set(key, value);
            }
            config.set("group.id", KEY_READER_GROUP).set("enable.auto.commit", "false").set("fetch.wait.max.ms", "50");
            self.consumer = config.create().inspect_err(|err| debug!(error = %err, "key reader not created")).ok();
        }
        let consumer = self.consumer.as_ref()?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(offset)).ok()?;
        consumer.assign(&list).ok()?;
        let deadline = Instant::now() + FETCH_TIMEOUT;
        let mut found = None;
        while found.is_none() && Instant::now() < deadline {
            match consumer.poll(deadline.saturating_duration_since(Instant::now())) {
                Some(Ok(message)) if message.topic() == topic && message.partition() == partition => {
                    let key = message
                        .key()
                        .map(|bytes| truncate_label(&String::from_utf8_lossy(bytes), MAX_KEY_BYTES).to_string());
                    found = Some(KeyAt { key, offset: Some(message.offset()) });
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => debug!(topic, partition, error = %err, "key fetch error"),
                None => {}
            }
        }
        let _ = consumer.unassign();
        found
    }
}
