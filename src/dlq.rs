//! Dead-letter analytics: what fails into dead-letter topics, from where
//! and why.
//!
//! In: every consumed record (topic, Kafka timestamp, headers) with the
//! dead-letter fields the envelope walk captured, and every quarantine copy
//! the broker acknowledged. Out: `pipewarden_dlq_records_total{dlq_topic,
//! source_topic, reason}` and the newest record's time and age per
//! dead-letter topic.
//!
//! A watched topic is a dead-letter topic when it matches `dlq.topics`. A
//! record's source topic is the first of `dlq.source_headers` present
//! (pipewarden, Kafka Connect, Spring Kafka, Kafka Streams conventions),
//! else the payload field `dlq.source_field`, else the topic name without
//! its dead-letter affix (`orders.dlq` → `orders`). Its reason is the first
//! of `dlq.reason_headers` (a bounded code or an exception class name),
//! else `dlq.reason_field`, else `__unknown__`. Reasons are capped at
//! `dlq.max_reasons` distinct values, the first ones seen; later ones count
//! as `__other__`. See `docs/dlq.md`.
//!
//! pipewarden's own quarantine topics are not consumed (they are excluded
//! from the watched topics by default), so quarantine writes are counted
//! when their copy is acknowledged ([`DlqStage::quarantined`]), with the
//! source topic and the bounded reason code. A quarantine topic that is
//! watched anyway is skipped at ingest, so nothing is counted twice.
//!
//! In the data path this runs after observe on the ingest thread. A record
//! of a topic that is not a dead-letter topic costs one cached lookup.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::governance::is_quarantine_topic;
use crate::config::{Config, DlqConfig};
use crate::decode::{Envelope, Headers};
use crate::metrics::{truncate_label, DlqLabels, DlqTopicLabels, Metrics, OVERFLOW, UNKNOWN};
use crate::observe::Record;
use crate::quarantine::quarantine_topic_for;

/// Handle caches are looked up per dead letter; aHash as in the observe stage.
type HashMap<K, V> = ahash::AHashMap<K, V>;

/// Topics remembered (dead-letter or not) per `metrics.max_label_values`.
const TOPIC_CACHE_FACTOR: usize = 4;

/// Reason label value once `dlq.max_reasons` distinct reasons have been seen.
pub const OTHER: &str = "__other__";

/// Cached handles of one dead-letter topic.
struct DlqTopic {
    label: String,
    /// Source derived from the topic name, for records without a source header.
    name_source: Option<String>,
    /// source → reason → counter; each level bounded.
    sources: HashMap<Box<str>, HashMap<Box<str>, Counter>>,
    newest_ms: i64,
    age: Gauge<f64, AtomicU64>,
    timestamp: Gauge<f64, AtomicU64>,
}

pub struct DlqStage {
    config: DlqConfig,
    quarantine_template: String,
    metrics: Arc<Metrics>,
    /// Watched topics: `Some` for dead-letter topics, `None` for the others.
    topics: HashMap<Box<str>, Option<DlqTopic>>,
    /// Quarantine topics, keyed by their source topic.
    quarantines: HashMap<Box<str>, DlqTopic>,
    /// Reason label values admitted so far (at most `dlq.max_reasons`).
    reasons: ahash::AHashSet<Box<str>>,
    max_label_values: usize,
    max_label_length: usize,
}

/// The source a dead-letter topic's name implies: the name without a
/// `dlq`/`dlt` suffix or prefix and its separator.
pub fn source_from_name(topic: &str) -> Option<&str> {
    let is_marker = |word: &str| word.eq_ignore_ascii_case("dlq") || word.eq_ignore_ascii_case("dlt");
    if let Some(index) = topic.rfind(['.', '-', '_']) {
        if is_marker(&topic[index + 1..]) && index > 0 {
            return Some(&topic[..index]);
        }
    }
    if let Some(index) = topic.find(['.', '-', '_']) {
        if is_marker(&topic[..index]) && index + 1 < topic.len() {
            return Some(&topic[index + 1..]);
        }
    }
    None
}

