//! Running `berth operator` as a user does, and watching what it does: the operator child process
//! of a test's [`Ctx`] (its log, its metrics, signals to it).
//!
//! ```ignore
//! let ctx = Ctx::new("rollout");
//! ctx.apply("hosts.yaml", &unix_hosts(tb));
//! let op = ctx.operator("a", &["--resync", "1s"]);
//! let s = ctx.wait_status(&app, ns, secs(90), "Ready", |s| ready_at(s, 1));
//! ```
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::ports::free_port;
use super::run::berth_cmd;
use super::testbed::{http_get, secs, wait_until};
use super::world::Ctx;

impl Ctx {
    /// Starts `berth operator` with this test's etcd and prefix, a free metrics port and `extra` flags;
    /// returns once it serves /healthz.
    pub fn operator(&self, identity: &str, extra: &[&str]) -> Operator {
        self.operator_env(identity, extra, &[])
    }

    /// [`Ctx::operator`] with extra environment (`BERTH_SSH_CONFIG`).
    pub fn operator_env(&self, identity: &str, extra: &[&str], env: &[(&str, &Path)]) -> Operator {
        self.operator_logging(identity, "info", extra, env)
    }

    /// [`Ctx::operator`] logging at `BERTH_LOG=level` (`trace`) instead of `info`: for tests of what
    /// the log holds.
    pub fn operator_at_level(&self, identity: &str, level: &str, extra: &[&str]) -> Operator {
        self.operator_logging(identity, level, extra, &[])
    }

    fn operator_logging(&self, identity: &str, level: &str, extra: &[&str], env: &[(&str, &Path)]) -> Operator {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = self.dir.path().join(format!("operator-{identity}.log"));
        let child = berth_cmd()
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .env("BERTH_LOG", level)
            .env("NO_COLOR", "1")
            .args(["--etcd", &self.etcd, "--prefix", &self.prefix, "operator"])
            .args(["--metrics-addr", &addr, "--identity", identity])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(File::create(self.dir.path().join(format!("operator-{identity}.out"))).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn berth operator");
        let op = Operator { child, identity: identity.to_string(), addr, log };
        assert!(
            wait_until(secs(20), || op.get("/healthz").is_some()),
            "operator {identity} never served /healthz on {}\n{}",
            op.addr,
            op.log()
        );
        op
    }
}

/// A running `berth operator`; killed on drop if still running (its log is printed when the test panics).
pub struct Operator {
    child: Child,
    pub identity: String,
    pub addr: String,
    pub log: PathBuf,
}

impl Operator {
    fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// `GET PATH` on the metrics address: (status, body), or `None` when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get("127.0.0.1", self.port(), path).ok()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET PATH` on the metrics address: (status, body); something must answer.
    pub fn must_get(&self, path: &str) -> (u16, String) {
        self.get(path)
            .unwrap_or_else(|| panic!("operator {}: nothing answered GET {path}\n{}", self.identity, self.log()))
    }

    /// The `/metrics` text; it must answer 200.
    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Some((200, body)) => body,
            other => panic!("operator {}: /metrics answered {other:?}\n{}", self.identity, self.log()),
        }
    }

    /// Sum of the samples of `name` whose labels include every pair of `labels` (0 when none).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    pub fn is_leader(&self) -> bool {
        self.get("/metrics").is_some_and(|(_, body)| metric_sum(&body, "berth_leader", &[]) == 1.0)
    }

    pub fn wait_leader(&self, timeout: Duration) {
        assert!(
            wait_until(timeout, || self.is_leader()),
            "operator {} did not lead within {timeout:?}\n{}",
            self.identity,
            self.log()
        );
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends a signal by name (`TERM`, `KILL`, ...).
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        let ok = Command::new("kill").args(["-s", sig, &pid]).status().unwrap().success();
        assert!(ok, "kill -s {sig} {pid} failed");
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The operator's log as plain text (colour sequences dropped).
    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Log lines of Docker actions this operator executed for `app` with `verb` (`create`, `start`, ...).
    pub fn actions(&self, app: &str, verb: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("berth::engine") && l.contains(app))
            .filter(|l| l.split_whitespace().any(|w| w == verb))
            .filter(|l| !l.contains("action failed") && !l.contains("rolled back"))
            .map(String::from)
            .collect()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(150)..].join("\n");
            eprintln!("---- last lines of operator {} ({}) ----\n{tail}\n----", self.identity, self.log.display());
        }
    }
}

/// Sum of the samples of `name` in a Prometheus text exposition whose labels include every pair.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n == name && labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))) {
            sum += value.parse::<f64>().unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }
    sum
}

/// The samples of `name` that changed between two scrapes, as `series +delta`.
pub fn series_delta(before: &str, after: &str, name: &str) -> Vec<String> {
    let samples = |text: &str| -> std::collections::BTreeMap<String, f64> {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0.0))))
            .collect()
    };
    let (b, a) = (samples(before), samples(after));
    a.iter()
        .filter_map(|(k, v)| {
            let d = v - b.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| format!("{k} +{d}"))
        })
        .collect()
}

/// Drops ANSI colour sequences, so log lines can be searched as plain text.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
