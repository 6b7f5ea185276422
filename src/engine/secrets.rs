//! Opening what an App reads from Secrets, once per converge: env values and files (by Secret,
//! key and revision, so a changed value rolls exactly its users) and registry credentials for
//! `imagePullSecrets`. A Secret or key that is missing, or that this operator cannot open, makes
//! the App `Blocked` (reason `SecretUnavailable`) naming it; nothing else of the App runs then.

use std::collections::{BTreeMap, BTreeSet};

use crate::docker::RegistryAuth;
use crate::plan::{ResolvedSecret, SecretValues};
use crate::sealing::Keyring;
use crate::spec::{App, SecretKeyRef, SecretType, SecretValue};
use crate::store::{Store, StoreError};

/// What one converge may use.
#[derive(Debug, Default)]
pub struct Opened {
    /// Env and file values by reference, with their Secrets' revisions.
    pub values: SecretValues,
    /// Credentials of every `imagePullSecrets` entry (the App's and its accessories'), by Secret name.
    pub registries: BTreeMap<String, RegistryAuth>,
}

/// Registry credentials per image reference: the App's `imagePullSecrets` serve its image and every
/// accessory's; an accessory's own serve its image only (and come first). A pinned reference gets
/// the list of the reference it was resolved from.
pub type PullAuths = BTreeMap<String, Vec<RegistryAuth>>;

/// [`PullAuths`] for the App's images, with `pins` (spec reference → pinned) added.
pub fn pull_auths(app: &App, opened: &Opened, pins: &BTreeMap<String, String>) -> PullAuths {
    let named = |names: &[String]| -> Vec<RegistryAuth> {
        names.iter().filter_map(|n| opened.registries.get(n).cloned()).collect()
    };
    let app_level = named(&app.spec.image_pull_secrets);
    let mut out = PullAuths::new();
    out.entry(app.spec.image.clone()).or_default().extend(app_level.iter().cloned());
    for a in app.spec.accessories.values() {
        let list = out.entry(a.image.clone()).or_default();
        for auth in named(&a.image_pull_secrets).into_iter().chain(app_level.iter().cloned()) {
            if !list.contains(&auth) {
                list.push(auth);
            }
        }
    }
    for (reference, pinned) in pins {
        if let Some(list) = out.get(reference).cloned() {
            out.insert(pinned.clone(), list);
        }
    }
    out
}

/// Opens every Secret value the App uses. `Ok(Err(why))` is the App's problem (a missing Secret or
/// key, no identity to open it), one line naming the Secret and key; `Err` is etcd failing.
pub async fn open(store: &Store, app: &App, keyring: Option<&Keyring>) -> Result<Result<Opened, String>, StoreError> {
    let ns = app.namespace();
    let refs = references(app);
    let pulls = pull_secrets(app);
    let mut opened = Opened::default();
    if refs.is_empty() && pulls.is_empty() {
        return Ok(Ok(opened));
    }
    let Some(keyring) = keyring else {
        let first = refs.iter().map(|r| r.name.as_str()).chain(pulls.iter().map(String::as_str)).next().unwrap_or("?");
        return Ok(Err(format!("secret {first}: this operator has no sealing key to open it (--sealing-key)")));
    };
    for r in &refs {
        match value(store, ns, &r.name, &r.key, keyring).await? {
            Ok((value, revision)) => {
                opened.values.insert(r.clone(), ResolvedSecret { value, revision });
            }
            Err(why) => return Ok(Err(why)),
        }
    }
    for name in &pulls {
        let mut fields = Vec::new();
        for key in SecretType::Registry.required_keys() {
            match value(store, ns, name, key, keyring).await? {
                Ok((v, _)) => fields.push(v.0),
                Err(why) => return Ok(Err(why)),
            }
        }
        let [server, username, password]: [String; 3] = fields.try_into().expect("three registry keys");
        opened.registries.insert(name.clone(), RegistryAuth { server, username, password });
    }
    Ok(Ok(opened))
}

/// For `berth plan`, which cannot open anything: every reference with its Secret's revision (what
/// the config hash covers) and a placeholder value; references that do not resolve are left out.
pub async fn revisions(store: &Store, app: &App) -> Result<SecretValues, StoreError> {
    let mut out = SecretValues::new();
    for r in references(app) {
        if let Ok(Some(s)) = store.get_secret(app.namespace(), &r.name).await {
            if s.value.sealed_data.contains_key(&r.key) {
                let value = SecretValue("(sealed)".to_string());
                out.insert(r, ResolvedSecret { value, revision: s.mod_revision });
            }
        }
    }
    Ok(out)
}

