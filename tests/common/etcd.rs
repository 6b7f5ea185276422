//! etcd servers of a test's own: the bed's binary (`/usr/bin/etcd`) on free loopback ports with a
//! temp data dir, plain, serving TLS with client certificates required, or with auth enabled. For
//! tests that stop etcd, or need one set up unlike the bed's, without touching the bed's etcd that
//! other test processes use.
//!
//! ```ignore
//! let (etcd, pki) = PrivateEtcd::start_tls("tls");
//! berth_cmd().args(["--etcd", &etcd.endpoint, "--etcd-ca", pki.ca.to_str().unwrap(), …]);
//! ```
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use super::ports::free_port;
use super::testbed::{secs, wait_until};
use super::world::block_on;

/// The test's PEM files: one CA signs etcd's certificate and the client's; a second CA, which etcd
/// does not trust, signs the rogue client's.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: PathBuf,
    pub server: CertPair,
    pub client: CertPair,
    pub rogue: CertPair,
}

#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert: PathBuf,
    /// PKCS#8.
    pub key: PathBuf,
}

impl Pki {
    /// Makes the CAs and certificates in `dir` with openssl (EC P-256, X.509 v3 extensions, which
    /// rustls requires): etcd's for `127.0.0.1`, a client's, and a rogue client's.
    pub fn make(dir: &Path) -> Pki {
        let ca = make_ca(&dir.join("ca"), "berth-etcd-test-ca");
        let rogue_ca = make_ca(&dir.join("rogue-ca"), "berth-etcd-test-rogue-ca");
        let server_ext = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                          extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1";
        let client_ext = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                          extendedKeyUsage=clientAuth";
        Pki {
            server: make_leaf(&ca, &dir.join("server"), "127.0.0.1", server_ext),
            client: make_leaf(&ca, &dir.join("client"), "berth", client_ext),
            rogue: make_leaf(&rogue_ca, &dir.join("rogue"), "berth", client_ext),
            ca: ca.join("ca.pem"),
        }
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("/usr/bin/openssl").args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A CA in `dir` (ca.pem, ca-key.pem); returns `dir`.
fn make_ca(dir: &Path, cn: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("ca-key.pem");
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path(&key)]);
    let (cert, subject) = (dir.join("ca.pem"), format!("/CN={cn}"));
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path(&key),
        "-out",
        path(&cert),
        "-days",
        "30",
        "-subj",
        &subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
    ]);
    dir.to_path_buf()
}

/// A certificate signed by the CA in `ca`, with the extensions `ext` (openssl's config lines).
fn make_leaf(ca: &Path, dir: &Path, cn: &str, ext: &str) -> CertPair {
    std::fs::create_dir_all(dir).unwrap();
    let (ec, key, csr, cnf, cert) =
        (dir.join("key.ec.pem"), dir.join("key.pem"), dir.join("req.csr"), dir.join("ext.cnf"), dir.join("cert.pem"));
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path(&ec)]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", path(&ec), "-out", path(&key)]);
    openssl(&["req", "-new", "-key", path(&key), "-out", path(&csr), "-subj", &format!("/CN={cn}")]);
    std::fs::write(&cnf, ext).unwrap();
    let (ca_cert, ca_key) = (ca.join("ca.pem"), ca.join("ca-key.pem"));
    let serial =
        format!("0x{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    openssl(&[
        "x509",
        "-req",
        "-in",
        path(&csr),
        "-CA",
        path(&ca_cert),
        "-CAkey",
        path(&ca_key),
        "-set_serial",
        &serial,
        "-days",
        "30",
        "-out",
        path(&cert),
        "-extfile",
        path(&cnf),
    ]);
    CertPair { cert, key }
}

/// How the test's own client reaches the etcd (to see that it answers).
#[derive(Debug, Clone, Default)]
struct Access {
    tls: Option<Pki>,
    user: Option<(String, String)>,
}

/// An etcd of the test's own, stopped and started at will; killed when dropped.
pub struct PrivateEtcd {
    child: Option<Child>,
    args: Vec<String>,
    /// `http://127.0.0.1:PORT` or `https://…`.
    pub endpoint: String,
    pub dir: tempfile::TempDir,
    access: Access,
}

impl PrivateEtcd {
    /// A plain etcd (http, no auth) named `name`.
    pub fn start(name: &str) -> PrivateEtcd {
        let mut e = PrivateEtcd::configure(name, "http", &[]);
        e.run();
        e
    }

