//! The engine's side of connection synchronisation: the kernel's send rules per packet
//! (`ip_vs_sync_conn`, `ip_vs_sync_conn_needed`) on a master, and installing received entries
//! into this worker's table (`ip_vs_proc_conn`) on a backup.
//!
//! Send rules (operations.md §3), for each packet of a connection while the master runs:
//! - the connection's packet count goes up (kept modulo `sync_period` in the entry's
//!   one-byte [`crate::conn::Entry::sync_count`], saturating when the period is 0);
//! - TCP is sent only in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT, TIME_WAIT; a change into
//!   one of these other than ESTABLISHED is sent at once; otherwise when the count modulo
//!   `sync_period` equals `sync_threshold` (period 0: once, when it equals the threshold);
//!   `sync_refresh_period` (with `sync_retries`) suppresses resends of an entry whose expiry
//!   moved less than the period (or half its timeout, at least 10 s) since it was last sent;
//!   `sync_persist_mode` sends no connection of a persistent service;
//! - then the connection's template is examined the same way with its own count, except
//!   that with a non-zero period templates skip the packet test (so without
//!   `sync_refresh_period` a template goes out with every packet of its connections, as in
//!   the kernel). A template therefore always follows its connection in the queue.
//!
//! Where this differs from the kernel, by construction: the kernel forces a send when the
//! state differs from the state at the last send; here, when the state changed on this packet
//! (the same except for a state left and re-entered between two sends); the period is at
//! most 255 and, with period 0, the threshold at most 254 (the control plane enforces it).
//!
//! Entries sent: address, ports, state, timeout in seconds, the fwmark of a fwmark service,
//! flags `DROUTE | NOOUTPUT` plus `INACTIVE` (templates always, as the kernel's) and
//! `TEMPLATE`. A connection whose real server was deleted is not sent.
//!
//! Received entries ([`Engine::install_synced`]): the destination is the server of the
//! service the entry names (fwmark, else protocol/VIP/port, else port 0) with its address
//! and port (or port 0); an existing connection bound elsewhere is replaced unless the update
//! is INACTIVE (then ignored, as the kernel's "already replaced" case); an existing entry
//! takes the message's state, INACTIVE flag (moving the server's counters) and timeout
//! (0: the state's default, 180 s for templates); an existing template keeps its server, as
//! in the kernel. New entries count in ActiveConn/InActConn/PersistConn, not in the
//! connections-created counter.
//!
//! `backup_only` (the backup daemon runs with it set): the director does not forward; the
//! forwarding records of the servers are held, so their packets take the full path, which
//! gives them to the host over the kernel leg (IPVS passes them to the local stack) or drops
//! them (`backup_only`) without one.
//!
//! Concurrency: runs on the worker that owns the table. Without a master the fast path has
//! no sync code at all (the burst loop tests the flag once per burst and runs the stage 3
//! compiled for it, `Engine::process_prepared_as`); everything else is out of line.
//! Nothing here allocates on the packet path (the refresh timestamps are allocated between
//! bursts, when the master starts with `sync_refresh_period` set), locks or makes a syscall.

use std::net::Ipv4Addr;
use std::sync::Arc;

use control::sync_proto::flags as wire;

use super::Engine;
use crate::conn::{ConnInit, ConnKey, Entry, TcpState, F_INACTIVE, F_TEMPLATE, NO_INDEX};
use crate::snapshot::{SvcKey, PROTO_TCP, PROTO_UDP};
use crate::sync::{InstallDrop, SyncPort, SyncRecord, SyncSender};

/// Received entries installed per [`Engine::sync_poll`].
const INSTALL_BUDGET: usize = 256;
/// The kernel's default timeout of a synchronised template without one (3 min).
const TEMPLATE_DEFAULT_SECS: u32 = 180;

/// Per-worker synchronisation state inside the engine.
#[derive(Debug, Default)]
pub(super) struct SyncSide {
    /// The master daemon runs: packets are counted and entries sent (recomputed by
    /// [`Engine::sync_poll`] between bursts).
    pub(super) master: bool,
    /// The backup daemon runs with `backup_only`: nothing is forwarded (the servers' `fwd`
    /// entries are held, so the fast path does not even test this).
    pub(super) backup_only: bool,
    /// The worker's queues, when the director has sync daemons.
    port: Option<Arc<SyncPort>>,
    /// The worker's end of its outgoing ring (taken from `port` when attached).
    tx: Option<SyncSender>,
    /// `ceil(2^32 / ticks_per_sec)`: ticks to seconds by a multiply (see [`ticks_to_secs`]).
    recip: u64,
    /// Per server slot of the snapshot: what an entry of that server is sent with (rebuilt
    /// with each snapshot while a port is attached, so sending looks up one slot).
    dests: Vec<SyncDest>,
    /// Per entry: the kernel's `sync_endtime` (expiry at the last send, in ticks, low two
    /// bits = retries done); only while the master runs with `sync_refresh_period` > 0.
    stamps: Vec<u32>,
}

