//! Stop control on the real test bed: a role's `stopTimeout` gives a process that needs 15 s to
//! exit after SIGTERM its time on a replace (not killed at Docker's default 10 s), and its
//! `stopSignal` is the signal the process gets. What happened is read from the daemon's own event
//! log (the old container is removed after a replace): the `kill` events with their signal, and
//! the `die` event with the exit code and the time it came.
mod common;

use common::specs::unix_hosts;
use common::testbed::Testbed;
use common::world::{unix_now, Ctx};

/// A role on host1 running `script` under `sh -c`, with extra role fields and an env `REV`.
fn app_doc(tb: &Testbed, app: &str, ns: &str, script: &str, fields: &str, rev: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata: {{name: {app}, namespace: {ns}}}
spec:
  image: {image}
  roles:
    worker:
      hosts: [host1]
      cmd: [\"sh\", \"-c\", {script:?}]
      env: {{REV: \"{rev}\"}}
{fields}",
        image = tb.images.app_v1
    )
}

/// One container event as `docker events` records it.
#[derive(Debug)]
struct Event {
    nanos: u64,
    action: String,
    name: String,
    exit_code: String,
    signal: String,
}

/// The `kill` and `die` events of the app's containers on host1 since `since`, up to now.
fn stop_events(tb: &Testbed, app: &str, since: f64) -> Vec<Event> {
    let until = tb.events_mark("host1");
    let (since, until, label) = (format!("{since:.6}"), format!("{until:.6}"), format!("label=berth.app={app}"));
    let format = "{{.TimeNano}}|{{.Action}}|{{.Actor.Attributes.name}}|{{.Actor.Attributes.exitCode}}|{{.Actor.Attributes.signal}}";
    let args = ["events", "--since", &since, "--until", &until, "--filter", "type=container", "--filter", &label];
    let out = tb.docker_ok("host1", &[&args[..], &["--format", format]].concat());
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let event = Event {
                nanos: f.first()?.parse().ok()?,
                action: f.get(1)?.to_string(),
                name: f.get(2)?.to_string(),
                exit_code: f.get(3)?.to_string(),
                signal: f.get(4)?.to_string(),
            };
            matches!(event.action.as_str(), "kill" | "die").then_some(event)
        })
        .collect()
}

/// Deploys the app, changes its env and converges again (a replace), and gives back the old
/// container's name with the `kill` and `die` events of that replace.
fn replace_once(ctx: &Ctx, app: &str, ns: &str, script: &str, fields: &str) -> (String, Vec<Event>) {
    let tb = ctx.tb;
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    ctx.apply("app.yaml", &app_doc(tb, app, ns, script, fields, "1"));
    ctx.converge(app, ns).expect(0);
    let old = common::containers::app_containers(tb, "host1", app);
    assert_eq!(old.len(), 1, "one worker after the first converge: {:?}", common::containers::shorts(&old));
    let since = unix_now() - 1.0;
    ctx.apply("app.yaml", &app_doc(tb, app, ns, script, fields, "2"));
    ctx.converge(app, ns).expect(0);
    let events = stop_events(tb, app, since).into_iter().filter(|e| e.name == old[0].name).collect();
    (old[0].name.clone(), events)
}

#[test]
fn a_long_stop_timeout_lets_the_old_container_finish_its_work() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("stopctl");
    let (app, ns) = (ctx.app("stop-slow"), "prod");
    let script = "trap 'sleep 15; exit 0' TERM; while true; do sleep 1; done";
    let (old, events) = replace_once(&ctx, &app, ns, script, "      stopTimeout: 30s\n");
    let kills: Vec<&Event> = events.iter().filter(|e| e.action == "kill").collect();
    let die = events.iter().find(|e| e.action == "die").unwrap_or_else(|| panic!("{old} never died: {events:?}"));
    assert_eq!(die.exit_code, "0", "{old} was killed instead of exiting on its own: {events:?}");
    assert!(kills.iter().all(|k| k.signal == "15"), "only SIGTERM, never SIGKILL: {events:?}");
    let first_kill = kills.first().unwrap_or_else(|| panic!("no kill event for {old}: {events:?}"));
    let took = (die.nanos - first_kill.nanos) as f64 / 1e9;
    assert!(took >= 15.0, "{old} died {took:.1}s after SIGTERM, before its 15 s of work: {events:?}");
    ctx.delete(&app, ns);
}

#[test]
fn the_stop_signal_is_the_one_the_process_gets() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let ctx = Ctx::new("stopctl");
    let (app, ns) = (ctx.app("stop-usr1"), "prod");
    // TERM would end it with 3, a kill with 137: only USR1 gives 0.
    let script = "trap 'exit 3' TERM; trap 'exit 0' USR1; while true; do sleep 1; done";
    let (old, events) = replace_once(&ctx, &app, ns, script, "      stopSignal: SIGUSR1\n");
    let die = events.iter().find(|e| e.action == "die").unwrap_or_else(|| panic!("{old} never died: {events:?}"));
    assert_eq!(die.exit_code, "0", "{old} did not stop on SIGUSR1: {events:?}");
    let kill = events.iter().find(|e| e.action == "kill").unwrap_or_else(|| panic!("no kill for {old}: {events:?}"));
    assert_eq!(kill.signal, "10", "Docker sent signal {} instead of SIGUSR1 (10): {events:?}", kill.signal);
    let c = common::containers::app_containers(tb, "host1", &app);
    assert_eq!(c[0].raw["Config"]["StopSignal"], "SIGUSR1", "{:?}", c[0].raw["Config"]);
    ctx.delete(&app, ns);
}
