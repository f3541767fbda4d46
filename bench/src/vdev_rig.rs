//! The real director on ports that EAL creates from `--vdev` arguments (`net_memif`,
//! `net_pcap`), for the memif and pcap input modes: `Director::start` + `run_until_stopped`
//! with one worker on EAL's main lcore (CPU 0), configured through the control socket, as in
//! mode (a) ([`crate::director_run`]), but the bench thread does not feed the port itself.
//!
//! Start-up is split in two so a mode can act between EAL initialisation and the director's
//! start (create a ring port, read a vdev's MAC, rewrite a pcap file): [`VdevDirector::init`]
//! brings EAL up on a dedicated thread (which EAL pins to CPU 0 and which later runs the
//! worker) and [`VdevEal::start`] starts the director on every port that exists by then.
//!
//! Measurement helpers read, from the bench thread, the worker thread's CPU clock, the TSC
//! and a port's counters back to back ([`VdevDirector::sample`]); the port counters of these
//! PMDs are plain per-queue counters, safe to read while the worker runs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use control::ipvsadm::{IpvsCommand, ListOptions};
use control::proto::{client, Op, Reply, Request};
use dataplane::director::{Director, DirectorOptions};
use dataplane::dpdk::{tsc, Eal, Port, PortStats};
use dataplane::worker::Shared;

use crate::cpu::CpuClock;
use crate::gen::Traffic;
use crate::rig::{self, Memory};

static EAL: OnceLock<Eal> = OnceLock::new();

/// One request on the control socket (20 s timeout); a refusal is an error.
pub fn ctl(socket: &Path, op: Op) -> Result<Reply> {
    let resp = client::request_with_timeout(socket, &Request { v: 1, op }, Duration::from_secs(20)).context("control socket")?;
    resp.result.map_err(|e| anyhow::anyhow!("control request refused: {e:?}"))
}

/// Applies `traffic`'s configuration through the control socket: addresses, mark rules,
/// services and their servers (modes (a), memif and pcap alike).
pub fn apply_config(socket: &Path, traffic: &Traffic) -> Result<()> {
    let cfg = traffic.config();
    for a in &cfg.addrs {
        ctl(socket, Op::AddrAdd { addr: a.addr, prefix_len: a.prefix_len, dev: a.dev.clone() })?;
    }
    for m in &cfg.marks {
        ctl(socket, Op::MarkAdd(m.clone()))?;
    }
    for (svc, servers) in &cfg.services {
        ctl(socket, Op::Ipvs(IpvsCommand::AddService(svc.clone())))?;
        for s in servers {
            ctl(socket, Op::Ipvs(IpvsCommand::AddServer { service: svc.key, server: s.clone() }))?;
        }
    }
    Ok(())
}

/// EAL is up (on its thread, waiting); the director is not started yet.
pub struct VdevEal {
    eal: &'static Eal,
    go: mpsc::Sender<DirectorOptions>,
    started: mpsc::Receiver<Result<Arc<Shared>, String>>,
    runner: std::thread::JoinHandle<()>,
    socket: PathBuf,
    memory: Memory,
}

/// A running director on vdev ports.
pub struct VdevDirector {
    /// Control socket.
    pub socket: PathBuf,
    shared: Arc<Shared>,
    runner: Option<std::thread::JoinHandle<()>>,
    clock: Option<CpuClock>,
}

/// Worker CPU time, TSC and a port's counters read back to back.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snap {
    /// Worker thread on-CPU nanoseconds.
    pub cpu_ns: u64,
    /// TSC.
    pub tsc: u64,
    /// The port's counters.
    pub stats: PortStats,
}

