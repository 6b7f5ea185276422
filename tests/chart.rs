//! The Kubernetes packaging: `charts/berth` and the image `scripts/image` builds.
//!
//! No Helm here, so the chart is checked where it can silently go wrong: its alert rules are
//! observability/alerts.yaml to the byte, every operator flag its Deployment passes exists, and its
//! defaults are the operator's own. The image is built for real from the test build of berth and run
//! on a test-bed host as the chart runs it (non-root, read-only root file system): it validates the
//! examples and its operator leads against the test bed's etcd, then exits 0 on SIGTERM.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::testbed::{unique, wait_until, Testbed};
use serde_yaml_ng::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn operator_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_berth")).args(["operator", "--help"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// `[default: 5m]` of `--flag` in clap's help text.
fn help_default(help: &str, flag: &str) -> Option<String> {
    let line = help.lines().find(|l| l.trim_start().starts_with(&format!("{flag} ")))?;
    let start = line.find("[default: ")? + "[default: ".len();
    Some(line[start..line[start..].find(']')? + start].to_string())
}

#[test]
fn the_charts_alert_rules_are_the_tested_ones() {
    assert_eq!(
        read("charts/berth/files/alerts.yaml"),
        read("observability/alerts.yaml"),
        "charts/berth/files/alerts.yaml drifted: cp observability/alerts.yaml charts/berth/files/alerts.yaml"
    );
}

#[test]
fn every_flag_the_deployment_passes_exists_and_defaults_match_the_operator() {
    let help = operator_help();
    let deployment = read("charts/berth/templates/deployment.yaml");
    let flags: Vec<&str> = deployment
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .map(|f| f.split('=').next().unwrap())
        .collect();
    assert!(flags.len() >= 7, "{flags:?}");
    for f in &flags {
        assert!(help.contains(&format!("--{f} ")) || help.contains(&format!("--{f}\n")), "--{f} is not a flag of `berth operator`:\n{help}");
    }

    let values: Value = serde_yaml_ng::from_str(&read("charts/berth/values.yaml")).unwrap();
    let op = &values["operator"];
    for (key, flag) in [("concurrency", "--concurrency"), ("resync", "--resync"), ("leaseTtl", "--lease-ttl")] {
        let chart = match &op[key] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => panic!("operator.{key}: {other:?}"),
        };
        assert_eq!(Some(chart), help_default(&help, flag), "values.yaml operator.{key} differs from {flag}'s default");
    }
    let metrics = help_default(&help, "--metrics-addr").unwrap();
    assert!(metrics.ends_with(&format!(":{}", op["metricsPort"].as_u64().unwrap())), "{metrics}");
    assert_eq!(values["etcd"]["prefix"].as_str(), help_default(&help, "--prefix").as_deref());
    // The probes are the endpoints the operator serves.
    assert!(deployment.contains("path: /healthz") && deployment.contains("path: /readyz"));
}

#[test]
fn the_image_runs_as_the_chart_runs_it() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let host = tb.host("host1");
    let docker_host = format!("unix://{}", host.socket_path().display());
    let reference = format!("berth-test/berth:{}", unique("img"));
    let out = Command::new(root().join("scripts/image"))
        .arg(&reference)
        .env("BERTH_BIN", env!("CARGO_BIN_EXE_berth"))
        .env("DOCKER_HOST", &docker_host)
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/image failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), reference);
    let _cleanup = Cleanup(tb, reference.clone());

    let as_chart = ["--read-only", "--user", "65532:65532", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"];
    let examples = format!("{}:/examples:ro", root().join("examples").display());
    let mut args = vec!["run", "--rm"];
    args.extend(as_chart);
    args.extend(["-v", &examples, &reference, "validate", "-f", "/examples"]);
    let listed = tb.docker_ok("host1", &args);
    assert!(listed.contains("app/shop -n production valid"), "{listed}");

    // The operator, on host1's network, against the bed's etcd under a prefix of its own.
    let name = unique("berth-img-op");
    let port = common::ports::free_port().to_string();
    let prefix = format!("/{name}");
    let metrics = format!("0.0.0.0:{port}");
    let mut args = vec!["run", "-d", "--name", &name, "--network", "host"];
    args.extend(as_chart);
    args.extend([reference.as_str(), "--etcd", &tb.etcd_bridge, "--prefix", &prefix, "operator"]);
    args.extend(["--metrics-addr", &metrics, "--lease-ttl", "5s"]);
    tb.docker_ok("host1", &args);
    let readyz = || {
        let out = Command::new("curl").args(["-s", "-m", "2", &format!("http://{}:{port}/readyz", host.address)]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let led = wait_until(Duration::from_secs(30), || readyz().contains("leader"));
    let logs = tb.docker("host1", &["logs", &name]);
    let logs = String::from_utf8_lossy(&logs.stderr).to_string();
    assert!(led, "the operator in the image never led: /readyz {:?}\n{logs}", readyz());
    assert!(!logs.contains('\x1b'), "colour codes in a log that is not a terminal:\n{logs}");
    tb.docker_ok("host1", &["stop", "-t", "20", &name]);
    let code = tb.docker_ok("host1", &["inspect", "-f", "{{.State.ExitCode}}", &name]);
    tb.docker_ok("host1", &["rm", &name]);
    assert_eq!(code.trim(), "0", "SIGTERM did not end the operator cleanly:\n{logs}");
}

/// Removes the test image (and any container left of it) even when an assertion failed.
struct Cleanup(&'static Testbed, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = self.0.docker("host1", &["ps", "-aq", "--filter", &format!("ancestor={}", self.1)]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            self.0.docker("host1", &["rm", "-f", id]);
        }
        self.0.docker("host1", &["rmi", "-f", &self.1]);
    }
}
