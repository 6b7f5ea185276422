//! Offline checks of one resource, plus the cross-resource checks `apply` runs against the store.
//!
//! Pure functions returning `(path, message)` pairs so callers decide how to locate them
//! (file and document for `validate`, resource name for `apply`). The runtime fields are read by
//! the typed parsers of [`super::typed`], the very ones the planner calls, so validation and
//! execution never disagree; a valid App comes back in that typed form ([`validate_app`]).

use std::collections::{BTreeMap, BTreeSet};

use super::endpoint::{parse_endpoint, Endpoint};
use super::image::parse_image;
use super::ports::{parse_port, PortMapping, Protocol};
use super::proxy::{route_problems_against, ParsedProxy, ProxySettings};
use super::relations::accessory_hosts;
use super::secret::{EnvValue, FileSource, SecretKeyRef};
use super::typed::{
    check_command, directories, proxy_on_host_network, readiness_delay, FieldError, ParsedAccessory, ParsedRole,
    ParsedWorkload, RoleLimits, RolloutPolicy, ValidApp, WorkloadFields,
};
use super::types::{Accessory, App, Command, Host, Resource, Role, API_VERSION};
use super::values::{check_dns_label, check_env_key};

/// A problem: field path (`spec.roles.web.ports[0]`) and message.
pub type Problem = (String, String);

/// Collects problems; `check` records an `Err` at a path and ignores `Ok`.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
    }

    fn check<T>(&mut self, path: impl Into<String>, result: Result<T, String>) {
        self.take(path, result);
    }

    /// Like `check`, and gives back the value when there is one.
    fn take<T>(&mut self, path: impl Into<String>, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.push(path, message)).ok()
    }

    /// Records the typed parsers' errors at their paths under `base`.
    fn fields(&mut self, base: &str, errors: Vec<FieldError>) {
        for e in errors {
            self.push(e.path_under(base), e.message);
        }
    }
}

/// Validates one resource on its own (no store, no other files).
pub fn validate(res: &Resource) -> Vec<Problem> {
    match res {
        Resource::App(app) => validate_app(app).err().unwrap_or_default(),
        Resource::Host(host) => {
            let mut p = Problems::default();
            validate_host(host, &mut p);
            p.0
        }
        Resource::Secret(secret) => {
            let mut p = Problems::default();
            check_header(&mut p, &secret.api_version, &secret.kind, "Secret");
            p.check("metadata.name", check_dns_label(&secret.metadata.name));
            if let Some(ns) = &secret.metadata.namespace {
                p.check("metadata.namespace", check_dns_label(ns));
            }
            for (path, message) in super::secret::validate_secret(secret) {
                p.push(path, message);
            }
            p.0
        }
    }
}

/// `base.key`, or `base["key"]` when the key would make the path ambiguous.
fn key_path(base: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        format!("{base}.{key}")
    } else {
        format!("{base}[{key:?}]")
    }
}

fn check_header(p: &mut Problems, api_version: &str, kind: &str, expected_kind: &str) {
    if api_version != API_VERSION {
        p.push("apiVersion", format!("unsupported apiVersion {api_version:?} (expected {API_VERSION:?})"));
    }
    if kind != expected_kind {
        p.push("kind", format!("kind {kind:?} does not match {expected_kind}"));
    }
}

/// Validates one App on its own and hands back its typed form, or every problem found.
pub fn validate_app(app: &App) -> Result<ValidApp, Vec<Problem>> {
    let mut p = Problems::default();
    check_header(&mut p, &app.api_version, &app.kind, "App");
    p.check("metadata.name", check_dns_label(&app.metadata.name));
    if let Some(ns) = &app.metadata.namespace {
        p.check("metadata.namespace", check_dns_label(ns));
    }
    let spec = &app.spec;
    let image = p.take("spec.image", parse_image(&spec.image));
    check_env(&mut p, "spec.env", &spec.env);
    check_pull_secrets(&mut p, "spec.imagePullSecrets", &spec.image_pull_secrets);
    for (field, message) in spec.logging.iter().flat_map(|l| l.problems()) {
        p.push(format!("spec.{field}"), message);
    }
    if spec.roles.is_empty() && spec.accessories.is_empty() {
        p.push("spec", "app has no roles and no accessories: nothing to run");
    }
    let roles: Vec<_> =
        spec.roles.iter().map(|(name, role)| (name.clone(), check_role(&mut p, app, name, role))).collect();
    let accessories: Vec<_> =
        spec.accessories.iter().map(|(name, acc)| (name.clone(), check_accessory(&mut p, app, name, acc))).collect();
    let mut errors = Vec::new();
    let rollout = RolloutPolicy::collect(&spec.rollout, &mut errors);
    p.fields("spec", errors);
    for (name, role) in &roles {
        if let Some(delay) = role.readiness_delay.filter(|d| *d >= rollout.health_timeout) {
            let msg = format!(
                "readinessDelay {} is not shorter than rollout.healthTimeout {}: no container would ever count as ready",
                humantime::format_duration(delay),
                humantime::format_duration(rollout.health_timeout)
            );
            p.push(format!("{}.readinessDelay", key_path("spec.roles", name)), msg);
        }
    }
    check_ports_unique(&mut p, app);
    for (path, message) in super::proxy::route_problems(app) {
        p.push(path, message);
    }
    let accessories: Option<_> = accessories.into_iter().map(|(name, acc)| acc.map(|a| (name, a))).collect();
    match (p.0.is_empty(), image, accessories) {
        (true, Some(image), Some(accessories)) => {
            Ok(ValidApp { image, roles: roles.into_iter().collect(), accessories, rollout })
        }
        _ => Err(p.0),
    }
}

