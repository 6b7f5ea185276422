//! Property tests: for random apps and random observed states — stale hashes, stopped and
//! half-removed containers, leftovers of crashed rollouts, and containers of other apps, other
//! namespaces or no owner at all, on partly unreachable hosts —
//! (a) applying a plan and planning again finds nothing to do, and
//! (b) no action ever touches anything that is not this app's, in this namespace, made by berth.

mod plan_support;

use std::collections::{BTreeMap, BTreeSet};

use berth::plan::{self, labels, Action, Component, ContainerState, Health, HostObservation, ObservedContainer};
use berth::spec::App;
use plan_support::*;
use proptest::prelude::*;
use proptest::sample::subsequence;
use serde_json::{json, Map, Value};

const HOSTS: [&str; 4] = ["h1", "h2", "h3", "h4"];
const ROLES: [&str; 3] = ["web", "worker", "cron"];
const ACCESSORIES: [&str; 2] = ["db", "cache"];
const NAMESPACES: [&str; 2] = ["prod", "staging"];
const STATES: [ContainerState; 7] = [
    ContainerState::Created,
    ContainerState::Running,
    ContainerState::Restarting,
    ContainerState::Paused,
    ContainerState::Exited,
    ContainerState::Dead,
    ContainerState::Removing,
];

fn hosts_strategy() -> impl Strategy<Value = Vec<&'static str>> {
    subsequence(HOSTS.to_vec(), 0..=4)
}

fn env_strategy() -> impl Strategy<Value = Value> {
    (0..3u8, 0..3u8).prop_map(|(a, b)| {
        let mut m = Map::new();
        if a > 0 {
            m.insert("A".into(), json!(a.to_string()));
        }
        if b > 0 {
            m.insert("B".into(), json!(b.to_string()));
        }
        Value::Object(m)
    })
}

fn role_strategy() -> impl Strategy<Value = Value> {
    (
        hosts_strategy(),
        env_strategy(),
        prop::option::of(prop::sample::select(vec!["bin/web", "bin/worker"])),
        prop::option::of(subsequence(ACCESSORIES.to_vec(), 0..=2)),
        any::<bool>(),
        prop::collection::vec(env_strategy(), HOSTS.len()),
    )
        .prop_map(|(hosts, env, cmd, deps, health, per_host)| {
            let mut r = json!({"hosts": hosts, "env": env});
            // Env per host (some empty, some equal to another host's): templates per env group.
            let host_env: Map<String, Value> =
                hosts.iter().zip(per_host).map(|(h, e)| (h.to_string(), e)).filter(|(_, e)| e != &json!({})).collect();
            if !host_env.is_empty() {
                r["hostEnv"] = Value::Object(host_env);
            }
            if let Some(c) = cmd {
                r["cmd"] = json!(c);
            }
            if let Some(d) = deps {
                r["dependsOn"] = json!(d);
            }
            if health {
                r["healthcheck"] = json!({"cmd": "true", "interval": "1s"});
            }
            r
        })
}

fn accessory_strategy() -> impl Strategy<Value = Value> {
    (hosts_strategy(), prop::sample::select(vec!["postgres:15", "postgres:16"]), env_strategy(), any::<bool>())
        .prop_map(|(hosts, image, env, health)| {
            let mut a = json!({"image": image, "hosts": hosts, "env": env, "volumes": ["data:/data"]});
            if health {
                a["healthcheck"] = json!({"cmd": ["check"]});
            }
            a
        })
}

/// A random App `shop` in a random namespace; `dependsOn` only names accessories that exist.
fn app_strategy() -> impl Strategy<Value = App> {
    (
        prop::collection::btree_map(prop::sample::select(ROLES.to_vec()), role_strategy(), 0..=3),
        prop::collection::btree_map(prop::sample::select(ACCESSORIES.to_vec()), accessory_strategy(), 0..=2),
        prop::sample::select(vec!["shop:1", "shop:2"]),
        prop::sample::select(NAMESPACES.to_vec()),
        1..=3u32,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(mut roles, accessories, image, ns, max_unavailable, deleted)| {
            for r in roles.values_mut() {
                if let Some(deps) = r.get_mut("dependsOn") {
                    let kept: Vec<Value> = deps
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|d| accessories.contains_key(d.as_str().unwrap()))
                        .cloned()
                        .collect();
                    *deps = Value::Array(kept);
                }
            }
            let mut a = app(
                "shop",
                ns,
                json!({"image": image, "roles": roles, "accessories": accessories,
                       "rollout": {"maxUnavailable": max_unavailable}}),
            );
            if deleted {
                a.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
            }
            a
        })
}

/// Whose a random extra container is.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// This app: a leftover with a stale hash, or (when `current`) the desired hash.
    Ours {
        current: bool,
    },
    OtherApp,
    OtherNamespace,
    Unmanaged,
    ManagedBySomeoneElse,
    NoAppLabel,
}

