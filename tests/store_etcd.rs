//! The store against the real etcd of the test bed: apply/get/delete semantics, the documented
//! key layout (read back raw with `etcd_client`), `--prefix`, and no lost update when several
//! `berth apply` processes race on one App.
//!
//! Every test works under its own key prefix (`/berth-test-PID-N`), removed when the test ends,
//! so tests sharing the bed's etcd never see each other's keys.
mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};

use berth::spec::{parse_str, App, Resource};
use berth::store::{ApplyOutcome, Store, StoreError};
use common::run::berth;
use common::specs::{self, app_doc};
use common::testbed::Testbed;
use etcd_client::{Client, GetOptions};
use serde_json::Value;

// ------------------------------------------------------------------------------------ helpers

/// A key prefix no other test (here or in another test binary) uses; its keys are deleted on drop.
struct Prefix {
    path: String,
    etcd: String,
}

impl Prefix {
    fn new() -> Prefix {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = format!("/berth-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        Prefix { path, etcd: Testbed::get().etcd.clone() }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        // Drop may run inside a tokio runtime: clean up from a thread with a runtime of its own.
        let (etcd, root) = (self.etcd.clone(), format!("{}/", self.path));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut c) = Client::connect([etcd], None).await {
                    let _ = c.delete(root, Some(etcd_client::DeleteOptions::new().with_prefix())).await;
                }
            });
        })
        .join();
    }
}

async fn store(prefix: &Prefix) -> Store {
    Store::connect(std::slice::from_ref(&prefix.etcd), &prefix.path).await.expect("the test bed's etcd answers")
}

async fn raw_client() -> Client {
    Client::connect([Testbed::get().etcd.clone()], None).await.expect("raw etcd client")
}

/// The value stored at exactly `key`, parsed as JSON, with its mod_revision.
async fn raw_get(key: &str) -> Option<(Value, i64)> {
    let mut c = raw_client().await;
    let resp = c.get(key, None).await.expect("raw get");
    resp.kvs().first().map(|kv| {
        let v: Value = serde_json::from_slice(kv.value())
            .unwrap_or_else(|e| panic!("{key} does not hold JSON ({e}): {:?}", String::from_utf8_lossy(kv.value())));
        (v, kv.mod_revision())
    })
}

/// Every key under `prefix/`.
async fn raw_keys(prefix: &str) -> BTreeSet<String> {
    let mut c = raw_client().await;
    let resp =
        c.get(format!("{prefix}/"), Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("raw list");
    resp.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).to_string()).collect()
}

fn host_doc(name: &str) -> String {
    specs::host_doc(name, &format!("unix:///tmp/berth-store-test/{name}.sock"))
}

fn one(text: &str) -> Resource {
    let mut v = parse_str("test.yaml", text).unwrap_or_else(|e| panic!("test spec does not parse: {e}\n{text}"));
    assert_eq!(v.len(), 1, "{text}");
    v.remove(0)
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked") && !stderr.contains("stack backtrace"), "berth panicked:\n{stderr}");
}

// ------------------------------------------------------------------------------------ apply

