//! `berth import kamal`: a Kamal `config/deploy.yml` (and `deploy.DEST.yml`) as berth's Hosts, one
//! App (namespace = the destination, else `default`) and the Secrets its `env.secret`, registry
//! and proxy certificate name.
//!
//! Why a converter and not a compatibility mode: Kamal's file describes commands to run once;
//! berth's resources describe a state to keep. Mapping each key once, at the edge, lets the rest of
//! berth stay Kamal-free, and every key berth cannot express is listed by its Kamal path (never
//! dropped silently) so a user sees exactly what the import leaves behind.
//!
//! Host names: each server address becomes a DNS label — lowercased, every run of characters other
//! than letters and digits turned into one `-`, trimmed (`192.168.0.1` → `192-168-0-1`,
//! `web-1.example.com` → `web-1-example-com`). An address longer than 63 characters keeps its first
//! 54 and gets `-` plus 8 hex digits of its FNV-1a hash; an address whose label another address
//! already took gets the same hash suffix. The name depends on the address alone (and, for those
//! rare collisions, on the order of first appearance), so destinations sharing a server share the
//! Host.

mod accessories;
mod config;
mod env;
mod mapping;
mod options;
mod proxy;
pub mod secrets;

use std::collections::BTreeMap;

use serde_json::{json, Value};

pub use config::DeployText;
pub use secrets::{parse_dotenv, SecretValues};

/// One server of a role: its address and tags.
pub type Server = (String, Vec<String>);
/// Why an import failed: the file, the field when one is to blame, and what is wrong, on one line
/// (`config/deploy.yml: service: missing (Kamal requires it)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub file: String,
    pub field: Option<String>,
    pub message: String,
}

impl ImportError {
    pub fn new(file: &str, field: Option<&str>, message: impl Into<String>) -> ImportError {
        ImportError { file: file.to_string(), field: field.map(str::to_string), message: message.into() }
    }
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}: {}", self.file, field, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ImportError {}

/// A Kamal key berth has no place for, by its Kamal path (`accessories/db/options/cpus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub path: String,
    pub why: String,
}

/// What an import could not map (each path once) and what a user should know about what it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub unsupported: Vec<Unsupported>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn unsupported(&mut self, path: impl Into<String>, why: impl Into<String>) {
        let path = path.into();
        if !self.unsupported.iter().any(|u| u.path == path) {
            self.unsupported.push(Unsupported { path, why: why.into() });
        }
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }
}

/// Everything an import needs, as plain data.
pub struct ImportInput<'a> {
    /// `deploy.yml`, then `deploy.DEST.yml` when a destination is given.
    pub deploy: Vec<DeployText<'a>>,
    pub destination: Option<&'a str>,
    /// The image tag to deploy (Kamal tags each build with the git version); default `latest`.
    pub version: Option<&'a str>,
    /// Values from Kamal's secrets files; without them Secrets are stubs naming the keys to fill.
    pub secrets: Option<&'a SecretValues>,
    /// Reads an accessory's local file (`files:`) by the path written in the config.
    pub read_file: &'a dyn Fn(&str) -> Result<String, String>,
}

/// One Secret of the import: plain `stringData` (the CLI seals it), and the keys still to fill.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedSecret {
    pub name: String,
    pub resource: Value,
    /// Keys whose value is unknown: no secrets file given, or the file did not resolve them.
    pub to_fill: Vec<String>,
}

/// The resources of an import, as JSON values shaped like berth's files, and its report.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub app_name: String,
    pub namespace: String,
    pub hosts: Vec<Value>,
    pub secrets: Vec<ImportedSecret>,
    pub app: Value,
    pub report: Report,
}

