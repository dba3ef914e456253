//! Consuming agents: validate the previous event, "think" for a jittered
//! delay, then emit the next event, a poison record, or a dead-letter record.
//! Also the shared emit path used by the sources in `source.rs`.
//!
//! Concurrency choice: each consuming agent keeps a bounded, ordered window of
//! in-flight records (one tokio task per record, at most `concurrency` of
//! them). The window is drained from the front, so offsets are stored strictly
//! in receive order and only after the record's output has been delivered;
//! auto-commit then commits the stored offsets. With the default window of 64
//! the knowledge agent (~1.5 s per record) sustains ~40 records/s, well above
//! the default 5 tickets/s (and the demo's 20/s), so lag stays near zero
//! unless an agent is made slow (`--slow-agent` sets its window to 1 and
//! multiplies its delay).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::AgentProfile;
use super::event::{new_span_id, sample_usage, Event, EventType};
use super::kafka::{dlq_headers, event_headers, json_content_type, send, topic_name};
use super::payload;
use super::poison::{make_poison, validate, DlqReason, PoisonKind};
use super::stats::Stats;
use super::topology::Agent;

/// Probabilities that shape the traffic.
#[derive(Debug, Clone, Copy)]
pub struct Ratios {
    pub poison: f64,
    pub failure: f64,
    pub reject: f64,
    pub doc_fail: f64,
}

/// State shared by every agent of one simulator run.
pub struct Shared {
    pub producer: FutureProducer,
    pub prefix: String,
    pub stats: Stats,
    pub ratios: Ratios,
}

pub(super) fn rng() -> SmallRng {
    SmallRng::from_rng(&mut rand::rng())
}

/// Sleeps for `d` unless shutdown is signalled first (then returns false).
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.changed() => false,
    }
}

/// Produces `event` — or, with probability `--poison-ratio`, a poison record
/// in its place — on the event type's topic.
pub(super) async fn emit(shared: &Shared, rng: &mut SmallRng, event_type: EventType, event: Event) {
    let topic = topic_name(&shared.prefix, event_type.as_str());
    let trace_id = event.trace_id.clone();
    let headers = event_headers(&trace_id, &new_span_id(rng));
    let (payload, key, headers, poison) = if rng.random_bool(shared.ratios.poison) {
        let p = make_poison(rng, &event);
        // A producer that lost the trace id also lost its trace context
        // (no key, no traceparent).
        let (key, headers) = match p.kind {
            PoisonKind::MissingTraceId => (None, json_content_type()),
            _ => (Some(trace_id.as_bytes()), headers),
        };
        (p.bytes, key, headers, Some(p.kind))
    } else {
        (event.to_json(), Some(trace_id.as_bytes()), headers, None)
    };
    match send(&shared.producer, &topic, key, &payload, headers).await {
        Ok(()) => match poison {
            Some(kind) => {
                shared.stats.poison_emitted.fetch_add(1, Relaxed);
                tracing::debug!(topic = %topic, kind = kind.as_str(), producer = event.producer, "emitted poison record");
            }
            None => shared.stats.emitted(event_type),
        },
        Err(e) => {
            shared.stats.produce_errors.fetch_add(1, Relaxed);
            tracing::warn!(topic = %topic, error = %e, "produce failed");
        }
    }
}

/// What an agent decides to emit for a valid input.
fn react(
    agent: Agent,
    rng: &mut SmallRng,
    ratios: &Ratios,
    input: &serde_json::Value,
) -> (EventType, serde_json::Value) {
    match agent {
        Agent::Classifier => (EventType::TicketClassified, payload::ticket_classified(rng, input)),
        Agent::Knowledge => (EventType::AnswerDrafted, payload::answer_drafted(rng, input)),
        Agent::Qa => payload::qa_verdict(rng, input, ratios.reject),
        Agent::Delivery => (EventType::AnswerSent, payload::answer_sent(rng, input)),
        Agent::DocValidator => payload::doc_validation(rng, input, ratios.doc_fail),
        Agent::EntityResolver => (EventType::DocEntitiesResolved, payload::entities_resolved(rng, input)),
        Agent::Intake => (EventType::TicketCreated, payload::ticket_created(rng)),
        Agent::DocExtractor => (EventType::DocExtracted, payload::doc_extracted(rng)),
    }
}

