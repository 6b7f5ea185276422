//! Kamal's `proxy` (kamal-proxy's deploy options) as berth's role `proxy` section.
//!
//! Which roles are proxied follows Kamal's `Role#initialize_specialized_proxy`: the primary role
//! unless its `proxy` is `false`; any other role only with `proxy: true` or a mapping. A role's
//! mapping is deep-merged over the root one (the role wins). `run.http_port`/`run.https_port`
//! become the ports of the proxy on the Hosts of proxied roles.

use serde_json::{json, Map, Value};

use super::config::{scalar, strings, Node};
use super::secrets::ValueSource;
use super::{Ctx, Report};

/// Where a route's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ssl {
    Off,
    Acme,
    /// Kamal secret names of the certificate and the key (PEM).
    Custom {
        cert: String,
        key: String,
    },
}

/// One `proxy` section, parsed; `None` is "not set here" so a role's section merges over the root's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConf {
    pub hosts: Option<Vec<String>>,
    pub app_port: Option<u16>,
    pub ssl: Option<Ssl>,
    pub path_prefixes: Option<Vec<String>>,
    pub strip_path_prefix: Option<bool>,
    pub health_path: Option<String>,
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub http_port: Option<u16>,
    pub https_port: Option<u16>,
    /// The Kamal path of the section, for messages.
    pub path: String,
    /// Whether a `proxy` section was written (else the primary role's implicit kamal-proxy).
    pub written: bool,
}

/// Parses one `proxy` section, reporting what berth's proxy cannot do (once, at that section).
pub fn parse(node: Node<'_>, report: &mut Report) -> ProxyConf {
    let mut c = ProxyConf { path: node.path.clone(), written: true, ..ProxyConf::default() };
    c.hosts = node.get("hosts").or_else(|| node.get("host")).and_then(strings);
    if node.has("hosts") {
        node.unsupported(report, "host", "Kamal takes one of host and hosts; hosts is used");
    }
    c.app_port = node.port(report, "app_port");
    c.ssl = match node.get("ssl") {
        None => None,
        Some(serde_yaml_ng::Value::Bool(true)) => Some(Ssl::Acme),
        Some(serde_yaml_ng::Value::Bool(false)) => Some(Ssl::Off),
        Some(serde_yaml_ng::Value::Mapping(m)) => {
            let ssl = Node::new(node.at("ssl"), m);
            let cert = ssl.get("certificate_pem").and_then(scalar);
            let key = ssl.get("private_key_pem").and_then(scalar);
            ssl.finish(report);
            match (cert, key) {
                (Some(cert), Some(key)) => Some(Ssl::Custom { cert, key }),
                _ => {
                    report.unsupported(node.at("ssl"), "needs certificate_pem and private_key_pem");
                    None
                }
            }
        }
        Some(_) => {
            report.unsupported(node.at("ssl"), "expected true, false or {certificate_pem, private_key_pem}");
            None
        }
    };
    c.path_prefixes = node.get("path_prefixes").and_then(strings).or_else(|| {
        node.get("path_prefix").and_then(scalar).map(|p| p.split(',').map(|s| s.trim().to_string()).collect())
    });
    if node.has("path_prefixes") {
        node.unsupported(report, "path_prefix", "Kamal uses path_prefixes when both are given");
    }
    c.strip_path_prefix = match node.get("strip_path_prefix") {
        Some(serde_yaml_ng::Value::Bool(b)) => Some(*b),
        _ => None,
    };
    if c.strip_path_prefix == Some(true) {
        report.unsupported(node.at("strip_path_prefix"), "berth's proxy forwards the whole path, prefix included");
    }
    if let Some(h) = node.child(report, "healthcheck") {
        c.health_path = h.get("path").and_then(scalar);
        c.health_interval = h.seconds(report, "interval");
        c.health_timeout = h.seconds(report, "timeout");
        h.finish(report);
    }
    c.response_timeout = node.seconds(report, "response_timeout");
    for (key, why) in [
        ("ssl_redirect", "berth's proxy has no per-route redirect setting"),
        ("forward_headers", "berth's proxy has no per-route forwarded-headers setting"),
        ("buffering", "berth's proxy does not buffer bodies"),
        ("logging", "berth's proxy logs requests its own way"),
    ] {
        node.unsupported(report, key, why);
    }
    if let Some(run) = node.child(report, "run") {
        c.http_port = run.port(report, "http_port");
        c.https_port = run.port(report, "https_port");
        for key in ["metrics_port", "debug", "log_max_size", "publish", "bind_ips", "registry", "repository", "version"]
        {
            run.unsupported(report, key, "berth runs its own proxy (Caddy); set Host spec.proxy.image if needed");
        }
        run.unsupported(report, "options", "berth's proxy container takes no docker run options");
        run.finish(report);
    }
    node.finish(report);
    c
}

