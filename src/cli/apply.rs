//! `berth apply`: validate, check against the store, and write the batch in one transaction — with
//! `--set NAME`, as an apply set whose inventory is written in that same transaction, and with
//! `--prune`, deleting what left the set (Apps marked for deletion, unused Hosts).

use std::collections::BTreeSet;

use super::{commands, connect, readable, ApplyArgs, ExitCode, Failure, GlobalArgs};
use crate::spec::applyset::{self, Inventory, ResourceRef};
use crate::spec::{self, app_uses_host, App, Resource};
use crate::store::{now_rfc3339, SetWrite, Store};

/// What an apply of a set writes beside its resources.
struct SetPlan {
    inventory: Inventory,
    prune: Vec<ResourceRef>,
    released: Vec<Inventory>,
}

pub async fn apply(global: &GlobalArgs, a: ApplyArgs) -> Result<(), Failure> {
    if let Some(name) = &a.set {
        spec::check_dns_label(name).map_err(|e| Failure::new(ExitCode::InvalidInput, format!("--set {name}: {e}")))?;
    }
    let loaded = spec::load_paths(&a.files)?;
    let store = connect(global).await?;
    let mut resources: Vec<Resource> = loaded.into_iter().map(|l| l.resource).collect();
    if let Some(cause) = &a.cause {
        for r in resources.iter_mut() {
            if let Resource::App(app) = r {
                app.metadata.annotations.insert(spec::CHANGE_CAUSE_ANNOTATION.to_string(), cause.clone());
            }
        }
    }
    seal_secrets(&store, &mut resources).await?;
    let ordered: Vec<Resource> = hosts_first(&resources).into_iter().cloned().collect();
    store
        .with_apply_lock(|| async {
            let set = match &a.set {
                Some(name) => Some(plan_set(&store, name, &ordered, &a).await?),
                None => None,
            };
            let pruned: &[ResourceRef] = set.as_ref().map_or(&[], |s| &s.prune);
            check_against_store(&store, &ordered, pruned).await?;
            let write =
                set.as_ref().map(|s| SetWrite { inventory: &s.inventory, prune: &s.prune, released: &s.released });
            // One etcd transaction for the whole batch and its set: a refusal or a failure writes nothing.
            let (outcomes, pruned) = store.apply_set(&ordered, write.as_ref(), a.dry_run).await?;
            let suffix = if a.dry_run { " (dry run)" } else { "" };
            for (r, outcome) in ordered.iter().zip(outcomes) {
                println!("{} {outcome}{suffix}", r.display_name());
            }
            for (r, outcome) in pruned {
                println!("{r} {outcome}{suffix}");
            }
            Ok::<(), Failure>(())
        })
        .await?;
    if a.wait && !a.dry_run {
        for r in &resources {
            if let Resource::App(app) = r {
                commands::wait_ready(&store, &app.metadata.name, app.namespace(), a.timeout).await?;
            }
        }
    }
    Ok(())
}

/// The set's new inventory and what it prunes and adopts, or why the apply is refused. Without
/// `--prune` nothing is pruned and the inventory keeps what it listed.
async fn plan_set(store: &Store, name: &str, resources: &[Resource], a: &ApplyArgs) -> Result<SetPlan, Failure> {
    let sets = store.list_applysets().await?;
    let previous = sets.iter().find(|s| s.name == name);
    let others: Vec<Inventory> = sets.iter().filter(|s| s.name != name).cloned().collect();
    let applied: BTreeSet<ResourceRef> = resources.iter().map(ResourceRef::of).collect();
    let (guarded_previous, allow) = if a.prune { (previous, a.allow_mass_prune) } else { (None, true) };
    let change = applyset::plan_set(name, &applied, guarded_previous, &others, allow, a.force_adopt)
        .map_err(|e| Failure::new(ExitCode::Guarded, e.to_string()))?;
    let mut listed = applied.clone();
    if !a.prune {
        listed.extend(previous.into_iter().flat_map(|p| p.resources.iter().cloned()));
    }
    let released = others
        .iter()
        .filter(|o| change.adopt.iter().any(|(_, from)| from == &o.name))
        .map(|o| Inventory { resources: o.resources.difference(&applied).cloned().collect(), ..o.clone() })
        .collect();
    check_hosts_unused(store, resources, &change.prune).await?;
    let inventory = Inventory { name: name.to_string(), resources: listed, applied_at: now_rfc3339() };
    Ok(SetPlan { inventory, prune: change.prune, released })
}

