//! The observe stage: a record, its envelope and its verdict in, metrics
//! recorded.
//!
//! In the data path this sits after decode and validate: the consumer loop
//! hands every record to [`Observer::observe`], which records throughput,
//! event types, producers, contract problems, event age, verdicts, invalid
//! reasons and PII kinds. It is plain synchronous code with no broker in
//! sight, so it is unit-tested directly.
//!
//! Metric handles are cached per topic (and per event type and producer
//! within a topic), so the valid path does no label hashing in the metrics
//! registry and no allocation. Every cache is bounded by
//! `metrics.max_label_values`; past that, records are counted under the
//! overflow label.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use crate::config::Config;
use crate::decode::{Envelope, EnvelopeProblem, Headers, PayloadFormat};
use crate::metrics::{
    truncate_label, BatchHandle, EventTypeLabels, Metrics, PiiLabels, ProblemLabels, ProducerLabels, TopicLabels,
    VerdictLabels, OVERFLOW, UNKNOWN,
};
use crate::validate::pii::PiiKind;
use crate::validate::{Checked, Reason, UnverifiedReason, Verdict};

/// Handle caches are looked up once per record and label; aHash is several
/// times faster than the default SipHash at these key sizes and keeps a
/// random per-process seed (label values come from the data).
type HashMap<K, V> = ahash::AHashMap<K, V>;

/// One consumed record, independent of the Kafka client.
pub struct Record<'a, H: Headers + ?Sized> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Kafka record timestamp (create or log-append time), milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// `None` for a tombstone.
    pub payload: Option<&'a [u8]>,
    pub headers: &'a H,
}

/// Cached metric handles of one topic.
struct TopicHandles {
    label: String,
    records: Counter,
    bytes: Counter,
    /// Added to the histogram once per batch ([`Observer::flush`]).
    age: BatchHandle,
    formats: [Option<Counter>; PayloadFormat::ALL.len()],
    problems: [Option<Counter>; EnvelopeProblem::ALL.len()],
    event_types: Bounded<Counter>,
    producers: Bounded<Counter>,
    verdicts: [Option<Counter>; 3],
    invalid: [Option<Counter>; Reason::ALL.len()],
    unverified: [Option<Counter>; UnverifiedReason::ALL.len()],
    pii: [Option<Counter>; PiiKind::ALL.len()],
}

pub struct Observer {
    metrics: Arc<Metrics>,
    max_label_values: usize,
    max_label_length: usize,
    topics: Bounded<TopicHandles>,
}

