//! The Secrets an import produces and where their values come from: Kamal's secrets files
//! (`.kamal/secrets-common`, then `.kamal/secrets` or `.kamal/secrets.DEST`, dotenv syntax), or —
//! without them — stubs naming the keys to fill. A value Kamal would compute by running a command
//! (`$(kamal secrets fetch …)`) is never run here: that key is left to fill, and said so.
//!
//! Values are plain in what [`super::import`] returns; [`seal`] turns them into `sealedData` with
//! berth's sealing, so the CLI never prints a plain value.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use serde_yaml_ng::Value as Yaml;

use super::config::{scalar, Node};
use super::{Ctx, ImportError, ImportedSecret, Report};

/// Where one key's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// Written in the config itself (a registry's server or literal username).
    Literal(String),
    /// A Kamal secret of this name.
    Kamal(String),
}

#[derive(Debug, Clone)]
struct Planned {
    name: String,
    secret_type: &'static str,
    keys: Vec<(String, ValueSource, String)>,
}

/// The Secrets the mapping asked for: name, type, and each key's source and Kamal path.
#[derive(Debug, Default)]
pub struct SecretBook {
    planned: Vec<Planned>,
}

impl SecretBook {
    /// Records that env reads the Kamal secret `secret` from the opaque Secret `name`; returns `name`.
    pub fn env_key(&mut self, name: &str, secret: &str, origin: &str) -> String {
        self.add(name, "opaque", secret, ValueSource::Kamal(secret.to_string()), origin);
        name.to_string()
    }

    /// Records one key of a Secret (the first source of a key wins).
    pub fn add(&mut self, name: &str, secret_type: &'static str, key: &str, source: ValueSource, origin: &str) {
        let idx = match self.planned.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                self.planned.push(Planned { name: name.to_string(), secret_type, keys: Vec::new() });
                self.planned.len() - 1
            }
        };
        let p = &mut self.planned[idx];
        if !p.keys.iter().any(|(k, _, _)| k == key) {
            p.keys.push((key.to_string(), source, origin.to_string()));
        }
    }

    /// The Secrets with the values found in `values` (plain), or stubs: every key whose value is
    /// unknown is `""` and listed in `to_fill`, with a note naming where Kamal would read it.
    pub fn materialize(
        &self,
        namespace: &str,
        values: Option<&SecretValues>,
        report: &mut Report,
    ) -> Vec<ImportedSecret> {
        let mut out = Vec::new();
        for p in &self.planned {
            let mut data = Map::new();
            let mut to_fill = Vec::new();
            for (key, source, origin) in &p.keys {
                let value = match (source, values) {
                    (ValueSource::Literal(v), _) => Some(v.clone()),
                    (ValueSource::Kamal(_), None) => None,
                    (ValueSource::Kamal(n), Some(vals)) => match vals.values.get(n) {
                        Some(Some(v)) => Some(v.clone()),
                        Some(None) => {
                            report.note(format!(
                                "secret {n} ({origin}): its value in {} runs a command, which an import never does; \
                                 fill secret/{} key {key}",
                                vals.files.join(", "),
                                p.name
                            ));
                            None
                        }
                        None => {
                            report.note(format!(
                                "secret {n} ({origin}): no value in {}; fill secret/{} key {key}",
                                vals.files.join(", "),
                                p.name
                            ));
                            None
                        }
                    },
                };
                if value.is_none() {
                    to_fill.push(key.clone());
                }
                data.insert(key.clone(), Value::String(value.unwrap_or_default()));
            }
            let resource = json!({
                "apiVersion": crate::spec::API_VERSION,
                "kind": "Secret",
                "metadata": {"name": p.name, "namespace": namespace},
                "type": p.secret_type,
                "stringData": data,
            });
            out.push(ImportedSecret { name: p.name.clone(), resource, to_fill });
        }
        out
    }
}

/// Values read from Kamal's secrets files: `None` for a value that only a command would give.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretValues {
    /// The files read, in order, for messages.
    pub files: Vec<String>,
    pub values: BTreeMap<String, Option<String>>,
}

/// Reads one dotenv file into `into` (later files override earlier ones, as in Kamal): `NAME=value`,
/// `export NAME=value`, `#` comments, single quotes (literal), double quotes (`\n`, `\"`, `\\`,
/// and `$VAR`), `$VAR`/`${VAR}` from earlier lines or else `env`. `$(…)` makes the value unknown.
pub fn parse_dotenv(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    into: &mut SecretValues,
) -> Result<(), ImportError> {
    into.files.push(file.to_string());
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, raw)) = line.split_once('=') else {
            return Err(ImportError::new(file, Some(&format!("line {}", i + 1)), "expected NAME=value"));
        };
        let name = name.trim().to_string();
        let raw = raw.trim_start();
        let value = if let Some(rest) = raw.strip_prefix('\'') {
            let mut body = rest.to_string();
            while !body.contains('\'') {
                let Some((_, next)) = lines.next() else { break };
                body.push('\n');
                body.push_str(next);
            }
            Some(body.split('\'').next().unwrap_or_default().to_string())
        } else if let Some(rest) = raw.strip_prefix('"') {
            let mut body = rest.to_string();
            while closing_quote(&body).is_none() {
                let Some((_, next)) = lines.next() else { break };
                body.push('\n');
                body.push_str(next);
            }
            let end = closing_quote(&body).unwrap_or(body.len());
            let unescaped = body[..end].replace("\\n", "\n").replace("\\\"", "\"").replace("\\\\", "\\");
            interpolate(&unescaped, &into.values, env)
        } else {
            let bare = match raw.find(" #") {
                Some(at) => &raw[..at],
                None => raw,
            };
            interpolate(bare.trim(), &into.values, env)
        };
        into.values.insert(name, value);
    }
    Ok(())
}

