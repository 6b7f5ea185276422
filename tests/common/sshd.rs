//! A real sshd for `ssh://` Hosts, started inside a test-bed host's network namespace.

use std::path::PathBuf;

use super::testbed::{secs, wait_until, Testbed};

/// A real sshd in a test-bed host's network namespace, on a port of its own, with keys made for the
/// test; killed when dropped. berth reaches the host's Docker socket through it, as it reaches a Kamal
/// host.
pub struct Sshd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    /// The port sshd listens on, at the host's address.
    pub port: u16,
    /// The Host endpoint that reaches the host's Docker socket through this sshd, as root.
    pub endpoint: String,
}

/// What [`Sshd::start_with`] changes from [`Sshd::start`]'s sshd.
#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// A port chosen by the caller (Kamal reaches every host on one port: [`Sshd::next_port`] once for
    /// all of them); by default the next port of this process.
    pub port: Option<u16>,
    /// `SetEnv` for every session: `DOCKER_HOST=unix://…` for a docker CLI run over ssh, as Kamal runs it.
    pub env: Vec<(String, String)>,
    /// Every command runs in this directory instead of root's home (`ForceCommand cd DIR && …`): the
    /// bed's hosts share one filesystem, and what Kamal keeps in `~/.kamal` is per host. Forwards
    /// (berth's `ssh -N -L`) are not commands and pass as before.
    pub workdir: Option<PathBuf>,
}

impl Sshd {
    /// Starts sshd in `host`'s namespace; it accepts `client_key` (see [`Sshd::client_config`]).
    pub fn start(tb: &Testbed, host: &str) -> Sshd {
        Sshd::start_with(tb, host, &SshdOptions::default())
    }

    /// The next sshd port of this process: per process and per call, so two tests never race for one
    /// port in one namespace.
    pub fn next_port() -> u16 {
        static N: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        2200 + (std::process::id() % 700) as u16 + 1000 * n
    }

    /// [`Sshd::start`] with `options`.
    pub fn start_with(tb: &Testbed, host: &str, options: &SshdOptions) -> Sshd {
        let h = tb.host(host);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        for key in ["host_key", "client_key", "stranger_key"] {
            let out = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"])
                .arg(d.join(key))
                .output()
                .expect("ssh-keygen (openssh-client)");
            assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        // sshd's privilege-separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = options.port.unwrap_or_else(Sshd::next_port);
        let mut config = format!(
            "Port {port}\nListenAddress {addr}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowStreamLocalForwarding yes\n\
             X11Forwarding no\n",
            addr = h.address,
            d = d.display()
        );
        if !options.env.is_empty() {
            let vars: Vec<String> = options.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            config.push_str(&format!("SetEnv {}\n", vars.join(" ")));
        }
        if let Some(dir) = &options.workdir {
            std::fs::create_dir_all(dir).unwrap();
            config
                .push_str(&format!("ForceCommand cd {} && exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n", dir.display()));
        }
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", h.netns))
            .args(["--", "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .expect("start sshd (openssh-server)");
        let up = wait_until(secs(10), || std::net::TcpStream::connect((h.address.as_str(), port)).is_ok());
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(d.join("known_hosts"), format!("[{}]:{port} {host_pub}", h.address)).unwrap();
        let endpoint = format!("ssh://root@{}:{port}{}", h.address, h.socket_path().display());
        let sshd = Sshd { child, dir, port, endpoint };
        assert!(up, "sshd never listened on {}:{port}: {}", h.address, sshd.log());
        sshd
    }

    /// An ssh_config for `BERTH_SSH_CONFIG` that logs in with `key`, trusting only this sshd.
    pub fn client_config(&self, key: &str) -> PathBuf {
        let d = self.dir.path();
        let path = d.join(format!("ssh_config-{key}"));
        std::fs::write(
            &path,
            format!(
                "Host *\n  IdentityFile {d}/{key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n",
                d = d.display()
            ),
        )
        .unwrap();
        path
    }

    /// Lets the holder of the private key of `public_key` (an `ssh-keygen` `.pub` file) log in too: one
    /// key for several sshds, as a Kamal project has.
    pub fn authorize(&self, public_key: &std::path::Path) {
        use std::io::Write;
        let key = std::fs::read_to_string(public_key).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(self.dir.path().join("authorized_keys")).unwrap();
        f.write_all(key.as_bytes()).unwrap();
    }

    /// This sshd's `known_hosts` line (`[ADDR]:PORT KEY`).
    pub fn known_hosts_line(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("known_hosts")).unwrap().trim().to_string()
    }

    /// A file of this sshd's key set (`client_key`, `known_hosts`, ...).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// What sshd logged (accepted and refused logins, denied forwards).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
