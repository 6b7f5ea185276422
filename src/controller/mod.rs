//! The operator runtime: watch the store, queue work, converge, repair drift, lead.
pub mod queue;
