//! The typed form: validation hands back exactly what the planner builds from, values the runtime
//! could not use are refused by both, and the rollout's defaults and values reach the plan.

mod plan_support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use berth::plan::{self, PlanError};
use berth::spec::{
    load_paths, validate_app, App, MaxUnavailable, ParsedAccessory, ParsedRole, Resource, RestartPolicy, RolloutPolicy,
};
use plan_support::{app, hosts, images_for, shop};
use serde_json::json;

fn example_app() -> App {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let loaded = load_paths(&[folder]).expect("examples are valid");
    loaded
        .into_iter()
        .find_map(|l| match l.resource {
            Resource::App(a) => Some(a),
            _ => None,
        })
        .expect("an App among the examples")
}

#[test]
fn validation_hands_back_what_the_planner_parses() {
    for a in [example_app(), shop()] {
        let valid = validate_app(&a).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(valid.image.to_string(), a.spec.image);
        assert_eq!(valid.roles.len(), a.spec.roles.len());
        for (name, role) in &a.spec.roles {
            assert_eq!(valid.roles[name], ParsedRole::parse(role).unwrap(), "role {name}");
        }
        for (name, acc) in &a.spec.accessories {
            assert_eq!(valid.accessories[name], ParsedAccessory::parse(acc).unwrap(), "accessory {name}");
            assert_eq!(valid.accessories[name].image.to_string(), acc.image);
        }
        assert_eq!(valid.rollout, RolloutPolicy::parse(&a.spec.rollout).unwrap());
    }
}

#[test]
fn typed_role_carries_docker_units() {
    let a = shop();
    let valid = validate_app(&a).unwrap();
    let web = &valid.roles["web"];
    assert_eq!(web.workload.ports[0].host_port, 80);
    assert_eq!(web.workload.healthcheck.as_ref().unwrap().interval, Some(Duration::from_secs(2)));
    assert_eq!(web.limits.restart, RestartPolicy::UnlessStopped);
    assert_eq!(
        valid.rollout,
        RolloutPolicy { max_unavailable: MaxUnavailable::Count(1), health_timeout: Duration::from_secs(60) }
    );
    assert!(!valid.image.is_pinned());
}

#[test]
fn validation_reports_every_problem_and_no_typed_form() {
    let mut a = shop();
    let web = a.spec.roles.get_mut("web").unwrap();
    web.ports.push("80".into());
    web.memory = Some("99999999999g".into());
    web.cpus = Some(2e10);
    a.spec.rollout.health_timeout = "0s".into();
    let problems = validate_app(&a).unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["spec.roles.web.ports[1]", "spec.roles.web.memory", "spec.roles.web.cpus", "spec.rollout.healthTimeout"]
    );
    assert_eq!(problems[1].1, "memory \"99999999999g\" out of range");
    assert_eq!(problems[3].1, "duration must be greater than 0");
}

#[test]
fn plan_uses_the_typed_rollout() {
    let hs = hosts(&["h1", "h2", "h3"]);
    let mut a = app(
        "shop",
        "production",
        json!({"image": "shop:1", "roles": {"web": {"hosts": ["h1", "h2", "h3"]}},
        "rollout": {"maxUnavailable": "67%", "healthTimeout": "1m30s"}}),
    );
    let desired = plan::desired_state(&a, &hs, &images_for(&a)).unwrap();
    assert_eq!(desired.rollout().health_timeout, Duration::from_secs(90));
    assert_eq!(desired.rollout().max_unavailable.at_once(3), 2);
    // Deleted: nothing rolls, and the defaults stand.
    a.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
    let desired = plan::desired_state(&a, &hs, &BTreeMap::new()).unwrap();
    assert_eq!(*desired.rollout(), RolloutPolicy::default());
}

#[test]
fn planner_refuses_what_validation_refuses() {
    let hs = hosts(&["h1", "h2", "h3"]);
    let mut a = shop();
    a.spec.rollout.health_timeout = "soon".into();
    let err = plan::desired_state(&a, &hs, &images_for(&a)).unwrap_err();
    assert_eq!(
        err,
        PlanError::InvalidRollout { field: "rollout.healthTimeout".into(), message: "bad duration \"soon\"".into() }
    );
    let mut a = shop();
    a.spec.accessories.get_mut("db").unwrap().healthcheck.as_mut().unwrap().interval = Some("0s".into());
    let err = plan::desired_state(&a, &hs, &images_for(&a)).unwrap_err();
    assert_eq!(err.to_string(), "accessory/db: invalid healthcheck.interval: duration must be greater than 0");
}

