//! The status berth writes to `/berth/status/apps/<namespace>/<name>`: what users and alerts read.
//!
//! Env values never appear here: containers are described by name, image, state and hash only.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::plan::{labels, ContainerState, DesiredState, Health, HostObservation};
use crate::spec::App;

/// The one-word summary of an App, as in Argo CD's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Work is under way (or a converge was cut short).
    Progressing,
    /// Every desired container runs the desired config and is healthy.
    Ready,
    /// Something failed: a host down, a rollout rolled back, a Docker error.
    Degraded,
    /// Roles wait for an accessory that never turned healthy.
    Blocked,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Why the Ready condition is what it is: one word an alert or a dashboard can match, never text
/// to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// Ready: every container runs its desired config.
    Converged,
    /// Progressing: containers still to start or remove.
    Converging,
    /// Progressing: a health gate or a new container is being waited for.
    WaitingForHealth,
    /// Progressing: the operator stopped (or lost the lead) in the middle; the next leader carries on.
    Interrupted,
    /// Degraded: a host or a Docker call failed.
    ConvergeFailed,
    /// Degraded: a rollout was rolled back and is held (see [`RolloutFailure`]).
    RolloutFailed,
    /// Blocked: an accessory never turned healthy.
    AccessoryNotReady,
    /// Blocked: a Secret (or key) the App uses is missing or cannot be opened.
    SecretUnavailable,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A Kubernetes-style condition, so dashboards built for k8s read berth the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    pub reason: Reason,
    pub message: String,
    pub last_transition_time: String,
    pub observed_generation: i64,
}

/// One container as berth last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub id: String,
    /// `role/web` or `accessory/db`.
    pub component: String,
    pub image: String,
    pub state: ContainerPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    pub hash: String,
}

impl ContainerStatus {
    /// Running and, with a healthcheck, healthy: what a user counts as up.
    pub fn serving(&self) -> bool {
        self.state == ContainerPhase::Running && matches!(self.health, None | Some(Health::Healthy))
    }

    /// The `state` label of `berth_containers`: one of [`crate::metrics::STATES`].
    pub fn metric_state(&self) -> &'static str {
        match (self.state, self.health) {
            (_, Some(Health::Unhealthy)) => "unhealthy",
            (ContainerPhase::Missing, _) => "missing",
            (ContainerPhase::Running, _) => "running",
            _ => "exited",
        }
    }
}

/// A container's state as the status shows it: Docker's word, or `missing` for a desired
/// container that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerPhase {
    Created,
    Running,
    Restarting,
    Paused,
    Exited,
    Dead,
    Removing,
    Missing,
}

impl From<ContainerState> for ContainerPhase {
    fn from(s: ContainerState) -> ContainerPhase {
        match s {
            ContainerState::Created => ContainerPhase::Created,
            ContainerState::Running => ContainerPhase::Running,
            ContainerState::Restarting => ContainerPhase::Restarting,
            ContainerState::Paused => ContainerPhase::Paused,
            ContainerState::Exited => ContainerPhase::Exited,
            ContainerState::Dead => ContainerPhase::Dead,
            ContainerState::Removing => ContainerPhase::Removing,
        }
    }
}

impl std::fmt::Display for ContainerPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).as_deref().unwrap_or("?"),
        )
    }
}

/// One host's part of an App.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerStatus>,
    /// The last error on this host, if the last converge hit one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The App's routes through this host's proxy, and the container each one reaches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteStatus>,
}

/// One route of a proxied role on one host, as the proxy serves it now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    pub role: String,
    /// Host names routed (`shop.example.com`), with the path prefix when it is not `/`.
    pub hosts: Vec<String>,
    /// The container the route reaches.
    pub container: String,
}

/// The whole status document of an App.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    pub observed_generation: i64,
    pub phase: Phase,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Spec image reference → the pinned reference (`repo@sha256:…`) every container was created from.
    /// A pin is kept while its reference stays in the spec, until a `berth repin`.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// The `berth repin` request (the App's repin annotation) these pins were resolved under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repin_requested_at: Option<String>,
    #[serde(default)]
    pub hosts: BTreeMap<String, HostStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_converged: Option<String>,
    /// One line saying why the phase is what it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The `berth rollout retry` request (the App's retry annotation) this status answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_retry_requested_at: Option<String>,
    /// A rollout that was rolled back: while it applies (same generation, repin and retry request)
    /// berth runs the last Ready generation and never attempts this one again on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_failure: Option<RolloutFailure>,
}

