//! End to end on the real test bed, `berth converge` by hand: the spec fields a Kamal import needs
//! reach the containers on the hosts, checked as a user would, with `docker inspect`: env per host
//! (`hostEnv`), a readiness delay for a role without a healthcheck, logging, `docker run` options
//! (the host network too), an accessory placed by a role's hosts and its host directory.
//!
//! Isolation: its own etcd prefix and Hosts ([`Ctx`]), app names from [`Ctx::app`]; it publishes no
//! host port. It holds [`Testbed::shared`]. Its Hosts are host2 and host3 only: a converge also
//! tends the proxy of every Host it knows, and another test's proxy (made with that test's Host
//! settings) may be left on host1. The host directory it makes is removed when it ends (the bed's
//! daemons share this machine's file system).
mod common;

use std::path::PathBuf;

use common::containers::{one, Ctr};
use common::specs::{host_doc, AppSpec, RoleSpec, IDLE};
use common::testbed::Testbed;
use common::world::{ts, unix_now, Ctx};
use serde_json::{json, Value};

/// Removes a directory tree when dropped, so a failing test leaves none behind.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `KEY=value` of a container's env.
fn env_value<'c>(c: &'c Ctr, key: &str) -> Option<&'c str> {
    c.env.iter().find_map(|e| e.strip_prefix(&format!("{key}=")))
}

/// Seconds from a container's start to `at` (seconds since the epoch).
fn seconds_since_start(c: &Ctr, at: f64) -> f64 {
    let started = ts(&c.started).duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    at - started
}

