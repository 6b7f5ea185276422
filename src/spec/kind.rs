//! The kinds of resource berth knows, with the names Kubernetes tooling expects.

use std::fmt;

use super::types::Resource;

/// A resource kind; one place for its singular, plural and scope so parse, store and CRDs agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An application in a namespace.
    App,
    /// A Docker host (cluster-scoped).
    Host,
    /// Sealed values an App uses (namespaced).
    Secret,
}

impl Kind {
    /// Every kind, in the order they should be applied (hosts before the apps naming them).
    pub const ALL: [Kind; 3] = [Kind::Host, Kind::Secret, Kind::App];

    /// The `kind:` value users write.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::App => "App",
            Kind::Host => "Host",
            Kind::Secret => "Secret",
        }
    }

    /// Lowercase plural used in CRD names and URLs (`apps`, `hosts`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::App => "apps",
            Kind::Host => "hosts",
            Kind::Secret => "secrets",
        }
    }

    /// Apps live in a namespace (destination); Hosts are cluster-wide.
    pub fn namespaced(self) -> bool {
        matches!(self, Kind::App | Kind::Secret)
    }

    /// Parses a `kind:` value exactly (case-sensitive, as Kubernetes does).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Resource {
    /// The kind of this resource, for dispatch without matching on the payload.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::App(_) => Kind::App,
            Resource::Host(_) => Kind::Host,
            Resource::Secret(_) => Kind::Secret,
        }
    }

    /// The metadata name (`shop`, `host1`).
    pub fn name(&self) -> &str {
        match self {
            Resource::App(a) => &a.metadata.name,
            Resource::Host(h) => &h.metadata.name,
            Resource::Secret(s) => &s.metadata.name,
        }
    }

    /// The namespace for Apps (defaulted), `None` for cluster-scoped Hosts.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Resource::App(a) => Some(a.namespace()),
            Resource::Host(_) => None,
            Resource::Secret(s) => Some(s.namespace()),
        }
    }
}
