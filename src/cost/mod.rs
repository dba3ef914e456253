//! Cost: LLM token usage and its price, per topic and model.
//!
//! In: a record's topic and the usage and model the envelope walk found in
//! its payload (`decode::accounting`). Out: `pipewarden_llm_tokens_total`
//! (disjoint token types), `pipewarden_llm_cost_usd_total` for priced models,
//! `pipewarden_llm_unpriced_tokens_total` for the others (never priced at
//! zero), spend added to the topic's budgets, and the record's cost as an
//! [`EventCost`] for the correlator, which sums it per flow and reports it
//! with [`crate::metrics::Metrics::record_flow_cost`] and
//! [`Budgets::add_flow_cost`].
//!
//! In the data path this runs after observe, on the ingest thread. Handles
//! are cached per topic and model (bounded by `metrics.max_label_values`,
//! then `__overflow__`), and each model's price is looked up once, when its
//! handle is made: a record with usage costs two hash lookups and a few
//! integer multiplications, a record without usage one branch.

pub mod budget;
pub mod tokens;

use std::collections::HashMap as StdHashMap;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use crate::config::{Config, Price, PriceRule, UsageSource};
use crate::decode::Envelope;
use crate::metrics::{truncate_label, Metrics, ModelLabels, TokenLabels, UsdCounter, OVERFLOW, UNKNOWN};
pub use budget::Budgets;
pub use tokens::{cost_pico, normalise, Tokens, TOKEN_TYPES};

/// Handle caches are looked up per record; aHash as in the observe stage.
type HashMap<K, V> = ahash::AHashMap<K, V>;

/// The cost of one record's LLM usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCost {
    pub tokens: Tokens,
    /// `None` when the model has no price.
    pub pico_usd: Option<u64>,
}

impl EventCost {
    pub fn usd(&self) -> Option<f64> {
        self.pico_usd.map(|pico| pico as f64 / 1e12)
    }
}

/// Prices by model: configured rules in order (first match wins), then the
/// exact names of an imported LiteLLM file.
pub struct PriceTable {
    rules: Vec<PriceRule>,
    imported: StdHashMap<String, Price>,
}

impl PriceTable {
    pub fn new(rules: Vec<PriceRule>, imported: StdHashMap<String, Price>) -> Self {
        Self { rules, imported }
    }

    pub fn lookup(&self, model: &str) -> Option<Price> {
        self.rules
            .iter()
            .find(|rule| rule.pattern.is_match(model))
            .map(|rule| rule.price)
            .or_else(|| self.imported.get(model).copied())
    }

