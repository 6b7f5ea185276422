//! The work queue of the operator, after kube-runtime's scheduler and runner: one entry per key,
//! never the same key in two workers, requests for a running key fold into one more run, failed
//! keys come back after a capped, jittered exponential backoff (backon) that a success resets.
//! A key is handed out as a [`Running`] guard that ends the run when dropped, so no caller has to
//! remember to, and a reconcile that panics cannot hold its key "running" for ever.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use parking_lot::Mutex;
use tokio::sync::Notify;
// tokio's clock, so delays and backoffs follow paused time in tests.
use tokio::time::Instant;

/// Counters the metrics module exports (`berth_workqueue_*`).
pub trait QueueObserver: Send + Sync {
    fn added(&self) {}
    fn depth(&self, _depth: usize) {}
    fn waited(&self, _waited: Duration) {}
}

/// An observer that records nothing, for tests and one-shot uses.
pub struct NoObserver;
impl QueueObserver for NoObserver {}

struct State<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    running: HashSet<K>,
    /// Requested while running: runs once more when the current run ends.
    dirty: HashSet<K>,
    /// Backoff retries and other delayed requests: one a key, the earliest; a change skips it.
    delayed: HashMap<K, Instant>,
    /// Rechecks ([`WorkQueue::recheck_after`]): every one is kept, and a change does not cancel them.
    rechecks: HashMap<K, Vec<Instant>>,
    /// Keys whose next run is a recheck (a recheck came due since their last run started).
    rechecking: HashSet<K>,
    backoff: HashMap<K, ExponentialBackoff>,
    enqueued_at: HashMap<K, Instant>,
    closed: bool,
}

/// A deduplicating, delaying work queue keyed by `K`.
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
    builder: ExponentialBuilder,
    observer: Box<dyn QueueObserver>,
}

/// A key handed out by [`WorkQueue::next`], running until this is dropped or [`Running::done`].
/// Dropped without a verdict it counts as a success, or as a failure (retried after the backoff)
/// when dropped by a panic unwinding: the key is free again either way.
#[must_use = "dropping it ends the run at once"]
pub struct Running<'q, K: Clone + Eq + Hash + Send> {
    queue: &'q WorkQueue<K>,
    key: K,
    recheck: bool,
    ended: bool,
}

impl<K: Clone + Eq + Hash + Send> Running<'_, K> {
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Whether a recheck ([`WorkQueue::recheck_after`]) asked for this run: what was cached about
    /// the key may be stale without any news saying so.
    pub fn is_recheck(&self) -> bool {
        self.recheck
    }

    /// Ends the run: success resets the key's backoff, failure schedules a retry. Returns the retry
    /// delay, if any.
    pub fn done(mut self, success: bool) -> Option<Duration> {
        self.ended = true;
        self.queue.finish(&self.key, success)
    }
}

impl<K: Clone + Eq + Hash + Send> Drop for Running<'_, K> {
    fn drop(&mut self) {
        if !self.ended {
            self.queue.finish(&self.key, !std::thread::panicking());
        }
    }
}

