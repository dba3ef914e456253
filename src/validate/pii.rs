//! PII detectors over payload string values: e-mail addresses, payment card
//! numbers, phone numbers and IBANs, each reported as a bounded [`PiiKind`].
//!
//! In: one string value ([`PiiScanner::scan_str`]) or a whole JSON document
//! ([`PiiScanner::scan_json`]). Out: the set of kinds found ([`PiiKinds`]).
//! This module only detects; the `count` / `quarantine` policy is applied by
//! the caller.
//!
//! # How
//!
//! No regex (`memchr` only finds whether a payload has an `@` at all).
//! E-mail candidates are found by searching for
//! `@` and expanding left and right. The other three kinds are found in one
//! pass that jumps from digit to digit and looks only at the first digit of
//! each word (every candidate has a digit at its word start, right after `+`
//! or `(`, or, for an IBAN, two letters into the word); the rest of each word
//! is skipped. Those searches run 16 bytes at a time (SSE2, see
//! [`crate::bytes`]) and 8 at a time for the rest (SWAR on `u64`), so prose,
//! keys and hex IDs cost well under a nanosecond per byte. Each
//! candidate is checked with cheap structural rules first and its checksum
//! last. Nothing on the clean path allocates.
//!
//! "Word character" below means ASCII alphanumeric or `_`; bytes of non-ASCII
//! characters count as separators. A number "continues" across `.` `,` `-`
//! `/` `:` when a digit is on the other side, so `1234.4111…` or `…-12` are
//! parts of a longer number, not boundaries.
//!
//! # Rules
//!
//! **Email** — `local@domain.tld`. Local part: up to 64 characters of
//! `A-Z a-z 0-9 . _ % + -`, leading dots dropped, not ending in a dot.
//! Domain: labels of `A-Z a-z 0-9 -` (1–63 chars, no leading or trailing
//! hyphen), at least one dot, the last label (TLD) 2+ ASCII letters and not
//! a common file extension (`logo@2x.png`, `icon@3x.svg` are not addresses);
//! a trailing `.` or `-` (end of a sentence) is not part of the domain. Not
//! detected: quoted local parts, IP-literal or internationalized (non-ASCII)
//! domains, obfuscations (`john at example dot com`). Flagged although
//! arguably not personal: role addresses (`support@…`) and SSH remotes
//! (`git@github.com:org/repo`).
//!
//! **Payment card** — 13–19 digits, either one unbroken run or groups joined
//! by single spaces or single hyphens (one separator kind per number; the
//! first group has 4 digits, the others 3–6: `4111 1111 1111 1111`,
//! `3782 822463 10005`), passing the Luhn check, with the prefix *and* length
//! of a major network: Visa `4` (13, 16, 19), Mastercard `51–55`,
//! `2221–2720` (16), Amex `34`, `37` (15), Discover `6011`, `65`, `644–649`
//! (16–19), JCB `3528–3589` (16–19), Diners `36`, `300–305` (14–19). The
//! number must not touch a word character or continue as a longer number;
//! a space-separated neighbour is allowed (`4111 1111 1111 1111 12/27` and
//! `order 12 4111…` are found, and so are the first 16 digits of a longer
//! space-grouped number such as `4111 1111 1111 1111 1111 1111`). In
//! [`PiiScanner::scan_json`], JSON *integers* of 13–19 digits are checked
//! the same way (a card number sent as a number). Trade-off: a random
//! 16-digit ID still passes about 1 time in 40 (network prefix ~24 %, Luhn
//! 10 %), so standalone 13–19 digit IDs can be flagged; 10–12 and 20+ digit
//! IDs never are. Not detected: other networks (UnionPay `62`, Maestro,
//! RuPay, Mir), dot-separated or masked numbers (`4111 **** **** 1111`),
//! digits glued to letters (`card4111…`).
//!
//! **Phone** — two forms:
//! - International (E.164): `+`, a first digit 1–9, 8–15 digits in total,
//!   groups joined by 1–2 of `space - . ( )` (`+44 20 7946 0958`,
//!   `+1 (555) 123-4567`, `+44 (0)20 7946 0958`, `+14155552671`). The `+`
//!   must not follow a word character or `/ + =` (time-zone offsets like
//!   `…00+05:30`, base64). Rejected: a single `.` (a signed decimal such as
//!   `+12345678.90`), a 4-2-2 date shape, unbalanced parentheses.
//! - North American (NANP) national, 10 digits: `(555) 123-4567`,
//!   `(555)123-4567`, `555-123-4567`, `555.123.4567`, `555 123-4567`, with
//!   an optional leading `1-` / `1.` / `1 `; the area code starts with 2–9.
//!
//! Not detected on purpose (too many false positives in machine payloads):
//! unformatted national numbers (`5551234567`), the all-space NANP form
//! (`555 123 4567`), other national formats (`020 7946 0958`,
//! `030 1234567`) and `00`-prefixed international numbers. Never flagged by
//! construction: plain long numbers, ISO dates and timestamps (`2026-11-29`,
//! `2026-11-29T06:00:00.250Z`), times (`12:30:45`), UUIDs, 32-hex trace IDs,
//! version strings (`1.2.3`), IPv4 addresses, decimal amounts (`1234.56`).
//!
//! **IBAN** — upper-case only: a country code from the IBAN registry, 2 check
//! digits, then exactly the registry length for that country (15–33 chars in
//! all, e.g. DE 22, FR 27, GB 22, NL 18), either unbroken
//! (`DE89370400440532013000`) or in groups of 4 joined by single spaces
//! (`DE89 3704 0044 0532 0130 00`), passing the ISO 13616 mod-97 check
//! (remainder 1). The IBAN must start at a word start and end at a word end.
//! Requiring a registered country and its exact length makes random
//! upper-case IDs (about 1 in 97 passes mod-97 alone) essentially never
//! match. Not detected: lower-case or mixed-case IBANs, other groupings,
//! IBANs of countries not in the table (see `iban_len`).
//!
//! # JSON
//!
//! [`PiiScanner::scan_json`] checks that the bytes are UTF-8 and walks them
//! once with a small iterative validator (RFC 8259, no recursion, no tree):
//! every string value is scanned, borrowed from the input unless it has
//! escapes (then unescaped into a stack buffer, or a heap buffer for escaped
//! strings over 256 bytes); object keys are validated but not scanned. Plain
//! integer literals of 13–19 digits are checked as card numbers. What it
//! rejects matches serde_json (tested against it): bad grammar, trailing
//! data, invalid UTF-8, control characters in strings, lone surrogate
//! escapes, and nesting deeper than 127 (serde_json's default recursion
//! limit), so hostile nesting is an `Err`, not a stack overflow. One
//! difference: numbers beyond the `f64` range (`1e400`) are accepted. Once
//! every enabled kind is found the rest is only validated, not scanned, so
//! the result is `Err` exactly when the bytes are not one valid JSON value.

use std::fmt;

use crate::bytes;
use crate::tape::{Item, Tape};

/// One kind of personal data. The `as_str` names are bounded metric label
/// values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PiiKind {
    Email,
    PaymentCard,
    Phone,
    Iban,
}

impl PiiKind {
    pub const ALL: [PiiKind; 4] = [PiiKind::Email, PiiKind::PaymentCard, PiiKind::Phone, PiiKind::Iban];

    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::PaymentCard => "payment_card",
            PiiKind::Phone => "phone",
            PiiKind::Iban => "iban",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A small bit set of kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PiiKinds(u8);

const ALL_BITS: u8 = 0b1111;
const EMAIL: u8 = PiiKind::Email.bit();
const CARD: u8 = PiiKind::PaymentCard.bit();
const PHONE: u8 = PiiKind::Phone.bit();
const IBAN: u8 = PiiKind::Iban.bit();

impl PiiKinds {
    pub fn all() -> Self {
        PiiKinds(ALL_BITS)
    }

    pub fn contains(self, k: PiiKind) -> bool {
        self.0 & k.bit() != 0
    }

