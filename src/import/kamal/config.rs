//! Reading Kamal's `deploy.yml`: YAML parsing (anchors and `<<` merge keys, as Ruby's YAML loads
//! them), the destination merge (`deploy.DEST.yml` deep-merged over `deploy.yml`, as Kamal's
//! `load_config_files` does: mappings merge key by key, anything else — lists included — is
//! replaced), the two required fields, and a walker that remembers which keys were read so that a
//! key nobody mapped is reported instead of dropped.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_yaml_ng::{Mapping, Value};

use super::{ImportError, Report};

/// One configuration file's name (as the user gave it, for messages) and text.
#[derive(Debug, Clone, Copy)]
pub struct DeployText<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

/// Parses every file and deep-merges them in order (base first): the merged top-level mapping.
/// A file that is not YAML, or not a mapping, or a merged config without `service` or `image`, is
/// an error naming the file and the field.
pub fn load(files: &[DeployText<'_>]) -> Result<Mapping, ImportError> {
    let mut merged = Mapping::new();
    for f in files {
        let mut value: Value = serde_yaml_ng::from_str(f.text)
            .map_err(|e| ImportError::new(f.file, None, format!("not valid YAML: {}", one_line(&e.to_string()))))?;
        value
            .apply_merge()
            .map_err(|e| ImportError::new(f.file, None, format!("not valid YAML: {}", one_line(&e.to_string()))))?;
        match value {
            Value::Mapping(m) => deep_merge(&mut merged, m),
            // An empty destination file is allowed (it changes nothing), as in Kamal.
            Value::Null => {}
            _ => return Err(ImportError::new(f.file, None, "the top level is not a mapping of keys")),
        }
    }
    let base = files.first().map(|f| f.file).unwrap_or("deploy.yml");
    for field in ["service", "image"] {
        match merged.get(field) {
            None | Some(Value::Null) => {
                return Err(ImportError::new(base, Some(field), "missing (Kamal requires it)"));
            }
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(_) => return Err(ImportError::new(base, Some(field), "must be a non-empty string")),
        }
    }
    Ok(merged)
}

/// ActiveSupport's `deep_merge!`: `over`'s keys win, mappings on both sides merge recursively.
fn deep_merge(base: &mut Mapping, over: Mapping) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => deep_merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A mapping being mapped, at a Kamal path such as `servers/web`: every key read through it is
/// remembered, and [`Node::finish`] reports the keys nobody read. `x-` keys are Kamal's own
/// extension blocks (anchors' sources), which Kamal ignores too.
pub struct Node<'a> {
    pub path: String,
    pub map: &'a Mapping,
    seen: RefCell<BTreeSet<String>>,
}

impl<'a> Node<'a> {
    pub fn new(path: impl Into<String>, map: &'a Mapping) -> Node<'a> {
        Node { path: path.into(), map, seen: RefCell::new(BTreeSet::new()) }
    }

    /// The value of `key`, marked as mapped.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.seen.borrow_mut().insert(key.to_string());
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Whether `key` is present (marks nothing).
    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some()
    }

    /// The Kamal path of a key under this node.
    pub fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Reports `key` as unsupported, with why, when it is present.
    pub fn unsupported(&self, report: &mut Report, key: &str, why: &str) {
        if self.get(key).is_some() {
            report.unsupported(self.at(key), why);
        }
    }

    /// A child mapping; a non-mapping value is reported and skipped.
    pub fn child(&self, report: &mut Report, key: &str) -> Option<Node<'a>> {
        match self.get(key)? {
            Value::Mapping(m) => Some(Node::new(self.at(key), m)),
            _ => {
                report.unsupported(self.at(key), "expected a mapping of keys; not imported");
                None
            }
        }
    }

    /// `key` in Kamal's seconds as a berth duration; a value that is not one is reported.
    pub fn seconds(&self, report: &mut Report, key: &str) -> Option<String> {
        let d = seconds(self.get(key)?);
        if d.is_none() {
            report.unsupported(self.at(key), "expected a number of seconds; not imported");
        }
        d
    }

    /// `key` as a port number; a value that is not one is reported.
    pub fn port(&self, report: &mut Report, key: &str) -> Option<u16> {
        let p = scalar(self.get(key)?).and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
        if p.is_none() {
            report.unsupported(self.at(key), "expected a port number; not imported");
        }
        p
    }

    /// Reports every key that was neither mapped nor reported.
    pub fn finish(self, report: &mut Report) {
        let seen = self.seen.into_inner();
        for key in self.map.keys() {
            let key = key_text(key);
            if !seen.contains(&key) && !key.starts_with("x-") {
                report.unsupported(join(&self.path, &key), "not a Kamal key berth knows; not imported");
            }
        }
    }
}

