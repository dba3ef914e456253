//! Ingest: the Kafka consumer loop.
//!
//! A librdkafka `BaseConsumer` is polled on a dedicated OS thread, not on
//! the async runtime: the per-record work is synchronous and short, and a
//! blocking poll loop has no per-record task wake-up. For each record:
//!
//! ```text
//! decode (envelope) → validate (verdict) → observe (metrics) → correlate → outcome
//!   valid / unverified / invalid but only counted → offset stored at once
//!   invalid and quarantined → copy sent; offset stored when it is acknowledged
//!   no verdict yet (schema being fetched) → partition paused, retried later
//! ```
//!
//! Records are taken in batches of what is queued, through librdkafka's
//! batch consume from a queue every assigned partition is forwarded to
//! ([`records`]); the consumer's own queue is still polled each round for
//! rebalances, errors and commit results. The
//! pure part of each record's work, decode and validate (one parse of the
//! payload, see [`crate::tape`]), is shared with one persistent helper
//! thread, `pipewarden-validate`, a chunk of records at a time; everything
//! after the verdict runs on this thread, in record order
//! (`Ingest::process_batch`). While the helper prepares a batch, this
//! thread takes the next one from the queue (librdkafka parses its headers
//! then) and frees the last one, so the helper does not sit idle at batch
//! boundaries. Records taken ahead belong to no outcome yet: a revocation
//! or a retry of their partition, or a rewind in exactly-once mode, drops
//! them (they are read again, by the next owner or after the seek).
//!
//! Offsets are stored in order per partition ([`offsets::OffsetTracker`])
//! and committed by librdkafka every `kafka.commit_interval_ms`, before
//! partitions are revoked, and once more at shutdown: an offset is never
//! committed before its record's outcome is durable (at-least-once).
//!
//! Each iteration first handles quarantine acknowledgements, then due
//! retries of paused partitions, and only then polls for new records, so
//! completed work is always released before more is taken on (the way a
//! biased select would). The number of unacknowledged quarantine copies is
//! bounded by `quarantine.max_in_flight`; at the bound the loop waits for
//! acknowledgements instead of fetching.
//!
//! The subscription is an explicit topic list kept up to date by
//! [`topics::TopicFilter`] (see there for why not a librdkafka regex).

pub mod access;
mod context;
pub mod health;
pub mod offsets;
pub mod records;
pub mod topics;
pub mod transactions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers as _, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::cost::{Budgets, CostStage};
use crate::decode::{Envelope, EnvelopeExtractor, Headers};
use crate::dlq::DlqStage;
use crate::lag::index::{IndexWriter, TimeIndex};
use crate::metrics::{BatchHandle, ConsumerErrorKind, Metrics, PauseLabels, TopicLabels};
use crate::observe::{Observer, Record};
use crate::quarantine::{Ack, Poison, Quarantine};
use crate::rebootstrap::Rebootstrap;
use crate::spans::SpanSink;
use crate::validate::cache::SchemaCache;
use crate::validate::{Checked, Validator, Verdict};
use access::Denied;
pub use context::IngestContext;
pub use health::Health;
use offsets::{BlockReason, OffsetTracker, TopicPartition};
use records::{Fetched, Forwarding, RecordQueue};
use topics::TopicFilter;
use transactions::{Committed, Transactions};

/// How long one poll waits for a record; bounds how quickly the loop sees a
/// shutdown request, an acknowledgement and a due retry.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Most records taken at once: enough that waking the helper thread is
/// small against the work it takes over, few enough that a batch is done
/// in a few milliseconds. The record queue's batch call takes as many.
const MAX_BATCH: usize = records::MAX_RECORDS;

/// Events (rebalances, errors, commit results, logs) the loop serves at
/// least each round while records stream: the batch taken in advance
/// leaves this much of the round's room for them.
const EVENTS_PER_ROUND: usize = 32;

/// Smallest batch worth splitting across two threads; smaller ones (a
/// consumer that has caught up) are processed on this thread alone.
const PARALLEL_BATCH_MIN: usize = 64;

/// How long a metadata request for the topic list may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// How soon a failed topic listing is retried.
const METADATA_RETRY: Duration = Duration::from_secs(1);

/// First retry of a partition waiting for its schema: a cache miss on a
/// healthy registry is answered in milliseconds.
const SCHEMA_RETRY: Duration = Duration::from_millis(50);

/// Longest retry delay of a paused partition.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// How long shutdown waits for outstanding quarantine acknowledgements.
const QUARANTINE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A record's headers seen through the decode stage's [`Headers`] trait.
/// librdkafka parses a record's headers into a list on first access, so
/// they are only touched when a source actually needs a header.
impl Headers for Fetched<'_> {
    fn last(&self, name: &str) -> Option<&[u8]> {
        let headers = self.headers()?;
        (0..headers.count()).rev().map(|i| headers.get(i)).find(|h| h.key == name).and_then(|h| h.value)
    }
}

/// A polled record, with a summary of its header names taken on this
/// thread while librdkafka's parse of them is fresh in its cache.
///
/// The validator asks for the schema-ID headers of every record, most of
/// which have none; with the summary, the helper thread answers those
/// lookups without reading the header list (memory written on the ingest
/// thread's core) through librdkafka.
struct Polled<'m> {
    message: Fetched<'m>,
    /// Bit [`name_bit`] of each header's name; `u64::MAX` (any name may be
    /// there) when the headers were not read at poll.
    names: u64,
}

impl<'m> Polled<'m> {
    /// `read_headers`: parse and summarise the headers now (see `headers_read`).
    fn new(message: Fetched<'m>, read_headers: bool) -> Self {
        let names = match read_headers {
            false => u64::MAX,
            true => match message.headers() {
                None => 0,
                Some(headers) => (0..headers.count()).fold(0, |bits, i| bits | name_bit(headers.get(i).key.as_bytes())),
            },
        };
        Polled { message, names }
    }
}

