//! Planner behaviour on hand-written scenarios: plain data in, actions out, no Docker.

mod plan_support;

use std::collections::{BTreeMap, BTreeSet};

use berth::plan::{self, labels, Action, Component, ContainerState, PlanError};
use berth::spec::IntOrPercent;
use plan_support::*;
use serde_json::json;

const ALL: [&str; 4] = ["h1", "h2", "h3", "h4"];

#[test]
fn unchanged_spec_gives_same_hash_and_no_actions() {
    let (app, hs) = (shop(), hosts(&ALL));
    let a = plan::desired(&app, &hs, &images_for(&app)).unwrap();
    let b = plan::desired(&shop(), &hs, &images_for(&app)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 5, "db@h3, cache@h1, web@h1, web@h2, worker@h3");

    let mut obs = empty(&hs);
    let first = converge(&app, &hs, &mut obs);
    assert!(!first.is_empty());
    let again = plan_of(&app, &hs, &obs);
    assert!(again.is_empty(), "{again}");
}

#[test]
fn desired_containers_carry_the_contract() {
    let (app, hs) = (shop(), hosts(&ALL));
    let want = plan::desired(&app, &hs, &images_for(&app)).unwrap();
    let web = want.iter().find(|d| d.component == Component::Role("web".into()) && d.host == "h1").unwrap();
    assert_eq!(web.name, format!("shop-production-web-{}", &web.hash[..8]));
    assert_eq!(web.image, pin("registry.local/shop:v1"));
    assert_eq!(web.labels[labels::MANAGED_BY], "berth");
    assert_eq!(web.labels[labels::APP], "shop");
    assert_eq!(web.labels[labels::NAMESPACE], "production");
    assert_eq!(web.labels[labels::ROLE], "web");
    assert_eq!(web.labels[labels::CONFIG_HASH], web.hash);
    assert_eq!(web.network, "berth-shop-production");
    assert_eq!(web.alias, "web");
    // Role env overlays app env.
    assert_eq!(web.env.expose()["MODE"], "web");
    assert_eq!(web.env.expose()["DATABASE_URL"], "postgres://shop:s3cret@db/shop");
    assert_eq!(web.healthcheck.as_ref().unwrap().test, ["CMD-SHELL", "curl -f localhost:8080/up"]);
    assert_eq!(web.restart, plan::RestartPolicy::UnlessStopped);

    let worker = want.iter().find(|d| d.component == Component::Role("worker".into())).unwrap();
    assert_eq!(worker.cmd.as_deref().unwrap(), ["sh", "-c", "bin/worker"]);
    let db = want.iter().find(|d| d.component == Component::Accessory("db".into())).unwrap();
    assert_eq!(db.labels[labels::ACCESSORY], "db");
    assert!(!db.labels.contains_key(labels::ROLE));
    assert!(!db.env.expose().contains_key("DATABASE_URL"), "app env is for roles only");
    assert_eq!(db.image, pin("postgres:16"));
}

#[test]
fn user_labels_never_override_berth_keys() {
    let hs = hosts(&["h1"]);
    let app = app(
        "shop",
        "production",
        json!({"image": "shop:1", "roles": {"web": {"hosts": ["h1"],
            "labels": {"berth.app": "blog", "berth.managed-by": "me", "team": "store"}}}}),
    );
    let want = plan::desired(&app, &hs, &images_for(&app)).unwrap();
    assert_eq!(want[0].labels[labels::APP], "shop");
    assert_eq!(want[0].labels[labels::MANAGED_BY], "berth");
    assert_eq!(want[0].labels["team"], "store");
}

