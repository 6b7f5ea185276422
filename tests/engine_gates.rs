//! End to end on the real test bed, `berth converge` by hand: health gates and rollouts. Roles wait
//! for their accessory's healthcheck (and never start behind one that stays unhealthy); a new version
//! replaces containers host by host and one that never turns healthy is rolled back where it was
//! tried first. Checked with `docker inspect` (ids, timestamps, the health log) and HTTP.
//!
//! Isolation as in every engine binary: [`Ctx`] per test, [`Ctx::app`] names, this binary's own
//! host ports ([`port`]), [`Testbed::shared`] held throughout.
mod common;

use std::sync::atomic::AtomicU16;
use std::time::Duration;

use common::containers::{app_containers, one, shorts, Ctr};
use common::ports::host_port;
use common::specs::{unix_hosts, AppSpec, RoleSpec, HTTPD, IDLE, NEVER_HEALTHY, WEB_HEALTH};
use common::testbed::{http_body, secs, wait_for_http, Testbed};
use common::world::{ts, Ctx};
use serde_json::Value;

/// A host port no other test of this run publishes: `23000 + (pid % 150) * 20 + n`, n < 20 (the
/// engine binaries share 20000..32000).
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 23000, 150, 20, "engine_gates")
}

/// Roles wait for their accessory's healthcheck: every app container is created after the
/// accessory turned healthy (its ready file appears 4 s after it started).
#[test]
fn roles_are_created_only_after_their_accessory_turned_healthy() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-gate");
    let ns = "prod";
    let web_port = port();
    let (image, accessory) = (&tb.images.app_v1, &tb.images.accessory);
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let db = RoleSpec::on(&["host3"])
        .image(accessory)
        .cmd(r#""sleep 4; touch /tmp/ready; trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait""#)
        .health(r#"{cmd: "test -f /tmp/ready", interval: 1s, retries: 20}"#);
    let spec = AppSpec::new(&app, ns, image)
        .accessory("db", db)
        .role("web", RoleSpec::on(&["host1", "host2"]).cmd(HTTPD).publish(web_port))
        .role("jobs", RoleSpec::on(&["host1"]).cmd(IDLE).depends_on(&["db"]))
        .rollout("healthTimeout", "30s");
    ctx.apply("app.yaml", &spec.yaml());
    ctx.converge(&app, ns).expect(0);

    let db = one(tb, "host3", &app, ns, "accessory/db");
    assert_eq!(db.health.as_deref(), Some("healthy"));
    let earliest = ts(&db.started) + Duration::from_secs(4);
    // Docker keeps the last five checks: the last failure (before the ready file) and the first
    // success after a failure bound the moment it turned healthy, when they are still in the log.
    let log = db.raw["State"]["Health"]["Log"].as_array().cloned().unwrap_or_default();
    let ok = |e: &Value| e["ExitCode"].as_i64() == Some(0);
    let last_failure = log.iter().filter(|e| !ok(e)).map(|e| ts(e["End"].as_str().unwrap())).max();
    let turned_healthy = log.windows(2).find(|w| !ok(&w[0]) && ok(&w[1])).map(|w| ts(w[1]["End"].as_str().unwrap()));
    let app_containers: Vec<(String, Ctr)> = [("host1", "role/web"), ("host2", "role/web"), ("host1", "role/jobs")]
        .iter()
        .map(|(h, c)| (h.to_string(), one(tb, h, &app, ns, c)))
        .collect();
    for (h, c) in &app_containers {
        let created = ts(&c.created);
        assert!(
            created > earliest,
            "{} on {h} created at {} before {} (accessory start + 4 s)",
            c.name,
            c.created,
            db.started
        );
        if let Some(f) = last_failure {
            assert!(
                created > f,
                "{} on {h} created at {} before a failing accessory check: {log:#?}",
                c.name,
                c.created
            );
        }
        if let Some(t) = turned_healthy {
            assert!(
                created >= t,
                "{} on {h} created at {} before the accessory turned healthy: {log:#?}",
                c.name,
                c.created
            );
        }
        assert_eq!(c.status, "running");
    }
    ctx.delete(&app, ns);
}

/// An accessory that never turns healthy: no app container is created, the status is Blocked and
/// names the accessory, and the one-shot converge exits 4.
#[test]
fn an_accessory_that_never_turns_healthy_blocks_its_roles() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-block");
    let ns = "prod";
    let web_port = port();
    let (image, accessory) = (&tb.images.app_v1, &tb.images.accessory);
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let spec = AppSpec::new(&app, ns, image)
        .accessory("db", RoleSpec::on(&["host3"]).image(accessory).cmd(HTTPD).health(NEVER_HEALTHY))
        .role("web", RoleSpec::on(&["host1", "host2"]).cmd(HTTPD).publish(web_port))
        .rollout("healthTimeout", "5s");
    ctx.apply("app.yaml", &spec.yaml());
    let r = ctx.converge(&app, ns).expect(4);
    assert!(r.stderr.contains("is Blocked"), "{}", r.stderr);
    let status = ctx.current_status(&app, ns);
    assert_eq!(status["phase"], "Blocked", "{status:#}");
    let message = status["message"].as_str().unwrap();
    let db = one(tb, "host3", &app, ns, "accessory/db");
    assert!(message.contains(&db.name) && message.contains("role web"), "{message}");
    for h in ["host1", "host2"] {
        let left = app_containers(tb, h, &app);
        assert!(
            left.is_empty(),
            "app containers created on {h} although db never turned healthy: {:#?}",
            shorts(&left)
        );
    }
    ctx.delete(&app, ns);
}

