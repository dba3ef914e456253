//! `pipewarden-bench lag`: the duration of one lag cycle at scale.
//!
//! 1. Creates `--topics` topics with `--partitions` partitions in total
//!    (unique random names, so concurrent runs and tests never collide) and
//!    writes `--records-per-partition` records to every partition.
//! 2. Commits offsets for `--groups` groups (group i consumes topic
//!    i mod topics, every partition, committed at a varying offset), through
//!    the admin API, pipelined.
//! 3. Fills the offset → timestamp index the way ingest would (every record
//!    of every partition), so lag in seconds takes the exact path.
//! 4. Runs `--cycles` lag cycles (`LagMonitor::poll_once`: list groups,
//!    describe the non-empty ones, read every group's committed offsets,
//!    read every partition's high watermark, compute lag, status, metrics
//!    and the API snapshot) and reports each one's duration; checks that
//!    every group and the exact total lag were reported.
//! 5. Deletes the groups and topics it created, also after a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use pipewarden::config::Config;
use pipewarden::lag::client::{GroupCommit, LagClient};
use pipewarden::lag::index::{IndexWriter, TimeIndex};
use pipewarden::lag::{now_ms, LagMonitor, LagShared};
use pipewarden::metrics::Metrics;
use rand::Rng as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde::Serialize;

use crate::preload::Kafka;

#[derive(clap::Args, Clone)]
pub struct LagArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Consumer groups to create.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub groups: u32,
    /// Partitions in total, spread evenly over the topics.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Topics the partitions are spread over.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..))]
    pub topics: i32,
    /// Records written to every partition.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..))]
    pub records_per_partition: i64,
    /// Lag cycles to time (the first one also opens the connections).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub cycles: u32,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench/lag.json")]
    pub out: std::path::PathBuf,
}

#[derive(Serialize)]
struct LagBenchResult {
    groups: u32,
    topics: i32,
    partitions: i32,
    /// (group, partition) pairs with a committed offset.
    committed_offsets: u64,
    setup_seconds: f64,
    cycle_seconds: Vec<f64>,
    /// Median of the cycles after the first.
    median_warm_cycle_seconds: f64,
    groups_reported: usize,
    total_lag_messages: i64,
}

pub fn run(args: &LagArgs) -> anyhow::Result<()> {
    let kafka = Kafka::connect(&args.bootstrap)?;
    let id: u32 = rand::rng().random();
    let prefix = format!("bench.lag.{id:08x}");
    let per_topic = (args.partitions / args.topics).max(1);
    let topics: Vec<String> = (0..args.topics).map(|t| format!("{prefix}.t{t}")).collect();
    let groups: Vec<String> = (0..args.groups).map(|g| format!("{prefix}.g{g}")).collect();
    let result = measure(args, &kafka, &prefix, &topics, per_topic, &groups);
    // Clean up whatever happened.
    kafka.delete_groups(&groups);
    match kafka.delete_topics(&topics) {
        Ok(()) => println!("deleted the {} topics and {} groups of the run", topics.len(), groups.len()),
        Err(err) => eprintln!("pipewarden-bench: could not delete the topics {prefix}.*: {err:#}"),
    }
    let result = result?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)?)?;
    println!("results written to {}", args.out.display());
    Ok(())
}