/// What an entry of one server slot is sent with.
#[derive(Debug, Clone, Copy, Default)]
struct SyncDest {
    /// The slot holds a server.
    live: bool,
    /// Real-server address (host order) and port (0: the client's port).
    daddr: u32,
    rs_port: u16,
    /// Its service's port (0 for fwmark and port-0 services) and fwmark (0 for address
    /// services).
    svc_port: u16,
    fwmark: u32,
}

/// Next packet count: modulo `period`, or saturating when the period is 0.
#[inline]
fn bump(count: u8, period: u8) -> u8 {
    if period == 0 {
        count.saturating_add(1)
    } else {
        let n = count.wrapping_add(1);
        if n >= period {
            0
        } else {
            n
        }
    }
}

/// TCP states in which a connection is synchronised.
#[inline]
fn synced_tcp_state(state: u8) -> bool {
    // The kernel's bit mask test (ip_vs_sync_conn_needed).
    const MASK: u32 = 1 << TcpState::Established as u32
        | 1 << TcpState::FinWait as u32
        | 1 << TcpState::Close as u32
        | 1 << TcpState::CloseWait as u32
        | 1 << TcpState::TimeWait as u32;
    1u32.checked_shl(u32::from(state)).is_some_and(|b| b & MASK != 0)
}

/// `ip_vs_sync_conn_needed` for entry `idx` (`e`), whose packet count was just bumped;
/// records the send in `stamps` when it says yes.
#[inline]
fn needed(sc: &crate::snapshot::SyncSysctl, stamps: &mut [u32], tps: u32, idx: u32, e: &Entry, changed: bool, now: u32) -> bool {
    let template = e.is_template();
    let (timeout, count) = (e.timeout, e.sync_count);
    let mut n = now.wrapping_add(timeout) & !3;
    if !template && e.key().proto == PROTO_TCP {
        if !synced_tcp_state(e.state) {
            return false;
        }
        if changed && e.state != TcpState::Established as u8 {
            return set_stamp(stamps, idx, n);
        }
    }
    let refresh = sc.refresh_secs.saturating_mul(tps);
    if refresh > 0 {
        if let Some(&orig) = stamps.get(idx as usize) {
            let diff = n.wrapping_sub(orig) as i32;
            let min_diff = (timeout >> 1).max(10 * tps);
            if diff.unsigned_abs() < refresh.min(min_diff) {
                let retries = orig & 3;
                if retries >= u32::from(sc.retries) {
                    return false;
                }
                let next_try = orig.wrapping_sub(timeout).wrapping_add(refresh >> 3);
                if (now.wrapping_sub(next_try) as i32) < 0 {
                    return false;
                }
                n |= retries + 1;
            }
        }
    }
    if sc.period > 0 {
        if !template && count != sc.threshold {
            return false;
        }
    } else if refresh == 0 && count != sc.threshold {
        return false;
    }
    set_stamp(stamps, idx, n)
}

/// Records the send (`sync_endtime := n`) and says yes.
#[inline]
fn set_stamp(stamps: &mut [u32], idx: u32, n: u32) -> bool {
    if let Some(s) = stamps.get_mut(idx as usize) {
        *s = n;
    }
    true
}

/// `ticks / tps` (floor) by a multiply with `recip = ceil(2^32 / tps)` and one correction:
/// the estimate is never below the quotient and at most one above it for any `u32` ticks
/// (a division costs tens of cycles on each record sent).
#[inline]
fn ticks_to_secs(ticks: u32, tps: u32, recip: u64) -> u32 {
    let tps = tps.max(1);
    let q = ((u64::from(ticks) * recip) >> 32) as u32;
    if u64::from(q) * u64::from(tps) > u64::from(ticks) {
        q - 1
    } else {
        q
    }
}

/// `ceil(2^32 / tps)`.
fn recip_of(tps: u32) -> u64 {
    (1u64 << 32).div_ceil(u64::from(tps.max(1)))
}

