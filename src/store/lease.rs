//! etcd leases: the leader's (granted, renewed by hand so a lost renewal is noticed, put on the
//! leader key by a campaign transaction, revoked on release) and the apply lock's (kept alive in
//! the background for as long as its guard lives).

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp};

use super::{Store, StoreError};

/// A granted lease and its keep-alive channel.
pub struct Lease {
    id: i64,
    client: Client,
    keeper: LeaseKeeper,
    acks: LeaseKeepAliveStream,
}

impl Store {
    /// Grants a lease of `ttl_secs` and opens its keep-alive channel.
    pub async fn grant_lease(&self, ttl_secs: i64) -> Result<Lease, StoreError> {
        let mut client = self.client.clone();
        let id = client.lease_grant(ttl_secs, None).await?.id();
        let (keeper, acks) = client.lease_keep_alive(id).await?;
        Ok(Lease { id, client, keeper, acks })
    }

    /// Puts `identity` on the leader key under `lease` if no one holds the key; says whether it did.
    pub async fn campaign(&self, identity: &str, lease: &Lease) -> Result<bool, StoreError> {
        let key = self.keys.leader();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), identity, Some(PutOptions::new().with_lease(lease.id)))]);
        Ok(self.client.kv_client().txn(txn).await?.succeeded())
    }
}

impl Lease {
    pub fn id(&self) -> i64 {
        self.id
    }

    /// One renewal: the TTL etcd granted again, or `None` when the keep-alive channel closed.
    /// A TTL of 0 or less means the lease had already expired.
    pub async fn renew(&mut self) -> Result<Option<i64>, StoreError> {
        self.keeper.keep_alive().await?;
        Ok(self.acks.message().await?.map(|ack| ack.ttl()))
    }

    /// Ends the lease at once (its keys go with it), rather than after its TTL.
    pub async fn revoke(mut self) {
        let _ = self.client.lease_revoke(self.id).await;
    }

    /// Renews the lease every `every` in a task that ends when the returned guard is dropped; the
    /// guard also revokes the lease then, so nothing it holds outlives its owner's future.
    pub fn keep_alive_in_background(mut self, every: Duration) -> LeaseGuard {
        let (id, client) = (self.id, self.client.clone());
        let renewing = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if self.renew().await.is_err() {
                    return;
                }
            }
        });
        LeaseGuard { id, client, renewing, revoked: false }
    }
}

/// Owns a lease renewed in the background: dropping it (the owner's future finished or was
/// dropped) stops the renewals and revokes the lease.
pub struct LeaseGuard {
    id: i64,
    client: Client,
    renewing: tokio::task::JoinHandle<()>,
    /// Set by [`LeaseGuard::release`], so the drop does not revoke a second time.
    revoked: bool,
}

impl LeaseGuard {
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Stops the renewals and revokes the lease before returning (the drop only starts the revoke).
    pub async fn release(mut self) {
        self.renewing.abort();
        self.revoked = true;
        let _ = self.client.lease_revoke(self.id).await;
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renewing.abort();
        if self.revoked {
            return;
        }
        // Best effort: with no runtime left the lease simply expires after its TTL.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (mut client, id) = (self.client.clone(), self.id);
            runtime.spawn(async move {
                let _ = client.lease_revoke(id).await;
            });
        }
    }
}
