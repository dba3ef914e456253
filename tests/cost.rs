//! Cost against the real broker: events with known token usage in every
//! provider shape give exact token and cost sums per model, an unknown
//! model is counted as unpriced (never free), and crossing a budget
//! publishes exactly one alert event to the alerts topic.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(90);

fn regex_escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// A contract-conforming event carrying `usage` fields (a JSON object body
/// without braces).
fn event(n: usize, usage: &str) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    format!(
        r#"{{"event_type":"answer.drafted","trace_id":"trace-{n}","event_id":"evt-{n}","created_at":"{now}","schema_version":"1","producer":"writer-agent",{usage}}}"#
    )
    .into_bytes()
}

/// Budget windows are clock hours: a test that spends across the top of an
/// hour would see two windows. Waits out the last 45 seconds of an hour.
fn away_from_the_top_of_the_hour() {
    let now = time::OffsetDateTime::now_utc();
    let into_hour = u64::from(now.minute()) * 60 + u64::from(now.second());
    if into_hour >= 3_600 - 45 {
        std::thread::sleep(Duration::from_secs(3_600 - into_hour + 1));
    }
}

#[test]
fn known_usage_gives_exact_sums_and_one_budget_alert() {
    away_from_the_top_of_the_hour();
    let id = unique("it-cost");
    let (topic, alerts) = (format!("{id}.llm"), format!("{id}.alerts"));
    create_topics(&[(&topic, 2), (&alerts, 1)]);

    let shapes: &[(usize, &str)] = &[
        // OpenAI chat: 1200 prompt tokens of which 1024 cached, 80 completion.
        (
            10,
            r#""model":"gpt-4o-mini","usage":{"prompt_tokens":1200,"completion_tokens":80,"prompt_tokens_details":{"cached_tokens":1024}}"#,
        ),
        // Anthropic: 25 uncached, 4000 cache reads, 1200 cache writes, 310 output.
        (
            10,
            r#""model":"claude-sonnet-4-5","usage":{"input_tokens":25,"output_tokens":310,"cache_read_input_tokens":4000,"cache_creation_input_tokens":1200}"#,
        ),
        // OpenTelemetry GenAI, flat keys: 1000 input (600 cached), 700 output (640 reasoning).
        (
            10,
            r#""gen_ai.response.model":"o3","gen_ai.usage.input_tokens":1000,"gen_ai.usage.output_tokens":700,"gen_ai.usage.cache_read.input_tokens":600,"gen_ai.usage.reasoning.output_tokens":640"#,
        ),
        // OpenTelemetry GenAI, nested: 2000 input (500 cached), 400 output (120 reasoning).
        (
            5,
            r#""gen_ai":{"request":{"model":"gemini-2.5-flash"},"usage":{"input_tokens":2000,"output_tokens":400,"cache_read":{"input_tokens":500},"reasoning":{"output_tokens":120}}}"#,
        ),
        // A model without a price.
        (4, r#""model":"mystery-9","usage":{"prompt_tokens":100,"completion_tokens":20}"#),
        // No usage at all.
        (3, r#""data":{"note":"no llm call"}"#),
    ];
    let producer = producer();
    let mut n = 0;
    for (count, usage) in shapes {
        for _ in 0..*count {
            producer.send(&topic, Some(n as i32 % 2), &event(n, usage), &[]);
            n += 1;
        }
    }
    producer.flush();

    let budget = format!("{id}-hourly");
    let extra = format!(
        r#"
[cost]
alerts_topic = "{alerts}"
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
[[cost.prices]]
model = "gemini-2.5-flash"
input = 0.3
cached_input = 0.075
output = 2.5
[[budgets]]
name = "{budget}"
topics = '{pattern}'
usd_per_hour = 0.1
"#,
        pattern = regex_escape(&topic)
    );
    let group = unique("it-cost-group");
    let include = regex_escape(&topic);
    let mut options = DaemonOptions::new(&include, &group);
    options.extra = &extra;
    let mut daemon = Daemon::start(options);
    let records = format!("pipewarden_records_total{{topic=\"{topic}\"}}");
    let sent = format!("pipewarden_budget_alerts_total{{budget=\"{budget}\",result=\"sent\"}}");
    daemon.wait_for("every record and the alert", WAIT, |d| d.metric(&records) >= n as f64 && d.metric(&sent) >= 1.0);
    std::thread::sleep(Duration::from_secs(2));
    let text = daemon.scrape().expect("scrape");
    assert_eq!(sample(&text, &records), 42.0);

    let tokens = |model: &str, r#type: &str| {
        sample(&text, &format!("pipewarden_llm_tokens_total{{topic=\"{topic}\",model=\"{model}\",type=\"{type}\"}}"))
    };
    // Disjoint buckets: cached tokens are not also input, reasoning is not also output.
    let expected_tokens: &[(&str, [f64; 5])] = &[
        ("gpt-4o-mini", [1_760.0, 10_240.0, 0.0, 800.0, 0.0]),
        ("claude-sonnet-4-5", [250.0, 40_000.0, 12_000.0, 3_100.0, 0.0]),
        ("o3", [4_000.0, 6_000.0, 0.0, 600.0, 6_400.0]),
        ("gemini-2.5-flash", [7_500.0, 2_500.0, 0.0, 1_400.0, 600.0]),
        ("mystery-9", [400.0, 0.0, 0.0, 80.0, 0.0]),
    ];
    for (model, counts) in expected_tokens {
        for (r#type, count) in ["input", "cached_input", "cache_write", "output", "reasoning"].iter().zip(counts) {
            assert_eq!(tokens(model, r#type), *count, "{model} {type}:\n{text}");
        }
    }
    let cost =
        |model: &str| sample(&text, &format!("pipewarden_llm_cost_usd_total{{topic=\"{topic}\",model=\"{model}\"}}"));
    // Per event, USD per million tokens:
    //   gpt-4o-mini   176×0.15 + 1024×0.075 + 80×0.6                 = 151.2
    //   claude        25×3 + 4000×0.3 + 1200×3.75 + 310×15             = 10 425
    //   o3            400×2 + 600×0.5 + 60×8 + 640×8 (reasoning = output) = 6 700
    //   gemini        1500×0.3 + 500×0.075 + 280×2.5 + 120×2.5         = 1 487.5
    assert_eq!(cost("gpt-4o-mini"), 0.001512, "{text}");
    assert_eq!(cost("claude-sonnet-4-5"), 0.10425);
    assert_eq!(cost("o3"), 0.067);
    assert_eq!(cost("gemini-2.5-flash"), 0.0074375);
    // Never priced at zero: an unpriced model has no cost series at all.
    assert!(!text.contains(&format!("pipewarden_llm_cost_usd_total{{topic=\"{topic}\",model=\"mystery-9\"}}")));
    let unpriced = |model: &str| {
        sample(&text, &format!("pipewarden_llm_unpriced_tokens_total{{topic=\"{topic}\",model=\"{model}\"}}"))
    };
    assert_eq!(unpriced("mystery-9"), 480.0);
    assert!(!text.contains(&format!("pipewarden_llm_unpriced_tokens_total{{topic=\"{topic}\",model=\"gpt-4o-mini\"}}")));

    // 0.001512 + 0.10425 + 0.067 + 0.0074375 = 0.1801995 USD against 0.1 per hour.
    assert_eq!(sample(&text, &format!("pipewarden_budget_used_ratio{{budget=\"{budget}\"}}")), 1.801995);
    assert_eq!(sample(&text, &sent), 1.0);
    assert_eq!(sample(&text, &format!("pipewarden_budget_alerts_total{{budget=\"{budget}\",result=\"failed\"}}")), 0.0);
    let alerts_read = read_all(&alerts, 1);
    assert_eq!(alerts_read.len(), 1, "exactly one alert per crossing");
    use rdkafka::message::Message;
    let alert: serde_json::Value = serde_json::from_slice(alerts_read[0].payload().unwrap()).unwrap();
    assert_eq!(alert["event_type"], "pipewarden.budget.exceeded");
    assert_eq!(alert["producer"], "pipewarden");
    assert_eq!(alert["data"]["budget"], budget.as_str());
    assert_eq!(alert["data"]["scope"], "topics");
    assert_eq!(alert["data"]["subject"], topic.as_str());
    assert_eq!(alert["data"]["usd_per_hour"], 0.1);
    let spent = alert["data"]["spent_usd"].as_f64().unwrap();
    // The crossing event is any one of the priced events: the spend is at
    // least the budget and less than the budget plus the dearest event.
    assert!((0.1..0.1 + 0.010425).contains(&spent), "{alert}");
    assert_eq!(alerts_read[0].key(), Some(budget.as_bytes()));
    assert!(daemon.terminate().success());
}
