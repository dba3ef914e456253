//! Fixed-size atomic counters shared by all simulated agents, rendered as the
//! periodic one-line summary.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::event::EventType;
use super::poison::DlqReason;

#[derive(Debug, Default)]
pub struct Stats {
    pub tickets_started: AtomicU64,
    pub docs_started: AtomicU64,
    emitted: [AtomicU64; EventType::ALL.len()],
    pub poison_emitted: AtomicU64,
    dlq: [AtomicU64; DlqReason::ALL.len()],
    pub produce_errors: AtomicU64,
}

impl Stats {
    pub fn emitted(&self, t: EventType) {
        self.emitted[t.index()].fetch_add(1, Relaxed);
    }

    pub fn dlq(&self, r: DlqReason) {
        self.dlq[r.index()].fetch_add(1, Relaxed);
    }

    pub fn emitted_count(&self, t: EventType) -> u64 {
        self.emitted[t.index()].load(Relaxed)
    }

    pub fn dlq_total(&self) -> u64 {
        self.dlq.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// `support.ticket.created=12 support.ticket.classified=11 ...` (non-zero only).
    pub fn emitted_summary(&self) -> String {
        let parts: Vec<String> = EventType::ALL
            .iter()
            .map(|t| (t.as_str(), self.emitted_count(*t)))
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        parts.join(" ")
    }

    /// `invalid_json=1 processing_failed=2` (non-zero only).
    pub fn dlq_summary(&self) -> String {
        let parts: Vec<String> = DlqReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.dlq[r.index()].load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(" ")
        }
    }

    pub fn log_summary(&self, lag: &str) {
        tracing::info!(
            tickets_started = self.tickets_started.load(Relaxed),
            docs_started = self.docs_started.load(Relaxed),
            emitted = %self.emitted_summary(),
            poison_emitted = self.poison_emitted.load(Relaxed),
            dlq_total = self.dlq_total(),
            dlq = %self.dlq_summary(),
            produce_errors = self.produce_errors.load(Relaxed),
            lag = %lag,
            "simulator summary"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_list_non_zero_counters() {
        let s = Stats::default();
        s.emitted(EventType::TicketCreated);
        s.emitted(EventType::TicketCreated);
        s.emitted(EventType::DocExtracted);
        s.dlq(DlqReason::LlmTimeout);
        assert_eq!(s.emitted_summary(), "support.ticket.created=2 doc.extracted=1");
        assert_eq!(s.dlq_summary(), "llm_timeout=1");
        assert_eq!(s.dlq_total(), 1);
    }
}
