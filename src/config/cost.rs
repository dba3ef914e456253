//! Cost configuration: `[cost]`, `[[cost.usage]]`, `[[cost.prices]]` and
//! `[[budgets]]`.
//!
//! Raw serde structs with documented defaults, validated into typed
//! settings by [`validate_cost`]; problems are pushed to the caller's list so
//! the whole file is reported at once. Prices are turned into integer
//! pico-dollars per token here, so the hot path multiplies integers and the
//! cost sums are exact (see `docs/cost.md`). An optional LiteLLM price file
//! (see [`litellm`]) is read here too, so a bad file is a
//! configuration problem with its key path, not a runtime surprise.

use std::collections::HashMap;
use std::path::PathBuf;

use regex::Regex;
use serde::Deserialize;

use super::{parse_source, ConfigProblem, ProblemKind, Source};

pub mod litellm;

/// Pico-dollars (1e-12 USD) per USD.
pub const PICO_PER_USD: f64 = 1e12;

/// Model name sources tried in order: the OpenTelemetry GenAI response model
/// (the model that actually answered), then the requested one, each as a flat
/// dotted key and as nested objects, then a top-level `model` (OpenAI and
/// Anthropic responses).
pub const DEFAULT_MODEL_SOURCES: &[&str] =
    &["/gen_ai.response.model", "/gen_ai.request.model", "/gen_ai/response/model", "/gen_ai/request/model", "/model"];

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawCost {
    pub enabled: bool,
    pub model: Vec<String>,
    pub usage: Vec<RawUsage>,
    pub prices: Vec<RawPrice>,
    pub litellm_prices: String,
    pub alerts_topic: String,
}

impl Default for RawCost {
    fn default() -> Self {
        Self {
            enabled: true,
            model: DEFAULT_MODEL_SOURCES.iter().map(|s| s.to_string()).collect(),
            usage: Vec::new(),
            prices: Vec::new(),
            litellm_prices: String::new(),
            alerts_topic: "pipewarden.alerts".into(),
        }
    }
}

/// One shape of token usage in a payload. Every key but `style` overrides
/// the preset `style` names.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawUsage {
    pub style: String,
    pub detect: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub cache_read: Option<String>,
    pub cache_write: Option<String>,
    pub reasoning: Option<String>,
    pub input_includes_cache: Option<bool>,
    pub output_includes_reasoning: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawPrice {
    /// Glob over the model name (`*` any run of characters, `?` one).
    pub model: String,
    /// Regular expression over the whole model name (instead of `model`).
    pub regex: String,
    pub input: Option<f64>,
    pub cached_input: Option<f64>,
    pub cache_write: Option<f64>,
    pub output: Option<f64>,
    pub reasoning: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawBudget {
    pub name: String,
    pub topics: String,
    pub flow: String,
    pub usd_per_hour: f64,
}

/// Where the five token figures of one usage shape come from, and how the
/// provider counts them.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSource {
    /// The preset it started from (`otel`, `openai`, ...), for logs and docs.
    pub style: String,
    /// The shape applies only when this pointer is present (any value).
    pub detect: Option<Source>,
    pub input: Option<Source>,
    pub output: Option<Source>,
    pub cache_read: Option<Source>,
    pub cache_write: Option<Source>,
    pub reasoning: Option<Source>,
    /// The provider's input figure already counts cache reads and writes.
    pub input_includes_cache: bool,
    /// The provider's output figure already counts reasoning tokens.
    pub output_includes_reasoning: bool,
}

/// Prices of one model in pico-dollars per token, per disjoint token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
}

#[derive(Debug, Clone)]
pub struct PriceRule {
    /// Anchored pattern over the whole model name.
    pub pattern: Regex,
    pub price: Price,
}

/// What a budget caps.
#[derive(Debug, Clone)]
pub enum BudgetScope {
    /// Cost of the records of every topic matching the pattern.
    Topics(Regex),
    /// Cost of completed flows of this name (fed by the correlator).
    Flow(String),
}

