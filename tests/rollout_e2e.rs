//! End to end, with `berth operator` on the real test bed: rollouts that never hurt a healthy app.
//! A rolled-back rollout is not retried on its own (the healthy old container is never stopped
//! again) until a new spec or `berth rollout retry`; drift is repaired from the last Ready
//! generation meanwhile. Health waits show in the status while they last, a gate that gave up
//! blocks its roles at once, and SIGTERM during a wait ends the wait, writes the status, then
//! hands the lease over.
mod common;

use std::time::{Duration, Instant, SystemTime};

use common::containers::{component, Ctr};
use common::specs::{unix_hosts, HTTPD, NEVER_HEALTHY, WEB_HEALTH};
use common::testbed::{secs, wait_until, Testbed};
use common::world::{ready_at, Ctx};
use serde_json::Value;

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Role `web` on host1 and host2, one host at a time, RELEASE in its env.
fn web_app(tb: &Testbed, app: &str, ns: &str, release: &str, health: &str) -> String {
    let image = &tb.images.app_v1;
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  env:
    RELEASE: {release}
  roles:
    web:
      hosts: [host1, host2]
      cmd: {HTTPD}
      healthcheck: {health}
  rollout:
    maxUnavailable: 1
    healthTimeout: 4s
"
    )
}

/// An accessory `db` on host3 that never turns healthy, and role `web` on host1 behind it.
fn gated_app(tb: &Testbed, app: &str, ns: &str, health_timeout: &str) -> String {
    let (image, accessory) = (&tb.images.app_v1, &tb.images.accessory);
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata:
  name: {app}
  namespace: {ns}
spec:
  image: {image}
  accessories:
    db:
      image: {accessory}
      hosts: [host3]
      cmd: {HTTPD}
      healthcheck: {NEVER_HEALTHY}
  roles:
    web:
      hosts: [host1]
      cmd: {HTTPD}
  rollout:
    healthTimeout: {health_timeout}
"
    )
}

fn reason(s: &Value) -> &str {
    s["conditions"][0]["reason"].as_str().unwrap_or_default()
}

fn has_env(c: &Ctr, kv: &str) -> bool {
    c.env.iter().any(|e| e == kv)
}

/// The one web container of `app` on `host`, running and healthy, with `kv` in its env.
fn serving(tb: &Testbed, host: &str, app: &str, kv: &str) -> Option<Ctr> {
    let cs = component(tb, host, app, "berth.role=web");
    match cs.as_slice() {
        [c] if c.status == "running" && c.health.as_deref() == Some("healthy") && has_env(c, kv) => Some(c.clone()),
        _ => None,
    }
}

#[test]
fn a_failed_rollout_is_held_at_the_last_ready_generation_until_a_new_spec_or_a_retry() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("rollout");
    let app = ctx.app("ro-held");
    let ns = "prod";
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("app.yaml", &web_app(tb, &app, ns, "one", WEB_HEALTH));
    let op = ctx.operator("a", &["--resync", "1s"]);
    ctx.wait_status(&app, ns, secs(90), "Ready", |s| ready_at(s, 1));
    let old: Vec<_> = ["host1", "host2"].iter().map(|h| serving(tb, h, &app, "RELEASE=one").expect(h)).collect();

    // Generation 2 never turns healthy: rolled back on host1, recorded, and then left alone.
    ctx.apply("app.yaml", &web_app(tb, &app, ns, "two", NEVER_HEALTHY));
    let failed = ctx.wait_status(&app, ns, secs(90), "RolloutFailed", |s| {
        reason(s) == "RolloutFailed" && s["rolloutFailure"]["generation"] == 2
    });
    assert_eq!(failed["phase"], "Degraded", "{failed:#}");
    let record = &failed["rolloutFailure"];
    assert_eq!(record["host"], "host1", "{record:#}");
    assert_eq!(record["component"], "role/web", "{record:#}");
    assert_eq!(record["runningGeneration"], 1, "{record:#}");
    assert!(record["container"].as_str().unwrap().starts_with(&app), "{record:#}");
    assert!(record["reason"].as_str().unwrap().contains("not healthy within 4s"), "{record:#}");
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("rollout of generation 2 failed") && message.contains("host1"), "{message}");
    assert!(!message.contains("RELEASE"), "no env in status: {message}");

    // The rollback restarted host1's old container once; from then on, four more reconciles (resync
    // every second) leave both generation-1 containers untouched.
    let mut restored = Vec::new();
    for h in ["host1", "host2"] {
        let mut found = None;
        assert!(
            wait_until(secs(30), || {
                found = serving(tb, h, &app, "RELEASE=one");
                found.is_some()
            }),
            "{h}: generation 1 not serving after the rollback\n{}",
            op.log()
        );
        restored.push(found.unwrap());
    }
    assert_eq!(restored[0].id, old[0].id, "host1 runs its old container again");
    assert_eq!((&restored[1].id, &restored[1].started), (&old[1].id, &old[1].started), "host2 was touched");
    let since = unix_now();
    let labels = [("app", app.as_str()), ("namespace", ns)];
    let before = op.metric("berth_reconcile_total", &labels);
    assert!(
        wait_until(secs(60), || op.metric("berth_reconcile_total", &labels) >= before + 4.0),
        "no further reconciles\n{}",
        op.log()
    );
    for (h, c) in ["host1", "host2"].iter().zip(&restored) {
        let now = serving(tb, h, &app, "RELEASE=one").unwrap_or_else(|| panic!("{h}: not serving generation 1"));
        assert_eq!((&now.id, &now.started), (&c.id, &c.started), "{h}: the healthy container was restarted");
        let events = tb.lifecycle_events(h, &format!("berth.app={app}"), since, unix_now());
        assert!(events.is_empty(), "{h}: generation 2 was attempted again: {events:?}");
    }
    let still = ctx.status(&app, ns).unwrap();
    assert_eq!(reason(&still), "RolloutFailed", "{still:#}");

    // Drift is repaired from the last Ready generation: killed → started, removed → created again.
    tb.docker_ok("host1", &["kill", &restored[0].id]);
    assert!(
        wait_until(secs(60), || serving(tb, "host1", &app, "RELEASE=one")
            .is_some_and(|c| c.id == restored[0].id && c.started != restored[0].started)),
        "the killed generation-1 container was not started again\n{}",
        op.log()
    );
    tb.docker_ok("host2", &["rm", "-f", &old[1].id]);
    let hash = old[1].label("berth.config-hash").unwrap().to_string();
    assert!(
        wait_until(secs(60), || serving(tb, "host2", &app, "RELEASE=one")
            .is_some_and(|c| c.id != old[1].id && c.label("berth.config-hash") == Some(hash.as_str()))),
        "the removed container was not created again from generation 1\n{}",
        op.log()
    );

    // `berth rollout retry` is a new attempt (it fails again, and says so under the new request).
    let r = ctx.berth(&["rollout", "retry", &app, "-n", ns]).expect(0);
    let token = r.stdout.trim().rsplit(' ').next().unwrap().to_string();
    let again = ctx.wait_status(&app, ns, secs(90), "RolloutFailed for the retry", |s| {
        reason(s) == "RolloutFailed" && s["rolloutFailure"]["retryRequestedAt"] == token.as_str()
    });
    assert_eq!(again["rolloutRetryRequestedAt"], token.as_str(), "{again:#}");

    // A new spec is a new attempt, and this one is healthy.
    ctx.apply("app.yaml", &web_app(tb, &app, ns, "three", WEB_HEALTH));
    let ready = ctx.wait_status(&app, ns, secs(90), "Ready at generation 3", |s| ready_at(s, 3));
    assert!(ready.get("rolloutFailure").is_none(), "{ready:#}");
    for h in ["host1", "host2"] {
        assert!(serving(tb, h, &app, "RELEASE=three").is_some(), "{h}: not on generation 3");
    }
}

