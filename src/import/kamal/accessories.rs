//! Kamal's `accessories` as berth's. Placement follows Kamal's `Accessory#hosts`: the first of
//! `host`, `hosts`, `role`/`roles`, `tag`/`tags` that is given. Roles stay roles (berth's
//! accessory `roles: [web]` follows the role's hosts as they change); tags resolve to the servers
//! of any role that carry the tag. Kamal itself finds tags only in roles written as plain host
//! lists (`web: [- 1.2.3.4: tag]`), not under a role's `hosts:` key; berth's import looks in both,
//! as Kamal's documentation describes tags.
//!
//! `files` are inlined (read from the local path, as Kamal uploads them); ERB templates are not
//! evaluated, so they are reported, not guessed. `directories` map to berth's `directories`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use serde_yaml_ng::Value as Yaml;

use super::config::{key_text, scalar, strings, Node};
use super::secrets::registry;
use super::Server;
use super::{env, options, Ctx, ImportError};

/// Every accessory of `node` (the `accessories` mapping).
pub fn map_all(
    node: &Node<'_>,
    roles: &BTreeMap<String, Vec<Server>>,
    ctx: &mut Ctx<'_>,
) -> Result<Map<String, Value>, ImportError> {
    let mut out = Map::new();
    for (name, value) in node.map {
        let name = key_text(name);
        node.get(&name);
        let Yaml::Mapping(m) = value else {
            ctx.report.unsupported(node.at(&name), "expected an accessory mapping; not imported");
            continue;
        };
        let acc = Node::new(node.at(&name), m);
        let mapped = map_one(&name, &acc, roles, ctx)?;
        acc.finish(&mut ctx.report);
        out.insert(name, mapped);
    }
    Ok(out)
}

fn map_one(
    name: &str,
    node: &Node<'_>,
    roles: &BTreeMap<String, Vec<Server>>,
    ctx: &mut Ctx<'_>,
) -> Result<Value, ImportError> {
    let mut acc = Map::new();
    let Some(image) = node.get("image").and_then(scalar).filter(|i| !i.is_empty()) else {
        return Err(ImportError::new(&ctx.base_file, Some(&node.at("image")), "missing (Kamal requires it)"));
    };
    let mut image = image;
    let mut pull_secrets = Vec::new();
    if let Some(r) = node.child(&mut ctx.report, "registry") {
        let secret = ctx.child_name(&format!("{name}-registry"));
        let (server, credentials) = registry(r, &secret, ctx);
        if let Some(server) = server {
            image = format!("{server}/{image}");
        }
        if credentials {
            pull_secrets.push(secret);
        }
    }
    acc.insert("image".into(), json!(image));
    placement(name, node, roles, &mut acc, ctx)?;
    if let Some(cmd) = node.get("cmd").and_then(scalar) {
        acc.insert("cmd".into(), json!(cmd));
    }
    if let Some(e) = node.get("env") {
        let parsed = env::parse(e, &node.at("env"), false, &mut ctx.report);
        let resolved = parsed.env.resolve(ctx);
        if !resolved.is_empty() {
            acc.insert("env".into(), json!(resolved));
        }
    }
    if let Some(v) = node.get("files") {
        let files = files(v, &node.at("files"), ctx);
        if !files.is_empty() {
            acc.insert("files".into(), Value::Object(files));
        }
    }
    if !pull_secrets.is_empty() {
        acc.insert("imagePullSecrets".into(), json!(pull_secrets));
    }
    if let Some(p) = node.get("port").and_then(scalar) {
        let p = if p.contains(':') { p } else { format!("{p}:{p}") };
        acc.insert("ports".into(), json!([p]));
    }
    let mut volumes = match node.get("volumes") {
        Some(v) => options::volumes(v, &node.at("volumes"), &mut ctx.report),
        None => Vec::new(),
    };
    if let Some(v) = node.get("directories") {
        let (dirs, binds) = directories(v, &node.at("directories"), ctx);
        volumes.extend(binds.into_iter().map(Value::String));
        if !dirs.is_empty() {
            acc.insert("directories".into(), json!(dirs));
        }
    }
    if !volumes.is_empty() {
        acc.insert("volumes".into(), Value::Array(volumes));
    }
    if let Some(l) = node.get("labels") {
        acc.insert("labels".into(), Value::Object(options::labels(l, &node.at("labels"), &mut ctx.report)));
    }
    let mut opts = match node.child(&mut ctx.report, "options") {
        Some(o) => options::map_options(&o, false, &mut acc, &mut ctx.report),
        None => json!({}),
    };
    if let (Some(n), Value::Object(o)) = (node.get("network"), &mut opts) {
        options::network(o, n, &node.at("network"), &mut ctx.report);
    }
    if opts.as_object().is_some_and(|o| !o.is_empty()) {
        acc.insert("options".into(), opts);
    }
    node.unsupported(&mut ctx.report, "service", "berth names containers <app>-<namespace>-<accessory>-<hash>");
    node.unsupported(&mut ctx.report, "proxy", "berth's proxy serves roles only");
    Ok(Value::Object(acc))
}

