//! The subcommands that talk to Docker hosts: `plan`, `converge`, `status`.

use std::path::PathBuf;

use super::{connect, output, readable, ExitCode, Failure, GlobalArgs, OutputFormat};
use crate::controller::finalizer;
use crate::docker::HostPool;
use crate::engine::images::Pins;
use crate::engine::{self, AppStatus, Phase};
use crate::plan;
use crate::spec::{self, App, Resource};
use crate::store::{Store, Versioned};

/// `berth plan`: observe, resolve images (read-only registry look-ups) and print the actions.
pub async fn plan(
    global: &GlobalArgs,
    name: Option<String>,
    namespace: String,
    files: Vec<PathBuf>,
    format: OutputFormat,
) -> Result<(), Failure> {
    let store = connect(global).await?;
    let mut hosts = readable(store.list_hosts().await?);
    let app = if files.is_empty() {
        let name = name.ok_or_else(|| Failure::new(ExitCode::InvalidInput, "name an App, or give -f FILE"))?;
        load_app(&store, &name, &namespace).await?.value
    } else {
        let loaded = spec::load_paths(&files)?;
        let mut apps = Vec::new();
        for l in loaded {
            match l.resource {
                Resource::Host(h) => {
                    hosts.retain(|x| x.metadata.name != h.metadata.name);
                    hosts.push(h);
                }
                Resource::App(a) => apps.push(a),
                Resource::Secret(_) => {}
            }
        }
        if let Some(n) = &name {
            apps.retain(|a| &a.metadata.name == n);
        }
        match apps.len() {
            1 => apps.remove(0),
            0 => return Err(Failure::new(ExitCode::InvalidInput, "the files hold no matching App")),
            _ => return Err(Failure::new(ExitCode::InvalidInput, "the files hold several Apps: name one")),
        }
    };
    let pool = HostPool::new();
    let observation = pool.observe(&hosts).await;
    // The pins the operator would reuse (an older berth kept them in the status); `plan` writes nothing.
    let (ns, name) = (app.namespace(), app.metadata.name.as_str());
    let pins: Option<Pins> = match store.get_pins(ns, name).await.unwrap_or(None) {
        Some(p) => Some(p),
        None => store.get_status::<AppStatus>(ns, name).await.unwrap_or(None).as_ref().map(Pins::from_status),
    };
    // Registry credentials are the operator's to open: a private image is resolved as the hosts can.
    let images = engine::resolve_images(&app, &hosts, pins.as_ref(), &observation.clients, &Default::default())
        .await
        .map_err(|e| Failure::new(ExitCode::NotReady, e))?;
    // Secret values stay sealed: the plan needs only their revisions (what the config hash covers).
    let secrets = engine::secrets::revisions(&store, &app).await?;
    let desired = plan::desired_state_with(&app, &hosts, &images, &secrets)
        .map_err(|e| Failure::new(ExitCode::InvalidInput, e.to_string()))?;
    let plan = plan::plan_desired(&app, &hosts, &desired, &observation.hosts)
        .map_err(|e| Failure::new(ExitCode::InvalidInput, e.to_string()))?;
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&plan).expect("plans serialize")),
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&plan).expect("plans serialize")),
        OutputFormat::Table => {
            if plan.is_empty() {
                println!("app/{} -n {}: nothing to do", app.metadata.name, app.namespace());
            } else {
                print!("{plan}");
            }
        }
    }
    for (host, e) in &observation.errors {
        eprintln!("warning: host {host} unreachable, nothing planned there: {e}");
    }
    Ok(())
}

/// `berth converge`: one pass of the engine; the exit code says whether the App is Ready.
pub async fn converge(global: &GlobalArgs, name: &str, namespace: &str) -> Result<(), Failure> {
    let store = connect(global).await?;
    let app = load_app(&store, name, namespace).await?;
    let hosts = readable(store.list_hosts().await?);
    let pool = HostPool::new();
    let keyring = load_keyring(std::env::var_os("BERTH_SEALING_KEY_FILE").map(std::path::PathBuf::from).as_deref())?;
    let outcome = engine::converge(&store, &pool, &app, &hosts, keyring.as_ref()).await?;
    // What this converge pulled is recorded like the operator's pulls, so the clean-up may remove it.
    if let Err((e, _)) = crate::controller::image_gc::record(&store, outcome.pulls.clone()).await {
        tracing::warn!(error = %e, "cannot record the images this converge pulled");
    }
    let finished = finalizer::finish(&store, &app, &outcome).await?;
    let counts: Vec<String> = outcome.actions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let did = if counts.is_empty() { "no changes".to_string() } else { counts.join(", ") };
    if finished {
        println!("app/{name} -n {namespace} deleted ({did})");
        return Ok(());
    }
    print!("{}", render_status(name, namespace, &outcome.status));
    println!("actions: {did}");
    match outcome.status.phase {
        Phase::Ready => Ok(()),
        phase => Err(Failure::new(
            ExitCode::NotReady,
            format!("app/{name} -n {namespace} is {phase}: {}", outcome.status.message),
        )),
    }
}

/// `berth status`: what the last converge wrote.
pub async fn status(global: &GlobalArgs, name: &str, namespace: &str, format: OutputFormat) -> Result<(), Failure> {
    let store = connect(global).await?;
    let status: AppStatus = match store.get_status(namespace, name).await? {
        Some(s) => s,
        None => {
            load_app(&store, name, namespace).await?;
            return Err(Failure::new(
                ExitCode::NotReady,
                format!("app/{name} -n {namespace} has no status yet: it was never converged"),
            ));
        }
    };
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&status).expect("status serializes")),
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&status).expect("status serializes")),
        OutputFormat::Table => print!("{}", render_status(name, namespace, &status)),
    }
    Ok(())
}

