//! One converge of one App, start to end: read the last status, observe the hosts, pin images,
//! build the desired state once, plan, execute (reporting waits as they happen), derive and write
//! the status. Deleting the keys of a deleted App is the finalizer's (`controller::finalizer`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, warn};

use super::execute::Run;
use super::history::{self, ConvergeOptions};
use super::images::{resolve_images, Pins};
use super::progress::{self, Progress};
use super::proxy;
use super::rollout::{self, LastReady};
use super::secrets;
use super::status::{self, AppStatus, ContainerPhase, ConvergeReport, Phase, RolloutFailure};
use super::timings::Timings;
use super::{AlwaysOpen, Gate, Outcome};
use crate::docker::{HostPool, Observation};
use crate::plan::{self, labels, DesiredState, Plan};
use crate::sealing::Keyring;
use crate::spec::{App, Host, ProxySettings};
use crate::store::{now_rfc3339, Store, StoreError, Versioned};

/// Converges one App on every host and writes its status; the store errors only when etcd fails.
pub async fn converge(
    store: &Store,
    pool: &HostPool,
    app: &Versioned<App>,
    hosts: &[Host],
    keyring: Option<&Keyring>,
) -> Result<Outcome, StoreError> {
    converge_gated(store, pool, app, hosts, &AlwaysOpen, keyring, &ConvergeOptions::default()).await
}

