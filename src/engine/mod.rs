//! Executes a plan against the hosts: accessories first, health gates, rolling replaces, prune,
//! then writes the App's status. This is the one code path of `berth converge` and the operator.
//!
//! One job a file: [`converge`](converge()) puts the steps together; `images` pins tags to digests;
//! `execute` runs a plan's phases, `ensure` makes sure of images and networks on a host, `health`
//! waits for containers to turn healthy; `status` derives the status document (pure); `progress`
//! says what a converge waits for while it lasts; `proxy` rolls proxied roles start-first and keeps
//! their routes on the hosts' proxies; `rollout` holds failed rollouts; `history`
//! records each generation's outcome; `gate` says whether Docker actions may still start.

mod converge;
mod ensure;
mod execute;
mod failure;
pub mod gate;
mod health;
pub mod history;
pub mod images;
pub mod progress;
mod proxy;
pub mod rollout;
pub mod secrets;
pub mod status;
mod timings;

use std::collections::BTreeMap;

pub use converge::{converge, converge_gated};
pub use gate::{AlwaysOpen, Gate};
pub use history::ConvergeOptions;
pub use images::resolve_images;
pub use status::{AppStatus, Condition, ContainerStatus, HostStatus, Phase, Reason, RolloutFailure};

/// What one converge saw and did, for the caller (CLI exit code, operator metrics).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: AppStatus,
    /// Docker actions executed, by verb (`create`, `start`, ...).
    pub actions: BTreeMap<String, u64>,
    /// A deleted App whose containers and networks are gone from every host: no status was
    /// written, and the finalizer may remove its keys.
    pub gone: bool,
    /// Nothing is left to retry: Ready, or a failed rollout that berth holds at its last Ready
    /// generation (only a new spec or `berth rollout retry` starts another attempt).
    pub settled: bool,
    /// Pinned images this converge pulled, to be recorded for the image clean-up (only what berth
    /// pulled is ever removed again).
    pub pulls: Vec<crate::docker::images::PullNote>,
}

impl Outcome {
    /// The Ready condition's reason: why the phase is what it is.
    pub fn reason(&self) -> Option<Reason> {
        self.status.conditions.iter().find(|c| c.kind == "Ready").map(|c| c.reason)
    }
}
