//! Deterministic traffic generator: real Ethernet/IPv4/TCP/UDP frames for C clients, F active
//! flows over S services (shares of plain, persistent, port-0 and fwmark services), a SYN
//! share and a packet size.
//!
//! Everything derives from [`TrafficSpec::seed`]: the same spec gives the same flows, the same
//! packet sequence and the same bytes. Frames are written straight into caller buffers (mbuf
//! data) with correct IPv4 and TCP/UDP checksums, so generating millions of packets costs tens
//! of nanoseconds each; a unit test checks the bytes against `dataplane::wire::Frame`.
//!
//! Addressing (RFC 2544 benchmark range, nothing leaves the process):
//! - director address `198.18.0.1/16` on `dpdk0`, VIPs `198.18.1.x/32`, fwmark VIPs
//!   `198.18.3.x/32` (mark rule `-d VIP -j MARK --set-mark 100+s`);
//! - real servers of service s: `198.18.(100+s).(k+1)`, MAC `02:00:c6:12:(100+s):(k+1)`;
//! - clients from `100.64.0.1` up (C ≤ 4,000,000, inside 100.64.0.0/10), MAC `02:00:00:00:00:c1`.
//!
//! Packet size is the wire size including the 4-byte FCS (64 = minimum Ethernet frame); the
//! frame in the buffer is 4 bytes shorter.

use std::net::Ipv4Addr;

use control::model::{AddrConfig, ServerSpec, ServiceKey, ServiceSpec};
use control::MarkRule;
use dataplane::wire::MacAddr;

/// The director's own address and prefix on `dpdk0`.
pub const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Prefix length of [`DIP`] (servers are on-link in it, clients are not).
pub const DIP_PREFIX: u8 = 16;
/// Source MAC of every client frame.
pub const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xc1]);
/// First client address.
const CLIENT_BASE: u32 = u32::from_be_bytes([100, 64, 0, 1]);
/// Largest number of clients.
pub const MAX_CLIENTS: u32 = 4_000_000;
/// First source port of flows.
const SPORT_BASE: u32 = 1024;
/// IP protocol numbers.
const TCP: u8 = 6;
const UDP: u8 = 17;

/// What kind of virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ServiceKind {
    /// VIP:port, not persistent.
    Plain,
    /// VIP:port with persistence (templates per client).
    Persistent,
    /// VIP:0 (all ports), persistent as ipvsadm requires.
    PortZero,
    /// Firewall-mark service (persistent), fed by a mark rule on its VIP.
    Fwmark,
}

/// What to generate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrafficSpec {
    /// Distinct client addresses (≤ [`MAX_CLIENTS`]).
    pub clients: u32,
    /// Active flows: established connections the traffic is spread over (uniformly at random).
    pub flows: u32,
    /// Virtual services.
    pub services: u32,
    /// Share of services that are persistent VIP:port services.
    pub persistent_share: f64,
    /// Share of services that are port-0 (all ports) services.
    pub port_zero_share: f64,
    /// Share of services that are fwmark services.
    pub fwmark_share: f64,
    /// Share of plain services that are UDP (the others are TCP).
    pub udp_share: f64,
    /// Share of packets that are SYNs opening new connections (fresh 5-tuples).
    pub syn_share: f64,
    /// Wire size of each packet including FCS (≥ 64).
    pub packet_bytes: u16,
    /// Real servers per service.
    pub servers_per_service: u32,
    /// Scheduler of every service.
    pub scheduler: String,
    /// Persistence timeout (seconds) of persistent services.
    pub persistence_secs: u32,
    /// Seed of everything random.
    pub seed: u64,
}

impl Default for TrafficSpec {
    fn default() -> Self {
        TrafficSpec {
            clients: 1024,
            flows: 1024,
            services: 4,
            persistent_share: 0.25,
            port_zero_share: 0.25,
            fwmark_share: 0.25,
            udp_share: 0.0,
            syn_share: 0.0,
            packet_bytes: 64,
            servers_per_service: 16,
            scheduler: "wlc".into(),
            persistence_secs: 300,
            seed: 0x5eed_d1ec_7012,
        }
    }
}

