//! Per-core connection table (connections and persistence templates) and the TCP input-only
//! state machine.
//!
//! Layout: a slab of fixed-size [`Entry`] records (one 64-byte cache line each) with an
//! intrusive free list, indexed by an open-addressing hash index of 64-byte buckets holding
//! eight `(16-bit tag, u32 entry index)` slots plus an overflow counter. A key hashes to a home
//! bucket; an insert that finds its home bucket full moves on to the next bucket(s) and bumps
//! their predecessors' overflow counters, so a lookup stops at the first bucket whose counter is
//! zero and a removal decrements the counters it had bumped (no tombstones, no rehashing). The
//! index has at least 4/3 as many slots as the slab has entries, so an insert always finds a
//! free slot once the slab has a free entry.
//!
//! Invariants:
//! - capacity is fixed at construction; nothing allocates afterwards; a full table refuses
//!   inserts ([`InsertError::Full`]) while every existing entry keeps resolving;
//! - keys are unique among hashed entries; an *invalidated* entry (§3.4 of the IPVS reference)
//!   is unhashed: it stays in the slab, listings and the timer wheel until it expires;
//! - every used entry is armed in the table's [`TimerWheel`]; `expires` only changes through
//!   [`ConnTable::touch`]/[`ConnTable::set_timeout`]/[`ConnTable::expire_now`];
//! - `control`/`n_control` are maintained by the table: a connection linked to a template with
//!   [`ConnTable::set_control`] bumps the template's `n_control`, and removing the connection
//!   drops it again; an entry whose `n_control > 0` is never freed.
//!
//! Concurrency: each worker core owns its table (single writer, no locks, no atomics). Nothing
//! here allocates after construction, logs or panics (indices are checked, not trusted).
//! Keys and addresses are in host byte order.

use crate::timer::{self, TimerNodes, TimerWheel, WheelConfigError, NIL, UNLINKED};
use thiserror::Error;

/// Dense real-server slot index (the value inside `control::model::ServerId`).
pub type ServerIdx = u32;

/// "No entry" index (e.g. [`Entry::control`] of an entry without a template).
pub const NO_INDEX: u32 = u32::MAX;

/// Largest supported table capacity (entry indices must fit the timer links).
pub const MAX_CAPACITY: usize = timer::MAX_INDEX as usize;

/// Entry flag: a persistence template (client port 0).
pub const F_TEMPLATE: u8 = 0x01;
/// Entry flag: the entry is counted in the server's InActConn (IPVS `INACTIVE`); clear means
/// counted in ActiveConn. Templates are counted in PersistConn whatever this flag says.
pub const F_INACTIVE: u8 = 0x02;
/// Entry flag: a one-packet (OPS) entry.
pub const F_ONE_PACKET: u8 = 0x04;
/// Entry flags free for the caller's use start at this bit.
pub const F_USER: u8 = 0x10;

const ST_FREE: u8 = 0;
const ST_HASHED: u8 = 1;
const ST_UNHASHED: u8 = 2;

/// Connection lookup key: the client→VIP 5-tuple (templates: cport 0, see IPVS reference §3.1).
/// Host byte order.
///
/// `repr(C)` in this field order so that [`Self::words`] compiles to one 8-byte and one
/// 4+1-byte load (the comparison in a lookup is a handful of instructions). Ordering (`Ord`)
/// is by (proto, caddr, cport, vaddr, vport), independent of the layout.
#[derive(Clone, Copy, Debug, Default, Eq)]
#[repr(C)]
pub struct ConnKey {
    /// Virtual address (fwmark templates: the mark value).
    pub vaddr: u32,
    /// Client address (templates: client & netmask).
    pub caddr: u32,
    /// Virtual port (0 for port-0, FTP and fwmark templates).
    pub vport: u16,
    /// Client port (0 for templates).
    pub cport: u16,
    /// IP protocol number (6 TCP, 17 UDP, 0 for fwmark templates).
    pub proto: u8,
}

impl ConnKey {
    /// The key as two words, for a branch-free comparison and the hash. Little-endian
    /// layout order, so each word is a plain load of the struct's bytes.
    #[inline(always)]
    pub fn words(&self) -> (u64, u64) {
        (
            u64::from(self.vaddr) | (u64::from(self.caddr) << 32),
            u64::from(self.vport) | (u64::from(self.cport) << 16) | (u64::from(self.proto) << 32),
        )
    }

    fn order(&self) -> (u8, u32, u16, u32, u16) {
        (self.proto, self.caddr, self.cport, self.vaddr, self.vport)
    }
}

impl PartialOrd for ConnKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for ConnKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.order().cmp(&o.order())
    }
}

impl PartialEq for ConnKey {
    #[inline]
    fn eq(&self, o: &Self) -> bool {
        let (a, b) = (self.words(), o.words());
        (a.0 ^ b.0) | (a.1 ^ b.1) == 0
    }
}

// Consistent with `eq`: equal keys have equal words.
impl std::hash::Hash for ConnKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.words().hash(h);
    }
}

/// One connection or template: 48 bytes, 16-byte aligned, in three 16-byte groups that never
/// straddle a cache line: the key; what a packet of an established flow reads (server,
/// expiry, timeout, state); and the links (template control, timer wheel).
///
/// Fields the table maintains (key, expiry, control links) are read through methods; the rest
/// are public for the caller to update through [`ConnTable::get_mut`]. Per-entry packet and
/// byte counts are not kept (IPVS keeps none that `ipvsadm` shows; the counters are per
/// server and service).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct Entry {
    key: ConnKey,
    /// Real server slot the entry is bound to.
    pub server: ServerIdx,
    expires: u32,
    /// Idle timeout in ticks: each [`ConnTable::touch`] re-arms to `now + timeout`.
    pub timeout: u32,
    /// Protocol state ([`TcpState`] as `u8` for TCP, [`UDP_STATE`] for UDP, template states).
    pub state: u8,
    /// `F_*` flags.
    pub flags: u8,
    status: u8,
    /// Packet count for connection synchronisation (modulo `sync_period`, see
    /// `engine::sync_conn`); 0 in a new entry.
    pub sync_count: u8,
    control: u32,
    n_control: u32,
    next: u32,
    prev: u32,
}

impl Entry {
    const FREE: Entry = Entry {
        key: ConnKey {
            proto: 0,
            caddr: 0,
            cport: 0,
            vaddr: 0,
            vport: 0,
        },
        server: 0,
        expires: 0,
        timeout: 0,
        state: 0,
        flags: 0,
        status: ST_FREE,
        sync_count: 0,
        control: NO_INDEX,
        n_control: 0,
        next: NIL,
        prev: UNLINKED,
    };

    /// The entry's key (for an invalidated entry: the key it was re-keyed to for display).
    #[inline]
    pub fn key(&self) -> &ConnKey {
        &self.key
    }

    /// Tick at which the entry expires unless refreshed.
    #[inline]
    pub fn expires(&self) -> u32 {
        self.expires
    }

    /// Index of the controlling template, or [`NO_INDEX`].
    #[inline]
    pub fn control(&self) -> u32 {
        self.control
    }

    /// Number of entries this one controls.
    #[inline]
    pub fn n_control(&self) -> u32 {
        self.n_control
    }

    /// True for a persistence template.
    #[inline]
    pub fn is_template(&self) -> bool {
        self.flags & F_TEMPLATE != 0
    }

    /// False once the entry has been invalidated (no longer found by lookups).
    #[inline]
    pub fn is_hashed(&self) -> bool {
        self.status == ST_HASHED
    }

    /// Run the TCP input-only state machine for a client packet with `tcp_flags`, exactly as
    /// the kernel's `set_tcp_state` does for a NOOUTPUT (DR) entry: new state, new timeout
    /// (`timeouts` in ticks) and the INACTIVE flag. The caller applies the returned counter
    /// move to the server's ActiveConn/InActConn, assures the template on
    /// [`TcpTransition::established`], and then calls [`ConnTable::touch`].
    pub fn apply_tcp(&mut self, tcp_flags: u8, timeouts: &Timeouts) -> TcpTransition {
        self.apply_tcp_with(tcp_flags, timeouts, false)
    }

