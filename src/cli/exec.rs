//! `berth exec`: a command in one running container of a component, with `-it` an interactive
//! terminal (the local one in raw mode, its size passed on and kept up to date); berth exits with
//! the command's exit code.

use std::io::IsTerminal;

use clap::{ArgGroup, Args};
use tokio::sync::mpsc;

use super::logs::{component, hosts_for, load};
use super::{ExitCode, Failure, GlobalArgs};
use crate::docker::exec::{self as dexec, ExecOptions};
use crate::docker::logs::containers;
use crate::docker::HostPool;
use crate::spec;

/// `berth exec`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("component").required(true).args(["role", "accessory"])))]
pub struct ExecArgs {
    /// The App's name.
    pub name: String,
    /// Its namespace.
    #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Run in a container of this role.
    #[arg(short = 'r', long)]
    pub role: Option<String>,
    /// Run in a container of this accessory.
    #[arg(short = 'a', long)]
    pub accessory: Option<String>,
    /// The host whose container runs it (default: the first host, in name order, with one running).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Send berth's stdin to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal (with -i: an interactive shell, a Rails console, psql).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// `berth exec`: on success the process ends here with the command's exit code.
pub async fn exec(global: &GlobalArgs, a: ExecArgs) -> Result<(), Failure> {
    let code = run(global, a).await?;
    // Exits at once: a blocking read of the terminal may still be pending and would hold the runtime.
    std::process::exit(i32::try_from(code).unwrap_or(1))
}

async fn run(global: &GlobalArgs, a: ExecArgs) -> Result<i64, Failure> {
    let (app, stored) = load(global, &a.name, &a.namespace).await?;
    let component = component(&a.role, &a.accessory).expect("clap requires -r or -a");
    let hosts = hosts_for(&app, Some(&component), a.host.as_deref(), &stored)?;
    let pool = HostPool::new();
    let mut target = None;
    for host in &hosts {
        let found = match pool.client(host).await {
            Ok(client) => containers(&client, &a.name, &a.namespace, Some(&component)).await.map(|cs| (client, cs)),
            Err(e) => Err(e),
        };
        match found {
            Ok((client, cs)) => {
                if let Some(c) = cs.into_iter().rev().find(|c| c.running) {
                    target = Some((client, c));
                    break;
                }
            }
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    let Some((client, container)) = target else {
        let names: Vec<&str> = hosts.iter().map(|h| h.metadata.name.as_str()).collect();
        return Err(Failure::new(
            ExitCode::NotReady,
            format!("no running container of {component} of app/{} -n {} on {}", a.name, a.namespace, names.join(", ")),
        ));
    };
    let terminal = a.tty && std::io::stdin().is_terminal();
    let opts = ExecOptions { cmd: a.cmd, tty: a.tty, stdin: a.interactive, size: size() };
    let (tx, rx) = mpsc::channel(4);
    let _raw =
        if terminal { Some(RawMode::enter().map_err(|e| Failure::new(ExitCode::InvalidInput, e))?) } else { None };
    let watcher = terminal.then(|| tokio::spawn(watch_size(tx)));
    let result =
        dexec::run(&client, &container.id, &opts, tokio::io::stdin(), tokio::io::stdout(), tokio::io::stderr(), rx)
            .await;
    if let Some(w) = watcher {
        w.abort();
    }
    result.map_err(|e| Failure::new(ExitCode::NotReady, e.to_string()))
}

/// The local terminal's size (columns, rows), when stdout or stdin is one.
fn size() -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin()))
        .ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Sends the terminal's new size on every SIGWINCH.
async fn watch_size(tx: mpsc::Sender<(u16, u16)>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut winch) = signal(SignalKind::window_change()) else { return };
    while winch.recv().await.is_some() {
        if let Some(s) = size() {
            if tx.send(s).await.is_err() {
                return;
            }
        }
    }
}

/// The local terminal in raw mode (keys go to the container as typed, Ctrl-C included) until dropped.
struct RawMode(rustix::termios::Termios);

impl RawMode {
    fn enter() -> Result<RawMode, String> {
        use rustix::termios::{tcgetattr, tcsetattr, OptionalActions};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).map_err(|e| format!("-t: cannot read the terminal's settings: {e}"))?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw).map_err(|e| format!("-t: cannot set raw mode: {e}"))?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &self.0);
    }
}
