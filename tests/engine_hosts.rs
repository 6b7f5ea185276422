//! End to end on the real test bed, `berth converge` by hand: hosts. A host whose dockerd is down
//! degrades the apps on it while the other hosts converge (and one the app never used does not);
//! a mutual-TLS host converges and bad credentials are refused naming the host; an `ssh://` host
//! converges through the forward and a refused key is named.
//!
//! Isolation as in every engine binary: [`Ctx`] per test, [`Ctx::app`] names, this binary's own
//! host ports ([`port`]). Tests that need every host up hold [`Testbed::shared`]; the ones that
//! stop a host go through [`Testbed::outage`].
mod common;

use std::path::PathBuf;
use std::sync::atomic::AtomicU16;

use common::containers::{app_containers, one, Ctr};
use common::ports::host_port;
use common::run::{berth_cmd, Run};
use common::specs::{host_doc, tls_host_doc, unix_hosts, AppSpec, RoleSpec, HTTPD};
use common::testbed::{secs, wait_for_http, wait_until, Testbed};
use common::world::{block_on, Ctx};
use serde_json::Value;

/// A host port no other test of this run publishes: `29000 + (pid % 150) * 20 + n`, n < 20 (the
/// engine binaries share 20000..32000).
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 29000, 150, 20, "engine_hosts")
}

/// An App whose role `web` runs httpd on `hosts`, published on `port`.
fn web_app(tb: &Testbed, app: &str, ns: &str, hosts: &[&str], port: u16) -> AppSpec {
    AppSpec::new(app, ns, &tb.images.app_v1).role("web", RoleSpec::on(hosts).cmd(HTTPD).publish(port))
}

/// One host's dockerd is down: the other hosts converge (also a change), the status names the
/// down host and its error, and the one-shot exits 4. Once the host is back, converge gives Ready.
#[test]
fn a_down_host_degrades_the_app_while_the_other_hosts_converge() {
    let tb = Testbed::get();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-down");
    let ns = "prod";
    let web_port = port();
    let all = ["host1", "host2", "host3"];
    let spec = |release: &str| {
        AppSpec::new(&app, ns, &tb.images.app_v1)
            .env("RELEASE", release)
            .role("web", RoleSpec::on(&all).cmd(HTTPD).publish(web_port))
            .rollout("maxUnavailable", "1")
            .yaml()
    };
    let first: Vec<Ctr> = {
        let _up = tb.shared();
        ctx.apply("hosts.yaml", &unix_hosts(tb));
        ctx.apply("app.yaml", &spec("one"));
        ctx.converge(&app, ns).expect(0);
        all.iter().map(|h| one(tb, h, &app, ns, "role/web")).collect()
    };

    let outage = tb.outage("host2");
    let check_down = |status: &Value| {
        assert_eq!(status["phase"], "Degraded", "{status:#}");
        assert!(status["message"].as_str().unwrap().contains("host host2: "), "{status:#}");
        let h2 = &status["hosts"]["host2"];
        assert_eq!(h2["reachable"], false, "{status:#}");
        assert!(h2["error"].as_str().is_some_and(|e| e.starts_with("host host2: connect: ")), "{status:#}");
    };
    // What host1 and host3 run now (another test process may have restarted a host in between).
    let up = ["host1", "host3"];
    let before: Vec<Ctr> = up
        .iter()
        .map(|h| {
            assert!(wait_until(secs(20), || one(tb, h, &app, ns, "role/web").status == "running"), "{h}");
            one(tb, h, &app, ns, "role/web")
        })
        .collect();
    let r = ctx.converge(&app, ns).expect(4);
    assert_eq!(r.actions(), "no changes", "{}", r.stdout);
    assert!(r.stderr.contains("host2"), "{}", r.stderr);
    check_down(&ctx.current_status(&app, ns));
    for (h, c) in up.iter().zip(&before) {
        let now = one(tb, h, &app, ns, "role/web");
        assert_eq!((&now.id, &now.started), (&c.id, &c.started), "{h} was touched");
    }

    // A change while host2 is down rolls out on the hosts that are up.
    ctx.apply("app.yaml", &spec("two"));
    let r = ctx.converge(&app, ns).expect(4);
    assert_eq!(r.changes(), "create 2, remove 2, start 2, stop 2", "{}", r.stdout);
    check_down(&ctx.current_status(&app, ns));
    for (h, c) in all.iter().zip(&first).filter(|(h, _)| **h != "host2") {
        let now = one(tb, h, &app, ns, "role/web");
        assert_ne!(now.id, c.id, "{h} was not replaced");
        assert!(now.raw["Config"]["Env"].to_string().contains("RELEASE=two"), "{h}");
        assert_eq!(wait_for_http(&tb.host(h).address, web_port, "/", "v1", secs(10)).trim(), "v1");
    }

    // host2 comes back (its old container too, by its restart policy) and catches up.
    drop(outage);
    let _up = tb.shared();
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.changes(), "create 1, remove 1, start 1, stop 1", "{}", r.stdout);
    let status = ctx.current_status(&app, ns);
    assert_eq!(status["phase"], "Ready", "{status:#}");
    assert_eq!(status["hosts"]["host2"]["reachable"], true);
    let h2 = one(tb, "host2", &app, ns, "role/web");
    assert_ne!(h2.id, first[1].id);
    assert!(h2.raw["Config"]["Env"].to_string().contains("RELEASE=two"));
    assert_eq!(wait_for_http(&tb.host("host2").address, web_port, "/", "v1", secs(10)).trim(), "v1");

    ctx.delete(&app, ns);
}

