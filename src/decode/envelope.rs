//! Envelope extraction: the contract fields of one record, read in one pass.
//!
//! In: a record's payload bytes and headers. Out: an [`Envelope`] that
//! borrows from the record where it can (event type, trace ID, event ID,
//! created_at, schema version, producer) and a set of bounded
//! [`EnvelopeProblem`]s.
//!
//! Each field has an ordered list of sources (JSON pointers, headers, W3C
//! `traceparent` headers); the first source that yields a value wins. All the
//! pointers of all fields are merged into one key tree, and the payload is
//! walked once with serde: keys outside the tree are skipped with
//! `IgnoredAny` (which still checks that they are well-formed JSON), wanted
//! strings are borrowed from the payload unless they contain escapes. The
//! valid path allocates nothing.
//!
//! The same walk captures the pointers of cost and dead-letter accounting
//! (token counts, model name, dead-letter source and reason fields; see
//! [`super::accounting`]) when [`EnvelopeExtractor::for_config`] builds the
//! extractor, so no payload is parsed twice.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::accounting::{Accounting, AccountingSources};
use super::traceparent;
use super::wire::{self, PayloadFormat};
use crate::config::{Config, EnvelopeConfig, Source};
use crate::tape::{Item, Tape};

/// Most JSON pointers all envelope fields together may use; keeps the
/// per-record capture array on the stack. The defaults use 7 envelope
/// pointers and 26 accounting pointers; 48 leaves room for custom sources
/// while the array (48 × 24 bytes) stays small enough to clear per record.
pub const MAX_POINTERS: usize = 48;

/// Read access to a record's headers, so extraction does not depend on rdkafka.
pub trait Headers {
    /// Value of the last header with this name (Kafka allows repeats; the
    /// last one is the most recently added).
    fn last(&self, name: &str) -> Option<&[u8]>;
}

impl Headers for [(&str, &[u8])] {
    fn last(&self, name: &str) -> Option<&[u8]> {
        self.iter().rev().find(|(key, _)| *key == name).map(|(_, value)| *value)
    }
}

/// A bounded reason why a record does not meet the envelope contract. The
/// `as_str` names are the `reason` label values of
/// `pipewarden_envelope_problems_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EnvelopeProblem {
    EmptyPayload,
    PayloadTooLarge,
    InvalidJson,
    NotAnObject,
    MissingEventType,
    MissingTraceId,
    MissingEventId,
    MissingCreatedAt,
    MissingSchemaVersion,
    MissingProducer,
    InvalidCreatedAt,
    InvalidTraceparent,
    InvalidFieldType,
}

impl EnvelopeProblem {
    pub const ALL: [EnvelopeProblem; 13] = [
        EnvelopeProblem::EmptyPayload,
        EnvelopeProblem::PayloadTooLarge,
        EnvelopeProblem::InvalidJson,
        EnvelopeProblem::NotAnObject,
        EnvelopeProblem::MissingEventType,
        EnvelopeProblem::MissingTraceId,
        EnvelopeProblem::MissingEventId,
        EnvelopeProblem::MissingCreatedAt,
        EnvelopeProblem::MissingSchemaVersion,
        EnvelopeProblem::MissingProducer,
        EnvelopeProblem::InvalidCreatedAt,
        EnvelopeProblem::InvalidTraceparent,
        EnvelopeProblem::InvalidFieldType,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EnvelopeProblem::EmptyPayload => "empty_payload",
            EnvelopeProblem::PayloadTooLarge => "payload_too_large",
            EnvelopeProblem::InvalidJson => "invalid_json",
            EnvelopeProblem::NotAnObject => "not_an_object",
            EnvelopeProblem::MissingEventType => "missing_event_type",
            EnvelopeProblem::MissingTraceId => "missing_trace_id",
            EnvelopeProblem::MissingEventId => "missing_event_id",
            EnvelopeProblem::MissingCreatedAt => "missing_created_at",
            EnvelopeProblem::MissingSchemaVersion => "missing_schema_version",
            EnvelopeProblem::MissingProducer => "missing_producer",
            EnvelopeProblem::InvalidCreatedAt => "invalid_created_at",
            EnvelopeProblem::InvalidTraceparent => "invalid_traceparent",
            EnvelopeProblem::InvalidFieldType => "invalid_field_type",
        }
    }
}

/// A small set of problems (one bit each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Problems(u16);

