//! An App's recorded generations (`<prefix>/history/<ns>/<app>/<generation>`) and the rollback
//! write: the App's spec and its pins in one transaction, so the operator runs exactly the
//! recorded digests.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Listing, Store, StoreError, Unreadable};
use crate::spec::App;

/// Optimistic-concurrency retries of a rollback before giving up on a hot App.
const MAX_CONFLICT_RETRIES: usize = 20;

impl Store {
    /// One recorded generation; `None` when it was never recorded (or was pruned).
    pub async fn get_history<T: DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        generation: i64,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.get_json(&self.keys.history(namespace, name, generation)).await?.map(|v| v.value))
    }

    /// Every recorded generation, oldest first; entries that do not decode are reported, not fatal.
    pub async fn list_history<T: DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Listing<(i64, T)>, StoreError> {
        let prefix = self.keys.history_prefix(namespace, name);
        let resp = self.client.kv_client().get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await?;
        let mut out = Listing { items: Vec::new(), unreadable: Vec::new() };
        for entry in resp.kvs() {
            let key = String::from_utf8_lossy(entry.key()).to_string();
            let Some(generation) = generation_of(&prefix, &key) else { continue };
            match super::decode::<T>(&key, entry.value()) {
                Ok(value) => out.items.push((generation, value)),
                Err(e) => out.unreadable.push(Unreadable { key, reason: e.to_string() }),
            }
        }
        out.items.sort_by_key(|(g, _)| *g);
        Ok(out)
    }

    /// The recorded generation numbers only (no values): what pruning needs.
    pub async fn history_generations(&self, namespace: &str, name: &str) -> Result<Vec<i64>, StoreError> {
        let prefix = self.keys.history_prefix(namespace, name);
        let options = GetOptions::new().with_prefix().with_keys_only();
        let resp = self.client.kv_client().get(prefix.as_str(), Some(options)).await?;
        let mut out: Vec<i64> =
            resp.kvs().iter().filter_map(|e| generation_of(&prefix, &String::from_utf8_lossy(e.key()))).collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Records one generation and drops the `prune`d ones in the same transaction, fenced like the
    /// status (only the leader records).
    pub async fn put_history<T: Serialize>(
        &self,
        namespace: &str,
        name: &str,
        generation: i64,
        value: &T,
        prune: &[i64],
    ) -> Result<(), StoreError> {
        let body = serde_json::to_vec(value).expect("engine records always serialize");
        let mut ops = vec![TxnOp::put(self.keys.history(namespace, name, generation), body, None)];
        ops.extend(prune.iter().map(|g| TxnOp::delete(self.keys.history(namespace, name, *g), None)));
        self.fenced_txn(Vec::new(), ops).await?;
        Ok(())
    }

    /// Read-modify-write of the stored App together with its pins key, in one transaction guarded
    /// by the App's `mod_revision` (retried on a conflict): `change` gets the stored App and returns
    /// the App and pins to write, or `None` for nothing to write. Returns what was written.
    pub async fn rewrite_app_with_pins<P, F>(
        &self,
        namespace: &str,
        name: &str,
        change: F,
    ) -> Result<Option<App>, StoreError>
    where
        P: Serialize,
        F: Fn(&App) -> Result<Option<(App, P)>, StoreError>,
    {
        let key = self.keys.app(namespace, name);
        let shown = format!("app/{name} -n {namespace}");
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(stored) = self.get_json::<App>(&key).await? else {
                return Err(StoreError::NotFound(shown));
            };
            if stored.value.metadata.deletion_timestamp.is_some() {
                return Err(StoreError::BeingDeleted { resource: shown });
            }
            let Some((app, pins)) = change(&stored.value)? else { return Ok(None) };
            let body = serde_json::to_vec(&app).expect("resources always serialize");
            let pins_body = serde_json::to_vec(&pins).expect("pins always serialize");
            let txn = Txn::new()
                .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, stored.mod_revision)])
                .and_then([
                    TxnOp::put(key.as_str(), body, None),
                    TxnOp::put(self.keys.pins(namespace, name), pins_body, None),
                ]);
            if self.client.kv_client().txn(txn).await?.succeeded() {
                return Ok(Some(app));
            }
        }
        Err(StoreError::Contended { what: shown, attempts: MAX_CONFLICT_RETRIES })
    }
}

/// `<prefix>/history/<ns>/<app>/<generation>` → the generation; `None` for anything else.
fn generation_of(prefix: &str, key: &str) -> Option<i64> {
    key.strip_prefix(prefix)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::generation_of;

    #[test]
    fn only_direct_numeric_children_are_generations() {
        let p = "/berth/history/prod/shop/";
        assert_eq!(generation_of(p, "/berth/history/prod/shop/12"), Some(12));
        assert_eq!(generation_of(p, "/berth/history/prod/shop/x"), None);
        assert_eq!(generation_of(p, "/berth/history/prod/shop/1/2"), None);
        assert_eq!(generation_of(p, "/berth/history/prod/shop2/1"), None);
    }
}
