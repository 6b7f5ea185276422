//! The etcd key layout: a public contract (README "Key layout"), so other tools can read berth's state.

/// Default root of every key berth writes; `--prefix` changes it.
pub const DEFAULT_PREFIX: &str = "/berth";

/// Builds and parses keys under one prefix, so no other module formats key strings by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// What a key under the prefix names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    Host { name: String },
    App { namespace: String, name: String },
    Status { namespace: String, name: String },
    Secret { namespace: String, name: String },
}

impl Keys {
    /// A prefix with or without a trailing slash is the same prefix.
    pub fn new(prefix: &str) -> Keys {
        let trimmed = prefix.trim_end_matches('/');
        Keys { prefix: trimmed.to_string() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Everything berth owns: the operator lists and watches this once.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub fn host(&self, name: &str) -> String {
        format!("{}/hosts/{}", self.prefix, name)
    }

    pub fn hosts(&self) -> String {
        format!("{}/hosts/", self.prefix)
    }

    pub fn app(&self, namespace: &str, name: &str) -> String {
        format!("{}/apps/{}/{}", self.prefix, namespace, name)
    }

    /// All apps, or the apps of one namespace.
    pub fn apps(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!("{}/apps/{}/", self.prefix, ns),
            None => format!("{}/apps/", self.prefix),
        }
    }

    pub fn status(&self, namespace: &str, name: &str) -> String {
        format!("{}/status/apps/{}/{}", self.prefix, namespace, name)
    }

    /// The spec and pins of an App's last Ready generation: what berth runs while a newer
    /// generation's rollout has failed. Holds env values, so no command prints it.
    pub fn last_ready(&self, namespace: &str, name: &str) -> String {
        format!("{}/lastready/apps/{}/{}", self.prefix, namespace, name)
    }

    /// The image pins of an App (spec reference → `repo@sha256:…`): a key of their own, so no
    /// corrupt status can ever make berth resolve a tag again.
    pub fn pins(&self, namespace: &str, name: &str) -> String {
        format!("{}/pins/{}/{}", self.prefix, namespace, name)
    }

    /// One recorded generation of an App (`berth history`, `berth rollback`): its spec, pins and
    /// outcome. Holds env values, so only `berth history --generation N -o yaml|json` prints one.
    pub fn history(&self, namespace: &str, name: &str, generation: i64) -> String {
        format!("{}{}", self.history_prefix(namespace, name), generation)
    }

    /// Every recorded generation of one App (the trailing slash keeps `shop` from matching `shop2`).
    pub fn history_prefix(&self, namespace: &str, name: &str) -> String {
        format!("{}/history/{}/{}/", self.prefix, namespace, name)
    }

    /// A Secret: sealed values only, never plain ones.
    pub fn secret(&self, namespace: &str, name: &str) -> String {
        format!("{}/secrets/{}/{}", self.prefix, namespace, name)
    }

    /// All Secrets, or those of one namespace.
    pub fn secrets(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!("{}/secrets/{}/", self.prefix, ns),
            None => format!("{}/secrets/", self.prefix),
        }
    }

    /// The age recipients the operator publishes, so `berth apply` and `berth seal` seal to it.
    pub fn recipients(&self) -> String {
        format!("{}/config/recipients", self.prefix)
    }

    /// The inventory of the apply set `name` (`berth apply --prune --set NAME`).
    pub fn applyset(&self, name: &str) -> String {
        format!("{}/applysets/{}", self.prefix, name)
    }

    /// Every apply set's inventory.
    pub fn applysets(&self) -> String {
        format!("{}/applysets/", self.prefix)
    }

    /// The operator's leader-election key.
    pub fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// Classifies a key seen in a list or a watch; `None` for keys berth does not own.
    pub fn parse(&self, key: &str) -> Option<KeyKind> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["hosts", name] if !name.is_empty() => Some(KeyKind::Host { name: name.to_string() }),
            ["apps", ns, name] if !ns.is_empty() && !name.is_empty() => {
                Some(KeyKind::App { namespace: ns.to_string(), name: name.to_string() })
            }
            ["secrets", ns, name] if !ns.is_empty() && !name.is_empty() => {
                Some(KeyKind::Secret { namespace: ns.to_string(), name: name.to_string() })
            }
            ["status", "apps", ns, name] if !ns.is_empty() && !name.is_empty() => {
                Some(KeyKind::Status { namespace: ns.to_string(), name: name.to_string() })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_documented_contract() {
        let k = Keys::new("/berth/");
        assert_eq!(k.host("web-1"), "/berth/hosts/web-1");
        assert_eq!(k.app("production", "shop"), "/berth/apps/production/shop");
        assert_eq!(k.status("production", "shop"), "/berth/status/apps/production/shop");
        assert_eq!(k.apps(Some("staging")), "/berth/apps/staging/");
        assert_eq!(k.last_ready("production", "shop"), "/berth/lastready/apps/production/shop");
        assert_eq!(k.pins("production", "shop"), "/berth/pins/production/shop");
        assert_eq!(k.applyset("web"), "/berth/applysets/web");
        assert_eq!(k.history("production", "shop", 3), "/berth/history/production/shop/3");
        assert_eq!(k.history_prefix("production", "shop"), "/berth/history/production/shop/");
    }

    #[test]
    fn parse_round_trips_and_rejects_foreign_keys() {
        let k = Keys::new("/x");
        assert_eq!(k.parse(&k.app("a", "b")), Some(KeyKind::App { namespace: "a".into(), name: "b".into() }));
        assert_eq!(k.parse(&k.host("h")), Some(KeyKind::Host { name: "h".into() }));
        assert_eq!(k.parse(&k.status("a", "b")), Some(KeyKind::Status { namespace: "a".into(), name: "b".into() }));
        assert_eq!(k.parse("/x/apps/a"), None);
        assert_eq!(k.parse("/xy/hosts/h"), None);
        assert_eq!(k.parse("/x/leader"), None);
    }
}
