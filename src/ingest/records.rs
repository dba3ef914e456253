//! Records read a batch at a time from librdkafka.
//!
//! `BaseConsumer::poll` returns one record per call, and each call pays for
//! the queue's lock, two clock reads for `max.poll.interval.ms`, a lock of
//! the partition to move its application position, and an `Arc` the crate
//! allocates per record. `rd_kafka_consume_batch_queue` pays for most of
//! that once per batch, but it cannot read the consumer's own queue: that
//! queue also carries rebalance events, which the batch call would answer
//! with librdkafka's default (an unassign) instead of the consumer context.
//!
//! So every partition's fetch queue is forwarded to a [`RecordQueue`] of
//! pipewarden's own, in the rebalance callback, *before* the partition is
//! assigned (so no record of it can reach the consumer's queue first).
//! The loop reads records from that queue in batches and still polls the
//! consumer's queue for events (rebalances, errors, commit results). A
//! record that does come through the consumer's queue (a partition that
//! could not be forwarded) is processed the same way, as a [`Fetched`] that
//! holds the consumer's message.
//!
//! librdkafka clears a fetch queue's forwarding when the partition stops
//! (revoked), so it is set again on every assignment. Revoked, paused and
//! sought partitions' records still queued are dropped by the batch call
//! itself (they carry an outdated version), as `poll` drops them.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, Timestamp};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use tracing::warn;

/// Most records one [`RecordQueue::consume`] returns.
pub const MAX_RECORDS: usize = 512;

/// The queue assigned partitions are forwarded to, as the consumer context
/// sees it: set while the loop's [`RecordQueue`] lives, `None` after.
#[derive(Default)]
pub struct Forwarding {
    queue: Mutex<Option<QueuePtr>>,
}

struct QueuePtr(NonNull<rd::rd_kafka_queue_t>);

// SAFETY: a librdkafka queue handle may be used from any thread; the
// pointer is only dereferenced by librdkafka, under the mutex above.
unsafe impl Send for QueuePtr {}

impl Forwarding {
    /// Forwards each partition's fetch queue to the record queue; called
    /// before the partitions are assigned. Returns how many could not be
    /// forwarded (their records then come through the consumer's poll).
    pub fn forward<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, partitions: &TopicPartitionList) -> usize {
        let queue = self.queue.lock().expect("forwarding lock poisoned");
        let Some(queue) = queue.as_ref() else {
            return 0;
        };
        let client = consumer.client().native_ptr();
        let mut failed = 0;
        for element in partitions.elements() {
            let Ok(topic) = CString::new(element.topic()) else {
                failed += 1;
                continue;
            };
            // SAFETY: a live client and a NUL-terminated topic name; the
            // returned handle is destroyed right after setting the
            // forwarding, which the partition's fetch queue keeps.
            unsafe {
                let partition = rd::rd_kafka_queue_get_partition(client, topic.as_ptr(), element.partition());
                if partition.is_null() {
                    failed += 1;
                    continue;
                }
                rd::rd_kafka_queue_forward(partition, queue.0.as_ptr());
                rd::rd_kafka_queue_destroy(partition);
            }
        }
        if failed > 0 {
            warn!(failed, "partitions not forwarded to the record queue; their records come one poll at a time");
        }
        failed
    }
}

/// pipewarden's own queue of fetched records. It must be dropped before the
/// consumer is (the consumer's `Drop` destroys the client the queue belongs
/// to); borrowing the consumer makes that so.
pub struct RecordQueue<'c> {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// The consumer's own queue (events: logs, errors, rebalances, commit
    /// results), only to see how many are waiting.
    events: Option<NonNull<rd::rd_kafka_queue_t>>,
    forwarding: Arc<Forwarding>,
    _consumer: PhantomData<&'c ()>,
}

