//! `berth operator`: the long-running loop. It lists and watches the store, keeps a work queue of apps,
//! converges them with the engine while it holds the leader lease, repairs drift reported by Docker
//! events, and resyncs every app periodically. It never needs a person to restart it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tracing::{info, info_span, warn, Instrument};

use super::backoff::retry_backoff;
use super::finalizer::{self, Tombstones, Vanished};
use super::leader;
use super::queue::{QueueObserver, WorkQueue};
use super::reflector::{self, AppKey, Change, Reflector};
use super::workers;

mod host_watch;
use super::image_gc::ImageGc;
use crate::docker::HostPool;
use crate::engine::{self, Phase, Reason};
use crate::metrics::FailReason;
use crate::metrics::{self, server::Readiness};
use crate::sealing::Keyring;
use crate::spec;
use crate::store::Store;

/// Knobs of the operator (flags of `berth operator`).
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    pub concurrency: usize,
    pub resync: Duration,
    pub lease_ttl: Duration,
    pub metrics_addr: SocketAddr,
    pub identity: String,
    /// How long in-flight work may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Opens the Secrets Apps use; its recipients are published for sealing.
    pub keyring: Option<Arc<Keyring>>,
    /// Generations kept in each App's history (`--history-limit`).
    pub history_limit: usize,
    /// Pulls of each app kept per host by the image clean-up (`--image-retention`).
    pub image_retention: usize,
}

/// Feeds the queue's counters into the `berth_workqueue_*` metrics.
struct QueueMetrics;

impl QueueObserver for QueueMetrics {
    fn added(&self) {
        metrics::global().workqueue_adds.inc();
    }
    fn depth(&self, depth: usize) {
        metrics::global().workqueue_depth.set(depth as i64);
    }
    fn waited(&self, waited: Duration) {
        metrics::global().workqueue_queue_duration.with_label_values::<&str>(&[]).observe(waited.as_secs_f64());
    }
}

/// Everything the operator's tasks share.
struct Shared {
    store: Store,
    keyring: Option<Arc<Keyring>>,
    converge: engine::ConvergeOptions,
    images: ImageGc,
    reflector: Arc<Reflector>,
    queue: WorkQueue<AppKey>,
    pool: HostPool,
    /// Last known spec of apps whose keys vanished, until their containers are gone.
    tombstones: Tombstones,
    leadership: watch::Receiver<Option<i64>>,
    /// Hosts whose Docker event stream is connected (their view of containers is current).
    hosts_synced: Mutex<BTreeMap<String, bool>>,
    stopping: AtomicBool,
    /// Turns true on SIGTERM: closes every reconcile's gate, so health waits end at once.
    stop: watch::Receiver<bool>,
}

impl Readiness for Shared {
    fn ready(&self) -> Result<String, String> {
        if !self.reflector.is_ready() {
            return Err("etcd not listed yet".into());
        }
        if !self.reflector.is_connected() {
            return Err("etcd unreachable (serving the last known state)".into());
        }
        // A Docker host that is down is the BerthHostDown alert's business, not the operator's
        // readiness: one dead host must not block a rolling upgrade of the operator itself.
        let synced = self.hosts_synced.lock();
        let waiting: Vec<&str> = synced.iter().filter(|(_, ok)| !**ok).map(|(h, _)| h.as_str()).collect();
        let role = if self.leadership.borrow().is_some() { "leader" } else { "standby" };
        Ok(if waiting.is_empty() {
            role.to_string()
        } else {
            format!("{role}; no event stream from {} (listed on every converge meanwhile)", waiting.join(", "))
        })
    }
}

