//! Validate: one record and its envelope in, a [`Verdict`] out.
//!
//! In the data path this sits between decode and observe. The checks run
//! cheapest first, under the policy of the record's topic (first
//! `[[policies]]` entry whose patterns match):
//!
//! 1. tombstones and empty values, by their own policy;
//! 2. size (`oversize`) and JSON nesting depth (`too_deep`);
//! 3. well-formed JSON object (`not_json`), from the envelope walk;
//! 4. the event contract: required fields present (`missing_field`) and of
//!    the right type (`bad_field_type`);
//! 5. the schema: by the wire-format ID (or `__value_schema_id` header),
//!    else by subject (strategy from config, version from `schema_version`
//!    when the registry has it, else latest): `unknown_schema_id`,
//!    `unknown_schema`, `schema_mismatch`, `bad_wire_format`;
//! 6. the key, when it names a schema (`__key_schema_id` header, or the
//!    wire format if the policy says `keys = "wire"`): `bad_key`;
//! 7. PII detectors over string values (`pii`), counted or quarantined.
//!
//! A schema that is not cached yet never yields a verdict: the record gets
//! [`Verdict::Wait`] (the ingest loop pauses its partition and retries) or,
//! when the registry is down and `registry.on_unavailable = "unverified"`,
//! [`Verdict::Unverified`]. A registry outage is never a reason to
//! quarantine.
//!
//! Plain synchronous code: the schema cache answers from memory and fetches
//! misses on its own thread.

pub mod avro_depth;
pub mod cache;
pub mod pii;
pub mod registry;
pub mod schema;

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::{
    Action, Config, ContractField, KeySchema, OnUnavailable, Policy, RegistryConfig, SchemaRequirement, SubjectStrategy,
};
use crate::decode::{Envelope, EnvelopeExtractor, EnvelopeProblem, Headers, PayloadFormat};
use crate::tape::Tape;
use cache::{CacheSettings, Found, Lookup, SchemaCache, SchemaMemo, SchemaSource};
use pii::{PiiKind, PiiKinds, PiiScanner};
use registry::{RegistryClient, RegistrySettings};
use schema::{Violation, ViolationReason};

/// Looked up once per record (the topic's policy): aHash, as in `observe`.
type HashMap<K, V> = ahash::AHashMap<K, V>;

/// Builds the schema cache from `[registry]`: a registry client when a URL is
/// set, else the schema folder (read now, so bad files fail the start-up).
pub fn schema_cache(config: &RegistryConfig) -> Result<SchemaCache, String> {
    let source = match &config.url {
        Some(url) => SchemaSource::Registry(RegistryClient::new(RegistrySettings {
            url: url.clone(),
            username: config.username.clone(),
            password: config.password.clone(),
            ca_file: config.ca_file.clone(),
            timeout: config.timeout,
        })?),
        None => SchemaSource::Local(config.schemas_dir.clone()),
    };
    let settings =
        CacheSettings { max_schemas: config.max_schemas, subject_ttl: config.subject_ttl, ..CacheSettings::default() };
    SchemaCache::new(source, settings)
}

/// Why a record is invalid: a closed set, the only error label on metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    NotJson,
    BadWireFormat,
    UnknownSchemaId,
    UnknownSchema,
    SchemaMismatch,
    MissingField,
    BadFieldType,
    Oversize,
    TooDeep,
    EmptyPayload,
    Tombstone,
    Pii,
    BadKey,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::NotJson,
        Reason::BadWireFormat,
        Reason::UnknownSchemaId,
        Reason::UnknownSchema,
        Reason::SchemaMismatch,
        Reason::MissingField,
        Reason::BadFieldType,
        Reason::Oversize,
        Reason::TooDeep,
        Reason::EmptyPayload,
        Reason::Tombstone,
        Reason::Pii,
        Reason::BadKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotJson => "not_json",
            Reason::BadWireFormat => "bad_wire_format",
            Reason::UnknownSchemaId => "unknown_schema_id",
            Reason::UnknownSchema => "unknown_schema",
            Reason::SchemaMismatch => "schema_mismatch",
            Reason::MissingField => "missing_field",
            Reason::BadFieldType => "bad_field_type",
            Reason::Oversize => "oversize",
            Reason::TooDeep => "too_deep",
            Reason::EmptyPayload => "empty_payload",
            Reason::Tombstone => "tombstone",
            Reason::Pii => "pii",
            Reason::BadKey => "bad_key",
        }
    }
}

