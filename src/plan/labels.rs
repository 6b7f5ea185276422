//! The label contract: how berth recognises, on a Docker host, what it owns.
//!
//! Labels — never names — are the only thing berth trusts when it decides whether a container or a
//! network is its own. Kamal's prune filtered by a prefix of the service name and removed other
//! destinations' containers; berth filters on the full triple `managed-by` + `app` + `namespace`.
//! These keys are a public contract: other tools may select berth's containers with them, and a
//! berth upgrade must keep recognising containers created by an older berth.
//!
//! This module is self-contained (it depends on `std` and `serde` only) so it can move to
//! `docker::labels` without touching the planner.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Prefix reserved for berth: user labels under it are dropped so they can never forge ownership.
pub const PREFIX: &str = "berth.";
/// Marks a container or network as created by berth; anything without it is never touched.
pub const MANAGED_BY: &str = "berth.managed-by";
/// The only value of [`MANAGED_BY`] berth writes or accepts.
pub const MANAGED_BY_VALUE: &str = "berth";
/// The App's `metadata.name`.
pub const APP: &str = "berth.app";
/// The App's namespace (destination), so staging and production on one host stay apart.
pub const NAMESPACE: &str = "berth.namespace";
/// The role a container runs; exclusive with [`ACCESSORY`].
pub const ROLE: &str = "berth.role";
/// The accessory a container runs; exclusive with [`ROLE`].
pub const ACCESSORY: &str = "berth.accessory";
/// Hash of the container's canonical runtime config; a different value means "replace me".
pub const CONFIG_HASH: &str = "berth.config-hash";

/// What a container is within its app: one of the roles or one of the accessories.
///
/// Roles and accessories live in separate label keys, so a role and an accessory may share a
/// name without ever being mistaken for each other.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "camelCase")]
pub enum Component {
    /// An app container of the named role (runs the app image).
    Role(String),
    /// A supporting container of the named accessory (runs its own image).
    Accessory(String),
}

impl Component {
    /// The role or accessory name, as written in the spec; also the container's network alias.
    pub fn name(&self) -> &str {
        match self {
            Component::Role(n) | Component::Accessory(n) => n,
        }
    }

    /// `role` or `accessory`: how tables and error messages say which kind this is.
    pub fn kind(&self) -> &'static str {
        match self {
            Component::Role(_) => "role",
            Component::Accessory(_) => "accessory",
        }
    }

    /// The label key that carries this component's name.
    pub fn label_key(&self) -> &'static str {
        match self {
            Component::Role(_) => ROLE,
            Component::Accessory(_) => ACCESSORY,
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind(), self.name())
    }
}

/// True when berth created this object: the only objects berth may ever stop or remove.
pub fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// True when the object is berth's and belongs to exactly this app in exactly this namespace.
///
/// This is the one ownership test the planner uses; a name that merely looks right is not enough.
pub fn belongs_to(labels: &BTreeMap<String, String>, app: &str, namespace: &str) -> bool {
    // The app first: a host lists every app's containers, and for all but this app's the test fails
    // there, after one look-up instead of two.
    labels.get(APP).map(String::as_str) == Some(app)
        && labels.get(NAMESPACE).map(String::as_str) == Some(namespace)
        && is_managed(labels)
}

/// The component a managed container runs, or `None` when its labels are missing or contradictory
/// (both a role and an accessory) — such a container matches no desired container and is pruned.
pub fn component_of(labels: &BTreeMap<String, String>) -> Option<Component> {
    match (labels.get(ROLE), labels.get(ACCESSORY)) {
        (Some(r), None) => Some(Component::Role(r.clone())),
        (None, Some(a)) => Some(Component::Accessory(a.clone())),
        _ => None,
    }
}

/// The config hash a container was created with, if it carries one.
pub fn config_hash_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(CONFIG_HASH).map(String::as_str)
}

/// Identity labels of a container, without the config hash: user labels from the spec overlaid by
/// berth's own keys. Any user key starting with [`PREFIX`] is dropped, so a spec can never claim
/// another app's containers or disown its own.
///
/// The hash is left out because it is computed over these labels; [`container_labels`] adds it.
pub fn identity_labels(
    app: &str,
    namespace: &str,
    component: &Component,
    user: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> =
        user.iter().filter(|(k, _)| !k.starts_with(PREFIX)).map(|(k, v)| (k.clone(), v.clone())).collect();
    out.insert(MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string());
    out.insert(APP.to_string(), app.to_string());
    out.insert(NAMESPACE.to_string(), namespace.to_string());
    out.insert(component.label_key().to_string(), component.name().to_string());
    out
}

/// The full label set of a container berth creates: [`identity_labels`] plus [`CONFIG_HASH`].
pub fn container_labels(
    app: &str,
    namespace: &str,
    component: &Component,
    hash: &str,
    user: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = identity_labels(app, namespace, component, user);
    out.insert(CONFIG_HASH.to_string(), hash.to_string());
    out
}

/// The per-host bridge network of one app in one namespace; its containers find each other on it
/// by role/accessory alias.
pub fn network_name(app: &str, namespace: &str) -> String {
    format!("berth-{app}-{namespace}")
}

/// Labels of the app network, so prune can tell berth's network from a same-named foreign one.
pub fn network_labels(app: &str, namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (APP.to_string(), app.to_string()),
        (NAMESPACE.to_string(), namespace.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_labels_cannot_override_berth_keys() {
        let user = BTreeMap::from([
            ("berth.app".to_string(), "other".to_string()),
            ("berth.managed-by".to_string(), "nobody".to_string()),
            ("berth.anything".to_string(), "x".to_string()),
            ("team".to_string(), "web".to_string()),
        ]);
        let l = container_labels("shop", "prod", &Component::Role("web".into()), "abc", &user);
        assert_eq!(l[APP], "shop");
        assert_eq!(l[MANAGED_BY], "berth");
        assert_eq!(l[CONFIG_HASH], "abc");
        assert_eq!(l["team"], "web");
        assert!(!l.contains_key("berth.anything"));
        assert!(belongs_to(&l, "shop", "prod"));
        assert!(!belongs_to(&l, "shop", "staging"));
        assert_eq!(component_of(&l), Some(Component::Role("web".into())));
    }

    #[test]
    fn contradictory_component_labels_match_nothing() {
        let mut l = container_labels("a", "b", &Component::Role("web".into()), "h", &BTreeMap::new());
        l.insert(ACCESSORY.into(), "db".into());
        assert_eq!(component_of(&l), None);
    }
}
