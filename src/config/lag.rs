//! Lag monitor configuration: `[lag]` and `[lag.groups]`.
//!
//! A raw serde struct with documented defaults (see config.toml), validated
//! into [`LagConfig`] by [`validate_lag`]; problems are pushed to the
//! caller's list so the whole file is reported at once.

use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::{compile_patterns, ConfigProblem, ProblemKind};

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawLag {
    pub enabled: bool,
    pub poll_interval_ms: u64,
    pub status_window_ms: u64,
    pub request_timeout_ms: u64,
    pub max_in_flight_requests: usize,
    pub partition_metrics: bool,
    pub index_points_per_partition: usize,
    pub groups: RawLagGroups,
}

impl Default for RawLag {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_ms: 10_000,
            status_window_ms: 120_000,
            request_timeout_ms: 10_000,
            max_in_flight_requests: 200,
            partition_metrics: false,
            index_points_per_partition: 1_024,
            groups: RawLagGroups::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawLagGroups {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub read_committed: Vec<String>,
}

impl Default for RawLagGroups {
    fn default() -> Self {
        Self { include: vec![".*".into()], exclude: Vec::new(), read_committed: Vec::new() }
    }
}

#[derive(Debug, Clone)]
pub struct LagConfig {
    pub enabled: bool,
    /// Time between the starts of two lag polls.
    pub poll_interval: Duration,
    /// Sliding window of the status rules (see `lag/status.rs`).
    pub status_window: Duration,
    /// Bound of one admin request.
    pub request_timeout: Duration,
    /// Admin requests outstanding at once during a poll.
    pub max_in_flight_requests: usize,
    /// Also export per-partition lag series.
    pub partition_metrics: bool,
    /// Points kept per partition by the offset → timestamp index.
    pub index_points_per_partition: usize,
    /// A group is monitored when one of these matches its whole id ...
    pub include: Vec<Regex>,
    /// ... and none of these does.
    pub exclude: Vec<Regex>,
    /// Groups whose consumers use isolation.level=read_committed: their lag
    /// is measured to the last stable offset instead of the high watermark.
    pub read_committed: Vec<Regex>,
}

impl LagConfig {
    pub fn monitors(&self, group: &str) -> bool {
        self.include.iter().any(|r| r.is_match(group)) && !self.exclude.iter().any(|r| r.is_match(group))
    }

    pub fn is_read_committed(&self, group: &str) -> bool {
        self.read_committed.iter().any(|r| r.is_match(group))
    }
}

pub fn validate_lag(raw: RawLag, problems: &mut Vec<ConfigProblem>) -> LagConfig {
    for (key, value) in [
        ("poll_interval_ms", raw.poll_interval_ms),
        ("status_window_ms", raw.status_window_ms),
        ("request_timeout_ms", raw.request_timeout_ms),
        ("max_in_flight_requests", raw.max_in_flight_requests as u64),
    ] {
        if value == 0 {
            problems.push(ConfigProblem { path: format!("lag.{key}"), kind: ProblemKind::Zero });
        }
    }
    if raw.index_points_per_partition < 4 {
        problems.push(ConfigProblem {
            path: "lag.index_points_per_partition".into(),
            kind: ProblemKind::InvalidValue(format!("{} is below the minimum of 4", raw.index_points_per_partition)),
        });
    }
    if raw.status_window_ms != 0 && raw.status_window_ms < raw.poll_interval_ms.saturating_mul(2) {
        problems.push(ConfigProblem {
            path: "lag.status_window_ms".into(),
            kind: ProblemKind::InvalidValue("must span at least two poll intervals (lag.poll_interval_ms)".into()),
        });
    }
    if raw.groups.include.is_empty() {
        problems.push(ConfigProblem { path: "lag.groups.include".into(), kind: ProblemKind::Empty });
    }
    let mut compile = |key: &str, patterns: &[String]| {
        let (regexes, invalid) = compile_patterns(key, patterns);
        problems.extend(invalid);
        regexes
    };
    LagConfig {
        enabled: raw.enabled,
        poll_interval: Duration::from_millis(raw.poll_interval_ms),
        status_window: Duration::from_millis(raw.status_window_ms),
        request_timeout: Duration::from_millis(raw.request_timeout_ms),
        max_in_flight_requests: raw.max_in_flight_requests,
        partition_metrics: raw.partition_metrics,
        index_points_per_partition: raw.index_points_per_partition,
        include: compile("lag.groups.include", &raw.groups.include),
        exclude: compile("lag.groups.exclude", &raw.groups.exclude),
        read_committed: compile("lag.groups.read_committed", &raw.groups.read_committed),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ProblemKind};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_monitor_every_group() {
        let config = Config::from_toml("", &no_env).unwrap();
        let lag = &config.lag;
        assert!(lag.enabled);
        assert_eq!(lag.poll_interval.as_millis(), 10_000);
        assert_eq!(lag.status_window.as_millis(), 120_000);
        assert_eq!(lag.index_points_per_partition, 1_024);
        assert!(lag.monitors("anything") && !lag.is_read_committed("anything"));
    }

    #[test]
    fn group_patterns_match_whole_ids() {
        let text = "[lag.groups]\ninclude = [\"app-.*\"]\nexclude = [\"app-test\"]\nread_committed = [\"app-tx.*\"]\n";
        let lag = Config::from_toml(text, &no_env).unwrap().lag;
        assert!(lag.monitors("app-billing"));
        assert!(!lag.monitors("app-test"));
        assert!(!lag.monitors("other-app-billing"));
        assert!(lag.is_read_committed("app-tx-1") && !lag.is_read_committed("app-billing"));
    }

    #[test]
    fn every_invalid_lag_value_is_reported() {
        let text = "[lag]\npoll_interval_ms = 0\nrequest_timeout_ms = 0\nmax_in_flight_requests = 0\n\
                    index_points_per_partition = 2\nstatus_window_ms = 5\n[lag.groups]\ninclude = []\n\
                    exclude = [\"(\"]\nread_committed = [\"[z-a]\"]\ncolour = 1\n";
        let found = Config::from_toml(text, &no_env).unwrap_err().0;
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        for path in [
            "lag.poll_interval_ms",
            "lag.request_timeout_ms",
            "lag.max_in_flight_requests",
            "lag.index_points_per_partition",
            "lag.groups.include",
            "lag.groups.exclude[0]",
            "lag.groups.read_committed[0]",
            "lag.groups.colour",
        ] {
            assert!(paths.contains(&path), "missing {path}: {found:#?}");
        }
        assert!(found.iter().any(|p| p.path == "lag.groups.colour" && p.kind == ProblemKind::UnknownKey));
        // poll_interval_ms = 0 makes the window check moot; it is not reported twice.
        assert_eq!(found.len(), 8, "{found:#?}");
    }
}
