//! pipewarden on a secured cluster: the real daemon against the secured test
//! broker (`KAFKA_SECURE=1 scripts/kafka.sh`: SASL PLAIN and SCRAM-SHA-512
//! over TLS, ACLs enforced, nothing allowed without one). With exactly the
//! ACLs docs/security.md lists it ingests, quarantines, commits and reports
//! lag; without one of them it says which permission is missing and no
//! offset moves; a wrong password is an authentication error; no password
//! ever reaches its log. Each test uses its own topics, group and ACLs.

mod common;

use std::time::Duration;

use common::secure::{Acl, Operation, Pattern, Resource, SecureKafka, User};
use common::*;
use rdkafka::message::{Headers as _, Message};

const WAIT: Duration = Duration::from_secs(90);

/// The environment variable the daemon's configuration reads the password from.
const PASSWORD_VAR: &str = "TEST_KAFKA_PASSWORD";

/// Embedded schemas and one policy: malformed JSON is quarantined.
const GOVERNANCE: &str =
    "[registry]\nschemas_dir = \"schemas\"\n[quarantine]\nretry_backoff_ms = 200\n[[policies]]\ntopics = [\".*\"]\n";

fn valid(n: usize) -> Vec<u8> {
    valid_event("order.created", "shop-agent", n)
}

/// `valid` records interleaved with `poison` truncated ones (every
/// `valid / poison`-th record is poison).
fn records(valid_count: usize, poison_count: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..valid_count).map(valid).collect();
    let step = valid_count / poison_count.max(1);
    for i in 0..poison_count {
        out.insert(i * (step + 1) + step / 2, valid(1000 + i)[..30].to_vec());
    }
    out
}

/// The ACLs docs/security.md lists for a watched topic, its quarantine
/// topic and pipewarden's consumer group (literal names: each test has its own).
fn documented_acls(topic: &str, group: &str) -> Vec<Acl> {
    let quarantine = format!("{topic}.quarantine");
    vec![
        Acl::new(Resource::Topic, topic, Pattern::Literal, Operation::Read),
        Acl::new(Resource::Group, group, Pattern::Literal, Operation::Read),
        Acl::new(Resource::Topic, &quarantine, Pattern::Literal, Operation::Write),
        Acl::new(Resource::Topic, &quarantine, Pattern::Literal, Operation::Create),
    ]
}

