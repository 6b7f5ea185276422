//! The App and the Hosts from a merged Kamal config: image and registry, `servers` and their roles,
//! env (with per-host env from tags), labels, volumes, logging, options, timeouts, `boot`, and
//! `ssh` for the Hosts' endpoints. Accessories are in `accessories.rs`, the proxy in `proxy.rs`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use serde_yaml_ng::Value as Yaml;

use super::config::{key_text, scalar, Node};
use super::env::{self, KamalEnv};
use super::proxy::{self, ProxyConf};
use super::secrets::registry;
use super::{accessories, options, Ctx, EnvMap, ImportError, Server};

/// Root keys berth has no place for, and why.
const UNSUPPORTED_ROOT: &[(&str, &str)] = &[
    ("builder", "berth deploys images already built and pushed; build them in CI or with `kamal build`"),
    ("asset_path", "berth does not bridge assets across versions"),
    ("hooks_path", "berth runs no local hooks; run them around `berth apply` in the pipeline"),
    ("hooks_output", "berth runs no local hooks"),
    ("secrets_path", "give the secrets file with --secrets PATH"),
    ("error_pages_path", "berth's proxy serves no custom error pages"),
    ("retain_containers", "berth keeps no old containers; `berth operator --image-retention N` keeps images"),
    ("minimum_version", "a Kamal version; berth has none to check"),
    ("run_directory", "berth keeps no files of its own on hosts"),
    ("sshkit", "berth opens one ssh forward per host; tune ssh in ~/.ssh/config (BERTH_SSH_CONFIG)"),
    ("output", "berth logs to stderr (BERTH_LOG, --log-format)"),
    ("aliases", "berth has no command aliases"),
];

/// What every role inherits from the root.
struct RootShared {
    env: KamalEnv,
    tags: BTreeMap<String, KamalEnv>,
    app_env: EnvMap,
    labels: Map<String, Value>,
    volumes: Vec<Value>,
    readiness_delay: Option<String>,
    drain_timeout: Option<String>,
    stop_timeout: Option<String>,
    proxy: Option<ProxyConf>,
    primary: String,
}

/// The App's `spec`. Roles are mapped before accessories, which may be placed on them.
pub fn map_app(node: &Node<'_>, ctx: &mut Ctx<'_>, version: Option<&str>) -> Result<Value, ImportError> {
    let mut spec = Map::new();
    let (image, pull_secret) = image_and_registry(node, ctx, version);
    spec.insert("image".into(), json!(image));
    let parsed_env = node.get("env").map(|v| env::parse(v, "env", true, &mut ctx.report));
    let (root_env, tags) = parsed_env.map(|p| (p.env, p.tags)).unwrap_or_default();
    let app_env = root_env.resolve(ctx);
    if !app_env.is_empty() {
        spec.insert("env".into(), json!(app_env));
    }
    if let Some(name) = pull_secret {
        spec.insert("imagePullSecrets".into(), json!([name]));
    }
    if let Some(l) = node.child(&mut ctx.report, "logging") {
        spec.insert("logging".into(), options::logging(&l, &mut ctx.report));
        l.finish(&mut ctx.report);
    }
    let proxy = node.child(&mut ctx.report, "proxy").map(|p| proxy::parse(p, &mut ctx.report));
    let shared = RootShared {
        env: root_env,
        tags,
        app_env,
        labels: node.get("labels").map(|l| options::labels(l, "labels", &mut ctx.report)).unwrap_or_default(),
        volumes: node.get("volumes").map(|v| options::volumes(v, "volumes", &mut ctx.report)).unwrap_or_default(),
        readiness_delay: timeout(node, "readiness_delay", ctx),
        drain_timeout: timeout(node, "drain_timeout", ctx),
        stop_timeout: timeout(node, "stop_timeout", ctx),
        proxy,
        primary: node.get("primary_role").and_then(scalar).unwrap_or_else(|| "web".into()),
    };
    node.get("allow_empty_roles");
    let servers = role_servers(node, ctx);
    let mut roles = Map::new();
    for (name, (value, list)) in &servers {
        if let Some(role) = map_role(name, value, list, &shared, ctx) {
            roles.insert(name.clone(), role);
        }
    }
    if !roles.is_empty() {
        spec.insert("roles".into(), Value::Object(roles));
    }
    let role_lists: BTreeMap<String, Vec<Server>> = servers.into_iter().map(|(name, (_, list))| (name, list)).collect();
    if let Some(acc) = node.child(&mut ctx.report, "accessories") {
        let mapped = accessories::map_all(&acc, &role_lists, ctx)?;
        if !mapped.is_empty() {
            spec.insert("accessories".into(), Value::Object(mapped));
        }
        acc.finish(&mut ctx.report);
    }
    if let Some(rollout) = rollout(node, ctx) {
        spec.insert("rollout".into(), rollout);
    }
    for (key, why) in UNSUPPORTED_ROOT {
        node.unsupported(&mut ctx.report, key, why);
    }
    Ok(Value::Object(spec))
}