/// Sends the original record to the flow's dead-letter topic.
async fn dead_letter(shared: &Shared, agent: Agent, msg: &OwnedMessage, reason: DlqReason) {
    let dlq = topic_name(&shared.prefix, agent.flow().dlq_topic());
    let headers = dlq_headers(msg.headers(), reason.as_str(), msg.topic(), msg.partition(), msg.offset(), agent);
    let payload = msg.payload().unwrap_or_default();
    match send(&shared.producer, &dlq, msg.key(), payload, headers).await {
        Ok(()) => {
            shared.stats.dlq(reason);
            tracing::debug!(
                agent = agent.name(),
                reason = reason.as_str(),
                topic = msg.topic(),
                partition = msg.partition(),
                offset = msg.offset(),
                "sent record to dead-letter topic"
            );
        }
        Err(e) => {
            shared.stats.produce_errors.fetch_add(1, Relaxed);
            tracing::warn!(topic = %dlq, error = %e, "dead-letter produce failed");
        }
    }
}

/// Handles one record. Returns false if interrupted by shutdown before the
/// outcome was produced (its offset must then not be stored).
async fn process(
    agent: Agent,
    input_type: EventType,
    profile: Arc<AgentProfile>,
    shared: Arc<Shared>,
    msg: OwnedMessage,
    mut shutdown: watch::Receiver<bool>,
) -> bool {
    let mut rng = rng();
    let incoming = match validate(msg.payload(), input_type) {
        Ok(incoming) => incoming,
        Err(reason) => {
            dead_letter(&shared, agent, &msg, reason).await;
            return true;
        }
    };
    let failure = rng.random_bool(shared.ratios.failure).then(|| {
        if profile.llm.is_some() && rng.random_bool(0.5) {
            DlqReason::LlmTimeout
        } else {
            DlqReason::ProcessingFailed
        }
    });
    let mut delay = profile.sample_delay(&mut rng);
    if failure == Some(DlqReason::LlmTimeout) {
        delay *= 2; // the agent waited for the model before giving up
    }
    if !sleep_or_shutdown(delay, &mut shutdown).await {
        return false;
    }
    if let Some(reason) = failure {
        dead_letter(&shared, agent, &msg, reason).await;
        return true;
    }
    let (event_type, data) = react(agent, &mut rng, &shared.ratios, &incoming.data);
    let llm = profile.llm.as_ref().map(|l| sample_usage(&mut rng, l));
    let event = Event::new(&mut rng, event_type, agent, &incoming.trace_id, Some(&incoming.event_id), llm, data);
    emit(&shared, &mut rng, event_type, event).await;
    true
}

/// An in-flight record: its task and where it came from.
struct InFlight {
    task: JoinHandle<bool>,
    topic: String,
    partition: i32,
    offset: i64,
}

