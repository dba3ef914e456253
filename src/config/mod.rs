//! Configuration: TOML text → raw serde structs → validated [`Config`].
//!
//! Parsing happens in three steps so that a bad file reports every problem
//! at once, each with its key path:
//!
//! 1. the TOML text is parsed into a tree and every `${VAR}` (or
//!    `${VAR:-default}`) inside a string value is replaced from the
//!    environment, which is passed in as a function so tests never touch the
//!    process environment; `${file:/path}` is replaced by the file's content
//!    (one trailing newline dropped), for secrets mounted as files;
//! 2. the tree is deserialized into [`RawConfig`]; keys that no field takes
//!    are collected (not just the first one) and reported as unknown;
//! 3. [`RawConfig::validate`] builds the typed [`Config`] and collects every
//!    invalid value.
//!
//! `KAFKA_BOOTSTRAP`, when set, overrides `kafka.bootstrap_servers`, so the
//! same file works against the local broker and any other cluster.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

pub mod correlate;
pub mod cost;
pub mod dlq;
pub mod governance;
pub mod lag;
pub mod otlp;
mod secret;

pub use secret::{is_secret_property, KafkaProperties, Secret, REDACTED};

pub use correlate::{CorrelateConfig, CorrelateKafkaConfig, CorrelateMode, Flow, Outcome};
pub use cost::{BudgetConfig, BudgetScope, CostConfig, Price, PriceRule, UsageSource};
pub use dlq::DlqConfig;
pub use governance::{
    Action, ContractField, KeySchema, OnUnavailable, Policy, QuarantineConfig, RegistryConfig, SchemaRequirement,
    SubjectStrategy,
};
pub use lag::LagConfig;
pub use otlp::{OtlpConfig, OtlpProtocol};

/// Environment variable that overrides `kafka.bootstrap_servers`.
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP";

/// librdkafka properties that pipewarden sets itself; setting them in
/// `[kafka.properties]` would break the at-least-once offset handling or
/// duplicate a first-class key, so they are rejected with a pointer to the
/// right key.
const MANAGED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("group.id", "kafka.group_id"),
    ("client.id", "kafka.client_id"),
    ("auto.offset.reset", "kafka.auto_offset_reset"),
    ("auto.commit.interval.ms", "kafka.commit_interval_ms"),
    ("enable.auto.commit", "(managed: offsets are committed periodically after processing)"),
    ("enable.auto.offset.store", "(managed: offsets are stored only after a record is processed)"),
];

/// librdkafka properties pipewarden tunes by default; `[kafka.properties]`
/// may override each of them.
pub const TUNED_PROPERTIES: &[(&str, &str)] = &[
    // librdkafka waits up to 500 ms for a fetch to fill by default; an
    // observer wants records promptly, at a small cost in fetch requests.
    ("fetch.wait.max.ms", "100"),
    // When the local fetch queue is full librdkafka pauses fetching for this
    // long (default 1000 ms). A consumer that is briefly slower than the
    // fetcher then idles for up to a second at a time: measured with
    // `make bench`, the default halved pipewarden's catch-up throughput.
    ("fetch.queue.backoff.ms", "20"),
];

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `topics.include[1]`; empty for file-level problems.
    pub path: String,
    pub kind: ProblemKind,
}

/// What is wrong with a key. Each kind is one branch a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file is not valid TOML, or a value has the wrong type.
    Syntax(String),
    /// A key that pipewarden does not know (often a typo).
    UnknownKey,
    /// `${VAR}` names a variable that is not set and has no `:-default`.
    MissingEnvVar(String),
    /// `${` without a closing `}` or with an invalid variable name.
    BadInterpolation(String),
    /// A value that must not be empty is empty.
    Empty,
    /// A number that must be positive is zero.
    Zero,
    /// A regular expression that does not compile.
    InvalidRegex(String),
    /// An envelope source that is not `/pointer`, `header:NAME` or `traceparent:NAME`.
    InvalidSource(String),
    /// A librdkafka property that pipewarden manages; use the named key instead.
    ManagedProperty(&'static str),
    /// A value outside its allowed set or format.
    InvalidValue(String),
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "(file)" } else { &self.path };
        match &self.kind {
            ProblemKind::Syntax(msg) => write!(f, "{path}: {msg}"),
            ProblemKind::UnknownKey => write!(f, "{path}: unknown key"),
            ProblemKind::MissingEnvVar(var) => {
                write!(f, "{path}: environment variable {var} is not set (use ${{{var}:-default}} for a default)")
            }
            ProblemKind::BadInterpolation(msg) => write!(f, "{path}: {msg}"),
            ProblemKind::Empty => write!(f, "{path}: must not be empty"),
            ProblemKind::Zero => write!(f, "{path}: must be greater than zero"),
            ProblemKind::InvalidRegex(msg) => write!(f, "{path}: invalid regular expression: {msg}"),
            ProblemKind::InvalidSource(src) => write!(
                f,
                "{path}: invalid source {src:?}: expected a JSON pointer (\"/field\"), \"header:NAME\" or \"traceparent:NAME\""
            ),
            ProblemKind::ManagedProperty(instead) => {
                write!(f, "{path}: this librdkafka property is set by pipewarden; use {instead}")
            }
            ProblemKind::InvalidValue(msg) => write!(f, "{path}: {msg}"),
        }
    }
}

