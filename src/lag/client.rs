//! Kafka admin queries for the lag monitor: list and describe consumer
//! groups, read their committed offsets, read partition end offsets.
//!
//! rdkafka 0.39's `AdminClient` has no ListConsumerGroups,
//! DescribeConsumerGroups, ListConsumerGroupOffsets or ListOffsets, so this
//! module calls librdkafka's admin API (through `rdkafka::bindings`, the
//! `rdkafka-sys` bindings rdkafka re-exports) behind a small safe surface.
//! Every unsafe block is local and commented; every librdkafka object is
//! owned by an RAII guard ([`Queue`], [`Event`], [`Options`]) so no path
//! leaks or double-frees it.
//!
//! Requests are asynchronous in librdkafka: each is issued with a reply
//! queue and its result arrives there as an event. [`LagClient::pipeline`]
//! keeps up to `max_in_flight` requests outstanding on one private queue, so
//! 1,000 groups cost about as long as the broker takes to answer 1,000
//! pipelined requests, not 1,000 round trips. Batching per API:
//!
//! - ListConsumerGroups: one call (librdkafka asks every broker);
//! - DescribeConsumerGroups: chunks of [`DESCRIBE_CHUNK`] groups per call
//!   (librdkafka sends one request per group; it tries the KIP-848
//!   ConsumerGroupDescribe API first and falls back to the classic
//!   DescribeGroups API, so both kinds of group are described);
//! - ListConsumerGroupOffsets: librdkafka accepts one group per call, so one
//!   call per group, pipelined;
//! - ListOffsets: one call for all partitions (librdkafka sends one request
//!   per partition leader).
//!
//! The client runs on the lag thread only; nothing here touches the ingest
//! thread or the async runtime.

use std::ffi::CString;
use std::os::raw::c_char;
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::ffi::{cstr, error_message, parse_group_event, partition_error, slice, Event, Options, Queue};

type HashMap<K, V> = ahash::AHashMap<K, V>;

/// Groups per DescribeConsumerGroups call: large enough that calls are few,
/// small enough that one slow group delays only its chunk's result.
pub const DESCRIBE_CHUNK: usize = 50;

/// Partitions per ListOffsets call. librdkafka sorts each call's partitions
/// by leader with a linear search per partition (quadratic in the call's
/// size: a cycle over 2,000 partitions in one call spent most of its CPU
/// there); chunks keep that linear in the partition count, and the calls
/// are pipelined like the others.
pub const LIST_OFFSETS_CHUNK: usize = 256;

/// A partition list with an offset per entry, built in linear time.
/// (`TopicPartitionList::add_partition_offset` looks the entry it just
/// added up again, a linear search per call: quadratic over a long list.)
pub fn offset_list<'a>(entries: impl IntoIterator<Item = (&'a str, i32, Offset)>) -> TopicPartitionList {
    let entries = entries.into_iter();
    let mut list = TopicPartitionList::with_capacity(entries.size_hint().0);
    for (topic, partition, offset) in entries {
        // Only a negative offset librdkafka has no special value for is refused.
        let _ = list.add_partition(topic, partition).set_offset(offset);
    }
    list
}

/// Errors of one admin request; each maps to one bounded `kind` label.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to create the admin client: {0}")]
    Create(String),
    #[error("{what} failed: {message}")]
    Request { what: &'static str, message: String },
    #[error("{what} timed out with {outstanding} request(s) unanswered")]
    Timeout { what: &'static str, outstanding: usize },
}

/// Consumer group states as librdkafka reports them (KIP-848 groups map
/// their states onto the same set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Unknown,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
    Empty,
}

impl GroupState {
    pub const ALL: [GroupState; 6] = [
        GroupState::Unknown,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
        GroupState::Empty,
    ];

