//! App networks from berth's own address pool, on the real test bed: beyond the ~30 networks Docker's
//! default pools allow on a host, subnets that avoid every network already there (berth's or
//! anyone's), a full pool named in the App's status, subnets kept across an operator restart, and
//! networks removed with an app's last container on a host (prune, delete after an outage).
//!
//! Isolation: each test has its own etcd prefix and its own namespace (`nete2e-PID-N`); the drop
//! guard removes, by that namespace's label, every container and network left on the hosts. The
//! custom pools (10.98.0.0/24, 10.99.0.0/27) are used by this file alone; leftovers of a killed run
//! inside them are removed before a test starts.
mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use common::ports::free_port;
use common::run::{berth_at, berth_cmd, Run};
use common::specs::host_doc;
use common::testbed::{http_get, secs, wait_until, Testbed};
use etcd_client::{Client, DeleteOptions};
use serde_json::Value;

const HTTPD: &str = r#"["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]"#;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// An IPv4 CIDR as (first address, one past the last), for overlap checks.
fn range(cidr: &str) -> (u64, u64) {
    let (a, p) = cidr.split_once('/').unwrap_or_else(|| panic!("not a CIDR: {cidr:?}"));
    let (a, p): (Ipv4Addr, u32) = (a.parse().unwrap(), p.parse().unwrap());
    let first = u64::from(u32::from(a));
    (first, first + (1u64 << (32 - p)))
}

fn overlap(a: &str, b: &str) -> bool {
    let ((a0, a1), (b0, b1)) = (range(a), range(b));
    a0 < b1 && b0 < a1
}

/// One network on a host: id and IPv4 subnets (IPv6 ones left out).
#[derive(Debug, Clone, PartialEq)]
struct Net {
    id: String,
    subnets: Vec<String>,
}

/// Every network on `host` (or those matching `filter`, e.g. `label=berth.namespace=NS`), by name.
fn networks(tb: &Testbed, host: &str, filter: Option<&str>) -> BTreeMap<String, Net> {
    let mut ls = vec!["network", "ls", "-q"];
    if let Some(f) = filter {
        ls.extend(["--filter", f]);
    }
    let ids = tb.docker_ok(host, &ls);
    if ids.is_empty() {
        return BTreeMap::new();
    }
    let format = "{{.Name}} {{.Id}}{{range .IPAM.Config}} {{.Subnet}}{{end}}";
    let mut args = vec!["network", "inspect", "--format", format];
    args.extend(ids.lines());
    // A network removed between the two calls makes inspect fail for it alone: keep what it printed.
    let out = tb.docker(host, &args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (name, id) = (words.next()?.to_string(), words.next()?.to_string());
            Some((name, Net { id, subnets: words.filter(|s| !s.contains(':')).map(String::from).collect() }))
        })
        .collect()
}

/// Removes what a killed run of this file left inside `pool` on every host: the containers on
/// those networks, then the networks. Nobody else uses these pools.
fn clear_pool(tb: &Testbed, pool: &str) {
    for h in tb.host_names() {
        for (name, net) in networks(tb, h, None) {
            if net.subnets.iter().any(|s| overlap(s, pool)) {
                let attached = tb.docker_ok(
                    h,
                    &["network", "inspect", "-f", "{{range $k, $v := .Containers}}{{$k}} {{end}}", &name],
                );
                for c in attached.split_whitespace() {
                    let _ = tb.docker(h, &["rm", "-f", c]);
                }
                let _ = tb.docker(h, &["network", "rm", &name]);
            }
        }
    }
}

/// One test's world: its etcd prefix, namespace, spec files and the foreign networks it made.
struct Ctx {
    tb: &'static Testbed,
    prefix: String,
    ns: String,
    dir: tempfile::TempDir,
    foreign: Vec<(String, String)>,
}

impl Ctx {
    fn new() -> Ctx {
        static N: AtomicU64 = AtomicU64::new(0);
        let id = format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        Ctx {
            tb: Testbed::get(),
            prefix: format!("/berth-nete2e-{id}"),
            ns: format!("nete2e-{id}"),
            dir: tempfile::tempdir().unwrap(),
            foreign: Vec::new(),
        }
    }

