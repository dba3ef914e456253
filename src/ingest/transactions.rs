//! Exactly-once quarantine (`quarantine.transactional = true`): quarantine
//! copies and the consumer's offsets are committed in one Kafka transaction.
//!
//! In the default at-least-once mode, a crash between a copy's
//! acknowledgement and the next offset commit makes the restarted consumer
//! quarantine that record again (readers drop duplicates by the origin
//! headers). In transactional mode the quarantine producer opens a
//! transaction on its first copy, the ingest loop records every processed
//! offset here, and every `kafka.commit_interval_ms` (before a revoke, and
//! at shutdown) the offsets are sent to the transaction
//! (`send_offsets_to_transaction`, KIP-447) and the transaction is
//! committed. A crash leaves the transaction open; the restarted replica's
//! `init_transactions` with the same `transactional.id` aborts it, and
//! consumption resumes from the offsets of the last committed transaction,
//! so a `read_committed` reader of the quarantine topic sees each poison
//! record exactly once.
//!
//! A commit is only safe when every copy in the transaction has its source
//! offset among the recorded ones. The loop guarantees that by flushing the
//! producer and handling every acknowledgement before it commits. In a
//! rebalance callback it cannot; there, if copies are still unhandled, the
//! transaction is aborted instead and the loop rewinds its partitions to the
//! committed offsets (nothing is lost; the aborted work is redone).
//! See <https://kafka.apache.org/documentation/#semantics> and KIP-447
//! (<https://cwiki.apache.org/confluence/display/KAFKA/KIP-447%3A+Producer+scalability+for+exactly+once+semantics>).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::Offset;
use tracing::{debug, error, info, warn};

use crate::metrics::{CommitResult, Metrics};
use crate::quarantine::QuarantineProducer;

/// How long a transaction operation (init, send offsets, commit, abort) may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// What a commit attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    /// Nothing was processed since the last commit.
    Nothing,
    Yes,
    /// The transaction was aborted: the loop must rewind to the committed offsets.
    Aborted,
    /// The producer is fenced or broken: the process must stop (and be restarted).
    Fatal,
}

struct State {
    open: bool,
    /// Next offset to commit per partition: every record before it is done.
    offsets: HashMap<(Arc<str>, i32), i64>,
    /// Copies sent in the open transaction whose acknowledgement the ingest
    /// loop has not handled yet (their source offsets are not recorded).
    unhandled_copies: usize,
    /// Set by an abort; the loop rewinds its partitions and clears it.
    rewind: bool,
    /// Set when the producer can no longer be used; the loop stops.
    fatal: bool,
}

pub struct Transactions {
    producer: Arc<QuarantineProducer>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

impl Transactions {
    /// Registers the `transactional.id` with the broker; this fences a
    /// previous instance with the same id and aborts its open transaction.
    pub fn init(producer: Arc<QuarantineProducer>, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(|err| anyhow::anyhow!("failed to initialise quarantine transactions: {err}"))?;
        info!("quarantine transactions initialised (exactly-once mode)");
        let state = State { open: false, offsets: HashMap::new(), unhandled_copies: 0, rewind: false, fatal: false };
        Ok(Self { producer, metrics, state: Mutex::new(state) })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Only the ingest thread touches this (the loop and librdkafka
        // callbacks it runs inside poll), so the lock is never contended.
        self.state.lock().expect("transaction state lock poisoned")
    }

    /// Called before a copy is sent: opens a transaction if none is open.
    pub fn before_send(&self) -> Result<(), String> {
        let mut state = self.state();
        if !state.open {
            self.producer.begin_transaction().map_err(|err| err.to_string())?;
            state.open = true;
        }
        state.unhandled_copies += 1;
        Ok(())
    }

    /// A sent copy could not be queued after all.
    pub fn send_failed(&self) {
        let mut state = self.state();
        state.unhandled_copies = state.unhandled_copies.saturating_sub(1);
    }

    /// The loop handled a copy's acknowledgement.
    pub fn copy_handled(&self) {
        let mut state = self.state();
        state.unhandled_copies = state.unhandled_copies.saturating_sub(1);
    }

    /// Every record of the partition up to and including `offset` is done.
    pub fn processed(&self, topic: &Arc<str>, partition: i32, offset: i64) {
        let mut state = self.state();
        match state.offsets.get_mut(&(topic.clone(), partition)) {
            Some(next) => *next = (*next).max(offset + 1),
            None => {
                state.offsets.insert((topic.clone(), partition), offset + 1);
            }
        }
    }

    /// Whether the producer failed fatally (the process must restart).
    pub fn failed(&self) -> bool {
        self.state().fatal
    }

    /// Marks the producer unusable: the loop stops.
    pub fn fail(&self) {
        self.state().fatal = true;
    }

    /// Whether a rewind is due (after an abort); clears the flag.
    pub fn take_rewind(&self) -> bool {
        std::mem::take(&mut self.state().rewind)
    }

    /// Commits the recorded offsets with the open transaction's copies. The
    /// caller has flushed the producer and handled every acknowledgement.
    pub fn commit<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, when: &'static str) -> Committed {
        let mut state = self.state();
        if state.unhandled_copies > 0 {
            // Copies whose offsets are not recorded: committing now would let
            // a crash quarantine them twice.
            warn!(when, unhandled = state.unhandled_copies, "quarantine copies unhandled; aborting the transaction");
            return self.abort(&mut state, when);
        }
        if state.offsets.is_empty() && !state.open {
            return Committed::Nothing;
        }
        let Some(group) = consumer.group_metadata() else {
            warn!(when, "no consumer group metadata; aborting the transaction");
            return self.abort(&mut state, when);
        };
        let offsets = crate::lag::client::offset_list(
            state.offsets.iter().map(|((topic, partition), next)| (topic.as_ref(), *partition, Offset::Offset(*next))),
        );
        let result = (|| {
            if !state.open {
                self.producer.begin_transaction()?;
                state.open = true;
            }
            if offsets.count() > 0 {
                self.producer.send_offsets_to_transaction(&offsets, &group, TRANSACTION_TIMEOUT)?;
            }
            self.producer.commit_transaction(TRANSACTION_TIMEOUT)
        })();
        match result {
            Ok(()) => {
                state.open = false;
                state.offsets.clear();
                self.metrics.record_commit(CommitResult::success);
                debug!(when, partitions = offsets.count(), "transaction committed");
                Committed::Yes
            }
            Err(err) => {
                self.metrics.record_commit(CommitResult::failure);
                if is_fatal(&err) {
                    state.fatal = true;
                    error!(when, error = %err, "quarantine transaction failed fatally (fenced by another instance with the same transactional.id?)");
                    return Committed::Fatal;
                }
                warn!(when, error = %err, "transaction commit failed; aborting");
                self.abort(&mut state, when)
            }
        }
    }

    fn abort(&self, state: &mut State, when: &'static str) -> Committed {
        state.offsets.clear();
        state.unhandled_copies = 0;
        state.rewind = true;
        if !state.open {
            return Committed::Aborted;
        }
        state.open = false;
        match self.producer.abort_transaction(TRANSACTION_TIMEOUT) {
            Ok(()) => {
                info!(when, "transaction aborted; partitions rewind to their committed offsets");
                Committed::Aborted
            }
            Err(err) => {
                state.fatal = true;
                error!(when, error = %err, "aborting the quarantine transaction failed");
                Committed::Fatal
            }
        }
    }
}

fn is_fatal(err: &KafkaError) -> bool {
    match err {
        KafkaError::Transaction(inner) => inner.is_fatal(),
        _ => false,
    }
}
