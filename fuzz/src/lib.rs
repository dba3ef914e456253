//! The invariant checks behind pipewarden's fuzz targets, one function per
//! target, each taking the raw fuzz input.
//!
//! In: arbitrary bytes (from libFuzzer, or a corpus file). Out: nothing; a
//! broken invariant panics with the reason. The same functions run under
//! libFuzzer (the `fuzz_targets/*.rs` binaries, nightly) and on stable Rust
//! in `tests/fuzz_corpus.rs`, which replays every corpus file, so the
//! corpora double as regression tests in `make test`.
//!
//! Each check compares the library's answer with an independent reading of
//! the same input (serde_json's tree, a plain re-implementation of a fast
//! path, the definition of the format) rather than only "it did not crash".

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use pipewarden::config::{Config, EnvelopeConfig, Source};
use pipewarden::decode::envelope::{Envelope, EnvelopeExtractor, EnvelopeProblem};
use pipewarden::decode::traceparent::parse_trace_id;
use pipewarden::decode::wire::{classify, PayloadFormat, WIRE_PREFIX_LEN};
use pipewarden::tape::Tape;
use pipewarden::validate::json_depth_exceeds;
use pipewarden::validate::pii::{PiiKind, PiiKinds, PiiScanner};
use pipewarden::validate::schema::{self, CompiledSchema, SchemaKind, ViolationReason, DETAIL_MAX_BYTES};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

// ---------------------------------------------------------------------------
// wire: Confluent wire-format split

/// `classify`: a schema ID exactly when the 5-byte prefix (magic 0 + 4 ID
/// bytes) is there, the body is what follows it, and the JSON/binary split
/// follows the first non-blank body byte.
pub fn wire(data: &[u8]) {
    let (format, schema_id, body) = classify(data);
    let prefixed = data.len() >= WIRE_PREFIX_LEN && data[0] == 0;
    match schema_id {
        Some(id) => {
            assert!(prefixed, "schema id {id} without the 5-byte prefix");
            assert_eq!(id, u32::from_be_bytes([data[1], data[2], data[3], data[4]]));
            assert_eq!(body, &data[WIRE_PREFIX_LEN..], "body is not what follows the prefix");
            let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
            let expected =
                if first == Some(b'{') { PayloadFormat::ConfluentJson } else { PayloadFormat::ConfluentBinary };
            assert_eq!(format, expected);
        }
        None => {
            assert!(!prefixed, "a wire-format prefix without a schema id");
            assert_eq!(body, data, "a plain payload is its own body");
            let expected = if data.is_empty() { PayloadFormat::Empty } else { PayloadFormat::Json };
            assert_eq!(format, expected);
        }
    }
}

// ---------------------------------------------------------------------------
// traceparent

