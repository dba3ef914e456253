//! Governance configuration: `[registry]`, `[quarantine]` and `[[policies]]`.
//!
//! Raw serde structs with documented defaults, validated into typed
//! settings by [`validate`]; problems are pushed to the caller's list so the
//! whole file is reported at once.

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::{ConfigProblem, ProblemKind};

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawRegistry {
    pub url: String,
    pub username: String,
    pub password: String,
    pub ca_file: String,
    pub timeout_ms: u64,
    pub schemas_dir: String,
    pub subject_strategy: String,
    pub on_unavailable: String,
    pub max_schemas: usize,
    pub subject_ttl_ms: u64,
}

impl Default for RawRegistry {
    fn default() -> Self {
        Self {
            url: String::new(),
            username: String::new(),
            password: String::new(),
            ca_file: String::new(),
            timeout_ms: 5_000,
            schemas_dir: "schemas".into(),
            subject_strategy: "topic_name".into(),
            on_unavailable: "pause".into(),
            max_schemas: 10_000,
            subject_ttl_ms: 60_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawQuarantine {
    pub topic_template: String,
    pub create_topics: bool,
    pub connect_headers: bool,
    pub max_error_bytes: usize,
    pub max_in_flight: usize,
    pub write_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    pub transactional: bool,
    pub transactional_id: String,
}

impl Default for RawQuarantine {
    fn default() -> Self {
        Self {
            topic_template: "{topic}.quarantine".into(),
            create_topics: true,
            connect_headers: false,
            max_error_bytes: 512,
            max_in_flight: 10_000,
            write_timeout_ms: 30_000,
            retry_backoff_ms: 1_000,
            transactional: false,
            transactional_id: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawPolicy {
    pub topics: Vec<String>,
    pub required_fields: Vec<String>,
    pub max_payload_bytes: usize,
    pub max_depth: usize,
    pub schema: String,
    pub invalid: String,
    pub pii: String,
    pub pii_kinds: Vec<String>,
    pub tombstones: String,
    pub empty_payloads: String,
    pub keys: String,
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            topics: vec![".*".into()],
            required_fields: ["event_type", "event_id", "trace_id", "created_at", "schema_version", "producer"]
                .map(String::from)
                .to_vec(),
            max_payload_bytes: 1_048_576,
            max_depth: 64,
            schema: "if_available".into(),
            invalid: "quarantine".into(),
            pii: "count".into(),
            pii_kinds: ["email", "payment_card", "phone", "iban"].map(String::from).to_vec(),
            tombstones: "pass".into(),
            empty_payloads: "quarantine".into(),
            keys: "header".into(),
        }
    }
}

/// How the subject of a plain JSON record (no schema ID) is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectStrategy {
    /// `<topic>-value`
    TopicName,
    /// `<event_type>`
    RecordName,
    /// `<topic>-<event_type>`
    TopicRecordName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Pause the partition and retry with backoff (no verdict until the schema is known).
    Pause,
    /// Let the record pass, counted as unverified.
    Unverified,
}

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Confluent-compatible base URL; `None` reads schemas from `schemas_dir`.
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<super::Secret>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub schemas_dir: PathBuf,
    pub subject_strategy: SubjectStrategy,
    pub on_unavailable: OnUnavailable,
    pub max_schemas: usize,
    pub subject_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct QuarantineConfig {
    /// `{topic}` is replaced by the source topic; without it, one shared topic.
    pub topic_template: String,
    pub create_topics: bool,
    pub connect_headers: bool,
    pub max_error_bytes: usize,
    pub max_in_flight: usize,
    /// librdkafka `message.timeout.ms` of the quarantine producer.
    pub write_timeout: Duration,
    /// First retry delay of a paused partition; doubles up to 30 s.
    pub retry_backoff: Duration,
    /// Exactly-once mode: quarantine copies and consumer offsets are
    /// committed in one Kafka transaction under this `transactional.id`.
    /// `None`: at-least-once (the default).
    pub transactional_id: Option<String>,
}

/// Whether `topic` is a quarantine topic named by `template` (never watched).
pub fn is_quarantine_topic(template: &str, topic: &str) -> bool {
    match template.split_once("{topic}") {
        Some((prefix, suffix)) => {
            topic.len() > prefix.len() + suffix.len() && topic.starts_with(prefix) && topic.ends_with(suffix)
        }
        None => topic == template,
    }
}

/// What happens to a record of a given kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not checked at all.
    Off,
    /// Counted; the record is left alone.
    Count,
    /// Counted and copied to quarantine.
    Quarantine,
}

/// Whether a plain JSON record must have a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaRequirement {
    /// No schema lookup for plain JSON (wire-format records are still checked).
    Off,
    /// Validate when the subject exists; otherwise `unverified` (`no_schema`).
    IfAvailable,
    /// A record whose subject does not exist is invalid (`unknown_schema`).
    Required,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub topics: Vec<Regex>,
    pub required_fields: Vec<ContractField>,
    pub max_payload_bytes: usize,
    pub max_depth: usize,
    pub schema: SchemaRequirement,
    /// Invalid records: `Count` or `Quarantine`.
    pub invalid: Action,
    pub pii: Action,
    pub pii_kinds: Vec<String>,
    /// Tombstones (null values): `Off` passes them unchecked, `Quarantine` treats them as invalid.
    pub tombstones: Action,
    pub empty_payloads: Action,
    /// Which record keys are validated against a schema.
    pub keys: KeySchema,
}

/// When a record key is checked against a schema (by ID only: keys carry no
/// envelope to name a subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySchema {
    /// Keys are never checked.
    Off,
    /// Keys with a `__key_schema_id` header are checked against that schema.
    Header,
    /// Also keys in the Confluent wire format (magic byte 0 and a 4-byte ID).
    /// Not the default: a binary key (a big-endian number, a UUID) may start
    /// with a zero byte by chance.
    Wire,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractField {
    EventType,
    EventId,
    TraceId,
    CreatedAt,
    SchemaVersion,
    Producer,
}

impl Policy {
    pub fn applies_to(&self, topic: &str) -> bool {
        self.topics.iter().any(|r| r.is_match(topic))
    }
}

fn problem(problems: &mut Vec<ConfigProblem>, path: String, kind: ProblemKind) {
    problems.push(ConfigProblem { path, kind });
}

fn one_of<T: Copy>(
    problems: &mut Vec<ConfigProblem>,
    path: &str,
    value: &str,
    choices: &[(&str, T)],
    fallback: T,
) -> T {
    match choices.iter().find(|(name, _)| *name == value) {
        Some((_, choice)) => *choice,
        None => {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            problem(
                problems,
                path.into(),
                ProblemKind::InvalidValue(format!("{value:?} is not one of {}", names.join(", "))),
            );
            fallback
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.to_string())
}

pub fn validate_registry(raw: RawRegistry, problems: &mut Vec<ConfigProblem>) -> RegistryConfig {
    let url = non_empty(&raw.url).map(|url| url.trim_end_matches('/').to_string());
    if let Some(url) = &url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            problem(
                problems,
                "registry.url".into(),
                ProblemKind::InvalidValue(format!("{url:?} is not an http(s) URL")),
            );
        }
    } else if raw.schemas_dir.trim().is_empty() {
        problem(problems, "registry.schemas_dir".into(), ProblemKind::Empty);
    }
    if raw.timeout_ms == 0 {
        problem(problems, "registry.timeout_ms".into(), ProblemKind::Zero);
    }
    if raw.max_schemas == 0 {
        problem(problems, "registry.max_schemas".into(), ProblemKind::Zero);
    }
    if raw.subject_ttl_ms == 0 {
        problem(problems, "registry.subject_ttl_ms".into(), ProblemKind::Zero);
    }
    let subject_strategy = one_of(
        problems,
        "registry.subject_strategy",
        &raw.subject_strategy,
        &[
            ("topic_name", SubjectStrategy::TopicName),
            ("record_name", SubjectStrategy::RecordName),
            ("topic_record_name", SubjectStrategy::TopicRecordName),
        ],
        SubjectStrategy::TopicName,
    );
    let on_unavailable = one_of(
        problems,
        "registry.on_unavailable",
        &raw.on_unavailable,
        &[("pause", OnUnavailable::Pause), ("unverified", OnUnavailable::Unverified)],
        OnUnavailable::Pause,
    );
    RegistryConfig {
        url,
        username: non_empty(&raw.username),
        password: non_empty(&raw.password).map(super::Secret::new),
        ca_file: non_empty(&raw.ca_file).map(PathBuf::from),
        timeout: Duration::from_millis(raw.timeout_ms),
        schemas_dir: PathBuf::from(raw.schemas_dir),
        subject_strategy,
        on_unavailable,
        max_schemas: raw.max_schemas,
        subject_ttl: Duration::from_millis(raw.subject_ttl_ms),
    }
}

