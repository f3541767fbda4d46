//! The mbuf pool running dry under overload, in this process (EAL `-l 0`, one `net_ring`
//! port).
//!
//! Frames are injected from the director's own pool, as a NIC refills its RX descriptors from
//! the port's pool, and the test stops reading the TX ring: the wire is congested, every
//! forwarded frame stays queued and holds its mbuf, and the pool (2,047 mbufs) runs dry. Then:
//! - the "NIC" cannot take more frames (its allocations fail: what a PMD counts as
//!   `rx_nombuf`), and the director's own frames (an ARP probe for a new real server) are
//!   dropped and counted (`no_mbuf` in `lbadm link show`), which also shows the pool in use;
//! - once the wire drains, every frame accepted before was forwarded (nothing lost that was
//!   taken in), the pool's in-use count returns to its baseline (no leak), forwarding
//!   resumes, and the new server gets resolved by a later probe.
//!
//! EAL can be initialised once per process, so this file holds a single test.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use control::proto::{LinkInfo, Op, Reply};
use dataplane::wire::arp::op;
use dataplane::wire::{Frame, MacAddr, TcpFlags};
use tests::ring::{eal, ipv4, is_arp, Rig};

const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xc1]);
const RS1: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(198, 51, 100, 11), MacAddr([0x02, 0, 0, 0, 0, 0x11]));
const RS2: (Ipv4Addr, MacAddr) = (Ipv4Addr::new(198, 51, 100, 12), MacAddr([0x02, 0, 0, 0, 0, 0x12]));
const DIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
const CIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);
const POOL: u32 = 2047;

fn link(rig: &Rig) -> LinkInfo {
    let Reply::Links(mut l) = rig.ctl(Op::LinkShow) else { panic!("link listing") };
    l.remove(0)
}

fn counter(l: &LinkInfo, name: &str) -> u64 {
    l.drops.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c)
}

fn to_rs1(f: &[u8]) -> bool {
    f[0..6] == RS1.1 .0 && ipv4(f).is_some_and(|ip| ip.dst() == VIP)
}

#[test]
fn a_dry_mbuf_pool_drops_and_counts_then_recovers_without_leak() {
    let rig = Rig::start_with(eal("0"), 1, 4096, POOL, true);
    let port_mac = rig.port_mac;
    rig.addr(DIP, 24);
    rig.addr(VIP, 32);
    rig.ipvsadm("-A -t 198.51.100.100:80 -s rr");
    rig.ipvsadm("-a -t 198.51.100.100:80 -r 198.51.100.11:80 -g -w 1");
    rig.resolve(DIP, &[RS1]);
    let pkt = |flags: TcpFlags, payload: &[u8]| {
        Frame::tcp().src_mac(CLIENT_MAC).dst_mac(port_mac).src(CIP, 40000).dst(VIP, 80).flags(flags).payload(payload).build()
    };
    rig.inject(0, &pkt(TcpFlags::SYN, b""));
    rig.inject(0, &pkt(TcpFlags::ACK, b""));
    assert_eq!(rig.collect(2, to_rs1).len(), 2, "connection established");
    std::thread::sleep(Duration::from_millis(200));
    rig.drain();
    let base = link(&rig);
    assert!(base.mbufs_total >= u64::from(POOL), "pool size reported: {base:?}");
    let baseline = base.mbufs_in_use;
    println!("pool {} mbufs, {} in use at rest", base.mbufs_total, baseline);

    // Overload: the wire stops taking frames (the TX ring is not read); inject until the
    // pool is dry.
    let data = pkt(TcpFlags::ACK | TcpFlags::PSH, &[0x5a; 512]);
    let mut accepted = 0u64;
    let mut refused = 0u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused < 100 && Instant::now() < deadline {
        if rig.try_inject(0, &data) {
            accepted += 1;
        } else {
            refused += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(refused >= 100, "the pool never ran dry ({accepted} frames accepted)");
    assert!(accepted <= u64::from(POOL), "{accepted} frames from a pool of {POOL}");
    // The director needs an mbuf of its own (ARP probe for a new server): dropped, counted.
    rig.ipvsadm("-a -t 198.51.100.100:80 -r 198.51.100.12:80 -g -w 1");
    let deadline = Instant::now() + Duration::from_secs(10);
    let dry = loop {
        let l = link(&rig);
        if counter(&l, "no_mbuf") > 0 {
            break l;
        }
        assert!(Instant::now() < deadline, "no no_mbuf drop counted: {l:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "dry: {accepted} frames accepted, {refused} NIC allocations refused, in use {} of {}, no_mbuf {}",
        dry.mbufs_in_use,
        dry.mbufs_total,
        counter(&dry, "no_mbuf")
    );
    assert!(dry.mbufs_in_use + 300 >= dry.mbufs_total, "the pool is dry: {dry:?}");

    // The wire drains: everything accepted was forwarded, nothing leaked.
    let out = rig.collect(accepted as usize, to_rs1);
    assert_eq!(out.len() as u64, accepted, "frames taken in before the pool ran dry were all forwarded");
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        rig.drain();
        let l = link(&rig);
        if l.mbufs_in_use <= baseline + 32 {
            break l;
        }
        assert!(Instant::now() < deadline, "mbufs in use stay above the baseline {baseline}: {l:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("recovered: in use {} (baseline {baseline})", after.mbufs_in_use);
    // Forwarding resumes, and the new server is resolved by a later probe.
    rig.inject(0, &data);
    assert_eq!(rig.collect(1, to_rs1).len(), 1, "forwarding resumes");
    rig.expect("a new ARP probe for the added server", |f| is_arp(f, op::REQUEST, DIP, RS2.0));
    rig.inject(0, &Frame::arp_reply(RS2.1, RS2.0, port_mac, DIP).build());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let Reply::Neighs(n) = rig.ctl(Op::NeighShow) else { panic!("neighbour listing") };
        if n.iter().any(|e| e.addr == RS2.0 && e.state == "REACHABLE") {
            break;
        }
        assert!(Instant::now() < deadline, "the added server never resolved: {n:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
