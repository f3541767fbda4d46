//! Mode (b), the engine loop: one thread does what a worker does for one port —
//! `rx_burst(32)` on a `net_ring` port → `worker::process_burst` (prefetch, the engine's three stages) → `tx_burst` → bounded
//! expiry — over a ring preloaded with generated frames, and stops when the ring is empty.
//! No director threads, no control socket, no idle polling: the instruction count of a pass
//! depends only on the packets, which is what callgrind's difference of two packet counts
//! needs. The configuration is compiled by the director's own `compile` from the same
//! commands the control socket would apply, with every real server's MAC already learned.
//!
//! With `engine: None` the same loop is the io floor: `rx_burst` → `tx_burst`, nothing else
//! (testpmd's io forwarding on the same PMD).
//!
//! Engine time is virtual (one tick per 2^20 packets) so that a slow run under valgrind does
//! not expire entries that a native run keeps; [`EngineLoop::clock`] switches to real time
//! (the SYN-flood benchmark, whose round trips are real).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use crossbeam::queue::ArrayQueue;

use control::model::{Config, ConfigCommand};
use dataplane::counters::DropReason;
use dataplane::director::{compile, TICKS_PER_SEC};
use dataplane::dpdk::{tsc, Eal, MbufBatch, Mempool, Port, PortConfig, Ring};
use dataplane::engine::{Engine, EngineConfig};
use dataplane::worker::{prefetch_burst, process_burst, Sink, BURST};
use dataplane::neigh::{NeighParams, NeighTable};
use dataplane::snapshot::PortInfo;
use dataplane::wire::MacAddr;

use crate::gen::Traffic;
use crate::rig::{self, Memory, Store};
use crate::cpu::CpuClock;
use crate::scenario::{Dataplane, Pumped};

/// Most connection entries examined by expiry per burst (as the worker).
const EXPIRE_BUDGET: u32 = 64;

/// The engine loop on one ring port.
pub struct EngineLoop {
    port: Port,
    rx: Ring,
    tx: Ring,
    pool: Mempool,
    /// The engine (`None`: io floor).
    pub engine: Option<Engine>,
    processed: u64,
    /// Instrument only the measured sections under callgrind.
    pub callgrind: bool,
    /// Real engine time: `(tsc at tick 0, TSC cycles per tick)`; `None` for virtual time.
    pub clock: Option<(u64, u64)>,
    /// Kernel leg on: the rings a worker exchanges with the kernel-leg thread (to the host,
    /// from the host), checked per burst exactly as worker 0 does.
    pub host_rings: Option<(Ring, Ring)>,
}

/// Builds the director's snapshot for `traffic` on `port` and an engine using it; with
/// `kernel_leg` the snapshot has the leg on; with `per_worker_cursor` rr/wrr services keep
/// the engine's own cursor instead of the shared rotation.
pub fn engine_for(traffic: &Traffic, port: &Port, capacity: usize, kernel_leg: bool, per_worker_cursor: bool) -> Result<Engine> {
    let cfg = traffic.config();
    let mut c = Config::new(vec!["dpdk0".into()], 1024);
    for a in &cfg.addrs {
        c.apply(&ConfigCommand::AddAddr(a.clone())).map_err(|e| anyhow::anyhow!("addr: {e}"))?;
    }
    for m in &cfg.marks {
        c.apply(&ConfigCommand::AddMark(m.clone())).map_err(|e| anyhow::anyhow!("mark: {e}"))?;
    }
    for (svc, servers) in &cfg.services {
        c.apply(&ConfigCommand::AddService(svc.clone())).map_err(|e| anyhow::anyhow!("service: {e}"))?;
        for s in servers {
            c.apply(&ConfigCommand::AddServer { service: svc.key, server: s.clone() })
                .map_err(|e| anyhow::anyhow!("server: {e}"))?;
        }
    }
    let mut neigh = NeighTable::new(NeighParams::default());
    let now = Instant::now();
    for (ip, mac) in traffic.servers() {
        neigh.learn(ip, mac, port.id(), true, now);
    }
    let ports = vec![PortInfo { id: port.id(), mac: MacAddr(port.mac()), mtu: port.mtu(), addrs: Vec::new() }];
    let mut snap = compile(&c, &neigh, &ports).map_err(|e| anyhow::anyhow!("compile: {e}"))?;
    snap.host_leg = kernel_leg;
    if per_worker_cursor {
        for svc in &mut snap.services {
            svc.rotation = None;
        }
    }
    anyhow::ensure!(snap.servers.iter().flatten().all(|s| s.mac.is_some()), "unresolved server in the snapshot");
    let mut e = Engine::new(
        EngineConfig { conn_capacity: capacity, max_servers: 1024, ports: port.id() as usize + 1, ticks_per_sec: TICKS_PER_SEC, seed: 0x1234_5678, host_pps: dataplane::kernel::DEFAULT_PPS },
        Arc::new(ArrayQueue::new(4096)),
    )
    .context("engine")?;
    e.set_snapshot(Arc::new(snap));
    let _ = Ipv4Addr::UNSPECIFIED;
    Ok(e)
}

