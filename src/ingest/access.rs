//! Kafka access problems: a refused login or a missing ACL.
//!
//! librdkafka reports them as ordinary error codes (on the consumer's poll,
//! its error callback, a quarantine delivery or a topic creation), which
//! would otherwise show up as a generic "consume error" while pipewarden
//! sits idle. [`Denied::classify`] turns the codes that mean "not allowed"
//! into one bounded kind; the ingest loop then logs one message naming the
//! permission to grant (see docs/security.md), counts it in
//! `pipewarden_kafka_access_denied_total{kind}` and keeps `/readyz` not
//! ready with that reason until the denied work succeeds again.

use std::sync::atomic::{AtomicU8, Ordering};

use prometheus_client::encoding::EncodeLabelValue;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tracing::error;

use super::Health;
use crate::metrics::Metrics;

/// Counts one refusal and, the first time in a row, logs it with its remedy
/// (librdkafka retries refused requests, and each retry may be reported).
pub fn report(health: &Health, metrics: &Metrics, kind: Denied, err: &dyn std::fmt::Display) {
    metrics.record_access_denied(kind);
    if health.access.deny(kind) {
        error!(kind = ?kind, error = %err, remedy = kind.remedy(), "kafka refused access");
    }
}

/// What the cluster refused. Each kind is one label value and one readiness reason.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Denied {
    /// The SASL login failed (wrong user name, password or mechanism).
    authentication,
    /// READ on a watched topic is missing.
    topic_read,
    /// READ on pipewarden's consumer group is missing.
    group_read,
    /// WRITE on a quarantine topic is missing.
    quarantine_write,
    /// CREATE of a missing quarantine topic is not allowed.
    quarantine_create,
}

impl Denied {
    pub const ALL: [Denied; 5] = [
        Denied::authentication,
        Denied::topic_read,
        Denied::group_read,
        Denied::quarantine_write,
        Denied::quarantine_create,
    ];

    /// The kind of a consumer-side error code, if it is an access problem.
    pub fn classify(code: RDKafkaErrorCode) -> Option<Denied> {
        match code {
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
                Some(Denied::authentication)
            }
            RDKafkaErrorCode::TopicAuthorizationFailed => Some(Denied::topic_read),
            RDKafkaErrorCode::GroupAuthorizationFailed => Some(Denied::group_read),
            _ => None,
        }
    }

    /// The kind of a consumer error (poll or error callback), if it is an access problem.
    pub fn of_consumer_error(err: &KafkaError) -> Option<Denied> {
        err.rdkafka_error_code().and_then(Denied::classify)
    }

    /// The kind of a failed quarantine write or topic creation.
    pub fn of_quarantine_error(code: RDKafkaErrorCode, creating: bool) -> Option<Denied> {
        match Denied::classify(code)? {
            Denied::topic_read if creating => Some(Denied::quarantine_create),
            Denied::topic_read => Some(Denied::quarantine_write),
            other => Some(other),
        }
    }

    /// What to grant or fix, for the log line.
    pub fn remedy(self) -> &'static str {
        match self {
            Denied::authentication => {
                "check sasl.mechanism, sasl.username and the password (and that the user exists on the cluster)"
            }
            Denied::topic_read => "grant READ on every watched topic (ACL resource TOPIC, see docs/security.md)",
            Denied::group_read => "grant READ on the consumer group kafka.group_id (ACL resource GROUP)",
            Denied::quarantine_write => "grant WRITE on the quarantine topics (ACL resource TOPIC)",
            Denied::quarantine_create => {
                "grant CREATE on the quarantine topics, or create them beforehand and set quarantine.create_topics = false"
            }
        }
    }

    /// The `/readyz` reason while this kind of denial lasts.
    fn readiness(self) -> &'static str {
        match self {
            Denied::authentication => "kafka authentication failed: check the SASL credentials",
            Denied::topic_read => "not authorized: kafka denied READ on a watched topic",
            Denied::group_read => "not authorized: kafka denied READ on the consumer group",
            Denied::quarantine_write => "not authorized: kafka denied WRITE on a quarantine topic",
            Denied::quarantine_create => "not authorized: kafka denied CREATE of a quarantine topic",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The access problems that currently hold; one bit per [`Denied`] kind.
#[derive(Debug, Default)]
pub struct AccessState(AtomicU8);

impl AccessState {
    /// Marks `kind` as denied; returns whether it was not already (so the
    /// caller logs it once, not on every retry).
    pub fn deny(&self, kind: Denied) -> bool {
        self.0.fetch_or(kind.bit(), Ordering::AcqRel) & kind.bit() == 0
    }

    /// Clears `kinds` once the work they refused succeeds.
    pub fn allow(&self, kinds: &[Denied]) {
        let mask = kinds.iter().fold(0, |mask, kind| mask | kind.bit());
        self.0.fetch_and(!mask, Ordering::AcqRel);
    }

    /// Whether any access problem holds (a cheap check for the hot loop).
    pub fn any(&self) -> bool {
        self.0.load(Ordering::Acquire) != 0
    }

    /// The readiness reason of every denial that holds.
    pub fn reasons(&self) -> impl Iterator<Item = &'static str> {
        let bits = self.0.load(Ordering::Acquire);
        Denied::ALL.into_iter().filter(move |kind| bits & kind.bit() != 0).map(Denied::readiness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_codes_are_classified_and_others_are_not() {
        assert_eq!(Denied::classify(RDKafkaErrorCode::TopicAuthorizationFailed), Some(Denied::topic_read));
        assert_eq!(Denied::classify(RDKafkaErrorCode::GroupAuthorizationFailed), Some(Denied::group_read));
        assert_eq!(Denied::classify(RDKafkaErrorCode::Authentication), Some(Denied::authentication));
        assert_eq!(Denied::classify(RDKafkaErrorCode::SaslAuthenticationFailed), Some(Denied::authentication));
        assert_eq!(Denied::classify(RDKafkaErrorCode::BrokerTransportFailure), None);
        assert_eq!(Denied::classify(RDKafkaErrorCode::UnknownTopicOrPartition), None);
        let write = Denied::of_quarantine_error(RDKafkaErrorCode::TopicAuthorizationFailed, false);
        assert_eq!(write, Some(Denied::quarantine_write));
        let create = Denied::of_quarantine_error(RDKafkaErrorCode::TopicAuthorizationFailed, true);
        assert_eq!(create, Some(Denied::quarantine_create));
        let consumed = KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(Denied::of_consumer_error(&consumed), Some(Denied::topic_read));
    }

    #[test]
    fn a_denial_is_reported_once_and_lasts_until_allowed() {
        let state = AccessState::default();
        assert!(!state.any());
        assert!(state.deny(Denied::topic_read));
        assert!(!state.deny(Denied::topic_read), "already denied: not logged again");
        assert!(state.deny(Denied::quarantine_write));
        assert_eq!(
            state.reasons().collect::<Vec<_>>(),
            vec![
                "not authorized: kafka denied READ on a watched topic",
                "not authorized: kafka denied WRITE on a quarantine topic"
            ]
        );
        state.allow(&[Denied::topic_read, Denied::authentication]);
        assert_eq!(state.reasons().count(), 1);
        state.allow(&[Denied::quarantine_write]);
        assert!(!state.any());
    }
}
