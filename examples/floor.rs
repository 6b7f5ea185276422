//! The floor `scripts/bench` compares a cold `berth converge` with: exactly the containers berth
//! would create for an App (same names, labels, config, network; from `berth::plan::desired` and
//! `berth::docker::ops::create_body`), created and started with the fewest Docker API calls the
//! same client library (bollard) allows, hosts and containers in parallel, accessories before roles.
//!
//! Calls made: per host that gets a container, one network create; per container, one create and
//! one start. No version negotiation (the API version is fixed), no listing, no image look-up or
//! pull (the images must already be on the hosts), no health polling (the bench apps have no
//! healthchecks, so "started" is "ready", as it is for berth).
//!
//! ```text
//! floor -f hosts.yaml -f app.yaml --image REF=PINNED... [--api 1.41]
//! ```
//! Prints the number of containers started and the time from the first call to the last answer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use bollard::{ClientVersion, Docker};
use futures::future::{join_all, try_join_all};

use berth::docker::ops::create_body;
use berth::plan::{self, labels, Component, DesiredContainer};
use berth::spec::{self, App, Host, Resource};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Creates and starts every container at once: one create and one start call each.
async fn start_all(clients: &BTreeMap<&str, Docker>, containers: Vec<&DesiredContainer>) -> Result<(), Error> {
    try_join_all(containers.into_iter().map(|d| async move {
        let docker = &clients[d.host.as_str()];
        let options = CreateContainerOptions { name: Some(d.name.clone()), ..Default::default() };
        let id = docker.create_container(Some(options), create_body(d)).await?.id;
        docker.start_container(&id, None::<StartContainerOptions>).await?;
        Ok::<(), Error>(())
    }))
    .await?;
    Ok(())
}

fn usage() -> ! {
    eprintln!("usage: floor -f FILE... --image REF=PINNED... [--api MAJOR.MINOR]");
    std::process::exit(1)
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("floor: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Error> {
    let mut files = Vec::new();
    let mut images = BTreeMap::new();
    let mut api = ClientVersion { major_version: 1, minor_version: 41 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-f" => files.push(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--image" => {
                let kv = args.next().unwrap_or_else(|| usage());
                let (k, v) = kv.split_once('=').unwrap_or_else(|| usage());
                images.insert(k.to_string(), v.to_string());
            }
            "--api" => {
                let v = args.next().unwrap_or_else(|| usage());
                let (ma, mi) = v.split_once('.').unwrap_or_else(|| usage());
                api = ClientVersion { major_version: ma.parse()?, minor_version: mi.parse()? };
            }
            _ => usage(),
        }
    }
    let mut hosts: Vec<Host> = Vec::new();
    let mut apps: Vec<App> = Vec::new();
    for l in spec::load_paths(&files).map_err(|e| e.to_string())? {
        match l.resource {
            Resource::Host(h) => hosts.push(h),
            Resource::App(a) => apps.push(a),
            Resource::Secret(_) => return Err("the floor takes no Secrets".into()),
        }
    }
    let [app] = <[App; 1]>::try_from(apps).map_err(|_| "give exactly one App")?;
    let want = plan::desired(&app, &hosts, &images)?;
    let (name, ns) = (app.metadata.name.as_str(), app.namespace());
    let network = labels::network_name(name, ns);
    let net_labels: std::collections::HashMap<String, String> = labels::network_labels(name, ns).into_iter().collect();

    // Clients are made before the clock starts; making one is local (no call).
    let mut clients: BTreeMap<&str, Docker> = BTreeMap::new();
    for h in &hosts {
        if !want.iter().any(|d| d.host == h.metadata.name) {
            continue;
        }
        let path = h.spec.endpoint.strip_prefix("unix://").ok_or("the floor speaks unix:// endpoints only")?;
        clients.insert(&h.metadata.name, Docker::connect_with_unix(path, 120, &api)?);
    }

    let started = Instant::now();
    let is_accessory = |d: &&DesiredContainer| matches!(d.component, Component::Accessory(_));
    // Per host: its network, then its accessories; every host at once.
    let first = join_all(clients.iter().map(|(host, docker)| {
        let on_host: Vec<&DesiredContainer> = want.iter().filter(|d| d.host == *host).filter(is_accessory).collect();
        let request = bollard::models::NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".into()),
            labels: Some(net_labels.clone()),
            ..Default::default()
        };
        let clients = &clients;
        async move {
            docker.create_network(request).await?;
            start_all(clients, on_host).await
        }
    }))
    .await;
    first.into_iter().collect::<Result<Vec<()>, Error>>()?;
    // Then every role container on every host at once.
    start_all(&clients, want.iter().filter(|d| !is_accessory(d)).collect()).await?;
    let took = started.elapsed();
    println!("{} containers started in {:.1} ms", want.len(), took.as_secs_f64() * 1e3);
    Ok(())
}