/// One of 64 bits for a header name: its length and first and last eight
/// bytes, mixed by one multiplication.
fn name_bit(name: &[u8]) -> u64 {
    let word = |bytes: &[u8]| {
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(word)
    };
    let n = name.len();
    let mixed = (word(&name[..n.min(8)]) ^ word(&name[n.saturating_sub(8)..]).rotate_left(32) ^ n as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    1 << (mixed >> 58)
}

impl Headers for Polled<'_> {
    fn last(&self, name: &str) -> Option<&[u8]> {
        if self.names & name_bit(name.as_bytes()) == 0 {
            return None;
        }
        self.message.last(name)
    }
}

/// The consumer and every stage; built on the caller's thread so
/// configuration errors surface at start-up, then moved to its own thread.
pub struct Ingest {
    /// Shared so the loop can hold a record borrowed from the consumer while
    /// the stages (`&mut self`) process it.
    consumer: Arc<BaseConsumer<IngestContext>>,
    filter: TopicFilter,
    /// Envelope and verdict, for this thread and the batch helper; taken out
    /// while a batch is split between the two, so `finish` can run meanwhile.
    preparers: Option<Box<Preparers>>,
    observer: Observer,
    cost: CostStage,
    dlq: DlqStage,
    quarantine: Quarantine,
    /// OTLP span export (`[otlp]`); `None` when off.
    spans: Option<SpanSink>,
    acks: Receiver<Ack>,
    tracker: OffsetTracker,
    cache: Arc<SchemaCache>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Partitions revoked in a rebalance callback, forgotten by the loop.
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    /// Where the rebalance callback forwards assigned partitions: the
    /// loop's [`RecordQueue`] (see `records.rs`).
    forwarding: Arc<Forwarding>,
    refresh_interval: Duration,
    quarantine_retry: Duration,
    subscription: Vec<String>,
    /// Partition count of each watched topic (quarantine topics copy it).
    partition_counts: HashMap<String, i32>,
    /// Shared topic names for the offset tracker's keys.
    topic_names: HashMap<Box<str>, Arc<str>>,
    /// Last cache counters, to turn them into counter increments.
    cache_seen: [u64; 5],
    clock: Clock,
    /// Exactly-once mode (`quarantine.transactional`); `None`: at-least-once.
    transactions: Option<Arc<Transactions>>,
    commit_interval: Duration,
    /// Where a partition without a committed offset starts (`kafka.auto_offset_reset`).
    reset_offset: Offset,
    /// The lag monitor's offset → timestamp index (see `lag/index.rs`), when lag is on.
    time_index: Option<IndexWriter>,
    /// Where each record's observation goes (the correlator, or the observations topic).
    correlation: crate::correlate::Input,
    /// The bootstrap servers, added to the consumer and the quarantine's
    /// clients again while Kafka stays silent (see `rebootstrap.rs`).
    rebootstrap: Rebootstrap,
    /// The same for the quarantine's clients alone, while its copies go
    /// unacknowledged (the consumer may be fine meanwhile).
    quarantine_rebootstrap: Rebootstrap,
    /// A copy was acknowledged since the last check (once a second).
    quarantine_acked: bool,
    /// Whether the validator reads a header of every record (see
    /// [`Validator::reads_headers`]): then they are parsed as records are polled.
    headers_read: bool,
    /// Processing times of the batch, added to the histogram after it.
    processing: BatchHandle,
}

/// Wall-clock time derived from the monotonic clock the loop reads anyway,
/// saving one clock read per record. Re-anchored every second (in
/// `update_stats`) so it follows wall-clock adjustments.
struct Clock {
    anchor: Instant,
    anchor_unix_us: i64,
}

impl Clock {
    fn new() -> Self {
        Self { anchor: Instant::now(), anchor_unix_us: now_us() }
    }

    fn unix_us(&self, at: Instant) -> i64 {
        self.anchor_unix_us + at.saturating_duration_since(self.anchor).as_micros() as i64
    }
}

/// What the pure part of a record's processing needs: the extractor, and a
/// validator (with its parse buffers) for each of the two threads, and the
/// helper thread itself: one persistent thread (a one-thread pool), woken
/// per batch, instead of a thread started and ended per batch.
struct Preparers {
    extractor: EnvelopeExtractor,
    own: Validator,
    helper: Validator,
    /// `None` if the thread could not be started: this thread does it all.
    pool: Option<rayon_core::ThreadPool>,
    /// The slots of a split batch, kept empty between batches so each batch
    /// reuses one allocation (see [`relabel`]).
    slots: Vec<OnceLock<Prepared<'static>>>,
}

/// The same empty vector, for records of another lifetime: collecting an
/// emptied `Vec`'s iterator into a vector of a type of the same size and
/// alignment reuses its allocation (std's in-place collection). A batch's
/// slots are a few hundred kilobytes, one large allocation per batch
/// otherwise, which glibc serves by first merging its small free chunks
/// (`malloc_consolidate`). The gain measured small (see item 17 of
/// docs/performance.md).
fn relabel<'a, 'b>(mut slots: Vec<OnceLock<Prepared<'a>>>) -> Vec<OnceLock<Prepared<'b>>> {
    slots.clear();
    slots.into_iter().map(|_| unreachable!("the vector is empty")).collect()
}

/// A record's envelope and verdict: the pure part of its processing.
struct Prepared<'m> {
    envelope: Envelope<'m>,
    checked: Checked,
    /// Time it took, for the processing-time histogram.
    took: Duration,
}

/// Prepares one record that started at `started`; returns when it ended,
/// which is when the next record of a chunk starts (one clock read per
/// record instead of two).
fn prepare<'m>(
    extractor: &EnvelopeExtractor,
    validator: &mut Validator,
    polled: &'m Polled<'_>,
    started: Instant,
) -> (Prepared<'m>, Instant) {
    let message = &polled.message;
    let (envelope, checked) = validator.prepare(extractor, message.topic(), message.key(), message.payload(), polled);
    let ended = Instant::now();
    (Prepared { envelope, checked, took: ended.saturating_duration_since(started) }, ended)
}

/// Records a thread claims at once in a split batch: a few tens of
/// microseconds of work, so the claims cost nothing and the threads end
/// within a chunk of each other.
const CHUNK: usize = 8;

