//! (b) pipewarden itself: run the daemon on the benchmark topic and watch
//! `pipewarden_records_total` on /metrics until every record is processed.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;

use crate::sys::{self, ProcStats};

#[derive(Debug, Clone, Serialize)]
pub struct PipewardenResult {
    pub group: String,
    pub records: u64,
    /// From `pipewarden_record_bytes_total`.
    pub payload_bytes: u64,
    /// Sum of `pipewarden_envelope_problems_total` for the topic (0 expected).
    pub envelope_problems: u64,
    /// `pipewarden_verdicts_total` for the topic, by verdict.
    pub verdicts: BTreeMap<String, u64>,
    /// `pipewarden_invalid_records_total` for the topic, by reason.
    pub invalid_reasons: BTreeMap<String, u64>,
    /// `pipewarden_unverified_records_total` for the topic, by reason.
    pub unverified_reasons: BTreeMap<String, u64>,
    /// `pipewarden_pii_detections_total` for the topic, by kind.
    pub pii_detections: BTreeMap<String, u64>,
    /// `pipewarden_records_by_format_total` for the topic, by format.
    pub formats: BTreeMap<String, u64>,
    /// `pipewarden_quarantined_records_total` for the topic.
    pub quarantined: u64,
    /// (records - count at the first non-zero scrape) / (time between that
    /// scrape and the first scrape showing every record).
    pub events_per_second: f64,
    pub first_to_last_seconds: f64,
    /// Records already counted at the first non-zero scrape.
    pub count_at_first_scrape: u64,
    /// From spawn (start-up and group join included) to the last scrape.
    pub total_seconds: f64,
    pub scrape_interval_ms: u64,
    /// Whole process at the moment every record was counted.
    pub process: ProcStats,
    pub cpu_us_per_record: f64,
    /// CPU seconds spent between the first non-zero scrape and the last.
    pub window_cpu_seconds: f64,
    /// Share of the scrape intervals in the window in which no record was
    /// processed (stalls: waiting on fetches, rebalances, locks, ...).
    pub idle_scrape_fraction: f64,
    /// p99 of `pipewarden_record_processing_seconds` (interpolated within
    /// its bucket, as `histogram_quantile` does), in microseconds.
    pub processing_p99_us: f64,
    /// Share of records processed within 50 µs (a bucket bound: exact).
    pub processing_within_50us: f64,
    /// Exit code after SIGTERM (None: killed by a signal).
    pub exit_code: Option<i32>,
    /// SIGTERM to exit, in seconds.
    pub shutdown_seconds: f64,
    /// (seconds since spawn, records counted) for each scrape that answered.
    pub samples: Vec<(f64, u64)>,
}

/// The pipewarden child process: SIGTERM (then SIGKILL) on drop, so no error
/// path leaves it running; the temporary config file goes with it.
struct Daemon {
    child: Child,
    config: PathBuf,
}

impl Daemon {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn terminate(&mut self, grace: Duration) -> anyhow::Result<Option<ExitStatus>> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(Some(status));
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.pid()).stderr(Stdio::null()).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !matches!(self.terminate(Duration::from_secs(15)), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(listener.local_addr()?.port())
}

/// A regex that matches exactly `name` (what `regex::escape` escapes).
fn regex_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 2);
    for c in name.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A TOML basic string.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub struct Run<'a> {
    pub bin: &'a Path,
    pub bootstrap: &'a str,
    pub topic: &'a str,
    pub records: u64,
    pub group: &'a str,
    pub properties: &'a [(String, String)],
    /// `[registry]`, `[quarantine]`, `[[policies]]` etc. (TOML), appended
    /// to the config file.
    pub governance: &'a str,
    pub scrape_interval: Duration,
    pub timeout: Duration,
}

