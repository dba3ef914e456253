//! Topology discovered from traces: which producer emits which event type
//! on which topic, and which producer reacts to which topic's events.
//!
//! Two kinds of links, both learned passively:
//! - **emits**: a record of event type E on topic T carries producer P;
//! - **consumes**: within one trace, an event by producer Q follows an event
//!   on topic T, so Q (most likely) consumed T. This is inferred from the
//!   order of events in a trace, not read from consumer groups, and says so
//!   in its name in the JSON.
//!
//! The writer keeps the set of links it has already published and takes the
//! shared lock only for a new link (rare once the pipeline has been seen).
//! Links are capped at `correlate.max_topology_links`; the number dropped
//! past the cap is reported. Out: `/api/v1/topology` as JSON, or Mermaid.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::names::NameList;

/// (producer, event type, topic)
pub type EmitLink = (u16, u16, u16);
/// (topic, event type on it, consuming producer)
pub type ConsumeLink = (u16, u16, u16);

#[derive(Debug, Default)]
pub struct Links {
    emits: BTreeSet<EmitLink>,
    consumes: BTreeSet<ConsumeLink>,
    dropped: u64,
}

/// The links readable by the API.
#[derive(Debug, Default)]
pub struct SharedTopology {
    links: Mutex<Links>,
}

/// The writer's side: remembers what it published.
#[derive(Debug)]
pub struct TopologyWriter {
    shared: Arc<SharedTopology>,
    emits: ahash::AHashSet<EmitLink>,
    consumes: ahash::AHashSet<ConsumeLink>,
    max_links: usize,
}

impl TopologyWriter {
    pub fn new(max_links: usize) -> Self {
        Self {
            shared: Arc::default(),
            emits: ahash::AHashSet::default(),
            consumes: ahash::AHashSet::default(),
            max_links,
        }
    }

    pub fn shared(&self) -> Arc<SharedTopology> {
        self.shared.clone()
    }

    fn full(&self) -> bool {
        self.emits.len() + self.consumes.len() >= self.max_links
    }

    pub fn emits(&mut self, link: EmitLink) {
        if self.emits.contains(&link) {
            return;
        }
        let mut shared = self.shared.links.lock().unwrap_or_else(|p| p.into_inner());
        if self.full() {
            shared.dropped += 1;
            return;
        }
        self.emits.insert(link);
        shared.emits.insert(link);
    }

    pub fn consumes(&mut self, link: ConsumeLink) {
        if self.consumes.contains(&link) {
            return;
        }
        let mut shared = self.shared.links.lock().unwrap_or_else(|p| p.into_inner());
        if self.full() {
            shared.dropped += 1;
            return;
        }
        self.consumes.insert(link);
        shared.consumes.insert(link);
    }
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Topology {
    pub producers: Vec<String>,
    pub topics: Vec<String>,
    pub event_types: Vec<String>,
    pub emits: Vec<Emit>,
    pub consumes: Vec<Consume>,
    /// Links not recorded because `correlate.max_topology_links` was reached.
    pub links_dropped: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Emit {
    pub producer: String,
    pub event_type: String,
    pub topic: String,
}

/// Inferred from trace order: `producer` emitted the next event of a trace
/// after an event of `event_type` on `topic`.
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Consume {
    pub topic: String,
    pub event_type: String,
    pub producer: String,
}

impl SharedTopology {
    /// The graph with names resolved, sorted for stable output.
    pub fn snapshot(&self, names: &NameList) -> Topology {
        let names = names.snapshot();
        let name = |id: u16| names.get(id as usize).map_or_else(|| "__unknown__".to_string(), |n| n.to_string());
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let mut emits: Vec<Emit> = links
            .emits
            .iter()
            .map(|(p, e, t)| Emit { producer: name(*p), event_type: name(*e), topic: name(*t) })
            .collect();
        let mut consumes: Vec<Consume> = links
            .consumes
            .iter()
            .map(|(t, e, p)| Consume { topic: name(*t), event_type: name(*e), producer: name(*p) })
            .collect();
        emits.sort();
        consumes.sort();
        let sorted = |items: &mut dyn Iterator<Item = String>| {
            let set: BTreeSet<String> = items.collect();
            set.into_iter().collect::<Vec<_>>()
        };
        let producers =
            sorted(&mut emits.iter().map(|e| e.producer.clone()).chain(consumes.iter().map(|c| c.producer.clone())));
        let topics = sorted(&mut emits.iter().map(|e| e.topic.clone()).chain(consumes.iter().map(|c| c.topic.clone())));
        let event_types = sorted(&mut emits.iter().map(|e| e.event_type.clone()));
        Topology { producers, topics, event_types, emits, consumes, links_dropped: links.dropped }
    }
}

impl Topology {
    /// A Mermaid flowchart: producers as boxes, topics as cylinders, edges
    /// labelled with event types.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let producer_id = |name: &str| format!("p{}", self.producers.iter().position(|p| p == name).unwrap_or(0));
        let topic_id = |name: &str| format!("t{}", self.topics.iter().position(|t| t == name).unwrap_or(0));
        for (index, producer) in self.producers.iter().enumerate() {
            let _ = writeln!(out, "  p{index}[\"{}\"]", escape(producer));
        }
        for (index, topic) in self.topics.iter().enumerate() {
            let _ = writeln!(out, "  t{index}[(\"{}\")]", escape(topic));
        }
        for emit in &self.emits {
            let _ = writeln!(
                out,
                "  {} -->|\"{}\"| {}",
                producer_id(&emit.producer),
                escape(&emit.event_type),
                topic_id(&emit.topic)
            );
        }
        for consume in &self.consumes {
            let _ = writeln!(out, "  {} -.-> {}", topic_id(&consume.topic), producer_id(&consume.producer));
        }
        out
    }
}

/// Mermaid labels are quoted; quotes inside become `#quot;`.
fn escape(text: &str) -> String {
    text.replace('"', "#quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::names::Interner;

    #[test]
    fn links_are_deduplicated_capped_and_rendered() {
        let mut interner = Interner::new(100);
        let mut id = |name: &str| interner.id(Some(name)).0;
        let (intake, classifier) = (id("intake-agent"), id("classifier-\"x\""));
        let (created, classified) = (id("ticket.created"), id("ticket.classified"));
        let mut writer = TopologyWriter::new(3);
        writer.emits((intake, created, created));
        writer.emits((intake, created, created));
        writer.consumes((created, created, classifier));
        writer.emits((classifier, classified, classified));
        writer.emits((classifier, created, classified));
        let topology = writer.shared().snapshot(&interner.list());
        assert_eq!(topology.links_dropped, 1);
        assert_eq!(topology.emits.len(), 2);
        assert_eq!(
            topology.consumes,
            vec![Consume {
                topic: "ticket.created".into(),
                event_type: "ticket.created".into(),
                producer: "classifier-\"x\"".into()
            }]
        );
        assert_eq!(topology.producers, vec!["classifier-\"x\"", "intake-agent"]);
        assert_eq!(
            topology.mermaid(),
            "flowchart LR\n  p0[\"classifier-#quot;x#quot;\"]\n  p1[\"intake-agent\"]\n  t0[(\"ticket.classified\")]\n  \
             t1[(\"ticket.created\")]\n  p0 -->|\"ticket.classified\"| t0\n  p1 -->|\"ticket.created\"| t1\n  \
             t1 -.-> p0\n"
        );
    }
}
