//! Dead-letter configuration: `[dlq]`.
//!
//! Which watched topics are dead-letter topics, which headers (and payload
//! fields) name a dead letter's source topic and failure reason, and how
//! many distinct reasons become label values. Validated into [`DlqConfig`];
//! problems go to the caller's list.

use regex::Regex;
use serde::Deserialize;

use super::{parse_source, ConfigProblem, ProblemKind, Source};

/// Dead-letter naming conventions: a `dlq`/`dlt` word (any case) joined to
/// the source name by `.`, `-` or `_`, as suffix (`orders.dlq`,
/// `orders-dlq`, Spring's `orders.DLT` and `orders-dlt`) or prefix
/// (`dlq.orders`, `dlq-orders`).
pub const DEFAULT_DLQ_TOPICS: &[&str] = &[".+[._-](?i:dlq|dlt)", "(?i:dlq|dlt)[._-].+"];

/// Headers naming the source topic, most specific first: pipewarden's own
/// quarantine copies, Kafka Connect, Spring Kafka's dead-letter recoverer,
/// Kafka Streams (KIP-1034), and the demo agents' convention.
pub const DEFAULT_SOURCE_HEADERS: &[&str] = &[
    "pipewarden.origin.topic",
    "__connect.errors.topic",
    "kafka_dlt-original-topic",
    "__streams.errors.topic",
    "dlq.original.topic",
];

/// Headers naming the failure reason, in the same order: pipewarden's
/// bounded reason code, then exception class names.
pub const DEFAULT_REASON_HEADERS: &[&str] = &[
    "pipewarden.reason",
    "__connect.errors.exception.class.name",
    "kafka_dlt-exception-fqcn",
    "__streams.errors.exception",
    "dlq.reason",
];

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawDlq {
    pub enabled: bool,
    pub topics: Vec<String>,
    pub source_headers: Vec<String>,
    pub reason_headers: Vec<String>,
    pub source_field: String,
    pub reason_field: String,
    pub max_reasons: usize,
    pub count_quarantine: bool,
}

impl Default for RawDlq {
    fn default() -> Self {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Self {
            enabled: true,
            topics: owned(DEFAULT_DLQ_TOPICS),
            source_headers: owned(DEFAULT_SOURCE_HEADERS),
            reason_headers: owned(DEFAULT_REASON_HEADERS),
            source_field: String::new(),
            reason_field: String::new(),
            max_reasons: 20,
            count_quarantine: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DlqConfig {
    pub enabled: bool,
    /// Anchored patterns over whole topic names.
    pub topics: Vec<Regex>,
    pub source_headers: Vec<String>,
    pub reason_headers: Vec<String>,
    /// Payload pointer tried after the source headers.
    pub source_field: Option<Source>,
    /// Payload pointer tried after the reason headers.
    pub reason_field: Option<Source>,
    /// Distinct reason label values before further ones become `__other__`.
    pub max_reasons: usize,
    /// Count pipewarden's own quarantine writes (at acknowledgement) as dead letters.
    pub count_quarantine: bool,
}

impl DlqConfig {
    pub fn is_dlq_topic(&self, topic: &str) -> bool {
        self.topics.iter().any(|r| r.is_match(topic))
    }
}

pub fn validate_dlq(raw: RawDlq, problems: &mut Vec<ConfigProblem>) -> DlqConfig {
    let (topics, invalid) = super::compile_patterns("dlq.topics", &raw.topics);
    problems.extend(invalid);
    let mut field = |key: &str, text: &str| -> Option<Source> {
        if text.is_empty() {
            return None;
        }
        match parse_source(text) {
            Some(pointer @ Source::Pointer(_)) => Some(pointer),
            _ => {
                problems.push(ConfigProblem {
                    path: format!("dlq.{key}"),
                    kind: ProblemKind::InvalidValue(format!("{text:?} is not a JSON pointer like \"/error/type\"")),
                });
                None
            }
        }
    };
    let source_field = field("source_field", &raw.source_field);
    let reason_field = field("reason_field", &raw.reason_field);
    for (key, list) in [("source_headers", &raw.source_headers), ("reason_headers", &raw.reason_headers)] {
        for (index, name) in list.iter().enumerate() {
            if name.is_empty() {
                problems.push(ConfigProblem { path: format!("dlq.{key}[{index}]"), kind: ProblemKind::Empty });
            }
        }
    }
    if raw.max_reasons == 0 {
        problems.push(ConfigProblem { path: "dlq.max_reasons".into(), kind: ProblemKind::Zero });
    }
    DlqConfig {
        enabled: raw.enabled,
        topics,
        source_headers: raw.source_headers,
        reason_headers: raw.reason_headers,
        source_field,
        reason_field,
        max_reasons: raw.max_reasons,
        count_quarantine: raw.count_quarantine,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn default_patterns_cover_the_common_conventions() {
        let config = Config::from_toml("", &|_| None).unwrap();
        for dlq in ["orders.dlq", "orders-dlq", "orders_DLQ", "orders.DLT", "orders-dlt", "dlq.orders", "DLQ-orders"] {
            assert!(config.dlq.is_dlq_topic(dlq), "{dlq}");
        }
        for other in ["orders", "dlq", "orders.dlqx", "sidlq.orders", "orders.quarantine", "dlqorders"] {
            assert!(!config.dlq.is_dlq_topic(other), "{other}");
        }
    }

    #[test]
    fn bad_dlq_settings_are_reported() {
        let text = "[dlq]\ntopics = [\"(x\"]\nreason_field = \"error\"\nsource_headers = [\"\"]\nmax_reasons = 0\n";
        let found = Config::from_toml(text, &|_| None).unwrap_err().0;
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["dlq.topics[0]", "dlq.reason_field", "dlq.source_headers[0]", "dlq.max_reasons"]);
    }
}
