//! The proxy sections of a Host (which Caddy, on which ports) and of a role (which host names and
//! path reach it, how it is probed, how TLS ends), and their typed forms.
//!
//! A proxied role publishes no host port of its own: the host's one proxy container routes to it
//! by the request's Host header, so a rollout can start the new container beside the old one and
//! move traffic only once the new one answers its health path.

use std::collections::BTreeSet;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::{App, Host};
use super::values::{check_dns_label, parse_duration};

/// `Host.spec.proxy`: the proxy berth runs on the host when a proxied role is placed there.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostProxy {
    /// A Caddy 2 image that also carries `wget` (the official `caddy:2` does); default `caddy:2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Host port for plain HTTP; default 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    /// Host port for HTTPS; default 443, `0` for none (then no route may use TLS on this host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_port: Option<u16>,
}

/// The proxy image when the Host names none.
pub const DEFAULT_PROXY_IMAGE: &str = "caddy:2";

/// A Host's proxy settings with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    pub image: String,
    pub http_port: u16,
    /// `None` when HTTPS is switched off (`httpsPort: 0`).
    pub https_port: Option<u16>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings { image: DEFAULT_PROXY_IMAGE.to_string(), http_port: 80, https_port: Some(443) }
    }
}

impl ProxySettings {
    /// The settings of `host` (the defaults when it has no `proxy` section).
    pub fn of(host: &Host) -> ProxySettings {
        let (p, default) = (host.spec.proxy.clone().unwrap_or_default(), ProxySettings::default());
        ProxySettings {
            image: p.image.unwrap_or(default.image),
            http_port: p.http_port.unwrap_or(default.http_port),
            https_port: match p.https_port {
                Some(0) => None,
                Some(port) => Some(port),
                None => default.https_port,
            },
        }
    }
}

/// `roles.NAME.proxy`: route requests for these host names to this role's containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleProxy {
    /// Host names routed here (by the request's Host header), such as `shop.example.com`.
    pub hosts: Vec<String>,
    /// Only paths under this prefix (default `/`, everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The port the app listens on inside its container.
    pub app_port: u16,
    /// The HTTP check a new container must pass before traffic moves to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<ProxyHealthcheck>,
    /// `none` (plain HTTP, the default), `acme` (Caddy obtains certificates) or `{secretRef: NAME}`
    /// (a Secret of type `tls` in the App's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ProxyTls>,
    /// How long the old container may finish its requests after traffic moved; default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<String>,
    /// How long the proxy waits for the app's response headers; default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout: Option<String>,
}

/// The proxy's HTTP health check of a role's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyHealthcheck {
    /// Path asked with GET; 2xx and 3xx answers count as healthy. Default `/up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Between tries; default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Per try; default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Where a route's TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ProxyTls {
    /// `none` or `acme`.
    Mode(String),
    /// A Secret of type `tls` (keys `cert` and `key`, PEM).
    Secret {
        #[serde(rename = "secretRef")]
        secret_ref: String,
    },
}

/// How a route ends TLS, typed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsMode {
    /// Plain HTTP on the proxy's HTTP port.
    None,
    /// HTTPS with certificates Caddy obtains and renews.
    Acme,
    /// HTTPS with the certificate of this Secret (in the App's namespace).
    Secret(String),
}

/// A role's proxy section, typed and defaulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedProxy {
    /// Sorted, lowercase.
    pub hosts: Vec<String>,
    /// `/` or `/api` (no trailing slash).
    pub path_prefix: String,
    pub app_port: u16,
    pub health_path: String,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub tls: TlsMode,
    pub drain_timeout: Duration,
    pub response_timeout: Duration,
}

/// Default `drainTimeout` and `responseTimeout`.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(30);

