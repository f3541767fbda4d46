//! Per-worker counters: drop reasons and per-real-server statistics.
//!
//! Each worker owns its counters (single writer, plain integers, no atomics on the packet
//! path). The control side reads them by asking the worker for a copy (see `worker`), and
//! adds the copies of all workers together.

use std::sync::atomic::{AtomicU64, Ordering};

/// Active/inactive connection counts of every worker, for the schedulers that decide on
/// connection counts (lc, wlc, sed, nq, ovf): a worker decides on the sum over all workers,
/// not on its own share. Each worker writes only its own cells (a plain atomic store when one
/// of its counts changes, which happens per connection event, not per packet: no
/// read-modify-write, no lock); readers sum the cells of all workers with relaxed loads, so a
/// decision sees the other workers' counts as of their last change (bounded staleness: the
/// store-to-load visibility delay). Cells of one worker are contiguous, so workers do not
/// share cache lines except at the region boundary.
#[derive(Debug)]
pub struct MergedCounts {
    workers: usize,
    servers: usize,
    cells: Vec<AtomicU64>,
}

impl MergedCounts {
    /// Cells for `workers` × `servers`.
    pub fn new(workers: usize, servers: usize) -> Self {
        MergedCounts { workers, servers, cells: (0..workers * servers).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Worker `w` publishes its counts for `slot`.
    #[inline]
    pub fn publish(&self, w: usize, slot: u32, active: u32, inactive: u32) {
        if let Some(c) = self.cells.get(w * self.servers + slot as usize) {
            c.store((u64::from(active) << 32) | u64::from(inactive), Ordering::Relaxed);
        }
    }

    /// (active, inactive) of `slot` summed over all workers.
    #[inline]
    pub fn total(&self, slot: u32) -> (u32, u32) {
        let (mut a, mut i) = (0u32, 0u32);
        for w in 0..self.workers {
            if let Some(c) = self.cells.get(w * self.servers + slot as usize) {
                let v = c.load(Ordering::Relaxed);
                a = a.saturating_add((v >> 32) as u32);
                i = i.saturating_add(v as u32);
            }
        }
        (a, i)
    }
}

/// Most mark rules a configuration may hold (the control plane enforces it).
pub const MAX_MARK_RULES: usize = control::MAX_MARK_RULES;

/// Why a packet was dropped. Each reason indexes a counter; names are stable (listings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header or a header it announces.
    Truncated,
    /// Multi-segment mbuf (jumbo without scatter support).
    MultiSegment,
    /// Ethertype neither IPv4 nor ARP.
    UnsupportedEthertype,
    /// 802.1Q / 802.1ad tagged frame (VLAN sub-interfaces are not configured).
    Vlan,
    /// Unicast frame for another MAC address.
    NotOurMac,
    /// Malformed or unsupported ARP.
    BadArp,
    /// ARP not asking for one of our addresses (or a reply, after learning).
    ArpNotForUs,
    /// IPv4 version is not 4.
    BadIpVersion,
    /// IPv4 header length invalid.
    BadIpHeaderLen,
    /// IPv4 total length invalid.
    BadIpTotalLen,
    /// IPv4 header checksum wrong.
    BadIpChecksum,
    /// IP fragment (reassembly is not done).
    Fragment,
    /// TCP header malformed.
    BadTcp,
    /// UDP header malformed.
    BadUdp,
    /// ICMP malformed or wrong checksum.
    BadIcmp,
    /// Destination is not an address of the director.
    NotLocal,
    /// ICMP type the director does not handle.
    IcmpUnhandled,
    /// Protocol other than TCP, UDP, ICMP to a local address.
    UnsupportedProtocol,
    /// Local address, but no virtual service for this protocol/port.
    NoService,
    /// TCP packet without SYN and without a connection entry.
    NoConnection,
    /// The scheduler found no usable real server.
    NoDestination,
    /// The connection's real server is deleted (kept until the entry times out, as IPVS).
    DestinationGone,
    /// The real server's MAC address is not resolved.
    NeighbourUnresolved,
    /// The real server is not on-link on any port.
    NoRoute,
    /// Connection table full: new connection refused.
    TableFull,
    /// TTL would reach zero.
    TtlExceeded,
    /// Larger than the egress MTU with DF set.
    MtuExceeded,
    /// The NIC did not accept the packet for transmission.
    TxFull,
    /// A reply could not be built (no mbuf).
    NoMbuf,
    /// For the host, over the kernel leg's packets-per-second cap (`--kernel-pps`).
    HostPoliced,
    /// For the host, but the queue to the kernel leg's thread was full.
    HostQueueFull,
    /// For a local real server, but the director runs without kernel interfaces.
    NoKernelInterface,
    /// The backup sync daemon runs with `backup_only=1`: the director does not forward.
    BackupOnly,
    /// The `drop_packet` defense dropped a packet that would have opened a connection.
    DropPacket,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = DropReason::DropPacket as usize + 1;

    /// All reasons in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Truncated,
        DropReason::MultiSegment,
        DropReason::UnsupportedEthertype,
        DropReason::Vlan,
        DropReason::NotOurMac,
        DropReason::BadArp,
        DropReason::ArpNotForUs,
        DropReason::BadIpVersion,
        DropReason::BadIpHeaderLen,
        DropReason::BadIpTotalLen,
        DropReason::BadIpChecksum,
        DropReason::Fragment,
        DropReason::BadTcp,
        DropReason::BadUdp,
        DropReason::BadIcmp,
        DropReason::NotLocal,
        DropReason::IcmpUnhandled,
        DropReason::UnsupportedProtocol,
        DropReason::NoService,
        DropReason::NoConnection,
        DropReason::NoDestination,
        DropReason::DestinationGone,
        DropReason::NeighbourUnresolved,
        DropReason::NoRoute,
        DropReason::TableFull,
        DropReason::TtlExceeded,
        DropReason::MtuExceeded,
        DropReason::TxFull,
        DropReason::NoMbuf,
        DropReason::HostPoliced,
        DropReason::HostQueueFull,
        DropReason::NoKernelInterface,
        DropReason::BackupOnly,
        DropReason::DropPacket,
    ];

