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

use common::run::berth_at;
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
    // clap puts a flag's help beside it or, when some help is long, on the lines below it.
    let lines: Vec<&str> = help.lines().collect();
    let at = lines.iter().position(|l| l.trim_start().starts_with(&format!("{flag} ")))?;
    let next_flag =
        lines[at + 1..].iter().position(|l| l.trim_start().starts_with("--")).map_or(lines.len(), |n| at + 1 + n);
    let text = lines[at..next_flag].join(" ");
    let start = text.find("[default: ")? + "[default: ".len();
    Some(text[start..text[start..].find(']')? + start].to_string())
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
        assert!(
            help.contains(&format!("--{f} ")) || help.contains(&format!("--{f}\n")),
            "--{f} is not a flag of `berth operator`:\n{help}"
        );
    }

    let values: Value = serde_yaml_ng::from_str(&read("charts/berth/values.yaml")).unwrap();
    let op = &values["operator"];
    let defaults = [
        ("concurrency", "--concurrency"),
        ("resync", "--resync"),
        ("leaseTtl", "--lease-ttl"),
        ("shutdownGrace", "--shutdown-grace"),
        ("historyLimit", "--history-limit"),
        ("imageRetention", "--image-retention"),
    ];
    for (key, flag) in defaults {
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
    // ssh:// forwards need a writable /tmp under the read-only root (the image test runs it so).
    assert!(deployment.contains("mountPath: /tmp") && deployment.contains("emptyDir"), "{deployment}");
}

/// The etcd client certificates come from a Secret mounted where the flags point, the password from
/// a Secret key into the environment variable berth reads, never a flag; both are off by default.
#[test]
fn the_chart_passes_etcd_tls_files_and_user_as_the_operator_reads_them() {
    let help = operator_help();
    let deployment = read("charts/berth/templates/deployment.yaml");
    let values: Value = serde_yaml_ng::from_str(&read("charts/berth/values.yaml")).unwrap();
    let (tls, auth) = (&values["etcd"]["tls"], &values["etcd"]["auth"]);

    for (flag, file) in [("etcd-ca", "caFile"), ("etcd-cert", "certFile"), ("etcd-key", "keyFile")] {
        let arg = format!("- --{flag}={{{{ .mountPath }}}}/");
        assert!(deployment.contains(&arg), "the deployment does not pass {arg}…\n{deployment}");
        assert!(deployment.contains(&format!(".{file}")), "{flag} does not use etcd.tls.{file}");
        assert!(tls[file].is_string(), "values.yaml has no etcd.tls.{file}");
    }
    assert!(deployment.contains("- --etcd-user={{ .Values.etcd.auth.user }}"), "{deployment}");
    assert_eq!(tls["secretName"].as_str(), Some(""), "TLS is off by default");
    assert_eq!(auth["user"].as_str(), Some(""), "auth is off by default");

    // The Secret is mounted at the path the flags name.
    assert!(tls["mountPath"].is_string());
    assert!(deployment.contains("- {name: etcd-tls, mountPath: {{ .Values.etcd.tls.mountPath }}, readOnly: true}"));
    assert!(deployment.contains("secret: {secretName: {{ .Values.etcd.tls.secretName }}, defaultMode: 0440}"));

    // The password: the variable `--etcd-user` reads, from a Secret key, never on the command line.
    assert!(help.contains("BERTH_ETCD_PASSWORD"), "`berth operator --help` does not name BERTH_ETCD_PASSWORD:\n{help}");
    let env = deployment.find("- name: BERTH_ETCD_PASSWORD").expect("the deployment sets BERTH_ETCD_PASSWORD");
    let from = &deployment[env..];
    assert!(from.find("secretKeyRef:").is_some_and(|at| at < 120), "BERTH_ETCD_PASSWORD not from a Secret:\n{from}");
    assert!(from.contains(".passwordSecret.name") && from.contains(".passwordSecret.key"));
    assert!(auth["passwordSecret"]["name"].is_string() && auth["passwordSecret"]["key"].is_string());
    assert!(!deployment.contains("password="), "a password on the command line:\n{deployment}");
}

