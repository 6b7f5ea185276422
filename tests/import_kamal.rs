//! `berth import kamal` on the fixtures in tests/fixtures/kamal (modelled on Kamal's documented
//! examples): the Hosts each role lands on, the env each host gets, where accessories go, the
//! exact list of unsupported keys, Secrets as stubs and sealed, the error cases (exit code and one
//! line naming file and field), and that `berth validate` accepts every output. No etcd, no Docker.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth::import::kamal::{import_texts, DeployText};
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kamal").join(name)
}

/// Runs `berth ARGS` in `dir` (Kamal runs from the app's root: local files are relative to it).
fn berth(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(dir)
        .env("BERTH_ETCD_ENDPOINTS", "http://127.0.0.1:1")
        .output()
        .expect("berth runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The printed resources, by `kind/name`.
fn resources(out: &Output) -> Vec<Value> {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    serde_yaml_ng::Deserializer::from_str(&text(&out.stdout))
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {docs:#?}"))
}

fn unsupported(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("warning: unsupported: "))
        .map(|l| l.split(": ").next().unwrap_or_default().to_string())
        .collect()
}

/// `import kamal -o DIR` and `berth validate -f DIR` on what it wrote.
fn validates(dir: &Path, args: &[&str]) {
    let out_dir = tempfile::tempdir().unwrap();
    let mut all = args.to_vec();
    let dest = out_dir.path().to_str().unwrap();
    all.extend(["-o", dest]);
    let wrote = berth(dir, &all);
    assert_eq!(wrote.status.code(), Some(0), "{}", text(&wrote.stderr));
    let checked = berth(dir, &["validate", "-f", dest]);
    assert_eq!(checked.status.code(), Some(0), "validate: {}{}", text(&checked.stdout), text(&checked.stderr));
    let files = std::fs::read_dir(out_dir.path()).unwrap().count();
    assert_eq!(text(&checked.stdout).lines().count(), files, "every file holds one valid resource");
}

#[test]
fn plain_server_list_is_role_web_with_tags_as_host_env() {
    let dir = fixture("basic");
    let out = berth(&dir, &["import", "kamal"]);
    let docs = resources(&out);
    let hosts: Vec<&str> =
        docs.iter().filter(|d| d["kind"] == "Host").map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["192-168-0-1", "192-168-0-2", "192-168-0-3"]);
    assert_eq!(find(&docs, "Host", "192-168-0-2")["spec"]["endpoint"], "ssh://app@192.168.0.2:2222");
    let app = find(&docs, "App", "hey");
    assert_eq!(app["metadata"]["namespace"], "default");
    let spec = &app["spec"];
    assert_eq!(spec["image"], "37signals/hey:latest");
    assert_eq!(spec["imagePullSecrets"], json!(["hey-registry"]));
    assert_eq!(spec["env"]["WEB_CONCURRENCY"], "2");
    assert_eq!(
        spec["env"]["RAILS_MASTER_KEY"],
        json!({"secretKeyRef": {"name": "hey-env", "key": "RAILS_MASTER_KEY"}})
    );
    let web = &spec["roles"]["web"];
    assert_eq!(web["hosts"], json!(hosts));
    assert_eq!(
        web["hostEnv"],
        json!({
            "192-168-0-2": {"FEATURE_FLAGS": "beta"},
            "192-168-0-3": {"FEATURE_FLAGS": "gamma",
                            "THREE_TOKEN": {"secretKeyRef": {"name": "hey-env", "key": "THREE_TOKEN"}}},
        })
    );
    assert_eq!(web["volumes"], json!(["/var/lib/hey/storage:/rails/storage"]));
    assert_eq!(web["labels"], json!({"team": "mail"}));
    assert_eq!(
        web["proxy"],
        json!({"hosts": ["hey.example.com"], "appPort": 3000,
               "healthcheck": {"path": "/up", "interval": "3s", "timeout": "3s"}})
    );
    assert_eq!(spec["logging"], json!({"driver": "json-file", "options": {"max-size": "100m"}}));
    assert_eq!(spec["rollout"], json!({"maxUnavailable": "25%", "healthTimeout": "45s"}));
    assert_eq!(unsupported(&out), ["proxy/forward_headers", "boot/wait", "builder", "asset_path", "ssh/keys"]);
    // Without --secrets: stubs that name every key to fill, registry server and username filled in.
    let reg = find(&docs, "Secret", "hey-registry");
    assert_eq!(reg["type"], "registry");
    assert_eq!(reg["stringData"], json!({"server": "docker.io", "username": "hey-deployer", "password": ""}));
    assert_eq!(find(&docs, "Secret", "hey-env")["stringData"], json!({"RAILS_MASTER_KEY": "", "THREE_TOKEN": ""}));
    assert!(text(&out.stdout).contains("# fill in RAILS_MASTER_KEY, THREE_TOKEN, then `berth seal -f` this file"));
    validates(&dir, &["import", "kamal"]);
}

#[test]
fn staging_destination_merges_roles_accessories_and_proxy() {
    let dir = fixture("shop");
    let out = berth(&dir, &["import", "kamal", "-d", "staging", "--version", "abc123"]);
    let docs = resources(&out);
    let app = find(&docs, "App", "shop");
    assert_eq!(app["metadata"]["namespace"], "staging");
    let spec = &app["spec"];
    assert_eq!(spec["image"], "registry.example.com/acme/shop:abc123");
    let h = "staging-1-example-com";
    for role in ["web", "workers", "api"] {
        assert_eq!(spec["roles"][role]["hosts"], json!([h]), "{role}");
    }
    assert_eq!(spec["env"]["DB_HOST"], "staging-db", "the destination's env wins");
    assert_eq!(spec["roles"]["web"]["hostEnv"], json!({h: {"CANARY": "1"}}));
    assert_eq!(
        spec["roles"]["workers"]["hostEnv"],
        json!({h: {"DB_PASSWORD": {"secretKeyRef": {"name": "shop-env", "key": "REPORTS_DB_PASSWORD"}}}})
    );
    // ssl: true in the destination replaces the root's certificate mapping, as Kamal's deep merge does.
    assert_eq!(spec["roles"]["web"]["proxy"]["tls"], "acme");
    assert_eq!(spec["roles"]["web"]["proxy"]["hosts"], json!(["staging.shop.example.com"]));
    assert_eq!(spec["accessories"]["db"]["hosts"], json!([h]));
    assert_eq!(spec["accessories"]["metrics"]["hosts"], json!([h]));
    assert_eq!(find(&docs, "Host", h)["spec"]["proxy"], json!({"httpPort": 8080, "httpsPort": 8443}));
    assert_eq!(docs.iter().filter(|d| d["kind"] == "Host").count(), 1);
    assert!(docs.iter().all(|d| d["metadata"]["name"] != "shop-tls"), "no certificate Secret under acme");
    validates(&dir, &["import", "kamal", "-d", "staging"]);
}

#[test]
fn production_destination_places_accessories_and_lists_unsupported_keys() {
    let dir = fixture("shop");
    let out = berth(&dir, &["import", "kamal", "-d", "production"]);
    let docs = resources(&out);
    let spec = &find(&docs, "App", "shop")["spec"];
    let roles = &spec["roles"];
    assert_eq!(roles["web"]["hosts"], json!(["web-1-example-com", "web-2-example-com"]));
    assert_eq!(roles["workers"]["hosts"], json!(["jobs-1-example-com"]));
    assert_eq!(roles["api"]["hosts"], json!(["web-1-example-com"]));
    assert_eq!(roles["web"]["hostEnv"], json!({"web-2-example-com": {"CANARY": "1"}}));
    assert_eq!(
        roles["workers"]["hostEnv"],
        json!({"jobs-1-example-com": {"CANARY": "1",
               "DB_PASSWORD": {"secretKeyRef": {"name": "shop-env", "key": "REPORTS_DB_PASSWORD"}}}})
    );
    assert_eq!(roles["workers"]["env"], json!({"QUEUES": "default,mailers"}));
    assert_eq!(roles["workers"]["cmd"], "bin/jobs");
    assert_eq!((&roles["workers"]["memory"], &roles["workers"]["cpus"]), (&json!("2g"), &json!(2.0)));
    assert_eq!(
        roles["workers"]["options"],
        json!({"addHosts": ["metadata:169.254.169.254"], "ulimits": {"nofile": "4096:8192"}})
    );
    // Kamal stops an unproxied role's containers with `docker stop -t drain_timeout`; kamal-proxy drains the rest.
    assert_eq!(roles["workers"]["stopTimeout"], "15s", "drain_timeout is the stop timeout of unproxied roles");
    assert!(roles["web"].get("stopTimeout").is_none());
    assert_eq!(roles["workers"]["readinessDelay"], "4s", "readiness_delay applies to unproxied roles");
    assert!(roles["web"].get("readinessDelay").is_none());
    assert_eq!(roles["web"]["labels"], json!({"tier": "front"}));
    let web_proxy = &roles["web"]["proxy"];
    assert_eq!(web_proxy["tls"], json!({"secretRef": "shop-tls"}));
    assert_eq!((&web_proxy["drainTimeout"], &web_proxy["responseTimeout"]), (&json!("15s"), &json!("20s")));
    assert_eq!(roles["api"]["proxy"]["hosts"], json!(["api.example.com"]));
    assert_eq!(roles["api"]["proxy"]["pathPrefix"], "/v1");
    assert!(roles["workers"].get("proxy").is_none(), "only the primary role is proxied by default");
    let acc = &spec["accessories"];
    assert_eq!(acc["db"]["hosts"], json!(["db-1-example-com"]));
    assert_eq!(acc["db"]["ports"], json!(["127.0.0.1:3306:3306"]));
    assert_eq!(acc["db"]["directories"], json!(["data:/var/lib/mysql", "logs:/var/log/mysql"]));
    assert_eq!(
        acc["db"]["files"]["/etc/mysql/my.cnf"],
        json!({"content": "[mysqld]\nmax_connections = 200\n", "mode": "0755"})
    );
    assert_eq!(acc["db"]["files"]["/docker-entrypoint-initdb.d/init.sql"]["mode"], "0600");
    assert_eq!(
        acc["db"]["env"]["MYSQL_ROOT_PASSWORD"],
        json!({"secretKeyRef": {"name": "shop-env", "key": "MAIN_DB_PASSWORD"}})
    );
    assert_eq!(acc["redis"]["roles"], json!(["web"]));
    assert!(acc["redis"].get("hosts").is_none(), "an accessory on a role follows the role's hosts");
    assert_eq!(acc["redis"]["options"], json!({"network": "host"}));
    assert_eq!(acc["metrics"]["hosts"], json!(["jobs-1-example-com"]), "the tag reports is on jobs-1 only");
    assert_eq!(spec["rollout"], json!({"maxUnavailable": 1, "healthTimeout": "90s"}));
    let hosts: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Host").collect();
    let names: Vec<&str> = hosts.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["db-1-example-com", "jobs-1-example-com", "web-1-example-com", "web-2-example-com"]);
    assert_eq!(hosts[0]["spec"]["endpoint"], "ssh://deploy@db-1.example.com:22");
    // The proxy's ports go to the hosts of the role whose proxy sets `run` (api on web-1) only.
    assert!(hosts[0]["spec"].get("proxy").is_none(), "db-1 runs no proxied role");
    assert_eq!(hosts[2]["spec"]["proxy"], json!({"httpPort": 8080, "httpsPort": 8443}), "web-1 runs api");
    assert!(hosts[3]["spec"].get("proxy").is_none(), "web-2 runs web alone, whose proxy sets no `run`");
    assert_eq!(
        unsupported(&out),
        [
            "servers/api/proxy/path_prefix",
            "servers/api/asset_path",
            "servers/workers/options/privileged",
            "accessories/db/files[1]/owner",
            "accessories/db/files[2]",
            "accessories/db/directories[1]/mode",
            "accessories/redis/volumes[0]",
            "accessories/metrics/service",
            "builder",
            "retain_containers",
        ]
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("note: servers/api/proxy: kamal-proxy strips the path prefix by default"), "{stderr}");
    validates(&dir, &["import", "kamal", "-d", "production"]);
}

