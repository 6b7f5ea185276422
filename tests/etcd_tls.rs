//! berth against a secured etcd: each test starts an etcd of its own ([`PrivateEtcd`]), one serving
//! TLS that requires client certificates (a CA, server and client certificates made with openssl in
//! the test's temp dir), one with auth enabled (a root user, made with etcdctl). Every command a user
//! runs (`apply`, `get`, `status`, `delete`) and `berth operator` (it leads and converges an App on
//! the test bed's host1 over its unix socket) work with the right certificate or password; without
//! certificates, with a certificate from another CA or with a wrong password, a command exits 2 with
//! one line naming the endpoint and the cause. The password appears in no output, not even in the
//! operator's log at `BERTH_LOG=trace`.
//! The tests hold [`Testbed::shared`].
mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::etcd::PrivateEtcd;
use common::ports::free_port;
use common::run::{berth_cmd, Run};
use common::specs::{unix_hosts, AppSpec, RoleSpec, HTTPD, WEB_HEALTH};
use common::testbed::{http_get, secs, wait_until, Testbed};
use common::world::{ready_at, Ctx};
use serde_json::Value;

/// The etcd root password of the auth test: a value to look for in every output.
const PASSWORD: &str = "berth-etcd-pw-4f1c9a7e";

/// How every `berth` of one test reaches its etcd: the global flags and environment beyond
/// `--etcd` and `--prefix`.
#[derive(Clone, Default)]
struct Access {
    flags: Vec<String>,
    env: Vec<(String, String)>,
}

impl Access {
    fn flags(flags: &[&str]) -> Access {
        Access { flags: flags.iter().map(|f| f.to_string()).collect(), env: Vec::new() }
    }

    fn env(mut self, key: &str, value: &str) -> Access {
        self.env.push((key.into(), value.into()));
        self
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `berth --etcd … --prefix … [access] ARGS`.
fn berth(ctx: &Ctx, access: &Access, args: &[&str]) -> Run {
    let out = berth_cmd()
        .envs(access.env.iter().map(|(k, v)| (k, v)))
        .args(["--etcd", &ctx.etcd, "--prefix", &ctx.prefix])
        .args(&access.flags)
        .args(args)
        .output()
        .expect("run the berth binary");
    Run::of(out)
}

/// `berth status -o json`, while there is one.
fn status(ctx: &Ctx, access: &Access, app: &str, ns: &str) -> Option<Value> {
    let r = berth(ctx, access, &["status", app, "-n", ns, "-o", "json"]);
    (r.code == Some(0)).then(|| serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout)))
}

/// A refused connection: exit 2 and one line on stderr that names the endpoint and holds `cause`.
fn assert_refused(r: &Run, endpoint: &str, cause: &str) {
    let line = r.stderr.trim();
    assert_eq!(r.code, Some(2), "exit code; stderr:\n{}", r.stderr);
    assert_eq!(line.lines().count(), 1, "more than one line:\n{}", r.stderr);
    assert!(line.contains(endpoint) && line.contains(cause), "wanted {endpoint} and {cause:?} in:\n{line}");
}

