//! The planner's data: what should run, what was seen, and what to do about the difference.
//!
//! Everything here is plain data so that the planner stays pure and testable without Docker: the
//! docker module converts bollard's types into the `Observed*` types, and the engine turns each
//! [`Action`] into Docker calls.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::spec::{ContainerOptions, Logging, SecretKeyRef, SecretValue};

pub use super::labels::Component;
pub use crate::spec::{PortMapping, Protocol, RestartPolicy, VolumeMount};

// ---------------------------------------------------------------------------------------------
// Desired state
// ---------------------------------------------------------------------------------------------

/// Environment variables whose values are secrets.
///
/// `Debug`, `Display` and `Serialize` print keys only (values become `***`), so neither logs nor
/// `berth plan -o json` can leak a password. The engine reads the real values with
/// [`SecretEnv::expose`] at the single place it hands them to Docker.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretEnv(BTreeMap<String, String>);

impl SecretEnv {
    /// Wraps already-merged variables.
    pub fn new(vars: BTreeMap<String, String>) -> Self {
        SecretEnv(vars)
    }

    /// The real values; call only where they go to Docker (or into the config hash).
    pub fn expose(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Variable names, which are safe to show.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// `KEY=VALUE` strings in the form Docker's create call expects.
    pub fn to_docker(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "***"))).finish()
    }
}

impl fmt::Display for SecretEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for k in self.0.keys() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{k}=***")?;
        }
        Ok(())
    }
}

impl Serialize for SecretEnv {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for k in self.0.keys() {
            m.serialize_entry(k, "***")?;
        }
        m.end()
    }
}

/// A healthcheck in Docker's terms, so the engine can pass it through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthcheckConfig {
    /// Docker's `Test`: `["CMD-SHELL", s]` for a shell string, `["CMD", args...]` for an exec list.
    pub test: Vec<String>,
    /// Between checks; `None` keeps Docker's default.
    #[serde(serialize_with = "ser_opt_ms", rename = "intervalMs")]
    pub interval: Option<Duration>,
    /// Per check; `None` keeps Docker's default.
    #[serde(serialize_with = "ser_opt_ms", rename = "timeoutMs")]
    pub timeout: Option<Duration>,
    /// Consecutive failures before unhealthy; `None` keeps Docker's default.
    pub retries: Option<u32>,
    /// Grace period after start; `None` keeps Docker's default.
    #[serde(serialize_with = "ser_opt_ms", rename = "startPeriodMs")]
    pub start_period: Option<Duration>,
}

fn ser_opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

/// `berth plan -o json` shows ports and volumes in the canonical text `spec` parses back.
fn ser_display_list<T: fmt::Display, S: Serializer>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.iter().map(|i| i.to_string()))
}

fn ser_restart<S: Serializer>(r: &RestartPolicy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&restart_text(r))
}

/// Docker's restart policy as written in a spec (`on-failure:3`).
pub(crate) fn restart_text(r: &RestartPolicy) -> String {
    match r {
        RestartPolicy::No => "no".into(),
        RestartPolicy::Always => "always".into(),
        RestartPolicy::UnlessStopped => "unless-stopped".into(),
        RestartPolicy::OnFailure(None) => "on-failure".into(),
        RestartPolicy::OnFailure(Some(n)) => format!("on-failure:{n}"),
    }
}

/// One container that should exist on one host, with everything the engine needs to create it.
///
/// Two desired containers with the same `hash` have identical runtime configs; the name embeds the
/// hash so a new version can be created next to the old one during a rolling replace. Everything
/// but the host is the same on every host a component runs on, so it is shared, not copied: a plan
/// for a thousand hosts holds one template per component. Fields of the template read through
/// `Deref` (`d.name`, `d.image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredContainer {
    /// The Host resource's name.
    pub host: String,
    /// The host-independent rest, shared by the component's containers on every host.
    #[serde(flatten)]
    pub template: Arc<ContainerTemplate>,
}

impl std::ops::Deref for DesiredContainer {
    type Target = ContainerTemplate;
    fn deref(&self) -> &ContainerTemplate {
        &self.template
    }
}