fn measure(
    args: &LagArgs,
    kafka: &Kafka,
    prefix: &str,
    topics: &[String],
    per_topic: i32,
    groups: &[String],
) -> anyhow::Result<LagBenchResult> {
    let setup = Instant::now();
    for topic in topics {
        kafka.create_topic(topic, per_topic)?;
    }
    let records = args.records_per_partition;
    let base_ms = now_ms() - records * 1_000;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("linger.ms", "20")
        .create()
        .context("producer")?;
    for topic in topics {
        for partition in 0..per_topic {
            for n in 0..records {
                let mut record = BaseRecord::<(), [u8]>::to(topic)
                    .partition(partition)
                    .payload(b"{}")
                    .timestamp(base_ms + n * 1_000);
                // The queue holds 100k records by default; wait for room.
                while let Err((err, back)) = producer.send(record) {
                    ensure!(err.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull), "{err}");
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).context("flush")?;

    // Group g consumes topic g mod topics, committed at (g mod records) on every partition.
    let commits: Vec<GroupCommit> = groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let topic = &topics[g % topics.len()];
            let offset = g as i64 % records;
            (group.clone(), (0..per_topic).map(|p| (topic.clone(), p, offset)).collect())
        })
        .collect();
    let expected_lag: i64 =
        commits.iter().map(|(_, offsets)| offsets.iter().map(|(_, _, o)| records - o).sum::<i64>()).sum();
    let client = LagClient::new(&[("bootstrap.servers".into(), args.bootstrap.clone())], Duration::from_secs(30), 200)?;
    client.commit_offsets(&commits).context("committing the groups' offsets")?;

    let index = Arc::new(TimeIndex::new(1_024));
    let mut writer = IndexWriter::new(index.clone());
    for topic in topics {
        for partition in 0..per_topic {
            for n in 0..records {
                writer.record(topic, partition, n, Some(base_ms + n * 1_000));
            }
        }
    }
    let setup_seconds = setup.elapsed().as_secs_f64();

    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\n[lag.groups]\ninclude = [\"{}\\\\..*\"]\n",
        args.bootstrap,
        regex::escape(prefix).replace('\\', "\\\\")
    );
    let config = Config::from_toml(&toml, &|_| None).map_err(|err| anyhow::anyhow!("{err}"))?;
    let metrics = Arc::new(Metrics::new(config.metrics.max_label_values.max(args.groups as usize)));
    let shared = Arc::new(LagShared::default());
    let mut monitor = LagMonitor::new(&config, index, shared.clone(), metrics)?;
    let mut cycle_seconds = Vec::new();
    let mut last = (0, 0);
    for cycle in 0..args.cycles {
        let started = Instant::now();
        let reported = monitor.poll_once(now_ms())?;
        let seconds = started.elapsed().as_secs_f64();
        let snapshot = shared.snapshot();
        let total: i64 = snapshot.groups.iter().map(|g| g.lag_messages).sum();
        let exact = snapshot.groups.iter().flat_map(|g| &g.partitions).filter(|p| p.method == "exact").count();
        println!(
            "cycle {}: {:.3} s, {} groups, {} committed offsets ({} exact), total lag {} messages",
            cycle + 1,
            seconds,
            reported,
            snapshot.groups.iter().map(|g| g.partitions.len()).sum::<usize>(),
            exact,
            total
        );
        cycle_seconds.push(seconds);
        last = (reported, total);
    }
    if last.0 != groups.len() || last.1 != expected_lag {
        bail!("reported {} groups with {} lag; expected {} groups with {expected_lag}", last.0, last.1, groups.len());
    }
    let mut warm: Vec<f64> = cycle_seconds.iter().skip(1).copied().collect();
    if warm.is_empty() {
        warm = cycle_seconds.clone();
    }
    warm.sort_by(f64::total_cmp);
    let median = warm[warm.len() / 2];
    println!(
        "lag cycle: {} groups over {} partitions ({} topics), {} committed offsets: median warm cycle {:.3} s (first {:.3} s)",
        groups.len(),
        per_topic * topics.len() as i32,
        topics.len(),
        groups.len() as i64 * per_topic as i64,
        median,
        cycle_seconds[0]
    );
    Ok(LagBenchResult {
        groups: args.groups,
        topics: args.topics,
        partitions: per_topic * topics.len() as i32,
        committed_offsets: groups.len() as u64 * per_topic as u64,
        setup_seconds,
        cycle_seconds,
        median_warm_cycle_seconds: median,
        groups_reported: last.0,
        total_lag_messages: last.1,
    })
}
