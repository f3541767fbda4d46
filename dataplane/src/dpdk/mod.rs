//! The only safe wrapper over the raw DPDK bindings (`ffi`). No other module touches `ffi`.
//!
//! Invariants:
//! - EAL is initialised at most once per process ([`Eal::init`]); every other type here can
//!   only be created after that, through values that prove it (`&Eal`).
//! - [`Mbuf`] owns exactly one packet buffer: it is not `Clone`, frees itself on drop and gives
//!   ownership away when transmitted or enqueued. It is `#[repr(transparent)]` over a non-null
//!   pointer so `[Option<Mbuf>; N]` has the layout of DPDK's `struct rte_mbuf *[N]` and bursts
//!   are received and sent in place without copying.
//! - Single-segment mbufs only: pools are created with a data room large enough for a full
//!   frame and ports are configured without scatter, so `data()` is the whole packet.
//! - Concurrency: a port queue is used by one thread at a time (the worker that owns it);
//!   mempools and rings are multi-thread safe as DPDK documents.

pub mod cpu;
mod eal;
mod mbuf;
pub mod pdump;
mod port;
pub mod prof;
mod ring;
pub mod telemetry;
pub mod vdev;

pub use eal::{lcore_id, set_usage_text, tsc, tsc_hz, version, Eal, EalError};
pub use mbuf::{Mbuf, MbufBatch, Mempool};
pub use port::{LinkStatus, Port, PortConfig, PortStats};
pub use ring::{port_from_rings, Ring};

/// An error from a DPDK call: what was attempted and DPDK's error text.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason} (errno {errno})")]
pub struct DpdkError {
    /// The operation that failed.
    pub what: String,
    /// `rte_strerror` of the error number.
    pub reason: String,
    /// The (positive) error number.
    pub errno: i32,
}

impl DpdkError {
    /// Builds an error from a negative return value or `rte_errno`.
    pub(crate) fn from_errno(what: impl Into<String>, errno: i32) -> Self {
        let errno = errno.abs();
        // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated
        // string for any error number.
        let reason = unsafe { std::ffi::CStr::from_ptr(ffi::rte_strerror(errno)) }
            .to_string_lossy()
            .into_owned();
        DpdkError { what: what.into(), reason, errno }
    }

    /// Builds an error from the current thread's `rte_errno`.
    pub(crate) fn last(what: impl Into<String>) -> Self {
        // SAFETY: reads the calling thread's rte_errno through the shim.
        let errno = unsafe { ffi::shim_rte_errno() };
        Self::from_errno(what, errno)
    }
}