/// One virtual service of the generated configuration.
#[derive(Debug, Clone)]
pub struct Service {
    /// Kind.
    pub kind: ServiceKind,
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// Address clients send to.
    pub vip: Ipv4Addr,
    /// Virtual port (0 for port-0 services).
    pub vport: u16,
    /// Mark for fwmark services.
    pub mark: u32,
    /// Real servers (address, MAC).
    pub servers: Vec<(Ipv4Addr, MacAddr)>,
}

/// A connection's identity as the client sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    /// IP protocol.
    pub proto: u8,
    /// Client address.
    pub caddr: Ipv4Addr,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vaddr: Ipv4Addr,
    /// Virtual port.
    pub vport: u16,
}

/// What a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// TCP SYN (40-byte IP packet, Ethernet padding to size).
    Syn,
    /// TCP ACK with payload up to the packet size (an established connection's data).
    Ack,
    /// UDP datagram with payload up to the packet size.
    Udp,
}

/// SplitMix64: tiny, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }
}

#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator: services, flows and the frame writer.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// The spec it was built from.
    pub spec: TrafficSpec,
    /// Services in configuration order.
    pub services: Vec<Service>,
    /// Destination MAC of client frames (the director port's MAC).
    pub dst_mac: MacAddr,
    /// Sport offset of fresh (SYN) tuples: above every active flow's.
    new_sport_base: u32,
}

impl Traffic {
    /// Builds services and flows for `spec`; frames go to `dst_mac`.
    pub fn new(spec: TrafficSpec, dst_mac: MacAddr) -> anyhow::Result<Traffic> {
        anyhow::ensure!(spec.clients >= 1 && spec.clients <= MAX_CLIENTS, "clients must be 1..={MAX_CLIENTS}");
        anyhow::ensure!(spec.services >= 1 && spec.services <= 100, "services must be 1..=100");
        anyhow::ensure!(spec.servers_per_service >= 1 && spec.servers_per_service <= 250, "servers per service 1..=250");
        anyhow::ensure!(spec.packet_bytes >= 64 && spec.packet_bytes <= 1518, "packet size 64..=1518");
        let per_client = (spec.flows as u64).div_ceil(spec.clients as u64);
        anyhow::ensure!(per_client < 16384, "too many flows per client ({per_client}): raise clients");
        let s = spec.services as f64;
        let n_pers = (s * spec.persistent_share).round() as u32;
        let n_zero = (s * spec.port_zero_share).round() as u32;
        let n_mark = (s * spec.fwmark_share).round() as u32;
        let n_plain = spec.services.saturating_sub(n_pers + n_zero + n_mark);
        let n_udp = (n_plain as f64 * spec.udp_share).round() as u32;
        let mut services = Vec::new();
        for i in 0..spec.services {
            let (kind, proto) = if i < n_plain {
                (ServiceKind::Plain, if i < n_udp { UDP } else { TCP })
            } else if i < n_plain + n_pers {
                (ServiceKind::Persistent, TCP)
            } else if i < n_plain + n_pers + n_zero {
                (ServiceKind::PortZero, TCP)
            } else {
                (ServiceKind::Fwmark, TCP)
            };
            let third = if kind == ServiceKind::Fwmark { 3 } else { 1 };
            let vip = Ipv4Addr::new(198, 18, third, (i + 1) as u8);
            let vport = match (kind, proto) {
                (ServiceKind::PortZero, _) => 0,
                (_, UDP) => 53,
                (ServiceKind::Fwmark, _) => 443,
                _ => 80,
            };
            let servers = (0..spec.servers_per_service)
                .map(|k| {
                    let (a, b) = ((100 + i) as u8, (k + 1) as u8);
                    (Ipv4Addr::new(198, 18, a, b), MacAddr([0x02, 0, 198, 18, a, b]))
                })
                .collect();
            services.push(Service { kind, proto, vip, vport, mark: 100 + i, servers });
        }
        Ok(Traffic { new_sport_base: SPORT_BASE + per_client as u32, spec, services, dst_mac })
    }

    fn service_of(&self, key: u64) -> usize {
        (mix(key ^ self.spec.seed) % self.services.len() as u64) as usize
    }

    fn tuple(&self, client: u32, sport: u32, salt: u64) -> Tuple {
        self.tuple_on(self.service_of(salt), client, sport, salt)
    }