/// [`converge`], starting each Docker action only while `gate` is open. `keyring` opens the
/// App's Secrets (none: an App that uses one is Blocked, `SecretUnavailable`); `options` says how
/// much history to keep.
pub async fn converge_gated(
    store: &Store,
    pool: &HostPool,
    app: &Versioned<App>,
    hosts: &[Host],
    gate: &dyn Gate,
    keyring: Option<&Keyring>,
    options: &ConvergeOptions,
) -> Result<Outcome, StoreError> {
    let spec_app = &app.value;
    let (ns, name) = (spec_app.namespace(), spec_app.metadata.name.as_str());
    let mut timings = Timings::start();
    let previous = read_status(store, ns, name).await?;
    // A rolled-back rollout of this very generation is not attempted again: run the last Ready one.
    let failure = previous.as_ref().and_then(|p| p.rollout_failure.clone()).filter(|f| f.applies_to(spec_app));
    let last_ready = match &failure {
        Some(_) => read_last_ready(store, ns, name).await?,
        None => None,
    };
    timings.mark("status");
    let observation = pool.observe(hosts).await;
    timings.mark("observe");
    let effective: Cow<App> = match &last_ready {
        Some(lr) => Cow::Owned(lr.app(spec_app)),
        None => Cow::Borrowed(spec_app),
    };
    let previous_hosts: Option<BTreeSet<String>> = previous.as_ref().map(|p| {
        let seen = |h: &&crate::engine::HostStatus| h.containers.iter().any(|c| c.state != ContainerPhase::Missing);
        p.hosts.iter().filter(|(_, h)| seen(h)).map(|(n, _)| n.clone()).collect()
    });
    // Secrets first: without them nothing of the App can be planned (nor its images pulled). A
    // deleted App runs nothing, so it needs none: its removal never waits for a sealing key.
    let deleting = spec_app.metadata.deletion_timestamp.is_some();
    let opened =
        if deleting { Ok(Ok(secrets::Opened::default())) } else { secrets::open(store, &effective, keyring).await };
    let (opened, unavailable) = match opened? {
        Ok(opened) => (opened, None),
        Err(why) => (secrets::Opened::default(), Some(why)),
    };
    let pins = match (&unavailable, &last_ready) {
        (Some(why), _) => Err(why.clone()),
        (None, Some(lr)) => Ok(lr.images.clone()),
        (None, None) => {
            let auths = secrets::pull_auths(&effective, &opened, &BTreeMap::new());
            pin(store, &effective, hosts, previous.as_ref(), &observation, &auths).await?
        }
    };
    timings.mark("resolve");
    let (pins, prepared) = match pins {
        Ok(pins) => {
            let prepared = prepare(&effective, hosts, &pins, &opened.values, &observation);
            (pins, prepared)
        }
        Err(e) => (BTreeMap::new(), Err(e)),
    };
    let (desired, plan, fatal) = match prepared {
        Ok((desired, plan)) => (desired, Some(plan), None),
        Err(e) => (DesiredState::default(), None, Some(e)),
    };
    timings.mark("plan");
    let progress = Progress::default();
    let mut run = Run::new(&effective, &observation, pool, &progress, gate, &desired);
    let auths = secrets::pull_auths(&effective, &opened, &pins);
    run.registries = &auths;
    run.proxy_settings = hosts.iter().map(|h| (h.metadata.name.clone(), ProxySettings::of(h))).collect();
    if let Some(mut p) = plan {
        if failure.is_some() && last_ready.is_none() {
            rollout::hold_replaces(&mut p, &observation.hosts);
        }
        // Whatever berth does on a host makes that host's cached observation stale.
        let touched: BTreeSet<&str> = p.actions().map(|a| a.host()).collect();
        for h in touched {
            pool.cache(h).mark_dirty();
        }
        // While health gates wait, the status says what for (and Blocked the moment one gives up).
        // A status already settled for this very App (Blocked, Degraded) is not turned back into
        // Progressing while the same gate is checked again: only a new verdict replaces it.
        let done = tokio::sync::Notify::new();
        let prev = previous.as_ref();
        let settled_before = prev.is_some_and(|p| p.settled_for(spec_app) && p.phase != Phase::Ready);
        let report = progress.report(&done, |phase, reason, message| {
            let interim = progress::interim(prev, spec_app, &pins, failure.as_ref(), (phase, reason, message));
            let write = !(settled_before && phase == Phase::Progressing);
            async move {
                if write {
                    if let Err(e) = store.put_status(ns, name, &interim).await {
                        warn!(error = %e, "cannot write the progress status");
                    }
                }
            }
        });
        let execute = async {
            run.execute(&p).await;
            done.notify_one();
        };
        futures::join!(execute, report);
        timings.mark("execute");
    }
    let idle: Vec<String> = run.idle_proxies.lock().iter().cloned().collect();
    if !idle.is_empty() {
        proxy::retire_unused(store, pool, &observation, &idle).await?;
    }
    let after = pool.observe(hosts).await;
    timings.mark("observe-after");
    let report = ConvergeReport {
        app: &effective,
        desired: &desired,
        images: &pins,
        host_errors: &run.host_errors,
        blocked: &run.blocked,
        interrupted: run.interrupted,
        fatal: if unavailable.is_some() { None } else { fatal.as_deref() },
        unavailable: unavailable.as_deref(),
        previous_hosts: previous_hosts.as_ref(),
        previous: previous.as_ref(),
    };
    let mut status = status::derive(&report, &after.hosts, &after.errors, &now_rfc3339());
    for (host, routes) in run.routes.lock().iter() {
        if let Some(hs) = status.hosts.get_mut(host) {
            hs.routes = proxy::route_statuses(routes);
        }
    }
    let failed_now = failure.is_none().then(|| run.rollbacks.first().cloned()).flatten();
    let settled = match (&failure, failed_now) {
        (Some(f), _) => {
            let others_fine = status.phase == Phase::Ready;
            rollout::rollout_failed(&mut status, f.clone());
            others_fine
        }
        (None, Some(first)) => {
            let running_generation = read_last_ready(store, ns, name).await?.map(|lr| lr.generation);
            let record = RolloutFailure {
                generation: spec_app.metadata.generation.unwrap_or(0),
                repin_requested_at: spec_app.repin_requested_at().map(str::to_string),
                retry_requested_at: spec_app.rollout_retry_requested_at().map(str::to_string),
                host: first.host,
                container: first.container,
                component: first.component,
                reason: first.why,
                at: now_rfc3339(),
                running_generation,
            };
            warn!(app = %name, namespace = %ns, "{}", record.describe());
            rollout::rollout_failed(&mut status, record);
            false
        }
        (None, None) => status.phase == Phase::Ready,
    };
    if failure.is_none() && status.phase == Phase::Ready && !deleting {
        let stored: Option<LastReady> = read_last_ready(store, ns, name).await?;
        if !stored.is_some_and(|lr| lr.same_as(spec_app, &pins)) {
            store.put_last_ready(ns, name, &LastReady::of(spec_app, &pins)).await?;
        }
    }
    let gone = deleting && status.phase == Phase::Ready && nothing_left(spec_app, &after, previous_hosts.as_ref());
    // A deleted App whose containers are gone gets no status: the finalizer removes its keys next.
    if !gone {
        store.put_status(ns, name, &status).await?;
        history::record(store, spec_app, &pins, &status, options.history_limit).await?;
        if run.interrupted {
            info!(app = %name, namespace = %ns, "converge interrupted: status written, the next leader carries on");
        }
    }
    timings.mark("status-write");
    tracing::debug!(app = %name, namespace = %ns, steps = %timings, "converge timings");
    let pulls = std::mem::take(&mut *run.pulls.lock());
    Ok(Outcome { status, actions: run.counts, gone, settled, pulls })
}