impl<K: Clone + Eq + Hash + Send> WorkQueue<K> {
    pub fn new(builder: ExponentialBuilder, observer: Box<dyn QueueObserver>) -> WorkQueue<K> {
        WorkQueue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                running: HashSet::new(),
                dirty: HashSet::new(),
                delayed: HashMap::new(),
                rechecks: HashMap::new(),
                rechecking: HashSet::new(),
                backoff: HashMap::new(),
                enqueued_at: HashMap::new(),
                closed: false,
            }),
            notify: Notify::new(),
            builder,
            observer,
        }
    }

    /// Asks for a run now: a pending backoff or resync delay is skipped (a spec change must not wait).
    pub fn add(&self, key: K) {
        let mut s = self.state.lock();
        s.delayed.remove(&key);
        self.enqueue(&mut s, key);
    }

    fn enqueue(&self, s: &mut State<K>, key: K) {
        if s.closed {
            return;
        }
        self.observer.added();
        if s.running.contains(&key) {
            s.dirty.insert(key);
        } else if s.queued.insert(key.clone()) {
            s.enqueued_at.insert(key.clone(), Instant::now());
            s.ready.push_back(key);
            self.observer.depth(s.ready.len());
            self.notify.notify_one();
        }
    }

    /// Asks for a run unless one is already queued, running, or waiting out a backoff (periodic resync).
    pub fn add_if_idle(&self, key: K) {
        let mut s = self.state.lock();
        if s.queued.contains(&key) || s.running.contains(&key) || s.delayed.contains_key(&key) {
            return;
        }
        self.enqueue(&mut s, key);
    }

    /// Whether a key is being worked on right now (an event about it is then most likely our own doing).
    pub fn is_running(&self, key: &K) -> bool {
        self.state.lock().running.contains(key)
    }

    /// Asks for a run after `delay`, unless an earlier request for the key is already pending.
    pub fn add_after(&self, key: K, delay: Duration) {
        let mut s = self.state.lock();
        if s.closed || s.queued.contains(&key) {
            return;
        }
        let at = Instant::now() + delay;
        let entry = s.delayed.entry(key).or_insert(at);
        if at < *entry {
            *entry = at;
        }
        self.notify.notify_one();
    }

    /// Asks for a run after `delay` that looks again: it comes whatever runs in between (a change does
    /// not cancel it) and is handed out with [`Running::is_recheck`], so the worker distrusts what it
    /// cached. For news that may be ahead of what the key's next look would see.
    pub fn recheck_after(&self, key: K, delay: Duration) {
        let mut s = self.state.lock();
        if s.closed {
            return;
        }
        s.rechecks.entry(key).or_default().push(Instant::now() + delay);
        self.notify.notify_one();
    }

    /// Moves the delayed requests and rechecks that are due into the ready queue; returns how long
    /// until the next one is due.
    fn release_due(&self, s: &mut State<K>, now: Instant) -> Option<Duration> {
        let due: Vec<K> = s.delayed.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
        for k in due {
            s.delayed.remove(&k);
            self.enqueue(s, k);
        }
        let mut rechecked = Vec::new();
        s.rechecks.retain(|k, ats| {
            let before = ats.len();
            ats.retain(|at| *at > now);
            if ats.len() < before {
                rechecked.push(k.clone());
            }
            !ats.is_empty()
        });
        for k in rechecked {
            // A run is a run: the backoff retry it would have waited for is moot.
            s.delayed.remove(&k);
            s.rechecking.insert(k.clone());
            self.enqueue(s, k);
        }
        let next_recheck = s.rechecks.values().flatten().min();
        s.delayed.values().chain(next_recheck).min().map(|at| at.saturating_duration_since(now))
    }

    /// Waits for the next key to work on and marks it running; `None` once the queue is closed.
    pub async fn next(&self) -> Option<Running<'_, K>> {
        loop {
            let notified = self.notify.notified();
            let wait = {
                let mut s = self.state.lock();
                if s.closed {
                    return None;
                }
                let wait = self.release_due(&mut s, Instant::now());
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    s.running.insert(key.clone());
                    let recheck = s.rechecking.remove(&key);
                    if let Some(at) = s.enqueued_at.remove(&key) {
                        self.observer.waited(at.elapsed());
                    }
                    self.observer.depth(s.ready.len());
                    if !s.ready.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(Running { queue: self, key, recheck, ended: false });
                }
                wait
            };
            match wait {
                Some(d) => {
                    let _ = tokio::time::timeout(d, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// Ends a run (by its [`Running`] guard): success resets the key's backoff, failure schedules a
    /// retry; a request that came in while it ran is served now. Returns the retry delay, if any.
    fn finish(&self, key: &K, success: bool) -> Option<Duration> {
        let mut s = self.state.lock();
        s.running.remove(key);
        let mut retry = None;
        if success {
            s.backoff.remove(key);
        } else {
            let builder = self.builder;
            let delay = s.backoff.entry(key.clone()).or_insert_with(|| builder.build()).next();
            retry = delay;
        }
        if s.dirty.remove(key) {
            self.enqueue(&mut s, key.clone());
        } else if let Some(d) = retry {
            drop(s);
            self.add_after(key.clone(), d);
            return retry;
        }
        self.notify.notify_one();
        retry
    }

    /// Forgets a key's backoff and pending delays and rechecks (the app was deleted).
    pub fn forget(&self, key: &K) {
        let mut s = self.state.lock();
        s.backoff.remove(key);
        s.delayed.remove(key);
        s.rechecks.remove(key);
        s.rechecking.remove(key);
    }

    /// Stops handing out work; `next` returns `None` from now on.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// Keys waiting to run now.
    pub fn depth(&self) -> usize {
        self.state.lock().ready.len()
    }

    /// Keys being worked on right now.
    pub fn running(&self) -> usize {
        self.state.lock().running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn queue() -> WorkQueue<&'static str> {
        let b = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_millis(200))
            .with_factor(2.0)
            .without_max_times();
        WorkQueue::new(b, Box::new(NoObserver))
    }

    /// The key of a run that was handed out.
    fn key_of(run: &Option<Running<'_, &'static str>>) -> Option<&'static str> {
        run.as_ref().map(|r| *r.key())
    }

    #[tokio::test]
    async fn ten_adds_of_a_queued_key_give_one_run() {
        let q = queue();
        for _ in 0..10 {
            q.add("a");
        }
        q.add("b");
        assert_eq!(q.depth(), 2);
        let a = q.next().await;
        assert_eq!(key_of(&a), Some("a"));
        let b = q.next().await;
        assert_eq!(key_of(&b), Some("b"));
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test]
    async fn adds_while_running_fold_into_one_more_run() {
        let q = queue();
        q.add("a");
        let a = q.next().await.unwrap();
        assert_eq!(*a.key(), "a");
        for _ in 0..10 {
            q.add("a");
        }
        // Never handed out twice at once.
        assert_eq!(q.depth(), 0);
        a.done(true);
        assert_eq!(q.depth(), 1);
        let a = q.next().await.unwrap();
        assert_eq!(*a.key(), "a");
        a.done(true);
        assert_eq!(q.depth(), 0);
    }

    /// Six workers, two keys, each run asking for another one: idle workers are always waiting, so
    /// a key handed out while it runs would be caught at once.
    #[tokio::test(start_paused = true)]
    async fn a_key_is_never_handed_out_while_it_runs() {
        const RUNS: usize = 40;
        let q = Arc::new(queue());
        q.add("a");
        q.add("b");
        let running: Arc<Mutex<HashSet<&str>>> = Arc::default();
        let (runs, peak, overlaps) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let mut workers = Vec::new();
        for w in 0..6 {
            let (q, running, runs, peak, overlaps) =
                (q.clone(), running.clone(), runs.clone(), peak.clone(), overlaps.clone());
            workers.push(tokio::spawn(async move {
                while let Some(run) = q.next().await {
                    let k = *run.key();
                    {
                        let mut r = running.lock();
                        if !r.insert(k) {
                            overlaps.lock().push(format!("worker {w} got {k} while it ran"));
                        }
                        peak.fetch_max(r.len(), Ordering::SeqCst);
                    }
                    if runs.fetch_add(1, Ordering::SeqCst) + 1 < RUNS {
                        q.add(k); // a change while it runs
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    running.lock().remove(k);
                    run.done(true);
                }
            }));
        }
        while q.depth() + q.running() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        q.close();
        for w in workers {
            w.await.unwrap();
        }
        assert_eq!(*overlaps.lock(), Vec::<String>::new());
        assert!(runs.load(Ordering::SeqCst) >= RUNS);
        assert_eq!(peak.load(Ordering::SeqCst), 2, "both keys ran at once (the check above saw concurrency)");
    }

    #[tokio::test]
    async fn failures_back_off_growing_and_success_resets() {
        let q = queue();
        q.add("a");
        let mut delays = Vec::new();
        for _ in 0..4 {
            let run = q.next().await.unwrap();
            delays.push(run.done(false).unwrap());
        }
        assert!(delays.windows(2).all(|w| w[1] >= w[0]), "{delays:?}");
        assert!(delays[3] > delays[0], "{delays:?}");
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(200)), "capped: {delays:?}");
        let run = q.next().await.unwrap();
        assert_eq!(run.done(true), None);
        q.add("a");
        let run = q.next().await.unwrap();
        assert_eq!(run.done(false), Some(Duration::from_millis(20)), "reset to the first delay");
    }

    /// The key `q.next()` hands out without any time passing, if any (its run ends at once).
    async fn ready_now(q: &WorkQueue<&'static str>) -> Option<&'static str> {
        tokio::select! { biased; run = q.next() => key_of(&run), _ = std::future::ready(()) => None }
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_skips_the_backoff_wait() {
        let q = queue();
        q.add("a");
        q.next().await.unwrap().done(false);
        q.add_after("a", Duration::from_secs(3600));
        assert_eq!(ready_now(&q).await, None, "waiting out the backoff");
        q.add("a");
        assert_eq!(ready_now(&q).await, Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_come_back_on_time_and_close_ends_waiting() {
        let q = Arc::new(queue());
        q.add_after("r", Duration::from_millis(30));
        let start = Instant::now();
        assert_eq!(key_of(&q.next().await), Some("r"));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(30) && waited < Duration::from_millis(35),
            "handed out when due: {waited:?}"
        );
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.next().await.map(|r| *r.key()) });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "an empty queue hands out nothing");
        q.close();
        assert_eq!(waiter.await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_dropped_without_a_verdict_succeeded_and_one_dropped_by_a_panic_failed() {
        let q = Arc::new(queue());
        q.add("a");
        drop(q.next().await.unwrap());
        assert_eq!(q.running(), 0, "the key is free");
        assert_eq!(ready_now(&q).await, None, "and not retried");
        q.add("a");
        let q2 = q.clone();
        let panicked = tokio::spawn(async move {
            let _run = q2.next().await.unwrap();
            panic!("a reconcile panics");
        });
        assert!(panicked.await.unwrap_err().is_panic());
        assert_eq!(q.running(), 0, "the panic freed the key");
        let start = Instant::now();
        assert_eq!(key_of(&q.next().await), Some("a"), "retried");
        assert_eq!(start.elapsed(), Duration::from_millis(20), "after the first backoff delay");
    }

    #[tokio::test(start_paused = true)]
    async fn rechecks_come_whatever_ran_in_between_and_say_so() {
        let q = Arc::new(queue());
        q.add("a");
        q.recheck_after("a", Duration::from_secs(1));
        q.recheck_after("a", Duration::from_secs(4));
        let run = q.next().await.unwrap();
        assert!(!run.is_recheck());
        drop(run);
        q.add("a"); // a change does not cancel them
        assert!(!q.next().await.unwrap().is_recheck());
        let start = Instant::now();
        let first = q.next().await.unwrap();
        assert!(first.is_recheck());
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // The second comes due while the key runs (an idle worker waits): the run that follows is it.
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.next().await.map(|r| (r.is_recheck(), start.elapsed())) });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "handed out while it ran");
        drop(first);
        assert_eq!(waiter.await.unwrap(), Some((true, Duration::from_secs(6))));
        assert_eq!(ready_now(&q).await, None, "one run each");
    }
}