/// Why a record passed without a full check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnverifiedReason {
    /// The registry could not be reached (`registry.on_unavailable = "unverified"`).
    RegistryUnavailable,
    /// No schema exists for the record's subject (`schema = "if_available"`).
    NoSchema,
    /// The schema the record names does not compile.
    UnusableSchema,
}

impl UnverifiedReason {
    pub const ALL: [UnverifiedReason; 3] =
        [UnverifiedReason::RegistryUnavailable, UnverifiedReason::NoSchema, UnverifiedReason::UnusableSchema];

    pub fn as_str(self) -> &'static str {
        match self {
            UnverifiedReason::RegistryUnavailable => "registry_unavailable",
            UnverifiedReason::NoSchema => "no_schema",
            UnverifiedReason::UnusableSchema => "unusable_schema",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid {
        reason: Reason,
        /// Human-readable, for the quarantine header and debug logs; never a label.
        detail: Cow<'static, str>,
        schema_id: Option<u32>,
        /// Whether the policy sends it to quarantine (else it is only counted).
        quarantine: bool,
    },
    Unverified(UnverifiedReason),
    /// The schema is being fetched: no verdict yet; retry the record later.
    Wait,
}

/// A verdict plus what the PII detectors found (counted even when the
/// policy only counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub verdict: Verdict,
    pub pii: PiiKinds,
}

impl Checked {
    fn new(verdict: Verdict) -> Self {
        Self { verdict, pii: PiiKinds::default() }
    }
}

struct CompiledPolicy {
    policy: Policy,
    pii: PiiScanner,
}

pub struct Validator {
    /// The shared schema cache, behind this thread's memo of it.
    schemas: SchemaMemo,
    policies: Vec<CompiledPolicy>,
    /// Index of the policy of each topic seen (`None`: no policy applies).
    topic_policy: HashMap<Box<str>, Option<usize>>,
    /// `<topic>-value` per topic, so the common strategy allocates once.
    topic_subjects: HashMap<Box<str>, String>,
    strategy: SubjectStrategy,
    on_unavailable: OnUnavailable,
    /// This thread's parse buffers: each JSON record is parsed once, here,
    /// for the envelope, the schema and the PII checks ([`Validator::prepare`]).
    tape: Tape,
}

impl Validator {
    pub fn new(config: &Config, cache: Arc<SchemaCache>) -> Self {
        let policies = config
            .policies
            .iter()
            .map(|policy| {
                let mut kinds = PiiKinds::default();
                for kind in PiiKind::ALL {
                    if policy.pii_kinds.iter().any(|k| k == kind.as_str()) {
                        kinds.insert(kind);
                    }
                }
                CompiledPolicy { policy: policy.clone(), pii: PiiScanner::new(kinds) }
            })
            .collect();
        Self {
            schemas: SchemaMemo::new(cache),
            policies,
            topic_policy: HashMap::default(),
            topic_subjects: HashMap::default(),
            strategy: config.registry.subject_strategy,
            on_unavailable: config.registry.on_unavailable,
            tape: Tape::default(),
        }
    }

    /// Whether some policy reads a header of every record it checks (the
    /// schema-ID headers of values and keys, see `header_schema_id` and
    /// `check_key`).
    pub fn reads_headers(&self) -> bool {
        self.policies.iter().any(|p| p.policy.schema != SchemaRequirement::Off || p.policy.keys != KeySchema::Off)
    }

