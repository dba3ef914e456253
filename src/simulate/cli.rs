//! Command-line options of `pipewarden simulate` and their validation into a
//! run [`Plan`]: selected agents, merged agent profiles, traffic ratios and
//! the topics to create.

use std::path::PathBuf;

use anyhow::ensure;

use super::agent::Ratios;
use super::config::Profiles;
use super::kafka;
use super::topology::{Agent, Flow};

/// Which pipeline(s) to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    SupportTriage,
    DocProcessing,
    All,
}

/// Options of `pipewarden simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Pipeline(s) to run.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,
    /// New support tickets per second (0 disables intake).
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// New documents per second (0 disables the document extractor).
    #[arg(long, default_value_t = 1.0)]
    pub doc_rate: f64,
    /// Stop after this many seconds (0 = until Ctrl-C / SIGTERM).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
    /// Share of emitted events replaced by a poison record.
    #[arg(long, default_value_t = 0.02)]
    pub poison_ratio: f64,
    /// Share of good events whose processing fails (dead-lettered).
    #[arg(long, default_value_t = 0.01)]
    pub failure_ratio: f64,
    /// Share of drafted answers the QA agent rejects.
    #[arg(long, default_value_t = 0.15)]
    pub reject_ratio: f64,
    /// Share of extracted documents that fail validation.
    #[arg(long, default_value_t = 0.2)]
    pub doc_fail_ratio: f64,
    /// Make one consuming agent slow (delay × --slow-factor, one record at a
    /// time) so its consumer lag grows, e.g. `knowledge-agent`.
    #[arg(long, value_name = "AGENT")]
    pub slow_agent: Option<String>,
    /// Delay multiplier for --slow-agent.
    #[arg(long, default_value_t = 20.0)]
    pub slow_factor: f64,
    /// Prefix prepended to every topic and consumer group name.
    #[arg(long, default_value = "")]
    pub topic_prefix: String,
    /// Stop intake after N tickets, let the pipeline drain, then exit.
    #[arg(long, value_name = "N")]
    pub max_tickets: Option<u64>,
    /// Stop the document extractor after N documents (defaults to --max-tickets).
    #[arg(long, value_name = "N")]
    pub max_docs: Option<u64>,
    /// Partitions of topics created by the simulator.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// TOML file with `[agents.<agent-name>]` tables (delay_ms, jitter,
    /// concurrency, provider, model, input_tokens, output_tokens,
    /// cached_share, reasoning_tokens).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override an agent's model, e.g. `--model knowledge-agent=gpt-4.1` (repeatable).
    #[arg(long = "model", value_name = "AGENT=MODEL")]
    pub models: Vec<String>,
    /// Override an agent's mean delay, e.g. `--delay-ms qa-agent=900` (repeatable).
    #[arg(long = "delay-ms", value_name = "AGENT=MS")]
    pub delays: Vec<String>,
}

/// Validated run configuration.
pub(super) struct Plan {
    pub args: SimulateArgs,
    pub agents: Vec<Agent>,
    pub profiles: Profiles,
    pub ratios: Ratios,
}

