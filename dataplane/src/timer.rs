//! Coarse per-core expiry: a lazy, single-level timing wheel.
//!
//! Time is counted in *ticks* (`u32`, wrapping; the rate is a constructor parameter, the
//! dataplane uses 16 ticks per second). The wheel has `N` slots (a power of two), one tick per
//! slot, so it spans `N` ticks. Every armed entry sits in exactly one slot's intrusive
//! doubly-linked list; the links live in the entries themselves (see [`TimerNodes`]) so that
//! arming and expiring touch the cache line the caller already holds.
//!
//! Invariants (with `cursor` = the next tick still to be processed):
//! - every linked entry is linked at a tick `t` with `cursor <= t <= cursor + N - 1`, in slot
//!   `t % N`; so a slot holds exactly the entries of one tick;
//! - an entry's link tick is never later than `max(expires, cursor)`: refreshing an entry to a
//!   *later* expiry only rewrites its `expires` (O(1), no list work — "lazy refresh"), and
//!   [`TimerWheel::rearm`] re-links it when the new expiry is *earlier* than the old one;
//! - when a slot is visited, an entry whose `expires` is still in the future is re-linked at
//!   `min(expires, cursor + N - 1)` (timeouts longer than the wheel span simply get re-linked
//!   once per revolution), otherwise it is unlinked and reported as expired.
//!
//! Consequently, when the wheel is advanced every tick with enough budget, an entry is reported
//! at exactly the tick of its last-refreshed expiry, never earlier. Work per call is bounded by
//! a budget (one unit per entry visited and per slot stepped over); unfinished work continues on
//! the next call. Tick comparisons are wrapping (serial-number arithmetic), so timeouts must stay
//! below [`MAX_TIMEOUT_TICKS`].
//!
//! Concurrency: a wheel belongs to one worker core (single writer, no locks, no atomics); it
//! allocates only in its constructor and never panics.

use thiserror::Error;

/// "No entry" marker for `next` links and list heads.
pub const NIL: u32 = u32::MAX;
/// `prev` value of an entry that is not linked in the wheel.
pub const UNLINKED: u32 = u32::MAX;
/// Bit set in `prev` when the entry is the first of a slot list; the low bits are the slot.
const HEAD_BIT: u32 = 1 << 31;
/// Largest number of slots a wheel may have.
pub const MAX_SLOTS: usize = 1 << 24;
/// Entry indices handled by the wheel must be below this bound (their top bit is a tag).
pub const MAX_INDEX: u32 = HEAD_BIT - 1;
/// Longest timeout, in ticks, the wrapping tick arithmetic supports; longer ones are clamped.
pub const MAX_TIMEOUT_TICKS: u32 = 1 << 30;

