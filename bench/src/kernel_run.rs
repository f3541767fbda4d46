//! Mode `kernel`: the kernel leg's throughput each way, on the real director (one worker, a
//! ring port, the kernel leg on and its cap out of the way), in a network namespace of its
//! own (the driver runs this mode under `ip netns exec`).
//!
//! - **port → host**: UDP datagrams to the director's address (no service: the host's),
//!   preloaded into the port's RX ring as fast as the ring takes them; counted where they
//!   land: frames written into the TAP (the leg's own counter) and datagrams a UDP socket of
//!   the host actually received.
//! - **host → port**: a UDP socket of the host sends datagrams to a neighbour on the
//!   segment (a static ARP entry) through `dpdk0`; counted as they leave the port (its TX
//!   ring), from the first send to the last arrival.
//!
//! The rates are those of this 2-core VM: the worker, the kernel-leg thread, the host's
//! stack and this driver share two CPUs.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use control::proto::{Op, Reply};
use dataplane::dpdk::MbufBatch;
use dataplane::wire::Frame;

use crate::director_run::DirectorRig;
use crate::gen::{Traffic, CLIENT_MAC, DIP};
use crate::rig::{self, Memory};
use crate::vdev_rig::ctl;

/// What the mode measured.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct KernelLegRates {
    /// Datagrams offered to the port for the host.
    pub to_host_offered: u64,
    /// Frames the leg wrote into the TAP.
    pub to_host_written: u64,
    /// Datagrams the host's UDP socket received.
    pub to_host_received: u64,
    /// Seconds from the first offered frame to the last written one.
    pub to_host_secs: f64,
    /// Datagrams the host sent.
    pub from_host_sent: u64,
    /// Frames that left the port.
    pub from_host_out: u64,
    /// Seconds from the first send to the last frame out.
    pub from_host_secs: f64,
    /// Drop counters of the director after both directions.
    pub drops: Vec<(String, u64)>,
}

impl KernelLegRates {
    /// Frames per second into the host (TAP writes).
    pub fn to_host_pps(&self) -> f64 {
        self.to_host_written as f64 / self.to_host_secs.max(1e-9)
    }

    /// Frames per second out of the host onto the port.
    pub fn from_host_pps(&self) -> f64 {
        self.from_host_out as f64 / self.from_host_secs.max(1e-9)
    }
}

/// The kernel-leg counters of port 0 (`to_host` written into the TAP).
fn tap_written(d: &DirectorRig) -> Result<u64> {
    match ctl(d.socket(), Op::LinkShow)? {
        Reply::Links(l) => Ok(l.first().and_then(|l| l.kernel.as_ref()).map_or(0, |k| k.to_host)),
        _ => Ok(0),
    }
}

fn sh(args: &[&str]) -> Result<()> {
    let st = std::process::Command::new(args[0]).args(&args[1..]).status().with_context(|| args.join(" "))?;
    anyhow::ensure!(st.success(), "{} failed", args.join(" "));
    Ok(())
}

/// Runs both directions with `n` datagrams each.
pub fn run(memory: Memory, n: u64, traffic: &crate::gen::TrafficSpec) -> Result<KernelLegRates> {
    let slots = 16384u32;
    let mut d = DirectorRig::start(memory, rig::mem_for(slots + 4096, 64), 1 << 12, slots, slots + 4096, Some(u32::MAX / 2))?;
    let t = Traffic::new(traffic.clone(), d.mac())?;
    d.configure(&t)?;
    // The address is on the kernel interface once the address sync wrote it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sock = loop {
        if let Ok(s) = UdpSocket::bind((DIP, 9000)) {
            break s;
        }
        anyhow::ensure!(Instant::now() < deadline, "{DIP} never appeared on dpdk0");
        std::thread::sleep(Duration::from_millis(50));
    };
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut r = KernelLegRates::default();

    // Port → host.
    let client = Ipv4Addr::new(DIP.octets()[0], DIP.octets()[1], 7, 7);
    let frame = Frame::udp().src_mac(CLIENT_MAC).dst_mac(d.mac()).src(client, 5000).dst(DIP, 9000).payload(&[0u8; 18]).build();
    let written0 = tap_written(&d)?;
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut got = 0u64;
        let mut last = Instant::now();
        loop {
            match sock.recv(&mut buf) {
                Ok(_) => {
                    got += 1;
                    last = Instant::now();
                }
                Err(_) if last.elapsed() > Duration::from_millis(500) => break,
                Err(_) => {}
            }
        }
        got
    });
    let t0 = Instant::now();
    let mut offered = 0u64;
    let mut b = MbufBatch::<32>::new();
    while offered < n {
        // The pool bounds what is in flight: when it is empty, wait for the director.
        while !b.is_full() && offered + (b.len() as u64) < n {
            let Some(mut m) = d.pool().alloc() else { break };
            m.append(frame.len()).context("room")?.copy_from_slice(&frame);
            let _ = b.push(m);
        }
        offered += d.rx_ring().enqueue(&mut b) as u64;
        if !b.is_full() || !b.is_empty() {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    b.clear();
    // Until the TAP writes stop growing.
    let (mut last, mut t_last, mut still) = (0u64, Instant::now(), Instant::now());
    loop {
        let w = tap_written(&d)? - written0;
        if w != last {
            last = w;
            t_last = Instant::now();
            still = Instant::now();
        }
        if w >= offered || still.elapsed() > Duration::from_millis(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    r.to_host_offered = offered;
    r.to_host_written = last;
    r.to_host_secs = (t_last - t0).as_secs_f64();
    r.to_host_received = receiver.join().unwrap_or(0);

    // Host → port.
    let peer = Ipv4Addr::new(DIP.octets()[0], DIP.octets()[1], 9, 9);
    sh(&["ip", "neigh", "replace", &peer.to_string(), "lladdr", "02:00:00:00:09:09", "dev", "dpdk0"])?;
    let out = UdpSocket::bind((DIP, 0))?;
    let payload = [0u8; 18];
    let mut drained = MbufBatch::<32>::new();
    let mut count_out = |d: &DirectorRig| {
        let mut k = 0u64;
        while d.tx_ring().dequeue(&mut drained) > 0 {
            for m in drained.drain() {
                let f = m.data();
                // IPv4 UDP to the peer.
                if f.len() >= 34 && f[12..14] == [8, 0] && f[23] == 17 && f[30..34] == peer.octets() {
                    k += 1;
                }
            }
        }
        k
    };
    count_out(&d);
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut arrived = 0u64;
    let mut t_last = t0;
    while sent < n {
        for _ in 0..64 {
            // The TAP's queue overflowing shows as ENOBUFS: the frame is lost, count on.
            if out.send_to(&payload, (peer, 9)).is_ok() {
                sent += 1;
            }
        }
        let k = count_out(&d);
        if k > 0 {
            arrived += k;
            t_last = Instant::now();
        }
    }
    let mut still = Instant::now();
    while still.elapsed() < Duration::from_millis(300) {
        let k = count_out(&d);
        if k > 0 {
            arrived += k;
            t_last = Instant::now();
            still = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    r.from_host_sent = sent;
    r.from_host_out = arrived;
    r.from_host_secs = (t_last - t0).as_secs_f64();
    r.drops = d.drops()?;
    d.stop();
    Ok(r)
}
