//! The engine target: one worker's [`Engine`] (a 64-entry table, so that full tables,
//! eviction and expiry are reached quickly) on a fixed configuration with two ports, plain,
//! persistent, port-0 and fwmark services, and servers that are resolved, unresolved and
//! off-link; the input is a program of frames run in bursts exactly as the worker runs them
//! (stage 1 `prepare` over the burst, stage 2 `prefetch_entry`, stage 3 `process_prepared`
//! in order), with the clock advancing and expiry between bursts.
//!
//! Input: byte 0 picks a configuration variant (sysctls: `sloppy_tcp`, `expire_nodest_conn`,
//! `conn_reuse_mode`, `secure_tcp`, `drop_entry`, `drop_packet`, `expire_quiescent_template`,
//! a server at weight 0). Then records, each a control byte `c` — bit 0 the receiving port,
//! bits 1-3 ticks to advance, bit 4 ends the burst after this frame, bit 5 (with bit 4) turns
//! the kernel leg on or off in a new snapshot after the burst, bit 7 selects the frame
//! format — followed by either 10 bytes describing a well-formed frame (protocol, TCP flags,
//! client, ports, VIP, TTL, payload, then an optional one-byte corruption; see
//! [`structured`]), or a length byte and that many raw bytes.
//!
//! Invariants checked for every frame:
//! - nothing panics (the engine never panics on any input);
//! - the counters move exactly as the verdict says: one `rx` on the receiving port; a
//!   forward counts one `forwarded` on the egress port; a reply one `replied`; a drop one
//!   `dropped` and one drop of its reason; a generated reply (`Emit`) one `dropped`, one
//!   `replied` and one drop of its reason; a frame for the host (kernel leg) one `to_host`
//!   and is unchanged, an answered ARP request with a copy for the host one `replied` and
//!   one `to_host`; nothing else changes the drop counters (but `host_policed` when the
//!   host's copy of an answered ARP request is over the leg's cap); every drop reason's
//!   count is the sum of its per-port counts;
//! - a forwarded frame differs from the received one only in its Ethernet addresses (the
//!   destination a real server's MAC, the source the egress port's), the TTL (one less) and
//!   the IPv4 header checksum (valid);
//! - an in-place reply goes back to the sender from the receiving port's MAC; a generated
//!   reply fits the scratch buffer and goes back to the sender;
//! - after every burst, the per-server ActiveConn / InActConn / PersistConn counters equal
//!   the connection table's entries by state.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use control::model::{AddrConfig, Config, ConfigCommand, Protocol, ServerSpec, ServiceKey, ServiceSpec};
use control::MarkRule;
use crossbeam::queue::ArrayQueue;
use dataplane::conn::{F_INACTIVE, F_TEMPLATE};
use dataplane::counters::DropReason;
use dataplane::director::{compile, TICKS_PER_SEC};
use dataplane::engine::{Engine, EngineConfig, Prep, Verdict, SCRATCH_LEN};
use dataplane::neigh::{NeighParams, NeighTable};
use dataplane::snapshot::{PortInfo, Snapshot};
use dataplane::wire::{Frame, MacAddr, TcpFlags};

/// Frames processed by this process (for the executions report).
static FRAMES: AtomicU64 = AtomicU64::new(0);

/// Frames run through the engine so far in this process.
pub fn frames() -> u64 {
    FRAMES.load(Ordering::Relaxed)
}

