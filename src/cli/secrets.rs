//! `berth keygen`, `berth seal` and `berth get secrets`: sealing Secret values to the operator's age
//! recipients, and listing Secrets without ever showing a value.

use std::io::Write;
use std::path::Path;

use super::{connect, readable, ExitCode, Failure, GlobalArgs, OutputFormat};
use crate::sealing::{seal, Keyring};
use crate::spec::{self, Resource, Secret};
use crate::store::Versioned;

/// `berth keygen --out FILE`: a new identity in FILE (mode 0600, never overwritten); prints its recipient.
pub fn keygen(out: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let ring = Keyring::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| Failure::new(ExitCode::InvalidInput, format!("--out {}: {e}", out.display())))?;
    file.write_all(ring.to_file().as_bytes())
        .map_err(|e| Failure::new(ExitCode::InvalidInput, format!("--out {}: {e}", out.display())))?;
    println!("{}", ring.recipients()[0]);
    Ok(())
}

/// `berth seal -f FILE… [--recipient R…]`: prints every Secret of the files with `sealedData` only,
/// sealed to the given recipients or else to those the operator published.
pub async fn seal_files(
    global: &GlobalArgs,
    files: &[std::path::PathBuf],
    recipients: Vec<String>,
) -> Result<(), Failure> {
    let loaded = spec::load_paths(files)?;
    let recipients = if recipients.is_empty() { connect(global).await?.get_recipients().await? } else { recipients };
    if recipients.is_empty() {
        return Err(Failure::new(
            ExitCode::InvalidInput,
            "no recipient: give --recipient age1… or start `berth operator --sealing-key FILE` to publish one",
        ));
    }
    let mut docs = Vec::new();
    for l in loaded {
        let Resource::Secret(mut s) = l.resource else { continue };
        for (key, value) in std::mem::take(&mut s.string_data) {
            let sealed = seal(&recipients, value.0.as_bytes()).map_err(|e| {
                Failure::new(ExitCode::InvalidInput, format!("{}: secret/{} {key}: {e}", l.file, s.metadata.name))
            })?;
            s.sealed_data.insert(key, sealed);
        }
        docs.push(serde_yaml_ng::to_string(&s).expect("secrets serialize"));
    }
    if docs.is_empty() {
        return Err(Failure::new(ExitCode::InvalidInput, "the files hold no Secret"));
    }
    print!("{}", docs.join("---\n"));
    Ok(())
}

/// `berth get secrets`: names, types, keys and when they changed — never a value.
pub async fn get(global: &GlobalArgs, namespace: Option<&str>, format: OutputFormat) -> Result<(), Failure> {
    let store = connect(global).await?;
    let secrets: Vec<Versioned<Secret>> = readable(store.list_secrets(namespace).await?);
    let shown: Vec<serde_json::Value> = secrets
        .iter()
        .map(|v| {
            let s = &v.value;
            serde_json::json!({
                "namespace": s.namespace(),
                "name": s.metadata.name,
                "type": s.secret_type,
                "keys": s.keys().collect::<Vec<_>>(),
                "generation": s.metadata.generation,
                "revision": v.mod_revision,
            })
        })
        .collect();
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&shown).expect("json")),
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&shown).expect("yaml")),
        OutputFormat::Table => {
            let mut rows =
                vec![vec!["NAMESPACE".to_string(), "NAME".into(), "TYPE".into(), "KEYS".into(), "GENERATION".into()]];
            for v in &secrets {
                let s = &v.value;
                rows.push(vec![
                    s.namespace().to_string(),
                    s.metadata.name.clone(),
                    serde_json::to_value(s.secret_type)
                        .ok()
                        .and_then(|t| t.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    s.keys().collect::<Vec<_>>().join(","),
                    s.metadata.generation.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
                ]);
            }
            print!("{}", super::output::table(&rows));
        }
    }
    Ok(())
}
