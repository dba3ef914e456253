//! Import of a LiteLLM price file (`model_prices_and_context_window.json`
//! shape): an object from model name to prices in USD per token.
//!
//! In: the file named by `cost.litellm_prices`. Out: prices in pico-dollars
//! per token by exact model name, consulted after `[[cost.prices]]`. Read
//! once at start-up by the cost configuration's validation.

use std::collections::HashMap;

use serde::Deserialize;

use super::{pico_per_token_from_usd_per_token, Price};

/// One entry of a LiteLLM price file; other keys (context window, mode,
/// provider, per-image prices...) are ignored.
#[derive(Debug, Deserialize)]
struct LiteLlmEntry {
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    cache_read_input_token_cost: Option<f64>,
    cache_creation_input_token_cost: Option<f64>,
    output_cost_per_reasoning_token: Option<f64>,
}

/// Reads a LiteLLM `model_prices_and_context_window.json`-shaped file:
/// an object from model name to prices in USD per token. Entries without
/// both an input and an output price (image or audio models, the
/// `sample_spec` documentation entry) are skipped.
pub fn load(path: &std::path::Path) -> Result<HashMap<String, Price>, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    parse(&text).map_err(|err| format!("{}: {err}", path.display()))
}

pub fn parse(text: &str) -> Result<HashMap<String, Price>, String> {
    let entries: HashMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|err| format!("not a LiteLLM price file: {err}"))?;
    let mut prices = HashMap::new();
    for (model, value) in entries {
        let Ok(entry) = serde_json::from_value::<LiteLlmEntry>(value) else { continue };
        let valid = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
        let (Some(input), Some(output)) = (valid(entry.input_cost_per_token), valid(entry.output_cost_per_token))
        else {
            continue;
        };
        let input = pico_per_token_from_usd_per_token(input);
        let output = pico_per_token_from_usd_per_token(output);
        let price = Price {
            input,
            cached_input: valid(entry.cache_read_input_token_cost).map_or(input, pico_per_token_from_usd_per_token),
            cache_write: valid(entry.cache_creation_input_token_cost).map_or(input, pico_per_token_from_usd_per_token),
            output,
            reasoning: valid(entry.output_cost_per_reasoning_token).map_or(output, pico_per_token_from_usd_per_token),
        };
        prices.insert(model, price);
    }
    Ok(prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litellm_files_are_read_per_token() {
        let text = r#"{
            "sample_spec": {"max_tokens": "set to max_output_tokens if provider specifies it"},
            "gpt-4o-mini": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
                            "cache_read_input_token_cost": 7.5e-08, "litellm_provider": "openai", "mode": "chat"},
            "o3": {"input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06,
                   "output_cost_per_reasoning_token": 9e-06},
            "dall-e-3": {"output_cost_per_image": 0.04}
        }"#;
        let prices = parse(text).unwrap();
        assert_eq!(prices.len(), 2);
        assert_eq!(
            prices["gpt-4o-mini"],
            Price { input: 150_000, cached_input: 75_000, cache_write: 150_000, output: 600_000, reasoning: 600_000 }
        );
        assert_eq!(prices["o3"].reasoning, 9_000_000);
        assert!(parse("[1]").is_err());
    }
}