impl VdevDirector {
    /// Initialises EAL with `-l 0`, the memory scheme and `vdevs` (each becomes a
    /// `--vdev=` argument, probed in order: the first is port 0 = `dpdk0`).
    pub fn init(memory: Memory, mem_mb: u32, vdevs: &[String]) -> Result<VdevEal> {
        let mut args = rig::eal_args("director-bench", "0", memory, mem_mb);
        args.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (go_tx, go_rx) = mpsc::channel::<DirectorOptions>();
        let (started_tx, started_rx) = mpsc::channel::<Result<Arc<Shared>, String>>();
        let socket = std::env::temp_dir().join(format!("director-bench-{}.sock", std::process::id()));
        let runner = std::thread::Builder::new().name("eal-main".into()).spawn(move || {
            let eal = match Eal::init(&args) {
                Ok(e) => EAL.get_or_init(|| e),
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("EAL init ({}): {e}", args.join(" "))));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let Ok(opts) = go_rx.recv() else { return };
            match Director::start(eal, opts) {
                Ok(d) => {
                    let _ = started_tx.send(Ok(d.shared().clone()));
                    d.run_until_stopped(eal);
                }
                Err(e) => {
                    let _ = started_tx.send(Err(format!("{e:#}")));
                }
            }
        })?;
        ready_rx.recv_timeout(Duration::from_secs(60)).context("EAL initialisation did not finish")?.map_err(|e| anyhow::anyhow!(e))?;
        let eal = EAL.get().context("EAL")?;
        Ok(VdevEal { eal, go: go_tx, started: started_rx, runner, socket, memory })
    }
}

