//! Mode (a), the real director: `Director::start` + `run_until_stopped` with one worker on
//! EAL's main lcore (CPU 0), one `net_ring` port whose RX ring this process fills and whose
//! TX ring it drains, configured through the control socket exactly as `lbadm` would (and
//! the real servers' ARP probes answered), as in tests/tests/eal_ring.rs.
//!
//! EAL is initialised on a dedicated thread (which EAL pins to CPU 0 and which then runs the
//! worker); the benchmark's own thread is not pinned and runs on the other core. What is
//! measured per run: TSC time from just before the first of N preloaded-as-fast-as-possible
//! packets enters the RX ring to the moment the last forwarded one is in the TX ring. The
//! producer is ~50x faster than the worker, so the worker never waits: the window is busy
//! time, and cycles per packet = window / N. Rewriting frames between runs (the DR rewrite
//! changed their MACs and TTL) is outside the window.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use control::proto::{Op, Reply};
use dataplane::director::{Director, DirectorOptions};
use dataplane::dpdk::{tsc, Eal, MbufBatch, Mempool, Port, Ring};
use dataplane::wire::arp::{op, ArpPacket};
use dataplane::wire::{Frame, MacAddr};
use dataplane::worker::Shared;

use crate::gen::{Traffic, DIP};
use crate::rig::{self, Memory, Store};
use crate::cpu::CpuClock;
use crate::scenario::{Dataplane, Pumped};

static EAL: OnceLock<Eal> = OnceLock::new();

/// A running director on one ring port, driven by this thread.
pub struct DirectorRig {
    rx: Ring,
    tx: Ring,
    pool: Mempool,
    port: Port,
    socket: PathBuf,
    shared: Arc<Shared>,
    runner: Option<std::thread::JoinHandle<()>>,
    clock: Option<CpuClock>,
    servers: std::collections::HashMap<std::net::Ipv4Addr, MacAddr>,
}

use crate::vdev_rig::ctl;

