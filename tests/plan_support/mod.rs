//! Shared fixtures for the planner tests: resources as plain data, observations, and a
//! converge loop built on `plan::simulate`.
#![allow(dead_code)]

use std::collections::BTreeMap;

use berth::plan::{self, labels, Action, ContainerState, HostObservation, ObservedContainer, ObservedNetwork, Plan};
use berth::spec::{App, Host};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A Host resource named `name`.
pub fn host(name: &str) -> Host {
    serde_json::from_value(json!({
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "Host",
        "metadata": {"name": name},
        "spec": {"endpoint": format!("ssh://root@{name}")}
    }))
    .unwrap()
}

pub fn hosts(names: &[&str]) -> Vec<Host> {
    names.iter().map(|n| host(n)).collect()
}

/// An App from its `spec` as JSON, in the given namespace.
pub fn app(name: &str, namespace: &str, spec: Value) -> App {
    serde_json::from_value(json!({
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "App",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec
    }))
    .unwrap()
}

/// The usual test app: `web` on h1+h2, `worker` on h3, accessory `db` on h3 and `cache` on h1.
pub fn shop() -> App {
    app(
        "shop",
        "production",
        json!({
            "image": "registry.local/shop:v1",
            "env": {"DATABASE_URL": "postgres://shop:s3cret@db/shop", "MODE": "prod"},
            "roles": {
                "web": {"hosts": ["h1", "h2"], "ports": ["80:8080"], "env": {"MODE": "web"},
                        "healthcheck": {"cmd": "curl -f localhost:8080/up", "interval": "2s"}},
                "worker": {"hosts": ["h3"], "cmd": "bin/worker", "dependsOn": ["db"]}
            },
            "accessories": {
                "db": {"image": "postgres:16", "hosts": ["h3"], "volumes": ["pgdata:/var/lib/postgresql/data"],
                       "env": {"POSTGRES_PASSWORD": "s3cret"},
                       "healthcheck": {"cmd": ["pg_isready"], "interval": "1s"}},
                "cache": {"image": "redis:7", "hosts": ["h1"]}
            }
        }),
    )
}

/// Pins every reference of the spec (and any extra ones) to a fake digest derived from it.
pub fn images_for(app: &App) -> BTreeMap<String, String> {
    let mut refs = vec![app.spec.image.clone()];
    refs.extend(app.spec.accessories.values().map(|a| a.image.clone()));
    refs.into_iter().map(|r| (r.clone(), pin(&r))).collect()
}

pub fn pin(r: &str) -> String {
    let repo = r.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(r, |(repo, _)| repo);
    format!("{repo}@sha256:{}", hex::encode(Sha256::digest(r.as_bytes())))
}

/// Every host reachable and empty.
pub fn empty(hosts: &[Host]) -> BTreeMap<String, HostObservation> {
    hosts.iter().map(|h| (h.metadata.name.clone(), HostObservation { reachable: true, ..Default::default() })).collect()
}

pub fn plan_of(app: &App, hosts: &[Host], obs: &BTreeMap<String, HostObservation>) -> Plan {
    plan::plan(app, hosts, &images_for(app), obs).expect("plan")
}

/// Plans and applies once; returns the plan that was applied.
pub fn converge(app: &App, hosts: &[Host], obs: &mut BTreeMap<String, HostObservation>) -> Plan {
    let p = plan_of(app, hosts, obs);
    plan::simulate(&p, obs);
    p
}

/// A container that berth did not create (or created for someone else), with arbitrary labels.
pub fn container(id: &str, name: &str, labels: &[(&str, &str)], state: ContainerState) -> ObservedContainer {
    ObservedContainer {
        id: id.into(),
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        state,
        health: None,
        image: "busybox".into(),
        created: 1,
    }
}

/// A berth-managed container of `app`/`ns` running `role` with the given hash.
pub fn managed(id: &str, app: &str, ns: &str, role: &str, hash: &str, state: ContainerState) -> ObservedContainer {
    let labels = labels::container_labels(app, ns, &labels::Component::Role(role.into()), hash, &BTreeMap::new());
    ObservedContainer {
        id: id.into(),
        name: format!("{app}-{ns}-{role}-{}", &hash[..8.min(hash.len())]),
        labels,
        state,
        health: None,
        image: "busybox".into(),
        created: 1,
    }
}

pub fn network(name: &str, labels: BTreeMap<String, String>) -> ObservedNetwork {
    ObservedNetwork { name: name.into(), labels }
}

/// Ids of existing containers the plan touches, with their host.
pub fn targets(p: &Plan) -> Vec<(String, String)> {
    p.actions().filter_map(|a| a.target_id().map(|id| (a.host().to_string(), id.to_string()))).collect()
}

/// `verb host` strings, for compact assertions.
pub fn verbs(p: &Plan) -> Vec<String> {
    p.actions().map(|a| format!("{} {}", a.verb(), a.host())).collect()
}

pub fn count(p: &Plan, pred: impl Fn(&Action) -> bool) -> usize {
    p.actions().filter(|a| pred(a)).count()
}
