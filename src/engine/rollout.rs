//! Failed rollouts, after Swarm's `failure_action: rollback`: once a generation's new container
//! never turned healthy and was rolled back, berth runs the App's last Ready generation (its spec
//! and its pins) until a new spec or `berth rollout retry` asks for another attempt. Retrying on
//! its own would take the healthy old container down again on every attempt.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::status::{AppStatus, Phase, Reason, RolloutFailure};
use crate::plan::{Action, HostObservation, Plan};
use crate::spec::{App, AppSpec};

/// The spec and pins of an App's last Ready generation, stored apart from the status (it holds env
/// values, which no status or command output may show).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastReady {
    pub generation: i64,
    pub spec: AppSpec,
    /// Spec image reference → pinned reference, as the containers of that generation were created.
    pub images: BTreeMap<String, String>,
    pub at: String,
}

impl LastReady {
    /// What to record after a converge that left `app` Ready on `images`.
    pub fn of(app: &App, images: &BTreeMap<String, String>) -> LastReady {
        LastReady {
            generation: app.metadata.generation.unwrap_or(0),
            spec: app.spec.clone(),
            images: images.clone(),
            at: crate::store::now_rfc3339(),
        }
    }

    /// Whether this record already says what `of(app, images)` would.
    pub fn same_as(&self, app: &App, images: &BTreeMap<String, String>) -> bool {
        self.generation == app.metadata.generation.unwrap_or(0) && self.spec == app.spec && &self.images == images
    }

    /// The App to converge while a newer generation's rollout has failed: today's metadata (name,
    /// generation, annotations) with the last Ready spec.
    pub fn app(&self, current: &App) -> App {
        App { spec: self.spec.clone(), ..current.clone() }
    }
}

/// Without a last Ready record (an App from before berth kept one) nothing is known to be good, so
/// a failed rollout holds instead: no replace is attempted again; an old container that stopped is
/// started (drift is still repaired), and everything else is planned as usual.
pub fn hold_replaces<O: Borrow<HostObservation>>(plan: &mut Plan, observed: &BTreeMap<String, O>) {
    let held = |a: Action| match a {
        Action::Replace { host, old_id, old_name, .. } => {
            let up = observed
                .get(&host)
                .and_then(|h| h.borrow().containers.iter().find(|c| c.id == old_id))
                .is_some_and(|c| c.state.is_up());
            (!up).then_some(Action::Start { host, id: old_id, name: old_name })
        }
        other => Some(other),
    };
    plan.accessories = std::mem::take(&mut plan.accessories).into_iter().filter_map(held).collect();
    for step in &mut plan.roles {
        for batch in &mut step.batches {
            *batch = std::mem::take(batch).into_iter().filter_map(held).collect();
        }
        step.batches.retain(|b| !b.is_empty());
    }
    plan.roles.retain(|s| !s.batches.is_empty());
}

/// Puts a failed rollout on top of a status: Degraded, reason RolloutFailed, whatever else the
/// converge found still said after it.
pub fn rollout_failed(status: &mut AppStatus, failure: RolloutFailure) {
    let mut message = failure.describe();
    if status.phase != Phase::Ready && !status.message.is_empty() {
        message = format!("{message}; {}", status.message);
    }
    if status.phase != Phase::Blocked {
        status.phase = Phase::Degraded;
    }
    for c in status.conditions.iter_mut().filter(|c| c.kind == "Ready") {
        c.status = "False".into();
        c.reason = Reason::RolloutFailed;
        c.message = message.clone();
    }
    status.message = message;
    status.rollout_failure = Some(failure);
}
