//! Compiled schemas and the per-record check against them.
//!
//! In: a schema's kind and text (from the registry or a local file), compiled
//! once by [`compile`]; then, per record, the serialized value — the bytes
//! after the 5-byte Confluent wire prefix, or the whole payload for plain JSON.
//! Out: `Ok(())` or a [`Violation`] with a machine-readable reason (a metric
//! label) and a bounded, human-readable detail.
//!
//! Place in the data path: `decode` (wire-format split) ─► [`super::cache`]
//! (schema ID/subject → `Arc<CompiledSchema>`) ─► [`CompiledSchema::validate`]
//! here, on the ingest thread. Everything expensive (parsing the schema text,
//! resolving Avro names, building the JSON Schema validator) happens in
//! [`compile`], on the cache's worker thread; `validate` only decodes/checks.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::avro_depth::{DepthGuard, MAX_AVRO_DEPTH};
use crate::tape::{Tape, TapeJson};

/// Largest allocation the Avro decoder may make for one length prefix
/// (string, bytes, array block). apache-avro's own default is 512 MiB, so a
/// 6-byte poison record claiming a huge string would make the ingest thread
/// allocate 512 MiB. No real Kafka record body needs more than this. The
/// limit is process-wide and set once (first Avro compile wins) because
/// apache-avro keeps it in a `OnceLock`.
pub const AVRO_MAX_ALLOCATION_BYTES: usize = 64 * 1024 * 1024;

/// Upper bound of [`Violation::detail`], in bytes.
pub const DETAIL_MAX_BYTES: usize = 512;

/// How many JSON Schema errors are spelled out in a violation's detail.
const JSON_ERRORS_IN_DETAIL: usize = 3;

/// The registry's `schemaType` (absent means Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    Avro,
    Json,
    Protobuf,
}

impl SchemaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaKind::Avro => "avro",
            SchemaKind::Json => "json",
            SchemaKind::Protobuf => "protobuf",
        }
    }

    /// Maps the registry's `schemaType` field; `None` is Avro by the
    /// Confluent API's definition.
    pub fn from_registry_type(schema_type: Option<&str>) -> Result<Self, String> {
        match schema_type {
            None | Some("AVRO") => Ok(SchemaKind::Avro),
            Some("JSON") => Ok(SchemaKind::Json),
            Some("PROTOBUF") => Ok(SchemaKind::Protobuf),
            Some(other) => Err(format!("unsupported schemaType {other:?}")),
        }
    }
}

/// Why a record failed validation; `as_str` gives the metric label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViolationReason {
    /// The body is not a JSON document (for a JSON Schema).
    NotJson,
    /// The body parsed/decoded but does not match the schema.
    SchemaMismatch,
    /// The framing inside the body is broken (Protobuf message indexes).
    BadWireFormat,
}

impl ViolationReason {
    pub const ALL: [ViolationReason; 3] =
        [ViolationReason::NotJson, ViolationReason::SchemaMismatch, ViolationReason::BadWireFormat];