/// A root timeout in Kamal's seconds as a berth duration (reported when it is not one).
fn timeout(node: &Node<'_>, key: &str, ctx: &mut Ctx<'_>) -> Option<String> {
    node.seconds(&mut ctx.report, key)
}

/// `[registry.server/]image[:version]`, and the registry Secret's name when credentials are given.
fn image_and_registry(node: &Node<'_>, ctx: &mut Ctx<'_>, version: Option<&str>) -> (String, Option<String>) {
    let image = node.get("image").and_then(scalar).unwrap_or_default();
    let Some(r) = node.child(&mut ctx.report, "registry") else { return (tagged(&image, version, ctx), None) };
    let name = ctx.child_name("registry");
    let (server, credentials) = registry(r, &name, ctx);
    let image = match server {
        Some(server) => format!("{server}/{image}"),
        None => image,
    };
    (tagged(&image, version, ctx), credentials.then_some(name))
}

/// Adds `:version` (default `latest`, noted) to a reference without a tag or digest.
fn tagged(image: &str, version: Option<&str>, ctx: &mut Ctx<'_>) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        return image.to_string();
    }
    match version {
        Some(v) => format!("{image}:{v}"),
        None => {
            ctx.report.note(format!(
                "image: Kamal tags each build with its git version; the App runs {image}:latest (give --version to pin one)"
            ));
            format!("{image}:latest")
        }
    }
}

/// `servers` as role name → (its config, its servers). A plain list is the role `web`.
fn role_servers<'a>(node: &Node<'a>, ctx: &mut Ctx<'_>) -> BTreeMap<String, (Option<&'a Yaml>, Vec<Server>)> {
    let mut out = BTreeMap::new();
    match node.get("servers") {
        None => {}
        Some(list @ Yaml::Sequence(_)) => {
            out.insert("web".to_string(), (None, server_list(list, "servers", ctx)));
        }
        Some(Yaml::Mapping(m)) => {
            for (name, v) in m {
                let name = key_text(name);
                let path = format!("servers/{name}");
                let list = match v {
                    Yaml::Sequence(_) => server_list(v, &path, ctx),
                    Yaml::Mapping(rm) => match rm.get("hosts") {
                        Some(h) => server_list(h, &format!("{path}/hosts"), ctx),
                        None => Vec::new(),
                    },
                    _ => {
                        ctx.report.unsupported(path, "expected a list of hosts or a role mapping");
                        continue;
                    }
                };
                out.insert(name, (Some(v), list));
            }
        }
        Some(_) => ctx.report.unsupported("servers", "expected a list of hosts or a mapping of roles"),
    }
    out
}

/// A host list: `- 1.2.3.4`, `- 1.2.3.4: tag` or `- 1.2.3.4: [tag1, tag2]`.
fn server_list(v: &Yaml, path: &str, ctx: &mut Ctx<'_>) -> Vec<Server> {
    let Yaml::Sequence(items) = v else {
        ctx.report.unsupported(path, "expected a list of hosts");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Yaml::Mapping(m) if m.len() == 1 => {
                let (host, tags) = m.iter().next().expect("one entry");
                let tags = super::config::strings(tags).unwrap_or_default();
                out.push((key_text(host), tags));
            }
            other => match scalar(other) {
                Some(h) if !h.is_empty() => out.push((h, Vec::new())),
                _ => ctx.report.unsupported(format!("{path}[{i}]"), "not a host address"),
            },
        }
    }
    out
}

