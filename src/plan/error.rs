//! Why no plan could be made.

use crate::spec::SecretKeyRef;

/// Why no plan could be made. Each names the offending part of the spec so `berth plan` can say
/// exactly what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The engine did not resolve an image the spec uses; planning with a tag would make the hash
    /// (and thus replacements) depend on whatever the tag points to today.
    #[error("image {image:?} was not resolved to a pinned reference")]
    UnresolvedImage {
        /// The reference as written in the spec.
        image: String,
    },
    /// A role or accessory lists a host that is not a Host resource.
    #[error("{component} lists unknown host {host:?}")]
    UnknownHost {
        /// `role/web` or `accessory/db`.
        component: String,
        /// The host name as written in the spec.
        host: String,
    },
    /// `dependsOn` names an accessory the app does not have.
    #[error("role/{role} depends on unknown accessory {accessory:?}")]
    UnknownAccessory {
        /// The role whose `dependsOn` is wrong.
        role: String,
        /// The missing accessory.
        accessory: String,
    },
    /// A field that validation should have caught does not parse.
    #[error("{component}: invalid {field}: {message}")]
    InvalidSpec {
        /// `role/web` or `accessory/db`.
        component: String,
        /// Field path within it, such as `healthcheck.interval`.
        field: String,
        /// The parser's user-facing message.
        message: String,
    },
    /// A Secret (or one of its keys) the component uses could not be read or opened.
    #[error("{component} uses {secret}, which is unavailable")]
    SecretUnavailable {
        /// `role/web` or `accessory/db`.
        component: String,
        /// The Secret and key.
        secret: SecretKeyRef,
    },
    /// `rollout` holds a value that validation should have caught.
    #[error("invalid {field}: {message}")]
    InvalidRollout {
        /// `rollout.maxUnavailable` or `rollout.healthTimeout`.
        field: String,
        /// The parser's user-facing message.
        message: String,
    },
}
