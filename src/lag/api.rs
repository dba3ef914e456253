//! `/api/v1/lag` handlers: the last lag poll as JSON.
//!
//! - `GET /api/v1/lag`: every group with its state, members, status, lag
//!   per topic and stuck partitions (without the per-partition list, which
//!   can be long);
//! - `GET /api/v1/lag/{group}`: one group with every partition; 404 when the
//!   last poll did not report it.
//!
//! Both read the snapshot the lag thread published (an `Arc` clone under a
//! short lock): a request never waits for a poll.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::report::{GroupReport, StuckPartition, TopicReport};
use super::status::Status;
use super::LagShared;

#[derive(Serialize)]
struct Summary<'a> {
    polled_at_ms: i64,
    poll_duration_ms: f64,
    failed_groups: usize,
    groups: Vec<GroupSummary<'a>>,
}

#[derive(Serialize)]
struct GroupSummary<'a> {
    group: &'a str,
    state: &'static str,
    protocol: &'static str,
    members: usize,
    isolation: &'static str,
    status: Status,
    lag_messages: i64,
    lag_seconds: f64,
    topics: &'a [TopicReport],
    stuck: &'a [StuckPartition],
}

impl<'a> From<&'a GroupReport> for GroupSummary<'a> {
    fn from(report: &'a GroupReport) -> Self {
        Self {
            group: &report.group,
            state: report.state,
            protocol: report.protocol,
            members: report.members,
            isolation: report.isolation,
            status: report.status,
            lag_messages: report.lag_messages,
            lag_seconds: report.lag_seconds,
            topics: &report.topics,
            stuck: &report.stuck,
        }
    }
}

fn json(status: StatusCode, body: Result<String, serde_json::Error>) -> Response {
    match body {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

/// `GET /api/v1/lag`
pub async fn all_groups(State(lag): State<Arc<LagShared>>) -> Response {
    let snapshot = lag.snapshot();
    let summary = Summary {
        polled_at_ms: snapshot.polled_at_ms,
        poll_duration_ms: snapshot.poll_duration_ms,
        failed_groups: snapshot.failed_groups,
        groups: snapshot.groups.iter().map(GroupSummary::from).collect(),
    };
    json(StatusCode::OK, serde_json::to_string(&summary))
}

/// One group with the time of the poll that measured it.
#[derive(Serialize)]
struct GroupAtPoll<'a> {
    polled_at_ms: i64,
    #[serde(flatten)]
    group: &'a GroupReport,
}

/// `GET /api/v1/lag/{group}`
pub async fn one_group(State(lag): State<Arc<LagShared>>, Path(group): Path<String>) -> Response {
    let snapshot = lag.snapshot();
    match snapshot.groups.binary_search_by(|g| g.group.as_str().cmp(&group)) {
        Ok(index) => {
            let body = GroupAtPoll { polled_at_ms: snapshot.polled_at_ms, group: &snapshot.groups[index] };
            json(StatusCode::OK, serde_json::to_string(&body))
        }
        Err(_) => (StatusCode::NOT_FOUND, "no such group in the last lag poll\n").into_response(),
    }
}
