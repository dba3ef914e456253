//! Timer-driven source agents: `intake-agent` starts a new support ticket and
//! `doc-extractor` a new document every `1/rate` seconds, each with a fresh
//! trace id.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::time::MissedTickBehavior;

use super::agent::{emit, rng, Shared};
use super::config::AgentProfile;
use super::event::{new_trace_id, sample_usage, Event};
use super::payload;
use super::topology::Agent;

/// Source agent: emits a new ticket / document every `1/rate` seconds until
/// `max` items were started or shutdown is signalled.
pub async fn run_source(
    agent: Agent,
    profile: AgentProfile,
    rate: f64,
    max: Option<u64>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    const MAX_IN_FLIGHT: u32 = 64;
    let event_type = agent.outputs()[0];
    let profile = Arc::new(profile);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut started = 0u64;
    tracing::info!(agent = agent.name(), rate, max = ?max, "source started");
    while max.is_none_or(|m| started < m) {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        started += 1;
        match agent {
            Agent::DocExtractor => shared.stats.docs_started.fetch_add(1, Relaxed),
            _ => shared.stats.tickets_started.fetch_add(1, Relaxed),
        };
        let (shared, profile) = (shared.clone(), profile.clone());
        tokio::spawn(async move {
            let mut rng = rng();
            let trace_id = new_trace_id(&mut rng);
            let data = match agent {
                Agent::DocExtractor => payload::doc_extracted(&mut rng),
                _ => payload::ticket_created(&mut rng),
            };
            let llm = profile.llm.as_ref().map(|l| sample_usage(&mut rng, l));
            let event = Event::new(&mut rng, event_type, agent, &trace_id, None, llm, data);
            emit(&shared, &mut rng, event_type, event).await;
            drop(permit);
        });
    }
    // Wait for the last records to be delivered.
    let _ = permits.acquire_many(MAX_IN_FLIGHT).await;
    tracing::info!(agent = agent.name(), started, "source finished");
}
