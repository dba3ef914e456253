//! A JSON document as a flat tape that borrows from the payload, validated
//! by `jsonschema` through its custom-representation trait.
//!
//! In: a payload's text. Out: a [`Tape`] (one entry per value and key, in
//! document order) whose nodes `jsonschema` walks exactly as it walks a
//! `serde_json::Value`. Building a `Value` for a 500-byte event takes about
//! forty allocations (every key, string, map node) and was the largest single
//! cost of the per-record path; the tape is parsed into buffers reused for
//! every record, strings without escapes stay in the payload, and nothing is
//! allocated once the buffers have grown.
//!
//! The tape stands in for `Value` only where it means the same document:
//! [`Tape::parse`] refuses (and the caller takes the `Value` path) anything
//! where the two could differ: malformed JSON, an object with a repeated key
//! (`Value` keeps the last), nesting near `serde_json`'s recursion limit, and
//! lone surrogates. Numbers are `serde_json::Number`s built by the same rules
//! (integers in range directly, everything else through `serde_json`'s own
//! number parser). Only a `valid` answer is taken from the tape: an invalid
//! record is checked again through `Value`, which also words its errors.
//!
//! One parse serves every check of a record: the ingest loop parses a JSON
//! payload once ([`crate::validate::Validator::prepare`]), then the envelope
//! captures ([`crate::decode::EnvelopeExtractor::extract_parsed`]), the
//! JSON Schema and the PII detectors read the same tape through [`Tape::item`].

use std::borrow::Cow;

use jsonschema::json::{Array, Json, Node, NodeIdentity, Object};
use jsonschema::types::JsonType;
use serde_json::{Number, Value};

/// Nesting at which the tape gives up and `Value` decides: `serde_json`
/// refuses documents past 128 levels, and this keeps well clear of that edge.
const MAX_NESTING: usize = 100;

/// Entries kept allocated between records; a tape grown past this by one
/// huge payload gives the memory back.
const KEEP_ENTRIES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    False,
    True,
    Number,
    /// Text in the payload (no escapes).
    String,
    /// Text in the tape's unescape buffer.
    Escaped,
    Array,
    Object,
}

/// One value or object key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: Kind,
    /// String: start of its text. Number: index in `numbers`. Array and
    /// object: number of elements or members.
    a: u32,
    /// String: end of its text (exclusive).
    b: u32,
    /// Index of the entry after this value's subtree (siblings are found by
    /// jumping to it); an object member is a key entry followed by its value.
    end: u32,
    /// An object key (a string entry); lets [`Tape::values`] walk the tape
    /// in one flat pass.
    key: bool,
}

