//! What a converge is waiting on right now, so the status says it while it lasts instead of
//! staying silent for a whole health timeout: the health waits register here, and a writer puts an
//! interim status (`Progressing`, or `Blocked` the moment a gate gives up) whenever this changes.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::status::{ready_condition, AppStatus, Phase, Reason, RolloutFailure};

/// How often an interim status is refreshed while a wait lasts (its seconds count moves on).
pub const REFRESH: Duration = Duration::from_secs(2);

/// One health wait under way.
#[derive(Debug, Clone)]
struct Wait {
    /// `accessory/redis on h2`.
    what: String,
    /// Docker's last word on it: `starting`, `running, unhealthy`, ...
    state: String,
    since: Instant,
    timeout: Duration,
}

#[derive(Default)]
struct State {
    next: u64,
    waits: BTreeMap<u64, Wait>,
    blocked: Vec<String>,
    /// Bumped on every change that should be written at once.
    version: u64,
}

/// Shared between the health waits of one converge and its status writer.
#[derive(Default)]
pub struct Progress {
    state: Mutex<State>,
    changed: Notify,
}

/// A registered wait; dropping it ends the wait.
pub struct WaitHandle<'a> {
    progress: &'a Progress,
    id: u64,
}

impl WaitHandle<'_> {
    /// Records Docker's latest state of the waited-for container.
    pub fn update(&self, state: &str) {
        let mut s = self.progress.state.lock();
        if let Some(w) = s.waits.get_mut(&self.id) {
            if w.state != state {
                w.state = state.to_string();
            }
        }
    }
}

impl Drop for WaitHandle<'_> {
    fn drop(&mut self) {
        let mut s = self.progress.state.lock();
        s.waits.remove(&self.id);
        s.version += 1;
        drop(s);
        self.progress.changed.notify_one();
    }
}

