//! End to end on the real test bed: the `berth` binary applies, plans, converges and deletes Apps on
//! real Docker hosts backed by the real etcd, and every result is checked the way a user would check
//! it, with the Docker CLI on the hosts (`docker ps -a --filter label=…`, `docker inspect` ids and
//! timestamps, `docker image ls`, `docker events`) and HTTP against the published ports.
//!
//! Isolation: each test has its own etcd prefix (`/berth-e2e-PID-N`) and its own Hosts in it, app
//! names from [`unique`], and host ports of its own ([`port`]), because every test shares the same
//! three Docker daemons. Tests that need every host up hold [`Testbed::shared`]; the one that stops
//! a host goes through [`Testbed::outage`]. Each test deletes its apps through berth (delete +
//! converge) and a drop guard removes, by label, whatever a failing test left behind.
mod common;

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use common::ports::host_port;
use common::run::{berth_at, berth_cmd, Run};
use common::specs::unix_hosts;
use common::testbed::{http_get, secs, unique, wait_for_http, wait_until, Testbed};
use etcd_client::{Client, DeleteOptions, GetOptions};
use serde_json::Value;

// ------------------------------------------------------------------------------------ helpers

/// A host port no other test of this run publishes: `20000 + (pid % 600) * 20 + n`, n < 20. It stays
/// below 32768, where Docker picks the ports of other tests' `-p 80`.
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 20000, 600, 20, "engine_e2e")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// One test's world: its etcd prefix, its spec files, and the apps it created (for cleanup).
struct Ctx {
    tb: &'static Testbed,
    prefix: String,
    dir: tempfile::TempDir,
    apps: RefCell<Vec<String>>,
}

impl Ctx {
    fn new() -> Ctx {
        static N: AtomicU64 = AtomicU64::new(0);
        Ctx {
            tb: Testbed::get(),
            prefix: format!("/berth-e2e-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)),
            dir: tempfile::tempdir().unwrap(),
            apps: RefCell::new(Vec::new()),
        }
    }

    /// A unique app name, cleaned up (containers, networks, volumes) when the test ends.
    fn app(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.apps.borrow_mut().push(name.clone());
        name
    }

    /// `berth --etcd … --prefix … ARGS`, with no inherited berth settings.
    fn berth(&self, args: &[&str]) -> Run {
        Run::of(berth_at(&self.tb.etcd, &self.prefix, args))
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// Writes `text` to `name` and applies it; must succeed.
    fn apply(&self, name: &str, text: &str) -> Run {
        let f = self.file(name, text);
        self.berth(&["apply", "-f", &f]).expect(0)
    }

    fn converge(&self, app: &str, ns: &str) -> Run {
        self.berth(&["converge", app, "-n", ns])
    }

    /// `berth status -o json`.
    fn status(&self, app: &str, ns: &str) -> Value {
        let r = self.berth(&["status", app, "-n", ns, "-o", "json"]).expect(0);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
    }

    /// Marks the app deleted and converges it away; the converge must finalize it.
    fn delete(&self, app: &str, ns: &str) {
        self.berth(&["delete", "app", app, "-n", ns]).expect(0);
        let r = self.converge(app, ns).expect(0);
        assert!(r.stdout.contains(&format!("app/{app} -n {ns} deleted")), "{}", r.stdout);
    }

    /// Every key under the test's prefix.
    fn keys(&self) -> Vec<String> {
        let (etcd, root) = (self.tb.etcd.clone(), format!("{}/", self.prefix));
        block_on(async move {
            let mut c = Client::connect([etcd], None).await.unwrap();
            let resp = c.get(root, Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
            resp.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).to_string()).collect()
        })
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        for app in self.apps.borrow().iter() {
            let label = format!("label=berth.app={app}");
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
                let vols =
                    lines(&self.tb.docker(&h.name, &["volume", "ls", "-q", "--filter", &format!("name={app}-")]));
                for v in vols.iter().filter(|v| v.starts_with(&format!("{app}-"))) {
                    let _ = self.tb.docker(&h.name, &["volume", "rm", v]);
                }
            }
        }
        let (etcd, root) = (self.tb.etcd.clone(), format!("{}/", self.prefix));
        block_on(async move {
            if let Ok(mut c) = Client::connect([etcd], None).await {
                let _ = c.delete(root, Some(DeleteOptions::new().with_prefix())).await;
            }
        });
    }
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// A container as `docker inspect` shows it.
#[derive(Debug, Clone)]
struct Ctr {
    id: String,
    name: String,
    status: String,
    started: String,
    created: String,
    health: Option<String>,
    config_image: String,
    image_id: String,
    labels: serde_json::Map<String, Value>,
    raw: Value,
}

impl Ctr {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).and_then(Value::as_str)
    }
    fn role(&self) -> Option<&str> {
        self.label("berth.role")
    }
    fn accessory(&self) -> Option<&str> {
        self.label("berth.accessory")
    }
}

fn inspect(tb: &Testbed, host: &str, ids: &[String]) -> Vec<Ctr> {
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["inspect"];
    args.extend(ids.iter().map(String::as_str));
    let text = tb.docker_ok(host, &args);
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    all.into_iter()
        .map(|v| Ctr {
            id: v["Id"].as_str().unwrap().to_string(),
            name: v["Name"].as_str().unwrap().trim_start_matches('/').to_string(),
            status: v["State"]["Status"].as_str().unwrap().to_string(),
            started: v["State"]["StartedAt"].as_str().unwrap().to_string(),
            created: v["Created"].as_str().unwrap().to_string(),
            health: v["State"]["Health"]["Status"].as_str().map(String::from),
            config_image: v["Config"]["Image"].as_str().unwrap_or_default().to_string(),
            image_id: v["Image"].as_str().unwrap_or_default().to_string(),
            labels: v["Config"]["Labels"].as_object().cloned().unwrap_or_default(),
            raw: v,
        })
        .collect()
}