/// Role `web` on host2 and host3 with env per host (host3's `TAG` is `host3_tag`), a readiness
/// delay and `docker run` options; accessory `agent` placed by `web`'s hosts alone, with a host
/// directory; the App's logging, overlaid by the accessory's.
fn spec(tb: &Testbed, app: &str, ns: &str, host3_tag: &str) -> AppSpec {
    let web = RoleSpec::on(&["host2", "host3"])
        .cmd(IDLE)
        .env("TAG", "base")
        .host_env("host2", "TAG", "two")
        .host_env("host3", "TAG", host3_tag)
        .host_env("host3", "CANARY", "yes")
        .readiness_delay("3s")
        .options(
            r#"{user: "1000:1000", workdir: /srv/app, addHosts: ["db.internal:10.0.0.5"], capAdd: [NET_ADMIN], ulimits: {nofile: "1024:2048"}, shmSize: 64m}"#,
        );
    let agent = RoleSpec::on(&[])
        .image(&tb.images.accessory)
        .cmd(IDLE)
        .on_roles(&["web"])
        .directory("data:/data")
        .logging(r#"{options: {max-file: "2"}}"#);
    AppSpec::new(app, ns, &tb.images.app_v1)
        .logging("{driver: json-file, options: {max-size: 10m}}")
        .accessory("agent", agent)
        .role("web", web)
}

#[test]
fn kamal_fields_converge_to_what_docker_inspect_shows() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("kamal-fields");
    let app = ctx.app("e2e-kamal");
    let ns = "prod";
    let data_dir = PathBuf::from(format!("/var/lib/berth/{app}-{ns}/agent/data"));
    let _cleanup = RemoveDir(PathBuf::from(format!("/var/lib/berth/{app}-{ns}")));
    let hosts: Vec<String> = ["host2", "host3"].iter().map(|h| host_doc(h, &tb.host(h).unix)).collect();
    ctx.apply("hosts.yaml", &hosts.join("---\n"));
    ctx.apply("app.yaml", &spec(tb, &app, ns, "three").yaml());

    let r = ctx.converge(&app, ns).expect(0);
    let converged_at = unix_now();
    assert_eq!(r.changes(), "create 4, start 4", "{}", r.stdout);
    let status = ctx.current_status(&app, ns);
    assert_eq!(status["phase"], "Ready", "{status:#}");

    // hostEnv: each host's container has its own env, and so its own config hash and name.
    let web2 = one(tb, "host2", &app, ns, "role/web");
    let web3 = one(tb, "host3", &app, ns, "role/web");
    assert_eq!((env_value(&web2, "TAG"), env_value(&web2, "CANARY")), (Some("two"), None), "{:?}", web2.env);
    assert_eq!((env_value(&web3, "TAG"), env_value(&web3, "CANARY")), (Some("three"), Some("yes")), "{:?}", web3.env);
    assert_ne!(web2.label("berth.config-hash"), web3.label("berth.config-hash"));
    assert_ne!(web2.name, web3.name);

    // readinessDelay: without a healthcheck, the converge counted each web container ready only
    // 3 s after it started (the bed's daemons share this machine's clock).
    for c in [&web2, &web3] {
        let waited = seconds_since_start(c, converged_at);
        assert!(waited >= 3.0, "{} counted ready {waited:.2}s after its start", c.name);
        assert_eq!((c.status.as_str(), c.health.as_deref()), ("running", None));
    }

    // options, as Docker holds them.
    for c in [&web2, &web3] {
        let (config, host) = (&c.raw["Config"], &c.raw["HostConfig"]);
        assert_eq!(config["User"], "1000:1000");
        assert_eq!(config["WorkingDir"], "/srv/app");
        assert_eq!(host["ExtraHosts"], json!(["db.internal:10.0.0.5"]));
        assert_eq!(host["CapAdd"], json!(["NET_ADMIN"]));
        assert_eq!(host["Ulimits"], json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}]));
        assert_eq!(host["ShmSize"], 64 << 20);
        assert_eq!(host["LogConfig"], json!({"Type": "json-file", "Config": {"max-size": "10m"}}));
    }
    // ... and as the process sees them.
    let seen = tb.docker_ok("host2", &["exec", &web2.id, "sh", "-c", "id -u; pwd; grep db.internal /etc/hosts"]);
    let seen: Vec<&str> = seen.lines().map(str::trim).collect();
    assert_eq!(seen[..2], ["1000", "/srv/app"], "{seen:?}");
    assert!(seen[2].starts_with("10.0.0.5") && seen[2].ends_with("db.internal"), "{seen:?}");

    // The accessory runs on every host of the role (it names no hosts), with its host directory
    // bound and the App's logging overlaid by its own.
    let bind = format!("{}:/data", data_dir.display());
    for h in ["host2", "host3"] {
        let a = one(tb, h, &app, ns, "accessory/agent");
        assert_eq!(a.raw["HostConfig"]["Binds"], json!([bind]), "{h}");
        let mount = a.raw["Mounts"].as_array().unwrap().iter().find(|m| m["Destination"] == "/data").cloned();
        assert_eq!(mount.as_ref().map(|m| &m["Source"]), Some(&Value::from(data_dir.display().to_string())), "{h}");
        let log = &a.raw["HostConfig"]["LogConfig"];
        assert_eq!(log, &json!({"Type": "json-file", "Config": {"max-size": "10m", "max-file": "2"}}), "{h}");
    }
    assert!(data_dir.is_dir(), "Docker made {}", data_dir.display());
    let agent2 = one(tb, "host2", &app, ns, "accessory/agent");
    tb.docker_ok("host2", &["exec", &agent2.id, "sh", "-c", "echo kept > /data/probe"]);

    // Nothing to do the second time.
    let again = ctx.converge(&app, ns).expect(0);
    assert_eq!(again.changes(), "", "{}", again.stdout);

    // A changed hostEnv of one host replaces that host's container only.
    ctx.apply("app.yaml", &spec(tb, &app, ns, "trois").yaml());
    let r = ctx.converge(&app, ns).expect(0);
    let mut changes: Vec<String> = r.changes().split(", ").map(String::from).collect();
    changes.sort();
    assert_eq!(changes, ["create 1", "remove 1", "start 1", "stop 1"], "{}", r.stdout);
    assert_eq!(one(tb, "host2", &app, ns, "role/web").id, web2.id, "host2 keeps its container");
    assert_eq!(env_value(&one(tb, "host3", &app, ns, "role/web"), "TAG"), Some("trois"));

    // Deleting the App removes its containers; the host directory and its data stay.
    ctx.delete(&app, ns);
    assert_eq!(std::fs::read_to_string(data_dir.join("probe")).unwrap().trim(), "kept");
}

/// `options.network: host`: the container shares its host's network, so it joins no app network
/// and has no alias there; it still converges to Ready.
#[test]
fn a_host_network_container_joins_no_app_network() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("kamal-fields");
    let app = ctx.app("e2e-hostnet");
    let ns = "prod";
    ctx.apply("hosts.yaml", &host_doc("host2", &tb.host("host2").unix));
    let spec = AppSpec::new(&app, ns, &tb.images.app_v1)
        .role("agent", RoleSpec::on(&["host2"]).cmd(IDLE).options("{network: host}"));
    ctx.apply("app.yaml", &spec.yaml());
    ctx.converge(&app, ns).expect(0);
    assert_eq!(ctx.current_status(&app, ns)["phase"], "Ready");
    let c = one(tb, "host2", &app, ns, "role/agent");
    assert_eq!(c.raw["HostConfig"]["NetworkMode"], "host");
    let networks: Vec<&String> = c.raw["NetworkSettings"]["Networks"].as_object().unwrap().keys().collect();
    assert_eq!(networks, ["host"], "no app network");
    ctx.delete(&app, ns);
}