/// A Host that is down but that the app neither uses nor used is not the app's trouble: the app stays
/// Ready, and deleting it finishes (its keys go) while that host is still down.
#[test]
fn a_down_host_the_app_never_used_neither_degrades_it_nor_blocks_its_deletion() {
    let tb = Testbed::get();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-elsewhere");
    let ns = "prod";
    let web_port = port();
    {
        let _up = tb.shared();
        ctx.apply("hosts.yaml", &unix_hosts(tb));
        ctx.apply("app.yaml", &web_app(tb, &app, ns, &["host1"], web_port).yaml());
        ctx.converge(&app, ns).expect(0);
    }
    let outage = tb.outage("host3");
    let r = ctx.converge(&app, ns).expect(0);
    assert_eq!(r.actions(), "no changes", "{}", r.stdout);
    let status = ctx.current_status(&app, ns);
    assert_eq!(status["phase"], "Ready", "{status:#}");
    assert!(status["hosts"].get("host3").is_none(), "host3 is not this app's business: {status:#}");

    ctx.berth(&["delete", "app", &app, "-n", ns]).expect(0);
    let r = ctx.converge(&app, ns).expect(0);
    assert!(r.stdout.contains(&format!("app/{app} -n {ns} deleted")), "{}", r.stdout);
    assert!(app_containers(tb, "host1", &app).is_empty());
    assert!(ctx.keys().iter().all(|k| !k.contains(&app)), "{:?}", ctx.keys());
    drop(outage);
}

/// A host reached over tcp with mutual TLS converges like the others; the same kind of host with a
/// client certificate from another CA, or with plain tcp, is refused with an error naming it.
#[test]
fn a_mutual_tls_host_converges_and_bad_credentials_are_refused_naming_the_host() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let (app, rogue_app) = (ctx.app("e2e-tls"), ctx.app("e2e-rogue"));
    let ns = "prod";
    let (web_port, rogue_port) = (port(), port());
    // tls2 is host2's daemon over tcp; rogue3 is host3's, each named by one Host only.
    let (h2, h3) = (tb.host("host2"), tb.host("host3"));
    ctx.apply("tls2.yaml", &tls_host_doc("tls2", &h2.tcp, &tb.client_tls));
    ctx.apply("app.yaml", &web_app(tb, &app, ns, &["tls2"], web_port).yaml());
    let r = ctx.converge(&app, ns).expect(0);
    assert!(r.stdout.contains("tls2"), "{}", r.stdout);
    let web = one(tb, "host2", &app, ns, "role/web");
    assert_eq!(web.status, "running");
    assert_eq!(wait_for_http(&h2.address, web_port, "/", "v1", secs(10)).trim(), "v1");
    assert_eq!(ctx.current_status(&app, ns)["hosts"]["tls2"]["reachable"], true);

    // A client certificate from another CA.
    ctx.apply("rogue3.yaml", &tls_host_doc("rogue3", &h3.tcp, &tb.rogue_tls));
    ctx.apply("rogue-app.yaml", &web_app(tb, &rogue_app, ns, &["rogue3"], rogue_port).yaml());
    let r = ctx.converge(&rogue_app, ns).expect(4);
    assert!(r.stderr.contains("rogue3"), "{}", r.stderr);
    let status = ctx.current_status(&rogue_app, ns);
    assert_eq!(status["phase"], "Degraded", "{status:#}");
    let error = status["hosts"]["rogue3"]["error"].as_str().unwrap_or_default().to_string();
    eprintln!("rogue certificate: {error}");
    assert!(
        error.starts_with("host rogue3: ") && error.to_lowercase().contains("certificate"),
        "the refusal does not say the certificate was refused: {error:?}"
    );
    assert!(app_containers(tb, "host3", &rogue_app).is_empty());

    // Plain tcp without `insecure: true`: apply refuses it, pointing at the Host's document and
    // field and naming the fix (validation errors are located by file[document], not by name).
    let plain = ctx.file("plain.yaml", &host_doc("plain3", &h3.tcp));
    let r = ctx.berth(&["apply", "-f", &plain]).expect(1);
    assert!(
        r.stderr.contains(&format!("{plain}[0]: spec.endpoint: "))
            && r.stderr.contains("spec.tls or spec.insecure: true"),
        "{}",
        r.stderr
    );
    assert!(!ctx.keys().iter().any(|k| k.ends_with("/hosts/plain3")), "{:?}", ctx.keys());

    // ...and so does the engine, should such a Host reach the store some other way.
    let outcome = block_on(async {
        let store = berth::store::Store::connect(std::slice::from_ref(&tb.etcd), &ctx.prefix).await.unwrap();
        let stored = store.get_app(ns, &rogue_app).await.unwrap().expect("rogue app stored");
        let mut hosts = store.list_hosts().await.unwrap();
        for h in hosts.iter_mut().filter(|h| h.metadata.name == "rogue3") {
            h.spec.tls = None;
            h.spec.insecure = false;
        }
        berth::engine::converge(&store, &berth::docker::HostPool::new(), &stored, &hosts, None).await.unwrap()
    });
    assert_eq!(outcome.status.phase, berth::engine::Phase::Degraded);
    assert!(outcome.actions.is_empty(), "{:?}", outcome.actions);
    let error = outcome.status.hosts["rogue3"].error.clone().unwrap_or_default();
    assert!(error.starts_with("host rogue3: ") && error.contains("refusing plain tcp"), "{error}");
    eprintln!("plain tcp: {error}");
    assert!(app_containers(tb, "host3", &rogue_app).is_empty());

    // With the right certificate the same Host works: both apps can be deleted through berth.
    ctx.apply("rogue3.yaml", &tls_host_doc("rogue3", &h3.tcp, &tb.client_tls));
    ctx.converge(&rogue_app, ns).expect(0);
    assert_eq!(one(tb, "host3", &rogue_app, ns, "role/web").status, "running");
    ctx.delete(&rogue_app, ns);
    ctx.delete(&app, ns);
}

