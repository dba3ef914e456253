//! Small system helpers: /proc readings, machine facts, a minimal HTTP GET.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Serialize;

/// CPU time and memory of one process, read from /proc.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct ProcStats {
    /// utime + stime, in seconds.
    pub cpu_seconds: f64,
    /// Peak resident set size (VmHWM), in KiB.
    pub peak_rss_kib: u64,
}

/// Reads CPU seconds and peak RSS of `pid` ("self" for this process).
pub fn proc_stats(pid: &str) -> anyhow::Result<ProcStats> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces: fields after the last
    // ')' start at field 3 (state); utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields.get(i).and_then(|f| f.parse().ok()).context("malformed /proc/<pid>/stat")
    };
    let cpu_ticks = ticks(11)? + ticks(12)?;

    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")?;
    Ok(ProcStats { cpu_seconds: cpu_ticks as f64 / clock_ticks_per_second() as f64, peak_rss_kib })
}

/// USER_HZ (sysconf(_SC_CLK_TCK)), without libc: ask getconf, else 100.
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total_kib: Option<u64>,
    pub kernel: Option<String>,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            matches!(key.trim(), "model name" | "Model" | "cpu model").then(|| value.trim())
        })
        .unwrap_or("unknown")
        .to_string();
    let mem_total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string());
    Machine { nproc: std::thread::available_parallelism().map_or(1, |n| n.get()), cpu_model, mem_total_kib, kernel }
}

/// `git describe --always --dirty` of the crate the bench was built from.
pub fn git_describe() -> Option<String> {
    let out = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "describe", "--always", "--dirty"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// First line of `<bin> --version`.
pub fn binary_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string())
}

/// Minimal HTTP/1.1 GET over a fresh connection; returns the body of a 200.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::with_capacity(16 * 1024);
    stream.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("HTTP response without end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("GET {path}: HTTP status {status}");
    }
    let body = if head.contains("transfer-encoding: chunked") { dechunk(body)? } else { body.to_vec() };
    String::from_utf8(body).context("response body is not UTF-8")
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").context("truncated chunk header")?;
        let size_text = std::str::from_utf8(&data[..eol])?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The samples of metric `name` in Prometheus/OpenMetrics text format:
/// (label pairs, value) per line. Label values are unescaped.
pub fn samples<'a>(body: &'a str, name: &'a str) -> impl Iterator<Item = (Vec<(&'a str, String)>, f64)> + 'a {
    body.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, rest) = parse_labels(rest)?;
        let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
        Some((labels, value))
    })
}

/// Parses `a="x",b="y\"z"}` up to and including the closing brace; returns
/// the pairs and what follows the brace.
fn parse_labels(mut s: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches(',');
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim(), value));
        s = &rest[end + 1..];
    }
}

/// Sums the samples of metric `name` whose labels include every `(label, value)` of `wanted`.
pub fn sum_where(body: &str, name: &str, wanted: &[(&str, &str)]) -> u64 {
    let total: f64 = samples(body, name)
        .filter(|(labels, _)| wanted.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|(_, value)| value)
        .sum();
    total.round() as u64
}

/// Samples of metric `name` for `topic`, summed per value of `label`.
pub fn by_label(body: &str, name: &str, topic: &str, label: &str) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for (labels, value) in samples(body, name) {
        if !labels.iter().any(|(k, v)| *k == "topic" && v == topic) {
            continue;
        }
        if let Some((_, v)) = labels.iter().find(|(k, _)| *k == label) {
            *out.entry(v.clone()).or_insert(0.0) += value;
        }
    }
    out.into_iter().map(|(k, v)| (k, v.round() as u64)).collect()
}

/// Sums the samples of counter `name` (e.g. `pipewarden_records_total`)
/// whose label set contains `topic="<topic>"`, in Prometheus text format.
pub fn sum_samples(body: &str, name: &str, topic: &str) -> u64 {
    sum_where(body, name, &[("topic", topic)])
}

/// The cumulative buckets of an unlabelled histogram: (upper bound, count).
pub fn histogram_buckets(body: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, u64)> = body
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (le, value) = rest.split_once("\"}")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, value.trim().parse::<f64>().ok()? as u64))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The `q` quantile of cumulative buckets, interpolated linearly within
/// its bucket as PromQL's `histogram_quantile` does; `None` without counts.
pub fn histogram_quantile(q: f64, buckets: &[(f64, u64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(le, count) in buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = (count - below) as f64;
            return Some(if within == 0.0 { le } else { lower + (le - lower) * (rank - below as f64) / within });
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

/// Share of the observations at or under `bound` (an exact bucket bound).
pub fn histogram_share_within(bound: f64, buckets: &[(f64, u64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    let within = buckets.iter().find(|(le, _)| (*le - bound).abs() <= bound * 1e-9)?.1;
    (total > 0).then(|| within as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_promql() {
        let body = "x_bucket{le=\"1e-6\"} 0\nx_bucket{le=\"5e-6\"} 50\nx_bucket{le=\"1e-5\"} 90\n\
                    x_bucket{le=\"5e-5\"} 100\nx_bucket{le=\"+Inf\"} 100\nx_sum 1\nx_count 100\n";
        let buckets = histogram_buckets(body, "x");
        assert_eq!(buckets.len(), 5);
        let p50 = histogram_quantile(0.5, &buckets).unwrap();
        assert!((p50 - 5e-6).abs() < 1e-12, "{p50}");
        let p99 = histogram_quantile(0.99, &buckets).unwrap();
        assert!((p99 - (1e-5 + 4e-5 * 0.9)).abs() < 1e-12, "{p99}");
        assert_eq!(histogram_share_within(1e-5, &buckets), Some(0.9));
        assert_eq!(histogram_quantile(0.5, &[]), None);
    }

    #[test]
    fn sums_matching_samples_only() {
        let body = "# TYPE pipewarden_records_total counter\n\
            pipewarden_records_total{topic=\"a\"} 10\n\
            pipewarden_records_total{topic=\"ab\"} 5\n\
            pipewarden_records_total{x=\"1\",topic=\"a\"} 2\n\
            pipewarden_records_total_other{topic=\"a\"} 7\n";
        assert_eq!(sum_samples(body, "pipewarden_records_total", "a"), 12);
    }

    #[test]
    fn sums_and_groups_by_labels() {
        let body = "pipewarden_verdicts_total{topic=\"a\",verdict=\"valid\"} 10\n\
            pipewarden_verdicts_total{topic=\"a\",verdict=\"invalid\"} 2\n\
            pipewarden_verdicts_total{topic=\"b\",verdict=\"valid\"} 5\n\
            pipewarden_verdicts_total{topic=\"a\\\"x\",verdict=\"valid\"} 7\n\
            pipewarden_verdicts_total_created{topic=\"a\",verdict=\"valid\"} 1.7e9\n";
        let name = "pipewarden_verdicts_total";
        assert_eq!(sum_where(body, name, &[("topic", "a"), ("verdict", "valid")]), 10);
        assert_eq!(sum_where(body, name, &[("topic", "a\"x")]), 7);
        assert_eq!(sum_where(body, name, &[("verdict", "valid")]), 22);
        let by = by_label(body, name, "a", "verdict");
        assert_eq!(by.get("valid"), Some(&10));
        assert_eq!(by.get("invalid"), Some(&2));
        assert_eq!(by.len(), 2);
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
    }
}