impl<'c> RecordQueue<'c> {
    /// A new queue on `consumer`'s client, registered in `forwarding` so the
    /// next assignments are forwarded to it.
    pub fn new<C: ConsumerContext>(consumer: &'c BaseConsumer<C>, forwarding: Arc<Forwarding>) -> Self {
        // SAFETY: a live client; the queue is destroyed in `Drop`, before
        // the client (the borrow of `consumer`).
        let queue = unsafe { rd::rd_kafka_queue_new(consumer.client().native_ptr()) };
        let queue = NonNull::new(queue).expect("rd_kafka_queue_new returned no queue");
        // SAFETY: as above; `None` for a consumer without a group.
        let events = NonNull::new(unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) });
        *forwarding.queue.lock().expect("forwarding lock poisoned") = Some(QueuePtr(queue));
        RecordQueue { queue, events, forwarding, _consumer: PhantomData }
    }

    /// Events waiting on the consumer's own queue. `BaseConsumer::poll`
    /// serves one per call and answers `None` both when it served one and
    /// when there was none; this tells the two apart.
    pub fn events_queued(&self) -> usize {
        // SAFETY: a live queue handle.
        self.events.map_or(0, |events| unsafe { rd::rd_kafka_queue_length(events.as_ptr()) })
    }

    /// Appends up to `limit` records to `records`, waiting at most `wait`
    /// for the first one and not at all for the rest; errors the batch
    /// carried (partition-level consume errors) go to `errors`.
    pub fn consume<'q>(
        &'q self,
        wait: Duration,
        limit: usize,
        records: &mut Vec<Fetched<'q>>,
        errors: &mut Vec<KafkaError>,
    ) {
        let mut taken = [ptr::null_mut::<rd::rd_kafka_message_t>(); MAX_RECORDS];
        let limit = limit.min(MAX_RECORDS);
        if limit == 0 {
            return;
        }
        // With a timeout the batch call waits for every record up to
        // `limit`: wait for one, then take what is queued.
        let wait_ms = wait.as_millis().min(i32::MAX as u128) as i32;
        let mut count = self.take(wait_ms, &mut taken[..1]);
        if count == 1 && limit > 1 {
            count += self.take(0, &mut taken[1..limit]);
        }
        for &message in &taken[..count] {
            // SAFETY: returned by the batch call; each is owned by exactly
            // one `Fetched`, or destroyed here if it carries an error.
            let Some(message) = NonNull::new(message) else { continue };
            let err = unsafe { message.as_ref().err };
            if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                records.push(unsafe { Fetched::owned(message) });
            } else {
                let partition = unsafe { message.as_ref().partition };
                errors.push(match err {
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => KafkaError::PartitionEOF(partition),
                    err => KafkaError::MessageConsumption(RDKafkaErrorCode::from(err)),
                });
                unsafe { rd::rd_kafka_message_destroy(message.as_ptr()) };
            }
        }
    }

    fn take(&self, wait_ms: i32, into: &mut [*mut rd::rd_kafka_message_t]) -> usize {
        // SAFETY: a live queue and a buffer of `into.len()` pointers.
        let n =
            unsafe { rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), wait_ms, into.as_mut_ptr(), into.len()) };
        n.max(0) as usize
    }
}

impl Drop for RecordQueue<'_> {
    fn drop(&mut self) {
        *self.forwarding.queue.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // SAFETY: created in `new`, destroyed only here, while the client
        // lives. Records still forwarded to it are dropped by librdkafka
        // (their offsets were never stored).
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) }
        if let Some(events) = self.events {
            // SAFETY: from rd_kafka_queue_get_consumer, destroyed only here
            // (the handle, not the consumer's queue).
            unsafe { rd::rd_kafka_queue_destroy(events.as_ptr()) }
        }
    }
}

/// One fetched record: from the record queue (owned, destroyed on drop) or
/// from the consumer's poll (held by the crate's message).
pub struct Fetched<'q> {
    message: NonNull<rd::rd_kafka_message_t>,
    /// The topic name, read once (librdkafka keeps it while the record lives).
    topic: &'q str,
    /// `Some` when the record came through the consumer's own poll.
    polled: Option<BorrowedMessage<'q>>,
}

// SAFETY: the record's fields are read-only once fetched, as for the
// crate's `BorrowedMessage`, which is `Send + Sync` on the same terms; the
// lazily parsed header list is read by one thread at a time (see `Polled`).
unsafe impl Send for Fetched<'_> {}
unsafe impl Sync for Fetched<'_> {}

impl<'q> Fetched<'q> {
    /// # Safety
    /// `message` is a live record without error, owned by the caller.
    unsafe fn owned(message: NonNull<rd::rd_kafka_message_t>) -> Self {
        Fetched { message, topic: topic_name(message), polled: None }
    }

    /// A record the consumer's poll returned.
    pub fn polled(message: BorrowedMessage<'q>) -> Self {
        let native = NonNull::new(message.ptr()).expect("a polled message has a pointer");
        // SAFETY: live as long as `message`, which the record holds.
        let topic = unsafe { topic_name(native) };
        Fetched { message: native, topic, polled: Some(message) }
    }

    /// Stores this record's offset for the next commit (librdkafka commits
    /// `offset + 1`), as `Consumer::store_offset_from_message` does.
    pub fn store_offset(&self) -> KafkaResult<()> {
        let native = self.native();
        // SAFETY: a live record, whose topic handle lives as long as it.
        let err = unsafe { rd::rd_kafka_offset_store(native.rkt, native.partition, native.offset) };
        match err {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
            err => Err(KafkaError::StoreOffset(RDKafkaErrorCode::from(err))),
        }
    }

