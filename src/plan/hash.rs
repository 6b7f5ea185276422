//! The config hash: a digest of a container's canonical runtime config. Two containers with the
//! same hash have identical configs; a new hash means "replace me". Its encoding is a contract with
//! every container already running, so it lives apart from how templates are built.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::labels;
use super::routes::PROXY_NETWORK;
use super::types::{restart_text, ContainerTemplate, HealthcheckConfig, PortMapping, VolumeMount};

/// Bumped whenever the canonical form changes meaning, so that change is a deliberate, visible
/// rollout rather than an accident of serialization.
const HASH_VERSION: u32 = 1;

/// The runtime config the hash covers. Field order and encodings are part of the hash: do not
/// change them without bumping [`HASH_VERSION`]. Ports, volumes and the restart policy are encoded
/// here field by field rather than through another module's `Display`/`Serialize`, so a cosmetic
/// change elsewhere can never roll every container in the fleet.
#[derive(Serialize)]
struct Canonical<'a> {
    version: u32,
    image: &'a str,
    cmd: &'a Option<Vec<String>>,
    env: &'a BTreeMap<String, String>,
    /// `(ip, hostPort, containerPort, protocol)`, sorted: order in the spec does not matter.
    ports: Vec<(Option<String>, u16, u16, &'static str)>,
    /// `(kind, source, target, readOnly)`, sorted.
    volumes: Vec<(&'static str, &'a str, &'a str, bool)>,
    healthcheck: &'a Option<HealthcheckConfig>,
    labels: &'a BTreeMap<String, String>,
    restart: String,
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    network: &'a str,
    alias: &'a str,
    /// `(path, mode, source)`: inline contents by their sha256, a Secret's by name, key and
    /// revision — never a value. Absent when there are no files, so older hashes stay as they were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<(String, u32, String)>,
    /// Absent unless the spec sets them, so older hashes stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<&'a str>,
    /// The proxy network a proxied role's containers also join; absent otherwise, so older hashes
    /// stay as they were. The route itself is not covered: changing it reloads the proxy only.
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy_network: Option<&'static str>,
    /// From here on, each absent unless the spec sets it, so older hashes stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    readiness_delay_ms: Option<u64>,
    /// `(driver, options)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    logging: Option<(Option<&'a str>, &'a BTreeMap<String, String>)>,
    /// `name:ip`, in spec order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extra_hosts: Vec<String>,
    /// Sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cap_add: Vec<&'a str>,
    /// `(host, container, permissions)`, in spec order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    devices: Vec<(&'a str, &'a str, &'a str)>,
    /// `(name, soft, hard)`, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ulimits: Vec<(&'a str, i64, i64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shm_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workdir: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    host_network: bool,
    /// `(source, target, readOnly)`, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    directories: Vec<(&'a str, &'a str, bool)>,
}

fn canonical_port(p: &PortMapping) -> (Option<String>, u16, u16, &'static str) {
    (p.host_ip.map(|ip| ip.to_string()), p.host_port, p.container_port, p.protocol.as_str())
}

fn canonical_volume(v: &VolumeMount) -> (&'static str, &str, &str, bool) {
    match v {
        VolumeMount::Named { name, target, read_only } => ("volume", name, target, *read_only),
        VolumeMount::Bind { source, target, read_only } => ("bind", source, target, *read_only),
    }
}

/// The config hash (sha256, hex) of `t`, whose `labels` are still its identity labels (no hash yet).
/// `env` and `files` are the canonical forms: a Secret's value by name, key and revision, never
/// the value itself.
pub(super) fn config_hash(
    t: &ContainerTemplate,
    env: &BTreeMap<String, String>,
    files: Vec<(String, u32, String)>,
) -> String {
    let mut ports: Vec<_> = t.ports.iter().map(canonical_port).collect();
    ports.sort();
    let mut volumes: Vec<_> = t.volumes.iter().map(canonical_volume).collect();
    volumes.sort();
    let options = &t.options;
    let mut cap_add: Vec<&str> = options.cap_add.iter().map(String::as_str).collect();
    cap_add.sort_unstable();
    cap_add.dedup();
    let mut directories: Vec<_> =
        t.directories.iter().map(|d| (d.source.as_str(), d.target.as_str(), d.read_only)).collect();
    directories.sort();
    debug_assert!(!t.labels.contains_key(labels::CONFIG_HASH), "the hash never covers itself");
    let canonical = Canonical {
        version: HASH_VERSION,
        image: &t.image,
        cmd: &t.cmd,
        env,
        ports,
        volumes,
        healthcheck: &t.healthcheck,
        labels: &t.labels,
        restart: restart_text(&t.restart),
        memory: t.memory,
        nano_cpus: t.nano_cpus,
        network: &t.network,
        alias: &t.alias,
        files,
        stop_timeout: t.stop_timeout,
        stop_signal: t.stop_signal.as_deref(),
        proxy_network: t.proxy.as_ref().map(|_| PROXY_NETWORK),
        readiness_delay_ms: t.readiness_delay.map(|d| d.as_millis() as u64),
        logging: t.logging.as_ref().map(|l| (l.driver.as_deref(), &l.options)),
        extra_hosts: options.extra_hosts.iter().map(ToString::to_string).collect(),
        cap_add,
        devices: options
            .devices
            .iter()
            .map(|d| (d.host.as_str(), d.container.as_str(), d.permissions.as_str()))
            .collect(),
        ulimits: options.ulimits.iter().map(|u| (u.name.as_str(), u.soft, u.hard)).collect(),
        shm_size: options.shm_size,
        user: options.user.as_deref(),
        workdir: options.workdir.as_deref(),
        host_network: options.host_network,
        directories,
    };
    let bytes = serde_json::to_vec(&canonical).expect("canonical config serializes");
    hex::encode(Sha256::digest(&bytes))
}
