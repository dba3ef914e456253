//! Bearer-token protection of HTTP routes (`http.api_token`,
//! `http.metrics_token`).
//!
//! A request to a protected route must carry `Authorization: Bearer
//! <token>`; otherwise it gets 401 with `WWW-Authenticate: Bearer` (RFC
//! 6750) and the handler never runs. The token is compared in constant time
//! (the time depends only on the configured token's length), never logged,
//! and its `Debug` form is redacted so a logged configuration cannot leak it.
//!
//! Which routes: the `/api/v1/*` routes return trace contents (event IDs,
//! producers, topics, timelines) and consumer-group details, so
//! `http.api_token` protects them. `/healthz` and `/readyz` stay open: kubelet
//! and load-balancer probes cannot send credentials and the answers reveal
//! nothing but a status. `/metrics` stays open unless `http.metrics_token`
//! is set (Prometheus sends it with `authorization: {credentials: ...}`);
//! its series are aggregates with bounded labels.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The tokens of `[http]`; `None` leaves the routes open.
#[derive(Clone, Debug, Default)]
pub struct HttpAuth {
    /// Protects `/api/v1/*` (`http.api_token`).
    pub api_token: Option<BearerToken>,
    /// Protects `/metrics` (`http.metrics_token`).
    pub metrics_token: Option<BearerToken>,
}

/// A configured bearer token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(Arc<str>);

impl BearerToken {
    /// `None` for an empty value (no protection).
    pub fn new(token: &str) -> Option<BearerToken> {
        (!token.is_empty()).then(|| BearerToken(Arc::from(token)))
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization.map(HeaderValue::as_bytes) else { return false };
        // The scheme is case-insensitive (RFC 7235 §2.1); one space follows.
        let Some((scheme, presented)) = value.split_at_checked(7) else { return false };
        scheme.eq_ignore_ascii_case(b"bearer ") && constant_time_eq(presented, self.0.as_bytes())
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Whether `token` has the RFC 6750 `b64token` shape (empty: no token), so
/// it can be sent in a header exactly as configured.
pub fn is_bearer_token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !(token.starts_with('=')) && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Compares `presented` with `expected` in time that depends only on
/// `expected.len()`: every byte of the expected token is visited whatever
/// the presented value, so response times do not reveal how much of a
/// guess was right.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut difference = presented.len() ^ expected.len();
    for (i, &byte) in expected.iter().enumerate() {
        let other = presented.get(i).copied().unwrap_or(!byte);
        difference |= usize::from(byte ^ other);
    }
    std::hint::black_box(difference) == 0
}

/// Middleware: passes the request on when it carries `token`, else 401.
pub async fn require_bearer(State(token): State<BearerToken>, request: Request, next: Next) -> Response {
    if token.admits(request.headers().get(header::AUTHORIZATION)) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"pipewarden\"")],
        "a bearer token is required\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).unwrap()
    }

    #[test]
    fn only_the_exact_token_with_the_bearer_scheme_is_admitted() {
        let token = BearerToken::new("s3cret-token").unwrap();
        assert!(token.admits(Some(&value("Bearer s3cret-token"))));
        assert!(token.admits(Some(&value("bearer s3cret-token"))));
        for refused in [
            "Bearer s3cret-tokeN",
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer ",
            "Basic s3cret-token",
            "s3cret-token",
            "Bearers3cret-token",
            "",
        ] {
            assert!(!token.admits(Some(&value(refused))), "{refused:?}");
        }
        assert!(!token.admits(None));
    }

    #[test]
    fn tokens_have_the_b64token_shape() {
        for good in ["", "abc", "A-b.c_d~e+f/g", "dG9rZW4=", "x=="] {
            assert!(is_bearer_token(good), "{good:?}");
        }
        for bad in ["has space", "quote\"", "=", "a=b", "tab\t", "é"] {
            assert!(!is_bearer_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_token_means_no_protection() {
        assert_eq!(BearerToken::new(""), None);
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let token = BearerToken::new("s3cret-token").unwrap();
        assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
        assert!(!format!("{:?}", Some(token)).contains("s3cret"));
    }

    #[test]
    fn constant_time_eq_agrees_with_equality() {
        let samples: [&[u8]; 6] = [b"", b"a", b"ab", b"abc", b"abd", b"\xff"];
        for a in samples {
            for b in samples {
                assert_eq!(constant_time_eq(a, b), a == b, "{a:?} vs {b:?}");
            }
        }
    }

    /// `[http]` as the configuration reads it: tokens from the environment,
    /// listen addresses of both IP families.
    mod config {
        use crate::config::{Config, ProblemKind};

        fn env(name: &str) -> Option<String> {
            (name == "PIPEWARDEN_API_TOKEN").then(|| "from-env-token".to_string())
        }

        #[test]
        fn tokens_come_from_the_environment_and_never_show_in_debug_output() {
            let text = "[http]\napi_token = \"${PIPEWARDEN_API_TOKEN}\"\nmetrics_token = \"scrape-token\"\n";
            let config = Config::from_toml(text, &env).unwrap();
            assert_eq!(config.http.auth.api_token, super::BearerToken::new("from-env-token"));
            assert_eq!(config.http.auth.metrics_token, super::BearerToken::new("scrape-token"));
            let debug = format!("{config:?}");
            assert!(!debug.contains("from-env-token") && !debug.contains("scrape-token"), "{debug}");
            let open = Config::from_toml("", &env).unwrap();
            assert!(open.http.auth.api_token.is_none() && open.http.auth.metrics_token.is_none());
        }

        #[test]
        fn a_malformed_token_is_reported_without_its_value() {
            let text = "[http]\napi_token = \"two words\"\nmetrics_token = \"tab\\there\"\n";
            let problems = Config::from_toml(text, &env).expect_err("refused").0;
            for key in ["http.api_token", "http.metrics_token"] {
                let problem = problems.iter().find(|p| p.path == key).unwrap_or_else(|| panic!("{problems:?}"));
                assert!(matches!(problem.kind, ProblemKind::InvalidValue(_)));
                let text = problem.to_string();
                assert!(!text.contains("two words") && !text.contains("here"), "{text}");
            }
        }

        #[test]
        fn listen_takes_ipv4_and_ipv6_addresses_but_not_host_names() {
            for (listen, expected) in [
                ("0.0.0.0:9464", "0.0.0.0:9464"),
                ("127.0.0.1:0", "127.0.0.1:0"),
                ("[::]:9464", "[::]:9464"),
                ("[::1]:9464", "[::1]:9464"),
                ("[fe80::1%2]:9464", "[fe80::1%2]:9464"),
            ] {
                let config = Config::from_toml(&format!("[http]\nlisten = \"{listen}\"\n"), &env).unwrap();
                assert_eq!(config.http.listen, expected.parse().unwrap(), "{listen}");
            }
            for refused in ["localhost:9464", "::1:9464", "9464", "0.0.0.0", "[::1]"] {
                let problems = Config::from_toml(&format!("[http]\nlisten = \"{refused}\"\n"), &env).unwrap_err().0;
                assert!(problems.iter().any(|p| p.path == "http.listen"), "{refused}: {problems:?}");
            }
        }
    }
}
