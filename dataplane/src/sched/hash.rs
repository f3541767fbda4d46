//! Hashing schedulers: sh (source hashing), dh (destination hashing) and mh (Maglev hashing),
//! with the kernel's tables and hash functions (IPVS reference §4; `ip_vs_sh.c`, `ip_vs_dh.c`,
//! `ip_vs_mh.c`, `lib/siphash.c`).
//!
//! All three keep a lookup table of **indices into the destination list as of the last
//! [`update`](Sh::update)**. The table is rebuilt from the whole list on every update (the
//! kernel rebuilds it on every add, remove and edit), so `schedule` can return a table entry
//! as-is as long as it is given the same list. A scheduler that never saw `update` builds its
//! table from the first list passed to `schedule` (the kernel's `init_service`; for mh that
//! first call allocates — use [`Scheduler::with_dests`](super::Scheduler::with_dests)).
//! `schedule` never allocates and never panics; an entry that is out of range for the list it
//! is given (a caller that skipped `update`) counts as an empty bucket.
//!
//! # sh and dh
//!
//! 256 buckets (`CONFIG_IP_VS_SH_TAB_BITS` = `CONFIG_IP_VS_DH_TAB_BITS` = 8). Filling walks the
//! list cyclically from its head: sh gives each destination `weight` consecutive buckets
//! (weight 0 or 1 → one bucket), dh gives each exactly one (weights ignored). Destinations that
//! do not fit in 256 buckets get none. Weight-0 and overloaded destinations keep their buckets;
//! availability is checked at lookup.
//!
//! Lookup bucket: sh `hash_32(port + caddr, 8)` (`port` = client port with `sh-port`, else 0;
//! a wrapping 32-bit sum), dh `hash_32(vaddr, 8)`, with
//! `hash_32(x, b) = (x·0x61C88647 mod 2³²) >> (32 − b)` ([`hash_32`]). The bucket's destination
//! must have weight > 0 and not be overloaded; otherwise dh fails, and sh fails unless
//! `sh-fallback`, which probes buckets `(2h + k) mod 256` for k = 0, 1, …, 255 and takes the
//! first usable one. (The kernel's quirk: `ip_vs_sh_hashkey(.., roffset)` adds
//! `roffset = (k + h) mod 256` to the hash `h` once more, so probing starts at 2h, not h + 1.)
//!
//! # mh (Maglev)
//!
//! Lookup table of M = 4093 slots ([`MH_TAB_SIZE`], `CONFIG_IP_VS_MH_TAB_INDEX` 12). Hashes are
//! the kernel's `hsiphash` on 64-bit hosts — SipHash-1-3 with two 64-bit key words, truncated to
//! 32 bits ([`hsiphash_u32`]) — over the 4 bytes of a 32-bit value as laid out in memory on a
//! little-endian host (x86-64, arm64), with fixed keys [`MH_KEY1`] and [`MH_KEY2`].
//!
//! * Per destination, `v = port + addr` (its [`DestSet::addr_port`], host order, wrapping):
//!   `offset = H1(v) mod M`, `skip = H2(v) mod (M − 1) + 1`; its preference list is
//!   offset, offset + skip, … (mod M).
//! * Weights are `last_weight`s. `g` = gcd of the positive ones (none → the table is empty and
//!   every lookup fails), `rshift = max(0, bitlen(max / g) − 6)`, and a destination's `turns` =
//!   `(last_weight / g) >> rshift`, or 1 when that is 0 but `last_weight ≠ 0`.
//! * Population: rounds over the list in order; in a round each destination with turns ≥ 1
//!   claims `turns` successive free slots of its preference list; stop once all M are taken.
//! * Lookup slot `h = H1(port + caddr) mod M` (`port` = client port with `mh-port`, else 0).
//!   The slot's destination must have weight > 0 and not be overloaded; otherwise fail, unless
//!   `mh-fallback`: for k = 0..M−1, slot `H1((h + k) mod M + port + caddr) mod M` (unlike sh,
//!   the probe offset is hashed together with the address), an empty slot ends the search, the
//!   first usable destination wins.
//!
//! **`last_weight`.** The kernel keeps, per destination, its last non-zero weight
//! (`__ip_vs_update_dest`: set on every add — even to 0 — and on every edit to a non-zero
//! weight). [`Mh`] keeps it itself, keyed by server id, across `update` calls: a server that
//! was not in the previous list (or whose address/port changed) takes its current weight; a
//! server still present takes its current weight unless that is 0, in which case it keeps its
//! previous `last_weight`. So a server set to weight 0 keeps its slots (its clients fail, or
//! fall back, while everybody else stays where they were); a server *added* with weight 0 gets
//! no slots. Limits of keeping it here: a freshly created `Mh` ([`Mh::new`], `with_dests`)
//! only knows current weights, so a weight-0 server gets no slots where the kernel might still
//! remember an older weight (use [`Scheduler::set_flags`](super::Scheduler::set_flags) rather
//! than a new scheduler when only the `-b` flags change); a server removed and re-added within
//! one update is seen as kept, and one added and then edited within one update as added with
//! its final weight.
//!
//! More than M destinations: the kernel refuses to rebuild (`-EINVAL`, ignored by add/del) and
//! keeps the previous table; so does [`Mh`], with the slots of removed servers emptied and the
//! others re-pointed at their new positions.
//!
//! IPv6 (not used by this director) would fold the address as the XOR of its four 32-bit words.

use std::collections::HashMap;
use std::fmt;

use super::{usable, DestSet, SchedInput, SCHED_FLAG_1, SCHED_FLAG_2};

/// Bits of the sh/dh tables (`CONFIG_IP_VS_SH_TAB_BITS`, `CONFIG_IP_VS_DH_TAB_BITS`).
pub const HASH_TAB_BITS: u32 = 8;
/// Buckets of the sh/dh tables.
pub const HASH_TAB_SIZE: usize = 1 << HASH_TAB_BITS;
/// The kernel's `GOLDEN_RATIO_32` (multiplier of `hash_32`).
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;
/// Maglev lookup table size (`primes[CONFIG_IP_VS_MH_TAB_INDEX − 8]` = 4093).
pub const MH_TAB_SIZE: usize = 4093;
/// `IP_VS_MH_TAB_BITS` (= `CONFIG_IP_VS_MH_TAB_INDEX / 2`): weights / gcd are shifted down to
/// at most this many bits.
pub const MH_WEIGHT_BITS: u32 = 6;
/// Key of the mh offset hash and of the lookup hash (`hsiphash_key_t` {2654435761, 2654435761}).
pub const MH_KEY1: [u64; 2] = [2_654_435_761, 2_654_435_761];
/// Key of the mh skip hash.
pub const MH_KEY2: [u64; 2] = [2_654_446_892, 2_654_446_892];

const MH_M: u32 = MH_TAB_SIZE as u32;
/// An empty table entry.
const EMPTY: u16 = u16::MAX;

/// The kernel's `hash_32(val, bits)`: `(val·0x61C88647 mod 2³²) >> (32 − bits)` (0 for
/// `bits` = 0 or > 32).
#[inline]
pub fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(GOLDEN_RATIO_32)
        .checked_shr(32u32.wrapping_sub(bits))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// SipHash

/// "somepseudorandomlygeneratedbytes".
const SIP_IV: [u64; 4] = [
    0x736f_6d65_7073_6575,
    0x646f_7261_6e64_6f6d,
    0x6c79_6765_6e65_7261,
    0x7465_6462_7974_6573,
];

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

#[inline(always)]
fn sip_init(key: [u64; 2]) -> [u64; 4] {
    [
        key[0] ^ SIP_IV[0],
        key[1] ^ SIP_IV[1],
        key[0] ^ SIP_IV[2],
        key[1] ^ SIP_IV[3],
    ]
}

