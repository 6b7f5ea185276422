//! The proxy's side of the desired state, as plain data: what a proxied container needs routed
//! ([`ProxyTarget`]), the routes one host's proxy serves ([`RouteTable`], every app's), and the
//! Caddy JSON configuration that serves them ([`caddy_config`]). The engine loads that JSON into
//! Caddy; nothing here does I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::labels;
use crate::spec::{ParsedProxy, SecretValue, TlsMode};

/// The Docker network every proxied container and the host's proxy join.
pub const PROXY_NETWORK: &str = "berth-proxy";
/// The proxy container's name on every host.
pub const PROXY_CONTAINER: &str = "berth-proxy";
/// Label on the proxy container and network: they are berth's, but no app's.
pub const SYSTEM_LABEL: &str = "berth.system";
/// [`SYSTEM_LABEL`]'s value on the proxy.
pub const SYSTEM_PROXY: &str = "proxy";
/// Where berth writes the proxy's configuration, its route table and certificates in the container.
pub const CONFIG_DIR: &str = "/etc/berth";
/// Caddy's admin endpoint inside the proxy container (never published).
pub const ADMIN_ADDRESS: &str = "localhost:2019";

/// The labels of the proxy container and network.
pub fn proxy_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGED_BY_VALUE.to_string()),
        (SYSTEM_LABEL.to_string(), SYSTEM_PROXY.to_string()),
    ])
}

/// Whether a listed container or network is a host's proxy.
pub fn is_proxy(l: &BTreeMap<String, String>) -> bool {
    labels::is_managed(l) && l.get(SYSTEM_LABEL).map(String::as_str) == Some(SYSTEM_PROXY)
}

/// A TLS certificate from a Secret of type `tls`, with the revision its file name carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCertificate {
    /// `{namespace}-{secret}`: the stem of its files in the proxy.
    pub secret: String,
    /// The Secret's etcd revision: a new value gets a new file, so Caddy loads it.
    pub revision: i64,
    /// PEM; never serialized or logged.
    pub cert: SecretValue,
    /// PEM; never serialized or logged.
    pub key: SecretValue,
}

/// What a proxied role's containers need from the proxy, the same on every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// `berth.{namespace}.{app}.{role}`: the route's id in every proxy.
    pub route_id: String,
    /// The role's proxy section, typed.
    pub spec: ParsedProxy,
    /// The certificate of `tls: {secretRef}`, opened.
    pub certificate: Option<TlsCertificate>,
}

impl Serialize for ProxyTarget {
    /// `berth plan -o json` shows where traffic comes from, never a certificate.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({
            "route": self.route_id,
            "hosts": self.spec.hosts,
            "pathPrefix": self.spec.path_prefix,
            "appPort": self.spec.app_port,
            "healthPath": self.spec.health_path,
        })
        .serialize(s)
    }
}

impl ProxyTarget {
    /// The route that sends this role's traffic to `container`.
    pub fn route_to(&self, container: &str) -> Route {
        let tls = match &self.spec.tls {
            TlsMode::None => RouteTls::None,
            TlsMode::Acme => RouteTls::Acme,
            TlsMode::Secret(_) => match &self.certificate {
                Some(c) => RouteTls::Files { cert: c.cert_path(), key: c.key_path() },
                None => RouteTls::None,
            },
        };
        Route {
            hosts: self.spec.hosts.clone(),
            path_prefix: self.spec.path_prefix.clone(),
            upstream: format!("{container}:{}", self.spec.app_port),
            container: container.to_string(),
            tls,
            response_timeout_ms: self.spec.response_timeout.as_millis() as u64,
        }
    }
}

impl TlsCertificate {
    fn stem(&self) -> String {
        format!("{CONFIG_DIR}/certs/{}-{}", self.secret, self.revision)
    }

    /// The certificate's path in the proxy container.
    pub fn cert_path(&self) -> String {
        format!("{}.crt", self.stem())
    }

    /// The key's path in the proxy container.
    pub fn key_path(&self) -> String {
        format!("{}.key", self.stem())
    }
}

/// The route id of one role of one App: unique across every App a proxy serves.
pub fn route_id(app: &str, namespace: &str, role: &str) -> String {
    format!("berth.{namespace}.{app}.{role}")
}