/// Where and why a rollout was rolled back, kept until a new spec or `berth rollout retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutFailure {
    /// The App generation whose rollout failed.
    pub generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repin_requested_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_requested_at: Option<String>,
    pub host: String,
    /// The new container that never turned healthy (removed by the rollback).
    pub container: String,
    /// `role/web` or `accessory/db`.
    pub component: String,
    /// Why it failed: the last health output, or the Docker error.
    pub reason: String,
    pub at: String,
    /// The generation berth runs instead (the last one that was Ready), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_generation: Option<i64>,
}

impl RolloutFailure {
    /// Whether this failure is about the App as it stands: same generation, same repin and retry
    /// requests. Anything newer is a new attempt.
    pub fn applies_to(&self, app: &App) -> bool {
        app.metadata.deletion_timestamp.is_none()
            && app.metadata.generation.unwrap_or(0) == self.generation
            && app.repin_requested_at() == self.repin_requested_at.as_deref()
            && app.rollout_retry_requested_at() == self.retry_requested_at.as_deref()
    }

    /// The one line users read in `berth status` and `apply --wait`.
    pub fn describe(&self) -> String {
        let running = match self.running_generation {
            Some(g) => format!("running generation {g} (the last Ready) instead"),
            None => "the old containers keep running".to_string(),
        };
        format!(
            "rollout of generation {} failed: {} ({}) on {}: {}; rolled back, {running}; a new spec or `berth rollout retry` tries again",
            self.generation, self.container, self.component, self.host, self.reason
        )
    }
}

impl AppStatus {
    /// Whether a waiter may stop: Ready for the App's generation, repin and retry requests, or failed at them.
    pub fn settled_for(&self, app: &App) -> bool {
        self.observed_generation == app.metadata.generation.unwrap_or(0)
            && self.repin_requested_at.as_deref() == app.repin_requested_at()
            && self.rollout_retry_requested_at.as_deref() == app.rollout_retry_requested_at()
            && self.phase != Phase::Progressing
    }
}

/// What a converge did that the status reports, beside what the hosts show after it.
pub struct ConvergeReport<'a> {
    pub app: &'a App,
    pub desired: &'a DesiredState,
    /// The pins every container of this converge was created from.
    pub images: &'a BTreeMap<String, String>,
    /// Errors met on a host while executing (the observation's own errors come separately).
    pub host_errors: &'a BTreeMap<String, String>,
    /// Roles behind a health gate that gave up.
    pub blocked: &'a [String],
    /// The gate closed under the converge (shutdown, lost lease).
    pub interrupted: bool,
    /// Why nothing could be planned at all (an image that does not resolve, a plan error).
    pub fatal: Option<&'a str>,
    /// A Secret the App uses is missing or cannot be opened: Blocked, nothing of it ran.
    pub unavailable: Option<&'a str>,
    /// Hosts where the last status saw containers of this app; `None` when there is no last status.
    pub previous_hosts: Option<&'a BTreeSet<String>>,
    /// The last status: its Ready condition's transition time is kept while the condition holds.
    pub previous: Option<&'a AppStatus>,
}

impl ConvergeReport<'_> {
    /// Whether a host's trouble is this app's trouble: the spec places something of the app there, or
    /// the last status saw the app's containers there (leftovers to prune). Without a last status every
    /// host matters, since nothing says where leftovers may be.
    fn matters(&self, host: &str) -> bool {
        self.desired.wants_host(host)
            || crate::spec::app_uses_host(self.app, host)
            || self.previous_hosts.is_none_or(|p| p.contains(host))
    }
}

