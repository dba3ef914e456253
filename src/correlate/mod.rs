//! Correlation: end-to-end latency by trace ID, stage latency, stalled
//! traces, topology and delivery problems, from the events themselves.
//!
//! In: one [`Observation`] per record (built on the ingest thread by
//! [`observation`], borrowing from the record), plus a periodic
//! [`Correlator::sweep`] driven by the ingest loop's once-a-second tick. Out:
//! the `pipewarden_flow_*`, `pipewarden_stage_*`, `pipewarden_stalled_*`,
//! `pipewarden_trace_*` and delivery families, the shared state the HTTP API
//! reads ([`Shared`]: trace table, names, topology), and a per-event
//! callback for span export ([`EventSink`]).
//!
//! Where it sits: after observe, on the same thread. In the default mode the
//! ingest thread calls [`Correlator::observe`] directly; in scale-out mode
//! ([`scaleout`]) the ingest thread only encodes the observation to the
//! internal topic, keyed by trace ID, and a second consumer thread feeds the
//! correlator of the replica that owns the trace's partition.
//!
//! Per record: interning (three small-map lookups), one shard lock and one
//! hash lookup in the trace table, a timeline push into spare capacity; no
//! allocation for an event of a known trace unless its timeline doubles.
//!
//! Layout: [`observation`] (input and its wire format), [`trace`] (per-trace
//! state and rules), [`table`] (sharded table), [`clock`] (event-time
//! watermark), [`names`] (interning), [`topology`], [`handles`] (cached
//! metric handles), [`api`] (HTTP), [`scaleout`] (Kafka mode).

pub mod api;
pub mod clock;
mod handles;
pub mod names;
pub mod observation;
pub mod scaleout;
pub mod table;
pub mod topology;
pub mod trace;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::config::{Config, Flow};
use crate::decode::{Envelope, Headers};
use crate::metrics::Metrics;
use crate::observe::Record;
use crate::validate::{Checked, Verdict};
use clock::Watermark;
use handles::Handles;
use names::{Interner, NameList};
pub use observation::{Observation, VerdictKind};
use table::{Eviction, TraceTable};
use topology::{SharedTopology, TopologyWriter};
use trace::{event_id_hash, trace_key, Event, Roles, Step, Trace, NO_FLOW};

/// Where the ingest thread sends each record's observation.
pub enum Input {
    /// Correlated on the ingest thread (one replica; the default). Boxed:
    /// the correlator is large and the enum lives in the ingest struct.
    InProcess(Box<Correlator>),
    /// Produced to the observations topic, keyed by trace ID (scale-out mode).
    Kafka(scaleout::ObservationProducer),
}

impl Input {
    /// One record's observation; `wall_ms` is the wall clock.
    /// Returns the record of the event before this one in its trace (event
    /// order), when the correlation runs in this process.
    pub fn observe(&mut self, observation: &Observation<'_>, wall_ms: i64) -> Option<PreviousRecord> {
        match self {
            Input::InProcess(correlator) => correlator.observe(observation, wall_ms),
            Input::Kafka(producer) => {
                producer.send(observation, wall_ms);
                None
            }
        }
    }

    /// Adds the per-record histograms' observations of the batch (the
    /// ingest loop calls this after each batch).
    pub fn flush(&mut self) {
        if let Input::InProcess(correlator) = self {
            correlator.flush();
        }
    }

    /// The ingest loop's once-a-second tick.
    pub fn tick(&mut self, wall_ms: i64) {
        match self {
            Input::InProcess(correlator) => correlator.sweep(wall_ms),
            Input::Kafka(producer) => producer.broadcast_watermarks(wall_ms),
        }
    }
}

/// Builds the observation of one record. Strings borrow from the record and
/// its envelope; nothing is copied.
pub fn observation<'r, H: Headers + ?Sized>(
    record: &Record<'r, H>,
    envelope: &'r Envelope<'_>,
    checked: &Checked,
) -> Observation<'r> {
    let verdict = match checked.verdict {
        Verdict::Invalid { .. } => VerdictKind::Invalid,
        Verdict::Unverified(_) => VerdictKind::Unverified,
        Verdict::Valid | Verdict::Wait => VerdictKind::Valid,
    };
    Observation {
        trace_id: envelope.trace_id.as_deref(),
        event_id: envelope.event_id.as_deref(),
        event_type: envelope.event_type.as_deref(),
        topic: record.topic,
        partition: record.partition,
        offset: record.offset,
        created_at_us: envelope.created_at_us,
        record_timestamp_ms: record.timestamp_ms,
        producer: envelope.producer.as_deref(),
        verdict,
        // Token usage and cost: set by the ingest loop from the cost stage.
        tokens: 0,
        cost_micro_usd: 0,
        model: envelope.accounting.model.as_deref(),
    }
}

