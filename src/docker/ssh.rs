//! `ssh://` hosts: the host's Docker socket forwarded to a local socket by the system's `ssh`.
//!
//! One `ssh -N -L` process per connected host carries every API call and the event stream over a
//! single SSH session, so a converge pays the SSH handshake once per connection, not once per call
//! (as `docker -H ssh://`, which runs `docker system dial-stdio` per connection, does). `ssh` runs
//! with the operator's own ssh configuration (keys, known hosts, jump hosts); `BERTH_SSH_CONFIG`
//! names another file (`ssh -F`). It runs in batch mode: a host key or a key it cannot use is an
//! error naming the host, never a prompt.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::error::DockerError;

/// How long the SSH session may take to come up (handshake, authentication, forward).
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Docker's socket on a host when the endpoint names none.
pub const DEFAULT_REMOTE_SOCKET: &str = "/var/run/docker.sock";

/// A running forward; dropping it ends the `ssh` process and removes the local socket.
pub struct SshTunnel {
    child: Child,
    local: PathBuf,
}

impl SshTunnel {
    /// The local end to hand to the Docker client.
    pub fn local_socket(&self) -> &Path {
        &self.local
    }

    /// Starts `ssh` and waits until the local socket accepts connections; ssh's own message (bad
    /// key, unknown host key, refused forward) becomes the error.
    pub async fn open(
        host: &str,
        user: &str,
        addr: &str,
        port: Option<u16>,
        remote_socket: &str,
    ) -> Result<SshTunnel, DockerError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let local =
            dir.join(format!("berth-ssh-{}-{}-{host}.sock", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_file(&local);
        let target = format!("{user}@{}", addr.trim_start_matches('[').trim_end_matches(']'));
        let mut cmd = Command::new("ssh");
        if let Some(config) = std::env::var_os("BERTH_SSH_CONFIG") {
            cmd.arg("-F").arg(config);
        }
        if let Some(p) = port {
            cmd.arg("-p").arg(p.to_string());
        }
        cmd.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "StreamLocalBindUnlink=yes",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ConnectTimeout=10",
            "-N",
            "-T",
            "-L",
        ])
        .arg(format!("{}:{remote_socket}", local.display()))
        .arg(&target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            DockerError::new(host, "ssh", format!("cannot run ssh ({e}); install openssh-client to reach ssh:// hosts"))
        })?;
        let mut tunnel = SshTunnel { child, local };
        let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
        loop {
            if let Some(status) = tunnel.child.try_wait().map_err(|e| DockerError::new(host, "ssh", e.to_string()))? {
                let mut stderr = String::new();
                if let Some(mut err) = tunnel.child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr).await;
                }
                let why = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
                let why = if why.is_empty() { format!("ssh exited with {status}") } else { why };
                return Err(DockerError::new(host, format!("ssh {target}"), why));
            }
            if tokio::net::UnixStream::connect(&tunnel.local).await.is_ok() {
                return Ok(tunnel);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DockerError::new(
                    host,
                    format!("ssh {target}"),
                    format!("no forward of {remote_socket} within {}s", OPEN_TIMEOUT.as_secs()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for SshTunnel {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.local);
    }
}