    /// A record's envelope and verdict from one parse: a JSON payload is
    /// parsed into this validator's tape, which the envelope captures, the
    /// JSON Schema and the PII detectors then all read. A payload the tape
    /// refuses (see [`crate::tape`]) goes the way of [`EnvelopeExtractor::extract`]
    /// and [`Validator::check`], with the same results.
    pub fn prepare<'a, H: Headers + ?Sized>(
        &mut self,
        extractor: &EnvelopeExtractor,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&'a [u8]>,
        headers: &'a H,
    ) -> (Envelope<'a>, Checked) {
        let mut tape = std::mem::take(&mut self.tape);
        let parsed = extractor.json_text(payload).filter(|text| tape.parse(text)).map(|text| (&tape, text));
        let envelope = extractor.extract_parsed(payload, headers, parsed);
        let checked = self.check_parsed(topic, key, payload, &envelope, headers, parsed);
        self.tape = tape;
        (envelope, checked)
    }

    pub fn check<H: Headers + ?Sized>(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        envelope: &Envelope<'_>,
        headers: &H,
    ) -> Checked {
        self.check_parsed(topic, key, payload, envelope, headers, None)
    }

    fn policy_index(&mut self, topic: &str) -> Option<usize> {
        if let Some(index) = self.topic_policy.get(topic) {
            return *index;
        }
        let index = self.policies.iter().position(|p| p.policy.applies_to(topic));
        self.topic_policy.insert(topic.into(), index);
        index
    }

    /// [`check`](Self::check); `parsed`, when given, is the payload's JSON
    /// body already parsed (`tape` from `text`, see [`Validator::prepare`]).
    fn check_parsed<H: Headers + ?Sized>(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        envelope: &Envelope<'_>,
        headers: &H,
        parsed: Option<(&Tape, &str)>,
    ) -> Checked {
        let Some(index) = self.policy_index(topic) else {
            return Checked::new(Verdict::Valid);
        };
        let policy = &self.policies[index].policy;
        let invalid = |reason: Reason, detail: Cow<'static, str>, schema_id: Option<u32>| {
            Checked::new(Verdict::Invalid {
                reason,
                detail,
                schema_id,
                quarantine: policy.invalid == Action::Quarantine,
            })
        };

        // 1. Tombstones and empty values.
        let Some(payload) = payload else {
            return match policy.tombstones {
                Action::Quarantine => invalid(Reason::Tombstone, "null value (tombstone)".into(), None),
                _ => Checked::new(Verdict::Valid),
            };
        };
        if payload.is_empty() {
            return match policy.empty_payloads {
                Action::Quarantine => invalid(Reason::EmptyPayload, "zero-length value".into(), None),
                _ => Checked::new(Verdict::Valid),
            };
        }

        // 2. Size and depth.
        if payload.len() > policy.max_payload_bytes {
            let detail = format!("value of {} bytes exceeds {} bytes", payload.len(), policy.max_payload_bytes);
            return invalid(Reason::Oversize, detail.into(), envelope.schema_id);
        }
        let body =
            if envelope.schema_id.is_some() { &payload[crate::decode::wire::WIRE_PREFIX_LEN..] } else { payload };
        let is_json = envelope.format != PayloadFormat::ConfluentBinary;
        let too_deep = match parsed {
            Some((tape, _)) => tape.depth() > policy.max_depth,
            None => is_json && json_depth_exceeds(body, policy.max_depth),
        };
        if too_deep {
            let detail = format!("JSON nesting deeper than {} levels", policy.max_depth);
            return invalid(Reason::TooDeep, detail.into(), envelope.schema_id);
        }

        // 3. and 4. Well-formed JSON and the event contract.
        if is_json {
            if let Some((reason, detail)) = contract_violation(policy, envelope) {
                return invalid(reason, detail.into(), envelope.schema_id);
            }
        }

        // 5. Schema. The `__value_schema_id` header is only read when the
        // policy uses schemas: reading headers makes librdkafka parse them.
        let schema_id = match envelope.schema_id {
            Some(id) => Some(id),
            None if policy.schema != SchemaRequirement::Off => header_schema_id(headers),
            None => None,
        };
        // The schema's answer, with the borrow of the memo ended.
        let lookup = match schema_id {
            Some(id) => Some(self.schemas.by_id(id)),
            None if policy.schema == SchemaRequirement::Off || !is_json => None,
            None => self.lookup_subject(topic, envelope),
        }
        .map(|found| match found {
            Found::Ready(schema) => Schema::Checked(schema.validate_parsed(body, parsed)),
            Found::NotFound => Schema::NotFound,
            Found::Invalid => Schema::Invalid,
            Found::Pending => Schema::Pending,
        });
        let policy = &self.policies[index].policy;
        let invalid = |reason: Reason, detail: Cow<'static, str>| {
            Checked::new(Verdict::Invalid {
                reason,
                detail,
                schema_id,
                quarantine: policy.invalid == Action::Quarantine,
            })
        };
        // What the schema check concluded, if nothing below makes the record invalid.
        let mut passed = Verdict::Valid;
        match lookup {
            Some(Schema::Checked(Ok(()))) => {}
            Some(Schema::Checked(Err(violation))) => {
                let reason = match violation.reason {
                    ViolationReason::NotJson => Reason::NotJson,
                    ViolationReason::SchemaMismatch => Reason::SchemaMismatch,
                    ViolationReason::BadWireFormat => Reason::BadWireFormat,
                };
                return invalid(reason, violation.detail.into());
            }
            Some(Schema::NotFound) => match schema_id {
                Some(id) => {
                    return invalid(Reason::UnknownSchemaId, format!("schema id {id} is not registered").into())
                }
                None if policy.schema == SchemaRequirement::Required => {
                    return invalid(Reason::UnknownSchema, "no schema registered for the record's subject".into())
                }
                // Without a schema the record is unverified, and still
                // gets the key and PII checks below.
                None => passed = Verdict::Unverified(UnverifiedReason::NoSchema),
            },
            Some(Schema::Invalid) => passed = Verdict::Unverified(UnverifiedReason::UnusableSchema),
            Some(Schema::Pending) => {
                // A first lookup on a healthy registry waits briefly; only an
                // outage may let records through unverified, if so configured.
                return if !self.schemas.cache().registry_available() && self.on_unavailable == OnUnavailable::Unverified
                {
                    Checked::new(Verdict::Unverified(UnverifiedReason::RegistryUnavailable))
                } else {
                    Checked::new(Verdict::Wait)
                };
            }
            None => {}
        }

        // 6. The key, when it names its schema.
        if policy.keys != KeySchema::Off {
            if let Some(key) = key {
                match self.check_key(policy.keys, key, headers) {
                    KeyCheck::Unchecked | KeyCheck::Valid => {}
                    KeyCheck::Wait => return Checked::new(Verdict::Wait),
                    KeyCheck::Unverified => {
                        return Checked::new(Verdict::Unverified(UnverifiedReason::RegistryUnavailable))
                    }
                    KeyCheck::Invalid(detail) => {
                        return invalid(Reason::BadKey, detail.into());
                    }
                }
            }
        }

        // 7. PII.
        let compiled = &self.policies[index];
        let mut checked = Checked::new(passed);
        if compiled.policy.pii != Action::Off && is_json {
            let found = match parsed {
                Some((tape, text)) => Ok(compiled.pii.scan_tape(tape, text)),
                None => compiled.pii.scan_json(body),
            };
            if let Ok(found) = found {
                checked.pii = found;
                if !found.is_empty() && compiled.policy.pii == Action::Quarantine {
                    let kinds: Vec<&str> = found.iter().map(PiiKind::as_str).collect();
                    checked.verdict = Verdict::Invalid {
                        reason: Reason::Pii,
                        detail: format!("payload contains {}", kinds.join(", ")).into(),
                        schema_id,
                        quarantine: true,
                    };
                }
            }
        }
        checked
    }

    /// Checks a key against the schema it names (by ID: a key carries no
    /// envelope to derive a subject from). The wire-format prefix, when the
    /// policy reads it, wins over the header, as for values.
    fn check_key<H: Headers + ?Sized>(&self, mode: KeySchema, key: &[u8], headers: &H) -> KeyCheck {
        let (id, body) = match key {
            [0, a, b, c, d, body @ ..] if mode == KeySchema::Wire => (u32::from_be_bytes([*a, *b, *c, *d]), body),
            _ => match schema_id_header(headers, "__key_schema_id") {
                Some(id) => (id, key),
                None => return KeyCheck::Unchecked,
            },
        };
        // Keys go to the shared cache: `&self` here, and few keys name a schema.
        let cache = self.schemas.cache();
        match cache.by_id(id) {
            Lookup::Ready(schema) => match schema.validate(body) {
                Ok(()) => KeyCheck::Valid,
                Err(violation) => KeyCheck::Invalid(format!("key (schema id {id}): {}", violation.detail)),
            },
            Lookup::NotFound => KeyCheck::Invalid(format!("key schema id {id} is not registered")),
            Lookup::Invalid => KeyCheck::Unverified,
            Lookup::Pending => {
                if !cache.registry_available() && self.on_unavailable == OnUnavailable::Unverified {
                    KeyCheck::Unverified
                } else {
                    KeyCheck::Wait
                }
            }
        }
    }

    /// Subject lookup for plain JSON: the record's `schema_version` when the
    /// registry has it, else the latest version.
    fn lookup_subject(&mut self, topic: &str, envelope: &Envelope<'_>) -> Option<Found<'_>> {
        let subject: Cow<'_, str> = match self.strategy {
            SubjectStrategy::TopicName => {
                if !self.topic_subjects.contains_key(topic) {
                    self.topic_subjects.insert(topic.into(), format!("{topic}-value"));
                }
                Cow::Borrowed(self.topic_subjects[topic].as_str())
            }
            SubjectStrategy::RecordName => Cow::Borrowed(envelope.event_type.as_deref()?),
            SubjectStrategy::TopicRecordName => Cow::Owned(format!("{topic}-{}", envelope.event_type.as_deref()?)),
        };
        // Registry versions are integers; a semantic version like "1.0" in the
        // payload cannot name one, so it goes straight to the latest.
        let pinned = envelope.schema_version.as_deref().filter(|v| v.bytes().all(|b| b.is_ascii_digit()));
        Some(self.schemas.by_subject_pinned(&subject, pinned))
    }
}

