//! Whether the engine may still start Docker actions. The engine asks; the controller answers
//! (`controller::leader::LeaseGate`: while this process holds the leader lease and is not shutting
//! down), so a deposed or stopping leader starts nothing new and gives up its health waits.

/// Asked before every Docker action and on every health poll.
pub trait Gate: Send + Sync {
    fn is_open(&self) -> bool;
}

/// Always open: the one-shot `berth converge`, which answers to nobody.
pub struct AlwaysOpen;

impl Gate for AlwaysOpen {
    fn is_open(&self) -> bool {
        true
    }
}