#[test]
fn hash_covers_runtime_config_but_not_spec_order() {
    let hs = hosts(&["h1"]);
    let base = json!({"image": "shop:1", "roles": {"web": {"hosts": ["h1"], "ports": ["80:8080", "443:8443"]}}});
    let hash = |spec: serde_json::Value, images: Option<BTreeMap<String, String>>| {
        let a = app("shop", "production", spec);
        let imgs = images.unwrap_or_else(|| images_for(&a));
        plan::desired(&a, &hs, &imgs).unwrap()[0].hash.clone()
    };
    let h0 = hash(base.clone(), None);
    let reordered = json!({"image": "shop:1", "roles": {"web": {"hosts": ["h1"], "ports": ["443:8443", "80:8080"]}}});
    assert_eq!(h0, hash(reordered, None));
    let mut changed = base.clone();
    changed["roles"]["web"]["memory"] = json!("512m");
    assert_ne!(h0, hash(changed, None));
    let mut changed = base.clone();
    changed["roles"]["web"]["restart"] = json!("always");
    assert_ne!(h0, hash(changed, None));
    // A new digest behind the same tag is a new config.
    let repinned = BTreeMap::from([("shop:1".to_string(), "shop@sha256:feed".to_string())]);
    assert_ne!(h0, hash(base.clone(), Some(repinned)));
    // Other namespace, other hash (and name).
    let a = app("shop", "staging", base);
    assert_ne!(h0, plan::desired(&a, &hs, &images_for(&a)).unwrap()[0].hash);
}