/// One role. Its env is Kamal's `env(host)` for each host, split into what the App already has,
/// the role's additions and each host's (tags) additions.
fn map_role(
    name: &str,
    value: &Option<&Yaml>,
    servers: &[Server],
    root: &RootShared,
    ctx: &mut Ctx<'_>,
) -> Option<Value> {
    let path = format!("servers/{name}");
    let empty = serde_yaml_ng::Mapping::new();
    let map = match value {
        Some(Yaml::Mapping(m)) => m,
        _ => &empty,
    };
    let node = Node::new(path.clone(), map);
    node.get("hosts");
    if servers.is_empty() {
        ctx.report.unsupported(path, "a role without hosts runs nothing; not imported");
        node.get("cmd");
        return None;
    }
    let mut role = Map::new();
    role.insert("hosts".into(), json!(servers.iter().map(|(a, _)| ctx.hosts.name(a)).collect::<Vec<_>>()));
    if let Some(cmd) = node.get("cmd").and_then(scalar) {
        role.insert("cmd".into(), json!(cmd));
    }
    let own_env = node.get("env").map(|v| env::parse(v, &node.at("env"), false, &mut ctx.report).env);
    let role_kenv = root.env.merge(&own_env.unwrap_or_default());
    let role_env = role_kenv.resolve(ctx);
    let role_diff = env::difference(&role_env, &root.app_env);
    if !role_diff.is_empty() {
        role.insert("env".into(), json!(role_diff));
    }
    let mut host_env = Map::new();
    for (address, tags) in servers {
        let full = tags.iter().filter_map(|t| root.tags.get(t)).fold(role_kenv.clone(), |acc, t| acc.merge(t));
        let diff = env::difference(&full.resolve(ctx), &role_env);
        if !diff.is_empty() {
            host_env.insert(ctx.hosts.name(address), json!(diff));
        }
    }
    if !host_env.is_empty() {
        role.insert("hostEnv".into(), Value::Object(host_env));
    }
    if !root.volumes.is_empty() {
        role.insert("volumes".into(), Value::Array(root.volumes.clone()));
    }
    let mut labels = root.labels.clone();
    if let Some(l) = node.get("labels") {
        labels.extend(options::labels(l, &node.at("labels"), &mut ctx.report));
    }
    if !labels.is_empty() {
        role.insert("labels".into(), Value::Object(labels));
    }
    if let Some(o) = node.child(&mut ctx.report, "options") {
        let opts = options::map_options(&o, true, &mut role, &mut ctx.report);
        if opts.as_object().is_some_and(|m| !m.is_empty()) {
            role.insert("options".into(), opts);
        }
    }
    if let Some(l) = node.child(&mut ctx.report, "logging") {
        role.insert("logging".into(), options::logging(&l, &mut ctx.report));
        l.finish(&mut ctx.report);
    }
    let proxy_conf = role_proxy(name, &node, root, ctx);
    let proxied = match &proxy_conf {
        Some(c) => match proxy::to_berth(c, name, root.drain_timeout.as_deref(), ctx) {
            Some(p) => {
                for (address, _) in servers {
                    let (http, https) = (c.http_port, c.https_port);
                    if http.is_some() || https.is_some() {
                        let host = ctx.hosts.name(address);
                        if let Some(e) = ctx.hosts.entries.iter_mut().find(|e| e.name == host) {
                            e.proxy_ports = Some((http, https));
                        }
                    }
                }
                role.insert("proxy".into(), p);
                true
            }
            None => false,
        },
        None => false,
    };
    let stop = if node.has("stop_timeout") {
        node.seconds(&mut ctx.report, "stop_timeout")
    } else {
        root.stop_timeout.clone().or_else(|| (!proxied).then(|| root.drain_timeout.clone()).flatten())
    };
    if let Some(s) = stop {
        role.insert("stopTimeout".into(), json!(s));
    }
    if let (false, Some(d)) = (proxied, &root.readiness_delay) {
        role.insert("readinessDelay".into(), json!(d));
    }
    node.unsupported(&mut ctx.report, "asset_path", "berth does not bridge assets across versions");
    node.finish(&mut ctx.report);
    Some(Value::Object(role))
}