impl DlqStage {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Self {
            config: config.dlq.clone(),
            quarantine_template: config.quarantine.topic_template.clone(),
            metrics,
            topics: HashMap::default(),
            quarantines: HashMap::default(),
            reasons: ahash::AHashSet::default(),
            max_label_values: config.metrics.max_label_values,
            max_label_length: config.envelope.max_label_length,
        }
    }

    fn new_topic(&self, name: &str) -> DlqTopic {
        let label = if name == OVERFLOW { OVERFLOW.to_string() } else { self.metrics.topic_label(name) };
        let labels = DlqTopicLabels { dlq_topic: label.clone() };
        DlqTopic {
            name_source: source_from_name(name).map(|s| truncate_label(s, self.max_label_length).to_string()),
            age: self.metrics.accounting.dlq_newest_age.get_or_create_owned(&labels),
            timestamp: self.metrics.accounting.dlq_newest_timestamp.get_or_create_owned(&labels),
            label,
            sources: HashMap::default(),
            newest_ms: i64::MIN,
        }
    }

    fn is_counted_at_ingest(&self, topic: &str) -> bool {
        self.config.is_dlq_topic(topic)
            && !(self.config.count_quarantine && is_quarantine_topic(&self.quarantine_template, topic))
    }

    /// Counts `record` when its topic is a dead-letter topic.
    pub fn observe<H: Headers + ?Sized>(&mut self, record: &Record<'_, H>, envelope: &Envelope<'_>, now_us: i64) {
        if !self.config.enabled {
            return;
        }
        let topic = record.topic;
        match self.topics.get(topic) {
            // The common case: a known topic that is not a dead-letter topic.
            Some(None) => return,
            Some(Some(_)) => return self.count_record(topic, record, envelope, now_us),
            None => {}
        }
        // Entries of other topics are a key and a `None`; the bound is a
        // multiple of the label cap because most watched topics are not
        // dead-letter topics. Past it, topics are classified without
        // caching and their dead letters share the overflow handles.
        if self.topics.len() >= self.max_label_values.saturating_mul(TOPIC_CACHE_FACTOR) {
            if !self.is_counted_at_ingest(topic) {
                return;
            }
            if !self.topics.contains_key(OVERFLOW) {
                let handles = self.new_topic(OVERFLOW);
                self.topics.insert(OVERFLOW.into(), Some(handles));
            }
            return self.count_record(OVERFLOW, record, envelope, now_us);
        }
        let handles = self.is_counted_at_ingest(topic).then(|| self.new_topic(topic));
        let counted = handles.is_some();
        self.topics.insert(topic.into(), handles);
        if counted {
            self.count_record(topic, record, envelope, now_us);
        }
    }

    fn count_record<H: Headers + ?Sized>(
        &mut self,
        key: &str,
        record: &Record<'_, H>,
        envelope: &Envelope<'_>,
        now_us: i64,
    ) {
        let max_length = self.max_label_length;
        let header = |names: &[String]| names.iter().find_map(|name| record.headers.last(name).and_then(utf8_text));
        let source = header(&self.config.source_headers)
            .or(envelope.accounting.dlq_source.as_deref())
            .map(|s| truncate_label(s, max_length));
        let reason = header(&self.config.reason_headers)
            .or(envelope.accounting.dlq_reason.as_deref())
            .map_or(UNKNOWN, |r| truncate_label(r, max_length));
        let reason = self.admit_reason(reason);
        let time_ms = record.timestamp_ms.unwrap_or(now_us / 1_000);
        let Some(Some(handles)) = self.topics.get_mut(key) else { return };
        // Moved out for the call (no copy) and put back.
        let name_source = handles.name_source.take();
        let source = source.or(name_source.as_deref()).unwrap_or(UNKNOWN);
        Self::counter(handles, &self.metrics, self.max_label_values, source, reason).inc();
        handles.name_source = name_source;
        Self::saw(handles, time_ms, now_us);
    }

    /// Counts one acknowledged quarantine copy of a record of `source_topic`.
    pub fn quarantined(&mut self, source_topic: &str, reason: &'static str, now_us: i64) {
        if !(self.config.enabled && self.config.count_quarantine) {
            return;
        }
        if !self.quarantines.contains_key(source_topic) {
            let key = if self.quarantines.len() < self.max_label_values { source_topic } else { OVERFLOW };
            if !self.quarantines.contains_key(key) {
                let name = if key == OVERFLOW {
                    OVERFLOW.to_string()
                } else {
                    quarantine_topic_for(&self.quarantine_template, source_topic)
                };
                let mut handles = self.new_topic(&name);
                handles.name_source = None;
                self.quarantines.insert(key.into(), handles);
            }
            if key == OVERFLOW {
                return self.count_quarantined(OVERFLOW, OVERFLOW, reason, now_us);
            }
        }
        self.count_quarantined(source_topic, source_topic, reason, now_us);
    }

    fn count_quarantined(&mut self, key: &str, source: &str, reason: &'static str, now_us: i64) {
        let Some(handles) = self.quarantines.get_mut(key) else { return };
        // Quarantine reasons are a fixed set of codes, not data: no reason cap.
        let counter = Self::counter(handles, &self.metrics, self.max_label_values, source, reason);
        counter.inc();
        // The copy keeps the original record's timestamp; its dead-letter
        // time is when the broker acknowledged it.
        Self::saw(handles, now_us / 1_000, now_us);
    }

    /// The reason label value: admitted while fewer than `dlq.max_reasons`
    /// distinct values were seen, else [`OTHER`].
    fn admit_reason<'r>(&mut self, reason: &'r str) -> &'r str {
        if reason == UNKNOWN || self.reasons.contains(reason) {
            return reason;
        }
        if self.reasons.len() < self.config.max_reasons {
            self.reasons.insert(reason.into());
            return reason;
        }
        OTHER
    }

    fn counter<'h>(
        handles: &'h mut DlqTopic,
        metrics: &Metrics,
        limit: usize,
        source: &str,
        reason: &str,
    ) -> &'h Counter {
        let source_key =
            if handles.sources.contains_key(source) || handles.sources.len() < limit { source } else { OVERFLOW };
        if !handles.sources.contains_key(source_key) {
            handles.sources.insert(source_key.into(), HashMap::default());
        }
        let reasons = handles.sources.get_mut(source_key).expect("inserted above");
        if !reasons.contains_key(reason) {
            let source_label = match source_key {
                OVERFLOW | UNKNOWN => source_key.to_string(),
                source => metrics.accounting.source_topic_limiter.admit(source, &metrics.label_overflow),
            };
            let labels =
                DlqLabels { dlq_topic: handles.label.clone(), source_topic: source_label, reason: reason.to_string() };
            reasons.insert(reason.into(), metrics.accounting.dlq_records.get_or_create_owned(&labels));
        }
        reasons.get(reason).expect("inserted above")
    }

    fn saw(handles: &mut DlqTopic, time_ms: i64, now_us: i64) {
        if time_ms > handles.newest_ms {
            handles.newest_ms = time_ms;
            handles.timestamp.set(time_ms as f64 / 1e3);
            handles.age.set(age_seconds(time_ms, now_us));
        }
    }

    /// Once a second: the age of the newest dead letter keeps growing while
    /// none arrives.
    pub fn tick(&self, now_us: i64) {
        let watched = self.topics.values().flatten();
        for handles in watched.chain(self.quarantines.values()) {
            if handles.newest_ms != i64::MIN {
                handles.age.set(age_seconds(handles.newest_ms, now_us));
            }
        }
    }
}

