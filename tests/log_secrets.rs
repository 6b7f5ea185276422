//! Env values never reach the log, even at `BERTH_LOG=trace`: the real `berth operator` on the
//! test bed creates, replaces (env change) and prunes an app whose env holds unique markers, and
//! its whole log (stderr, text) must hold none of them. Dependencies dump Docker request bodies
//! (the create body carries `Env`) at debug, so without the cap on their targets the markers show.
mod common;

use common::containers::inspect;
use common::specs::{unix_hosts, AppSpec, RoleSpec, IDLE};
use common::testbed::{secs, unique, wait_until, Testbed};
use common::world::{ready_at, Ctx};

/// An App whose env (app-wide and the role's own) holds `secret`, one idle role on `hosts`.
fn app_doc(tb: &Testbed, app: &str, ns: &str, hosts: &[&str], secret: &str) -> String {
    AppSpec::new(app, ns, &tb.images.app_v1)
        .env("API_TOKEN", &format!("app-{secret}"))
        .role("web", RoleSpec::on(hosts).env("DB_PASSWORD", &format!("role-{secret}")).cmd(IDLE))
        .yaml()
}

#[test]
fn trace_logs_of_a_create_a_replace_and_a_prune_hold_no_env_value() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("logs");
    let app = ctx.app("logsecret");
    let ns = "prod";
    let (first, second) = (unique("s3cr3t-first"), unique("s3cr3t-second"));
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let mut op = ctx.operator_at_level("a", "trace", &[]);
    let wait_ready = |generation: i64| {
        let what = format!("Ready at generation {generation}");
        ctx.wait_status(&app, ns, secs(120), &what, |s| ready_at(s, generation));
    };
    // Ids of the app's containers on `host`.
    let ids = |host: &str| ctx.ps(host, &app, &[], "{{.ID}}");
    // Env of the app's containers on `host`, one `KEY=value` list per container.
    let envs = |host: &str| {
        let ids = ids(host);
        let found = inspect(tb, host, &ids);
        assert_eq!(found.len(), ids.len(), "docker inspect on {host} of {ids:?}");
        found.into_iter().map(|c| c.env).collect::<Vec<_>>()
    };

    // Create on two hosts.
    ctx.apply("app.yaml", &app_doc(tb, &app, ns, &["host1", "host2"], &first));
    wait_ready(1);
    assert!(envs("host2").iter().all(|e| e.contains(&format!("DB_PASSWORD=role-{first}"))), "{:?}", envs("host2"));
    // Replace: a new env value rolls both containers.
    ctx.apply("app.yaml", &app_doc(tb, &app, ns, &["host1", "host2"], &second));
    wait_ready(2);
    assert_eq!(envs("host1").len(), 1);
    assert!(envs("host1")[0].contains(&format!("API_TOKEN=app-{second}")), "{:?}", envs("host1"));
    // Prune: host2 leaves the role, then the whole app is deleted.
    ctx.apply("app.yaml", &app_doc(tb, &app, ns, &["host1"], &second));
    wait_ready(3);
    assert!(ids("host2").is_empty(), "host2 still runs {:?}", ids("host2"));
    ctx.berth(&["delete", "app", &app, "-n", ns]).expect(0);
    assert!(wait_until(secs(60), || ids("host1").is_empty()), "the deleted app still runs on host1");
    // SIGTERM, then the exit: the log is complete only then.
    op.signal("TERM");
    let status = op.wait_exit(secs(60));
    assert!(status.is_some_and(|s| s.success()), "operator exited with {status:?}");

    let log = op.log();
    // The log must be worth searching: berth's own trace lines, the creates among them.
    let trace_lines = log.lines().filter(|l| l.contains("TRACE") && l.contains("berth::")).count();
    let creates = log.lines().filter(|l| l.contains("TRACE") && l.contains("op=\"create")).count();
    assert!(
        trace_lines > 20 && creates >= 3,
        "a thin trace log ({trace_lines} trace lines, {creates} creates):\n{log}"
    );
    for secret in [&first, &second] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret.as_str())).collect();
        assert!(leaks.is_empty(), "{} log line(s) hold an env value, e.g.:\n{}", leaks.len(), leaks[0]);
    }
}
