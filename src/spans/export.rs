//! The exporter thread: spans off the bounded queue, in batches, to the
//! OTLP receiver.
//!
//! One OS thread owns a single-threaded tokio runtime for the gRPC (tonic)
//! and HTTP (reqwest) clients; it never shares the ingest thread or the HTTP
//! server's runtime, so a slow or unreachable receiver can only fill the
//! queue (and make the sink drop, counted), never stall ingest or
//! `/metrics`. A batch is sent when it holds `otlp.batch_size` spans or its
//! oldest span has waited `otlp.export_interval`. A failed request is
//! retried twice when the failure is transient (timeout, unavailable,
//! throttled), then its spans are dropped and counted. When the queue's
//! sender is dropped (shutdown), what is left is exported and the thread
//! signals that it is done.

use std::str::FromStr as _;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prometheus_client::metrics::counter::Counter;
use prost::Message as _;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tracing::{info, warn};

use super::chain::LastSpans;
use super::convert;
use super::{QueuedSpan, MAX_RECYCLED_CAPACITY};
use crate::config::{OtlpConfig, OtlpProtocol};
use crate::metrics::{Metrics, SpanDropReason, SpanExportFailure};

/// Attempts per batch: the first and two retries.
const ATTEMPTS: u32 = 3;

/// Wait before retry n (1-based) of a transient failure.
const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];

/// How long the thread sleeps on an empty queue before checking again;
/// only bounds how late it notices nothing (a closed queue wakes it at once).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// The caller's end of the exporter thread: tells when it has finished.
pub(crate) struct Handle {
    done: Option<Receiver<()>>,
}

impl Handle {
    /// A handle with no thread behind it (unit tests read the queue directly).
    #[cfg(test)]
    pub(crate) fn detached() -> Handle {
        Handle { done: None }
    }

    /// Waits up to `timeout` for the thread to finish; true if it did.
    pub(crate) fn wait(self, timeout: Duration) -> bool {
        match self.done {
            None => true,
            // Disconnected: the thread ended without signalling (it panicked).
            Some(done) => !matches!(done.recv_timeout(timeout), Err(RecvTimeoutError::Timeout)),
        }
    }
}

/// Why one export attempt failed; `transient` failures are retried.
#[derive(Debug)]
struct Failure {
    reason: SpanExportFailure,
    transient: bool,
    detail: String,
}

// One client lives for the whole process; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Client {
    Grpc { client: TraceServiceClient<Channel>, metadata: MetadataMap },
    Http { client: reqwest::Client, url: String },
}

impl Client {
    /// Sends one request; on success, how many spans the receiver rejected.
    async fn send(&mut self, request: &ExportTraceServiceRequest, timeout: Duration) -> Result<u64, Failure> {
        let response = match self {
            Client::Grpc { client, metadata } => {
                let mut call = tonic::Request::new(request.clone());
                *call.metadata_mut() = metadata.clone();
                call.set_timeout(timeout);
                client.export(call).await.map(tonic::Response::into_inner).map_err(grpc_failure)?
            }
            Client::Http { client, url } => {
                let response = client
                    .post(url.as_str())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(request.encode_to_vec())
                    .send()
                    .await
                    .map_err(http_error)?;
                let status = response.status();
                if !status.is_success() {
                    let transient = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                    let reason = if transient { SpanExportFailure::unavailable } else { SpanExportFailure::rejected };
                    return Err(Failure { reason, transient, detail: format!("http status {status}") });
                }
                let body = response.bytes().await.map_err(http_error)?;
                // An empty or unreadable body is a full success (OTLP/HTTP allows an empty 200).
                ExportTraceServiceResponse::decode(body).unwrap_or_default()
            }
        };
        Ok(response.partial_success.map_or(0, |partial| partial.rejected_spans.max(0) as u64))
    }
}

fn grpc_failure(status: tonic::Status) -> Failure {
    use tonic::Code;
    let (reason, transient) = match status.code() {
        Code::DeadlineExceeded => (SpanExportFailure::timeout, true),
        // The codes OTLP/gRPC lists as retryable.
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled
        | Code::OutOfRange
        | Code::DataLoss => (SpanExportFailure::unavailable, true),
        _ => (SpanExportFailure::rejected, false),
    };
    Failure { reason, transient, detail: format!("grpc status {:?}: {}", status.code(), status.message()) }
}

fn http_error(err: reqwest::Error) -> Failure {
    let reason = if err.is_timeout() { SpanExportFailure::timeout } else { SpanExportFailure::unavailable };
    Failure { reason, transient: true, detail: err.to_string() }
}

/// Counter handles of the exporter, looked up once.
struct ExportCounters {
    exported: Counter,
    export_failed: Counter,
    rejected: Counter,
    failures: [Counter; 3],
}

struct Exporter {
    queue: Receiver<QueuedSpan>,
    /// Emptied text buffers back to the sink (dropped when its pool is full).
    recycle: SyncSender<String>,
    runtime: tokio::runtime::Runtime,
    client: Client,
    chain: LastSpans,
    batch_size: usize,
    interval: Duration,
    timeout: Duration,
    counters: ExportCounters,
    /// Whether the last export failed, so failures are logged once per outage.
    failing: bool,
}

