//! Shutdown signals.
//!
//! The sequence (driven by `app::serve`): SIGTERM or SIGINT → `/readyz`
//! turns 503 → the ingest loop stops fetching and finishes the record in
//! hand → stored offsets are committed and the consumer leaves its group →
//! the HTTP server stops → exit 0. If the ingest loop has not finished
//! within `shutdown.grace_period_ms`, pipewarden logs a warning and exits
//! with status 1 (offsets processed since the last periodic commit will be
//! read again by the next owner: at-least-once).

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for sigterm");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown requested"),
        _ = terminate => tracing::info!(signal = "SIGTERM", "shutdown requested"),
    }
}
