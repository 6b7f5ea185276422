//! End to end on the real test bed: `berth logs` (two hosts merged with their prefixes, `--tail`,
//! `--since`, `-f` across a replace), `berth exec` (exit code, output, the first host, `-it` under
//! a pseudo-terminal made by util-linux `script`) and `berth completion`.
//!
//! Isolation as in the engine tests: each test has its own etcd prefix and Hosts ([`Ctx`]) and app
//! names of its own; it holds [`Testbed::shared`]; [`Ctx`] removes its containers by label.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use common::containers::one;
use common::run::berth_cmd;
use common::specs::{host_doc, tls_host_doc, unix_hosts, AppSpec, RoleSpec, IDLE};
use common::testbed::{secs, wait_until, Testbed};
use common::world::{ts, Ctx};

/// Prints `gen=$GEN n=1`, `n=2`, … five times a second; stops at once on SIGTERM.
const COUNTER: &str =
    r#"["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo \"gen=$GEN n=$i\"; sleep 0.2; done"]"#;

fn counter_app(app: &str, ns: &str, image: &str, hosts: &[&str], generation: &str) -> String {
    AppSpec::new(app, ns, image).env("GEN", generation).role("counter", RoleSpec::on(hosts).cmd(COUNTER)).yaml()
}

/// `(prefix, text)` of each output line `PREFIX | TEXT`.
fn split(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .map(|l| {
            let (p, t) = l.split_once(" | ").unwrap_or_else(|| panic!("no prefix in {l:?}:\n{stdout}"));
            (p.to_string(), t.to_string())
        })
        .collect()
}

#[test]
fn logs_of_two_hosts_are_merged_in_time_order_with_tail_and_since() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("logs");
    let (app, ns) = (ctx.app("e2e-logs"), "prod");
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("app.yaml", &counter_app(&app, ns, &tb.images.app_v1, &["host1", "host2"], "a"));
    ctx.converge(&app, ns).expect(0);

    // Both containers have printed 20 lines (4 s): enough for --tail and --since to cut.
    let enough = wait_until(secs(30), || {
        let out = ctx.berth(&["logs", &app, "-n", ns]).expect(0).stdout;
        ["host1", "host2"].iter().all(|h| out.contains(&format!("{h} role/counter | gen=a n=20\n")))
    });
    assert!(enough, "the counters never reached 20 lines");

    let r = ctx.berth(&["logs", &app, "-n", ns, "--timestamps"]).expect(0);
    let lines = split(&r.stdout);
    let mut stamps = Vec::new();
    for (prefix, text) in &lines {
        assert!(prefix == "host1 role/counter" || prefix == "host2 role/counter", "{prefix}:\n{}", r.stdout);
        let (stamp, rest) = text.split_once(' ').unwrap();
        assert!(rest.starts_with("gen=a n="), "{text}");
        stamps.push(ts(stamp));
    }
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "not in time order:\n{}", r.stdout);
    for h in ["host1", "host2"] {
        let first = format!("{h} role/counter | ");
        assert!(r.stdout.contains(&first), "no lines of {h}:\n{}", r.stdout);
    }
    // Without --timestamps there is no stamp.
    let plain = ctx.berth(&["logs", &app, "-n", ns, "--host", "host2"]).expect(0);
    let plain = split(&plain.stdout);
    assert!(plain.iter().all(|(p, t)| p == "host2 role/counter" && t.starts_with("gen=a n=")), "{plain:?}");
    assert_eq!(plain[0].1, "gen=a n=1");

    // --tail: the last three lines of each container.
    let tail = split(&ctx.berth(&["logs", &app, "-n", ns, "-r", "counter", "--tail", "3"]).expect(0).stdout);
    for h in ["host1", "host2"] {
        let mine: Vec<&(String, String)> = tail.iter().filter(|(p, _)| p.starts_with(h)).collect();
        assert_eq!(mine.len(), 3, "{h}: {tail:?}");
    }

    // --since: nothing older than asked, and the recent lines are there.
    let asked = SystemTime::now() - Duration::from_secs(2);
    let r = ctx.berth(&["logs", &app, "-n", ns, "--since", "2s", "--timestamps"]).expect(0);
    let since = split(&r.stdout);
    assert!(!since.is_empty(), "no line in the last 2 s");
    for (_, text) in &since {
        let (stamp, rest) = text.split_once(' ').unwrap();
        assert!(ts(stamp) >= asked - Duration::from_millis(500), "{stamp} is older than --since 2s");
        assert_ne!(rest, "gen=a n=1");
    }

    // Wrong names are input errors naming the flag.
    let r = ctx.berth(&["logs", &app, "-n", ns, "-r", "nope"]).expect(1);
    assert!(r.stderr.contains("-r nope"), "{}", r.stderr);
    ctx.berth(&["logs", "no-such-app", "-n", ns]).expect(3);
    ctx.delete(&app, ns);
}