    /// [`Self::apply_tcp`] with the `secure_tcp` defense's stricter table when `secure` (the
    /// kernel's `tcp_states_dos`, INPUT-ONLY part: a SYN leads to SYNACK instead of SYN_RECV).
    #[inline]
    pub fn apply_tcp_with(&mut self, tcp_flags: u8, timeouts: &Timeouts, secure: bool) -> TcpTransition {
        let old = TcpState::from_u8(self.state).unwrap_or(TcpState::None);
        let new = if secure { old.next_secure(tcp_flags) } else { old.next(tcp_flags) };
        let mut t = TcpTransition {
            counter: CounterMove::None,
            established: false,
        };
        if new != old {
            let inactive = self.flags & F_INACTIVE != 0;
            if !inactive && !new.is_active() {
                self.flags |= F_INACTIVE;
                t.counter = CounterMove::ToInactive;
            } else if inactive && new.is_active() {
                self.flags &= !F_INACTIVE;
                t.counter = CounterMove::ToActive;
            }
            t.established = new == TcpState::Established;
        }
        self.state = new as u8;
        self.timeout = timeouts.tcp_timeout(new);
        t
    }

    /// UDP "state machine": the state stays [`UDP_STATE`] and the timeout becomes the UDP one.
    pub fn apply_udp(&mut self, timeouts: &Timeouts) {
        self.state = UDP_STATE;
        self.timeout = timeouts.udp;
    }
}

/// Fields of a new entry, given to [`ConnTable::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInit {
    /// Real server slot.
    pub server: ServerIdx,
    /// Initial state (IPVS: NONE).
    pub state: u8,
    /// Initial flags (IPVS: `F_INACTIVE` for connections, `F_TEMPLATE` for templates).
    pub flags: u8,
    /// Initial timeout in ticks (IPVS: 3 s for a connection, the persistence timeout for a
    /// template).
    pub timeout: u32,
}

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum InsertError {
    /// No free entry: the table is at capacity (count it and drop the new flow).
    #[error("connection table full")]
    Full,
    /// An entry with the same key is already hashed, at this index.
    #[error("connection entry already exists at index {0}")]
    Exists(u32),
}

/// Why a removal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RemoveError {
    /// The index is out of range or the entry is free.
    #[error("no such connection entry")]
    NotFound,
    /// The entry still controls other entries (a template with `n_control > 0`).
    #[error("entry still controls {0} connections")]
    Controls(u32),
}

/// Invalid table parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TableConfigError {
    /// Capacity must be in `1..=MAX_CAPACITY`.
    #[error("connection table capacity {0} is not in 1..={MAX_CAPACITY}")]
    BadCapacity(usize),
    /// Timer wheel parameters are invalid.
    #[error(transparent)]
    Wheel(#[from] WheelConfigError),
}

/// Construction parameters of a [`ConnTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTableConfig {
    /// Maximum number of entries (connections + templates).
    pub capacity: usize,
    /// Timer wheel slots (power of two; one tick each).
    pub wheel_slots: usize,
    /// Tick rate.
    pub ticks_per_sec: u32,
    /// Hash seed (pick it at random at start-up: it keeps bucket placement unpredictable).
    pub seed: u64,
    /// Current tick.
    pub now: u32,
}

/// What the caller of [`ConnTable::expire`] wants done with an expired entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireAction {
    /// Unhash and free it (refused, and the entry re-armed for its current timeout, while it
    /// still controls other entries).
    Remove,
    /// Keep it: set `timeout` to this many ticks (at least 1) and re-arm to `now + timeout`.
    /// IPVS uses this for a template that still controls connections (60 s).
    Rearm(u32),
}

/// What one [`ConnTable::expire`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireStats {
    /// Entries freed.
    pub removed: u32,
    /// Entries re-armed at the caller's request.
    pub rearmed: u32,
    /// `Remove` requests refused because the entry still controls others.
    pub refused: u32,
    /// True when the wheel has processed every tick up to `now`.
    pub caught_up: bool,
}

/// How a TCP state change moves the entry between the server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterMove {
    /// No change.
    None,
    /// InActConn −1, ActiveConn +1.
    ToActive,
    /// ActiveConn −1, InActConn +1.
    ToInactive,
}

/// Result of [`Entry::apply_tcp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTransition {
    /// Counter move to apply to the entry's server.
    pub counter: CounterMove,
    /// The state just changed to ESTABLISHED (IPVS then marks the controlling template
    /// ASSURED, [`TEMPLATE_STATE_ASSURED`]).
    pub established: bool,
}

// ---------------------------------------------------------------------------------------------
// Slab

#[derive(Debug)]
struct Slab(Box<[Entry]>);

