//! End to end on the real test bed, `berth converge` by hand: what a spec change changes on the hosts
//! and what it leaves alone (a removed role pruned, a new role added beside a running accessory, a
//! repeat converge doing nothing), what `berth plan` shows, and what deleting an App removes.
//! Every result is checked the way a user would check it: the Docker CLI on the hosts (`docker ps -a
//! --filter label=…`, `docker inspect` ids and timestamps, `docker events`) and HTTP against the
//! published ports.
//!
//! Isolation: each test has its own etcd prefix and its own Hosts in it ([`Ctx`]), app names from
//! [`Ctx::app`] and host ports of its own ([`port`]), because every test shares the same three Docker
//! daemons; it holds [`Testbed::shared`]. Each test deletes its apps through berth (delete +
//! converge) and [`Ctx`] removes, by label, whatever a failing test left behind.
mod common;

use std::sync::atomic::AtomicU16;

use common::containers::{app_containers, inspect, one, shorts, snapshot};
use common::ports::host_port;
use common::specs::{unix_hosts, AppSpec, RoleSpec, HTTPD, IDLE, WEB_HEALTH};
use common::testbed::{secs, unique, wait_for_http, Testbed};
use common::world::{unix_now, Ctx};
use serde_json::Value;

/// A host port no other test of this run publishes: `20000 + (pid % 150) * 20 + n`, n < 20. The
/// engine binaries share 20000..32000, below 32768, where Docker picks the ports of other tests' `-p 80`.
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 20000, 150, 20, "engine_changes")
}

/// A role removed from the spec: its containers go on every host; the remaining role's containers
/// keep their ids; a hand-started container with a berth-like name (no labels) and another app's
/// container on the same host survive.
#[test]
fn removed_role_is_pruned_on_every_host_and_nothing_else_is_touched() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let (app, other) = (ctx.app("e2e-prune"), ctx.app("e2e-other"));
    let (web_port, other_port) = (port(), port());
    let ns = "prod";
    let image = &tb.images.app_v1;
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let spec = |with_worker: bool| {
        let mut s =
            AppSpec::new(&app, ns, image).role("web", RoleSpec::on(&["host1", "host2"]).cmd(HTTPD).publish(web_port));
        if with_worker {
            s = s.role("worker", RoleSpec::on(&["host1", "host2"]).cmd(IDLE));
        }
        s.yaml()
    };
    ctx.apply("app.yaml", &spec(true));
    let other_spec =
        AppSpec::new(&other, ns, image).role("worker", RoleSpec::on(&["host1"]).cmd(HTTPD).publish(other_port));
    ctx.apply("other.yaml", &other_spec.yaml());
    ctx.converge(&app, ns).expect(0);
    ctx.converge(&other, ns).expect(0);

    // Someone starts a container by hand that looks like one of berth's, but has no labels.
    let lookalike = format!("{app}-{ns}-worker-0badc0de");
    let _rm = tb.container("host1", &lookalike);
    let hand_id = tb.docker_ok("host1", &["run", "-d", "--name", &lookalike, image, "sleep", "600"]);

    let web_before: Vec<String> = ["host1", "host2"].iter().map(|h| one(tb, h, &app, ns, "role/web").id).collect();
    for h in ["host1", "host2"] {
        one(tb, h, &app, ns, "role/worker");
    }
    let other_before = one(tb, "host1", &other, ns, "role/worker");

    ctx.apply("app.yaml", &spec(false));
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.changes(), "remove 2, stop 2", "{}", r.stdout);

    for (h, before) in ["host1", "host2"].iter().zip(&web_before) {
        let left = app_containers(tb, h, &app);
        assert!(left.iter().all(|c| c.role() != Some("worker")), "worker left on {h}: {:#?}", shorts(&left));
        assert_eq!(left.len(), 1, "{h}: {:#?}", shorts(&left));
        assert_eq!(&left[0].id, before, "web on {h} was replaced");
        assert_eq!(left[0].status, "running");
        assert_eq!(wait_for_http(&tb.host(h).address, web_port, "/", "v1", secs(10)).trim(), "v1");
    }
    let hand = &inspect(tb, "host1", std::slice::from_ref(&hand_id))[0];
    assert_eq!((hand.name.as_str(), hand.status.as_str()), (lookalike.as_str(), "running"));
    let other_after = one(tb, "host1", &other, ns, "role/worker");
    assert_eq!((&other_after.id, &other_after.started), (&other_before.id, &other_before.started));
    assert_eq!(other_after.status, "running");

    let status = ctx.current_status(&app, ns);
    assert_eq!(status["phase"], "Ready", "{status:#}");
    assert!(!status.to_string().contains("role/worker"), "{status:#}");

    ctx.delete(&app, ns);
    ctx.delete(&other, ns);
    assert!(inspect(tb, "host1", &[hand_id]).iter().all(|c| c.status == "running"), "delete touched the lookalike");
}

