//! The operator's image clean-up: records the pulls berth made per host in etcd, then removes, per
//! host, the recorded images no container uses and no app keeps among its last `--image-retention`
//! pulls there ([`super::image_choice`]). Runs after a converge that pulled, and on resync.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, warn};

use super::image_choice::{choose, HostImages};
use crate::docker::images::{self, PullNote};
use crate::docker::HostPool;
use crate::spec::Host;
use crate::store::{Store, StoreError};

/// Pulls of each app kept per host unless the operator says otherwise.
pub const DEFAULT_RETENTION: usize = 3;

/// The operator's image clean-up, with its `--image-retention`.
pub struct ImageGc {
    retention: usize,
    /// One clean-up at a time: each reads and rewrites a host's record.
    running: tokio::sync::Mutex<()>,
    /// Pulls converges made that are not recorded yet (etcd failed): recorded by the next run.
    pending: parking_lot::Mutex<Vec<PullNote>>,
}

impl ImageGc {
    pub fn new(retention: usize) -> ImageGc {
        ImageGc { retention, running: tokio::sync::Mutex::new(()), pending: parking_lot::Mutex::new(Vec::new()) }
    }

    /// Records `pulls` (a converge's) with any still pending, then cleans up the hosts they were on
    /// (`all`: every host, as on resync). `store` is the leader's fenced store; a store error keeps
    /// the notes for the next run.
    pub async fn collect(&self, store: &Store, pool: &HostPool, hosts: &[Host], all: bool, pulls: Vec<PullNote>) {
        let _one = self.running.lock().await;
        let notes: Vec<PullNote> = std::mem::take(&mut *self.pending.lock()).into_iter().chain(pulls).collect();
        let mut scope: BTreeSet<String> = notes.iter().map(|n| n.host.clone()).collect();
        if let Err((e, unrecorded)) = record(store, notes).await {
            warn!(error = %e, "cannot record the images berth pulled; trying again later");
            self.pending.lock().extend(unrecorded);
            return;
        }
        if all {
            scope.extend(hosts.iter().map(|h| h.metadata.name.clone()));
        }
        clean(store, pool, hosts, &scope, self.retention).await
    }
}

async fn clean(store: &Store, pool: &HostPool, hosts: &[Host], scope: &BTreeSet<String>, retention: usize) {
    for host in hosts.iter().filter(|h| scope.contains(&h.metadata.name)) {
        if let Err(e) = clean_host(store, pool, host, retention).await {
            warn!(host = %host.metadata.name, error = %e, "image clean-up stopped on this host");
        }
    }
}

/// Adds pulls berth made to each host's record, so the clean-up may remove them one day (a
/// `berth converge` run by hand records its pulls too); on failure, the notes not recorded.
pub async fn record(store: &Store, notes: Vec<PullNote>) -> Result<(), (StoreError, Vec<PullNote>)> {
    let mut by_host: BTreeMap<String, Vec<PullNote>> = BTreeMap::new();
    for n in notes {
        by_host.entry(n.host.clone()).or_default().push(n);
    }
    let mut hosts = by_host.into_iter();
    while let Some((host, notes)) = hosts.next() {
        let result = async {
            let mut rec: HostImages = store.get_host_images(&host).await?.unwrap_or_default();
            for n in &notes {
                rec.note(&n.image, &n.namespace, &n.app);
            }
            store.put_host_images(&host, &rec).await
        }
        .await;
        if let Err(e) = result {
            return Err((e, notes.into_iter().chain(hosts.flat_map(|(_, n)| n)).collect()));
        }
    }
    Ok(())
}

/// Why one host's clean-up stopped.
#[derive(Debug, thiserror::Error)]
enum CleanError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Docker(#[from] crate::docker::DockerError),
}

async fn clean_host(store: &Store, pool: &HostPool, host: &Host, retention: usize) -> Result<(), CleanError> {
    let name = host.metadata.name.as_str();
    let Some(mut rec) = store.get_host_images::<HostImages>(name).await? else { return Ok(()) };
    if !rec.beyond_retention(retention) {
        return Ok(());
    }
    let client = pool.client(host).await?;
    let refs: Vec<&str> = rec.images.iter().map(|p| p.image.as_str()).collect();
    let found = images::inspect_images(&client, &refs).await?;
    let on_host = found.iter().map(|(r, f)| (r.clone(), f.as_ref().map(|(id, _)| id.clone()))).collect();
    let in_use = images::images_in_use(&client).await?;
    let choice = choose(&rec, retention, &on_host, &in_use);
    let before = rec.clone();
    for image in &choice.gone {
        rec.forget(image);
    }
    let m = crate::metrics::global();
    for image in &choice.remove {
        let removed = images::remove_image(&client, image).await;
        pool.cache(name).forget_image(image);
        match removed {
            Ok(deleted) => {
                rec.forget(image);
                if deleted {
                    let bytes = found.get(image).cloned().flatten().map_or(0, |(_, size)| size);
                    m.images_removed.with_label_values(&[name]).inc();
                    m.image_bytes_reclaimed.with_label_values(&[name]).inc_by(bytes);
                    info!(host = name, image = %image, bytes, "removed an image berth pulled");
                }
            }
            Err(e) => warn!(host = name, image = %image, error = %e, "cannot remove an image berth pulled"),
        }
    }
    if rec != before {
        store.put_host_images(name, &rec).await?;
    }
    Ok(())
}
