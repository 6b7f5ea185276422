//! The operator runtime: watch the store, queue work, converge, repair drift, lead.
pub mod backoff;
pub mod finalizer;
pub mod image_choice;
pub mod image_gc;
pub mod leader;
pub mod operator;
pub mod queue;
pub mod reflector;
pub mod workers;