struct Run {
    daemon: Daemon,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Run {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Where the daemon's configuration takes the password from.
#[derive(Clone, Copy)]
enum Secret {
    /// `${TEST_KAFKA_PASSWORD}`, set in the daemon's environment.
    Environment,
    /// `${file:...}`, a file only the test writes (as a mounted secret would be).
    File,
}

/// Starts pipewarden as `user` on `topic` with `password` given through
/// `secret`, logging at `level`.
fn start(
    kafka: &SecureKafka,
    user: &User,
    (password, secret): (&str, Secret),
    topic: &str,
    group: &str,
    level: &str,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pipewarden.log");
    let reference = match secret {
        Secret::Environment => format!("${{{PASSWORD_VAR}}}"),
        Secret::File => {
            let file = dir.path().join("kafka-password");
            std::fs::write(&file, format!("{password}\n")).unwrap();
            format!("${{file:{}}}", file.display())
        }
    };
    let mut properties = kafka.daemon_properties(user, &reference);
    if level.contains("librdkafka=debug") {
        // librdkafka's own debug output too: its configuration dump and the SASL handshake.
        properties.push_str("\"debug\" = \"conf,security\"\n");
    }
    let env = [(PASSWORD_VAR, password), ("KAFKA_BOOTSTRAP", kafka.bootstrap.as_str()), ("PIPEWARDEN_LOG", level)];
    let include = regex_escape(topic);
    let mut options = DaemonOptions::new(&include, group);
    options.governance = GOVERNANCE;
    options.kafka_properties = &properties;
    options.env = &env;
    options.log_file = Some(&log);
    let daemon = Daemon::start(options);
    Run { daemon, log, _dir: dir }
}

fn regex_escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

fn verdicts(daemon: &Daemon, topic: &str, verdict: &str) -> f64 {
    daemon.metric(&format!("pipewarden_verdicts_total{{topic=\"{topic}\",verdict=\"{verdict}\"}}"))
}

/// A full run as `user` with the documented ACLs: exact verdicts, exact
/// quarantine copies, every offset committed, the group's lag reported, and
/// the password nowhere in the debug-level log.
fn ingest_with_the_documented_acls(kafka: &SecureKafka, user: &User, secret: Secret, name: &str) {
    let topic = unique(name);
    let group = unique(&format!("{name}-group"));
    kafka.create_topics(&[(&topic, 1)]);
    let payloads = records(40, 6);
    kafka.produce(&topic, &payloads);
    kafka.grant(user, &documented_acls(&topic, &group));

    // An application group pipewarden may describe (its lag is reported) and
    // one it may not (invisible to it: not reported, and no error).
    let (app, hidden) = (unique(&format!("{name}-app")), unique(&format!("{name}-hidden")));
    kafka.commit_offset(&app, &topic, 10);
    kafka.commit_offset(&hidden, &topic, 5);
    kafka.grant(user, &[Acl::new(Resource::Group, &app, Pattern::Literal, Operation::Describe)]);

    let mut run = start(kafka, user, (&user.password, secret), &topic, &group, "debug,librdkafka=debug");
    run.daemon
        .wait_for("46 verdicts", WAIT, |d| verdicts(d, &topic, "unverified") + verdicts(d, &topic, "invalid") >= 46.0);
    run.daemon.wait_for("every offset committed", WAIT, |_| kafka.committed_offset(&group, &topic) == 46);
    let text = run.daemon.scrape().unwrap();
    // No schema is registered for the topic: the contract is checked, the schema is not.
    assert_eq!(verdicts(&run.daemon, &topic, "unverified"), 40.0, "{text}");
    assert_eq!(verdicts(&run.daemon, &topic, "valid"), 0.0, "{text}");
    assert_eq!(verdicts(&run.daemon, &topic, "invalid"), 6.0, "{text}");
    assert_eq!(sample(&text, &format!("pipewarden_quarantined_records_total{{topic=\"{topic}\"}}")), 6.0, "{text}");
    assert_eq!(run.daemon.status("/readyz"), Some(200));

    // The lag monitor sees the group through the same credentials: lag 0.
    run.daemon.wait_for("the group's lag report", WAIT, |d| {
        d.http_get(&format!("/api/v1/lag/{group}")).is_some_and(|(status, body)| {
            status == 200 && serde_json::from_str::<serde_json::Value>(&body).unwrap()["lag_messages"] == 0
        })
    });
    let app_lag = run.daemon.http_get(&format!("/api/v1/lag/{app}")).expect("lag of the application group");
    assert_eq!(app_lag.0, 200, "{}", app_lag.1);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&app_lag.1).unwrap()["lag_messages"], 36, "{}", app_lag.1);
    assert_eq!(run.daemon.status(&format!("/api/v1/lag/{hidden}")), Some(404));
    let lag_errors: f64 = ["list_groups", "group_offsets", "describe_group", "end_offsets"]
        .iter()
        .map(|kind| run.daemon.metric(&format!("pipewarden_lag_poll_errors_total{{kind=\"{kind}\"}}")))
        .sum();
    assert_eq!(lag_errors, 0.0, "{}", run.daemon.scrape().unwrap());
    assert!(run.daemon.terminate().success());

    let copies = kafka.read_all(&format!("{topic}.quarantine"));
    let origins: Vec<i64> = copies
        .iter()
        .map(|copy| {
            let headers = copy.headers().expect("headers");
            let origin = headers.iter().find(|h| h.key == "pipewarden.origin.offset").expect("origin offset");
            std::str::from_utf8(origin.value.unwrap()).unwrap().parse().unwrap()
        })
        .collect();
    let poison_offsets: Vec<i64> =
        payloads.iter().enumerate().filter(|(_, p)| p.len() == 30).map(|(i, _)| i as i64).collect();
    assert_eq!(origins, poison_offsets);
    for copy in &copies {
        let offset = origins[copies.iter().position(|c| c.offset() == copy.offset()).unwrap()];
        assert_eq!(copy.payload(), Some(payloads[offset as usize].as_slice()));
    }

