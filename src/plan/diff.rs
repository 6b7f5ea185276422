//! Desired vs observed: the ordered actions that converge one app in one namespace.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::{App, Host};

use super::desired::templates;
use super::labels::{self, Component};
use super::types::{
    Action, ContainerState, DesiredContainer, HostObservation, ObservedContainer, Plan, PlanError, RoleStep,
};

/// One desired container, not yet copied out of its component's template.
struct Want<'t> {
    host: &'t str,
    template: &'t DesiredContainer,
}

impl Want<'_> {
    /// The container itself, as `desired()` gives it; made only for an action that carries it.
    fn container(&self) -> DesiredContainer {
        DesiredContainer { host: self.host.to_string(), ..self.template.clone() }
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

/// Plan-wide bookkeeping so each network and each image is handled once per host.
struct Builder<'a> {
    network: String,
    visible: BTreeMap<&'a str, &'a HostObservation>,
    /// This app's containers on each visible host with their component, sorted out once per plan
    /// (not once per desired container: a host lists every app's containers).
    mine: BTreeMap<&'a str, Vec<(&'a ObservedContainer, Option<Component>)>>,
    /// `(host, id)` of containers a desired container keeps (or replaces itself); prune skips them.
    claimed: BTreeSet<(&'a str, &'a str)>,
    /// Hosts whose network was already checked.
    networked: BTreeSet<&'a str>,
    /// `(host, image)` pairs already pulled in this plan.
    pulled: BTreeSet<(String, String)>,
}

impl<'a> Builder<'a> {
    /// Appends the prerequisites of `d` (network on first sight of the host, image pull when a
    /// container will be created) and returns what to do with `d` itself.
    fn decide(&mut self, w: &Want<'_>, prep: &mut Vec<Action>) -> Option<Decision<'a>> {
        let d = w.template;
        let (&host, &obs) = self.visible.get_key_value(w.host)?;
        if self.networked.insert(host) && !obs.networks.iter().any(|n| n.name == self.network) {
            // A same-named network without our labels still blocks creation, so it counts as present.
            prep.push(Action::CreateNetwork { host: host.to_string(), network: self.network.clone() });
        }
        let same_component: Vec<&'a ObservedContainer> = self.mine[host]
            .iter()
            .filter(|(_, component)| component.as_ref() == Some(&d.component))
            .map(|(c, _)| *c)
            .collect();
        let hash_of = |c: &ObservedContainer| labels::config_hash_of(&c.labels) == Some(d.hash.as_str());
        let (going, live): (Vec<_>, Vec<_>) =
            same_component.into_iter().partition(|c| c.state == ContainerState::Removing);
        let current: Vec<_> = live.iter().copied().filter(|c| hash_of(c)).collect();

        let decision = if let Some(keep) = best(&current) {
            self.claim(host, keep);
            if keep.state.is_up() {
                Decision::Nothing
            } else {
                Decision::Start(keep)
            }
        } else if going.iter().any(|c| hash_of(c)) {
            // The current container is being removed under our name; wait for it to go rather than
            // collide with it, and keep whatever else serves meanwhile.
            if let Some(keep) = best(&live) {
                self.claim(host, keep);
            }
            Decision::Nothing
        } else if let Some(keep) = best(&live) {
            self.claim(host, keep);
            Decision::Replace(keep)
        } else {
            Decision::Create
        };
        if matches!(decision, Decision::Create | Decision::Replace(_))
            && self.pulled.insert((host.to_string(), d.image.clone()))
        {
            prep.push(Action::Pull { host: host.to_string(), image: d.image.clone() });
        }
        Some(decision)
    }

    fn claim(&mut self, host: &'a str, c: &'a ObservedContainer) {
        self.claimed.insert((host, c.id.as_str()));
    }
}

/// Containers of this app+namespace on a host: the only ones the planner may ever touch.
fn ours<'a>(obs: &'a HostObservation, app: &'a str, ns: &'a str) -> impl Iterator<Item = &'a ObservedContainer> + 'a {
    obs.containers.iter().filter(move |c| labels::belongs_to(&c.labels, app, ns))
}

/// Among several containers of one component, the one to keep: up beats stopped (it is serving),
/// then newest, then the smallest id so the choice is deterministic.
fn best<'a>(cs: &[&'a ObservedContainer]) -> Option<&'a ObservedContainer> {
    cs.iter()
        .copied()
        .min_by(|a, b| b.state.is_up().cmp(&a.state.is_up()).then(b.created.cmp(&a.created)).then(a.id.cmp(&b.id)))
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

pub(crate) fn plan(
    app: &App,
    hosts: &[Host],
    images: &BTreeMap<String, String>,
    observed: &BTreeMap<String, HostObservation>,
) -> Result<Plan, PlanError> {
    let templates = templates(app, hosts, images)?;
    let want: Vec<Want<'_>> = templates
        .iter()
        .flat_map(|(template, on)| on.iter().map(move |host| Want { host, template }))
        .collect();
    let (app_name, ns) = (app.metadata.name.as_str(), app.namespace());

    let host_names: BTreeSet<&str> = hosts.iter().map(|h| h.metadata.name.as_str()).collect();
    let mut visible = BTreeMap::new();
    let mut unreachable = Vec::new();
    for h in &host_names {
        match observed.get(*h) {
            Some(o) if o.reachable => {
                visible.insert(*h, o);
            }
            _ => unreachable.push(h.to_string()),
        }
    }
    let mut b = Builder {
        network: labels::network_name(app_name, ns),
        mine: visible
            .iter()
            .map(|(h, obs)| (*h, ours(obs, app_name, ns).map(|c| (c, labels::component_of(&c.labels))).collect()))
            .collect(),
        visible,
        claimed: BTreeSet::new(),
        networked: BTreeSet::new(),
        pulled: BTreeSet::new(),
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
            let mine: Vec<&Want<'_>> = want.iter().filter(|w| w.template.component == comp).collect();
            let mut first = Vec::new();
            let mut replaces = Vec::new();
            for w in &mine {
                match b.decide(w, &mut first) {
                    Some(decision @ Decision::Replace(_)) => replaces.extend(act(w, decision)),
                    Some(decision) => first.extend(act(w, decision)),
                    None => {}
                }
            }
            let per_batch = crate::spec::max_unavailable(&app.spec.rollout.max_unavailable, mine.len());
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
    let wanted_hosts: BTreeSet<&str> = want.iter().map(|w| w.host).collect();
    for (host, obs) in &b.visible {
        let mut leftovers: Vec<&ObservedContainer> = b.mine[host]
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| c.state != ContainerState::Removing)
            .filter(|c| !b.claimed.contains(&(*host, c.id.as_str())))
            .collect();
        leftovers.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        for c in leftovers {
            let (host, id, name) = (host.to_string(), c.id.clone(), c.name.clone());
            if c.state.is_up() {
                prune.push(Action::Stop { host: host.clone(), id: id.clone(), name: name.clone() });
            }
            prune.push(Action::Remove { host, id, name });
        }
        if !wanted_hosts.contains(host)
            && obs.networks.iter().any(|n| n.name == b.network && labels::belongs_to(&n.labels, app_name, ns))
        {
            prune.push(Action::RemoveNetwork { host: host.to_string(), network: b.network.clone() });
        }
    }

    Ok(Plan { app: app_name.to_string(), namespace: ns.to_string(), accessories, roles, prune, unreachable })
}
