//! The compact state of one trace and the rules that update it.
//!
//! A [`Trace`] is what the trace table holds per correlation ID: its flow,
//! event-time bounds, tokens and cost so far, and a bounded timeline of
//! [`Step`]s (one per event, 36 bytes each) that serves the trace lookup
//! API, duplicate detection and the predecessor of each new event. Times
//! are milliseconds relative to the trace's first observed event, as `i32`
//! (±24 days). A trace costs 96 bytes with its first step inline; further
//! steps live in a small heap block.
//!
//! [`Trace::apply`] is pure: an event in, an [`Applied`] summary out (was it
//! a duplicate, out of order, which stage edge it closed, did it finish the
//! flow). The correlator turns that summary into metrics.

use crate::config::Outcome;

use super::observation::VerdictKind;

/// A trace ID as a table key: a W3C trace ID (32 lowercase hex digits) is
/// its own 128-bit value; any other ID is a 128-bit hash of its text (kept
/// next to the trace so it can be shown).
pub type TraceKey = [u64; 2];

/// No flow has been recognised (yet) for the trace.
pub const NO_FLOW: u8 = u8::MAX;

const START_SEEN: u8 = 1;
const TERMINAL_SEEN: u8 = 2;
const FAILED: u8 = 4;
const DONE: u8 = 8;
const STALLED: u8 = 16;

/// Marks a step whose event had no `created_at` (its time is the record timestamp).
const NO_CREATED_AT: i32 = i32::MAX;
/// Marks a step whose record had no Kafka timestamp.
const NO_RECORD_TIMESTAMP: i32 = i32::MIN;

/// Low 30 bits of `Step::event_id_and_verdict`: a nonzero hash of the event
/// ID (0 = none); the top 2 bits are the verdict.
const EVENT_ID_BITS: u32 = (1 << 30) - 1;

/// The key and, for non-hex IDs, the text to keep.
pub fn trace_key(id: &str) -> (TraceKey, bool) {
    if let Some(value) = parse_w3c_trace_id(id) {
        return ([(value >> 64) as u64, value as u64], true);
    }
    // Fixed seeds: the key is only compared within one process, and the
    // table's own hash map is randomly seeded against collision flooding.
    let high = ahash::RandomState::with_seeds(0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344);
    let low = ahash::RandomState::with_seeds(0xa409_3822, 0x299f_31d0, 0x082e_fa98, 0xec4e_6c89);
    ([high.hash_one(id), low.hash_one(id)], false)
}

/// 32 lowercase hex digits as a number, eight digits at a time
/// ([`hex8`]). (`u128::from_str_radix` checks every step for overflow in
/// 128-bit arithmetic, which measured about 800 instructions per record;
/// the loop over single digits that replaced it cost about 300 more per
/// record than this, under callgrind.)
fn parse_w3c_trace_id(id: &str) -> Option<u128> {
    let bytes: &[u8; 32] = id.as_bytes().try_into().ok()?;
    let mut value = 0u128;
    for chunk in bytes.chunks_exact(8) {
        let word = u64::from_be_bytes(chunk.try_into().expect("chunks of 8"));
        value = value << 32 | u128::from(hex8(word)?);
    }
    Some(value)
}

/// Eight lowercase hex digits (the first in the top byte of `word`) as a
/// number, with every byte of the word checked at once; `None` if any is
/// not `0-9` or `a-f`.
fn hex8(word: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if word & HIGH != 0 {
        return None;
    }
    // Bytes below 0x80: adding 0x80 - lo sets a byte's top bit iff it is
    // at least lo, with no carry into the next byte.
    let at_least = |lo: u8| word + ONES * u64::from(0x80 - lo);
    let in_range = |lo: u8, hi: u8| at_least(lo) & !at_least(hi + 1) & HIGH;
    if (in_range(b'0', b'9') | in_range(b'a', b'f')) != HIGH {
        return None;
    }
    // '0'-'9' are 0x30-0x39 and 'a'-'f' 0x61-0x66: the low nibble, plus
    // 9 for the letters (the only ones with bit 0x40).
    let digits = (word & (ONES * 0x0f)) + ((word & (ONES * 0x40)) >> 6) * 9;
    // Pack the eight nibbles, first digit highest.
    let pairs = (digits | digits >> 4) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs | pairs >> 8) & 0x0000_ffff_0000_ffff;
    Some((quads | quads >> 16) as u32)
}

