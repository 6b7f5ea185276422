//! From an App spec to the exact containers each host should run.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::spec::{
    accessory_hosts, Accessory, App, Command, Directory, EnvValue, FieldError, FileSource, Host, Logging,
    ParsedAccessory, ParsedHealthcheck, ParsedProxy, ParsedRole, ParsedWorkload, Role, RoleLimits, RolloutPolicy,
    SecretKeyRef, SecretValue, TlsMode,
};

use super::error::PlanError;
use super::hash;
use super::labels::{self, Component};
use super::routes::{self, ProxyTarget, TlsCertificate};
use super::types::{
    ContainerFile, ContainerTemplate, DesiredContainer, HealthcheckConfig, HostDirectory, ResolvedSecret, SecretEnv,
    SecretValues, VolumeMount,
};

/// The parts of a role or an accessory the planner reads, so both go through one code path.
struct Source<'a> {
    component: Component,
    image: &'a str,
    /// Where it runs, each once, in name order.
    hosts: Vec<String>,
    cmd: Option<&'a Command>,
    env: BTreeMap<String, EnvValue>,
    /// A role's env per host, overlaid on `env` there.
    host_env: Option<&'a BTreeMap<String, BTreeMap<String, EnvValue>>>,
    files: &'a BTreeMap<String, FileSource>,
    labels: &'a BTreeMap<String, String>,
    /// Where the typed runtime fields come from; read when the template is built, after its image.
    spec: ComponentSpec<'a>,
}

/// The spec of a role or an accessory, for its typed form.
enum ComponentSpec<'a> {
    Role(&'a Role),
    Accessory(&'a Accessory),
}

/// A role's or an accessory's typed fields, whichever it is (an accessory's limits are the
/// defaults; only a role has a proxy and a readiness delay, only an accessory directories).
struct Typed {
    workload: ParsedWorkload,
    limits: RoleLimits,
    proxy: Option<ParsedProxy>,
    readiness_delay: Option<Duration>,
    directories: Vec<Directory>,
}

impl ComponentSpec<'_> {
    fn typed(&self) -> Result<Typed, FieldError> {
        match self {
            ComponentSpec::Role(r) => ParsedRole::parse(r).map(|p| Typed {
                workload: p.workload,
                limits: p.limits,
                proxy: p.proxy,
                readiness_delay: p.readiness_delay,
                directories: Vec::new(),
            }),
            ComponentSpec::Accessory(a) => ParsedAccessory::parse(a).map(|p| Typed {
                workload: p.workload,
                limits: RoleLimits::default(),
                proxy: None,
                readiness_delay: None,
                directories: p.directories,
            }),
        }
    }
}

/// The desired state of one App: each component's container templates and the hosts each runs on,
/// accessories first, then roles, each in name and then host order (a role whose `hostEnv` gives
/// hosts different env has one template per env, ordered by their first host). Built once per converge and
/// shared by the plan and the status; a [`DesiredContainer`] (a host name and a reference count) is
/// made only where one is handed out.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    templates: Vec<(Arc<ContainerTemplate>, Vec<String>)>,
    rollout: RolloutPolicy,
}

impl DesiredState {
    /// How changed roles roll: replaces per batch and the health timeout (the defaults for an app
    /// marked for deletion, which rolls nothing).
    pub fn rollout(&self) -> &RolloutPolicy {
        &self.rollout
    }

    /// Every desired container, in the order above.
    pub fn containers(&self) -> impl Iterator<Item = DesiredContainer> + '_ {
        self.templates.iter().flat_map(|(template, on)| {
            on.iter().map(move |host| DesiredContainer { host: host.clone(), template: Arc::clone(template) })
        })
    }

    /// Each component's template with the hosts it runs on.
    pub fn templates(&self) -> impl Iterator<Item = (&Arc<ContainerTemplate>, &[String])> {
        self.templates.iter().map(|(t, on)| (t, on.as_slice()))
    }

    /// The template of the container named `name` (names embed the config hash, so they are unique).
    pub fn by_name(&self, name: &str) -> Option<&ContainerTemplate> {
        self.templates.iter().map(|(t, _)| t.as_ref()).find(|t| t.name == name)
    }

    /// Whether any container is wanted on `host`.
    pub fn wants_host(&self, host: &str) -> bool {
        self.templates.iter().any(|(_, on)| on.iter().any(|h| h == host))
    }

    /// Whether the container `name` is wanted on `host`.
    pub fn wants(&self, host: &str, name: &str) -> bool {
        self.templates.iter().any(|(t, on)| t.name == name && on.iter().any(|h| h == host))
    }
}

