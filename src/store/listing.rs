//! Listings of stored resources that survive keys written around berth.
//!
//! A value put under berth's prefix by another tool (`<prefix>/hosts/x` = `[]`) must not stop
//! `berth get`, or an `apply` of unrelated resources: such a key is skipped and reported, so the
//! CLI can warn naming it, as the operator's reflector does. A skipped key is unknown to every
//! cross-resource check (it defines no host and publishes no port).

use etcd_client::GetOptions;
use serde::de::DeserializeOwned;

use super::{KeyKind, Store, StoreError, Versioned};
use crate::spec::{App, Host};

/// A key whose value is not the resource its place in the layout names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The full etcd key.
    pub key: String,
    /// `not a valid Host (invalid type: integer, line 1 column 1)`: never the value itself, which
    /// may hold env values.
    pub reason: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// The resources of a listing that decode, and the keys skipped because they do not.
///
/// Derefs to the resources, so a caller that does not report skipped keys reads it as a `Vec`.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub unreadable: Vec<Unreadable>,
}

impl<T> std::ops::Deref for Listing<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.items
    }
}

impl<T> std::ops::DerefMut for Listing<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.items
    }
}

impl Store {
    /// Reads every JSON value directly under a prefix, with the revision of that consistent
    /// snapshot; values that do not decode as `what` are skipped and reported.
    pub async fn list_json<T: DeserializeOwned>(
        &self,
        prefix: &str,
        what: &str,
    ) -> Result<(Listing<Versioned<T>>, i64), StoreError> {
        let mut kv = self.client.kv_client();
        let resp = kv.get(prefix, Some(GetOptions::new().with_prefix())).await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut out = Listing { items: Vec::with_capacity(resp.kvs().len()), unreadable: Vec::new() };
        for entry in resp.kvs() {
            let key = String::from_utf8_lossy(entry.key()).to_string();
            // Only direct children: `/apps/` must not pick up deeper keys another tool wrote.
            if key[prefix.len()..].contains('/') {
                continue;
            }
            match decode_as::<T>(&key, entry.value(), what) {
                Ok(value) => out.items.push(Versioned { value, mod_revision: entry.mod_revision() }),
                Err(skipped) => out.unreadable.push(skipped),
            }
        }
        Ok((out, revision))
    }

    /// Every stored Host; unreadable Host keys are skipped and reported.
    pub async fn list_hosts(&self) -> Result<Listing<Host>, StoreError> {
        let (hosts, _) = self.list_json::<Host>(&self.keys.hosts(), "Host").await?;
        Ok(Listing { items: hosts.items.into_iter().map(|v| v.value).collect(), unreadable: hosts.unreadable })
    }

    /// Apps of one namespace, or of every namespace; unreadable App keys are skipped and reported.
    pub async fn list_apps(&self, namespace: Option<&str>) -> Result<Listing<App>, StoreError> {
        let prefix = self.keys.apps(namespace);
        let mut kv = self.client.kv_client();
        let resp = kv.get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await?;
        let mut out = Listing { items: Vec::new(), unreadable: Vec::new() };
        for entry in resp.kvs() {
            let key = String::from_utf8_lossy(entry.key()).to_string();
            if let Some(KeyKind::App { .. }) = self.keys.parse(&key) {
                match decode_as::<App>(&key, entry.value(), "App") {
                    Ok(app) => out.items.push(app),
                    Err(skipped) => out.unreadable.push(skipped),
                }
            }
        }
        Ok(out)
    }
}

fn decode_as<T: DeserializeOwned>(key: &str, bytes: &[u8], what: &str) -> Result<T, Unreadable> {
    serde_json::from_slice(bytes)
        .map_err(|e| Unreadable { key: key.to_string(), reason: format!("not a valid {what} ({})", describe(&e)) })
}

/// Why a stored value does not decode, without quoting it: serde's messages quote the offending
/// value (`invalid type: string "s3cr3t", expected u16`), and a stored App holds env values.
pub fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "not JSON".to_string(),
        Category::Eof => "truncated JSON".to_string(),
        Category::Io => "unreadable".to_string(),
        Category::Data => {
            let text = e.to_string();
            let message = text.rsplit_once(" at line ").map_or(text.as_str(), |(m, _)| m);
            // Field names are the schema's, not values: `missing field `spec``, `unknown field `x``.
            if message.starts_with("missing field") || message.starts_with("unknown field") {
                message.split(", expected").next().unwrap_or(message).to_string()
            } else {
                let cut = message.find(['`', '"', '\'']).unwrap_or(message.len());
                message[..cut].trim_end_matches([' ', ',']).to_string()
            }
        }
    };
    format!("{what}, line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason<T: DeserializeOwned + std::fmt::Debug>(text: &str) -> String {
        describe(&serde_json::from_str::<T>(text).unwrap_err())
    }

    #[test]
    fn reasons_name_the_problem_but_never_quote_a_value() {
        assert_eq!(reason::<Host>("[]"), "invalid length 0, expected struct Host with 4 elements, line 1 column 2");
        assert_eq!(reason::<Host>("7"), "invalid type: integer, line 1 column 1");
        assert_eq!(reason::<Host>("{"), "truncated JSON, line 1 column 1");
        assert_eq!(reason::<Host>("nope"), "not JSON, line 1 column 2");
        let missing =
            reason::<Host>(r#"{"apiVersion": "berth.dev/v1alpha1", "kind": "Host", "metadata": {"name": "h"}}"#);
        assert!(missing.starts_with("missing field `spec`"), "{missing}");
        let secret = r#"{"apiVersion": "berth.dev/v1alpha1", "kind": "App", "metadata": {"name": "a"},
            "spec": {"image": "i", "roles": {"web": {"hosts": ["h"], "cpus": "s3cr3t"}}}}"#;
        let raw = serde_json::from_str::<App>(secret).unwrap_err().to_string();
        assert!(raw.contains("s3cr3t"), "serde quotes the value: {raw}");
        let r = reason::<App>(secret);
        assert!(r.starts_with("invalid type: string, line 2"), "{r}");
        assert!(!r.contains("s3cr3t"), "{r}");
    }
}
