//! Telling "etcd and berth turned each other down" (a certificate, a user: nothing a retry fixes)
//! from "etcd did not answer", and saying why in terms of the flag that fixes it.

use std::path::Path;

use tokio_rustls::rustls;

use super::config::EtcdConfig;
use super::error::one_line;

/// gRPC codes etcd answers a refused user, password or permission with (tonic's `Code` as numbers:
/// tonic is etcd-client's dependency, not berth's).
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
const FAILED_PRECONDITION: i32 = 9;
const UNAUTHENTICATED: i32 = 16;

/// Why connecting to `endpoint` failed, on one line, and whether it was a refusal rather than no
/// answer. Never quotes the password: etcd's answers do not, and neither does this.
pub(super) async fn describe(config: &EtcdConfig, endpoint: &str, e: &etcd_client::Error) -> (String, bool) {
    if let Some(reason) = auth_refusal(e) {
        return (reason, true);
    }
    let has_client_cert = config.tls.as_ref().is_some_and(|t| t.client.is_some());
    if let Some(tls) = rustls_error(e) {
        return (explain(TlsFailure::of(tls), has_client_cert), true);
    }
    // Under TLS 1.3 etcd checks the client certificate after berth thinks the handshake is done,
    // and its alert races the first request: often all berth sees is a closed connection.
    if config.uses_tls() {
        if let Some(why) = ask_why(config, endpoint).await {
            return (explain(TlsFailure::Refused(why), has_client_cert), true);
        }
    }
    let reason = one_line(e);
    (reason, false)
}

/// etcd's own words for a refused user, password or permission, without its `etcdserver: ` prefix.
fn auth_refusal(e: &etcd_client::Error) -> Option<String> {
    let etcd_client::Error::GRpcStatus(status) = e else { return None };
    let code = i32::from(status.code());
    if ![INVALID_ARGUMENT, PERMISSION_DENIED, FAILED_PRECONDITION, UNAUTHENTICATED].contains(&code) {
        return None;
    }
    let message = one_line(e);
    let message = message.trim_start_matches("etcdserver: ");
    Some(match message {
        "user name is empty" => {
            format!(
                "etcd refused the request: {message}; it has auth enabled: give --etcd-user and BERTH_ETCD_PASSWORD"
            )
        }
        "authentication is not enabled" => format!("etcd refused the user: {message}; drop --etcd-user"),
        _ => format!("etcd refused the user: {message}"),
    })
}

/// The TLS error somewhere under `e`, if the failure was one.
fn rustls_error(e: &etcd_client::Error) -> Option<&rustls::Error> {
    // etcd-client's error does not report its source; start at the error it wraps.
    let mut next: Option<&(dyn std::error::Error + 'static)> = match e {
        etcd_client::Error::GRpcStatus(s) => Some(s),
        etcd_client::Error::TransportError(t) => Some(t),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    };
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // io::Error's `source` skips the error it wraps, so look inside it first.
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                return Some(tls);
            }
        }
        next = err.source();
    }
    None
}

/// Which side of a TLS session said no, and its words.
enum TlsFailure {
    /// berth does not trust etcd's certificate.
    Untrusted(String),
    /// etcd sent an alert: it refused berth's certificate, or the lack of one.
    Refused(String),
    Other(String),
}

impl TlsFailure {
    fn of(e: &rustls::Error) -> TlsFailure {
        match e {
            rustls::Error::InvalidCertificate(_) => TlsFailure::Untrusted(e.to_string()),
            rustls::Error::AlertReceived(_) => TlsFailure::Refused(e.to_string()),
            _ => TlsFailure::Other(e.to_string()),
        }
    }
}

/// A TLS failure in terms of the flag that fixes it.
fn explain(failure: TlsFailure, has_client_cert: bool) -> String {
    match failure {
        TlsFailure::Untrusted(e) => {
            format!("berth does not trust etcd's certificate ({e}); --etcd-ca names the CA that signed it")
        }
        TlsFailure::Refused(e) if !has_client_cert => {
            format!("etcd asks for a client certificate ({e}); give --etcd-cert and --etcd-key")
        }
        TlsFailure::Refused(e) => {
            format!("etcd refused berth's client certificate ({e}); use one signed by a CA etcd trusts")
        }
        TlsFailure::Other(e) => format!("TLS: {e}"),
    }
}

/// etcd's reason for refusing the session, read by a handshake of its own that then only listens
/// ([`crate::docker::tls_probe`]); needs the CA file (the probe does not read the system's CAs).
async fn ask_why(config: &EtcdConfig, endpoint: &str) -> Option<String> {
    let tls = config.tls.as_ref()?;
    let client = tls.client.as_ref().map(|c| (Path::new(&c.cert), Path::new(&c.key)));
    let first = endpoint.split(',').next()?;
    let addr = first.split_once("://").map_or(first, |(_, rest)| rest);
    let addr = addr.split('/').next()?;
    crate::docker::tls_probe::refusal_of(addr, tls.ca.as_deref()?, client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tls_failure_names_the_flag_that_fixes_it() {
        let untrusted = explain(TlsFailure::Untrusted("invalid peer certificate: UnknownIssuer".into()), false);
        assert!(
            untrusted.starts_with("berth does not trust etcd's certificate (invalid peer")
                && untrusted.contains("--etcd-ca")
        );
        let alert = || TlsFailure::Refused("received fatal alert: BadCertificate".into());
        let missing = explain(alert(), false);
        assert!(
            missing.starts_with("etcd asks for a client certificate (received fatal alert")
                && missing.contains("--etcd-cert")
        );
        let rogue = explain(alert(), true);
        assert!(rogue.starts_with("etcd refused berth's client certificate (received fatal alert"), "{rogue}");
    }
}
