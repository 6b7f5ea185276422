//! Images of one test's own in the bed's private registry (TLS and a password, see
//! [`PrivateRegistry`](super::testbed::PrivateRegistry)): pushed with credentials that only the push
//! sees, so no daemon can pull them unless the caller sends the credentials.
use std::io::Write;
use std::process::{Command, Stdio};

use super::testbed::{describe, unique, Testbed, DOCKER};

impl Testbed {
    /// `app:v1` (serves "v1" on :80) as `PRIVATE/berth-test/<unique prefix>:v1`, pushed from host1
    /// and removed from it again, so every host has to pull it, and removing it disturbs no other
    /// test. Its manifest digest is `private_registry.digest`. Returns the reference.
    pub fn private_image(&self, prefix: &str) -> String {
        let registry = &self.private_registry;
        let image = format!("{}/berth-test/{}:v1", registry.address, unique(prefix));
        // The login lives in a config dir of this push only (deleted with it): the daemons keep none.
        let login_dir = tempfile::tempdir().expect("a temporary docker config dir");
        let config = login_dir.path().to_str().expect("a UTF-8 temp dir").to_string();
        self.docker_ok("host1", &["pull", "-q", &self.images.app_v1]);
        self.docker_ok("host1", &["tag", &self.images.app_v1, &image]);
        self.login("host1", &config);
        let pushed = self.docker("host1", &["--config", &config, "push", &image]);
        let _ = self.docker("host1", &["--config", &config, "logout", &registry.address]);
        self.docker_ok("host1", &["rmi", &image]);
        if !pushed.status.success() {
            panic!("{}", describe(&format!("docker push {image}"), &pushed));
        }
        image
    }

    /// `docker login` to the private registry from `host`, keeping the login in `config`; the
    /// password goes on stdin, never on a command line.
    fn login(&self, host: &str, config: &str) {
        let registry = &self.private_registry;
        let mut child = Command::new(DOCKER)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .args(["-H", &self.host(host).unix, "--config", config, "login", "-u", &registry.user])
            .args(["--password-stdin", &registry.address])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {DOCKER}: {e}"));
        child.stdin.take().expect("stdin").write_all(registry.password.as_bytes()).expect("write the password");
        let out = child.wait_with_output().expect("docker login finishes");
        if !out.status.success() {
            panic!("{}", describe(&format!("docker login {}", registry.address), &out));
        }
    }
}
