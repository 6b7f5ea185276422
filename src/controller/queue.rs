//! The work queue of the operator, after kube-runtime's scheduler and runner: one entry per key,
//! never the same key in two workers, requests for a running key fold into one more run, failed
//! keys come back after a capped, jittered exponential backoff (backon) that a success resets.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::Notify;
// tokio's clock, so delays and backoffs follow paused time in tests.
use tokio::time::Instant;

/// Retry delays: 500 ms doubling to 5 min, with jitter, for ever.
pub fn retry_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(300))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

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
    delayed: HashMap<K, Instant>,
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

impl<K: Clone + Eq + Hash + Send> WorkQueue<K> {
    pub fn new(builder: ExponentialBuilder, observer: Box<dyn QueueObserver>) -> WorkQueue<K> {
        WorkQueue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                running: HashSet::new(),
                dirty: HashSet::new(),
                delayed: HashMap::new(),
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
        let mut s = self.state.lock().expect("queue lock");
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
        let mut s = self.state.lock().expect("queue lock");
        if s.queued.contains(&key) || s.running.contains(&key) || s.delayed.contains_key(&key) {
            return;
        }
        self.enqueue(&mut s, key);
    }

    /// Whether a key is being worked on right now (an event about it is then most likely our own doing).
    pub fn is_running(&self, key: &K) -> bool {
        self.state.lock().expect("queue lock").running.contains(key)
    }

    /// Asks for a run after `delay`, unless an earlier request for the key is already pending.
    pub fn add_after(&self, key: K, delay: Duration) {
        let mut s = self.state.lock().expect("queue lock");
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

    /// Waits for the next key to work on and marks it running; `None` once the queue is closed.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            let wait = {
                let mut s = self.state.lock().expect("queue lock");
                if s.closed {
                    return None;
                }
                let now = Instant::now();
                let due: Vec<K> = s.delayed.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
                for k in due {
                    s.delayed.remove(&k);
                    self.enqueue(&mut s, k);
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    s.running.insert(key.clone());
                    if let Some(at) = s.enqueued_at.remove(&key) {
                        self.observer.waited(at.elapsed());
                    }
                    self.observer.depth(s.ready.len());
                    if !s.ready.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
                s.delayed.values().min().map(|at| at.saturating_duration_since(now))
            };
            match wait {
                Some(d) => {
                    let _ = tokio::time::timeout(d, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// Ends a run: success resets the key's backoff, failure schedules a retry; a request that came
    /// in while it ran is served now. Returns the retry delay, if any.
    pub fn done(&self, key: &K, success: bool) -> Option<Duration> {
        let mut s = self.state.lock().expect("queue lock");
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

    /// Forgets a key's backoff and pending delays (the app was deleted).
    pub fn forget(&self, key: &K) {
        let mut s = self.state.lock().expect("queue lock");
        s.backoff.remove(key);
        s.delayed.remove(key);
    }

    /// Stops handing out work; `next` returns `None` from now on.
    pub fn close(&self) {
        self.state.lock().expect("queue lock").closed = true;
        self.notify.notify_waiters();
    }

    /// Keys waiting to run now.
    pub fn depth(&self) -> usize {
        self.state.lock().expect("queue lock").ready.len()
    }

    /// Keys being worked on right now.
    pub fn running(&self) -> usize {
        self.state.lock().expect("queue lock").running.len()
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

    #[tokio::test]
    async fn ten_adds_of_a_queued_key_give_one_run() {
        let q = queue();
        for _ in 0..10 {
            q.add("a");
        }
        q.add("b");
        assert_eq!(q.depth(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test]
    async fn adds_while_running_fold_into_one_more_run() {
        let q = queue();
        q.add("a");
        assert_eq!(q.next().await, Some("a"));
        for _ in 0..10 {
            q.add("a");
        }
        // Never handed out twice at once.
        assert_eq!(q.depth(), 0);
        q.done(&"a", true);
        assert_eq!(q.depth(), 1);
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a", true);
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
                while let Some(k) = q.next().await {
                    {
                        let mut r = running.lock().unwrap();
                        if !r.insert(k) {
                            overlaps.lock().unwrap().push(format!("worker {w} got {k} while it ran"));
                        }
                        peak.fetch_max(r.len(), Ordering::SeqCst);
                    }
                    if runs.fetch_add(1, Ordering::SeqCst) + 1 < RUNS {
                        q.add(k); // a change while it runs
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    running.lock().unwrap().remove(k);
                    q.done(&k, true);
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
        assert_eq!(*overlaps.lock().unwrap(), Vec::<String>::new());
        assert!(runs.load(Ordering::SeqCst) >= RUNS);
        assert_eq!(peak.load(Ordering::SeqCst), 2, "both keys ran at once (the check above saw concurrency)");
    }

    #[tokio::test]
    async fn failures_back_off_growing_and_success_resets() {
        let q = queue();
        q.add("a");
        let mut delays = Vec::new();
        for _ in 0..4 {
            let k = q.next().await.unwrap();
            delays.push(q.done(&k, false).unwrap());
        }
        assert!(delays.windows(2).all(|w| w[1] >= w[0]), "{delays:?}");
        assert!(delays[3] > delays[0], "{delays:?}");
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(200)), "capped: {delays:?}");
        let k = q.next().await.unwrap();
        assert_eq!(q.done(&k, true), None);
        q.add("a");
        let k = q.next().await.unwrap();
        assert_eq!(q.done(&k, false), Some(Duration::from_millis(20)), "reset to the first delay");
    }

    /// Whether `q.next()` hands out a key without any time passing.
    async fn ready_now(q: &WorkQueue<&'static str>) -> Option<&'static str> {
        tokio::select! { biased; k = q.next() => k, _ = std::future::ready(()) => None }
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_skips_the_backoff_wait() {
        let q = queue();
        q.add("a");
        let k = q.next().await.unwrap();
        q.done(&k, false);
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
        assert_eq!(q.next().await, Some("r"));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(30) && waited < Duration::from_millis(35),
            "handed out when due: {waited:?}"
        );
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.next().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "an empty queue hands out nothing");
        q.close();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