impl Observer {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            max_label_values: config.metrics.max_label_values,
            max_label_length: config.envelope.max_label_length,
            topics: Bounded::default(),
        }
    }

    /// Adds the batch's event ages to the histograms (the ingest loop
    /// calls this after each batch).
    pub fn flush(&mut self) {
        for handles in self.topics.values_mut() {
            handles.age.flush();
        }
    }

    /// Observes one record with its envelope and verdict. `now_us` is the
    /// wall clock in microseconds since the epoch, passed in so tests control
    /// time.
    pub fn observe<H: Headers + ?Sized>(
        &mut self,
        record: &Record<'_, H>,
        envelope: &Envelope<'_>,
        checked: &Checked,
        now_us: i64,
    ) {
        let metrics = &self.metrics;
        let handles = self.topics.get_or_create(record.topic, self.max_label_values, |key| {
            TopicHandles::new(metrics, admitted(key, |v| metrics.topic_label(v)))
        });

        handles.records.inc();
        handles.bytes.inc_by(record.payload.map_or(0, |p| p.len() as u64));
        handles.formats[envelope.format as usize]
            .get_or_insert_with(|| metrics.format_counter(&handles.label, envelope.format))
            .inc();
        for problem in envelope.problems.iter() {
            handles.problems[problem as usize]
                .get_or_insert_with(|| metrics.problem_counter(&handles.label, problem))
                .inc();
        }

        if envelope.format != PayloadFormat::Tombstone {
            let event_type =
                envelope.event_type.as_deref().map_or(UNKNOWN, |v| truncate_label(v, self.max_label_length));
            let limit = self.max_label_values;
            handles
                .event_types
                .get_or_create(event_type, limit, |key| {
                    let event_type = admitted(key, |v| metrics.event_type_label(v));
                    metrics.events.get_or_create_owned(&EventTypeLabels { topic: handles.label.clone(), event_type })
                })
                .inc();
            let producer = envelope.producer.as_deref().map_or(UNKNOWN, |v| truncate_label(v, self.max_label_length));
            handles
                .producers
                .get_or_create(producer, limit, |key| {
                    let producer = admitted(key, |v| metrics.producer_label(v));
                    metrics
                        .producer_events
                        .get_or_create_owned(&ProducerLabels { topic: handles.label.clone(), producer })
                })
                .inc();
        }

        // Event time: created_at, else the Kafka timestamp. Ages below zero
        // (producer clocks ahead of ours) are reported as zero.
        let event_time_us = envelope.created_at_us.or(record.timestamp_ms.map(|ms| ms.saturating_mul(1_000)));
        if let Some(event_time_us) = event_time_us {
            handles.age.observe(now_us.saturating_sub(event_time_us).max(0) as f64 / 1e6);
        }

        let topic = &handles.label;
        let (slot, verdict) = match checked.verdict {
            Verdict::Valid => (0, "valid"),
            Verdict::Invalid { .. } => (1, "invalid"),
            Verdict::Unverified(_) => (2, "unverified"),
            // Not observed: the record is read again once its schema is known.
            Verdict::Wait => return,
        };
        handles.verdicts[slot]
            .get_or_insert_with(|| {
                metrics.verdicts.get_or_create_owned(&VerdictLabels { topic: topic.clone(), verdict })
            })
            .inc();
        match checked.verdict {
            Verdict::Invalid { reason, .. } => {
                handles.invalid[reason as usize]
                    .get_or_insert_with(|| {
                        let labels = ProblemLabels { topic: topic.clone(), reason: reason.as_str() };
                        metrics.invalid_records.get_or_create_owned(&labels)
                    })
                    .inc();
            }
            Verdict::Unverified(reason) => {
                handles.unverified[reason as usize]
                    .get_or_insert_with(|| {
                        let labels = ProblemLabels { topic: topic.clone(), reason: reason.as_str() };
                        metrics.unverified_records.get_or_create_owned(&labels)
                    })
                    .inc();
            }
            _ => {}
        }
        for kind in checked.pii.iter() {
            handles.pii[kind as usize]
                .get_or_insert_with(|| {
                    metrics.pii_detections.get_or_create_owned(&PiiLabels { topic: topic.clone(), kind: kind.as_str() })
                })
                .inc();
        }
    }
}

impl TopicHandles {
    fn new(metrics: &Metrics, label: String) -> Self {
        let labels = TopicLabels { topic: label.clone() };
        TopicHandles {
            records: metrics.records.get_or_create_owned(&labels),
            bytes: metrics.record_bytes.get_or_create_owned(&labels),
            age: BatchHandle::new(metrics.event_age.get_or_create_owned(&labels)),
            label,
            formats: Default::default(),
            problems: Default::default(),
            event_types: Bounded::default(),
            producers: Bounded::default(),
            verdicts: Default::default(),
            invalid: Default::default(),
            unverified: Default::default(),
            pii: Default::default(),
        }
    }
}

/// A bounded cache of handles by label value: up to `limit` values, then
/// every further value shares the one kept under the `OVERFLOW` key. The
/// handles sit in a vector the map points into, so a hit is one lookup (a
/// map holding the handles needs two: returning a borrow from one branch
/// keeps the map borrowed in the other).
struct Bounded<V> {
    slots: HashMap<Box<str>, u32>,
    values: Vec<V>,
}

impl<V> Default for Bounded<V> {
    fn default() -> Self {
        Self { slots: HashMap::default(), values: Vec::new() }
    }
}

