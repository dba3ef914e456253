//! Accounting fields read by the envelope walk: token usage, model name and
//! the payload fields of dead letters.
//!
//! In: the capture slots the envelope walk filled for the pointers
//! registered here (from `[cost]` and `[dlq]`). Out: an [`Accounting`] value
//! on the envelope. Nothing is parsed here: the pointers join the
//! envelope's key tree, so one serde pass over the payload serves the
//! envelope, cost and dead-letter stages alike. Avro and Protobuf bodies
//! (Confluent wire format with a binary body) are not walked, so their
//! records carry no usage (see `docs/cost.md`).
//!
//! The token figures come out as the payload states them ([`RawUsage`]),
//! tagged with the usage shape that matched; turning them into disjoint
//! buckets is the cost stage's job (`cost::normalise`).

use std::borrow::Cow;

use super::envelope::{insert_pointer, Captured, Node};
use crate::config::{Config, Source, UsageSource};

/// Token figures of one record as its usage shape reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawUsage {
    /// Index of the matching shape in `cost.usage`.
    pub shape: u8,
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_write: Option<u64>,
    pub reasoning: Option<u64>,
}

/// What the walk found for cost and dead-letter accounting.
#[derive(Debug, Default)]
pub struct Accounting<'a> {
    /// `None` when no usage shape matched (or cost accounting is off).
    pub usage: Option<RawUsage>,
    pub model: Option<Cow<'a, str>>,
    /// `dlq.source_field` of the payload.
    pub dlq_source: Option<Cow<'a, str>>,
    /// `dlq.reason_field` of the payload.
    pub dlq_reason: Option<Cow<'a, str>>,
}

/// Capture slots of one usage shape.
#[derive(Debug)]
struct ShapeSlots {
    detect: Option<usize>,
    /// input, output, cache_read, cache_write, reasoning
    figures: [Option<usize>; 5],
}

/// The accounting pointers, resolved to capture slots once at start-up.
#[derive(Debug)]
pub struct AccountingSources {
    shapes: Vec<ShapeSlots>,
    model: Vec<usize>,
    dlq_source: Option<usize>,
    dlq_reason: Option<usize>,
}

fn slot_of(root: &mut Node, slots: &mut usize, source: &Option<Source>) -> Option<usize> {
    match source {
        Some(Source::Pointer(keys)) => Some(insert_pointer(root, slots, keys)),
        _ => None,
    }
}

impl AccountingSources {
    /// Registers the pointers of the enabled features; `None` when neither
    /// cost nor dead-letter accounting needs the payload.
    pub(super) fn new(config: &Config, root: &mut Node, slots: &mut usize) -> Option<Self> {
        let mut sources =
            AccountingSources { shapes: Vec::new(), model: Vec::new(), dlq_source: None, dlq_reason: None };
        if config.cost.enabled {
            for shape in config.cost.usage.iter().take(usize::from(u8::MAX)) {
                let UsageSource { detect, input, output, cache_read, cache_write, reasoning, .. } = shape;
                sources.shapes.push(ShapeSlots {
                    detect: slot_of(root, slots, detect),
                    figures: [input, output, cache_read, cache_write, reasoning].map(|s| slot_of(root, slots, s)),
                });
            }
            sources.model = config.cost.model.iter().filter_map(|s| slot_of(root, slots, &Some(s.clone()))).collect();
        }
        if config.dlq.enabled {
            sources.dlq_source = slot_of(root, slots, &config.dlq.source_field);
            sources.dlq_reason = slot_of(root, slots, &config.dlq.reason_field);
        }
        let empty = sources.shapes.is_empty() && sources.dlq_source.is_none() && sources.dlq_reason.is_none();
        (!empty).then_some(sources)
    }

