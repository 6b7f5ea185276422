//! Kamal's `env` sections (`{clear, secret, tags}` or a plain mapping) and how they resolve, as
//! Kamal's `Env#merge` and `Role#env(host)` do: the root env, then the role's, then the env of each
//! of the host's tags in order; clear values merge key by key, secret names are a union, and in
//! the result a secret wins over a clear value of the same name. berth then gets the App's env,
//! each role's differences from it, and each host's differences from its role (`hostEnv`).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use serde_yaml_ng::Value as Yaml;

use super::config::{key_text, scalar, Node};
use super::{Ctx, EnvMap, Report};

/// One env section: clear values and secret names (`DB_PASSWORD` or `DB_PASSWORD:MAIN_DB_PASSWORD`,
/// the env name and the secret it reads), in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KamalEnv {
    pub clear: Vec<(String, String)>,
    pub secret: Vec<String>,
    /// Where each secret name was written, for messages about missing values.
    pub origins: BTreeMap<String, String>,
}

impl KamalEnv {
    /// `self` then `other`, as Kamal's `Env#merge`.
    pub fn merge(&self, other: &KamalEnv) -> KamalEnv {
        let mut out = self.clone();
        for (k, v) in &other.clear {
            match out.clear.iter_mut().find(|(ok, _)| ok == k) {
                Some(slot) => slot.1 = v.clone(),
                None => out.clear.push((k.clone(), v.clone())),
            }
        }
        for s in &other.secret {
            if !out.secret.contains(s) {
                out.secret.push(s.clone());
            }
        }
        out.origins.extend(other.origins.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// berth env values: clear strings, then secrets as references into the App's env Secret
    /// (a later secret of the same env name wins, as in Kamal's `to_h`).
    pub fn resolve(&self, ctx: &mut Ctx<'_>) -> EnvMap {
        let mut out: EnvMap = self.clear.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        for raw in &self.secret {
            let (env_name, secret) = raw.split_once(':').unwrap_or((raw, raw));
            let origin = self.origins.get(raw).cloned().unwrap_or_else(|| "env/secret".into());
            let name = ctx.secrets.env_key(&ctx.child_name("env"), secret, &origin);
            out.insert(env_name.to_string(), json!({"secretKeyRef": {"name": name, "key": secret}}));
        }
        out
    }
}

/// An env section and, at the top level, its `tags` (tag name → env).
pub struct ParsedEnv {
    pub env: KamalEnv,
    pub tags: BTreeMap<String, KamalEnv>,
}

/// Parses the `env` value at `path`. `tags` are read only where Kamal allows them (the root env).
pub fn parse(value: &Yaml, path: &str, allow_tags: bool, report: &mut Report) -> ParsedEnv {
    let mut tags = BTreeMap::new();
    let Yaml::Mapping(map) = value else {
        report.unsupported(path, "expected a mapping (clear/secret or NAME: value); not imported");
        return ParsedEnv { env: KamalEnv::default(), tags };
    };
    let structured = ["clear", "secret", "tags"].iter().any(|k| map.contains_key(*k));
    if !structured {
        return ParsedEnv { env: clear_values(map, path, report), tags };
    }
    let node = Node::new(path, map);
    let mut env = match node.get("clear") {
        Some(Yaml::Mapping(m)) => clear_values(m, &node.at("clear"), report),
        Some(_) => {
            report.unsupported(node.at("clear"), "expected a mapping of NAME: value; not imported");
            KamalEnv::default()
        }
        None => KamalEnv::default(),
    };
    if let Some(v) = node.get("secret") {
        match v {
            Yaml::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    match scalar(item) {
                        Some(s) if !s.is_empty() => {
                            env.origins.insert(s.clone(), format!("{}[{i}]", node.at("secret")));
                            if !env.secret.contains(&s) {
                                env.secret.push(s);
                            }
                        }
                        _ => report.unsupported(format!("{}[{i}]", node.at("secret")), "not a secret name"),
                    }
                }
            }
            _ => report.unsupported(node.at("secret"), "expected a list of secret names; not imported"),
        }
    }
    if allow_tags {
        if let Some(t) = node.child(report, "tags") {
            for (tag, v) in t.map {
                let tag = key_text(tag);
                let sub = parse(v, &t.at(&tag), false, report);
                tags.insert(tag.clone(), sub.env);
                t.get(&tag);
            }
            t.finish(report);
        }
    } else {
        node.unsupported(report, "tags", "Kamal allows env tags in the top-level env only");
    }
    node.finish(report);
    ParsedEnv { env, tags }
}

fn clear_values(map: &serde_yaml_ng::Mapping, path: &str, report: &mut Report) -> KamalEnv {
    let mut env = KamalEnv::default();
    for (k, v) in map {
        let k = key_text(k);
        match scalar(v) {
            Some(v) => env.clear.push((k, v)),
            None => report.unsupported(format!("{path}/{k}"), "an env value is a string, number or boolean"),
        }
    }
    env
}

/// Entries of `full` that `base` lacks or holds with another value: what a role adds to the App's
/// env, or a host to its role's.
pub fn difference(full: &EnvMap, base: &EnvMap) -> EnvMap {
    full.iter().filter(|(k, v)| base.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str, allow_tags: bool) -> (ParsedEnv, Report) {
        let mut report = Report::default();
        let v: Yaml = serde_yaml_ng::from_str(text).unwrap();
        (parse(&v, "env", allow_tags, &mut report), report)
    }

    #[test]
    fn plain_mapping_is_clear() {
        let (p, r) = env("{DATABASE_HOST: db, DATABASE_PORT: 3306}", true);
        assert_eq!(p.env.clear, vec![("DATABASE_HOST".into(), "db".into()), ("DATABASE_PORT".into(), "3306".into())]);
        assert!(r.unsupported.is_empty());
    }

    #[test]
    fn structured_env_with_tags_and_aliases() {
        let (p, r) = env(
            "{clear: {A: 1}, secret: [DB_PASSWORD:MAIN_DB_PASSWORD], tags: {replica: {clear: {A: 2}, secret: [RO]}, mon: {A: 3}}}",
            true,
        );
        assert_eq!(p.env.secret, vec!["DB_PASSWORD:MAIN_DB_PASSWORD".to_string()]);
        assert_eq!(p.tags["replica"].secret, vec!["RO".to_string()]);
        assert_eq!(p.tags["mon"].clear, vec![("A".into(), "3".into())]);
        assert!(r.unsupported.is_empty());
        let merged = p.env.merge(&p.tags["replica"]);
        assert_eq!(merged.clear, vec![("A".into(), "2".into())]);
        assert_eq!(merged.secret.len(), 2);
    }

    #[test]
    fn tags_below_the_root_and_odd_values_are_reported() {
        let (_, r) = env("{clear: {A: [1]}, tags: {x: {A: 1}}, other: 1}", false);
        let paths: Vec<&str> = r.unsupported.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(paths, vec!["env/clear/A", "env/tags", "env/other"]);
    }
}
