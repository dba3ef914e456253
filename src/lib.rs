//! pipewarden: an observability and governance sidecar for multi-agent
//! pipelines on Apache Kafka.
//!
//! The data path, one record at a time:
//!
//! ```text
//! ingest (rdkafka consumer thread) ──► decode (wire format, envelope) ──► validate (verdict)
//!        │                                                       ├──► observe (metrics) ──► correlate (traces)
//!        │                                                       └──► quarantine (copy, await ack)
//!        └── offset stored only after the record's outcome is complete
//! http (axum): /metrics /healthz /readyz /api/v1/lag
//! lag monitor (own thread): consumer groups → lag in messages and seconds, status
//! ```
//!
//! Layout:
//! - [`config`] — TOML → raw structs → validated [`config::Config`]; every problem at once.
//! - [`ingest`] — the consumer loop, topic discovery, rebalance handling, offsets.
//! - [`decode`] — wire-format detection, envelope extraction, `traceparent` parsing.
//! - [`validate`] — verdicts: contract, schemas (registry or folder), PII.
//! - [`tape`] — a JSON payload parsed once into a flat tape, read by the envelope, schema and PII checks.
//! - [`bytes`] — byte searches 16 bytes at a time (SSE2), for the tape and the PII detectors.
//! - [`observe`] — the observe stage (record, envelope and verdict in, metrics recorded).
//! - [`cost`] — LLM token usage priced per topic and model; budgets and their alerts.
//! - [`dlq`] — dead-letter topics: records by source topic and reason, newest record age.
//! - [`correlate`] — traces by correlation ID: flows, stages, stalled traces, topology, `/api/v1`.
//! - [`quarantine`] — poison records copied to quarantine topics with their origin.
//! - [`rebootstrap`] — clients that lost every broker bootstrap again.
//! - [`lag`] — consumer group lag: admin queries, offset → timestamp index, status, API.
//! - [`spans`] — each observed event as an OTLP span (sampled, bounded queue, background export).
//! - [`metrics`] — every metric family and its labels (documented in docs/metrics.md).
//! - [`http`] — `/metrics`, `/healthz`, `/readyz`.
//! - [`app`] — wiring and the shutdown sequence; [`shutdown`] — signals.
//! - [`telemetry`] — logging.
//! - [`simulate`] — demo agent traffic (`pipewarden simulate`).

pub mod app;
pub mod bytes;
pub mod config;
pub mod correlate;
pub mod cost;
pub mod decode;
pub mod dlq;
pub mod http;
pub mod ingest;
pub mod lag;
pub mod metrics;
pub mod observe;
pub mod quarantine;
pub mod rebootstrap;
pub mod shutdown;
pub mod simulate;
pub mod spans;
pub mod tape;
pub mod telemetry;
pub mod validate;
