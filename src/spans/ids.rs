//! Trace and span IDs of exported spans, and the sampling decision on them.
//!
//! Every ID is a pure function of the observed record, so replicas, restarts
//! and re-deliveries of the same record agree on it, and a span exported
//! twice is the same span:
//!
//! - **Trace ID**, in order of preference:
//!   1. the trace ID of the record's W3C `traceparent` header (the agents'
//!      own trace, so pipewarden's spans join it);
//!   2. the correlation ID itself when it already is a 128-bit ID: 32 hex
//!      digits, or a UUID in its 8-4-4-4-12 form (its 16 bytes, so a user can
//!      find the trace by the correlation ID with the dashes removed);
//!   3. otherwise SipHash-2-4 with 128-bit output over the correlation ID's
//!      UTF-8 bytes, keyed with the fixed key `"pipewarden.trace"` (as two
//!      little-endian u64s), the 16 output bytes as the ID. SipHash is
//!      specified independently of any implementation, so the mapping is
//!      stable across processes, machines and pipewarden versions; a unit test
//!      pins known values.
//! - **Span ID**: SipHash-2-4 (64-bit output) keyed with `"pipewarden.spans"`
//!   over the record's coordinates: topic bytes, one 0 byte, partition (4 bytes
//!   big-endian), offset (8 bytes big-endian); the 8 output bytes, big-endian.
//!   Coordinates identify a record uniquely, even when two records carry the
//!   same `event_id` (a duplicate delivery shows as two spans).
//!
//! All-zero IDs are invalid in OpenTelemetry; a hash that comes out all zero
//! (probability 2^-64 or less) has its last byte set to 1.
//!
//! Sampling follows OpenTelemetry's consistent probability sampling: the
//! rightmost 56 bits of the trace ID (random in W3C trace IDs and in the hash
//! above) are compared with a threshold, so every event of a trace gets the
//! same decision on every replica, and agents sampling with the same ratio
//! keep the same traces.

use std::fmt;
use std::hash::Hasher as _;

use siphasher::sip::SipHasher24;
use siphasher::sip128::{Hasher128 as _, SipHasher24 as SipHasher24x128};

use crate::decode::traceparent;

const TRACE_KEY: &[u8; 16] = b"pipewarden.trace";
const SPAN_KEY: &[u8; 16] = b"pipewarden.spans";

/// A 128-bit OpenTelemetry trace ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// A 64-bit OpenTelemetry span ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn keys(key: &[u8; 16]) -> (u64, u64) {
    let (k0, k1) = key.split_at(8);
    (u64::from_le_bytes(k0.try_into().expect("8 bytes")), u64::from_le_bytes(k1.try_into().expect("8 bytes")))
}

impl TraceId {
    /// The trace ID and parent span ID of a valid `traceparent` value.
    pub fn from_traceparent(value: &[u8]) -> Option<(TraceId, SpanId)> {
        let trace_hex = traceparent::parse_trace_id(value).ok()?;
        // parse_trace_id checked the layout: the parent ID follows the trace ID and a dash.
        let value = value.trim_ascii();
        let mut trace = [0; 16];
        let mut parent = [0; 8];
        decode_hex(trace_hex.as_bytes(), &mut trace)?;
        decode_hex(&value[36..52], &mut parent)?;
        Some((TraceId(trace), SpanId(parent)))
    }

    /// The trace ID a correlation ID names (see the module doc).
    pub fn from_correlation_id(id: &str) -> TraceId {
        let mut direct = [0; 16];
        let bytes = id.as_bytes();
        let parsed = match bytes.len() {
            32 => decode_hex(bytes, &mut direct),
            36 if [8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-') => {
                let mut hex = [0; 32];
                let mut n = 0;
                for &b in bytes.iter().filter(|&&b| b != b'-') {
                    hex[n] = b;
                    n += 1;
                }
                if n == 32 {
                    decode_hex(&hex, &mut direct)
                } else {
                    None
                }
            }
            _ => None,
        };
        if parsed.is_some() && direct != [0; 16] {
            return TraceId(direct);
        }
        let (k0, k1) = keys(TRACE_KEY);
        let mut hasher = SipHasher24x128::new_with_keys(k0, k1);
        hasher.write(bytes);
        let mut trace = hasher.finish128().as_bytes();
        if trace == [0; 16] {
            trace[15] = 1;
        }
        TraceId(trace)
    }

    /// The rightmost 56 bits, the part sampling decisions read.
    fn randomness(&self) -> u64 {
        let mut low = [0; 8];
        low[1..].copy_from_slice(&self.0[9..]);
        u64::from_be_bytes(low)
    }
}

impl SpanId {
    /// The span ID of the record at these coordinates (see the module doc).
    pub fn for_record(topic: &str, partition: i32, offset: i64) -> SpanId {
        let (k0, k1) = keys(SPAN_KEY);
        let mut hasher = SipHasher24::new_with_keys(k0, k1);
        hasher.write(topic.as_bytes());
        hasher.write(&[0]);
        hasher.write(&partition.to_be_bytes());
        hasher.write(&offset.to_be_bytes());
        let mut span = hasher.finish().to_be_bytes();
        if span == [0; 8] {
            span[7] = 1;
        }
        SpanId(span)
    }
}

/// Decodes hex digits (either case) into `out`; `None` if any is not hex.
fn decode_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

