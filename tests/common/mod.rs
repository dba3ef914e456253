//! Shared helpers for the integration tests: a real Kafka broker (from
//! `scripts/kafka.sh`, or `KAFKA_BOOTSTRAP`), random topic and group names,
//! and a pipewarden daemon started as a child process and read through its
//! HTTP endpoints, exactly as a user would.

#![allow(dead_code)]

pub mod broker;
pub mod dashboards;
pub mod secure;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let n: u64 = rand::rng().random();
    format!("{prefix}-{n:016x}")
}

pub fn create_topics(topics: &[(&str, i32)]) {
    create_topics_on(&bootstrap(), topics)
}

/// Like `create_topics`, on the broker at `bootstrap`.
pub fn create_topics_on(bootstrap: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let new: Vec<NewTopic> =
        topics.iter().map(|(name, parts)| NewTopic::new(name, *parts, TopicReplication::Fixed(1))).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let results = runtime
        .block_on(admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))))
        .expect("create topics");
    for result in results {
        result.unwrap_or_else(|(topic, err)| panic!("create topic {topic}: {err}"));
    }
    // Wait until the broker's metadata lists every partition with a leader.
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, parts) in topics {
        loop {
            let ok = consumer.fetch_metadata(Some(name), Duration::from_secs(5)).is_ok_and(|md| {
                md.topics().first().is_some_and(|t| t.error().is_none() && t.partitions().len() == *parts as usize)
            });
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "topic {name} never became available");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A contract-conforming event.
pub fn valid_event(event_type: &str, producer: &str, n: usize) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    format!(
        r#"{{"event_type":"{event_type}","trace_id":"trace-{n}","event_id":"evt-{n}","created_at":"{now}","schema_version":"1.0","producer":"{producer}","data":{{"n":{n}}}}}"#
    )
    .into_bytes()
}

pub struct TestProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
}

pub fn producer() -> TestProducer {
    let producer =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).set("linger.ms", "5").create().expect("producer");
    TestProducer { producer }
}

/// An idempotent producer for the broker at `bootstrap`: records sent while
/// the broker is down wait in librdkafka's queue and are delivered once,
/// in order, when it is back (`flush` waits for that). A record not
/// delivered within 2 minutes is dropped, so a flush of 150 s always ends;
/// callers count what the topic holds, not what they sent.
pub fn producer_on(bootstrap: &str) -> TestProducer {
    let producer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("producer");
    TestProducer { producer }
}

impl TestProducer {
    /// Sends to a given partition (or librdkafka's choice) with optional headers.
    pub fn send(&self, topic: &str, partition: Option<i32>, payload: &[u8], headers: &[(&str, &str)]) {
        self.send_keyed(topic, partition, None, payload, headers)
    }

    /// Like `send`, with a record key.
    pub fn send_keyed(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header { key, value: Some(*value) });
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(payload).headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        self.send_record(record);
    }

    /// Sends to one partition with an explicit Kafka record timestamp (ms since the epoch).
    pub fn send_at(&self, topic: &str, partition: i32, payload: &[u8], timestamp_ms: i64) {
        self.send_record(
            BaseRecord::<(), [u8]>::to(topic).payload(payload).partition(partition).timestamp(timestamp_ms),
        );
    }

    /// Sends one record, waiting while librdkafka's queue is full.
    fn send_record<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
        &self,
        mut record: BaseRecord<'_, K, P>,
    ) {
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((err, back)) => {
                    assert!(
                        matches!(err.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)),
                        "send failed: {err}"
                    );
                    record = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Waits until every record sent so far is acknowledged by the broker.
    pub fn flush(&self) {
        self.flush_within(Duration::from_secs(30))
    }

    /// `flush` with a chosen timeout (a restarting broker takes longer).
    pub fn flush_within(&self, timeout: Duration) {
        self.producer.flush(timeout).expect("flush");
        assert_eq!(self.producer.in_flight_count(), 0, "records still in flight after flush");
    }

    /// Like `flush_within`, adding `bootstrap` to the producer again every
    /// 10 s while records wait, as pipewarden does for its own clients: a
    /// broker restart can leave a librdkafka client without any broker
    /// (see src/rebootstrap.rs).
    pub fn flush_bootstrapping_again(&self, bootstrap: &str, timeout: Duration) {
        let servers = pipewarden::rebootstrap::Bootstrap::new(bootstrap).expect("bootstrap servers");
        let deadline = Instant::now() + timeout;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            let slice = Duration::from_secs(10).min(deadline.saturating_duration_since(Instant::now()));
            if self.producer.flush(slice).is_err() {
                servers.add_to(self.producer.client());
            }
        }
        assert_eq!(self.producer.in_flight_count(), 0, "records still in flight after flush");
    }
}