/// Every container (running or not) of `app` on `host`, found by its `berth.app` label.
fn app_containers(tb: &Testbed, host: &str, app: &str) -> Vec<Ctr> {
    let ids = lines(&tb.docker(host, &["ps", "-aq", "--no-trunc", "--filter", &format!("label=berth.app={app}")]));
    let mut out = inspect(tb, host, &ids);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The one container of `app` in `ns` on `host` that runs `component` (`role/web`, `accessory/db`).
fn one(tb: &Testbed, host: &str, app: &str, ns: &str, component: &str) -> Ctr {
    let (kind, name) = component.split_once('/').unwrap();
    let all = app_containers(tb, host, app);
    let mine: Vec<&Ctr> = all
        .iter()
        .filter(|c| c.label("berth.namespace") == Some(ns))
        .filter(|c| if kind == "role" { c.role() == Some(name) } else { c.accessory() == Some(name) })
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "expected one {component} container of {app} -n {ns} on {host}, found {:#?}",
        names(&all)
    );
    mine[0].clone()
}

fn names(cs: &[Ctr]) -> Vec<String> {
    cs.iter().map(|c| format!("{} {} {}", c.name, &c.id[..12], c.status)).collect()
}

/// `(id, StartedAt)` of every container of `app` on every host, keyed by host and name.
fn snapshot(tb: &Testbed, app: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for h in tb.host_names() {
        for c in app_containers(tb, h, app) {
            out.push((h.to_string(), c.name.clone(), c.id.clone(), c.started.clone()));
        }
    }
    out
}

fn ts(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("bad docker timestamp {s:?}: {e}"))
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}


fn http_body(host_addr: &str, port: u16) -> Option<String> {
    match http_get(host_addr, port, "/") {
        Ok((200, body)) => Some(body.trim().to_string()),
        _ => None,
    }
}

fn addr(tb: &Testbed, host: &str) -> String {
    tb.host(host).address.clone()
}

/// The image's httpd, behind a shell that exits on SIGTERM: busybox httpd as PID 1 ignores it, and
/// every stop would wait out Docker's 10 s grace period.
const HTTPD: &str = r#"["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]"#;

/// A loop that stops at once on SIGTERM.
const IDLE: &str = r#"["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]"#;

/// A healthcheck that passes once httpd answers on :80.
const WEB_HEALTH: &str =
    r#"{cmd: ["sh", "-c", "timeout 2 wget -q -O /dev/null http://127.0.0.1/"], interval: 1s, retries: 3}"#;

// ------------------------------------------------------------------------------------ 1. prune

/// A role removed from the spec: its containers go on every host; the remaining role's containers
/// keep their ids; a hand-started container with a berth-like name (no labels) and another app's
/// container on the same host survive.
#[test]
fn removed_role_is_pruned_on_every_host_and_nothing_else_is_touched() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let (app, other) = (ctx.app("e2e-prune"), ctx.app("e2e-other"));
    let (web_port, other_port) = (port(), port());
    let ns = "prod";
    let image = &tb.images.app_v1;
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let spec = |with_worker: bool| {
        let worker = if with_worker {
            format!("    worker:\n      hosts: [host1, host2]\n      cmd: {IDLE}\n")
        } else {
            String::new()
        };
        format!(
            "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  roles:
    web:
      hosts: [host1, host2]
      cmd: {HTTPD}
      ports: [\"{web_port}:80\"]
{worker}"
        )
    };
    ctx.apply("app.yaml", &spec(true));
    ctx.apply(
        "other.yaml",
        &format!(
            "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {other}
  namespace: {ns}
spec:
  image: {image}
  roles:
    worker:
      hosts: [host1]
      cmd: {HTTPD}
      ports: [\"{other_port}:80\"]
"
        ),
    );
    ctx.converge(&app, ns).expect(0);
    ctx.converge(&other, ns).expect(0);

    // Someone starts a container by hand that looks like one of berth's, but has no labels.
    let lookalike = format!("{app}-{ns}-worker-0badc0de");
    let _rm = tb.container("host1", &lookalike);
    let hand_id = tb.docker_ok("host1", &["run", "-d", "--name", &lookalike, image, "sleep", "600"]);

    let web_before: Vec<String> = ["host1", "host2"].iter().map(|h| one(tb, h, &app, ns, "role/web").id).collect();
    for h in ["host1", "host2"] {
        one(tb, h, &app, ns, "role/worker");
    }
    let other_before = one(tb, "host1", &other, ns, "role/worker");

    ctx.apply("app.yaml", &spec(false));
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.changes(), "remove 2, stop 2", "{}", r.stdout);

    for (h, before) in ["host1", "host2"].iter().zip(&web_before) {
        let left = app_containers(tb, h, &app);
        assert!(left.iter().all(|c| c.role() != Some("worker")), "worker left on {h}: {:#?}", names(&left));
        assert_eq!(left.len(), 1, "{h}: {:#?}", names(&left));
        assert_eq!(&left[0].id, before, "web on {h} was replaced");
        assert_eq!(left[0].status, "running");
        assert_eq!(wait_for_http(&addr(tb, h), web_port, "/", "v1", secs(10)).trim(), "v1");
    }
    let hand = &inspect(tb, "host1", std::slice::from_ref(&hand_id))[0];
    assert_eq!((hand.name.as_str(), hand.status.as_str()), (lookalike.as_str(), "running"));
    let other_after = one(tb, "host1", &other, ns, "role/worker");
    assert_eq!((&other_after.id, &other_after.started), (&other_before.id, &other_before.started));
    assert_eq!(other_after.status, "running");

    let status = ctx.status(&app, ns);
    assert_eq!(status["phase"], "Ready", "{status:#}");
    assert!(!status.to_string().contains("role/worker"), "{status:#}");

    ctx.delete(&app, ns);
    ctx.delete(&other, ns);
    assert!(inspect(tb, "host1", &[hand_id]).iter().all(|c| c.status == "running"), "delete touched the lookalike");
}

// ------------------------------------------------------------------------------------ 2. growth