impl TimerNodes for Slab {
    #[inline]
    fn expires(&self, idx: u32) -> u32 {
        self.0.get(idx as usize).map_or(0, |e| e.expires)
    }
    #[inline]
    fn next(&self, idx: u32) -> u32 {
        self.0.get(idx as usize).map_or(NIL, |e| e.next)
    }
    #[inline]
    fn prev(&self, idx: u32) -> u32 {
        self.0.get(idx as usize).map_or(UNLINKED, |e| e.prev)
    }
    #[inline]
    fn set_next(&mut self, idx: u32, next: u32) {
        if let Some(e) = self.0.get_mut(idx as usize) {
            e.next = next;
        }
    }
    #[inline]
    fn set_prev(&mut self, idx: u32, prev: u32) {
        if let Some(e) = self.0.get_mut(idx as usize) {
            e.prev = prev;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Index

const SLOTS: usize = 8;

/// One cache line of the index: 8 tags (0 = empty), 8 entry indices, and the number of
/// entries whose probe sequence passed this bucket because it was full.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u16; SLOTS],
    idx: [u32; SLOTS],
    overflow: u32,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        tags: [0; SLOTS],
        idx: [NO_INDEX; SLOTS],
        overflow: 0,
    };

    /// Bit `j` set iff slot `j` holds `tag` (one SIMD compare).
    #[inline(always)]
    fn matches(&self, tag: u16) -> u32 {
        crate::dpdk::cpu::match_u16x8(&self.tags, tag)
    }

    /// Entry index in slot `j` (`j` from a [`Self::matches`] mask, so below 8).
    #[inline(always)]
    fn slot(&self, j: u32) -> u32 {
        self.idx[j as usize & (SLOTS - 1)]
    }

    #[inline]
    fn set(&mut self, j: usize, tag: u16, idx: u32) {
        if let (Some(t), Some(s)) = (self.tags.get_mut(j), self.idx.get_mut(j)) {
            *t = tag;
            *s = idx;
        }
    }
}

#[inline]
fn tag_of(hash: u64) -> u16 {
    (hash as u16).max(1)
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

// ---------------------------------------------------------------------------------------------
// Table

/// The per-core connection table (see the module documentation).
#[derive(Debug)]
pub struct ConnTable {
    buckets: Box<[Bucket]>,
    slab: Slab,
    wheel: TimerWheel,
    free_head: u32,
    len: u32,
    seed: [u64; 2],
}

impl ConnTable {
    /// Build a table of `cfg.capacity` entries. All memory is allocated (and initialised) here.
    pub fn new(cfg: ConnTableConfig) -> Result<Self, TableConfigError> {
        if cfg.capacity == 0 || cfg.capacity > MAX_CAPACITY {
            return Err(TableConfigError::BadCapacity(cfg.capacity));
        }
        let wheel = TimerWheel::new(cfg.wheel_slots, cfg.ticks_per_sec, cfg.now)?;
        let nb = cfg.capacity.div_ceil(6).max(1);
        // Large tables go on transparent huge pages (advised before the first write): with 4 KiB
        // pages a random walk over a million entries misses the TLB on nearly every packet.
        let mut slab: Vec<Entry> = Vec::with_capacity(cfg.capacity);
        crate::dpdk::cpu::advise_hugepages(slab.as_ptr().cast(), cfg.capacity * core::mem::size_of::<Entry>());
        slab.extend((0..cfg.capacity).map(|i| Entry {
            next: if i + 1 < cfg.capacity { (i + 1) as u32 } else { NIL },
            ..Entry::FREE
        }));
        let mut buckets: Vec<Bucket> = Vec::with_capacity(nb);
        crate::dpdk::cpu::advise_hugepages(buckets.as_ptr().cast(), nb * core::mem::size_of::<Bucket>());
        buckets.resize(nb, Bucket::EMPTY);
        let s0 = cfg.seed ^ 0x243F_6A88_85A3_08D3;
        let s1 = cfg.seed.rotate_left(29) ^ 0x1319_8A2E_0370_7344;
        Ok(Self {
            buckets: buckets.into_boxed_slice(),
            slab: Slab(slab.into_boxed_slice()),
            wheel,
            free_head: 0,
            len: 0,
            seed: [s0, s1],
        })
    }

    /// Bytes of memory per entry slot: the entry plus its share of the index.
    pub fn bytes_per_entry(&self) -> f64 {
        let total = self.slab.0.len() * core::mem::size_of::<Entry>()
            + self.buckets.len() * core::mem::size_of::<Bucket>();
        total as f64 / self.slab.0.len() as f64
    }

    /// Keyed hash of `key` (compute a burst of them, then [`Self::lookup_hashed`]).
    #[inline]
    pub fn hash(&self, key: &ConnKey) -> u64 {
        let (a, b) = key.words();
        let h = fold_mul(a ^ self.seed[0], b ^ self.seed[1]);
        fold_mul(h ^ self.seed[1], 0x9E37_79B9_7F4A_7C15)
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        (((hash >> 32) * self.buckets.len() as u64) >> 32) as usize
    }

    #[inline(always)]
    fn next_bucket(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// Burst pipeline, step 1: prefetch the index bucket `hash` maps to.
    #[inline(always)]
    pub fn prefetch_bucket(&self, hash: u64) {
        if let Some(b) = self.buckets.get(self.home(hash)) {
            crate::dpdk::cpu::prefetch(b);
        }
    }

    /// Burst pipeline, step 2: the first entry in the home bucket whose tag matches `hash`
    /// (prefetched), or [`NO_INDEX`]. Only a hint: confirm it with
    /// [`Self::lookup_hinted`].
    #[inline(always)]
    pub fn candidate(&self, hash: u64) -> u32 {
        let Some(bk) = self.buckets.get(self.home(hash)) else { return NO_INDEX };
        let m = bk.matches(tag_of(hash));
        if m == 0 {
            return NO_INDEX;
        }
        let idx = bk.slot(m.trailing_zeros());
        if let Some(e) = self.slab.0.get(idx as usize) {
            // The key's group and the hot group: two lines at most, often one.
            crate::dpdk::cpu::prefetch(e);
            crate::dpdk::cpu::prefetch(&e.timeout);
        }
        idx
    }

    /// Burst pipeline, step 3: [`Self::lookup_hashed`], trying `cand` (from
    /// [`Self::candidate`]) first.
    #[inline(always)]
    pub fn lookup_hinted(&self, key: &ConnKey, hash: u64, cand: u32) -> Option<u32> {
        if let Some(e) = self.slab.0.get(cand as usize) {
            if e.key == *key && e.status == ST_HASHED {
                return Some(cand);
            }
        }
        self.lookup_hashed(key, hash)
    }

    /// Find the hashed entry with `key`.
    #[inline]
    pub fn lookup(&self, key: &ConnKey) -> Option<u32> {
        self.lookup_hashed(key, self.hash(key))
    }

    /// Find the hashed entry with `key`, whose [`Self::hash`] is `hash`.
    #[inline]
    pub fn lookup_hashed(&self, key: &ConnKey, hash: u64) -> Option<u32> {
        let tag = tag_of(hash);
        let mut b = self.home(hash);
        let mut left = self.buckets.len();
        loop {
            let bk = self.buckets.get(b)?;
            let mut m = bk.matches(tag);
            while m != 0 {
                let idx = bk.slot(m.trailing_zeros());
                m &= m - 1;
                if let Some(e) = self.slab.0.get(idx as usize) {
                    if e.key == *key {
                        return Some(idx);
                    }
                }
            }
            left -= 1;
            if bk.overflow == 0 || left == 0 {
                return None;
            }
            b = self.next_bucket(b);
        }
    }

    /// Entry `idx`, if it is in use.
    #[inline]
    pub fn get(&self, idx: u32) -> Option<&Entry> {
        self.slab
            .0
            .get(idx as usize)
            .filter(|e| e.status != ST_FREE)
    }

    /// Entry `idx` for update, if it is in use. Changing `timeout` takes effect at the next
    /// [`Self::touch`].
    #[inline]
    pub fn get_mut(&mut self, idx: u32) -> Option<&mut Entry> {
        self.slab
            .0
            .get_mut(idx as usize)
            .filter(|e| e.status != ST_FREE)
    }

    /// Number of entries in use (hashed or invalidated).
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when no entry is in use.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of entries.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slab.0.len()
    }

    /// The table's timer wheel (tick rate, conversions, cursor).
    #[inline]
    pub fn wheel(&self) -> &TimerWheel {
        &self.wheel
    }

    /// Insert a new entry with `key` and arm its timer to `now + init.timeout`. Never grows.
    #[inline]
    pub fn insert(&mut self, key: ConnKey, init: ConnInit, now: u32) -> Result<u32, InsertError> {
        let h = self.hash(&key);
        self.insert_hashed(key, h, init, now)
    }

    /// [`Self::insert`] with a precomputed `hash` of `key`.
    pub fn insert_hashed(
        &mut self,
        key: ConnKey,
        hash: u64,
        init: ConnInit,
        now: u32,
    ) -> Result<u32, InsertError> {
        if let Some(i) = self.lookup_hashed(&key, hash) {
            return Err(InsertError::Exists(i));
        }
        let idx = self.free_head;
        if idx == NIL {
            return Err(InsertError::Full);
        }
        // Find the first bucket with an empty slot along the probe sequence.
        let home = self.home(hash);
        let mut b = home;
        let mut found = None;
        for _ in 0..self.buckets.len() {
            let Some(bk) = self.buckets.get(b) else { break };
            let m = bk.matches(0);
            if m != 0 {
                found = Some((b, m.trailing_zeros() as usize));
                break;
            }
            b = self.next_bucket(b);
        }
        let Some((target, j)) = found else {
            return Err(InsertError::Full);
        };
        let Some(e) = self.slab.0.get_mut(idx as usize) else {
            return Err(InsertError::Full);
        };
        self.free_head = e.next;
        *e = Entry {
            key,
            server: init.server,
            expires: now.wrapping_add(init.timeout.min(timer::MAX_TIMEOUT_TICKS)),
            timeout: init.timeout,
            state: init.state,
            flags: init.flags,
            status: ST_HASHED,
            sync_count: 0,
            control: NO_INDEX,
            n_control: 0,
            next: NIL,
            prev: UNLINKED,
        };
        let mut b = home;
        while b != target {
            if let Some(bk) = self.buckets.get_mut(b) {
                bk.overflow = bk.overflow.wrapping_add(1);
            }
            b = self.next_bucket(b);
        }
        if let Some(bk) = self.buckets.get_mut(target) {
            bk.set(j, tag_of(hash), idx);
        }
        self.wheel.link(&mut self.slab, idx);
        self.len += 1;
        Ok(idx)
    }

    /// Remove `idx` (known to be hashed under `key`) from the index.
    fn unhash(&mut self, idx: u32, key: &ConnKey) {
        let hash = self.hash(key);
        let home = self.home(hash);
        let mut b = home;
        for _ in 0..self.buckets.len() {
            let Some(bk) = self.buckets.get_mut(b) else {
                return;
            };
            if let Some(j) = bk.idx.iter().position(|&x| x == idx) {
                bk.set(j, 0, NO_INDEX);
                let mut p = home;
                while p != b {
                    if let Some(pb) = self.buckets.get_mut(p) {
                        pb.overflow = pb.overflow.saturating_sub(1);
                    }
                    p = self.next_bucket(p);
                }
                return;
            }
            if bk.overflow == 0 {
                return;
            }
            b = self.next_bucket(b);
        }
    }

    /// Free entry `idx` (already unlinked from the wheel): unhash, detach from its template,
    /// push on the free list.
    fn free(&mut self, idx: u32) -> Option<Entry> {
        let e = *self
            .slab
            .0
            .get(idx as usize)
            .filter(|e| e.status != ST_FREE)?;
        if e.status == ST_HASHED {
            self.unhash(idx, &e.key);
        }
        if e.control != NO_INDEX {
            if let Some(t) = self.slab.0.get_mut(e.control as usize) {
                t.n_control = t.n_control.saturating_sub(1);
            }
        }
        if let Some(s) = self.slab.0.get_mut(idx as usize) {
            *s = Entry::FREE;
            s.next = self.free_head;
        }
        self.free_head = idx;
        self.len -= 1;
        Some(e)
    }

    /// Remove entry `idx` now and return a copy of it (for counter bookkeeping). Refused while
    /// it controls other entries (IPVS never frees such a template; expire it instead).
    pub fn remove(&mut self, idx: u32) -> Result<Entry, RemoveError> {
        let e = self.get(idx).ok_or(RemoveError::NotFound)?;
        if e.n_control > 0 {
            return Err(RemoveError::Controls(e.n_control));
        }
        self.wheel.unlink(&mut self.slab, idx);
        self.free(idx).ok_or(RemoveError::NotFound)
    }

    /// Re-arm entry `idx` to `now + timeout` (a packet was seen). O(1): only `expires` is
    /// written unless the new expiry is earlier than the old one. Always inlined: it is on
    /// the fast path (in both of its compiled forms, see `Engine::process_prepared_as`).
    #[inline(always)]
    pub fn touch(&mut self, idx: u32, now: u32) {
        let Some(e) = self.slab.0.get_mut(idx as usize) else {
            return;
        };
        if e.status == ST_FREE {
            return;
        }
        let old = e.expires;
        let new = now.wrapping_add(e.timeout.min(timer::MAX_TIMEOUT_TICKS));
        if new == old {
            // Same tick as the last refresh (the common case for a busy flow): nothing moves.
            return;
        }
        e.expires = new;
        self.wheel.rearm(&mut self.slab, idx, old);
    }

    /// Set `timeout` (ticks) of `idx` and re-arm it to `now + timeout`.
    #[inline]
    pub fn set_timeout(&mut self, idx: u32, timeout: u32, now: u32) {
        if let Some(e) = self.get_mut(idx) {
            e.timeout = timeout;
            self.touch(idx, now);
        }
    }

    /// Make `idx` expire at the next [`Self::expire`] pass (`expires := now`), so it goes
    /// through the caller's expiry callback (counter bookkeeping, template rule).
    pub fn expire_now(&mut self, idx: u32, now: u32) {
        let Some(e) = self.slab.0.get_mut(idx as usize) else {
            return;
        };
        if e.status == ST_FREE {
            return;
        }
        let old = e.expires;
        e.expires = now;
        self.wheel.rearm(&mut self.slab, idx, old);
    }

    /// Link connection `idx` to template `tmpl`: `idx.control = tmpl`, `tmpl.n_control += 1`.
    /// Returns false (and changes nothing) if either is not in use, they are the same entry,
    /// or `idx` already has a controller.
    pub fn set_control(&mut self, idx: u32, tmpl: u32) -> bool {
        if idx == tmpl || self.get(tmpl).is_none() {
            return false;
        }
        match self.get_mut(idx) {
            Some(e) if e.control == NO_INDEX => e.control = tmpl,
            _ => return false,
        }
        if let Some(t) = self.get_mut(tmpl) {
            t.n_control = t.n_control.saturating_add(1);
        }
        true
    }

    /// Invalidate `idx` (IPVS §3.4 "dead template"): unhash it so lookups never find it again,
    /// store `display_key` (e.g. vport 65535) for listings, and leave it to its timer (which is
    /// not restarted). Returns false if `idx` is not a hashed entry.
    pub fn invalidate(&mut self, idx: u32, display_key: ConnKey) -> bool {
        let Some(e) = self
            .slab
            .0
            .get(idx as usize)
            .filter(|e| e.status == ST_HASHED)
        else {
            return false;
        };
        let key = e.key;
        self.unhash(idx, &key);
        if let Some(e) = self.slab.0.get_mut(idx as usize) {
            e.status = ST_UNHASHED;
            e.key = display_key;
        }
        true
    }

    /// Drive the timer wheel up to `now` within `budget` work units and ask `f` what to do with
    /// every expired entry. On [`ExpireAction::Remove`] the entry is freed after `f` returns
    /// (unless it still controls others: then it is re-armed for its current timeout and
    /// counted in `refused`); the caller decrements its per-server counters inside `f`.
    pub fn expire<F>(&mut self, now: u32, budget: u32, mut f: F) -> ExpireStats
    where
        F: FnMut(u32, &Entry) -> ExpireAction,
    {
        let mut budget = budget;
        let mut stats = ExpireStats::default();
        while let Some(idx) = self.wheel.poll_expired(&mut self.slab, now, &mut budget) {
            let Some(e) = self
                .slab
                .0
                .get(idx as usize)
                .filter(|e| e.status != ST_FREE)
            else {
                continue;
            };
            let (n_control, timeout) = (e.n_control, e.timeout);
            match f(idx, e) {
                ExpireAction::Remove if n_control == 0 => {
                    self.free(idx);
                    stats.removed += 1;
                }
                ExpireAction::Remove => {
                    self.rearm_at(idx, timeout.max(1), now);
                    stats.refused += 1;
                }
                ExpireAction::Rearm(t) => {
                    self.rearm_at(idx, t.max(1), now);
                    stats.rearmed += 1;
                }
            }
        }
        stats.caught_up = self.wheel.caught_up(now);
        stats
    }

    fn rearm_at(&mut self, idx: u32, timeout: u32, now: u32) {
        if let Some(e) = self.slab.0.get_mut(idx as usize) {
            e.timeout = timeout;
            e.expires = now.wrapping_add(timeout.min(timer::MAX_TIMEOUT_TICKS));
            self.wheel.link(&mut self.slab, idx);
        }
    }

    /// All entries in use, in index order (for control-plane dumps).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Entry)> + '_ {
        self.iter_from(0)
    }

    /// Entries in use with index ≥ `start` (resumable chunked dumps).
    pub fn iter_from(&self, start: u32) -> impl Iterator<Item = (u32, &Entry)> + '_ {
        self.slab
            .0
            .iter()
            .enumerate()
            .skip(start as usize)
            .filter(|(_, e)| e.status != ST_FREE)
            .map(|(i, e)| (i as u32, e))
    }
}