/// created → unchanged (no write at all) → configured with generation 2 when the spec changes;
/// metadata-only changes are `configured` but keep the generation; the file's generation is ignored.
#[tokio::test]
async fn apply_created_unchanged_configured_and_generation() {
    let p = Prefix::new();
    let s = store(&p).await;
    let host_key = format!("{}/hosts/h1", p.path);
    let app_key = format!("{}/apps/prod/web", p.path);

    assert_eq!(s.apply(&one(&host_doc("h1")), false).await.unwrap(), ApplyOutcome::Created);
    let v1 = app_doc("web", "prod", "reg.local/web:1", "h1", "8080:80", "");
    assert_eq!(s.apply(&one(&v1), false).await.unwrap(), ApplyOutcome::Created);

    // Documented layout, JSON values, nothing else written under the prefix.
    assert_eq!(raw_keys(&p.path).await, BTreeSet::from([host_key.clone(), app_key.clone()]));
    let (host, _) = raw_get(&host_key).await.expect("host key");
    assert_eq!(host["kind"], "Host");
    assert_eq!(host["metadata"]["name"], "h1");
    assert_eq!(host["metadata"]["generation"], 1);
    assert_eq!(host["spec"]["endpoint"], "unix:///tmp/berth-store-test/h1.sock");
    let (app, rev1) = raw_get(&app_key).await.expect("app key");
    assert_eq!(app["apiVersion"], "berth.dev/v1alpha1");
    assert_eq!(app["kind"], "App");
    assert_eq!(app["metadata"]["name"], "web");
    assert_eq!(app["metadata"]["namespace"], "prod");
    assert_eq!(app["metadata"]["generation"], 1);
    assert!(app["metadata"].get("deletionTimestamp").is_none(), "{app}");
    assert_eq!(app["spec"]["image"], "reg.local/web:1");
    assert_eq!(app["spec"]["roles"]["web"]["ports"][0], "8080:80");

    // Identical re-apply: unchanged, and no write (the key's mod_revision stays).
    assert_eq!(s.apply(&one(&v1), false).await.unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(s.apply(&one(&host_doc("h1")), false).await.unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(raw_get(&app_key).await.unwrap().1, rev1, "an unchanged apply must not write");

    // Spec change: configured, generation 2, written.
    let v2 = app_doc("web", "prod", "reg.local/web:2", "h1", "8080:80", "");
    assert_eq!(s.apply(&one(&v2), false).await.unwrap(), ApplyOutcome::Configured);
    let (app, rev2) = raw_get(&app_key).await.unwrap();
    assert!(rev2 > rev1);
    assert_eq!(app["metadata"]["generation"], 2);
    assert_eq!(app["spec"]["image"], "reg.local/web:2");

    // Labels only: configured, generation stays 2.
    let v2_labels = app_doc("web", "prod", "reg.local/web:2", "h1", "8080:80", "  labels:\n    team: a\n");
    assert_eq!(s.apply(&one(&v2_labels), false).await.unwrap(), ApplyOutcome::Configured);
    let (app, rev3) = raw_get(&app_key).await.unwrap();
    assert!(rev3 > rev2);
    assert_eq!(app["metadata"]["generation"], 2);
    assert_eq!(app["metadata"]["labels"]["team"], "a");

    // Annotations only: configured, generation stays 2.
    let v2_ann = app_doc(
        "web",
        "prod",
        "reg.local/web:2",
        "h1",
        "8080:80",
        "  labels:\n    team: a\n  annotations:\n    note: hi\n",
    );
    assert_eq!(s.apply(&one(&v2_ann), false).await.unwrap(), ApplyOutcome::Configured);
    let (app, _) = raw_get(&app_key).await.unwrap();
    assert_eq!(app["metadata"]["generation"], 2);
    assert_eq!(app["metadata"]["annotations"]["note"], "hi");

    // The user's `generation` is ignored: same spec with generation 99 is unchanged...
    let v2_gen = app_doc(
        "web",
        "prod",
        "reg.local/web:2",
        "h1",
        "8080:80",
        "  labels:\n    team: a\n  annotations:\n    note: hi\n  generation: 99\n",
    );
    let rev4 = raw_get(&app_key).await.unwrap().1;
    assert_eq!(s.apply(&one(&v2_gen), false).await.unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(raw_get(&app_key).await.unwrap().1, rev4);
    // ...a spec change with generation 99 becomes generation 3...
    let v3_gen = app_doc("web", "prod", "reg.local/web:3", "h1", "8080:80", "  generation: 99\n");
    assert_eq!(s.apply(&one(&v3_gen), false).await.unwrap(), ApplyOutcome::Configured);
    assert_eq!(raw_get(&app_key).await.unwrap().0["metadata"]["generation"], 3);
    // ...and a new App created with generation 7 starts at 1.
    let other = app_doc("other", "prod", "reg.local/web:3", "h1", "9090:80", "  generation: 7\n");
    assert_eq!(s.apply(&one(&other), false).await.unwrap(), ApplyOutcome::Created);
    assert_eq!(raw_get(&format!("{}/apps/prod/other", p.path)).await.unwrap().0["metadata"]["generation"], 1);

    // Hosts follow the same rules.
    let h1_moved = host_doc("h1").replace("h1.sock", "h1-new.sock");
    assert_eq!(s.apply(&one(&h1_moved), false).await.unwrap(), ApplyOutcome::Configured);
    assert_eq!(raw_get(&host_key).await.unwrap().0["metadata"]["generation"], 2);

    // The store reads back what it wrote.
    let got = s.get_app("prod", "web").await.unwrap().expect("stored app");
    assert_eq!(got.value.spec.image, "reg.local/web:3");
    assert_eq!(got.value.metadata.generation, Some(3));
    let apps = s.list_apps(Some("prod")).await.unwrap();
    let names: BTreeSet<_> = apps.iter().map(|a| a.metadata.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["other", "web"]));
    assert!(s.list_apps(Some("staging")).await.unwrap().is_empty());
    assert_eq!(s.list_hosts().await.unwrap().len(), 1);
}

/// Dry runs report the outcome without writing anything.
#[tokio::test]
async fn dry_run_writes_nothing() {
    let p = Prefix::new();
    let s = store(&p).await;
    assert_eq!(s.apply(&one(&host_doc("h1")), true).await.unwrap(), ApplyOutcome::Created);
    assert!(raw_keys(&p.path).await.is_empty());
    s.apply(&one(&host_doc("h1")), false).await.unwrap();
    let (_, rev) = raw_get(&format!("{}/hosts/h1", p.path)).await.unwrap();
    let moved = host_doc("h1").replace("h1.sock", "elsewhere.sock");
    assert_eq!(s.apply(&one(&moved), true).await.unwrap(), ApplyOutcome::Configured);
    let (host, rev_after) = raw_get(&format!("{}/hosts/h1", p.path)).await.unwrap();
    assert_eq!(rev_after, rev);
    assert_eq!(host["spec"]["endpoint"], "unix:///tmp/berth-store-test/h1.sock");
}

/// `deletionTimestamp` belongs to the store: one written in a user's file neither marks an App for
/// deletion on create nor on update.
#[tokio::test]
async fn deletion_timestamp_in_the_file_is_ignored() {
    let p = Prefix::new();
    let s = store(&p).await;
    let key = format!("{}/apps/default/web", p.path);
    s.apply(&one(&host_doc("h1")), false).await.unwrap();
    let marked = "  deletionTimestamp: \"2020-01-01T00:00:00Z\"\n";
    let doc = app_doc("web", "default", "reg.local/web:1", "h1", "8080:80", marked);
    assert_eq!(s.apply(&one(&doc), false).await.unwrap(), ApplyOutcome::Created);
    assert!(raw_get(&key).await.unwrap().0["metadata"].get("deletionTimestamp").is_none());
    let doc2 = app_doc("web", "default", "reg.local/web:2", "h1", "8080:80", marked);
    assert_eq!(s.apply(&one(&doc2), false).await.unwrap(), ApplyOutcome::Configured);
    let (app, _) = raw_get(&key).await.unwrap();
    assert!(app["metadata"].get("deletionTimestamp").is_none(), "apply marked the app for deletion: {app}");
    let plain = app_doc("web", "default", "reg.local/web:2", "h1", "8080:80", "");
    assert_eq!(s.apply(&one(&plain), false).await.unwrap(), ApplyOutcome::Unchanged);
}

/// A batch is written in one transaction: its keys share one revision, and a batch in which one App
/// is refused (being deleted) writes nothing at all, not even the Host listed before it.
#[tokio::test]
async fn a_batch_is_all_or_nothing() {
    let p = Prefix::new();
    let s = store(&p).await;
    let batch = [
        one(&host_doc("h1")),
        one(&host_doc("h2")),
        one(&app_doc("web", "default", "reg.local/web:1", "h1", "8080:80", "")),
        one(&app_doc("jobs", "default", "reg.local/web:1", "h2", "8081:80", "")),
    ];
    let outcomes = s.apply_all(&batch, false).await.unwrap();
    assert_eq!(outcomes, vec![ApplyOutcome::Created; 4]);
    let mut revisions = BTreeSet::new();
    for key in ["hosts/h1", "hosts/h2", "apps/default/web", "apps/default/jobs"] {
        revisions.insert(raw_get(&format!("{}/{key}", p.path)).await.unwrap().1);
    }
    assert_eq!(revisions.len(), 1, "the batch took several transactions: {revisions:?}");
    assert_eq!(s.apply_all(&batch, false).await.unwrap(), vec![ApplyOutcome::Unchanged; 4]);

    s.delete_app("default", "jobs").await.unwrap();
    let before = raw_keys(&p.path).await;
    let refused = [one(&host_doc("h3")), one(&app_doc("jobs", "default", "reg.local/web:2", "h2", "8081:80", ""))];
    match s.apply_all(&refused, false).await {
        Err(e @ StoreError::BeingDeleted { .. }) => {
            let m = e.to_string();
            assert!(m.starts_with("app/jobs -n default: it is being deleted"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(raw_keys(&p.path).await, before, "a refused batch wrote part of itself");
}

/// `berth repin` sets the repin annotation without touching the spec or the generation; a GitOps
/// re-apply of a file without it keeps it (writing nothing), a file that sets it wins, and a repin
/// of a missing App is NotFound.
#[tokio::test]
async fn repin_request_survives_a_reapply_and_keeps_the_generation() {
    let p = Prefix::new();
    let s = store(&p).await;
    let key = format!("{}/apps/default/web", p.path);
    s.apply(&one(&host_doc("h1")), false).await.unwrap();
    let doc = app_doc("web", "default", "reg.local/web:1", "h1", "8080:80", "");
    s.apply(&one(&doc), false).await.unwrap();
    let first = s.request_repin("default", "web").await.unwrap();
    let second = s.request_repin("default", "web").await.unwrap();
    assert_ne!(first, second, "two requests must be told apart");
    let (app, rev) = raw_get(&key).await.unwrap();
    assert_eq!(app["metadata"]["annotations"]["berth.dev/repin-requested-at"], second.as_str());
    assert_eq!(app["metadata"]["generation"], 1, "a repin is not a spec change: {app}");

    assert_eq!(s.apply(&one(&doc), false).await.unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(raw_get(&key).await.unwrap().1, rev, "a re-apply of the same file wrote");
    let changed = app_doc("web", "default", "reg.local/web:2", "h1", "8080:80", "");
    assert_eq!(s.apply(&one(&changed), false).await.unwrap(), ApplyOutcome::Configured);
    let (app, _) = raw_get(&key).await.unwrap();
    assert_eq!(app["metadata"]["annotations"]["berth.dev/repin-requested-at"], second.as_str(), "{app}");
    assert_eq!(app["metadata"]["generation"], 2);

    let own = "  annotations: {berth.dev/repin-requested-at: from-git}\n";
    let pinned = app_doc("web", "default", "reg.local/web:2", "h1", "8080:80", own);
    assert_eq!(s.apply(&one(&pinned), false).await.unwrap(), ApplyOutcome::Configured);
    assert_eq!(raw_get(&key).await.unwrap().0["metadata"]["annotations"]["berth.dev/repin-requested-at"], "from-git");

    assert!(
        matches!(s.request_repin("default", "nope").await, Err(StoreError::NotFound(m)) if m == "app/nope -n default")
    );
}

// ------------------------------------------------------------------------------------ prefix

/// `--prefix` moves every key: the same resources under two prefixes are independent.
#[test]
fn prefix_changes_the_root() {
    let tb = Testbed::get();
    let (a, b) = (Prefix::new(), Prefix::new());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.yaml");
    let doc = format!("{}---\n{}", host_doc("h1"), app_doc("web", "prod", "reg.local/web:1", "h1", "8080:80", ""));
    std::fs::write(&file, doc).unwrap();
    let file = file.to_str().unwrap();
    for p in [&a, &b] {
        let out = berth(&["--etcd", &tb.etcd, "--prefix", &p.path, "apply", "-f", file]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stdout, "host/h1 created\napp/web -n prod created\n", "each prefix is a fresh root");
    }
    // A trailing slash names the same root.
    let out = berth(&["--etcd", &tb.etcd, "--prefix", &format!("{}/", a.path), "apply", "-f", file]);
    assert_eq!(text(&out).0, "host/h1 unchanged\napp/web -n prod unchanged\n", "{}", text(&out).1);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for p in [&a, &b] {
            assert_eq!(
                raw_keys(&p.path).await,
                BTreeSet::from([format!("{}/hosts/h1", p.path), format!("{}/apps/prod/web", p.path)])
            );
        }
    });
    // Deleting under one prefix leaves the other alone.
    let out = berth(&["--etcd", &tb.etcd, "--prefix", &a.path, "delete", "app", "web", "-n", "prod"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let out = berth(&["--etcd", &tb.etcd, "--prefix", &b.path, "get", "apps", "-o", "json"]);
    let apps: Vec<App> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(apps.len(), 1);
    assert!(apps[0].metadata.deletion_timestamp.is_none());
}

// ------------------------------------------------------------------------------------ delete

/// `delete app` only marks the App (the operator removes it); applying a deleting App is refused.
#[tokio::test]
async fn delete_app_marks_it_and_apply_is_refused() {
    let p = Prefix::new();
    let s = store(&p).await;
    let key = format!("{}/apps/prod/web", p.path);
    s.apply(&one(&host_doc("h1")), false).await.unwrap();
    let doc = app_doc("web", "prod", "reg.local/web:1", "h1", "8080:80", "");
    s.apply(&one(&doc), false).await.unwrap();

    s.delete_app("prod", "web").await.unwrap();
    let (app, rev) = raw_get(&key).await.expect("the key stays until the operator removes the app");
    let ts = app["metadata"]["deletionTimestamp"].as_str().unwrap_or_else(|| panic!("no deletionTimestamp: {app}"));
    humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("deletionTimestamp {ts:?} is not RFC 3339: {e}"));
    assert_eq!(app["metadata"]["generation"], 1, "deleting is not a spec change");
    assert_eq!(app["spec"]["image"], "reg.local/web:1");

    // Apply (changed or not) is refused and writes nothing.
    for d in [doc.clone(), doc.replace("web:1", "web:2")] {
        match s.apply(&one(&d), false).await {
            Err(e @ StoreError::BeingDeleted { .. }) => {
                let m = e.to_string();
                assert!(m.contains("app/web -n prod") && m.contains("being deleted"), "{m}")
            }
            other => panic!("apply on a deleting app must be refused, got {other:?}"),
        }
    }
    assert_eq!(raw_get(&key).await.unwrap().1, rev);

    // Deleting again is a no-op; a missing app is NotFound.
    s.delete_app("prod", "web").await.unwrap();
    assert_eq!(raw_get(&key).await.unwrap().1, rev);
    assert!(matches!(s.delete_app("prod", "nope").await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.delete_app("staging", "web").await, Err(StoreError::NotFound(_))));

    // Once the operator removed the keys, the same App can be created again, at generation 1.
    assert!(s.remove_app_keys("prod", "web", rev).await.unwrap());
    assert!(raw_get(&key).await.is_none());
    assert_eq!(s.apply(&one(&doc.replace("web:1", "web:2")), false).await.unwrap(), ApplyOutcome::Created);
    assert_eq!(raw_get(&key).await.unwrap().0["metadata"]["generation"], 1);
    // A stale finalizer (old revision) does not delete the re-created App.
    assert!(!s.remove_app_keys("prod", "web", rev).await.unwrap());
    assert!(raw_get(&key).await.is_some());
}

/// A Host an App still places containers on cannot be deleted; the refusal names the App.
#[tokio::test]
async fn delete_host_refused_while_an_app_uses_it() {
    let p = Prefix::new();
    let s = store(&p).await;
    for h in ["h1", "h2"] {
        s.apply(&one(&host_doc(h)), false).await.unwrap();
    }
    // `shop` uses h1 through an accessory only.
    let shop = "apiVersion: berth.dev/v1alpha1
kind: App
metadata: {name: shop, namespace: staging}
spec:
  image: reg.local/shop:1
  roles:
    web: {hosts: [h2]}
  accessories:
    db: {image: reg.local/db:1, hosts: [h1]}
";
    s.apply(&one(shop), false).await.unwrap();

    match s.delete_host("h1").await {
        Err(StoreError::HostInUse { host, apps }) => {
            assert_eq!(host, "h1");
            assert!(apps.iter().any(|a| a.contains("app/shop -n staging")), "{apps:?}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(raw_get(&format!("{}/hosts/h1", p.path)).await.is_some());
    // Through the CLI: exit 2, one line naming the App.
    let out = berth(&["--etcd", &p.etcd, "--prefix", &p.path, "delete", "host", "h1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("app/shop -n staging"), "{stderr}");
    assert_no_panic(&stderr);

    // Missing host: NotFound, exit 3.
    assert!(matches!(s.delete_host("h9").await, Err(StoreError::NotFound(_))));
    let out = berth(&["--etcd", &p.etcd, "--prefix", &p.path, "delete", "host", "h9"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).1);

    // Once the App is gone, the Host can go.
    let rev = s.get_app("staging", "shop").await.unwrap().unwrap().mod_revision;
    s.delete_app("staging", "shop").await.unwrap();
    assert!(s.delete_host("h1").await.is_err(), "a deleting App still has containers on h1");
    let rev_marked = s.get_app("staging", "shop").await.unwrap().unwrap().mod_revision;
    assert!(rev_marked > rev);
    assert!(s.remove_app_keys("staging", "shop", rev_marked).await.unwrap());
    let out = berth(&["--etcd", &p.etcd, "--prefix", &p.path, "delete", "host", "h1"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0, "host/h1 deleted\n");
    assert!(raw_get(&format!("{}/hosts/h1", p.path)).await.is_none());
}

/// `berth delete app` through the binary: exit 0 and a marked App; exit 3 for a missing one.
#[test]
fn cli_delete_app_exit_codes() {
    let tb = Testbed::get();
    let p = Prefix::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.yaml");
    std::fs::write(
        &file,
        format!("{}---\n{}", host_doc("h1"), app_doc("web", "prod", "reg.local/w:1", "h1", "80:80", "")),
    )
    .unwrap();
    let g = |args: &[&str]| {
        let mut all = vec!["--etcd", tb.etcd.as_str(), "--prefix", p.path.as_str()];
        all.extend_from_slice(args);
        berth(&all)
    };
    assert!(g(&["apply", "-f", file.to_str().unwrap()]).status.success());

    let out = g(&["delete", "app", "web"]);
    assert_eq!(out.status.code(), Some(3), "web is in prod, not default: {:?}", text(&out));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("app/web -n default") && stderr.contains("not found"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert_no_panic(&stderr);

    let out = g(&["delete", "app", "web", "-n", "prod"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, "app/web -n prod marked for deletion\n");
    let out = g(&["get", "apps", "-o", "json"]);
    let apps: Vec<App> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(apps[0].metadata.deletion_timestamp.is_some());

    // Apply on the deleting App: refused, naming it; nothing written.
    let out = g(&["apply", "-f", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("app/web -n prod") && stderr.contains("being deleted"), "{stderr}");
    assert_no_panic(&stderr);

    let out = g(&["delete", "app", "ghost", "-n", "prod"]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
}

// ------------------------------------------------------------------------------------ concurrency

/// Four `berth apply` processes, each alternating between spec A and spec B of one App, 12 rounds
/// each, in parallel (two would do; four make a lost update without the revision guard show up
/// on nearly every run). Every write that changed the spec printed `created` or `configured`, so the
/// final generation must equal their number (no update lost), and the stored spec must be A or B
/// whole (never a mix).
#[test]
fn concurrent_cli_applies_lose_no_update() {
    let tb = Testbed::get();
    let p = Prefix::new();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts.yaml");
    std::fs::write(&hosts, format!("{}---\n{}", host_doc("h1"), host_doc("h2"))).unwrap();
    let out = berth(&["--etcd", &tb.etcd, "--prefix", &p.path, "apply", "-f", hosts.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));

    let spec_a = "apiVersion: berth.dev/v1alpha1
kind: App
metadata: {name: race, namespace: prod}
spec:
  image: reg.local/race:a
  env: {VARIANT: a}
  roles:
    web: {hosts: [h1], ports: [\"8080:80\"]}
";
    let spec_b = "apiVersion: berth.dev/v1alpha1
kind: App
metadata: {name: race, namespace: prod}
spec:
  image: reg.local/race:b
  env: {VARIANT: b, EXTRA: \"1\"}
  roles:
    web: {hosts: [h1, h2], ports: [\"9090:80\"]}
    jobs: {hosts: [h2], cmd: run-jobs}
";
    let file_a = dir.path().join("a.yaml");
    let file_b = dir.path().join("b.yaml");
    std::fs::write(&file_a, spec_a).unwrap();
    std::fs::write(&file_b, spec_b).unwrap();
    let a = match one(spec_a) {
        Resource::App(a) => a.spec,
        _ => unreachable!(),
    };
    let b = match one(spec_b) {
        Resource::App(a) => a.spec,
        _ => unreachable!(),
    };

    const WORKERS: usize = 4;
    const ROUNDS: usize = 12;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (etcd, prefix) = (tb.etcd.clone(), p.path.clone());
            let files = [file_a.clone(), file_b.clone()];
            std::thread::spawn(move || {
                let mut lines = Vec::new();
                for round in 0..ROUNDS {
                    // Worker 0 goes A,B,A,...; worker 1 goes B,A,B,...: they keep disagreeing.
                    let f = files[(round + w) % 2].to_str().unwrap().to_string();
                    let out = berth(&["--etcd", &etcd, "--prefix", &prefix, "apply", "-f", &f]);
                    let (stdout, stderr) = text(&out);
                    assert!(out.status.success(), "worker {w} round {round}: {stderr}");
                    assert_no_panic(&stderr);
                    lines.extend(stdout.lines().map(str::to_string));
                }
                lines
            })
        })
        .collect();
    let lines: Vec<String> = workers.into_iter().flat_map(|w| w.join().expect("worker")).collect();

    assert_eq!(lines.len(), WORKERS * ROUNDS, "{lines:#?}");
    let count = |what: &str| lines.iter().filter(|l| *l == &format!("app/race -n prod {what}")).count();
    let (created, configured, unchanged) = (count("created"), count("configured"), count("unchanged"));
    assert_eq!(created + configured + unchanged, lines.len(), "unexpected lines: {lines:#?}");
    assert_eq!(created, 1, "exactly one process creates the App: {lines:#?}");
    eprintln!("{created} created, {configured} configured, {unchanged} unchanged");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stored = rt.block_on(async {
        let (v, _) = raw_get(&format!("{}/apps/prod/race", p.path)).await.expect("stored app");
        v
    });
    let app: App = serde_json::from_value(stored.clone()).expect("stored value is a whole App");
    assert_eq!(
        app.metadata.generation,
        Some((created + configured) as i64),
        "generation must count every spec-changing write ({created} created + {configured} configured)"
    );
    assert!(app.spec == a || app.spec == b, "stored spec is neither A nor B whole: {stored}");
}

/// The same race inside one process through the library, with more writers and more rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_store_applies_lose_no_update() {
    let p = Prefix::new();
    let s = store(&p).await;
    s.apply(&one(&host_doc("h1")), false).await.unwrap();
    let a = one(&app_doc("race", "prod", "reg.local/race:a", "h1", "8080:80", ""));
    let b = one(&app_doc("race", "prod", "reg.local/race:b", "h1", "9090:80", "  labels: {v: b}\n"));

    const WRITERS: usize = 4;
    const ROUNDS: usize = 25;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (s, a, b) = (s.clone(), a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for round in 0..ROUNDS {
                let r = if (round + w) % 2 == 0 { &a } else { &b };
                outcomes.push(s.apply(r, false).await.expect("apply under contention"));
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.unwrap());
    }
    let created = outcomes.iter().filter(|o| **o == ApplyOutcome::Created).count();
    let configured = outcomes.iter().filter(|o| **o == ApplyOutcome::Configured).count();
    assert_eq!(created, 1);
    // A and B differ in spec, so every write after the first is a spec change.
    let stored = s.get_app("prod", "race").await.unwrap().unwrap().value;
    assert_eq!(stored.metadata.generation, Some((created + configured) as i64), "{outcomes:?}");
    let (Resource::App(a), Resource::App(b)) = (a, b) else { unreachable!() };
    let whole_a = stored.spec == a.spec && stored.metadata.labels == a.metadata.labels;
    let whole_b = stored.spec == b.spec && stored.metadata.labels == b.metadata.labels;
    assert!(whole_a || whole_b, "stored app mixes A and B: {stored:?}");
}

// ------------------------------------------------------------------------------------ messages

/// Request errors (etcd lost mid-command) are one short line naming the root cause, like connect errors.
#[test]
fn request_errors_are_one_short_line() {
    let refused = StoreError::Etcd(etcd_client::Error::IoError(std::io::Error::from_raw_os_error(111)));
    assert_eq!(refused.to_string(), "etcd request failed: connection refused");
}