    fn berth(&self, args: &[&str]) -> Run {
        Run::of(berth_at(&self.tb.etcd, &self.prefix, args))
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn apply(&self, name: &str, text: &str) -> Run {
        let f = self.file(name, text);
        self.berth(&["apply", "-f", &f]).expect(0)
    }

    fn converge(&self, app: &str) -> Run {
        self.berth(&["converge", app, "-n", &self.ns])
    }

    fn status(&self, app: &str) -> Value {
        let r = self.berth(&["status", app, "-n", &self.ns, "-o", "json"]).expect(0);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
    }

    /// Host `name` on test-bed daemon `daemon`, with `network` YAML (`{pool: …, size: …}`) or none.
    fn host(&self, name: &str, daemon: &str, network: Option<&str>) -> String {
        let doc = host_doc(name, &self.tb.host(daemon).unix);
        match network {
            Some(n) => format!("{doc}  network: {n}\n"),
            None => doc,
        }
    }

    /// An App of this test's namespace with one role `web` on `hosts` (comma-separated).
    fn app(&self, name: &str, hosts: &str) -> String {
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  image: {image}\n  roles:\n    web: {{hosts: [{hosts}], cmd: {HTTPD}}}\n",
            ns = self.ns,
            image = self.tb.images.app_v1
        )
    }

    /// This namespace's networks on a test-bed daemon, by name.
    fn nets(&self, daemon: &str) -> BTreeMap<String, Net> {
        networks(self.tb, daemon, Some(&format!("label=berth.namespace={}", self.ns)))
    }

    /// The one subnet of app `app`'s network on `daemon`.
    fn subnet(&self, daemon: &str, app: &str) -> String {
        let nets = self.nets(daemon);
        let net = nets
            .get(&format!("berth-{app}-{}", self.ns))
            .unwrap_or_else(|| panic!("no network of {app} on {daemon}: {nets:?}"));
        assert_eq!(net.subnets.len(), 1, "{net:?}");
        net.subnets[0].clone()
    }

    /// A network berth does not own, holding `subnet` on `daemon`; removed when the test ends.
    fn foreign(&mut self, daemon: &str, subnet: &str) -> String {
        let name = format!("{}-foreign-{}", self.ns, self.foreign.len());
        self.tb.docker_ok(daemon, &["network", "create", "--subnet", subnet, &name]);
        self.foreign.push((daemon.to_string(), name.clone()));
        name
    }

    /// `berth operator` on this prefix; killed when the returned guard drops.
    fn operator(&self, tag: &str) -> Operator {
        let port = free_port();
        let log = self.dir.path().join(format!("operator-{tag}.log"));
        let child = berth_cmd()
            .env("BERTH_LOG", "info")
            .args(["--etcd", &self.tb.etcd, "--prefix", &self.prefix, "operator"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--identity", &format!("{}-{tag}", self.ns)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn berth operator");
        let op = Operator { child, port, log };
        assert!(wait_until(secs(20), || op.metrics().is_some()), "operator never served /metrics\n{}", op.log());
        op
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let label = format!("label=berth.namespace={}", self.ns);
        for h in self.tb.host_names() {
            let ids = self.tb.docker_ok(h, &["ps", "-aq", "--filter", &label]);
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.lines());
                let _ = self.tb.docker(h, &args);
            }
            for name in self.nets(h).keys() {
                let _ = self.tb.docker(h, &["network", "rm", name]);
            }
        }
        for (daemon, name) in &self.foreign {
            let _ = self.tb.docker(daemon, &["network", "rm", name]);
        }
        let (etcd, root) = (self.tb.etcd.clone(), format!("{}/", self.prefix));
        block_on(async move {
            if let Ok(mut c) = Client::connect([etcd], None).await {
                let _ = c.delete(root, Some(DeleteOptions::new().with_prefix())).await;
            }
        });
    }
}

struct Operator {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Operator {
    fn metrics(&self) -> Option<String> {
        match http_get("127.0.0.1", self.port, "/metrics") {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    }

    /// Successful reconciles so far.
    fn reconciles(&self) -> f64 {
        let text = self.metrics().unwrap_or_default();
        let ok = |l: &&str| l.starts_with("berth_reconcile_total{") && l.contains("result=\"success\"");
        text.lines().filter(ok).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- operator log (last 100 lines) ----\n{}",
                lines[lines.len().saturating_sub(100)..].join("\n")
            );
        }
    }
}