    pub fn len(&self) -> usize {
        self.rules.len() + self.imported.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Cached handles of one topic and model.
struct ModelHandles {
    tokens: [Counter; 5],
    pricing: Pricing,
}

/// A priced model has a cost series and no unpriced one, and the reverse:
/// an unpriced model never shows a cost of zero.
enum Pricing {
    Priced { price: Price, cost: UsdCounter },
    Unpriced(Counter),
}

struct TopicHandles {
    label: String,
    models: HashMap<Box<str>, ModelHandles>,
    /// Topic budgets covering this topic.
    budgets: Vec<usize>,
}

pub struct CostStage {
    metrics: Arc<Metrics>,
    shapes: Vec<UsageSource>,
    prices: PriceTable,
    budgets: Arc<Budgets>,
    topics: HashMap<Box<str>, TopicHandles>,
    max_label_values: usize,
    max_label_length: usize,
    enabled: bool,
}

impl CostStage {
    pub fn new(config: &Config, metrics: Arc<Metrics>, budgets: Arc<Budgets>) -> Self {
        Self {
            shapes: config.cost.usage.clone(),
            prices: PriceTable::new(config.cost.prices.clone(), config.cost.imported_prices.clone()),
            budgets,
            metrics,
            topics: HashMap::default(),
            max_label_values: config.metrics.max_label_values,
            max_label_length: config.envelope.max_label_length,
            enabled: config.cost.enabled,
        }
    }

    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }

    /// Accounts one record; `None` when it reports no LLM usage.
    pub fn observe(&mut self, topic: &str, envelope: &Envelope<'_>, now_us: i64) -> Option<EventCost> {
        if !self.enabled {
            return None;
        }
        let raw = envelope.accounting.usage?;
        let shape = self.shapes.get(usize::from(raw.shape))?;
        let tokens = normalise(&raw, shape);
        let model = envelope.accounting.model.as_deref().map_or(UNKNOWN, |m| truncate_label(m, self.max_label_length));

        let (metrics, prices, limit) = (&self.metrics, &self.prices, self.max_label_values);
        let topic_key = if self.topics.contains_key(topic) || self.topics.len() < limit { topic } else { OVERFLOW };
        if !self.topics.contains_key(topic_key) {
            let label = if topic_key == OVERFLOW { OVERFLOW.to_string() } else { metrics.topic_label(topic_key) };
            let budgets = self.budgets.for_topic(topic_key);
            self.topics.insert(topic_key.into(), TopicHandles { label, models: HashMap::default(), budgets });
        }
        let handles = self.topics.get_mut(topic_key).expect("inserted above");
        let model_key =
            if handles.models.contains_key(model) || handles.models.len() < limit { model } else { OVERFLOW };
        if !handles.models.contains_key(model_key) {
            let model_label = match model_key {
                OVERFLOW | UNKNOWN => model_key.to_string(),
                model => metrics.accounting.model_label(model, &metrics.label_overflow),
            };
            // An overflowed or unknown model is never priced: its name is not known.
            let price = if model_label == OVERFLOW || model_label == UNKNOWN { None } else { prices.lookup(model_key) };
            let labels = ModelLabels { topic: handles.label.clone(), model: model_label };
            let token_counter = |r#type: &'static str| {
                metrics.accounting.llm_tokens.get_or_create_owned(&TokenLabels {
                    topic: labels.topic.clone(),
                    model: labels.model.clone(),
                    r#type,
                })
            };
            let pricing = match price {
                Some(price) => {
                    Pricing::Priced { price, cost: metrics.accounting.llm_cost.get_or_create_owned(&labels) }
                }
                None => Pricing::Unpriced(metrics.accounting.llm_unpriced_tokens.get_or_create_owned(&labels)),
            };
            let model_handles = ModelHandles { tokens: TOKEN_TYPES.map(token_counter), pricing };
            handles.models.insert(model_key.into(), model_handles);
        }
        let model_handles = handles.models.get(model_key).expect("inserted above");

        for (counter, count) in model_handles.tokens.iter().zip(tokens.as_array()) {
            if count > 0 {
                counter.inc_by(count);
            }
        }
        let pico_usd = match &model_handles.pricing {
            Pricing::Priced { price, cost } => {
                let pico = cost_pico(&tokens, price);
                cost.inner().add_pico(pico);
                for &budget in &handles.budgets {
                    self.budgets.add(budget, pico, now_us, topic);
                }
                Some(pico)
            }
            Pricing::Unpriced(unpriced) => {
                unpriced.inc_by(tokens.total());
                None
            }
        };
        Some(EventCost { tokens, pico_usd })
    }

