//! SYN-flood defence of one worker: how its fixed-size connection table keeps admitting
//! legitimate clients when spoofed SYNs outrun it, and the IPVS defense strategies
//! (`drop_entry`, `drop_packet`, `secure_tcp`, with the thresholds `amemthresh` and
//! `am_droprate`; kernel `ip_vs_ctl.c` `update_defense_level`, `ip_vs_conn.c`
//! `ip_vs_random_dropentry`, `ip_vs_core.c` `ip_vs_todrop`).
//!
//! **Unconfirmed entries** are what a spoofed SYN leaves behind: a TCP connection still in
//! its handshake (SYN_RECV, or SYNACK under `secure_tcp`) and a persistence template never
//! assured (state NONE) that controls no connection. A legitimate client confirms its entry
//! with its ACK one round trip after the SYN; a spoofed source never does.
//!
//! **Making room (always on).** When a new connection finds fewer than two free entries (a
//! connection and perhaps its template), a clock hand sweeps the table slots in index order
//! and evicts the unconfirmed entries it passes (a connection's template goes with it when
//! that leaves the template unassured and controlling nothing), taking at most
//! [`EVICT_SCAN`] steps ([`DRY_SCAN`] once a whole turn found nothing); only if it finds
//! none is the new connection refused (`table_full`). The hand visits only slots marked in
//! a bitmap of candidates (one bit per slot: set by [`Defense::note`] when an entry enters
//! a handshake state or a template is created, cleared by [`Defense::confirmed`] when it
//! leaves the handshake or the template is assured, and by the hand when it finds the slot
//! free or confirmed), so a run of 64 confirmed slots costs it one step: long-lived
//! connections packed together (the slots opened first) do not stall it.
//! Freed slots are reused at once (the table's free list is LIFO), i.e. just behind the hand,
//! so an entry is examined again only after the hand has gone round the whole table: under a
//! flood an unconfirmed entry survives `unconfirmed entries / new entries per second` (a
//! 1 M-entry table at 3 M SYNs/s: about 0.3 s), far longer than any round trip, so
//! legitimate handshakes complete and spoofed ones are recycled. A slot freed ahead of the
//! hand (a template evicted with its connection) may take a new handshake the hand reaches
//! soon; so the hand also spares handshakes whose last packet is younger than
//! [`MIN_AGE_TICKS`] (at least 62.5 ms at 16 ticks/s), keeping their mark for its next turn. Established, closing and
//! UDP entries and assured templates are never evicted: connections that exist before a
//! flood lose nothing. The kernel has no such policy because its table grows with memory;
//! this director's table is fixed, so this is its overflow policy.
//!
//! **Defense levels (IPVS sysctls).** Once per second each worker re-evaluates, as
//! `update_defense_level` does, whether memory is short: its "available memory" is the free
//! part of its own connection table in 4 KiB pages (free entries × bytes per entry / 4096),
//! compared with `amemthresh`. Modes 1 and 2 of each strategy follow that state, 3 is always
//! on, 0 always off.
//! - `drop_entry` on: a sweep examines `capacity / 32` slots per second (the kernel scans
//!   1/32 of its hash table per second) and drops the unconfirmed entries it meets. The
//!   kernel also drops ESTABLISHED entries that saw few packets (`todrop_entry`, by
//!   per-entry packet count); the director keeps no per-entry packet counts and never drops
//!   established entries.
//! - `drop_packet` on: one in `rate` packets that would open a connection is dropped before
//!   scheduling (`drop_packet` counter); `rate = amemthresh / (amemthresh - available)` in
//!   the automatic modes, `am_droprate` in mode 3 (0: none, 1: all).
//! - `secure_tcp` on: the stricter TCP state table (see `conn::TcpState::next_secure`).
//!
//! Concurrency: a [`Defense`] belongs to one worker's engine and touches only that worker's
//! table; nothing here allocates, locks or logs. The per-packet cost on the new-connection
//! path is one comparison (`drop_packet` rate 0) and one table-occupancy check; the
//! established-flow fast path does not come here.