// ---------------------------------------------------------------------------------------------
// TCP input-only state machine (IPVS reference §5)

/// TCP header flag bits (byte 13 of the TCP header) used by the state machine.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// `state` of a UDP entry (the kernel's single UDP state, listed as "UDP").
pub const UDP_STATE: u8 = 0;
/// `state` of a template before any controlled TCP connection reached ESTABLISHED.
pub const TEMPLATE_STATE_NONE: u8 = 0;
/// `state` of a template once a controlled TCP connection reached ESTABLISHED.
pub const TEMPLATE_STATE_ASSURED: u8 = 1;

/// IPVS TCP states, in the kernel's order (their `u8` values are the kernel's).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// NONE (new entry).
    None = 0,
    /// ESTABLISHED.
    Established = 1,
    /// SYN_SENT.
    SynSent = 2,
    /// SYN_RECV.
    SynRecv = 3,
    /// FIN_WAIT.
    FinWait = 4,
    /// TIME_WAIT.
    TimeWait = 5,
    /// CLOSE.
    Close = 6,
    /// CLOSE_WAIT.
    CloseWait = 7,
    /// LAST_ACK.
    LastAck = 8,
    /// LISTEN.
    Listen = 9,
    /// SYNACK.
    SynAck = 10,
}

/// Number of TCP states.
pub const TCP_STATE_COUNT: usize = 11;