/// A new role on a host the app did not use yet, while its accessory runs: the accessory keeps its
/// id and its StartedAt, the new role runs. A second converge with no change does nothing at all.
#[test]
fn new_role_on_a_new_host_leaves_the_running_accessory_alone_and_a_repeat_converge_changes_nothing() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-grow");
    let ns = "prod";
    let (web_port, api_port) = (port(), port());
    let (image, accessory) = (&tb.images.app_v1, &tb.images.accessory);
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let spec = |with_api: bool| {
        let mut s = AppSpec::new(&app, ns, image)
            .accessory("db", RoleSpec::on(&["host3"]).image(accessory).cmd(HTTPD).health(WEB_HEALTH))
            .role("web", RoleSpec::on(&["host1"]).cmd(HTTPD).publish(web_port));
        if with_api {
            s = s.role("api", RoleSpec::on(&["host2"]).cmd(HTTPD).publish(api_port));
        }
        s.yaml()
    };
    ctx.apply("app.yaml", &spec(false));
    ctx.converge(&app, ns).expect(0);
    let db = one(tb, "host3", &app, ns, "accessory/db");
    let web = one(tb, "host1", &app, ns, "role/web");
    assert_eq!(db.health.as_deref(), Some("healthy"));
    assert!(app_containers(tb, "host2", &app).is_empty());

    ctx.apply("app.yaml", &spec(true));
    let since = unix_now();
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.changes(), "create 1, start 1", "{}", r.stdout);
    let db_after = one(tb, "host3", &app, ns, "accessory/db");
    assert_eq!((&db_after.id, &db_after.started), (&db.id, &db.started), "the accessory was touched");
    assert_eq!(db_after.status, "running");
    let web_after = one(tb, "host1", &app, ns, "role/web");
    assert_eq!((&web_after.id, &web_after.started), (&web.id, &web.started), "web was touched");
    let api = one(tb, "host2", &app, ns, "role/api");
    assert_eq!(api.status, "running");
    // What Docker saw: the new container created and started on host2, nothing anywhere else.
    assert_eq!(
        tb.lifecycle_events_since("host2", &format!("berth.app={app}"), since),
        [format!("create {}", api.name), format!("start {}", api.name)]
    );
    for h in ["host1", "host3"] {
        let events = tb.lifecycle_events_since(h, &format!("berth.app={app}"), since);
        assert!(events.is_empty(), "adding a role on host2 caused on {h}: {events:?}");
    }
    assert_eq!(wait_for_http(&tb.host("host2").address, api_port, "/", "v1", secs(10)).trim(), "v1");

    // Nothing changed since: no Docker call that changes anything.
    let before = snapshot(tb, &app);
    let since = unix_now();
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.actions(), "no changes", "{}", r.stdout);
    assert_eq!(snapshot(tb, &app), before);
    for h in tb.host_names() {
        let events = tb.lifecycle_events_since(h, &format!("berth.app={app}"), since);
        assert!(events.is_empty(), "a converge without changes caused on {h}: {events:?}");
    }
    let plan = ctx.berth(&["plan", &app, "-n", ns]).expect(0);
    assert!(plan.stdout.contains("nothing to do"), "{}", plan.stdout);
    assert_eq!(ctx.current_status(&app, ns)["phase"], "Ready");

    ctx.delete(&app, ns);
}

