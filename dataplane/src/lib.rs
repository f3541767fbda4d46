//! Director dataplane: wire views, connection and persistence tables, timers, schedulers,
//! DR forwarding, ARP/neighbours, per-core workers and the control backend.
//!
//! `dpdk` is the only module that touches `ffi` (and the only one with `unsafe`); everything
//! else is safe Rust and, except `worker` and `director`, testable without EAL.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod backend;
pub mod conn;
pub mod counters;
pub mod defense;
pub mod director;
pub mod dpdk;
pub mod engine;
pub mod linkwatch;
pub mod exporter;
pub mod kernel;
pub mod logging;
pub mod metrics;
pub mod neigh;
pub mod ratelimit;
pub mod sample;
pub mod sched;
pub mod snapshot;
pub mod telemetry;
pub mod steer;
pub mod sync;
pub mod timer;
pub mod wire;
pub mod worker;