    /// Reads the captured values. Strings are moved out of their slots (no
    /// copy); counts may also arrive as decimal strings, as OTLP/JSON writes
    /// 64-bit integers.
    pub(super) fn resolve<'a>(&self, captured: &mut [Captured<'a>]) -> Accounting<'a> {
        let count = |captured: &[Captured<'a>], slot: Option<usize>| -> Option<u64> {
            match &captured[slot?] {
                Captured::Number(n) => Some(*n),
                Captured::Str(text) => text.parse().ok(),
                Captured::Escaped(text) => text.parse().ok(),
                _ => None,
            }
        };
        let mut accounting = Accounting::default();
        for (index, shape) in self.shapes.iter().enumerate() {
            // Most records carry no usage: two reads per shape decide that.
            let [input, output, cache_read, cache_write, reasoning] = shape.figures;
            let (input, output) = (count(captured, input), count(captured, output));
            if input.is_none() && output.is_none() {
                continue;
            }
            if shape.detect.is_some_and(|slot| matches!(captured[slot], Captured::Absent)) {
                continue;
            }
            accounting.usage = Some(RawUsage {
                shape: index as u8,
                input,
                output,
                cache_read: count(captured, cache_read),
                cache_write: count(captured, cache_write),
                reasoning: count(captured, reasoning),
            });
            break;
        }
        if accounting.usage.is_some() {
            accounting.model = self.model.iter().find_map(|slot| take_text(captured, *slot));
        }
        accounting.dlq_source = self.dlq_source.and_then(|slot| take_text(captured, slot));
        accounting.dlq_reason = self.dlq_reason.and_then(|slot| take_text(captured, slot));
        accounting
    }
}

