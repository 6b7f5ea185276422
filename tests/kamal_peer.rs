//! The real Kamal 2.11 as a peer on the test bed (`tests/common/kamal.rs`): Kamal deploys over real
//! sshds in the bed's hosts; what `berth import kamal` makes of a Kamal file is checked against what
//! Kamal itself resolves and runs for the same file and destination; and an imported app runs under
//! berth over `ssh://` Hosts through the same sshds.
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::kamal::KamalProject;
use common::run::{berth_cmd, Run};
use common::testbed::{secs, Testbed};
use common::world::{status_ids, Ctx};
use serde_json::Value;

/// Every container's command: exits at once on SIGTERM (httpd as PID 1 would ignore it), so Kamal's
/// stops and the clean-up are quick.
const CMD: &str = r#"sh -c "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait""#;

/// A small app: accessory `db` on host1, role `web` on every host, role `jobs` on host2 and host3,
/// clear env for all and one of each role's own.
fn small_app(k: &KamalProject) -> String {
    let [h1, h2, h3] = ["host1", "host2", "host3"].map(|h| k.address(h).to_string());
    format!(
        "service: {service}\nimage: {image}\n{registry}{builder}{ssh}\
         servers:\n  web:\n    hosts: [{h1}, {h2}, {h3}]\n    cmd: {CMD}\n    proxy: false\n    env:\n      clear:\n        ROLE_NAME: web\n\
         \x20 jobs:\n    hosts: [{h2}, {h3}]\n    cmd: {CMD}\n    proxy: false\n\
         env:\n  clear:\n    GREETING: hello\n\
         accessories:\n  db:\n    image: {accessory}\n    host: {h1}\n    cmd: {CMD}\n    env:\n      clear:\n        DB_NAME: demo\n",
        service = k.service,
        image = k.image_name(),
        registry = k.registry_yaml(),
        builder = k.builder_yaml(),
        ssh = k.ssh_yaml(),
        accessory = k.tb.images.accessory,
    )
}

/// (a) The harness is right: Kamal sets the small app up over the sshds, every container runs where
/// the file says with the env it says, and Kamal's own view (`kamal config`, `server exec -r`) agrees.
#[test]
fn kamal_sets_up_an_accessory_and_two_roles_over_the_beds_sshds() {
    let tb = Testbed::get();
    let _hosts = tb.shared();
    let k = KamalProject::new("kpeer-smoke");
    k.push_image("v1");
    k.write("config/deploy.yml", &small_app(&k));

    let config = k.config(None);
    let roles: Vec<&str> = config[":roles"].as_sequence().unwrap().iter().filter_map(|r| r.as_str()).collect();
    assert_eq!(roles, ["jobs", "web"], "{config:?}");
    assert_eq!(k.role_hosts("jobs", None), [k.address("host2"), k.address("host3")]);

    let r = k.kamal_ok(&["setup", "--skip-push"], secs(300));
    eprintln!("kamal setup took {:?}", r.elapsed);
    for host in ["host1", "host2", "host3"] {
        let web = k.running(host, "web");
        assert_eq!(web.len(), 1, "web on {host}: {:?}", k.containers(host));
        assert_eq!(web[0].name, format!("{}-web-v1", k.service));
        assert_eq!(web[0].env.get("GREETING").map(String::as_str), Some("hello"));
        assert_eq!(web[0].env.get("ROLE_NAME").map(String::as_str), Some("web"));
        let jobs = k.running(host, "jobs");
        assert_eq!(jobs.len(), usize::from(host != "host1"), "jobs on {host}: {:?}", k.containers(host));
        if let Some(j) = jobs.first() {
            assert_eq!(j.env.get("ROLE_NAME"), None, "{j:?}");
            assert_eq!(j.cmd, ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]);
        }
    }
    assert_eq!(k.accessory_hosts("db"), ["host1"]);
    let db = k.containers("host1").into_iter().find(|c| c.service == format!("{}-db", k.service)).unwrap();
    assert_eq!(db.env.get("DB_NAME").map(String::as_str), Some("demo"), "{db:?}");
    assert_eq!(db.image, tb.images.accessory);
}