    /// Once a second: lets budget windows roll over without new spend.
    pub fn tick(&self, now_us: i64) {
        self.budgets.tick(now_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::EnvelopeExtractor;
    use crate::metrics::BudgetLabels;

    const NO_HEADERS: &[(&str, &[u8])] = &[];

    struct Harness {
        extractor: EnvelopeExtractor,
        stage: CostStage,
        metrics: Arc<Metrics>,
    }

    impl Harness {
        fn new(toml: &str) -> Self {
            let config = Config::from_toml(toml, &|_| None).unwrap();
            let metrics = Arc::new(Metrics::new(config.metrics.max_label_values));
            let budgets = Arc::new(Budgets::without_alerts(&config.cost.budgets, &metrics));
            Self {
                extractor: EnvelopeExtractor::for_config(&config).unwrap(),
                stage: CostStage::new(&config, metrics.clone(), budgets),
                metrics,
            }
        }

        fn handle(&mut self, topic: &str, payload: &str) -> Option<EventCost> {
            let envelope = self.extractor.extract(Some(payload.as_bytes()), NO_HEADERS);
            self.stage.observe(topic, &envelope, 1_795_932_000_000_000)
        }

        fn tokens(&self, topic: &str, model: &str, r#type: &'static str) -> u64 {
            let labels = TokenLabels { topic: topic.into(), model: model.into(), r#type };
            self.metrics.accounting.llm_tokens.get_or_create(&labels).get()
        }

        fn cost(&self, topic: &str, model: &str) -> f64 {
            self.metrics
                .accounting
                .llm_cost
                .get_or_create(&ModelLabels { topic: topic.into(), model: model.into() })
                .get()
        }

        fn unpriced(&self, topic: &str, model: &str) -> u64 {
            let labels = ModelLabels { topic: topic.into(), model: model.into() };
            self.metrics.accounting.llm_unpriced_tokens.get_or_create(&labels).get()
        }
    }

    const PRICES: &str = r#"
        [[cost.prices]]
        model = "gpt-4o-mini*"
        input = 0.15
        cached_input = 0.075
        output = 0.6
        [[cost.prices]]
        model = "claude-sonnet-4-5*"
        input = 3
        cached_input = 0.3
        cache_write = 3.75
        output = 15
        [[cost.prices]]
        model = "o3"
        input = 2
        cached_input = 0.5
        output = 8
        [[budgets]]
        name = "agents"
        topics = "agents\\..*"
        usd_per_hour = 0.01
    "#;

    #[test]
    fn each_provider_style_is_priced_exactly() {
        let mut harness = Harness::new(PRICES);
        // OpenAI chat: 1200 prompt (1024 cached), 80 completion.
        let openai = r#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":1200,"completion_tokens":80,
            "prompt_tokens_details":{"cached_tokens":1024}}}"#;
        // Anthropic: 25 uncached input, 4000 read, 1200 written, 310 output.
        let anthropic = r#"{"model":"claude-sonnet-4-5","usage":{"input_tokens":25,"output_tokens":310,
            "cache_read_input_tokens":4000,"cache_creation_input_tokens":1200}}"#;
        // OTel GenAI, flat keys: 1000 input of which 600 cached, 700 output of which 640 reasoning.
        let otel = r#"{"gen_ai.response.model":"o3","gen_ai.usage.input_tokens":1000,"gen_ai.usage.output_tokens":700,
            "gen_ai.usage.cache_read.input_tokens":600,"gen_ai.usage.reasoning.output_tokens":640}"#;
        for _ in 0..3 {
            let cost = harness.handle("agents.a", openai).unwrap();
            // 176×0.15 + 1024×0.075 + 80×0.6 = 26.4 + 76.8 + 48 = 151.2 USD per million
            assert_eq!(cost.pico_usd, Some(151_200_000));
            assert_eq!(cost.tokens.total(), 1280);
            // 25×3 + 4000×0.3 + 1200×3.75 + 310×15 = 75 + 1200 + 4500 + 4650 = 10425
            assert_eq!(harness.handle("agents.a", anthropic).unwrap().pico_usd, Some(10_425_000_000));
            // 400×2 + 600×0.5 + 60×8 + 640×8 (reasoning at the output price) = 800 + 300 + 480 + 5120 = 6700
            assert_eq!(harness.handle("agents.b", otel).unwrap().pico_usd, Some(6_700_000_000));
        }
        assert_eq!(harness.tokens("agents.a", "gpt-4o-mini", "input"), 3 * 176);
        assert_eq!(harness.tokens("agents.a", "gpt-4o-mini", "cached_input"), 3 * 1024);
        assert_eq!(harness.tokens("agents.a", "gpt-4o-mini", "output"), 3 * 80);
        assert_eq!(harness.tokens("agents.a", "claude-sonnet-4-5", "cache_write"), 3 * 1200);
        assert_eq!(harness.tokens("agents.b", "o3", "reasoning"), 3 * 640);
        assert_eq!(harness.tokens("agents.b", "o3", "output"), 3 * 60);
        assert_eq!(harness.cost("agents.a", "gpt-4o-mini"), 0.0004536);
        assert_eq!(harness.cost("agents.a", "claude-sonnet-4-5"), 0.031275);
        assert_eq!(harness.cost("agents.b", "o3"), 0.0201);
        let mut text = String::new();
        harness.metrics.encode_prometheus(&mut text).unwrap();
        assert!(!text.contains("pipewarden_llm_unpriced_tokens_total{"), "priced models have no unpriced series");
        // The budget of 0.01 USD per hour covers both topics: 3 × 0.0172762 spent.
        let used = harness.metrics.accounting.budget_used.get_or_create(&BudgetLabels { budget: "agents".into() });
        assert_eq!(used.get(), 5.18286);
    }

    #[test]
    fn unknown_models_are_unpriced_never_free() {
        let mut harness = Harness::new(PRICES);
        let mystery = r#"{"model":"mystery-1","usage":{"prompt_tokens":100,"completion_tokens":20}}"#;
        let nameless = r#"{"usage":{"input_tokens":5,"output_tokens":6}}"#;
        assert_eq!(harness.handle("t", mystery).unwrap().pico_usd, None);
        assert_eq!(harness.handle("t", nameless).unwrap().pico_usd, None);
        assert_eq!(harness.unpriced("t", "mystery-1"), 120);
        assert_eq!(harness.unpriced("t", UNKNOWN), 11);
        assert_eq!(harness.tokens("t", "mystery-1", "input"), 100);
        let mut text = String::new();
        harness.metrics.encode_prometheus(&mut text).unwrap();
        assert!(!text.contains("pipewarden_llm_cost_usd_total{"), "no cost series for unpriced models: {text}");
        assert!(harness.handle("t", r#"{"event_type":"no usage here"}"#).is_none());
    }

    #[test]
    fn configured_prices_override_imported_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prices.json");
        std::fs::write(
            &file,
            r#"{"gpt-4o-mini":{"input_cost_per_token":1e-06,"output_cost_per_token":1e-06},
                "gpt-4.1":{"input_cost_per_token":2e-06,"output_cost_per_token":8e-06,"cache_read_input_token_cost":5e-07}}"#,
        )
        .unwrap();
        let toml = format!("[cost]\nlitellm_prices = {:?}\n{PRICES}", file.display().to_string());
        let mut harness = Harness::new(&toml);
        let mini = r#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":1000000,"completion_tokens":0}}"#;
        assert_eq!(harness.handle("t", mini).unwrap().usd(), Some(0.15), "config wins over the file");
        let imported = r#"{"model":"gpt-4.1","usage":{"prompt_tokens":1000,"completion_tokens":100,
            "prompt_tokens_details":{"cached_tokens":400}}}"#;
        // 600×2 + 400×0.5 + 100×8 = 1200 + 200 + 800 = 2200 USD per million
        assert_eq!(harness.handle("t", imported).unwrap().pico_usd, Some(2_200_000_000));
    }

    #[test]
    fn completed_flows_are_observed_in_the_cost_histogram() {
        let harness = Harness::new("");
        harness.metrics.record_flow_cost("support", 0.004);
        harness.metrics.record_flow_cost("support", 0.02);
        harness.metrics.record_flow_cost("doc", 2.0);
        let mut text = String::new();
        harness.metrics.encode_prometheus(&mut text).unwrap();
        assert!(text.contains("pipewarden_flow_cost_usd_count{flow=\"support\"} 2\n"), "{text}");
        assert!(text.contains("pipewarden_flow_cost_usd_sum{flow=\"support\"} 0.024\n"), "{text}");
        assert!(text.contains("pipewarden_flow_cost_usd_bucket{flow=\"support\",le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("pipewarden_flow_cost_usd_bucket{flow=\"doc\",le=\"1\"} 0\n"), "{text}");
    }

    #[test]
    fn model_labels_are_bounded() {
        let mut harness = Harness::new("[metrics]\nmax_label_values = 3\n");
        for i in 0..50 {
            harness.handle("t", &format!(r#"{{"model":"m-{i}","usage":{{"prompt_tokens":1,"completion_tokens":1}}}}"#));
        }
        let mut text = String::new();
        harness.metrics.encode_prometheus(&mut text).unwrap();
        let series = text.lines().filter(|l| l.starts_with("pipewarden_llm_unpriced_tokens_total{")).count();
        assert_eq!(series, 4, "3 models and the overflow bucket: {text}");
        assert_eq!(harness.unpriced("t", OVERFLOW), 47 * 2);
    }
}
