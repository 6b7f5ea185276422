//! How long planning takes for a large app, so the converge loop's pure part stays negligible
//! next to Docker round trips. Needs `[[bench]] name = "plan", harness = false` in Cargo.toml.
#![allow(dead_code)] // Under the default libtest harness `main` below is unused; the bench still compiles.

use std::collections::BTreeMap;
use std::hint::black_box;

use berth::plan::{self, HostObservation};
use berth::spec::{App, Host};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

const HOSTS: usize = 100;

fn hosts() -> Vec<Host> {
    (0..HOSTS)
        .map(|i| {
            serde_json::from_value(json!({
                "apiVersion": "berth.dev/v1alpha1", "kind": "Host",
                "metadata": {"name": format!("h{i}")},
                "spec": {"endpoint": format!("ssh://root@10.0.0.{i}")}
            }))
            .unwrap()
        })
        .collect()
}

/// Five roles spread over 100 hosts, three accessories, 25% maxUnavailable.
fn app(version: &str) -> App {
    let names: Vec<String> = (0..HOSTS).map(|i| format!("h{i}")).collect();
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
        "metadata": {"name": "shop", "namespace": "production"},
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

fn images() -> BTreeMap<String, String> {
    ["registry.local/shop:1", "postgres:16", "redis:7", "meili:1"]
        .iter()
        .map(|r| (r.to_string(), format!("{r}@sha256:{}", "ab".repeat(32))))
        .collect()
}

fn bench(c: &mut Criterion) {
    let (hs, imgs) = (hosts(), images());
    let empty: BTreeMap<String, HostObservation> = hs
        .iter()
        .map(|h| (h.metadata.name.clone(), HostObservation { reachable: true, ..Default::default() }))
        .collect();
    let v1 = app("1");
    let mut converged = empty.clone();
    plan::simulate(&plan::plan(&v1, &hs, &imgs, &empty).unwrap(), &mut converged);
    let v2 = app("2");

    c.bench_function("desired/100 hosts", |b| b.iter(|| plan::desired(black_box(&v1), &hs, &imgs).unwrap()));
    c.bench_function("plan/fresh 100 hosts", |b| b.iter(|| plan::plan(black_box(&v1), &hs, &imgs, &empty).unwrap()));
    c.bench_function("plan/no-op 100 hosts", |b| {
        b.iter(|| plan::plan(black_box(&v1), &hs, &imgs, &converged).unwrap())
    });
    c.bench_function("plan/rolling 100 hosts", |b| {
        b.iter(|| plan::plan(black_box(&v2), &hs, &imgs, &converged).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
