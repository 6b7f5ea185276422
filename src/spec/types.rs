//! The resource types users write (`App`, `Host`) and the status berth writes back.
//!
//! These structs are the single source of truth: parsing, validation, the JSON Schema in `crds/`
//! and the values stored in etcd all derive from them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::options::{Logging, RunOptions};
use super::proxy::{HostProxy, RoleProxy};
use super::secret::{EnvValue, FileSource, Secret};

/// The only `apiVersion` berth accepts today; bumping it is a deliberate, versioned change.
pub const API_VERSION: &str = "berth.dev/v1alpha1";

/// The namespace an App lands in when its metadata names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Annotation `berth repin` sets (to the time of the request) to have every image tag of an App
/// resolved again. Image pins otherwise last as long as the spec's image reference is unchanged, so
/// a spec change that does not touch `image` never swaps the code underneath it. Annotations under
/// `berth.dev/` are kept by `berth apply` when the applied file does not carry them.
pub const REPIN_ANNOTATION: &str = "berth.dev/repin-requested-at";

/// Annotation `berth rollout retry` sets (to the time of the request) to attempt a generation whose
/// rollout was rolled back once more. Without it (or a new spec) berth never retries a failed
/// rollout on its own: each attempt would take the healthy old container down again.
pub const ROLLOUT_RETRY_ANNOTATION: &str = "berth.dev/rollout-retry-requested-at";

/// Annotation `berth apply --cause TEXT` (and `berth rollback`) sets: why this generation exists,
/// shown by `berth history`. Unlike the other `berth.dev/` annotations an apply that changes the
/// spec without one drops it, so a cause never describes a later change.
pub const CHANGE_CAUSE_ANNOTATION: &str = "berth.dev/change-cause";

/// Prefix of the annotations berth itself owns.
pub const BERTH_ANNOTATION_PREFIX: &str = "berth.dev/";

/// Kubernetes-style metadata; `generation` and `deletionTimestamp` are owned by the store, not the user.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// DNS label (lowercase letters, digits, '-'; at most 63 characters).
    pub name: String,
    /// Destination of an App (`production`, `staging`, ...); ignored for Hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Set by the store: starts at 1 and grows only when `spec` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Set by `berth delete app`: the operator removes the containers, then the keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
}

/// A Docker host berth may place containers on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Host {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: HostSpec,
}

/// How to reach a host's Docker API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    /// `unix:///path`, `tcp://ADDR:PORT` (mutual TLS unless `insecure`) or `ssh://user@addr[:port][/socket]`
    /// (the host's Docker socket, default `/var/run/docker.sock`, forwarded over SSH).
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// The only way to allow plain, unauthenticated tcp.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Where the subnets of berth's app networks on this host come from; default `10.240.0.0/12`, a `/26` each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<HostNetwork>,
    /// The proxy berth runs here for proxied roles (default `caddy:2` on ports 80 and 443).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<HostProxy>,
}

/// The address pool of a Host's app networks: berth picks each network's subnet itself, so a host
/// holds thousands of them instead of the ~30 Docker's default pools allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostNetwork {
    /// An IPv4 CIDR free on the host and its networks (default `10.240.0.0/12`, outside Docker's own pools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Prefix length of each app network taken from the pool (default 26: 62 addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u8>,
}

/// PEM files for mutual TLS, as paths on the machine running berth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// One application in one destination (namespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct App {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: AppSpec,
}

/// What should run, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSpec {
    /// Image reference of the app's roles (`registry/name:tag` or `@sha256:...`).
    pub image: String,
    /// Environment for every role; a role's own `env` wins on conflict. A value is a string or
    /// `{secretKeyRef: {name, key}}`. Values are never logged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Secrets of type `registry` whose credentials pull the app image and every accessory's
    /// (the one whose `server` is the image's registry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, Role>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accessories: BTreeMap<String, Accessory>,
    #[serde(default)]
    pub rollout: Rollout,
    /// Docker's log driver and options for every container; a role's or accessory's own overlays it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
}