/// One entry of a parsed tape. The members of an object follow it as (key,
/// value) pairs, the elements of an array as values; [`Tape::after`] jumps
/// over a value to its next sibling.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'t> {
    Null,
    Bool(bool),
    Number(&'t Number),
    /// A string without escapes: this byte range of the parsed text.
    Text(std::ops::Range<usize>),
    /// A string with escapes, unescaped.
    Escaped(&'t str),
    Array {
        elements: u32,
    },
    Object {
        members: u32,
    },
}

/// Reusable parse buffers.
#[derive(Debug, Default)]
pub struct Tape {
    entries: Vec<Entry>,
    numbers: Vec<Number>,
    unescaped: String,
    /// Open containers while parsing.
    stack: Vec<u32>,
    /// Per open container: a 64-bit filter of the keys seen so far, so the
    /// repeated-key check scans the members only on a filter hit.
    seen: Vec<u64>,
    /// Deepest nesting of objects and arrays.
    deepest: usize,
}

impl Tape {
    /// Parses `text` as one JSON document. `false` when the tape cannot
    /// stand for what `serde_json::Value` would make of it (see the module
    /// doc), including when it is not JSON at all.
    pub fn parse(&mut self, text: &str) -> bool {
        self.entries.clear();
        self.numbers.clear();
        self.unescaped.clear();
        self.stack.clear();
        self.seen.clear();
        self.deepest = 0;
        if self.entries.capacity() > KEEP_ENTRIES {
            self.entries.shrink_to(KEEP_ENTRIES);
            self.unescaped.shrink_to(KEEP_ENTRIES);
        }
        self.parse_document(text).is_some()
    }

    /// The document's root; only after a successful [`Tape::parse`] of `text`.
    pub fn root<'a>(&'a self, text: &'a str) -> TapeNode<'a> {
        TapeNode { doc: Doc { tape: self, text }, index: 0 }
    }

    /// Entry `index` of the tape parsed from `text` (entry 0 is the root):
    /// what the envelope and PII passes read.
    pub fn item(&self, index: usize) -> Item<'_> {
        let entry = self.entries[index];
        match entry.kind {
            Kind::Null => Item::Null,
            Kind::False => Item::Bool(false),
            Kind::True => Item::Bool(true),
            Kind::Number => Item::Number(&self.numbers[entry.a as usize]),
            Kind::String => Item::Text(entry.a as usize..entry.b as usize),
            Kind::Escaped => Item::Escaped(&self.unescaped[entry.a as usize..entry.b as usize]),
            Kind::Array => Item::Array { elements: entry.a },
            Kind::Object => Item::Object { members: entry.a },
        }
    }

    /// Every string, number, boolean and null of the document (not object
    /// keys, not containers), in document order: one flat pass over the
    /// tape, for checks that look at every value wherever it is (PII).
    pub fn values(&self) -> impl Iterator<Item = Item<'_>> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| !entry.key && !matches!(entry.kind, Kind::Array | Kind::Object))
            .map(|(index, _)| self.item(index))
    }

    /// How deep objects and arrays nest in the parsed document (0: a scalar),
    /// as [`crate::validate::json_depth_exceeds`] counts it.
    pub fn depth(&self) -> usize {
        self.deepest
    }

    /// Index of the entry after the value at `index` and everything in it:
    /// the next element, or the next member's key.
    pub fn after(&self, index: usize) -> usize {
        self.entries[index].end as usize
    }

    /// The text of the string (or object key) at `index` of the tape parsed from `text`.
    pub fn str<'a>(&'a self, text: &'a str, index: usize) -> &'a str {
        Doc { tape: self, text }.str(index)
    }

    /// The parsed document as a `serde_json::Value` (for checks: the fuzz
    /// harness compares it with `serde_json`'s reading of the same text).
    pub fn to_value(&self, text: &str) -> Value {
        self.root(text).to_value().into_owned()
    }

    fn push(&mut self, kind: Kind, a: u32, b: u32) -> Option<u32> {
        let index = u32::try_from(self.entries.len()).ok()?;
        self.entries.push(Entry { kind, a, b, end: index + 1, key: false });
        Some(index)
    }

    fn parse_document(&mut self, text: &str) -> Option<()> {
        let b = text.as_bytes();
        let mut i = 0;
        'value: loop {
            i = skip_ws(b, i);
            match *b.get(i)? {
                open @ (b'{' | b'[') => {
                    let kind = if open == b'{' { Kind::Object } else { Kind::Array };
                    let index = self.push(kind, 0, 0)?;
                    self.stack.push(index);
                    self.seen.push(0);
                    if self.stack.len() > MAX_NESTING {
                        return None;
                    }
                    self.deepest = self.deepest.max(self.stack.len());
                    i = skip_ws(b, i + 1);
                    let close = if kind == Kind::Object { b'}' } else { b']' };
                    if b.get(i) == Some(&close) {
                        i += 1;
                        self.close();
                    } else if kind == Kind::Object {
                        i = self.key(text, i, index)?;
                        continue 'value;
                    } else {
                        continue 'value;
                    }
                }
                b'"' => {
                    i = self.string(b, i)?;
                }
                b't' => i = self.literal(b, i, b"true", Kind::True)?,
                b'f' => i = self.literal(b, i, b"false", Kind::False)?,
                b'n' => i = self.literal(b, i, b"null", Kind::Null)?,
                b'-' | b'0'..=b'9' => i = self.number(b, i)?,
                _ => return None,
            }
            // A value is complete: it is one more element of its container.
            loop {
                let Some(&top) = self.stack.last() else {
                    return (skip_ws(b, i) == b.len()).then_some(());
                };
                let container = &mut self.entries[top as usize];
                container.a += 1;
                let kind = container.kind;
                i = skip_ws(b, i);
                match (*b.get(i)?, kind) {
                    (b',', Kind::Object) => {
                        i = self.key(text, skip_ws(b, i + 1), top)?;
                        continue 'value;
                    }
                    (b',', _) => {
                        i += 1;
                        continue 'value;
                    }
                    (b'}', Kind::Object) | (b']', Kind::Array) => {
                        i += 1;
                        self.close();
                    }
                    _ => return None,
                }
            }
        }
    }

    fn close(&mut self) {
        self.seen.pop();
        if let Some(top) = self.stack.pop() {
            let end = self.entries.len() as u32;
            self.entries[top as usize].end = end;
        }
    }

    /// A member's key at `i` and the colon after it; refuses a key the
    /// object already has.
    fn key(&mut self, text: &str, i: usize, object: u32) -> Option<usize> {
        let b = text.as_bytes();
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let i = self.string(b, i)?;
        let key = self.entries.len() - 1;
        self.entries[key].key = true;
        let new = self.key_bytes(b, key);
        let bit = 1u64 << (key_hash(new) & 63);
        let seen = self.seen.last().copied().unwrap_or(0);
        if seen & bit != 0 {
            let mut member = object as usize + 1;
            for _ in 0..self.entries[object as usize].a {
                if self.key_bytes(b, member) == new {
                    return None;
                }
                member = self.entries[member + 1].end as usize;
            }
        }
        if let Some(seen) = self.seen.last_mut() {
            *seen |= bit;
        }
        let i = skip_ws(b, i);
        (b.get(i) == Some(&b':')).then_some(i + 1)
    }

    /// The bytes of the key (or any string) entry at `index`, as UTF-8.
    fn key_bytes<'a>(&'a self, b: &'a [u8], index: usize) -> &'a [u8] {
        let entry = self.entries[index];
        let (from, to) = (entry.a as usize, entry.b as usize);
        match entry.kind {
            Kind::String => &b[from..to],
            _ => &self.unescaped.as_bytes()[from..to],
        }
    }

    fn literal(&mut self, b: &[u8], i: usize, word: &[u8], kind: Kind) -> Option<usize> {
        if !b[i..].starts_with(word) {
            return None;
        }
        self.push(kind, 0, 0)?;
        Some(i + word.len())
    }

    /// A string at `i` (its opening quote); returns the index after it.
    fn string(&mut self, b: &[u8], i: usize) -> Option<usize> {
        let start = i + 1;
        let mut j = special_byte(b, start)?;
        if b[j] == b'"' {
            self.push(Kind::String, start as u32, j as u32)?;
            return Some(j + 1);
        }
        if b[j] != b'\\' {
            // A raw control character: not JSON.
            return None;
        }
        // Escapes: the text goes to the unescape buffer.
        let from = self.unescaped.len();
        // `text` is valid UTF-8 and `start..j` ends before an ASCII byte.
        self.unescaped.push_str(std::str::from_utf8(&b[start..j]).ok()?);
        loop {
            match *b.get(j)? {
                b'"' => {
                    let to = self.unescaped.len();
                    self.push(Kind::Escaped, u32::try_from(from).ok()?, u32::try_from(to).ok()?)?;
                    return Some(j + 1);
                }
                b'\\' => {
                    let escape = *b.get(j + 1)?;
                    j += 2;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let high = hex4(b.get(j..j + 4)?)?;
                            j += 4;
                            match high {
                                0xD800..=0xDBFF => {
                                    if b.get(j..j + 2)? != b"\\u" {
                                        return None;
                                    }
                                    let low = hex4(b.get(j + 2..j + 6)?)?;
                                    if !(0xDC00..=0xDFFF).contains(&low) {
                                        return None;
                                    }
                                    j += 6;
                                    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?
                                }
                                0xDC00..=0xDFFF => return None,
                                _ => char::from_u32(high)?,
                            }
                        }
                        _ => return None,
                    };
                    self.unescaped.push(c);
                }
                c if c < 0x20 => return None,
                _ => {
                    // Copy the run up to the next quote, escape or control character at once.
                    let run = j;
                    j = special_byte(b, j)?;
                    self.unescaped.push_str(std::str::from_utf8(&b[run..j]).ok()?);
                }
            }
        }
    }

    /// A number at `i`, by JSON's grammar; returns the index after it.
    fn number(&mut self, b: &[u8], i: usize) -> Option<usize> {
        let negative = b[i] == b'-';
        let mut j = i + usize::from(negative);
        let digits = j;
        match *b.get(j)? {
            b'0' => j += 1,
            b'1'..=b'9' => j = digit_run(b, j)?,
            _ => return None,
        }
        let integer_digits = j - digits;
        let mut integer = true;
        if b.get(j) == Some(&b'.') {
            integer = false;
            j = digit_run(b, j + 1)?;
        }
        if matches!(b.get(j), Some(b'e' | b'E')) {
            integer = false;
            j += 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            j = digit_run(b, j)?;
        }
        // serde_json's own rules: an integer literal is a u64 when positive,
        // an i64 when negative (and not -0), else an f64. The cases that are
        // plainly in range are built here (19 digits never overflow a u64,
        // 18 never an i64); the rest go through serde_json.
        let magnitude = || b[digits..j].iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        let number = if integer && !negative && integer_digits <= 19 {
            Number::from(magnitude())
        } else if integer && negative && integer_digits <= 18 && magnitude() != 0 {
            Number::from(-(magnitude() as i64))
        } else {
            serde_json::from_str::<Number>(std::str::from_utf8(&b[i..j]).ok()?).ok()?
        };
        let index = u32::try_from(self.numbers.len()).ok()?;
        self.numbers.push(number);
        self.push(Kind::Number, index, 0)?;
        Some(j)
    }
}