    fn native(&self) -> &rd::rd_kafka_message_t {
        // SAFETY: live until this record is dropped.
        unsafe { self.message.as_ref() }
    }
}

/// # Safety
/// `message` is live for `'q`.
unsafe fn topic_name<'q>(message: NonNull<rd::rd_kafka_message_t>) -> &'q str {
    let name = CStr::from_ptr(rd::rd_kafka_topic_name(message.as_ref().rkt));
    // Kafka topic names are ASCII ([a-zA-Z0-9._-]).
    name.to_str().unwrap_or("")
}

impl Drop for Fetched<'_> {
    fn drop(&mut self) {
        if self.polled.is_none() {
            // SAFETY: owned since the batch call returned it (`owned`).
            unsafe { rd::rd_kafka_message_destroy(self.message.as_ptr()) }
        }
    }
}

/// Slice of `len` bytes at `data`, `None` for a null pointer.
///
/// # Safety
/// `data` is null or points at `len` bytes that live for `'a`.
unsafe fn bytes<'a>(data: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    match data.is_null() {
        true => None,
        false => Some(std::slice::from_raw_parts(data.cast::<u8>(), len)),
    }
}

impl Message for Fetched<'_> {
    type Headers = RecordHeaders;

    fn key(&self) -> Option<&[u8]> {
        let native = self.native();
        // SAFETY: the key lives as long as the record.
        unsafe { bytes(native.key, native.key_len) }
    }

    fn payload(&self) -> Option<&[u8]> {
        let native = self.native();
        // SAFETY: the payload lives as long as the record.
        unsafe { bytes(native.payload, native.len) }
    }

    unsafe fn payload_mut(&mut self) -> Option<&mut [u8]> {
        let native = self.native();
        match native.payload.is_null() {
            true => None,
            false => Some(std::slice::from_raw_parts_mut(native.payload.cast::<u8>(), native.len)),
        }
    }

    fn topic(&self) -> &str {
        self.topic
    }

    fn partition(&self) -> i32 {
        self.native().partition
    }

    fn offset(&self) -> i64 {
        self.native().offset
    }

    fn timestamp(&self) -> Timestamp {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live record.
        let at = unsafe { rd::rd_kafka_message_timestamp(self.message.as_ptr(), &mut kind) };
        match (at, kind) {
            (-1, _) | (_, rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) => Timestamp::NotAvailable,
            (at, rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME) => Timestamp::CreateTime(at),
            (at, rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME) => Timestamp::LogAppendTime(at),
        }
    }

    fn headers(&self) -> Option<&RecordHeaders> {
        let mut headers = ptr::null_mut();
        // SAFETY: a live record; librdkafka parses the list on first call
        // and keeps it with the record, so it lives as long as `self`.
        let err = unsafe { rd::rd_kafka_message_headers(self.message.as_ptr(), &mut headers) };
        match (err, NonNull::new(headers)) {
            (rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR, Some(headers)) => {
                // SAFETY: `RecordHeaders` is a zero-sized stand-in whose
                // address is the list (see there).
                Some(unsafe { &*headers.as_ptr().cast::<RecordHeaders>() })
            }
            _ => None,
        }
    }
}

/// A record's header list, borrowed: a zero-sized type whose address is
/// librdkafka's `rd_kafka_headers_t`, so it can be handed out by reference
/// as [`Message::headers`] requires.
pub struct RecordHeaders {
    _list: [u8; 0],
}

impl RecordHeaders {
    fn list(&self) -> *const rd::rd_kafka_headers_t {
        (self as *const RecordHeaders).cast()
    }
}

impl Headers for RecordHeaders {
    fn count(&self) -> usize {
        // SAFETY: the address of a live header list.
        unsafe { rd::rd_kafka_header_cnt(self.list()) }
    }

    fn try_get(&self, idx: usize) -> Option<Header<'_, &[u8]>> {
        let (mut name, mut value, mut size) = (ptr::null(), ptr::null(), 0);
        // SAFETY: the address of a live header list; name and value live as long as it.
        unsafe {
            let err = rd::rd_kafka_header_get_all(self.list(), idx, &mut name, &mut value, &mut size);
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return None;
            }
            // A name that is not UTF-8 cannot be any name pipewarden looks
            // for; it reads (and is copied) as U+FFFD.
            let key = CStr::from_ptr(name).to_str().unwrap_or("\u{FFFD}");
            Some(Header { key, value: bytes(value, size) })
        }
    }
}
