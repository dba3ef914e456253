//! `pipewarden-bench` (`make bench`): ingest throughput of pipewarden against
//! a raw librdkafka consumer, on the same preloaded topics, in the same run,
//! with and without validation.
//!
//! 1. Preload: make sure the JSON topic holds exactly `--records` JSON agent
//!    events of `--size` bytes over `--partitions` partitions, and (for the
//!    Avro run) a second topic the same events as Confluent wire-format Avro
//!    (skipped when a topic already does, so reruns are fast). A schema
//!    folder (JSON Schema by subject, Avro by ID) is written to a temporary
//!    directory.
//! 2. Warm-up: one untimed raw read per topic, so that neither side pays for
//!    a cold page cache or a cold broker JIT.
//! 3. Rounds: for each pipewarden configuration (`--runs`: no validation;
//!    JSON Schema + contract + PII; Avro by schema ID), (a) a raw
//!    `BaseConsumer` in a fresh group that only counts the records of the
//!    configuration's topic, then (b) `pipewarden run` with that
//!    configuration in a fresh group, watched through
//!    `pipewarden_records_total` on /metrics until every record is counted;
//!    then its verdicts are checked: every record must be `valid`. Both run
//!    as child processes, so CPU time and peak RSS are measured the same way
//!    (from /proc), and both use the same fetch settings.
//! 4. Report: a table on stdout (one column per consumer), one summary line
//!    per configuration, and JSON at `--out`.
//!
//! `pipewarden-bench lag` (`make bench-lag`) times the consumer lag cycle
//! instead; see `bench/lag.rs`. `pipewarden-bench extract` times envelope
//! extraction with and without the cost pointers; see `bench/extract.rs`.

// A binary's root resolves modules next to itself (src/bin/), so the
// helpers in src/bin/bench/ are named explicitly.
#[path = "bench/daemon.rs"]
mod daemon;
#[path = "bench/extract.rs"]
mod extract;
#[path = "bench/lag.rs"]
mod lag;
#[path = "bench/preload.rs"]
mod preload;
#[path = "bench/raw.rs"]
mod raw;
#[path = "bench/runs.rs"]
mod runs;
#[path = "bench/scrape.rs"]
mod scrape;
#[path = "bench/stages.rs"]
mod stages;
#[path = "bench/sys.rs"]
mod sys;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use rand::Rng as _;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use runs::{Config, Data, RunSet};

/// librdkafka properties that both consumers use: the ones pipewarden tunes
/// by default; everything else stays at librdkafka's defaults. `--kafka-property` adds to or overrides them, for
/// both consumers alike.
pub const FETCH_PROPERTIES: &[(&str, &str)] = pipewarden::config::TUNED_PROPERTIES;

/// Parses a `KEY=VALUE` librdkafka property.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Parser)]
#[command(name = "pipewarden-bench", about = "Ingest throughput of pipewarden against a raw librdkafka consumer")]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,
    #[command(flatten)]
    args: Args,
}

#[derive(Subcommand)]
enum Child {
    /// Internal: the raw consumer of one round (run as a child process).
    #[command(hide = true)]
    RawConsumer(raw::RawArgs),
    /// Times lag cycles over many groups and partitions created for the run
    /// (default 1,000 groups over 2,000 partitions), then deletes them.
    Lag(lag::LagArgs),
    /// Times envelope extraction with and without the cost and dead-letter
    /// pointers (no broker needed).
    Extract,
    /// Times the per-record stages cumulatively on in-memory events (no
    /// broker needed; repeatable under callgrind).
    Stages(stages::StagesArgs),
    /// Times rendering /metrics with 20,000 series (no broker needed).
    Scrape(scrape::ScrapeArgs),
}

