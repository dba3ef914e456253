//! Which topics pipewarden watches.
//!
//! librdkafka's own regex subscription cannot express exclusions, so
//! pipewarden lists the cluster's topics itself (every
//! `topics.refresh_interval_ms`), keeps those that match an include pattern
//! and no exclude pattern, and subscribes to that exact list. A topic created
//! later is picked up at the next refresh, without a restart.

use crate::config::TopicsConfig;

#[derive(Debug, Clone)]
pub struct TopicFilter {
    config: TopicsConfig,
}

impl TopicFilter {
    pub fn new(config: TopicsConfig) -> Self {
        Self { config }
    }

    /// Whether `topic` is watched.
    pub fn watches(&self, topic: &str) -> bool {
        if self.config.exclude_internal && self.is_internal(topic) {
            return false;
        }
        self.config.include.iter().any(|regex| regex.is_match(topic))
            && !self.config.exclude.iter().any(|regex| regex.is_match(topic))
    }

    /// Kafka's own topics (`__consumer_offsets`, `__transaction_state`, ...),
    /// pipewarden's own topics and quarantine topics: watching these would
    /// count pipewarden's output as pipeline traffic.
    pub fn is_internal(&self, topic: &str) -> bool {
        topic.starts_with("__")
            || topic.starts_with(&self.config.internal_prefix)
            || crate::config::governance::is_quarantine_topic(&self.config.quarantine_template, topic)
    }

    /// The watched subset of `topics`, sorted so that equal sets compare equal.
    pub fn select<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut selected: Vec<String> = topics.into_iter().filter(|t| self.watches(t)).map(str::to_string).collect();
        selected.sort_unstable();
        selected.dedup();
        selected
    }
}

/// Whether a topic name describes who talks to whom (`agent2_to_agent3`,
/// `classifier-to-router`, `a2b`) rather than what happened: such topics
/// couple producers to consumers and break when the pipeline changes.
pub fn names_agents(topic: &str) -> bool {
    let lower = topic.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    if words.windows(3).any(|w| w[1] == "to" || w[1] == "2") && words.len() >= 3 {
        return true;
    }
    // agent2agent3, a2b: letters, an optional number, "2", letters.
    words.iter().any(|word| {
        let bytes = word.as_bytes();
        bytes.iter().enumerate().any(|(i, &b)| {
            b == b'2'
                && i > 0
                && i + 1 < bytes.len()
                && bytes[i + 1].is_ascii_alphabetic()
                && bytes[..i].iter().any(u8::is_ascii_alphabetic)
                && word.contains("agent")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn filter(toml: &str) -> TopicFilter {
        TopicFilter::new(Config::from_toml(toml, &|_| None).unwrap().topics)
    }

    #[test]
    fn internal_quarantine_and_own_topics_are_excluded_by_default() {
        let f = filter("");
        assert!(f.watches("support.ticket.created"));
        assert!(!f.watches("__consumer_offsets"));
        assert!(!f.watches("__transaction_state"));
        assert!(!f.watches("support.ticket.created.quarantine"));
        assert!(!f.watches("pipewarden.observations"));
    }

    #[test]
    fn agent_to_agent_names_are_flagged_and_event_names_are_not() {
        for name in
            ["agent2_to_agent3", "classifier-to-router", "planner.to.executor", "agent1-2-agent2", "agent2agent3"]
        {
            assert!(names_agents(name), "{name}");
        }
        for name in ["support.ticket.created", "orders", "doc.entities.resolved", "v2.orders", "agent-events", "to-do"]
        {
            assert!(!names_agents(name), "{name}");
        }
    }

    #[test]
    fn internal_topics_can_be_included_on_request() {
        let f = filter("[topics]\nexclude_internal = false\n");
        assert!(f.watches("__consumer_offsets"));
    }

    #[test]
    fn include_and_exclude_patterns_match_whole_names() {
        let f = filter("[topics]\ninclude = [\"support\\\\..*\", \"doc\\\\..*\"]\nexclude = [\".*\\\\.dlq\"]\n");
        assert!(f.watches("support.ticket.created"));
        assert!(f.watches("doc.extracted"));
        assert!(!f.watches("support.dlq"));
        assert!(!f.watches("billing.invoice"));
        // Anchored: a pattern does not match a substring.
        assert!(!f.watches("x.support.ticket"));
        assert_eq!(
            f.select(["doc.b", "support.a", "other", "doc.b", "support.dlq"]),
            vec!["doc.b".to_string(), "support.a".to_string()]
        );
    }

    #[test]
    fn custom_suffix_and_prefix_are_honoured() {
        let f = filter("[topics]\ninternal_prefix = \"_pw\"\n[quarantine]\ntopic_template = \"poison-{topic}-v1\"\n");
        assert!(!f.watches("poison-orders-v1"));
        assert!(!f.watches("_pw-repartition"));
        assert!(f.watches("orders.quarantine"));
        assert!(f.watches("poison--v1"), "an empty source topic name is not a quarantine name");
        let shared = filter("[quarantine]\ntopic_template = \"all-poison\"\n");
        assert!(!shared.watches("all-poison"));
        assert!(shared.watches("orders.quarantine"));
    }
}
