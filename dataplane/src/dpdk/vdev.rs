//! Virtual devices created at run time (hot-plugged after EAL initialisation): the kernel
//! leg's `net_tap` ports.
//!
//! Concurrency: the vdev bus is not thread safe. [`VdevBus`] is the one handle to it: not
//! `Clone`, so whoever holds it (start-up, then the kernel-leg service thread) is the only
//! creator and remover of virtual devices; workers never touch it.

use std::ffi::CString;

use super::{DpdkError, Eal, Port};

/// The right to create and remove virtual devices (proof that EAL is initialised, and the
/// one owner of the vdev bus).
#[derive(Debug)]
pub struct VdevBus(());

impl VdevBus {
    /// The handle. Take it once per process (the director's start-up does).
    pub fn new(_eal: &Eal) -> VdevBus {
        VdevBus(())
    }

    /// Creates the virtual device `name` (driver prefix included, e.g. `net_tap_dpdk0`)
    /// with driver arguments `args` and returns its ethdev port.
    pub fn create(&mut self, name: &str, args: &str) -> Result<Port, DpdkError> {
        create(name, args)
    }

    /// Stops, closes and removes the virtual device `name` (its port must no longer be
    /// used by anyone).
    pub fn remove(&mut self, name: &str) {
        remove(name)
    }
}

fn create(name: &str, args: &str) -> Result<Port, DpdkError> {
    let bad = |what: &str| DpdkError { what: format!("vdev {what}"), reason: "contains a NUL byte".into(), errno: 22 };
    let cname = CString::new(name).map_err(|_| bad("name"))?;
    let cargs = CString::new(args).map_err(|_| bad("arguments"))?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call; EAL is initialised
    // and vdev calls are serialised (only the `VdevBus` owner gets here).
    let r = unsafe { ffi::rte_vdev_init(cname.as_ptr(), cargs.as_ptr()) };
    if r != 0 {
        return Err(DpdkError::from_errno(format!("creating {name} ({args})"), r));
    }
    let mut id = 0u16;
    // SAFETY: cname is valid; id is a valid out-parameter.
    let r = unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
    if r != 0 {
        remove(name);
        return Err(DpdkError::from_errno(format!("finding the port of {name}"), r));
    }
    Ok(Port::from_raw(id))
}

fn remove(name: &str) {
    let Ok(cname) = CString::new(name) else { return };
    let mut id = 0u16;
    // SAFETY: cname is valid; id is a valid out-parameter.
    if unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) } == 0 {
        let p = Port::from_raw(id);
        p.stop();
        p.close();
    }
    // SAFETY: cname is valid; removing a device that does not exist returns an error, which
    // is ignored (the goal, no such device, holds).
    unsafe { ffi::rte_vdev_uninit(cname.as_ptr()) };
}
