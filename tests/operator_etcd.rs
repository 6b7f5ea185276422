//! End to end: `berth operator` through an etcd outage (frozen, then killed and restarted): it keeps
//! running, touches no container, and picks up a change made after etcd returned. The test stops an
//! etcd of its own ([`PrivateEtcd`]: the bed's binary, its own data dir), so the bed's etcd, which
//! other test processes use, never stops.
//!
//! As in every operator binary: each test spawns the real `berth operator` as a child process
//! ([`Ctx::operator`]: its own `--prefix`, `--metrics-addr`, `BERTH_LOG=info`, the log in a file),
//! applies specs with `berth apply -f`, and then only watches (`berth status -o json`, the Docker
//! CLI on the hosts, the operator's `/metrics`, `/healthz` and `/readyz`); nobody runs `berth
//! converge`. Unique app names, one etcd prefix per test, host ports of this binary's own range
//! ([`port`]); operators are killed and the test's containers, networks and keys removed when it
//! ends, even when it panics.
//! The test holds [`Testbed::shared`].
mod common;

use std::sync::atomic::AtomicU16;
use std::time::{Duration, Instant};

use common::containers::{app_containers, snapshot};
use common::etcd::PrivateEtcd;
use common::operator::Operator;
use common::ports::host_port;
use common::specs::{unix_hosts, web_app};
use common::testbed::{secs, wait_until, Testbed};
use common::world::{ready_at, Ctx};

/// A host port no other test of this run publishes: `48000 + (pid % 100) * 40 + n`, n < 40 (the
/// operator binaries share 40000..60000; the engine binaries use 20000..32000).
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 48000, 100, 40, "operator_etcd")
}

/// Waits out an etcd outage of `secs` while checking, every second, that the operator lives, answers
/// /healthz and that no container of `app` changed.
fn ride_out(
    op: &mut Operator,
    tb: &Testbed,
    app: &str,
    before: &[(String, String, String, String)],
    how_long: Duration,
) {
    let t = Instant::now();
    while t.elapsed() < how_long {
        assert!(op.alive(), "the operator exited during the etcd outage\n{}", op.log());
        assert_eq!(op.get("/healthz").map(|r| r.0), Some(200), "/healthz during the etcd outage");
        assert_eq!(snapshot(tb, app), before, "containers changed during the etcd outage");
        std::thread::sleep(secs(1));
    }
}

/// etcd frozen for 30 s (SIGSTOP/SIGCONT: requests hang), then killed and restarted on its data dir
/// (connections refused): the operator keeps running, removes or restarts no container, and picks up
/// a spec change made after etcd returned each time.
#[test]
fn etcd_outage_keeps_the_operator_up_touches_no_container_and_later_changes_land() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let mut etcd = PrivateEtcd::start("op-e2e");
    let ctx = Ctx::with_etcd("op", &etcd.endpoint);
    let app = ctx.app("op-etcd");
    let ns = "prod";
    let web_port = port();
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let mut op = ctx.operator("op-etcd", &["--resync", "5s"]);
    op.wait_leader(secs(30));
    ctx.apply("app.yaml", &web_app(tb, &app, ns, &["host1", "host2"], web_port, "blue").yaml());
    ctx.wait_status(&app, ns, secs(90), "Ready", |s| ready_at(s, 1));
    let before = snapshot(tb, &app);
    assert_eq!(before.len(), 2, "{before:?}");

    // 1. Frozen: every request hangs.
    etcd.signal("STOP");
    ride_out(&mut op, tb, &app, &before, secs(30));
    etcd.signal("CONT");
    assert!(wait_until(secs(30), || etcd.answers()), "etcd did not answer after SIGCONT");
    ride_out(&mut op, tb, &app, &before, secs(3));
    let t = Instant::now();
    ctx.apply("app.yaml", &web_app(tb, &app, ns, &["host1", "host2"], web_port, "green").yaml());
    ctx.wait_status(&app, ns, secs(120), "Ready at generation 2 after etcd thawed", |s| ready_at(s, 2));
    eprintln!("etcd frozen 30 s: a change applied after it thawed was Ready after {:?}", t.elapsed());
    assert!(op.alive());
    let gen2 = snapshot(tb, &app);
    assert_eq!(gen2.len(), 2, "{gen2:?}");
    for c in &gen2 {
        assert!(!before.iter().any(|b| b.2 == c.2), "generation 2 kept an old container: {gen2:?}");
    }
    for h in ["host1", "host2"] {
        assert!(app_containers(tb, h, &app)[0].env.contains(&"COLOR=green".to_string()));
    }

    // 2. Dead: connections refused, then a restart on the same data.
    etcd.kill();
    let unready = |op: &Operator| op.get("/readyz").is_some_and(|(c, b)| c == 503 && b.contains("etcd"));
    assert!(wait_until(secs(10), || unready(&op)), "/readyz with etcd dead: {:?}", op.get("/readyz"));
    ride_out(&mut op, tb, &app, &gen2, secs(15));
    assert!(unready(&op), "/readyz with etcd dead: {:?}", op.get("/readyz"));
    etcd.run();
    ride_out(&mut op, tb, &app, &gen2, secs(3));
    let t = Instant::now();
    ctx.apply("app.yaml", &web_app(tb, &app, ns, &["host1", "host2"], web_port, "red").yaml());
    ctx.wait_status(&app, ns, secs(120), "Ready at generation 3 after etcd restarted", |s| ready_at(s, 3));
    eprintln!("etcd killed 15 s: a change applied after its restart was Ready after {:?}", t.elapsed());
    assert!(op.alive());
    for h in ["host1", "host2"] {
        let cs = app_containers(tb, h, &app);
        assert_eq!(cs.len(), 1);
        assert!(cs[0].env.contains(&"COLOR=red".to_string()));
    }
    assert!(op.get("/readyz").is_some_and(|(c, b)| c == 200 && b.contains("leader")), "{:?}", op.get("/readyz"));
}
