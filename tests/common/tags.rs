//! Moving an image tag in the bed's registry, as a CI pipeline pushing a new build would.
use super::testbed::Testbed;

impl Testbed {
    /// Points `tag` (a full `REG/repo:tag` reference) at `source`'s image and pushes it; host1's
    /// daemon does the pushing and keeps no copy of the tag.
    pub fn point_tag(&self, tag: &str, source: &str) {
        self.docker_ok("host1", &["pull", "-q", source]);
        self.docker_ok("host1", &["tag", source, tag]);
        self.docker_ok("host1", &["push", tag]);
        self.docker_ok("host1", &["rmi", tag]);
    }
}
