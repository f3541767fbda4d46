//! Two workers on one port with two queues, in this process (EAL `-l 0-1`).
//!
//! Packets of one client are injected alternately into both RX queues, the way a PMD that
//! spreads flows by 4-tuple (af_packet fan-out) delivers them, so about half of them arrive at
//! the worker that does not own the client and must be handed off. Checks: persistence holds
//! across workers (PCC: one client's 200 connections over many ports reach one server; a /24
//! with `-M 255.255.255.0` shares one server), hand-offs are counted, and wlc decides on
//! connection counts merged over both workers (6,000 connections to weights 1:2:3 land within
//! 5% of each server's share).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use control::proto::{Op, Reply};
use dataplane::wire::{Frame, MacAddr, TcpFlags};
use tests::ring::{eal, ipv4, Rig};

const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xc1]);
const DIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
const RS: [(Ipv4Addr, MacAddr); 3] = [
    (Ipv4Addr::new(198, 51, 100, 11), MacAddr([2, 0, 0, 0, 0, 0x11])),
    (Ipv4Addr::new(198, 51, 100, 12), MacAddr([2, 0, 0, 0, 0, 0x12])),
    (Ipv4Addr::new(198, 51, 100, 13), MacAddr([2, 0, 0, 0, 0, 0x13])),
];

fn server_of(f: &[u8]) -> Option<usize> {
    RS.iter().position(|(_, m)| m.0 == f[0..6])
}

fn syn(rig: &Rig, client: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    Frame::tcp().src_mac(CLIENT_MAC).dst_mac(rig.port_mac).src(client, sport).dst(VIP, dport).flags(TcpFlags::SYN).build()
}

fn forwarded(f: &[u8]) -> bool {
    ipv4(f).is_some_and(|ip| ip.dst() == VIP && ip.protocol() == 6) && server_of(f).is_some()
}

/// Hand-offs of both workers, from the link listing's counters.
fn handoffs(rig: &Rig) -> (u64, u64) {
    let Reply::Links(l) = rig.ctl(Op::LinkShow) else { panic!("link listing") };
    let get = |name: &str| l[0].drops.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
    (get("handoff_out"), get("handoff_in"))
}

