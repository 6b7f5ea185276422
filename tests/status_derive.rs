//! The status derivation on plain data: what the hosts show after a converge and what the converge
//! reported become the phase, the reason, the per-host containers and the Ready condition.
mod plan_support;

use std::collections::{BTreeMap, BTreeSet};

use berth::engine::status::{derive, ContainerPhase, ConvergeReport};
use berth::engine::{AppStatus, Phase, Reason};
use berth::plan::{self, ContainerState, DesiredState, HostObservation};
use berth::spec::App;
use plan_support::{converge, empty, hosts, images_for, shop};

struct World {
    app: App,
    desired: DesiredState,
    images: BTreeMap<String, String>,
    after: BTreeMap<String, HostObservation>,
}

/// The shop app converged on h1..h3 (every container running and healthy) plus an empty h4.
fn converged() -> World {
    let app = shop();
    let hs = hosts(&["h1", "h2", "h3", "h4"]);
    let mut after = empty(&hs);
    converge(&app, &hs, &mut after);
    let images = images_for(&app);
    let desired = plan::desired_state(&app, &hs, &images).unwrap();
    World { app, desired, images, after }
}

fn report<'a>(w: &'a World, host_errors: &'a BTreeMap<String, String>, blocked: &'a [String]) -> ConvergeReport<'a> {
    ConvergeReport {
        app: &w.app,
        desired: &w.desired,
        images: &w.images,
        host_errors,
        blocked,
        interrupted: false,
        fatal: None,
        unavailable: None,
        previous_hosts: None,
        previous: None,
    }
}

const NOW: &str = "2026-12-02T10:00:00Z";

#[test]
fn every_container_serving_is_ready_and_lists_each_host() {
    let w = converged();
    let none = BTreeMap::new();
    let s = derive(&report(&w, &none, &[]), &w.after, &BTreeMap::new(), NOW);
    assert_eq!(s.phase, Phase::Ready, "{}", s.message);
    assert_eq!(s.conditions[0].reason, Reason::Converged);
    assert_eq!(s.conditions[0].status, "True");
    assert_eq!(s.images, w.images);
    let hosts: BTreeSet<&str> = s.hosts.keys().map(String::as_str).collect();
    assert_eq!(hosts, BTreeSet::from(["h1", "h2", "h3"]), "h4 holds nothing of the app");
    assert!(s.hosts.values().flat_map(|h| &h.containers).all(|c| c.serving()));
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("s3cret"), "env values never reach the status: {json}");
}

#[test]
fn a_missing_container_is_progressing_and_shown_missing() {
    let mut w = converged();
    let h1 = w.after.get_mut("h1").unwrap();
    let web = h1.containers.iter().position(|c| c.name.contains("-web-")).unwrap();
    let name = h1.containers.remove(web).name;
    let none = BTreeMap::new();
    let s = derive(&report(&w, &none, &[]), &w.after, &BTreeMap::new(), NOW);
    assert_eq!((s.phase, s.conditions[0].reason), (Phase::Progressing, Reason::Converging));
    assert!(s.message.contains(&format!("not ready yet: {name} on h1")), "{}", s.message);
    let shown = s.hosts["h1"].containers.iter().find(|c| c.name == name).unwrap();
    assert_eq!(shown.state, ContainerPhase::Missing);
    assert_eq!(shown.metric_state(), "missing");
}

#[test]
fn an_unhealthy_container_is_not_serving() {
    let mut w = converged();
    let h3 = w.after.get_mut("h3").unwrap();
    let db = h3.containers.iter_mut().find(|c| c.name.contains("-db-")).unwrap();
    db.health = Some(berth::plan::Health::Unhealthy);
    let none = BTreeMap::new();
    let s = derive(&report(&w, &none, &[]), &w.after, &BTreeMap::new(), NOW);
    assert_eq!(s.phase, Phase::Progressing);
    let db = s.hosts["h3"].containers.iter().find(|c| c.name.contains("-db-")).unwrap();
    assert!(!db.serving());
    assert_eq!(db.metric_state(), "unhealthy");
}