impl Progress {
    /// Starts a wait for `what` (`accessory/redis on h2`) that gives up after `timeout`.
    pub fn start_wait(&self, what: String, timeout: Duration) -> WaitHandle<'_> {
        let mut s = self.state.lock();
        let id = s.next;
        s.next += 1;
        s.waits.insert(id, Wait { what, state: "starting".into(), since: Instant::now(), timeout });
        s.version += 1;
        drop(s);
        self.changed.notify_one();
        WaitHandle { progress: self, id }
    }

    /// A gate gave up: roles behind it are blocked, and the status says so now.
    pub fn block(&self, message: String) {
        let mut s = self.state.lock();
        if !s.blocked.contains(&message) {
            s.blocked.push(message);
            s.version += 1;
        }
        drop(s);
        self.changed.notify_one();
    }

    /// The phase and message to show now, or `None` when nothing is waited on or blocked.
    pub fn summary(&self) -> Option<(Phase, Reason, String)> {
        let s = self.state.lock();
        let now = Instant::now();
        if !s.blocked.is_empty() {
            return Some((Phase::Blocked, Reason::AccessoryNotReady, s.blocked.join("; ")));
        }
        if s.waits.is_empty() {
            return None;
        }
        let mut seen = Vec::new();
        let lines: Vec<String> = s
            .waits
            .values()
            .filter(|w| {
                let new = !seen.contains(&w.what);
                seen.push(w.what.clone());
                new
            })
            .map(|w| {
                format!(
                    "waiting for {} to turn healthy ({}, {} s of {} s)",
                    w.what,
                    w.state,
                    now.saturating_duration_since(w.since).as_secs(),
                    w.timeout.as_secs()
                )
            })
            .collect();
        Some((Phase::Progressing, Reason::WaitingForHealth, lines.join("; ")))
    }

    fn version(&self) -> u64 {
        self.state.lock().version
    }

    /// Calls `write` with each new summary: at once when a wait starts, ends or a gate gives up,
    /// and every [`REFRESH`] while a wait lasts. Returns when `done` resolves; a write under way
    /// then is finished first, so it never lands after the converge's final status.
    pub async fn report<W, Fut>(&self, done: &Notify, mut write: W)
    where
        W: FnMut(Phase, Reason, String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut written = 0;
        loop {
            let changed = self.changed.notified();
            let finished = done.notified();
            tokio::pin!(changed, finished);
            changed.as_mut().enable();
            finished.as_mut().enable();
            let version = self.version();
            if version != written || self.summary().is_some_and(|(p, _, _)| p == Phase::Progressing) {
                if let Some((phase, reason, message)) = self.summary() {
                    write(phase, reason, message).await;
                }
                written = version;
            }
            tokio::select! {
                _ = &mut finished => return,
                _ = &mut changed => {}
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
    }
}

/// An interim status: the last one with this converge's phase and words on top, so `status` and
/// `apply --wait` show what is being waited for (pins and hosts stay as last written, and a failed
/// rollout stays recorded, so a crash meanwhile never turns into a new attempt).
pub fn interim(
    previous: Option<&AppStatus>,
    app: &crate::spec::App,
    images: &BTreeMap<String, String>,
    failure: Option<&RolloutFailure>,
    (phase, reason, message): (Phase, Reason, String),
) -> AppStatus {
    let generation = app.metadata.generation.unwrap_or(0);
    let now = crate::store::now_rfc3339();
    AppStatus {
        observed_generation: generation,
        phase,
        conditions: vec![ready_condition(previous, false, reason, &message, generation, &now)],
        images: images.clone(),
        repin_requested_at: app.repin_requested_at().map(str::to_string),
        hosts: previous.map(|p| p.hosts.clone()).unwrap_or_default(),
        last_converged: previous.and_then(|p| p.last_converged.clone()),
        message,
        rollout_retry_requested_at: app.rollout_retry_requested_at().map(str::to_string),
        rollout_failure: failure.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_described_with_its_state_and_seconds() {
        let p = Progress::default();
        assert!(p.summary().is_none());
        let w = p.start_wait("accessory/redis on h2".into(), Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(12)).await;
        let (phase, reason, msg) = p.summary().unwrap();
        assert_eq!(phase, Phase::Progressing);
        assert_eq!(reason, Reason::WaitingForHealth);
        assert_eq!(msg, "waiting for accessory/redis on h2 to turn healthy (starting, 12 s of 60 s)");
        w.update("running, unhealthy");
        assert!(p.summary().unwrap().2.contains("(running, unhealthy, 12 s of 60 s)"));
        drop(w);
        assert!(p.summary().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn blocked_wins_over_waits() {
        let p = Progress::default();
        let _w = p.start_wait("accessory/db on h1".into(), Duration::from_secs(5));
        p.block("role web waits for db on h1: not healthy".into());
        let (phase, reason, msg) = p.summary().unwrap();
        assert_eq!((phase, reason), (Phase::Blocked, Reason::AccessoryNotReady));
        assert!(msg.starts_with("role web waits for db"));
    }

    #[tokio::test(start_paused = true)]
    async fn report_writes_at_once_refreshes_while_waiting_and_stops_when_done() {
        let p = Progress::default();
        let done = Notify::new();
        let writes = Mutex::new(Vec::new());
        let reporter = p.report(&done, |phase, _, msg| {
            writes.lock().push((phase, msg));
            async {}
        });
        let driver = async {
            tokio::task::yield_now().await;
            let w = p.start_wait("accessory/db on h1".into(), Duration::from_secs(60));
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(writes.lock().len(), 1, "written when the wait starts");
            tokio::time::sleep(REFRESH * 3).await;
            let n = writes.lock().len();
            assert!(n >= 3, "refreshed while it lasts: {n}");
            assert!(writes.lock().last().unwrap().1.contains("6 s of 60 s"));
            drop(w);
            tokio::time::sleep(REFRESH * 3).await;
            let settled = writes.lock().len();
            tokio::time::sleep(REFRESH * 3).await;
            assert_eq!(writes.lock().len(), settled, "no writes once nothing is waited on");
            done.notify_one();
        };
        tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(reporter, driver) }).await.unwrap();
    }
}
