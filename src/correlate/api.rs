//! The correlation API: trace lookup, stalled traces and topology.
//!
//! - `GET /api/v1/traces/{trace_id}`: the timeline of a trace still in the
//!   table (404 otherwise).
//! - `GET /api/v1/traces?state=stalled|open|completed|failed&limit=N`: the
//!   most recent traces in that state (by first event time, newest first),
//!   at most `limit` (default 100, at most [`MAX_LIMIT`]).
//! - `GET /api/v1/topology` (JSON) or `?format=mermaid` (text).
//!
//! Handlers read the [`Shared`] state: they lock one table shard at a time
//! and never for longer than one shard's scan, so ingest is not held up.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::trace::{trace_id_text, trace_key, Trace, TraceKey, TraceState};
use super::Shared;
use crate::http::AppState;

/// Most traces one listing returns.
pub const MAX_LIMIT: usize = 1_000;
const DEFAULT_LIMIT: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/traces", get(list_traces))
        .route("/api/v1/traces/{trace_id}", get(get_trace))
        .route("/api/v1/topology", get(topology))
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TimelineEvent {
    pub event_type: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `created_at` in ms since the epoch (null when the event had none).
    pub created_at_ms: Option<i64>,
    /// Kafka record timestamp in ms since the epoch.
    pub record_timestamp_ms: Option<i64>,
    pub producer: String,
    pub verdict: String,
    pub tokens: u32,
    pub cost_usd: f64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TraceView {
    pub trace_id: String,
    pub flow: Option<String>,
    pub state: String,
    pub first_event_ms: i64,
    pub last_event_ms: i64,
    /// Last event time minus first event time, in seconds.
    pub duration_seconds: f64,
    /// Events observed (duplicates excluded); the timeline holds at most
    /// `correlate.max_timeline_events` of them.
    pub events: u32,
    pub tokens: u32,
    pub cost_usd: f64,
    /// Event types in event-time order.
    pub stages: Vec<String>,
    pub timeline: Vec<TimelineEvent>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TraceSummary {
    pub trace_id: String,
    pub flow: Option<String>,
    pub state: String,
    pub last_stage: String,
    /// Correlator clock minus first event time, in seconds.
    pub age_seconds: f64,
    pub first_event_ms: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TraceList {
    pub state: String,
    pub traces: Vec<TraceSummary>,
}

fn flow_name(shared: &Shared, flow: u8) -> Option<String> {
    shared.flows.get(flow as usize).map(|f| f.name.clone())
}

/// The full view of one trace, if the table holds it.
pub fn trace_view(shared: &Shared, trace_id: &str) -> Option<TraceView> {
    let (key, _) = trace_key(trace_id);
    let names = shared.names.snapshot();
    let name = |id: u16| names.get(id as usize).map_or_else(String::new, |n| n.to_string());
    let shard = shared.table.shard_for(&key);
    let trace = shard.get(&key)?;
    let timeline: Vec<TimelineEvent> = trace
        .timeline()
        .iter()
        .map(|step| {
            let (created_at_ms, record_timestamp_ms) = step.times_ms(trace.base_ms);
            TimelineEvent {
                event_type: name(step.event_type),
                topic: name(step.topic),
                partition: i32::from(step.partition),
                offset: step.offset(),
                created_at_ms,
                record_timestamp_ms,
                producer: name(step.producer),
                verdict: step.verdict().as_str().to_string(),
                tokens: step.tokens,
                cost_usd: step.cost_micro_usd as f64 / 1e6,
            }
        })
        .collect();
    Some(TraceView {
        trace_id: trace_id_text(&key, shard.text(&key)),
        flow: flow_name(shared, trace.flow),
        state: trace.state().as_str().to_string(),
        first_event_ms: trace.first_time_ms(),
        last_event_ms: trace.last_time_ms(),
        duration_seconds: (trace.last_ms - trace.first_ms) as f64 / 1e3,
        events: u32::from(trace.events),
        tokens: trace.tokens,
        cost_usd: trace.cost_micro_usd as f64 / 1e6,
        stages: timeline.iter().map(|e| e.event_type.clone()).collect(),
        timeline,
    })
}

/// (first event time, key, text ID, flow, stage) of a listed trace.
type Listed = (i64, TraceKey, Option<Box<str>>, u8, u16);

/// The `limit` most recent traces in `state`.
pub fn list(shared: &Shared, state: TraceState, limit: usize) -> TraceList {
    let names = shared.names.snapshot();
    let now = shared.watermark_ms();
    // A bounded "top N by first event time" per shard, merged at the end.
    let mut found: Vec<Listed> = Vec::new();
    for index in 0..shared.table.shard_count() {
        let shard = shared.table.lock(index);
        let mut picked: Vec<(i64, TraceKey, &Trace)> =
            shard.iter().filter(|(_, t)| t.state() == state).map(|(k, t)| (t.first_time_ms(), *k, t)).collect();
        if picked.len() > limit {
            picked.select_nth_unstable_by(limit - 1, |a, b| b.0.cmp(&a.0));
            picked.truncate(limit);
        }
        let stage = |t: &Trace| if state == TraceState::Stalled { t.stall_stage } else { t.last_stage };
        found.extend(
            picked.into_iter().map(|(first, key, t)| (first, key, shard.text(&key).map(Box::from), t.flow, stage(t))),
        );
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    found.truncate(limit);
    let traces = found
        .into_iter()
        .map(|(first, key, text, flow, stage)| TraceSummary {
            trace_id: trace_id_text(&key, text.as_deref()),
            flow: flow_name(shared, flow),
            state: state.as_str().to_string(),
            last_stage: names.get(stage as usize).map_or_else(String::new, |n| n.to_string()),
            age_seconds: now.map_or(0.0, |now| (now - first).max(0) as f64 / 1e3),
            first_event_ms: first,
        })
        .collect();
    TraceList { state: state.as_str().to_string(), traces }
}

fn shared(state: &AppState) -> Result<&Arc<Shared>, Box<Response>> {
    state.correlation.as_ref().ok_or_else(|| {
        Box::new((StatusCode::NOT_FOUND, "correlation is not running in this process\n").into_response())
    })
}

async fn get_trace(State(state): State<AppState>, Path(trace_id): Path<String>) -> Response {
    let shared = match shared(&state) {
        Ok(shared) => shared,
        Err(response) => return *response,
    };
    match trace_view(shared, &trace_id) {
        Some(view) => json(&view),
        None => (StatusCode::NOT_FOUND, "trace not found (never seen, or expired)\n").into_response(),
    }
}

/// The value of `name` in a query string. The parameters here take plain
/// words and numbers, so no percent-decoding is needed.
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').filter_map(|pair| pair.split_once('=')).find(|(key, _)| *key == name).map(|(_, value)| value)
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

async fn list_traces(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let shared = match shared(&state) {
        Ok(shared) => shared,
        Err(response) => return *response,
    };
    let query = query.as_deref();
    let wanted = match query_param(query, "state").unwrap_or("stalled") {
        "stalled" => TraceState::Stalled,
        "open" => TraceState::Open,
        "completed" => TraceState::Completed,
        "failed" => TraceState::Failed,
        _ => {
            return (StatusCode::BAD_REQUEST, "state must be one of stalled, open, completed, failed\n").into_response()
        }
    };
    let limit = match query_param(query, "limit").map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(limit)) => limit.clamp(1, MAX_LIMIT),
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "limit must be a number\n").into_response(),
    };
    json(&list(shared, wanted, limit))
}

async fn topology(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let shared = match shared(&state) {
        Ok(shared) => shared,
        Err(response) => return *response,
    };
    let topology = shared.topology.snapshot(&shared.names);
    match query_param(query.as_deref(), "format") {
        None | Some("json") => json(&topology),
        Some("mermaid") => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], topology.mermaid()).into_response(),
        Some(_) => (StatusCode::BAD_REQUEST, "format must be json or mermaid\n").into_response(),
    }
}
