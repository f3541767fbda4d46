//! The configuration snapshot the workers forward with, and how it is published.
//!
//! The control side compiles the authoritative configuration (services, servers, addresses)
//! plus resolved neighbours into an immutable [`Snapshot`] and publishes it with
//! [`Published::publish`]. Workers compare a generation number (one atomic load, no
//! read-modify-write) between bursts and take the new snapshot only when it changed; the old
//! one is freed when the last worker lets go of it (reference counting stands in for a
//! quiescent-state scheme: a worker only drops its reference between bursts).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hashbrown::HashMap;

use crate::conn::Timeouts;
use crate::wire::MacAddr;

/// IP protocol numbers used in keys.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;

/// A port as the dataplane sees it.
#[derive(Debug, Clone)]
pub struct PortInfo {
    /// DPDK port id.
    pub id: u16,
    /// Its MAC address (source of everything it sends).
    pub mac: MacAddr,
    /// IP MTU.
    pub mtu: u16,
    /// Addresses configured on the port (address, prefix length), in configuration order.
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

/// Identity of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SvcKey {
    /// Protocol, VIP, port (port 0 = all ports).
    Addr {
        /// IP protocol number.
        proto: u8,
        /// VIP.
        addr: Ipv4Addr,
        /// Virtual port.
        port: u16,
    },
    /// Firewall mark.
    Fwmark(u32),
}

/// A virtual service.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Identity.
    pub key: SvcKey,
    /// Scheduler name (`rr`, `wlc`, …).
    pub scheduler: String,
    /// Scheduler flags (IPVS bit values).
    pub sched_flags: u32,
    /// Persistence timeout in seconds, if persistent.
    pub persistent: Option<u32>,
    /// Persistence netmask.
    pub netmask: Ipv4Addr,
    /// Real servers (slots) in kernel order: newest first.
    pub servers: Vec<u32>,
    /// rr / wrr: the cursor every worker shares, so that new connections rotate as one
    /// sequence, as in IPVS's single table (`None` for the other schedulers).
    pub rotation: Option<crate::sched::Rotation>,
}

/// A real server as forwarding needs it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Stable slot (the control plane's `ServerId`).
    pub slot: u32,
    /// Index of its service in [`Snapshot::services`].
    pub svc: u32,
    /// Address.
    pub addr: Ipv4Addr,
    /// Port.
    pub port: u16,
    /// Weight (0 = quiesced).
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold (0 = none).
    pub l_threshold: u32,
    /// The port whose connected subnet holds the server, if any (DR needs on-link servers).
    pub egress_port: Option<u16>,
    /// The server's MAC, once resolved.
    pub mac: Option<MacAddr>,
    /// Changes when the slot is given to a different server (counters restart from zero).
    pub incarnation: u64,
    /// A local real server (IPVS LOCALNODE: 127.0.0.0/8 or an address of the director):
    /// its connections are handed to the host stack unchanged.
    pub local: bool,
}

/// A compiled mark rule (iptables mangle `-j MARK` semantics: evaluated in order, the last
/// matching rule's mark wins, no match = mark 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkMatch {
    /// Input port, or any.
    pub in_port: Option<u16>,
    /// Destination network (host order) and mask.
    pub net: u32,
    /// Destination mask (host order).
    pub mask: u32,
    /// IP protocol, 0 = any.
    pub proto: u8,
    /// Destination port range (inclusive); (0, 65535) = any.
    pub dport: (u16, u16),
    /// Mark to set.
    pub mark: u32,
}

/// The IPVS sysctls that change DR behaviour (`lbadm sysctl`), defaults as the kernel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sysctl {
    /// Expire a connection whose real server was deleted on its next packet (and reschedule
    /// SYNs of connections to weight-0 servers).
    pub expire_nodest_conn: bool,
    /// A template pointing at a weight-0 server is invalid.
    pub expire_quiescent_template: bool,
    /// Any non-RST TCP packet may create a connection.
    pub sloppy_tcp: bool,
    /// Port reuse: bit 1 = reschedule SYNs hitting TIME_WAIT/CLOSE, bit 2 = also FIN_WAIT.
    pub conn_reuse_mode: u8,
    /// Send ICMP fragmentation-needed for DF packets over the egress MTU.
    pub pmtu_disc: bool,
    /// The defense strategies (`drop_entry`, `drop_packet`, `secure_tcp`, thresholds).
    pub defense: crate::defense::DefenseSysctl,
    /// Connection synchronisation sysctls.
    pub sync: SyncSysctl,
}

