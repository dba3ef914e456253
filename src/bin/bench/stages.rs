//! `pipewarden-bench stages`: nanoseconds per record of the per-record
//! stages (envelope, validation, metrics, cost, dead letters, correlation),
//! cumulatively, on the benchmark's JSON events in memory: no broker, so the
//! figure is the processing cost alone and the run is repeatable under
//! valgrind's callgrind (`--rounds 1 --records 20000`). Run a release build;
//! timings depend on the machine, so this is a benchmark, not a test.

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use pipewarden::config::Config;
use pipewarden::cost::{Budgets, CostStage};
use pipewarden::decode::EnvelopeExtractor;
use pipewarden::dlq::DlqStage;
use pipewarden::metrics::Metrics;
use pipewarden::observe::{Observer, Record};
use pipewarden::tape::Tape;
use pipewarden::validate::{Validator, Verdict};

use crate::preload::EventGen;
use crate::runs::{Config as RunConfig, SchemaDir};

const TOPIC: &str = "bench.stages";
const NO_HEADERS: &[(&str, &[u8])] = &[];

#[derive(clap::Args)]
pub struct StagesArgs {
    /// Distinct events (generated once, then read in every round).
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 500)]
    size: usize,
    /// Timed rounds per level; the fastest is reported.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Only this many stages (1 = envelope … 6 = all), e.g. for a profile.
    #[arg(long)]
    only: Option<usize>,
}

/// How far down the stage list one timed loop goes.
const LEVELS: [&str; 6] = [
    "envelope",
    "+ validation (JSON Schema, contract, PII)",
    "+ metrics (observe)",
    "+ cost",
    "+ dead letters",
    "+ correlation",
];

struct Stages {
    extractor: EnvelopeExtractor,
    tape: Tape,
    validator: Validator,
    observer: Observer,
    cost: CostStage,
    dlq: DlqStage,
    correlation: pipewarden::correlate::Input,
}

impl Stages {
    /// One record through the first `level` stages; returns whether it was valid.
    fn run(&mut self, level: usize, offset: i64, payload: &[u8], now_us: i64) -> bool {
        let record = Record {
            topic: TOPIC,
            partition: 0,
            offset,
            timestamp_ms: Some(now_us / 1000),
            payload: Some(payload),
            headers: NO_HEADERS,
        };
        if level == 1 {
            // What the ingest loop does for a topic without a policy: the
            // one parse and the envelope's captures from it.
            let parsed = self.extractor.json_text(Some(payload)).filter(|text| self.tape.parse(text));
            let envelope = self.extractor.extract_parsed(Some(payload), NO_HEADERS, parsed.map(|t| (&self.tape, t)));
            return envelope.problems.is_empty();
        }
        let (envelope, checked) = self.validator.prepare(&self.extractor, TOPIC, None, Some(payload), NO_HEADERS);
        let valid = checked.verdict == Verdict::Valid;
        if level >= 3 {
            self.observer.observe(&record, &envelope, &checked, now_us);
        }
        let event_cost = if level >= 4 { self.cost.observe(TOPIC, &envelope, now_us) } else { None };
        if level >= 5 {
            self.dlq.observe(&record, &envelope, now_us);
        }
        if level >= 6 {
            let mut observation = pipewarden::correlate::observation(&record, &envelope, &checked);
            if let Some(cost) = &event_cost {
                observation.set_cost(cost);
            }
            std::hint::black_box(self.correlation.observe(&observation, now_us / 1000));
        }
        valid
    }
}

pub fn run(args: &StagesArgs) -> anyhow::Result<()> {
    let schemas = SchemaDir::create(TOPIC)?;
    let toml = RunConfig::JsonSchema.governance(&schemas.path);
    let config = Config::from_toml(&format!("[kafka]\nbootstrap_servers = '127.0.0.1:1'\n{toml}"), &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Arc::new(Metrics::new(config.metrics.max_label_values));
    let budgets = Arc::new(Budgets::new(&config, metrics.clone())?);
    let correlation = pipewarden::correlate::scaleout::start(&config, metrics.clone(), budgets.clone())?.input;
    let cache =
        Arc::new(pipewarden::validate::schema_cache(&config.registry).map_err(|e| anyhow::anyhow!("schemas: {e}"))?);
    let mut stages = Stages {
        extractor: EnvelopeExtractor::for_config(&config)?,
        tape: Tape::default(),
        validator: Validator::new(&config, cache),
        observer: Observer::new(&config, metrics.clone()),
        cost: CostStage::new(&config, metrics.clone(), budgets),
        dlq: DlqStage::new(&config, metrics),
        correlation,
    };

    let mut events = EventGen::new(7, args.size);
    let payloads: Vec<Vec<u8>> = (0..args.records)
        .map(|_| {
            events.next_event();
            events.payload.clone().into_bytes()
        })
        .collect();
    let mean_size = payloads.iter().map(Vec::len).sum::<usize>() as f64 / payloads.len() as f64;

    // The schema folder is loaded by the cache's worker: wait for a verdict.
    let now_us = || time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1000;
    let started = Instant::now();
    loop {
        let (_, checked) = stages.validator.prepare(&stages.extractor, TOPIC, None, Some(&payloads[0]), NO_HEADERS);
        match checked.verdict {
            Verdict::Wait if started.elapsed().as_secs() < 10 => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Verdict::Valid => break,
            other => bail!("the first event is not valid: {other:?}"),
        }
    }

    let levels: Vec<usize> = match args.only {
        Some(level) if (1..=LEVELS.len()).contains(&level) => vec![level],
        Some(level) => bail!("--only must be 1..={}, got {level}", LEVELS.len()),
        None => (1..=LEVELS.len()).collect(),
    };
    let mut best = vec![f64::MAX; LEVELS.len()];
    let mut offset = 0i64;
    for _ in 0..args.rounds {
        // Levels interleaved within a round, so drift in machine load hits all alike.
        for &level in &levels {
            let now = now_us();
            let started = Instant::now();
            let mut valid = 0usize;
            for payload in &payloads {
                valid += usize::from(stages.run(level, offset, payload, now));
                offset += 1;
            }
            let ns = started.elapsed().as_nanos() as f64 / payloads.len() as f64;
            if level >= 2 && valid != payloads.len() {
                bail!("{} of {} events were not valid at level {level}", payloads.len() - valid, payloads.len());
            }
            best[level - 1] = best[level - 1].min(ns);
        }
    }
    println!(
        "{} events of {mean_size:.0} bytes, fastest of {} rounds, cumulative ns per record:",
        payloads.len(),
        args.rounds
    );
    let mut previous = 0.0;
    for &level in &levels {
        let ns = best[level - 1];
        println!("  {:<44} {ns:>7.0} ns  (+{:.0})", LEVELS[level - 1], ns - previous);
        previous = ns;
    }
    if let Some(&last) = levels.last() {
        println!("  single-thread ceiling: {:.0} events/s", 1e9 / best[last - 1]);
    }
    drop(schemas);
    Ok(())
}
