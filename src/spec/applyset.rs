//! Apply sets, after kubectl's ApplySets and Flux's inventory: the resources one `berth apply
//! --prune --set NAME` wrote form that set's inventory, and the next apply of the set prunes what
//! its files no longer hold — only that, never a resource applied by hand or by another set.
//!
//! Pure: what to prune and whether to refuse are decided here on plain data; the store writes the
//! inventory in the same transaction as the resources.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::types::Resource;

/// A resource's identity across kinds: what an inventory lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ResourceRef {
    Host { name: String },
    App { namespace: String, name: String },
    Secret { namespace: String, name: String },
}

impl ResourceRef {
    pub fn of(r: &Resource) -> ResourceRef {
        match r {
            Resource::Host(h) => ResourceRef::Host { name: h.metadata.name.clone() },
            Resource::App(a) => {
                ResourceRef::App { namespace: a.namespace().to_string(), name: a.metadata.name.clone() }
            }
            Resource::Secret(s) => {
                ResourceRef::Secret { namespace: s.namespace().to_string(), name: s.metadata.name.clone() }
            }
        }
    }

    pub fn is_app(&self) -> bool {
        matches!(self, ResourceRef::App { .. })
    }
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResourceRef::Host { name } => write!(f, "host/{name}"),
            ResourceRef::App { namespace, name } => write!(f, "app/{name} -n {namespace}"),
            ResourceRef::Secret { namespace, name } => write!(f, "secret/{name} -n {namespace}"),
        }
    }
}

/// What `<prefix>/applysets/NAME` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub name: String,
    pub resources: BTreeSet<ResourceRef>,
    /// When the set was last applied (RFC 3339).
    pub applied_at: String,
}

impl Inventory {
    pub fn apps(&self) -> usize {
        self.resources.iter().filter(|r| r.is_app()).count()
    }

    pub fn hosts(&self) -> usize {
        self.resources.iter().filter(|r| matches!(r, ResourceRef::Host { .. })).count()
    }

    pub fn secrets(&self) -> usize {
        self.resources.iter().filter(|r| matches!(r, ResourceRef::Secret { .. })).count()
    }
}

/// Why an apply of a set is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetRefusal {
    #[error("apply set {set}: the files hold no resource, so every resource of the set would be pruned; refused (--allow-mass-prune to allow)")]
    Empty { set: String },
    #[error("apply set {set}: would prune {} of its {apps} Apps ({}); refused (--allow-mass-prune to allow)", losing.len(), names(losing))]
    MassPrune { set: String, apps: usize, losing: Vec<ResourceRef> },
    #[error("{resource} belongs to apply set {owner}; refused (--force-adopt to move it to set {set})")]
    OwnedElsewhere { resource: ResourceRef, owner: String, set: String },
}

fn names(rs: &[ResourceRef]) -> String {
    rs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// What an apply of a set will do beyond writing its resources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetChange {
    /// In the previous inventory, not in the files: to delete (Apps are marked for deletion).
    pub prune: Vec<ResourceRef>,
    /// Resources taken over from another set (`--force-adopt`), with the set they leave.
    pub adopt: Vec<(ResourceRef, String)>,
}