fn take_text<'a>(captured: &mut [Captured<'a>], slot: usize) -> Option<Cow<'a, str>> {
    match std::mem::take(&mut captured[slot]) {
        Captured::Str(text) if !text.is_empty() => Some(Cow::Borrowed(text)),
        Captured::Escaped(text) if !text.is_empty() => Some(Cow::Owned(text.into_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::EnvelopeExtractor;

    const NO_HEADERS: &[(&str, &[u8])] = &[];

    fn extractor(toml: &str) -> EnvelopeExtractor {
        let config = Config::from_toml(toml, &|_| None).unwrap();
        EnvelopeExtractor::for_config(&config).unwrap()
    }

    fn usage(payload: &str) -> (Option<RawUsage>, Option<String>) {
        let extractor = extractor("");
        let envelope = extractor.extract(Some(payload.as_bytes()), NO_HEADERS);
        (envelope.accounting.usage, envelope.accounting.model.map(|m| m.into_owned()))
    }

    fn figures(
        input: u64,
        output: u64,
        read: Option<u64>,
        write: Option<u64>,
        reasoning: Option<u64>,
    ) -> [Option<u64>; 5] {
        [Some(input), Some(output), read, write, reasoning]
    }

    fn as_array(usage: RawUsage) -> [Option<u64>; 5] {
        [usage.input, usage.output, usage.cache_read, usage.cache_write, usage.reasoning]
    }

    #[test]
    fn every_default_shape_is_recognised_with_its_model() {
        // (payload, shape index in DEFAULT_STYLES, figures, model)
        let cases = [
            (
                r#"{"gen_ai.response.model":"gpt-4.1-2025","gen_ai.request.model":"gpt-4.1","gen_ai.usage.input_tokens":1000,
                    "gen_ai.usage.output_tokens":300,"gen_ai.usage.cache_read.input_tokens":600,
                    "gen_ai.usage.cache_creation.input_tokens":100,"gen_ai.usage.reasoning.output_tokens":50}"#,
                0,
                figures(1000, 300, Some(600), Some(100), Some(50)),
                "gpt-4.1-2025",
            ),
            (
                r#"{"gen_ai":{"request":{"model":"gemini-2.5-flash"},"usage":{"input_tokens":"2000","output_tokens":400,
                    "cache_read":{"input_tokens":500},"reasoning":{"output_tokens":120}}}}"#,
                1,
                figures(2000, 400, Some(500), None, Some(120)),
                "gemini-2.5-flash",
            ),
            (
                r#"{"model":"gpt-5","usage":{"input_tokens":900,"input_tokens_details":{"cached_tokens":800},
                    "output_tokens":700,"output_tokens_details":{"reasoning_tokens":640}}}"#,
                2,
                figures(900, 700, Some(800), None, Some(640)),
                "gpt-5",
            ),
            (
                r#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":1200,"completion_tokens":80,
                    "prompt_tokens_details":{"cached_tokens":1024},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
                3,
                figures(1200, 80, Some(1024), None, Some(0)),
                "gpt-4o-mini",
            ),
            (
                r#"{"model":"claude-sonnet-4-5","usage":{"input_tokens":25,"output_tokens":310,
                    "cache_read_input_tokens":4000,"cache_creation_input_tokens":1200}}"#,
                4,
                figures(25, 310, Some(4000), Some(1200), None),
                "claude-sonnet-4-5",
            ),
        ];
        for (payload, shape, expected, model) in cases {
            let (found, found_model) = usage(payload);
            let found = found.unwrap_or_else(|| panic!("no usage in {payload}"));
            assert_eq!(found.shape, shape, "{payload}");
            assert_eq!(as_array(found), expected, "{payload}");
            assert_eq!(found_model.as_deref(), Some(model), "{payload}");
        }
    }

    #[test]
    fn records_without_usage_have_none_and_counts_must_be_whole() {
        assert_eq!(usage(r#"{"event_type":"x","model":"gpt-4o"}"#), (None, None));
        let (found, _) = usage(r#"{"usage":{"prompt_tokens":12.0,"completion_tokens":-3}}"#);
        assert_eq!(as_array(found.unwrap()), [Some(12), None, None, None, None]);
        let (found, _) = usage(r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":true}}"#);
        assert_eq!(found, None);
        // Broken JSON yields nothing, not half a record.
        assert_eq!(usage(r#"{"usage":{"prompt_tokens":10,"completion_tokens":"#), (None, None));
    }

    #[test]
    fn envelope_fields_that_are_numbers_are_still_wrong_types() {
        let extractor = extractor("");
        let envelope = extractor.extract(Some(br#"{"event_type":7}"#), NO_HEADERS);
        assert!(envelope.problems.contains(crate::decode::EnvelopeProblem::InvalidFieldType));
    }

    #[test]
    fn dead_letter_fields_and_custom_shapes() {
        let extractor = extractor(
            r#"
            [cost]
            model = ["/llm/model"]
            [dlq]
            reason_field = "/error/type"
            source_field = "/error/topic"
            [[cost.usage]]
            style = "custom"
            input = "/llm/input_tokens"
            output = "/llm/output_tokens"
            cache_read = "/llm/cached_input_tokens"
            reasoning = "/llm/reasoning_tokens"
            output_includes_reasoning = false
            "#,
        );
        let payload =
            br#"{"llm":{"model":"m","input_tokens":10,"output_tokens":5,"cached_input_tokens":4,"reasoning_tokens":9},
            "error":{"type":"TimeoutError","topic":"orders"}}"#;
        let envelope = extractor.extract(Some(payload), NO_HEADERS);
        let accounting = envelope.accounting;
        assert_eq!(as_array(accounting.usage.unwrap()), figures(10, 5, Some(4), None, Some(9)));
        assert_eq!(accounting.model.as_deref(), Some("m"));
        assert_eq!(accounting.dlq_reason.as_deref(), Some("TimeoutError"));
        assert_eq!(accounting.dlq_source.as_deref(), Some("orders"));
        assert!(matches!(accounting.model, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn captures_stay_small_and_escaped_models_are_unescaped() {
        assert_eq!(std::mem::size_of::<Captured<'_>>(), 24);
        let (_, model) = usage(r#"{"model":"gpt-\u0034o","usage":{"prompt_tokens":"7"}}"#);
        assert_eq!(model.as_deref(), Some("gpt-4o"));
    }

    #[test]
    fn accounting_can_be_switched_off() {
        let extractor = extractor("[cost]\nenabled = false\n[dlq]\nenabled = false\n");
        let envelope = extractor.extract(Some(br#"{"model":"m","usage":{"prompt_tokens":1}}"#), NO_HEADERS);
        assert!(envelope.accounting.usage.is_none() && envelope.accounting.model.is_none());
    }
}
