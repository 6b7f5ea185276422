//! Taking a host down on purpose while no other test uses the hosts: a power loss
//! ([`Testbed::outage`]) or a frozen daemon ([`Testbed::freeze_host`]). Both end when their guard
//! drops, also when the test panics, and only then let other tests back on the hosts.
use std::process::Command;

use super::testbed::{describe, secs, wait_until, Exclusive, Testbed};

impl Testbed {
    /// Stops `host` (hard) once every [`Testbed::shared`] holder is done (in every test process),
    /// and starts it again when the guard drops, even if the test panics. Don't call it while
    /// holding [`Testbed::shared`] yourself: that deadlocks.
    pub fn outage(&self, host: &str) -> Outage<'_> {
        let exclusive = self.exclusive();
        self.stop_host(host);
        Outage { tb: self, host: host.to_string(), _exclusive: exclusive }
    }

    /// Freezes `host`'s dockerd with SIGSTOP once every [`Testbed::shared`] holder is done: its
    /// sockets stay open and calls hang, nothing is refused; containerd and the containers run on.
    /// SIGCONT when the guard drops, even if the test panics. Don't call it while holding
    /// [`Testbed::shared`] yourself: that deadlocks.
    pub fn freeze_host(&self, host: &str) -> Frozen<'_> {
        let exclusive = self.exclusive();
        let pidfile = &self.host(host).pidfile;
        let pid = std::fs::read_to_string(pidfile).unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
        let pid = pid.trim().to_string();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "dockerd", "{}: pid {pid} is not a running dockerd", pidfile.display());
        signal(&pid, "STOP");
        Frozen { tb: self, host: host.to_string(), pid, _exclusive: exclusive }
    }
}

fn signal(pid: &str, sig: &str) -> bool {
    Command::new("kill").args(["-s", sig, pid]).status().is_ok_and(|s| s.success())
}

/// A host taken down by [`Testbed::outage`]; started again on drop.
pub struct Outage<'a> {
    tb: &'a Testbed,
    host: String,
    _exclusive: Exclusive,
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        let out = Command::new(&self.tb.script)
            .args(["start-host", &self.host])
            .env("BERTH_TESTBED_DIR", &self.tb.dir)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) if !std::thread::panicking() => panic!("{}", describe("start-host", &o)),
            Ok(o) => eprintln!("{}", describe("start-host", &o)),
            Err(e) => eprintln!("cannot run start-host: {e}"),
        }
    }
}

/// A host whose dockerd [`Testbed::freeze_host`] stopped; thawed on drop, before other tests may
/// use the hosts again.
pub struct Frozen<'a> {
    tb: &'a Testbed,
    host: String,
    pid: String,
    _exclusive: Exclusive,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let thawed = signal(&self.pid, "CONT");
        let answers = thawed && wait_until(secs(30), || self.tb.docker(&self.host, &["version"]).status.success());
        if !answers {
            let msg = format!("{}'s dockerd (pid {}) does not answer after SIGCONT", self.host, self.pid);
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}
