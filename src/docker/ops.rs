//! The Docker calls berth makes, each translating between bollard's types and the planner's.
//!
//! Every call goes through [`HostClient::call`], so each has a timeout and a per-host bound.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig, Ipam,
    IpamConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig, PortBinding, ResourcesUlimits,
    RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions, ListNetworksOptions,
    RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures::StreamExt;

use super::connect::{DockerError, HostClient};
pub use super::files::{put_files, ContainerFile};
use super::registry::{self, RegistryAuth};
use crate::plan::labels;
use crate::plan::{
    ContainerState, DesiredContainer, Health, HostObservation, ObservedContainer, ObservedNetwork, Protocol,
    RestartPolicy, VolumeMount,
};
use crate::spec::{parse_image, Subnet};

/// Seconds Docker waits for a graceful stop before it kills, unless the container says otherwise.
const DEFAULT_STOP_SECS: u64 = 10;

/// Lists every berth-managed container and network of the host (all apps: the caller filters).
///
/// Only managed objects are listed: the planner never needs to see anything else, and an unmanaged
/// container can never end up in an action if it is never in the observation.
/// A listed container's name without Docker's leading `/`.
pub fn name_of(names: Option<Vec<String>>) -> String {
    names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default()
}

pub async fn observe(client: &HostClient) -> Result<HostObservation, DockerError> {
    let filter = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_string(), vec![filter.clone()])])),
        ..Default::default()
    };
    let listed = client.call("list containers", client.docker.list_containers(Some(options))).await?;
    let containers = listed
        .into_iter()
        .map(|c| ObservedContainer {
            id: c.id.unwrap_or_default(),
            name: name_of(c.names),
            labels: c.labels.unwrap_or_default().into_iter().collect(),
            state: state_of(c.state),
            health: health_of(c.status.as_deref().unwrap_or_default()),
            image: c.image.unwrap_or_default(),
            created: c.created.unwrap_or_default(),
        })
        .collect();
    let net_options = ListNetworksOptions { filters: Some(HashMap::from([("label".to_string(), vec![filter])])) };
    let networks = client
        .call("list networks", client.docker.list_networks(Some(net_options)))
        .await?
        .into_iter()
        .map(|n| ObservedNetwork {
            name: n.name.unwrap_or_default(),
            labels: n.labels.unwrap_or_default().into_iter().collect(),
        })
        .collect();
    Ok(HostObservation { reachable: true, containers, networks })
}

/// `/_ping`, outside [`HostClient::call`]: a host whose eight call slots are taken by slow stops
/// is busy, not down, so liveness must not queue behind them. The caller bounds the wait.
pub async fn ping(client: &HostClient) -> Result<(), DockerError> {
    client.docker.ping().await.map(|_| ()).map_err(|e| DockerError::from_bollard(&client.name, "ping", e))
}

/// Docker's state word (`running`, `exited`, ...), as both the list and the inspect call give it.
fn state_of(state: Option<impl std::fmt::Display>) -> ContainerState {
    match state.map(|s| s.to_string()).as_deref() {
        Some("running") => ContainerState::Running,
        Some("restarting") => ContainerState::Restarting,
        Some("paused") => ContainerState::Paused,
        Some("created") => ContainerState::Created,
        Some("dead") => ContainerState::Dead,
        Some("removing") => ContainerState::Removing,
        _ => ContainerState::Exited,
    }
}

/// The list call carries health only in the status text (`Up 3s (healthy)`), which saves an inspect per container.
pub fn health_of(status: &str) -> Option<Health> {
    if status.contains("(healthy)") {
        Some(Health::Healthy)
    } else if status.contains("(unhealthy)") {
        Some(Health::Unhealthy)
    } else if status.contains("(health: starting)") {
        Some(Health::Starting)
    } else {
        None
    }
}

