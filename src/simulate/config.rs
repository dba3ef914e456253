//! Per-agent simulation profiles: processing delay, jitter, concurrency and the
//! LLM provider/model/token ranges each stage reports.
//!
//! Defaults are realistic for a support-triage and a document pipeline; they can
//! be overridden by an optional TOML file (`--config`) whose only table is
//! `[agents.<agent-name>]`, and then by `--model AGENT=MODEL` / `--delay-ms
//! AGENT=MS` flags, and finally by `--slow-agent`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use rand::Rng;
use serde::Deserialize;

use super::topology::Agent;

/// LLM call profile of one stage: what `llm` usage it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmProfile {
    pub provider: String,
    pub model: String,
    /// Inclusive `[min, max]` ranges.
    pub input_tokens: [u64; 2],
    pub output_tokens: [u64; 2],
    /// Share of input tokens served from the provider's prompt cache.
    pub cached_share: [f64; 2],
    pub reasoning_tokens: [u64; 2],
}

/// How one agent behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentProfile {
    /// Mean processing time per record (consumers only).
    pub delay_ms: u64,
    /// Relative jitter: the delay is drawn uniformly from `delay * (1 ± jitter)`.
    pub jitter: f64,
    /// Records processed concurrently by the agent (bounded in-flight window).
    pub concurrency: usize,
    pub llm: Option<LlmProfile>,
}

impl AgentProfile {
    pub fn sample_delay<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let j = self.jitter.clamp(0.0, 1.0);
        let factor = if j > 0.0 { rng.random_range(1.0 - j..=1.0 + j) } else { 1.0 };
        Duration::from_millis((self.delay_ms as f64 * factor).round() as u64)
    }
}

fn llm(
    provider: &str,
    model: &str,
    input: [u64; 2],
    output: [u64; 2],
    cached: [f64; 2],
    reasoning: [u64; 2],
) -> Option<LlmProfile> {
    Some(LlmProfile {
        provider: provider.into(),
        model: model.into(),
        input_tokens: input,
        output_tokens: output,
        cached_share: cached,
        reasoning_tokens: reasoning,
    })
}

/// Built-in profile of an agent.
pub fn default_profile(agent: Agent) -> AgentProfile {
    let (delay_ms, llm) = match agent {
        // Sources emit on a timer; their "delay" is unused.
        Agent::Intake => (0, None),
        Agent::Classifier => (300, llm("openai", "gpt-4o-mini", [350, 900], [30, 120], [0.0, 0.0], [0, 0])),
        Agent::Knowledge => {
            (1500, llm("anthropic", "claude-sonnet-4-5", [3000, 9500], [250, 800], [0.45, 0.9], [0, 600]))
        }
        Agent::Qa => (600, llm("openai", "gpt-4.1-mini", [1100, 2600], [60, 220], [0.0, 0.6], [0, 0])),
        Agent::Delivery => (100, None),
        Agent::DocExtractor => (0, llm("google", "gemini-2.5-flash", [2500, 12000], [400, 1600], [0.0, 0.2], [0, 400])),
        Agent::DocValidator => (200, None),
        Agent::EntityResolver => {
            (800, llm("anthropic", "claude-haiku-4-5", [1200, 3200], [120, 400], [0.3, 0.7], [0, 0]))
        }
    };
    AgentProfile { delay_ms, jitter: 0.4, concurrency: 64, llm }
}

/// Profiles of all agents, indexed by [`Agent`].
#[derive(Debug, Clone)]
pub struct Profiles {
    by_agent: Vec<AgentProfile>,
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles { by_agent: Agent::ALL.iter().map(|a| default_profile(*a)).collect() }
    }
}

impl Profiles {
    fn idx(agent: Agent) -> usize {
        Agent::ALL.iter().position(|a| *a == agent).unwrap_or(0)
    }

    pub fn get(&self, agent: Agent) -> &AgentProfile {
        &self.by_agent[Self::idx(agent)]
    }

    pub fn get_mut(&mut self, agent: Agent) -> &mut AgentProfile {
        &mut self.by_agent[Self::idx(agent)]
    }

