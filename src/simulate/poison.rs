//! Poison records and their detection.
//!
//! An emitting agent occasionally replaces a good event with a poison record
//! (truncated JSON, missing `trace_id`, or contract fields of the wrong JSON
//! type). Consuming agents validate every record against the event contract
//! and route anything invalid to the dead-letter topic with a bounded
//! [`DlqReason`].

use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::{json, Value};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use super::event::{Event, EventType};

/// How a poison record is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonKind {
    /// Serialized event cut off mid-way: not parseable JSON.
    InvalidJson,
    /// Valid JSON without the `trace_id` field.
    MissingTraceId,
    /// Valid JSON where a contract field has the wrong JSON type.
    InvalidFieldType,
}

impl PoisonKind {
    pub const ALL: [PoisonKind; 3] =
        [PoisonKind::InvalidJson, PoisonKind::MissingTraceId, PoisonKind::InvalidFieldType];

    pub fn as_str(self) -> &'static str {
        match self {
            PoisonKind::InvalidJson => "invalid_json",
            PoisonKind::MissingTraceId => "missing_trace_id",
            PoisonKind::InvalidFieldType => "invalid_field_type",
        }
    }

    /// The DLQ reason a validating consumer must assign to this poison.
    #[cfg(test)]
    pub fn expected_reason(self) -> DlqReason {
        match self {
            PoisonKind::InvalidJson => DlqReason::InvalidJson,
            PoisonKind::MissingTraceId => DlqReason::MissingTraceId,
            PoisonKind::InvalidFieldType => DlqReason::InvalidFieldType,
        }
    }
}

/// Bounded set of `dlq.reason` header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqReason {
    InvalidJson,
    MissingTraceId,
    MissingField,
    InvalidFieldType,
    UnexpectedEventType,
    ProcessingFailed,
    LlmTimeout,
}

impl DlqReason {
    pub const ALL: [DlqReason; 7] = [
        DlqReason::InvalidJson,
        DlqReason::MissingTraceId,
        DlqReason::MissingField,
        DlqReason::InvalidFieldType,
        DlqReason::UnexpectedEventType,
        DlqReason::ProcessingFailed,
        DlqReason::LlmTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::InvalidJson => "invalid_json",
            DlqReason::MissingTraceId => "missing_trace_id",
            DlqReason::MissingField => "missing_field",
            DlqReason::InvalidFieldType => "invalid_field_type",
            DlqReason::UnexpectedEventType => "unexpected_event_type",
            DlqReason::ProcessingFailed => "processing_failed",
            DlqReason::LlmTimeout => "llm_timeout",
        }
    }

    pub fn index(self) -> usize {
        DlqReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A poison record ready to be produced.
#[derive(Debug, Clone)]
pub struct Poison {
    pub kind: PoisonKind,
    pub bytes: Vec<u8>,
}

/// Turns a good event into a random kind of poison.
pub fn make_poison<R: Rng + ?Sized>(rng: &mut R, event: &Event) -> Poison {
    let kind = *PoisonKind::ALL.choose(rng).unwrap_or(&PoisonKind::InvalidJson);
    make_poison_of(rng, kind, event)
}

/// Turns a good event into poison of the given kind.
pub fn make_poison_of<R: Rng + ?Sized>(rng: &mut R, kind: PoisonKind, event: &Event) -> Poison {
    let good = event.to_json();
    let bytes = match kind {
        PoisonKind::InvalidJson => {
            // Any strict prefix of a JSON object is invalid JSON (the closing
            // brace is missing); cut somewhere in the middle like a torn write.
            let len = good.len();
            let cut = rng.random_range(len / 4..len.saturating_sub(1).max(len / 4 + 1));
            good[..cut.min(len - 1)].to_vec()
        }
        PoisonKind::MissingTraceId => {
            let mut v: Value = serde_json::from_slice(&good).unwrap_or_else(|_| json!({}));
            if let Some(obj) = v.as_object_mut() {
                obj.remove("trace_id");
            }
            serde_json::to_vec(&v).unwrap_or_default()
        }
        PoisonKind::InvalidFieldType => {
            let mut v: Value = serde_json::from_slice(&good).unwrap_or_else(|_| json!({}));
            if let Some(obj) = v.as_object_mut() {
                let epoch_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
                match rng.random_range(0..4) {
                    0 => obj.insert("created_at".into(), json!(epoch_ms)),
                    1 => obj.insert("event_type".into(), json!(42)),
                    2 => obj.insert("schema_version".into(), json!(1.0)),
                    _ => obj.insert("data".into(), json!("see attachment")),
                };
            }
            serde_json::to_vec(&v).unwrap_or_default()
        }
    };
    Poison { kind, bytes }
}

/// The parts of a valid incoming event that an agent needs.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub trace_id: String,
    pub event_id: String,
    pub data: Value,
}