/// The first contract problem of a record under its policy.
fn contract_violation(policy: &Policy, envelope: &Envelope<'_>) -> Option<(Reason, &'static str)> {
    let problems = envelope.problems;
    let verdict = |reason: Reason, detail: &'static str| Some((reason, detail));
    if problems.contains(EnvelopeProblem::InvalidJson) {
        return verdict(Reason::NotJson, "payload is not well-formed JSON");
    }
    if problems.contains(EnvelopeProblem::NotAnObject) {
        return verdict(Reason::NotJson, "payload is JSON but not an object");
    }
    // A field that is present with the wrong type is also "missing" as a
    // string; report the more precise reason.
    if problems.contains(EnvelopeProblem::InvalidFieldType) {
        return verdict(Reason::BadFieldType, "a contract field is not a string");
    }
    for field in &policy.required_fields {
        let (missing, name) = match field {
            ContractField::EventType => (EnvelopeProblem::MissingEventType, "missing event_type"),
            ContractField::EventId => (EnvelopeProblem::MissingEventId, "missing event_id"),
            ContractField::TraceId => (EnvelopeProblem::MissingTraceId, "missing trace_id"),
            ContractField::CreatedAt => (EnvelopeProblem::MissingCreatedAt, "missing created_at"),
            ContractField::SchemaVersion => (EnvelopeProblem::MissingSchemaVersion, "missing schema_version"),
            ContractField::Producer => (EnvelopeProblem::MissingProducer, "missing producer"),
        };
        if problems.contains(missing) {
            return verdict(Reason::MissingField, name);
        }
    }
    if problems.contains(EnvelopeProblem::InvalidCreatedAt)
        && policy.required_fields.contains(&ContractField::CreatedAt)
    {
        return verdict(Reason::BadFieldType, "created_at is not an RFC 3339 timestamp");
    }
    None
}