/// Builds the client (so a bad endpoint fails start-up) and starts the thread.
pub(crate) fn spawn(
    config: &OtlpConfig,
    queue: Receiver<QueuedSpan>,
    recycle: SyncSender<String>,
    metrics: &Metrics,
) -> anyhow::Result<Handle> {
    let endpoint = config.endpoint.clone().context("otlp export needs an endpoint")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the span exporter's runtime")?;
    let client = match config.protocol {
        OtlpProtocol::Grpc => {
            let mut metadata = MetadataMap::new();
            for (name, value) in &config.headers {
                let key = MetadataKey::from_str(name).with_context(|| format!("invalid otlp header name {name:?}"))?;
                let value =
                    MetadataValue::from_str(value.expose()).with_context(|| format!("invalid otlp header {name:?}"))?;
                metadata.insert(key, value);
            }
            let channel = {
                // The channel's background worker is spawned on this runtime.
                let _entered = runtime.enter();
                tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .with_context(|| format!("invalid otlp endpoint {endpoint:?}"))?
                    .connect_timeout(config.timeout)
                    .timeout(config.timeout)
                    .connect_lazy()
            };
            Client::Grpc { client: TraceServiceClient::new(channel), metadata }
        }
        OtlpProtocol::HttpProtobuf => {
            let mut headers = reqwest::header::HeaderMap::new();
            for (name, value) in &config.headers {
                let name = reqwest::header::HeaderName::from_str(name)
                    .with_context(|| format!("invalid otlp header name {name:?}"))?;
                let value = reqwest::header::HeaderValue::from_str(value.expose())
                    .with_context(|| format!("invalid otlp header {name:?}"))?;
                headers.insert(name, value);
            }
            let client = reqwest::Client::builder()
                .timeout(config.timeout)
                .default_headers(headers)
                .user_agent(concat!("pipewarden/", env!("CARGO_PKG_VERSION")))
                .build()
                .context("failed to build the otlp http client")?;
            Client::Http { client, url: traces_url(&endpoint) }
        }
    };
    let counters = ExportCounters {
        exported: metrics.spans_exported.clone(),
        export_failed: metrics.span_drop_counter(SpanDropReason::export_failed),
        rejected: metrics.span_drop_counter(SpanDropReason::rejected),
        failures: [SpanExportFailure::timeout, SpanExportFailure::unavailable, SpanExportFailure::rejected]
            .map(|reason| metrics.span_export_failure_counter(reason)),
    };
    let exporter = Exporter {
        queue,
        recycle,
        runtime,
        client,
        chain: LastSpans::new(config.max_chained_traces),
        batch_size: config.batch_size,
        interval: config.export_interval,
        timeout: config.timeout,
        counters,
        failing: false,
    };
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("pipewarden-spans".into())
        .spawn(move || {
            exporter.run();
            let _ = done_tx.send(());
        })
        .context("failed to start the span exporter thread")?;
    info!(endpoint = %endpoint, protocol = config.protocol.as_str(), sample_ratio = config.sample_ratio, "span export on");
    Ok(Handle { done: Some(done_rx) })
}

/// OTLP/HTTP: the endpoint is the receiver's base URL and `/v1/traces` is
/// appended, unless the endpoint already names that path.
pub(crate) fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_string()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

impl Exporter {
    fn run(mut self) {
        let mut batch: Vec<QueuedSpan> = Vec::with_capacity(self.batch_size);
        // When the oldest span of the batch must be sent.
        let mut due: Option<Instant> = None;
        loop {
            let wait = due.map_or(IDLE_WAIT, |due| due.saturating_duration_since(Instant::now()));
            match self.queue.recv_timeout(wait) {
                Ok(span) => {
                    let batch_due = *due.get_or_insert_with(|| Instant::now() + self.interval);
                    batch.push(span);
                    // Also on time: a steady trickle must not hold a batch past its interval.
                    if batch.len() >= self.batch_size || Instant::now() >= batch_due {
                        self.export(&mut batch);
                        due = None;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if due.is_some_and(|due| Instant::now() >= due) {
                        self.export(&mut batch);
                        due = None;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Shutdown: every span still queued was received before this.
                    self.export(&mut batch);
                    return;
                }
            }
        }
    }

    fn export(&mut self, batch: &mut Vec<QueuedSpan>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        let request = convert::request(batch, &mut self.chain);
        for span in batch.drain(..) {
            let mut text = span.text;
            if text.capacity() <= MAX_RECYCLED_CAPACITY {
                text.clear();
                let _ = self.recycle.try_send(text);
            }
        }
        let timeout = self.timeout;
        let client = &mut self.client;
        let result = self.runtime.block_on(async {
            let mut attempt = 0;
            loop {
                match client.send(&request, timeout).await {
                    Ok(rejected) => return Ok(rejected),
                    Err(failure) if failure.transient && attempt + 1 < ATTEMPTS => {
                        tokio::time::sleep(RETRY_BACKOFF[attempt as usize]).await;
                        attempt += 1;
                    }
                    Err(failure) => return Err(failure),
                }
            }
        });
        match result {
            Ok(rejected) => {
                let rejected = rejected.min(count);
                self.counters.exported.inc_by(count - rejected);
                self.counters.rejected.inc_by(rejected);
                if self.failing {
                    info!("span export recovered");
                    self.failing = false;
                }
            }
            Err(failure) => {
                self.counters.failures[failure.reason as usize].inc();
                self.counters.export_failed.inc_by(count);
                if !self.failing {
                    warn!(reason = ?failure.reason, error = %failure.detail, spans = count, "span export failed; spans dropped");
                    self.failing = true;
                }
            }
        }
    }
}