/// A command: a shell string (run with `sh -c`) or an exec list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// A group of identical app containers, one per listed host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Role {
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Command>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Files written into the container before it starts, by absolute path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileSource>,
    /// `[ip:]hostPort:containerPort[/tcp|udp]`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// `name:/path[:ro]` (named volume) or `/host/path:/path[:ro]` (bind mount)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Accessories that must be healthy first; absent means every accessory of the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Docker restart policy: `no`, `always`, `unless-stopped`, `on-failure[:N]`; default `unless-stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Memory limit such as `512m` or `1g`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU limit in cores, such as `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// How long a stop waits after the stop signal before killing (`30s`, `2m`); default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<String>,
    /// The signal that asks the process to stop (`SIGTERM`, `SIGQUIT`, `SIGINT`, `SIGUSR1`, …); default the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Serve this role through the host's proxy (by host name) and roll it start-first: the new
    /// container takes traffic only once it answers its health path; the old one is drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<RoleProxy>,
    /// Env per host (a Host name, one of `hosts`), overlaid on the App's and the role's env for the
    /// container on that host (Kamal's tags).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_env: BTreeMap<String, BTreeMap<String, EnvValue>>,
    /// Without a healthcheck, a container counts as ready only this long after it started (`7s`);
    /// default: as soon as it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_delay: Option<String>,
    /// Overlays the App's `logging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// A typed subset of `docker run` flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<RunOptions>,
}

/// A supporting service (database, cache) that roles wait for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Accessory {
    pub image: String,
    /// Hosts it runs on; with `roles`, the union. At least one of the two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Roles of this App on whose every host it also runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Command>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Files written into the container before it starts, by absolute path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileSource>,
    /// Secrets of type `registry` for this accessory's image only (the App's apply too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How long a stop waits after the stop signal before killing (`30s`, `2m`); default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<String>,
    /// The signal that asks the process to stop (`SIGTERM`, `SIGQUIT`, `SIGINT`, `SIGUSR1`, …); default the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `name:/path[:ro]`: the host directory `/var/lib/berth/{app}-{namespace}/{accessory}/{name}`
    /// (made when missing, never deleted) mounted at the path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<String>,
    /// Overlays the App's `logging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// A typed subset of `docker run` flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<RunOptions>,
}

/// A Docker healthcheck; durations are strings such as `5s`, `1m30s`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Healthcheck {
    pub cmd: Command,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
}

/// How a changed role is rolled across its hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// A count (`2`) or a percentage of the role's hosts (`"25%"`); default 1.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: IntOrPercent,
    /// How long a new container may take to turn healthy; default `60s`.
    #[serde(default = "default_health_timeout")]
    pub health_timeout: String,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout { max_unavailable: default_max_unavailable(), health_timeout: default_health_timeout() }
    }
}

/// `rollout.maxUnavailable` when the spec gives none: one host at a time.
pub const DEFAULT_MAX_UNAVAILABLE: u32 = 1;

/// `rollout.healthTimeout` when the spec gives none; the one place this default lives.
pub const DEFAULT_HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn default_max_unavailable() -> IntOrPercent {
    IntOrPercent::Int(DEFAULT_MAX_UNAVAILABLE)
}

/// The wire text of [`DEFAULT_HEALTH_TIMEOUT`] (`60s`), as the CRD schema shows it.
fn default_health_timeout() -> String {
    format!("{}s", DEFAULT_HEALTH_TIMEOUT.as_secs())
}

/// A count or a `"N%"` string, as in Kubernetes' `maxUnavailable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum IntOrPercent {
    Int(u32),
    Percent(String),
}

/// Any resource berth stores, as read from a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    App(App),
    Host(Host),
    Secret(Secret),
}

impl Resource {
    /// `app/shop -n production` or `host/web-1`: how the CLI names a resource to users.
    pub fn display_name(&self) -> String {
        match self {
            Resource::App(a) => format!("app/{} -n {}", a.metadata.name, a.namespace()),
            Resource::Host(h) => format!("host/{}", h.metadata.name),
            Resource::Secret(s) => format!("secret/{} -n {}", s.metadata.name, s.namespace()),
        }
    }
}

impl App {
    /// The destination, defaulted.
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// The last `berth repin` request, if any: pins resolved under another value are stale.
    pub fn repin_requested_at(&self) -> Option<&str> {
        self.metadata.annotations.get(REPIN_ANNOTATION).map(String::as_str)
    }

    /// The last `berth rollout retry` request, if any: a failed rollout recorded under another value
    /// is attempted again.
    pub fn rollout_retry_requested_at(&self) -> Option<&str> {
        self.metadata.annotations.get(ROLLOUT_RETRY_ANNOTATION).map(String::as_str)
    }
}