/// `hosts` or `roles` of the accessory, by Kamal's precedence; the keys it passes over are reported.
fn placement(
    name: &str,
    node: &Node<'_>,
    roles: &BTreeMap<String, Vec<Server>>,
    acc: &mut Map<String, Value>,
    ctx: &mut Ctx<'_>,
) -> Result<(), ImportError> {
    let given: Vec<&str> =
        ["host", "hosts", "role", "roles", "tag", "tags"].into_iter().filter(|k| node.has(k)).collect();
    let Some(first) = given.first().copied() else {
        let field = node.path.clone();
        return Err(ImportError::new(&ctx.base_file, Some(&field), "names no host, hosts, role(s) or tag(s)"));
    };
    for other in &given[1..] {
        node.unsupported(&mut ctx.report, other, &format!("Kamal places an accessory by {first} when both are given"));
    }
    let values = node.get(first).and_then(strings).unwrap_or_default();
    match first {
        "host" | "hosts" => {
            let hosts: Vec<String> = values.iter().map(|a| ctx.hosts.name(a)).collect();
            acc.insert("hosts".into(), json!(hosts));
        }
        "role" | "roles" => {
            if let Some(unknown) = values.iter().find(|r| !roles.contains_key(*r)) {
                let msg = format!("accessory {name}: unknown role {unknown}");
                return Err(ImportError::new(&ctx.base_file, Some(&node.at(first)), msg));
            }
            acc.insert("roles".into(), json!(values));
        }
        _ => {
            let mut hosts: Vec<String> = Vec::new();
            for tag in &values {
                for (address, tags) in roles.values().flatten() {
                    let host = ctx.hosts.name(address);
                    if tags.contains(tag) && !hosts.contains(&host) {
                        hosts.push(host);
                    }
                }
            }
            if hosts.is_empty() {
                let msg = format!("no server carries the tag(s) {}", values.join(", "));
                return Err(ImportError::new(&ctx.base_file, Some(&node.at(first)), msg));
            }
            acc.insert("hosts".into(), json!(hosts));
        }
    }
    Ok(())
}

/// One `files`/`directories` entry: (local, remote, options, mode, owner).
type PathEntry = (String, String, Option<String>, Option<String>, Option<String>);

fn path_entries(v: &Yaml, path: &str, ctx: &mut Ctx<'_>) -> Vec<(String, PathEntry)> {
    let Yaml::Sequence(items) = v else {
        ctx.report.unsupported(path, "expected a list");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match item {
            Yaml::Mapping(m) => {
                let n = Node::new(at.clone(), m);
                let get = |k: &str| n.get(k).and_then(scalar);
                let entry = (get("local"), get("remote"), get("options"), get("mode"), get("owner"));
                n.finish(&mut ctx.report);
                match entry {
                    (Some(l), Some(r), o, m, w) => out.push((at, (l, r, o, m, w))),
                    _ => ctx.report.unsupported(at, "needs local and remote"),
                }
            }
            other => {
                let text = scalar(other).unwrap_or_default();
                let mut parts = text.splitn(3, ':');
                match (parts.next(), parts.next()) {
                    (Some(l), Some(r)) if !l.is_empty() && !r.is_empty() => {
                        let opts = parts.next().map(str::to_string);
                        out.push((at, (l.to_string(), r.to_string(), opts, None, None)));
                    }
                    _ => ctx.report.unsupported(at, "expected local:remote[:options]"),
                }
            }
        }
    }
    out
}

/// Kamal `files` as berth `files` with inline content; the mode defaults to Kamal's 755.
fn files(v: &Yaml, path: &str, ctx: &mut Ctx<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    for (at, (local, remote, opts, mode, owner)) in path_entries(v, path, ctx) {
        if local.ends_with(".erb") {
            ctx.report
                .unsupported(at, format!("{local} is an ERB template, not evaluated here; add its output by hand"));
            continue;
        }
        let content = match (ctx.read_file)(&local) {
            Ok(c) => c,
            Err(e) => {
                ctx.report.unsupported(at, format!("cannot read {local} ({e}); add it by hand"));
                continue;
            }
        };
        if opts.as_deref().is_some_and(|o| o.split(',').any(|o| o != "ro")) {
            ctx.report.unsupported(format!("{at}/options"), "berth writes files into the container: no mount options");
        }
        if owner.is_some() {
            ctx.report.unsupported(format!("{at}/owner"), "berth writes files owned by root");
        }
        let mode = mode.unwrap_or_else(|| "755".into());
        let mode = if mode.starts_with('0') { mode } else { format!("0{mode}") };
        out.insert(remote, json!({"content": content, "mode": mode}));
    }
    out
}

/// Kamal `directories` as berth's `name:/path[:ro]` (a name under the accessory's folder on the
/// host, as Kamal's relative paths are under the service's); an absolute host path is a bind mount
/// in `volumes` (Docker creates a missing one, as Kamal does). Mode, owner and options other than
/// `ro` are reported.
fn directories(v: &Yaml, path: &str, ctx: &mut Ctx<'_>) -> (Vec<String>, Vec<String>) {
    let (mut dirs, mut binds) = (Vec::new(), Vec::new());
    for (at, (local, remote, opts, mode, owner)) in path_entries(v, path, ctx) {
        let read_only = opts.as_deref().is_some_and(|o| o.split(',').any(|o| o == "ro"));
        if opts.as_deref().is_some_and(|o| o.split(',').any(|o| o != "ro" && o != "rw")) {
            ctx.report.unsupported(format!("{at}/options"), "mount options: berth keeps ro/rw only");
        }
        for (field, value) in [("mode", mode), ("owner", owner)] {
            if value.is_some() {
                ctx.report.unsupported(format!("{at}/{field}"), "berth creates directories with Docker's defaults");
            }
        }
        let suffix = if read_only { ":ro" } else { "" };
        if local.starts_with('/') {
            binds.push(format!("{local}:{remote}{suffix}"));
        } else {
            dirs.push(format!("{local}:{remote}{suffix}"));
        }
    }
    (dirs, binds)
}