/// What the value's schema said.
enum Schema {
    /// Checked against it.
    Checked(Result<(), Violation>),
    NotFound,
    Invalid,
    Pending,
}

/// Outcome of checking a record key.
enum KeyCheck {
    /// The key names no schema.
    Unchecked,
    Valid,
    Invalid(String),
    /// Its schema is being fetched.
    Wait,
    /// Its schema is unusable, or the registry is down and unverified records pass.
    Unverified,
}

/// Schema ID from a `__value_schema_id` header.
fn header_schema_id<H: Headers + ?Sized>(headers: &H) -> Option<u32> {
    schema_id_header(headers, "__value_schema_id")
}

/// Schema ID from a header: decimal text, or 4 bytes big-endian.
fn schema_id_header<H: Headers + ?Sized>(headers: &H, name: &str) -> Option<u32> {
    let value = headers.last(name)?;
    match std::str::from_utf8(value).ok().and_then(|text| text.trim().parse().ok()) {
        Some(id) => Some(id),
        None => <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes),
    }
}

/// Whether JSON nesting (objects and arrays) goes deeper than `max_depth`.
/// A single byte scan that skips strings; it does not validate the JSON.
pub fn json_depth_exceeds(json: &[u8], max_depth: usize) -> bool {
    // Nesting deeper than `max_depth` needs more opening brackets than that.
    // Counting them is a branch-free pass the compiler vectorises; the
    // stateful scan below (measured at ~30% of per-record CPU on 500-byte
    // events) then runs only for bracket-heavy payloads.
    let openings = json.iter().map(|&b| usize::from(b == b'{' || b == b'[')).sum::<usize>();
    if openings <= max_depth {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::EnvelopeExtractor;

    const SCHEMA: &str = r#"{"type":"object","required":["data"],
        "properties":{"data":{"type":"object","required":["id"],"properties":{"id":{"type":"string"}}}}}"#;

    /// A validator over a schema folder holding `orders-value.json`.
    fn validator(policy: &str) -> (Validator, EnvelopeExtractor, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("orders-value.json"), SCHEMA).unwrap();
        let toml = format!("[registry]\nschemas_dir = \"{}\"\n[[policies]]\n{policy}\n", dir.path().display());
        let config = Config::from_toml(&toml, &|_| None).unwrap();
        let cache = Arc::new(schema_cache(&config.registry).unwrap());
        (Validator::new(&config, cache), EnvelopeExtractor::new(&config.envelope).unwrap(), dir)
    }

    fn event(data: &str) -> Vec<u8> {
        format!(
            r#"{{"event_type":"order.created","trace_id":"t","event_id":"e","created_at":"2026-11-29T06:00:00Z","schema_version":"1","producer":"p","data":{data}}}"#
        )
        .into_bytes()
    }

    fn check(
        v: &mut (Validator, EnvelopeExtractor, tempfile::TempDir),
        topic: &str,
        payload: Option<&[u8]>,
    ) -> Checked {
        let headers: &[(&str, &[u8])] = &[];
        let envelope = v.1.extract(payload, headers);
        let checked = v.0.check(topic, None, payload, &envelope, headers);
        // The ingest loop's one-parse path reads the same envelope and verdict.
        let (parsed_envelope, parsed_checked) = v.0.prepare(&v.1, topic, None, payload, headers);
        assert_eq!(format!("{parsed_envelope:?}"), format!("{envelope:?}"));
        assert_eq!(format!("{parsed_checked:?}"), format!("{checked:?}"));
        checked
    }

    fn reason(checked: &Checked) -> Option<(&'static str, bool)> {
        match &checked.verdict {
            Verdict::Invalid { reason, quarantine, .. } => Some((reason.as_str(), *quarantine)),
            _ => None,
        }
    }

    #[test]
    fn one_parse_reads_what_the_separate_passes_read() {
        // `check` above runs both paths and compares them; these payloads
        // reach every kind of value the envelope, schema and PII read.
        let mut v = validator("topics = [\".*\"]\npii = \"count\"\nschema = \"if_available\"");
        let mut wire = vec![0, 0, 0, 0, 1];
        wire.extend(event(r#"{"id":"o-1"}"#));
        let payloads: Vec<Vec<u8>> = vec![
            event(r#"{"id":"o-1","note":"mail jane\u002edoe@example.com","card":4111111111111111}"#),
            event(r#"{"id":"o-1","calls":[{"to":"+44 20 7946 0958"}],"iban":"DE89370400440532013000"}"#),
            event(r#"{"id":"\u00e9\ud83d\ude00","n":-0,"f":1.5e3,"big":123456789012345678901234}"#),
            br#"{"event_type":"a\"b","trace_id":7,"event_id":null,"created_at":"x","data":{"id":"o"}}"#.to_vec(),
            br#"{"event_type":"a","event_type":"b","data":{"id":"o"}}"#.to_vec(),
            br#"{"event_type":"a\ud800","data":{"id":"o"}}"#.to_vec(),
            br#"[1,2,3]"#.to_vec(),
            br#"{"event_type":"a""#.to_vec(),
            wire,
        ];
        for payload in &payloads {
            check(&mut v, "orders", Some(payload));
        }
        let found = check(&mut v, "orders", Some(&payloads[0])).pii;
        assert!(found.contains(PiiKind::Email) && found.contains(PiiKind::PaymentCard), "{found:?}");
    }

    #[test]
    fn headers_are_read_when_a_policy_uses_schema_id_headers() {
        assert!(validator("topics = [\".*\"]").0.reads_headers(), "schemas and keys by header are the defaults");
        assert!(validator("topics = [\".*\"]\nschema = \"off\"").0.reads_headers(), "key schema headers");
        assert!(!validator("topics = [\".*\"]\nschema = \"off\"\nkeys = \"off\"").0.reads_headers());
    }

    #[test]
    fn verdicts_follow_the_checks_in_order() {
        let mut v = validator("topics = [\".*\"]\nschema = \"if_available\"\nmax_payload_bytes = 2000\nmax_depth = 8");
        assert_eq!(check(&mut v, "orders", Some(&event(r#"{"id":"o-1"}"#))).verdict, Verdict::Valid);
        assert_eq!(reason(&check(&mut v, "orders", Some(&event(r#"{"id":7}"#)))), Some(("schema_mismatch", true)));
        assert_eq!(reason(&check(&mut v, "orders", Some(b"{\"event_type\""))), Some(("not_json", true)));
        assert_eq!(reason(&check(&mut v, "orders", Some(b"{}"))), Some(("missing_field", true)));
        let typed = br#"{"event_type":"x","trace_id":"t","event_id":1,"created_at":"2026-11-29T06:00:00Z","schema_version":"1","producer":"p"}"#;
        assert_eq!(reason(&check(&mut v, "orders", Some(typed))), Some(("bad_field_type", true)));
        assert_eq!(
            reason(&check(&mut v, "orders", Some(&event(&format!("\"{}\"", "x".repeat(3000)))))),
            Some(("oversize", true))
        );
        assert_eq!(reason(&check(&mut v, "orders", Some(&event(&"[".repeat(20))))), Some(("too_deep", true)));
        assert_eq!(reason(&check(&mut v, "orders", Some(b""))), Some(("empty_payload", true)));
        assert_eq!(check(&mut v, "orders", None).verdict, Verdict::Valid, "tombstones pass by default");
        // No schema for this topic's subject: unverified, not invalid.
        let other = check(&mut v, "payments", Some(&event(r#"{"id":"o-1"}"#)));
        assert_eq!(other.verdict, Verdict::Unverified(UnverifiedReason::NoSchema));
        // A wire-format record naming an unknown schema ID.
        let mut wire = vec![0, 0, 0, 0, 99];
        wire.extend(event(r#"{"id":"o-1"}"#));
        assert_eq!(reason(&check(&mut v, "orders", Some(&wire))), Some(("unknown_schema_id", true)));
    }

    #[test]
    fn policies_choose_required_schemas_counting_and_pii_handling() {
        let mut v = validator(
            "topics = [\"audit\\\\..*\"]\ninvalid = \"count\"\nschema = \"required\"\npii = \"quarantine\"\ntombstones = \"quarantine\"\n[[policies]]\ntopics = [\".*\"]\npii = \"count\"",
        );
        let contact = event(r#"{"id":"o-1","contact":"jane.doe@example.com"}"#);
        // First policy: audit topics.
        assert_eq!(
            reason(&check(&mut v, "audit.log", Some(&event(r#"{"id":"o-1"}"#)))),
            Some(("unknown_schema", false))
        );
        assert_eq!(reason(&check(&mut v, "audit.log", None)), Some(("tombstone", false)));
        // Second policy: PII is counted, the record stays valid.
        let checked = check(&mut v, "orders", Some(&contact));
        assert_eq!(checked.verdict, Verdict::Valid);
        assert!(checked.pii.contains(PiiKind::Email));
        // A PII-quarantining policy makes it invalid (after its schema check).
        let mut q = validator("topics = [\".*\"]\npii = \"quarantine\"");
        assert_eq!(reason(&check(&mut q, "orders", Some(&contact))), Some(("pii", true)));
    }

    #[test]
    fn records_without_a_schema_are_still_scanned_for_pii() {
        let contact = event(r#"{"id":"o-1","contact":"jane.doe@example.com"}"#);
        let mut quarantining = validator("topics = [\".*\"]\npii = \"quarantine\"");
        assert_eq!(reason(&check(&mut quarantining, "payments", Some(&contact))), Some(("pii", true)));
        let mut counting = validator("topics = [\".*\"]\npii = \"count\"");
        let checked = check(&mut counting, "payments", Some(&contact));
        assert_eq!(checked.verdict, Verdict::Unverified(UnverifiedReason::NoSchema));
        assert!(checked.pii.contains(PiiKind::Email));
    }

    #[test]
    fn depth_scan_counts_nesting_outside_strings() {
        assert!(!json_depth_exceeds(br#"{"a":{"b":[1,2]}}"#, 3));
        assert!(json_depth_exceeds(br#"{"a":{"b":[1,2]}}"#, 2));
        assert!(!json_depth_exceeds(br#"{"a":"[[[[[[\"{{{{"}"#, 1));
        let deep = "[".repeat(10_000);
        assert!(json_depth_exceeds(deep.as_bytes(), 64));
    }

    #[test]
    fn reasons_have_distinct_labels() {
        let mut labels: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len());
    }

    /// Checks with a key and headers; retries while the schema is being loaded.
    fn check_keyed(
        v: &mut (Validator, EnvelopeExtractor, tempfile::TempDir),
        key: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Checked {
        let payload = event(r#"{"id":"o-1"}"#);
        let envelope = v.1.extract(Some(&payload), headers);
        for _ in 0..200 {
            let checked = v.0.check("orders", Some(key), Some(&payload), &envelope, headers);
            if checked.verdict != Verdict::Wait {
                return checked;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("key schema never loaded");
    }

    #[test]
    fn keys_that_name_a_schema_are_checked_against_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("orders-value.json"), SCHEMA).unwrap();
        std::fs::create_dir(dir.path().join("ids")).unwrap();
        // Schema 5: an Avro string key. Avro encodes "ab" as its zigzag length 4, then the bytes.
        std::fs::write(dir.path().join("ids").join("5.avsc"), r#""string""#).unwrap();
        let toml = format!("[registry]\nschemas_dir = \"{}\"\n[[policies]]\ntopics = [\".*\"]\n", dir.path().display());
        let config = Config::from_toml(&toml, &|_| None).unwrap();
        let cache = Arc::new(schema_cache(&config.registry).unwrap());
        let mut v = (Validator::new(&config, cache), EnvelopeExtractor::new(&config.envelope).unwrap(), dir);
        let named: &[(&str, &[u8])] = &[("__key_schema_id", b"5")];
        assert_eq!(check_keyed(&mut v, &[4, b'a', b'b'], named).verdict, Verdict::Valid);
        assert_eq!(reason(&check_keyed(&mut v, &[9, b'a'], named)), Some(("bad_key", true)), "truncated Avro");
        let unknown: &[(&str, &[u8])] = &[("__key_schema_id", b"6")];
        assert_eq!(reason(&check_keyed(&mut v, &[4, b'a', b'b'], unknown)), Some(("bad_key", true)));
        // Without a header the key is opaque bytes: never judged by default,
        // even if it happens to start with a zero byte.
        assert_eq!(check_keyed(&mut v, &[0, 0, 0, 0, 6, 1], &[]).verdict, Verdict::Valid);
    }

    #[test]
    fn wire_format_keys_are_checked_when_the_policy_says_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ids")).unwrap();
        std::fs::write(dir.path().join("ids").join("5.avsc"), r#""string""#).unwrap();
        let toml = format!(
            "[registry]\nschemas_dir = \"{}\"\n[[policies]]\ntopics = [\".*\"]\nschema = \"off\"\nkeys = \"wire\"\n",
            dir.path().display()
        );
        let config = Config::from_toml(&toml, &|_| None).unwrap();
        let cache = Arc::new(schema_cache(&config.registry).unwrap());
        let mut v = (Validator::new(&config, cache), EnvelopeExtractor::new(&config.envelope).unwrap(), dir);
        assert_eq!(check_keyed(&mut v, &[0, 0, 0, 0, 5, 4, b'a', b'b'], &[]).verdict, Verdict::Valid);
        assert_eq!(reason(&check_keyed(&mut v, &[0, 0, 0, 0, 5, 7], &[])), Some(("bad_key", true)));
        assert_eq!(reason(&check_keyed(&mut v, &[0, 0, 0, 0, 8, 2, b'a'], &[])), Some(("bad_key", true)));
        // Keys without the prefix are not judged.
        assert_eq!(check_keyed(&mut v, b"order-17", &[]).verdict, Verdict::Valid);
        // keys = "off" is a valid choice; a typo is a config error.
        let bad = "[[policies]]\nkeys = \"sometimes\"\n";
        let errors = Config::from_toml(bad, &|_| None).unwrap_err();
        assert!(errors.to_string().contains("policies[0].keys"), "{errors}");
    }

    #[test]
    fn schema_id_header_accepts_text_and_binary() {
        let text: &[(&str, &[u8])] = &[("__value_schema_id", b"42")];
        assert_eq!(header_schema_id(text), Some(42));
        let binary: &[(&str, &[u8])] = &[("__value_schema_id", &[0, 0, 1, 0])];
        assert_eq!(header_schema_id(binary), Some(256));
        let none: &[(&str, &[u8])] = &[];
        assert_eq!(header_schema_id(none), None);
    }
}