/// `role` over `root`, field by field (Kamal deep-merges the role's mapping over the root's).
pub fn merge(root: &ProxyConf, role: &ProxyConf) -> ProxyConf {
    ProxyConf {
        hosts: role.hosts.clone().or_else(|| root.hosts.clone()),
        app_port: role.app_port.or(root.app_port),
        ssl: role.ssl.clone().or_else(|| root.ssl.clone()),
        path_prefixes: role.path_prefixes.clone().or_else(|| root.path_prefixes.clone()),
        strip_path_prefix: role.strip_path_prefix.or(root.strip_path_prefix),
        health_path: role.health_path.clone().or_else(|| root.health_path.clone()),
        health_interval: role.health_interval.clone().or_else(|| root.health_interval.clone()),
        health_timeout: role.health_timeout.clone().or_else(|| root.health_timeout.clone()),
        response_timeout: role.response_timeout.clone().or_else(|| root.response_timeout.clone()),
        http_port: role.http_port.or(root.http_port),
        https_port: role.https_port.or(root.https_port),
        path: role.path.clone(),
        written: root.written || role.written,
    }
}

/// berth's `proxy` section for role `role`, or `None` (reported) when Kamal names no host: berth
/// routes by host name, kamal-proxy also routes host-less apps.
pub fn to_berth(c: &ProxyConf, role: &str, drain_timeout: Option<&str>, ctx: &mut Ctx<'_>) -> Option<Value> {
    let hosts = match &c.hosts {
        Some(h) if !h.is_empty() => h.clone(),
        _ if c.written => {
            ctx.report.unsupported(
                c.path.clone(),
                format!(
                    "a proxy without host: berth's proxy routes by host name, so role {role} is imported unproxied"
                ),
            );
            return None;
        }
        _ => {
            ctx.report.note(format!(
                "role {role}: Kamal puts the primary role behind kamal-proxy for every host name; berth's proxy \
                 routes by host name, so it is imported unproxied (set proxy.hosts, or publish ports)"
            ));
            return None;
        }
    };
    let mut p = Map::new();
    p.insert("hosts".into(), json!(hosts));
    if let Some(prefixes) = c.path_prefixes.as_ref().filter(|p| !p.is_empty()) {
        p.insert("pathPrefix".into(), json!(prefixes[0]));
        if prefixes.len() > 1 {
            ctx.report.unsupported(
                format!("{}/path_prefix", c.path),
                format!("berth routes one path prefix per role; {} not imported", prefixes[1..].join(", ")),
            );
        }
        if c.strip_path_prefix.is_none() {
            ctx.report.note(format!(
                "{}: kamal-proxy strips the path prefix by default, berth forwards the whole path",
                c.path
            ));
        }
    }
    p.insert("appPort".into(), json!(c.app_port.unwrap_or(80)));
    let mut health = Map::new();
    for (k, v) in [("path", &c.health_path), ("interval", &c.health_interval), ("timeout", &c.health_timeout)] {
        if let Some(v) = v {
            health.insert(k.into(), json!(v));
        }
    }
    if !health.is_empty() {
        p.insert("healthcheck".into(), Value::Object(health));
    }
    match &c.ssl {
        Some(Ssl::Acme) => {
            p.insert("tls".into(), json!("acme"));
        }
        Some(Ssl::Custom { cert, key }) => {
            let name = ctx.child_name("tls");
            let origin = format!("{}/ssl", c.path);
            ctx.secrets.add(&name, "tls", "cert", ValueSource::Kamal(cert.clone()), &origin);
            ctx.secrets.add(&name, "tls", "key", ValueSource::Kamal(key.clone()), &origin);
            p.insert("tls".into(), json!({"secretRef": name}));
        }
        Some(Ssl::Off) | None => {}
    }
    if let Some(d) = drain_timeout {
        p.insert("drainTimeout".into(), json!(d));
    }
    if let Some(r) = &c.response_timeout {
        p.insert("responseTimeout".into(), json!(r));
    }
    Some(Value::Object(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str, path: &str) -> (ProxyConf, Report) {
        let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
        let serde_yaml_ng::Value::Mapping(m) = &y else { panic!() };
        let mut r = Report::default();
        (parse(Node::new(path, m), &mut r), r)
    }

    #[test]
    fn role_merges_over_root() {
        let (root, _) = conf("{host: a.example.com, app_port: 3000, healthcheck: {path: /up, interval: 3}}", "proxy");
        let (role, _) = conf("{healthcheck: {path: /health}, response_timeout: 10}", "servers/api/proxy");
        let m = merge(&root, &role);
        assert_eq!(m.hosts, Some(vec!["a.example.com".to_string()]));
        assert_eq!(m.health_path.as_deref(), Some("/health"));
        assert_eq!(m.health_interval.as_deref(), Some("3s"));
        assert_eq!(m.response_timeout.as_deref(), Some("10s"));
    }

    #[test]
    fn unsupported_keys_are_named() {
        let (c, r) =
            conf("{hosts: [a.b], ssl: true, forward_headers: true, run: {http_port: 8080, debug: true}}", "proxy");
        assert_eq!(c.ssl, Some(Ssl::Acme));
        assert_eq!(c.http_port, Some(8080));
        let paths: Vec<&str> = r.unsupported.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(paths, vec!["proxy/forward_headers", "proxy/run/debug"]);
    }
}