/// Queues entry `e` for the master thread (dropped and counted if the ring is full).
#[inline]
fn emit(side: &mut SyncSide, e: &Entry, tps: u32) {
    let Some(tx) = side.tx.as_mut() else { return };
    let Some(&SyncDest { live: true, daddr, rs_port, svc_port, fwmark }) = side.dests.get(e.server as usize) else {
        return;
    };
    let k = *e.key();
    let template = e.is_template();
    // The real-server port as the kernel keeps it: a template of a port-0 or fwmark
    // service has 0; a connection has the server's port when it came to the service
    // port, else its own port.
    let dport = if template {
        if k.vport == 0 {
            0
        } else {
            rs_port
        }
    } else if svc_port != 0 && k.vport == svc_port && rs_port != 0 {
        rs_port
    } else {
        k.vport
    };
    let mut flags = wire::DROUTE | wire::NOOUTPUT;
    if template {
        flags |= wire::TEMPLATE | wire::INACTIVE;
    } else if e.flags & F_INACTIVE != 0 {
        flags |= wire::INACTIVE;
    }
    tx.send(SyncRecord {
        proto: k.proto,
        state: u16::from(e.state),
        flags,
        cport: k.cport,
        vport: k.vport,
        dport,
        fwmark,
        timeout: ticks_to_secs(e.timeout, tps, side.recip),
        caddr: k.caddr,
        vaddr: k.vaddr,
        daddr,
    });
}

impl Engine {
    /// Connects this engine to the sync daemons through its worker's queues.
    pub fn attach_sync(&mut self, port: Arc<SyncPort>) {
        self.sync.tx = port.sender();
        self.sync.recip = recip_of(self.ticks_per_sec);
        self.sync.port = Some(port);
        self.sync_dests();
    }

    /// Rebuilds the per-slot send data from the snapshot (between bursts: a new snapshot or
    /// a new port; reuses the vector's allocation).
    pub(super) fn sync_dests(&mut self) {
        if self.sync.port.is_none() {
            return;
        }
        let snap = &self.snap;
        self.sync.dests.clear();
        self.sync.dests.extend(snap.servers.iter().map(|s| match s {
            Some(rs) => {
                let (svc_port, fwmark) = match snap.services.get(rs.svc as usize).map(|s| s.key) {
                    Some(SvcKey::Addr { port, .. }) => (port, 0),
                    Some(SvcKey::Fwmark(m)) => (0, m),
                    None => (0, 0),
                };
                SyncDest { live: true, daddr: u32::from(rs.addr), rs_port: rs.port, svc_port, fwmark }
            }
            None => SyncDest::default(),
        }));
    }

    /// Between bursts: picks up which daemons run (two atomic loads), keeps the refresh
    /// timestamps in step, and installs up to 256 received entries.
    pub fn sync_poll(&mut self, now: u32) {
        let Some(port) = self.sync.port.take() else { return };
        let master = port.shared.master.load(std::sync::atomic::Ordering::Relaxed);
        let backup = port.shared.backup.load(std::sync::atomic::Ordering::Relaxed);
        let sc = self.snap.sysctl.sync;
        self.sync.master = master;
        let hold = backup && sc.backup_only;
        if hold != self.sync.backup_only {
            self.sync.backup_only = hold;
            self.sync_hold(hold);
        }
        let want_stamps = master && sc.refresh_secs > 0;
        if want_stamps && self.sync.stamps.is_empty() {
            // Once per master start with a refresh period (between bursts, never per packet).
            self.sync.stamps = vec![now & !3; self.conns.capacity()];
        } else if !want_stamps && !self.sync.stamps.is_empty() {
            self.sync.stamps = Vec::new();
        }
        for _ in 0..INSTALL_BUDGET {
            let Some(r) = port.inbound.pop() else { break };
            match self.install_synced(&r, now) {
                Ok(()) => port.stats.applied.add(1),
                Err(why) => port.stats.install_drops[why as usize].add(1),
            }
        }
        self.sync.port = Some(port);
    }

    /// Holds (`backup_only`) or releases every forwardable server: a held one sends its
    /// packets to the full path, which gives them to the host (or drops them).
    pub(super) fn sync_hold(&mut self, hold: bool) {
        let (from, to) = if hold { (super::FWD_OK, super::FWD_HELD) } else { (super::FWD_HELD, super::FWD_OK) };
        for f in self.fwd.iter_mut().filter(|f| f.state == from) {
            f.state = to;
        }
    }

    /// A new entry `idx` was created at `now`: its refresh timestamp starts at `now` (the
    /// kernel's `sync_endtime = jiffies`).
    #[inline]
    pub(super) fn sync_created(&mut self, idx: u32, now: u32) {
        if let Some(s) = self.sync.stamps.get_mut(idx as usize) {
            *s = now & !3;
        }
    }