/// What a role's or an accessory's container is, whichever host it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerTemplate {
    /// `{app}-{namespace}-{component}-{hash[..8]}`.
    pub name: String,
    /// Which role or accessory this container runs.
    pub component: Component,
    /// Pinned image reference (digest), as resolved by the engine for this converge.
    pub image: String,
    /// Overrides the image's command; a shell string has become `["sh", "-c", s]`.
    pub cmd: Option<Vec<String>>,
    /// App env overlaid by role env (roles), or the accessory's env. Secret.
    pub env: SecretEnv,
    /// Published ports, in spec order.
    #[serde(serialize_with = "ser_display_list")]
    pub ports: Vec<PortMapping>,
    /// Files written into the container before it starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ContainerFile>,
    /// Mounts, in spec order; named volumes outlive the container and are never removed.
    #[serde(serialize_with = "ser_display_list")]
    pub volumes: Vec<VolumeMount>,
    /// Docker healthcheck; without one, "running" counts as ready.
    pub healthcheck: Option<HealthcheckConfig>,
    /// Every label, including the `berth.*` contract and the config hash.
    pub labels: BTreeMap<String, String>,
    /// Docker restart policy; `unless-stopped` unless the spec says otherwise.
    #[serde(serialize_with = "ser_restart")]
    pub restart: RestartPolicy,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPU limit in billionths of a core (Docker's `NanoCpus`).
    pub nano_cpus: Option<i64>,
    /// Seconds a stop waits after the stop signal before it kills (Docker's `StopTimeout`; default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u32>,
    /// The signal a stop sends first (Docker's `StopSignal`; default the image's, else SIGTERM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// The app network to join (`berth-{app}-{namespace}`).
    pub network: String,
    /// Alias on that network: the role or accessory name.
    pub alias: String,
    /// A proxied role's route: the container also joins the proxy network, and a replace starts
    /// the new container first and moves the route to it once it answers its health path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Arc<super::routes::ProxyTarget>>,
    /// Without a healthcheck, how long after its start the container counts as ready (a role's
    /// `readinessDelay`); `None`: as soon as it runs.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_ms", rename = "readinessDelayMs")]
    pub readiness_delay: Option<Duration>,
    /// Docker's log driver and options (the App's overlaid by the component's); `None` keeps the daemon's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// `docker run` flags; with `host_network` the container joins the host's network, not `network`.
    #[serde(skip_serializing_if = "is_default")]
    pub options: ContainerOptions,
    /// An accessory's host directories, bound as Docker's legacy binds so Docker makes a missing one;
    /// never deleted.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ser_display_list")]
    pub directories: Vec<HostDirectory>,
    /// sha256 (hex) of the canonical runtime config; also in `labels["berth.config-hash"]`.
    pub hash: String,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A host directory mounted into a container, made by Docker when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDirectory {
    /// Absolute path on the host (`/var/lib/berth/{app}-{namespace}/{accessory}/{name}`).
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl fmt::Display for HostDirectory {
    /// Docker's bind text, `source:target[:ro]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}{}", self.source, self.target, if self.read_only { ":ro" } else { "" })
    }
}

/// A Secret's value as a converge may use it, with the revision (etcd `mod_revision`) its users'
/// config hash covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSecret {
    /// The opened value.
    pub value: SecretValue,
    /// The Secret's etcd revision: what users' config hashes cover instead of the value.
    pub revision: i64,
}

/// Every Secret value a converge resolved, by reference.
pub type SecretValues = BTreeMap<SecretKeyRef, ResolvedSecret>;

/// A file written into a container before it starts. Its contents may be a Secret's: `Debug` and
/// `Serialize` (plans) never show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerFile {
    /// Absolute path in the container.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// What the file holds; never serialized.
    #[serde(skip)]
    pub contents: SecretValue,
}

// ---------------------------------------------------------------------------------------------
// Plan
// ---------------------------------------------------------------------------------------------

/// One Docker-level step; in JSON, `"action"` is the same verb as in the table.
///
/// Existing containers are addressed by id, so a same-named foreign
/// container can never be hit by accident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum Action {
    /// Pull the pinned image before a Create or Replace on this host needs it.
    Pull {
        /// Host name.
        host: String,
        /// Pinned reference (`repo@sha256:…`).
        image: String,
    },
    /// Create the app's bridge network (labelled) on this host.
    CreateNetwork {
        /// Host name.
        host: String,
        /// `berth-{app}-{namespace}`.
        network: String,
    },
    /// Create and start a container (joining the app network with its alias).
    Create {
        /// Host name.
        host: String,
        /// Everything Docker needs to create it.
        container: DesiredContainer,
    },
    /// Start an existing container whose config is current but which is not running.
    Start {
        /// Host name.
        host: String,
        /// Docker id of the existing container.
        id: String,
        /// Its name, for people.
        name: String,
    },
    /// Stop old, create+start new, wait for health within `rollout.healthTimeout`, remove old;
    /// on failure remove new, start old and stop the rollout. A proxied one goes start-first.
    Replace {
        /// Host name.
        host: String,
        /// Docker id of the container to retire.
        old_id: String,
        /// Its name, for people (and the rollback message).
        old_name: String,
        /// The container to create in its place; its name differs from `old_name`.
        new: DesiredContainer,
    },
    /// Stop a running container before it is removed.
    Stop {
        /// Host name.
        host: String,
        /// Docker id.
        id: String,
        /// Its name, for people.
        name: String,
    },
    /// Remove a container (never its named volumes).
    Remove {
        /// Host name.
        host: String,
        /// Docker id.
        id: String,
        /// Its name, for people.
        name: String,
    },
    /// Remove the app network once nothing of the app remains on the host.
    RemoveNetwork {
        /// Host name.
        host: String,
        /// `berth-{app}-{namespace}`.
        network: String,
    },
}