/// Where the previous event of a trace (in event order) was read: enough
/// for the span exporter to name its span as the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// The event before the current one in its trace (in event time), as far as
/// the timeline still holds it: enough for a span exporter to chain spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousEvent<'a> {
    pub event_type: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub producer: &'a str,
    /// `created_at` (else the record timestamp), ms since the epoch.
    pub time_ms: i64,
}

/// Receives every observed event, after correlation, on the correlating
/// thread. The span exporter implements it; it must not block (hand off to
/// a bounded queue and count drops).
pub trait EventSink: Send {
    fn on_event(&mut self, event: &Observation<'_>, previous: Option<&PreviousEvent<'_>>);
}

/// A flow's name and SLA, for the API.
#[derive(Debug, Clone)]
pub struct FlowInfo {
    pub name: String,
    pub sla_ms: i64,
}

/// What the HTTP API reads.
pub struct Shared {
    pub table: TraceTable,
    pub names: Arc<NameList>,
    pub topology: Arc<SharedTopology>,
    pub flows: Vec<FlowInfo>,
    /// The correlator's event-time clock at the last sweep (ms), or `i64::MIN`.
    watermark_ms: AtomicI64,
}

impl Shared {
    pub fn watermark_ms(&self) -> Option<i64> {
        let value = self.watermark_ms.load(Ordering::Relaxed);
        (value != i64::MIN).then_some(value)
    }
}

/// The single writer of the trace table.
pub struct Correlator {
    shared: Arc<Shared>,
    interner: Interner,
    /// Names by id, mirrored on the writer's side (no lock to resolve one).
    names: Vec<Arc<str>>,
    /// What the flows say about each name id used as an event type.
    roles: Vec<Roles>,
    flows: Vec<Flow>,
    clock: Watermark,
    topology: TopologyWriter,
    handles: Handles,
    max_steps: usize,
    ttl_ms: i64,
    sink: Option<Box<dyn EventSink>>,
    /// Budgets of flows (`[[budgets]] flow = ...`), fed with each completed flow's cost.
    budgets: Option<Arc<crate::cost::Budgets>>,
}

impl Correlator {
    /// Feeds the cost of every completed flow to the flow budgets.
    pub fn with_budgets(mut self, budgets: Arc<crate::cost::Budgets>) -> Self {
        self.budgets = Some(budgets);
        self
    }

    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        let settings = &config.correlate;
        // Three kinds of names (event types, topics, producers), each
        // already capped by the label limits downstream.
        let interner = Interner::new(config.metrics.max_label_values.saturating_mul(3));
        let topology = TopologyWriter::new(settings.max_topology_links);
        let shared = Arc::new(Shared {
            table: TraceTable::new(settings.shards, settings.max_traces),
            names: interner.list(),
            topology: topology.shared(),
            flows: config
                .flows
                .iter()
                .map(|f| FlowInfo { name: f.name.clone(), sla_ms: f.sla.as_millis() as i64 })
                .collect(),
            watermark_ms: AtomicI64::new(i64::MIN),
        });
        let names = interner.list().snapshot();
        Self {
            roles: vec![Roles::default(); names.len()],
            names,
            interner,
            flows: config.flows.clone(),
            clock: Watermark::default(),
            topology,
            handles: Handles::new(metrics, &config.flows, settings.max_edges),
            max_steps: settings.max_timeline_events,
            ttl_ms: settings.trace_ttl.as_millis() as i64,
            shared,
            sink: None,
            budgets: None,
        }
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Installs the per-event callback (span export).
    pub fn set_sink(&mut self, sink: Box<dyn EventSink>) {
        self.sink = Some(sink);
    }

    fn intern(&mut self, name: Option<&str>) -> u16 {
        let (id, new) = self.interner.id(name);
        if new {
            let name = name.unwrap_or_default();
            self.names.push(Arc::from(name));
            self.roles.push(roles_of(&self.flows, name));
        }
        id
    }

