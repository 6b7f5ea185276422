//! etcd: where desired state (Apps, Hosts) and observed status live.
//!
//! Every write is a transaction guarded by `mod_revision`, so two writers never lose each
//! other's update; values are the resources as JSON under the layout in [`keys`].

pub mod keys;
mod listing;

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use keys::{KeyKind, Keys, DEFAULT_PREFIX};
pub use listing::{Listing, Unreadable};

use crate::spec::{App, Host, Resource};

/// How long a user waits before "etcd unreachable" instead of a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on every single etcd request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Optimistic-concurrency retries before giving up on a hot key.
const MAX_CONFLICT_RETRIES: usize = 20;

/// Store failures, split by what the user can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd unreachable at {endpoints}: {reason}")]
    Unreachable { endpoints: String, reason: String },
    #[error("etcd request failed: {}", one_line(.0))]
    Etcd(#[from] etcd_client::Error),
    #[error("{0}")]
    Refused(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored value at {key} is not valid: {reason}")]
    Corrupt { key: String, reason: String },
}

/// What `apply` did to one resource; printed as `created|configured|unchanged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

impl std::fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        })
    }
}

/// A value read from etcd together with the revision a guarded update must compare against.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: i64,
}

/// A connection to etcd under one key prefix.
#[derive(Clone)]
pub struct Store {
    client: Client,
    keys: Keys,
    endpoints: String,
    /// Set on the operator's leader: its writes succeed only while its lease still owns the leader key.
    fence: Option<i64>,
}