    pub(super) fn from_native(state: rd::rd_kafka_consumer_group_state_t) -> Self {
        use rd::rd_kafka_consumer_group_state_t::*;
        match state {
            RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE => GroupState::PreparingRebalance,
            RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE => GroupState::CompletingRebalance,
            RD_KAFKA_CONSUMER_GROUP_STATE_STABLE => GroupState::Stable,
            RD_KAFKA_CONSUMER_GROUP_STATE_DEAD => GroupState::Dead,
            RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY => GroupState::Empty,
            _ => GroupState::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Unknown => "unknown",
            GroupState::PreparingRebalance => "preparing_rebalance",
            GroupState::CompletingRebalance => "completing_rebalance",
            GroupState::Stable => "stable",
            GroupState::Dead => "dead",
            GroupState::Empty => "empty",
        }
    }

    /// Whether a group in this state can have members; Empty and Dead
    /// groups have none, so they need no DescribeConsumerGroups request.
    pub fn may_have_members(self) -> bool {
        !matches!(self, GroupState::Empty | GroupState::Dead)
    }
}

/// The group protocol: classic (JoinGroup/SyncGroup) or the KIP-848
/// consumer protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupType {
    Classic,
    Consumer,
    Unknown,
}

impl GroupType {
    pub(super) fn from_native(kind: rd::rd_kafka_consumer_group_type_t) -> Self {
        use rd::rd_kafka_consumer_group_type_t::*;
        match kind {
            RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC => GroupType::Classic,
            RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER => GroupType::Consumer,
            _ => GroupType::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupType::Classic => "classic",
            GroupType::Consumer => "consumer",
            GroupType::Unknown => "unknown",
        }
    }
}

/// One group from ListConsumerGroups.
#[derive(Debug, Clone)]
pub struct GroupListing {
    pub group: String,
    pub state: GroupState,
    pub kind: GroupType,
    /// A group that only commits offsets (assign(), no subscription).
    pub simple: bool,
}

/// One group from DescribeConsumerGroups.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group: String,
    pub state: GroupState,
    pub kind: GroupType,
    pub members: usize,
}

/// A topic name shared by every entry that names it.
pub type Topic = Arc<str>;

/// Committed offsets of one group: (topic, partition, next offset to consume).
#[derive(Debug, Clone)]
pub struct GroupOffsets {
    pub group: String,
    pub offsets: Vec<(Topic, i32, i64)>,
}

/// Offsets to commit for one group: (group, [(topic, partition, offset)]).
pub type GroupCommit = (String, Vec<(String, i32, i64)>);

/// What one pipelined round of group requests returned.
#[derive(Debug, Default)]
pub struct GroupRound {
    pub descriptions: Vec<GroupDescription>,
    pub offsets: Vec<GroupOffsets>,
    /// Groups whose description or offsets could not be read, with why.
    pub failures: Vec<(String, ClientError)>,
}

/// End offsets of partitions: read_uncommitted gives the high watermark,
/// read_committed the last stable offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

/// The admin connection of the lag monitor.
pub struct LagClient {
    /// A producer-type handle: it has no group, no fetcher, and its main
    /// queue (errors, logs) is served by `poll` in [`LagClient::serve_events`].
    producer: BaseProducer<DefaultProducerContext>,
    request_timeout: Duration,
    max_in_flight: usize,
}

impl LagClient {
    /// `properties`: connection and security settings (the config's client
    /// properties). `request_timeout` bounds each admin request; at most
    /// `max_in_flight` requests are outstanding at once.
    pub fn new(
        properties: &[(String, String)],
        request_timeout: Duration,
        max_in_flight: usize,
    ) -> Result<Self, ClientError> {
        let mut config = ClientConfig::new();
        for (key, value) in properties {
            config.set(key, value);
        }
        let producer = config.create().map_err(|err| ClientError::Create(err.to_string()))?;
        Ok(Self { producer, request_timeout, max_in_flight: max_in_flight.max(1) })
    }

