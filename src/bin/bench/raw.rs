//! (a) The baseline: a raw librdkafka consumer that only counts records.
//!
//! It runs in a child process (`pipewarden-bench raw-consumer ...`), so its
//! CPU time and peak RSS are read from /proc exactly as pipewarden's are,
//! and nothing of the parent (preload buffers, scrapes) is counted.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use std::sync::Arc;

use pipewarden::ingest::records::{Forwarding, RecordQueue};
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, ClientContext};
use serde::{Deserialize, Serialize};

use crate::sys::{self, ProcStats};

/// Arguments of the hidden `raw-consumer` subcommand.
#[derive(clap::Args, Debug)]
pub struct RawArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub topic: String,
    #[arg(long)]
    pub records: u64,
    #[arg(long)]
    pub group: String,
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// librdkafka property KEY=VALUE (repeatable).
    #[arg(long = "property", value_parser = crate::parse_property)]
    pub properties: Vec<(String, String)>,
    /// Read records a batch at a time, as pipewarden does
    /// (`rd_kafka_consume_batch_queue`), instead of one `poll` per record.
    #[arg(long)]
    pub batch: bool,
}

/// Forwards assigned partitions to the batch queue (`--batch`).
struct Forwarder(Arc<Forwarding>);

impl ClientContext for Forwarder {}

impl ConsumerContext for Forwarder {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.0.forward(consumer, partitions);
        }
    }
}

/// One raw consumer run, as the child prints it (JSON on stdout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawResult {
    pub group: String,
    pub records: u64,
    pub payload_bytes: u64,
    /// records / (last record - first record), in records per second.
    pub events_per_second: f64,
    /// From the first record to the last, in seconds.
    pub first_to_last_seconds: f64,
    /// From subscribe (group join included) to the last record, in seconds.
    pub total_seconds: f64,
    /// Whole process, start to end.
    pub process: ProcStats,
    pub cpu_us_per_record: f64,
    /// CPU seconds spent between the first record and the last.
    pub window_cpu_seconds: f64,
}

/// Child side: consume `records` from the beginning and print a [`RawResult`].
pub fn consume(args: &RawArgs) -> anyhow::Result<()> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("client.id", "pipewarden-bench-raw")
        .set("auto.offset.reset", "earliest")
        // Only counting: nothing to commit.
        .set("enable.auto.commit", "false");
    for (key, value) in &args.properties {
        config.set(key, value);
    }
    let forwarding = Arc::new(Forwarding::default());
    let consumer: BaseConsumer<Forwarder> =
        config.create_with_context(Forwarder(forwarding.clone())).context("failed to create the consumer")?;
    consumer.subscribe(&[&args.topic]).context("subscribe failed")?;
    if args.batch {
        return consume_batches(args, &consumer, forwarding);
    }
    let subscribed = Instant::now();
    let deadline = subscribed + Duration::from_secs(args.timeout_secs);

    let mut count: u64 = 0;
    let mut bytes: u64 = 0;
    let mut first: Option<Instant> = None;
    let mut cpu_at_first = 0.0;
    let mut errors: u64 = 0;
    let mut polls: u64 = 0;
    let last = loop {
        polls += 1;
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                if count == 0 {
                    first = Some(Instant::now());
                    cpu_at_first = sys::proc_stats("self")?.cpu_seconds;
                }
                count += 1;
                bytes += message.payload_len() as u64;
                if count >= args.records {
                    break Instant::now();
                }
            }
            Some(Err(err)) => {
                errors += 1;
                if errors <= 10 {
                    eprintln!("raw consumer: {err}");
                }
            }
            None => polls = polls.next_multiple_of(1024),
        }
        if polls.is_multiple_of(1024) && Instant::now() > deadline {
            bail!("raw consumer saw {count} of {} records in {} s", args.records, args.timeout_secs);
        }
    };
    report(args, count, bytes, first, cpu_at_first, subscribed, last)
}

/// `consume` with `--batch`.
fn consume_batches(
    args: &RawArgs,
    consumer: &BaseConsumer<Forwarder>,
    forwarding: Arc<Forwarding>,
) -> anyhow::Result<()> {
    let subscribed = Instant::now();
    let deadline = subscribed + Duration::from_secs(args.timeout_secs);
    let queue = RecordQueue::new(consumer, forwarding);
    let (mut records, mut errors) = (Vec::new(), Vec::new());
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut cpu_at_first = 0.0;
    let last = loop {
        // Rebalances and errors come through the consumer's own queue.
        while let Some(result) = consumer.poll(Duration::ZERO) {
            if let Err(err) = result {
                eprintln!("raw consumer: {err}");
            }
        }
        queue.consume(Duration::from_millis(100), 512, &mut records, &mut errors);
        for err in errors.drain(..) {
            eprintln!("raw consumer: {err}");
        }
        if !records.is_empty() && count == 0 {
            first = Some(Instant::now());
            cpu_at_first = sys::proc_stats("self")?.cpu_seconds;
        }
        count += records.len() as u64;
        bytes += records.iter().map(|r| r.payload().map_or(0, <[u8]>::len) as u64).sum::<u64>();
        records.clear();
        if count >= args.records {
            break Instant::now();
        }
        if Instant::now() > deadline {
            bail!("raw consumer saw {count} of {} records in {} s", args.records, args.timeout_secs);
        }
    };
    report(args, count, bytes, first, cpu_at_first, subscribed, last)
}

/// Prints the child's [`RawResult`].
fn report(
    args: &RawArgs,
    count: u64,
    bytes: u64,
    first: Option<Instant>,
    cpu_at_first: f64,
    subscribed: Instant,
    last: Instant,
) -> anyhow::Result<()> {
    let process = sys::proc_stats("self")?;
    let first = first.expect("at least one record");
    let window = last.duration_since(first).as_secs_f64();
    let result = RawResult {
        group: args.group.clone(),
        records: count,
        payload_bytes: bytes,
        // Records after the first one, over the time they took.
        events_per_second: (count - 1) as f64 / window,
        first_to_last_seconds: window,
        total_seconds: last.duration_since(subscribed).as_secs_f64(),
        process,
        cpu_us_per_record: process.cpu_seconds * 1e6 / count as f64,
        window_cpu_seconds: process.cpu_seconds - cpu_at_first,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Parent side: run the raw consumer in a child process and collect its result.
pub fn run(
    bench_bin: &Path,
    bootstrap: &str,
    topic: &str,
    records: u64,
    group: &str,
    timeout_secs: u64,
    properties: &[(String, String)],
) -> anyhow::Result<RawResult> {
    let mut command = Command::new(bench_bin);
    command.arg("raw-consumer");
    for (key, value) in properties {
        command.arg(format!("--property={key}={value}"));
    }
    let output = command
        .args(["--bootstrap", bootstrap, "--topic", topic, "--group", group])
        .args(["--records", &records.to_string()])
        .args(["--timeout-secs", &timeout_secs.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to run {}", bench_bin.display()))?;
    if !output.status.success() {
        bail!("raw consumer failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("raw consumer printed {stdout:?}"))
}