    pub fn as_str(self) -> &'static str {
        match self {
            ViolationReason::NotJson => "not_json",
            ViolationReason::SchemaMismatch => "schema_mismatch",
            ViolationReason::BadWireFormat => "bad_wire_format",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: ViolationReason,
    /// At most [`DETAIL_MAX_BYTES`] bytes. JSON Schema errors are rendered
    /// with instance values masked, so payload content (possibly PII) does
    /// not leak into logs through this string.
    pub detail: String,
}

impl Violation {
    pub fn new(reason: ViolationReason, detail: impl Into<String>) -> Self {
        Violation { reason, detail: bounded(detail.into()) }
    }
}

/// Cuts `s` to at most [`DETAIL_MAX_BYTES`] bytes on a char boundary.
fn bounded(mut s: String) -> String {
    if s.len() > DETAIL_MAX_BYTES {
        let mut end = DETAIL_MAX_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A schema ready to check records; built once, shared via `Arc`.
pub struct CompiledSchema {
    kind: SchemaKind,
    inner: Inner,
}

enum Inner {
    /// apache-avro's single-object reader is used with an empty header as a
    /// plain datum reader because it owns the schema together with its
    /// resolved named types (`ResolvedOwnedSchema`). The obvious
    /// `from_avro_datum` (deprecated in 0.22) re-walks the schema and builds
    /// a name map on every call.
    Avro {
        reader: apache_avro::GenericSingleObjectReader,
        /// Set for recursive schemas only; see [`super::avro_depth`].
        depth_guard: Option<DepthGuard>,
    },
    Json {
        validator: jsonschema::Validator,
        /// The same schema over the borrowed tape (see `tape.rs`): the fast
        /// path; `None` if it did not compile (then `Value` is always used).
        tape: Option<jsonschema::Validator<TapeJson>>,
    },
    /// Recognised but not decoded: only the message-index framing is checked.
    Protobuf(#[allow(dead_code)] String),
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema").field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// Refuses every external `$ref`: schemas must be self-contained, and the
/// validator must never reach the network or the file system (a remote
/// `$ref` would otherwise be a request per compile to an arbitrary host).
/// Redundant while jsonschema's `resolve-*` features are off, but it keeps
/// holding if feature unification ever turns them on.
struct NoRemoteRefs;

impl jsonschema::Retrieve for NoRemoteRefs {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("external reference {uri} is not resolved (remote refs are disabled)").into())
    }
}

/// Parses and prepares `text` as a schema of `kind`. The error is the
/// library's message, for a log line or a start-up error.
pub fn compile(kind: SchemaKind, text: &str) -> Result<CompiledSchema, String> {
    let inner = match kind {
        SchemaKind::Avro => {
            apache_avro::util::max_allocation_bytes(AVRO_MAX_ALLOCATION_BYTES);
            let schema = apache_avro::Schema::parse_str(text).map_err(|e| format!("avro: {e}"))?;
            let depth_guard = DepthGuard::new(&schema);
            let reader = apache_avro::GenericSingleObjectReader::builder()
                .schema(schema)
                .header(Vec::new())
                .build()
                .map_err(|e| format!("avro: {e}"))?;
            Inner::Avro { reader, depth_guard }
        }
        SchemaKind::Json => {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("json schema is not JSON: {e}"))?;
            let validator = jsonschema::options()
                .with_retriever(NoRemoteRefs)
                .build(&value)
                .map_err(|e| format!("json schema: {e}"))?;
            let tape = jsonschema::options_for::<TapeJson>().with_retriever(NoRemoteRefs).build(&value).ok();
            Inner::Json { validator, tape }
        }
        SchemaKind::Protobuf => {
            if text.trim().is_empty() {
                return Err("protobuf: empty schema".to_string());
            }
            Inner::Protobuf(text.to_string())
        }
    };
    Ok(CompiledSchema { kind, inner })
}

impl CompiledSchema {
    pub fn kind(&self) -> SchemaKind {
        self.kind
    }

    /// Checks one serialized value (see the module doc for what `body` is).
    pub fn validate(&self, body: &[u8]) -> Result<(), Violation> {
        self.validate_parsed(body, None)
    }

    /// [`validate`](Self::validate) with `body` already parsed: `tape`
    /// parsed from `text`, the body's text. A JSON Schema then reads the
    /// tape instead of parsing the body again.
    pub fn validate_parsed(&self, body: &[u8], parsed: Option<(&Tape, &str)>) -> Result<(), Violation> {
        match &self.inner {
            Inner::Json { validator, tape } => match (tape, parsed) {
                (Some(tape_validator), Some((tape, text))) if tape_validator.is_valid(tape.root(text)) => Ok(()),
                // The tape stands for the document: only its violation needs wording.
                (Some(_), Some(_)) => validate_json(validator, None, body),
                _ => validate_json(validator, tape.as_ref(), body),
            },
            Inner::Avro { reader, depth_guard } => validate_avro(reader, depth_guard.as_ref(), body),
            Inner::Protobuf(_) => read_message_indexes(body, |_| {})
                .map(|_| ())
                .map_err(|e| Violation::new(ViolationReason::BadWireFormat, e)),
        }
    }

    /// For a JSON Schema: checks an already parsed document, so a stage that
    /// parsed the payload anyway (parsing is ~80% of `validate`'s cost for a
    /// 500-byte event) does not pay twice. `None` for Avro/Protobuf.
    pub fn validate_json_value(&self, value: &serde_json::Value) -> Option<Result<(), Violation>> {
        match &self.inner {
            Inner::Json { validator, .. } => Some(check_json(validator, value)),
            _ => None,
        }
    }
}

fn validate_json(
    validator: &jsonschema::Validator,
    tape_validator: Option<&jsonschema::Validator<TapeJson>>,
    body: &[u8],
) -> Result<(), Violation> {
    thread_local! {
        // Each ingest thread's parse buffers, reused for every record.
        static TAPE: RefCell<Tape> = RefCell::new(Tape::default());
    }
    // The fast path answers only "valid"; anything else (not JSON, a
    // document the tape does not stand for, a violation) is decided and
    // worded through `Value` below.
    if let (Some(tape_validator), Ok(text)) = (tape_validator, std::str::from_utf8(body)) {
        let valid = TAPE.with_borrow_mut(|tape| tape.parse(text) && tape_validator.is_valid(tape.root(text)));
        if valid {
            return Ok(());
        }
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Violation::new(ViolationReason::NotJson, e.to_string()))?;
    check_json(validator, &value)
}

fn check_json(validator: &jsonschema::Validator, value: &serde_json::Value) -> Result<(), Violation> {
    // The boolean check short-circuits and builds no error objects; the
    // expensive error collection runs only for the (rare) invalid record.
    if validator.is_valid(value) {
        return Ok(());
    }
    let mut detail = String::new();
    let mut shown = 0;
    let mut total = 0;
    for error in validator.iter_errors(value) {
        total += 1;
        if shown == JSON_ERRORS_IN_DETAIL {
            continue;
        }
        shown += 1;
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        let path = error.instance_path().as_str();
        let path = if path.is_empty() { "/" } else { path };
        // masked(): "value is not of type ..." instead of echoing the payload.
        detail.push_str(&format!("{path}: {}", error.masked()));
        if detail.len() > DETAIL_MAX_BYTES {
            break;
        }
    }
    if total > shown {
        detail.push_str(&format!(" (+{} more)", total - shown));
    }
    if detail.is_empty() {
        detail.push_str("does not match the schema");
    }
    Err(Violation::new(ViolationReason::SchemaMismatch, detail))
}

fn validate_avro(
    reader: &apache_avro::GenericSingleObjectReader,
    depth_guard: Option<&DepthGuard>,
    body: &[u8],
) -> Result<(), Violation> {
    // The decoder recurses per nesting level: a recursive schema's body must
    // be checked for depth first, or it can overflow the thread's stack.
    if depth_guard.is_some_and(|guard| guard.too_deep(body)) {
        return Err(Violation::new(
            ViolationReason::SchemaMismatch,
            format!("avro: nested deeper than {MAX_AVRO_DEPTH} levels"),
        ));
    }
    let mut rest = BodyReader { rest: body, truncated: false };
    // A decoder panic on hostile bytes must cost one record, not the ingest
    // thread. Unwinding is free when nothing panics.
    let decoded = catch_unwind(AssertUnwindSafe(|| reader.read_value(&mut rest)));
    match decoded {
        Err(_) => Err(Violation::new(ViolationReason::SchemaMismatch, "avro decoder panicked on this body")),
        Ok(Err(e)) => Err(Violation::new(ViolationReason::SchemaMismatch, format!("avro: {e}"))),
        // apache-avro reads a string, boolean or union index that the body
        // cuts off as null instead of failing, so a truncated record would
        // decode "successfully"; the reader saw it run out.
        Ok(Ok(_)) if rest.truncated => {
            Err(Violation::new(ViolationReason::SchemaMismatch, "avro: the body ends inside a value (truncated)"))
        }
        Ok(Ok(_)) if !rest.rest.is_empty() => Err(Violation::new(
            ViolationReason::SchemaMismatch,
            format!("avro: {} trailing bytes after a {}-byte datum", rest.rest.len(), body.len() - rest.rest.len()),
        )),
        Ok(Ok(_)) => Ok(()),
    }
}

/// The body as the Avro decoder reads it, remembering whether a read asked
/// for more bytes than were left.
struct BodyReader<'a> {
    rest: &'a [u8],
    truncated: bool,
}

impl std::io::Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() > self.rest.len() {
            self.truncated = true;
        }
        self.rest.read(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        if buf.len() > self.rest.len() {
            self.truncated = true;
        }
        self.rest.read_exact(buf)
    }
}

