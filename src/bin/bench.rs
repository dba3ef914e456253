//! `pipewarden-bench` (`make bench`): ingest throughput of pipewarden against
//! a raw librdkafka consumer, on the same preloaded topic, in the same run.
//!
//! 1. Preload: make sure the topic holds exactly `--records` JSON agent
//!    events of `--size` bytes over `--partitions` partitions (skipped when it
//!    already does, so reruns are fast).
//! 2. Warm-up: one untimed raw read, so that neither side pays for a cold
//!    page cache or a cold broker JIT.
//! 3. Rounds: (a) a raw `BaseConsumer` in a fresh group that only counts
//!    records, then (b) `pipewarden run` in a fresh group, watched through
//!    `pipewarden_records_total` on /metrics until every record is counted.
//!    Both run as child processes, so CPU time and peak RSS are measured the
//!    same way (from /proc), and both use the same fetch settings.
//! 4. Report: a table on stdout and JSON at `--out`.

// A binary's root resolves modules next to itself (src/bin/), so the
// helpers in src/bin/bench/ are named explicitly.
#[path = "bench/daemon.rs"]
mod daemon;
#[path = "bench/preload.rs"]
mod preload;
#[path = "bench/raw.rs"]
mod raw;
#[path = "bench/sys.rs"]
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use rand::Rng as _;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

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
}

#[derive(clap::Args)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Records in the topic (both consumers read all of them).
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
    records: u64,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    partitions: i32,
    /// Payload size in bytes (JSON events are padded to exactly this size;
    /// below ~400 they keep their natural size).
    #[arg(long, default_value_t = 500)]
    size: usize,
    /// Topic name [default: bench.events.<records>.<partitions>.<size>].
    /// Reused when it holds exactly the expected records, else recreated.
    #[arg(long)]
    topic: Option<String>,
    /// Rounds of (raw, pipewarden); with more than one the medians are reported.
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
    /// Skip the untimed warm-up read.
    #[arg(long)]
    no_warmup: bool,
    /// Extra librdkafka consumer property KEY=VALUE for both consumers
    /// (repeatable), e.g. fetch.queue.backoff.ms=10.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,
}

#[derive(Serialize)]
struct Round {
    round: u32,
    raw: raw::RawResult,
    pipewarden: daemon::PipewardenResult,
    /// pipewarden events/s ÷ raw events/s.
    ratio: f64,
}

