//! The files in `observability/` against the real `promtool` and against what berth exports.
//!
//! - `promtool check rules` / `promtool test rules` / `promtool check config` pass (so `cargo test` runs
//!   the same rule tests `scripts/test` runs);
//! - every alert has a `severity` label, `summary` and `description`, and `alerts_test.yaml` tests it
//!   both firing and not firing;
//! - every metric name in every rule expression and every dashboard query (panels and template
//!   variables) is one berth's registry renders (`berth::metrics::global().render()`, with
//!   `_bucket`/`_sum`/`_count` for histograms), or `up`; every dashboard query parses as PromQL
//!   (through `promtool check rules` on a generated rule file);
//! - the dashboard is valid JSON Grafana can import: unique panel ids, panels on the 24-column grid
//!   without overlaps, only defined template variables, and the panels the operator runbook needs.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("observability")
}

fn read(name: &str) -> String {
    let p = dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// `promtool ARGS` from the repository root; panics with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool (apt-get install prometheus; scripts/deps does): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {} failed ({}):\n{text}", args.join(" "), out.status);
    text
}

/// The alerts every berth deployment relies on (issue 5).
const ALERTS: [&str; 7] = [
    "BerthAppNotReady",
    "BerthHostDown",
    "BerthReconcileErrors",
    "BerthNoLeader",
    "BerthDriftRepairs",
    "BerthOperatorAbsent",
    "BerthGenerationLag",
];

/// The metric families README "Metrics" promises.
const CONTRACT: [&str; 21] = [
    "berth_reconcile_total",
    "berth_reconcile_duration_seconds",
    "berth_reconcile_errors_total",
    "berth_workqueue_depth",
    "berth_workqueue_adds_total",
    "berth_workqueue_queue_duration_seconds",
    "berth_app_ready",
    "berth_app_generation_lag",
    "berth_app_last_ready_timestamp_seconds",
    "berth_containers",
    "berth_container_actions_total",
    "berth_drift_repairs_total",
    "berth_pruned_containers_total",
    "berth_images_removed_total",
    "berth_image_bytes_reclaimed_total",
    "berth_host_up",
    "berth_docker_request_duration_seconds",
    "berth_docker_request_errors_total",
    "berth_etcd_watch_restarts_total",
    "berth_leader",
    "berth_build_info",
];

// ------------------------------------------------------------------------- what berth exports

/// Family name → type, from berth's own registry after giving every labelled family one series
/// (a vector without series renders nothing).
fn exported_families() -> BTreeMap<String, String> {
    let m = berth::metrics::global();
    m.host_known("obs-host");
    m.app_known("obs-app", "obs-ns");
    m.reconcile_duration.with_label_values(&["obs-app", "obs-ns"]).observe(0.1);
    m.reconcile_errors.with_label_values(&["obs-app", "obs-ns", "docker"]).inc();
    m.workqueue_queue_duration.with_label_values::<&str>(&[]).observe(0.1);
    m.app_ready.with_label_values(&["obs-app", "obs-ns"]).set(1);
    m.app_generation_lag.with_label_values(&["obs-app", "obs-ns"]).set(0);
    m.app_last_ready.with_label_values(&["obs-app", "obs-ns"]).set(1.0);
    m.set_containers("obs-app", "obs-ns", vec![("obs-host".into(), "web".into(), "running", 1)]);
    m.host_up.with_label_values(&["obs-host"]).set(1);
    m.docker_call("obs-host", "list", std::time::Duration::from_millis(3), false);
    let text = m.render();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut it = l.split_whitespace();
            (it.next().unwrap().to_string(), it.next().unwrap_or("untyped").to_string())
        })
        .collect()
}

/// Names a query may use: every family, histograms as `_bucket`, `_sum`, `_count`.
fn exported_series_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (name, kind) in exported_families() {
        if kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{s}"));
            }
        } else {
            names.insert(name);
        }
    }
    names
}

