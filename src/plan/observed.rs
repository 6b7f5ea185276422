//! What was seen on a host: berth's containers and networks as Docker lists them, as plain data
//! the planner reads (the docker module converts bollard's types into these).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Docker's container states, as the planner needs to distinguish them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Created but never started.
    Created,
    /// Up.
    Running,
    /// Crash-looping under its restart policy; Docker is already acting on it.
    Restarting,
    /// Frozen by someone; berth leaves it as is.
    Paused,
    /// Stopped or finished.
    Exited,
    /// Failed removal; Docker may refuse to start it.
    Dead,
    /// Being removed right now; the planner waits for it to go.
    Removing,
}

impl ContainerState {
    /// Up from berth's point of view: it neither needs a Start nor a Stop-before-remove skip.
    pub fn is_up(self) -> bool {
        matches!(self, ContainerState::Running | ContainerState::Restarting | ContainerState::Paused)
    }
}

/// Docker healthcheck status of a container that has a healthcheck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Within the start period, or not yet checked.
    Starting,
    /// Last checks passed.
    Healthy,
    /// Failed `retries` times in a row.
    Unhealthy,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        })
    }
}

/// A container as listed by Docker on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedContainer {
    /// Docker container id; actions on existing containers address them by id, not name.
    pub id: String,
    /// Name without Docker's leading `/`.
    pub name: String,
    /// All labels; ownership is decided from these alone.
    pub labels: BTreeMap<String, String>,
    /// Lifecycle state.
    pub state: ContainerState,
    /// `None` when the container has no healthcheck.
    pub health: Option<Health>,
    /// Image reference the container was created from.
    pub image: String,
    /// Creation time (unix seconds); decides which of several leftovers is newest.
    pub created: i64,
}

/// A network as listed by Docker on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedNetwork {
    /// Network name.
    pub name: String,
    /// Labels; only a network labelled for this app+namespace is ever removed.
    pub labels: BTreeMap<String, String>,
}

/// Everything seen on one host in one observation pass.
///
/// An unreachable host (or a host missing from the observation map) is one the planner cannot
/// see, so it plans nothing there — least of all removals.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HostObservation {
    /// Whether the Docker API answered; if not, the lists are meaningless.
    pub reachable: bool,
    /// berth's containers on the host (labelled `managed-by=berth`), of every app: the caller keeps
    /// its own app's. Nothing else is listed, so a foreign container can never reach a plan.
    pub containers: Vec<ObservedContainer>,
    /// berth's networks on the host (labelled `managed-by=berth`), of every app.
    pub networks: Vec<ObservedNetwork>,
}
