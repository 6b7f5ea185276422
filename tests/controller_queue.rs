//! The work queue's periodic-resync path, which the unit tests in src/controller/queue.rs leave out:
//! `add_if_idle` (what the resync calls for every app) must not cut a failing app's backoff short
//! and must not pile up runs, while `add` (a change, a drift event) always gets a run at once;
//! `forget` (an app deleted) drops a pending retry. Time is paused: every wait below is exact.
//! Runs end through the `Running` guard `next` hands out.
use std::time::Duration;

use backon::ExponentialBuilder;
use berth::controller::queue::{NoObserver, WorkQueue};
use tokio::time::{timeout, Instant};

fn queue(min: Duration) -> WorkQueue<&'static str> {
    let b =
        ExponentialBuilder::default().with_min_delay(min).with_max_delay(min * 4).with_factor(2.0).without_max_times();
    WorkQueue::new(b, Box::new(NoObserver))
}

/// Nothing handed out within `d` (of paused time).
async fn nothing_within(q: &WorkQueue<&'static str>, d: Duration) {
    if let Ok(run) = timeout(d, q.next()).await {
        panic!("{:?} handed out too early", run.map(|r| *r.key()));
    }
}

/// The next key and how long (paused time) it took to come; its run ends at once, successfully.
async fn next_after(q: &WorkQueue<&'static str>) -> (Option<&'static str>, Duration) {
    let t = Instant::now();
    let k = timeout(Duration::from_secs(3600), q.next()).await.ok().flatten().map(|r| *r.key());
    (k, t.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_resync_leaves_a_backing_off_key_alone_but_a_change_does_not() {
    let q = queue(Duration::from_millis(400));
    q.add("a");
    let delay = q.next().await.unwrap().done(false).expect("a failure schedules a retry");
    assert_eq!(delay, Duration::from_millis(400));
    q.add_if_idle("a");
    assert_eq!(q.depth(), 0, "the resync queued a key that is backing off");
    nothing_within(&q, Duration::from_millis(399)).await;
    // The retry still comes, once, when the backoff is over.
    let t = Instant::now();
    let run = q.next().await.unwrap();
    let (k, waited) = (*run.key(), t.elapsed());
    assert_eq!(k, "a");
    assert!(waited <= Duration::from_millis(2), "the retry came {waited:?} after its time");
    run.done(false);
    // A change does not wait for the backoff.
    q.add("a");
    assert_eq!(next_after(&q).await, (Some("a"), Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_resync_does_not_pile_runs_on_a_queued_or_running_key() {
    let q = queue(Duration::from_millis(20));
    q.add("a");
    q.add_if_idle("a");
    assert_eq!(q.depth(), 1);
    let run = q.next().await.unwrap();
    assert!(q.is_running(&"a"));
    q.add_if_idle("a");
    assert_eq!(run.done(true), None);
    // The running key's resync request was dropped: no second run, however long we wait.
    assert_eq!(q.depth(), 0);
    nothing_within(&q, Duration::from_secs(3600)).await;
    // Whereas a change while running folds into one more run.
    q.add("a");
    let run = q.next().await.unwrap();
    q.add("a");
    run.done(true);
    assert_eq!(q.depth(), 1);
}

#[tokio::test(start_paused = true)]
async fn forget_drops_a_pending_retry() {
    let q = queue(Duration::from_millis(50));
    q.add("gone");
    q.next().await.unwrap().done(false);
    q.forget(&"gone");
    nothing_within(&q, Duration::from_secs(3600)).await;
    // And the key starts over with the shortest delay.
    q.add("gone");
    assert_eq!(q.next().await.unwrap().done(false), Some(Duration::from_millis(50)));
}