    pub fn insert(&mut self, k: PiiKind) {
        self.0 |= k.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in [`PiiKind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = PiiKind> {
        PiiKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

impl FromIterator<PiiKind> for PiiKinds {
    fn from_iter<I: IntoIterator<Item = PiiKind>>(iter: I) -> Self {
        let mut set = PiiKinds::default();
        for k in iter {
            set.insert(k);
        }
        set
    }
}

/// Which kinds to look for (built once from config).
#[derive(Debug, Clone, Copy)]
pub struct PiiScanner {
    enabled: PiiKinds,
}

impl PiiScanner {
    pub fn new(enabled: PiiKinds) -> Self {
        PiiScanner { enabled }
    }

    /// The kinds this scanner looks for.
    pub fn enabled(&self) -> PiiKinds {
        self.enabled
    }

    /// Kinds found in one string value (a JSON string, already unescaped).
    pub fn scan_str(&self, text: &str) -> PiiKinds {
        let mut found = PiiKinds::default();
        self.scan_into(text, &mut found);
        found
    }

    /// Kinds found in any string value of a JSON document (object keys are
    /// not scanned); stops scanning once every enabled kind was found, but
    /// still checks the rest of the document is well-formed. `Err(())` if the
    /// bytes are not one valid JSON value (including nesting deeper than 128).
    #[allow(clippy::result_unit_err)] // the caller only needs "not JSON"; the parser's message is noise here
    pub fn scan_json(&self, json: &[u8]) -> Result<PiiKinds, ()> {
        let text = std::str::from_utf8(json).map_err(|_| ())?;
        let mut found = PiiKinds::default();
        walk_json(text, self, &mut found)?;
        Ok(found)
    }

    /// [`scan_json`](Self::scan_json) over a document already parsed into a
    /// tape (`tape` parsed from `text`): the same string values and integer
    /// literals, without tokenizing the text again. One flat pass over the
    /// tape's values; an e-mail address needs an `@`, so when the text has
    /// none (most records), only escaped strings (`\u0040`) are searched for one.
    pub fn scan_tape(&self, tape: &Tape, text: &str) -> PiiKinds {
        let mut found = PiiKinds::default();
        let text_has_at = self.enabled.0 & EMAIL != 0 && memchr::memchr(b'@', text.as_bytes()).is_some();
        let plain_skip = if text_has_at { 0 } else { EMAIL };
        for item in tape.values() {
            if self.done(found) {
                break;
            }
            match item {
                Item::Text(range) => self.scan_into_except(&text[range], plain_skip, &mut found),
                Item::Escaped(unescaped) => self.scan_into(unescaped, &mut found),
                Item::Number(number) => {
                    // A plain integer literal of 13–19 digits parses to a u64,
                    // whose decimal digits are the literal (JSON has no leading zeros).
                    if let Some(integer) = number.as_u64().filter(|&n| n >= 1_000_000_000_000) {
                        let mut digits = [0u8; 20];
                        let mut n = integer;
                        let mut at = digits.len();
                        loop {
                            at -= 1;
                            digits[at] = b'0' + (n % 10) as u8;
                            n /= 10;
                            if n == 0 {
                                break;
                            }
                        }
                        self.scan_integer(&digits[at..], &mut found);
                    }
                }
                Item::Null | Item::Bool(_) | Item::Array { .. } | Item::Object { .. } => {}
            }
        }
        found
    }

    /// Adds the kinds found in `text` that are enabled and not yet in `found`.
    fn scan_into(&self, text: &str, found: &mut PiiKinds) {
        self.scan_into_except(text, 0, found);
    }

    /// [`scan_into`](Self::scan_into) without the kinds in `skip` (known absent).
    fn scan_into_except(&self, text: &str, skip: u8, found: &mut PiiKinds) {
        let want = self.enabled.0 & !found.0 & !skip;
        if want == 0 {
            return;
        }
        let b = text.as_bytes();
        if want & EMAIL != 0 && has_email(b) {
            found.0 |= EMAIL;
        }
        let want = want & (CARD | PHONE | IBAN);
        // The shortest candidate of these kinds is `+` and 8 digits.
        if want == 0 || b.len() < 9 {
            return;
        }
        found.0 |= scan_numbers(b, want);
    }

    /// Adds PaymentCard if the digits of a JSON integer literal (no sign,
    /// fraction or exponent) look like a card number.
    fn scan_integer(&self, literal: &[u8], found: &mut PiiKinds) {
        if (13..=19).contains(&literal.len()) && self.enabled.0 & !found.0 & CARD != 0 {
            let mut digits = [0u8; 19];
            for (d, c) in digits.iter_mut().zip(literal) {
                *d = c - b'0';
            }
            if card_digits_ok(&digits[..literal.len()]) {
                found.0 |= CARD;
            }
        }
    }

    fn done(&self, found: PiiKinds) -> bool {
        self.enabled.0 & !found.0 == 0
    }
}

// ---------------------------------------------------------------------------
// Byte classes

const WORD: u8 = 1;
const DIGIT: u8 = 2;
const UPPER: u8 = 4;
const LOCAL: u8 = 8; // e-mail local part
const DOMAIN: u8 = 16; // e-mail domain

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut v = 0;
        if c.is_ascii_alphanumeric() || c == b'_' {
            v |= WORD;
        }
        if c.is_ascii_digit() {
            v |= DIGIT;
        }
        if c.is_ascii_uppercase() {
            v |= UPPER;
        }
        if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-') {
            v |= LOCAL;
        }
        if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-') {
            v |= DOMAIN;
        }
        t[i] = v;
        i += 1;
    }
    t
};

#[inline(always)]
fn class(c: u8) -> u8 {
    CLASS[c as usize]
}

#[inline(always)]
fn is_word(c: u8) -> bool {
    class(c) & WORD != 0
}

#[inline(always)]
fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}

/// The byte at `i`, or 0 (a separator no rule accepts) past the end.
#[inline(always)]
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Bytes that join two digit runs into one longer number (`1234.56`,
/// `2026-11-29`, `12:30`, `1/2`, `1,000`).
#[inline(always)]
fn is_num_joiner(c: u8) -> bool {
    matches!(c, b'.' | b',' | b'-' | b'/' | b':')
}

/// A number may start at `s`: no word character before it, and not the
/// continuation of a longer number.
fn num_left_ok(b: &[u8], s: usize) -> bool {
    if s == 0 {
        return true;
    }
    let p = b[s - 1];
    !(is_word(p) || ((is_num_joiner(p) || p == b'+') && s >= 2 && is_digit(b[s - 2])))
}

/// A number may end before `e`: no word character after it, and no
/// continuation as a longer number.
fn num_right_ok(b: &[u8], e: usize) -> bool {
    let n = at(b, e);
    !(is_word(n) || (is_num_joiner(n) && is_digit(at(b, e + 1))))
}

/// One pass over `b` for the digit-based kinds in `want`; returns the kinds
/// found. Every candidate of these kinds has a digit at its word start (card,
/// NANP, or after `+` / `(`) or two bytes into it (IBAN), so the pass jumps
/// from digit to digit ([`next_digit`]) and looks only at the first digit of
/// each word.
fn scan_numbers(b: &[u8], want: u8) -> u8 {
    let n = b.len();
    let mut found = 0u8;
    let mut j = next_digit(b, 0);
    while j < n {
        let todo = want & !found;
        if j == 0 || !is_word(b[j - 1]) {
            // A digit starts a word.
            if todo & CARD != 0 && card_at(b, j) {
                found |= CARD;
            }
            if todo & PHONE != 0
                && (nanp_word_at(b, j)
                    || (j > 0
                        && match b[j - 1] {
                            b'+' => e164_at(b, j - 1),
                            b'(' => (j < 2 || !is_word(b[j - 2])) && nanp_at(b, j - 1),
                            _ => false,
                        }))
            {
                found |= PHONE;
            }
        } else if todo & IBAN != 0
            && j >= 2
            && b[j - 1].is_ascii_uppercase()
            && b[j - 2].is_ascii_uppercase()
            && (j == 2 || !is_word(b[j - 3]))
            && iban_at(b, j - 2)
        {
            found |= IBAN;
        }
        if found == want {
            break;
        }
        // Skip the rest of this word: no candidate starts inside a word.
        j = next_digit(b, word_end(b, j + 1));
    }
    found
}

/// Index of the first non-word byte at or after `i`, or `b.len()`: byte by
/// byte for the first 8 (most words are short), then 8 bytes at a time.
#[inline]
fn word_end(b: &[u8], mut i: usize) -> usize {
    let head = b.len().min(i + 8);
    while i < head {
        if !is_word(b[i]) {
            return i;
        }
        i += 1;
    }
    match bytes::first(b, i, bytes::Class::NotWord) {
        Ok(found) => return found,
        Err(tail) => i = tail,
    }
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let y = x & !HI; // the ASCII value of every byte; non-ASCII bytes are masked below
        let letters = in_range(y | (0x20 * LO), b'a', b'z');
        let words = (in_range(y, b'0', b'9') | letters | in_range(y, b'_', b'_')) & !x;
        let m = !words & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && is_word(b[i]) {
        i += 1;
    }
    i
}

/// Bit 7 of each byte of `y` (all bytes < 0x80) set iff `lo <= byte <= hi`.
#[inline(always)]
fn in_range(y: u64, lo: u8, hi: u8) -> u64 {
    // Neither the sum nor the difference carries across bytes for y < 0x80.
    let ge = y + (0x80 - lo as u64) * LO;
    let le = (0x80 + hi as u64) * LO - y;
    ge & le & HI
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first ASCII digit at or after `i`, or `b.len()`; 8 bytes at
/// a time (SWAR: a byte is a digit iff `byte ^ 0x30 < 10`).
#[inline]
fn next_digit(b: &[u8], mut i: usize) -> usize {
    match bytes::first(b, i, bytes::Class::Digit) {
        Ok(found) => return found,
        Err(tail) => i = tail,
    }
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let t = u64::from_le_bytes(word) ^ (0x30 * LO);
        // High bit set in the bytes of `t` below 10; the lowest flagged byte
        // is always exact (borrows only propagate upwards).
        let m = t.wrapping_sub(10 * LO) & !t & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !is_digit(b[i]) {
        i += 1;
    }
    i
}

// ---------------------------------------------------------------------------
// Email

/// Top-level "domains" that are really file extensions after a `@2x`-style
/// asset suffix.
const FILE_EXTENSIONS: &[&[u8]] = &[
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"bmp", b"tif", b"tiff", b"avif", b"heic", b"pdf", b"js",
    b"mjs", b"css", b"json", b"html", b"htm", b"txt", b"yaml", b"yml", b"toml", b"lock", b"wasm",
];

fn has_email(b: &[u8]) -> bool {
    let mut at_pos = next_at_sign(b, 0);
    while at_pos < b.len() {
        if email_at(b, at_pos) {
            return true;
        }
        at_pos = next_at_sign(b, at_pos + 1);
    }
    false
}

/// Index of the first `@` at or after `i`, or `b.len()`; 8 bytes at a time.
#[inline]
fn next_at_sign(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ (b'@' as u64 * LO);
        let m = x.wrapping_sub(LO) & !x & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] != b'@' {
        i += 1;
    }
    i
}

fn email_at(b: &[u8], at_pos: usize) -> bool {
    // Local part.
    let mut l = at_pos;
    while l > 0 && at_pos - l < 64 && class(b[l - 1]) & LOCAL != 0 {
        l -= 1;
    }
    while l < at_pos && b[l] == b'.' {
        l += 1;
    }
    if l == at_pos || b[at_pos - 1] == b'.' {
        return false;
    }
    // Domain.
    let start = at_pos + 1;
    let limit = b.len().min(start + 253);
    let mut r = start;
    while r < limit && class(b[r]) & DOMAIN != 0 {
        r += 1;
    }
    while r > start && matches!(b[r - 1], b'.' | b'-') {
        r -= 1;
    }
    domain_ok(&b[start..r])
}

fn domain_ok(d: &[u8]) -> bool {
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in d.split(|&c| c == b'.') {
        if label.is_empty() || label.len() > 63 || label[0] == b'-' || label[label.len() - 1] == b'-' {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2
        && last.len() >= 2
        && last.iter().all(u8::is_ascii_alphabetic)
        && !FILE_EXTENSIONS.iter().any(|ext| ext.eq_ignore_ascii_case(last))
}

// ---------------------------------------------------------------------------
// Payment card

/// A card number starting at `s` (a word start holding a digit): the
/// shortest window of digit groups that is a card, see the module doc.
fn card_at(b: &[u8], s: usize) -> bool {
    if !num_left_ok(b, s) {
        return false;
    }
    let mut digits = [0u8; 19];
    let mut nd = 0;
    let mut i = s;
    let mut sep = 0u8;
    let mut groups = 0;
    let mut first_len = 0;
    loop {
        let gs = i;
        while i < b.len() && is_digit(b[i]) {
            if nd == digits.len() {
                return false; // longer than any card
            }
            digits[nd] = b[i] - b'0';
            nd += 1;
            i += 1;
        }
        let glen = i - gs;
        groups += 1;
        if groups == 1 {
            first_len = glen;
        } else if !(3..=6).contains(&glen) {
            return false;
        }
        if nd >= 13 && num_right_ok(b, i) && card_digits_ok(&digits[..nd]) {
            return true;
        }
        // Extend by one more group: `first_len == 4` and the same separator.
        let next = at(b, i);
        if first_len != 4 || !(next == b' ' || next == b'-') || !is_digit(at(b, i + 1)) {
            return false;
        }
        if sep == 0 {
            sep = next;
        } else if sep != next {
            return false;
        }
        i += 1;
    }
}

/// Network prefix and length, then Luhn. `d` holds digit values 0–9.
fn card_digits_ok(d: &[u8]) -> bool {
    let len = d.len();
    if !(13..=19).contains(&len) {
        return false;
    }
    let p2 = d[0] as u32 * 10 + d[1] as u32;
    let p3 = p2 * 10 + d[2] as u32;
    let p4 = p3 * 10 + d[3] as u32;
    let network = match d[0] {
        4 => matches!(len, 13 | 16 | 19),
        5 => (51..=55).contains(&p2) && len == 16,
        2 => (2221..=2720).contains(&p4) && len == 16,
        3 => {
            ((p2 == 34 || p2 == 37) && len == 15)
                || ((3528..=3589).contains(&p4) && len >= 16)
                || ((p2 == 36 || (300..=305).contains(&p3)) && len >= 14)
        }
        6 => (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3)) && len >= 16,
        _ => false,
    };
    network && luhn(d)
}

fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &x) in d.iter().rev().enumerate() {
        let mut v = x as u32;
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------
// Phone

/// `+` at `p` followed by an E.164 number, see the module doc.
fn e164_at(b: &[u8], p: usize) -> bool {
    if p > 0 {
        let prev = b[p - 1];
        if is_word(prev) || matches!(prev, b'/' | b'+' | b'=') {
            return false;
        }
    }
    let mut i = p + 1;
    if !matches!(at(b, i), b'1'..=b'9') {
        return false;
    }
    let mut nd = 0;
    let mut dots = 0;
    let mut depth = 0u8;
    let mut groups = 0;
    let mut shape = [0usize; 3]; // lengths of the first three groups
    loop {
        let gs = i;
        while is_digit(at(b, i)) {
            nd += 1;
            if nd > 15 {
                return false;
            }
            i += 1;
        }
        if groups < 3 {
            shape[groups] = i - gs;
        }
        groups += 1;
        // A separator run of 1–2 bytes, continuing only if a digit follows.
        let (mut j, mut d, mut dep) = (i, dots, depth);
        while j - i < 2 {
            match at(b, j) {
                b' ' | b'-' => {}
                b'.' => d += 1,
                b'(' if dep == 0 => dep = 1,
                b')' if dep == 1 => dep = 0,
                _ => break,
            }
            j += 1;
        }
        if j == i || !is_digit(at(b, j)) {
            break;
        }
        (i, dots, depth) = (j, d, dep);
    }
    let date_shape = groups == 3 && shape == [4, 2, 2];
    nd >= 8 && depth == 0 && dots != 1 && !date_shape && num_right_ok(b, i) && !matches!(at(b, i), b'/' | b'+' | b'=')
}

/// A NANP number at a word start `s` holding a digit: `555-123-4567`, or
/// `1-555-123-4567` style with a leading country code 1.
fn nanp_word_at(b: &[u8], s: usize) -> bool {
    if !num_left_ok(b, s) {
        return false;
    }
    if b[s] == b'1' && matches!(at(b, s + 1), b'-' | b'.' | b' ') {
        let t = s + 2;
        if is_digit(at(b, t)) && nanp_at(b, t) {
            return true;
        }
        if at(b, t) == b'(' && nanp_at(b, t) {
            return true;
        }
    }
    nanp_at(b, s)
}

/// A NANP number starting exactly at `s` (a digit or `(`); the caller checks
/// the left boundary.
fn nanp_at(b: &[u8], s: usize) -> bool {
    let paren = at(b, s) == b'(';
    let mut i = s + paren as usize;
    if !matches!(at(b, i), b'2'..=b'9') || !digits(b, i, 3) {
        return false;
    }
    i += 3;
    let sep1 = if paren {
        if at(b, i) != b')' {
            return false;
        }
        i += 1;
        let c = at(b, i);
        if c == b' ' || c == b'-' {
            i += 1;
        }
        c
    } else {
        let c = at(b, i);
        if !matches!(c, b'-' | b'.' | b' ') {
            return false;
        }
        i += 1;
        c
    };
    if !digits(b, i, 3) {
        return false;
    }
    i += 3;
    let sep2 = at(b, i);
    let ok = if paren {
        matches!(sep2, b'-' | b'.' | b' ')
    } else {
        matches!(sep2, b'-' | b'.') && (sep1 == sep2 || (sep1 == b' ' && sep2 == b'-'))
    };
    if !ok {
        return false;
    }
    i += 1;
    if !digits(b, i, 4) {
        return false;
    }
    num_right_ok(b, i + 4)
}

/// Exactly `n` digits at `i` (more may follow; callers check what comes next).
fn digits(b: &[u8], i: usize, n: usize) -> bool {
    b.get(i..i + n).is_some_and(|d| d.iter().all(u8::is_ascii_digit))
}

// ---------------------------------------------------------------------------
// IBAN

/// IBAN length of a registered country (SWIFT IBAN registry, plus a few
/// widely used national IBANs such as IR); 0 if unknown.
fn iban_len(cc: [u8; 2]) -> usize {
    match &cc {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FK" | b"FO" | b"GL" | b"NL" | b"SD" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"MN" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"OM" | b"SO" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"LY" | b"PT" | b"ST" => 25,
        b"IR" | b"IS" | b"TR" => 26,
        b"BI" | b"DJ" | b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HN" | b"HU" | b"LB" | b"NI" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" | b"YE" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        _ => 0,
    }
}

const IBAN_MAX: usize = 34;

/// An IBAN starting at the word start `s` (an upper-case letter).
fn iban_at(b: &[u8], s: usize) -> bool {
    let Some(head) = b.get(s..s + 4) else { return false };
    if !(head[0].is_ascii_uppercase() && head[1].is_ascii_uppercase() && is_digit(head[2]) && is_digit(head[3])) {
        return false;
    }
    let len = iban_len([head[0], head[1]]);
    if len == 0 {
        return false;
    }
    let upper_alnum = |c: u8| c.is_ascii_digit() || c.is_ascii_uppercase();
    let mut buf = [0u8; IBAN_MAX];
    buf[..4].copy_from_slice(head);
    let mut n = 4;
    let mut i = s + 4;
    let grouped = at(b, i) == b' ';
    while n < len {
        if grouped && n % 4 == 0 {
            if at(b, i) != b' ' {
                return false;
            }
            i += 1;
        }
        let c = at(b, i);
        if !upper_alnum(c) {
            return false;
        }
        buf[n] = c;
        n += 1;
        i += 1;
    }
    !is_word(at(b, i)) && iban_mod97(&buf[..len]) == 1
}

/// ISO 13616 / ISO 7064 mod-97 of an upper-case alphanumeric IBAN.
fn iban_mod97(iban: &[u8]) -> u32 {
    let mut r = 0u32;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        r = if c.is_ascii_digit() {
            (r * 10 + (c - b'0') as u32) % 97
        } else {
            (r * 100 + (c - b'A') as u32 + 10) % 97
        };
    }
    r
}

// ---------------------------------------------------------------------------
// JSON walk

/// Deepest container nesting accepted: 127, like serde_json's default
/// recursion limit (a 128th level is an error).
const MAX_DEPTH: usize = 127;

/// Escaped strings up to this many bytes are unescaped on the stack.
const SMALL_STRING: usize = 256;

/// Validates `text` as one JSON value (RFC 8259) without recursion and scans
/// its string values and plain integer literals into `found`.
fn walk_json(text: &str, scanner: &PiiScanner, found: &mut PiiKinds) -> Result<(), ()> {
    let b = text.as_bytes();
    // Bit `d` set: the container at depth `d` is an object (else an array).
    let mut objects = [0u64; MAX_DEPTH.div_ceil(64)];
    let mut depth = 0usize;
    let mut long = Vec::new(); // for escaped strings longer than SMALL_STRING
    let mut i = skip_ws(b, 0);
    loop {
        // A value starts at `i`.
        match at(b, i) {
            open @ (b'{' | b'[') => {
                if depth == MAX_DEPTH {
                    return Err(());
                }
                let obj = open == b'{';
                if obj {
                    objects[depth / 64] |= 1 << (depth % 64);
                } else {
                    objects[depth / 64] &= !(1 << (depth % 64));
                }
                depth += 1;
                i = skip_ws(b, i + 1);
                if at(b, i) != if obj { b'}' } else { b']' } {
                    if obj {
                        i = object_key(b, i)?;
                    }
                    continue;
                }
                i += 1;
                depth -= 1;
            }
            b'"' => {
                let (end, escaped) = string_end(b, i)?;
                if !scanner.done(*found) {
                    let content = &text[i + 1..end];
                    if escaped {
                        // Unescaping never makes a string longer.
                        let mut small = [0u8; SMALL_STRING];
                        let out = if content.len() <= SMALL_STRING {
                            &mut small[..]
                        } else {
                            long.resize(content.len(), 0);
                            &mut long[..]
                        };
                        let n = unescape(content, out);
                        scanner.scan_into(std::str::from_utf8(&out[..n]).unwrap_or_default(), found);
                    } else {
                        scanner.scan_into(content, found);
                    }
                }
                i = end + 1;
            }
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            _ => {
                let (end, plain) = number(b, i)?;
                if plain {
                    scanner.scan_integer(&b[i..end], found);
                }
                i = end;
            }
        }
        // After a value: close containers, or a comma before the next value.
        loop {
            i = skip_ws(b, i);
            if depth == 0 {
                return if i == b.len() { Ok(()) } else { Err(()) };
            }
            let obj = objects[(depth - 1) / 64] & (1 << ((depth - 1) % 64)) != 0;
            match (at(b, i), obj) {
                (b',', _) => {
                    i = skip_ws(b, i + 1);
                    if obj {
                        i = object_key(b, i)?;
                    }
                    break;
                }
                (b'}', true) | (b']', false) => {
                    i += 1;
                    depth -= 1;
                }
                _ => return Err(()),
            }
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(at(b, i), b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// An object key at `i` and its colon; returns where the value starts.
fn object_key(b: &[u8], i: usize) -> Result<usize, ()> {
    if at(b, i) != b'"' {
        return Err(());
    }
    let (end, _) = string_end(b, i)?;
    let colon = skip_ws(b, end + 1);
    if at(b, colon) != b':' {
        return Err(());
    }
    Ok(skip_ws(b, colon + 1))
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, ()> {
    if b[i..].starts_with(word) {
        Ok(i + word.len())
    } else {
        Err(())
    }
}

/// The end of the number at `i`, and whether it is a plain non-negative
/// integer (no sign, fraction or exponent).
fn number(b: &[u8], i: usize) -> Result<(usize, bool), ()> {
    let mut j = i;
    let negative = at(b, j) == b'-';
    j += negative as usize;
    match at(b, j) {
        b'0' => j += 1,
        b'1'..=b'9' => {
            while is_digit(at(b, j)) {
                j += 1;
            }
        }
        _ => return Err(()),
    }
    let mut plain = !negative;
    if at(b, j) == b'.' {
        plain = false;
        j = digits_end(b, j + 1)?;
    }
    if matches!(at(b, j), b'e' | b'E') {
        plain = false;
        j += 1;
        if matches!(at(b, j), b'+' | b'-') {
            j += 1;
        }
        j = digits_end(b, j)?;
    }
    Ok((j, plain))
}

/// The end of one or more digits at `j`.
fn digits_end(b: &[u8], mut j: usize) -> Result<usize, ()> {
    if !is_digit(at(b, j)) {
        return Err(());
    }
    while is_digit(at(b, j)) {
        j += 1;
    }
    Ok(j)
}

/// The index of the closing quote of the string whose opening quote is at
/// `i`, and whether the string has escapes (which are validated here,
/// including surrogate pairs, so skipped keys are checked too).
fn string_end(b: &[u8], i: usize) -> Result<(usize, bool), ()> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        j = next_string_special(b, j);
        match at(b, j) {
            b'"' => return Ok((j, escaped)),
            b'\\' => {
                escaped = true;
                j = escape_end(b, j)?;
            }
            _ => return Err(()), // a control character, or the input ended
        }
    }
}

/// The end of the escape sequence at `j` (a backslash).
fn escape_end(b: &[u8], j: usize) -> Result<usize, ()> {
    match at(b, j + 1) {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(j + 2),
        b'u' => match hex4(b, j + 2)? {
            0xD800..=0xDBFF => {
                if at(b, j + 6) == b'\\' && at(b, j + 7) == b'u' && (0xDC00..=0xDFFF).contains(&hex4(b, j + 8)?) {
                    Ok(j + 12)
                } else {
                    Err(()) // lone leading surrogate
                }
            }
            0xDC00..=0xDFFF => Err(()), // lone trailing surrogate
            _ => Ok(j + 6),
        },
        _ => Err(()),
    }
}

fn hex4(b: &[u8], i: usize) -> Result<u32, ()> {
    let mut n = 0;
    for k in 0..4 {
        let d = (at(b, i + k) as char).to_digit(16).ok_or(())?;
        n = n * 16 + d;
    }
    Ok(n)
}

/// Unescapes string content already checked by [`string_end`] into `out`
/// (at least `content.len()` bytes); returns the length written, which is
/// valid UTF-8.
fn unescape(content: &str, out: &mut [u8]) -> usize {
    let b = content.as_bytes();
    let mut n = 0;
    let mut j = 0;
    while j < b.len() {
        if b[j] != b'\\' {
            out[n] = b[j];
            n += 1;
            j += 1;
            continue;
        }
        let (c, len) = match at(b, j + 1) {
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let hi = hex4(b, j + 2).unwrap_or(0xFFFD);
                let (code, len) = if (0xD800..=0xDBFF).contains(&hi) {
                    let lo = hex4(b, j + 8).unwrap_or(0xDC00);
                    (0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF), 12)
                } else {
                    (hi, 6)
                };
                (char::from_u32(code).unwrap_or('\u{FFFD}'), len)
            }
            other => (other as char, 2), // `"` `\` `/`
        };
        // Each escape is at least as long as its UTF-8 encoding.
        n += c.encode_utf8(&mut out[n..]).len();
        j += len;
    }
    n
}

/// Index of the first `"`, `\` or control character at or after `i`, or
/// `b.len()`; 8 bytes at a time.
#[inline]
fn next_string_special(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let quote = x ^ (b'"' as u64 * LO);
        let backslash = x ^ (b'\\' as u64 * LO);
        let m = ((quote.wrapping_sub(LO) & !quote)
            | (backslash.wrapping_sub(LO) & !backslash)
            | (x.wrapping_sub(0x20 * LO) & !x))
            & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..=0x1F) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> PiiScanner {
        PiiScanner::new(PiiKinds::all())
    }

    fn kinds(text: &str) -> Vec<PiiKind> {
        all().scan_str(text).iter().collect()
    }

    fn only(kind: PiiKind) -> PiiKinds {
        [kind].into_iter().collect()
    }

    #[track_caller]
    fn assert_finds(kind: PiiKind, texts: &[&str]) {
        for t in texts {
            assert_eq!(all().scan_str(t), only(kind), "expected only {kind} in {t:?}");
        }
    }

    #[track_caller]
    fn assert_clean(texts: &[&str]) {
        for t in texts {
            assert!(all().scan_str(t).is_empty(), "expected nothing in {t:?}, found {:?}", kinds(t));
        }
    }

    #[test]
    fn digit_and_word_end_searches_agree_with_plain_scans_for_every_byte_anywhere() {
        let base = b"Order_42 of 2026-11-30: caf\xc3\xa9 and 7 more items, ok".to_vec();
        for byte in 0..=255u8 {
            for at in 0..base.len() {
                let mut text = base.clone();
                text[at] = byte;
                for from in [0, 1, at.saturating_sub(3), at] {
                    let digit = (from..text.len()).find(|&i| text[i].is_ascii_digit()).unwrap_or(text.len());
                    assert_eq!(next_digit(&text, from), digit, "digit: byte {byte} at {at} from {from}");
                    let end = (from..text.len()).find(|&i| !is_word(text[i])).unwrap_or(text.len());
                    assert_eq!(word_end(&text, from), end, "word end: byte {byte} at {at} from {from}");
                }
            }
        }
    }

    // --- kinds and sets ----------------------------------------------------

    #[test]
    fn kind_names_are_stable() {
        let names: Vec<_> = PiiKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["email", "payment_card", "phone", "iban"]);
        assert_eq!(PiiKind::Iban.to_string(), "iban");
    }