#[derive(clap::Args)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Records in each topic (every consumer reads all of them).
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
    records: u64,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    partitions: i32,
    /// Payload size in bytes (JSON events and Avro records are padded to
    /// exactly this size; below ~400 (JSON) or ~200 (Avro) they keep their
    /// natural size).
    #[arg(long, default_value_t = 500)]
    size: usize,
    /// JSON topic name [default: bench.events.<records>.<partitions>.<size>];
    /// the Avro topic is <topic>.avro-<schema fingerprint> [default:
    /// bench.avro.<records>.<partitions>.<size>.<fingerprint>].
    /// Reused when it holds exactly the expected records, else recreated.
    #[arg(long)]
    topic: Option<String>,
    /// pipewarden configurations to measure (comma-separated): all;
    /// ingest (no validation); json (JSON Schema + contract + PII, JSON
    /// topic); avro (wire-format Avro by schema ID, Avro topic).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    runs: Vec<RunSet>,
    /// Rounds of (raw, pipewarden) per configuration; with more than one the
    /// medians are reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// pipewarden binary [default: `pipewarden` next to this executable].
    #[arg(long)]
    pipewarden_bin: Option<PathBuf>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench/ingest.json")]
    out: PathBuf,
    /// How long each consumer may take to read every record, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// How often pipewarden's /metrics is scraped, in milliseconds.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(10..=1000))]
    scrape_interval_ms: u64,
    /// Skip the untimed warm-up reads.
    #[arg(long)]
    no_warmup: bool,
    /// Extra librdkafka consumer property KEY=VALUE for both consumers
    /// (repeatable), e.g. fetch.queue.backoff.ms=10.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,
    /// TOML file appended to pipewarden's configuration in every run, e.g.
    /// an `[otlp]` section to measure ingest with span export on.
    #[arg(long, value_name = "FILE")]
    extra_config: Option<PathBuf>,
}

/// One raw consumer read, measured right before the pipewarden run it is
/// paired with.
#[derive(Serialize)]
struct RawRun {
    data: Data,
    topic: String,
    /// The configuration measured right after it.
    paired_with: Config,
    result: raw::RawResult,
}

/// One pipewarden run.
#[derive(Serialize)]
struct PipewardenRun {
    config: Config,
    data: Data,
    topic: String,
    result: daemon::PipewardenResult,
    /// Events/s of the raw read right before it (same topic).
    paired_raw_events_per_second: f64,
    /// pipewarden events/s ÷ paired raw events/s.
    paired_ratio: f64,
    /// Every record got the verdict `valid`.
    all_valid: bool,
}

#[derive(Serialize)]
struct Round {
    round: u32,
    raw: Vec<RawRun>,
    pipewarden: Vec<PipewardenRun>,
}

/// Medians over rounds of one consumer on one topic.
#[derive(Serialize, Clone, Copy)]
struct Medians {
    events_per_second: f64,
    first_to_last_seconds: f64,
    total_seconds: f64,
    cpu_seconds: f64,
    cpu_us_per_record: f64,
    peak_rss_kib: f64,
    /// CPU seconds between first and last record ÷ that time.
    cores_busy: f64,
    mean_payload_bytes: f64,
}

#[derive(Serialize)]
struct TopicReport {
    data: Data,
    topic: String,
    /// "json", or "confluent-avro (schema id N)".
    encoding: String,
    preload: preload::Preload,
    warmup_events_per_second: Option<f64>,
    /// The raw consumer on this topic (all its reads).
    raw: Medians,
}

