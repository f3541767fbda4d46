//! Real-server schedulers with the Linux IPVS semantics (IPVS reference §4).
//!
//! A scheduler picks a destination for a new connection (or new template) of one service. The
//! service's destinations are seen through [`DestSet`], in the **kernel's list order**: newest
//! added first. Ties always resolve to the earlier element of that order. "Usable" means a
//! positive weight and not overloaded, unless a scheduler says otherwise. Load is `overhead(d) = active·256 +
//! inactive`; it and every weight product are computed in 64/128 bits, so they never overflow
//! (the kernel uses `int` overheads and `s64` products: identical results for any realistic
//! counts).
//!
//! Stateful schedulers (rr, wrr) keep a cursor as a (server id, position) pair; the position is
//! a hint checked against the id on use. The hashing schedulers (sh, dh, mh; module [`hash`])
//! keep lookup tables of destination indices that `update` rebuilds from the new list, as the
//! kernel does on every add, remove and edit, so the indices are valid until the next update;
//! mh also keeps each server's last non-zero weight there, keyed by server id. Whenever the
//! service's destination list changes (add, remove, weight edit) the owner calls
//! [`Scheduler::update`] with the old and new lists.
//!
//! Concurrency: each worker owns one `Scheduler` per service (single writer, no locks, no
//! atomics); rr and wrr additionally rotate as one sequence across workers through the
//! service's shared [`Rotation`] (module [`rotation`]), which the engine uses instead. `schedule` never allocates and never panics (a scheduler that was never updated
//! builds its state from the first list it schedules over, which for mh allocates once: use
//! [`Scheduler::with_dests`]). `update` never panics; for rr and wrr it does not allocate and
//! is O(old·new) in the worst case; sh and dh rebuild a 256-entry table in place; mh rebuilds
//! its 4093-slot table with scratch allocations. Both `new` (sh/dh/mh allocate their table) and
//! `update` belong to the slow path (configuration changes, between bursts).

pub mod hash;
pub mod rotation;

pub use hash::{Dh, Mh, Sh};
pub use rotation::{Rotation, RotationRegistry};

/// A service's destinations as a scheduler sees them, in kernel list order (newest first).
/// Indices are `0..len()`.
pub trait DestSet {
    /// Number of destinations.
    fn len(&self) -> usize;
    /// Stable server id of destination `i`.
    fn id(&self, i: usize) -> u32;
    /// Current weight of destination `i`.
    fn weight(&self, i: usize) -> u32;
    /// ActiveConn of destination `i` (merged across cores, boundedly stale).
    fn active(&self, i: usize) -> u32;
    /// InActConn of destination `i`.
    fn inactive(&self, i: usize) -> u32;
    /// OVERLOAD flag of destination `i` (upper connection threshold reached).
    fn overloaded(&self, i: usize) -> bool;
    /// Address and port of destination `i`, host order: mh hashes `port + addr` into the
    /// server's Maglev preference list (for DR the port is the service's port, as ipvsadm
    /// forces it; for fwmark services the configured one). The default, `(id(i), 0)`, still
    /// gives a consistent, balanced Maglev table but not the kernel's slot placement:
    /// implement it to place clients exactly as the kernel would.
    fn addr_port(&self, i: usize) -> (u32, u16) {
        (self.id(i), 0)
    }
    /// True when there are no destinations.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A plain destination record; `[DestInfo]` is a ready-made [`DestSet`] (tests, control plane).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestInfo {
    /// Server id.
    pub id: u32,
    /// Weight.
    pub weight: u32,
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// OVERLOAD flag.
    pub overloaded: bool,
    /// Address (host order), for mh.
    pub addr: u32,
    /// Port (host order), for mh.
    pub port: u16,
}

impl DestSet for [DestInfo] {
    #[inline]
    fn len(&self) -> usize {
        <[DestInfo]>::len(self)
    }
    #[inline]
    fn id(&self, i: usize) -> u32 {
        self.get(i).map_or(u32::MAX, |d| d.id)
    }
    #[inline]
    fn weight(&self, i: usize) -> u32 {
        self.get(i).map_or(0, |d| d.weight)
    }
    #[inline]
    fn active(&self, i: usize) -> u32 {
        self.get(i).map_or(0, |d| d.active)
    }
    #[inline]
    fn inactive(&self, i: usize) -> u32 {
        self.get(i).map_or(0, |d| d.inactive)
    }
    #[inline]
    fn overloaded(&self, i: usize) -> bool {
        self.get(i).is_none_or(|d| d.overloaded)
    }
    #[inline]
    fn addr_port(&self, i: usize) -> (u32, u16) {
        self.get(i).map_or((u32::MAX, 0), |d| (d.addr, d.port))
    }
}