    #[test]
    fn kind_set_operations() {
        let mut s = PiiKinds::default();
        assert!(s.is_empty());
        s.insert(PiiKind::Phone);
        s.insert(PiiKind::Email);
        s.insert(PiiKind::Phone);
        assert!(!s.is_empty());
        assert!(s.contains(PiiKind::Email) && s.contains(PiiKind::Phone));
        assert!(!s.contains(PiiKind::Iban) && !s.contains(PiiKind::PaymentCard));
        assert_eq!(s.iter().collect::<Vec<_>>(), [PiiKind::Email, PiiKind::Phone]);
        assert_eq!(PiiKinds::all().iter().collect::<Vec<_>>(), PiiKind::ALL);
        assert_eq!(PiiKind::ALL.into_iter().collect::<PiiKinds>(), PiiKinds::all());
    }

    #[test]
    fn only_enabled_kinds_are_reported() {
        let text = "mail bob@example.org, card 4111 1111 1111 1111, call +44 20 7946 0958, iban DE89370400440532013000";
        assert_eq!(all().scan_str(text), PiiKinds::all());
        for k in PiiKind::ALL {
            assert_eq!(PiiScanner::new(only(k)).scan_str(text), only(k), "{k}");
        }
        assert!(PiiScanner::new(PiiKinds::default()).scan_str(text).is_empty());
        let card_and_iban: PiiKinds = [PiiKind::PaymentCard, PiiKind::Iban].into_iter().collect();
        assert_eq!(PiiScanner::new(card_and_iban).scan_str(text), card_and_iban);
    }