    fn tuple_on(&self, service: usize, client: u32, sport: u32, salt: u64) -> Tuple {
        let svc = &self.services[service % self.services.len()];
        let vport = if svc.kind == ServiceKind::PortZero { 10000 + (mix(salt ^ 0xabcd) % 5000) as u16 } else { svc.vport };
        Tuple {
            proto: svc.proto,
            caddr: Ipv4Addr::from(CLIENT_BASE + client),
            cport: sport as u16,
            vaddr: svc.vip,
            vport,
        }
    }

    /// Active flow `f` (0..flows): client `f % C`, port above 1024, service chosen by hash.
    pub fn flow(&self, f: u32) -> Tuple {
        let c = self.spec.clients;
        self.tuple(f % c, SPORT_BASE + f / c, f as u64)
    }

    /// Background flow `f` for filling a table: same clients as active flows, ports from
    /// the top of the range down (so they never collide with active or fresh tuples up to
    /// the limits checked by [`Traffic::new`]).
    pub fn background(&self, f: u64) -> Tuple {
        let c = self.spec.clients as u64;
        let s = self.services.len() as u64;
        // Client, then service (VIP), then port: unique up to clients × services × 32768.
        let sport = 65535 - ((f / (c * s)) % 32768) as u32;
        self.tuple_on(((f / c) % s) as usize, (f % c) as u32, sport, f ^ 0x1357_9bdf)
    }

    /// Number of distinct background flows available.
    pub fn background_capacity(&self) -> u64 {
        self.spec.clients as u64 * self.services.len() as u64 * 32768
    }

    /// Fresh tuple number `n` for a SYN (never an active flow's).
    pub fn fresh(&self, n: u64) -> Tuple {
        let c = self.spec.clients as u64;
        let sport = self.new_sport_base as u64 + (n / c) % (32768 - self.new_sport_base as u64);
        self.tuple((n % c) as u32, sport as u32, n.wrapping_mul(0x9E37_79B9) ^ 0x2468)
    }

    /// Number of distinct fresh tuples.
    pub fn fresh_capacity(&self) -> u64 {
        self.spec.clients as u64 * (32768 - self.new_sport_base as u64)
    }

    /// Frame length in the buffer (packet size minus FCS).
    pub fn frame_len(&self) -> usize {
        self.spec.packet_bytes as usize - 4
    }

    /// The data-packet kind of a tuple (ACK for TCP, UDP datagram for UDP).
    pub fn data_kind(t: &Tuple) -> PacketKind {
        if t.proto == UDP {
            PacketKind::Udp
        } else {
            PacketKind::Ack
        }
    }

    /// The opening packet of a tuple (SYN for TCP, the first datagram for UDP).
    pub fn open_kind(t: &Tuple) -> PacketKind {
        if t.proto == UDP {
            PacketKind::Udp
        } else {
            PacketKind::Syn
        }
    }

