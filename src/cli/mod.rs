//! The `berth` command line: parses flags, calls the library, maps every failure to a one-line
//! message and a distinct exit code (see [`ExitCode`]); no backtraces for user errors.

mod apply;
mod args;
mod commands;
mod diff;
mod etcd_config;
mod exec;
mod history;
mod import;
mod logging;
mod logs;
mod output;
mod secrets;

use clap::Parser;

pub use args::{
    ApplyArgs, Cli, Command, DeleteWhat, DiffArgs, GetKind, GlobalArgs, LogFormat, OutputFormat, RolloutWhat,
};
pub use args::{HistoryArgs, RollbackArgs};

use crate::spec;
use crate::store::{Listing, Store, StoreError, Unreadable};

/// Exit codes are a contract for scripts and CI pipelines (README "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    Ok = 0,
    /// A spec file, a flag or an argument is wrong: fix the input.
    InvalidInput = 1,
    /// etcd could not be reached or refused the change.
    Store = 2,
    /// The named app or host does not exist.
    NotFound = 3,
    /// A converge finished but the app is not Ready (Degraded, Blocked, a host down).
    NotReady = 4,
    /// Waiting for Ready ran out of time.
    Timeout = 5,
    /// A safety guard refused the change: an apply set that would become empty or lose more than
    /// half of its Apps, or take a resource of another set without `--force-adopt`.
    Guarded = 6,
    /// `berth diff` found a difference (its exit 1 means that, so its invalid input is 7).
    DiffInvalidInput = 7,
    /// `berth import --secrets` cannot seal: no recipient given or published (nothing was printed).
    SealUnavailable = 8,
}

/// An error on its way to the user: the message and the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }

    /// `berth diff` found a difference: exit 1, and nothing more to say (the diff was printed).
    pub fn differs() -> Failure {
        Failure { code: ExitCode::InvalidInput, message: String::new() }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        let code = match e {
            StoreError::NotFound(_) => ExitCode::NotFound,
            // Unreachable, failed or refused (a conflict, a host still in use, an app being deleted).
            StoreError::Unreachable { .. }
            | StoreError::Refused { .. }
            | StoreError::Etcd(_)
            | StoreError::Corrupt { .. }
            | StoreError::NotLeader
            | StoreError::BeingDeleted { .. }
            | StoreError::Contended { .. }
            | StoreError::LockBusy { .. }
            | StoreError::HostInUse { .. }
            | StoreError::SecretInUse { .. }
            | StoreError::Plaintext { .. } => ExitCode::Store,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<spec::SpecErrors> for Failure {
    fn from(e: spec::SpecErrors) -> Failure {
        Failure::new(ExitCode::InvalidInput, e.to_string())
    }
}

/// Entry point of the binary: returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { ExitCode::InvalidInput } else { ExitCode::Ok };
            let _ = e.print();
            return code as i32;
        }
    };
    let level = if matches!(cli.command, Command::Operator { .. }) { "info" } else { "warn" };
    logging::init(cli.global.log_format, level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::Ok as i32,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("error: {}", f.message);
            }
            f.code as i32
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Validate { files } => {
            let loaded = spec::load_paths(&files)?;
            for l in &loaded {
                println!("{} valid ({})", l.resource.display_name(), l.file);
            }
            Ok(())
        }
        Command::Apply(a) => apply::apply(&cli.global, a).await,
        Command::Keygen { out } => secrets::keygen(&out),
        Command::Seal { files, recipient } => secrets::seal_files(&cli.global, &files, recipient).await,
        Command::Diff(d) => diff::diff(&cli.global, d).await,
        Command::Import { what } => import::import(&cli.global, what).await,
        Command::Logs(a) => logs::logs(&cli.global, a).await,
        Command::Exec(a) => exec::exec(&cli.global, a).await,
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "berth", &mut std::io::stdout());
            Ok(())
        }
        Command::Get { kind, namespace, output } => {
            let store = connect(&cli.global).await?;
            let text = match kind {
                GetKind::Apps => output::apps(&readable(store.list_apps(namespace.as_deref()).await?), output),
                GetKind::Hosts => output::hosts(&readable(store.list_hosts().await?), output),
                GetKind::Applysets => output::applysets(&store.list_applysets().await?, output),
                GetKind::Secrets => return secrets::get(&cli.global, namespace.as_deref(), output).await,
            };
            print!("{text}");
            Ok(())
        }
        Command::Plan { name, namespace, files, output } => {
            commands::plan(&cli.global, name, namespace, files, output).await
        }
        Command::Converge { name, namespace } => commands::converge(&cli.global, &name, &namespace).await,
        Command::Repin { name, namespace, wait, timeout } => {
            request(&cli.global, &name, &namespace, Request::Repin, wait.then_some(timeout)).await
        }
        Command::History(h) => history::history(&cli.global, &h.name, &h.namespace, h.generation, h.output).await,
        Command::Rollback(r) => {
            let wait = r.wait.then_some(r.timeout);
            history::rollback(&cli.global, &r.name, &r.namespace, r.to_generation, wait).await
        }
        Command::Status { name, namespace, wait: true, timeout, .. } => {
            let store = connect(&cli.global).await?;
            commands::wait_ready(&store, &name, &namespace, timeout).await
        }
        Command::Status { name, namespace, output, .. } => {
            commands::status(&cli.global, &name, &namespace, output).await
        }
        Command::Rollout { what: RolloutWhat::Retry { name, namespace, wait, timeout } } => {
            request(&cli.global, &name, &namespace, Request::RolloutRetry, wait.then_some(timeout)).await
        }
        Command::Operator {
            concurrency,
            resync,
            lease_ttl,
            metrics_addr,
            identity,
            shutdown_grace,
            sealing_key,
            history_limit,
            image_retention,
        } => {
            let identity = identity.unwrap_or_else(default_identity);
            let keyring = commands::load_keyring(sealing_key.as_deref())?.map(std::sync::Arc::new);
            let cfg = crate::controller::operator::OperatorConfig {
                concurrency,
                resync,
                lease_ttl,
                metrics_addr,
                identity,
                shutdown_grace,
                keyring,
                history_limit,
                image_retention,
            };
            let store = connect(&cli.global).await?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                wait_for_signal().await;
                let _ = tx.send(true);
            });
            crate::controller::operator::run(store, cfg, rx)
                .await
                .map_err(|e| Failure::new(ExitCode::InvalidInput, format!("--metrics-addr {metrics_addr}: {e}")))
        }
        Command::Delete { what } => {
            let store = connect(&cli.global).await?;
            match what {
                DeleteWhat::App { name, namespace } => {
                    store.delete_app(&namespace, &name).await?;
                    println!("app/{name} -n {namespace} marked for deletion");
                }
                DeleteWhat::Host { name } => {
                    let skipped = store.with_apply_lock(|| store.delete_host(&name)).await?;
                    warn_unreadable(&skipped);
                    println!("host/{name} deleted");
                }
                DeleteWhat::Secret { name, namespace } => {
                    store.with_apply_lock(|| store.delete_secret(&namespace, &name)).await?;
                    println!("secret/{name} -n {namespace} deleted");
                }
            }
            Ok(())
        }
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{}-{}", if host.is_empty() { "berth" } else { &host }, std::process::id())
}