/// The role's effective proxy config, per Kamal's rules (see `proxy.rs`).
fn role_proxy(name: &str, node: &Node<'_>, root: &RootShared, ctx: &mut Ctx<'_>) -> Option<ProxyConf> {
    let root_conf = root.proxy.clone().unwrap_or_else(|| ProxyConf { path: "proxy".into(), ..Default::default() });
    match node.get("proxy") {
        Some(Yaml::Bool(false)) => None,
        Some(Yaml::Bool(true)) => Some(root_conf),
        Some(Yaml::Mapping(m)) => {
            let own = proxy::parse(Node::new(node.at("proxy"), m), &mut ctx.report);
            Some(proxy::merge(&root_conf, &own))
        }
        Some(_) => {
            ctx.report.unsupported(node.at("proxy"), "expected true, false or a mapping");
            None
        }
        None => (name == root.primary).then_some(root_conf),
    }
}

/// `boot.limit` → `maxUnavailable`, `deploy_timeout` → `healthTimeout`.
fn rollout(node: &Node<'_>, ctx: &mut Ctx<'_>) -> Option<Value> {
    let mut out = Map::new();
    if let Some(boot) = node.child(&mut ctx.report, "boot") {
        match boot.get("limit") {
            Some(Yaml::Number(n)) => {
                out.insert("maxUnavailable".into(), json!(n.as_u64().unwrap_or(1)));
            }
            Some(Yaml::String(s)) if s.ends_with('%') => {
                out.insert("maxUnavailable".into(), json!(s));
            }
            Some(Yaml::String(s)) if s.parse::<u32>().is_ok() => {
                out.insert("maxUnavailable".into(), json!(s.parse::<u32>().unwrap_or(1)));
            }
            Some(_) => ctx.report.unsupported(boot.at("limit"), "expected a count or a percentage"),
            None => {}
        }
        boot.unsupported(&mut ctx.report, "wait", "berth waits for health between batches, not for a fixed time");
        boot.unsupported(&mut ctx.report, "parallel_roles", "berth starts a host's roles as their dependencies allow");
        boot.finish(&mut ctx.report);
    }
    if let Some(t) = timeout(node, "deploy_timeout", ctx) {
        out.insert("healthTimeout".into(), json!(t));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Hosts for every server the App and its accessories use: `ssh://user@host:port` from `ssh`
/// (Kamal's defaults: root, 22; an address's own `user@`/`:port` wins).
pub fn map_hosts(node: &Node<'_>, ctx: &mut Ctx<'_>) -> Vec<Value> {
    let (mut user, mut port) = ("root".to_string(), "22".to_string());
    if let Some(ssh) = node.child(&mut ctx.report, "ssh") {
        if let Some(u) = ssh.get("user").and_then(scalar) {
            user = u;
        }
        if let Some(p) = ssh.get("port").and_then(scalar) {
            port = p;
        }
        for key in ["proxy", "proxy_command", "log_level", "keys_only", "keys", "key_data", "config", "forward_agent"] {
            ssh.unsupported(
                &mut ctx.report,
                key,
                "berth uses the system's ssh: set it in ~/.ssh/config (BERTH_SSH_CONFIG)",
            );
        }
        ssh.finish(&mut ctx.report);
    }
    let mut hosts: Vec<Value> = Vec::new();
    for e in &ctx.hosts.entries {
        let (u, host, p) = super::split_address(&e.address);
        let mut spec = Map::new();
        spec.insert("endpoint".into(), json!(format!("ssh://{}@{host}:{}", u.unwrap_or(&user), p.unwrap_or(&port))));
        if let Some((http, https)) = e.proxy_ports {
            let mut proxy = Map::new();
            if let Some(h) = http {
                proxy.insert("httpPort".into(), json!(h));
            }
            if let Some(h) = https {
                proxy.insert("httpsPort".into(), json!(h));
            }
            spec.insert("proxy".into(), Value::Object(proxy));
        }
        hosts.push(json!({
            "apiVersion": crate::spec::API_VERSION,
            "kind": "Host",
            "metadata": {"name": e.name},
            "spec": spec,
        }));
    }
    hosts.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
    hosts
}
