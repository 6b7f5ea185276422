//! The command line's shape: every command, flag and help line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::spec;
use crate::store::DEFAULT_PREFIX;

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
    /// CA certificate (PEM) that signed etcd's server certificate; the system's CAs when absent.
    #[arg(long, global = true, env = "BERTH_ETCD_CA", value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM), for an etcd started with --client-cert-auth; needs --etcd-key.
    #[arg(long, global = true, env = "BERTH_ETCD_CERT", value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// Key (PEM) of the client certificate --etcd-cert.
    #[arg(long, global = true, env = "BERTH_ETCD_KEY", value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user, for an etcd with auth enabled; its password is read from the environment variable
    /// BERTH_ETCD_PASSWORD (never a flag: it would show in `ps`).
    #[arg(long, global = true, env = "BERTH_ETCD_USER", value_name = "USER")]
    pub etcd_user: Option<String>,
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
    /// Write Apps and Hosts into etcd (Hosts first), after validating them against what is stored;
    /// with --prune --set NAME, also delete what earlier applies of that set wrote and the files no
    /// longer hold.
    Apply(ApplyArgs),
    /// Show how the files differ from what is stored (a unified diff per resource, and what --prune
    /// would remove); exit 0 when nothing differs, 1 when something does, 2 and up for errors.
    Diff(DiffArgs),
    /// List stored resources.
    Get {
        /// What to list.
        #[arg(value_enum)]
        kind: GetKind,
        /// Only this namespace (apps).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Delete an App (its containers are removed by the next converge) or an unused Host.
    Delete {
        /// What to delete.
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
        /// age identity file that opens Secrets (one AGE-SECRET-KEY-1… a line; the first is current,
        /// the others still open older seals); its recipients are published for `berth apply`/`seal`.
        #[arg(long, env = "BERTH_SEALING_KEY_FILE", value_name = "FILE")]
        sealing_key: Option<PathBuf>,
        /// Generations kept in each App's history (`berth history`, `berth rollback`); older ones
        /// are deleted. 0 records none.
        #[arg(long, default_value_t = crate::engine::history::DEFAULT_HISTORY_LIMIT)]
        history_limit: usize,
        /// Images berth pulled are removed from a host once unused and not among the last N pulled
        /// there for any app and namespace (a rollback to those never waits for a pull).
        #[arg(long, default_value_t = crate::controller::image_gc::DEFAULT_RETENTION,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        image_retention: usize,
    },
    /// Rollouts of an App: `berth rollout retry` attempts a generation whose rollout was rolled back
    /// once more (berth never retries one on its own; a new spec is a new attempt too).
    Rollout {
        #[command(subcommand)]
        what: RolloutWhat,
    },
    /// Write a new age identity (the operator's sealing key) to a file (mode 0600); print its recipient.
    Keygen {
        /// Where to write the identity; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the Secrets of the files with their stringData sealed (sealedData only): safe to commit.
    Seal {
        /// Spec files or folders holding Secrets.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Seal to this age recipient (age1…; repeatable) instead of the ones the operator published.
        #[arg(long)]
        recipient: Vec<String>,
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
    /// List an App's recorded generations (outcome, when, pinned images, change cause); with
    /// --generation N -o yaml|json, show one with its spec.
    History(HistoryArgs),
    /// Write an earlier generation's spec back with the images it ran (its pins, even if the tags
    /// moved since), as a new generation; default: the last Ready generation before the current one.
    Rollback(RollbackArgs),
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
    /// Print the logs of an App's containers on every host, merged in time order, each line prefixed
    /// with host and component; -f follows, also across a replace.
    Logs(super::logs::LogsArgs),
    /// Run a command in one running container of a role or accessory (-it: an interactive terminal);
    /// exits with the command's exit code.
    Exec(super::exec::ExecArgs),
    /// Convert another tool's configuration into berth's resources: `berth import kamal`.
    Import {
        #[command(subcommand)]
        what: super::import::ImportWhat,
    },
    /// Print a shell completion script: `berth completion bash > /etc/bash_completion.d/berth`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
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
    /// Apps, with their generation and whether they are being deleted.
    #[value(alias = "app")]
    Apps,
    /// Hosts and their endpoints.
    #[value(alias = "host")]
    Hosts,
    /// Apply sets, with how many Apps and Hosts each holds and when it was last applied.
    #[value(alias = "applyset")]
    Applysets,
    /// Secrets: names, types, keys and generations — never a value.
    #[value(alias = "secret")]
    Secrets,
}

#[derive(Subcommand, Debug)]
pub enum DeleteWhat {
    /// Mark an App for deletion: its containers go with the next converge (volumes stay), then its keys.
    App {
        /// The App's name.
        name: String,
        /// Its namespace.
        #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Delete a Host; refused while an App still places containers on it.
    Host {
        /// The Host's name.
        name: String,
    },
    /// Delete a Secret; refused while an App of its namespace uses it (the message names the App).
    Secret {
        /// The Secret's name.
        name: String,
        /// Its namespace.
        #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
        namespace: String,
    },
}

/// `berth apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Spec files or folders (every *.yaml, *.yml, *.json in a folder).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Validate and report what would be created, configured, unchanged and pruned, writing nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The apply set these files form: its inventory is kept at <prefix>/applysets/NAME.
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
    /// Delete what the set's last apply wrote and these files no longer hold (needs --set).
    #[arg(long, requires = "set")]
    pub prune: bool,
    /// Allow a prune that empties the set or removes more than half of its Apps at once.
    #[arg(long, requires = "prune")]
    pub allow_mass_prune: bool,
    /// Take over resources that another apply set lists (they leave that set).
    #[arg(long, requires = "set")]
    pub force_adopt: bool,
    /// Then follow every applied App until the operator reports it Ready for this generation.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
    pub timeout: std::time::Duration,
    /// Why: set as the annotation berth.dev/change-cause on every App applied (`berth history`
    /// shows it with the generation).
    #[arg(long, value_name = "TEXT")]
    pub cause: Option<String>,
}

/// `berth history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    pub name: String,
    #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Show this generation only (with -o yaml|json, its spec too).
    #[arg(long)]
    pub generation: Option<i64>,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `berth rollback`.
#[derive(Args, Debug)]
pub struct RollbackArgs {
    pub name: String,
    #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The recorded generation to go back to (see `berth history`).
    #[arg(long, value_name = "N")]
    pub to_generation: Option<i64>,
    /// Then follow the App until the operator reports it Ready.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
    pub timeout: std::time::Duration,
}

/// `berth diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Spec files or folders, as for apply.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Also list what `apply --prune --set NAME` would remove.
    #[arg(long, requires = "set")]
    pub prune: bool,
    /// The apply set the files form (with --prune).
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
}

/// `5m`, `15s`, `1h30m`: the same duration syntax as the specs.
fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    spec::parse_duration(s)
}