#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// The `budget` label value.
    pub name: String,
    pub scope: BudgetScope,
    /// The cap per clock hour, in pico-dollars.
    pub pico_per_hour: u64,
}

#[derive(Debug, Clone)]
pub struct CostConfig {
    pub enabled: bool,
    pub model: Vec<Source>,
    /// Tried in order; the first whose `detect` (or else `input`/`output`)
    /// pointer is present in a record gives its usage.
    pub usage: Vec<UsageSource>,
    /// Configured rules, checked in order; the first match wins.
    pub prices: Vec<PriceRule>,
    /// Exact model names from the LiteLLM file; consulted after `prices`.
    pub imported_prices: HashMap<String, Price>,
    /// Budget alerts go here; `None` disables them.
    pub alerts_topic: Option<String>,
    pub budgets: Vec<BudgetConfig>,
}

/// Pointers of the built-in usage shapes. `otel` reads the OpenTelemetry
/// GenAI attributes as flat dotted keys at the top level of the payload,
/// `otel_nested` the same names as nested objects.
pub fn preset(style: &str) -> Option<UsageSource> {
    let pointer = |text: &str| parse_source(text);
    let shape = |style: &str,
                 detect: Option<&str>,
                 names: [Option<&str>; 5],
                 input_includes_cache: bool,
                 output_includes_reasoning: bool| UsageSource {
        style: style.to_string(),
        detect: detect.and_then(pointer),
        input: names[0].and_then(pointer),
        output: names[1].and_then(pointer),
        cache_read: names[2].and_then(pointer),
        cache_write: names[3].and_then(pointer),
        reasoning: names[4].and_then(pointer),
        input_includes_cache,
        output_includes_reasoning,
    };
    Some(match style {
        "otel" => shape(
            style,
            None,
            [
                Some("/gen_ai.usage.input_tokens"),
                Some("/gen_ai.usage.output_tokens"),
                Some("/gen_ai.usage.cache_read.input_tokens"),
                Some("/gen_ai.usage.cache_creation.input_tokens"),
                Some("/gen_ai.usage.reasoning.output_tokens"),
            ],
            true,
            true,
        ),
        "otel_nested" => shape(
            style,
            None,
            [
                Some("/gen_ai/usage/input_tokens"),
                Some("/gen_ai/usage/output_tokens"),
                Some("/gen_ai/usage/cache_read/input_tokens"),
                Some("/gen_ai/usage/cache_creation/input_tokens"),
                Some("/gen_ai/usage/reasoning/output_tokens"),
            ],
            true,
            true,
        ),
        "openai" => shape(
            style,
            None,
            [
                Some("/usage/prompt_tokens"),
                Some("/usage/completion_tokens"),
                Some("/usage/prompt_tokens_details/cached_tokens"),
                None,
                Some("/usage/completion_tokens_details/reasoning_tokens"),
            ],
            true,
            true,
        ),
        // The Responses API names its fields like Anthropic but counts like
        // Chat Completions; its `input_tokens_details` object tells them apart.
        "openai_responses" => shape(
            style,
            Some("/usage/input_tokens_details"),
            [
                Some("/usage/input_tokens"),
                Some("/usage/output_tokens"),
                Some("/usage/input_tokens_details/cached_tokens"),
                None,
                Some("/usage/output_tokens_details/reasoning_tokens"),
            ],
            true,
            true,
        ),
        "anthropic" => shape(
            style,
            None,
            [
                Some("/usage/input_tokens"),
                Some("/usage/output_tokens"),
                Some("/usage/cache_read_input_tokens"),
                Some("/usage/cache_creation_input_tokens"),
                None,
            ],
            false,
            // Extended thinking is billed as output and counted in output_tokens.
            true,
        ),
        "custom" => shape(style, None, [None; 5], true, true),
        _ => return None,
    })
}

/// The shapes used when `[[cost.usage]]` is not given, in detection order.
pub const DEFAULT_STYLES: &[&str] = &["otel", "otel_nested", "openai_responses", "openai", "anthropic"];

fn problem(problems: &mut Vec<ConfigProblem>, path: String, kind: ProblemKind) {
    problems.push(ConfigProblem { path, kind });
}

