//! A small blocking client for a Confluent-API-compatible schema registry
//! (Confluent Schema Registry, Apicurio's `/apis/ccompat/v7`, Redpanda, Karapace).
//!
//! In: a schema ID, or a subject and version. Out: the schema's kind and text
//! ([`RegistrySchema`]), or a [`LookupError`] that keeps "the registry says
//! it does not exist" (`NotFound`) apart from "could not ask"
//! (`Unavailable`): a registry outage must never turn into "unknown schema"
//! verdicts on records.
//!
//! Place in the data path: only the schema cache's worker thread calls this
//! (see [`super::cache`]); the ingest thread never waits on HTTP.
//!
//! Why not the `schema_registry_converter` crate: its decoders fetch on a
//! miss in the caller's thread (blocking or async), which the ingest thread
//! must never do; its errors are one `SRCError { retriable, cached }` with no
//! not-found variant, so "unknown schema" vs "registry down" would be
//! guesswork on message strings; and it decodes into its own types rather
//! than validating against a compiled schema we hold. The two GETs we need
//! are ~100 lines on reqwest, with the response mapping a pure, tested
//! function ([`map_response`]).
//!
//! Schema `references` (schemas that import other subjects) are reported in
//! [`RegistrySchema::references`] but not resolved: such a schema usually
//! fails to compile and is then cached as `Invalid`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::schema::SchemaKind;

/// How to reach the registry. `url` is the API base and may carry a path
/// (`http://127.0.0.1:8081/apis/ccompat/v7`). `Debug` hides the password.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<crate::config::Secret>,
    /// PEM file with one or more CA certificates, trusted in addition to
    /// the built-in web roots (rustls).
    pub ca_file: Option<PathBuf>,
    /// Whole-request timeout (connect + response).
    pub timeout: Duration,
}

/// A schema as the registry returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySchema {
    pub kind: SchemaKind,
    pub text: String,
    /// Number of `references` entries (not resolved; see the module doc).
    pub references: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// A definitive answer: the registry says the ID/subject/version does
    /// not exist.
    #[error("not found in the schema registry")]
    NotFound,
    /// Could not get an answer (network, timeout, 5xx, 401/403, a body we
    /// cannot read): try again later; says nothing about the schema.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
    /// An answer that can never become a usable schema (fetched but does not
    /// compile, unsupported `schemaType`).
    #[error("invalid schema: {0}")]
    Invalid(String),
}

/// Confluent's error codes for "does not exist": subject, version, schema
/// not found; subject / version soft-deleted.
const NOT_FOUND_CODES: [i64; 5] = [40401, 40402, 40403, 40404, 40406];

pub struct RegistryClient {
    http: reqwest::blocking::Client,
    /// Base URL without a trailing slash.
    base: String,
    auth: Option<(String, Option<crate::config::Secret>)>,
}

impl std::fmt::Debug for RegistryClient {
    // Hand-written so the password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base)
            .field("user", &self.auth.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Builds the HTTP client; fails on a bad URL or an unreadable CA file.
    /// Callable from any thread, including inside a tokio runtime (the
    /// client is built on a short-lived helper thread because reqwest's
    /// blocking builder panics inside a runtime); the lookups themselves
    /// must run on a plain thread, as the cache's worker does.
    pub fn new(settings: RegistrySettings) -> Result<Self, String> {
        let base = settings.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| format!("schema registry url {base:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("schema registry url {base:?}: scheme must be http or https"));
        }
        // reqwest puts the URL into its error messages, which we log.
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("schema registry url: put credentials in username/password, not in the url".into());
        }
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("pipewarden/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("schema registry ca_file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("schema registry ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("schema registry ca_file {}: no PEM certificate in it", path.display()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = std::thread::scope(|scope| scope.spawn(move || builder.build()).join())
            .map_err(|_| "schema registry: building the HTTP client panicked".to_string())?
            .map_err(|e| format!("schema registry: HTTP client: {e}"))?;
        let auth = settings.username.map(|user| (user, settings.password));
        Ok(RegistryClient { http, base, auth })
    }

    /// `GET /schemas/ids/{id}`.
    pub fn schema_by_id(&self, id: u32) -> Result<RegistrySchema, LookupError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        self.get(&url).map(|(_, schema)| schema)
    }

    /// `GET /subjects/{subject}/versions/{version}`; `None` is `latest`.
    /// Returns the schema's global ID with it.
    pub fn subject_version(&self, subject: &str, version: Option<&str>) -> Result<(u32, RegistrySchema), LookupError> {
        let version = check_version(version)?;
        let url = format!("{}/subjects/{}/versions/{version}", self.base, encode_path_segment(subject));
        match self.get(&url)? {
            (Some(id), schema) => Ok((id, schema)),
            (None, _) => Err(LookupError::Unavailable("subject version response has no \"id\"".into())),
        }
    }

    fn get(&self, url: &str) -> Result<(Option<u32>, RegistrySchema), LookupError> {
        let mut request = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/vnd.schemaregistry.v1+json, application/json");
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, password.as_ref().map(crate::config::Secret::expose));
        }
        let response = request.send().map_err(|e| LookupError::Unavailable(describe(&e)))?;
        let status = response.status().as_u16();
        let body = response.bytes().map_err(|e| LookupError::Unavailable(describe(&e)))?;
        map_response(status, &body)
    }
}

