//! Spec documents (YAML) that the test binaries write and apply, built in code so no test writes
//! App YAML by hand.
//!
//! ```ignore
//! let doc = AppSpec::new(&app, ns, &tb.images.app_v1)
//!     .env("RELEASE", "one")
//!     .accessory("db", RoleSpec::on(&["host3"]).image(&tb.images.accessory).cmd(HTTPD).health(WEB_HEALTH))
//!     .role("web", RoleSpec::on(&["host1", "host2"]).cmd(HTTPD).publish(port).health(WEB_HEALTH))
//!     .rollout("maxUnavailable", "1")
//!     .yaml();
//! ```
use super::testbed::{Testbed, TlsFiles};

/// The image's httpd, behind a shell that exits on SIGTERM: busybox httpd as PID 1 ignores it, and
/// every stop would wait out Docker's 10 s grace period.
pub const HTTPD: &str = r#"["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]"#;

/// A loop that stops at once on SIGTERM.
pub const IDLE: &str = r#"["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]"#;

/// A healthcheck that passes once httpd answers on :80.
pub const WEB_HEALTH: &str =
    r#"{cmd: ["sh", "-c", "timeout 2 wget -q -O /dev/null http://127.0.0.1/"], interval: 1s, retries: 3}"#;

/// A healthcheck that never passes.
pub const NEVER_HEALTHY: &str = r#"{cmd: "false", interval: 1s, retries: 1}"#;

/// A Host document named `name` whose Docker endpoint is `endpoint` (e.g. `unix:///…/docker.sock`).
pub fn host_doc(name: &str, endpoint: &str) -> String {
    format!("apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata:\n  name: {name}\nspec:\n  endpoint: {endpoint}\n")
}

/// A Host document reached over tcp with mutual TLS, the client's PEM files from `files`.
pub fn tls_host_doc(name: &str, endpoint: &str, files: &TlsFiles) -> String {
    format!(
        "{}  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
        host_doc(name, endpoint),
        files.ca.display(),
        files.cert.display(),
        files.key.display()
    )
}

/// Host documents for every host of the bed, over their unix sockets, as one multi-document stream.
pub fn unix_hosts(tb: &Testbed) -> String {
    tb.hosts.iter().map(|h| host_doc(&h.name, &h.unix)).collect::<Vec<_>>().join("---\n")
}

/// An App with one role `web` on `hosts` (a comma-separated list) publishing `port`; `meta` is
/// extra YAML lines for `metadata` (indented by two), or "".
pub fn app_doc(name: &str, ns: &str, image: &str, hosts: &str, port: &str, meta: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {name}
  namespace: {ns}
{meta}spec:
  image: {image}
  roles:
    web:
      hosts: [{hosts}]
      ports: [\"{port}\"]
"
    )
}

/// The app most operator tests run: role `web` serving httpd on `hosts`, published on `port`, healthy
/// once it answers, and `COLOR` in its env (a new colour is a new generation).
pub fn web_app(tb: &Testbed, app: &str, ns: &str, hosts: &[&str], port: u16, color: &str) -> AppSpec {
    AppSpec::new(app, ns, &tb.images.app_v1).env("COLOR", color).role("web", web_role(hosts, port))
}

/// The role of [`web_app`]: httpd on `hosts`, published on `port`, healthy once it answers.
pub fn web_role(hosts: &[&str], port: u16) -> RoleSpec {
    RoleSpec::on(hosts).cmd(HTTPD).publish(port).health(WEB_HEALTH)
}

/// An App document: roles, accessories and rollout settings in the order they were added.
#[derive(Debug, Clone)]
pub struct AppSpec {
    name: String,
    namespace: String,
    image: String,
    env: Vec<(String, String)>,
    accessories: Vec<(String, RoleSpec)>,
    roles: Vec<(String, RoleSpec)>,
    rollout: Vec<(String, String)>,
    logging: Option<String>,
}

impl AppSpec {
    pub fn new(name: &str, namespace: &str, image: &str) -> AppSpec {
        AppSpec {
            name: name.into(),
            namespace: namespace.into(),
            image: image.into(),
            env: Vec::new(),
            accessories: Vec::new(),
            roles: Vec::new(),
            rollout: Vec::new(),
            logging: None,
        }
    }