impl Problems {
    pub fn insert(&mut self, problem: EnvelopeProblem) {
        self.0 |= 1 << problem as u8;
    }
    pub fn contains(self, problem: EnvelopeProblem) -> bool {
        self.0 & (1 << problem as u8) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = EnvelopeProblem> {
        EnvelopeProblem::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

/// The contract fields of one record.
#[derive(Debug, Default)]
pub struct Envelope<'a> {
    pub format: PayloadFormat,
    /// Confluent schema ID from the wire-format prefix.
    pub schema_id: Option<u32>,
    pub event_type: Option<Cow<'a, str>>,
    pub trace_id: Option<Cow<'a, str>>,
    pub event_id: Option<Cow<'a, str>>,
    /// `created_at` as microseconds since the Unix epoch.
    pub created_at_us: Option<i64>,
    pub schema_version: Option<Cow<'a, str>>,
    pub producer: Option<Cow<'a, str>>,
    pub problems: Problems,
    /// Token usage, model and dead-letter fields, read in the same pass.
    pub accounting: Accounting<'a>,
}

/// Which contract field a source list fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    EventType,
    TraceId,
    EventId,
    CreatedAt,
    SchemaVersion,
    Producer,
}

impl Field {
    fn missing(self) -> EnvelopeProblem {
        match self {
            Field::EventType => EnvelopeProblem::MissingEventType,
            Field::TraceId => EnvelopeProblem::MissingTraceId,
            Field::EventId => EnvelopeProblem::MissingEventId,
            Field::CreatedAt => EnvelopeProblem::MissingCreatedAt,
            Field::SchemaVersion => EnvelopeProblem::MissingSchemaVersion,
            Field::Producer => EnvelopeProblem::MissingProducer,
        }
    }
}

/// A source resolved against the key tree.
#[derive(Debug, Clone)]
enum Resolved {
    Slot(usize),
    Header(String),
    TraceParent(String),
}

/// One node of the merged pointer tree.
#[derive(Debug, Default)]
pub(super) struct Node {
    children: Vec<(String, Node)>,
    /// Capture slot when a pointer ends here.
    slot: Option<usize>,
}

impl Node {
    /// Children are sorted by key length ([`Node::sort`]), so the scan stops
    /// at the first longer name: most payload keys are compared with a few
    /// names only, however many pointers the tree holds.
    fn child(&self, key: &str) -> Option<&Node> {
        for (name, node) in &self.children {
            if name.len() > key.len() {
                return None;
            }
            if name == key {
                return Some(node);
            }
        }
        None
    }

    fn sort(&mut self) {
        self.children.sort_by(|(a, _), (b, _)| (a.len(), a).cmp(&(b.len(), b)));
        self.children.iter_mut().for_each(|(_, node)| node.sort());
    }
}

/// What the walk found at one pointer. 24 bytes (a `Cow` plus a count
/// would make 32): the capture array is cleared and dropped per record.
#[derive(Debug, Default)]
pub(super) enum Captured<'a> {
    #[default]
    Absent,
    /// A string borrowed from the payload.
    Str(&'a str),
    /// A string with escape sequences, unescaped into its own allocation.
    Escaped(Box<str>),
    /// A non-negative integer (token counts); not a string for the envelope.
    Number(u64),
    /// Present but neither a string nor a count (negative or fractional
    /// number, bool, object, array).
    WrongType,
}

#[derive(Debug)]
pub struct TooManyPointers;

impl std::error::Error for TooManyPointers {}

impl fmt::Display for TooManyPointers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the envelope sources use more than {MAX_POINTERS} JSON pointers")
    }
}

/// Built once from the configuration; `extract` runs per record.
#[derive(Debug)]
pub struct EnvelopeExtractor {
    root: Node,
    slots: usize,
    fields: Vec<(Field, Vec<Resolved>)>,
    max_payload_bytes: usize,
    accounting: Option<AccountingSources>,
}

/// Adds one pointer to the key tree; returns its capture slot (shared with
/// any earlier identical pointer).
pub(super) fn insert_pointer(root: &mut Node, slots: &mut usize, keys: &[String]) -> usize {
    let mut node = root;
    for key in keys {
        let index = match node.children.iter().position(|(name, _)| name == key) {
            Some(index) => index,
            None => {
                node.children.push((key.clone(), Node::default()));
                node.children.len() - 1
            }
        };
        node = &mut node.children[index].1;
    }
    *node.slot.get_or_insert_with(|| {
        *slots += 1;
        *slots - 1
    })
}

