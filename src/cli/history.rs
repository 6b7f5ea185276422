//! `berth history` and `berth rollback`: an App's recorded generations, and writing one of them
//! back (its spec and its pins) as a new generation.

use std::collections::BTreeMap;

use super::{commands, connect, output, readable, ExitCode, Failure, GlobalArgs, OutputFormat};
use crate::engine::history::{default_target, Revision};
use crate::engine::images::Pins;
use crate::spec::{self, App, CHANGE_CAUSE_ANNOTATION};
use crate::store::Store;

/// `berth history APP -n NS [--generation N] [-o …]`. Only one generation in yaml/json shows its
/// spec (env values, as `get apps -o yaml` does); every other output leaves the spec out.
pub async fn history(
    global: &GlobalArgs,
    name: &str,
    namespace: &str,
    generation: Option<i64>,
    format: OutputFormat,
) -> Result<(), Failure> {
    let store = connect(global).await?;
    let current = current_generation(&store, name, namespace).await?;
    let history = recorded(&store, name, namespace).await?;
    if let Some(g) = generation {
        let rev = find(&history, g, name, namespace)?;
        match format {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(rev).expect("records serialize")),
            OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(rev).expect("records serialize")),
            OutputFormat::Table => print!("{}", table(std::slice::from_ref(rev), current)),
        }
        return Ok(());
    }
    let summaries: Vec<_> = history.iter().map(Revision::summary).collect();
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&summaries).expect("records serialize")),
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&summaries).expect("records serialize")),
        OutputFormat::Table if history.is_empty() => {
            println!("app/{name} -n {namespace}: no generation recorded yet (the operator records each outcome)")
        }
        OutputFormat::Table => print!("{}", table(&history, current)),
    }
    Ok(())
}

/// `berth rollback APP -n NS [--to-generation N] [--wait]`: the target's spec and pins written back
/// in one transaction, as a new generation that runs exactly the digests it ran then.
pub async fn rollback(
    global: &GlobalArgs,
    name: &str,
    namespace: &str,
    to: Option<i64>,
    wait: Option<std::time::Duration>,
) -> Result<(), Failure> {
    let store = connect(global).await?;
    let current = current_generation(&store, name, namespace).await?;
    let history = recorded(&store, name, namespace).await?;
    let target = match to {
        Some(g) => find(&history, g, name, namespace)?,
        None => default_target(&history, current).ok_or_else(|| {
            Failure::new(
                ExitCode::NotFound,
                format!(
                    "app/{name} -n {namespace} has no Ready generation before generation {current} to roll back to"
                ),
            )
        })?,
    };
    let current_pins: Option<Pins> = store.get_pins(namespace, name).await.unwrap_or(None);
    let cause = format!("rollback to generation {}", target.generation);
    // Checked against the store under the apply lock, as an apply of that spec would be: its hosts
    // must still exist and its host ports be free.
    let written = store
        .with_apply_lock(|| async {
            let hosts = readable(store.list_hosts().await?);
            let others: Vec<_> = readable(store.list_apps(None).await?)
                .into_iter()
                .filter(|a| !(a.metadata.name == name && a.namespace() == namespace))
                .collect();
            if let Some(stored) = store.get_app(namespace, name).await? {
                let candidate = App { spec: target.spec.clone(), ..stored.value };
                if let Some((path, message)) = spec::validate_against_store(&candidate, &hosts, &others).first() {
                    let g = target.generation;
                    return Err(Failure::new(
                        ExitCode::InvalidInput,
                        format!("cannot roll back to generation {g}: {path}: {message}"),
                    ));
                }
            }
            let written = store
                .rewrite_app_with_pins(namespace, name, |stored| {
                    let repin = stored.repin_requested_at().map(str::to_string);
                    let pins = Pins { images: target.images.clone(), repin_requested_at: repin };
                    if stored.spec == target.spec && current_pins.as_ref() == Some(&pins) {
                        return Ok(None);
                    }
                    let mut app = stored.clone();
                    app.spec = target.spec.clone();
                    app.metadata.generation = Some(stored.metadata.generation.unwrap_or(0) + 1);
                    app.metadata.annotations.insert(CHANGE_CAUSE_ANNOTATION.to_string(), cause.clone());
                    Ok(Some((app, pins)))
                })
                .await?;
            Ok::<_, Failure>(written)
        })
        .await?;
    match written {
        None => println!(
            "app/{name} -n {namespace} already runs generation {}'s spec and images: nothing written",
            target.generation
        ),
        Some(app) => println!(
            "app/{name} -n {namespace} rolled back to generation {} as generation {} ({})",
            target.generation,
            app.metadata.generation.unwrap_or(0),
            images_cell(&target.images)
        ),
    }
    if let Some(timeout) = wait {
        commands::wait_ready(&store, name, namespace, timeout).await?;
    }
    Ok(())
}