/// A new role on a host the app did not use yet, while its accessory runs: the accessory keeps its
/// id and its StartedAt, the new role runs. A second converge with no change does nothing at all.
#[test]
fn new_role_on_a_new_host_leaves_the_running_accessory_alone_and_a_repeat_converge_changes_nothing() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("e2e-grow");
    let ns = "prod";
    let (web_port, api_port) = (port(), port());
    let (image, accessory) = (&tb.images.app_v1, &tb.images.accessory);
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let spec = |with_api: bool| {
        let api = if with_api {
            format!("    api:\n      hosts: [host2]\n      cmd: {HTTPD}\n      ports: [\"{api_port}:80\"]\n")
        } else {
            String::new()
        };
        format!(
            "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  accessories:
    db:
      image: {accessory}
      hosts: [host3]
      cmd: {HTTPD}
      healthcheck: {WEB_HEALTH}
  roles:
    web:
      hosts: [host1]
      cmd: {HTTPD}
      ports: [\"{web_port}:80\"]
{api}"
        )
    };
    ctx.apply("app.yaml", &spec(false));
    ctx.converge(&app, ns).expect(0);
    let db = one(tb, "host3", &app, ns, "accessory/db");
    let web = one(tb, "host1", &app, ns, "role/web");
    assert_eq!(db.health.as_deref(), Some("healthy"));
    assert!(app_containers(tb, "host2", &app).is_empty());

    ctx.apply("app.yaml", &spec(true));
    let since = unix_now();
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.changes(), "create 1, start 1", "{}", r.stdout);
    let db_after = one(tb, "host3", &app, ns, "accessory/db");
    assert_eq!((&db_after.id, &db_after.started), (&db.id, &db.started), "the accessory was touched");
    assert_eq!(db_after.status, "running");
    let web_after = one(tb, "host1", &app, ns, "role/web");
    assert_eq!((&web_after.id, &web_after.started), (&web.id, &web.started), "web was touched");
    let api = one(tb, "host2", &app, ns, "role/api");
    assert_eq!(api.status, "running");
    // What Docker saw: the new container created and started on host2, nothing anywhere else.
    assert_eq!(
        tb.lifecycle_events_since("host2", &format!("berth.app={app}"), since),
        [format!("create {}", api.name), format!("start {}", api.name)]
    );
    for h in ["host1", "host3"] {
        let events = tb.lifecycle_events_since(h, &format!("berth.app={app}"), since);
        assert!(events.is_empty(), "adding a role on host2 caused on {h}: {events:?}");
    }
    assert_eq!(wait_for_http(&addr(tb, "host2"), api_port, "/", "v1", secs(10)).trim(), "v1");

    // Nothing changed since: no Docker call that changes anything.
    let before = snapshot(tb, &app);
    let since = unix_now();
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.actions(), "no changes", "{}", r.stdout);
    assert_eq!(snapshot(tb, &app), before);
    for h in tb.host_names() {
        let events = tb.lifecycle_events_since(h, &format!("berth.app={app}"), since);
        assert!(events.is_empty(), "a converge without changes caused on {h}: {events:?}");
    }
    let plan = ctx.berth(&["plan", &app, "-n", ns]).expect(0);
    assert!(plan.stdout.contains("nothing to do"), "{}", plan.stdout);
    assert_eq!(ctx.status(&app, ns)["phase"], "Ready");

    ctx.delete(&app, ns);
}

// ------------------------------------------------------------------------------------ 3. health gates

/// Roles wait for their accessory's healthcheck: every app container is created after the
/// accessory turned healthy (its ready file appears 4 s after it started).
#[test]
fn roles_are_created_only_after_their_accessory_turned_healthy() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("e2e-gate");
    let ns = "prod";
    let web_port = port();
    let (image, accessory) = (&tb.images.app_v1, &tb.images.accessory);
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply(
        "app.yaml",
        &format!(
            r#"apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  accessories:
    db:
      image: {accessory}
      hosts: [host3]
      cmd: "sleep 4; touch /tmp/ready; trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"
      healthcheck: {{cmd: "test -f /tmp/ready", interval: 1s, retries: 20}}
  roles:
    web:
      hosts: [host1, host2]
      cmd: {HTTPD}
      ports: ["{web_port}:80"]
    jobs:
      hosts: [host1]
      cmd: {IDLE}
      dependsOn: [db]
  rollout:
    healthTimeout: 30s
"#
        ),
    );
    ctx.converge(&app, ns).expect(0);

    let db = one(tb, "host3", &app, ns, "accessory/db");
    assert_eq!(db.health.as_deref(), Some("healthy"));
    let earliest = ts(&db.started) + Duration::from_secs(4);
    // Docker keeps the last five checks: the last failure (before the ready file) and the first
    // success after a failure bound the moment it turned healthy, when they are still in the log.
    let log = db.raw["State"]["Health"]["Log"].as_array().cloned().unwrap_or_default();
    let ok = |e: &Value| e["ExitCode"].as_i64() == Some(0);
    let last_failure = log.iter().filter(|e| !ok(e)).map(|e| ts(e["End"].as_str().unwrap())).max();
    let turned_healthy = log.windows(2).find(|w| !ok(&w[0]) && ok(&w[1])).map(|w| ts(w[1]["End"].as_str().unwrap()));
    let app_containers: Vec<(String, Ctr)> = [("host1", "role/web"), ("host2", "role/web"), ("host1", "role/jobs")]
        .iter()
        .map(|(h, c)| (h.to_string(), one(tb, h, &app, ns, c)))
        .collect();
    for (h, c) in &app_containers {
        let created = ts(&c.created);
        assert!(
            created > earliest,
            "{} on {h} created at {} before {} (accessory start + 4 s)",
            c.name,
            c.created,
            db.started
        );
        if let Some(f) = last_failure {
            assert!(
                created > f,
                "{} on {h} created at {} before a failing accessory check: {log:#?}",
                c.name,
                c.created
            );
        }
        if let Some(t) = turned_healthy {
            assert!(
                created >= t,
                "{} on {h} created at {} before the accessory turned healthy: {log:#?}",
                c.name,
                c.created
            );
        }
        assert_eq!(c.status, "running");
    }
    ctx.delete(&app, ns);
}