impl EnvelopeExtractor {
    /// The envelope fields, plus the cost and dead-letter pointers of
    /// `config` when those features are on.
    pub fn for_config(config: &Config) -> Result<Self, TooManyPointers> {
        let mut extractor = Self::new(&config.envelope)?;
        let accounting = AccountingSources::new(config, &mut extractor.root, &mut extractor.slots);
        if extractor.slots > MAX_POINTERS {
            return Err(TooManyPointers);
        }
        extractor.root.sort();
        extractor.accounting = accounting;
        Ok(extractor)
    }

    pub fn new(config: &EnvelopeConfig) -> Result<Self, TooManyPointers> {
        let mut root = Node::default();
        let mut slots = 0;
        let mut fields = Vec::new();
        let lists = [
            (Field::EventType, &config.event_type),
            (Field::TraceId, &config.trace_id),
            (Field::EventId, &config.event_id),
            (Field::CreatedAt, &config.created_at),
            (Field::SchemaVersion, &config.schema_version),
            (Field::Producer, &config.producer),
        ];
        for (field, sources) in lists {
            let mut resolved = Vec::new();
            for source in sources {
                resolved.push(match source {
                    Source::Pointer(keys) => Resolved::Slot(insert_pointer(&mut root, &mut slots, keys)),
                    Source::Header(name) => Resolved::Header(name.clone()),
                    Source::TraceParent(name) => Resolved::TraceParent(name.clone()),
                });
            }
            fields.push((field, resolved));
        }
        if slots > MAX_POINTERS {
            return Err(TooManyPointers);
        }
        root.sort();
        Ok(Self { root, slots, fields, max_payload_bytes: config.max_payload_bytes, accounting: None })
    }

    /// Extracts the envelope of one record. `payload` is `None` for a
    /// tombstone (null value), which has no envelope and no problems.
    pub fn extract<'a, H: Headers + ?Sized>(&self, payload: Option<&'a [u8]>, headers: &'a H) -> Envelope<'a> {
        self.extract_parsed(payload, headers, None)
    }