#[test]
fn blocked_wins_then_interrupted_then_errors_on_hosts_that_matter() {
    let w = converged();
    let blocked = vec!["role web waits for db".to_string()];
    let errors = BTreeMap::from([("h2".to_string(), "connection refused".to_string())]);
    let s = derive(&report(&w, &errors, &blocked), &w.after, &BTreeMap::new(), NOW);
    assert_eq!((s.phase, s.conditions[0].reason), (Phase::Blocked, Reason::AccessoryNotReady));

    let mut r = report(&w, &errors, &[]);
    r.interrupted = true;
    let s = derive(&r, &w.after, &BTreeMap::new(), NOW);
    assert_eq!((s.phase, s.conditions[0].reason), (Phase::Progressing, Reason::Interrupted));

    let s = derive(&report(&w, &errors, &[]), &w.after, &BTreeMap::new(), NOW);
    assert_eq!((s.phase, s.conditions[0].reason), (Phase::Degraded, Reason::ConvergeFailed));
    assert_eq!(s.message, "host h2: connection refused");
    assert_eq!(s.hosts["h2"].error.as_deref(), Some("connection refused"));

    // A host the app never used and the last status never saw it on is none of its business.
    let mut away = w.after.clone();
    away.insert("h4".into(), HostObservation { reachable: false, ..Default::default() });
    let unreachable = BTreeMap::from([("h4".to_string(), "no route to host".to_string())]);
    let none = BTreeMap::new();
    let seen_on = BTreeSet::from(["h1".to_string(), "h2".to_string(), "h3".to_string()]);
    let mut r = report(&w, &none, &[]);
    r.previous_hosts = Some(&seen_on);
    let s = derive(&r, &away, &unreachable, NOW);
    assert_eq!(s.phase, Phase::Ready, "{}", s.message);
    // Without a last status every host matters: leftovers could be anywhere.
    let s = derive(&report(&w, &none, &[]), &away, &unreachable, NOW);
    assert_eq!(s.phase, Phase::Degraded, "{}", s.message);
}

#[test]
fn a_leftover_of_the_app_is_still_to_remove() {
    let mut w = converged();
    let mut extra = w.after["h1"].containers[0].clone();
    extra.name = format!("{}-old", extra.name);
    extra.id = "leftover".into();
    extra.state = ContainerState::Exited;
    w.after.get_mut("h4").unwrap().containers.push(extra.clone());
    let none = BTreeMap::new();
    let s = derive(&report(&w, &none, &[]), &w.after, &BTreeMap::new(), NOW);
    assert_eq!(s.phase, Phase::Progressing);
    assert!(s.message.contains(&format!("still to remove: {}", extra.name)), "{}", s.message);
    assert!(s.hosts.contains_key("h4"), "a host holding a leftover is listed");
}

#[test]
fn the_ready_condition_moves_its_transition_time_only_when_it_flips() {
    let w = converged();
    let none = BTreeMap::new();
    let first: AppStatus = derive(&report(&w, &none, &[]), &w.after, &BTreeMap::new(), "2026-12-02T10:00:00Z");
    let mut r = report(&w, &none, &[]);
    r.previous = Some(&first);
    let again = derive(&r, &w.after, &BTreeMap::new(), "2026-12-02T11:00:00Z");
    assert_eq!(again.conditions[0].last_transition_time, "2026-12-02T10:00:00Z", "still Ready: unchanged");
    assert_eq!(again.last_converged.as_deref(), Some("2026-12-02T11:00:00Z"));

    let blocked = vec!["role web waits for db".to_string()];
    let mut r = report(&w, &none, &blocked);
    r.previous = Some(&again);
    let flipped = derive(&r, &w.after, &BTreeMap::new(), "2026-12-02T12:00:00Z");
    assert_eq!(flipped.conditions[0].last_transition_time, "2026-12-02T12:00:00Z", "Ready → not Ready");
}