impl Imported {
    /// One YAML document per resource, Hosts first, then Secrets, then the App, each with the
    /// file name `-o DIR` gives it (`host-NAME.yaml`, `secret-NAME-NS.yaml`, `app-NAME-NS.yaml`).
    pub fn documents(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for h in &self.hosts {
            let name = h["metadata"]["name"].as_str().unwrap_or_default();
            out.push((format!("host-{name}.yaml"), to_yaml(h)));
        }
        for s in &self.secrets {
            let mut text = String::new();
            if !s.to_fill.is_empty() {
                text.push_str(&format!("# fill in {}, then `berth seal -f` this file\n", s.to_fill.join(", ")));
            }
            text.push_str(&to_yaml(&s.resource));
            out.push((format!("secret-{}-{}.yaml", s.name, self.namespace), text));
        }
        out.push((format!("app-{}-{}.yaml", self.app_name, self.namespace), to_yaml(&self.app)));
        out
    }
}

fn to_yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).expect("JSON values serialize as YAML")
}

/// Imports a Kamal configuration: pure, so tests run it on plain texts.
pub fn import(input: &ImportInput<'_>) -> Result<Imported, ImportError> {
    let root = config::load(&input.deploy)?;
    let base_file = input.deploy.first().map(|d| d.file).unwrap_or("deploy.yml");
    let node = config::Node::new("", &root);
    let mut report = Report::default();
    let required = matches!(node.get("require_destination"), Some(serde_yaml_ng::Value::Bool(true)));
    if required && input.destination.is_none() {
        return Err(ImportError::new(base_file, Some("require_destination"), "is true: give a destination with -d"));
    }
    for d in input.deploy.iter().filter(|d| d.text.contains("<%")) {
        report.note(format!("{}: ERB (<% … %>) is not evaluated; such values are imported as written", d.file));
    }
    let service = config::scalar(node.get("service").expect("checked by load")).unwrap_or_default();
    let app_name = dns_label(&service);
    if app_name != service {
        report.note(format!("service {service:?} is the App {app_name:?} (a name is a DNS label)"));
    }
    let namespace = match input.destination {
        Some(d) => {
            let ns = dns_label(d);
            if ns != d {
                report.note(format!("destination {d:?} is the namespace {ns:?} (a namespace is a DNS label)"));
            }
            ns
        }
        None => crate::spec::DEFAULT_NAMESPACE.to_string(),
    };
    let mut ctx = Ctx {
        app: app_name.clone(),
        report,
        secrets: secrets::SecretBook::default(),
        hosts: HostBook::default(),
        read_file: input.read_file,
        base_file: base_file.to_string(),
    };
    let app_spec = mapping::map_app(&node, &mut ctx, input.version)?;
    let hosts = mapping::map_hosts(&node, &mut ctx);
    node.finish(&mut ctx.report);
    let secrets = ctx.secrets.materialize(&namespace, input.secrets, &mut ctx.report);
    let app = json!({
        "apiVersion": crate::spec::API_VERSION,
        "kind": "App",
        "metadata": {"name": app_name, "namespace": namespace},
        "spec": app_spec,
    });
    Ok(Imported { app_name, namespace, hosts, secrets, app, report: ctx.report })
}

/// What the mapping modules share while one import runs.
pub(crate) struct Ctx<'a> {
    pub app: String,
    pub report: Report,
    pub secrets: secrets::SecretBook,
    pub hosts: HostBook,
    pub read_file: &'a dyn Fn(&str) -> Result<String, String>,
    pub base_file: String,
}

impl Ctx<'_> {
    /// A resource name derived from the App's (`shop-env`, `shop-db-registry`), a DNS label.
    pub fn child_name(&self, suffix: &str) -> String {
        dns_label(&format!("{}-{suffix}", self.app))
    }
}

/// Server addresses in order of first appearance, and the Host name each got.
#[derive(Debug, Default)]
pub(crate) struct HostBook {
    pub entries: Vec<HostEntry>,
}