/// The parts roles and accessories share, so both get identical checks.
struct Workload<'a> {
    path: String,
    what: &'static str,
    /// `hosts` as written.
    hosts: &'a [String],
    /// Where it runs: `hosts`, and for an accessory the hosts of its `roles` too.
    placement: Vec<String>,
    /// An accessory's `roles`: with them, `hosts` may be empty.
    roles: &'a [String],
    cmd: Option<&'a Command>,
    env: &'a BTreeMap<String, EnvValue>,
    files: &'a BTreeMap<String, FileSource>,
    ports: &'a [String],
    /// What the typed parsers read.
    fields: WorkloadFields<'a>,
}

fn role_workload<'a>(name: &str, r: &'a Role) -> Workload<'a> {
    Workload {
        path: key_path("spec.roles", name),
        what: "role",
        hosts: &r.hosts,
        placement: r.hosts.clone(),
        roles: &[],
        cmd: r.cmd.as_ref(),
        env: &r.env,
        files: &r.files,
        ports: &r.ports,
        fields: WorkloadFields::of_role(r),
    }
}

fn accessory_workload<'a>(app: &App, name: &str, a: &'a Accessory) -> Workload<'a> {
    Workload {
        path: key_path("spec.accessories", name),
        what: "accessory",
        hosts: &a.hosts,
        placement: accessory_hosts(&app.spec, a),
        roles: &a.roles,
        cmd: a.cmd.as_ref(),
        env: &a.env,
        files: &a.files,
        ports: &a.ports,
        fields: WorkloadFields::of_accessory(a),
    }
}

/// Roles then accessories, in name order: the order every app-wide check walks them.
fn workloads(app: &App) -> impl Iterator<Item = Workload<'_>> {
    let roles = app.spec.roles.iter().map(|(n, r)| role_workload(n, r));
    roles.chain(app.spec.accessories.iter().map(move |(n, a)| accessory_workload(app, n, a)))
}

fn check_role(p: &mut Problems, app: &App, name: &str, role: &Role) -> ParsedRole {
    let w = role_workload(name, role);
    let workload = check_workload(p, name, &w);
    if let Some(deps) = &role.depends_on {
        for (i, dep) in deps.iter().enumerate() {
            if !app.spec.accessories.contains_key(dep) {
                p.push(format!("{}.dependsOn[{i}]", w.path), format!("no accessory named {dep:?} in this app"));
            }
        }
    }
    for (host, env) in &role.host_env {
        let at = key_path(&format!("{}.hostEnv", w.path), host);
        if !role.hosts.contains(host) {
            p.push(at.clone(), format!("host {host:?} is not one of this role's hosts"));
        }
        check_env(p, &at, env);
    }
    let mut errors = Vec::new();
    let limits = RoleLimits::collect(role, &mut errors);
    let readiness_delay = readiness_delay(role, &mut errors);
    p.fields(&w.path, errors);
    if let Some(message) = proxy_on_host_network(role, &workload) {
        p.push(format!("{}.options.network", w.path), message);
    }
    let proxy = role.proxy.as_ref().and_then(|section| {
        if !role.ports.is_empty() {
            let msg = "a proxied role publishes no host port of its own: the host's proxy serves it";
            p.push(format!("{}.ports", w.path), msg);
        }
        match ParsedProxy::parse(section) {
            Ok(parsed) => Some(parsed),
            Err((field, message)) => {
                p.push(format!("{}.proxy.{field}", w.path), message);
                None
            }
        }
    });
    ParsedRole { workload, limits, proxy, readiness_delay }
}

