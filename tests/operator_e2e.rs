//! End to end: `berth operator` as a user runs it, on the real test bed. Each test spawns the real
//! binary as a child process (its own `--prefix`, its own `--metrics-addr`, `BERTH_LOG=info`, the log
//! in a file), writes specs to a temp dir and applies them with `berth apply -f`, and then only
//! watches: `berth status -o json`, the Docker CLI on the hosts (`docker ps`, `docker inspect`,
//! `docker events`), and the operator's `/metrics`, `/healthz` and `/readyz`. Nobody runs
//! `berth converge`: everything that happens on the hosts is the operator's doing.
//!
//! Isolation: unique app names and namespaces ([`unique`]), host ports of this binary's own range
//! ([`port`]), one etcd prefix per test. Tests that need every host up hold [`Testbed::shared`]; the
//! host-outage test goes through [`Testbed::outage`]. The etcd-outage test stops an etcd of its own
//! (same binary, its own data dir), so the bed's etcd, which other test processes use, never stops.
//! Operators are killed by a drop guard, even when a test panics (their log is printed then), and
//! the test's containers, networks and keys are removed after them.
mod common;

use std::cell::RefCell;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime};

use common::ports::{free_port, host_port};
use common::run::{berth_at, berth_cmd, Run};
use common::specs::unix_hosts;
use common::testbed::{http_get, secs, unique, wait_for_http, wait_until, Testbed};
use etcd_client::{Client, DeleteOptions, GetOptions};
use serde_json::Value;

// ------------------------------------------------------------------------------------ helpers

/// Tests of this binary hold it shared ([`busy`]); the test that counts the Docker calls of a no-op
/// resync holds it exclusively, so no container of another test changes on the hosts meanwhile.
/// Always taken before [`Testbed::shared`] or [`Testbed::outage`], never after: no deadlock.
static QUIET: RwLock<()> = RwLock::new(());

fn busy() -> RwLockReadGuard<'static, ()> {
    QUIET.read().unwrap_or_else(|e| e.into_inner())
}

/// A host port no other test of this run publishes: `40000 + (pid % 500) * 40 + n`, n < 40 (the
/// engine tests use 20000..40000).
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 40000, 500, 40, "operator_e2e")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// Drops ANSI colour sequences, so log lines can be searched as plain text.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One test's world: the etcd it uses, its prefix, its spec files, what it must clean up.
struct Ctx {
    tb: &'static Testbed,
    etcd: String,
    prefix: String,
    dir: tempfile::TempDir,
    /// `docker ps --filter label=…` filters of everything this test created (removed on drop).
    owned: RefCell<Vec<String>>,
}

impl Ctx {
    fn new() -> Ctx {
        Ctx::with_etcd(&Testbed::get().etcd)
    }

    fn with_etcd(endpoint: &str) -> Ctx {
        static N: AtomicU64 = AtomicU64::new(0);
        Ctx {
            tb: Testbed::get(),
            etcd: endpoint.to_string(),
            prefix: format!("/berth-op-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)),
            dir: tempfile::tempdir().unwrap(),
            owned: RefCell::new(Vec::new()),
        }
    }

    /// A unique app name, cleaned up when the test ends.
    fn app(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.owned.borrow_mut().push(format!("berth.app={name}"));
        name
    }

    /// A unique namespace, every container in it cleaned up when the test ends.
    fn namespace(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.owned.borrow_mut().push(format!("berth.namespace={name}"));
        name
    }

    /// `berth --etcd … --prefix … ARGS`, with no inherited berth settings.
    fn berth(&self, args: &[&str]) -> Run {
        Run::of(berth_at(&self.etcd, &self.prefix, args))
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// Writes `text` to `name` and applies it; must succeed.
    fn apply(&self, name: &str, text: &str) -> Run {
        let f = self.file(name, text);
        self.berth(&["apply", "-f", &f]).expect(0)
    }

    /// `berth status -o json`, or `None` while there is none (or etcd does not answer).
    fn status(&self, app: &str, ns: &str) -> Option<Value> {
        let r = self.berth(&["status", app, "-n", ns, "-o", "json"]);
        if r.code != Some(0) {
            return None;
        }
        Some(serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout)))
    }

    /// Polls the status until `ok` holds; panics with the last status after `timeout`.
    fn wait_status(&self, app: &str, ns: &str, timeout: Duration, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status(app, ns);
            if let Some(s) = s.as_ref().filter(|s| ok(s)) {
                return s.clone();
            }
            if Instant::now() >= deadline {
                panic!("app/{app} -n {ns} not {what} within {timeout:?}; last status: {}", pretty(&s));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The value of the operators' leader key, if any (read straight from etcd).
    fn leader_key(&self) -> Option<String> {
        let (etcd, key) = (self.etcd.clone(), format!("{}/leader", self.prefix));
        block_on(async move {
            let mut c = Client::connect([etcd], None).await.unwrap();
            let resp = c.get(key, Some(GetOptions::new().with_prefix())).await.unwrap();
            resp.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).to_string())
        })
    }

    /// Starts `berth operator` with this test's etcd and prefix, a free metrics port and `extra` flags.
    fn operator(&self, identity: &str, extra: &[&str]) -> Operator {
        self.operator_env(identity, extra, &[])
    }

