//! The `berth` binary as users and scripts meet it: `validate`, `apply`, `get`, exit codes and
//! one-line errors. Commands that need etcd use the test bed's real etcd, each test under its own
//! key prefix (`/berth-test-PID-N`), removed when the test ends.
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth::spec::{App, Host, Resource};
use common::run::{berth, berth_cmd, Run};
use common::specs;
use common::testbed::Testbed;
use etcd_client::{Client, DeleteOptions, GetOptions};

// ------------------------------------------------------------------------------------ helpers

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A test's own etcd root; its keys are deleted on drop.
struct Ctx {
    etcd: String,
    prefix: String,
    dir: tempfile::TempDir,
}

impl Ctx {
    fn new() -> Ctx {
        static N: AtomicU64 = AtomicU64::new(0);
        Ctx {
            etcd: Testbed::get().etcd.clone(),
            prefix: format!("/berth-test-{}-cli-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `berth --etcd E --prefix P ARGS`.
    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--etcd", self.etcd.as_str(), "--prefix", self.prefix.as_str()];
        all.extend_from_slice(args);
        Run::of_user_input(berth(&all))
    }

    /// Writes `name` in the test's temporary folder; returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// Every key under the prefix.
    fn keys(&self) -> Vec<String> {
        block_on(async {
            let mut c = Client::connect([self.etcd.clone()], None).await.unwrap();
            let resp = c
                .get(format!("{}/", self.prefix), Some(GetOptions::new().with_prefix().with_keys_only()))
                .await
                .unwrap();
            resp.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).to_string()).collect()
        })
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let (etcd, root) = (self.etcd.clone(), format!("{}/", self.prefix));
        block_on(async move {
            if let Ok(mut c) = Client::connect([etcd], None).await {
                let _ = c.delete(root, Some(DeleteOptions::new().with_prefix())).await;
            }
        });
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Every document of a multi-document YAML stream.
fn yaml_docs<T: serde::de::DeserializeOwned>(text: &str) -> Vec<T> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| T::deserialize(d).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect()
}

fn host_doc(name: &str) -> String {
    specs::host_doc(name, &format!("unix:///tmp/berth-cli-test/{name}.sock"))
}

fn app_doc(name: &str, ns: &str, image: &str, hosts: &str, port: &str) -> String {
    specs::app_doc(name, ns, image, hosts, port, "")
}

fn ex() -> String {
    examples().to_str().unwrap().to_string()
}

/// What `examples/` defines, in the order `apply` writes it (Hosts first): display names and the Apps.
/// Computed from the files, so the tests follow the examples as they evolve.
fn example_names() -> Vec<String> {
    let loaded = berth::spec::load_paths(&[examples()]).expect("examples are valid");
    let mut hosts: Vec<String> =
        loaded.iter().filter(|l| matches!(l.resource, Resource::Host(_))).map(|l| l.resource.display_name()).collect();
    let apps = loaded.iter().filter(|l| matches!(l.resource, Resource::App(_))).map(|l| l.resource.display_name());
    hosts.extend(apps);
    for expected in ["host/host1", "app/shop -n production"] {
        assert!(hosts.iter().any(|n| n == expected), "examples no longer define {expected}: {hosts:?}");
    }
    hosts
}

/// The `apply` output for the examples when every resource had `outcome`.
fn example_lines(outcome: &str) -> String {
    example_names().iter().map(|n| format!("{n} {outcome}\n")).collect()
}

fn example_shop() -> App {
    match berth::spec::load_paths(&[examples().join("shop.yaml")]).expect("valid").remove(0).resource {
        Resource::App(a) => a,
        _ => panic!("examples/shop.yaml does not start with an App"),
    }
}

/// examples/shop.yaml with another image: a spec change.
fn changed_shop(c: &Ctx, image: &str) -> String {
    let text = std::fs::read_to_string(examples().join("shop.yaml")).unwrap();
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    doc["spec"]["image"] = image.into();
    c.file("shop.yaml", &serde_yaml_ng::to_string(&doc).unwrap())
}

// ------------------------------------------------------------------------------------ validate

#[test]
fn validate_examples_succeeds_offline() {
    // No etcd is needed (and none is reachable at this address).
    let r = Run::of_user_input(berth(&["--etcd", "http://127.0.0.1:1", "validate", "-f", &ex()])).expect(0);
    let names = example_names();
    assert_eq!(r.stdout.lines().count(), names.len(), "{}", r.stdout);
    for name in &names {
        assert!(r.stdout.lines().any(|l| l.starts_with(&format!("{name} valid"))), "{name} missing:\n{}", r.stdout);
    }
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    // Sub-folders are not searched; they can be validated on their own.
    let reference = examples().join("reference");
    if reference.is_dir() {
        Run::of_user_input(berth(&["validate", "-f", reference.to_str().unwrap()])).expect(0);
    }
    // Files work as well as the folder.
    let hosts = examples().join("hosts.yaml");
    let shop = examples().join("shop.yaml");
    Run::of_user_input(berth(&["validate", "-f", hosts.to_str().unwrap(), "-f", shop.to_str().unwrap()])).expect(0);
}

#[test]
fn validate_bad_files_exit_1_with_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    // Document 0 is fine; document 1 has a bad port and an unknown field.
    let text = format!(
        "{}---\n{}",
        host_doc("h1"),
        app_doc("web", "prod", "reg.local/web:1", "h1", "70000:80").replace("  image:", "  colour: red\n  image:")
    );
    std::fs::write(&bad, text).unwrap();
    let bad = bad.to_str().unwrap();
    let r = Run::of_user_input(berth(&["validate", "-f", bad])).expect(1);
    assert!(
        r.stderr.contains(&format!("{bad}[1]: spec")),
        "errors must be located as file[doc]: path: message:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("colour"), "{}", r.stderr);

    // A type error is located at its field.
    let ports = dir.path().join("ports.yaml");
    std::fs::write(&ports, app_doc("web", "prod", "reg.local/web:1", "h1", "70000:80")).unwrap();
    let ports = ports.to_str().unwrap();
    let r = Run::of_user_input(berth(&["validate", "-f", ports])).expect(1);
    let line = r.stderr.lines().find(|l| l.contains(&format!("{ports}[0]: spec.roles.web.ports[0]: ")));
    assert!(line.is_some(), "expected `{ports}[0]: spec.roles.web.ports[0]: ...` in:\n{}", r.stderr);

    // YAML syntax errors, a missing file, a wrong kind: all exit 1, no panic.
    let syntax = dir.path().join("syntax.yaml");
    std::fs::write(&syntax, "apiVersion: [unclosed\n").unwrap();
    let r = Run::of_user_input(berth(&["validate", "-f", syntax.to_str().unwrap()])).expect(1);
    assert!(r.stderr.contains("syntax.yaml[0]: invalid YAML"), "{}", r.stderr);
    let r = Run::of_user_input(berth(&["validate", "-f", "/nonexistent/berth.yaml"])).expect(1);
    assert!(r.stderr.contains("/nonexistent/berth.yaml: cannot read"), "{}", r.stderr);
    let kind = dir.path().join("kind.yaml");
    std::fs::write(&kind, "apiVersion: berth.dev/v1alpha1\nkind: Pod\nmetadata: {name: x}\n").unwrap();
    let r = Run::of_user_input(berth(&["validate", "-f", kind.to_str().unwrap()])).expect(1);
    assert!(r.stderr.contains("kind.yaml[0]: kind: unknown kind \"Pod\""), "{}", r.stderr);

    // apply refuses the same file before touching etcd (none is reachable here: still exit 1).
    Run::of_user_input(berth(&["--etcd", "http://127.0.0.1:1", "apply", "-f", ports])).expect(1);
    // Usage errors are input errors too.
    Run::of_user_input(berth(&["validate"])).expect(1);
    Run::of_user_input(berth(&["get", "pods"])).expect(1);
}

/// A folder loads every .yaml, .yml and .json file in it (and nothing else).
#[test]
fn a_folder_loads_every_yaml_and_json_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), host_doc("h1")).unwrap();
    std::fs::write(dir.path().join("b.yml"), host_doc("h2")).unwrap();
    let json = serde_json::json!([
        {"apiVersion": "berth.dev/v1alpha1", "kind": "Host", "metadata": {"name": "h3"},
         "spec": {"endpoint": "unix:///tmp/h3.sock"}},
        {"apiVersion": "berth.dev/v1alpha1", "kind": "App", "metadata": {"name": "api", "namespace": "prod"},
         "spec": {"image": "reg.local/api:1", "roles": {"web": {"hosts": ["h1", "h3"]}}}}
    ]);
    std::fs::write(dir.path().join("c.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a resource: {{{").unwrap();
    std::fs::write(dir.path().join("README.md"), "# not a resource").unwrap();
    let r = Run::of_user_input(berth(&["validate", "-f", dir.path().to_str().unwrap()])).expect(0);
    let names: Vec<&str> = r.stdout.lines().map(|l| l.split(" valid").next().unwrap()).collect();
    assert_eq!(names, ["host/h1", "host/h2", "host/h3", "app/api -n prod"], "{}", r.stdout);

    let empty = tempfile::tempdir().unwrap();
    let r = Run::of_user_input(berth(&["validate", "-f", empty.path().to_str().unwrap()])).expect(1);
    assert!(r.stderr.contains("no .yaml, .yml or .json files"), "{}", r.stderr);
}

