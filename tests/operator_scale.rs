//! End to end: twenty apps under one `berth operator` reach Ready, and a resync with nothing changed
//! makes no Docker change (and, on quiet hosts, no Docker API call at all). The test is alone in this
//! binary, so no other test of the same process changes containers while it counts.
//!
//! As in every operator binary: each test spawns the real `berth operator` as a child process
//! ([`Ctx::operator`]: its own `--prefix`, `--metrics-addr`, `BERTH_LOG=info`, the log in a file),
//! applies specs with `berth apply -f`, and then only watches (`berth status -o json`, the Docker
//! CLI on the hosts, the operator's `/metrics`, `/healthz` and `/readyz`); nobody runs `berth
//! converge`. Unique app names, one etcd prefix per test; operators are killed and the test's
//! containers, networks and keys removed when it ends, even when it panics.
//! The test holds [`Testbed::shared`].
mod common;

use std::time::Instant;

use common::containers::app_containers;
use common::operator::{metric_sum, series_delta};
use common::specs::{unix_hosts, AppSpec, RoleSpec, IDLE};
use common::testbed::{secs, wait_until, Testbed};
use common::world::{ready_at, unix_now, Ctx};

/// Twenty small apps applied by one `berth apply -f DIR/` all reach Ready; a resync with nothing
/// changed then makes no Docker change at all (no container event of those apps on any host, no
/// container action counted). The Docker API calls that resync made are counted and printed.
#[test]
fn twenty_apps_at_once_reach_ready_and_a_noop_resync_changes_nothing() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("op");
    let ns = ctx.namespace("op20");
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let image = &tb.images.app_v1;
    let mut apps = Vec::new();
    for i in 0..20 {
        let app = ctx.app(&format!("op20-{i:02}"));
        let host = format!("host{}", i % 3 + 1);
        let spec = AppSpec::new(&app, &ns, image).role("worker", RoleSpec::on(&[&host]).cmd(IDLE));
        ctx.file(&format!("apps/{app}.yaml"), &spec.yaml());
        apps.push(app);
    }
    let resync = 5;
    let op = ctx.operator("op-20", &["--resync", &format!("{resync}s")]);
    op.wait_leader(secs(30));
    let t = Instant::now();
    let dir = ctx.dir.path().join("apps");
    let r = ctx.berth(&["apply", "-f", dir.to_str().unwrap()]).expect(0);
    assert_eq!(r.stdout.lines().filter(|l| l.contains("created")).count(), 20, "{}", r.stdout);
    for app in &apps {
        ctx.wait_status(app, &ns, secs(180), "Ready", |s| ready_at(s, 1));
    }
    eprintln!("20 apps applied at once: all Ready after {:?}", t.elapsed());
    for (i, app) in apps.iter().enumerate() {
        let host = format!("host{}", i % 3 + 1);
        let cs = app_containers(tb, &host, app);
        assert_eq!(cs.len(), 1, "{app} on {host}");
        assert_eq!(cs[0].status, "running");
    }

    let reconciles = || op.metric("berth_reconcile_total", &[("namespace", &ns)]);
    // Waits for the next resync to pass completely: +20 reconciles, then quiet for 2 s.
    let next_resync = |from: f64| {
        assert!(
            wait_until(secs(3 * resync), || reconciles() >= from + 20.0),
            "no resync within {}s: {} reconciles since",
            3 * resync,
            reconciles() - from
        );
        let mut last = reconciles();
        loop {
            std::thread::sleep(secs(2));
            let now = reconciles();
            if now == last {
                return now;
            }
            last = now;
        }
    };
    // Each window runs from just after one resync to just after the next. Its Docker API calls count
    // only when nothing at all happened to berth's containers on the hosts since before the previous
    // resync (the last time the operator listed them): any container event rightly makes it list that
    // host again. No other test runs in this binary (its own process), but other processes may share
    // the hosts, so up to four windows are tried to find a quiet one.
    let calls = |m: &str| metric_sum(m, "berth_docker_request_duration_seconds_count", &[]);
    let actions = |m: &str| metric_sum(m, "berth_container_actions_total", &[]);
    let label = format!("berth.namespace={ns}");
    let mut checked_from = unix_now();
    let mut settled = next_resync(reconciles());
    let mut quiet = None;
    let mut noisy = Vec::new();
    for _ in 0..4 {
        let m1 = op.metrics();
        let since = unix_now();
        let after = next_resync(settled);
        let until = unix_now();
        let m2 = op.metrics();
        assert!(after - settled >= 20.0, "a resync reconciles every app: {} reconciles", after - settled);
        for h in tb.host_names() {
            let ev = tb.lifecycle_events(h, &label, since, until);
            assert!(ev.is_empty(), "a no-op resync changed containers on {h}: {ev:?}");
        }
        assert_eq!(actions(&m2) - actions(&m1), 0.0, "Docker actions counted during a no-op resync");
        let total = calls(&m2) - calls(&m1);
        let by_series = series_delta(&m1, &m2, "berth_docker_request_duration_seconds_count");
        let events: Vec<String> = tb
            .host_names()
            .iter()
            .flat_map(|h| tb.state_events(h, "berth.managed-by=berth", checked_from, until))
            .collect();
        if events.is_empty() {
            quiet = Some((total, by_series));
            break;
        }
        noisy.push(format!("{total} calls {by_series:?} after container events {events:?}"));
        settled = after;
        checked_from = since;
    }
    match quiet {
        Some((total, by_series)) => {
            eprintln!("no-op resync of 20 apps on quiet hosts: {total} Docker API calls {by_series:?} (other windows: {noisy:?})");
            assert_eq!(total, 0.0, "Docker API calls during a no-op resync with nothing changed on any host");
        }
        None => eprintln!(
            "no quiet resync window (other tests kept the hosts busy), Docker API calls not asserted: {noisy:?}"
        ),
    }
    for app in &apps {
        assert!(ready_at(&ctx.status(app, &ns).unwrap(), 1));
    }
}