/// Events of the state table, in row order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEvent {
    /// SYN set (and not RST).
    Syn = 0,
    /// FIN set (not RST/SYN).
    Fin = 1,
    /// ACK set (not RST/SYN/FIN).
    Ack = 2,
    /// RST set.
    Rst = 3,
}

impl TcpEvent {
    /// Event of a packet: first of RST > SYN > FIN > ACK; `None` when none is set.
    #[inline]
    pub fn of(flags: u8) -> Option<TcpEvent> {
        if flags & tcp_flags::RST != 0 {
            Some(TcpEvent::Rst)
        } else if flags & tcp_flags::SYN != 0 {
            Some(TcpEvent::Syn)
        } else if flags & tcp_flags::FIN != 0 {
            Some(TcpEvent::Fin)
        } else if flags & tcp_flags::ACK != 0 {
            Some(TcpEvent::Ack)
        } else {
            None
        }
    }
}

use TcpState as S;

/// INPUT-ONLY transition table: `[event][current state]`.
#[rustfmt::skip]
const INPUT_ONLY: [[TcpState; TCP_STATE_COUNT]; 4] = {
    #[allow(dead_code)] // no transition leads to NONE
    const NO: TcpState = S::None;
    const ES: TcpState = S::Established;
    const SS: TcpState = S::SynSent;
    const SR: TcpState = S::SynRecv;
    const FW: TcpState = S::FinWait;
    const TW: TcpState = S::TimeWait;
    const CL: TcpState = S::Close;
    const CW: TcpState = S::CloseWait;
    const LA: TcpState = S::LastAck;
    const LI: TcpState = S::Listen;
    #[allow(dead_code)] // no input-only transition leads to SYNACK
    const SA: TcpState = S::SynAck;
    [
        //       NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
        /*SYN*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /*FIN*/ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /*ACK*/ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*RST*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ]
};

/// The `secure_tcp` INPUT-ONLY table (kernel `tcp_states_dos`): as [`INPUT_ONLY`] except
/// that a SYN from NONE, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN or SYNACK
/// leads to SYNACK.
#[rustfmt::skip]
const INPUT_ONLY_SECURE: [[TcpState; TCP_STATE_COUNT]; 4] = {
    const ES: TcpState = S::Established;
    const SS: TcpState = S::SynSent;
    const SR: TcpState = S::SynRecv;
    const FW: TcpState = S::FinWait;
    const TW: TcpState = S::TimeWait;
    const CL: TcpState = S::Close;
    const CW: TcpState = S::CloseWait;
    const LA: TcpState = S::LastAck;
    const LI: TcpState = S::Listen;
    const SA: TcpState = S::SynAck;
    [
        //       NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
        /*SYN*/ [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
        /*FIN*/ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /*ACK*/ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*RST*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ]
};

impl TcpState {
    /// All states in kernel order.
    pub const ALL: [TcpState; TCP_STATE_COUNT] = [
        S::None,
        S::Established,
        S::SynSent,
        S::SynRecv,
        S::FinWait,
        S::TimeWait,
        S::Close,
        S::CloseWait,
        S::LastAck,
        S::Listen,
        S::SynAck,
    ];

    /// State for a stored `u8`.
    #[inline]
    pub fn from_u8(v: u8) -> Option<TcpState> {
        Self::ALL.get(v as usize).copied()
    }

    /// Next state for a client→server packet with `tcp_flags` (INPUT-ONLY table; no
    /// SYN/FIN/ACK/RST → CLOSE).
    #[inline]
    pub fn next(self, tcp_flags: u8) -> TcpState {
        match TcpEvent::of(tcp_flags) {
            Some(ev) => INPUT_ONLY[ev as usize][self as usize],
            None => S::Close,
        }
    }

    /// Next state under the `secure_tcp` defense ([`INPUT_ONLY_SECURE`]).
    #[inline]
    pub fn next_secure(self, tcp_flags: u8) -> TcpState {
        match TcpEvent::of(tcp_flags) {
            Some(ev) => INPUT_ONLY_SECURE[ev as usize][self as usize],
            None => S::Close,
        }
    }

    /// Counted in ActiveConn (ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK); others in InActConn.
    #[inline]
    pub fn is_active(self) -> bool {
        matches!(self, S::Established | S::SynSent | S::SynRecv | S::SynAck)
    }

    /// Name as printed by `ipvsadm -L -c`.
    pub fn name(self) -> &'static str {
        match self {
            S::None => "NONE",
            S::Established => "ESTABLISHED",
            S::SynSent => "SYN_SENT",
            S::SynRecv => "SYN_RECV",
            S::FinWait => "FIN_WAIT",
            S::TimeWait => "TIME_WAIT",
            S::Close => "CLOSE",
            S::CloseWait => "CLOSE_WAIT",
            S::LastAck => "LAST_ACK",
            S::Listen => "LISTEN",
            S::SynAck => "SYNACK",
        }
    }
}

/// State name of an entry as the kernel reports it: templates "NONE"/"ASSURED", TCP state
/// names, "UDP", protocol 0 "NONE", anything else "ERR!".
pub fn state_name(proto: u8, flags: u8, state: u8) -> &'static str {
    if flags & F_TEMPLATE != 0 {
        return match state {
            TEMPLATE_STATE_NONE => "NONE",
            TEMPLATE_STATE_ASSURED => "ASSURED",
            _ => "ERR!",
        };
    }
    match proto {
        6 => TcpState::from_u8(state).map_or("ERR!", TcpState::name),
        17 if state == UDP_STATE => "UDP",
        0 => "NONE",
        _ => "ERR!",
    }
}

/// Idle timeouts (kernel defaults, IPVS reference §5.2). Seconds as built by `Default`; use
/// [`Timeouts::in_ticks`] for the values the fast path stores in [`Entry::timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Per TCP state, indexed by `TcpState as usize`.
    pub tcp: [u32; TCP_STATE_COUNT],
    /// UDP.
    pub udp: u32,
    /// Brand-new entry before its first state transition (3 s).
    pub new_conn: u32,
    /// Re-arm period of an expired template that still controls connections (60 s).
    pub template_control: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp: [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120],
            udp: 300,
            new_conn: 3,
            template_control: 60,
        }
    }
}

impl Timeouts {
    /// Timeout of TCP state `s`.
    #[inline]
    pub fn tcp_timeout(&self, s: TcpState) -> u32 {
        self.tcp[s as usize]
    }

    /// `ipvsadm --set tcp tcpfin udp`: ESTABLISHED, FIN_WAIT and UDP; 0 leaves a value alone.
    pub fn set_tcp_tcpfin_udp(&mut self, tcp: u32, tcpfin: u32, udp: u32) {
        if tcp != 0 {
            self.tcp[S::Established as usize] = tcp;
        }
        if tcpfin != 0 {
            self.tcp[S::FinWait as usize] = tcpfin;
        }
        if udp != 0 {
            self.udp = udp;
        }
    }

    /// The three values `ipvsadm -L --timeout` prints: (tcp, tcpfin, udp).
    pub fn tcp_tcpfin_udp(&self) -> (u32, u32, u32) {
        (
            self.tcp[S::Established as usize],
            self.tcp[S::FinWait as usize],
            self.udp,
        )
    }