// ------------------------------------------------------------------------------------ apply / get

#[test]
fn apply_examples_then_reapply_then_change() {
    let c = Ctx::new();
    let r = c.run(&["apply", "-f", &ex()]).expect(0);
    // e.g. `host/host1 created` ... `app/shop -n production created`: Hosts first, one line each.
    assert_eq!(r.stdout, example_lines("created"));
    let r = c.run(&["apply", "-f", &ex()]).expect(0);
    assert_eq!(r.stdout, example_lines("unchanged"));

    // A changed copy of shop.yaml: configured; the Hosts, named after it, still apply first.
    let shop = changed_shop(&c, "reg.local/shop:changed");
    let hosts = examples().join("hosts.yaml");
    let r = c.run(&["apply", "-f", &shop, "-f", hosts.to_str().unwrap()]).expect(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.last(), Some(&"app/shop -n production configured"), "{}", r.stdout);
    assert!(
        lines[..lines.len() - 1].iter().all(|l| l.starts_with("host/") && l.ends_with(" unchanged")),
        "{}",
        r.stdout
    );
    assert!(lines.contains(&"host/host1 unchanged"), "{}", r.stdout);
    let r = c.run(&["get", "apps", "-o", "json"]).expect(0);
    let apps: Vec<App> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].spec.image, "reg.local/shop:changed");
    assert_eq!(apps[0].metadata.generation, Some(2));

    // Back to the original: configured again, generation 3.
    let r = c.run(&["apply", "-f", &ex()]).expect(0);
    assert!(r.stdout.ends_with("app/shop -n production configured\n"), "{}", r.stdout);
    let apps: Vec<App> = serde_json::from_str(&c.run(&["get", "apps", "-o", "json"]).expect(0).stdout).unwrap();
    assert_eq!(apps[0].metadata.generation, Some(3));
}

