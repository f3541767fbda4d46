//! Assembly of a running director: ports, pool, workers, the neighbour housekeeping thread
//! and the control backend that compiles the configuration into snapshots.
//!
//! Threads: one worker per EAL lcore (the main lcore runs worker 0 on the main thread), one
//! control thread (the Unix socket server of `control::server`) and one housekeeping thread
//! (neighbour resolution, every 100 ms). The two slow-path threads share [`Slow`] under a
//! mutex; workers never touch it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam::queue::ArrayQueue;

use control::error::CtlError;
use control::model::{Config, ServiceKey, Slot};

use crate::counters::{MergedCounts, WorkerCounters};
use crate::dpdk::vdev::VdevBus;
use crate::dpdk::{tsc_hz, Eal, Mempool, Port, PortConfig, Ring};
use crate::engine::{Engine, EngineConfig, NeighEvent};
use crate::neigh::{NeighParams, NeighTable};
use crate::sched::{rotation, Rotation, RotationRegistry, Scheduler};
use crate::steer::{Steering, RSS_KEY};
use crate::snapshot::{MarkMatch, PortInfo, Published, ServerInfo, ServiceInfo, Snapshot, SvcKey, Sysctl};
use crate::wire::MacAddr;
use crate::worker::{Mailbox, Shared, TxRequest, Worker, WorkerReply, WorkerRequest};

/// Engine timer ticks per second.
pub const TICKS_PER_SEC: u32 = 16;
/// Housekeeping period.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Slots of each hand-off ring.
const HANDOFF_RING: u32 = 4096;
/// Size of the software redirection table (NICs are programmed with the same pattern).
pub const STEERING_RETA: u16 = 128;
/// How long the control side waits for workers to answer a counters request.
const WORKER_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Start-up options.
#[derive(Debug, Clone)]
pub struct DirectorOptions {
    /// Control socket path.
    pub socket: PathBuf,
    /// Connection-table capacity per worker.
    pub conn_capacity: usize,
    /// Real-server slots.
    pub max_servers: u32,
    /// Mbufs in the pool.
    pub mbufs: u32,
    /// Descriptors per queue.
    pub descriptors: u16,
    /// EAL runs without hugepages.
    pub no_huge: bool,
    /// Workers sleep this many microseconds when a loop found no packet (0 = busy poll).
    pub idle_sleep_us: u64,
    /// A configuration file (lbadm lines, see `control::config_file`) applied as one
    /// transaction before the workers start; a bad file makes [`Director::start`] fail.
    pub config: Option<PathBuf>,
    /// A keepalived.conf (`control::keepalived`) applied as one transaction after `config`;
    /// a bad file makes [`Director::start`] fail with `FILE:LINE: reason`.
    pub keepalived: Option<PathBuf>,
    /// The kernel leg: a host interface `dpdkN` per port (see [`crate::kernel`]).
    pub kernel_if: bool,
    /// Packets per second the kernel leg hands to the host at most (all workers together;
    /// local real servers' connections are not counted against it).
    pub kernel_pps: u32,
}

impl Default for DirectorOptions {
    /// The `director` command's defaults.
    fn default() -> Self {
        DirectorOptions {
            socket: PathBuf::from("/run/director.sock"),
            conn_capacity: 1 << 20,
            max_servers: 65536,
            mbufs: 16383,
            descriptors: 1024,
            no_huge: false,
            idle_sleep_us: 0,
            config: None,
            keepalived: None,
            kernel_if: true,
            kernel_pps: crate::kernel::DEFAULT_PPS,
        }
    }
}

/// Slow-path state shared by the control and housekeeping threads.
pub struct Slow {
    /// The configuration last published.
    pub config: Config,
    /// Neighbour table.
    pub neigh: NeighTable,
    /// Ports (addresses empty: they come from the configuration).
    pub ports: Vec<PortInfo>,
    /// Real-server slots.
    pub max_servers: u32,
    /// Link state and history of the ports (polled by housekeeping).
    pub links: crate::linkwatch::LinkWatch,
    /// The mbuf pool (for `lbadm link show`'s in-use count); `None` in tests without EAL.
    pub pool: Option<Arc<Mempool>>,
    /// The ports have kernel interfaces (the kernel leg is on).
    pub host_leg: bool,
    /// rr/wrr cursors carried from one compiled snapshot to the next.
    pub rotations: std::cell::RefCell<RotationRegistry>,
}

