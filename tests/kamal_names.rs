//! Kamal's role names converge: an App with role `web_new` and accessory `db_main` (underscores,
//! as Kamal users name them) runs on a real test-bed host through `berth converge`, with those
//! names in its container names, labels and network aliases, and converges to nothing to do.
mod common;

use common::run::{berth_at, Run};
use common::specs::host_doc;
use common::testbed::{unique, Testbed};
use etcd_client::{Client, DeleteOptions};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// One test's etcd prefix and app; keys, containers and networks are removed on drop.
struct World {
    tb: &'static Testbed,
    prefix: String,
    dir: tempfile::TempDir,
    app: String,
}

impl World {
    fn berth(&self, args: &[&str]) -> Run {
        Run::of(berth_at(&self.tb.etcd, &self.prefix, args))
    }

    /// `docker ps` of this app's containers on `host` with `filter` (e.g. `label=berth.role=web_new`).
    fn containers(&self, host: &str, filter: &str) -> Vec<String> {
        let app = format!("label=berth.app={}", self.app);
        let out = self
            .tb
            .docker_ok(host, &["ps", "-a", "--filter", &app, "--filter", filter, "--format", "{{.ID}} {{.Names}}"]);
        out.lines().map(String::from).collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let (etcd, root) = (self.tb.etcd.clone(), format!("{}/", self.prefix));
        block_on(async move {
            if let Ok(mut c) = Client::connect([etcd], None).await {
                let _ = c.delete(root, Some(DeleteOptions::new().with_prefix())).await;
            }
        });
        let label = format!("label=berth.app={}", self.app);
        let host = &self.tb.hosts[0].name;
        for id in
            String::from_utf8_lossy(&self.tb.docker(host, &["ps", "-aq", "--filter", &label]).stdout).split_whitespace()
        {
            let _ = self.tb.docker(host, &["rm", "-f", id]);
        }
        for n in String::from_utf8_lossy(&self.tb.docker(host, &["network", "ls", "-q", "--filter", &label]).stdout)
            .split_whitespace()
        {
            let _ = self.tb.docker(host, &["network", "rm", n]);
        }
    }
}

#[test]
fn a_role_named_web_new_and_an_accessory_named_db_main_converge_on_a_real_host() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let w = World {
        tb,
        prefix: format!("/{}", unique("berth-kamal")),
        dir: tempfile::tempdir().unwrap(),
        app: unique("kamal"),
    };
    let host = &tb.hosts[0];
    let spec = format!(
        "{}---
apiVersion: berth.dev/v1alpha1
kind: App
metadata: {{name: {app}}}
spec:
  image: {image}
  accessories:
    db_main: {{image: {accessory}, hosts: [{h}]}}
  roles:
    web_new:
      hosts: [{h}]
      dependsOn: [db_main]
      cmd: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]
",
        host_doc(&host.name, &host.unix),
        app = w.app,
        image = tb.images.app_v1,
        accessory = tb.images.accessory,
        h = host.name,
    );
    let file = w.dir.path().join("kamal.yaml");
    std::fs::write(&file, spec).unwrap();
    let file = file.to_str().unwrap();
    w.berth(&["validate", "-f", file]).expect(0);
    w.berth(&["apply", "-f", file]).expect(0);

    let r = w.berth(&["converge", &w.app]).expect(0);
    assert_eq!(r.changes(), "create 2, start 2", "{}", r.stdout);
    let web = w.containers(&host.name, "label=berth.role=web_new");
    let db = w.containers(&host.name, "label=berth.accessory=db_main");
    assert_eq!((web.len(), db.len()), (1, 1), "web_new: {web:?}, db_main: {db:?}");
    let (web_id, web_name) = web[0].split_once(' ').unwrap();
    assert!(web_name.starts_with(&format!("{}-default-web_new-", w.app)), "{web_name}");
    // The accessory answers under its own name on the app network (busybox's own resolver: the
    // image's static wget cannot resolve names, so it is given the address).
    let answer = tb.docker_ok(&host.name, &["exec", web_id, "busybox", "nslookup", "db_main", "127.0.0.11"]);
    let ip = answer.lines().filter_map(|l| l.strip_prefix("Address: ")).next_back();
    let ip = ip.unwrap_or_else(|| panic!("db_main does not resolve:\n{answer}")).trim().to_string();
    let got = tb.docker_ok(&host.name, &["exec", web_id, "wget", "-q", "-O", "-", &format!("http://{ip}/")]);
    assert_eq!(got.trim(), "accessory", "db_main at {ip}");

    let r = w.berth(&["converge", &w.app]).expect(0);
    assert_eq!(r.actions(), "no changes", "{}", r.stdout);

    w.berth(&["delete", "app", &w.app]).expect(0);
    let r = w.berth(&["converge", &w.app]).expect(0);
    assert!(r.stdout.contains("deleted"), "{}", r.stdout);
    assert!(w.containers(&host.name, "label=berth.managed-by=berth").is_empty());
}
