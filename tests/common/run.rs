//! Running the `berth` binary the way a user does, and reading how it ended.
//!
//! ```ignore
//! use common::run::{berth_at, Run};
//!
//! let r = Run::of(berth_at(&tb.etcd, &prefix, &["get", "apps"])).expect(0);
//! assert!(r.stdout.contains("web"), "{}", r.stdout);
//! ```
use std::process::{Command, Output};

/// The `berth` binary with none of the berth settings a developer's shell may hold
/// (`BERTH_ETCD_ENDPOINTS`, `BERTH_PREFIX`, `BERTH_LOG`), so only the test's own flags and
/// environment steer it.
pub fn berth_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.env_remove("BERTH_ETCD_ENDPOINTS").env_remove("BERTH_PREFIX").env_remove("BERTH_LOG");
    c
}

/// `berth ARGS` run to completion, with `RUST_BACKTRACE=1` so that a panic would show (for tests
/// that check berth never panics on bad input, e.g. with [`Run::of_user_input`]).
pub fn berth(args: &[&str]) -> Output {
    berth_cmd().env("RUST_BACKTRACE", "1").args(args).output().expect("run the berth binary")
}

/// `berth --etcd ETCD --prefix PREFIX ARGS` run to completion: the usual call of a test that owns
/// a key prefix in some etcd.
pub fn berth_at(etcd: &str, prefix: &str, args: &[&str]) -> Output {
    berth_cmd().args(["--etcd", etcd, "--prefix", prefix]).args(args).output().expect("run the berth binary")
}

/// One finished run of the binary: its exit code and both streams as text, so a test can assert on
/// them and show them all when an assertion fails.
pub struct Run {
    /// The exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Run {
    /// Reads `out`; berth must not have panicked (nothing in stderr says `panicked`).
    pub fn of(out: Output) -> Run {
        let r = Run::read(out);
        assert!(!r.stderr.contains("panicked"), "berth panicked:\n{}", r.stderr);
        r
    }

    /// Like [`Run::of`], and a printed backtrace fails too: for commands fed bad user input, which
    /// must answer with an error, never a panic.
    pub fn of_user_input(out: Output) -> Run {
        let r = Run::read(out);
        assert!(
            !r.stderr.contains("panicked") && !r.stderr.contains("stack backtrace"),
            "berth must never panic on user errors:\n{}",
            r.stderr
        );
        r
    }

    fn read(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    /// Asserts the exit code, showing both streams when it differs.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The `actions: …` line of `berth converge`.
    pub fn actions(&self) -> &str {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("actions: "))
            .unwrap_or_else(|| panic!("no `actions:` line in\n{}\n{}", self.stdout, self.stderr))
    }

    /// The container-changing Docker calls of the `actions:` line (`create 2, stop 1` → that map);
    /// pulls (which depend on what other tests left on a host) and summary counters are left out.
    pub fn changes(&self) -> String {
        let line = self.actions();
        if line == "no changes" {
            return String::new();
        }
        let mut out = Vec::new();
        for part in line.split(", ") {
            let (verb, n) = part.rsplit_once(' ').unwrap_or_else(|| panic!("bad actions line {line:?}"));
            if ["create", "start", "stop", "remove"].contains(&verb) {
                out.push(format!("{verb} {n}"));
            }
        }
        out.join(", ")
    }
}
