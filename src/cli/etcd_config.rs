//! The global etcd flags, checked once into an [`EtcdConfig`]: a missing file, a certificate
//! without its key or a user without a password is an input error (exit 1) naming the flag, found
//! before anything is sent.

use std::path::Path;

use super::GlobalArgs;
use crate::store::{ClientCert, Credentials, EtcdConfig, TlsFiles};

/// Where the password of `--etcd-user` comes from; never a flag, so it cannot show in `ps`.
pub const PASSWORD_ENV: &str = "BERTH_ETCD_PASSWORD";

impl GlobalArgs {
    /// The etcd connection these flags describe, the password read from [`PASSWORD_ENV`].
    pub fn etcd_config(&self) -> Result<EtcdConfig, String> {
        self.etcd_config_with_password(std::env::var(PASSWORD_ENV).ok())
    }

    /// [`GlobalArgs::etcd_config`] with the password given (tests, which must not set process env).
    pub fn etcd_config_with_password(&self, password: Option<String>) -> Result<EtcdConfig, String> {
        let files = [("--etcd-ca", &self.etcd_ca), ("--etcd-cert", &self.etcd_cert), ("--etcd-key", &self.etcd_key)];
        for (flag, file) in files {
            if let Some(path) = file {
                readable(path).map_err(|why| format!("{flag}: cannot read {}: {why}", path.display()))?;
            }
        }
        let client = match (&self.etcd_cert, &self.etcd_key) {
            (Some(cert), Some(key)) => Some(ClientCert { cert: cert.clone(), key: key.clone() }),
            (None, None) => None,
            (Some(_), None) => return Err("--etcd-cert needs --etcd-key (the certificate's private key)".into()),
            (None, Some(_)) => return Err("--etcd-key needs --etcd-cert (the certificate it belongs to)".into()),
        };
        let tls = (self.etcd_ca.is_some() || client.is_some()).then(|| TlsFiles { ca: self.etcd_ca.clone(), client });
        let mut config = EtcdConfig::new(&self.etcd, &self.prefix);
        config.tls = tls;
        if config.uses_tls() {
            if let Some(plain) = self.etcd.iter().find(|e| e.starts_with("http://")) {
                return Err(format!("--etcd: {plain} is plain http, but TLS is in use (https:// or --etcd-ca/--etcd-cert); use https:// for every endpoint"));
            }
        }
        config.credentials = match (&self.etcd_user, password) {
            (Some(user), Some(password)) => Some(Credentials::new(user, password)),
            (Some(_), None) => {
                return Err(format!("--etcd-user needs its password in the environment variable {PASSWORD_ENV}"))
            }
            (None, Some(_)) => return Err(format!("{PASSWORD_ENV} is set but --etcd-user (BERTH_ETCD_USER) is not")),
            (None, None) => None,
        };
        Ok(config)
    }
}

/// Ok when `path` is a file this process can open.
fn readable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.kind().to_string())?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    std::fs::File::open(path).map(drop).map_err(|e| e.kind().to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use std::path::PathBuf;

    use super::*;
    use crate::cli::Cli;

    /// The files a config names.
    fn tls_paths(config: &EtcdConfig) -> Vec<PathBuf> {
        let tls = config.tls.clone().unwrap_or_default();
        tls.ca.into_iter().chain(tls.client.into_iter().flat_map(|c| [c.cert, c.key])).collect()
    }

    fn global(args: &[&str]) -> GlobalArgs {
        let argv = ["berth"].iter().chain(args).chain(&["get", "apps"]).copied();
        Cli::try_parse_from(argv).expect("flags parse").global
    }

    #[test]
    fn no_flags_is_the_plain_connection_of_before() {
        let config = global(&["--etcd", "http://a:2379"]).etcd_config_with_password(None).unwrap();
        assert_eq!(config.endpoints, ["http://a:2379"]);
        assert!(config.tls.is_none() && config.credentials.is_none());
    }

    #[test]
    fn files_and_user_make_a_tls_config_with_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, "pem").unwrap();
            p.to_str().unwrap().to_string()
        };
        let (ca, cert, key) = (file("ca.pem"), file("c.pem"), file("c.key"));
        let args = ["--etcd", "https://a:2379", "--etcd-ca", &ca, "--etcd-cert", &cert, "--etcd-key", &key];
        let config = global(&[&args[..], &["--etcd-user", "root"]].concat())
            .etcd_config_with_password(Some("pw".into()))
            .unwrap();
        assert_eq!(tls_paths(&config), [PathBuf::from(&ca), PathBuf::from(&cert), PathBuf::from(&key)]);
        assert_eq!(config.credentials.unwrap().user, "root");
    }

    #[test]
    fn a_missing_file_names_the_flag_and_the_file() {
        let e = global(&["--etcd-ca", "/nonexistent/ca.pem"]).etcd_config_with_password(None).unwrap_err();
        assert_eq!(e, "--etcd-ca: cannot read /nonexistent/ca.pem: entity not found");
        let e = global(&["--etcd-cert", "/tmp"]).etcd_config_with_password(None).unwrap_err();
        assert_eq!(e, "--etcd-cert: cannot read /tmp: not a file");
    }

    #[test]
    fn half_a_client_pair_and_plain_endpoints_with_tls_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("x.pem");
        std::fs::write(&pem, "pem").unwrap();
        let pem = pem.to_str().unwrap();
        let e = global(&["--etcd", "https://a:1", "--etcd-cert", pem]).etcd_config_with_password(None).unwrap_err();
        assert!(e.starts_with("--etcd-cert needs --etcd-key"), "{e}");
        let e = global(&["--etcd", "https://a:1", "--etcd-key", pem]).etcd_config_with_password(None).unwrap_err();
        assert!(e.starts_with("--etcd-key needs --etcd-cert"), "{e}");
        let e = global(&["--etcd", "http://a:1", "--etcd-ca", pem]).etcd_config_with_password(None).unwrap_err();
        assert!(e.starts_with("--etcd: http://a:1 is plain http"), "{e}");
        let e = global(&["--etcd", "https://a:1,http://b:1"]).etcd_config_with_password(None).unwrap_err();
        assert!(e.starts_with("--etcd: http://b:1 is plain http"), "{e}");
    }

    #[test]
    fn a_user_needs_the_password_from_the_environment_and_it_is_never_shown() {
        let e = global(&["--etcd-user", "root"]).etcd_config_with_password(None).unwrap_err();
        assert_eq!(e, "--etcd-user needs its password in the environment variable BERTH_ETCD_PASSWORD");
        let e = global(&[]).etcd_config_with_password(Some("pw".into())).unwrap_err();
        assert!(e.starts_with("BERTH_ETCD_PASSWORD is set but --etcd-user"), "{e}");
        let config = global(&["--etcd-user", "root"]).etcd_config_with_password(Some("s3cret-pw".into())).unwrap();
        assert!(!format!("{config:?}").contains("s3cret-pw"));
    }

    #[test]
    fn the_password_is_not_a_flag() {
        let argv = ["berth", "--etcd-password", "pw", "get", "apps"];
        assert!(Cli::try_parse_from(argv).is_err());
    }
}