impl ParsedProxy {
    /// The typed form, or `(field under proxy, message)` for the first field that does not parse.
    pub fn parse(p: &RoleProxy) -> Result<ParsedProxy, (String, String)> {
        if p.hosts.is_empty() {
            return Err(("hosts".into(), "name at least one host name to route".into()));
        }
        let mut hosts = BTreeSet::new();
        for (i, h) in p.hosts.iter().enumerate() {
            check_host_name(h).map_err(|m| (format!("hosts[{i}]"), m))?;
            hosts.insert(h.to_ascii_lowercase());
        }
        let path_prefix = match p.path_prefix.as_deref() {
            None => "/".to_string(),
            Some(prefix) => check_path(prefix).map_err(|m| ("pathPrefix".to_string(), m))?,
        };
        if p.app_port == 0 {
            return Err(("appPort".into(), "must be a port from 1 to 65535".into()));
        }
        let hc = p.healthcheck.clone().unwrap_or(ProxyHealthcheck { path: None, interval: None, timeout: None });
        let health_path = match hc.path.as_deref() {
            None => "/up".to_string(),
            Some(path) if path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                path.to_string()
            }
            Some(_) => return Err(("healthcheck.path".into(), "must be an absolute path such as /up".into())),
        };
        let duration = |field: &str, text: Option<&String>, default: Duration| match text {
            None => Ok(default),
            Some(t) => match parse_duration(t) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err((field.to_string(), "must be longer than 0s".to_string())),
                Err(e) => Err((field.to_string(), e)),
            },
        };
        let health_interval = duration("healthcheck.interval", hc.interval.as_ref(), Duration::from_secs(1))?;
        let health_timeout = duration("healthcheck.timeout", hc.timeout.as_ref(), Duration::from_secs(5))?;
        let drain_timeout = duration("drainTimeout", p.drain_timeout.as_ref(), DEFAULT_PROXY_TIMEOUT)?;
        let response_timeout = duration("responseTimeout", p.response_timeout.as_ref(), DEFAULT_PROXY_TIMEOUT)?;
        let tls = match &p.tls {
            None => TlsMode::None,
            Some(ProxyTls::Mode(m)) if m == "none" => TlsMode::None,
            Some(ProxyTls::Mode(m)) if m == "acme" => TlsMode::Acme,
            Some(ProxyTls::Mode(m)) => {
                return Err(("tls".into(), format!("{m:?} is not a TLS mode: use none, acme or {{secretRef: NAME}}")))
            }
            Some(ProxyTls::Secret { secret_ref }) => {
                check_dns_label(secret_ref).map_err(|m| ("tls.secretRef".to_string(), m))?;
                TlsMode::Secret(secret_ref.clone())
            }
        };
        Ok(ParsedProxy {
            hosts: hosts.into_iter().collect(),
            path_prefix,
            app_port: p.app_port,
            health_path,
            health_interval,
            health_timeout,
            tls,
            drain_timeout,
            response_timeout,
        })
    }
}

/// A DNS name, optionally with one leading `*.` label.
fn check_host_name(name: &str) -> Result<(), String> {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.is_empty() || rest.len() > 253 {
        return Err(format!("{name:?} is not a host name"));
    }
    for label in rest.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{name:?} is not a host name (letters, digits, '-' and '.'; no port)"));
        }
    }
    Ok(())
}

/// `/`, or `/seg[/seg…]` without a trailing slash, wildcards or a query.
fn check_path(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_end_matches('/');
    let bad = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '#' | '%');
    if !prefix.starts_with('/') || prefix.chars().any(bad) || trimmed.contains("//") {
        return Err(format!("{prefix:?} is not a path prefix such as / or /api"));
    }
    Ok(if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() })
}

/// One (Host, host name, path prefix) an App's proxied roles claim; two Apps may not claim the same.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteClaim {
    pub host: String,
    pub name: String,
    pub path_prefix: String,
    /// `spec.roles.web.proxy`, for the message.
    pub path: String,
}

/// Every route an App's proxied roles claim (sections that do not parse are skipped: validation
/// reports them).
pub fn route_claims(app: &App) -> Vec<RouteClaim> {
    let mut out = Vec::new();
    for (role_name, role) in &app.spec.roles {
        let Some(Ok(p)) = role.proxy.as_ref().map(ParsedProxy::parse) else { continue };
        let hosts: BTreeSet<&String> = role.hosts.iter().collect();
        for host in hosts {
            for name in &p.hosts {
                out.push(RouteClaim {
                    host: host.clone(),
                    name: name.clone(),
                    path_prefix: p.path_prefix.clone(),
                    path: format!("spec.roles.{role_name}.proxy"),
                });
            }
        }
    }
    out
}

/// Two roles of one App routing the same host name and path prefix on one Host: `(path, message)`.
pub fn route_problems(app: &App) -> Vec<(String, String)> {
    let claims = route_claims(app);
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, later) in claims.iter().enumerate() {
        if let Some(earlier) = claims[..i].iter().find(|e| e.path != later.path && same_route(e, later)) {
            if !out.iter().any(|(p, _)| p == &later.path) {
                let msg = format!("{} already routes {} on {}", earlier.path, route_label(later), later.host);
                out.push((later.path.clone(), msg));
            }
        }
    }
    out
}

/// What `apply` refuses of an App's routes against the store: a route another App (any
/// namespace) already claims on the same Host, naming both; TLS on a Host without an HTTPS port.
/// `other_apps` may include `app` itself; it is skipped.
pub fn route_problems_against(app: &App, hosts: &[Host], other_apps: &[App]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let same_app = |o: &App| o.metadata.name == app.metadata.name && o.namespace() == app.namespace();
    let theirs: Vec<(&App, RouteClaim)> = other_apps
        .iter()
        .filter(|o| !same_app(o))
        .flat_map(|o| route_claims(o).into_iter().map(move |c| (o, c)))
        .collect();
    for mine in route_claims(app) {
        if let Some((other, t)) = theirs.iter().find(|(_, t)| same_route(t, &mine)) {
            let (me, them) = (app_label(app), app_label(other));
            let msg = format!("{me} and {them} ({}) both route {} on {}", t.path, route_label(&mine), mine.host);
            out.push((mine.path.clone(), msg));
        }
    }
    for (name, role) in &app.spec.roles {
        let Some(Ok(proxy)) = role.proxy.as_ref().map(ParsedProxy::parse) else { continue };
        if proxy.tls == TlsMode::None {
            continue;
        }
        for host in hosts.iter().filter(|h| role.hosts.contains(&h.metadata.name)) {
            if ProxySettings::of(host).https_port.is_none() {
                let msg = format!("TLS needs an HTTPS port, and host {} has httpsPort: 0", host.metadata.name);
                out.push((format!("spec.roles.{name}.proxy.tls"), msg));
            }
        }
    }
    out
}

