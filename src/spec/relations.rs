//! How resources relate to one another (which hosts an App uses, which Hosts share a daemon), and
//! the metadata every kind carries. Pure: the store's checks and the operator's index ask these.

use std::collections::BTreeSet;

use super::{Accessory, App, AppSpec, Host, ObjectMeta};

/// Gives code that handles every resource kind (the store's apply rules) their metadata.
pub trait HasMeta {
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
}

impl HasMeta for super::secret::Secret {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl HasMeta for App {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl HasMeta for Host {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Every host an App's spec places a container on (roles and accessories).
pub fn hosts_of(app: &App) -> BTreeSet<String> {
    let roles = app.spec.roles.values().flat_map(|r| r.hosts.iter());
    let accessories = app.spec.accessories.values().flat_map(|a| a.hosts.iter());
    roles.chain(accessories).cloned().collect()
}

/// The hosts an accessory runs on: its own `hosts` and every host of the roles it names in `roles`
/// (an unknown role adds none; validation refuses it), each once, in name order.
pub fn accessory_hosts(spec: &AppSpec, acc: &Accessory) -> Vec<String> {
    let of_roles = acc.roles.iter().filter_map(|r| spec.roles.get(r)).flat_map(|r| r.hosts.iter());
    let all: BTreeSet<&String> = acc.hosts.iter().chain(of_roles).collect();
    all.into_iter().cloned().collect()
}

/// Whether an App places any container on a host.
pub fn app_uses_host(app: &App, host: &str) -> bool {
    app.spec.roles.values().any(|r| r.hosts.iter().any(|h| h == host))
        || app.spec.accessories.values().any(|a| a.hosts.iter().any(|h| h == host))
}

/// The other Hosts (by name) with `host`'s endpoint. Two Hosts for one daemon would each see the
/// other's containers as leftovers to prune, so a Host with a twin is refused.
pub fn endpoint_twins<'a>(host: &Host, hosts: &'a [Host]) -> Vec<&'a str> {
    hosts
        .iter()
        .filter(|o| o.metadata.name != host.metadata.name && o.spec.endpoint == host.spec.endpoint)
        .map(|o| o.metadata.name.as_str())
        .collect()
}

/// The Secrets an App reads (env, files, imagePullSecrets), by name, in its namespace.
pub fn secrets_used(app: &App) -> std::collections::BTreeSet<&str> {
    let mut out = std::collections::BTreeSet::new();
    let spec = &app.spec;
    out.extend(spec.image_pull_secrets.iter().map(String::as_str));
    out.extend(spec.env.values().filter_map(|v| v.secret_ref()).map(|r| r.name.as_str()));
    for r in spec.roles.values() {
        out.extend(r.env.values().filter_map(|v| v.secret_ref()).map(|r| r.name.as_str()));
        let per_host = r.host_env.values().flat_map(|env| env.values());
        out.extend(per_host.filter_map(|v| v.secret_ref()).map(|r| r.name.as_str()));
        out.extend(r.files.values().filter_map(|f| f.secret_key_ref.as_ref()).map(|r| r.name.as_str()));
        if let Some(super::proxy::ProxyTls::Secret { secret_ref }) = r.proxy.as_ref().and_then(|p| p.tls.as_ref()) {
            out.insert(secret_ref.as_str());
        }
    }
    for a in spec.accessories.values() {
        out.extend(a.image_pull_secrets.iter().map(String::as_str));
        out.extend(a.env.values().filter_map(|v| v.secret_ref()).map(|r| r.name.as_str()));
        out.extend(a.files.values().filter_map(|f| f.secret_key_ref.as_ref()).map(|r| r.name.as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(roles: &str, accessories: &str) -> App {
        serde_json::from_str(&format!(
            r#"{{"apiVersion": "berth.dev/v1alpha1", "kind": "App", "metadata": {{"name": "a"}},
                "spec": {{"image": "i", "roles": {roles}, "accessories": {accessories}}}}}"#
        ))
        .unwrap()
    }

    fn host(name: &str, endpoint: &str) -> Host {
        serde_json::from_str(&format!(
            r#"{{"apiVersion": "berth.dev/v1alpha1", "kind": "Host", "metadata": {{"name": "{name}"}},
                "spec": {{"endpoint": "{endpoint}"}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn an_app_uses_the_hosts_of_its_roles_and_its_accessories() {
        let a = app(r#"{"web": {"hosts": ["h1", "h2"]}}"#, r#"{"db": {"image": "d", "hosts": ["h3"]}}"#);
        assert_eq!(hosts_of(&a), ["h1", "h2", "h3"].map(String::from).into());
        for h in ["h1", "h2", "h3"] {
            assert!(app_uses_host(&a, h), "{h}");
        }
        assert!(!app_uses_host(&a, "h4"));
        assert!(hosts_of(&app("{}", "{}")).is_empty());
    }

    #[test]
    fn an_accessory_runs_on_its_hosts_and_its_roles_hosts() {
        let a = app(
            r#"{"web": {"hosts": ["h2", "h1"]}, "jobs": {"hosts": ["h4"]}}"#,
            r#"{"db": {"image": "d", "hosts": ["h3", "h1"], "roles": ["web"]}, "cache": {"image": "r", "roles": ["nope"]}}"#,
        );
        assert_eq!(accessory_hosts(&a.spec, &a.spec.accessories["db"]), ["h1", "h2", "h3"]);
        assert!(accessory_hosts(&a.spec, &a.spec.accessories["cache"]).is_empty());
    }

    #[test]
    fn secrets_read_per_host_count_as_used() {
        let a = app(
            r#"{"web": {"hosts": ["h1"], "hostEnv": {"h1": {"K": {"secretKeyRef": {"name": "tag1", "key": "k"}}}}}}"#,
            "{}",
        );
        assert!(secrets_used(&a).contains("tag1"));
    }

    #[test]
    fn twins_are_the_other_hosts_with_the_same_endpoint() {
        let hosts = [host("a", "tcp://x:2376"), host("b", "tcp://x:2376"), host("c", "unix:///s")];
        assert_eq!(endpoint_twins(&hosts[0], &hosts), vec!["b"]);
        assert_eq!(endpoint_twins(&hosts[2], &hosts), Vec::<&str>::new());
        // A Host is not its own twin, even when it is the one being re-applied.
        assert_eq!(endpoint_twins(&host("a", "tcp://x:2376"), &hosts[..1]), Vec::<&str>::new());
    }
}