/// All problems of one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------------------
// Raw configuration, exactly as written in the file.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawConfig {
    pub kafka: RawKafka,
    pub topics: RawTopics,
    pub envelope: RawEnvelope,
    pub http: RawHttp,
    pub metrics: RawMetrics,
    pub shutdown: RawShutdown,
    pub log: RawLog,
    pub registry: governance::RawRegistry,
    pub quarantine: governance::RawQuarantine,
    pub policies: Vec<governance::RawPolicy>,
    pub lag: lag::RawLag,
    pub cost: cost::RawCost,
    pub budgets: Vec<cost::RawBudget>,
    pub dlq: dlq::RawDlq,
    pub correlate: correlate::RawCorrelate,
    pub flows: Vec<correlate::RawFlow>,
    pub otlp: otlp::RawOtlp,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawKafka {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub client_id: String,
    pub auto_offset_reset: String,
    pub commit_interval_ms: u64,
    pub properties: BTreeMap<String, String>,
}

impl Default for RawKafka {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            group_id: "pipewarden".into(),
            client_id: "pipewarden".into(),
            auto_offset_reset: "earliest".into(),
            commit_interval_ms: 5_000,
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawTopics {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub exclude_internal: bool,
    pub refresh_interval_ms: u64,
    pub internal_prefix: String,
}

impl Default for RawTopics {
    fn default() -> Self {
        Self {
            include: vec![".*".into()],
            exclude: Vec::new(),
            exclude_internal: true,
            refresh_interval_ms: 10_000,
            internal_prefix: "pipewarden.".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawEnvelope {
    pub event_type: Vec<String>,
    pub trace_id: Vec<String>,
    pub event_id: Vec<String>,
    pub created_at: Vec<String>,
    pub schema_version: Vec<String>,
    pub producer: Vec<String>,
    pub max_payload_bytes: usize,
    pub max_label_length: usize,
}

impl Default for RawEnvelope {
    fn default() -> Self {
        let one = |s: &str| vec![s.to_string()];
        Self {
            event_type: one("/event_type"),
            trace_id: vec!["/trace_id".into(), "/correlation_id".into(), "traceparent:traceparent".into()],
            event_id: one("/event_id"),
            created_at: one("/created_at"),
            schema_version: one("/schema_version"),
            producer: one("/producer"),
            max_payload_bytes: 1_048_576,
            max_label_length: 128,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawHttp {
    pub listen: String,
    /// Bearer token of the `/api/v1/*` routes; empty: open.
    pub api_token: String,
    /// Bearer token of `/metrics`; empty: open.
    pub metrics_token: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self { listen: "0.0.0.0:9464".into(), api_token: String::new(), metrics_token: String::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawMetrics {
    pub max_label_values: usize,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self { max_label_values: 1_000 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawShutdown {
    pub grace_period_ms: u64,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self { grace_period_ms: 10_000 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawLog {
    pub level: String,
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self { level: "info".into(), format: "text".into() }
    }
}

// ---------------------------------------------------------------------------
// Validated configuration.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub envelope: EnvelopeConfig,
    pub http: HttpConfig,
    pub metrics: MetricsConfig,
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    pub registry: RegistryConfig,
    pub quarantine: QuarantineConfig,
    /// Checked in order; the first whose topic patterns match applies.
    pub policies: Vec<Policy>,
    pub lag: LagConfig,
    pub cost: CostConfig,
    pub dlq: DlqConfig,
    pub correlate: CorrelateConfig,
    /// End-to-end flows measured by the correlator.
    pub flows: Vec<Flow>,
    pub otlp: OtlpConfig,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub client_id: String,
    pub auto_offset_reset: OffsetReset,
    /// How often stored offsets are committed (librdkafka `auto.commit.interval.ms`).
    pub commit_interval: Duration,
    /// Passed to librdkafka unchanged (after `${VAR}` interpolation).
    pub properties: KafkaProperties,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
}

impl OffsetReset {
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TopicsConfig {
    /// A topic is watched when one of these matches the whole name ...
    pub include: Vec<Regex>,
    /// ... and none of these does.
    pub exclude: Vec<Regex>,
    /// Skip `__*` topics, pipewarden's own topics and quarantine topics.
    pub exclude_internal: bool,
    /// How often the topic list is re-read so new topics are picked up.
    pub refresh_interval: Duration,
    /// `quarantine.topic_template`, so quarantine topics are never watched.
    pub quarantine_template: String,
    /// Prefix of pipewarden's own topics (e.g. the repartition topic).
    pub internal_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// RFC 6901 JSON pointer into the payload, already split into unescaped keys.
    Pointer(Vec<String>),
    /// Raw value of a record header.
    Header(String),
    /// W3C trace context header; yields its trace ID.
    TraceParent(String),
}

#[derive(Debug, Clone)]
pub struct EnvelopeConfig {
    pub event_type: Vec<Source>,
    pub trace_id: Vec<Source>,
    pub event_id: Vec<Source>,
    pub created_at: Vec<Source>,
    pub schema_version: Vec<Source>,
    pub producer: Vec<Source>,
    /// Records larger than this are not parsed (reason `payload_too_large`).
    pub max_payload_bytes: usize,
    /// Event types and producers longer than this are cut before becoming labels.
    pub max_label_length: usize,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Tokens of the protected routes (`Debug` redacts them).
    pub auth: crate::http::auth::HttpAuth,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Distinct values per label name (topic, event_type, producer) before
    /// new values go to the `__overflow__` bucket.
    pub max_label_values: usize,
}

#[derive(Debug, Clone)]
pub struct ShutdownConfig {
    pub grace_period: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigErrors(vec![ConfigProblem {
                path: String::new(),
                kind: ProblemKind::Syntax(format!("cannot read {}: {err}", path.display())),
            }])
        })?;
        Config::from_toml(&text, env)
    }

    /// Parses and validates configuration text; `env` looks up environment variables.
    pub fn from_toml(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let mut tree: toml::Table = text.parse().map_err(|err: toml::de::Error| {
            ConfigErrors(vec![ConfigProblem {
                path: String::new(),
                kind: ProblemKind::Syntax(err.to_string().trim().to_string()),
            }])
        })?;
        for (key, value) in tree.iter_mut() {
            interpolate_value(value, key.clone(), env, &mut problems);
        }

        let mut unknown = Vec::new();
        let raw: RawConfig =
            match serde_ignored::deserialize(toml::Value::Table(tree), |path| unknown.push(path.to_string())) {
                Ok(raw) => raw,
                Err(err) => {
                    problems.push(ConfigProblem { path: String::new(), kind: ProblemKind::Syntax(err.to_string()) });
                    return Err(ConfigErrors(problems));
                }
            };
        problems.extend(unknown.into_iter().map(|path| ConfigProblem { path, kind: ProblemKind::UnknownKey }));

        match raw.validate(env) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigErrors(problems)),
            Err(ConfigErrors(more)) => {
                problems.extend(more);
                Err(ConfigErrors(problems))
            }
        }
    }

    /// Properties for pipewarden's other clients (quarantine producer,
    /// admin): connection and security settings from `[kafka.properties]`,
    /// without the consumer-only ones (librdkafka warns about those).
    pub fn client_properties(&self) -> Vec<(String, String)> {
        let mut props = vec![
            ("bootstrap.servers".to_string(), self.kafka.bootstrap_servers.clone()),
            ("client.id".to_string(), self.kafka.client_id.clone()),
        ];
        props.extend(
            self.kafka.properties.iter().filter(|(k, _)| !is_consumer_only(k)).map(|(k, v)| (k.clone(), v.clone())),
        );
        props
    }

    /// librdkafka properties for the consumer, pass-through properties last
    /// so they can tune anything pipewarden does not manage.
    pub fn consumer_properties(&self) -> Vec<(String, String)> {
        let kafka = &self.kafka;
        let mut props = vec![
            ("bootstrap.servers".to_string(), kafka.bootstrap_servers.clone()),
            ("group.id".to_string(), kafka.group_id.clone()),
            ("client.id".to_string(), kafka.client_id.clone()),
            ("auto.offset.reset".to_string(), kafka.auto_offset_reset.as_str().to_string()),
            // At-least-once: the ingest loop stores an offset only after the
            // record is processed; librdkafka commits stored offsets on this
            // interval, on revocation and on close.
            // In transactional mode offsets are committed only inside the
            // quarantine producer's transactions, never by the consumer.
            ("enable.auto.commit".to_string(), self.quarantine.transactional_id.is_none().to_string()),
            ("enable.auto.offset.store".to_string(), "false".to_string()),
            ("auto.commit.interval.ms".to_string(), kafka.commit_interval.as_millis().to_string()),
        ];
        for (key, value) in TUNED_PROPERTIES {
            if !kafka.properties.contains_key(*key) {
                props.push((key.to_string(), value.to_string()));
            }
        }
        props.extend(kafka.properties.iter().map(|(k, v)| (k.clone(), v.clone())));
        props
    }
}

impl RawConfig {
    pub fn validate(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let mut problem = |path: &str, kind: ProblemKind| problems.push(ConfigProblem { path: path.to_string(), kind });

        // kafka
        let bootstrap_servers =
            env(BOOTSTRAP_ENV).filter(|value| !value.trim().is_empty()).unwrap_or(self.kafka.bootstrap_servers);
        if bootstrap_servers.trim().is_empty() {
            problem("kafka.bootstrap_servers", ProblemKind::Empty);
        }
        if self.kafka.group_id.trim().is_empty() {
            problem("kafka.group_id", ProblemKind::Empty);
        }
        if self.kafka.client_id.trim().is_empty() {
            problem("kafka.client_id", ProblemKind::Empty);
        }
        let auto_offset_reset = match self.kafka.auto_offset_reset.as_str() {
            "earliest" => OffsetReset::Earliest,
            "latest" => OffsetReset::Latest,
            other => {
                problem(
                    "kafka.auto_offset_reset",
                    ProblemKind::InvalidValue(format!("{other:?} is not one of \"earliest\", \"latest\"")),
                );
                OffsetReset::Earliest
            }
        };
        if self.kafka.commit_interval_ms == 0 {
            problem("kafka.commit_interval_ms", ProblemKind::Zero);
        }
        for key in self.kafka.properties.keys() {
            if let Some((_, instead)) = MANAGED_PROPERTIES.iter().find(|(name, _)| name == key) {
                problem(&format!("kafka.properties.\"{key}\""), ProblemKind::ManagedProperty(instead));
            }
        }

        // topics
        if self.topics.include.is_empty() {
            problem("topics.include", ProblemKind::Empty);
        }
        let mut compile = |key: &str, patterns: &[String]| -> Vec<Regex> {
            let (regexes, invalid) = compile_patterns(key, patterns);
            invalid.into_iter().for_each(|p| problem(&p.path, p.kind));
            regexes
        };
        let include = compile("topics.include", &self.topics.include);
        let exclude = compile("topics.exclude", &self.topics.exclude);
        if self.topics.refresh_interval_ms == 0 {
            problem("topics.refresh_interval_ms", ProblemKind::Zero);
        }
        if self.topics.internal_prefix.is_empty() {
            problem("topics.internal_prefix", ProblemKind::Empty);
        }

        // envelope
        let mut sources = |key: &str, list: &[String]| -> Vec<Source> {
            list.iter()
                .enumerate()
                .filter_map(|(index, text)| match parse_source(text) {
                    Some(source) => Some(source),
                    None => {
                        problem(&format!("envelope.{key}[{index}]"), ProblemKind::InvalidSource(text.clone()));
                        None
                    }
                })
                .collect()
        };
        let envelope = EnvelopeConfig {
            event_type: sources("event_type", &self.envelope.event_type),
            trace_id: sources("trace_id", &self.envelope.trace_id),
            event_id: sources("event_id", &self.envelope.event_id),
            created_at: sources("created_at", &self.envelope.created_at),
            schema_version: sources("schema_version", &self.envelope.schema_version),
            producer: sources("producer", &self.envelope.producer),
            max_payload_bytes: self.envelope.max_payload_bytes,
            max_label_length: self.envelope.max_label_length,
        };
        if self.envelope.event_type.is_empty() {
            problem("envelope.event_type", ProblemKind::Empty);
        }
        if self.envelope.trace_id.is_empty() {
            problem("envelope.trace_id", ProblemKind::Empty);
        }
        if envelope.max_payload_bytes == 0 {
            problem("envelope.max_payload_bytes", ProblemKind::Zero);
        }
        if envelope.max_label_length == 0 {
            problem("envelope.max_label_length", ProblemKind::Zero);
        }

        // http
        let listen = match self.http.listen.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                problem(
                    "http.listen",
                    ProblemKind::InvalidValue(format!(
                        "{:?} is not an IP address and port like 0.0.0.0:9464, 127.0.0.1:9464, [::]:9464 or [::1]:9464",
                        self.http.listen
                    )),
                );
                SocketAddr::from(([0, 0, 0, 0], 9464))
            }
        };

        for (key, token) in [("http.api_token", &self.http.api_token), ("http.metrics_token", &self.http.metrics_token)]
        {
            if !crate::http::auth::is_bearer_token(token) {
                // The value itself is never echoed: it is a secret.
                problem(
                    key,
                    ProblemKind::InvalidValue(
                        "a bearer token may hold only letters, digits and - . _ ~ + / (then = padding)".into(),
                    ),
                );
            }
        }

        // metrics, shutdown, log
        if self.metrics.max_label_values == 0 {
            problem("metrics.max_label_values", ProblemKind::Zero);
        }
        if self.shutdown.grace_period_ms == 0 {
            problem("shutdown.grace_period_ms", ProblemKind::Zero);
        }
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problem("log.level", ProblemKind::InvalidValue(format!("{:?}: {err}", self.log.level)));
        }
        let format = match self.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                problem("log.format", ProblemKind::InvalidValue(format!("{other:?} is not one of \"text\", \"json\"")));
                LogFormat::Text
            }
        };

        let registry = governance::validate_registry(self.registry, &mut problems);
        let quarantine = governance::validate_quarantine(self.quarantine, &self.kafka.group_id, &mut problems);
        let policies = governance::validate_policies(self.policies, &mut problems);
        let lag = lag::validate_lag(self.lag, &mut problems);
        let cost = cost::validate_cost(self.cost, self.budgets, &mut problems);
        let dlq = dlq::validate_dlq(self.dlq, &mut problems);
        let correlate = correlate::validate_correlate(self.correlate, &mut problems);
        let flows = correlate::validate_flows(self.flows, &mut problems);
        // The observations topic must never be watched: pipewarden would
        // observe its own observations.
        if correlate.mode == CorrelateMode::Kafka
            && !(self.topics.exclude_internal && correlate.kafka.topic.starts_with(&self.topics.internal_prefix))
        {
            problems.push(ConfigProblem {
                path: "correlate.kafka.topic".into(),
                kind: ProblemKind::InvalidValue(format!(
                    "must start with topics.internal_prefix ({:?}) with topics.exclude_internal = true, so it is never watched",
                    self.topics.internal_prefix
                )),
            });
        }
        let otlp = otlp::validate_otlp(self.otlp, &mut problems);

        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        Ok(Config {
            registry,
            policies,
            cost,
            dlq,
            correlate,
            flows,
            kafka: KafkaConfig {
                bootstrap_servers,
                group_id: self.kafka.group_id,
                client_id: self.kafka.client_id,
                auto_offset_reset,
                commit_interval: Duration::from_millis(self.kafka.commit_interval_ms),
                properties: KafkaProperties::new(self.kafka.properties),
            },
            topics: TopicsConfig {
                include,
                exclude,
                exclude_internal: self.topics.exclude_internal,
                refresh_interval: Duration::from_millis(self.topics.refresh_interval_ms),
                quarantine_template: quarantine.topic_template.clone(),
                internal_prefix: self.topics.internal_prefix,
            },
            envelope,
            http: HttpConfig {
                listen,
                auth: crate::http::auth::HttpAuth {
                    api_token: crate::http::auth::BearerToken::new(&self.http.api_token),
                    metrics_token: crate::http::auth::BearerToken::new(&self.http.metrics_token),
                },
            },
            metrics: MetricsConfig { max_label_values: self.metrics.max_label_values },
            shutdown: ShutdownConfig { grace_period: Duration::from_millis(self.shutdown.grace_period_ms) },
            log: LogConfig { level: self.log.level, format },
            quarantine,
            lag,
            otlp,
        })
    }
}

/// Compiles topic patterns anchored to whole names; patterns that do not
/// compile come back as problems at `key[index]`.
pub(crate) fn compile_patterns(key: &str, patterns: &[String]) -> (Vec<Regex>, Vec<ConfigProblem>) {
    let mut problems = Vec::new();
    let regexes = patterns
        .iter()
        .enumerate()
        .filter_map(|(index, pattern)| match Regex::new(&format!("^(?:{pattern})$")) {
            Ok(regex) => Some(regex),
            Err(err) => {
                let message = err.to_string().lines().last().unwrap_or("").trim().to_string();
                problems
                    .push(ConfigProblem { path: format!("{key}[{index}]"), kind: ProblemKind::InvalidRegex(message) });
                None
            }
        })
        .collect();
    (regexes, problems)
}

/// librdkafka properties marked "C" (consumer only) in CONFIGURATION.md.
fn is_consumer_only(key: &str) -> bool {
    const PREFIXES: &[&str] = &["fetch.", "queued.", "group.", "auto.commit", "enable.auto", "offset.store"];
    const KEYS: &[&str] = &[
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "partition.assignment.strategy",
        "max.poll.interval.ms",
        "max.partition.fetch.bytes",
        "enable.partition.eof",
        "check.crcs",
        "isolation.level",
        "consume.callback.max.messages",
        "allow.auto.create.topics",
    ];
    PREFIXES.iter().any(|prefix| key.starts_with(prefix)) || KEYS.contains(&key)
}

/// `"/a/b"` → pointer, `"header:x"` → header, `"traceparent:x"` → W3C header.
pub fn parse_source(text: &str) -> Option<Source> {
    if let Some(name) = text.strip_prefix("header:") {
        return (!name.is_empty()).then(|| Source::Header(name.to_string()));
    }
    if let Some(name) = text.strip_prefix("traceparent:") {
        return (!name.is_empty()).then(|| Source::TraceParent(name.to_string()));
    }
    let rest = text.strip_prefix('/')?;
    let keys: Vec<String> = rest.split('/').map(|key| key.replace("~1", "/").replace("~0", "~")).collect();
    if keys.iter().any(String::is_empty) {
        return None;
    }
    Some(Source::Pointer(keys))
}

fn interpolate_value(
    value: &mut toml::Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<ConfigProblem>,
) {
    match value {
        toml::Value::String(text) => match interpolate(text, env) {
            Ok(Some(replaced)) => *text = replaced,
            Ok(None) => {}
            Err(kind) => problems.push(ConfigProblem { path, kind }),
        },
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                interpolate_value(item, format!("{path}[{index}]"), env, problems);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if key.contains('.') { format!("{path}.\"{key}\"") } else { format!("{path}.{key}") };
                interpolate_value(item, child, env, problems);
            }
        }
        _ => {}
    }
}