/// An env change replaces the containers (healthy, old ones gone). A new version whose
/// healthcheck fails is rolled back on the first host of the batch and the other host is not
/// touched; the status is Degraded with the rollback and the converge exits 4.
#[test]
fn env_change_replaces_and_a_failing_version_rolls_back_on_the_first_host_only() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-roll");
    let ns = "prod";
    let web_port = port();
    let spec = |image: &str, release: &str, health: &str| {
        AppSpec::new(&app, ns, image)
            .env("RELEASE", release)
            .role("web", RoleSpec::on(&["host1", "host2"]).cmd(HTTPD).publish(web_port).health(health))
            .rollout("maxUnavailable", "1")
            .rollout("healthTimeout", "5s")
            .yaml()
    };
    let hosts = ["host1", "host2"];
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("app.yaml", &spec(&tb.images.app_v1, "one", WEB_HEALTH));
    ctx.converge(&app, ns).expect(0);
    let first: Vec<Ctr> = hosts.iter().map(|h| one(tb, h, &app, ns, "role/web")).collect();

    ctx.apply("app.yaml", &spec(&tb.images.app_v1, "two", WEB_HEALTH));
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.changes(), "create 2, remove 2, start 2, stop 2", "{}", r.stdout);
    let second: Vec<Ctr> = hosts.iter().map(|h| one(tb, h, &app, ns, "role/web")).collect();
    for ((h, old), new) in hosts.iter().zip(&first).zip(&second) {
        assert_ne!(new.id, old.id, "{h}: not replaced");
        assert_eq!((new.status.as_str(), new.health.as_deref()), ("running", Some("healthy")), "{h}");
        assert!(new.raw["Config"]["Env"].to_string().contains("RELEASE=two"), "{h}");
        assert!(!tb.docker(h, &["inspect", &old.id]).status.success(), "{h}: the old container is still there");
        assert_eq!(wait_for_http(&tb.host(h).address, web_port, "/", "v1", secs(10)).trim(), "v1");
    }

    // v2 never turns healthy.
    ctx.apply("app.yaml", &spec(&tb.images.app_v2, "two", NEVER_HEALTHY));
    let r = ctx.converge(&app, ns).expect(4);
    assert!(r.stderr.contains("is Degraded") && r.stderr.contains("rolled back"), "{}", r.stderr);
    let status = ctx.current_status(&app, ns);
    assert_eq!(status["phase"], "Degraded", "{status:#}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("rolled back")
            && message.contains("on host1")
            && message.contains(&format!("{} restored", second[0].name)),
        "{message}"
    );
    assert!(!message.contains("host2"), "host2 was part of the rollout: {message}");

    let host1 = one(tb, "host1", &app, ns, "role/web");
    assert_eq!(host1.id, second[0].id, "host1 does not run its old container again");
    assert_eq!(host1.status, "running");
    assert_eq!(wait_for_http(&tb.host("host1").address, web_port, "/", "v1", secs(10)).trim(), "v1");
    let host2 = one(tb, "host2", &app, ns, "role/web");
    assert_eq!((&host2.id, &host2.started), (&second[1].id, &second[1].started), "host2 was touched");
    assert_eq!(http_body(&tb.host("host2").address, web_port).as_deref(), Some("v1"));

    ctx.delete(&app, ns);
}
