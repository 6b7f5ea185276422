//! The checked-in CRDs in `crds/` must equal what the Rust types generate.
//!
//! Regenerate with: `BERTH_UPDATE_CRDS=1 cargo test --test spec_crds`

use std::path::PathBuf;

use berth::spec::schema::{crd_value, openapi_schema};
use berth::spec::{crd_yaml, Kind};
use serde_json::Value;

const REGENERATE: &str = "BERTH_UPDATE_CRDS=1 cargo test --test spec_crds";

fn crd_path(kind: Kind) -> PathBuf {
    let file = format!("{}.yaml", kind.as_str().to_lowercase());
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds").join(file)
}

fn check_or_update(kind: Kind) {
    let path = crd_path(kind);
    let want = crd_yaml(kind);
    if std::env::var_os("BERTH_UPDATE_CRDS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date with src/spec/types.rs; regenerate it with:\n\n    {REGENERATE}\n",
        path.display()
    );
}

#[test]
fn app_crd_is_up_to_date() {
    check_or_update(Kind::App);
}

#[test]
fn host_crd_is_up_to_date() {
    check_or_update(Kind::Host);
}

#[test]
fn secret_crd_is_up_to_date() {
    check_or_update(Kind::Secret);
}

#[test]
fn crd_yaml_round_trips_to_the_crd_value() {
    for kind in Kind::ALL {
        let parsed: Value = serde_yaml_ng::from_str(&crd_yaml(kind)).unwrap();
        assert_eq!(parsed, crd_value(kind));
    }
}

#[test]
fn names_and_scopes() {
    let app = crd_value(Kind::App);
    assert_eq!(app["metadata"]["name"], "apps.berth.dev");
    assert_eq!(app["spec"]["scope"], "Namespaced");
    assert_eq!(app["spec"]["versions"][0]["name"], "v1alpha1");
    let host = crd_value(Kind::Host);
    assert_eq!(host["metadata"]["name"], "hosts.berth.dev");
    assert_eq!(host["spec"]["scope"], "Cluster");
    assert_eq!(host["spec"]["names"]["plural"], "hosts");
}

/// Kubernetes' structural-schema rules that matter for our types: every node has a `type`
/// (or an x-kubernetes escape hatch), no `$ref`, no `additionalProperties` beside `properties`.
fn assert_structural(node: &Value, path: &str) {
    let obj = node.as_object().unwrap_or_else(|| panic!("{path}: schema node is not an object"));
    assert!(!obj.contains_key("$ref") && !obj.contains_key("$schema") && !obj.contains_key("$defs"), "{path}: {node}");
    let escape =
        obj.contains_key("x-kubernetes-int-or-string") || obj.contains_key("x-kubernetes-preserve-unknown-fields");
    assert!(obj.contains_key("type") || escape, "{path}: node without type: {node}");
    assert!(!(obj.contains_key("properties") && obj.contains_key("additionalProperties")), "{path}");
    if !obj.contains_key("x-kubernetes-int-or-string") {
        assert!(!obj.contains_key("anyOf") && !obj.contains_key("oneOf"), "{path}: {node}");
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            assert_structural(v, &format!("{path}.{k}"));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = obj.get(key).filter(|c| c.is_object()) {
            assert_structural(child, &format!("{path}.{key}"));
        }
    }
}

#[test]
fn schemas_are_structural() {
    for kind in Kind::ALL {
        assert_structural(&openapi_schema(kind), kind.as_str());
    }
    let app = openapi_schema(Kind::App);
    let rollout = &app["properties"]["spec"]["properties"]["rollout"]["properties"];
    assert_eq!(rollout["maxUnavailable"]["x-kubernetes-int-or-string"], true);
    assert_eq!(app["properties"]["metadata"], serde_json::json!({"type": "object"}));
}