    /// Stable snake_case name.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::MultiSegment => "multi_segment",
            DropReason::UnsupportedEthertype => "unsupported_ethertype",
            DropReason::Vlan => "vlan",
            DropReason::NotOurMac => "not_our_mac",
            DropReason::BadArp => "bad_arp",
            DropReason::ArpNotForUs => "arp_not_for_us",
            DropReason::BadIpVersion => "bad_ip_version",
            DropReason::BadIpHeaderLen => "bad_ip_header_len",
            DropReason::BadIpTotalLen => "bad_ip_total_len",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::Fragment => "fragment",
            DropReason::BadTcp => "bad_tcp",
            DropReason::BadUdp => "bad_udp",
            DropReason::BadIcmp => "bad_icmp",
            DropReason::NotLocal => "not_local",
            DropReason::IcmpUnhandled => "icmp_unhandled",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::NoService => "no_service",
            DropReason::NoConnection => "no_connection",
            DropReason::NoDestination => "no_destination",
            DropReason::DestinationGone => "destination_gone",
            DropReason::NeighbourUnresolved => "neighbour_unresolved",
            DropReason::NoRoute => "no_route",
            DropReason::TableFull => "table_full",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::TxFull => "tx_full",
            DropReason::NoMbuf => "no_mbuf",
            DropReason::HostPoliced => "host_policed",
            DropReason::HostQueueFull => "host_queue_full",
            DropReason::NoKernelInterface => "no_kernel_interface",
            DropReason::BackupOnly => "backup_only",
            DropReason::DropPacket => "drop_packet",
        }
    }
}

/// Statistics of one real server as seen by one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Connection entries in an active TCP state.
    pub active: u32,
    /// Other connection entries.
    pub inactive: u32,
    /// Persistence templates pointing at the server.
    pub persist: u32,
    /// Connections created.
    pub conns: u64,
    /// Packets forwarded.
    pub inpkts: u64,
    /// Bytes forwarded.
    pub inbytes: u64,
}

impl ServerCounters {
    /// Adds another worker's view.
    pub fn merge(&mut self, o: &ServerCounters) {
        self.active += o.active;
        self.inactive += o.inactive;
        self.persist += o.persist;
        self.conns += o.conns;
        self.inpkts += o.inpkts;
        self.inbytes += o.inbytes;
    }
}

/// Per-port packet counters of one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received.
    pub rx: u64,
    /// Frames forwarded to a real server out of this port.
    pub forwarded: u64,
    /// Frames answered locally (ARP, ICMP echo) out of this port.
    pub replied: u64,
    /// Frames dropped after arriving on this port.
    pub dropped: u64,
    /// Frames (or copies) handed to the host through this port's kernel interface.
    pub to_host: u64,
}

/// Everything one worker counts.
#[derive(Debug, Clone)]
pub struct WorkerCounters {
    /// Drops by reason.
    pub drops: [u64; DropReason::COUNT],
    /// Per port (indexed by port id).
    pub ports: Vec<PortCounters>,
    /// Per real server (indexed by server slot).
    pub servers: Vec<ServerCounters>,
    /// Neighbour events lost because the queue to the control side was full.
    pub neigh_events_lost: u64,
    /// Generated replies (RST, ICMP errors) suppressed by the rate limit.
    pub replies_ratelimited: u64,
    /// Per mark rule (rule order): packets and bytes that matched it. Only packets opening
    /// a new connection consult the rules.
    pub marks: Vec<(u64, u64)>,
    /// Packets this worker handed to their owner worker.
    pub handoff_out: u64,
    /// Packets other workers handed to this one.
    pub handoff_in: u64,
    /// Hand-offs lost because the owner's ring was full.
    pub handoff_dropped: u64,
    /// Unconfirmed entries (handshakes, unassured templates) evicted to make room for new
    /// connections in a full table (`defense`).
    pub evicted_unconfirmed: u64,
    /// Unconfirmed entries dropped by the `drop_entry` sweep.
    pub drop_entry_dropped: u64,
    /// True while this worker's automatic defenses are on (table memory below `amemthresh`);
    /// merged: any worker.
    pub defense_on: bool,
    /// Drops by reason per port (indexed by the port id the packet arrived on, or the
    /// egress port for transmit-side drops); `drops` is their sum over ports.
    pub port_drops: Vec<[u64; DropReason::COUNT]>,
    /// TSC cycles of poll-loop iterations that handled at least one packet.
    pub busy_cycles: u64,
    /// TSC cycles since the worker started polling.
    pub poll_cycles: u64,
    /// Entries in the worker's connection table (connections and templates), filled in
    /// when the worker answers a counters request.
    pub conn_entries: u64,
    /// Capacity of the worker's connection table, filled in likewise.
    pub conn_capacity: u64,
}

