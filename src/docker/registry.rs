//! Registry credentials for pulls and digest look-ups: which credentials an image's registry takes,
//! how they travel to the daemon, and errors that name the registry (and the user) but never the
//! password.

use bollard::auth::DockerCredentials;

use super::error::DockerError;
use crate::spec::parse_image;

/// What Docker calls the registry of a reference without one (`redis:7`).
const DOCKER_HUB: &str = "docker.io";
/// The server address Docker's own login keeps Docker Hub credentials under.
const DOCKER_HUB_LOGIN: &str = "https://index.docker.io/v1/";

/// Credentials for one registry (from a `registry` Secret). Neither `Debug` nor `Display` shows
/// the password, so one in a log line, an error or a plan dump gives nothing away.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry as the user wrote it: `host:port`, `https://host:port`, `host:port/`, or for
    /// Docker Hub `docker.io`, `index.docker.io` or `https://index.docker.io/v1/`.
    pub server: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `USER@SERVER`.
impl std::fmt::Display for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.username, self.server)
    }
}

impl RegistryAuth {
    /// The registry these credentials are for, as [`registry_of`] names an image's (`host[:port]`).
    pub fn registry(&self) -> String {
        normalize_server(&self.server)
    }

    /// The `X-Registry-Auth` payload of a pull or a distribution inspect.
    pub(super) fn credentials(&self) -> DockerCredentials {
        let serveraddress = match self.registry().as_str() {
            DOCKER_HUB => DOCKER_HUB_LOGIN.to_string(),
            other => other.to_string(),
        };
        DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(serveraddress),
            ..Default::default()
        }
    }
}

/// The registry host[:port] an image reference is pulled from; `docker.io` for Docker Hub
/// (`redis:7`, `library/redis`, `docker.io/library/redis`). `None` for a reference that does not parse.
pub fn registry_of(image: &str) -> Option<String> {
    let parsed = parse_image(image).ok()?;
    Some(match parsed.registry {
        Some(r) => canonical_host(&r),
        None => DOCKER_HUB.to_string(),
    })
}

/// The credentials among `auths` whose `server` is the image's registry (the first such, when
/// several match); `None` when none does or the reference does not parse.
pub fn auth_for<'a>(image: &str, auths: &'a [RegistryAuth]) -> Option<&'a RegistryAuth> {
    let registry = registry_of(image)?;
    auths.iter().find(|a| a.registry() == registry)
}

/// `https://Host:5000/` and `host:5000` name one registry: no scheme, no path, lowercase host;
/// every name of Docker Hub is `docker.io`.
fn normalize_server(server: &str) -> String {
    let s = server.trim();
    let s = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default();
    canonical_host(host)
}

fn canonical_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// Rewrites a failed pull or look-up whose registry refused us so that it names the registry and
/// the user, and takes every trace of the password out of any error it returns.
pub(super) fn explain(mut error: DockerError, image: &str, auth: Option<&RegistryAuth>) -> DockerError {
    let registry = registry_of(image).unwrap_or_else(|| image.to_string());
    if refused(&error) {
        let docker = error.message.clone();
        error.message = match auth {
            Some(a) => {
                format!("registry {registry} refused the credentials of {} (401 Unauthorized): {docker}", a.username)
            }
            None => {
                format!("registry {registry} requires credentials (none given; it answered 401 Unauthorized): {docker}")
            }
        };
        error.status = Some(401);
    }
    if let Some(a) = auth.filter(|a| !a.password.is_empty()) {
        error.message = error.message.replace(&a.password, "<redacted>");
        error.op = error.op.replace(&a.password, "<redacted>");
    }
    error
}

