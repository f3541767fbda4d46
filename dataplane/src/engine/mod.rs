//! The packet logic of one worker, free of DPDK so it can be tested on byte arrays.
//!
//! [`Engine::process`] takes one frame (mutable, in place) and returns a [`Verdict`]:
//! forward it by direct routing out of a port, send it back out of the port it came from
//! (ARP reply and ICMP echo reply, rewritten in place), replace it by a generated reply (TCP
//! RST, ICMP error: built in the engine's scratch buffer), consume it (learned ARP answer) or
//! drop it with a reason.
//!
//! Per packet, as Linux IPVS in DR mode (see ../shared/docs/ipvs-semantics.md): parse
//! Ethernet/IPv4/L4 through the zero-copy views; connection lookup by 5-tuple first (port
//! reuse and `expire_nodest_conn` handled there); only for a new connection: new-connection
//! rules (TCP SYN unless `sloppy_tcp`), the mark rules, service lookup (mark > VIP:port >
//! VIP:0), persistence template lookup/creation, else the scheduler; TCP input-only state
//! tracking with per-state idle timeouts; the DR rewrite (Ethernet header, TTL - 1 with an
//! incremental checksum update). What the director's own stack would answer is emulated: a
//! TCP RST for TCP it cannot place, ICMP port unreachable when no server is usable or a UDP
//! port has no service, ICMP time exceeded and fragmentation needed. ICMP errors about a
//! known connection are forwarded to its real server.
//!
//! Invariants: no allocation, no locks, no panics on any input (every view is validated once,
//! indexing is bounds-checked by construction), counters are plain integers owned by the
//! worker. The only shared object written is the lock-free neighbour-event queue. Generated
//! replies are rate limited per worker (token bucket) so the director cannot be used as a
//! reflector.

use std::net::Ipv4Addr;
use std::sync::Arc;

mod sync_conn;

use crossbeam::queue::ArrayQueue;

use crate::conn::{
    tcp_flags, ConnInit, ConnKey, ConnTable, CounterMove, ExpireAction, TcpState, Timeouts, F_INACTIVE, F_TEMPLATE,
    NO_INDEX, TEMPLATE_STATE_ASSURED, TEMPLATE_STATE_NONE,
};
use crate::counters::{DropReason, MergedCounts, ServerCounters, WorkerCounters};
use crate::defense::Defense;
use crate::ratelimit::TokenBucket;
use crate::sched::{DestSet, SchedInput, Scheduler};
use crate::snapshot::{Snapshot, SvcKey, PROTO_TCP, PROTO_UDP};
use crate::wire::arp::{self, ArpPacket};
use crate::wire::ethernet::ethertype;
use crate::wire::icmp::{msg_type, IcmpPacket};
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::{checksum, parse_l2, MacAddr, TcpPacket, UdpPacket, WireError};

mod host;

/// Size of the scratch buffer generated replies are built in.
pub const SCRATCH_LEN: usize = 256;
/// Generated replies (RST, ICMP errors) allowed per second per worker, and the burst.
const REPLY_RATE: u32 = 1000;
const REPLY_BURST: u32 = 100;
/// ICMP codes.
const CODE_PORT_UNREACH: u8 = 3;
const CODE_FRAG_NEEDED: u8 = 4;
const CODE_TTL_EXCEEDED: u8 = 0;

/// What to do with a frame after [`Engine::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit out of this port (rewritten for direct routing).
    Forward(u16),
    /// Transmit back out of the receiving port (rewritten into a reply in place).
    Reply,
    /// The frame is dropped (counted under the reason) and replaced by the first `len` bytes
    /// of [`Engine::scratch`], to be sent back out of the receiving port.
    Emit {
        /// Length of the generated frame.
        len: u16,
        /// Why the original frame was not forwarded.
        reason: DropReason,
    },
    /// Fully handled, nothing to send (e.g. an ARP answer that was learned).
    Consumed,
    /// Dropped; counted under this reason.
    Drop(DropReason),
    /// Hand the frame, unchanged, to the host stack through the kernel interface of the
    /// receiving port (the kernel leg): traffic for the director's own addresses that no
    /// service takes, link-local multicast, ARP, other ethertypes, local real servers.
    Host,
    /// Send the frame back out of the receiving port (rewritten into a reply in place, as
    /// [`Verdict::Reply`]) and hand the host a copy of the original, the first `len` bytes of
    /// [`Engine::scratch`] (an ARP request the director answered: the host learns from it).
    ReplyAndHost {
        /// Length of the copy.
        len: u16,
    },
}

/// What burst stages 1 and 2 ([`Engine::prepare`], [`Engine::prefetch_entry`]) found out
/// about one frame, for stage 3 ([`Engine::process_prepared`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Prep {
    key: ConnKey,
    hash: u64,
    cand: u32,
    fast: bool,
}

/// Something a worker learned about a neighbour, for the control side's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEvent {
    /// The neighbour's address.
    pub ip: Ipv4Addr,
    /// Its MAC.
    pub mac: MacAddr,
    /// The port it was heard on.
    pub port: u16,
}

/// Engine parameters fixed at start-up.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Connection-table capacity (entries).
    pub conn_capacity: usize,
    /// Number of real-server slots.
    pub max_servers: usize,
    /// Number of port ids to count for.
    pub ports: usize,
    /// Timer ticks per second.
    pub ticks_per_sec: u32,
    /// Hash seed for the connection table.
    pub seed: u64,
    /// This worker's share of the kernel leg's packets-per-second cap on traffic for the
    /// host (it applies only while a snapshot has the leg on).
    pub host_pps: u32,
}

/// Parsed facts about a TCP/UDP packet that the slow paths need.
#[derive(Debug, Clone, Copy)]
struct L4 {
    key: ConnKey,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: u32,
    ip_len: u32,
}

/// Why a packet could not be placed, and what the director's stack would answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Silent drop.
    Drop(DropReason),
    /// Answer with a TCP RST (no listener / no connection).
    Rst(DropReason),
    /// Answer with ICMP port unreachable.
    Unreachable(DropReason),
    /// Not service traffic: the host stack decides (kernel leg).
    Host,
}

/// One worker's packet logic and state.
pub struct Engine {
    snap: Arc<Snapshot>,
    conns: ConnTable,
    /// Scheduler of each service of `snap` (same index); `None` for an unknown scheduler.
    scheds: Vec<Option<Scheduler>>,
    counters: WorkerCounters,
    /// Incarnation of each server slot the counters belong to.
    incarnations: Vec<u64>,
    /// Timeouts of `snap`, converted to ticks.
    timeouts: Timeouts,
    ticks_per_sec: u32,
    events: Arc<ArrayQueue<NeighEvent>>,
    /// Tick of the last expiry run (for dumps).
    now: u32,
    /// Generated replies are built here.
    scratch: [u8; SCRATCH_LEN],
    /// Token bucket for generated replies.
    replies: TokenBucket,
    /// Token bucket for frames handed to the host (kernel leg), except local real servers'
    /// connections (service traffic, not policed).
    host_police: TokenBucket,
    /// Counts merged over workers (with more than one worker) and this worker's index.
    merged: Option<(Arc<MergedCounts>, usize)>,
    /// Forwarding record of every server slot of `snap` (derived at each snapshot change).
    fwd: Vec<Fwd>,
    /// Local addresses of `snap` (host order) in a small open-addressing table (0 = empty;
    /// 0.0.0.0 is never local), when they fit; else the snapshot's hash map is used.
    local_tab: [u32; LOCAL_TAB],
    /// True when `local_tab` holds every local address.
    local_in_tab: bool,
    /// Connection synchronisation (see `sync_conn`).
    sync: Box<sync_conn::SyncSide>,
    /// SYN-flood defence: making room in a full table, the IPVS defense strategies.
    defense: Defense,
}

/// Slots of the local-address table (power of two, at most half full).
const LOCAL_TAB: usize = 64;

#[inline]
fn local_slot(ip: u32) -> usize {
    (ip.wrapping_mul(0x9E37_79B1) >> 26) as usize & (LOCAL_TAB - 1)
}

/// What DR forwarding toward one real-server slot needs, precomputed per snapshot.
#[derive(Debug, Clone, Copy, Default)]
struct Fwd {
    /// Destination MAC (server) then source MAC (egress port): the new Ethernet addresses.
    hdr: [u8; 12],
    /// Egress port.
    port: u16,
    /// Egress MTU.
    mtu: u16,
    /// One of the `FWD_*` states.
    state: u8,
}

/// Slot free or server deleted.
const FWD_GONE: u8 = 0;
/// Forwardable.
const FWD_OK: u8 = 1;
/// Server not on-link.
const FWD_NO_ROUTE: u8 = 2;
/// Server MAC not resolved.
const FWD_UNRESOLVED: u8 = 3;
/// A local real server (127.0.0.0/8 or an address of the director): delivered to the host.
const FWD_LOCAL: u8 = 4;
/// Forwardable, but held: the backup sync daemon runs with `backup_only` (see `sync_conn`).
const FWD_HELD: u8 = 5;

/// Verifies an IPv4 header checksum (one's-complement sum of the header is 0xffff). The
/// one's-complement sum does not depend on byte order (RFC 1071), so a 20-byte header is
/// summed as five native 32-bit words (no byte swaps).
#[inline]
fn ipv4_header_ok(h: &[u8]) -> bool {
    if let Some(h) = h.first_chunk::<20>().filter(|_| h.len() == 20) {
        let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
        let s = w(0) + w(4) + w(8) + w(12) + w(16);
        let mut s = (s & 0xffff_ffff) + (s >> 32);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        s == 0xffff
    } else {
        checksum::fold(checksum::sum16(h, 0)) == 0
    }
}

/// The servers of one service as the schedulers see them (kernel order).
struct Dests<'a> {
    slots: &'a [u32],
    snap: &'a Snapshot,
    counters: &'a [ServerCounters],
    merged: Option<&'a MergedCounts>,
}

impl<'a> Dests<'a> {
    /// The servers `slots` of `snap`, counted by this worker's `counters` or, with several
    /// workers, by the counts merged over all of them.
    #[inline]
    fn new(
        slots: &'a [u32],
        snap: &'a Snapshot,
        counters: &'a WorkerCounters,
        merged: &'a Option<(Arc<MergedCounts>, usize)>,
    ) -> Self {
        Dests { slots, snap, counters: &counters.servers, merged: merged.as_ref().map(|m| &*m.0) }
    }

    /// (active, inactive) of destination `i`: over all workers when merged.
    #[inline]
    fn conns(&self, i: usize) -> (u32, u32) {
        let Some(&slot) = self.slots.get(i) else { return (0, 0) };
        match self.merged {
            Some(m) => m.total(slot),
            None => self.counters.get(slot as usize).map_or((0, 0), |c| (c.active, c.inactive)),
        }
    }
}

impl DestSet for Dests<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.slots.len()
    }
    #[inline]
    fn id(&self, i: usize) -> u32 {
        self.slots.get(i).copied().unwrap_or(u32::MAX)
    }
    #[inline]
    fn weight(&self, i: usize) -> u32 {
        self.slots
            .get(i)
            .and_then(|&s| self.snap.servers.get(s as usize))
            .and_then(|s| s.as_ref())
            .map_or(0, |s| s.weight)
    }
    #[inline]
    fn active(&self, i: usize) -> u32 {
        self.conns(i).0
    }
    #[inline]
    fn inactive(&self, i: usize) -> u32 {
        self.conns(i).1
    }
    #[inline]
    fn overloaded(&self, i: usize) -> bool {
        let Some(s) = self.slots.get(i).and_then(|&s| self.snap.servers.get(s as usize)).and_then(|s| s.as_ref())
        else {
            return true;
        };
        let (a, n) = self.conns(i);
        s.u_threshold != 0 && a + n >= s.u_threshold
    }
    #[inline]
    fn addr_port(&self, i: usize) -> (u32, u16) {
        self.slots
            .get(i)
            .and_then(|&s| self.snap.servers.get(s as usize))
            .and_then(|s| s.as_ref())
            .map_or((u32::MAX, 0), |s| (u32::from(s.addr), s.port))
    }
}

/// Decrements the server counter an entry is counted in (and publishes the new counts).
#[inline]
fn release(servers: &mut [ServerCounters], merged: Option<&(Arc<MergedCounts>, usize)>, server: u32, flags: u8) {
    if let Some(c) = servers.get_mut(server as usize) {
        if flags & F_TEMPLATE != 0 {
            c.persist = c.persist.saturating_sub(1);
        } else if flags & F_INACTIVE != 0 {
            c.inactive = c.inactive.saturating_sub(1);
        } else {
            c.active = c.active.saturating_sub(1);
        }
        if let Some((m, w)) = merged {
            m.publish(*w, server, c.active, c.inactive);
        }
    }
}