/// USD per million tokens → pico-dollars per token (exact for prices with
/// up to six decimals).
pub fn pico_per_token_from_usd_per_million(usd_per_million: f64) -> u64 {
    (usd_per_million * 1e6).round() as u64
}

/// USD per token (LiteLLM's unit) → pico-dollars per token.
pub fn pico_per_token_from_usd_per_token(usd_per_token: f64) -> u64 {
    (usd_per_token * PICO_PER_USD).round() as u64
}

/// A glob over model names as an anchored regex: `*` any run, `?` one character.
pub fn glob_to_regex(glob: &str) -> String {
    let mut out = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}

pub fn validate_cost(raw: RawCost, budgets: Vec<RawBudget>, problems: &mut Vec<ConfigProblem>) -> CostConfig {
    let sources = |key: &str, list: &[String], problems: &mut Vec<ConfigProblem>| -> Vec<Source> {
        list.iter()
            .enumerate()
            .filter_map(|(index, text)| match parse_source(text) {
                Some(Source::Pointer(keys)) => Some(Source::Pointer(keys)),
                _ => {
                    problem(
                        problems,
                        format!("cost.{key}[{index}]"),
                        ProblemKind::InvalidValue(format!("{text:?} is not a JSON pointer like \"/model\"")),
                    );
                    None
                }
            })
            .collect()
    };
    let model = sources("model", &raw.model, problems);

    let usage = if raw.usage.is_empty() {
        DEFAULT_STYLES.iter().filter_map(|style| preset(style)).collect()
    } else {
        raw.usage.iter().enumerate().filter_map(|(index, raw)| validate_usage(index, raw, problems)).collect()
    };

    let mut prices = Vec::new();
    for (index, raw) in raw.prices.iter().enumerate() {
        if let Some(rule) = validate_price(index, raw, problems) {
            prices.push(rule);
        }
    }

    let imported_prices = if raw.litellm_prices.trim().is_empty() {
        HashMap::new()
    } else {
        match litellm::load(&PathBuf::from(raw.litellm_prices.trim())) {
            Ok(prices) => prices,
            Err(message) => {
                problem(problems, "cost.litellm_prices".into(), ProblemKind::InvalidValue(message));
                HashMap::new()
            }
        }
    };

    let mut validated_budgets = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (index, raw) in budgets.into_iter().enumerate() {
        let at = |key: &str| format!("budgets[{index}].{key}");
        if raw.name.trim().is_empty() {
            problem(problems, at("name"), ProblemKind::Empty);
        } else if !names.insert(raw.name.clone()) {
            problem(problems, at("name"), ProblemKind::InvalidValue(format!("{:?} names two budgets", raw.name)));
        }
        if !(raw.usd_per_hour.is_finite() && raw.usd_per_hour > 0.0) {
            problem(problems, at("usd_per_hour"), ProblemKind::InvalidValue("must be a positive number".into()));
        }
        let scope = match (raw.topics.trim().is_empty(), raw.flow.trim().is_empty()) {
            (false, true) => {
                let (mut regexes, invalid) = super::compile_patterns(&at("topics"), std::slice::from_ref(&raw.topics));
                problems.extend(invalid.into_iter().map(|mut p| {
                    // A single pattern: report it at the key itself.
                    p.path = at("topics");
                    p
                }));
                regexes.pop().map(BudgetScope::Topics)
            }
            (true, false) => Some(BudgetScope::Flow(raw.flow.trim().to_string())),
            _ => {
                problem(
                    problems,
                    format!("budgets[{index}]"),
                    ProblemKind::InvalidValue("set exactly one of topics (a regex) or flow (a flow name)".into()),
                );
                None
            }
        };
        if let Some(scope) = scope {
            validated_budgets.push(BudgetConfig {
                name: raw.name,
                scope,
                pico_per_hour: (raw.usd_per_hour.max(0.0) * PICO_PER_USD).round() as u64,
            });
        }
    }

    let alerts_topic = Some(raw.alerts_topic.trim().to_string()).filter(|t| !t.is_empty());
    CostConfig { enabled: raw.enabled, model, usage, prices, imported_prices, alerts_topic, budgets: validated_budgets }
}

