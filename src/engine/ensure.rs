//! Making sure of what a container needs on its host before it is created: its pinned image (one
//! pull at a time per host, remembered across converges) and the app network.

use tracing::warn;

use super::execute::Run;
use crate::docker::{files, ops, ContainerFile, DockerError, HostClient};
use crate::plan::{labels, DesiredContainer};

impl Run<'_> {
    /// Pulls an image unless present; the plan's Pull and every create go through here, so two roles
    /// on one host never race on the same pull.
    pub(super) async fn ensure_image(&self, c: &HostClient, image: &str) -> Result<bool, DockerError> {
        let key = (c.name.clone(), image.to_string());
        let _guard = match self.pull_locks.get(&c.name) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        if self.images_ready.lock().contains(&key) {
            return Ok(false);
        }
        // Pinned references only: a digest names one image for ever, a tag may move.
        let pinned = crate::spec::parse_image(image).is_ok_and(|r| r.is_pinned());
        if pinned && self.pool.cache(&c.name).has_image(image) {
            self.images_ready.lock().insert(key);
            return Ok(false);
        }
        let auths = self.registries.get(image).map_or(&[][..], Vec::as_slice);
        let pulled = ops::pull(c, image, crate::docker::auth_for(image, auths)).await?;
        if pulled && pinned {
            // Only what berth pulled is ever cleaned up again (`controller::image_gc`).
            self.pulls.lock().push(crate::docker::images::PullNote {
                host: c.name.clone(),
                image: image.to_string(),
                namespace: self.app.namespace().to_string(),
                app: self.app.metadata.name.clone(),
            });
        }
        if pinned {
            self.pool.cache(&c.name).add_image(image);
        }
        self.images_ready.lock().insert(key);
        Ok(pulled)
    }

    /// Creates a container; when the host turns out not to hold its image after all (a forced
    /// `docker rmi` since berth saw it), pulls the image and creates again. Says whether it pulled.
    pub(super) async fn create(
        &self,
        c: &HostClient,
        container: &DesiredContainer,
    ) -> (Result<String, DockerError>, bool) {
        let (created, pulled) = match ops::create(c, container).await {
            Err(e) if e.status == Some(404) && e.message.contains("image") => {
                warn!(host = %c.name, image = %container.image, "image gone from the host: pulling it again");
                self.forget_image(c, &container.image);
                match self.ensure_image(c, &container.image).await {
                    Ok(pulled) => (ops::create(c, container).await, pulled),
                    Err(e) => (Err(e), false),
                }
            }
            r => (r, false),
        };
        let Ok(id) = created else { return (created, pulled) };
        // Files go in before the first start, straight into the container: never on the host's disk.
        if !container.files.is_empty() {
            let files: Vec<ContainerFile> = container
                .files
                .iter()
                .map(|f| ContainerFile {
                    path: f.path.clone(),
                    contents: f.contents.0.as_bytes().to_vec(),
                    mode: f.mode,
                })
                .collect();
            if let Err(e) = files::put_files(c, &id, &files).await {
                let _ = ops::remove(c, &id, &container.name).await;
                return (Err(e), pulled);
            }
        }
        (Ok(id), pulled)
    }

    /// Drops an image from what this converge believes a host holds, so the next use looks again.
    pub(super) fn forget_image(&self, c: &HostClient, image: &str) {
        self.images_ready.lock().remove(&(c.name.clone(), image.to_string()));
        self.pool.cache(&c.name).forget_image(image);
    }

    /// Creates the app network on a host unless it is known to exist, one creation at a time per host.
    pub(super) async fn ensure_network(&self, c: &HostClient, network: &str) -> Result<(), DockerError> {
        let key = (c.name.clone(), network.to_string());
        let _guard = match self.network_locks.get(&c.name) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        if self.networks.lock().contains(&key) {
            return Ok(());
        }
        let (app, ns) = (&self.app.metadata.name, self.app.namespace());
        ops::create_network(c, network, &labels::network_labels(app, ns)).await?;
        self.networks.lock().insert(key);
        Ok(())
    }
}
