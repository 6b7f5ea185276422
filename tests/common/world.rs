//! One test's world: an etcd (the bed's, or one of the test's own) under a prefix of its own, its
//! spec files in a temp dir, `berth` run against them, and everything it created on the hosts
//! removed when it ends, even when it panics.
//!
//! ```ignore
//! let ctx = Ctx::new("engine");
//! let app = ctx.app("e2e-web");
//! ctx.apply("hosts.yaml", &unix_hosts(tb));
//! ctx.apply("app.yaml", &AppSpec::new(&app, "prod", image).role("web", RoleSpec::on(&["host1"])).yaml());
//! ctx.converge(&app, "prod").expect(0);
//! ```
use std::cell::RefCell;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Client, DeleteOptions, GetOptions};
use serde_json::Value;

use super::run::{berth_at, Run};
use super::testbed::{secs, unique, Testbed};

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// The non-empty lines of a command's stdout, trimmed.
pub fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// Seconds since the epoch, the unit of `docker events --since`.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A Docker (RFC 3339) timestamp.
pub fn ts(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("bad docker timestamp {s:?}: {e}"))
}

pub struct Ctx {
    pub tb: &'static Testbed,
    /// The etcd endpoint every `berth` of this test talks to.
    pub etcd: String,
    pub prefix: String,
    pub dir: tempfile::TempDir,
    /// `docker ps --filter label=…` filters of everything this test created (removed on drop).
    owned: RefCell<Vec<String>>,
    /// Name prefixes of the named volumes this test's apps create (`APP-`; removed on drop).
    volumes: RefCell<Vec<String>>,
}

impl Ctx {
    /// On the bed's etcd; `tag` names the test binary in the prefix (`/berth-TAG-PID-N`).
    pub fn new(tag: &str) -> Ctx {
        Ctx::with_etcd(tag, &Testbed::get().etcd)
    }

    /// On the etcd at `endpoint` (one the test runs itself).
    pub fn with_etcd(tag: &str, endpoint: &str) -> Ctx {
        static N: AtomicU64 = AtomicU64::new(0);
        Ctx {
            tb: Testbed::get(),
            etcd: endpoint.to_string(),
            prefix: format!("/berth-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)),
            dir: tempfile::tempdir().unwrap(),
            owned: RefCell::new(Vec::new()),
            volumes: RefCell::new(Vec::new()),
        }
    }

    /// A unique app name, its containers, networks and named volumes removed when the test ends.
    pub fn app(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.owned.borrow_mut().push(format!("berth.app={name}"));
        self.volumes.borrow_mut().push(format!("{name}-"));
        name
    }

    /// A unique namespace, every container in it removed when the test ends.
    pub fn namespace(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.owned.borrow_mut().push(format!("berth.namespace={name}"));
        name
    }

    /// `berth --etcd … --prefix … ARGS`, with no inherited berth settings.
    pub fn berth(&self, args: &[&str]) -> Run {
        Run::of(berth_at(&self.etcd, &self.prefix, args))
    }

    /// [`Ctx::berth`] with extra environment (`BERTH_SEALING_KEY_FILE`).
    pub fn berth_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = super::run::berth_cmd();
        cmd.envs(env.iter().copied()).args(["--etcd", &self.etcd, "--prefix", &self.prefix]).args(args);
        Run::of(cmd.output().expect("run the berth binary"))
    }

    /// Every key and value under the test's prefix, as text: what `etcdctl get --prefix` shows.
    pub fn dump(&self) -> String {
        let (etcd, root) = (self.etcd.clone(), format!("{}/", self.prefix));
        block_on(async move {
            let mut c = Client::connect([etcd], None).await.unwrap();
            let resp = c.get(root, Some(GetOptions::new().with_prefix())).await.unwrap();
            resp.kvs()
                .iter()
                .map(|kv| format!("{} {}\n", String::from_utf8_lossy(kv.key()), String::from_utf8_lossy(kv.value())))
                .collect()
        })
    }

    /// Writes `text` to the file `name` (which may hold a directory) in the test's temp dir; returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// Writes `text` to `name` and applies it; must succeed.
    pub fn apply(&self, name: &str, text: &str) -> Run {
        let f = self.file(name, text);
        self.berth(&["apply", "-f", &f]).expect(0)
    }

    /// `berth converge APP -n NS` (the exit code is the caller's to check).
    pub fn converge(&self, app: &str, ns: &str) -> Run {
        self.berth(&["converge", app, "-n", ns])
    }

    /// Marks the app deleted and converges it away; the converge must finalize it.
    pub fn delete(&self, app: &str, ns: &str) {
        self.berth(&["delete", "app", app, "-n", ns]).expect(0);
        let r = self.converge(app, ns).expect(0);
        assert!(r.stdout.contains(&format!("app/{app} -n {ns} deleted")), "{}", r.stdout);
    }

