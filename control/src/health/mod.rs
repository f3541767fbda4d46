//! Health checking the way keepalived does it: TCP_CHECK, HTTP_GET, SSL_GET and MISC_CHECK
//! with keepalived's timing, retries, `inhibit_on_failure`, notify scripts, quorum,
//! hysteresis and sorry server.
//!
//! - [`spec`]: what a checker is (one definition for `lbadm check` and keepalived.conf).
//! - [`model`]: the health state inside [`crate::Config`] and keepalived's pool rules; a
//!   checker's verdict becomes a configuration change there.
//! - [`machine`]: keepalived's per-checker state machines (retry counting, URL iteration,
//!   misc_dynamic), pure and clock-free.
//! - [`probe`]: the probes themselves over ordinary host sockets and child processes.
//! - [`engine`]: the checker thread (tokio, one thread, non-blocking) that runs every
//!   checker, hands verdicts to the control thread and runs the scripts.
//! - [`board`]: what `lbadm check show` reports about each checker, and the counters.
//! - [`cli`]: `lbadm check add|del|show|service` parsing and the lines `lbadm save` writes.
//! - [`report`]: the `lbadm check show` listing.
//!
//! Concurrency: the definitions and the verdict-to-pool logic live in the configuration,
//! owned by the control thread under the controller's lock. The engine thread never touches
//! it directly: it receives [`model::ProbeDef`] snapshots through a watch channel and sends
//! batches of [`model::Verdict`]s that the controller applies and publishes like any other
//! change (short critical sections; workers are never involved beyond picking up the new
//! snapshot).

pub mod board;
pub mod cli;
pub mod engine;
pub mod machine;
pub mod model;
pub mod probe;
pub mod report;
pub mod spec;

pub use model::{AddCheck, DelCheck, HealthConfig, HealthEvent, ProbeDef, Verdict};
pub use spec::{CheckId, CheckKind, CheckSpec, ServerHealthOpts, ServiceHealth, SorryServer};