/// An accessory that never turns healthy: no app container is created, the status is Blocked and
/// names the accessory, and the one-shot converge exits 4.
#[test]
fn an_accessory_that_never_turns_healthy_blocks_its_roles() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("e2e-block");
    let ns = "prod";
    let web_port = port();
    let (image, accessory) = (&tb.images.app_v1, &tb.images.accessory);
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply(
        "app.yaml",
        &format!(
            r#"apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  accessories:
    db:
      image: {accessory}
      hosts: [host3]
      cmd: {HTTPD}
      healthcheck: {{cmd: "false", interval: 1s, retries: 1}}
  roles:
    web:
      hosts: [host1, host2]
      cmd: {HTTPD}
      ports: ["{web_port}:80"]
  rollout:
    healthTimeout: 5s
"#
        ),
    );
    let r = ctx.converge(&app, ns).expect(4);
    assert!(r.stderr.contains("is Blocked"), "{}", r.stderr);
    let status = ctx.status(&app, ns);
    assert_eq!(status["phase"], "Blocked", "{status:#}");
    let message = status["message"].as_str().unwrap();
    let db = one(tb, "host3", &app, ns, "accessory/db");
    assert!(message.contains(&db.name) && message.contains("role web"), "{message}");
    for h in ["host1", "host2"] {
        let left = app_containers(tb, h, &app);
        assert!(left.is_empty(), "app containers created on {h} although db never turned healthy: {:#?}", names(&left));
    }
    ctx.delete(&app, ns);
}

// ------------------------------------------------------------------------------------ 4. images

/// A host that runs only accessories never pulls the app image, and the converge succeeds.
#[test]
fn a_host_with_only_accessories_never_holds_the_app_image() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("e2e-img");
    let ns = "prod";
    let web_port = port();

    // An app image no other test uses, not on host1 either: host1 pulls it like any other host.
    let (image, image_id) = tb.private_app_image("e2e-app");
    let repo = image.trim_end_matches(":v1").to_string();

    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let spec = format!(
        r#"apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  accessories:
    cache:
      image: {accessory}
      hosts: [host3]
      cmd: {HTTPD}
      healthcheck: {WEB_HEALTH}
  roles:
    web:
      hosts: [host1]
      cmd: {HTTPD}
      ports: ["{web_port}:80"]
"#,
        accessory = tb.images.accessory
    );
    ctx.apply("app.yaml", &spec);
    ctx.converge(&app, ns).expect(0);

    let web = one(tb, "host1", &app, ns, "role/web");
    assert_eq!(web.image_id, image_id, "host1 runs another image");
    assert!(web.config_image.starts_with(&format!("{repo}@sha256:")), "{}", web.config_image);
    assert_eq!(wait_for_http(&addr(tb, "host1"), web_port, "/", "v1", secs(10)).trim(), "v1");
    assert_eq!(one(tb, "host3", &app, ns, "accessory/cache").status, "running");

    let listing = tb.docker_ok(
        "host3",
        &["image", "ls", "--digests", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}} {{.ID}}"],
    );
    assert!(!listing.contains(&repo) && !listing.contains(&image_id), "host3 holds the app image:\n{listing}");
    assert!(!tb.docker("host3", &["image", "inspect", &image_id]).status.success(), "host3 holds {image_id}");

    let status = ctx.status(&app, ns);
    assert_eq!(status["phase"], "Ready", "{status:#}");
    assert_eq!(status["images"][&image].as_str(), Some(web.config_image.as_str()), "{status:#}");

    // Someone forces the image's reference off host1 while web still uses it: a new role there
    // still comes up (berth pulls the pinned image again rather than trusting what web runs).
    tb.docker_ok("host1", &["rmi", "-f", &web.config_image]);
    let with_worker = spec.replace("  roles:\n", &format!("  roles:\n    worker:\n      hosts: [host1]\n      cmd: {HTTPD}\n"));
    ctx.apply("app.yaml", &with_worker);
    ctx.converge(&app, ns).expect(0);
    let worker = one(tb, "host1", &app, ns, "role/worker");
    assert_eq!((worker.status.as_str(), worker.image_id.as_str()), ("running", image_id.as_str()));
    assert_eq!(one(tb, "host1", &app, ns, "role/web").id, web.id, "web was touched");

    ctx.delete(&app, ns);
    let _ = tb.docker("host1", &["rmi", &web.config_image]);
}

// ------------------------------------------------------------------------------------ 5. namespaces

