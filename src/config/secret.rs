//! Configured secrets that `Debug` output never shows: [`Secret`] for a
//! single value (registry password, OTLP header value) and
//! [`KafkaProperties`] for `[kafka.properties]`, whose secret-looking
//! values are redacted by name. Anything holding them can derive `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

/// What logs and `Debug` output show instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// A secret value; `Debug` prints `"[redacted]"`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(REDACTED, f)
    }
}

/// `[kafka.properties]` after interpolation, read like the map it wraps;
/// `Debug` shows secret-looking values (see [`is_secret_property`]) as
/// `"[redacted]"`.
#[derive(Clone, Default)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    pub fn new(properties: BTreeMap<String, String>) -> Self {
        KafkaProperties(properties)
    }

    /// Every property with secret-looking values replaced, for the banner.
    pub fn redacted(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), if is_secret_property(key) { REDACTED } else { value.as_str() }))
    }
}

impl Deref for KafkaProperties {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

/// Whether a librdkafka property holds a secret: sasl.password,
/// sasl.oauthbearer.client.secret, sasl.oauthbearer.config (may embed a
/// secret), sasl.jaas.config, ssl.key.password, ssl.key.pem, ssl_key,
/// ssl.keystore.password, sasl.kerberos.keytab, and anything named like them.
pub fn is_secret_property(key: &str) -> bool {
    const WORDS: &[&str] = &["password", "secret", "key", "token", "jaas", "oauthbearer.config"];
    WORDS.iter().any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret_but_the_value_is_kept() {
        let secret = Secret::new("s3cret");
        assert_eq!(format!("{secret:?}"), "\"[redacted]\"");
        assert_eq!(secret.expose(), "s3cret");
        let properties = KafkaProperties::new(BTreeMap::from([
            ("sasl.password".to_string(), "s3cret".to_string()),
            ("sasl.username".to_string(), "pipewarden".to_string()),
        ]));
        assert_eq!(format!("{properties:?}"), r#"{"sasl.password": "[redacted]", "sasl.username": "pipewarden"}"#);
        assert_eq!(properties["sasl.password"], "s3cret");
    }
}