fn check_accessory(p: &mut Problems, app: &App, name: &str, acc: &Accessory) -> Option<ParsedAccessory> {
    let w = accessory_workload(app, name, acc);
    let workload = check_workload(p, name, &w);
    for (i, role) in acc.roles.iter().enumerate() {
        if !app.spec.roles.contains_key(role) {
            p.push(format!("{}.roles[{i}]", w.path), format!("no role named {role:?} in this app"));
        }
    }
    let mut errors = Vec::new();
    let directories = directories(acc, &mut errors);
    p.fields(&w.path, errors);
    let image = p.take(format!("{}.image", w.path), parse_image(&acc.image));
    check_pull_secrets(p, &format!("{}.imagePullSecrets", w.path), &acc.image_pull_secrets);
    if app.spec.roles.contains_key(name) {
        p.push(w.path.clone(), format!("{name:?} is both a role and an accessory name (they share network aliases)"));
    }
    image.map(|image| ParsedAccessory { image, workload, directories })
}

/// The checks roles and accessories share; their runtime fields come back typed.
fn check_workload(p: &mut Problems, name: &str, w: &Workload<'_>) -> ParsedWorkload {
    p.check(w.path.clone(), check_component_name(name, w.what));
    check_hosts(p, w);
    if let Some(cmd) = w.cmd {
        p.check(format!("{}.cmd", w.path), check_command(cmd));
    }
    check_env(p, &format!("{}.env", w.path), w.env);
    check_files(p, &format!("{}.files", w.path), w.files);
    let mut errors = Vec::new();
    let typed = ParsedWorkload::collect(&w.fields, &mut errors);
    p.fields(&w.path, errors);
    typed
}

/// Role and accessory names: a DNS label that may also hold `_` inside (Kamal's `web_new`), as
/// `[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?`. They become container names, network aliases and label
/// values, which all allow `_`; metadata names stay DNS labels (they become etcd keys and networks).
fn check_component_name(name: &str, what: &str) -> Result<(), String> {
    let inner_ok = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let ends_ok = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() <= super::values::MAX_NAME_LEN && inner_ok && ends_ok {
        return Ok(());
    }
    Err(format!(
        "{name:?} is not a valid {what} name: use at most 63 lowercase letters, digits, '-' and '_', starting and ending with a letter or digit"
    ))
}

fn check_hosts(p: &mut Problems, w: &Workload<'_>) {
    match (w.hosts.is_empty(), w.what) {
        (true, "accessory") if w.roles.is_empty() => {
            p.push(format!("{}.hosts", w.path), "accessory has no hosts and no roles: give hosts, roles or both")
        }
        (true, "role") => p.push(format!("{}.hosts", w.path), format!("{} has no hosts", w.what)),
        _ => {}
    }
    let mut seen = BTreeSet::new();
    for (i, host) in w.hosts.iter().enumerate() {
        let path = format!("{}.hosts[{i}]", w.path);
        p.check(path.clone(), check_dns_label(host));
        if !seen.insert(host) {
            p.push(path, format!("host {host:?} listed twice"));
        }
    }
}

fn check_env(p: &mut Problems, base: &str, env: &BTreeMap<String, EnvValue>) {
    for (key, value) in env {
        p.check(key_path(base, key), check_env_key(key));
        if let Some(r) = value.secret_ref() {
            check_secret_ref(p, &format!("{}.secretKeyRef", key_path(base, key)), r);
        }
    }
}

fn check_secret_ref(p: &mut Problems, path: &str, r: &SecretKeyRef) {
    p.check(format!("{path}.name"), check_dns_label(&r.name));
    if r.key.is_empty() {
        p.push(format!("{path}.key"), "names no key");
    }
}

fn check_pull_secrets(p: &mut Problems, base: &str, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        p.check(format!("{base}[{i}]"), check_dns_label(name));
    }
}

/// Files: absolute paths, octal modes, exactly one source each.
fn check_files(p: &mut Problems, base: &str, files: &BTreeMap<String, FileSource>) {
    for (path, f) in files {
        let at = key_path(base, path);
        if !path.starts_with('/') || path.ends_with('/') {
            p.push(at.clone(), "a file's path is absolute and names a file (/etc/app.conf)");
        }
        match (&f.content, &f.secret_key_ref) {
            (Some(_), None) => {}
            (None, Some(r)) => check_secret_ref(p, &format!("{at}.secretKeyRef"), r),
            _ => p.push(at.clone(), "give exactly one of content and secretKeyRef"),
        }
        if f.mode_bits().is_none() {
            p.push(format!("{at}.mode"), "octal permission bits such as \"0400\"");
        }
    }
}

/// One host port an app publishes on one host, with the spec path that asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// The Host name the port is bound on.
    pub host: String,
    /// The parsed port entry.
    pub mapping: PortMapping,
    /// `spec.roles.web.ports[0]`
    pub path: String,
}

