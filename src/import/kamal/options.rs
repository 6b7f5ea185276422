//! The pieces roles and accessories share: Docker `options` (Kamal passes each as `--NAME VALUE`
//! to `docker run`; berth has a typed field for some and refuses the rest by name), `logging`,
//! `labels` and volume strings.

use serde_json::{json, Map, Value};
use serde_yaml_ng::Value as Yaml;

use super::config::{key_text, scalar, strings, Node};
use super::Report;

/// Maps an `options` mapping: fields that live on the role itself (`memory`, `cpus`, `restart`,
/// roles only) go into `fields`; the rest of what berth knows into `options`.
pub fn map_options(node: &Node<'_>, on_role: bool, fields: &mut Map<String, Value>, report: &mut Report) -> Value {
    let mut options = Map::new();
    for (key, value) in node.map {
        let key = key_text(key);
        let path = node.at(&key);
        node.get(&key);
        let list = || strings(value).unwrap_or_default();
        match key.as_str() {
            "memory" | "restart" if on_role => match scalar(value) {
                Some(v) => {
                    fields.insert(key.clone(), Value::String(v));
                }
                None => report.unsupported(path, "expected a string"),
            },
            "cpus" if on_role => match scalar(value).and_then(|v| v.parse::<f64>().ok()) {
                Some(v) => {
                    fields.insert("cpus".into(), json!(v));
                }
                None => report.unsupported(path, "expected a number of cores"),
            },
            "memory" | "restart" | "cpus" => {
                report.unsupported(path, format!("berth accessories take no {key} option").as_str())
            }
            "add-host" | "add_host" => extend(&mut options, "addHosts", list()),
            "cap-add" | "cap_add" => extend(&mut options, "capAdd", list()),
            "device" | "devices" => extend(&mut options, "devices", list()),
            "ulimit" => {
                let ulimits = options.entry("ulimits").or_insert_with(|| json!({}));
                for (i, u) in list().iter().enumerate() {
                    match u.split_once('=') {
                        Some((name, limits)) => {
                            let limits =
                                if limits.contains(':') { limits.to_string() } else { format!("{limits}:{limits}") };
                            ulimits[name] = Value::String(limits);
                        }
                        None => report.unsupported(format!("{path}[{i}]"), "expected NAME=SOFT[:HARD]"),
                    }
                }
            }
            "shm-size" | "shm_size" | "user" | "workdir" => match scalar(value) {
                Some(v) => {
                    let field = match key.as_str() {
                        "user" => "user",
                        "workdir" => "workdir",
                        _ => "shmSize",
                    };
                    options.insert(field.into(), Value::String(v));
                }
                None => report.unsupported(path, "expected a string"),
            },
            "network" => network(&mut options, value, &path, report),
            _ => report.unsupported(path, "a docker run option berth has no field for"),
        }
    }
    Value::Object(options)
}

fn extend(options: &mut Map<String, Value>, field: &str, items: Vec<String>) {
    let list = options.entry(field).or_insert_with(|| json!([]));
    if let Value::Array(a) = list {
        a.extend(items.into_iter().map(Value::String));
    }
}

/// `network: host` is berth's `options.network: host`; Kamal's default network `kamal` is berth's
/// own per-app network (nothing to write); any other network is unsupported.
pub fn network(options: &mut Map<String, Value>, value: &Yaml, path: &str, report: &mut Report) {
    match scalar(value).as_deref() {
        Some("host") => {
            options.insert("network".into(), json!("host"));
        }
        Some("kamal") => {}
        _ => report.unsupported(path, "berth attaches containers to its own app network, or the host's (host)"),
    }
}

/// Kamal `logging: {driver, options}` → berth `logging: {driver, options}` (values as strings).
pub fn logging(node: &Node<'_>, report: &mut Report) -> Value {
    let mut out = Map::new();
    if let Some(d) = node.get("driver").and_then(scalar) {
        out.insert("driver".into(), Value::String(d));
    }
    if let Some(opts) = node.child(report, "options") {
        let mut o = Map::new();
        for (k, v) in opts.map {
            let k = key_text(k);
            opts.get(&k);
            match scalar(v) {
                Some(v) => {
                    o.insert(k, Value::String(v));
                }
                None => report.unsupported(opts.at(&k), "a logging option is a string"),
            }
        }
        opts.finish(report);
        out.insert("options".into(), Value::Object(o));
    }
    Value::Object(out)
}

/// A `labels` mapping as strings.
pub fn labels(value: &Yaml, path: &str, report: &mut Report) -> Map<String, Value> {
    let mut out = Map::new();
    match value {
        Yaml::Mapping(m) => {
            for (k, v) in m {
                let k = key_text(k);
                match scalar(v) {
                    Some(v) => {
                        out.insert(k, Value::String(v));
                    }
                    None => report.unsupported(format!("{path}/{k}"), "a label value is a string"),
                }
            }
        }
        _ => report.unsupported(path, "expected a mapping of labels"),
    }
    out
}

/// Kamal volume strings (`src:/path[:opts]`) as berth's: `ro`/`rw` kept, SELinux `z`/`Z` and other
/// options reported and dropped (berth passes only read-only).
pub fn volumes(value: &Yaml, path: &str, report: &mut Report) -> Vec<Value> {
    let Some(items) = strings(value) else {
        report.unsupported(path, "expected a list of volumes");
        return Vec::new();
    };
    items.iter().enumerate().map(|(i, v)| Value::String(volume(v, &format!("{path}[{i}]"), report))).collect()
}

/// One `src:/path[:opts]`.
pub fn volume(text: &str, path: &str, report: &mut Report) -> String {
    let parts: Vec<&str> = text.splitn(3, ':').collect();
    match parts.as_slice() {
        [src, dst, opts] => {
            let kept: Vec<&str> = opts.split(',').filter(|o| *o == "ro" || *o == "rw").collect();
            if kept.len() != opts.split(',').count() {
                report.unsupported(path, format!("mount options {opts:?}: berth keeps ro/rw only").as_str());
            }
            match kept.first() {
                Some(o) => format!("{src}:{dst}:{o}"),
                None => format!("{src}:{dst}"),
            }
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_fields_options_and_unsupported() {
        let y: Yaml = serde_yaml_ng::from_str(
            "{memory: 2g, cpus: 4, restart: always, add-host: [a:1.1.1.1], cap-add: NET_ADMIN, ulimit: nofile=1024:2048, \
             shm-size: 1g, user: app, network: host, privileged: true}",
        )
        .unwrap();
        let Yaml::Mapping(m) = &y else { panic!() };
        let node = Node::new("servers/web/options", m);
        let mut fields = Map::new();
        let mut report = Report::default();
        let opts = map_options(&node, true, &mut fields, &mut report);
        assert_eq!(Value::Object(fields), json!({"memory": "2g", "cpus": 4.0, "restart": "always"}));
        assert_eq!(
            opts,
            json!({"addHosts": ["a:1.1.1.1"], "capAdd": ["NET_ADMIN"], "ulimits": {"nofile": "1024:2048"},
                   "shmSize": "1g", "user": "app", "network": "host"})
        );
        assert_eq!(report.unsupported.len(), 1);
        assert_eq!(report.unsupported[0].path, "servers/web/options/privileged");
    }

    #[test]
    fn volume_options() {
        let mut r = Report::default();
        assert_eq!(volume("/a:/b:ro,Z", "volumes[0]", &mut r), "/a:/b:ro");
        assert_eq!(volume("data:/b", "volumes[1]", &mut r), "data:/b");
        assert_eq!(r.unsupported.len(), 1);
    }
}
