//! Shared health state, written by the ingest loop (and its client
//! callbacks) and read by `/readyz`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::access::AccessState;

#[derive(Debug, Default)]
pub struct Health {
    /// Set once the group coordinator has given this instance an assignment.
    pub(crate) assigned: AtomicBool,
    /// Set when shutdown starts, so load balancers stop sending traffic.
    stopping: AtomicBool,
    /// Set while the schema registry does not answer.
    registry_down: AtomicBool,
    /// Partitions paused because their quarantine writes fail.
    quarantine_blocked: AtomicUsize,
    /// Refused logins and missing ACLs that currently hold.
    pub access: AccessState,
    /// Set while no broker answers: librdkafka reported all brokers down, or
    /// the loop's topic listing failed; cleared by the next listing that
    /// succeeds. Without it a pipewarden cut off from its cluster would stay
    /// "ready" while reading nothing.
    kafka_down: AtomicBool,
}

impl Health {
    /// `Ok` when ready; otherwise every reason it is not.
    pub fn readiness(&self) -> Result<(), Vec<&'static str>> {
        let mut reasons = Vec::new();
        if self.stopping.load(Ordering::Acquire) {
            reasons.push("shutting down");
        }
        if !self.assigned.load(Ordering::Acquire) {
            reasons.push("waiting for partition assignment");
        }
        if self.registry_down.load(Ordering::Acquire) {
            reasons.push("degraded: schema registry unavailable");
        }
        if self.kafka_down.load(Ordering::Acquire) {
            reasons.push("degraded: kafka brokers unreachable");
        }
        if self.quarantine_blocked.load(Ordering::Acquire) > 0 {
            reasons.push("degraded: quarantine writes failing, partitions paused");
        }
        reasons.extend(self.access.reasons());
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn set_registry_down(&self, down: bool) {
        self.registry_down.store(down, Ordering::Release);
    }

    pub fn set_kafka_down(&self, down: bool) {
        self.kafka_down.store(down, Ordering::Release);
    }

    pub fn kafka_down(&self) -> bool {
        self.kafka_down.load(Ordering::Acquire)
    }

    pub fn set_quarantine_blocked(&self, partitions: usize) {
        self.quarantine_blocked.store(partitions, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lists_every_reason() {
        let health = Health::default();
        assert_eq!(health.readiness(), Err(vec!["waiting for partition assignment"]));
        health.assigned.store(true, Ordering::Release);
        assert_eq!(health.readiness(), Ok(()));
        health.set_registry_down(true);
        health.set_quarantine_blocked(2);
        health.set_kafka_down(true);
        assert_eq!(
            health.readiness(),
            Err(vec![
                "degraded: schema registry unavailable",
                "degraded: kafka brokers unreachable",
                "degraded: quarantine writes failing, partitions paused"
            ])
        );
        health.set_registry_down(false);
        health.set_quarantine_blocked(0);
        health.set_kafka_down(false);
        health.set_stopping();
        assert_eq!(health.readiness(), Err(vec!["shutting down"]));
    }
}
