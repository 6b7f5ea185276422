//! Prometheus metrics: names and labels are a public contract (README "Metrics").
//!
//! Labels stay bounded: app, namespace, host, component, state, action, op, result, reason — never
//! container ids, digests or error texts. Series of deleted apps and hosts are removed.

pub mod server;

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// For each (app, namespace), the (host, component) pairs that have `berth_containers` series.
type ContainerSeries = std::collections::HashMap<(String, String), std::collections::BTreeSet<(String, String)>>;

/// Every metric berth exports, registered once per process.
pub struct Metrics {
    pub registry: Registry,
    pub reconcile_total: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub reconcile_errors: IntCounterVec,
    pub workqueue_depth: IntGauge,
    pub workqueue_adds: IntCounter,
    pub workqueue_queue_duration: HistogramVec,
    pub app_ready: IntGaugeVec,
    pub app_generation_lag: IntGaugeVec,
    pub app_last_ready: GaugeVec,
    pub containers: IntGaugeVec,
    pub container_actions: IntCounterVec,
    pub drift_repairs: IntCounterVec,
    /// Routes a host's proxy moved to another container (a rollout's switch, or a route set anew).
    pub proxy_route_switches: IntCounterVec,
    pub pruned_containers: IntCounterVec,
    pub images_removed: IntCounterVec,
    pub image_bytes_reclaimed: IntCounterVec,
    pub host_up: IntGaugeVec,
    pub docker_request_duration: HistogramVec,
    pub docker_request_errors: IntCounterVec,
    pub etcd_watch_restarts: IntCounter,
    pub leader: IntGauge,
    pub build_info: IntGaugeVec,
    container_series: parking_lot::Mutex<ContainerSeries>,
}

/// The actions counted per host; all present from the start so alert rules always have a series.
pub const ACTIONS: [&str; 5] = ["pull", "create", "start", "stop", "remove"];
/// Reconcile results, likewise pre-set to 0.
pub const RESULTS: [&str; 2] = ["success", "error"];
/// Why a reconcile failed; a closed set so labels stay bounded.
pub const REASONS: [&str; 5] = ["host_unreachable", "docker", "blocked", "rollback", "store"];
/// Docker call kinds (the first word of an op).
pub const OPS: [&str; 12] =
    ["list", "inspect", "resolve", "pull", "create", "start", "stop", "remove", "connect", "events", "ping", "version"];