#[derive(Debug, Clone)]
struct Extra {
    host: usize,
    owner: Owner,
    role: bool,
    component: usize,
    hash: u64,
    state: usize,
    created: i64,
    health: Option<Health>,
}

fn extra_strategy() -> impl Strategy<Value = Extra> {
    let owner = prop_oneof![
        3 => any::<bool>().prop_map(|current| Owner::Ours { current }),
        1 => Just(Owner::OtherApp),
        1 => Just(Owner::OtherNamespace),
        1 => Just(Owner::Unmanaged),
        1 => Just(Owner::ManagedBySomeoneElse),
        1 => Just(Owner::NoAppLabel),
    ];
    let health = prop::option::of(prop::sample::select(vec![Health::Starting, Health::Healthy, Health::Unhealthy]));
    (0..4usize, owner, any::<bool>(), 0..4usize, any::<u64>(), 0..STATES.len(), 0..10i64, health).prop_map(
        |(host, owner, role, component, hash, state, created, health)| Extra {
            host,
            owner,
            role,
            component,
            hash,
            state,
            created,
            health,
        },
    )
}

/// Random state: a converge of `previous` (possibly another namespace), then random damage
/// (stops, removals, lost networks), random extra containers, and random unreachable hosts.
#[derive(Debug, Clone)]
struct World {
    previous: App,
    damage: Vec<u8>,
    extras: Vec<Extra>,
    lost_networks: Vec<bool>,
    reachable: Vec<bool>,
    foreign_networks: Vec<bool>,
}

fn world_strategy() -> impl Strategy<Value = World> {
    (
        app_strategy(),
        prop::collection::vec(any::<u8>(), 0..16),
        prop::collection::vec(extra_strategy(), 0..12),
        prop::collection::vec(prop::bool::weighted(0.2), 4),
        prop::collection::vec(prop::bool::weighted(0.85), 4),
        prop::collection::vec(any::<bool>(), 4),
    )
        .prop_map(|(previous, damage, extras, lost_networks, reachable, foreign_networks)| World {
            previous,
            damage,
            extras,
            lost_networks,
            reachable,
            foreign_networks,
        })
}

fn build_observed(world: &World, current: &App) -> BTreeMap<String, HostObservation> {
    let hs = hosts(&HOSTS);
    let mut obs = empty(&hs);
    let mut previous = world.previous.clone();
    previous.metadata.deletion_timestamp = None;
    converge(&previous, &hs, &mut obs);

    // Damage: walk all containers, each byte decides the fate of one.
    let mut i = 0;
    for h in HOSTS {
        let o = obs.get_mut(h).unwrap();
        o.containers.retain_mut(|c| {
            let op = world.damage.get(i).copied().unwrap_or(0) % 8;
            i += 1;
            match op {
                4 => c.state = ContainerState::Exited,
                5 => c.state = ContainerState::Created,
                6 => c.state = ContainerState::Dead,
                7 => return false,
                _ => {}
            }
            true
        });
    }

    let (app, ns) = (current.metadata.name.as_str(), current.namespace());
    let other_ns = if ns == "prod" { "staging" } else { "prod" };
    let want = plan::desired(current, &hs, &images_for(current)).unwrap();
    for (i, e) in world.extras.iter().enumerate() {
        let name = if e.role {
            ROLES.get(e.component).unwrap_or(&"legacy")
        } else {
            ACCESSORIES.get(e.component).unwrap_or(&"old")
        };
        let comp = if e.role { Component::Role(name.to_string()) } else { Component::Accessory(name.to_string()) };
        let stale = format!("{:016x}{:048x}", e.hash, 0);
        let host = HOSTS[e.host];
        let mut labels = match e.owner {
            Owner::Ours { current } => {
                let desired = want.iter().find(|d| d.host == host && d.component == comp).filter(|_| current);
                let hash = desired.map_or(stale.clone(), |d| d.hash.clone());
                labels::container_labels(app, ns, &comp, &hash, &BTreeMap::new())
            }
            Owner::OtherApp => labels::container_labels("blog", ns, &comp, &stale, &BTreeMap::new()),
            Owner::OtherNamespace => labels::container_labels(app, other_ns, &comp, &stale, &BTreeMap::new()),
            Owner::Unmanaged => BTreeMap::new(),
            Owner::ManagedBySomeoneElse | Owner::NoAppLabel => {
                labels::container_labels(app, ns, &comp, &stale, &BTreeMap::new())
            }
        };
        match e.owner {
            Owner::ManagedBySomeoneElse => {
                labels.insert(labels::MANAGED_BY.into(), "compose".into());
            }
            Owner::NoAppLabel => {
                labels.remove(labels::APP);
            }
            _ => {}
        }
        let hash = labels.get(labels::CONFIG_HASH).cloned().unwrap_or(stale);
        // Foreign containers are named exactly like ours would be with their hash: names prove nothing.
        let container_name = format!("{app}-{ns}-{name}-{}", &hash[..8]);
        let o = obs.get_mut(host).unwrap();
        if o.containers.iter().any(|c| c.name == container_name) {
            continue; // Docker keeps names unique per host.
        }
        o.containers.push(ObservedContainer {
            id: format!("extra-{i}"),
            name: container_name,
            labels,
            state: STATES[e.state],
            health: e.health,
            image: "whatever".into(),
            created: e.created,
        });
    }

    let network = labels::network_name(app, ns);
    for (i, h) in HOSTS.iter().enumerate() {
        let o = obs.get_mut(*h).unwrap();
        if world.lost_networks[i] {
            o.networks.clear();
        }
        if world.foreign_networks[i] {
            o.networks.push(network_of(&format!("berth-blog-{ns}"), labels::network_labels("blog", ns)));
            o.networks.push(network_of(&labels::network_name(app, other_ns), labels::network_labels(app, other_ns)));
            if o.networks.iter().all(|n| n.name != network) {
                o.networks.push(network_of(&network, BTreeMap::new()));
            }
        }
        o.reachable = world.reachable[i];
    }
    obs
}

