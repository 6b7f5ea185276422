//! Executes a plan against the hosts: accessories first, health gates, rolling replaces, prune,
//! then writes the App's status. This is the one code path of `berth converge` and the operator.

pub mod pool;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tracing::{info, warn};

pub use pool::HostPool;
pub use status::{AppStatus, Condition, ContainerStatus, HostStatus, Phase};

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
/// loses the leader lease, so a deposed leader starts nothing new.
#[derive(Clone)]
pub struct Gate(Option<(tokio::sync::watch::Receiver<Option<i64>>, i64)>);

impl Gate {
    /// Always open (one-shot `berth converge`).
    pub fn open() -> Gate {
        Gate(None)
    }

    /// Open while the watched leadership holds `lease`.
    pub fn leader(rx: tokio::sync::watch::Receiver<Option<i64>>, lease: i64) -> Gate {
        Gate(Some((rx, lease)))
    }

    pub fn is_open(&self) -> bool {
        self.0.as_ref().is_none_or(|(rx, lease)| *rx.borrow() == Some(*lease))
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
    timings.mark("status");
    let observation = observe(pool, hosts).await;
    timings.mark("observe");
    let mut run = Run::new(spec_app, &observation, pool);
    run.gate = gate.clone();
    run.previous_hosts = previous.as_ref().map(|p| {
        p.hosts.iter().filter(|(_, h)| h.containers.iter().any(|c| c.state != "missing")).map(|(n, _)| n.clone()).collect()
    });
    match resolve_images(spec_app, hosts, previous.as_ref(), &observation.clients).await {
        Ok(images) => {
            timings.mark("resolve");
            run.images = images;
            match plan::plan(spec_app, hosts, &run.images, &observation.hosts) {
                Ok(p) => {
                    timings.mark("plan");
                    // Whatever berth does on a host makes that host's cached observation stale.
                    let touched: BTreeSet<&str> = p.actions().map(|a| a.host()).collect();
                    for h in touched {
                        pool.cache(h).mark_dirty();
                    }
                    run.execute(&p).await;
                    timings.mark("execute");
                }
                Err(e) => run.fatal = Some(format!("cannot plan: {e}")),
            }
        }
        Err(e) => run.fatal = Some(e),
    }
    let after = observe(pool, hosts).await;
    timings.mark("observe-after");
    let status = run.status(hosts, &after);
    let deleting = spec_app.metadata.deletion_timestamp.is_some();
    let finalized = deleting && status.phase == Phase::Ready && nothing_left(spec_app, &after, run.previous_hosts.as_ref());
    if finalized {
        store.remove_app_keys(&ns, &name, app.mod_revision).await?;
        info!(app = %name, namespace = %ns, "app deleted: containers removed, keys removed");
    } else {
        store.put_status(&ns, &name, &status).await?;
    }
    timings.mark("status-write");
    tracing::debug!(app = %name, namespace = %ns, steps = %timings, "converge timings");
    Ok(Outcome { status, actions: run.counts, finalized })
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
    degraded: Vec<String>,
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
}

impl<'a> Run<'a> {
    fn new(app: &'a App, obs: &'a Observation, pool: &'a HostPool) -> Run<'a> {
        let health_timeout = spec::parse_duration(&app.spec.rollout.health_timeout).unwrap_or(Duration::from_secs(60));
        Run {
            app,
            clients: &obs.clients,
            images: BTreeMap::new(),
            host_errors: obs.errors.clone(),
            blocked: Vec::new(),
            degraded: Vec::new(),
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
        let gate_results: BTreeMap<(String, String), Result<(), String>> =
            join_all(gates.into_iter().map(|(host, container)| async move {
                let r = this.wait_ready_by_name(&host, &container).await;
                ((host, container), r)
            }))
            .await
            .into_iter()
            .collect();
        let role_results = join_all(plan.roles.iter().map(|step| {
            let failed: Vec<String> = step
                .waits_for
                .iter()
                .filter_map(|k| gate_results.get(k).and_then(|r| r.as_ref().err()).cloned())
                .collect();
            async move {
                if !failed.is_empty() {
                    return RoleResult::Blocked(format!("role {} waits for {}", step.role, failed.join("; ")));
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
            RoleResult::Done { errors, rolled_back, counts } => {
                for (h, e) in errors {
                    self.host_errors.insert(h, e);
                }
                self.degraded.extend(rolled_back);
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
            out.merge(RoleResult::Done { errors: BTreeMap::new(), rolled_back: Vec::new(), counts });
            match r {
                Ok(()) => {}
                Err(ActionFailure::Error(e)) => {
                    warn!(host = %host, error = %e, "action failed");
                    out.merge(RoleResult::error(&host, e));
                }
                Err(ActionFailure::RolledBack(e)) => {
                    warn!(host = %host, error = %e, "rollout rolled back");
                    out.merge(RoleResult::Done {
                        errors: BTreeMap::from([(host.clone(), e.clone())]),
                        rolled_back: vec![e],
                        counts: BTreeMap::new(),
                    });
                }
            }
        }
        out
    }

    /// One plan action on one host, logged and counted.
    async fn exec(&self, c: &HostClient, action: &Action, counts: &mut BTreeMap<String, u64>) -> Result<(), ActionFailure> {
        let (app, ns) = (&self.app.metadata.name, self.app.namespace());
        if !self.gate.is_open() {
            return Err(ActionFailure::Error("stopped: this operator no longer leads".into()));
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
                if let Err(e) = self.wait_ready(c, &id, &container.name).await {
                    return Err(ActionFailure::Error(e));
                }
            }
            Action::Start { id, name, .. } => {
                ops::start(c, id, name).await.map_err(err)?;
                count("start");
                self.wait_ready(c, id, name).await.map_err(ActionFailure::Error)?;
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
            let id = created.map_err(|e| (None, e.to_string()))?;
            count("create");
            ops::start(c, &id, &new.name).await.map_err(|e| (Some(id.clone()), e.to_string()))?;
            count("start");
            self.wait_ready(c, &id, &new.name).await.map_err(|e| (Some(id.clone()), e))?;
            Ok::<String, (Option<String>, String)>(id)
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
                Err(ActionFailure::RolledBack(format!(
                    "rollout of {} on {} rolled back: {why}; {tail}",
                    new.name, c.name
                )))
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

    async fn wait_ready_by_name(&self, host: &str, container: &str) -> Result<(), String> {
        match self.clients.get(host) {
            Some(c) => self.wait_ready(c, container, container).await,
            None => Err(format!("{container} on {host}: host unreachable")),
        }
    }

    /// Waits until the container runs and, if it has a healthcheck, is healthy; the error carries the
    /// last health output so a user sees why.
    async fn wait_ready(&self, c: &HostClient, id: &str, name: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.health_timeout;
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
                        return Err(format!("{name} on {} exited", c.name));
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} on {} not healthy within {}: {last}",
                    c.name,
                    humantime::format_duration(self.health_timeout)
                ));
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
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
    fn status(&self, hosts: &[Host], after: &Observation) -> AppStatus {
        let app = self.app;
        let (name, ns) = (&app.metadata.name, app.namespace());
        let generation = app.metadata.generation.unwrap_or(0);
        let desired = if self.images.is_empty() && self.fatal.is_some() {
            Vec::new()
        } else {
            plan::desired(app, hosts, &self.images).unwrap_or_default()
        };
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
            if wanted_here || has_any || (hs.error.is_some() && self.matters(host, &desired)) {
                host_status.insert(host.clone(), hs);
            }
        }
        for d in &desired {
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
        errors.extend(self.degraded.iter().cloned());
        let relevant_hosts: BTreeSet<&str> = host_status.keys().map(String::as_str).collect();
        for (h, e) in self.host_errors.iter().chain(after.errors.iter()) {
            if relevant_hosts.contains(h.as_str()) || self.matters(h, &desired) {
                let line = if e.starts_with(&format!("host {h}:")) { e.clone() } else { format!("host {h}: {e}") };
                if !errors.contains(&line) && !errors.iter().any(|x| x.contains(e.as_str())) {
                    errors.push(line);
                }
            }
        }
        let (phase, reason, message) = if !self.blocked.is_empty() {
            (Phase::Blocked, "AccessoryNotReady", self.blocked.join("; "))
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
        }
    }
}

enum ActionFailure {
    Error(String),
    RolledBack(String),
}

/// What a role (or a batch of actions) ended with.
enum RoleResult {
    Blocked(String),
    Done { errors: BTreeMap<String, String>, rolled_back: Vec<String>, counts: BTreeMap<String, u64> },
}

impl Default for RoleResult {
    fn default() -> Self {
        RoleResult::Done { errors: BTreeMap::new(), rolled_back: Vec::new(), counts: BTreeMap::new() }
    }
}

impl RoleResult {
    fn error(host: &str, e: String) -> RoleResult {
        RoleResult::Done {
            errors: BTreeMap::from([(host.to_string(), e)]),
            rolled_back: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: RoleResult) {
        match (self, other) {
            (RoleResult::Done { errors, rolled_back, counts }, RoleResult::Done { errors: e2, rolled_back: r2, counts: c2 }) => {
                errors.extend(e2);
                rolled_back.extend(r2);
                for (k, v) in c2 {
                    *counts.entry(k).or_default() += v;
                }
            }
            (me, RoleResult::Blocked(m)) => *me = RoleResult::Blocked(m),
            (RoleResult::Blocked(_), _) => {}
        }
    }

    fn rolled_back_any(&self) -> bool {
        matches!(self, RoleResult::Done { rolled_back, .. } if !rolled_back.is_empty())
    }
}
