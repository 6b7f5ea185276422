//! Desired vs observed: the ordered actions that converge one app in one namespace.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::spec::{App, Host};

use super::desired::DesiredState;
use super::error::PlanError;
use super::labels::{self, Component};
use super::observed::{ContainerState, HostObservation, ObservedContainer};
use super::types::{Action, ContainerTemplate, DesiredContainer, Plan, RoleStep};

/// One desired container, not yet made out of its component's template.
struct Want<'t> {
    host: &'t str,
    template: &'t Arc<ContainerTemplate>,
}

impl Want<'_> {
    /// The container itself, as `desired()` gives it; made only for an action that carries it.
    fn container(&self) -> DesiredContainer {
        DesiredContainer { host: self.host.to_string(), template: Arc::clone(self.template) }
    }
}

/// What to do about one desired container.
enum Decision<'a> {
    /// Current and up.
    Nothing,
    /// Current but stopped.
    Start(&'a ObservedContainer),
    /// Running an older config.
    Replace(&'a ObservedContainer),
    /// Absent.
    Create,
}

/// One of this app's containers on a visible host.
struct Mine<'a> {
    container: &'a ObservedContainer,
    component: Option<Component>,
    /// A desired container keeps it (or replaces itself with it); prune skips it.
    claimed: bool,
}

/// What the planner knows of one visible host, sorted out once per plan (not once per desired
/// container: a host lists every app's containers).
struct HostState<'a> {
    name: &'a str,
    obs: &'a HostObservation,
    mine: Vec<Mine<'a>>,
    /// Whether the network was already checked on this host.
    networked: bool,
    /// Images already pulled on this host in this plan.
    pulled: Vec<&'a str>,
}

/// Plan-wide bookkeeping so each network and each image is handled once per host. Hosts are
/// found by a hash look-up and their state kept in one place: at a thousand hosts, ordered-map
/// look-ups by name were most of a plan's cost.
struct Builder<'a> {
    network: String,
    /// Visible hosts, in name order.
    hosts: Vec<HostState<'a>>,
    index: HashMap<&'a str, usize>,
}

impl<'a> Builder<'a> {
    /// Appends the prerequisites of `w` (network on first sight of the host, image pull when a
    /// container will be created) and returns what to do with it itself.
    fn decide(&mut self, w: &Want<'a>, prep: &mut Vec<Action>) -> Option<Decision<'a>> {
        let d: &'a ContainerTemplate = w.template;
        let h = &mut self.hosts[*self.index.get(w.host)?];
        if !h.networked {
            h.networked = true;
            if !h.obs.networks.iter().any(|n| n.name == self.network) {
                // A same-named network without our labels still blocks creation, so it counts as present.
                prep.push(Action::CreateNetwork { host: h.name.to_string(), network: self.network.clone() });
            }
        }
        let hash_of = |c: &ObservedContainer| labels::config_hash_of(&c.labels) == Some(d.hash.as_str());
        let same = |m: &&Mine<'a>| m.component.as_ref() == Some(&d.component);
        let live = |m: &&Mine<'a>| m.container.state != ContainerState::Removing;
        let current = best(h.mine.iter().filter(same).filter(live).map(|m| m.container).filter(|c| hash_of(c)));
        let any_live = best(h.mine.iter().filter(same).filter(live).map(|m| m.container));

        let decision = if let Some(keep) = current {
            claim(h, keep);
            if keep.state.is_up() {
                Decision::Nothing
            } else {
                Decision::Start(keep)
            }
        } else if h
            .mine
            .iter()
            .filter(same)
            .any(|m| m.container.state == ContainerState::Removing && hash_of(m.container))
        {
            // The current container is being removed under our name; wait for it to go rather than
            // collide with it, and keep whatever else serves meanwhile.
            if let Some(keep) = any_live {
                claim(h, keep);
            }
            Decision::Nothing
        } else if let Some(keep) = any_live {
            claim(h, keep);
            Decision::Replace(keep)
        } else {
            Decision::Create
        };
        if matches!(decision, Decision::Create | Decision::Replace(_)) && !h.pulled.contains(&d.image.as_str()) {
            h.pulled.push(&d.image);
            prep.push(Action::Pull { host: h.name.to_string(), image: d.image.clone() });
        }
        Some(decision)
    }
}

fn claim(h: &mut HostState<'_>, c: &ObservedContainer) {
    if let Some(m) = h.mine.iter_mut().find(|m| std::ptr::eq(m.container, c)) {
        m.claimed = true;
    }
}

/// Containers of this app+namespace on a host: the only ones the planner may ever touch.
fn ours<'a>(obs: &'a HostObservation, app: &'a str, ns: &'a str) -> impl Iterator<Item = &'a ObservedContainer> + 'a {
    obs.containers.iter().filter(move |c| labels::belongs_to(&c.labels, app, ns))
}

/// Among several containers of one component, the one to keep: up beats stopped (it is serving),
/// then newest, then the smallest id so the choice is deterministic.
fn best<'a>(cs: impl Iterator<Item = &'a ObservedContainer>) -> Option<&'a ObservedContainer> {
    cs.min_by(|a, b| b.state.is_up().cmp(&a.state.is_up()).then(b.created.cmp(&a.created)).then(a.id.cmp(&b.id)))
}

