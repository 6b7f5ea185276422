//! The `Secret` resource and the places an App takes values from one: env values
//! (`{secretKeyRef: {name, key}}`), files in a container, and registry credentials
//! (`imagePullSecrets`). Values are sealed to the operator's age recipients before they are
//! stored (see [`crate::sealing`]); nothing here ever prints one.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::ObjectMeta;

/// A value that must never be shown: its `Debug` says only that it is redacted.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SecretValue(pub String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What a Secret holds, and so which keys it must have: `opaque` (any keys), `registry` (`server`,
/// `username`, `password`) or `tls` (`cert` and `key`, PEM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretType {
    #[default]
    Opaque,
    Registry,
    Tls,
}

impl SecretType {
    /// The keys a Secret of this type must hold.
    pub fn required_keys(self) -> &'static [&'static str] {
        match self {
            SecretType::Opaque => &[],
            SecretType::Registry => &["server", "username", "password"],
            SecretType::Tls => &["cert", "key"],
        }
    }
}

/// Values an App may use. `stringData` is accepted by `berth apply` and sealed before it is written;
/// `sealedData` (what `berth seal` prints) is safe to commit: only the operator can open it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(rename = "type", default)]
    pub secret_type: SecretType,
    /// Plain values, sealed by `berth apply` before they reach etcd.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, SecretValue>,
    /// age-sealed values (ASCII armour), to the operator's published recipients.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sealed_data: BTreeMap<String, String>,
}

impl Secret {
    /// The destination, defaulted.
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or(super::types::DEFAULT_NAMESPACE)
    }

    /// Every key it holds, sealed or not.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let mut keys: Vec<&str> = self.string_data.keys().chain(self.sealed_data.keys()).map(String::as_str).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
    }
}

/// One key of one Secret in the App's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

impl std::fmt::Display for SecretKeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "secret {} key {}", self.name, self.key)
    }
}

/// An env value: a string, or a key of a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    Plain(String),
    Secret {
        #[serde(rename = "secretKeyRef")]
        secret_key_ref: SecretKeyRef,
    },
}

impl EnvValue {
    pub fn secret_ref(&self) -> Option<&SecretKeyRef> {
        match self {
            EnvValue::Plain(_) => None,
            EnvValue::Secret { secret_key_ref } => Some(secret_key_ref),
        }
    }
}

impl From<&str> for EnvValue {
    fn from(s: &str) -> EnvValue {
        EnvValue::Plain(s.to_string())
    }
}

/// A file written into a container before it starts (Docker's archive API): never on the host's
/// disk, never in `docker inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSource {
    /// The contents, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The contents, from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// Octal permission bits, such as `"0400"`; default `"0644"` (`"0400"` for a Secret's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl FileSource {
    /// The permission bits; `None` when `mode` is not octal.
    pub fn mode_bits(&self) -> Option<u32> {
        match &self.mode {
            Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8).ok().filter(|b| *b <= 0o7777),
            None => Some(if self.secret_key_ref.is_some() { 0o400 } else { 0o644 }),
        }
    }
}

/// Problems of a Secret on its own, as (field path, message).
pub fn validate_secret(s: &Secret) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let key_ok = |k: &str| {
        !k.is_empty() && k.len() <= 253 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    for (field, keys) in
        [("stringData", s.string_data.keys().collect::<Vec<_>>()), ("sealedData", s.sealed_data.keys().collect())]
    {
        for k in keys.into_iter().filter(|k| !key_ok(k)) {
            problems.push((format!("{field}.{k}"), "keys hold letters, digits, '.', '_' and '-' only".to_string()));
        }
    }
    for (k, v) in &s.sealed_data {
        if !v.trim_start().starts_with("-----BEGIN AGE ENCRYPTED FILE-----") {
            problems.push((format!("sealedData.{k}"), "not an age-sealed value (run `berth seal`)".to_string()));
        }
    }
    let keys: Vec<&str> = s.keys().collect();
    for required in s.secret_type.required_keys() {
        if !keys.contains(required) {
            problems.push((
                "type".to_string(),
                format!(
                    "a {} Secret needs the key {required}",
                    serde_json::to_value(s.secret_type).unwrap_or_default()
                ),
            ));
        }
    }
    if keys.is_empty() {
        problems.push(("stringData".to_string(), "a Secret holds at least one key".to_string()));
    }
    problems
}
