//! Where etcd is and how berth proves who it is there: endpoints, key prefix, TLS files and user.
//!
//! Built once at the edge (the CLI's global flags, already checked there); [`Store::connect_with`]
//! turns it into a client.
//!
//! [`Store::connect_with`]: super::Store::connect_with

use std::path::{Path, PathBuf};

use etcd_client::{Certificate, Identity, TlsOptions};

/// Everything needed to open a [`Store`](super::Store).
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Root of berth's keys.
    pub prefix: String,
    /// PEM files for TLS; `https://` endpoints use TLS without them too (the system's CAs).
    pub tls: Option<TlsFiles>,
    /// The etcd user, for an etcd with auth enabled.
    pub credentials: Option<Credentials>,
}

/// PEM files for TLS to etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed etcd's certificate; the system's CAs when absent.
    pub ca: Option<PathBuf>,
    /// The client's certificate and key, for an etcd started with `--client-cert-auth`.
    pub client: Option<ClientCert>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An etcd user and its password. The password is private and `Debug` leaves it out, so no log or
/// error built from this value can carry it.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    password: String,
}

impl Credentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials { user: user.into(), password: password.into() }
    }

    pub(super) fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

impl EtcdConfig {
    /// Plain endpoints, no TLS files, no user.
    pub fn new(endpoints: &[String], prefix: &str) -> EtcdConfig {
        EtcdConfig { endpoints: endpoints.to_vec(), prefix: prefix.to_string(), tls: None, credentials: None }
    }

    /// Whether the connection uses TLS: files were given, or an endpoint says `https://`.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some() || self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// The TLS options for etcd-client, reading the PEM files; `None` without TLS. The error names
    /// the file and why it cannot be used.
    pub(super) fn tls_options(&self) -> Result<Option<TlsOptions>, String> {
        if !self.uses_tls() {
            return Ok(None);
        }
        let files = self.tls.clone().unwrap_or_default();
        let mut options = TlsOptions::new();
        options = match &files.ca {
            Some(ca) => options.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => options.with_native_roots(),
        };
        if let Some(client) = &files.client {
            options = options.identity(Identity::from_pem(read(&client.cert)?, read(&client.key)?));
        }
        Ok(Some(options))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let mut config = EtcdConfig::new(&["https://etcd:2379".into()], "/berth");
        config.credentials = Some(Credentials::new("root", "hunter2-secret"));
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("root") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn https_endpoints_use_tls_even_without_files() {
        let plain = EtcdConfig::new(&["http://a:2379".into()], "/berth");
        assert!(!plain.uses_tls());
        assert!(plain.tls_options().unwrap().is_none());
        let https = EtcdConfig::new(&["https://a:2379".into()], "/berth");
        assert!(https.uses_tls());
        assert!(https.tls_options().unwrap().is_some());
        let files = EtcdConfig { tls: Some(TlsFiles::default()), ..plain };
        assert!(files.uses_tls());
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let mut config = EtcdConfig::new(&["https://a:2379".into()], "/berth");
        config.tls = Some(TlsFiles { ca: Some("/nonexistent/ca.pem".into()), client: None });
        let e = config.tls_options().unwrap_err();
        assert_eq!(e, "cannot read /nonexistent/ca.pem: entity not found");
    }
}
