//! Why a mutual-TLS host refused us, in its own words.
//!
//! Under TLS 1.3 a server checks the client certificate after the client already thinks the
//! handshake is done; its alert ("unknown ca", "bad certificate") races the client's first request,
//! and the HTTP client often reports only "connection closed" or "connection was not ready". This
//! probe completes a handshake with the Host's files and then only listens, so the alert, when there
//! is one, is what it reads.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// How long each step of the probe may take.
const STEP: Duration = Duration::from_secs(3);

/// The server's own reason for refusing a TLS session with these files at `addr` (`host:port`), or
/// `None` when the probe learns nothing (the session stays open, or the files do not load).
pub async fn refusal(addr: &str, ca: &Path, cert: &Path, key: &Path) -> Option<String> {
    refusal_of(addr, ca, Some((cert, key))).await
}

/// [`refusal`] with or without a client certificate (`(cert, key)`): a server that requires one
/// refuses a session without it just as late (etcd's `--client-cert-auth`, store/refusal.rs).
pub async fn refusal_of(addr: &str, ca: &Path, client: Option<(&Path, &Path)>) -> Option<String> {
    let config = client_config(ca, client).ok()?;
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    let server = ServerName::try_from(host.to_string()).ok()?;
    let tcp = tokio::time::timeout(STEP, TcpStream::connect(addr)).await.ok()?.ok()?;
    let mut tls = match tokio::time::timeout(STEP, TlsConnector::from(Arc::new(config)).connect(server, tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Some(e.to_string()),
        Err(_) => return None,
    };
    let mut byte = [0u8; 1];
    match tokio::time::timeout(STEP, tls.read(&mut byte)).await {
        Ok(Err(e)) => Some(e.to_string()),
        _ => None,
    }
}

fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Result<ClientConfig, Box<dyn std::error::Error>> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let Some((cert, key)) = client else { return Ok(builder.with_no_client_auth()) };
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    Ok(builder.with_client_auth_cert(chain, key)?)
}
