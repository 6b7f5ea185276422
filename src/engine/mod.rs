//! Executes a plan against the hosts: accessories first, health gates, rolling replaces, prune,
//! then writes the App's status. This is the one code path of `berth converge` and the operator.

pub mod pool;
pub mod progress;
pub mod rollout;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tracing::{info, warn};

pub use pool::HostPool;
pub use status::{AppStatus, Condition, ContainerStatus, HostStatus, Phase, RolloutFailure};

use progress::Progress;
use rollout::LastReady;

use crate::docker::{ops, DockerError, HostClient};
use crate::plan::{self, labels, Action, ContainerState, DesiredContainer, Health, HostObservation, Plan};
use crate::spec::{self, App, Host};
use crate::store::{now_rfc3339, Store, StoreError, Versioned};

/// How often health is polled while waiting for a container.
const HEALTH_POLL: Duration = Duration::from_millis(200);

/// What one converge saw and did, for the caller (CLI exit code, operator metrics).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: AppStatus,
    /// Docker actions executed, by verb (`create`, `start`, ...).
    pub actions: BTreeMap<String, u64>,
    /// True when a deleted App's containers are gone and its keys were removed.
    pub finalized: bool,
    /// Nothing is left to retry: Ready, or a failed rollout that berth holds at its last Ready
    /// generation (only a new spec or `berth rollout retry` starts another attempt).
    pub settled: bool,
}

/// Connected hosts and what they hold, gathered in one pass.
pub struct Observation {
    pub clients: BTreeMap<String, HostClient>,
    pub hosts: BTreeMap<String, HostObservation>,
    pub errors: BTreeMap<String, String>,
}