    /// The JSON text [`extract`](Self::extract) would walk in `payload`: a
    /// JSON body (after any wire-format prefix) within the size limit, in
    /// UTF-8. A caller that parses it into a [`Tape`] hands the tape to
    /// [`extract_parsed`](Self::extract_parsed) and to the other checks, so
    /// the record is parsed once.
    pub fn json_text<'a>(&self, payload: Option<&'a [u8]>) -> Option<&'a str> {
        let payload = payload?;
        let (format, _, body) = wire::classify(payload);
        let json = matches!(format, PayloadFormat::Json | PayloadFormat::ConfluentJson);
        if !json || payload.len() > self.max_payload_bytes {
            return None;
        }
        std::str::from_utf8(body).ok()
    }

    /// [`extract`](Self::extract), reading the payload's fields from `parsed`
    /// (`tape` successfully parsed from `text`, the payload's
    /// [`json_text`](Self::json_text)) instead of walking it again. The
    /// result is the same: the tape refuses every document where it could
    /// differ (repeated keys, lone surrogates, malformed JSON), and those
    /// are walked.
    pub fn extract_parsed<'a, H: Headers + ?Sized>(
        &self,
        payload: Option<&'a [u8]>,
        headers: &'a H,
        parsed: Option<(&Tape, &'a str)>,
    ) -> Envelope<'a> {
        let mut envelope = Envelope::default();
        let Some(payload) = payload else {
            envelope.format = PayloadFormat::Tombstone;
            return envelope;
        };
        let mut captured: [Captured<'a>; MAX_POINTERS] = [const { Captured::Absent }; MAX_POINTERS];
        let captured = &mut captured[..self.slots];

        let (format, schema_id, body) = wire::classify(payload);
        envelope.format = format;
        envelope.schema_id = schema_id;
        // Whether payload fields can be judged at all: a schema-encoded
        // binary body needs its schema (the validate stage), so only header
        // sources apply and absent fields are not problems.
        let mut judge_payload = true;
        match format {
            PayloadFormat::Empty => {
                envelope.problems.insert(EnvelopeProblem::EmptyPayload);
                judge_payload = false;
            }
            _ if payload.len() > self.max_payload_bytes => {
                envelope.problems.insert(EnvelopeProblem::PayloadTooLarge);
                judge_payload = false;
            }
            PayloadFormat::ConfluentBinary => judge_payload = false,
            _ if parsed.is_some() => {
                let (tape, text) = parsed.expect("checked");
                if matches!(tape.item(0), Item::Object { .. }) {
                    capture(tape, text, 0, &self.root, captured);
                } else {
                    envelope.problems.insert(EnvelopeProblem::NotAnObject);
                    judge_payload = false;
                }
            }
            _ => match walk(body, &self.root, captured) {
                Ok(()) => {}
                Err(WalkError::NotAnObject) => {
                    envelope.problems.insert(EnvelopeProblem::NotAnObject);
                    judge_payload = false;
                }
                Err(WalkError::Invalid) => {
                    envelope.problems.insert(EnvelopeProblem::InvalidJson);
                    judge_payload = false;
                }
            },
        }

        for (field, sources) in &self.fields {
            let value = self.resolve(sources, &*captured, headers, &mut envelope.problems);
            match (field, value) {
                (Field::CreatedAt, Some(text)) => match OffsetDateTime::parse(&text, &Rfc3339) {
                    Ok(time) => envelope.created_at_us = Some((time.unix_timestamp_nanos() / 1_000) as i64),
                    Err(_) => envelope.problems.insert(EnvelopeProblem::InvalidCreatedAt),
                },
                (Field::EventType, value @ Some(_)) => envelope.event_type = value,
                (Field::TraceId, value @ Some(_)) => envelope.trace_id = value,
                (Field::EventId, value @ Some(_)) => envelope.event_id = value,
                (Field::SchemaVersion, value @ Some(_)) => envelope.schema_version = value,
                (Field::Producer, value @ Some(_)) => envelope.producer = value,
                (field, None) if judge_payload => envelope.problems.insert(field.missing()),
                (_, None) => {}
            }
        }
        if let Some(accounting) = &self.accounting {
            envelope.accounting = accounting.resolve(captured);
        }
        envelope
    }

    /// First value among a field's sources; wrong types and bad traceparents
    /// are recorded and the next source is tried.
    fn resolve<'a, H: Headers + ?Sized>(
        &self,
        sources: &[Resolved],
        captured: &[Captured<'a>],
        headers: &'a H,
        problems: &mut Problems,
    ) -> Option<Cow<'a, str>> {
        for source in sources {
            match source {
                // Read, not taken: two fields may share a pointer (e.g.
                // `event_id = ["/trace_id"]`), and the second must see the
                // value too. A borrowed value is a pointer copy; only strings
                // with escapes (already owned) are copied.
                Resolved::Slot(slot) => match &captured[*slot] {
                    Captured::Str(text) if !text.is_empty() => return Some(Cow::Borrowed(*text)),
                    Captured::Escaped(text) if !text.is_empty() => return Some(Cow::Owned(text.to_string())),
                    Captured::Str(_) | Captured::Escaped(_) | Captured::Absent => {}
                    Captured::Number(_) | Captured::WrongType => problems.insert(EnvelopeProblem::InvalidFieldType),
                },
                Resolved::Header(name) => match headers.last(name).map(std::str::from_utf8) {
                    Some(Ok(text)) if !text.is_empty() => return Some(Cow::Borrowed(text)),
                    Some(Ok(_)) | None => {}
                    Some(Err(_)) => problems.insert(EnvelopeProblem::InvalidFieldType),
                },
                Resolved::TraceParent(name) => match headers.last(name).map(traceparent::parse_trace_id) {
                    Some(Ok(trace_id)) => return Some(Cow::Borrowed(trace_id)),
                    Some(Err(_)) => problems.insert(EnvelopeProblem::InvalidTraceparent),
                    None => {}
                },
            }
        }
        None
    }
}

enum WalkError {
    Invalid,
    NotAnObject,
}

/// Walks a JSON document once, capturing the values at the tree's pointers.
/// On error nothing stays captured: a field read before the document turned
/// out to be broken must not be reported as if the record were valid.
fn walk<'a>(body: &'a [u8], root: &Node, captured: &mut [Captured<'a>]) -> Result<(), WalkError> {
    // JSON is UTF-8 (RFC 8259). serde_json checks the strings it returns but
    // not the ones `IgnoredAny` skips, so invalid bytes in an unwanted key or
    // value would pass as well-formed JSON; one up-front check covers them
    // all (and lets the parser skip its own per-string checks).
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(WalkError::Invalid);
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let result = match (&mut deserializer).deserialize_any(NodeVisitor { node: root, captured: &mut *captured }) {
        Ok(is_object) => match deserializer.end() {
            Ok(()) if !surrogates_paired(body) => Err(WalkError::Invalid),
            Ok(()) if is_object => Ok(()),
            Ok(()) => Err(WalkError::NotAnObject),
            Err(_) => Err(WalkError::Invalid),
        },
        Err(_) => Err(WalkError::Invalid),
    };
    if result.is_err() {
        captured.iter_mut().for_each(|slot| *slot = Captured::Absent);
    }
    result
}

