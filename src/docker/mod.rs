//! Host connections and the Docker calls berth makes; the label contract lives in [`crate::plan::labels`]
//! because the pure planner decides ownership from labels alone.

pub mod cache;
pub mod connect;
pub mod error;
pub mod events;
pub mod exec;
pub mod files;
pub mod images;
pub mod liveness;
pub mod logs;
pub mod ops;
pub mod proxy;
pub mod registry;
pub mod ssh;
pub mod tls_probe;

pub use cache::{HostCache, HostPool, Observation};
pub use connect::{connect, DockerError, HostClient};
pub use files::ContainerFile;
pub use registry::{auth_for, RegistryAuth};