/// Every (host, port) an app publishes, roles first then accessories, in name order.
///
/// Unparseable port entries are skipped (validation reports them); each host counts once per
/// role or accessory even if listed twice.
pub fn published_ports(app: &App) -> Vec<PublishedPort> {
    let mut out = Vec::new();
    for w in workloads(app) {
        let hosts: BTreeSet<&String> = w.placement.iter().collect();
        for (i, text) in w.ports.iter().enumerate() {
            let Ok(mapping) = parse_port(text) else { continue };
            for host in &hosts {
                out.push(PublishedPort { host: (*host).clone(), mapping, path: format!("{}.ports[{i}]", w.path) });
            }
        }
    }
    out
}

/// `8080` for tcp, `53/udp` for udp: how messages name a host port.
fn port_label(m: &PortMapping) -> String {
    match m.protocol {
        Protocol::Tcp => m.host_port.to_string(),
        Protocol::Udp => format!("{}/udp", m.host_port),
    }
}

/// A host socket published twice within one app would make Docker refuse the second container.
fn check_ports_unique(p: &mut Problems, app: &App) {
    let ports = published_ports(app);
    let mut reported = BTreeSet::new();
    for (i, later) in ports.iter().enumerate() {
        let clash = ports[..i].iter().find(|earlier| {
            earlier.host == later.host && earlier.path != later.path && earlier.mapping.conflicts_with(&later.mapping)
        });
        if let Some(earlier) = clash {
            if reported.insert(later.path.clone()) {
                let msg = format!(
                    "host port {} on {} already published by {}",
                    port_label(&later.mapping),
                    later.host,
                    earlier.path
                );
                p.push(later.path.clone(), msg);
            }
        }
    }
}

/// Checks an App against the rest of the world at apply time: every host it names is defined by
/// a Host, and no host port it publishes is already published on that host by another app
/// (another name, or the same name in another namespace). `other_apps` may include `app` itself;
/// it is skipped.
pub fn validate_against_store(app: &App, hosts: &[Host], other_apps: &[App]) -> Vec<Problem> {
    let mut p = Problems::default();
    let defined: BTreeSet<&str> = hosts.iter().map(|h| h.metadata.name.as_str()).collect();
    for w in workloads(app) {
        for (i, host) in w.hosts.iter().enumerate() {
            if !defined.contains(host.as_str()) {
                p.push(format!("{}.hosts[{i}]", w.path), format!("host {host:?} is not defined by any Host resource"));
            }
        }
    }
    let others = other_apps.iter().filter(|o| !same_app(o, app));
    let theirs: Vec<(&App, PublishedPort)> =
        others.flat_map(|o| published_ports(o).into_iter().map(move |pp| (o, pp))).collect();
    for mine in published_ports(app) {
        let clash = theirs.iter().find(|(_, t)| t.host == mine.host && t.mapping.conflicts_with(&mine.mapping));
        if let Some((other, _)) = clash {
            let name = format!("app/{} -n {}", other.metadata.name, other.namespace());
            let msg = format!("host port {} on {} already published by {name}", port_label(&mine.mapping), mine.host);
            p.push(mine.path.clone(), msg);
        }
    }
    for (path, message) in route_problems_against(app, hosts, other_apps) {
        p.push(path, message);
    }
    p.0
}

fn same_app(a: &App, b: &App) -> bool {
    a.metadata.name == b.metadata.name && a.namespace() == b.namespace()
}

fn validate_host(host: &Host, p: &mut Problems) {
    check_header(p, &host.api_version, &host.kind, "Host");
    p.check("metadata.name", check_dns_label(&host.metadata.name));
    let spec = &host.spec;
    if let Err((path, message)) = super::network::AddressPool::of_host(spec) {
        p.push(path, message);
    }
    if let Some(proxy) = &spec.proxy {
        if let Some(image) = &proxy.image {
            p.check("spec.proxy.image", parse_image(image));
        }
        if proxy.http_port == Some(0) {
            p.push("spec.proxy.httpPort", "must be a port from 1 to 65535");
        }
        let settings = ProxySettings::of(host);
        if settings.https_port == Some(settings.http_port) {
            p.push("spec.proxy.httpsPort", format!("port {} is already the httpPort", settings.http_port));
        }
    }
    let endpoint = match parse_endpoint(&spec.endpoint) {
        Ok(e) => e,
        Err(e) => return p.push("spec.endpoint", e),
    };
    let is_tcp = matches!(endpoint, Endpoint::Tcp { .. });
    if is_tcp && spec.tls.is_none() && !spec.insecure {
        p.push("spec.endpoint", "plain tcp needs spec.tls or spec.insecure: true");
    }
    if let Some(tls) = &spec.tls {
        if !is_tcp {
            p.push("spec.tls", "tls files only apply to tcp:// endpoints");
        }
        for (field, value) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
            if value.trim().is_empty() {
                p.push(format!("spec.tls.{field}"), "file path must not be empty");
            }
        }
    }
}