/// `None`, `latest` and `-1` mean the latest version; otherwise a version
/// number. Anything else (a record's `schema_version` of "v2" or "1.0.0")
/// cannot exist in a Confluent registry: NotFound, without asking.
fn check_version(version: Option<&str>) -> Result<&str, LookupError> {
    match version {
        None | Some("latest") | Some("-1") => Ok("latest"),
        Some(v) if is_version_number(v) => Ok(v),
        Some(_) => Err(LookupError::NotFound),
    }
}

/// A registry version number: 1 to 10 ASCII digits.
pub fn is_version_number(v: &str) -> bool {
    !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit())
}

/// reqwest's Display hides the cause ("error sending request"); the chain
/// says what actually happened (connection refused, timed out, TLS).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Percent-encodes one path segment: subjects may contain `/`, spaces or
/// `:` (Confluent's context syntax), which must not change the path.
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    id: Option<u32>,
    #[serde(default)]
    references: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: i64,
    #[serde(default)]
    message: Option<String>,
}

/// Maps an HTTP status and body to a lookup result. Pure, so every branch
/// is unit-tested without a server. Returns the `id` field when present
/// (subject lookups) with the schema.
pub fn map_response(status: u16, body: &[u8]) -> Result<(Option<u32>, RegistrySchema), LookupError> {
    match status {
        200..=299 => {
            let parsed: SchemaBody = serde_json::from_slice(body)
                .map_err(|e| LookupError::Unavailable(format!("HTTP {status} with an unreadable body: {e}")))?;
            let kind = SchemaKind::from_registry_type(parsed.schema_type.as_deref()).map_err(LookupError::Invalid)?;
            let references = parsed.references.map_or(0, |r| r.len());
            Ok((parsed.id, RegistrySchema { kind, text: parsed.schema, references }))
        }
        // Only the registry's own error codes are an answer. A 404 without
        // one comes from the wrong base path (Apicurio answers an unknown
        // path such as `/apis/ccompat/v6/...` with an empty 404, Confluent
        // with error_code 404) or a proxy: treating that as NotFound would
        // condemn every record because of a config typo.
        404 => match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) if NOT_FOUND_CODES.contains(&e.error_code) => Err(LookupError::NotFound),
            Ok(e) => Err(LookupError::Unavailable(format!(
                "HTTP 404 with error_code {} (wrong url path?): {}",
                e.error_code,
                e.message.unwrap_or_default()
            ))),
            Err(_) => Err(LookupError::Unavailable(format!(
                "HTTP 404 without a registry error code (wrong url path?): {}",
                snippet(body)
            ))),
        },
        401 | 403 => Err(LookupError::Unavailable(format!("HTTP {status}: check the registry credentials"))),
        _ => {
            let message = serde_json::from_slice::<ErrorBody>(body)
                .ok()
                .and_then(|e| e.message.map(|m| format!("error_code {}: {m}", e.error_code)))
                .unwrap_or_else(|| snippet(body));
            Err(LookupError::Unavailable(format!("HTTP {status}: {message}")))
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found(code: i64) -> Vec<u8> {
        format!(r#"{{"error_code": {code}, "message": "gone"}}"#).into_bytes()
    }

    #[test]
    fn success_bodies() {
        let body = br#"{"schema": "{\"type\":\"string\"}"}"#;
        let (id, s) = map_response(200, body).unwrap();
        assert_eq!((id, s.kind, s.text.as_str(), s.references), (None, SchemaKind::Avro, r#"{"type":"string"}"#, 0));

        let body = br#"{"subject":"orders-value","version":3,"id":42,"schemaType":"JSON","schema":"{}",
                        "references":[{"name":"a","subject":"b","version":1}]}"#;
        let (id, s) = map_response(200, body).unwrap();
        assert_eq!((id, s.kind, s.references), (Some(42), SchemaKind::Json, 1));

        let body = br#"{"schemaType":"PROTOBUF","schema":"syntax = \"proto3\";"}"#;
        assert_eq!(map_response(200, body).unwrap().1.kind, SchemaKind::Protobuf);

        let body = br#"{"schemaType":"XML","schema":"<x/>"}"#;
        assert!(matches!(map_response(200, body), Err(LookupError::Invalid(_))));
    }

    #[test]
    fn not_found_only_when_definitive() {
        for code in [40401, 40402, 40403, 40404, 40406] {
            assert_eq!(map_response(404, &not_found(code)), Err(LookupError::NotFound), "{code}");
        }
        // Wrong base path: Apicurio's empty 404, Confluent's error_code 404,
        // Apicurio's RESTEasy body, a proxy's HTML page. None is an answer.
        let html = &b"<html><body><h1>404 Not Found</h1></body></html>"[..];
        let confluent = &br#"{"error_code":404,"message":"HTTP 404 Not Found"}"#[..];
        let resteasy = &br#"{"detail":"NotFoundException: RESTEASY003210","status":404}"#[..];
        for body in [&b""[..], confluent, resteasy, html, &not_found(50001)] {
            assert!(matches!(map_response(404, body), Err(LookupError::Unavailable(_))));
        }
    }

    #[test]
    fn everything_else_is_unavailable() {
        for status in [500, 502, 503, 504, 401, 403, 429, 422, 400, 301] {
            let result = map_response(status, &not_found(40403));
            assert!(matches!(result, Err(LookupError::Unavailable(_))), "{status}: {result:?}");
        }
        // A 200 we cannot read (a captive portal, a truncated body).
        for body in [&b"<html>"[..], b"", br#"{"schema": 12}"#, br#"{"id": 1}"#] {
            assert!(matches!(map_response(200, body), Err(LookupError::Unavailable(_))));
        }
        let Err(LookupError::Unavailable(msg)) = map_response(500, br#"{"error_code":50001,"message":"store down"}"#)
        else {
            panic!()
        };
        assert!(msg.contains("store down"), "{msg}");
    }

    #[test]
    fn versions_and_encoding() {
        assert_eq!(check_version(None), Ok("latest"));
        assert_eq!(check_version(Some("-1")), Ok("latest"));
        assert_eq!(check_version(Some("7")), Ok("7"));
        assert_eq!(check_version(Some("../x")), Err(LookupError::NotFound));
        assert_eq!(check_version(Some("v2")), Err(LookupError::NotFound));
        assert_eq!(check_version(Some("")), Err(LookupError::NotFound));
        assert_eq!(encode_path_segment("orders-value"), "orders-value");
        assert_eq!(encode_path_segment("a/b c:.ctx"), "a%2Fb%20c%3A.ctx");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }

    #[test]
    fn client_construction() {
        let settings = |url: &str| RegistrySettings {
            url: url.into(),
            username: Some("u".into()),
            password: Some(crate::config::Secret::new("secret")),
            ca_file: None,
            timeout: Duration::from_millis(300),
        };
        assert!(RegistryClient::new(settings("not a url")).is_err());
        assert!(RegistryClient::new(settings("ftp://x")).is_err());
        assert!(RegistryClient::new(settings("http://u:p@127.0.0.1:9")).is_err());
        let client = RegistryClient::new(settings("http://127.0.0.1:9/apis/ccompat/v7/")).unwrap();
        assert_eq!(client.base, "http://127.0.0.1:9/apis/ccompat/v7");
        assert!(!format!("{client:?}").contains("secret"));
        assert!(!format!("{:?}", settings("http://x")).contains("secret"));
        // Port 9 (discard) is closed here: a refused connection is an outage.
        assert!(matches!(client.schema_by_id(1), Err(LookupError::Unavailable(_))));
        let mut bad_ca = settings("https://127.0.0.1:9");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not pem").unwrap();
        bad_ca.ca_file = Some(file.path().into());
        assert!(RegistryClient::new(bad_ca).is_err());
    }

    /// Against a real registry (`scripts/registry.sh start`, then
    /// `SCHEMA_REGISTRY_URL=http://127.0.0.1:8081/apis/ccompat/v7`).
    #[test]
    fn real_registry_round_trip() {
        let Ok(url) = std::env::var("SCHEMA_REGISTRY_URL") else {
            eprintln!("note: SCHEMA_REGISTRY_URL unset; skipping the real-registry test");
            return;
        };
        let url = url.trim_end_matches('/').to_string();
        let settings = RegistrySettings {
            url: url.clone(),
            username: None,
            password: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
        };
        let client = RegistryClient::new(settings.clone()).unwrap();
        let tag = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        );
        let register = |subject: &str, body: serde_json::Value| -> u32 {
            let response = reqwest::blocking::Client::new()
                .post(format!("{url}/subjects/{}/versions", encode_path_segment(subject)))
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .body(body.to_string())
                .send()
                .unwrap();
            assert!(response.status().is_success(), "register {subject}: {}", response.status());
            response.json::<serde_json::Value>().unwrap()["id"].as_u64().unwrap() as u32
        };
        let json_text = r#"{"type":"object","required":["a"],"properties":{"a":{"type":"integer"}}}"#;
        let avro_text = r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"}]}"#;
        let json_subject = format!("pw-json/{tag}-value");
        let avro_subject = format!("pw-avro-{tag}-value");
        let json_id = register(&json_subject, serde_json::json!({"schemaType": "JSON", "schema": json_text}));
        let avro_id = register(&avro_subject, serde_json::json!({"schema": avro_text}));

        let by_id = client.schema_by_id(json_id).unwrap();
        assert_eq!(by_id.kind, SchemaKind::Json);
        assert_eq!(client.schema_by_id(avro_id).unwrap().kind, SchemaKind::Avro);
        let (id, latest) = client.subject_version(&json_subject, None).unwrap();
        assert_eq!((id, latest.kind), (json_id, SchemaKind::Json));
        let (id, v1) = client.subject_version(&avro_subject, Some("1")).unwrap();
        assert_eq!((id, v1.kind), (avro_id, SchemaKind::Avro));
        assert!(super::super::schema::compile(v1.kind, &v1.text).is_ok());

        assert_eq!(client.schema_by_id(2_000_000_000), Err(LookupError::NotFound));
        assert_eq!(client.subject_version(&format!("pw-missing-{tag}"), None), Err(LookupError::NotFound));
        assert_eq!(client.subject_version(&avro_subject, Some("99")), Err(LookupError::NotFound));
        // A wrong base path must not look like "schema not found".
        let wrong = RegistryClient::new(RegistrySettings { url: format!("{url}/nope"), ..settings }).unwrap();
        assert!(matches!(wrong.schema_by_id(json_id), Err(LookupError::Unavailable(_))));

        // Through the cache, as the ingest thread sees it.
        use super::super::cache::{CacheSettings, Lookup, SchemaCache, SchemaSource};
        let cache = SchemaCache::new(SchemaSource::Registry(client), CacheSettings::default()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let ready = |lookup: &dyn Fn() -> Lookup| loop {
            match lookup() {
                Lookup::Pending if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                other => break other,
            }
        };
        let Lookup::Ready(schema) = ready(&|| cache.by_id(json_id)) else { panic!("json by id") };
        assert!(schema.validate(br#"{"a": 1}"#).is_ok());
        assert!(schema.validate(br#"{"a": "x"}"#).is_err());
        let Lookup::Ready(schema) = ready(&|| cache.by_subject(&avro_subject, None)) else { panic!("avro by subject") };
        assert!(schema.validate(&[0x02]).is_ok(), "long 1");
        assert!(matches!(ready(&|| cache.by_id(2_000_000_001)), Lookup::NotFound));
        assert!(cache.registry_available());
    }
}