fn same_route(a: &RouteClaim, b: &RouteClaim) -> bool {
    a.host == b.host && a.name == b.name && a.path_prefix == b.path_prefix
}

/// `shop.example.com` or `shop.example.com/api`: how messages name a route.
fn route_label(c: &RouteClaim) -> String {
    if c.path_prefix == "/" {
        c.name.clone()
    } else {
        format!("{}{}", c.name, c.path_prefix)
    }
}

fn app_label(a: &App) -> String {
    format!("app/{} -n {}", a.metadata.name, a.namespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(json: serde_json::Value) -> RoleProxy {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_fill_every_optional_field() {
        let p =
            ParsedProxy::parse(&proxy(serde_json::json!({"hosts": ["Shop.Example.com"], "appPort": 3000}))).unwrap();
        assert_eq!(p.hosts, vec!["shop.example.com"]);
        assert_eq!(p.path_prefix, "/");
        assert_eq!(p.health_path, "/up");
        assert_eq!(p.health_interval, Duration::from_secs(1));
        assert_eq!(p.health_timeout, Duration::from_secs(5));
        assert_eq!(p.tls, TlsMode::None);
        assert_eq!(p.drain_timeout, DEFAULT_PROXY_TIMEOUT);
    }

    #[test]
    fn tls_modes_and_secret_refs_parse() {
        let acme = proxy(serde_json::json!({"hosts": ["a.b"], "appPort": 1, "tls": "acme"}));
        assert_eq!(ParsedProxy::parse(&acme).unwrap().tls, TlsMode::Acme);
        let secret = proxy(serde_json::json!({"hosts": ["a.b"], "appPort": 1, "tls": {"secretRef": "cert"}}));
        assert_eq!(ParsedProxy::parse(&secret).unwrap().tls, TlsMode::Secret("cert".into()));
        let bad = proxy(serde_json::json!({"hosts": ["a.b"], "appPort": 1, "tls": "letsencrypt"}));
        assert_eq!(ParsedProxy::parse(&bad).unwrap_err().0, "tls");
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (serde_json::json!({"hosts": [], "appPort": 1}), "hosts"),
            (serde_json::json!({"hosts": ["a.b:80"], "appPort": 1}), "hosts[0]"),
            (serde_json::json!({"hosts": ["a.b", "-x"], "appPort": 1}), "hosts[1]"),
            (serde_json::json!({"hosts": ["a.b"], "appPort": 0}), "appPort"),
            (serde_json::json!({"hosts": ["a.b"], "appPort": 1, "pathPrefix": "api"}), "pathPrefix"),
            (serde_json::json!({"hosts": ["a.b"], "appPort": 1, "pathPrefix": "/a*"}), "pathPrefix"),
            (serde_json::json!({"hosts": ["a.b"], "appPort": 1, "healthcheck": {"path": "up"}}), "healthcheck.path"),
            (
                serde_json::json!({"hosts": ["a.b"], "appPort": 1, "healthcheck": {"timeout": "0s"}}),
                "healthcheck.timeout",
            ),
            (serde_json::json!({"hosts": ["a.b"], "appPort": 1, "drainTimeout": "soon"}), "drainTimeout"),
            (serde_json::json!({"hosts": ["a.b"], "appPort": 1, "tls": {"secretRef": "Bad_Name"}}), "tls.secretRef"),
        ];
        for (json, field) in cases {
            let err = ParsedProxy::parse(&proxy(json.clone())).unwrap_err();
            assert_eq!(err.0, field, "{json}: {}", err.1);
        }
    }

    #[test]
    fn path_prefixes_lose_their_trailing_slash() {
        assert_eq!(check_path("/api/").unwrap(), "/api");
        assert_eq!(check_path("/").unwrap(), "/");
        assert!(check_path("/a//b").is_err());
    }

    #[test]
    fn host_settings_default_to_caddy_on_80_and_443() {
        let host: Host = serde_json::from_value(serde_json::json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Host",
            "metadata": {"name": "h"}, "spec": {"endpoint": "unix:///x"}}))
        .unwrap();
        assert_eq!(
            ProxySettings::of(&host),
            ProxySettings { image: "caddy:2".into(), http_port: 80, https_port: Some(443) }
        );
        let mut off = host.clone();
        off.spec.proxy = Some(HostProxy { image: None, http_port: Some(8080), https_port: Some(0) });
        assert_eq!(ProxySettings::of(&off).https_port, None);
    }
}