fn validate_usage(index: usize, raw: &RawUsage, problems: &mut Vec<ConfigProblem>) -> Option<UsageSource> {
    let at = |key: &str| format!("cost.usage[{index}].{key}");
    let style = if raw.style.is_empty() { "custom" } else { raw.style.as_str() };
    let Some(mut source) = preset(style) else {
        let names: Vec<String> = DEFAULT_STYLES.iter().chain(&["custom"]).map(|s| format!("{s:?}")).collect();
        problem(
            problems,
            at("style"),
            ProblemKind::InvalidValue(format!("{style:?} is not one of {}", names.join(", "))),
        );
        return None;
    };
    let mut pointer = |key: &str, text: &Option<String>, slot: &mut Option<Source>| {
        let Some(text) = text else { return };
        if text.is_empty() {
            // An empty string switches a preset's figure off.
            *slot = None;
            return;
        }
        match parse_source(text) {
            Some(pointer @ Source::Pointer(_)) => *slot = Some(pointer),
            _ => problem(
                problems,
                at(key),
                ProblemKind::InvalidValue(format!("{text:?} is not a JSON pointer like \"/usage/input_tokens\"")),
            ),
        }
    };
    pointer("detect", &raw.detect, &mut source.detect);
    pointer("input", &raw.input, &mut source.input);
    pointer("output", &raw.output, &mut source.output);
    pointer("cache_read", &raw.cache_read, &mut source.cache_read);
    pointer("cache_write", &raw.cache_write, &mut source.cache_write);
    pointer("reasoning", &raw.reasoning, &mut source.reasoning);
    if let Some(value) = raw.input_includes_cache {
        source.input_includes_cache = value;
    }
    if let Some(value) = raw.output_includes_reasoning {
        source.output_includes_reasoning = value;
    }
    if source.input.is_none() && source.output.is_none() {
        problem(problems, at("input"), ProblemKind::InvalidValue("a usage shape needs input or output".into()));
        return None;
    }
    Some(source)
}

