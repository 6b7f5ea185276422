//! Proxied roles: the host's proxy kept running, an app's routes kept pointing at its serving
//! containers, and the start-first replace (the new container starts beside the old one, answers
//! its health path through the proxy, takes the route, and only then is the old one drained and
//! removed). A new container that never answers is removed; the route never moved and the old
//! container was never stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::execute::Run;
use super::failure::{ActionFailure, Rollback, WaitFailure};
use crate::docker::proxy::{self as docker_proxy, LoadedRoutes};
use crate::docker::{ops, DockerError, HostClient, HostPool};
use crate::plan::routes::{self, ProxyTarget, Route, RouteTable, PROXY_CONTAINER, PROXY_NETWORK};
use crate::plan::{ContainerTemplate, DesiredContainer, ObservedContainer};
use crate::spec::{ProxySettings, SecretValue};

/// How often the old container's requests in flight are counted while it drains.
const DRAIN_POLL: Duration = Duration::from_millis(200);

impl Run<'_> {
    /// The proxy settings of a host (the defaults for a Host without a `proxy` section).
    fn proxy_settings(&self, host: &str) -> ProxySettings {
        self.proxy_settings.get(host).cloned().unwrap_or_default()
    }

    /// The proxy container the observation this converge started from shows on `host`, if any.
    fn proxy_seen(&self, host: &str) -> Option<&ObservedContainer> {
        self.observed.get(host)?.containers.iter().find(|c| c.name == PROXY_CONTAINER && routes::is_proxy(&c.labels))
    }

    /// Makes `book` hold the routes of the proxy container `id` (read back from it once per
    /// container: a restarted berth, or a proxy re-created by someone else).
    async fn adopt(&self, c: &HostClient, book: &mut LoadedRoutes, id: &str) -> Result<(), DockerError> {
        if book.container_id.as_deref() != Some(id) {
            book.table = docker_proxy::read_routes(c, id).await?.unwrap_or_default();
            book.container_id = Some(id.to_string());
        }
        Ok(())
    }

    /// The proxy on `c` running with the Host's settings, and `book` holding what it serves (read
    /// back once per proxy container). Creates it (and its network) when missing.
    async fn proxy_up(&self, c: &HostClient, book: &mut LoadedRoutes) -> Result<String, DockerError> {
        let settings = self.proxy_settings(&c.name);
        let hash = docker_proxy::settings_hash(&settings);
        if let Some(p) = self.proxy_seen(&c.name) {
            let current = p.labels.get(docker_proxy::SETTINGS_HASH) == Some(&hash);
            if current && p.state.is_up() && book.container_id.as_deref() == Some(p.id.as_str()) {
                return Ok(p.id.clone());
            }
        }
        let id = match docker_proxy::find(c).await? {
            Some(found) if found.settings_hash.as_deref() == Some(hash.as_str()) => {
                if !found.running {
                    info!(host = %c.name, "starting the proxy");
                    ops::start(c, &found.id, PROXY_CONTAINER).await?;
                    self.pool.cache(&c.name).mark_dirty();
                }
                found.id
            }
            other => {
                if let Some(old) = other {
                    info!(host = %c.name, "re-creating the proxy: its image or ports changed");
                    ops::stop(c, &old.id, PROXY_CONTAINER).await?;
                    ops::remove(c, &old.id, PROXY_CONTAINER).await?;
                }
                info!(host = %c.name, image = %settings.image, "creating the proxy");
                ops::create_network(c, PROXY_NETWORK, &routes::proxy_labels()).await?;
                ops::pull(c, &settings.image, None).await?; // bounded, like every pull; a no-op when present
                let id = docker_proxy::create(c, &settings).await?;
                // A new proxy serves every route berth knows of on this host from its first second.
                book.table = servable(&c.name, std::mem::take(&mut book.table), &book.certificates);
                let certs = referenced(&book.table, &book.certificates);
                docker_proxy::write_config(c, &id, &book.table, settings.https_port.is_some(), &certs).await?;
                ops::start(c, &id, PROXY_CONTAINER).await?;
                self.pool.cache(&c.name).mark_dirty();
                book.container_id = Some(id.clone());
                id
            }
        };
        if let Err(e) = self.adopt(c, book, &id).await {
            // A proxy in a crash loop cannot be asked: its Apps' converges rebuild the table.
            warn!(host = %c.name, error = %e, "cannot read the proxy's routes; rebuilding them");
            book.table = RouteTable::new();
            book.container_id = Some(id.clone());
        }
        Ok(id)
    }

    /// The proxy seen running when this converge began, with `book` holding its routes; never
    /// creates, starts or re-creates anything.
    async fn proxy_known(&self, c: &HostClient, book: &mut LoadedRoutes) -> Option<String> {
        let seen = self.proxy_seen(&c.name).filter(|p| p.state.is_up())?;
        if let Err(e) = self.adopt(c, book, &seen.id).await {
            warn!(host = %c.name, error = %e, "cannot read the proxy's routes");
            return None;
        }
        Some(seen.id.clone())
    }

    /// The proxy's container id, made sure of (for a probe or a drain).
    pub(super) async fn proxy_id(&self, c: &HostClient) -> Result<String, DockerError> {
        let cache = self.pool.cache(&c.name);
        let mut book = cache.proxy_routes.lock().await;
        self.proxy_up(c, &mut book).await
    }

    /// Loads `table` into the proxy when it differs from what it serves; `certs` are certificate
    /// files this App's routes name.
    async fn load(
        &self,
        c: &HostClient,
        book: &mut LoadedRoutes,
        proxy_id: &str,
        table: RouteTable,
        certs: BTreeMap<String, SecretValue>,
    ) -> Result<bool, DockerError> {
        let new_certs = certs.iter().any(|(path, pem)| book.certificates.get(path) != Some(pem));
        if table == book.table && !new_certs {
            return Ok(false);
        }
        book.certificates.extend(certs);
        let table = servable(&c.name, table, &book.certificates);
        let https = self.proxy_settings(&c.name).https_port.is_some();
        let files = referenced(&table, &book.certificates);
        docker_proxy::write_config(c, proxy_id, &table, https, &files).await?;
        if let Err(e) = docker_proxy::reload(c, proxy_id).await {
            if e.message.contains("HTTP 400") {
                return Err(e); // Caddy refused this configuration; it still serves the last one
            }
            // Caddy is not answering (a crash loop on an older configuration): the file is right now.
            warn!(host = %c.name, "the proxy does not answer; restarting it on the new configuration");
            ops::stop(c, proxy_id, PROXY_CONTAINER).await?;
            ops::start(c, proxy_id, PROXY_CONTAINER).await?;
            self.pool.cache(&c.name).mark_dirty();
        }
        book.table = table;
        Ok(true)
    }

    /// Points `target`'s route at `container` (a graceful reload) and counts the switch.
    async fn switch_route(&self, c: &HostClient, target: &ProxyTarget, container: &str) -> Result<(), DockerError> {
        let cache = self.pool.cache(&c.name);
        let mut book = cache.proxy_routes.lock().await;
        let proxy_id = self.proxy_up(c, &mut book).await?;
        let before = book.table.get(&target.route_id).map(|r| r.container.clone());
        let mut table = book.table.clone();
        table.insert(target.route_id.clone(), target.route_to(container));
        if self.load(c, &mut book, &proxy_id, table, certificate_files(target)).await?
            && before.as_deref() != Some(container)
        {
            info!(host = %c.name, route = %target.route_id, to = %container, "route switched");
            crate::metrics::global().proxy_route_switches.with_label_values(&[c.name.as_str()]).inc();
        }
        self.routed.lock().insert((c.name.clone(), container.to_string()));
        Ok(())
    }

    /// Asks `container`'s health path through the proxy until it answers 2xx/3xx, within the
    /// rollout's health timeout.
    pub(super) async fn probe_until_healthy(
        &self,
        c: &HostClient,
        container: &str,
        target: &ProxyTarget,
    ) -> Result<(), WaitFailure> {
        let proxy_id = self.proxy_id(c).await.map_err(|e| WaitFailure::Failed(e.to_string()))?;
        let url = format!("http://{container}:{}{}", target.spec.app_port, target.spec.health_path);
        let deadline = Instant::now() + self.health_timeout;
        // The status says what is waited for while it lasts.
        let who = match self.desired.by_name(container) {
            Some(d) => format!("{}/{}", d.component.kind(), d.component.name()),
            None => container.to_string(),
        };
        let what = format!("{who} on {} (GET {} through the proxy)", c.name, target.spec.health_path);
        let wait = self.progress.start_wait(what, self.health_timeout);
        loop {
            if !self.gate.is_open() {
                let why = format!("probe of {container} on {} cut short: the operator is stopping", c.name);
                return Err(WaitFailure::Interrupted(why));
            }
            let last = match docker_proxy::probe(c, &proxy_id, &url, target.spec.health_timeout).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            wait.update("not answering");
            if Instant::now() >= deadline {
                let within = humantime::format_duration(self.health_timeout);
                let why = format!("{container} on {} did not answer its health path within {within}: {last}", c.name);
                return Err(self.gave_up(c, container, why));
            }
            tokio::time::sleep(target.spec.health_interval.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }

    /// After a proxied container was created or started by this converge: it must answer its
    /// health path, then it takes the route.
    pub(super) async fn route_to_new(&self, c: &HostClient, d: &ContainerTemplate) -> Result<(), ActionFailure> {
        let Some(target) = &d.proxy else { return Ok(()) };
        self.probe_until_healthy(c, &d.name, target).await?;
        self.switch_route(c, target, &d.name).await.map_err(|e| ActionFailure::Error(e.to_string()))
    }

    /// Start-first replace of a proxied container: the old one serves until the new one answers and
    /// takes the route; then the old one drains and goes. On failure only the new one is removed.
    pub(super) async fn replace_start_first(
        &self,
        c: &HostClient,
        old_id: &str,
        old_name: &str,
        new: &DesiredContainer,
        target: &ProxyTarget,
        count: &mut impl FnMut(&str),
    ) -> Result<(), ActionFailure> {
        let err = |e: DockerError| ActionFailure::Error(e.to_string());
        self.prepare_replace(c, new, count).await.map_err(err)?;
        let proxy_id = self.proxy_id(c).await.map_err(err)?;
        let attempt = async {
            let id = self.create_proxied(c, new, count).await.map_err(|e| (None, WaitFailure::Failed(e)))?;
            ops::start(c, &id, &new.name).await.map_err(|e| (Some(id.clone()), WaitFailure::Failed(e.to_string())))?;
            count("start");
            self.wait_ready(c, &id, &new.name).await.map_err(|e| (Some(id.clone()), e))?;
            self.probe_until_healthy(c, &new.name, target).await.map_err(|e| (Some(id.clone()), e))?;
            Ok::<String, (Option<String>, WaitFailure)>(id)
        };
        match attempt.await {
            Ok(_) => {
                self.switch_route(c, target, &new.name).await.map_err(err)?;
                self.drain(c, &proxy_id, &format!("{old_name}:{}", target.spec.app_port), target).await;
                ops::stop(c, old_id, old_name).await.map_err(err)?;
                count("stop");
                ops::remove(c, old_id, old_name).await.map_err(err)?;
                count("remove");
                Ok(())
            }
            Err((new_id, why)) => {
                self.discard(c, new_id, &new.name, count).await;
                let why = match why {
                    WaitFailure::Interrupted(e) => return Err(ActionFailure::Interrupted(e)),
                    WaitFailure::Failed(why) => why,
                };
                let message = format!(
                    "rollout of {} on {} rolled back: {why}; traffic stayed on {old_name}, which kept running",
                    new.name, c.name
                );
                Err(ActionFailure::RolledBack(Rollback::of(&c.name, new, why), message))
            }
        }
    }

    /// Creates a proxied container and joins it to the proxy network before it starts; says whether
    /// the create pulled. The error is the Docker error's text.
    pub(super) async fn create_proxied(
        &self,
        c: &HostClient,
        d: &DesiredContainer,
        count: &mut impl FnMut(&str),
    ) -> Result<String, String> {
        let (created, pulled) = self.create(c, d).await;
        if pulled {
            count("pull");
        }
        let id = created.map_err(|e| e.to_string())?;
        count("create");
        if d.proxy.is_some() {
            if let Err(e) = docker_proxy::join_network(c, &id, &d.name).await {
                let _ = ops::remove(c, &id, &d.name).await;
                return Err(e.to_string());
            }
        }
        Ok(id)
    }

    /// Waits until the proxy has no request in flight to `upstream`, at most the route's `drainTimeout`.
    async fn drain(&self, c: &HostClient, proxy_id: &str, upstream: &str, target: &ProxyTarget) {
        let deadline = Instant::now() + target.spec.drain_timeout;
        loop {
            match docker_proxy::in_flight(c, proxy_id, upstream).await {
                Ok(Some(n)) if n > 0 && Instant::now() < deadline => tokio::time::sleep(DRAIN_POLL).await,
                Ok(_) => return,
                Err(e) => {
                    warn!(host = %c.name, error = %e, "cannot count the requests in flight; stopping {upstream} now");
                    return;
                }
            }
        }
    }

    /// Makes this App's routes on every host match its serving containers (before prune removes
    /// anything): a route follows its role's current container once that is up, a route whose role
    /// left the host goes, and a proxy no route uses any more is noted for retirement.
    pub(super) async fn reconcile_routes(&self) -> BTreeMap<String, String> {
        if !self.gate.is_open() {
            return BTreeMap::new(); // no longer leading (or stopping): the next leader does it
        }
        let mut wanted: BTreeMap<&str, Vec<&ContainerTemplate>> = BTreeMap::new();
        for (t, on) in self.desired.templates() {
            if t.proxy.is_some() {
                for h in on {
                    wanted.entry(h.as_str()).or_default().push(t);
                }
            }
        }
        let visit: BTreeSet<&str> = self
            .clients
            .keys()
            .map(String::as_str)
            .filter(|h| wanted.contains_key(h) || self.proxy_seen(h).is_some())
            .collect();
        let results = futures::future::join_all(visit.into_iter().map(|h| {
            let templates = wanted.get(h).cloned().unwrap_or_default();
            async move { (h.to_string(), self.reconcile_host(&self.clients[h], &templates).await) }
        }))
        .await;
        results.into_iter().filter_map(|(h, r)| r.err().map(|e| (h, e))).collect()
    }

    async fn reconcile_host(&self, c: &HostClient, templates: &[&ContainerTemplate]) -> Result<(), String> {
        let cache = self.pool.cache(&c.name);
        let mut book = cache.proxy_routes.lock().await;
        let proxy_id = if templates.is_empty() {
            // Nothing of this App is proxied here: at most its old routes go. The proxy itself is
            // left as it is (its settings are the Hosts' whose Apps do route here).
            match self.proxy_known(c, &mut book).await {
                Some(id) => id,
                None => return Ok(()),
            }
        } else {
            self.proxy_up(c, &mut book).await.map_err(|e| e.to_string())?
        };
        let (app, ns) = (&self.app.metadata.name, self.app.namespace());
        let prefix = routes::route_prefix(app, ns);
        let mut mine = RouteTable::new();
        let mut certs = BTreeMap::new();
        for t in templates {
            let target = t.proxy.as_ref().expect("only proxied templates");
            let current = book.table.get(&target.route_id).map(|r| r.container.clone());
            let serving = if self.is_up(&c.name, &t.name) {
                let checked = self.routed.lock().contains(&(c.name.clone(), t.name.clone()));
                if current.as_deref() == Some(t.name.as_str()) || checked {
                    Some(t.name.clone())
                } else {
                    // Traffic moves to a container no action of this converge checked: check it first.
                    drop(book);
                    let probed = self.probe_until_healthy(c, &t.name, target).await;
                    book = cache.proxy_routes.lock().await;
                    match probed {
                        Ok(()) => Some(t.name.clone()),
                        Err(e) => {
                            warn!(host = %c.name, "route of {} stays: {e}", target.route_id);
                            current
                        }
                    }
                }
            } else {
                current
            };
            if let Some(container) = serving {
                mine.insert(target.route_id.clone(), target.route_to(&container));
                certs.extend(certificate_files(target));
            }
        }
        let mut table: RouteTable = book.table.iter().filter(|(id, _)| !id.starts_with(&prefix)).map(clone2).collect();
        table.extend(mine.iter().map(clone2));
        let switched = mine.iter().filter(|(id, r)| book.table.get(*id).is_none_or(|old| old.container != r.container));
        let switched: Vec<String> = switched.map(|(id, _)| id.clone()).collect();
        if self.load(c, &mut book, &proxy_id, table, certs).await.map_err(|e| e.to_string())? {
            for id in switched {
                info!(host = %c.name, route = %id, "route set");
                crate::metrics::global().proxy_route_switches.with_label_values(&[c.name.as_str()]).inc();
            }
        }
        if book.table.is_empty() {
            self.idle_proxies.lock().insert(c.name.clone());
        }
        self.routes.lock().insert(c.name.clone(), mine);
        Ok(())
    }

    /// Whether `name` runs on `host`: started by this converge, or seen up when it began.
    fn is_up(&self, host: &str, name: &str) -> bool {
        self.routed.lock().contains(&(host.to_string(), name.to_string()))
            || self.observed.get(host).is_some_and(|o| o.containers.iter().any(|x| x.name == name && x.state.is_up()))
    }
}

fn clone2((id, r): (&String, &Route)) -> (String, Route) {
    (id.clone(), r.clone())
}

/// The certificate files of `target`'s route (path → PEM).
fn certificate_files(target: &ProxyTarget) -> BTreeMap<String, SecretValue> {
    match &target.certificate {
        Some(cert) => BTreeMap::from([(cert.cert_path(), cert.cert.clone()), (cert.key_path(), cert.key.clone())]),
        None => BTreeMap::new(),
    }
}

/// `table` without the TLS routes whose certificates this process does not hold (read back from a
/// proxy a previous berth wrote, then re-created): Caddy would refuse the whole configuration for
/// one missing file. Their Apps' converges put them back with their certificates.
fn servable(host: &str, mut table: RouteTable, held: &BTreeMap<String, SecretValue>) -> RouteTable {
    table.retain(|id, r| match &r.tls {
        routes::RouteTls::Files { cert, key } if !(held.contains_key(cert) && held.contains_key(key)) => {
            warn!(host = %host, route = %id, "left out until its App's converge brings its certificate");
            false
        }
        _ => true,
    });
    table
}

/// The certificates `table` names, out of those berth holds.
fn referenced(table: &RouteTable, held: &BTreeMap<String, SecretValue>) -> BTreeMap<String, SecretValue> {
    let mut out = BTreeMap::new();
    for r in table.values() {
        if let routes::RouteTls::Files { cert, key } = &r.tls {
            for path in [cert, key] {
                if let Some(pem) = held.get(path) {
                    out.insert(path.clone(), pem.clone());
                }
            }
        }
    }
    out
}

/// The status lines of an App's routes on one host.
pub(super) fn route_statuses(table: &RouteTable) -> Vec<super::status::RouteStatus> {
    table
        .iter()
        .map(|(id, r)| super::status::RouteStatus {
            role: id.rsplit('.').next().unwrap_or_default().to_string(),
            hosts: r
                .hosts
                .iter()
                .map(|h| if r.path_prefix == "/" { h.clone() } else { format!("{h}{}", r.path_prefix) })
                .collect(),
            container: r.container.clone(),
        })
        .collect()
}

/// Removes the proxy of each of `hosts` that serves no route any more, unless an App in the store
/// still places a proxied role there (its converge is about to add its route). A host that fails
/// keeps its proxy: a later converge tries again.
pub(super) async fn retire_unused(
    store: &crate::store::Store,
    pool: &HostPool,
    observation: &crate::docker::Observation,
    hosts: &[String],
) -> Result<(), crate::store::StoreError> {
    let apps = store.list_apps(None).await?;
    for host in hosts {
        let live = apps.iter().filter(|a| a.metadata.deletion_timestamp.is_none());
        let wanted = live.flat_map(crate::spec::route_claims).any(|r| &r.host == host);
        let Some(c) = observation.clients.get(host) else { continue };
        if wanted {
            continue;
        }
        if let Err(e) = retire(pool, c).await {
            warn!(host = %host, error = %e, "cannot remove the unused proxy");
        }
    }
    Ok(())
}

/// Removes a host's proxy and its network once no App in the store routes through that host.
async fn retire(pool: &HostPool, c: &HostClient) -> Result<(), DockerError> {
    let cache = pool.cache(&c.name);
    let mut book = cache.proxy_routes.lock().await;
    if !book.table.is_empty() {
        return Ok(()); // another App took a route meanwhile
    }
    if let Some(found) = docker_proxy::find(c).await? {
        info!(host = %c.name, "removing the proxy: no route uses this host any more");
        ops::stop(c, &found.id, PROXY_CONTAINER).await?;
        ops::remove(c, &found.id, PROXY_CONTAINER).await?;
    }
    ops::remove_network(c, PROXY_NETWORK).await?;
    *book = LoadedRoutes::default();
    Ok(())
}
