//! `berth import kamal`: reads Kamal's files, runs the pure import (`crate::import::kamal`), seals
//! what the secrets files gave, and prints the resources (or writes one file each into a folder).
//! Keys berth cannot express are warnings on stderr, one line each, and never fail the command.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{connect, ExitCode, Failure, GlobalArgs};
use crate::import::kamal::{self, DeployText, ImportInput, Imported, SecretValues};

/// `berth import …`: configuration of other tools as berth's resources.
#[derive(Subcommand, Debug)]
pub enum ImportWhat {
    /// Kamal's config/deploy.yml (merged with deploy.DEST.yml under -d) as Hosts, an App (namespace =
    /// the destination, else default) and Secrets; unsupported keys are listed on stderr.
    Kamal(KamalArgs),
}

/// `berth import kamal`.
#[derive(Args, Debug)]
pub struct KamalArgs {
    /// Kamal's configuration file.
    #[arg(short = 'c', long = "config-file", default_value = "config/deploy.yml", value_name = "FILE")]
    pub config_file: PathBuf,
    /// The destination: also reads deploy.DEST.yml and makes DEST the App's namespace.
    #[arg(short = 'd', long)]
    pub destination: Option<String>,
    /// Kamal's secrets path (e.g. .kamal/secrets): reads PATH-common, then PATH (PATH.DEST with -d),
    /// and seals the values; without it, Secrets are stubs naming the keys to fill.
    #[arg(long, value_name = "PATH")]
    pub secrets: Option<PathBuf>,
    /// Seal to this age recipient (age1…; repeatable) instead of the ones the operator published.
    #[arg(long)]
    pub recipient: Vec<String>,
    /// Write one file per resource into DIR instead of printing them.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// The image tag to run (Kamal tags each build with its git version); default latest.
    #[arg(long, value_name = "TAG")]
    pub version: Option<String>,
}

/// Runs `berth import WHAT`.
pub async fn import(global: &GlobalArgs, what: ImportWhat) -> Result<(), Failure> {
    let ImportWhat::Kamal(args) = what;
    let invalid = |m: String| Failure::new(ExitCode::InvalidInput, m);
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| invalid(format!("{}: cannot read: {e}", p.display())));
    let base = read(&args.config_file)?;
    let dest_file = args.destination.as_ref().map(|d| args.config_file.with_extension(format!("{d}.yml")));
    let dest = dest_file.as_deref().map(read).transpose()?;
    let base_name = args.config_file.display().to_string();
    let dest_name = dest_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let mut deploy = vec![DeployText { file: &base_name, text: &base }];
    if let Some(text) = &dest {
        deploy.push(DeployText { file: &dest_name, text });
    }
    let values = args.secrets.as_deref().map(|p| read_secrets(p, args.destination.as_deref())).transpose()?;
    let read_file = |local: &str| std::fs::read_to_string(local).map_err(|e| e.to_string());
    let mut imported = kamal::import(&ImportInput {
        deploy,
        destination: args.destination.as_deref(),
        version: args.version.as_deref(),
        secrets: values.as_ref(),
        read_file: &read_file,
    })
    .map_err(|e| invalid(e.to_string()))?;
    if values.is_some() && !imported.secrets.is_empty() {
        seal_all(global, &mut imported, args.recipient).await?;
    }
    for u in &imported.report.unsupported {
        eprintln!("warning: unsupported: {}: {}", u.path, u.why);
    }
    for n in &imported.report.notes {
        eprintln!("note: {n}");
    }
    let docs = imported.documents();
    match &args.output_dir {
        None => print!("{}", docs.into_iter().map(|(_, text)| text).collect::<Vec<_>>().join("---\n")),
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
            for (name, text) in docs {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// Kamal's order: `PATH-common`, then `PATH.DEST` (with a destination) or `PATH`; later files win.
/// Missing files are skipped, as Kamal does; none at all is an input error naming the path.
fn read_secrets(path: &Path, destination: Option<&str>) -> Result<SecretValues, Failure> {
    let text = path.display().to_string();
    let main = match destination {
        Some(d) => PathBuf::from(format!("{text}.{d}")),
        None => path.to_path_buf(),
    };
    let mut values = SecretValues::default();
    for file in [PathBuf::from(format!("{text}-common")), main] {
        let Ok(content) = std::fs::read_to_string(&file) else { continue };
        let env = |name: &str| std::env::var(name).ok();
        kamal::parse_dotenv(&content, &file.display().to_string(), &env, &mut values)
            .map_err(|e| Failure::new(ExitCode::InvalidInput, e.to_string()))?;
    }
    if values.files.is_empty() {
        let wanted = match destination {
            Some(d) => format!("{text}-common or {text}.{d}"),
            None => format!("{text}-common or {text}"),
        };
        return Err(Failure::new(ExitCode::InvalidInput, format!("--secrets: neither {wanted} exists")));
    }
    Ok(values)
}

/// Seals every imported Secret to `recipients`, or to those the operator published; when neither
/// is available the import stops with [`ExitCode::SealUnavailable`] so no plain value is printed.
async fn seal_all(global: &GlobalArgs, imported: &mut Imported, recipients: Vec<String>) -> Result<(), Failure> {
    let unavailable = |why: String| {
        Failure::new(
            ExitCode::SealUnavailable,
            format!(
                "cannot seal the imported Secrets: {why}; give --recipient age1…, or leave out --secrets for stubs"
            ),
        )
    };
    let recipients = if recipients.is_empty() {
        let store = connect(global).await.map_err(|f| unavailable(f.message))?;
        store.get_recipients().await.map_err(|e| unavailable(e.to_string()))?
    } else {
        recipients
    };
    if recipients.is_empty() {
        return Err(unavailable("the operator has published no recipient (berth operator --sealing-key)".into()));
    }
    for s in &mut imported.secrets {
        kamal::secrets::seal(s, &recipients).map_err(|e| unavailable(e.to_string()))?;
    }
    Ok(())
}
