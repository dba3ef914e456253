//! The last exported span of each recent trace, so the next span of the
//! trace can name it as its parent when the caller did not (no correlator).
//!
//! Bounded by two generations of at most `max_traces / 2` entries each: when
//! the current generation is full it becomes the old one and the oldest
//! generation is forgotten. Lookups and inserts stay O(1), memory stays at
//! `max_traces` entries (about 50 bytes each), and a trace that is still
//! active keeps moving into the current generation. A forgotten trace's next
//! span starts a new chain (it becomes a root span of the same trace).
//!
//! The correlator keeps every trace's timeline and will pass the previous
//! event's span itself, which makes this map a fallback only.

use ahash::AHashMap;

use super::ids::{SpanId, TraceId};

pub(crate) struct LastSpans {
    current: AHashMap<TraceId, SpanId>,
    old: AHashMap<TraceId, SpanId>,
    generation: usize,
}

impl LastSpans {
    pub(crate) fn new(max_traces: usize) -> Self {
        Self { current: AHashMap::new(), old: AHashMap::new(), generation: (max_traces / 2).max(1) }
    }

    /// Records `span` as the last span of `trace`; returns the one before it.
    pub(crate) fn replace(&mut self, trace: TraceId, span: SpanId) -> Option<SpanId> {
        let before = match self.current.insert(trace, span) {
            Some(before) => Some(before),
            None => self.old.remove(&trace),
        };
        if self.current.len() >= self.generation {
            self.old = std::mem::take(&mut self.current);
        }
        before
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(n: u64) -> TraceId {
        let mut id = [0; 16];
        id[8..].copy_from_slice(&n.to_be_bytes());
        TraceId(id)
    }

    fn span(n: u64) -> SpanId {
        SpanId(n.to_be_bytes())
    }

    #[test]
    fn each_span_chains_to_the_previous_one_of_its_trace() {
        let mut chain = LastSpans::new(100);
        assert_eq!(chain.replace(trace(1), span(10)), None);
        assert_eq!(chain.replace(trace(2), span(20)), None);
        assert_eq!(chain.replace(trace(1), span(11)), Some(span(10)));
        assert_eq!(chain.replace(trace(1), span(12)), Some(span(11)));
        assert_eq!(chain.replace(trace(2), span(21)), Some(span(20)));
    }

    #[test]
    fn memory_stays_bounded_and_active_traces_survive_a_generation() {
        let mut chain = LastSpans::new(10);
        chain.replace(trace(0), span(0));
        for n in 1..1_000 {
            chain.replace(trace(n), span(n));
            // Trace 0 stays active: it is carried into each new generation.
            if n % 3 == 0 {
                let before = chain.replace(trace(0), span(n));
                assert!(before.is_some(), "trace 0 was forgotten at {n}");
            }
            assert!(chain.len() <= 10, "{} entries", chain.len());
        }
        // A trace idle for more than two generations starts over.
        assert_eq!(chain.replace(trace(1), span(1)), None);
    }
}