impl Store {
    /// Connects and proves etcd answers, so later errors are about requests, not reachability.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Store, StoreError> {
        let joined = endpoints.join(",");
        let unreachable = |reason: String| StoreError::Unreachable { endpoints: joined.clone(), reason };
        let client = open_live(endpoints).await.map_err(unreachable)?;
        Ok(Store { client, keys: Keys::new(prefix), endpoints: joined, fence: None })
    }

    /// A copy whose status writes and key removals are fenced by the leader lease `lease`.
    pub fn fenced(&self, lease: i64) -> Store {
        Store { fence: Some(lease), ..self.clone() }
    }

    /// The compare that makes a write conditional on still leading, when fenced.
    fn fence_compare(&self) -> Vec<Compare> {
        match self.fence {
            Some(lease) => vec![Compare::lease(self.keys.leader(), CompareOp::Equal, lease)],
            None => Vec::new(),
        }
    }

    /// Runs a fenced transaction; a failed fence is reported as lost leadership.
    async fn fenced_txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, StoreError> {
        let fence = self.fence_compare();
        if fence.is_empty() {
            let txn = Txn::new().when(compares).and_then(ops);
            return Ok(self.client.kv_client().txn(txn).await?.succeeded());
        }
        // Check the fence first, then the caller's own condition, so the two failures are told apart.
        let mut all = fence.clone();
        all.extend(compares.clone());
        let txn = Txn::new().when(all).and_then(ops);
        if self.client.kv_client().txn(txn).await?.succeeded() {
            return Ok(true);
        }
        let check = Txn::new().when(fence).and_then(Vec::<TxnOp>::new());
        if !self.client.kv_client().txn(check).await?.succeeded() {
            return Err(StoreError::Refused("this operator no longer holds the leader lease".into()));
        }
        Ok(false)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The raw client, for watches and leases owned by the controller.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Reads one JSON value; `None` when the key is absent.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>, StoreError> {
        let mut kv = self.client.kv_client();
        let resp = kv.get(key, None).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(entry) => {
                let value = decode(key, entry.value())?;
                Ok(Some(Versioned { value, mod_revision: entry.mod_revision() }))
            }
        }
    }

    pub async fn get_app(&self, namespace: &str, name: &str) -> Result<Option<Versioned<App>>, StoreError> {
        self.get_json(&self.keys.app(namespace, name)).await
    }

    pub async fn get_host(&self, name: &str) -> Result<Option<Versioned<Host>>, StoreError> {
        self.get_json(&self.keys.host(name)).await
    }

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
        for attempt in 0..MAX_CONFLICT_RETRIES {
            let mut outcomes = Vec::with_capacity(resources.len());
            let mut writes = Vec::new();
            for r in resources {
                let prepared = self.prepare(r).await.map_err(|e| match e {
                    StoreError::Refused(m) => StoreError::Refused(format!("{}: {m}", r.display_name())),
                    other => other,
                })?;
                outcomes.push(prepared.outcome);
                writes.extend(prepared.write);
            }
            if dry_run || writes.is_empty() {
                return Ok(outcomes);
            }
            if writes.len() > MAX_BATCH_WRITES {
                let mut out = Vec::with_capacity(resources.len());
                for r in resources {
                    out.extend(Box::pin(self.apply_all(std::slice::from_ref(r), false)).await?);
                }
                return Ok(out);
            }
            let (compares, puts): (Vec<Compare>, Vec<TxnOp>) = writes.into_iter().unzip();
            let txn = Txn::new().when(compares).and_then(puts);
            if self.client.kv_client().txn(txn).await?.succeeded() {
                return Ok(outcomes);
            }
            // Someone wrote one of these keys since it was read: work the whole batch out again.
            tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % (20 * (attempt as u64 + 1)))).await;
        }
        Err(StoreError::Refused(format!("the resources kept changing under {MAX_CONFLICT_RETRIES} attempts; try again")))
    }

    /// Reads one resource's key and works out its write (if any): the guarded-update rules of
    /// [`Store::apply`], with nothing written yet.
    async fn prepare(&self, resource: &Resource) -> Result<Prepared, StoreError> {
        match resource {
            Resource::Host(h) => {
                let key = self.keys.host(&h.metadata.name);
                let stored = self.get_json::<Host>(&key).await?;
                prepare_write(&key, stored, h.clone(), |stored: &Host, new: &mut Host| {
                    new.metadata.generation = stored.metadata.generation;
                    stored.spec != new.spec
                })
            }
            Resource::App(a) => {
                let mut a = a.clone();
                a.metadata.namespace = Some(a.namespace().to_string());
                let key = self.keys.app(a.namespace(), &a.metadata.name);
                let stored = self.get_json::<App>(&key).await?;
                prepare_write(&key, stored, a, |stored: &App, new: &mut App| {
                    new.metadata.generation = stored.metadata.generation;
                    // berth's own annotations (a `berth repin` request) survive a GitOps re-apply of
                    // a file that does not mention them; a file that sets one wins.
                    for (k, v) in &stored.metadata.annotations {
                        if k.starts_with(crate::spec::BERTH_ANNOTATION_PREFIX) {
                            new.metadata.annotations.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    stored.spec != new.spec
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
                return Err(StoreError::Refused(format!("app/{name} -n {namespace} is being deleted")));
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
                return Err(StoreError::NotFound(format!("app/{name} -n {namespace}")));
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
        Err(StoreError::Refused(format!("{key} kept changing; try again")))
    }

    /// Runs `work` while holding the store-wide apply lock (an etcd lock under a 30 s lease kept alive
    /// meanwhile), so cross-resource checks (hosts defined, host ports free, host unused) and the writes
    /// that follow them are never interleaved with another `apply` or `delete host`.
    pub async fn with_apply_lock<T, E, F, Fut>(&self, work: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut client = self.client.clone();
        let lease = client.lease_grant(30, None).await.map_err(StoreError::from)?.id();
        let (mut keeper, mut acks) = client.lease_keep_alive(lease).await.map_err(StoreError::from)?;
        let keep_alive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                if keeper.keep_alive().await.is_err() || acks.message().await.is_err() {
                    return;
                }
            }
        });
        let name = format!("{}/locks/apply", self.keys.prefix());
        let locked = tokio::time::timeout(
            Duration::from_secs(60),
            client.lock(name.as_str(), Some(etcd_client::LockOptions::new().with_lease(lease))),
        )
        .await;
        let result = match locked {
            Ok(Ok(lock)) => {
                let out = work().await;
                let _ = client.unlock(lock.key().to_vec()).await;
                out
            }
            Ok(Err(e)) => Err(StoreError::from(e).into()),
            Err(_) => Err(StoreError::Refused("another apply held the store lock for over 60s; try again".into()).into()),
        };
        keep_alive.abort();
        let _ = client.lease_revoke(lease).await;
        result
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
        let users: Vec<String> = apps
            .iter()
            .filter(|a| app_uses_host(a, name))
            .map(|a| format!("app/{} -n {}", a.metadata.name, a.namespace()))
            .collect();
        if !users.is_empty() {
            return Err(StoreError::Refused(format!("host/{name} is still used by {}", users.join(", "))));
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, stored.mod_revision)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        if self.client.kv_client().txn(txn).await?.succeeded() {
            Ok(apps.unreadable)
        } else {
            Err(StoreError::Refused(format!("host/{name} changed while deleting; try again")))
        }
    }

    /// Final step of an App's deletion: its spec and status keys go, and only if the spec is still the one
    /// whose containers were removed (a re-created App is never deleted by a stale finalizer).
    pub async fn remove_app_keys(&self, namespace: &str, name: &str, mod_revision: i64) -> Result<bool, StoreError> {
        let key = self.keys.app(namespace, name);
        self.fenced_txn(
            vec![Compare::mod_revision(key.as_str(), CompareOp::Equal, mod_revision)],
            vec![
                TxnOp::delete(key.as_str(), None),
                TxnOp::delete(self.keys.status(namespace, name), None),
                TxnOp::delete(self.keys.last_ready(namespace, name), None),
            ],
        )
        .await
    }

    /// Writes an App's status (any serializable shape the engine owns).
    pub async fn put_status<T: Serialize>(&self, namespace: &str, name: &str, status: &T) -> Result<(), StoreError> {
        let body = serde_json::to_vec(status).expect("status always serializes");
        self.fenced_txn(Vec::new(), vec![TxnOp::put(self.keys.status(namespace, name), body, None)]).await?;
        Ok(())
    }

    /// Removes a status key whose App is already gone.
    pub async fn delete_status(&self, namespace: &str, name: &str) -> Result<(), StoreError> {
        self.fenced_txn(Vec::new(), vec![TxnOp::delete(self.keys.status(namespace, name), None)]).await?;
        Ok(())
    }

    pub async fn get_status<T: DeserializeOwned>(&self, namespace: &str, name: &str) -> Result<Option<T>, StoreError> {
        Ok(self.get_json(&self.keys.status(namespace, name)).await?.map(|v| v.value))
    }

    /// Records an App's last Ready generation (any shape the engine owns), fenced like the status.
    pub async fn put_last_ready<T: Serialize>(&self, namespace: &str, name: &str, value: &T) -> Result<(), StoreError> {
        let body = serde_json::to_vec(value).expect("last ready always serializes");
        self.fenced_txn(Vec::new(), vec![TxnOp::put(self.keys.last_ready(namespace, name), body, None)]).await?;
        Ok(())
    }

    pub async fn get_last_ready<T: DeserializeOwned>(&self, namespace: &str, name: &str) -> Result<Option<T>, StoreError> {
        Ok(self.get_json(&self.keys.last_ready(namespace, name)).await?.map(|v| v.value))
    }
}

/// A client over the endpoints that answer.
///
/// etcd-client spreads requests over every endpoint it was given and fails those routed to a dead
/// one, so with `--etcd a,b,c` and `a` down about every other command would fail. Each endpoint is
/// probed first and only the live ones are used; the error is the first endpoint's reason.
async fn open_live(endpoints: &[String]) -> Result<Client, String> {
    if endpoints.len() <= 1 {
        return open(endpoints).await;
    }
    let probes = futures::future::join_all(endpoints.iter().map(|e| open(std::slice::from_ref(e)))).await;
    let mut live = Vec::new();
    let mut first_error = None;
    for (endpoint, probe) in endpoints.iter().zip(probes) {
        match probe {
            Ok(client) => live.push((endpoint.clone(), client)),
            Err(reason) => {
                first_error.get_or_insert(reason);
            }
        }
    }
    match live.len() {
        0 => Err(first_error.unwrap_or_default()),
        1 => Ok(live.remove(0).1),
        _ => open(&live.into_iter().map(|(e, _)| e).collect::<Vec<_>>()).await,
    }
}

/// One client over `endpoints`, proven to answer (so later errors are about requests, not reachability).
async fn open(endpoints: &[String]) -> Result<Client, String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    let timed_out = || format!("no answer within {}s", CONNECT_TIMEOUT.as_secs());
    let mut client = match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(endpoints, Some(options))).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(one_line(&e)),
        Err(_) => return Err(timed_out()),
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, client.status()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(one_line(&e)),
        Err(_) => Err(timed_out()),
    }
}

