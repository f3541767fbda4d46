//! Mbuf pools and owned packet buffers.

use std::ffi::CString;
use std::ptr::NonNull;

use super::{DpdkError, Eal};

// Offsets in struct rte_mbuf (DPDK 22.11), checked by `_Static_assert`s in ffi/shim/shim.c.
const MBUF_BUF_ADDR: usize = 0;
const MBUF_DATA_OFF: usize = 16;
const MBUF_NB_SEGS: usize = 20;
const MBUF_DATA_LEN: usize = 40;

/// A packet-buffer pool (`rte_mempool` of mbufs). Thread safe; per-lcore caches are used by
/// EAL threads.
#[derive(Debug)]
pub struct Mempool {
    ptr: NonNull<ffi::rte_mempool>,
}

// SAFETY: rte_mempool is designed for concurrent use from many threads (lock-free ring
// backend plus per-lcore caches).
unsafe impl Send for Mempool {}
// SAFETY: as above; every method takes &self and DPDK synchronises internally.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n` mbufs with `data_room` bytes each (headroom included) on `socket`.
    /// `no_iova_contig` must be set when running without hugepages (`--no-huge`), otherwise
    /// every object lands at the same page offset.
    pub fn new(
        _eal: &Eal,
        name: &str,
        n: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
        no_iova_contig: bool,
    ) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::from_errno("pool name", 22))?;
        // SAFETY: reads a constant.
        let flags = if no_iova_contig { unsafe { ffi::shim_mempool_f_no_iova_contig() } } else { 0 };
        // SAFETY: cname is a valid C string; EAL is initialised (proved by _eal).
        let p = unsafe { ffi::shim_pktmbuf_pool_create(cname.as_ptr(), n, cache, data_room, socket, flags) };
        NonNull::new(p)
            .map(|ptr| Mempool { ptr })
            .ok_or_else(|| DpdkError::last(format!("creating mbuf pool {name}")))
    }

    /// The default data room (2048 + headroom).
    pub fn default_data_room() -> u16 {
        // SAFETY: reads a constant.
        unsafe { ffi::shim_mbuf_default_buf_size() }
    }

    /// Allocates one mbuf (empty, default headroom), or `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid for the life of self.
        let m = unsafe { ffi::shim_pktmbuf_alloc(self.ptr.as_ptr()) };
        NonNull::new(m).map(|ptr| Mbuf { ptr })
    }

    /// Free mbufs in the pool (approximate while other threads use it).
    pub fn available(&self) -> u32 {
        // SAFETY: valid pool pointer.
        unsafe { ffi::shim_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs currently allocated from the pool (approximate while other threads use it).
    pub fn in_use(&self) -> u32 {
        // SAFETY: valid pool pointer.
        unsafe { ffi::shim_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.ptr.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool is freed once; ports using it must be stopped by then (the
        // director stops ports before dropping pools).
        unsafe { ffi::rte_mempool_free(self.ptr.as_ptr()) };
    }
}

/// One owned, single-segment packet buffer.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf {
    ptr: NonNull<ffi::rte_mbuf>,
}

// SAFETY: an mbuf is owned by exactly one Mbuf value; moving it between threads is how DPDK
// hands packets between lcores (rings).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// The packet bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let (p, len) = self.data_ptr_len();
        // SAFETY: buf_addr + data_off points at data_len initialised bytes inside the buffer
        // owned by self (single segment).
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    /// The packet bytes, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (p, len) = self.data_ptr_len();
        // SAFETY: as in data(); &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
    }

    /// Address of the first data byte (`rte_pktmbuf_mtod`) and the segment's length, read
    /// straight from the mbuf (offsets checked against DPDK's headers when the shim builds).
    #[inline(always)]
    fn data_ptr_len(&self) -> (*mut u8, usize) {
        let m = self.ptr.as_ptr().cast::<u8>();
        // SAFETY: the offsets are those of buf_addr (u64 pointer), data_off and data_len (u16)
        // in struct rte_mbuf (static assertions in ffi/shim/shim.c); the mbuf is owned by self
        // and its header is 8-byte aligned.
        unsafe {
            let buf = m.add(MBUF_BUF_ADDR).cast::<*mut u8>().read();
            let off = m.add(MBUF_DATA_OFF).cast::<u16>().read();
            let len = m.add(MBUF_DATA_LEN).cast::<u16>().read();
            (buf.add(usize::from(off)), usize::from(len))
        }
    }

    /// Prefetches the mbuf header (before reading its data pointer).
    #[inline(always)]
    pub fn prefetch_header(&self) {
        super::cpu::prefetch(self.ptr.as_ptr().cast::<u8>());
    }

    /// Prefetches the first cache line of packet data.
    #[inline(always)]
    pub fn prefetch_data(&self) {
        super::cpu::prefetch(self.data_ptr_len().0);
    }

    /// Packet length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: reads a field of an mbuf owned by self.
        unsafe { ffi::shim_pktmbuf_pkt_len(self.ptr.as_ptr()) as usize }
    }

    /// True for an empty packet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of segments (the dataplane only accepts 1).
    #[inline(always)]
    pub fn segments(&self) -> u16 {
        // SAFETY: nb_segs is a u16 at MBUF_NB_SEGS (checked in the shim) of an mbuf owned by
        // self.
        unsafe { self.ptr.as_ptr().cast::<u8>().add(MBUF_NB_SEGS).cast::<u16>().read() }
    }

    /// Input port id.
    #[inline]
    pub fn port(&self) -> u16 {
        // SAFETY: reads a field of an mbuf owned by self.
        unsafe { ffi::shim_mbuf_port(self.ptr.as_ptr()) }
    }

    /// Sets the input port id (kept with a packet handed to another worker).
    #[inline]
    pub fn set_port(&mut self, port: u16) {
        // SAFETY: writes a field of an mbuf owned by self.
        unsafe { ffi::shim_mbuf_set_port(self.ptr.as_ptr(), port) }
    }

    /// The NIC's RSS hash, when the PMD computed one.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        // SAFETY: reads fields of an mbuf owned by self.
        unsafe {
            if ffi::shim_mbuf_has_rss_hash(self.ptr.as_ptr()) != 0 {
                Some(ffi::shim_mbuf_rss_hash(self.ptr.as_ptr()))
            } else {
                None
            }
        }
    }


    /// Appends `n` bytes at the tail and returns them, or `None` without enough tailroom.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: rte_pktmbuf_append checks tailroom and returns NULL on failure; on success
        // the n bytes returned belong to this mbuf.
        unsafe {
            let p = ffi::shim_pktmbuf_append(self.ptr.as_ptr(), n16);
            if p.is_null() {
                None
            } else {
                Some(std::slice::from_raw_parts_mut(p, n))
            }
        }
    }

    /// Removes `n` bytes from the tail. Fails (returns false) if the packet is shorter.
    #[inline]
    pub fn trim(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else { return false };
        // SAFETY: rte_pktmbuf_trim checks the length.
        unsafe { ffi::shim_pktmbuf_trim(self.ptr.as_ptr(), n16) == 0 }
    }

    /// Removes `n` bytes from the head. Fails (returns false) if the packet is shorter.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else { return false };
        // SAFETY: rte_pktmbuf_adj checks the length and returns NULL on failure.
        unsafe { !ffi::shim_pktmbuf_adj(self.ptr.as_ptr(), n16).is_null() }
    }

    /// Prepends `n` bytes at the head and returns them, or `None` without enough headroom.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: rte_pktmbuf_prepend checks headroom and returns NULL on failure.
        unsafe {
            let p = ffi::shim_pktmbuf_prepend(self.ptr.as_ptr(), n16);
            if p.is_null() {
                None
            } else {
                Some(std::slice::from_raw_parts_mut(p, n))
            }
        }
    }

    /// Sets the packet length to exactly `len` bytes. Growing appends bytes whose content is
    /// unspecified: the caller must write them. Returns false if impossible.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        let cur = self.len();
        if len <= cur {
            self.trim(cur - len)
        } else {
            self.append(len - cur).is_some()
        }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf; it is freed exactly once.
        unsafe { ffi::shim_pktmbuf_free(self.ptr.as_ptr()) }
    }
}

