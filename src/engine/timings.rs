//! Step timings of one converge.

use std::time::{Duration, Instant};

/// Milliseconds spent in each step of one converge, logged at debug level so a slow reaction can be
/// taken apart without a profiler (`BERTH_LOG=berth=debug`).
pub(super) struct Timings {
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Timings {
    pub(super) fn start() -> Timings {
        Timings { last: Instant::now(), steps: Vec::new() }
    }

    pub(super) fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        self.steps.push((step, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (step, took)) in self.steps.iter().enumerate() {
            write!(f, "{}{step}={:.1}ms", if i == 0 { "" } else { " " }, took.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}
