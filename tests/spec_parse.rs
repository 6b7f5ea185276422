//! Good inputs: the examples, multi-document YAML, JSON, folders.

use std::path::PathBuf;

use berth::spec::{
    load_paths, load_sources, max_unavailable, parse_port, parse_str, validate, validate_against_store, App, Host,
    IntOrPercent, Kind, Resource,
};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn split(resources: Vec<Resource>) -> (Vec<App>, Vec<Host>) {
    let (mut apps, mut hosts) = (Vec::new(), Vec::new());
    for r in resources {
        match r {
            Resource::App(a) => apps.push(a),
            Resource::Host(h) => hosts.push(h),
            Resource::Secret(s) => panic!("no Secret expected here: {}", s.metadata.name),
        }
    }
    (apps, hosts)
}

#[test]
fn examples_folder_loads_and_validates() {
    let loaded = load_paths(&[examples()]).unwrap_or_else(|e| panic!("examples must be valid:\n{e}"));
    let names: Vec<String> = loaded.iter().map(|l| l.resource.display_name()).collect();
    assert_eq!(names, ["host/host1", "host/host2", "host/host3", "app/shop -n production"]);
    assert!(loaded[0].file.ends_with("hosts.yaml") && loaded[2].doc == 2);
    let (apps, hosts) = split(loaded.into_iter().map(|l| l.resource).collect());
    assert!(validate_against_store(&apps[0], &hosts, &[]).is_empty());
}

#[test]
fn shop_example_has_what_the_brief_promises() {
    let text = std::fs::read_to_string(examples().join("shop.yaml")).unwrap();
    let (apps, _) = split(parse_str("shop.yaml", &text).unwrap());
    let shop = &apps[0].spec;
    assert_eq!(apps[0].namespace(), "production");
    assert!(shop.accessories["db"].healthcheck.is_some() && shop.accessories.contains_key("cache"));
    assert_eq!(parse_port(&shop.roles["web"].ports[0]).unwrap().host_port, 8080);
    assert!(shop.roles.contains_key("jobs"));
    assert_eq!(max_unavailable(&shop.rollout.max_unavailable, shop.roles["web"].hosts.len()), 1);
}

const HOST: &str = "apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata: {name: host1}\nspec: {endpoint: \"unix:///var/run/docker.sock\"}\n";
const APP: &str = "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {name: shop}\nspec: {image: \"shop:1\", roles: {web: {hosts: [host1]}}}\n";

#[test]
fn multi_document_yaml_skips_empty_documents_and_keeps_positions() {
    let text = format!("---\n# nothing here\n---\n{HOST}---\n---\n{APP}...\n");
    let loaded = load_sources(&[("all.yaml".into(), text)]).unwrap();
    let at: Vec<(usize, Kind)> = loaded.iter().map(|l| (l.doc, l.resource.kind())).collect();
    assert_eq!(at, [(1, Kind::Host), (3, Kind::App)]);
}

#[test]
fn json_object_and_array_parse_like_yaml() {
    let host = r#"{"apiVersion": "berth.dev/v1alpha1", "kind": "Host", "metadata": {"name": "host1"},
                   "spec": {"endpoint": "tcp://10.0.0.5:2376", "tls": {"ca": "/ca", "cert": "/c", "key": "/k"}}}"#;
    let app = r#"{"apiVersion": "berth.dev/v1alpha1", "kind": "App", "metadata": {"name": "shop"},
                  "spec": {"image": "shop:1", "roles": {"web": {"hosts": ["host1"], "cmd": ["bin/web", "-p", "80"]}},
                           "rollout": {"maxUnavailable": "25%"}}}"#;
    assert_eq!(parse_str("h.json", host).unwrap().len(), 1);
    let both = parse_str("both.txt", &format!("[{host}, {app}]")).unwrap();
    let (apps, hosts) = split(both.clone());
    assert_eq!(hosts[0].spec.tls.as_ref().unwrap().ca, "/ca");
    assert_eq!(apps[0].spec.rollout.max_unavailable, IntOrPercent::Percent("25%".into()));
    let yaml = parse_str("both.yaml", &format!("{HOST}---\n{APP}")).unwrap();
    assert_eq!(yaml[0].kind(), both[0].kind());
    let loaded = load_sources(&[("both.json".into(), format!("[{host}, {app}]"))]).unwrap();
    assert_eq!(loaded[1].doc, 1);
}

#[test]
fn defaults_apply() {
    let (apps, _) = split(parse_str("a.yaml", APP).unwrap());
    assert_eq!(apps[0].namespace(), "default");
    assert_eq!(apps[0].spec.rollout.health_timeout, "60s");
    assert_eq!(apps[0].spec.rollout.max_unavailable, IntOrPercent::Int(1));
    assert!(validate(&Resource::App(apps[0].clone())).is_empty());
}

#[test]
fn folder_loads_every_resource_file_sorted_and_ignores_others() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b-app.yml"), APP).unwrap();
    std::fs::write(
        dir.path().join("a-host.json"),
        serde_json::to_string(&serde_yaml_ng::from_str::<serde_json::Value>(HOST).unwrap()).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not a resource").unwrap();
    let loaded = load_paths(&[dir.path().to_path_buf()]).unwrap();
    let files: Vec<&str> = loaded.iter().map(|l| l.file.rsplit('/').next().unwrap()).collect();
    assert_eq!(files, ["a-host.json", "b-app.yml"]);
}

#[test]
fn unreadable_and_empty_paths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let err = load_paths(&[missing.clone(), dir.path().to_path_buf()]).unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with(&format!("{}: cannot read: ", missing.display())), "{err}");
    assert_eq!(lines[1], format!("{}: folder has no .yaml, .yml or .json files", dir.path().display()));
}

#[test]
fn errors_in_files_and_in_other_files_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, APP.replace("host1", "Host1")).unwrap();
    let err = load_paths(&[bad.clone(), dir.path().join("gone.yaml")]).unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
    assert_eq!(err.0[0].file, dir.path().join("gone.yaml").display().to_string());
    assert_eq!(err.0[1].path, "spec.roles.web.hosts[0]");
    assert_eq!(err.0[1].doc, Some(0));
}

#[test]
fn byte_order_mark_is_ignored() {
    assert_eq!(parse_str("h.yaml", &format!("\u{feff}{HOST}")).unwrap().len(), 1);
    let json = serde_json::to_string(&serde_yaml_ng::from_str::<serde_json::Value>(APP).unwrap()).unwrap();
    assert_eq!(parse_str("a.json", &format!("\u{feff}{json}")).unwrap().len(), 1);
}