use crate::conn::{ConnTable, Entry, TcpState, NO_INDEX, TEMPLATE_STATE_NONE};
use crate::snapshot::PROTO_TCP;

/// Most steps the clock hand takes to make room for one new connection (a step examines
/// one candidate slot, or skips the rest of a 64-slot word without candidates: 4,096 steps
/// cross a block of 262,144 confirmed entries).
pub const EVICT_SCAN: u32 = 4096;
/// The same once a whole turn of the hand found nothing to evict (a table full of confirmed
/// entries): a flood then costs little per refused SYN, and the hand still moves on.
pub const DRY_SCAN: u32 = 16;
/// Most slots the `drop_entry` sweep examines per call (between bursts).
const SWEEP_BUDGET: u64 = 1024;
/// Entries whose last packet is younger than this many ticks are not evicted by the hand
/// (2 ticks at 16 ticks per second: at least 62.5 ms).
pub const MIN_AGE_TICKS: u32 = 2;
/// Page size of `amemthresh`.
const PAGE: u64 = 4096;

/// The defense sysctls as published in the snapshot (see `control::sysctl::Sysctls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefenseSysctl {
    /// `drop_entry` mode 0..=3.
    pub drop_entry: u8,
    /// `drop_packet` mode 0..=3.
    pub drop_packet: u8,
    /// `secure_tcp` mode 0..=3.
    pub secure_tcp: u8,
    /// `amemthresh`, in 4 KiB pages of free connection-table memory.
    pub amemthresh: u32,
    /// `am_droprate`: the `drop_packet` rate of mode 3.
    pub am_droprate: u32,
}

impl Default for DefenseSysctl {
    /// The kernel's defaults: every strategy off, `amemthresh` 1024, `am_droprate` 10.
    fn default() -> Self {
        DefenseSysctl { drop_entry: 0, drop_packet: 0, secure_tcp: 0, amemthresh: 1024, am_droprate: 10 }
    }
}

/// True for an entry a spoofed SYN could have left: a TCP connection in SYN_RECV or SYNACK,
/// or a template never assured that controls nothing.
#[inline]
pub fn unconfirmed(e: &Entry) -> bool {
    if e.is_template() {
        return e.state == TEMPLATE_STATE_NONE && e.n_control() == 0;
    }
    e.key().proto == PROTO_TCP && (e.state == TcpState::SynRecv as u8 || e.state == TcpState::SynAck as u8)
}

/// One worker's defence state (see the module documentation).
#[derive(Debug, Clone)]
pub struct Defense {
    /// Clock hand of [`Defense::make_room`] (a slot index).
    hand: u32,
    /// Slots the hand passed since it last evicted something.
    dry: u64,
    /// Candidate slots, one bit each (may hold an unconfirmed entry).
    marks: Box<[u64]>,
    /// Table capacity (slots).
    cap: u32,
    /// Position of the `drop_entry` sweep.
    sweep_hand: u32,
    /// Sweep credit in slot × tick units.
    sweep_credit: u64,
    /// Tick of the last [`Defense::tick`].
    last_tick: u32,
    /// Tick of the next level evaluation.
    next_update: u32,
    /// Levels were evaluated at least once.
    started: bool,
    /// Memory is short (free table memory below `amemthresh`).
    nomem: bool,
    /// `drop_entry` is on.
    drop_entry: bool,
    /// `drop_packet`: drop one in this many (0 = off) and the countdown.
    drop_rate: u32,
    drop_counter: u32,
    /// `secure_tcp` is on.
    secure: bool,
}

/// Free memory of `conns` in pages: free entries × bytes per entry / 4096.
fn available_pages(conns: &ConnTable) -> u64 {
    let free = (conns.capacity() - conns.len()) as f64;
    (free * conns.bytes_per_entry() / PAGE as f64) as u64
}

