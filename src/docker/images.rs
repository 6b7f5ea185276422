//! The image calls of berth's clean-up, and what a pull berth made is noted as (each converge hands
//! its notes back in its outcome; they are recorded in etcd per host).

use std::collections::{BTreeMap, BTreeSet};

use bollard::query_parameters::{ListContainersOptions, RemoveImageOptions};

use super::connect::{DockerError, HostClient};

/// One pull berth made: a pinned image on a host, for an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullNote {
    pub host: String,
    pub image: String,
    pub namespace: String,
    pub app: String,
}

/// What the host holds of each reference: (image id, size in bytes), or `None` once it is gone.
pub async fn inspect_images(
    client: &HostClient,
    images: &[&str],
) -> Result<BTreeMap<String, Option<(String, u64)>>, DockerError> {
    let mut out = BTreeMap::new();
    for image in images {
        let found = match client.call("inspect image", client.docker.inspect_image(image)).await {
            Ok(i) => i.id.map(|id| (id, i.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        out.insert(image.to_string(), found);
    }
    Ok(out)
}

/// The image ids of every container on the host, berth's or anyone's, running or not.
pub async fn images_in_use(client: &HostClient) -> Result<BTreeSet<String>, DockerError> {
    let options = ListContainersOptions { all: true, ..Default::default() };
    let list = client.call("list containers", client.docker.list_containers(Some(options))).await?;
    Ok(list.into_iter().filter_map(|c| c.image_id).collect())
}

/// Removes one reference without force: an image that other references (a tag someone pulled by
/// hand) or a container still hold is only untagged or refused. Says whether the image itself went.
pub async fn remove_image(client: &HostClient, image: &str) -> Result<bool, DockerError> {
    let options = RemoveImageOptions { force: false, noprune: false, ..Default::default() };
    match client.call(&format!("remove image {image}"), client.docker.remove_image(image, Some(options), None)).await {
        Ok(items) => Ok(items.iter().any(|i| i.deleted.is_some())),
        Err(e) if e.is_not_found() || e.status == Some(409) => Ok(false),
        Err(e) => Err(e),
    }
}