/// Committed offset of each partition of `topic` for `group` (-1 when none).
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_offsets_on(&bootstrap(), group, topic, partitions)
}

/// Like `committed_offsets`, on the broker at `bootstrap`.
pub fn committed_offsets_on(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    (0..partitions)
        .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// High watermark of each partition.
pub fn end_offsets(topic: &str, partitions: i32) -> Vec<i64> {
    end_offsets_on(&bootstrap(), topic, partitions)
}

/// Like `end_offsets`, on the broker at `bootstrap`.
pub fn end_offsets_on(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    (0..partitions).map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1).collect()
}

/// Base URL of the Confluent-compatible schema registry started by the test script.
pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL").unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".to_string())
}

/// Registers a schema under `subject` through the registry's REST API; returns its global ID.
pub fn register_schema(base: &str, subject: &str, schema_type: &str, schema: &str) -> u32 {
    register_schema_with(&reqwest::blocking::Client::new(), None, base, subject, schema_type, schema)
}

/// The secured registry instance (`REGISTRY_SECURE=1 scripts/registry.sh`):
/// HTTPS with a test CA and HTTP basic auth. The test script exports its
/// `SECURE_REGISTRY_*` variables; the defaults are that script's own.
pub struct SecureRegistry {
    pub url: String,
    pub ca_file: PathBuf,
    pub username: String,
    pub password: String,
}

impl SecureRegistry {
    pub fn from_env() -> SecureRegistry {
        let tls = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".run/registry-secure/tls");
        let var = |name: &str| std::env::var(name).ok();
        let password_file =
            var("SECURE_REGISTRY_PASSWORD_FILE").map(PathBuf::from).unwrap_or_else(|| tls.join("password"));
        let password = std::fs::read_to_string(&password_file).unwrap_or_else(|e| {
            panic!("{}: {e} (start it: REGISTRY_SECURE=1 scripts/registry.sh start)", password_file.display())
        });
        SecureRegistry {
            url: var("SECURE_REGISTRY_URL").unwrap_or_else(|| "https://127.0.0.1:8444/apis/ccompat/v7".into()),
            ca_file: var("SECURE_REGISTRY_CA").map(PathBuf::from).unwrap_or_else(|| tls.join("ca.pem")),
            username: var("SECURE_REGISTRY_USERNAME").unwrap_or_else(|| "pipewarden".into()),
            password: password.trim().to_string(),
        }
    }

    /// Registers through a client that trusts the test CA and sends the credentials.
    pub fn register_schema(&self, subject: &str, schema_type: &str, schema: &str) -> u32 {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca_file).unwrap()).unwrap();
        let client = reqwest::blocking::Client::builder().add_root_certificate(ca).build().unwrap();
        register_schema_with(&client, Some((&self.username, &self.password)), &self.url, subject, schema_type, schema)
    }
}

fn register_schema_with(
    client: &reqwest::blocking::Client,
    auth: Option<(&str, &str)>,
    base: &str,
    subject: &str,
    schema_type: &str,
    schema: &str,
) -> u32 {
    let mut body = serde_json::json!({ "schema": schema });
    if schema_type != "AVRO" {
        body["schemaType"] = serde_json::Value::from(schema_type);
    }
    let mut request = client.post(format!("{base}/subjects/{subject}/versions"));
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(body.to_string())
        .timeout(Duration::from_secs(30))
        .send()
        .expect("register schema");
    let status = response.status();
    let text = response.text().unwrap();
    assert!(status.is_success(), "register {subject}: {status} {text}");
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    parsed["id"].as_u64().expect("id") as u32
}