#[test]
fn apply_dry_run_writes_nothing() {
    let c = Ctx::new();
    let r = c.run(&["apply", "--dry-run", "-f", &ex()]).expect(0);
    assert_eq!(r.stdout, example_lines("created (dry run)"));
    assert!(c.keys().is_empty(), "dry run wrote {:?}", c.keys());

    c.run(&["apply", "-f", &ex()]).expect(0);
    let before = c.run(&["get", "apps", "-o", "json"]).expect(0).stdout;
    let shop = changed_shop(&c, "reg.local/shop:9");
    let r = c.run(&["apply", "--dry-run", "-f", &shop]).expect(0);
    assert_eq!(r.stdout, "app/shop -n production configured (dry run)\n");
    assert_eq!(c.run(&["get", "apps", "-o", "json"]).expect(0).stdout, before, "dry run changed the stored app");
}

#[test]
fn get_apps_and_hosts_in_every_format() {
    let c = Ctx::new();
    // Nothing stored yet: an empty list, not an error.
    let r = c.run(&["get", "apps", "-o", "json"]).expect(0);
    assert_eq!(serde_json::from_str::<Vec<App>>(&r.stdout).unwrap().len(), 0);

    c.run(&["apply", "-f", &ex()]).expect(0);
    let staging = app_doc("shop", "staging", "ghcr.io/example/shop:2.0.0", "host1", "18081:80");
    let f = c.file("staging.yaml", &staging);
    let r = c.run(&["apply", "-f", &f]).expect(0);
    assert_eq!(r.stdout, "app/shop -n staging created\n");

    // json: the stored resources.
    let r = c.run(&["get", "apps", "-o", "json"]).expect(0);
    let apps: Vec<App> = serde_json::from_str(&r.stdout).unwrap();
    let mut ids: Vec<(String, String)> =
        apps.iter().map(|a| (a.namespace().to_string(), a.metadata.name.clone())).collect();
    ids.sort();
    assert_eq!(ids, [("production".into(), "shop".into()), ("staging".into(), "shop".into())]);
    assert!(apps.iter().all(|a| a.metadata.generation == Some(1)));

    // -n filters.
    let r = c.run(&["get", "apps", "-n", "staging", "-o", "json"]).expect(0);
    let apps: Vec<App> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].namespace(), "staging");
    assert_eq!(apps[0].spec.image, "ghcr.io/example/shop:2.0.0");
    let r = c.run(&["get", "apps", "-n", "nowhere", "-o", "json"]).expect(0);
    assert!(serde_json::from_str::<Vec<App>>(&r.stdout).unwrap().is_empty());

    // yaml: the same resources.
    let shop = example_shop();
    let r = c.run(&["get", "apps", "-n", "production", "-o", "yaml"]).expect(0);
    let apps = yaml_docs::<App>(&r.stdout);
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].metadata.name, "shop");
    assert_eq!(apps[0].namespace(), "production");
    assert_eq!(apps[0].spec, shop.spec, "yaml shows the stored spec");
    let r = c.run(&["get", "apps", "-o", "yaml"]).expect(0);
    assert_eq!(yaml_docs::<App>(&r.stdout).len(), 2, "{}", r.stdout);
    // What `get -o yaml` prints applies back as unchanged.
    let back = c.file("back.yaml", &r.stdout);
    let r = c.run(&["apply", "-f", &back]).expect(0);
    assert_eq!(r.stdout.lines().filter(|l| l.ends_with(" unchanged")).count(), 2, "{}", r.stdout);

    // table: a header and one row per app.
    let r = c.run(&["get", "apps"]).expect(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    for col in ["NAMESPACE", "NAME", "IMAGE", "GENERATION"] {
        assert!(lines[0].contains(col), "{}", r.stdout);
    }
    assert!(lines.iter().any(|l| l.contains("production") && l.contains(&shop.spec.image)), "{}", r.stdout);
    assert!(lines.iter().any(|l| l.contains("staging") && l.contains("ghcr.io/example/shop:2.0.0")), "{}", r.stdout);
    let r = c.run(&["get", "apps", "-n", "staging"]).expect(0);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert!(!r.stdout.contains("production"), "{}", r.stdout);

    // hosts (and the singular alias).
    let r = c.run(&["get", "hosts", "-o", "json"]).expect(0);
    let hosts: Vec<Host> = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h.metadata.name.as_str()).collect();
    let expected: Vec<String> =
        example_names().iter().filter_map(|n| n.strip_prefix("host/")).map(str::to_string).collect();
    assert_eq!(names, expected);
    let r = c.run(&["get", "host"]).expect(0);
    assert_eq!(r.stdout.lines().count(), 1 + expected.len(), "{}", r.stdout);
    assert!(r.stdout.lines().nth(1).unwrap().starts_with(&expected[0]), "{}", r.stdout);
    assert!(r.stdout.contains(&hosts[0].spec.endpoint), "{}", r.stdout);
    let r = c.run(&["get", "hosts", "-o", "yaml"]).expect(0);
    assert_eq!(yaml_docs::<Host>(&r.stdout).len(), expected.len(), "{}", r.stdout);
}