impl Slow {
    /// Compiles `cfg` with this state's neighbours, ports and kernel leg.
    pub fn compile(&self, cfg: &Config) -> Result<Snapshot, CtlError> {
        let mut s = compile(cfg, &self.neigh, &self.ports)?;
        s.host_leg = self.host_leg;
        // Only the thread holding the slow-path lock compiles: the RefCell is never shared.
        self.rotations.borrow_mut().carry(&mut s);
        Ok(s)
    }
}

fn port_index(ports: &[PortInfo], dev: &str) -> Option<usize> {
    ports.iter().position(|p| format!("dpdk{}", p.id) == dev)
}

/// Compiles a configuration plus resolved neighbours into a worker snapshot.
pub fn compile(cfg: &Config, neigh: &NeighTable, base_ports: &[PortInfo]) -> Result<Snapshot, CtlError> {
    let mut s = Snapshot { ports: base_ports.to_vec(), ..Snapshot::default() };
    for p in &mut s.ports {
        p.addrs.clear();
    }
    for a in cfg.addrs() {
        let i = port_index(&s.ports, &a.dev).ok_or_else(|| CtlError::no_such_device(&a.dev))?;
        s.ports[i].addrs.push((a.addr, a.prefix_len));
        let id = s.ports[i].id;
        if id < 64 {
            *s.local.entry(a.addr).or_insert(0) |= 1u64 << id;
        }
    }
    s.index_subnets();
    let mut servers: Vec<Option<ServerInfo>> = Vec::new();
    for svc in cfg.services() {
        let c = &svc.config;
        let name = c.scheduler.name();
        if Scheduler::new(name, 0).is_none() {
            return Err(CtlError::refused(format!("Scheduler {name} is not available in this director yet")));
        }
        let key = match c.key {
            ServiceKey::Addr { proto, addr, port } => SvcKey::Addr { proto: proto.number(), addr, port },
            ServiceKey::Fwmark(m) => SvcKey::Fwmark(m),
        };
        let si = s.services.len() as u32;
        let mut slots = Vec::with_capacity(svc.servers.len());
        for rs in &svc.servers {
            let slot = rs.id.0;
            let incarnation = match cfg.slot(rs.id) {
                Slot::Live { incarnation, .. } | Slot::Trash { incarnation, .. } => incarnation,
                Slot::Free => 0,
            };
            // IPVS's LOCALNODE: a server at 127.0.0.0/8 or at one of our own addresses.
            let local = rs.addr.is_loopback() || s.local.contains_key(&rs.addr);
            let (egress_port, mac) = match s.on_link(rs.addr) {
                _ if local => (None, None),
                Some((port, _)) => (Some(port), neigh.lookup(rs.addr).filter(|&(_, p)| p == port).map(|(m, _)| m)),
                None => (None, None),
            };
            if servers.len() <= slot as usize {
                servers.resize(slot as usize + 1, None);
            }
            servers[slot as usize] = Some(ServerInfo {
                slot,
                svc: si,
                addr: rs.addr,
                port: rs.port,
                weight: rs.weight,
                u_threshold: rs.u_threshold,
                l_threshold: rs.l_threshold,
                egress_port,
                mac,
                incarnation,
                local,
            });
            slots.push(slot);
        }
        match key {
            SvcKey::Addr { proto, addr, port } => {
                s.by_addr.insert((proto, addr, port), si);
                if port == 0 {
                    s.has_port_zero = true;
                }
            }
            SvcKey::Fwmark(m) => {
                s.by_mark.insert(m, si);
            }
        }
        if c.persistent.is_some() {
            s.steer_mask &= u32::from(c.netmask);
        }
        s.services.push(ServiceInfo {
            key,
            scheduler: name.to_string(),
            sched_flags: (c.flags.flag1 as u32) | (c.flags.flag2 as u32) << 1 | (c.flags.flag3 as u32) << 2,
            persistent: c.persistent,
            netmask: c.netmask,
            rotation: Rotation::new(name, rotation::dest_list(&slots, &servers).as_slice()),
            servers: slots,
        });
    }
    s.servers = servers;
    for r in cfg.marks() {
        let in_port = match &r.in_dev {
            Some(dev) => Some(s.ports[port_index(&s.ports, dev).ok_or_else(|| CtlError::no_such_device(dev))?].id),
            None => None,
        };
        let mask = if r.prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(r.prefix_len.min(32))) };
        s.marks.push(MarkMatch {
            in_port,
            net: u32::from(r.dst) & mask,
            mask,
            proto: r.proto.map_or(0, |p| p.number()),
            dport: r.dport.unwrap_or((0, u16::MAX)),
            mark: r.mark,
        });
    }
    let sc = cfg.sysctls();
    if sc.schedule_icmp {
        return Err(CtlError::refused("schedule_icmp=1 is not supported by this director (ICMP errors never create connections)"));
    }
    if sc.cache_bypass {
        return Err(CtlError::refused("cache_bypass=1 is not supported by this director (it only serves its own addresses)"));
    }
    if sc.sync_version != 1 {
        return Err(CtlError::refused("sync_version=0 is not supported by this director (it speaks the sync protocol version 1 only)"));
    }
    s.sysctl = Sysctl {
        expire_nodest_conn: sc.expire_nodest_conn,
        expire_quiescent_template: sc.expire_quiescent_template,
        sloppy_tcp: sc.sloppy_tcp,
        conn_reuse_mode: sc.conn_reuse_mode,
        pmtu_disc: sc.pmtu_disc,
        sync: crate::snapshot::SyncSysctl {
            threshold: sc.sync_threshold.min(254) as u8,
            period: sc.sync_period.min(255) as u8,
            refresh_secs: sc.sync_refresh_period,
            retries: sc.sync_retries,
            persist_mode: sc.sync_persist_mode != 0,
            backup_only: sc.backup_only,
        },
        defense: crate::defense::DefenseSysctl {
            drop_entry: sc.drop_entry,
            drop_packet: sc.drop_packet,
            secure_tcp: sc.secure_tcp,
            amemthresh: sc.amemthresh,
            am_droprate: sc.am_droprate,
        },
    };
    let t = cfg.timeouts();
    s.timeouts.set_tcp_tcpfin_udp(t.tcp, t.tcp_fin, t.udp);
    Ok(s)
}

