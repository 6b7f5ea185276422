//! A model of Docker applying a plan, so convergence can be tested without Docker.

use std::collections::BTreeMap;

use super::labels;
use super::observed::{ContainerState, Health, HostObservation, ObservedContainer, ObservedNetwork};
use super::types::{Action, DesiredContainer, Plan};

pub(crate) fn simulate(plan: &Plan, observed: &mut BTreeMap<String, HostObservation>) {
    for action in plan.actions() {
        let Some(obs) = observed.get_mut(action.host()).filter(|o| o.reachable) else {
            continue;
        };
        match action {
            Action::Pull { .. } => {}
            Action::CreateNetwork { network, .. } => {
                if !obs.networks.iter().any(|n| &n.name == network) {
                    obs.networks.push(ObservedNetwork {
                        name: network.clone(),
                        labels: labels::network_labels(&plan.app, &plan.namespace),
                    });
                }
            }
            Action::Create { container, .. } => run(obs, container),
            Action::Start { id, .. } => {
                if let Some(c) = obs.containers.iter_mut().find(|c| &c.id == id) {
                    c.state = ContainerState::Running;
                    c.health = c.health.map(|_| Health::Healthy);
                }
            }
            Action::Replace { old_id, new, .. } => {
                if let Some(c) = obs.containers.iter_mut().find(|c| &c.id == old_id) {
                    c.state = ContainerState::Exited;
                }
                run(obs, new);
                obs.containers.retain(|c| &c.id != old_id);
            }
            Action::Stop { id, .. } => {
                if let Some(c) = obs.containers.iter_mut().find(|c| &c.id == id) {
                    c.state = ContainerState::Exited;
                    c.health = None;
                }
            }
            Action::Remove { id, .. } => obs.containers.retain(|c| &c.id != id),
            Action::RemoveNetwork { network, .. } => obs.networks.retain(|n| &n.name != network),
        }
    }
}

/// Create + start, as the engine does; a taken name is refused, as Docker refuses it.
fn run(obs: &mut HostObservation, d: &DesiredContainer) {
    if obs.containers.iter().any(|c| c.name == d.name) {
        return;
    }
    let created = obs.containers.iter().map(|c| c.created).max().unwrap_or(0) + 1;
    let mut id = format!("sim-{}", d.name);
    while obs.containers.iter().any(|c| c.id == id) {
        id.push('+');
    }
    obs.containers.push(ObservedContainer {
        id,
        name: d.name.clone(),
        labels: d.labels.clone(),
        state: ContainerState::Running,
        health: d.healthcheck.as_ref().map(|_| Health::Healthy),
        image: d.image.clone(),
        created,
    });
}