/// One server: the address as written (`deploy@1.2.3.4:2222` allowed), its Host name and the
/// proxy ports a proxied role there needs (from Kamal's `proxy/run`).
#[derive(Debug, Clone)]
pub(crate) struct HostEntry {
    pub address: String,
    pub name: String,
    pub proxy_ports: Option<(Option<u16>, Option<u16>)>,
}

impl HostBook {
    /// The Host name of `address`, recording it on first sight.
    pub fn name(&mut self, address: &str) -> String {
        if let Some(e) = self.entries.iter().find(|e| e.address == address) {
            return e.name.clone();
        }
        let (_, host, _) = split_address(address);
        let mut name = dns_label(host);
        if self.entries.iter().any(|e| e.name == name) {
            name = with_hash(&name, host);
        }
        self.entries.push(HostEntry { address: address.to_string(), name: name.clone(), proxy_ports: None });
        name
    }
}

/// `user@host:port` → (user, host, port); each part but the host optional.
pub(crate) fn split_address(address: &str) -> (Option<&str>, &str, Option<&str>) {
    let (user, rest) = match address.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, address),
    };
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (user, h, Some(p))
        }
        _ => (user, rest, None),
    }
}

/// Any text as a DNS label (see the module's doc for the rule).
pub fn dns_label(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-').to_string();
    if trimmed.is_empty() {
        return with_hash("x", text);
    }
    if trimmed.len() > crate::spec::values::MAX_NAME_LEN {
        return with_hash(&trimmed, text);
    }
    trimmed
}

/// The label of `base` cut to 54 characters plus `-` and 8 hex digits of FNV-1a over `seed`.
fn with_hash(base: &str, seed: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for b in seed.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let head: String = base.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(54).collect();
    let head = head.to_ascii_lowercase();
    format!("{}-{hash:08x}", head.trim_end_matches('-'))
}

/// Plain data for tests: imports texts without secrets or local files.
pub fn import_texts(deploy: &[DeployText<'_>], destination: Option<&str>) -> Result<Imported, ImportError> {
    let no_files = |path: &str| Err(format!("{path}: local files are not read here"));
    import(&ImportInput { deploy: deploy.to_vec(), destination, version: None, secrets: None, read_file: &no_files })
}

/// An env as berth writes it: name → a string or `{secretKeyRef: {name, key}}`.
pub(crate) type EnvMap = BTreeMap<String, Value>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_dns_labels() {
        assert_eq!(dns_label("192.168.0.1"), "192-168-0-1");
        assert_eq!(dns_label("Web-1.Example.com"), "web-1-example-com");
        assert_eq!(dns_label("my_app"), "my-app");
        let long = "a".repeat(70) + ".example.com";
        let n = dns_label(&long);
        assert_eq!(n.len(), 63);
        assert!(crate::spec::values::check_dns_label(&n).is_ok());
        assert_eq!(n, dns_label(&long), "stable");
    }

    #[test]
    fn erb_is_noted_not_evaluated() {
        let text = "service: a\nimage: a\nservers: [1.1.1.1]\nenv: {TOKEN: \"<%= ENV['T'] %>\"}\n";
        let i = import_texts(&[DeployText { file: "deploy.yml", text }], None).unwrap();
        assert_eq!(i.app["spec"]["env"]["TOKEN"], "<%= ENV['T'] %>");
        assert!(i.report.notes.iter().any(|n| n.starts_with("deploy.yml: ERB")), "{:?}", i.report.notes);
    }

    #[test]
    fn addresses_split_and_collide_stably() {
        assert_eq!(split_address("deploy@1.2.3.4:2222"), (Some("deploy"), "1.2.3.4", Some("2222")));
        assert_eq!(split_address("web1"), (None, "web1", None));
        let mut book = HostBook::default();
        assert_eq!(book.name("a.b"), "a-b");
        assert_eq!(book.name("a.b"), "a-b");
        let other = book.name("a_b");
        assert!(other.starts_with("a-b-") && other.len() == 12, "{other}");
    }
}
