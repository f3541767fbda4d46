//! Token buckets on the engine's timer ticks: the per-worker limits on generated replies
//! (RST, ICMP errors) and on frames handed to the host through the kernel leg.
//!
//! Invariants: integer arithmetic only (tokens are kept scaled by the tick rate, so a tick
//! adds exactly `rate` scaled units and a packet costs `ticks_per_sec` of them); the bucket
//! never holds more than `burst` packets; a clock that goes backwards (wrapping tick counter)
//! adds nothing. Owned by one worker: no atomics.

/// A token bucket of `rate` packets per second, `burst` deep.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// Tokens, scaled by `tps`.
    tokens: u64,
    /// Tick of the last refill.
    tick: u32,
    /// Packets per second.
    rate: u64,
    /// Capacity, scaled by `tps`.
    cap: u64,
    /// Ticks per second (the scale).
    tps: u64,
}

impl TokenBucket {
    /// A full bucket of `rate` packets per second and `burst` packets deep, on a clock of
    /// `ticks_per_sec` ticks.
    pub fn new(rate: u32, burst: u32, ticks_per_sec: u32) -> Self {
        let tps = u64::from(ticks_per_sec.max(1));
        let cap = u64::from(burst) * tps;
        TokenBucket { tokens: cap, tick: 0, rate: u64::from(rate), cap, tps }
    }

    /// Takes one token at tick `now`; false when the bucket is empty (the packet is over the
    /// limit).
    #[inline]
    pub fn take(&mut self, now: u32) -> bool {
        let elapsed = u64::from(now.wrapping_sub(self.tick));
        self.tick = now;
        // A backwards step looks like a huge elapsed time: refill at most to the cap.
        let elapsed = if elapsed > u64::from(u32::MAX / 2) { 0 } else { elapsed };
        self.tokens = (self.tokens + elapsed.min(self.cap) * self.rate).min(self.cap);
        if self.tokens >= self.tps {
            self.tokens -= self.tps;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate_per_second() {
        let mut b = TokenBucket::new(1000, 100, 16);
        let burst = (0..1000).filter(|_| b.take(0)).count();
        assert_eq!(burst, 100, "a full bucket lets the burst through at once");
        // One second later (16 ticks), the bucket refilled to its cap: 100 again, not 1000.
        assert_eq!((0..1000).filter(|_| b.take(16)).count(), 100);
        // Spread over ticks, the rate holds: 1000 per second = 62.5 per tick.
        let mut b = TokenBucket::new(1000, 100, 16);
        let _ = (0..100).filter(|_| b.take(0)).count();
        let passed: usize = (1..=16u32).map(|t| (0..200).filter(|_| b.take(t)).count()).sum();
        assert_eq!(passed, 1000);
    }

    #[test]
    fn a_wrapping_clock_does_not_refill() {
        let mut b = TokenBucket::new(10, 1, 16);
        assert!(b.take(100));
        assert!(!b.take(100));
        assert!(!b.take(50), "backwards: no refill");
    }
}