/// Packet fields the hashing schedulers use: sh and mh hash `caddr` (plus `cport` with the
/// `sh-port` / `mh-port` flag), dh hashes `vaddr`. For ICMP errors about a connection the
/// caller passes the inner packet's fields as the kernel does (`ip_vs_iph_inverse`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedInput {
    /// Client address (host order).
    pub caddr: u32,
    /// Client port (host order).
    pub cport: u16,
    /// Destination address of the packet (host order).
    pub vaddr: u32,
}

/// `-b` scheduler flag 1 (`sh-fallback` / `mh-fallback`).
pub const SCHED_FLAG_1: u32 = 1;
/// `-b` scheduler flag 2 (`sh-port` / `mh-port`).
pub const SCHED_FLAG_2: u32 = 2;
/// `-b` scheduler flag 3.
pub const SCHED_FLAG_3: u32 = 4;

/// Scheduler names this module implements (`Scheduler::new` accepts exactly these). The kernel
/// also ships lblc, lblcr and twos.
pub const IMPLEMENTED: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "mh", "fo", "ovf",
];

/// A per-service scheduler (enum dispatch).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheduler {
    /// Round robin.
    Rr(Rr),
    /// Weighted round robin.
    Wrr(Wrr),
    /// Least connection.
    Lc,
    /// Weighted least connection (ipvsadm's default).
    Wlc,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Source hashing.
    Sh(Sh),
    /// Destination hashing.
    Dh(Dh),
    /// Maglev hashing.
    Mh(Mh),
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// rr or wrr through the service's cursor shared by every worker (module [`rotation`]);
    /// the engine uses it for rr/wrr services instead of [`Scheduler::Rr`]/[`Scheduler::Wrr`].
    Shared(Rotation),
}

impl Scheduler {
    /// The scheduler called `name` (as given to `ipvsadm -s`); `flags` are the `-b` scheduler
    /// flags ([`SCHED_FLAG_1`] = `sh-fallback`/`mh-fallback`, [`SCHED_FLAG_2`] =
    /// `sh-port`/`mh-port`; the others ignore them). State is initialised from the first list
    /// passed to `schedule` or `update` (prefer [`Self::with_dests`]). `None` for an unknown
    /// name and for lblc/lblcr/twos.
    pub fn new(name: &str, flags: u32) -> Option<Scheduler> {
        Some(match name {
            "rr" => Scheduler::Rr(Rr::default()),
            "wrr" => Scheduler::Wrr(Wrr::default()),
            "lc" => Scheduler::Lc,
            "wlc" => Scheduler::Wlc,
            "sed" => Scheduler::Sed,
            "nq" => Scheduler::Nq,
            "sh" => Scheduler::Sh(Sh::new(flags)),
            "dh" => Scheduler::Dh(Dh::new()),
            "mh" => Scheduler::Mh(Mh::new(flags)),
            "fo" => Scheduler::Fo,
            "ovf" => Scheduler::Ovf,
            _ => return None,
        })
    }

    /// [`Self::new`] followed by [`Self::update`] from an empty list to `dests` (the kernel's
    /// `init_service` on an existing list).
    pub fn with_dests<D: DestSet + ?Sized>(name: &str, flags: u32, dests: &D) -> Option<Scheduler> {
        let mut s = Self::new(name, flags)?;
        s.update(&[] as &[DestInfo], dests);
        Some(s)
    }

    /// The scheduler's name.
    pub fn name(&self) -> &'static str {
        match self {
            Scheduler::Rr(_) => "rr",
            Scheduler::Wrr(_) => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Sh(_) => "sh",
            Scheduler::Dh(_) => "dh",
            Scheduler::Mh(_) => "mh",
            Scheduler::Fo => "fo",
            Scheduler::Ovf => "ovf",
            Scheduler::Shared(r) => match r.kind() {
                rotation::Kind::Rr => "rr",
                rotation::Kind::Wrr { .. } => "wrr",
            },
        }
    }

    /// Pick a destination index in `dests` for a new connection, or `None` ("no destination
    /// available").
    #[inline]
    pub fn schedule<D: DestSet + ?Sized>(
        &mut self,
        dests: &D,
        input: &SchedInput,
    ) -> Option<usize> {
        match self {
            Scheduler::Rr(s) => s.schedule(dests),
            Scheduler::Wrr(s) => s.schedule(dests),
            Scheduler::Lc => lc(dests),
            Scheduler::Wlc => wlc(dests),
            Scheduler::Sed => sed(dests),
            Scheduler::Nq => nq(dests),
            Scheduler::Sh(s) => s.schedule(dests, input),
            Scheduler::Dh(s) => s.schedule(dests, input),
            Scheduler::Mh(s) => s.schedule(dests, input),
            Scheduler::Fo => fo(dests),
            Scheduler::Ovf => ovf(dests),
            Scheduler::Shared(r) => r.schedule(dests),
        }
    }

    /// The service's destination list changed from `old` to `new` (adds, removals, weight
    /// edits; one call may cover several changes).
    pub fn update<O: DestSet + ?Sized, N: DestSet + ?Sized>(&mut self, old: &O, new: &N) {
        match self {
            Scheduler::Rr(s) => s.update(old, new),
            Scheduler::Wrr(s) => s.update(new),
            Scheduler::Sh(s) => s.update(new),
            Scheduler::Dh(s) => s.update(new),
            Scheduler::Mh(s) => s.update(new),
            _ => {}
        }
    }

    /// Changes the `-b` scheduler flags without resetting the state (the kernel reads them at
    /// each lookup; an edit that only changes flags keeps the scheduler and, for mh, the last
    /// weights it remembers).
    pub fn set_flags(&mut self, flags: u32) {
        match self {
            Scheduler::Sh(s) => s.set_flags(flags),
            Scheduler::Mh(s) => s.set_flags(flags),
            _ => {}
        }
    }
}