/// Container states reported per component.
pub const STATES: [&str; 4] = ["running", "exited", "missing", "unhealthy"];

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = exponential_buckets(0.005, 2.0, 14).expect("valid buckets");
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let workqueue_depth = IntGauge::new("berth_workqueue_depth", "Apps waiting in the work queue.").unwrap();
        r.register(Box::new(workqueue_depth.clone())).unwrap();
        let workqueue_adds =
            IntCounter::new("berth_workqueue_adds_total", "Requests added to the work queue.").unwrap();
        r.register(Box::new(workqueue_adds.clone())).unwrap();
        let etcd_watch_restarts = IntCounter::new(
            "berth_etcd_watch_restarts_total",
            "Times the etcd watch was re-established after a relist.",
        )
        .unwrap();
        r.register(Box::new(etcd_watch_restarts.clone())).unwrap();
        let leader = IntGauge::new("berth_leader", "1 while this process holds the leader lease.").unwrap();
        r.register(Box::new(leader.clone())).unwrap();
        let app_last_ready = GaugeVec::new(
            Opts::new("berth_app_last_ready_timestamp_seconds", "Unix time an app was last seen Ready."),
            &["app", "namespace"],
        )
        .unwrap();
        r.register(Box::new(app_last_ready.clone())).unwrap();
        let m = Metrics {
            reconcile_total: counter_vec(
                &r,
                "berth_reconcile_total",
                "Reconciles by result.",
                &["app", "namespace", "result"],
            ),
            reconcile_duration: histogram_vec(
                &r,
                "berth_reconcile_duration_seconds",
                "Time per reconcile.",
                &["app", "namespace"],
            ),
            reconcile_errors: counter_vec(
                &r,
                "berth_reconcile_errors_total",
                "Failed reconciles by reason.",
                &["app", "namespace", "reason"],
            ),
            workqueue_depth,
            workqueue_adds,
            workqueue_queue_duration: histogram_vec(
                &r,
                "berth_workqueue_queue_duration_seconds",
                "Time an app waited in the queue.",
                &[],
            ),
            app_ready: gauge_vec(&r, "berth_app_ready", "1 when the app is Ready.", &["app", "namespace"]),
            app_generation_lag: gauge_vec(
                &r,
                "berth_app_generation_lag",
                "generation minus observedGeneration.",
                &["app", "namespace"],
            ),
            app_last_ready,
            containers: gauge_vec(
                &r,
                "berth_containers",
                "Desired containers by state.",
                &["app", "namespace", "host", "component", "state"],
            ),
            container_actions: counter_vec(
                &r,
                "berth_container_actions_total",
                "Docker actions executed.",
                &["host", "action"],
            ),
            proxy_route_switches: counter_vec(
                &r,
                "berth_proxy_route_switches_total",
                "Routes a host's proxy moved to another container (graceful reloads).",
                &["host"],
            ),
            drift_repairs: counter_vec(
                &r,
                "berth_drift_repairs_total",
                "Reconciles caused by a change on a host that berth did not make.",
                &["app", "namespace"],
            ),
            pruned_containers: counter_vec(
                &r,
                "berth_pruned_containers_total",
                "Containers removed because they left the spec.",
                &["app", "namespace"],
            ),
            images_removed: counter_vec(
                &r,
                "berth_images_removed_total",
                "Images berth pulled and removed again once unused and past the retention.",
                &["host"],
            ),
            image_bytes_reclaimed: counter_vec(
                &r,
                "berth_image_bytes_reclaimed_total",
                "Bytes of the images berth removed.",
                &["host"],
            ),
            host_up: gauge_vec(&r, "berth_host_up", "1 when the host's Docker API answers.", &["host"]),
            docker_request_duration: histogram_vec(
                &r,
                "berth_docker_request_duration_seconds",
                "Docker API call latency.",
                &["host", "op"],
            ),
            docker_request_errors: counter_vec(
                &r,
                "berth_docker_request_errors_total",
                "Failed Docker API calls.",
                &["host", "op"],
            ),
            etcd_watch_restarts,
            leader,
            build_info: gauge_vec(
                &r,
                "berth_build_info",
                "Always 1; the version label says which berth runs.",
                &["version"],
            ),
            registry: r,
            container_series: Default::default(),
        };
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m
    }

    /// Makes a host's series exist (at 0) as soon as the host is known.
    pub fn host_known(&self, host: &str) {
        for a in ACTIONS {
            self.container_actions.with_label_values(&[host, a]);
        }
        self.images_removed.with_label_values(&[host]);
        self.image_bytes_reclaimed.with_label_values(&[host]);
        self.proxy_route_switches.with_label_values(&[host]);
    }

    /// Makes an app's series exist (at 0) as soon as the app is known.
    pub fn app_known(&self, app: &str, ns: &str) {
        for r in RESULTS {
            self.reconcile_total.with_label_values(&[app, ns, r]);
        }
        self.drift_repairs.with_label_values(&[app, ns]);
        self.pruned_containers.with_label_values(&[app, ns]);
    }

    /// Drops every series of a deleted app.
    pub fn app_gone(&self, app: &str, ns: &str) {
        for r in RESULTS {
            let _ = self.reconcile_total.remove_label_values(&[app, ns, r]);
        }
        let _ = self.reconcile_duration.remove_label_values(&[app, ns]);
        let _ = self.app_ready.remove_label_values(&[app, ns]);
        let _ = self.app_generation_lag.remove_label_values(&[app, ns]);
        let _ = self.app_last_ready.remove_label_values(&[app, ns]);
        let _ = self.drift_repairs.remove_label_values(&[app, ns]);
        let _ = self.pruned_containers.remove_label_values(&[app, ns]);
        for reason in REASONS {
            let _ = self.reconcile_errors.remove_label_values(&[app, ns, reason]);
        }
        self.set_containers(app, ns, Vec::new());
    }

    /// Replaces an app's `berth_containers` series with `rows` of (host, component, state, count),
    /// dropping series that no longer apply (a host or component left the spec).
    pub fn set_containers(&self, app: &str, ns: &str, rows: Vec<(String, String, &'static str, i64)>) {
        let mut known = self.container_series.lock();
        let key = (app.to_string(), ns.to_string());
        let old = known.remove(&key).unwrap_or_default();
        let mut now = std::collections::BTreeSet::new();
        for (host, component, _, _) in &rows {
            now.insert((host.clone(), component.clone()));
        }
        for (host, component) in old.difference(&now) {
            for state in STATES {
                let _ = self.containers.remove_label_values(&[app, ns, host, component, state]);
            }
        }
        for (host, component) in &now {
            for state in STATES {
                self.containers.with_label_values(&[app, ns, host, component, state]).set(0);
            }
        }
        for (host, component, state, n) in rows {
            self.containers.with_label_values(&[app, ns, &host, &component, state]).add(n);
        }
        if !now.is_empty() {
            known.insert(key, now);
        }
    }

    /// Drops every series of a deleted host.
    pub fn host_gone(&self, host: &str) {
        let _ = self.host_up.remove_label_values(&[host]);
        let _ = self.images_removed.remove_label_values(&[host]);
        let _ = self.image_bytes_reclaimed.remove_label_values(&[host]);
        let _ = self.proxy_route_switches.remove_label_values(&[host]);
        for a in ACTIONS {
            let _ = self.container_actions.remove_label_values(&[host, a]);
        }
        for op in OPS {
            let _ = self.docker_request_errors.remove_label_values(&[host, op]);
            let _ = self.docker_request_duration.remove_label_values(&[host, op]);
        }
    }

    /// Observes one Docker call (latency, and an error counter when it failed).
    pub fn docker_call(&self, host: &str, op: &str, took: Duration, ok: bool) {
        self.docker_request_duration.with_label_values(&[host, op]).observe(took.as_secs_f64());
        if !ok {
            self.docker_request_errors.with_label_values(&[host, op]).inc();
        }
    }

    /// Records one reconcile: its duration and result, why it failed, the app's readiness, generation
    /// lag, pruned containers and container rows. The one place reconcile metrics are written.
    pub fn record_reconcile(&self, app: &str, ns: &str, r: ReconcileRecord) {
        self.reconcile_duration.with_label_values(&[app, ns]).observe(r.took.as_secs_f64());
        let ready = r.failure.is_none();
        self.reconcile_total.with_label_values(&[app, ns, if ready { "success" } else { "error" }]).inc();
        if let Some(reason) = r.failure {
            self.reconcile_errors.with_label_values(&[app, ns, reason.label()]).inc();
        }
        let Some(seen) = r.seen else { return };
        self.app_ready.with_label_values(&[app, ns]).set(ready as i64);
        self.app_generation_lag.with_label_values(&[app, ns]).set(seen.generation_lag);
        if ready {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            self.app_last_ready.with_label_values(&[app, ns]).set(now.as_secs_f64());
        }
        if seen.pruned > 0 {
            self.pruned_containers.with_label_values(&[app, ns]).inc_by(seen.pruned);
        }
        self.set_containers(app, ns, seen.containers);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding never fails");
        String::from_utf8(buf).expect("prometheus text is utf-8")
    }
}

