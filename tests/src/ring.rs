//! An in-process director on `net_ring` ports, for the EAL-level tests.
//!
//! [`Rig::start`] initialises EAL once per process (the caller passes the lcore list), builds
//! one ring port with one RX ring and one TX ring per queue, starts a real `Director` on it
//! (workers, housekeeping and control threads, control socket) and lets the test inject frames
//! into any RX queue and read what the director transmits, with every wait bounded in time.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use control::proto::{client, Op, Reply, Request};
use dataplane::director::{Director, DirectorOptions};
use dataplane::dpdk::{port_from_rings, Eal, MbufBatch, Mempool, Ring};
use dataplane::wire::arp::{op, ArpPacket};
use dataplane::wire::{Frame, Ipv4Packet, MacAddr};
use dataplane::worker::Shared;

static EAL: OnceLock<Eal> = OnceLock::new();

/// EAL for this test process (`lcores` like "0" or "0-1"; only the first call's counts).
pub fn eal(lcores: &str) -> &'static Eal {
    EAL.get_or_init(|| {
        let prefix = format!("ealtest{}", std::process::id());
        let args = [
            "eal_test", "-l", lcores, "--no-pci", "--no-huge", "-m", "512", "--no-shconf", "--file-prefix", &prefix,
            "--log-level", "3",
        ];
        Eal::init(&args).expect("EAL init")
    })
}

/// A running director on one ring port.
pub struct Rig {
    rx: Vec<Ring>,
    tx: Vec<Ring>,
    pool: Arc<Mempool>,
    /// Control socket.
    pub socket: PathBuf,
    /// The port's MAC (the ring PMD's, all zeros).
    pub port_mac: MacAddr,
    shared: Arc<Shared>,
    runner: Option<JoinHandle<()>>,
}

impl Rig {
    /// Starts a director with `queues` RX/TX queue pairs on one ring port (one worker per
    /// EAL lcore: `queues` must equal the lcore count).
    pub fn start(eal: &'static Eal, queues: usize, conn_capacity: usize) -> Rig {
        Self::start_with(eal, queues, conn_capacity, 16383, false)
    }

    /// [`Rig::start`] with a director pool of `mbufs`; with `nic_buffers`, injected frames
    /// are allocated from the director's own pool, as a NIC refills its RX descriptors from
    /// the port's pool (so forwarded frames the test does not drain hold the director's
    /// mbufs, as a congested wire would).
    pub fn start_with(eal: &'static Eal, queues: usize, conn_capacity: usize, mbufs: u32, nic_buffers: bool) -> Rig {
        let rx: Vec<Ring> = (0..queues).map(|q| Ring::new(eal, &format!("t_rx{q}"), 8192, true, false).unwrap()).collect();
        let tx: Vec<Ring> = (0..queues).map(|q| Ring::new(eal, &format!("t_tx{q}"), 8192, false, true).unwrap()).collect();
        let port = port_from_rings(eal, "t_ring", &rx.iter().collect::<Vec<_>>(), &tx.iter().collect::<Vec<_>>()).unwrap();
        let port_mac = MacAddr(port.mac());
        let own = (!nic_buffers).then(|| Arc::new(Mempool::new(eal, "t_pool", 16383, 0, Mempool::default_data_room(), 0, true).unwrap()));
        let socket = std::env::temp_dir().join(format!("eal-test-{}.sock", std::process::id()));
        let d = Director::start(
            eal,
            DirectorOptions {
                socket: socket.clone(),
                conn_capacity,
                max_servers: 64,
                mbufs,
                descriptors: 256,
                no_huge: true,
                idle_sleep_us: 0,
                config: None,
                // In-process on the test machine's own namespace: no host interfaces.
                kernel_if: false,
                ..DirectorOptions::default()
            },
        )
        .expect("director start");
        assert_eq!(d.workers(), queues, "one worker per lcore, one queue per worker");
        let shared = d.shared().clone();
        let pool = own.unwrap_or_else(|| d.pool());
        let runner = std::thread::spawn(move || d.run_until_stopped(eal));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Rig { rx, tx, pool, socket, port_mac, shared, runner: Some(runner) }
    }

    /// Puts a frame on RX queue `q`.
    pub fn inject(&self, q: usize, frame: &[u8]) {
        assert!(self.try_inject(q, frame), "no mbuf for an injected frame");
    }