    // --- email -------------------------------------------------------------

    #[test]
    fn email_positives() {
        assert_finds(
            PiiKind::Email,
            &[
                "alice@example.com",
                "Please contact john.doe+billing@mail.example.co.uk for the invoice.",
                "Reply to <Jane_O-Neil%ops@Example-Corp.IO>, thanks",
                "mailto:support@pipewarden.dev",
                "sent by: x@y.de.",
                "weird @ sign first, then a real one: a.b@c-d.museum",
                "trailing hyphen user@example.org- ok",
            ],
        );
    }

    #[test]
    fn email_negatives() {
        assert_clean(&[
            "user@localhost",
            "@mention in a chat",
            "logo@2x.png and icon@3X.SVG",
            "installed pkg@1.2.3 and @scope/pkg@latest",
            "a@b.c",
            "foo@-bar.com",
            "foo@bar-.com",
            "foo@bar..com",
            "image@sha256:4f1c0bd7e2",
            ".@example.com",
            "dot.@example.com",
            "no at sign here example.com",
            "x@y.c0m",
            "@@@",
            "trailing@",
        ]);
    }

    #[test]
    fn email_with_non_ascii_neighbours() {
        assert_finds(PiiKind::Email, &["Kontakt: müller@example.de bitte", "メール:taro@example.jp"]);
    }