impl Defense {
    /// A defence for a table of `capacity` slots (no candidates yet), every strategy off.
    pub fn new(capacity: usize) -> Self {
        let marks = vec![0u64; capacity.div_ceil(64).max(1)].into_boxed_slice();
        Defense {
            hand: 0,
            dry: 0,
            marks,
            cap: capacity as u32,
            sweep_hand: 0,
            sweep_credit: 0,
            last_tick: 0,
            next_update: 0,
            started: false,
            nomem: false,
            drop_entry: false,
            drop_rate: 0,
            drop_counter: 0,
            secure: false,
        }
    }

    /// Marks slot `idx` as a candidate for eviction: call it when an entry enters a
    /// handshake state (SYN_RECV, SYNACK) or a template is created there.
    #[inline]
    pub fn note(&mut self, idx: u32) {
        if let Some(w) = self.marks.get_mut(idx as usize / 64) {
            *w |= 1u64 << (idx % 64);
        }
    }

    /// Clears slot `idx`'s mark: call it when its entry is confirmed (a connection leaves
    /// its handshake, a template is assured), so the hand steps over it 64 slots at a time.
    #[inline]
    pub fn confirmed(&mut self, idx: u32) {
        if let Some(w) = self.marks.get_mut(idx as usize / 64) {
            *w &= !(1u64 << (idx % 64));
        }
    }

    /// True while this worker's table is short of free memory (automatic modes on).
    #[inline]
    pub fn nomem(&self) -> bool {
        self.nomem
    }

    /// True while `secure_tcp` is on.
    #[inline]
    pub fn secure_tcp(&self) -> bool {
        self.secure
    }

    /// True while the `drop_entry` sweep runs.
    #[inline]
    pub fn drop_entry_on(&self) -> bool {
        self.drop_entry
    }

    /// `ip_vs_todrop`: should this packet, which would open a connection, be dropped?
    #[inline]
    pub fn drop_packet(&mut self) -> bool {
        if self.drop_rate == 0 {
            return false;
        }
        self.drop_counter = self.drop_counter.saturating_sub(1);
        if self.drop_counter > 0 {
            return false;
        }
        self.drop_counter = self.drop_rate;
        true
    }

    /// Re-evaluates the levels from `cfg` and the table's free memory (the kernel's
    /// `update_defense_level`).
    pub fn update(&mut self, cfg: &DefenseSysctl, conns: &ConnTable) {
        let avail = available_pages(conns);
        let thresh = u64::from(cfg.amemthresh);
        self.nomem = avail < thresh;
        let on = |mode: u8, nomem: bool| match mode {
            1 | 2 => nomem,
            3 => true,
            _ => false,
        };
        self.drop_entry = on(cfg.drop_entry, self.nomem);
        self.secure = on(cfg.secure_tcp, self.nomem);
        self.drop_rate = match cfg.drop_packet {
            1 | 2 if self.nomem => {
                // thresh > avail here, so the divisor is at least 1.
                let rate = (thresh / (thresh - avail).max(1)).max(1) as u32;
                self.drop_counter = rate;
                rate
            }
            3 => {
                if self.drop_rate != cfg.am_droprate {
                    self.drop_counter = cfg.am_droprate;
                }
                cfg.am_droprate
            }
            _ => 0,
        };
    }

    /// Between bursts at tick `now` (`tps` ticks per second): evaluates the levels once per
    /// second and runs the `drop_entry` sweep while it is on, handing every entry it drops to
    /// `release` (after removal). Returns the number of entries dropped.
    pub fn tick(&mut self, cfg: &DefenseSysctl, conns: &mut ConnTable, now: u32, tps: u32, mut release: impl FnMut(&Entry)) -> u64 {
        let tps = tps.max(1);
        if !self.started || now.wrapping_sub(self.next_update) < u32::MAX / 2 {
            self.started = true;
            self.next_update = now.wrapping_add(tps);
            self.update(cfg, conns);
        }
        let elapsed = u64::from(now.wrapping_sub(self.last_tick).min(tps));
        self.last_tick = now;
        if !self.drop_entry {
            self.sweep_credit = 0;
            return 0;
        }
        // capacity / 32 slots per second, as credit in slot × tick units (at most a second's).
        let per_sec = (conns.capacity() as u64 / 32).max(1);
        self.sweep_credit = (self.sweep_credit + elapsed * per_sec).min(per_sec * u64::from(tps));
        let n = (self.sweep_credit / u64::from(tps)).min(SWEEP_BUDGET);
        if n == 0 {
            return 0;
        }
        self.sweep_credit -= n * u64::from(tps);
        let cap = conns.capacity() as u32;
        let mut dropped = 0;
        for _ in 0..n {
            let i = self.sweep_hand;
            self.sweep_hand = if i + 1 >= cap { 0 } else { i + 1 };
            dropped += evict(conns, i, 0, now, &mut release);
        }
        dropped
    }