/// Connects to and lists every host in parallel; a host that fails is marked unreachable with its error.
pub async fn observe(pool: &HostPool, hosts: &[Host]) -> Observation {
    let results = join_all(hosts.iter().map(|h| async move {
        let name = h.metadata.name.clone();
        let cache = pool.cache(&name);
        // A host that stopped answering is not waited on (a frozen dockerd would hold every converge
        // for the call timeout): it is reported at once, and its pinger notices when it answers again.
        if crate::docker::liveness::is_down(&name) {
            let e = crate::docker::liveness::not_answering(&name);
            return (name, Err(e));
        }
        let result = match pool.client(h).await {
            Ok(client) => match cache.current() {
                Some(obs) => Ok((client, obs)),
                None => {
                    let seq = cache.begin();
                    let listed = ops::observe(&client).await;
                    if let Ok(obs) = &listed {
                        cache.store(seq, obs.clone());
                    }
                    listed.map(|obs| (client, obs))
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
                out.hosts.insert(name.clone(), HostObservation { reachable: false, ..Default::default() });
                out.errors.insert(name, e.to_string());
            }
        }
    }
    out
}

/// Pins every image reference the app needs. A pin in the last status is reused for as long as the
/// spec keeps its reference and no `berth repin` came after it, whatever else in the spec changes:
/// a moved tag never swaps a running namespace's image, and a change that does not touch `image`
/// never changes the code (nor waits on a registry round trip). Anything else is resolved once,
/// through a host that needs it.
pub async fn resolve_images(
    app: &App,
    hosts: &[Host],
    previous: Option<&AppStatus>,
    clients: &BTreeMap<String, HostClient>,
) -> Result<BTreeMap<String, String>, String> {
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (host, refs) in plan::images_needed(app, hosts) {
        for r in refs {
            wanted.entry(r).or_default().push(host.clone());
        }
    }
    // Every reference at once: each look-up is a registry round trip through a daemon.
    let reuse = previous.filter(|p| p.repin_requested_at.as_deref() == app.repin_requested_at());
    let results = join_all(wanted.into_iter().map(|(reference, needing)| async move {
        if let Some(p) = reuse.and_then(|prev| prev.images.get(&reference)) {
            return (reference, Ok(p.clone()));
        }
        let mut last_error = format!("no reachable host needs {reference}");
        for host in &needing {
            let Some(client) = clients.get(host) else { continue };
            match ops::resolve_image(client, &reference).await {
                Ok(p) => return (reference, Ok(p)),
                Err(e) => last_error = e.to_string(),
            }
        }
        let why = format!("cannot resolve image {reference}: {last_error}");
        (reference, Err(why))
    }))
    .await;
    let mut pinned = BTreeMap::new();
    for (reference, result) in results {
        pinned.insert(reference, result?);
    }
    Ok(pinned)
}

/// Converges one App on every host and writes its status; the store errors only when etcd fails.
pub async fn converge(
    store: &Store,
    pool: &HostPool,
    app: &Versioned<App>,
    hosts: &[Host],
) -> Result<Outcome, StoreError> {
    converge_gated(store, pool, app, hosts, &Gate::open()).await
}

/// Says whether the engine may still start Docker actions: the operator closes it the moment it
/// loses the leader lease or starts shutting down, so a deposed or stopping leader starts nothing
/// new and gives up its health waits.
#[derive(Clone, Default)]
pub struct Gate {
    lease: Option<(tokio::sync::watch::Receiver<Option<i64>>, i64)>,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Gate {
    /// Always open (one-shot `berth converge`).
    pub fn open() -> Gate {
        Gate::default()
    }

    /// Open while the watched leadership holds `lease` and `stop` stays false.
    pub fn leader(rx: tokio::sync::watch::Receiver<Option<i64>>, lease: i64, stop: tokio::sync::watch::Receiver<bool>) -> Gate {
        Gate { lease: Some((rx, lease)), stop: Some(stop) }
    }

    pub fn is_open(&self) -> bool {
        self.lease.as_ref().is_none_or(|(rx, lease)| *rx.borrow() == Some(*lease))
            && self.stop.as_ref().is_none_or(|rx| !*rx.borrow())
    }
}

/// [`converge`], starting each Docker action only while `gate` is open.
pub async fn converge_gated(
    store: &Store,
    pool: &HostPool,
    app: &Versioned<App>,
    hosts: &[Host],
    gate: &Gate,
) -> Result<Outcome, StoreError> {
    let spec_app = &app.value;
    let (ns, name) = (spec_app.namespace().to_string(), spec_app.metadata.name.clone());
    let mut timings = Timings::start();
    // Unreadable status (etcd down) fails the reconcile: re-resolving images without it could roll a moved tag.
    // A corrupt status (written by hand) is replaced rather than blocking the app for ever.
    let previous: Option<AppStatus> = match store.get_status(&ns, &name).await {
        Ok(p) => p,
        Err(StoreError::Corrupt { key, reason }) => {
            warn!(key = %key, reason = %reason, "ignoring an unreadable status");
            None
        }
        Err(e) => return Err(e),
    };
    // A rolled-back rollout of this very generation is not attempted again: run the last Ready one.
    let failure = previous.as_ref().and_then(|p| p.rollout_failure.clone()).filter(|f| f.applies_to(spec_app));
    let last_ready: Option<LastReady> = match &failure {
        Some(_) => read_last_ready(store, &ns, &name).await?,
        None => None,
    };
    timings.mark("status");
    let observation = observe(pool, hosts).await;
    timings.mark("observe");
    let effective = match &last_ready {
        Some(lr) => std::borrow::Cow::Owned(lr.app(spec_app)),
        None => std::borrow::Cow::Borrowed(spec_app),
    };
    let progress = Progress::default();
    let mut run = Run::new(&effective, &observation, pool, &progress);
    run.gate = gate.clone();
    run.previous_hosts = previous.as_ref().map(|p| {
        p.hosts.iter().filter(|(_, h)| h.containers.iter().any(|c| c.state != "missing")).map(|(n, _)| n.clone()).collect()
    });
    let images = match &last_ready {
        Some(lr) => Ok(lr.images.clone()),
        None => resolve_images(&effective, hosts, previous.as_ref(), &observation.clients).await,
    };
    match images {
        Ok(images) => {
            timings.mark("resolve");
            run.images = images;
            run.desired = plan::desired(&effective, hosts, &run.images).unwrap_or_default();
            match plan::plan(&effective, hosts, &run.images, &observation.hosts) {
                Ok(mut p) => {
                    timings.mark("plan");
                    if failure.is_some() && last_ready.is_none() {
                        rollout::hold_replaces(&mut p, &observation.hosts);
                    }
                    // Whatever berth does on a host makes that host's cached observation stale.
                    let touched: BTreeSet<&str> = p.actions().map(|a| a.host()).collect();
                    for h in touched {
                        pool.cache(h).mark_dirty();
                    }
                    // While health gates wait, the status says what for (and Blocked the moment one gives up).
                    let done = tokio::sync::Notify::new();
                    let (pinned, prev, ns, name) = (run.images.clone(), previous.as_ref(), &ns, &name);
                    // A status already settled for this very App (Blocked, Degraded) is not turned back into
                    // Progressing while the same gate is checked again: only a new verdict replaces it.
                    let settled_before = prev.is_some_and(|p| p.settled_for(spec_app) && p.phase != Phase::Ready);
                    let report = progress.report(&done, |phase, reason, message| {
                        let interim =
                            progress::interim(prev, spec_app, &pinned, failure.as_ref(), (phase, reason, message));
                        let write = !(settled_before && phase == Phase::Progressing);
                        async move {
                            if !write {
                                return;
                            }
                            if let Err(e) = store.put_status(ns, name, &interim).await {
                                warn!(error = %e, "cannot write the progress status");
                            }
                        }
                    });
                    let execute = async {
                        run.execute(&p).await;
                        done.notify_one();
                    };
                    futures::join!(execute, report);
                    timings.mark("execute");
                }
                Err(e) => run.fatal = Some(format!("cannot plan: {e}")),
            }
        }
        Err(e) => run.fatal = Some(e),
    }
    let after = observe(pool, hosts).await;
    timings.mark("observe-after");
    let mut status = run.status(&after);
    let failed_now = failure.is_none().then(|| run.rollbacks.first().cloned()).flatten();
    let settled = match (&failure, failed_now) {
        (Some(f), _) => {
            let others_fine = status.phase == Phase::Ready;
            rollout_failed(&mut status, f.clone());
            others_fine
        }
        (None, Some(first)) => {
            let running_generation = read_last_ready(store, &ns, &name).await?.map(|lr| lr.generation);
            let record = RolloutFailure {
                generation: spec_app.metadata.generation.unwrap_or(0),
                repin_requested_at: spec_app.repin_requested_at().map(str::to_string),
                retry_requested_at: spec_app.rollout_retry_requested_at().map(str::to_string),
                host: first.host,
                container: first.container,
                component: first.component,
                reason: first.why,
                at: now_rfc3339(),
                running_generation,
            };
            warn!(app = %name, namespace = %ns, "{}", record.describe());
            rollout_failed(&mut status, record);
            false
        }
        (None, None) => status.phase == Phase::Ready,
    };
    if failure.is_none() && status.phase == Phase::Ready && spec_app.metadata.deletion_timestamp.is_none() {
        let stored: Option<LastReady> = read_last_ready(store, &ns, &name).await?;
        if !stored.is_some_and(|lr| lr.same_as(spec_app, &run.images)) {
            store.put_last_ready(&ns, &name, &LastReady::of(spec_app, &run.images)).await?;
        }
    }
    let deleting = spec_app.metadata.deletion_timestamp.is_some();
    let finalized = deleting && status.phase == Phase::Ready && nothing_left(spec_app, &after, run.previous_hosts.as_ref());
    if finalized {
        store.remove_app_keys(&ns, &name, app.mod_revision).await?;
        info!(app = %name, namespace = %ns, "app deleted: containers removed, keys removed");
    } else {
        store.put_status(&ns, &name, &status).await?;
        if run.interrupted {
            info!(app = %name, namespace = %ns, "converge interrupted: status written, the next leader carries on");
        }
    }
    timings.mark("status-write");
    tracing::debug!(app = %name, namespace = %ns, steps = %timings, "converge timings");
    Ok(Outcome { status, actions: run.counts, finalized, settled })
}

/// The last Ready record; a corrupt one (written by hand) counts as none rather than blocking the App.
async fn read_last_ready(store: &Store, ns: &str, name: &str) -> Result<Option<LastReady>, StoreError> {
    match store.get_last_ready(ns, name).await {
        Ok(lr) => Ok(lr),
        Err(StoreError::Corrupt { key, reason }) => {
            warn!(key = %key, reason = %reason, "ignoring an unreadable last Ready record");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Puts a failed rollout on top of a status: Degraded, reason RolloutFailed, whatever else the
/// converge found still said after it.
fn rollout_failed(status: &mut AppStatus, failure: RolloutFailure) {
    let mut message = failure.describe();
    if status.phase != Phase::Ready && !status.message.is_empty() {
        message = format!("{message}; {}", status.message);
    }
    if status.phase != Phase::Blocked {
        status.phase = Phase::Degraded;
    }
    for c in status.conditions.iter_mut().filter(|c| c.kind == "Ready") {
        c.status = "False".into();
        c.reason = "RolloutFailed".into();
        c.message = message.clone();
    }
    status.message = message;
    status.rollout_failure = Some(failure);
}

/// Milliseconds spent in each step of one converge, logged at debug level so a slow reaction can be
/// taken apart without a profiler (`BERTH_LOG=berth=debug`).
struct Timings {
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Timings {
    fn start() -> Timings {
        Timings { last: Instant::now(), steps: Vec::new() }
    }

    fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        self.steps.push((step, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (step, took)) in self.steps.iter().enumerate() {
            write!(f, "{}{step}={:.1}ms", if i == 0 { "" } else { " " }, took.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

/// Whether no container or network of the app remains on any host. An unreachable host counts as
/// "maybe something left" when the last status saw the app there, or when there is no last status.
fn nothing_left(app: &App, after: &Observation, previous_hosts: Option<&BTreeSet<String>>) -> bool {
    let ns = app.namespace();
    let blind = after.errors.keys().any(|h| previous_hosts.is_none_or(|p| p.contains(h)));
    !blind
        && after.hosts.values().all(|h| {
            !h.containers.iter().any(|c| labels::belongs_to(&c.labels, &app.metadata.name, ns))
                && !h.networks.iter().any(|n| labels::belongs_to(&n.labels, &app.metadata.name, ns))
        })
}

/// The mutable record of one converge: errors per host, blocked roles, rollbacks, action counts.
struct Run<'a> {
    app: &'a App,
    /// Where pinned images already seen on a host are remembered across converges, so a change on a
    /// host that has the image goes straight to the create (a create that finds it gone pulls it).
    pool: &'a HostPool,
    clients: &'a BTreeMap<String, HostClient>,
    images: BTreeMap<String, String>,
    host_errors: BTreeMap<String, String>,
    blocked: Vec<String>,
    fatal: Option<String>,
    counts: BTreeMap<String, u64>,
    health_timeout: Duration,
    /// One pull at a time per host: roles run in parallel and may need the same image on one host.
    pull_locks: BTreeMap<String, tokio::sync::Mutex<()>>,
    /// (host, image) pairs already made sure of in this converge: the plan's Pull and every create
    /// after it look only once.
    images_ready: std::sync::Mutex<BTreeSet<(String, String)>>,
    /// Networks known to exist per host; roles run in parallel, so each create makes sure of its own.
    networks: std::sync::Mutex<BTreeSet<(String, String)>>,
    /// One network creation at a time per host: Docker (API < 1.44) does not refuse a second network of
    /// the same name, and two roles creating it at once leave every later start "ambiguous".
    network_locks: BTreeMap<String, tokio::sync::Mutex<()>>,
    /// Closed when the operator loses the lease: no new Docker action starts after that.
    gate: Gate,
    /// Hosts where the last status saw containers of this app; `None` when there is no last status.
    previous_hosts: Option<BTreeSet<String>>,
    /// Every container the spec wants, built once per converge for the plan's gates and the status.
    desired: Vec<DesiredContainer>,
    /// Replaces that were rolled back in this converge, in the order they happened.
    rollbacks: Vec<Rollback>,
    /// True when the gate closed under a running action: the converge stopped short, by design.
    interrupted: bool,
    /// What the health waits are waiting on right now, for the interim status.
    progress: &'a Progress,
    /// Health waits that gave up in this converge, by (host, container): a gate on the same
    /// container fails at once instead of waiting a second health timeout.
    failed_waits: std::sync::Mutex<BTreeMap<(String, String), String>>,
}

/// One replace that was rolled back: the new container never turned healthy.
#[derive(Debug, Clone)]
struct Rollback {
    host: String,
    container: String,
    component: String,
    /// The last health output, or the Docker error.
    why: String,
}


impl<'a> Run<'a> {
    fn new(app: &'a App, obs: &'a Observation, pool: &'a HostPool, progress: &'a Progress) -> Run<'a> {
        let health_timeout = spec::parse_duration(&app.spec.rollout.health_timeout).unwrap_or(Duration::from_secs(60));
        Run {
            app,
            clients: &obs.clients,
            images: BTreeMap::new(),
            host_errors: obs.errors.clone(),
            blocked: Vec::new(),
            fatal: None,
            counts: BTreeMap::new(),
            health_timeout,
            pull_locks: obs.clients.keys().map(|h| (h.clone(), tokio::sync::Mutex::new(()))).collect(),
            images_ready: std::sync::Mutex::new(BTreeSet::new()),
            pool,
            network_locks: obs.clients.keys().map(|h| (h.clone(), tokio::sync::Mutex::new(()))).collect(),
            networks: std::sync::Mutex::new(
                obs.hosts
                    .iter()
                    .flat_map(|(h, o)| o.networks.iter().map(move |n| (h.clone(), n.name.clone())))
                    .collect(),
            ),
            gate: Gate::open(),
            previous_hosts: None,
            desired: Vec::new(),
            rollbacks: Vec::new(),
            interrupted: false,
            progress,
            failed_waits: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    async fn execute(&mut self, plan: &Plan) {
        // Phase 1: accessories, every host at once, each host's actions in order. Meanwhile the app
        // network is made on the hosts whose roles need it, so the role phase does not wait for it
        // (a failure here is left to that phase's own CreateNetwork action, which reports it).
        let early: BTreeSet<(&str, &str)> = plan
            .roles
            .iter()
            .flat_map(|r| r.batches.iter().flatten())
            .filter_map(|a| match a {
                Action::CreateNetwork { host, network } => Some((host.as_str(), network.as_str())),
                _ => None,
            })
            .collect();
        let this: &Run = self;
        let (accessories, _) = futures::join!(
            this.run_batch(&plan.accessories),
            join_all(early.into_iter().map(|(host, network)| async move {
                if let Some(c) = this.clients.get(host) {
                    let _ = this.ensure_network(c, network).await;
                }
            }))
        );
        self.absorb(accessories);
        // Phase 2: every role, each behind its accessories' health gate.
        let this: &Run = self;
        let gates: BTreeSet<(String, String)> =
            plan.roles.iter().flat_map(|r| r.waits_for.iter().cloned()).collect();
        let gate_results: BTreeMap<(String, String), Result<(), WaitFailure>> =
            join_all(gates.into_iter().map(|(host, container)| async move {
                let r = this.wait_ready_by_name(&host, &container).await;
                if let Err(e @ WaitFailure::Failed(_)) = &r {
                    // Say Blocked now, not when every other role is done.
                    for step in plan.roles.iter().filter(|s| s.waits_for.contains(&(host.clone(), container.clone()))) {
                        this.progress.block(format!("role {} waits for {e}", step.role));
                    }
                }
                ((host, container), r)
            }))
            .await
            .into_iter()
            .collect();
        let role_results = join_all(plan.roles.iter().map(|step| {
            let failures = step.waits_for.iter().filter_map(|k| gate_results.get(k).and_then(|r| r.as_ref().err()));
            let (cut, failed): (Vec<&WaitFailure>, Vec<&WaitFailure>) =
                failures.partition(|f| matches!(f, WaitFailure::Interrupted(_)));
            async move {
                if !failed.is_empty() {
                    let why: Vec<String> = failed.iter().map(|f| f.to_string()).collect();
                    return RoleResult::Blocked(format!("role {} waits for {}", step.role, why.join("; ")));
                }
                if !cut.is_empty() {
                    // The wait was cut short (shutdown, lost lease): not a verdict on the accessory.
                    return RoleResult::Done(Done { interrupted: true, ..Done::default() });
                }
                let mut result = RoleResult::default();
                for batch in &step.batches {
                    let batch_result = this.run_batch(batch).await;
                    result.merge(batch_result);
                    if result.rolled_back_any() {
                        break;
                    }
                }
                result
            }
        }))
        .await;
        for r in role_results {
            self.absorb(r);
        }
        // Phase 3: prune, on every reachable host.
        let before = self.host_errors.clone();
        self.run_host_sequences(&plan.prune).await;
        let pruned = plan
            .prune
            .iter()
            .filter(|a| matches!(a, Action::Remove { .. }))
            .filter(|a| self.host_errors.get(a.host()) == before.get(a.host()))
            .count() as u64;
        if pruned > 0 {
            *self.counts.entry("pruned".into()).or_default() += pruned;
        }
    }

    fn absorb(&mut self, r: RoleResult) {
        match r {
            RoleResult::Blocked(msg) => self.blocked.push(msg),
            RoleResult::Done(Done { errors, rolled_back, interrupted, counts }) => {
                for (h, e) in errors {
                    self.host_errors.insert(h, e);
                }
                self.interrupted |= interrupted;
                self.rollbacks.extend(rolled_back);
                for (k, v) in counts {
                    *self.counts.entry(k).or_default() += v;
                }
            }
        }
    }

    /// Runs actions grouped by host: hosts in parallel, one host's actions in order, stopping at its first error.
    async fn run_host_sequences(&mut self, actions: &[Action]) {
        let r = self.run_batch(actions).await;
        self.absorb(r);
    }

    async fn run_batch(&self, actions: &[Action]) -> RoleResult {
        let mut by_host: BTreeMap<&str, Vec<&Action>> = BTreeMap::new();
        for a in actions {
            by_host.entry(a.host()).or_default().push(a);
        }
        let results = join_all(by_host.into_iter().map(|(host, acts)| async move {
            let mut counts = BTreeMap::new();
            let Some(client) = self.clients.get(host) else {
                return (host.to_string(), Err(ActionFailure::Error("host not connected".into())), counts);
            };
            for a in acts {
                if let Err(e) = self.exec(client, a, &mut counts).await {
                    return (host.to_string(), Err(e), counts);
                }
            }
            (host.to_string(), Ok(()), counts)
        }))
        .await;
        let mut out = RoleResult::default();
        for (host, r, counts) in results {
            out.merge(RoleResult::Done(Done { counts, ..Done::default() }));
            match r {
                Ok(()) => {}
                Err(ActionFailure::Error(e)) => {
                    warn!(host = %host, error = %e, "action failed");
                    out.merge(RoleResult::error(&host, e));
                }
                Err(ActionFailure::Interrupted(e)) => {
                    info!(host = %host, "{e}");
                    out.merge(RoleResult::Done(Done { interrupted: true, ..Done::default() }));
                }
                Err(ActionFailure::RolledBack(rb, e)) => {
                    warn!(host = %host, error = %e, "rollout rolled back");
                    out.merge(RoleResult::Done(Done {
                        errors: BTreeMap::from([(host.clone(), e)]),
                        rolled_back: vec![rb],
                        ..Done::default()
                    }));
                }
            }
        }
        out
    }

    /// One plan action on one host, logged and counted.
    async fn exec(&self, c: &HostClient, action: &Action, counts: &mut BTreeMap<String, u64>) -> Result<(), ActionFailure> {
        let (app, ns) = (&self.app.metadata.name, self.app.namespace());
        if !self.gate.is_open() {
            return Err(ActionFailure::Interrupted(format!("{action}: not started, the operator is stopping or no longer leads")));
        }
        info!(app = %app, namespace = %ns, "{action}");
        let mut count = |verb: &str| {
            *counts.entry(verb.to_string()).or_default() += 1;
            crate::metrics::global().container_actions.with_label_values(&[c.name.as_str(), verb]).inc();
        };
        let err = |e: DockerError| ActionFailure::Error(e.to_string());
        match action {
            Action::Pull { image, .. } => {
                if self.ensure_image(c, image).await.map_err(err)? {
                    count("pull");
                }
            }
            Action::CreateNetwork { network, .. } => {
                self.ensure_network(c, network).await.map_err(err)?;
            }
            Action::Create { container, .. } => {
                if self.ensure_image(c, &container.image).await.map_err(err)? {
                    count("pull");
                }
                self.ensure_network(c, &container.network).await.map_err(err)?;
                let (created, pulled) = self.create(c, container).await;
                if pulled {
                    count("pull");
                }
                let id = created.map_err(err)?;
                count("create");
                ops::start(c, &id, &container.name).await.map_err(err)?;
                count("start");
                self.wait_ready(c, &id, &container.name).await?;
            }
            Action::Start { id, name, .. } => {
                ops::start(c, id, name).await.map_err(err)?;
                count("start");
                self.wait_ready(c, id, name).await?;
            }
            Action::Stop { id, name, .. } => {
                ops::stop(c, id, name).await.map_err(err)?;
                count("stop");
            }
            Action::Remove { id, name, .. } => {
                ops::remove(c, id, name).await.map_err(err)?;
                count("remove");
            }
            Action::RemoveNetwork { network, .. } => {
                ops::remove_network(c, network).await.map_err(err)?;
            }
            Action::Replace { old_id, old_name, new, .. } => {
                self.replace(c, old_id, old_name, new, &mut count).await?;
            }
        }
        Ok(())
    }

    /// Rolling replace on one host: stop old, create and start new, wait healthy, remove old;
    /// on failure remove new and start old again.
    async fn replace(
        &self,
        c: &HostClient,
        old_id: &str,
        old_name: &str,
        new: &DesiredContainer,
        count: &mut impl FnMut(&str),
    ) -> Result<(), ActionFailure> {
        let err = |e: DockerError| ActionFailure::Error(e.to_string());
        // Pull before stopping the old container, so the host is down only between stop and start.
        if self.ensure_image(c, &new.image).await.map_err(err)? {
            count("pull");
        }
        self.ensure_network(c, &new.network).await.map_err(err)?;
        ops::stop(c, old_id, old_name).await.map_err(err)?;
        count("stop");
        let attempt = async {
            let (created, pulled) = self.create(c, new).await;
            if pulled {
                count("pull");
            }
            let id = created.map_err(|e| (None, WaitFailure::Failed(e.to_string())))?;
            count("create");
            ops::start(c, &id, &new.name).await.map_err(|e| (Some(id.clone()), WaitFailure::Failed(e.to_string())))?;
            count("start");
            self.wait_ready(c, &id, &new.name).await.map_err(|e| (Some(id.clone()), e))?;
            Ok::<String, (Option<String>, WaitFailure)>(id)
        };
        match attempt.await {
            Ok(_) => {
                ops::remove(c, old_id, old_name).await.map_err(err)?;
                count("remove");
                Ok(())
            }
            Err((new_id, why)) => {
                if let Some(id) = new_id {
                    let _ = ops::remove(c, &id, &new.name).await;
                    count("remove");
                }
                let restarted = ops::start(c, old_id, old_name).await;
                count("start");
                let tail = match restarted {
                    Ok(()) => format!("{old_name} restored"),
                    Err(e) => format!("restoring {old_name} failed too: {e}"),
                };
                let why = match why {
                    // Stopped short by a shutdown or a lost lease: the new version never had its chance,
                    // so this is no failed rollout; the next leader tries it.
                    WaitFailure::Interrupted(e) => return Err(ActionFailure::Interrupted(format!("{e}; {tail}"))),
                    WaitFailure::Failed(why) => why,
                };
                let message = format!("rollout of {} on {} rolled back: {why}; {tail}", new.name, c.name);
                let component = format!("{}/{}", new.component.kind(), new.component.name());
                let rollback = Rollback { host: c.name.clone(), container: new.name.clone(), component, why };
                Err(ActionFailure::RolledBack(rollback, message))
            }
        }
    }

    /// Pulls an image unless present; the plan's Pull and every create go through here, so two roles
    /// on one host never race on the same pull.
    async fn ensure_image(&self, c: &HostClient, image: &str) -> Result<bool, DockerError> {
        let key = (c.name.clone(), image.to_string());
        let _guard = match self.pull_locks.get(&c.name) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        if self.images_ready.lock().expect("image set").contains(&key) {
            return Ok(false);
        }
        // Pinned references only: a digest names one image for ever, a tag may move.
        let pinned = image.contains("@sha256:");
        if pinned && self.pool.cache(&c.name).has_image(image) {
            self.images_ready.lock().expect("image set").insert(key);
            return Ok(false);
        }
        let pulled = ops::pull(c, image).await?;
        if pinned {
            self.pool.cache(&c.name).add_image(image);
        }
        self.images_ready.lock().expect("image set").insert(key);
        Ok(pulled)
    }

    /// Creates a container; when the host turns out not to hold its image after all (a forced
    /// `docker rmi` since berth saw it), pulls the image and creates again. Says whether it pulled.
    async fn create(&self, c: &HostClient, container: &DesiredContainer) -> (Result<String, DockerError>, bool) {
        match ops::create(c, container).await {
            Err(e) if e.status == Some(404) && e.message.contains("image") => {
                warn!(host = %c.name, image = %container.image, "image gone from the host: pulling it again");
                self.forget_image(c, &container.image);
                match self.ensure_image(c, &container.image).await {
                    Ok(pulled) => (ops::create(c, container).await, pulled),
                    Err(e) => (Err(e), false),
                }
            }
            r => (r, false),
        }
    }

    /// Drops an image from what this converge believes a host holds, so the next use looks again.
    fn forget_image(&self, c: &HostClient, image: &str) {
        self.images_ready.lock().expect("image set").remove(&(c.name.clone(), image.to_string()));
        self.pool.cache(&c.name).forget_image(image);
    }

    /// Creates the app network on a host unless it is known to exist, one creation at a time per host.
    async fn ensure_network(&self, c: &HostClient, network: &str) -> Result<(), DockerError> {
        let key = (c.name.clone(), network.to_string());
        let _guard = match self.network_locks.get(&c.name) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        if self.networks.lock().expect("network set").contains(&key) {
            return Ok(());
        }
        let (app, ns) = (&self.app.metadata.name, self.app.namespace());
        ops::create_network(c, network, &labels::network_labels(app, ns)).await?;
        self.networks.lock().expect("network set").insert(key);
        Ok(())
    }

    /// A gate: waits for an accessory's container unless this converge already saw that wait give up.
    async fn wait_ready_by_name(&self, host: &str, container: &str) -> Result<(), WaitFailure> {
        let known = self.failed_waits.lock().expect("failed waits").get(&(host.to_string(), container.to_string())).cloned();
        if let Some(e) = known {
            return Err(WaitFailure::Failed(e));
        }
        match self.clients.get(host) {
            Some(c) => self.wait_ready(c, container, container).await,
            None => Err(WaitFailure::Failed(format!("{container} on {host}: host unreachable"))),
        }
    }

    /// Waits until the container runs and, if it has a healthcheck, is healthy; the error carries the
    /// last health output so a user sees why. The wait shows in the interim status while it lasts,
    /// and ends early (interrupted) when the gate closes.
    async fn wait_ready(&self, c: &HostClient, id: &str, name: &str) -> Result<(), WaitFailure> {
        let cut_short = || {
            WaitFailure::Interrupted(format!(
                "wait for {name} on {} cut short: the operator is stopping or no longer leads",
                c.name
            ))
        };
        if !self.gate.is_open() {
            return Err(cut_short());
        }
        let what = match self.desired.iter().find(|d| d.name == name) {
            Some(d) => format!("{}/{} on {}", d.component.kind(), d.component.name(), c.name),
            None => format!("{name} on {}", c.name),
        };
        let deadline = Instant::now() + self.health_timeout;
        let mut wait = None;
        let mut last;
        loop {
            match ops::inspect_health(c, id).await {
                Ok((ContainerState::Running, None | Some(Health::Healthy), _)) => return Ok(()),
                Ok((state, health, output)) => {
                    last = match (health, output) {
                        (Some(h), Some(o)) if !o.is_empty() => format!("{state:?}, {h:?}: {o}").to_lowercase(),
                        (Some(h), _) => format!("{state:?}, {h:?}").to_lowercase(),
                        (None, _) => format!("{state:?}").to_lowercase(),
                    };
                    if matches!(state, ContainerState::Exited | ContainerState::Dead) && health.is_none() {
                        return Err(self.gave_up(c, name, format!("{name} on {} exited", c.name)));
                    }
                }
                Err(e) => last = e.to_string(),
            }
            let handle = wait.get_or_insert_with(|| {
                info!(app = %self.app.metadata.name, namespace = %self.app.namespace(), "waiting for {what} to turn healthy");
                self.progress.start_wait(what.clone(), self.health_timeout)
            });
            handle.update(last.split(':').next().unwrap_or_default());
            if Instant::now() >= deadline {
                let why = format!(
                    "{name} on {} not healthy within {}: {last}",
                    c.name,
                    humantime::format_duration(self.health_timeout)
                );
                return Err(self.gave_up(c, name, why));
            }
            if !self.gate.is_open() {
                return Err(cut_short());
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Remembers a wait that gave up, so gates on the same container do not wait again.
    fn gave_up(&self, c: &HostClient, name: &str, why: String) -> WaitFailure {
        self.failed_waits.lock().expect("failed waits").insert((c.name.clone(), name.to_string()), why.clone());
        WaitFailure::Failed(why)
    }

    /// Whether a host's trouble is this app's trouble: the spec places something of the app there, or the
    /// last status saw the app's containers there (leftovers to prune). Without a last status every host
    /// matters, since nothing says where leftovers may be.
    fn matters(&self, host: &str, desired: &[DesiredContainer]) -> bool {
        desired.iter().any(|d| d.host == host)
            || crate::store::app_uses_host(self.app, host)
            || self.previous_hosts.as_ref().is_none_or(|p| p.contains(host))
    }

    /// The status document from the state after the converge.
    fn status(&self, after: &Observation) -> AppStatus {
        let app = self.app;
        let (name, ns) = (&app.metadata.name, app.namespace());
        let generation = app.metadata.generation.unwrap_or(0);
        let desired = &self.desired;
        let mut host_status: BTreeMap<String, HostStatus> = BTreeMap::new();
        for (host, obs) in &after.hosts {
            let mut hs = HostStatus { reachable: obs.reachable, ..Default::default() };
            for c in obs.containers.iter().filter(|c| labels::belongs_to(&c.labels, name, ns)) {
                let component = labels::component_of(&c.labels).map(|k| format!("{}/{}", k.kind(), k.name()));
                hs.containers.push(ContainerStatus {
                    name: c.name.clone(),
                    id: c.id.clone(),
                    component: component.unwrap_or_default(),
                    image: c.image.clone(),
                    state: format!("{:?}", c.state).to_lowercase(),
                    health: c.health.map(|h| format!("{h:?}").to_lowercase()),
                    hash: labels::config_hash_of(&c.labels).unwrap_or_default().to_string(),
                });
            }
            if let Some(e) = self.host_errors.get(host).or(after.errors.get(host)) {
                hs.error = Some(e.clone());
            }
            let wanted_here = desired.iter().any(|d| &d.host == host);
            let has_any = !hs.containers.is_empty();
            if wanted_here || has_any || (hs.error.is_some() && self.matters(host, desired)) {
                host_status.insert(host.clone(), hs);
            }
        }
        for d in desired {
            let hs = host_status.entry(d.host.clone()).or_insert_with(|| HostStatus {
                reachable: after.hosts.get(&d.host).is_some_and(|h| h.reachable),
                ..Default::default()
            });
            if hs.reachable && !hs.containers.iter().any(|c| c.name == d.name) {
                hs.containers.push(ContainerStatus {
                    name: d.name.clone(),
                    id: String::new(),
                    component: format!("{}/{}", d.component.kind(), d.component.name()),
                    image: d.image.clone(),
                    state: "missing".into(),
                    health: None,
                    hash: d.hash.clone(),
                });
            }
        }
        let missing: Vec<String> = desired
            .iter()
            .filter(|d| {
                !after.hosts.get(&d.host).is_some_and(|h| {
                    h.containers.iter().any(|c| {
                        c.name == d.name
                            && c.state == ContainerState::Running
                            && matches!(c.health, None | Some(Health::Healthy))
                    })
                })
            })
            .map(|d| format!("{} on {}", d.name, d.host))
            .collect();
        let unwanted = after.hosts.values().flat_map(|h| h.containers.iter()).filter(|c| {
            labels::belongs_to(&c.labels, name, ns) && !desired.iter().any(|d| d.name == c.name)
        });
        let unwanted: Vec<String> = unwanted.map(|c| c.name.clone()).collect();
        let mut errors: Vec<String> = Vec::new();
        if let Some(f) = &self.fatal {
            errors.push(f.clone());
        }
        let relevant_hosts: BTreeSet<&str> = host_status.keys().map(String::as_str).collect();
        for (h, e) in self.host_errors.iter().chain(after.errors.iter()) {
            if relevant_hosts.contains(h.as_str()) || self.matters(h, desired) {
                let line = if e.starts_with(&format!("host {h}:")) { e.clone() } else { format!("host {h}: {e}") };
                if !errors.contains(&line) && !errors.iter().any(|x| x.contains(e.as_str())) {
                    errors.push(line);
                }
            }
        }
        let (phase, reason, message) = if !self.blocked.is_empty() {
            (Phase::Blocked, "AccessoryNotReady", self.blocked.join("; "))
        } else if self.interrupted {
            let why = "converge interrupted: the operator is stopping or no longer leads; the next leader carries on";
            (Phase::Progressing, "Interrupted", why.to_string())
        } else if !errors.is_empty() {
            (Phase::Degraded, "ConvergeFailed", errors.join("; "))
        } else if missing.is_empty() && unwanted.is_empty() {
            (Phase::Ready, "Converged", "every container runs its desired config".to_string())
        } else {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("not ready yet: {}", missing.join(", ")));
            }
            if !unwanted.is_empty() {
                parts.push(format!("still to remove: {}", unwanted.join(", ")));
            }
            (Phase::Progressing, "Converging", parts.join("; "))
        };
        let now = now_rfc3339();
        AppStatus {
            observed_generation: generation,
            phase,
            conditions: vec![Condition {
                kind: "Ready".into(),
                status: if phase == Phase::Ready { "True" } else { "False" }.into(),
                reason: reason.into(),
                message: message.clone(),
                last_transition_time: now.clone(),
                observed_generation: generation,
            }],
            images: self.images.clone(),
            repin_requested_at: app.repin_requested_at().map(str::to_string),
            hosts: host_status,
            last_converged: Some(now),
            message,
            rollout_retry_requested_at: app.rollout_retry_requested_at().map(str::to_string),
            rollout_failure: None,
        }
    }
}

enum ActionFailure {
    Error(String),
    /// A replace whose new container never turned healthy, undone; the message says it all.
    RolledBack(Rollback, String),
    /// The gate closed (shutdown, lost lease): stopped short by design, not a failure of the app.
    Interrupted(String),
}

/// Why a health wait ended without a healthy container.
enum WaitFailure {
    Failed(String),
    Interrupted(String),
}

impl std::fmt::Display for WaitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitFailure::Failed(e) | WaitFailure::Interrupted(e) => f.write_str(e),
        }
    }
}

impl From<WaitFailure> for ActionFailure {
    fn from(w: WaitFailure) -> ActionFailure {
        match w {
            WaitFailure::Failed(e) => ActionFailure::Error(e),
            WaitFailure::Interrupted(e) => ActionFailure::Interrupted(e),
        }
    }
}

/// What a role (or a batch of actions) ended with.
enum RoleResult {
    Blocked(String),
    Done(Done),
}

/// What the actions of a role (or a batch) did, when no gate blocked it.
#[derive(Default)]
struct Done {
    errors: BTreeMap<String, String>,
    rolled_back: Vec<Rollback>,
    interrupted: bool,
    counts: BTreeMap<String, u64>,
}

impl Default for RoleResult {
    fn default() -> Self {
        RoleResult::Done(Done::default())
    }
}

impl RoleResult {
    fn error(host: &str, e: String) -> RoleResult {
        RoleResult::Done(Done { errors: BTreeMap::from([(host.to_string(), e)]), ..Done::default() })
    }

    fn merge(&mut self, other: RoleResult) {
        match (self, other) {
            (RoleResult::Done(mine), RoleResult::Done(theirs)) => {
                mine.errors.extend(theirs.errors);
                mine.rolled_back.extend(theirs.rolled_back);
                mine.interrupted |= theirs.interrupted;
                for (k, v) in theirs.counts {
                    *mine.counts.entry(k).or_default() += v;
                }
            }
            (me, RoleResult::Blocked(m)) => *me = RoleResult::Blocked(m),
            (RoleResult::Blocked(_), _) => {}
        }
    }

    fn rolled_back_any(&self) -> bool {
        matches!(self, RoleResult::Done(d) if !d.rolled_back.is_empty())
    }
}
