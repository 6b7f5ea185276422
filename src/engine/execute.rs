//! Runs a plan: accessories first, then every role behind its accessories' health gates (rolling
//! replaces in batches, rolled back when the new container never turns healthy), then prune. It
//! decides nothing the plan did not: it records what happened for the status.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::join_all;
use tracing::{info, warn};

use super::failure::{ActionFailure, Rollback, WaitFailure};
use super::progress::Progress;
use super::Gate;
use crate::docker::{ops, DockerError, HostClient, HostPool, Observation};
use crate::plan::{Action, DesiredContainer, DesiredState, Plan};
use crate::spec::App;

/// No credentials: until the converge sets the App's.
static EMPTY_AUTHS: &super::secrets::PullAuths = &std::collections::BTreeMap::new();

/// The mutable record of one converge: errors per host, blocked roles, rollbacks, action counts.
pub(super) struct Run<'a> {
    pub(super) app: &'a App,
    /// Where pinned images already seen on a host are remembered across converges, so a change on a
    /// host that has the image goes straight to the create (a create that finds it gone pulls it).
    pub(super) pool: &'a HostPool,
    pub(super) clients: &'a BTreeMap<String, HostClient>,
    /// Errors per host: the observation's, then the actions'.
    pub(super) host_errors: BTreeMap<String, String>,
    /// Roles behind a health gate that gave up.
    pub(super) blocked: Vec<String>,
    /// Docker actions executed, by verb.
    pub(super) counts: BTreeMap<String, u64>,
    pub(super) health_timeout: Duration,
    /// One pull at a time per host: roles run in parallel and may need the same image on one host.
    pub(super) pull_locks: BTreeMap<String, tokio::sync::Mutex<()>>,
    /// (host, image) pairs already made sure of in this converge: the plan's Pull and every create
    /// after it look only once.
    pub(super) images_ready: parking_lot::Mutex<BTreeSet<(String, String)>>,
    /// Networks known to exist per host; roles run in parallel, so each create makes sure of its own.
    pub(super) networks: parking_lot::Mutex<BTreeSet<(String, String)>>,
    /// One network creation at a time per host: Docker (API < 1.44) does not refuse a second network of
    /// the same name, and two roles creating it at once leave every later start "ambiguous".
    pub(super) network_locks: BTreeMap<String, tokio::sync::Mutex<()>>,
    /// Closed when the operator loses the lease or stops: no new Docker action starts after that.
    pub(super) gate: &'a dyn Gate,
    /// Every container the spec wants, built once per converge for the plan, the gates and the status.
    pub(super) desired: &'a DesiredState,
    /// Replaces that were rolled back in this converge, in the order they happened.
    pub(super) rollbacks: Vec<Rollback>,
    /// True when the gate closed under a running action: the converge stopped short, by design.
    pub(super) interrupted: bool,
    /// What the health waits are waiting on right now, for the interim status.
    pub(super) progress: &'a Progress,
    /// Health waits that gave up in this converge, by (host, container): a gate on the same
    /// container fails at once instead of waiting a second health timeout.
    pub(super) failed_waits: parking_lot::Mutex<BTreeMap<(String, String), String>>,
    /// Registry credentials from the App's imagePullSecrets, chosen per image by its registry.
    pub(super) registries: &'a super::secrets::PullAuths,
    /// What each host ran when this converge began (the plan's input).
    pub(super) observed: &'a BTreeMap<String, std::sync::Arc<crate::plan::HostObservation>>,
    /// Each Host's proxy settings, by host name.
    pub(super) proxy_settings: BTreeMap<String, crate::spec::ProxySettings>,
    /// (host, container) of proxied containers that answered their health path and took their route.
    pub(super) routed: parking_lot::Mutex<BTreeSet<(String, String)>>,
    /// This App's routes per host after the converge, for the status.
    pub(super) routes: parking_lot::Mutex<BTreeMap<String, crate::plan::routes::RouteTable>>,
    /// Hosts whose proxy serves no route any more: removed unless another App still routes there.
    pub(super) idle_proxies: parking_lot::Mutex<BTreeSet<String>>,
    /// Pinned images this converge pulled: only those are ever cleaned up again.
    pub(super) pulls: parking_lot::Mutex<Vec<crate::docker::images::PullNote>>,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        app: &'a App,
        obs: &'a Observation,
        pool: &'a HostPool,
        progress: &'a Progress,
        gate: &'a dyn Gate,
        desired: &'a DesiredState,
    ) -> Run<'a> {
        let health_timeout = desired.rollout().health_timeout;
        let per_host = || obs.clients.keys().map(|h| (h.clone(), tokio::sync::Mutex::new(()))).collect();
        let networks = obs.hosts.iter().flat_map(|(h, o)| o.networks.iter().map(move |n| (h.clone(), n.name.clone())));
        Run {
            app,
            clients: &obs.clients,
            host_errors: obs.errors.clone(),
            blocked: Vec::new(),
            counts: BTreeMap::new(),
            health_timeout,
            pull_locks: per_host(),
            images_ready: parking_lot::Mutex::new(BTreeSet::new()),
            pool,
            network_locks: per_host(),
            networks: parking_lot::Mutex::new(networks.collect()),
            gate,
            desired,
            rollbacks: Vec::new(),
            interrupted: false,
            progress,
            failed_waits: parking_lot::Mutex::new(BTreeMap::new()),
            registries: EMPTY_AUTHS,
            observed: &obs.hosts,
            proxy_settings: BTreeMap::new(),
            routed: parking_lot::Mutex::new(BTreeSet::new()),
            routes: parking_lot::Mutex::new(BTreeMap::new()),
            idle_proxies: parking_lot::Mutex::new(BTreeSet::new()),
            pulls: parking_lot::Mutex::new(Vec::new()),
        }
    }

    pub(super) async fn execute(&mut self, plan: &Plan) {
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
        let gates: BTreeSet<(String, String)> = plan.roles.iter().flat_map(|r| r.waits_for.iter().cloned()).collect();
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
        // Routes follow the serving containers before prune removes anything they might point at.
        for (host, e) in self.reconcile_routes().await {
            warn!(host = %host, error = %e, "proxy routes");
            self.host_errors.entry(host).or_insert(format!("proxy: {e}"));
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
    async fn exec(
        &self,
        c: &HostClient,
        action: &Action,
        counts: &mut BTreeMap<String, u64>,
    ) -> Result<(), ActionFailure> {
        let (app, ns) = (&self.app.metadata.name, self.app.namespace());
        if !self.gate.is_open() {
            return Err(ActionFailure::Interrupted(format!(
                "{action}: not started, the operator is stopping or no longer leads"
            )));
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
                if container.proxy.is_some() {
                    self.proxy_id(c).await.map_err(err)?; // its network must exist before the container joins it
                }
                let id = self.create_proxied(c, container, &mut count).await.map_err(ActionFailure::Error)?;
                ops::start(c, &id, &container.name).await.map_err(err)?;
                count("start");
                self.wait_ready(c, &id, &container.name).await?;
                self.route_to_new(c, container).await?;
            }
            Action::Start { id, name, .. } => {
                ops::start(c, id, name).await.map_err(err)?;
                count("start");
                self.wait_ready(c, id, name).await?;
                if let Some(d) = self.desired.by_name(name) {
                    self.route_to_new(c, d).await?;
                }
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
            Action::Replace { old_id, old_name, new, .. } => match &new.proxy {
                Some(target) => self.replace_start_first(c, old_id, old_name, new, target, &mut count).await?,
                None => self.replace(c, old_id, old_name, new, &mut count).await?,
            },
        }
        Ok(())
    }

    /// What any replace needs before it touches the old container: the new image on the host (pulled
    /// first, so no host waits on a pull while it serves nothing) and the app network.
    pub(super) async fn prepare_replace(
        &self,
        c: &HostClient,
        new: &DesiredContainer,
        count: &mut impl FnMut(&str),
    ) -> Result<(), DockerError> {
        if self.ensure_image(c, &new.image).await? {
            count("pull");
        }
        self.ensure_network(c, &new.network).await
    }

    /// Removes the new container of a rolled-back replace, if it was created (best effort: a
    /// leftover is pruned by the next converge).
    pub(super) async fn discard(&self, c: &HostClient, id: Option<String>, name: &str, count: &mut impl FnMut(&str)) {
        if let Some(id) = id {
            let _ = ops::remove(c, &id, name).await;
            count("remove");
        }
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
                self.discard(c, new_id, &new.name, count).await;
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
                Err(ActionFailure::RolledBack(Rollback::of(&c.name, new, why), message))
            }
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
