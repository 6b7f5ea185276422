//! `berth logs`: the app's container logs from every host, merged in time order on Docker's own
//! timestamps, each line prefixed with host and component. `-f` follows, and keeps following across
//! a replace: each host's container list is polled every second and new containers are attached.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{connect, readable, ExitCode, Failure, GlobalArgs};
use crate::docker::logs::{self as dlogs, AppContainer, LogLine, LogsFrom};
use crate::docker::{HostClient, HostPool};
use crate::plan::labels::Component;
use crate::spec::{self, App, Host};

/// How long a followed line waits for earlier lines from other hosts before it is printed.
const HOLD: Duration = Duration::from_millis(300);
/// How often `-f` looks for new containers (a replace) on each host.
const POLL: Duration = Duration::from_secs(1);

/// `berth logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The App's name.
    pub name: String,
    /// Its namespace.
    #[arg(short = 'n', long, default_value = spec::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Only this role's containers.
    #[arg(short = 'r', long, conflicts_with = "accessory")]
    pub role: Option<String>,
    /// Only this accessory's containers.
    #[arg(short = 'a', long)]
    pub accessory: Option<String>,
    /// Only this host.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Keep printing new lines, also of containers that replace the current ones, until Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only lines newer than this (`10m`, `1h30m`).
    #[arg(long, value_parser = spec::parse_duration)]
    pub since: Option<Duration>,
    /// Only the last N lines of each container.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Print Docker's timestamp (RFC 3339) before each line.
    #[arg(long)]
    pub timestamps: bool,
}

/// The component flags (`-r` / `-a`) as a [`Component`].
pub(super) fn component(role: &Option<String>, accessory: &Option<String>) -> Option<Component> {
    match (role, accessory) {
        (Some(r), _) => Some(Component::Role(r.clone())),
        (None, Some(a)) => Some(Component::Accessory(a.clone())),
        (None, None) => None,
    }
}

/// The stored Hosts that run `component` of `app` (every component's when `None`), in name order,
/// only `only` when given; a name the App places but the store lacks is a warning.
pub(super) fn hosts_for(
    app: &App,
    component: Option<&Component>,
    only: Option<&str>,
    stored: &[Host],
) -> Result<Vec<Host>, Failure> {
    let (name, ns) = (&app.metadata.name, app.namespace());
    let placed: Vec<String> = match component {
        None => spec::hosts_of(app).into_iter().collect(),
        Some(Component::Role(r)) => app.spec.roles.get(r).map(|x| x.hosts.clone()).ok_or_else(|| {
            let known: Vec<&str> = app.spec.roles.keys().map(String::as_str).collect();
            Failure::new(
                ExitCode::InvalidInput,
                format!("-r {r}: app/{name} -n {ns} has no such role (roles: {})", known.join(", ")),
            )
        })?,
        Some(Component::Accessory(a)) => {
            app.spec.accessories.get(a).map(|x| spec::accessory_hosts(&app.spec, x)).ok_or_else(|| {
                let known: Vec<&str> = app.spec.accessories.keys().map(String::as_str).collect();
                Failure::new(
                    ExitCode::InvalidInput,
                    format!("-a {a}: app/{name} -n {ns} has no such accessory (accessories: {})", known.join(", ")),
                )
            })?
        }
    };
    let mut placed: Vec<String> = placed.into_iter().filter(|h| only.is_none_or(|o| o == h)).collect();
    placed.sort();
    placed.dedup();
    if let (Some(o), true) = (only, placed.is_empty()) {
        let what = component.map(|c| c.to_string()).unwrap_or_else(|| format!("app/{name} -n {ns}"));
        return Err(Failure::new(ExitCode::InvalidInput, format!("--host {o}: {what} does not run there")));
    }
    let mut out = Vec::new();
    for h in placed {
        match stored.iter().find(|s| s.metadata.name == h) {
            Some(host) => out.push(host.clone()),
            None => eprintln!("warning: host {h} is not a stored Host; skipped"),
        }
    }
    Ok(out)
}

/// The App from the store, or exit 3.
pub(super) async fn load(global: &GlobalArgs, name: &str, ns: &str) -> Result<(App, Vec<Host>), Failure> {
    let store = connect(global).await?;
    let app = store
        .get_app(ns, name)
        .await?
        .ok_or_else(|| Failure::new(ExitCode::NotFound, format!("app/{name} -n {ns} not found")))?
        .value;
    Ok((app, readable(store.list_hosts().await?)))
}