/// The prefix of every route id of one App.
pub fn route_prefix(app: &str, namespace: &str) -> String {
    format!("berth.{namespace}.{app}.")
}

/// How one route ends TLS in the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum RouteTls {
    /// Plain HTTP.
    None,
    /// Certificates Caddy obtains.
    Acme,
    /// Certificate files berth wrote into the proxy (paths, never contents).
    Files {
        /// The certificate's path in the proxy container.
        cert: String,
        /// The key's path in the proxy container.
        key: String,
    },
}

/// One route as a proxy serves it: which requests, to which container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Host names matched (lowercase).
    pub hosts: Vec<String>,
    /// `/` or `/api`: paths under it are matched.
    pub path_prefix: String,
    /// `container:port`, resolved by Docker's DNS on the proxy network.
    pub upstream: String,
    /// The container serving it.
    pub container: String,
    /// How TLS ends for it.
    pub tls: RouteTls,
    /// How long the proxy waits for the app's response headers.
    pub response_timeout_ms: u64,
}

/// Every route one host's proxy serves, by route id; written next to Caddy's configuration so a
/// restarted berth reads back what the proxy serves instead of guessing.
pub type RouteTable = BTreeMap<String, Route>;

/// The Caddy configuration (JSON) that serves `table`, listening on `80` (and `443` when `https`)
/// inside the container; Docker publishes them on the Host's ports. Longer path prefixes
/// come first, so `/api` wins over `/` for the same host name.
pub fn caddy_config(table: &RouteTable, https: bool) -> Value {
    let mut ordered: Vec<(&String, &Route)> = table.iter().collect();
    ordered.sort_by(|(ia, a), (ib, b)| b.path_prefix.len().cmp(&a.path_prefix.len()).then(ia.cmp(ib)));
    let (plain, secure): (Vec<_>, Vec<_>) = ordered.into_iter().partition(|(_, r)| r.tls == RouteTls::None);
    let mut servers = serde_json::Map::new();
    servers.insert(
        "http".into(),
        json!({
            "listen": [":80"],
            "routes": with_fallback(plain.iter().map(|(id, r)| caddy_route(id, r)).collect()),
            "automatic_https": {"disable": true},
        }),
    );
    let mut tls_app = json!({});
    if https && !secure.is_empty() {
        let with_files: Vec<&String> = secure
            .iter()
            .filter(|(_, r)| matches!(r.tls, RouteTls::Files { .. }))
            .flat_map(|(_, r)| r.hosts.iter())
            .collect();
        // Without ACME routes Caddy must not try to obtain anything; with them it must still never
        // add redirects to the plain server (they would answer every unknown host with a 308).
        let any_acme = secure.iter().any(|(_, r)| r.tls == RouteTls::Acme);
        let automatic = if any_acme {
            json!({"disable_redirects": true, "skip_certificates": with_files})
        } else {
            json!({"disable": true})
        };
        servers.insert(
            "https".into(),
            json!({
                "listen": [":443"],
                "routes": with_fallback(secure.iter().map(|(id, r)| caddy_route(id, r)).collect()),
                "tls_connection_policies": [{}],
                "automatic_https": automatic,
            }),
        );
        let mut files: Vec<Value> = secure
            .iter()
            .filter_map(|(_, r)| match &r.tls {
                RouteTls::Files { cert, key } => Some(json!({"certificate": cert, "key": key})),
                _ => None,
            })
            .collect();
        files.sort_by_key(|v| v.to_string());
        files.dedup();
        if !files.is_empty() {
            tls_app = json!({"certificates": {"load_files": files}});
        }
    }
    let mut apps = json!({"http": {"http_port": 80, "https_port": 443, "servers": servers}});
    if tls_app.as_object().is_some_and(|o| !o.is_empty()) {
        apps["tls"] = tls_app;
    }
    json!({"admin": {"listen": ADMIN_ADDRESS}, "apps": apps})
}

/// A request no route matches gets a 404, not Caddy's empty 200.
fn with_fallback(mut routes: Vec<Value>) -> Vec<Value> {
    routes.push(json!({"handle": [{"handler": "static_response", "status_code": 404}]}));
    routes
}

