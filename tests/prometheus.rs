//! End to end with a real Prometheus: pipewarden watches the simulated agent
//! pipelines on the real broker, Prometheus (from scripts/tools.sh) scrapes
//! it every second and evaluates the canonical alert rules. Every dashboard
//! panel's query must return data, and poison records plus a deliberately
//! slow agent must make the matching alerts pending or firing (read from
//! Prometheus' `ALERTS` series).

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dashboards::{dashboards, substitute};
use common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process stopped (by its PID) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts Prometheus scraping `target` every second with the canonical rules.
fn prometheus(target: &str, dir: &std::path::Path) -> (Process, String) {
    let binary = root().join(".cache/tools/bin/prometheus");
    assert!(binary.exists(), "{} missing: run scripts/tools.sh install", binary.display());
    let config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: pipewarden
    static_configs:
      - targets: ["{target}"]
"#,
        rules = root().join("alerts/pipewarden.rules.yml").display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    (Process(child), format!("http://127.0.0.1:{port}"))
}

/// Result vector of an instant query (empty on any error).
fn query(base: &str, promql: &str) -> Vec<serde_json::Value> {
    let response = reqwest::blocking::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", promql)])
        .timeout(Duration::from_secs(5))
        .send();
    let Ok(response) = response else { return Vec::new() };
    let body: serde_json::Value = response.json().unwrap_or_default();
    body["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[test]
fn prometheus_sees_every_dashboard_panel_and_the_alerts_fire() {
    let prefix = format!("{}.", unique("e2e"));
    let group = unique("e2e-pipewarden");
    let include = format!("^{}.*", prefix.replace('.', "\\."));
    let extra = std::fs::read_to_string(root().join("tests/e2e.toml")).unwrap();
    let mut options = DaemonOptions::new(&include, &group);
    options.extra = &extra;
    let mut daemon = Daemon::start(options);
    let dir = tempfile::tempdir().unwrap();
    let (_prometheus, base) = prometheus(&format!("127.0.0.1:{}", daemon.port), dir.path());

    // Demo agents with plenty of poison and one slow agent, for two minutes at most.
    let _agents = Process(
        Command::new(env!("CARGO_BIN_EXE_pipewarden"))
            .args(["simulate", "--topic-prefix", &prefix, "--duration", "150", "--poison-ratio", "0.2"])
            .args(["--rate", "20", "--failure-ratio", "0.05", "--slow-agent", "knowledge-agent"])
            // A model without a price, so unpriced tokens show.
            .args(["--model", "qa-agent=unpriced-e2e-model"])
            .env("KAFKA_BOOTSTRAP", bootstrap())
            .env("PIPEWARDEN_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start simulated agents"),
    );

    // Ready once the agents' topics exist and partitions are assigned.
    daemon.wait_ready();

    // Injected poison beside the agents' own: records with PII (an email
    // address) on the intake topic.
    let producer = producer();
    for n in 0..20 {
        let payload = format!(
            r#"{{"event_type":"support.ticket.created","event_id":"pii-{n}","trace_id":"pii-{n}","created_at":"2026-11-29T06:00:00Z","schema_version":"1","producer":"e2e","data":{{"contact":"jane.doe{n}@example.com"}}}}"#
        );
        producer.send(&format!("{prefix}support.ticket.created"), None, payload.as_bytes(), &[]);
    }
    producer.flush();

    // Every panel returns data: at least one of its queries has a series
    // (a counter of failures that never happened has none, rightly).
    // Rates over 20 s windows: the run is short.
    let mut pending: Vec<(String, String, Vec<String>)> = Vec::new();
    for (name, dashboard) in dashboards() {
        for panel in dashboard["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap().to_string();
            let targets = panel["targets"].as_array().unwrap();
            let queries: Vec<String> = targets.iter().map(|t| substitute(t["expr"].as_str().unwrap(), "20s")).collect();
            pending.push((name.clone(), title, queries));
        }
    }
    let total = pending.len();
    let deadline = Instant::now() + Duration::from_secs(150);
    while !pending.is_empty() && Instant::now() < deadline {
        pending.retain(|(_, _, queries)| queries.iter().all(|q| query(&base, q).is_empty()));
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        pending.is_empty(),
        "{} of {total} panels returned no data:\n{}",
        pending.len(),
        pending.iter().map(|(d, p, q)| format!("  {d} / {p}: {q:?}")).collect::<Vec<_>>().join("\n")
    );
    println!("all {total} dashboard panels returned data");

    // The alerts the injected faults should raise, pending or firing.
    let expected = ["PipewardenPoisonRecordsDetected", "PipewardenConsumerLagHigh", "PipewardenStalledTraces"];
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < expected.len() && Instant::now() < deadline {
        for alert in query(&base, "ALERTS") {
            let name = alert["metric"]["alertname"].as_str().unwrap_or_default().to_string();
            let state = alert["metric"]["alertstate"].as_str().unwrap_or_default().to_string();
            if expected.contains(&name.as_str()) && seen.insert(name.clone()) {
                println!("alert {name} is {state}");
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let missing: Vec<&&str> = expected.iter().filter(|a| !seen.contains(**a)).collect();
    assert!(missing.is_empty(), "alerts never pending or firing: {missing:?}");
    assert!(daemon.terminate().success());
}