/// What [`walk`] captures, read from a tape: the value at `index` for
/// `node`, then the children of an object. Mirrors the serde visitor below
/// value kind by value kind (`null` leaves a slot absent; an object or
/// array at a slot is the wrong type; numbers by serde_json's variant).
fn capture<'a>(tape: &Tape, text: &'a str, index: usize, node: &Node, captured: &mut [Captured<'a>]) {
    let value = match tape.item(index) {
        Item::Null => return,
        Item::Bool(_) | Item::Array { .. } => Captured::WrongType,
        Item::Text(range) => Captured::Str(&text[range]),
        Item::Escaped(escaped) => Captured::Escaped(escaped.into()),
        Item::Number(number) => {
            if let Some(count) = number.as_u64() {
                Captured::Number(count)
            } else if let Some(signed) = number.as_i64() {
                u64::try_from(signed).map_or(Captured::WrongType, Captured::Number)
            } else {
                whole_number(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Item::Object { members } => {
            if !node.children.is_empty() {
                let mut member = index + 1;
                for _ in 0..members {
                    if let Some(child) = node.child(tape.str(text, member)) {
                        capture(tape, text, member + 1, child, captured);
                    }
                    member = tape.after(member + 1);
                }
            }
            Captured::WrongType
        }
    };
    if let Some(slot) = node.slot {
        captured[slot] = value;
    }
}

/// Some encoders write counts as `12.0`; whole numbers in the exact integer
/// range of a double are counts, anything else is not.
fn whole_number(value: f64) -> Captured<'static> {
    let whole = value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 9_007_199_254_740_992.0;
    if whole {
        Captured::Number(value as u64)
    } else {
        Captured::WrongType
    }
}

/// Whether every `\u` escape of a well-formed JSON text pairs its UTF-16
/// surrogates (a high one followed at once by a low one), as serde_json
/// requires of the strings it returns. It does not check the strings that
/// `IgnoredAny` skips, so without this a lone `\ud800` in an unwanted value
/// passed as valid JSON (found by the envelope fuzz target). The text is
/// well-formed, so every backslash starts an escape inside a string.
fn surrogates_paired(json: &[u8]) -> bool {
    let code_unit = |at: usize| {
        let hex = json.get(at..at + 4).and_then(|hex| std::str::from_utf8(hex).ok());
        hex.and_then(|hex| u16::from_str_radix(hex, 16).ok()).unwrap_or(0)
    };
    let mut i = 0;
    while let Some(offset) = json.get(i..).and_then(|rest| rest.iter().position(|b| *b == b'\\')) {
        let escape = i + offset;
        i = escape + 2;
        if json.get(escape + 1) != Some(&b'u') {
            continue;
        }
        i = escape + 6;
        match code_unit(escape + 2) {
            0xDC00..=0xDFFF => return false,
            0xD800..=0xDBFF => {
                if json.get(i..i + 2) != Some(&b"\\u"[..]) || !(0xDC00..=0xDFFF).contains(&code_unit(i + 2)) {
                    return false;
                }
                i += 6;
            }
            _ => {}
        }
    }
    true
}

/// Visits one JSON value at `node`; returns whether it was an object.
struct NodeVisitor<'n, 'c, 'a> {
    node: &'n Node,
    captured: &'c mut [Captured<'a>],
}

impl<'n, 'c, 'a> NodeVisitor<'n, 'c, 'a> {
    fn capture(self, value: Captured<'a>) -> bool {
        if let Some(slot) = self.node.slot {
            self.captured[slot] = value;
        }
        false
    }
}

