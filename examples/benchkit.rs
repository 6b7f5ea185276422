//! Measurements `scripts/bench` cannot take from a shell with the precision it needs. Every
//! subcommand prints one line of JSON on stdout.
//!
//! ```text
//! benchkit react  --etcd URL --prefix P -f hosts.yaml -f app.yaml --changes 50
//!     The App (already applied and Ready under the running operator) has a role `mover` on one
//!     host; each change moves it to the next host. Latency = the `create` event's TimeNano on the
//!     new host minus the wall clock just before the etcd write (Store::apply: one read, one txn).
//!     Each change is waited out (status Ready for its generation) before the next; then, as the
//!     reference, a bare `docker create` of a like container on the same host is timed the same way.
//! benchkit drift  --etcd URL --prefix P -f hosts.yaml --app NAME -n NS --role ROLE --trials 20
//!     `docker rm -f` (force remove) of the role's container, host by host in turn; latency = the
//!     `start` event's TimeNano of its replacement minus the wall clock just before the remove call.
//! benchkit cachemem --hosts 1000 --containers 20
//!     RSS growth of filling HostPool's per-host observation caches with synthetic observations.
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{EventsOptions, ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;
use futures::StreamExt;
use tokio::sync::mpsc;

use berth::docker::HostPool;
use berth::engine::{AppStatus, Phase};
use berth::plan::{ContainerState, HostObservation, ObservedContainer, ObservedNetwork};
use berth::spec::{self, App, Host, Resource};
use berth::store::Store;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Default)]
struct Args {
    etcd: String,
    prefix: String,
    files: Vec<PathBuf>,
    app: String,
    namespace: String,
    role: String,
    n: usize,
    hosts: usize,
    containers: usize,
}

fn parse(mut it: impl Iterator<Item = String>) -> Args {
    let mut a = Args { n: 20, hosts: 1000, containers: 20, ..Default::default() };
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--etcd" => a.etcd = val(),
            "--prefix" => a.prefix = val(),
            "-f" => a.files.push(PathBuf::from(val())),
            "--app" => a.app = val(),
            "-n" => a.namespace = val(),
            "--role" => a.role = val(),
            "--changes" | "--trials" => a.n = val().parse().expect("a count"),
            "--hosts" => a.hosts = val().parse().expect("a count"),
            "--containers" => a.containers = val().parse().expect("a count"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

#[tokio::main]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_default();
    let args = parse(argv);
    let result = match cmd.as_str() {
        "react" => react(args).await,
        "drift" => drift(args).await,
        "cachemem" => cachemem(args),
        _ => Err("usage: benchkit react|drift|cachemem ...".into()),
    };
    if let Err(e) = result {
        eprintln!("benchkit {cmd}: {e}");
        std::process::exit(1);
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as i64
}

fn load(files: &[PathBuf]) -> Result<(Vec<Host>, Vec<App>), Error> {
    let (mut hosts, mut apps) = (Vec::new(), Vec::new());
    for l in spec::load_paths(files).map_err(|e| e.to_string())? {
        match l.resource {
            Resource::Host(h) => hosts.push(h),
            Resource::App(a) => apps.push(a),
            Resource::Secret(_) => return Err("the benchmarks take no Secrets".into()),
        }
    }
    Ok((hosts, apps))
}

fn docker_of(h: &Host) -> Result<Docker, Error> {
    let path = h.spec.endpoint.strip_prefix("unix://").ok_or("benchkit speaks unix:// endpoints only")?;
    Ok(Docker::connect_with_unix(path, 60, &bollard::ClientVersion { major_version: 1, minor_version: 41 })?)
}

/// One container event as the daemon stamped it.
#[derive(Debug)]
struct Event {
    host: String,
    action: String,
    id: String,
    name: String,
    time_nano: i64,
}

/// Streams `actions` events of containers labelled `berth.namespace=NS` from every host into one channel.
/// Returns once every subscription has reached its daemon (the first event or a short pause).
async fn subscribe(hosts: &[Host], ns: &str, actions: &[&str]) -> Result<mpsc::UnboundedReceiver<Event>, Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    for h in hosts {
        let docker = docker_of(h)?;
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), actions.iter().map(|s| s.to_string()).collect()),
            ("label".to_string(), vec![format!("berth.namespace={ns}")]),
        ]);
        let host = h.metadata.name.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stream = docker.events(Some(EventsOptions { filters: Some(filters), ..Default::default() }));
            while let Some(Ok(m)) = stream.next().await {
                let actor = m.actor.unwrap_or_default();
                let attrs = actor.attributes.unwrap_or_default();
                let _ = tx.send(Event {
                    host: host.clone(),
                    action: m.action.unwrap_or_default(),
                    id: actor.id.unwrap_or_default(),
                    name: attrs.get("name").cloned().unwrap_or_default(),
                    time_nano: m.time_nano.unwrap_or_default(),
                });
            }
        });
    }
    // The events request is sent when the stream is first polled; give the daemons a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(rx)
}