    // --- payment card ------------------------------------------------------

    #[test]
    fn card_positives_per_network() {
        assert_finds(
            PiiKind::PaymentCard,
            &[
                "4111111111111111",    // Visa 16
                "4222222222222",       // Visa 13
                "4111111111111111110", // Visa 19
                "5555555555554444",    // Mastercard 5x
                "2223003122003222",    // Mastercard 2-series
                "378282246310005",     // Amex
                "371449635398431",     // Amex
                "6011111111111117",    // Discover 6011
                "6500000000000002",    // Discover 65
                "6445644564456445",    // Discover 644-649
                "3530111333300000",    // JCB
                "30569309025904",      // Diners 300-305
                "36227206271667",      // Diners 36
            ],
        );
    }

    #[test]
    fn card_positives_with_separators_and_context() {
        assert_finds(
            PiiKind::PaymentCard,
            &[
                "4111 1111 1111 1111",
                "4111-1111-1111-1111",
                "3782 822463 10005",
                "my card is 5555 5555 5555 4444, exp 12/27",
                "card: 4111 1111 1111 1111 12/27 cvv 123",
                "ordered 12 4111 1111 1111 1111",
                "(4111111111111111)",
                "\"4111111111111111\"",
                "pan=4111111111111111&x=1",
            ],
        );
    }

