//! Byte searches sixteen bytes at a time with SSE2, which every x86-64
//! processor has: the first byte of a [`Class`] in a slice. The tape's
//! string scan and the PII detectors' digit and word-end searches use them;
//! each caller finishes the last (fewer than 16) bytes with its own
//! SWAR or byte loop, which also serves other architectures.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m128i, _mm_add_epi8, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
    _mm_or_si128, _mm_set1_epi8,
};

/// What [`first`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// What ends a plain run of JSON string text: `"`, `\` or a control
    /// character (below 0x20).
    StringEnd,
    /// An ASCII digit.
    Digit,
    /// Not a word character (ASCII alphanumeric or `_`).
    NotWord,
}

/// The first byte of `class` at or after `from` (`Ok`), or `Err` with where
/// the last full 16 bytes ended: the caller looks at the rest.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn first(b: &[u8], from: usize, class: Class) -> Result<usize, usize> {
    let mut i = from;
    // SAFETY: SSE2 is part of x86-64; every load reads 16 bytes inside `b`.
    unsafe {
        // A byte is in `lo..=hi` exactly when `byte + (0x80 - lo)`, as a
        // signed byte, is below `-0x80 + (hi - lo + 1)`; bytes from 0x80 up
        // never are. And `byte <= 0x1f` exactly when `max(byte, 0x1f) == 0x1f`.
        let digit_shift = _mm_set1_epi8((0x80u8 - b'0') as i8);
        let digit_bound = _mm_set1_epi8((0x80u8 + 10) as i8);
        let letter_shift = _mm_set1_epi8((0x80u8 - b'a') as i8);
        let letter_bound = _mm_set1_epi8((0x80u8 + 26) as i8);
        let case = _mm_set1_epi8(0x20);
        let underscore = _mm_set1_epi8(b'_' as i8);
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let control = _mm_set1_epi8(0x1f);
        while i + 16 <= b.len() {
            let v = _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>());
            let mask = match class {
                Class::StringEnd => {
                    let hits = _mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                        _mm_cmpeq_epi8(_mm_max_epu8(v, control), control),
                    );
                    _mm_movemask_epi8(hits) as u32
                }
                Class::Digit => _mm_movemask_epi8(_mm_cmplt_epi8(_mm_add_epi8(v, digit_shift), digit_bound)) as u32,
                Class::NotWord => {
                    let digits = _mm_cmplt_epi8(_mm_add_epi8(v, digit_shift), digit_bound);
                    let letters = _mm_cmplt_epi8(_mm_add_epi8(_mm_or_si128(v, case), letter_shift), letter_bound);
                    let words = _mm_or_si128(_mm_or_si128(digits, letters), _mm_cmpeq_epi8(v, underscore));
                    !(_mm_movemask_epi8(words) as u32) & 0xffff
                }
            };
            if mask != 0 {
                return Ok(i + mask.trailing_zeros() as usize);
            }
            i += 16;
        }
    }
    Err(i)
}

/// Elsewhere the callers' own loops do all the work.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn first(_b: &[u8], from: usize, _class: Class) -> Result<usize, usize> {
    Err(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(class: Class, c: u8) -> bool {
        match class {
            Class::StringEnd => c == b'"' || c == b'\\' || c < 0x20,
            Class::Digit => c.is_ascii_digit(),
            Class::NotWord => !(c.is_ascii_alphanumeric() || c == b'_'),
        }
    }

    #[test]
    fn every_class_agrees_with_a_plain_test_for_every_byte_at_every_position() {
        let base = b"Order_42 of 2026-11-30 caf\xc3\xa9 and 7 more items ok".to_vec();
        for class in [Class::StringEnd, Class::Digit, Class::NotWord] {
            // A base without any byte of the class, so the planted byte decides.
            let filler: Vec<u8> = base.iter().map(|&c| if plain(class, c) { b'x' } else { c }).collect();
            for byte in 0..=255u8 {
                for at in 0..filler.len() {
                    let mut text = filler.clone();
                    text[at] = byte;
                    for from in [0, at.saturating_sub(17), at] {
                        let expected = (from..text.len()).find(|&i| plain(class, text[i]));
                        match first(&text, from, class) {
                            Ok(found) => {
                                assert_eq!(Some(found), expected, "{class:?}: byte {byte} at {at} from {from}")
                            }
                            // Not found in the full blocks: the answer is in the tail, or nowhere.
                            Err(tail) => {
                                assert!(tail <= text.len() && text.len() - tail < 16 && tail >= from);
                                assert!(
                                    expected.is_none_or(|e| e >= tail),
                                    "{class:?}: byte {byte} at {at} from {from}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
