//! Neighbour (ARP) table of the director, kept by the control side.
//!
//! No kernel stack stands behind a DPDK port, so the director resolves real servers itself:
//! it asks (ARP request from the port's own address on that subnet), learns replies (and the
//! sender of requests aimed at its addresses), retries, ages entries out and re-resolves them.
//!
//! Concurrency: the table lives on the slow path (the housekeeping thread, under the control
//! mutex). Workers never read it: resolved MACs reach them inside the published configuration
//! snapshot, and what they learn reaches the table as events through a lock-free queue.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::wire::MacAddr;

/// Resolution state, as `ip neigh` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighState {
    /// Asked, no answer yet.
    Incomplete,
    /// Answered recently.
    Reachable,
    /// Answered long ago: still used, being re-resolved.
    Stale,
    /// No answer to the last probes: not used for forwarding.
    Failed,
}

impl NeighState {
    /// Upper-case name for listings.
    pub fn name(self) -> &'static str {
        match self {
            NeighState::Incomplete => "INCOMPLETE",
            NeighState::Reachable => "REACHABLE",
            NeighState::Stale => "STALE",
            NeighState::Failed => "FAILED",
        }
    }
}

/// Timing of resolution.
#[derive(Debug, Clone, Copy)]
pub struct NeighParams {
    /// How long an answer keeps an entry REACHABLE.
    pub reachable: Duration,
    /// Interval between probes while resolving.
    pub retrans: Duration,
    /// Probes without answer before FAILED.
    pub max_probes: u32,
    /// Interval between probes of a FAILED entry that is still wanted.
    pub failed_retry: Duration,
    /// How long an entry nobody wants is kept.
    pub gc_after: Duration,
}

impl Default for NeighParams {
    fn default() -> Self {
        NeighParams {
            reachable: Duration::from_secs(30),
            retrans: Duration::from_secs(1),
            max_probes: 3,
            failed_retry: Duration::from_secs(5),
            gc_after: Duration::from_secs(60),
        }
    }
}

/// One neighbour.
#[derive(Debug, Clone)]
pub struct NeighEntry {
    /// Link-layer address, once known (kept while STALE, dropped when FAILED).
    pub mac: Option<MacAddr>,
    /// Port the neighbour is reached on.
    pub port: u16,
    /// Current state.
    pub state: NeighState,
    /// Last time an answer (or unsolicited ARP) confirmed the entry.
    pub confirmed: Option<Instant>,
    /// Probes sent since the last confirmation.
    pub probes: u32,
    /// When the next probe is due.
    pub next_probe: Instant,
    /// Last time the entry was wanted (a real server uses it).
    pub wanted: Instant,
}

/// A probe the caller must send: ARP request for `target` from `source` out of `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Egress port.
    pub port: u16,
    /// Our address on that subnet (ARP sender protocol address).
    pub source: Ipv4Addr,
    /// Address being resolved.
    pub target: Ipv4Addr,
}

/// The neighbour table.
#[derive(Debug, Default)]
pub struct NeighTable {
    entries: BTreeMap<Ipv4Addr, NeighEntry>,
    params: NeighParams,
}

impl NeighTable {
    /// An empty table.
    pub fn new(params: NeighParams) -> Self {
        NeighTable { entries: BTreeMap::new(), params }
    }

