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