/// Position of `id` in `d`, trying `hint` first.
#[inline]
fn find<D: DestSet + ?Sized>(d: &D, id: u32, hint: usize) -> Option<usize> {
    if hint < d.len() && d.id(hint) == id {
        return Some(hint);
    }
    (0..d.len()).find(|&i| d.id(i) == id)
}

#[inline]
fn overhead<D: DestSet + ?Sized>(d: &D, i: usize) -> u64 {
    (u64::from(d.active(i)) << 8) + u64::from(d.inactive(i))
}

#[inline]
fn usable<D: DestSet + ?Sized>(d: &D, i: usize) -> bool {
    !d.overloaded(i) && d.weight(i) > 0
}

// ---------------------------------------------------------------------------------------------
// rr

/// Round-robin state: the cursor (last chosen destination, or the list head).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rr {
    /// `(server id, position hint)` of the last chosen destination; `None` = list head.
    cursor: Option<(u32, usize)>,
}

impl Rr {
    /// Walk forward from the cursor (wrapping over the head, ending with the cursor itself)
    /// and take the first usable destination.
    pub fn schedule<D: DestSet + ?Sized>(&mut self, d: &D) -> Option<usize> {
        let n = d.len();
        let start = match self.cursor.and_then(|(id, hint)| find(d, id, hint)) {
            Some(p) => p + 1,
            None => 0,
        };
        for k in 0..n {
            let i = (start + k) % n;
            if usable(d, i) {
                self.cursor = Some((d.id(i), i));
                return Some(i);
            }
        }
        None
    }

    /// Keep the cursor on the same server id. If that server was removed, the cursor moves to
    /// its predecessor in the new list, as the kernel's `del_dest` does (each deletion of the
    /// cursor's server moves it to the previous element, or to the head). A batch is treated
    /// as "additions first (each at the front), then removals": the predecessor is the nearest
    /// surviving server that preceded it in `old`, else the last newly added server (the one
    /// just before the old survivors), else the list head. Additions alone never move it.
    pub fn update<O: DestSet + ?Sized, N: DestSet + ?Sized>(&mut self, old: &O, new: &N) {
        let Some((id, hint)) = self.cursor else {
            return;
        };
        if let Some(p) = find(new, id, hint) {
            self.cursor = Some((id, p));
            return;
        }
        self.cursor = None;
        let Some(op) = find(old, id, hint) else {
            return;
        };
        for q in (0..op).rev() {
            let pid = old.id(q);
            if let Some(p) = find(new, pid, q) {
                self.cursor = Some((pid, p));
                return;
            }
        }
        let mut added = 0;
        while added < new.len() && find(old, new.id(added), added).is_none() {
            added += 1;
        }
        if added > 0 {
            self.cursor = Some((new.id(added - 1), added - 1));
        }
    }

    /// Server id under the cursor (`None` = list head).
    pub fn cursor(&self) -> Option<u32> {
        self.cursor.map(|c| c.0)
    }
}

// ---------------------------------------------------------------------------------------------
// wrr

