//! Packet capture server for `dpdk-dumpcap` and `dpdk-pdump`.
//!
//! [`Pdump::init`] registers DPDK's `mp_pdump` action on the multi-process channel
//! (`rte_pdump_init`); a capture tool then attaches as a secondary process and asks the
//! primary to install RX/TX callbacks that copy each packet of the chosen port/queues into a
//! ring the tool drains. Nothing is installed until a capture starts, so with no capture the
//! packet path runs exactly the same instructions (the ethdev burst functions test their
//! callback pointer either way). Dropping the guard unregisters the action
//! (`rte_pdump_uninit`); it must be dropped before EAL is cleaned up.
//!
//! The multi-process channel needs shared runtime files: a primary started with
//! `--in-memory` or `--no-shconf` registers nothing (DPDK reports ENOTSUP and `init` still
//! succeeds), and [`capture_possible`] tells so from the EAL arguments.

use super::{DpdkError, Eal};

/// Registration of the capture server; unregistered on drop.
#[derive(Debug)]
pub struct Pdump {
    _private: (),
}

impl Pdump {
    /// Registers the capture server (after EAL init, before workers start).
    pub fn init(_eal: &Eal) -> Result<Pdump, DpdkError> {
        // SAFETY: EAL is initialised (proved by &Eal); rte_pdump_init only reserves a memzone
        // and registers a multi-process action.
        let r = unsafe { ffi::rte_pdump_init() };
        if r != 0 {
            return Err(DpdkError::last("rte_pdump_init"));
        }
        Ok(Pdump { _private: () })
    }
}

impl Drop for Pdump {
    fn drop(&mut self) {
        // SAFETY: init succeeded, EAL is still initialised (the guard is dropped before Eal).
        unsafe { ffi::rte_pdump_uninit() };
    }
}

/// Whether EAL arguments leave the multi-process channel on, which capture tools need:
/// neither `--in-memory` nor `--no-shconf`.
pub fn capture_possible<S: AsRef<str>>(eal_args: &[S]) -> bool {
    !eal_args.iter().any(|a| matches!(a.as_ref(), "--in-memory" | "--no-shconf"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn in_memory_and_no_shconf_rule_capture_out() {
        assert!(super::capture_possible(&["director", "-l", "0", "--file-prefix", "x"]));
        assert!(!super::capture_possible(&["director", "--in-memory"]));
        assert!(!super::capture_possible(&["director", "--no-huge", "--no-shconf"]));
    }
}