/// The connection-synchronisation sysctls (operations.md §3), kernel defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSysctl {
    /// `sync_threshold` (first value).
    pub threshold: u8,
    /// `sync_threshold` (second value: the period; 0 = once).
    pub period: u8,
    /// `sync_refresh_period` in seconds (0 = off).
    pub refresh_secs: u32,
    /// `sync_retries` (0..=3).
    pub retries: u8,
    /// `sync_persist_mode`: only templates of persistent services are sent.
    pub persist_mode: bool,
    /// `backup_only`: no forwarding while the backup daemon runs.
    pub backup_only: bool,
}

impl Default for SyncSysctl {
    fn default() -> Self {
        SyncSysctl { threshold: 3, period: 50, refresh_secs: 0, retries: 0, persist_mode: false, backup_only: false }
    }
}

impl Default for Sysctl {
    fn default() -> Self {
        Sysctl {
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            sloppy_tcp: false,
            conn_reuse_mode: 1,
            pmtu_disc: true,
            sync: SyncSysctl::default(),
            defense: crate::defense::DefenseSysctl::default(),
        }
    }
}

/// Everything a worker needs to forward, immutable once published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Increases with every publication.
    pub generation: u64,
    /// Ports indexed by port id.
    pub ports: Vec<PortInfo>,
    /// Local addresses: address → bitmask of ports it is configured on.
    pub local: HashMap<Ipv4Addr, u64>,
    /// Services.
    pub services: Vec<ServiceInfo>,
    /// Address-service lookup: (proto, VIP, port) → index in `services`.
    pub by_addr: HashMap<(u8, Ipv4Addr, u16), u32>,
    /// Firewall-mark lookup: mark → index in `services`.
    pub by_mark: HashMap<u32, u32>,
    /// True when some service listens on port 0 (enables the VIP:0 lookup step).
    pub has_port_zero: bool,
    /// Real servers indexed by slot; `None` for free or deleted slots.
    pub servers: Vec<Option<ServerInfo>>,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// Mark rules in evaluation order.
    pub marks: Vec<MarkMatch>,
    /// IPVS sysctls.
    pub sysctl: Sysctl,
    /// Client mask for steering packets to their owner worker: the widest persistence
    /// netmask of the configuration (all ones when no service masks clients).
    pub steer_mask: u32,
    /// Connected subnets (prefix 1..=31) as (network, mask, prefix length, port, our
    /// address), longest prefix first; built by [`Snapshot::index_subnets`]. VIPs (/32) are
    /// not subnets, so this stays short even with thousands of VIPs.
    pub subnets: Vec<(u32, u32, u8, u16, Ipv4Addr)>,
    /// Every port has a kernel interface (the kernel leg): what is not service traffic goes
    /// to the host instead of being answered or dropped by the director.
    pub host_leg: bool,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            generation: 0,
            ports: Vec::new(),
            local: HashMap::new(),
            services: Vec::new(),
            by_addr: HashMap::new(),
            by_mark: HashMap::new(),
            has_port_zero: false,
            servers: Vec::new(),
            timeouts: Timeouts::default(),
            marks: Vec::new(),
            sysctl: Sysctl::default(),
            steer_mask: u32::MAX,
            subnets: Vec::new(),
            host_leg: false,
        }
    }
}

impl Snapshot {
    /// Rebuilds [`Snapshot::subnets`] from the ports' addresses (call after changing them).
    pub fn index_subnets(&mut self) {
        self.subnets.clear();
        for p in &self.ports {
            for &(a, len) in &p.addrs {
                if len == 0 || len >= 32 {
                    continue;
                }
                let mask = u32::MAX << (32 - len);
                self.subnets.push((u32::from(a) & mask, mask, len, p.id, a));
            }
        }
        // Longest prefix first; equal prefixes keep port and configuration order.
        self.subnets.sort_by_key(|x| std::cmp::Reverse(x.2));
    }

    /// The port and our own address of the connected subnet holding `ip` (longest prefix).
    pub fn on_link(&self, ip: Ipv4Addr) -> Option<(u16, Ipv4Addr)> {
        let ip = u32::from(ip);
        self.subnets.iter().find(|s| ip & s.1 == s.0).map(|s| (s.3, s.4))
    }

    /// True when `ip` is configured on port `port`.
    #[inline]
    pub fn is_local_on(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.local.get(&ip).is_some_and(|m| port < 64 && m & (1u64 << port) != 0)
    }

    /// The MAC of port `id`.
    #[inline]
    pub fn port_mac(&self, id: u16) -> Option<MacAddr> {
        self.ports.get(id as usize).map(|p| p.mac)
    }

    /// The mark of a packet (iptables mangle MARK semantics: last matching rule wins).
    #[inline]
    pub fn mark_of(&self, in_port: u16, dst: Ipv4Addr, proto: u8, dport: u16) -> u32 {
        self.mark_counted(in_port, dst, proto, dport, |_| {})
    }