impl<V> Bounded<V> {
    /// The handle of `value`; `create` gets the key (the value itself, or
    /// `OVERFLOW` once `limit` keys are taken) when there is none yet.
    fn get_or_create(&mut self, value: &str, limit: usize, create: impl FnOnce(&str) -> V) -> &mut V {
        let slot = match self.slots.get(value) {
            Some(&slot) => slot,
            None => {
                let key = if self.slots.len() < limit { value } else { OVERFLOW };
                match self.slots.get(key) {
                    Some(&slot) => slot,
                    None => {
                        self.values.push(create(key));
                        let slot = (self.values.len() - 1) as u32;
                        self.slots.insert(key.into(), slot);
                        slot
                    }
                }
            }
        };
        &mut self.values[slot as usize]
    }

    fn values_mut(&mut self) -> std::slice::IterMut<'_, V> {
        self.values.iter_mut()
    }
}

/// The label value for a data-derived value: fixed markers pass as they
/// are, anything else goes through the label's limiter.
fn admitted(key: &str, admit: impl FnOnce(&str) -> String) -> String {
    if key == OVERFLOW || key == UNKNOWN {
        key.to_string()
    } else {
        admit(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_cache_creates_each_key_once_and_overflows_past_its_limit() {
        let mut cache = Bounded::default();
        let mut created = Vec::new();
        let mut get = |cache: &mut Bounded<String>, value: &str| {
            cache
                .get_or_create(value, 3, |key| {
                    created.push(key.to_string());
                    key.to_string()
                })
                .clone()
        };
        assert_eq!(get(&mut cache, "a"), "a");
        assert_eq!(get(&mut cache, "b"), "b");
        assert_eq!(get(&mut cache, "a"), "a");
        // Three keys fill it; every later one shares the overflow entry.
        assert_eq!(get(&mut cache, "c"), "c");
        assert_eq!(get(&mut cache, "d"), OVERFLOW);
        assert_eq!(get(&mut cache, "e"), OVERFLOW);
        assert_eq!(get(&mut cache, "b"), "b");
        *cache.get_or_create("a", 3, |_| unreachable!("cached")) += "!";
        assert_eq!(get(&mut cache, "a"), "a!");
        assert_eq!(created, ["a", "b", "c", OVERFLOW]);
        assert_eq!(cache.values_mut().count(), 4);
    }
    use crate::decode::EnvelopeExtractor;

    const NO_HEADERS: &[(&str, &[u8])] = &[];

    /// An observer plus the extractor the ingest loop would run before it.
    struct Harness {
        extractor: EnvelopeExtractor,
        observer: Observer,
    }

    impl Harness {
        fn handle(&mut self, record: &Record<'_, [(&str, &[u8])]>, now_us: i64) -> bool {
            let envelope = self.extractor.extract(record.payload, record.headers);
            self.observer.observe(
                record,
                &envelope,
                &Checked { verdict: Verdict::Valid, pii: Default::default() },
                now_us,
            );
            envelope.problems.is_empty()
        }
    }

    fn observer(toml: &str) -> (Harness, Arc<Metrics>) {
        let config = Config::from_toml(toml, &|_| None).unwrap();
        let metrics = Arc::new(Metrics::new(config.metrics.max_label_values));
        let extractor = EnvelopeExtractor::new(&config.envelope).unwrap();
        (Harness { extractor, observer: Observer::new(&config, metrics.clone()) }, metrics)
    }

    fn record<'a>(topic: &'a str, payload: &'a [u8]) -> Record<'a, [(&'a str, &'a [u8])]> {
        Record {
            topic,
            partition: 0,
            offset: 0,
            timestamp_ms: Some(1_000),
            payload: Some(payload),
            headers: NO_HEADERS,
        }
    }

    fn count(metrics: &Metrics, topic: &str) -> u64 {
        metrics.records.get_or_create(&TopicLabels { topic: topic.into() }).get()
    }

    #[test]
    fn valid_records_are_counted_by_topic_type_and_producer() {
        let (mut observer, metrics) = observer("");
        let payload = br#"{"event_type":"a.created","trace_id":"t","event_id":"e","created_at":"1970-01-01T00:00:01Z","schema_version":"1","producer":"agent-1"}"#;
        for _ in 0..3 {
            assert!(observer.handle(&record("orders", payload), 3_000_000));
        }
        assert_eq!(count(&metrics, "orders"), 3);
        let bytes = metrics.record_bytes.get_or_create(&TopicLabels { topic: "orders".into() }).get();
        assert_eq!(bytes, 3 * payload.len() as u64);
        let events = metrics
            .events
            .get_or_create(&EventTypeLabels { topic: "orders".into(), event_type: "a.created".into() })
            .get();
        assert_eq!(events, 3);
        let by_producer = metrics
            .producer_events
            .get_or_create(&ProducerLabels { topic: "orders".into(), producer: "agent-1".into() })
            .get();
        assert_eq!(by_producer, 3);
        let mut text = String::new();
        metrics.encode_prometheus(&mut text).unwrap();
        // Ages are added once per batch.
        assert!(text.contains("pipewarden_event_age_seconds_count{topic=\"orders\"} 0"), "{text}");
        observer.observer.flush();
        let mut text = String::new();
        metrics.encode_prometheus(&mut text).unwrap();
        // created_at is 1 s, now is 3 s: every age is 2 s.
        assert!(text.contains("pipewarden_event_age_seconds_sum{topic=\"orders\"} 6.0"), "{text}");
        assert!(text.contains("pipewarden_event_age_seconds_bucket{topic=\"orders\",le=\"1\"} 0"), "{text}");
        assert!(text.contains("pipewarden_event_age_seconds_bucket{topic=\"orders\",le=\"2.5\"} 3"), "{text}");
    }

    #[test]
    fn problems_are_counted_by_reason_and_age_falls_back_to_the_kafka_timestamp() {
        let (mut observer, metrics) = observer("");
        assert!(!observer.handle(&record("orders", b"{\"event_type\":"), 2_000_000));
        let invalid = metrics
            .envelope_problems
            .get_or_create(&ProblemLabels { topic: "orders".into(), reason: "invalid_json" })
            .get();
        assert_eq!(invalid, 1);
        let unknown =
            metrics.events.get_or_create(&EventTypeLabels { topic: "orders".into(), event_type: UNKNOWN.into() }).get();
        assert_eq!(unknown, 1);
        observer.observer.flush();
        let mut text = String::new();
        metrics.encode_prometheus(&mut text).unwrap();
        // Kafka timestamp 1 s, now 2 s.
        assert!(text.contains("pipewarden_event_age_seconds_sum{topic=\"orders\"} 1.0"), "{text}");
    }

    #[test]
    fn label_caps_hold_under_a_flood_of_distinct_values() {
        let (mut observer, metrics) = observer("[metrics]\nmax_label_values = 5\n");
        for i in 0..200 {
            let payload = format!(r#"{{"event_type":"type-{i}","producer":"p-{i}"}}"#);
            observer.handle(&record(&format!("topic-{i}"), payload.as_bytes()), 0);
        }
        let mut text = String::new();
        metrics.encode_prometheus(&mut text).unwrap();
        let series = |name: &str| text.lines().filter(|l| l.starts_with(name)).count();
        assert_eq!(series("pipewarden_records_total{"), 6, "5 topics and the overflow bucket");
        assert!(series("pipewarden_events_total{") <= 6 * 6, "{text}");
        assert!(series("pipewarden_producer_events_total{") <= 6 * 6, "{text}");
        assert_eq!(count(&metrics, OVERFLOW), 195);
        assert_eq!(count(&metrics, "topic-0"), 1);
        let total: u64 =
            (0..5).map(|i| count(&metrics, &format!("topic-{i}"))).sum::<u64>() + count(&metrics, OVERFLOW);
        assert_eq!(total, 200, "nothing is lost to the cap");
    }

    #[test]
    fn long_event_types_are_truncated() {
        let (mut observer, metrics) = observer("[envelope]\nmax_label_length = 4\n");
        observer.handle(&record("t", br#"{"event_type":"abcdefgh"}"#), 0);
        let events =
            metrics.events.get_or_create(&EventTypeLabels { topic: "t".into(), event_type: "abcd".into() }).get();
        assert_eq!(events, 1);
    }
}
