//! Budgets: USD per clock hour per topic pattern or per flow, a gauge of
//! use, and one alert event per crossing.
//!
//! In: the cost of each priced record (from the cost stage, for topic
//! budgets) and of each completed flow (from the correlator, for flow
//! budgets), with the wall-clock time. Out: `pipewarden_budget_used_ratio`
//! per budget, and, the first time a budget's spend reaches its cap within
//! a window, one governance event (JSON, in the event contract) produced to
//! `cost.alerts_topic` so a recovery agent can react.
//!
//! The window is the current UTC clock hour (`[HH:00, HH+1:00)`), not a
//! rolling hour: it resets at the top of every hour, the gauge reads
//! "share of this hour's budget spent so far", and "once per crossing per
//! window" has an unambiguous meaning. Each budget's window sits behind its
//! own mutex, held for a few arithmetic operations.
//!
//! The alert producer follows the quarantine producer (idempotent,
//! `acks=all`); its delivery callback counts `sent` or `failed`. A send
//! never blocks the ingest thread: librdkafka queues it.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use prometheus_client::metrics::gauge::Gauge;
use rand::Rng;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::config::{BudgetConfig, BudgetScope, Config};
use crate::metrics::{BudgetAlertLabels, BudgetLabels, Metrics};

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Event type of the alert events.
pub const BUDGET_EXCEEDED: &str = "pipewarden.budget.exceeded";

/// Spend of one budget in the current window.
#[derive(Debug, Default)]
struct Window {
    /// Hours since the epoch of the window.
    hour: i64,
    spent_pico: u64,
    alerted: bool,
}

struct Budget {
    config: BudgetConfig,
    used: Gauge<f64, AtomicU64>,
    window: Mutex<Window>,
}

/// What an alert says: a budget crossed its cap in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub budget: String,
    /// `topics` or `flow`.
    pub scope: &'static str,
    /// The topic pattern or flow name of the budget.
    pub selector: String,
    /// The topic or flow whose cost crossed the cap.
    pub subject: String,
    pub window_start_us: i64,
    pub limit_pico: u64,
    pub spent_pico: u64,
}

pub struct Budgets {
    budgets: Vec<Budget>,
    alerts: Option<AlertPublisher>,
}

impl Budgets {
    /// Builds the budgets of `config`; the alert producer exists only when
    /// there are budgets and an alerts topic.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let alerts = match (&config.cost.alerts_topic, config.cost.budgets.is_empty()) {
            (Some(topic), false) => Some(AlertPublisher::new(config, topic, metrics.clone())?),
            _ => None,
        };
        Ok(Self::with_publisher(&config.cost.budgets, &metrics, alerts))
    }

    fn with_publisher(configs: &[BudgetConfig], metrics: &Metrics, alerts: Option<AlertPublisher>) -> Self {
        let budgets = configs
            .iter()
            .map(|config| Budget {
                used: metrics.accounting.budget_used.get_or_create_owned(&BudgetLabels { budget: config.name.clone() }),
                config: config.clone(),
                window: Mutex::new(Window::default()),
            })
            .collect();
        Self { budgets, alerts }
    }

    /// Budgets without an alert producer (tests, or no alerts topic).
    pub fn without_alerts(configs: &[BudgetConfig], metrics: &Metrics) -> Self {
        Self::with_publisher(configs, metrics, None)
    }

    /// Indices of the topic budgets that cover `topic` (looked up once per
    /// topic by the cost stage).
    pub fn for_topic(&self, topic: &str) -> Vec<usize> {
        self.indices(|scope| matches!(scope, BudgetScope::Topics(pattern) if pattern.is_match(topic)))
    }

    /// Indices of the budgets of flow `flow`.
    pub fn for_flow(&self, flow: &str) -> Vec<usize> {
        self.indices(|scope| matches!(scope, BudgetScope::Flow(name) if name == flow))
    }

    fn indices(&self, covers: impl Fn(&BudgetScope) -> bool) -> Vec<usize> {
        self.budgets.iter().enumerate().filter(|(_, b)| covers(&b.config.scope)).map(|(i, _)| i).collect()
    }

    /// Adds the cost of a completed flow to its budgets (called by the correlator).
    pub fn add_flow_cost(&self, flow: &str, pico: u64, now_us: i64) {
        for index in self.for_flow(flow) {
            self.add(index, pico, now_us, flow);
        }
    }

    /// Adds spend to budget `index`; publishes an alert on the crossing.
    /// Returns the crossing, if this spend made one.
    pub fn add(&self, index: usize, pico: u64, now_us: i64, subject: &str) -> Option<Crossing> {
        let budget = self.budgets.get(index)?;
        let hour = now_us.div_euclid(MICROS_PER_HOUR);
        let limit = budget.config.pico_per_hour.max(1);
        let crossed = {
            let mut window = budget.window.lock().expect("budget window lock poisoned");
            if window.hour != hour {
                *window = Window { hour, ..Window::default() };
            }
            window.spent_pico = window.spent_pico.saturating_add(pico);
            budget.used.set(window.spent_pico as f64 / limit as f64);
            let crossed = !window.alerted && window.spent_pico >= limit;
            window.alerted |= crossed;
            crossed.then_some(window.spent_pico)
        }?;
        let crossing = Crossing {
            budget: budget.config.name.clone(),
            scope: match budget.config.scope {
                BudgetScope::Topics(_) => "topics",
                BudgetScope::Flow(_) => "flow",
            },
            selector: match &budget.config.scope {
                // The anchored pattern as the user wrote it.
                BudgetScope::Topics(pattern) => {
                    pattern.as_str().trim_start_matches("^(?:").trim_end_matches(")$").to_string()
                }
                BudgetScope::Flow(name) => name.clone(),
            },
            subject: subject.to_string(),
            window_start_us: hour * MICROS_PER_HOUR,
            limit_pico: limit,
            spent_pico: crossed,
        };
        info!(budget = %crossing.budget, subject, spent_usd = crossed as f64 / 1e12, "budget crossed");
        if let Some(alerts) = &self.alerts {
            alerts.publish(&crossing, now_us);
        }
        Some(crossing)
    }

    /// Starts a new window for budgets whose hour has passed, so the gauge
    /// falls back to zero at the top of the hour even without new spend.
    pub fn tick(&self, now_us: i64) {
        let hour = now_us.div_euclid(MICROS_PER_HOUR);
        for budget in &self.budgets {
            let mut window = budget.window.lock().expect("budget window lock poisoned");
            if window.hour != hour {
                *window = Window { hour, ..Window::default() };
                budget.used.set(0.0);
            }
        }
    }
}

