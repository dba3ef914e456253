//! `pipewarden-bench scrape`: time to render `/metrics` (Prometheus text
//! format, the default content type) with at least `--series` series. The
//! series come from real records through the observe stage: `--topics`
//! topics, each with event types, producers and verdicts, so the families,
//! label sets and histograms are the ones a busy pipeline produces.

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use pipewarden::config::Config;
use pipewarden::decode::EnvelopeExtractor;
use pipewarden::metrics::Metrics;
use pipewarden::observe::{Observer, Record};
use pipewarden::validate::{Checked, Verdict};

const NO_HEADERS: &[(&str, &[u8])] = &[];

#[derive(clap::Args)]
pub struct ScrapeArgs {
    /// Series to render at least (records are added until there are).
    #[arg(long, default_value_t = 20_000)]
    series: usize,
    /// Renders timed; the median is reported.
    #[arg(long, default_value_t = 21)]
    renders: usize,
}

pub fn run(args: &ScrapeArgs) -> anyhow::Result<()> {
    // Label limits high enough that every value gets its own series.
    let config = Config::from_toml(
        "[kafka]\nbootstrap_servers = '127.0.0.1:1'\n[metrics]\nmax_label_values = 100000\n",
        &|_| None,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Arc::new(Metrics::new(config.metrics.max_label_values));
    let extractor = EnvelopeExtractor::for_config(&config)?;
    let mut observer = Observer::new(&config, metrics.clone());
    let now_us = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1000;

    let count_series = |text: &str| text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    let mut body = String::new();
    let mut topic = 0usize;
    loop {
        body.clear();
        metrics.encode_prometheus(&mut body)?;
        if count_series(&body) >= args.series {
            break;
        }
        if topic > 100_000 {
            bail!("no way to reach {} series", args.series);
        }
        // 40 event types and 10 producers per topic.
        for n in 0..40 {
            let payload = format!(
                r#"{{"event_type":"agent.step.{n}","trace_id":"0b1d08f58c53ad657485694251744c39","event_id":"e{n}","created_at":"2026-11-29T08:46:17.593Z","schema_version":"1.0","producer":"agent-{}"}}"#,
                n % 10
            );
            let name = format!("pipeline.{topic}.events");
            let record = Record {
                topic: &name,
                partition: 0,
                offset: n,
                timestamp_ms: Some(now_us / 1000),
                payload: Some(payload.as_bytes()),
                headers: NO_HEADERS,
            };
            let envelope = extractor.extract(Some(payload.as_bytes()), NO_HEADERS);
            observer.observe(&record, &envelope, &Checked { verdict: Verdict::Valid, pii: Default::default() }, now_us);
        }
        topic += 1;
    }
    let series = count_series(&body);
    let mut times = Vec::with_capacity(args.renders);
    for _ in 0..args.renders {
        let mut out = String::with_capacity(body.len());
        let started = Instant::now();
        metrics.encode_prometheus(&mut out)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(&out);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "/metrics with {series} series over {topic} topics ({} KiB): median render {:.1} ms (min {:.1}, max {:.1}) of {} renders",
        body.len() / 1024,
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
    Ok(())
}