/// Every record of committed transactions (and non-transactional records)
/// of `topic`, up to the end of each partition, in partition and offset
/// order: what a `read_committed` consumer sees. Transaction markers and
/// aborted records take offsets, so the end is found by partition EOF.
pub fn read_committed(topic: &str, partitions: i32) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut at_end = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions as usize {
        assert!(Instant::now() < deadline, "{topic}: only {at_end:?} of {partitions} partitions read to the end");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => out.push(message.detach()),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(err)) => panic!("read {topic}: {err}"),
            None => {}
        }
    }
    out.sort_by_key(|m| (m.partition(), m.offset()));
    out
}

/// The first header `name` of a record read back (e.g. a quarantine
/// copy's `pipewarden.*` headers), as text.
pub fn header<'a>(message: &'a rdkafka::message::OwnedMessage, name: &str) -> Option<&'a str> {
    use rdkafka::message::{Headers as _, Message as _};
    let headers = message.headers()?;
    (0..headers.count())
        .map(|i| headers.get(i))
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| std::str::from_utf8(v).unwrap())
}

/// Every record of `topic` up to its current end, in partition and offset order.
pub fn read_all(topic: &str, partitions: i32) -> Vec<rdkafka::message::OwnedMessage> {
    read_all_on(&bootstrap(), topic, partitions)
}

/// Like `read_all`, on the broker at `bootstrap`.
pub fn read_all_on(bootstrap: &str, topic: &str, partitions: i32) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::message::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let ends = end_offsets_on(bootstrap, topic, partitions);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let total: i64 = ends.iter().sum();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < total {
        assert!(Instant::now() < deadline, "read {} of {total} records of {topic}", out.len());
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            out.push(message.expect("read").detach());
        }
    }
    out.sort_by_key(|m| (m.partition(), m.offset()));
    out
}

