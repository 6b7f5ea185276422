//! Leader election over an etcd lease: the leader key holds this process's identity under its lease;
//! the others wait for the key to go. Losing the keep-alive for a whole TTL means losing leadership.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::{Lease, Store};

/// The engine's gate while this process leads: open while the leadership still holds `lease` and
/// no shutdown began, so a deposed or stopping leader starts no Docker action and ends its waits.
pub struct LeaseGate {
    pub leadership: watch::Receiver<Option<i64>>,
    pub lease: i64,
    pub stop: watch::Receiver<bool>,
}

impl crate::engine::Gate for LeaseGate {
    fn is_open(&self) -> bool {
        *self.leadership.borrow() == Some(self.lease) && !*self.stop.borrow()
    }
}

/// Campaigns for ever: leads while it can, steps down when the lease is lost, revokes it on shutdown.
pub async fn campaign(
    store: Store,
    identity: String,
    ttl: Duration,
    tx: watch::Sender<Option<i64>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ttl_secs = ttl.as_secs().max(2) as i64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut lease = match store.grant_lease(ttl_secs).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot get a lease or keep it alive; retrying");
                tokio::select! { _ = tokio::time::sleep(ttl / 3) => continue, _ = shutdown.changed() => return }
            }
        };
        let mut leading = false;
        let mut last_renewed = Instant::now();
        loop {
            if !leading {
                match store.campaign(&identity, &lease).await {
                    Ok(true) => {
                        leading = true;
                        info!(identity = %identity, lease = lease.id(), "became leader");
                        crate::metrics::global().leader.set(1);
                        let _ = tx.send(Some(lease.id()));
                    }
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "leader election request failed"),
                }
            }
            let renewed = tokio::select! {
                r = tokio::time::timeout(ttl / 3, lease.renew()) => Some(r),
                _ = shutdown.changed() => None,
            };
            let Some(renewed) = renewed else {
                release(lease, leading, &tx).await;
                return;
            };
            match renewed {
                Ok(Ok(Some(granted))) if granted > 0 => last_renewed = Instant::now(),
                other => {
                    if last_renewed.elapsed() >= ttl || matches!(other, Ok(Ok(Some(_)))) {
                        if leading {
                            warn!("lost the leader lease: stepping down");
                            crate::metrics::global().leader.set(0);
                            let _ = tx.send(None);
                        }
                        break;
                    }
                }
            }
            // A standby looks more often than it renews, so it takes over soon after the old lease expires.
            let pause = if leading { ttl / 3 } else { (ttl / 3).min(Duration::from_secs(1)) };
            tokio::select! { _ = tokio::time::sleep(pause) => {}, _ = shutdown.changed() => {} }
            if *shutdown.borrow() {
                // Seen during the pause: release now rather than after another renewal.
                release(lease, leading, &tx).await;
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Steps down and revokes the lease, so a standby takes over at once instead of after the TTL.
async fn release(lease: Lease, leading: bool, tx: &watch::Sender<Option<i64>>) {
    if leading {
        let _ = tx.send(None);
        crate::metrics::global().leader.set(0);
    }
    lease.revoke().await;
    info!("lease released");
}
