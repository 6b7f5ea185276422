//! Docker's event stream for berth-managed containers: how drift (a container killed, stopped or
//! removed by hand, or turned unhealthy) reaches the operator within seconds, without polling.

use std::collections::HashMap;

use bollard::query_parameters::EventsOptions;
use futures::{Stream, StreamExt};

use super::connect::{DockerError, HostClient};
use crate::plan::{labels, routes};

/// A lifecycle event of one managed container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// Empty for the host's proxy, which is no app's.
    pub app: String,
    pub namespace: String,
    /// True for the host's proxy container: every app routed through it is looked at again.
    pub proxy: bool,
    /// Docker's action: `die`, `destroy`, `stop`, `kill`, `start`, `create`, `health_status: unhealthy`, ...
    pub action: String,
    pub container: String,
}

impl ContainerEvent {
    /// Events that change what a list of containers would show (health checks' own `exec_*` events,
    /// every few seconds per container, do not).
    pub fn changes_state(&self) -> bool {
        !self.action.starts_with("exec_")
            && !matches!(
                self.action.as_str(),
                "attach"
                    | "detach"
                    | "top"
                    | "resize"
                    | "commit"
                    | "copy"
                    | "archive-path"
                    | "extract-to-dir"
                    | "export"
            )
    }

    /// Events that mean a container is no longer as berth left it.
    pub fn is_drift(&self) -> bool {
        matches!(self.action.as_str(), "die" | "destroy" | "stop" | "kill" | "oom" | "pause")
            || self.action.starts_with("health_status: unhealthy")
    }
}

/// Streams events of managed containers on one host until the connection breaks.
pub fn container_events(client: &HostClient) -> impl Stream<Item = Result<ContainerEvent, DockerError>> + '_ {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("label".to_string(), vec![format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE)]),
    ]);
    let options = EventsOptions { filters: Some(filters), ..Default::default() };
    client.docker.events(Some(options)).filter_map(move |item| async move {
        match item {
            Err(e) => Some(Err(DockerError::from_bollard(&client.name, "events", e))),
            Ok(msg) => {
                let actor = msg.actor?;
                let attrs = actor.attributes.unwrap_or_default();
                let proxy = attrs.get(routes::SYSTEM_LABEL).map(String::as_str) == Some(routes::SYSTEM_PROXY);
                let (app, namespace) = match (attrs.get(labels::APP), attrs.get(labels::NAMESPACE)) {
                    (Some(app), Some(ns)) => (app.clone(), ns.clone()),
                    _ if proxy => (String::new(), String::new()),
                    _ => return None,
                };
                Some(Ok(ContainerEvent {
                    app,
                    namespace,
                    proxy,
                    action: msg.action.unwrap_or_default(),
                    container: attrs.get("name").cloned().unwrap_or_default(),
                }))
            }
        }
    })
}