/// The text of a trace ID: kept text, or the hex digits of the key.
pub fn trace_id_text(key: &TraceKey, text: Option<&str>) -> String {
    match text {
        Some(text) => text.to_string(),
        None => format!("{:016x}{:016x}", key[0], key[1]),
    }
}

/// 30-bit nonzero hash of an event ID for duplicate detection. Two distinct
/// IDs within one trace's (at most 255) events collide with probability
/// below 3·10⁻⁵; a collision counts one false duplicate.
pub fn event_id_hash(event_id: &str) -> u32 {
    let state = ahash::RandomState::with_seeds(0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c);
    ((state.hash_one(event_id) as u32) & EVENT_ID_BITS).max(1)
}

/// One event of a trace's timeline (36 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Kafka offset as two halves, so the step needs 4-byte alignment only.
    offset: [u32; 2],
    /// Event time relative to the trace's base.
    pub at_ms: i32,
    /// Record timestamp minus `created_at`, or a marker (no created_at / no timestamp).
    record_delta_ms: i32,
    event_id_and_verdict: u32,
    pub tokens: u32,
    pub cost_micro_usd: u32,
    pub event_type: u16,
    pub topic: u16,
    pub producer: u16,
    pub partition: u16,
}

impl Step {
    pub fn offset(&self) -> i64 {
        ((u64::from(self.offset[0]) << 32) | u64::from(self.offset[1])) as i64
    }

    pub fn verdict(&self) -> VerdictKind {
        VerdictKind::from_u8((self.event_id_and_verdict >> 30) as u8).unwrap_or(VerdictKind::Valid)
    }

    fn event_id_hash(&self) -> u32 {
        self.event_id_and_verdict & EVENT_ID_BITS
    }

    /// (`created_at`, record timestamp) in ms since the epoch, given the trace's base.
    pub fn times_ms(&self, base_ms: i64) -> (Option<i64>, Option<i64>) {
        let at = base_ms + i64::from(self.at_ms);
        match self.record_delta_ms {
            NO_CREATED_AT => (None, Some(at)),
            NO_RECORD_TIMESTAMP => (Some(at), None),
            delta => (Some(at), Some(at + i64::from(delta))),
        }
    }
}

/// An event as the trace table sees it: times in ms, names as ids.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// `created_at`, else the record timestamp.
    pub time_ms: i64,
    pub created_at_ms: Option<i64>,
    pub record_timestamp_ms: Option<i64>,
    /// 0 when the event has no ID.
    pub event_id_hash: u32,
    pub verdict: VerdictKind,
    pub tokens: u64,
    pub cost_micro_usd: u64,
    pub event_type: u16,
    pub topic: u16,
    pub producer: u16,
    pub partition: i32,
    pub offset: i64,
}

/// What the flows say about one event type.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    /// The flow this type starts.
    pub start: Option<u8>,
    /// The flows this type ends, with the outcome.
    pub terminal: Vec<(u8, Outcome)>,
}

/// The summary of one event applied to its trace.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Same event ID as an earlier event of the trace: nothing else was done.
    pub duplicate: bool,
    /// Earlier (in event time) than the latest event seen before it.
    pub out_of_order: bool,
    /// (from event type, to event type, latency ms) of the stage this event
    /// closes; for an out-of-order event that is the new earliest of its
    /// trace, the stage it opens (that edge could not be measured before).
    pub edge: Option<(u16, u16, i64)>,
    /// The event just before this one in event time, if still in the timeline.
    pub previous: Option<Step>,
    /// (flow, outcome, end-to-end ms) when this event completed the flow.
    pub completed: Option<(u8, Outcome, i64)>,
    /// (flow, stall stage) when the completed trace had been counted as stalled.
    pub was_stalled: Option<(u8, u16)>,
    /// Cost of the whole trace (micro-USD) when this event completed its flow.
    pub completed_cost_micro_usd: u64,
}

/// Where a trace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceState {
    Open,
    Stalled,
    Completed,
    Failed,
}

