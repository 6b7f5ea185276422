//! The containers on the bed's hosts as a user checks them: `docker ps --filter label=…` and
//! `docker inspect`, read into [`Ctr`].
use serde_json::Value;

use super::testbed::Testbed;
use super::world::lines;

/// A container as `docker inspect` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ctr {
    pub id: String,
    pub name: String,
    pub status: String,
    pub started: String,
    pub created: String,
    pub health: Option<String>,
    pub env: Vec<String>,
    /// `Config.Image`: the reference it was created from (berth pins it to a digest).
    pub image: String,
    /// The id of the image it runs.
    pub image_id: String,
    pub labels: serde_json::Map<String, Value>,
    /// The whole `docker inspect` document, for what the fields above leave out.
    pub raw: Value,
}

impl Ctr {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).and_then(Value::as_str)
    }

    pub fn role(&self) -> Option<&str> {
        self.label("berth.role")
    }

    pub fn accessory(&self) -> Option<&str> {
        self.label("berth.accessory")
    }

    /// `role/web`, `accessory/db`.
    pub fn component(&self) -> String {
        match (self.role(), self.accessory()) {
            (Some(r), _) => format!("role/{r}"),
            (_, Some(a)) => format!("accessory/{a}"),
            _ => "?".into(),
        }
    }

    /// Name, short id, state and health: one line for a failure message.
    pub fn short(&self) -> String {
        format!("{} {} {} {}", self.name, &self.id[..12], self.status, self.health.as_deref().unwrap_or("-"))
    }
}

/// [`Ctr::short`] of each.
pub fn shorts(cs: &[Ctr]) -> Vec<String> {
    cs.iter().map(Ctr::short).collect()
}

/// `docker inspect` of `ids` on `host`; a container removed meanwhile is left out.
pub fn inspect(tb: &Testbed, host: &str, ids: &[String]) -> Vec<Ctr> {
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["inspect"];
    args.extend(ids.iter().map(String::as_str));
    let out = tb.docker(host, &args);
    // A container removed between ps and inspect makes inspect fail for it only; keep the rest.
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    all.into_iter()
        .map(|v| Ctr {
            id: v["Id"].as_str().unwrap().to_string(),
            name: v["Name"].as_str().unwrap().trim_start_matches('/').to_string(),
            status: v["State"]["Status"].as_str().unwrap().to_string(),
            started: v["State"]["StartedAt"].as_str().unwrap_or_default().to_string(),
            created: v["Created"].as_str().unwrap_or_default().to_string(),
            health: v["State"]["Health"]["Status"].as_str().map(String::from),
            env: v["Config"]["Env"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            image: v["Config"]["Image"].as_str().unwrap_or_default().to_string(),
            image_id: v["Image"].as_str().unwrap_or_default().to_string(),
            labels: v["Config"]["Labels"].as_object().cloned().unwrap_or_default(),
            raw: v,
        })
        .collect()
}

/// Every container (running or not) on `host` matching the label filter (`berth.app=X`), by name.
pub fn containers(tb: &Testbed, host: &str, label: &str) -> Vec<Ctr> {
    let ids = lines(&tb.docker(host, &["ps", "-aq", "--no-trunc", "--filter", &format!("label={label}")]));
    let mut cs = inspect(tb, host, &ids);
    cs.sort_by(|a, b| a.name.cmp(&b.name));
    cs
}

/// Every container (running or not) of `app` on `host`, found by its `berth.app` label.
pub fn app_containers(tb: &Testbed, host: &str, app: &str) -> Vec<Ctr> {
    containers(tb, host, &format!("berth.app={app}"))
}

/// The containers of one component (`berth.role=web`) of an app on a host.
pub fn component(tb: &Testbed, host: &str, app: &str, label: &str) -> Vec<Ctr> {
    let (k, v) = label.split_once('=').unwrap();
    app_containers(tb, host, app).into_iter().filter(|c| c.label(k) == Some(v)).collect()
}

/// The one container of `app` in `ns` on `host` that runs `component` (`role/web`, `accessory/db`).
pub fn one(tb: &Testbed, host: &str, app: &str, ns: &str, component: &str) -> Ctr {
    let all = app_containers(tb, host, app);
    let mine: Vec<&Ctr> =
        all.iter().filter(|c| c.label("berth.namespace") == Some(ns) && c.component() == component).collect();
    assert_eq!(
        mine.len(),
        1,
        "expected one {component} container of {app} -n {ns} on {host}, found {:#?}",
        shorts(&all)
    );
    mine[0].clone()
}

/// `(host, name, id, StartedAt)` of every container of `app` on every host.
pub fn snapshot(tb: &Testbed, app: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for h in tb.host_names() {
        for c in app_containers(tb, h, app) {
            out.push((h.to_string(), c.name.clone(), c.id.clone(), c.started.clone()));
        }
    }
    out
}