/// The alert event: the pipeline's own event contract, so agents that read
/// the alerts topic need nothing special.
pub fn alert_event(crossing: &Crossing, now_us: i64, event_id: &str, trace_id: &str) -> serde_json::Value {
    let rfc3339 = |us: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default()
    };
    json!({
        "event_type": BUDGET_EXCEEDED,
        "event_id": event_id,
        "trace_id": trace_id,
        "created_at": rfc3339(now_us),
        "schema_version": "1",
        "producer": "pipewarden",
        "data": {
            "budget": crossing.budget,
            "scope": crossing.scope,
            "selector": crossing.selector,
            "subject": crossing.subject,
            "window_start": rfc3339(crossing.window_start_us),
            "window_end": rfc3339(crossing.window_start_us + MICROS_PER_HOUR),
            "usd_per_hour": crossing.limit_pico as f64 / 1e12,
            "spent_usd": crossing.spent_pico as f64 / 1e12,
        },
    })
}

struct AlertTicket {
    budget: String,
}

struct AlertContext {
    metrics: Arc<Metrics>,
}

impl ClientContext for AlertContext {}

impl ProducerContext for AlertContext {
    type DeliveryOpaque = Box<AlertTicket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<AlertTicket>) {
        let outcome = match result {
            Ok(_) => "sent",
            Err((err, _)) => {
                warn!(budget = %ticket.budget, error = %err, "budget alert not delivered");
                "failed"
            }
        };
        let labels = BudgetAlertLabels { budget: ticket.budget, result: outcome };
        self.metrics.accounting.budget_alerts.get_or_create(&labels).inc();
    }
}

/// Produces budget alerts to the alerts topic.
struct AlertPublisher {
    producer: ThreadedProducer<AlertContext>,
    topic: String,
    metrics: Arc<Metrics>,
}

impl AlertPublisher {
    fn new(config: &Config, topic: &str, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        // An alert that cannot be written within 30 s (e.g. the topic does
        // not exist and the cluster does not create topics) counts as failed.
        let mut client_config = crate::quarantine::producer_config(config);
        client_config.set("message.timeout.ms", "30000");
        let producer = client_config
            .create_with_context(AlertContext { metrics: metrics.clone() })
            .context("failed to create the budget alert producer")?;
        Ok(Self { producer, topic: topic.to_string(), metrics })
    }

