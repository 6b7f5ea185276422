//! The planner: pure functions from (App, Hosts, observed Docker state) to ordered actions.
//!
//! This is the functional core of berth. It does no I/O, so every convergence decision — what to
//! create, what to replace in which batches, what to prune — can be tested with plain data, and
//! `berth plan` can show exactly what the engine would do. The engine observes hosts, resolves
//! images to pinned references, calls [`plan`], and executes the result phase by phase.
//!
//! Ownership is decided from labels only (see [`labels`]): containers and networks of other apps,
//! other namespaces, or not created by berth never appear in any action.

#![warn(missing_docs)]

pub mod labels;

mod desired;
mod diff;
mod error;
mod hash;
mod observed;
pub mod routes;
mod simulate;
mod types;

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use crate::spec::{App, Host};

pub use desired::DesiredState;
pub use error::PlanError;
pub use labels::Component;
pub use observed::{ContainerState, Health, HostObservation, ObservedContainer, ObservedNetwork};
pub use types::{
    Action, ContainerFile, ContainerTemplate, DesiredContainer, HealthcheckConfig, Plan, ResolvedSecret, RoleStep,
    SecretEnv, SecretValues,
};
/// The parsed spec forms a [`DesiredContainer`] carries, re-exported so the engine needs one import.
pub use types::{PortMapping, Protocol, RestartPolicy, VolumeMount};

/// The containers every host should run for `app` (see [`DesiredState`]).
///
/// `images` maps every image reference of the spec to the pinned reference the engine resolved
/// for this converge; containers use (and their hash covers) the pinned one, so re-pushing a tag
/// rolls the app while an unchanged digest changes nothing. An app marked for deletion wants
/// nothing. Fails on an unresolved image, a host that is not a Host resource, or a field that does
/// not parse.
pub fn desired_state(app: &App, hosts: &[Host], images: &BTreeMap<String, String>) -> Result<DesiredState, PlanError> {
    desired::desired_state(app, hosts, images, &SecretValues::new())
}

/// [`desired_state`] for an App that uses Secrets: `secrets` holds every value it references,
/// resolved (a missing one is [`PlanError::SecretUnavailable`]).
pub fn desired_state_with(
    app: &App,
    hosts: &[Host],
    images: &BTreeMap<String, String>,
    secrets: &SecretValues,
) -> Result<DesiredState, PlanError> {
    desired::desired_state(app, hosts, images, secrets)
}

/// [`desired_state`] as a list of containers, accessories first, then roles, each in name and then
/// host order.
pub fn desired(
    app: &App,
    hosts: &[Host],
    images: &BTreeMap<String, String>,
) -> Result<Vec<DesiredContainer>, PlanError> {
    Ok(desired_state(app, hosts, images)?.containers().collect())
}

/// The ordered actions that make `observed` match [`desired`] for one app in one namespace.
///
/// `hosts` is every Host in the store, not only those the spec names: prune must find containers
/// left on hosts the spec no longer mentions. A host missing from `observed` or not reachable gets
/// no action and is listed in [`Plan::unreachable`].
pub fn plan<O: Borrow<HostObservation>>(
    app: &App,
    hosts: &[Host],
    images: &BTreeMap<String, String>,
    observed: &BTreeMap<String, O>,
) -> Result<Plan, PlanError> {
    diff::plan(app, hosts, &desired_state(app, hosts, images)?, observed)
}

/// [`plan`] from a desired state already built (the engine builds it once per converge for the plan
/// and the status).
pub fn plan_desired<O: Borrow<HostObservation>>(
    app: &App,
    hosts: &[Host],
    desired: &DesiredState,
    observed: &BTreeMap<String, O>,
) -> Result<Plan, PlanError> {
    diff::plan(app, hosts, desired, observed)
}

/// Which spec image references each host needs, so the engine pulls and resolves images only
/// where a container will use them (an accessory-only host never touches the app image).
/// Hosts the spec names but that are not Host resources are left out; a deleted app needs nothing.
pub fn images_needed(app: &App, hosts: &[Host]) -> BTreeMap<String, BTreeSet<String>> {
    desired::images_needed(app, hosts)
}

/// Applies `plan` to `observed` the way Docker would if every action succeeded: Create and Replace
/// leave a running (and healthy, if it has a healthcheck) container, Stop leaves it exited, Remove
/// deletes it, network actions add or drop the network. Unreachable hosts are untouched, and a
/// create under a name that is already taken is refused, as Docker refuses it.
///
/// Exists so tests can check that planning again after a successful converge finds nothing to do.
pub fn simulate(plan: &Plan, observed: &mut BTreeMap<String, HostObservation>) {
    simulate::simulate(plan, observed)
}