    /// One packet of connection `idx` (its state just changed if `changed`) while the
    /// master runs. Each entry (the connection, then its template) is looked up once; the
    /// rules and the record are computed from that borrow and the worker's own send state.
    #[inline(never)]
    pub(super) fn sync_packet(&mut self, idx: u32, changed: bool, now: u32) {
        let sc = self.snap.sysctl.sync;
        let tps = self.ticks_per_sec;
        // Both packet counts first (the kernel's in_pkts of the connection and of its
        // template), then the decisions from shared borrows.
        let Some(e) = self.conns.get_mut(idx) else { return };
        e.sync_count = bump(e.sync_count, sc.period);
        let control = e.control();
        if control != NO_INDEX {
            if let Some(t) = self.conns.get_mut(control).filter(|t| t.is_template()) {
                t.sync_count = bump(t.sync_count, sc.period);
            }
        }
        let Some(e) = self.conns.get(idx) else { return };
        let tmpl = if control == NO_INDEX { None } else { self.conns.get(control).filter(|t| t.is_template()) };
        let side = &mut *self.sync;
        if !(sc.persist_mode && tmpl.is_some()) && needed(&sc, &mut side.stamps, tps, idx, e, changed, now) {
            emit(side, e, tps);
        }
        if let Some(t) = tmpl {
            if needed(&sc, &mut side.stamps, tps, control, t, false, now) {
                emit(side, t, tps);
            }
        }
    }

