//! End to end: `berth operator` repairs what changed behind its back, with nobody doing anything: a
//! container removed, stopped or killed by hand, and a host whose dockerd died and came back (apps
//! on the other hosts stay Ready all along).
//!
//! As in every operator binary: each test spawns the real `berth operator` as a child process
//! ([`Ctx::operator`]: its own `--prefix`, `--metrics-addr`, `BERTH_LOG=info`, the log in a file),
//! applies specs with `berth apply -f`, and then only watches (`berth status -o json`, the Docker
//! CLI on the hosts, the operator's `/metrics`, `/healthz` and `/readyz`); nobody runs `berth
//! converge`. Unique app names, one etcd prefix per test, host ports of this binary's own range
//! ([`port`]); operators are killed and the test's containers, networks and keys removed when it
//! ends, even when it panics.
//! The drift test holds [`Testbed::shared`]; the host-outage test goes through [`Testbed::outage`].
mod common;

use std::sync::atomic::AtomicU16;
use std::time::{Duration, Instant};

use common::containers::{app_containers, Ctr};
use common::ports::host_port;
use common::specs::{unix_hosts, web_app, web_role, AppSpec};
use common::testbed::{secs, wait_until, Testbed};
use common::world::{last_converged, pretty, ready_at, status_ids, unix_now, Ctx};

/// A host port no other test of this run publishes: `44000 + (pid % 100) * 40 + n`, n < 40 (the
/// operator binaries share 40000..60000; the engine binaries use 20000..32000).
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 44000, 100, 40, "operator_drift")
}

/// A managed container removed, stopped or killed by hand is replaced or restarted, and the app is
/// Ready again (a status written after the change, naming the running container), with nobody doing
/// anything. How fast is a figure of `scripts/bench` (drift repair), not a pass mark here.
#[test]
fn drift_by_hand_is_repaired_and_ready_again() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("op");
    let app = ctx.app("op-drift");
    let ns = "prod";
    let host = "host2";
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let op = ctx.operator("op-drift", &[]);
    op.wait_leader(secs(30));
    ctx.apply("app.yaml", &web_app(tb, &app, ns, &[host], port(), "blue").yaml());
    ctx.wait_status(&app, ns, secs(90), "Ready", |s| ready_at(s, 1));

    let mut report = Vec::new();
    for (what, args) in [
        ("docker rm -f", vec!["rm", "-f"]),
        ("docker stop -t 1", vec!["stop", "-t", "1"]),
        ("docker kill", vec!["kill"]),
    ] {
        let cs = app_containers(tb, host, &app);
        assert_eq!(cs.len(), 1, "{:?}", cs.iter().map(Ctr::short).collect::<Vec<_>>());
        let victim = cs[0].clone();
        // Let the wall clock pass the last status' second, so a status written after the drift is
        // told apart from the one before by its lastConverged (which has 1 s resolution).
        let last = last_converged(&ctx.status(&app, ns).unwrap());
        while unix_now() < last + 1.05 {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut full = args.clone();
        full.push(&victim.id);
        tb.docker_ok(host, &full);
        let (t0, wall0) = (Instant::now(), unix_now().floor());

        let mut running_after = None;
        let mut ready_after = None;
        let mut last_seen = (Vec::new(), None);
        while t0.elapsed() < secs(60) && ready_after.is_none() {
            let cs = app_containers(tb, host, &app);
            let running = cs.len() == 1 && cs[0].status == "running" && cs[0].health.as_deref() == Some("healthy");
            if running && running_after.is_none() {
                running_after = Some(t0.elapsed());
            }
            let s = ctx.status(&app, ns);
            if let Some(s) = &s {
                if running
                    && ready_at(s, 1)
                    && last_converged(s) >= wall0
                    && status_ids(s, host) == vec![cs[0].id.clone()]
                {
                    ready_after = Some(t0.elapsed());
                }
            }
            last_seen = (cs, s);
            std::thread::sleep(Duration::from_millis(100));
        }
        let ready_after = ready_after.unwrap_or_else(|| {
            panic!(
                "after `{what}`: not repaired and Ready within 60 s; containers {:?}; status {}",
                last_seen.0.iter().map(Ctr::short).collect::<Vec<_>>(),
                pretty(&last_seen.1)
            )
        });
        let now = app_containers(tb, host, &app);
        if what.contains("rm") {
            assert_ne!(now[0].id, victim.id, "{what}: the removed container is back?");
        }
        report.push(format!(
            "{what}: running after {running_after:?}, Ready after {ready_after:?} (same id: {})",
            now[0].id == victim.id
        ));
    }
    eprintln!("drift repair times:\n  {}", report.join("\n  "));
    assert!(op.metric("berth_drift_repairs_total", &[("app", &app), ("namespace", ns)]) >= 3.0);
}