#[derive(Serialize)]
struct Medians {
    raw_events_per_second: f64,
    pipewarden_events_per_second: f64,
    /// Median pipewarden rate ÷ median raw rate.
    ratio: f64,
    raw_cpu_us_per_record: f64,
    pipewarden_cpu_us_per_record: f64,
    raw_peak_rss_kib: f64,
    pipewarden_peak_rss_kib: f64,
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
    topic: String,
    records: u64,
    partitions: i32,
    /// Target payload size.
    payload_bytes: usize,
    /// Measured: payload bytes read ÷ records (raw consumer).
    mean_payload_bytes: f64,
    /// librdkafka properties both consumers set beyond their own
    /// group/offset settings.
    consumer_properties: std::collections::BTreeMap<String, String>,
    scrape_interval_ms: u64,
    preload: preload::Preload,
    warmup_events_per_second: Option<f64>,
    rounds: Vec<Round>,
    median: Medians,
    /// pipewarden events/s ÷ raw events/s (medians).
    ratio: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.child {
        Some(Child::RawConsumer(args)) => raw::consume(&args).map(|()| ExitCode::SUCCESS),
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
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("bench.events.{}.{}.{}", args.records, args.partitions, args.size));
    if topic.is_empty() || !topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        bail!("invalid topic name {topic:?} (Kafka allows [a-zA-Z0-9._-])");
    }
    let machine = sys::machine();
    println!(
        "pipewarden-bench: {} records of {} B over {} partitions, topic {topic}, broker {}",
        args.records, args.size, args.partitions, args.bootstrap
    );
    println!("machine: {} CPUs, {}; pipewarden: {}", machine.nproc, machine.cpu_model, pipewarden_bin.display());

    let mut properties: std::collections::BTreeMap<String, String> =
        FETCH_PROPERTIES.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    properties.extend(args.kafka_properties.iter().cloned());
    let property_list: Vec<(String, String)> = properties.clone().into_iter().collect();
    println!(
        "consumer properties (both): {}",
        property_list.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    );

    let kafka = preload::Kafka::connect(&args.bootstrap)?;
    let preload = kafka.ensure_topic(&topic, args.records, args.partitions, args.size)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut groups = Vec::new();
    let mut group = |side: &str| {
        let name = format!("bench-{side}-{:016x}", rand::rng().random::<u64>());
        groups.push(name.clone());
        name
    };

    let warmup = if args.no_warmup {
        None
    } else {
        let r = raw::run(
            &this,
            &args.bootstrap,
            &topic,
            args.records,
            &group("warmup"),
            args.timeout_secs,
            &property_list,
        )?;
        println!("warm-up read (untimed): {:.0} events/s", r.events_per_second);
        Some(r.events_per_second)
    };

    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let raw =
            raw::run(&this, &args.bootstrap, &topic, args.records, &group("raw"), args.timeout_secs, &property_list)?;
        println!(
            "round {round}: raw        {:>10.0} events/s  ({:.2} s first→last, {:.2} s with group join)",
            raw.events_per_second, raw.first_to_last_seconds, raw.total_seconds
        );
        let pw = daemon::run(&daemon::Run {
            bin: &pipewarden_bin,
            bootstrap: &args.bootstrap,
            topic: &topic,
            records: args.records,
            group: &group("pw"),
            properties: &property_list,
            scrape_interval: Duration::from_millis(args.scrape_interval_ms),
            timeout,
        })?;
        println!(
            "round {round}: pipewarden {:>10.0} events/s  ({:.2} s first→last, {:.2} s with start-up; exit code {})",
            pw.events_per_second,
            pw.first_to_last_seconds,
            pw.total_seconds,
            pw.exit_code.map_or("none (signal)".into(), |c| c.to_string())
        );
        if pw.envelope_problems > 0 {
            eprintln!("warning: pipewarden reported {} envelope problems on the bench topic", pw.envelope_problems);
        }
        let ratio = pw.events_per_second / raw.events_per_second;
        rounds.push(Round { round, raw, pipewarden: pw, ratio });
    }
    kafka.delete_groups(&groups);

    let median_of = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let median = Medians {
        raw_events_per_second: median_of(&|r| r.raw.events_per_second),
        pipewarden_events_per_second: median_of(&|r| r.pipewarden.events_per_second),
        ratio: 0.0,
        raw_cpu_us_per_record: median_of(&|r| r.raw.cpu_us_per_record),
        pipewarden_cpu_us_per_record: median_of(&|r| r.pipewarden.cpu_us_per_record),
        raw_peak_rss_kib: median_of(&|r| r.raw.process.peak_rss_kib as f64),
        pipewarden_peak_rss_kib: median_of(&|r| r.pipewarden.process.peak_rss_kib as f64),
    };
    let ratio = median.pipewarden_events_per_second / median.raw_events_per_second;
    let median = Medians { ratio, ..median };
    print_table(args, &rounds, &median);

    let first = &rounds[0];
    let report = Report {
        benchmark: "ingest",
        timestamp: time::OffsetDateTime::now_utc().format(&Rfc3339)?,
        machine,
        pipewarden_version: sys::binary_version(&pipewarden_bin),
        pipewarden_bin: pipewarden_bin.display().to_string(),
        git: sys::git_describe(),
        bootstrap: args.bootstrap.clone(),
        topic,
        records: args.records,
        partitions: args.partitions,
        payload_bytes: args.size,
        mean_payload_bytes: first.raw.payload_bytes as f64 / first.raw.records as f64,
        consumer_properties: properties,
        scrape_interval_ms: args.scrape_interval_ms,
        preload,
        warmup_events_per_second: warmup,
        median,
        ratio,
        rounds,
    };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("results: {}", args.out.display());

    let unclean: Vec<String> = report
        .rounds
        .iter()
        .filter(|r| r.pipewarden.exit_code != Some(0))
        .map(|r| format!("round {}: {:?}", r.round, r.pipewarden.exit_code))
        .collect();
    if !unclean.is_empty() {
        eprintln!("pipewarden-bench: pipewarden did not exit 0 after SIGTERM ({})", unclean.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
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

fn print_table(args: &Args, rounds: &[Round], m: &Medians) {
    let label = if rounds.len() > 1 { " (median of rounds)" } else { "" };
    let pw = |f: &dyn Fn(&daemon::PipewardenResult) -> f64| median(rounds.iter().map(|r| f(&r.pipewarden)).collect());
    let raw = |f: &dyn Fn(&raw::RawResult) -> f64| median(rounds.iter().map(|r| f(&r.raw)).collect());
    println!();
    println!("{:<28}{:>16}{:>16}", format!("ingest{label}"), "raw consumer", "pipewarden");
    let row = |name: &str, a: String, b: String| println!("{name:<28}{a:>16}{b:>16}");
    row("events/s", format!("{:.0}", m.raw_events_per_second), format!("{:.0}", m.pipewarden_events_per_second));
    row("ratio pipewarden/raw", String::new(), format!("{:.3}", m.ratio));
    row(
        "first→last record (s)",
        format!("{:.2}", raw(&|r| r.first_to_last_seconds)),
        format!("{:.2}", pw(&|r| r.first_to_last_seconds)),
    );
    row(
        "incl. start/group join (s)",
        format!("{:.2}", raw(&|r| r.total_seconds)),
        format!("{:.2}", pw(&|r| r.total_seconds)),
    );
    row(
        "peak RSS (MiB)",
        format!("{:.1}", m.raw_peak_rss_kib / 1024.0),
        format!("{:.1}", m.pipewarden_peak_rss_kib / 1024.0),
    );
    row("CPU (s)", format!("{:.2}", raw(&|r| r.process.cpu_seconds)), format!("{:.2}", pw(&|r| r.process.cpu_seconds)));
    row(
        "cores busy first→last",
        format!("{:.2}", raw(&|r| r.window_cpu_seconds / r.first_to_last_seconds)),
        format!("{:.2}", pw(&|r| r.window_cpu_seconds / r.first_to_last_seconds)),
    );
    row(
        "CPU per record (µs)",
        format!("{:.2}", m.raw_cpu_us_per_record),
        format!("{:.2}", m.pipewarden_cpu_us_per_record),
    );
    if rounds.len() > 1 {
        let ratios: Vec<String> = rounds.iter().map(|r| format!("{:.3}", r.ratio)).collect();
        println!("per-round ratios: {}", ratios.join(" "));
    }
    println!(
        "pipewarden made no progress in {:.0}% of its scrape intervals (stalls)",
        pw(&|r| r.idle_scrape_fraction) * 100.0
    );
    println!(
        "pipewarden is timed by scraping /metrics every {} ms (end time resolution {} ms, ≈{:.1}% of its window); \
         raw is timed exactly. CPU and RSS are whole-process (start-up included).",
        args.scrape_interval_ms,
        args.scrape_interval_ms,
        args.scrape_interval_ms as f64 / 10.0 / pw(&|r| r.first_to_last_seconds)
    );
}
