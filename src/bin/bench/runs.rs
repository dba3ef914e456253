//! The pipewarden configurations a bench run measures, each against the raw
//! consumer on the same topic:
//!
//! - `ingest`: no validation (envelope extraction and metrics only);
//! - `json`: JSON Schema from a schema folder, the six contract fields, PII
//!   detectors counting, invalid records quarantined;
//! - `avro`: Confluent wire-format Avro records validated by schema ID.
//!
//! Also the schema folder they share (a temporary directory) and the
//! schemas in it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::preload;

/// Schema ID of the Avro topic's records (in their 5-byte prefix and in
/// `ids/<id>.avsc`).
pub const AVRO_SCHEMA_ID: u32 = 1001;

/// What a topic holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Data {
    /// Plain JSON events.
    Json,
    /// The same events as Confluent wire-format Avro.
    Avro,
}

impl Data {
    pub const ALL: [Data; 2] = [Data::Json, Data::Avro];

    pub fn label(self) -> &'static str {
        match self {
            Data::Json => "JSON",
            Data::Avro => "Avro",
        }
    }
}

/// `--runs`: which configurations to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunSet {
    /// Every configuration below.
    All,
    /// pipewarden without validation (envelope and metrics only).
    Ingest,
    /// JSON Schema + contract fields + PII detectors.
    Json,
    /// Confluent wire-format Avro validated by schema ID.
    Avro,
}

/// One pipewarden configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Config {
    NoValidation,
    JsonSchema,
    Avro,
}

impl Config {
    pub const ALL: [Config; 3] = [Config::NoValidation, Config::JsonSchema, Config::Avro];

    /// The configurations `--runs` selects, in measuring order.
    pub fn selected(sets: &[RunSet]) -> Vec<Config> {
        Config::ALL
            .into_iter()
            .filter(|config| {
                sets.iter().any(|set| match set {
                    RunSet::All => true,
                    RunSet::Ingest => *config == Config::NoValidation,
                    RunSet::Json => *config == Config::JsonSchema,
                    RunSet::Avro => *config == Config::Avro,
                })
            })
            .collect()
    }

    /// Short key (JSON, summary line).
    pub fn key(self) -> &'static str {
        match self {
            Config::NoValidation => "no-validation",
            Config::JsonSchema => "json-schema",
            Config::Avro => "avro",
        }
    }

    /// What the run is called in the output.
    pub fn name(self) -> &'static str {
        match self {
            Config::NoValidation => "pipewarden (no validation)",
            Config::JsonSchema => "pipewarden (JSON Schema + contract + PII)",
            Config::Avro => "pipewarden (Avro)",
        }
    }

    /// Table column header (at most 15 characters).
    pub fn column(self) -> &'static str {
        match self {
            Config::NoValidation => "no validation",
            Config::JsonSchema => "JSON Schema+PII",
            Config::Avro => "Avro by ID",
        }
    }

    /// The topic it reads.
    pub fn data(self) -> Data {
        match self {
            Config::NoValidation | Config::JsonSchema => Data::Json,
            Config::Avro => Data::Avro,
        }
    }

    /// Its `[[policies]]` entry (TOML).
    pub fn policy(self) -> &'static str {
        match self {
            // Envelope extraction and metrics only.
            Config::NoValidation => {
                "[[policies]]\n\
                 topics = ['.*']\n\
                 required_fields = []\n\
                 schema = 'off'\n\
                 pii = 'off'\n\
                 invalid = 'count'\n"
            }
            Config::JsonSchema => {
                "[[policies]]\n\
                 topics = ['.*']\n\
                 required_fields = ['event_type', 'event_id', 'trace_id', 'created_at', 'schema_version', 'producer']\n\
                 schema = 'required'\n\
                 pii = 'count'\n\
                 invalid = 'quarantine'\n"
            }
            // Wire-format records are always validated by their schema ID;
            // an Avro body is not JSON, so contract fields could only come
            // from headers: none are required. (The PII detectors scan JSON
            // only, so `pii` has no effect on these records.)
            Config::Avro => {
                "[[policies]]\n\
                 topics = ['.*']\n\
                 required_fields = []\n\
                 schema = 'required'\n\
                 pii = 'count'\n\
                 invalid = 'quarantine'\n"
            }
        }
    }

    /// The governance part of its config file: `[registry]` (the schema
    /// folder) and its policy.
    pub fn governance(self, schemas_dir: &Path) -> String {
        format!(
            "[registry]\n\
             url = ''\n\
             schemas_dir = {}\n\
             subject_strategy = 'topic_name'\n\
             {}",
            crate::daemon::toml_string(&schemas_dir.display().to_string()),
            self.policy()
        )
    }
}

