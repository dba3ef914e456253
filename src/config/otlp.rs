//! `[otlp]`: OTLP trace export of observed events (see `src/spans/`).
//!
//! A raw serde struct with the documented defaults, validated into
//! [`OtlpConfig`] by [`validate_otlp`]; problems are pushed to the caller's
//! list so the whole file is reported at once. Export is off unless
//! `endpoint` is set.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigProblem, ProblemKind};

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawOtlp {
    pub endpoint: String,
    pub protocol: String,
    pub sample_ratio: f64,
    pub queue_size: usize,
    pub batch_size: usize,
    pub export_interval_ms: u64,
    pub timeout_ms: u64,
    pub max_chained_traces: usize,
    pub headers: BTreeMap<String, String>,
}

impl Default for RawOtlp {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: "grpc".into(),
            sample_ratio: 1.0,
            queue_size: 8_192,
            batch_size: 512,
            export_interval_ms: 1_000,
            timeout_ms: 10_000,
            max_chained_traces: 100_000,
            headers: BTreeMap::new(),
        }
    }
}

/// How spans travel to the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC: `TraceService/Export` over HTTP/2 (default port 4317).
    Grpc,
    /// OTLP/HTTP with a binary protobuf body: `POST <endpoint>/v1/traces` (default port 4318).
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// `None`: span export is off (the default).
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    /// Share of traces exported, decided on the trace ID so a trace is kept or dropped whole.
    pub sample_ratio: f64,
    /// Spans waiting for export; past it, new spans are dropped and counted.
    pub queue_size: usize,
    /// Most spans in one export request.
    pub batch_size: usize,
    /// Longest time a span waits for its batch to fill.
    pub export_interval: Duration,
    /// Timeout of one export request.
    pub timeout: Duration,
    /// Traces whose last span the exporter remembers to chain the next one to.
    pub max_chained_traces: usize,
    /// Sent with every export request (authentication, tenant); values may use `${VAR}`.
    pub headers: Vec<(String, super::Secret)>,
}

impl OtlpConfig {
    pub fn enabled(&self) -> bool {
        self.endpoint.is_some()
    }
}

fn problem(problems: &mut Vec<ConfigProblem>, path: &str, kind: ProblemKind) {
    problems.push(ConfigProblem { path: format!("otlp.{path}"), kind });
}