/// Whether the daemon's answer says the registry wanted (other) credentials: Docker reports a 401
/// with credentials as its own 401, and one without them as a 500 "no basic auth credentials".
fn refused(error: &DockerError) -> bool {
    let m = error.message.to_ascii_lowercase();
    error.status == Some(401)
        || m.contains("no basic auth credentials")
        || m.contains("unauthorized")
        || m.contains("authentication required")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(server: &str) -> RegistryAuth {
        RegistryAuth { server: server.into(), username: "ci".into(), password: "hunter2".into() }
    }

    #[test]
    fn a_server_matches_its_registry_however_it_is_written() {
        for server in
            ["reg.example.com:5000", "https://reg.example.com:5000", "reg.example.com:5000/", "REG.example.com:5000"]
        {
            let auths = [auth("other.example.com:5000"), auth(server)];
            let found = auth_for("reg.example.com:5000/team/app:v1", &auths);
            assert_eq!(found.map(|a| a.server.as_str()), Some(server), "{server}");
        }
        let auths = [auth("http://10.0.0.1:5443/v2/")];
        assert!(auth_for(
            "10.0.0.1:5443/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            &auths
        )
        .is_some());
    }

    #[test]
    fn docker_hub_references_match_every_name_of_docker_hub() {
        for server in ["docker.io", "index.docker.io", "https://index.docker.io/v1/", "registry-1.docker.io"] {
            let auths = [auth(server)];
            for image in ["redis:7", "library/redis", "docker.io/library/redis:7", "index.docker.io/acme/shop"] {
                assert!(auth_for(image, &auths).is_some(), "{image} with {server}");
            }
        }
    }

    #[test]
    fn another_registry_or_port_does_not_match() {
        let auths = [auth("reg.example.com:5000"), auth("docker.io")];
        assert_eq!(auth_for("reg.example.com/team/app", &auths).map(|a| a.server.as_str()), None);
        assert_eq!(auth_for("reg.example.com:5001/team/app", &auths), None);
        assert_eq!(auth_for("ghcr.io/acme/shop:1", &auths), None);
        assert_eq!(auth_for("localhost:5000/shop", &[auth("127.0.0.1:5000")]), None);
        assert_eq!(auth_for("redis:7", &[auth("reg.example.com:5000")]), None);
        assert_eq!(auth_for("Not A Reference", &auths), None);
        assert_eq!(auth_for("redis:7", &[]), None);
    }

    #[test]
    fn the_first_matching_credentials_win() {
        let mut second = auth("reg.example.com:5000");
        second.username = "second".into();
        let auths = [auth("https://reg.example.com:5000/"), second];
        assert_eq!(auth_for("reg.example.com:5000/app", &auths).map(|a| a.username.as_str()), Some("ci"));
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        let a = auth("reg.example.com:5000");
        for text in [format!("{a:?}"), format!("{a:#?}"), a.to_string()] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("ci"), "{text}");
        }
        assert_eq!(a.to_string(), "ci@reg.example.com:5000");
    }

    #[test]
    fn credentials_name_docker_hub_as_docker_login_does() {
        assert_eq!(auth("docker.io").credentials().serveraddress.as_deref(), Some(DOCKER_HUB_LOGIN));
        assert_eq!(auth("https://reg:5000/").credentials().serveraddress.as_deref(), Some("reg:5000"));
    }

    #[test]
    fn a_refusal_names_the_registry_and_the_user_but_not_the_password() {
        let image = "10.0.0.1:5443/team/app:v1";
        let none = DockerError {
            status: Some(500),
            ..DockerError::new("h1", "pull", "Head \"https://10.0.0.1:5443/v2/…\": no basic auth credentials")
        };
        let e = explain(none, image, None);
        assert!(e.message.starts_with("registry 10.0.0.1:5443 requires credentials (none given"), "{e}");
        assert_eq!(e.status, Some(401));
        let wrong = DockerError { status: Some(401), ..DockerError::new("h1", "pull", "unauthorized: hunter2?") };
        let e = explain(wrong, image, Some(&auth("10.0.0.1:5443")));
        assert!(e.message.starts_with("registry 10.0.0.1:5443 refused the credentials of ci"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let other = DockerError::new("h1", "pull", "manifest unknown");
        assert_eq!(explain(other, image, None).message, "manifest unknown");
    }
}