    /// Writes the frame of `kind` for `t` into `out` (at least [`Traffic::frame_len`] bytes);
    /// returns its length. `ident` goes into the IP identification field.
    pub fn write(&self, t: &Tuple, kind: PacketKind, ident: u16, out: &mut [u8]) -> usize {
        let len = self.frame_len();
        let out = &mut out[..len];
        out[0..6].copy_from_slice(&self.dst_mac.0);
        out[6..12].copy_from_slice(&CLIENT_MAC.0);
        out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let l4_len = match kind {
            PacketKind::Syn => 20,
            PacketKind::Ack => len - 14 - 20,
            PacketKind::Udp => (len - 14 - 20).max(8),
        };
        let ip_total = 20 + l4_len;
        let ip = &mut out[14..34];
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&(ip_total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&ident.to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        ip[8] = 64;
        ip[9] = t.proto;
        ip[10..12].copy_from_slice(&[0, 0]);
        ip[12..16].copy_from_slice(&t.caddr.octets());
        ip[16..20].copy_from_slice(&t.vaddr.octets());
        let c = !fold(sum(&out[14..34], 0));
        out[24..26].copy_from_slice(&c.to_be_bytes());
        let l4 = 34;
        // Payload: a deterministic pattern; padding after the IP packet: zeros.
        for (i, b) in out[l4..].iter_mut().enumerate() {
            *b = if l4 + i < 14 + ip_total { (i as u8).wrapping_mul(31) } else { 0 };
        }
        let seg = &mut out[l4..14 + ip_total];
        seg[0..2].copy_from_slice(&t.cport.to_be_bytes());
        seg[2..4].copy_from_slice(&t.vport.to_be_bytes());
        match kind {
            PacketKind::Syn | PacketKind::Ack => {
                let seq = (t.cport as u32) << 16 | 0x1000;
                let (flags, seq, ack) = if kind == PacketKind::Syn { (0x02u8, seq, 0u32) } else { (0x10, seq + 1, 0x7777_0001) };
                seg[4..8].copy_from_slice(&seq.to_be_bytes());
                seg[8..12].copy_from_slice(&ack.to_be_bytes());
                seg[12] = 5 << 4;
                seg[13] = flags;
                seg[14..16].copy_from_slice(&64240u16.to_be_bytes());
                seg[16..18].copy_from_slice(&[0, 0]);
                seg[18..20].copy_from_slice(&[0, 0]);
            }
            PacketKind::Udp => {
                seg[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                seg[6..8].copy_from_slice(&[0, 0]);
            }
        }
        let pseudo = pseudo_sum(t.caddr, t.vaddr, t.proto, l4_len as u16);
        let mut c = !fold(sum(seg, pseudo));
        let at = if kind == PacketKind::Udp {
            if c == 0 {
                c = 0xffff;
            }
            6
        } else {
            16
        };
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        len
    }

    /// The configuration commands of the generated services: addresses, mark rules,
    /// services and their servers (ipvsadm semantics).
    pub fn config(&self) -> GenConfig {
        let mut addrs = vec![AddrConfig { addr: DIP, prefix_len: DIP_PREFIX, dev: "dpdk0".into() }];
        let mut marks = Vec::new();
        let mut services = Vec::new();
        for s in &self.services {
            addrs.push(AddrConfig { addr: s.vip, prefix_len: 32, dev: "dpdk0".into() });
            let proto = if s.proto == UDP { control::model::Protocol::Udp } else { control::model::Protocol::Tcp };
            let key = match s.kind {
                ServiceKind::Fwmark => {
                    marks.push(MarkRule::new(s.vip, 32, s.mark));
                    ServiceKey::Fwmark(s.mark)
                }
                _ => ServiceKey::Addr { proto, addr: s.vip, port: s.vport },
            };
            let mut spec = ServiceSpec::new(key);
            spec.scheduler = self.spec.scheduler.clone();
            if s.kind != ServiceKind::Plain {
                spec.persistent = Some(self.spec.persistence_secs);
            }
            let servers = s.servers.iter().map(|&(a, _)| ServerSpec::new(a, if s.kind == ServiceKind::Plain { s.vport } else { 0 })).collect();
            services.push((spec, servers));
        }
        GenConfig { addrs, marks, services }
    }

    /// Every real server (address, MAC).
    pub fn servers(&self) -> Vec<(Ipv4Addr, MacAddr)> {
        self.services.iter().flat_map(|s| s.servers.iter().copied()).collect()
    }
}

/// Configuration commands for the generated services.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Addresses on `dpdk0` (the director address first, then every VIP).
    pub addrs: Vec<AddrConfig>,
    /// Mark rules.
    pub marks: Vec<MarkRule>,
    /// Services with their servers.
    pub services: Vec<(ServiceSpec, Vec<ServerSpec>)>,
}

#[inline]
fn sum(data: &[u8], init: u32) -> u32 {
    let mut s = init;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        s += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        s += (*b as u32) << 8;
    }
    s
}

#[inline]
fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    sum(&src.octets(), 0) + sum(&dst.octets(), 0) + proto as u32 + len as u32
}

/// The packet sequence of a measured run: packet `i` of epoch `epoch`.
#[derive(Debug, Clone)]
pub struct Sequence<'a> {
    traffic: &'a Traffic,
    rng: Rng,
    fresh_next: u64,
}

impl<'a> Sequence<'a> {
    /// A sequence; `epoch` changes the random stream and starts fresh tuples at
    /// `fresh_start` (so runs never reuse a new-connection tuple).
    pub fn new(traffic: &'a Traffic, epoch: u64, fresh_start: u64) -> Self {
        Sequence { traffic, rng: Rng::new(traffic.spec.seed ^ mix(epoch.wrapping_add(1))), fresh_next: fresh_start }
    }