/// Weighted round-robin state (kernel `ip_vs_wrr_mark`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wrr {
    /// Cursor `(id, position hint)`; `None` = list head.
    cl: Option<(u32, usize)>,
    /// Current weight.
    cw: i64,
    /// Max weight − (gcd − 1).
    mw: i64,
    /// gcd of positive weights (1 if none).
    di: i64,
    /// `update` has run at least once (else `schedule` initialises from the list it is given,
    /// like the kernel's `init_service`).
    ready: bool,
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Wrr {
    /// Kernel `ip_vs_wrr_dest_changed`: cursor := head, recompute gcd and mw; then
    /// `cw := mw` if `cw > mw` or `cw == 0`, else if gcd > 1, `cw := (cw / gcd)·gcd + 1`.
    pub fn update<N: DestSet + ?Sized>(&mut self, d: &N) {
        let mut g = 0i64;
        let mut maxw = 0i64;
        for i in 0..d.len() {
            let w = i64::from(d.weight(i));
            if w > 0 {
                g = if g > 0 { gcd(w, g) } else { w };
            }
            maxw = maxw.max(w);
        }
        self.ready = true;
        self.di = if g > 0 { g } else { 1 };
        self.mw = maxw - (self.di - 1);
        self.cl = None;
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    /// Kernel `ip_vs_wrr_schedule`: continue from the cursor; the first non-overloaded
    /// destination with weight ≥ cw wins; at the end of the list cw −= gcd, wrapping to mw,
    /// failing once every destination has been checked against cw ≤ gcd.
    pub fn schedule<D: DestSet + ?Sized>(&mut self, d: &D) -> Option<usize> {
        if !self.ready {
            self.update(d);
        }
        if self.mw <= 0 || self.di <= 0 {
            return None;
        }
        let n = d.len();
        let last: Option<usize> = self.cl.and_then(|(id, hint)| find(d, id, hint));
        let mut dest = last;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        // Bound: each round lowers cw by di; cw wraps to mw at most twice before failing.
        let max_rounds = 2 * (self.mw / self.di) + 4;
        for _ in 0..max_rounds {
            let from = dest.map_or(0, |p| p + 1);
            for i in from..n {
                if !d.overloaded(i) && i64::from(d.weight(i)) >= self.cw {
                    self.cl = Some((d.id(i), i));
                    return Some(i);
                }
                if stop == Some(i) {
                    self.cl = Some((d.id(i), i));
                    return None;
                }
            }
            dest = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
        self.cl = None;
        None
    }

    /// A state from its parts (the shared rotation's word plus the list's constants).
    pub fn from_parts(cl: Option<(u32, usize)>, cw: i64, mw: i64, di: i64) -> Wrr {
        Wrr { cl, cw, mw, di, ready: true }
    }

    /// (cursor server id, cw, mw, di), for tests and diagnostics.
    pub fn state(&self) -> (Option<u32>, i64, i64, i64) {
        (self.cl.map(|c| c.0), self.cw, self.mw, self.di)
    }
}

// ---------------------------------------------------------------------------------------------
// stateless schedulers

/// lc: minimum overhead among usable destinations (strict `<`: first minimum wins).
pub fn lc<D: DestSet + ?Sized>(d: &D) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for i in 0..d.len() {
        if !usable(d, i) {
            continue;
        }
        let doh = overhead(d, i);
        if least.is_none_or(|(_, loh)| doh < loh) {
            least = Some((i, doh));
        }
    }
    least.map(|(i, _)| i)
}

/// Shared body of wlc and sed: first usable destination as candidate, then any later
/// non-overloaded `d` replaces it when `cost(least)·weight(d) > cost(d)·weight(least)`.
#[inline]
fn weighted_least<D: DestSet + ?Sized>(d: &D, cost: impl Fn(&D, usize) -> u64) -> Option<usize> {
    let first = (0..d.len()).find(|&i| usable(d, i))?;
    let mut least = first;
    let mut loh = cost(d, first);
    for i in first + 1..d.len() {
        if d.overloaded(i) {
            continue;
        }
        let doh = cost(d, i);
        if u128::from(loh) * u128::from(d.weight(i)) > u128::from(doh) * u128::from(d.weight(least))
        {
            least = i;
            loh = doh;
        }
    }
    Some(least)
}

/// wlc: minimise overhead/weight, ties to the earlier destination.
pub fn wlc<D: DestSet + ?Sized>(d: &D) -> Option<usize> {
    weighted_least(d, overhead)
}

#[inline]
fn active_plus_one<D: DestSet + ?Sized>(d: &D, i: usize) -> u64 {
    u64::from(d.active(i)) + 1
}

/// sed: minimise (active + 1)/weight, ties to the earlier destination.
pub fn sed<D: DestSet + ?Sized>(d: &D) -> Option<usize> {
    weighted_least(d, active_plus_one)
}

/// nq: the first usable destination with no active connection, else the sed rule.
pub fn nq<D: DestSet + ?Sized>(d: &D) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for i in 0..d.len() {
        if !usable(d, i) {
            continue;
        }
        if d.active(i) == 0 {
            return Some(i);
        }
        let doh = active_plus_one(d, i);
        let better = match least {
            None => true,
            Some((l, loh)) => {
                u128::from(loh) * u128::from(d.weight(i))
                    > u128::from(doh) * u128::from(d.weight(l))
            }
        };
        if better {
            least = Some((i, doh));
        }
    }
    least.map(|(i, _)| i)
}

/// fo: highest weight among non-overloaded destinations with weight > 0 (first of equals).
pub fn fo<D: DestSet + ?Sized>(d: &D) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for i in 0..d.len() {
        let w = d.weight(i);
        if !d.overloaded(i) && w > best.map_or(0, |b| b.1) {
            best = Some((i, w));
        }
    }
    best.map(|b| b.0)
}