pub fn validate_quarantine(raw: RawQuarantine, group_id: &str, problems: &mut Vec<ConfigProblem>) -> QuarantineConfig {
    if raw.topic_template.trim().is_empty() {
        problem(problems, "quarantine.topic_template".into(), ProblemKind::Empty);
    } else if raw.topic_template.trim() == "{topic}" {
        problem(
            problems,
            "quarantine.topic_template".into(),
            ProblemKind::InvalidValue("\"{topic}\" alone would quarantine records onto their own topic".into()),
        );
    }
    for (key, value) in [
        ("max_error_bytes", raw.max_error_bytes as u64),
        ("max_in_flight", raw.max_in_flight as u64),
        ("write_timeout_ms", raw.write_timeout_ms),
        ("retry_backoff_ms", raw.retry_backoff_ms),
    ] {
        if value == 0 {
            problem(problems, format!("quarantine.{key}"), ProblemKind::Zero);
        }
    }
    if raw.transactional && raw.write_timeout_ms > 60_000 {
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        problem(
            problems,
            "quarantine.write_timeout_ms".into(),
            ProblemKind::InvalidValue("at most 60000 with quarantine.transactional = true".into()),
        );
    }
    QuarantineConfig {
        topic_template: raw.topic_template,
        create_topics: raw.create_topics,
        connect_headers: raw.connect_headers,
        max_error_bytes: raw.max_error_bytes,
        max_in_flight: raw.max_in_flight,
        write_timeout: Duration::from_millis(raw.write_timeout_ms),
        retry_backoff: Duration::from_millis(raw.retry_backoff_ms),
        transactional_id: raw.transactional.then(|| {
            let id = raw.transactional_id.trim();
            if id.is_empty() {
                default_transactional_id(group_id)
            } else {
                id.to_string()
            }
        }),
    }
}