/// What a deploy resolves to, in bed host names: the same shape read from Kamal (its config, its
/// `server exec -r`, the containers it ran) and from the resources `berth import kamal` writes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Resolved {
    /// Role → the hosts it runs on.
    roles: BTreeMap<String, Vec<String>>,
    /// `ROLE@HOST` or `accessory NAME@HOST` → the env of that container (secrets as their values).
    env: BTreeMap<String, BTreeMap<String, String>>,
    /// Accessory → the hosts it runs on.
    accessories: BTreeMap<String, Vec<String>>,
}

/// The fixtures' placeholders filled in for `k`'s service and the bed.
fn render(k: &KamalProject, text: &str) -> String {
    let mut out = text
        .replace("{{SERVICE}}", &k.service)
        .replace("{{IMAGE}}", &k.image_name())
        .replace("{{ACCESSORY_IMAGE}}", &k.tb.images.accessory);
    for (i, h) in ["host1", "host2", "host3"].iter().enumerate() {
        out = out.replace(&format!("{{{{HOST{}}}}}", i + 1), k.address(h));
    }
    out
}

/// Copies fixture `name` (tests/fixtures/kamal-peer/NAME) into the project: `deploy*.yml` rendered
/// into `config/` (the bed's registry, builder and ssh sections appended to `deploy.yml`), `secrets*`
/// into `.kamal/`.
fn install_fixture(k: &KamalProject, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kamal-peer").join(name);
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        if file == "deploy.yml" {
            k.write(
                "config/deploy.yml",
                &format!("{}{}{}{}", render(k, &text), k.registry_yaml(), k.builder_yaml(), k.ssh_yaml()),
            );
        } else if file.starts_with("deploy.") {
            k.write(&format!("config/{file}"), &render(k, &text));
        } else if file.starts_with("secrets") {
            k.write(&format!(".kamal/{file}"), &text);
        }
    }
}

/// What the real Kamal resolves for the project's files and `dest`: roles from `kamal config`, each
/// role's hosts from `kamal server exec -r`, then, after `kamal setup`, the env of every container
/// it ran and where each accessory runs.
fn kamal_resolved(k: &KamalProject, dest: Option<&str>) -> Resolved {
    let config = k.config(dest);
    let mut out = Resolved::default();
    for role in config[":roles"].as_sequence().expect(":roles").iter().filter_map(|r| r.as_str()) {
        let hosts = k.role_hosts(role, dest).iter().map(|a| k.host_at(a).to_string()).collect();
        out.roles.insert(role.to_string(), hosts);
    }
    let mut args = vec!["setup", "--skip-push"];
    args.extend(dest.iter().flat_map(|d| ["-d", *d]));
    let r = k.kamal_ok(&args, secs(400));
    eprintln!("kamal {} took {:?}", args.join(" "), r.elapsed);
    let accessory_prefix = format!("{}-", k.service);
    for h in k.tb.host_names() {
        for c in k.containers(h).into_iter().filter(|c| c.running) {
            if c.service == k.service {
                assert_eq!(c.destination, dest.unwrap_or(""), "{c:?}");
                out.env.insert(format!("{}@{h}", c.role), c.env);
            } else {
                let name = c.service.strip_prefix(&accessory_prefix).unwrap().to_string();
                out.env.insert(format!("accessory {name}@{h}"), c.env);
                out.accessories.entry(name).or_default().push(h.to_string());
            }
        }
    }
    out
}

/// `berth import kamal ... EXTRA` of the project's files for `dest`, as the YAML documents it prints.
fn berth_import(k: &KamalProject, dest: Option<&str>, extra: &[&str]) -> Vec<Value> {
    let config = k.dir.path().join("config/deploy.yml");
    let mut args = vec!["import", "kamal", "-c", config.to_str().unwrap(), "--version", k.version.as_str()];
    args.extend(dest.iter().flat_map(|d| ["-d", *d]));
    args.extend(extra);
    let out = berth_cmd().args(&args).current_dir(k.dir.path()).output().expect("run berth");
    let r = Run::of(out).expect(0);
    serde_yaml_ng::Deserializer::from_str(&r.stdout)
        .map(|d| serde_yaml_ng::with::singleton_map_recursive::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The bed host a Host resource's `ssh://USER@ADDRESS[:PORT][/SOCKET]` endpoint names.
fn endpoint_host<'a>(k: &'a KamalProject, endpoint: &str) -> &'a str {
    let rest = endpoint.strip_prefix("ssh://").unwrap_or_else(|| panic!("not an ssh endpoint: {endpoint}"));
    let authority = rest.split('/').next().unwrap();
    let address = authority.rsplit('@').next().unwrap().split(':').next().unwrap();
    k.host_at(address)
}