/// 80 apps on one host with the default pool (Docker's own pools stop at about 30 networks): all
/// turn Ready under the operator, each network has its own /26 of 10.240.0.0/12 overlapping no
/// other network on the host, and a restarted operator keeps every network (same id, same subnet).
#[test]
fn eighty_apps_on_one_host_all_reach_ready_and_a_restart_keeps_every_subnet() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new();
    ctx.apply("hosts.yaml", &ctx.host("host1", "host1", None));
    let names: Vec<String> = (0..80).map(|i| format!("many{i:02}")).collect();
    let docs: Vec<String> = names.iter().map(|n| ctx.app(n, "host1")).collect();
    let apps = ctx.file("apps.yaml", &docs.join("---\n"));

    let op = ctx.operator("first");
    let r = ctx.berth(&["apply", "-f", &apps, "--wait", "--timeout", "8m"]);
    assert_eq!(r.code, Some(0), "{}\n{}\n{}", r.stdout, r.stderr, op.log());
    let before = ctx.nets("host1");
    assert_eq!(before.len(), 80, "{before:?}");
    let all = networks(tb, "host1", None);
    for (name, net) in &before {
        let [subnet] = &net.subnets[..] else { panic!("{name}: {net:?}") };
        assert_eq!(range(subnet).1 - range(subnet).0, 64, "{name}: {subnet} is not a /26");
        assert!(overlap(subnet, "10.240.0.0/12") && range(subnet).0 >= range("10.240.0.0/12").0, "{name}: {subnet}");
        for (other, o) in all.iter().filter(|(o, _)| *o != name) {
            assert!(!o.subnets.iter().any(|s| overlap(s, subnet)), "{name} {subnet} overlaps {other} {o:?}");
        }
    }

    // A new operator reconciles every app again and recreates nothing.
    drop(op);
    let op = ctx.operator("second");
    assert!(wait_until(secs(120), || op.reconciles() >= 80.0), "only {} reconciles\n{}", op.reconciles(), op.log());
    assert_eq!(ctx.nets("host1"), before);
    // So does a fresh one-shot converge.
    let r = ctx.converge(&names[0]).expect(0);
    assert_eq!(r.actions(), "no changes", "{}", r.stdout);
    assert_eq!(ctx.nets("host1"), before);
}

/// Two Hosts with overlapping pools (pools are per daemon) and a network berth does not own already
/// holding part of each: berth never picks a subnet overlapping it, and fills the pool first-fit.
#[test]
fn overlapping_pools_and_a_foreign_network_in_them() {
    let tb = Testbed::get();
    let _up = tb.shared();
    clear_pool(tb, "10.98.0.0/24");
    let mut ctx = Ctx::new();
    let hosts = [
        ctx.host("host2", "host2", Some("{pool: 10.98.0.0/24, size: 28}")),
        ctx.host("host3", "host3", Some("{pool: 10.98.0.0/25, size: 28}")),
    ];
    ctx.apply("hosts.yaml", &hosts.join("---\n"));
    let on_2 = ctx.foreign("host2", "10.98.0.0/28");
    let on_3 = ctx.foreign("host3", "10.98.0.40/29"); // inside the third /28 only
    let foreign_ids = (networks(tb, "host2", None)[&on_2].id.clone(), networks(tb, "host3", None)[&on_3].id.clone());

    for (i, app) in ["ovl-a", "ovl-b", "ovl-c"].iter().enumerate() {
        ctx.apply(&format!("{app}.yaml"), &ctx.app(app, "host2, host3"));
        let r = ctx.converge(app).expect(0);
        assert_eq!(r.changes(), "create 2, start 2", "{i}: {}", r.stdout);
    }
    let picked = |d| ["ovl-a", "ovl-b", "ovl-c"].map(|a| ctx.subnet(d, a));
    assert_eq!(picked("host2"), ["10.98.0.16/28", "10.98.0.32/28", "10.98.0.48/28"]);
    assert_eq!(picked("host3"), ["10.98.0.0/28", "10.98.0.16/28", "10.98.0.48/28"]);
    let now = (networks(tb, "host2", None)[&on_2].id.clone(), networks(tb, "host3", None)[&on_3].id.clone());
    assert_eq!(now, foreign_ids, "the foreign networks were touched");
}