fn validate_price(index: usize, raw: &RawPrice, problems: &mut Vec<ConfigProblem>) -> Option<PriceRule> {
    let at = |key: &str| format!("cost.prices[{index}].{key}");
    let pattern = match (raw.model.is_empty(), raw.regex.is_empty()) {
        (false, true) => Regex::new(&glob_to_regex(&raw.model)).ok(),
        (true, false) => match Regex::new(&format!("^(?:{})$", raw.regex)) {
            Ok(regex) => Some(regex),
            Err(err) => {
                let message = err.to_string().lines().last().unwrap_or("").trim().to_string();
                problem(problems, at("regex"), ProblemKind::InvalidRegex(message));
                None
            }
        },
        _ => {
            problem(
                problems,
                format!("cost.prices[{index}]"),
                ProblemKind::InvalidValue("set exactly one of model (a glob) or regex".into()),
            );
            None
        }
    };
    let mut amount = |key: &str, value: Option<f64>| -> Option<u64> {
        let value = value?;
        if value.is_finite() && value >= 0.0 {
            Some(pico_per_token_from_usd_per_million(value))
        } else {
            problem(problems, at(key), ProblemKind::InvalidValue("must be a number of USD, zero or more".into()));
            None
        }
    };
    let input = amount("input", raw.input);
    let output = amount("output", raw.output);
    let cached_input = amount("cached_input", raw.cached_input);
    let cache_write = amount("cache_write", raw.cache_write);
    let reasoning = amount("reasoning", raw.reasoning);
    if raw.input.is_none() {
        problem(problems, at("input"), ProblemKind::InvalidValue("the input price is required".into()));
    }
    if raw.output.is_none() {
        problem(problems, at("output"), ProblemKind::InvalidValue("the output price is required".into()));
    }
    let (input, output) = (input?, output?);
    Some(PriceRule {
        pattern: pattern?,
        price: Price {
            input,
            // A model without a cache price is charged its input price: never
            // less than it may cost.
            cached_input: cached_input.unwrap_or(input),
            cache_write: cache_write.unwrap_or(input),
            output,
            reasoning: reasoning.unwrap_or(output),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_know_every_provider_shape() {
        let config = Config::from_toml("", &no_env).unwrap();
        let styles: Vec<&str> = config.cost.usage.iter().map(|u| u.style.as_str()).collect();
        assert_eq!(styles, DEFAULT_STYLES);
        assert_eq!(config.cost.model.len(), 5);
        assert_eq!(config.cost.alerts_topic.as_deref(), Some("pipewarden.alerts"));
        assert!(config.cost.enabled);
    }

    #[test]
    fn prices_become_pico_dollars_with_defaults_for_cache_and_reasoning() {
        let text = r#"
            [[cost.prices]]
            model = "gpt-4o-mini*"
            input = 0.15
            cached_input = 0.075
            output = 0.6
            [[cost.prices]]
            regex = "claude-(sonnet|opus)-.*"
            input = 3
            output = 15
            cache_write = 3.75
        "#;
        let config = Config::from_toml(text, &no_env).unwrap();
        let [mini, claude] = &config.cost.prices[..] else { panic!() };
        assert!(mini.pattern.is_match("gpt-4o-mini-2024-07-18"));
        assert!(!mini.pattern.is_match("xgpt-4o-mini"));
        assert_eq!(
            mini.price,
            Price { input: 150_000, cached_input: 75_000, cache_write: 150_000, output: 600_000, reasoning: 600_000 }
        );
        assert!(claude.pattern.is_match("claude-sonnet-4-5"));
        assert_eq!(claude.price.cache_write, 3_750_000);
        assert_eq!(claude.price.cached_input, 3_000_000);
    }

    #[test]
    fn bad_cost_settings_are_all_reported() {
        let text = r#"
            [cost]
            model = ["model"]
            litellm_prices = "/nonexistent/prices.json"
            [[cost.usage]]
            style = "mystery"
            [[cost.usage]]
            style = "custom"
            [[cost.usage]]
            style = "openai"
            input = "usage.prompt_tokens"
            [[cost.prices]]
            model = "a"
            regex = "b"
            input = 1
            output = 1
            [[cost.prices]]
            regex = "(x"
            input = -1
            [[budgets]]
            name = ""
            usd_per_hour = 0
            [[budgets]]
            name = "b"
            topics = "a"
            flow = "f"
            usd_per_hour = 1
        "#;
        let found = Config::from_toml(text, &no_env).unwrap_err().0;
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        for path in [
            "cost.model[0]",
            "cost.litellm_prices",
            "cost.usage[0].style",
            "cost.usage[1].input",
            "cost.usage[2].input",
            "cost.prices[0]",
            "cost.prices[1].regex",
            "cost.prices[1].input",
            "cost.prices[1].output",
            "budgets[0].name",
            "budgets[0].usd_per_hour",
            "budgets[0]",
            "budgets[1]",
        ] {
            assert!(paths.contains(&path), "missing {path}: {found:#?}");
        }
        assert_eq!(found.len(), 13, "{found:#?}");
    }

    #[test]
    fn budgets_scope_topics_or_flows() {
        let text = r#"
            [[budgets]]
            name = "support"
            topics = "support\\..*"
            usd_per_hour = 2.5
            [[budgets]]
            name = "doc-flow"
            flow = "doc"
            usd_per_hour = 0.01
        "#;
        let config = Config::from_toml(text, &no_env).unwrap();
        let [support, doc] = &config.cost.budgets[..] else { panic!() };
        assert!(matches!(&support.scope, BudgetScope::Topics(r) if r.is_match("support.answer.drafted")));
        assert_eq!(support.pico_per_hour, 2_500_000_000_000);
        assert!(matches!(&doc.scope, BudgetScope::Flow(f) if f == "doc"));
        assert_eq!(doc.pico_per_hour, 10_000_000_000);
    }
}