    /// Makes `want` entries free by evicting unconfirmed entries at least [`MIN_AGE_TICKS`]
    /// old (tick `now`) under the clock hand, in at most [`EVICT_SCAN`] steps; hands every
    /// evicted entry to `release`. Returns the number evicted (the table may still be short
    /// if none was found).
    pub fn make_room(&mut self, conns: &mut ConnTable, want: usize, now: u32, mut release: impl FnMut(&Entry)) -> u64 {
        let cap = (conns.capacity() as u32).min(self.cap);
        let mut evicted = 0;
        let mut budget = if self.dry >= u64::from(cap) { DRY_SCAN } else { EVICT_SCAN };
        // Never more than one turn per call (small tables).
        let mut travelled = 0u32;
        while conns.capacity() - conns.len() < want && budget > 0 && travelled < cap {
            budget -= 1;
            if self.hand >= cap {
                self.hand = 0;
            }
            let wi = (self.hand / 64) as usize;
            let Some(word) = self.marks.get_mut(wi) else {
                self.hand = 0;
                continue;
            };
            let bits = *word & (u64::MAX << (self.hand % 64));
            if bits == 0 {
                // No candidate in the rest of this word: one step for up to 64 slots.
                let next = (wi as u32 + 1) * 64;
                let skipped = next.min(cap).saturating_sub(self.hand);
                self.dry += u64::from(skipped);
                travelled = travelled.saturating_add(skipped.max(1));
                self.hand = next;
                continue;
            }
            let b = bits.trailing_zeros();
            let i = wi as u32 * 64 + b;
            travelled = travelled.saturating_add(i + 1 - self.hand);
            self.hand = i + 1;
            if i >= cap {
                *word &= !(1u64 << b);
                continue;
            }
            // The bit is cleared unless the entry is a handshake too young to evict: an
            // evicted slot is marked again when it holds a new handshake, a confirmed one if
            // it ever re-enters a handshake state.
            if !conns.get(i).is_some_and(|e| unconfirmed(e) && age(e, now) < MIN_AGE_TICKS) {
                *word &= !(1u64 << b);
            }
            match evict(conns, i, MIN_AGE_TICKS, now, &mut release) {
                0 => self.dry += 1,
                n => {
                    evicted += n;
                    self.dry = 0;
                }
            }
        }
        if evicted > 0 {
            self.prefetch_next(conns);
        }
        evicted
    }

    /// Prefetches what evicting the hand's next candidate will touch (its index bucket, its
    /// template), so that those cache misses overlap the packets processed until then.
    #[inline]
    fn prefetch_next(&self, conns: &ConnTable) {
        let mut h = self.hand;
        for _ in 0..4 {
            let wi = (h / 64) as usize;
            let Some(&word) = self.marks.get(wi) else { return };
            let bits = word & (u64::MAX << (h % 64));
            if bits != 0 {
                let i = wi as u32 * 64 + bits.trailing_zeros();
                if let Some(e) = conns.get(i).filter(|e| unconfirmed(e)) {
                    conns.prefetch_bucket(conns.hash(e.key()));
                    if let Some(t) = conns.get(e.control()) {
                        crate::dpdk::cpu::prefetch(t);
                    }
                }
                return;
            }
            h = (wi as u32 + 1) * 64;
        }
    }
}

