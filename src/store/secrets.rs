//! Secrets in etcd (sealed values only) and the age recipients the operator publishes for sealing.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::{Listing, Store, StoreError, Versioned};
use crate::spec::{secrets_used, Secret};

impl Store {
    pub async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Versioned<Secret>>, StoreError> {
        self.get_json(&self.keys.secret(namespace, name)).await
    }

    /// Secrets of one namespace, or of every namespace; unreadable keys are skipped and reported.
    pub async fn list_secrets(&self, namespace: Option<&str>) -> Result<Listing<Versioned<Secret>>, StoreError> {
        let prefix = self.keys.secrets(namespace);
        let resp = self.client.kv_client().get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await?;
        let mut out = Listing { items: Vec::new(), unreadable: Vec::new() };
        for entry in resp.kvs() {
            let key = String::from_utf8_lossy(entry.key()).to_string();
            // `<prefix>/secrets/<ns>/<name>` only.
            if key[self.keys.secrets(None).len()..].split('/').count() != 2 {
                continue;
            }
            match super::decode::<Secret>(&key, entry.value()) {
                Ok(value) => out.items.push(Versioned { value, mod_revision: entry.mod_revision() }),
                Err(e) => out.unreadable.push(super::Unreadable { key, reason: e.to_string() }),
            }
        }
        Ok(out)
    }

    /// Deletes a Secret unless an App of its namespace still uses it (the refusal names the App).
    pub async fn delete_secret(&self, namespace: &str, name: &str) -> Result<(), StoreError> {
        let key = self.keys.secret(namespace, name);
        let Some(stored) = self.get_json::<Secret>(&key).await? else {
            return Err(StoreError::NotFound(format!("secret/{name} -n {namespace}")));
        };
        let apps = self.list_apps(Some(namespace)).await?;
        let users: Vec<String> = apps
            .items
            .iter()
            .filter(|a| secrets_used(a).contains(name))
            .map(|a| format!("app/{} -n {}", a.metadata.name, a.namespace()))
            .collect();
        if !users.is_empty() {
            return Err(StoreError::SecretInUse { secret: format!("secret/{name} -n {namespace}"), apps: users });
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, stored.mod_revision)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        if self.client.kv_client().txn(txn).await?.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Contended { what: format!("secret/{name} -n {namespace}"), attempts: 1 })
        }
    }

    /// Publishes the operator's age recipients (current first).
    pub async fn put_recipients(&self, recipients: &[String]) -> Result<(), StoreError> {
        let body = serde_json::to_vec(recipients).expect("strings serialize");
        self.client.kv_client().put(self.keys.recipients(), body, None).await?;
        Ok(())
    }

    /// The recipients to seal to; empty when no operator with a sealing key has published any.
    pub async fn get_recipients(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.get_json::<Vec<String>>(&self.keys.recipients()).await?.map(|v| v.value).unwrap_or_default())
    }
}
