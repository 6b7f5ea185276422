//! `berth_host_up` says whether a host's Docker API answers, not whether a connection to it is open
//! (issue 10, findings 4 and 7), on the real test bed with a real `berth operator`:
//!
//! - a host whose calls a converge just made is up: the gauge is 1 for every host as soon as an app
//!   is Ready, without waiting for the host's event stream;
//! - a frozen dockerd (SIGSTOP: its sockets stay open, calls hang, nothing is refused) reads 0
//!   (waited for; the unit tests in src/docker/liveness.rs hold the 15 s bound on paused time), the
//!   app on it reports the host, and an app on the other hosts converges a change meanwhile;
//! - after SIGCONT it reads 1 again and the app on it is Ready again, with nobody doing anything.
//!
//! The freeze holds the bed's outage lock ([`Testbed::freeze_host`]), so no other test runs on the
//! hosts meanwhile, and it is thawed when the guard drops, even if the test panics.
mod common;

use std::time::Instant;

use common::operator::Operator;
use common::specs::{unix_hosts, HTTPD};
use common::testbed::{secs, wait_until, Testbed};
use common::world::{ready_at, Ctx};

/// An App with one role `web` (no published port) on `hosts`; `colour` goes into its env, so a new
/// colour is a new generation.
fn web(tb: &Testbed, name: &str, ns: &str, hosts: &str, colour: &str) -> String {
    let image = &tb.images.app_v1;
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: App
metadata: {{name: {name}, namespace: {ns}}}
spec:
  image: {image}
  env: {{COLOUR: {colour}}}
  roles:
    web:
      hosts: [{hosts}]
      cmd: {HTTPD}
"
    )
}

/// `berth_host_up{host}` as the operator serves it; `None` while it has no such series.
fn host_up(op: &Operator, host: &str) -> Option<f64> {
    let (_, body) = op.get("/metrics")?;
    let prefix = format!("berth_host_up{{host=\"{host}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

fn reachable(s: &serde_json::Value, host: &str) -> Option<bool> {
    s["hosts"][host]["reachable"].as_bool()
}

#[test]
fn a_frozen_host_reads_down_others_converge_and_it_reads_up_when_thawed() {
    let tb = Testbed::get();
    let ctx = Ctx::new("liveness");
    let ns = "live";
    let (frozen_app, other_app) = (ctx.app("live-frozen"), ctx.app("live-other"));
    ctx.apply("hosts.yaml", &unix_hosts(tb));
    let op = ctx.operator("liveness", &[]);
    {
        let _up = tb.shared();
        op.wait_leader(secs(30));
        ctx.apply("frozen.yaml", &web(tb, &frozen_app, ns, "host2", "a"));
        ctx.apply("other.yaml", &web(tb, &other_app, ns, "host1, host3", "b"));
        ctx.wait_status(&frozen_app, ns, secs(90), "Ready", |s| ready_at(s, 1));
        ctx.wait_status(&other_app, ns, secs(90), "Ready", |s| ready_at(s, 1));
        // Finding 7: the converge that wrote Ready listed every host, so every host answered a call.
        for h in ["host1", "host2", "host3"] {
            assert_eq!(host_up(&op, h), Some(1.0), "{h} answered the converge but is not up\n{}", op.log());
        }
    }

    let frozen = tb.freeze_host("host2");
    let t = Instant::now();
    let down = wait_until(secs(60), || host_up(&op, "host2") == Some(0.0));
    assert!(down, "berth_host_up{{host2}} = {:?} 60 s into a freeze\n{}", host_up(&op, "host2"), op.log());
    eprintln!("frozen host2: berth_host_up 0 after {:?}", t.elapsed());
    for h in ["host1", "host3"] {
        assert_eq!(host_up(&op, h), Some(1.0), "{h} is not frozen");
    }
    // The app on it says so, without a resync (the default is 5 minutes).
    let s = ctx.wait_status(&frozen_app, ns, secs(90), "reporting host2 unreachable", |s| {
        reachable(s, "host2") == Some(false)
    });
    assert_ne!(s["phase"], "Ready", "{s:#}");
    assert!(s["hosts"]["host2"]["error"].as_str().is_some_and(|e| e.contains("host2")), "{s:#}");
    let readyz = op.get("/readyz");
    assert!(readyz.as_ref().is_some_and(|(c, b)| *c == 200 && b.contains("host2")), "/readyz: {readyz:?}");
    // The other hosts keep converging: a change of the app on them is rolled out while host2 is frozen.
    ctx.apply("other.yaml", &web(tb, &other_app, ns, "host1, host3", "c"));
    let t = Instant::now();
    ctx.wait_status(&other_app, ns, secs(120), "Ready at generation 2 while host2 is frozen", |s| ready_at(s, 2));
    eprintln!("other hosts: a change Ready {:?} after it was applied, host2 frozen", t.elapsed());
    assert_eq!(host_up(&op, "host2"), Some(0.0), "host2 is still frozen");

    drop(frozen); // SIGCONT
    let _up = tb.shared();
    let t = Instant::now();
    let up = wait_until(secs(60), || host_up(&op, "host2") == Some(1.0));
    assert!(up, "berth_host_up{{host2}} = {:?} 60 s after the thaw\n{}", host_up(&op, "host2"), op.log());
    eprintln!("thawed host2: berth_host_up 1 after {:?}", t.elapsed());
    ctx.wait_status(&frozen_app, ns, secs(90), "Ready again after the thaw", |s| {
        ready_at(s, 1) && reachable(s, "host2") == Some(true)
    });
}
