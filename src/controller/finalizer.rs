//! Deletion end to end, after kube-runtime's `finalizer`: an App marked for deletion (`berth delete
//! app`), or whose key vanished from the store, is converged to nothing — its containers and networks
//! pruned, volumes kept — and only once nothing of it is left on any host are its keys removed.
//!
//! An App whose key vanished is remembered here with its last spec (a tombstone) until then, and is
//! pruned only after a fresh, linearizable read confirms it is really gone: a failed or empty read
//! never removes anything.

use std::collections::HashMap;

use parking_lot::Mutex;
use tracing::info;

use super::reflector::AppKey;
use crate::engine::Outcome;
use crate::spec::App;
use crate::store::{now_rfc3339, Store, StoreError, Versioned};

/// The last spec of every App whose key vanished and whose containers may still run.
#[derive(Default)]
pub struct Tombstones(Mutex<HashMap<AppKey, Versioned<App>>>);

/// What a vanished App's key turned out to be on a fresh read.
pub enum Vanished {
    /// No tombstone: nothing of ours to clean up.
    Unknown,
    /// The key is there again; the watch will bring it.
    Back,
    /// Confirmed gone: converge this (its last spec, marked deleted) to nothing.
    Gone(Box<Versioned<App>>),
}

impl Tombstones {
    /// The App's key vanished; `last` is its last known spec.
    pub fn bury(&self, key: AppKey, last: Versioned<App>) {
        self.0.lock().insert(key, last);
    }

    /// The App is in the store again (or finished): nothing to remember.
    pub fn forget(&self, key: &AppKey) {
        self.0.lock().remove(key);
    }

    pub fn contains(&self, key: &AppKey) -> bool {
        self.0.lock().contains_key(key)
    }

    pub fn keys(&self) -> Vec<AppKey> {
        self.0.lock().keys().cloned().collect()
    }

    /// Confirms with a linearizable read that a buried App is gone; an unreadable store is an error
    /// (and nothing is pruned).
    pub async fn confirm(&self, store: &Store, key: &AppKey) -> Result<Vanished, StoreError> {
        let Some(last) = self.0.lock().get(key).cloned() else {
            return Ok(Vanished::Unknown);
        };
        match store.get_app(&key.0, &key.1).await? {
            Some(_) => Ok(Vanished::Back),
            None => {
                let mut gone = last;
                gone.value.metadata.deletion_timestamp.get_or_insert_with(now_rfc3339);
                // The key is absent: the removal below compares against "no key".
                gone.mod_revision = 0;
                Ok(Vanished::Gone(Box::new(gone)))
            }
        }
    }
}

/// After a converge: a deleted App with nothing left on any host loses its spec, status and last
/// Ready keys — only if the spec is still the one whose containers were removed (a re-created App
/// is never deleted by a stale finalizer). Says whether the App is finished.
pub async fn finish(store: &Store, app: &Versioned<App>, outcome: &Outcome) -> Result<bool, StoreError> {
    if !outcome.gone {
        return Ok(false);
    }
    let (ns, name) = (app.value.namespace(), app.value.metadata.name.as_str());
    let removed = store.remove_app_keys(ns, name, app.mod_revision).await?;
    if removed {
        info!(app = %name, namespace = %ns, "app deleted: containers removed, keys removed");
    }
    Ok(removed)
}