/// A Host that cannot be reached is named on stderr (exit 4); the other host's lines still print.
#[test]
fn an_unreachable_host_is_named_and_the_others_still_print() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("logs");
    let (app, ns) = (ctx.app("e2e-logsd"), "prod");
    let ghost = ctx.dir.path().join("no-docker.sock");
    let hosts = format!("{}---\n{}", unix_hosts(tb), host_doc("ghost", &format!("unix://{}", ghost.display())));
    ctx.apply("hosts.yaml", &hosts);
    ctx.apply("app.yaml", &counter_app(&app, ns, &tb.images.app_v1, &["host1", "ghost"], "a"));
    ctx.converge(&app, ns).expect(4);
    let printed = wait_until(secs(30), || {
        let r = ctx.berth(&["logs", &app, "-n", ns]).expect(4);
        assert!(r.stderr.contains("host ghost unreachable"), "{}", r.stderr);
        r.stdout.contains("host1 role/counter | gen=a n=2\n")
    });
    assert!(printed, "no lines from host1");
    let r = ctx.berth(&["logs", &app, "-n", ns, "--host", "host1"]).expect(0);
    assert!(r.stdout.contains("host1 role/counter | gen=a n=1\n"), "{}", r.stdout);
    ctx.berth(&["logs", &app, "-n", ns, "--host", "host2"]).expect(1);
}

#[test]
fn follow_continues_with_the_container_that_replaced_the_old_one() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("logs");
    let (app, ns) = (ctx.app("e2e-logsf"), "prod");
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("app.yaml", &counter_app(&app, ns, &tb.images.app_v1, &["host1"], "a"));
    ctx.converge(&app, ns).expect(0);

    let mut child = berth_cmd()
        .args(["--etcd", &ctx.etcd, "--prefix", &ctx.prefix, "logs", &app, "-n", ns, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start berth logs -f");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |needle: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return true;
                }
            }
        }
        false
    };
    assert!(wait_for("host1 role/counter | gen=a n=3", &mut seen), "{seen:#?}");

    let old = one(tb, "host1", &app, ns, "role/counter").id;
    ctx.apply("app.yaml", &counter_app(&app, ns, &tb.images.app_v1, &["host1"], "b"));
    ctx.converge(&app, ns).expect(0);
    assert_ne!(one(tb, "host1", &app, ns, "role/counter").id, old, "not replaced");
    let found = wait_for("host1 role/counter | gen=b n=3", &mut seen);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(found, "the new container's lines never came: {seen:#?}\n{}", String::from_utf8_lossy(&out.stderr));
    // The new container is followed from its first line.
    assert!(seen.iter().any(|l| l == "host1 role/counter | gen=b n=1"), "{seen:#?}");
    ctx.delete(&app, ns);
}