/// Runs the operator until `shutdown` turns true; then drains in-flight work, releases the lease and returns.
pub async fn run(store: Store, cfg: OperatorConfig, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let (leader_tx, leadership) = watch::channel(None);
    if let Some(k) = &cfg.keyring {
        // Anyone may seal to these; only this operator's identity opens what is sealed.
        if let Err(e) = store.put_recipients(&k.recipients()).await {
            warn!(error = %e, "cannot publish the sealing recipients; `berth apply` of stringData will wait for them");
        }
    }
    let shared = Arc::new(Shared {
        keyring: cfg.keyring.clone(),
        converge: engine::ConvergeOptions { history_limit: cfg.history_limit },
        images: ImageGc::new(cfg.image_retention),
        store: store.clone(),
        reflector: Arc::new(Reflector::default()),
        queue: WorkQueue::new(retry_backoff(), Box::new(QueueMetrics)),
        pool: HostPool::new(),
        tombstones: Tombstones::default(),
        leadership,
        hosts_synced: Mutex::new(BTreeMap::new()),
        stopping: AtomicBool::new(false),
        stop: shutdown.clone(),
    });
    let server = metrics::server::serve(cfg.metrics_addr, shared.clone(), shutdown.clone()).await?;
    info!(addr = %cfg.metrics_addr, identity = %cfg.identity, "operator starting");

    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    // The lease is released only once in-flight reconciles are done (and their status written), so
    // a standby never starts acting beside a reconcile that still runs.
    let (release_tx, release_rx) = watch::channel(false);
    let campaign =
        tokio::spawn(leader::campaign(store.clone(), cfg.identity.clone(), cfg.lease_ttl, leader_tx, release_rx));
    let mut tasks = vec![
        tokio::spawn(reflector::run(store.clone(), shared.reflector.clone(), changes_tx, shutdown.clone())),
        tokio::spawn(dispatch(shared.clone(), changes_rx)),
        tokio::spawn(on_leadership(shared.clone())),
        tokio::spawn(resync(shared.clone(), cfg.resync, shutdown.clone())),
        tokio::spawn(host_watch::host_watchers(shared.clone(), shutdown.clone())),
    ];
    let workers = tokio::spawn(workers::supervise(cfg.concurrency, {
        let shared = shared.clone();
        move || worker(shared.clone())
    }));

    let mut sd = shutdown.clone();
    let _ = sd.wait_for(|s| *s).await;
    // The gates of running reconciles closed with the same signal: waits end, no new action starts.
    info!("shutting down: no new work; in-flight reconciles stop at their next step");
    shared.stopping.store(true, Ordering::SeqCst);
    shared.queue.close();
    let drained = tokio::time::timeout(cfg.shutdown_grace, workers).await;
    if drained.is_err() {
        warn!(grace = ?cfg.shutdown_grace, "in-flight reconciles did not finish in time");
    }
    let _ = release_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), campaign).await;
    // The rest stop with the shutdown signal or hold nothing worth a goodbye (dispatch, leadership).
    let _ = tokio::time::timeout(Duration::from_secs(1), futures::future::join_all(tasks.iter_mut())).await;
    for t in &tasks {
        t.abort();
    }
    let _ = server.await;
    info!("operator stopped");
    Ok(())
}

/// Turns store changes into queue requests.
async fn dispatch(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Change>) {
    let mut known_hosts: Vec<String> = Vec::new();
    while let Some(change) = rx.recv().await {
        match change {
            Change::App(key) => {
                metrics::global().app_known(&key.1, &key.0);
                shared.tombstones.forget(&key);
                shared.queue.add(key);
            }
            Change::AppGone(key, last) => {
                shared.tombstones.bury(key.clone(), *last);
                shared.queue.add(key);
            }
            Change::Hosts(changed) => {
                let hosts: Vec<String> = shared.reflector.hosts().into_iter().map(|h| h.metadata.name).collect();
                for h in known_hosts.iter().filter(|h| !hosts.contains(h)) {
                    metrics::global().host_gone(h);
                    shared.hosts_synced.lock().remove(h);
                }
                for h in &hosts {
                    metrics::global().host_known(h);
                }
                known_hosts = hosts;
                // Only the apps placed on a changed Host (now or by their previous spec), and the
                // deleted ones still being pruned.
                for key in shared.reflector.apps_on_hosts(&changed).into_iter().chain(shared.tombstones.keys()) {
                    shared.queue.add(key);
                }
            }
        }
    }
}

fn all_keys(shared: &Shared) -> Vec<AppKey> {
    let mut keys = shared.reflector.app_keys();
    keys.extend(shared.tombstones.keys());
    keys
}

/// A new leader does not trust what a standby queued: it queues every app.
async fn on_leadership(shared: Arc<Shared>) {
    let mut rx = shared.leadership.clone();
    while rx.changed().await.is_ok() {
        if rx.borrow_and_update().is_some() {
            shared.reflector.wait_ready().await;
            for key in all_keys(&shared) {
                shared.queue.add(key);
            }
        }
    }
}

/// Requeues every app periodically, except those already queued or backing off.
async fn resync(shared: Arc<Shared>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! { _ = tokio::time::sleep(every) => {}, _ = shutdown.changed() => return }
        for key in all_keys(&shared) {
            shared.queue.add_if_idle(key);
        }
        let lease = *shared.leadership.borrow();
        if let Some(lease) = lease {
            shared
                .images
                .collect(&shared.store.fenced(lease), &shared.pool, &shared.reflector.hosts(), true, Vec::new())
                .await;
        }
    }
}

/// Takes apps off the queue while this process leads.
async fn worker(shared: Arc<Shared>) {
    let mut leadership = shared.leadership.clone();
    loop {
        let current = *leadership.borrow_and_update();
        let lease = match current {
            Some(l) => l,
            None => {
                if shared.stopping.load(Ordering::SeqCst) || leadership.changed().await.is_err() {
                    return;
                }
                continue;
            }
        };
        shared.reflector.wait_ready().await;
        let run = tokio::select! {
            run = shared.queue.next() => match run { Some(run) => run, None => return },
            _ = leadership.changed() => continue,
        };
        // A panic in here unwinds through `run`, which frees the key as a failure; the supervisor
        // starts another worker.
        let reconciled = reconcile(&shared, run.key(), lease, run.is_recheck()).await;
        run.done(reconciled.done());
    }
}