/// An App naming a host no Host defines (stored or in the same batch) is refused, naming the host;
/// nothing of the batch is written.
#[test]
fn apply_refuses_an_undefined_host() {
    let c = Ctx::new();
    let f = c.file(
        "all.yaml",
        &format!("{}---\n{}", host_doc("h1"), app_doc("web", "prod", "reg.local/w:1", "h1, h7", "80:80")),
    );
    let r = c.run(&["apply", "-f", &f]).expect(1);
    assert!(r.stderr.contains("\"h7\"") && r.stderr.contains("not defined"), "{}", r.stderr);
    assert!(r.stderr.contains("app/web -n prod"), "{}", r.stderr);
    assert!(!r.stderr.contains("\"h1\""), "h1 is defined in the same batch: {}", r.stderr);
    assert!(c.keys().is_empty(), "a refused batch wrote {:?}", c.keys());
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    // Once h7 is stored, the same file applies.
    let h7 = c.file("h7.yaml", &host_doc("h7"));
    c.run(&["apply", "-f", &h7]).expect(0);
    let r = c.run(&["apply", "-f", &f]).expect(0);
    assert_eq!(r.stdout, "host/h1 created\napp/web -n prod created\n");
}

/// A host port another App (in any namespace) already publishes on that host is refused.
#[test]
fn apply_refuses_a_host_port_already_published() {
    let c = Ctx::new();
    let hosts = c.file("hosts.yaml", &format!("{}---\n{}", host_doc("h1"), host_doc("h2")));
    c.run(&["apply", "-f", &hosts]).expect(0);
    let first = c.file("first.yaml", &app_doc("first", "team-a", "reg.local/a:1", "h1", "8080:80"));
    c.run(&["apply", "-f", &first]).expect(0);

    // Same port, same host, another namespace: refused, naming the App that holds it.
    let clash = c.file("clash.yaml", &app_doc("second", "team-b", "reg.local/b:1", "h1", "8080:8080"));
    let r = c.run(&["apply", "-f", &clash]).expect(1);
    assert!(r.stderr.contains("8080") && r.stderr.contains("app/first -n team-a"), "{}", r.stderr);
    assert!(r.stderr.contains("app/second -n team-b"), "{}", r.stderr);
    // Same name, another namespace: still a different App.
    let clash = c.file("clash2.yaml", &app_doc("first", "team-b", "reg.local/b:1", "h1", "8080:80"));
    c.run(&["apply", "-f", &clash]).expect(1);
    // Another host, or another port: fine.
    let other_host = c.file("ok1.yaml", &app_doc("second", "team-b", "reg.local/b:1", "h2", "8080:80"));
    c.run(&["apply", "-f", &other_host]).expect(0);
    let other_port = c.file("ok2.yaml", &app_doc("third", "team-a", "reg.local/c:1", "h1", "8081:80"));
    c.run(&["apply", "-f", &other_port]).expect(0);
    // Re-applying the holder itself is no clash.
    c.run(&["apply", "-f", &first]).expect(0);
    // Two Apps of one batch clashing with each other.
    let batch = c.file(
        "batch.yaml",
        &format!(
            "{}---\n{}",
            app_doc("x", "team-c", "reg.local/x:1", "h2", "9000:80"),
            app_doc("y", "team-d", "reg.local/y:1", "h2", "9000:80")
        ),
    );
    c.run(&["apply", "-f", &batch]).expect(1);
    let r = c.run(&["get", "apps", "-o", "json"]).expect(0);
    let apps: Vec<App> = serde_json::from_str(&r.stdout).unwrap();
    let mut names: Vec<String> = apps.iter().map(|a| format!("{}/{}", a.namespace(), a.metadata.name)).collect();
    names.sort();
    assert_eq!(names, ["team-a/first", "team-a/third", "team-b/second"]);
}