/// Index of the first byte at or after `from` that ends a plain run of
/// string text: a quote, a backslash or a control character (below 0x20).
/// Eight bytes at a time: each test sets a byte's top bit where it holds,
/// and the lowest set bit is exact (borrows only run upwards).
fn special_byte(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = 0x8080_8080_8080_8080;
    let mut j = match crate::bytes::first(b, from, crate::bytes::Class::StringEnd) {
        Ok(found) => return Some(found),
        Err(tail) => tail,
    };
    while let Some(chunk) = b.get(j..j + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let hits = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let hits = hits & TOPS;
        if hits != 0 {
            return Some(j + hits.trailing_zeros() as usize / 8);
        }
        j += 8;
    }
    while let Some(&c) = b.get(j) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return Some(j);
        }
        j += 1;
    }
    None
}

/// The index after the run of ASCII digits at `from`; `None` when there is
/// not at least one (JSON wants a digit after `.`, after an exponent mark,
/// and first in a number).
fn digit_run(b: &[u8], from: usize) -> Option<usize> {
    let end = from + b.get(from..)?.iter().take_while(|c| c.is_ascii_digit()).count();
    (end > from).then_some(end)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// A cheap hash of a key for the repeated-key filter: its length and up
/// to its first eight bytes.
fn key_hash(key: &[u8]) -> u32 {
    let head = match key.first_chunk::<8>() {
        Some(head) => u64::from_le_bytes(*head),
        None => key.iter().rev().fold(0u64, |acc, &c| acc << 8 | u64::from(c)),
    };
    let mixed = (head ^ key.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 58) as u32
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| Some(acc * 16 + (d as char).to_digit(16)?))
}

