//! EAL-level test of the whole director on DPDK virtual devices, in this process.
//!
//! One `net_ring` port whose RX queue is fed from a ring this test fills and whose TX queue
//! drains into a ring this test reads. The director runs for real (worker loop, housekeeping
//! and control threads, control socket); the test configures it through the socket protocol,
//! answers its ARP probe for the real server, then checks what comes out frame by frame:
//! gratuitous ARP, ARP replies for local addresses, the DR rewrite of a SYN (server MAC, TTL-1,
//! nothing else changed), ICMP echo replies, a TCP RST from the VIP, and the listings.
//!
//! EAL can be initialised once per process, so this file holds a single test.

use std::net::Ipv4Addr;

use control::proto::{Op, Reply};
use dataplane::wire::arp::{op, ArpPacket};
use dataplane::wire::icmp::{msg_type, IcmpPacket};
use dataplane::wire::{Frame, MacAddr, TcpFlags, TcpPacket};
use tests::ring::{eal, ipv4, is_arp, Rig};

const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xc1]);
const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
const DIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);
const RIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);

#[test]
fn director_on_ring_ports_resolves_answers_and_forwards_by_dr() {
    let rig = Rig::start(eal("0"), 1, 4096);
    let port_mac = rig.port_mac;

    // Addresses: each is announced by gratuitous ARP.
    rig.addr(DIP, 24);
    rig.expect("gratuitous ARP for the director address", |f| is_arp(f, op::REQUEST, DIP, DIP) && f[0..6] == [0xff; 6]);
    rig.addr(VIP, 32);
    rig.expect("gratuitous ARP for the VIP", |f| is_arp(f, op::REQUEST, VIP, VIP));

    // A service: the director asks who has the real server, from its own address.
    rig.ipvsadm("-A -t 198.51.100.100:80 -s rr");
    rig.ipvsadm("-a -t 198.51.100.100:80 -r 198.51.100.11:80 -g -w 1");
    rig.resolve(DIP, &[(RIP, RS_MAC)]);
    let Reply::Neighs(n) = rig.ctl(Op::NeighShow) else { panic!("neighbour listing") };
    assert!(n.iter().any(|e| e.addr == RIP && e.mac.as_deref() == Some("02:00:00:00:00:11") && e.dev == "dpdk0"));

    // ARP request for the VIP from the client: answered with the port's MAC.
    rig.inject(0, &Frame::arp_request(CLIENT_MAC, CIP, VIP).build());
    let r = rig.expect("ARP reply for the VIP", |f| is_arp(f, op::REPLY, VIP, CIP));
    assert_eq!((&r[0..6], &r[6..12]), (&CLIENT_MAC.0[..], &port_mac.0[..]));
    assert_eq!(ArpPacket::new_checked(&r[14..]).unwrap().sha(), port_mac);

    // A SYN for the VIP: out by DR with only the Ethernet header and TTL changed.
    let syn = Frame::tcp().src_mac(CLIENT_MAC).dst_mac(port_mac).src(CIP, 40000).dst(VIP, 80)
        .flags(TcpFlags::SYN).seq(1234).ttl(64).payload(b"x").build();
    rig.inject(0, &syn);
    let out = rig.expect("DR-forwarded SYN", |f| ipv4(f).is_some_and(|ip| ip.protocol() == 6 && ip.dst() == VIP));
    assert_eq!(&out[0..6], &RS_MAC.0, "destination MAC = real server");
    assert_eq!(&out[6..12], &port_mac.0, "source MAC = egress port");
    let ip = ipv4(&out).unwrap();
    assert_eq!(ip.ttl(), 63);
    assert!(ip.verify_checksum());
    assert_eq!((ip.src(), ip.dst()), (CIP, VIP), "addresses untouched");
    assert_eq!(&out[34..], &syn[34..], "TCP header and payload untouched");

    // ICMP echo to the VIP is answered by the director.
    rig.inject(0, &Frame::icmp_echo(7, 1).src_mac(CLIENT_MAC).dst_mac(port_mac).src_ip(CIP).dst_ip(VIP).payload(b"hi").build());
    let e = rig.expect("echo reply", |f| ipv4(f).is_some_and(|ip| ip.protocol() == 1 && ip.dst() == CIP));
    let ip = ipv4(&e).unwrap();
    let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.echo_ident()), (msg_type::ECHO_REPLY, 7));
    assert!(icmp.verify_checksum());

    // An ACK nobody opened: RST from the VIP (the frame is replaced by a generated one).
    rig.inject(0, &Frame::tcp().src_mac(CLIENT_MAC).dst_mac(port_mac).src(CIP, 40001).dst(VIP, 80)
        .flags(TcpFlags::ACK).ack(5555).build());
    let rst = rig.expect("RST from the VIP", |f| ipv4(f).is_some_and(|ip| ip.protocol() == 6 && ip.src() == VIP));
    let ip = ipv4(&rst).unwrap();
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(t.rst() && t.verify_checksum(VIP, CIP));
    assert_eq!((t.seq_number(), t.dst_port()), (5555, 40001));

    // Listings: one active connection on the real server, and its entry in -L -c.
    let Reply::Services { services, .. } = rig.ipvsadm("-L -n") else { panic!("service listing") };
    let rs = &services[0].servers[0];
    assert_eq!((rs.server.addr, rs.active, rs.inactive, rs.conns, rs.inpkts), (RIP, 1, 0, 1, 1));
    let Reply::Connections(c) = rig.ipvsadm("-L -n -c") else { panic!("connection listing") };
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].state.as_str(), c[0].cport, c[0].daddr), ("SYN_RECV", 40000, RIP));
    let Reply::Links(l) = rig.ctl(Op::LinkShow) else { panic!("link listing") };
    assert_eq!(l[0].name, "dpdk0");
    assert!(l[0].drops.iter().any(|(n, c)| n == "no_connection" && *c == 1), "{:?}", l[0].drops);

    let socket = rig.socket.clone();
    drop(rig);
    assert!(!socket.exists(), "socket removed on stop");
}