/// Keeps a trace when the rightmost 56 bits of its ID reach a threshold:
/// ratio 1 keeps everything, ratio 0 nothing.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    threshold: u64,
}

/// 2^56: the number of distinct 56-bit randomness values.
const RANDOMNESS_RANGE: f64 = (1u64 << 56) as f64;

impl Sampler {
    pub fn new(ratio: f64) -> Self {
        let reject = (1.0 - ratio.clamp(0.0, 1.0)) * RANDOMNESS_RANGE;
        Self { threshold: reject.round() as u64 }
    }

    pub fn keeps(&self, trace: &TraceId) -> bool {
        trace.randomness() >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(trace: TraceId) -> String {
        trace.to_string()
    }

    #[test]
    fn traceparent_yields_its_trace_and_parent_ids() {
        let (trace, parent) =
            TraceId::from_traceparent(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex(trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.to_string(), "00f067aa0ba902b7");
        assert_eq!(TraceId::from_traceparent(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(TraceId::from_traceparent(b"garbage"), None);
    }

    #[test]
    fn correlation_ids_that_are_128_bit_ids_are_used_as_they_are() {
        let upper = TraceId::from_correlation_id("4BF92F3577B34DA6A3CE929D0E0E4736");
        assert_eq!(hex(upper), "4bf92f3577b34da6a3ce929d0e0e4736");
        let uuid = TraceId::from_correlation_id("3f2504e0-4f89-41d3-9a0c-0305e82c3301");
        assert_eq!(hex(uuid), "3f2504e04f8941d39a0c0305e82c3301");
        // All zeros is not a valid trace ID: hashed like any other string.
        let zeros = TraceId::from_correlation_id("00000000000000000000000000000000");
        assert_ne!(zeros.0, [0; 16]);
        // Dashes in the wrong places, or not hex: hashed.
        let odd = TraceId::from_correlation_id("3f2504e04-f89-41d3-9a0c-0305e82c3301");
        assert_ne!(hex(odd), "3f2504e04f8941d39a0c0305e82c3301");
    }

    /// These values are part of pipewarden's interface: a trace ID derived
    /// today must be the one derived by every later version, or traces split
    /// across an upgrade. Change them only with a documented migration. They
    /// were cross-checked with an independent implementation of the
    /// reference SipHash-2-4 algorithm.
    #[test]
    fn derived_ids_are_pinned() {
        assert_eq!(hex(TraceId::from_correlation_id("order-42")), "0078b7a2fe460335231afa4d52d17e45");
        assert_eq!(hex(TraceId::from_correlation_id("")), "6a2b1e4fa833a3dd193ce5747133ced4");
        assert_eq!(SpanId::for_record("support.tickets", 2, 1234).to_string(), "27cafc06d6cc834b");
        assert_eq!(SpanId::for_record("support.tickets", 0, 0).to_string(), "7d194b8609927e61");
        // The hash is the reference SipHash-2-4: its published test vectors
        // (key 00..0f, empty message) hold for both output sizes.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let (k0, k1) = keys(&key);
        assert_eq!(SipHasher24x128::new_with_keys(k0, k1).finish128().as_bytes(), {
            let mut expected = [0; 16];
            decode_hex(b"a3817f04ba25a8e66df67214c7550293", &mut expected).unwrap();
            expected
        });
        assert_eq!(SipHasher24::new_with_keys(k0, k1).finish(), 0x726fdb47dd0e0e31);
    }

    #[test]
    fn span_ids_depend_on_every_coordinate() {
        let base = SpanId::for_record("a", 1, 7);
        assert_eq!(base, SpanId::for_record("a", 1, 7));
        assert_ne!(base, SpanId::for_record("b", 1, 7));
        assert_ne!(base, SpanId::for_record("a", 2, 7));
        assert_ne!(base, SpanId::for_record("a", 1, 8));
        // The separator keeps ("ab", …) and ("a", …) with shifted bytes apart.
        assert_ne!(SpanId::for_record("a\u{1}", 0, 0), SpanId::for_record("a", 256 << 16, 0));
    }

    #[test]
    fn sampling_keeps_the_expected_share_and_decides_per_trace() {
        assert!(Sampler::new(1.0).keeps(&TraceId([0; 16])));
        assert!(!Sampler::new(0.0).keeps(&TraceId([0xff; 16])));
        let half = Sampler::new(0.5);
        // Randomness is the low 56 bits: exactly 2^55 is the first kept value.
        let mut at = [0; 16];
        at[9] = 0x80;
        assert!(half.keeps(&TraceId(at)));
        at[9] = 0x7f;
        at[10..].fill(0xff);
        assert!(!half.keeps(&TraceId(at)));
        // Over many correlation IDs the kept share is the ratio (±1%), and
        // each decision is a pure function of the ID.
        let sampler = Sampler::new(0.25);
        let kept = (0..100_000)
            .filter(|n| {
                let trace = TraceId::from_correlation_id(&format!("trace-{n}"));
                let decision = sampler.keeps(&trace);
                assert_eq!(decision, sampler.keeps(&TraceId::from_correlation_id(&format!("trace-{n}"))));
                decision
            })
            .count();
        assert!((24_000..=26_000).contains(&kept), "kept {kept} of 100000 at ratio 0.25");
    }
}