/// Whether an App places any container on a host.
pub fn app_uses_host(app: &App, host: &str) -> bool {
    app.spec.roles.values().any(|r| r.hosts.iter().any(|h| h == host))
        || app.spec.accessories.values().any(|a| a.hosts.iter().any(|h| h == host))
}

/// Gives the shared apply loop access to store-owned metadata of any resource kind.
/// Most writes one `apply` puts in a single etcd transaction (each also compares one revision);
/// etcd's default `--max-txn-ops` is 128.
pub const MAX_BATCH_WRITES: usize = 64;

/// One resource's part of an apply: what it will be reported as, and the guarded put, if it changes.
struct Prepared {
    outcome: ApplyOutcome,
    write: Option<(Compare, TxnOp)>,
}

/// The apply rules for one key, given what is stored: created only if absent, updated only if
/// unchanged since read, `generation` kept unless `carry` says the spec changed, store-owned
/// `deletionTimestamp` never taken from a file, and nothing written when nothing changed.
fn prepare_write<T, F>(key: &str, stored: Option<Versioned<T>>, desired: T, carry: F) -> Result<Prepared, StoreError>
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
                return Err(StoreError::Refused(
                    "it is being deleted; apply it again once the operator has removed it".into(),
                ));
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

pub trait HasMeta {
    fn meta(&self) -> &crate::spec::ObjectMeta;
    fn meta_mut(&mut self) -> &mut crate::spec::ObjectMeta;
}