/// One app in staging and in production on one host: both run; a change to production leaves
/// staging's containers alone; once the tag moves in the registry, staging still runs (and a
/// `docker restart` still serves) the image its status pinned, and so does production through a
/// spec change that leaves `image` alone. `berth repin` moves production alone to the new image.
#[test]
fn staging_and_production_on_one_host_stay_apart_and_keep_their_pinned_image() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("e2e-dest");
    let tag = format!("{}/berth-test/app:{}", tb.registry, unique("e2e-tag"));
    let point_tag_at = |source: &str| {
        tb.docker_ok("host1", &["pull", "-q", source]);
        tb.docker_ok("host1", &["tag", source, &tag]);
        tb.docker_ok("host1", &["push", &tag]);
        tb.docker_ok("host1", &["rmi", &tag]);
    };
    point_tag_at(&tb.images.app_v1);
    let (staging_port, production_port) = (port(), port());
    let spec = |ns: &str, port: u16, greeting: &str| {
        format!(
            r#"apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {tag}
  env:
    GREETING: {greeting}
  roles:
    web:
      hosts: [host1]
      cmd: {HTTPD}
      ports: ["{port}:80"]
      healthcheck: {WEB_HEALTH}
"#
        )
    };
    let env_of = |c: &Ctr| -> Vec<String> {
        c.raw["Config"]["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("staging.yaml", &spec("staging", staging_port, "hello-staging"));
    ctx.apply("production.yaml", &spec("production", production_port, "hello-production"));
    ctx.converge(&app, "staging").expect(0);
    ctx.converge(&app, "production").expect(0);
    let host = addr(tb, "host1");
    for p in [staging_port, production_port] {
        assert_eq!(wait_for_http(&host, p, "/", "v1", secs(10)).trim(), "v1");
    }
    let staging = one(tb, "host1", &app, "staging", "role/web");
    let production = one(tb, "host1", &app, "production", "role/web");
    assert!(env_of(&staging).contains(&"GREETING=hello-staging".to_string()));
    assert!(env_of(&production).contains(&"GREETING=hello-production".to_string()));

    // Production changes; staging is not touched.
    ctx.apply("production.yaml", &spec("production", production_port, "bonjour-production"));
    let r = ctx.converge(&app, "production").expect(0);
    assert_eq!(r.changes(), "create 1, remove 1, start 1, stop 1", "{}", r.stdout);
    let production2 = one(tb, "host1", &app, "production", "role/web");
    assert_ne!(production2.id, production.id);
    assert!(env_of(&production2).contains(&"GREETING=bonjour-production".to_string()));
    let staging2 = one(tb, "host1", &app, "staging", "role/web");
    assert_eq!((&staging2.id, &staging2.started), (&staging.id, &staging.started), "staging was touched");

    // The tag moves to v2 in the registry: neither namespace follows it without a spec change.
    point_tag_at(&tb.images.app_v2);
    let pinned = format!("{}/berth-test/app@{}", tb.registry, tb.digests.app_v1);
    for ns in ["staging", "production"] {
        let r = ctx.converge(&app, ns).expect(0);
        assert_eq!(r.actions(), "no changes", "{ns}: {}", r.stdout);
        let status = ctx.status(&app, ns);
        assert_eq!(status["images"][&tag].as_str(), Some(pinned.as_str()), "{ns}: {status:#}");
    }
    assert_eq!(staging.config_image, pinned);
    tb.docker_ok("host1", &["restart", "-t", "1", &staging.id]);
    let staging3 = one(tb, "host1", &app, "staging", "role/web");
    assert_eq!(staging3.id, staging.id);
    assert_ne!(staging3.started, staging.started, "docker restart did not restart");
    assert_eq!(wait_for_http(&host, staging_port, "/", "v", secs(10)).trim(), "v1", "staging left its pinned image");
    assert_eq!(http_body(&host, production_port).as_deref(), Some("v1"));

    // An env change replaces production's container, on the image it already pinned.
    ctx.apply("production.yaml", &spec("production", production_port, "hallo-production"));
    let r = ctx.converge(&app, "production").expect(0);
    assert_eq!(r.changes(), "create 1, remove 1, start 1, stop 1", "{}", r.stdout);
    let production3 = one(tb, "host1", &app, "production", "role/web");
    assert!(env_of(&production3).contains(&"GREETING=hallo-production".to_string()));
    assert_eq!(production3.config_image, pinned, "an env change swapped the image");
    assert_eq!(wait_for_http(&host, production_port, "/", "v", secs(10)).trim(), "v1");

    // `berth repin` resolves production's tag again: it rolls to v2; staging stays on v1.
    let r = ctx.berth(&["repin", &app, "-n", "production"]).expect(0);
    assert!(r.stdout.contains("repin requested"), "{}", r.stdout);
    let r = ctx.converge(&app, "production").expect(0);
    assert_eq!(r.changes(), "create 1, remove 1, start 1, stop 1", "{}", r.stdout);
    let moved = format!("{}/berth-test/app@{}", tb.registry, tb.digests.app_v2);
    let status = ctx.status(&app, "production");
    assert_eq!(status["images"][&tag].as_str(), Some(moved.as_str()), "{status:#}");
    assert_eq!(one(tb, "host1", &app, "production", "role/web").config_image, moved);
    assert_eq!(wait_for_http(&host, production_port, "/", "v2", secs(10)).trim(), "v2");
    let r = ctx.converge(&app, "production").expect(0);
    assert_eq!(r.actions(), "no changes", "a repin is done once: {}", r.stdout);
    assert_eq!(ctx.status(&app, "staging")["images"][&tag].as_str(), Some(pinned.as_str()));
    assert_eq!(http_body(&host, staging_port).as_deref(), Some("v1"));
    // A repin of an app that does not exist names it and exits 3.
    let r = ctx.berth(&["repin", "no-such-app", "-n", "production"]).expect(3);
    assert!(r.stderr.contains("app/no-such-app -n production"), "{}", r.stderr);

    ctx.delete(&app, "staging");
    ctx.delete(&app, "production");
}

// ------------------------------------------------------------------------------------ 6. rollout

/// An env change replaces the containers (healthy, old ones gone). A new version whose
/// healthcheck fails is rolled back on the first host of the batch and the other host is not
/// touched; the status is Degraded with the rollback and the converge exits 4.
#[test]
fn env_change_replaces_and_a_failing_version_rolls_back_on_the_first_host_only() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("e2e-roll");
    let ns = "prod";
    let web_port = port();
    let spec = |image: &str, release: &str, health: &str| {
        format!(
            r#"apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  env:
    RELEASE: "{release}"
  roles:
    web:
      hosts: [host1, host2]
      cmd: {HTTPD}
      ports: ["{web_port}:80"]
      healthcheck: {health}
  rollout:
    maxUnavailable: 1
    healthTimeout: 5s
"#
        )
    };
    let hosts = ["host1", "host2"];
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("app.yaml", &spec(&tb.images.app_v1, "one", WEB_HEALTH));
    ctx.converge(&app, ns).expect(0);
    let first: Vec<Ctr> = hosts.iter().map(|h| one(tb, h, &app, ns, "role/web")).collect();

    ctx.apply("app.yaml", &spec(&tb.images.app_v1, "two", WEB_HEALTH));
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.changes(), "create 2, remove 2, start 2, stop 2", "{}", r.stdout);
    let second: Vec<Ctr> = hosts.iter().map(|h| one(tb, h, &app, ns, "role/web")).collect();
    for ((h, old), new) in hosts.iter().zip(&first).zip(&second) {
        assert_ne!(new.id, old.id, "{h}: not replaced");
        assert_eq!((new.status.as_str(), new.health.as_deref()), ("running", Some("healthy")), "{h}");
        assert!(new.raw["Config"]["Env"].to_string().contains("RELEASE=two"), "{h}");
        assert!(!tb.docker(h, &["inspect", &old.id]).status.success(), "{h}: the old container is still there");
        assert_eq!(wait_for_http(&addr(tb, h), web_port, "/", "v1", secs(10)).trim(), "v1");
    }

    // v2 never turns healthy.
    let failing = r#"{cmd: "false", interval: 1s, retries: 1}"#;
    ctx.apply("app.yaml", &spec(&tb.images.app_v2, "two", failing));
    let r = ctx.converge(&app, ns).expect(4);
    assert!(r.stderr.contains("is Degraded") && r.stderr.contains("rolled back"), "{}", r.stderr);
    let status = ctx.status(&app, ns);
    assert_eq!(status["phase"], "Degraded", "{status:#}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("rolled back")
            && message.contains("on host1")
            && message.contains(&format!("{} restored", second[0].name)),
        "{message}"
    );
    assert!(!message.contains("host2"), "host2 was part of the rollout: {message}");

    let host1 = one(tb, "host1", &app, ns, "role/web");
    assert_eq!(host1.id, second[0].id, "host1 does not run its old container again");
    assert_eq!(host1.status, "running");
    assert_eq!(wait_for_http(&addr(tb, "host1"), web_port, "/", "v1", secs(10)).trim(), "v1");
    let host2 = one(tb, "host2", &app, ns, "role/web");
    assert_eq!((&host2.id, &host2.started), (&second[1].id, &second[1].started), "host2 was touched");
    assert_eq!(http_body(&addr(tb, "host2"), web_port).as_deref(), Some("v1"));

    ctx.delete(&app, ns);
}

