//! Rendering of stored resources for `berth get`: aligned tables for people, YAML/JSON for tools.

use crate::spec::applyset::Inventory;
use crate::spec::{App, Host};

use super::OutputFormat;

/// Renders apps; env values are shown only in yaml/json, which mirror what is stored.
pub fn apps(apps: &[App], format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(apps),
        OutputFormat::Yaml => yaml(apps),
        OutputFormat::Table => {
            let mut rows = vec![vec![
                "NAMESPACE".to_string(),
                "NAME".into(),
                "IMAGE".into(),
                "ROLES".into(),
                "ACCESSORIES".into(),
                "GENERATION".into(),
                "DELETING".into(),
            ]];
            for a in apps {
                rows.push(vec![
                    a.namespace().to_string(),
                    a.metadata.name.clone(),
                    a.spec.image.clone(),
                    join_or_dash(a.spec.roles.keys()),
                    join_or_dash(a.spec.accessories.keys()),
                    a.metadata.generation.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
                    if a.metadata.deletion_timestamp.is_some() { "yes".into() } else { "no".into() },
                ]);
            }
            table(&rows)
        }
    }
}

/// Renders hosts; TLS file paths are shown, never their contents.
/// `berth get applysets`: each set with how many Apps and Hosts it holds and when it was last applied.
pub fn applysets(sets: &[Inventory], format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(sets),
        OutputFormat::Yaml => yaml(sets),
        OutputFormat::Table => {
            let mut rows = vec![vec!["NAME".to_string(), "APPS".into(), "HOSTS".into(), "APPLIED".into()]];
            for s in sets {
                rows.push(vec![s.name.clone(), s.apps().to_string(), s.hosts().to_string(), s.applied_at.clone()]);
            }
            table(&rows)
        }
    }
}

pub fn hosts(hosts: &[Host], format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => json(hosts),
        OutputFormat::Yaml => yaml(hosts),
        OutputFormat::Table => {
            let mut rows = vec![vec!["NAME".to_string(), "ENDPOINT".into(), "TLS".into(), "LABELS".into()]];
            for h in hosts {
                let tls = if h.spec.tls.is_some() {
                    "mutual"
                } else if h.spec.insecure {
                    "insecure"
                } else {
                    "-"
                };
                let labels: Vec<String> = h.metadata.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                rows.push(vec![
                    h.metadata.name.clone(),
                    h.spec.endpoint.clone(),
                    tls.into(),
                    if labels.is_empty() { "-".into() } else { labels.join(",") },
                ]);
            }
            table(&rows)
        }
    }
}

fn join_or_dash<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

fn json<T: serde::Serialize>(items: &[T]) -> String {
    let mut s = serde_json::to_string_pretty(items).expect("resources always serialize");
    s.push('\n');
    s
}

/// Several YAML documents, so the output can be fed back to `berth apply -f`.
fn yaml<T: serde::Serialize>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| serde_yaml_ng::to_string(i).expect("resources always serialize"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Left-aligned columns separated by three spaces, like kubectl.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| if i + 1 == r.len() { cell.clone() } else { format!("{cell:<w$}", w = widths[i]) })
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}
