//! The real multi-host test bed, started by `scripts/testbed up` once per test process and
//! shared by every test (and, through `$BERTH_TESTBED_DIR/testbed.json`, by every test binary).
//!
//! ```ignore
//! mod common;
//! use common::testbed::{unique, Testbed};
//!
//! let tb = Testbed::get();                      // panics with the script's output if it can't start
//! let name = unique("web");
//! let _rm = tb.container("host1", &name);        // `docker rm -f` when the test ends, even on panic
//! tb.docker_ok("host1", &["run", "-d", "--name", &name, "-p", "80", &tb.images.app_v1]);
//! let port = tb.published_port("host1", &name, "80/tcp");
//! let body = common::testbed::wait_for_http(&tb.host("host1").address, port, "/", "v1", secs(10));
//! ```
//!
//! What the bed is (see `scripts/testbed` for details): real etcd on loopback, N (default 3)
//! real dockerd's `host1..hostN`, each in its own network namespace with its own address on the
//! bridge (10.213.0.11, .12, ...), serving `unix://…/docker.sock` and `tcp://ADDR:2376` with
//! mutual TLS, a local registry (`10.213.0.1:5000`) holding tiny busybox images, and a private one
//! (`10.213.0.1:5443`, TLS and a password: [`PrivateRegistry`]).
//!
//! Sharing rules for tests: use [`unique`] for every container/app/key name; remove what you
//! create ([`Testbed::container`] helps); don't rely on `app:latest` pointing at v1 (tests move
//! it); a test that takes a host down must use [`Testbed::outage`], and a test that needs every
//! host up should hold [`Testbed::shared`] so the two don't overlap.
use serde::Deserialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// The docker client that matches the daemons (`/usr/local/bin/docker` may be a newer one).
pub const DOCKER: &str = "/usr/bin/docker";

/// Everything `testbed.json` describes. Unknown fields are ignored, so the script can grow.
#[derive(Debug, Clone, Deserialize)]
pub struct Testbed {
    /// `$BERTH_TESTBED_DIR` (default `/tmp/berth-testbed`).
    pub dir: PathBuf,
    /// Absolute path of `scripts/testbed`.
    pub script: PathBuf,
    /// etcd client endpoint, `http://127.0.0.1:PORT`.
    pub etcd: String,
    /// The same etcd on the bridge address (reachable from inside the hosts).
    pub etcd_bridge: String,
    pub etcd_log: PathBuf,
    /// Registry address without scheme, e.g. `10.213.0.1:5000` (plain HTTP, no auth).
    pub registry: String,
    pub registry_log: PathBuf,
    /// A second registry, with TLS and htpasswd auth, holding one image no daemon has credentials for.
    pub private_registry: PrivateRegistry,
    pub bridge: Bridge,
    /// Full image references in the registry.
    pub images: Images,
    /// Manifest digests (`sha256:…`) of those images as pushed by `up`.
    pub digests: Images,
    pub hosts: Vec<TestHost>,
    /// Client certificate signed by the hosts' CA: accepted on every `tcp` endpoint.
    pub client_tls: TlsFiles,
    /// Client certificate signed by another CA: refused by every host. Its `ca` is the real
    /// CA (so the client can verify the host); `signer_ca` is the rogue CA that signed `cert`.
    pub rogue_tls: TlsFiles,
}