/// How one reconcile ended, for the queue (retry or not) and the log.
enum Reconciled {
    /// Nothing to do: not in the store and no tombstone.
    Nothing,
    /// A deleted App is gone from every host and its keys were removed.
    Finished,
    /// Converged; `settled` says whether anything is left to retry.
    Converged { settled: bool },
    /// The store failed: try again later.
    StoreFailed,
}

impl Reconciled {
    /// Whether the queue should treat the run as done (no backoff retry).
    fn done(&self) -> bool {
        match self {
            Reconciled::Nothing | Reconciled::Finished => true,
            Reconciled::Converged { settled } => *settled,
            Reconciled::StoreFailed => false,
        }
    }
}

/// One reconcile of one app: converge (or finish a deletion), then record its metrics. A `recheck`
/// distrusts what is cached of the app's hosts first.
async fn reconcile(shared: &Shared, key: &AppKey, lease: i64, recheck: bool) -> Reconciled {
    let (ns, name) = (key.0.as_str(), key.1.as_str());
    let app = match shared.reflector.app(key) {
        Some(a) => a,
        None => match shared.tombstones.confirm(&shared.store, key).await {
            Ok(Vanished::Gone(app)) => *app,
            Ok(Vanished::Unknown | Vanished::Back) => return Reconciled::Nothing,
            Err(e) => {
                warn!(app = %name, namespace = %ns, error = %e, "cannot confirm the app is gone; not pruning");
                return Reconciled::StoreFailed;
            }
        },
    };
    if recheck {
        for host in spec::hosts_of(&app.value) {
            shared.pool.cache(&host).mark_dirty();
        }
    }
    let generation = app.value.metadata.generation.unwrap_or(0);
    let span = info_span!("reconcile", app = %name, namespace = %ns, generation);
    let store = shared.store.fenced(lease);
    let hosts = shared.reflector.hosts();
    let started = Instant::now();
    let gate = leader::LeaseGate { leadership: shared.leadership.clone(), lease, stop: shared.stop.clone() };
    let result = async {
        let keyring = shared.keyring.as_deref();
        let outcome =
            engine::converge_gated(&store, &shared.pool, &app, &hosts, &gate, keyring, &shared.converge).await?;
        let finished = finalizer::finish(&store, &app, &outcome).await?;
        Ok::<_, crate::store::StoreError>((outcome, finished))
    }
    .instrument(span)
    .await;
    let m = metrics::global();
    match result {
        Ok((_, true)) => {
            shared.tombstones.forget(key);
            shared.queue.forget(key);
            m.app_gone(name, ns);
            info!(app = %name, namespace = %ns, "app removed");
            Reconciled::Finished
        }
        Ok((outcome, false)) => {
            m.record_reconcile(name, ns, record(&outcome, generation, started.elapsed()));
            if !outcome.pulls.is_empty() {
                shared.images.collect(&store, &shared.pool, &hosts, false, outcome.pulls.clone()).await;
            }
            // A failed rollout held at its last Ready generation has nothing to retry: backing off
            // and trying again is exactly what would take the healthy containers down again.
            Reconciled::Converged { settled: outcome.settled }
        }
        Err(e) => {
            warn!(app = %name, namespace = %ns, error = %e, "reconcile failed on the store");
            let failed =
                metrics::ReconcileRecord { took: started.elapsed(), failure: Some(FailReason::Store), seen: None };
            m.record_reconcile(name, ns, failed);
            Reconciled::StoreFailed
        }
    }
}

/// The metrics' view of a converge: why it is not Ready (from the typed phase and reason), the
/// generation lag, what it pruned and the container rows.
fn record(outcome: &engine::Outcome, generation: i64, took: Duration) -> metrics::ReconcileRecord {
    let status = &outcome.status;
    let failure = match (status.phase, outcome.reason()) {
        (Phase::Ready, _) => None,
        (Phase::Blocked, _) => Some(FailReason::Blocked),
        (_, Some(Reason::RolloutFailed)) => Some(FailReason::Rollback),
        _ if status.hosts.values().any(|h| !h.reachable) => Some(FailReason::HostUnreachable),
        _ => Some(FailReason::Docker),
    };
    let containers = status
        .hosts
        .iter()
        .flat_map(|(host, hs)| {
            hs.containers.iter().map(move |c| (host.clone(), c.component.clone(), c.metric_state(), 1))
        })
        .collect();
    let seen = metrics::Seen {
        generation_lag: generation - status.observed_generation,
        pruned: outcome.actions.get("pruned").copied().unwrap_or(0),
        containers,
    };
    metrics::ReconcileRecord { took, failure, seen: Some(seen) }
}
