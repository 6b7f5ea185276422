//! etcd: where desired state (Apps, Hosts) and observed status live, and the only module that
//! speaks to etcd: connection and fencing (`client`), writes of desired state (`apply`), the apply
//! lock (`lock`), apply-set inventories and prunes (`applyset`), leases (`lease`), list-and-watch
//! (`watch`) and listings (`listing`).
//!
//! Every write is a transaction guarded by `mod_revision`, so two writers never lose each
//! other's update; values are the resources as JSON under the layout in [`keys`].

mod apply;
mod applyset;
mod client;
mod config;
mod error;
mod history;
mod images;
pub mod keys;
mod lease;
mod listing;
mod lock;
mod refusal;
mod secrets;
mod watch;

use etcd_client::{Client, Compare, CompareOp, TxnOp};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use apply::MAX_BATCH_WRITES;
pub use applyset::{Pruned, SetWrite};
pub use config::{ClientCert, Credentials, EtcdConfig, TlsFiles};
pub use error::StoreError;
pub use keys::{KeyKind, Keys, DEFAULT_PREFIX};
pub use lease::{Lease, LeaseGuard};
pub use listing::{describe, Listing, Unreadable};
pub use watch::{Entry, KeyWatch, WatchError, WatchEvent, Watcher};

use crate::spec::{App, Host};

/// What `apply` did to one resource; printed as `created|configured|unchanged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

impl std::fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        })
    }
}

/// A value read from etcd together with the revision a guarded update must compare against.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: i64,
}

/// A connection to etcd under one key prefix.
#[derive(Clone)]
pub struct Store {
    client: Client,
    keys: Keys,
    endpoints: String,
    /// Set on the operator's leader: its writes succeed only while its lease still owns the leader key.
    fence: Option<i64>,
}

impl Store {
    /// Reads one JSON value; `None` when the key is absent.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>, StoreError> {
        let mut kv = self.client.kv_client();
        let resp = kv.get(key, None).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(entry) => {
                let value = decode(key, entry.value())?;
                Ok(Some(Versioned { value, mod_revision: entry.mod_revision() }))
            }
        }
    }

    pub async fn get_app(&self, namespace: &str, name: &str) -> Result<Option<Versioned<App>>, StoreError> {
        self.get_json(&self.keys.app(namespace, name)).await
    }

    pub async fn get_host(&self, name: &str) -> Result<Option<Versioned<Host>>, StoreError> {
        self.get_json(&self.keys.host(name)).await
    }

    /// Final step of an App's deletion: its spec, status, pins, last Ready and history keys go, and only if the spec is still the one
    /// whose containers were removed (a re-created App is never deleted by a stale finalizer).
    pub async fn remove_app_keys(&self, namespace: &str, name: &str, mod_revision: i64) -> Result<bool, StoreError> {
        let key = self.keys.app(namespace, name);
        self.fenced_txn(
            vec![Compare::mod_revision(key.as_str(), CompareOp::Equal, mod_revision)],
            vec![
                TxnOp::delete(key.as_str(), None),
                TxnOp::delete(self.keys.status(namespace, name), None),
                TxnOp::delete(self.keys.last_ready(namespace, name), None),
                TxnOp::delete(self.keys.pins(namespace, name), None),
                TxnOp::delete(
                    self.keys.history_prefix(namespace, name),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                ),
            ],
        )
        .await
    }

    /// Writes an App's status (any serializable shape the engine owns).
    pub async fn put_status<T: Serialize>(&self, namespace: &str, name: &str, status: &T) -> Result<(), StoreError> {
        self.put_value(&self.keys.status(namespace, name), status).await
    }

    /// Removes a status key whose App is already gone.
    pub async fn delete_status(&self, namespace: &str, name: &str) -> Result<(), StoreError> {
        self.fenced_txn(Vec::new(), vec![TxnOp::delete(self.keys.status(namespace, name), None)]).await?;
        Ok(())
    }

    pub async fn get_status<T: DeserializeOwned>(&self, namespace: &str, name: &str) -> Result<Option<T>, StoreError> {
        Ok(self.get_json(&self.keys.status(namespace, name)).await?.map(|v| v.value))
    }

    /// Records an App's last Ready generation (any shape the engine owns), fenced like the status.
    pub async fn put_last_ready<T: Serialize>(&self, namespace: &str, name: &str, value: &T) -> Result<(), StoreError> {
        self.put_value(&self.keys.last_ready(namespace, name), value).await
    }

    pub async fn get_last_ready<T: DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.get_json(&self.keys.last_ready(namespace, name)).await?.map(|v| v.value))
    }

    /// Records an App's image pins (any shape the engine owns), fenced like the status.
    pub async fn put_pins<T: Serialize>(&self, namespace: &str, name: &str, value: &T) -> Result<(), StoreError> {
        self.put_value(&self.keys.pins(namespace, name), value).await
    }

    pub async fn get_pins<T: DeserializeOwned>(&self, namespace: &str, name: &str) -> Result<Option<T>, StoreError> {
        Ok(self.get_json(&self.keys.pins(namespace, name)).await?.map(|v| v.value))
    }

    /// One engine-owned value, written only while this process still leads (when fenced).
    async fn put_value<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let body = serde_json::to_vec(value).expect("engine records always serialize");
        self.fenced_txn(Vec::new(), vec![TxnOp::put(key, body, None)]).await?;
        Ok(())
    }
}

/// Decodes a stored value; the error names the key and never quotes the value (it may hold env values).
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { key: key.to_string(), reason: listing::describe(&e) })
}

/// RFC 3339 UTC timestamp without pulling in a date crate.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