    /// [`Rig::inject`], or false when the pool has no mbuf left (a NIC's RX refill failing).
    pub fn try_inject(&self, q: usize, frame: &[u8]) -> bool {
        let Some(mut m) = self.pool.alloc() else { return false };
        m.append(frame.len()).expect("room").copy_from_slice(frame);
        let mut b = MbufBatch::<1>::new();
        b.push(m).expect("batch");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.rx[q].enqueue(&mut b) == 0 {
            assert!(Instant::now() < deadline, "RX ring {q} stays full");
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }

    /// Takes every frame transmitted so far on any queue: (queue, bytes).
    pub fn drain(&self) -> Vec<(usize, Vec<u8>)> {
        let mut v = Vec::new();
        for (q, r) in self.tx.iter().enumerate() {
            let mut b = MbufBatch::<32>::new();
            while r.dequeue(&mut b) > 0 {
                v.extend(b.drain().map(|m| (q, m.data().to_vec())));
            }
        }
        v
    }

    /// Next transmitted frame satisfying `want` (others are skipped), within 10 s.
    pub fn expect(&self, what: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut skipped = 0;
        while Instant::now() < deadline {
            let frames = self.drain();
            if frames.is_empty() {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            for (_, f) in frames {
                if want(&f) {
                    return f;
                }
                skipped += 1;
            }
        }
        panic!("no {what} within 10 s ({skipped} other frames)");
    }

    /// Collects transmitted frames satisfying `want` until `n` arrived (or 20 s passed).
    pub fn collect(&self, n: usize, want: impl Fn(&[u8]) -> bool) -> Vec<(usize, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            let frames = self.drain();
            if frames.is_empty() {
                std::thread::sleep(Duration::from_millis(2));
            }
            got.extend(frames.into_iter().filter(|(_, f)| want(f)));
        }
        got
    }

    /// One control request; panics if refused.
    pub fn ctl(&self, op: Op) -> Reply {
        let resp = client::request_with_timeout(&self.socket, &Request { v: 1, op }, Duration::from_secs(10))
            .expect("control socket");
        resp.result.unwrap_or_else(|e| panic!("control request refused: {e:?}"))
    }

    /// An ipvsadm command line through the control socket.
    pub fn ipvsadm(&self, args: &str) -> Reply {
        let argv: Vec<String> = args.split_whitespace().map(String::from).collect();
        let cmd = control::ipvsadm::parse(&argv).expect("ipvsadm syntax");
        self.ctl(Op::Ipvs(cmd))
    }

    /// Adds `addr/len` on dpdk0.
    pub fn addr(&self, addr: Ipv4Addr, len: u8) {
        self.ctl(Op::AddrAdd { addr, prefix_len: len, dev: "dpdk0".into() });
    }

    /// Answers the director's ARP probes for `servers` (address, MAC) and waits until each is
    /// REACHABLE and the resolved snapshot is in use.
    pub fn resolve(&self, local: Ipv4Addr, servers: &[(Ipv4Addr, MacAddr)]) {
        for &(ip, mac) in servers {
            self.expect("ARP request for a real server", |f| is_arp(f, op::REQUEST, local, ip));
            self.inject(0, &Frame::arp_reply(mac, ip, self.port_mac, local).build());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Reply::Neighs(n) = self.ctl(Op::NeighShow) else { panic!("neighbour listing") };
            let ok = servers.iter().all(|(ip, _)| n.iter().any(|e| e.addr == *ip && e.state == "REACHABLE"));
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "real servers never became REACHABLE: {n:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.runner.take() {
            let _ = r.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// True for an ARP frame with this opcode, sender and target protocol addresses.
pub fn is_arp(f: &[u8], opcode: u16, spa: Ipv4Addr, tpa: Ipv4Addr) -> bool {
    f.len() >= 42
        && f[12..14] == [0x08, 0x06]
        && ArpPacket::new_checked(&f[14..]).is_ok_and(|a| a.operation() == opcode && a.spa() == spa && a.tpa() == tpa)
}

/// The IPv4 view of a frame, if it is one.
pub fn ipv4(f: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    (f.len() > 14 && f[12..14] == [0x08, 0x00]).then(|| Ipv4Packet::new_checked(&f[14..]).ok()).flatten()
}