fn act(w: &Want<'_>, decision: Decision<'_>) -> Option<Action> {
    let host = w.host.to_string();
    match decision {
        Decision::Nothing => None,
        Decision::Start(c) => Some(Action::Start { host, id: c.id.clone(), name: c.name.clone() }),
        Decision::Replace(c) => {
            Some(Action::Replace { host, old_id: c.id.clone(), old_name: c.name.clone(), new: w.container() })
        }
        Decision::Create => Some(Action::Create { host, container: w.container() }),
    }
}

pub(crate) fn plan<O: Borrow<HostObservation>>(
    app: &App,
    hosts: &[Host],
    desired: &DesiredState,
    observed: &BTreeMap<String, O>,
) -> Result<Plan, PlanError> {
    let want: Vec<Want<'_>> =
        desired.templates().flat_map(|(template, on)| on.iter().map(move |host| Want { host, template })).collect();
    let (app_name, ns) = (app.metadata.name.as_str(), app.namespace());

    let mut host_names: Vec<&str> = hosts.iter().map(|h| h.metadata.name.as_str()).collect();
    host_names.sort_unstable();
    host_names.dedup();
    let mut states = Vec::new();
    let mut unreachable = Vec::new();
    for name in host_names {
        match observed.get(name).map(Borrow::borrow) {
            Some(obs) if obs.reachable => states.push(HostState {
                name,
                obs,
                mine: ours(obs, app_name, ns)
                    .map(|c| Mine { container: c, component: labels::component_of(&c.labels), claimed: false })
                    .collect(),
                networked: false,
                pulled: Vec::new(),
            }),
            _ => unreachable.push(name.to_string()),
        }
    }
    let mut b = Builder {
        network: labels::network_name(app_name, ns),
        index: states.iter().enumerate().map(|(i, h)| (h.name, i)).collect(),
        hosts: states,
    };

    // Phase 1: accessories, in name then host order; replacements are not batched.
    let mut accessories = Vec::new();
    for w in want.iter().filter(|w| matches!(w.template.component, Component::Accessory(_))) {
        if let Some(decision) = b.decide(w, &mut accessories) {
            accessories.extend(act(w, decision));
        }
    }

    // Phase 2: roles, each after the accessories it depends on.
    let mut roles = Vec::new();
    if app.metadata.deletion_timestamp.is_none() {
        for (role_name, role) in &app.spec.roles {
            let deps: Vec<&String> = match &role.depends_on {
                Some(list) => list.iter().collect(),
                None => app.spec.accessories.keys().collect(),
            };
            let mut waits_for = Vec::new();
            for dep in deps {
                if !app.spec.accessories.contains_key(dep) {
                    return Err(PlanError::UnknownAccessory { role: role_name.clone(), accessory: dep.clone() });
                }
                let comp = Component::Accessory(dep.clone());
                waits_for.extend(
                    want.iter()
                        .filter(|w| w.template.component == comp)
                        .map(|w| (w.host.to_string(), w.template.name.clone())),
                );
            }

            let comp = Component::Role(role_name.clone());
            let mut mine: Vec<&Want<'_>> = want.iter().filter(|w| w.template.component == comp).collect();
            // A role with `hostEnv` has a template per env; its hosts still roll in name order.
            mine.sort_by_key(|w| w.host);
            let mut first = Vec::new();
            let mut replaces = Vec::new();
            for w in &mine {
                match b.decide(w, &mut first) {
                    Some(decision @ Decision::Replace(_)) => replaces.extend(act(w, decision)),
                    Some(decision) => first.extend(act(w, decision)),
                    None => {}
                }
            }
            let per_batch = desired.rollout().max_unavailable.at_once(mine.len());
            let mut batches = Vec::new();
            if !first.is_empty() {
                batches.push(first);
            }
            // Moved into their batches, not cloned: each holds a whole desired container.
            let mut replaces = replaces.into_iter().peekable();
            while replaces.peek().is_some() {
                batches.push(replaces.by_ref().take(per_batch.max(1)).collect());
            }
            if !batches.is_empty() {
                roles.push(RoleStep { role: role_name.clone(), waits_for, batches });
            }
        }
    }

    // Phase 3: prune everything of ours that no desired container kept, on every visible host.
    let mut prune = Vec::new();
    let wanted_hosts: HashSet<&str> = want.iter().map(|w| w.host).collect();
    for h in &b.hosts {
        let mut leftovers: Vec<&ObservedContainer> = h
            .mine
            .iter()
            .filter(|m| !m.claimed && m.container.state != ContainerState::Removing)
            .map(|m| m.container)
            .collect();
        leftovers.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        for c in leftovers {
            let (host, id, name) = (h.name.to_string(), c.id.clone(), c.name.clone());
            if c.state.is_up() {
                prune.push(Action::Stop { host: host.clone(), id: id.clone(), name: name.clone() });
            }
            prune.push(Action::Remove { host, id, name });
        }
        if !wanted_hosts.contains(h.name)
            && h.obs.networks.iter().any(|n| n.name == b.network && labels::belongs_to(&n.labels, app_name, ns))
        {
            prune.push(Action::RemoveNetwork { host: h.name.to_string(), network: b.network.clone() });
        }
    }

    Ok(Plan { app: app_name.to_string(), namespace: ns.to_string(), accessories, roles, prune, unreachable })
}
