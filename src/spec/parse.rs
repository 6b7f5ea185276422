//! Reading resource files: YAML (multi-document) or JSON, into typed resources with every error
//! located as `file[doc]: path: message`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::error::{location, SpecError, SpecErrors};
use super::kind::Kind;
use super::types::{Resource, API_VERSION};
use super::validate::validate;

/// A resource together with where it came from, so later errors (duplicates, apply failures)
/// can point back at the file and document.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The file name as given (or the label passed to `load_sources`).
    pub file: String,
    /// 0-based position of the document in the file.
    pub doc: usize,
    /// The parsed resource.
    pub resource: Resource,
}

/// Parses one file's text (no semantic validation): YAML documents separated by `---`, or JSON
/// (a single object or an array of them) when the file name ends in `.json` or the text starts
/// with `{` or `[`. Empty documents are skipped. All errors of all documents are returned.
pub fn parse_str(file: &str, text: &str) -> Result<Vec<Resource>, SpecErrors> {
    let (docs, errors) = parse_docs(file, text);
    SpecErrors(errors).into_result(docs.into_iter().map(|l| l.resource).collect())
}

/// Parses and validates in-memory files `(name, text)` as [`load_paths`] does for files on disk:
/// per-document validation plus the duplicate check across all of them.
pub fn load_sources(sources: &[(String, String)]) -> Result<Vec<Loaded>, SpecErrors> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for (file, text) in sources {
        let (docs, errs) = parse_docs(file, text);
        loaded.extend(docs);
        errors.extend(errs);
    }
    for l in &loaded {
        for (path, message) in validate(&l.resource) {
            errors.push(SpecError::new(&l.file, Some(l.doc), path, message));
        }
    }
    errors.extend(duplicates(&loaded));
    SpecErrors(errors).into_result(loaded)
}

/// Loads files and folders (every `*.yaml`, `*.yml`, `*.json` directly inside, sorted), then
/// validates each resource and rejects the same resource defined twice. Nothing is returned
/// unless everything is valid, so a bad batch never half-applies.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Loaded>, SpecErrors> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match expand(path) {
            Ok(files) => {
                for f in files {
                    read_into(&f, &mut sources, &mut errors);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    match load_sources(&sources) {
        Ok(loaded) => SpecErrors(errors).into_result(loaded),
        Err(SpecErrors(more)) => {
            errors.extend(more);
            Err(SpecErrors(errors))
        }
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn file_error(path: &Path, message: impl Into<String>) -> SpecError {
    SpecError::new(&display(path), None, "", message)
}

/// A file stands for itself; a folder for its resource files, sorted by name.
fn expand(path: &Path) -> Result<Vec<PathBuf>, SpecError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| file_error(path, format!("cannot read folder: {e}")))?;
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && has_resource_extension(p)).collect();
    files.sort();
    if files.is_empty() {
        return Err(file_error(path, "folder has no .yaml, .yml or .json files"));
    }
    Ok(files)
}

fn has_resource_extension(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

fn read_into(path: &Path, sources: &mut Vec<(String, String)>, errors: &mut Vec<SpecError>) {
    match std::fs::read_to_string(path) {
        Ok(text) => sources.push((display(path), text)),
        Err(e) => errors.push(file_error(path, format!("cannot read: {e}"))),
    }
}

fn looks_like_json(file: &str, text: &str) -> bool {
    let trimmed = text.trim_start();
    file.ends_with(".json") || trimmed.starts_with('{') || trimmed.starts_with('[')
}

/// Splits a file into raw documents `(index, value)`, then types each one.
fn parse_docs(file: &str, text: &str) -> (Vec<Loaded>, Vec<SpecError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (raw, mut errors) = if looks_like_json(file, text) { json_docs(file, text) } else { yaml_docs(file, text) };
    let mut loaded = Vec::new();
    for (doc, value) in raw {
        if value.is_null() {
            continue;
        }
        match to_resource(value) {
            Ok(resource) => loaded.push(Loaded { file: file.to_string(), doc, resource }),
            Err((path, message)) => errors.push(SpecError::new(file, Some(doc), path, message)),
        }
    }
    (loaded, errors)
}

fn json_docs(file: &str, text: &str) -> (Vec<(usize, Value)>, Vec<SpecError>) {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => (items.into_iter().enumerate().collect(), vec![]),
        Ok(value) => (vec![(0, value)], vec![]),
        Err(e) => (vec![], vec![SpecError::new(file, None, "", format!("invalid JSON: {e}"))]),
    }
}

