//! Decode: from raw record bytes to the contract fields.
//!
//! `wire` tells plain JSON from the Confluent wire format, `envelope` walks
//! the payload once to pull out the contract fields, `traceparent` reads
//! W3C trace context headers, `accounting` collects the token usage, model
//! and dead-letter fields found by the same walk. Everything here is synchronous, borrows from
//! the record and needs no broker, so it is unit-tested in place.

pub mod accounting;
pub mod envelope;
pub mod traceparent;
pub mod wire;

pub use accounting::{Accounting, RawUsage};
pub use envelope::{Envelope, EnvelopeExtractor, EnvelopeProblem, Headers, Problems};
pub use wire::PayloadFormat;
