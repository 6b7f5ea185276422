//! What the hosts' Docker daemons recorded (`docker events`), read without guessing how long to
//! wait: a window ends at a mark the test made and saw in the daemon's log, never "a second later".
use super::testbed::{secs, unique, wait_until, Testbed};
use super::world::unix_now;

impl Testbed {
    /// Container events (`docker events`) on `host` carrying `label` between two unix times, as
    /// `ACTION NAME`, with health-check execs left out: every event that changes what a container
    /// list shows.
    pub fn state_events(&self, host: &str, label: &str, since: f64, until: f64) -> Vec<String> {
        let (since, until, label) = (format!("{since:.6}"), format!("{until:.6}"), format!("label={label}"));
        let format = "{{.Action}} {{.Actor.Attributes.name}}";
        let args = ["events", "--since", &since, "--until", &until, "--filter", "type=container", "--filter", &label];
        let out = self.docker_ok(host, &[&args[..], &["--format", format]].concat());
        out.lines().filter(|l| !l.starts_with("exec_")).map(String::from).collect()
    }

    /// [`Testbed::state_events`] without health-status events: the container lifecycle alone.
    pub fn lifecycle_events(&self, host: &str, label: &str, since: f64, until: f64) -> Vec<String> {
        let mut events = self.state_events(host, label, since, until);
        events.retain(|l| !l.starts_with("health_status"));
        events
    }

    /// [`Testbed::lifecycle_events`] from `since` up to [`Testbed::events_mark`] on that host: every
    /// lifecycle event of the calls that returned before this one.
    pub fn lifecycle_events_since(&self, host: &str, label: &str, since: f64) -> Vec<String> {
        let until = self.events_mark(host);
        self.lifecycle_events(host, label, since, until)
    }

    /// A point of `host`'s event log after everything it logged for calls that already returned:
    /// the time of a marker event made now (a volume created and removed) once `docker events`
    /// shows it. Use it as the end of a window instead of sleeping before reading events.
    pub fn events_mark(&self, host: &str) -> f64 {
        let name = unique("events-mark");
        let since = format!("{:.6}", unix_now() - 1.0);
        self.docker_ok(host, &["volume", "create", &name]);
        self.docker_ok(host, &["volume", "rm", &name]);
        let mut mark = None;
        let seen = wait_until(secs(10), || {
            let until = format!("{:.6}", unix_now());
            let args = ["events", "--since", &since, "--until", &until, "--filter", "type=volume"];
            let filter = format!("volume={name}");
            let out = self.docker_ok(host, &[&args[..], &["--filter", &filter, "--format", "{{.TimeNano}}"]].concat());
            mark = out.lines().filter_map(|l| l.trim().parse::<u64>().ok()).max();
            mark.is_some()
        });
        assert!(seen, "the marker volume {name} never showed in {host}'s docker events");
        mark.unwrap() as f64 / 1e9
    }
}