impl Action {
    /// The host this action runs on.
    pub fn host(&self) -> &str {
        match self {
            Action::Pull { host, .. }
            | Action::CreateNetwork { host, .. }
            | Action::Create { host, .. }
            | Action::Start { host, .. }
            | Action::Replace { host, .. }
            | Action::Stop { host, .. }
            | Action::Remove { host, .. }
            | Action::RemoveNetwork { host, .. } => host,
        }
    }

    /// Short verb for tables and metrics labels.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Pull { .. } => "pull",
            Action::CreateNetwork { .. } => "create-network",
            Action::Create { .. } => "create",
            Action::Start { .. } => "start",
            Action::Replace { .. } => "replace",
            Action::Stop { .. } => "stop",
            Action::Remove { .. } => "remove",
            Action::RemoveNetwork { .. } => "remove-network",
        }
    }

    /// The id of the existing container this action touches, if any (the old one for Replace).
    pub fn target_id(&self) -> Option<&str> {
        match self {
            Action::Start { id, .. } | Action::Stop { id, .. } | Action::Remove { id, .. } => Some(id),
            Action::Replace { old_id, .. } => Some(old_id),
            _ => None,
        }
    }
}

/// One row of `berth plan`: `HOST  VERB  TARGET  DETAIL`.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (target, detail) = match self {
            Action::Pull { image, .. } => (image.clone(), String::new()),
            Action::CreateNetwork { network, .. } | Action::RemoveNetwork { network, .. } => {
                (network.clone(), String::new())
            }
            Action::Create { container, .. } => (container.name.clone(), container.component.to_string()),
            Action::Start { name, .. } | Action::Stop { name, .. } | Action::Remove { name, .. } => {
                (name.clone(), String::new())
            }
            Action::Replace { old_name, new, .. } => {
                let order = if new.proxy.is_some() { " (start-first)" } else { "" };
                (new.name.clone(), format!("{} replaces {old_name}{order}", new.component))
            }
        };
        let row = format!("{:<16} {:<14} {:<40} {}", self.host(), self.verb(), target, detail);
        f.write_str(row.trim_end())
    }
}

/// Phase 2 work for one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleStep {
    /// Role name.
    pub role: String,
    /// `(host, container name)` of accessory containers that must be running and healthy (or just
    /// running, without a healthcheck) before any of this role's actions run.
    pub waits_for: Vec<(String, String)>,
    /// Run in order. The first batch holds networks, pulls, creates and starts (unlimited); each
    /// further batch replaces at most `maxUnavailable` hosts. Within a batch, actions of one host
    /// must run in the listed order; different hosts may run in parallel.
    pub batches: Vec<Vec<Action>>,
}

/// Ordered work to converge one app in one namespace.
///
/// Phases run strictly in order: accessories, then roles (each after its accessories are ready),
/// then prune — so nothing is removed before its replacement is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// App name.
    pub app: String,
    /// App namespace.
    pub namespace: String,
    /// Phase 1, in order.
    pub accessories: Vec<Action>,
    /// Phase 2, one step per role with work to do, in role-name order.
    pub roles: Vec<RoleStep>,
    /// Phase 3: stops, removes and network removals, in order.
    pub prune: Vec<Action>,
    /// Hosts that could not be observed; nothing was planned for them, so the app is not converged.
    pub unreachable: Vec<String>,
}

impl Plan {
    /// No action at all. An empty plan with `unreachable` hosts is still not fully converged.
    pub fn is_empty(&self) -> bool {
        self.actions().next().is_none()
    }

    /// Every action in execution order, flattened across phases and batches.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.accessories
            .iter()
            .chain(self.roles.iter().flat_map(|s| s.batches.iter().flatten()))
            .chain(self.prune.iter())
    }
}

/// The human-readable `berth plan` table.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "app/{} -n {}", self.app, self.namespace)?;
        if self.is_empty() {
            writeln!(f, "  no changes")?;
        }
        if !self.accessories.is_empty() {
            writeln!(f, "accessories:")?;
            for a in &self.accessories {
                writeln!(f, "  {a}")?;
            }
        }
        for step in &self.roles {
            write!(f, "role {}", step.role)?;
            if !step.waits_for.is_empty() {
                let w: Vec<String> = step.waits_for.iter().map(|(h, n)| format!("{h}/{n}")).collect();
                write!(f, " (after {})", w.join(", "))?;
            }
            writeln!(f, ":")?;
            for (i, batch) in step.batches.iter().enumerate() {
                writeln!(f, "  batch {}:", i + 1)?;
                for a in batch {
                    writeln!(f, "    {a}")?;
                }
            }
        }
        if !self.prune.is_empty() {
            writeln!(f, "prune:")?;
            for a in &self.prune {
                writeln!(f, "  {a}")?;
            }
        }
        for h in &self.unreachable {
            writeln!(f, "unreachable: {h} (nothing planned there)")?;
        }
        Ok(())
    }
}