/// A TCP forwarder in front of a real server whose outage the test controls:
/// while down, connections are accepted and dropped at once.
pub struct Outage {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Outage {
    pub fn forward_to(target: std::net::SocketAddr) -> Outage {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !flag.load(Ordering::Acquire) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else { continue };
                let (mut client_read, mut server_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut server_read, mut client_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_read, &mut server_write);
                    let _ = server_write.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_read, &mut client_write);
                    let _ = client_write.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Outage { port, up }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::Release);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free port below the kernel's ephemeral range (32768–60999 by
/// default), for a server that is stopped and started again on the same
/// port. Ports from [`free_port`] are ephemeral: while the server is down,
/// any outgoing connection (another test's, or a client reconnecting to
/// that very port) may be given it as its local port, and the restarted
/// server then cannot bind it. Distinct within one test process.
pub fn restartable_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 600) * 20;
    loop {
        let port = 20_000 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        let port = u16::try_from(port).expect("below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A pipewarden process under test.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub group: String,
    config_path: PathBuf,
    env: Vec<(String, String)>,
    log_file: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

pub struct DaemonOptions<'a> {
    pub include: &'a str,
    pub group: &'a str,
    pub commit_interval_ms: u64,
    pub extra: &'a str,
    /// Replaces the default `[[policies]]`, `[registry]` and `[quarantine]` sections when set.
    pub governance: &'a str,
    /// Extra lines of `[kafka.properties]`.
    pub kafka_properties: &'a str,
    /// Environment variables of the daemon process (for `${VAR}` in the config).
    pub env: &'a [(&'a str, &'a str)],
    /// Where the daemon's stderr (its log) goes; inherited when `None`.
    pub log_file: Option<&'a std::path::Path>,
    /// The cluster to read (default: `KAFKA_BOOTSTRAP`, the shared broker).
    pub bootstrap: Option<&'a str>,
    /// Extra lines of `[http]` (after `listen`).
    pub http: &'a str,
}

impl<'a> DaemonOptions<'a> {
    pub fn new(include: &'a str, group: &'a str) -> Self {
        Self {
            include,
            group,
            commit_interval_ms: 1_000,
            extra: "",
            governance: "",
            kafka_properties: "",
            env: &[],
            log_file: None,
            bootstrap: None,
            http: "",
        }
    }
}

impl Daemon {
    pub fn start(options: DaemonOptions<'_>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
commit_interval_ms = {commit}
[kafka.properties]
"fetch.wait.max.ms" = "50"
"topic.metadata.refresh.interval.ms" = "1000"
{kafka_properties}
[topics]
include = ["{include}"]
refresh_interval_ms = 500
[http]
listen = "127.0.0.1:{port}"
{http}
[shutdown]
grace_period_ms = 15000
{extra}
{governance}
"#,
            bootstrap = options.bootstrap.map_or_else(bootstrap, str::to_string),
            group = options.group,
            commit = options.commit_interval_ms,
            include = options.include.replace('\\', "\\\\"),
            extra = options.extra,
            governance = options.governance,
            kafka_properties = options.kafka_properties,
            http = options.http,
        );
        let config_path = dir.path().join("pipewarden.toml");
        std::fs::File::create(&config_path).unwrap().write_all(config.as_bytes()).unwrap();
        let env = options.env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let log_file = options.log_file.map(PathBuf::from);
        let mut daemon =
            Daemon { child: None, port, group: options.group.to_string(), config_path, env, log_file, _dir: dir };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let stderr = match &self.log_file {
            Some(path) => {
                Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).expect("daemon log file"))
            }
            None => Stdio::inherit(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_pipewarden"))
            .args(["run", "--config"])
            .arg(&self.config_path)
            .env_remove("KAFKA_BOOTSTRAP")
            .env("PIPEWARDEN_LOG", "info,librdkafka=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn pipewarden");
        self.child = Some(child);
    }

    /// Starts the same configuration again after a stop.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(5)).send().ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().ok()?))
    }

    /// GET `path` (e.g. `/api/v1/lag`): (status, body), None when unreachable.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        self.get(path)
    }

    /// `/metrics` with an `Accept` header: (content type, body).
    pub fn scrape_as(&self, accept: &str) -> (String, String) {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let response = reqwest::blocking::Client::new()
            .get(url)
            .header("accept", accept)
            .timeout(Duration::from_secs(5))
            .send()
            .expect("scrape");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        (content_type, response.text().unwrap())
    }

    pub fn scrape(&self) -> Option<String> {
        self.get("/metrics").filter(|(status, _)| *status == 200).map(|(_, body)| body)
    }

    pub fn status(&self, path: &str) -> Option<u16> {
        self.get(path).map(|(status, _)| status)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self) {
        self.wait_for("ready", Duration::from_secs(60), |d| d.status("/readyz") == Some(200));
    }

    /// Polls `condition` until it holds; panics after `timeout` or if the process exits.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut condition: impl FnMut(&Daemon) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("pipewarden exited with {status} while waiting for {what}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last scrape:\n{}",
                self.scrape().unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Value of one sample, e.g. `metric(r#"pipewarden_records_total{topic="t"}"#)`; 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.scrape().map_or(0.0, |text| sample(&text, series))
    }

    /// Waits up to `timeout` for the process to exit on its own (e.g. a
    /// start-up failure); panics if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("pipewarden still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process without a graceful shutdown (SIGKILL).
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("pipewarden did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test with the daemon's log in a file: print its end.
        // Its warnings and errors first (debug lines can crowd them out of
        // the tail), and the whole log is kept under target/test-logs.
        if let (true, Some(path)) = (std::thread::panicking(), &self.log_file) {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let notable: Vec<&str> = lines.iter().copied().filter(|line| !line.contains("DEBUG")).collect();
            let notable = &notable[notable.len().saturating_sub(150)..];
            eprintln!(
                "--- last {} lines above debug level of the daemon's log:\n{}",
                notable.len(),
                notable.join("\n")
            );
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!("--- last {} lines of the daemon's log {}:\n{}", tail.len(), path.display(), tail.join("\n"));
            let kept = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-logs");
            let name = format!("daemon-{}-{}.log", self.group, std::process::id());
            if std::fs::create_dir_all(&kept).and_then(|()| std::fs::copy(path, kept.join(&name))).is_ok() {
                eprintln!("--- the whole log: {}", kept.join(name).display());
            }
        }
    }
}

/// Value of the sample whose name and labels are exactly `series`; 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Whether any sample line of the scrape mentions `needle`.
pub fn mentions(text: &str, needle: &str) -> bool {
    text.lines().filter(|l| !l.starts_with('#')).any(|l| l.contains(needle))
}