/// `<group>-<hostname>`: stable across restarts of one replica (a
/// StatefulSet pod keeps its name) and distinct between replicas, which is
/// what a `transactional.id` must be: a restarted replica fences and aborts
/// its predecessor's open transaction.
fn default_transactional_id(group_id: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{group_id}-{host}")
}

pub fn validate_policies(raw: Vec<RawPolicy>, problems: &mut Vec<ConfigProblem>) -> Vec<Policy> {
    let raw = if raw.is_empty() { vec![RawPolicy::default()] } else { raw };
    let mut policies = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let at = |key: &str| format!("policies[{index}].{key}");
        if raw.topics.is_empty() {
            problem(problems, at("topics"), ProblemKind::Empty);
        }
        let (topics, invalid) = super::compile_patterns(&format!("policies[{index}].topics"), &raw.topics);
        problems.extend(invalid);
        let mut required_fields = Vec::new();
        for (i, name) in raw.required_fields.iter().enumerate() {
            let field = match name.as_str() {
                "event_type" => ContractField::EventType,
                "event_id" => ContractField::EventId,
                "trace_id" => ContractField::TraceId,
                "created_at" => ContractField::CreatedAt,
                "schema_version" => ContractField::SchemaVersion,
                "producer" => ContractField::Producer,
                other => {
                    problem(
                        problems,
                        format!("policies[{index}].required_fields[{i}]"),
                        ProblemKind::InvalidValue(format!("{other:?} is not a contract field")),
                    );
                    continue;
                }
            };
            required_fields.push(field);
        }
        for (i, kind) in raw.pii_kinds.iter().enumerate() {
            if !["email", "payment_card", "phone", "iban"].contains(&kind.as_str()) {
                problem(
                    problems,
                    format!("policies[{index}].pii_kinds[{i}]"),
                    ProblemKind::InvalidValue(format!("{kind:?} is not one of email, payment_card, phone, iban")),
                );
            }
        }
        if raw.max_payload_bytes == 0 {
            problem(problems, at("max_payload_bytes"), ProblemKind::Zero);
        }
        if raw.max_depth == 0 {
            problem(problems, at("max_depth"), ProblemKind::Zero);
        }
        let schema = one_of(
            problems,
            &at("schema"),
            &raw.schema,
            &[
                ("off", SchemaRequirement::Off),
                ("if_available", SchemaRequirement::IfAvailable),
                ("required", SchemaRequirement::Required),
            ],
            SchemaRequirement::IfAvailable,
        );
        let count_or_quarantine = [("count", Action::Count), ("quarantine", Action::Quarantine)];
        let invalid = one_of(problems, &at("invalid"), &raw.invalid, &count_or_quarantine, Action::Quarantine);
        let pii = one_of(
            problems,
            &at("pii"),
            &raw.pii,
            &[("off", Action::Off), ("count", Action::Count), ("quarantine", Action::Quarantine)],
            Action::Count,
        );
        let pass_or_quarantine = [("pass", Action::Off), ("quarantine", Action::Quarantine)];
        let tombstones = one_of(problems, &at("tombstones"), &raw.tombstones, &pass_or_quarantine, Action::Off);
        let empty_payloads =
            one_of(problems, &at("empty_payloads"), &raw.empty_payloads, &pass_or_quarantine, Action::Quarantine);
        let keys = one_of(
            problems,
            &at("keys"),
            &raw.keys,
            &[("off", KeySchema::Off), ("header", KeySchema::Header), ("wire", KeySchema::Wire)],
            KeySchema::Header,
        );
        policies.push(Policy {
            topics,
            required_fields,
            max_payload_bytes: raw.max_payload_bytes,
            max_depth: raw.max_depth,
            schema,
            invalid,
            pii,
            pii_kinds: raw.pii_kinds,
            tombstones,
            empty_payloads,
            keys,
        });
    }
    policies
}
