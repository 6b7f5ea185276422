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
    pub fn applies_to(&self, app: &crate::spec::App) -> bool {
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
    pub fn settled_for(&self, app: &crate::spec::App) -> bool {
        self.observed_generation == app.metadata.generation.unwrap_or(0)
            && self.repin_requested_at.as_deref() == app.repin_requested_at()
            && self.rollout_retry_requested_at.as_deref() == app.rollout_retry_requested_at()
            && self.phase != Phase::Progressing
    }
}
