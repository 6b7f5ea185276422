//! Connections to hosts' Docker APIs: one bounded, timed client per Host resource.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use tokio::sync::Semaphore;

pub use super::error::DockerError;
use crate::spec::{parse_endpoint, AddressPool, Endpoint, Host};

/// Bound on every single Docker API call, so a hung daemon never hangs a converge.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls in flight per host: enough to overlap, few enough not to swamp a small host.
pub const MAX_IN_FLIGHT: usize = 8;
/// Bound on the API-version negotiation that opens a client: a host that does not answer it is
/// reported unreachable rather than holding the converge. (Debian's engine speaks 1.41; the client
/// starts at the newest version bollard knows and negotiates down.)
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected host: the client plus the per-host bound on calls in flight.
#[derive(Clone)]
pub struct HostClient {
    pub name: String,
    pub docker: Docker,
    permits: Arc<Semaphore>,
    /// Where this host's app networks take their subnets from (the Host's `spec.network`, parsed).
    pub pool: AddressPool,
    /// Held while a subnet is chosen and its network created, so two converges (two apps) on one
    /// host never pick the same free subnet; shared by every clone, like the client.
    pub(crate) network_lock: Arc<tokio::sync::Mutex<()>>,
    /// The SSH forward of an `ssh://` host, alive as long as any clone of this client.
    _tunnel: Option<Arc<super::ssh::SshTunnel>>,
}

impl HostClient {
    /// Runs one Docker call under the host's in-flight bound and the call timeout.
    pub async fn call<T, F>(&self, op: &str, fut: F) -> Result<T, DockerError>
    where
        F: std::future::Future<Output = Result<T, bollard::errors::Error>>,
    {
        self.call_within(op, CALL_TIMEOUT, fut).await
    }

    /// [`Self::call`] with a timeout of its own, for calls that legitimately take long (a stop
    /// that waits out the container's stop timeout); the future's client must allow as much.
    pub async fn call_within<T, F>(&self, op: &str, timeout: Duration, fut: F) -> Result<T, DockerError>
    where
        F: std::future::Future<Output = Result<T, bollard::errors::Error>>,
    {
        let _permit = self.permits.acquire().await.map_err(|_| DockerError::new(&self.name, op, "client closed"))?;
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(DockerError::from_bollard(&self.name, op, e)),
            Err(_) => Err(DockerError::new(&self.name, op, format!("no answer within {}s", timeout.as_secs()))),
        };
        let failed = matches!(&result, Err(e) if e.status.is_none_or(|s| s >= 500));
        let took = started.elapsed();
        tracing::trace!(host = %self.name, op, ms = took.as_secs_f64() * 1e3, "docker call");
        crate::metrics::global().docker_call(&self.name, crate::metrics::op_label(op), took, !failed);
        // Whether the host answered at all is liveness news (`berth_host_up`), whatever the call's result.
        super::liveness::record(&self.name, &result);
        result
    }
}

/// Opens a client for a Host and negotiates the API version; refuses plain tcp unless `insecure: true`.
pub async fn connect(host: &Host) -> Result<HostClient, DockerError> {
    let name = &host.metadata.name;
    let endpoint = host.spec.endpoint.as_str();
    let version = bollard::API_DEFAULT_VERSION;
    let secs = CALL_TIMEOUT.as_secs();
    let mut tunnel = None;
    let pool = AddressPool::of_host(&host.spec)
        .map_err(|(path, e)| DockerError::new(name, "connect", format!("{path}: {e}")))?;
    // The spec's own parser picks the transport, so connect and validation can never disagree.
    let parsed = parse_endpoint(endpoint).map_err(|e| DockerError::new(name, "connect", e))?;
    let is_tcp = matches!(parsed, Endpoint::Tcp { .. });
    let docker = match parsed {
        Endpoint::Unix { path } => {
            if !Path::new(&path).exists() {
                return Err(DockerError::new(name, "connect", format!("socket {path} does not exist")));
            }
            Docker::connect_with_unix(&path, secs, version)
        }
        Endpoint::Tcp { .. } => match (&host.spec.tls, host.spec.insecure) {
            (Some(tls), _) => {
                for (field, file) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
                    if !Path::new(file).is_file() {
                        return Err(DockerError::new(name, "connect", format!("spec.tls.{field}: cannot read {file}")));
                    }
                }
                Docker::connect_with_ssl(
                    endpoint,
                    Path::new(&tls.key),
                    Path::new(&tls.cert),
                    Path::new(&tls.ca),
                    secs,
                    version,
                )
            }
            (None, true) => Docker::connect_with_http(endpoint, secs, version),
            (None, false) => {
                return Err(DockerError::new(
                    name,
                    "connect",
                    format!("refusing plain tcp to {endpoint}: set spec.tls, or spec.insecure: true"),
                ))
            }
        },
        Endpoint::Ssh { user, addr, port, socket } => {
            let remote = socket.as_deref().unwrap_or(super::ssh::DEFAULT_REMOTE_SOCKET);
            let t = super::ssh::SshTunnel::open(name, &user, &addr, port, remote).await?;
            let local = t.local_socket().to_str().unwrap_or_default().to_string();
            tunnel = Some(Arc::new(t));
            Docker::connect_with_unix(&local, secs, version)
        }
    }
    .map_err(|e| DockerError::from_bollard(name, "connect", e))?;
    let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            let mut err = DockerError::from_bollard(name, "connect", e);
            // A refused client certificate often reads as a closed connection: ask the server why.
            let told = err.message.contains("alert") || err.message.contains("certificate");
            if let (true, false, Some(tls)) = (is_tcp, told, &host.spec.tls) {
                let addr = endpoint.trim_start_matches("tcp://").trim_start_matches("https://");
                let (ca, cert, key) = (Path::new(&tls.ca), Path::new(&tls.cert), Path::new(&tls.key));
                if let Some(why) = super::tls_probe::refusal(addr, ca, cert, key).await {
                    err = DockerError::new(name, "connect", format!("{}: TLS refused: {why}", err.message));
                }
            }
            return Err(err);
        }
        Err(_) => {
            return Err(DockerError::new(
                name,
                "connect",
                format!("{endpoint} did not answer within {}s", CONNECT_TIMEOUT.as_secs()),
            ))
        }
    };
    Ok(HostClient {
        name: name.clone(),
        docker,
        permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        pool,
        network_lock: Arc::new(tokio::sync::Mutex::new(())),
        _tunnel: tunnel,
    })
}
