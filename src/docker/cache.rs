//! Connections kept per host and re-made only when the Host's spec changes, plus each host's cache of
//! observed state (the reflector pattern): the last list of berth's containers, trusted only while the
//! host's Docker event stream is connected and no event has arrived since. A periodic resync where
//! nothing changed therefore makes no Docker API call at all, and every app's converge shares the
//! one observation of a host instead of copying it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::join_all;
use parking_lot::Mutex;

use super::{connect, liveness, ops, DockerError, HostClient};
use crate::plan::HostObservation;
use crate::spec::{Host, HostSpec};

/// One host's last observation and whether it is still current.
#[derive(Default)]
pub struct HostCache {
    /// Bumped by every Docker event and by every action berth takes on the host.
    seq: AtomicU64,
    /// True while the host's event stream is connected, so no change can go unnoticed.
    synced: AtomicBool,
    /// Shared, never copied: every app's converge reads the same host observation.
    state: Mutex<Option<(u64, Arc<HostObservation>)>>,
    /// Pinned images (`repo@sha256:…`) this host was seen to hold. A digest names one image for
    /// ever, so only a removal by hand can make an entry wrong, and a create that then finds the
    /// image missing forgets it and pulls.
    images: Mutex<HashSet<String>>,
    /// One list at a time per host: converges that find the cache stale together wait for the
    /// first one's list and use it, unless something changed on the host meanwhile (single flight).
    listing: tokio::sync::Mutex<()>,
    /// What this host's proxy serves, as berth last loaded it; held while its routes change, so two
    /// apps' converges never load over each other.
    pub proxy_routes: tokio::sync::Mutex<super::proxy::LoadedRoutes>,
}

impl HostCache {
    /// Something changed on the host: the next observation lists again.
    pub fn mark_dirty(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Called by the event-stream owner when the stream connects (true) or breaks (false).
    pub fn set_synced(&self, synced: bool) {
        self.mark_dirty();
        self.synced.store(synced, Ordering::SeqCst);
    }

    /// The cached observation, if it is still current.
    pub fn current(&self) -> Option<Arc<HostObservation>> {
        if !self.synced.load(Ordering::SeqCst) {
            return None;
        }
        let seq = self.seq.load(Ordering::SeqCst);
        match &*self.state.lock() {
            Some((at, obs)) if *at == seq => Some(Arc::clone(obs)),
            _ => None,
        }
    }

    /// The sequence number to pass to [`HostCache::store`]: read it before listing, so an event that
    /// arrives during the list leaves the cache dirty.
    pub fn begin(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    pub fn store(&self, seq: u64, obs: Arc<HostObservation>) {
        *self.state.lock() = Some((seq, obs));
    }

    /// Whether the host was seen holding this pinned image.
    pub fn has_image(&self, image: &str) -> bool {
        self.images.lock().contains(image)
    }

    /// The host holds this pinned image (it was inspected or pulled).
    pub fn add_image(&self, image: &str) {
        self.images.lock().insert(image.to_string());
    }

    /// The host no longer holds this image (a create said so).
    pub fn forget_image(&self, image: &str) {
        self.images.lock().remove(image);
    }

    /// Forget every image: the daemon may be another one now (a new endpoint, a restart).
    pub fn forget_images(&self) {
        self.images.lock().clear();
    }
}

/// A cache of host clients and observations keyed by Host name.
#[derive(Default)]
pub struct HostPool {
    clients: tokio::sync::Mutex<HashMap<String, (HostSpec, HostClient)>>,
    caches: Mutex<HashMap<String, Arc<HostCache>>>,
}

impl HostPool {
    pub fn new() -> HostPool {
        HostPool::default()
    }

    /// The client for a Host, connecting (and negotiating the API version) on first use or after a spec change.
    pub async fn client(&self, host: &Host) -> Result<HostClient, DockerError> {
        if let Some((spec, client)) = self.clients.lock().await.get(&host.metadata.name) {
            if *spec == host.spec {
                return Ok(client.clone());
            }
        }
        self.cache(&host.metadata.name).mark_dirty();
        self.cache(&host.metadata.name).forget_images();
        let client = connect(host).await?;
        self.clients.lock().await.insert(host.metadata.name.clone(), (host.spec.clone(), client.clone()));
        Ok(client)
    }

    /// Drops a client after a failure, so the next use reconnects (a restarted daemon, a moved socket).
    pub async fn forget(&self, host: &str) {
        self.cache(host).mark_dirty();
        self.cache(host).forget_images();
        self.clients.lock().await.remove(host);
    }

    /// The observation cache of a host (created empty and not synced on first use).
    pub fn cache(&self, host: &str) -> Arc<HostCache> {
        self.caches.lock().entry(host.to_string()).or_default().clone()
    }
}

/// Connected hosts and what they hold, gathered in one pass.
pub struct Observation {
    pub clients: BTreeMap<String, HostClient>,
    pub hosts: BTreeMap<String, Arc<HostObservation>>,
    pub errors: BTreeMap<String, String>,
}

impl HostPool {
    /// Connects to and lists every host in parallel; a host that fails is marked unreachable with its error.
    pub async fn observe(&self, hosts: &[Host]) -> Observation {
        let pool = self;
        let results = join_all(hosts.iter().map(|h| async move {
            let name = h.metadata.name.clone();
            let cache = pool.cache(&name);
            // A host that stopped answering is not waited on (a frozen dockerd would hold every converge
            // for the call timeout): it is reported at once, and its pinger notices when it answers again.
            if liveness::is_down(&name) {
                let e = liveness::not_answering(&name);
                return (name, Err(e));
            }
            let result = match pool.client(h).await {
                Ok(client) => match cache.current() {
                    Some(obs) => Ok((client, obs)),
                    None => {
                        // Only a synced cache can be reused; an unsynced one lists every time anyway.
                        let _one =
                            if cache.synced.load(Ordering::SeqCst) { Some(cache.listing.lock().await) } else { None };
                        match cache.current() {
                            // Listed by the converge this one waited for, and nothing changed since.
                            Some(obs) => Ok((client, obs)),
                            None => {
                                let seq = cache.begin();
                                let listed = ops::observe(&client).await.map(Arc::new);
                                if let Ok(obs) = &listed {
                                    cache.store(seq, Arc::clone(obs));
                                }
                                listed.map(|obs| (client, obs))
                            }
                        }
                    }
                },
                Err(e) => Err(e),
            };
            if result.is_err() {
                pool.forget(&name).await;
            }
            (name, result)
        }))
        .await;
        let mut out = Observation { clients: BTreeMap::new(), hosts: BTreeMap::new(), errors: BTreeMap::new() };
        for (name, result) in results {
            match result {
                Ok((client, obs)) => {
                    out.clients.insert(name.clone(), client);
                    out.hosts.insert(name, obs);
                }
                Err(e) => {
                    out.hosts
                        .insert(name.clone(), Arc::new(HostObservation { reachable: false, ..Default::default() }));
                    out.errors.insert(name, e.to_string());
                }
            }
        }
        out
    }
}