// ------------------------------------------------------------------------------------ 7. outage

/// One host's dockerd is down: the other hosts converge (also a change), the status names the
/// down host and its error, and the one-shot exits 4. Once the host is back, converge gives Ready.
#[test]
fn a_down_host_degrades_the_app_while_the_other_hosts_converge() {
    let tb = Testbed::get();
    let ctx = Ctx::new();
    let app = ctx.app("e2e-down");
    let ns = "prod";
    let web_port = port();
    let all = ["host1", "host2", "host3"];
    let spec = |release: &str| {
        format!(
            r#"apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  env:
    RELEASE: "{release}"
  roles:
    web:
      hosts: [host1, host2, host3]
      cmd: {HTTPD}
      ports: ["{web_port}:80"]
  rollout:
    maxUnavailable: 1
"#,
            image = tb.images.app_v1
        )
    };
    let first: Vec<Ctr> = {
        let _up = tb.shared();
        ctx.apply("hosts.yaml", &unix_hosts(tb));
        ctx.apply("app.yaml", &spec("one"));
        ctx.converge(&app, ns).expect(0);
        all.iter().map(|h| one(tb, h, &app, ns, "role/web")).collect()
    };

    let outage = tb.outage("host2");
    let check_down = |status: &Value| {
        assert_eq!(status["phase"], "Degraded", "{status:#}");
        assert!(status["message"].as_str().unwrap().contains("host host2: "), "{status:#}");
        let h2 = &status["hosts"]["host2"];
        assert_eq!(h2["reachable"], false, "{status:#}");
        assert!(h2["error"].as_str().is_some_and(|e| e.starts_with("host host2: connect: ")), "{status:#}");
    };
    // What host1 and host3 run now (another test process may have restarted a host in between).
    let up = ["host1", "host3"];
    let before: Vec<Ctr> = up
        .iter()
        .map(|h| {
            assert!(wait_until(secs(20), || one(tb, h, &app, ns, "role/web").status == "running"), "{h}");
            one(tb, h, &app, ns, "role/web")
        })
        .collect();
    let r = ctx.converge(&app, ns).expect(4);
    assert_eq!(r.actions(), "no changes", "{}", r.stdout);
    assert!(r.stderr.contains("host2"), "{}", r.stderr);
    check_down(&ctx.status(&app, ns));
    for (h, c) in up.iter().zip(&before) {
        let now = one(tb, h, &app, ns, "role/web");
        assert_eq!((&now.id, &now.started), (&c.id, &c.started), "{h} was touched");
    }

    // A change while host2 is down rolls out on the hosts that are up.
    ctx.apply("app.yaml", &spec("two"));
    let r = ctx.converge(&app, ns).expect(4);
    assert_eq!(r.changes(), "create 2, remove 2, start 2, stop 2", "{}", r.stdout);
    check_down(&ctx.status(&app, ns));
    for (h, c) in all.iter().zip(&first).filter(|(h, _)| **h != "host2") {
        let now = one(tb, h, &app, ns, "role/web");
        assert_ne!(now.id, c.id, "{h} was not replaced");
        assert!(now.raw["Config"]["Env"].to_string().contains("RELEASE=two"), "{h}");
        assert_eq!(wait_for_http(&addr(tb, h), web_port, "/", "v1", secs(10)).trim(), "v1");
    }

    // host2 comes back (its old container too, by its restart policy) and catches up.
    drop(outage);
    let _up = tb.shared();
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.changes(), "create 1, remove 1, start 1, stop 1", "{}", r.stdout);
    let status = ctx.status(&app, ns);
    assert_eq!(status["phase"], "Ready", "{status:#}");
    assert_eq!(status["hosts"]["host2"]["reachable"], true);
    let h2 = one(tb, "host2", &app, ns, "role/web");
    assert_ne!(h2.id, first[1].id);
    assert!(h2.raw["Config"]["Env"].to_string().contains("RELEASE=two"));
    assert_eq!(wait_for_http(&addr(tb, "host2"), web_port, "/", "v1", secs(10)).trim(), "v1");

    ctx.delete(&app, ns);
}

// ------------------------------------------------------------------------------------ 8. TLS