    /// Correlates one observed event; `wall_ms` is the wall clock. Returns
    /// where the event before it in its trace (event order) was read.
    pub fn observe(&mut self, observation: &Observation<'_>, wall_ms: i64) -> Option<PreviousRecord> {
        let Some(time_ms) = observation.event_time_ms() else {
            // Neither created_at nor a record timestamp: nothing to measure.
            return None;
        };
        let topic = self.intern(Some(observation.topic));
        let event_type = self.intern(observation.event_type);
        let producer = self.intern(observation.producer);
        self.clock.observe(topic, observation.partition, time_ms, wall_ms);
        let created_at_ms = observation.created_at_us.map(|us| us.div_euclid(1_000));
        if let (Some(created), Some(record)) = (created_at_ms, observation.record_timestamp_ms) {
            self.handles.clock_skew(producer, &self.names).observe((record - created) as f64 / 1e3);
        }
        self.topology.emits((producer, event_type, topic));

        let Some(trace_id) = observation.trace_id else {
            self.handles.uncorrelated(topic, producer, &self.names).inc();
            if let Some(sink) = self.sink.as_mut() {
                sink.on_event(observation, None);
            }
            return None;
        };
        let event = Event {
            time_ms,
            created_at_ms,
            record_timestamp_ms: observation.record_timestamp_ms,
            event_id_hash: observation.event_id.map_or(0, event_id_hash),
            verdict: observation.verdict,
            tokens: observation.tokens,
            cost_micro_usd: observation.cost_micro_usd,
            event_type,
            topic,
            producer,
            partition: observation.partition,
            offset: observation.offset,
        };
        let (key, w3c) = trace_key(trace_id);
        let roles = &self.roles[event_type as usize];
        let applied = {
            let mut shard = self.shared.table.shard_for(&key);
            if let Some(trace) = shard.get_mut(&key) {
                trace.apply(&event, roles, self.max_steps)
            } else {
                let text = (!w3c).then_some(trace_id);
                let limit = self.shared.table.shard_limit();
                match shard.insert(key, Trace::new(time_ms), text, limit) {
                    Some(trace) => trace.apply(&event, roles, self.max_steps),
                    None => {
                        drop(shard);
                        self.handles.eviction(Eviction::Rejected).inc();
                        return None;
                    }
                }
            }
        };

        if applied.duplicate {
            self.handles.duplicates(topic, &self.names).inc();
            return None;
        }
        if applied.out_of_order {
            self.handles.out_of_order(topic, &self.names).inc();
        }
        if let Some((from, to, latency_ms)) = applied.edge {
            self.handles.edge(from, to, &self.names).observe(latency_ms as f64 / 1e3);
        }
        if let Some(previous) = applied.previous {
            if previous.producer != producer {
                self.topology.consumes((previous.topic, previous.event_type, producer));
            }
        }
        if let Some((flow, outcome, latency_ms)) = applied.completed {
            self.handles.completed(flow, outcome, latency_ms, trace_id);
            // The cost of a completed flow: its histogram, and flow budgets.
            if let Some(name) = self.handles.flow_cost(flow, applied.completed_cost_micro_usd) {
                if let Some(budgets) = &self.budgets {
                    budgets.add_flow_cost(
                        name,
                        applied.completed_cost_micro_usd.saturating_mul(1_000_000),
                        wall_ms * 1_000,
                    );
                }
            }
        }
        if let Some((flow, stage)) = applied.was_stalled {
            self.handles.stalled_gauge(flow, stage, &self.names).dec();
        }
        if let Some(sink) = self.sink.as_mut() {
            let previous = applied.previous.map(|step| previous_event(&self.names, &step, &key, &self.shared.table));
            sink.on_event(observation, previous.as_ref());
        }
        applied.previous.map(|step| PreviousRecord {
            topic: self.names.get(step.topic as usize).cloned().unwrap_or_else(|| Arc::from("")),
            partition: i32::from(step.partition),
            offset: step.offset(),
        })
    }

    /// Notes that input `topic`/`partition` has reached event time
    /// `event_ms` (a watermark from the replica that reads it, scale-out mode).
    pub fn advance(&mut self, topic: &str, partition: i32, event_ms: i64, wall_ms: i64) {
        let topic = self.intern(Some(topic));
        self.clock.observe(topic, partition, event_ms, wall_ms);
    }

