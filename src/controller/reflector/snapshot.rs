//! The operator's picture of the store and the one function that changes it (kube-runtime's
//! `reflector/store.rs`): a list and a watch event go through [`apply_event`] alike, so a value
//! reads the same whichever way it arrived. Pure: tested on plain data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tracing::warn;

use crate::spec::{hosts_of, App, Host};
use crate::store::{describe, Entry, KeyKind, Versioned, WatchEvent};

/// An App's identity in the queue: (namespace, name).
pub type AppKey = (String, String);

/// What changed in the store, as the dispatcher needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An App was created or changed.
    App(AppKey),
    /// An App's key disappeared; carries the last known spec so its containers can be found.
    AppGone(AppKey, Box<Versioned<App>>),
    /// These Hosts (by name) were created, changed or removed: the apps placed on them may be affected.
    Hosts(BTreeSet<String>),
}

/// The last consistent picture of apps, hosts and statuses.
///
/// A key whose value stops decoding keeps its last good value (with a warning), on a list as on a
/// watch: a value written around berth neither changes nor prunes what runs. Only a key that is
/// gone (deleted, or missing from a list) removes what it held.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub apps: BTreeMap<AppKey, Versioned<Arc<App>>>,
    pub hosts: BTreeMap<String, Host>,
    /// Each App's status as written (the engine's shape, decoded by the reader).
    pub statuses: BTreeMap<AppKey, Versioned<Arc<[u8]>>>,
    /// Host name → the apps whose current or previous spec places containers there.
    apps_by_host: BTreeMap<String, BTreeSet<AppKey>>,
    /// The hosts each app is indexed under (the inverse of `apps_by_host`).
    placed: BTreeMap<AppKey, BTreeSet<String>>,
    /// Each Secret's revision (never its values): a new one requeues the apps that read it.
    secrets: BTreeMap<AppKey, i64>,
}

impl Snapshot {
    /// Changes for the apps of `namespace` that read the Secret `name`.
    fn secret_users(&self, namespace: &str, name: &str) -> Vec<Change> {
        self.apps
            .iter()
            .filter(|((ns, _), app)| ns == namespace && crate::spec::secrets_used(&app.value).contains(name))
            .map(|(k, _)| Change::App(k.clone()))
            .collect()
    }

    /// The apps placed on `host` now, or by their previous spec (so their leftovers there get pruned).
    pub fn apps_on_host(&self, host: &str) -> impl Iterator<Item = &AppKey> {
        self.apps_by_host.get(host).into_iter().flatten()
    }

    /// Records that `key` is placed on `hosts`, replacing what it was indexed under.
    fn index(&mut self, key: &AppKey, hosts: BTreeSet<String>) {
        self.unindex(key);
        for h in &hosts {
            self.apps_by_host.entry(h.clone()).or_default().insert(key.clone());
        }
        self.placed.insert(key.clone(), hosts);
    }

    fn unindex(&mut self, key: &AppKey) {
        for h in self.placed.remove(key).unwrap_or_default() {
            if let Some(apps) = self.apps_by_host.get_mut(&h) {
                apps.remove(key);
                if apps.is_empty() {
                    self.apps_by_host.remove(&h);
                }
            }
        }
    }

    /// Puts one App value (decoded), indexed under its hosts and its previous version's; says
    /// whether it is a change.
    fn put_app(&mut self, key: AppKey, app: Versioned<Arc<App>>) -> bool {
        let mut hosts = hosts_of(&app.value);
        let previous = self.apps.get(&key);
        if previous.is_some_and(|p| p.mod_revision == app.mod_revision) {
            return false;
        }
        if let Some(p) = previous {
            hosts.extend(hosts_of(&p.value));
        }
        self.index(&key, hosts);
        self.apps.insert(key, app);
        true
    }

    fn remove_app(&mut self, key: &AppKey) -> Option<Versioned<Arc<App>>> {
        self.unindex(key);
        self.apps.remove(key)
    }
}

