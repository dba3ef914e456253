//! Bootstrapping again after a client has lost every broker.
//!
//! librdkafka drops (decommissions) each broker it knows that a metadata
//! answer does not list. A broker that is starting up can answer a metadata
//! request before it lists itself: a client that asks at that moment (a
//! one-broker cluster restarting, or every broker of a cluster) drops its
//! only broker and then knows none. It can send no request any more, and
//! librdkafka's own re-bootstrap, which a failed metadata request or the
//! last known broker going down starts, never starts: pipewarden's consumer
//! stayed blind for minutes after such a restart (`tests/faults.rs`).
//!
//! So pipewarden's long-lived clients add the configured bootstrap servers
//! again themselves once Kafka has not answered for [`FIRST`], then at
//! doubling intervals up to [`LONGEST`] while it stays so. librdkafka keeps
//! one handle per broker address and drops the bootstrap ones again after
//! the next metadata answer, so an addition to a client that still knows
//! its brokers only costs an idle handle until the cluster answers.

use std::ffi::CString;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};

/// How long Kafka must stay silent before the first addition: longer than
/// a broker restart that librdkafka survives by itself.
pub const FIRST: Duration = Duration::from_secs(10);

/// Longest interval between additions while Kafka stays silent
/// (librdkafka's own `metadata.recovery.rebootstrap.trigger.ms` default).
pub const LONGEST: Duration = Duration::from_secs(300);

/// When to add the bootstrap servers again; one per watching loop.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When the loop next adds them; `None` while Kafka answers.
    next: Option<Instant>,
    /// The wait after the next addition.
    interval: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self { next: None, interval: FIRST }
    }
}

impl Schedule {
    /// Records whether Kafka answered at `now`; true when the bootstrap
    /// servers are due to be added again.
    pub fn due(&mut self, answered: bool, now: Instant) -> bool {
        if answered {
            *self = Self::default();
            return false;
        }
        match self.next {
            None => {
                self.next = Some(now + FIRST);
                false
            }
            Some(next) if now >= next => {
                self.interval = (self.interval * 2).min(LONGEST);
                self.next = Some(now + self.interval);
                true
            }
            Some(_) => false,
        }
    }
}

/// The configured bootstrap servers and when to add them again: one per
/// watching loop and kind of silence.
#[derive(Debug, Clone)]
pub struct Rebootstrap {
    /// `None` if the list holds a NUL byte (never added).
    servers: Option<Bootstrap>,
    schedule: Schedule,
}

impl Rebootstrap {
    pub fn new(servers: &str) -> Self {
        Self { servers: Bootstrap::new(servers), schedule: Schedule::default() }
    }

    /// Records whether Kafka answered at `now`; the servers to add to the
    /// loop's clients when they are due.
    pub fn due(&mut self, answered: bool, now: Instant) -> Option<&Bootstrap> {
        if self.schedule.due(answered, now) {
            self.servers.as_ref()
        } else {
            None
        }
    }
}

/// The configured bootstrap servers, ready to be added to a client.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    servers: CString,
}

impl Bootstrap {
    /// `None` if the list holds a NUL byte (librdkafka would have refused
    /// it as `bootstrap.servers` already).
    pub fn new(servers: &str) -> Option<Self> {
        CString::new(servers).ok().map(|servers| Self { servers })
    }

    /// Adds the servers to `client` as bootstrap brokers; returns how many
    /// of them it now has (librdkafka counts those it already had).
    pub fn add_to<C: ClientContext>(&self, client: &Client<C>) -> i32 {
        // SAFETY: a live client handle and a NUL-terminated string that
        // librdkafka copies before returning.
        unsafe { rd::rd_kafka_brokers_add(client.native_ptr(), self.servers.as_ptr()) }
    }
}

impl std::fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.servers.to_string_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_addition_waits_for_ten_silent_seconds_and_the_next_ones_double_up_to_five_minutes() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut schedule = Schedule::default();
        assert!(!schedule.due(false, at(0)), "the first failure only starts the clock");
        assert!(!schedule.due(false, at(9)));
        assert!(schedule.due(false, at(10)));
        assert!(!schedule.due(false, at(11)), "not again at once");
        assert!(!schedule.due(false, at(29)));
        assert!(schedule.due(false, at(30)), "20 s after the first");
        assert!(schedule.due(false, at(70)), "then 40 s");
        let mut last = 70;
        let mut gaps = Vec::new();
        for s in 71..3_000 {
            if schedule.due(false, at(s)) {
                gaps.push(s - last);
                last = s;
            }
        }
        assert_eq!(&gaps[..4], &[80, 160, 300, 300], "doubling, capped at five minutes");
        assert!(gaps.iter().all(|&gap| gap <= 300));
    }

    #[test]
    fn an_answer_resets_the_schedule() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut schedule = Schedule::default();
        schedule.due(false, at(0));
        assert!(schedule.due(false, at(10)));
        assert!(!schedule.due(true, at(11)), "an answer never adds");
        assert!(!schedule.due(false, at(12)), "a new outage starts its own clock");
        assert!(!schedule.due(false, at(21)));
        assert!(schedule.due(false, at(22)), "ten seconds, not the doubled interval");
    }

    #[test]
    fn a_server_list_with_a_nul_byte_is_refused() {
        assert!(Bootstrap::new("127.0.0.1:9092,broker-b:9092").is_some());
        assert!(Bootstrap::new("127.0.0.1:9092\0").is_none());
    }
}