/// `"berth_…"` string literals in src/metrics/mod.rs: the names it registers.
fn registered_in_source() -> BTreeSet<String> {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics/mod.rs")).unwrap();
    // Every stretch between two quotes (not only every other one: a quote in a comment or a char
    // literal would shift the pairing); only a whole literal can be exactly a metric name.
    src.split('"')
        .skip(1)
        .filter(|s| s.starts_with("berth_") && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_registry_renders_every_registered_and_promised_family() {
    let families = exported_families();
    let rendered: BTreeSet<String> = families.keys().cloned().collect();
    // If this fails, exported_families() forgot to touch a new labelled family.
    assert_eq!(rendered, registered_in_source(), "families rendered vs registered in src/metrics/mod.rs");
    for name in CONTRACT {
        assert!(families.contains_key(name), "README promises {name}; berth does not export it: {families:?}");
    }
    for h in [
        "berth_reconcile_duration_seconds",
        "berth_workqueue_queue_duration_seconds",
        "berth_docker_request_duration_seconds",
    ] {
        assert_eq!(families[h], "histogram", "{h}");
    }
}

// ------------------------------------------------------------------------ PromQL metric names

const AGGREGATIONS: [&str; 12] =
    ["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];
const MODIFIERS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
const KEYWORDS: [&str; 8] = ["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];
/// PromQL functions (Prometheus 2.x) that the files may call.
const FUNCTIONS: [&str; 40] = [
    "abs",
    "absent",
    "absent_over_time",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "max_over_time",
    "min_over_time",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "sum_over_time",
    "time",
    "timestamp",
    "vector",
    "label_values",
];

/// Metric names a PromQL expression selects (identifiers outside `{…}`, `[…]` and strings that are
/// not functions, aggregations, keywords, modifier label lists or Grafana `$variables`).
/// Panics on a call of an unknown function, so a misspelt function fails as loudly as a metric.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        (j, chars.get(j).copied())
    };
    // Skips a string literal starting at `i`; returns the index after it.
    let skip_string = |i: usize| {
        let q = chars[i];
        let mut j = i + 1;
        while j < chars.len() && chars[j] != q {
            if chars[j] == '\\' && q != '`' {
                j += 1;
            }
            j += 1;
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
        } else if c == '{' || c == '[' {
            let close = if c == '{' { '}' } else { ']' };
            i += 1;
            while i < chars.len() && chars[i] != close {
                if chars[i] == '"' || chars[i] == '\'' || chars[i] == '`' {
                    i = skip_string(i);
                } else {
                    i += 1;
                }
            }
            assert!(i < chars.len(), "unclosed {c} in {expr:?}");
            i += 1;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let (j, next) = next_non_space(i);
            if MODIFIERS.contains(&word.as_str()) {
                if next == Some('(') {
                    // A label list: skip it.
                    i = j;
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                }
            } else if AGGREGATIONS.contains(&word.as_str()) || KEYWORDS.contains(&word.as_str()) {
            } else if next == Some('(') {
                assert!(FUNCTIONS.contains(&word.as_str()), "unknown PromQL function {word}() in {expr:?}");
            } else {
                out.push(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_metric_name_scanner_finds_what_it_should() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.9, sum by (le, host) (rate(berth_x_bucket{host=~"$host", a="}by"}[$__rate_interval])))"#
        ),
        ["berth_x_bucket"]
    );
    assert_eq!(metric_names("max(berth_leader) < 1 or absent(berth_leader)"), ["berth_leader", "berth_leader"]);
    assert_eq!(metric_names(r#"absent(up{job="berth"} == 1)"#), ["up"]);
    assert_eq!(metric_names("sum(a) without (x) / on (y) group_left (z) b offset 5m > bool 1e3"), ["a", "b"]);
    assert_eq!(metric_names("time() - berth_t"), ["berth_t"]);
    assert!(std::panic::catch_unwind(|| metric_names("histogram_quantle(0.9, x)")).is_err());
}

/// Fails with every name in `exprs` (what → expression) that berth does not export.
fn assert_only_exported(exprs: &[(String, String)], also: &[&str]) {
    let exported = exported_series_names();
    let mut bad = Vec::new();
    for (what, expr) in exprs {
        let names = metric_names(expr);
        if names.is_empty() {
            bad.push(format!("{what}: selects no metric: {expr}"));
        }
        for n in names {
            if !exported.contains(&n) && !also.contains(&n.as_str()) {
                bad.push(format!("{what}: {n} is not exported by berth: {expr}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}\n\nberth exports: {exported:?}", bad.join("\n"));
}

// ------------------------------------------------------------------------------------- alerts

fn alert_rules() -> Vec<Yaml> {
    let doc: Yaml = serde_yaml_ng::from_str(&read("alerts.yaml")).expect("alerts.yaml is YAML");
    doc["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .collect()
}

fn s(v: &Yaml) -> &str {
    v.as_str().unwrap_or("")
}

#[test]
fn promtool_check_rules_passes() {
    let out = promtool(&["check", "rules", "observability/alerts.yaml"]);
    assert!(out.contains(&format!("SUCCESS: {} rules found", ALERTS.len())), "{out}");
}

#[test]
fn promtool_test_rules_passes() {
    let out = promtool(&["test", "rules", "observability/alerts_test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn example_prometheus_config_scrapes_berth_and_loads_the_alerts() {
    let out = promtool(&["check", "config", "observability/prometheus.yml"]);
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
    let cfg: Yaml = serde_yaml_ng::from_str(&read("prometheus.yml")).unwrap();
    let files: Vec<&str> = cfg["rule_files"].as_sequence().unwrap().iter().map(s).collect();
    assert_eq!(files, ["alerts.yaml"]);
    let jobs = cfg["scrape_configs"].as_sequence().unwrap();
    let berth = jobs.iter().find(|j| s(&j["job_name"]) == "berth").expect("a scrape job named berth");
    let targets: Vec<&str> = berth["static_configs"][0]["targets"].as_sequence().unwrap().iter().map(s).collect();
    assert_eq!(targets, ["127.0.0.1:9464"], "berth operator's default --metrics-addr");
}

#[test]
fn every_alert_is_documented_and_names_only_exported_metrics() {
    let rules = alert_rules();
    let names: Vec<&str> = rules.iter().map(|r| s(&r["alert"])).collect();
    let mut sorted_want = ALERTS.to_vec();
    sorted_want.sort();
    let mut sorted_have = names.clone();
    sorted_have.sort();
    assert_eq!(sorted_have, sorted_want, "alerts in alerts.yaml");
    let mut exprs = Vec::new();
    for r in &rules {
        let name = s(&r["alert"]);
        assert!(
            matches!(s(&r["labels"]["severity"]), "warning" | "critical"),
            "{name}: severity label must be warning or critical"
        );
        for a in ["summary", "description"] {
            assert!(s(&r["annotations"][a]).trim().len() > 10, "{name}: no {a} annotation");
        }
        exprs.push((format!("alert {name}"), s(&r["expr"]).to_string()));
    }
    assert_only_exported(&exprs, &["up"]);
    let by_name: BTreeMap<&str, &str> = rules.iter().map(|r| (s(&r["alert"]), s(&r["expr"]))).collect();
    assert!(by_name["BerthOperatorAbsent"].contains(r#"up{job="berth"}"#), "must match prometheus.yml's job");
    assert!(by_name["BerthNoLeader"].contains("absent(berth_leader)"), "no operator at all must alert too");
}

#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let doc: Yaml = serde_yaml_ng::from_str(&read("alerts_test.yaml")).expect("alerts_test.yaml is YAML");
    let files: Vec<&str> = doc["rule_files"].as_sequence().unwrap().iter().map(s).collect();
    assert_eq!(files, ["alerts.yaml"]);
    let mut firing: BTreeSet<&str> = BTreeSet::new();
    let mut quiet: BTreeSet<&str> = BTreeSet::new();
    for t in doc["tests"].as_sequence().unwrap() {
        for case in t["alert_rule_test"].as_sequence().unwrap() {
            let name = s(&case["alertname"]);
            let exp = case["exp_alerts"].as_sequence().map(|v| v.len()).unwrap_or(0);
            if exp == 0 {
                quiet.insert(name);
            } else {
                firing.insert(name);
                for a in case["exp_alerts"].as_sequence().unwrap() {
                    assert!(!s(&a["exp_labels"]["severity"]).is_empty(), "{name}: expected labels lack severity");
                    assert!(
                        !s(&a["exp_annotations"]["summary"]).is_empty(),
                        "{name}: expected annotations lack summary"
                    );
                    assert!(
                        !s(&a["exp_annotations"]["description"]).is_empty(),
                        "{name}: expected annotations lack description"
                    );
                }
            }
        }
    }
    for a in ALERTS {
        assert!(firing.contains(a), "alerts_test.yaml never expects {a} to fire");
        assert!(quiet.contains(a), "alerts_test.yaml never expects {a} to stay quiet");
    }
}

// ---------------------------------------------------------------------------------- dashboard

fn dashboard() -> Json {
    serde_json::from_str(&read("dashboard.json")).expect("dashboard.json is valid JSON")
}

/// Every panel, rows' nested panels included.
fn panels(d: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter());
        }
    }
    out
}

/// (where, query) of every panel target and every query variable; `label_values(SEL, label)` → SEL.
fn dashboard_queries(d: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {:?} has a target without expr", p["title"]));
            out.push((
                format!("panel {:?} target {}", p["title"].as_str().unwrap_or(""), t["refId"]),
                expr.to_string(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let q = v["query"]["query"].as_str().or(v["query"].as_str()).expect("variable query");
            let sel = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.rsplit_once(','))
                .map(|(sel, _label)| sel.trim().to_string())
                .unwrap_or_else(|| q.to_string());
            out.push((format!("variable ${}", v["name"].as_str().unwrap()), sel));
        }
    }
    out
}

#[test]
fn dashboard_names_only_exported_metrics() {
    let d = dashboard();
    let queries = dashboard_queries(&d);
    assert!(queries.len() > 10, "{queries:?}");
    assert_only_exported(&queries, &["up"]);
}

/// Grafana's variables substituted the way Grafana would (All = `.*`).
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("$namespace", ".*")
        .replace("$app", ".*")
        .replace("$host", ".*")
}

#[test]
fn dashboard_queries_parse_as_promql() {
    let d = dashboard();
    let tmp = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (what, expr)) in dashboard_queries(&d).iter().enumerate() {
        rules.push_str(&format!(
            "      # {what}\n      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&substitute(expr)).unwrap()
        ));
    }
    let f = tmp.path().join("dashboard_rules.yaml");
    std::fs::write(&f, &rules).unwrap();
    promtool(&["check", "rules", f.to_str().unwrap()]);
}

#[test]
fn dashboard_is_importable_and_complete() {
    let d = dashboard();
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40), "uid");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "title");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30), "schemaVersion");

    let vars: BTreeSet<&str> =
        d["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(vars.contains("datasource"), "a datasource variable, so the dashboard imports anywhere");

    let all = panels(&d);
    let mut ids = BTreeSet::new();
    let mut rects: Vec<(&str, i64, i64, i64, i64)> = Vec::new();
    for p in &all {
        let title = p["title"].as_str().unwrap_or("");
        assert!(ids.insert(p["id"].as_i64().expect("panel id")), "duplicate panel id in {title:?}");
        let g = &p["gridPos"];
        let (x, y, w, h) =
            (g["x"].as_i64().unwrap(), g["y"].as_i64().unwrap(), g["w"].as_i64().unwrap(), g["h"].as_i64().unwrap());
        assert!(x >= 0 && w > 0 && x + w <= 24 && h > 0 && y >= 0, "{title:?} is off the 24-column grid: {g}");
        for (other, ox, oy, ow, oh) in &rects {
            let overlap = x < ox + ow && ox < &(x + w) && y < oy + oh && oy < &(y + h);
            assert!(!overlap, "{title:?} overlaps {other:?}");
        }
        rects.push((title, x, y, w, h));
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title:?} must use the datasource variable");
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{title:?} has no targets"));
        assert!(!targets.is_empty(), "{title:?} has no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().expect("refId")), "{title:?}: duplicate refId");
            let expr = t["expr"].as_str().unwrap();
            // Only variables the dashboard defines, or Grafana's own.
            for part in expr.split('$').skip(1) {
                let name: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                assert!(
                    name.starts_with("__") || vars.contains(name.as_str()),
                    "{title:?} uses undefined ${name}: {expr}"
                );
            }
        }
    }

    // What an operator of berth looks at first.
    let find = |title: &str| *all.iter().find(|p| p["title"] == title).unwrap_or_else(|| panic!("no panel {title:?}"));
    let exprs = |title: &str| -> String {
        find(title)["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(exprs("Apps Ready").contains("berth_app_ready"));
    let latency = exprs("Converge latency");
    assert!(
        latency.contains("histogram_quantile(") && latency.contains("berth_reconcile_duration_seconds_bucket"),
        "{latency}"
    );
    assert!(exprs("Container actions per host").contains("berth_container_actions_total"));
    assert!(exprs("Host up").contains("berth_host_up"));
    assert!(exprs("Work queue depth").contains("berth_workqueue_depth"));
    assert!(exprs("Reconcile errors by reason").contains("berth_reconcile_errors_total"));
    assert!(exprs("Docker API errors").contains("berth_docker_request_errors_total"));
}