impl<'de, 'n, 'c> Visitor<'de> for NodeVisitor<'n, 'c, 'de> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<bool, E> {
        Ok(self.capture(Captured::Str(value)))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<bool, E> {
        // Only strings with escape sequences get here: they must be copied.
        Ok(self.capture(Captured::Escaped(value.into())))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<bool, E> {
        Ok(self.capture(Captured::Escaped(value.into_boxed_str())))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(self.capture(Captured::WrongType))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<bool, E> {
        Ok(self.capture(u64::try_from(value).map_or(Captured::WrongType, Captured::Number)))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<bool, E> {
        Ok(self.capture(Captured::Number(value)))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<bool, E> {
        Ok(self.capture(whole_number(value)))
    }
    /// `null` counts as absent: producers often write optional fields as null.
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.capture(Captured::WrongType))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let NodeVisitor { node, captured } = self;
        if let Some(slot) = node.slot {
            captured[slot] = Captured::WrongType;
        }
        while let Some(child) = map.next_key_seed(KeySeed { node })? {
            match child {
                Some(child) => {
                    map.next_value_seed(ValueSeed { node: child, captured: &mut *captured })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(true)
    }
}

/// Matches an object key against a node's children without allocating.
struct KeySeed<'n> {
    node: &'n Node,
}

impl<'de, 'n> DeserializeSeed<'de> for KeySeed<'n> {
    type Value = Option<&'n Node>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'n> Visitor<'de> for KeySeed<'n> {
    type Value = Option<&'n Node>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.node.child(key))
    }
}

struct ValueSeed<'n, 'c, 'a> {
    node: &'n Node,
    captured: &'c mut [Captured<'a>],
}

impl<'de, 'n, 'c> DeserializeSeed<'de> for ValueSeed<'n, 'c, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(NodeVisitor { node: self.node, captured: self.captured })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn extractor(toml: &str) -> EnvelopeExtractor {
        let config = Config::from_toml(toml, &|_| None).unwrap();
        EnvelopeExtractor::new(&config.envelope).unwrap()
    }

    fn default_extractor() -> EnvelopeExtractor {
        extractor("")
    }

    const NO_HEADERS: &[(&str, &[u8])] = &[];
    const FULL: &str = r#"{"event_type":"support.ticket.created","trace_id":"t-1","event_id":"e-1",
        "created_at":"2026-11-29T06:00:00.250Z","schema_version":"1.0","producer":"intake-agent",
        "data":{"subject":"printer on fire","nested":[1,2,{"event_type":"not me"}]}}"#;

    #[test]
    fn all_contract_fields_are_extracted_borrowed() {
        let extractor = default_extractor();
        let envelope = extractor.extract(Some(FULL.as_bytes()), NO_HEADERS);
        assert_eq!(envelope.format, PayloadFormat::Json);
        assert!(envelope.problems.is_empty(), "{:?}", envelope.problems.iter().collect::<Vec<_>>());
        assert_eq!(envelope.event_type.as_deref(), Some("support.ticket.created"));
        assert!(matches!(envelope.event_type, Some(Cow::Borrowed(_))));
        assert_eq!(envelope.trace_id.as_deref(), Some("t-1"));
        assert_eq!(envelope.event_id.as_deref(), Some("e-1"));
        assert_eq!(envelope.schema_version.as_deref(), Some("1.0"));
        assert_eq!(envelope.producer.as_deref(), Some("intake-agent"));
        assert_eq!(envelope.created_at_us, Some(1_795_932_000_250_000));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let extractor = default_extractor();
        let payload = br#"{"event_type":"a\"b\u00e9","trace_id":"t","event_id":"e","created_at":"2026-01-01T00:00:00Z","schema_version":"1","producer":"p"}"#;
        let envelope = extractor.extract(Some(payload), NO_HEADERS);
        assert_eq!(envelope.event_type.as_deref(), Some("a\"bé"));
        assert!(envelope.problems.is_empty());
    }

    #[test]
    fn trace_id_falls_back_to_correlation_id_then_traceparent() {
        let extractor = default_extractor();
        let payload = br#"{"event_type":"x","correlation_id":"corr-7"}"#;
        assert_eq!(extractor.extract(Some(payload), NO_HEADERS).trace_id.as_deref(), Some("corr-7"));

        let payload = br#"{"event_type":"x"}"#;
        let headers: &[(&str, &[u8])] = &[("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")];
        let envelope = extractor.extract(Some(payload), headers);
        assert_eq!(envelope.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(!envelope.problems.contains(EnvelopeProblem::MissingTraceId));

        let headers: &[(&str, &[u8])] = &[("traceparent", b"garbage")];
        let envelope = extractor.extract(Some(payload), headers);
        assert!(envelope.trace_id.is_none());
        assert!(envelope.problems.contains(EnvelopeProblem::InvalidTraceparent));
        assert!(envelope.problems.contains(EnvelopeProblem::MissingTraceId));
    }

    #[test]
    fn header_and_nested_pointer_sources() {
        let extractor = extractor(
            "[envelope]\nevent_type = [\"header:ce_type\", \"/meta/type\"]\nproducer = [\"/meta/source/agent\"]\n",
        );
        let payload = br#"{"meta":{"type":"from-payload","source":{"agent":"classifier"}}}"#;
        let headers: &[(&str, &[u8])] = &[("ce_type", b"old"), ("ce_type", b"from-header")];
        let envelope = extractor.extract(Some(payload), headers);
        assert_eq!(envelope.event_type.as_deref(), Some("from-header"));
        assert_eq!(envelope.producer.as_deref(), Some("classifier"));
        let envelope = extractor.extract(Some(payload), NO_HEADERS);
        assert_eq!(envelope.event_type.as_deref(), Some("from-payload"));
    }

    #[test]
    fn a_pointer_shared_by_two_fields_fills_both() {
        // Found by the envelope fuzz target's reference check: the first
        // field used to take the captured value, so the second field read
        // nothing and reported itself missing.
        let extractor =
            extractor("[envelope]\nevent_type = [\"/meta/type\"]\nschema_version = [\"header:v\", \"/meta/type\"]\n");
        let payload = br#"{"meta":{"type":"doc.\u0065xtracted"}}"#;
        let envelope = extractor.extract(Some(payload), NO_HEADERS);
        assert_eq!(envelope.event_type.as_deref(), Some("doc.extracted"));
        assert_eq!(envelope.schema_version.as_deref(), Some("doc.extracted"));
        assert!(!envelope.problems.contains(EnvelopeProblem::MissingSchemaVersion));
    }

    #[test]
    fn missing_fields_are_each_reported() {
        let envelope = default_extractor().extract(Some(b"{}"), NO_HEADERS);
        for problem in [
            EnvelopeProblem::MissingEventType,
            EnvelopeProblem::MissingTraceId,
            EnvelopeProblem::MissingEventId,
            EnvelopeProblem::MissingCreatedAt,
            EnvelopeProblem::MissingSchemaVersion,
            EnvelopeProblem::MissingProducer,
        ] {
            assert!(envelope.problems.contains(problem), "{problem:?}");
        }
        assert_eq!(envelope.problems.iter().count(), 6);
    }

    #[test]
    fn wrong_types_and_bad_timestamps_are_reported() {
        let payload = br#"{"event_type":42,"trace_id":{"a":1},"event_id":["e"],"created_at":12345,
            "schema_version":null,"producer":true}"#;
        let envelope = default_extractor().extract(Some(payload), NO_HEADERS);
        assert!(envelope.problems.contains(EnvelopeProblem::InvalidFieldType));
        assert!(envelope.problems.contains(EnvelopeProblem::MissingEventType));
        assert!(envelope.problems.contains(EnvelopeProblem::MissingSchemaVersion));
        assert!(envelope.event_type.is_none() && envelope.producer.is_none());

        let payload = br#"{"created_at":"yesterday at noon"}"#;
        let envelope = default_extractor().extract(Some(payload), NO_HEADERS);
        assert!(envelope.problems.contains(EnvelopeProblem::InvalidCreatedAt));
        assert!(envelope.created_at_us.is_none());
    }

    #[test]
    fn malformed_payloads_get_one_clear_reason() {
        let extractor = default_extractor();
        let cases: &[(&[u8], EnvelopeProblem)] = &[
            (b"", EnvelopeProblem::EmptyPayload),
            (br#"{"event_type":"x","trace_id":"#, EnvelopeProblem::InvalidJson),
            (br#"{"event_type":"x"} trailing"#, EnvelopeProblem::InvalidJson),
            (b"\xff\xfe{}", EnvelopeProblem::InvalidJson),
            (b"[1,2,3]", EnvelopeProblem::NotAnObject),
            (b"\"just a string\"", EnvelopeProblem::NotAnObject),
        ];
        for (payload, expected) in cases {
            let envelope = extractor.extract(Some(payload), NO_HEADERS);
            assert_eq!(envelope.problems.iter().collect::<Vec<_>>(), vec![*expected], "{payload:?}");
            assert!(envelope.event_type.is_none(), "a broken record has no event type: {payload:?}");
        }
    }

    #[test]
    fn invalid_utf8_in_a_skipped_subtree_is_invalid_json() {
        // Found by the envelope fuzz target (serde_json refuses the document,
        // the walk accepted it): skipped strings were not checked for UTF-8.
        let extractor = default_extractor();
        for payload in [&b"{\"event_type\":\"x\",\"a\":[{\"\x8fb\":1}]}"[..], b"{\"event_type\":\"x\",\"b\":\"\xff\"}"]
        {
            let envelope = extractor.extract(Some(payload), NO_HEADERS);
            assert_eq!(envelope.problems.iter().collect::<Vec<_>>(), vec![EnvelopeProblem::InvalidJson]);
            assert!(envelope.event_type.is_none());
        }
    }

    #[test]
    fn lone_surrogate_escapes_are_invalid_json_even_when_skipped() {
        // Found by the envelope fuzz target: serde_json refuses these
        // documents, but skipped values were not checked.
        let extractor = default_extractor();
        for payload in [
            r#"{"event_type":"x","note":"\ud800"}"#,
            r#"{"event_type":"x","note":"\udc00 trailing alone"}"#,
            r#"{"event_type":"x","note":["\ud83d\u0041"]}"#,
            r#"{"event_type":"x","note":"\ud83d"}"#,
        ] {
            let envelope = extractor.extract(Some(payload.as_bytes()), NO_HEADERS);
            assert_eq!(envelope.problems.iter().collect::<Vec<_>>(), vec![EnvelopeProblem::InvalidJson], "{payload}");
        }
        // Paired surrogates (an emoji) and escaped backslashes are fine.
        let payload = r#"{"event_type":"x","note":"\ud83d\ude00 \\ud800 \\\u00e9"}"#;
        let envelope = extractor.extract(Some(payload.as_bytes()), NO_HEADERS);
        assert!(!envelope.problems.contains(EnvelopeProblem::InvalidJson));
        assert_eq!(envelope.event_type.as_deref(), Some("x"));
    }

    #[test]
    fn oversized_payloads_are_not_parsed() {
        let extractor = extractor("[envelope]\nmax_payload_bytes = 16\n");
        let envelope = extractor.extract(Some(FULL.as_bytes()), NO_HEADERS);
        assert_eq!(envelope.problems.iter().collect::<Vec<_>>(), vec![EnvelopeProblem::PayloadTooLarge]);
        assert!(envelope.event_type.is_none());
    }

    #[test]
    fn deep_nesting_is_walked_without_recursion() {
        // Skipped subtrees are walked iteratively by serde_json, and wanted
        // subtrees are only as deep as the configured pointers, so nesting
        // cannot exhaust the stack.
        let deep = format!("{{\"event_type\":\"x\",\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let envelope = default_extractor().extract(Some(deep.as_bytes()), NO_HEADERS);
        assert_eq!(envelope.event_type.as_deref(), Some("x"));
        assert!(!envelope.problems.contains(EnvelopeProblem::InvalidJson));
        let unbalanced = "[".repeat(100_000);
        let envelope = default_extractor().extract(Some(unbalanced.as_bytes()), NO_HEADERS);
        assert!(envelope.problems.contains(EnvelopeProblem::InvalidJson));
    }

    #[test]
    fn tombstones_have_no_problems() {
        let envelope = default_extractor().extract(None, NO_HEADERS);
        assert_eq!(envelope.format, PayloadFormat::Tombstone);
        assert!(envelope.problems.is_empty());
    }

    #[test]
    fn confluent_wire_format_is_recognised() {
        let extractor = default_extractor();
        let mut json = vec![0, 0, 0, 1, 44];
        json.extend_from_slice(FULL.as_bytes());
        let envelope = extractor.extract(Some(&json), NO_HEADERS);
        assert_eq!(envelope.format, PayloadFormat::ConfluentJson);
        assert_eq!(envelope.schema_id, Some(300));
        assert_eq!(envelope.event_type.as_deref(), Some("support.ticket.created"));
        assert!(envelope.problems.is_empty());

        // An Avro body cannot be read without its schema: not broken JSON.
        let avro = [0u8, 0, 0, 0, 7, 0x02, 0x06, b'a', b'b', b'c'];
        let headers: &[(&str, &[u8])] = &[("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")];
        let envelope = extractor.extract(Some(&avro), headers);
        assert_eq!(envelope.format, PayloadFormat::ConfluentBinary);
        assert_eq!(envelope.schema_id, Some(7));
        assert!(envelope.problems.is_empty());
        assert_eq!(envelope.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn too_many_pointers_are_refused() {
        let list: Vec<String> = (0..MAX_POINTERS + 1).map(|i| format!("\"/f{i}\"")).collect();
        let config = Config::from_toml(&format!("[envelope]\nevent_type = [{}]\n", list.join(",")), &|_| None).unwrap();
        assert!(EnvelopeExtractor::new(&config.envelope).is_err());
    }
}
