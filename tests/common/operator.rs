//! Running `berth operator` as a user does, and watching what it does: one test's world (its etcd,
//! prefix, spec files and what to clean up), the operator child process (log, metrics, signals),
//! and the containers on the hosts as `docker inspect` shows them.
//!
//! ```ignore
//! let ctx = Ctx::new("rollout");
//! ctx.apply("hosts.yaml", &unix_hosts(tb));
//! let op = ctx.operator("a", &["--resync", "1s"]);
//! let s = ctx.wait_status(&app, ns, secs(90), "Ready", |s| ready_at(s, 1));
//! ```
use std::cell::RefCell;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, DeleteOptions};
use serde_json::Value;

use super::ports::free_port;
use super::run::{berth_at, berth_cmd, Run};
use super::testbed::{http_get, secs, unique, wait_until, Testbed};

/// The image's httpd, behind a shell that exits on SIGTERM: busybox httpd as PID 1 ignores it, and
/// every stop would wait out Docker's 10 s grace period.
pub const HTTPD: &str = r#"["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]"#;

/// A healthcheck that passes once httpd answers on :80.
pub const WEB_HEALTH: &str =
    r#"{cmd: ["sh", "-c", "timeout 2 wget -q -O /dev/null http://127.0.0.1/"], interval: 1s, retries: 3}"#;

/// A healthcheck that never passes.
pub const NEVER_HEALTHY: &str = r#"{cmd: "false", interval: 1s, retries: 1}"#;

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// One test's world: the bed's etcd under a prefix of its own, its spec files, what it must clean up.
pub struct Ctx {
    pub tb: &'static Testbed,
    pub prefix: String,
    pub dir: tempfile::TempDir,
    /// `docker ps --filter label=…` filters of everything this test created (removed on drop).
    owned: RefCell<Vec<String>>,
}

impl Ctx {
    /// `tag` names the test binary in the prefix (`/berth-TAG-PID-N`).
    pub fn new(tag: &str) -> Ctx {
        static N: AtomicU64 = AtomicU64::new(0);
        Ctx {
            tb: Testbed::get(),
            prefix: format!("/berth-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)),
            dir: tempfile::tempdir().unwrap(),
            owned: RefCell::new(Vec::new()),
        }
    }

    /// A unique app name, its containers and networks removed when the test ends.
    pub fn app(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.owned.borrow_mut().push(format!("berth.app={name}"));
        name
    }

    /// `berth --etcd … --prefix … ARGS`, with no inherited berth settings.
    pub fn berth(&self, args: &[&str]) -> Run {
        Run::of(berth_at(&self.tb.etcd, &self.prefix, args))
    }

    /// Writes `text` to the file `name` in the test's temp dir; returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// Writes `text` to `name` and applies it; must succeed.
    pub fn apply(&self, name: &str, text: &str) -> Run {
        let f = self.file(name, text);
        self.berth(&["apply", "-f", &f]).expect(0)
    }

    /// `berth status -o json`, or `None` while there is none.
    pub fn status(&self, app: &str, ns: &str) -> Option<Value> {
        let r = self.berth(&["status", app, "-n", ns, "-o", "json"]);
        if r.code != Some(0) {
            return None;
        }
        Some(serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout)))
    }

    /// Polls the status until `ok` holds; panics with the last status after `timeout`.
    pub fn wait_status(
        &self,
        app: &str,
        ns: &str,
        timeout: Duration,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status(app, ns);
            if let Some(s) = s.as_ref().filter(|s| ok(s)) {
                return s.clone();
            }
            if Instant::now() >= deadline {
                let shown = s.map(|s| serde_json::to_string_pretty(&s).unwrap()).unwrap_or_else(|| "(none)".into());
                panic!("app/{app} -n {ns} not {what} within {timeout:?}; last status: {shown}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts `berth operator` with this test's etcd and prefix, a free metrics port and `extra` flags;
    /// returns once it serves /healthz.
    pub fn operator(&self, identity: &str, extra: &[&str]) -> Operator {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = self.dir.path().join(format!("operator-{identity}.log"));
        let child = berth_cmd()
            .env("BERTH_LOG", "info")
            .env("NO_COLOR", "1")
            .args(["--etcd", &self.tb.etcd, "--prefix", &self.prefix, "operator"])
            .args(["--metrics-addr", &addr, "--identity", identity])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(File::create(self.dir.path().join(format!("operator-{identity}.out"))).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn berth operator");
        let op = Operator { child, identity: identity.to_string(), addr, log };
        assert!(
            wait_until(secs(20), || op.get("/healthz").is_some()),
            "operator {identity} never served /healthz on {}\n{}",
            op.addr,
            op.log()
        );
        op
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let (etcd, root) = (self.tb.etcd.clone(), format!("{}/", self.prefix));
        block_on(async move {
            if let Ok(Ok(mut c)) = tokio::time::timeout(secs(5), Client::connect([etcd], None)).await {
                let _ = tokio::time::timeout(secs(5), c.delete(root, Some(DeleteOptions::new().with_prefix()))).await;
            }
        });
        for filter in self.owned.borrow().iter() {
            let label = format!("label={filter}");
            for h in &self.tb.hosts {
                let ids = lines(&self.tb.docker(&h.name, &["ps", "-aq", "--filter", &label]));
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids.iter().map(String::as_str));
                    let _ = self.tb.docker(&h.name, &args);
                }
                for n in lines(&self.tb.docker(&h.name, &["network", "ls", "-q", "--filter", &label])) {
                    let _ = self.tb.docker(&h.name, &["network", "rm", &n]);
                }
            }
        }
    }
}

/// A running `berth operator`; killed on drop if still running (its log is printed when the test panics).
pub struct Operator {
    child: Child,
    pub identity: String,
    pub addr: String,
    pub log: PathBuf,
}

impl Operator {
    fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// `GET PATH` on the metrics address: (status, body), or `None` when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get("127.0.0.1", self.port(), path).ok()
    }

    /// Sum of the samples of `name` whose labels include every pair of `labels` (0 when none).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get("/metrics") {
            Some((200, body)) => metric_sum(&body, name, labels),
            other => panic!("operator {}: /metrics answered {other:?}\n{}", self.identity, self.log()),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.get("/metrics").is_some_and(|(_, body)| metric_sum(&body, "berth_leader", &[]) == 1.0)
    }

    pub fn wait_leader(&self, timeout: Duration) {
        assert!(
            wait_until(timeout, || self.is_leader()),
            "operator {} did not lead within {timeout:?}\n{}",
            self.identity,
            self.log()
        );
    }

    /// Sends a signal by name (`TERM`, `KILL`, ...).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-s", sig, &pid]).status().unwrap().success();
        assert!(ok, "kill -s {sig} {pid} failed");
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(150)..].join("\n");
            eprintln!("---- last lines of operator {} ({}) ----\n{tail}\n----", self.identity, self.log.display());
        }
    }
}

