//! Cached metric handles of the correlator, indexed by interned name ids so
//! the per-record path does no label hashing in the registry.
//!
//! Label values from the data (topic, producer, event type) pass through the
//! shared label limiters (`metrics.max_label_values`), like the observe
//! stage's. Stage edges are capped at `correlate.max_edges`; past the cap
//! every new edge is counted under `__overflow__` → `__overflow__`. Pairs of
//! topic and producer (uncorrelated events) are capped at
//! [`MAX_TOPIC_PRODUCER_PAIRS`].

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::names::{OVERFLOW_ID, UNKNOWN_ID};
use super::table::Eviction;
use crate::config::{Flow, Outcome};
use crate::metrics::{
    BatchHandle, EdgeLabels, EvictionLabels, FlowHistogram, FlowLabels, Metrics, ProducerOnlyLabels, StallLabels,
    TopicLabels, TopicProducerLabels, TraceExemplar, OVERFLOW, UNKNOWN,
};

/// Distinct (topic, producer) pairs with their own uncorrelated-events
/// series; with both labels capped this is only a backstop.
pub const MAX_TOPIC_PRODUCER_PAIRS: usize = 4_096;

type Map<K, V> = ahash::AHashMap<K, V>;

struct FlowHandles {
    /// Indexed by outcome: success, failure.
    duration: [FlowHistogram; 2],
    /// success, failure, timed_out.
    traces: [Counter; 3],
}

pub struct Handles {
    metrics: Arc<Metrics>,
    flows: Vec<FlowHandles>,
    flow_names: Vec<String>,
    topics: Vec<Option<String>>,
    event_types: Vec<Option<String>>,
    producers: Vec<Option<String>>,
    duplicates: Vec<Option<Counter>>,
    out_of_order: Vec<Option<Counter>>,
    /// Added to the histograms once per batch ([`Handles::flush`]).
    skew: Vec<Option<BatchHandle>>,
    uncorrelated: Map<(u16, u16), Counter>,
    edges: Map<(u16, u16), BatchHandle>,
    max_edges: usize,
    stalls: Map<(u8, u16), (Counter, Gauge)>,
    /// Indexed by `Eviction as usize`.
    evictions: [Counter; Eviction::ALL.len()],
}

/// The slot of `id` in a cache indexed by name id.
fn slot<T>(cache: &mut Vec<Option<T>>, id: u16) -> &mut Option<T> {
    let index = id as usize;
    if cache.len() <= index {
        cache.resize_with(index + 1, || None);
    }
    &mut cache[index]
}

fn marker(id: u16) -> Option<&'static str> {
    match id {
        UNKNOWN_ID => Some(UNKNOWN),
        OVERFLOW_ID => Some(OVERFLOW),
        _ => None,
    }
}

impl Handles {
    pub fn new(metrics: Arc<Metrics>, flows_config: &[Flow], max_edges: usize) -> Self {
        let family = &metrics.correlation;
        let flows = flows_config
            .iter()
            .map(|flow| {
                let labels = |outcome| FlowLabels { flow: flow.name.clone(), outcome };
                FlowHandles {
                    duration: ["success", "failure"].map(|o| family.flow_duration.get_or_create_owned(&labels(o))),
                    traces: ["success", "failure", "timed_out"]
                        .map(|o| family.flow_traces.get_or_create_owned(&labels(o))),
                }
            })
            .collect();
        let evictions =
            Eviction::ALL.map(|cause| family.evictions.get_or_create_owned(&EvictionLabels { cause: cause.as_str() }));
        Self {
            metrics,
            flows,
            flow_names: flows_config.iter().map(|f| f.name.clone()).collect(),
            topics: Vec::new(),
            event_types: Vec::new(),
            producers: Vec::new(),
            duplicates: Vec::new(),
            out_of_order: Vec::new(),
            skew: Vec::new(),
            uncorrelated: Map::default(),
            edges: Map::default(),
            max_edges,
            stalls: Map::default(),
            evictions,
        }
    }

    fn topic(&mut self, id: u16, names: &[Arc<str>]) -> String {
        let metrics = &self.metrics;
        slot(&mut self.topics, id)
            .get_or_insert_with(|| marker(id).map_or_else(|| metrics.topic_label(&names[id as usize]), String::from))
            .clone()
    }

    fn event_type(&mut self, id: u16, names: &[Arc<str>]) -> String {
        let metrics = &self.metrics;
        slot(&mut self.event_types, id)
            .get_or_insert_with(|| {
                marker(id).map_or_else(|| metrics.event_type_label(&names[id as usize]), String::from)
            })
            .clone()
    }

    fn producer(&mut self, id: u16, names: &[Arc<str>]) -> String {
        let metrics = &self.metrics;
        slot(&mut self.producers, id)
            .get_or_insert_with(|| marker(id).map_or_else(|| metrics.producer_label(&names[id as usize]), String::from))
            .clone()
    }

    pub fn duplicates(&mut self, topic: u16, names: &[Arc<str>]) -> &Counter {
        if slot(&mut self.duplicates, topic).is_none() {
            let labels = TopicLabels { topic: self.topic(topic, names) };
            *slot(&mut self.duplicates, topic) = Some(self.metrics.correlation.duplicates.get_or_create_owned(&labels));
        }
        self.duplicates[topic as usize].as_ref().expect("set above")
    }