async fn load_app(store: &Store, name: &str, namespace: &str) -> Result<Versioned<App>, Failure> {
    store
        .get_app(namespace, name)
        .await?
        .ok_or_else(|| Failure::new(ExitCode::NotFound, format!("app/{name} -n {namespace} not found")))
}

/// A person's view of a status: the phase line, then one row per container.
pub fn render_status(name: &str, namespace: &str, s: &AppStatus) -> String {
    let mut out = format!(
        "app/{name} -n {namespace}: {} (generation {}){}\n",
        s.phase,
        s.observed_generation,
        if s.message.is_empty() { String::new() } else { format!(": {}", s.message) }
    );
    let mut rows = vec![vec![
        "HOST".to_string(),
        "CONTAINER".into(),
        "COMPONENT".into(),
        "STATE".into(),
        "HEALTH".into(),
        "ID".into(),
    ]];
    for (host, hs) in &s.hosts {
        if let Some(e) = &hs.error {
            rows.push(vec![host.clone(), "-".into(), "-".into(), "error".into(), "-".into(), e.clone()]);
        }
        for c in &hs.containers {
            rows.push(vec![
                host.clone(),
                c.name.clone(),
                c.component.clone(),
                c.state.to_string(),
                c.health.map_or_else(|| "-".to_string(), |h| h.to_string()),
                c.id.chars().take(12).collect(),
            ]);
        }
    }
    if rows.len() > 1 {
        out.push_str(&output::table(&rows));
    }
    out
}

/// Follows an App's status until it is settled for the App's current generation: Ready (Ok), or
/// Degraded/Blocked (NotReady), or the timeout (Timeout). Shows each host's progress as it goes:
/// a live display on a terminal, plain lines otherwise.
pub async fn wait_ready(
    store: &Store,
    name: &str,
    namespace: &str,
    timeout: std::time::Duration,
) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let deadline = tokio::time::Instant::now() + timeout;
    let live = std::io::stderr().is_terminal();
    let bar = live.then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    });
    let mut last_line = String::new();
    // Woken by every write of the status key, so Ready is seen the moment the operator writes it;
    // the 250 ms poll stays as the fallback (and keeps the progress line and the timeout honest).
    let mut status_writes = store.watch_key(&store.keys().status(namespace, name)).await.ok();
    loop {
        let app = load_app(store, name, namespace).await?;
        let generation = app.value.metadata.generation.unwrap_or(0);
        let status: Option<AppStatus> = store.get_status(namespace, name).await?;
        let line = match &status {
            None => format!("app/{name} -n {namespace}: waiting for the operator"),
            Some(s) => progress_line(name, namespace, s, generation),
        };
        if line != last_line {
            match &bar {
                Some(pb) => pb.set_message(line.clone()),
                None => eprintln!("{line}"),
            }
            last_line = line;
        }
        if let Some(s) = status.filter(|s| s.settled_for(&app.value)) {
            if let Some(pb) = &bar {
                pb.finish_and_clear();
            }
            return match s.phase {
                Phase::Ready => {
                    println!("app/{name} -n {namespace} Ready (generation {generation})");
                    Ok(())
                }
                phase => Err(Failure::new(
                    ExitCode::NotReady,
                    format!("app/{name} -n {namespace} is {phase}: {}", s.message),
                )),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            if let Some(pb) = &bar {
                pb.finish_and_clear();
            }
            return Err(Failure::new(
                ExitCode::Timeout,
                format!(
                    "app/{name} -n {namespace} not Ready for generation {generation} within {}: {last_line}",
                    humantime::format_duration(timeout)
                ),
            ));
        }
        let poll = std::time::Duration::from_millis(250);
        match status_writes.as_mut() {
            Some(writes) => match tokio::time::timeout(poll, writes.changed()).await {
                Ok(true) | Err(_) => {}
                Ok(false) => status_writes = None, // the watch ended: poll from now on
            },
            None => tokio::time::sleep(poll).await,
        }
    }
}

/// `app/shop -n production: Progressing (gen 2/3) host1 1/1 · host2 0/2 · host3 unreachable`
fn progress_line(name: &str, namespace: &str, s: &AppStatus, generation: i64) -> String {
    let hosts: Vec<String> = s
        .hosts
        .iter()
        .map(|(h, hs)| {
            if !hs.reachable {
                format!("{h} unreachable")
            } else {
                let ready = hs.containers.iter().filter(|c| c.serving()).count();
                format!("{h} {ready}/{}", hs.containers.len())
            }
        })
        .collect();
    let mut line = format!(
        "app/{name} -n {namespace}: {} (generation {}/{generation}) {}",
        s.phase,
        s.observed_generation,
        hosts.join(" · ")
    );
    // What the operator is waiting for (a health gate, a host), in the status's own words.
    if s.phase != Phase::Ready && !s.message.is_empty() {
        line.push_str(" — ");
        line.push_str(&s.message);
    }
    line
}

/// The operator's identities from `--sealing-key` / `BERTH_SEALING_KEY_FILE`; none when not given.
pub fn load_keyring(path: Option<&std::path::Path>) -> Result<Option<crate::sealing::Keyring>, Failure> {
    let Some(path) = path else { return Ok(None) };
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(ExitCode::InvalidInput, format!("--sealing-key {shown}: cannot read: {e}")))?;
    crate::sealing::Keyring::load(&text)
        .map(Some)
        .map_err(|e| Failure::new(ExitCode::InvalidInput, format!("--sealing-key {shown}: {e}")))
}
