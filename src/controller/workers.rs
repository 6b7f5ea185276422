//! The operator's workers, supervised: one whose reconcile panics is logged and replaced, so a bad
//! App cannot shrink the pool. The key it held is freed by the queue's [`Running`] guard, as a failure
//! (retried after the backoff).
//!
//! [`Running`]: super::queue::Running

use std::any::Any;
use std::future::Future;

use tokio::task::JoinSet;
use tracing::error;

/// Runs `size` (at least one) workers made by `start` until each returns on its own (the queue
/// closed); one that panics is replaced at once. Returns how many were replaced. Dropping this
/// future aborts the workers.
pub async fn supervise<F, Fut>(size: usize, mut start: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut workers = JoinSet::new();
    for _ in 0..size.max(1) {
        workers.spawn(start());
    }
    let mut replaced = 0;
    while let Some(ended) = workers.join_next().await {
        match ended {
            Err(e) if e.is_panic() => {
                error!(panic = %panic_message(e.into_panic().as_ref()), "a worker panicked; starting another");
                replaced += 1;
                workers.spawn(start());
            }
            // Returned (the queue closed) or cancelled (the runtime shuts down).
            _ => {}
        }
    }
    replaced
}

/// What a panic said, when it said it with a string.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (_, Some(s)) => s,
        _ => "(no message)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::queue::{NoObserver, WorkQueue};
    use backon::ExponentialBuilder;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::{mpsc, Barrier};

    /// A reconcile that panics the first time it sees "boom"; "x", "y" and "z" each wait until all
    /// three run at once, which only three live workers can do.
    async fn reconcile(
        key: &'static str,
        booms: &AtomicUsize,
        together: &Barrier,
        log: &mpsc::UnboundedSender<String>,
    ) {
        log.send(format!("start {key}")).unwrap();
        if key == "boom" && booms.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("reconcile of {key} panics");
        }
        if key != "boom" {
            together.wait().await;
        }
        log.send(format!("end {key}")).unwrap();
    }

    /// The next line the reconciles logged, if one comes within a minute (of paused time).
    async fn next_line(logged: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(60), logged.recv()).await.ok().flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_reconcile_frees_its_key_and_leaves_the_pool_whole() {
        let builder = ExponentialBuilder::default().with_min_delay(Duration::from_millis(20)).without_max_times();
        let queue = Arc::new(WorkQueue::<&'static str>::new(builder, Box::new(NoObserver)));
        let (booms, together) = (Arc::new(AtomicUsize::new(0)), Arc::new(Barrier::new(3)));
        let started = Arc::new(AtomicUsize::new(0));
        let (log, mut logged) = mpsc::unbounded_channel();
        let start = {
            let (queue, started) = (queue.clone(), Arc::clone(&started));
            move || {
                let (queue, booms, together, log) = (queue.clone(), booms.clone(), together.clone(), log.clone());
                started.fetch_add(1, Ordering::SeqCst);
                async move {
                    while let Some(run) = queue.next().await {
                        reconcile(run.key(), &booms, &together, &log).await;
                    }
                }
            }
        };
        let pool = tokio::spawn(supervise(3, start));

        queue.add("boom");
        assert_eq!(next_line(&mut logged).await.as_deref(), Some("start boom"));
        assert_eq!(next_line(&mut logged).await.as_deref(), Some("start boom"), "the key is handed out again");
        assert_eq!(next_line(&mut logged).await.as_deref(), Some("end boom"));
        assert_eq!(queue.running(), 0);

        for k in ["x", "y", "z"] {
            queue.add(k);
        }
        let mut lines = Vec::new();
        for _ in 0..6 {
            lines.extend(next_line(&mut logged).await);
        }
        lines.sort();
        assert_eq!(lines, ["end x", "end y", "end z", "start x", "start y", "start z"], "three workers ran at once");

        queue.close();
        assert_eq!(pool.await.unwrap(), 1, "one worker replaced");
        assert_eq!(started.load(Ordering::SeqCst), 4);
    }
}