#[test]
fn secrets_are_read_in_kamal_order_and_sealed() {
    let dir = fixture("shop");
    let ring = berth::sealing::Keyring::generate();
    let recipient = ring.recipients()[0].clone();
    let args = ["import", "kamal", "-d", "production", "--secrets", ".kamal/secrets", "--recipient", &recipient];
    let out = berth(&dir, &args);
    let docs = resources(&out);
    let stdout = text(&out.stdout);
    for plain in ["prod-db-pass", "common-registry-pass", "shop-ci", "MIIE"] {
        assert!(!stdout.contains(plain), "{plain} printed in the clear");
    }
    let open = |secret: &str, key: &str| {
        let sealed = find(&docs, "Secret", secret)["sealedData"][key].as_str().unwrap().to_string();
        String::from_utf8(ring.open(&sealed).unwrap()).unwrap()
    };
    assert_eq!(open("shop-env", "MAIN_DB_PASSWORD"), "prod-db-pass");
    assert_eq!(open("shop-registry", "password"), "common-registry-pass", "secrets-common is read too");
    assert_eq!(open("shop-registry", "server"), "registry.example.com");
    assert_eq!(open("shop-tls", "cert"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    assert_eq!(open("shop-tls", "key"), "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----");
    assert_eq!(find(&docs, "Secret", "shop-tls")["type"], "tls");
    // A value Kamal computes with a command is never run: that key is left to fill, and said so.
    assert_eq!(find(&docs, "Secret", "shop-env")["stringData"], json!({"REPORTS_DB_PASSWORD": ""}));
    assert!(text(&out.stderr).contains("note: secret REPORTS_DB_PASSWORD"), "{}", text(&out.stderr));
    validates(&dir, &args);
}

#[test]
fn sealing_without_a_recipient_is_its_own_exit_code() {
    let out = berth(&fixture("shop"), &["import", "kamal", "-d", "staging", "--secrets", ".kamal/secrets"]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "nothing printed");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: cannot seal the imported Secrets: "), "{stderr}");
    assert!(stderr.contains("give --recipient"), "{stderr}");
}

#[test]
fn bad_input_exits_1_with_one_line_naming_file_and_field() {
    let dir = fixture("errors");
    let cases = [
        ("no-service.yml", "error: no-service.yml: service: missing (Kamal requires it)"),
        ("no-image.yml", "error: no-image.yml: image: missing (Kamal requires it)"),
        ("bad-yaml.yml", "error: bad-yaml.yml: not valid YAML: "),
        ("absent.yml", "error: absent.yml: cannot read: "),
    ];
    for (file, want) in cases {
        let out = berth(&dir, &["import", "kamal", "-c", file]);
        assert_eq!(out.status.code(), Some(1), "{file}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{file}: {stderr}");
        assert!(stderr.starts_with(want), "{file}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    let out = berth(&fixture("shop"), &["import", "kamal", "-d", "qa"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: config/deploy.qa.yml: cannot read: "), "{}", text(&out.stderr));
}

#[test]
fn pure_import_on_plain_data() {
    let base =
        "service: my_app\nimage: me/app\nservers:\n  web: [a.example.com]\n  jobs:\n    hosts: [b.example.com]\n\
                accessories:\n  cache: {image: redis, role: jobs}\n  bad: {image: x, roles: [nope]}\n";
    let e = import_texts(&[DeployText { file: "d.yml", text: base }], None).unwrap_err();
    assert_eq!(e.to_string(), "d.yml: accessories/bad/roles: accessory bad: unknown role nope");
    let base = base.replace("  bad: {image: x, roles: [nope]}\n", "");
    let dest = "servers:\n  web: [c.example.com]\nrequire_destination: true\n";
    let texts = [DeployText { file: "d.yml", text: &base }, DeployText { file: "d.eu_west.yml", text: dest }];
    let imported = import_texts(&texts, Some("eu_west")).unwrap();
    assert_eq!((imported.app_name.as_str(), imported.namespace.as_str()), ("my-app", "eu-west"));
    assert_eq!(imported.app["spec"]["roles"]["web"]["hosts"], json!(["c-example-com"]));
    assert_eq!(imported.app["spec"]["accessories"]["cache"]["roles"], json!(["jobs"]));
    assert!(imported.report.unsupported.is_empty(), "{:?}", imported.report.unsupported);
    let e = import_texts(&texts, None).unwrap_err();
    assert_eq!(e.to_string(), "d.yml: require_destination: is true: give a destination with -d");
}

/// Every key of Kamal's configuration reference, once: each is mapped or named on stderr — none
/// is dropped silently — and what is mapped still validates.
#[test]
fn every_documented_key_is_mapped_or_named() {
    let dir = fixture("everything");
    let out = berth(&dir, &["import", "kamal"]);
    let docs = resources(&out);
    let spec = &find(&docs, "App", "myapp")["spec"];
    assert_eq!(spec["accessories"]["mysql"]["image"], "ghcr.io/mysql:8.0", "the anchor's registry server");
    assert_eq!(spec["accessories"]["mysql"]["imagePullSecrets"], json!(["myapp-mysql-registry"]));
    assert_eq!(spec["accessories"]["cache"]["hosts"], json!(["172-1-0-2", "172-1-0-4"]));
    assert_eq!(spec["accessories"]["queue"]["roles"], json!(["workers"]));
    assert_eq!(spec["roles"]["workers"]["proxy"]["hosts"], json!(["jobs.example.com"]));
    let run = "berth runs its own proxy";
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches(run).count(), 8, "{stderr}");
    let ssh = ["proxy", "proxy_command", "log_level", "keys_only", "keys", "key_data", "config", "forward_agent"];
    let mut want: Vec<String> = ["ssl_redirect", "forward_headers", "buffering", "logging"]
        .iter()
        .map(|k| format!("proxy/{k}"))
        .chain(
            [
                "metrics_port",
                "debug",
                "log_max_size",
                "publish",
                "bind_ips",
                "registry",
                "repository",
                "version",
                "options",
            ]
            .iter()
            .map(|k| format!("proxy/run/{k}")),
        )
        .collect();
    want.extend(
        [
            "servers/workers/asset_path",
            "accessories/mysql/directories[1]/options",
            "accessories/mysql/options/restart",
            "accessories/mysql/options/cpus",
            "accessories/mysql/network",
            "accessories/mysql/service",
            "accessories/mysql/proxy",
            "boot/wait",
            "boot/parallel_roles",
            "builder",
            "asset_path",
            "hooks_path",
            "hooks_output",
            "secrets_path",
            "error_pages_path",
            "retain_containers",
            "minimum_version",
            "run_directory",
            "sshkit",
            "output",
            "aliases",
        ]
        .map(String::from),
    );
    want.extend(ssh.iter().map(|k| format!("ssh/{k}")));
    want.push("servrs".into());
    assert_eq!(unsupported(&out), want);
    assert!(stderr.contains("warning: unsupported: servrs: not a Kamal key berth knows; not imported"));
    validates(&dir, &["import", "kamal"]);
}