/// See [`DesiredState`]. Fails on an unresolved image, a host that is not a Host resource, or a
/// field that does not parse (per component, then the rollout); an app marked for deletion wants nothing.
pub(crate) fn desired_state(
    app: &App,
    hosts: &[Host],
    images: &BTreeMap<String, String>,
    secrets: &SecretValues,
) -> Result<DesiredState, PlanError> {
    if app.metadata.deletion_timestamp.is_some() {
        return Ok(DesiredState::default());
    }
    let known: HashSet<&str> = hosts.iter().map(|h| h.metadata.name.as_str()).collect();
    let mut templates = Vec::new();
    for source in sources(app) {
        for (env, on) in env_groups(&source) {
            templates.push((Arc::new(build(app, &source, &env, images, secrets)?), on));
        }
        if let Some(host) = source.hosts.iter().find(|h| !known.contains(h.as_str())) {
            return Err(PlanError::UnknownHost { component: source.component.to_string(), host: host.clone() });
        }
    }
    let rollout = RolloutPolicy::parse(&app.spec.rollout)
        .map_err(|e| PlanError::InvalidRollout { field: e.field.to_string(), message: e.message })?;
    Ok(DesiredState { templates, rollout })
}

/// The hosts of a component grouped by their effective env (`env` with the host's `hostEnv` over
/// it), groups in the order of their first host: hosts whose env is the same share a template. Only
/// hosts with a `hostEnv` of their own cost an env of their own (a thousand plain hosts, one group).
fn env_groups(s: &Source<'_>) -> Vec<(BTreeMap<String, EnvValue>, Vec<String>)> {
    let mut plain = Vec::new();
    let mut groups: Vec<(BTreeMap<String, EnvValue>, Vec<String>)> = Vec::new();
    for host in &s.hosts {
        let Some(overlay) = s.host_env.and_then(|per_host| per_host.get(host)).filter(|o| !o.is_empty()) else {
            plain.push(host.clone());
            continue;
        };
        let mut env = s.env.clone();
        env.extend(overlay.iter().map(|(k, v)| (k.clone(), v.clone())));
        if env == s.env {
            plain.push(host.clone());
        } else if let Some((_, on)) = groups.iter_mut().find(|(e, _)| *e == env) {
            on.push(host.clone());
        } else {
            groups.push((env, vec![host.clone()]));
        }
    }
    // With no host at all the template is still built, so a bad field is reported as before.
    if !plain.is_empty() || groups.is_empty() {
        groups.push((s.env.clone(), plain));
    }
    groups.sort_by(|a, b| a.1.first().cmp(&b.1.first()));
    groups
}

/// Each host once, in name order.
fn sorted_hosts<'h>(hosts: impl IntoIterator<Item = &'h String>) -> Vec<String> {
    hosts.into_iter().collect::<BTreeSet<_>>().into_iter().cloned().collect()
}

/// Accessories first, then roles, each in name order: the order the plan's phases use.
fn sources(app: &App) -> Vec<Source<'_>> {
    let mut out = Vec::new();
    for (name, a) in &app.spec.accessories {
        out.push(Source {
            component: Component::Accessory(name.clone()),
            image: &a.image,
            hosts: accessory_hosts(&app.spec, a),
            cmd: a.cmd.as_ref(),
            env: a.env.clone(),
            host_env: None,
            files: &a.files,
            labels: &a.labels,
            spec: ComponentSpec::Accessory(a),
        });
    }
    for (name, r) in &app.spec.roles {
        let mut env = app.spec.env.clone();
        env.extend(r.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        out.push(Source {
            component: Component::Role(name.clone()),
            image: &app.spec.image,
            hosts: sorted_hosts(&r.hosts),
            cmd: r.cmd.as_ref(),
            env,
            host_env: Some(&r.host_env),
            files: &r.files,
            labels: &r.labels,
            spec: ComponentSpec::Role(r),
        });
    }
    out
}

