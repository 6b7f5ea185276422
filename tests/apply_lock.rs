//! Cross-resource checks at apply time hold under concurrency: two `berth apply` processes racing to
//! publish the same host port from two different apps never both win, because the checks and the
//! writes run under one store-wide lock.
mod common;

use std::process::Command;

use common::testbed::{unique, Testbed};

fn spec(app: &str, port: u16) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata: {{name: host1}}\nspec: {{endpoint: \"unix:///var/run/docker.sock\"}}\n---\n\
         apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: {app}}}\n\
         spec: {{image: \"registry.example/shop:1\", roles: {{web: {{hosts: [host1], ports: [\"{port}:80\"]}}}}}}\n"
    )
}

#[test]
fn racing_applies_never_publish_one_host_port_twice() {
    let tb = Testbed::get();
    let dir = tempfile::tempdir().unwrap();
    for round in 0..6 {
        let prefix = format!("/{}", unique("berth-lock"));
        let port = 30000 + round;
        let files: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                let path = dir.path().join(format!("{n}-{round}.yaml"));
                std::fs::write(&path, spec(&format!("app-{n}"), port)).unwrap();
                path
            })
            .collect();
        let running: Vec<_> = files
            .iter()
            .map(|f| {
                Command::new(env!("CARGO_BIN_EXE_berth"))
                    .args(["--etcd", &tb.etcd, "--prefix", &prefix, "apply", "-f"])
                    .arg(f)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn berth")
            })
            .collect();
        let outputs: Vec<_> = running.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let winners = outputs.iter().filter(|o| o.status.success()).count();
        assert_eq!(winners, 1, "exactly one app may publish port {port} on host1");
        for o in outputs.iter().filter(|o| !o.status.success()) {
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{err}");
            assert!(err.contains(&format!("host port {port} on host1 already published by app/app-")), "{err}");
        }
    }
}

#[test]
fn two_hosts_for_one_docker_endpoint_are_refused() {
    let tb = Testbed::get();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("/{}", unique("berth-twins"));
    let host = |name: &str| {
        format!("apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}}}\nspec: {{endpoint: \"unix:///var/run/docker.sock\"}}\n")
    };
    let first = dir.path().join("a.yaml");
    std::fs::write(&first, host("alpha")).unwrap();
    let second = dir.path().join("b.yaml");
    std::fs::write(&second, host("beta")).unwrap();
    let apply = |f: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["--etcd", &tb.etcd, "--prefix", &prefix, "apply", "-f"])
            .arg(f)
            .output()
            .unwrap()
    };
    assert!(apply(&first).status.success());
    let out = apply(&second);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host/beta: spec.endpoint: unix:///var/run/docker.sock is already the endpoint of host/alpha"),
        "{err}"
    );
}