    /// [`Snapshot::mark_of`], calling `hit(rule index)` for every matching rule.
    #[inline]
    pub fn mark_counted(&self, in_port: u16, dst: Ipv4Addr, proto: u8, dport: u16, mut hit: impl FnMut(usize)) -> u32 {
        let d = u32::from(dst);
        let mut mark = 0;
        for (i, r) in self.marks.iter().enumerate() {
            if r.in_port.is_none_or(|p| p == in_port)
                && d & r.mask == r.net
                && (r.proto == 0 || r.proto == proto)
                && dport >= r.dport.0
                && dport <= r.dport.1
            {
                mark = r.mark;
                hit(i);
            }
        }
        mark
    }

    /// Service lookup for a packet without a connection: mark, then VIP:port, then VIP:0
    /// (ipvs-semantics §1.2).
    #[inline]
    pub fn find_service(&self, mark: u32, proto: u8, vip: Ipv4Addr, vport: u16) -> Option<u32> {
        if mark != 0 {
            if let Some(&i) = self.by_mark.get(&mark) {
                return Some(i);
            }
        }
        if let Some(&i) = self.by_addr.get(&(proto, vip, vport)) {
            return Some(i);
        }
        if self.has_port_zero {
            return self.by_addr.get(&(proto, vip, 0)).copied();
        }
        None
    }
}

/// The current snapshot, shared between the control side (writer) and the workers.
#[derive(Debug)]
pub struct Published {
    generation: AtomicU64,
    current: Mutex<Arc<Snapshot>>,
}

impl Published {
    /// Starts with `s`.
    pub fn new(s: Snapshot) -> Self {
        Published { generation: AtomicU64::new(s.generation), current: Mutex::new(Arc::new(s)) }
    }

    /// Replaces the snapshot; its generation is set to one more than the current one.
    pub fn publish(&self, mut s: Snapshot) -> u64 {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        s.generation = cur.generation + 1;
        let g = s.generation;
        *cur = Arc::new(s);
        self.generation.store(g, Ordering::Release);
        g
    }

    /// Generation of the current snapshot (one atomic load; called between bursts).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot (slow path: only when the generation changed).
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        let mut s = Snapshot::default();
        s.ports.push(PortInfo {
            id: 0,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            addrs: vec![(Ipv4Addr::new(198, 51, 100, 2), 24), (Ipv4Addr::new(198, 51, 100, 100), 32)],
        });
        s.ports.push(PortInfo {
            id: 1,
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            mtu: 1500,
            addrs: vec![(Ipv4Addr::new(198, 51, 0, 1), 16), (Ipv4Addr::new(198, 51, 100, 129), 25)],
        });
        s
    }

    #[test]
    fn on_link_picks_longest_prefix_and_ignores_host_routes() {
        let mut s = snap();
        s.index_subnets();
        assert_eq!(s.on_link(Ipv4Addr::new(198, 51, 100, 11)), Some((0, Ipv4Addr::new(198, 51, 100, 2))));
        assert_eq!(s.on_link(Ipv4Addr::new(198, 51, 100, 200)), Some((1, Ipv4Addr::new(198, 51, 100, 129))));
        assert_eq!(s.on_link(Ipv4Addr::new(198, 51, 7, 7)), Some((1, Ipv4Addr::new(198, 51, 0, 1))));
        assert_eq!(s.on_link(Ipv4Addr::new(203, 0, 113, 1)), None);
    }

    #[test]
    fn service_lookup_order_is_mark_then_port_then_port_zero() {
        let mut s = snap();
        let vip = Ipv4Addr::new(198, 51, 100, 100);
        s.by_addr.insert((PROTO_TCP, vip, 0), 0);
        s.by_addr.insert((PROTO_TCP, vip, 80), 1);
        s.by_mark.insert(10, 2);
        assert_eq!(s.find_service(0, PROTO_TCP, vip, 443), None, "port 0 is only tried when flagged");
        s.has_port_zero = true;
        assert_eq!(s.find_service(10, PROTO_TCP, vip, 80), Some(2));
        assert_eq!(s.find_service(0, PROTO_TCP, vip, 80), Some(1));
        assert_eq!(s.find_service(0, PROTO_TCP, vip, 443), Some(0));
        assert_eq!(s.find_service(7, PROTO_UDP, vip, 53), None);
    }

    #[test]
    fn publish_bumps_generation_and_old_snapshot_is_freed_when_released() {
        let p = Published::new(Snapshot::default());
        let old = p.load();
        let weak = Arc::downgrade(&old);
        assert_eq!(p.generation(), 0);
        assert_eq!(p.publish(snap()), 1);
        assert_eq!(p.generation(), 1);
        assert_eq!(p.load().ports.len(), 2);
        assert!(weak.upgrade().is_some(), "a worker still holds it");
        drop(old);
        assert!(weak.upgrade().is_none());
    }
}
