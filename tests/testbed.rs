//! The test bed itself: several real Docker hosts, each with its own address, pulling from the
//! local registry, isolated from one another, with mutual-TLS endpoints.
mod common;

use common::testbed::{http_get, secs, unique, wait_for_http, wait_until, Testbed};

/// Each host pulls an image from the registry and serves it at its own address; no other
/// host's daemon sees that container.
#[test]
fn every_host_serves_a_registry_image_at_its_own_address() {
    let tb = Testbed::get();
    let _all_up = tb.shared();
    assert!(tb.hosts.len() >= 3, "expected at least 3 hosts, got {}", tb.hosts.len());

    for (i, host) in tb.hosts.iter().enumerate() {
        // app:v1 on the first host, v2 on the second, the accessory on the third, ...
        let (image, digest, expect) = match i % 3 {
            0 => (&tb.images.app_v1, &tb.digests.app_v1, "v1"),
            1 => (&tb.images.app_v2, &tb.digests.app_v2, "v2"),
            _ => (&tb.images.accessory, &tb.digests.accessory, "accessory"),
        };
        let name = unique("tb-web");
        let _rm = tb.container(&host.name, &name);
        tb.docker_ok(&host.name, &["pull", image]);
        let id = tb.docker_ok(&host.name, &["run", "-d", "--name", &name, "-p", "80", image]);

        // The image came from our registry: its repo digest is the one `up` pushed.
        let repo_digests = tb.docker_ok(&host.name, &["image", "inspect", "-f", "{{json .RepoDigests}}", image]);
        assert!(
            repo_digests.contains(digest.as_str()),
            "{}: {image} has repo digests {repo_digests}, expected {digest}",
            host.name
        );

        // Reachable over HTTP from the root namespace at the host's own address.
        let port = tb.published_port(&host.name, &name, "80/tcp");
        let body = wait_for_http(&host.address, port, "/", expect, secs(20));
        assert_eq!(body.trim(), expect, "{} served {body:?}", host.name);

        // The other daemons know nothing about it.
        for other in tb.hosts.iter().filter(|o| o.name != host.name) {
            let ps = tb.docker_ok(&other.name, &["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]);
            assert!(
                !ps.contains(&id) && !ps.lines().any(|l| l.ends_with(&format!(" {name}"))),
                "{} lists {name} ({id}) that runs on {}:\n{ps}",
                other.name,
                host.name
            );
            assert!(
                !tb.docker(&other.name, &["inspect", &id]).status.success(),
                "{} can inspect {id} of {}",
                other.name,
                host.name
            );
        }
    }
}

/// The tcp endpoint accepts the test bed's client certificate and refuses one from another CA
/// (and a client without any certificate).
#[test]
fn tls_endpoint_requires_a_client_cert_from_the_right_ca() {
    let tb = Testbed::get();
    let _all_up = tb.shared();
    for host in &tb.hosts {
        let ok = tb.docker_tls(&host.name, &tb.client_tls, &["info", "--format", "{{.Name}} {{.ID}}"]);
        assert!(
            ok.status.success(),
            "{}: TLS with the client cert failed: {}",
            host.name,
            String::from_utf8_lossy(&ok.stderr)
        );
        // Same daemon as the unix socket.
        let via_unix = tb.docker_ok(&host.name, &["info", "--format", "{{.Name}} {{.ID}}"]);
        assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), via_unix, "{}", host.name);

        let rogue = tb.docker_tls(&host.name, &tb.rogue_tls, &["version", "--format", "{{.Server.Version}}"]);
        let stderr = String::from_utf8_lossy(&rogue.stderr);
        assert!(
            !rogue.status.success() && stderr.contains("bad certificate"),
            "{}: the rogue client cert was not refused: status {}, stdout {:?}, stderr {stderr:?}",
            host.name,
            rogue.status,
            String::from_utf8_lossy(&rogue.stdout)
        );

        // No client certificate at all: the handshake fails too.
        let nocert = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&tb.client_tls.ca)
            .arg(format!("https://{}/_ping", host.tcp_addr()))
            .output()
            .expect("run curl");
        assert!(
            !nocert.status.success(),
            "{}: a client without certificate got {:?}",
            host.name,
            String::from_utf8_lossy(&nocert.stdout)
        );
    }
}

/// etcd and the registry answer; the registry holds the test images.
#[test]
fn etcd_and_registry_answer() {
    let tb = Testbed::get();
    let etcd = tb.etcd.trim_start_matches("http://");
    let (ip, port) = etcd.rsplit_once(':').expect("etcd host:port");
    let (status, body) = http_get(ip, port.parse().unwrap(), "/health").expect("etcd /health");
    assert_eq!(status, 200, "etcd /health: {body}");
    assert!(body.contains("\"health\":\"true\""), "etcd /health: {body}");

    let (ip, port) = tb.registry.rsplit_once(':').expect("registry host:port");
    let port: u16 = port.parse().unwrap();
    let (status, body) = http_get(ip, port, "/v2/_catalog").expect("registry catalog");
    assert_eq!(status, 200, "registry catalog: {body}");
    assert!(body.contains("berth-test/app") && body.contains("berth-test/accessory"), "{body}");
    let (status, body) = http_get(ip, port, "/v2/berth-test/app/tags/list").expect("tags");
    assert_eq!(status, 200, "{body}");
    for tag in ["v1", "v2", "latest"] {
        assert!(body.contains(&format!("\"{tag}\"")), "app tags: {body}");
    }
}

/// A host can be taken down like a power loss and brought back; a container with a restart
/// policy runs again afterwards, and meanwhile the daemon answers on neither endpoint.
#[test]
fn a_host_can_die_and_come_back() {
    let tb = Testbed::get();
    let host = tb.hosts.last().expect("hosts");
    let name = unique("tb-survivor");
    let _rm = tb.container(&host.name, &name);
    tb.docker_ok(&host.name, &["run", "-d", "--name", &name, "--restart", "always", "-p", "80", &tb.images.app_v1]);

    {
        let _down = tb.outage(&host.name);
        assert!(!tb.docker(&host.name, &["info"]).status.success(), "{} still answers on unix", host.name);
        assert!(
            !tb.docker_tls(&host.name, &tb.client_tls, &["info"]).status.success(),
            "{} still answers on tcp",
            host.name
        );
        // Everything of that host is gone, containers included.
        assert!(!host.socket_path().exists(), "stale socket {}", host.socket_path().display());
    } // started again here

    assert!(
        wait_until(secs(30), || tb.docker_ok(&host.name, &["inspect", "-f", "{{.State.Running}}", &name]) == "true"),
        "{name} did not come back on {}",
        host.name
    );
    let port = tb.published_port(&host.name, &name, "80/tcp");
    wait_for_http(&host.address, port, "/", "v1", secs(20));
}