impl HasMeta for App {
    fn meta(&self) -> &crate::spec::ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut crate::spec::ObjectMeta {
        &mut self.metadata
    }
}

impl HasMeta for Host {
    fn meta(&self) -> &crate::spec::ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut crate::spec::ObjectMeta {
        &mut self.metadata
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { key: key.to_string(), reason: listing::describe(&e) })
}

/// tonic errors nest a transport error inside a gRPC status inside etcd's error, each repeating
/// the next; users get the root cause on one line, e.g. `connection refused`.
fn one_line(e: &etcd_client::Error) -> String {
    let inner: &(dyn std::error::Error + 'static) = match e {
        etcd_client::Error::GRpcStatus(s) if std::error::Error::source(s).is_none() && !s.message().is_empty() => {
            return first_line(s.message());
        }
        etcd_client::Error::GRpcStatus(s) => s,
        etcd_client::Error::TransportError(t) => t,
        etcd_client::Error::IoError(io) => io,
        other => return first_line(&other.to_string()),
    };
    let mut root = inner;
    while let Some(next) = root.source() {
        root = next;
    }
    if let Some(io) = root.downcast_ref::<std::io::Error>() {
        if io.raw_os_error().is_some() {
            // "Connection refused (os error 111)" → "connection refused"
            return io.kind().to_string();
        }
    }
    first_line(&root.to_string())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// RFC 3339 UTC timestamp without pulling in a date crate.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
