//! A value written around berth (straight into etcd) under a Host or App key stops nothing: `apply`,
//! `get` and `delete host` skip it with one warning naming the key, and every cross-resource check
//! treats it as unknown. Real etcd (the test bed's), one key prefix per test.
mod common;

use common::run::{berth_at, Run};
use common::specs::host_doc;
use common::testbed::{unique, Testbed};
use etcd_client::{Client, DeleteOptions};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// A test's etcd prefix, every key under it removed on drop.
struct Prefix {
    etcd: String,
    path: String,
    dir: tempfile::TempDir,
}

impl Prefix {
    fn new() -> Prefix {
        let path = format!("/{}", unique("berth-corrupt"));
        Prefix { etcd: Testbed::get().etcd.clone(), path, dir: tempfile::tempdir().unwrap() }
    }

    /// Puts `value` at `<prefix>/<rest>` with the etcd client, as another tool would.
    fn put_raw(&self, rest: &str, value: &str) -> String {
        let key = format!("{}/{rest}", self.path);
        let (etcd, k, v) = (self.etcd.clone(), key.clone(), value.to_string());
        block_on(async move { Client::connect([etcd], None).await.unwrap().put(k, v, None).await.unwrap() });
        key
    }

    fn berth(&self, args: &[&str]) -> Run {
        Run::of_user_input(berth_at(&self.etcd, &self.path, args))
    }

    fn apply(&self, name: &str, text: &str) -> Run {
        let file = self.dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        self.berth(&["apply", "-f", file.to_str().unwrap()])
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let (etcd, root) = (self.etcd.clone(), format!("{}/", self.path));
        block_on(async move {
            if let Ok(mut c) = Client::connect([etcd], None).await {
                let _ = c.delete(root, Some(DeleteOptions::new().with_prefix())).await;
            }
        });
    }
}

fn app_doc(name: &str, hosts: &str, port: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: {name}}}\n\
         spec: {{image: reg.local/web:1, roles: {{web: {{hosts: [{hosts}], ports: [\"{port}\"]}}}}}}\n"
    )
}

/// Asserts `stderr` warns once about `key`, and never shows what is stored there.
fn warns_about(r: &Run, key: &str) {
    let warning = format!("warning: skipping {key}: ");
    assert_eq!(r.stderr.matches(&warning).count(), 1, "no single warning naming {key}:\n{}", r.stderr);
    assert!(!r.stderr.contains("s3cr3t"), "a stored value leaked into a warning:\n{}", r.stderr);
}

#[test]
fn corrupt_host_and_app_keys_are_skipped_with_a_warning_and_stop_nothing() {
    let p = Prefix::new();
    let bad_host = p.put_raw("hosts/bad", "[]");
    let bad_app = p.put_raw("apps/default/bad", r#"{"kind": "App"}"#);
    // A value serde would quote in its message: the warning must not repeat it.
    let leaky = p.put_raw(
        "apps/prod/leaky",
        r#"{"apiVersion": "berth.dev/v1alpha1", "kind": "App", "metadata": {"name": "leaky"},
            "spec": {"image": "i", "roles": {"web": {"hosts": ["h1"], "cpus": "s3cr3t"}}}}"#,
    );

    // Unrelated resources apply, in one batch.
    let docs = format!(
        "{}---\n{}---\n{}",
        host_doc("h1", "unix:///run/h1.sock"),
        host_doc("h2", "unix:///run/h2.sock"),
        app_doc("web", "h1", "8080:80")
    );
    let r = p.apply("batch.yaml", &docs).expect(0);
    assert!(r.stdout.contains("host/h1 created") && r.stdout.contains("app/web -n default created"), "{}", r.stdout);
    for key in [&bad_host, &bad_app, &leaky] {
        warns_about(&r, key);
    }

    // `get` lists the readable ones and names the others.
    let r = p.berth(&["get", "hosts"]).expect(0);
    assert!(r.stdout.contains("h1") && r.stdout.contains("h2") && !r.stdout.contains("bad"), "{}", r.stdout);
    warns_about(&r, &bad_host);
    let r = p.berth(&["get", "apps", "-o", "json"]).expect(0);
    let apps: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    let names: Vec<&str> = apps.as_array().unwrap().iter().map(|a| a["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web"], "{}", r.stdout);
    warns_about(&r, &bad_app);
    warns_about(&r, &leaky);

    // The unreadable Host is no Host: an App naming it is refused as it would be without the key.
    let r = p.apply("on-bad.yaml", &app_doc("other", "bad", "9090:80")).expect(1);
    assert!(
        r.stderr.contains("spec.roles.web.hosts[0]: host \"bad\" is not defined by any Host resource"),
        "{}",
        r.stderr
    );
    // The other checks still hold: a port web publishes on h1 is refused for another App.
    let r = p.apply("clash.yaml", &app_doc("other", "h1", "8080:80")).expect(1);
    assert!(r.stderr.contains("already published by app/web -n default"), "{}", r.stderr);

    // An unreadable App holds no Host: an unused Host can still be deleted.
    let r = p.berth(&["delete", "host", "h2"]).expect(0);
    assert_eq!(r.stdout, "host/h2 deleted\n");
    warns_about(&r, &bad_app);
}