/// The addresses the dataplane needs resolved: every live real server that is on-link.
pub fn wanted_neighbours(snap: &Snapshot) -> Vec<(Ipv4Addr, u16, Ipv4Addr)> {
    let mut v: Vec<(Ipv4Addr, u16, Ipv4Addr)> = Vec::new();
    // Linear in the number of servers (it runs after every publication and every 100 ms).
    let mut seen = std::collections::HashSet::new();
    for rs in snap.servers.iter().flatten().filter(|rs| !rs.local) {
        if seen.insert(rs.addr) {
            if let Some((port, src)) = snap.on_link(rs.addr) {
                v.push((rs.addr, port, src));
            }
        }
    }
    v
}

/// Handles shared by the control backend and the housekeeping thread.
#[derive(Clone)]
pub struct SlowPath {
    /// Worker-shared state.
    pub shared: Arc<Shared>,
    /// Slow-path state.
    pub slow: Arc<Mutex<Slow>>,
    /// The kernel leg's interfaces and counters, when it is on.
    pub leg: Option<Arc<crate::kernel::Leg>>,
    /// Writes configured addresses into the kernel interfaces, when the leg is on.
    pub kernel_addrs: Option<Arc<crate::kernel::addrsync::KernelAddrs>>,
}

impl SlowPath {
    /// Locks the slow-path state (poisoning is ignored: the state stays consistent because
    /// every mutation is a whole-value replacement).
    pub fn lock(&self) -> MutexGuard<'_, Slow> {
        self.slow.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks worker 0 to send a frame (ARP). Returns false if its mailbox is full.
    pub fn send(&self, t: TxRequest) -> bool {
        self.shared.mailboxes.first().is_some_and(|mb| mb.requests.push(WorkerRequest::Tx(t)).is_ok())
    }