/// `berth operator` with `access`, its log (stderr) at `BERTH_LOG=level` in the test's dir; killed on drop.
struct Operator {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Operator {
    fn start(ctx: &Ctx, access: &Access, level: &str) -> Operator {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = ctx.dir.path().join("operator.log");
        let child = berth_cmd()
            .envs(access.env.iter().map(|(k, v)| (k, v)))
            .env("BERTH_LOG", level)
            .env("NO_COLOR", "1")
            .args(["--etcd", &ctx.etcd, "--prefix", &ctx.prefix])
            .args(&access.flags)
            .args(["operator", "--metrics-addr", &addr, "--identity", "secured", "--resync", "5s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn berth operator");
        Operator { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn leads(&self) -> bool {
        let port = self.addr.rsplit(':').next().unwrap().parse().unwrap();
        http_get("127.0.0.1", port, "/readyz").is_ok_and(|(code, body)| code == 200 && body.contains("leader"))
    }

    /// SIGTERM and the exit, so the log is complete.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-s", "TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "operator exited with {status}\n{}", self.log());
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Through `access`: apply, get, the operator leading and converging an App on host1 (and a second
/// generation of it), status, delete and the operator removing it. Returns every output seen.
fn full_cycle(ctx: &Ctx, access: &Access, log_level: &str) -> String {
    let tb = ctx.tb;
    let ns = "prod";
    let app = ctx.app("secured");
    let mut seen = String::new();
    let mut run = |args: &[&str]| {
        let r = berth(ctx, access, args);
        seen.push_str(&format!("{}\n{}\n", r.stdout, r.stderr));
        r
    };
    let hosts = ctx.file("hosts.yaml", &unix_hosts(tb));
    let doc = |color: &str| {
        AppSpec::new(&app, ns, &tb.images.app_v1)
            .env("COLOR", color)
            .role("web", RoleSpec::on(&["host1"]).cmd(HTTPD).health(WEB_HEALTH))
            .yaml()
    };
    let spec = ctx.file("app.yaml", &doc("blue"));
    run(&["apply", "-f", &hosts]).expect(0);
    let applied = run(&["apply", "-f", &spec]).expect(0);
    assert!(applied.stdout.contains(&format!("app/{app} -n {ns} created")), "{}", applied.stdout);
    let apps = run(&["get", "apps", "-n", ns]).expect(0);
    assert!(apps.stdout.contains(&app), "{}", apps.stdout);
    assert!(run(&["get", "hosts"]).expect(0).stdout.contains("host1"));

    let mut op = Operator::start(ctx, access, log_level);
    assert!(wait_until(secs(30), || op.leads()), "the operator never led\n{}", op.log());
    let ready =
        |generation| wait_until(secs(120), || status(ctx, access, &app, ns).is_some_and(|s| ready_at(&s, generation)));
    assert!(ready(1), "not Ready: {:?}\n{}", status(ctx, access, &app, ns), op.log());
    let shown = run(&["status", &app, "-n", ns]).expect(0);
    assert!(shown.stdout.contains("Ready"), "{}", shown.stdout);
    assert_eq!(common::containers::app_containers(tb, "host1", &app).len(), 1);

    // A second generation: the operator's watch and writes go on (an auth token renewed on the way).
    ctx.file("app.yaml", &doc("green"));
    run(&["apply", "-f", &spec]).expect(0);
    assert!(ready(2), "not Ready at generation 2: {:?}\n{}", status(ctx, access, &app, ns), op.log());

    run(&["delete", "app", &app, "-n", ns]).expect(0);
    let gone = wait_until(secs(60), || {
        common::containers::app_containers(tb, "host1", &app).is_empty()
            && !berth(ctx, access, &["get", "apps", "-n", ns]).expect(0).stdout.contains(&app)
    });
    assert!(gone, "the operator did not remove app/{app}\n{}", op.log());
    op.stop();
    seen.push_str(&op.log());
    seen
}

#[test]
fn every_command_and_the_operator_work_over_tls_with_a_client_certificate_and_refusals_are_one_line() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let (etcd, pki) = PrivateEtcd::start_tls("berth-tls");
    let ctx = Ctx::with_etcd("etcdtls", &etcd.endpoint);
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client.cert), path(&pki.client.key));
    let good = Access::flags(&["--etcd-ca", ca, "--etcd-cert", cert, "--etcd-key", key]);
    full_cycle(&ctx, &good, "info");

    // The files from the environment, as the chart's pods may set them.
    let by_env = Access::default().env("BERTH_ETCD_CA", ca).env("BERTH_ETCD_CERT", cert).env("BERTH_ETCD_KEY", key);
    berth(&ctx, &by_env, &["get", "hosts"]).expect(0);

    let endpoint = &etcd.endpoint;
    // No files: berth cannot trust etcd's certificate (its CA is not the system's).
    let none = berth(&ctx, &Access::default(), &["get", "apps"]);
    assert_refused(&none, endpoint, "berth does not trust etcd's certificate");
    // The CA but no client certificate: etcd asks for one.
    let no_cert = berth(&ctx, &Access::flags(&["--etcd-ca", ca]), &["get", "apps"]);
    assert_refused(&no_cert, endpoint, "etcd asks for a client certificate");
    // A client certificate from another CA: etcd refuses it, in its own words.
    let (rogue_cert, rogue_key) = (path(&pki.rogue.cert), path(&pki.rogue.key));
    let rogue = Access::flags(&["--etcd-ca", ca, "--etcd-cert", rogue_cert, "--etcd-key", rogue_key]);
    for args in [&["get", "apps"][..], &["status", "x", "-n", "prod"], &["delete", "app", "x", "-n", "prod"]] {
        assert_refused(&berth(&ctx, &rogue, args), endpoint, "refused berth's client certificate");
    }
    let apply = berth(&ctx, &rogue, &["apply", "-f", &ctx.file("h.yaml", &unix_hosts(tb))]);
    assert_refused(&apply, endpoint, "refused berth's client certificate");
    let metrics = format!("127.0.0.1:{}", free_port());
    assert_refused(
        &berth(&ctx, &rogue, &["operator", "--metrics-addr", &metrics]),
        endpoint,
        "refused berth's client certificate",
    );

    // A file that is not there: an input error naming the flag and the file, before any connection.
    let missing = berth(&ctx, &Access::flags(&["--etcd-ca", "/nonexistent/ca.pem"]), &["get", "apps"]).expect(1);
    assert_eq!(missing.stderr.trim(), "error: --etcd-ca: cannot read /nonexistent/ca.pem: entity not found");
    let half = berth(&ctx, &Access::flags(&["--etcd-ca", ca, "--etcd-cert", cert]), &["get", "apps"]).expect(1);
    assert!(half.stderr.contains("--etcd-cert needs --etcd-key"), "{}", half.stderr);
}

#[test]
fn every_command_and_the_operator_work_with_a_user_and_the_password_shows_nowhere() {
    let tb = Testbed::get();
    let _up = tb.shared();
    // Tokens expire after 2 idle seconds: the operator's client must renew its token as it goes.
    let etcd = PrivateEtcd::start_auth("berth-auth", PASSWORD, 2);
    let ctx = Ctx::with_etcd("etcdauth", &etcd.endpoint);
    let good = Access::flags(&["--etcd-user", "root"]).env("BERTH_ETCD_PASSWORD", PASSWORD);
    let seen = full_cycle(&ctx, &good, "trace");
    assert!(seen.contains("TRACE") || seen.contains("DEBUG"), "the operator did not log at trace:\n{seen}");
    let by_env = Access::default().env("BERTH_ETCD_USER", "root").env("BERTH_ETCD_PASSWORD", PASSWORD);
    berth(&ctx, &by_env, &["get", "hosts"]).expect(0);

    let endpoint = &etcd.endpoint;
    let wrong_password = format!("{PASSWORD}-wrong");
    let wrong = Access::flags(&["--etcd-user", "root"]).env("BERTH_ETCD_PASSWORD", &wrong_password);
    let mut refusals = String::new();
    for args in [&["get", "apps"][..], &["status", "x", "-n", "prod"], &["delete", "app", "x", "-n", "prod"]] {
        let r = berth(&ctx, &wrong, args);
        assert_refused(&r, endpoint, "authentication failed");
        refusals.push_str(&r.stderr);
    }
    let metrics = format!("127.0.0.1:{}", free_port());
    let op = berth(&ctx, &wrong, &["operator", "--metrics-addr", &metrics]);
    assert_refused(&op, endpoint, "authentication failed");
    refusals.push_str(&op.stderr);
    // No user at all: etcd says so, and berth says which flags fix it.
    let anonymous = berth(&ctx, &Access::default(), &["get", "apps"]);
    assert_refused(&anonymous, endpoint, "--etcd-user");
    // A user without the password variable: an input error, nothing sent.
    let no_password = berth(&ctx, &Access::flags(&["--etcd-user", "root"]), &["get", "apps"]).expect(1);
    assert!(no_password.stderr.contains("BERTH_ETCD_PASSWORD"), "{}", no_password.stderr);

    for (what, text) in [("the commands' and the operator's output", &seen), ("the refusals", &refusals)] {
        assert!(!text.contains(PASSWORD), "the password shows in {what}:\n{text}");
    }
    // `--help` shows no environment value (clap prints `[env: …=VALUE]` for set variables).
    let help = berth(&ctx, &good, &["--help"]).expect(0);
    assert!(!help.stdout.contains(PASSWORD), "{}", help.stdout);
}
