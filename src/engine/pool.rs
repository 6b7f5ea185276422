//! Connections kept per host and re-made only when the Host's spec changes, so repeated
//! converges (and the operator) do not reconnect and renegotiate on every pass.

use std::collections::HashMap;

use tokio::sync::Mutex;

use crate::docker::{connect, DockerError, HostClient};
use crate::spec::{Host, HostSpec};

/// A cache of host clients keyed by Host name.
#[derive(Default)]
pub struct HostPool {
    clients: Mutex<HashMap<String, (HostSpec, HostClient)>>,
}

impl HostPool {
    pub fn new() -> HostPool {
        HostPool::default()
    }

    /// The client for a Host, connecting (and negotiating the API version) on first use or after a spec change.
    pub async fn client(&self, host: &Host) -> Result<HostClient, DockerError> {
        if let Some((spec, client)) = self.clients.lock().await.get(&host.metadata.name) {
            if *spec == host.spec {
                return Ok(client.clone());
            }
        }
        let client = connect(host).await?;
        self.clients.lock().await.insert(host.metadata.name.clone(), (host.spec.clone(), client.clone()));
        Ok(client)
    }

    /// Drops a client after a failure, so the next use reconnects (a restarted daemon, a moved socket).
    pub async fn forget(&self, host: &str) {
        self.clients.lock().await.remove(host);
    }
}