impl Engine {
    /// A new engine with an empty configuration.
    pub fn new(cfg: EngineConfig, events: Arc<ArrayQueue<NeighEvent>>) -> Result<Engine, crate::conn::TableConfigError> {
        let conns = ConnTable::new(crate::conn::ConnTableConfig {
            capacity: cfg.conn_capacity,
            wheel_slots: 4096,
            ticks_per_sec: cfg.ticks_per_sec,
            seed: cfg.seed,
            now: 0,
        })?;
        let snap = Arc::new(Snapshot::default());
        Ok(Engine {
            timeouts: snap.timeouts.in_ticks(cfg.ticks_per_sec),
            snap,
            conns,
            scheds: Vec::new(),
            counters: WorkerCounters::new(cfg.ports, cfg.max_servers),
            incarnations: vec![0; cfg.max_servers],
            ticks_per_sec: cfg.ticks_per_sec.max(1),
            events,
            now: 0,
            scratch: [0; SCRATCH_LEN],
            replies: TokenBucket::new(REPLY_RATE, REPLY_BURST, cfg.ticks_per_sec),
            host_police: TokenBucket::new(cfg.host_pps, (cfg.host_pps / 10).max(64), cfg.ticks_per_sec),
            merged: None,
            fwd: Vec::new(),
            local_tab: [0; LOCAL_TAB],
            local_in_tab: true,
            sync: Box::default(),
            defense: Defense::new(cfg.conn_capacity),
        })
    }

    /// Makes this engine worker `index` of several that share connection counts.
    pub fn share_counts(&mut self, merged: Arc<MergedCounts>, index: usize) {
        self.merged = Some((merged, index));
    }

    /// Publishes this worker's counts of `slot` to the other workers.
    #[inline]
    fn publish(&self, slot: u32) {
        if let (Some((m, w)), Some(c)) = (&self.merged, self.counters.servers.get(slot as usize)) {
            m.publish(*w, slot, c.active, c.inactive);
        }
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// This worker's counters.
    pub fn counters(&self) -> &WorkerCounters {
        &self.counters
    }

    /// This worker's counters, writable (the worker counts hand-offs).
    pub fn counters_mut(&mut self) -> &mut WorkerCounters {
        &mut self.counters
    }

    /// The connection table (control-plane dumps, tests).
    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    /// The buffer a [`Verdict::Emit`] frame was built in.
    pub fn scratch(&self) -> &[u8; SCRATCH_LEN] {
        &self.scratch
    }

    /// Counts a drop decided outside the engine (TX refused, no mbuf).
    #[inline]
    pub fn count_drop(&mut self, r: DropReason) {
        self.counters.drop(r);
    }

    /// [`Engine::count_drop`] for a packet of `port` (arrival, or egress for TX drops).
    #[inline]
    pub fn count_drop_at(&mut self, port: u16, r: DropReason) {
        self.counters.drop_at(port, r);
    }

    /// Switches to a new configuration snapshot (between bursts). Scheduler state of services
    /// that still exist is kept and told about server-list changes.
    pub fn set_snapshot(&mut self, new: Arc<Snapshot>) {
        let old = std::mem::replace(&mut self.snap, new);
        if old.sysctl.defense != self.snap.sysctl.defense {
            // A sysctl write takes effect at once (the kernel's update_defense_level).
            self.defense.update(&self.snap.sysctl.defense, &self.conns);
        }
        if old.marks != self.snap.marks {
            // Rule indices changed: counters restart (the control side documents it).
            self.counters.marks.fill((0, 0));
        }
        // A slot handed to a different server starts its counters from zero.
        for rs in self.snap.servers.iter().flatten() {
            if let Some(inc) = self.incarnations.get_mut(rs.slot as usize) {
                if *inc != rs.incarnation {
                    *inc = rs.incarnation;
                    if let Some(c) = self.counters.servers.get_mut(rs.slot as usize) {
                        *c = ServerCounters::default();
                    }
                    self.publish(rs.slot);
                }
            }
        }
        let mut old_scheds = std::mem::take(&mut self.scheds);
        let mut scheds = Vec::with_capacity(self.snap.services.len());
        for svc in &self.snap.services {
            // rr/wrr: the cursor all workers share (one sequence, as IPVS's single table),
            // carried across snapshots by the control side.
            if let Some(r) = &svc.rotation {
                scheds.push(Some(Scheduler::Shared(r.clone())));
                continue;
            }
            // Scheduler state survives edits of the server list and of the -b flags.
            let prev = old.services.iter().position(|o| o.key == svc.key && o.scheduler == svc.scheduler);
            let kept = prev.and_then(|i| old_scheds.get_mut(i).and_then(Option::take).map(|s| (i, s)));
            let sched = match kept {
                Some((i, mut s)) => {
                    if old.services[i].sched_flags != svc.sched_flags {
                        s.set_flags(svc.sched_flags);
                    }
                    let od = Dests::new(&old.services[i].servers, &old, &self.counters, &self.merged);
                    let nd = Dests::new(&svc.servers, &self.snap, &self.counters, &self.merged);
                    s.update(&od, &nd);
                    Some(s)
                }
                None => {
                    let nd = Dests::new(&svc.servers, &self.snap, &self.counters, &self.merged);
                    Scheduler::with_dests(&svc.scheduler, svc.sched_flags, &nd)
                }
            };
            scheds.push(sched);
        }
        self.scheds = scheds;
        self.timeouts = self.snap.timeouts.in_ticks(self.ticks_per_sec);
        self.fwd.clear();
        self.fwd.resize(self.snap.servers.len(), Fwd::default());
        for (f, rs) in self.fwd.iter_mut().zip(self.snap.servers.iter()) {
            let Some(rs) = rs else { continue };
            let port = rs.egress_port.and_then(|p| self.snap.ports.get(p as usize));
            *f = match (port, rs.mac) {
                _ if rs.local => Fwd { state: FWD_LOCAL, ..Fwd::default() },
                (None, _) => Fwd { state: FWD_NO_ROUTE, ..Fwd::default() },
                (Some(_), None) => Fwd { state: FWD_UNRESOLVED, ..Fwd::default() },
                (Some(p), Some(mac)) => {
                    let mut hdr = [0u8; 12];
                    hdr[..6].copy_from_slice(&mac.0);
                    hdr[6..].copy_from_slice(&p.mac.0);
                    Fwd { hdr, port: p.id, mtu: p.mtu, state: FWD_OK }
                }
            };
        }
        // backup_only holds the forwardable servers while the backup daemon runs.
        self.sync_hold(self.sync.backup_only);
        self.sync_dests();
        self.local_tab = [0; LOCAL_TAB];
        self.local_in_tab = self.snap.local.len() <= LOCAL_TAB / 2;
        if self.local_in_tab {
            for a in self.snap.local.keys() {
                let ip = u32::from(*a);
                let mut i = local_slot(ip);
                while self.local_tab[i] != 0 {
                    i = (i + 1) & (LOCAL_TAB - 1);
                }
                self.local_tab[i] = ip;
            }
        }
    }

    /// True when `ip` (host order) is an address of the director.
    #[inline]
    fn is_local(&self, ip: u32) -> bool {
        if !self.local_in_tab {
            return self.snap.local.contains_key(&Ipv4Addr::from(ip));
        }
        if ip == 0 {
            return false;
        }
        let mut i = local_slot(ip);
        // At most half full: an empty slot ends every probe sequence.
        loop {
            let v = self.local_tab[i];
            if v == ip {
                return true;
            }
            if v == 0 {
                return false;
            }
            i = (i + 1) & (LOCAL_TAB - 1);
        }
    }

    /// Expires idle connection entries, examining at most `budget` of them. A template that
    /// still controls connections is re-armed for 60 s with its timeout set to 60 s (IPVS).
    pub fn expire(&mut self, now: u32, budget: u32) {
        self.now = now;
        let servers = &mut self.counters.servers;
        let merged = self.merged.as_ref();
        let template_control = self.timeouts.template_control;
        self.conns.expire(now, budget, |_, e| {
            if e.is_template() && e.n_control() > 0 {
                return ExpireAction::Rearm(template_control);
            }
            release(servers, merged, e.server, e.flags);
            ExpireAction::Remove
        });
        let cfg = self.snap.sysctl.defense;
        let servers = &mut self.counters.servers;
        let dropped = self.defense.tick(&cfg, &mut self.conns, now, self.ticks_per_sec, |e| release(servers, merged, e.server, e.flags));
        self.counters.drop_entry_dropped += dropped;
        self.counters.conn_entries = self.conns.len() as u64;
        self.counters.defense_on = self.defense.nomem();
    }

    /// Makes room for a new connection and its template in a full table by evicting
    /// unconfirmed entries (see `defense`).
    #[cold]
    fn make_room(&mut self, now: u32) {
        let servers = &mut self.counters.servers;
        let merged = self.merged.as_ref();
        let n = self.defense.make_room(&mut self.conns, 2, now, |e| release(servers, merged, e.server, e.flags));
        self.counters.evicted_unconfirmed += n;
    }

    /// Copies entries with index ≥ `start` into `buf` up to its capacity (no allocation).
    /// Returns the index to continue from, or `None` when every entry was copied.
    pub fn dump_conns(&self, buf: &mut Vec<crate::worker::ConnRow>, start: u32) -> Option<u32> {
        let tps = self.ticks_per_sec.max(1);
        for (idx, e) in self.conns.iter_from(start) {
            if buf.len() == buf.capacity() {
                return Some(idx);
            }
            let left = e.expires().wrapping_sub(self.now);
            let left = if left > u32::MAX / 2 { 0 } else { left.div_ceil(tps) };
            buf.push(crate::worker::ConnRow {
                key: *e.key(),
                server: e.server,
                state: e.state,
                flags: e.flags,
                expires_secs: left,
            });
        }
        None
    }

    /// Decides one frame received on `in_port` at tick `now`, rewriting it in place. The same
    /// as the three burst stages ([`Self::prepare`], [`Self::prefetch_entry`],
    /// [`Self::process_prepared`]) back to back.
    #[inline]
    pub fn process(&mut self, frame: &mut [u8], in_port: u16, now: u32) -> Verdict {
        let mut p = Prep::default();
        self.prepare(frame, in_port, &mut p);
        self.prefetch_entry(&mut p);
        self.process_prepared(frame, in_port, now, &p)
    }

    /// Burst stage 1 (read-only): does `frame` look like a packet of an established flow (an
    /// ACK without SYN/FIN/RST to one of our addresses, IPv4 without options or
    /// fragmentation, a good header checksum, our MAC)? If so, record its key and hash in `p`
    /// and prefetch the index bucket. Run it over a whole burst before stage 2, so that the
    /// cache misses of different packets overlap.
    #[inline(always)]
    pub fn prepare(&self, frame: &[u8], in_port: u16, p: &mut Prep) {
        use tcp_flags::{ACK, FIN, RST, SYN};
        p.fast = false;
        let Some(h) = frame.first_chunk::<54>() else { return };
        // Ethernet IPv4 (0x0800), version 4 + IHL 5 at byte 14; TCP; not a fragment.
        let w12 = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) & 0x00ff_ffff;
        let frag = u16::from_be_bytes([h[20], h[21]]) & 0x3fff;
        if w12 != 0x0045_0008 || h[23] != 6 || frag != 0 {
            return;
        }
        if h[47] & (SYN | FIN | RST | ACK) != ACK || h[46] < 0x50 {
            return;
        }
        let total = u16::from_be_bytes([h[16], h[17]]) as usize;
        if total < 40 || 14 + total > frame.len() {
            return;
        }
        let Some(port) = self.snap.ports.get(in_port as usize) else { return };
        if h[..6] != port.mac.0 {
            return;
        }
        let Some(ip) = h[14..].first_chunk::<20>() else { return };
        if !ipv4_header_ok(ip) {
            return;
        }
        let dst = u32::from_be_bytes([h[30], h[31], h[32], h[33]]);
        if !self.is_local(dst) {
            return;
        }
        p.key = ConnKey {
            proto: PROTO_TCP,
            caddr: u32::from_be_bytes([h[26], h[27], h[28], h[29]]),
            cport: u16::from_be_bytes([h[34], h[35]]),
            vaddr: dst,
            vport: u16::from_be_bytes([h[36], h[37]]),
        };
        p.hash = self.conns.hash(&p.key);
        p.fast = true;
        self.conns.prefetch_bucket(p.hash);
    }

    /// Burst stage 2: take the connection-table candidate for a frame stage 1 accepted and
    /// prefetch its entry.
    #[inline(always)]
    pub fn prefetch_entry(&self, p: &mut Prep) {
        p.cand = if p.fast { self.conns.candidate(p.hash) } else { NO_INDEX };
    }

