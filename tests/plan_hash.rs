//! The config hash of a known spec, pinned: the canonical form feeds every container's hash, so a
//! change to it (or to how the spec is parsed into it) would replace every container of every fleet.
//! When this fails on purpose, bump `HASH_VERSION` and say so in the release notes.

mod plan_support;

use berth::plan;
use plan_support::{app, hosts, images_for, shop};
use serde_json::json;

/// Every runtime field the hash covers, with values that exercise each encoding.
fn everything() -> berth::spec::App {
    app(
        "shop",
        "staging",
        json!({
            "image": "registry.local:5000/team/shop:v2",
            "env": {"A": "1", "B": "two"},
            "roles": {
                "web": {
                    "hosts": ["h1", "h2"],
                    "cmd": ["bin/web", "--port", "8080"],
                    "env": {"B": "web"},
                    "ports": ["127.0.0.1:8443:443", "[::1]:53:53/udp", "80:8080"],
                    "volumes": ["/etc/shop:/config:ro", "uploads:/srv/uploads", "cache:/tmp/cache:rw"],
                    "healthcheck": {"cmd": "curl -f localhost:8080/up", "interval": "1m30s", "timeout": "250ms",
                                    "retries": 4, "startPeriod": "0s"},
                    "labels": {"team": "storefront"},
                    "restart": "on-failure:3",
                    "memory": "512m",
                    "cpus": 1.5
                },
                "worker": {"hosts": ["h3"], "cmd": "bin/worker", "restart": "always", "memory": "1g", "cpus": 0.25}
            },
            "accessories": {
                "db": {"image": "postgres:16", "hosts": ["h3"], "volumes": ["pgdata:/var/lib/postgresql/data"],
                       "healthcheck": {"cmd": ["pg_isready", "-U", "shop"], "interval": "1s"}}
            },
            "rollout": {"maxUnavailable": "50%", "healthTimeout": "2m"}
        }),
    )
}

/// `component@host` → config hash, in the desired state's order.
fn hashes(a: &berth::spec::App) -> Vec<(String, String)> {
    let containers = plan::desired(a, &hosts(&["h1", "h2", "h3"]), &images_for(a)).expect("desired");
    containers.iter().map(|c| (format!("{}@{}", c.component, c.host), c.hash.clone())).collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn config_hash_of_every_runtime_field_is_pinned() {
    let web = "33cff0bb736cd46f9b5909901e086ce1b8347e65dc4734adc7f54b744bf9c49f";
    assert_eq!(
        hashes(&everything()),
        pairs(&[
            ("accessory/db@h3", "53a523a83877201ec41bc2d96f06a0d747a4ddcb0ec604ec1006f920d1d4440e"),
            ("role/web@h1", web),
            ("role/web@h2", web),
            ("role/worker@h3", "53ac74b3c463bfb66f42584cf2a6b105fa95fe39ff8b74cd127226c7ceb27c76"),
        ])
    );
}

#[test]
fn config_hash_of_the_usual_test_app_is_pinned() {
    let web = "3e39313f44363e407a558be01863bd41e280ed9d84883a132ec203b9c26924ad";
    assert_eq!(
        hashes(&shop()),
        pairs(&[
            ("accessory/cache@h1", "d99e5254699293ac2ac4e04c1bfe35d8315cc2b746de11eaa6a63595b4239f8d"),
            ("accessory/db@h3", "bb3845453763fd41880cfddb7fe8978735ae0e2acd4a0218efeeb39b1cb0c632"),
            ("role/web@h1", web),
            ("role/web@h2", web),
            ("role/worker@h3", "a34b17e9bff7c3096046bb233b987f685ddd4b726bbe4c77c67e7ce5598f4b06"),
        ])
    );
}
