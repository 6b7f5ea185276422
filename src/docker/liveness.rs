//! Whether each host's Docker API answers: `berth_host_up`, whether the operator trusts a host's
//! event stream (and so its cached observation), and whether a converge waits on the host at all.
//!
//! An open connection proves nothing: a frozen dockerd (SIGSTOP, a hung daemon) keeps its event
//! stream open and answers nothing. So a host is up when it last *answered*: a `/_ping` every
//! [`PING_EVERY`] with a [`PING_TIMEOUT`], plus the outcome of every real call ([`record`]). Any
//! answer, even an HTTP error, means up at once; a real call without an answer means down at once;
//! pings must fail twice in a row, so one slow answer on a busy machine does not flap the host.
//!
//! A host the operator [`forget`]s (it left the store) records nothing until it is [`track`]ed again,
//! so a reconcile still in flight cannot resurrect a deleted host's series.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::watch;

use super::error::DockerError;

/// How long after an answer the next `/_ping` goes out.
pub const PING_EVERY: Duration = Duration::from_secs(2);
/// A ping not answered within this failed. A frozen host reads down after two: within
/// `PING_EVERY + 2 × PING_TIMEOUT + PING_EVERY` = 12 s of its last answer.
pub const PING_TIMEOUT: Duration = Duration::from_secs(4);
/// Failed pings in a row that make a host down.
const PINGS_TO_FAIL: u32 = 2;

/// What is known of one tracked host.
struct Entry {
    /// `None` before the first outcome, then whether the host answered last.
    up: watch::Sender<Option<bool>>,
    failed_pings: u32,
    /// The failure that made the host down, for the status of the converges that skip it.
    why: Option<DockerError>,
}

/// Every host with an outcome, and the hosts that left the store.
#[derive(Default)]
struct Table {
    hosts: HashMap<String, Entry>,
    gone: HashSet<String>,
}

impl Table {
    fn entry(&mut self, host: &str) -> Option<&mut Entry> {
        if self.gone.contains(host) {
            return None;
        }
        let new = || Entry { up: watch::channel(None).0, failed_pings: 0, why: None };
        Some(self.hosts.entry(host.to_string()).or_insert_with(new))
    }
}

fn table() -> MutexGuard<'static, Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(Default::default).lock()
}

/// The operator follows this host (again): its outcomes count, even after a [`forget`].
pub fn track(host: &str) {
    let mut t = table();
    t.gone.remove(host);
    t.entry(host);
}

/// The host left the store: its outcomes stop counting and its `berth_host_up` series goes.
pub fn forget(host: &str) {
    let mut t = table();
    t.hosts.remove(host);
    t.gone.insert(host.to_string());
    let _ = crate::metrics::global().host_up.remove_label_values(&[host]);
}

/// Follows a host's verdicts (`None` until the first outcome; a forgotten host's sender is gone).
pub fn subscribe(host: &str) -> watch::Receiver<Option<bool>> {
    match table().entry(host) {
        Some(e) => e.up.subscribe(),
        None => watch::channel(None).1,
    }
}

/// Whether a host is known not to answer right now.
pub fn is_down(host: &str) -> bool {
    table().hosts.get(host).is_some_and(|e| *e.up.borrow() == Some(false))
}

/// The error a converge reports for a host it does not wait on because it is down: the failure that
/// made it down, in its own words.
pub fn not_answering(host: &str) -> DockerError {
    let why = table().hosts.get(host).and_then(|e| e.why.clone());
    let mut e = why.unwrap_or_else(|| ping_timeout(host));
    e.message = format!("{} (not waited on until it answers)", e.message);
    e
}

fn ping_timeout(host: &str) -> DockerError {
    DockerError::new(host, "ping", format!("no answer within {}s", PING_TIMEOUT.as_secs()))
}

/// Whether an outcome means the host answered: success, or any HTTP status (a 404 is an answer).
fn answered<T>(outcome: &Result<T, DockerError>) -> bool {
    match outcome {
        Ok(_) => true,
        Err(e) => e.status.is_some(),
    }
}

/// Records the outcome of a real Docker call on a host.
pub fn record<T>(host: &str, outcome: &Result<T, DockerError>) {
    set(host, outcome, false);
}

/// Applies one outcome; `ping` failures count towards [`PINGS_TO_FAIL`].
fn set<T>(host: &str, outcome: &Result<T, DockerError>, ping: bool) {
    let mut t = table();
    let Some(e) = t.entry(host) else { return };
    let verdict = if answered(outcome) {
        e.failed_pings = 0;
        true
    } else if ping {
        e.failed_pings += 1;
        match *e.up.borrow() {
            Some(true) if e.failed_pings < PINGS_TO_FAIL => return,
            _ => false,
        }
    } else {
        false
    };
    e.why = outcome.as_ref().err().filter(|_| !verdict).cloned();
    e.up.send_if_modified(|v| v.replace(verdict) != Some(verdict));
    crate::metrics::global().host_up.with_label_values(&[host]).set(verdict as i64);
}