/// The container for one component on the hosts whose effective env is `env`, built from its typed form.
fn build(
    app: &App,
    s: &Source<'_>,
    env: &BTreeMap<String, EnvValue>,
    images: &BTreeMap<String, String>,
    secrets: &SecretValues,
) -> Result<ContainerTemplate, PlanError> {
    let (app_name, ns) = (app.metadata.name.as_str(), app.namespace());
    let (env, canonical_env) = resolve_env(&s.component, env, secrets)?;
    let (files, canonical_files) = resolve_files(&s.component, s.files, secrets)?;
    let image = images.get(s.image).ok_or_else(|| PlanError::UnresolvedImage { image: s.image.to_string() })?;
    let typed = s.spec.typed().map_err(|e| PlanError::InvalidSpec {
        component: s.component.to_string(),
        field: e.key.as_ref().map_or_else(|| e.field.to_string(), |k| format!("{}.{k}", e.field)),
        message: e.message,
    })?;
    let Typed { workload, limits, proxy, readiness_delay, directories } = typed;
    let ParsedWorkload { ports, volumes, healthcheck, stop, options, logging } = workload;
    let logging = Logging::overlay(app.spec.logging.as_ref(), logging.as_ref());
    let directories: Vec<HostDirectory> = directories
        .iter()
        .map(|d| HostDirectory {
            source: d.host_path(app_name, ns, s.component.name()),
            target: d.target.clone(),
            read_only: d.read_only,
        })
        .collect();
    let volumes: Vec<VolumeMount> = volumes.into_iter().map(|m| scope_volume(m, app_name, ns)).collect();
    let healthcheck = healthcheck.map(docker_healthcheck);
    let RoleLimits { restart, memory, nano_cpus } = limits;
    let cmd = s.cmd.map(|c| match c {
        Command::Shell(sh) => vec!["sh".to_string(), "-c".to_string(), sh.clone()],
        Command::Exec(v) => v.clone(),
    });
    let network = labels::network_name(app_name, ns);
    let alias = s.component.name().to_string();
    let identity = labels::identity_labels(app_name, ns, &s.component, s.labels);

    let proxy = proxy.map(|spec| proxy_target(app, &s.component, spec, secrets)).transpose()?.map(Arc::new);

    let mut template = ContainerTemplate {
        name: String::new(),
        component: s.component.clone(),
        image: image.clone(),
        cmd,
        env: SecretEnv::new(env),
        files,
        ports,
        volumes,
        healthcheck,
        labels: identity,
        restart,
        memory,
        nano_cpus,
        stop_timeout: stop.timeout_secs,
        stop_signal: stop.signal.clone(),
        network,
        alias,
        proxy,
        readiness_delay,
        logging,
        options,
        directories,
        hash: String::new(),
    };
    let hash = hash::config_hash(&template, &canonical_env, canonical_files);
    template.labels.insert(labels::CONFIG_HASH.to_string(), hash.clone());
    template.name = format!("{app_name}-{ns}-{}-{}", s.component.name(), &hash[..8]);
    template.hash = hash;
    Ok(template)
}

/// A proxied role's route, with its certificate opened when it comes from a Secret.
fn proxy_target(
    app: &App,
    component: &Component,
    spec: ParsedProxy,
    secrets: &SecretValues,
) -> Result<ProxyTarget, PlanError> {
    let certificate = match &spec.tls {
        TlsMode::Secret(name) => {
            let part = |key: &str| {
                let r = SecretKeyRef { name: name.clone(), key: key.to_string() };
                secret(component, &r, secrets).cloned()
            };
            let (cert, key) = (part("cert")?, part("key")?);
            // Named with the namespace: two namespaces may each hold a Secret of that name.
            let secret = format!("{}-{name}", app.namespace());
            Some(TlsCertificate { secret, revision: cert.revision, cert: cert.value, key: key.value })
        }
        _ => None,
    };
    let route_id = routes::route_id(&app.metadata.name, app.namespace(), component.name());
    Ok(ProxyTarget { route_id, spec, certificate })
}