#[test]
fn a_health_wait_shows_in_the_status_and_a_gate_that_gave_up_blocks_at_once() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("rollout");
    let app = ctx.app("ro-gate");
    let ns = "prod";
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let _op = ctx.operator("a", &[]);
    let file = ctx.file("app.yaml", &gated_app(tb, &app, ns, "10s"));
    let waiter = {
        let (etcd, prefix) = (tb.etcd.clone(), ctx.prefix.clone());
        std::thread::spawn(move || {
            common::run::Run::of(common::run::berth_at(
                &etcd,
                &prefix,
                &["apply", "-f", &file, "--wait", "--timeout", "90s"],
            ))
        })
    };
    let waiting = |s: &Value| {
        s["phase"] == "Progressing"
            && s["message"].as_str().unwrap_or_default().contains("waiting for accessory/db on host3 to turn healthy")
    };
    let first = ctx.wait_status(&app, ns, secs(60), "waiting for the accessory", waiting);
    let seen_waiting = Instant::now();
    assert!(first["message"].as_str().unwrap().contains(" s of 10 s)"), "{first:#}");
    let blocked = ctx.wait_status(&app, ns, secs(60), "Blocked", |s| s["phase"] == "Blocked");
    let took = seen_waiting.elapsed();
    // One health timeout (10 s), not two: the role behind the gate gave up with the accessory.
    assert!(took < Duration::from_secs(15), "Blocked {took:?} after the wait began");
    let message = blocked["message"].as_str().unwrap();
    assert!(message.contains("role web waits for") && message.contains("not healthy within 10s"), "{message}");
    assert!(component(tb, "host1", &app, "berth.role=web").is_empty(), "web was created behind a failed gate");

    let r = waiter.join().unwrap().expect(4);
    assert!(r.stderr.contains("waiting for accessory/db on host3 to turn healthy"), "{}", r.stderr);
    assert!(r.stderr.contains("is Blocked"), "{}", r.stderr);
}

#[test]
fn sigterm_during_a_health_wait_ends_it_writes_the_status_then_hands_the_lease_over() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("rollout");
    let app = ctx.app("ro-term");
    let ns = "prod";
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let mut a = ctx.operator("a", &["--shutdown-grace", "60s"]);
    a.wait_leader(secs(30));
    let b = ctx.operator("b", &[]);
    ctx.apply("app.yaml", &gated_app(tb, &app, ns, "300s"));
    let waiting = |s: &Value| s["message"].as_str().unwrap_or_default().contains("waiting for accessory/db on host3");
    ctx.wait_status(&app, ns, secs(60), "waiting for the accessory", waiting);

    a.signal("TERM");
    // Without the wait being cut short, a would sit out its 60 s grace.
    let exit = a.wait_exit(secs(30)).unwrap_or_else(|| panic!("no exit within 30 s of SIGTERM\n{}", a.log()));
    assert!(exit.success(), "exit status {exit:?}\n{}", a.log());
    let log = a.log();
    let interrupted = log.find("converge interrupted").unwrap_or_else(|| panic!("no interrupted converge\n{log}"));
    let released = log.find("lease released").unwrap_or_else(|| panic!("lease never released\n{log}"));
    assert!(interrupted < released, "the lease went before the status was written\n{log}");

    // The standby leads and carries on with the same wait.
    b.wait_leader(secs(30));
    assert!(
        wait_until(secs(60), || b.log().contains("waiting for accessory/db on host3 to turn healthy")),
        "the new leader did not carry on\n{}",
        b.log()
    );
    ctx.wait_status(&app, ns, secs(60), "waiting again", |s| s["phase"] == "Progressing" && waiting(s));
}