    /// Applies a TOML file with `[agents.<name>]` tables.
    pub fn apply_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading simulator config {}", path.display()))?;
        self.apply_toml(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn apply_toml(&mut self, text: &str) -> anyhow::Result<()> {
        let file: FileConfig = toml::from_str(text)?;
        for (name, o) in file.agents {
            let agent = parse_agent(&name)?;
            let p = self.get_mut(agent);
            if let Some(v) = o.delay_ms {
                p.delay_ms = v;
            }
            if let Some(v) = o.jitter {
                p.jitter = v.clamp(0.0, 1.0);
            }
            if let Some(v) = o.concurrency {
                p.concurrency = v.max(1);
            }
            let touches_llm = o.provider.is_some()
                || o.model.is_some()
                || o.input_tokens.is_some()
                || o.output_tokens.is_some()
                || o.cached_share.is_some()
                || o.reasoning_tokens.is_some();
            if !touches_llm {
                continue;
            }
            let Some(l) = p.llm.as_mut() else {
                bail!("agent {name} does not call an llm");
            };
            if let Some(v) = o.provider {
                l.provider = v;
            }
            if let Some(v) = o.model {
                l.model = v;
            }
            if let Some(v) = o.input_tokens {
                l.input_tokens = ordered(v);
            }
            if let Some(v) = o.output_tokens {
                l.output_tokens = ordered(v);
            }
            if let Some([a, b]) = o.cached_share {
                l.cached_share = [a.min(b).clamp(0.0, 1.0), a.max(b).clamp(0.0, 1.0)];
            }
            if let Some(v) = o.reasoning_tokens {
                l.reasoning_tokens = ordered(v);
            }
        }
        Ok(())
    }

    /// Applies a `--model AGENT=MODEL` flag.
    pub fn apply_model_flag(&mut self, flag: &str) -> anyhow::Result<()> {
        let (agent, model) = split_flag(flag, "--model")?;
        match self.get_mut(agent).llm.as_mut() {
            Some(l) => l.model = model.to_owned(),
            None => bail!("--model {flag}: agent {} does not call an llm", agent.name()),
        }
        Ok(())
    }

    /// Applies a `--delay-ms AGENT=MS` flag.
    pub fn apply_delay_flag(&mut self, flag: &str) -> anyhow::Result<()> {
        let (agent, ms) = split_flag(flag, "--delay-ms")?;
        self.get_mut(agent).delay_ms = ms.parse().with_context(|| format!("--delay-ms {flag}: not a number of ms"))?;
        Ok(())
    }

    /// Makes one consumer agent slow: delay × `factor`, one record at a time.
    pub fn make_slow(&mut self, name: &str, factor: f64) -> anyhow::Result<Agent> {
        let agent = parse_agent(name)?;
        if agent.input().is_none() {
            bail!("--slow-agent {name}: only consuming agents can be slowed (not a source)");
        }
        let p = self.get_mut(agent);
        p.delay_ms = ((p.delay_ms.max(1) as f64) * factor.max(1.0)).round() as u64;
        p.concurrency = 1;
        Ok(agent)
    }
}

fn ordered([a, b]: [u64; 2]) -> [u64; 2] {
    [a.min(b), a.max(b)]
}

pub fn parse_agent(name: &str) -> anyhow::Result<Agent> {
    Agent::from_name(name).with_context(|| {
        let known: Vec<&str> = Agent::ALL.iter().map(|a| a.name()).collect();
        format!("unknown agent {name:?} (known: {})", known.join(", "))
    })
}

fn split_flag<'a>(flag: &'a str, what: &str) -> anyhow::Result<(Agent, &'a str)> {
    let (name, value) = flag.split_once('=').with_context(|| format!("{what} {flag}: expected AGENT=VALUE"))?;
    Ok((parse_agent(name.trim())?, value.trim()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    agents: BTreeMap<String, AgentOverride>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentOverride {
    delay_ms: Option<u64>,
    jitter: Option<f64>,
    concurrency: Option<usize>,
    provider: Option<String>,
    model: Option<String>,
    input_tokens: Option<[u64; 2]>,
    output_tokens: Option<[u64; 2]>,
    cached_share: Option<[f64; 2]>,
    reasoning_tokens: Option<[u64; 2]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_merge_into_defaults() {
        let mut p = Profiles::default();
        p.apply_toml(
            r#"
            [agents.knowledge-agent]
            delay_ms = 2000
            model = "gpt-4.1"
            provider = "openai"
            input_tokens = [9000, 4000]
            [agents.delivery-agent]
            concurrency = 4
            "#,
        )
        .unwrap();
        let k = p.get(Agent::Knowledge);
        assert_eq!(k.delay_ms, 2000);
        let l = k.llm.as_ref().unwrap();
        assert_eq!((l.provider.as_str(), l.model.as_str()), ("openai", "gpt-4.1"));
        assert_eq!(l.input_tokens, [4000, 9000]);
        assert_eq!(p.get(Agent::Delivery).concurrency, 4);
        assert_eq!(p.get(Agent::Qa), &default_profile(Agent::Qa));
    }

    #[test]
    fn rejects_bad_config() {
        let mut p = Profiles::default();
        assert!(p.apply_toml("[agents.nobody]\ndelay_ms = 1").is_err());
        assert!(p.apply_toml("[agents.qa-agent]\ndelai_ms = 1").is_err());
        assert!(p.apply_toml("[agents.delivery-agent]\nmodel = \"x\"").is_err());
        assert!(p.apply_model_flag("delivery-agent=x").is_err());
        assert!(p.apply_delay_flag("qa-agent").is_err());
        assert!(p.make_slow("intake-agent", 20.0).is_err());
    }

    #[test]
    fn flags_and_slow_agent() {
        let mut p = Profiles::default();
        p.apply_model_flag("classifier-agent=gpt-4.1-nano").unwrap();
        p.apply_delay_flag("qa-agent=50").unwrap();
        assert_eq!(p.get(Agent::Classifier).llm.as_ref().unwrap().model, "gpt-4.1-nano");
        assert_eq!(p.get(Agent::Qa).delay_ms, 50);
        let a = p.make_slow("knowledge-agent", 20.0).unwrap();
        assert_eq!(a, Agent::Knowledge);
        assert_eq!(p.get(Agent::Knowledge).delay_ms, 30_000);
        assert_eq!(p.get(Agent::Knowledge).concurrency, 1);
    }

    #[test]
    fn delay_stays_within_jitter() {
        let p = default_profile(Agent::Knowledge);
        let mut rng = rand::rng();
        for _ in 0..200 {
            let d = p.sample_delay(&mut rng).as_millis() as u64;
            assert!((900..=2100).contains(&d), "{d}");
        }
    }
}