    /// The same timeouts converted from seconds to ticks (saturating).
    pub fn in_ticks(&self, ticks_per_sec: u32) -> Timeouts {
        let c = |s: u32| timer::secs_to_ticks(s, ticks_per_sec);
        let mut tcp = self.tcp;
        for t in tcp.iter_mut() {
            *t = c(*t);
        }
        Timeouts {
            tcp,
            udp: c(self.udp),
            new_conn: c(self.new_conn),
            template_control: c(self.template_control),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const TPS: u32 = 16;

    fn table(capacity: usize, seed: u64) -> ConnTable {
        ConnTable::new(ConnTableConfig {
            capacity,
            wheel_slots: 256,
            ticks_per_sec: TPS,
            seed,
            now: 0,
        })
        .unwrap()
    }

    fn key(i: u32) -> ConnKey {
        ConnKey {
            proto: 6,
            caddr: 0x0a00_0000 | (i >> 4),
            cport: 1000 + (i & 15) as u16,
            vaddr: 0xc0a8_0001,
            vport: 80,
        }
    }

    fn init(server: u32, timeout: u32) -> ConnInit {
        ConnInit {
            server,
            state: 0,
            flags: F_INACTIVE,
            timeout,
        }
    }

    #[test]
    fn layout_is_compact() {
        println!(
            "size_of::<Entry>() = {} B, align {}; size_of::<ConnKey>() = {} B; bucket = {} B",
            core::mem::size_of::<Entry>(),
            core::mem::align_of::<Entry>(),
            core::mem::size_of::<ConnKey>(),
            core::mem::size_of::<Bucket>()
        );
        assert_eq!(core::mem::size_of::<Entry>(), 48);
        assert_eq!(core::mem::align_of::<Entry>(), 16);
        assert_eq!(core::mem::size_of::<ConnKey>(), 16);
        assert_eq!(core::mem::size_of::<Bucket>(), 64);
        let t = table(1 << 20, 1);
        println!(
            "1M-entry table: {:.2} B per entry including the index",
            t.bytes_per_entry()
        );
        assert!(t.bytes_per_entry() <= 64.0);
    }

    #[test]
    fn bucket_tag_match_is_exact() {
        let mut b = Bucket::EMPTY;
        let tags = [1u16, 0x8000, 0xFFFF, 0x7FFF, 0x0001, 0x0100, 0x8001, 0];
        for (j, &t) in tags.iter().enumerate() {
            b.set(j, t, j as u32);
        }
        for probe in [0u16, 1, 0x8000, 0xFFFF, 0x7FFF, 0x0100, 0x8001, 0x1234, 2] {
            let want: u32 = tags
                .iter()
                .enumerate()
                .filter(|(_, &t)| t == probe)
                .map(|(j, _)| 1 << j)
                .sum();
            assert_eq!(b.matches(probe), want, "probe {probe:#x}");
        }
    }

    /// The burst pipeline a worker runs: prefetch every bucket, take every candidate, then
    /// confirm each.
    fn pipelined(t: &ConnTable, keys: &[ConnKey]) -> Vec<Option<u32>> {
        let hashes: Vec<u64> = keys.iter().map(|k| t.hash(k)).collect();
        hashes.iter().for_each(|&h| t.prefetch_bucket(h));
        let cands: Vec<u32> = hashes.iter().map(|&h| t.candidate(h)).collect();
        keys.iter().zip(&hashes).zip(&cands).map(|((k, &h), &c)| t.lookup_hinted(k, h, c)).collect()
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t = table(100, 7);
        assert!(t.is_empty());
        let a = t.insert(key(1), init(3, 48), 0).unwrap();
        let b = t.insert(key(2), init(4, 48), 0).unwrap();
        assert_eq!(
            t.insert(key(1), init(5, 48), 0),
            Err(InsertError::Exists(a))
        );
        assert_eq!(t.lookup(&key(1)), Some(a));
        assert_eq!(t.lookup_hashed(&key(2), t.hash(&key(2))), Some(b));
        assert_eq!(t.lookup(&key(3)), None);
        let e = t.get(a).unwrap();
        assert_eq!(
            (e.server, *e.key(), e.expires(), e.control(), e.n_control()),
            (3, key(1), 48, NO_INDEX, 0)
        );
        t.get_mut(a).unwrap().state = 3;
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(a).unwrap().state, 3);
        assert_eq!(t.remove(a), Err(RemoveError::NotFound));
        assert_eq!(t.lookup(&key(1)), None);
        assert!(t.get(a).is_none());
        assert!(t.get(10_000).is_none());
        assert_eq!(t.len(), 1);
        assert_eq!(t.capacity(), 100);
    }

    #[test]
    fn full_table_refuses_but_resolves() {
        let mut t = table(20, 3);
        let idx: Vec<u32> = (0..20)
            .map(|i| t.insert(key(i), init(0, 100), 0).unwrap())
            .collect();
        assert_eq!(t.insert(key(99), init(0, 100), 0), Err(InsertError::Full));
        assert_eq!(
            t.insert(key(5), init(0, 100), 0),
            Err(InsertError::Exists(idx[5]))
        );
        for i in 0..20 {
            assert_eq!(t.lookup(&key(i)), Some(idx[i as usize]));
        }
        t.remove(idx[7]).unwrap();
        assert_eq!(t.insert(key(99), init(0, 100), 0), Ok(idx[7]));
    }

    #[test]
    fn config_errors() {
        let cfg = ConnTableConfig {
            capacity: 0,
            wheel_slots: 256,
            ticks_per_sec: 16,
            seed: 0,
            now: 0,
        };
        assert_eq!(
            ConnTable::new(cfg).unwrap_err(),
            TableConfigError::BadCapacity(0)
        );
        let cfg = ConnTableConfig {
            capacity: 4,
            wheel_slots: 100,
            ..cfg
        };
        assert!(matches!(
            ConnTable::new(cfg),
            Err(TableConfigError::Wheel(_))
        ));
    }

    #[test]
    fn touch_refreshes_and_state_change_shortens() {
        let to = Timeouts::default().in_ticks(TPS);
        let mut t = table(10, 0);
        let c = t.insert(key(1), init(0, to.new_conn), 0).unwrap();
        // SYN at t=1 -> SYN_RECV (60 s), ACK at t=2 -> ESTABLISHED (900 s).
        for (now, fl) in [(1, tcp_flags::SYN), (2, tcp_flags::ACK)] {
            t.get_mut(c).unwrap().apply_tcp(fl, &to);
            t.touch(c, now);
        }
        assert_eq!(t.get(c).unwrap().expires(), 2 + 900 * TPS);
        let mut gone = Vec::new();
        t.expire(1000, u32::MAX, |i, _| {
            gone.push(i);
            ExpireAction::Remove
        });
        assert!(gone.is_empty());
        // RST at 1000 -> CLOSE, 10 s: must expire at 1000 + 160, not at 14402.
        t.get_mut(c).unwrap().apply_tcp(tcp_flags::RST, &to);
        t.touch(c, 1000);
        for now in 1001..=1160 {
            t.expire(now, u32::MAX, |i, e| {
                gone.push(i);
                assert_eq!(now, e.expires());
                ExpireAction::Remove
            });
        }
        assert_eq!(gone, vec![c]);
        assert!(t.is_empty());
    }

    #[test]
    fn template_with_controlled_connections_rearms_for_60s() {
        let to = Timeouts::default().in_ticks(TPS);
        let mut t = table(10, 0);
        let tk = ConnKey { cport: 0, ..key(1) };
        let tmpl = t
            .insert(
                tk,
                ConnInit {
                    server: 2,
                    state: 0,
                    flags: F_TEMPLATE,
                    timeout: 360 * TPS,
                },
                0,
            )
            .unwrap();
        let c = t.insert(key(1), init(2, to.new_conn), 0).unwrap();
        assert!(t.set_control(c, tmpl));
        assert!(!t.set_control(c, tmpl), "already controlled");
        assert!(!t.set_control(c, c));
        t.get_mut(c).unwrap().apply_tcp(tcp_flags::SYN, &to);
        t.touch(c, 0);
        assert_eq!(t.get(tmpl).unwrap().n_control(), 1);
        assert_eq!(t.remove(tmpl), Err(RemoveError::Controls(1)));
        // Keep the connection alive past the template's 360 s with packets.
        let mut log = Vec::new();
        let mut now = 0;
        while now < 400 * TPS {
            now += 1;
            if now % (30 * TPS) == 0 {
                t.touch(c, now);
            }
            t.expire(now, u32::MAX, |i, e| {
                log.push((now, i, e.n_control()));
                if e.n_control() > 0 {
                    ExpireAction::Rearm(to.template_control)
                } else {
                    ExpireAction::Remove
                }
            });
        }
        assert_eq!(log, vec![(360 * TPS, tmpl, 1)]);
        assert_eq!(t.get(tmpl).unwrap().timeout, 60 * TPS);
        assert_eq!(t.get(tmpl).unwrap().expires(), 420 * TPS);
        // The connection goes idle (last touch at 390 s): at 420 s the template still controls
        // it and is re-armed again; the connection expires at 450 s (SYN_RECV, 60 s) leaving the
        // template alone; the template finally goes at 480 s.
        while now < 500 * TPS {
            now += 1;
            t.expire(now, u32::MAX, |i, e| {
                log.push((now, i, e.n_control()));
                if e.n_control() > 0 {
                    ExpireAction::Rearm(to.template_control)
                } else {
                    ExpireAction::Remove
                }
            });
        }
        assert_eq!(
            log[1..],
            [
                (420 * TPS, tmpl, 1),
                (450 * TPS, c, 0),
                (480 * TPS, tmpl, 0)
            ]
        );
        assert!(t.is_empty());
    }

    #[test]
    fn remove_request_for_controlling_entry_is_refused() {
        let mut t = table(10, 0);
        let tmpl = t
            .insert(ConnKey { cport: 0, ..key(1) }, init(0, 5), 0)
            .unwrap();
        let c = t.insert(key(1), init(0, 100), 0).unwrap();
        t.set_control(c, tmpl);
        let s = t.expire(5, 100, |_, _| ExpireAction::Remove);
        assert_eq!((s.removed, s.refused), (0, 1));
        assert_eq!(t.get(tmpl).unwrap().expires(), 10);
        t.remove(c).unwrap();
        assert_eq!(t.get(tmpl).unwrap().n_control(), 0);
        let s = t.expire(10, 100, |_, _| ExpireAction::Remove);
        assert_eq!(s.removed, 1);
    }

    #[test]
    fn invalidated_entry_is_unfindable_but_listed_until_it_expires() {
        let mut t = table(10, 0);
        let k = ConnKey { cport: 0, ..key(1) };
        let a = t.insert(k, init(0, 50), 0).unwrap();
        let shown = ConnKey { vport: 65535, ..k };
        assert!(t.invalidate(a, shown));
        assert!(!t.invalidate(a, shown));
        assert_eq!(t.lookup(&k), None);
        assert!(!t.get(a).unwrap().is_hashed());
        let b = t.insert(k, init(1, 50), 0).unwrap();
        assert_ne!(a, b);
        let listed: Vec<_> = t.iter().map(|(i, e)| (i, *e.key())).collect();
        assert_eq!(listed, vec![(a, shown), (b, k)]);
        let mut gone = Vec::new();
        t.expire(50, 100, |i, _| {
            gone.push(i);
            ExpireAction::Remove
        });
        gone.sort();
        assert_eq!(gone, vec![a.min(b), a.max(b)]);
        assert!(t.is_empty());
    }

    #[test]
    fn expire_now_goes_through_the_callback() {
        let mut t = table(10, 0);
        let a = t.insert(key(1), init(0, 900), 0).unwrap();
        t.expire_now(a, 3);
        let mut gone = Vec::new();
        t.expire(3, 100, |i, _| {
            gone.push(i);
            ExpireAction::Remove
        });
        assert_eq!(gone, vec![a]);
    }

    #[test]
    fn iter_from_resumes() {
        let mut t = table(10, 0);
        for i in 0..6 {
            t.insert(key(i), init(0, 10), 0).unwrap();
        }
        t.remove(2).unwrap();
        let all: Vec<u32> = t.iter().map(|(i, _)| i).collect();
        assert_eq!(all, vec![0, 1, 3, 4, 5]);
        let rest: Vec<u32> = t.iter_from(3).map(|(i, _)| i).collect();
        assert_eq!(rest, vec![3, 4, 5]);
    }

    #[test]
    fn pipelined_lookup_matches_scalar_even_with_stale_candidates() {
        let mut t = table(64, 99);
        for i in 0..60 {
            t.insert(key(i), init(0, 10), 0).unwrap();
        }
        for i in (0..60).step_by(7) {
            let idx = t.lookup(&key(i)).unwrap();
            t.remove(idx).unwrap();
        }
        let keys: Vec<ConnKey> = (0..90).map(key).collect();
        for (k, o) in keys.iter().zip(pipelined(&t, &keys)) {
            assert_eq!(o, t.lookup(k));
        }
        // Candidates taken before the table changed (earlier packets of the same burst
        // removed, invalidated or inserted entries) are only hints: the answer is still exact.
        let hashes: Vec<u64> = keys.iter().map(|k| t.hash(k)).collect();
        let cands: Vec<u32> = hashes.iter().map(|&h| t.candidate(h)).collect();
        for i in (1..60).step_by(5) {
            if let Some(idx) = t.lookup(&key(i)) {
                t.remove(idx).unwrap();
            }
        }
        if let Some(idx) = t.lookup(&key(2)) {
            t.invalidate(idx, ConnKey { vport: 65535, ..key(2) });
        }
        for i in 60..64 {
            t.insert(key(i), init(0, 10), 0).unwrap();
        }
        for ((k, &h), &c) in keys.iter().zip(&hashes).zip(&cands) {
            assert_eq!(t.lookup_hinted(k, h, c), t.lookup(k), "{k:?}");
        }
    }

    // --- TCP state machine -------------------------------------------------------------------

    #[test]
    #[rustfmt::skip]
    fn input_only_table_cell_by_cell() {
        use TcpState::*;
        let cols = [None, Established, SynSent, SynRecv, FinWait, TimeWait, Close, CloseWait, LastAck, Listen, SynAck];
        let rows: [(u8, [TcpState; 11]); 4] = [
            (tcp_flags::SYN, [SynRecv, Established, Established, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv]),
            (tcp_flags::FIN, [Close, FinWait, SynSent, TimeWait, FinWait, TimeWait, Close, CloseWait, LastAck, Listen, TimeWait]),
            (tcp_flags::ACK, [Established, Established, SynSent, Established, FinWait, TimeWait, Close, CloseWait, Close, Listen, Established]),
            (tcp_flags::RST, [Close, Close, Close, SynRecv, Close, Close, Close, Close, LastAck, Listen, Close]),
        ];
        for (flag, want) in rows {
            for (c, w) in cols.iter().zip(want) {
                assert_eq!(c.next(flag), w, "{} on {:?}", flag, c);
            }
        }
        for c in cols {
            // No SYN/FIN/ACK/RST (e.g. PSH or URG alone) -> CLOSE.
            assert_eq!(c.next(0), Close);
            assert_eq!(c.next(0x08 | 0x20), Close);
            // Priority RST > SYN > FIN > ACK.
            let all = tcp_flags::RST | tcp_flags::SYN | tcp_flags::FIN | tcp_flags::ACK;
            assert_eq!(c.next(all), c.next(tcp_flags::RST));
            assert_eq!(c.next(tcp_flags::SYN | tcp_flags::FIN | tcp_flags::ACK), c.next(tcp_flags::SYN));
            assert_eq!(c.next(tcp_flags::FIN | tcp_flags::ACK | 0x08), c.next(tcp_flags::FIN));
            assert_eq!(c.next(tcp_flags::ACK | 0x08), c.next(tcp_flags::ACK));
        }
        assert_eq!(TcpState::ALL, cols);
        for (i, s) in cols.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(TcpState::from_u8(i as u8), Some(*s));
        }
        assert_eq!(TcpState::from_u8(11), Option::None);
    }