    /// An etcd serving https with a certificate of the returned [`Pki`], accepting only clients
    /// whose certificate its CA signed (`--client-cert-auth`).
    pub fn start_tls(name: &str) -> (PrivateEtcd, Pki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::make(dir.path());
        let (cert, key, ca) = (path(&pki.server.cert), path(&pki.server.key), path(&pki.ca));
        let tls = ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth"];
        let mut e = PrivateEtcd::configure_in(dir, name, "https", &tls);
        e.access.tls = Some(pki.clone());
        e.run();
        (e, pki)
    }

    /// A plain etcd with auth enabled (`etcdctl user add root`, `auth enable`): only `root` with
    /// `password` gets in. Auth tokens expire after `token_ttl_secs` idle seconds.
    pub fn start_auth(name: &str, password: &str, token_ttl_secs: u32) -> PrivateEtcd {
        let ttl = token_ttl_secs.to_string();
        let mut e = PrivateEtcd::configure(name, "http", &["--auth-token-ttl", &ttl]);
        e.run();
        let root = format!("--new-user-password={password}");
        e.etcdctl_ok(&["user", "add", "root", &root, "--interactive=false"]);
        e.etcdctl_ok(&["auth", "enable"]);
        e.access.user = Some(("root".into(), password.into()));
        assert!(e.answers(), "etcd does not let root in after `auth enable`\n{}", e.log());
        e
    }

    fn configure(name: &str, scheme: &str, extra: &[&str]) -> PrivateEtcd {
        PrivateEtcd::configure_in(tempfile::tempdir().unwrap(), name, scheme, extra)
    }

    fn configure_in(dir: tempfile::TempDir, name: &str, scheme: &str, extra: &[&str]) -> PrivateEtcd {
        let (client, peer) = (free_port(), free_port());
        let c = format!("{scheme}://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let data = dir.path().join("data");
        let mut args: Vec<String> = [
            "--name",
            name,
            "--data-dir",
            path(&data),
            "--listen-client-urls",
            &c,
            "--advertise-client-urls",
            &c,
            "--listen-peer-urls",
            &p,
            "--initial-advertise-peer-urls",
            &p,
            "--initial-cluster",
            &format!("{name}={p}"),
            "--initial-cluster-state",
            "new",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        PrivateEtcd { child: None, args, endpoint: c, dir, access: Access::default() }
    }

    /// Starts etcd (again, on the same data dir) and waits until it answers.
    pub fn run(&mut self) {
        let log = File::options().create(true).append(true).open(self.dir.path().join("etcd.log")).unwrap();
        let child = Command::new("/usr/bin/etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        assert!(wait_until(secs(30), || self.answers()), "private etcd never answered\n{}", self.log());
    }

    /// Whether a read succeeds, with the TLS files and user the etcd asks for.
    pub fn answers(&self) -> bool {
        let (endpoint, access) = (self.endpoint.clone(), self.access.clone());
        block_on(async move {
            let attempt = async {
                let mut c = Client::connect([endpoint], Some(connect_options(&access))).await.ok()?;
                c.get("/", None).await.ok()
            };
            tokio::time::timeout(secs(2), attempt).await.ok().flatten().is_some()
        })
    }

    /// `etcdctl --endpoints … ARGS` with the TLS files and user the etcd asks for.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("/usr/bin/etcdctl");
        cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={}", self.endpoint));
        if let Some(pki) = &self.access.tls {
            cmd.args(["--cacert", path(&pki.ca), "--cert", path(&pki.client.cert), "--key", path(&pki.client.key)]);
        }
        if let Some((user, password)) = &self.access.user {
            cmd.arg(format!("--user={user}:{password}"));
        }
        cmd.args(args).output().expect("run etcdctl")
    }

    /// [`PrivateEtcd::etcdctl`] that must succeed; its stdout.
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn pid(&self) -> String {
        self.child.as_ref().unwrap().id().to_string()
    }

    /// Sends a signal by name (`STOP`, `CONT`, …).
    pub fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args(["-s", sig, &self.pid()]).status().unwrap().success());
    }

    /// A hard kill; the data dir stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

fn connect_options(access: &Access) -> ConnectOptions {
    let mut options = ConnectOptions::new();
    if let Some(pki) = &access.tls {
        let read = |p: &Path| std::fs::read(p).unwrap();
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&pki.ca)))
            .identity(Identity::from_pem(read(&pki.client.cert), read(&pki.client.key)));
        options = options.with_tls(tls);
    }
    if let Some((user, password)) = &access.user {
        options = options.with_user(user, password);
    }
    options
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args(["-s", "CONT", &c.id().to_string()]).status();
        }
        self.kill();
    }
}