const PORT_MACS: [MacAddr; 2] = [MacAddr([0x02, 0xd0, 0, 0, 0, 0x10]), MacAddr([0x02, 0xd0, 0, 0, 0, 0x11])];
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0xc1, 0, 0, 0, 0x01]);
const DIP0: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const DIP1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const VIPS: [Ipv4Addr; 3] = [Ipv4Addr::new(198, 51, 100, 100), Ipv4Addr::new(198, 51, 100, 101), Ipv4Addr::new(198, 51, 100, 102)];
/// Real servers: six resolved on dpdk0, one unresolved, one off-link, one on dpdk1.
const SERVERS: [Ipv4Addr; 9] = [
    Ipv4Addr::new(198, 51, 100, 11),
    Ipv4Addr::new(198, 51, 100, 12),
    Ipv4Addr::new(198, 51, 100, 13),
    Ipv4Addr::new(198, 51, 100, 14),
    Ipv4Addr::new(198, 51, 100, 15),
    Ipv4Addr::new(198, 51, 100, 16),
    Ipv4Addr::new(198, 51, 100, 17),
    Ipv4Addr::new(192, 0, 2, 50),
    Ipv4Addr::new(203, 0, 113, 11),
];
/// Servers whose MAC the neighbour table knows (index into SERVERS).
const RESOLVED: [usize; 7] = [0, 1, 2, 3, 4, 5, 8];
const CAPACITY: usize = 64;

fn server_mac(i: usize) -> MacAddr {
    MacAddr([0x02, 0x5e, 0, 0, 0, i as u8 + 1])
}

/// The configuration of variant `v` (see the module documentation).
fn config(v: u8) -> Config {
    let mut c = Config::new(vec!["dpdk0".into(), "dpdk1".into()], 64);
    let mut ok = |cmd: ConfigCommand| {
        if let Err(e) = c.apply(&cmd) {
            panic!("fuzz configuration: {cmd:?}: {e}");
        }
    };
    for (addr, prefix_len, dev) in [(DIP0, 24, "dpdk0"), (DIP1, 24, "dpdk1"), (VIPS[0], 32, "dpdk0"), (VIPS[1], 32, "dpdk0"), (VIPS[2], 32, "dpdk0")] {
        ok(ConfigCommand::AddAddr(AddrConfig { addr, prefix_len, dev: dev.into() }));
    }
    let mut rule = MarkRule::new(VIPS[2], 32, 10);
    rule.proto = Some(Protocol::Tcp);
    rule.dport = Some((8000, 8100));
    ok(ConfigCommand::AddMark(rule));
    let tcp = |addr, port| ServiceKey::Addr { proto: Protocol::Tcp, addr, port };
    let services: [(ServiceKey, &str, Option<u32>, Ipv4Addr, &[usize]); 5] = [
        (tcp(VIPS[0], 80), "rr", None, Ipv4Addr::BROADCAST, &[0, 1, 6, 7]),
        (tcp(VIPS[0], 443), "wlc", Some(300), Ipv4Addr::new(255, 255, 255, 0), &[2, 3]),
        (ServiceKey::Addr { proto: Protocol::Udp, addr: VIPS[0], port: 53 }, "rr", None, Ipv4Addr::BROADCAST, &[4, 8]),
        (tcp(VIPS[1], 0), "sh", Some(60), Ipv4Addr::BROADCAST, &[0, 5]),
        (ServiceKey::Fwmark(10), "wlc", Some(30), Ipv4Addr::BROADCAST, &[1, 2]),
    ];
    for (key, sched, persistent, netmask, servers) in services {
        let mut s = ServiceSpec::new(key);
        s.scheduler = sched.into();
        s.persistent = persistent;
        s.netmask = netmask;
        ok(ConfigCommand::AddService(s));
        for &i in servers {
            let mut spec = ServerSpec::new(SERVERS[i], key.port());
            // Variant bit 7: the first server of every service at weight 0 (quiesced).
            if v & 0x80 != 0 && i == servers[0] {
                spec.weight = 0;
            }
            ok(ConfigCommand::AddServer { service: key, server: spec });
        }
    }
    let sys = |name: &str, value: i64| ConfigCommand::SetSysctl { name: name.into(), value };
    ok(sys("sloppy_tcp", i64::from(v & 1)));
    ok(sys("expire_nodest_conn", i64::from(v >> 1 & 1)));
    ok(sys("conn_reuse_mode", i64::from(v >> 2 & 3)));
    ok(sys("secure_tcp", if v & 0x10 != 0 { 3 } else { 0 }));
    ok(sys("drop_entry", if v & 0x20 != 0 { 3 } else { 0 }));
    ok(sys("drop_packet", if v & 0x60 == 0x60 { 3 } else { 0 }));
    ok(sys("am_droprate", 3));
    ok(sys("expire_quiescent_template", i64::from(v >> 6 & 1)));
    c
}