/// A Host leaves with its set only when no App that stays (stored, or in this batch) uses it.
async fn check_hosts_unused(store: &Store, batch: &[Resource], prune: &[ResourceRef]) -> Result<(), Failure> {
    let hosts: Vec<&str> = prune
        .iter()
        .filter_map(|r| match r {
            ResourceRef::Host { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let secrets: Vec<(&str, &str)> = prune
        .iter()
        .filter_map(|r| match r {
            ResourceRef::Secret { namespace, name } => Some((namespace.as_str(), name.as_str())),
            _ => None,
        })
        .collect();
    if hosts.is_empty() && secrets.is_empty() {
        return Ok(());
    }
    let staying = apps_after(readable(store.list_apps(None).await?), batch, prune);
    let mut refusals = Vec::new();
    for (ns, secret) in secrets {
        let users: Vec<String> = staying
            .iter()
            .filter(|a| a.namespace() == ns && spec::secrets_used(a).contains(secret))
            .map(|a| format!("app/{} -n {}", a.metadata.name, a.namespace()))
            .collect();
        if !users.is_empty() {
            refusals.push(format!("secret/{secret} -n {ns} left the set but is still used by {}", users.join(", ")));
        }
    }
    for host in hosts {
        let users: Vec<String> = staying
            .iter()
            .filter(|a| a.metadata.deletion_timestamp.is_none() && app_uses_host(a, host))
            .map(|a| format!("app/{} -n {}", a.metadata.name, a.namespace()))
            .collect();
        if !users.is_empty() {
            refusals.push(format!("host/{host} left the set but is still used by {}", users.join(", ")));
        }
    }
    if refusals.is_empty() {
        Ok(())
    } else {
        let why = format!("{}; refused: nothing of the batch was written", refusals.join("; "));
        Err(Failure::new(ExitCode::Guarded, why))
    }
}

/// The Apps the store will hold after this batch: stored ones, replaced by the batch's, without the pruned.
fn apps_after(stored: Vec<App>, batch: &[Resource], prune: &[ResourceRef]) -> Vec<App> {
    let same = |x: &App, ns: &str, name: &str| x.namespace() == ns && x.metadata.name == name;
    let mut apps = stored;
    for r in batch {
        if let Resource::App(a) = r {
            apps.retain(|x| !same(x, a.namespace(), &a.metadata.name));
            apps.push(a.clone());
        }
    }
    for r in prune {
        if let ResourceRef::App { namespace, name } = r {
            apps.retain(|x| !same(x, namespace, name));
        }
    }
    apps
}

/// Hosts and Secrets are written before Apps, so an App never lands before what it names.
fn hosts_first(resources: &[Resource]) -> Vec<&Resource> {
    let first = resources.iter().filter(|r| !matches!(r, Resource::App(_)));
    let apps = resources.iter().filter(|r| matches!(r, Resource::App(_)));
    first.chain(apps).collect()
}

/// Seals every Secret's `stringData` to the operator's published recipients, so etcd never holds
/// a plain value; with none published the apply is refused (nothing written).
async fn seal_secrets(store: &Store, resources: &mut [Resource]) -> Result<(), Failure> {
    if !resources.iter().any(|r| matches!(r, Resource::Secret(s) if !s.string_data.is_empty())) {
        return Ok(());
    }
    let recipients = store.get_recipients().await?;
    if recipients.is_empty() {
        return Err(Failure::new(
            ExitCode::InvalidInput,
            "no sealing recipient is published: start `berth operator --sealing-key FILE` once, or commit the output of `berth seal --recipient age1…` instead of stringData",
        ));
    }
    for r in resources.iter_mut() {
        if let Resource::Secret(s) = r {
            for (key, value) in std::mem::take(&mut s.string_data) {
                let sealed = crate::sealing::seal(&recipients, value.0.as_bytes()).map_err(|e| {
                    Failure::new(ExitCode::InvalidInput, format!("secret/{}: {key}: {e}", s.metadata.name))
                })?;
                s.sealed_data.insert(key, sealed);
            }
        }
    }
    Ok(())
}

/// Cross-resource checks (host names defined, host ports free) against the store plus this batch,
/// all before anything is written, so a bad batch writes nothing.
async fn check_against_store(store: &Store, batch: &[Resource], pruned: &[ResourceRef]) -> Result<(), Failure> {
    let mut hosts = readable(store.list_hosts().await?);
    // What the set prunes is gone for these checks (its ports are free again).
    let mut others = apps_after(readable(store.list_apps(None).await?), &[], pruned);
    for r in batch {
        match r {
            Resource::Host(h) => {
                hosts.retain(|x| x.metadata.name != h.metadata.name);
                hosts.push(h.clone());
            }
            Resource::App(a) => {
                others.retain(|x| !(x.metadata.name == a.metadata.name && x.namespace() == a.namespace()));
                others.push(a.clone());
            }
            Resource::Secret(_) => {}
        }
    }
    let mut errors = Vec::new();
    for r in batch {
        if let Resource::Host(h) = r {
            let twins: Vec<String> = spec::endpoint_twins(h, &hosts).iter().map(|n| format!("host/{n}")).collect();
            if !twins.is_empty() {
                errors.push(format!(
                    "{}: spec.endpoint: {} is already the endpoint of {}",
                    r.display_name(),
                    h.spec.endpoint,
                    twins.join(", ")
                ));
            }
        }
        if let Resource::App(app) = r {
            let rest: Vec<_> = others
                .iter()
                .filter(|x| !(x.metadata.name == app.metadata.name && x.namespace() == app.namespace()))
                .cloned()
                .collect();
            for (path, message) in spec::validate_against_store(app, &hosts, &rest) {
                errors.push(format!("{}: {path}: {message}", r.display_name()));
            }
        }
    }
    // A warning, not a refusal: the apps beyond a full pool report it in their status.
    for warning in spec::pool_warnings(&hosts, &others).iter().filter(|_| errors.is_empty()) {
        eprintln!("warning: {warning}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(ExitCode::InvalidInput, errors.join("\n")))
    }
}
