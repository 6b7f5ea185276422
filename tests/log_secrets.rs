//! Env values never reach the log, even at `BERTH_LOG=trace`: the real `berth operator` on the
//! test bed creates, replaces (env change) and prunes an app whose env holds unique markers, and
//! its whole log (stderr, text) must hold none of them. Dependencies dump Docker request bodies
//! (the create body carries `Env`) at debug, so without the cap on their targets the markers show.
mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use common::ports::free_port;
use common::run::{berth_at, berth_cmd, Run};
use common::specs::unix_hosts;
use common::testbed::{secs, unique, wait_until, Testbed};
use etcd_client::{Client, DeleteOptions};
use serde_json::Value;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// One test's etcd prefix, spec files and app; keys and the app's containers and networks are
/// removed on drop, and the operator is killed.
struct World {
    tb: &'static Testbed,
    prefix: String,
    dir: tempfile::TempDir,
    app: String,
    operator: Option<Child>,
}

impl World {
    fn new(app: &str) -> World {
        let tb = Testbed::get();
        World {
            tb,
            prefix: format!("/{}", unique("berth-logs")),
            dir: tempfile::tempdir().unwrap(),
            app: unique(app),
            operator: None,
        }
    }

    fn berth(&self, args: &[&str]) -> Run {
        Run::of(berth_at(&self.tb.etcd, &self.prefix, args))
    }

    fn apply(&self, text: &str) {
        let file = self.dir.path().join("spec.yaml");
        std::fs::write(&file, text).unwrap();
        self.berth(&["apply", "-f", file.to_str().unwrap()]).expect(0);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("operator.log")
    }

    /// `berth operator` at `BERTH_LOG=log`, stderr to [`World::log_path`].
    fn start_operator(&mut self, log: &str) {
        let child = berth_cmd()
            .env("BERTH_LOG", log)
            .env("NO_COLOR", "1")
            .args(["--etcd", &self.tb.etcd, "--prefix", &self.prefix, "operator"])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(self.log_path()).unwrap())
            .spawn()
            .expect("spawn berth operator");
        self.operator = Some(child);
    }

    /// SIGTERM, then the exit (the log is complete only then).
    fn stop_operator(&mut self) {
        let mut child = self.operator.take().expect("an operator runs");
        let pid = child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-s", "TERM", &pid]).status().unwrap().success());
        let status = child.wait().unwrap();
        assert!(status.success(), "operator exited with {status}");
    }

    fn status(&self, ns: &str) -> Option<Value> {
        let r = self.berth(&["status", &self.app, "-n", ns, "-o", "json"]);
        (r.code == Some(0)).then(|| serde_json::from_str(&r.stdout).unwrap())
    }

    fn wait_ready(&self, ns: &str, generation: i64) {
        let ready = |s: &Value| s["phase"] == "Ready" && s["observedGeneration"] == generation;
        assert!(
            wait_until(secs(120), || self.status(ns).is_some_and(|s| ready(&s))),
            "app/{} not Ready at generation {generation}: {:?}\n{}",
            self.app,
            self.status(ns),
            std::fs::read_to_string(self.log_path()).unwrap_or_default()
        );
    }

    /// Ids of the app's containers on `host`.
    fn ids(&self, host: &str) -> Vec<String> {
        let label = format!("label=berth.app={}", self.app);
        self.tb.docker_ok(host, &["ps", "-aq", "--filter", &label]).split_whitespace().map(String::from).collect()
    }

    /// Env of the app's containers on `host`, one `KEY=value` list per container.
    fn envs(&self, host: &str) -> Vec<Vec<String>> {
        self.ids(host)
            .iter()
            .map(|id| {
                let env = self.tb.docker_ok(host, &["inspect", "-f", "{{json .Config.Env}}", id]);
                serde_json::from_str(env.trim()).unwrap()
            })
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let (etcd, root) = (self.tb.etcd.clone(), format!("{}/", self.prefix));
        block_on(async move {
            if let Ok(mut c) = Client::connect([etcd], None).await {
                let _ = c.delete(root, Some(DeleteOptions::new().with_prefix())).await;
            }
        });
        let label = format!("label=berth.app={}", self.app);
        for h in &self.tb.hosts {
            for id in String::from_utf8_lossy(&self.tb.docker(&h.name, &["ps", "-aq", "--filter", &label]).stdout)
                .split_whitespace()
            {
                let _ = self.tb.docker(&h.name, &["rm", "-f", id]);
            }
            for n in
                String::from_utf8_lossy(&self.tb.docker(&h.name, &["network", "ls", "-q", "--filter", &label]).stdout)
                    .split_whitespace()
            {
                let _ = self.tb.docker(&h.name, &["network", "rm", n]);
            }
        }
    }
}

/// An App whose env (app-wide and the role's own) holds `secret`, one idle role on `hosts`.
fn app_doc(tb: &Testbed, app: &str, ns: &str, hosts: &str, secret: &str) -> String {
    let image = &tb.images.app_v1;
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata: {{name: {app}, namespace: {ns}}}
spec:
  image: {image}
  env: {{API_TOKEN: app-{secret}}}
  roles:
    web:
      hosts: [{hosts}]
      env: {{DB_PASSWORD: role-{secret}}}
      cmd: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]
"
    )
}

#[test]
fn trace_logs_of_a_create_a_replace_and_a_prune_hold_no_env_value() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let mut w = World::new("logsecret");
    let ns = "prod";
    let (first, second) = (unique("s3cr3t-first"), unique("s3cr3t-second"));
    w.apply(&unix_hosts(tb));
    w.start_operator("trace");

    // Create on two hosts.
    w.apply(&app_doc(tb, &w.app, ns, "host1, host2", &first));
    w.wait_ready(ns, 1);
    assert!(w.envs("host2").iter().all(|e| e.contains(&format!("DB_PASSWORD=role-{first}"))), "{:?}", w.envs("host2"));
    // Replace: a new env value rolls both containers.
    w.apply(&app_doc(tb, &w.app, ns, "host1, host2", &second));
    w.wait_ready(ns, 2);
    assert_eq!(w.envs("host1").len(), 1);
    assert!(w.envs("host1")[0].contains(&format!("API_TOKEN=app-{second}")), "{:?}", w.envs("host1"));
    // Prune: host2 leaves the role, then the whole app is deleted.
    w.apply(&app_doc(tb, &w.app, ns, "host1", &second));
    w.wait_ready(ns, 3);
    assert!(w.ids("host2").is_empty(), "host2 still runs {:?}", w.ids("host2"));
    w.berth(&["delete", "app", &w.app, "-n", ns]).expect(0);
    assert!(wait_until(secs(60), || w.ids("host1").is_empty()), "the deleted app still runs on host1");
    w.stop_operator();

    let log = std::fs::read_to_string(w.log_path()).unwrap();
    // The log must be worth searching: berth's own trace lines, the creates among them.
    let trace_lines = log.lines().filter(|l| l.contains("TRACE") && l.contains("berth::")).count();
    let creates = log.lines().filter(|l| l.contains("TRACE") && l.contains("op=\"create")).count();
    assert!(
        trace_lines > 20 && creates >= 3,
        "a thin trace log ({trace_lines} trace lines, {creates} creates):\n{log}"
    );
    for secret in [&first, &second] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret.as_str())).collect();
        assert!(leaks.is_empty(), "{} log line(s) hold an env value, e.g.:\n{}", leaks.len(), leaks[0]);
    }
}