/// Pings a host for ever: `ping` once at once, then [`PING_EVERY`] after each outcome, each given
/// [`PING_TIMEOUT`]. The caller aborts the task when the host leaves the store.
pub async fn keep_pinging<F, Fut>(host: &str, mut ping: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), DockerError>>,
{
    loop {
        // Not counted in `berth_docker_request_*`: those count the work converges cause (a no-op
        // resync makes none), and a ping's news is `berth_host_up`.
        let outcome = match tokio::time::timeout(PING_TIMEOUT, ping()).await {
            Ok(r) => r,
            Err(_) => Err(ping_timeout(host)),
        };
        set(host, &outcome, true);
        tokio::time::sleep(PING_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    use tokio::time::Instant;

    /// A host name no other test (they share the process-wide table) uses.
    fn host(name: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed))
    }

    /// A daemon whose `/_ping` answers at once, hangs while `frozen`, or is refused while `dead`.
    #[derive(Clone, Default)]
    struct FakeDaemon {
        frozen: Arc<AtomicBool>,
        dead: Arc<AtomicBool>,
        pings: Arc<AtomicU32>,
    }

    impl FakeDaemon {
        fn ping(&self, host: &str) -> impl Future<Output = Result<(), DockerError>> {
            let (d, host) = (self.clone(), host.to_string());
            async move {
                d.pings.fetch_add(1, Ordering::SeqCst);
                if d.dead.load(Ordering::SeqCst) {
                    return Err(DockerError::new(&host, "ping", "connection refused"));
                }
                while d.frozen.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(())
            }
        }

        fn start(&self, host: &str) -> tokio::task::JoinHandle<()> {
            track(host);
            let (d, h) = (self.clone(), host.to_string());
            tokio::spawn(async move { keep_pinging(&h, || d.ping(&h)).await })
        }
    }

    /// Paused time until the host's verdict is `want`.
    async fn time_until(host: &str, want: bool) -> Duration {
        let t = Instant::now();
        subscribe(host).wait_for(|v| *v == Some(want)).await.expect("tracked");
        t.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_frozen_host_reads_down_within_15_s_and_up_when_it_answers_again() {
        let h = host("frozen");
        let d = FakeDaemon::default();
        let pinger = d.start(&h);
        assert_eq!(time_until(&h, true).await, Duration::ZERO, "the first ping goes out at once");
        // Frozen just after an answer: the worst case.
        d.frozen.store(true, Ordering::SeqCst);
        let down_after = time_until(&h, false).await;
        assert!(down_after <= Duration::from_secs(15), "down only after {down_after:?}");
        assert!(down_after >= PING_EVERY + PING_TIMEOUT * 2, "one slow ping made it down after {down_after:?}");
        assert_eq!(crate::metrics::global().host_up.with_label_values(&[&h]).get(), 0);
        let skipped = not_answering(&h).to_string();
        assert!(skipped.contains("ping: no answer within 4s (not waited on"), "{skipped}");
        // Still down while it stays frozen.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(is_down(&h));
        d.frozen.store(false, Ordering::SeqCst);
        // The next ping (or one in flight) answers.
        let up_after = time_until(&h, true).await;
        assert!(up_after <= PING_EVERY + Duration::from_millis(100), "up again only after {up_after:?}");
        assert_eq!(crate::metrics::global().host_up.with_label_values(&[&h]).get(), 1);
        pinger.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn one_slow_ping_does_not_make_a_host_down() {
        let h = host("slow");
        let d = FakeDaemon::default();
        let pinger = d.start(&h);
        time_until(&h, true).await;
        let mut verdicts = subscribe(&h);
        verdicts.mark_unchanged();
        d.frozen.store(true, Ordering::SeqCst);
        // Let exactly one ping time out, then answer the next one.
        let first_failed = d.pings.load(Ordering::SeqCst) + 1;
        while d.pings.load(Ordering::SeqCst) <= first_failed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        d.frozen.store(false, Ordering::SeqCst);
        tokio::time::sleep(PING_EVERY * 3).await;
        assert!(!verdicts.has_changed().unwrap(), "the host flapped: {:?}", *verdicts.borrow());
        assert!(!is_down(&h));
        pinger.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_host_reads_down_after_two_pings_and_up_after_the_first_answer() {
        let h = host("dead");
        let d = FakeDaemon::default();
        d.dead.store(true, Ordering::SeqCst);
        let pinger = d.start(&h);
        // Nothing known before: the first refusal already says down.
        assert_eq!(time_until(&h, false).await, Duration::ZERO);
        d.dead.store(false, Ordering::SeqCst);
        assert!(time_until(&h, true).await <= PING_EVERY);
        d.dead.store(true, Ordering::SeqCst);
        assert!(time_until(&h, false).await <= PING_EVERY * 2);
        pinger.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn real_calls_decide_at_once_and_an_http_error_is_an_answer() {
        let h = host("calls");
        track(&h);
        record(&h, &Ok::<(), DockerError>(()));
        assert!(!is_down(&h));
        assert_eq!(crate::metrics::global().host_up.with_label_values(&[&h]).get(), 1, "up without waiting for a ping");
        record::<()>(&h, &Err(DockerError::new(&h, "list containers", "no answer within 30s")));
        assert!(is_down(&h), "a call without an answer makes the host down at once");
        let skipped = not_answering(&h).to_string();
        assert!(skipped.contains("list containers: no answer within 30s"), "converges report why: {skipped}");
        let mut conflict = DockerError::new(&h, "create x", "name taken");
        conflict.status = Some(409);
        record::<()>(&h, &Err(conflict));
        assert!(!is_down(&h), "a 409 is an answer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_host_records_nothing_until_it_is_tracked_again() {
        let h = host("gone");
        let refused = || Err::<(), _>(DockerError::new(&h, "list containers", "refused"));
        // A call before the operator's watcher started counts already.
        record(&h, &refused());
        assert!(is_down(&h));
        forget(&h);
        assert!(!is_down(&h), "forgotten");
        record(&h, &refused());
        assert!(!is_down(&h), "a reconcile in flight does not bring a deleted host back");
        let series = crate::metrics::global().render();
        assert!(!series.contains(&format!("host=\"{h}\"")), "the host_up series of a forgotten host is left");
        track(&h);
        record(&h, &refused());
        assert!(is_down(&h), "a host added again counts again");
    }
}
