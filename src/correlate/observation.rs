//! The per-record input of correlation: an [`Observation`].
//!
//! The ingest thread builds one from each record (its envelope, Kafka
//! position and verdict) without copying any string: every field borrows
//! from the record. In the single-replica mode the observation goes straight
//! to the [`super::Correlator`]; in scale-out mode it is encoded with
//! [`Observation::encode`] into a compact binary value, produced to the
//! internal observations topic keyed by trace ID, and decoded with
//! [`Observation::decode`] (again borrowing, from the consumed value) by
//! the replica that owns the trace's partition.
//!
//! Wire format, version 1 (all integers little-endian):
//!
//! ```text
//! u8  version (1)
//! u8  presence bits: 0 created_at, 1 record timestamp
//! u8  verdict (0 valid, 1 invalid, 2 unverified)
//! i32 partition
//! i64 offset
//! i64 created_at (µs since the epoch; 0 when absent)
//! i64 record timestamp (ms since the epoch; 0 when absent)
//! u64 tokens
//! u64 cost (micro-USD)
//! 6 × (u16 length, bytes): trace_id, event_id, event_type, topic, producer, model;
//!     length 0xFFFF means absent
//! ```

use std::fmt;

/// The validation verdict of the observed record, as far as correlation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum VerdictKind {
    Valid = 0,
    Invalid = 1,
    Unverified = 2,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Valid => "valid",
            VerdictKind::Invalid => "invalid",
            VerdictKind::Unverified => "unverified",
        }
    }

    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(VerdictKind::Valid),
            1 => Some(VerdictKind::Invalid),
            2 => Some(VerdictKind::Unverified),
            _ => None,
        }
    }
}

/// One observed record, reduced to what correlation, topology and span
/// export need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation<'a> {
    /// Correlation ID (`envelope.trace_id`); `None` when the record carries none.
    pub trace_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Envelope `created_at`, microseconds since the epoch.
    pub created_at_us: Option<i64>,
    /// Kafka record timestamp, milliseconds since the epoch.
    pub record_timestamp_ms: Option<i64>,
    pub producer: Option<&'a str>,
    pub verdict: VerdictKind,
    /// LLM tokens this event reports (input plus output); 0 when none.
    pub tokens: u64,
    /// Cost of those tokens in micro-USD; 0 until a price table feeds it.
    pub cost_micro_usd: u64,
    pub model: Option<&'a str>,
}

impl Observation<'_> {
    /// Carries the event's LLM usage from the cost stage: every token
    /// bucket, and the price in micro-USD (pico-USD in the cost counters).
    pub fn set_cost(&mut self, cost: &crate::cost::EventCost) {
        let t = &cost.tokens;
        self.tokens = t.input + t.cached_input + t.cache_write + t.output + t.reasoning;
        self.cost_micro_usd = cost.pico_usd.unwrap_or(0) / 1_000_000;
    }

    /// Event time in milliseconds: `created_at`, else the record timestamp.
    pub fn event_time_ms(&self) -> Option<i64> {
        self.created_at_us.map(|us| us.div_euclid(1_000)).or(self.record_timestamp_ms)
    }
}