/// Pins the App's images, reusing the recorded pins (an App from before the pins key had them in
/// its status), and records new ones before anything runs from them. Unreadable pins are the App's
/// error, never a reason to resolve its tags again; etcd failing is the reconcile's.
async fn pin(
    store: &Store,
    app: &App,
    hosts: &[Host],
    previous: Option<&AppStatus>,
    observation: &Observation,
    registries: &secrets::PullAuths,
) -> Result<Result<BTreeMap<String, String>, String>, StoreError> {
    let (ns, name) = (app.namespace(), app.metadata.name.as_str());
    if app.metadata.deletion_timestamp.is_some() {
        return Ok(Ok(BTreeMap::new())); // a deleted App runs no image: nothing to pin
    }
    let recorded = match store.get_pins::<Pins>(ns, name).await {
        Ok(p) => p.or_else(|| previous.map(Pins::from_status)),
        Err(StoreError::Corrupt { key, reason }) => {
            return Ok(Err(format!(
                "image pins at {key} are unreadable ({reason}); delete that key to resolve the tags again"
            )))
        }
        Err(e) => return Err(e),
    };
    let images = match resolve_images(app, hosts, recorded.as_ref(), &observation.clients, registries).await {
        Ok(images) => images,
        Err(e) => return Ok(Err(e)),
    };
    let now = Pins { images, repin_requested_at: app.repin_requested_at().map(str::to_string) };
    if recorded.as_ref() != Some(&now) {
        store.put_pins(ns, name, &now).await?;
    }
    Ok(Ok(now.images))
}

/// The desired state, built once, and the plan from it; the error is the status's one line.
fn prepare(
    app: &App,
    hosts: &[Host],
    pins: &BTreeMap<String, String>,
    secrets: &crate::plan::SecretValues,
    observation: &Observation,
) -> Result<(DesiredState, Plan), String> {
    let desired = plan::desired_state_with(app, hosts, pins, secrets).map_err(|e| format!("cannot plan: {e}"))?;
    let plan = plan::plan_desired(app, hosts, &desired, &observation.hosts).map_err(|e| format!("cannot plan: {e}"))?;
    Ok((desired, plan))
}

/// The last status. Unreadable (etcd down) fails the reconcile: re-resolving images without it could
/// roll a moved tag. A corrupt one (written by hand) is replaced rather than blocking the app for ever.
async fn read_status(store: &Store, ns: &str, name: &str) -> Result<Option<AppStatus>, StoreError> {
    match store.get_status(ns, name).await {
        Ok(p) => Ok(p),
        Err(StoreError::Corrupt { key, reason }) => {
            warn!(key = %key, reason = %reason, "ignoring an unreadable status");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The last Ready record; a corrupt one (written by hand) counts as none rather than blocking the App.
async fn read_last_ready(store: &Store, ns: &str, name: &str) -> Result<Option<LastReady>, StoreError> {
    match store.get_last_ready(ns, name).await {
        Ok(lr) => Ok(lr),
        Err(StoreError::Corrupt { key, reason }) => {
            warn!(key = %key, reason = %reason, "ignoring an unreadable last Ready record");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether no container or network of the app remains on any host. An unreachable host counts as
/// "maybe something left" when the last status saw the app there, or when there is no last status.
fn nothing_left(app: &App, after: &Observation, previous_hosts: Option<&BTreeSet<String>>) -> bool {
    let ns = app.namespace();
    let blind = after.errors.keys().any(|h| previous_hosts.is_none_or(|p| p.contains(h)));
    !blind
        && after.hosts.values().all(|h| {
            !h.containers.iter().any(|c| labels::belongs_to(&c.labels, &app.metadata.name, ns))
                && !h.networks.iter().any(|n| labels::belongs_to(&n.labels, &app.metadata.name, ns))
        })
}