// ------------------------------------------------------------------------------------ etcd settings

/// etcd unreachable: exit 2 and one line naming the endpoint, for every command that needs it.
#[test]
fn unreachable_etcd_exits_2_with_one_line() {
    let file = examples().join("hosts.yaml");
    let cases: [&[&str]; 4] = [
        &["get", "apps"],
        &["apply", "-f", file.to_str().unwrap()],
        &["delete", "app", "shop"],
        &["delete", "host", "host1"],
    ];
    for args in cases {
        let mut all = vec!["--etcd", "http://127.0.0.1:1"];
        all.extend_from_slice(args);
        let started = std::time::Instant::now();
        let r = Run::of_user_input(berth(&all)).expect(2);
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "{args:?} hung for {:?}", started.elapsed());
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: one line expected:\n{}", r.stderr);
        assert!(r.stderr.contains("http://127.0.0.1:1"), "{args:?}: the endpoint must be named:\n{}", r.stderr);
        assert!(r.stderr.contains("unreachable"), "{}", r.stderr);
        assert!(r.stderr.len() < 200, "{args:?}: message too long:\n{}", r.stderr);
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    let r = Run::of_user_input(berth(&["--etcd", "http://127.0.0.1:1", "get", "hosts"])).expect(2);
    assert_eq!(r.stderr.trim_end(), "error: etcd unreachable at http://127.0.0.1:1: connection refused");
    let r = Run::of_user_input(berth(&["--etcd", "http://127.0.0.1:1,http://127.0.0.1:2", "get", "hosts"])).expect(2);
    assert_eq!(
        r.stderr.trim_end(),
        "error: etcd unreachable at http://127.0.0.1:1,http://127.0.0.1:2: connection refused"
    );
}