    // The start-up banner and every log line, librdkafka's debug output
    // included: the password never appears, its redaction marker does.
    let log = run.log_text();
    assert!(log.contains("pipewarden starting"), "{log}");
    assert!(log.contains("sasl.password"), "the banner lists the property: {log}");
    assert!(log.contains("SASL [thrd:"), "librdkafka's SASL debug lines are in the log: {log}");
    assert!(!log.contains(&user.password), "the password was logged");
    // Payload contents never reach the log, not even at debug level.
    for fragment in ["{\"event_type\"", "\"trace_id\":\"trace-", "shop-agent"] {
        assert!(!log.contains(fragment), "payload content {fragment:?} was logged");
    }
}

#[test]
fn plain_over_tls_with_a_password_from_the_environment_and_the_documented_acls_governs_exactly() {
    let kafka = SecureKafka::from_env();
    ingest_with_the_documented_acls(&kafka, &kafka.plain.clone(), Secret::Environment, "sec-plain");
}

#[test]
fn scram_sha_512_over_tls_with_a_password_file_and_the_documented_acls_governs_exactly() {
    let kafka = SecureKafka::from_env();
    ingest_with_the_documented_acls(&kafka, &kafka.scram.clone(), Secret::File, "sec-scram");
}

fn denied(daemon: &Daemon, kind: &str) -> f64 {
    daemon.metric(&format!("pipewarden_kafka_access_denied_total{{kind=\"{kind}\"}}"))
}