pub(crate) fn images_needed(app: &App, hosts: &[Host]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if app.metadata.deletion_timestamp.is_some() {
        return out;
    }
    let known: HashSet<&str> = hosts.iter().map(|h| h.metadata.name.as_str()).collect();
    for s in sources(app) {
        for h in s.hosts.iter().filter(|h| known.contains(h.as_str())) {
            out.entry(h.clone()).or_default().insert(s.image.to_string());
        }
    }
    out
}

/// Docker's form of a healthcheck: the command as `Test`, durations as they are.
fn docker_healthcheck(h: ParsedHealthcheck) -> HealthcheckConfig {
    HealthcheckConfig {
        test: match h.cmd {
            Command::Shell(c) => vec!["CMD-SHELL".to_string(), c],
            Command::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
        },
        interval: h.interval,
        timeout: h.timeout,
        retries: h.retries,
        start_period: h.start_period,
    }
}

/// Named volumes are scoped to the app and namespace (`shop-staging-data`), as compose scopes them to
/// the project, so staging and production on one host never share a database's files by accident.
fn scope_volume(m: VolumeMount, app: &str, ns: &str) -> VolumeMount {
    match m {
        VolumeMount::Named { name, target, read_only } => {
            VolumeMount::Named { name: format!("{app}-{ns}-{name}"), target, read_only }
        }
        bind => bind,
    }
}

/// Env names to values.
type Env = BTreeMap<String, String>;

/// A file as the hash covers it: `(path, mode, source)`.
type CanonicalFile = (String, u32, String);

/// The env Docker gets (values) and the env the hash covers (a Secret's by name, key and revision:
/// a changed value rolls exactly its users, and the hash never depends on the value itself).
fn resolve_env(
    component: &Component,
    env: &BTreeMap<String, EnvValue>,
    secrets: &SecretValues,
) -> Result<(Env, Env), PlanError> {
    let mut values = BTreeMap::new();
    let mut canonical = BTreeMap::new();
    for (k, v) in env {
        match v {
            EnvValue::Plain(s) => {
                values.insert(k.clone(), s.clone());
                canonical.insert(k.clone(), s.clone());
            }
            EnvValue::Secret { secret_key_ref } => {
                let r = secret(component, secret_key_ref, secrets)?;
                values.insert(k.clone(), r.value.0.clone());
                canonical.insert(k.clone(), reference(secret_key_ref, r));
            }
        }
    }
    Ok((values, canonical))
}

/// The files written into the container and what of them the hash covers.
fn resolve_files(
    component: &Component,
    files: &BTreeMap<String, FileSource>,
    secrets: &SecretValues,
) -> Result<(Vec<ContainerFile>, Vec<CanonicalFile>), PlanError> {
    let mut out = Vec::new();
    let mut canonical = Vec::new();
    for (path, f) in files {
        let invalid = |message: &str| PlanError::InvalidSpec {
            component: component.to_string(),
            field: format!("files.{path}"),
            message: message.to_string(),
        };
        let mode = f.mode_bits().ok_or_else(|| invalid("mode is not octal permission bits"))?;
        let (contents, source) = match (&f.content, &f.secret_key_ref) {
            (Some(c), None) => (c.clone(), format!("sha256:{}", hex::encode(Sha256::digest(c.as_bytes())))),
            (None, Some(r)) => {
                let resolved = secret(component, r, secrets)?;
                (resolved.value.0.clone(), reference(r, resolved))
            }
            _ => return Err(invalid("give exactly one of content and secretKeyRef")),
        };
        canonical.push((path.clone(), mode, source));
        out.push(ContainerFile { path: path.clone(), mode, contents: SecretValue(contents) });
    }
    Ok((out, canonical))
}

fn secret<'s>(
    component: &Component,
    r: &SecretKeyRef,
    secrets: &'s SecretValues,
) -> Result<&'s ResolvedSecret, PlanError> {
    secrets.get(r).ok_or_else(|| PlanError::SecretUnavailable { component: component.to_string(), secret: r.clone() })
}

fn reference(r: &SecretKeyRef, resolved: &ResolvedSecret) -> String {
    format!("secretKeyRef:{}/{}@{}", r.name, r.key, resolved.revision)
}
