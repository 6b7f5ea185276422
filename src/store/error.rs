//! What can go wrong talking to the store, split by what the user (or the operator) can do about it.

use std::time::Duration;

/// Store failures. The CLI maps each to an exit code (`cli::Failure`), so a new variant is a decision there.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd unreachable at {endpoints}: {reason}")]
    Unreachable { endpoints: String, reason: String },
    /// etcd answered but turned down berth's certificate, user or password: a retry will not help.
    #[error("etcd at {endpoint}: {reason}")]
    Refused { endpoint: String, reason: String },
    #[error("etcd request failed: {}", one_line(.0))]
    Etcd(#[from] etcd_client::Error),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored value at {key} is not valid: {reason}")]
    Corrupt { key: String, reason: String },
    /// A fenced write (status, key removal) from an operator whose lease no longer owns the leader key.
    #[error("this operator no longer holds the leader lease")]
    NotLeader,
    /// `resource` (`app/web -n prod`) carries a deletionTimestamp: nothing but the operator may touch it.
    #[error("{resource}: it is being deleted; apply it again once the operator has removed it")]
    BeingDeleted { resource: String },
    /// Another writer changed `what` between every read and write of `attempts` tries.
    #[error("{what} kept changing ({attempts} attempts); try again")]
    Contended { what: String, attempts: usize },
    /// The store-wide apply lock stayed taken by another apply for the whole wait.
    #[error("another apply held the store lock for over {}s; try again", .waited.as_secs())]
    LockBusy { waited: Duration },
    /// A Host an App still places containers on; `apps` names each (`app/shop -n staging`).
    #[error("host/{host} is still used by {}", .apps.join(", "))]
    HostInUse { host: String, apps: Vec<String> },
    /// A Secret an App still uses (env, files or imagePullSecrets).
    #[error("{secret} is still used by {}", .apps.join(", "))]
    SecretInUse { secret: String, apps: Vec<String> },
    /// A Secret with plain `stringData` reached the store: it must be sealed first.
    #[error("{resource}: stringData must be sealed before it is stored (berth apply seals it)")]
    Plaintext { resource: String },
}

/// tonic errors nest a transport error inside a gRPC status inside etcd's error, each repeating
/// the next; users get the root cause on one line, e.g. `connection refused`.
pub(super) fn one_line(e: &etcd_client::Error) -> String {
    let inner: &(dyn std::error::Error + 'static) = match e {
        etcd_client::Error::GRpcStatus(s) if std::error::Error::source(s).is_none() && !s.message().is_empty() => {
            return first_line(s.message());
        }
        etcd_client::Error::GRpcStatus(s) => s,
        etcd_client::Error::TransportError(t) => t,
        etcd_client::Error::IoError(io) => io,
        other => return first_line(&other.to_string()),
    };
    let mut root = inner;
    while let Some(next) = root.source() {
        root = next;
    }
    if let Some(io) = root.downcast_ref::<std::io::Error>() {
        if io.raw_os_error().is_some() {
            // "Connection refused (os error 111)" → "connection refused"
            return io.kind().to_string();
        }
    }
    first_line(&root.to_string())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_what_they_are_about() {
        let deleting = StoreError::BeingDeleted { resource: "app/jobs -n default".into() };
        assert!(deleting.to_string().starts_with("app/jobs -n default: it is being deleted"));
        let used = StoreError::HostInUse { host: "h1".into(), apps: vec!["app/a -n x".into(), "app/b -n y".into()] };
        assert_eq!(used.to_string(), "host/h1 is still used by app/a -n x, app/b -n y");
        let hot = StoreError::Contended { what: "app/a -n x".into(), attempts: 20 };
        assert_eq!(hot.to_string(), "app/a -n x kept changing (20 attempts); try again");
        let busy = StoreError::LockBusy { waited: Duration::from_secs(60) };
        assert_eq!(busy.to_string(), "another apply held the store lock for over 60s; try again");
    }
}