impl TraceState {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceState::Open => "open",
            TraceState::Stalled => "stalled",
            TraceState::Completed => "completed",
            TraceState::Failed => "failed",
        }
    }
}

/// Per-trace state (96 bytes plus, past one event, the timeline's heap block).
/// The text of a non-W3C trace ID is kept by the table, not here, so the
/// common W3C case does not pay for it.
#[derive(Debug, Default)]
pub struct Trace {
    /// The first event's step, inline: most open traces have few events,
    /// and one event then costs no heap block at all.
    first: Step,
    /// Steps after the first, up to the timeline bound.
    more: Vec<Step>,
    /// Event time of the first observed event, ms since the epoch.
    pub base_ms: i64,
    /// Earliest event time, relative to `base_ms`.
    pub first_ms: i32,
    /// Latest event time, relative to `base_ms`.
    pub last_ms: i32,
    terminal_ms: i32,
    pub tokens: u32,
    pub cost_micro_usd: u32,
    /// Event type of the latest event (in event time).
    pub last_stage: u16,
    /// `last_stage` when the trace was counted as stalled.
    pub stall_stage: u16,
    /// Events applied (duplicates excluded), saturating.
    pub events: u16,
    pub flow: u8,
    flags: u8,
}

impl Trace {
    pub fn new(time_ms: i64) -> Self {
        Trace { base_ms: time_ms, flow: NO_FLOW, ..Trace::default() }
    }

