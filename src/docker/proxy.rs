//! The Docker side of a host's proxy: its container (Caddy, labelled `berth.system=proxy`), joining
//! containers to its network, writing its configuration and reloading it through Caddy's own
//! command (`caddy reload`, a graceful reload, never a restart), and probing an app's health path
//! from inside it (berth cannot reach container addresses on a remote host; the proxy can).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkConnectRequest, NetworkingConfig,
    PortBinding, RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptions, InspectContainerOptions};
use sha2::{Digest, Sha256};

use super::connect::{DockerError, HostClient};
use super::exec::{capture, Captured};
use super::files::{put_files, ContainerFile};
use crate::plan::routes::{
    caddy_config, proxy_labels, RouteTable, ADMIN_ADDRESS, CONFIG_DIR, PROXY_CONTAINER, PROXY_NETWORK,
};
use crate::spec::ProxySettings;

/// What a host's proxy serves as berth last loaded it, and into which container. `None` until read
/// back from the proxy (a restarted berth) or first written.
#[derive(Debug, Default)]
pub struct LoadedRoutes {
    /// The proxy container these routes are loaded in; another id means read them again.
    pub container_id: Option<String>,
    /// Every app's routes on this host.
    pub table: RouteTable,
    /// Certificate files (path → PEM) berth wrote, so a re-created proxy gets them all back.
    pub certificates: BTreeMap<String, crate::spec::SecretValue>,
}

/// Label holding the hash of the proxy's settings: another hash means re-create it.
pub const SETTINGS_HASH: &str = "berth.config-hash";

/// How long one command in the proxy may take (a reload, a read, a probe's own timeout aside).
const EXEC_LIMIT: Duration = Duration::from_secs(20);

/// A short hash of the settings that shape the proxy container.
pub fn settings_hash(s: &ProxySettings) -> String {
    let text = format!("v1|{}|{}|{:?}", s.image, s.http_port, s.https_port);
    hex::encode(Sha256::digest(text.as_bytes()))[..16].to_string()
}

/// The proxy container as it is on the host, if it exists.
#[derive(Debug, Clone)]
pub struct FoundProxy {
    pub id: String,
    pub running: bool,
    pub settings_hash: Option<String>,
}