#[inline(always)]
fn sip_compress<const C: usize>(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    for _ in 0..C {
        sip_round(v);
    }
    v[0] ^= m;
}

#[inline(always)]
fn sip_finish<const C: usize, const D: usize>(mut v: [u64; 4], last: u64) -> u64 {
    sip_compress::<C>(&mut v, last);
    v[2] ^= 0xff;
    for _ in 0..D {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Little-endian value of up to 8 bytes.
#[inline]
fn le_u64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// SipHash-C-D of `msg` under the key `(k0, k1)` (64-bit output). `siphash::<2, 4>` is the
/// standard SipHash (the kernel's `siphash`), `siphash::<1, 3>` truncated to 32 bits is the
/// kernel's `hsiphash` on 64-bit hosts.
pub fn siphash<const C: usize, const D: usize>(key: [u64; 2], msg: &[u8]) -> u64 {
    let mut v = sip_init(key);
    let mut blocks = msg.chunks_exact(8);
    for block in &mut blocks {
        sip_compress::<C>(&mut v, le_u64(block));
    }
    let last = ((msg.len() as u64) << 56) | le_u64(blocks.remainder());
    sip_finish::<C, D>(v, last)
}

/// The kernel's `hsiphash(&value, 4, key)` / `hsiphash_1u32(value, key)` on a 64-bit
/// little-endian host: SipHash-1-3 of the 4 bytes of `value`, truncated to 32 bits.
#[inline]
pub fn hsiphash_u32(key: [u64; 2], value: u32) -> u32 {
    sip_finish::<1, 3>(sip_init(key), (4u64 << 56) | u64::from(value)) as u32
}

// ---------------------------------------------------------------------------------------------
// tables

/// Table entry `slot` as a destination index valid in `d` (`None` for an empty entry).
#[inline]
fn entry<D: DestSet + ?Sized>(table: &[u16], slot: usize, d: &D) -> Option<usize> {
    let e = *table.get(slot)?;
    let i = usize::from(e);
    (e != EMPTY && i < d.len()).then_some(i)
}

/// Destination index `i` as a table entry (indices ≥ 65535 cannot be stored: empty).
#[inline]
fn to_entry(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(EMPTY)
}

fn raw(table: &[u16], slot: usize) -> Option<usize> {
    table
        .get(slot)
        .filter(|&&e| e != EMPTY)
        .map(|&e| usize::from(e))
}

// ---------------------------------------------------------------------------------------------
// sh

/// Source-hashing state (kernel `ip_vs_sh_state`): 256 buckets of destination indices.
#[derive(Clone, PartialEq, Eq)]
pub struct Sh {
    buckets: Box<[u16; HASH_TAB_SIZE]>,
    flags: u32,
    ready: bool,
}

impl fmt::Debug for Sh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sh")
            .field("flags", &self.flags)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl Sh {
    /// An empty table; `flags`: [`SCHED_FLAG_1`] = `sh-fallback`, [`SCHED_FLAG_2`] = `sh-port`.
    pub fn new(flags: u32) -> Sh {
        Sh {
            buckets: Box::new([EMPTY; HASH_TAB_SIZE]),
            flags,
            ready: false,
        }
    }

    /// Changes the `-b` flags (they are read at each lookup, as in the kernel).
    pub fn set_flags(&mut self, flags: u32) {
        self.flags = flags;
    }

    /// Kernel `ip_vs_sh_reassign`: walk the list cyclically, each destination taking `weight`
    /// consecutive buckets (at least one).
    pub fn update<N: DestSet + ?Sized>(&mut self, d: &N) {
        self.ready = true;
        let n = d.len();
        if n == 0 {
            self.buckets.fill(EMPTY);
            return;
        }
        let mut p = 0;
        let mut count = 0u64;
        for b in self.buckets.iter_mut() {
            *b = to_entry(p);
            count += 1;
            if count >= u64::from(d.weight(p)) {
                p = (p + 1) % n;
                count = 0;
            }
        }
    }

    /// The bucket `input` hashes to: `hash_32(port + caddr, 8)`.
    #[inline]
    pub fn bucket_of(&self, input: &SchedInput) -> usize {
        let port = if self.flags & SCHED_FLAG_2 != 0 {
            input.cport
        } else {
            0
        };
        hash_32(u32::from(port).wrapping_add(input.caddr), HASH_TAB_BITS) as usize
    }

    /// Destination index in bucket `b` (as of the last update).
    pub fn bucket(&self, b: usize) -> Option<usize> {
        raw(&self.buckets[..], b)
    }

    /// Kernel `ip_vs_sh_get` / `ip_vs_sh_get_fallback`.
    #[inline]
    pub fn schedule<D: DestSet + ?Sized>(&mut self, d: &D, input: &SchedInput) -> Option<usize> {
        if !self.ready {
            self.update(d);
        }
        let h = self.bucket_of(input);
        let table = &self.buckets[..];
        let first = entry(table, h, d)?;
        if usable(d, first) {
            return Some(first);
        }
        if self.flags & SCHED_FLAG_1 == 0 {
            return None;
        }
        for k in 0..HASH_TAB_SIZE {
            let i = entry(table, (2 * h + k) % HASH_TAB_SIZE, d)?;
            if usable(d, i) {
                return Some(i);
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// dh

/// Destination-hashing state (kernel `ip_vs_dh_bucket[]`): 256 buckets of destination indices.
#[derive(Clone, PartialEq, Eq)]
pub struct Dh {
    buckets: Box<[u16; HASH_TAB_SIZE]>,
    ready: bool,
}

impl fmt::Debug for Dh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dh")
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl Default for Dh {
    fn default() -> Dh {
        Dh::new()
    }
}

impl Dh {
    /// An empty table (dh has no flags).
    pub fn new() -> Dh {
        Dh {
            buckets: Box::new([EMPTY; HASH_TAB_SIZE]),
            ready: false,
        }
    }

    /// Kernel `ip_vs_dh_reassign`: bucket `b` gets destination `b mod n`.
    pub fn update<N: DestSet + ?Sized>(&mut self, d: &N) {
        self.ready = true;
        let n = d.len();
        for (b, e) in self.buckets.iter_mut().enumerate() {
            *e = if n == 0 { EMPTY } else { to_entry(b % n) };
        }
    }

    /// The bucket `input` hashes to: `hash_32(vaddr, 8)`.
    #[inline]
    pub fn bucket_of(&self, input: &SchedInput) -> usize {
        hash_32(input.vaddr, HASH_TAB_BITS) as usize
    }

    /// Destination index in bucket `b` (as of the last update).
    pub fn bucket(&self, b: usize) -> Option<usize> {
        raw(&self.buckets[..], b)
    }

    /// Kernel `ip_vs_dh_schedule`: the bucket's destination if it has weight > 0 and is not
    /// overloaded, else none (there is no fallback).
    #[inline]
    pub fn schedule<D: DestSet + ?Sized>(&mut self, d: &D, input: &SchedInput) -> Option<usize> {
        if !self.ready {
            self.update(d);
        }
        let i = entry(&self.buckets[..], self.bucket_of(input), d)?;
        usable(d, i).then_some(i)
    }
}

// ---------------------------------------------------------------------------------------------
// mh

/// What mh remembers of a destination between updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MhDest {
    id: u32,
    addr: u32,
    port: u16,
    last_weight: u32,
}

/// Maglev-hashing state (kernel `ip_vs_mh_state` plus each destination's `last_weight`).
#[derive(Clone, PartialEq, Eq)]
pub struct Mh {
    /// [`MH_TAB_SIZE`] destination indices.
    lookup: Box<[u16]>,
    flags: u32,
    ready: bool,
    /// The list at the last update, in order, with last weights.
    dests: Vec<MhDest>,
    gcd: u32,
    rshift: u32,
}

impl fmt::Debug for Mh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mh")
            .field("flags", &self.flags)
            .field("ready", &self.ready)
            .field("dests", &self.dests)
            .field("gcd", &self.gcd)
            .field("rshift", &self.rshift)
            .finish_non_exhaustive()
    }
}

fn gcd32(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Mh {
    /// An empty table; `flags`: [`SCHED_FLAG_1`] = `mh-fallback`, [`SCHED_FLAG_2`] = `mh-port`.
    pub fn new(flags: u32) -> Mh {
        Mh {
            lookup: vec![EMPTY; MH_TAB_SIZE].into_boxed_slice(),
            flags,
            ready: false,
            dests: Vec::new(),
            gcd: 0,
            rshift: 0,
        }
    }

    /// Changes the `-b` flags (they are read at each lookup, as in the kernel).
    pub fn set_flags(&mut self, flags: u32) {
        self.flags = flags;
    }

    /// Kernel `ip_vs_mh_dest_changed`: update the last weights (see the module doc), recompute
    /// gcd and shift, and repopulate the table (skipped when nothing it depends on changed).
    pub fn update<N: DestSet + ?Sized>(&mut self, d: &N) {
        let prev: HashMap<u32, usize> = self
            .dests
            .iter()
            .enumerate()
            .map(|(j, x)| (x.id, j))
            .collect();
        let mut dests = Vec::with_capacity(d.len());
        for i in 0..d.len() {
            let id = d.id(i);
            let (addr, port) = d.addr_port(i);
            let weight = d.weight(i);
            let old = prev.get(&id).and_then(|&j| self.dests.get(j));
            let last_weight = match old {
                Some(o) if weight == 0 && o.addr == addr && o.port == port => o.last_weight,
                _ => weight,
            };
            dests.push(MhDest {
                id,
                addr,
                port,
                last_weight,
            });
        }
        if self.ready && dests == self.dests {
            return;
        }
        self.ready = true;
        self.gcd = dests.iter().filter(|x| x.last_weight > 0).fold(0, |g, x| {
            if g > 0 {
                gcd32(x.last_weight, g)
            } else {
                x.last_weight
            }
        });
        // gcd 0 (no positive weight): shift 0.
        self.rshift = dests
            .iter()
            .map(|x| x.last_weight)
            .max()
            .and_then(|max| max.checked_div(self.gcd))
            .map_or(0, |mw| {
                (u32::BITS - mw.leading_zeros()).saturating_sub(MH_WEIGHT_BITS)
            });
        if dests.len() > MH_TAB_SIZE {
            // ip_vs_mh_reassign: -EINVAL, the previous table stays.
            let now: HashMap<u32, usize> =
                dests.iter().enumerate().map(|(i, x)| (x.id, i)).collect();
            for e in self.lookup.iter_mut().filter(|e| **e != EMPTY) {
                *e = self
                    .dests
                    .get(usize::from(*e))
                    .and_then(|o| now.get(&o.id))
                    .map_or(EMPTY, |&i| to_entry(i));
            }
        } else {
            populate(&mut self.lookup, &dests, self.gcd, self.rshift);
        }
        self.dests = dests;
    }

    #[inline]
    fn key(&self, input: &SchedInput) -> u32 {
        let port = if self.flags & SCHED_FLAG_2 != 0 {
            input.cport
        } else {
            0
        };
        u32::from(port).wrapping_add(input.caddr)
    }

    /// The slot `input` hashes to: `H1(port + caddr) mod M`.
    #[inline]
    pub fn slot_of(&self, input: &SchedInput) -> usize {
        (hsiphash_u32(MH_KEY1, self.key(input)) % MH_M) as usize
    }

    /// Destination index in slot `s` (as of the last update).
    pub fn slot(&self, s: usize) -> Option<usize> {
        raw(&self.lookup, s)
    }

    /// The `last_weight` kept for server `id` (if it was in the last update's list).
    pub fn last_weight(&self, id: u32) -> Option<u32> {
        self.dests
            .iter()
            .find(|x| x.id == id)
            .map(|x| x.last_weight)
    }

    /// (gcd, rshift) of the last weights, for tests and diagnostics.
    pub fn weight_scale(&self) -> (u32, u32) {
        (self.gcd, self.rshift)
    }

    /// Kernel `ip_vs_mh_get` / `ip_vs_mh_get_fallback`.
    #[inline]
    pub fn schedule<D: DestSet + ?Sized>(&mut self, d: &D, input: &SchedInput) -> Option<usize> {
        if !self.ready {
            self.update(d);
        }
        let base = self.key(input);
        let ihash = hsiphash_u32(MH_KEY1, base) % MH_M;
        let first = entry(&self.lookup, ihash as usize, d)?;
        if usable(d, first) {
            return Some(first);
        }
        if self.flags & SCHED_FLAG_1 == 0 {
            return None;
        }
        // Shortcut with the same result: with no usable destination every probe fails.
        if !(0..d.len()).any(|i| usable(d, i)) {
            return None;
        }
        for k in 0..MH_M {
            let roffset = (k + ihash) % MH_M;
            let slot = hsiphash_u32(MH_KEY1, roffset.wrapping_add(base)) % MH_M;
            let i = entry(&self.lookup, slot as usize, d)?;
            if usable(d, i) {
                return Some(i);
            }
        }
        None
    }
}

/// Kernel `ip_vs_mh_permutate` + `ip_vs_mh_populate` (`lookup` has [`MH_TAB_SIZE`] entries).
fn populate(lookup: &mut [u16], dests: &[MhDest], gcd: u32, rshift: u32) {
    struct Setup {
        skip: u32,
        perm: u32,
        turns: u32,
    }
    lookup.fill(EMPTY);
    if gcd == 0 || lookup.len() != MH_TAB_SIZE {
        return;
    }
    let mut setup: Vec<Setup> = dests
        .iter()
        .map(|x| {
            let v = u32::from(x.port).wrapping_add(x.addr);
            let t = (x.last_weight / gcd) >> rshift;
            Setup {
                skip: hsiphash_u32(MH_KEY2, v) % (MH_M - 1) + 1,
                perm: hsiphash_u32(MH_KEY1, v) % MH_M,
                turns: if t != 0 {
                    t
                } else {
                    u32::from(x.last_weight != 0)
                },
            }
        })
        .collect();
    let mut taken = [0u64; MH_TAB_SIZE.div_ceil(64)];
    let mut filled = 0;
    // gcd > 0: some destination has turns ≥ 1, so every round claims at least one slot; and a
    // preference list (M prime, 0 < skip < M) visits every slot, so a free one is found.
    loop {
        for (i, s) in setup.iter_mut().enumerate() {
            for _ in 0..s.turns {
                let mut c = s.perm as usize;
                while taken[c / 64] >> (c % 64) & 1 != 0 {
                    s.perm += s.skip;
                    if s.perm >= MH_M {
                        s.perm -= MH_M;
                    }
                    c = s.perm as usize;
                }
                taken[c / 64] |= 1 << (c % 64);
                lookup[c] = to_entry(i);
                filled += 1;
                if filled == MH_TAB_SIZE {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::{DestInfo, Scheduler};
    use proptest::prelude::*;

    const FALLBACK: u32 = SCHED_FLAG_1;
    const PORT: u32 = SCHED_FLAG_2;

    /// Server `id` at 10.0.0.id:80.
    fn d(id: u32, weight: u32) -> DestInfo {
        DestInfo {
            id,
            weight,
            addr: 0x0a00_0000 + id,
            port: 80,
            ..Default::default()
        }
    }

    fn list(ws: &[u32]) -> Vec<DestInfo> {
        ws.iter()
            .enumerate()
            .map(|(i, &w)| d(i as u32 + 1, w))
            .collect()
    }

    fn client(caddr: u32, cport: u16) -> SchedInput {
        SchedInput {
            caddr,
            cport,
            vaddr: 0xc0a8_0001,
        }
    }

    fn sh_table(s: &Sh) -> Vec<Option<usize>> {
        (0..HASH_TAB_SIZE).map(|b| s.bucket(b)).collect()
    }

    fn mh_table(m: &Mh) -> Vec<Option<usize>> {
        (0..MH_TAB_SIZE).map(|s| m.slot(s)).collect()
    }

    /// The table as server ids.
    fn mh_ids(m: &Mh, ds: &[DestInfo]) -> Vec<Option<u32>> {
        (0..MH_TAB_SIZE)
            .map(|s| m.slot(s).map(|i| ds[i].id))
            .collect()
    }

    fn counts(t: &[Option<usize>], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for i in t.iter().flatten() {
            c[*i] += 1;
        }
        c
    }

    fn mh(ds: &[DestInfo], flags: u32) -> Mh {
        let mut m = Mh::new(flags);
        m.update(ds);
        m
    }

    // --- hash functions ----------------------------------------------------------------------

    #[test]
    fn hash_32_values() {
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0x0a00_0001, 8), 39);
        assert_eq!(hash_32(0xc0a8_0001, 8), 192);
        assert_eq!(hash_32(0xc0a8_0001 + 80, 8), 79);
        assert_eq!(hash_32(1, 32), GOLDEN_RATIO_32);
        assert_eq!(hash_32(1, 0), 0);
        assert_eq!(hash_32(1, 33), 0);
    }

    const KEY_00_0F: [u64; 2] = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];

    /// SipHash-2-4 reference vectors (veorq/SipHash, also in the kernel's siphash_kunit.c):
    /// key 00..0f, message 00..n−1.
    const SIPHASH24_VECTORS: [u64; 64] = [
        0x726fdb47dd0e0e31,
        0x74f839c593dc67fd,
        0x0d6c8009d9a94f5a,
        0x85676696d7fb7e2d,
        0xcf2794e0277187b7,
        0x18765564cd99a68d,
        0xcbc9466e58fee3ce,
        0xab0200f58b01d137,
        0x93f5f5799a932462,
        0x9e0082df0ba9e4b0,
        0x7a5dbbc594ddb9f3,
        0xf4b32f46226bada7,
        0x751e8fbc860ee5fb,
        0x14ea5627c0843d90,
        0xf723ca908e7af2ee,
        0xa129ca6149be45e5,
        0x3f2acc7f57c29bdb,
        0x699ae9f52cbe4794,
        0x4bc1b3f0968dd39c,
        0xbb6dc91da77961bd,
        0xbed65cf21aa2ee98,
        0xd0f2cbb02e3b67c7,
        0x93536795e3a33e88,
        0xa80c038ccd5ccec8,
        0xb8ad50c6f649af94,
        0xbce192de8a85b8ea,
        0x17d835b85bbb15f3,
        0x2f2e6163076bcfad,
        0xde4daaaca71dc9a5,
        0xa6a2506687956571,
        0xad87a3535c49ef28,
        0x32d892fad841c342,
        0x7127512f72f27cce,
        0xa7f32346f95978e3,
        0x12e0b01abb051238,
        0x15e034d40fa197ae,
        0x314dffbe0815a3b4,
        0x027990f029623981,
        0xcadcd4e59ef40c4d,
        0x9abfd8766a33735c,
        0x0e3ea96b5304a7d0,
        0xad0c42d6fc585992,
        0x187306c89bc215a9,
        0xd4a60abcf3792b95,
        0xf935451de4f21df2,
        0xa9538f0419755787,
        0xdb9acddff56ca510,
        0xd06c98cd5c0975eb,
        0xe612a3cb9ecba951,
        0xc766e62cfcadaf96,
        0xee64435a9752fe72,
        0xa192d576b245165a,
        0x0a8787bf8ecb74b2,
        0x81b3e73d20b49b6f,
        0x7fa8220ba3b2ecea,
        0x245731c13ca42499,
        0xb78dbfaf3a8d83bd,
        0xea1ad565322a1a0b,
        0x60e61c23a3795013,
        0x6606d7e446282b93,
        0x6ca4ecb15c5f91e1,
        0x9f626da15c9625f3,
        0xe51b38608ef25f57,
        0x958a324ceb064572,
    ];

    /// The kernel's `hsiphash` vectors for `BITS_PER_LONG == 64` (lib/siphash_kunit.c):
    /// SipHash-1-3 truncated to 32 bits, key 00..0f, message 00..n−1.
    const HSIPHASH64_VECTORS: [u32; 64] = [
        0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7,
        0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7,
        0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c, 0xb473e63e, 0x8d297d1c, 0xa6cce040,
        0x2b45f844, 0xa320872e, 0xdae6c123, 0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35,
        0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e,
        0xbf186b91, 0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944,
        0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd, 0xdf074c46,
        0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0, 0x73f0bce6, 0x70a7e980,
        0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148, 0xf7a644ee, 0x0f1837f2, 0x4b6694e0,
        0xb7bbb3a8,
    ];

    #[test]
    fn siphash24_reference_vectors() {
        let msg: Vec<u8> = (0..64).collect();
        for (n, &want) in SIPHASH24_VECTORS.iter().enumerate() {
            assert_eq!(siphash::<2, 4>(KEY_00_0F, &msg[..n]), want, "length {n}");
        }
    }

    #[test]
    fn siphash13_is_the_kernel_hsiphash() {
        let msg: Vec<u8> = (0..64).collect();
        for (n, &want) in HSIPHASH64_VECTORS.iter().enumerate() {
            assert_eq!(
                siphash::<1, 3>(KEY_00_0F, &msg[..n]) as u32,
                want,
                "length {n}"
            );
        }
        // hsiphash_1u32(0x03020100) hashes the bytes 00 01 02 03 (kernel self-test).
        assert_eq!(hsiphash_u32(KEY_00_0F, 0x0302_0100), HSIPHASH64_VECTORS[4]);
    }

    // --- sh ----------------------------------------------------------------------------------

    #[test]
    fn sh_bucket_filling() {
        // Weights 2, 1: A A B A A B ...
        let ds = list(&[2, 1]);
        let s = {
            let mut s = Sh::new(0);
            s.update(&ds[..]);
            s
        };
        let want: Vec<Option<usize>> = (0..256).map(|b| Some(usize::from(b % 3 == 2))).collect();
        assert_eq!(sh_table(&s), want);
        // Weight 0 and 1 both take one bucket: A B C A B C ...
        let ds = list(&[0, 1, 3]);
        let mut s = Sh::new(0);
        s.update(&ds[..]);
        let pattern = [0, 1, 2, 2, 2];
        let want: Vec<Option<usize>> = (0..256).map(|b| Some(pattern[b % 5])).collect();
        assert_eq!(sh_table(&s), want);
        // A weight above 256 fills the whole table; later servers get no bucket.
        let ds = list(&[300, 5]);
        s.update(&ds[..]);
        assert_eq!(counts(&sh_table(&s), 2), [256, 0]);
        // More than 256 servers: the first 256 get one bucket each.
        let ds: Vec<DestInfo> = (0..300).map(|i| d(i, 1)).collect();
        s.update(&ds[..]);
        assert_eq!(sh_table(&s), (0..256).map(Some).collect::<Vec<_>>());
        // Empty list: empty table, no destination.
        s.update(&[] as &[DestInfo]);
        assert!(sh_table(&s).iter().all(Option::is_none));
        assert_eq!(s.schedule(&[] as &[DestInfo], &client(1, 1)), None);
    }

    #[test]
    fn sh_lookup_is_hash_32_of_the_source() {
        // 256 one-bucket servers: bucket b holds server index b.
        let ds: Vec<DestInfo> = (0..256).map(|i| d(i, 1)).collect();
        let mut s = Scheduler::with_dests("sh", 0, &ds[..]).unwrap();
        for caddr in [0, 1, 0x0a00_0001, 0xc0a8_0001, 0xffff_ffff] {
            let want = hash_32(caddr, 8) as usize;
            assert_eq!(s.schedule(&ds[..], &client(caddr, 1234)), Some(want));
        }
        assert_eq!(s.schedule(&ds[..], &client(0xc0a8_0001, 80)), Some(192));
        // sh-port: the port is added to the address before hashing.
        let mut s = Scheduler::with_dests("sh", PORT, &ds[..]).unwrap();
        assert_eq!(s.schedule(&ds[..], &client(0xc0a8_0001, 80)), Some(79));
        assert_eq!(s.schedule(&ds[..], &client(0xffff_ffff, 2)), Some(97)); // wraps to 1
    }

    #[test]
    fn sh_port_spreads_one_client() {
        let ds = list(&[1, 1, 1, 1]);
        let picks = |flags: u32| {
            let mut s = Scheduler::with_dests("sh", flags, &ds[..]).unwrap();
            let mut c = [0usize; 4];
            for port in 1024..2048 {
                c[s.schedule(&ds[..], &client(0x0a01_0203, port)).unwrap()] += 1;
            }
            c
        };
        // Without sh-port every connection of the client goes to the same server.
        assert_eq!(picks(0).iter().filter(|&&n| n > 0).count(), 1);
        // With it, all four servers get a fair share.
        for n in picks(PORT) {
            assert!((200..=312).contains(&n), "{n}");
        }
    }

    #[test]
    fn sh_unavailable_fails_or_probes_from_2h() {
        // 10.0.0.197 hashes to bucket 5; 256 one-bucket servers.
        let caddr = 0x0a00_00c5;
        assert_eq!(hash_32(caddr, 8), 5);
        let mut ds: Vec<DestInfo> = (0..256).map(|i| d(i, 1)).collect();
        ds[5].weight = 0;
        ds[10].overloaded = true;
        let mut plain = Scheduler::with_dests("sh", 0, &ds[..]).unwrap();
        let mut fb = Scheduler::with_dests("sh", FALLBACK, &ds[..]).unwrap();
        assert_eq!(plain.schedule(&ds[..], &client(caddr, 1)), None);
        // Probing starts at 2h = 10 (not h + 1 = 6, which is usable): 10 is overloaded → 11.
        assert_eq!(fb.schedule(&ds[..], &client(caddr, 1)), Some(11));
        // A usable hashed server is returned as-is with or without fallback.
        ds[5].weight = 3;
        assert_eq!(plain.schedule(&ds[..], &client(caddr, 1)), Some(5));
        assert_eq!(fb.schedule(&ds[..], &client(caddr, 1)), Some(5));
        // Wrap-around: 10.0.0.55 hashes to 200, probing starts at 400 mod 256 = 144.
        let caddr = 0x0a00_0037;
        assert_eq!(hash_32(caddr, 8), 200);
        for x in ds[144..].iter_mut() {
            x.overloaded = true;
        }
        assert_eq!(fb.schedule(&ds[..], &client(caddr, 1)), Some(0));
        // h = 0: the probe starts at 0 itself, which is unusable, then 1.
        let caddr = 0x0a00_0140;
        assert_eq!(hash_32(caddr, 8), 0);
        ds[0].weight = 0;
        assert_eq!(fb.schedule(&ds[..], &client(caddr, 1)), Some(1));
        // Nothing usable: fail.
        for x in ds.iter_mut() {
            x.weight = 0;
        }
        assert_eq!(fb.schedule(&ds[..], &client(caddr, 1)), None);
    }

    #[test]
    fn sh_weights_share_buckets() {
        let ds = list(&[3, 1]);
        let mut s = Scheduler::with_dests("sh", 0, &ds[..]).unwrap();
        let mut c = [0usize; 2];
        for caddr in 0..4096u32 {
            c[s.schedule(&ds[..], &client(0x0a00_0000 + caddr * 7919, 0))
                .unwrap()] += 1;
        }
        assert!((2900..=3250).contains(&c[0]), "{c:?}");
        // Edit A to weight 1: rebuilt on update, now an even split.
        let ds2 = list(&[1, 1]);
        s.update(&ds[..], &ds2[..]);
        let Scheduler::Sh(sh) = &s else { panic!() };
        assert_eq!(counts(&sh_table(sh), 2), [128, 128]);
    }

    // --- dh ----------------------------------------------------------------------------------

    #[test]
    fn dh_picks_by_destination_address() {
        // Weights are ignored when filling: bucket b holds b mod 3.
        let mut ds = list(&[5, 1, 1]);
        let mut s = Scheduler::with_dests("dh", 0, &ds[..]).unwrap();
        let Scheduler::Dh(dh) = &s else { panic!() };
        assert_eq!(
            (0..256).map(|b| dh.bucket(b)).collect::<Vec<_>>(),
            (0..256).map(|b| Some(b % 3)).collect::<Vec<_>>()
        );
        for vaddr in [0xc0a8_0001u32, 0xc0a8_0064, 0x0a00_0001, 7] {
            let want = hash_32(vaddr, 8) as usize % 3;
            for (caddr, cport) in [(1, 1), (0x0a0b_0c0d, 5555), (u32::MAX, 80)] {
                let input = SchedInput {
                    caddr,
                    cport,
                    vaddr,
                };
                assert_eq!(s.schedule(&ds[..], &input), Some(want));
            }
        }
        // 192.168.0.1 → bucket 192 → server 0; 192.168.0.100 → bucket 144 → server 0 too;
        // 10.0.0.1 → bucket 39 → server 0. Make server 0 unavailable: dh fails, even with the
        // fallback flag (dh has none).
        let vaddr = 0xc0a8_0001;
        let input = SchedInput {
            caddr: 1,
            cport: 1,
            vaddr,
        };
        ds[0].weight = 0;
        assert_eq!(s.schedule(&ds[..], &input), None);
        let mut f = Scheduler::with_dests("dh", FALLBACK, &ds[..]).unwrap();
        assert_eq!(f.schedule(&ds[..], &input), None);
        ds[0].weight = 1;
        ds[0].overloaded = true;
        assert_eq!(s.schedule(&ds[..], &input), None);
        // Another destination address still works.
        let other = SchedInput {
            vaddr: 0x0a00_00c5, // bucket 5 → server 2
            ..input
        };
        assert_eq!(s.schedule(&ds[..], &other), Some(2));
        // Empty list.
        let mut e = Scheduler::with_dests("dh", 0, &[] as &[DestInfo]).unwrap();
        assert_eq!(e.schedule(&[] as &[DestInfo], &input), None);
    }

    // --- mh ----------------------------------------------------------------------------------

    #[test]
    fn mh_constants() {
        assert_eq!(MH_KEY1, [0x9e37_79b1, 0x9e37_79b1]);
        assert_eq!(MH_KEY2, [0x9e37_a52c, 0x9e37_a52c]);
        assert_eq!(MH_TAB_SIZE.div_ceil(64), 64);
    }

    #[test]
    fn mh_table_fully_populated_and_proportional() {
        let ds = list(&[1, 2, 3, 4]);
        let m = mh(&ds, 0);
        let t = mh_table(&m);
        assert!(t.iter().all(|e| e.is_some_and(|i| i < 4)));
        let c = counts(&t, 4);
        assert_eq!(c.iter().sum::<usize>(), MH_TAB_SIZE);
        // Rounds of 1, 2, 3, 4 slots: shares are exact up to the last partial round.
        for (i, &n) in c.iter().enumerate() {
            let want = MH_TAB_SIZE * (i + 1) / 10;
            assert!(n.abs_diff(want) <= 4, "{c:?}");
        }
        assert_eq!(m.weight_scale(), (1, 0));
        // Equal weights: equal shares (4093 = 7·584 + 5).
        let ds = list(&[7; 7]);
        let c = counts(&mh_table(&mh(&ds, 0)), 7);
        assert!(c.iter().all(|&n| n == 584 || n == 585), "{c:?}");
        // One server takes everything.
        let ds = list(&[3]);
        assert!(mh_table(&mh(&ds, 0)).iter().all(|&e| e == Some(0)));
    }

    #[test]
    fn mh_distribution_of_clients_follows_weights() {
        let ds = list(&[1, 3]);
        let mut s = Scheduler::with_dests("mh", 0, &ds[..]).unwrap();
        let mut c = [0usize; 2];
        for k in 0..20_000u32 {
            c[s.schedule(&ds[..], &client(0x0a00_0000 + k, 0)).unwrap()] += 1;
        }
        assert!((4_600..=5_400).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn mh_gcd_and_shift() {
        // Only ratios matter: 100/200/300 builds the same table as 1/2/3.
        let a = mh(&list(&[100, 200, 300]), 0);
        let b = mh(&list(&[1, 2, 3]), 0);
        assert_eq!(a.weight_scale(), (100, 0));
        assert_eq!(mh_table(&a), mh_table(&b));
        // 1 and 1000: max/gcd = 1000 has 10 bits → shift 4; turns 1000 >> 4 = 62 and
        // (1 >> 4 = 0) → 1, the same table as weights 1 and 62.
        let a = mh(&list(&[1, 1000]), 0);
        assert_eq!(a.weight_scale(), (1, 4));
        assert_eq!(mh_table(&a), mh_table(&mh(&list(&[1, 62]), 0)));
        // 63 fits in 6 bits: no shift; 64 needs 7: shift 1.
        assert_eq!(mh(&list(&[1, 63]), 0).weight_scale(), (1, 0));
        assert_eq!(mh(&list(&[1, 64]), 0).weight_scale(), (1, 1));
        assert_eq!(
            mh_table(&mh(&list(&[1, 64]), 0)),
            mh_table(&mh(&list(&[1, 32]), 0))
        );
        // All weights 0 (added so): empty table, nothing scheduled, even with fallback.
        let z = list(&[0, 0]);
        let mut m = mh(&z, FALLBACK);
        assert_eq!(m.weight_scale(), (0, 0));
        assert!(mh_table(&m).iter().all(Option::is_none));
        assert_eq!(m.schedule(&z[..], &client(1, 1)), None);
        // Huge weights do not overflow.
        let h = mh(&list(&[u32::MAX, u32::MAX - 1, 1]), 0);
        assert_eq!(h.weight_scale(), (1, 26));
        assert_eq!(counts(&mh_table(&h), 3).iter().sum::<usize>(), MH_TAB_SIZE);
    }

    #[test]
    fn mh_population_follows_preference_lists() {
        // Two servers of weight 1: the first takes its offset, the second its own (or the next
        // free entry of its list), alternately.
        let ds = list(&[1, 1]);
        let m = mh(&ds, 0);
        let off =
            |x: &DestInfo| (hsiphash_u32(MH_KEY1, u32::from(x.port) + x.addr) % MH_M) as usize;
        let skip = |x: &DestInfo| {
            (hsiphash_u32(MH_KEY2, u32::from(x.port) + x.addr) % (MH_M - 1) + 1) as usize
        };
        assert_eq!(m.slot(off(&ds[0])), Some(0));
        let o1 = off(&ds[1]);
        if o1 != off(&ds[0]) {
            assert_eq!(m.slot(o1), Some(1));
        } else {
            assert_eq!(m.slot((o1 + skip(&ds[1])) % MH_TAB_SIZE), Some(1));
        }
        // Exact model of the population on a small list, walking preference lists.
        let ds = list(&[2, 1, 3]);
        let m = mh(&ds, 0);
        let mut want = vec![None; MH_TAB_SIZE];
        let mut next: Vec<usize> = ds.iter().map(off).collect();
        let mut filled = 0;
        'done: loop {
            for (i, x) in ds.iter().enumerate() {
                for _ in 0..x.weight {
                    while want[next[i]].is_some() {
                        next[i] = (next[i] + skip(x)) % MH_TAB_SIZE;
                    }
                    want[next[i]] = Some(i);
                    filled += 1;
                    if filled == MH_TAB_SIZE {
                        break 'done;
                    }
                }
            }
        }
        assert_eq!(mh_table(&m), want);
    }

    #[test]
    fn mh_lookup_slot_and_port() {
        let ds = list(&[1, 1, 1]);
        let mut m = mh(&ds, 0);
        let caddr = 0x0a01_0203;
        let slot = (hsiphash_u32(MH_KEY1, caddr) % MH_M) as usize;
        assert_eq!(m.slot_of(&client(caddr, 999)), slot);
        assert_eq!(m.schedule(&ds[..], &client(caddr, 999)), m.slot(slot));
        let mut p = mh(&ds, PORT);
        let slot = (hsiphash_u32(MH_KEY1, caddr + 999) % MH_M) as usize;
        assert_eq!(p.slot_of(&client(caddr, 999)), slot);
        assert_eq!(p.schedule(&ds[..], &client(caddr, 999)), p.slot(slot));
        // With mh-port one client spreads over all servers; without, it sticks to one.
        let mut seen = [[false; 3]; 2];
        for port in 1024..1124 {
            seen[0][m.schedule(&ds[..], &client(caddr, port)).unwrap()] = true;
            seen[1][p.schedule(&ds[..], &client(caddr, port)).unwrap()] = true;
        }
        assert_eq!(seen[0].iter().filter(|&&b| b).count(), 1);
        assert_eq!(seen[1], [true; 3]);
    }

    #[test]
    fn mh_minimal_disruption() {
        let n = 10;
        let ds: Vec<DestInfo> = (0..n).map(|i| d(i + 1, 1)).collect();
        let before = mh_ids(&mh(&ds, 0), &ds);
        // Remove server 5 (index 4).
        let mut ds2 = ds.clone();
        ds2.remove(4);
        let mut m = Mh::new(0);
        m.update(&ds[..]);
        m.update(&ds2[..]);
        let after = mh_ids(&m, &ds2);
        assert!(after.iter().all(|e| e.is_some_and(|id| id != 5)));
        let survivors = before.iter().filter(|e| **e != Some(5)).count();
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != Some(5) && b != a)
            .count();
        // Maglev: survivors keep nearly all their slots (only a small fraction is reshuffled),
        // the removed server's ~1/10 of the table is spread over the others.
        assert!(moved * 100 < survivors * 3, "{moved} of {survivors} moved");
        let changed = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(changed < MH_TAB_SIZE * 13 / 100, "{changed}");
        // Adding it back (at the head, as the kernel does) also moves little.
        let mut ds3 = vec![d(5, 1)];
        ds3.extend_from_slice(&ds2);
        m.update(&ds3[..]);
        let again = mh_ids(&m, &ds3);
        let changed = after.iter().zip(&again).filter(|(b, a)| b != a).count();
        assert!(changed < MH_TAB_SIZE * 13 / 100, "{changed}");
        let c = counts(&mh_table(&m), 10);
        assert!(c.iter().all(|&k| k == 409 || k == 410), "{c:?}");
    }

    #[test]
    fn mh_weight_zero_keeps_slots() {
        let ds = list(&[5, 5, 5]);
        let mut plain = Scheduler::with_dests("mh", 0, &ds[..]).unwrap();
        let mut fb = Scheduler::with_dests("mh", FALLBACK, &ds[..]).unwrap();
        let table = |s: &Scheduler| match s {
            Scheduler::Mh(m) => mh_table(m),
            _ => unreachable!(),
        };
        let before = table(&plain);
        let clients: Vec<SchedInput> = (0..3000u32)
            .map(|k| client(0x0a10_0000 + k * 13, 0))
            .collect();
        let picks0: Vec<Option<usize>> =
            clients.iter().map(|c| plain.schedule(&ds[..], c)).collect();
        // Quiesce server 2 (index 1): its last_weight stays 5, the table does not change.
        let mut q = ds.clone();
        q[1].weight = 0;
        plain.update(&ds[..], &q[..]);
        fb.update(&ds[..], &q[..]);
        assert_eq!(table(&plain), before);
        assert_eq!(table(&fb), before);
        if let Scheduler::Mh(m) = &plain {
            assert_eq!(m.last_weight(2), Some(5));
        }
        let mut moved_to = [0usize; 3];
        for (c, &p0) in clients.iter().zip(&picks0) {
            let p = plain.schedule(&q[..], c);
            let f = fb.schedule(&q[..], c);
            if p0 == Some(1) {
                // Its clients fail, or fall back to another server.
                assert_eq!(p, None);
                let f = f.unwrap();
                assert_ne!(f, 1);
                moved_to[f] += 1;
            } else {
                // Everybody else is undisturbed.
                assert_eq!(p, p0);
                assert_eq!(f, p0);
            }
        }
        assert!(moved_to[0] > 0 && moved_to[2] > 0, "{moved_to:?}");
        // Weight back to 5: same table, same picks.
        plain.update(&q[..], &ds[..]);
        assert_eq!(table(&plain), before);
        // Weight edited to 2: last_weight 2, the table is rebuilt.
        let mut e = ds.clone();
        e[1].weight = 2;
        plain.update(&ds[..], &e[..]);
        let c = counts(&table(&plain), 3);
        assert!(c[1] < c[0] / 2, "{c:?}");
    }

    #[test]
    fn mh_added_with_weight_zero_gets_no_slots() {
        let ds = list(&[1, 1]);
        let mut m = mh(&ds, 0);
        let before = mh_ids(&m, &ds);
        // New server 9 added (at the head) with weight 0: last_weight 0, no slots, and the
        // table is unchanged.
        let mut add = vec![d(9, 0)];
        add.extend_from_slice(&ds);
        m.update(&add[..]);
        assert_eq!(m.last_weight(9), Some(0));
        assert_eq!(mh_ids(&m, &add), before);
        // Then weight 3: slots. Then 0 again: keeps them.
        add[0].weight = 3;
        m.update(&add[..]);
        let with = mh_ids(&m, &add);
        assert!(with.iter().filter(|e| **e == Some(9)).count() > 2000);
        add[0].weight = 0;
        m.update(&add[..]);
        assert_eq!(m.last_weight(9), Some(3));
        assert_eq!(mh_ids(&m, &add), with);
        // Removed, then re-added with weight 0: an add resets last_weight.
        m.update(&ds[..]);
        assert_eq!(m.last_weight(9), None);
        m.update(&add[..]);
        assert_eq!(m.last_weight(9), Some(0));
        assert_eq!(mh_ids(&m, &add), before);
        // Same id but a different address: a different server, treated as added.
        add[0].weight = 4;
        m.update(&add[..]);
        add[0].weight = 0;
        add[0].addr += 1;
        m.update(&add[..]);
        assert_eq!(m.last_weight(9), Some(0));
        // A new scheduler only knows current weights.
        let mut q = ds.clone();
        q[0].weight = 0;
        let fresh = mh(&q, 0);
        assert!(mh_table(&fresh).iter().all(|&e| e == Some(1)));
    }

    #[test]
    fn mh_fallback_probe_sequence() {
        let mut ds = list(&[1, 1, 1, 1]);
        ds[0].weight = 0;
        let mut m = mh(&list(&[1, 1, 1, 1]), FALLBACK);
        m.update(&ds[..]);
        let mut checked = 0;
        for k in 0..2000u32 {
            let input = client(0x0a20_0000 + k * 31, 0);
            let base = input.caddr;
            let ihash = hsiphash_u32(MH_KEY1, base) % MH_M;
            if m.slot(ihash as usize) != Some(0) {
                continue;
            }
            // Kernel: roffset = (k + ihash) mod M; slot = H1(roffset + port + addr) mod M.
            let want = (0..MH_M)
                .map(|k| {
                    let r = (k + ihash) % MH_M;
                    m.slot((hsiphash_u32(MH_KEY1, r + base) % MH_M) as usize)
                })
                .find(|e| *e != Some(0))
                .flatten();
            assert_eq!(m.schedule(&ds[..], &input), want);
            checked += 1;
        }
        assert!(checked > 300, "{checked}");
        // Nothing usable: no destination.
        for x in ds.iter_mut() {
            x.overloaded = true;
        }
        assert_eq!(m.schedule(&ds[..], &client(5, 5)), None);
    }

    #[test]
    fn mh_more_destinations_than_slots_keeps_the_table() {
        let ds: Vec<DestInfo> = (0..10).map(|i| d(i, 1)).collect();
        let mut m = mh(&ds, 0);
        let before = mh_ids(&m, &ds);
        // 4094 servers: the kernel refuses to rebuild; the old table stays, re-pointed.
        let mut big: Vec<DestInfo> = (100..100 + 4085).map(|i| d(i, 1)).collect();
        big.extend_from_slice(&ds[1..]);
        assert_eq!(big.len(), MH_TAB_SIZE + 1);
        m.update(&big[..]);
        let after = mh_ids(&m, &big);
        for (b, a) in before.iter().zip(&after) {
            if *b == Some(0) {
                assert_eq!(*a, None); // removed
            } else {
                assert_eq!(a, b);
            }
        }
        // Initialised directly with too many: empty table (the kernel fails init_service).
        let mut m = mh(&big, FALLBACK);
        assert!(mh_table(&m).iter().all(Option::is_none));
        assert_eq!(m.schedule(&big[..], &client(1, 1)), None);
    }

    #[test]
    fn mh_update_without_change_keeps_table() {
        let ds = list(&[2, 3]);
        let mut m = mh(&ds, 0);
        let t = mh_table(&m);
        m.update(&ds[..]);
        assert_eq!(mh_table(&m), t);
        // Order matters (population rounds follow the list).
        let rev: Vec<DestInfo> = ds.iter().rev().copied().collect();
        m.update(&rev[..]);
        assert_ne!(mh_ids(&m, &rev), {
            let m0 = mh(&ds, 0);
            mh_ids(&m0, &ds)
        });
    }

    #[test]
    fn lazy_init_and_names() {
        let ds = list(&[1, 2]);
        for name in ["sh", "dh", "mh"] {
            let mut a = Scheduler::new(name, 0).unwrap();
            let mut b = Scheduler::with_dests(name, 0, &ds[..]).unwrap();
            assert_eq!(a.name(), name);
            for k in 0..50u32 {
                let input = SchedInput {
                    caddr: k * 977,
                    cport: k as u16,
                    vaddr: k * 131,
                };
                assert_eq!(a.schedule(&ds[..], &input), b.schedule(&ds[..], &input));
            }
        }
        // set_flags switches fallback on without touching the table.
        let mut q = ds.clone();
        q[0].weight = 0;
        q[1].weight = 0;
        let mut s = Scheduler::with_dests("mh", 0, &ds[..]).unwrap();
        s.update(&ds[..], &q[..]);
        q[1].weight = 2;
        s.update(&ds[..], &q[..]);
        let input = (0..1000u32)
            .map(|k| client(k * 7, 0))
            .find(|c| s.schedule(&q[..], c).is_none())
            .unwrap();
        s.set_flags(FALLBACK);
        assert_eq!(s.schedule(&q[..], &input), Some(1));
    }

    // --- properties --------------------------------------------------------------------------

    fn dest() -> impl Strategy<Value = DestInfo> {
        (
            prop_oneof![4 => 0u32..6, 1 => 0u32..=65535, 1 => Just(u32::MAX)],
            proptest::bool::weighted(0.2),
            0u32..64,
            prop_oneof![Just(0u16), Just(80u16), any::<u16>()],
        )
            .prop_map(|(weight, overloaded, a, port)| DestInfo {
                id: 0,
                weight,
                active: 0,
                inactive: 0,
                overloaded,
                addr: 0x0a00_0000 + a,
                port,
            })
    }

    fn dests(max: usize) -> impl Strategy<Value = Vec<DestInfo>> {
        proptest::collection::vec(dest(), 0..max).prop_map(|mut v| {
            for (i, x) in v.iter_mut().enumerate() {
                x.id = 100 + i as u32;
            }
            v
        })
    }

    fn input() -> impl Strategy<Value = SchedInput> {
        (any::<u32>(), any::<u16>(), any::<u32>()).prop_map(|(caddr, cport, vaddr)| SchedInput {
            caddr,
            cport,
            vaddr,
        })
    }

    /// Straight model of ip_vs_sh: table built by a cyclic walk, lookup, fallback.
    fn model_sh(ds: &[DestInfo], flags: u32, input: &SchedInput) -> Option<usize> {
        if ds.is_empty() {
            return None;
        }
        let mut table = Vec::new();
        let (mut p, mut c) = (0, 0u64);
        while table.len() < 256 {
            table.push(p);
            c += 1;
            if c >= u64::from(ds[p].weight) {
                p = (p + 1) % ds.len();
                c = 0;
            }
        }
        let port = if flags & PORT != 0 { input.cport } else { 0 };
        let h = hash_32(input.caddr.wrapping_add(u32::from(port)), 8) as usize;
        let ok = |i: usize| ds[i].weight > 0 && !ds[i].overloaded;
        if ok(table[h]) {
            return Some(table[h]);
        }
        if flags & FALLBACK == 0 {
            return None;
        }
        (0..256)
            .map(|k| table[((h + k) % 256 + h) % 256])
            .find(|&i| ok(i))
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn siphash24_matches_std(k0: u64, k1: u64, msg in proptest::collection::vec(any::<u8>(), 0..40)) {
            #[allow(deprecated)]
            let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
            std::hash::Hasher::write(&mut h, &msg);
            prop_assert_eq!(siphash::<2, 4>([k0, k1], &msg), std::hash::Hasher::finish(&h));
        }

        #[test]
        fn hsiphash_u32_matches_generic(k0: u64, k1: u64, v: u32) {
            prop_assert_eq!(hsiphash_u32([k0, k1], v), siphash::<1, 3>([k0, k1], &v.to_le_bytes()) as u32);
        }

        #[test]
        fn sh_matches_model(ds in dests(12), flags in 0u32..4, inputs in proptest::collection::vec(input(), 1..8)) {
            let mut s = Scheduler::with_dests("sh", flags, &ds[..]).unwrap();
            for i in &inputs {
                prop_assert_eq!(s.schedule(&ds[..], i), model_sh(&ds, flags, i));
            }
        }

        #[test]
        fn dh_matches_model(ds in dests(12), flags in 0u32..4, i in input()) {
            let mut s = Scheduler::with_dests("dh", flags, &ds[..]).unwrap();
            let want = (!ds.is_empty())
                .then(|| hash_32(i.vaddr, 8) as usize % ds.len())
                .filter(|&k| ds[k].weight > 0 && !ds[k].overloaded);
            prop_assert_eq!(s.schedule(&ds[..], &i), want);
        }

        /// Across random edits (adds at the head, removals, weight and overload changes), every
        /// hashing scheduler returns an in-range, usable destination or none; mh's table stays
        /// full whenever some server has a non-zero last weight, holds only such servers, and
        /// its last weights follow the kernel's rule (per update: several changes to one server
        /// within an update are seen as one).
        #[test]
        fn hashing_schedulers_stay_valid(
            start in dests(6),
            steps in proptest::collection::vec(
                (proptest::collection::vec((0u8..4, 0usize..8, 0u32..4), 0..4),
                 proptest::collection::vec(input(), 0..4)),
                1..12),
            flags in 0u32..4,
        ) {
            let mut list = start;
            let mut next_id = 1000;
            let mut scheds: Vec<Scheduler> = ["sh", "dh", "mh"].iter()
                .map(|n| Scheduler::with_dests(n, flags, &list[..]).unwrap()).collect();
            let mut lw: HashMap<u32, u32> = list.iter().map(|x| (x.id, x.weight)).collect();
            for (changes, inputs) in steps {
                let old = list.clone();
                for (kind, at, w) in changes {
                    match kind {
                        0 => {
                            list.insert(0, DestInfo { id: next_id, weight: w, addr: next_id, port: 80, ..Default::default() });
                            next_id += 1;
                        }
                        1 if !list.is_empty() => { list.remove(at % list.len()); }
                        2 if !list.is_empty() => { let p = at % list.len(); list[p].weight = w; }
                        3 if !list.is_empty() => { let p = at % list.len(); list[p].overloaded ^= true; }
                        _ => {}
                    }
                }
                // The kernel's rule as one update sees it (only the batch's final weights are
                // visible): kept servers take a non-zero weight, added ones any weight.
                lw = list.iter().map(|x| {
                    let keep = old.iter().any(|o| o.id == x.id) && x.weight == 0;
                    (x.id, if keep { lw[&x.id] } else { x.weight })
                }).collect();
                for s in scheds.iter_mut() {
                    s.update(&old[..], &list[..]);
                }
                if let Scheduler::Mh(m) = &scheds[2] {
                    for x in &list {
                        prop_assert_eq!(m.last_weight(x.id), lw.get(&x.id).copied());
                    }
                    let any = list.iter().any(|x| lw[&x.id] > 0);
                    for s in 0..MH_TAB_SIZE {
                        match m.slot(s) {
                            Some(i) => prop_assert!(i < list.len() && lw[&list[i].id] > 0),
                            None => prop_assert!(!any),
                        }
                    }
                }
                for i in &inputs {
                    for s in scheds.iter_mut() {
                        if let Some(k) = s.schedule(&list[..], i) {
                            prop_assert!(k < list.len());
                            prop_assert!(list[k].weight > 0 && !list[k].overloaded);
                        }
                    }
                }
            }
        }

        /// mh without fallback returns exactly the slot's server when it is usable.
        #[test]
        fn mh_lookup_is_the_slot(ds in dests(8), flags in 0u32..4, i in input()) {
            let mut m = Mh::new(flags);
            m.update(&ds[..]);
            let slot = m.slot(m.slot_of(&i));
            let got = m.schedule(&ds[..], &i);
            match slot {
                Some(k) if ds[k].weight > 0 && !ds[k].overloaded => prop_assert_eq!(got, Some(k)),
                _ if flags & FALLBACK == 0 => prop_assert_eq!(got, None),
                _ => {}
            }
        }
    }
}