/// A fixed-size batch of owned mbufs, laid out as DPDK's `struct rte_mbuf *[N]` so it can be
/// filled by `rx_burst`/`dequeue` and drained by `tx_burst`/`enqueue` without copying.
/// Invariant: slots `[0, len)` are `Some`, slots `[len, N)` are `None`.
pub struct MbufBatch<const N: usize> {
    pub(crate) slots: [Option<Mbuf>; N],
    pub(crate) len: usize,
}

impl<const N: usize> Default for MbufBatch<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MbufBatch<N> {
    /// An empty batch.
    pub fn new() -> Self {
        MbufBatch { slots: std::array::from_fn(|_| None), len: 0 }
    }

    /// Number of mbufs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when full.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Adds an mbuf; gives it back when the batch is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        match self.slots.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(m);
                self.len += 1;
                Ok(())
            }
            None => Err(m),
        }
    }

    /// Takes every mbuf out in order, leaving the batch empty.
    #[inline]
    pub fn drain(&mut self) -> impl Iterator<Item = Mbuf> + '_ {
        let n = std::mem::replace(&mut self.len, 0);
        self.slots[..n].iter_mut().filter_map(Option::take)
    }

    /// The mbufs held, in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = &Mbuf> + '_ {
        self.slots[..self.len].iter().flatten()
    }

    /// The mbufs held, in order, mutably.
    #[inline]
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Mbuf> + '_ {
        self.slots[..self.len].iter_mut().flatten()
    }

    /// Offers every mbuf to `f` in order; those it gives back stay (in order), the others
    /// are gone (`f` kept or freed them).
    #[inline]
    pub fn retain_with(&mut self, mut f: impl FnMut(Mbuf) -> Option<Mbuf>) {
        let n = std::mem::replace(&mut self.len, 0);
        for i in 0..n {
            if let Some(m) = self.slots.get_mut(i).and_then(Option::take) {
                if let Some(m) = f(m) {
                    if let Some(slot) = self.slots.get_mut(self.len) {
                        *slot = Some(m);
                        self.len += 1;
                    }
                }
            }
        }
    }

    /// Drops (frees) every mbuf held.
    pub fn clear(&mut self) {
        for _ in self.drain() {}
    }

    /// Marks the first `sent` slots as handed to DPDK (ownership gone, no free), shifts the
    /// rest to the front.
    #[inline]
    pub(crate) fn consumed(&mut self, sent: usize) {
        let sent = sent.min(self.len);
        for slot in &mut self.slots[..sent] {
            if let Some(m) = slot.take() {
                std::mem::forget(m);
            }
        }
        self.slots[..self.len].rotate_left(sent);
        self.len -= sent;
    }

    /// Raw pointer array view for DPDK calls.
    #[inline]
    pub(crate) fn as_mut_ptr(&mut self) -> *mut *mut ffi::rte_mbuf {
        self.slots.as_mut_ptr().cast()
    }
}

// Layout contract that the raw views above rely on.
const _: () = assert!(std::mem::size_of::<Option<Mbuf>>() == std::mem::size_of::<*mut ffi::rte_mbuf>());