/// Applies one event to the snapshot and says what changed. A list replaces everything: keys it
/// lacks are gone, keys it holds are compared with what was known.
pub fn apply_event(snapshot: &mut Snapshot, event: WatchEvent) -> Vec<Change> {
    match event {
        WatchEvent::Listed { entries, .. } => relist(snapshot, entries),
        WatchEvent::Put(entry) => put(snapshot, entry),
        WatchEvent::Deleted { kind, .. } => delete(snapshot, kind),
    }
}

fn put(snapshot: &mut Snapshot, entry: Entry) -> Vec<Change> {
    let Entry { kind, key, value, mod_revision } = entry;
    match kind {
        KeyKind::App { namespace, name } => {
            let Some(app) = decode::<App>(&key, &value, "App") else { return Vec::new() };
            let k = (namespace, name);
            let changed = snapshot.put_app(k.clone(), Versioned { value: Arc::new(app), mod_revision });
            if changed {
                vec![Change::App(k)]
            } else {
                Vec::new()
            }
        }
        KeyKind::Host { name } => {
            let Some(host) = decode::<Host>(&key, &value, "Host") else { return Vec::new() };
            if snapshot.hosts.get(&name) == Some(&host) {
                return Vec::new();
            }
            snapshot.hosts.insert(name.clone(), host);
            vec![Change::Hosts([name].into())]
        }
        KeyKind::Status { namespace, name } => {
            snapshot.statuses.insert((namespace, name), Versioned { value: value.into(), mod_revision });
            Vec::new()
        }
        KeyKind::Secret { namespace, name } => {
            let k = (namespace, name);
            if snapshot.secrets.insert(k.clone(), mod_revision) == Some(mod_revision) {
                return Vec::new();
            }
            snapshot.secret_users(&k.0, &k.1)
        }
    }
}

fn delete(snapshot: &mut Snapshot, kind: KeyKind) -> Vec<Change> {
    match kind {
        KeyKind::App { namespace, name } => {
            let k = (namespace, name);
            match snapshot.remove_app(&k) {
                Some(last) => vec![gone(k, last)],
                None => Vec::new(),
            }
        }
        KeyKind::Host { name } => match snapshot.hosts.remove(&name) {
            Some(_) => vec![Change::Hosts([name].into())],
            None => Vec::new(),
        },
        KeyKind::Status { namespace, name } => {
            snapshot.statuses.remove(&(namespace, name));
            Vec::new()
        }
        KeyKind::Secret { namespace, name } => match snapshot.secrets.remove(&(namespace.clone(), name.clone())) {
            Some(_) => snapshot.secret_users(&namespace, &name),
            None => Vec::new(),
        },
    }
}

/// A full list: each listed key is put as a watch would put it, then every key the list lacks is
/// deleted as a watch would delete it.
fn relist(snapshot: &mut Snapshot, entries: Vec<Entry>) -> Vec<Change> {
    let mut listed_apps = BTreeSet::new();
    let mut listed_hosts = BTreeSet::new();
    let mut listed_statuses = BTreeSet::new();
    let mut listed_secrets = BTreeSet::new();
    let mut app_changes = Vec::new();
    let mut hosts_changed = BTreeSet::new();
    for entry in entries {
        match &entry.kind {
            KeyKind::App { namespace, name } => listed_apps.insert((namespace.clone(), name.clone())),
            KeyKind::Host { name } => listed_hosts.insert(name.clone()),
            KeyKind::Status { namespace, name } => listed_statuses.insert((namespace.clone(), name.clone())),
            KeyKind::Secret { namespace, name } => listed_secrets.insert((namespace.clone(), name.clone())),
        };
        sort(put(snapshot, entry), &mut app_changes, &mut hosts_changed);
    }
    let unlisted_apps: Vec<AppKey> = snapshot.apps.keys().filter(|k| !listed_apps.contains(*k)).cloned().collect();
    for (namespace, name) in unlisted_apps {
        sort(delete(snapshot, KeyKind::App { namespace, name }), &mut app_changes, &mut hosts_changed);
    }
    let unlisted_hosts: Vec<String> = snapshot.hosts.keys().filter(|h| !listed_hosts.contains(*h)).cloned().collect();
    for name in unlisted_hosts {
        sort(delete(snapshot, KeyKind::Host { name }), &mut app_changes, &mut hosts_changed);
    }
    snapshot.statuses.retain(|k, _| listed_statuses.contains(k));
    let unlisted_secrets: Vec<AppKey> =
        snapshot.secrets.keys().filter(|k| !listed_secrets.contains(*k)).cloned().collect();
    for (namespace, name) in unlisted_secrets {
        sort(delete(snapshot, KeyKind::Secret { namespace, name }), &mut app_changes, &mut hosts_changed);
    }
    if !hosts_changed.is_empty() {
        app_changes.push(Change::Hosts(hosts_changed));
    }
    app_changes
}