    /// Fresh tuples handed out so far (the next epoch's `fresh_start`).
    pub fn fresh_used(&self) -> u64 {
        self.fresh_next
    }

    /// The next packet: a SYN on a fresh tuple with probability `syn_share`, else a data
    /// packet of an active flow drawn uniformly at random.
    #[inline]
    pub fn next_packet(&mut self) -> (Tuple, PacketKind) {
        let t = self.traffic;
        let syn = t.spec.flows == 0
            || (t.spec.syn_share > 0.0 && (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64) < t.spec.syn_share);
        if syn {
            let tup = t.fresh(self.fresh_next);
            self.fresh_next += 1;
            (tup, Traffic::open_kind(&tup))
        } else {
            let f = self.rng.below(t.spec.flows as u64) as u32;
            let tup = t.flow(f);
            (tup, Traffic::data_kind(&tup))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::{Frame, Ipv4Packet, TcpFlags, TcpPacket, UdpPacket};

    fn traffic(bytes: u16) -> Traffic {
        let spec = TrafficSpec { packet_bytes: bytes, udp_share: 0.5, services: 8, ..TrafficSpec::default() };
        Traffic::new(spec, MacAddr([0x02, 0, 0, 0, 0, 0x99])).unwrap()
    }

    #[test]
    fn tcp_frames_match_the_shared_builder() {
        let t = traffic(64);
        let tup = Tuple { proto: 6, caddr: Ipv4Addr::new(100, 64, 0, 5), cport: 1030, vaddr: Ipv4Addr::new(198, 18, 1, 3), vport: 80 };
        let mut buf = [0u8; 2048];
        let n = t.write(&tup, PacketKind::Syn, 7, &mut buf);
        let want = Frame::tcp()
            .src_mac(CLIENT_MAC)
            .dst_mac(t.dst_mac)
            .src(tup.caddr, tup.cport)
            .dst(tup.vaddr, tup.vport)
            .flags(TcpFlags::SYN)
            .seq((1030u32 << 16) | 0x1000)
            .ident(7)
            .build();
        assert_eq!(&buf[..n], &want[..]);
    }

    #[test]
    fn data_frames_have_the_size_and_valid_checksums() {
        for bytes in [64u16, 128, 512, 1518] {
            let t = traffic(bytes);
            let mut buf = vec![0u8; 2048];
            for f in 0..64 {
                let tup = t.flow(f);
                let n = t.write(&tup, Traffic::data_kind(&tup), f as u16, &mut buf);
                assert_eq!(n, bytes as usize - 4);
                let ip = Ipv4Packet::new_checked(&buf[14..n]).unwrap();
                assert!(ip.verify_checksum());
                assert_eq!((ip.src(), ip.dst()), (tup.caddr, tup.vaddr));
                if tup.proto == 6 {
                    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                    assert!(tcp.verify_checksum(tup.caddr, tup.vaddr), "{bytes} {f}");
                    assert_eq!((tcp.src_port(), tcp.dst_port()), (tup.cport, tup.vport));
                } else {
                    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
                    assert!(udp.verify_checksum(tup.caddr, tup.vaddr), "{bytes} {f}");
                }
            }
        }
    }

    #[test]
    fn flows_fresh_and_background_tuples_are_distinct_and_deterministic() {
        let t = traffic(64);
        let mut seen = std::collections::HashSet::new();
        for f in 0..t.spec.flows {
            assert!(seen.insert(t.flow(f).into_key()));
        }
        for n in 0..50_000 {
            assert!(seen.insert(t.fresh(n).into_key()), "fresh {n}");
        }
        for n in 0..50_000 {
            assert!(seen.insert(t.background(n).into_key()), "background {n}");
        }
        let a: Vec<_> = { let mut s = Sequence::new(&t, 3, 0); (0..100).map(|_| s.next_packet()).collect() };
        let b: Vec<_> = { let mut s = Sequence::new(&t, 3, 0); (0..100).map(|_| s.next_packet()).collect() };
        assert_eq!(a, b);
    }

    impl Tuple {
        fn into_key(self) -> (u8, Ipv4Addr, u16, Ipv4Addr, u16) {
            (self.proto, self.caddr, self.cport, self.vaddr, self.vport)
        }
    }
}