/// The recorded generations, oldest first (the key names the generation).
async fn recorded(store: &Store, name: &str, namespace: &str) -> Result<Vec<Revision>, Failure> {
    let listing = readable(store.list_history::<Revision>(namespace, name).await?);
    Ok(listing.into_iter().map(|(generation, rev)| Revision { generation, ..rev }).collect())
}

/// The App's generation; exit 3 when it does not exist.
async fn current_generation(store: &Store, name: &str, namespace: &str) -> Result<i64, Failure> {
    match store.get_app(namespace, name).await? {
        Some(app) => Ok(app.value.metadata.generation.unwrap_or(0)),
        None => Err(Failure::new(ExitCode::NotFound, format!("app/{name} -n {namespace} not found"))),
    }
}

/// One recorded generation, or exit 3 naming those there are.
fn find<'a>(history: &'a [Revision], generation: i64, name: &str, namespace: &str) -> Result<&'a Revision, Failure> {
    history.iter().find(|r| r.generation == generation).ok_or_else(|| {
        let known: Vec<String> = history.iter().map(|r| r.generation.to_string()).collect();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        Failure::new(
            ExitCode::NotFound,
            format!("app/{name} -n {namespace} has no recorded generation {generation} (recorded: {known}); see berth history"),
        )
    })
}

/// GENERATION, OUTCOME, WHEN, IMAGES, CAUSE; the current generation is marked with `*`.
fn table(history: &[Revision], current: i64) -> String {
    let mut rows =
        vec![vec!["GENERATION".to_string(), "OUTCOME".into(), "WHEN".into(), "IMAGES".into(), "CAUSE".into()]];
    for r in history {
        let marker = if r.generation == current { "*" } else { "" };
        rows.push(vec![
            format!("{}{marker}", r.generation),
            r.outcome.clone(),
            r.at.clone(),
            images_cell(&r.images),
            r.cause.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    output::table(&rows)
}

/// `app:v1@0123456789ab,redis:7@…`: each reference with the first 12 hex digits of its digest.
fn images_cell(images: &BTreeMap<String, String>) -> String {
    if images.is_empty() {
        return "-".into();
    }
    images.iter().map(|(reference, pinned)| shorten(reference, pinned)).collect::<Vec<_>>().join(",")
}

fn shorten(reference: &str, pinned: &str) -> String {
    let base = reference.split_once("@sha256:").map_or(reference, |(r, _)| r);
    match pinned.split_once("@sha256:") {
        Some((_, hex)) => format!("{base}@{}", &hex[..hex.len().min(12)]),
        None => reference.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_shortened_to_twelve_hex_digits() {
        let d = "a".repeat(64);
        assert_eq!(shorten("reg:5000/app:v1", &format!("reg:5000/app@sha256:{d}")), "reg:5000/app:v1@aaaaaaaaaaaa");
        assert_eq!(shorten(&format!("app@sha256:{d}"), &format!("app@sha256:{d}")), "app@aaaaaaaaaaaa");
        assert_eq!(images_cell(&BTreeMap::new()), "-");
    }
}
