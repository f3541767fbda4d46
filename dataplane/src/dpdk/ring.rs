//! DPDK rings: lock-free FIFOs of mbufs between lcores, and ring-backed ethernet ports.

use std::ffi::CString;
use std::ptr::NonNull;

use super::{DpdkError, Eal, MbufBatch, Port};

/// An `rte_ring` carrying owned mbufs.
#[derive(Debug)]
pub struct Ring {
    ptr: NonNull<ffi::rte_ring>,
}

// SAFETY: rte_ring is safe for concurrent producers/consumers according to its flags; the
// single-producer/single-consumer variants are only used by one thread per side (documented
// at the creation site).
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// Creates a ring of `count` slots (a power of two; usable capacity count-1).
    /// `single_producer`/`single_consumer` select the faster SP/SC modes.
    pub fn new(
        _eal: &Eal,
        name: &str,
        count: u32,
        single_producer: bool,
        single_consumer: bool,
    ) -> Result<Ring, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::from_errno("ring name", 22))?;
        let mut flags = 0;
        if single_producer {
            flags |= ffi::RING_F_SP_ENQ;
        }
        if single_consumer {
            flags |= ffi::RING_F_SC_DEQ;
        }
        // SAFETY: valid name; SOCKET_ID_ANY.
        let p = unsafe { ffi::rte_ring_create(cname.as_ptr(), count, ffi::SOCKET_ID_ANY, flags) };
        NonNull::new(p).map(|ptr| Ring { ptr }).ok_or_else(|| DpdkError::last(format!("creating ring {name}")))
    }

    /// Moves as many mbufs of `batch` as fit into the ring; the rest stay in the batch.
    #[inline]
    pub fn enqueue<const N: usize>(&self, batch: &mut MbufBatch<N>) -> usize {
        if batch.len == 0 {
            return 0;
        }
        // SAFETY: slots [0, len) are valid owned mbufs; the ring takes the first n.
        let n = unsafe { ffi::shim_ring_enqueue_burst(self.ptr.as_ptr(), batch.as_mut_ptr().cast(), batch.len as u32) };
        batch.consumed(n as usize);
        n as usize
    }

    /// Takes up to the batch's free space out of the ring.
    #[inline]
    pub fn dequeue<const N: usize>(&self, batch: &mut MbufBatch<N>) -> usize {
        let free = (N - batch.len) as u32;
        if free == 0 {
            return 0;
        }
        // SAFETY: slots [len, N) are None; the ring writes at most `free` owned mbuf pointers.
        let n = unsafe { ffi::shim_ring_dequeue_burst(self.ptr.as_ptr(), batch.as_mut_ptr().add(batch.len).cast(), free) };
        batch.len += n as usize;
        n as usize
    }

    /// Entries currently queued.
    pub fn count(&self) -> u32 {
        // SAFETY: valid ring.
        unsafe { ffi::shim_ring_count(self.ptr.as_ptr()) }
    }

    /// Creates an ethernet port (`net_ring` PMD) that receives from and transmits into this
    /// ring, for benchmarks and tests. The ring must outlive the port.
    pub fn as_port(&self, eal: &Eal) -> Result<Port, DpdkError> {
        // SAFETY: valid ring; the PMD keeps the pointer, and the caller keeps the ring alive.
        let id = unsafe { ffi::rte_eth_from_ring(self.ptr.as_ptr()) };
        if id < 0 {
            return Err(DpdkError::last("rte_eth_from_ring"));
        }
        Port::from_id(eal, id as u16).ok_or_else(|| DpdkError::from_errno("rte_eth_from_ring port", 19))
    }
}

/// Creates an ethernet port (`net_ring` PMD) with one RX queue per ring of `rx` and one TX
/// queue per ring of `tx`: what the port receives on queue i is dequeued from `rx[i]`, what is
/// sent on queue i is enqueued into `tx[i]`. For benchmarks and tests; the rings must outlive
/// the port.
pub fn port_from_rings(eal: &Eal, name: &str, rx: &[&Ring], tx: &[&Ring]) -> Result<Port, DpdkError> {
    let cname = CString::new(name).map_err(|_| DpdkError::from_errno("port name", 22))?;
    let rxp: Vec<*mut ffi::rte_ring> = rx.iter().map(|r| r.ptr.as_ptr()).collect();
    let txp: Vec<*mut ffi::rte_ring> = tx.iter().map(|r| r.ptr.as_ptr()).collect();
    // SAFETY: valid name and ring pointer arrays of the given lengths; the PMD copies the
    // arrays and keeps the ring pointers, which the caller keeps alive.
    let id = unsafe {
        ffi::rte_eth_from_rings(cname.as_ptr(), rxp.as_ptr(), rxp.len() as u32, txp.as_ptr(), txp.len() as u32, 0)
    };
    if id < 0 {
        return Err(DpdkError::last(format!("rte_eth_from_rings {name}")));
    }
    Port::from_id(eal, id as u16).ok_or_else(|| DpdkError::from_errno("rte_eth_from_rings port", 19))
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Free whatever is still queued, then the ring.
        let mut b = MbufBatch::<32>::new();
        while self.dequeue(&mut b) > 0 {
            b.clear();
        }
        // SAFETY: no other user remains (owners drop rings after stopping workers).
        unsafe { ffi::rte_ring_free(self.ptr.as_ptr()) };
    }
}
