//! Writes of desired state: `apply` (one resource or an all-or-nothing batch), deletion marks,
//! request annotations and Host removal, each guarded by `mod_revision` and retried on a conflict.

use std::time::Duration;

use backon::BackoffBuilder;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::Serialize;

use super::applyset::{Pruned, SetWrite};
use super::{now_rfc3339, ApplyOutcome, Store, StoreError, Unreadable, Versioned};
use crate::spec::applyset::ResourceRef;
use crate::spec::{app_uses_host, App, HasMeta, Host, Resource, Secret};

/// Optimistic-concurrency retries before giving up on a hot key.
const MAX_CONFLICT_RETRIES: usize = 20;

/// Most writes one `apply` puts in a single etcd transaction (each also compares one revision);
/// etcd's default `--max-txn-ops` is 128.
pub const MAX_BATCH_WRITES: usize = 64;

/// One resource's part of an apply: what it will be reported as, and the guarded put, if it changes.
struct Prepared {
    outcome: ApplyOutcome,
    write: Option<(Compare, TxnOp)>,
}

impl Store {
    /// Writes one resource with create-if-absent / update-if-unchanged-since-read semantics.
    ///
    /// `generation` starts at 1 and grows only when `spec` changes; an identical resource writes nothing.
    pub async fn apply(&self, resource: &Resource, dry_run: bool) -> Result<ApplyOutcome, StoreError> {
        Ok(self.apply_all(std::slice::from_ref(resource), dry_run).await?.remove(0))
    }

    /// Writes a batch of resources, in order, as [`Store::apply`] writes one — and all or nothing:
    /// every resource is worked out against what is stored first (so a refusal writes nothing), then
    /// all the writes go in one etcd transaction, retried whole on a conflict. A batch with more than
    /// [`MAX_BATCH_WRITES`] writes exceeds what one transaction may hold and is written one resource
    /// at a time, in order.
    pub async fn apply_all(&self, resources: &[Resource], dry_run: bool) -> Result<Vec<ApplyOutcome>, StoreError> {
        Ok(self.apply_set(resources, None, dry_run).await?.0)
    }

    /// [`Store::apply_all`] for an apply set: the set's inventory and its prunes (Apps marked for
    /// deletion, Hosts deleted) go in the same transaction as its resources. A batch too large for
    /// one transaction writes the resources one at a time, then the set's writes.
    pub async fn apply_set(
        &self,
        resources: &[Resource],
        set: Option<&SetWrite<'_>>,
        dry_run: bool,
    ) -> Result<(Vec<ApplyOutcome>, Vec<(ResourceRef, Pruned)>), StoreError> {
        let mut jitter = conflict_jitter();
        for _ in 0..MAX_CONFLICT_RETRIES {
            let mut outcomes = Vec::with_capacity(resources.len());
            let mut writes = Vec::new();
            for r in resources {
                let prepared = self.prepare(r).await?;
                outcomes.push(prepared.outcome);
                writes.extend(prepared.write);
            }
            let (set_writes, pruned) = match set {
                Some(s) => self.prepare_set(s).await?,
                None => (Vec::new(), Vec::new()),
            };
            if dry_run || (writes.is_empty() && set_writes.is_empty()) {
                return Ok((outcomes, pruned));
            }
            if writes.len() + set_writes.len() > MAX_BATCH_WRITES {
                let mut out = Vec::with_capacity(resources.len());
                for r in resources {
                    out.extend(Box::pin(self.apply_all(std::slice::from_ref(r), false)).await?);
                }
                let pruned = match set {
                    Some(s) => Box::pin(self.apply_set(&[], Some(s), false)).await?.1,
                    None => Vec::new(),
                };
                return Ok((out, pruned));
            }
            let (compares, ops): (Vec<Compare>, Vec<TxnOp>) = writes.into_iter().chain(set_writes).unzip();
            let txn = Txn::new().when(compares).and_then(ops);
            if self.client.kv_client().txn(txn).await?.succeeded() {
                return Ok((outcomes, pruned));
            }
            // Someone wrote one of these keys since it was read: work the whole batch out again.
            tokio::time::sleep(jitter.next().unwrap_or_default()).await;
        }
        Err(StoreError::Contended { what: batch_name(resources), attempts: MAX_CONFLICT_RETRIES })
    }