/// Consuming agent main loop; returns after shutdown, having committed the
/// offsets of every record whose outcome was produced.
pub async fn run_consumer(
    agent: Agent,
    profile: AgentProfile,
    shared: Arc<Shared>,
    consumer: Arc<StreamConsumer>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(input_type) = agent.input() else {
        return;
    };
    let window = profile.concurrency.max(1);
    let profile = Arc::new(profile);
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(window);
    // Partitions with an interrupted record: their later offsets must not be
    // stored either (bounded by the partition count).
    let mut blocked: Vec<i32> = Vec::new();
    let finish = |f: InFlight, done: bool, blocked: &mut Vec<i32>| {
        if !done && !blocked.contains(&f.partition) {
            blocked.push(f.partition);
        }
        if blocked.contains(&f.partition) {
            return;
        }
        if let Err(e) = consumer.store_offset(&f.topic, f.partition, f.offset) {
            // Typically the partition was revoked by a rebalance meanwhile.
            tracing::debug!(agent = agent.name(), error = %e, "could not store offset");
        }
    };
    tracing::info!(
        agent = agent.name(),
        input = input_type.as_str(),
        delay_ms = profile.delay_ms,
        concurrency = window,
        "agent started"
    );
    loop {
        if *shutdown.borrow() {
            break;
        }
        if in_flight.len() >= window {
            if let Some(mut f) = in_flight.pop_front() {
                let done = (&mut f.task).await.unwrap_or(true);
                finish(f, done, &mut blocked);
            }
            continue;
        }
        tokio::select! {
            done = async {
                match in_flight.front_mut() {
                    Some(f) => (&mut f.task).await.unwrap_or(true),
                    None => std::future::pending().await,
                }
            } => {
                if let Some(f) = in_flight.pop_front() {
                    finish(f, done, &mut blocked);
                }
            }
            received = consumer.recv() => match received {
                Ok(m) => {
                    let msg = m.detach();
                    let (topic, partition, offset) = (msg.topic().to_owned(), msg.partition(), msg.offset());
                    let task = tokio::spawn(process(agent, input_type, profile.clone(), shared.clone(), msg, shutdown.clone()));
                    in_flight.push_back(InFlight { task, topic, partition, offset });
                }
                Err(e) => {
                    tracing::warn!(agent = agent.name(), error = %e, "consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    // Shutdown: in-flight tasks see the signal and return quickly.
    while let Some(mut f) = in_flight.pop_front() {
        let done = (&mut f.task).await.unwrap_or(true);
        finish(f, done, &mut blocked);
    }
    let consumer2 = consumer.clone();
    let committed = tokio::task::spawn_blocking(move || consumer2.commit_consumer_state(CommitMode::Sync)).await;
    match committed {
        Ok(Ok(()))
        | Ok(Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset))) => {}
        Ok(Err(e)) => tracing::debug!(agent = agent.name(), error = %e, "final commit failed"),
        Err(e) => tracing::debug!(agent = agent.name(), error = %e, "final commit task failed"),
    }
    tracing::info!(agent = agent.name(), "agent stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::config::default_profile;
    use crate::simulate::event::new_trace_id;

    #[test]
    fn every_agent_emits_a_contract_event_of_realistic_size() {
        let mut rng = SmallRng::seed_from_u64(9);
        let ratios = Ratios { poison: 0.0, failure: 0.0, reject: 0.5, doc_fail: 0.5 };
        for _ in 0..200 {
            let ticket = payload::ticket_created(&mut rng);
            let doc = payload::doc_extracted(&mut rng);
            let mut input = ticket.clone();
            let mut doc_input = doc.clone();
            for agent in Agent::ALL {
                let source_input = if agent.flow() == super::super::topology::Flow::Doc { &doc_input } else { &input };
                let (t, data) = react(agent, &mut rng, &ratios, source_input);
                assert!(agent.outputs().contains(&t), "{agent:?} emitted {t:?}");
                let profile = default_profile(agent);
                let llm = profile.llm.as_ref().map(|l| sample_usage(&mut rng, l));
                let trace = new_trace_id(&mut rng);
                let ev = Event::new(&mut rng, t, agent, &trace, Some(&"ab".repeat(16)), llm, data.clone());
                let len = ev.to_json().len();
                // LLM-backed events carry their usage twice (the demo's `llm`
                // summary and the provider's own `usage` shape): up to 1 kB.
                assert!(
                    (300..=1000).contains(&len),
                    "{} is {len} bytes: {}",
                    t.as_str(),
                    String::from_utf8_lossy(&ev.to_json())
                );
                if t == EventType::DocValidated {
                    doc_input = data;
                } else if agent.flow() == super::super::topology::Flow::Support && t != EventType::AnswerRejected {
                    input = data;
                }
            }
        }
    }
}