/// Looks the proxy container up by name; one that is not berth's proxy is an error naming it.
pub async fn find(client: &HostClient) -> Result<Option<FoundProxy>, DockerError> {
    let op = format!("inspect {PROXY_CONTAINER}");
    match client.call(&op, client.docker.inspect_container(PROXY_CONTAINER, None::<InspectContainerOptions>)).await {
        Ok(c) => {
            let found_labels: BTreeMap<String, String> =
                c.config.and_then(|cfg| cfg.labels).unwrap_or_default().into_iter().collect();
            if !crate::plan::routes::is_proxy(&found_labels) {
                let msg = format!("a container named {PROXY_CONTAINER} exists and is not berth's proxy: rename it");
                return Err(DockerError::new(&client.name, op, msg));
            }
            Ok(Some(FoundProxy {
                id: c.id.unwrap_or_default(),
                running: c.state.and_then(|s| s.running).unwrap_or(false),
                settings_hash: found_labels.get(SETTINGS_HASH).cloned(),
            }))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the proxy container (not started): Caddy with berth's config file, its ports published
/// on the Host's, its certificates' storage in a named volume that no prune removes.
pub async fn create(client: &HostClient, settings: &ProxySettings) -> Result<String, DockerError> {
    let mut labels = proxy_labels();
    labels.insert(SETTINGS_HASH.to_string(), settings_hash(settings));
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let binding = |port: u16| Some(vec![PortBinding { host_ip: None, host_port: Some(port.to_string()) }]);
    bindings.insert("80/tcp".into(), binding(settings.http_port));
    if let Some(https) = settings.https_port {
        bindings.insert("443/tcp".into(), binding(https));
    }
    let exposed: Vec<String> = bindings.keys().cloned().collect();
    let config_file = format!("{CONFIG_DIR}/caddy.json");
    let body = ContainerCreateBody {
        image: Some(settings.image.clone()),
        cmd: Some(["caddy", "run", "--config", &config_file].map(String::from).to_vec()),
        env: Some(vec!["XDG_DATA_HOME=/data".into(), "XDG_CONFIG_HOME=/config".into()]),
        labels: Some(labels.into_iter().collect()),
        exposed_ports: Some(exposed),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            mounts: Some(vec![Mount {
                typ: Some(MountType::VOLUME),
                source: Some("berth-proxy-data".into()),
                target: Some("/data".into()),
                ..Default::default()
            }]),
            restart_policy: Some(DockerRestart {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            network_mode: Some(PROXY_NETWORK.into()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(PROXY_NETWORK.to_string(), EndpointSettings::default())])),
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions { name: Some(PROXY_CONTAINER.to_string()), ..Default::default() };
    let op = format!("create {PROXY_CONTAINER}");
    Ok(client.call(&op, client.docker.create_container(Some(options), body)).await?.id)
}

/// Joins a container to the proxy network, so the proxy reaches it by name.
pub async fn join_network(client: &HostClient, id: &str, name: &str) -> Result<(), DockerError> {
    let request = NetworkConnectRequest { container: id.to_string(), endpoint_config: None };
    let op = format!("connect {name} to {PROXY_NETWORK}");
    match client.call(&op, client.docker.connect_network(PROXY_NETWORK, request)).await {
        // Already connected (a retried step) is what we wanted.
        Err(e) if e.status == Some(403) && e.message.contains("already exists") => Ok(()),
        other => other,
    }
}

/// Reads back the route table berth last wrote into the proxy; `None` when it holds none yet.
pub async fn read_routes(client: &HostClient, proxy_id: &str) -> Result<Option<RouteTable>, DockerError> {
    let path = format!("{CONFIG_DIR}/routes.json");
    let out = capture(client, proxy_id, &["cat", &path], EXEC_LIMIT).await?;
    if out.exit_code != 0 {
        return Ok(None);
    }
    // A table berth cannot read (written by hand) is rebuilt by the apps' converges.
    Ok(serde_json::from_str(&out.stdout).ok())
}

/// Writes the configuration for `table` (and every certificate it names) into the proxy; a
/// running proxy then needs [`reload`].
pub async fn write_config(
    client: &HostClient,
    proxy_id: &str,
    table: &RouteTable,
    https: bool,
    certificates: &BTreeMap<String, crate::spec::SecretValue>,
) -> Result<(), DockerError> {
    let config = serde_json::to_vec_pretty(&caddy_config(table, https)).expect("config serializes");
    let routes = serde_json::to_vec_pretty(table).expect("routes serialize");
    let mut files = vec![
        ContainerFile { path: format!("{CONFIG_DIR}/caddy.json"), contents: config, mode: 0o644 },
        ContainerFile { path: format!("{CONFIG_DIR}/routes.json"), contents: routes, mode: 0o644 },
    ];
    for (path, pem) in certificates {
        files.push(ContainerFile { path: path.clone(), contents: pem.0.as_bytes().to_vec(), mode: 0o600 });
    }
    put_files(client, proxy_id, &files).await
}

/// Has Caddy load the written configuration gracefully (requests in flight finish where they
/// started). Retried briefly while Caddy is still starting.
pub async fn reload(client: &HostClient, proxy_id: &str) -> Result<(), DockerError> {
    let config_file = format!("{CONFIG_DIR}/caddy.json");
    let cmd = ["caddy", "reload", "--config", &config_file, "--address", ADMIN_ADDRESS];
    let mut last = String::new();
    for attempt in 0..20 {
        let out = capture(client, proxy_id, &cmd, EXEC_LIMIT).await?;
        if out.exit_code == 0 {
            return Ok(());
        }
        last = last_line(&out);
        // Only "not answering yet" is worth another try; a refused config is final.
        if !last.contains("connection refused") || attempt == 19 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(DockerError::new(&client.name, "reload proxy", format!("Caddy refused the configuration: {last}")))
}

/// One HTTP GET of `url` from inside the proxy within `timeout`; `Err` says why it failed.
pub async fn probe(client: &HostClient, proxy_id: &str, url: &str, timeout: Duration) -> Result<(), String> {
    let secs = timeout.as_secs().max(1).to_string();
    let cmd = ["timeout", &secs, "wget", "-q", "-O", "/dev/null", url];
    match capture(client, proxy_id, &cmd, timeout + EXEC_LIMIT).await {
        Ok(out) if out.exit_code == 0 => Ok(()),
        Ok(out) if out.exit_code == 143 => Err(format!("GET {url} gave no answer within {secs} s")),
        Ok(out) if out.exit_code == 126 || out.exit_code == 127 => {
            Err(format!("the proxy image has no timeout or wget to probe with: {}", last_line(&out)))
        }
        Ok(out) => Err(format!("GET {url}: {}", last_line(&out).trim_start_matches("wget: "))),
        Err(e) => Err(e.to_string()),
    }
}

/// Requests in flight to `upstream` (`name:port`) as the proxy counts them; `None` once the proxy
/// no longer knows it (no route names it any more and nothing is in flight).
pub async fn in_flight(client: &HostClient, proxy_id: &str, upstream: &str) -> Result<Option<u64>, DockerError> {
    let url = format!("http://{ADMIN_ADDRESS}/reverse_proxy/upstreams");
    let out = capture(client, proxy_id, &["wget", "-q", "-O-", &url], EXEC_LIMIT).await?;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap_or_default();
    Ok(listed.iter().find(|u| u["address"].as_str() == Some(upstream)).map(|u| u["num_requests"].as_u64().unwrap_or(0)))
}

fn last_line(out: &Captured) -> String {
    let text = if out.stderr.trim().is_empty() { &out.stdout } else { &out.stderr };
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}