    /// Adds what the per-record histograms (clock skew, stage edges)
    /// observed since the last flush; also done by every sweep.
    pub fn flush(&mut self) {
        self.handles.flush();
    }

    /// Once a second: adds the per-record histograms' observations, marks
    /// stalled traces, forgets expired ones, enforces the cap, and updates
    /// the table's gauges.
    pub fn sweep(&mut self, wall_ms: i64) {
        self.handles.flush();
        let now = self.clock.now(wall_ms);
        if let Some(now) = now {
            self.shared.watermark_ms.store(now, Ordering::Relaxed);
        }
        let table = &self.shared.table;
        let slas: Vec<i64> = self.flows.iter().map(|f| f.sla.as_millis() as i64).collect();
        let (high, low) = (table.shard_limit() * 9 / 10, table.shard_limit() * 8 / 10);
        let (mut traces, mut bytes) = (0usize, 0usize);
        let mut stalled: Vec<(u8, u16)> = Vec::new();
        let mut unstalled: Vec<(u8, u16)> = Vec::new();
        let mut evicted = [0u64; Eviction::ALL.len()];
        for index in 0..table.shard_count() {
            let mut shard = table.lock(index);
            if let Some(now) = now {
                shard.for_each_mut(|_, trace| {
                    if trace.flow != NO_FLOW && trace.check_stall(now, slas[trace.flow as usize]) {
                        stalled.push((trace.flow, trace.stall_stage));
                    }
                });
                let ttl_ms = self.ttl_ms;
                shard.evict(|trace| {
                    if now - trace.last_time_ms() <= ttl_ms {
                        return false;
                    }
                    let cause = if trace.is_done() { Eviction::TtlFinished } else { Eviction::TtlOpen };
                    evicted[cause as usize] += 1;
                    if trace.is_stalled() {
                        unstalled.push((trace.flow, trace.stall_stage));
                    }
                    true
                });
            }
            if shard.len() > high {
                // Least recently active first, down to 80 % of the shard's cap.
                let mut last: Vec<i64> = shard.iter().map(|(_, t)| t.last_time_ms()).collect();
                let excess = shard.len() - low;
                let (_, threshold, _) = last.select_nth_unstable(excess - 1);
                let threshold = *threshold;
                let mut budget = excess;
                shard.evict(|trace| {
                    if budget == 0 || trace.last_time_ms() > threshold {
                        return false;
                    }
                    budget -= 1;
                    evicted[Eviction::Capacity as usize] += 1;
                    if trace.is_stalled() {
                        unstalled.push((trace.flow, trace.stall_stage));
                    }
                    true
                });
            }
            traces += shard.len();
            bytes += shard.bytes();
        }
        for (flow, stage) in stalled {
            self.handles.stalled(flow, stage, &self.names);
        }
        for (flow, stage) in unstalled {
            self.handles.stalled_gauge(flow, stage, &self.names).dec();
        }
        for cause in Eviction::ALL {
            self.handles.eviction(cause).inc_by(evicted[cause as usize]);
        }
        self.handles.table_size(traces, bytes + self.names.len() * 64);
    }
}

fn previous_event<'n>(
    names: &'n [Arc<str>],
    step: &Step,
    key: &trace::TraceKey,
    table: &TraceTable,
) -> PreviousEvent<'n> {
    let name = |id: u16| names.get(id as usize).map_or("", |n| &**n);
    let base_ms = table.shard_for(key).get(key).map_or(0, |t| t.base_ms);
    PreviousEvent {
        event_type: name(step.event_type),
        topic: name(step.topic),
        partition: i32::from(step.partition),
        offset: step.offset(),
        producer: name(step.producer),
        time_ms: base_ms + i64::from(step.at_ms),
    }
}

/// The wall clock in ms since the epoch.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The roles of an event type in the configured flows.
fn roles_of(flows: &[Flow], event_type: &str) -> Roles {
    let mut roles = Roles::default();
    for (index, flow) in flows.iter().enumerate() {
        let index = index as u8;
        if flow.start.iter().any(|s| s == event_type) && roles.start.is_none() {
            roles.start = Some(index);
        }
        if let Some((_, outcome)) = flow.terminal.iter().find(|(t, _)| t == event_type) {
            roles.terminal.push((index, *outcome));
        }
    }
    roles
}

#[cfg(test)]
mod tests;