    /// `berth status -o json`, or `None` while there is none (or etcd does not answer).
    pub fn status(&self, app: &str, ns: &str) -> Option<Value> {
        let r = self.berth(&["status", app, "-n", ns, "-o", "json"]);
        if r.code != Some(0) {
            return None;
        }
        Some(serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout)))
    }

    /// `berth status -o json` of an app that must have a status now.
    pub fn current_status(&self, app: &str, ns: &str) -> Value {
        let r = self.berth(&["status", app, "-n", ns, "-o", "json"]).expect(0);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
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
                panic!("app/{app} -n {ns} not {what} within {timeout:?}; last status: {}", pretty(&s));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every key under the test's prefix.
    pub fn keys(&self) -> Vec<String> {
        let (etcd, root) = (self.etcd.clone(), format!("{}/", self.prefix));
        block_on(async move {
            let mut c = Client::connect([etcd], None).await.unwrap();
            let resp = c.get(root, Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
            resp.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).to_string()).collect()
        })
    }

    /// Writes `value` at `<prefix>/<rest>` straight into etcd, around berth (a value written by hand).
    pub fn put_raw(&self, rest: &str, value: &str) {
        let (etcd, key, value) = (self.etcd.clone(), format!("{}/{rest}", self.prefix), value.to_string());
        block_on(async move {
            let mut c = Client::connect([etcd], None).await.unwrap();
            c.put(key, value, None).await.unwrap();
        });
    }

    /// The value of the operators' leader key, if any (read straight from etcd).
    pub fn leader_key(&self) -> Option<String> {
        let (etcd, key) = (self.etcd.clone(), format!("{}/leader", self.prefix));
        block_on(async move {
            let mut c = Client::connect([etcd], None).await.unwrap();
            let resp = c.get(key, Some(GetOptions::new().with_prefix())).await.unwrap();
            resp.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).to_string())
        })
    }

    /// `docker ps -a` of `app`'s containers on `host` that also match `filters`
    /// (`label=berth.role=web`), a line each as `format` says (`{{.ID}} {{.Names}}`); the host's
    /// dockerd must answer.
    pub fn ps(&self, host: &str, app: &str, filters: &[&str], format: &str) -> Vec<String> {
        let out =
            self.tb.docker_ok(host, &ps_args(app, filters, format).iter().map(String::as_str).collect::<Vec<_>>());
        out.lines().map(String::from).collect()
    }

    /// [`Ctx::ps`], or `None` while the host's dockerd does not answer (another test may be
    /// restarting it).
    pub fn try_ps(&self, host: &str, app: &str, filters: &[&str], format: &str) -> Option<Vec<String>> {
        let out = self.tb.docker(host, &ps_args(app, filters, format).iter().map(String::as_str).collect::<Vec<_>>());
        out.status.success().then(|| lines(&out))
    }
}

/// The arguments of [`Ctx::ps`].
fn ps_args(app: &str, filters: &[&str], format: &str) -> Vec<String> {
    let mut args = vec!["ps".to_string(), "-a".into(), "--filter".into(), format!("label=berth.app={app}")];
    for f in filters {
        args.extend(["--filter".to_string(), f.to_string()]);
    }
    args.extend(["--format".to_string(), format.to_string()]);
    args
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let (etcd, root) = (self.etcd.clone(), format!("{}/", self.prefix));
        block_on(async move {
            if let Ok(Ok(mut c)) = tokio::time::timeout(secs(5), Client::connect([etcd], None)).await {
                let _ = tokio::time::timeout(secs(5), c.delete(root, Some(DeleteOptions::new().with_prefix()))).await;
            }
        });
        for h in &self.tb.hosts {
            for filter in self.owned.borrow().iter() {
                let label = format!("label={filter}");
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
            for prefix in self.volumes.borrow().iter() {
                let listed =
                    lines(&self.tb.docker(&h.name, &["volume", "ls", "-q", "--filter", &format!("name={prefix}")]));
                for v in listed.iter().filter(|v| v.starts_with(prefix.as_str())) {
                    let _ = self.tb.docker(&h.name, &["volume", "rm", v]);
                }
            }
        }
    }
}

/// A status as pretty JSON, or `(none)`.
pub fn pretty(status: &Option<Value>) -> String {
    match status {
        Some(v) => serde_json::to_string_pretty(v).unwrap(),
        None => "(none)".into(),
    }
}

pub fn ready_at(s: &Value, generation: i64) -> bool {
    s["phase"] == "Ready" && s["observedGeneration"] == generation
}

/// `lastConverged` of a status, in unix seconds.
pub fn last_converged(s: &Value) -> f64 {
    let t = s["lastConverged"].as_str().unwrap_or_else(|| panic!("no lastConverged in {s:#}"));
    ts(t).duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The ids of the containers a status lists on `host`.
pub fn status_ids(s: &Value, host: &str) -> Vec<String> {
    s["hosts"][host]["containers"]
        .as_array()
        .map(|cs| cs.iter().map(|c| c["id"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}