    /// [`Ctx::operator`] with extra environment (`BERTH_SSH_CONFIG`).
    fn operator_env(&self, identity: &str, extra: &[&str], env: &[(&str, &std::path::Path)]) -> Operator {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = self.dir.path().join(format!("operator-{identity}.log"));
        let child = berth_cmd()
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .env("BERTH_LOG", "info")
            .env("NO_COLOR", "1")
            .args(["--etcd", &self.etcd, "--prefix", &self.prefix, "operator"])
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
        let (etcd, root) = (self.etcd.clone(), format!("{}/", self.prefix));
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

fn pretty(v: &Option<Value>) -> String {
    match v {
        Some(v) => serde_json::to_string_pretty(v).unwrap(),
        None => "(none)".into(),
    }
}

/// A running `berth operator`; SIGKILLed on drop if still running (its log is printed when the test panics).
struct Operator {
    child: Child,
    identity: String,
    addr: String,
    log: PathBuf,
}

impl Operator {
    fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET PATH` on the metrics address: (status, body), or `None` when nothing answers.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get("127.0.0.1", self.port(), path).ok()
    }

    fn metrics(&self) -> String {
        match self.get("/metrics") {
            Some((200, body)) => body,
            other => panic!("operator {}: /metrics answered {other:?}\n{}", self.identity, self.log()),
        }
    }

    /// Sum of the samples of `name` whose labels include every pair of `labels` (0 when none).
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    fn is_leader(&self) -> bool {
        self.get("/metrics").is_some_and(|(_, body)| metric_sum(&body, "berth_leader", &[]) == 1.0)
    }

    fn wait_leader(&self, timeout: Duration) {
        assert!(
            wait_until(timeout, || self.is_leader()),
            "operator {} did not lead within {timeout:?}\n{}",
            self.identity,
            self.log()
        );
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends a signal by name (`TERM`, `KILL`, ...).
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args(["-s", sig, &self.pid().to_string()]).status().unwrap().success();
        assert!(ok, "kill -s {sig} {} failed", self.pid());
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
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

    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Log lines of Docker actions this operator executed for `app` with `verb` (`create`, `start`, ...).
    fn actions(&self, app: &str, verb: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("berth::engine") && l.contains(app))
            .filter(|l| l.split_whitespace().any(|w| w == verb))
            .filter(|l| !l.contains("action failed") && !l.contains("rolled back"))
            .map(String::from)
            .collect()
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

fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
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

/// The samples of `name` that changed between two scrapes, as `series +delta`.
fn series_delta(before: &str, after: &str, name: &str) -> Vec<String> {
    let samples = |text: &str| -> std::collections::BTreeMap<String, f64> {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0.0))))
            .collect()
    };
    let (b, a) = (samples(before), samples(after));
    a.iter()
        .filter_map(|(k, v)| {
            let d = v - b.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| format!("{k} +{d}"))
        })
        .collect()
}

/// A container as `docker inspect` shows it.
#[derive(Debug, Clone, PartialEq)]
struct Ctr {
    id: String,
    name: String,
    status: String,
    started: String,
    health: Option<String>,
    env: Vec<String>,
    labels: serde_json::Map<String, Value>,
}

impl Ctr {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).and_then(Value::as_str)
    }
    /// `role/web`, `accessory/db`.
    fn component(&self) -> String {
        match (self.label("berth.role"), self.label("berth.accessory")) {
            (Some(r), _) => format!("role/{r}"),
            (_, Some(a)) => format!("accessory/{a}"),
            _ => "?".into(),
        }
    }
    fn short(&self) -> String {
        format!("{} {} {} {}", self.name, &self.id[..12], self.status, self.health.as_deref().unwrap_or("-"))
    }
}

/// Every container (running or not) on `host` matching the label filter (`berth.app=X`).
fn containers(tb: &Testbed, host: &str, label: &str) -> Vec<Ctr> {
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
            labels: v["Config"]["Labels"].as_object().cloned().unwrap_or_default(),
        })
        .collect();
    cs.sort_by(|a, b| a.name.cmp(&b.name));
    cs
}

fn app_containers(tb: &Testbed, host: &str, app: &str) -> Vec<Ctr> {
    containers(tb, host, &format!("berth.app={app}"))
}

/// `(host, name, id, StartedAt)` of every container of `app` on every host.
fn snapshot(tb: &Testbed, app: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for h in tb.host_names() {
        for c in app_containers(tb, h, app) {
            out.push((h.to_string(), c.name.clone(), c.id.clone(), c.started.clone()));
        }
    }
    out
}



/// `lastConverged` of a status, in unix seconds.
fn last_converged(s: &Value) -> f64 {
    let t = s["lastConverged"].as_str().unwrap_or_else(|| panic!("no lastConverged in {s:#}"));
    humantime::parse_rfc3339(t).unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn ready_at(s: &Value, generation: i64) -> bool {
    s["phase"] == "Ready" && s["observedGeneration"] == generation
}

/// The ids of the containers a status lists on `host`.
fn status_ids(s: &Value, host: &str) -> Vec<String> {
    s["hosts"][host]["containers"]
        .as_array()
        .map(|cs| cs.iter().map(|c| c["id"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

/// The image's httpd, behind a shell that exits on SIGTERM: busybox httpd as PID 1 ignores it, and
/// every stop would wait out Docker's 10 s grace period.
const HTTPD: &str = r#"["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]"#;

/// A loop that stops at once on SIGTERM.
const IDLE: &str = r#"["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]"#;

/// A healthcheck that passes once httpd answers on :80.
const WEB_HEALTH: &str = r#"{cmd: ["sh", "-c", "timeout 2 wget -q -O /dev/null http://127.0.0.1/"], interval: 1s, retries: 3}"#;

/// An App with one role `web` running httpd on `hosts`, publishing `port`, with `env` and extra role lines.
fn web_app(tb: &Testbed, app: &str, ns: &str, hosts: &str, port: u16, env: &str, extra: &str) -> String {
    let image = &tb.images.app_v1;
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  env:
    COLOR: {env}
  roles:
    web:
      hosts: [{hosts}]
      cmd: {HTTPD}
      ports: [\"{port}:80\"]
      healthcheck: {WEB_HEALTH}
{extra}"
    )
}

// ------------------------------------------------------------------------------------ 1. apply, edit

/// `berth apply` is the only step: the operator brings the app to Ready; an env change is rolled
/// out as generation 2 (container replaced, the new one has the new env); /healthz and /readyz answer.
/// `berth repin --wait` is answered by the operator although the spec did not change; the tag did
/// not move, so no container is touched.
#[test]
fn apply_alone_reaches_ready_and_an_edit_rolls_out_generation_two() {
    let _busy = busy();
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("op-edit");
    let ns = "prod";
    let web_port = port();
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let op = ctx.operator("op-edit", &[]);
    op.wait_leader(secs(30));

    assert_eq!(op.get("/healthz").map(|r| r.0), Some(200));
    assert!(
        wait_until(secs(30), || op.get("/readyz").is_some_and(|(c, b)| c == 200 && b.contains("leader"))),
        "/readyz: {:?}",
        op.get("/readyz")
    );

    ctx.apply("app.yaml", &web_app(tb, &app, ns, "host1, host2", web_port, "blue", ""));
    let s1 = ctx.wait_status(&app, ns, secs(90), "Ready at generation 1", |s| ready_at(s, 1));
    let mut before = Vec::new();
    for h in ["host1", "host2"] {
        let cs = app_containers(tb, h, &app);
        assert_eq!(cs.len(), 1, "{h}: {:?}", cs.iter().map(Ctr::short).collect::<Vec<_>>());
        assert_eq!((cs[0].status.as_str(), cs[0].health.as_deref()), ("running", Some("healthy")));
        assert!(cs[0].env.contains(&"COLOR=blue".to_string()), "{:?}", cs[0].env);
        assert_eq!(status_ids(&s1, h), vec![cs[0].id.clone()], "{s1:#}");
        assert_eq!(wait_for_http(&tb.host(h).address, web_port, "/", "v1", secs(10)).trim(), "v1");
        before.push(cs[0].id.clone());
    }
    assert!(app_containers(tb, "host3", &app).is_empty());

    ctx.apply("app.yaml", &web_app(tb, &app, ns, "host1, host2", web_port, "green", ""));
    let s2 = ctx.wait_status(&app, ns, secs(90), "Ready at generation 2", |s| ready_at(s, 2));
    for (h, old) in ["host1", "host2"].iter().zip(&before) {
        let cs = app_containers(tb, h, &app);
        assert_eq!(cs.len(), 1, "{h}: {:?}", cs.iter().map(Ctr::short).collect::<Vec<_>>());
        assert_ne!(&cs[0].id, old, "{h}: the container was not replaced");
        assert_eq!(cs[0].status, "running");
        assert!(cs[0].env.contains(&"COLOR=green".to_string()), "{:?}", cs[0].env);
        assert_eq!(status_ids(&s2, h), vec![cs[0].id.clone()], "{s2:#}");
    }
    assert_eq!(op.metric("berth_app_ready", &[("app", &app), ("namespace", ns)]), 1.0);
    assert_eq!(op.metric("berth_app_generation_lag", &[("app", &app), ("namespace", ns)]), 0.0);

    let after_edit: Vec<Vec<Ctr>> = ["host1", "host2"].iter().map(|h| app_containers(tb, h, &app)).collect();
    let r = ctx.berth(&["repin", &app, "-n", ns, "--wait", "--timeout", "60s"]).expect(0);
    assert!(r.stdout.contains("Ready (generation 2)"), "{}", r.stdout);
    let s3 = ctx.status(&app, ns).expect("status after the repin");
    let requested = r.stdout.lines().find_map(|l| l.split(" repin requested at ").nth(1)).expect("the request's time");
    assert_eq!(s3["repinRequestedAt"].as_str(), Some(requested), "{s3:#}");
    for (h, before) in ["host1", "host2"].iter().zip(&after_edit) {
        let ids = |cs: &[Ctr]| cs.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&app_containers(tb, h, &app)), ids(before), "{h}: an unmoved tag rolled");
    }
}

/// The operator remembers which pinned images a host holds, so a change on that host goes straight
/// to the create. When one is forced off the host (`docker rmi -f`) behind its back, the next
/// container that needs it still comes up: the create finds it gone, and berth pulls it again.
#[test]
fn an_image_forced_off_a_host_is_pulled_again_for_the_next_container() {
    let _busy = busy();
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("op-rmi");
    let ns = "prod";
    // An image of this test's own, so removing it on host1 disturbs no other test.
    let (image, _) = tb.private_app_image("op-rmi");

    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let op = ctx.operator("op-rmi", &[]);
    op.wait_leader(secs(30));
    let spec = |roles: &[&str]| {
        let mut s = format!("apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata:\n  name: {app}\n  namespace: {ns}\nspec:\n  image: {image}\n  roles:\n");
        for r in roles {
            s.push_str(&format!("    {r}:\n      hosts: [host1]\n      cmd: {HTTPD}\n"));
        }
        s
    };
    ctx.apply("app.yaml", &spec(&["web"]));
    let s1 = ctx.wait_status(&app, ns, secs(90), "Ready at generation 1", |s| ready_at(s, 1));
    let pinned = s1["images"][&image].as_str().expect("a pinned image").to_string();
    let web = app_containers(tb, "host1", &app);
    assert_eq!(web.len(), 1);

    tb.docker_ok("host1", &["rmi", "-f", &pinned]);
    assert!(!tb.docker("host1", &["image", "inspect", &pinned]).status.success(), "{pinned} is still there");
    ctx.apply("app.yaml", &spec(&["web", "worker"]));
    let s2 = ctx.wait_status(&app, ns, secs(90), "Ready at generation 2", |s| ready_at(s, 2));
    let now = app_containers(tb, "host1", &app);
    assert_eq!(now.len(), 2, "{s2:#}");
    assert!(now.iter().all(|c| c.status == "running"), "{:?}", now.iter().map(Ctr::short).collect::<Vec<_>>());
    assert!(now.iter().any(|c| c.id == web[0].id), "web was touched");
    assert!(tb.docker("host1", &["image", "inspect", &pinned]).status.success(), "{pinned} was not pulled again");
    let log = op.log();
    assert!(log.contains("image gone from the host"), "the create did not find the image gone:\n{log}");
}

/// An `ssh://` host under the operator: it converges over the forward, and when the operator's ssh
/// process dies (a dropped connection), the operator opens a new forward by itself and repairs a
/// container removed by hand through it.
#[test]
fn an_ssh_host_outlives_its_ssh_session() {
    let _busy = busy();
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("op-ssh");
    let ns = "prod";
    let sshd = common::sshd::Sshd::start(tb, "host3");
    ctx.apply("ssh3.yaml", &common::specs::host_doc("ssh3", &sshd.endpoint));
    let config = sshd.client_config("client_key");
    let op = ctx.operator_env("op-ssh", &[], &[("BERTH_SSH_CONFIG", &config)]);
    op.wait_leader(secs(30));
    ctx.apply("app.yaml", &web_app(tb, &app, ns, "ssh3", port(), "ssh", ""));
    let s1 = ctx.wait_status(&app, ns, secs(90), "Ready at generation 1", |s| ready_at(s, 1));
    let first = app_containers(tb, "host3", &app);
    assert_eq!(first.len(), 1, "{s1:#}");

    // The connection drops: kill the operator's ssh (its forward's socket name carries the pid).
    let mark = format!("berth-ssh-{}-", op.pid());
    let killed = Command::new("pkill").args(["-KILL", "-f", &mark]).status().unwrap();
    assert!(killed.success(), "no ssh process of the operator matched {mark}");
    tb.docker_ok("host3", &["rm", "-f", &first[0].id]);
    let back = wait_until(secs(60), || {
        let now = app_containers(tb, "host3", &app);
        now.len() == 1 && now[0].id != first[0].id && now[0].status == "running"
    });
    assert!(back, "the operator did not repair ssh3 over a new forward:\n{}\nsshd: {}", op.log(), sshd.log());
    let s2 = ctx.wait_status(&app, ns, secs(60), "Ready with the new container", |s| {
        s["phase"] == "Ready" && status_ids(s, "ssh3") != status_ids(&s1, "ssh3")
    });
    assert_eq!(s2["hosts"]["ssh3"]["reachable"], true);
    assert_eq!(sshd.log().matches("Accepted publickey").count() >= 2, true, "no second ssh session: {}", sshd.log());
}

// ------------------------------------------------------------------------------------ 2. drift

/// A managed container removed, stopped or killed by hand is replaced or restarted, and the app is
/// Ready again (a status written after the change, naming the running container), with nobody doing
/// anything. How fast is a figure of `scripts/bench` (drift repair), not a pass mark here.
#[test]
fn drift_by_hand_is_repaired_and_ready_again() {
    let _busy = busy();
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("op-drift");
    let ns = "prod";
    let host = "host2";
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let op = ctx.operator("op-drift", &[]);
    op.wait_leader(secs(30));
    ctx.apply("app.yaml", &web_app(tb, &app, ns, host, port(), "blue", ""));
    ctx.wait_status(&app, ns, secs(90), "Ready", |s| ready_at(s, 1));

    let mut report = Vec::new();
    for (what, args) in [
        ("docker rm -f", vec!["rm", "-f"]),
        ("docker stop -t 1", vec!["stop", "-t", "1"]),
        ("docker kill", vec!["kill"]),
    ] {
        let cs = app_containers(tb, host, &app);
        assert_eq!(cs.len(), 1, "{:?}", cs.iter().map(Ctr::short).collect::<Vec<_>>());
        let victim = cs[0].clone();
        // Let the wall clock pass the last status' second, so a status written after the drift is
        // told apart from the one before by its lastConverged (which has 1 s resolution).
        let last = last_converged(&ctx.status(&app, ns).unwrap());
        while unix_now() < last + 1.05 {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut full = args.clone();
        full.push(&victim.id);
        tb.docker_ok(host, &full);
        let (t0, wall0) = (Instant::now(), unix_now().floor());

        let mut running_after = None;
        let mut ready_after = None;
        let mut last_seen = (Vec::new(), None);
        while t0.elapsed() < secs(60) && ready_after.is_none() {
            let cs = app_containers(tb, host, &app);
            let running = cs.len() == 1 && cs[0].status == "running" && cs[0].health.as_deref() == Some("healthy");
            if running && running_after.is_none() {
                running_after = Some(t0.elapsed());
            }
            let s = ctx.status(&app, ns);
            if let Some(s) = &s {
                if running && ready_at(s, 1) && last_converged(s) >= wall0 && status_ids(s, host) == vec![cs[0].id.clone()] {
                    ready_after = Some(t0.elapsed());
                }
            }
            last_seen = (cs, s);
            std::thread::sleep(Duration::from_millis(100));
        }
        let ready_after = ready_after.unwrap_or_else(|| {
            panic!(
                "after `{what}`: not repaired and Ready within 60 s; containers {:?}; status {}",
                last_seen.0.iter().map(Ctr::short).collect::<Vec<_>>(),
                pretty(&last_seen.1)
            )
        });
        let now = app_containers(tb, host, &app);
        if what.contains("rm") {
            assert_ne!(now[0].id, victim.id, "{what}: the removed container is back?");
        }
        report.push(format!("{what}: running after {running_after:?}, Ready after {ready_after:?} (same id: {})", now[0].id == victim.id));
    }
    eprintln!("drift repair times:\n  {}", report.join("\n  "));
    assert!(op.metric("berth_drift_repairs_total", &[("app", &app), ("namespace", ns)]) >= 3.0);
}

// ------------------------------------------------------------------------------------ 3. host outage

/// A host's dockerd dies (power loss) and comes back: apps on the other hosts stay Ready all along
/// (their status is polled throughout, and they are reconciled during the outage), the app on the
/// stopped host names it and is not Ready; once the host is back, its exited container (restart: no)
/// is converged by the operator with nobody doing anything.
#[test]
fn a_stopped_host_is_reported_others_stay_ready_and_it_is_reconverged_when_back() {
    let _busy = busy();
    let tb = Testbed::get();
    let ctx = Ctx::new();
    let ns = "prod";
    let (on1, on2, on3) = (ctx.app("op-out1"), ctx.app("op-out2"), ctx.app("op-out3"));
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let op = ctx.operator("op-outage", &["--resync", "3s"]);
    {
        let _up = tb.shared();
        op.wait_leader(secs(30));
        ctx.apply("on1.yaml", &web_app(tb, &on1, ns, "host1", port(), "a", ""));
        ctx.apply("on2.yaml", &web_app(tb, &on2, ns, "host2", port(), "b", ""));
        ctx.apply("on3.yaml", &web_app(tb, &on3, ns, "host3", port(), "c", "      restart: \"no\"\n"));
        for a in [&on1, &on2, &on3] {
            ctx.wait_status(a, ns, secs(90), "Ready", |s| ready_at(s, 1));
        }
    }
    let reconciles = |a: &str| op.metric("berth_reconcile_total", &[("app", a), ("namespace", ns)]);
    let (r1, r2) = (reconciles(&on1), reconciles(&on2));

    let outage = tb.outage("host3");
    let t_out = Instant::now();
    let mut reported = None;
    let mut polls = 0;
    while t_out.elapsed() < secs(20) || reported.is_none() {
        assert!(
            !tb.host("host3").socket_path().exists(),
            "host3 answers again {:?} into its outage, and not by this test: another process started it",
            t_out.elapsed()
        );
        for a in [&on1, &on2] {
            let s = ctx.status(a, ns);
            assert!(
                s.as_ref().is_some_and(|s| ready_at(s, 1)),
                "{a} (not on host3) is not Ready {:?} into host3's outage: {}",
                t_out.elapsed(),
                pretty(&s)
            );
        }
        polls += 1;
        if reported.is_none() {
            if let Some(s) = ctx.status(&on3, ns) {
                let h3 = &s["hosts"]["host3"];
                if s["phase"] != "Ready" && h3["reachable"] == false && s["message"].as_str().unwrap_or("").contains("host3")
                {
                    reported = Some((t_out.elapsed(), s));
                }
            }
        }
        assert!(t_out.elapsed() < secs(60), "{on3} never reported host3 down: {}", pretty(&ctx.status(&on3, ns)));
        std::thread::sleep(Duration::from_millis(300));
    }
    let (reported_after, s3) = reported.unwrap();
    eprintln!("host3 down: reported after {reported_after:?}: {}", s3["message"]);
    assert_ne!(s3["phase"], "Ready");
    assert!(s3["hosts"]["host3"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{s3:#}");
    // The other apps were really looked at during the outage, not only left alone.
    assert!(reconciles(&on1) > r1 && reconciles(&on2) > r2, "no reconcile of the other apps during the outage ({polls} polls)");
    assert_eq!(op.metric("berth_host_up", &[("host", "host3")]), 0.0);
    // A down Docker host is an alert, not an unready operator; /readyz names it.
    let readyz = op.get("/readyz");
    assert!(readyz.as_ref().is_some_and(|(c, b)| *c == 200 && b.contains("leader") && b.contains("host3")), "/readyz: {readyz:?}");

    drop(outage); // start-host: dockerd is back, the container exited (restart: no)
    let t_back = Instant::now();
    let wall_back = unix_now().floor();
    let _up = tb.shared();
    let s = ctx.wait_status(&on3, ns, secs(120), "Ready again after host3 returned", |s| {
        ready_at(s, 1) && last_converged(s) >= wall_back
    });
    let back_after = t_back.elapsed();
    let cs = app_containers(tb, "host3", &on3);
    assert_eq!(cs.len(), 1, "{:?}", cs.iter().map(Ctr::short).collect::<Vec<_>>());
    assert_eq!(cs[0].status, "running");
    assert_eq!(status_ids(&s, "host3"), vec![cs[0].id.clone()]);
    eprintln!("host3 back: {on3} Ready again after {back_after:?}");
    // The returning host queues every app once more; the others end that pass Ready as well.
    for a in [&on1, &on2] {
        assert!(
            wait_until(secs(30), || ctx.status(a, ns).is_some_and(|s| ready_at(&s, 1))),
            "{a} not Ready after host3 returned: {:#?}",
            ctx.status(a, ns)
        );
    }
    assert!(wait_until(secs(30), || op.metric("berth_host_up", &[("host", "host3")]) == 1.0));
}

// ------------------------------------------------------------------------------------ 4. etcd outage

/// An etcd of this test's own (same binary as the bed's), stopped and started at will.
struct PrivateEtcd {
    child: Option<Child>,
    args: Vec<String>,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl PrivateEtcd {
    fn start() -> PrivateEtcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let data = dir.path().join("data");
        let args: Vec<String> = [
            "--name",
            "op-e2e",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-client-urls",
            &c,
            "--advertise-client-urls",
            &c,
            "--listen-peer-urls",
            &p,
            "--initial-advertise-peer-urls",
            &p,
            "--initial-cluster",
            &format!("op-e2e={p}"),
            "--initial-cluster-state",
            "new",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut e = PrivateEtcd { child: None, args, endpoint: c, dir };
        e.run();
        e
    }

    fn run(&mut self) {
        let log = File::options().create(true).append(true).open(self.dir.path().join("etcd.log")).unwrap();
        let child = Command::new("/usr/bin/etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        assert!(wait_until(secs(30), || self.answers()), "private etcd never answered\n{}", self.log());
    }

    fn answers(&self) -> bool {
        let endpoint = self.endpoint.clone();
        block_on(async move {
            let attempt = async {
                let mut c = Client::connect([endpoint], None).await.ok()?;
                c.get("/", None).await.ok()
            };
            tokio::time::timeout(secs(2), attempt).await.ok().flatten().is_some()
        })
    }

    fn pid(&self) -> String {
        self.child.as_ref().unwrap().id().to_string()
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args(["-s", sig, &self.pid()]).status().unwrap().success());
    }

    /// A hard kill; the data dir stays.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args(["-s", "CONT", &c.id().to_string()]).status();
        }
        self.kill();
    }
}

/// Waits out an etcd outage of `secs` while checking, every second, that the operator lives, answers
/// /healthz and that no container of `app` changed.
fn ride_out(op: &mut Operator, tb: &Testbed, app: &str, before: &[(String, String, String, String)], how_long: Duration) {
    let t = Instant::now();
    while t.elapsed() < how_long {
        assert!(op.alive(), "the operator exited during the etcd outage\n{}", op.log());
        assert_eq!(op.get("/healthz").map(|r| r.0), Some(200), "/healthz during the etcd outage");
        assert_eq!(snapshot(tb, app), before, "containers changed during the etcd outage");
        std::thread::sleep(secs(1));
    }
}

/// etcd frozen for 30 s (SIGSTOP/SIGCONT: requests hang), then killed and restarted on its data dir
/// (connections refused): the operator keeps running, removes or restarts no container, and picks up
/// a spec change made after etcd returned each time.
#[test]
fn etcd_outage_keeps_the_operator_up_touches_no_container_and_later_changes_land() {
    let _busy = busy();
    let tb = Testbed::get();
    let _up = tb.shared();
    let mut etcd = PrivateEtcd::start();
    let ctx = Ctx::with_etcd(&etcd.endpoint);
    let app = ctx.app("op-etcd");
    let ns = "prod";
    let web_port = port();
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let mut op = ctx.operator("op-etcd", &["--resync", "5s"]);
    op.wait_leader(secs(30));
    ctx.apply("app.yaml", &web_app(tb, &app, ns, "host1, host2", web_port, "blue", ""));
    ctx.wait_status(&app, ns, secs(90), "Ready", |s| ready_at(s, 1));
    let before = snapshot(tb, &app);
    assert_eq!(before.len(), 2, "{before:?}");

    // 1. Frozen: every request hangs.
    etcd.signal("STOP");
    ride_out(&mut op, tb, &app, &before, secs(30));
    etcd.signal("CONT");
    assert!(wait_until(secs(30), || etcd.answers()), "etcd did not answer after SIGCONT");
    ride_out(&mut op, tb, &app, &before, secs(3));
    let t = Instant::now();
    ctx.apply("app.yaml", &web_app(tb, &app, ns, "host1, host2", web_port, "green", ""));
    ctx.wait_status(&app, ns, secs(120), "Ready at generation 2 after etcd thawed", |s| ready_at(s, 2));
    eprintln!("etcd frozen 30 s: a change applied after it thawed was Ready after {:?}", t.elapsed());
    assert!(op.alive());
    let gen2 = snapshot(tb, &app);
    assert_eq!(gen2.len(), 2, "{gen2:?}");
    for c in &gen2 {
        assert!(!before.iter().any(|b| b.2 == c.2), "generation 2 kept an old container: {gen2:?}");
    }
    for h in ["host1", "host2"] {
        assert!(app_containers(tb, h, &app)[0].env.contains(&"COLOR=green".to_string()));
    }

    // 2. Dead: connections refused, then a restart on the same data.
    etcd.kill();
    let unready = |op: &Operator| op.get("/readyz").is_some_and(|(c, b)| c == 503 && b.contains("etcd"));
    assert!(wait_until(secs(10), || unready(&op)), "/readyz with etcd dead: {:?}", op.get("/readyz"));
    ride_out(&mut op, tb, &app, &gen2, secs(15));
    assert!(unready(&op), "/readyz with etcd dead: {:?}", op.get("/readyz"));
    etcd.run();
    ride_out(&mut op, tb, &app, &gen2, secs(3));
    let t = Instant::now();
    ctx.apply("app.yaml", &web_app(tb, &app, ns, "host1, host2", web_port, "red", ""));
    ctx.wait_status(&app, ns, secs(120), "Ready at generation 3 after etcd restarted", |s| ready_at(s, 3));
    eprintln!("etcd killed 15 s: a change applied after its restart was Ready after {:?}", t.elapsed());
    assert!(op.alive());
    for h in ["host1", "host2"] {
        let cs = app_containers(tb, h, &app);
        assert_eq!(cs.len(), 1);
        assert!(cs[0].env.contains(&"COLOR=red".to_string()));
    }
    assert!(op.get("/readyz").is_some_and(|(c, b)| c == 200 && b.contains("leader")), "{:?}", op.get("/readyz"));
}

// ------------------------------------------------------------------------------------ 5. two operators

/// Two operators on one prefix: one leads (berth_leader 1, /readyz "leader") and only it creates
/// containers; the other stays standby. The leader is SIGKILLed while it converges an app over three
/// hosts (its accessory turns healthy only after 6 s): the standby takes over and finishes, with
/// exactly one container per component per host at the end, and the app Ready.
#[test]
fn a_standby_takes_over_a_converge_from_a_killed_leader_without_duplicates() {
    let _busy = busy();
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let ns = "prod";
    let (first, second) = (ctx.app("op-ha1"), ctx.app("op-ha2"));
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let ha = ["--lease-ttl", "3s"];
    let a = ctx.operator("op-ha-a", &ha);
    a.wait_leader(secs(30));
    let b = ctx.operator("op-ha-b", &ha);
    assert!(
        wait_until(secs(30), || b.get("/readyz").is_some_and(|(c, body)| c == 200 && body.contains("standby"))),
        "b: {:?}",
        b.get("/readyz")
    );
    assert!(a.get("/readyz").is_some_and(|(c, body)| c == 200 && body.contains("leader")));
    assert_eq!(ctx.leader_key().as_deref(), Some("op-ha-a"));

    // Only the leader creates.
    let since = unix_now();
    ctx.apply("first.yaml", &web_app(tb, &first, ns, "host1, host2, host3", port(), "x", ""));
    ctx.wait_status(&first, ns, secs(90), "Ready", |s| ready_at(s, 1));
    let mut creates = 0;
    for h in tb.host_names() {
        let ev = tb.lifecycle_events_since(h, &format!("berth.app={first}"), since);
        creates += ev.iter().filter(|e| e.starts_with("create ")).count();
    }
    assert_eq!(creates, 3, "one create per host expected");
    assert_eq!(a.actions(&first, "create").len(), 3, "{}", a.log());
    assert!(b.actions(&first, "create").is_empty(), "the standby created:\n{:?}", b.actions(&first, "create"));
    assert_eq!((a.metric("berth_leader", &[]), b.metric("berth_leader", &[])), (1.0, 0.0));

    // The leader dies in the middle of a converge.
    let accessory = &tb.images.accessory;
    let image = &tb.images.app_v1;
    let spec = format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {second}
  namespace: {ns}
spec:
  image: {image}
  accessories:
    db:
      image: {accessory}
      hosts: [host1, host2, host3]
      cmd: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 6; touch /tmp/ready; while true; do sleep 1; done\"]
      healthcheck:
        cmd: test -f /tmp/ready
        interval: 1s
        retries: 3
  roles:
    web:
      hosts: [host1, host2, host3]
      cmd: {HTTPD}
      dependsOn: [db]
"
    );
    let since = unix_now();
    ctx.apply("second.yaml", &spec);
    let all_dbs = || {
        tb.host_names()
            .iter()
            .all(|h| app_containers(tb, h, &second).iter().any(|c| c.component() == "accessory/db" && c.status == "running"))
    };
    // Killed while it waits for the accessories to turn healthy (created and started, not yet healthy).
    assert!(wait_until(secs(60), all_dbs), "the leader never started the accessories\n{}", a.log());
    let webs_before: usize = tb
        .host_names()
        .iter()
        .map(|h| app_containers(tb, h, &second).iter().filter(|c| c.component() == "role/web").count())
        .sum();
    let dbs_before: Vec<String> = tb
        .host_names()
        .iter()
        .map(|h| app_containers(tb, h, &second).into_iter().find(|c| c.component() == "accessory/db").unwrap().id)
        .collect();
    let mut a = a;
    a.signal("KILL");
    let killed = Instant::now();
    assert!(a.wait_exit(secs(5)).is_some());
    assert_eq!(webs_before, 0, "the kill came too late: web containers already existed");

    let mut took_over = None;
    while killed.elapsed() < secs(30) {
        if b.is_leader() {
            took_over = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took_over = took_over.unwrap_or_else(|| panic!("the standby did not take over within 30 s\n{}", b.log()));
    assert_eq!(ctx.leader_key().as_deref(), Some("op-ha-b"));
    let s = ctx.wait_status(&second, ns, secs(120), "Ready after the takeover", |s| ready_at(s, 1));
    let ready_after = killed.elapsed();
    eprintln!("takeover: standby led {took_over:?} after SIGKILL of the leader (lease TTL 3 s); app Ready {ready_after:?} after it");

    let mut creates = 0;
    for (h, db_before) in tb.host_names().into_iter().zip(&dbs_before) {
        let cs = app_containers(tb, h, &second);
        assert!(cs.iter().any(|c| &c.id == db_before), "{h}: the accessory the old leader started is gone");
        let mut comps: Vec<String> = cs.iter().map(Ctr::component).collect();
        comps.sort();
        assert_eq!(comps, ["accessory/db", "role/web"], "{h}: {:?}", cs.iter().map(Ctr::short).collect::<Vec<_>>());
        assert!(cs.iter().all(|c| c.status == "running"), "{h}: {:?}", cs.iter().map(Ctr::short).collect::<Vec<_>>());
        let mut ids: Vec<String> = cs.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        let mut listed = status_ids(&s, h);
        listed.sort();
        assert_eq!(listed, ids, "{h}: status and Docker disagree: {s:#}");
        let ev = tb.lifecycle_events_since(h, &format!("berth.app={second}"), since);
        creates += ev.iter().filter(|e| e.starts_with("create ")).count();
        assert!(!ev.iter().any(|e| e.starts_with("destroy ")), "{h}: a container was removed: {ev:?}");
    }
    // Three accessories by the old leader, three web containers by the new one: nothing twice.
    assert_eq!(creates, 6, "containers created over the takeover");
    assert_eq!(b.actions(&second, "create").len(), 3, "{:?}", b.actions(&second, "create"));
    assert!(b.actions(&second, "create").iter().all(|l| l.contains("role/web")));
}

// ------------------------------------------------------------------------------------ 6. twenty apps

/// Twenty small apps applied by one `berth apply -f DIR/` all reach Ready; a resync with nothing
/// changed then makes no Docker change at all (no container event of those apps on any host, no
/// container action counted). The Docker API calls that resync made are counted and printed.
#[test]
fn twenty_apps_at_once_reach_ready_and_a_noop_resync_changes_nothing() {
    let tb = Testbed::get();
    let _quiet = QUIET.write().unwrap_or_else(|e| e.into_inner());
    let _up = tb.shared();
    let ctx = Ctx::new();
    let ns = ctx.namespace("op20");
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let image = &tb.images.app_v1;
    let mut apps = Vec::new();
    for i in 0..20 {
        let app = ctx.app(&format!("op20-{i:02}"));
        let host = format!("host{}", i % 3 + 1);
        ctx.file(
            &format!("apps/{app}.yaml"),
            &format!(
                "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  roles:
    worker:
      hosts: [{host}]
      cmd: {IDLE}
"
            ),
        );
        apps.push(app);
    }
    let resync = 5;
    let op = ctx.operator("op-20", &["--resync", &format!("{resync}s")]);
    op.wait_leader(secs(30));
    let t = Instant::now();
    let dir = ctx.dir.path().join("apps");
    let r = ctx.berth(&["apply", "-f", dir.to_str().unwrap()]).expect(0);
    assert_eq!(r.stdout.lines().filter(|l| l.contains("created")).count(), 20, "{}", r.stdout);
    for app in &apps {
        ctx.wait_status(app, &ns, secs(180), "Ready", |s| ready_at(s, 1));
    }
    eprintln!("20 apps applied at once: all Ready after {:?}", t.elapsed());
    for (i, app) in apps.iter().enumerate() {
        let host = format!("host{}", i % 3 + 1);
        let cs = app_containers(tb, &host, app);
        assert_eq!(cs.len(), 1, "{app} on {host}");
        assert_eq!(cs[0].status, "running");
    }

    let reconciles = || op.metric("berth_reconcile_total", &[("namespace", &ns)]);
    // Waits for the next resync to pass completely: +20 reconciles, then quiet for 2 s.
    let next_resync = |from: f64| {
        assert!(
            wait_until(secs(3 * resync), || reconciles() >= from + 20.0),
            "no resync within {}s: {} reconciles since",
            3 * resync,
            reconciles() - from
        );
        let mut last = reconciles();
        loop {
            std::thread::sleep(secs(2));
            let now = reconciles();
            if now == last {
                return now;
            }
            last = now;
        }
    };
    // Each window runs from just after one resync to just after the next. Its Docker API calls count
    // only when nothing at all happened to berth's containers on the hosts since before the previous
    // resync (the last time the operator listed them): any container event rightly makes it list that
    // host again. Tests of this binary keep out of the way (QUIET), but other processes may share the
    // hosts, so up to four windows are tried to find a quiet one.
    let calls = |m: &str| metric_sum(m, "berth_docker_request_duration_seconds_count", &[]);
    let actions = |m: &str| metric_sum(m, "berth_container_actions_total", &[]);
    let label = format!("berth.namespace={ns}");
    let mut checked_from = unix_now();
    let mut settled = next_resync(reconciles());
    let mut quiet = None;
    let mut noisy = Vec::new();
    for _ in 0..4 {
        let m1 = op.metrics();
        let since = unix_now();
        let after = next_resync(settled);
        let until = unix_now();
        let m2 = op.metrics();
        assert!(after - settled >= 20.0, "a resync reconciles every app: {} reconciles", after - settled);
        for h in tb.host_names() {
            let ev = tb.lifecycle_events(h, &label, since, until);
            assert!(ev.is_empty(), "a no-op resync changed containers on {h}: {ev:?}");
        }
        assert_eq!(actions(&m2) - actions(&m1), 0.0, "Docker actions counted during a no-op resync");
        let total = calls(&m2) - calls(&m1);
        let by_series = series_delta(&m1, &m2, "berth_docker_request_duration_seconds_count");
        let events: Vec<String> =
            tb.host_names().iter().flat_map(|h| tb.state_events(h, "berth.managed-by=berth", checked_from, until)).collect();
        if events.is_empty() {
            quiet = Some((total, by_series));
            break;
        }
        noisy.push(format!("{total} calls {by_series:?} after container events {events:?}"));
        settled = after;
        checked_from = since;
    }
    match quiet {
        Some((total, by_series)) => {
            eprintln!("no-op resync of 20 apps on quiet hosts: {total} Docker API calls {by_series:?} (other windows: {noisy:?})");
            assert_eq!(total, 0.0, "Docker API calls during a no-op resync with nothing changed on any host");
        }
        None => eprintln!("no quiet resync window (other tests kept the hosts busy), Docker API calls not asserted: {noisy:?}"),
    }
    for app in &apps {
        assert!(ready_at(&ctx.status(app, &ns).unwrap(), 1));
    }
}

// ------------------------------------------------------------------------------------ 7. SIGTERM

/// SIGTERM: the operator exits 0 and releases the lease, so a standby (whose lease TTL is 15 s)
/// leads right away instead of a TTL later; /healthz and /readyz answer on both.
#[test]
fn sigterm_exits_zero_and_hands_the_lease_over_at_once() {
    let _busy = busy();
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("op-term");
    let ns = "prod";
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let mut a = ctx.operator("op-term-a", &["--lease-ttl", "15s"]);
    a.wait_leader(secs(30));
    let b = ctx.operator("op-term-b", &["--lease-ttl", "15s"]);
    for (op, role) in [(&a, "leader"), (&b, "standby")] {
        assert_eq!(op.get("/healthz"), Some((200, "ok\n".to_string())));
        assert!(
            wait_until(secs(30), || op.get("/readyz").is_some_and(|(c, body)| c == 200 && body.contains(role))),
            "{}: /readyz {:?}",
            op.identity,
            op.get("/readyz")
        );
    }
    assert_eq!(ctx.leader_key().as_deref(), Some("op-term-a"));
    ctx.apply("app.yaml", &web_app(tb, &app, ns, "host1", port(), "x", ""));
    ctx.wait_status(&app, ns, secs(90), "Ready", |s| ready_at(s, 1));

    a.signal("TERM");
    let t = Instant::now();
    let status = a.wait_exit(secs(60)).unwrap_or_else(|| panic!("no exit within 60 s of SIGTERM\n{}", a.log()));
    let exited_after = t.elapsed();
    assert!(status.success(), "exit status {status:?}\n{}", a.log());
    assert!(a.log().contains("lease released"), "{}", a.log());
    let key = ctx.leader_key();
    assert_ne!(key.as_deref(), Some("op-term-a"), "the leader key outlived the operator");
    assert!(wait_until(secs(5), || b.is_leader()), "the standby did not lead within 5 s (TTL is 15 s)\n{}", b.log());
    let handover = t.elapsed();
    assert_eq!(ctx.leader_key().as_deref(), Some("op-term-b"));
    assert!(wait_until(secs(10), || b.get("/readyz").is_some_and(|(c, body)| c == 200 && body.contains("leader"))));
    eprintln!("SIGTERM: exited 0 after {exited_after:?}; standby led {handover:?} after the signal");
    // The app is untouched by the hand-over.
    assert!(ready_at(&ctx.status(&app, ns).unwrap(), 1));
    assert_eq!(app_containers(tb, "host1", &app).len(), 1);
}