/// A host reached over tcp with mutual TLS converges like the others; the same kind of host with a
/// client certificate from another CA, or with plain tcp, is refused with an error naming it.
#[test]
fn a_mutual_tls_host_converges_and_bad_credentials_are_refused_naming_the_host() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let (app, rogue_app) = (ctx.app("e2e-tls"), ctx.app("e2e-rogue"));
    let ns = "prod";
    let (web_port, rogue_port) = (port(), port());
    let tls_host = |name: &str, endpoint: &str, files: &common::testbed::TlsFiles| {
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata:\n  name: {name}\nspec:\n  endpoint: {endpoint}\n  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
            files.ca.display(),
            files.cert.display(),
            files.key.display()
        )
    };
    let app_doc = |name: &str, host: &str, port: u16| {
        format!(
            r#"apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {name}
  namespace: {ns}
spec:
  image: {image}
  roles:
    web:
      hosts: [{host}]
      cmd: {HTTPD}
      ports: ["{port}:80"]
"#,
            image = tb.images.app_v1
        )
    };
    // tls2 is host2's daemon over tcp; rogue3 is host3's, each named by one Host only.
    let (h2, h3) = (tb.host("host2"), tb.host("host3"));
    ctx.apply("tls2.yaml", &tls_host("tls2", &h2.tcp, &tb.client_tls));
    ctx.apply("app.yaml", &app_doc(&app, "tls2", web_port));
    let r = ctx.converge(&app, ns).expect(0);
    assert!(r.stdout.contains("tls2"), "{}", r.stdout);
    let web = one(tb, "host2", &app, ns, "role/web");
    assert_eq!(web.status, "running");
    assert_eq!(wait_for_http(&h2.address, web_port, "/", "v1", secs(10)).trim(), "v1");
    assert_eq!(ctx.status(&app, ns)["hosts"]["tls2"]["reachable"], true);

    // A client certificate from another CA.
    ctx.apply("rogue3.yaml", &tls_host("rogue3", &h3.tcp, &tb.rogue_tls));
    ctx.apply("rogue-app.yaml", &app_doc(&rogue_app, "rogue3", rogue_port));
    let r = ctx.converge(&rogue_app, ns).expect(4);
    assert!(r.stderr.contains("rogue3"), "{}", r.stderr);
    let status = ctx.status(&rogue_app, ns);
    assert_eq!(status["phase"], "Degraded", "{status:#}");
    let error = status["hosts"]["rogue3"]["error"].as_str().unwrap_or_default().to_string();
    eprintln!("rogue certificate: {error}");
    assert!(
        error.starts_with("host rogue3: ") && error.to_lowercase().contains("certificate"),
        "the refusal does not say the certificate was refused: {error:?}"
    );
    assert!(app_containers(tb, "host3", &rogue_app).is_empty());

    // Plain tcp without `insecure: true`: apply refuses it, pointing at the Host's document and
    // field and naming the fix (validation errors are located by file[document], not by name).
    let plain = ctx.file(
        "plain.yaml",
        &format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata:\n  name: plain3\nspec:\n  endpoint: {}\n",
            h3.tcp
        ),
    );
    let r = ctx.berth(&["apply", "-f", &plain]).expect(1);
    assert!(
        r.stderr.contains(&format!("{plain}[0]: spec.endpoint: "))
            && r.stderr.contains("spec.tls or spec.insecure: true"),
        "{}",
        r.stderr
    );
    assert!(!ctx.keys().iter().any(|k| k.ends_with("/hosts/plain3")), "{:?}", ctx.keys());

    // ...and so does the engine, should such a Host reach the store some other way.
    let outcome = block_on(async {
        let store = berth::store::Store::connect(std::slice::from_ref(&tb.etcd), &ctx.prefix).await.unwrap();
        let stored = store.get_app(ns, &rogue_app).await.unwrap().expect("rogue app stored");
        let mut hosts = store.list_hosts().await.unwrap();
        for h in hosts.iter_mut().filter(|h| h.metadata.name == "rogue3") {
            h.spec.tls = None;
            h.spec.insecure = false;
        }
        berth::engine::converge(&store, &berth::docker::HostPool::new(), &stored, &hosts).await.unwrap()
    });
    assert_eq!(outcome.status.phase, berth::engine::Phase::Degraded);
    assert!(outcome.actions.is_empty(), "{:?}", outcome.actions);
    let error = outcome.status.hosts["rogue3"].error.clone().unwrap_or_default();
    assert!(error.starts_with("host rogue3: ") && error.contains("refusing plain tcp"), "{error}");
    eprintln!("plain tcp: {error}");
    assert!(app_containers(tb, "host3", &rogue_app).is_empty());

    // With the right certificate the same Host works: both apps can be deleted through berth.
    ctx.apply("rogue3.yaml", &tls_host("rogue3", &h3.tcp, &tb.client_tls));
    ctx.converge(&rogue_app, ns).expect(0);
    assert_eq!(one(tb, "host3", &rogue_app, ns, "role/web").status, "running");
    ctx.delete(&rogue_app, ns);
    ctx.delete(&app, ns);
}

// ------------------------------------------------------------------------------------ plan, delete

/// `berth plan` changes nothing and never prints env values; deleting an App removes its
/// containers and networks but keeps its named volumes, then its spec and status keys.
#[test]
fn plan_changes_nothing_and_hides_env_values_and_delete_keeps_only_volumes() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("e2e-del");
    let ns = "prod";
    let web_port = port();
    let (secret, new_secret) = (unique("pw-old-s3cr3t"), unique("pw-new-s3cr3t"));
    let spec = |password: &str| {
        format!(
            r#"apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  env:
    DB_PASSWORD: {password}
  accessories:
    db:
      image: {accessory}
      hosts: [host3]
      cmd: {HTTPD}
      env:
        ROOT_PASSWORD: {password}
      volumes: ["data:/data"]
  roles:
    web:
      hosts: [host1]
      cmd: {HTTPD}
      ports: ["{web_port}:80"]
"#,
            image = tb.images.app_v1,
            accessory = tb.images.accessory
        )
    };
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("app.yaml", &spec(&secret));
    ctx.converge(&app, ns).expect(0);
    let before = snapshot(tb, &app);
    assert_eq!(before.len(), 2, "{before:?}");

    let r = ctx.berth(&["plan", &app, "-n", ns]).expect(0);
    assert!(r.stdout.contains("nothing to do"), "{}", r.stdout);
    let changed = ctx.file("changed.yaml", &spec(&new_secret));
    let json = ctx.berth(&["plan", "-f", &changed, "-o", "json"]).expect(0);
    let plan: Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", json.stdout));
    let replaces = json.stdout.matches("\"action\": \"replace\"").count();
    assert_eq!(replaces, 2, "{plan:#}");
    assert!(json.stdout.contains("\"DB_PASSWORD\": \"***\""), "{}", json.stdout);
    let table = ctx.berth(&["plan", "-f", &changed]).expect(0);
    for out in [&json.stdout, &json.stderr, &table.stdout, &table.stderr] {
        assert!(!out.contains(&secret) && !out.contains(&new_secret), "plan printed an env value:\n{out}");
    }
    let status = ctx.berth(&["status", &app, "-n", ns, "-o", "json"]).expect(0);
    assert!(!status.stdout.contains(&secret), "{}", status.stdout);
    assert_eq!(snapshot(tb, &app), before, "plan changed containers");

    let network = format!("berth-{app}-{ns}");
    let volume = format!("{app}-{ns}-data");
    for h in ["host1", "host3"] {
        tb.docker_ok(h, &["network", "inspect", &network]);
    }
    tb.docker_ok("host3", &["volume", "inspect", &volume]);
    let app_key = format!("{}/apps/{ns}/{app}", ctx.prefix);
    let status_key = format!("{}/status/apps/{ns}/{app}", ctx.prefix);
    let keys = ctx.keys();
    assert!(keys.contains(&app_key) && keys.contains(&status_key), "{keys:?}");

    ctx.berth(&["delete", "app", &app, "-n", ns]).expect(0);
    assert_eq!(snapshot(tb, &app), before, "delete alone must not touch containers");
    let r = ctx.converge(&app, ns).expect(0);
    assert!(r.stdout.contains(&format!("app/{app} -n {ns} deleted")), "{}", r.stdout);
    for h in tb.host_names() {
        assert!(app_containers(tb, h, &app).is_empty(), "{h} still has containers of {app}");
        let nets =
            tb.docker_ok(h, &["network", "ls", "--filter", &format!("label=berth.app={app}"), "--format", "{{.Name}}"]);
        assert!(nets.is_empty(), "{h} still has the network: {nets}");
    }
    tb.docker_ok("host3", &["volume", "inspect", &volume]);
    let keys = ctx.keys();
    assert!(!keys.contains(&app_key) && !keys.contains(&status_key), "{keys:?}");
    ctx.berth(&["status", &app, "-n", ns]).expect(3);
}