/// `a` is strictly before `b` in wrapping tick arithmetic.
#[inline]
pub fn tick_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` is before or equal to `b` in wrapping tick arithmetic.
#[inline]
pub fn tick_before_eq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// Storage of the per-entry timer fields the wheel works on: the expiry tick and the two
/// intrusive links. Implemented by the connection table's slab and by [`TimerArena`].
///
/// Indices passed by the wheel are always ones the caller linked earlier; an implementation
/// must still not panic on an out-of-range index (return [`NIL`]/[`UNLINKED`], ignore writes).
pub trait TimerNodes {
    /// Expiry tick of `idx` (last refreshed value).
    fn expires(&self, idx: u32) -> u32;
    /// Next entry in the same slot list, or [`NIL`].
    fn next(&self, idx: u32) -> u32;
    /// Previous entry, `HEAD_BIT | slot` for a list head, or [`UNLINKED`].
    fn prev(&self, idx: u32) -> u32;
    /// Store the `next` link of `idx`.
    fn set_next(&mut self, idx: u32, next: u32);
    /// Store the `prev` link of `idx`.
    fn set_prev(&mut self, idx: u32, prev: u32);
}

/// Invalid wheel parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WheelConfigError {
    /// The slot count must be a power of two in `2..=MAX_SLOTS`.
    #[error("timer wheel slot count {0} is not a power of two in 2..={MAX_SLOTS}")]
    BadSlots(usize),
    /// The tick rate must be at least one tick per second.
    #[error("timer tick rate must be at least 1 tick per second")]
    BadTickRate,
}

/// What one [`TimerWheel::advance`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdvanceStats {
    /// Entries reported as expired.
    pub expired: u32,
    /// Entries visited whose expiry was still in the future and were re-linked.
    pub relinked: u32,
    /// True when every tick up to `now` has been processed (no backlog left).
    pub caught_up: bool,
}

/// A single-level lazy timing wheel (see the module documentation).
#[derive(Debug, Clone)]
pub struct TimerWheel {
    heads: Box<[u32]>,
    mask: u32,
    cursor: u32,
    ticks_per_sec: u32,
    linked: u32,
}

impl TimerWheel {
    /// A wheel of `slots` slots (power of two) at `ticks_per_sec`, whose first unprocessed tick
    /// is `now`. Allocates the slot array; nothing afterwards.
    pub fn new(slots: usize, ticks_per_sec: u32, now: u32) -> Result<Self, WheelConfigError> {
        if !(2..=MAX_SLOTS).contains(&slots) || !slots.is_power_of_two() {
            return Err(WheelConfigError::BadSlots(slots));
        }
        if ticks_per_sec == 0 {
            return Err(WheelConfigError::BadTickRate);
        }
        Ok(Self {
            heads: vec![NIL; slots].into_boxed_slice(),
            mask: (slots - 1) as u32,
            cursor: now,
            ticks_per_sec,
            linked: 0,
        })
    }

    /// Ticks per second this wheel was built with.
    #[inline]
    pub fn ticks_per_sec(&self) -> u32 {
        self.ticks_per_sec
    }

    /// Convert seconds to ticks (saturating at [`MAX_TIMEOUT_TICKS`]).
    #[inline]
    pub fn secs_to_ticks(&self, secs: u32) -> u32 {
        secs_to_ticks(secs, self.ticks_per_sec)
    }

    /// Convert ticks to whole seconds, rounding down (as the kernel prints remaining time).
    #[inline]
    pub fn ticks_to_secs(&self, ticks: u32) -> u32 {
        ticks / self.ticks_per_sec
    }

    /// Number of slots (= span of the wheel in ticks).
    #[inline]
    pub fn slots(&self) -> u32 {
        self.mask + 1
    }

    /// Next tick still to be processed; all earlier ticks have been.
    #[inline]
    pub fn cursor(&self) -> u32 {
        self.cursor
    }

    /// Number of entries currently linked.
    #[inline]
    pub fn len(&self) -> u32 {
        self.linked
    }

    /// True when no entry is linked.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.linked == 0
    }

    /// True when `idx` is linked in this wheel (per its `prev` link).
    #[inline]
    pub fn is_linked<N: TimerNodes + ?Sized>(nodes: &N, idx: u32) -> bool {
        nodes.prev(idx) != UNLINKED
    }

    /// Link `idx` according to its current `nodes.expires(idx)`. `idx` must be unlinked (a
    /// linked entry is first unlinked, so calling this twice is harmless).
    pub fn link<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        if idx > MAX_INDEX {
            return;
        }
        self.unlink(nodes, idx);
        let e = nodes.expires(idx);
        let last = self.cursor.wrapping_add(self.mask);
        let at = if tick_before_eq(e, self.cursor) {
            self.cursor
        } else if tick_before(last, e) {
            last
        } else {
            e
        };
        self.link_at(nodes, idx, at);
    }

    #[inline]
    fn link_at<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, idx: u32, tick: u32) {
        let slot = tick & self.mask;
        let Some(head) = self.heads.get_mut(slot as usize) else {
            return;
        };
        let old = *head;
        *head = idx;
        nodes.set_next(idx, old);
        nodes.set_prev(idx, HEAD_BIT | slot);
        if old != NIL {
            nodes.set_prev(old, idx);
        }
        self.linked = self.linked.wrapping_add(1);
    }

    /// Remove `idx` from its slot list; no-op when it is not linked.
    pub fn unlink<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, idx: u32) {
        let p = nodes.prev(idx);
        if p == UNLINKED {
            return;
        }
        let n = nodes.next(idx);
        if p & HEAD_BIT != 0 {
            if let Some(h) = self.heads.get_mut(((p & !HEAD_BIT) & self.mask) as usize) {
                *h = n;
            }
        } else {
            nodes.set_next(p, n);
        }
        if n != NIL {
            nodes.set_prev(n, p);
        }
        nodes.set_next(idx, NIL);
        nodes.set_prev(idx, UNLINKED);
        self.linked = self.linked.wrapping_sub(1);
    }

    /// Tell the wheel that `idx`'s expiry was rewritten from `old_expires` to the value now in
    /// `nodes`. A later (or equal) expiry costs nothing (lazy refresh); an earlier one re-links
    /// the entry so it is not reported late; an unlinked entry is linked.
    #[inline]
    pub fn rearm<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, idx: u32, old_expires: u32) {
        if nodes.prev(idx) == UNLINKED || tick_before(nodes.expires(idx), old_expires) {
            self.link(nodes, idx);
        }
    }

    /// Process due slots up to and including tick `now`, spending at most `*budget` units (one
    /// per entry visited, one per empty slot stepped over). Returns the next expired entry,
    /// already unlinked, or `None` when caught up or out of budget. Entries not yet due are
    /// re-linked (lazy refresh).
    pub fn poll_expired<N: TimerNodes + ?Sized>(
        &mut self,
        nodes: &mut N,
        now: u32,
        budget: &mut u32,
    ) -> Option<u32> {
        let mut relinked = 0;
        self.poll_inner(nodes, now, budget, &mut relinked)
    }

    fn poll_inner<N: TimerNodes + ?Sized>(
        &mut self,
        nodes: &mut N,
        now: u32,
        budget: &mut u32,
        relinked: &mut u32,
    ) -> Option<u32> {
        while *budget > 0 && tick_before_eq(self.cursor, now) {
            *budget -= 1;
            let slot = (self.cursor & self.mask) as usize;
            let head = match self.heads.get(slot) {
                Some(&h) => h,
                None => NIL,
            };
            if head == NIL {
                self.cursor = self.cursor.wrapping_add(1);
                continue;
            }
            self.unlink(nodes, head);
            let e = nodes.expires(head);
            if tick_before_eq(e, now) {
                return Some(head);
            }
            // e > now >= cursor: re-link strictly after the slot being drained.
            let last = self.cursor.wrapping_add(self.mask);
            let at = if tick_before(last, e) { last } else { e };
            self.link_at(nodes, head, at);
            *relinked += 1;
        }
        None
    }

    /// True when every tick up to `now` has been processed.
    #[inline]
    pub fn caught_up(&self, now: u32) -> bool {
        tick_before(now, self.cursor)
    }

    /// Drive the wheel up to `now` within `budget` and call `on_expire(nodes, idx)` for every
    /// expired entry (already unlinked). If `on_expire` returns `true` the entry is linked again
    /// at its (presumably rewritten) `expires`; an expiry not after `now` is then reported again
    /// in this same pass, which the budget bounds.
    pub fn advance<N, F>(
        &mut self,
        nodes: &mut N,
        now: u32,
        budget: u32,
        mut on_expire: F,
    ) -> AdvanceStats
    where
        N: TimerNodes + ?Sized,
        F: FnMut(&mut N, u32) -> bool,
    {
        let mut budget = budget;
        let mut stats = AdvanceStats::default();
        while let Some(idx) = self.poll_inner(nodes, now, &mut budget, &mut stats.relinked) {
            stats.expired += 1;
            if on_expire(nodes, idx) {
                self.link(nodes, idx);
            }
        }
        stats.caught_up = self.caught_up(now);
        stats
    }
}

/// Convert seconds to ticks at `ticks_per_sec`, saturating at [`MAX_TIMEOUT_TICKS`].
#[inline]
pub fn secs_to_ticks(secs: u32, ticks_per_sec: u32) -> u32 {
    let t = u64::from(secs) * u64::from(ticks_per_sec);
    if t > u64::from(MAX_TIMEOUT_TICKS) {
        MAX_TIMEOUT_TICKS
    } else {
        t as u32
    }
}

/// A stand-alone set of timer nodes (expiry + links in parallel arrays), for users that keep
/// their own records elsewhere (and for tests). Fixed size, allocated at construction.
#[derive(Debug, Clone)]
pub struct TimerArena {
    expires: Box<[u32]>,
    next: Box<[u32]>,
    prev: Box<[u32]>,
}

impl TimerArena {
    /// `len` unlinked nodes with expiry 0. `len` is clamped to [`MAX_INDEX`].
    pub fn new(len: usize) -> Self {
        let len = len.min(MAX_INDEX as usize);
        Self {
            expires: vec![0; len].into_boxed_slice(),
            next: vec![NIL; len].into_boxed_slice(),
            prev: vec![UNLINKED; len].into_boxed_slice(),
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.expires.len()
    }

    /// True when the arena has no nodes.
    pub fn is_empty(&self) -> bool {
        self.expires.is_empty()
    }

    /// Set the expiry of `idx` (then call [`TimerWheel::rearm`] or [`TimerWheel::link`]).
    pub fn set_expires(&mut self, idx: u32, expires: u32) {
        if let Some(e) = self.expires.get_mut(idx as usize) {
            *e = expires;
        }
    }
}

impl TimerNodes for TimerArena {
    #[inline]
    fn expires(&self, idx: u32) -> u32 {
        self.expires.get(idx as usize).copied().unwrap_or(0)
    }
    #[inline]
    fn next(&self, idx: u32) -> u32 {
        self.next.get(idx as usize).copied().unwrap_or(NIL)
    }
    #[inline]
    fn prev(&self, idx: u32) -> u32 {
        self.prev.get(idx as usize).copied().unwrap_or(UNLINKED)
    }
    #[inline]
    fn set_next(&mut self, idx: u32, next: u32) {
        if let Some(n) = self.next.get_mut(idx as usize) {
            *n = next;
        }
    }
    #[inline]
    fn set_prev(&mut self, idx: u32, prev: u32) {
        if let Some(p) = self.prev.get_mut(idx as usize) {
            *p = prev;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arm(w: &mut TimerWheel, a: &mut TimerArena, idx: u32, expires: u32) {
        let old = a.expires(idx);
        a.set_expires(idx, expires);
        w.rearm(a, idx, old);
    }

    /// Advance one tick at a time from the wheel cursor to `to`, collecting (tick, idx).
    fn run_to(w: &mut TimerWheel, a: &mut TimerArena, to: u32) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut now = w.cursor();
        while tick_before_eq(now, to) {
            let s = w.advance(a, now, u32::MAX, |_, i| {
                out.push((now, i));
                false
            });
            assert!(s.caught_up);
            now = now.wrapping_add(1);
        }
        out
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            TimerWheel::new(3, 16, 0).unwrap_err(),
            WheelConfigError::BadSlots(3)
        );
        assert_eq!(
            TimerWheel::new(1, 16, 0).unwrap_err(),
            WheelConfigError::BadSlots(1)
        );
        assert_eq!(
            TimerWheel::new(8, 0, 0).unwrap_err(),
            WheelConfigError::BadTickRate
        );
        let w = TimerWheel::new(4096, 16, 7).unwrap();
        assert_eq!((w.slots(), w.cursor(), w.ticks_per_sec()), (4096, 7, 16));
        assert_eq!(w.secs_to_ticks(900), 14_400);
        assert_eq!(w.ticks_to_secs(14_415), 900);
        assert_eq!(secs_to_ticks(u32::MAX, 1000), MAX_TIMEOUT_TICKS);
    }

    #[test]
    fn expires_exactly_at_its_tick() {
        let mut w = TimerWheel::new(16, 16, 0).unwrap();
        let mut a = TimerArena::new(4);
        arm(&mut w, &mut a, 0, 5);
        arm(&mut w, &mut a, 1, 5);
        arm(&mut w, &mut a, 2, 9);
        assert_eq!(w.len(), 3);
        let mut got = run_to(&mut w, &mut a, 20);
        got.sort();
        assert_eq!(got, vec![(5, 0), (5, 1), (9, 2)]);
        assert!(w.is_empty());
        assert!(!TimerWheel::is_linked(&a, 0));
    }

    #[test]
    fn refresh_postpones_lazily_and_shortening_relinks() {
        let mut w = TimerWheel::new(16, 16, 0).unwrap();
        let mut a = TimerArena::new(2);
        arm(&mut w, &mut a, 0, 5);
        arm(&mut w, &mut a, 1, 12);
        assert!(run_to(&mut w, &mut a, 3).is_empty());
        // Postpone: only `expires` changes, no list work.
        let head_before = (a.prev(0), a.next(0));
        arm(&mut w, &mut a, 0, 11);
        assert_eq!((a.prev(0), a.next(0)), head_before);
        // Shorten: must be re-linked, else it would fire at 12.
        arm(&mut w, &mut a, 1, 6);
        assert_eq!(run_to(&mut w, &mut a, 20), vec![(6, 1), (11, 0)]);
    }

    #[test]
    fn removal_unlinks() {
        let mut w = TimerWheel::new(8, 1, 0).unwrap();
        let mut a = TimerArena::new(3);
        for i in 0..3 {
            arm(&mut w, &mut a, i, 4);
        }
        w.unlink(&mut a, 1); // middle of the list
        w.unlink(&mut a, 1); // twice is a no-op
        w.unlink(&mut a, 2); // head of the list
        assert_eq!(w.len(), 1);
        assert_eq!(run_to(&mut w, &mut a, 10), vec![(4, 0)]);
    }

    #[test]
    fn timeouts_longer_than_the_span() {
        let mut w = TimerWheel::new(8, 1, 100).unwrap();
        let mut a = TimerArena::new(1);
        arm(&mut w, &mut a, 0, 100 + 1000);
        assert_eq!(run_to(&mut w, &mut a, 2000), vec![(1100, 0)]);
    }

    #[test]
    fn wraps_around_u32() {
        let start = u32::MAX - 5;
        let mut w = TimerWheel::new(8, 1, start).unwrap();
        let mut a = TimerArena::new(2);
        arm(&mut w, &mut a, 0, start.wrapping_add(3));
        arm(&mut w, &mut a, 1, start.wrapping_add(20));
        let got = run_to(&mut w, &mut a, 30);
        assert_eq!(
            got,
            vec![(start.wrapping_add(3), 0), (start.wrapping_add(20), 1)]
        );
    }

    #[test]
    fn budget_limits_work_and_continues() {
        let mut w = TimerWheel::new(64, 1, 0).unwrap();
        let mut a = TimerArena::new(100);
        for i in 0..100 {
            arm(&mut w, &mut a, i, 10 + (i % 3));
        }
        let mut seen = 0;
        let mut calls = 0;
        loop {
            calls += 1;
            let s = w.advance(&mut a, 50, 7, |_, _| {
                seen += 1;
                false
            });
            assert!(s.expired <= 7);
            if s.caught_up {
                break;
            }
        }
        assert_eq!(seen, 100);
        assert!(calls > 100 / 7);
        assert!(w.is_empty());
    }

    #[test]
    fn rearm_from_callback() {
        let mut w = TimerWheel::new(16, 1, 0).unwrap();
        let mut a = TimerArena::new(1);
        arm(&mut w, &mut a, 0, 3);
        let mut fired = Vec::new();
        for now in 0..40u32 {
            w.advance(&mut a, now, 100, |n, i| {
                fired.push(now);
                if fired.len() < 3 {
                    n.set_expires(i, now + 10);
                    true
                } else {
                    false
                }
            });
        }
        assert_eq!(fired, vec![3, 13, 23]);
    }

    #[test]
    fn lagging_cursor_catches_up_and_late_inserts_fire() {
        let mut w = TimerWheel::new(16, 1, 0).unwrap();
        let mut a = TimerArena::new(2);
        arm(&mut w, &mut a, 0, 5);
        // Jump far ahead with a small budget: nothing fires early, all fires eventually.
        let mut fired = Vec::new();
        let s = w.advance(&mut a, 1000, 3, |_, i| {
            fired.push(i);
            false
        });
        assert!(!s.caught_up);
        // An entry armed "in the past" relative to the lagging cursor fires on the next pass.
        arm(&mut w, &mut a, 1, 2);
        while !w
            .advance(&mut a, 1000, 3, |_, i| {
                fired.push(i);
                false
            })
            .caught_up
        {}
        fired.sort();
        assert_eq!(fired, vec![0, 1]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Arm(u32, u32),
        Remove(u32),
        Tick(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..24, 0u32..200).prop_map(|(i, d)| Op::Arm(i, d)),
            1 => (0u32..24).prop_map(Op::Remove),
            3 => (1u32..40).prop_map(Op::Tick),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Advanced every tick: an entry fires exactly at its last-refreshed expiry.
        #[test]
        fn fires_exactly_at_expiry(start in any::<u32>(), ops in proptest::collection::vec(op(), 1..200)) {
            let mut w = TimerWheel::new(32, 16, start).unwrap();
            let mut a = TimerArena::new(24);
            let mut model: Vec<Option<u32>> = vec![None; 24];
            let mut now = start;
            for o in ops {
                match o {
                    Op::Arm(i, d) => {
                        arm(&mut w, &mut a, i, now.wrapping_add(d));
                        model[i as usize] = Some(now.wrapping_add(d));
                    }
                    Op::Remove(i) => {
                        w.unlink(&mut a, i);
                        model[i as usize] = None;
                    }
                    Op::Tick(k) => {
                        for _ in 0..k {
                            now = now.wrapping_add(1);
                            let mut fired = Vec::new();
                            let s = w.advance(&mut a, now, u32::MAX, |_, i| { fired.push(i); false });
                            prop_assert!(s.caught_up);
                            fired.sort();
                            let mut due: Vec<u32> = (0..24u32)
                                .filter(|&i| matches!(model[i as usize], Some(e) if tick_before_eq(e, now)))
                                .collect();
                            due.sort();
                            prop_assert_eq!(&fired, &due);
                            for i in due {
                                // Arm with d = 0 at the current tick fires at the next advance.
                                prop_assert!(model[i as usize].unwrap() == now
                                    || model[i as usize].unwrap() == now.wrapping_sub(1));
                                model[i as usize] = None;
                            }
                        }
                    }
                }
                prop_assert_eq!(w.len() as usize, model.iter().filter(|m| m.is_some()).count());
            }
        }

        /// Jumps and small budgets: never early, nothing lost once caught up.
        #[test]
        fn never_early_never_lost(ops in proptest::collection::vec(op(), 1..200), budget in 1u32..10) {
            let mut w = TimerWheel::new(16, 1, 0).unwrap();
            let mut a = TimerArena::new(24);
            let mut model: Vec<Option<u32>> = vec![None; 24];
            let mut now = 0u32;
            for o in ops {
                match o {
                    Op::Arm(i, d) => {
                        arm(&mut w, &mut a, i, now + d);
                        model[i as usize] = Some(now + d);
                    }
                    Op::Remove(i) => {
                        w.unlink(&mut a, i);
                        model[i as usize] = None;
                    }
                    Op::Tick(k) => {
                        now += k * 7;
                        let mut fired = Vec::new();
                        w.advance(&mut a, now, budget, |_, i| { fired.push(i); false });
                        for i in fired {
                            let e = model[i as usize].take();
                            prop_assert!(matches!(e, Some(e) if e <= now), "early or spurious {:?}", e);
                        }
                    }
                }
            }
            let mut fired = Vec::new();
            while !w.advance(&mut a, now, budget, |_, i| { fired.push(i); false }).caught_up {}
            w.advance(&mut a, now, budget, |_, i| { fired.push(i); false });
            for i in fired {
                let e = model[i as usize].take();
                prop_assert!(matches!(e, Some(e) if e <= now));
            }
            for m in model.iter().flatten() {
                prop_assert!(*m > now, "lost entry due at {}", m);
            }
        }
    }
}