/// Waits until the app's status is settled for its current generation; errors unless Ready.
async fn wait_settled(store: &Store, ns: &str, name: &str, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let app = store.get_app(ns, name).await?.ok_or("app vanished")?;
        if let Some(s) = store.get_status::<AppStatus>(ns, name).await? {
            if s.settled_for(&app.value) {
                return if s.phase == Phase::Ready {
                    Ok(())
                } else {
                    Err(format!("{}: {}", s.phase, s.message).into())
                };
            }
        }
        if Instant::now() > deadline {
            return Err(format!("app/{name} -n {ns} not settled within {timeout:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn summary(name: &str, mut ms: Vec<f64>) -> String {
    ms.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let pct = |p: f64| ms[(((ms.len() as f64) * p).ceil() as usize).clamp(1, ms.len()) - 1];
    format!(
        "{{\"figure\":\"{name}\",\"n\":{},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"min_ms\":{:.2},\"max_ms\":{:.2},\"samples_ms\":[{}]}}",
        ms.len(),
        pct(0.50),
        pct(0.99),
        ms[0],
        ms[ms.len() - 1],
        ms.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(",")
    )
}

async fn react(a: Args) -> Result<(), Error> {
    let (hosts, apps) = load(&a.files)?;
    let mut app = apps.into_iter().next().ok_or("give the App file")?;
    let (name, ns) = (app.metadata.name.clone(), app.namespace().to_string());
    let store = Store::connect(std::slice::from_ref(&a.etcd), &a.prefix).await?;
    let mut events = subscribe(&hosts, &ns, &["create"]).await?;
    wait_settled(&store, &ns, &name, Duration::from_secs(60)).await?;
    let names: Vec<String> = hosts.iter().map(|h| h.metadata.name.clone()).collect();
    let start_on = app.spec.roles.get("mover").ok_or("the App needs a role `mover`")?.hosts[0].clone();
    let mut at = names.iter().position(|h| *h == start_on).ok_or("mover's host is not a Host")?;
    let (mut samples, mut reference) = (Vec::new(), Vec::new());
    for _ in 0..a.n {
        at = (at + 1) % names.len();
        app.spec.roles.get_mut("mover").expect("mover").hosts = vec![names[at].clone()];
        while events.try_recv().is_ok() {}
        let t0 = now_ns();
        store.apply(&Resource::App(app.clone()), false).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let ev = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Some(ev)) if ev.host == names[at] && ev.name.contains("-mover-") => break ev,
                Ok(Some(_)) => continue,
                _ => return Err("no create event within 30s".into()),
            }
        };
        samples.push((ev.time_nano - t0) as f64 / 1e6);
        if std::env::var_os("BENCHKIT_VERBOSE").is_some() {
            eprintln!(
                "change to {}: written at {t0} ns, created at {} ns: {:.2} ms",
                names[at],
                ev.time_nano,
                (ev.time_nano - t0) as f64 / 1e6
            );
        }
        wait_settled(&store, &ns, &name, Duration::from_secs(60)).await?;
        // Let the prune's own events reach the operator before the next change.
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The reference, taken right after on the same host and timed the same way: the daemon's own
        // create of a like container (no berth.managed-by label, so the operator never sees it).
        reference.push(bare_create(&hosts[at], &app.spec.image, &ns, &mut events).await?);
    }
    let (berth, floor) = (summary("react", samples), summary("docker-create", reference));
    println!("{{\"berth\":{berth},\"reference\":{floor}}}");
    Ok(())
}

/// One `docker create` (bollard) of a throw-away container on `host`: milliseconds from just before
/// the call to the daemon's `create` event, as for berth. The container is removed again.
async fn bare_create(
    host: &Host,
    image: &str,
    ns: &str,
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> Result<f64, Error> {
    let docker = docker_of(host)?;
    let name = format!("bench-react-reference-{}", now_ns());
    let body = bollard::models::ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec!["sh".into(), "-c".into(), "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait".into()]),
        labels: Some(HashMap::from([("berth.namespace".to_string(), ns.to_string())])),
        ..Default::default()
    };
    let options = bollard::query_parameters::CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
    while events.try_recv().is_ok() {}
    let t0 = now_ns();
    let id = docker.create_container(Some(options), body).await?.id;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ev = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(ev)) if ev.id == id => break ev,
            Ok(Some(_)) => continue,
            _ => return Err("no create event for the reference container within 30s".into()),
        }
    };
    docker.remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await?;
    Ok((ev.time_nano - t0) as f64 / 1e6)
}

