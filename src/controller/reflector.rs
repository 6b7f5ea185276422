//! The operator's view of the store (kube-runtime's watcher + reflector): the store's list-then-watch
//! ([`crate::store::Watcher`]) feeds [`snapshot::apply_event`], which keeps the picture readers share.
//! A failed or empty read never counts as "every app was deleted": only a successful list or a
//! delete event removes one.

mod snapshot;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

pub use snapshot::{apply_event, AppKey, Change, Snapshot};

use crate::spec::{App, Host};
use crate::store::{Store, StoreError, Versioned, WatchError, WatchEvent};

/// The shared, always-readable store view plus a flag that turns true after the first full list.
pub struct Reflector {
    state: RwLock<Snapshot>,
    ready: watch::Sender<bool>,
    /// Whether etcd answers right now: false from a failed list or a broken watch until a list succeeds.
    connected: AtomicBool,
}

impl Default for Reflector {
    fn default() -> Self {
        Reflector {
            state: RwLock::new(Snapshot::default()),
            ready: watch::channel(false).0,
            connected: AtomicBool::new(false),
        }
    }
}

impl Reflector {
    pub fn snapshot(&self) -> Snapshot {
        self.state.read().clone()
    }

    /// An App as the reflector holds it, shared (no copy of the spec).
    pub fn get(&self, key: &AppKey) -> Option<Versioned<Arc<App>>> {
        self.state.read().apps.get(key).cloned()
    }

    /// An owned copy of an App, the form `engine::converge` takes.
    pub fn app(&self, key: &AppKey) -> Option<Versioned<App>> {
        self.get(key).map(|a| Versioned { value: App::clone(&a.value), mod_revision: a.mod_revision })
    }

    pub fn hosts(&self) -> Vec<Host> {
        self.state.read().hosts.values().cloned().collect()
    }

    pub fn app_keys(&self) -> Vec<AppKey> {
        self.state.read().apps.keys().cloned().collect()
    }

    /// The apps a change of these Hosts may affect: those whose current or previous spec places
    /// containers on one of them.
    pub fn apps_on_hosts(&self, hosts: &BTreeSet<String>) -> BTreeSet<AppKey> {
        let state = self.state.read();
        hosts.iter().flat_map(|h| state.apps_on_host(h)).cloned().collect()
    }

    /// An App's status as last seen by the watch, decoded as the engine's `T`; `Corrupt` like
    /// [`Store::get_status`]. It may lag a write this process just made (the watch has not brought
    /// it yet): a reader that wrote the status compares `mod_revision` with its write's first.
    pub fn status<T: DeserializeOwned>(&self, key: &AppKey) -> Result<Option<Versioned<T>>, StoreError> {
        let Some(raw) = self.state.read().statuses.get(key).cloned() else { return Ok(None) };
        let shown = format!("status of app/{} -n {}", key.1, key.0);
        let value = crate::store::decode(&shown, &raw.value)?;
        Ok(Some(Versioned { value, mod_revision: raw.mod_revision }))
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Whether the store answered the last list and the watch since is intact.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::SeqCst);
    }

    /// Records that a full list succeeded. `send_replace`, not `send`: `send` leaves the value unchanged
    /// when nobody is waiting at that moment, and the view would then never count as ready.
    fn mark_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Waits for the first complete list of the store.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

/// Lists and watches the store for ever, feeding `reflector` and sending changes; returns on shutdown.
pub async fn run(
    store: Store,
    reflector: Arc<Reflector>,
    changes: mpsc::UnboundedSender<Change>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = crate::controller::backoff::ResetBackoff::reconnect();
    let mut first = true;
    let mut watcher = store.watch_all();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let event = tokio::select! { e = watcher.next() => e, _ = shutdown.changed() => return };
        match event {
            Ok(event) => {
                let listed = match &event {
                    WatchEvent::Listed { revision, .. } => Some(*revision),
                    _ => None,
                };
                let (found, apps, hosts) = {
                    let mut state = reflector.state.write();
                    let found = apply_event(&mut state, event);
                    (found, state.apps.len(), state.hosts.len())
                };
                // Sent once the snapshot holds them, so the dispatcher reads what it is told about.
                for change in found {
                    let _ = changes.send(change);
                }
                if let Some(revision) = listed {
                    backoff.reset();
                    if !first {
                        crate::metrics::global().etcd_watch_restarts.inc();
                    }
                    first = false;
                    reflector.set_connected(true);
                    reflector.mark_ready();
                    info!(revision, apps, hosts, "store listed");
                }
            }
            Err(WatchError::List(e)) => {
                reflector.set_connected(false);
                let wait = backoff.next().unwrap_or(Duration::from_secs(30));
                warn!(error = %e, retry_in = ?wait, "cannot list the store; keeping the last known state");
                tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = shutdown.changed() => return }
            }
            Err(WatchError::Ended(reason)) => {
                warn!(reason = %reason, "store watch ended; listing again");
                reflector.set_connected(false);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_sticks_even_when_nobody_waits_at_that_moment() {
        let r = Reflector::default();
        assert!(!r.is_ready());
        r.mark_ready();
        assert!(r.is_ready());
        tokio::time::timeout(Duration::from_secs(1), r.wait_ready()).await.expect("a later waiter sees it");
    }
}