/// `a/b`, or `b` at the top.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}/{key}")
    }
}

/// A mapping key as text (YAML allows numbers and booleans as keys).
pub fn key_text(key: &Value) -> String {
    scalar(key).unwrap_or_else(|| format!("{key:?}"))
}

/// A scalar as Kamal hands it to Docker: strings as they are, numbers and booleans printed.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Kamal's seconds (`30`, `"30"`) as a berth duration (`30s`); a value that already carries a unit
/// (`30s`, `2m`) is kept. `None` for anything else.
pub fn seconds(v: &Value) -> Option<String> {
    let text = scalar(v)?;
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("{text}s"));
    }
    let unit_ok = text.trim_start_matches(|c: char| c.is_ascii_digit()).chars().all(|c| "hms".contains(c));
    (text.starts_with(|c: char| c.is_ascii_digit()) && unit_ok && text.len() > 1).then(|| text.to_string())
}

/// A list of strings, or one string as a list of one.
pub fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Sequence(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(base: &'a str, dest: &'a str) -> Vec<DeployText<'a>> {
        vec![DeployText { file: "deploy.yml", text: base }, DeployText { file: "deploy.staging.yml", text: dest }]
    }

    #[test]
    fn destination_merges_mappings_and_replaces_lists() {
        let base = "service: a\nimage: a\nservers: {web: [1.1.1.1], jobs: {hosts: [2.2.2.2], cmd: x}}\nenv: {clear: {A: 1, B: 2}}\n";
        let dest = "servers: {jobs: {hosts: [3.3.3.3]}}\nenv: {clear: {B: 3}}\n";
        let m = load(&texts(base, dest)).unwrap();
        let out: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(out["servers"]["jobs"]["hosts"], serde_json::json!(["3.3.3.3"]));
        assert_eq!(out["servers"]["jobs"]["cmd"], "x");
        assert_eq!(out["servers"]["web"], serde_json::json!(["1.1.1.1"]));
        assert_eq!(out["env"]["clear"], serde_json::json!({"A": 1, "B": 3}));
    }

    #[test]
    fn merge_keys_and_anchors_resolve() {
        let base = "x-reg: &reg {server: r.example.com}\nservice: a\nimage: a\nregistry:\n  <<: *reg\n  username: u\n";
        let m = load(&[DeployText { file: "d.yml", text: base }]).unwrap();
        let out: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(out["registry"], serde_json::json!({"server": "r.example.com", "username": "u"}));
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = load(&[DeployText { file: "c/deploy.yml", text: "image: a\n" }]).unwrap_err();
        assert_eq!(e.to_string(), "c/deploy.yml: service: missing (Kamal requires it)");
        let e = load(&[DeployText { file: "c/deploy.yml", text: "service: [a\n" }]).unwrap_err();
        assert!(e.to_string().starts_with("c/deploy.yml: not valid YAML: "), "{e}");
        assert!(!e.to_string().contains('\n'));
        let e = load(&texts("service: a\nimage: a\n", "- 1\n")).unwrap_err();
        assert_eq!(e.to_string(), "deploy.staging.yml: the top level is not a mapping of keys");
    }

    #[test]
    fn seconds_take_numbers_and_durations() {
        let v = |s: &str| serde_yaml_ng::from_str::<Value>(s).unwrap();
        assert_eq!(seconds(&v("30")), Some("30s".into()));
        assert_eq!(seconds(&v("'45'")), Some("45s".into()));
        assert_eq!(seconds(&v("2m")), Some("2m".into()));
        assert_eq!(seconds(&v("soon")), None);
        assert_eq!(seconds(&v("[1]")), None);
    }
}
