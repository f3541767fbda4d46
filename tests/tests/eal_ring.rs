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
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use control::proto::{client, Op, Reply, Request};
use dataplane::director::{Director, DirectorOptions};
use dataplane::dpdk::{port_from_rings, Eal, MbufBatch, Mempool, Ring};
use dataplane::wire::arp::{op, ArpPacket};
use dataplane::wire::icmp::{msg_type, IcmpPacket};
use dataplane::wire::{Frame, Ipv4Packet, MacAddr, TcpFlags, TcpPacket};

const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xc1]);
const RS_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
const DIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);
const RIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);

static EAL: OnceLock<Eal> = OnceLock::new();

fn eal() -> &'static Eal {
    EAL.get_or_init(|| {
        let prefix = format!("ealring{}", std::process::id());
        let args = [
            "eal_ring", "-l", "0", "--no-pci", "--no-huge", "-m", "256", "--no-shconf", "--file-prefix", &prefix,
            "--log-level", "3",
        ];
        Eal::init(&args).expect("EAL init")
    })
}

struct Rig {
    rx: Ring,
    tx: Ring,
    pool: Mempool,
    socket: PathBuf,
}

impl Rig {
    fn inject(&self, frame: &[u8]) {
        let mut m = self.pool.alloc().expect("mbuf");
        m.append(frame.len()).expect("room").copy_from_slice(frame);
        let mut b = MbufBatch::<1>::new();
        b.push(m).expect("batch");
        assert_eq!(self.rx.enqueue(&mut b), 1);
    }

    /// Next frame the director transmits that satisfies `want` (others are skipped), within
    /// a bounded time.
    fn expect(&self, what: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let mut b = MbufBatch::<32>::new();
            if self.tx.dequeue(&mut b) == 0 {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            for m in b.drain() {
                let f = m.data().to_vec();
                if want(&f) {
                    return f;
                }
                seen.push(f.len());
            }
        }
        panic!("no {what} within 10 s (saw {} other frames: {seen:?})", seen.len());
    }

    fn ctl(&self, op: Op) -> Reply {
        let resp = client::request_with_timeout(&self.socket, &Request { v: 1, op }, Duration::from_secs(10))
            .expect("control socket");
        resp.result.unwrap_or_else(|e| panic!("control request refused: {e:?}"))
    }

    fn ipvsadm(&self, args: &str) -> Reply {
        let argv: Vec<String> = args.split_whitespace().map(String::from).collect();
        let cmd = control::ipvsadm::parse(&argv).expect("ipvsadm syntax");
        self.ctl(Op::Ipvs(cmd))
    }
}

fn is_arp(f: &[u8], opcode: u16, spa: Ipv4Addr, tpa: Ipv4Addr) -> bool {
    f.len() >= 42
        && f[12..14] == [0x08, 0x06]
        && ArpPacket::new_checked(&f[14..]).is_ok_and(|a| a.operation() == opcode && a.spa() == spa && a.tpa() == tpa)
}

fn ipv4(f: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    (f.len() > 14 && f[12..14] == [0x08, 0x00]).then(|| Ipv4Packet::new_checked(&f[14..]).ok()).flatten()
}