    /// Reads one resource's key and works out its write (if any): the guarded-update rules of
    /// [`Store::apply`], with nothing written yet.
    async fn prepare(&self, resource: &Resource) -> Result<Prepared, StoreError> {
        let shown = resource.display_name();
        match resource {
            Resource::Host(h) => {
                let key = self.keys.host(&h.metadata.name);
                let stored = self.get_json::<Host>(&key).await?;
                prepare_write(&key, &shown, stored, h.clone(), |stored: &Host, new: &mut Host| {
                    new.metadata.generation = stored.metadata.generation;
                    stored.spec != new.spec
                })
            }
            Resource::App(a) => {
                let mut a = a.clone();
                a.metadata.namespace = Some(a.namespace().to_string());
                let key = self.keys.app(a.namespace(), &a.metadata.name);
                let stored = self.get_json::<App>(&key).await?;
                prepare_write(&key, &shown, stored, a, |stored: &App, new: &mut App| {
                    new.metadata.generation = stored.metadata.generation;
                    // berth's own annotations (a `berth repin` request) survive a GitOps re-apply of
                    // a file that does not mention them; a file that sets one wins. A change cause
                    // describes one spec change: a new spec without one drops the old one.
                    let new_spec = stored.spec != new.spec;
                    for (k, v) in &stored.metadata.annotations {
                        let stale_cause = new_spec && k == crate::spec::CHANGE_CAUSE_ANNOTATION;
                        if k.starts_with(crate::spec::BERTH_ANNOTATION_PREFIX) && !stale_cause {
                            new.metadata.annotations.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    stored.spec != new.spec
                })
            }
            Resource::Secret(sec) => {
                // etcd never holds a plain value: the CLI seals stringData before it gets here.
                if !sec.string_data.is_empty() {
                    return Err(StoreError::Plaintext { resource: shown });
                }
                let mut sec = sec.clone();
                sec.metadata.namespace = Some(sec.namespace().to_string());
                let key = self.keys.secret(sec.namespace(), &sec.metadata.name);
                let stored = self.get_json::<Secret>(&key).await?;
                prepare_write(&key, &shown, stored, sec, |stored: &Secret, new: &mut Secret| {
                    new.metadata.generation = stored.metadata.generation;
                    stored.secret_type != new.secret_type || stored.sealed_data != new.sealed_data
                })
            }
        }
    }

    /// Marks an App for deletion; the converge loop removes its containers, then its keys.
    pub async fn delete_app(&self, namespace: &str, name: &str) -> Result<(), StoreError> {
        self.update_app(namespace, name, |app| {
            if app.metadata.deletion_timestamp.is_some() {
                return Ok(false);
            }
            app.metadata.deletion_timestamp = Some(now_rfc3339());
            Ok(true)
        })
        .await
    }

    /// Asks the operator to resolve every image tag of an App again (`berth repin`): sets
    /// [`crate::spec::REPIN_ANNOTATION`] to now and returns that value, which the status echoes once
    /// the new pins are in use. The spec and its generation stay as they are.
    pub async fn request_repin(&self, namespace: &str, name: &str) -> Result<String, StoreError> {
        self.request(namespace, name, crate::spec::REPIN_ANNOTATION).await
    }

    /// Asks the operator to attempt a generation whose rollout was rolled back once more (`berth
    /// rollout retry`): sets [`crate::spec::ROLLOUT_RETRY_ANNOTATION`] to now and returns that value.
    pub async fn request_rollout_retry(&self, namespace: &str, name: &str) -> Result<String, StoreError> {
        self.request(namespace, name, crate::spec::ROLLOUT_RETRY_ANNOTATION).await
    }

    /// Sets a request annotation to now (any new value is a new request) on an App not being deleted.
    async fn request(&self, namespace: &str, name: &str, annotation: &str) -> Result<String, StoreError> {
        // Nanoseconds, so two requests within one second are still two requests.
        let token = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        self.update_app(namespace, name, |app| {
            if app.metadata.deletion_timestamp.is_some() {
                return Err(StoreError::BeingDeleted { resource: app_name(namespace, name) });
            }
            app.metadata.annotations.insert(annotation.to_string(), token.clone());
            Ok(true)
        })
        .await?;
        Ok(token)
    }

    /// Read-modify-write of one stored App, guarded by its `mod_revision` and retried on a conflict;
    /// `change` returns whether there is anything to write.
    async fn update_app<F>(&self, namespace: &str, name: &str, change: F) -> Result<(), StoreError>
    where
        F: Fn(&mut App) -> Result<bool, StoreError>,
    {
        let key = self.keys.app(namespace, name);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(stored) = self.get_json::<App>(&key).await? else {
                return Err(StoreError::NotFound(app_name(namespace, name)));
            };
            let mut app = stored.value;
            if !change(&mut app)? {
                return Ok(());
            }
            let body = serde_json::to_vec(&app).expect("resources always serialize");
            let txn = Txn::new()
                .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, stored.mod_revision)])
                .and_then([TxnOp::put(key.as_str(), body, None)]);
            if self.client.kv_client().txn(txn).await?.succeeded() {
                return Ok(());
            }
        }
        Err(StoreError::Contended { what: app_name(namespace, name), attempts: MAX_CONFLICT_RETRIES })
    }

    /// Removes a Host unless an App still places containers on it (the refusal names that App).
    /// App keys that do not decode count as no App (the operator skips them too); they are
    /// returned so the caller can warn about them.
    pub async fn delete_host(&self, name: &str) -> Result<Vec<Unreadable>, StoreError> {
        let key = self.keys.host(name);
        let Some(stored) = self.get_json::<Host>(&key).await? else {
            return Err(StoreError::NotFound(format!("host/{name}")));
        };
        let apps = self.list_apps(None).await?;
        let users: Vec<String> =
            apps.iter().filter(|a| app_uses_host(a, name)).map(|a| app_name(a.namespace(), &a.metadata.name)).collect();
        if !users.is_empty() {
            return Err(StoreError::HostInUse { host: name.to_string(), apps: users });
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, stored.mod_revision)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        if self.client.kv_client().txn(txn).await?.succeeded() {
            Ok(apps.unreadable)
        } else {
            Err(StoreError::Contended { what: format!("host/{name}"), attempts: 1 })
        }
    }
}

