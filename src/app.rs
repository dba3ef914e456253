//! Wiring: build the stages from the configuration, start the ingest thread
//! and the HTTP server, and run the shutdown sequence (see `shutdown.rs`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{self, AppState};
use crate::ingest::{Health, Ingest};
use crate::lag::index::TimeIndex;
use crate::lag::{LagMonitor, LagShared};
use crate::metrics::Metrics;

/// Runs the daemon until SIGTERM/SIGINT; blocks the calling thread.
pub fn run(config: Config) -> anyhow::Result<()> {
    // One worker is plenty: the runtime only serves HTTP and waits for
    // signals; records are processed on the ingest thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pipewarden-rt")
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(serve(config, crate::shutdown::signal()))
}

/// Runs the daemon until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new(config.metrics.max_label_values));
    let health = Arc::new(Health::default());
    // Shared by the cost stage (topic budgets) and the correlator (flow budgets).
    let budgets = Arc::new(crate::cost::Budgets::new(&config, metrics.clone())?);
    let correlation = crate::correlate::scaleout::start(&config, metrics.clone(), budgets.clone())?;
    let lag_shared = Arc::new(LagShared::default());
    let time_index = Arc::new(TimeIndex::new(config.lag.index_points_per_partition));
    let mut ingest = Ingest::new(&config, metrics.clone(), health.clone(), correlation.input, budgets)?;
    let lag_monitor = if config.lag.enabled {
        ingest = ingest.with_time_index(time_index.clone());
        let monitor = LagMonitor::new(&config, time_index, lag_shared.clone(), metrics.clone())
            .context("failed to create the lag monitor's kafka client")?;
        Some(monitor)
    } else {
        None
    };
    let (listener, listen) =
        http::bind(config.http.listen).await.with_context(|| format!("failed to listen on {}", config.http.listen))?;

    let (librdkafka, librdkafka_features) = crate::ingest::librdkafka_build();
    let include: Vec<&str> = config.topics.include.iter().map(|r| r.as_str()).collect();
    let exclude: Vec<&str> = config.topics.exclude.iter().map(|r| r.as_str()).collect();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        brokers = %config.kafka.bootstrap_servers,
        group = %config.kafka.group_id,
        include = ?include,
        exclude = ?exclude,
        exclude_internal = config.topics.exclude_internal,
        listen = %listen,
        api_token_set = config.http.auth.api_token.is_some(),
        metrics_token_set = config.http.auth.metrics_token.is_some(),
        kafka_properties = ?config.kafka.properties,
        features = if config.lag.enabled {
            "ingest,envelope,validate,quarantine,metrics,cost,dlq,correlate,lag"
        } else {
            "ingest,envelope,validate,quarantine,metrics,cost,dlq,correlate"
        },
        prices = config.cost.prices.len() + config.cost.imported_prices.len(),
        budgets = config.cost.budgets.len(),
        flows = config.flows.len(),
        correlate = ?config.correlate.mode,
        schemas = %config.registry.url.clone().unwrap_or_else(|| format!("folder {}", config.registry.schemas_dir.display())),
        quarantine = %config.quarantine.topic_template,
        policies = config.policies.len(),
        librdkafka = %librdkafka,
        librdkafka_features = %librdkafka_features,
        "pipewarden starting"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    let ingest_stop = stop.clone();
    std::thread::Builder::new()
        .name("pipewarden-ingest".into())
        .spawn(move || {
            ingest.run(&ingest_stop);
            let _ = done_tx.send(());
        })
        .context("failed to start the ingest thread")?;

    // The lag monitor polls on its own thread: its admin requests block on
    // librdkafka queues and must never hold up the runtime or ingest.
    let lag_thread = match lag_monitor {
        Some(monitor) => {
            let lag_stop = stop.clone();
            Some(
                std::thread::Builder::new()
                    .name("pipewarden-lag".into())
                    .spawn(move || monitor.run(&lag_stop))
                    .context("failed to start the lag thread")?,
            )
        }
        None => None,
    };
    // Scale-out mode: this replica's share of the observations is correlated on its own thread.
    let observations = match correlation.consumer {
        Some(consumer) => {
            let observation_stop = stop.clone();
            let handle = std::thread::Builder::new()
                .name("pipewarden-correlate".into())
                .spawn(move || consumer.run(&observation_stop))
                .context("failed to start the observation consumer thread")?;
            Some(handle)
        }
        None => None,
    };

    let (http_stop_tx, http_stop_rx) = oneshot::channel::<()>();
    let router = http::router(AppState {
        metrics,
        health: health.clone(),
        lag: lag_shared,
        correlation: Some(correlation.shared),
        auth: config.http.auth.clone(),
    });
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = http_stop_rx.await;
            })
            .await
    });

    tokio::select! {
        _ = shutdown => {}
        result = &mut done_rx => {
            // The sender is dropped without a send only if the thread panicked.
            let _ = http_stop_tx.send(());
            bail!("ingest stopped unexpectedly ({})", if result.is_ok() { "returned" } else { "panicked" });
        }
    }

    let grace = config.shutdown.grace_period;
    health.set_stopping();
    stop.store(true, Ordering::Release);
    let finished = tokio::time::timeout(grace, &mut done_rx).await;
    let _ = http_stop_tx.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), server).await;
    // The lag thread sees `stop` within 100 ms, or after its current poll
    // (bounded by lag.request_timeout_ms); it holds nothing to flush, so it
    // is not waited for beyond the ingest shutdown.
    drop(lag_thread);
    if let Some(handle) = observations {
        // It stops within one poll of the flag; its final commit is bounded by librdkafka's timeouts.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), tokio::task::spawn_blocking(move || handle.join()))
                .await;
    }
    match finished {
        Ok(Ok(())) => {
            info!("shutdown complete");
            Ok(())
        }
        Ok(Err(_)) => bail!("ingest thread panicked during shutdown"),
        Err(_) => {
            warn!(grace_ms = grace.as_millis() as u64, "shutdown grace period exceeded; exiting without final commit");
            bail!("shutdown grace period of {} ms exceeded", grace.as_millis())
        }
    }
}
