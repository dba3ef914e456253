//! HTTP access control against a running daemon: with `http.api_token`
//! (read from the environment) every `/api/v1/*` route answers 401 with
//! `WWW-Authenticate: Bearer` unless the request carries the token, while
//! the probes stay open; `/metrics` needs `http.metrics_token` only when
//! that is set.

mod common;

use std::time::Duration;

use common::*;

const API_TOKEN: &str = "api-token-0123456789abcdef";
const METRICS_TOKEN: &str = "metrics-token-fedcba9876543210";

/// (status, `WWW-Authenticate` header, body) of a GET with an optional `Authorization` value.
fn get(daemon: &Daemon, path: &str, authorization: Option<&str>) -> (u16, Option<String>, String) {
    let mut request = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{}{path}", daemon.port))
        .timeout(Duration::from_secs(5));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().expect("request");
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    (status, challenge, response.text().unwrap())
}

#[test]
fn api_routes_need_the_bearer_token_and_the_probes_stay_open() {
    let topic = unique("http-auth");
    create_topics(&[(&topic, 1)]);
    let group = unique("http-auth-group");
    let mut options = DaemonOptions::new(&topic, &group);
    options.http = "api_token = \"${TEST_API_TOKEN}\"";
    options.env = &[("TEST_API_TOKEN", API_TOKEN)];
    let mut daemon = Daemon::start(options);
    daemon.wait_ready();

    let bearer = format!("Bearer {API_TOKEN}");
    let mut refused = 0;
    for path in ["/api/v1/lag", &format!("/api/v1/lag/{group}"), "/api/v1/traces", "/api/v1/topology"] {
        for wrong in [None, Some("Bearer wrong-token"), Some(&format!("Basic {API_TOKEN}")[..])] {
            let (status, challenge, body) = get(&daemon, path, wrong);
            assert_eq!(status, 401, "{path} with {wrong:?}: {body}");
            assert!(challenge.is_some_and(|c| c.starts_with("Bearer")), "{path}");
            assert!(!body.contains(API_TOKEN));
            refused += 1;
        }
        let (status, _, body) = get(&daemon, path, Some(&bearer));
        assert!(status == 200 || (status == 404 && path.contains(&group)), "{path} with the token: {status} {body}");
    }
    let (status, _, _) = get(&daemon, "/api/v1/traces", Some(&bearer));
    assert_eq!(status, 200);
    for open in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(get(&daemon, open, None).0, 200, "{open} stays open");
    }
    assert!(daemon.terminate().success());
    eprintln!("http auth: {refused} requests without the right token refused with 401; probes and /metrics open");
}

#[test]
fn metrics_need_their_own_token_when_one_is_set() {
    let topic = unique("http-metrics-auth");
    create_topics(&[(&topic, 1)]);
    let group = unique("http-metrics-auth-group");
    let mut options = DaemonOptions::new(&topic, &group);
    let http = format!("metrics_token = \"{METRICS_TOKEN}\"");
    options.http = &http;
    let mut daemon = Daemon::start(options);
    daemon.wait_ready();
    let (status, challenge, _) = get(&daemon, "/metrics", None);
    assert_eq!((status, challenge.is_some()), (401, true));
    assert_eq!(get(&daemon, "/metrics", Some(&format!("Bearer {API_TOKEN}"))).0, 401);
    let (status, _, body) = get(&daemon, "/metrics", Some(&format!("Bearer {METRICS_TOKEN}")));
    assert_eq!(status, 200);
    assert!(body.contains("pipewarden_build_info"));
    // No api_token: the API stays open.
    assert_eq!(get(&daemon, "/api/v1/traces", None).0, 200);
    assert_eq!(get(&daemon, "/readyz", None).0, 200);
    assert!(daemon.terminate().success());
}