async fn drift(a: Args) -> Result<(), Error> {
    let (hosts, _) = load(&a.files)?;
    let store = Store::connect(std::slice::from_ref(&a.etcd), &a.prefix).await?;
    let mut events = subscribe(&hosts, &a.namespace, &["start"]).await?;
    wait_settled(&store, &a.namespace, &a.app, Duration::from_secs(60)).await?;
    let mut samples = Vec::new();
    for i in 0..a.n {
        let host = &hosts[i % hosts.len()];
        let docker = docker_of(host)?;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("berth.namespace={}", a.namespace),
                format!("berth.app={}", a.app),
                format!("berth.role={}", a.role),
            ],
        )]);
        let listed = docker
            .list_containers(Some(ListContainersOptions { filters: Some(filters), ..Default::default() }))
            .await?;
        let victim = listed
            .into_iter()
            .find_map(|c| c.id)
            .ok_or_else(|| format!("no {} container on {}", a.role, host.metadata.name))?;
        while events.try_recv().is_ok() {}
        let t0 = now_ns();
        docker.remove_container(&victim, Some(RemoveContainerOptions { force: true, ..Default::default() })).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let ev = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Some(ev)) if ev.host == host.metadata.name && ev.action == "start" && ev.id != victim => break ev,
                Ok(Some(_)) => continue,
                _ => return Err("no replacement started within 60s".into()),
            }
        };
        samples.push((ev.time_nano - t0) as f64 / 1e6);
        wait_settled(&store, &a.namespace, &a.app, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{}", summary("drift", samples));
    Ok(())
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm.split_whitespace().nth(1).expect("rss field").parse().expect("number");
    pages * 4096
}

fn hex64(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..4)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect()
}

/// A realistic managed container as `docker::ops::observe` builds it: the berth label contract, two
/// user labels, a 64-hex id, a `{app}-{ns}-{role}-{hash8}` name and a pinned image reference.
fn synthetic(host: usize, i: usize) -> ObservedContainer {
    let seed = (host * 1000 + i) as u64;
    let hash = hex64(seed ^ 0xABCD);
    let (app, ns, role) = (format!("app{:03}", i % 7), "production", format!("role{i:02}"));
    let labels: BTreeMap<String, String> = [
        ("berth.managed-by", "berth".to_string()),
        ("berth.app", app.clone()),
        ("berth.namespace", ns.to_string()),
        ("berth.role", role.clone()),
        ("berth.config-hash", hash.clone()),
        ("team", "payments".to_string()),
        ("tier", "frontend".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ObservedContainer {
        id: hex64(seed),
        name: format!("{app}-{ns}-{role}-{}", &hash[..8]),
        labels,
        state: ContainerState::Running,
        health: None,
        image: format!("registry.example.com/shop/app@sha256:{}", hex64(seed ^ 0x5555)),
        created: 1_700_000_000 + seed as i64,
    }
}

fn cachemem(a: Args) -> Result<(), Error> {
    let pool = HostPool::new();
    // Touch the pool's map and the allocator once so their fixed costs stay out of the delta.
    pool.cache("warm-up").store(0, std::sync::Arc::new(HostObservation::default()));
    let before = rss_bytes();
    for h in 0..a.hosts {
        let name = format!("host{h:04}");
        let obs = HostObservation {
            reachable: true,
            containers: (0..a.containers).map(|i| synthetic(h, i)).collect(),
            networks: (0..7)
                .map(|i| ObservedNetwork {
                    name: format!("berth-app{i:03}-production"),
                    labels: [("berth.managed-by", "berth"), ("berth.app", "app"), ("berth.namespace", "production")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                })
                .collect(),
        };
        let cache = pool.cache(&name);
        let seq = cache.begin();
        cache.store(seq, std::sync::Arc::new(obs));
    }
    let after = rss_bytes();
    std::hint::black_box(&pool);
    let delta = after.saturating_sub(before);
    println!(
        "{{\"figure\":\"cachemem\",\"hosts\":{},\"containers_per_host\":{},\"rss_before_mb\":{:.1},\"rss_after_mb\":{:.1},\"delta_mb\":{:.1},\"bytes_per_container\":{}}}",
        a.hosts,
        a.containers,
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        delta as f64 / 1048576.0,
        delta / (a.hosts * a.containers).max(1) as u64
    );
    Ok(())
}