/// A parsed tape together with the text its strings point into.
#[derive(Clone, Copy)]
struct Doc<'a> {
    tape: &'a Tape,
    text: &'a str,
}

impl<'a> Doc<'a> {
    fn entry(&self, index: usize) -> Entry {
        self.tape.entries[index]
    }

    fn str(&self, index: usize) -> &'a str {
        let entry = self.entry(index);
        let (a, b) = (entry.a as usize, entry.b as usize);
        match entry.kind {
            Kind::String => &self.text[a..b],
            _ => &self.tape.unescaped[a..b],
        }
    }
}

/// The `jsonschema` representation backed by [`Tape`].
pub struct TapeJson;

/// A node: a tape and an entry of it.
#[derive(Clone, Copy)]
pub struct TapeNode<'a> {
    doc: Doc<'a>,
    index: u32,
}

/// An object or array node, seen as such.
#[derive(Clone, Copy)]
pub struct Container<'a>(TapeNode<'a>);

/// Backs the nodes made from property names (`propertyNames`).
#[derive(Default)]
pub struct NameBuffer(Tape);

impl Json for TapeJson {
    type Node<'a> = TapeNode<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = NameBuffer;

    // A lookup scans the members, so a members pass is always the cheaper.
    // (The validator multiplies it by small factors.)
    const KEYS_PER_LOOKUP: usize = 64;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>(buffer: &mut NameBuffer, string: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> T {
        let tape = &mut buffer.0;
        tape.entries.clear();
        tape.unescaped.clear();
        tape.unescaped.push_str(string);
        tape.entries.push(Entry { kind: Kind::Escaped, a: 0, b: string.len() as u32, end: 1, key: false });
        f(TapeNode { doc: Doc { tape, text: "" }, index: 0 })
    }
}

impl<'a> TapeNode<'a> {
    fn entry(&self) -> Entry {
        self.doc.entry(self.index as usize)
    }

