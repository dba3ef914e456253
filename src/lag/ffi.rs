//! Ownership and reading helpers for librdkafka admin objects, used by
//! [`super::client`]: RAII guards for queues, events and admin options,
//! borrowed views of C strings, result arrays and partition lists, and the
//! parser of group results. Every unsafe function states what its caller
//! must guarantee.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::sync::Arc;

use rdkafka::bindings as rd;

use super::client::{ClientError, GroupDescription, GroupOffsets, GroupRound, GroupState, GroupType, Topic};

type HashMap<K, V> = ahash::AHashMap<K, V>;

/// Owns a librdkafka reply queue.
pub(super) struct Queue(pub(super) *mut rd::rd_kafka_queue_t);

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_queue_new and destroyed only here.
        // Requests still outstanding hold their own reference to the queue.
        unsafe { rd::rd_kafka_queue_destroy(self.0) }
    }
}

/// Owns one event polled from a queue.
pub(super) struct Event(pub(super) *mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: returned non-null by rd_kafka_queue_poll; destroyed only here.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

impl Event {
    pub(super) fn kind(&self) -> i32 {
        // SAFETY: a live event.
        unsafe { rd::rd_kafka_event_type(self.0) }
    }

    /// The request-level error of an admin result, if any.
    pub(super) fn error(&self) -> Option<String> {
        // SAFETY: a live event; the error string lives as long as the event.
        unsafe {
            if rd::rd_kafka_event_error(self.0) == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return None;
            }
            Some(cstr(rd::rd_kafka_event_error_string(self.0)).to_string())
        }
    }
}

/// Owns admin options.
pub(super) struct Options(pub(super) *mut rd::rd_kafka_AdminOptions_t);

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_AdminOptions_new; librdkafka copies the
        // options into each request, so they can go once the call returned.
        unsafe { rd::rd_kafka_AdminOptions_destroy(self.0) }
    }
}

/// A string borrowed from librdkafka; empty for null.
///
/// SAFETY (callers): `ptr` is null or a NUL-terminated string that outlives
/// the returned borrow.
pub(super) unsafe fn cstr<'a>(ptr: *const c_char) -> &'a str {
    if ptr.is_null() {
        return "";
    }
    unsafe { CStr::from_ptr(ptr) }.to_str().unwrap_or("")
}

/// The message of a librdkafka error object, or None for null.
///
/// SAFETY (callers): `error` is null or a live error object.
pub(super) unsafe fn error_message(error: *const rd::rd_kafka_error_t) -> Option<String> {
    if error.is_null() {
        return None;
    }
    Some(unsafe { cstr(rd::rd_kafka_error_string(error)) }.to_string())
}

/// A slice over a librdkafka result array (null means empty).
///
/// SAFETY (callers): `items` points to `count` elements that outlive the borrow.
pub(super) unsafe fn slice<'a, T>(items: *mut *const T, count: usize) -> &'a [*const T] {
    if items.is_null() || count == 0 {
        return &[];
    }
    unsafe { std::slice::from_raw_parts(items, count) }
}

/// The first per-partition error of a result list, if any.
///
/// SAFETY (callers): `list` is null or a live partition list.
pub(super) unsafe fn partition_error(list: *const rd::rd_kafka_topic_partition_list_t) -> Option<String> {
    if list.is_null() {
        return None;
    }
    let list = unsafe { &*list };
    let elements = unsafe { partition_elements(list) };
    elements.iter().find(|tp| tp.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).map(|tp| {
        // SAFETY: rd_kafka_err2str returns a static string.
        unsafe { cstr(rd::rd_kafka_err2str(tp.err)) }.to_string()
    })
}

/// The elements of a partition list.
///
/// SAFETY (callers): `list` is live and outlives the borrow.
pub(super) unsafe fn partition_elements(
    list: &rd::rd_kafka_topic_partition_list_t,
) -> &[rd::rd_kafka_topic_partition_t] {
    if list.elems.is_null() || list.cnt <= 0 {
        return &[];
    }
    unsafe { std::slice::from_raw_parts(list.elems, list.cnt as usize) }
}

/// Reads one DescribeConsumerGroups or ListConsumerGroupOffsets result into
/// `round`. Topic names are interned so 100,000 committed offsets share a
/// few hundred strings.
pub(super) fn parse_group_event(event: &Event, round: &mut GroupRound, topics: &mut HashMap<String, Topic>) {
    let request_error = event.error();
    // SAFETY: the event is live for the whole block; every pointer read from
    // it (results, names, partition lists) lives as long as the event.
    unsafe {
        let described = rd::rd_kafka_event_DescribeConsumerGroups_result(event.0);
        if !described.is_null() {
            let mut count = 0;
            let groups = rd::rd_kafka_DescribeConsumerGroups_result_groups(described, &mut count);
            for &group in slice(groups, count) {
                let name = cstr(rd::rd_kafka_ConsumerGroupDescription_group_id(group)).to_string();
                if let Some(message) = error_message(rd::rd_kafka_ConsumerGroupDescription_error(group)) {
                    round.failures.push((name, ClientError::Request { what: "describe group", message }));
                    continue;
                }
                round.descriptions.push(GroupDescription {
                    group: name,
                    state: GroupState::from_native(rd::rd_kafka_ConsumerGroupDescription_state(group)),
                    kind: GroupType::from_native(rd::rd_kafka_ConsumerGroupDescription_type(group)),
                    members: rd::rd_kafka_ConsumerGroupDescription_member_count(group),
                });
            }
            if count == 0 {
                if let Some(message) = request_error {
                    round.failures.push((String::new(), ClientError::Request { what: "describe groups", message }));
                }
            }
            return;
        }
        let listed = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event.0);
        if listed.is_null() {
            return;
        }
        let mut count = 0;
        let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(listed, &mut count);
        if count == 0 {
            if let Some(message) = request_error {
                round.failures.push((String::new(), ClientError::Request { what: "group offsets", message }));
            }
        }
        for &group in slice(groups, count) {
            let name = cstr(rd::rd_kafka_group_result_name(group)).to_string();
            if let Some(message) = error_message(rd::rd_kafka_group_result_error(group)) {
                round.failures.push((name, ClientError::Request { what: "group offsets", message }));
                continue;
            }
            let list = rd::rd_kafka_group_result_partitions(group);
            let mut offsets = Vec::new();
            if !list.is_null() {
                for tp in partition_elements(&*list) {
                    // -1001 (RD_KAFKA_OFFSET_INVALID): no committed offset.
                    if tp.offset < 0 || tp.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                        continue;
                    }
                    let topic_name = cstr(tp.topic);
                    let topic = match topics.get(topic_name) {
                        Some(topic) => topic.clone(),
                        None => {
                            let topic: Topic = Arc::from(topic_name);
                            topics.insert(topic_name.to_string(), topic.clone());
                            topic
                        }
                    };
                    offsets.push((topic, tp.partition, tp.offset));
                }
            }
            round.offsets.push(GroupOffsets { group: name, offsets });
        }
    }
}