// ------------------------------------------------------------------- 7b. a host the app never used

/// A Host that is down but that the app neither uses nor used is not the app's trouble: the app stays
/// Ready, and deleting it finishes (its keys go) while that host is still down.
#[test]
fn a_down_host_the_app_never_used_neither_degrades_it_nor_blocks_its_deletion() {
    let tb = Testbed::get();
    let ctx = Ctx::new();
    let app = ctx.app("e2e-elsewhere");
    let ns = "prod";
    let web_port = port();
    let spec = format!(
        r#"apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  roles:
    web:
      hosts: [host1]
      cmd: {HTTPD}
      ports: ["{web_port}:80"]
"#,
        image = tb.images.app_v1
    );
    {
        let _up = tb.shared();
        ctx.apply("hosts.yaml", &unix_hosts(tb));
        ctx.apply("app.yaml", &spec);
        ctx.converge(&app, ns).expect(0);
    }
    let outage = tb.outage("host3");
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.actions(), "no changes", "{}", r.stdout);
    let status = ctx.status(&app, ns);
    assert_eq!(status["phase"], "Ready", "{status:#}");
    assert!(status["hosts"].get("host3").is_none(), "host3 is not this app's business: {status:#}");

    ctx.berth(&["delete", "app", &app, "-n", ns]).expect(0);
    let r = ctx.converge(&app, ns).expect(0);
    assert!(r.stdout.contains(&format!("app/{app} -n {ns} deleted")), "{}", r.stdout);
    assert!(app_containers(tb, "host1", &app).is_empty());
    assert!(ctx.keys().iter().all(|k| !k.contains(&app)), "{:?}", ctx.keys());
    drop(outage);
}

// ------------------------------------------------------------------------------------ 9. ssh

/// An `ssh://` Host (a Kamal-style host reached by SSH only): the engine forwards the host's Docker
/// socket through one ssh session and converges over it; a key the host does not accept is
/// reported on that host with ssh's own words, and nothing runs there.
#[test]
fn an_ssh_host_converges_through_the_forward_and_a_refused_key_is_named() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    let app = ctx.app("e2e-ssh");
    let ns = "prod";
    let web_port = port();
    let sshd = common::sshd::Sshd::start(tb, "host2");
    let h2 = tb.host("host2");
    ctx.apply("ssh2.yaml", &common::specs::host_doc("ssh2", &sshd.endpoint));
    ctx.apply(
        "app.yaml",
        &format!(
            r#"apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  roles:
    web:
      hosts: [ssh2]
      cmd: {HTTPD}
      ports: ["{web_port}:80"]
"#,
            image = tb.images.app_v1
        ),
    );
    let converge = |config: &PathBuf| {
        Run::of(
            berth_cmd()
                .env("BERTH_SSH_CONFIG", config)
                .args(["--etcd", &tb.etcd, "--prefix", &ctx.prefix, "converge", &app, "-n", ns])
                .output()
                .unwrap(),
        )
    };

    let stranger = converge(&sshd.client_config("stranger_key")).expect(4);
    assert!(stranger.stderr.contains("ssh2"), "{}", stranger.stderr);
    let status = ctx.status(&app, ns);
    let error = status["hosts"]["ssh2"]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.starts_with("host ssh2: ssh root@") && error.contains("Permission denied"), "{error:?}\n{}", sshd.log());
    assert!(app_containers(tb, "host2", &app).is_empty());

    let r = converge(&sshd.client_config("client_key"));
    assert_eq!(r.code, Some(0), "{}\n{}\nsshd: {}", r.stdout, r.stderr, sshd.log());
    let web = one(tb, "host2", &app, ns, "role/web");
    assert_eq!(web.status, "running");
    assert_eq!(wait_for_http(&h2.address, web_port, "/", "v1", secs(10)).trim(), "v1");
    assert_eq!(ctx.status(&app, ns)["hosts"]["ssh2"]["reachable"], true);
    let again = converge(&sshd.client_config("client_key")).expect(0);
    assert_eq!(again.actions(), "no changes", "{}", again.stdout);

    ctx.berth(&["delete", "app", &app, "-n", ns]).expect(0);
    let gone = converge(&sshd.client_config("client_key")).expect(0);
    assert!(gone.stdout.contains(&format!("app/{app} -n {ns} deleted")), "{}", gone.stdout);
    assert!(app_containers(tb, "host2", &app).is_empty());
}
