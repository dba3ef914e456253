//! Logging set-up. Log lines are lowercase messages with structured fields;
//! payload contents are never logged. `PIPEWARDEN_LOG` (an `EnvFilter`
//! directive such as `debug` or `pipewarden=debug,librdkafka=warn`), when
//! set, overrides `log.level` for one run.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub fn init_logging(config: &LogConfig) {
    let filter = std::env::var("PIPEWARDEN_LOG")
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .unwrap_or_else(|| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // try_init: a second call (tests, simulate after run) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