/// SIGTERM or SIGINT: the operator stops taking work, drains and releases its lease.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A request the operator answers through an annotation on the App.
enum Request {
    Repin,
    RolloutRetry,
}

/// Writes the request, prints its token and, with `--wait`, follows the App until the operator has
/// answered it (Ready, or settled failing).
async fn request(
    global: &GlobalArgs,
    name: &str,
    namespace: &str,
    what: Request,
    wait: Option<std::time::Duration>,
) -> Result<(), Failure> {
    let store = connect(global).await?;
    let (at, words) = match what {
        Request::Repin => (store.request_repin(namespace, name).await?, "repin"),
        Request::RolloutRetry => (store.request_rollout_retry(namespace, name).await?, "rollout retry"),
    };
    println!("app/{name} -n {namespace} {words} requested at {at}");
    if let Some(timeout) = wait {
        commands::wait_ready(&store, name, namespace, timeout).await?;
    }
    Ok(())
}

/// Connects with the global flags (TLS files and user checked first: exit 1); the error already
/// names the endpoints.
pub async fn connect(global: &GlobalArgs) -> Result<Store, Failure> {
    let config = global.etcd_config().map_err(|e| Failure::new(ExitCode::InvalidInput, e))?;
    Ok(Store::connect_with(config).await?)
}

/// The resources of a listing, after one warning per key it skipped: a value written around berth
/// is unknown to every check and never the reason a command fails.
pub(crate) fn readable<T>(listing: Listing<T>) -> Vec<T> {
    warn_unreadable(&listing.unreadable);
    listing.items
}

fn warn_unreadable(skipped: &[Unreadable]) {
    for u in skipped {
        eprintln!("warning: skipping {}: {}", u.key, u.reason);
    }
}