/// A host's dockerd dies (power loss) and comes back: apps on the other hosts stay Ready all along
/// (their status is polled throughout, and they are reconciled during the outage), the app on the
/// stopped host names it and is not Ready; once the host is back, its exited container (restart: no)
/// is converged by the operator with nobody doing anything.
#[test]
fn a_stopped_host_is_reported_others_stay_ready_and_it_is_reconverged_when_back() {
    let tb = Testbed::get();
    let ctx = Ctx::new("op");
    let ns = "prod";
    let (on1, on2, on3) = (ctx.app("op-out1"), ctx.app("op-out2"), ctx.app("op-out3"));
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let op = ctx.operator("op-outage", &["--resync", "3s"]);
    {
        let _up = tb.shared();
        op.wait_leader(secs(30));
        ctx.apply("on1.yaml", &web_app(tb, &on1, ns, &["host1"], port(), "a").yaml());
        ctx.apply("on2.yaml", &web_app(tb, &on2, ns, &["host2"], port(), "b").yaml());
        let on3_spec = AppSpec::new(&on3, ns, &tb.images.app_v1).env("COLOR", "c");
        ctx.apply("on3.yaml", &on3_spec.role("web", web_role(&["host3"], port()).restart("no")).yaml());
        for a in [&on1, &on2, &on3] {
            ctx.wait_status(a, ns, secs(90), "Ready", |s| ready_at(s, 1));
        }
    }
    let reconciles = |a: &str| op.metric("berth_reconcile_total", &[("app", a), ("namespace", ns)]);
    let (r1, r2) = (reconciles(&on1), reconciles(&on2));

    let outage = tb.outage("host3");
    let t_out = Instant::now();
    let mut reported = None;
    let mut polls = 0;
    while t_out.elapsed() < secs(20) || reported.is_none() {
        assert!(
            !tb.host("host3").socket_path().exists(),
            "host3 answers again {:?} into its outage, and not by this test: another process started it",
            t_out.elapsed()
        );
        for a in [&on1, &on2] {
            let s = ctx.status(a, ns);
            assert!(
                s.as_ref().is_some_and(|s| ready_at(s, 1)),
                "{a} (not on host3) is not Ready {:?} into host3's outage: {}",
                t_out.elapsed(),
                pretty(&s)
            );
        }
        polls += 1;
        if reported.is_none() {
            if let Some(s) = ctx.status(&on3, ns) {
                let h3 = &s["hosts"]["host3"];
                if s["phase"] != "Ready"
                    && h3["reachable"] == false
                    && s["message"].as_str().unwrap_or("").contains("host3")
                {
                    reported = Some((t_out.elapsed(), s));
                }
            }
        }
        assert!(t_out.elapsed() < secs(60), "{on3} never reported host3 down: {}", pretty(&ctx.status(&on3, ns)));
        std::thread::sleep(Duration::from_millis(300));
    }
    let (reported_after, s3) = reported.unwrap();
    eprintln!("host3 down: reported after {reported_after:?}: {}", s3["message"]);
    assert_ne!(s3["phase"], "Ready");
    assert!(s3["hosts"]["host3"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{s3:#}");
    // The other apps were really looked at during the outage, not only left alone.
    assert!(
        reconciles(&on1) > r1 && reconciles(&on2) > r2,
        "no reconcile of the other apps during the outage ({polls} polls)"
    );
    assert_eq!(op.metric("berth_host_up", &[("host", "host3")]), 0.0);
    // A down Docker host is an alert, not an unready operator; /readyz names it.
    let readyz = op.get("/readyz");
    assert!(
        readyz.as_ref().is_some_and(|(c, b)| *c == 200 && b.contains("leader") && b.contains("host3")),
        "/readyz: {readyz:?}"
    );

    drop(outage); // start-host: dockerd is back, the container exited (restart: no)
    let t_back = Instant::now();
    let wall_back = unix_now().floor();
    let _up = tb.shared();
    let s = ctx.wait_status(&on3, ns, secs(120), "Ready again after host3 returned", |s| {
        ready_at(s, 1) && last_converged(s) >= wall_back
    });
    let back_after = t_back.elapsed();
    let cs = app_containers(tb, "host3", &on3);
    assert_eq!(cs.len(), 1, "{:?}", cs.iter().map(Ctr::short).collect::<Vec<_>>());
    assert_eq!(cs[0].status, "running");
    assert_eq!(status_ids(&s, "host3"), vec![cs[0].id.clone()]);
    eprintln!("host3 back: {on3} Ready again after {back_after:?}");
    // The returning host queues every app once more; the others end that pass Ready as well.
    for a in [&on1, &on2] {
        assert!(
            wait_until(secs(30), || ctx.status(a, ns).is_some_and(|s| ready_at(&s, 1))),
            "{a} not Ready after host3 returned: {:#?}",
            ctx.status(a, ns)
        );
    }
    assert!(wait_until(secs(30), || op.metric("berth_host_up", &[("host", "host3")]) == 1.0));
}
