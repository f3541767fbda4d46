//! Director control plane: the service/server configuration model and its engine, the
//! control-socket protocol, ipvsadm-compatible parsing and formatting, the control server
//! (DPDK-free, driven through the [`server::Backend`] trait the dataplane implements) and the
//! `lbadm` CLI.
//!
//! This crate has no DPDK dependency and no `unsafe` code; the dataplane depends on it, never
//! the reverse.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod error;
pub mod format;
pub mod ipvsadm;
pub mod model;
pub mod names;
pub mod proto;
pub mod server;
pub mod stats;

pub use error::CtlError;
pub use model::{
    AddrConfig, Config, ConfigCommand, FwdMethod, Protocol, SchedFlags, Scheduler, ServerConfig,
    ServerId, ServerSpec, Service, ServiceConfig, ServiceKey, ServiceSpec, Slot, Timeouts,
};
pub use server::{serve, Backend, Controller};