    #[test]
    fn card_negatives() {
        assert_clean(&[
            "4111111111111112",          // Luhn fails
            "4111 1111 1111 1112",       // Luhn fails, grouped
            "5555555555554440",          // Luhn fails
            "1234567890123456",          // no network prefix
            "order 9000000000000000003", // long order number
            "41111111111111111111",      // 20 digits
            "941111111111111111",        // inside a longer run
            "4111 1111-1111 1111",       // mixed separators
            "4111  1111 1111 1111",      // double space
            "41 11 11 11 11 11 11 11",   // not card-like groups
            "ID4111111111111111",        // glued to letters
            "4111111111111111abc",       // glued to letters
            "4111111111111111.50",       // an amount
            "1.4111111111111111",        // a decimal
            "12-4111-1111-1111-1111",    // hyphen-joined to a longer number
            "4111-1111-1111-1111-12",    // hyphen-joined to a longer number
            "4111.1111.1111.1111",       // dots are not card separators
            "51051051051051005",         // Mastercard prefix, Luhn-valid, 17 digits
            "4111111111111",             // Visa prefix, 13 digits, Luhn fails
        ]);
        // A space-separated neighbour does not hide a card.
        assert_finds(PiiKind::PaymentCard, &["378282246310005 4"]);
    }

    #[test]
    fn card_in_hex_ids_is_not_flagged() {
        // A trace ID whose digit run is Luhn-valid Visa still sits inside a word.
        assert_clean(&["4111111111111111abcdef0123456789", "abcdef01234567894111111111111111", "a4111111111111111b"]);
    }

    // --- phone -------------------------------------------------------------

    #[test]
    fn phone_positives_international() {
        assert_finds(
            PiiKind::Phone,
            &[
                "+44 20 7946 0958",
                "+44 (0)20 7946 0958",
                "+1 (555) 123-4567",
                "+1-555-123-4567",
                "+1.555.123.4567",
                "+14155552671",
                "+49 30 1234567",
                "+33 1 23 45 67 89",
                "call me on +447911123456 tomorrow",
                "tel:+31-20-123-4567",
                "(+44 20 7946 0958)",
            ],
        );
    }

    #[test]
    fn phone_positives_national() {
        assert_finds(
            PiiKind::Phone,
            &[
                "(555) 123-4567",
                "(555)123-4567",
                "555-123-4567",
                "555.123.4567",
                "555 123-4567",
                "Call 1-800-555-0199 now",
                "1 (800) 555-0199",
                "phone: 212-555-0143.",
            ],
        );
    }

    #[test]
    fn phone_negatives() {
        assert_clean(&[
            "2026-11-29",
            "12:30:45",
            "2026-11-29T06:00:00.250Z",
            "2026-11-29T06:00:00+05:30",
            "2026-11-29 06:00:00",
            "550e8400-e29b-41d4-a716-446655440000",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "1.2.3",
            "v10.22.333",
            "192.168.100.200",
            "1234.56",
            "total 1,234,567.89 EUR",
            "+12345678.90",
            "+1234.56",
            "5551234567",
            "order 123456789012",
            "ORD-2026-000123456",
            "+0123456789",
            "+1234567890123456",
            "555 123 4567",
            "155-123-4567",
            "555-123-45678",
            "1555-123-4567",
            "555-123-4567-89",
            "555-123.4567",
            "+2026-11-29",
            "+1 (555 123 4567",
            "a+14155552671",
            "ab/+14155552671/cd==",
            "1+14155552671",
            "+14155552671x",
            "x(555) 123-4567",
            "+123 4567",
        ]);
    }

    // --- IBAN --------------------------------------------------------------

    #[test]
    fn iban_positives() {
        assert_finds(
            PiiKind::Iban,
            &[
                "DE89370400440532013000",
                "DE89 3704 0044 0532 0130 00",
                "GB82WEST12345698765432",
                "GB82 WEST 1234 5698 7654 32",
                "NL91ABNA0417164300",
                "FR1420041010050500013M02606",
                "BE68539007547034",
                "CH9300762011623852957",
                "NO9386011117947",
                "MT84MALT011000012345MTLCAST001S",
                "Please wire to IBAN: DE89 3704 0044 0532 0130 00.",
                "iban=ES9121000418450200051332;",
            ],
        );
    }

    #[test]
    fn iban_negatives() {
        assert_clean(&[
            "DE88370400440532013000",       // wrong check digits
            "DE89370400440532013001",       // wrong checksum
            "DE8937040044053201300",        // one char short
            "DE893704004405320130000",      // one char long
            "de89370400440532013000",       // lower case
            "De89370400440532013000",       // mixed case
            "XDE89370400440532013000",      // inside a word
            "DE89370400440532013000X",      // inside a word
            "DE89 37040044 0532013000",     // not in groups of 4
            "DE89 3704 0044 0532 0130 00X", // glued to a letter
            "DE89  3704 0044 0532 0130 00", // double space
            "ZZ21NABZ00000000137010001944", // not a registered country
            "AB12CDEF3456GHIJ7890",
        ]);
    }

    #[test]
    fn iban_mod97_reference() {
        assert_eq!(iban_mod97(b"GB82WEST12345698765432"), 1);
        assert_ne!(iban_mod97(b"GB83WEST12345698765432"), 1);
    }

    // --- mixed and noise ---------------------------------------------------

