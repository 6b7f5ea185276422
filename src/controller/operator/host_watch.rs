//! The operator's view of each Docker host: one event stream and one pinger per Host, restarted when
//! the Host changes or leaves the store. Drift events queue the app at once and again after a pause
//! (queue rechecks); a stream that connects, breaks, or a host that answers again queues every app.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{all_keys, Shared};
use crate::controller::backoff::ResetBackoff;
use crate::controller::reflector::AppKey;
use crate::docker::events::container_events;
use crate::docker::{liveness, ops, HostCache};
use crate::metrics;
use crate::spec::Host;

/// Keeps one Docker event stream (and pinger) per Host, restarting them when the Host changed or went away.
pub(super) async fn host_watchers(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    shared.reflector.wait_ready().await;
    let mut running: HashMap<String, (Host, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        let hosts = shared.reflector.hosts();
        running.retain(|name, (spec, handle)| {
            let keep = hosts.iter().any(|h| h == spec) && !handle.is_finished();
            if !keep {
                handle.abort();
                if !hosts.iter().any(|h| h.metadata.name == *name) {
                    liveness::forget(name);
                }
            }
            keep
        });
        for h in hosts {
            if !running.contains_key(&h.metadata.name) {
                shared.hosts_synced.lock().entry(h.metadata.name.clone()).or_insert(false);
                let handle = tokio::spawn(watch_host(shared.clone(), h.clone()));
                running.insert(h.metadata.name.clone(), (h, handle));
            }
        }
        tokio::select! { _ = tokio::time::sleep(Duration::from_secs(1)) => {}, _ = shutdown.changed() => break }
    }
    for (_, (_, handle)) in running {
        handle.abort();
    }
}

/// Aborts a task when dropped, with the watcher that owns it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether a host's event stream (so its cached observation) is believed: only while the stream is
/// connected and the host answers. A frozen dockerd keeps its stream open and says nothing.
fn trust(shared: &Shared, name: &str, cache: &HostCache, trusted: bool) {
    cache.set_synced(trusted);
    shared.hosts_synced.lock().insert(name.to_string(), trusted);
}

/// Follows one host's events for ever, and pings it meanwhile (`berth_host_up`); a drop, a
/// reconnect or the host answering again queues the apps that may have changed.
async fn watch_host(shared: Arc<Shared>, host: Host) {
    let name = host.metadata.name.clone();
    liveness::track(&name);
    let (pool_of, pinged) = (shared.clone(), host.clone());
    let _pinger = AbortOnDrop(tokio::spawn(async move {
        let ping = || {
            let (shared, host) = (pool_of.clone(), pinged.clone());
            async move { ops::ping(&shared.pool.client(&host).await?).await }
        };
        liveness::keep_pinging(&pinged.metadata.name, ping).await
    }));
    let mut answers = liveness::subscribe(&name);
    let mut backoff = ResetBackoff::reconnect();
    loop {
        match shared.pool.client(&host).await {
            Ok(client) => {
                let mut events = Box::pin(container_events(&client));
                let cache = shared.pool.cache(&name);
                // Connected before anything is trusted: events from here on keep the cache honest.
                let mut trusted = !liveness::is_down(&name);
                trust(&shared, &name, &cache, trusted);
                // The subscription reaches dockerd a moment after the first poll: distrust what was
                // listed in that moment once more.
                let late = cache.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    late.mark_dirty();
                });
                // Anything may have happened while we were not listening: look at every app again.
                for key in all_keys(&shared) {
                    shared.queue.add(key);
                }
                backoff.reset();
                loop {
                    let event = tokio::select! {
                        event = events.next() => event,
                        changed = answers.changed() => {
                            if changed.is_err() {
                                return; // the host left the store; this task is being aborted
                            }
                            let up = *answers.borrow_and_update() != Some(false);
                            if up != trusted {
                                trusted = up;
                                trust(&shared, &name, &cache, up);
                                if up {
                                    info!(host = %name, "host answers again");
                                    for key in all_keys(&shared) {
                                        shared.queue.add(key);
                                    }
                                } else {
                                    warn!(host = %name, "host does not answer; its event stream is not trusted");
                                    // Their status should say so (and BerthAppNotReady fire) without a resync.
                                    for key in all_keys(&shared) {
                                        shared.queue.add_if_idle(key);
                                    }
                                }
                            }
                            continue;
                        }
                    };
                    let Some(event) = event else { break };
                    if event.as_ref().map_or(true, |ev| ev.changes_state()) {
                        cache.mark_dirty();
                    }
                    match event {
                        Ok(ev) if ev.proxy && ev.is_drift() => {
                            // The proxy serves every app routed through this host: look at each again.
                            info!(host = %name, action = %ev.action, "drift of the proxy");
                            for key in all_keys(&shared) {
                                shared.queue.add(key.clone());
                                for delay in DRIFT_LOOK_AGAIN {
                                    shared.queue.recheck_after(key.clone(), delay);
                                }
                            }
                        }
                        Ok(ev) if ev.is_drift() => {
                            let key = (ev.namespace.clone(), ev.app.clone());
                            // Hosts are shared: containers of apps this operator does not manage (another
                            // prefix) are none of its business, in the log or in the metrics.
                            if !is_known(&shared, &key) {
                                continue;
                            }
                            if !shared.queue.is_running(&key) {
                                info!(host = %name, app = %ev.app, namespace = %ev.namespace, container = %ev.container, action = %ev.action, "drift");
                                metrics::global().drift_repairs.with_label_values(&[&ev.app, &ev.namespace]).inc();
                            }
                            shared.queue.add(key.clone());
                            for delay in DRIFT_LOOK_AGAIN {
                                shared.queue.recheck_after(key.clone(), delay);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(host = %name, error = %e, "docker event stream broke");
                            break;
                        }
                    }
                }
                cache.set_synced(false);
                shared.pool.forget(&name).await;
            }
            Err(e) => warn!(host = %name, error = %e, "host unreachable"),
        }
        shared.hosts_synced.lock().insert(name.clone(), false);
        for key in all_keys(&shared) {
            shared.queue.add_if_idle(key);
        }
        let wait = backoff.next().unwrap_or(Duration::from_secs(30));
        // A host that answers again is followed again at once, not after the backoff.
        let was_up = *answers.borrow_and_update() == Some(true);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            up = answers.wait_for(|v| *v == Some(true)), if !was_up => if up.is_err() { return },
        }
    }
}

/// Docker sends `die` before its container list shows the container exited (about 100 ms later on an
/// idle host, more on a busy one), so the reconcile an event starts may still list it as running and
/// cache that; after `docker kill` no further event comes to correct it. Drift is looked at again
/// (queue rechecks) this long after the event, with the app's hosts' cached observations distrusted.
const DRIFT_LOOK_AGAIN: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];

/// Whether an app is this operator's: in the store, or deleted but not yet pruned.
fn is_known(shared: &Shared, key: &AppKey) -> bool {
    shared.reflector.app(key).is_some() || shared.tombstones.contains(key)
}