impl WorkerCounters {
    /// Zeroed counters for `ports` ports and `servers` server slots.
    pub fn new(ports: usize, servers: usize) -> Self {
        Self::sized(ports, servers, MAX_MARK_RULES)
    }

    /// Zeroed counters with room for `marks` mark rules.
    pub fn sized(ports: usize, servers: usize, marks: usize) -> Self {
        WorkerCounters {
            drops: [0; DropReason::COUNT],
            ports: vec![PortCounters::default(); ports],
            servers: vec![ServerCounters::default(); servers],
            neigh_events_lost: 0,
            replies_ratelimited: 0,
            marks: vec![(0, 0); marks],
            handoff_out: 0,
            handoff_in: 0,
            handoff_dropped: 0,
            evicted_unconfirmed: 0,
            drop_entry_dropped: 0,
            defense_on: false,
            port_drops: vec![[0; DropReason::COUNT]; ports],
            busy_cycles: 0,
            poll_cycles: 0,
            conn_entries: 0,
            conn_capacity: 0,
        }
    }

    /// Counts a drop.
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        if let Some(c) = self.drops.get_mut(r as usize) {
            *c += 1;
        }
    }

    /// Counts a drop of a packet that arrived on (or was to leave by) `port`. Slow path only.
    #[inline]
    pub fn drop_at(&mut self, port: u16, r: DropReason) {
        self.drop(r);
        if let Some(c) = self.port_drops.get_mut(port as usize).and_then(|p| p.get_mut(r as usize)) {
            *c += 1;
        }
    }

    /// Copies `o` into self without reallocating: as many server slots and mark rules as
    /// self has room for (the control side sizes its request to the slots in use, so a
    /// worker never copies the whole `--max-servers` range).
    pub fn copy_from(&mut self, o: &WorkerCounters) {
        self.drops = o.drops;
        let n = self.ports.len().min(o.ports.len());
        self.ports[..n].copy_from_slice(&o.ports[..n]);
        let n = self.servers.len().min(o.servers.len());
        self.servers[..n].copy_from_slice(&o.servers[..n]);
        self.neigh_events_lost = o.neigh_events_lost;
        self.replies_ratelimited = o.replies_ratelimited;
        let n = self.marks.len().min(o.marks.len());
        self.marks[..n].copy_from_slice(&o.marks[..n]);
        self.handoff_out = o.handoff_out;
        self.handoff_in = o.handoff_in;
        self.handoff_dropped = o.handoff_dropped;
        self.evicted_unconfirmed = o.evicted_unconfirmed;
        self.drop_entry_dropped = o.drop_entry_dropped;
        self.defense_on = o.defense_on;
        let n = self.port_drops.len().min(o.port_drops.len());
        self.port_drops[..n].copy_from_slice(&o.port_drops[..n]);
        self.busy_cycles = o.busy_cycles;
        self.poll_cycles = o.poll_cycles;
        self.conn_entries = o.conn_entries;
        self.conn_capacity = o.conn_capacity;
    }

    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &WorkerCounters) {
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        for (a, b) in self.ports.iter_mut().zip(o.ports.iter()) {
            a.rx += b.rx;
            a.forwarded += b.forwarded;
            a.replied += b.replied;
            a.dropped += b.dropped;
            a.to_host += b.to_host;
        }
        for (a, b) in self.servers.iter_mut().zip(o.servers.iter()) {
            a.merge(b);
        }
        self.neigh_events_lost += o.neigh_events_lost;
        self.replies_ratelimited += o.replies_ratelimited;
        for (a, b) in self.marks.iter_mut().zip(o.marks.iter()) {
            a.0 += b.0;
            a.1 += b.1;
        }
        self.handoff_out += o.handoff_out;
        self.handoff_in += o.handoff_in;
        self.handoff_dropped += o.handoff_dropped;
        self.evicted_unconfirmed += o.evicted_unconfirmed;
        self.drop_entry_dropped += o.drop_entry_dropped;
        self.defense_on |= o.defense_on;
        for (a, b) in self.port_drops.iter_mut().zip(o.port_drops.iter()) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += y;
            }
        }
        self.busy_cycles += o.busy_cycles;
        self.poll_cycles += o.poll_cycles;
        self.conn_entries += o.conn_entries;
        self.conn_capacity += o.conn_capacity;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_densely_and_named_uniquely() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
