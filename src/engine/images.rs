//! Image pinning: every tag an App uses is resolved to a digest once, through a host that needs it,
//! and that pin is what every container of the namespace runs.

use std::collections::BTreeMap;

use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::docker::{ops, HostClient};
use crate::plan;
use crate::spec::{App, Host};

/// What `<prefix>/pins/<ns>/<app>` holds: the pins, and the `berth repin` request they answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pins {
    /// Spec image reference → pinned reference (`repo@sha256:…`).
    pub images: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repin_requested_at: Option<String>,
}

impl Pins {
    /// The pins as they stood when an older berth kept them in the status.
    pub fn from_status(s: &super::AppStatus) -> Pins {
        Pins { images: s.images.clone(), repin_requested_at: s.repin_requested_at.clone() }
    }
}

/// Pins every image reference the app needs. A pin already recorded is reused for as long as the
/// spec keeps its reference and no `berth repin` came after it, whatever else in the spec changes:
/// a moved tag never swaps a running namespace's image, and a change that does not touch `image`
/// never changes the code (nor waits on a registry round trip). Anything else is resolved once,
/// through a host that needs it.
pub async fn resolve_images(
    app: &App,
    hosts: &[Host],
    previous: Option<&Pins>,
    clients: &BTreeMap<String, HostClient>,
    registries: &super::secrets::PullAuths,
) -> Result<BTreeMap<String, String>, String> {
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (host, refs) in plan::images_needed(app, hosts) {
        for r in refs {
            wanted.entry(r).or_default().push(host.clone());
        }
    }
    // Every reference at once: each look-up is a registry round trip through a daemon.
    let reuse = previous.filter(|p| p.repin_requested_at.as_deref() == app.repin_requested_at());
    let results = join_all(wanted.into_iter().map(|(reference, needing)| async move {
        if let Some(p) = reuse.and_then(|prev| prev.images.get(&reference)) {
            return (reference, Ok(p.clone()));
        }
        let mut last_error = format!("no reachable host needs {reference}");
        for host in &needing {
            let Some(client) = clients.get(host) else { continue };
            // The App's imagePullSecrets whose server is this image's registry, if any.
            let auths = registries.get(&reference).map_or(&[][..], Vec::as_slice);
            match ops::resolve_image(client, &reference, crate::docker::auth_for(&reference, auths)).await {
                Ok(p) => return (reference, Ok(p)),
                Err(e) => last_error = e.to_string(),
            }
        }
        let why = format!("cannot resolve image {reference}: {last_error}");
        (reference, Err(why))
    }))
    .await;
    let mut pinned = BTreeMap::new();
    for (reference, result) in results {
        pinned.insert(reference, result?);
    }
    Ok(pinned)
}