    /// Compiles `cfg` with the current neighbours and publishes it; on success `cfg` becomes
    /// the configuration of record and new addresses are announced by gratuitous ARP. With
    /// the kernel leg, address changes are also written into the kernel interfaces, unless
    /// `from_kernel` (they came from there).
    pub fn publish(&self, cfg: &Config, from_kernel: bool) -> Result<(), CtlError> {
        let mut slow = self.lock();
        let snap = slow.compile(cfg)?;
        let old_addrs = slow.config.addrs().to_vec();
        self.shared.published.publish(snap);
        slow.config = cfg.clone();
        if let (Some(k), false) = (&self.kernel_addrs, from_kernel) {
            k.apply(&old_addrs, cfg.addrs());
        }
        for a in cfg.addrs() {
            if !old_addrs.contains(a) {
                if let Some(i) = port_index(&slow.ports, &a.dev) {
                    let port = slow.ports[i].id;
                    self.send(TxRequest::Gratuitous { port, addr: a.addr });
                }
            }
        }
        drop(slow);
        self.housekeeping(Instant::now());
        Ok(())
    }

    /// One housekeeping round: learn what workers heard, advance resolution, send probes,
    /// republish when a MAC changed.
    pub fn housekeeping(&self, now: Instant) {
        let mut slow = self.lock();
        let snap = self.shared.published.load();
        let mut changed = false;
        while let Some(NeighEvent { ip, mac, port }) = self.shared.neigh_events.pop() {
            let on_link = snap.on_link(ip).is_some_and(|(p, _)| p == port);
            changed |= slow.neigh.learn(ip, mac, port, on_link, now);
        }
        slow.links.poll(now);
        let wanted = wanted_neighbours(&snap);
        let (probes, c) = slow.neigh.tick(&wanted, now);
        changed |= c;
        for p in probes {
            self.send(TxRequest::ArpRequest { port: p.port, source: p.source, target: p.target });
        }
        if changed {
            match slow.compile(&slow.config) {
                Ok(s) => {
                    self.shared.published.publish(s);
                }
                Err(e) => log::error!("republishing after a neighbour change failed: {e}"),
            }
        }
    }

    /// Asks every worker for its counters and adds them up. Workers that do not answer in
    /// time are left out (their numbers will be back at the next request).
    pub fn counters(&self) -> WorkerCounters {
        self.counters_per_worker().0
    }

