//! The one retry backoff of every loop that reconnects (a host's event stream, the store's list and
//! watch), after kube-runtime's `utils/backoff_reset_timer.rs`: backon's capped, jittered exponential
//! delays that start over when the loop says it succeeded ([`ResetBackoff::reset`]) or once it has
//! asked for no delay for a quiet period, so a connection that held a long time retries fast when it
//! breaks. One value lives as long as its loop: nobody rebuilds a backoff to reset it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
// tokio's clock, so the quiet period follows paused time in tests.
use tokio::time::Instant;

/// Retry delays: 500 ms doubling to 5 min, with jitter, for ever (the work queue's per-app retries).
pub fn retry_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(300))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// How long a reconnect loop must go without a retry before its backoff starts over by itself.
pub const RECONNECT_QUIET: Duration = Duration::from_secs(120);

/// A backoff that starts over after a success or a quiet period.
#[derive(Debug)]
pub struct ResetBackoff {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
    quiet: Duration,
    /// When the last delay was handed out.
    last: Option<Instant>,
}

impl ResetBackoff {
    /// Delays from `builder`, starting over once `quiet` passed without one being asked for.
    pub fn new(builder: ExponentialBuilder, quiet: Duration) -> ResetBackoff {
        ResetBackoff { builder, current: builder.build(), quiet, last: None }
    }

    /// A reconnect loop's backoff: 500 ms doubling to 30 s, with jitter, for ever; quiet after
    /// [`RECONNECT_QUIET`].
    pub fn reconnect() -> ResetBackoff {
        ResetBackoff::new(retry_backoff().with_max_delay(Duration::from_secs(30)), RECONNECT_QUIET)
    }

    /// The loop succeeded: the next delay is the first one again.
    pub fn reset(&mut self) {
        self.current = self.builder.build();
        self.last = None;
    }
}

impl Iterator for ResetBackoff {
    type Item = Duration;

    /// The next delay; `None` only if the builder has a maximum number of attempts and it is used up.
    fn next(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.saturating_duration_since(last) >= self.quiet) {
            self.current = self.builder.build();
        }
        self.last = Some(now);
        self.current.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No jitter, so the delays are exact.
    fn backoff(quiet: Duration) -> ResetBackoff {
        let b = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_millis(800))
            .with_factor(2.0)
            .without_max_times();
        ResetBackoff::new(b, quiet)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The next delay in whole milliseconds (backon's f32 factor leaves a few nanoseconds over).
    fn next_ms(b: &mut ResetBackoff) -> Option<u128> {
        b.next().map(|d| d.as_millis())
    }

    #[tokio::test(start_paused = true)]
    async fn delays_grow_to_the_cap_while_failures_follow_one_another() {
        let mut b = backoff(Duration::from_secs(10));
        let mut delays = Vec::new();
        for _ in 0..6 {
            let d = b.next().unwrap();
            delays.push(d.as_millis());
            tokio::time::sleep(d).await;
        }
        assert_eq!(delays, [100, 200, 400, 800, 800, 800]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_period_starts_the_delays_over() {
        let mut b = backoff(Duration::from_secs(10));
        for _ in 0..4 {
            b.next();
        }
        tokio::time::sleep(Duration::from_millis(9_999)).await;
        assert_eq!(next_ms(&mut b), Some(800), "not quiet long enough");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(next_ms(&mut b), Some(100), "quiet for the whole period");
        assert_eq!(next_ms(&mut b), Some(200));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_starts_the_delays_over_at_once() {
        let mut b = backoff(Duration::from_secs(10));
        for _ in 0..3 {
            b.next();
        }
        b.reset();
        assert_eq!(next_ms(&mut b), Some(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_limited_builder_runs_out_until_reset() {
        let b = ExponentialBuilder::default().with_min_delay(ms(10)).with_max_times(2);
        let mut b = ResetBackoff::new(b, Duration::from_secs(10));
        assert_eq!((next_ms(&mut b), next_ms(&mut b), next_ms(&mut b)), (Some(10), Some(20), None));
        b.reset();
        assert_eq!(next_ms(&mut b), Some(10));
    }

    #[test]
    fn the_shared_builders_jitter_within_their_caps() {
        let retries: Vec<Duration> = retry_backoff().build().take(20).collect();
        assert!(retries[0] >= ms(500) && retries[0] < ms(1000), "{retries:?}");
        assert!(retries.iter().all(|d| *d < Duration::from_secs(600)), "{retries:?}");
        let reconnects: Vec<Duration> = ResetBackoff::reconnect().take(20).collect();
        assert!(reconnects.iter().all(|d| *d < Duration::from_secs(60)), "{reconnects:?}");
    }
}