fn is_trace_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) && s.bytes().any(|b| b != b'0')
}

/// Validates a record payload against the event contract.
pub fn validate(payload: Option<&[u8]>, expected: EventType) -> Result<Incoming, DlqReason> {
    let bytes = payload.ok_or(DlqReason::InvalidJson)?;
    let v: Value = serde_json::from_slice(bytes).map_err(|_| DlqReason::InvalidJson)?;
    let obj = v.as_object().ok_or(DlqReason::InvalidJson)?;

    let trace_id = match obj.get("trace_id") {
        None | Some(Value::Null) => return Err(DlqReason::MissingTraceId),
        Some(Value::String(s)) if is_trace_id(s) => s.clone(),
        Some(_) => return Err(DlqReason::InvalidFieldType),
    };
    for key in ["event_type", "event_id", "created_at", "schema_version", "producer", "data"] {
        if !obj.contains_key(key) {
            return Err(DlqReason::MissingField);
        }
    }
    let string = |key: &str| obj.get(key).and_then(Value::as_str);
    let (Some(event_type), Some(event_id), Some(created_at), Some(_), Some(_)) =
        (string("event_type"), string("event_id"), string("created_at"), string("schema_version"), string("producer"))
    else {
        return Err(DlqReason::InvalidFieldType);
    };
    if OffsetDateTime::parse(created_at, &Rfc3339).is_err() {
        return Err(DlqReason::InvalidFieldType);
    }
    let data = match obj.get("data") {
        Some(d @ Value::Object(_)) => d.clone(),
        _ => return Err(DlqReason::InvalidFieldType),
    };
    match obj.get("causation_id") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(DlqReason::InvalidFieldType),
    }
    match obj.get("llm") {
        None | Some(Value::Object(_)) => {}
        Some(_) => return Err(DlqReason::InvalidFieldType),
    }
    if event_type != expected.as_str() {
        return Err(DlqReason::UnexpectedEventType);
    }
    Ok(Incoming { trace_id, event_id: event_id.to_owned(), data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::event::new_trace_id;
    use crate::simulate::payload;
    use crate::simulate::topology::Agent;
    use rand::{rngs::SmallRng, SeedableRng};

    fn good_event(rng: &mut SmallRng) -> Event {
        let trace = new_trace_id(rng);
        let data = payload::ticket_created(rng);
        Event::new(rng, EventType::TicketCreated, Agent::Intake, &trace, None, None, data)
    }

    #[test]
    fn good_event_validates() {
        let mut rng = SmallRng::seed_from_u64(1);
        let ev = good_event(&mut rng);
        let inc = validate(Some(&ev.to_json()), EventType::TicketCreated).unwrap();
        assert_eq!(inc.trace_id, ev.trace_id);
        assert_eq!(inc.event_id, ev.event_id);
        assert_eq!(
            validate(Some(&ev.to_json()), EventType::AnswerDrafted).unwrap_err(),
            DlqReason::UnexpectedEventType
        );
    }

    #[test]
    fn invalid_json_poison_does_not_parse() {
        let mut rng = SmallRng::seed_from_u64(2);
        for _ in 0..500 {
            let ev = good_event(&mut rng);
            let p = make_poison_of(&mut rng, PoisonKind::InvalidJson, &ev);
            assert!(!p.bytes.is_empty() && p.bytes.len() < ev.to_json().len());
            assert!(serde_json::from_slice::<Value>(&p.bytes).is_err());
            assert_eq!(validate(Some(&p.bytes), EventType::TicketCreated).unwrap_err(), DlqReason::InvalidJson);
        }
    }

    #[test]
    fn missing_trace_id_poison_is_otherwise_valid_json() {
        let mut rng = SmallRng::seed_from_u64(3);
        let ev = good_event(&mut rng);
        let p = make_poison_of(&mut rng, PoisonKind::MissingTraceId, &ev);
        let v: Value = serde_json::from_slice(&p.bytes).unwrap();
        assert!(v.get("trace_id").is_none());
        assert_eq!(v["event_id"], ev.event_id.as_str());
        assert_eq!(validate(Some(&p.bytes), EventType::TicketCreated).unwrap_err(), DlqReason::MissingTraceId);
    }

    #[test]
    fn wrong_type_poison_has_a_non_string_contract_field() {
        let mut rng = SmallRng::seed_from_u64(4);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let ev = good_event(&mut rng);
            let p = make_poison_of(&mut rng, PoisonKind::InvalidFieldType, &ev);
            let v: Value = serde_json::from_slice(&p.bytes).unwrap();
            assert_eq!(v["trace_id"], ev.trace_id.as_str(), "trace stays attributable");
            let broken: Vec<&str> = ["created_at", "event_type", "schema_version"]
                .into_iter()
                .filter(|k| !v[*k].is_string())
                .chain((!v["data"].is_object()).then_some("data"))
                .collect();
            assert_eq!(broken.len(), 1, "{v}");
            seen.insert(broken[0]);
            assert_eq!(validate(Some(&p.bytes), EventType::TicketCreated).unwrap_err(), DlqReason::InvalidFieldType);
        }
        assert_eq!(seen.len(), 4, "all mutations exercised: {seen:?}");
    }

    #[test]
    fn random_poison_matches_its_expected_reason() {
        let mut rng = SmallRng::seed_from_u64(5);
        for _ in 0..300 {
            let ev = good_event(&mut rng);
            let p = make_poison(&mut rng, &ev);
            assert_eq!(validate(Some(&p.bytes), EventType::TicketCreated).unwrap_err(), p.kind.expected_reason());
        }
    }

    #[test]
    fn other_contract_violations() {
        let t = "0123456789abcdef0123456789abcdef";
        let base = json!({"event_type": "doc.extracted", "trace_id": t, "event_id": "e1",
            "created_at": "2025-01-01T00:00:00.000Z", "schema_version": "1.0", "producer": "p", "data": {}});
        assert!(validate(Some(base.to_string().as_bytes()), EventType::DocExtracted).is_ok());
        let with = |k: &str, val: Value| {
            let mut b = base.clone();
            b[k] = val;
            validate(Some(b.to_string().as_bytes()), EventType::DocExtracted).unwrap_err()
        };
        assert_eq!(with("trace_id", json!("XYZ")), DlqReason::InvalidFieldType);
        assert_eq!(with("trace_id", Value::Null), DlqReason::MissingTraceId);
        assert_eq!(with("created_at", json!("yesterday")), DlqReason::InvalidFieldType);
        assert_eq!(with("causation_id", json!(7)), DlqReason::InvalidFieldType);
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove("event_id");
        assert_eq!(
            validate(Some(b.to_string().as_bytes()), EventType::DocExtracted).unwrap_err(),
            DlqReason::MissingField
        );
        assert_eq!(validate(None, EventType::DocExtracted).unwrap_err(), DlqReason::InvalidJson);
        assert_eq!(validate(Some(b"[1,2]"), EventType::DocExtracted).unwrap_err(), DlqReason::InvalidJson);
    }
}