/// The private registry of the bed: `https://ADDRESS` with a certificate from a CA of its own, which
/// every test dockerd trusts (`trust`, under `/etc/docker/certs.d`); pulls need `user`/`password`,
/// which no daemon or client config holds, so a pull that works proves the caller sent them.
#[derive(Debug, Clone, Deserialize)]
pub struct PrivateRegistry {
    /// `10.213.0.1:5443` (no scheme).
    pub address: String,
    pub user: String,
    /// Random per bed; kept across repairs.
    pub password: String,
    /// The registry's CA certificate (PEM).
    pub ca: PathBuf,
    /// Where the daemons find that CA: `/etc/docker/certs.d/ADDRESS/ca.crt`.
    pub trust: PathBuf,
    /// `ADDRESS/berth-test/private:v1`: `app:v1` (serves "v1" on :80), in no daemon's image store.
    pub image: String,
    /// Its manifest digest (`sha256:…`), the same as `app:v1`'s.
    pub digest: String,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Bridge {
    pub name: String,
    pub address: String,
    pub subnet: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Images {
    /// `REG/berth-test/accessory:1` (serves "accessory" on :80).
    pub accessory: String,
    /// `REG/berth-test/app:v1` (serves "v1" on :80).
    pub app_v1: String,
    /// `REG/berth-test/app:v2` (serves "v2" on :80).
    pub app_v2: String,
    /// `REG/berth-test/app:latest` (= v1 when the bed was made; tests may move it).
    pub app_latest: String,
    /// `REG/berth-test/proxy:1`: Debian's Caddy with busybox's wget (the proxied roles' proxy).
    #[serde(default)]
    pub proxy: String,
}

/// PEM files for a TLS client or server; `dir` holds them as ca.pem/cert.pem/key.pem
/// (usable as `DOCKER_CERT_PATH`).
#[derive(Debug, Clone, Deserialize)]
pub struct TlsFiles {
    pub dir: PathBuf,
    /// CA to verify the peer with.
    pub ca: PathBuf,
    pub cert: PathBuf,
    /// PKCS#8 private key.
    pub key: PathBuf,
    /// CA that signed `cert`.
    pub signer_ca: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TestHost {
    /// `host1`, `host2`, ...
    pub name: String,
    /// Network namespace (`/var/run/netns/<netns>`).
    pub netns: String,
    /// Root-namespace end of the host's veth (down = host unreachable).
    pub veth: String,
    /// The host's own address, reachable from the root namespace (published ports live here).
    pub address: String,
    /// `unix:///…/docker.sock`
    pub unix: String,
    /// `tcp://ADDRESS:2376`, TLS with client certificates required.
    pub tcp: String,
    /// Client TLS files for `tcp` (same as [`Testbed::client_tls`]).
    pub tls: TlsFiles,
    /// The daemon's own certificate (IP SAN = `address`).
    pub server_tls: TlsFiles,
    pub pidfile: PathBuf,
    /// dockerd's log (its containerd logs there too).
    pub log: PathBuf,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// Cgroup the host's containers live under.
    pub cgroup_parent: String,
    /// The exact dockerd command line (nsenter … dockerd …) that `start-host` runs.
    pub start_cmd: Vec<String>,
}

impl TestHost {
    /// `ADDRESS:2376`.
    pub fn tcp_addr(&self) -> String {
        self.tcp.trim_start_matches("tcp://").to_string()
    }
    /// Path of the unix socket (without `unix://`).
    pub fn socket_path(&self) -> &Path {
        Path::new(self.unix.trim_start_matches("unix://"))
    }
}

static TESTBED: OnceLock<Result<Testbed, String>> = OnceLock::new();
/// Tests that need all hosts up take it shared; a host outage takes it exclusively.
static HOSTS: RwLock<()> = RwLock::new(());

/// Path of `scripts/testbed` in this checkout.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed")
}

pub(super) fn describe(cmd: &str, out: &Output) -> String {
    format!(
        "`{cmd}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn start() -> Result<Testbed, String> {
    let script = script_path();
    // `up` repairs whatever is down, including a host another test process stopped on purpose:
    // wait for such outages to end (best effort: no lock before the bed's parent dir exists).
    let dir = std::env::var("BERTH_TESTBED_DIR").unwrap_or_else(|_| "/tmp/berth-testbed".into());
    let _no_outage =
        open_lock(&PathBuf::from(format!("{}.hosts.lock", dir.trim_end_matches('/')))).ok().map(|f| lock(f, LOCK_SH));
    let out = Command::new(&script).arg("up").output().map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(describe(&format!("{} up", script.display()), &out));
    }
    // `up` prints the path of testbed.json as its last line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json_path = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| describe("scripts/testbed up printed no path", &out))?;
    let text = std::fs::read_to_string(&json_path).map_err(|e| format!("cannot read {}: {e}", json_path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("bad {}: {e}\n{text}", json_path.display()))
}

impl Testbed {
    /// The test bed, started (or found healthy, or repaired) by `scripts/testbed up` on first
    /// use in this process. Panics with the script's output when it cannot start: a test that
    /// needs the bed fails with the reason, it never skips silently.
    pub fn get() -> &'static Testbed {
        match TESTBED.get_or_init(start) {
            Ok(tb) => tb,
            Err(e) => panic!("the berth test bed could not start:\n{e}"),
        }
    }

    pub fn host(&self, name: &str) -> &TestHost {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| {
            let names: Vec<_> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            panic!("no test host {name:?}; the bed has {names:?}")
        })
    }

    pub fn host_names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    /// `/usr/bin/docker -H unix://… ARGS` against `host`'s daemon.
    pub fn docker(&self, host: &str, args: &[&str]) -> Output {
        let h = self.host(host);
        docker_cmd().arg("-H").arg(&h.unix).args(args).output().unwrap_or_else(|e| panic!("cannot run {DOCKER}: {e}"))
    }

    /// Like [`Testbed::docker`], but panics (with stdout/stderr) unless it succeeds; returns
    /// trimmed stdout.
    pub fn docker_ok(&self, host: &str, args: &[&str]) -> String {
        let out = self.docker(host, args);
        if !out.status.success() {
            panic!("{}", describe(&format!("docker -H {host} {}", args.join(" ")), &out));
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `/usr/bin/docker --tlsverify … -H tcp://ADDR:2376 ARGS` with the given client files
    /// (`&tb.client_tls` is accepted, `&tb.rogue_tls` is refused).
    pub fn docker_tls(&self, host: &str, tls: &TlsFiles, args: &[&str]) -> Output {
        let h = self.host(host);
        docker_cmd()
            .arg("--tlsverify")
            .arg("--tlscacert")
            .arg(&tls.ca)
            .arg("--tlscert")
            .arg(&tls.cert)
            .arg("--tlskey")
            .arg(&tls.key)
            .arg("-H")
            .arg(&h.tcp)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {DOCKER}: {e}"))
    }

    /// Host port that `container`'s `port` (e.g. "80/tcp") is published on, on `host`'s
    /// address. Publish with `-p 80` to let Docker pick a free one.
    pub fn published_port(&self, host: &str, container: &str, port: &str) -> u16 {
        let out = self.docker_ok(host, &["port", container, port]);
        out.lines()
            .find_map(|l| l.rsplit(':').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{container} on {host} publishes no {port}: {out:?}"))
    }

    /// Removes the container (`docker rm -f -v`) when the returned guard drops.
    pub fn container(&self, host: &str, name: &str) -> Container {
        Container { host: host.to_string(), name: name.to_string() }
    }

    /// An app image of one test's own: v1 plus a label (so its own image id), in a repository named
    /// after `prefix`, pushed to the registry and removed from host1 again, so hosts pull it like any
    /// other and removing it disturbs no other test. Returns the `repo:v1` reference and the image id.
    pub fn private_app_image(&self, prefix: &str) -> (String, String) {
        let repo = format!("{}/berth-test/{}", self.registry, unique(prefix));
        let image = format!("{repo}:v1");
        let tmp = unique(&format!("{prefix}-commit"));
        let _rm = self.container("host1", &tmp);
        self.docker_ok("host1", &["pull", "-q", &self.images.app_v1]);
        self.docker_ok("host1", &["create", "--name", &tmp, &self.images.app_v1]);
        let id = self.docker_ok("host1", &["commit", "--change", &format!("LABEL berth.e2e={repo}"), &tmp, &image]);
        assert!(id.starts_with("sha256:"), "docker commit printed {id:?}");
        self.docker_ok("host1", &["push", &image]);
        self.docker_ok("host1", &["rmi", &image]);
        (image, id)
    }

    /// Runs `scripts/testbed ARGS` (with this bed's dir); panics unless it succeeds.
    pub fn script(&self, args: &[&str]) -> Output {
        let out = Command::new(&self.script)
            .args(args)
            .env("BERTH_TESTBED_DIR", &self.dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.script.display()));
        if !out.status.success() {
            panic!("{}", describe(&format!("scripts/testbed {}", args.join(" ")), &out));
        }
        out
    }

    /// Kills the host like a power loss: dockerd, containerd, shims and containers.
    /// Prefer [`Testbed::outage`], which also keeps other tests off the bed meanwhile.
    pub fn stop_host(&self, name: &str) {
        self.script(&["stop-host", name]);
    }

    /// SIGTERM to dockerd: it stops its containers first (up to their stop timeout).
    pub fn stop_host_graceful(&self, name: &str) {
        self.script(&["stop-host", name, "--graceful"]);
    }

    /// Starts the host's dockerd again and waits until it answers on unix and tcp.
    /// Containers with a restart policy come back, as after a reboot.
    pub fn start_host(&self, name: &str) {
        self.script(&["start-host", name]);
    }

    /// Takes the host's link down: connections to it time out (network partition).
    pub fn disconnect_host(&self, name: &str) {
        self.script(&["disconnect-host", name]);
    }

    pub fn connect_host(&self, name: &str) {
        self.script(&["connect-host", name]);
    }

    /// Hold this while the test needs every host up; blocks while an [`Outage`] is going on, in
    /// this test process or in any other one using the same bed.
    pub fn shared(&self) -> SharedHosts {
        let lock = HOSTS.read().unwrap_or_else(|e| e.into_inner());
        SharedHosts { _file: self.hosts_lock(LOCK_SH), _lock: lock }
    }

    /// Every host to this test alone, once every [`Testbed::shared`] holder is done (in every test
    /// process): what [`Testbed::outage`] and [`Testbed::freeze_host`] hold while a host is down.
    /// Don't call it while holding [`Testbed::shared`] yourself: that deadlocks.
    pub(super) fn exclusive(&self) -> Exclusive {
        let lock = HOSTS.write().unwrap_or_else(|e| e.into_inner());
        Exclusive { _file: self.hosts_lock(LOCK_EX), _lock: lock }
    }

    /// `flock` on `$BERTH_TESTBED_DIR.hosts.lock` (outside the dir, which `down` deletes): several
    /// test binaries (or sessions) share one bed, and the in-process lock alone lets one of them
    /// stop a host under another's feet. Released when the file closes, also if the process dies.
    fn hosts_lock(&self, operation: i32) -> std::fs::File {
        let path = PathBuf::from(format!("{}.hosts.lock", self.dir.display()));
        let file = open_lock(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        lock(file, operation)
    }
}

fn open_lock(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)
}

/// Blocks until `flock(operation)` on `file` succeeds; the lock lives as long as the file.
fn lock(file: std::fs::File, operation: i32) -> std::fs::File {
    loop {
        // SAFETY: flock(2) on a descriptor this function owns; no memory is shared.
        if unsafe { flock(file.as_raw_fd(), operation) } == 0 {
            return file;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            panic!("flock: {err}");
        }
    }
}

const LOCK_SH: i32 = 1;
const LOCK_EX: i32 = 2;

extern "C" {
    /// flock(2) from the C library std already links.
    fn flock(fd: i32, operation: i32) -> i32;
}

/// Every host stays up while this lives (see [`Testbed::shared`]).
pub struct SharedHosts {
    _file: std::fs::File,
    _lock: RwLockReadGuard<'static, ()>,
}

fn docker_cmd() -> Command {
    let mut c = Command::new(DOCKER);
    // Only our -H decides which daemon answers.
    for v in ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"] {
        c.env_remove(v);
    }
    c
}

/// `docker rm -f -v NAME` on drop.
pub struct Container {
    pub host: String,
    pub name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(Ok(tb)) = TESTBED.get() {
            let _ = tb.docker(&self.host, &["rm", "-f", "-v", &self.name]);
        }
    }
}

/// No other test uses the hosts while this lives (see [`Testbed::exclusive`]).
pub struct Exclusive {
    _file: std::fs::File,
    _lock: RwLockWriteGuard<'static, ()>,
}

/// A name no other test (in this process or another test binary) uses: `PREFIX-PID-N`.
/// Valid as a container, network, volume or app name.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One plain HTTP/1.0 GET; returns (status code, body).
pub fn http_get(ip: &str, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr: SocketAddr = format!("{ip}:{port}")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut s = TcpStream::connect_timeout(&addr, secs(3))?;
    s.set_read_timeout(Some(secs(5)))?;
    s.set_write_timeout(Some(secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not HTTP: {head:?}")))?;
    Ok((status, body.to_string()))
}

/// The trimmed body of `GET http://IP:PORT/` when it answers 200, else `None`: what a service
/// serves right now, without waiting.
pub fn http_body(ip: &str, port: u16) -> Option<String> {
    match http_get(ip, port, "/") {
        Ok((200, body)) => Some(body.trim().to_string()),
        _ => None,
    }
}

/// Polls `http://IP:PORT/PATH` until a 200 response whose body contains `needle`; returns
/// the body. Panics with the last answer or error after `timeout`.
pub fn wait_for_http(ip: &str, port: u16, path: &str, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match http_get(ip, port, path) {
            Ok((200, body)) if body.contains(needle) => return body,
            r => r,
        };
        if Instant::now() >= deadline {
            panic!("http://{ip}:{port}{path} never answered 200 with {needle:?} within {timeout:?}; last: {last:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `f` until it returns true; false after `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