fn closing_quote(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b'"' && (i == 0 || bytes[i - 1] != b'\\'))
}

/// `$VAR` and `${VAR}` substituted; `None` when the value runs a command or reads an unknown value.
fn interpolate(
    text: &str,
    known: &BTreeMap<String, Option<String>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    if text.contains("$(") || text.contains('`') {
        return None;
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => ("", after),
            }
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        match known.get(name) {
            Some(Some(v)) => out.push_str(v),
            Some(None) => return None,
            None => out.push_str(&env(name).unwrap_or_default()),
        }
        rest = tail;
    }
    out.push_str(rest);
    Some(out)
}

/// Seals every known value of `secret` to `recipients` (its `stringData` becomes `sealedData`);
/// keys still to fill stay in `stringData` as `""`.
pub fn seal(secret: &mut ImportedSecret, recipients: &[String]) -> Result<(), crate::sealing::SealError> {
    let Some(Value::Object(data)) = secret.resource.get("stringData").cloned() else { return Ok(()) };
    let mut sealed = Map::new();
    let mut plain = Map::new();
    for (k, v) in data {
        if secret.to_fill.contains(&k) {
            plain.insert(k, v);
        } else {
            let text = v.as_str().unwrap_or_default();
            sealed.insert(k, Value::String(crate::sealing::seal(recipients, text.as_bytes())?));
        }
    }
    let obj = secret.resource.as_object_mut().expect("a Secret is an object");
    obj.remove("stringData");
    if !plain.is_empty() {
        obj.insert("stringData".into(), Value::Object(plain));
    }
    if !sealed.is_empty() {
        obj.insert("sealedData".into(), Value::Object(sealed));
    }
    Ok(())
}

/// A `registry` section as a Secret of type registry named `name`: (its server, whether it holds
/// credentials — none means a public registry, and no Secret). Kamal's `[NAME]` (a list) reads the
/// secret NAME; a plain string is the value itself.
pub(crate) fn registry(r: Node<'_>, name: &str, ctx: &mut Ctx<'_>) -> (Option<String>, bool) {
    let server = r.get("server").and_then(scalar);
    if server.as_deref().is_some_and(|s| s.starts_with("localhost")) {
        ctx.report
            .unsupported(r.at("server"), "Kamal's local registry on localhost; push to a registry the hosts reach");
    }
    let source = |key: &str| match r.get(key) {
        Some(Yaml::Sequence(items)) => items.first().and_then(scalar).map(ValueSource::Kamal),
        Some(v) => scalar(v).map(ValueSource::Literal),
        None => None,
    };
    let (username, password) = (source("username"), source("password"));
    let (server_path, user_path, password_path) = (r.at("server"), r.at("username"), r.at("password"));
    r.finish(&mut ctx.report);
    if username.is_none() && password.is_none() {
        return (server, false);
    }
    let hub = server.clone().unwrap_or_else(|| "docker.io".into());
    ctx.secrets.add(name, "registry", "server", ValueSource::Literal(hub), &server_path);
    let username = username.unwrap_or_else(|| ValueSource::Kamal("KAMAL_REGISTRY_USERNAME".into()));
    let password = password.unwrap_or_else(|| ValueSource::Kamal("KAMAL_REGISTRY_PASSWORD".into()));
    ctx.secrets.add(name, "registry", "username", username, &user_path);
    ctx.secrets.add(name, "registry", "password", password, &password_path);
    (server, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_reads_kamal_secrets_files() {
        let text = "# registry\nKAMAL_REGISTRY_PASSWORD=abc # comment\nexport DB='p#ss $X'\nURL=\"x:${DB}\\n\"\n\
                    HOME_DIR=$HOME/x\nFETCHED=$(kamal secrets fetch a)\nUSES=$FETCHED-1\n";
        let mut v = SecretValues::default();
        let env = |k: &str| (k == "HOME").then(|| "/root".to_string());
        parse_dotenv(text, ".kamal/secrets", &env, &mut v).unwrap();
        assert_eq!(v.values["KAMAL_REGISTRY_PASSWORD"], Some("abc".into()));
        assert_eq!(v.values["DB"], Some("p#ss $X".into()));
        assert_eq!(v.values["URL"], Some("x:p#ss $X\n".into()));
        assert_eq!(v.values["HOME_DIR"], Some("/root/x".into()));
        assert_eq!(v.values["FETCHED"], None);
        assert_eq!(v.values["USES"], None);
        let e = parse_dotenv("oops\n", "s", &env, &mut v).unwrap_err();
        assert_eq!(e.to_string(), "s: line 1: expected NAME=value");
    }

    #[test]
    fn stubs_and_values() {
        let mut book = SecretBook::default();
        book.env_key("shop-env", "DB_PASSWORD", "env/secret[0]");
        book.add("shop-registry", "registry", "server", ValueSource::Literal("r.io".into()), "registry/server");
        book.add("shop-registry", "registry", "password", ValueSource::Kamal("REG".into()), "registry/password");
        let mut report = Report::default();
        let stubs = book.materialize("default", None, &mut report);
        assert_eq!(stubs[0].to_fill, vec!["DB_PASSWORD"]);
        assert_eq!(stubs[1].resource["stringData"], json!({"server": "r.io", "password": ""}));
        let vals = SecretValues {
            files: vec!["s".into()],
            values: [("DB_PASSWORD".to_string(), Some("pw".to_string()))].into_iter().collect(),
        };
        let full = book.materialize("default", Some(&vals), &mut report);
        assert!(full[0].to_fill.is_empty());
        assert_eq!(full[1].to_fill, vec!["password"]);
        assert!(report.notes.iter().any(|n| n.contains("no value in s")), "{:?}", report.notes);
    }
}