    /// The timeline's steps in arrival order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> + '_ {
        (self.events > 0).then_some(&self.first).into_iter().chain(self.more.iter())
    }

    fn stored_steps(&self) -> usize {
        usize::from(self.events > 0) + self.more.len()
    }

    fn relative(&self, time_ms: i64) -> i32 {
        time_ms.saturating_sub(self.base_ms).clamp(i32::MIN as i64 + 1, i32::MAX as i64 - 1) as i32
    }

    pub fn first_time_ms(&self) -> i64 {
        self.base_ms + i64::from(self.first_ms)
    }

    pub fn last_time_ms(&self) -> i64 {
        self.base_ms + i64::from(self.last_ms)
    }

    pub fn state(&self) -> TraceState {
        if self.flags & DONE != 0 {
            if self.flags & FAILED != 0 {
                TraceState::Failed
            } else {
                TraceState::Completed
            }
        } else if self.flags & STALLED != 0 {
            TraceState::Stalled
        } else {
            TraceState::Open
        }
    }

    pub fn is_stalled(&self) -> bool {
        self.flags & STALLED != 0 && self.flags & DONE == 0
    }

    pub fn is_done(&self) -> bool {
        self.flags & DONE != 0
    }

    /// Timeline steps in event-time order (arrival order among equal times).
    pub fn timeline(&self) -> Vec<Step> {
        let mut steps: Vec<Step> = self.steps().copied().collect();
        steps.sort_by_key(|s| s.at_ms);
        steps
    }

    /// Applies one event; `max_steps` bounds the timeline.
    pub fn apply(&mut self, event: &Event, roles: &Roles, max_steps: usize) -> Applied {
        let mut applied = Applied::default();
        if event.event_id_hash != 0 && self.steps().any(|s| s.event_id_hash() == event.event_id_hash) {
            applied.duplicate = true;
            return applied;
        }
        let at = self.relative(event.time_ms);
        let first_event = self.events == 0;
        // The step just before this event in event time (ties: the later arrival).
        applied.previous = self.steps().filter(|s| s.at_ms <= at).max_by_key(|s| s.at_ms).copied();
        if !first_event {
            applied.out_of_order = at < self.last_ms;
            applied.edge = if !applied.out_of_order {
                Some((self.last_stage, event.event_type, i64::from(at - self.last_ms)))
            } else if let Some(previous) = applied.previous {
                Some((previous.event_type, event.event_type, i64::from(at - previous.at_ms)))
            } else {
                let next = self.steps().filter(|s| s.at_ms > at).min_by_key(|s| s.at_ms);
                next.map(|next| (event.event_type, next.event_type, i64::from(next.at_ms - at)))
            };
        }

        let stored = self.stored_steps();
        if stored < max_steps {
            if stored > 0 && self.more.len() == self.more.capacity() {
                // Grow by doubling from 1, never past the bound: a trace of
                // five events allocates three times in its life.
                let grow = self.more.capacity().max(1).min(max_steps - stored);
                self.more.reserve_exact(grow);
            }
            let record_delta_ms = match (event.created_at_ms, event.record_timestamp_ms) {
                (None, _) => NO_CREATED_AT,
                (Some(_), None) => NO_RECORD_TIMESTAMP,
                (Some(created), Some(record)) => {
                    record.saturating_sub(created).clamp(i32::MIN as i64 + 1, i32::MAX as i64 - 1) as i32
                }
            };
            let offset = event.offset as u64;
            let step = Step {
                offset: [(offset >> 32) as u32, offset as u32],
                at_ms: at,
                record_delta_ms,
                event_id_and_verdict: event.event_id_hash | ((event.verdict as u32) << 30),
                tokens: event.tokens.min(u32::MAX as u64) as u32,
                cost_micro_usd: event.cost_micro_usd.min(u32::MAX as u64) as u32,
                event_type: event.event_type,
                topic: event.topic,
                producer: event.producer,
                partition: event.partition.clamp(0, u16::MAX as i32) as u16,
            };
            if stored == 0 {
                self.first = step;
            } else {
                self.more.push(step);
            }
        }

        self.events = self.events.saturating_add(1);
        self.tokens = self.tokens.saturating_add(event.tokens.min(u32::MAX as u64) as u32);
        self.cost_micro_usd = self.cost_micro_usd.saturating_add(event.cost_micro_usd.min(u32::MAX as u64) as u32);
        if first_event {
            self.first_ms = at;
            self.last_ms = at;
            self.last_stage = event.event_type;
        } else {
            self.first_ms = self.first_ms.min(at);
            if at >= self.last_ms {
                self.last_ms = at;
                self.last_stage = event.event_type;
            }
        }

        if self.flow == NO_FLOW {
            if let Some(flow) = roles.start {
                self.flow = flow;
            } else if let Some((flow, _)) = roles.terminal.first() {
                self.flow = *flow;
            }
        }
        if self.flow != NO_FLOW {
            if roles.start == Some(self.flow) {
                self.flags |= START_SEEN;
            }
            if self.flags & TERMINAL_SEEN == 0 {
                if let Some((_, outcome)) = roles.terminal.iter().find(|(flow, _)| *flow == self.flow) {
                    self.flags |= TERMINAL_SEEN;
                    if *outcome == Outcome::Failure {
                        self.flags |= FAILED;
                    }
                    self.terminal_ms = at;
                }
            }
            let ended = START_SEEN | TERMINAL_SEEN;
            if self.flags & ended == ended && self.flags & DONE == 0 {
                self.flags |= DONE;
                let outcome = if self.flags & FAILED != 0 { Outcome::Failure } else { Outcome::Success };
                let latency = i64::from(self.terminal_ms) - i64::from(self.first_ms);
                applied.completed = Some((self.flow, outcome, latency.max(0)));
                applied.completed_cost_micro_usd = u64::from(self.cost_micro_usd);
                if self.flags & STALLED != 0 {
                    applied.was_stalled = Some((self.flow, self.stall_stage));
                }
            }
        }
        applied
    }

    /// Marks the trace stalled when its flow's SLA has passed (in event time
    /// `now_ms`) without a terminal event; true when it just became stalled.
    pub fn check_stall(&mut self, now_ms: i64, sla_ms: i64) -> bool {
        let waiting = self.flow != NO_FLOW && self.flags & (TERMINAL_SEEN | DONE | STALLED) == 0;
        if waiting && now_ms - self.first_time_ms() > sla_ms {
            self.flags |= STALLED;
            self.stall_stage = self.last_stage;
            return true;
        }
        false
    }

    /// Heap bytes held by the trace, for the table's size estimate.
    pub fn heap_bytes(&self) -> usize {
        self.more.capacity() * std::mem::size_of::<Step>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time_ms: i64, event_type: u16, id: &str) -> Event {
        Event {
            time_ms,
            created_at_ms: Some(time_ms),
            record_timestamp_ms: Some(time_ms + 5),
            event_id_hash: event_id_hash(id),
            verdict: VerdictKind::Valid,
            tokens: 10,
            cost_micro_usd: 3,
            event_type,
            topic: 7,
            producer: 9,
            partition: 2,
            offset: 5_000_000_000,
        }
    }

    fn roles(start: Option<u8>, terminal: &[(u8, Outcome)]) -> Roles {
        Roles { start, terminal: terminal.to_vec() }
    }

    #[test]
    fn layout_stays_compact() {
        assert_eq!(std::mem::size_of::<Step>(), 36);
        assert_eq!(std::mem::size_of::<Trace>(), 96);
    }

    #[test]
    fn keys_of_w3c_ids_are_their_value_and_other_ids_are_hashed() {
        let (key, hex) = trace_key("4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(hex);
        assert_eq!(key, [0x4bf92f3577b34da6, 0xa3ce929d0e0e4736]);
        assert_eq!(trace_id_text(&key, None), "4bf92f3577b34da6a3ce929d0e0e4736");
        let (upper, hex) = trace_key("4BF92F3577B34DA6A3CE929D0E0E4736");
        assert!(!hex, "uppercase is not W3C and keeps its text");
        assert_ne!(upper, key);
        assert_eq!(trace_key("trace-1"), trace_key("trace-1"));
        assert_ne!(trace_key("trace-1").0, trace_key("trace-2").0);
        // The one-pass parse reads what the standard parser reads, and
        // refuses the same things.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1000 {
            let id: String = (0..32)
                .map(|_| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    char::from(b"0123456789abcdef"[(state >> 60) as usize])
                })
                .collect();
            assert_eq!(parse_w3c_trace_id(&id), Some(u128::from_str_radix(&id, 16).unwrap()), "{id}");
        }
        // Every byte value at every position of a valid ID: the eight
        // digits at a time accept exactly what a digit at a time accepts.
        let one_at_a_time = |id: &[u8]| {
            id.iter().try_fold(0u128, |value, &b| {
                let digit = match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    _ => return None,
                };
                Some(value << 4 | u128::from(digit))
            })
        };
        let base = *b"4bf92f3577b34da6a3ce929d0e0e4736";
        for at in 0..32 {
            for b in 0..=255u8 {
                let mut id = base;
                id[at] = b;
                let Ok(text) = std::str::from_utf8(&id) else { continue };
                assert_eq!(parse_w3c_trace_id(text), one_at_a_time(&id), "{text:?}");
            }
        }
        // And bytes that are not UTF-8 on their own, word by word.
        for at in 0..8 {
            for b in 0..=255u8 {
                let mut digits = *b"9a0f3c7e";
                digits[at] = b;
                let expected = one_at_a_time(&digits).map(|v| v as u32);
                assert_eq!(hex8(u64::from_be_bytes(digits)), expected, "{digits:?}");
            }
        }
        for id in [
            "",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e47360",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "+bf92f3577b34da6a3ce929d0e0e4736",
            "4bf92f3577b34da6a3ce929d0e0e473A",
        ] {
            assert_eq!(parse_w3c_trace_id(id), None, "{id:?}");
        }
        assert_eq!(parse_w3c_trace_id("ffffffffffffffffffffffffffffffff"), Some(u128::MAX));
    }

    #[test]
    fn a_flow_completes_with_its_end_to_end_latency_and_stage_edges() {
        let mut trace = Trace::new(1_000);
        let start = roles(Some(0), &[]);
        let middle = roles(None, &[]);
        let end = roles(None, &[(0, Outcome::Success)]);
        let first = trace.apply(&event(1_000, 10, "a"), &start, 32);
        assert_eq!(first, Applied::default());
        let second = trace.apply(&event(1_250, 11, "b"), &middle, 32);
        assert_eq!(second.edge, Some((10, 11, 250)));
        assert_eq!(second.previous.map(|p| p.event_type), Some(10));
        assert_eq!(trace.state(), TraceState::Open);
        let third = trace.apply(&event(3_000, 12, "c"), &end, 32);
        assert_eq!(third.edge, Some((11, 12, 1_750)));
        assert_eq!(third.completed, Some((0, Outcome::Success, 2_000)));
        assert_eq!(trace.state(), TraceState::Completed);
        assert_eq!((trace.tokens, trace.cost_micro_usd, trace.events), (30, 9, 3));
        let step = *trace.steps().nth(2).unwrap();
        assert_eq!(step.offset(), 5_000_000_000);
        assert_eq!(step.times_ms(trace.base_ms), (Some(3_000), Some(3_005)));
        // A later event does not complete it twice.
        assert_eq!(trace.apply(&event(3_100, 12, "d"), &end, 32).completed, None);
    }

    #[test]
    fn duplicates_are_ignored_and_out_of_order_events_join_their_predecessor() {
        let mut trace = Trace::new(0);
        let none = roles(None, &[]);
        trace.apply(&event(0, 1, "a"), &none, 32);
        trace.apply(&event(500, 3, "c"), &none, 32);
        let dup = trace.apply(&event(500, 3, "c"), &none, 32);
        assert!(dup.duplicate);
        assert_eq!(trace.events, 2);
        let late = trace.apply(&event(200, 2, "b"), &none, 32);
        assert!(late.out_of_order);
        assert_eq!(late.edge, Some((1, 2, 200)));
        assert_eq!(trace.last_stage, 3, "the latest event in event time stays the last stage");
        let order: Vec<u16> = trace.timeline().iter().map(|s| s.event_type).collect();
        assert_eq!(order, vec![1, 2, 3]);
        // An event without ID is never a duplicate.
        let mut anonymous = event(600, 4, "x");
        anonymous.event_id_hash = 0;
        assert!(!trace.apply(&anonymous, &none, 32).duplicate);
        assert!(!trace.apply(&anonymous, &none, 32).duplicate);
    }

    #[test]
    fn the_timeline_is_bounded_but_counts_go_on() {
        let mut trace = Trace::new(0);
        for n in 0..10 {
            trace.apply(&event(n * 10, 1, &format!("e{n}")), &Roles::default(), 4);
        }
        assert_eq!(trace.steps().count(), 4);
        assert_eq!(trace.more.capacity(), 3, "1 inline, then 1, 2: capped at the bound");
        assert_eq!(trace.events, 10);
        assert_eq!(trace.last_ms, 90);
    }

    #[test]
    fn failure_terminals_and_out_of_order_completion() {
        let mut trace = Trace::new(10_000);
        // The failure terminal arrives before the start (read from another partition).
        let end = roles(None, &[(1, Outcome::Failure)]);
        assert_eq!(trace.apply(&event(10_000, 5, "end"), &end, 32).completed, None);
        assert_eq!(trace.flow, 1);
        let applied = trace.apply(&event(9_000, 4, "start"), &roles(Some(1), &[]), 32);
        assert!(applied.out_of_order);
        assert_eq!(applied.edge, Some((4, 5, 1_000)), "the new earliest event opens the first stage");
        assert_eq!(applied.completed, Some((1, Outcome::Failure, 1_000)));
        assert_eq!(trace.state(), TraceState::Failed);
    }

    #[test]
    fn a_trace_stalls_once_when_its_sla_passes_without_a_terminal() {
        let mut trace = Trace::new(0);
        trace.apply(&event(0, 1, "a"), &roles(Some(0), &[]), 32);
        trace.apply(&event(100, 2, "b"), &Roles::default(), 32);
        assert!(!trace.check_stall(1_000, 1_000), "exactly at the SLA is not yet stalled");
        assert!(trace.check_stall(1_001, 1_000));
        assert!(!trace.check_stall(5_000, 1_000), "counted once");
        assert_eq!((trace.state(), trace.stall_stage), (TraceState::Stalled, 2));
        let applied = trace.apply(&event(6_000, 3, "c"), &roles(None, &[(0, Outcome::Success)]), 32);
        assert_eq!(applied.completed, Some((0, Outcome::Success, 6_000)));
        assert_eq!(applied.was_stalled, Some((0, 2)));
        // A trace with no flow never stalls.
        let mut loose = Trace::new(0);
        loose.apply(&event(0, 1, "a"), &Roles::default(), 32);
        assert!(!loose.check_stall(i64::MAX / 2, 1));
    }
}