    #[test]
    fn secure_tcp_table_differs_only_in_syn_leading_to_synack() {
        use TcpState::*;
        // Kernel tcp_states_dos, INPUT-ONLY, SYN row.
        let syn = [SynAck, Established, Established, SynRecv, SynAck, SynAck, SynAck, SynAck, SynAck, SynAck, SynAck];
        for (c, w) in TcpState::ALL.iter().zip(syn) {
            assert_eq!(c.next_secure(tcp_flags::SYN), w, "SYN on {c:?}");
        }
        for f in [tcp_flags::FIN, tcp_flags::ACK, tcp_flags::RST, 0, tcp_flags::ACK | tcp_flags::FIN] {
            for c in TcpState::ALL {
                assert_eq!(c.next_secure(f), c.next(f), "{f:#x} on {c:?}");
            }
        }
        // A handshake under secure_tcp: SYN -> SYNACK (active, 120 s), ACK -> ESTABLISHED.
        let t = Timeouts::default();
        let mut e = Entry { state: None as u8, flags: F_INACTIVE, ..Entry::FREE };
        let tr = e.apply_tcp_with(tcp_flags::SYN, &t, true);
        assert_eq!((e.state, e.timeout, tr.counter), (SynAck as u8, 120, CounterMove::ToActive));
        let tr = e.apply_tcp_with(tcp_flags::ACK, &t, true);
        assert_eq!((e.state, tr.established), (Established as u8, true));
    }