pub fn validate_otlp(raw: RawOtlp, problems: &mut Vec<ConfigProblem>) -> OtlpConfig {
    let protocol = match raw.protocol.as_str() {
        "grpc" => OtlpProtocol::Grpc,
        "http/protobuf" => OtlpProtocol::HttpProtobuf,
        other => {
            let message = format!("{other:?} is not one of \"grpc\", \"http/protobuf\"");
            problem(problems, "protocol", ProblemKind::InvalidValue(message));
            OtlpProtocol::Grpc
        }
    };
    let endpoint = raw.endpoint.trim();
    let endpoint = if endpoint.is_empty() {
        None
    } else if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        let message = format!("{endpoint:?} is not an http:// or https:// URL");
        problem(problems, "endpoint", ProblemKind::InvalidValue(message));
        None
    } else if protocol == OtlpProtocol::Grpc && endpoint.starts_with("https://") {
        // The gRPC client is built without TLS to keep the binary lean;
        // a TLS collector is reached over http/protobuf.
        let message = "https is supported with protocol = \"http/protobuf\"; grpc endpoints are plaintext".into();
        problem(problems, "endpoint", ProblemKind::InvalidValue(message));
        None
    } else {
        Some(endpoint.trim_end_matches('/').to_string())
    };
    if !(0.0..=1.0).contains(&raw.sample_ratio) {
        let message = format!("{} is not between 0 and 1", raw.sample_ratio);
        problem(problems, "sample_ratio", ProblemKind::InvalidValue(message));
    }
    for (key, value) in [
        ("queue_size", raw.queue_size as u64),
        ("batch_size", raw.batch_size as u64),
        ("export_interval_ms", raw.export_interval_ms),
        ("timeout_ms", raw.timeout_ms),
        ("max_chained_traces", raw.max_chained_traces as u64),
    ] {
        if value == 0 {
            problem(problems, key, ProblemKind::Zero);
        }
    }
    let mut headers = Vec::new();
    for (name, value) in raw.headers {
        let path = format!("headers.\"{name}\"");
        // gRPC metadata keys are lowercase; HTTP header names are case-insensitive.
        let lowercase = name.to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(lowercase.as_bytes()).is_err() {
            problem(problems, &path, ProblemKind::InvalidValue("not a valid header name".into()));
        } else if reqwest::header::HeaderValue::from_str(&value).is_err() {
            problem(
                problems,
                &path,
                ProblemKind::InvalidValue("the value has characters a header cannot carry".into()),
            );
        } else {
            headers.push((lowercase, super::Secret::new(value)));
        }
    }
    OtlpConfig {
        endpoint,
        protocol,
        sample_ratio: raw.sample_ratio.clamp(0.0, 1.0),
        queue_size: raw.queue_size,
        batch_size: raw.batch_size,
        export_interval: Duration::from_millis(raw.export_interval_ms),
        timeout: Duration::from_millis(raw.timeout_ms),
        max_chained_traces: raw.max_chained_traces,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ProblemKind};

    use super::OtlpProtocol;

    #[test]
    fn export_is_off_by_default_with_documented_defaults() {
        let config = Config::from_toml("", &|_| None).unwrap();
        let otlp = &config.otlp;
        assert!(!otlp.enabled());
        assert_eq!(otlp.protocol, OtlpProtocol::Grpc);
        assert_eq!(otlp.sample_ratio, 1.0);
        assert_eq!((otlp.queue_size, otlp.batch_size), (8_192, 512));
        assert_eq!(otlp.export_interval.as_millis(), 1_000);
        assert_eq!(otlp.timeout.as_millis(), 10_000);
        assert_eq!(otlp.max_chained_traces, 100_000);
    }

    #[test]
    fn headers_come_from_the_environment_and_keys_are_lowercased() {
        let env = |name: &str| (name == "OTLP_TOKEN").then(|| "s3cret".to_string());
        let text = r#"
            [otlp]
            endpoint = "http://collector:4318/"
            protocol = "http/protobuf"
            sample_ratio = 0.25
            [otlp.headers]
            Authorization = "Bearer ${OTLP_TOKEN}"
        "#;
        let config = Config::from_toml(text, &env).unwrap();
        assert_eq!(config.otlp.endpoint.as_deref(), Some("http://collector:4318"));
        assert_eq!(config.otlp.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(config.otlp.sample_ratio, 0.25);
        assert_eq!(
            config.otlp.headers,
            vec![("authorization".to_string(), crate::config::Secret::new("Bearer s3cret"))]
        );
    }

    #[test]
    fn every_invalid_value_is_reported_with_its_path() {
        let text = r#"
            [otlp]
            endpoint = "collector:4317"
            protocol = "thrift"
            sample_ratio = 1.5
            queue_size = 0
            batch_size = 0
            export_interval_ms = 0
            timeout_ms = 0
            max_chained_traces = 0
            [otlp.headers]
            "bad name" = "x"
            ok = "line\nbreak"
        "#;
        let found = Config::from_toml(text, &|_| None).expect_err("rejected").0;
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "otlp.protocol",
                "otlp.endpoint",
                "otlp.sample_ratio",
                "otlp.queue_size",
                "otlp.batch_size",
                "otlp.export_interval_ms",
                "otlp.timeout_ms",
                "otlp.max_chained_traces",
                "otlp.headers.\"bad name\"",
                "otlp.headers.\"ok\"",
            ],
            "{found:#?}"
        );
        let zero = found.iter().filter(|p| p.kind == ProblemKind::Zero).count();
        assert_eq!(zero, 5);
        let grpc_tls = Config::from_toml("[otlp]\nendpoint = \"https://c:4317\"\n", &|_| None).expect_err("rejected");
        assert_eq!(grpc_tls.0[0].path, "otlp.endpoint");
        assert!(Config::from_toml("[otlp]\nendpoint = \"https://c:4318\"\nprotocol = \"http/protobuf\"\n", &|_| None)
            .is_ok());
    }
}