    /// `spec.logging` as a YAML flow mapping (`{driver: json-file, options: {max-size: 10m}}`).
    pub fn logging(mut self, yaml: &str) -> AppSpec {
        self.logging = Some(yaml.into());
        self
    }

    /// An app-wide environment variable (a string, whatever `value` looks like).
    pub fn env(mut self, key: &str, value: &str) -> AppSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn accessory(mut self, name: &str, spec: RoleSpec) -> AppSpec {
        self.accessories.push((name.into(), spec));
        self
    }

    pub fn role(mut self, name: &str, spec: RoleSpec) -> AppSpec {
        self.roles.push((name.into(), spec));
        self
    }

    /// A `spec.rollout` field as YAML (`maxUnavailable`, `1`; `healthTimeout`, `5s`).
    pub fn rollout(mut self, field: &str, value: &str) -> AppSpec {
        self.rollout.push((field.into(), value.into()));
        self
    }

    pub fn yaml(&self) -> String {
        let mut y = format!(
            "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  image: {}\n",
            self.name, self.namespace, self.image
        );
        env_yaml(&mut y, "  ", &self.env);
        if let Some(logging) = &self.logging {
            y.push_str(&format!("  logging: {logging}\n"));
        }
        for (section, parts) in [("accessories", &self.accessories), ("roles", &self.roles)] {
            if !parts.is_empty() {
                y.push_str(&format!("  {section}:\n"));
                for (name, part) in parts {
                    y.push_str(&format!("    {name}:\n"));
                    part.write(&mut y);
                }
            }
        }
        if !self.rollout.is_empty() {
            y.push_str("  rollout:\n");
            for (k, v) in &self.rollout {
                y.push_str(&format!("    {k}: {v}\n"));
            }
        }
        y
    }
}

/// A role or an accessory: where it runs and how (an accessory also names its `image`). `cmd` and
/// `health` take YAML as written in a spec (a flow sequence or mapping, or a quoted string).
#[derive(Debug, Clone, Default)]
pub struct RoleSpec {
    image: Option<String>,
    hosts: Vec<String>,
    cmd: Option<String>,
    env: Vec<(String, String)>,
    ports: Vec<String>,
    volumes: Vec<String>,
    health: Option<String>,
    depends_on: Vec<String>,
    restart: Option<String>,
    host_env: Vec<(String, String, String)>,
    readiness_delay: Option<String>,
    logging: Option<String>,
    options: Option<String>,
    placed_by_roles: Vec<String>,
    directories: Vec<String>,
}

impl RoleSpec {
    pub fn on(hosts: &[&str]) -> RoleSpec {
        RoleSpec { hosts: hosts.iter().map(|h| h.to_string()).collect(), ..RoleSpec::default() }
    }

    pub fn image(mut self, image: &str) -> RoleSpec {
        self.image = Some(image.into());
        self
    }

