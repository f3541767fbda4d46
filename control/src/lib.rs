//! Director control plane: the service/server configuration model and its engine, the
//! control-socket protocol, ipvsadm-compatible parsing and formatting, the control server
//! (DPDK-free, driven through the [`server::Backend`] trait the dataplane implements) and the
//! `lbadm` CLI.
//!
//! Besides ipvsadm's services, [`Config`] holds the director's mark rules ([`marks`]: the
//! `iptables -t mangle ... -j MARK` port groups that feed fwmark services, evaluated by the
//! director itself with [`evaluate_marks`] as the reference) and the DR-relevant IPVS sysctls
//! ([`sysctl`]), driven by `lbadm iptables` / `lbadm mark` ([`iptables`]) and `lbadm sysctl`.
//!
//! The whole configuration can be saved to and loaded from a file of lbadm lines
//! ([`config_file`]: `lbadm save`, `lbadm restore [--atomic]`, `director --config`); the
//! socket protocol and the `--json` schemas are documented in `docs/protocol.md`.
//!
//! This crate has no DPDK dependency and no `unsafe` code; the dataplane depends on it, never
//! the reverse.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod config_file;
pub mod error;
pub mod events;
pub mod format;
pub mod health;
pub mod iptables;
pub mod ipvsadm;
pub mod keepalived;
pub mod marks;
pub mod model;
pub mod names;
pub mod proto;
pub mod server;
pub mod stats;
pub mod sync_proto;
pub mod sysctl;

pub use error::CtlError;
pub use marks::{evaluate_marks, MarkRule, MAX_MARK_RULES};
pub use model::{
    AddrConfig, Config, ConfigCommand, FwdMethod, Protocol, SchedFlags, Scheduler, ServerConfig,
    ServerId, ServerSpec, Service, ServiceConfig, ServiceKey, ServiceSpec, Slot, Timeouts,
};
pub use server::{serve, Backend, Controller};
pub use sysctl::Sysctls;
