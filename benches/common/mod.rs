//! The fleet both plan benches plan: hosts, pinned images and an app of five roles and three
//! accessories, built the way `berth apply` would store them.

use std::collections::BTreeMap;

use berth::plan::HostObservation;
use berth::spec::{App, Host};
use serde_json::json;

/// `n` Hosts named `h0`, `h1`, …
pub fn hosts(n: usize) -> Vec<Host> {
    (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "apiVersion": "berth.dev/v1alpha1", "kind": "Host",
                "metadata": {"name": format!("h{i}")},
                "spec": {"endpoint": format!("tcp://10.{}.{}.{}:2376", i / 65536, (i / 256) % 256, i % 256), "insecure": true}
            }))
            .unwrap()
        })
        .collect()
}

/// Every image reference of the apps, pinned as the engine would pin it.
pub fn images() -> BTreeMap<String, String> {
    ["registry.local/shop:1", "postgres:16", "redis:7", "meili:1"]
        .iter()
        .map(|r| (r.to_string(), format!("{r}@sha256:{}", "ab".repeat(32))))
        .collect()
}

/// Five roles, each on every other of `n_hosts` hosts, three accessories, 25% maxUnavailable,
/// healthchecks and limits on every role; `version` goes into the roles' env, so a new version
/// replaces every role container.
pub fn big_app(n_hosts: usize, version: &str) -> App {
    let names: Vec<String> = (0..n_hosts).map(|i| format!("h{i}")).collect();
    let mut roles = serde_json::Map::new();
    for (r, name) in ["web", "api", "worker", "cron", "admin"].iter().enumerate() {
        let on: Vec<&String> = names.iter().skip(r).step_by(2).collect();
        roles.insert(
            name.to_string(),
            json!({"hosts": on, "env": {"VERSION": version, "ROLE": name}, "ports": ["8080:80"],
                   "healthcheck": {"cmd": "curl -f localhost/up", "interval": "2s"}, "memory": "512m", "cpus": 0.5}),
        );
    }
    serde_json::from_value(json!({
        "apiVersion": "berth.dev/v1alpha1", "kind": "App",
        "metadata": {"name": "shop", "namespace": "production", "generation": 1},
        "spec": {
            "image": "registry.local/shop:1",
            "env": {"DATABASE_URL": "postgres://db/shop"},
            "roles": roles,
            "accessories": {
                "db": {"image": "postgres:16", "hosts": ["h0"], "volumes": ["pg:/var/lib/postgresql/data"]},
                "cache": {"image": "redis:7", "hosts": ["h1", "h2"]},
                "search": {"image": "meili:1", "hosts": ["h3"]}
            },
            "rollout": {"maxUnavailable": "25%"}
        }
    }))
    .unwrap()
}

/// Every host reachable and empty.
pub fn empty(hs: &[Host]) -> BTreeMap<String, HostObservation> {
    hs.iter().map(|h| (h.metadata.name.clone(), HostObservation { reachable: true, ..Default::default() })).collect()
}