    pub fn cmd(mut self, yaml: &str) -> RoleSpec {
        self.cmd = Some(yaml.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> RoleSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// A published port as written in a spec (`"8080:80"`).
    pub fn port(mut self, mapping: &str) -> RoleSpec {
        self.ports.push(mapping.into());
        self
    }

    /// Publishes container port 80 (httpd) on `host_port`.
    pub fn publish(self, host_port: u16) -> RoleSpec {
        self.port(&format!("{host_port}:80"))
    }

    pub fn volume(mut self, mapping: &str) -> RoleSpec {
        self.volumes.push(mapping.into());
        self
    }

    pub fn health(mut self, yaml: &str) -> RoleSpec {
        self.health = Some(yaml.into());
        self
    }

    pub fn depends_on(mut self, accessories: &[&str]) -> RoleSpec {
        self.depends_on = accessories.iter().map(|a| a.to_string()).collect();
        self
    }

    /// A restart policy (`no`, `always`, ...), quoted: a bare `no` is YAML's false.
    pub fn restart(mut self, policy: &str) -> RoleSpec {
        self.restart = Some(policy.into());
        self
    }

    /// `hostEnv`: `key` is `value` (a string) in the container on `host`.
    pub fn host_env(mut self, host: &str, key: &str, value: &str) -> RoleSpec {
        self.host_env.push((host.into(), key.into(), value.into()));
        self
    }

    /// `readinessDelay` (`3s`).
    pub fn readiness_delay(mut self, delay: &str) -> RoleSpec {
        self.readiness_delay = Some(delay.into());
        self
    }

    /// `logging` as a YAML flow mapping.
    pub fn logging(mut self, yaml: &str) -> RoleSpec {
        self.logging = Some(yaml.into());
        self
    }

    /// `options` as a YAML flow mapping (`{user: "1000:1000", workdir: /srv}`).
    pub fn options(mut self, yaml: &str) -> RoleSpec {
        self.options = Some(yaml.into());
        self
    }

    /// An accessory's `roles`: it also runs on every host of these.
    pub fn on_roles(mut self, roles: &[&str]) -> RoleSpec {
        self.placed_by_roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    /// An accessory's host directory (`data:/var/lib/mysql`).
    pub fn directory(mut self, mapping: &str) -> RoleSpec {
        self.directories.push(mapping.into());
        self
    }

    fn write(&self, y: &mut String) {
        let indent = "      ";
        if let Some(image) = &self.image {
            y.push_str(&format!("{indent}image: {image}\n"));
        }
        if !self.hosts.is_empty() || self.placed_by_roles.is_empty() {
            y.push_str(&format!("{indent}hosts: [{}]\n", self.hosts.join(", ")));
        }
        if !self.placed_by_roles.is_empty() {
            y.push_str(&format!("{indent}roles: [{}]\n", self.placed_by_roles.join(", ")));
        }
        if !self.directories.is_empty() {
            y.push_str(&format!("{indent}directories: [{}]\n", quoted(&self.directories)));
        }
        if !self.host_env.is_empty() {
            y.push_str(&format!("{indent}hostEnv:\n"));
            let mut hosts: Vec<&String> = Vec::new();
            for (h, _, _) in &self.host_env {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
            for host in hosts {
                y.push_str(&format!("{indent}  {host}:\n"));
                for (_, k, v) in self.host_env.iter().filter(|(h, _, _)| h == host) {
                    y.push_str(&format!("{indent}    {k}: {}\n", serde_json::to_string(v).unwrap()));
                }
            }
        }
        for (field, value) in
            [("readinessDelay", &self.readiness_delay), ("logging", &self.logging), ("options", &self.options)]
        {
            if let Some(v) = value {
                y.push_str(&format!("{indent}{field}: {v}\n"));
            }
        }
        if let Some(cmd) = &self.cmd {
            y.push_str(&format!("{indent}cmd: {cmd}\n"));
        }
        env_yaml(y, indent, &self.env);
        if !self.ports.is_empty() {
            y.push_str(&format!("{indent}ports: [{}]\n", quoted(&self.ports)));
        }
        if !self.volumes.is_empty() {
            y.push_str(&format!("{indent}volumes: [{}]\n", quoted(&self.volumes)));
        }
        if let Some(health) = &self.health {
            y.push_str(&format!("{indent}healthcheck: {health}\n"));
        }
        if !self.depends_on.is_empty() {
            y.push_str(&format!("{indent}dependsOn: [{}]\n", self.depends_on.join(", ")));
        }
        if let Some(policy) = &self.restart {
            y.push_str(&format!("{indent}restart: \"{policy}\"\n"));
        }
    }
}

/// `env:` with every value as a quoted YAML string, under `indent`.
fn env_yaml(y: &mut String, indent: &str, env: &[(String, String)]) {
    if env.is_empty() {
        return;
    }
    y.push_str(&format!("{indent}env:\n"));
    for (k, v) in env {
        y.push_str(&format!("{indent}  {k}: {}\n", serde_json::to_string(v).unwrap()));
    }
}

fn quoted(items: &[String]) -> String {
    items.iter().map(|i| serde_json::to_string(i).unwrap()).collect::<Vec<_>>().join(", ")
}