/// Decides what applying `applied` as set `set` prunes and adopts, or why it is refused.
///
/// Guards: a set that would become empty, or lose more than half of its Apps at once, is refused
/// unless `allow_mass_prune` (a pipeline that checked out an empty or broken directory must never
/// wipe production); a resource listed by another set moves only with `force_adopt`.
pub fn plan_set(
    set: &str,
    applied: &BTreeSet<ResourceRef>,
    previous: Option<&Inventory>,
    others: &[Inventory],
    allow_mass_prune: bool,
    force_adopt: bool,
) -> Result<SetChange, SetRefusal> {
    if applied.is_empty() && !allow_mass_prune {
        return Err(SetRefusal::Empty { set: set.to_string() });
    }
    let mut adopt = Vec::new();
    for r in applied {
        if let Some(owner) = others.iter().find(|o| o.name != set && o.resources.contains(r)) {
            if !force_adopt {
                return Err(SetRefusal::OwnedElsewhere {
                    resource: r.clone(),
                    owner: owner.name.clone(),
                    set: set.into(),
                });
            }
            adopt.push((r.clone(), owner.name.clone()));
        }
    }
    let prune: Vec<ResourceRef> = match previous {
        Some(p) => p.resources.difference(applied).cloned().collect(),
        None => Vec::new(),
    };
    let losing: Vec<ResourceRef> = prune.iter().filter(|r| r.is_app()).cloned().collect();
    let apps = previous.map_or(0, Inventory::apps);
    if !allow_mass_prune && losing.len() * 2 > apps && !losing.is_empty() {
        return Err(SetRefusal::MassPrune { set: set.into(), apps, losing });
    }
    Ok(SetChange { prune, adopt })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(n: &str) -> ResourceRef {
        ResourceRef::App { namespace: "prod".into(), name: n.into() }
    }

    fn host(n: &str) -> ResourceRef {
        ResourceRef::Host { name: n.into() }
    }

    fn inv(name: &str, rs: &[ResourceRef]) -> Inventory {
        Inventory { name: name.into(), resources: rs.iter().cloned().collect(), applied_at: "t".into() }
    }

    fn set(rs: &[ResourceRef]) -> BTreeSet<ResourceRef> {
        rs.iter().cloned().collect()
    }

    #[test]
    fn what_left_the_files_is_pruned_and_nothing_else() {
        let prev = inv("web", &[app("a"), app("b"), app("c"), host("h1"), host("h2")]);
        let now = set(&[app("a"), app("b"), host("h1"), host("h2")]);
        let change = plan_set("web", &now, Some(&prev), &[], false, false).unwrap();
        assert_eq!(change.prune, vec![app("c")]);
        assert!(change.adopt.is_empty());
        // A first apply prunes nothing; an unchanged set prunes nothing.
        assert_eq!(plan_set("web", &now, None, &[], false, false).unwrap(), SetChange::default());
        assert!(plan_set("web", &set(&[app("a"), app("b"), app("c")]), Some(&prev), &[], false, false).is_ok());
    }

    #[test]
    fn an_empty_input_or_losing_more_than_half_the_apps_is_refused_unless_allowed() {
        let prev = inv("web", &[app("a"), app("b"), app("c"), host("h1")]);
        let e = plan_set("web", &BTreeSet::new(), Some(&prev), &[], false, false).unwrap_err();
        assert!(matches!(e, SetRefusal::Empty { .. }));
        assert!(e.to_string().contains("--allow-mass-prune"), "{e}");
        let e = plan_set("web", &set(&[app("a"), host("h1")]), Some(&prev), &[], false, false).unwrap_err();
        assert_eq!(e.to_string(), "apply set web: would prune 2 of its 3 Apps (app/b -n prod, app/c -n prod); refused (--allow-mass-prune to allow)");
        // Exactly half is allowed; with the flag anything is.
        let prev4 = inv("web", &[app("a"), app("b"), app("c"), app("d")]);
        assert!(plan_set("web", &set(&[app("a"), app("b")]), Some(&prev4), &[], false, false).is_ok());
        let all = plan_set("web", &BTreeSet::new(), Some(&prev), &[], true, false).unwrap();
        assert_eq!(all.prune.len(), 4);
    }

    #[test]
    fn a_resource_of_another_set_moves_only_when_adopted() {
        let other = inv("api", &[app("x")]);
        let now = set(&[app("a"), app("x")]);
        let e = plan_set("web", &now, None, std::slice::from_ref(&other), false, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "app/x -n prod belongs to apply set api; refused (--force-adopt to move it to set web)"
        );
        let change = plan_set("web", &now, None, &[other], false, true).unwrap();
        assert_eq!(change.adopt, vec![(app("x"), "api".to_string())]);
    }

    #[test]
    fn inventories_round_trip_as_json() {
        let i = inv("web", &[app("a"), host("h1")]);
        let text = serde_json::to_string(&i).unwrap();
        assert!(text.contains(r#"{"kind":"host","name":"h1"}"#), "{text}");
        assert_eq!(serde_json::from_str::<Inventory>(&text).unwrap(), i);
        assert_eq!((i.apps(), i.hosts()), (1, 1));
    }
}
