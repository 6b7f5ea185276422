//! What can end an action short, as values: a health wait that gave up or was cut short, an
//! action that failed or was interrupted, and the record of a replace that was rolled back.

use crate::plan::DesiredContainer;

/// One replace that was rolled back: the new container never turned healthy.
#[derive(Debug, Clone)]
pub(super) struct Rollback {
    pub(super) host: String,
    pub(super) container: String,
    pub(super) component: String,
    /// The last health output, or the Docker error.
    pub(super) why: String,
}

impl Rollback {
    /// The record of `new`'s rollout on `host` rolled back for `why`.
    pub(super) fn of(host: &str, new: &DesiredContainer, why: String) -> Rollback {
        let component = format!("{}/{}", new.component.kind(), new.component.name());
        Rollback { host: host.to_string(), container: new.name.clone(), component, why }
    }
}

/// Why a health wait ended without a healthy container.
pub(super) enum WaitFailure {
    Failed(String),
    Interrupted(String),
}

impl std::fmt::Display for WaitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitFailure::Failed(e) | WaitFailure::Interrupted(e) => f.write_str(e),
        }
    }
}

pub(super) enum ActionFailure {
    Error(String),
    /// A replace whose new container never turned healthy, undone; the message says it all.
    RolledBack(Rollback, String),
    /// The gate closed (shutdown, lost lease): stopped short by design, not a failure of the app.
    Interrupted(String),
}

impl From<WaitFailure> for ActionFailure {
    fn from(w: WaitFailure) -> ActionFailure {
        match w {
            WaitFailure::Failed(e) => ActionFailure::Error(e),
            WaitFailure::Interrupted(e) => ActionFailure::Interrupted(e),
        }
    }
}
