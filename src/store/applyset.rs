//! The store side of apply sets: inventories under `<prefix>/applysets/NAME`, and the prune of what
//! left a set, written in the same transaction as the set's resources (what to prune and whether to
//! refuse is decided in [`crate::spec::applyset`]).

use etcd_client::{Compare, CompareOp, TxnOp};

use super::{now_rfc3339, Store, StoreError};
use crate::spec::applyset::{Inventory, ResourceRef};
use crate::spec::{App, Host};

/// What one apply writes for its set besides the resources.
pub struct SetWrite<'a> {
    /// The set's new inventory.
    pub inventory: &'a Inventory,
    /// Resources the set lists no more: Apps are marked for deletion, Hosts and Secrets deleted.
    pub prune: &'a [ResourceRef],
    /// Other sets' inventories without the resources this set adopts (`--force-adopt`).
    pub released: &'a [Inventory],
}

/// What a prune did to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pruned {
    /// The App is marked for deletion: the operator removes its containers (volumes stay), then its keys.
    MarkedForDeletion,
    /// The App was already being deleted.
    AlreadyDeleting,
    /// The Host key is gone.
    Deleted,
    /// Nothing was stored under it any more.
    AlreadyGone,
}

impl std::fmt::Display for Pruned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pruned::MarkedForDeletion => "pruned (marked for deletion)",
            Pruned::AlreadyDeleting => "pruned (already being deleted)",
            Pruned::Deleted => "pruned",
            Pruned::AlreadyGone => "pruned (already gone)",
        })
    }
}

/// Guarded writes (each with the compare it needs) and what they will do.
pub(super) type SetOps = (Vec<(Compare, TxnOp)>, Vec<(ResourceRef, Pruned)>);

impl Store {
    /// Every apply set's inventory; an unreadable one is an error naming its key (a set must never
    /// prune from a guess).
    pub async fn list_applysets(&self) -> Result<Vec<Inventory>, StoreError> {
        let (listing, _) = self.list_json::<Inventory>(&self.keys.applysets(), "apply set").await?;
        if let Some(bad) = listing.unreadable.first() {
            return Err(StoreError::Corrupt { key: bad.key.clone(), reason: bad.reason.clone() });
        }
        Ok(listing.items.into_iter().map(|v| v.value).collect())
    }

    /// Reads what the set's writes compare against and works them out: the inventories (this set's
    /// and the ones it adopts from) and the prunes.
    pub(super) async fn prepare_set(&self, set: &SetWrite<'_>) -> Result<SetOps, StoreError> {
        let mut writes = Vec::new();
        for inventory in std::iter::once(set.inventory).chain(set.released) {
            let key = self.keys.applyset(&inventory.name);
            let stored = self.get_json::<serde_json::Value>(&key).await?;
            let compare = match stored {
                Some(s) => Compare::mod_revision(key.as_str(), CompareOp::Equal, s.mod_revision),
                None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            };
            let body = serde_json::to_vec(inventory).expect("inventories serialize");
            writes.push((compare, TxnOp::put(key, body, None)));
        }
        let mut pruned = Vec::new();
        for r in set.prune {
            let (outcome, write) = match r {
                ResourceRef::App { namespace, name } => {
                    let key = self.keys.app(namespace, name);
                    match self.get_json::<App>(&key).await? {
                        None => (Pruned::AlreadyGone, None),
                        Some(s) if s.value.metadata.deletion_timestamp.is_some() => (Pruned::AlreadyDeleting, None),
                        Some(s) => {
                            let mut app = s.value;
                            app.metadata.deletion_timestamp = Some(now_rfc3339());
                            let body = serde_json::to_vec(&app).expect("resources serialize");
                            let compare = Compare::mod_revision(key.as_str(), CompareOp::Equal, s.mod_revision);
                            (Pruned::MarkedForDeletion, Some((compare, TxnOp::put(key, body, None))))
                        }
                    }
                }
                ResourceRef::Secret { namespace, name } => {
                    let key = self.keys.secret(namespace, name);
                    match self.get_json::<serde_json::Value>(&key).await? {
                        None => (Pruned::AlreadyGone, None),
                        Some(s) => {
                            let compare = Compare::mod_revision(key.as_str(), CompareOp::Equal, s.mod_revision);
                            (Pruned::Deleted, Some((compare, TxnOp::delete(key, None))))
                        }
                    }
                }
                ResourceRef::Host { name } => {
                    let key = self.keys.host(name);
                    match self.get_json::<Host>(&key).await? {
                        None => (Pruned::AlreadyGone, None),
                        Some(s) => {
                            let compare = Compare::mod_revision(key.as_str(), CompareOp::Equal, s.mod_revision);
                            (Pruned::Deleted, Some((compare, TxnOp::delete(key, None))))
                        }
                    }
                }
            };
            writes.extend(write);
            pruned.push((r.clone(), outcome));
        }
        Ok((writes, pruned))
    }
}
