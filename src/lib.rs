//! berth: a Kubernetes-style operator for plain Docker hosts.
//!
//! Functional core, imperative shell: `spec` and `plan` are pure; `store`, `docker`, `engine`
//! and `controller` do the I/O; `cli` is the thin front door.

pub mod cli;
pub mod controller;
pub mod docker;
pub mod engine;
pub mod import;
pub mod metrics;
pub mod plan;
pub mod sealing;
pub mod spec;
pub mod store;