    pub fn out_of_order(&mut self, topic: u16, names: &[Arc<str>]) -> &Counter {
        if slot(&mut self.out_of_order, topic).is_none() {
            let labels = TopicLabels { topic: self.topic(topic, names) };
            *slot(&mut self.out_of_order, topic) =
                Some(self.metrics.correlation.out_of_order.get_or_create_owned(&labels));
        }
        self.out_of_order[topic as usize].as_ref().expect("set above")
    }

    pub fn clock_skew(&mut self, producer: u16, names: &[Arc<str>]) -> &mut BatchHandle {
        if slot(&mut self.skew, producer).is_none() {
            let labels = ProducerOnlyLabels { producer: self.producer(producer, names) };
            let histogram = self.metrics.correlation.clock_skew.get_or_create_owned(&labels);
            *slot(&mut self.skew, producer) = Some(BatchHandle::new(histogram));
        }
        self.skew[producer as usize].as_mut().expect("set above")
    }

    /// Adds what the per-record histograms (clock skew, stage edges)
    /// observed since the last flush.
    pub fn flush(&mut self) {
        for handle in self.skew.iter_mut().flatten() {
            handle.flush();
        }
        for handle in self.edges.values_mut() {
            handle.flush();
        }
    }

    pub fn uncorrelated(&mut self, topic: u16, producer: u16, names: &[Arc<str>]) -> &Counter {
        let mut key = (topic, producer);
        if !self.uncorrelated.contains_key(&key) && self.uncorrelated.len() >= MAX_TOPIC_PRODUCER_PAIRS {
            key = (OVERFLOW_ID, OVERFLOW_ID);
        }
        if !self.uncorrelated.contains_key(&key) {
            let labels = TopicProducerLabels { topic: self.topic(key.0, names), producer: self.producer(key.1, names) };
            let counter = self.metrics.correlation.uncorrelated.get_or_create_owned(&labels);
            self.uncorrelated.insert(key, counter);
        }
        &self.uncorrelated[&key]
    }

    pub fn edge(&mut self, from: u16, to: u16, names: &[Arc<str>]) -> &mut BatchHandle {
        let mut key = (from, to);
        // The overflow edge may take the last place, so the cap holds exactly.
        if !self.edges.contains_key(&key) && self.edges.len() + 1 >= self.max_edges {
            key = (OVERFLOW_ID, OVERFLOW_ID);
        }
        if !self.edges.contains_key(&key) {
            let labels = EdgeLabels {
                from_event_type: self.event_type(key.0, names),
                to_event_type: self.event_type(key.1, names),
            };
            let histogram = self.metrics.correlation.stage_duration.get_or_create_owned(&labels);
            self.edges.insert(key, BatchHandle::new(histogram));
        }
        self.edges.get_mut(&key).expect("inserted above")
    }

    /// A finished trace: its end-to-end latency (with the trace ID as
    /// exemplar) and its outcome counter. Once per trace, not per record.
    pub fn completed(&mut self, flow: u8, outcome: Outcome, latency_ms: i64, trace_id: &str) {
        let Some(handles) = self.flows.get(flow as usize) else { return };
        let index = match outcome {
            Outcome::Success => 0,
            Outcome::Failure => 1,
        };
        let exemplar = TraceExemplar { trace_id: trace_id.to_string() };
        handles.duration[index].observe(latency_ms as f64 / 1e3, Some(exemplar), Some(SystemTime::now()));
        handles.traces[index].inc();
    }

    /// Observes a completed flow's cost (micro-USD) in `pipewarden_flow_cost_usd`;
    /// returns the flow's name.
    pub fn flow_cost(&self, flow: u8, micro_usd: u64) -> Option<&str> {
        let name = self.flow_names.get(flow as usize)?;
        self.metrics.record_flow_cost(name, micro_usd as f64 / 1e6);
        Some(name)
    }

    fn stall_handles(&mut self, flow: u8, stage: u16, names: &[Arc<str>]) -> &(Counter, Gauge) {
        if !self.stalls.contains_key(&(flow, stage)) {
            let flow_name = self.flow_names.get(flow as usize).cloned().unwrap_or_else(|| UNKNOWN.to_string());
            let labels = StallLabels { flow: flow_name, last_stage: self.event_type(stage, names) };
            let family = &self.metrics.correlation;
            let handles =
                (family.stalled_total.get_or_create_owned(&labels), family.stalled.get_or_create_owned(&labels));
            self.stalls.insert((flow, stage), handles);
        }
        &self.stalls[&(flow, stage)]
    }

    /// A trace just became stalled.
    pub fn stalled(&mut self, flow: u8, stage: u16, names: &[Arc<str>]) {
        let (counter, gauge) = self.stall_handles(flow, stage, names);
        counter.inc();
        gauge.inc();
        if let Some(handles) = self.flows.get(flow as usize) {
            handles.traces[2].inc();
        }
    }

    pub fn stalled_gauge(&mut self, flow: u8, stage: u16, names: &[Arc<str>]) -> &Gauge {
        &self.stall_handles(flow, stage, names).1
    }

    pub fn eviction(&self, cause: Eviction) -> &Counter {
        &self.evictions[cause as usize]
    }

    pub fn table_size(&self, traces: usize, bytes: usize) {
        self.metrics.correlation.open_traces.set(traces as i64);
        self.metrics.correlation.table_bytes.set(bytes as i64);
    }
}
