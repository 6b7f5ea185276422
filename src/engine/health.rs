//! Health gates: waiting for a container to run and, with a healthcheck, turn healthy, within the
//! App's `rollout.healthTimeout`; the wait shows in the interim status while it lasts. Without a
//! healthcheck a role's `readinessDelay` makes a running container count as ready only that long
//! after it started.

use std::time::{Duration, Instant};

use tracing::info;

use super::execute::Run;
use super::failure::WaitFailure;
use crate::docker::{ops, HostClient};
use crate::plan::{ContainerState, Health};

/// How often health is polled while waiting for a container.
const HEALTH_POLL: Duration = Duration::from_millis(200);

impl Run<'_> {
    /// A gate: waits for an accessory's container unless this converge already saw that wait give up.
    pub(super) async fn wait_ready_by_name(&self, host: &str, container: &str) -> Result<(), WaitFailure> {
        let known = self.failed_waits.lock().get(&(host.to_string(), container.to_string())).cloned();
        if let Some(e) = known {
            return Err(WaitFailure::Failed(e));
        }
        match self.clients.get(host) {
            Some(c) => self.wait_ready(c, container, container).await,
            None => Err(WaitFailure::Failed(format!("{container} on {host}: host unreachable"))),
        }
    }

    /// Waits until the container runs and, if it has a healthcheck, is healthy — without one, for its
    /// readiness delay, if any, after it started; the error carries the last health output so a user
    /// sees why. The wait shows in the interim status while it lasts, and ends early (interrupted)
    /// when the gate closes.
    pub(super) async fn wait_ready(&self, c: &HostClient, id: &str, name: &str) -> Result<(), WaitFailure> {
        let cut_short = || {
            WaitFailure::Interrupted(format!(
                "wait for {name} on {} cut short: the operator is stopping or no longer leads",
                c.name
            ))
        };
        if !self.gate.is_open() {
            return Err(cut_short());
        }
        let desired = self.desired.by_name(name);
        let what = match desired {
            Some(d) => format!("{}/{} on {}", d.component.kind(), d.component.name(), c.name),
            None => format!("{name} on {}", c.name),
        };
        let mut readiness = ReadinessDelay::new(desired.and_then(|d| d.readiness_delay));
        let deadline = Instant::now() + self.health_timeout;
        let mut wait = None;
        let mut last;
        loop {
            match ops::inspect_health(c, id).await {
                Ok(r) if r.state == ContainerState::Running && r.health == Some(Health::Healthy) => return Ok(()),
                Ok(r) if r.state == ContainerState::Running && r.health.is_none() => {
                    match readiness.left(r.started_at, Instant::now()) {
                        None => return Ok(()),
                        Some(left) => {
                            last = format!("running, readiness delay {} left", humantime::format_duration(left))
                        }
                    }
                }
                Ok(r) => {
                    let (state, health, output) = (r.state, r.health, r.output);
                    last = match (health, output) {
                        (Some(h), Some(o)) if !o.is_empty() => format!("{state:?}, {h:?}: {o}").to_lowercase(),
                        (Some(h), _) => format!("{state:?}, {h:?}").to_lowercase(),
                        (None, _) => format!("{state:?}").to_lowercase(),
                    };
                    if matches!(state, ContainerState::Exited | ContainerState::Dead) && health.is_none() {
                        return Err(self.gave_up(c, name, format!("{name} on {} exited", c.name)));
                    }
                }
                Err(e) => last = e.to_string(),
            }
            let handle = wait.get_or_insert_with(|| {
                info!(app = %self.app.metadata.name, namespace = %self.app.namespace(), "waiting for {what} to turn healthy");
                self.progress.start_wait(what.clone(), self.health_timeout)
            });
            handle.update(last.split(':').next().unwrap_or_default());
            if Instant::now() >= deadline {
                let why = format!(
                    "{name} on {} not healthy within {}: {last}",
                    c.name,
                    humantime::format_duration(self.health_timeout)
                );
                return Err(self.gave_up(c, name, why));
            }
            if !self.gate.is_open() {
                return Err(cut_short());
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Remembers a wait that gave up, so gates on the same container do not wait again.
    pub(super) fn gave_up(&self, c: &HostClient, name: &str, why: String) -> WaitFailure {
        self.failed_waits.lock().insert((c.name.clone(), name.to_string()), why.clone());
        WaitFailure::Failed(why)
    }
}

/// A role's `readinessDelay` as one wait applies it: a running container without a healthcheck
/// counts as ready once it has run that long since the wait first saw it running after its last
/// start. Starts are told apart by Docker's `StartedAt`, compared and never parsed, so a host's
/// clock never matters; a restart meanwhile starts the delay anew.
struct ReadinessDelay {
    delay: Option<Duration>,
    /// `StartedAt` and when this wait first saw that start running.
    since: Option<(Option<String>, Instant)>,
}

impl ReadinessDelay {
    fn new(delay: Option<Duration>) -> Self {
        ReadinessDelay { delay, since: None }
    }

    /// `None` when the running container counts as ready at `now`, else the whole seconds left.
    fn left(&mut self, started_at: Option<String>, now: Instant) -> Option<Duration> {
        let delay = self.delay?;
        let since = match &self.since {
            Some((started, at)) if *started == started_at => *at,
            _ => self.since.insert((started_at, now)).1,
        };
        let left = delay.saturating_sub(now.saturating_duration_since(since));
        (!left.is_zero()).then(|| Duration::from_secs(left.as_secs_f64().ceil() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_delay_running_is_ready() {
        let mut r = ReadinessDelay::new(None);
        assert_eq!(r.left(Some("t1".into()), Instant::now()), None);
    }

    #[test]
    fn a_delay_counts_from_the_start_this_wait_saw_and_a_restart_starts_it_anew() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = ReadinessDelay::new(Some(Duration::from_secs(7)));
        assert_eq!(r.left(Some("t1".into()), at(0)), Some(Duration::from_secs(7)));
        assert_eq!(r.left(Some("t1".into()), at(2_500)), Some(Duration::from_secs(5)), "rounded up");
        assert_eq!(r.left(Some("t1".into()), at(6_999)), Some(Duration::from_secs(1)));
        // Restarted at 6.9 s: seven seconds again from there.
        assert_eq!(r.left(Some("t2".into()), at(6_900)), Some(Duration::from_secs(7)));
        assert_eq!(r.left(Some("t2".into()), at(13_000)), Some(Duration::from_secs(1)));
        assert_eq!(r.left(Some("t2".into()), at(13_900)), None);
    }
}
