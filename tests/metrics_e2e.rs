//! The operator's metrics end to end, on the real test bed: a real `berth operator` (the binary, its
//! own `--prefix` and `--metrics-addr`) converges a real App on real Docker hosts, and then
//!
//! 1. its `/metrics` passes `promtool check metrics`, `/healthz` and `/readyz` answer 200, and the
//!    app, host, leader and build series say what happened;
//! 2. `berth_container_actions_total{host,action}` equals what Docker itself reports on each host
//!    (`docker events` of the app's containers: create, start, stop, destroy), after the converge and
//!    again after the App is deleted, when every series of the App is gone too;
//! 3. a real Prometheus scrapes the operator with a copy of `observability/alerts.yaml` whose `for:`
//!    are shortened to 2s, evaluates every dashboard query, and when a host's dockerd is stopped
//!    (`Testbed::outage`) the `BerthHostDown` alert for that host fires (read from `/api/v1/alerts`),
//!    `BerthAppNotReady` fires for the App on it, and the host comes back up once dockerd does.
//!
//! Isolation: unique app names and namespaces, host ports of this binary's own range ([`port`]), one
//! [`Ctx`] (etcd prefix) per test. The host outage goes through [`Testbed::outage`] (it waits for every
//! [`Testbed::shared`] holder). Operators and Prometheus are killed by drop guards, even when a test
//! panics (their logs are printed then), and the [`Ctx`] removes containers, networks and keys after them.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU16;

use common::operator::Operator;
use common::ports::{free_port, host_port};
use common::specs::{host_doc, AppSpec, RoleSpec};
use common::testbed::{http_get, secs, wait_until, Testbed};
use common::world::{unix_now, Ctx};
use serde_json::Value;

// ------------------------------------------------------------------------------------ helpers

/// A host port no other test binary publishes: `61000 + (pid % 500) * 8 + n`, n < 8 (the engine_*
/// binaries use 20000..32000, the operator_* binaries 40000..60000).
fn port() -> u16 {
    static N: AtomicU16 = AtomicU16::new(0);
    host_port(&N, 61000, 500, 8, "metrics_e2e")
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Percent-encoding of a URL query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ------------------------------------------------------------------- Prometheus text format

/// One sample of the text exposition format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end =
            line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if rest.starts_with('{') {
            let chars: Vec<char> = rest.chars().collect();
            let mut i = 1;
            loop {
                while chars[i] == ',' || chars[i] == ' ' {
                    i += 1;
                }
                if chars[i] == '}' {
                    i += 1;
                    break;
                }
                let k_start = i;
                while chars[i] != '=' {
                    i += 1;
                }
                let key: String = chars[k_start..i].iter().collect();
                assert_eq!(chars[i + 1], '"', "bad labels in {line:?}");
                i += 2;
                let mut value = String::new();
                while chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                        value.push(match chars[i] {
                            'n' => '\n',
                            c => c,
                        });
                    } else {
                        value.push(chars[i]);
                    }
                    i += 1;
                }
                i += 1;
                labels.insert(key, value);
            }
            let consumed: usize = chars[..i].iter().map(|c| c.len_utf8()).sum();
            rest = &rest[consumed..];
        }
        let value_text = rest.split_whitespace().next().unwrap_or_else(|| panic!("no value in {line:?}"));
        let value = value_text.parse().unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        out.push(Sample { name, labels, value });
    }
    out
}

/// Samples of `name` whose labels include `want`.
fn select<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect()
}

/// The one sample of `name` with labels `want`; panics (showing the family) unless there is exactly one.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    let found = select(samples, name, want);
    match found.as_slice() {
        [one] => one.value,
        _ => panic!("{} samples of {name}{want:?}; the family: {:#?}", found.len(), select(samples, name, &[])),
    }
}

// ------------------------------------------------------------------------------- the world