    fn publish(&self, crossing: &Crossing, now_us: i64) {
        let mut rng = rand::rng();
        let event_id = format!("{:032x}", rng.random::<u128>());
        let trace_id = format!("{:032x}", rng.random::<u128>() | 1);
        let payload = alert_event(crossing, now_us, &event_id, &trace_id).to_string();
        let ticket = Box::new(AlertTicket { budget: crossing.budget.clone() });
        let record = BaseRecord::with_opaque_to(&self.topic, ticket).key(crossing.budget.as_bytes()).payload(&payload);
        if let Err((err, record)) = self.producer.send::<[u8], String>(record) {
            warn!(budget = %crossing.budget, error = %err, "budget alert could not be queued");
            let labels = BudgetAlertLabels { budget: record.delivery_opaque.budget, result: "failed" };
            self.metrics.accounting.budget_alerts.get_or_create(&labels).inc();
        }
    }
}

impl Drop for AlertPublisher {
    fn drop(&mut self) {
        // Deliver queued alerts before the process exits.
        use rdkafka::producer::Producer as _;
        let _ = self.producer.flush(std::time::Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(toml: &str) -> (Budgets, Arc<Metrics>) {
        let config = Config::from_toml(toml, &|_| None).unwrap();
        let metrics = Arc::new(Metrics::new(10));
        (Budgets::without_alerts(&config.cost.budgets, &metrics), metrics)
    }

    fn used(metrics: &Metrics, budget: &str) -> f64 {
        metrics.accounting.budget_used.get_or_create(&BudgetLabels { budget: budget.into() }).get()
    }

    const HOUR: i64 = MICROS_PER_HOUR;

    #[test]
    fn a_crossing_is_reported_once_per_window() {
        let (budgets, metrics) = budgets(
            "[[budgets]]\nname = \"support\"\ntopics = \"support\\\\..*\"\nusd_per_hour = 1.0\n\
             [[budgets]]\nname = \"doc\"\nflow = \"doc\"\nusd_per_hour = 0.5\n",
        );
        assert_eq!(budgets.for_topic("support.answer.drafted"), vec![0]);
        assert!(budgets.for_topic("doc.extracted").is_empty());
        assert_eq!(budgets.for_flow("doc"), vec![1]);
        let quarter = 250_000_000_000; // 0.25 USD
        let start = 500 * HOUR + 10;
        for (n, expected) in [(1, None), (2, None), (3, None)] {
            assert_eq!(budgets.add(0, quarter, start + n, "support.a").map(|c| c.spent_pico), expected);
        }
        assert_eq!(used(&metrics, "support"), 0.75);
        let crossing = budgets.add(0, quarter, start + 4, "support.b").expect("the fourth quarter crosses");
        assert_eq!(crossing.spent_pico, 1_000_000_000_000);
        assert_eq!(crossing.subject, "support.b");
        assert_eq!(crossing.selector, "support\\..*");
        assert_eq!(crossing.window_start_us, 500 * HOUR);
        assert_eq!(budgets.add(0, quarter, start + 5, "support.a"), None, "once per window");
        assert_eq!(used(&metrics, "support"), 1.25);
        // The next hour starts afresh.
        budgets.tick(501 * HOUR);
        assert_eq!(used(&metrics, "support"), 0.0);
        assert_eq!(
            budgets.add(0, 4 * quarter, 501 * HOUR + 1, "support.a").map(|c| c.window_start_us),
            Some(501 * HOUR)
        );
        // Flow budgets.
        budgets.add_flow_cost("doc", 600_000_000_000, start);
        assert_eq!(used(&metrics, "doc"), 1.2);
        budgets.add_flow_cost("support", 600_000_000_000, start);
        assert_eq!(used(&metrics, "doc"), 1.2, "other flows do not count");
    }

    #[test]
    fn alert_events_follow_the_event_contract() {
        let crossing = Crossing {
            budget: "support".into(),
            scope: "topics",
            selector: "support\\..*".into(),
            subject: "support.answer.drafted".into(),
            window_start_us: 1_795_932_000_000_000,
            limit_pico: 1_000_000_000_000,
            spent_pico: 1_250_000_000_000,
        };
        let event = alert_event(&crossing, 1_795_932_600_000_000, "e-1", "t-1");
        assert_eq!(event["event_type"], BUDGET_EXCEEDED);
        assert_eq!(event["producer"], "pipewarden");
        assert_eq!(event["created_at"], "2026-11-29T06:10:00Z");
        assert_eq!(event["data"]["window_start"], "2026-11-29T06:00:00Z");
        assert_eq!(event["data"]["window_end"], "2026-11-29T07:00:00Z");
        assert_eq!(event["data"]["usd_per_hour"], 1.0);
        assert_eq!(event["data"]["spent_usd"], 1.25);
        assert_eq!(event["data"]["subject"], "support.answer.drafted");
    }
}