/// Collects a list's changes: app changes in order, host changes merged into one.
fn sort(changes: Vec<Change>, apps: &mut Vec<Change>, hosts: &mut BTreeSet<String>) {
    for c in changes {
        match c {
            Change::Hosts(names) => hosts.extend(names),
            other => apps.push(other),
        }
    }
}

fn gone(key: AppKey, last: Versioned<Arc<App>>) -> Change {
    let value = Arc::unwrap_or_clone(last.value);
    Change::AppGone(key, Box::new(Versioned { value, mod_revision: last.mod_revision }))
}

/// Decodes a stored resource; one that does not decode is logged by key and reason (never the
/// value: it may hold env values) and left as it was.
fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8], what: &str) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(key = %key, reason = %describe(&e), "keeping the last readable value of a {what} key that does not decode");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_json(name: &str, hosts: &[&str]) -> Vec<u8> {
        let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
        format!(
            r#"{{"apiVersion": "berth.dev/v1alpha1", "kind": "App", "metadata": {{"name": "{name}", "namespace": "ns"}},
                "spec": {{"image": "reg/{name}:1", "roles": {{"web": {{"hosts": [{}]}}}}}}}}"#,
            hosts.join(", ")
        )
        .into_bytes()
    }

    fn host_json(name: &str, endpoint: &str) -> Vec<u8> {
        format!(
            r#"{{"apiVersion": "berth.dev/v1alpha1", "kind": "Host", "metadata": {{"name": "{name}"}},
                "spec": {{"endpoint": "{endpoint}"}}}}"#
        )
        .into_bytes()
    }

    fn app_entry(name: &str, value: Vec<u8>, rev: i64) -> Entry {
        let kind = KeyKind::App { namespace: "ns".into(), name: name.into() };
        Entry { kind, key: format!("/b/apps/ns/{name}"), value, mod_revision: rev }
    }

    fn host_entry(name: &str, value: Vec<u8>, rev: i64) -> Entry {
        Entry { kind: KeyKind::Host { name: name.into() }, key: format!("/b/hosts/{name}"), value, mod_revision: rev }
    }

    fn status_entry(name: &str, value: &str, rev: i64) -> Entry {
        let kind = KeyKind::Status { namespace: "ns".into(), name: name.into() };
        Entry { kind, key: format!("/b/status/apps/ns/{name}"), value: value.into(), mod_revision: rev }
    }

    fn key(name: &str) -> AppKey {
        ("ns".into(), name.into())
    }

    fn hosts(names: &[&str]) -> Change {
        Change::Hosts(names.iter().map(|n| n.to_string()).collect())
    }

    fn listed(entries: Vec<Entry>) -> WatchEvent {
        WatchEvent::Listed { revision: 100, entries }
    }

    /// What a reader sees: each app's revision and image, and each host's endpoint.
    type View = (Vec<(AppKey, i64, String)>, Vec<(String, String)>);

    fn view(s: &Snapshot) -> View {
        let apps = s.apps.iter().map(|(k, v)| (k.clone(), v.mod_revision, v.value.spec.image.clone())).collect();
        let hosts = s.hosts.iter().map(|(n, h)| (n.clone(), h.spec.endpoint.clone())).collect();
        (apps, hosts)
    }

    fn on_host(s: &Snapshot, host: &str) -> Vec<String> {
        s.apps_on_host(host).map(|k| k.1.clone()).collect()
    }

    #[test]
    fn a_list_then_puts_and_deletes_report_each_change_once() {
        let mut s = Snapshot::default();
        let first = vec![app_entry("a", app_json("a", &["h1"]), 5), host_entry("h1", host_json("h1", "unix:///1"), 3)];
        assert_eq!(apply_event(&mut s, listed(first.clone())), vec![Change::App(key("a")), hosts(&["h1"])]);
        // The same list again changes nothing.
        assert_eq!(apply_event(&mut s, listed(first)), vec![]);

        let put = WatchEvent::Put(app_entry("b", app_json("b", &["h1"]), 7));
        assert_eq!(apply_event(&mut s, put), vec![Change::App(key("b"))]);
        let same_host = WatchEvent::Put(host_entry("h1", host_json("h1", "unix:///1"), 8));
        assert_eq!(apply_event(&mut s, same_host), vec![], "an identical Host is no change");
        let moved_host = WatchEvent::Put(host_entry("h1", host_json("h1", "unix:///2"), 9));
        assert_eq!(apply_event(&mut s, moved_host), vec![hosts(&["h1"])]);

        let deleted =
            WatchEvent::Deleted { kind: KeyKind::App { namespace: "ns".into(), name: "a".into() }, key: "k".into() };
        let changes = apply_event(&mut s, deleted.clone());
        let [Change::AppGone(k, last)] = changes.as_slice() else { panic!("{changes:?}") };
        assert_eq!((k, last.mod_revision, last.value.spec.image.as_str()), (&key("a"), 5, "reg/a:1"));
        assert_eq!(apply_event(&mut s, deleted), vec![], "a second delete is no change");
        let host_gone = WatchEvent::Deleted { kind: KeyKind::Host { name: "h1".into() }, key: "k".into() };
        assert_eq!(apply_event(&mut s, host_gone), vec![hosts(&["h1"])]);
        assert_eq!(view(&s), (vec![(key("b"), 7, "reg/b:1".into())], vec![]));
    }

    #[test]
    fn a_list_that_lacks_a_key_removes_it() {
        let mut s = Snapshot::default();
        let both = vec![
            app_entry("a", app_json("a", &["h1"]), 5),
            app_entry("b", app_json("b", &["h1"]), 6),
            host_entry("h1", host_json("h1", "unix:///1"), 3),
            host_entry("h2", host_json("h2", "unix:///2"), 4),
        ];
        apply_event(&mut s, listed(both));
        let changes = apply_event(
            &mut s,
            listed(vec![app_entry("b", app_json("b", &["h1"]), 9), host_entry("h1", host_json("h1", "unix:///1"), 3)]),
        );
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(changes[0], Change::App(key("b")));
        assert!(matches!(&changes[1], Change::AppGone(k, last) if *k == key("a") && last.mod_revision == 5));
        assert_eq!(changes[2], hosts(&["h2"]));
        assert_eq!(view(&s), (vec![(key("b"), 9, "reg/b:1".into())], vec![("h1".into(), "unix:///1".into())]));
        assert_eq!(on_host(&s, "h1"), ["b"]);
    }

    /// The disagreement this module exists to end: a value that stops decoding keeps the last good
    /// one on a watch and on a list alike, changing and pruning nothing.
    #[test]
    fn a_value_that_stops_decoding_keeps_its_last_good_value_whichever_path_brings_it() {
        let good = vec![app_entry("a", app_json("a", &["h1"]), 5), host_entry("h1", host_json("h1", "unix:///1"), 3)];
        let corrupt = || vec![app_entry("a", br#"{"kind": "App"}"#.to_vec(), 6), host_entry("h1", b"[]".to_vec(), 7)];

        let mut watched = Snapshot::default();
        apply_event(&mut watched, listed(good.clone()));
        let mut changes = Vec::new();
        for entry in corrupt() {
            changes.extend(apply_event(&mut watched, WatchEvent::Put(entry)));
        }
        assert_eq!(changes, vec![]);

        let mut relisted = Snapshot::default();
        apply_event(&mut relisted, listed(good));
        assert_eq!(apply_event(&mut relisted, listed(corrupt())), vec![]);

        let kept = (vec![(key("a"), 5, "reg/a:1".to_string())], vec![("h1".to_string(), "unix:///1".to_string())]);
        assert_eq!(view(&watched), kept);
        assert_eq!(view(&relisted), kept);
        assert_eq!(on_host(&watched, "h1"), on_host(&relisted, "h1"));

        // Never decoded: unknown either way.
        let mut fresh = Snapshot::default();
        assert_eq!(apply_event(&mut fresh, listed(corrupt())), vec![]);
        assert_eq!(apply_event(&mut fresh, WatchEvent::Put(corrupt().remove(0))), vec![]);
        assert_eq!(view(&fresh), (vec![], vec![]));

        // Deleting it removes the last good value, by either path.
        let delete =
            WatchEvent::Deleted { kind: KeyKind::App { namespace: "ns".into(), name: "a".into() }, key: "k".into() };
        assert!(matches!(apply_event(&mut watched, delete).as_slice(), [Change::AppGone(..)]));
        let changes = apply_event(&mut relisted, listed(vec![host_entry("h1", host_json("h1", "unix:///1"), 3)]));
        assert!(matches!(changes.as_slice(), [Change::AppGone(..)]), "{changes:?}");
        assert_eq!(view(&watched), view(&relisted));
    }

    #[test]
    fn the_host_index_holds_the_current_and_the_previous_spec() {
        let mut s = Snapshot::default();
        apply_event(&mut s, listed(vec![app_entry("a", app_json("a", &["h1"]), 5)]));
        assert_eq!(on_host(&s, "h1"), ["a"]);
        // Moved to h2: still indexed under h1, where its old containers are to be pruned.
        apply_event(&mut s, WatchEvent::Put(app_entry("a", app_json("a", &["h2"]), 6)));
        assert_eq!((on_host(&s, "h1"), on_host(&s, "h2")), (vec!["a".to_string()], vec!["a".to_string()]));
        apply_event(&mut s, WatchEvent::Put(app_entry("a", app_json("a", &["h2", "h3"]), 7)));
        assert_eq!((on_host(&s, "h1"), on_host(&s, "h3")), (vec![], vec!["a".to_string()]));
        // A list with a newer revision indexes the same way.
        apply_event(&mut s, listed(vec![app_entry("a", app_json("a", &["h1"]), 8)]));
        assert_eq!(
            (on_host(&s, "h1"), on_host(&s, "h2"), on_host(&s, "h3")),
            (vec!["a".into()], vec!["a".into()], vec!["a".into()])
        );
        let delete =
            WatchEvent::Deleted { kind: KeyKind::App { namespace: "ns".into(), name: "a".into() }, key: "k".into() };
        apply_event(&mut s, delete);
        assert!(s.apps_by_host.is_empty() && s.placed.is_empty(), "{s:?}");
    }

    #[test]
    fn statuses_are_kept_without_being_a_change() {
        let mut s = Snapshot::default();
        assert_eq!(apply_event(&mut s, listed(vec![status_entry("a", "{}", 4)])), vec![]);
        assert_eq!(apply_event(&mut s, WatchEvent::Put(status_entry("a", r#"{"phase": "Ready"}"#, 9))), vec![]);
        assert_eq!(&*s.statuses[&key("a")].value, br#"{"phase": "Ready"}"#);
        assert_eq!(s.statuses[&key("a")].mod_revision, 9);
        let gone =
            WatchEvent::Deleted { kind: KeyKind::Status { namespace: "ns".into(), name: "a".into() }, key: "k".into() };
        assert_eq!(apply_event(&mut s, gone), vec![]);
        assert!(s.statuses.is_empty());
        apply_event(&mut s, WatchEvent::Put(status_entry("b", "{}", 10)));
        apply_event(&mut s, listed(vec![]));
        assert!(s.statuses.is_empty(), "a list without the key drops it");
    }
}
