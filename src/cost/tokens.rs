//! Token normalisation and pricing: provider figures in, disjoint buckets
//! and an exact cost out.
//!
//! Providers count overlapping figures: OpenAI's `prompt_tokens` include the
//! cached ones and `completion_tokens` include reasoning; Anthropic's
//! `input_tokens` exclude cache reads and writes; the OpenTelemetry GenAI
//! `input_tokens` include both cache figures. Adding such figures up counts
//! cached and reasoning tokens twice. [`normalise`] turns any shape into
//! five disjoint buckets whose sum is the number of tokens processed, and
//! [`cost_pico`] prices each bucket at its own rate in integer pico-dollars.
//! The rules, per provider, are in `docs/cost.md`.

use crate::config::{Price, UsageSource};
use crate::decode::RawUsage;

/// The `type` label values of `pipewarden_llm_tokens_total`, in
/// [`Tokens::as_array`] order.
pub const TOKEN_TYPES: [&str; 5] = ["input", "cached_input", "cache_write", "output", "reasoning"];

/// Tokens of one LLM call in disjoint buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input tokens neither read from nor written to a prompt cache.
    pub input: u64,
    /// Input tokens read from a prompt cache.
    pub cached_input: u64,
    /// Input tokens written to a prompt cache.
    pub cache_write: u64,
    /// Output tokens, reasoning excluded.
    pub output: u64,
    /// Reasoning (thinking) output tokens.
    pub reasoning: u64,
}

impl Tokens {
    pub fn as_array(&self) -> [u64; 5] {
        [self.input, self.cached_input, self.cache_write, self.output, self.reasoning]
    }

    pub fn total(&self) -> u64 {
        self.as_array().iter().fold(0u64, |sum, n| sum.saturating_add(*n))
    }
}

/// The disjoint buckets of one record's usage, per the containment rules of
/// its shape. A total that is smaller than the parts it should contain
/// cannot contain them: the figures are then taken as already disjoint
/// rather than clamped to zero, so no reported token is dropped.
pub fn normalise(raw: &RawUsage, shape: &UsageSource) -> Tokens {
    let cached_input = raw.cache_read.unwrap_or(0);
    let cache_write = raw.cache_write.unwrap_or(0);
    let reasoning = raw.reasoning.unwrap_or(0);
    let input = raw.input.unwrap_or(0);
    let output = raw.output.unwrap_or(0);
    let input = if shape.input_includes_cache {
        input.checked_sub(cached_input.saturating_add(cache_write)).unwrap_or(input)
    } else {
        input
    };
    let output = if shape.output_includes_reasoning { output.checked_sub(reasoning).unwrap_or(output) } else { output };
    Tokens { input, cached_input, cache_write, output, reasoning }
}

/// Cost of `tokens` at `price`, in pico-dollars (saturating, never wraps).
pub fn cost_pico(tokens: &Tokens, price: &Price) -> u64 {
    let rates = [price.input, price.cached_input, price.cache_write, price.output, price.reasoning];
    tokens.as_array().iter().zip(rates).fold(0u64, |sum, (n, rate)| sum.saturating_add(n.saturating_mul(rate)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cost::{pico_per_token_from_usd_per_million as per_million, preset};

    fn raw(input: u64, output: u64, read: Option<u64>, write: Option<u64>, reasoning: Option<u64>) -> RawUsage {
        RawUsage { shape: 0, input: Some(input), output: Some(output), cache_read: read, cache_write: write, reasoning }
    }

    fn tokens(input: u64, cached_input: u64, cache_write: u64, output: u64, reasoning: u64) -> Tokens {
        Tokens { input, cached_input, cache_write, output, reasoning }
    }

    /// USD per million tokens: input 2, cached 0.5, cache write 2.5, output 8, reasoning 10.
    fn price() -> Price {
        Price {
            input: per_million(2.0),
            cached_input: per_million(0.5),
            cache_write: per_million(2.5),
            output: per_million(8.0),
            reasoning: per_million(10.0),
        }
    }

    #[test]
    fn openai_prompt_tokens_include_cached_and_completion_includes_reasoning() {
        let shape = preset("openai").unwrap();
        // prompt 1200 of which 1024 cached; completion 500 of which 300 reasoning.
        let found = normalise(&raw(1200, 500, Some(1024), None, Some(300)), &shape);
        assert_eq!(found, tokens(176, 1024, 0, 200, 300));
        assert_eq!(found.total(), 1700, "every reported token once");
        // 176×2 + 1024×0.5 + 200×8 + 300×10 = 352 + 512 + 1600 + 3000 = 5464 USD per million
        assert_eq!(cost_pico(&found, &price()), 5_464_000_000);
        let responses = preset("openai_responses").unwrap();
        assert_eq!(normalise(&raw(1200, 500, Some(1024), None, Some(300)), &responses), found);
    }

    #[test]
    fn anthropic_input_excludes_cache_reads_and_writes() {
        let shape = preset("anthropic").unwrap();
        let found = normalise(&raw(25, 310, Some(4000), Some(1200), None), &shape);
        assert_eq!(found, tokens(25, 4000, 1200, 310, 0));
        assert_eq!(found.total(), 5535);
        // 25×2 + 4000×0.5 + 1200×2.5 + 310×8 = 50 + 2000 + 3000 + 2480 = 7530 USD per million
        assert_eq!(cost_pico(&found, &price()), 7_530_000_000);
    }

    #[test]
    fn otel_input_includes_both_cache_figures_and_output_includes_reasoning() {
        for style in ["otel", "otel_nested"] {
            let shape = preset(style).unwrap();
            let found = normalise(&raw(1000, 300, Some(600), Some(100), Some(50)), &shape);
            assert_eq!(found, tokens(300, 600, 100, 250, 50), "{style}");
            // 300×2 + 600×0.5 + 100×2.5 + 250×8 + 50×10 = 600 + 300 + 250 + 2000 + 500 = 3650
            assert_eq!(cost_pico(&found, &price()), 3_650_000_000);
        }
    }

    #[test]
    fn figures_that_cannot_contain_their_parts_are_taken_as_disjoint() {
        let shape = preset("openai").unwrap();
        // 900 cached out of a prompt of 100: the producer reported them apart.
        let found = normalise(&raw(100, 10, Some(900), None, Some(40)), &shape);
        assert_eq!(found, tokens(100, 900, 0, 10, 40));
        // Missing figures are zero.
        let only_output = RawUsage { output: Some(7), ..RawUsage::default() };
        assert_eq!(normalise(&only_output, &shape), tokens(0, 0, 0, 7, 0));
    }

    #[test]
    fn huge_counts_saturate_instead_of_wrapping() {
        let found = tokens(u64::MAX, 0, 0, 1, 0);
        assert_eq!(cost_pico(&found, &price()), u64::MAX);
        assert_eq!(found.total(), u64::MAX);
    }
}
