//! Event vocabulary of the simulated pipelines: event types, ids,
//! timestamps, the JSON contract envelope, LLM usage and Kafka headers.
//!
//! Everything here is pure (no Kafka I/O) so it can be unit-tested.

use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use time::{format_description::FormatItem, macros::format_description, OffsetDateTime};

use super::topology::Agent;

/// Contract version stamped on every event.
pub const SCHEMA_VERSION: &str = "1.0";

/// RFC 3339, UTC, millisecond precision, e.g. `2025-01-31T12:00:00.123Z`.
const CREATED_AT_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Every event type the simulator emits. The Kafka topic of an event type is
/// its name (plus the optional `--topic-prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    TicketCreated,
    TicketClassified,
    AnswerDrafted,
    AnswerApproved,
    AnswerRejected,
    AnswerSent,
    DocExtracted,
    DocValidationFailed,
    DocValidated,
    DocEntitiesResolved,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::TicketCreated,
        EventType::TicketClassified,
        EventType::AnswerDrafted,
        EventType::AnswerApproved,
        EventType::AnswerRejected,
        EventType::AnswerSent,
        EventType::DocExtracted,
        EventType::DocValidationFailed,
        EventType::DocValidated,
        EventType::DocEntitiesResolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TicketCreated => "support.ticket.created",
            EventType::TicketClassified => "support.ticket.classified",
            EventType::AnswerDrafted => "support.answer.drafted",
            EventType::AnswerApproved => "support.answer.approved",
            EventType::AnswerRejected => "support.answer.rejected",
            EventType::AnswerSent => "support.answer.sent",
            EventType::DocExtracted => "doc.extracted",
            EventType::DocValidationFailed => "doc.validation.failed",
            EventType::DocValidated => "doc.validated",
            EventType::DocEntitiesResolved => "doc.entities.resolved",
        }
    }

    /// Index into [`EventType::ALL`] (used for fixed-size counters).
    pub fn index(self) -> usize {
        EventType::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// Token usage reported by an agent that called an LLM: the simulator's
/// own summary. `input_tokens` includes `cached_input_tokens`;
/// `output_tokens` excludes `reasoning_tokens`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LlmUsage {
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
}

/// The contract envelope every good event carries.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event_type: &'static str,
    pub trace_id: String,
    pub event_id: String,
    /// `event_id` of the event this one reacts to; `null` for flow roots.
    pub causation_id: Option<String>,
    pub created_at: String,
    pub schema_version: &'static str,
    pub producer: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmUsage>,
    /// The same usage as the provider's API reports it (see
    /// [`provider_usage`]), at the top level of the event, so pipewarden
    /// prices the demo with its default usage shapes.
    #[serde(flatten)]
    pub provider_usage: serde_json::Map<String, Value>,
    pub data: Value,
}

