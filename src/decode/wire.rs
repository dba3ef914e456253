//! Payload format detection: plain JSON, or the Confluent wire format
//! (magic byte `0`, big-endian 4-byte schema ID, then the serialized body).
//!
//! A JSON document can never start with byte `0`, so the prefix is
//! unambiguous. A wire-format body that looks like JSON (JSON Schema
//! serializer) is still walked for the envelope; any other body (Avro,
//! Protobuf) needs its schema and is left to the validate stage.
//! See <https://docs.confluent.io/platform/current/schema-registry/fundamentals/serdes-develop/index.html#wire-format>.

/// How a record's value is encoded. `as_str` gives the `format` label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    #[default]
    Json,
    ConfluentJson,
    ConfluentBinary,
    /// A null value (a delete marker on compacted topics).
    Tombstone,
    /// A zero-length value.
    Empty,
}

impl PayloadFormat {
    pub const ALL: [PayloadFormat; 5] = [
        PayloadFormat::Json,
        PayloadFormat::ConfluentJson,
        PayloadFormat::ConfluentBinary,
        PayloadFormat::Tombstone,
        PayloadFormat::Empty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Json => "json",
            PayloadFormat::ConfluentJson => "confluent_json",
            PayloadFormat::ConfluentBinary => "confluent_binary",
            PayloadFormat::Tombstone => "tombstone",
            PayloadFormat::Empty => "empty",
        }
    }
}

/// Length of the Confluent wire-format prefix.
pub const WIRE_PREFIX_LEN: usize = 5;

/// Splits a payload into its format, schema ID (wire format only) and the
/// body to parse.
pub fn classify(payload: &[u8]) -> (PayloadFormat, Option<u32>, &[u8]) {
    match payload {
        [] => (PayloadFormat::Empty, None, payload),
        [0, a, b, c, d, body @ ..] => {
            let schema_id = u32::from_be_bytes([*a, *b, *c, *d]);
            let looks_like_json = body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{');
            let format = if looks_like_json { PayloadFormat::ConfluentJson } else { PayloadFormat::ConfluentBinary };
            (format, Some(schema_id), body)
        }
        _ => (PayloadFormat::Json, None, payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_json_and_empty() {
        assert_eq!(classify(b"{}"), (PayloadFormat::Json, None, &b"{}"[..]));
        assert_eq!(classify(b"").0, PayloadFormat::Empty);
        // A short payload starting with 0 is not a wire-format record: it is
        // broken JSON and the envelope walk says so.
        assert_eq!(classify(&[0, 1, 2]).0, PayloadFormat::Json);
    }

    #[test]
    fn wire_format_prefix_gives_the_schema_id() {
        let (format, id, body) = classify(&[0, 0, 1, 0, 2, b' ', b'{', b'}']);
        assert_eq!((format, id, body), (PayloadFormat::ConfluentJson, Some(65_538), &b" {}"[..]));
        let (format, id, body) = classify(&[0, 0xff, 0xff, 0xff, 0xff, 2, 4]);
        assert_eq!((format, id, body), (PayloadFormat::ConfluentBinary, Some(u32::MAX), &[2u8, 4][..]));
        assert_eq!(classify(&[0, 0, 0, 0, 9]).0, PayloadFormat::ConfluentBinary);
    }
}