    #[test]
    fn realistic_clean_strings() {
        assert_clean(&[
            "",
            "billing",
            "Hi team, since this morning several people on my team see the same problem. We already cleared caches \
             and tried another browser. This blocks our month-end close, could you please look into it as soon as \
             possible? Thanks!",
            "Thanks for reaching out, and sorry for the trouble. I checked your account and found the cause: a retry \
             created a duplicate charge. It will appear on your statement within 5-7 business days.",
            "Workspace owners can add admins under Settings > Members > Roles.",
            "s3://inbound-docs/2025/doc-3fa9c1d2.pdf",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "TCK-004211",
            "cus_3fa9c1d2e4",
            "INV-48213",
            "Dashboard export to CSV times out after 30 seconds",
            "Webhook deliveries failing with HTTP 502",
            "claude-sonnet-4-5-20250929",
            "gpt-4o-2024-08-06",
            "1732867200000",
            "1732867200123456789",
            "latency_ms=12.345 p99=250.5 tokens=128000",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "dGhpcyBpcyBzb21lIGJhc2U2NCBkYXRhLCArMTQxNTU1NTI2NzEgbm90IGEgcGhvbmU=",
            "The quick brown fox jumps over the lazy dog",
        ]);
    }

    #[test]
    fn many_kinds_in_one_string() {
        let text = "Customer Jane (jane@example.com, +1 415 555 2671) paid with 4111-1111-1111-1111 \
                    and refunds go to GB82 WEST 1234 5698 7654 32.";
        assert_eq!(all().scan_str(text), PiiKinds::all());
    }

    #[test]
    fn random_ids_are_not_flagged() {
        // xorshift64*: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let scanner = all();
        for _ in 0..20_000 {
            let (a, b) = (next(), next());
            let trace = format!("{a:016x}{b:016x}");
            let uuid = format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                a >> 32,
                a & 0xffff,
                (b >> 52) & 0xfff,
                (b >> 40) & 0xfff,
                b & 0xffff_ffff_ffff
            );
            let ms = 1_600_000_000_000 + a % 200_000_000_000;
            let ts = format!(
                "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                a % 100,
                1 + b % 12,
                1 + (b >> 8) % 28,
                (b >> 16) % 24,
                (b >> 24) % 60,
                (b >> 32) % 60,
                (b >> 40) % 1000
            );
            let amount = format!("{}.{:02}", a % 100_000_000, b % 100);
            for s in [&trace, &uuid, &ms.to_string(), &ts, &amount] {
                assert!(scanner.scan_str(s).is_empty(), "flagged {s:?}: {:?}", kinds(s));
            }
        }
    }

    // --- JSON --------------------------------------------------------------