/// Reads the Confluent Protobuf message-index array at the start of `body`
/// (after the 5-byte wire prefix): a zigzag varint count, then that many
/// zigzag varint indexes into the `.proto` file's nested message types; the
/// single byte `0` is the common shorthand for `[0]` (first message).
/// Calls `visit` per index (`0` once for the shorthand) and returns how many
/// bytes the array took; the Protobuf message itself follows and is not
/// decoded (that needs a descriptor pool built from the `.proto` text).
pub fn read_message_indexes(body: &[u8], mut visit: impl FnMut(i32)) -> Result<usize, &'static str> {
    let mut pos = 0;
    let count = read_zigzag_varint(body, &mut pos).ok_or("protobuf: truncated message-index count")?;
    if count < 0 {
        return Err("protobuf: negative message-index count");
    }
    if count == 0 {
        visit(0);
        return Ok(pos);
    }
    // Each index takes at least one byte; this also bounds the loop.
    if count as usize > body.len() - pos {
        return Err("protobuf: message-index count exceeds the body");
    }
    for _ in 0..count {
        let index = read_zigzag_varint(body, &mut pos).ok_or("protobuf: truncated message index")?;
        if index < 0 {
            return Err("protobuf: negative message index");
        }
        visit(index);
    }
    Ok(pos)
}