/// The records of a batch being prepared by two threads: each claims the
/// next `CHUNK` unclaimed records and fills their slots.
struct Shared<'b, 'm> {
    batch: &'b [Polled<'m>],
    slots: Vec<OnceLock<Prepared<'b>>>,
    next: AtomicUsize,
    /// Set when the helper's job ends, also by a panic (which the scope
    /// then re-raises): a record it claimed and never prepared is not waited for.
    helper_done: AtomicBool,
}

/// What the ingest thread does for the loop while the helper prepares a
/// batch (see `Ingest::process_batch`): take the next batch (up to
/// `limit` records) into `next`, and free the records in `done`.
struct Overlap<'a, 'q> {
    queue: &'q RecordQueue<'q>,
    fetched: &'a mut Vec<Fetched<'q>>,
    errors: &'a mut Vec<rdkafka::error::KafkaError>,
    limit: usize,
    next: &'a mut Vec<Polled<'q>>,
    done: &'a mut Vec<Polled<'q>>,
}

/// Drops the records in `taken` (a batch taken ahead, see [`Overlap`]) of
/// the partitions `matches`: they are read again, by the partition's next
/// owner or after a seek. Returns how many were dropped.
fn drop_taken(taken: &mut Vec<Polled<'_>>, matches: impl Fn(&str, i32) -> bool) -> usize {
    let before = taken.len();
    taken.retain(|p| !matches(p.message.topic(), p.message.partition()));
    before - taken.len()
}

/// Sets the flag it holds when dropped: at the end of the helper's job,
/// however it ends.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl<'b> Shared<'b, '_> {
    /// Prepares the next unclaimed chunk; false when none is left.
    fn prepare_chunk(&self, extractor: &EnvelopeExtractor, validator: &mut Validator) -> bool {
        let start = self.next.fetch_add(CHUNK, Ordering::Relaxed);
        if start >= self.batch.len() {
            return false;
        }
        let mut started = Instant::now();
        for i in start..(start + CHUNK).min(self.batch.len()) {
            let (prepared, ended) = prepare(extractor, validator, &self.batch[i], started);
            started = ended;
            // Each index is claimed by exactly one thread.
            let _ = self.slots[i].set(prepared);
        }
        true
    }
}