/// `/readyz` answers 503 and its body names `reason`.
fn assert_not_ready_because(daemon: &Daemon, reason: &str) {
    let (status, body) = daemon.http_get("/readyz").expect("readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(reason), "readyz does not say {reason:?}: {body}");
}

/// 10 valid records with poison at offsets 2 and 8.
fn twelve_records() -> Vec<Vec<u8>> {
    let payloads = records(10, 2);
    assert_eq!(
        payloads.iter().map(|p| p.len() == 30).collect::<Vec<_>>()[..9],
        [false, false, true, false, false, false, false, false, true]
    );
    payloads
}

#[test]
fn without_read_on_the_watched_topic_the_missing_acl_is_named_and_no_offset_moves() {
    let kafka = SecureKafka::from_env();
    let user = kafka.plain.clone();
    let topic = unique("sec-noread");
    let group = unique("sec-noread-group");
    kafka.create_topics(&[(&topic, 1)]);
    kafka.produce(&topic, &twelve_records());
    // DESCRIBE lets pipewarden see the topic and subscribe; READ is missing.
    // (Without DESCRIBE either, the topic is invisible and simply not watched.)
    let mut acls = documented_acls(&topic, &group);
    acls[0] = Acl::new(Resource::Topic, &topic, Pattern::Literal, Operation::Describe);
    kafka.grant(&user, &acls);

    let mut run = start(&kafka, &user, (&user.password, Secret::Environment), &topic, &group, "info");
    run.daemon.wait_for("the refused read", WAIT, |d| denied(d, "topic_read") >= 1.0);
    assert_not_ready_because(&run.daemon, "not authorized: kafka denied READ on a watched topic");
    assert_eq!(verdicts(&run.daemon, &topic, "unverified") + verdicts(&run.daemon, &topic, "invalid"), 0.0);
    assert_eq!(kafka.committed_offset(&group, &topic), -1, "no offset moved");
    let log = run.log_text();
    assert!(log.contains("kafka refused access"), "{log}");
    assert!(log.contains("grant READ on every watched topic"), "{log}");

    // Granted: the records flow and readiness returns, without a restart.
    kafka.grant(&user, &[Acl::new(Resource::Topic, &topic, Pattern::Literal, Operation::Read)]);
    run.daemon.wait_for("every offset committed", WAIT, |_| kafka.committed_offset(&group, &topic) == 12);
    assert_eq!(verdicts(&run.daemon, &topic, "unverified"), 10.0);
    assert_eq!(verdicts(&run.daemon, &topic, "invalid"), 2.0);
    run.daemon.wait_for("ready", WAIT, |d| d.status("/readyz") == Some(200));
    assert!(run.daemon.terminate().success());
}

#[test]
fn without_read_on_the_group_the_missing_acl_is_named_and_nothing_is_consumed() {
    let kafka = SecureKafka::from_env();
    let user = kafka.plain.clone();
    let topic = unique("sec-nogroup");
    let group = unique("sec-nogroup-group");
    kafka.create_topics(&[(&topic, 1)]);
    kafka.produce(&topic, &twelve_records());
    let mut acls = documented_acls(&topic, &group);
    acls.remove(1);
    kafka.grant(&user, &acls);

    let mut run = start(&kafka, &user, (&user.password, Secret::Environment), &topic, &group, "info");
    run.daemon.wait_for("the refused group", WAIT, |d| denied(d, "group_read") >= 1.0);
    assert_not_ready_because(&run.daemon, "not authorized: kafka denied READ on the consumer group");
    assert_eq!(verdicts(&run.daemon, &topic, "unverified") + verdicts(&run.daemon, &topic, "invalid"), 0.0);
    assert_eq!(kafka.committed_offset(&group, &topic), -1, "no offset moved");
    assert!(run.log_text().contains("grant READ on the consumer group kafka.group_id"));
    assert!(run.daemon.terminate().success());
}

#[test]
fn without_write_on_the_quarantine_topic_the_partition_waits_at_the_poison_record() {
    let kafka = SecureKafka::from_env();
    let user = kafka.plain.clone();
    let topic = unique("sec-nowrite");
    let group = unique("sec-nowrite-group");
    let quarantine = format!("{topic}.quarantine");
    kafka.create_topics(&[(&topic, 1), (&quarantine, 1)]);
    kafka.produce(&topic, &twelve_records());
    let mut acls = documented_acls(&topic, &group);
    acls.remove(2);
    kafka.grant(&user, &acls);

    let mut run = start(&kafka, &user, (&user.password, Secret::Environment), &topic, &group, "info");
    run.daemon.wait_for("the refused write", WAIT, |d| denied(d, "quarantine_write") >= 1.0);
    assert_not_ready_because(&run.daemon, "not authorized: kafka denied WRITE on a quarantine topic");
    assert_eq!(run.daemon.metric("pipewarden_paused_partitions{reason=\"quarantine_failed\"}"), 1.0);
    // Nothing at or past the first poison record (offset 2) is committed.
    std::thread::sleep(Duration::from_millis(1500));
    let committed = kafka.committed_offset(&group, &topic);
    assert!(committed <= 2, "committed offset {committed} moved past the unquarantined record");
    assert!(kafka.read_all(&quarantine).is_empty());
    assert!(run.log_text().contains("grant WRITE on the quarantine topics"));

    kafka.grant(&user, &[Acl::new(Resource::Topic, &quarantine, Pattern::Literal, Operation::Write)]);
    run.daemon.wait_for("every offset committed", WAIT, |_| kafka.committed_offset(&group, &topic) == 12);
    run.daemon.wait_for("ready", WAIT, |d| d.status("/readyz") == Some(200));
    assert!(run.daemon.terminate().success());
    let origins: Vec<String> = kafka
        .read_all(&quarantine)
        .iter()
        .map(|copy| {
            let headers = copy.headers().unwrap();
            let origin = headers.iter().find(|h| h.key == "pipewarden.origin.offset").unwrap();
            String::from_utf8(origin.value.unwrap().to_vec()).unwrap()
        })
        .collect();
    assert_eq!(origins, ["2", "8"]);
}

#[test]
fn without_create_a_missing_quarantine_topic_is_named_and_the_partition_waits() {
    let kafka = SecureKafka::from_env();
    let user = kafka.plain.clone();
    let topic = unique("sec-nocreate");
    let group = unique("sec-nocreate-group");
    kafka.create_topics(&[(&topic, 1)]);
    kafka.produce(&topic, &twelve_records());
    let mut acls = documented_acls(&topic, &group);
    acls.remove(3);
    kafka.grant(&user, &acls);

    let mut run = start(&kafka, &user, (&user.password, Secret::Environment), &topic, &group, "info");
    run.daemon.wait_for("the refused creation", WAIT, |d| denied(d, "quarantine_create") >= 1.0);
    assert_not_ready_because(&run.daemon, "not authorized: kafka denied CREATE of a quarantine topic");
    std::thread::sleep(Duration::from_millis(1500));
    let committed = kafka.committed_offset(&group, &topic);
    assert!(committed <= 2, "committed offset {committed} moved past the unquarantined record");
    assert!(run.log_text().contains("grant CREATE on the quarantine topics"));
    assert!(run.daemon.terminate().success());
}

#[test]
fn a_wrong_password_is_an_authentication_error_and_neither_password_is_logged() {
    let kafka = SecureKafka::from_env();
    let user = kafka.scram.clone();
    let topic = unique("sec-badpass");
    let group = unique("sec-badpass-group");
    kafka.create_topics(&[(&topic, 1)]);
    kafka.produce(&topic, &twelve_records());
    kafka.grant(&user, &documented_acls(&topic, &group));
    let wrong = unique("not-the-password");

    let mut run = start(&kafka, &user, (&wrong, Secret::Environment), &topic, &group, "debug");
    run.daemon.wait_for("the refused login", WAIT, |d| denied(d, "authentication") >= 1.0);
    assert_not_ready_because(&run.daemon, "kafka authentication failed: check the SASL credentials");
    assert_eq!(verdicts(&run.daemon, &topic, "unverified") + verdicts(&run.daemon, &topic, "invalid"), 0.0);
    assert_eq!(kafka.committed_offset(&group, &topic), -1, "no offset moved");
    assert!(run.daemon.terminate().success());
    let log = run.log_text();
    assert!(log.contains("SASL authentication error"), "{log}");
    assert!(log.contains("check sasl.mechanism, sasl.username and the password"), "{log}");
    assert!(!log.contains(&wrong), "the configured password was logged");
    assert!(!log.contains(&user.password), "the real password was logged");
}

#[test]
fn scale_out_mode_works_with_the_documented_acls_for_its_observations_topic() {
    let kafka = SecureKafka::from_env();
    let user = kafka.plain.clone();
    let topic = unique("sec-scaleout");
    let group = unique("sec-scaleout-group");
    let observations = format!("pipewarden.{topic}.observations");
    kafka.create_topics(&[(&topic, 1)]);
    kafka.produce(&topic, &twelve_records());
    let mut acls = documented_acls(&topic, &group);
    for operation in [Operation::Create, Operation::Write, Operation::Read] {
        acls.push(Acl::new(Resource::Topic, &observations, Pattern::Literal, operation));
    }
    acls.push(Acl::new(Resource::Group, &format!("{group}.observations"), Pattern::Literal, Operation::Read));
    kafka.grant(&user, &acls);

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pipewarden.log");
    let properties = kafka.daemon_properties(&user, &format!("${{{PASSWORD_VAR}}}"));
    let env = [(PASSWORD_VAR, user.password.as_str()), ("KAFKA_BOOTSTRAP", kafka.bootstrap.as_str())];
    let include = regex_escape(&topic);
    let extra =
        format!("[correlate]\nmode = \"kafka\"\n[correlate.kafka]\ntopic = \"{observations}\"\npartitions = 2\n");
    let mut options = DaemonOptions::new(&include, &group);
    options.governance = GOVERNANCE;
    options.kafka_properties = &properties;
    options.env = &env;
    options.extra = &extra;
    options.log_file = Some(&log);
    let mut daemon = Daemon::start(options);
    let consumed = "pipewarden_observations_total{result=\"consumed\"}";
    daemon.wait_for("12 observations through the topic", WAIT, |d| d.metric(consumed) >= 12.0);
    daemon.wait_for("every offset committed", WAIT, |_| kafka.committed_offset(&group, &topic) == 12);
    let text = daemon.scrape().unwrap();
    assert_eq!(sample(&text, "pipewarden_observations_total{result=\"produced\"}"), 12.0, "{text}");
    assert_eq!(sample(&text, "pipewarden_observations_total{result=\"dropped\"}"), 0.0, "{text}");
    assert_eq!(daemon.status("/readyz"), Some(200));
    assert!(daemon.terminate().success());
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(!log_text.contains(&user.password), "the password was logged");
}

/// Starts pipewarden as the PLAIN user with extra configuration sections.
fn start_with(kafka: &SecureKafka, topic: &str, group: &str, governance: &str, extra: &str) -> Run {
    let user = &kafka.plain;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pipewarden.log");
    let properties = kafka.daemon_properties(user, &format!("${{{PASSWORD_VAR}}}"));
    let env = [(PASSWORD_VAR, user.password.as_str()), ("KAFKA_BOOTSTRAP", kafka.bootstrap.as_str())];
    let include = regex_escape(topic);
    let mut options = DaemonOptions::new(&include, group);
    options.governance = governance;
    options.extra = extra;
    options.kafka_properties = &properties;
    options.env = &env;
    options.log_file = Some(&log);
    Run { daemon: Daemon::start(options), log, _dir: dir }
}

#[test]
fn transactional_mode_needs_write_on_its_transactional_id_and_says_so_at_start_up() {
    let kafka = SecureKafka::from_env();
    let user = kafka.plain.clone();
    let topic = unique("sec-tx");
    let group = unique("sec-tx-group");
    let transactional_id = unique("sec-tx-id");
    kafka.create_topics(&[(&topic, 1)]);
    kafka.produce(&topic, &twelve_records());
    kafka.grant(&user, &documented_acls(&topic, &group));
    let governance = GOVERNANCE.replace(
        "[quarantine]\n",
        &format!("[quarantine]\ntransactional = true\ntransactional_id = \"{transactional_id}\"\n"),
    );

    // Without WRITE on the transactional id: a start-up failure that names it.
    let mut run = start_with(&kafka, &topic, &group, &governance, "");
    let status = run.daemon.wait_exit(WAIT);
    assert!(!status.success());
    let log = run.log_text();
    assert!(log.contains("failed to initialise quarantine transactions"), "{log}");
    assert!(log.contains("Transactional Id authorization failed"), "{log}");
    assert_eq!(kafka.committed_offset(&group, &topic), -1, "no offset moved");

    kafka.grant(&user, &[Acl::new(Resource::TransactionalId, &transactional_id, Pattern::Literal, Operation::Write)]);
    let mut run = start_with(&kafka, &topic, &group, &governance, "");
    run.daemon.wait_for("every offset committed", WAIT, |_| kafka.committed_offset(&group, &topic) == 12);
    assert_eq!(run.daemon.metric(&format!("pipewarden_quarantined_records_total{{topic=\"{topic}\"}}")), 2.0);
    assert!(run.daemon.terminate().success());
    // Two committed copies (transaction markers take offsets too).
    assert_eq!(kafka.read_all(&format!("{topic}.quarantine")).len(), 2);
}

#[test]
fn the_lag_of_a_group_on_an_unwatched_topic_needs_describe_on_that_topic() {
    let kafka = SecureKafka::from_env();
    let user = kafka.plain.clone();
    let topic = unique("sec-laggy");
    let group = unique("sec-laggy-group");
    let other = unique("sec-laggy-other");
    let app = unique("sec-laggy-app");
    kafka.create_topics(&[(&topic, 1), (&other, 1)]);
    kafka.produce(&other, &records(10, 0));
    kafka.commit_offset(&app, &other, 4);
    let mut acls = documented_acls(&topic, &group);
    acls.push(Acl::new(Resource::Group, &app, Pattern::Literal, Operation::Describe));
    kafka.grant(&user, &acls);

    let mut run = start_with(&kafka, &topic, &group, GOVERNANCE, "[lag]\npoll_interval_ms = 500\n");
    let report = |d: &Daemon| {
        d.http_get(&format!("/api/v1/lag/{app}"))
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).unwrap())
    };
    // The group is visible, but the broker leaves out offsets of topics
    // pipewarden may not describe: no partitions, no lag.
    run.daemon.wait_for("the group's report", WAIT, |d| report(d).is_some());
    let seen = report(&run.daemon).unwrap();
    assert_eq!(seen["partitions"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["lag_messages"], 0, "{seen}");

    kafka.grant(&user, &[Acl::new(Resource::Topic, &other, Pattern::Literal, Operation::Describe)]);
    run.daemon.wait_for("the lag on the described topic", WAIT, |d| report(d).is_some_and(|r| r["lag_messages"] == 6));
    assert!(run.daemon.terminate().success());
}