/// Replaces `${VAR}`, `${VAR:-default}` and `${file:/path}`; `$${` is a
/// literal `${`. Returns `Ok(None)` when the text has nothing to replace.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, ProblemKind> {
    if !text.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(ProblemKind::BadInterpolation("unclosed ${ in value".into()));
        };
        let body = &body_start[..end];
        if let Some(path) = body.strip_prefix("file:") {
            out.push_str(&read_secret_file(path)?);
            rest = &body_start[end + 1..];
            continue;
        }
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(ProblemKind::BadInterpolation(format!("invalid variable name {name:?} in ${{...}}")));
        }
        match env(name).or_else(|| default.map(str::to_string)) {
            Some(value) => out.push_str(&value),
            None => return Err(ProblemKind::MissingEnvVar(name.to_string())),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// The content of a secret file (a Kubernetes or Docker secret, a file
/// written by a vault agent), without the one trailing newline editors and
/// `echo` add. The error names the path, never the content.
fn read_secret_file(path: &str) -> Result<String, ProblemKind> {
    if path.is_empty() {
        return Err(ProblemKind::BadInterpolation("${file:} needs a path, e.g. ${file:/run/secrets/password}".into()));
    }
    let mut text =
        std::fs::read_to_string(path).map_err(|err| ProblemKind::InvalidValue(format!("cannot read {path}: {err}")))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn problems(text: &str) -> Vec<ConfigProblem> {
        Config::from_toml(text, &no_env).expect_err("config should be rejected").0
    }

    fn has(problems: &[ConfigProblem], path: &str, pred: impl Fn(&ProblemKind) -> bool) -> bool {
        problems.iter().any(|p| p.path == path && pred(&p.kind))
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let config = Config::from_toml("", &no_env).unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(config.kafka.group_id, "pipewarden");
        assert_eq!(config.kafka.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(config.kafka.commit_interval, Duration::from_secs(5));
        assert_eq!(config.topics.refresh_interval, Duration::from_secs(10));
        assert_eq!(config.http.listen, "0.0.0.0:9464".parse().unwrap());
        assert_eq!(config.envelope.trace_id.len(), 3);
        assert_eq!(config.envelope.trace_id[2], Source::TraceParent("traceparent".into()));
        assert_eq!(config.metrics.max_label_values, 1000);
        assert_eq!(config.log.format, LogFormat::Text);
    }

    #[test]
    fn the_annotated_example_file_is_valid() {
        let text = include_str!("../../config.toml");
        let config = Config::from_toml(text, &no_env).unwrap_or_else(|err| panic!("{err}"));
        assert!(!config.topics.include.is_empty());
    }

    #[test]
    fn unknown_keys_are_all_reported_with_their_paths() {
        let found = problems("[kafka]\nbootstrap_server = \"x\"\n[topics]\nincludes = []\n[nonsense]\na = 1\n");
        assert!(has(&found, "kafka.bootstrap_server", |k| *k == ProblemKind::UnknownKey), "{found:?}");
        assert!(has(&found, "topics.includes", |k| *k == ProblemKind::UnknownKey), "{found:?}");
        assert!(has(&found, "nonsense", |k| *k == ProblemKind::UnknownKey), "{found:?}");
    }

    #[test]
    fn syntax_and_type_errors_are_reported() {
        let found = problems("[kafka\n");
        assert!(matches!(found[0].kind, ProblemKind::Syntax(_)));
        let found = problems("[kafka]\ncommit_interval_ms = \"soon\"\n");
        assert!(matches!(found[0].kind, ProblemKind::Syntax(_)), "{found:?}");
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        let text = r#"
            [kafka]
            bootstrap_servers = ""
            group_id = " "
            client_id = ""
            auto_offset_reset = "middle"
            commit_interval_ms = 0
            [kafka.properties]
            "enable.auto.commit" = "false"
            "group.id" = "other"
            "fetch.min.bytes" = "1"
            [topics]
            include = ["agents\\..*", "(unclosed"]
            exclude = ["[z-a]"]
            refresh_interval_ms = 0
            internal_prefix = ""
            [envelope]
            event_type = []
            trace_id = ["trace_id", "header:", "/ok"]
            producer = ["//double"]
            max_payload_bytes = 0
            max_label_length = 0
            [http]
            listen = "localhost"
            [metrics]
            max_label_values = 0
            [shutdown]
            grace_period_ms = 0
            [log]
            level = "loud=[["
            format = "xml"
            [registry]
            url = "ftp://registry"
            subject_strategy = "by_mood"
            on_unavailable = "panic"
            timeout_ms = 0
            [quarantine]
            topic_template = "{topic}"
            max_in_flight = 0
            [[policies]]
            topics = ["ok", "(bad"]
            required_fields = ["event_id", "colour"]
            pii = "maybe"
            pii_kinds = ["email", "shoe_size"]
            schema = "sometimes"
            tombstones = "count"
            max_depth = 0
        "#;
        let found = problems(text);
        type Check = fn(&ProblemKind) -> bool;
        let expect: &[(&str, Check)] = &[
            ("kafka.bootstrap_servers", |k| *k == ProblemKind::Empty),
            ("kafka.group_id", |k| *k == ProblemKind::Empty),
            ("kafka.client_id", |k| *k == ProblemKind::Empty),
            ("kafka.auto_offset_reset", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("kafka.commit_interval_ms", |k| *k == ProblemKind::Zero),
            ("kafka.properties.\"enable.auto.commit\"", |k| matches!(k, ProblemKind::ManagedProperty(_))),
            ("kafka.properties.\"group.id\"", |k| *k == ProblemKind::ManagedProperty("kafka.group_id")),
            ("topics.include[1]", |k| matches!(k, ProblemKind::InvalidRegex(_))),
            ("topics.exclude[0]", |k| matches!(k, ProblemKind::InvalidRegex(_))),
            ("topics.refresh_interval_ms", |k| *k == ProblemKind::Zero),
            ("topics.internal_prefix", |k| *k == ProblemKind::Empty),
            ("envelope.event_type", |k| *k == ProblemKind::Empty),
            ("envelope.trace_id[0]", |k| matches!(k, ProblemKind::InvalidSource(_))),
            ("envelope.trace_id[1]", |k| matches!(k, ProblemKind::InvalidSource(_))),
            ("envelope.producer[0]", |k| matches!(k, ProblemKind::InvalidSource(_))),
            ("envelope.max_payload_bytes", |k| *k == ProblemKind::Zero),
            ("envelope.max_label_length", |k| *k == ProblemKind::Zero),
            ("http.listen", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("metrics.max_label_values", |k| *k == ProblemKind::Zero),
            ("shutdown.grace_period_ms", |k| *k == ProblemKind::Zero),
            ("log.level", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("log.format", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("registry.url", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("registry.subject_strategy", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("registry.on_unavailable", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("registry.timeout_ms", |k| *k == ProblemKind::Zero),
            ("quarantine.topic_template", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("quarantine.max_in_flight", |k| *k == ProblemKind::Zero),
            ("policies[0].topics[1]", |k| matches!(k, ProblemKind::InvalidRegex(_))),
            ("policies[0].required_fields[1]", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("policies[0].pii", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("policies[0].pii_kinds[1]", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("policies[0].schema", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("policies[0].tombstones", |k| matches!(k, ProblemKind::InvalidValue(_))),
            ("policies[0].max_depth", |k| *k == ProblemKind::Zero),
        ];
        for (path, pred) in expect {
            assert!(has(&found, path, pred), "missing problem at {path}: {found:#?}");
        }
        assert_eq!(found.len(), expect.len(), "unexpected extra problems: {found:#?}");
        // Valid entries next to invalid ones are not reported.
        assert!(!found.iter().any(|p| p.path == "topics.include[0]" || p.path == "envelope.trace_id[2]"));
        assert!(!found.iter().any(|p| p.path.contains("fetch.min.bytes")));
    }

    #[test]
    fn environment_variables_are_interpolated_in_strings() {
        let env = |name: &str| match name {
            "SASL_PASSWORD" => Some("s3cret".to_string()),
            "GROUP" => Some("team-a".to_string()),
            _ => None,
        };
        let text = r#"
            [kafka]
            group_id = "pw-${GROUP}"
            client_id = "${CLIENT:-pipewarden-1}"
            [kafka.properties]
            "sasl.password" = "${SASL_PASSWORD}"
            "sasl.username" = "literal $${NOT_A_VAR} and $ sign"
        "#;
        let config = Config::from_toml(text, &env).unwrap();
        assert_eq!(config.kafka.group_id, "pw-team-a");
        assert_eq!(config.kafka.client_id, "pipewarden-1");
        assert_eq!(config.kafka.properties["sasl.password"], "s3cret");
        assert_eq!(config.kafka.properties["sasl.username"], "literal ${NOT_A_VAR} and $ sign");
        let redacted: Vec<(&str, &str)> = config.kafka.properties.redacted().collect();
        assert!(redacted.contains(&("sasl.password", "[redacted]")));
    }

    #[test]
    fn debug_output_of_the_whole_config_holds_no_secret() {
        let env = |name: &str| match name {
            "SASL_PASSWORD" => Some("kafka-s3cret".to_string()),
            "REGISTRY_PASSWORD" => Some("registry-s3cret".to_string()),
            "OTLP_AUTH" => Some("Bearer otlp-s3cret".to_string()),
            "API_TOKEN" => Some("api-s3cret".to_string()),
            "METRICS_TOKEN" => Some("metrics-s3cret".to_string()),
            _ => None,
        };
        let text = r#"
            [kafka.properties]
            "sasl.username" = "pipewarden"
            "sasl.password" = "${SASL_PASSWORD}"
            "sasl.oauthbearer.client.secret" = "${SASL_PASSWORD}"
            [registry]
            url = "http://127.0.0.1:8081"
            username = "reader"
            password = "${REGISTRY_PASSWORD}"
            [otlp]
            endpoint = "http://127.0.0.1:4317"
            [otlp.headers]
            authorization = "${OTLP_AUTH}"
            [http]
            api_token = "${API_TOKEN}"
            metrics_token = "${METRICS_TOKEN}"
        "#;
        let config = Config::from_toml(text, &env).unwrap();
        assert_eq!(config.kafka.properties["sasl.password"], "kafka-s3cret", "the values themselves are kept");
        assert_eq!(config.registry.password.as_ref().map(Secret::expose), Some("registry-s3cret"));
        assert_eq!(config.otlp.headers[0].1.expose(), "Bearer otlp-s3cret");
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("\"sasl.password\": \"[redacted]\""), "{debug}");
        assert!(debug.contains("\"sasl.username\": \"pipewarden\""), "names and plain values stay: {debug}");
        assert!(debug.contains("password: Some(\"[redacted]\")"), "{debug}");
        assert!(debug.contains("(\"authorization\", \"[redacted]\")"), "{debug}");
    }

    #[test]
    fn secrets_are_read_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").unwrap();
        let text = format!(
            "[kafka.properties]\n\"sasl.password\" = \"${{file:{}}}\"\n\"sasl.username\" = \"pw-$${{file:x}}\"\n",
            password.display()
        );
        let config = Config::from_toml(&text, &no_env).unwrap();
        assert_eq!(config.kafka.properties["sasl.password"], "s3cret");
        assert_eq!(config.kafka.properties["sasl.username"], "pw-${file:x}");
        let missing = dir.path().join("missing");
        let found =
            problems(&format!("[kafka]\ngroup_id = \"${{file:{}}}\"\nclient_id = \"${{file:}}\"\n", missing.display()));
        assert!(
            has(&found, "kafka.group_id", |k| matches!(k, ProblemKind::InvalidValue(m) if m.contains("missing"))),
            "{found:?}"
        );
        assert!(has(&found, "kafka.client_id", |k| matches!(k, ProblemKind::BadInterpolation(_))), "{found:?}");
    }

    #[test]
    fn every_secret_librdkafka_property_is_redacted() {
        let secrets = [
            "sasl.password",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.jaas.config",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl.keystore.password",
            "ssl_key",
            "sasl.kerberos.keytab",
        ];
        let mut text = String::from("[kafka.properties]\n");
        for key in secrets {
            text.push_str(&format!("\"{key}\" = \"hidden-{key}\"\n"));
        }
        text.push_str("\"sasl.username\" = \"pipewarden\"\n\"security.protocol\" = \"SASL_SSL\"\n");
        let config = Config::from_toml(&text, &no_env).unwrap();
        let redacted: BTreeMap<&str, &str> = config.kafka.properties.redacted().collect();
        for key in secrets {
            assert_eq!(redacted[key], "[redacted]", "{key}");
        }
        assert_eq!(redacted["sasl.username"], "pipewarden");
        assert_eq!(redacted["security.protocol"], "SASL_SSL");
    }

    #[test]
    fn missing_and_malformed_variables_are_reported_with_paths() {
        let found = problems("[kafka]\ngroup_id = \"${NOPE}\"\n[topics]\ninclude = [\"${A\", \"${1X}\"]\n");
        assert!(has(&found, "kafka.group_id", |k| *k == ProblemKind::MissingEnvVar("NOPE".into())), "{found:?}");
        assert!(has(&found, "topics.include[0]", |k| matches!(k, ProblemKind::BadInterpolation(_))), "{found:?}");
        assert!(has(&found, "topics.include[1]", |k| matches!(k, ProblemKind::BadInterpolation(_))), "{found:?}");
    }

    #[test]
    fn bootstrap_servers_can_be_overridden_from_the_environment() {
        let env = |name: &str| (name == BOOTSTRAP_ENV).then(|| "broker-a:9093,broker-b:9093".to_string());
        let config = Config::from_toml("[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n", &env).unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "broker-a:9093,broker-b:9093");
    }

    #[test]
    fn pass_through_properties_reach_librdkafka_after_managed_ones() {
        let config = Config::from_toml("[kafka.properties]\n\"fetch.min.bytes\" = \"1024\"\n", &no_env).unwrap();
        let props = config.consumer_properties();
        assert_eq!(props.last().unwrap(), &("fetch.min.bytes".to_string(), "1024".to_string()));
        assert!(props.contains(&("enable.auto.offset.store".into(), "false".into())));
        assert!(props.contains(&("fetch.queue.backoff.ms".into(), "20".into())));
        // The producer and admin clients do not get consumer-only properties.
        assert!(!config.client_properties().iter().any(|(k, _)| k == "fetch.min.bytes"));
        // A tuned default gives way to the user's value.
        let config = Config::from_toml("[kafka.properties]\n\"fetch.queue.backoff.ms\" = \"500\"\n", &no_env).unwrap();
        let backoff: Vec<_> =
            config.consumer_properties().into_iter().filter(|(k, _)| k == "fetch.queue.backoff.ms").collect();
        assert_eq!(backoff, vec![("fetch.queue.backoff.ms".to_string(), "500".to_string())]);
    }

    #[test]
    fn sources_parse_pointers_headers_and_traceparent() {
        assert_eq!(parse_source("/a/b"), Some(Source::Pointer(vec!["a".into(), "b".into()])));
        assert_eq!(parse_source("/a~1b/c~0d"), Some(Source::Pointer(vec!["a/b".into(), "c~d".into()])));
        assert_eq!(parse_source("header:x-trace"), Some(Source::Header("x-trace".into())));
        assert_eq!(parse_source("traceparent:tp"), Some(Source::TraceParent("tp".into())));
        assert_eq!(parse_source("a/b"), None);
        assert_eq!(parse_source("/"), None);
        assert_eq!(parse_source("header:"), None);
    }
}