    /// The sum over workers, and each worker's own counters (`None` if it did not answer).
    pub fn counters_per_worker(&self) -> (WorkerCounters, Vec<Option<WorkerCounters>>) {
        // Only the server slots in use (live or in the trash) and the rules that exist are
        // copied: a worker spends microseconds, not a copy of the whole slot range.
        let (ports, servers, marks) = {
            let slow = self.lock();
            let cfg = &slow.config;
            let live = cfg.services().flat_map(|s| s.servers.iter().map(|r| r.id.0 as usize + 1)).max().unwrap_or(0);
            let trash = cfg.trash().map(|(_, r)| r.id.0 as usize + 1).max().unwrap_or(0);
            let servers = live.max(trash).min(slow.max_servers as usize);
            (slow.ports.iter().map(|p| p.id as usize + 1).max().unwrap_or(0), servers, cfg.marks().len())
        };
        let mut total = WorkerCounters::sized(ports, servers, marks);
        let mut each: Vec<Option<WorkerCounters>> = vec![None; self.shared.mailboxes.len()];
        let _exchange: Vec<_> = self.shared.mailboxes.iter().map(|mb| mb.exchange()).collect();
        let mut waiting = 0;
        for mb in &self.shared.mailboxes {
            while mb.replies.pop().is_some() {}
            if mb.requests.push(WorkerRequest::Counters(Box::new(WorkerCounters::sized(ports, servers, marks)))).is_ok() {
                waiting += 1;
            }
        }
        let deadline = Instant::now() + WORKER_ANSWER_TIMEOUT;
        while waiting > 0 && Instant::now() < deadline {
            let mut got = false;
            for (i, mb) in self.shared.mailboxes.iter().enumerate() {
                if each[i].is_some() {
                    continue;
                }
                if let Some(WorkerReply::Counters(c)) = mb.replies.pop() {
                    total.merge(&c);
                    each[i] = Some(*c);
                    waiting -= 1;
                    got = true;
                }
            }
            if !got {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        (total, each)
    }
}

/// A started director.
pub struct Director {
    path: SlowPath,
    ports: Vec<Port>,
    workers: Vec<Worker>,
    lcores: Vec<u32>,
    threads: Vec<JoinHandle<()>>,
    socket: PathBuf,
    conn_capacity: usize,
    sync: crate::sync::SyncCounters,
    health_board: Option<Arc<control::health::board::Board>>,
    _pool: Arc<Mempool>,
}

impl Director {
    /// Configures and starts every port, builds one worker per lcore and starts the control
    /// and housekeeping threads. Workers run in [`Director::run_until_stopped`].
    pub fn start(eal: &Eal, opts: DirectorOptions) -> Result<Director> {
        let lcores = eal.lcores();
        let nworkers = lcores.len();
        let socket_id = eal.lcore_socket(eal.main_lcore()) as i32;
        let pool = Arc::new(
            Mempool::new(eal, "director_mbufs", opts.mbufs, 256, Mempool::default_data_room(), socket_id, opts.no_huge)
                .context("creating the mbuf pool")?,
        );
        let ports = Port::all(eal);
        let steering = Steering::new(nworkers as u16, STEERING_RETA);
        let mut infos = Vec::new();
        for p in &ports {
            let cfg = PortConfig {
                rx_queues: nworkers as u16,
                tx_queues: nworkers as u16,
                rx_desc: opts.descriptors,
                tx_desc: opts.descriptors,
                rss_src_only: true,
                rss_key: Some(RSS_KEY),
                reta: steering.reta().to_vec(),
                promiscuous: false,
                // VRRP and other link-local multicast belong to the host.
                allmulticast: opts.kernel_if,
            };
            p.configure(&cfg, &pool).with_context(|| format!("configuring {}", p.name()))?;
            p.start().with_context(|| format!("starting {}", p.name()))?;
            infos.push(PortInfo { id: p.id(), mac: MacAddr(p.mac()), mtu: p.mtu(), addrs: Vec::new() });
        }
        let port_names: Vec<String> = ports.iter().map(|p| p.name()).collect();
        // The kernel leg: a TAP per port and the rings between it and the workers.
        let service = if opts.kernel_if {
            let rings = |name: &str, sp: bool, sc: bool| Ring::new(eal, name, crate::kernel::RING_SLOTS, sp, sc).map_err(anyhow::Error::from);
            Some(crate::kernel::Service::create(VdevBus::new(eal), &ports, pool.clone(), nworkers, rings)?)
        } else {
            None
        };
        let events = Arc::new(ArrayQueue::new(4096));
        let shared = Arc::new(Shared {
            published: Published::new(Snapshot { ports: infos.clone(), host_leg: service.is_some(), ..Snapshot::default() }),
            stop: Arc::new(AtomicBool::new(false)),
            neigh_events: events.clone(),
            mailboxes: (0..nworkers).map(|_| Mailbox::new(1024)).collect(),
            handoff: {
                let mut v = Vec::with_capacity(nworkers * nworkers);
                for from in 0..nworkers {
                    for to in 0..nworkers {
                        v.push(if from == to {
                            None
                        } else {
                            // Single producer (worker `from`), single consumer (worker `to`).
                            Some(Ring::new(eal, &format!("handoff_{from}_{to}"), HANDOFF_RING, true, true)
                                .context("creating a hand-off ring")?)
                        });
                    }
                }
                v
            },
            to_host: service.as_ref().map_or_else(Vec::new, |s| (0..nworkers).filter_map(|w| s.to_host_ring(w)).collect()),
            from_host: service.as_ref().map(|s| s.from_host_ring()),
        });
        let merged = (nworkers > 1).then(|| Arc::new(MergedCounts::new(nworkers, opts.max_servers as usize)));
        // Connection sync: one pair of queues per worker, shared with the daemons.
        let sync_shared = Arc::new(crate::sync::SyncShared::default());
        let sync_ports: Vec<Arc<crate::sync::SyncPort>> =
            (0..nworkers).map(|_| Arc::new(crate::sync::SyncPort::new(sync_shared.clone()))).collect();
        let max_port = ports.iter().map(|p| p.id() as usize + 1).max().unwrap_or(1);
        let hz = tsc_hz().max(1);
        let seed = hz ^ (std::process::id() as u64).rotate_left(32) ^ crate::dpdk::tsc();
        let mut workers = Vec::new();
        for (i, _) in lcores.iter().enumerate() {
            let engine = Engine::new(
                EngineConfig {
                    conn_capacity: opts.conn_capacity,
                    max_servers: opts.max_servers as usize,
                    ports: max_port,
                    ticks_per_sec: TICKS_PER_SEC,
                    seed: seed.wrapping_add(i as u64),
                    host_pps: (opts.kernel_pps / nworkers as u32).max(1),
                },
                events.clone(),
            )
            .context("creating the connection table")?;
            let mut engine = engine;
            if let Some(m) = &merged {
                engine.share_counts(m.clone(), i);
            }
            engine.attach_sync(sync_ports[i].clone());
            workers.push(Worker {
                index: i as u16,
                ports: ports.clone(),
                pool: pool.clone(),
                engine,
                shared: shared.clone(),
                tsc_per_tick: (hz / TICKS_PER_SEC as u64).max(1),
                steering: steering.clone(),
                idle_sleep: Duration::from_micros(opts.idle_sleep_us),
            });
        }
        let slow = Slow {
            config: Config::new(port_names.clone(), opts.max_servers),
            neigh: NeighTable::new(NeighParams::default()),
            ports: infos,
            max_servers: opts.max_servers,
            links: crate::linkwatch::LinkWatch::new(&ports, Instant::now()),
            pool: Some(pool.clone()),
            host_leg: service.is_some(),
            rotations: Default::default(),
        };
        let leg = service.as_ref().map(|s| s.leg());
        let path = SlowPath {
            shared: shared.clone(),
            slow: Arc::new(Mutex::new(slow)),
            kernel_addrs: leg.clone().map(|l| Arc::new(crate::kernel::addrsync::KernelAddrs::new(l))),
            leg: leg.clone(),
        };
        let sync_counters = crate::sync::SyncCounters::new(sync_ports, sync_shared);
        let backend = crate::backend::DirectorBackend::new(path.clone(), ports.clone(), opts.conn_capacity)
            .with_sync(crate::sync::SyncDaemons::new(sync_counters.clone(), shared.clone()));
        let controller = Arc::new(Mutex::new(control::server::Controller::new(backend, opts.max_servers)));
        // The address sync learns the interfaces' indexes first, so that the configuration
        // file's addresses are written into them as it is applied.
        let addr_sync = match &leg {
            Some(l) => Some(
                crate::kernel::addrsync::Sync::new(l.clone(), controller.clone())
                    .context("opening rtnetlink for the kernel interfaces")?,
            ),
            None => None,
        };
        // The configuration file is applied and published before any slow-path thread or
        // worker runs, so the first packet already sees it; a bad file stops the start-up.
        if let Some(file) = &opts.config {
            // Loading logs one line per command and the outcome (control::events).
            control::config_file::load(&mut control::server::lock(&controller), file)
                .map_err(|e| anyhow::anyhow!("configuration file {}", e.message))?;
        }
        if let Some(file) = &opts.keepalived {
            let (n, warnings) = control::keepalived::apply_file(&mut control::server::lock(&controller), file)
                .map_err(|e| anyhow::anyhow!("keepalived configuration {}", e.message))?;
            for w in warnings {
                log::warn!("{w}");
            }
            eprintln!("director: {} command(s) loaded from {}", n, file.display());
        }
        let mut threads = Vec::new();
        // Every slow-path thread is kept off the workers' CPUs (lcore ids are taken as CPU
        // ids, as with -l/-c): threads spawned here inherit the main lcore's affinity, which
        // is worker 0's, and would otherwise take CPU time from it (100 concurrent lbadm
        // clients cut forwarding by 90 % before this).
        let worker_cpus: Vec<usize> = lcores.iter().map(|&l| l as usize).collect();
        let slow_cpus = control::health::engine::cpus_except(&worker_cpus);
        let off_workers = move || {
            if let Some(c) = &slow_cpus {
                control::health::engine::pin(c);
            }
        };
        // The kernel leg's two slow-path threads, until the stop flag.
        let spawn_until_stop = |name: &str, f: Box<dyn FnOnce(&AtomicBool) + Send>| {
            let stop = shared.stop.clone();
            let pin = off_workers.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    pin();
                    f(&stop)
                })
                .with_context(|| format!("spawning the {name} thread"))
        };
        if let Some(service) = service {
            threads.push(spawn_until_stop("kernel-leg", Box::new(move |stop| service.run(stop)))?);
        }
        if let Some(sync) = addr_sync {
            threads.push(spawn_until_stop("addr-sync", Box::new(move |stop| sync.run(stop)))?);
        }
        // The health checker engine (its own threads, kept off the workers' CPUs) applies
        // its verdicts through the same controller the control socket serves.
        threads.push(
            control::server::start_health_on(
                &controller,
                shared.stop.clone(),
                control::health::engine::cpus_except(&worker_cpus),
            )
            .context("spawning the health checker thread")?,
        );
        let health_board = control::server::lock(&controller).health_board();
        {
            let path = path.clone();
            let pin = off_workers.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("housekeeping".into())
                    .spawn(move || {
                        pin();
                        while !path.shared.stop.load(Ordering::Relaxed) {
                            path.housekeeping(Instant::now());
                            std::thread::sleep(HOUSEKEEPING);
                        }
                    })
                    .context("spawning the housekeeping thread")?,
            );
        }
        {
            let socket = opts.socket.clone();
            let stop = shared.stop.clone();
            let ready = Arc::new(AtomicBool::new(false));
            let r2 = ready.clone();
            let pin = off_workers.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("control".into())
                    .spawn(move || {
                        // Its client threads inherit this.
                        pin();
                        r2.store(true, Ordering::SeqCst);
                        if let Err(e) = control::server::serve_shared(&socket, controller, stop.clone()) {
                            log::error!("control socket {}: {e}", socket.display());
                            stop.store(true, Ordering::SeqCst);
                        }
                    })
                    .context("spawning the control thread")?,
            );
        }
        Ok(Director {
            path,
            ports,
            workers,
            lcores,
            threads,
            socket: opts.socket,
            conn_capacity: opts.conn_capacity,
            sync: sync_counters,
            health_board,
            _pool: pool,
        })
    }

    /// Worker-shared state (stop flag, snapshot).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.path.shared
    }

    /// The mbuf pool of the ports' RX queues and of the frames the director builds.
    pub fn pool(&self) -> Arc<Mempool> {
        self._pool.clone()
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.lcores.len()
    }

    /// Ports in use.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// Connection-table capacity per worker.
    pub fn conn_capacity(&self) -> usize {
        self.conn_capacity
    }

    /// The slow-path handles (for observers: metrics, telemetry).
    pub fn slow_path(&self) -> &SlowPath {
        &self.path
    }

    /// The connection-sync counters (for the metrics).
    pub fn sync_counters(&self) -> &crate::sync::SyncCounters {
        &self.sync
    }

    /// The EAL lcore of each worker, in worker order.
    pub fn lcores(&self) -> &[u32] {
        &self.lcores
    }

    /// The health checker engine's board (per-checker status, counters) for observers.
    pub fn health_board(&self) -> Option<Arc<control::health::board::Board>> {
        self.health_board.clone()
    }

    /// Runs worker 0 on this (main) lcore and the others on their lcores until the stop flag
    /// is set; then stops threads and ports.
    pub fn run_until_stopped(mut self, eal: &Eal) {
        let mut workers = std::mem::take(&mut self.workers).into_iter();
        let mut main_worker = workers.next();
        for (w, &lcore) in workers.zip(self.lcores.iter().skip(1)) {
            let mut w = w;
            if let Err(e) = eal.launch(lcore, move || {
                w.run();
                0
            }) {
                log::error!("cannot start worker on lcore {lcore}: {e}");
                self.path.shared.stop.store(true, Ordering::SeqCst);
            }
        }
        if let Some(w) = main_worker.as_mut() {
            w.run();
        }
        eal.wait_all();
        self.path.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for p in &self.ports {
            p.stop();
        }
        let _ = std::fs::remove_file(&self.socket);
        drop(main_worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::model::{ConfigCommand, Protocol, ServerSpec, ServiceSpec};
    use control::MarkRule;
    use proptest::prelude::*;

    fn ports() -> Vec<PortInfo> {
        (0..2u16).map(|id| PortInfo { id, mac: MacAddr([2, 0, 0, 0, 0, id as u8]), mtu: 1500, addrs: Vec::new() }).collect()
    }

    fn config() -> Config {
        Config::new(vec!["dpdk0".into(), "dpdk1".into()], 64)
    }

    fn rule() -> impl Strategy<Value = MarkRule> {
        (
            proptest::option::of(0u8..2),
            0u8..4,
            prop_oneof![Just(0u8), Just(24u8), Just(32u8)],
            proptest::option::of(prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)]),
            proptest::option::of((75u16..85, 0u16..10)),
            0u32..4,
        )
            .prop_map(|(dev, host, len, proto, ports, mark)| MarkRule {
                in_dev: dev.map(|d| format!("dpdk{d}")),
                dst: Ipv4Addr::new(198, 51, 100, 100 + host),
                prefix_len: len,
                proto,
                dport: proto.and(ports.map(|(lo, span)| (lo, lo + span))),
                mark,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..Default::default() })]

        /// The compiled matcher the workers run agrees with the control plane's reference.
        #[test]
        fn compiled_marks_agree_with_the_reference(rules in proptest::collection::vec(rule(), 0..12),
                                                   probes in proptest::collection::vec((0u16..2, 0u8..4, prop_oneof![Just(6u8), Just(17u8), Just(1u8)], 70u16..95), 1..40)) {
            let mut cfg = config();
            for r in &rules {
                cfg.apply(&ConfigCommand::AddMark(r.clone())).unwrap();
            }
            let snap = compile(&cfg, &NeighTable::default(), &ports()).unwrap();
            for (port, host, proto, dport) in probes {
                let dst = Ipv4Addr::new(198, 51, 100, 100 + host);
                let want = control::evaluate_marks(cfg.marks(), &format!("dpdk{port}"), dst, proto, dport);
                prop_assert_eq!(snap.mark_of(port, dst, proto, dport), want);
            }
        }
    }

    #[test]
    fn compile_places_addresses_services_and_resolved_servers() {
        let mut cfg = config();
        let vip = Ipv4Addr::new(198, 51, 100, 100);
        for (a, len) in [(Ipv4Addr::new(198, 51, 100, 2), 24), (vip, 32)] {
            cfg.apply(&ConfigCommand::AddAddr(control::model::AddrConfig { addr: a, prefix_len: len, dev: "dpdk1".into() })).unwrap();
        }
        let key = ServiceKey::Fwmark(10);
        let mut spec = ServiceSpec::new(key);
        spec.scheduler = "sh".into();
        spec.persistent = Some(360);
        cfg.apply(&ConfigCommand::AddService(spec)).unwrap();
        for host in [11, 12, 77] {
            let srv = ServerSpec::new(Ipv4Addr::new(if host == 77 { 203 } else { 198 }, if host == 77 { 0 } else { 51 }, if host == 77 { 113 } else { 100 }, host), 0);
            cfg.apply(&ConfigCommand::AddServer { service: key, server: srv }).unwrap();
        }
        cfg.apply(&ConfigCommand::SetSysctl { name: "sloppy_tcp".into(), value: 1 }).unwrap();
        let mut neigh = NeighTable::default();
        neigh.learn(Ipv4Addr::new(198, 51, 100, 11), MacAddr([2, 0, 0, 0, 0, 0x11]), 1, true, Instant::now());
        let s = compile(&cfg, &neigh, &ports()).unwrap();
        assert!(s.is_local_on(vip, 1) && !s.is_local_on(vip, 0));
        assert_eq!(s.by_mark.get(&10), Some(&0));
        assert_eq!(s.services[0].persistent, Some(360));
        let by_addr = |h: u8| s.servers.iter().flatten().find(|r| r.addr.octets()[3] == h).unwrap().clone();
        assert_eq!((by_addr(11).egress_port, by_addr(11).mac), (Some(1), Some(MacAddr([2, 0, 0, 0, 0, 0x11]))));
        assert_eq!((by_addr(12).egress_port, by_addr(12).mac), (Some(1), None), "on-link, not yet resolved");
        assert_eq!(by_addr(77).egress_port, None, "not on-link: DR cannot reach it");
        assert!(s.sysctl.sloppy_tcp);
        let w = wanted_neighbours(&s);
        assert_eq!(w.len(), 2, "only on-link servers are resolved: {w:?}");
        // A sysctl the director cannot honour is refused, not ignored.
        cfg.apply(&ConfigCommand::SetSysctl { name: "cache_bypass".into(), value: 1 }).unwrap();
        assert!(compile(&cfg, &neigh, &ports()).is_err());
    }
}