    #[test]
    fn active_states_and_names() {
        let active: Vec<&str> = TcpState::ALL
            .iter()
            .filter(|s| s.is_active())
            .map(|s| s.name())
            .collect();
        assert_eq!(active, ["ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"]);
        let names: Vec<&str> = TcpState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "NONE",
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "SYNACK"
            ]
        );
        assert_eq!(state_name(6, 0, 1), "ESTABLISHED");
        assert_eq!(state_name(6, 0, 42), "ERR!");
        assert_eq!(state_name(17, F_INACTIVE, UDP_STATE), "UDP");
        assert_eq!(state_name(6, F_TEMPLATE, TEMPLATE_STATE_NONE), "NONE");
        assert_eq!(state_name(0, F_TEMPLATE, TEMPLATE_STATE_ASSURED), "ASSURED");
        assert_eq!(state_name(0, 0, 0), "NONE");
    }

    #[test]
    fn apply_tcp_moves_counters_like_set_tcp_state() {
        let to = Timeouts::default();
        let mut e = Entry::FREE;
        e.flags = F_INACTIVE;
        let step = |e: &mut Entry, f: u8| e.apply_tcp(f, &to);
        let t = step(&mut e, tcp_flags::SYN);
        assert_eq!(
            (t.counter, t.established, e.state, e.timeout),
            (CounterMove::ToActive, false, 3, 60)
        );
        let t = step(&mut e, tcp_flags::RST); // RST in SYN_RECV keeps SYN_RECV
        assert_eq!((t.counter, e.state), (CounterMove::None, 3));
        let t = step(&mut e, tcp_flags::ACK);
        assert_eq!(
            (t.counter, t.established, e.timeout),
            (CounterMove::None, true, 900)
        );
        let t = step(&mut e, tcp_flags::ACK);
        assert_eq!((t.counter, t.established), (CounterMove::None, false));
        let t = step(&mut e, tcp_flags::FIN | tcp_flags::ACK);
        assert_eq!(
            (t.counter, e.state, e.timeout, e.flags & F_INACTIVE),
            (CounterMove::ToInactive, 4, 120, F_INACTIVE)
        );
        let t = step(&mut e, tcp_flags::SYN); // port reuse: FIN_WAIT -> SYN_RECV
        assert_eq!((t.counter, e.state), (CounterMove::ToActive, 3));
        let mut u = Entry::FREE;
        u.apply_udp(&to);
        assert_eq!((u.state, u.timeout), (UDP_STATE, 300));
    }

    #[test]
    fn timeouts_defaults_and_set() {
        let mut t = Timeouts::default();
        assert_eq!(t.tcp_tcpfin_udp(), (900, 120, 300));
        assert_eq!(t.tcp_timeout(TcpState::None), 2);
        assert_eq!(t.tcp_timeout(TcpState::SynRecv), 60);
        assert_eq!(t.tcp_timeout(TcpState::Close), 10);
        assert_eq!(t.tcp_timeout(TcpState::LastAck), 30);
        assert_eq!(t.tcp_timeout(TcpState::SynAck), 120);
        t.set_tcp_tcpfin_udp(3600, 0, 10);
        assert_eq!(t.tcp_tcpfin_udp(), (3600, 120, 10));
        let k = t.in_ticks(16);
        assert_eq!(
            (k.tcp[1], k.udp, k.new_conn, k.template_control),
            (57_600, 160, 48, 960)
        );
    }

    // --- model-based property test -----------------------------------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u32),
        Remove(u32),
        Touch(u32, u32),
        Lookup(u32),
        Advance(u32, u32, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u32..64, 1u32..300).prop_map(|(k, t)| Op::Insert(k, t)),
            2 => (0u32..64).prop_map(Op::Remove),
            2 => (0u32..64, 1u32..300).prop_map(|(k, t)| Op::Touch(k, t)),
            2 => (0u32..64).prop_map(Op::Lookup),
            2 => (1u32..100, 1u32..64, any::<bool>()).prop_map(|(d, b, r)| Op::Advance(d, b, r)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn matches_hashmap_model(
            cap in 1usize..40,
            seed in any::<u64>(),
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let mut t = ConnTable::new(ConnTableConfig {
                capacity: cap, wheel_slots: 64, ticks_per_sec: 1, seed, now: 0,
            }).unwrap();
            // key -> (idx, expires, timeout)
            let mut m: HashMap<ConnKey, (u32, u32, u32)> = HashMap::new();
            let mut now = 0u32;
            for o in ops {
                match o {
                    Op::Insert(k, to) => {
                        let r = t.insert(key(k), init(k, to), now);
                        match m.get(&key(k)) {
                            Some(&(i, _, _)) => prop_assert_eq!(r, Err(InsertError::Exists(i))),
                            None if m.len() == cap => prop_assert_eq!(r, Err(InsertError::Full)),
                            None => {
                                let i = r.unwrap();
                                prop_assert!(m.values().all(|v| v.0 != i));
                                m.insert(key(k), (i, now + to, to));
                            }
                        }
                    }
                    Op::Remove(k) => {
                        if let Some((i, _, _)) = m.remove(&key(k)) {
                            let e = t.remove(i).unwrap();
                            prop_assert_eq!(*e.key(), key(k));
                        }
                    }
                    Op::Touch(k, to) => {
                        if let Some(v) = m.get_mut(&key(k)) {
                            t.set_timeout(v.0, to, now);
                            *v = (v.0, now + to, to);
                        }
                    }
                    Op::Lookup(k) => {
                        prop_assert_eq!(t.lookup(&key(k)), m.get(&key(k)).map(|v| v.0));
                    }
                    Op::Advance(d, budget, rearm) => {
                        now += d;
                        loop {
                            let mut fired = Vec::new();
                            let s = t.expire(now, budget, |i, e| {
                                fired.push((i, *e.key(), e.expires(), e.server));
                                if rearm && e.server % 2 == 0 {
                                    ExpireAction::Rearm(e.timeout)
                                } else {
                                    ExpireAction::Remove
                                }
                            });
                            for (i, k, ex, server) in fired {
                                let v = m.get(&k).copied();
                                prop_assert_eq!(v.map(|v| (v.0, v.1)), Some((i, ex)));
                                prop_assert!(ex <= now, "expired early");
                                let v = v.unwrap();
                                if rearm && server % 2 == 0 {
                                    m.insert(k, (i, now + v.2.max(1), v.2));
                                } else {
                                    m.remove(&k);
                                }
                            }
                            if s.caught_up { break; }
                        }
                        // Nothing due is left behind.
                        prop_assert!(m.values().all(|v| v.1 > now));
                    }
                }
                prop_assert_eq!(t.len(), m.len());
                for (k, v) in &m {
                    prop_assert_eq!(t.lookup(k), Some(v.0));
                    prop_assert_eq!(t.get(v.0).map(|e| e.expires()), Some(v.1));
                }
                prop_assert_eq!(t.wheel().len() as usize, m.len());
            }
            // Batch lookup agrees with the model on every key.
            let keys: Vec<ConnKey> = (0..64).map(key).collect();
            for (k, o) in keys.iter().zip(pipelined(&t, &keys)) {
                prop_assert_eq!(o, m.get(k).map(|v| v.0));
            }
        }
    }
}