/// ovf: highest weight among destinations with weight > 0, not overloaded and
/// active ≤ weight (first of equals).
pub fn ovf<D: DestSet + ?Sized>(d: &D) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for i in 0..d.len() {
        let w = d.weight(i);
        if d.overloaded(i) || d.active(i) > w || w == 0 {
            continue;
        }
        if best.is_none_or(|b| w > b.1) {
            best = Some((i, w));
        }
    }
    best.map(|b| b.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IN: SchedInput = SchedInput {
        caddr: 0,
        cport: 0,
        vaddr: 0,
    };

    fn d(id: u32, weight: u32) -> DestInfo {
        DestInfo {
            id,
            weight,
            ..Default::default()
        }
    }

    fn dl(id: u32, weight: u32, active: u32, inactive: u32) -> DestInfo {
        DestInfo {
            id,
            weight,
            active,
            inactive,
            overloaded: false,
            ..Default::default()
        }
    }

    fn picks(s: &mut Scheduler, ds: &[DestInfo], n: usize) -> Vec<Option<u32>> {
        (0..n)
            .map(|_| s.schedule(ds, &IN).map(|i| ds[i].id))
            .collect()
    }

    #[test]
    fn names() {
        for n in IMPLEMENTED {
            assert_eq!(Scheduler::new(n, 0).unwrap().name(), *n);
        }
        for n in ["lblc", "lblcr", "twos", "nope", ""] {
            assert!(Scheduler::new(n, 0).is_none(), "{n}");
        }
    }

    #[test]
    fn wrr_documented_sequence() {
        // A=4, B=3, C=2 in list order A, B, C: A A B A B C A B C, repeating.
        let ds = [d(1, 4), d(2, 3), d(3, 2)];
        let mut s = Scheduler::with_dests("wrr", 0, &ds[..]).unwrap();
        let seq: Vec<u32> = picks(&mut s, &ds, 27)
            .into_iter()
            .map(Option::unwrap)
            .collect();
        let one = [1, 1, 2, 1, 2, 3, 1, 2, 3];
        assert_eq!(seq, [one, one, one].concat());
    }

    #[test]
    fn wrr_gcd_and_overload() {
        let ds = [d(1, 4), d(2, 2)];
        let mut s = Scheduler::with_dests("wrr", 0, &ds[..]).unwrap();
        if let Scheduler::Wrr(w) = &s {
            assert_eq!(w.state(), (None, 3, 3, 2));
        }
        assert_eq!(picks(&mut s, &ds, 6), [1, 1, 2, 1, 1, 2].map(Some));
        // Overloaded A: only B, and the others keep their ratio.
        let mut ds = [d(1, 4), d(2, 3), d(3, 2)];
        ds[0].overloaded = true;
        let mut s = Scheduler::with_dests("wrr", 0, &ds[..]).unwrap();
        assert_eq!(picks(&mut s, &ds, 5), [2, 2, 3, 2, 3].map(Some));
        // Everything overloaded: fail, then recover when the flag clears.
        for x in ds.iter_mut() {
            x.overloaded = true;
        }
        assert_eq!(picks(&mut s, &ds, 3), [None, None, None]);
        ds[2].overloaded = false;
        assert_eq!(picks(&mut s, &ds, 2), [Some(3), Some(3)]);
        // All weights 0: mw = 0, no destination.
        let z = [d(1, 0), d(2, 0)];
        let mut s = Scheduler::with_dests("wrr", 0, &z[..]).unwrap();
        assert_eq!(picks(&mut s, &z, 2), [None, None]);
        let mut e = Scheduler::with_dests("wrr", 0, &[] as &[DestInfo]).unwrap();
        assert_eq!(e.schedule(&[] as &[DestInfo], &IN), None);
        // Never updated: the first schedule initialises from the list (kernel init_service).
        let ds = [d(1, 4), d(2, 3), d(3, 2)];
        let mut s = Scheduler::new("wrr", 0).unwrap();
        assert_eq!(picks(&mut s, &ds, 4), [1, 1, 2, 1].map(Some));
    }

    #[test]
    fn wrr_update_rules() {
        let mut w = Wrr::default();
        let ds = [d(1, 4), d(2, 3), d(3, 2)];
        w.update(&ds[..]);
        assert_eq!(w.state(), (None, 4, 4, 1));
        assert_eq!(w.schedule(&ds[..]), Some(0));
        assert_eq!(w.schedule(&ds[..]), Some(0)); // cw 3 now
        assert_eq!(w.state(), (Some(1), 3, 4, 1));
        // cw <= mw, di = 1: cw kept, cursor back to head.
        let ds2 = [d(4, 1), d(1, 4), d(2, 3), d(3, 2)];
        w.update(&ds2[..]);
        assert_eq!(w.state(), (None, 3, 4, 1));
        // cw > new mw: cw := mw.
        let ds3 = [d(1, 2), d(2, 2)];
        w.update(&ds3[..]);
        assert_eq!(w.state(), (None, 1, 1, 2));
        // di > 1 and cw <= mw: cw := (cw / di) * di + 1.
        let ds4 = [d(1, 8), d(2, 4)];
        w.update(&ds4[..]); // di 4, mw 5; cw 1 -> (1/4)*4+1 = 1
        assert_eq!(w.state(), (None, 1, 5, 4));
        w.cw = 5;
        let ds5 = [d(1, 12), d(2, 6)]; // di 6, mw 7; cw 5 -> 0*6+1 = 1
        w.update(&ds5[..]);
        assert_eq!(w.state(), (None, 1, 7, 6));
        w.cw = 0;
        w.update(&ds5[..]);
        assert_eq!(w.state(), (None, 7, 7, 6));
    }

    #[test]
    fn rr_skips_weight_zero_and_overloaded() {
        let mut ds = [d(1, 1), d(2, 0), d(3, 5), d(4, 1)];
        ds[3].overloaded = true;
        let mut s = Scheduler::with_dests("rr", 0, &ds[..]).unwrap();
        assert_eq!(picks(&mut s, &ds, 5), [1, 3, 1, 3, 1].map(Some));
        ds[0].weight = 0;
        ds[2].overloaded = true;
        assert_eq!(picks(&mut s, &ds, 2), [None, None]);
    }

    #[test]
    fn rr_cursor_follows_updates() {
        let ds = [d(1, 1), d(2, 1), d(3, 1), d(4, 1)];
        let mut rr = Rr::default();
        assert_eq!(rr.schedule(&ds[..]), Some(0));
        assert_eq!(rr.schedule(&ds[..]), Some(1));
        assert_eq!(rr.schedule(&ds[..]), Some(2)); // cursor on 3
                                                   // Add 9 at the front: the cursor stays on 3, next is 4 then the new head.
        let add = [d(9, 1), d(1, 1), d(2, 1), d(3, 1), d(4, 1)];
        rr.update(&ds[..], &add[..]);
        assert_eq!(rr.cursor(), Some(3));
        assert_eq!(rr.schedule(&add[..]).map(|i| add[i].id), Some(4));
        assert_eq!(rr.schedule(&add[..]).map(|i| add[i].id), Some(9));
        assert_eq!(rr.schedule(&add[..]).map(|i| add[i].id), Some(1)); // cursor on 1
                                                                       // Delete the cursor's server (1): cursor moves to its predecessor 9, so next is 2.
        let del = [d(9, 1), d(2, 1), d(3, 1), d(4, 1)];
        rr.update(&add[..], &del[..]);
        assert_eq!(rr.cursor(), Some(9));
        assert_eq!(rr.schedule(&del[..]).map(|i| del[i].id), Some(2));
        // Delete 9, 2 (cursor) and 3 at once: predecessor chain 9 is gone too -> head.
        let del2 = [d(4, 1)];
        rr.update(&del[..], &del2[..]);
        assert_eq!(rr.cursor(), None);
        assert_eq!(rr.schedule(&del2[..]), Some(0));
        // Deleting the first element with the cursor on it: head, next is the old second.
        let l = [d(1, 1), d(2, 1)];
        let mut rr = Rr::default();
        rr.schedule(&l[..]);
        rr.update(&l[..], &l[1..]);
        assert_eq!(rr.cursor(), None);
    }

    #[test]
    fn lc_first_minimum_256_factor() {
        let ds = [
            dl(1, 1, 1, 0),
            dl(2, 1, 0, 256),
            dl(3, 1, 0, 255),
            dl(4, 0, 0, 0),
        ];
        assert_eq!(lc(&ds[..]), Some(2));
        let ds = [dl(1, 1, 1, 0), dl(2, 1, 0, 256)];
        assert_eq!(lc(&ds[..]), Some(0)); // equal overhead: first wins
        let mut ds = [dl(1, 1, 5, 0), dl(2, 1, 0, 0)];
        ds[1].overloaded = true;
        assert_eq!(lc(&ds[..]), Some(0));
    }

    #[test]
    fn wlc_ties_and_wide_products() {
        // Equal ratio 2/2 = 1/1: the earlier one wins.
        let ds = [dl(1, 2, 0, 2), dl(2, 1, 0, 1)];
        assert_eq!(wlc(&ds[..]), Some(0));
        let ds = [dl(1, 1, 0, 1), dl(2, 2, 0, 2)];
        assert_eq!(wlc(&ds[..]), Some(0));
        // Weight 0 never wins, even when idle.
        let ds = [dl(1, 1, 10, 0), dl(2, 0, 0, 0)];
        assert_eq!(wlc(&ds[..]), Some(0));
        // Overloaded first one is skipped as the initial candidate.
        let mut ds = [dl(1, 5, 0, 0), dl(2, 1, 3, 0)];
        ds[0].overloaded = true;
        assert_eq!(wlc(&ds[..]), Some(1));
        // Products beyond 32 bits: overhead 2_560_000_000 times weight 65535.
        let ds = [dl(1, 65535, 10_000_000, 0), dl(2, 65535, 9_999_999, 0)];
        assert_eq!(wlc(&ds[..]), Some(1));
        // 10_000_000/65535 = 152.590 < 9_999_999/65534 = 152.592: the first stays.
        let ds = [dl(1, 65535, 10_000_000, 0), dl(2, 65534, 9_999_999, 0)];
        assert_eq!(wlc(&ds[..]), Some(0));
        // Overheads beyond 32 bits (the kernel's int would wrap): 2^24·256 = 2^32.
        let ds = [dl(1, 3, 1 << 24, 0), dl(2, 1, 1 << 23, 0)];
        assert_eq!(wlc(&ds[..]), Some(0)); // 2^32/3 < 2^31/1
        let ds = [
            dl(1, u32::MAX, u32::MAX, u32::MAX),
            dl(2, u32::MAX, u32::MAX, u32::MAX - 1),
        ];
        assert_eq!(wlc(&ds[..]), Some(1));
        let none: [DestInfo; 0] = [];
        assert_eq!(wlc(&none[..]), None);
        assert_eq!(wlc(&[dl(1, 0, 0, 0)][..]), None);
    }

    #[test]
    fn sed_and_nq() {
        // sed ignores inactive: (0+1)/1 vs (0+1)/3 -> B.
        let ds = [dl(1, 1, 0, 0), dl(2, 3, 0, 1000)];
        assert_eq!(sed(&ds[..]), Some(1));
        // nq returns the first idle usable server at once; sed would pick A (6/10 < 1/1).
        let ds = [dl(1, 10, 5, 0), dl(2, 1, 0, 0)];
        assert_eq!(sed(&ds[..]), Some(0));
        assert_eq!(nq(&ds[..]), Some(1));
        // nq without idle servers: sed rule, ties to the first.
        let ds = [dl(1, 1, 1, 0), dl(2, 2, 3, 0), dl(3, 1, 1, 0)];
        assert_eq!(nq(&ds[..]), Some(0)); // 2/1 == 4/2, first wins
                                          // Weight-0 idle servers are not "idle servers" for nq.
        let ds = [dl(1, 0, 0, 0), dl(2, 1, 4, 0)];
        assert_eq!(nq(&ds[..]), Some(1));
    }

    #[test]
    fn fo_and_ovf() {
        let mut ds = [d(1, 3), d(2, 5), d(3, 5), d(4, 0)];
        assert_eq!(fo(&ds[..]), Some(1));
        ds[1].overloaded = true;
        assert_eq!(fo(&ds[..]), Some(2));
        assert_eq!(fo(&[d(1, 0)][..]), None);
        let ds = [dl(1, 3, 3, 0), dl(2, 5, 6, 0), dl(3, 4, 0, 9)];
        assert_eq!(ovf(&ds[..]), Some(2)); // 2 has active > weight
        let ds = [dl(1, 3, 4, 0), dl(2, 0, 0, 0)];
        assert_eq!(ovf(&ds[..]), None);
    }

    // --- models ------------------------------------------------------------------------------

    fn usable_m(x: &DestInfo) -> bool {
        x.weight > 0 && !x.overloaded
    }

    /// First index minimising cost/weight among usable destinations (exact rationals).
    fn min_ratio(ds: &[DestInfo], cost: impl Fn(&DestInfo) -> u128) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, x) in ds.iter().enumerate() {
            if !usable_m(x) {
                continue;
            }
            best = match best {
                Some(b)
                    if cost(&ds[b]) * u128::from(x.weight)
                        <= cost(x) * u128::from(ds[b].weight) =>
                {
                    Some(b)
                }
                _ => Some(i),
            };
        }
        best
    }

    fn model_lc(ds: &[DestInfo]) -> Option<usize> {
        let oh = |x: &DestInfo| u128::from(x.active) * 256 + u128::from(x.inactive);
        ds.iter()
            .enumerate()
            .filter(|(_, x)| usable_m(x))
            .min_by_key(|(i, x)| (oh(x), *i))
            .map(|(i, _)| i)
    }

    fn model_wlc(ds: &[DestInfo]) -> Option<usize> {
        min_ratio(ds, |x| u128::from(x.active) * 256 + u128::from(x.inactive))
    }

    fn model_sed(ds: &[DestInfo]) -> Option<usize> {
        min_ratio(ds, |x| u128::from(x.active) + 1)
    }

    fn model_nq(ds: &[DestInfo]) -> Option<usize> {
        ds.iter()
            .position(|x| usable_m(x) && x.active == 0)
            .or_else(|| model_sed(ds))
    }

    fn model_fo(ds: &[DestInfo]) -> Option<usize> {
        let max = ds.iter().filter(|x| usable_m(x)).map(|x| x.weight).max()?;
        ds.iter().position(|x| usable_m(x) && x.weight == max)
    }

    fn model_ovf(ds: &[DestInfo]) -> Option<usize> {
        let ok = |x: &DestInfo| usable_m(x) && x.active <= x.weight;
        let max = ds.iter().filter(|x| ok(x)).map(|x| x.weight).max()?;
        ds.iter().position(|x| ok(x) && x.weight == max)
    }

    /// The classic LVS interleaved weighted round-robin (ipvsadm(8) / LVS docs pseudo-code).
    struct ModelWrr {
        i: isize,
        cw: i64,
    }

    impl ModelWrr {
        fn next(&mut self, ds: &[DestInfo]) -> Option<usize> {
            if !ds.iter().any(usable_m) {
                return None;
            }
            let g = ds
                .iter()
                .filter(|x| x.weight > 0)
                .fold(0i64, |g, x| gcd(i64::from(x.weight), g));
            let max = i64::from(ds.iter().map(|x| x.weight).max().unwrap_or(0));
            loop {
                self.i = (self.i + 1) % ds.len() as isize;
                if self.i == 0 {
                    self.cw -= g;
                    if self.cw <= 0 {
                        self.cw = max;
                    }
                }
                let x = &ds[self.i as usize];
                if !x.overloaded && i64::from(x.weight) >= self.cw {
                    return Some(self.i as usize);
                }
            }
        }
    }

    fn dest() -> impl Strategy<Value = DestInfo> {
        (
            prop_oneof![4 => 0u32..6, 1 => 0u32..=65535, 1 => Just(u32::MAX)],
            prop_oneof![3 => 0u32..4, 1 => 0u32..2000, 1 => any::<u32>()],
            prop_oneof![3 => 0u32..4, 1 => 0u32..2000, 1 => any::<u32>()],
            proptest::bool::weighted(0.2),
        )
            .prop_map(|(weight, active, inactive, overloaded)| DestInfo {
                id: 0,
                weight,
                active,
                inactive,
                overloaded,
                ..Default::default()
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

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn stateless_match_models(ds in dests(9)) {
            let s = |n: &str| Scheduler::with_dests(n, 0, &ds[..]).unwrap().schedule(&ds[..], &IN);
            prop_assert_eq!(s("lc"), model_lc(&ds));
            prop_assert_eq!(s("wlc"), model_wlc(&ds));
            prop_assert_eq!(s("sed"), model_sed(&ds));
            prop_assert_eq!(s("nq"), model_nq(&ds));
            prop_assert_eq!(s("fo"), model_fo(&ds));
            prop_assert_eq!(s("ovf"), model_ovf(&ds));
        }

        #[test]
        fn wrr_matches_textbook_model(
            ws in proptest::collection::vec((0u32..7, proptest::bool::weighted(0.25)), 1..7),
            n in 1usize..80,
        ) {
            let ds: Vec<DestInfo> = ws.iter().enumerate()
                .map(|(i, &(w, o))| DestInfo { id: i as u32, weight: w, overloaded: o, ..Default::default() })
                .collect();
            let mut s = Scheduler::with_dests("wrr", 0, &ds[..]).unwrap();
            let mut m = ModelWrr { i: -1, cw: 0 };
            for _ in 0..n {
                prop_assert_eq!(s.schedule(&ds[..], &IN), m.next(&ds));
            }
        }

        /// rr against a literal simulation of the kernel list: servers added at the front,
        /// deleted one at a time (cursor moves to the predecessor), weights/overload edited;
        /// the implementation sees each batch of changes as one `update(old, new)`.
        #[test]
        fn rr_matches_kernel_list_model(
            steps in proptest::collection::vec(
                (proptest::collection::vec((0u8..4, 0usize..8, 0u32..3), 0..4), 0usize..6),
                1..40,
            ),
        ) {
            let mut list: Vec<DestInfo> = (0..4).map(|i| d(i, 1)).collect();
            let mut next_id = 4;
            // Model cursor: Some(id) or None (= head).
            let mut cur: Option<u32> = None;
            let mut s = Scheduler::with_dests("rr", 0, &list[..]).unwrap();
            for (changes, picks) in steps {
                let old = list.clone();
                // A batch is applied as: additions first, then the other changes in order.
                let mut changes = changes;
                changes.sort_by_key(|c| c.0 != 0);
                for (kind, at, w) in changes {
                    match kind {
                        0 => { list.insert(0, d(next_id, w)); next_id += 1; }
                        1 if !list.is_empty() => {
                            let p = at % list.len();
                            if cur == Some(list[p].id) {
                                cur = if p == 0 { None } else { Some(list[p - 1].id) };
                            }
                            list.remove(p);
                        }
                        2 if !list.is_empty() => { let p = at % list.len(); list[p].weight = w; }
                        3 if !list.is_empty() => { let p = at % list.len(); list[p].overloaded ^= true; }
                        _ => {}
                    }
                }
                s.update(&old[..], &list[..]);
                for _ in 0..picks {
                    let n = list.len();
                    let start = cur.and_then(|c| list.iter().position(|x| x.id == c)).map_or(0, |p| p + 1);
                    let want = (0..n).map(|k| (start + k) % n).find(|&i| usable_m(&list[i]));
                    if let Some(i) = want { cur = Some(list[i].id); }
                    prop_assert_eq!(s.schedule(&list[..], &IN), want);
                }
            }
        }
    }
}
