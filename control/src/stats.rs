//! Counter bookkeeping done by the control plane on top of the dataplane's raw per-server
//! counters: `-Z` (zeroing by snapshot, as the kernel does) and the `--rate` estimator
//! (the kernel's 2-second EWMA from `ip_vs_est.c`).
//!
//! Invariants: raw counters are never modified (the dataplane owns them); a zero base or
//! estimator belongs to one slot incarnation ([`crate::model::Slot`]) and is dropped when the
//! slot is reused; a raw counter below its base (the dataplane reset it) is shown raw.
//! Connection gauges (active, inactive, persist) are never zeroed. Single-threaded: owned by
//! the `Controller`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::model::{Config, ServerId, Slot};
use crate::proto::{Rates, ServerStats};

/// How often the rate estimator samples (as the kernel: every 2 s).
pub const ESTIMATOR_PERIOD: Duration = Duration::from_secs(2);

fn incarnation(cfg: &Config, id: ServerId) -> Option<u64> {
    match cfg.slot(id) {
        Slot::Live { incarnation, .. } | Slot::Trash { incarnation, .. } => Some(incarnation),
        Slot::Free => None,
    }
}

/// The kernel's rate estimator for one counter set (fixed point: pps/cps scaled by 2^10,
/// bps by 2^5; `avg += (sample - avg) / 4` every period).
#[derive(Debug, Clone, Default)]
pub struct RateEstimator {
    last: ServerStats,
    cps: i64,
    inpps: i64,
    outpps: i64,
    inbps: i64,
    outbps: i64,
}

impl RateEstimator {
    /// Starts from the current counters with zero rates.
    pub fn new(current: &ServerStats) -> Self {
        RateEstimator {
            last: *current,
            ..Default::default()
        }
    }

    /// Feeds the counters observed `elapsed` after the previous sample.
    pub fn sample(&mut self, now: &ServerStats, elapsed: Duration) {
        let ms = elapsed.as_millis().max(1) as i128;
        // Per-second rate scaled by `scale`, like the kernel's `delta << 9` over 2 s.
        let rate = |new: u64, old: u64, scale: i128| -> i64 {
            let delta = i128::from(new.saturating_sub(old));
            (delta * scale * 1000 / ms).min(i128::from(i64::MAX)) as i64
        };
        let ewma = |avg: &mut i64, r: i64| *avg = avg.saturating_add((r.saturating_sub(*avg)) >> 2);
        ewma(&mut self.cps, rate(now.conns, self.last.conns, 1 << 10));
        ewma(&mut self.inpps, rate(now.inpkts, self.last.inpkts, 1 << 10));
        ewma(
            &mut self.outpps,
            rate(now.outpkts, self.last.outpkts, 1 << 10),
        );
        ewma(
            &mut self.inbps,
            rate(now.inbytes, self.last.inbytes, 1 << 5),
        );
        ewma(
            &mut self.outbps,
            rate(now.outbytes, self.last.outbytes, 1 << 5),
        );
        self.last = *now;
    }

    /// Current rates per second, rounded as the kernel rounds them.
    pub fn rates(&self) -> Rates {
        let pps = |v: i64| (v.max(0).saturating_add(0x1FF) >> 10) as u64;
        let bps = |v: i64| (v.max(0).saturating_add(0xF) >> 5) as u64;
        Rates {
            cps: pps(self.cps),
            inpps: pps(self.inpps),
            outpps: pps(self.outpps),
            inbps: bps(self.inbps),
            outbps: bps(self.outbps),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    incarnation: u64,
    base: Option<ServerStats>,
    est: RateEstimator,
}

/// Zero bases and rate estimators of all servers.
#[derive(Debug, Default)]
pub struct StatsBook {
    entries: HashMap<ServerId, Entry>,
    last_sample: Option<Instant>,
}

impl StatsBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, cfg: &Config, id: ServerId, raw: &ServerStats) -> Option<&mut Entry> {
        let inc = incarnation(cfg, id)?;
        let e = self.entries.entry(id).or_insert_with(|| Entry {
            incarnation: inc,
            base: None,
            est: RateEstimator::new(raw),
        });
        if e.incarnation != inc {
            *e = Entry {
                incarnation: inc,
                base: None,
                est: RateEstimator::new(raw),
            };
        }
        Some(e)
    }

    /// True when the estimator is due for a sample at `now`.
    pub fn due(&self, now: Instant) -> bool {
        match self.last_sample {
            None => true,
            Some(t) => now.saturating_duration_since(t) >= ESTIMATOR_PERIOD,
        }
    }

    /// Samples every server's counters into its estimator and forgets freed slots.
    pub fn sample(&mut self, now: Instant, cfg: &Config, raw: &HashMap<ServerId, ServerStats>) {
        let elapsed = self
            .last_sample
            .map_or(ESTIMATOR_PERIOD, |t| now.saturating_duration_since(t));
        self.last_sample = Some(now);
        self.entries
            .retain(|id, e| incarnation(cfg, *id) == Some(e.incarnation));
        for (id, stats) in raw {
            let fresh = !self.entries.contains_key(id);
            if let Some(e) = self.entry(cfg, *id, stats) {
                if !fresh {
                    e.est.sample(stats, elapsed);
                }
            }
        }
    }

    /// `-Z` for one server: shown counters restart from zero, rates too.
    pub fn zero(&mut self, cfg: &Config, id: ServerId, raw: &ServerStats) {
        if let Some(e) = self.entry(cfg, id, raw) {
            e.base = Some(*raw);
            e.est = RateEstimator::new(raw);
        }
    }

    /// The counters and rates to show for server `id` given its raw counters.
    pub fn view(&self, cfg: &Config, id: ServerId, raw: &ServerStats) -> (ServerStats, Rates) {
        let Some(e) = self
            .entries
            .get(&id)
            .filter(|e| Some(e.incarnation) == incarnation(cfg, id))
        else {
            return (*raw, Rates::default());
        };
        let mut shown = *raw;
        if let Some(b) = &e.base {
            let sub = |v: u64, b: u64| if v >= b { v - b } else { v };
            shown.conns = sub(raw.conns, b.conns);
            shown.inpkts = sub(raw.inpkts, b.inpkts);
            shown.inbytes = sub(raw.inbytes, b.inbytes);
            shown.outpkts = sub(raw.outpkts, b.outpkts);
            shown.outbytes = sub(raw.outbytes, b.outbytes);
        }
        (shown, e.est.rates())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_converges_to_the_true_rate() {
        let mut s = ServerStats::default();
        let mut est = RateEstimator::new(&s);
        for _ in 0..100 {
            s.conns += 200; // 100/s over 2 s
            s.inpkts += 2000;
            s.inbytes += 2_000_000;
            est.sample(&s, ESTIMATOR_PERIOD);
        }
        let r = est.rates();
        assert_eq!(
            (r.cps, r.inpps, r.inbps, r.outpps),
            (100, 1000, 1_000_000, 0)
        );
        for _ in 0..60 {
            est.sample(&s, ESTIMATOR_PERIOD);
        }
        assert_eq!(est.rates().cps, 0, "decays to zero when idle");
    }

    #[test]
    fn huge_deltas_do_not_overflow() {
        let mut est = RateEstimator::new(&ServerStats::default());
        let s = ServerStats {
            conns: u64::MAX,
            inbytes: u64::MAX,
            ..Default::default()
        };
        est.sample(&s, Duration::from_millis(0));
        let _ = est.rates();
    }
}
