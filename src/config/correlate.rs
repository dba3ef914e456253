//! Correlation configuration: `[correlate]`, `[correlate.kafka]` and `[[flows]]`.
//!
//! Raw serde structs with documented defaults, validated into
//! [`CorrelateConfig`] and [`Flow`]s; problems are pushed to the caller's
//! list so the whole file is reported at once. The correlator
//! (`src/correlate/`) is built from the validated types only.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigProblem, ProblemKind};

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawCorrelate {
    pub mode: String,
    pub max_traces: usize,
    pub trace_ttl_ms: u64,
    pub max_timeline_events: usize,
    pub max_edges: usize,
    pub max_topology_links: usize,
    pub shards: usize,
    pub kafka: RawCorrelateKafka,
}

impl Default for RawCorrelate {
    fn default() -> Self {
        Self {
            mode: "in_process".into(),
            max_traces: 1_000_000,
            trace_ttl_ms: 3_600_000,
            max_timeline_events: 32,
            max_edges: 256,
            max_topology_links: 4_096,
            shards: 16,
            kafka: RawCorrelateKafka::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawCorrelateKafka {
    pub topic: String,
    pub partitions: i32,
    pub group_suffix: String,
    pub max_in_flight: usize,
}

impl Default for RawCorrelateKafka {
    fn default() -> Self {
        Self {
            topic: "pipewarden.observations".into(),
            partitions: 12,
            group_suffix: ".observations".into(),
            max_in_flight: 100_000,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawFlow {
    pub name: String,
    pub start: Vec<String>,
    pub success: Vec<String>,
    pub failure: Vec<String>,
    pub sla_ms: u64,
}

/// Where observations are correlated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrelateMode {
    /// In the consuming process (one replica, or replicas that do not need
    /// cross-replica traces).
    InProcess,
    /// Re-keyed by trace ID through an internal topic; each replica
    /// correlates the partitions of it that it owns.
    Kafka,
}

#[derive(Debug, Clone)]
pub struct CorrelateConfig {
    pub mode: CorrelateMode,
    /// Open and recently finished traces held at most; the oldest are
    /// evicted past this.
    pub max_traces: usize,
    /// A trace with no event for this long (in event time) is forgotten.
    pub trace_ttl: Duration,
    /// Events kept per trace for `/api/v1/traces/{id}` and duplicate detection.
    pub max_timeline_events: usize,
    /// Distinct stage edges (A→B) with their own histogram; others share `__overflow__`.
    pub max_edges: usize,
    /// Distinct topology links (producer, event type, topic) and hand-offs remembered.
    pub max_topology_links: usize,
    /// Lock shards of the trace table.
    pub shards: usize,
    pub kafka: CorrelateKafkaConfig,
}

#[derive(Debug, Clone)]
pub struct CorrelateKafkaConfig {
    pub topic: String,
    pub partitions: i32,
    /// The observation consumer's group is `kafka.group_id` + this suffix.
    pub group_suffix: String,
    /// Observations handed to the producer and not yet acknowledged before
    /// new ones are dropped (counted).
    pub max_in_flight: usize,
}

/// How a terminal event ends a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// One end-to-end flow: a trace starts with a start event type and ends
/// with a terminal one, within its SLA.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub start: Vec<String>,
    /// Terminal event types, each with its outcome.
    pub terminal: Vec<(String, Outcome)>,
    pub sla: Duration,
}

/// Flows are referenced by a `u8` in every trace.
pub const MAX_FLOWS: usize = 250;

pub fn validate_correlate(raw: RawCorrelate, problems: &mut Vec<ConfigProblem>) -> CorrelateConfig {
    let mut problem = |path: &str, kind: ProblemKind| problems.push(ConfigProblem { path: path.to_string(), kind });
    let mode = match raw.mode.as_str() {
        "in_process" => CorrelateMode::InProcess,
        "kafka" => CorrelateMode::Kafka,
        other => {
            problem(
                "correlate.mode",
                ProblemKind::InvalidValue(format!("{other:?} is not one of \"in_process\", \"kafka\"")),
            );
            CorrelateMode::InProcess
        }
    };
    for (key, value) in [
        ("correlate.max_traces", raw.max_traces as u64),
        ("correlate.trace_ttl_ms", raw.trace_ttl_ms),
        ("correlate.max_timeline_events", raw.max_timeline_events as u64),
        ("correlate.max_edges", raw.max_edges as u64),
        ("correlate.max_topology_links", raw.max_topology_links as u64),
        ("correlate.shards", raw.shards as u64),
        ("correlate.kafka.partitions", raw.kafka.partitions.max(0) as u64),
        ("correlate.kafka.max_in_flight", raw.kafka.max_in_flight as u64),
    ] {
        if value == 0 {
            problem(key, ProblemKind::Zero);
        }
    }
    // Timeline positions and the event counter of a trace are u8.
    if raw.max_timeline_events > 255 {
        problem("correlate.max_timeline_events", ProblemKind::InvalidValue("at most 255".into()));
    }
    // Slots of the trace table are u32 indexes.
    if raw.max_traces > u32::MAX as usize / 2 {
        problem("correlate.max_traces", ProblemKind::InvalidValue("at most 2147483647".into()));
    }
    if raw.shards > 1024 {
        problem("correlate.shards", ProblemKind::InvalidValue("at most 1024".into()));
    }
    if raw.kafka.topic.trim().is_empty() {
        problem("correlate.kafka.topic", ProblemKind::Empty);
    }
    if raw.kafka.group_suffix.is_empty() {
        problem("correlate.kafka.group_suffix", ProblemKind::Empty);
    }
    CorrelateConfig {
        mode,
        max_traces: raw.max_traces,
        trace_ttl: Duration::from_millis(raw.trace_ttl_ms),
        max_timeline_events: raw.max_timeline_events,
        max_edges: raw.max_edges,
        max_topology_links: raw.max_topology_links,
        shards: raw.shards,
        kafka: CorrelateKafkaConfig {
            topic: raw.kafka.topic,
            partitions: raw.kafka.partitions,
            group_suffix: raw.kafka.group_suffix,
            max_in_flight: raw.kafka.max_in_flight,
        },
    }
}

pub fn validate_flows(raw: Vec<RawFlow>, problems: &mut Vec<ConfigProblem>) -> Vec<Flow> {
    let mut problem = |path: String, kind: ProblemKind| problems.push(ConfigProblem { path, kind });
    if raw.len() > MAX_FLOWS {
        problem("flows".into(), ProblemKind::InvalidValue(format!("at most {MAX_FLOWS} flows")));
    }
    let mut flows: Vec<Flow> = Vec::new();
    for (index, flow) in raw.into_iter().enumerate() {
        let path = |key: &str| format!("flows[{index}].{key}");
        if flow.name.trim().is_empty() {
            problem(path("name"), ProblemKind::Empty);
        } else if flows.iter().any(|f| f.name == flow.name) {
            problem(path("name"), ProblemKind::InvalidValue(format!("flow {:?} is defined twice", flow.name)));
        }
        if flow.start.is_empty() {
            problem(path("start"), ProblemKind::Empty);
        }
        if flow.success.is_empty() && flow.failure.is_empty() {
            problem(path("success"), ProblemKind::InvalidValue("a flow needs a success or failure event type".into()));
        }
        if flow.sla_ms == 0 {
            problem(path("sla_ms"), ProblemKind::Zero);
        }
        for (key, list) in [("start", &flow.start), ("success", &flow.success), ("failure", &flow.failure)] {
            for (item, event_type) in list.iter().enumerate() {
                if event_type.trim().is_empty() {
                    problem(format!("flows[{index}].{key}[{item}]"), ProblemKind::Empty);
                }
            }
        }
        for (item, event_type) in flow.failure.iter().enumerate() {
            if flow.success.contains(event_type) {
                problem(
                    format!("flows[{index}].failure[{item}]"),
                    ProblemKind::InvalidValue(format!("{event_type:?} is also a success event type")),
                );
            }
        }
        // A start type decides a trace's flow, so it may belong to one flow only.
        for (item, event_type) in flow.start.iter().enumerate() {
            if let Some(other) = flows.iter().find(|f| f.start.contains(event_type)) {
                problem(
                    format!("flows[{index}].start[{item}]"),
                    ProblemKind::InvalidValue(format!("{event_type:?} already starts flow {:?}", other.name)),
                );
            }
        }
        let terminal = flow
            .success
            .into_iter()
            .map(|t| (t, Outcome::Success))
            .chain(flow.failure.into_iter().map(|t| (t, Outcome::Failure)))
            .collect();
        flows.push(Flow { name: flow.name, start: flow.start, terminal, sla: Duration::from_millis(flow.sla_ms) });
    }
    flows
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, CorrelateMode, Outcome, ProblemKind};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_and_a_flow() {
        let text = "[[flows]]\nname = \"f\"\nstart = [\"a\"]\nsuccess = [\"b\"]\nfailure = [\"c\"]\nsla_ms = 1500\n";
        let config = Config::from_toml(text, &no_env).unwrap();
        assert_eq!(config.correlate.mode, CorrelateMode::InProcess);
        assert_eq!(config.correlate.max_traces, 1_000_000);
        assert_eq!(config.correlate.kafka.topic, "pipewarden.observations");
        assert_eq!(config.correlate.kafka.partitions, 12);
        let flow = &config.flows[0];
        assert_eq!(flow.terminal, vec![("b".to_string(), Outcome::Success), ("c".to_string(), Outcome::Failure)]);
        assert_eq!(flow.sla.as_millis(), 1500);
        let problems = Config::from_toml("[correlate]\nmode = \"telepathy\"\n", &no_env).unwrap_err().0;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "correlate.mode");
        let empty = Config::from_toml("[correlate.kafka]\ntopic = \" \"\n", &no_env).unwrap_err().0;
        assert_eq!(empty[0].path, "correlate.kafka.topic");
        assert_eq!(empty[0].kind, ProblemKind::Empty);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
            [correlate]
            mode = "kafka"
            max_traces = 0
            max_timeline_events = 300
            shards = 0
            [correlate.kafka]
            topic = "observations"
            partitions = 0
            [[flows]]
            name = "f"
            start = ["a", ""]
            success = ["b"]
            failure = ["b"]
            sla_ms = 0
            [[flows]]
            name = "f"
            start = ["a"]
            sla_ms = 5
            colour = "red"
        "#;
        let problems = Config::from_toml(text, &no_env).unwrap_err().0;
        let mut found: Vec<(String, bool)> =
            problems.iter().map(|p| (p.path.clone(), matches!(p.kind, ProblemKind::Zero))).collect();
        found.sort();
        let expected = [
            ("correlate.kafka.partitions", true),
            ("correlate.kafka.topic", false),
            ("correlate.max_timeline_events", false),
            ("correlate.max_traces", true),
            ("correlate.shards", true),
            ("flows.1.colour", false),
            ("flows[0].failure[0]", false),
            ("flows[0].sla_ms", true),
            ("flows[0].start[1]", false),
            ("flows[1].name", false),
            ("flows[1].start[0]", false),
            ("flows[1].success", false),
        ];
        let expected: Vec<(String, bool)> = expected.iter().map(|(p, z)| (p.to_string(), *z)).collect();
        assert_eq!(found, expected, "{problems:#?}");
    }
}