/// The values Kamal reads for `dest`: `.kamal/secrets-common`, then `.kamal/secrets` (`secrets.DEST`
/// with a destination); plain `KEY=VALUE` lines, as the fixtures write them.
fn kamal_secret_values(k: &KamalProject, dest: Option<&str>) -> BTreeMap<String, String> {
    let own = dest.map_or("secrets".to_string(), |d| format!("secrets.{d}"));
    let mut out = BTreeMap::new();
    for file in ["secrets-common", own.as_str()] {
        let text = std::fs::read_to_string(k.dir.path().join(".kamal").join(file)).unwrap_or_default();
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            out.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    out
}

/// An env value of a berth spec as the container gets it: a string, or the value of the secret its
/// `secretKeyRef` names (the import writes stubs without `--secrets`: the key is Kamal's secret name,
/// so the value is the one Kamal reads from its secrets files).
fn env_value(v: &Value, secrets: &BTreeMap<String, String>, imported: &BTreeMap<String, Value>) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => {
            let r = &v["secretKeyRef"];
            let (name, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
            let secret = imported.get(name).unwrap_or_else(|| panic!("no Secret {name} imported for {v}"));
            assert!(secret["stringData"].get(key).is_some(), "Secret {name} has no key {key}: {secret}");
            secrets.get(key).unwrap_or_else(|| panic!("Kamal has no secret {key} (for {v})")).clone()
        }
    }
}

fn env_of(
    maps: &[&Value],
    secrets: &BTreeMap<String, String>,
    imported: &BTreeMap<String, Value>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for m in maps {
        for (k, v) in m.as_object().into_iter().flatten() {
            out.insert(k.clone(), env_value(v, secrets, imported));
        }
    }
    out
}

/// What berth would run for the imported resources: each role's hosts and, per host, the App's env,
/// the role's and the host's (`hostEnv`); each accessory's hosts and env.
fn berth_resolved(k: &KamalProject, dest: Option<&str>, docs: &[Value]) -> Resolved {
    fn of_kind<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
        docs.iter().filter(move |d| d["kind"] == kind)
    }
    let hosts: BTreeMap<String, String> = of_kind(docs, "Host")
        .map(|h| {
            let name = h["metadata"]["name"].as_str().unwrap().to_string();
            (name, endpoint_host(k, h["spec"]["endpoint"].as_str().unwrap()).to_string())
        })
        .collect();
    let values = kamal_secret_values(k, dest);
    let secrets: BTreeMap<String, Value> =
        of_kind(docs, "Secret").map(|s| (s["metadata"]["name"].as_str().unwrap().to_string(), s.clone())).collect();
    let apps: Vec<&Value> = of_kind(docs, "App").collect();
    assert_eq!(apps.len(), 1, "one App in {docs:#?}");
    let spec = &apps[0]["spec"];
    let bed = |name: &Value| hosts.get(name.as_str().unwrap()).unwrap_or_else(|| panic!("no Host {name}")).clone();
    let mut out = Resolved::default();
    for (role, r) in spec["roles"].as_object().unwrap() {
        let mut on: Vec<String> = r["hosts"].as_array().unwrap().iter().map(bed).collect();
        for host in r["hosts"].as_array().unwrap() {
            let host_env = &r["hostEnv"][host.as_str().unwrap()];
            out.env.insert(
                format!("{role}@{}", bed(host)),
                env_of(&[&spec["env"], &r["env"], host_env], &values, &secrets),
            );
        }
        on.sort();
        out.roles.insert(role.clone(), on);
    }
    for (name, a) in spec["accessories"].as_object().into_iter().flatten() {
        // `hosts`, and the hosts of the roles in `roles`.
        let mut on: Vec<String> = a["hosts"].as_array().into_iter().flatten().map(bed).collect();
        for role in a["roles"].as_array().into_iter().flatten() {
            on.extend(out.roles[role.as_str().unwrap()].iter().cloned());
        }
        on.sort();
        on.dedup();
        for h in &on {
            out.env.insert(format!("accessory {name}@{h}"), env_of(&[&a["env"]], &values, &secrets));
        }
        out.accessories.insert(name.clone(), on);
    }
    out
}