impl DirectorRig {
    /// Starts EAL (`-l 0`) and a director with `capacity` connection entries; the ring port
    /// has room for `slots` packets each way and the traffic pool `mbufs` mbufs. `kernel_pps`:
    /// the kernel leg on with that cap (it creates the interface `dpdk0` in this process's
    /// network namespace: the benchmark driver gives such runs a namespace of their own).
    pub fn start(memory: Memory, mem_mb: u32, capacity: usize, slots: u32, mbufs: u32, kernel_pps: Option<u32>) -> Result<DirectorRig> {
        let args = rig::eal_args("director-bench", "0", memory, mem_mb);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (shared_tx, shared_rx) = mpsc::channel::<Result<Arc<Shared>, String>>();
        let socket = std::env::temp_dir().join(format!("director-bench-{}.sock", std::process::id()));
        let sock2 = socket.clone();
        let runner = std::thread::Builder::new().name("eal-main".into()).spawn(move || {
            let eal = match Eal::init(&args) {
                Ok(e) => EAL.get_or_init(|| e),
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("EAL init: {e}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            if go_rx.recv().is_err() {
                return;
            }
            let opts = DirectorOptions {
                socket: sock2,
                conn_capacity: capacity,
                max_servers: 1024,
                mbufs: 8191,
                descriptors: 1024,
                no_huge: memory == Memory::NoHuge,
                idle_sleep_us: 0,
                config: None,
                kernel_if: kernel_pps.is_some(),
                kernel_pps: kernel_pps.unwrap_or(dataplane::kernel::DEFAULT_PPS),
                ..DirectorOptions::default()
            };
            match Director::start(eal, opts) {
                Ok(d) => {
                    let _ = shared_tx.send(Ok(d.shared().clone()));
                    d.run_until_stopped(eal);
                }
                Err(e) => {
                    let _ = shared_tx.send(Err(format!("{e:#}")));
                }
            }
        })?;
        ready_rx.recv()?.map_err(|e| anyhow::anyhow!(e))?;
        let eal = EAL.get().context("EAL")?;
        let rx = rig::ring(eal, "drx", slots)?;
        let tx = rig::ring(eal, "dtx", slots)?;
        let port = dataplane::dpdk::port_from_rings(eal, "dring", &[&rx], &[&tx])?;
        let pool = rig::pool(eal, mbufs, memory)?;
        go_tx.send(())?;
        let shared = shared_rx.recv()?.map_err(|e| anyhow::anyhow!("director start: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            anyhow::ensure!(Instant::now() < deadline, "control socket never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        let clock = {
            use std::os::unix::thread::JoinHandleExt;
            CpuClock::of(runner.as_pthread_t())
        };
        Ok(DirectorRig { rx, tx, pool, port, socket, shared, runner: Some(runner), clock, servers: Default::default() })
    }

    /// The port's MAC (frames are addressed to it).
    pub fn mac(&self) -> MacAddr {
        MacAddr(self.port.mac())
    }

    /// The port's RX ring (what the director receives).
    pub fn rx_ring(&self) -> &Ring {
        &self.rx
    }

    /// The port's TX ring (what the director sends).
    pub fn tx_ring(&self) -> &Ring {
        &self.tx
    }

    /// The pool frames are injected from.
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// The control socket.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    fn inject(&self, frame: &[u8]) -> Result<()> {
        let mut m = self.pool.alloc().context("mbuf")?;
        m.append(frame.len()).context("room")?.copy_from_slice(frame);
        let mut b = MbufBatch::<1>::new();
        let _ = b.push(m);
        anyhow::ensure!(self.rx.enqueue(&mut b) == 1, "rx ring full");
        Ok(())
    }

    /// Applies the generated configuration through the control socket and answers the ARP
    /// probes for every real server until all are REACHABLE.
    pub fn configure(&mut self, traffic: &Traffic) -> Result<()> {
        crate::vdev_rig::apply_config(&self.socket, traffic)?;
        self.servers = traffic.servers().into_iter().collect();
        let servers = self.servers.clone();
        let port_mac = self.mac();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_check = Instant::now();
        loop {
            anyhow::ensure!(Instant::now() < deadline, "real servers never became REACHABLE");
            let mut b = MbufBatch::<32>::new();
            self.tx.dequeue(&mut b);
            for m in b.drain() {
                self.answer_arp(m.data(), port_mac)?;
            }
            if last_check.elapsed() > Duration::from_millis(200) {
                last_check = Instant::now();
                if let Reply::Neighs(n) = ctl(&self.socket, Op::NeighShow)? {
                    let ok = n.iter().filter(|e| e.state == "REACHABLE" && servers.contains_key(&e.addr)).count();
                    if ok == servers.len() {
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // The snapshot with the resolved MACs is published right after the table changes.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Answers an ARP request for a real server (the director re-probes its neighbours).
    fn answer_arp(&self, f: &[u8], port_mac: MacAddr) -> Result<()> {
        if f.len() >= 42 && f[12..14] == [0x08, 0x06] {
            if let Ok(a) = ArpPacket::new_checked(&f[14..]) {
                if a.operation() == op::REQUEST {
                    if let Some(mac) = self.servers.get(&a.tpa()) {
                        self.inject(&Frame::arp_reply(*mac, a.tpa(), port_mac, DIP).build())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Drop counters of the director's port, by reason (non-zero only).
    pub fn drops(&self) -> Result<Vec<(String, u64)>> {
        match ctl(&self.socket, Op::LinkShow)? {
            Reply::Links(l) => Ok(l.into_iter().flat_map(|l| l.drops).filter(|(_, c)| *c > 0).collect()),
            _ => Ok(Vec::new()),
        }
    }

    /// Stops the director and joins its thread.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.runner.take() {
            let _ = r.join();
        }
    }
}

impl Dataplane for DirectorRig {
    fn pump(&mut self, store: &mut Store, n: usize) -> Result<Pumped> {
        let base = self.tx.count() as u64;
        let cpu = |c: &Option<CpuClock>| c.map_or(0, |c| c.ns());
        let c0 = cpu(&self.clock);
        let t0 = tsc();
        store.enqueue(&self.rx, n)?;
        // Wait for the n-th packet out, or (drops) for the output to stop growing while the
        // input ring is empty.
        let want = base + n as u64;
        let (mut last, mut t_last, mut c_last) = (base, t0, c0);
        let mut idle_since = Instant::now();
        loop {
            let c = self.tx.count() as u64;
            if c != last {
                last = c;
                t_last = tsc();
                c_last = cpu(&self.clock);
                idle_since = Instant::now();
            }
            if c >= want {
                break;
            }
            if self.rx.count() == 0 && idle_since.elapsed() > Duration::from_millis(50) {
                break;
            }
            // Poll gently: reading the TX ring's indices while the worker writes them costs
            // the worker cache-line transfers, and this thread may share its core.
            std::thread::sleep(Duration::from_micros(20));
        }
        let before = store.mbufs.len();
        let out = store.drain(&self.tx) as u64;
        let mac = self.mac();
        for m in &store.mbufs[before..] {
            self.answer_arp(m.data(), mac)?;
        }
        Ok(Pumped { out: out.min(n as u64), cycles: t_last - t0, cpu_ns: c_last - c0 })
    }

    fn top_up(&mut self, store: &mut Store, n: usize) -> Result<()> {
        store.top_up(&self.pool, n)
    }
}
