//! Private registries and secret files on the real test bed, through berth's own Docker calls: a pull
//! or a digest look-up of an image in the bed's private registry (TLS, htpasswd) works only with
//! the credentials berth sends, and a refusal names the registry and the user but never the
//! password; files land in a created container with their mode before it ever starts.
mod common;

use berth::docker::{connect, ops, ContainerFile, DockerError, HostClient, RegistryAuth};
use common::specs::host_doc;
use common::testbed::{unique, Testbed};

async fn client(tb: &Testbed, host: &str) -> HostClient {
    let doc = host_doc(host, &tb.host(host).unix);
    let spec: berth::spec::Host = serde_yaml_ng::from_str(&doc).expect("a Host document");
    connect(&spec).await.unwrap_or_else(|e| panic!("connect to {host}: {e}"))
}

/// The bed's credentials, or the same user with `password`.
fn auth(tb: &Testbed, password: &str) -> RegistryAuth {
    let registry = &tb.private_registry;
    RegistryAuth {
        server: format!("https://{}/", registry.address),
        username: registry.user.clone(),
        password: password.into(),
    }
}

/// A password that is not the bed's and that no message would contain by chance.
const WRONG: &str = "not-the-password-3f9c1d";

/// The error of a refused call, checked to carry neither password.
fn refusal<T: std::fmt::Debug>(tb: &Testbed, what: &str, result: Result<T, DockerError>) -> String {
    let e = result.expect_err(&format!("{what} should be refused"));
    let text = format!("{e} {e:?}");
    for password in [tb.private_registry.password.as_str(), WRONG] {
        assert!(!text.contains(password), "{what}: the error shows a password: {text}");
    }
    assert_eq!(e.status, Some(401), "{what}: {text}");
    e.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_works_only_with_the_credentials_berth_sends() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let image = tb.private_image("auth-pull");
    let (host, registry) = ("host2", &tb.private_registry.address);
    let c = client(tb, host).await;
    let _rmi = RemoveImage { host, image: image.clone() };

    let none = refusal(tb, "a pull without credentials", ops::pull(&c, &image, None).await);
    let want = format!("registry {registry} requires credentials (none given; it answered 401 Unauthorized)");
    assert!(none.contains(&want) && none.contains("host host2"), "{none}");

    let wrong = refusal(tb, "a pull with a wrong password", ops::pull(&c, &image, Some(&auth(tb, WRONG))).await);
    let want = format!("registry {registry} refused the credentials of {}", tb.private_registry.user);
    assert!(wrong.contains(&want), "{wrong}");

    let right = auth(tb, &tb.private_registry.password);
    assert_eq!(ops::pull(&c, &image, Some(&right)).await.map_err(|e| e.to_string()), Ok(true));
    let digests = tb.docker_ok(host, &["image", "inspect", "-f", "{{json .RepoDigests}}", &image]);
    assert!(digests.contains(&tb.private_registry.digest), "{image} on {host}: {digests}");

    // The daemon keeps nothing: once the image is gone, its own CLI pull is refused again.
    tb.docker_ok(host, &["rmi", &image]);
    let cli = tb.docker(host, &["pull", &image]);
    let said = String::from_utf8_lossy(&cli.stderr);
    assert!(!cli.status.success() && said.contains("no basic auth credentials"), "docker pull {image}: {said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_look_up_sends_the_credentials_and_pins_the_image() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let image = tb.private_image("auth-resolve");
    let registry = &tb.private_registry.address;
    let c = client(tb, "host3").await;

    let none = refusal(tb, "a look-up without credentials", ops::resolve_image(&c, &image, None).await);
    assert!(none.contains(&format!("registry {registry} requires credentials (none given")), "{none}");
    let wrong =
        refusal(tb, "a look-up with a wrong password", ops::resolve_image(&c, &image, Some(&auth(tb, WRONG))).await);
    assert!(
        wrong.contains(&format!("registry {registry} refused the credentials of {}", tb.private_registry.user)),
        "{wrong}"
    );

    let right = auth(tb, &tb.private_registry.password);
    let pinned = ops::resolve_image(&c, &image, Some(&right)).await.map_err(|e| e.to_string());
    let repo = image.strip_suffix(":v1").expect("a :v1 reference");
    assert_eq!(pinned, Ok(format!("{repo}@{}", tb.private_registry.digest)));
}

#[tokio::test(flavor = "multi_thread")]
async fn files_land_in_a_created_container_with_their_mode_before_it_starts() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let host = "host1";
    let name = unique("files");
    let _rm = tb.container(host, &name);
    tb.docker_ok(host, &["pull", "-q", &tb.images.app_v1]);
    let script = "ls -ln /run/secrets/db; ls -ld /tmp; cat /run/secrets/db /etc/app/conf.d/app.conf /tmp/note";
    let id = tb.docker_ok(host, &["create", "--name", &name, &tb.images.app_v1, "sh", "-c", script]);
    let secret = "s3cr3t-value-7d41";
    let files = [
        ContainerFile { path: "/run/secrets/db".into(), contents: format!("{secret}\n").into_bytes(), mode: 0o400 },
        ContainerFile { path: "/etc/app/conf.d/app.conf".into(), contents: b"port=80\n".to_vec(), mode: 0o644 },
        ContainerFile { path: "/tmp/note".into(), contents: b"note\n".to_vec(), mode: 0o600 },
    ];
    assert!(!format!("{files:?}").contains(secret), "Debug shows the contents: {files:?}");

    let c = client(tb, host).await;
    ops::put_files(&c, &id, &files).await.unwrap_or_else(|e| panic!("put_files: {e}"));
    assert_eq!(tb.docker_ok(host, &["inspect", "-f", "{{.State.Status}}", &id]), "created");
    assert!(!tb.docker_ok(host, &["inspect", &id]).contains(secret), "docker inspect shows the secret");

    // `docker start -a` runs the script and prints what it saw.
    let out = tb.docker_ok(host, &["start", "-a", &id]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("-r-------- ") && lines[0].contains(" 0 ") && lines[0].ends_with("/run/secrets/db"),
        "{out}"
    );
    assert!(lines[1].starts_with("drwxrwxrwt "), "a file in /tmp changed the mode of /tmp: {out}");
    assert_eq!(lines[2..], [secret, "port=80", "note"], "{out}");

    // A path that could land anywhere else is refused before anything is sent.
    let escape = [ContainerFile { path: "/run/../etc/passwd".into(), contents: b"x".to_vec(), mode: 0o644 }];
    let e = ops::put_files(&c, &id, &escape).await.expect_err("a path with .. is refused");
    assert!(e.to_string().contains("must name a file"), "{e}");
}

/// `docker rmi -f IMAGE` on `host` when the test ends.
struct RemoveImage {
    host: &'static str,
    image: String,
}

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Testbed::get().docker(self.host, &["rmi", "-f", &self.image]);
    }
}