    /// Burst stage 3: decide the frame (as [`Self::process`] does), using what stages 1 and
    /// 2 found. Earlier frames of the burst may have changed the table since: the candidate
    /// is only a hint, checked before use.
    #[inline(always)]
    pub fn process_prepared(&mut self, frame: &mut [u8], in_port: u16, now: u32, p: &Prep) -> Verdict {
        if self.sync.master {
            self.process_prepared_as::<true>(frame, in_port, now, p)
        } else {
            self.process_prepared_as::<false>(frame, in_port, now, p)
        }
    }

    /// Whether the connection-sync master runs: constant between bursts (changed only by
    /// [`Self::sync_poll`]), so a burst loop may test it once and run the stage 3 of that
    /// value ([`Self::process_prepared_as`]) for every frame.
    #[inline(always)]
    pub fn sync_master(&self) -> bool {
        self.sync.master
    }

    /// Stage 3 compiled for one value of [`Self::sync_master`] (`SYNC`), which the caller
    /// must pass: with `false` the fast path carries no trace of connection sync (not even
    /// the flag test); with `true` it counts the packet for the master.
    #[inline(always)]
    pub fn process_prepared_as<const SYNC: bool>(&mut self, frame: &mut [u8], in_port: u16, now: u32, p: &Prep) -> Verdict {
        debug_assert_eq!(SYNC, self.sync.master);
        if p.fast {
            if let Some(v) = self.fast_path::<SYNC>(frame, in_port, now, p) {
                return v;
            }
        }
        self.slow_path(frame, in_port, now)
    }

    /// The common case in one compact function: an ACK of an ESTABLISHED TCP connection to
    /// a resolved server, within the MTU, that stage 1 accepted. Such a packet changes no
    /// state and no counter move; only the idle timer is refreshed and the frame rewritten.
    /// Anything else returns `None` and goes through the full path, which re-parses from
    /// scratch.
    #[inline(always)]
    fn fast_path<const SYNC: bool>(&mut self, frame: &mut [u8], in_port: u16, now: u32, p: &Prep) -> Option<Verdict> {
        let h = frame.first_chunk::<54>()?;
        let (ttl, total) = (h[22], u16::from_be_bytes([h[16], h[17]]));
        let idx = self.conns.lookup_hinted(&p.key, p.hash, p.cand)?;
        let e = self.conns.get(idx)?;
        if e.state != TcpState::Established as u8 {
            return None;
        }
        let slot = e.server;
        let f = *self.fwd.get(slot as usize)?;
        if f.state != FWD_OK || ttl <= 1 || total > f.mtu {
            return None;
        }
        self.conns.touch(idx, now);
        self.rewrite_dr(frame, 14, &f, slot, u64::from(total));
        if let Some(c) = self.counters.ports.get_mut(in_port as usize) {
            c.rx += 1;
        }
        if let Some(c) = self.counters.ports.get_mut(f.port as usize) {
            c.forwarded += 1;
        }
        // The sync master counts the packet (out of line, after everything). Without a
        // master this is compiled out (`SYNC` is the burst's constant). `backup_only` never
        // gets here: it holds the servers' `fwd`.
        if SYNC {
            self.sync_packet(idx, false, now);
        }
        Some(Verdict::Forward(f.port))
    }

    /// Everything the fast path does not take: full parsing, checks and counting.
    fn slow_path(&mut self, frame: &mut [u8], in_port: u16, now: u32) -> Verdict {
        let v = self.classify(frame, in_port, now);
        let v = match v {
            Verdict::Emit { reason, .. } if !self.replies.take(now) => {
                self.counters.replies_ratelimited += 1;
                Verdict::Drop(reason)
            }
            v => v,
        };
        match v {
            Verdict::Drop(r) | Verdict::Emit { reason: r, .. } => self.counters.drop_at(in_port, r),
            _ => {}
        }
        if let Some(c) = self.counters.ports.get_mut(in_port as usize) {
            c.rx += 1;
            match v {
                Verdict::Drop(_) => c.dropped += 1,
                Verdict::Emit { .. } => {
                    c.dropped += 1;
                    c.replied += 1;
                }
                Verdict::Reply => c.replied += 1,
                Verdict::Host => c.to_host += 1,
                Verdict::ReplyAndHost { .. } => {
                    c.replied += 1;
                    c.to_host += 1;
                }
                Verdict::Forward(_) | Verdict::Consumed => {}
            }
        }
        if let Verdict::Forward(out) = v {
            if let Some(c) = self.counters.ports.get_mut(out as usize) {
                c.forwarded += 1;
            }
        }
        v
    }

