//! The secured test broker (`KAFKA_SECURE=1 scripts/kafka.sh`) as tests see
//! it: SASL (PLAIN or SCRAM-SHA-512) over TLS with a test CA, ACLs enforced.
//! `scripts/test.sh` exports its `SECURE_KAFKA_*` variables; the defaults
//! are that script's own. The tests act as `admin` (a super user) to create
//! topics, produce, read back and grant ACLs to pipewarden's users.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One user of the secured broker.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    /// `PLAIN` or `SCRAM-SHA-512`.
    pub mechanism: &'static str,
}

pub struct SecureKafka {
    pub bootstrap: String,
    pub ca_file: PathBuf,
    pub admin: User,
    pub plain: User,
    pub scram: User,
}

/// What an ACL allows on a resource, in librdkafka's terms.
#[derive(Clone, Copy, Debug)]
pub enum Resource {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

#[derive(Clone, Copy, Debug)]
pub enum Pattern {
    Literal,
    Prefixed,
}

#[derive(Clone, Copy, Debug)]
pub enum Operation {
    Read,
    Write,
    Create,
    Describe,
}

/// One ALLOW ACL for a user, from any host.
#[derive(Clone, Debug)]
pub struct Acl {
    pub resource: Resource,
    pub name: String,
    pub pattern: Pattern,
    pub operation: Operation,
}

impl Acl {
    pub fn new(resource: Resource, name: &str, pattern: Pattern, operation: Operation) -> Acl {
        Acl { resource, name: name.to_string(), pattern, operation }
    }
}

impl SecureKafka {
    pub fn from_env() -> SecureKafka {
        let run = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".run/kafka-secure");
        let var = |name: &str| std::env::var(name).ok();
        let user = |prefix: &str, default_name: &str, mechanism: &'static str| {
            let name = var(&format!("SECURE_KAFKA_{prefix}_USERNAME")).unwrap_or_else(|| default_name.into());
            let file = var(&format!("SECURE_KAFKA_{prefix}_PASSWORD_FILE"))
                .map(PathBuf::from)
                .unwrap_or_else(|| run.join(format!("secrets/{name}.password")));
            let password = std::fs::read_to_string(&file).unwrap_or_else(|e| {
                panic!("{}: {e} (start it: KAFKA_SECURE=1 scripts/kafka.sh start)", file.display())
            });
            User { name, password: password.trim().to_string(), mechanism }
        };
        SecureKafka {
            bootstrap: var("SECURE_KAFKA_BOOTSTRAP").unwrap_or_else(|| "127.0.0.1:9094".into()),
            ca_file: var("SECURE_KAFKA_CA").map(PathBuf::from).unwrap_or_else(|| run.join("tls/ca.pem")),
            admin: user("ADMIN", "admin", "PLAIN"),
            plain: user("PLAIN", "pipewarden", "PLAIN"),
            scram: user("SCRAM", "pipewarden-scram", "SCRAM-SHA-512"),
        }
    }

    /// Client settings of `user`, as a test client uses them.
    pub fn client_config(&self, user: &User) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", user.mechanism)
            .set("sasl.username", &user.name)
            .set("sasl.password", &user.password)
            .set("ssl.ca.location", self.ca_file.to_str().unwrap());
        config
    }

    /// `[kafka.properties]` lines for pipewarden as `user`; the password is
    /// `password_reference`, e.g. `${VAR}` or `${file:/path}`, never the value.
    pub fn daemon_properties(&self, user: &User, password_reference: &str) -> String {
        format!(
            "\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"{}\"\n\"sasl.username\" = \"{}\"\n\"sasl.password\" = \"{password_reference}\"\n\"ssl.ca.location\" = \"{}\"\n",
            user.mechanism,
            user.name,
            self.ca_file.display()
        )
    }

    fn admin_client(&self) -> AdminClient<DefaultClientContext> {
        self.client_config(&self.admin).create().expect("admin client")
    }

    /// Creates topics as admin and waits until they have leaders.
    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        let admin = self.admin_client();
        let new: Vec<NewTopic> =
            topics.iter().map(|(name, parts)| NewTopic::new(name, *parts, TopicReplication::Fixed(1))).collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in runtime.block_on(admin.create_topics(&new, &options)).expect("create topics") {
            result.unwrap_or_else(|(topic, err)| panic!("create topic {topic}: {err}"));
        }
        let consumer: BaseConsumer = self.client_config(&self.admin).create().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, parts) in topics {
            while !consumer.fetch_metadata(Some(name), Duration::from_secs(5)).is_ok_and(|md| {
                md.topics().first().is_some_and(|t| t.error().is_none() && t.partitions().len() == *parts as usize)
            }) {
                assert!(Instant::now() < deadline, "topic {name} never became available");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Produces `payloads` to partition 0 of `topic` as admin and waits for the acknowledgements.
    pub fn produce(&self, topic: &str, payloads: &[Vec<u8>]) {
        let producer: ThreadedProducer<DefaultProducerContext> =
            self.client_config(&self.admin).set("linger.ms", "5").create().expect("producer");
        for payload in payloads {
            producer.send(BaseRecord::<(), [u8]>::to(topic).payload(payload).partition(0)).expect("queue record");
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
        assert_eq!(producer.in_flight_count(), 0);
    }

    /// Every committed record of a one-partition `topic` up to its end, read
    /// as admin. The end is found by partition EOF: transaction markers take
    /// offsets but are no records.
    pub fn read_all(&self, topic: &str) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = self
            .client_config(&self.admin)
            .set("group.id", super::unique("reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
        consumer.assign(&list).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "{topic}: no end after {} records", out.len());
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => out.push(message.detach()),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(err)) => panic!("read {topic}: {err}"),
                None => {}
            }
        }
        out.sort_by_key(|m| m.offset());
        out
    }

    /// Committed offset of partition 0 of `topic` for `group` (-1 when none), asked as admin.
    pub fn committed_offset(&self, group: &str, topic: &str) -> i64 {
        let consumer: BaseConsumer = self.client_config(&self.admin).set("group.id", group).create().unwrap();
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, 0);
        let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
        match committed.find_partition(topic, 0).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => offset,
            _ => -1,
        }
    }

    /// Commits `offset` on partition 0 of `topic` for `group`, as admin (an
    /// application group whose lag pipewarden reports).
    pub fn commit_offset(&self, group: &str, topic: &str, offset: i64) {
        let consumer: BaseConsumer = self.client_config(&self.admin).set("group.id", group).create().unwrap();
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, 0, Offset::Offset(offset)).unwrap();
        consumer.commit(&list, rdkafka::consumer::CommitMode::Sync).expect("commit");
    }

    /// Grants `acls` to `user` as admin (rdkafka has no safe CreateAcls, so
    /// through librdkafka's C API); panics on any failure.
    pub fn grant(&self, user: &User, acls: &[Acl]) {
        let admin = self.admin_client();
        let principal = CString::new(format!("User:{}", user.name)).unwrap();
        let host = CString::new("*").unwrap();
        let mut errstr = [0 as std::os::raw::c_char; 512];
        let mut bindings: Vec<*mut rd::rd_kafka_AclBinding_t> = acls
            .iter()
            .map(|acl| {
                let name = CString::new(acl.name.as_str()).unwrap();
                let (resource, name) = match acl.resource {
                    Resource::Topic => (rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, name),
                    Resource::Group => (rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP, name),
                    Resource::Cluster => {
                        (rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_BROKER, CString::new("kafka-cluster").unwrap())
                    }
                    Resource::TransactionalId => {
                        (rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID, name)
                    }
                };
                let pattern = match acl.pattern {
                    Pattern::Literal => rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
                    Pattern::Prefixed => rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED,
                };
                let operation = match acl.operation {
                    Operation::Read => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ,
                    Operation::Write => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE,
                    Operation::Create => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_CREATE,
                    Operation::Describe => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_DESCRIBE,
                };
                // SAFETY: every string outlives the call, which copies them.
                let binding = unsafe {
                    rd::rd_kafka_AclBinding_new(
                        resource,
                        name.as_ptr(),
                        pattern,
                        principal.as_ptr(),
                        host.as_ptr(),
                        operation,
                        rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
                        errstr.as_mut_ptr(),
                        errstr.len(),
                    )
                };
                assert!(
                    !binding.is_null(),
                    "acl {acl:?}: {}",
                    unsafe { CStr::from_ptr(errstr.as_ptr()) }.to_string_lossy()
                );
                binding
            })
            .collect();
        let mut failures = BTreeMap::new();
        // SAFETY: the client, queue and bindings live across the request; the
        // event and bindings are destroyed once read.
        unsafe {
            let native = admin.inner().native_ptr();
            let queue = rd::rd_kafka_queue_new(native);
            rd::rd_kafka_CreateAcls(native, bindings.as_mut_ptr(), bindings.len(), std::ptr::null(), queue);
            let event = rd::rd_kafka_queue_poll(queue, 30_000);
            assert!(!event.is_null(), "no CreateAcls result within 30 s");
            if rd::rd_kafka_event_error(event) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                failures.insert(
                    usize::MAX,
                    CStr::from_ptr(rd::rd_kafka_event_error_string(event)).to_string_lossy().into_owned(),
                );
            } else {
                let result = rd::rd_kafka_event_CreateAcls_result(event);
                let mut count = 0;
                let results = rd::rd_kafka_CreateAcls_result_acls(result, &mut count);
                for i in 0..count {
                    let error = rd::rd_kafka_acl_result_error(*results.add(i));
                    if !error.is_null() {
                        failures
                            .insert(i, CStr::from_ptr(rd::rd_kafka_error_string(error)).to_string_lossy().into_owned());
                    }
                }
            }
            rd::rd_kafka_event_destroy(event);
            rd::rd_kafka_queue_destroy(queue);
            rd::rd_kafka_AclBinding_destroy_array(bindings.as_mut_ptr(), bindings.len());
        }
        assert!(failures.is_empty(), "CreateAcls failed: {failures:?} for {acls:?}");
        // ACLs reach the authorizer through the metadata log; the broker is
        // also the controller, so they apply within milliseconds. Give it a beat.
        std::thread::sleep(Duration::from_millis(300));
    }
}