    /// Installs or updates a received entry in this worker's table (`ip_vs_proc_conn`).
    pub fn install_synced(&mut self, r: &SyncRecord, now: u32) -> Result<(), InstallDrop> {
        let template = r.flags & wire::TEMPLATE != 0;
        let key = ConnKey { proto: r.proto, caddr: r.caddr, cport: r.cport, vaddr: r.vaddr, vport: r.vport };
        let daddr = Ipv4Addr::from(r.daddr);
        let si = self
            .snap
            .find_service(r.fwmark, r.proto, Ipv4Addr::from(r.vaddr), r.vport)
            .ok_or(InstallDrop::NoDest)?;
        let svc = self.snap.services.get(si as usize).ok_or(InstallDrop::NoDest)?;
        let slot = svc
            .servers
            .iter()
            .copied()
            .find(|&s| {
                self.snap
                    .servers
                    .get(s as usize)
                    .and_then(|x| x.as_ref())
                    .is_some_and(|x| x.addr == daddr && (x.port == r.dport || x.port == 0))
            })
            .ok_or(InstallDrop::NoDest)?;
        let inactive = !template && r.flags & wire::INACTIVE != 0;
        let state = u8::try_from(r.state).unwrap_or(u8::MAX);
        let tps = self.ticks_per_sec.max(1);
        let timeout = if r.timeout > 0 {
            crate::timer::secs_to_ticks(r.timeout, tps)
        } else if template {
            crate::timer::secs_to_ticks(TEMPLATE_DEFAULT_SECS, tps)
        } else if r.proto == PROTO_UDP {
            self.timeouts.udp
        } else {
            TcpState::from_u8(state).map_or(self.timeouts.new_conn, |s| self.timeouts.tcp_timeout(s))
        };
        let sc = self.snap.sysctl.sync;
        // The kernel sets the packet count of a synchronised entry to the threshold.
        let count = if sc.period == 0 { sc.threshold } else { sc.threshold % sc.period };
        if let Some(idx) = self.conns.lookup(&key) {
            let (old_server, old_flags) = match self.conns.get(idx) {
                Some(e) => (e.server, e.flags),
                None => return Err(InstallDrop::NoDest),
            };
            if !template && old_server != slot {
                if inactive {
                    return Err(InstallDrop::Stale);
                }
                self.remove_entry(idx);
            } else {
                if !template && (old_flags & F_INACTIVE != 0) != inactive {
                    if let Some(c) = self.counters.servers.get_mut(old_server as usize) {
                        if inactive {
                            c.active = c.active.saturating_sub(1);
                            c.inactive += 1;
                        } else {
                            c.inactive = c.inactive.saturating_sub(1);
                            c.active += 1;
                        }
                    }
                    self.publish(old_server);
                }
                if let Some(e) = self.conns.get_mut(idx) {
                    e.state = state;
                    e.sync_count = count;
                    if !template {
                        e.flags = if inactive { e.flags | F_INACTIVE } else { e.flags & !F_INACTIVE };
                    }
                }
                self.conns.set_timeout(idx, timeout, now);
                return Ok(());
            }
        }
        let flags = if template { F_TEMPLATE } else if inactive { F_INACTIVE } else { 0 };
        let idx = self
            .conns
            .insert(key, ConnInit { server: slot, state, flags, timeout }, now)
            .map_err(|_| InstallDrop::TableFull)?;
        if let Some(e) = self.conns.get_mut(idx) {
            e.sync_count = count;
        }
        self.sync_created(idx, now);
        if let Some(c) = self.counters.servers.get_mut(slot as usize) {
            if template {
                c.persist += 1;
            } else if inactive {
                c.inactive += 1;
            } else {
                c.active += 1;
            }
        }
        self.publish(slot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::tcp_flags::{ACK, FIN, SYN};
    use crate::engine::{EngineConfig, NeighEvent, Verdict};
    use crate::snapshot::{PortInfo, ServerInfo, ServiceInfo, Snapshot};
    use crate::sync::SyncShared;
    use crate::wire::{Frame, MacAddr, TcpFlags};
    use control::sync_proto::{self, Entry};
    use crossbeam::queue::ArrayQueue;
    use std::sync::atomic::Ordering;

    const PORT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xd0]);
    const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc1]);
    const RS_MACS: [MacAddr; 2] = [MacAddr([2, 0, 0, 0, 0, 0x11]), MacAddr([2, 0, 0, 0, 0, 0x12])];
    const DIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);
    const RIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 51, 100, 11), Ipv4Addr::new(198, 51, 100, 12)];
    const TPS: u32 = 16;

    /// One service over rs1/rs2 (kernel order rs2, rs1): `key`, persistent or not.
    fn snap(key: SvcKey, persistent: Option<u32>, sync: crate::snapshot::SyncSysctl) -> Snapshot {
        let mut s = Snapshot::default();
        s.ports.push(PortInfo { id: 0, mac: PORT_MAC, mtu: 1500, addrs: vec![(DIP, 24), (VIP, 32)] });
        s.local.insert(DIP, 1);
        s.local.insert(VIP, 1);
        let port = match key {
            SvcKey::Addr { proto, addr, port } => {
                s.by_addr.insert((proto, addr, port), 0);
                s.has_port_zero = port == 0;
                port
            }
            SvcKey::Fwmark(m) => {
                s.by_mark.insert(m, 0);
                0
            }
        };
        s.services.push(ServiceInfo {
            key,
            scheduler: "rr".into(),
            sched_flags: 0,
            persistent,
            netmask: Ipv4Addr::BROADCAST,
            servers: vec![1, 0],
            rotation: crate::sched::Rotation::new("rr", [1u32, 0].map(|id| crate::sched::DestInfo { id, weight: 1, ..Default::default() }).as_slice()),
        });
        for i in 0..2 {
            s.servers.push(Some(ServerInfo {
                slot: i as u32,
                svc: 0,
                addr: RIPS[i],
                port,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
                egress_port: Some(0),
                mac: Some(RS_MACS[i]),
                incarnation: i as u64 + 1,
                local: false,
            }));
        }
        s.sysctl.sync = sync;
        s
    }

    fn vip80() -> SvcKey {
        SvcKey::Addr { proto: PROTO_TCP, addr: VIP, port: 80 }
    }

    /// An engine with a sync port; `master`/`backup` say which daemons run.
    fn engine(s: Snapshot, master: bool, backup: bool) -> (Engine, Arc<SyncPort>) {
        let q: Arc<ArrayQueue<NeighEvent>> = Arc::new(ArrayQueue::new(16));
        let cfg = EngineConfig { conn_capacity: 1024, max_servers: 16, ports: 2, ticks_per_sec: TPS, seed: 5, host_pps: 1000 };
        let mut e = Engine::new(cfg, q).unwrap();
        e.set_snapshot(Arc::new(s));
        let shared = Arc::new(SyncShared::default());
        shared.master.store(master, Ordering::Relaxed);
        shared.backup.store(backup, Ordering::Relaxed);
        let port = Arc::new(SyncPort::with_capacity(shared, 4096, 4096));
        e.attach_sync(port.clone());
        e.sync_poll(0);
        (e, port)
    }

    fn tcp(client: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(client, sport).dst(VIP, dport).flags(TcpFlags(flags)).payload(b"x").build()
    }

    fn udp(client: Ipv4Addr, sport: u16) -> Vec<u8> {
        Frame::udp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(client, sport).dst(VIP, 53).payload(b"q").build()
    }

    /// Sends a packet; the real server index it went to.
    fn send(e: &mut Engine, mut f: Vec<u8>, now: u32) -> usize {
        let v = e.process(&mut f, 0, now);
        assert_eq!(v, Verdict::Forward(0));
        RS_MACS.iter().position(|m| m.0 == f[0..6]).unwrap()
    }

    fn drain(p: &SyncPort) -> Vec<SyncRecord> {
        let mut v = Vec::new();
        p.drain(usize::MAX, |r| v.push(r));
        v
    }

    #[test]
    fn ticks_to_seconds_by_multiply_is_the_floor_division() {
        for tps in [1u32, 3, 7, 16, 100, 1000, 1024, 4096, 65536, 1 << 20] {
            let r = super::recip_of(tps);
            let mut t = 0u32;
            for ticks in (0..5000u32).chain([u32::MAX, u32::MAX - 1, u32::MAX / 3, 900 * tps.min(4_000_000)]) {
                assert_eq!(super::ticks_to_secs(ticks, tps, r), ticks / tps, "{ticks} ticks at {tps}/s");
            }
            // A pseudo-random sweep of the whole range.
            for _ in 0..100_000 {
                t = t.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                assert_eq!(super::ticks_to_secs(t, tps, r), t / tps, "{t} ticks at {tps}/s");
            }
        }
    }

    #[test]
    fn tcp_connections_follow_the_kernels_send_rules() {
        let (mut e, port) = engine(snap(vip80(), None, Default::default()), true, false);
        let rs = RIPS[send(&mut e, tcp(CIP, 40000, 80, SYN), 0)];
        assert!(drain(&port).is_empty(), "SYN_RECV is not synchronised");
        send(&mut e, tcp(CIP, 40000, 80, ACK), 1);
        assert!(drain(&port).is_empty(), "ESTABLISHED at packet 2: 2 % 50 != 3");
        send(&mut e, tcp(CIP, 40000, 80, ACK), 2);
        let r = drain(&port);
        assert_eq!(r.len(), 1, "packet 3 (threshold 3)");
        assert_eq!(
            r[0],
            SyncRecord {
                proto: 6,
                state: TcpState::Established as u16,
                flags: wire::DROUTE | wire::NOOUTPUT,
                cport: 40000,
                vport: 80,
                dport: 80,
                fwmark: 0,
                timeout: 900,
                caddr: u32::from(CIP),
                vaddr: u32::from(VIP),
                daddr: u32::from(rs),
            }
        );
        // Packets 4..52: nothing; 53: again (53 % 50 == 3).
        for n in 4..=52 {
            send(&mut e, tcp(CIP, 40000, 80, ACK), n);
        }
        assert!(drain(&port).is_empty());
        send(&mut e, tcp(CIP, 40000, 80, ACK), 53);
        assert_eq!(drain(&port).len(), 1);
        // A change to FIN_WAIT goes out at once, INACTIVE, with the FIN_WAIT timeout.
        send(&mut e, tcp(CIP, 40000, 80, FIN | ACK), 54);
        let r = drain(&port);
        assert_eq!((r.len(), r[0].state, r[0].flags & wire::INACTIVE, r[0].timeout), (1, TcpState::FinWait as u16, wire::INACTIVE, 120));
        send(&mut e, tcp(CIP, 40000, 80, ACK), 55);
        assert!(drain(&port).is_empty(), "no change, no threshold");
        assert_eq!(port.stats.queued.get(), 3);
    }

    #[test]
    fn udp_and_period_zero_and_master_off() {
        let udp53 = SvcKey::Addr { proto: PROTO_UDP, addr: VIP, port: 53 };
        let (mut e, port) = engine(snap(udp53, None, Default::default()), true, false);
        for n in 1..=103 {
            send(&mut e, udp(CIP, 5000), n);
        }
        let r = drain(&port);
        assert_eq!(r.len(), 3, "packets 3, 53, 103");
        assert_eq!((r[0].proto, r[0].state, r[0].flags, r[0].timeout), (17, 0, wire::DROUTE | wire::NOOUTPUT | wire::INACTIVE, 300));
        // sync_period 0: once, at the threshold.
        let once = crate::snapshot::SyncSysctl { threshold: 2, period: 0, ..Default::default() };
        let (mut e, port) = engine(snap(udp53, None, once), true, false);
        for n in 1..=300 {
            send(&mut e, udp(CIP, 5001), n);
        }
        assert_eq!(drain(&port).len(), 1);
        // No master: nothing is counted or sent.
        let (mut e, port) = engine(snap(udp53, None, Default::default()), false, false);
        for n in 1..=10 {
            send(&mut e, udp(CIP, 5002), n);
        }
        assert!(drain(&port).is_empty());
        assert_eq!(e.conns().iter().next().unwrap().1.sync_count, 0);
    }

    #[test]
    fn templates_follow_their_connection_and_persist_mode_sends_only_them() {
        let (mut e, port) = engine(snap(vip80(), Some(600), Default::default()), true, false);
        send(&mut e, tcp(CIP, 40000, 80, SYN), 0);
        let r = drain(&port);
        assert_eq!(r.len(), 1, "the SYN is not sent, its template is");
        let t = r[0];
        assert_eq!((t.proto, t.cport, t.vport, t.dport, t.timeout), (6, 0, 80, 80, 600));
        assert_eq!(t.flags, wire::DROUTE | wire::NOOUTPUT | wire::INACTIVE | wire::TEMPLATE);
        send(&mut e, tcp(CIP, 40000, 80, ACK), 1);
        send(&mut e, tcp(CIP, 40000, 80, ACK), 2);
        let r = drain(&port);
        // Packet 2: template; packet 3: connection then template.
        assert_eq!(r.iter().map(|x| x.cport).collect::<Vec<_>>(), vec![0, 40000, 0]);
        assert_eq!(r[2].state, 1, "ASSURED once the connection is established");
        // sync_persist_mode: the connection is never sent, its template still is.
        let pm = crate::snapshot::SyncSysctl { persist_mode: true, ..Default::default() };
        let (mut e, port) = engine(snap(vip80(), Some(600), pm), true, false);
        for n in 0..5 {
            send(&mut e, tcp(CIP, 40000, 80, if n == 0 { SYN } else { ACK }), n);
        }
        let r = drain(&port);
        assert_eq!(r.len(), 5);
        assert!(r.iter().all(|x| x.flags & wire::TEMPLATE != 0));
        // fwmark template: protocol IP, vaddr = the mark, fwmark set, dport 0.
        let (mut e, port) = engine(snap(SvcKey::Fwmark(10), Some(600), Default::default()), true, false);
        let mut f = tcp(CIP, 40000, 80, SYN);
        e.set_snapshot(Arc::new({
            let mut s = snap(SvcKey::Fwmark(10), Some(600), Default::default());
            s.marks.push(crate::snapshot::MarkMatch { in_port: None, net: u32::from(VIP), mask: u32::MAX, proto: 6, dport: (80, 80), mark: 10 });
            s
        }));
        assert_eq!(e.process(&mut f, 0, 0), Verdict::Forward(0));
        let t = drain(&port)[0];
        assert_eq!((t.proto, t.vaddr, t.vport, t.dport, t.fwmark), (0, 10, 0, 0, 10));
    }

    #[test]
    fn refresh_period_suppresses_resends_and_retries() {
        // Every packet passes the count test (period 0, refresh set): the refresh decides.
        let sc = crate::snapshot::SyncSysctl { threshold: 0, period: 0, refresh_secs: 20, retries: 1, ..Default::default() };
        let (mut e, port) = engine(snap(vip80(), None, sc), true, false);
        send(&mut e, tcp(CIP, 40000, 80, SYN), 0);
        send(&mut e, tcp(CIP, 40000, 80, ACK), 1);
        assert_eq!(drain(&port).len(), 1, "first ESTABLISHED packet: expiry moved by ~900 s since creation");
        send(&mut e, tcp(CIP, 40000, 80, ACK), 2);
        assert!(drain(&port).is_empty(), "within the refresh period, before the retry time");
        // A retry is allowed refresh/8 (2.5 s = 40 ticks) after the send.
        send(&mut e, tcp(CIP, 40000, 80, ACK), 42);
        assert_eq!(drain(&port).len(), 1, "one retry");
        send(&mut e, tcp(CIP, 40000, 80, ACK), 1 + 100);
        assert!(drain(&port).is_empty(), "retries used up");
        send(&mut e, tcp(CIP, 40000, 80, ACK), 42 + 20 * TPS - 8);
        assert!(drain(&port).is_empty(), "the period counts from the last send (the retry)");
        send(&mut e, tcp(CIP, 40000, 80, ACK), 42 + 20 * TPS + 8);
        assert_eq!(drain(&port).len(), 1, "the refresh period passed");
    }

    #[test]
    fn backup_only_stops_forwarding_while_the_backup_runs() {
        let bo = crate::snapshot::SyncSysctl { backup_only: true, ..Default::default() };
        let (mut e, _port) = engine(snap(vip80(), None, bo), false, true);
        let mut f = tcp(CIP, 40000, 80, SYN);
        assert_eq!(e.process(&mut f, 0, 0), Verdict::Drop(crate::counters::DropReason::BackupOnly));
        // An installed (synchronised) established connection is held too: its ACKs, which
        // the fast path would forward, are not forwarded while the backup runs.
        let rec = SyncRecord {
            proto: 6,
            state: TcpState::Established as u16,
            flags: wire::DROUTE | wire::NOOUTPUT | wire::SYNC,
            cport: 40001,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 900,
            caddr: u32::from(CIP),
            vaddr: u32::from(VIP),
            daddr: u32::from(RIPS[0]),
        };
        e.install_synced(&rec, 0).unwrap();
        let mut a = tcp(CIP, 40001, 80, ACK);
        assert_eq!(e.process(&mut a, 0, 1), Verdict::Drop(crate::counters::DropReason::BackupOnly));
        // The backup stops (takeover): the same connection is forwarded to its server.
        _port.shared.backup.store(false, Ordering::Relaxed);
        e.sync_poll(2);
        assert_eq!(send(&mut e, tcp(CIP, 40001, 80, ACK), 3), 0);
        // Without backup_only a running backup forwards (master and backup may run at once).
        let (mut e, _port) = engine(snap(vip80(), None, Default::default()), false, true);
        send(&mut e, tcp(CIP, 40000, 80, SYN), 0);
    }

    /// Master engine → records → wire messages → decode → backup engine: the backup holds
    /// the same connections and templates, and forwards them as the master did.
    #[test]
    fn entries_survive_the_wire_and_a_takeover() {
        let (mut m, mport) = engine(snap(vip80(), Some(600), Default::default()), true, false);
        let clients: Vec<Ipv4Addr> = (1..=6).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect();
        let mut served = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let sport = 41000 + i as u16;
            let rs = send(&mut m, tcp(*c, sport, 80, SYN), 0);
            send(&mut m, tcp(*c, sport, 80, ACK), 1);
            send(&mut m, tcp(*c, sport, 80, ACK), 2);
            served.push((*c, sport, rs));
        }
        let conns: Vec<_> = drain(&mport).iter().map(SyncRecord::to_conn).collect();
        let msgs = sync_proto::encode_all(0, 1472, &conns);
        let (mut b, bport) = engine(snap(vip80(), Some(600), Default::default()), false, true);
        for m in &msgs {
            for ent in sync_proto::decode(m).unwrap().entries {
                let Entry::Conn(c) = ent else { panic!() };
                bport.inbound.push(SyncRecord::from_conn(&c).unwrap()).unwrap();
            }
        }
        b.sync_poll(10);
        let listing = |e: &Engine| {
            let mut v: Vec<(ConnKey, u32, u8, u8)> = e.conns().iter().map(|(_, x)| (*x.key(), x.server, x.state, x.flags)).collect();
            v.sort_by_key(|x| x.0);
            v
        };
        assert_eq!(listing(&b), listing(&m), "same keys, servers, states and flags");
        assert_eq!(bport.stats.applied.get(), conns.len() as u64, "updates of the same template are applied too");
        let counts = |e: &Engine| e.counters().servers[..2].iter().map(|c| (c.active, c.persist)).collect::<Vec<_>>();
        assert_eq!(counts(&b), counts(&m));
        // Takeover: established packets go where the master sent them (fast path), and a new
        // connection of a persistent client goes to its server through the synced template.
        b.sync_poll(11);
        for (c, sport, rs) in &served {
            assert_eq!(send(&mut b, tcp(*c, *sport, 80, ACK), 12), *rs);
            assert_eq!(send(&mut b, tcp(*c, sport + 100, 80, SYN), 12), *rs);
        }
    }

    #[test]
    fn install_replaces_updates_and_refuses_like_the_kernel() {
        let (mut b, _port) = engine(snap(vip80(), None, Default::default()), false, true);
        let rec = |daddr: Ipv4Addr, state: TcpState, inactive: bool| SyncRecord {
            proto: 6,
            state: state as u16,
            flags: wire::DROUTE | wire::NOOUTPUT | wire::SYNC | if inactive { wire::INACTIVE } else { 0 },
            cport: 40000,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 900,
            caddr: u32::from(CIP),
            vaddr: u32::from(VIP),
            daddr: u32::from(daddr),
        };
        b.install_synced(&rec(RIPS[0], TcpState::Established, false), 0).unwrap();
        let c = |b: &Engine| (b.counters().servers[0].active, b.counters().servers[0].inactive, b.counters().servers[1].active);
        assert_eq!(c(&b), (1, 0, 0));
        // Update to FIN_WAIT (INACTIVE): counters move, timeout from the message.
        let mut fw = rec(RIPS[0], TcpState::FinWait, true);
        fw.timeout = 100;
        b.install_synced(&fw, 0).unwrap();
        assert_eq!(c(&b), (0, 1, 0));
        let e = b.conns().iter().next().unwrap().1;
        assert_eq!((e.state, e.timeout), (TcpState::FinWait as u8, 100 * TPS));
        // An INACTIVE message for another server: stale, ignored.
        assert_eq!(b.install_synced(&rec(RIPS[1], TcpState::Close, true), 0), Err(InstallDrop::Stale));
        // An active one replaces the entry.
        b.install_synced(&rec(RIPS[1], TcpState::Established, false), 0).unwrap();
        assert_eq!(c(&b), (0, 0, 1));
        // Unknown service or server: not installed.
        let mut other = rec(RIPS[0], TcpState::Established, false);
        other.vport = 81;
        assert_eq!(b.install_synced(&other, 0), Err(InstallDrop::NoDest));
        let mut nobody = rec(Ipv4Addr::new(192, 0, 2, 1), TcpState::Established, false);
        nobody.cport = 1;
        assert_eq!(b.install_synced(&nobody, 0), Err(InstallDrop::NoDest));
        // Timeout 0: the state's default.
        let mut z = rec(RIPS[0], TcpState::Established, false);
        z.cport = 2;
        z.timeout = 0;
        b.install_synced(&z, 0).unwrap();
        let e = b.conns().iter().find(|(_, x)| x.key().cport == 2).unwrap().1;
        assert_eq!(e.timeout, 900 * TPS);
    }
}