/// An App using every Kamal field berth took on, valid.
fn kamal_fields() -> App {
    app(
        "shop",
        "production",
        json!({
            "image": "shop:1",
            "logging": {"driver": "json-file", "options": {"max-size": "10m"}},
            "roles": {"web": {"hosts": ["h1", "h2"], "readinessDelay": "7s",
                "hostEnv": {"h1": {"TAG": "a"}, "h2": {"TOKEN": {"secretKeyRef": {"name": "tags", "key": "h2"}}}},
                "logging": {"options": {"max-file": "3"}},
                "options": {"addHosts": ["db.internal:10.0.0.5", "gw:host-gateway"], "capAdd": ["CAP_NET_ADMIN"],
                    "devices": ["/dev/fuse"], "ulimits": {"nofile": "1024:2048", "nproc": 512}, "shmSize": "64m",
                    "user": "1000:1000", "workdir": "/app"}}},
            "accessories": {"db": {"image": "mysql:8", "roles": ["web"], "directories": ["data:/var/lib/mysql"],
                "options": {"network": "host"}}}
        }),
    )
}

#[test]
fn the_kamal_fields_come_back_typed() {
    let a = kamal_fields();
    let valid = validate_app(&a).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(valid.roles["web"], ParsedRole::parse(&a.spec.roles["web"]).unwrap());
    assert_eq!(valid.accessories["db"], ParsedAccessory::parse(&a.spec.accessories["db"]).unwrap());
    let web = &valid.roles["web"];
    assert_eq!(web.readiness_delay, Some(Duration::from_secs(7)));
    let o = &web.workload.options;
    assert_eq!(
        o.extra_hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["db.internal:10.0.0.5", "gw:host-gateway"]
    );
    assert_eq!(o.cap_add, ["NET_ADMIN"]);
    assert_eq!(o.devices[0].to_string(), "/dev/fuse:/dev/fuse:rwm");
    let limits: Vec<(&str, i64, i64)> = o.ulimits.iter().map(|u| (u.name.as_str(), u.soft, u.hard)).collect();
    assert_eq!(limits, [("nofile", 1024, 2048), ("nproc", 512, 512)]);
    assert_eq!(
        (o.shm_size, o.user.as_deref(), o.workdir.as_deref()),
        (Some(64 << 20), Some("1000:1000"), Some("/app"))
    );
    assert!(!o.host_network);
    let db = &valid.accessories["db"];
    assert!(db.workload.options.host_network);
    assert_eq!((db.directories[0].name.as_str(), db.directories[0].target.as_str()), ("data", "/var/lib/mysql"));
    assert_eq!(berth::spec::secrets_used(&a).into_iter().collect::<Vec<_>>(), ["tags"]);
}

#[test]
fn the_planner_refuses_bad_kamal_fields_as_validation_does() {
    let hs = hosts(&["h1", "h2"]);
    let mut a = kamal_fields();
    let opts = a.spec.roles.get_mut("web").unwrap().options.as_mut().unwrap();
    opts.ulimits.insert("nofile".into(), berth::spec::UlimitValue::Text("many".into()));
    let problems = validate_app(&a).unwrap_err();
    assert_eq!(problems[0].0, "spec.roles.web.options.ulimits.nofile");
    let err = plan::desired_state(&a, &hs, &images_for(&a)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "role/web: invalid options.ulimits.nofile: bad ulimit nofile: \"many\" is not a number (or -1 for unlimited)"
    );
    let mut a = kamal_fields();
    a.spec.accessories.get_mut("db").unwrap().directories = vec!["/srv:/data".into()];
    let problems = validate_app(&a).unwrap_err();
    assert_eq!(problems[0].0, "spec.accessories.db.directories[0]");
    assert!(plan::desired_state(&a, &hs, &images_for(&a)).is_err());
    // A proxied role stays off the host network.
    let mut a = kamal_fields();
    let web = a.spec.roles.get_mut("web").unwrap();
    web.options.as_mut().unwrap().network = Some("host".into());
    web.proxy = Some(serde_json::from_value(json!({"hosts": ["shop.example.com"], "appPort": 80})).unwrap());
    let problems = validate_app(&a).unwrap_err();
    assert!(
        problems.iter().any(|(p, m)| p == "spec.roles.web.options.network" && m.contains("proxy network")),
        "{problems:?}"
    );
    let err = plan::desired_state(&a, &hs, &images_for(&a)).unwrap_err();
    assert!(err.to_string().starts_with("role/web: invalid options.network: a proxied role joins"), "{err}");
}