/// Resolves a reference to a pinned `repo@sha256:…` through the host's daemon (which asks the registry),
/// so every container of this converge uses exactly that image, whatever the tag does later. `auth`
/// goes to the registry with the look-up (see [`super::registry::auth_for`]).
pub async fn resolve_image(
    client: &HostClient,
    reference: &str,
    auth: Option<&RegistryAuth>,
) -> Result<String, DockerError> {
    let op = format!("resolve {reference}");
    let image = parse_image(reference).map_err(|e| DockerError::new(&client.name, &op, e))?;
    if image.is_pinned() {
        return Ok(reference.to_string());
    }
    let credentials = auth.map(RegistryAuth::credentials);
    let inspect = client
        .call(&op, client.docker.inspect_registry_image(reference, credentials))
        .await
        .map_err(|e| registry::explain(e, reference, auth))?;
    let digest =
        inspect.descriptor.digest.ok_or_else(|| DockerError::new(&client.name, &op, "registry gave no digest"))?;
    Ok(format!("{}@{}", image.name(), digest))
}

/// Pulls an image unless the host already has it; a pinned reference is never tagged on the host.
/// `auth` goes to the registry with the pull; a refusal names the registry and the user.
pub async fn pull(client: &HostClient, image: &str, auth: Option<&RegistryAuth>) -> Result<bool, DockerError> {
    if client.call("inspect image", client.docker.inspect_image(image)).await.is_ok() {
        return Ok(false);
    }
    let op = format!("pull {image}");
    let options = CreateImageOptions { from_image: Some(image.to_string()), ..Default::default() };
    let mut stream = client.docker.create_image(Some(options), None, auth.map(RegistryAuth::credentials));
    let pulled = async {
        while let Some(item) = stream.next().await {
            item.map_err(|e| DockerError::from_bollard(&client.name, &op, e))?;
        }
        Ok::<(), DockerError>(())
    };
    match tokio::time::timeout(super::connect::CALL_TIMEOUT * 4, pulled).await {
        Ok(r) => r.map(|_| true).map_err(|e| registry::explain(e, image, auth)),
        Err(_) => Err(DockerError::new(&client.name, &op, "pull did not finish in time")),
    }
}

/// How often a create is tried again after Docker said the chosen subnet overlaps another network:
/// a network someone outside this process (another berth, a person) is making meanwhile holds its
/// subnet before the list shows it, so each refused subnet is skipped in the next choice.
const SUBNET_RACES: usize = 8;

/// One network on a host and its IPv4 subnets, as the list call reports them.
#[derive(Debug, Clone)]
pub struct NetworkSubnets {
    pub name: String,
    pub subnets: Vec<Subnet>,
}

/// Every network on the host, berth's or anyone's, with its IPv4 subnets (IPv6 ones are skipped).
pub async fn network_subnets(client: &HostClient) -> Result<Vec<NetworkSubnets>, DockerError> {
    let listed = client.call("list networks", client.docker.list_networks(None::<ListNetworksOptions>)).await?;
    Ok(listed
        .into_iter()
        .map(|n| NetworkSubnets {
            name: n.name.unwrap_or_default(),
            subnets: n
                .ipam
                .and_then(|i| i.config)
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.subnet.as_deref().and_then(Subnet::parse))
                .collect(),
        })
        .collect())
}

/// Creates the app's labelled bridge network with a subnet from the host's address pool; an existing
/// network of that name is accepted as it is (it keeps its subnet). One choice at a time per host
/// (the client's network lock, shared by every converge of this process); Docker refusing an
/// overlapping subnet (someone else is taking it) means look again and choose past it.
pub async fn create_network(
    client: &HostClient,
    name: &str,
    net_labels: &BTreeMap<String, String>,
) -> Result<(), DockerError> {
    let _one_at_a_time = client.network_lock.lock().await;
    let op = format!("create network {name}");
    let mut refused: Vec<Subnet> = Vec::new();
    loop {
        let networks = network_subnets(client).await?;
        if networks.iter().any(|n| n.name == name) {
            return Ok(());
        }
        let listed = networks.into_iter().flat_map(|n| n.subnets);
        let used: Vec<Subnet> = listed.chain(refused.iter().copied()).collect();
        let subnet = client.pool.choose(&used).map_err(|e| DockerError::new(&client.name, &op, e.to_string()))?;
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(net_labels.clone().into_iter().collect()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig { subnet: Some(subnet.to_string()), ..Default::default() }]),
                options: None,
            }),
            ..Default::default()
        };
        match client.call(&op, client.docker.create_network(request)).await {
            Ok(_) => return Ok(()),
            Err(e) if e.status == Some(409) => return Ok(()),
            Err(e) if e.message.contains("overlaps") && refused.len() + 1 < SUBNET_RACES => {
                tracing::debug!(host = %client.name, network = name, %subnet, "subnet taken meanwhile, choosing again");
                refused.push(subnet);
            }
            Err(e) => return Err(e),
        }
    }
}

