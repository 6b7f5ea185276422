//! The work queue's periodic-resync path, which the unit tests in src/controller/queue.rs leave out:
//! `add_if_idle` (what the resync calls for every app) must not cut a failing app's backoff short
//! and must not pile up runs, while `add` (a change, a drift event) always gets a run soon; `forget`
//! (an app deleted) drops a pending retry.
use std::time::Duration;

use backon::ExponentialBuilder;
use berth::controller::queue::{NoObserver, WorkQueue};
use tokio::time::timeout;

fn queue(min: Duration) -> WorkQueue<&'static str> {
    let b = ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(min * 4)
        .with_factor(2.0)
        .without_max_times();
    WorkQueue::new(b, Box::new(NoObserver))
}

/// Nothing handed out within `d`.
async fn nothing_within(q: &WorkQueue<&'static str>, d: Duration) {
    if let Ok(k) = timeout(d, q.next()).await {
        panic!("{k:?} handed out too early");
    }
}

#[tokio::test]
async fn a_resync_leaves_a_backing_off_key_alone_but_a_change_does_not() {
    let q = queue(Duration::from_millis(400));
    q.add("a");
    let k = q.next().await.unwrap();
    let delay = q.done(&k, false).expect("a failure schedules a retry");
    assert!(delay >= Duration::from_millis(200), "{delay:?}");
    q.add_if_idle("a");
    assert_eq!(q.depth(), 0, "the resync queued a key that is backing off");
    nothing_within(&q, Duration::from_millis(100)).await;
    // The retry still comes, once.
    assert_eq!(timeout(Duration::from_secs(2), q.next()).await.ok().flatten(), Some("a"));
    q.done(&"a", false);
    // A change does not wait for the backoff.
    q.add("a");
    assert_eq!(timeout(Duration::from_millis(50), q.next()).await.ok().flatten(), Some("a"));
}

#[tokio::test]
async fn a_resync_does_not_pile_runs_on_a_queued_or_running_key() {
    let q = queue(Duration::from_millis(20));
    q.add("a");
    q.add_if_idle("a");
    assert_eq!(q.depth(), 1);
    let k = q.next().await.unwrap();
    assert!(q.is_running(&"a"));
    q.add_if_idle("a");
    assert_eq!(q.done(&k, true), None);
    // The running key's resync request was dropped: no second run.
    assert_eq!(q.depth(), 0);
    nothing_within(&q, Duration::from_millis(100)).await;
    // Whereas a change while running folds into one more run.
    q.add("a");
    let k = q.next().await.unwrap();
    q.add("a");
    q.done(&k, true);
    assert_eq!(q.depth(), 1);
}

#[tokio::test]
async fn forget_drops_a_pending_retry() {
    let q = queue(Duration::from_millis(50));
    q.add("gone");
    let k = q.next().await.unwrap();
    q.done(&k, false);
    q.forget(&"gone");
    nothing_within(&q, Duration::from_millis(400)).await;
    // And the key starts over with the shortest delay.
    q.add("gone");
    let k = q.next().await.unwrap();
    assert_eq!(q.done(&k, false), Some(Duration::from_millis(50)));
}