/// `app/shop -n production`: how errors name an App.
fn app_name(namespace: &str, name: &str) -> String {
    format!("app/{name} -n {namespace}")
}

/// Jittered, so two appliers that collided do not collide again in step.
fn conflict_jitter() -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(200))
        .with_jitter()
        .without_max_times()
        .build()
}

/// How a refusal names a batch: its one resource, or how many.
fn batch_name(resources: &[Resource]) -> String {
    match resources {
        [one] => one.display_name(),
        many => format!("the {} resources", many.len()),
    }
}

/// The apply rules for one key, given what is stored: created only if absent, updated only if
/// unchanged since read, `generation` kept unless `carry` says the spec changed, store-owned
/// `deletionTimestamp` never taken from a file, and nothing written when nothing changed.
/// `shown` names the resource in a refusal.
fn prepare_write<T, F>(
    key: &str,
    shown: &str,
    stored: Option<Versioned<T>>,
    desired: T,
    carry: F,
) -> Result<Prepared, StoreError>
where
    T: Serialize + PartialEq + HasMeta,
    F: Fn(&T, &mut T) -> bool,
{
    let mut new = desired;
    new.meta_mut().deletion_timestamp = None;
    let (outcome, compare) = match stored {
        None => {
            new.meta_mut().generation = Some(1);
            (ApplyOutcome::Created, Compare::create_revision(key, CompareOp::Equal, 0))
        }
        Some(stored) => {
            if stored.value.meta().deletion_timestamp.is_some() {
                return Err(StoreError::BeingDeleted { resource: shown.to_string() });
            }
            let spec_changed = carry(&stored.value, &mut new);
            if spec_changed {
                new.meta_mut().generation = Some(stored.value.meta().generation.unwrap_or(0) + 1);
            }
            if new == stored.value {
                return Ok(Prepared { outcome: ApplyOutcome::Unchanged, write: None });
            }
            (ApplyOutcome::Configured, Compare::mod_revision(key, CompareOp::Equal, stored.mod_revision))
        }
    };
    let body = serde_json::to_vec(&new).expect("resources always serialize");
    Ok(Prepared { outcome, write: Some((compare, TxnOp::put(key, body, None))) })
}