pub async fn remove_network(client: &HostClient, name: &str) -> Result<(), DockerError> {
    match client.call(&format!("remove network {name}"), client.docker.remove_network(name)).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Creates a container from its desired config; returns its id. A name taken by anyone else is an error.
pub async fn create(client: &HostClient, c: &DesiredContainer) -> Result<String, DockerError> {
    let options = CreateContainerOptions { name: Some(c.name.clone()), ..Default::default() };
    let op = format!("create {}", c.name);
    let body = create_body(c);
    match client.call(&op, client.docker.create_container(Some(options), body)).await {
        Ok(r) => Ok(r.id),
        Err(mut e) if e.status == Some(409) => {
            e.message = format!("container name {} is already taken on this host: {}", c.name, e.message);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Translates a desired container into Docker's create body; env values are exposed only here.
pub fn create_body(c: &DesiredContainer) -> ContainerCreateBody {
    let mut exposed: Vec<String> = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &c.ports {
        let proto = match p.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        let key = format!("{}/{}", p.container_port, proto);
        exposed.push(key.clone());
        bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(PortBinding {
            host_ip: p.host_ip.map(|ip| ip.to_string()),
            host_port: Some(p.host_port.to_string()),
        });
    }
    let mounts = c
        .volumes
        .iter()
        .map(|v| match v {
            VolumeMount::Named { name, target, read_only } => Mount {
                typ: Some(MountType::VOLUME),
                source: Some(name.clone()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                ..Default::default()
            },
            VolumeMount::Bind { source, target, read_only } => Mount {
                typ: Some(MountType::BIND),
                source: Some(source.clone()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                ..Default::default()
            },
        })
        .collect();
    let restart = match c.restart {
        RestartPolicy::No => DockerRestart { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None },
        RestartPolicy::Always => DockerRestart { name: Some(RestartPolicyNameEnum::ALWAYS), maximum_retry_count: None },
        RestartPolicy::UnlessStopped => {
            DockerRestart { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }
        }
        RestartPolicy::OnFailure(n) => {
            DockerRestart { name: Some(RestartPolicyNameEnum::ON_FAILURE), maximum_retry_count: n.map(|n| n as i64) }
        }
    };
    let healthcheck = c.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: h.interval.map(|d| d.as_nanos() as i64),
        timeout: h.timeout.map(|d| d.as_nanos() as i64),
        retries: h.retries.map(|r| r as i64),
        start_period: h.start_period.map(|d| d.as_nanos() as i64),
        ..Default::default()
    });
    let o = &c.options;
    // On the host's network a container joins no app network and has no alias (validation refused ports).
    let (network_mode, networking_config) = if o.host_network {
        ("host".to_string(), None)
    } else {
        let endpoint = EndpointSettings { aliases: Some(vec![c.alias.clone()]), ..Default::default() };
        let endpoints = HashMap::from([(c.network.clone(), endpoint)]);
        (c.network.clone(), Some(NetworkingConfig { endpoints_config: Some(endpoints) }))
    };
    let some_list = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let devices = o.devices.iter().map(|d| DeviceMapping {
        path_on_host: Some(d.host.clone()),
        path_in_container: Some(d.container.clone()),
        cgroup_permissions: Some(d.permissions.clone()),
    });
    let ulimits = o.ulimits.iter().map(|u| ResourcesUlimits {
        name: Some(u.name.clone()),
        soft: Some(u.soft),
        hard: Some(u.hard),
    });
    let log_config = c.logging.as_ref().map(|l| HostConfigLogConfig {
        typ: l.driver.clone(),
        config: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
    });
    ContainerCreateBody {
        image: Some(c.image.clone()),
        cmd: c.cmd.clone(),
        env: Some(c.env.to_docker()),
        labels: Some(c.labels.clone().into_iter().collect()),
        exposed_ports: Some(exposed),
        healthcheck,
        stop_signal: c.stop_signal.clone(),
        stop_timeout: c.stop_timeout.map(i64::from),
        user: o.user.clone(),
        working_dir: o.workdir.clone(),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            mounts: Some(mounts),
            // Legacy binds, not mounts: Docker makes a missing host directory for a bind only.
            binds: some_list(c.directories.iter().map(ToString::to_string).collect()),
            restart_policy: Some(restart),
            memory: c.memory,
            nano_cpus: c.nano_cpus,
            network_mode: Some(network_mode),
            log_config,
            extra_hosts: some_list(o.extra_hosts.iter().map(ToString::to_string).collect()),
            cap_add: some_list(o.cap_add.clone()),
            devices: (!o.devices.is_empty()).then(|| devices.collect()),
            ulimits: (!o.ulimits.is_empty()).then(|| ulimits.collect()),
            shm_size: o.shm_size,
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

pub async fn start(client: &HostClient, id: &str, name: &str) -> Result<(), DockerError> {
    client.call(&format!("start {name}"), client.docker.start_container(id, None::<StartContainerOptions>)).await
}

/// Stops gracefully with the container's own stop signal and timeout (its `StopTimeout`, set at
/// create from the spec, so a replace waits as long as the *old* container asked for); a container
/// that is already gone or stopped is fine. The call waits that long plus the usual call timeout.
pub async fn stop(client: &HostClient, id: &str, name: &str) -> Result<(), DockerError> {
    let inspected = client.call("inspect", client.docker.inspect_container(id, None::<InspectContainerOptions>)).await;
    let own = match inspected {
        Ok(info) => info.config.and_then(|c| c.stop_timeout),
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    let grace = Duration::from_secs(own.and_then(|t| u64::try_from(t).ok()).unwrap_or(DEFAULT_STOP_SECS));
    let within = grace + super::connect::CALL_TIMEOUT;
    // No `t`: Docker then waits the container's own StopTimeout (10 s without one).
    let docker = client.docker.clone().with_timeout(within);
    let options = StopContainerOptions::default();
    match client.call_within(&format!("stop {name}"), within, docker.stop_container(id, Some(options))).await {
        Err(e) if e.is_not_found() || e.status == Some(304) => Ok(()),
        other => other,
    }
}

/// Removes a container but never its volumes (`v=false`): data outlives every prune.
pub async fn remove(client: &HostClient, id: &str, name: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptions { force: true, v: false, ..Default::default() };
    match client.call(&format!("remove {name}"), client.docker.remove_container(id, Some(options))).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// What a health wait reads of a container: its state and health right now, the last health-check
/// output (for Degraded messages), and when it last started (a restart starts a readiness delay anew).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReading {
    pub state: ContainerState,
    pub health: Option<Health>,
    pub output: Option<String>,
    /// Docker's `State.StartedAt`, as an opaque token: compared, never parsed.
    pub started_at: Option<String>,
}

/// A container's [`HealthReading`] right now.
pub async fn inspect_health(client: &HostClient, id: &str) -> Result<HealthReading, DockerError> {
    let info = client.call("inspect", client.docker.inspect_container(id, None::<InspectContainerOptions>)).await?;
    let state = info.state.unwrap_or_default();
    let started_at = state.started_at.clone();
    let cstate = state_of(state.status);
    let (health, output) = match state.health {
        Some(h) => {
            let status = h.status.map(|s| s.to_string());
            let health = match status.as_deref() {
                Some("healthy") => Some(Health::Healthy),
                Some("unhealthy") => Some(Health::Unhealthy),
                Some("starting") => Some(Health::Starting),
                _ => None,
            };
            let output = h.log.and_then(|l| l.last().and_then(|r| r.output.clone())).map(|o| o.trim().to_string());
            (health, output)
        }
        None => (None, None),
    };
    Ok(HealthReading { state: cstate, health, output, started_at })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::spec::{App, Host};

    fn desired(spec: serde_json::Value) -> Vec<DesiredContainer> {
        let app: App = serde_json::from_value(serde_json::json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "App", "metadata": {"name": "shop", "namespace": "prod"},
            "spec": spec
        }))
        .unwrap();
        let host: Host = serde_json::from_value(serde_json::json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "Host", "metadata": {"name": "h1"},
            "spec": {"endpoint": "unix:///d.sock"}
        }))
        .unwrap();
        let images: BTreeMap<String, String> =
            [("shop:1", "shop@sha256:aa"), ("mysql:8", "mysql@sha256:bb")].map(|(a, b)| (a.into(), b.into())).into();
        crate::plan::desired(&app, &[host], &images).unwrap()
    }

    #[test]
    fn options_logging_and_directories_reach_the_create_body() {
        let all = desired(serde_json::json!({
            "image": "shop:1", "logging": {"driver": "json-file", "options": {"max-size": "10m"}},
            "roles": {"web": {"hosts": ["h1"], "options": {"addHosts": ["db.internal:10.0.0.5"], "capAdd": ["net_admin"],
                "devices": ["/dev/fuse"], "ulimits": {"nofile": "1024:2048"}, "shmSize": "64m", "user": "1000:1000",
                "workdir": "/app"}}},
            "accessories": {"db": {"image": "mysql:8", "hosts": ["h1"], "directories": ["data:/var/lib/mysql"],
                "options": {"network": "host"}, "logging": {"driver": "local"}}}
        }));
        let (db, web) = (create_body(&all[0]), create_body(&all[1]));
        assert_eq!((web.user.as_deref(), web.working_dir.as_deref()), (Some("1000:1000"), Some("/app")));
        let hc = web.host_config.unwrap();
        assert_eq!(hc.extra_hosts.unwrap(), ["db.internal:10.0.0.5"]);
        assert_eq!(hc.cap_add.unwrap(), ["NET_ADMIN"]);
        assert_eq!(hc.devices.unwrap()[0].cgroup_permissions.as_deref(), Some("rwm"));
        assert_eq!(
            hc.ulimits.unwrap()[0],
            ResourcesUlimits { name: Some("nofile".into()), soft: Some(1024), hard: Some(2048) }
        );
        assert_eq!(hc.shm_size, Some(64 << 20));
        let log = hc.log_config.unwrap();
        assert_eq!((log.typ.as_deref(), log.config.unwrap()["max-size"].as_str()), (Some("json-file"), "10m"));
        assert_eq!(hc.network_mode.as_deref(), Some("berth-shop-prod"));
        assert!(hc.binds.is_none());
        assert!(web.networking_config.is_some());

        let hc = db.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert!(db.networking_config.is_none(), "no app network, no alias");
        assert_eq!(hc.binds.unwrap(), ["/var/lib/berth/shop-prod/db/data:/var/lib/mysql"]);
        let log = hc.log_config.unwrap();
        assert_eq!(
            (log.typ.as_deref(), log.config),
            (Some("local"), None),
            "another driver takes only its own options"
        );
    }

    #[test]
    fn a_spec_without_the_new_fields_sends_none_of_them() {
        let body =
            create_body(&desired(serde_json::json!({"image": "shop:1", "roles": {"web": {"hosts": ["h1"]}}}))[0]);
        assert_eq!((body.user, body.working_dir), (None, None));
        let hc = body.host_config.unwrap();
        assert!(hc.log_config.is_none() && hc.extra_hosts.is_none() && hc.cap_add.is_none() && hc.binds.is_none());
        assert!(hc.devices.is_none() && hc.ulimits.is_none() && hc.shm_size.is_none());
    }
}