impl Ingest {
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        correlation: crate::correlate::Input,
        budgets: Arc<Budgets>,
    ) -> anyhow::Result<Self> {
        let mut client_config = ClientConfig::new();
        for (key, value) in config.consumer_properties() {
            client_config.set(key, value);
        }
        let (quarantine, acks) = Quarantine::new(config)?;
        let transactions = match config.quarantine.transactional_id {
            Some(_) => Some(Arc::new(Transactions::init(quarantine.producer(), metrics.clone())?)),
            None => None,
        };
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let forwarding = Arc::new(Forwarding::default());
        let context = IngestContext::new(
            metrics.clone(),
            health.clone(),
            revoked.clone(),
            forwarding.clone(),
            transactions.clone(),
        );
        let consumer: BaseConsumer<IngestContext> =
            client_config.create_with_context(context).context("failed to create the kafka consumer")?;
        let extractor = EnvelopeExtractor::for_config(config).context("failed to build the envelope extractor")?;
        let cache = crate::validate::schema_cache(&config.registry)
            .map_err(|err| anyhow::anyhow!("failed to set up schemas: {err}"))?;
        let cache = Arc::new(cache);
        let pool = rayon_core::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "pipewarden-validate".into())
            .build()
            .map_err(|err| warn!(error = %err, "no helper thread; one thread prepares every record"))
            .ok();
        let preparers = Preparers {
            extractor,
            own: Validator::new(config, cache.clone()),
            helper: Validator::new(config, cache.clone()),
            pool,
            slots: Vec::with_capacity(MAX_BATCH),
        };
        let headers_read = preparers.own.reads_headers();
        let processing = BatchHandle::new(metrics.processing.clone());
        Ok(Self {
            consumer: Arc::new(consumer),
            filter: TopicFilter::new(config.topics.clone()),
            preparers: Some(Box::new(preparers)),
            observer: Observer::new(config, metrics.clone()),
            cost: CostStage::new(config, metrics.clone(), budgets),
            dlq: DlqStage::new(config, metrics.clone()),
            quarantine,
            spans: SpanSink::start(config, metrics.clone())?,
            acks,
            tracker: OffsetTracker::default(),
            cache,
            metrics,
            health,
            revoked,
            forwarding,
            refresh_interval: config.topics.refresh_interval,
            quarantine_retry: config.quarantine.retry_backoff,
            subscription: Vec::new(),
            partition_counts: HashMap::new(),
            topic_names: HashMap::new(),
            cache_seen: [0; 5],
            clock: Clock::new(),
            transactions,
            commit_interval: config.kafka.commit_interval,
            reset_offset: match config.kafka.auto_offset_reset {
                crate::config::OffsetReset::Earliest => Offset::Beginning,
                crate::config::OffsetReset::Latest => Offset::End,
            },
            time_index: None,
            correlation,
            headers_read,
            processing,
            rebootstrap: Rebootstrap::new(&config.kafka.bootstrap_servers),
            quarantine_rebootstrap: Rebootstrap::new(&config.kafka.bootstrap_servers),
            quarantine_acked: false,
        })
    }

    /// Feeds every consumed record's offset and timestamp to the lag
    /// monitor's index, and quarantined offsets to its stuck-record check.
    pub fn with_time_index(mut self, index: Arc<TimeIndex>) -> Self {
        self.time_index = Some(IndexWriter::new(index));
        self
    }

    /// Runs until `stop` is set. Then waits (briefly) for outstanding
    /// quarantine acknowledgements, commits the stored offsets and closes
    /// the consumer (leaving the group).
    pub fn run(mut self, stop: &AtomicBool) {
        let consumer = self.consumer.clone();
        let mut next_refresh = Instant::now();
        let mut next_stats = Instant::now();
        let mut next_commit = Instant::now() + self.commit_interval;
        // Declared after `consumer`, so dropped before it, also on unwinding.
        let queue = RecordQueue::new(&*consumer, self.forwarding.clone());
        let (mut fetched, mut errors) = (Vec::with_capacity(MAX_BATCH), Vec::new());
        // The batch being processed; the next one, taken while the helper
        // prepares this one; and the last one, freed meanwhile too (see
        // `process_batch`).
        let mut batch: Vec<Polled<'_>> = Vec::with_capacity(MAX_BATCH);
        let mut next: Vec<Polled<'_>> = Vec::with_capacity(MAX_BATCH);
        let mut done: Vec<Polled<'_>> = Vec::with_capacity(MAX_BATCH);
        while !stop.load(Ordering::Acquire) {
            if let Some(transactions) = self.transactions.clone() {
                if transactions.take_rewind() {
                    self.rewind(&mut batch);
                }
                if transactions.failed() {
                    error!("ingest stopping: the quarantine transaction producer failed");
                    return;
                }
                if Instant::now() >= next_commit {
                    self.commit_transaction("interval", &mut batch);
                    next_commit = Instant::now() + self.commit_interval;
                }
            }
            self.drain_acks();
            self.forget_revoked(&mut batch);
            let now = Instant::now();
            if !self.tracker.is_idle() {
                self.retry_due(now, &mut batch);
            }
            if self.health.kafka_down() {
                // Brokers reported down: probe every second so readiness
                // returns as soon as they answer again.
                next_refresh = next_refresh.min(now + METADATA_RETRY);
            }
            if now >= next_refresh {
                let ok = self.refresh_subscription();
                self.rebootstrap_if_due(ok);
                next_refresh = Instant::now() + if ok { self.refresh_interval } else { METADATA_RETRY };
            }
            if now >= next_stats {
                self.update_stats();
                self.check_quarantine_clients();
                if let Some((code, reason)) = self.quarantine.fatal_error() {
                    // Every later write would fail: restart (nothing
                    // unacknowledged was committed, so nothing is lost).
                    error!(code = ?code, reason, "ingest stopping: the quarantine producer failed fatally");
                    return;
                }
                next_stats = now + Duration::from_secs(1);
            }
            let room = self.quarantine.capacity().saturating_sub(self.tracker.in_flight());
            // A batch taken ahead fits: it was sized to the room left after
            // the batch before it, and nothing else adds to `in_flight`.
            debug_assert!(batch.len() <= room, "{} records taken ahead, room for {room}", batch.len());
            if room == 0 {
                // Backpressure: wait for acknowledgements rather than fetch more.
                if let Ok(ack) = self.acks.recv_timeout(POLL_TIMEOUT) {
                    self.handle_ack(ack);
                }
                continue;
            }
            // Take what is queued (up to a batch, and never more than the
            // quarantine has room for), waiting only for the first record.
            // Events first: rebalances, errors and commit results come
            // through the consumer's own queue (and the records of a
            // partition that could not be forwarded to the record queue).
            let limit = MAX_BATCH.min(room);
            // Every waiting event, but at most `limit` a round less the
            // records taken ahead, errors included (so at most `limit`
            // records in the batch). `poll` serves one
            // event per call (librdkafka's logs too) and answers `None`
            // also when it served one.
            for _ in batch.len()..limit {
                match consumer.poll(Duration::ZERO) {
                    None if queue.events_queued() == 0 => break,
                    None => {}
                    Some(Ok(message)) => batch.push(Polled::new(Fetched::polled(message), self.headers_read)),
                    Some(Err(err)) => self.consume_error(&err),
                }
            }
            // A rebalance callback in those polls aborted the transaction:
            // what was read is read again after the rewind.
            if self.transactions.as_ref().is_some_and(|t| t.take_rewind()) {
                self.rewind(&mut batch);
                continue;
            }
            // Records of partitions revoked in those polls, taken in the
            // last round, are their next owner's now.
            self.forget_revoked(&mut batch);
            // Waiting for records holds up the events queued meanwhile by
            // up to `POLL_TIMEOUT`; not when events are already waiting.
            let wait = match batch.is_empty() && queue.events_queued() == 0 {
                true => POLL_TIMEOUT,
                false => Duration::ZERO,
            };
            self.take(&queue, wait, limit.saturating_sub(batch.len()), &mut fetched, &mut errors, &mut batch);
            if !batch.is_empty() && self.health.access.any() {
                // Records flow: the login and the topic reads work again.
                self.health.access.allow(&[Denied::authentication, Denied::topic_read]);
            }
            let overlap = Overlap {
                queue: &queue,
                fetched: &mut fetched,
                errors: &mut errors,
                // Each record of this batch may add a quarantine copy; and
                // the next round polls up to as many events as there is
                // room for records (an event may be a record), so some is left.
                limit: MAX_BATCH.min(room.saturating_sub(batch.len())).saturating_sub(EVENTS_PER_ROUND),
                next: &mut next,
                done: &mut done,
            };
            self.process_batch(&batch, overlap);
            self.processing.flush();
            self.observer.flush();
            self.correlation.flush();
            // The records of this batch are freed during the next one's.
            std::mem::swap(&mut done, &mut batch);
            std::mem::swap(&mut batch, &mut next);
        }
        info!(in_flight = self.tracker.in_flight(), "ingest stopping: waiting for quarantine acknowledgements");
        if self.transactions.is_some() {
            self.commit_transaction("shutdown", &mut batch);
        } else {
            self.quarantine.flush(QUARANTINE_FLUSH_TIMEOUT);
            self.drain_acks();
            context::commit(&self.consumer, &self.metrics, "shutdown");
        }
        if let Some(spans) = self.spans.take() {
            spans.shutdown();
        }
        // The record queue goes before the consumer (whose client it
        // belongs to). Dropping the consumer closes it: it leaves the group
        // so its partitions move to other replicas at once.
        drop(batch);
        drop(next);
        drop(done);
        drop(fetched);
        drop(queue);
        drop(self);
        drop(consumer);
        info!("consumer closed");
    }

    /// A batch of records, in order. The pure part of each record's work
    /// (envelope and verdict, most of the CPU time) is shared between this
    /// thread and the helper thread (a scoped job), a chunk of records at a time;
    /// everything with side effects (metrics, correlation, quarantine,
    /// offsets) runs here, in record order, exactly as for a single record,
    /// as soon as each record is prepared. While the next record is not
    /// ready yet this thread prepares a chunk itself, so both threads stay
    /// busy until the batch is done.
    ///
    /// Before it finishes the first record, this thread takes the next
    /// batch from the record queue and frees the last one (`overlap`):
    /// work only this thread can do (librdkafka parses each record's
    /// headers as it is taken, and frees each record on the thread that
    /// took it), done while the helper prepares this batch instead of
    /// while it waits for one.
    fn process_batch<'q>(&mut self, batch: &[Polled<'q>], overlap: Overlap<'_, 'q>) {
        if batch.len() < PARALLEL_BATCH_MIN {
            // A consumer that has caught up: nothing to overlap with.
            overlap.done.clear();
            for polled in batch {
                self.process(polled);
            }
            return;
        }
        let mut preparers = self.preparers.take().expect("preparers are put back after each batch");
        let mut slots = relabel(std::mem::take(&mut preparers.slots));
        slots.resize_with(batch.len(), OnceLock::new);
        let owned = Shared { batch, slots, next: AtomicUsize::new(0), helper_done: AtomicBool::new(false) };
        let Preparers { extractor, own, helper, pool, slots: kept } = &mut *preparers;
        let extractor = &*extractor;
        let shared = &owned;
        let mut helper_job = move || {
            let _done = SetOnDrop(&shared.helper_done);
            while shared.prepare_chunk(extractor, helper) {}
        };
        let finish_all = || {
            let Overlap { queue, fetched, errors, limit, next, done } = overlap;
            done.clear();
            self.take(queue, Duration::ZERO, limit, fetched, errors, next);
            let mut waits = 0u32;
            'records: for (i, polled) in batch.iter().enumerate() {
                let prepared = loop {
                    if let Some(prepared) = shared.slots[i].get() {
                        break prepared;
                    }
                    if !shared.prepare_chunk(extractor, own) {
                        // The helper is on this record's chunk: a few
                        // microseconds, unless its job ended (a panic, which
                        // the scope re-raises).
                        if shared.helper_done.load(Ordering::Acquire) && shared.slots[i].get().is_none() {
                            break 'records;
                        }
                        waits += 1;
                        if waits.is_multiple_of(64) {
                            std::thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                };
                // A record before this one may have paused its partition.
                if !self.skips(&polled.message) {
                    self.finish(&polled.message, prepared);
                }
            }
        };
        match pool {
            Some(pool) => pool.in_place_scope(|scope| {
                scope.spawn(move |_| helper_job());
                finish_all();
            }),
            None => {
                shared.helper_done.store(true, Ordering::Release);
                finish_all();
            }
        }
        *kept = relabel(owned.slots);
        self.preparers = Some(preparers);
    }

    /// Takes up to `limit` records from the record queue into `into`,
    /// waiting at most `wait` for the first.
    fn take<'q>(
        &self,
        queue: &'q RecordQueue<'_>,
        wait: Duration,
        limit: usize,
        fetched: &mut Vec<Fetched<'q>>,
        errors: &mut Vec<rdkafka::error::KafkaError>,
        into: &mut Vec<Polled<'q>>,
    ) {
        queue.consume(wait, limit, fetched, errors);
        for err in errors.drain(..) {
            self.consume_error(&err);
        }
        // With `headers_read`, librdkafka parses the headers into a list
        // (a few allocations) here, and frees it with the record, on this
        // thread too: each allocation and its free on one thread, which
        // the allocator's per-thread caches serve fast (measured: 5-13 %
        // less CPU per record than parsing them on the helper).
        into.extend(fetched.drain(..).map(|message| Polled::new(message, self.headers_read)));
    }

    /// A consume error: counted, and reported as an access problem if it is one.
    fn consume_error(&self, err: &rdkafka::error::KafkaError) {
        self.metrics.record_consumer_error(ConsumerErrorKind::consume);
        match Denied::of_consumer_error(err) {
            Some(kind) => access::report(&self.health, &self.metrics, kind, err),
            None => warn!(error = %err, "consume error"),
        }
    }

    /// One record through decode, validate, observe and its outcome.
    fn process(&mut self, polled: &Polled<'_>) {
        if self.skips(&polled.message) {
            return;
        }
        let preparers = self.preparers.as_mut().expect("preparers are put back after each batch");
        let (prepared, _) = prepare(&preparers.extractor, &mut preparers.own, polled, Instant::now());
        self.finish(&polled.message, &prepared);
    }

    /// Whether the record's partition is paused at an earlier record (it
    /// will be read again).
    fn skips(&mut self, message: &Fetched<'_>) -> bool {
        if self.tracker.is_idle() {
            return false;
        }
        let tp = self.topic_partition(message.topic(), message.partition());
        self.tracker.skips(&tp, message.offset())
    }

    /// Everything after the verdict: metrics, cost, dead letters,
    /// correlation, spans, then quarantine or the offset. The caller has
    /// checked that the record's partition is not paused before it.
    fn finish(&mut self, message: &Fetched<'_>, prepared: &Prepared<'_>) {
        let started = Instant::now();
        let Prepared { envelope, checked, took } = prepared;
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let record = Record {
            topic,
            partition,
            offset,
            timestamp_ms: message.timestamp().to_millis(),
            payload: message.payload(),
            headers: message,
        };
        if let Some(index) = &mut self.time_index {
            index.record(topic, partition, offset, record.timestamp_ms);
        }
        if checked.verdict == Verdict::Wait {
            self.block(topic, partition, offset, BlockReason::SchemaUnavailable);
            return;
        }
        let now_us = self.clock.unix_us(started);
        self.observer.observe(&record, envelope, checked, now_us);
        let event_cost = self.cost.observe(topic, envelope, now_us);
        self.dlq.observe(&record, envelope, now_us);
        let mut observation = crate::correlate::observation(&record, envelope, checked);
        if let Some(cost) = &event_cost {
            observation.set_cost(cost);
        }
        let previous = self.correlation.observe(&observation, now_us / 1_000);
        if let Some(spans) = &self.spans {
            // The correlator's event order names the parent span when it
            // runs in this process; otherwise the exporter chains by read order.
            let previous = previous.map(|p| crate::spans::SpanId::for_record(&p.topic, p.partition, p.offset));
            spans.observe(&record, envelope, &checked.verdict, event_cost.as_ref(), previous);
        }

        if let Verdict::Invalid { reason, detail, schema_id, quarantine: true } = &checked.verdict {
            let poison = Poison { reason: reason.as_str(), error: detail, schema_id: *schema_id };
            let partitions = self.partition_counts.get(topic).copied().unwrap_or(1);
            let sent = match &self.transactions {
                Some(transactions) => transactions.before_send().and_then(|()| {
                    let sent = self.quarantine.send(message, &poison, partitions);
                    if sent.is_err() {
                        transactions.send_failed();
                    }
                    sent
                }),
                None => self.quarantine.send(message, &poison, partitions),
            };
            match sent {
                Ok(()) => {
                    let tp = self.topic_partition(topic, partition);
                    self.tracker.begin(&tp, offset);
                }
                Err(err) => {
                    self.metrics.quarantine_failures.get_or_create(&TopicLabels { topic: topic.to_string() }).inc();
                    if let Some(kind) = self.quarantine.take_denied() {
                        access::report(&self.health, &self.metrics, kind, &err);
                    }
                    warn!(topic, partition, offset, error = %err, "quarantine write failed; pausing the partition");
                    self.block(topic, partition, offset, BlockReason::QuarantineFailed);
                }
            }
        } else if self.tracker.is_idle() {
            // The common case: nothing waits on this partition.
            self.store_from_message(message);
        } else {
            let tp = self.topic_partition(topic, partition);
            if let Some(done) = self.tracker.done(&tp, offset) {
                self.store(&tp, done);
            }
        }
        self.processing.observe((*took + started.elapsed()).as_secs_f64());
    }

    fn topic_partition(&mut self, topic: &str, partition: i32) -> TopicPartition {
        if let Some(name) = self.topic_names.get(topic) {
            return (name.clone(), partition);
        }
        let name: Arc<str> = Arc::from(topic);
        self.topic_names.insert(topic.into(), name.clone());
        (name, partition)
    }

    fn store_from_message(&mut self, message: &Fetched<'_>) {
        if let Some(transactions) = self.transactions.clone() {
            let tp = self.topic_partition(message.topic(), message.partition());
            transactions.processed(&tp.0, tp.1, message.offset());
            return;
        }
        if let Err(err) = message.store_offset() {
            self.metrics.record_consumer_error(ConsumerErrorKind::offset_store);
            warn!(topic = message.topic(), partition = message.partition(), error = %err, "offset store failed");
        }
    }

    /// Stores `offset` as processed (librdkafka commits `offset + 1`).
    fn store(&self, tp: &TopicPartition, offset: i64) {
        if let Some(transactions) = &self.transactions {
            transactions.processed(&tp.0, tp.1, offset);
            return;
        }
        if let Err(err) = self.consumer.store_offset(&tp.0, tp.1, offset) {
            self.metrics.record_consumer_error(ConsumerErrorKind::offset_store);
            warn!(topic = %tp.0, partition = tp.1, error = %err, "offset store failed");
        }
    }

    fn drain_acks(&mut self) {
        while let Ok(ack) = self.acks.try_recv() {
            self.handle_ack(ack);
        }
    }

    fn handle_ack(&mut self, ack: Ack) {
        if let Some(transactions) = &self.transactions {
            transactions.copy_handled();
        }
        let tp = (ack.topic, ack.partition);
        match ack.result {
            Ok(()) => {
                self.quarantine_acked = true;
                if self.health.access.any() {
                    self.health.access.allow(&[Denied::quarantine_write, Denied::quarantine_create]);
                }
                self.metrics.quarantined_records.get_or_create(&TopicLabels { topic: tp.0.to_string() }).inc();
                if let Some(index) = &mut self.time_index {
                    index.quarantined(&tp.0, tp.1, ack.offset);
                }
                self.dlq.quarantined(&tp.0, ack.reason, now_us());
                if let Some(offset) = self.tracker.acknowledged(&tp, ack.offset) {
                    self.store(&tp, offset);
                }
            }
            Err(err) => {
                self.metrics.quarantine_failures.get_or_create(&TopicLabels { topic: tp.0.to_string() }).inc();
                if let Some(kind) = ack.denied {
                    access::report(&self.health, &self.metrics, kind, &err);
                }
                warn!(topic = %tp.0, partition = tp.1, offset = ack.offset, error = %err, "quarantine write failed; pausing the partition");
                self.block(&tp.0.clone(), tp.1, ack.offset, BlockReason::QuarantineFailed);
            }
        }
        self.metrics.quarantine_in_flight.set(self.tracker.in_flight() as i64);
    }

    /// Exactly-once mode: waits for every copy's acknowledgement (so each
    /// copy's source offset is recorded), then commits the transaction; if
    /// it was aborted instead, rewinds (`taken`: see [`Ingest::rewind`]).
    fn commit_transaction(&mut self, when: &'static str, taken: &mut Vec<Polled<'_>>) {
        let Some(transactions) = self.transactions.clone() else { return };
        self.quarantine.flush(QUARANTINE_FLUSH_TIMEOUT);
        self.drain_acks();
        if transactions.commit(&self.consumer, when) == Committed::Aborted {
            self.rewind(taken);
        }
    }

    /// After an aborted transaction: drops the aborted copies'
    /// acknowledgements, the records in `taken` (taken ahead, before the
    /// seek) and every pending partition state, and seeks each assigned
    /// partition back to its committed offset, so the aborted work is done
    /// again (nothing lost, nothing quarantined twice).
    fn rewind(&mut self, taken: &mut Vec<Polled<'_>>) {
        taken.clear();
        self.transactions.as_ref().map(|t| t.take_rewind());
        self.quarantine.flush(QUARANTINE_FLUSH_TIMEOUT);
        while self.acks.try_recv().is_ok() {}
        let assignment = match self.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(err) => {
                warn!(error = %err, "rewind: reading the assignment failed");
                return;
            }
        };
        let committed = match self.consumer.committed_offsets(assignment, Duration::from_secs(10)) {
            Ok(committed) => committed,
            Err(err) => {
                // Without the committed offsets the consumer cannot rewind
                // safely: stop, and let the restart resume from them.
                error!(error = %err, "rewind: reading the committed offsets failed; stopping");
                if let Some(transactions) = &self.transactions {
                    transactions.fail();
                }
                return;
            }
        };
        for element in committed.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let tp = self.topic_partition(topic, partition);
            self.tracker.forget(&tp);
            let offset = match element.offset() {
                Offset::Offset(offset) => Offset::Offset(offset),
                // Nothing committed yet: where auto.offset.reset starts.
                _ => self.reset_offset,
            };
            if let Err(err) = self.consumer.seek(topic, partition, offset, Duration::from_secs(1)) {
                warn!(topic, partition, error = %err, "rewind: seek failed");
            }
            let mut list = TopicPartitionList::new();
            list.add_partition(topic, partition);
            if let Err(err) = self.consumer.resume(&list) {
                warn!(topic, partition, error = %err, "rewind: resume failed");
            }
        }
        info!(partitions = committed.count(), "partitions rewound to their committed offsets");
        self.update_paused();
    }

    /// Pauses a partition at `offset`; it is retried with exponential backoff.
    fn block(&mut self, topic: &str, partition: i32, offset: i64, reason: BlockReason) {
        let tp = self.topic_partition(topic, partition);
        let base = match reason {
            BlockReason::SchemaUnavailable => SCHEMA_RETRY,
            BlockReason::QuarantineFailed => self.quarantine_retry,
        };
        let attempts = self.tracker.attempts(&tp).min(16);
        let backoff = base.saturating_mul(1 << attempts).min(MAX_RETRY);
        let blocked = self.tracker.block(&tp, offset, reason, Instant::now() + backoff);
        if blocked.attempts == 1 || blocked.attempts.is_multiple_of(10) {
            info!(
                topic,
                partition,
                offset = blocked.offset,
                reason = reason.as_str(),
                attempts = blocked.attempts,
                "partition paused"
            );
        }
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        if let Err(err) = self.consumer.pause(&list) {
            warn!(topic, partition, error = %err, "pause failed");
        }
        self.update_paused();
    }

    /// Seeks paused partitions back to their block point and resumes them.
    /// Their records in `taken` (taken before the block was retried, so
    /// from before the seek) are dropped: they will be read again.
    fn retry_due(&mut self, now: Instant, taken: &mut Vec<Polled<'_>>) {
        let due = self.tracker.due(now);
        if due.is_empty() {
            return;
        }
        drop_taken(taken, |topic, partition| due.iter().any(|((t, p), _)| **t == *topic && *p == partition));
        for ((topic, partition), offset) in due {
            if let Err(err) = self.consumer.seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(1)) {
                // The partition may have been revoked meanwhile; its next owner starts from the committed offset.
                warn!(topic = %topic, partition, offset, error = %err, "seek failed");
            }
            let mut list = TopicPartitionList::new();
            list.add_partition(&topic, partition);
            if let Err(err) = self.consumer.resume(&list) {
                warn!(topic = %topic, partition, error = %err, "resume failed");
            }
        }
        self.update_paused();
    }

    /// Forgets the partitions revoked since the last call, and drops their
    /// records in `taken`: their next owner reads them from the committed offset.
    fn forget_revoked(&mut self, taken: &mut Vec<Polled<'_>>) {
        let revoked = std::mem::take(&mut *self.revoked.lock().expect("revoked list lock poisoned"));
        if revoked.is_empty() {
            return;
        }
        let dropped = drop_taken(taken, |topic, partition| revoked.iter().any(|(t, p)| t == topic && *p == partition));
        if dropped > 0 {
            info!(records = dropped, "records taken before the revocation left to the next owner");
        }
        for (topic, partition) in revoked {
            let tp = self.topic_partition(&topic, partition);
            self.tracker.forget(&tp);
        }
        self.update_paused();
    }

    fn update_paused(&self) {
        for reason in [BlockReason::SchemaUnavailable, BlockReason::QuarantineFailed] {
            let count = self.tracker.blocked_count(reason);
            self.metrics.paused_partitions.get_or_create(&PauseLabels { reason: reason.as_str() }).set(count as i64);
            if reason == BlockReason::QuarantineFailed {
                self.health.set_quarantine_blocked(count);
            }
        }
        self.metrics.quarantine_in_flight.set(self.tracker.in_flight() as i64);
    }

    /// Copies the schema cache's counters into the metrics, once a second.
    fn update_stats(&mut self) {
        self.clock = Clock::new();
        self.correlation.tick(self.clock.anchor_unix_us / 1_000);
        let stats = self.cache.stats();
        let now = [stats.hits, stats.misses, stats.fetch_ok, stats.fetch_not_found, stats.fetch_unavailable];
        let names = [("hit", true), ("miss", true), ("ok", false), ("not_found", false), ("unavailable", false)];
        for ((value, seen), (result, is_lookup)) in now.iter().zip(self.cache_seen.iter_mut()).zip(names) {
            let family = if is_lookup { &self.metrics.schema_cache_lookups } else { &self.metrics.schema_fetches };
            family.get_or_create(&crate::metrics::ResultLabels { result }).inc_by(value.saturating_sub(*seen));
            *seen = *value;
        }
        self.metrics.schema_cache_schemas.set(stats.cached_schemas as i64);
        let now = self.clock.unix_us(Instant::now());
        self.cost.tick(now);
        self.dlq.tick(now);
        let available = self.cache.registry_available();
        self.metrics.schema_registry_up.set(i64::from(available));
        self.health.set_registry_down(!available);
    }

    fn set_kafka_reachable(&self, reachable: bool) {
        if reachable && self.health.kafka_down() {
            info!("kafka brokers reachable again");
        }
        self.health.set_kafka_down(!reachable);
        self.metrics.kafka_up.set(i64::from(reachable));
    }

    /// While Kafka stays silent, adds the bootstrap servers to every client
    /// again, in case they lost every broker (see `rebootstrap.rs`).
    fn rebootstrap_if_due(&mut self, answered: bool) {
        let Some(bootstrap) = self.rebootstrap.due(answered, Instant::now()) else { return };
        warn!(servers = %bootstrap, "kafka has not answered for a while: adding the bootstrap servers to the clients again");
        bootstrap.add_to(self.consumer.client());
        self.quarantine.add_brokers(bootstrap);
    }

    /// Once a second: while quarantine copies wait (or partitions wait to
    /// retry a failed copy) and none was acknowledged, adds the bootstrap
    /// servers to the quarantine's clients again on the re-bootstrap
    /// schedule: the quarantine producer can lose every broker while the
    /// consumer keeps its own.
    fn check_quarantine_clients(&mut self) {
        let waiting = self.tracker.in_flight() > 0 || self.tracker.blocked_count(BlockReason::QuarantineFailed) > 0;
        // A refused write (ACLs) is reported as such, not as a lost broker.
        let answered = std::mem::take(&mut self.quarantine_acked) || !waiting || self.health.access.any();
        let Some(bootstrap) = self.quarantine_rebootstrap.due(answered, Instant::now()) else { return };
        warn!(
            servers = %bootstrap,
            in_flight = self.tracker.in_flight(),
            "quarantine copies go unacknowledged: adding the bootstrap servers to the clients again"
        );
        self.quarantine.add_brokers(bootstrap);
    }

    /// Re-reads the topic list and resubscribes if the watched set changed.
    /// Returns false when the listing failed.
    fn refresh_subscription(&mut self) -> bool {
        let metadata = match self.consumer.fetch_metadata(None, METADATA_TIMEOUT) {
            Ok(metadata) => metadata,
            Err(err) => {
                self.metrics.record_consumer_error(ConsumerErrorKind::metadata);
                self.set_kafka_reachable(false);
                warn!(error = %err, "listing topics failed");
                return false;
            }
        };
        self.set_kafka_reachable(true);
        for topic in metadata.topics() {
            self.partition_counts.insert(topic.name().to_string(), topic.partitions().len() as i32);
        }
        let watched = self.filter.select(metadata.topics().iter().map(|t| t.name()));
        if watched == self.subscription {
            return true;
        }
        self.metrics.watched_topics.set(watched.len() as i64);
        for topic in &watched {
            if topics::names_agents(topic) {
                self.metrics.topic_naming_warnings.get_or_create(&TopicLabels { topic: topic.clone() }).set(1);
            }
        }
        let result = if watched.is_empty() {
            self.consumer.unsubscribe();
            Ok(())
        } else {
            let names: Vec<&str> = watched.iter().map(String::as_str).collect();
            self.consumer.subscribe(&names)
        };
        match result {
            Ok(()) => {
                let added = watched.iter().filter(|t| !self.subscription.contains(t)).count();
                let removed = self.subscription.iter().filter(|t| !watched.contains(t)).count();
                info!(topics = watched.len(), added, removed, "subscription updated");
                self.subscription = watched;
                true
            }
            Err(err) => {
                self.metrics.record_consumer_error(ConsumerErrorKind::subscribe);
                error!(error = %err, "subscribe failed");
                false
            }
        }
    }
}