/// The sealing identity comes from a Secret, mounted where the variable the operator reads points;
/// off by default.
#[test]
fn the_chart_mounts_the_sealing_identity_where_the_operator_reads_it() {
    let help = operator_help();
    let deployment = read("charts/berth/templates/deployment.yaml");
    let values: Value = serde_yaml_ng::from_str(&read("charts/berth/values.yaml")).unwrap();
    let sealing = &values["sealing"];
    assert!(help.contains("--sealing-key") && help.contains("BERTH_SEALING_KEY_FILE"), "{help}");
    assert_eq!(sealing["secretName"].as_str(), Some(""), "off by default");
    assert!(sealing["mountPath"].is_string() && sealing["keyFile"].is_string());
    let env = deployment.find("- name: BERTH_SEALING_KEY_FILE").expect("the deployment sets BERTH_SEALING_KEY_FILE");
    assert!(deployment[env..].contains(".Values.sealing.mountPath .Values.sealing.keyFile"), "{deployment}");
    assert!(deployment.contains("- {name: sealing, mountPath: {{ .Values.sealing.mountPath }}, readOnly: true}"));
    assert!(deployment.contains("secret: {secretName: {{ .Values.sealing.secretName }}, defaultMode: 0440}"));
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

    // As charts/berth runs it: user 65532, read-only root with an in-memory /tmp, no capabilities.
    let as_chart = [
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        "65532:65532",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ];
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
        let out = Command::new("curl")
            .args(["-s", "-m", "2", &format!("http://{}:{port}/readyz", host.address)])
            .output()
            .unwrap();
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

    // An ssh:// Host from inside the image, with the ssh files mounted as the chart mounts its
    // Secret (root-owned, group-readable by fsGroup 65532): a converge over the forward.
    let sshd = common::sshd::Sshd::start(tb, "host2");
    let files = tempfile::tempdir().unwrap();
    let f = files.path();
    std::fs::copy(sshd.file("client_key"), f.join("id_ed25519")).unwrap();
    std::fs::copy(sshd.file("known_hosts"), f.join("known_hosts")).unwrap();
    let mounted = "/etc/berth/ssh";
    std::fs::write(
        f.join("config"),
        format!("Host *\n  IdentityFile {mounted}/id_ed25519\n  IdentitiesOnly yes\n  UserKnownHostsFile {mounted}/known_hosts\n  StrictHostKeyChecking yes\n"),
    )
    .unwrap();
    for entry in std::fs::read_dir(f).unwrap().map(Result::unwrap).map(|e| e.path()).chain([f.to_path_buf()]) {
        std::os::unix::fs::chown(&entry, Some(0), Some(65532)).unwrap();
        let mode = if entry == f { 0o750 } else { 0o440 };
        std::fs::set_permissions(&entry, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let ssh_prefix = format!("/{}", unique("berth-img-ssh"));
    let app = unique("img-ssh");
    let _gone = Containers(tb, "host2", app.clone());
    let spec_dir = tempfile::tempdir().unwrap();
    let spec = spec_dir.path().join("ssh.yaml");
    std::fs::write(
        &spec,
        format!(
            "{}---\napiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: {app}, namespace: prod}}\nspec:\n  image: {}\n  roles:\n    web: {{hosts: [ssh2], cmd: \"sleep 600\"}}\n",
            common::specs::host_doc("ssh2", &sshd.endpoint),
            tb.images.app_v1
        ),
    )
    .unwrap();
    let applied = berth_at(&tb.etcd, &ssh_prefix, &["apply", "-f", spec.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let volume = format!("{}:{mounted}:ro", f.display());
    let converge_in_image = || {
        let mut args = vec!["run", "--rm", "--network", "host"];
        args.extend(as_chart);
        args.extend(["-v", &volume, "-e", "BERTH_SSH_CONFIG=/etc/berth/ssh/config", &reference]);
        args.extend(["--etcd", &tb.etcd_bridge, "--prefix", &ssh_prefix, "converge", &app, "-n", "prod"]);
        tb.docker("host1", &args)
    };
    let out = converge_in_image();
    assert!(
        out.status.success(),
        "converge over ssh from the image failed:\n{}\n{}\nsshd: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    let running = tb.docker_ok("host2", &["ps", "-q", "--filter", &format!("label=berth.app={app}")]);
    assert_eq!(running.lines().count(), 1, "host2 runs {running:?}");
    let deleted = berth_at(&tb.etcd, &ssh_prefix, &["delete", "app", &app, "-n", "prod"]);
    assert!(deleted.status.success());
    assert!(converge_in_image().status.success());
    let left = tb.docker_ok("host2", &["ps", "-aq", "--filter", &format!("label=berth.app={app}")]);
    assert!(left.trim().is_empty(), "the delete left {left:?}");
}

/// Removes an app's containers on a host when the test ends, passed or not.
struct Containers(&'static Testbed, &'static str, String);

impl Drop for Containers {
    fn drop(&mut self) {
        let ids = self.0.docker(self.1, &["ps", "-aq", "--filter", &format!("label=berth.app={}", self.2)]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            self.0.docker(self.1, &["rm", "-f", id]);
        }
        self.0.docker(self.1, &["network", "rm", &format!("berth-{}-prod", self.2)]);
    }
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