#[test]
fn two_workers_keep_persistence_hand_off_and_balance_on_merged_counts() {
    let rig = Rig::start(eal("0-1"), 2, 1 << 16);
    rig.addr(DIP, 24);
    rig.addr(VIP, 32);

    // PCC over two workers: one client's 200 connections to many ports, one server.
    rig.ipvsadm("-A -t 198.51.100.100:0 -s rr -p 600");
    for (ip, _) in &RS[..2] {
        rig.ipvsadm(&format!("-a -t 198.51.100.100:0 -r {ip} -g -w 1"));
    }
    rig.resolve(DIP, &RS[..2]);
    let client = Ipv4Addr::new(203, 0, 113, 7);
    for i in 0..200u16 {
        rig.inject((i % 2) as usize, &syn(&rig, client, 10_000 + i, 1 + i * 97 % 60_000));
    }
    let out = rig.collect(200, forwarded);
    assert_eq!(out.len(), 200, "every SYN forwarded");
    let servers: HashMap<usize, usize> = out.iter().fold(HashMap::new(), |mut m, (_, f)| {
        *m.entry(server_of(f).unwrap()).or_default() += 1;
        m
    });
    println!("PCC, one client, 200 connections over 2 workers: {servers:?}");
    assert_eq!(servers.len(), 1, "one client's connections all reach one server");
    let queues: std::collections::HashSet<usize> = out.iter().map(|(q, _)| *q).collect();
    assert_eq!(queues.len(), 1, "all transmitted by the owner worker");
    let (hout, hin) = handoffs(&rig);
    println!("hand-offs: out {hout}, in {hin}");
    assert_eq!(hout, 100, "the half that arrived at the other worker was handed off");
    assert_eq!(hin, 100);

    // Netmask /24: clients of one /24 share a server even though their addresses hash apart.
    rig.ipvsadm("-C");
    rig.ipvsadm("-A -t 198.51.100.100:80 -s rr -p 360 -M 255.255.255.0");
    for (ip, _) in &RS[..2] {
        rig.ipvsadm(&format!("-a -t 198.51.100.100:80 -r {ip}:80 -g -w 1"));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    for host in 1..=40u8 {
        let c = Ipv4Addr::new(203, 0, 113, host);
        rig.inject((host % 2) as usize, &syn(&rig, c, 20_000 + host as u16, 80));
    }
    let out = rig.collect(40, forwarded);
    assert_eq!(out.len(), 40);
    let servers: std::collections::HashSet<usize> = out.iter().map(|(_, f)| server_of(f).unwrap()).collect();
    println!("-M 255.255.255.0, 40 clients of one /24: servers {servers:?}");
    assert_eq!(servers.len(), 1, "one /24, one server");

    // wlc on merged counts: 6,000 connections (SYN only: they stay active for 60 s) from many
    // clients spread over both workers, to weights 1:2:3.
    rig.ipvsadm("-C");
    rig.ipvsadm("-A -t 198.51.100.100:80 -s wlc");
    for (w, (ip, _)) in RS.iter().enumerate() {
        rig.ipvsadm(&format!("-a -t 198.51.100.100:80 -r {ip}:80 -g -w {}", w + 1));
    }
    rig.resolve(DIP, &RS[2..]);
    let total = 6000usize;
    for i in 0..total {
        let c = Ipv4Addr::from(0xcb00_7100u32 + (i as u32 % 250) + 1); // 203.0.113.1..250
        let sport = 30_000 + (i / 250) as u16;
        rig.inject(i % 2, &syn(&rig, c, sport, 80));
    }
    let out = rig.collect(total, forwarded);
    assert_eq!(out.len(), total);
    let mut per = [0usize; 3];
    for (_, f) in &out {
        per[server_of(f).unwrap()] += 1;
    }
    let Reply::Services { services, .. } = rig.ipvsadm("-L -n") else { panic!("listing") };
    let active: Vec<(Ipv4Addr, u64)> = services[0].servers.iter().map(|s| (s.server.addr, s.active)).collect();
    println!("wlc 1:2:3 over 2 workers, {total} connections: forwarded {per:?}, ActiveConn {active:?}");
    for (i, n) in per.iter().enumerate() {
        let share = total * (i + 1) / 6;
        let dev = (*n as f64 - share as f64).abs() / share as f64;
        assert!(dev <= 0.05, "server {} got {n}, share {share} ({:.1}% off)", i + 1, dev * 100.0);
    }

    // rr and wrr over two workers rotate as one sequence, as IPVS's single table does:
    // clients owned by both workers, one SYN at a time, get the kernel's order (list order is
    // newest first: .13, .12, .11). Each worker keeping its own cursor would restart it.
    for (sched, weights, want) in [
        ("rr", [1, 1, 1], [2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0]),
        // wrr: the servers are added one by one and the first has weight 1, so the kernel's
        // dest_changed leaves cw at 1: one pass over all three, then the 3:2:1 cycle.
        ("wrr", [1, 2, 3], [2, 1, 0, 2, 2, 1, 2, 1, 0, 2, 2, 1]),
    ] {
        rig.ipvsadm("-C");
        rig.ipvsadm(&format!("-A -t 198.51.100.100:80 -s {sched}"));
        for (w, (ip, _)) in RS.iter().enumerate() {
            rig.ipvsadm(&format!("-a -t 198.51.100.100:80 -r {ip}:80 -g -w {}", weights[w]));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut got = Vec::new();
        let mut owners = std::collections::HashSet::new();
        for i in 0..want.len() {
            let c = Ipv4Addr::new(192, 0, 2, 1 + i as u8 + if sched == "rr" { 0 } else { 100 });
            rig.inject(i % 2, &syn(&rig, c, 40_000 + i as u16, 80));
            let out = rig.collect(1, forwarded);
            assert_eq!(out.len(), 1, "{sched}: SYN {i} forwarded");
            got.push(server_of(&out[0].1).unwrap());
            owners.insert(out[0].0);
        }
        println!("{sched} {weights:?} over 2 workers: servers {got:?}, scheduled by workers {owners:?}");
        assert_eq!(owners.len(), 2, "{sched}: clients of both workers");
        assert_eq!(got, want, "{sched}: one sequence across workers");
    }
}