/// librdkafka's version and the features compiled into it (TLS, SASL
/// mechanisms, compression codecs), for the start-up banner.
pub fn librdkafka_build() -> (String, String) {
    let version = rdkafka::util::get_rdkafka_version().1;
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|config| config.get("builtin.features"))
        .unwrap_or_else(|_| "unknown".to_string());
    (version, features)
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_is_built_with_tls_sasl_and_compression() {
        let (version, features) = librdkafka_build();
        assert!(version.starts_with('2'), "librdkafka {version}");
        let features: Vec<&str> = features.split(',').collect();
        for needed in
            ["ssl", "sasl_plain", "sasl_scram", "sasl_gssapi", "sasl_oauthbearer", "zstd", "lz4", "snappy", "gzip"]
        {
            assert!(features.contains(&needed), "librdkafka lacks {needed}: {features:?}");
        }
    }

    #[test]
    fn emptied_slots_keep_their_allocation_from_batch_to_batch() {
        let kept: Vec<OnceLock<Prepared<'static>>> = Vec::with_capacity(MAX_BATCH);
        let allocation = kept.as_ptr() as usize;
        let mut slots = relabel(kept);
        slots.resize_with(MAX_BATCH, OnceLock::new);
        let kept: Vec<OnceLock<Prepared<'static>>> = relabel(slots);
        assert!(kept.is_empty());
        assert_eq!(kept.as_ptr() as usize, allocation);
        assert!(kept.capacity() >= MAX_BATCH);
    }

    #[test]
    fn header_name_bits_tell_the_names_read_on_every_record_apart() {
        // A record carrying only a `traceparent` (the common case) has its
        // schema-ID lookups answered from the summary.
        let names = ["__value_schema_id", "__key_schema_id", "traceparent"];
        let bits: Vec<u64> = names.iter().map(|n| name_bit(n.as_bytes())).collect();
        for (name, bit) in names.iter().zip(&bits) {
            assert_eq!(bit.count_ones(), 1, "{name}");
        }
        assert!(bits[0] != bits[2] && bits[1] != bits[2], "{bits:?}");
        // Short, empty and long names all get a bit.
        for name in ["", "a", "ce_type", "a-header-name-longer-than-sixteen-bytes"] {
            assert_eq!(name_bit(name.as_bytes()).count_ones(), 1, "{name:?}");
        }
    }
}