/// The compiled snapshot of variant `v` (compiled once per process and variant).
fn snapshot(v: u8, leg: bool) -> Arc<Snapshot> {
    static SNAPS: [OnceLock<Arc<Snapshot>>; 512] = [const { OnceLock::new() }; 512];
    let s = SNAPS[usize::from(v) | usize::from(leg) << 8].get_or_init(|| {
        let mut neigh = NeighTable::new(NeighParams::default());
        let now = Instant::now();
        for i in RESOLVED {
            let port = if i == 8 { 1 } else { 0 };
            neigh.learn(SERVERS[i], server_mac(i), port, true, now);
        }
        let ports: Vec<PortInfo> = (0..2).map(|i| PortInfo { id: i, mac: PORT_MACS[i as usize], mtu: 1500, addrs: Vec::new() }).collect();
        let mut s = compile(&config(v), &neigh, &ports).expect("fuzz configuration compiles");
        s.host_leg = leg;
        Arc::new(s)
    });
    Arc::clone(s)
}

/// Reads the input.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        if self.data.len() < n {
            return None;
        }
        let (a, rest) = self.data.split_at(n);
        self.data = rest;
        Some(a)
    }
}

/// A well-formed frame from 10 description bytes: `[kind, tcp flags, client, cport, vip and
/// MACs, dport, ttl, payload length, corruption offset, corruption value]`.
fn structured(d: &[u8], port: u16) -> Vec<u8> {
    let (kind, flags, client, cport, sel, dsel, ttl, plen, coff, cval) = (d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9]);
    // Clients: 16 addresses in one /24 and 16 in another (persistence netmask /24).
    let caddr = Ipv4Addr::new(10, 1, (client >> 4) & 1, client & 0x0f);
    let cport = 1024 + u16::from(cport & 0x3f);
    let dst_ip = match sel & 7 {
        0..=2 => VIPS[0],
        3 => VIPS[1],
        4 => VIPS[2],
        5 => DIP0,
        6 => DIP1,
        _ => Ipv4Addr::new(198, 51, 100, 200),
    };
    let dst_mac = match sel >> 3 & 3 {
        0 | 1 => PORT_MACS[port as usize & 1],
        2 => MacAddr::BROADCAST,
        _ => MacAddr([0x02, 0, 0, 0, 0, 0x99]),
    };
    let dport = match dsel & 7 {
        0..=2 => 80,
        3 => 443,
        4 => 53,
        5 => 8000 + u16::from(dsel >> 3),
        6 => u16::from(dsel),
        _ => 9999,
    };
    let payload = vec![0xa5u8; usize::from(plen & 0x7f)];
    let f = match kind % 12 {
        0..=3 => Frame::tcp().flags(TcpFlags(flags)).src(caddr, cport).dst(dst_ip, dport).seq(u32::from(client) << 8).ack(u32::from(flags) << 4),
        4 | 5 => Frame::udp().src(caddr, cport).dst(dst_ip, dport).udp_checksum(kind & 1 == 0),
        6 => Frame::icmp_echo(u16::from(client), u16::from(cport)).src_ip(caddr).dst_ip(dst_ip),
        7 => {
            // An ICMP error about a server's reply (VIP:dport → client:cport).
            let inner = Frame::tcp().src(dst_ip, dport).dst(caddr, cport).flags(TcpFlags(flags)).build_ipv4();
            let ty = [3u8, 4, 11, 12][usize::from(flags & 3)];
            Frame::icmp_error(ty, flags >> 2 & 0x0f, &inner).src_ip(caddr).dst_ip(dst_ip)
        }
        8 => Frame::arp_request(CLIENT_MAC, caddr, dst_ip),
        9 => Frame::arp_reply(server_mac(usize::from(client % 9)), SERVERS[usize::from(client % 9)], PORT_MACS[port as usize & 1], dst_ip),
        10 => Frame::raw_ip(flags).src_ip(caddr).dst_ip(dst_ip),
        _ => Frame::tcp().flags(TcpFlags(flags)).src(caddr, cport).dst(dst_ip, dport).fragment(flags & 1 != 0, u16::from(cval)),
    };
    let f = f.src_mac(CLIENT_MAC).dst_mac(dst_mac).ttl(ttl).payload(&payload).df(plen & 0x80 == 0);
    let f = if sel & 0x20 != 0 { f.vlan(Some(u16::from(dsel))) } else { f };
    let f = if sel & 0x40 != 0 { f.ip_options(&[1, 1, 1, 0]) } else { f };
    let mut frame = f.build();
    if coff != 0 && !frame.is_empty() {
        let i = usize::from(coff) % frame.len();
        frame[i] ^= cval;
    }
    frame
}