    fn native(&self) -> *mut rd::rd_kafka_t {
        self.producer.client().native_ptr()
    }

    /// Adds the bootstrap servers to the handle again (see `rebootstrap.rs`).
    pub fn add_brokers(&self, bootstrap: &crate::rebootstrap::Bootstrap) {
        bootstrap.add_to(self.producer.client());
    }

    /// Serves the handle's main queue (client errors, logs) so it never grows.
    pub fn serve_events(&self) {
        self.producer.poll(Duration::ZERO);
    }

    fn options(&self, op: rd::rd_kafka_admin_op_t) -> Options {
        // SAFETY: a live handle; the returned options are owned by the guard.
        let options = Options(unsafe { rd::rd_kafka_AdminOptions_new(self.native(), op) });
        let mut errstr = [0 as c_char; 256];
        let timeout = self.request_timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: valid options and a writable error buffer of the given size.
        // The only failure is an out-of-range timeout, which the clamp rules out.
        unsafe {
            rd::rd_kafka_AdminOptions_set_request_timeout(options.0, timeout, errstr.as_mut_ptr(), errstr.len());
        }
        options
    }

    fn queue(&self) -> Queue {
        // SAFETY: a live handle; the queue is owned by the guard.
        Queue(unsafe { rd::rd_kafka_queue_new(self.native()) })
    }

    /// Issues `count` requests (request `i` by `issue(i, queue)`), keeping at
    /// most `max_in_flight` outstanding, and hands each result event to
    /// `handle`. Fails with `Timeout` when results stop arriving for a whole
    /// request timeout (plus a second of slack).
    fn pipeline(
        &self,
        what: &'static str,
        count: usize,
        mut issue: impl FnMut(usize, &Queue),
        mut handle: impl FnMut(&Event),
    ) -> Result<(), ClientError> {
        let queue = self.queue();
        let (mut issued, mut answered) = (0, 0);
        let patience = self.request_timeout + Duration::from_secs(1);
        let mut last_progress = Instant::now();
        while answered < count {
            while issued < count && issued - answered < self.max_in_flight {
                issue(issued, &queue);
                issued += 1;
            }
            // SAFETY: a live queue; a non-null event is owned by the guard.
            let event = unsafe { rd::rd_kafka_queue_poll(queue.0, 100) };
            if event.is_null() {
                if last_progress.elapsed() > patience {
                    return Err(ClientError::Timeout { what, outstanding: count - answered });
                }
                continue;
            }
            let event = Event(event);
            answered += 1;
            last_progress = Instant::now();
            handle(&event);
        }
        Ok(())
    }

