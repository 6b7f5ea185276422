//! The operator's view of the store (kube-runtime's watcher + reflector): one list, then a watch from
//! that list's revision; a compacted revision or a broken watch means list again. A failed or empty
//! read never counts as "every app was deleted": only a successful list or a delete event removes one.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use backon::BackoffBuilder;
use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::spec::{App, Host};
use crate::store::{KeyKind, Store, Versioned};

/// An App's identity in the queue: (namespace, name).
pub type AppKey = (String, String);

/// What changed in the store, as the dispatcher needs it.
#[derive(Debug, Clone)]
pub enum Change {
    /// An App was created or changed.
    App(AppKey),
    /// An App's key disappeared; carries the last known spec so its containers can be found.
    AppGone(AppKey, Box<Versioned<App>>),
    /// A Host was created, changed or removed: every app may be affected.
    Hosts,
}

/// The last consistent picture of apps and hosts.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub apps: BTreeMap<AppKey, Versioned<App>>,
    pub hosts: BTreeMap<String, Host>,
}

/// The shared, always-readable store view plus a flag that turns true after the first full list.
pub struct Reflector {
    state: RwLock<Snapshot>,
    ready: watch::Sender<bool>,
    /// Whether etcd answers right now: false from a failed list or a broken watch until a list succeeds.
    connected: std::sync::atomic::AtomicBool,
}

impl Default for Reflector {
    fn default() -> Self {
        Reflector {
            state: RwLock::new(Snapshot::default()),
            ready: watch::channel(false).0,
            connected: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Reflector {
    pub fn snapshot(&self) -> Snapshot {
        self.state.read().expect("reflector lock").clone()
    }

    pub fn app(&self, key: &AppKey) -> Option<Versioned<App>> {
        self.state.read().expect("reflector lock").apps.get(key).cloned()
    }

    pub fn hosts(&self) -> Vec<Host> {
        self.state.read().expect("reflector lock").hosts.values().cloned().collect()
    }

    pub fn app_keys(&self) -> Vec<AppKey> {
        self.state.read().expect("reflector lock").apps.keys().cloned().collect()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Whether the store answered the last list and the watch since is intact.
    pub fn is_connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, std::sync::atomic::Ordering::SeqCst);
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
pub async fn run(store: Store, reflector: Arc<Reflector>, changes: mpsc::UnboundedSender<Change>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = crate::controller::queue::retry_backoff().with_max_delay(Duration::from_secs(30)).build();
    let mut first = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let revision = match list(&store, &reflector, &changes).await {
            Ok(rev) => rev,
            Err(e) => {
                reflector.set_connected(false);
                let wait = backoff.next().unwrap_or(Duration::from_secs(30));
                warn!(error = %e, retry_in = ?wait, "cannot list the store; keeping the last known state");
                tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = shutdown.changed() => return }
                continue;
            }
        };
        backoff = crate::controller::queue::retry_backoff().with_max_delay(Duration::from_secs(30)).build();
        if !first {
            crate::metrics::global().etcd_watch_restarts.inc();
        }
        first = false;
        reflector.set_connected(true);
        reflector.mark_ready();
        tokio::select! {
            r = watch_from(&store, &reflector, &changes, revision + 1) => {
                warn!(reason = %r, "store watch ended; listing again");
                reflector.set_connected(false);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// One full list; replaces the snapshot and reports what differs from the previous one.
async fn list(store: &Store, reflector: &Reflector, changes: &mpsc::UnboundedSender<Change>) -> Result<i64, String> {
    let keys = store.keys().clone();
    let mut kv = store.client().kv_client();
    let resp = kv.get(keys.root(), Some(GetOptions::new().with_prefix())).await.map_err(|e| e.to_string())?;
    let revision = resp.header().map(|h| h.revision()).ok_or("list answered without a revision")?;
    let mut fresh = Snapshot::default();
    for kv in resp.kvs() {
        let key = String::from_utf8_lossy(kv.key()).to_string();
        match keys.parse(&key) {
            Some(KeyKind::App { namespace, name }) => match serde_json::from_slice::<App>(kv.value()) {
                Ok(app) => {
                    fresh.apps.insert((namespace, name), Versioned { value: app, mod_revision: kv.mod_revision() });
                }
                Err(e) => warn!(key = %key, error = %e, "skipping an App that does not parse"),
            },
            Some(KeyKind::Host { name }) => match serde_json::from_slice::<Host>(kv.value()) {
                Ok(host) => {
                    fresh.hosts.insert(name, host);
                }
                Err(e) => warn!(key = %key, error = %e, "skipping a Host that does not parse"),
            },
            _ => {}
        }
    }
    let old = std::mem::replace(&mut *reflector.state.write().expect("reflector lock"), fresh.clone());
    for (key, app) in &fresh.apps {
        if old.apps.get(key).map(|o| o.mod_revision) != Some(app.mod_revision) {
            let _ = changes.send(Change::App(key.clone()));
        }
    }
    for (key, app) in old.apps {
        if !fresh.apps.contains_key(&key) {
            let _ = changes.send(Change::AppGone(key, Box::new(app)));
        }
    }
    if old.hosts != fresh.hosts {
        let _ = changes.send(Change::Hosts);
    }
    info!(revision, apps = fresh.apps.len(), hosts = fresh.hosts.len(), "store listed");
    Ok(revision)
}

/// Applies watch events until the watch breaks; returns why.
async fn watch_from(store: &Store, reflector: &Reflector, changes: &mpsc::UnboundedSender<Change>, start: i64) -> String {
    let keys = store.keys().clone();
    let mut client = store.client();
    let options = WatchOptions::new().with_prefix().with_start_revision(start).with_prev_key();
    let mut stream = match client.watch(keys.root(), Some(options)).await {
        Ok(s) => s,
        Err(e) => return format!("cannot watch: {e}"),
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return "watch stream closed".into(),
            Err(e) => return format!("watch failed: {e}"),
        };
        if resp.compact_revision() > 0 {
            return format!("revision {start} was compacted (now {})", resp.compact_revision());
        }
        if resp.canceled() {
            return format!("watch canceled: {}", resp.cancel_reason());
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).to_string();
            let mut state = reflector.state.write().expect("reflector lock");
            match (keys.parse(&key), event.event_type()) {
                (Some(KeyKind::App { namespace, name }), EventType::Put) => {
                    match serde_json::from_slice::<App>(kv.value()) {
                        Ok(app) => {
                            let k = (namespace, name);
                            state.apps.insert(k.clone(), Versioned { value: app, mod_revision: kv.mod_revision() });
                            let _ = changes.send(Change::App(k));
                        }
                        Err(e) => warn!(key = %key, error = %e, "ignoring an App that does not parse"),
                    }
                }
                (Some(KeyKind::App { namespace, name }), EventType::Delete) => {
                    let k = (namespace, name);
                    if let Some(last) = state.apps.remove(&k) {
                        let _ = changes.send(Change::AppGone(k, Box::new(last)));
                    }
                }
                (Some(KeyKind::Host { name }), EventType::Put) => match serde_json::from_slice::<Host>(kv.value()) {
                    Ok(host) => {
                        state.hosts.insert(name, host);
                        let _ = changes.send(Change::Hosts);
                    }
                    Err(e) => warn!(key = %key, error = %e, "ignoring a Host that does not parse"),
                },
                (Some(KeyKind::Host { name }), EventType::Delete) => {
                    state.hosts.remove(&name);
                    let _ = changes.send(Change::Hosts);
                }
                _ => {}
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