/// The counters an invariant looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    ports: [[u64; 5]; 2],
    drops: [u64; DropReason::COUNT],
}

fn counts(e: &Engine) -> Counts {
    let c = e.counters();
    let mut ports = [[0; 5]; 2];
    for (p, out) in c.ports.iter().zip(ports.iter_mut()) {
        *out = [p.rx, p.forwarded, p.replied, p.dropped, p.to_host];
    }
    // Every drop is counted on a port as well (`lbadm link show`, metrics).
    for (r, n) in c.drops.iter().enumerate() {
        let per_port: u64 = c.port_drops.iter().map(|d| d[r]).sum();
        assert_eq!(per_port, *n, "drop reason {r}: per-port counts do not add up");
    }
    Counts { ports, drops: c.drops }
}

/// Valid IPv4 header checksum of the header at `h`.
fn header_ok(h: &[u8]) -> bool {
    let mut s = 0u32;
    for w in h.chunks(2) {
        s += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// Checks one frame's verdict against the frame and the counters (see the module docs).
fn check(e: &Engine, v: Verdict, port: u16, before: &Counts, after: &Counts, orig: &[u8], out: &[u8]) {
    let p = port as usize;
    let mut want = *before;
    want.ports[p][0] += 1;
    let policed = DropReason::HostPoliced as usize;
    if e.snapshot().host_leg && orig.get(12..14) == Some(&[0x08, 0x06]) && matches!(v, Verdict::Reply) && after.drops[policed] == before.drops[policed] + 1 {
        // An ARP request answered while the copy for the host was over the leg's rate cap.
        want.drops[policed] += 1;
    }
    match v {
        Verdict::Forward(o) => {
            let o = o as usize;
            assert!(o < 2, "forward to unknown port {o}");
            want.ports[o][1] += 1;
            assert_eq!(orig.len(), out.len(), "a forwarded frame keeps its length");
            assert!(RESOLVED.iter().any(|&i| out[..6] == server_mac(i).0), "forwarded to a MAC that is no server's: {:02x?}", &out[..6]);
            assert_eq!(out[6..12], PORT_MACS[o].0, "source MAC is the egress port's");
            // Untagged IPv4 (tagged frames are dropped): TTL at 22, checksum at 24..26.
            for i in 12..orig.len() {
                if i == 22 || i == 24 || i == 25 {
                    continue;
                }
                assert_eq!(orig[i], out[i], "forwarded frame changed at byte {i}");
            }
            assert_eq!(out[22], orig[22].wrapping_sub(1), "TTL decremented by one");
            assert!(orig[22] > 1, "forwarded a frame whose TTL expires");
            let ihl = usize::from(out[14] & 0x0f) * 4;
            assert!(header_ok(&out[14..14 + ihl]), "forwarded with a bad header checksum");
        }
        Verdict::Reply => {
            want.ports[p][2] += 1;
            // ARP replies go to the requester's hardware address, echo replies to the
            // frame's source.
            let to = if orig[12..14] == [0x08, 0x06] { &orig[22..28] } else { &orig[6..12] };
            assert_eq!(&out[..6], to, "a reply goes back to the sender");
            assert_eq!(out[6..12], PORT_MACS[p].0, "a reply comes from the receiving port");
        }
        Verdict::Emit { len, reason } => {
            want.ports[p][3] += 1;
            want.ports[p][2] += 1;
            want.drops[reason as usize] += 1;
            let len = usize::from(len);
            assert!((14..=SCRATCH_LEN).contains(&len), "generated reply of {len} bytes");
            let s = e.scratch();
            assert_eq!(s[..6], orig[6..12], "a generated reply goes back to the sender");
            assert_eq!(s[6..12], PORT_MACS[p].0, "a generated reply comes from the receiving port");
        }
        Verdict::Drop(r) => {
            want.ports[p][3] += 1;
            want.drops[r as usize] += 1;
        }
        Verdict::Consumed => {}
        Verdict::Host => {
            assert!(e.snapshot().host_leg, "a frame for the host without the kernel leg");
            want.ports[p][4] += 1;
            assert_eq!(orig, out, "a frame for the host is handed over unchanged");
        }
        Verdict::ReplyAndHost { len } => {
            assert!(e.snapshot().host_leg, "a copy for the host without the kernel leg");
            want.ports[p][2] += 1;
            want.ports[p][4] += 1;
            assert_eq!(&e.scratch()[..usize::from(len)], orig, "the host's copy is the frame as received");
            assert_eq!(&out[..6], &orig[22..28], "the ARP reply goes to the requester");
            assert_eq!(out[6..12], PORT_MACS[p].0, "a reply comes from the receiving port");
        }
    }
    assert_eq!(*after, want, "counters after {v:?} on port {port}");
}

/// Per-server ActiveConn / InActConn / PersistConn equal the table's entries by state.
fn check_table(e: &Engine) {
    let mut want = [[0u32; 3]; 64];
    for (_, x) in e.conns().iter() {
        let k = if x.flags & F_TEMPLATE != 0 {
            2
        } else if x.flags & F_INACTIVE != 0 {
            1
        } else {
            0
        };
        if let Some(w) = want.get_mut(x.server as usize) {
            w[k] += 1;
        }
    }
    for (slot, (c, w)) in e.counters().servers.iter().zip(want.iter()).enumerate() {
        assert_eq!([c.active, c.inactive, c.persist], *w, "server slot {slot}: counters vs table");
    }
}

/// The target (see the module documentation).
pub fn run(data: &[u8]) {
    let mut input = Input { data };
    let Some(variant) = input.byte() else { return };
    let mut e = Engine::new(
        EngineConfig { conn_capacity: CAPACITY, max_servers: 64, ports: 2, ticks_per_sec: TICKS_PER_SEC, seed: 0x0f0e, host_pps: 2000 },
        Arc::new(ArrayQueue::new(64)),
    )
    .expect("engine");
    let mut leg = false;
    e.set_snapshot(snapshot(variant, leg));
    let mut now = 1u32;
    let mut burst: Vec<(Vec<u8>, u16)> = Vec::with_capacity(32);
    loop {
        let Some(c) = input.byte() else { break };
        let port = u16::from(c & 1);
        let frame = if c & 0x80 == 0 {
            let Some(d) = input.bytes(10) else { break };
            structured(d, port)
        } else {
            let Some(n) = input.byte() else { break };
            let Some(d) = input.bytes(usize::from(n)) else { break };
            d.to_vec()
        };
        burst.push((frame, port));
        if c & 0x10 != 0 || burst.len() == 32 {
            run_burst(&mut e, &mut burst, now);
            if c & 0x20 != 0 {
                // A new snapshot between bursts, as the workers pick one up: the kernel leg
                // turned on or off.
                leg = !leg;
                e.set_snapshot(snapshot(variant, leg));
            }
            now = now.wrapping_add(u32::from(c >> 1 & 7) * if c & 0x40 != 0 { 64 } else { 1 });
            e.expire(now, 64);
        }
    }
    run_burst(&mut e, &mut burst, now);
}

/// Runs a burst as `worker::process_burst` does and checks every frame.
fn run_burst(e: &mut Engine, burst: &mut Vec<(Vec<u8>, u16)>, now: u32) {
    let mut preps = [Prep::default(); 32];
    for ((f, port), p) in burst.iter().zip(preps.iter_mut()) {
        e.prepare(f, *port, p);
    }
    for p in preps.iter_mut().take(burst.len()) {
        e.prefetch_entry(p);
    }
    for ((f, port), p) in burst.iter_mut().zip(preps.iter()) {
        let orig = f.clone();
        let before = counts(e);
        let v = e.process_prepared(f, *port, now, p);
        let after = counts(e);
        check(e, v, *port, &before, &after, &orig, f);
    }
    FRAMES.fetch_add(burst.len() as u64, Ordering::Relaxed);
    burst.clear();
    check_table(e);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A structured record: control byte then the 10 description bytes.
    fn rec(c: u8, d: [u8; 10]) -> Vec<u8> {
        let mut v = vec![c];
        v.extend_from_slice(&d);
        v
    }

    #[test]
    fn a_handshake_is_forwarded_and_checked() {
        // Variant 0; SYN, ACK, data to VIP:80; a ping to the VIP; an ARP request for it.
        let mut input = vec![0u8];
        input.extend(rec(0x10, [0, 0x02, 1, 1, 0, 0, 64, 0, 0, 0]));
        input.extend(rec(0x12, [0, 0x10, 1, 1, 0, 0, 64, 10, 0, 0]));
        input.extend(rec(0x10, [0, 0x18, 1, 1, 0, 0, 64, 100, 0, 0]));
        input.extend(rec(0x10, [6, 0, 1, 1, 0, 0, 64, 8, 0, 0]));
        input.extend(rec(0x10, [8, 0, 1, 1, 0x10, 0, 64, 0, 0, 0]));
        run(&input);
        assert!(frames() >= 5);
    }

    #[test]
    fn structured_frames_are_what_they_claim() {
        let syn = structured(&[0, 0x02, 1, 1, 0, 0, 64, 0, 0, 0], 0);
        assert_eq!(&syn[..6], &PORT_MACS[0].0);
        assert_eq!(syn[23], 6);
        assert_eq!(&syn[30..34], &VIPS[0].octets());
        assert!(header_ok(&syn[14..34]));
    }

    #[test]
    #[should_panic(expected = "counters after")]
    fn the_counter_check_catches_a_missing_count() {
        let (mut e, frame) = {
            let mut e = Engine::new(EngineConfig { conn_capacity: 8, max_servers: 64, ports: 2, ticks_per_sec: 16, seed: 1, host_pps: 100 }, Arc::new(ArrayQueue::new(4))).unwrap();
            e.set_snapshot(snapshot(0, false));
            (e, structured(&[0, 0x02, 1, 1, 0, 0, 64, 0, 0, 0], 0))
        };
        let before = counts(&e);
        let mut f = frame.clone();
        let v = e.process(&mut f, 0, 1);
        // Pretend the rx count did not move.
        let mut after = counts(&e);
        after.ports[0][0] -= 1;
        check(&e, v, 0, &before, &after, &frame, &f);
    }

    #[test]
    #[should_panic(expected = "forwarded frame changed")]
    fn the_rewrite_check_catches_a_changed_byte() {
        let mut e = Engine::new(EngineConfig { conn_capacity: 8, max_servers: 64, ports: 2, ticks_per_sec: 16, seed: 1, host_pps: 100 }, Arc::new(ArrayQueue::new(4))).unwrap();
        e.set_snapshot(snapshot(0, false));
        // VIP:443: both of its servers are resolved.
        let frame = structured(&[0, 0x02, 1, 1, 0, 3, 64, 0, 0, 0], 0);
        let before = counts(&e);
        let mut f = frame.clone();
        let v = e.process(&mut f, 0, 1);
        assert!(matches!(v, Verdict::Forward(0)), "{v:?}");
        let after = counts(&e);
        f[40] ^= 1;
        check(&e, v, 0, &before, &after, &frame, &f);
    }
}