impl VdevEal {
    /// The EAL (to create rings, pools, ring ports before the director starts).
    pub fn eal(&self) -> &'static Eal {
        self.eal
    }

    /// The port with this id.
    pub fn port(&self, id: u16) -> Result<Port> {
        Port::from_id(self.eal, id).with_context(|| format!("no DPDK port {id}"))
    }

    /// Starts the director on every port with `capacity` connection entries and a pool of
    /// `mbufs` mbufs; waits for its control socket.
    pub fn start(self, capacity: usize, mbufs: u32) -> Result<VdevDirector> {
        let opts = DirectorOptions {
            socket: self.socket.clone(),
            conn_capacity: capacity,
            max_servers: 1024,
            mbufs,
            descriptors: 1024,
            no_huge: self.memory == Memory::NoHuge,
            idle_sleep_us: 0,
            config: None,
            kernel_if: false,
            ..DirectorOptions::default()
        };
        self.go.send(opts).context("the EAL thread is gone")?;
        let shared = self
            .started
            .recv_timeout(Duration::from_secs(120))
            .context("the director did not start")?
            .map_err(|e| anyhow::anyhow!("director start: {e}"))?;
        let clock = {
            use std::os::unix::thread::JoinHandleExt;
            CpuClock::of(self.runner.as_pthread_t())
        };
        let d = VdevDirector { socket: self.socket, shared, runner: Some(self.runner), clock };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !d.socket.exists() {
            anyhow::ensure!(Instant::now() < deadline, "control socket never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(d)
    }
}

impl VdevDirector {
    /// Applies the generated configuration (addresses, mark rules, services, servers).
    pub fn configure(&self, traffic: &Traffic) -> Result<()> {
        apply_config(&self.socket, traffic)
    }

    /// Waits (at most `limit`) until every address in `servers` is REACHABLE, then for the
    /// snapshot with their MACs to be published. Someone else answers the ARP probes.
    pub fn wait_reachable(&self, servers: &[Ipv4Addr], limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Reply::Neighs(n) = ctl(&self.socket, Op::NeighShow)? {
                let ok = servers.iter().filter(|s| n.iter().any(|e| e.addr == **s && e.state == "REACHABLE")).count();
                if ok == servers.len() {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "only {ok} of {} real servers became REACHABLE in {limit:?}", servers.len());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Sums over every real server: (connections ever created, ActiveConn, InActConn,
    /// PersistConn).
    pub fn conn_counts(&self) -> Result<(u64, u64, u64, u64)> {
        let list = ListOptions { numeric: true, ..ListOptions::default() };
        match ctl(&self.socket, Op::Ipvs(IpvsCommand::List(list)))? {
            Reply::Services { services, .. } => Ok(services.iter().flat_map(|s| s.servers.iter()).fold((0, 0, 0, 0), |a, s| {
                (a.0 + s.conns, a.1 + s.active, a.2 + s.inactive, a.3 + s.persist)
            })),
            other => anyhow::bail!("unexpected answer to -L: {other:?}"),
        }
    }

    /// Drop counters of every port, by reason (non-zero only).
    pub fn drops(&self) -> Result<Vec<(String, u64)>> {
        match ctl(&self.socket, Op::LinkShow)? {
            Reply::Links(l) => {
                let mut all: Vec<(String, u64)> = Vec::new();
                for (name, c) in l.into_iter().flat_map(|l| l.drops) {
                    match all.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, v)) => *v += c,
                        None => all.push((name, c)),
                    }
                }
                all.retain(|(_, c)| *c > 0);
                Ok(all)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Reads the worker's CPU clock, the TSC and `port`'s counters back to back.
    pub fn sample(&self, port: &Port) -> Snap {
        let cpu_ns = self.clock.map_or(0, |c| c.ns());
        let t = tsc();
        let stats = port.stats();
        Snap { cpu_ns, tsc: t, stats }
    }

    /// Stops the director and joins its thread.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.runner.take() {
            let _ = r.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The difference of two drop listings (`after - before`), non-zero entries only.
pub fn drops_delta(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .map(|(n, a)| (n.clone(), a - before.iter().find(|(m, _)| m == n).map_or(0, |(_, b)| *b).min(*a)))
        .filter(|(_, d)| *d > 0)
        .collect()
}

/// One measured window on `port`, counted on its transmitted packets: starts at a sample
/// taken now, ends at the first sample (polled every `poll`) where at least `packets` more
/// left the port, or after `limit`. Returns (first, last) samples.
pub fn window(d: &VdevDirector, port: &Port, packets: u64, poll: Duration, limit: Duration) -> Result<(Snap, Snap)> {
    let s0 = d.sample(port);
    let started = Instant::now();
    loop {
        std::thread::sleep(poll);
        let s1 = d.sample(port);
        if s1.stats.tx_packets >= s0.stats.tx_packets + packets {
            return Ok((s0, s1));
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "only {} of {packets} packets forwarded in {limit:?}",
            s1.stats.tx_packets - s0.stats.tx_packets
        );
    }
}

/// A measured window as a run sample: `packets` asked for, what left the port, wall TSC
/// cycles and worker on-CPU time between the two samples.
pub fn sample_between(packets: u64, s0: &Snap, s1: &Snap) -> crate::run::Sample {
    crate::run::Sample {
        packets,
        out: s1.stats.tx_packets - s0.stats.tx_packets,
        cycles: s1.tsc - s0.tsc,
        cpu_ns: s1.cpu_ns - s0.cpu_ns,
    }
}

impl InputInfo {
    /// Records the connection counts after the setup phases and fails unless every expected
    /// connection was created.
    pub fn check_setup(&mut self, counts: (u64, u64, u64, u64), expected: u64, detail: &str) -> Result<()> {
        self.expected_conns = expected;
        self.setup_counts = counts;
        anyhow::ensure!(counts.0 >= expected, "setup created {} connections, {expected} expected{detail}", counts.0);
        Ok(())
    }

    /// Records the port counters' change from `first` to `last`.
    pub fn set_port_delta(&mut self, first: &Snap, last: &Snap) {
        self.port_delta = (
            last.stats.rx_packets - first.stats.rx_packets,
            last.stats.tx_packets - first.stats.tx_packets,
            last.stats.rx_nombuf - first.stats.rx_nombuf,
            last.stats.tx_errors - first.stats.tx_errors,
        );
    }
}

/// What the memif and pcap modes add to a result (details.json).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct InputInfo {
    /// The director's input device (`--vdev` argument).
    pub vdev: String,
    /// Distinct pre-built frames (memif generator) or pcap records replayed in a loop.
    pub frames: u64,
    /// Forwarded packets per measured window (at least).
    pub window: u64,
    /// Connections the setup phases had to create (active flows + background).
    pub expected_conns: u64,
    /// After setup, summed over the real servers: connections created, ActiveConn,
    /// InActConn, PersistConn.
    pub setup_counts: (u64, u64, u64, u64),
    /// Seconds of the setup phases.
    pub setup_secs: f64,
    /// memif: the generator's counts during setup.
    pub generator_setup: Option<crate::memif_gen::GenCounts>,
    /// memif: the generator's counts per measured run (warm-up excluded).
    pub generator_runs: Vec<crate::memif_gen::GenCounts>,
    /// Director port counters over the measured windows: (rx, tx, rx_nombuf, tx_errors).
    pub port_delta: (u64, u64, u64, u64),
}
