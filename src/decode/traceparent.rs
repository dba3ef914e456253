//! W3C Trace Context `traceparent` header parsing.
//!
//! Agents that are instrumented with OpenTelemetry put the trace ID in a
//! `traceparent` header (`00-<32 hex trace id>-<16 hex parent id>-<2 hex
//! flags>`). pipewarden reads only the trace ID from it, borrowed from the
//! header bytes. See <https://www.w3.org/TR/trace-context/#traceparent-header>.

use thiserror::Error;

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TraceparentError {
    #[error("traceparent is not the 55-character version-00 form")]
    Length,
    #[error("traceparent has a field that is not lowercase hex")]
    NotHex,
    #[error("traceparent fields are not separated by dashes")]
    Separator,
    #[error("traceparent version ff is forbidden")]
    ForbiddenVersion,
    #[error("traceparent trace id or parent id is all zeros")]
    ZeroId,
}

/// Returns the 32-character lowercase hex trace ID of a `traceparent` value.
///
/// Versions above `00` are accepted as the spec asks: the first four fields
/// are read and anything after a further `-` is ignored.
pub fn parse_trace_id(value: &[u8]) -> Result<&str, TraceparentError> {
    // Surrounding whitespace is tolerated (some proxies add it).
    let value = value.trim_ascii();
    if value.len() < 55 {
        return Err(TraceparentError::Length);
    }
    let (version, trace_id, parent_id, flags) = (&value[0..2], &value[3..35], &value[36..52], &value[53..55]);
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return Err(TraceparentError::Separator);
    }
    for field in [version, trace_id, parent_id, flags] {
        if !field.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(TraceparentError::NotHex);
        }
    }
    if version == b"ff" {
        return Err(TraceparentError::ForbiddenVersion);
    }
    if version == b"00" && value.len() != 55 {
        return Err(TraceparentError::Length);
    }
    if value.len() > 55 && value[55] != b'-' {
        return Err(TraceparentError::Separator);
    }
    if trace_id.iter().all(|b| *b == b'0') || parent_id.iter().all(|b| *b == b'0') {
        return Err(TraceparentError::ZeroId);
    }
    // Checked above: every byte is ASCII hex.
    Ok(std::str::from_utf8(trace_id).expect("hex is valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_version_00_yields_the_trace_id() {
        assert_eq!(parse_trace_id(VALID.as_bytes()), Ok("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(parse_trace_id(format!("  {VALID}\t").as_bytes()), Ok("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn future_versions_may_carry_more_fields() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert_eq!(parse_trace_id(v.as_bytes()), Ok("4bf92f3577b34da6a3ce929d0e0e4736"));
        let glued = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(parse_trace_id(glued.as_bytes()), Err(TraceparentError::Separator));
    }

    #[test]
    fn malformed_values_are_rejected_with_their_reason() {
        let cases: &[(&str, TraceparentError)] = &[
            ("", TraceparentError::Length),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", TraceparentError::Length),
            (&format!("{VALID}-extra"), TraceparentError::Length),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", TraceparentError::NotHex),
            ("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", TraceparentError::NotHex),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceparentError::Separator),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceparentError::ForbiddenVersion),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", TraceparentError::ZeroId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", TraceparentError::ZeroId),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_trace_id(input.as_bytes()), Err(*expected), "input {input:?}");
        }
        assert!(parse_trace_id(&[0xff; 60]).is_err());
    }
}