pub fn run(r: &Run<'_>) -> anyhow::Result<PipewardenResult> {
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut properties = String::new();
    for (key, value) in r.properties {
        properties.push_str(&format!("{} = {}\n", toml_string(key), toml_string(value)));
    }
    // Kafka topic names are [a-zA-Z0-9._-]: no quote can end the TOML
    // literal strings below.
    let config_text = format!(
        "[kafka]\n\
         bootstrap_servers = '{bootstrap}'\n\
         group_id = '{group}'\n\
         [kafka.properties]\n\
         {properties}\
         [topics]\n\
         include = ['{include}']\n\
         refresh_interval_ms = 1000\n\
         [http]\n\
         listen = '{addr}'\n\
         [log]\n\
         level = 'warn'\n\
         {governance}",
        bootstrap = r.bootstrap,
        group = r.group,
        include = regex_escape(r.topic),
        governance = r.governance,
    );
    let config = std::env::temp_dir().join(format!("pipewarden-bench-{}-{}.toml", std::process::id(), r.group));
    std::fs::write(&config, config_text).with_context(|| format!("writing {}", config.display()))?;

    let spawned = Instant::now();
    let child = Command::new(r.bin)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(err) => {
            let _ = std::fs::remove_file(&config);
            return Err(err).with_context(|| format!("failed to start {}", r.bin.display()));
        }
    };
    let mut daemon = Daemon { child, config };

    let deadline = spawned + r.timeout;
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut first: Option<(Instant, u64)> = None;
    let mut cpu_at_first = 0.0;
    let mut last_count = 0;
    let mut last_error = String::new();
    let (done, body) = loop {
        if let Some(status) = daemon.child.try_wait()? {
            bail!("pipewarden exited early ({status}) after processing {last_count} of {} records", r.records);
        }
        if Instant::now() > deadline {
            bail!(
                "pipewarden processed {last_count} of {} records within {} s{}",
                r.records,
                r.timeout.as_secs(),
                if samples.is_empty() { format!(" (/metrics never answered: {last_error})") } else { String::new() }
            );
        }
        let at = Instant::now();
        match sys::http_get(addr, "/metrics", Duration::from_secs(2)) {
            Ok(body) => {
                let count = sys::sum_samples(&body, "pipewarden_records_total", r.topic);
                samples.push((at.duration_since(spawned).as_secs_f64(), count));
                last_count = count;
                if count > 0 && first.is_none() {
                    first = Some((at, count));
                    cpu_at_first = sys::proc_stats(&daemon.pid())?.cpu_seconds;
                }
                if count >= r.records {
                    break (at, body);
                }
            }
            // Not listening yet (start-up).
            Err(err) => last_error = format!("{err:#}"),
        }
        std::thread::sleep((at + r.scrape_interval).saturating_duration_since(Instant::now()));
    };
    let process = sys::proc_stats(&daemon.pid())?;
    // Verdicts are counted right after the record (same call): scrape again
    // until they have caught up, so the totals below are complete.
    let verdicts_of = |body: &str| sys::by_label(body, "pipewarden_verdicts_total", r.topic, "verdict");
    let mut body = body;
    let settle = Instant::now() + Duration::from_secs(5);
    while verdicts_of(&body).values().sum::<u64>() < r.records && Instant::now() < settle {
        std::thread::sleep(r.scrape_interval);
        if let Ok(fresh) = sys::http_get(addr, "/metrics", Duration::from_secs(2)) {
            body = fresh;
        }
    }
    let (first_at, first_count) = first.expect("set before the count can reach records");
    if first_count >= r.records {
        bail!("pipewarden processed all {} records between two scrapes; use more --records", r.records);
    }
    let window = done.duration_since(first_at).as_secs_f64();
    let count = last_count;
    let in_window: Vec<u64> =
        samples.iter().filter(|(t, _)| *t >= first_at.duration_since(spawned).as_secs_f64()).map(|&(_, c)| c).collect();
    let intervals = in_window.len().saturating_sub(1).max(1);
    let idle = in_window.windows(2).filter(|w| w[1] == w[0]).count();

    let term_sent = Instant::now();
    let status = daemon.terminate(Duration::from_secs(30))?;
    let shutdown_seconds = term_sent.elapsed().as_secs_f64();
    let exit_code = match status {
        Some(status) => status.code(),
        None => bail!("pipewarden did not exit within 30 s of SIGTERM"),
    };

    let processing = sys::histogram_buckets(&body, "pipewarden_record_processing_seconds");
    Ok(PipewardenResult {
        processing_p99_us: sys::histogram_quantile(0.99, &processing).unwrap_or(f64::NAN) * 1e6,
        processing_within_50us: sys::histogram_share_within(50e-6, &processing).unwrap_or(f64::NAN),
        group: r.group.to_string(),
        records: count,
        payload_bytes: sys::sum_samples(&body, "pipewarden_record_bytes_total", r.topic),
        envelope_problems: sys::sum_samples(&body, "pipewarden_envelope_problems_total", r.topic),
        verdicts: verdicts_of(&body),
        invalid_reasons: sys::by_label(&body, "pipewarden_invalid_records_total", r.topic, "reason"),
        unverified_reasons: sys::by_label(&body, "pipewarden_unverified_records_total", r.topic, "reason"),
        pii_detections: sys::by_label(&body, "pipewarden_pii_detections_total", r.topic, "kind"),
        formats: sys::by_label(&body, "pipewarden_records_by_format_total", r.topic, "format"),
        quarantined: sys::sum_samples(&body, "pipewarden_quarantined_records_total", r.topic),
        events_per_second: (r.records - first_count) as f64 / window,
        first_to_last_seconds: window,
        count_at_first_scrape: first_count,
        total_seconds: done.duration_since(spawned).as_secs_f64(),
        scrape_interval_ms: r.scrape_interval.as_millis() as u64,
        process,
        cpu_us_per_record: process.cpu_seconds * 1e6 / count as f64,
        window_cpu_seconds: process.cpu_seconds - cpu_at_first,
        idle_scrape_fraction: idle as f64 / intervals as f64,
        exit_code,
        shutdown_seconds,
        samples,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_topic_names() {
        assert_eq!(super::regex_escape("bench.events-1"), r"bench\.events\-1");
    }

    #[test]
    fn quotes_toml_strings() {
        assert_eq!(super::toml_string("a\"b\\c\n"), r#""a\"b\\c\u000A""#);
    }
}
