//! Helpers shared by the integration tests (`mod common;` in a test file).
//!
//! Every test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod containers;
pub mod etcd;
pub mod events;
pub mod kamal;
pub mod operator;
pub mod outage;
pub mod ports;
pub mod private_registry;
pub mod proxy;
pub mod run;
pub mod specs;
pub mod sshd;
pub mod tags;
pub mod testbed;
pub mod world;