/// A pool with room for two networks: a third app on that host reports the exhausted pool, naming
/// the host and the pool, in one line of `berth status`; `apply` warned first. Once another app
/// is deleted (its network goes with its last container), the third takes the freed subnet.
#[test]
fn a_full_pool_is_named_in_the_status_of_the_app_that_does_not_fit() {
    let tb = Testbed::get();
    let _up = tb.shared();
    clear_pool(tb, "10.99.0.0/27");
    let ctx = Ctx::new();
    ctx.apply("hosts.yaml", &ctx.host("small", "host3", Some("{pool: 10.99.0.0/27, size: 28}")));
    let r = ctx.apply("one.yaml", &ctx.app("full-a", "small"));
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    ctx.converge("full-a").expect(0);
    let r = ctx.apply("two.yaml", &ctx.app("full-b", "small"));
    assert!(r.stderr.contains("warning: host/small: address pool 10.99.0.0/27 holds 2 networks of /28 and 2 app-namespaces are placed on it (100% full)"), "{}", r.stderr);
    ctx.converge("full-b").expect(0);
    let r = ctx.apply("three.yaml", &ctx.app("full-c", "small"));
    assert!(r.stderr.contains("but 3 app-namespaces are placed on it"), "{}", r.stderr);

    let r = ctx.converge("full-c").expect(4);
    assert!(r.stderr.contains("10.99.0.0/27"), "{}", r.stderr);
    let status = ctx.status("full-c");
    assert_ne!(status["phase"], "Ready", "{status:#}");
    let error = status["hosts"]["small"]["error"].as_str().unwrap_or_else(|| panic!("{status:#}"));
    assert!(error.starts_with("host small: create network berth-full-c-"), "{error}");
    assert!(error.contains("address pool 10.99.0.0/27 is exhausted: no free /28 left"), "{error}");
    let table = ctx.berth(&["status", "full-c", "-n", &ctx.ns]).stdout;
    let first = table.lines().next().unwrap_or_default();
    assert!(first.contains("host small") && first.contains("address pool 10.99.0.0/27 is exhausted"), "{table}");

    let freed = ctx.subnet("host3", "full-a");
    ctx.berth(&["delete", "app", "full-a", "-n", &ctx.ns]).expect(0);
    ctx.converge("full-a").expect(0);
    assert!(!ctx.nets("host3").contains_key(&format!("berth-full-a-{}", ctx.ns)));
    ctx.converge("full-c").expect(0);
    assert_eq!(ctx.subnet("host3", "full-c"), freed);
}

/// A network goes with the app's last container on a host: when a role leaves the host (prune),
/// and when the app is deleted while the host is down (once the host is back).
#[test]
fn networks_go_with_the_last_container_on_prune_and_after_an_outage() {
    let tb = Testbed::get();
    let ctx = Ctx::new();
    let net = format!("berth-gone-{}", ctx.ns);
    {
        let _up = tb.shared();
        ctx.apply("hosts.yaml", &["host1", "host2"].map(|h| ctx.host(h, h, None)).join("---\n"));
        ctx.apply("app.yaml", &ctx.app("gone", "host1, host2"));
        ctx.converge("gone").expect(0);
        assert!(ctx.nets("host2").contains_key(&net));
        let kept = ctx.nets("host1");
        ctx.apply("app.yaml", &ctx.app("gone", "host1"));
        let r = ctx.converge("gone").expect(0);
        assert_eq!(r.changes(), "remove 1, stop 1", "{}", r.stdout);
        assert!(ctx.nets("host2").is_empty(), "{:?}", ctx.nets("host2"));
        assert_eq!(ctx.nets("host1"), kept);
    }

    let outage = tb.outage("host1");
    ctx.berth(&["delete", "app", "gone", "-n", &ctx.ns]).expect(0);
    let r = ctx.converge("gone");
    assert_ne!(r.code, Some(0), "deleted while its host was down: {}", r.stdout);
    drop(outage);
    let _up = tb.shared();
    let r = ctx.converge("gone").expect(0);
    assert!(r.stdout.contains(&format!("app/gone -n {} deleted", ctx.ns)), "{}", r.stdout);
    assert!(ctx.nets("host1").is_empty(), "{:?}", ctx.nets("host1"));
}

/// A bad `spec.network` is one line naming the file, the document and the field, exit 1.
#[test]
fn a_bad_pool_or_size_is_one_line_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (network, field, says) in [
        ("{pool: 10.99.0.1/27, size: 28}", "spec.network.pool", "has host bits set: did you mean 10.99.0.0/27?"),
        ("{pool: 10.99.0.0/27, size: 26}", "spec.network.size", "size /26 must be between the pool's /27 and /29"),
        ("{pool: fd00::/64}", "spec.network.pool", "expected an IPv4 CIDR"),
    ] {
        let file = dir.path().join("host.yaml");
        std::fs::write(&file, format!("{}  network: {network}\n", host_doc("h1", "unix:///var/run/docker.sock")))
            .unwrap();
        let r = Run::of_user_input(common::run::berth(&["validate", "-f", file.to_str().unwrap()])).expect(1);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(r.stderr.contains(&format!("host.yaml[0]: {field}: ")) && r.stderr.contains(says), "{}", r.stderr);
    }
}
