//! `berth diff`: for each resource in the files, a unified diff of what is stored against the file
//! (YAML, keys sorted), and with `--prune --set NAME` what the apply would remove — so a pipeline
//! can post it on a merge request. Exit 0 when nothing differs, 1 when something does.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{connect, DiffArgs, ExitCode, Failure, GlobalArgs};
use crate::spec::applyset::{self, ResourceRef};
use crate::spec::{self, Resource, BERTH_ANNOTATION_PREFIX};

pub async fn diff(global: &GlobalArgs, d: DiffArgs) -> Result<(), Failure> {
    // Exit 1 means "differs" here, so bad input gets its own code.
    let loaded = spec::load_paths(&d.files).map_err(|e| Failure::new(ExitCode::DiffInvalidInput, e.to_string()))?;
    let store = connect(global).await?;
    let resources: Vec<Resource> = loaded.into_iter().map(|l| l.resource).collect();
    let mut differs = false;
    for r in &resources {
        if let Resource::Secret(file) = r {
            let stored = store.get_secret(file.namespace(), &file.metadata.name).await?.map(|v| v.value);
            if let Some(line) = secret_changes(file, stored.as_ref()) {
                differs = true;
                println!("{line}");
            }
            continue;
        }
        let (stored, deleting) = match r {
            Resource::App(a) => match store.get_app(a.namespace(), &a.metadata.name).await? {
                Some(s) => (Some(Resource::App(s.value.clone())), s.value.metadata.deletion_timestamp.is_some()),
                None => (None, false),
            },
            Resource::Host(h) => (store.get_host(&h.metadata.name).await?.map(|s| Resource::Host(s.value)), false),
            Resource::Secret(_) => unreachable!("Secrets are compared above"),
        };
        let file = comparable(r, None);
        let name = r.display_name();
        match stored {
            None => {
                differs = true;
                print!("{}", unified("", &file, &format!("{name} (not stored)"), &format!("{name} (file)")));
            }
            Some(s) => {
                let stored = comparable(&s, Some(r));
                if deleting {
                    differs = true;
                    println!("{name} is being deleted: apply refuses it until the deletion ends");
                }
                if stored != file {
                    differs = true;
                    print!("{}", unified(&stored, &file, &format!("{name} (stored)"), &format!("{name} (file)")));
                }
            }
        }
    }
    if d.prune {
        let name = d.set.as_deref().unwrap_or_default();
        let sets = store.list_applysets().await?;
        let previous = sets.iter().find(|s| s.name == name);
        let others: Vec<_> = sets.iter().filter(|s| s.name != name).cloned().collect();
        let applied: BTreeSet<ResourceRef> = resources.iter().map(ResourceRef::of).collect();
        match applyset::plan_set(name, &applied, previous, &others, true, true) {
            Ok(change) => {
                for r in &change.prune {
                    differs = true;
                    println!("{r} would be pruned (it left apply set {name})");
                }
            }
            Err(e) => return Err(Failure::new(ExitCode::Guarded, e.to_string())),
        }
    }
    if differs {
        Err(Failure::differs())
    } else {
        println!("no differences");
        Ok(())
    }
}

/// A resource as the diff shows it: labels, the annotations a user owns, and the spec, as YAML
/// with keys sorted. Of berth's own annotations only those the file sets count, as `apply` keeps
/// the others.
fn comparable(r: &Resource, file: Option<&Resource>) -> String {
    let (meta, spec) = match r {
        Resource::App(a) => (&a.metadata, serde_json::to_value(&a.spec)),
        Resource::Host(h) => (&h.metadata, serde_json::to_value(&h.spec)),
        Resource::Secret(s) => (&s.metadata, serde_json::to_value(s.keys().collect::<Vec<_>>())),
    };
    let file_meta = file.map(|f| match f {
        Resource::App(a) => &a.metadata,
        Resource::Host(h) => &h.metadata,
        Resource::Secret(s) => &s.metadata,
    });
    let annotations: Map<String, Value> = meta
        .annotations
        .iter()
        .filter(|(k, _)| {
            !k.starts_with(BERTH_ANNOTATION_PREFIX) || file_meta.is_none_or(|m| m.annotations.contains_key(*k))
        })
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut metadata = Map::new();
    if !meta.labels.is_empty() {
        metadata.insert("labels".into(), serde_json::to_value(&meta.labels).expect("labels serialize"));
    }
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    let mut doc = Map::new();
    if !metadata.is_empty() {
        doc.insert("metadata".into(), Value::Object(metadata));
    }
    doc.insert("spec".into(), spec.expect("specs serialize"));
    serde_yaml_ng::to_string(&sorted(Value::Object(doc))).expect("values serialize")
}

/// A Secret's keys as `(new)`, `(changed)`, `(unchanged)` or `(removed)` — never a value. A key given
/// as stringData is sealed anew by every apply, so it always counts as changed; a sealed value is
/// unchanged when it is the very same ciphertext. `None` when nothing differs.
fn secret_changes(file: &crate::spec::Secret, stored: Option<&crate::spec::Secret>) -> Option<String> {
    let name = format!("secret/{} -n {}", file.metadata.name, file.namespace());
    let Some(stored) = stored else {
        let keys: Vec<String> = file.keys().map(|k| format!("{k} (new)")).collect();
        return Some(format!("{name} (not stored): {}", keys.join(", ")));
    };
    let mut parts = Vec::new();
    let mut changed = stored.secret_type != file.secret_type;
    for k in file.keys() {
        let same = !file.string_data.contains_key(k) && stored.sealed_data.get(k) == file.sealed_data.get(k);
        changed |= !same;
        parts.push(format!(
            "{k} ({})",
            if !stored.sealed_data.contains_key(k) {
                "new"
            } else if same {
                "unchanged"
            } else {
                "changed"
            }
        ));
    }
    for k in stored.keys().filter(|k| !file.keys().any(|f| f == *k)) {
        changed = true;
        parts.push(format!("{k} (removed)"));
    }
    changed.then(|| format!("{name}: {}", parts.join(", ")))
}

/// The same value with every map's keys in order, so the diff shows changes, not reorderings.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(3).header(old_name, new_name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml: &str) -> Resource {
        spec::parse_str("t.yaml", yaml).unwrap().remove(0)
    }

    const BASE: &str = "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata:\n  name: shop\n";

    #[test]
    fn a_changed_env_value_is_one_line_and_key_order_is_no_change() {
        let stored = app(&format!("{BASE}spec:\n  image: a:1\n  env: {{B: x, A: one}}\n"));
        let file = app(&format!("{BASE}spec:\n  env: {{A: two, B: x}}\n  image: a:1\n"));
        let d = unified(&comparable(&stored, Some(&file)), &comparable(&file, None), "stored", "file");
        assert!(d.contains("-    A: one\n") && d.contains("+    A: two\n"), "{d}");
        assert!(!d.contains("-    B: x"), "{d}");
        let same = app(&format!("{BASE}spec:\n  env: {{B: x, A: one}}\n  image: a:1\n"));
        assert_eq!(comparable(&stored, Some(&same)), comparable(&same, None));
    }

    #[test]
    fn berths_own_annotations_count_only_when_the_file_sets_them() {
        let stored = app(&format!(
            "{BASE}  annotations: {{berth.dev/repin-requested-at: t1, team: web}}\nspec:\n  image: a:1\n"
        ));
        let file = app(&format!("{BASE}  annotations: {{team: web}}\nspec:\n  image: a:1\n"));
        assert_eq!(comparable(&stored, Some(&file)), comparable(&file, None));
    }
}