#[test]
fn env_change_replaces_only_affected_roles() {
    let hs = hosts(&ALL);
    let mut obs = empty(&hs);
    converge(&shop(), &hs, &mut obs);

    let mut app = shop();
    app.spec.roles.get_mut("web").unwrap().env.insert("FEATURE".into(), "on".into());
    let p = plan_of(&app, &hs, &obs);
    assert!(p.accessories.is_empty());
    assert!(p.prune.is_empty(), "replace removes the old container itself");
    assert_eq!(p.roles.len(), 1);
    let replaced: Vec<_> = p
        .actions()
        .filter_map(|a| match a {
            Action::Replace { host, old_name, new, .. } => Some((host.clone(), old_name.clone(), new.name.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(replaced.len(), 2);
    for (host, old, new) in &replaced {
        assert!(old.starts_with("shop-production-web-") && new.starts_with("shop-production-web-"));
        assert_ne!(old, new, "old and new coexist during the replace");
        assert!(host == "h1" || host == "h2");
    }
    // Same digest already pulled? The plan cannot know, so it pulls before each replace host.
    assert_eq!(count(&p, |a| matches!(a, Action::Pull { .. })), 2);

    plan::simulate(&p, &mut obs);
    assert!(plan_of(&app, &hs, &obs).is_empty());
}

#[test]
fn app_env_change_leaves_accessories_alone() {
    let hs = hosts(&ALL);
    let mut obs = empty(&hs);
    converge(&shop(), &hs, &mut obs);
    let mut app = shop();
    app.spec.env.insert("MODE".into(), "other".into());
    let p = plan_of(&app, &hs, &obs);
    // web overrides MODE itself, so only worker (which inherits MODE) changes.
    assert_eq!(verbs(&p), ["pull h3", "replace h3"]);
}

#[test]
fn stopped_container_is_started_not_replaced() {
    let hs = hosts(&ALL);
    let mut obs = empty(&hs);
    converge(&shop(), &hs, &mut obs);
    for c in &mut obs.get_mut("h2").unwrap().containers {
        c.state = ContainerState::Exited;
    }
    for c in &mut obs.get_mut("h3").unwrap().containers {
        if c.labels.contains_key(labels::ACCESSORY) {
            c.state = ContainerState::Dead;
        }
    }
    let p = plan_of(&shop(), &hs, &obs);
    assert_eq!(verbs(&p), ["start h3", "start h2"]);
    assert!(matches!(&p.accessories[0], Action::Start { name, .. } if name.starts_with("shop-production-db-")));
}

#[test]
fn removed_role_is_pruned_on_every_host_including_unnamed_ones() {
    let hs = hosts(&ALL);
    let mut obs = empty(&hs);
    converge(&shop(), &hs, &mut obs);
    // A leftover of a role that existed long ago, on a host the spec never names.
    let old = managed("old1", "shop", "production", "cron", "0123456789abcdef", ContainerState::Running);
    obs.get_mut("h4").unwrap().containers.push(old);
    let netlabels = labels::network_labels("shop", "production");
    obs.get_mut("h4").unwrap().networks.push(network("berth-shop-production", netlabels));

    let mut app = shop();
    app.spec.roles.remove("worker");
    let p = plan_of(&app, &hs, &obs);
    assert!(p.roles.is_empty() && p.accessories.is_empty());
    let expected: Vec<String> =
        ["stop h3", "remove h3", "stop h4", "remove h4", "remove-network h4"].iter().map(|s| s.to_string()).collect();
    assert_eq!(verbs(&p), expected, "{p}");
    // h3 still runs db, so its network stays.
    plan::simulate(&p, &mut obs);
    assert!(plan_of(&app, &hs, &obs).is_empty());
    assert!(obs["h4"].containers.is_empty() && obs["h4"].networks.is_empty());
}

#[test]
fn role_moved_between_hosts_creates_then_prunes() {
    let hs = hosts(&ALL);
    let spec = |h: &str| json!({"image": "shop:1", "roles": {"web": {"hosts": [h]}}});
    let mut obs = empty(&hs);
    converge(&app("shop", "production", spec("h1")), &hs, &mut obs);

    let moved = app("shop", "production", spec("h2"));
    let p = plan_of(&moved, &hs, &obs);
    assert_eq!(p.roles.len(), 1);
    assert_eq!(p.roles[0].batches.len(), 1);
    let first: Vec<String> = p.roles[0].batches[0].iter().map(|a| format!("{} {}", a.verb(), a.host())).collect();
    assert_eq!(first, ["create-network h2", "pull h2", "create h2"]);
    let prune: Vec<String> = p.prune.iter().map(|a| format!("{} {}", a.verb(), a.host())).collect();
    assert_eq!(prune, ["stop h1", "remove h1", "remove-network h1"]);
}

#[test]
fn accessory_only_host_never_pulls_the_app_image() {
    let (app, hs) = (shop(), hosts(&ALL));
    let needed = plan::images_needed(&app, &hs);
    assert_eq!(needed["h1"], BTreeSet::from(["registry.local/shop:v1".to_string(), "redis:7".to_string()]));
    assert_eq!(needed["h2"], BTreeSet::from(["registry.local/shop:v1".to_string()]));
    assert!(!needed.contains_key("h4"));

    let only_acc = self::app(
        "shop",
        "production",
        json!({"image": "shop:1", "roles": {"web": {"hosts": ["h1"]}},
               "accessories": {"db": {"image": "postgres:16", "hosts": ["h2"]}}}),
    );
    assert_eq!(plan::images_needed(&only_acc, &hs)["h2"], BTreeSet::from(["postgres:16".to_string()]));
    let p = plan_of(&only_acc, &hs, &empty(&hs));
    let pulls: Vec<(String, String)> = p
        .actions()
        .filter_map(|a| match a {
            Action::Pull { host, image } => Some((host.clone(), image.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(pulls, [("h2".to_string(), pin("postgres:16")), ("h1".to_string(), pin("shop:1"))]);
}

/// Containers that look like ours by name but are not ours by label.
fn impostors(names: &[String]) -> Vec<berth::plan::ObservedContainer> {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let m = labels::MANAGED_BY;
        out.push(container(&format!("x{i}a"), n, &[], ContainerState::Running));
        out.push(container(
            &format!("x{i}b"),
            &format!("{n}-b"),
            &[(m, "berth"), (labels::APP, "shop"), (labels::NAMESPACE, "staging"), (labels::ROLE, "web")],
            ContainerState::Exited,
        ));
        out.push(container(
            &format!("x{i}c"),
            &format!("{n}-c"),
            &[(m, "berth"), (labels::APP, "blog"), (labels::NAMESPACE, "production"), (labels::ROLE, "web")],
            ContainerState::Running,
        ));
        out.push(container(
            &format!("x{i}d"),
            &format!("{n}-d"),
            &[(m, "someone-else"), (labels::APP, "shop"), (labels::NAMESPACE, "production"), (labels::ROLE, "web")],
            ContainerState::Running,
        ));
        out.push(container(
            &format!("x{i}e"),
            &format!("{n}-e"),
            &[(labels::APP, "shop"), (labels::NAMESPACE, "production"), (labels::ROLE, "web")],
            ContainerState::Running,
        ));
    }
    out
}

#[test]
fn foreign_containers_are_never_touched_even_with_matching_names() {
    let hs = hosts(&ALL);
    let mut obs = empty(&hs);
    converge(&shop(), &hs, &mut obs);
    // Impostors named like today's containers and like a stale web container, on every host.
    let mut names: Vec<String> = obs.values().flat_map(|o| o.containers.iter().map(|c| c.name.clone())).collect();
    names.push("shop-production-web-deadbeef".into());
    for o in obs.values_mut() {
        // Same-named impostors of today's containers cannot coexist with them in Docker, so rename
        // those by suffix; the stale name is taken verbatim.
        let mut imp = impostors(&names);
        for c in &mut imp {
            if o.containers.iter().any(|mine| mine.name == c.name) {
                c.name.push_str("-x");
            }
        }
        o.containers.extend(imp);
        if o.networks.is_empty() {
            o.networks.push(network("berth-shop-production", BTreeMap::new()));
        }
        o.networks.push(network("berth-shop-staging", labels::network_labels("shop", "staging")));
    }
    let foreign: BTreeSet<String> = obs
        .values()
        .flat_map(|o| o.containers.iter().filter(|c| c.id.starts_with('x')).map(|c| c.id.clone()))
        .collect();

    let mut changed = shop();
    changed.spec.env.insert("NEW".into(), "1".into());
    changed.spec.roles.remove("worker");
    let mut deleted = shop();
    deleted.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
    for (app, own_networks_removed) in [(shop(), 0), (changed, 0), (deleted, 3)] {
        let p = plan_of(&app, &hs, &obs);
        for (_, id) in targets(&p) {
            assert!(!foreign.contains(&id), "{id} touched by\n{p}");
        }
        // The unlabelled same-named network on h4 is not ours; the staging ones belong to staging.
        assert_eq!(count(&p, |a| matches!(a, Action::RemoveNetwork { .. })), own_networks_removed);
        assert_eq!(count(&p, |a| a.host() == "h4"), 0);
        let mut after = obs.clone();
        plan::simulate(&p, &mut after);
        for h in &ALL {
            let before: Vec<_> = obs[*h].containers.iter().filter(|c| foreign.contains(&c.id)).collect();
            let now: Vec<_> = after[*h].containers.iter().filter(|c| foreign.contains(&c.id)).collect();
            assert_eq!(before, now);
        }
    }
}

#[test]
fn deletion_prunes_everything_and_removes_networks() {
    let hs = hosts(&ALL);
    let mut obs = empty(&hs);
    converge(&shop(), &hs, &mut obs);
    let stranger = container("s1", "postgres", &[], ContainerState::Running);
    obs.get_mut("h3").unwrap().containers.push(stranger);

    let mut app = shop();
    app.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
    assert!(plan::desired(&app, &hs, &images_for(&app)).unwrap().is_empty());
    assert!(plan::images_needed(&app, &hs).is_empty());
    let p = plan_of(&app, &hs, &obs);
    assert!(p.accessories.is_empty() && p.roles.is_empty());
    assert_eq!(count(&p, |a| matches!(a, Action::Remove { .. })), 5);
    assert_eq!(count(&p, |a| matches!(a, Action::Stop { .. })), 5);
    assert_eq!(count(&p, |a| matches!(a, Action::RemoveNetwork { .. })), 3);
    // Per host, containers go before the network.
    let h1: Vec<&str> = p.prune.iter().filter(|a| a.host() == "h1").map(|a| a.verb()).collect();
    assert_eq!(h1.last(), Some(&"remove-network"));

    plan::simulate(&p, &mut obs);
    assert!(plan_of(&app, &hs, &obs).is_empty());
    let left: Vec<&str> = obs.values().flat_map(|o| o.containers.iter().map(|c| c.id.as_str())).collect();
    assert_eq!(left, ["s1"]);
}

fn wide(max_unavailable: IntOrPercent) -> berth::spec::App {
    let mut a = app("shop", "production", json!({"image": "shop:1", "roles": {"web": {"hosts": ALL}}}));
    a.spec.rollout.max_unavailable = max_unavailable;
    a
}

fn batch_hosts(p: &berth::plan::Plan) -> Vec<Vec<String>> {
    p.roles[0]
        .batches
        .iter()
        .map(|b| b.iter().filter(|a| a.verb() == "replace").map(|a| a.host().to_string()).collect())
        .filter(|b: &Vec<String>| !b.is_empty())
        .collect()
}

#[test]
fn replacements_are_batched_by_max_unavailable() {
    let hs = hosts(&ALL);
    for (mu, expected) in [
        (IntOrPercent::Int(1), vec![vec!["h1"], vec!["h2"], vec!["h3"], vec!["h4"]]),
        (IntOrPercent::Int(2), vec![vec!["h1", "h2"], vec!["h3", "h4"]]),
        (IntOrPercent::Percent("50%".into()), vec![vec!["h1", "h2"], vec!["h3", "h4"]]),
        (IntOrPercent::Percent("75%".into()), vec![vec!["h1", "h2", "h3"], vec!["h4"]]),
    ] {
        let mut obs = empty(&hs);
        converge(&wide(mu.clone()), &hs, &mut obs);
        let mut next = wide(mu.clone());
        next.spec.env.insert("V".into(), "2".into());
        let p = plan_of(&next, &hs, &obs);
        assert_eq!(batch_hosts(&p), expected, "{mu:?}");
        // Pulls come first, all at once, so each batch is down only for stop → start.
        assert!(p.roles[0].batches[0].iter().all(|a| a.verb() == "pull"));
        assert_eq!(p.roles[0].batches[0].len(), 4);
    }
}

#[test]
fn creates_and_starts_are_not_limited_by_max_unavailable() {
    let hs = hosts(&ALL);
    let mut obs = empty(&hs);
    converge(&wide(IntOrPercent::Int(1)), &hs, &mut obs);
    // h1 and h2 lost their containers, h3 is stopped; h4 is current.
    obs.get_mut("h1").unwrap().containers.clear();
    obs.get_mut("h2").unwrap().containers.clear();
    obs.get_mut("h3").unwrap().containers[0].state = ContainerState::Exited;
    let p = plan_of(&wide(IntOrPercent::Int(1)), &hs, &obs);
    assert_eq!(p.roles[0].batches.len(), 1);
    let b: Vec<String> = p.roles[0].batches[0].iter().map(|a| format!("{} {}", a.verb(), a.host())).collect();
    assert_eq!(b, ["pull h1", "create h1", "pull h2", "create h2", "start h3"]);
}

#[test]
fn unreachable_hosts_get_no_actions_and_are_reported() {
    let hs = hosts(&ALL);
    let mut obs = empty(&hs);
    obs.get_mut("h3").unwrap().reachable = false;
    obs.remove("h4");
    let p = plan_of(&shop(), &hs, &obs);
    assert_eq!(p.unreachable, ["h3", "h4"]);
    assert!(p.actions().all(|a| a.host() != "h3" && a.host() != "h4"));
    // web still needs its accessories, including db on h3, which nobody can see right now.
    let web = p.roles.iter().find(|s| s.role == "web").unwrap();
    assert!(web.waits_for.iter().any(|(h, _)| h == "h3"));

    // Deletion while h3 is down: nothing is done there (it is not known to be empty).
    let mut obs = empty(&hs);
    converge(&shop(), &hs, &mut obs);
    obs.get_mut("h3").unwrap().reachable = false;
    let mut del = shop();
    del.metadata.deletion_timestamp = Some("now".into());
    let p = plan_of(&del, &hs, &obs);
    assert!(p.actions().all(|a| a.host() != "h3"));
    assert_eq!(p.unreachable, ["h3"]);
    assert!(!p.is_empty());
}

#[test]
fn roles_wait_for_their_accessories() {
    let (app, hs) = (shop(), hosts(&ALL));
    let want = plan::desired(&app, &hs, &images_for(&app)).unwrap();
    let name_of = |acc: &str| {
        want.iter().find(|d| d.component == Component::Accessory(acc.into())).map(|d| d.name.clone()).unwrap()
    };
    let p = plan_of(&app, &hs, &empty(&hs));
    let web = p.roles.iter().find(|s| s.role == "web").unwrap();
    let worker = p.roles.iter().find(|s| s.role == "worker").unwrap();
    // web has no dependsOn: every accessory, in name order.
    assert_eq!(web.waits_for, [("h1".to_string(), name_of("cache")), ("h3".to_string(), name_of("db"))]);
    // worker depends on db only.
    assert_eq!(worker.waits_for, [("h3".to_string(), name_of("db"))]);
    // Phases: accessories are created before any role action.
    assert_eq!(p.accessories.iter().filter(|a| a.verb() == "create").count(), 2);

    let mut app = shop();
    app.spec.roles.get_mut("worker").unwrap().depends_on = Some(vec![]);
    let p = plan_of(&app, &hs, &empty(&hs));
    assert!(p.roles.iter().find(|s| s.role == "worker").unwrap().waits_for.is_empty());
}

#[test]
fn crashed_rollout_leftovers_keep_the_current_one() {
    let hs = hosts(&["h1"]);
    let a = app("shop", "production", json!({"image": "shop:1", "roles": {"web": {"hosts": ["h1"]}}}));
    let want = plan::desired(&a, &hs, &images_for(&a)).unwrap();
    let mut obs = empty(&hs);
    let h1 = obs.get_mut("h1").unwrap();
    let mut current = managed("new", "shop", "production", "web", &want[0].hash, ContainerState::Running);
    current.created = 5;
    h1.containers.push(current);
    h1.containers.push(managed("old", "shop", "production", "web", "aaaaaaaaaaaa", ContainerState::Exited));
    h1.containers.push(managed("older", "shop", "production", "web", "bbbbbbbbbbbb", ContainerState::Running));
    h1.networks.push(network("berth-shop-production", labels::network_labels("shop", "production")));
    let p = plan_of(&a, &hs, &obs);
    assert!(p.roles.is_empty());
    assert_eq!(verbs(&p), ["remove h1", "stop h1", "remove h1"]);
    assert_eq!(targets(&p).iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(), ["old", "older", "older"]);

    // Without a current one: replace the running (then newest) one, prune the rest.
    let mut obs = empty(&hs);
    let h1 = obs.get_mut("h1").unwrap();
    let mut newer_stopped = managed("c", "shop", "production", "web", "cccccccccccc", ContainerState::Exited);
    newer_stopped.created = 9;
    h1.containers.push(newer_stopped);
    h1.containers.push(managed("d", "shop", "production", "web", "dddddddddddd", ContainerState::Running));
    let p = plan_of(&a, &hs, &obs);
    assert!(matches!(&p.roles[0].batches[1][0], Action::Replace { old_id, .. } if old_id == "d"));
    assert_eq!(targets(&p).last().unwrap().1, "c");
}

#[test]
fn errors_name_what_to_fix() {
    let hs = hosts(&["h1"]);
    let a = shop();
    let err = plan::desired(&a, &hosts(&ALL), &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, PlanError::UnresolvedImage { .. }));
    let err = plan::desired(&a, &hs, &images_for(&a)).unwrap_err();
    assert_eq!(err.to_string(), "accessory/db lists unknown host \"h3\"");
    let mut bad = shop();
    bad.spec.roles.get_mut("worker").unwrap().depends_on = Some(vec!["queue".into()]);
    let err = plan::plan(&bad, &hosts(&ALL), &images_for(&bad), &empty(&hosts(&ALL))).unwrap_err();
    assert_eq!(err, PlanError::UnknownAccessory { role: "worker".into(), accessory: "queue".into() });
    let mut bad = shop();
    bad.spec.roles.get_mut("web").unwrap().ports = vec!["80".into()];
    let err = plan::desired(&bad, &hosts(&ALL), &images_for(&bad)).unwrap_err();
    assert!(err.to_string().starts_with("role/web: invalid ports:"), "{err}");
}

#[test]
fn plans_never_show_secret_values() {
    let hs = hosts(&ALL);
    let p = plan_of(&shop(), &hs, &empty(&hs));
    let json = serde_json::to_string(&p).unwrap();
    let debug = format!("{p:?}");
    let table = p.to_string();
    for out in [&json, &debug, &table] {
        assert!(!out.contains("s3cret"), "secret leaked in {out}");
    }
    assert!(json.contains("\"DATABASE_URL\":\"***\""));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["accessories"][0]["action"], "create-network");
    assert_eq!(v["accessories"][1]["action"], "pull");
    assert!(table.contains("create"));
}

#[test]
fn removing_container_is_waited_for() {
    let hs = hosts(&["h1"]);
    let a = app("shop", "production", json!({"image": "shop:1", "roles": {"web": {"hosts": ["h1"]}}}));
    let mut obs = empty(&hs);
    converge(&a, &hs, &mut obs);
    obs.get_mut("h1").unwrap().containers[0].state = ContainerState::Removing;
    assert!(plan_of(&a, &hs, &obs).is_empty(), "no create under a name Docker is still removing");
}

/// `web` on h1–h4 where h1 and h3 share a `hostEnv`, h2 has its own and h4 none.
fn tagged(h2_tag: &str) -> berth::spec::App {
    app(
        "shop",
        "production",
        json!({
            "image": "registry.local/shop:v1",
            "env": {"MODE": "prod"},
            "roles": {"web": {"hosts": ["h4", "h3", "h2", "h1"], "env": {"TAG": "none"},
                "hostEnv": {"h1": {"TAG": "a"}, "h3": {"TAG": "a"}, "h2": {"TAG": h2_tag, "MODE": "canary"},
                            "h4": {"TAG": "none"}}}}
        }),
    )
}

#[test]
fn host_env_gives_one_template_per_env_and_hosts_sharing_one_share_it() {
    let (a, hs) = (tagged("b"), hosts(&ALL));
    let desired = plan::desired_state(&a, &hs, &images_for(&a)).unwrap();
    let groups: Vec<(Vec<String>, BTreeMap<String, String>)> =
        desired.templates().map(|(t, on)| (on.to_vec(), t.env.expose().clone())).collect();
    let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(
        groups,
        vec![
            (vec!["h1".to_string(), "h3".to_string()], env(&[("MODE", "prod"), ("TAG", "a")])),
            (vec!["h2".to_string()], env(&[("MODE", "canary"), ("TAG", "b")])),
            // h4's hostEnv equals the role's env: no template of its own.
            (vec!["h4".to_string()], env(&[("MODE", "prod"), ("TAG", "none")])),
        ]
    );
    let names: BTreeSet<&str> = desired.templates().map(|(t, _)| t.name.as_str()).collect();
    assert_eq!(names.len(), 3, "each env its own name and hash");

    // Without hostEnv the role has one template, with the hash the h4 group has.
    let mut plain = a.clone();
    plain.spec.roles.get_mut("web").unwrap().host_env.clear();
    let plain = plan::desired_state(&plain, &hs, &images_for(&plain)).unwrap();
    let only: Vec<_> = plain.templates().collect();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].1, ALL);
    assert_eq!(only[0].0.hash, desired.templates().nth(2).unwrap().0.hash);
}

#[test]
fn a_changed_host_env_rolls_only_that_host_and_roles_roll_in_host_order() {
    let hs = hosts(&ALL);
    let mut obs = empty(&hs);
    converge(&tagged("b"), &hs, &mut obs);
    assert!(plan_of(&tagged("b"), &hs, &obs).is_empty());
    let p = plan_of(&tagged("c"), &hs, &obs);
    let replaced: Vec<&str> =
        p.roles[0].batches.iter().flatten().filter(|a| matches!(a, Action::Replace { .. })).map(|a| a.host()).collect();
    assert_eq!(replaced, ["h2"], "{p}");

    // Every host's env changes: replaces come one host at a time, in name order, across templates.
    let mut all = tagged("b");
    all.spec.env.insert("MODE".into(), berth::spec::EnvValue::Plain("next".into()));
    all.spec.roles.get_mut("web").unwrap().host_env.get_mut("h2").unwrap().remove("MODE");
    let p = plan_of(&all, &hs, &obs);
    let hosts: Vec<Vec<String>> = batch_hosts(&p);
    assert_eq!(hosts, [["h1"], ["h2"], ["h3"], ["h4"]].map(|b| b.map(String::from).to_vec()).to_vec());
}

#[test]
fn an_accessory_placed_by_roles_runs_on_every_host_of_those_roles() {
    let hs = hosts(&ALL);
    let a = app(
        "shop",
        "production",
        json!({
            "image": "registry.local/shop:v1",
            "roles": {"web": {"hosts": ["h1", "h2"]}, "jobs": {"hosts": ["h4"]}},
            "accessories": {"agent": {"image": "datadog/agent:7", "roles": ["web"], "hosts": ["h3", "h2"]}}
        }),
    );
    let desired = plan::desired(&a, &hs, &images_for(&a)).unwrap();
    let agent: Vec<&str> = desired
        .iter()
        .filter(|d| d.component == Component::Accessory("agent".into()))
        .map(|d| d.host.as_str())
        .collect();
    assert_eq!(agent, ["h1", "h2", "h3"]);
    let needed = plan::images_needed(&a, &hs);
    assert!(needed["h3"].contains("datadog/agent:7") && !needed["h3"].contains("registry.local/shop:v1"));
    assert!(!needed["h4"].contains("datadog/agent:7"));

    // The role grows: so does the accessory, created before the role's container there.
    let mut obs = empty(&hs);
    converge(&a, &hs, &mut obs);
    let mut grown = a.clone();
    grown.spec.roles.get_mut("web").unwrap().hosts.push("h4".into());
    let p = plan_of(&grown, &hs, &obs);
    let created = |actions: &[Action]| -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { host, container } => Some(format!("{}@{host}", container.component)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(created(&p.accessories), ["accessory/agent@h4"]);
    assert_eq!(created(&p.roles[0].batches[0]), ["role/web@h4"]);
}

#[test]
fn the_new_fields_reach_the_template_and_leave_other_hashes_alone() {
    let hs = hosts(&ALL);
    let base = shop();
    let hashes = |a: &berth::spec::App| -> BTreeMap<String, String> {
        let desired = plan::desired(a, &hs, &images_for(a)).unwrap();
        desired.iter().map(|d| (format!("{}@{}", d.component, d.host), d.hash.clone())).collect()
    };
    let before = hashes(&base);
    // Empty sections are no change at all.
    let mut empty_sections = base.clone();
    empty_sections.spec.roles.get_mut("web").unwrap().options = Some(Default::default());
    empty_sections.spec.accessories.get_mut("db").unwrap().logging = Some(Default::default());
    assert_eq!(hashes(&empty_sections), before);

    let mut a = base.clone();
    a.spec.logging =
        Some(serde_json::from_value(json!({"driver": "json-file", "options": {"max-size": "10m"}})).unwrap());
    let worker = a.spec.roles.get_mut("worker").unwrap();
    worker.logging = Some(serde_json::from_value(json!({"options": {"max-file": "3"}})).unwrap());
    worker.readiness_delay = Some("7s".into());
    worker.options = Some(
        serde_json::from_value(json!({"addHosts": ["db.internal:10.0.0.5"], "capAdd": ["net_admin"],
            "devices": ["/dev/fuse"], "ulimits": {"nofile": "1024:2048"}, "shmSize": "64m", "user": "1000:1000",
            "workdir": "/app", "network": "host"}))
        .unwrap(),
    );
    a.spec.accessories.get_mut("db").unwrap().directories =
        vec!["data:/var/lib/mysql".into(), "conf:/etc/my:ro".into()];
    let after = hashes(&a);
    for (k, h) in &after {
        assert_ne!(&before[k], h, "{k}: the App's logging reaches every container");
    }
    let desired = plan::desired(&a, &hs, &images_for(&a)).unwrap();
    let worker = desired.iter().find(|d| d.component == Component::Role("worker".into())).unwrap();
    assert_eq!(worker.readiness_delay, Some(std::time::Duration::from_secs(7)));
    let logging = worker.logging.as_ref().unwrap();
    assert_eq!(logging.driver.as_deref(), Some("json-file"));
    assert_eq!(logging.options.len(), 2, "the App's options and the role's own");
    assert!(worker.options.host_network);
    assert_eq!(worker.options.cap_add, ["NET_ADMIN"]);
    assert_eq!(worker.options.extra_hosts[0].to_string(), "db.internal:10.0.0.5");
    let db = desired.iter().find(|d| d.component == Component::Accessory("db".into())).unwrap();
    let binds: Vec<String> = db.directories.iter().map(ToString::to_string).collect();
    assert_eq!(
        binds,
        ["/var/lib/berth/shop-production/db/data:/var/lib/mysql", "/var/lib/berth/shop-production/db/conf:/etc/my:ro"]
    );
    // The readiness delay, the options and the directories touch only their own component.
    let mut only_worker = base.clone();
    only_worker.spec.roles.get_mut("worker").unwrap().readiness_delay = Some("7s".into());
    let changed: Vec<String> =
        hashes(&only_worker).into_iter().filter(|(k, h)| &before[k] != h).map(|(k, _)| k).collect();
    assert_eq!(changed, ["role/worker@h3"]);
}