/// Reads YAML documents until the end or the first syntax error (after which the YAML parser
/// cannot resynchronise, so later documents are not trustworthy).
fn yaml_docs(file: &str, text: &str) -> (Vec<(usize, Value)>, Vec<SpecError>) {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let yaml = match serde_yaml_ng::Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => return (docs, vec![SpecError::new(file, Some(i), "", format!("invalid YAML: {e}"))]),
        };
        match yaml_to_json(yaml) {
            Ok(v) => docs.push((i, v)),
            Err(e) => return (docs, vec![SpecError::new(file, Some(i), "", e)]),
        }
    }
    (docs, vec![])
}

/// YAML → JSON value; fails on what JSON cannot express (tags, non-scalar keys).
fn yaml_to_json(yaml: serde_yaml_ng::Value) -> Result<Value, String> {
    if contains_tag(&yaml) {
        return Err("YAML tags (!name) are not supported".to_string());
    }
    serde_json::to_value(yaml).map_err(|e| format!("cannot convert YAML to JSON: {e}"))
}

fn contains_tag(v: &serde_yaml_ng::Value) -> bool {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Tagged(_) => true,
        Y::Sequence(items) => items.iter().any(contains_tag),
        Y::Mapping(m) => m.iter().any(|(k, v)| contains_tag(k) || contains_tag(v)),
        _ => false,
    }
}

/// Checks `apiVersion` and `kind` first (so the error says which is wrong), then deserializes
/// the typed resource, reporting the field path of the first type error.
fn to_resource(value: Value) -> Result<Resource, (String, String)> {
    let Value::Object(map) = &value else {
        return Err((String::new(), format!("expected a resource (a mapping), found {}", kind_of(&value))));
    };
    check_api_version(map.get("apiVersion"))?;
    match kind_field(map.get("kind"))? {
        Kind::App => typed(value).map(Resource::App),
        Kind::Host => typed(value).map(Resource::Host),
        Kind::Secret => typed(value).map(Resource::Secret),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn check_api_version(v: Option<&Value>) -> Result<(), (String, String)> {
    let err = |m: String| Err(("apiVersion".to_string(), m));
    match v {
        None => err(format!("missing; expected {API_VERSION:?}")),
        Some(Value::String(s)) if s == API_VERSION => Ok(()),
        Some(Value::String(s)) => err(format!("unsupported apiVersion {s:?} (expected {API_VERSION:?})")),
        Some(other) => err(format!("expected the string {API_VERSION:?}, found {}", kind_of(other))),
    }
}

fn kind_field(v: Option<&Value>) -> Result<Kind, (String, String)> {
    let err = |m: String| Err(("kind".to_string(), m));
    match v {
        None => err("missing; expected App or Host".to_string()),
        Some(Value::String(s)) => match Kind::parse(s) {
            Some(k) => Ok(k),
            None => err(format!("unknown kind {s:?} (expected App or Host)")),
        },
        Some(other) => err(format!("expected App or Host, found {}", kind_of(other))),
    }
}

fn typed<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, friendly(&e.into_inner().to_string()))
    })
}

/// Replaces serde's untagged-enum message with what the field actually accepts.
fn friendly(message: &str) -> String {
    if message.contains("untagged enum IntOrPercent") {
        "expected a whole number or a percentage string such as \"25%\"".to_string()
    } else if message.contains("untagged enum Command") {
        "expected a shell string or a list of strings".to_string()
    } else {
        message.to_string()
    }
}

/// One error per resource defined more than once, naming where it was first defined.
fn duplicates(loaded: &[Loaded]) -> Vec<SpecError> {
    let mut first: BTreeMap<(Kind, Option<&str>, &str), &Loaded> = BTreeMap::new();
    let mut errors = Vec::new();
    for l in loaded {
        let key = (l.resource.kind(), l.resource.namespace(), l.resource.name());
        match first.get(&key) {
            Some(earlier) => errors.push(SpecError::new(
                &l.file,
                Some(l.doc),
                "metadata.name",
                format!(
                    "{} is defined twice (also at {})",
                    l.resource.display_name(),
                    location(&earlier.file, Some(earlier.doc))
                ),
            )),
            None => {
                first.insert(key, l);
            }
        }
    }
    errors
}
