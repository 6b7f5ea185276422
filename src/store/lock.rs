//! The store-wide apply lock: cross-resource checks and the writes that follow them run under it.

use std::time::Duration;

use etcd_client::LockOptions;

use super::{Store, StoreError};

/// The lock's lease: a holder that dies frees the lock after this long.
const LOCK_LEASE_SECS: i64 = 30;
/// How often the holder renews the lease.
const LOCK_RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long an apply waits for another one to finish.
const LOCK_WAIT: Duration = Duration::from_secs(60);

impl Store {
    /// Runs `work` while holding the store-wide apply lock (an etcd lock under a 30 s lease kept alive
    /// meanwhile), so cross-resource checks (hosts defined, host ports free, host unused) and the writes
    /// that follow them are never interleaved with another `apply` or `delete host`. Dropping the
    /// returned future stops the keep-alive and revokes the lease (so frees the lock) too.
    pub async fn with_apply_lock<T, E, F, Fut>(&self, work: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let lease = self.grant_lease(LOCK_LEASE_SECS).await?.keep_alive_in_background(LOCK_RENEW_EVERY);
        let name = format!("{}/locks/apply", self.keys.prefix());
        let mut client = self.client.clone();
        let locked = tokio::time::timeout(
            LOCK_WAIT,
            client.lock(name.as_str(), Some(LockOptions::new().with_lease(lease.id()))),
        )
        .await;
        let result = match locked {
            Ok(Ok(lock)) => {
                let out = work().await;
                let _ = client.unlock(lock.key().to_vec()).await;
                out
            }
            Ok(Err(e)) => Err(StoreError::from(e).into()),
            Err(_) => Err(StoreError::LockBusy { waited: LOCK_WAIT }.into()),
        };
        lease.release().await;
        result
    }
}