fn utf8_text(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value).ok().filter(|v| !v.is_empty())
}

/// Never negative: a producer clock ahead of ours reads as zero.
fn age_seconds(time_ms: i64, now_us: i64) -> f64 {
    (now_us.saturating_sub(time_ms.saturating_mul(1_000))).max(0) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::EnvelopeExtractor;

    struct Harness {
        extractor: EnvelopeExtractor,
        stage: DlqStage,
        metrics: Arc<Metrics>,
    }

    const NOW_US: i64 = 1_795_932_000_000_000;

    impl Harness {
        fn new(toml: &str) -> Self {
            let config = Config::from_toml(toml, &|_| None).unwrap();
            let metrics = Arc::new(Metrics::new(config.metrics.max_label_values));
            Self {
                extractor: EnvelopeExtractor::for_config(&config).unwrap(),
                stage: DlqStage::new(&config, metrics.clone()),
                metrics,
            }
        }

        fn handle(&mut self, topic: &str, payload: &[u8], headers: &[(&str, &[u8])], timestamp_ms: i64) {
            let envelope = self.extractor.extract(Some(payload), headers);
            let record = Record {
                topic,
                partition: 0,
                offset: 0,
                timestamp_ms: Some(timestamp_ms),
                payload: Some(payload),
                headers,
            };
            self.stage.observe(&record, &envelope, NOW_US);
        }

        fn count(&self, dlq_topic: &str, source_topic: &str, reason: &str) -> u64 {
            let labels =
                DlqLabels { dlq_topic: dlq_topic.into(), source_topic: source_topic.into(), reason: reason.into() };
            self.metrics.accounting.dlq_records.get_or_create(&labels).get()
        }

        fn age(&self, dlq_topic: &str) -> f64 {
            self.metrics.accounting.dlq_newest_age.get_or_create(&DlqTopicLabels { dlq_topic: dlq_topic.into() }).get()
        }

        fn series(&self) -> usize {
            let mut text = String::new();
            self.metrics.encode_prometheus(&mut text).unwrap();
            text.lines().filter(|l| l.starts_with("pipewarden_dlq_records_total{")).count()
        }
    }

    #[test]
    fn names_imply_their_source() {
        for (dlq, source) in [
            ("orders.dlq", Some("orders")),
            ("orders-dlq", Some("orders")),
            ("orders_DLQ", Some("orders")),
            ("orders.DLT", Some("orders")),
            ("orders-retry-dlt", Some("orders-retry")),
            ("dlq.orders", Some("orders")),
            ("DLQ-orders.v1", Some("orders.v1")),
            ("support.dlq", Some("support")),
            ("orders", None),
            ("dlq", None),
            (".dlq", None),
        ] {
            assert_eq!(source_from_name(dlq), source, "{dlq}");
        }
    }

    #[test]
    fn each_header_convention_names_source_and_reason() {
        let mut harness = Harness::new("");
        // (dead-letter topic, headers, expected source, expected reason)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a [u8])], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                "connect.dlq",
                &[
                    ("__connect.errors.topic", b"orders"),
                    ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
                ],
                "orders",
                "org.apache.kafka.connect.errors.DataException",
            ),
            (
                "payments.DLT",
                &[
                    ("kafka_dlt-original-topic", b"payments"),
                    (
                        "kafka_dlt-exception-fqcn",
                        b"org.springframework.kafka.support.serializer.DeserializationException",
                    ),
                ],
                "payments",
                "org.springframework.kafka.support.serializer.DeserializationException",
            ),
            (
                "dlq.clicks",
                &[
                    ("__streams.errors.topic", b"clicks-raw"),
                    ("__streams.errors.exception", b"org.apache.kafka.common.errors.SerializationException"),
                ],
                "clicks-raw",
                "org.apache.kafka.common.errors.SerializationException",
            ),
            (
                "shared-dlq",
                &[("pipewarden.origin.topic", b"orders"), ("pipewarden.reason", b"schema_mismatch")],
                "orders",
                "schema_mismatch",
            ),
            (
                "support.dlq",
                &[("dlq.original.topic", b"support.ticket.classified"), ("dlq.reason", b"llm_timeout")],
                "support.ticket.classified",
                "llm_timeout",
            ),
            // No headers: the source comes from the name, the reason is unknown.
            ("billing-dlq", &[], "billing", UNKNOWN),
        ];
        for (topic, headers, _, _) in cases {
            harness.handle(topic, b"{\"broken\":", headers, 1_000);
        }
        for (topic, _, source, reason) in cases {
            assert_eq!(harness.count(topic, source, reason), 1, "{topic}");
        }
        assert_eq!(harness.series(), cases.len());
        // pipewarden's headers win over Connect's when both are present.
        harness.handle(
            "both.dlq",
            b"",
            &[("__connect.errors.topic", b"a"), ("pipewarden.origin.topic", b"b"), ("pipewarden.reason", b"not_json")],
            1_000,
        );
        assert_eq!(harness.count("both.dlq", "b", "not_json"), 1);
    }

    #[test]
    fn payload_fields_back_up_the_headers_and_other_topics_are_ignored() {
        let mut harness = Harness::new("[dlq]\nreason_field = \"/error/type\"\nsource_field = \"/error/topic\"\n");
        let payload = br#"{"error":{"type":"Timeout","topic":"orders"},"event_type":"x"}"#;
        harness.handle("agents.dlq", payload, &[], 1_000);
        assert_eq!(harness.count("agents.dlq", "orders", "Timeout"), 1);
        // A header wins over the payload field.
        harness.handle("agents.dlq", payload, &[("dlq.reason", b"llm_timeout")], 1_000);
        assert_eq!(harness.count("agents.dlq", "orders", "llm_timeout"), 1);
        harness.handle("orders", payload, &[("dlq.reason", b"x")], 1_000);
        harness.handle("orders.quarantine", payload, &[("pipewarden.reason", b"x")], 1_000);
        assert_eq!(harness.series(), 2, "neither a plain topic nor a quarantine topic counts at ingest");
    }

    #[test]
    fn reasons_are_capped_with_an_other_bucket() {
        let mut harness = Harness::new("[dlq]\nmax_reasons = 3\n");
        for i in 0..10 {
            let reason = format!("com.example.Error{i}");
            harness.handle("orders.dlq", b"{}", &[("dlq.reason", reason.as_bytes())], 1_000);
        }
        harness.handle("orders.dlq", b"{}", &[("dlq.reason", b"com.example.Error1")], 1_000);
        assert_eq!(harness.count("orders.dlq", "orders", "com.example.Error1"), 2);
        assert_eq!(harness.count("orders.dlq", "orders", OTHER), 7);
        assert_eq!(harness.series(), 4);
    }

    #[test]
    fn caches_and_labels_stay_bounded() {
        let mut harness = Harness::new("[metrics]\nmax_label_values = 2\n");
        for i in 0..20 {
            harness.handle(&format!("plain-{i}"), b"{}", &[], 1_000);
        }
        assert_eq!(harness.stage.topics.len(), 2 * TOPIC_CACHE_FACTOR);
        for i in 0..5 {
            harness.handle(&format!("t{i}.dlq"), b"{}", &[("dlq.original.topic", format!("s{i}").as_bytes())], 1_000);
        }
        assert_eq!(harness.stage.topics.len(), 2 * TOPIC_CACHE_FACTOR + 1, "one overflow entry");
        assert_eq!(harness.count(OVERFLOW, "s0", UNKNOWN), 1);
        assert_eq!(harness.count(OVERFLOW, "s1", UNKNOWN), 1);
        assert_eq!(harness.count(OVERFLOW, OVERFLOW, UNKNOWN), 3, "sources past the cap share one series");
        assert_eq!(harness.series(), 3);
    }

    #[test]
    fn quarantine_writes_count_at_acknowledgement_and_ages_grow() {
        let mut harness = Harness::new("");
        harness.stage.quarantined("orders", "not_json", NOW_US - 5_000_000);
        harness.stage.quarantined("orders", "not_json", NOW_US - 2_000_000);
        harness.stage.quarantined("orders", "pii", NOW_US - 3_000_000);
        assert_eq!(harness.count("orders.quarantine", "orders", "not_json"), 2);
        assert_eq!(harness.count("orders.quarantine", "orders", "pii"), 1);
        harness.handle("orders.dlq", b"{}", &[], NOW_US / 1_000 - 30_000);
        harness.stage.tick(NOW_US);
        assert_eq!(harness.age("orders.quarantine"), 2.0);
        assert_eq!(harness.age("orders.dlq"), 30.0);
        harness.stage.tick(NOW_US + 10_000_000);
        assert_eq!(harness.age("orders.dlq"), 40.0);
        // A clock ahead of ours is age zero, never negative.
        harness.handle("late.dlq", b"{}", &[], NOW_US / 1_000 + 60_000);
        assert_eq!(harness.age("late.dlq"), 0.0);
    }
}