    fn at(&self, index: usize) -> TapeNode<'a> {
        TapeNode { doc: self.doc, index: index as u32 }
    }
}

impl<'a> Node<'a, TapeJson> for TapeNode<'a> {
    type Object = Container<'a>;
    type Array = Container<'a>;
    type Number = &'a Number;

    fn as_object(&self) -> Option<Container<'a>> {
        (self.entry().kind == Kind::Object).then_some(Container(*self))
    }

    fn as_array(&self) -> Option<Container<'a>> {
        (self.entry().kind == Kind::Array).then_some(Container(*self))
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        matches!(self.entry().kind, Kind::String | Kind::Escaped)
            .then(|| Cow::Borrowed(self.doc.str(self.index as usize)))
    }

    fn as_number(&self) -> Option<&'a Number> {
        let entry = self.entry();
        (entry.kind == Kind::Number).then(|| &self.doc.tape.numbers[entry.a as usize])
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.entry().kind {
            Kind::True => Some(true),
            Kind::False => Some(false),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        self.entry().kind == Kind::Null
    }

    fn json_type(&self) -> JsonType {
        match self.entry().kind {
            Kind::Null => JsonType::Null,
            Kind::False | Kind::True => JsonType::Boolean,
            Kind::Number => JsonType::Number,
            Kind::String | Kind::Escaped => JsonType::String,
            Kind::Array => JsonType::Array,
            Kind::Object => JsonType::Object,
        }
    }

    fn equals_value(&self, expected: &Value) -> bool {
        // Scalars compare without building a `Value` (an `enum` of strings
        // is checked on every record).
        match (self.entry().kind, expected) {
            (Kind::String | Kind::Escaped, Value::String(s)) => self.doc.str(self.index as usize) == s,
            (Kind::String | Kind::Escaped, _) => false,
            (Kind::Null, _) => expected.is_null(),
            (Kind::True, _) => *expected == Value::Bool(true),
            (Kind::False, _) => *expected == Value::Bool(false),
            (Kind::Number, Value::Number(_)) => {
                jsonschema::json::cmp::equal(&Value::Number(self.as_number().expect("number").clone()), expected)
            }
            (Kind::Number, _) => false,
            (Kind::Array | Kind::Object, _) => jsonschema::json::cmp::equal(&self.to_value(), expected),
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(match self.entry().kind {
            Kind::Null => Value::Null,
            Kind::False => Value::Bool(false),
            Kind::True => Value::Bool(true),
            Kind::Number => Value::Number(self.as_number().expect("number").clone()),
            Kind::String | Kind::Escaped => Value::String(self.doc.str(self.index as usize).to_owned()),
            Kind::Array => Value::Array(Container(*self).elements().map(|e| e.to_value().into_owned()).collect()),
            Kind::Object => Value::Object(
                Container(*self).members().map(|(k, v)| (k.to_owned(), v.to_value().into_owned())).collect(),
            ),
        })
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::tagged(std::ptr::from_ref::<Tape>(self.doc.tape) as usize, self.index))
    }
}

