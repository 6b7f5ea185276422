//! The `berth` command line: parses flags, calls the library, maps every failure to a one-line
//! message and a distinct exit code (see [`ExitCode`]); no backtraces for user errors.

mod commands;
mod logging;
mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::spec::{self, Resource};
use crate::store::{Listing, Store, StoreError, Unreadable, DEFAULT_PREFIX};

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
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        let code = match e {
            StoreError::NotFound(_) => ExitCode::NotFound,
            // Unreachable, failed or refused (a conflict, a host still in use, an app being deleted).
            StoreError::Unreachable { .. }
            | StoreError::Etcd(_)
            | StoreError::Corrupt { .. }
            | StoreError::NotLeader
            | StoreError::BeingDeleted { .. }
            | StoreError::Contended { .. }
            | StoreError::LockBusy { .. }
            | StoreError::HostInUse { .. } => ExitCode::Store,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<spec::SpecErrors> for Failure {
    fn from(e: spec::SpecErrors) -> Failure {
        Failure::new(ExitCode::InvalidInput, e.to_string())
    }
}

#[derive(Parser, Debug)]
#[command(name = "berth", version, about = "A Kubernetes-style operator for plain Docker hosts")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand shares.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        global = true,
        env = "BERTH_ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub etcd: Vec<String>,
    /// Root of berth's keys in etcd.
    #[arg(long, global = true, env = "BERTH_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Yaml,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check spec files offline; prints every error with file, document and field.
    Validate {
        /// Files or folders (every *.yaml, *.yml, *.json in them).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Write Apps and Hosts into etcd (Hosts first), after validating them against what is stored.
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Validate and report what would change, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Then follow every applied App until the operator reports it Ready for this generation.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
    },
    /// List stored resources.
    Get {
        #[arg(value_enum)]
        kind: GetKind,
        /// Only this namespace (apps).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Delete an App (its containers are removed by the next converge) or an unused Host.
    Delete {
        #[command(subcommand)]
        what: DeleteWhat,
    },
    /// Show what a converge would do on each host, changing nothing.
    Plan {
        /// The stored App to plan (omit with -f when the file holds exactly one App).
        name: Option<String>,
        #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Plan a spec that is not applied yet (Hosts in the file are used too).
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Converge one App once on every host; exit 0 when it is Ready.
    Converge {
        name: String,
        #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Run the operator: watch the store and keep every host converged, for ever.
    Operator {
        /// Apps converged at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Every app is converged again this often even when nothing changed.
        #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
        resync: std::time::Duration,
        /// Leader lease TTL: a standby takes over within about this long after the leader dies.
        #[arg(long, default_value = "15s", value_parser = parse_duration_arg)]
        lease_ttl: std::time::Duration,
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, default_value = "127.0.0.1:9464")]
        metrics_addr: std::net::SocketAddr,
        /// Name of this operator in the leader key (default: hostname-pid).
        #[arg(long)]
        identity: Option<String>,
        /// After SIGTERM, how long in-flight reconciles may take to stop (health waits end at once;
        /// a Docker call under way finishes) before the lease is released anyway.
        #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
        shutdown_grace: std::time::Duration,
    },
    /// Rollouts of an App: `berth rollout retry` attempts a generation whose rollout was rolled back
    /// once more (berth never retries one on its own; a new spec is a new attempt too).
    Rollout {
        #[command(subcommand)]
        what: RolloutWhat,
    },
    /// Resolve an App's image tags again: a tag that moved in the registry rolls out (rolling, as any
    /// replace); an unmoved one changes nothing. Pins otherwise last while the spec's reference does.
    Repin {
        name: String,
        #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Then follow the App until the operator reports it Ready on the new pins.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
    },
    /// Show an App's status as the last converge wrote it.
    Status {
        name: String,
        #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
        namespace: String,
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Follow the status until it is Ready for the App's current generation (or fails).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
    },
}

#[derive(Subcommand, Debug)]
pub enum RolloutWhat {
    /// Attempt the App's current generation again after a failed (rolled back) rollout; sets the
    /// annotation berth.dev/rollout-retry-requested-at, which a GitOps repository may set too.
    Retry {
        name: String,
        #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Then follow the App until the operator reports it Ready (or the attempt fails).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetKind {
    #[value(alias = "app")]
    Apps,
    #[value(alias = "host")]
    Hosts,
}

#[derive(Subcommand, Debug)]
pub enum DeleteWhat {
    App {
        name: String,
        #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
        namespace: String,
    },
    Host {
        name: String,
    },
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
            eprintln!("error: {}", f.message);
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
        Command::Apply { files, dry_run, wait, timeout } => {
            let loaded = spec::load_paths(&files)?;
            let store = connect(&cli.global).await?;
            let resources: Vec<Resource> = loaded.into_iter().map(|l| l.resource).collect();
            store
                .with_apply_lock(|| async {
                    check_against_store(&store, &resources).await?;
                    // One etcd transaction for the whole batch: a refusal or a failure writes nothing.
                    let ordered: Vec<Resource> = hosts_first(&resources).into_iter().cloned().collect();
                    let outcomes = store.apply_all(&ordered, dry_run).await?;
                    let suffix = if dry_run { " (dry run)" } else { "" };
                    for (r, outcome) in ordered.iter().zip(outcomes) {
                        println!("{} {outcome}{suffix}", r.display_name());
                    }
                    Ok::<(), Failure>(())
                })
                .await?;
            if wait && !dry_run {
                for r in &resources {
                    if let Resource::App(a) = r {
                        commands::wait_ready(&store, &a.metadata.name, a.namespace(), timeout).await?;
                    }
                }
            }
            Ok(())
        }
        Command::Get { kind, namespace, output } => {
            let store = connect(&cli.global).await?;
            let text = match kind {
                GetKind::Apps => output::apps(&readable(store.list_apps(namespace.as_deref()).await?), output),
                GetKind::Hosts => output::hosts(&readable(store.list_hosts().await?), output),
            };
            print!("{text}");
            Ok(())
        }
        Command::Plan { name, namespace, files, output } => {
            commands::plan(&cli.global, name, namespace, files, output).await
        }
        Command::Converge { name, namespace } => commands::converge(&cli.global, &name, &namespace).await,
        Command::Repin { name, namespace, wait, timeout } => {
            let store = connect(&cli.global).await?;
            let at = store.request_repin(&namespace, &name).await?;
            println!("app/{name} -n {namespace} repin requested at {at}");
            if wait {
                commands::wait_ready(&store, &name, &namespace, timeout).await?;
            }
            Ok(())
        }
        Command::Status { name, namespace, wait: true, timeout, .. } => {
            let store = connect(&cli.global).await?;
            commands::wait_ready(&store, &name, &namespace, timeout).await
        }
        Command::Status { name, namespace, output, .. } => {
            commands::status(&cli.global, &name, &namespace, output).await
        }
        Command::Rollout { what: RolloutWhat::Retry { name, namespace, wait, timeout } } => {
            let store = connect(&cli.global).await?;
            let at = store.request_rollout_retry(&namespace, &name).await?;
            println!("app/{name} -n {namespace} rollout retry requested at {at}");
            if wait {
                commands::wait_ready(&store, &name, &namespace, timeout).await?;
            }
            Ok(())
        }
        Command::Operator { concurrency, resync, lease_ttl, metrics_addr, identity, shutdown_grace } => {
            let identity = identity.unwrap_or_else(default_identity);
            let cfg = crate::controller::operator::OperatorConfig {
                concurrency,
                resync,
                lease_ttl,
                metrics_addr,
                identity,
                shutdown_grace,
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
            }
            Ok(())
        }
    }
}

/// `5m`, `15s`, `1h30m`: the same duration syntax as the specs.
fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    spec::parse_duration(s)
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

/// Connects with the global flags; the error already names the endpoints.
pub async fn connect(global: &GlobalArgs) -> Result<Store, Failure> {
    Ok(Store::connect(&global.etcd, &global.prefix).await?)
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

/// Hosts are written before Apps so an App never lands before the Hosts it names.
fn hosts_first(resources: &[Resource]) -> Vec<&Resource> {
    let hosts = resources.iter().filter(|r| matches!(r, Resource::Host(_)));
    let apps = resources.iter().filter(|r| matches!(r, Resource::App(_)));
    hosts.chain(apps).collect()
}

/// Cross-resource checks (host names defined, host ports free) against the store plus this batch,
/// all before anything is written, so a bad batch writes nothing.
async fn check_against_store(store: &Store, batch: &[Resource]) -> Result<(), Failure> {
    let mut hosts = readable(store.list_hosts().await?);
    let mut others = readable(store.list_apps(None).await?);
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
