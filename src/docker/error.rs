//! The one error of every Docker call: which host, which operation, what Docker said.

/// A Docker call failed on a named host; the message is what a user needs to act.
#[derive(Debug, Clone, thiserror::Error)]
#[error("host {host}: {op}: {message}")]
pub struct DockerError {
    pub host: String,
    pub op: String,
    pub message: String,
    /// Docker's HTTP status, when it answered (404 no such container, 409 conflict, ...).
    pub status: Option<u16>,
}

impl DockerError {
    pub fn new(host: &str, op: impl Into<String>, message: impl Into<String>) -> DockerError {
        DockerError { host: host.to_string(), op: op.into(), message: message.into(), status: None }
    }

    /// Maps bollard's error, keeping Docker's own message and status code.
    pub fn from_bollard(host: &str, op: impl Into<String>, e: bollard::errors::Error) -> DockerError {
        match e {
            bollard::errors::Error::DockerResponseServerError { status_code, message } => {
                DockerError { host: host.to_string(), op: op.into(), message, status: Some(status_code) }
            }
            other => DockerError::new(host, op, with_root_cause(&other)),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// The error and, when it differs, its innermost cause, on one line. bollard's transport errors say
/// only "client error (SendRequest)"; why (a refused client certificate, a refused connection) is
/// in the cause at the bottom of the chain.
fn with_root_cause(e: &dyn std::error::Error) -> String {
    let top = one_line(&e.to_string());
    let mut root = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let cause = one_line(&root.to_string());
    if cause.is_empty() || top.contains(&cause) {
        top
    } else {
        format!("{top}: {cause}")
    }
}