/// `berth plan` changes nothing and never prints env values; deleting an App removes its
/// containers and networks but keeps its named volumes, then its spec and status keys.
#[test]
fn plan_changes_nothing_and_hides_env_values_and_delete_keeps_only_volumes() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-del");
    let ns = "prod";
    let web_port = port();
    let (secret, new_secret) = (unique("pw-old-s3cr3t"), unique("pw-new-s3cr3t"));
    let spec = |password: &str| {
        AppSpec::new(&app, ns, &tb.images.app_v1)
            .env("DB_PASSWORD", password)
            .accessory(
                "db",
                RoleSpec::on(&["host3"])
                    .image(&tb.images.accessory)
                    .cmd(HTTPD)
                    .env("ROOT_PASSWORD", password)
                    .volume("data:/data"),
            )
            .role("web", RoleSpec::on(&["host1"]).cmd(HTTPD).publish(web_port))
            .yaml()
    };
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("app.yaml", &spec(&secret));
    ctx.converge(&app, ns).expect(0);
    let before = snapshot(tb, &app);
    assert_eq!(before.len(), 2, "{before:?}");

    let r = ctx.berth(&["plan", &app, "-n", ns]).expect(0);
    assert!(r.stdout.contains("nothing to do"), "{}", r.stdout);
    let changed = ctx.file("changed.yaml", &spec(&new_secret));
    let json = ctx.berth(&["plan", "-f", &changed, "-o", "json"]).expect(0);
    let plan: Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", json.stdout));
    let replaces = json.stdout.matches("\"action\": \"replace\"").count();
    assert_eq!(replaces, 2, "{plan:#}");
    assert!(json.stdout.contains("\"DB_PASSWORD\": \"***\""), "{}", json.stdout);
    let table = ctx.berth(&["plan", "-f", &changed]).expect(0);
    for out in [&json.stdout, &json.stderr, &table.stdout, &table.stderr] {
        assert!(!out.contains(&secret) && !out.contains(&new_secret), "plan printed an env value:\n{out}");
    }
    let status = ctx.berth(&["status", &app, "-n", ns, "-o", "json"]).expect(0);
    assert!(!status.stdout.contains(&secret), "{}", status.stdout);
    assert_eq!(snapshot(tb, &app), before, "plan changed containers");

    let network = format!("berth-{app}-{ns}");
    let volume = format!("{app}-{ns}-data");
    for h in ["host1", "host3"] {
        tb.docker_ok(h, &["network", "inspect", &network]);
    }
    tb.docker_ok("host3", &["volume", "inspect", &volume]);
    let app_key = format!("{}/apps/{ns}/{app}", ctx.prefix);
    let status_key = format!("{}/status/apps/{ns}/{app}", ctx.prefix);
    let keys = ctx.keys();
    assert!(keys.contains(&app_key) && keys.contains(&status_key), "{keys:?}");

    ctx.berth(&["delete", "app", &app, "-n", ns]).expect(0);
    assert_eq!(snapshot(tb, &app), before, "delete alone must not touch containers");
    let r = ctx.converge(&app, ns).expect(0);
    assert!(r.stdout.contains(&format!("app/{app} -n {ns} deleted")), "{}", r.stdout);
    for h in tb.host_names() {
        assert!(app_containers(tb, h, &app).is_empty(), "{h} still has containers of {app}");
        let nets =
            tb.docker_ok(h, &["network", "ls", "--filter", &format!("label=berth.app={app}"), "--format", "{{.Name}}"]);
        assert!(nets.is_empty(), "{h} still has the network: {nets}");
    }
    tb.docker_ok("host3", &["volume", "inspect", &volume]);
    let keys = ctx.keys();
    assert!(!keys.contains(&app_key) && !keys.contains(&status_key), "{keys:?}");
    ctx.berth(&["status", &app, "-n", ns]).expect(3);
}