#[test]
fn exec_passes_the_exit_code_and_runs_an_interactive_shell() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("exec");
    let (app, ns) = (ctx.app("e2e-exec"), "prod");
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let spec = AppSpec::new(&app, ns, &tb.images.app_v1).role("web", RoleSpec::on(&["host3", "host2"]).cmd(IDLE));
    ctx.apply("app.yaml", &spec.yaml());
    ctx.converge(&app, ns).expect(0);

    let r = ctx.berth(&["exec", &app, "-n", ns, "-r", "web", "--", "sh", "-c", "exit 7"]);
    assert_eq!(r.code, Some(7), "{}", r.stderr);
    // The first host in name order unless --host: a container's hostname is its short id.
    let r = ctx.berth(&["exec", &app, "-n", ns, "-r", "web", "--", "hostname"]).expect(0);
    assert_eq!(r.stdout.trim(), &one(tb, "host2", &app, ns, "role/web").id[..12]);
    let r = ctx.berth(&["exec", &app, "-n", ns, "-r", "web", "--host", "host3", "--", "hostname"]).expect(0);
    assert_eq!(r.stdout.trim(), &one(tb, "host3", &app, ns, "role/web").id[..12]);
    let r = ctx.berth(&["exec", &app, "-n", ns, "-r", "web", "--", "sh", "-c", "echo out; echo err >&2"]).expect(0);
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
    // -i without a terminal: stdin reaches the command.
    let mut child = berth_cmd()
        .args(["--etcd", &ctx.etcd, "--prefix", &ctx.prefix, "exec", &app, "-n", ns, "-r", "web", "-i", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped-through\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped-through\n");

    interactive_shell(&ctx, &app, ns, &[], &[]);

    let r = ctx.berth(&["exec", &app, "-n", ns, "-a", "db", "--", "true"]).expect(1);
    assert!(r.stderr.contains("-a db"), "{}", r.stderr);
    ctx.delete(&app, ns);
}

/// `berth exec -it -- sh` under a pseudo-terminal (util-linux `script`): the shell reads the typed
/// line and answers (40+2 is computed there, so the echo of the typed line cannot pass the check),
/// and `exit 3` is berth's exit code.
fn interactive_shell(ctx: &Ctx, app: &str, ns: &str, extra: &[&str], env: &[(&str, &str)]) {
    let berth = env!("CARGO_BIN_EXE_berth");
    let inner = format!(
        "{berth} --etcd {} --prefix {} exec {app} -n {ns} -r web {} -it -- sh",
        ctx.etcd,
        ctx.prefix,
        extra.join(" ")
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    child.stdin.take().unwrap().write_all(b"echo hello-from-test-$((40+2)); exit 3\n").unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx.recv_timeout(secs(30)).expect("berth exec -it did not end").unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hello-from-test-42"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{text}");
}

/// Over mutual-TLS tcp and over ssh (the forward berth opens): logs from both, exec on each, `-it`
/// through the ssh forward.
#[test]
fn logs_and_exec_work_over_tcp_and_ssh() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("exec");
    let (app, ns) = (ctx.app("e2e-execssh"), "prod");
    let sshd = common::sshd::Sshd::start(tb, "host2");
    let config = sshd.client_config("client_key");
    let config = config.to_str().unwrap();
    let hosts = format!(
        "{}---\n{}",
        tls_host_doc("tls1", &tb.host("host1").tcp, &tb.client_tls),
        host_doc("ssh2", &sshd.endpoint)
    );
    ctx.apply("hosts.yaml", &hosts);
    ctx.apply("app.yaml", &counter_app(&app, ns, &tb.images.app_v1, &["tls1", "ssh2"], "a").replace("counter", "web"));
    let env = [("BERTH_SSH_CONFIG", config)];
    ctx.berth_env(&["converge", &app, "-n", ns], &env).expect(0);

    let both = wait_until(secs(30), || {
        let out = ctx.berth_env(&["logs", &app, "-n", ns], &env).expect(0).stdout;
        out.contains("tls1 role/web | gen=a n=2\n") && out.contains("ssh2 role/web | gen=a n=2\n")
    });
    assert!(both, "no lines from both hosts");
    for (host, code) in [("tls1", 5), ("ssh2", 6)] {
        let script = format!("exit {code}");
        let r = ctx.berth_env(&["exec", &app, "-n", ns, "-r", "web", "--host", host, "--", "sh", "-c", &script], &env);
        assert_eq!(r.code, Some(code), "{host}: {}", r.stderr);
    }
    interactive_shell(&ctx, &app, ns, &["--host", "ssh2"], &env);
    ctx.berth_env(&["delete", "app", &app, "-n", ns], &env).expect(0);
    ctx.berth_env(&["converge", &app, "-n", ns], &env).expect(0);
}

#[test]
fn completion_prints_a_script() {
    let out = berth_cmd().args(["completion", "bash"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("berth") && text.contains("apply") && text.contains("logs"), "{text}");
}