impl Event {
    /// Builds an event stamped now with a fresh `event_id`.
    pub fn new<R: Rng + ?Sized>(
        rng: &mut R,
        event_type: EventType,
        producer: Agent,
        trace_id: &str,
        causation_id: Option<&str>,
        llm: Option<LlmUsage>,
        data: Value,
    ) -> Event {
        Event {
            event_type: event_type.as_str(),
            trace_id: trace_id.to_owned(),
            event_id: new_event_id(rng),
            causation_id: causation_id.map(str::to_owned),
            created_at: now_rfc3339(),
            schema_version: SCHEMA_VERSION,
            producer: producer.name(),
            provider_usage: llm.as_ref().map(provider_usage).unwrap_or_default(),
            llm,
            data,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs and `Value`s cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn random_hex<R: Rng + ?Sized>(rng: &mut R, digits: usize) -> String {
    loop {
        let v: u128 = rng.random();
        let s = format!("{v:032x}");
        let s = &s[32 - digits..];
        // W3C trace context forbids all-zero trace and span ids.
        if s.bytes().any(|b| b != b'0') {
            return s.to_owned();
        }
    }
}

/// 32 lowercase hex digits, never all zero (W3C trace-id).
pub fn new_trace_id<R: Rng + ?Sized>(rng: &mut R) -> String {
    random_hex(rng, 32)
}

/// 16 lowercase hex digits, never all zero (W3C parent/span id).
pub fn new_span_id<R: Rng + ?Sized>(rng: &mut R) -> String {
    random_hex(rng, 16)
}

/// UUID-v4-like id rendered as 32 lowercase hex digits.
pub fn new_event_id<R: Rng + ?Sized>(rng: &mut R) -> String {
    let mut v: u128 = rng.random();
    v = (v & !(0xf << 76)) | (0x4 << 76); // version 4
    v = (v & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    format!("{v:032x}")
}

/// Current time as RFC 3339 UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

pub fn format_rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(CREATED_AT_FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// W3C `traceparent` header value: `00-<trace_id>-<span_id>-01`.
pub fn traceparent(trace_id: &str, span_id: &str) -> String {
    format!("00-{trace_id}-{span_id}-01")
}

/// `usage` in the shape the provider's API reports it: OpenAI chat
/// completions (prompt tokens include cached ones, completion tokens include
/// reasoning), Anthropic messages (input tokens exclude cache reads, thinking
/// is part of output) and, for other providers, OpenTelemetry GenAI
/// attributes as flat keys (input includes cached, output includes reasoning).
pub fn provider_usage(usage: &LlmUsage) -> serde_json::Map<String, Value> {
    let output = usage.output_tokens + usage.reasoning_tokens;
    let value = match usage.provider.as_str() {
        "openai" => serde_json::json!({
            "model": usage.model,
            "usage": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": output,
                "total_tokens": usage.input_tokens + output,
                "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
                "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            },
        }),
        "anthropic" => serde_json::json!({
            "model": usage.model,
            "usage": {
                "input_tokens": usage.input_tokens - usage.cached_input_tokens.min(usage.input_tokens),
                "cache_read_input_tokens": usage.cached_input_tokens,
                "cache_creation_input_tokens": 0,
                "output_tokens": output,
            },
        }),
        provider => serde_json::json!({
            "gen_ai.provider.name": if provider == "google" { "gcp.gemini" } else { provider },
            "gen_ai.request.model": usage.model,
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": output,
            "gen_ai.usage.cache_read.input_tokens": usage.cached_input_tokens,
            "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
        }),
    };
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// A valid random [`LlmUsage`] drawn from a stage's profile.
pub fn sample_usage<R: Rng + ?Sized>(rng: &mut R, llm: &super::config::LlmProfile) -> LlmUsage {
    let draw = |rng: &mut R, [lo, hi]: [u64; 2]| -> u64 {
        if hi <= lo {
            lo
        } else {
            rng.random_range(lo..=hi)
        }
    };
    let input_tokens = draw(rng, llm.input_tokens);
    let output_tokens = draw(rng, llm.output_tokens);
    let [clo, chi] = llm.cached_share;
    let share = if chi <= clo { clo } else { rng.random_range(clo..=chi) };
    // Prompt caches hit on prefix blocks; round down to 64-token blocks.
    let cached_input_tokens = ((input_tokens as f64 * share.clamp(0.0, 1.0)) as u64) / 64 * 64;
    let reasoning_tokens = draw(rng, llm.reasoning_tokens).min(output_tokens.saturating_mul(4));
    LlmUsage {
        provider: llm.provider.clone(),
        model: llm.model.clone(),
        input_tokens,
        output_tokens,
        cached_input_tokens: cached_input_tokens.min(input_tokens),
        reasoning_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};
    use serde_json::json;

    fn is_hex(s: &str, len: usize) -> bool {
        s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn event_has_all_contract_fields() {
        let mut rng = SmallRng::seed_from_u64(7);
        let trace = new_trace_id(&mut rng);
        let ev = Event::new(
            &mut rng,
            EventType::TicketClassified,
            Agent::Classifier,
            &trace,
            Some("abc"),
            None,
            json!({"ticket_id": "T-1"}),
        );
        let v: Value = serde_json::from_slice(&ev.to_json()).unwrap();
        for field in
            ["event_type", "trace_id", "event_id", "causation_id", "created_at", "schema_version", "producer", "data"]
        {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["event_type"], "support.ticket.classified");
        assert_eq!(v["producer"], "classifier-agent");
        assert_eq!(v["causation_id"], "abc");
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert!(is_hex(v["trace_id"].as_str().unwrap(), 32));
        assert!(is_hex(v["event_id"].as_str().unwrap(), 32));
        assert!(v.get("llm").is_none());
    }

    #[test]
    fn created_at_is_rfc3339_utc_millis() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with('Z'));
        assert_eq!(&s[19..20], ".");
        let parsed = OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(parsed.offset(), time::UtcOffset::UTC);
        let fixed = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        assert_eq!(format_rfc3339(fixed), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn traceparent_matches_trace_id() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            let t = new_trace_id(&mut rng);
            let s = new_span_id(&mut rng);
            let tp = traceparent(&t, &s);
            let parts: Vec<&str> = tp.split('-').collect();
            assert_eq!(parts.len(), 4);
            assert_eq!(parts[0], "00");
            assert_eq!(parts[1], t);
            assert!(is_hex(parts[1], 32));
            assert!(is_hex(parts[2], 16));
            assert_ne!(parts[2], "0000000000000000");
            assert_eq!(parts[3], "01");
        }
    }

    #[test]
    fn event_ids_are_unique_uuid_like() {
        let mut rng = SmallRng::seed_from_u64(3);
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_event_id(&mut rng)).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| is_hex(id, 32) && &id[12..13] == "4"));
    }

    #[test]
    fn provider_usage_is_priced_once_by_pipewarden() {
        use crate::config::Config;
        use crate::cost::normalise;
        use crate::decode::EnvelopeExtractor;
        let config = Config::from_toml("", &|_| None).unwrap();
        let extractor = EnvelopeExtractor::for_config(&config).unwrap();
        for provider in ["openai", "anthropic", "google"] {
            let usage = LlmUsage {
                provider: provider.into(),
                model: format!("{provider}-model"),
                input_tokens: 3000,
                output_tokens: 250,
                cached_input_tokens: 1024,
                reasoning_tokens: 400,
            };
            let mut rng = SmallRng::seed_from_u64(9);
            let event =
                Event::new(&mut rng, EventType::AnswerDrafted, Agent::Knowledge, "t", None, Some(usage), json!({}));
            let bytes = event.to_json();
            let envelope = extractor.extract(Some(&bytes), &[][..]);
            let raw = envelope.accounting.usage.unwrap_or_else(|| panic!("{provider}: no usage found"));
            let tokens = normalise(&raw, &config.cost.usage[usize::from(raw.shape)]);
            // Anthropic bills thinking as output and reports no separate figure.
            let expected = if provider == "anthropic" { [1976, 1024, 0, 650, 0] } else { [1976, 1024, 0, 250, 400] };
            assert_eq!(tokens.as_array(), expected, "{provider}");
            assert_eq!(envelope.accounting.model.as_deref(), Some(format!("{provider}-model").as_str()));
        }
    }

    #[test]
    fn usage_respects_profile() {
        let mut rng = SmallRng::seed_from_u64(5);
        let p = super::super::config::LlmProfile {
            provider: "anthropic".into(),
            model: "claude-sonnet-4-5".into(),
            input_tokens: [3000, 9000],
            output_tokens: [200, 700],
            cached_share: [0.4, 0.85],
            reasoning_tokens: [0, 600],
        };
        for _ in 0..200 {
            let u = sample_usage(&mut rng, &p);
            assert!((3000..=9000).contains(&u.input_tokens));
            assert!((200..=700).contains(&u.output_tokens));
            assert!(u.cached_input_tokens <= u.input_tokens);
            assert!(u.cached_input_tokens as f64 >= u.input_tokens as f64 * 0.4 - 64.0);
            assert!(u.reasoning_tokens <= 600);
        }
    }
}
