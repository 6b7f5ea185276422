//! TCP ports for tests: host ports a test binary publishes on the bed's Docker hosts, and free
//! loopback ports for servers a test starts itself.
use std::sync::atomic::{AtomicU16, Ordering};

/// The next host port of this test process in its binary's own range:
/// `base + (pid % slots) * per + n`, where `n` counts up from 0 in `next` and must stay below
/// `per`. Every test binary shares the same Docker daemons, so each picks a `base`, `slots` and
/// `per` of its own (see its `port()`), and the pid keeps concurrent runs of one binary apart.
pub fn host_port(next: &AtomicU16, base: u16, slots: u32, per: u16, binary: &str) -> u16 {
    let n = next.fetch_add(1, Ordering::Relaxed);
    assert!(n < per, "{binary} hands out at most {per} host ports per process");
    base + (std::process::id() % slots) as u16 * per + n
}

/// A loopback port free right now (for `--metrics-addr`, a private etcd, ...).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