/// Why a reconcile did not reach Ready: the `reason` label of `berth_reconcile_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    HostUnreachable,
    Docker,
    Blocked,
    Rollback,
    Store,
}

impl FailReason {
    /// One of [`REASONS`].
    pub fn label(self) -> &'static str {
        match self {
            FailReason::HostUnreachable => "host_unreachable",
            FailReason::Docker => "docker",
            FailReason::Blocked => "blocked",
            FailReason::Rollback => "rollback",
            FailReason::Store => "store",
        }
    }
}

/// One reconcile as the metrics record it ([`Metrics::record_reconcile`]).
pub struct ReconcileRecord {
    pub took: Duration,
    /// `None` when the app reached Ready.
    pub failure: Option<FailReason>,
    /// What the converge saw; `None` when the store failed before it could say.
    pub seen: Option<Seen>,
}

/// What a converge that ran saw of the app.
pub struct Seen {
    /// The App's generation minus the generation its status observed.
    pub generation_lag: i64,
    /// Containers pruned in this reconcile.
    pub pruned: u64,
    /// `berth_containers` rows: (host, component, state, count).
    pub containers: Vec<(String, String, &'static str, i64)>,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Docker API ops are labelled by their verb only (`create`, `list containers`), never by container name.
pub fn op_label(op: &str) -> &str {
    op.split_whitespace().next().unwrap_or(op)
}
