//! The status berth writes to `/berth/status/apps/<namespace>/<name>`: what users and alerts read.
//!
//! Env values never appear here: containers are described by name, image, state and hash only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// A Kubernetes-style condition, so dashboards built for k8s read berth the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    pub reason: String,
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
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    pub hash: String,
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
}

impl AppStatus {
    /// Whether a waiter may stop: Ready for this generation and repin request, or failed at them.
    pub fn settled_for(&self, generation: i64, repin_requested_at: Option<&str>) -> bool {
        self.observed_generation == generation
            && self.repin_requested_at.as_deref() == repin_requested_at
            && self.phase != Phase::Progressing
    }
}
