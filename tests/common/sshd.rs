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

impl Sshd {
    /// Starts sshd in `host`'s namespace; it accepts `client_key` (see [`Sshd::client_config`]).
    pub fn start(tb: &Testbed, host: &str) -> Sshd {
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
        // Per process and per call, so two tests never race for one port in one namespace.
        static N: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let port = 2200 + (std::process::id() % 700) as u16 + 1000 * n;
        let config = format!(
            "Port {port}\nListenAddress {addr}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowStreamLocalForwarding yes\n\
             X11Forwarding no\n",
            addr = h.address,
            d = d.display()
        );
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