impl EngineLoop {
    /// A ring port with `slots` ring slots each way and a pool of `mbufs`.
    pub fn new(eal: &Eal, memory: Memory, slots: u32, mbufs: u32) -> Result<EngineLoop> {
        let rx = rig::ring(eal, "lrx", slots)?;
        let tx = rig::ring(eal, "ltx", slots)?;
        let port = dataplane::dpdk::port_from_rings(eal, &rig::name("lring"), &[&rx], &[&tx])?;
        let pool = rig::pool(eal, mbufs, memory)?;
        let cfg = PortConfig { rx_queues: 1, tx_queues: 1, rx_desc: 1024, tx_desc: 1024, rss_src_only: true, promiscuous: false, ..PortConfig::default() };
        port.configure(&cfg, &pool)?;
        port.start()?;
        Ok(EngineLoop { port, rx, tx, pool, engine: None, processed: 0, callgrind: false, clock: None, host_rings: None })
    }

    /// The mbuf pool the store draws from.
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Turns the kernel leg's per-burst work on (two rings, as the director creates them).
    pub fn with_host_rings(&mut self, eal: &Eal) -> Result<()> {
        self.host_rings = Some((rig::ring(eal, "lto_host", 2048)?, rig::ring(eal, "lfrom_host", 2048)?));
        Ok(())
    }

    /// The port (for its MAC and id).
    pub fn port(&self) -> Port {
        self.port
    }

    /// One pass: until the RX ring is empty. Returns packets received.
    #[inline(never)]
    pub fn pass(&mut self) -> u64 {
        let port = self.port;
        let id = port.id();
        let mut rx: MbufBatch<BURST> = MbufBatch::new();
        let mut sink = Sink::new(id as usize, None);
        let mut n = 0u64;
        match self.engine.as_mut() {
            None => loop {
                let got = port.rx_burst(0, &mut rx);
                if got == 0 {
                    break;
                }
                port.tx_burst(0, &mut rx);
                rx.clear();
                n += got as u64;
            },
            Some(engine) => loop {
                let got = port.rx_burst(0, &mut rx);
                if got == 0 {
                    break;
                }
                let now = match self.clock {
                    Some((t0, per_tick)) => ((tsc() - t0) / per_tick.max(1)) as u32,
                    None => (self.processed >> 20) as u32,
                };
                // Exactly the worker's burst code (prefetch, three engine stages, TX batch).
                prefetch_burst(&rx);
                process_burst(engine, &mut rx, Some(id), now, &mut sink);
                // The worker's kernel-leg work per burst: queue what goes to the host, take
                // what the host sent (worker 0).
                match &self.host_rings {
                    Some((to_host, from_host)) => {
                        if !sink.host.is_empty() {
                            to_host.enqueue(&mut sink.host);
                        }
                        if from_host.dequeue(&mut rx) > 0 {
                            for m in rx.drain() {
                                let _ = sink.tx[id as usize].push(m);
                            }
                        }
                    }
                    None => sink.host.clear(),
                }
                let tx = &mut sink.tx[id as usize];
                port.tx_burst(0, tx);
                if !tx.is_empty() {
                    for _ in 0..tx.len() {
                        engine.count_drop(DropReason::TxFull);
                    }
                    tx.clear();
                }
                engine.expire(now, EXPIRE_BUDGET);
                // As the worker: the sync daemons' state and received entries.
                engine.sync_poll(now);
                n += got as u64;
                self.processed += got as u64;
            },
        }
        n
    }
}

impl Dataplane for EngineLoop {
    fn pump(&mut self, store: &mut Store, n: usize) -> Result<Pumped> {
        store.enqueue(&self.rx, n)?;
        if self.callgrind {
            crate::valgrind::start_instrumentation();
        }
        let clock = CpuClock::this_thread();
        let c0 = clock.ns();
        let t0 = tsc();
        self.pass();
        let t1 = tsc();
        let c1 = clock.ns();
        if self.callgrind {
            crate::valgrind::stop_instrumentation();
        }
        let out = store.drain(&self.tx) as u64;
        Ok(Pumped { out, cycles: t1 - t0, cpu_ns: c1 - c0 })
    }

    fn top_up(&mut self, store: &mut Store, n: usize) -> Result<()> {
        store.top_up(&self.pool, n)
    }
}