/// A running Prometheus in a temp dir: killed on drop, its log printed if the test failed.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Scrapes `target` every second as job "berth", evaluates `rules` every second.
    fn start(dir: &Path, target: &str, rules: &str) -> Prometheus {
        std::fs::write(dir.join("alerts.yaml"), rules).unwrap();
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
             rule_files: [alerts.yaml]\n\
             scrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: [\"{target}\"]\n"
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .expect("spawn prometheus (apt-get install prometheus; scripts/deps does)");
        let mut p = Prometheus { child, port, log };
        let ready = wait_until(secs(30), || {
            assert!(p.child.try_wait().unwrap().is_none(), "prometheus exited:\n{}", tail(&p.log, 40));
            matches!(http_get("127.0.0.1", port, "/-/ready"), Ok((200, _)))
        });
        assert!(ready, "prometheus never became ready:\n{}", tail(&p.log, 40));
        p
    }

    fn api(&self, path_and_query: &str) -> Value {
        let (code, body) = http_get("127.0.0.1", self.port, path_and_query)
            .unwrap_or_else(|e| panic!("GET {path_and_query} from prometheus: {e}"));
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path_and_query}: {e}: {body}"));
        assert_eq!((code, v["status"].as_str()), (200, Some("success")), "{path_and_query}: {body}");
        v
    }

    /// An instant query's result vector.
    fn query(&self, promql: &str) -> Vec<Value> {
        let v = self.api(&format!("/api/v1/query?query={}", urlencode(promql)));
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Each rule group's last evaluation, as Prometheus stamps it (the time that evaluation started).
    fn last_evaluations(&self) -> Vec<String> {
        let groups = self.api("/api/v1/rules")["data"]["groups"].as_array().cloned().unwrap_or_default();
        assert!(!groups.is_empty(), "prometheus loaded no rule group");
        groups.iter().map(|g| g["lastEvaluation"].as_str().unwrap_or_default().to_string()).collect()
    }

    /// Waits until every rule group was evaluated from start to end after this call: two new
    /// evaluations each (the first may have started before the call).
    fn wait_rules_evaluated(&self) {
        let mut last = self.last_evaluations();
        let mut seen = vec![0; last.len()];
        let done = wait_until(secs(30), || {
            for (i, now) in self.last_evaluations().into_iter().enumerate() {
                if now != last[i] {
                    seen[i] += 1;
                    last[i] = now;
                }
            }
            seen.iter().all(|n| *n >= 2)
        });
        assert!(done, "the rule groups were not evaluated twice in 30 s: {:?}", self.api("/api/v1/rules"));
    }

    /// `/api/v1/alerts`: every pending and firing alert.
    fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts")["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// Firing alerts named `name` whose labels include `want`.
    fn firing(&self, name: &str, want: &[(&str, &str)]) -> Vec<Value> {
        self.alerts()
            .into_iter()
            .filter(|a| {
                a["state"] == "firing"
                    && a["labels"]["alertname"] == name
                    && want.iter().all(|(k, v)| a["labels"][*k].as_str() == Some(*v))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus log (last 40 lines) ---\n{}", tail(&self.log, 40));
        }
    }
}

/// The App of one test: role `web` with one container on each of `hosts`, in a namespace of its own.
struct WebApp {
    name: String,
    ns: String,
    hosts: Vec<String>,
}

/// Starts an operator on the test's fresh prefix, then applies Hosts for `hosts` (the bed's unix
/// sockets) and an App whose `web` role runs one container per host, publishing a port of this
/// binary's range.
fn deploy(ctx: &Ctx, hosts: &[&str]) -> (Operator, WebApp) {
    let app = WebApp {
        name: ctx.app("met"),
        ns: ctx.namespace("metns"),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
    };
    let op = ctx.operator("metrics", &[]);
    let mut spec: Vec<String> = hosts.iter().map(|h| host_doc(h, &ctx.tb.host(h).unix)).collect();
    spec.push(
        AppSpec::new(&app.name, &app.ns, &ctx.tb.images.app_v1).role("web", RoleSpec::on(hosts).publish(port())).yaml(),
    );
    ctx.apply("app.yaml", &spec.join("---\n"));
    (op, app)
}

impl WebApp {
    fn wait_ready(&self, ctx: &Ctx) {
        ctx.wait_status(&self.name, &self.ns, secs(120), "Ready through the operator", |s| s["phase"] == "Ready");
    }

    /// Ids of the app's containers on `host` (any state); None while the host's dockerd does not
    /// answer (other test processes share the bed and may be restarting it).
    fn containers(&self, ctx: &Ctx, host: &str) -> Option<Vec<String>> {
        ctx.try_ps(host, &self.name, &[&format!("label=berth.namespace={}", self.ns)], "{{.ID}}")
    }

    /// How many `event` container events Docker recorded on `host` for the app's containers since
    /// `since`, up to a mark made now and seen in the host's event log; None while the host's dockerd
    /// does not answer.
    fn docker_events(&self, tb: &Testbed, host: &str, event: &str, since: f64) -> Option<usize> {
        let until = tb.events_mark(host);
        let out = tb.docker(
            host,
            &[
                "events",
                "--since",
                &format!("{since:.6}"),
                "--until",
                &format!("{until:.6}"),
                "--filter",
                "type=container",
                "--filter",
                &format!("event={event}"),
                "--filter",
                &format!("label=berth.app={}", self.name),
                "--filter",
                &format!("label=berth.namespace={}", self.ns),
                "--format",
                "{{.Actor.ID}}",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success().then(|| text.lines().filter(|l| !l.trim().is_empty()).count())
    }

    /// `berth_container_actions_total{host,action}` equals Docker's count of the matching event on
    /// every host (berth's host series count only this app: it is the only one under the prefix).
    /// Waits a little for the two to meet; returns (action, host) → (berth, docker).
    fn actions_match_docker(
        &self,
        tb: &Testbed,
        op: &Operator,
        since: f64,
    ) -> BTreeMap<(String, String), (f64, Option<usize>)> {
        let pairs = [("create", "create"), ("start", "start"), ("stop", "stop"), ("remove", "destroy")];
        let mut last = BTreeMap::new();
        let equal = wait_until(secs(60), || {
            let m = parse_exposition(&op.metrics());
            last.clear();
            for h in &self.hosts {
                for (action, event) in pairs {
                    let berth = value(&m, "berth_container_actions_total", &[("host", h), ("action", action)]);
                    last.insert((action.to_string(), h.clone()), (berth, self.docker_events(tb, h, event, since)));
                }
            }
            last.values().all(|(b, d)| d.is_some_and(|d| *b == d as f64))
        });
        assert!(equal, "berth_container_actions_total vs docker events ((action, host) → (berth, docker)): {last:#?}");
        last
    }
}

/// `promtool check metrics` on `text`: (passed, what it printed).
fn promtool_check_metrics(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus; scripts/deps does)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

// -------------------------------------------------------------------------------------- tests

/// (1) and (2): a converge through the real operator, its endpoints, and its counters against Docker.
#[test]
fn operator_metrics_pass_promtool_and_match_what_docker_saw() {
    let tb = Testbed::get();
    let _all_hosts_up = tb.shared();
    let since = unix_now() - 1.0;
    let ctx = Ctx::new("metrics");
    let (op, w) = deploy(&ctx, &["host1", "host2"]);
    w.wait_ready(&ctx);

    // (1) The endpoints. The operator writes the status before it records the reconcile's metrics:
    // the snapshot is the first one in which the app is Ready (a condition, not a moment).
    let app_ready = [("app", w.name.as_str()), ("namespace", w.ns.as_str())];
    let mut body = String::new();
    let recorded = wait_until(secs(20), || {
        body = op.must_get("/metrics").1;
        select(&parse_exposition(&body), "berth_app_ready", &app_ready).iter().any(|s| s.value == 1.0)
    });
    assert!(recorded, "berth_app_ready never 1 for a Ready app:\n{body}");
    let (ok, lints) = promtool_check_metrics(&body);
    assert!(ok && lints.trim().is_empty(), "promtool check metrics found problems:\n{lints}\n--- /metrics ---\n{body}");
    let (code, health) = op.must_get("/healthz");
    assert_eq!(code, 200, "/healthz: {health}");
    let ready = wait_until(secs(20), || op.must_get("/readyz").0 == 200);
    assert!(ready, "/readyz: {:?}", op.must_get("/readyz"));
    let (_, readyz) = op.must_get("/readyz");
    assert!(readyz.contains("leader"), "the only operator leads: {readyz}");

    let m = parse_exposition(&body);
    let app = [("app", w.name.as_str()), ("namespace", w.ns.as_str())];
    assert_eq!(value(&m, "berth_app_ready", &app), 1.0);
    assert_eq!(value(&m, "berth_app_generation_lag", &app), 0.0);
    let last_ready = value(&m, "berth_app_last_ready_timestamp_seconds", &app);
    assert!(last_ready >= since && last_ready <= unix_now() + 1.0, "last ready at {last_ready}, test began at {since}");
    assert!(value(&m, "berth_reconcile_total", &[app[0], app[1], ("result", "success")]) >= 1.0);
    assert!(value(&m, "berth_reconcile_duration_seconds_count", &app) >= 1.0);
    assert_eq!(value(&m, "berth_drift_repairs_total", &app), 0.0, "nothing changed behind berth's back");
    assert_eq!(value(&m, "berth_pruned_containers_total", &app), 0.0);
    assert_eq!(value(&m, "berth_leader", &[]), 1.0);
    assert_eq!(value(&m, "berth_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert!(value(&m, "berth_workqueue_adds_total", &[]) >= 1.0);
    for h in &w.hosts {
        assert_eq!(value(&m, "berth_host_up", &[("host", h)]), 1.0, "{h}");
        let running = [app[0], app[1], ("host", h.as_str()), ("component", "role/web"), ("state", "running")];
        assert_eq!(value(&m, "berth_containers", &running), 1.0, "{h}");
        for state in ["exited", "missing", "unhealthy"] {
            let other = [app[0], app[1], ("host", h.as_str()), ("component", "role/web"), ("state", state)];
            assert_eq!(value(&m, "berth_containers", &other), 0.0, "{h} {state}");
        }
        assert!(value(&m, "berth_docker_request_duration_seconds_count", &[("host", h), ("op", "create")]) >= 1.0);
    }

    // (2) Actions against Docker's own record: one container created and started per host, none
    // replaced, and that is exactly what is on the hosts now.
    let seen = w.actions_match_docker(tb, &op, since);
    for h in &w.hosts {
        assert_eq!(seen[&("create".to_string(), h.clone())].1, Some(1), "{h}: {seen:#?}");
        assert_eq!(seen[&("start".to_string(), h.clone())].1, Some(1), "{h}: {seen:#?}");
        assert_eq!(w.containers(&ctx, h).map(|c| c.len()), Some(1), "{h}");
    }

    // Deleting the App: the operator removes its containers, the counters still match Docker, and
    // none of the App's series is left behind.
    ctx.berth(&["delete", "app", &w.name, "-n", &w.ns]).expect(0);
    let gone = wait_until(secs(90), || w.hosts.iter().all(|h| w.containers(&ctx, h).is_some_and(|c| c.is_empty())));
    assert!(gone, "the operator did not remove the deleted app's containers");
    let seen = w.actions_match_docker(tb, &op, since);
    for h in &w.hosts {
        assert_eq!(seen[&("remove".to_string(), h.clone())].1, Some(1), "{h}: {seen:#?}");
    }
    let mut left = Vec::new();
    let cleared = wait_until(secs(20), || {
        left = parse_exposition(&op.metrics()).into_iter().filter(|s| s.labels.get("app") == Some(&w.name)).collect();
        left.is_empty()
    });
    assert!(cleared, "series of the deleted app are left: {left:#?}");
}

/// `observability/alerts.yaml` with every `for:` shortened to `for: 2s`.
fn alerts_for_tests() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("observability/alerts.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut shortened = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let body = l.trim_start();
            if body.starts_with("for:") {
                shortened += 1;
                format!("{}for: 2s", &l[..l.len() - body.len()])
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(shortened >= 5, "alerts.yaml has only {shortened} `for:` lines");
    out.join("\n") + "\n"
}

/// Every dashboard query, Grafana's variables substituted ("All").
fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("observability/dashboard.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "15s")
                .replace("$__range", "1h")
                .replace("$namespace", ".*")
                .replace("$app", ".*")
                .replace("$host", ".*");
            out.push((p["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

/// (3): a real Prometheus, the real rules (shortened `for:`), a real host outage.
#[test]
fn host_down_alert_fires_in_a_real_prometheus() {
    let tb = Testbed::get();
    let host = "host3";
    let all_hosts_up = tb.shared();
    let ctx = Ctx::new("metrics");
    let (op, w) = deploy(&ctx, &[host]);
    w.wait_ready(&ctx);
    let prom_dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(prom_dir.path(), &op.addr, &alerts_for_tests());

    // Prometheus has the operator's series.
    let scraped = wait_until(secs(30), || {
        prom.query(r#"up{job="berth"} == 1"#).len() == 1
            && prom.query(&format!(r#"berth_host_up{{job="berth", host="{host}"}} == 1"#)).len() == 1
            && prom.query(&format!(r#"berth_app_ready{{app="{}"}} == 1"#, w.name)).len() == 1
    });
    assert!(scraped, "prometheus never scraped the operator: targets {}", prom.api("/api/v1/targets"));

    // Every dashboard query is valid PromQL for this Prometheus (each query checks); the main panels
    // have data once there were scrapes enough for rate().
    let needs_data = [
        "Apps Ready",
        "App readiness",
        "Host up",
        "Container actions per host",
        "Work queue depth",
        "Leader",
        "Version",
    ];
    let mut empty = Vec::new();
    let have_data = wait_until(secs(30), || {
        empty = dashboard_queries()
            .into_iter()
            .filter(|(title, expr)| prom.query(expr).is_empty() && needs_data.contains(&title.as_str()))
            .collect();
        empty.is_empty()
    });
    assert!(have_data, "dashboard panels without data: {empty:#?}");

    // Quiet while all is well: rules evaluated from start to end after this point hold no alert of
    // these, not even pending (a true condition is pending at its first evaluation, firing 2 s later).
    prom.wait_rules_evaluated();
    for name in ["BerthHostDown", "BerthAppNotReady", "BerthOperatorAbsent", "BerthNoLeader", "BerthGenerationLag"] {
        let alerts: Vec<Value> = prom.alerts().into_iter().filter(|a| a["labels"]["alertname"] == name).collect();
        assert!(alerts.is_empty(), "{name} is pending or firing while all is well: {alerts:#?}");
    }

    // The host's dockerd dies: the operator's event stream for it breaks, berth_host_up goes 0,
    // and the alert fires for that host.
    drop(all_hosts_up);
    let outage = tb.outage(host);
    let mut firing = Vec::new();
    let fired = wait_until(secs(60), || {
        firing = prom.firing("BerthHostDown", &[("host", host)]);
        !firing.is_empty()
    });
    assert!(fired, "BerthHostDown never fired for {host}; alerts: {:#?}", prom.alerts());
    let alert = &firing[0];
    assert_eq!(alert["labels"]["job"], "berth", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert!(alert["annotations"]["summary"].as_str().unwrap().contains(host), "{alert}");
    assert_eq!(prom.firing("BerthHostDown", &[]).len(), 1, "only {host} is down: {:#?}", prom.alerts());
    // The App on it is no longer Ready.
    let app_alert =
        wait_until(secs(90), || !prom.firing("BerthAppNotReady", &[("app", &w.name), ("namespace", &w.ns)]).is_empty());
    assert!(app_alert, "BerthAppNotReady never fired for {}; alerts: {:#?}", w.name, prom.alerts());

    // dockerd is back: the operator follows the host again and the alert resolves.
    drop(outage);
    let up =
        wait_until(secs(90), || value(&parse_exposition(&op.metrics()), "berth_host_up", &[("host", host)]) == 1.0);
    assert!(up, "berth_host_up{{host={host}}} stayed 0 after the host came back");
    let resolved = wait_until(secs(30), || prom.firing("BerthHostDown", &[("host", host)]).is_empty());
    assert!(resolved, "BerthHostDown still fires after {host} came back: {:#?}", prom.alerts());
}