impl Plan {
    pub fn new(args: SimulateArgs) -> anyhow::Result<Plan> {
        for (name, v) in [
            ("--poison-ratio", args.poison_ratio),
            ("--failure-ratio", args.failure_ratio),
            ("--reject-ratio", args.reject_ratio),
            ("--doc-fail-ratio", args.doc_fail_ratio),
        ] {
            ensure!((0.0..=1.0).contains(&v), "{name} must be between 0 and 1, got {v}");
        }
        ensure!(args.rate >= 0.0 && args.rate.is_finite(), "--rate must be >= 0");
        ensure!(args.doc_rate >= 0.0 && args.doc_rate.is_finite(), "--doc-rate must be >= 0");
        ensure!(args.partitions >= 1, "--partitions must be >= 1");
        let mut profiles = Profiles::default();
        if let Some(path) = &args.config {
            profiles.apply_file(path)?;
        }
        for m in &args.models {
            profiles.apply_model_flag(m)?;
        }
        for d in &args.delays {
            profiles.apply_delay_flag(d)?;
        }
        let agents: Vec<Agent> = Agent::ALL
            .into_iter()
            .filter(|a| match args.scenario {
                Scenario::All => true,
                Scenario::SupportTriage => a.flow() == Flow::Support,
                Scenario::DocProcessing => a.flow() == Flow::Doc,
            })
            .collect();
        if let Some(name) = &args.slow_agent {
            let slow = profiles.make_slow(name, args.slow_factor)?;
            if !agents.contains(&slow) {
                tracing::warn!(agent = %name, "slow agent is not part of the selected scenario");
            }
        }
        let ratios = Ratios {
            poison: args.poison_ratio,
            failure: args.failure_ratio,
            reject: args.reject_ratio,
            doc_fail: args.doc_fail_ratio,
        };
        Ok(Plan { args, agents, profiles, ratios })
    }

    pub fn topic(&self, name: &str) -> String {
        kafka::topic_name(&self.args.topic_prefix, name)
    }

    /// Every topic the selected agents produce to, plus the dead-letter topics.
    pub fn topics(&self) -> Vec<String> {
        let mut topics = Vec::new();
        for a in &self.agents {
            let names = a.outputs().iter().map(|t| t.as_str()).chain([a.flow().dlq_topic()]);
            for name in names {
                let t = self.topic(name);
                if !topics.contains(&t) {
                    topics.push(t);
                }
            }
        }
        topics
    }

    /// Rate and item limit of a source agent (rate 0 = disabled).
    pub fn source_limits(&self, agent: Agent) -> (f64, Option<u64>) {
        match agent {
            Agent::DocExtractor => (self.args.doc_rate, self.args.max_docs.or(self.args.max_tickets)),
            _ => (self.args.rate, self.args.max_tickets),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn plan(argv: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("simulate").chain(argv.iter().copied()))?;
        Plan::new(cli.args)
    }

    #[test]
    fn topics_follow_event_types_and_prefix() {
        let p = plan(&["--topic-prefix", "t1.", "--scenario", "doc-processing"]).unwrap();
        assert_eq!(
            p.topics(),
            [
                "t1.doc.extracted",
                "t1.doc.dlq",
                "t1.doc.validated",
                "t1.doc.validation.failed",
                "t1.doc.entities.resolved"
            ]
        );
        assert_eq!(p.agents, [Agent::DocExtractor, Agent::DocValidator, Agent::EntityResolver]);
        assert_eq!(kafka::group_id("t1.", Agent::Qa), "t1.sim.qa-agent");
        let all = plan(&[]).unwrap();
        assert_eq!(all.topics().len(), 12);
        assert!(all.topics().contains(&"support.answer.rejected".to_string()));
    }

    #[test]
    fn max_docs_defaults_to_max_tickets() {
        let p = plan(&["--max-tickets", "30"]).unwrap();
        assert_eq!(p.source_limits(Agent::DocExtractor), (1.0, Some(30)));
        assert_eq!(p.source_limits(Agent::Intake), (5.0, Some(30)));
        let p = plan(&["--max-tickets", "30", "--max-docs", "4"]).unwrap();
        assert_eq!(p.source_limits(Agent::DocExtractor).1, Some(4));
    }

    #[test]
    fn rejects_invalid_options() {
        assert!(plan(&["--poison-ratio", "1.5"]).is_err());
        assert!(plan(&["--slow-agent", "nobody"]).is_err());
        assert!(plan(&["--rate", "-1"]).is_err());
        let p = plan(&["--slow-agent", "classifier-agent", "--model", "qa-agent=o4-mini"]).unwrap();
        assert_eq!(p.profiles.get(Agent::Classifier).delay_ms, 6000);
        assert_eq!(p.profiles.get(Agent::Qa).llm.as_ref().unwrap().model, "o4-mini");
    }
}