fn caddy_route(id: &str, r: &Route) -> Value {
    let mut matcher = json!({"host": r.hosts});
    if r.path_prefix != "/" {
        matcher["path"] = json!([r.path_prefix, format!("{}/*", r.path_prefix)]);
    }
    json!({
        "@id": id,
        "match": [matcher],
        "handle": [{
            "handler": "reverse_proxy",
            "upstreams": [{"dial": r.upstream}],
            // A request that finds the upstream refusing is retried for a moment, not failed.
            "load_balancing": {"try_duration": "5s", "try_interval": "100ms"},
            "transport": {"protocol": "http", "response_header_timeout": caddy_duration(r.response_timeout_ms)},
        }],
        "terminal": true,
    })
}

fn caddy_duration(ms: u64) -> String {
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn route(hosts: &[&str], prefix: &str, container: &str, tls: RouteTls) -> Route {
        Route {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefix: prefix.into(),
            upstream: format!("{container}:3000"),
            container: container.into(),
            tls,
            response_timeout_ms: 30_000,
        }
    }

    #[test]
    fn plain_routes_go_to_the_http_server_longest_prefix_first() {
        let table = RouteTable::from([
            ("berth.default.shop.web".to_string(), route(&["shop.test"], "/", "shop-web-1", RouteTls::None)),
            ("berth.default.shop.api".to_string(), route(&["shop.test"], "/api", "shop-api-1", RouteTls::None)),
        ]);
        let config = caddy_config(&table, true);
        let routes = &config["apps"]["http"]["servers"]["http"]["routes"];
        assert_eq!(routes[0]["@id"], "berth.default.shop.api");
        assert_eq!(routes[0]["match"][0]["path"], json!(["/api", "/api/*"]));
        assert_eq!(routes[1]["match"][0].get("path"), None);
        assert_eq!(routes[1]["handle"][0]["upstreams"][0]["dial"], "shop-web-1:3000");
        assert_eq!(routes[2]["handle"][0]["status_code"], 404, "unknown hosts get a 404");
        assert!(config["apps"]["http"]["servers"].get("https").is_none());
        assert_eq!(config["admin"]["listen"], ADMIN_ADDRESS);
    }

    #[test]
    fn tls_routes_get_an_https_server_and_their_certificate_files() {
        let files = RouteTls::Files { cert: "/etc/berth/certs/c-7.crt".into(), key: "/etc/berth/certs/c-7.key".into() };
        let table = RouteTable::from([("berth.p.a.web".to_string(), route(&["secure.test"], "/", "a-web-1", files))]);
        let config = caddy_config(&table, true);
        let https = &config["apps"]["http"]["servers"]["https"];
        assert_eq!(https["listen"], json!([":443"]));
        assert_eq!(https["automatic_https"], json!({"disable": true}), "no ACME without an acme route");
        assert_eq!(config["apps"]["tls"]["certificates"]["load_files"][0]["key"], "/etc/berth/certs/c-7.key");
        assert_eq!(config["apps"]["http"]["servers"]["http"]["routes"].as_array().unwrap().len(), 1);
        // Without an HTTPS port there is no HTTPS server (validation refuses such routes).
        assert!(caddy_config(&table, false)["apps"]["http"]["servers"].get("https").is_none());
    }

    #[test]
    fn the_plan_shows_the_route_never_the_certificate() {
        let spec = ParsedProxy {
            hosts: vec!["a.test".into()],
            path_prefix: "/".into(),
            app_port: 8080,
            health_path: "/up".into(),
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_secs(5),
            tls: TlsMode::Secret("cert".into()),
            drain_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(30),
        };
        let certificate = TlsCertificate {
            secret: "cert".into(),
            revision: 9,
            cert: SecretValue("PEM-CERT".into()),
            key: SecretValue("PEM-KEY".into()),
        };
        let target = ProxyTarget { route_id: route_id("a", "p", "web"), spec, certificate: Some(certificate) };
        let shown = serde_json::to_string(&target).unwrap() + &format!("{target:?}");
        assert!(!shown.contains("PEM-"), "{shown}");
        let r = target.route_to("a-p-web-1234");
        assert_eq!(r.upstream, "a-p-web-1234:8080");
        assert_eq!(
            r.tls,
            RouteTls::Files { cert: "/etc/berth/certs/cert-9.crt".into(), key: "/etc/berth/certs/cert-9.key".into() }
        );
    }
}