/// `BERTH_ETCD_ENDPOINTS` (and `BERTH_PREFIX`) stand in for the flags; the flag wins over the variable.
#[test]
fn etcd_endpoints_from_the_environment() {
    let c = Ctx::new();
    let hosts =
        c.file("hosts.yaml", &format!("{}---\n{}---\n{}", host_doc("host1"), host_doc("host2"), host_doc("host3")));
    let env_run = |args: &[&str], endpoints: &str| {
        Run::of_user_input(
            berth_cmd()
                .env("RUST_BACKTRACE", "1")
                .env("BERTH_ETCD_ENDPOINTS", endpoints)
                .env("BERTH_PREFIX", &c.prefix)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let r = env_run(&["apply", "-f", &hosts], &c.etcd).expect(0);
    assert_eq!(r.stdout, "host/host1 created\nhost/host2 created\nhost/host3 created\n");
    assert_eq!(c.keys().len(), 3, "{:?}", c.keys());
    // The same state through the flags.
    let r = c.run(&["get", "hosts", "-o", "json"]).expect(0);
    assert_eq!(serde_json::from_str::<Vec<Host>>(&r.stdout).unwrap().len(), 3);
    // A list of endpoints with a dead one (an etcd member down): every command still works. The etcd
    // client spreads requests over all endpoints, so without probing them about half would fail.
    for i in 0..8 {
        let list = if i % 2 == 0 {
            format!("http://127.0.0.1:1,{}", c.etcd)
        } else {
            format!("{},http://127.0.0.1:1", c.etcd)
        };
        let r = env_run(&["get", "hosts", "-o", "json"], &list).expect(0);
        assert_eq!(serde_json::from_str::<Vec<Host>>(&r.stdout).unwrap().len(), 3);
    }
    // A dead endpoint in the variable is named in the error; the flag overrides the variable.
    let r = env_run(&["get", "hosts"], "http://127.0.0.1:1").expect(2);
    assert!(r.stderr.contains("http://127.0.0.1:1"), "{}", r.stderr);
    env_run(&["--etcd", &c.etcd, "get", "hosts"], "http://127.0.0.1:1").expect(0);
}