    #[inline]
    fn classify(&mut self, frame: &mut [u8], in_port: u16, now: u32) -> Verdict {
        let l2 = match parse_l2(frame) {
            Ok(l2) => l2,
            Err(_) => return Verdict::Drop(DropReason::Truncated),
        };
        if l2.vlan.is_some() {
            return Verdict::Drop(DropReason::Vlan);
        }
        let Some(my_mac) = self.snap.port_mac(in_port) else {
            return Verdict::Drop(DropReason::NotOurMac);
        };
        let dst = MacAddr([frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]]);
        // Broadcast and multicast destinations (the group bit).
        let group = dst.0[0] & 1 != 0;
        let host = self.snap.host_leg;
        match l2.ethertype {
            ethertype::ARP => {
                if dst != my_mac && !dst.is_broadcast() {
                    return Verdict::Drop(DropReason::NotOurMac);
                }
                self.arp(frame, l2.l3_offset, in_port, my_mac, now)
            }
            ethertype::IPV4 => {
                if dst != my_mac {
                    if group && host {
                        return self.ipv4_group(frame, l2.l3_offset, in_port, now);
                    }
                    return Verdict::Drop(DropReason::NotOurMac);
                }
                self.ipv4(frame, l2.l3_offset, in_port, my_mac, now)
            }
            _ if !host => Verdict::Drop(DropReason::UnsupportedEthertype),
            // IPv6, LLDP and every other ethertype belong to the host's stack.
            _ if dst == my_mac || group => self.to_host(now),
            _ => Verdict::Drop(DropReason::NotOurMac),
        }
    }

    fn arp(&mut self, frame: &mut [u8], l3: usize, in_port: u16, my_mac: MacAddr, now: u32) -> Verdict {
        let (op, sha, spa, tpa) = {
            let Some(buf) = frame.get(l3..) else { return Verdict::Drop(DropReason::Truncated) };
            match ArpPacket::new_checked(buf) {
                Ok(a) => (a.operation(), a.sha(), a.spa(), a.tpa()),
                Err(_) => return Verdict::Drop(DropReason::BadArp),
            }
        };
        let for_us = self.snap.is_local_on(tpa, in_port);
        // Learn from answers, and from requests aimed at us (as Linux does); the control side
        // decides whether the sender is on-link or wanted.
        if (op == arp::op::REPLY || for_us) && sha.is_unicast() && !spa.is_unspecified() {
            let ev = NeighEvent { ip: spa, mac: sha, port: in_port };
            if self.events.push(ev).is_err() {
                self.counters.neigh_events_lost += 1;
            }
        }
        let host = self.snap.host_leg;
        if op == arp::op::REQUEST && for_us && spa != tpa {
            // The host gets the request as it arrived (copied before it becomes the reply),
            // within the leg's rate cap; the director answers either way.
            let copy = host && frame.len() <= SCRATCH_LEN && {
                let ok = self.host_police.take(now);
                if !ok {
                    self.counters.drop_at(in_port, DropReason::HostPoliced);
                }
                ok
            };
            if copy {
                self.scratch[..frame.len()].copy_from_slice(frame);
            }
            return match arp::make_reply_in_place(frame, l3, my_mac) {
                Ok(()) if copy => Verdict::ReplyAndHost { len: frame.len() as u16 },
                Ok(()) => Verdict::Reply,
                Err(_) => Verdict::Drop(DropReason::BadArp),
            };
        }
        if host {
            // Replies, gratuitous ARP and requests for others: the host's neighbour table
            // learns from them as on any Linux box (after the director learned).
            return self.to_host(now);
        }
        if op == arp::op::REPLY {
            return Verdict::Consumed;
        }
        Verdict::Drop(DropReason::ArpNotForUs)
    }

    #[inline]
    fn ipv4(&mut self, frame: &mut [u8], l3: usize, in_port: u16, my_mac: MacAddr, now: u32) -> Verdict {
        let Some(ipbuf) = frame.get(l3..) else { return Verdict::Drop(DropReason::Truncated) };
        let ip = match Ipv4Packet::new_checked(ipbuf) {
            Ok(ip) => ip,
            Err(e) => {
                return Verdict::Drop(match e {
                    WireError::BadVersion => DropReason::BadIpVersion,
                    WireError::BadHeaderLen => DropReason::BadIpHeaderLen,
                    WireError::BadTotalLen => DropReason::BadIpTotalLen,
                    _ => DropReason::Truncated,
                })
            }
        };
        if !ipv4_header_ok(ip.header()) {
            return Verdict::Drop(DropReason::BadIpChecksum);
        }
        let (src, dst, proto, hlen, total) =
            (ip.src(), ip.dst(), ip.protocol(), ip.header_len(), ip.total_len() as usize);
        if !self.is_local(u32::from(dst)) {
            return Verdict::Drop(DropReason::NotLocal);
        }
        if ip.is_fragment() {
            return Verdict::Drop(DropReason::Fragment);
        }
        let l4 = l3 + hlen;
        let l4_end = l3 + total;
        match proto {
            protocol::TCP | protocol::UDP => {
                let Some(seg) = frame.get(l4..l4_end) else { return Verdict::Drop(DropReason::Truncated) };
                let p = if proto == protocol::TCP {
                    match TcpPacket::new_checked(seg) {
                        Ok(t) => L4 {
                            key: ConnKey { proto, caddr: u32::from(src), cport: t.src_port(), vaddr: u32::from(dst), vport: t.dst_port() },
                            flags: t.flags().bits(),
                            seq: t.seq_number(),
                            ack: t.ack_number(),
                            payload: t.payload().len() as u32,
                            ip_len: total as u32,
                        },
                        Err(_) => return Verdict::Drop(DropReason::BadTcp),
                    }
                } else {
                    match UdpPacket::new_checked(seg) {
                        Ok(u) => L4 {
                            key: ConnKey { proto, caddr: u32::from(src), cport: u.src_port(), vaddr: u32::from(dst), vport: u.dst_port() },
                            flags: 0,
                            seq: 0,
                            ack: 0,
                            payload: 0,
                            ip_len: total as u32,
                        },
                        Err(_) => return Verdict::Drop(DropReason::BadUdp),
                    }
                };
                match self.connection(&p, in_port, now) {
                    Ok(slot) => self.dr_forward(frame, l3, in_port, my_mac, slot, total as u64),
                    Err(Refusal::Drop(r)) => Verdict::Drop(r),
                    Err(Refusal::Rst(r)) => self.emit_rst(frame, &p, my_mac, r),
                    Err(Refusal::Unreachable(r)) => {
                        self.emit_icmp_error(frame, l3, my_mac, msg_type::DEST_UNREACH, CODE_PORT_UNREACH, [0; 4], r)
                    }
                    Err(Refusal::Host) => self.to_host(now),
                }
            }
            protocol::ICMP => self.icmp_local(frame, l3, l4, l4_end, in_port, my_mac, now),
            _ if self.snap.host_leg => self.to_host(now),
            _ => Verdict::Drop(DropReason::UnsupportedProtocol),
        }
    }

    /// Finds or creates the connection of a client packet; returns its real-server slot.
    #[inline]
    fn connection(&mut self, p: &L4, in_port: u16, now: u32) -> Result<u32, Refusal> {
        use tcp_flags::{RST, SYN};
        if self.sync.backup_only {
            // backup_only: the director function is off while the backup daemon runs; as
            // IPVS passes the packet to the local stack, so does the kernel leg.
            return Err(if self.snap.host_leg { Refusal::Host } else { Refusal::Drop(DropReason::BackupOnly) });
        }
        let key = p.key;
        let tcp = key.proto == PROTO_TCP;
        let syn = tcp && p.flags & SYN != 0 && p.flags & RST == 0;
        if let Some(idx) = self.conns.lookup(&key) {
            match self.existing(idx, p.flags, syn, now) {
                Some(Ok(slot)) => return Ok(slot),
                Some(Err(r)) => return Err(r),
                // The entry was expired (port reuse or expire_nodest_conn): treat as new.
                None => {}
            }
        }
        // New connection: TCP only on SYN without RST, unless sloppy_tcp (any non-RST).
        if tcp && !syn && !(self.snap.sysctl.sloppy_tcp && p.flags & RST == 0) {
            // With the kernel leg, TCP to a port no service takes is the host's own (its
            // connections' answers, ssh, BGP): only a service port gets the RST.
            if self.snap.host_leg {
                let vip = Ipv4Addr::from(key.vaddr);
                let mark = self.snap.mark_of(in_port, vip, key.proto, key.vport);
                if self.snap.find_service(mark, key.proto, vip, key.vport).is_none() {
                    return Err(Refusal::Host);
                }
            }
            return Err(if p.flags & RST != 0 { Refusal::Drop(DropReason::NoConnection) } else { Refusal::Rst(DropReason::NoConnection) });
        }
        let vip = Ipv4Addr::from(key.vaddr);
        let mark = if self.snap.marks.is_empty() {
            0
        } else {
            let counts = &mut self.counters.marks;
            self.snap.mark_counted(in_port, vip, key.proto, key.vport, |i| {
                if let Some(c) = counts.get_mut(i) {
                    c.0 += 1;
                    c.1 += p.ip_len as u64;
                }
            })
        };
        let Some(si) = self.snap.find_service(mark, key.proto, vip, key.vport) else {
            if self.snap.host_leg {
                return Err(Refusal::Host);
            }
            // The director's own stack has no listener on this port.
            return Err(if tcp {
                if p.flags & RST != 0 { Refusal::Drop(DropReason::NoService) } else { Refusal::Rst(DropReason::NoService) }
            } else {
                Refusal::Unreachable(DropReason::NoService)
            });
        };
        // Defense: drop_packet drops one in `rate` packets that would be scheduled; a full
        // table makes room from unconfirmed handshakes before anything is inserted.
        if self.defense.drop_packet() {
            return Err(Refusal::Drop(DropReason::DropPacket));
        }
        if self.conns.len() + 2 > self.conns.capacity() {
            self.make_room(now);
        }
        let (slot, template) = match self.snap.services.get(si as usize).and_then(|s| s.persistent) {
            Some(secs) => self.schedule_persistent(si, &key, mark, secs, now)?,
            None => (self.schedule(si as usize, &key).ok_or(Refusal::Unreachable(DropReason::NoDestination))?, None),
        };
        // Created in NONE with the INACTIVE flag, then the first packet runs the state machine
        // (IPVS: bind counts it inactive, the SYN moves it to SYN_RECV = active).
        let init = ConnInit { server: slot, state: TcpState::None as u8, flags: F_INACTIVE, timeout: self.timeouts.new_conn };
        let idx = match self.conns.insert(key, init, now) {
            Ok(i) => i,
            Err(_) => return Err(Refusal::Drop(DropReason::TableFull)),
        };
        self.sync_created(idx, now);
        if let Some(c) = self.counters.servers.get_mut(slot as usize) {
            c.conns += 1;
            c.inactive += 1;
        }
        self.publish(slot);
        if let Some(t) = template {
            self.conns.set_control(idx, t);
            // A new connection under a template restarts the template's timer (with the
            // template's own timeout, which is 60 s once it was re-armed while controlling).
            self.conns.touch(t, now);
        }
        self.track(idx, p.flags, now);
        Ok(slot)
    }

    /// Handles a packet of an existing entry. `None` means the entry was removed and the
    /// packet must be treated as a new connection.
    #[inline]
    fn existing(&mut self, idx: u32, flags: u8, syn: bool, now: u32) -> Option<Result<u32, Refusal>> {
        use tcp_flags::{ACK, FIN, RST, SYN};
        let e = self.conns.get(idx)?;
        let (slot, state, controlled, proto) = (e.server, e.state, e.control() != NO_INDEX, e.key().proto);
        let live = self.fwd.get(slot as usize).is_some_and(|f| f.state != FWD_GONE);
        // Fast path: an ACK of an established connection to a live server changes neither
        // state nor counters; only the idle timer is refreshed.
        if live && proto == PROTO_TCP && state == TcpState::Established as u8 && flags & (SYN | FIN | RST) == 0 && flags & ACK != 0 {
            self.conns.touch(idx, now);
            if self.sync.master {
                self.sync_packet(idx, false, now);
            }
            return Some(Ok(slot));
        }
        let sysctl = self.snap.sysctl;
        if !live {
            if sysctl.expire_nodest_conn {
                // The server was deleted: expire the entry now; the packet is new.
                self.remove_entry(idx);
                return None;
            }
            // Deleted server, expire_nodest_conn = 0: drop silently without refreshing.
            return Some(Err(Refusal::Drop(DropReason::DestinationGone)));
        }
        if syn && !controlled {
            let weight = self.snap.servers.get(slot as usize).and_then(|s| s.as_ref()).map_or(0, |s| s.weight);
            let reuse = match TcpState::from_u8(state) {
                Some(TcpState::TimeWait) | Some(TcpState::Close) => sysctl.conn_reuse_mode & 1 != 0,
                // DR entries are NOOUTPUT: bit 2 also reschedules FIN_WAIT.
                Some(TcpState::FinWait) => sysctl.conn_reuse_mode & 2 != 0,
                _ => false,
            };
            if reuse || (sysctl.expire_nodest_conn && weight == 0) {
                self.remove_entry(idx);
                return None;
            }
        }
        self.track(idx, flags, now);
        Some(Ok(slot))
    }

    /// Runs the state machine for a packet of entry `idx`, moves counters, refreshes timers.
    #[inline]
    fn track(&mut self, idx: u32, flags: u8, now: u32) {
        let secure = self.defense.secure_tcp();
        let Some(e) = self.conns.get_mut(idx) else { return };
        let (slot, control, old_state) = (e.server, e.control(), e.state);
        if e.key().proto == PROTO_TCP {
            let t = e.apply_tcp_with(flags, &self.timeouts, secure);
            if e.state == TcpState::SynRecv as u8 || e.state == TcpState::SynAck as u8 {
                // A handshake: a candidate for eviction should the table fill up.
                self.defense.note(idx);
            } else if t.counter != CounterMove::None || t.established {
                self.defense.confirmed(idx);
            }
            if let Some(c) = self.counters.servers.get_mut(slot as usize) {
                match t.counter {
                    CounterMove::ToActive => {
                        c.active += 1;
                        c.inactive = c.inactive.saturating_sub(1);
                    }
                    CounterMove::ToInactive => {
                        c.inactive += 1;
                        c.active = c.active.saturating_sub(1);
                    }
                    CounterMove::None => {}
                }
            }
            if t.counter != CounterMove::None {
                self.publish(slot);
            }
            if t.established && control != NO_INDEX {
                if let Some(tmpl) = self.conns.get_mut(control) {
                    tmpl.state = TEMPLATE_STATE_ASSURED;
                }
                self.defense.confirmed(control);
            }
        } else {
            e.apply_udp(&self.timeouts);
        }
        self.conns.touch(idx, now);
        if self.sync.master {
            let changed = self.conns.get(idx).is_some_and(|e| e.state != old_state);
            self.sync_packet(idx, changed, now);
        }
    }

    /// Removes an entry at once (port reuse, expire_nodest_conn), releasing its counter.
    fn remove_entry(&mut self, idx: u32) {
        if let Ok(e) = self.conns.remove(idx) {
            release(&mut self.counters.servers, self.merged.as_ref(), e.server, e.flags);
        }
    }

    /// Persistent scheduling (§3.2): reuse a valid template, else schedule and create one.
    fn schedule_persistent(&mut self, si: u32, key: &ConnKey, mark: u32, secs: u32, now: u32) -> Result<(u32, Option<u32>), Refusal> {
        let Some(svc) = self.snap.services.get(si as usize) else { return Err(Refusal::Drop(DropReason::NoService)) };
        let mask = u32::from(svc.netmask);
        let tkey = match svc.key {
            SvcKey::Fwmark(m) => ConnKey { proto: 0, caddr: key.caddr & mask, cport: 0, vaddr: m, vport: 0 },
            SvcKey::Addr { port, .. } => ConnKey {
                proto: key.proto,
                caddr: key.caddr & mask,
                cport: 0,
                vaddr: key.vaddr,
                // Port-0 (all ports) and FTP services keep per-client templates on vport 0.
                vport: if port == 0 || port == 21 { 0 } else { key.vport },
            },
        };
        let _ = mark;
        if let Some(t) = self.conns.lookup(&tkey) {
            let slot = self.conns.get(t).map_or(u32::MAX, |e| e.server);
            let valid = self.snap.servers.get(slot as usize).and_then(|s| s.as_ref()).is_some_and(|rs| {
                !(self.snap.sysctl.expire_quiescent_template && rs.weight == 0)
            });
            if valid {
                return Ok((slot, Some(t)));
            }
            // Dead template: re-keyed so it never matches again, left to its timer.
            let display = ConnKey { cport: 0, vport: 65535, ..tkey };
            self.conns.invalidate(t, display);
        }
        let slot = self.schedule(si as usize, key).ok_or(Refusal::Unreachable(DropReason::NoDestination))?;
        let timeout = crate::timer::secs_to_ticks(secs, self.ticks_per_sec);
        let init = ConnInit { server: slot, state: TEMPLATE_STATE_NONE, flags: F_TEMPLATE, timeout };
        let t = match self.conns.insert(tkey, init, now) {
            Ok(t) => t,
            Err(_) => return Err(Refusal::Drop(DropReason::TableFull)),
        };
        self.sync_created(t, now);
        self.defense.note(t);
        if let Some(c) = self.counters.servers.get_mut(slot as usize) {
            c.persist += 1;
        }
        Ok((slot, Some(t)))
    }

    /// Runs the service's scheduler; returns a real-server slot.
    fn schedule(&mut self, si: usize, key: &ConnKey) -> Option<u32> {
        let svc = self.snap.services.get(si)?;
        let dests = Dests::new(&svc.servers, &self.snap, &self.counters, &self.merged);
        let sched = self.scheds.get_mut(si)?.as_mut()?;
        let input = SchedInput { caddr: key.caddr, cport: key.cport, vaddr: key.vaddr };
        let i = sched.schedule(&dests, &input)?;
        svc.servers.get(i).copied()
    }

    /// Direct-routing rewrite toward real server `slot`: Ethernet addresses, TTL - 1.
    #[inline]
    fn dr_forward(&mut self, frame: &mut [u8], l3: usize, _in_port: u16, my_mac: MacAddr, slot: u32, ip_len: u64) -> Verdict {
        let Some(&f) = self.fwd.get(slot as usize) else { return Verdict::Drop(DropReason::DestinationGone) };
        match f.state {
            FWD_OK => {}
            FWD_NO_ROUTE => return Verdict::Drop(DropReason::NoRoute),
            FWD_UNRESOLVED => return Verdict::Drop(DropReason::NeighbourUnresolved),
            // A local real server: its connections reach the host stack unchanged, as IPVS
            // hands LOCALNODE packets to the local stack.
            FWD_LOCAL if self.snap.host_leg => return Verdict::Host,
            FWD_LOCAL => return Verdict::Drop(DropReason::NoKernelInterface),
            FWD_HELD if self.snap.host_leg => return Verdict::Host,
            FWD_HELD => return Verdict::Drop(DropReason::BackupOnly),
            _ => return Verdict::Drop(DropReason::DestinationGone),
        }
        // The IPv4 header was validated by the caller: TTL at +8, DF in +6, checksum at +10.
        let (Some(&ttl), Some(&frag)) = (frame.get(l3 + 8), frame.get(l3 + 6)) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        if ttl <= 1 {
            return self.emit_icmp_error(frame, l3, my_mac, msg_type::TIME_EXCEEDED, CODE_TTL_EXCEEDED, [0; 4], DropReason::TtlExceeded);
        }
        if ip_len > f.mtu as u64 {
            if frag & 0x40 == 0 || !self.snap.sysctl.pmtu_disc {
                // Not DF (the director does not fragment), or PMTU discovery off: count it.
                return Verdict::Drop(DropReason::MtuExceeded);
            }
            let m = f.mtu.to_be_bytes();
            return self.emit_icmp_error(frame, l3, my_mac, msg_type::DEST_UNREACH, CODE_FRAG_NEEDED, [0, 0, m[0], m[1]], DropReason::MtuExceeded);
        }
        self.rewrite_dr(frame, l3, &f, slot, ip_len);
        Verdict::Forward(f.port)
    }

    /// The DR rewrite itself, shared by the fast and the full path: TTL − 1 with the
    /// incremental checksum update, the new Ethernet addresses, the server's counters. The
    /// caller has checked the IPv4 header at `l3`, TTL > 1 and the MTU.
    #[inline(always)]
    fn rewrite_dr(&mut self, frame: &mut [u8], l3: usize, f: &Fwd, slot: u32, ip_len: u64) {
        // Only the fixed 20-byte header: a slice of known length lets the compiler drop the
        // bounds checks of the view's accessors.
        if let Some(ip) = frame.get_mut(l3..l3 + 20) {
            Ipv4Packet::new_unchecked(ip).decrement_ttl_incremental();
        }
        if let Some(h) = frame.get_mut(..12) {
            h.copy_from_slice(&f.hdr);
        }
        if let Some(c) = self.counters.servers.get_mut(slot as usize) {
            c.inpkts += 1;
            c.inbytes += ip_len;
        }
    }

    /// ICMP addressed to one of our addresses: answer echo requests in place; forward errors
    /// about a known connection to its real server (§6.3).
    #[allow(clippy::too_many_arguments)]
    fn icmp_local(&mut self, frame: &mut [u8], l3: usize, l4: usize, l4_end: usize, in_port: u16, my_mac: MacAddr, now: u32) -> Verdict {
        let (ty, quoted) = {
            let Some(buf) = frame.get(l4..l4_end) else { return Verdict::Drop(DropReason::Truncated) };
            let Ok(icmp) = IcmpPacket::new_checked(buf) else { return Verdict::Drop(DropReason::BadIcmp) };
            if !icmp.verify_checksum() {
                return Verdict::Drop(DropReason::BadIcmp);
            }
            let ty = icmp.msg_type();
            let quoted = match ty {
                msg_type::DEST_UNREACH | msg_type::SOURCE_QUENCH | msg_type::TIME_EXCEEDED => icmp.quoted().ok(),
                _ => None,
            };
            (ty, quoted)
        };
        if ty == msg_type::ECHO_REQUEST {
            return self.echo_reply(frame, l3, l4, l4_end, my_mac);
        }
        // Echo replies, and errors about no connection of ours: the host's (its own pings and
        // probes) with the kernel leg, else nobody's.
        let unhandled = |e: &mut Self| if e.snap.host_leg { e.to_host(now) } else { Verdict::Drop(DropReason::IcmpUnhandled) };
        let Some(q) = quoted else { return unhandled(self) };
        // The quoted packet is a real server's reply: VIP:vport → client:cport. Errors about
        // later fragments carry no ports.
        if q.frag_offset != 0 || (q.protocol != PROTO_TCP && q.protocol != PROTO_UDP) {
            return unhandled(self);
        }
        let key = ConnKey { proto: q.protocol, caddr: u32::from(q.dst), cport: q.dst_port, vaddr: u32::from(q.src), vport: q.src_port };
        let Some(slot) = self.conns.lookup(&key).and_then(|idx| self.conns.get(idx)).map(|e| e.server) else {
            return unhandled(self);
        };
        let total = (l4_end - l3) as u64;
        match self.dr_forward(frame, l3, in_port, my_mac, slot, total) {
            // Never answer an ICMP error with another one.
            Verdict::Emit { reason, .. } => Verdict::Drop(reason),
            v => v,
        }
    }

    fn echo_reply(&mut self, frame: &mut [u8], l3: usize, l4: usize, l4_end: usize, my_mac: MacAddr) -> Verdict {
        // ICMP: type 8 → 0, checksum updated incrementally (type is the high byte of word 0).
        if let Some(buf) = frame.get_mut(l4..l4_end) {
            let mut icmp = IcmpPacket::new_unchecked(buf);
            let old = icmp.checksum();
            icmp.set_msg_type(msg_type::ECHO_REPLY);
            icmp.set_checksum(checksum::update16(old, (msg_type::ECHO_REQUEST as u16) << 8, (msg_type::ECHO_REPLY as u16) << 8));
        }
        // IPv4: swap addresses, fresh TTL, full header checksum.
        if let Some(buf) = frame.get_mut(l3..) {
            let mut ip = Ipv4Packet::new_unchecked(buf);
            let (s, d) = (ip.src(), ip.dst());
            ip.set_src(d);
            ip.set_dst(s);
            ip.set_ttl(64);
            ip.fill_checksum();
        }
        // Ethernet: back to the sender.
        let mut src = [0u8; 6];
        src.copy_from_slice(&frame[6..12]);
        frame[0..6].copy_from_slice(&src);
        frame[6..12].copy_from_slice(&my_mac.0);
        Verdict::Reply
    }

    /// Writes Ethernet + IPv4 headers of a generated reply into the scratch buffer: back to
    /// the frame's sender, from the address it was sent to. Returns the IPv4 header offset.
    #[allow(clippy::too_many_arguments)]
    fn reply_headers(&mut self, frame: &[u8], my_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ip_len: usize, tos: u8, df: bool) {
        let s = &mut self.scratch;
        s[0..6].copy_from_slice(&frame[6..12]);
        s[6..12].copy_from_slice(&my_mac.0);
        s[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        let ip = &mut s[14..34];
        ip.fill(0);
        ip[0] = 0x45;
        ip[1] = tos;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        if df {
            ip[6] = 0x40;
        }
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let c = checksum::fold(checksum::sum16(ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }

    /// A TCP RST answering `p`, from the address and port it was sent to (tcp_v4_send_reset).
    fn emit_rst(&mut self, frame: &[u8], p: &L4, my_mac: MacAddr, reason: DropReason) -> Verdict {
        use tcp_flags::{ACK, FIN, RST, SYN};
        if p.flags & RST != 0 {
            return Verdict::Drop(reason);
        }
        let (seq, ack, flags) = if p.flags & ACK != 0 {
            (p.ack, 0, RST)
        } else {
            let len = p.payload + (p.flags & SYN != 0) as u32 + (p.flags & FIN != 0) as u32;
            (0, p.seq.wrapping_add(len), RST | ACK)
        };
        let (src, dst) = (Ipv4Addr::from(p.key.vaddr), Ipv4Addr::from(p.key.caddr));
        self.reply_headers(frame, my_mac, src, dst, PROTO_TCP, 40, 0, true);
        let t = &mut self.scratch[34..54];
        t.fill(0);
        t[0..2].copy_from_slice(&p.key.vport.to_be_bytes());
        t[2..4].copy_from_slice(&p.key.cport.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        let sum = checksum::sum16(t, checksum::pseudo_header_v4(src, dst, PROTO_TCP, 20));
        let c = checksum::fold(sum);
        self.scratch[50..52].copy_from_slice(&c.to_be_bytes());
        let len = 60; // 54 bytes padded to the Ethernet minimum
        self.scratch[54..len].fill(0);
        Verdict::Emit { len: len as u16, reason }
    }

    /// An ICMP error about the IPv4 packet at `frame[l3..]`, quoting its header and as much
    /// of its payload as fits, sent back to its source from the address it was sent to.
    #[allow(clippy::too_many_arguments)]
    fn emit_icmp_error(&mut self, frame: &[u8], l3: usize, my_mac: MacAddr, ty: u8, code: u8, rest: [u8; 4], reason: DropReason) -> Verdict {
        let Some(orig) = frame.get(l3..) else { return Verdict::Drop(reason) };
        let ip = Ipv4Packet::new_unchecked(orig);
        let (src, dst) = (ip.dst(), ip.src());
        if !dst.is_unicast_like() {
            return Verdict::Drop(reason);
        }
        let orig_len = (ip.total_len() as usize).min(orig.len());
        let quote = orig_len.min(SCRATCH_LEN - 14 - 20 - 8);
        let ip_len = 20 + 8 + quote;
        self.reply_headers(frame, my_mac, src, dst, protocol::ICMP, ip_len, 0xc0, false);
        let icmp = &mut self.scratch[34..34 + 8 + quote];
        icmp[0] = ty;
        icmp[1] = code;
        icmp[2] = 0;
        icmp[3] = 0;
        icmp[4..8].copy_from_slice(&rest);
        icmp[8..].copy_from_slice(&orig[..quote]);
        let c = checksum::fold(checksum::sum16(icmp, 0));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut len = 14 + ip_len;
        if len < 60 {
            self.scratch[len..60].fill(0);
            len = 60;
        }
        Verdict::Emit { len: len as u16, reason }
    }
}

/// Addresses an ICMP error may be sent to (never broadcast, multicast, 0.0.0.0/8, loopback).
trait UnicastLike {
    fn is_unicast_like(&self) -> bool;
}

impl UnicastLike for Ipv4Addr {
    fn is_unicast_like(&self) -> bool {
        !(self.is_broadcast() || self.is_multicast() || self.octets()[0] == 0 || self.is_loopback())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::conn::tcp_flags::{ACK, FIN, RST, SYN};
    use crate::snapshot::{PortInfo, ServerInfo, ServiceInfo, SvcKey};
    use crate::wire::{Frame, TcpFlags};

    pub(super) const PORT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xd0]);
    pub(super) const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc1]);
    pub(super) const RS_MACS: [MacAddr; 2] = [MacAddr([2, 0, 0, 0, 0, 0x11]), MacAddr([2, 0, 0, 0, 0, 0x12])];
    pub(super) const DIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    pub(super) const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
    pub(super) const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);
    pub(super) const RIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 51, 100, 11), Ipv4Addr::new(198, 51, 100, 12)];
    pub(super) const TPS: u32 = 16;

    pub(super) fn snapshot(sched: &str) -> Snapshot {
        let mut s = Snapshot::default();
        s.ports.push(PortInfo { id: 0, mac: PORT_MAC, mtu: 1500, addrs: vec![(DIP, 24), (VIP, 32)] });
        s.local.insert(DIP, 1);
        s.local.insert(VIP, 1);
        // Kernel order: newest first; rs2 (slot 1) was added last.
        s.services.push(ServiceInfo {
            key: SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 },
            scheduler: sched.into(),
            sched_flags: 0,
            persistent: None,
            netmask: Ipv4Addr::BROADCAST,
            servers: vec![1, 0],
            rotation: crate::sched::Rotation::new(sched, [1u32, 0].map(|id| crate::sched::DestInfo { id, weight: 1, ..Default::default() }).as_slice()),
        });
        s.by_addr.insert((PROTO_TCP, VIP, 80), 0);
        for i in 0..2 {
            s.servers.push(Some(ServerInfo {
                slot: i as u32,
                svc: 0,
                addr: RIPS[i],
                port: 80,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
                egress_port: Some(0),
                mac: Some(RS_MACS[i]),
                incarnation: i as u64 + 1,
                local: false,
            }));
        }
        s
    }

    pub(super) fn engine(sched: &str) -> (Engine, Arc<ArrayQueue<NeighEvent>>) {
        let q = Arc::new(ArrayQueue::new(16));
        let cfg = EngineConfig { conn_capacity: 64, max_servers: 16, ports: 2, ticks_per_sec: TPS, seed: 7, host_pps: 1000 };
        let mut e = Engine::new(cfg, q.clone()).unwrap();
        e.set_snapshot(Arc::new(snapshot(sched)));
        (e, q)
    }

    pub(super) fn tcp(sport: u16, flags: u8) -> Vec<u8> {
        Frame::tcp()
            .src_mac(CLIENT_MAC)
            .dst_mac(PORT_MAC)
            .src(CIP, sport)
            .dst(VIP, 80)
            .flags(TcpFlags(flags))
            .ttl(64)
            .payload(b"hello")
            .build()
    }

    fn rs_of(frame: &[u8]) -> usize {
        RS_MACS.iter().position(|m| m.0 == frame[0..6]).expect("forwarded to a real server MAC")
    }

    #[test]
    fn syn_is_forwarded_by_dr_and_only_the_ethernet_header_and_ttl_change() {
        let (mut e, _) = engine("rr");
        let orig = tcp(40000, SYN);
        let mut f = orig.clone();
        assert_eq!(e.process(&mut f, 0, 0), Verdict::Forward(0));
        assert_eq!(&f[6..12], &PORT_MAC.0);
        let rs = rs_of(&f);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.ttl(), 63);
        assert!(ip.verify_checksum());
        assert_eq!((ip.src(), ip.dst()), (CIP, VIP));
        // Everything after the IP header is untouched (ports, payload, TCP checksum).
        assert_eq!(&f[34..], &orig[34..]);
        assert_eq!(f.len(), orig.len());
        let c = e.counters().servers[rs];
        assert_eq!((c.conns, c.active, c.inactive, c.inpkts), (1, 1, 0, 1));
        assert_eq!(c.inbytes, ip.total_len() as u64, "IP bytes, not Ethernet padding");
    }

    #[test]
    fn rr_alternates_and_every_packet_of_a_connection_follows_its_syn() {
        let (mut e, _) = engine("rr");
        let mut first = Vec::new();
        for sport in 40000..40006 {
            let mut f = tcp(sport, SYN);
            assert_eq!(e.process(&mut f, 0, 0), Verdict::Forward(0));
            first.push(rs_of(&f));
        }
        // Kernel order is newest first and rr starts after the list head: rs2, rs1, ...
        assert_eq!(first, vec![1, 0, 1, 0, 1, 0]);
        for (i, sport) in (40000..40006).enumerate() {
            for flags in [ACK, ACK, FIN | ACK] {
                let mut f = tcp(sport, flags);
                assert_eq!(e.process(&mut f, 0, 1), Verdict::Forward(0));
                assert_eq!(rs_of(&f), first[i]);
            }
        }
        // After the client's FIN every connection is inactive (FIN_WAIT).
        let total: Vec<_> = e.counters().servers[..2].iter().map(|c| (c.active, c.inactive)).collect();
        assert_eq!(total, vec![(0, 3), (0, 3)]);
    }

    /// The generated frame of an Emit verdict, parsed: (ip src, ip dst, l4 bytes).
    pub(super) fn emitted(e: &Engine, v: Verdict) -> Vec<u8> {
        let Verdict::Emit { len, .. } = v else { panic!("expected a generated reply, got {v:?}") };
        let f = e.scratch()[..len as usize].to_vec();
        assert_eq!(&f[0..6], &CLIENT_MAC.0, "back to the sender");
        assert_eq!(&f[6..12], &PORT_MAC.0);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src(), ip.dst()), (VIP, CIP), "from the VIP to the client");
        f
    }

    #[test]
    fn non_syn_without_connection_gets_a_reset_from_the_vip_and_rst_gets_nothing() {
        let (mut e, _) = engine("rr");
        let mut f = Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 41000).dst(VIP, 80)
            .flags(TcpFlags(ACK)).seq(1000).ack(777_777).payload(b"data").build();
        let v = e.process(&mut f, 0, 0);
        assert!(matches!(v, Verdict::Emit { reason: DropReason::NoConnection, .. }));
        let r = emitted(&e, v);
        let ip = Ipv4Packet::new_checked(&r[14..]).unwrap();
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(t.verify_checksum(VIP, CIP));
        assert_eq!((t.src_port(), t.dst_port()), (80, 41000));
        assert_eq!((t.flags().bits(), t.seq_number()), (RST, 777_777), "RST with seq = the packet's ack");
        // Without ACK: RST|ACK acknowledging everything the packet carried (FIN counts 1).
        let mut f = Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 41001).dst(VIP, 80)
            .flags(TcpFlags(FIN)).seq(50).payload(b"abc").build();
        let v = e.process(&mut f, 0, 0);
        let r = emitted(&e, v);
        let t = TcpPacket::new_checked(Ipv4Packet::new_checked(&r[14..]).unwrap().payload()).unwrap().flags().bits();
        assert_eq!(t, RST | ACK);
        let ack = TcpPacket::new_checked(Ipv4Packet::new_checked(&r[14..]).unwrap().payload()).unwrap().ack_number();
        assert_eq!(ack, 54);
        for flags in [RST, SYN | RST, RST | ACK] {
            let mut f = tcp(41002, flags);
            assert_eq!(e.process(&mut f, 0, 0), Verdict::Drop(DropReason::NoConnection), "never answer a RST");
        }
        assert_eq!(e.conns().len(), 0);
        assert_eq!(e.counters().drops[DropReason::NoConnection as usize], 5);
    }

    #[test]
    fn packets_not_for_a_service_are_dropped_or_answered_with_their_reason() {
        let (mut e, _) = engine("rr");
        let drops: Vec<(Vec<u8>, DropReason)> = vec![
            (Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 1).dst(Ipv4Addr::new(198, 51, 100, 99), 80).flags(TcpFlags(SYN)).build(), DropReason::NotLocal),
            (Frame::tcp().src_mac(CLIENT_MAC).dst_mac(RS_MACS[0]).src(CIP, 1).dst(VIP, 80).flags(TcpFlags(SYN)).build(), DropReason::NotOurMac),
            (Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 1).dst(VIP, 80).flags(TcpFlags(SYN)).vlan(Some(5)).build(), DropReason::Vlan),
            (Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 1).dst(VIP, 80).flags(TcpFlags(SYN)).fragment(false, 8).build(), DropReason::Fragment),
            (Frame::raw_ip(47).src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src_ip(CIP).dst_ip(VIP).build(), DropReason::UnsupportedProtocol),
            (Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 1).dst(VIP, 80).flags(TcpFlags(SYN)).df(false).payload(&[0u8; 1600]).build(), DropReason::MtuExceeded),
        ];
        for (mut f, reason) in drops {
            assert_eq!(e.process(&mut f, 0, 0), Verdict::Drop(reason));
        }
        // SYN to a port without service: RST|ACK (no listener on the VIP).
        let mut f = Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 1).dst(VIP, 443).flags(TcpFlags(SYN)).seq(9).build();
        let v = e.process(&mut f, 0, 0);
        assert!(matches!(v, Verdict::Emit { reason: DropReason::NoService, .. }));
        let r = emitted(&e, v);
        let ip = Ipv4Packet::new_checked(&r[14..]).unwrap();
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((t.flags().bits(), t.ack_number()), (RST | ACK, 10));
        // UDP to a port without service: ICMP port unreachable quoting the datagram.
        let mut f = Frame::udp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 5353).dst(VIP, 53).payload(b"q").build();
        let orig_ip = f[14..14 + 29].to_vec();
        let v = e.process(&mut f, 0, 0);
        assert!(matches!(v, Verdict::Emit { reason: DropReason::NoService, .. }));
        let r = emitted(&e, v);
        let ip = Ipv4Packet::new_checked(&r[14..]).unwrap();
        let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!((icmp.msg_type(), icmp.code()), (msg_type::DEST_UNREACH, 3));
        assert_eq!(icmp.payload(), &orig_ip[..], "quotes the whole offending datagram");
        // TTL 1: time exceeded. DF over the MTU: fragmentation needed with the MTU.
        let mut f = Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 2).dst(VIP, 80).flags(TcpFlags(SYN)).ttl(1).build();
        let v = e.process(&mut f, 0, 0);
        let r = emitted(&e, v);
        assert_eq!(r[34], msg_type::TIME_EXCEEDED);
        let mut f = Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 3).dst(VIP, 80).flags(TcpFlags(SYN)).df(true).payload(&[0u8; 1600]).build();
        let v = e.process(&mut f, 0, 0);
        assert!(matches!(v, Verdict::Emit { reason: DropReason::MtuExceeded, .. }));
        let r = emitted(&e, v);
        let ip = Ipv4Packet::new_checked(&r[14..]).unwrap();
        let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((icmp.msg_type(), icmp.code(), icmp.next_hop_mtu()), (msg_type::DEST_UNREACH, 4, 1500));
        assert!(r.len() <= SCRATCH_LEN);
        let mut bad = tcp(1, SYN);
        bad[14 + 10] ^= 0xff; // IP checksum
        assert_eq!(e.process(&mut bad, 0, 0), Verdict::Drop(DropReason::BadIpChecksum));
        let mut short = tcp(1, SYN);
        short.truncate(14 + 20 + 10);
        assert!(matches!(e.process(&mut short, 0, 0), Verdict::Drop(_)));
    }

    #[test]
    fn generated_replies_are_rate_limited() {
        let (mut e, _) = engine("rr");
        let mut emitted = 0;
        for i in 0..1000u16 {
            let mut f = tcp(10_000 + i, ACK);
            if matches!(e.process(&mut f, 0, 5), Verdict::Emit { .. }) {
                emitted += 1;
            }
        }
        assert_eq!(emitted, 100, "one burst within a single tick");
        assert_eq!(e.counters().replies_ratelimited, 900);
        assert_eq!(e.counters().drops[DropReason::NoConnection as usize], 1000);
        // One second later the bucket has refilled.
        let mut f = tcp(20_000, ACK);
        assert!(matches!(e.process(&mut f, 0, 5 + TPS), Verdict::Emit { .. }));
    }

    #[test]
    fn arp_requests_for_our_addresses_are_answered_and_senders_learned() {
        let (mut e, q) = engine("rr");
        for target in [VIP, DIP] {
            let mut f = Frame::arp_request(CLIENT_MAC, CIP, target).build();
            assert_eq!(e.process(&mut f, 0, 0), Verdict::Reply);
            assert_eq!(&f[0..6], &CLIENT_MAC.0);
            assert_eq!(&f[6..12], &PORT_MAC.0);
            let a = ArpPacket::new_checked(&f[14..]).unwrap();
            assert_eq!((a.operation(), a.sha(), a.spa(), a.tha(), a.tpa()), (arp::op::REPLY, PORT_MAC, target, CLIENT_MAC, CIP));
            assert_eq!(q.pop(), Some(NeighEvent { ip: CIP, mac: CLIENT_MAC, port: 0 }));
        }
        let mut other = Frame::arp_request(CLIENT_MAC, CIP, Ipv4Addr::new(198, 51, 100, 77)).build();
        assert_eq!(e.process(&mut other, 0, 0), Verdict::Drop(DropReason::ArpNotForUs));
        assert!(q.pop().is_none(), "requests for others teach nothing");
        // A reply (to our probe) is learned and consumed.
        let mut reply = Frame::arp_reply(RS_MACS[0], RIPS[0], PORT_MAC, DIP).build();
        assert_eq!(e.process(&mut reply, 0, 0), Verdict::Consumed);
        assert_eq!(q.pop(), Some(NeighEvent { ip: RIPS[0], mac: RS_MACS[0], port: 0 }));
        // An address is answered only on the port it is configured on.
        let mut wrong_port = Frame::arp_request(CLIENT_MAC, CIP, VIP).build();
        assert_eq!(e.process(&mut wrong_port, 1, 0), Verdict::Drop(DropReason::NotOurMac));
    }

    #[test]
    fn icmp_echo_to_the_vip_is_answered_in_place() {
        let (mut e, _) = engine("rr");
        let mut f = Frame::icmp_echo(0x1234, 7).src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src_ip(CIP).dst_ip(VIP).payload(b"ping-data").build();
        assert_eq!(e.process(&mut f, 0, 0), Verdict::Reply);
        assert_eq!((&f[0..6], &f[6..12]), (&CLIENT_MAC.0[..], &PORT_MAC.0[..]));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src(), ip.dst()), (VIP, CIP));
        let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!((icmp.msg_type(), icmp.echo_ident(), icmp.echo_seq()), (msg_type::ECHO_REPLY, 0x1234, 7));
        assert_eq!(icmp.payload(), b"ping-data");
    }

    #[test]
    fn unresolved_or_off_link_servers_are_counted_not_forwarded() {
        let (mut e, _) = engine("rr");
        let mut s = snapshot("rr");
        s.servers[1].as_mut().unwrap().mac = None;
        s.servers[0].as_mut().unwrap().egress_port = None;
        e.set_snapshot(Arc::new(s));
        let mut a = tcp(42000, SYN);
        let mut b = tcp(42001, SYN);
        let r = [e.process(&mut a, 0, 0), e.process(&mut b, 0, 0)];
        assert!(r.contains(&Verdict::Drop(DropReason::NeighbourUnresolved)));
        assert!(r.contains(&Verdict::Drop(DropReason::NoRoute)));
    }

    #[test]
    fn deleted_server_drops_its_connections_and_new_ones_go_elsewhere() {
        let (mut e, _) = engine("rr");
        let mut f = tcp(43000, SYN);
        e.process(&mut f, 0, 0);
        let victim = rs_of(&f);
        let mut s = snapshot("rr");
        s.servers[victim] = None;
        s.services[0].servers.retain(|&x| x as usize != victim);
        e.set_snapshot(Arc::new(s));
        let mut ack = tcp(43000, ACK);
        assert_eq!(e.process(&mut ack, 0, 1), Verdict::Drop(DropReason::DestinationGone));
        for sport in 43001..43005 {
            let mut f = tcp(sport, SYN);
            assert_eq!(e.process(&mut f, 0, 1), Verdict::Forward(0));
            assert_eq!(rs_of(&f), 1 - victim);
        }
    }

    #[test]
    fn weight_zero_gets_no_new_connections_and_no_server_means_no_destination() {
        let (mut e, _) = engine("wlc");
        let mut s = snapshot("wlc");
        s.servers[0].as_mut().unwrap().weight = 0;
        e.set_snapshot(Arc::new(s.clone()));
        for sport in 44000..44010 {
            let mut f = tcp(sport, SYN);
            e.process(&mut f, 0, 0);
            assert_eq!(rs_of(&f), 1);
        }
        s.servers[1].as_mut().unwrap().weight = 0;
        e.set_snapshot(Arc::new(s));
        let mut f = tcp(44100, SYN);
        let v = e.process(&mut f, 0, 0);
        assert!(matches!(v, Verdict::Emit { reason: DropReason::NoDestination, .. }), "ICMP port unreachable, not RST");
        assert_eq!(emitted(&e, v)[34], msg_type::DEST_UNREACH);
    }

    #[test]
    fn idle_connections_expire_and_counters_return_to_zero() {
        let (mut e, _) = engine("rr");
        for sport in 45000..45004 {
            let mut f = tcp(sport, SYN);
            e.process(&mut f, 0, 0);
        }
        assert_eq!(e.conns().len(), 4);
        // SYN_RECV lasts 60 s; nothing expires before.
        e.expire(59 * TPS, 1_000);
        assert_eq!(e.conns().len(), 4);
        e.expire(62 * TPS, 1_000);
        assert_eq!(e.conns().len(), 0);
        for c in &e.counters().servers[..2] {
            assert_eq!((c.active, c.inactive, c.conns), (0, 0, 2));
        }
    }

    #[test]
    fn full_table_refuses_new_connections_but_keeps_serving_existing_ones() {
        let q = Arc::new(ArrayQueue::new(4));
        let cfg = EngineConfig { conn_capacity: 4, max_servers: 16, ports: 1, ticks_per_sec: TPS, seed: 1, host_pps: 1000 };
        let mut e = Engine::new(cfg, q).unwrap();
        e.set_snapshot(Arc::new(snapshot("rr")));
        for sport in 46000..46004 {
            let mut f = tcp(sport, SYN);
            assert_eq!(e.process(&mut f, 0, 0), Verdict::Forward(0));
            let mut f = tcp(sport, ACK);
            assert_eq!(e.process(&mut f, 0, 0), Verdict::Forward(0));
        }
        // Every entry is an established connection: nothing may be evicted.
        let mut f = tcp(46004, SYN);
        assert_eq!(e.process(&mut f, 0, 0), Verdict::Drop(DropReason::TableFull));
        assert_eq!(e.counters().evicted_unconfirmed, 0);
        let mut f = tcp(46000, ACK);
        assert_eq!(e.process(&mut f, 0, 0), Verdict::Forward(0));
    }

    #[test]
    fn full_table_makes_room_from_unanswered_handshakes_only() {
        let q = Arc::new(ArrayQueue::new(4));
        let cfg = EngineConfig { conn_capacity: 5, max_servers: 16, ports: 1, ticks_per_sec: TPS, seed: 1, host_pps: 1000 };
        let mut e = Engine::new(cfg, q).unwrap();
        e.set_snapshot(Arc::new(snapshot("wlc")));
        // Two established connections, two handshakes that were never answered.
        for sport in 46000..46004 {
            let mut f = tcp(sport, SYN);
            assert_eq!(e.process(&mut f, 0, 0), Verdict::Forward(0));
            if sport < 46002 {
                let mut f = tcp(sport, ACK);
                assert_eq!(e.process(&mut f, 0, 0), Verdict::Forward(0));
            }
        }
        let active = |e: &Engine| e.counters().servers.iter().map(|c| c.active).sum::<u32>();
        assert_eq!((e.conns().len(), active(&e)), (4, 4));
        // A new SYN finds fewer than two free entries (room for a connection and a template),
        // but the handshakes are younger than MIN_AGE_TICKS: they are spared.
        let mut f = tcp(46005, SYN);
        assert_eq!(e.process(&mut f, 0, 1), Verdict::Forward(0));
        let mut f = tcp(46006, SYN);
        assert_eq!(e.process(&mut f, 0, 1), Verdict::Drop(DropReason::TableFull));
        assert_eq!(e.counters().evicted_unconfirmed, 0);
        // Later the oldest handshake makes room; the established connections stay.
        let now = 2 * crate::defense::MIN_AGE_TICKS;
        let mut f = tcp(46004, SYN);
        assert_eq!(e.process(&mut f, 0, now), Verdict::Forward(0));
        assert_eq!(e.counters().evicted_unconfirmed, 2);
        assert_eq!((e.conns().len(), active(&e)), (4, 4), "evicted entries leave the scheduler's counts");
        for sport in [46000, 46001, 46004] {
            let mut f = tcp(sport, ACK);
            assert_eq!(e.process(&mut f, 0, now), Verdict::Forward(0), "{sport}");
        }
        // An evicted handshake's ACK has no connection any more (the client retries).
        let mut f = tcp(46002, ACK);
        assert!(matches!(e.process(&mut f, 0, now), Verdict::Emit { reason: DropReason::NoConnection, .. }));
        e.expire(now, 64);
        assert_eq!(e.counters().conn_entries, 4);
    }

    #[test]
    fn drop_packet_and_secure_tcp_follow_the_sysctls() {
        let (mut e, _) = engine("rr");
        let mut s = snapshot("rr");
        s.sysctl.defense = crate::defense::DefenseSysctl { drop_packet: 3, am_droprate: 2, secure_tcp: 3, ..Default::default() };
        e.set_snapshot(Arc::new(s));
        let mut verdicts = Vec::new();
        for sport in 47000..47004 {
            let mut f = tcp(sport, SYN);
            verdicts.push(e.process(&mut f, 0, 0));
        }
        let dropped = verdicts.iter().filter(|v| **v == Verdict::Drop(DropReason::DropPacket)).count();
        assert_eq!(dropped, 2, "{verdicts:?}");
        assert_eq!(e.counters().drops[DropReason::DropPacket as usize], 2);
        // secure_tcp: the accepted SYNs are in SYNACK.
        let states: Vec<u8> = e.conns().iter().map(|(_, x)| x.state).collect();
        assert_eq!(states, vec![TcpState::SynAck as u8; 2]);
        // Established connections never meet drop_packet.
        let sport = verdicts.iter().position(|v| matches!(v, Verdict::Forward(_))).unwrap() as u16 + 47000;
        for _ in 0..4 {
            let mut f = tcp(sport, ACK);
            assert_eq!(e.process(&mut f, 0, 0), Verdict::Forward(0));
        }
    }

    #[test]
    fn header_checksum_check_agrees_with_the_reference_sum() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..20_000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if i % 2 == 0 {
                // Make half of them valid.
                h[10] = 0;
                h[11] = 0;
                let c = checksum::fold(checksum::sum16(&h, 0));
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(ipv4_header_ok(&h), checksum::fold(checksum::sum16(&h, 0)) == 0, "{h:?}");
            if i % 2 == 0 {
                assert!(ipv4_header_ok(&h), "a header with its checksum filled in is accepted: {h:?}");
            }
        }
    }

    #[test]
    fn random_and_mutated_frames_never_panic() {
        let (mut e, _) = engine("rr");
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds = [tcp(1, SYN), Frame::arp_request(CLIENT_MAC, CIP, VIP).build(),
            Frame::icmp_echo(1, 1).src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src_ip(CIP).dst_ip(VIP).build()];
        for i in 0..100_000 {
            let mut f = seeds[i % seeds.len()].clone();
            let flips = (next() % 4) as usize;
            for _ in 0..flips {
                let p = (next() as usize) % f.len();
                f[p] = next() as u8;
            }
            let cut = (next() as usize) % (f.len() + 1);
            if next() % 3 == 0 {
                f.truncate(cut);
            }
            let _ = e.process(&mut f, (next() % 3) as u16, (i / 1000) as u32);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Persistence (ipvs-semantics §3) and sysctls (§5.4-5.7)

    use crate::conn::{TcpState as TS, TEMPLATE_STATE_ASSURED as ASSURED};
    use crate::snapshot::{MarkMatch, Sysctl};

    /// A snapshot with one service `key` over rs1/rs2 (kernel order rs2, rs1).
    fn psnap(key: SvcKey, persistent: Option<u32>, netmask: Ipv4Addr) -> Snapshot {
        let mut s = snapshot("rr");
        s.services[0].key = key;
        s.services[0].persistent = persistent;
        s.services[0].netmask = netmask;
        s.by_addr.clear();
        match key {
            SvcKey::Addr { proto, addr, port } => {
                s.by_addr.insert((proto, addr, port), 0);
                s.has_port_zero = port == 0;
            }
            SvcKey::Fwmark(m) => {
                s.by_mark.insert(m, 0);
            }
        }
        s
    }

    fn with(s: Snapshot) -> Engine {
        let q = Arc::new(ArrayQueue::new(16));
        let cfg = EngineConfig { conn_capacity: 4096, max_servers: 16, ports: 2, ticks_per_sec: TPS, seed: 3, host_pps: 1000 };
        let mut e = Engine::new(cfg, q).unwrap();
        e.set_snapshot(Arc::new(s));
        e
    }

    fn pkt(client: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(client, sport).dst(VIP, dport).flags(TcpFlags(flags)).build()
    }

    /// Sends one packet and returns the real server it was forwarded to.
    fn send(e: &mut Engine, client: Ipv4Addr, sport: u16, dport: u16, flags: u8, now: u32) -> usize {
        let mut f = pkt(client, sport, dport, flags);
        let v = e.process(&mut f, 0, now);
        assert_eq!(v, Verdict::Forward(0), "{client}:{sport} -> :{dport}");
        rs_of(&f)
    }

    fn templates(e: &Engine) -> Vec<(ConnKey, u32, u8)> {
        e.conns().iter().filter(|(_, x)| x.is_template()).map(|(_, x)| (*x.key(), x.server, x.state)).collect()
    }

    const C2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

    #[test]
    fn ppc_sticks_per_client_and_counts_one_template() {
        let vip80 = SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 };
        let mut e = with(psnap(vip80, Some(360), Ipv4Addr::BROADCAST));
        let first = send(&mut e, CIP, 50000, 80, SYN, 0);
        for sport in 50001..50010 {
            assert_eq!(send(&mut e, CIP, sport, 80, SYN, 1), first, "rr would alternate; persistence sticks");
        }
        let other = send(&mut e, C2, 40000, 80, SYN, 1);
        assert_ne!(other, first, "a second client is scheduled afresh");
        let t = templates(&e);
        assert_eq!(t.len(), 2);
        assert!(t.contains(&(ConnKey { proto: PROTO_TCP, caddr: u32::from(CIP), cport: 0, vaddr: u32::from(VIP), vport: 80 }, first as u32, 0)));
        assert_eq!(e.counters().servers[first].persist, 1);
        assert_eq!(e.counters().servers[first].active, 10);
    }

    #[test]
    fn two_persistent_services_on_different_ports_stick_independently() {
        let mut s = psnap(SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 }, Some(360), Ipv4Addr::BROADCAST);
        let mut telnet = s.services[0].clone();
        telnet.key = SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 23 };
        telnet.servers = vec![0, 1]; // another list order: rr picks rs2 first for :80, rs1 for :23
        s.services.push(telnet);
        s.by_addr.insert((PROTO_TCP, VIP, 23), 1);
        let mut e = with(s);
        let web = send(&mut e, CIP, 50000, 80, SYN, 0);
        let tel = send(&mut e, CIP, 50001, 23, SYN, 0);
        assert_ne!(web, tel, "PPC: one template per service port");
        for sport in 50002..50008 {
            assert_eq!(send(&mut e, CIP, sport, 80, SYN, 1), web);
            assert_eq!(send(&mut e, CIP, sport + 100, 23, SYN, 1), tel);
        }
        assert_eq!(templates(&e).len(), 2);
    }

    #[test]
    fn pcc_sends_every_port_of_a_client_to_one_server() {
        let mut e = with(psnap(SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 0 }, Some(600), Ipv4Addr::BROADCAST));
        let first = send(&mut e, CIP, 50000, 80, SYN, 0);
        for (i, port) in [443u16, 22, 23, 8080, 80, 3306].iter().enumerate() {
            assert_eq!(send(&mut e, CIP, 50001 + i as u16, *port, SYN, 1), first);
        }
        assert_ne!(send(&mut e, C2, 1, 443, SYN, 1), first);
        let t = templates(&e);
        assert!(t.iter().all(|(k, _, _)| k.vport == 0 && k.cport == 0), "port-0 templates: {t:?}");
    }

    #[test]
    fn fwmark_groups_ports_and_protocols_and_unmarked_ports_are_not_served() {
        let mut s = psnap(SvcKey::Fwmark(10), Some(360), Ipv4Addr::BROADCAST);
        let rule = |proto: u8, port: u16| MarkMatch { in_port: None, net: u32::from(VIP), mask: u32::MAX, proto, dport: (port, port), mark: 10 };
        s.marks = vec![rule(PROTO_TCP, 80), rule(PROTO_TCP, 443), rule(PROTO_UDP, 53)];
        let mut e = with(s);
        let first = send(&mut e, CIP, 50000, 443, SYN, 0);
        assert_eq!(send(&mut e, CIP, 50001, 80, SYN, 0), first);
        let mut u = Frame::udp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 5353).dst(VIP, 53).build();
        assert_eq!(e.process(&mut u, 0, 0), Verdict::Forward(0));
        assert_eq!(rs_of(&u), first, "TCP and UDP of one client share the fwmark template");
        let t = templates(&e);
        assert_eq!(t, vec![(ConnKey { proto: 0, caddr: u32::from(CIP), cport: 0, vaddr: 10, vport: 0 }, first as u32, 0)]);
        // Port 8080 is not marked: no service, the VIP's stack resets it.
        let mut f = pkt(CIP, 50002, 8080, SYN);
        assert!(matches!(e.process(&mut f, 0, 0), Verdict::Emit { reason: DropReason::NoService, .. }));
    }

    #[test]
    fn mark_rules_last_match_wins_and_respect_the_input_port() {
        let mut s = snapshot("rr");
        s.marks = vec![
            MarkMatch { in_port: None, net: u32::from(VIP) & 0xffffff00, mask: 0xffffff00, proto: 0, dport: (0, 65535), mark: 1 },
            MarkMatch { in_port: Some(1), net: u32::from(VIP), mask: u32::MAX, proto: PROTO_TCP, dport: (80, 90), mark: 2 },
        ];
        assert_eq!(s.mark_of(0, VIP, PROTO_TCP, 80), 1);
        assert_eq!(s.mark_of(1, VIP, PROTO_TCP, 85), 2);
        assert_eq!(s.mark_of(1, VIP, PROTO_UDP, 85), 1);
        assert_eq!(s.mark_of(1, VIP, PROTO_TCP, 91), 1);
        assert_eq!(s.mark_of(1, Ipv4Addr::new(203, 0, 113, 1), PROTO_TCP, 80), 0);
    }

    #[test]
    fn netmask_makes_a_subnet_one_client() {
        let mask = Ipv4Addr::new(255, 255, 255, 0);
        let mut e = with(psnap(SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 }, Some(360), mask));
        let first = send(&mut e, Ipv4Addr::new(198, 51, 100, 50), 1, 80, SYN, 0);
        for host in 51..60 {
            assert_eq!(send(&mut e, Ipv4Addr::new(198, 51, 100, host), 1, 80, SYN, 0), first);
        }
        assert_ne!(send(&mut e, C2, 1, 80, SYN, 0), first, "another /24 is another client");
        assert!(templates(&e).iter().any(|(k, _, _)| k.caddr == u32::from(Ipv4Addr::new(198, 51, 100, 0))));
    }

    #[test]
    fn short_persistence_expires_and_the_client_is_rescheduled_with_the_60s_quirk() {
        let mut e = with(psnap(SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 }, Some(2), Ipv4Addr::BROADCAST));
        let first = send(&mut e, CIP, 50000, 80, SYN, 0);
        // Connection still alive (SYN_RECV, 60 s) when the 2-s template expires: the template
        // is kept for 60 s more and its timeout becomes 60 s.
        for t in (0..=5 * TPS).step_by(4) {
            e.expire(t, 1000);
        }
        assert_eq!(templates(&e).len(), 1, "a template controlling a connection never expires");
        // A new connection at 5 s still sticks and refreshes the template (to 60 s).
        assert_eq!(send(&mut e, CIP, 50001, 80, SYN, 5 * TPS), first);
        // Both connections are established, then reset by the client: CLOSE, 10 s. (A RST
        // in SYN_RECV would keep SYN_RECV: the input-only table's quirk.)
        for sport in [50000, 50001] {
            send(&mut e, CIP, sport, 80, ACK, 5 * TPS);
            send(&mut e, CIP, sport, 80, RST, 5 * TPS);
        }
        // The connections go at 15 s; the template lives until 5 s + 60 s.
        for t in (5 * TPS..=64 * TPS).step_by(4) {
            e.expire(t, 1000);
        }
        assert_eq!(e.conns().len(), 1, "only the template is left, still counting down");
        for t in (64 * TPS..=67 * TPS).step_by(4) {
            e.expire(t, 1000);
        }
        assert_eq!(e.conns().len(), 0, "template gone after its 60-s re-arm");
        assert_eq!(e.counters().servers[first].persist, 0);
        assert_ne!(send(&mut e, CIP, 50002, 80, SYN, 68 * TPS), first, "rescheduled by rr after expiry");
    }

    #[test]
    fn weight_zero_keeps_persistent_clients_unless_expire_quiescent_template() {
        for eqt in [false, true] {
            let mut s = psnap(SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 }, Some(360), Ipv4Addr::BROADCAST);
            let mut e = with(s.clone());
            let first = send(&mut e, CIP, 50000, 80, SYN, 0);
            s.servers[first].as_mut().unwrap().weight = 0;
            s.sysctl = Sysctl { expire_quiescent_template: eqt, ..Sysctl::default() };
            e.set_snapshot(Arc::new(s));
            let again = send(&mut e, CIP, 50001, 80, SYN, 1);
            assert_eq!(send(&mut e, C2, 1, 80, SYN, 1), 1 - first, "new clients avoid the quiesced server");
            if eqt {
                assert_eq!(again, 1 - first, "expire_quiescent_template=1 reschedules");
                assert!(templates(&e).iter().any(|(k, srv, _)| k.vport == 65535 && *srv == first as u32), "old template invalidated, shown with port 65535");
            } else {
                assert_eq!(again, first, "default: the persistent client stays on the weight-0 server");
            }
            // Existing connections continue either way.
            assert_eq!(send(&mut e, CIP, 50000, 80, ACK, 2), first);
        }
    }

    #[test]
    fn deleted_server_reschedules_persistent_clients_and_drops_old_connections() {
        let mut s = psnap(SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 }, Some(360), Ipv4Addr::BROADCAST);
        let mut e = with(s.clone());
        let first = send(&mut e, CIP, 50000, 80, SYN, 0);
        s.servers[first] = None;
        s.services[0].servers.retain(|&x| x as usize != first);
        e.set_snapshot(Arc::new(s.clone()));
        assert_eq!(send(&mut e, CIP, 50001, 80, SYN, 1), 1 - first);
        let mut old = pkt(CIP, 50000, 80, ACK);
        assert_eq!(e.process(&mut old, 0, 1), Verdict::Drop(DropReason::DestinationGone));
        // With expire_nodest_conn the old entry goes at its next packet: an ACK then meets the
        // VIP's stack (RST), a SYN on the same ports is scheduled again.
        s.sysctl.expire_nodest_conn = true;
        let mut e2 = with(psnap(SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 }, None, Ipv4Addr::BROADCAST));
        let victim = send(&mut e2, CIP, 50000, 80, SYN, 0);
        let mut s2 = psnap(SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 }, None, Ipv4Addr::BROADCAST);
        s2.servers[victim] = None;
        s2.services[0].servers.retain(|&x| x as usize != victim);
        s2.sysctl.expire_nodest_conn = true;
        e2.set_snapshot(Arc::new(s2));
        let mut ack = pkt(CIP, 50000, 80, ACK);
        assert!(matches!(e2.process(&mut ack, 0, 1), Verdict::Emit { reason: DropReason::NoConnection, .. }));
        assert_eq!(send(&mut e2, CIP, 50000, 80, SYN, 1), 1 - victim);
    }

    #[test]
    fn template_becomes_assured_when_a_connection_is_established() {
        let mut e = with(psnap(SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 }, Some(360), Ipv4Addr::BROADCAST));
        send(&mut e, CIP, 50000, 80, SYN, 0);
        assert_eq!(templates(&e)[0].2, 0);
        send(&mut e, CIP, 50000, 80, ACK, 0);
        assert_eq!(templates(&e)[0].2, ASSURED);
    }

    #[test]
    fn port_reuse_follows_conn_reuse_mode() {
        for (mode, rescheduled) in [(1u8, false), (2, true), (3, true), (0, false)] {
            let mut s = snapshot("rr");
            s.sysctl.conn_reuse_mode = mode;
            let mut e = with(s);
            let first = send(&mut e, CIP, 50000, 80, SYN, 0);
            send(&mut e, CIP, 50000, 80, ACK, 0);
            send(&mut e, CIP, 50000, 80, FIN | ACK, 0); // FIN_WAIT
            let again = send(&mut e, CIP, 50000, 80, SYN, 1);
            assert_eq!(again != first, rescheduled, "conn_reuse_mode={mode}");
            let states: Vec<u8> = e.conns().iter().map(|(_, x)| x.state).collect();
            assert_eq!(states, vec![TS::SynRecv as u8]);
        }
        // TIME_WAIT/CLOSE are reused with bit 1 (CLOSE after a client RST).
        let mut e = with(snapshot("rr"));
        let first = send(&mut e, CIP, 50000, 80, SYN, 0);
        send(&mut e, CIP, 50000, 80, ACK, 0);
        send(&mut e, CIP, 50000, 80, RST, 0);
        assert_ne!(send(&mut e, CIP, 50000, 80, SYN, 1), first);
        assert_eq!(e.counters().servers[first].active + e.counters().servers[first].inactive, 0);
    }

    #[test]
    fn sloppy_tcp_lets_an_ack_create_an_established_connection() {
        let mut s = snapshot("rr");
        s.sysctl.sloppy_tcp = true;
        let mut e = with(s);
        send(&mut e, CIP, 50000, 80, ACK, 0);
        assert_eq!(e.conns().iter().next().unwrap().1.state, TS::Established as u8);
    }

    #[test]
    fn icmp_errors_about_a_known_connection_are_forwarded_to_its_server() {
        let mut e = with(snapshot("rr"));
        let rs = send(&mut e, CIP, 50000, 80, SYN, 0);
        // The server's reply VIP:80 -> CIP:50000 was too big for a router on the way.
        let reply = Frame::tcp().src(VIP, 80).dst(CIP, 50000).flags(TcpFlags(ACK)).build_ipv4();
        let router = Ipv4Addr::new(198, 51, 100, 1);
        let mut f = Frame::icmp_error(msg_type::DEST_UNREACH, 4, &reply).icmp_rest([0, 0, 5, 0xdc])
            .src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src_ip(router).dst_ip(VIP).build();
        assert_eq!(e.process(&mut f, 0, 1), Verdict::Forward(0));
        assert_eq!(rs_of(&f), rs);
        // About an unknown connection: not forwarded.
        let reply = Frame::tcp().src(VIP, 80).dst(CIP, 50001).flags(TcpFlags(ACK)).build_ipv4();
        let mut f = Frame::icmp_error(msg_type::DEST_UNREACH, 4, &reply).src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src_ip(router).dst_ip(VIP).build();
        assert_eq!(e.process(&mut f, 0, 1), Verdict::Drop(DropReason::IcmpUnhandled));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, failure_persistence: None, ..Default::default() })]

        /// Against a model: a client that opens a connection less than the persistence timeout
        /// after its previous one always reaches the same server; every server's counters
        /// equal what is in the table.
        #[test]
        fn persistence_matches_a_model(ops in proptest::collection::vec((0u8..6, 0u32..700, proptest::bool::ANY), 1..120),
                                       port0 in proptest::bool::ANY, timeout in 20u32..400) {
            let vport = if port0 { 0 } else { 80 };
            let mut e = with(psnap(SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: vport }, Some(timeout), Ipv4Addr::BROADCAST));
            let mut model: std::collections::HashMap<u8, (u32, usize)> = Default::default();
            let mut now = 0u32;
            let mut sport = 1000u16;
            for (client, gap, close) in ops {
                let target = now + gap * TPS / 10;
                while now < target { now += 1; e.expire(now, 10_000); }
                let cip = Ipv4Addr::new(203, 0, 113, client);
                sport += 1;
                let dport = if port0 { 80 + client as u16 } else { 80 };
                let rs = send(&mut e, cip, sport, dport, SYN, now);
                if close {
                    send(&mut e, cip, sport, dport, ACK, now);
                    send(&mut e, cip, sport, dport, RST, now);
                }
                if let Some(&(last, srv)) = model.get(&client) {
                    // One tick of slack for the coarse timer.
                    if now - last + 1 < timeout * TPS {
                        proptest::prop_assert_eq!(rs, srv, "client {} within {} s", client, timeout);
                    }
                }
                model.insert(client, (now, rs));
                let mut want = [ServerCounters::default(); 2];
                for (_, x) in e.conns().iter() {
                    let c = &mut want[x.server as usize];
                    if x.is_template() { c.persist += 1 } else if x.flags & F_INACTIVE != 0 { c.inactive += 1 } else { c.active += 1 }
                }
                for i in 0..2 {
                    let got = e.counters().servers[i];
                    proptest::prop_assert_eq!((got.active, got.inactive, got.persist), (want[i].active, want[i].inactive, want[i].persist));
                }
            }
        }
    }
}