/// What the host tasks tell the printer.
enum Msg {
    Line { prefix: Arc<str>, line: LogLine },
    Down { host: String, error: String },
}

/// `berth logs`.
pub async fn logs(global: &GlobalArgs, a: LogsArgs) -> Result<(), Failure> {
    let (app, stored) = load(global, &a.name, &a.namespace).await?;
    let component = component(&a.role, &a.accessory);
    let hosts = hosts_for(&app, component.as_ref(), a.host.as_deref(), &stored)?;
    let since = a.since.map(|d| SystemTime::now() - d);
    let from = LogsFrom {
        follow: a.follow,
        since: since
            .map(|t| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0))
            .unwrap_or(0),
        tail: a.tail,
    };
    let pool = Arc::new(HostPool::new());
    let (tx, mut rx) = mpsc::unbounded_channel();
    for host in hosts {
        let (pool, tx, from, component) = (pool.clone(), tx.clone(), from.clone(), component.clone());
        let (app_name, ns) = (a.name.clone(), a.namespace.clone());
        tokio::spawn(async move {
            let target = Target { app: app_name, ns, component, from, since, tx };
            target.host(&pool, &host).await;
        });
    }
    drop(tx);
    let colour = std::io::stdout().is_terminal();
    let mut merger = Merger::default();
    let mut down = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Line { prefix, line }) => merger.push(prefix, line, Instant::now()),
                Some(Msg::Down { host, error }) => {
                    eprintln!("warning: host {host} unreachable, no logs from it: {error}");
                    down.push(host);
                }
                None => break,
            },
            _ = tick.tick(), if a.follow => {
                if !print(merger.ready(Instant::now(), HOLD), colour, a.timestamps) {
                    return Ok(());
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    print(merger.drain(), colour, a.timestamps);
    match down.as_slice() {
        [] => Ok(()),
        hosts => {
            Err(Failure::new(ExitCode::NotReady, format!("no logs from unreachable host(s) {}", hosts.join(", "))))
        }
    }
}

/// One host's part: its containers (and, with `-f`, the ones that appear later).
struct Target {
    app: String,
    ns: String,
    component: Option<Component>,
    from: LogsFrom,
    since: Option<SystemTime>,
    tx: mpsc::UnboundedSender<Msg>,
}

impl Target {
    async fn host(self, pool: &HostPool, host: &Host) {
        let name = host.metadata.name.clone();
        let client = match pool.client(host).await {
            Ok(c) => c,
            Err(e) => return self.down(&name, e.to_string()),
        };
        let listed = match dlogs::containers(&client, &self.app, &self.ns, self.component.as_ref()).await {
            Ok(l) => l,
            Err(e) => return self.down(&name, e.to_string()),
        };
        let seen: Seen = Arc::default();
        let mut readers = tokio::task::JoinSet::new();
        for c in listed {
            let from = LogsFrom { follow: self.from.follow && c.running, ..self.from.clone() };
            readers.spawn(self.reader(client.clone(), c, from, seen.clone()));
        }
        if !self.from.follow {
            while readers.join_next().await.is_some() {}
            return;
        }
        let mut warned = false;
        loop {
            tokio::time::sleep(POLL).await;
            while readers.try_join_next().is_some() {}
            let listed = match dlogs::containers(&client, &self.app, &self.ns, self.component.as_ref()).await {
                Ok(l) => l,
                Err(e) => {
                    if !warned {
                        eprintln!("warning: host {name}: cannot list containers (retrying): {e}");
                    }
                    warned = true;
                    continue;
                }
            };
            warned = false;
            for c in listed.into_iter().filter(|c| c.running) {
                let last = match seen.lock().get(&c.id) {
                    Some((_, true)) => continue,
                    Some((last, false)) => *last,
                    None => None,
                };
                // A new container (a replace) from its first line; a restarted one after its last.
                let since = last.or(self.since).map(epoch_secs).unwrap_or(0);
                let from = LogsFrom { follow: true, since, tail: None };
                readers.spawn(self.reader(client.clone(), c, from, seen.clone()));
            }
        }
    }

    fn down(&self, host: &str, error: String) {
        let _ = self.tx.send(Msg::Down { host: host.to_string(), error });
    }

    fn reader(
        &self,
        client: HostClient,
        c: AppContainer,
        from: LogsFrom,
        seen: Seen,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, since) = (self.tx.clone(), self.since);
        let prefix: Arc<str> = format!("{} {}", client.name, c.component).into();
        let last = {
            let mut s = seen.lock();
            let entry = s.entry(c.id.clone()).or_insert((None, false));
            entry.1 = true;
            entry.0
        };
        async move {
            let mut newest = last;
            let result = dlogs::read(&client, &c.id, &from, |line| {
                // Docker's `since` counts whole seconds: drop what is older than asked, or already shown.
                if since.is_some_and(|s| line.at < s) || last.is_some_and(|l| line.at <= l) {
                    return;
                }
                newest = newest.max(Some(line.at));
                let _ = tx.send(Msg::Line { prefix: prefix.clone(), line });
            })
            .await;
            if let Err(e) = result {
                if !e.is_not_found() {
                    eprintln!("warning: {e}");
                }
            }
            seen.lock().insert(c.id.clone(), (newest, false));
        }
    }
}

fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Per container id: the newest timestamp printed, and whether a reader is attached now.
type Seen = Arc<Mutex<HashMap<String, (Option<SystemTime>, bool)>>>;

/// A line waiting in the [`Merger`]: timestamp, arrival order, arrival time, prefix, the line.
type Queued = (SystemTime, u64, Instant, Arc<str>, LogLineOrd);

/// Orders lines from many streams by their timestamps. A line is released once it has waited
/// `hold` since it arrived, so a slightly later host's earlier line still comes first.
#[derive(Default)]
pub struct Merger {
    heap: BinaryHeap<Reverse<Queued>>,
    seq: u64,
}

/// A [`LogLine`] carried through the heap (its order is the heap key's, not its own).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogLineOrd(LogLine);

impl PartialOrd for LogLineOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LogLineOrd {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Merger {
    pub fn push(&mut self, prefix: Arc<str>, line: LogLine, arrived: Instant) {
        self.seq += 1;
        self.heap.push(Reverse((line.at, self.seq, arrived, prefix, LogLineOrd(line))));
    }

    /// The lines, oldest first, whose wait is over at `now`.
    pub fn ready(&mut self, now: Instant, hold: Duration) -> Vec<(Arc<str>, LogLine)> {
        let mut out = Vec::new();
        while let Some(Reverse((_, _, arrived, _, _))) = self.heap.peek() {
            if now.duration_since(*arrived) < hold {
                break;
            }
            let Reverse((_, _, _, prefix, line)) = self.heap.pop().expect("peeked");
            out.push((prefix, line.0));
        }
        out
    }

    /// Every line left, oldest first.
    pub fn drain(&mut self) -> Vec<(Arc<str>, LogLine)> {
        let mut out = Vec::with_capacity(self.heap.len());
        while let Some(Reverse((_, _, _, prefix, line))) = self.heap.pop() {
            out.push((prefix, line.0));
        }
        out
    }
}

/// Writes the lines; false when stdout is closed (`berth logs | head`).
fn print(lines: Vec<(Arc<str>, LogLine)>, colour: bool, timestamps: bool) -> bool {
    let mut out = std::io::stdout().lock();
    for (prefix, line) in lines {
        let prefix = if colour { format!("\x1b[{}m{prefix}\x1b[0m", colour_of(&prefix)) } else { prefix.to_string() };
        let stamp = if timestamps { format!("{} ", line.stamp) } else { String::new() };
        if writeln!(out, "{prefix} | {stamp}{}", line.text).is_err() {
            return false;
        }
    }
    out.flush().is_ok()
}

/// One of six ANSI colours, the same for a host and component on every run.
fn colour_of(prefix: &str) -> u8 {
    31 + (prefix.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32)) % 6) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(secs: u64, text: &str) -> LogLine {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        LogLine { at, stamp: String::new(), text: text.into(), stderr: false }
    }

    #[test]
    fn lines_of_two_hosts_come_out_in_time_order() {
        let (mut m, t0) = (Merger::default(), Instant::now());
        let (h1, h2): (Arc<str>, Arc<str>) = ("host1 role/web".into(), "host2 role/web".into());
        m.push(h1.clone(), line(3, "c"), t0);
        m.push(h1.clone(), line(1, "a"), t0);
        m.push(h2.clone(), line(2, "b"), t0 + Duration::from_millis(200));
        // The first look releases only what waited long enough; the late line's wait is not over.
        let first: Vec<String> = m.ready(t0 + HOLD, HOLD).into_iter().map(|(_, l)| l.text).collect();
        assert_eq!(first, ["a"]);
        let rest: Vec<(String, String)> = m.drain().into_iter().map(|(p, l)| (p.to_string(), l.text)).collect();
        assert_eq!(rest, [("host2 role/web".to_string(), "b".to_string()), ("host1 role/web".into(), "c".into())]);
    }
}