/// A zigzag-encoded 32-bit varint (Confluent's `ByteUtils.readVarint`):
/// at most 5 bytes; `None` when truncated or overlong.
fn read_zigzag_varint(bytes: &[u8], pos: &mut usize) -> Option<i32> {
    let mut raw: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        raw |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON_SCHEMA: &str = r#"{
        "type": "object",
        "required": ["event_id", "kind", "agent"],
        "properties": {
            "event_id": {"type": "string", "pattern": "^[0-9a-f]{8}-"},
            "kind": {"enum": ["request", "response", "error"]},
            "agent": {"type": "string"},
            "latency_ms": {"type": "integer", "minimum": 0}
        }
    }"#;

    const AVRO_SCHEMA: &str = r#"{
        "type": "record", "name": "Event", "namespace": "pw",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["request", "response"]}},
            {"name": "latency_ms", "type": "long"},
            {"name": "parent", "type": ["null", "Event"], "default": null}
        ]
    }"#;

    fn avro_event(schema: &apache_avro::Schema, latency: i64) -> Vec<u8> {
        use apache_avro::types::{Record, Value};
        let mut record = Record::new(schema).unwrap();
        record.put("event_id", "0123abcd-1");
        record.put("kind", Value::Enum(1, "response".into()));
        record.put("latency_ms", latency);
        record.put("parent", Value::Union(0, Box::new(Value::Null)));
        #[allow(deprecated)]
        apache_avro::to_avro_datum(schema, record).unwrap()
    }

    #[test]
    fn kind_from_registry_type() {
        assert_eq!(SchemaKind::from_registry_type(None), Ok(SchemaKind::Avro));
        assert_eq!(SchemaKind::from_registry_type(Some("JSON")), Ok(SchemaKind::Json));
        assert_eq!(SchemaKind::from_registry_type(Some("PROTOBUF")), Ok(SchemaKind::Protobuf));
        assert!(SchemaKind::from_registry_type(Some("XML")).is_err());
    }

    #[test]
    fn json_valid_and_invalid() {
        let schema = compile(SchemaKind::Json, JSON_SCHEMA).unwrap();
        assert_eq!(schema.kind(), SchemaKind::Json);
        let ok = br#"{"event_id":"0123abcd-x","kind":"request","agent":"triage","latency_ms":3}"#;
        assert_eq!(schema.validate(ok), Ok(()));

        let bad = br#"{"event_id":"secret@example.com","kind":"nope","latency_ms":-1}"#;
        let v = schema.validate(bad).unwrap_err();
        assert_eq!(v.reason, ViolationReason::SchemaMismatch);
        assert!(v.detail.contains("/kind"), "{}", v.detail);
        assert!(v.detail.contains("(+1 more)"), "{}", v.detail);
        assert!(!v.detail.contains("secret@example.com"), "payload leaked: {}", v.detail);

        let parsed: serde_json::Value = serde_json::from_slice(bad).unwrap();
        assert_eq!(schema.validate_json_value(&parsed).unwrap().unwrap_err().reason, ViolationReason::SchemaMismatch);
        let v = schema.validate(b"{\"event_id\": ").unwrap_err();
        assert_eq!(v.reason, ViolationReason::NotJson);
        let v = schema.validate(&[0xff, 0xfe]).unwrap_err();
        assert_eq!(v.reason, ViolationReason::NotJson);
    }

    #[test]
    fn json_schema_compile_errors() {
        assert!(compile(SchemaKind::Json, "{not json").is_err());
        assert!(compile(SchemaKind::Json, r#"{"type": 12}"#).is_err());
        // Remote refs are refused at compile time, never fetched.
        let remote = r#"{"$ref": "http://127.0.0.1:9/never.json"}"#;
        let err = compile(SchemaKind::Json, remote).unwrap_err();
        assert!(err.contains("never.json"), "{err}");
        // Local refs still work.
        let local = r##"{"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n"}"##;
        let s = compile(SchemaKind::Json, local).unwrap();
        assert!(s.validate(b"3").is_ok());
        assert!(s.validate(b"\"x\"").is_err());
    }

    #[test]
    fn avro_valid_truncated_trailing_wrong_type() {
        let parsed = apache_avro::Schema::parse_str(AVRO_SCHEMA).unwrap();
        let compiled = compile(SchemaKind::Avro, AVRO_SCHEMA).unwrap();
        let datum = avro_event(&parsed, 1234);
        assert_eq!(compiled.validate(&datum), Ok(()));

        let v = compiled.validate(&datum[..datum.len() - 2]).unwrap_err();
        assert_eq!(v.reason, ViolationReason::SchemaMismatch);

        let mut trailing = datum.clone();
        trailing.extend_from_slice(&[1, 2, 3]);
        let v = compiled.validate(&trailing).unwrap_err();
        assert_eq!(v.reason, ViolationReason::SchemaMismatch);
        assert!(v.detail.contains("3 trailing bytes"), "{}", v.detail);

        // A record written with another schema: enum index 7 does not exist.
        let other = r#"{"type":"record","name":"Event","namespace":"pw","fields":[
            {"name":"event_id","type":"string"},{"name":"kind","type":"int"}]}"#;
        let other = apache_avro::Schema::parse_str(other).unwrap();
        let mut r = apache_avro::types::Record::new(&other).unwrap();
        r.put("event_id", "x");
        r.put("kind", 7);
        #[allow(deprecated)]
        let foreign = apache_avro::to_avro_datum(&other, r).unwrap();
        assert_eq!(compiled.validate(&foreign).unwrap_err().reason, ViolationReason::SchemaMismatch);

        // A JSON body against an Avro schema.
        assert!(compiled.validate(br#"{"event_id":"x"}"#).is_err());
        assert!(compiled.validate(b"").is_err());
    }

    #[test]
    fn avro_truncated_inside_a_string_or_union_is_refused() {
        // Found while writing the fuzz oracle: apache-avro reads a value the
        // body cuts off (a string's bytes, a boolean, a union index) as null
        // and succeeds, so these truncated records used to pass validation.
        let parsed = apache_avro::Schema::parse_str(AVRO_SCHEMA).unwrap();
        let compiled = compile(SchemaKind::Avro, AVRO_SCHEMA).unwrap();
        let datum = avro_event(&parsed, 1234);
        // Without its last byte (the `parent` union index).
        let v = compiled.validate(&datum[..datum.len() - 1]).unwrap_err();
        assert_eq!(v.reason, ViolationReason::SchemaMismatch);
        assert_eq!(v.detail, "avro: the body ends inside a value (truncated)");

        let string = compile(SchemaKind::Avro, r#""string""#).unwrap();
        assert_eq!(string.validate(&[0x06, b'a', b'b', b'c']), Ok(()));
        assert!(string.validate(&[0x06, b'a']).unwrap_err().detail.contains("truncated"));
        let boolean = compile(SchemaKind::Avro, r#""boolean""#).unwrap();
        assert!(boolean.validate(&[]).unwrap_err().detail.contains("truncated"));
    }

    #[test]
    fn avro_recursive_nesting_is_bounded_before_decoding() {
        // `Event.parent` is ["null", "Event"]: each level is a union index
        // and an event. Half a million levels used to overflow the stack of
        // the thread decoding it (the process aborts); now the depth guard
        // refuses the body before the decoder sees it.
        let compiled = compile(SchemaKind::Avro, AVRO_SCHEMA).unwrap();
        let level = [0x02, b'e', 0x02, 0x02]; // event_id "e", kind 1, latency 1
        let nested = |levels: usize| {
            let mut body = vec![0x02, b'e', 0x02, 0x02];
            for _ in 0..levels {
                body.push(0x02); // parent: branch 1, another Event
                body.extend_from_slice(&level);
            }
            body.push(0x00); // parent: null
            body
        };
        assert_eq!(compiled.validate(&nested(10)), Ok(()));
        let v = compiled.validate(&nested(500_000)).unwrap_err();
        assert_eq!(v.reason, ViolationReason::SchemaMismatch);
        assert_eq!(v.detail, format!("avro: nested deeper than {MAX_AVRO_DEPTH} levels"));
    }

    #[test]
    fn avro_huge_length_prefix_is_rejected_without_allocating() {
        let compiled = compile(SchemaKind::Avro, r#""string""#).unwrap();
        // zigzag varint for ~2^34: a string "length" far above the limit.
        let v = compiled.validate(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).unwrap_err();
        assert_eq!(v.reason, ViolationReason::SchemaMismatch);
    }

    #[test]
    fn avro_compile_errors() {
        assert!(compile(SchemaKind::Avro, "{").is_err());
        assert!(compile(SchemaKind::Avro, r#"{"type":"record","name":"X","fields":[{"name":"a","type":"Missing"}]}"#)
            .is_err());
    }

    #[test]
    fn protobuf_message_indexes() {
        let indexes = |b: &[u8]| {
            let mut out = Vec::new();
            read_message_indexes(b, |i| out.push(i)).map(|n| (out, n))
        };
        assert_eq!(indexes(&[0]), Ok((vec![0], 1)));
        assert_eq!(indexes(&[0, 0x0a, 0x01]), Ok((vec![0], 1)), "message bytes follow");
        // count 2 (zigzag 4), indexes 1 (2) and 3 (6)
        assert_eq!(indexes(&[4, 2, 6, 0x0a]), Ok((vec![1, 3], 3)));
        // index 64 takes two varint bytes: zigzag 128 = 0x80 0x01
        assert_eq!(indexes(&[2, 0x80, 0x01]), Ok((vec![64], 3)));
        assert!(indexes(&[]).is_err(), "empty");
        assert!(indexes(&[1]).is_err(), "negative count");
        assert!(indexes(&[4, 2]).is_err(), "count exceeds body");
        assert!(indexes(&[2, 0x80]).is_err(), "truncated varint");
        assert!(indexes(&[2, 1]).is_err(), "negative index");
        assert!(indexes(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err(), "overlong varint");

        let schema = compile(SchemaKind::Protobuf, "syntax = \"proto3\"; message A { string x = 1; }").unwrap();
        assert_eq!(schema.validate(&[0, 0x0a, 0x01, b'x']), Ok(()));
        assert_eq!(schema.validate(&[]).unwrap_err().reason, ViolationReason::BadWireFormat);
        assert!(compile(SchemaKind::Protobuf, "  ").is_err());
        assert!(schema.validate_json_value(&serde_json::json!({})).is_none());
    }

    #[test]
    fn detail_is_bounded_on_a_char_boundary() {
        let v = Violation::new(ViolationReason::SchemaMismatch, "é".repeat(400));
        assert!(v.detail.len() <= DETAIL_MAX_BYTES);
        assert_eq!(v.detail.len(), 512);
        let v = Violation::new(ViolationReason::SchemaMismatch, format!("x{}", "é".repeat(400)));
        assert_eq!(v.detail.len(), 511);
        assert_eq!(ViolationReason::NotJson.as_str(), "not_json");
        assert_eq!(ViolationReason::SchemaMismatch.as_str(), "schema_mismatch");
        assert_eq!(ViolationReason::BadWireFormat.as_str(), "bad_wire_format");
    }

    #[test]
    fn compiled_schema_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<CompiledSchema>();
    }
}