/// Sum of the samples of `name` in a Prometheus text exposition whose labels include every pair.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n == name && labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))) {
            sum += value.parse::<f64>().unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }
    sum
}

/// A container as `docker inspect` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ctr {
    pub id: String,
    pub name: String,
    pub status: String,
    pub started: String,
    pub health: Option<String>,
    pub env: Vec<String>,
    pub image: String,
    pub labels: serde_json::Map<String, Value>,
}

impl Ctr {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).and_then(Value::as_str)
    }
}

/// Every container (running or not) on `host` matching the label filter (`berth.app=X`), by name.
pub fn containers(tb: &Testbed, host: &str, label: &str) -> Vec<Ctr> {
    let ids = lines(&tb.docker(host, &["ps", "-aq", "--no-trunc", "--filter", &format!("label={label}")]));
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["inspect"];
    args.extend(ids.iter().map(String::as_str));
    let out = tb.docker(host, &args);
    // A container removed between ps and inspect makes inspect fail for it only; keep the rest.
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut cs: Vec<Ctr> = all
        .into_iter()
        .map(|v| Ctr {
            id: v["Id"].as_str().unwrap().to_string(),
            name: v["Name"].as_str().unwrap().trim_start_matches('/').to_string(),
            status: v["State"]["Status"].as_str().unwrap().to_string(),
            started: v["State"]["StartedAt"].as_str().unwrap_or_default().to_string(),
            health: v["State"]["Health"]["Status"].as_str().map(String::from),
            env: v["Config"]["Env"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            image: v["Config"]["Image"].as_str().unwrap_or_default().to_string(),
            labels: v["Config"]["Labels"].as_object().cloned().unwrap_or_default(),
        })
        .collect();
    cs.sort_by(|a, b| a.name.cmp(&b.name));
    cs
}

/// The containers of one component (`berth.role=web`) of an app on a host.
pub fn component(tb: &Testbed, host: &str, app: &str, label: &str) -> Vec<Ctr> {
    containers(tb, host, &format!("berth.app={app}"))
        .into_iter()
        .filter(|c| {
            let (k, v) = label.split_once('=').unwrap();
            c.label(k) == Some(v)
        })
        .collect()
}

pub fn ready_at(s: &Value, generation: i64) -> bool {
    s["phase"] == "Ready" && s["observedGeneration"] == generation
}