/// A realistic JSON Schema for the generated events: the contract fields
/// (event type from a closed list, hex trace ID, UUID event ID), an `llm`
/// object with integer token counts and a `data` object with a required
/// string reference and typed properties. Self-contained (no `$ref`).
pub fn json_schema() -> serde_json::Value {
    let event_types: Vec<&str> = preload::event_types().collect();
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "bench agent event",
        "description": "Event contract of the pipewarden ingest benchmark's agent events.",
        "type": "object",
        "required": ["event_type", "trace_id", "event_id", "created_at", "schema_version", "producer", "llm", "data"],
        "properties": {
            "event_type": { "type": "string", "enum": event_types },
            "trace_id": { "type": "string", "pattern": "^[0-9a-f]{32}$" },
            "event_id": {
                "type": "string",
                "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
            },
            "causation_id": { "type": ["string", "null"] },
            "created_at": { "type": "string", "format": "date-time", "minLength": 20 },
            "schema_version": { "type": "string", "pattern": "^1\\.[0-9]+$" },
            "producer": { "type": "string", "minLength": 1, "maxLength": 128 },
            "llm": {
                "type": "object",
                "required": ["model", "input_tokens", "output_tokens"],
                "properties": {
                    "provider": { "type": "string" },
                    "model": { "type": "string", "minLength": 1 },
                    "input_tokens": { "type": "integer", "minimum": 0 },
                    "output_tokens": { "type": "integer", "minimum": 0 },
                    "cached_input_tokens": { "type": "integer", "minimum": 0 },
                    "reasoning_tokens": { "type": "integer", "minimum": 0 }
                },
                "additionalProperties": false
            },
            "data": {
                "type": "object",
                "required": ["reference"],
                "properties": {
                    "reference": { "type": "string", "pattern": "^REF-[0-9]{8}$" },
                    "step": { "type": "integer", "minimum": 0 },
                    "text": { "type": "string" },
                    "tags": { "type": "array", "items": { "type": "string" } }
                }
            }
        }
    })
}

/// Fingerprint of what the Avro topic's records depend on (schema and ID),
/// part of its name so a changed schema never meets old records.
pub fn avro_fingerprint() -> String {
    // FNV-1a, 32 bits: stable across builds and platforms.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in preload::AVRO_SCHEMA.bytes().chain(AVRO_SCHEMA_ID.to_be_bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{hash:08x}")
}

/// The schema folder of a bench run (`registry.schemas_dir`), removed on drop.
pub struct SchemaDir {
    pub path: PathBuf,
}

impl SchemaDir {
    /// Writes `<json_topic>-value.json` and `ids/<AVRO_SCHEMA_ID>.avsc`.
    pub fn create(json_topic: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("pipewarden-bench-{}-schemas", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let dir = SchemaDir { path };
        let ids = dir.path.join("ids");
        std::fs::create_dir_all(&ids).with_context(|| format!("creating {}", ids.display()))?;
        let json = dir.path.join(format!("{json_topic}-value.json"));
        std::fs::write(&json, serde_json::to_string_pretty(&json_schema())? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
        let avsc = ids.join(format!("{AVRO_SCHEMA_ID}.avsc"));
        std::fs::write(&avsc, preload::AVRO_SCHEMA).with_context(|| format!("writing {}", avsc.display()))?;
        Ok(dir)
    }
}

impl Drop for SchemaDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipewarden::validate::schema::{compile, SchemaKind};

    #[test]
    fn generated_json_events_match_the_json_schema() {
        let schema = compile(SchemaKind::Json, &json_schema().to_string()).unwrap();
        let mut events = preload::EventGen::new(1, 500);
        for _ in 0..2000 {
            events.next_event();
            assert_eq!(schema.validate(events.payload.as_bytes()), Ok(()), "{}", events.payload);
        }
        // And the schema does reject what it should.
        let bad = events.payload.replace("\"input_tokens\":", "\"input_tokens\":\"x\",\"_\":");
        assert!(schema.validate(bad.as_bytes()).is_err());
    }

    #[test]
    fn avro_events_decode_with_their_schema_and_have_the_target_size() {
        let schema = compile(SchemaKind::Avro, preload::AVRO_SCHEMA).unwrap();
        let parsed = apache_avro::Schema::parse_str(preload::AVRO_SCHEMA).unwrap();
        for size in [500, 100, 1000, 4096] {
            let mut events = preload::EventGen::new(2, size);
            let mut avro = preload::AvroEncoder::new(&parsed, AVRO_SCHEMA_ID).unwrap();
            for _ in 0..2000 {
                events.next_event();
                let bytes = avro.encode(&events).unwrap();
                assert_eq!(&bytes[..5], &[0, 0, 0, 0x03, 0xe9]);
                // Exact, or one byte short where the text length's varint grows.
                if size >= 500 {
                    assert!(bytes.len() == size || bytes.len() + 1 == size, "{} vs {size}", bytes.len());
                }
                assert_eq!(schema.validate(&bytes[5..]), Ok(()));
            }
        }
    }

    #[test]
    fn runs_select_configurations() {
        assert_eq!(Config::selected(&[RunSet::All]), Config::ALL.to_vec());
        assert_eq!(Config::selected(&[RunSet::Avro, RunSet::Ingest]), vec![Config::NoValidation, Config::Avro]);
        assert!(Config::ALL.iter().all(|c| c.column().len() <= 15));
    }

    #[test]
    fn governance_parses_as_toml() {
        for config in Config::ALL {
            let text = config.governance(Path::new("/tmp/x y/schemas"));
            let value: toml::Value = toml::from_str(&text).unwrap();
            assert_eq!(value["registry"]["schemas_dir"].as_str(), Some("/tmp/x y/schemas"));
            assert_eq!(value["policies"].as_array().unwrap().len(), 1);
        }
    }
}