/// Ticks since entry `e` last saw a packet (its expiry minus its timeout).
#[inline]
fn age(e: &Entry, now: u32) -> u32 {
    let touched = e.expires().wrapping_sub(e.timeout.min(crate::timer::MAX_TIMEOUT_TICKS));
    let a = now.wrapping_sub(touched);
    if a > u32::MAX / 2 {
        0
    } else {
        a
    }
}

/// Removes entry `i` if it is unconfirmed and at least `min_age` ticks old (its template's
/// age does not matter), and then its template if that is left unassured and controlling
/// nothing. Returns the number of entries removed.
fn evict(conns: &mut ConnTable, i: u32, min_age: u32, now: u32, release: &mut impl FnMut(&Entry)) -> u64 {
    let Some(e) = conns.get(i) else { return 0 };
    if !unconfirmed(e) || age(e, now) < min_age {
        return 0;
    }
    let ctl = e.control();
    let Ok(gone) = conns.remove(i) else { return 0 };
    release(&gone);
    let mut n = 1;
    if ctl != NO_INDEX && conns.get(ctl).is_some_and(unconfirmed) {
        if let Ok(t) = conns.remove(ctl) {
            release(&t);
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{tcp_flags, ConnInit, ConnKey, ConnTableConfig, Timeouts, F_INACTIVE, F_TEMPLATE, TEMPLATE_STATE_ASSURED};

    fn table(cap: usize) -> ConnTable {
        ConnTable::new(ConnTableConfig { capacity: cap, wheel_slots: 256, ticks_per_sec: 16, seed: 7, now: 0 }).unwrap()
    }

    fn key(c: u32, port: u16) -> ConnKey {
        ConnKey { proto: 6, caddr: c, cport: port, vaddr: 0xc612_0101, vport: 80 }
    }

    /// A TCP connection that saw `flags` packets (SYN, then maybe ACK).
    fn conn(t: &mut ConnTable, c: u32, flags: &[u8]) -> u32 {
        let idx = t.insert(key(c, 1000), ConnInit { server: 1, state: 0, flags: F_INACTIVE, timeout: 48 }, 0).unwrap();
        let tm = Timeouts::default().in_ticks(16);
        for f in flags {
            t.get_mut(idx).unwrap().apply_tcp(*f, &tm);
        }
        idx
    }

    fn template(t: &mut ConnTable, c: u32) -> u32 {
        let k = ConnKey { cport: 0, ..key(c, 0) };
        t.insert(k, ConnInit { server: 1, state: TEMPLATE_STATE_NONE, flags: F_TEMPLATE, timeout: 4800 }, 0).unwrap()
    }

    #[test]
    fn what_counts_as_unconfirmed() {
        let mut t = table(64);
        let syn = conn(&mut t, 1, &[tcp_flags::SYN]);
        let est = conn(&mut t, 2, &[tcp_flags::SYN, tcp_flags::ACK]);
        let fin = conn(&mut t, 3, &[tcp_flags::SYN, tcp_flags::ACK, tcp_flags::FIN]);
        let udp = t.insert(ConnKey { proto: 17, ..key(4, 53) }, ConnInit { server: 1, state: 0, flags: F_INACTIVE, timeout: 48 }, 0).unwrap();
        let tmpl = template(&mut t, 5);
        let ctl = template(&mut t, 6);
        let child = conn(&mut t, 6, &[tcp_flags::SYN]);
        assert!(t.set_control(child, ctl));
        let assured = template(&mut t, 7);
        t.get_mut(assured).unwrap().state = TEMPLATE_STATE_ASSURED;
        let got: Vec<bool> = [syn, est, fin, udp, tmpl, ctl, child, assured].iter().map(|&i| unconfirmed(t.get(i).unwrap())).collect();
        assert_eq!(got, [true, false, false, false, true, false, true, false]);
        // secure_tcp's SYNACK is a handshake too.
        let mut e = *t.get(syn).unwrap();
        e.state = TcpState::SynAck as u8;
        assert!(unconfirmed(&e));
    }

    #[test]
    fn a_full_table_makes_room_from_handshakes_only_and_takes_their_templates_along() {
        let mut t = table(8);
        let est = conn(&mut t, 1, &[tcp_flags::SYN, tcp_flags::ACK]);
        let assured = template(&mut t, 2);
        t.get_mut(assured).unwrap().state = TEMPLATE_STATE_ASSURED;
        // A spoofed persistent SYN: template + connection in SYN_RECV.
        let tm = template(&mut t, 3);
        let c = conn(&mut t, 3, &[tcp_flags::SYN]);
        assert!(t.set_control(c, tm));
        for i in 4..8 {
            conn(&mut t, i, &[tcp_flags::SYN, tcp_flags::ACK]);
        }
        assert_eq!(t.len(), 8);
        let mut d = Defense::new(t.capacity());
        // Every entry was a candidate once (the engine notes each handshake and template).
        for i in 0..8 {
            d.note(i);
        }
        let mut released = Vec::new();
        let n = d.make_room(&mut t, 2, 100, |e| released.push(*e.key()));
        assert_eq!(n, 2, "the handshake and its template");
        assert_eq!(released.len(), 2);
        assert!(released.iter().all(|k| k.caddr == 3));
        assert_eq!(t.len(), 6);
        assert!(t.get(est).is_some() && t.get(assured).is_some());
        // Nothing else is evictable: the hand gives up after a bounded scan, and after a whole
        // turn without a victim it scans only DRY_SCAN slots per call.
        let n = d.make_room(&mut t, 3, 100, |_| panic!("nothing to evict"));
        assert_eq!((n, t.len()), (0, 6));
        assert!(d.dry >= 8);
        // A new handshake is found by the hand and ends the dry spell.
        let h = conn(&mut t, 9, &[tcp_flags::SYN]);
        d.note(h);
        for _ in 0..8 {
            if d.make_room(&mut t, 2, 100, |_| {}) > 0 {
                break;
            }
        }
        assert!(t.get(h).is_none() && d.dry == 0);
    }

    #[test]
    fn under_a_flood_a_handshake_survives_a_full_turn_of_the_hand() {
        // 1,000 slots, 100 established; then spoofed SYNs, one legitimate SYN in the middle:
        // it must survive at least (slots - established) further SYNs before being evicted.
        let cap = 1000;
        let mut t = table(cap);
        let mut d = Defense::new(t.capacity());
        for i in 0..100 {
            let idx = conn(&mut t, 1_000_000 + i, &[tcp_flags::SYN, tcp_flags::ACK]);
            d.note(idx);
        }
        let tm = Timeouts::default().in_ticks(16);
        let mut spoofed = 0u32;
        let syn = |t: &mut ConnTable, d: &mut Defense, c: u32| -> u32 {
            if t.capacity() - t.len() < 2 {
                d.make_room(t, 2, 100, |_| {});
            }
            let idx = t.insert(key(c, 7), ConnInit { server: 1, state: 0, flags: F_INACTIVE, timeout: 48 }, 0).unwrap();
            t.get_mut(idx).unwrap().apply_tcp(tcp_flags::SYN, &tm);
            d.note(idx);
            idx
        };
        for _ in 0..5000 {
            spoofed += 1;
            syn(&mut t, &mut d, spoofed);
        }
        let legit_key = key(42, 7);
        syn(&mut t, &mut d, 42);
        let mut survived = 0;
        while t.lookup(&legit_key).is_some() {
            spoofed += 1;
            syn(&mut t, &mut d, spoofed);
            survived += 1;
            assert!(survived < 10_000, "never evicted");
        }
        assert!(survived >= (cap - 100 - 2) as u32, "evicted after only {survived} SYNs");
        // The established connections are all still there.
        for i in 0..100 {
            assert!(t.lookup(&key(1_000_000 + i, 1000)).is_some());
        }
    }

    #[test]
    fn a_block_of_confirmed_connections_does_not_stall_the_hand() {
        // 65,536 established connections in the first slots (opened first), then a flood:
        // every SYN must find room, the hand stepping over the block 64 slots at a time.
        let cap = 70_000;
        let mut t = table(cap);
        let mut d = Defense::new(cap);
        for i in 0..65_536 {
            // As the engine does: noted on the SYN, confirmed on the ACK.
            let idx = conn(&mut t, 1_000_000 + i, &[tcp_flags::SYN, tcp_flags::ACK]);
            d.note(idx);
            d.confirmed(idx);
        }
        let tm = Timeouts::default().in_ticks(16);
        for c in 0..100_000u32 {
            if t.capacity() - t.len() < 2 {
                d.make_room(&mut t, 2, 100, |_| {});
            }
            let idx = t.insert(key(c, 9), ConnInit { server: 1, state: 0, flags: F_INACTIVE, timeout: 48 }, 0).expect("room for every SYN");
            t.get_mut(idx).unwrap().apply_tcp(tcp_flags::SYN, &tm);
            d.note(idx);
        }
        assert_eq!(t.len(), cap - 1);
        assert!(t.lookup(&key(1_000_000, 1000)).is_some());
    }

    #[test]
    fn levels_follow_amemthresh_as_the_kernel_does() {
        let mut t = table(4096);
        let mut d = Defense::new(t.capacity());
        // 4,096 free entries of ~59 B: ~59 pages available.
        let pages = available_pages(&t);
        assert!((50..70).contains(&pages), "{pages}");
        let auto = DefenseSysctl { drop_entry: 1, drop_packet: 1, secure_tcp: 1, amemthresh: 30, am_droprate: 10 };
        d.update(&auto, &t);
        assert!(!d.nomem() && !d.drop_entry_on() && !d.secure_tcp() && !d.drop_packet());
        for i in 0..3000 {
            conn(&mut t, i, &[tcp_flags::SYN]);
        }
        // ~15 pages left < 30: automatic modes on; drop rate 30 / (30 - avail).
        d.update(&auto, &t);
        let avail = available_pages(&t);
        assert!(avail < 30);
        assert!(d.nomem() && d.drop_entry_on() && d.secure_tcp());
        let rate = (30 / (30 - avail)) as usize;
        assert!(rate >= 2, "{avail}");
        let drops = (0..rate * 10).filter(|_| d.drop_packet()).count();
        assert_eq!(drops, 10);
        // Mode 3 always on with am_droprate; mode 0 off even when short.
        let always = DefenseSysctl { drop_entry: 3, drop_packet: 3, secure_tcp: 0, amemthresh: 0, am_droprate: 4 };
        d.update(&always, &t);
        assert!(!d.nomem() && d.drop_entry_on() && !d.secure_tcp());
        assert_eq!((0..40).filter(|_| d.drop_packet()).count(), 10);
        let all = DefenseSysctl { drop_packet: 3, am_droprate: 1, ..always };
        d.update(&all, &t);
        assert!((0..5).all(|_| d.drop_packet()));
        let none = DefenseSysctl { drop_packet: 3, am_droprate: 0, ..always };
        d.update(&none, &t);
        assert!((0..5).all(|_| !d.drop_packet()));
    }

    #[test]
    fn the_drop_entry_sweep_covers_a_32nd_of_the_table_per_second() {
        let cap = 3200;
        let mut t = table(cap);
        for i in 0..cap as u32 {
            conn(&mut t, i, &[tcp_flags::SYN]);
        }
        let mut d = Defense::new(t.capacity());
        let cfg = DefenseSysctl { drop_entry: 3, ..DefenseSysctl::default() };
        let tps = 16;
        let mut dropped = 0;
        // Ten seconds in ticks: 10 × 3200 / 32 = 1000 slots examined, all SYN_RECV.
        for now in 0..=(10 * tps) {
            dropped += d.tick(&cfg, &mut t, now, tps, |_| {});
        }
        assert!((990..=1010).contains(&dropped), "{dropped}");
        // Off (a new snapshot re-evaluates at once, as a sysctl write does in the kernel).
        let off = DefenseSysctl::default();
        d.update(&off, &t);
        let mut more = 0;
        for now in (10 * tps + 1)..(20 * tps + 2) {
            more += d.tick(&off, &mut t, now, tps, |_| {});
        }
        assert_eq!(more, 0);
    }
}