    /// Every consumer group on the cluster (classic, KIP-848 consumer and
    /// simple groups). Brokers that could not answer are reported as an error
    /// only when no broker answered.
    pub fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        let options = self.options(rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS);
        let mut groups = Vec::new();
        let mut failure = None;
        self.pipeline(
            "list groups",
            1,
            // SAFETY: live handle, options and queue.
            |_, queue| unsafe { rd::rd_kafka_ListConsumerGroups(self.native(), options.0, queue.0) },
            |event| {
                if let Some(message) = event.error() {
                    failure = Some(message);
                    return;
                }
                // SAFETY: a LISTCONSUMERGROUPS result event (the only request
                // on this queue); the listings live as long as the event.
                unsafe {
                    let result = rd::rd_kafka_event_ListConsumerGroups_result(event.0);
                    if result.is_null() {
                        failure = Some(format!("unexpected event type {}", event.kind()));
                        return;
                    }
                    let mut count = 0;
                    let listings = rd::rd_kafka_ListConsumerGroups_result_valid(result, &mut count);
                    for &listing in slice(listings, count) {
                        groups.push(GroupListing {
                            group: cstr(rd::rd_kafka_ConsumerGroupListing_group_id(listing)).to_string(),
                            state: GroupState::from_native(rd::rd_kafka_ConsumerGroupListing_state(listing)),
                            kind: GroupType::from_native(rd::rd_kafka_ConsumerGroupListing_type(listing)),
                            simple: rd::rd_kafka_ConsumerGroupListing_is_simple_consumer_group(listing) != 0,
                        });
                    }
                    let mut error_count = 0;
                    let errors = rd::rd_kafka_ListConsumerGroups_result_errors(result, &mut error_count);
                    if groups.is_empty() {
                        failure = slice(errors, error_count).first().and_then(|&e| error_message(e));
                    }
                }
            },
        )?;
        match failure {
            Some(message) => Err(ClientError::Request { what: "list groups", message }),
            None => Ok(groups),
        }
    }

    /// Describes `describe` (state, type, member count) and reads the
    /// committed offsets of `offsets`, all pipelined on one queue.
    pub fn group_round(&self, describe: &[&str], offsets: &[&str]) -> Result<GroupRound, ClientError> {
        let describe_options = self.options(rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
        let offsets_options = self.options(rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
        let chunks: Vec<Vec<CString>> = describe
            .chunks(DESCRIBE_CHUNK)
            .map(|chunk| chunk.iter().filter_map(|g| CString::new(*g).ok()).collect())
            .collect();
        let offset_groups: Vec<CString> = offsets.iter().filter_map(|g| CString::new(*g).ok()).collect();
        let mut round = GroupRound::default();
        let mut topics: HashMap<String, Topic> = HashMap::default();
        let count = chunks.len() + offset_groups.len();
        self.pipeline(
            "group round",
            count,
            |i, queue| {
                if let Some(chunk) = chunks.get(i) {
                    let mut names: Vec<*const c_char> = chunk.iter().map(|c| c.as_ptr()).collect();
                    // SAFETY: the names outlive the call (librdkafka copies them).
                    unsafe {
                        rd::rd_kafka_DescribeConsumerGroups(
                            self.native(),
                            names.as_mut_ptr(),
                            names.len(),
                            describe_options.0,
                            queue.0,
                        )
                    }
                } else {
                    let group = &offset_groups[i - chunks.len()];
                    // SAFETY: a null partition list asks for every committed
                    // partition; the request object is copied by the call and
                    // destroyed right after it.
                    unsafe {
                        let mut request = rd::rd_kafka_ListConsumerGroupOffsets_new(group.as_ptr(), ptr::null());
                        rd::rd_kafka_ListConsumerGroupOffsets(
                            self.native(),
                            &mut request,
                            1,
                            offsets_options.0,
                            queue.0,
                        );
                        rd::rd_kafka_ListConsumerGroupOffsets_destroy(request);
                    }
                }
            },
            |event| parse_group_event(event, &mut round, &mut topics),
        )?;
        Ok(round)
    }

    /// End offsets of `partitions`: the high watermark (read_uncommitted) or
    /// the last stable offset (read_committed). Partitions whose leader did
    /// not answer are missing from the result.
    pub fn end_offsets(
        &self,
        partitions: &[(Topic, i32)],
        isolation: Isolation,
    ) -> Result<HashMap<(Topic, i32), i64>, ClientError> {
        let mut ends = HashMap::default();
        if partitions.is_empty() {
            return Ok(ends);
        }
        // Offset::End is -1, librdkafka's RD_KAFKA_OFFSET_SPEC_LATEST.
        let lists: Vec<TopicPartitionList> = partitions
            .chunks(LIST_OFFSETS_CHUNK)
            .map(|chunk| offset_list(chunk.iter().map(|(topic, partition)| (topic.as_ref(), *partition, Offset::End))))
            .collect();
        let options = self.options(rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTOFFSETS);
        let level = match isolation {
            Isolation::ReadUncommitted => rd::rd_kafka_IsolationLevel_t::RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED,
            Isolation::ReadCommitted => rd::rd_kafka_IsolationLevel_t::RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED,
        };
        // SAFETY: valid options; the returned error (null on success) is freed.
        unsafe {
            let error = rd::rd_kafka_AdminOptions_set_isolation_level(options.0, level);
            if !error.is_null() {
                rd::rd_kafka_error_destroy(error);
            }
        }
        let names: HashMap<&str, &Topic> = partitions.iter().map(|(t, _)| (t.as_ref(), t)).collect();
        let mut failure = None;
        self.pipeline(
            "list offsets",
            lists.len(),
            // SAFETY: live handle, list (copied by the call), options and queue.
            |i, queue| unsafe { rd::rd_kafka_ListOffsets(self.native(), lists[i].ptr(), options.0, queue.0) },
            |event| {
                if let Some(message) = event.error() {
                    failure = Some(message);
                    return;
                }
                // SAFETY: a LISTOFFSETS result; infos and their partitions
                // live as long as the event.
                unsafe {
                    let result = rd::rd_kafka_event_ListOffsets_result(event.0);
                    if result.is_null() {
                        return;
                    }
                    let mut count = 0;
                    let infos = rd::rd_kafka_ListOffsets_result_infos(result, &mut count);
                    for &info in slice(infos, count) {
                        let tp = &*rd::rd_kafka_ListOffsetsResultInfo_topic_partition(info);
                        if tp.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || tp.offset < 0 {
                            continue;
                        }
                        if let Some(topic) = names.get(cstr(tp.topic)) {
                            ends.insert(((*topic).clone(), tp.partition), tp.offset);
                        }
                    }
                }
            },
        )?;
        match failure {
            Some(message) => Err(ClientError::Request { what: "list offsets", message }),
            None => Ok(ends),
        }
    }

    /// Sets committed offsets of many groups (used by tests and the
    /// benchmark to build known states; pipewarden itself never commits for
    /// other groups). `groups`: (group, [(topic, partition, offset)]).
    pub fn commit_offsets(&self, groups: &[GroupCommit]) -> Result<(), ClientError> {
        let options = self.options(rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS);
        let names: Vec<CString> = groups.iter().filter_map(|(g, _)| CString::new(g.as_str()).ok()).collect();
        let mut failure = None;
        self.pipeline(
            "commit offsets",
            names.len(),
            |i, queue| {
                let list = offset_list(
                    groups[i]
                        .1
                        .iter()
                        .map(|(topic, partition, offset)| (topic.as_str(), *partition, Offset::Offset(*offset))),
                );
                // SAFETY: the group name and list outlive the call, which
                // copies them; the request object is destroyed right after.
                unsafe {
                    let mut request = rd::rd_kafka_AlterConsumerGroupOffsets_new(names[i].as_ptr(), list.ptr());
                    rd::rd_kafka_AlterConsumerGroupOffsets(self.native(), &mut request, 1, options.0, queue.0);
                    rd::rd_kafka_AlterConsumerGroupOffsets_destroy(request);
                }
            },
            |event| {
                if let Some(message) = event.error() {
                    failure = Some(message);
                    return;
                }
                // SAFETY: an ALTERCONSUMERGROUPOFFSETS result, read while the event lives.
                unsafe {
                    let result = rd::rd_kafka_event_AlterConsumerGroupOffsets_result(event.0);
                    if result.is_null() {
                        return;
                    }
                    let mut count = 0;
                    let results = rd::rd_kafka_AlterConsumerGroupOffsets_result_groups(result, &mut count);
                    for &group in slice(results, count) {
                        if let Some(message) = error_message(rd::rd_kafka_group_result_error(group)) {
                            failure = Some(message);
                        }
                        if let Some(message) = partition_error(rd::rd_kafka_group_result_partitions(group)) {
                            failure = Some(message);
                        }
                    }
                }
            },
        )?;
        match failure {
            Some(message) => Err(ClientError::Request { what: "commit offsets", message }),
            None => Ok(()),
        }
    }
}