/// Members of an object: (key, value) pairs in document order.
pub struct Members<'a> {
    node: TapeNode<'a>,
    next: usize,
    left: u32,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, TapeNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.next;
        let value = key + 1;
        self.next = self.node.doc.entry(value).end as usize;
        Some((self.node.doc.str(key), self.node.at(value)))
    }
}

/// Elements of an array, in order.
pub struct Elements<'a> {
    node: TapeNode<'a>,
    next: usize,
    left: u32,
}

impl<'a> Iterator for Elements<'a> {
    type Item = TapeNode<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let element = self.next;
        self.next = self.node.doc.entry(element).end as usize;
        Some(self.node.at(element))
    }
}

impl<'a> Object<'a, TapeJson> for Container<'a> {
    type Node = TapeNode<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        self.0.entry().a as usize
    }

    fn get(&self, key: &Box<str>) -> Option<TapeNode<'a>> {
        self.members().find(|(name, _)| *name == &**key).map(|(_, value)| value)
    }

    fn members(&self) -> Members<'a> {
        Members { node: self.0, next: self.0.index as usize + 1, left: self.0.entry().a }
    }
}

impl<'a> Array<'a, TapeJson> for Container<'a> {
    type Node = TapeNode<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        self.0.entry().a as usize
    }

    fn elements(&self) -> Elements<'a> {
        Elements { node: self.0, next: self.0.index as usize + 1, left: self.0.entry().a }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(tape: &Tape, text: &str) -> Value {
        tape.root(text).to_value().into_owned()
    }

    #[test]
    fn documents_read_back_as_serde_json_reads_them() {
        let mut tape = Tape::default();
        for text in [
            r#"{"a":1,"b":[true,false,null,-2,3.5,1e3,-0,18446744073709551615,18446744073709551616],"c":{"d":"x\"y\u00e9\ud83d\ude00","e":{}},"f":[]}"#,
            r#"  [ 1 , "two" , { "three" : [ [ ] ] } ]  "#,
            r#""just a string""#,
            "-12.5e-3",
            r#"{"k\u0041":"v","kA2":"w"}"#,
            "{\"text\":\"caf\u{e9} \u{1F600}\"}",
        ] {
            assert!(tape.parse(text), "{text}");
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(value(&tape, text), expected, "{text}");
        }
    }

    #[test]
    fn what_value_would_read_differently_is_refused() {
        let mut tape = Tape::default();
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":1"#,
            r#"{"a":1}x"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":1e400}"#,
            r#"[1,]"#,
            r#"{,}"#,
            "",
            "tru",
        ] {
            assert!(!tape.parse(text), "{text}");
        }
        let deep = "[".repeat(MAX_NESTING + 1) + &"]".repeat(MAX_NESTING + 1);
        assert!(!tape.parse(&deep));
        let fine = "[".repeat(MAX_NESTING) + &"]".repeat(MAX_NESTING);
        assert!(tape.parse(&fine));
    }

    #[test]
    fn repeated_keys_are_found_among_many() {
        let mut tape = Tape::default();
        let members: Vec<String> = (0..200).map(|n| format!("\"key{n}\":{n}")).collect();
        let text = format!("{{{}}}", members.join(","));
        assert!(tape.parse(&text));
        assert_eq!(tape.to_value(&text), serde_json::from_str::<Value>(&text).unwrap());
        for repeated in [0, 63, 64, 199] {
            let text = format!("{{{},\"key{repeated}\":true}}", members.join(","));
            assert!(!tape.parse(&text), "key{repeated}");
        }
        // The same key in different objects is no repeat.
        assert!(tape.parse(r#"{"a":{"a":1},"b":{"a":2}}"#));
    }

    #[test]
    fn the_special_byte_scan_agrees_with_a_plain_scan() {
        let plain = |b: &[u8], from: usize| (from..b.len()).find(|&j| b[j] == b'"' || b[j] == b'\\' || b[j] < 0x20);
        let mut text = b"abcdefghijklmnopqrstuvwxyz0123456789\xc3\xa9\xe2\x82\xac".to_vec();
        for special in [b'"', b'\\', b'\n', 0x1f, 0] {
            for at in 0..text.len() {
                let saved = text[at];
                text[at] = special;
                for from in 0..=at {
                    assert_eq!(special_byte(&text, from), plain(&text, from), "{special} at {at} from {from}");
                }
                text[at] = saved;
            }
        }
        assert_eq!(special_byte(&text, 0), None);
    }

    #[test]
    fn schemas_give_the_same_answers_on_the_tape_and_on_value() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["kind", "n", "tags"],
            "properties": {
                "kind": { "enum": ["a", "b"] },
                "n": { "type": "integer", "minimum": 0, "maximum": 10 },
                "x": { "type": "number", "multipleOf": 0.5 },
                "id": { "type": "string", "pattern": "^[0-9a-f]{4}$", "minLength": 4 },
                "at": { "type": "string", "format": "date-time" },
                "tags": { "type": "array", "items": { "type": "string" }, "uniqueItems": true, "maxItems": 3 },
                "nested": { "type": "object", "additionalProperties": false, "properties": { "ok": { "const": true } } }
            },
            "propertyNames": { "maxLength": 6 }
        });
        let serde = jsonschema::options().build(&schema).unwrap();
        let tape_validator = jsonschema::options_for::<TapeJson>().build(&schema).unwrap();
        let mut tape = Tape::default();
        let documents = [
            r#"{"kind":"a","n":3,"tags":[]}"#,
            r#"{"kind":"c","n":3,"tags":[]}"#,
            r#"{"kind":"a","n":3.0,"tags":[]}"#,
            r#"{"kind":"a","n":-1,"tags":[]}"#,
            r#"{"kind":"a","n":11,"tags":[]}"#,
            r#"{"kind":"a","n":1,"x":1.5,"tags":[]}"#,
            r#"{"kind":"a","n":1,"x":1.25,"tags":[]}"#,
            r#"{"kind":"a","n":1,"id":"00af","tags":["x","y"]}"#,
            r#"{"kind":"a","n":1,"id":"00AF","tags":["x","x"]}"#,
            r#"{"kind":"a","n":1,"at":"2026-11-29T08:46:17.593Z","tags":["x","y","z"]}"#,
            r#"{"kind":"a","n":1,"at":"yesterday","tags":["x","y","z","w"]}"#,
            r#"{"kind":"a","n":1,"tags":[1]}"#,
            r#"{"kind":"a","n":1,"tags":[],"nested":{"ok":true}}"#,
            r#"{"kind":"a","n":1,"tags":[],"nested":{"ok":false}}"#,
            r#"{"kind":"a","n":1,"tags":[],"nested":{"ok":true,"more":1}}"#,
            r#"{"kind":"a","n":1,"tags":[],"toolongname":1}"#,
            r#"{"kind":"\u0061","n":1,"tags":["\u00e9","é"]}"#,
            r#"{"n":1,"tags":[]}"#,
            r#"["kind"]"#,
        ];
        for text in documents {
            let value: Value = serde_json::from_str(text).unwrap();
            assert!(tape.parse(text), "{text}");
            assert_eq!(tape_validator.is_valid(tape.root(text)), serde.is_valid(&value), "{text}");
        }
    }
}
