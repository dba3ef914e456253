//! `pipewarden simulate`: demo agent traffic on a real Kafka cluster.
//!
//! Runs two LLM-agent pipelines as real Kafka agents, each agent its own
//! consumer group (`<prefix>sim.<agent>`) that consumes the previous event type
//! and produces the next one, so consumer lag, poison records and dead letters
//! are all real:
//!
//! * support triage: `intake-agent` → `support.ticket.created` →
//!   `classifier-agent` → `support.ticket.classified` → `knowledge-agent` →
//!   `support.answer.drafted` → `qa-agent` → `support.answer.approved` (or the
//!   terminal `support.answer.rejected`) → `delivery-agent` →
//!   `support.answer.sent`; dead letters go to `support.dlq`.
//! * document processing: `doc-extractor` → `doc.extracted` → `doc-validator`
//!   → `doc.validation.failed` (terminal failure) or `doc.validated` →
//!   `entity-resolver` → `doc.entities.resolved`; dead letters go to `doc.dlq`.
//!   The intermediate `doc.validated` hop gives the entity resolver its own
//!   consumer group (and lag) instead of folding it into the validator.
//!
//! Every topic is named after the event type it carries (plus `--topic-prefix`).

mod agent;
mod cli;
mod config;
mod event;
mod kafka;
mod payload;
mod poison;
mod source;
mod stats;
pub(crate) mod topology;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::Producer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

pub use cli::{Scenario, SimulateArgs};

use agent::Shared;
use cli::Plan;
use topology::Agent;

/// Interval of the one-line summary.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Runs the simulator until Ctrl-C/SIGTERM, `--duration`, or (with
/// `--max-tickets`) until every started item has drained through the pipeline.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let plan = Plan::new(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("simulate")
        .build()
        .context("building tokio runtime")?;
    runtime.block_on(run_plan(plan))
}

/// The consuming agents and a client to measure their lag.
struct Watchlist {
    observer: BaseConsumer,
    agents: Vec<Watched>,
}

/// A consuming agent as seen by the supervisor (for lag).
struct Watched {
    agent: Agent,
    consumer: Arc<StreamConsumer>,
    topic: String,
}

async fn run_plan(plan: Plan) -> anyhow::Result<()> {
    let args = &plan.args;
    let topics = plan.topics();
    tracing::info!(bootstrap = %args.bootstrap, scenario = ?args.scenario, topics = %topics.join(","),
        "starting simulator");
    kafka::create_topics(&args.bootstrap, &topics, args.partitions).await?;

    let shared = Arc::new(Shared {
        producer: kafka::producer(&args.bootstrap)?,
        prefix: args.topic_prefix.clone(),
        stats: stats::Stats::default(),
        ratios: plan.ratios,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sources: Vec<JoinHandle<()>> = Vec::new();
    let mut consumers: Vec<JoinHandle<()>> = Vec::new();
    let mut watched: Vec<Watched> = Vec::new();
    let mut finite = true;
    for &agent in &plan.agents {
        let profile = plan.profiles.get(agent).clone();
        match agent.input() {
            None => {
                let (rate, max) = plan.source_limits(agent);
                if rate <= 0.0 {
                    continue;
                }
                finite &= max.is_some();
                let fut = source::run_source(agent, profile, rate, max, shared.clone(), stop_rx.clone());
                sources.push(tokio::spawn(fut));
            }
            Some(input) => {
                let group = kafka::group_id(&args.topic_prefix, agent);
                let topic = plan.topic(input.as_str());
                let consumer = Arc::new(kafka::consumer(&args.bootstrap, &group)?);
                consumer.subscribe(&[&topic]).with_context(|| format!("subscribing {group} to {topic}"))?;
                tracing::info!(agent = agent.name(), group = %group, topic = %topic, "subscribed");
                let fut = agent::run_consumer(agent, profile, shared.clone(), consumer.clone(), stop_rx.clone());
                consumers.push(tokio::spawn(fut));
                watched.push(Watched { agent, consumer, topic });
            }
        }
    }
    let watched = Arc::new(Watchlist { observer: kafka::observer(&args.bootstrap)?, agents: watched });

    let deadline = (args.duration > 0).then(|| Instant::now() + Duration::from_secs(args.duration));
    let mut summary = tokio::time::interval_at(Instant::now() + SUMMARY_EVERY, SUMMARY_EVERY);
    summary.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut drain_check = tokio::time::interval(Duration::from_secs(1));
    drain_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let reason = loop {
        tokio::select! {
            _ = &mut signal => break "signal",
            _ = sleep_until_opt(deadline) => break "duration elapsed",
            _ = summary.tick() => {
                let lags = measure_lags(watched.clone()).await;
                shared.stats.log_summary(&format_lags(&lags));
            }
            // The precondition must not depend on the sources: it is only
            // re-evaluated when some branch wakes the loop.
            _ = drain_check.tick(), if finite => {
                if !sources.iter().all(|s| s.is_finished()) {
                    continue;
                }
                let lags = measure_lags(watched.clone()).await;
                tracing::debug!(lag = %format_lags(&lags), "waiting for the pipeline to drain");
                if lags.iter().all(|(_, lag)| *lag == Some(0)) {
                    break "pipeline drained";
                }
            }
        }
    };
    tracing::info!(reason, "stopping simulator");
    let _ = stop_tx.send(true);
    for task in sources.into_iter().chain(consumers) {
        if tokio::time::timeout(Duration::from_secs(30), task).await.is_err() {
            tracing::warn!("agent did not stop within 30s");
        }
    }
    let flushed = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || shared.producer.flush(Duration::from_secs(10))).await
    };
    if let Ok(Err(e)) = flushed {
        tracing::warn!(error = %e, "producer flush failed");
    }
    let lags = measure_lags(watched.clone()).await;
    shared.stats.log_summary(&format_lags(&lags));
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Lag of every consuming agent, measured upstream-first so that a zero lag
/// upstream is observed before its outputs are checked downstream.
async fn measure_lags(watched: Arc<Watchlist>) -> Vec<(Agent, Option<i64>)> {
    let result = tokio::task::spawn_blocking(move || {
        watched
            .agents
            .iter()
            .map(|w| match kafka::group_lag(&watched.observer, &w.consumer, &w.topic) {
                Ok(lag) => (w.agent, Some(lag)),
                Err(e) => {
                    tracing::debug!(agent = w.agent.name(), error = %e, "lag measurement failed");
                    (w.agent, None)
                }
            })
            .collect()
    })
    .await;
    result.unwrap_or_default()
}

fn format_lags(lags: &[(Agent, Option<i64>)]) -> String {
    let parts: Vec<String> = lags
        .iter()
        .map(|(a, lag)| match lag {
            Some(l) => format!("{}={l}", a.name()),
            None => format!("{}=?", a.name()),
        })
        .collect();
    parts.join(" ")
}