#[derive(Serialize)]
struct ConfigReport {
    config: Config,
    name: &'static str,
    data: Data,
    topic: String,
    /// Its `[[policies]]` entry.
    policy: &'static str,
    median: Medians,
    /// Median raw events/s on the same topic.
    raw_events_per_second: f64,
    /// Median pipewarden events/s ÷ median raw events/s (same topic).
    ratio: f64,
    /// Per round: pipewarden ÷ the raw read right before it.
    paired_ratios: Vec<f64>,
    /// Stalls: share of scrape intervals without progress (median).
    idle_scrape_fraction: f64,
    /// Every record of every round got the verdict `valid`.
    all_valid: bool,
    /// Median over rounds of the processing-time p99, in microseconds.
    processing_p99_us: f64,
}

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    timestamp: String,
    machine: sys::Machine,
    pipewarden_bin: String,
    pipewarden_version: Option<String>,
    git: Option<String>,
    bootstrap: String,
    records: u64,
    partitions: i32,
    /// Target payload size.
    payload_bytes: usize,
    /// librdkafka properties both consumers set beyond their own
    /// group/offset settings.
    consumer_properties: BTreeMap<String, String>,
    scrape_interval_ms: u64,
    /// The schemas the validating runs use (written to a schema folder).
    json_schema: serde_json::Value,
    avro_schema: serde_json::Value,
    avro_schema_id: u32,
    topics: Vec<TopicReport>,
    configurations: Vec<ConfigReport>,
    /// Median pipewarden events/s ÷ median raw events/s, per configuration.
    ratios: BTreeMap<&'static str, f64>,
    rounds: Vec<Round>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.child {
        Some(Child::RawConsumer(args)) => raw::consume(&args).map(|()| ExitCode::SUCCESS),
        Some(Child::Lag(args)) => lag::run(&args).map(|()| ExitCode::SUCCESS),
        Some(Child::Extract) => extract::run().map(|()| ExitCode::SUCCESS),
        Some(Child::Stages(args)) => stages::run(&args).map(|()| ExitCode::SUCCESS),
        Some(Child::Scrape(args)) => scrape::run(&args).map(|()| ExitCode::SUCCESS),
        None => bench(&cli.args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pipewarden-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_topic_name(topic: &str) -> anyhow::Result<()> {
    if topic.is_empty()
        || topic.len() > 249
        || !topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        bail!("invalid topic name {topic:?} (Kafka allows up to 249 of [a-zA-Z0-9._-])");
    }
    Ok(())
}

fn bench(args: &Args) -> anyhow::Result<ExitCode> {
    let this = std::env::current_exe().context("cannot locate this executable")?;
    let pipewarden_bin = match &args.pipewarden_bin {
        Some(bin) => bin.clone(),
        None => this.with_file_name("pipewarden"),
    };
    if !pipewarden_bin.is_file() {
        bail!(
            "{} not found (build it: cargo build --release --bin pipewarden, or pass --pipewarden-bin)",
            pipewarden_bin.display()
        );
    }
    let configs = Config::selected(&args.runs);
    let datas: Vec<Data> = Data::ALL.into_iter().filter(|d| configs.iter().any(|c| c.data() == *d)).collect();
    let fingerprint = runs::avro_fingerprint();
    let topic_of = |data: Data| match (data, &args.topic) {
        (Data::Json, Some(topic)) => topic.clone(),
        (Data::Json, None) => format!("bench.events.{}.{}.{}", args.records, args.partitions, args.size),
        (Data::Avro, Some(topic)) => format!("{topic}.avro-{fingerprint}"),
        (Data::Avro, None) => format!("bench.avro.{}.{}.{}.{fingerprint}", args.records, args.partitions, args.size),
    };
    for data in &datas {
        check_topic_name(&topic_of(*data))?;
    }
    let avro_schema = apache_avro::Schema::parse_str(preload::AVRO_SCHEMA).context("the bench's Avro schema")?;

    let machine = sys::machine();
    println!(
        "pipewarden-bench: {} records of {} B over {} partitions per topic, broker {}",
        args.records, args.size, args.partitions, args.bootstrap
    );
    println!("runs: {}", configs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "));
    println!("machine: {} CPUs, {}; pipewarden: {}", machine.nproc, machine.cpu_model, pipewarden_bin.display());

    let mut properties: BTreeMap<String, String> =
        FETCH_PROPERTIES.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    properties.extend(args.kafka_properties.iter().cloned());
    let property_list: Vec<(String, String)> = properties.clone().into_iter().collect();
    println!(
        "consumer properties (both): {}",
        property_list.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    );

    let kafka = preload::Kafka::connect(&args.bootstrap)?;
    let mut preloads = BTreeMap::new();
    for &data in &datas {
        let topic = topic_of(data);
        let encoding = match data {
            Data::Json => preload::Encoding::Json,
            Data::Avro => preload::Encoding::Avro { schema: avro_schema.clone(), id: runs::AVRO_SCHEMA_ID },
        };
        println!("{} topic: {topic}", data.label());
        preloads.insert(data, kafka.ensure_topic(&topic, args.records, args.partitions, args.size, &encoding)?);
    }
    let schemas = runs::SchemaDir::create(&topic_of(Data::Json))?;
    println!(
        "schema folder: {} ({}-value.json, ids/{}.avsc)",
        schemas.path.display(),
        topic_of(Data::Json),
        runs::AVRO_SCHEMA_ID
    );

    let timeout = Duration::from_secs(args.timeout_secs);
    let extra_config = match &args.extra_config {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => String::new(),
    };
    let mut groups = Vec::new();
    let mut group = |side: &str| {
        let name = format!("bench-{side}-{:016x}", rand::rng().random::<u64>());
        groups.push(name.clone());
        name
    };

    let mut warmups = BTreeMap::new();
    if !args.no_warmup {
        for &data in &datas {
            let r = raw::run(
                &this,
                &args.bootstrap,
                &topic_of(data),
                args.records,
                &group("warmup"),
                args.timeout_secs,
                &property_list,
            )?;
            println!("warm-up read of the {} topic (untimed): {:.0} events/s", data.label(), r.events_per_second);
            warmups.insert(data, r.events_per_second);
        }
    }

    let mut rounds = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for round in 1..=args.rounds {
        let mut this_round = Round { round, raw: Vec::new(), pipewarden: Vec::new() };
        for &config in &configs {
            let data = config.data();
            let topic = topic_of(data);
            let raw = raw::run(
                &this,
                &args.bootstrap,
                &topic,
                args.records,
                &group("raw"),
                args.timeout_secs,
                &property_list,
            )?;
            println!(
                "round {round}: raw {:<6} {:>10.0} events/s  ({:.2} s first→last, {:.2} s with group join)",
                data.label(),
                raw.events_per_second,
                raw.first_to_last_seconds,
                raw.total_seconds
            );
            let governance = format!("{}\n{extra_config}", config.governance(&schemas.path));
            let pw = daemon::run(&daemon::Run {
                bin: &pipewarden_bin,
                bootstrap: &args.bootstrap,
                topic: &topic,
                records: args.records,
                group: &group("pw"),
                properties: &property_list,
                governance: &governance,
                scrape_interval: Duration::from_millis(args.scrape_interval_ms),
                timeout,
            })
            .with_context(|| format!("round {round}: {}", config.name()))?;
            let count = |verdict: &str| pw.verdicts.get(verdict).copied().unwrap_or(0);
            let valid = count("valid");
            let all_valid = valid == args.records && pw.verdicts.values().sum::<u64>() == args.records;
            println!(
                "round {round}: {:<41} {:>10.0} events/s  ({:.2} s first→last, {:.2} s with start-up; \
                 processing p99 {:.1} µs, {:.2}% within 50 µs; exit code {}; verdicts {})",
                config.name(),
                pw.events_per_second,
                pw.first_to_last_seconds,
                pw.total_seconds,
                pw.processing_p99_us,
                pw.processing_within_50us * 100.0,
                pw.exit_code.map_or("none (signal)".into(), |c| c.to_string()),
                format_counts(&pw.verdicts),
            );
            if !all_valid {
                let problem = format!(
                    "round {round}, {}: {valid} of {} records valid (verdicts {}; invalid by reason {}; \
                     unverified by reason {}; quarantined {})",
                    config.name(),
                    args.records,
                    format_counts(&pw.verdicts),
                    format_counts(&pw.invalid_reasons),
                    format_counts(&pw.unverified_reasons),
                    pw.quarantined
                );
                eprintln!("error: {problem}");
                problems.push(problem);
            }
            if pw.envelope_problems > 0 {
                eprintln!("warning: {} reported {} envelope problems on {topic}", config.name(), pw.envelope_problems);
            }
            if !pw.pii_detections.is_empty() {
                eprintln!("note: {} counted PII on {topic}: {}", config.name(), format_counts(&pw.pii_detections));
            }
            if pw.exit_code != Some(0) {
                problems.push(format!(
                    "round {round}, {}: pipewarden did not exit 0 after SIGTERM ({:?})",
                    config.name(),
                    pw.exit_code
                ));
            }
            let paired_ratio = pw.events_per_second / raw.events_per_second;
            this_round.pipewarden.push(PipewardenRun {
                config,
                data,
                topic: topic.clone(),
                paired_raw_events_per_second: raw.events_per_second,
                paired_ratio,
                all_valid,
                result: pw,
            });
            this_round.raw.push(RawRun { data, topic, paired_with: config, result: raw });
        }
        rounds.push(this_round);
    }
    kafka.delete_groups(&groups);
    drop(schemas);

    // Medians.
    let raw_medians: BTreeMap<Data, Medians> = datas
        .iter()
        .map(|&data| {
            let runs: Vec<&raw::RawResult> =
                rounds.iter().flat_map(|r| &r.raw).filter(|r| r.data == data).map(|r| &r.result).collect();
            (data, raw_medians(&runs))
        })
        .collect();
    let config_reports: Vec<ConfigReport> = configs
        .iter()
        .map(|&config| {
            let runs: Vec<&PipewardenRun> =
                rounds.iter().flat_map(|r| &r.pipewarden).filter(|r| r.config == config).collect();
            let results: Vec<&daemon::PipewardenResult> = runs.iter().map(|r| &r.result).collect();
            let m = pipewarden_medians(&results);
            let raw_rate = raw_medians[&config.data()].events_per_second;
            ConfigReport {
                config,
                name: config.name(),
                data: config.data(),
                topic: topic_of(config.data()),
                policy: config.policy(),
                median: m,
                raw_events_per_second: raw_rate,
                ratio: m.events_per_second / raw_rate,
                paired_ratios: runs.iter().map(|r| r.paired_ratio).collect(),
                idle_scrape_fraction: median(results.iter().map(|r| r.idle_scrape_fraction).collect()),
                all_valid: runs.iter().all(|r| r.all_valid),
                processing_p99_us: median(results.iter().map(|r| r.processing_p99_us).collect()),
            }
        })
        .collect();

    print_table(args, &datas, &raw_medians, &config_reports, &rounds);

    let topics: Vec<TopicReport> = datas
        .iter()
        .map(|&data| TopicReport {
            data,
            topic: topic_of(data),
            encoding: match data {
                Data::Json => "json".into(),
                Data::Avro => format!("confluent-avro (schema id {})", runs::AVRO_SCHEMA_ID),
            },
            preload: preloads.remove(&data).expect("preloaded"),
            warmup_events_per_second: warmups.get(&data).copied(),
            raw: raw_medians[&data],
        })
        .collect();
    let report = Report {
        benchmark: "ingest",
        timestamp: time::OffsetDateTime::now_utc().format(&Rfc3339)?,
        machine,
        pipewarden_version: sys::binary_version(&pipewarden_bin),
        pipewarden_bin: pipewarden_bin.display().to_string(),
        git: sys::git_describe(),
        bootstrap: args.bootstrap.clone(),
        records: args.records,
        partitions: args.partitions,
        payload_bytes: args.size,
        consumer_properties: properties,
        scrape_interval_ms: args.scrape_interval_ms,
        json_schema: runs::json_schema(),
        avro_schema: serde_json::from_str(preload::AVRO_SCHEMA)?,
        avro_schema_id: runs::AVRO_SCHEMA_ID,
        topics,
        ratios: config_reports.iter().map(|c| (c.config.key(), c.ratio)).collect(),
        configurations: config_reports,
        rounds,
    };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("results: {}", args.out.display());

    if !problems.is_empty() {
        eprintln!("pipewarden-bench: FAILED:");
        for problem in &problems {
            eprintln!("  {problem}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `valid=10 invalid=2`, or `none`.
fn format_counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// Medians of one consumer's runs; raw and pipewarden results name their
/// figures alike, so one definition serves both.
macro_rules! medians_of {
    ($runs:expr) => {{
        let runs = $runs;
        let m = |values: Vec<f64>| median(values);
        Medians {
            events_per_second: m(runs.iter().map(|r| r.events_per_second).collect()),
            first_to_last_seconds: m(runs.iter().map(|r| r.first_to_last_seconds).collect()),
            total_seconds: m(runs.iter().map(|r| r.total_seconds).collect()),
            cpu_seconds: m(runs.iter().map(|r| r.process.cpu_seconds).collect()),
            cpu_us_per_record: m(runs.iter().map(|r| r.cpu_us_per_record).collect()),
            peak_rss_kib: m(runs.iter().map(|r| r.process.peak_rss_kib as f64).collect()),
            cores_busy: m(runs.iter().map(|r| r.window_cpu_seconds / r.first_to_last_seconds).collect()),
            mean_payload_bytes: m(runs.iter().map(|r| r.payload_bytes as f64 / r.records as f64).collect()),
        }
    }};
}

fn raw_medians(runs: &[&raw::RawResult]) -> Medians {
    medians_of!(runs)
}

fn pipewarden_medians(runs: &[&daemon::PipewardenResult]) -> Medians {
    medians_of!(runs)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// One table column: a consumer on a topic.
struct Column<'a> {
    header: String,
    data: Data,
    m: Medians,
    /// None for the raw consumer.
    config: Option<&'a ConfigReport>,
}

fn print_table(args: &Args, datas: &[Data], raw: &BTreeMap<Data, Medians>, configs: &[ConfigReport], rounds: &[Round]) {
    let mut columns = Vec::new();
    for &data in datas {
        columns.push(Column { header: format!("raw ({})", data.label()), data, m: raw[&data], config: None });
        for config in configs.iter().filter(|c| c.data == data) {
            columns.push(Column {
                header: config.config.column().to_string(),
                data,
                m: config.median,
                config: Some(config),
            });
        }
    }
    let label = if rounds.len() > 1 { " (median of rounds)" } else { "" };
    println!();
    let row = |name: &str, cell: &dyn Fn(&Column<'_>) -> String| {
        let mut line = format!("{name:<28}");
        for column in &columns {
            line.push_str(&format!("{:>16}", cell(column)));
        }
        println!("{}", line.trim_end());
    };
    row(&format!("ingest{label}"), &|c| c.header.clone());
    row("topic", &|c| format!("{} topic", c.data.label()));
    row("events/s", &|c| format!("{:.0}", c.m.events_per_second));
    row("ratio to raw (same topic)", &|c| c.config.map_or(String::new(), |config| format!("{:.3}", config.ratio)));
    row("first→last record (s)", &|c| format!("{:.2}", c.m.first_to_last_seconds));
    row("incl. start/group join (s)", &|c| format!("{:.2}", c.m.total_seconds));
    row("peak RSS (MiB)", &|c| format!("{:.1}", c.m.peak_rss_kib / 1024.0));
    row("CPU (s)", &|c| format!("{:.2}", c.m.cpu_seconds));
    row("cores busy first→last", &|c| format!("{:.2}", c.m.cores_busy));
    row("CPU per record (µs)", &|c| format!("{:.2}", c.m.cpu_us_per_record));
    row("mean payload (B)", &|c| format!("{:.1}", c.m.mean_payload_bytes));
    row("all records valid", &|c| c.config.map_or(String::new(), |config| yes_no(config.all_valid).into()));
    row("stalls (% of scrapes)", &|c| {
        c.config.map_or(String::new(), |config| format!("{:.0}%", config.idle_scrape_fraction * 100.0))
    });
    if rounds.len() > 1 {
        for config in configs {
            let ratios: Vec<String> = config.paired_ratios.iter().map(|r| format!("{r:.3}")).collect();
            println!("per-round ratios to the paired raw read, {}: {}", config.config.key(), ratios.join(" "));
        }
    }
    let min_window = configs.iter().map(|c| c.median.first_to_last_seconds).fold(f64::INFINITY, f64::min);
    println!(
        "pipewarden is timed by scraping /metrics every {} ms (end time resolution {} ms, ≤{:.1}% of its window); \
         raw is timed exactly. CPU and RSS are whole-process (start-up included). Each pipewarden run is \
         paired with a raw read of the same topic right before it; ratios use medians.",
        args.scrape_interval_ms,
        args.scrape_interval_ms,
        args.scrape_interval_ms as f64 / 10.0 / min_window
    );
    println!();
    println!("summary:");
    for config in configs {
        println!(
            "  {:<14} {:.0} events/s ({:.2} of raw {} at {:.0} events/s), {:.2} µs CPU per record \
             (raw {:.2}), processing p99 {:.1} µs, peak RSS {:.1} MiB{}",
            format!("{}:", config.config.key()),
            config.median.events_per_second,
            config.ratio,
            config.data.label(),
            config.raw_events_per_second,
            config.median.cpu_us_per_record,
            raw[&config.data].cpu_us_per_record,
            config.processing_p99_us,
            config.median.peak_rss_kib / 1024.0,
            if config.all_valid { "" } else { "; NOT ALL RECORDS VALID" }
        );
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}