#[test]
fn director_on_ring_ports_resolves_answers_and_forwards_by_dr() {
    let eal = eal();
    let rx = Ring::new(eal, "t_rx", 1024, true, true).unwrap();
    let tx = Ring::new(eal, "t_tx", 1024, true, true).unwrap();
    let port = port_from_rings(eal, "t_ring", &[&rx], &[&tx]).unwrap();
    // The ring PMD's MAC (all zeros) cannot be changed; frames are addressed to it.
    let port_mac = MacAddr(port.mac());
    let pool = Mempool::new(eal, "t_pool", 1023, 0, Mempool::default_data_room(), 0, true).unwrap();
    let socket = std::env::temp_dir().join(format!("eal-ring-{}.sock", std::process::id()));
    let d = Director::start(
        eal,
        DirectorOptions {
            socket: socket.clone(),
            conn_capacity: 4096,
            max_servers: 64,
            mbufs: 2047,
            descriptors: 256,
            no_huge: true,
            idle_sleep_us: 0,
        },
    )
    .expect("director start");
    assert_eq!(d.ports().len(), 1);
    let shared = d.shared().clone();
    let runner = std::thread::spawn(move || d.run_until_stopped(eal));
    let rig = Rig { rx, tx, pool, socket };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rig.socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }

    // Addresses: each is announced by gratuitous ARP.
    rig.ctl(Op::AddrAdd { addr: DIP, prefix_len: 24, dev: "dpdk0".into() });
    rig.expect("gratuitous ARP for the director address", |f| is_arp(f, op::REQUEST, DIP, DIP) && f[0..6] == [0xff; 6]);
    rig.ctl(Op::AddrAdd { addr: VIP, prefix_len: 32, dev: "dpdk0".into() });
    rig.expect("gratuitous ARP for the VIP", |f| is_arp(f, op::REQUEST, VIP, VIP));

    // A service: the director asks who has the real server, from its own address.
    rig.ipvsadm("-A -t 198.51.100.100:80 -s rr");
    rig.ipvsadm("-a -t 198.51.100.100:80 -r 198.51.100.11:80 -g -w 1");
    let probe = rig.expect("ARP request for the real server", |f| is_arp(f, op::REQUEST, DIP, RIP));
    assert_eq!(&probe[6..12], &port_mac.0);
    rig.inject(&Frame::arp_reply(RS_MAC, RIP, port_mac, DIP).build());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let Reply::Neighs(n) = rig.ctl(Op::NeighShow) else { panic!("neighbour listing") };
        if n.iter().any(|e| e.addr == RIP && e.state == "REACHABLE" && e.mac.as_deref() == Some("02:00:00:00:00:11")) {
            break;
        }
        assert!(Instant::now() < deadline, "real server never became REACHABLE: {n:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The snapshot with the resolved MAC is published right after the table changes.
    std::thread::sleep(Duration::from_millis(300));

    // ARP request for the VIP from the client: answered with the port's MAC.
    rig.inject(&Frame::arp_request(CLIENT_MAC, CIP, VIP).build());
    let r = rig.expect("ARP reply for the VIP", |f| is_arp(f, op::REPLY, VIP, CIP));
    assert_eq!((&r[0..6], &r[6..12]), (&CLIENT_MAC.0[..], &port_mac.0[..]));
    assert_eq!(ArpPacket::new_checked(&r[14..]).unwrap().sha(), port_mac);

    // A SYN for the VIP: out by DR with only the Ethernet header and TTL changed.
    let syn = Frame::tcp().src_mac(CLIENT_MAC).dst_mac(port_mac).src(CIP, 40000).dst(VIP, 80)
        .flags(TcpFlags::SYN).seq(1234).ttl(64).payload(b"x").build();
    rig.inject(&syn);
    let out = rig.expect("DR-forwarded SYN", |f| ipv4(f).is_some_and(|ip| ip.protocol() == 6 && ip.dst() == VIP));
    assert_eq!(&out[0..6], &RS_MAC.0, "destination MAC = real server");
    assert_eq!(&out[6..12], &port_mac.0, "source MAC = egress port");
    let ip = ipv4(&out).unwrap();
    assert_eq!(ip.ttl(), 63);
    assert!(ip.verify_checksum());
    assert_eq!((ip.src(), ip.dst()), (CIP, VIP), "addresses untouched");
    assert_eq!(&out[34..], &syn[34..], "TCP header and payload untouched");

    // ICMP echo to the VIP is answered by the director.
    rig.inject(&Frame::icmp_echo(7, 1).src_mac(CLIENT_MAC).dst_mac(port_mac).src_ip(CIP).dst_ip(VIP).payload(b"hi").build());
    let e = rig.expect("echo reply", |f| ipv4(f).is_some_and(|ip| ip.protocol() == 1 && ip.dst() == CIP));
    let ip = ipv4(&e).unwrap();
    let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.echo_ident()), (msg_type::ECHO_REPLY, 7));
    assert!(icmp.verify_checksum());

    // An ACK nobody opened: RST from the VIP (the frame is replaced by a generated one).
    rig.inject(&Frame::tcp().src_mac(CLIENT_MAC).dst_mac(port_mac).src(CIP, 40001).dst(VIP, 80)
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

    shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    runner.join().expect("director thread");
    assert!(!rig.socket.exists(), "socket removed on stop");
}