/// `parse_trace_id`: an accepted value has the W3C shape and the returned
/// ID is the 32 lowercase hex digits after the version, not all zero.
pub fn traceparent(data: &[u8]) {
    let trimmed = data.trim_ascii();
    match parse_trace_id(data) {
        Ok(trace_id) => {
            assert_eq!(trace_id.len(), 32);
            assert!(trace_id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{trace_id:?}");
            assert!(trace_id.bytes().any(|b| b != b'0'), "all-zero trace id accepted");
            assert_eq!(trace_id.as_bytes(), &trimmed[3..35], "trace id is not the second field");
            let version = &trimmed[..2];
            assert_ne!(version, b"ff");
            assert!(version.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            let parent = &trimmed[36..52];
            assert!(parent.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            assert!(parent.iter().any(|b| *b != b'0'), "all-zero parent id accepted");
            assert!(trimmed[53..55].iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            assert_eq!([trimmed[2], trimmed[35], trimmed[52]], [b'-'; 3]);
            if version == b"00" {
                assert_eq!(trimmed.len(), 55, "version 00 with trailing fields");
            } else if trimmed.len() > 55 {
                assert_eq!(trimmed[55], b'-');
            }
        }
        Err(_) => {
            // Rejections are deterministic and independent of surrounding blanks.
            assert!(parse_trace_id(trimmed).is_err());
        }
    }
}

// ---------------------------------------------------------------------------
// envelope

/// Header names the envelope input can carry: the default `traceparent`
/// source, the custom extractor's header sources and one nobody reads.
const HEADER_NAMES: [&str; 4] = ["traceparent", "ce_type", "x-agent", "x-unrelated"];

/// The custom extractor: header sources first, nested pointers, a pointer
/// shared by two fields, and a small size limit.
const CUSTOM_ENVELOPE: &str = r#"
[envelope]
event_type = ["header:ce_type", "/meta/type", "/event_type"]
trace_id = ["/meta/trace/id", "/trace_id", "traceparent:traceparent"]
schema_version = ["/meta/type"]
producer = ["/meta/source/agent", "header:x-agent"]
max_payload_bytes = 512
"#;

struct Extractor {
    config: EnvelopeConfig,
    extractor: EnvelopeExtractor,
}

fn extractor(toml: &str) -> Extractor {
    let config = Config::from_toml(toml, &|_| None).expect("fuzz envelope config is valid").envelope;
    let extractor = EnvelopeExtractor::new(&config).expect("fuzz envelope config fits");
    Extractor { config, extractor }
}

static DEFAULT_EXTRACTOR: LazyLock<Extractor> = LazyLock::new(|| extractor(""));
static CUSTOM_EXTRACTOR: LazyLock<Extractor> = LazyLock::new(|| extractor(CUSTOM_ENVELOPE));
/// The daemon's default extractor, with the cost and dead-letter pointers
/// (token counts are numbers: the captures of every value kind are compared).
static ACCOUNTING_EXTRACTOR: LazyLock<EnvelopeExtractor> = LazyLock::new(|| {
    let config = Config::from_toml("", &|_| None).expect("default config is valid");
    EnvelopeExtractor::for_config(&config).expect("default pointers fit")
});
const NO_HEADERS: &[(&str, &[u8])] = &[];

/// Input layout: byte 0 is a control byte (`0xff`: tombstone; low 2 bits:
/// header count, then 2 bits per header: its name in [`HEADER_NAMES`]);
/// the rest is split on `0xff` into that many header values, then the
/// payload (the remainder, which may contain `0xff` itself).
pub fn envelope(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let header_count = usize::from(control & 0b11);
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    let mut pieces: Vec<&[u8]> = rest.splitn(header_count + 1, |b| *b == 0xff).collect();
    let payload = pieces.pop().unwrap_or_default();
    for (i, value) in pieces.into_iter().enumerate() {
        headers.push((HEADER_NAMES[usize::from(control >> (2 + 2 * i)) & 0b11], value));
    }
    let payload = if control == 0xff { None } else { Some(payload) };
    for extractor in [&*DEFAULT_EXTRACTOR, &*CUSTOM_EXTRACTOR] {
        let envelope = extractor.extractor.extract(payload, &headers[..]);
        check_envelope(&extractor.config, payload, &headers, &envelope);
        same_envelope_from_tape(&extractor.extractor, payload, &headers[..], &envelope);
    }
    let walked = ACCOUNTING_EXTRACTOR.extract(payload, &headers[..]);
    same_envelope_from_tape(&ACCOUNTING_EXTRACTOR, payload, &headers[..], &walked);
}

/// The envelope read from a tape (one parse per record in the ingest loop)
/// equals the one the walk reads, whenever the tape accepts the payload.
fn same_envelope_from_tape(
    extractor: &EnvelopeExtractor,
    payload: Option<&[u8]>,
    headers: &[(&str, &[u8])],
    walked: &Envelope,
) {
    let mut tape = Tape::default();
    if let Some(text) = extractor.json_text(payload).filter(|text| tape.parse(text)) {
        let from_tape = extractor.extract_parsed(payload, headers, Some((&tape, text)));
        assert_eq!(format!("{from_tape:?}"), format!("{walked:?}"), "the tape's envelope differs from the walk's");
    }
}

fn check_envelope(config: &EnvelopeConfig, payload: Option<&[u8]>, headers: &[(&str, &[u8])], envelope: &Envelope) {
    let problems: BTreeSet<&str> = envelope.problems.iter().map(EnvelopeProblem::as_str).collect();
    let Some(payload) = payload else {
        assert_eq!(envelope.format, PayloadFormat::Tombstone);
        assert!(problems.is_empty(), "a tombstone has problems: {problems:?}");
        assert!(envelope.schema_id.is_none() && envelope.event_type.is_none() && envelope.trace_id.is_none());
        return;
    };
    let (format, schema_id, body) = classify(payload);
    assert_eq!((envelope.format, envelope.schema_id), (format, schema_id));

    // Problems that say why the payload was not judged: at most one.
    let framing = [
        EnvelopeProblem::EmptyPayload,
        EnvelopeProblem::PayloadTooLarge,
        EnvelopeProblem::InvalidJson,
        EnvelopeProblem::NotAnObject,
    ];
    let framing: Vec<_> = framing.into_iter().filter(|p| envelope.problems.contains(*p)).collect();
    assert!(framing.len() <= 1, "several framing problems: {framing:?}");
    assert_eq!(envelope.problems.contains(EnvelopeProblem::EmptyPayload), payload.is_empty());
    let too_large = !payload.is_empty() && payload.len() > config.max_payload_bytes;
    assert_eq!(envelope.problems.contains(EnvelopeProblem::PayloadTooLarge), too_large);

    // serde_json's tree of the body, when the walk was asked to read it.
    let walked = !payload.is_empty() && !too_large && format != PayloadFormat::ConfluentBinary;
    let tree = if walked { Some(serde_json::from_slice::<Value>(body)) } else { None };
    match &tree {
        Some(Ok(value)) => {
            assert!(
                !envelope.problems.contains(EnvelopeProblem::InvalidJson),
                "serde_json parses what the walk refused"
            );
            assert_eq!(envelope.problems.contains(EnvelopeProblem::NotAnObject), !value.is_object());
        }
        Some(Err(error)) => {
            // Two limits of serde_json's tree parser, not of JSON: the walk
            // skips unwanted subtrees iteratively (any nesting) and does not
            // convert unwanted numbers (`1e400`), as `scan_json` does not.
            let accepted = !envelope.problems.contains(EnvelopeProblem::InvalidJson);
            let limit = ["recursion limit", "number out of range"].iter().any(|l| error.to_string().contains(l));
            assert!(!accepted || limit, "walk accepted invalid JSON: {error}");
        }
        None => assert!(!envelope.problems.contains(EnvelopeProblem::InvalidJson)),
    }
    let judged = walked && framing.is_empty();
    // The reference resolution reads the same tree; duplicate keys make
    // "which one wins" depend on the reader, so those documents are only
    // checked for the framing above.
    let document = match &tree {
        Some(Ok(value)) if judged && !has_duplicate_keys(body) => Some(value),
        _ if judged => return,
        _ => None,
    };

    let fields: [(&[Source], Option<&str>, EnvelopeProblem); 6] = [
        (&config.event_type, envelope.event_type.as_deref(), EnvelopeProblem::MissingEventType),
        (&config.trace_id, envelope.trace_id.as_deref(), EnvelopeProblem::MissingTraceId),
        (&config.event_id, envelope.event_id.as_deref(), EnvelopeProblem::MissingEventId),
        (&config.created_at, None, EnvelopeProblem::MissingCreatedAt),
        (&config.schema_version, envelope.schema_version.as_deref(), EnvelopeProblem::MissingSchemaVersion),
        (&config.producer, envelope.producer.as_deref(), EnvelopeProblem::MissingProducer),
    ];
    let mut expected = BTreeSet::new();
    if let Some(problem) = framing.first() {
        expected.insert(problem.as_str());
    }
    for (sources, actual, missing) in fields {
        let resolved = resolve(sources, document, headers);
        if resolved.wrong_type {
            expected.insert(EnvelopeProblem::InvalidFieldType.as_str());
        }
        if resolved.bad_traceparent {
            expected.insert(EnvelopeProblem::InvalidTraceparent.as_str());
        }
        match (&resolved.value, missing) {
            (None, _) if judged => {
                expected.insert(missing.as_str());
            }
            (None, _) => {}
            (Some(text), EnvelopeProblem::MissingCreatedAt) => {
                let parsed = envelope.created_at_us.is_some();
                let invalid = envelope.problems.contains(EnvelopeProblem::InvalidCreatedAt);
                assert!(parsed != invalid, "created_at {text:?}: parsed {parsed}, invalid {invalid}");
                if invalid {
                    expected.insert(EnvelopeProblem::InvalidCreatedAt.as_str());
                }
            }
            (Some(_), _) => {}
        }
        if missing != EnvelopeProblem::MissingCreatedAt {
            assert_eq!(actual, resolved.value.as_deref(), "{missing:?}: walk and serde_json disagree");
        } else if resolved.value.is_none() {
            assert!(envelope.created_at_us.is_none());
        }
    }
    assert_eq!(problems, expected, "problem set");
    for value in [&envelope.event_type, &envelope.trace_id, &envelope.event_id, &envelope.producer] {
        if let Some(Cow::Borrowed(text)) = value {
            let inside = |bytes: &[u8]| bytes.as_ptr_range().contains(&text.as_ptr());
            assert!(inside(payload) || headers.iter().any(|(_, v)| inside(v)), "borrowed value from elsewhere");
        }
    }
}

struct Resolved {
    value: Option<String>,
    wrong_type: bool,
    bad_traceparent: bool,
}

/// A field's value by the documented rules, read from serde_json's tree.
fn resolve(sources: &[Source], document: Option<&Value>, headers: &[(&str, &[u8])]) -> Resolved {
    let mut resolved = Resolved { value: None, wrong_type: false, bad_traceparent: false };
    let last = |name: &str| headers.iter().rev().find(|(key, _)| *key == name).map(|(_, value)| *value);
    for source in sources {
        match source {
            Source::Pointer(keys) => {
                let found =
                    document.and_then(|root| keys.iter().try_fold(root, |node, key| node.as_object()?.get(key)));
                match found {
                    Some(Value::String(text)) if !text.is_empty() => {
                        resolved.value = Some(text.clone());
                        return resolved;
                    }
                    Some(Value::String(_) | Value::Null) | None => {}
                    Some(_) => resolved.wrong_type = true,
                }
            }
            Source::Header(name) => match last(name).map(std::str::from_utf8) {
                Some(Ok(text)) if !text.is_empty() => {
                    resolved.value = Some(text.to_string());
                    return resolved;
                }
                Some(Ok(_)) | None => {}
                Some(Err(_)) => resolved.wrong_type = true,
            },
            Source::TraceParent(name) => match last(name).map(parse_trace_id) {
                Some(Ok(trace_id)) => {
                    resolved.value = Some(trace_id.to_string());
                    return resolved;
                }
                Some(Err(_)) => resolved.bad_traceparent = true,
                None => {}
            },
        }
    }
    resolved
}

/// Whether any object of the document repeats a key.
fn has_duplicate_keys(json: &[u8]) -> bool {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    deserializer.deserialize_any(DuplicateKeys).unwrap_or(true)
}

struct DuplicateKeys;

impl<'de> DeserializeSeed<'de> for DuplicateKeys {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DuplicateKeys {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut duplicate = false;
        while let Some(inner) = seq.next_element_seed(DuplicateKeys)? {
            duplicate |= inner;
        }
        Ok(duplicate)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut keys = BTreeSet::new();
        let mut duplicate = false;
        while let Some(key) = map.next_key::<String>()? {
            duplicate |= !keys.insert(key);
            duplicate |= map.next_value_seed(DuplicateKeys)?;
        }
        Ok(duplicate)
    }
}

// ---------------------------------------------------------------------------
// avro: records through the validator's compiled-schema path

/// A record schema with every Avro type the decoder knows, logical types,
/// and a recursive type (a reply thread) last.
pub const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "TicketEvent", "namespace": "pipewarden.fuzz",
 "fields": [
  {"name": "event_type", "type": "string"},
  {"name": "trace_id", "type": ["null", "string"], "default": null},
  {"name": "sequence", "type": "long"},
  {"name": "priority", "type": "int"},
  {"name": "score", "type": "double"},
  {"name": "ratio", "type": "float"},
  {"name": "urgent", "type": "boolean"},
  {"name": "attachment", "type": "bytes"},
  {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["OPEN", "PENDING", "CLOSED"]}},
  {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
  {"name": "tags", "type": {"type": "array", "items": "string"}},
  {"name": "attributes", "type": {"type": "map", "values": "long"}},
  {"name": "created", "type": {"type": "long", "logicalType": "timestamp-micros"}},
  {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
  {"name": "ticket_id", "type": {"type": "string", "logicalType": "uuid"}},
  {"name": "thread", "type": ["null", {"type": "record", "name": "Reply",
    "fields": [{"name": "text", "type": "string"}, {"name": "next", "type": ["null", "Reply"]}]}]}
 ]}"#;

static AVRO: LazyLock<(CompiledSchema, apache_avro::Schema)> = LazyLock::new(|| {
    let compiled = schema::compile(SchemaKind::Avro, AVRO_SCHEMA).expect("fuzz avro schema compiles");
    (compiled, apache_avro::Schema::parse_str(AVRO_SCHEMA).expect("fuzz avro schema parses"))
});

/// `CompiledSchema::validate` on an Avro body: accepted exactly when the
/// datum decodes and fills the body; a refusal is a bounded
/// `schema_mismatch` that does not echo the payload.
pub fn avro(body: &[u8]) {
    let (compiled, schema) = &*AVRO;
    let verdict = compiled.validate(body);
    if let Err(violation) = &verdict {
        assert_eq!(violation.reason, ViolationReason::SchemaMismatch);
        assert!(violation.detail.len() <= DETAIL_MAX_BYTES);
        assert!(!violation.detail.contains("panicked"), "the avro decoder panicked: {}", violation.detail);
        assert_no_echo(body, &violation.detail);
        if violation.detail.contains("nested deeper") {
            // The reference decoder below would overflow the stack on it.
            return;
        }
    }
    // The independent reading: the plain datum reader, then a check of the
    // decoded value against the schema (the decoder alone reads a value the
    // body cuts off as null).
    #[allow(deprecated)]
    let reference = {
        let mut rest = body;
        apache_avro::from_avro_datum(schema, &mut rest, None).map(|value| (rest.is_empty(), value.validate(schema)))
    };
    let reference_accepts = matches!(reference, Ok((true, true)));
    match verdict {
        Ok(()) => assert!(reference_accepts, "accepted, but the datum reader says {reference:?}"),
        // A union index cut off reads as its null branch, which the value
        // check accepts: the validator saw the body run out.
        Err(violation) if violation.detail.contains("truncated") => {
            assert!(matches!(reference, Ok((true, _)) | Err(_)), "truncated, but bytes were left");
        }
        Err(violation) => assert!(!reference_accepts, "refused a body the datum reader accepts: {violation:?}"),
    }
}

/// A violation detail goes to logs: it must not quote the payload. A run
/// of 12 or more printable ASCII bytes of the body found in the detail is a
/// quote unless it is the library's own wording (the fuzzer learns error
/// messages and writes them into bodies): with the run overwritten by `Q`s,
/// the detail must not show the `Q`s instead.
fn assert_no_echo(body: &[u8], detail: &str) {
    let (compiled, _) = &*AVRO;
    let mut start = 0;
    for run in body.split(|b| !(b.is_ascii_graphic() || *b == b' ')) {
        let at = start;
        start += run.len() + 1;
        if run.len() < 12 || !detail.contains(std::str::from_utf8(run).expect("ASCII")) {
            continue;
        }
        let mut masked = body.to_vec();
        masked[at..at + run.len()].fill(b'Q');
        if let Err(violation) = compiled.validate(&masked) {
            assert!(!violation.detail.contains(&"Q".repeat(12)), "violation detail quotes the payload: {detail:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// config

/// `Config::from_toml` with no environment: never panics, and a rejected
/// file names at least one problem, each with a message.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, &|_| None) {
        Ok(config) => {
            assert!(config.envelope.max_payload_bytes > 0);
            // The extractor is built from any accepted envelope section;
            // too many pointers is its only (documented) refusal.
            let _ = EnvelopeExtractor::new(&config.envelope);
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without a problem");
            assert!(errors.0.iter().all(|p| !p.to_string().is_empty()));
        }
    }
}

// ---------------------------------------------------------------------------
// json_scan: the validator's depth pre-check and the PII scanner

/// `json_depth_exceeds` agrees with a plain scan (its counting fast path
/// is only an optimisation) and, on valid JSON, with the real nesting
/// depth; `PiiScanner::scan_json` accepts exactly what serde_json accepts
/// (except out-of-range numbers, as documented) and finds exactly the kinds
/// its `scan_str` finds in the document's strings (plus card-like integers).
pub fn json_scan(data: &[u8]) {
    for max_depth in [0, 1, 2, 3, 8, 64, 127, 128] {
        assert_eq!(json_depth_exceeds(data, max_depth), plain_depth(data) > max_depth, "max_depth {max_depth}");
    }
    let tree = serde_json::from_slice::<Value>(data);
    if tree.is_ok() {
        // From the parser, not the tree: the tree keeps only the last of
        // repeated keys, the text nests as deep as any of them.
        let depth = serde_json::Deserializer::from_slice(data).deserialize_any(Depth).expect("parsed before");
        assert!(!json_depth_exceeds(data, depth));
        if depth > 0 {
            assert!(json_depth_exceeds(data, depth - 1));
        }
    }

    let scanner = PiiScanner::new(PiiKinds::all());
    let scanned = scanner.scan_json(data);
    match (&tree, scanned) {
        (Ok(_), Ok(found)) => {
            let expected = expected_kinds(&scanner, data);
            assert_eq!(found, expected, "scan_json and scan_str over serde_json's strings disagree");
        }
        (Ok(_), Err(())) => panic!("scan_json refused JSON serde_json accepts"),
        (Err(error), Ok(_)) => {
            assert!(error.to_string().contains("number out of range"), "scan_json accepted invalid JSON: {error}")
        }
        (Err(_), Err(())) => {}
    }
    // A scanner with fewer kinds finds a subset, never something else.
    let email_only = PiiScanner::new([PiiKind::Email].into_iter().collect());
    if let Ok(found) = email_only.scan_json(data) {
        assert!(found.iter().all(|kind| kind == PiiKind::Email));
    }
}

/// The deepest nesting of brackets outside strings (no grammar check).
fn plain_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in json {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The nesting depth of a JSON value, read by serde_json's parser.
struct Depth;

impl<'de> DeserializeSeed<'de> for Depth {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Depth {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut deepest = 0;
        while let Some(depth) = seq.next_element_seed(Depth)? {
            deepest = deepest.max(depth);
        }
        Ok(deepest + 1)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut deepest = 0;
        while map.next_key::<de::IgnoredAny>()?.is_some() {
            deepest = deepest.max(map.next_value_seed(Depth)?);
        }
        Ok(deepest + 1)
    }
}

/// The kinds `scan_str` finds in every string value of the document, and
/// card-like plain integers, read by serde_json's parser. Not from the tree:
/// a repeated key's earlier value is scanned too (serde_json's map keeps
/// only the last one).
fn expected_kinds(scanner: &PiiScanner, json: &[u8]) -> PiiKinds {
    let mut found = PiiKinds::default();
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    deserializer.deserialize_any(ExpectedKinds { scanner, found: &mut found }).expect("serde_json parsed it before");
    found
}

struct ExpectedKinds<'s, 'f> {
    scanner: &'s PiiScanner,
    found: &'f mut PiiKinds,
}

impl<'de> DeserializeSeed<'de> for ExpectedKinds<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ExpectedKinds<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    /// Plain integer literals of 13-19 digits are checked as card numbers.
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        let digits = n.to_string();
        let card = PiiScanner::new([PiiKind::PaymentCard].into_iter().collect());
        if (13..=19).contains(&digits.len()) && card.scan_str(&digits).contains(PiiKind::PaymentCard) {
            self.found.insert(PiiKind::PaymentCard);
        }
        Ok(())
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.scanner.scan_str(text).iter().for_each(|kind| self.found.insert(kind));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(ExpectedKinds { scanner: self.scanner, found: &mut *self.found })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<de::IgnoredAny>()?.is_some() {
            map.next_value_seed(ExpectedKinds { scanner: self.scanner, found: &mut *self.found })?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// tape: the borrowed JSON tape behind JSON Schema validation

/// A JSON Schema touching every keyword family the tape's accessors serve
/// (types, enum/const, numbers, strings, arrays, objects, property names).
static TAPE_SCHEMA: LazyLock<CompiledSchema> = LazyLock::new(|| {
    let text = r#"{
        "type": ["object", "array", "string", "number", "boolean", "null"],
        "properties": {
            "a": { "type": "integer", "minimum": 0, "maximum": 1000 },
            "b": { "enum": ["x", "y", 1, null, [1], {"k": true}] },
            "c": { "type": "string", "minLength": 1, "maxLength": 8, "pattern": "^[a-z]" },
            "d": { "type": "array", "items": { "type": ["number", "string"] }, "uniqueItems": true, "maxItems": 4 },
            "e": { "type": "object", "required": ["f"], "additionalProperties": false,
                   "properties": { "f": { "const": 1 }, "g": { "type": "number", "multipleOf": 0.5 } } },
            "t": { "type": "string", "format": "date-time" }
        },
        "propertyNames": { "maxLength": 12 },
        "items": { "type": ["integer", "object", "string"] }
    }"#;
    schema::compile(SchemaKind::Json, text).expect("the tape check's schema compiles")
});

/// `Tape::parse` accepts a document only when serde_json does, and then
/// reads back exactly serde_json's `Value`; and validation (the tape's fast
/// path, then `Value`) answers exactly what validating serde_json's `Value`
/// answers.
pub fn tape(data: &[u8]) {
    let tree = serde_json::from_slice::<Value>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let mut tape = Tape::default();
        if tape.parse(text) {
            let tree = tree.as_ref().expect("the tape accepted what serde_json refuses");
            assert_eq!(&tape.to_value(text), tree, "the tape reads a different document");
            for max_depth in [0, 1, 2, 8, 64, 99] {
                assert_eq!(tape.depth() > max_depth, json_depth_exceeds(data, max_depth), "depth over {max_depth}");
            }
            let expected = TAPE_SCHEMA.validate_json_value(tree).expect("a JSON schema");
            let from_tape = TAPE_SCHEMA.validate_parsed(data, Some((&tape, text)));
            assert_eq!(from_tape, expected, "the verdict on an already parsed tape differs");
            // The other readers of the same parse agree with their own passes.
            let scanner = PiiScanner::new(PiiKinds::all());
            assert_eq!(Ok(scanner.scan_tape(&tape, text)), scanner.scan_json(data), "PII over the tape differs");
            let extractor = &*ACCOUNTING_EXTRACTOR;
            let walked = extractor.extract(Some(data), NO_HEADERS);
            same_envelope_from_tape(extractor, Some(data), NO_HEADERS, &walked);
        }
    }
    if let Ok(tree) = &tree {
        let expected = TAPE_SCHEMA.validate_json_value(tree).expect("a JSON schema").is_ok();
        assert_eq!(TAPE_SCHEMA.validate(data).is_ok(), expected, "the tape's verdict differs from Value's");
    }
}