    const CLEAN_EVENT: &str = r#"{
        "event_type": "support.ticket.created",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "event_id": "0f8fad5bd9cb469fa16570867728950e",
        "causation_id": null,
        "created_at": "2026-11-29T06:00:00.250Z",
        "schema_version": "1.0",
        "producer": "intake-agent",
        "llm": {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 1834,
                "output_tokens": 412, "cached_input_tokens": 1280, "reasoning_tokens": 0},
        "data": {
            "ticket_id": "TCK-004211",
            "customer": {"id": "cus_3fa9c1d2e4", "plan": "business", "contact": "via portal"},
            "channel": "email",
            "subject": "Charged twice for my March invoice",
            "body_snippet": "Hi team, since this morning several people on my team see the same problem...",
            "amount": 1234.56,
            "order_id": 123456789012,
            "tags": ["billing", "p2", {"version": "1.2.3"}]
        }
    }"#;

    #[test]
    fn clean_event_finds_nothing() {
        assert_eq!(all().scan_json(CLEAN_EVENT.as_bytes()), Ok(PiiKinds::default()));
    }

    #[test]
    fn email_in_nested_event_is_found() {
        let event = CLEAN_EVENT.replace("via portal", "Reach me at maria.rossi@example.it");
        assert_eq!(all().scan_json(event.as_bytes()), Ok(only(PiiKind::Email)));
    }

    #[test]
    fn json_finds_every_kind_in_arrays_and_escapes() {
        let doc = br#"{"a": ["x", {"b": "jane\u0040example.com"}], "c": [[["card 4111\u00201111 1111 1111"]]],
                       "d": "\u002b44 20 7946 0958", "e": {"f": "DE89 3704 0044 0532 0130 00"}}"#;
        assert_eq!(all().scan_json(doc), Ok(PiiKinds::all()));
    }

    #[test]
    fn json_keys_are_not_scanned() {
        let doc = br#"{"alice@example.com": 1, "4111111111111111": "x", "+14155552671": [null, true, 1.5]}"#;
        assert_eq!(all().scan_json(doc), Ok(PiiKinds::default()));
    }

    #[test]
    fn json_integer_card_numbers_are_found() {
        assert_eq!(all().scan_json(br#"{"pan": 4111111111111111}"#), Ok(only(PiiKind::PaymentCard)));
        assert_eq!(all().scan_json(br#"{"pan": 4111111111111112}"#), Ok(PiiKinds::default()));
        assert_eq!(
            all().scan_json(br#"[1732867200123456789, 4111111111111111.0, -4111111111111111]"#),
            Ok(PiiKinds::default())
        );
    }

    #[test]
    fn json_scalar_documents() {
        assert_eq!(all().scan_json(br#""bob@example.org""#), Ok(only(PiiKind::Email)));
        assert_eq!(all().scan_json(b" 42 "), Ok(PiiKinds::default()));
        assert_eq!(all().scan_json(b"null"), Ok(PiiKinds::default()));
    }

    #[test]
    fn json_disabled_kinds_are_not_reported() {
        let event = CLEAN_EVENT.replace("via portal", "maria.rossi@example.it");
        let scanner = PiiScanner::new(only(PiiKind::Phone));
        assert_eq!(scanner.scan_json(event.as_bytes()), Ok(PiiKinds::default()));
    }

    #[test]
    fn json_stops_scanning_but_still_validates_after_everything_is_found() {
        let scanner = PiiScanner::new(only(PiiKind::Email));
        let ok = br#"{"a": "x@example.com", "b": ["later 4111111111111111", {"c": 1e3}]}"#;
        assert_eq!(scanner.scan_json(ok), Ok(only(PiiKind::Email)));
        let broken = br#"{"a": "x@example.com", "b": ["later", {"c": }]}"#;
        assert_eq!(scanner.scan_json(broken), Err(()));
        // With nothing enabled the document is still validated.
        let none = PiiScanner::new(PiiKinds::default());
        assert_eq!(none.scan_json(ok), Ok(PiiKinds::default()));
        assert_eq!(none.scan_json(broken), Err(()));
    }

    #[test]
    fn json_invalid_is_err() {
        for doc in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"a\": \"x\"",
            b"{\"a\": \"x\"} trailing",
            b"{\"a\" \"x\"}",
            b"{\"a\": [1, 2,]}",
            b"{'a': 'x'}",
            b"[\"unterminated]",
            b"{\"a\": \"bad escape \\q\"}",
            b"{\"a\": \"\xff\xfe\"}",
            b"{\"a\": NaN}",
            b"{} {}",
        ] {
            assert_eq!(all().scan_json(doc), Err(()), "{:?}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn json_deep_nesting_is_err_without_overflow() {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let depth = 10_000;
            let doc = format!("{}\"x@example.com\"{}", open.repeat(depth), close.repeat(depth));
            assert_eq!(all().scan_json(doc.as_bytes()), Err(()));
            // Unterminated, too.
            assert_eq!(all().scan_json(open.repeat(depth).as_bytes()), Err(()));
        }
        // Moderate nesting is fine.
        let doc = format!("{}\"x@example.com\"{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(all().scan_json(doc.as_bytes()), Ok(only(PiiKind::Email)));
    }

    // --- the JSON walker against serde_json ---------------------------------

    fn serde_accepts(doc: &[u8]) -> Option<bool> {
        match serde_json::from_slice::<serde_json::Value>(doc) {
            Ok(_) => Some(true),
            // Grammar-valid numbers beyond f64 are an error in serde_json only.
            Err(e) if e.to_string().contains("number out of range") => None,
            Err(_) => Some(false),
        }
    }

    #[test]
    fn json_validity_matches_serde_json() {
        let docs: &[&[u8]] = &[
            b"0",
            b"-0",
            b"-0.0e-0",
            b"1E+2",
            b"123456789012345678901234567890",
            b"01",
            b"1.",
            b".5",
            b"+1",
            b"-",
            b"1e",
            b"1e+",
            b"--1",
            b"\"\\u00e9\\ud83d\\ude00\"",
            b"\"\\ud83d\"",
            b"\"\\ude00\"",
            b"\"\\ud83d\\u0041\"",
            b"\"\\ud83dx\"",
            b"\"\\u12\"",
            b"\"\\uZZZZ\"",
            b"\"tab\there\"",
            b"\"nul\x00\"",
            b"\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
            b"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
            b"\"\xc3\"",
            b"\xef\xbb\xbf{}",
            b"{}",
            b"[]",
            b"[ ]",
            b"{ }",
            b"[1,]",
            b"[,1]",
            b"{,}",
            b"{\"a\":1,}",
            b"{\"a\" : 1 , \"b\" : [ true , false , null ] }",
            b"{\"a\":1 \"b\":2}",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{1:2}",
            b"[1 2]",
            b"[1]]",
            b"[[1]",
            b"{\"a\":[}]}",
            b"tru",
            b"truex",
            b"nulll",
            b"[true,false,null]",
            b" \t\r\n[1]\n ",
            b"\x0c[1]",
            b"[1]\x00",
            b"\"a\" \"b\"",
        ];
        for doc in docs {
            let expected = serde_accepts(doc).expect("corpus has no out-of-range numbers");
            assert_eq!(all().scan_json(doc).is_ok(), expected, "{:?}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn json_depth_limit_matches_serde_json() {
        for depth in [126, 127, 128, 129] {
            let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let expected = serde_accepts(doc.as_bytes()).unwrap();
            assert_eq!(all().scan_json(doc.as_bytes()).is_ok(), expected, "depth {depth}");
        }
        let doc = format!("{}1{}", "{\"a\":".repeat(127), "}".repeat(127));
        assert!(all().scan_json(doc.as_bytes()).is_ok());
    }

    /// What scan_json should find, computed from a serde_json tree.
    fn kinds_of_value(v: &serde_json::Value) -> PiiKinds {
        let scanner = all();
        let mut found = PiiKinds::default();
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::String(s) => found.0 |= scanner.scan_str(s).0,
                serde_json::Value::Number(n) if n.is_u64() => {
                    scanner.scan_integer(n.to_string().as_bytes(), &mut found)
                }
                serde_json::Value::Array(a) => stack.extend(a),
                serde_json::Value::Object(o) => stack.extend(o.values()),
                _ => {}
            }
        }
        found
    }

    #[test]
    fn json_mutations_match_serde_json() {
        let bases: [&[u8]; 3] = [
            CLEAN_EVENT.as_bytes(),
            br#"{"text": "a\"b\\c\/d\u00e9\ud83d\ude00 x@example.com", "numbers": [-1.5e3, 0, 4111111111111111, {}], "flag": true}"#,
            b"[{\"k\": [null, false, \"\xc3\xa9\"]}, 12.5, \"+44 20 7946 0958\"]",
        ];
        let alphabet = b"{}[]\":,\\ 0123456789eE.-+tfnulrsabu/\t\n\x00\x1f\x7f\xc3\xa9\xff";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut compared = 0;
        for round in 0..30_000 {
            let mut doc = bases[round % bases.len()].to_vec();
            for _ in 0..1 + next() % 3 {
                let pos = (next() as usize) % (doc.len() + 1);
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if pos < doc.len() => doc[pos] = byte,
                    1 if pos < doc.len() => {
                        doc.remove(pos);
                    }
                    _ => doc.insert(pos, byte),
                }
            }
            if let Some(expected) = serde_accepts(&doc) {
                let got = all().scan_json(&doc);
                assert_eq!(got.is_ok(), expected, "{:?}", String::from_utf8_lossy(&doc));
                if let Ok(found) = got {
                    let value: serde_json::Value = serde_json::from_slice(&doc).unwrap();
                    assert_eq!(found, kinds_of_value(&value), "{:?}", String::from_utf8_lossy(&doc));
                }
                compared += 1;
            }
        }
        assert!(compared > 29_000);
    }

    #[test]
    fn unescape_matches_serde_json() {
        for raw in [
            r#"plain"#,
            r#"a\"b\\c\/d"#,
            r#"\b\f\n\r\t"#,
            r#"caf\u00e9 \u20ac \ud83d\ude00 end"#,
            r#"\u0040\u002B44"#,
            "mixed é \\u00e9",
        ] {
            let quoted = format!("\"{raw}\"");
            let expected: String = serde_json::from_str(&quoted).unwrap();
            let (end, _) = string_end(quoted.as_bytes(), 0).unwrap();
            assert_eq!(end, quoted.len() - 1);
            let mut out = vec![0u8; end - 1];
            let n = unescape(&quoted[1..end], &mut out);
            assert_eq!(std::str::from_utf8(&out[..n]), Ok(expected.as_str()), "{raw}");
        }
    }

    #[test]
    fn swar_helpers_match_byte_loops() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"aZz09_ -.:/@+\"\\\x00\x1f\x7f\x80\xc3\xa9\xffAQ`{[@";
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let b: Vec<u8> = (0..len).map(|_| alphabet[(next() as usize) % alphabet.len()]).collect();
            for i in 0..=len {
                let slow_word = (i..len).find(|&k| !is_word(b[k])).unwrap_or(len);
                let slow_digit = (i..len).find(|&k| b[k].is_ascii_digit()).unwrap_or(len);
                let slow_special = (i..len).find(|&k| matches!(b[k], b'"' | b'\\' | 0..=0x1F)).unwrap_or(len);
                assert_eq!(word_end(&b, i), slow_word, "{b:?} {i}");
                assert_eq!(next_digit(&b, i), slow_digit, "{b:?} {i}");
                let slow_at = (i..len).find(|&k| b[k] == b'@').unwrap_or(len);
                assert_eq!(next_at_sign(&b, i), slow_at, "{b:?} {i}");
                assert_eq!(next_string_special(&b, i), slow_special, "{b:?} {i}");
            }
        }
    }

    #[test]
    fn json_escaped_strings_short_and_long() {
        for pad in [0, 10, 250, 300, 5000] {
            let filler = "lorem ipsum ".repeat(pad / 12);
            let doc = format!(r#"{{"note": "{filler}line one\nCard:\n4111111111111111\tthanks"}}"#);
            assert_eq!(all().scan_json(doc.as_bytes()), Ok(only(PiiKind::PaymentCard)), "pad {pad}");
            let doc = format!(r#"["{filler}\"quoted\" \u00e9t\u00e9 \ud83d\ude00 ok"]"#);
            assert_eq!(all().scan_json(doc.as_bytes()), Ok(PiiKinds::default()), "pad {pad}");
        }
    }

    #[test]
    fn random_text_never_panics() {
        let pieces = [
            "4", "1", "0", "5", "9", "-", " ", ".", "+", "(", ")", "@", "_", "/", ":", ",", "=", "a", "Z", "DE", "GB",
            "é", "€", "😀", "\u{0}", "\n", "x.com", "4111", "+44", "555", "89", "\\", "\"",
        ];
        let mut state = 0xdead_beef_cafe_f00du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let scanner = all();
        let mut hits = 0;
        for _ in 0..50_000 {
            let len = (next() % 48) as usize;
            let text: String = (0..len).map(|_| pieces[(next() as usize) % pieces.len()]).collect();
            hits += usize::from(!scanner.scan_str(&text).is_empty());
            let doc = serde_json::to_string(&text).unwrap();
            assert_eq!(scanner.scan_json(doc.as_bytes()), Ok(scanner.scan_str(&text)), "{text:?}");
        }
        assert!(hits > 0);
    }
}
