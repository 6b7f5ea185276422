//! End to end: two `berth operator`s on one prefix. One leads and only it acts; a standby takes over
//! a converge from a SIGKILLed leader without duplicates, and a SIGTERMed leader hands the lease
//! over at once.
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

use std::sync::atomic::AtomicU16;
use std::time::{Duration, Instant};

use common::containers::{app_containers, Ctr};
use common::ports::host_port;
use common::specs::{unix_hosts, web_app, AppSpec, RoleSpec, HTTPD};
use common::testbed::{secs, wait_until, Testbed};
use common::world::{ready_at, status_ids, unix_now, Ctx};

/// A host port no other test of this run publishes: `52000 + (pid % 100) * 40 + n`, n < 40 (the
/// operator binaries share 40000..60000; the engine binaries use 20000..32000).
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 52000, 100, 40, "operator_ha")
}

/// Two operators on one prefix: one leads (berth_leader 1, /readyz "leader") and only it creates
/// containers; the other stays standby. The leader is SIGKILLed while it converges an app over three
/// hosts (its accessory turns healthy only after 6 s): the standby takes over and finishes, with
/// exactly one container per component per host at the end, and the app Ready.
#[test]
fn a_standby_takes_over_a_converge_from_a_killed_leader_without_duplicates() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("op");
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
    ctx.apply("first.yaml", &web_app(tb, &first, ns, &["host1", "host2", "host3"], port(), "x").yaml());
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
    let db = RoleSpec::on(&["host1", "host2", "host3"])
        .image(accessory)
        .cmd(r#"["sh", "-c", "trap 'exit 0' TERM; sleep 6; touch /tmp/ready; while true; do sleep 1; done"]"#)
        .health("{cmd: test -f /tmp/ready, interval: 1s, retries: 3}");
    let spec = AppSpec::new(&second, ns, image)
        .accessory("db", db)
        .role("web", RoleSpec::on(&["host1", "host2", "host3"]).cmd(HTTPD).depends_on(&["db"]))
        .yaml();
    let since = unix_now();
    ctx.apply("second.yaml", &spec);
    let all_dbs = || {
        tb.host_names().iter().all(|h| {
            app_containers(tb, h, &second).iter().any(|c| c.component() == "accessory/db" && c.status == "running")
        })
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

/// SIGTERM: the operator exits 0 and releases the lease, so a standby (whose lease TTL is 15 s)
/// leads right away instead of a TTL later; /healthz and /readyz answer on both.
#[test]
fn sigterm_exits_zero_and_hands_the_lease_over_at_once() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("op");
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
    ctx.apply("app.yaml", &web_app(tb, &app, ns, &["host1"], port(), "x").yaml());
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