fn network_of(name: &str, labels: BTreeMap<String, String>) -> berth::plan::ObservedNetwork {
    network(name, labels)
}

fn ours(c: &ObservedContainer, app: &App) -> bool {
    labels::belongs_to(&c.labels, &app.metadata.name, app.namespace())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn plan_then_simulate_converges_and_touches_only_ours(current in app_strategy(), world in world_strategy()) {
        let hs = hosts(&HOSTS);
        let obs = build_observed(&world, &current);
        let images = images_for(&current);
        let p = plan::plan(&current, &hs, &images, &obs).unwrap();

        // (b) every existing container or network an action touches is ours, on a host we can see.
        for a in p.actions() {
            let o = &obs[a.host()];
            prop_assert!(o.reachable, "action on unreachable host: {a}");
            if let Some(id) = a.target_id() {
                let c = o.containers.iter().find(|c| c.id == id);
                prop_assert!(c.is_some_and(|c| ours(c, &current)), "{a} targets a foreign or unknown container");
            }
            match a {
                Action::RemoveNetwork { network, .. } => {
                    let n = o.networks.iter().find(|n| &n.name == network).unwrap();
                    prop_assert!(labels::belongs_to(&n.labels, "shop", current.namespace()));
                }
                Action::Create { container: d, .. } | Action::Replace { new: d, .. } => {
                    prop_assert!(o.containers.iter().all(|c| c.name != d.name), "{a}: name taken");
                }
                _ => {}
            }
        }
        let unreachable: Vec<String> =
            HOSTS.iter().filter(|h| !obs[**h].reachable).map(|h| h.to_string()).collect();
        prop_assert_eq!(&p.unreachable, &unreachable);

        // (a) after applying, nothing is left to do.
        let mut after = obs.clone();
        plan::simulate(&p, &mut after);
        let again = plan::plan(&current, &hs, &images, &after).unwrap();
        prop_assert!(again.is_empty(), "first plan:\n{}\nsecond plan:\n{}", p, again);

        // Foreign containers and unreachable hosts are exactly as they were.
        for h in HOSTS {
            let foreign = |o: &HostObservation| -> Vec<ObservedContainer> {
                o.containers.iter().filter(|c| !ours(c, &current)).cloned().collect()
            };
            prop_assert_eq!(foreign(&obs[h]), foreign(&after[h]));
            if !obs[h].reachable {
                prop_assert_eq!(&obs[h], &after[h]);
            }
        }

        // Converged hosts run exactly the desired containers, up (when reachable), and nothing else of ours.
        let want = plan::desired(&current, &hs, &images).unwrap();
        for h in HOSTS.iter().filter(|h| after[**h].reachable) {
            let running: BTreeSet<&str> = after[*h]
                .containers
                .iter()
                .filter(|c| ours(c, &current) && c.state.is_up())
                .filter_map(|c| labels::config_hash_of(&c.labels))
                .collect();
            let wanted: BTreeSet<&str> = want.iter().filter(|d| d.host == *h).map(|d| d.hash.as_str()).collect();
            // A container Docker is still removing may hold a desired name; it is waited for.
            let removing = after[*h].containers.iter().any(|c| ours(c, &current) && c.state == ContainerState::Removing);
            if !removing {
                prop_assert_eq!(running, wanted);
            }
        }
    }

    #[test]
    fn desired_is_deterministic_and_names_are_unique_per_host(current in app_strategy()) {
        let hs = hosts(&HOSTS);
        let images = images_for(&current);
        let a = plan::desired(&current, &hs, &images).unwrap();
        let b = plan::desired(&current.clone(), &hs, &images).unwrap();
        prop_assert_eq!(&a, &b);
        let mut seen = BTreeSet::new();
        for d in &a {
            prop_assert!(seen.insert((d.host.clone(), d.name.clone())));
            prop_assert_eq!(d.labels.get(labels::CONFIG_HASH), Some(&d.hash));
            prop_assert!(labels::belongs_to(&d.labels, "shop", current.namespace()));
        }
    }
}