/// An `ssh://` Host (a Kamal-style host reached by SSH only): the engine forwards the host's Docker
/// socket through one ssh session and converges over it; a key the host does not accept is
/// reported on that host with ssh's own words, and nothing runs there.
#[test]
fn an_ssh_host_converges_through_the_forward_and_a_refused_key_is_named() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("engine");
    let app = ctx.app("e2e-ssh");
    let ns = "prod";
    let web_port = port();
    let sshd = common::sshd::Sshd::start(tb, "host2");
    let h2 = tb.host("host2");
    ctx.apply("ssh2.yaml", &host_doc("ssh2", &sshd.endpoint));
    ctx.apply("app.yaml", &web_app(tb, &app, ns, &["ssh2"], web_port).yaml());
    let converge = |config: &PathBuf| {
        Run::of(
            berth_cmd()
                .env("BERTH_SSH_CONFIG", config)
                .args(["--etcd", &tb.etcd, "--prefix", &ctx.prefix, "converge", &app, "-n", ns])
                .output()
                .unwrap(),
        )
    };

    let stranger = converge(&sshd.client_config("stranger_key")).expect(4);
    assert!(stranger.stderr.contains("ssh2"), "{}", stranger.stderr);
    let status = ctx.current_status(&app, ns);
    let error = status["hosts"]["ssh2"]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.starts_with("host ssh2: ssh root@") && error.contains("Permission denied"),
        "{error:?}\n{}",
        sshd.log()
    );
    assert!(app_containers(tb, "host2", &app).is_empty());

    let r = converge(&sshd.client_config("client_key"));
    assert_eq!(r.code, Some(0), "{}\n{}\nsshd: {}", r.stdout, r.stderr, sshd.log());
    let web = one(tb, "host2", &app, ns, "role/web");
    assert_eq!(web.status, "running");
    assert_eq!(wait_for_http(&h2.address, web_port, "/", "v1", secs(10)).trim(), "v1");
    assert_eq!(ctx.current_status(&app, ns)["hosts"]["ssh2"]["reachable"], true);
    let again = converge(&sshd.client_config("client_key")).expect(0);
    assert_eq!(again.actions(), "no changes", "{}", again.stdout);

    ctx.berth(&["delete", "app", &app, "-n", ns]).expect(0);
    let gone = converge(&sshd.client_config("client_key")).expect(0);
    assert!(gone.stdout.contains(&format!("app/{app} -n {ns} deleted")), "{}", gone.stdout);
    assert!(app_containers(tb, "host2", &app).is_empty());
}