/// (b) `berth import kamal` against the real Kamal, fixture by fixture and destination by
/// destination: the hosts of each role, each container's env and each accessory's hosts agree.
fn import_matches_kamal(fixture: &str, dest: Option<&str>) {
    let tb = Testbed::get();
    let _hosts = tb.shared();
    let k = KamalProject::new(&format!("kpeer-{fixture}"));
    k.push_image(&k.version.clone());
    install_fixture(&k, fixture);
    let berth = berth_resolved(&k, dest, &berth_import(&k, dest, &[]));
    let kamal = kamal_resolved(&k, dest);
    assert_eq!(berth, kamal, "berth import (left) and Kamal (right) differ for {fixture}, destination {dest:?}");
}

#[test]
fn import_of_tags_matches_kamal() {
    import_matches_kamal("tags", None);
}

#[test]
fn import_of_tags_for_staging_matches_kamal() {
    import_matches_kamal("tags", Some("staging"));
}

#[test]
fn import_of_plain_matches_kamal() {
    import_matches_kamal("plain", None);
}

/// (c) An imported Kamal app runs under berth over `ssh://` Hosts: the import's Hosts pointed at the
/// test sshds (the import writes the Kamal hosts' own ssh endpoints), applied with the App to a
/// private prefix of the bed's etcd and converged over ssh until `berth status` says Ready, with the
/// containers where Kamal would put them.
#[test]
fn berth_runs_an_imported_kamal_app_over_ssh_hosts() {
    let tb = Testbed::get();
    let _hosts = tb.shared();
    let ctx = Ctx::new("kpeer");
    let mut k = KamalProject::new("kpeer-berth");
    // The App is named after the service: a name of the world's, so its containers go with it.
    k.service = ctx.app("kpeer-berth");
    k.push_image(&k.version.clone());
    install_fixture(&k, "plain");
    // The import seals what the secrets files give (here the registry's) to a key of the test's.
    let key_file = ctx.dir.path().join("sealing.key");
    let recipient = ctx.berth(&["keygen", "--out", key_file.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    let secrets = k.dir.path().join(".kamal/secrets");
    let mut docs = berth_import(&k, None, &["--secrets", secrets.to_str().unwrap(), "--recipient", &recipient]);
    let app = docs.iter().find(|d| d["kind"] == "App").expect("an App")["metadata"].clone();
    let (name, ns) = (app["name"].as_str().unwrap().to_string(), app["namespace"].as_str().unwrap().to_string());
    assert_eq!(name, k.service);
    // The imported Host's name of each bed host (`10-213-0-11` for host1).
    let mut imported_name = BTreeMap::new();
    for doc in docs.iter_mut().filter(|d| d["kind"] == "Host") {
        let host = endpoint_host(&k, doc["spec"]["endpoint"].as_str().unwrap()).to_string();
        doc["spec"]["endpoint"] = Value::String(k.ssh_endpoint(&host));
        imported_name.insert(host, doc["metadata"]["name"].as_str().unwrap().to_string());
    }
    let text: Vec<String> = docs.iter().map(|d| serde_yaml_ng::to_string(d).unwrap()).collect();
    ctx.apply("imported.yaml", &text.join("---\n"));
    let ssh_config = k.ssh_config();
    let ssh =
        [("BERTH_SSH_CONFIG", ssh_config.to_str().unwrap()), ("BERTH_SEALING_KEY_FILE", key_file.to_str().unwrap())];
    ctx.berth_env(&["converge", &name, "-n", &ns], &ssh).expect(0);
    let status = ctx.wait_status(&name, &ns, secs(60), "Ready", |s| s["phase"] == "Ready");
    let expected = [("host1", 3), ("host2", 1), ("host3", 3)]; // web+workers+sidecar, search, workers+search+sidecar
    for (host, n) in expected {
        assert_eq!(status_ids(&status, &imported_name[host]).len(), n, "{host} in {status:#}");
    }
    let again = ctx.berth_env(&["converge", &name, "-n", &ns], &ssh).expect(0);
    assert_eq!(again.changes(), "", "a second converge over ssh has nothing to do: {}", again.stdout);
}

/// Copies a directory tree (a fixture's `config/` and `.kamal/`) into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let path = e.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The address a Host resource's `ssh://[USER@]ADDRESS[:PORT][/SOCKET]` endpoint names.
fn endpoint_address(endpoint: &str) -> String {
    let rest = endpoint.strip_prefix("ssh://").unwrap_or_else(|| panic!("not an ssh endpoint: {endpoint}"));
    let authority = rest.split('/').next().unwrap();
    authority.rsplit('@').next().unwrap().split(':').next().unwrap().to_string()
}

/// (b) for the import's own fixtures (tests/fixtures/kamal/NAME), whose servers are not the bed's:
/// Kamal reads a copy of the files whose `ssh` section alone is replaced (every connection goes to
/// host1's sshd through a proxy command, and Kamal names the configured host it meant), and each
/// role's hosts, as `kamal server exec -r ROLE` reaches them, must be the addresses of the Hosts the
/// import gives that role. Nothing is deployed (the images and proxies of these files are not on the
/// bed), so env and accessories are checked by the bed fixtures above.
fn import_places_roles_as_kamal(fixture: &str, dest: Option<&str>) {
    places_roles_as_kamal(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kamal").join(fixture), dest);
}

/// [`import_places_roles_as_kamal`] of the Kamal project (`config/`, `.kamal/`) in `src`.
fn places_roles_as_kamal(src: &Path, dest: Option<&str>) {
    let fixture = src.file_name().unwrap().to_str().unwrap();
    let tb = Testbed::get();
    let _hosts = tb.shared();
    let k = KamalProject::new(&format!("kpeer-{fixture}"));
    copy_tree(src, k.dir.path());
    let config = k.dir.path().join("config");
    let mut base: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(config.join("deploy.yml")).unwrap()).unwrap();
    base["ssh"] = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&k.ssh_yaml_through("host1")).unwrap()["ssh"].clone();
    k.write("config/kamal.yml", &serde_yaml_ng::to_string(&base).unwrap());
    if let Some(d) = dest {
        let mut over: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(config.join(format!("deploy.{d}.yml"))).unwrap()).unwrap();
        if let Some(m) = over.as_mapping_mut() {
            m.remove("ssh");
        }
        k.write(&format!("config/kamal.{d}.yml"), &serde_yaml_ng::to_string(&over).unwrap());
    }
    let kamal_config = ["-c", "config/kamal.yml"];
    let roles = k.config_of(&kamal_config, dest);
    let mut kamal = BTreeMap::new();
    for role in roles[":roles"].as_sequence().expect(":roles").iter().filter_map(|r| r.as_str()) {
        kamal.insert(role.to_string(), k.role_hosts_of(&kamal_config, role, dest));
    }

    let docs = berth_import(&k, dest, &[]);
    let address: BTreeMap<&str, String> = docs
        .iter()
        .filter(|d| d["kind"] == "Host")
        .map(|h| (h["metadata"]["name"].as_str().unwrap(), endpoint_address(h["spec"]["endpoint"].as_str().unwrap())))
        .collect();
    let app = docs.iter().find(|d| d["kind"] == "App").expect("an App");
    let mut berth = BTreeMap::new();
    for (role, r) in app["spec"]["roles"].as_object().unwrap() {
        let mut on: Vec<String> =
            r["hosts"].as_array().unwrap().iter().map(|h| address[h.as_str().unwrap()].clone()).collect();
        on.sort();
        berth.insert(role.clone(), on);
    }
    assert_eq!(
        berth, kamal,
        "role hosts: berth import (left) and Kamal (right) differ for {fixture}, destination {dest:?}"
    );
}

#[test]
fn import_of_fixture_basic_places_roles_as_kamal() {
    import_places_roles_as_kamal("basic", None);
}

#[test]
fn import_of_fixture_shop_places_roles_as_kamal() {
    for dest in [None, Some("staging"), Some("production")] {
        import_places_roles_as_kamal("shop", dest);
    }
}
