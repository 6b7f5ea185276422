//! Failed rollouts on plain data: which failure applies to which App, what the last Ready record
//! gives back, and a plan held without one (no replace; a stopped old container is started).
mod plan_support;

use berth::engine::rollout::{hold_replaces, LastReady};
use berth::engine::RolloutFailure;
use berth::plan::{Action, ContainerState};
use plan_support::{converge, empty, hosts, images_for, plan_of, shop};

fn failure(generation: i64) -> RolloutFailure {
    RolloutFailure {
        generation,
        repin_requested_at: None,
        retry_requested_at: None,
        host: "h1".into(),
        container: "shop-production-web-12345678".into(),
        component: "role/web".into(),
        reason: "not healthy within 4s: running, unhealthy".into(),
        at: "2026-12-02T00:00:00Z".into(),
        running_generation: Some(generation - 1),
    }
}

#[test]
fn a_failure_applies_to_its_generation_and_requests_only() {
    let mut app = shop();
    app.metadata.generation = Some(2);
    let f = failure(2);
    assert!(f.applies_to(&app));

    let mut newer = app.clone();
    newer.metadata.generation = Some(3);
    assert!(!f.applies_to(&newer), "a new spec is a new attempt");

    let mut retried = app.clone();
    retried.metadata.annotations.insert(berth::spec::ROLLOUT_RETRY_ANNOTATION.into(), "t1".into());
    assert!(!f.applies_to(&retried), "a retry request is a new attempt");
    let answered = RolloutFailure { retry_requested_at: Some("t1".into()), ..failure(2) };
    assert!(answered.applies_to(&retried), "the failure of the retry itself holds again");

    let mut repinned = app.clone();
    repinned.metadata.annotations.insert(berth::spec::REPIN_ANNOTATION.into(), "t2".into());
    assert!(!f.applies_to(&repinned), "a repin is a new attempt");

    let mut deleting = app.clone();
    deleting.metadata.deletion_timestamp = Some("2026-12-02T00:00:00Z".into());
    assert!(!f.applies_to(&deleting), "a deletion is never held");

    let text = f.describe();
    assert!(text.contains("generation 2") && text.contains("h1") && text.contains("running generation 1"), "{text}");
}

#[test]
fn the_last_ready_record_gives_back_its_spec_under_todays_metadata() {
    let good = shop();
    let images = images_for(&good);
    let record = LastReady::of(&good, &images);
    assert!(record.same_as(&good, &images));

    let mut failed = shop();
    failed.metadata.generation = Some(7);
    failed.spec.env.insert("MODE".into(), "broken".into());
    assert!(!record.same_as(&failed, &images));
    let held = record.app(&failed);
    assert_eq!(held.spec, good.spec, "runs the last Ready spec");
    assert_eq!(held.metadata.generation, Some(7), "keeps today's metadata");

    // Planned from the record, the containers the good generation left are current: nothing to do.
    let hs = hosts(&["h1", "h2", "h3"]);
    let mut obs = empty(&hs);
    converge(&good, &hs, &mut obs);
    let p = berth::plan::plan(&held, &hs, &record.images, &obs).unwrap();
    assert!(p.is_empty(), "{:?}", plan_support::verbs(&p));
}

#[test]
fn without_a_last_ready_record_a_held_plan_replaces_nothing_and_starts_a_stopped_old_container() {
    let hs = hosts(&["h1", "h2", "h3"]);
    let good = shop();
    let mut obs = empty(&hs);
    converge(&good, &hs, &mut obs);

    let mut changed = shop();
    changed.spec.env.insert("MODE".into(), "two".into());
    let mut p = plan_of(&changed, &hs, &obs);
    assert!(p.actions().any(|a| matches!(a, Action::Replace { .. })), "the change replaces");
    hold_replaces(&mut p, &obs);
    assert!(!p.actions().any(|a| matches!(a, Action::Replace { .. })), "{:?}", plan_support::verbs(&p));
    assert!(!p.actions().any(|a| matches!(a, Action::Start { .. })), "everything runs: nothing to start");

    // The old web container on h1 was killed by hand: held, it is started again, not replaced.
    let web = obs["h1"].containers.iter().position(|c| c.name.contains("-web-")).unwrap();
    obs.get_mut("h1").unwrap().containers[web].state = ContainerState::Exited;
    let old_id = obs["h1"].containers[web].id.clone();
    let mut p = plan_of(&changed, &hs, &obs);
    hold_replaces(&mut p, &obs);
    let starts: Vec<_> = p.actions().filter(|a| matches!(a, Action::Start { .. })).collect();
    assert_eq!(starts.len(), 1, "{:?}", plan_support::verbs(&p));
    assert_eq!((starts[0].host(), starts[0].target_id()), ("h1", Some(old_id.as_str())));
    assert!(!p.actions().any(|a| matches!(a, Action::Replace { .. } | Action::Stop { .. } | Action::Remove { .. })));
}