/// One key of one Secret, opened, with the Secret's revision.
async fn value(
    store: &Store,
    ns: &str,
    name: &str,
    key: &str,
    keyring: &Keyring,
) -> Result<Result<(SecretValue, i64), String>, StoreError> {
    let secret = match store.get_secret(ns, name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(Err(format!("secret {name} key {key}: no Secret {name} in namespace {ns}"))),
        Err(StoreError::Corrupt { key: at, reason }) => {
            return Ok(Err(format!("secret {name} key {key}: the stored Secret at {at} is unreadable ({reason})")))
        }
        Err(e) => return Err(e),
    };
    let Some(sealed) = secret.value.sealed_data.get(key) else {
        return Ok(Err(format!("secret {name} key {key}: the Secret has no key {key}")));
    };
    match keyring.open(sealed) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(Ok((SecretValue(text), secret.mod_revision))),
            Err(_) => Ok(Err(format!("secret {name} key {key}: the value is not UTF-8 text"))),
        },
        Err(e) => Ok(Err(format!("secret {name} key {key}: {e}"))),
    }
}

/// Every Secret key the App's env and files read.
fn references(app: &App) -> BTreeSet<SecretKeyRef> {
    let spec = &app.spec;
    let mut out: BTreeSet<SecretKeyRef> = spec.env.values().filter_map(|v| v.secret_ref().cloned()).collect();
    for r in spec.roles.values() {
        out.extend(r.env.values().filter_map(|v| v.secret_ref().cloned()));
        out.extend(r.host_env.values().flat_map(|env| env.values()).filter_map(|v| v.secret_ref().cloned()));
        out.extend(r.files.values().filter_map(|f| f.secret_key_ref.clone()));
        if let Some(crate::spec::proxy::ProxyTls::Secret { secret_ref }) = r.proxy.as_ref().and_then(|p| p.tls.as_ref())
        {
            for key in SecretType::Tls.required_keys() {
                out.insert(SecretKeyRef { name: secret_ref.clone(), key: key.to_string() });
            }
        }
    }
    for a in spec.accessories.values() {
        out.extend(a.env.values().filter_map(|v| v.secret_ref().cloned()));
        out.extend(a.files.values().filter_map(|f| f.secret_key_ref.clone()));
    }
    out
}

/// Every `imagePullSecrets` name, the App's first.
fn pull_secrets(app: &App) -> Vec<String> {
    let mut out: Vec<String> = app.spec.image_pull_secrets.clone();
    for a in app.spec.accessories.values() {
        out.extend(a.image_pull_secrets.iter().filter(|n| !out.contains(n)).cloned().collect::<Vec<_>>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(server: &str) -> RegistryAuth {
        RegistryAuth { server: server.into(), username: "u".into(), password: "p".into() }
    }

    #[test]
    fn an_accessorys_credentials_serve_its_image_only_and_the_apps_serve_every_image() {
        let app: App = serde_json::from_value(serde_json::json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "App", "metadata": {"name": "shop"},
            "spec": {
                "image": "reg.a/shop:1", "imagePullSecrets": ["app-cred"],
                "roles": {"web": {"hosts": ["h1"]}},
                "accessories": {"db": {"image": "reg.b/db:16", "hosts": ["h1"], "imagePullSecrets": ["db-cred"]}}
            }
        }))
        .unwrap();
        let opened = Opened {
            values: SecretValues::new(),
            registries: BTreeMap::from([("app-cred".into(), auth("reg.a")), ("db-cred".into(), auth("reg.b"))]),
        };
        let pins = BTreeMap::from([("reg.a/shop:1".to_string(), "reg.a/shop@sha256:aa".to_string())]);
        let by_image = pull_auths(&app, &opened, &pins);
        assert_eq!(by_image["reg.a/shop:1"], vec![auth("reg.a")], "the accessory's credentials stay with it");
        assert_eq!(by_image["reg.b/db:16"], vec![auth("reg.b"), auth("reg.a")]);
        assert_eq!(by_image["reg.a/shop@sha256:aa"], vec![auth("reg.a")], "a pin inherits its reference's");
    }

    #[test]
    fn env_per_host_is_opened_too() {
        let app: App = serde_json::from_value(serde_json::json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "App", "metadata": {"name": "shop"},
            "spec": {"image": "shop:1", "roles": {"web": {"hosts": ["h1"],
                "hostEnv": {"h1": {"TOKEN": {"secretKeyRef": {"name": "tags", "key": "h1"}}}}}}}
        }))
        .unwrap();
        assert!(references(&app).contains(&SecretKeyRef { name: "tags".into(), key: "h1".into() }));
    }
}