    /// Records an ARP answer (or an ARP request from `ip`). Only addresses already wanted or
    /// `on_link` (in a connected subnet of `port`) are learned. Returns true when what the
    /// dataplane uses (MAC, port or usability) changed.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u16, on_link: bool, now: Instant) -> bool {
        if !mac.is_unicast() {
            return false;
        }
        match self.entries.get_mut(&ip) {
            Some(e) => {
                let changed = e.mac != Some(mac) || e.port != port || e.state == NeighState::Failed
                    || e.state == NeighState::Incomplete;
                e.mac = Some(mac);
                e.port = port;
                e.state = NeighState::Reachable;
                e.confirmed = Some(now);
                e.probes = 0;
                e.next_probe = now + self.params.reachable;
                changed
            }
            None if on_link => {
                self.entries.insert(
                    ip,
                    NeighEntry {
                        mac: Some(mac),
                        port,
                        state: NeighState::Reachable,
                        confirmed: Some(now),
                        probes: 0,
                        next_probe: now + self.params.reachable,
                        wanted: now,
                    },
                );
                true
            }
            None => false,
        }
    }

    /// Advances resolution for the addresses the dataplane needs now (`wanted`: address,
    /// egress port, our source address on that subnet). Creates entries, ages REACHABLE to
    /// STALE, fails entries whose probes went unanswered, and collects the probes to send.
    /// Returns (probes, changed) where `changed` says a MAC became unusable.
    pub fn tick(&mut self, wanted: &[(Ipv4Addr, u16, Ipv4Addr)], now: Instant) -> (Vec<Probe>, bool) {
        let p = self.params;
        let mut probes = Vec::new();
        let mut changed = false;
        for &(ip, port, source) in wanted {
            let e = self.entries.entry(ip).or_insert_with(|| NeighEntry {
                mac: None,
                port,
                state: NeighState::Incomplete,
                confirmed: None,
                probes: 0,
                next_probe: now,
                wanted: now,
            });
            e.wanted = now;
            if e.port != port && e.state != NeighState::Reachable {
                e.port = port;
            }
            if now < e.next_probe {
                continue;
            }
            match e.state {
                NeighState::Reachable => {
                    e.state = NeighState::Stale;
                    e.probes = 0;
                }
                NeighState::Incomplete | NeighState::Stale if e.probes >= p.max_probes => {
                    e.state = NeighState::Failed;
                    if e.mac.take().is_some() {
                        changed = true;
                    }
                    e.probes = 0;
                    e.next_probe = now + p.failed_retry;
                    continue;
                }
                _ => {}
            }
            probes.push(Probe { port: e.port, source, target: ip });
            e.probes += 1;
            e.next_probe = now + if e.state == NeighState::Failed { p.failed_retry } else { p.retrans };
        }
        let before = self.entries.len();
        self.entries.retain(|_, e| now.saturating_duration_since(e.wanted) < p.gc_after
            || e.confirmed.is_some_and(|c| now.saturating_duration_since(c) < p.gc_after));
        if self.entries.len() != before {
            changed = true;
        }
        (probes, changed)
    }

    /// The usable MAC and port of `ip` (REACHABLE or STALE).
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<(MacAddr, u16)> {
        self.entries.get(&ip).and_then(|e| e.mac.map(|m| (m, e.port)))
    }

    /// All entries in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&Ipv4Addr, &NeighEntry)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    #[test]
    fn resolves_retries_fails_and_recovers() {
        let mut t = NeighTable::new(NeighParams::default());
        let t0 = Instant::now();
        let w = [(IP, 0u16, SRC)];
        let (p, _) = t.tick(&w, t0);
        assert_eq!(p, vec![Probe { port: 0, source: SRC, target: IP }]);
        assert_eq!(t.lookup(IP), None);
        // Not yet due: no duplicate probe.
        assert!(t.tick(&w, t0 + Duration::from_millis(500)).0.is_empty());
        assert_eq!(t.tick(&w, t0 + Duration::from_secs(1)).0.len(), 1);
        assert_eq!(t.tick(&w, t0 + Duration::from_secs(2)).0.len(), 1);
        // Three probes unanswered: FAILED, no probe this round.
        assert!(t.tick(&w, t0 + Duration::from_secs(3)).0.is_empty());
        assert_eq!(t.iter().next().unwrap().1.state, NeighState::Failed);
        // Retried later, then an answer makes it usable.
        assert_eq!(t.tick(&w, t0 + Duration::from_secs(8)).0.len(), 1);
        assert!(t.learn(IP, MAC, 0, true, t0 + Duration::from_secs(9)));
        assert_eq!(t.lookup(IP), Some((MAC, 0)));
    }

    #[test]
    fn ages_to_stale_keeps_mac_then_fails_without_answers() {
        let mut t = NeighTable::new(NeighParams::default());
        let t0 = Instant::now();
        let w = [(IP, 0u16, SRC)];
        t.tick(&w, t0);
        assert!(t.learn(IP, MAC, 0, true, t0));
        assert!(!t.learn(IP, MAC, 0, true, t0), "same answer again changes nothing");
        let t1 = t0 + Duration::from_secs(30);
        let (p, changed) = t.tick(&w, t1);
        assert_eq!(p.len(), 1, "stale entry is re-resolved");
        assert!(!changed);
        assert_eq!(t.lookup(IP), Some((MAC, 0)), "stale entry still forwards");
        t.tick(&w, t1 + Duration::from_secs(1));
        t.tick(&w, t1 + Duration::from_secs(2));
        let (_, changed) = t.tick(&w, t1 + Duration::from_secs(3));
        assert!(changed);
        assert_eq!(t.lookup(IP), None);
    }

    #[test]
    fn learns_only_on_link_or_wanted_and_collects_garbage() {
        let mut t = NeighTable::new(NeighParams::default());
        let t0 = Instant::now();
        assert!(!t.learn(IP, MAC, 0, false, t0));
        assert!(!t.learn(IP, MacAddr::BROADCAST, 0, true, t0));
        assert!(t.learn(IP, MAC, 0, true, t0));
        let (_, changed) = t.tick(&[], t0 + Duration::from_secs(61));
        assert!(changed);
        assert_eq!(t.iter().count(), 0);
    }
}