/// The status document from the state after a converge (`after`: every host's observation, with
/// `observe_errors` for those that could not be seen) and what the converge reported. Pure: `now`
/// is the time to stamp.
pub fn derive<O: Borrow<HostObservation>>(
    report: &ConvergeReport<'_>,
    after: &BTreeMap<String, O>,
    observe_errors: &BTreeMap<String, String>,
    now: &str,
) -> AppStatus {
    let app = report.app;
    let (name, ns) = (&app.metadata.name, app.namespace());
    let generation = app.metadata.generation.unwrap_or(0);
    let mut host_status: BTreeMap<String, HostStatus> = BTreeMap::new();
    for (host, obs) in after {
        let obs = obs.borrow();
        let mut hs = HostStatus { reachable: obs.reachable, ..Default::default() };
        for c in obs.containers.iter().filter(|c| labels::belongs_to(&c.labels, name, ns)) {
            let component = labels::component_of(&c.labels).map(|k| format!("{}/{}", k.kind(), k.name()));
            hs.containers.push(ContainerStatus {
                name: c.name.clone(),
                id: c.id.clone(),
                component: component.unwrap_or_default(),
                image: c.image.clone(),
                state: c.state.into(),
                health: c.health,
                hash: labels::config_hash_of(&c.labels).unwrap_or_default().to_string(),
            });
        }
        if let Some(e) = report.host_errors.get(host).or(observe_errors.get(host)) {
            hs.error = Some(e.clone());
        }
        let wanted_here = report.desired.wants_host(host);
        let has_any = !hs.containers.is_empty();
        if wanted_here || has_any || (hs.error.is_some() && report.matters(host)) {
            host_status.insert(host.clone(), hs);
        }
    }
    let mut missing = Vec::new();
    for (t, on) in report.desired.templates() {
        for host in on {
            let reachable = after.get(host).is_some_and(|h| h.borrow().reachable);
            let hs = host_status.entry(host.clone()).or_insert_with(|| HostStatus { reachable, ..Default::default() });
            if hs.reachable && !hs.containers.iter().any(|c| c.name == t.name) {
                hs.containers.push(ContainerStatus {
                    name: t.name.clone(),
                    id: String::new(),
                    component: format!("{}/{}", t.component.kind(), t.component.name()),
                    image: t.image.clone(),
                    state: ContainerPhase::Missing,
                    health: None,
                    hash: t.hash.clone(),
                });
            }
            let serving = after.get(host).is_some_and(|h| {
                h.borrow().containers.iter().any(|c| {
                    c.name == t.name
                        && c.state == ContainerState::Running
                        && matches!(c.health, None | Some(Health::Healthy))
                })
            });
            if !serving {
                missing.push(format!("{} on {host}", t.name));
            }
        }
    }
    let unwanted: Vec<String> = after
        .values()
        .flat_map(|h| h.borrow().containers.iter())
        .filter(|c| labels::belongs_to(&c.labels, name, ns) && report.desired.by_name(&c.name).is_none())
        .map(|c| c.name.clone())
        .collect();
    let mut errors: Vec<String> = report.fatal.map(str::to_string).into_iter().collect();
    for (h, e) in report.host_errors.iter().chain(observe_errors.iter()) {
        if host_status.contains_key(h) || report.matters(h) {
            let line = if e.starts_with(&format!("host {h}:")) { e.clone() } else { format!("host {h}: {e}") };
            if !errors.contains(&line) && !errors.iter().any(|x| x.contains(e.as_str())) {
                errors.push(line);
            }
        }
    }
    let (phase, reason, message) = if let Some(why) = report.unavailable {
        (Phase::Blocked, Reason::SecretUnavailable, why.to_string())
    } else if !report.blocked.is_empty() {
        (Phase::Blocked, Reason::AccessoryNotReady, report.blocked.join("; "))
    } else if report.interrupted {
        let why = "converge interrupted: the operator is stopping or no longer leads; the next leader carries on";
        (Phase::Progressing, Reason::Interrupted, why.to_string())
    } else if !errors.is_empty() {
        (Phase::Degraded, Reason::ConvergeFailed, errors.join("; "))
    } else if missing.is_empty() && unwanted.is_empty() {
        (Phase::Ready, Reason::Converged, "every container runs its desired config".to_string())
    } else {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("not ready yet: {}", missing.join(", ")));
        }
        if !unwanted.is_empty() {
            parts.push(format!("still to remove: {}", unwanted.join(", ")));
        }
        (Phase::Progressing, Reason::Converging, parts.join("; "))
    };
    AppStatus {
        observed_generation: generation,
        phase,
        conditions: vec![ready_condition(report.previous, phase == Phase::Ready, reason, &message, generation, now)],
        images: report.images.clone(),
        repin_requested_at: app.repin_requested_at().map(str::to_string),
        hosts: host_status,
        last_converged: Some(now.to_string()),
        message,
        rollout_retry_requested_at: app.rollout_retry_requested_at().map(str::to_string),
        rollout_failure: None,
    }
}

/// The Ready condition; its `lastTransitionTime` moves only when its status flips.
pub fn ready_condition(
    previous: Option<&AppStatus>,
    ready: bool,
    reason: Reason,
    message: &str,
    generation: i64,
    now: &str,
) -> Condition {
    let status = if ready { "True" } else { "False" };
    let last = previous.and_then(|p| p.conditions.iter().find(|c| c.kind == "Ready")).filter(|c| c.status == status);
    Condition {
        kind: "Ready".into(),
        status: status.into(),
        reason,
        message: message.to_string(),
        last_transition_time: last.map_or_else(|| now.to_string(), |c| c.last_transition_time.clone()),
        observed_generation: generation,
    }
}
