//! End to end: `berth operator` as a user runs it, on the real test bed. `berth apply` is the only
//! step: the operator brings an app to Ready and rolls an edit out; it pulls again an image forced
//! off a host; an `ssh://` host outlives the operator's ssh session.
//!
//! As in every operator binary: each test spawns the real `berth operator` as a child process
//! ([`Ctx::operator`]: its own `--prefix`, `--metrics-addr`, `BERTH_LOG=info`, the log in a file),
//! applies specs with `berth apply -f`, and then only watches (`berth status -o json`, the Docker
//! CLI on the hosts, the operator's `/metrics`, `/healthz` and `/readyz`); nobody runs `berth
//! converge`. Unique app names, one etcd prefix per test, host ports of this binary's own range
//! ([`port`]); operators are killed and the test's containers, networks and keys removed when it
//! ends, even when it panics.
//! Every test holds [`Testbed::shared`].
mod common;

use std::process::Command;
use std::sync::atomic::AtomicU16;

use common::containers::{app_containers, Ctr};
use common::ports::host_port;
use common::specs::{host_doc, unix_hosts, web_app, AppSpec, RoleSpec, HTTPD};
use common::testbed::{secs, wait_for_http, wait_until, Testbed};
use common::world::{ready_at, status_ids, Ctx};

/// A host port no other test of this run publishes: `40000 + (pid % 100) * 40 + n`, n < 40 (the
/// operator binaries share 40000..60000; the engine binaries use 20000..32000).
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 40000, 100, 40, "operator_apply")
}

/// `berth apply` is the only step: the operator brings the app to Ready; an env change is rolled
/// out as generation 2 (container replaced, the new one has the new env); /healthz and /readyz answer.
/// `berth repin --wait` is answered by the operator although the spec did not change; the tag did
/// not move, so no container is touched.
#[test]
fn apply_alone_reaches_ready_and_an_edit_rolls_out_generation_two() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("op");
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

    ctx.apply("app.yaml", &web_app(tb, &app, ns, &["host1", "host2"], web_port, "blue").yaml());
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

    ctx.apply("app.yaml", &web_app(tb, &app, ns, &["host1", "host2"], web_port, "green").yaml());
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
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("op");
    let app = ctx.app("op-rmi");
    let ns = "prod";
    // An image of this test's own, so removing it on host1 disturbs no other test.
    let (image, _) = tb.private_app_image("op-rmi");

    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let op = ctx.operator("op-rmi", &[]);
    op.wait_leader(secs(30));
    let spec = |roles: &[&str]| {
        roles.iter().fold(AppSpec::new(&app, ns, &image), |s, r| s.role(r, RoleSpec::on(&["host1"]).cmd(HTTPD))).yaml()
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
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("op");
    let app = ctx.app("op-ssh");
    let ns = "prod";
    let sshd = common::sshd::Sshd::start(tb, "host3");
    ctx.apply("ssh3.yaml", &host_doc("ssh3", &sshd.endpoint));
    let config = sshd.client_config("client_key");
    let op = ctx.operator_env("op-ssh", &[], &[("BERTH_SSH_CONFIG", &config)]);
    op.wait_leader(secs(30));
    ctx.apply("app.yaml", &web_app(tb, &app, ns, &["ssh3"], port(), "ssh").yaml());
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
    assert!(sshd.log().matches("Accepted publickey").count() >= 2, "no second ssh session: {}", sshd.log());
}