const VERSION: u8 = 1;
const ABSENT: u16 = u16::MAX;
/// Longest string field that is encoded; longer ones are cut on a character
/// boundary (IDs and names are far shorter).
pub const MAX_FIELD_BYTES: usize = 1_024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    UnknownVersion(u8),
    BadVerdict(u8),
    NotUtf8,
    TrailingBytes,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "observation is truncated"),
            DecodeError::UnknownVersion(v) => write!(f, "unknown observation version {v}"),
            DecodeError::BadVerdict(v) => write!(f, "unknown verdict {v}"),
            DecodeError::NotUtf8 => write!(f, "a string field is not UTF-8"),
            DecodeError::TrailingBytes => write!(f, "bytes after the last field"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl<'a> Observation<'a> {
    /// Appends the encoded observation to `out` (cleared first), so the
    /// caller can reuse one buffer for every record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(VERSION);
        let presence = u8::from(self.created_at_us.is_some()) | (u8::from(self.record_timestamp_ms.is_some()) << 1);
        out.push(presence);
        out.push(self.verdict as u8);
        out.extend_from_slice(&self.partition.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.created_at_us.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.record_timestamp_ms.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.tokens.to_le_bytes());
        out.extend_from_slice(&self.cost_micro_usd.to_le_bytes());
        for field in [self.trace_id, self.event_id, self.event_type, Some(self.topic), self.producer, self.model] {
            match field {
                None => out.extend_from_slice(&ABSENT.to_le_bytes()),
                Some(text) => {
                    let text = crate::metrics::truncate_label(text, MAX_FIELD_BYTES);
                    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
            }
        }
    }

    /// Decodes an encoded observation, borrowing its strings from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Observation<'a>, DecodeError> {
        let mut reader = Reader { bytes };
        let version = reader.take::<1>()?[0];
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let presence = reader.take::<1>()?[0];
        let verdict_byte = reader.take::<1>()?[0];
        let verdict = VerdictKind::from_u8(verdict_byte).ok_or(DecodeError::BadVerdict(verdict_byte))?;
        let partition = i32::from_le_bytes(reader.take()?);
        let offset = i64::from_le_bytes(reader.take()?);
        let created_at_us = i64::from_le_bytes(reader.take()?);
        let record_timestamp_ms = i64::from_le_bytes(reader.take()?);
        let tokens = u64::from_le_bytes(reader.take()?);
        let cost_micro_usd = u64::from_le_bytes(reader.take()?);
        let trace_id = reader.string()?;
        let event_id = reader.string()?;
        let event_type = reader.string()?;
        let topic = reader.string()?.unwrap_or("");
        let producer = reader.string()?;
        let model = reader.string()?;
        if !reader.bytes.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Observation {
            trace_id,
            event_id,
            event_type,
            topic,
            partition,
            offset,
            created_at_us: (presence & 1 != 0).then_some(created_at_us),
            record_timestamp_ms: (presence & 2 != 0).then_some(record_timestamp_ms),
            producer,
            verdict,
            tokens,
            cost_micro_usd,
            model,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self.bytes.split_first_chunk::<N>().ok_or(DecodeError::Truncated)?;
        self.bytes = rest;
        Ok(*head)
    }

    fn string(&mut self) -> Result<Option<&'a str>, DecodeError> {
        let len = u16::from_le_bytes(self.take()?);
        if len == ABSENT {
            return Ok(None);
        }
        let len = len as usize;
        if self.bytes.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(text).map(Some).map_err(|_| DecodeError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Observation<'static> {
        Observation {
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            event_id: Some("evt-1"),
            event_type: Some("support.ticket.created"),
            topic: "support.ticket.created",
            partition: 7,
            offset: 1 << 40,
            created_at_us: Some(1_767_225_600_123_456),
            record_timestamp_ms: Some(1_767_225_600_200),
            producer: Some("intake-agent"),
            verdict: VerdictKind::Unverified,
            tokens: 1_234,
            cost_micro_usd: 56,
            model: Some("gpt-x"),
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let mut buffer = Vec::new();
        let observation = sample();
        observation.encode(&mut buffer);
        assert_eq!(Observation::decode(&buffer), Ok(observation));
        // Absent fields stay absent, and the buffer is reused.
        let sparse = Observation {
            trace_id: None,
            event_id: None,
            event_type: None,
            producer: None,
            model: None,
            created_at_us: None,
            record_timestamp_ms: None,
            topic: "",
            ..sample()
        };
        sparse.encode(&mut buffer);
        assert_eq!(buffer.len(), 3 + 4 + 8 * 5 + 6 * 2);
        assert_eq!(Observation::decode(&buffer), Ok(sparse));
    }

    #[test]
    fn the_layout_is_fixed() {
        let mut buffer = Vec::new();
        Observation { event_id: None, producer: Some("p"), model: None, ..sample() }.encode(&mut buffer);
        assert_eq!(&buffer[..3], &[1, 0b11, 2]);
        assert_eq!(&buffer[3..7], &7i32.to_le_bytes());
        assert_eq!(&buffer[7..15], &(1i64 << 40).to_le_bytes());
        let strings = &buffer[3 + 4 + 40..];
        assert_eq!(&strings[..2], &32u16.to_le_bytes());
        assert_eq!(&strings[2..34], b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(&strings[34..36], &[0xff, 0xff], "absent event_id");
    }

    #[test]
    fn damaged_values_are_rejected() {
        let mut buffer = Vec::new();
        sample().encode(&mut buffer);
        for cut in 0..buffer.len() {
            assert_eq!(Observation::decode(&buffer[..cut]), Err(DecodeError::Truncated), "cut at {cut}");
        }
        let mut longer = buffer.clone();
        longer.push(0);
        assert_eq!(Observation::decode(&longer), Err(DecodeError::TrailingBytes));
        let mut version = buffer.clone();
        version[0] = 9;
        assert_eq!(Observation::decode(&version), Err(DecodeError::UnknownVersion(9)));
        let mut verdict = buffer.clone();
        verdict[2] = 3;
        assert_eq!(Observation::decode(&verdict), Err(DecodeError::BadVerdict(3)));
        let mut utf8 = buffer;
        utf8[3 + 4 + 40 + 2] = 0xff;
        assert_eq!(Observation::decode(&utf8), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn long_fields_are_cut_and_event_time_prefers_created_at() {
        let long = "x".repeat(MAX_FIELD_BYTES + 10);
        let mut buffer = Vec::new();
        Observation { producer: Some(&long), ..sample() }.encode(&mut buffer);
        let decoded = Observation::decode(&buffer).unwrap();
        assert_eq!(decoded.producer.unwrap().len(), MAX_FIELD_BYTES);
        assert_eq!(sample().event_time_ms(), Some(1_767_225_600_123));
        let no_created = Observation { created_at_us: None, ..sample() };
        assert_eq!(no_created.event_time_ms(), Some(1_767_225_600_200));
    }
}
