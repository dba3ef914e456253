//! `pipewarden-trace-memory`: bytes per open trace in the correlator's trace
//! table, measured as the process's resident set size before and after
//! opening N traces (1 million by default) through the real
//! `Correlator::observe` path. A benchmark, not a test: it prints numbers.
//!
//! ```text
//! cargo run --bin pipewarden-trace-memory -- [--traces N] [--events E] [--text-ids]
//! ```
//!
//! Each trace gets E events (default 1: a trace that has just started; the
//! demo's support flow has up to 5). Trace IDs are W3C trace IDs (32 hex
//! digits, stored as their 128-bit value) unless `--text-ids`, which uses
//! 20-character IDs that the table must keep as text.

use std::sync::Arc;
use std::time::Instant;

use pipewarden::config::Config;
use pipewarden::correlate::{Correlator, Observation, VerdictKind};
use pipewarden::metrics::Metrics;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let traces: u64 = arg(&args, "--traces").map_or(1_000_000, |v| v.parse().expect("--traces N"));
    let events: u64 = arg(&args, "--events").map_or(1, |v| v.parse().expect("--events E"));
    let text_ids = args.iter().any(|a| a == "--text-ids");
    let toml = format!(
        "[correlate]\nmax_traces = {}\n[[flows]]\nname = \"support\"\nstart = [\"support.ticket.created\"]\n\
         success = [\"support.answer.sent\"]\nsla_ms = 3600000\n",
        traces * 2
    );
    let config = Config::from_toml(&toml, &|_| None).expect("config");
    let metrics = Arc::new(Metrics::new(config.metrics.max_label_values));
    let types = ["support.ticket.created", "support.ticket.classified", "support.answer.drafted", "support.qa.done"];
    let producers = ["intake-agent", "classifier-agent", "knowledge-agent", "qa-agent"];

    let mut correlator = Correlator::new(&config, metrics);
    let base_ms = 1_767_225_600_000i64;
    let before = rss_bytes();
    let started = Instant::now();
    let mut trace_id = String::with_capacity(32);
    let mut event_id = String::with_capacity(16);
    for n in 0..traces {
        trace_id.clear();
        if text_ids {
            trace_id.push_str(&format!("ticket-{n:013}"));
        } else {
            trace_id
                .push_str(&format!("{:032x}", (n as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)));
        }
        for e in 0..events {
            event_id.clear();
            event_id.push_str(&format!("{n}-{e}"));
            let stage = (e as usize).min(types.len() - 1);
            let at = base_ms + (n as i64) + (e as i64) * 500;
            let observation = Observation {
                trace_id: Some(&trace_id),
                event_id: Some(&event_id),
                event_type: Some(types[stage]),
                topic: types[stage],
                partition: (n % 12) as i32,
                offset: n as i64,
                created_at_us: Some(at * 1_000),
                record_timestamp_ms: Some(at + 3),
                producer: Some(producers[stage]),
                verdict: VerdictKind::Valid,
                tokens: 0,
                cost_micro_usd: 0,
                model: None,
            };
            correlator.observe(&observation, base_ms + traces as i64 + 10_000);
        }
    }
    let elapsed = started.elapsed();
    let after = rss_bytes();
    let shared = correlator.shared();
    let held = shared.table.len() as u64;
    assert_eq!(held, traces, "every trace is held");
    let per_trace = (after.saturating_sub(before)) as f64 / held as f64;
    println!(
        "traces={held} events_per_trace={events} ids={} rss_before={before} rss_after={after} \
         bytes_per_open_trace={per_trace:.1} observe_ns_per_event={:.0} ({} build; includes formatting the IDs)",
        if text_ids { "text" } else { "w3c" },
        elapsed.as_nanos() as f64 / (traces * events) as f64,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
}
