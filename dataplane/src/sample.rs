//! One observation of a running director — services and servers with their counters, ports,
//! workers — taken for the Prometheus exporter (`metrics`) and the DPDK telemetry commands
//! (`telemetry`).
//!
//! How it is taken, and why a worker never waits for it: the configuration is read under the
//! slow-path mutex (workers never take it); worker counters come the way `lbadm -L` gets them,
//! by a request in each worker's mailbox that the worker answers between bursts with a copy of
//! its counters ([`SlowPath::counters_per_worker`], sized to the server slots in use); port
//! counters come from `rte_eth_stats_get`. A worker that does not answer within a second is
//! left out of that sample ([`WorkerSample::counters`] is `None`).
//!
//! Concurrency: a [`Sampler`] is shared by the exporter thread and DPDK's telemetry thread;
//! its own state (the previous sample's busy cycles, the totals of deleted servers) sits
//! behind a mutex taken after the mailbox exchange. [`Sample`] is plain data: renderers are
//! pure functions of it and are tested without EAL.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use control::health::board::Board;
use control::model::{ipvsadm_service_cmp, ServiceKey, Slot};
use control::MarkRule;

use crate::counters::{DropReason, PortCounters, ServerCounters, WorkerCounters};
use crate::director::SlowPath;
use crate::dpdk::{LinkStatus, Port, PortStats};

/// One real server of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSample {
    /// Address.
    pub addr: Ipv4Addr,
    /// Port (0 on port-0 and fwmark services without a port).
    pub port: u16,
    /// Weight.
    pub weight: u32,
    /// Counters summed over workers.
    pub counters: ServerCounters,
}

/// One virtual service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSample {
    /// Identity.
    pub key: ServiceKey,
    /// Scheduler name.
    pub scheduler: String,
    /// Persistence timeout in seconds.
    pub persistent: Option<u32>,
    /// Persistence netmask.
    pub netmask: Ipv4Addr,
    /// Live real servers in listing order (newest first, as `-L`).
    pub servers: Vec<ServerSample>,
    /// Counters of the service: its live servers and its deleted servers still counted.
    pub counters: ServerCounters,
}

/// One port.
#[derive(Debug, Clone, PartialEq)]
pub struct PortSample {
    /// `dpdkN`.
    pub name: String,
    /// Port id.
    pub id: u16,
    /// DPDK device name (what `dpdk-dumpcap -i` takes, besides the port id).
    pub device: String,
    /// NIC counters.
    pub stats: PortStats,
    /// Link.
    pub link: LinkStatus,
    /// MTU.
    pub mtu: u16,
    /// Dataplane counters of the port, summed over workers.
    pub counters: PortCounters,
    /// Dataplane drops by reason ([`DropReason`] order), summed over workers.
    pub drops: [u64; DropReason::COUNT],
    /// The port's kernel interface (`crate::kernel`), if the kernel leg runs.
    pub kernel: Option<KernelSample>,
}

/// Counters of a port's kernel interface (the kernel leg).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelSample {
    /// Administratively up, as the kernel last reported.
    pub up: bool,
    /// Frames written into the interface (to the host).
    pub to_host: u64,
    /// Frames the TAP refused.
    pub to_host_errors: u64,
    /// Frames the host sent out of the interface.
    pub from_host: u64,
    /// Frames from the host dropped as malformed.
    pub from_host_malformed: u64,
    /// Frames from the host dropped because the queue to the port was full.
    pub from_host_full: u64,
    /// Times the interface was recreated.
    pub recreated: u64,
}

impl KernelSample {
    fn of(i: &crate::kernel::Iface) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        KernelSample {
            up: i.up.load(Relaxed),
            to_host: i.to_host.load(Relaxed),
            to_host_errors: i.to_host_errors.load(Relaxed),
            from_host: i.from_host.load(Relaxed),
            from_host_malformed: i.from_host_malformed.load(Relaxed),
            from_host_full: i.from_host_full.load(Relaxed),
            recreated: i.recreated.load(Relaxed),
        }
    }
}

/// One worker.
#[derive(Debug, Clone)]
pub struct WorkerSample {
    /// Worker index (= queue index).
    pub index: usize,
    /// EAL lcore.
    pub lcore: u32,
    /// Its counters, `None` if it did not answer in time.
    pub counters: Option<WorkerCounters>,
    /// Share of poll-loop time spent on packets since the previous sample (or since start,
    /// for the first sample), 0..=1.
    pub busy_ratio: Option<f64>,
}

impl WorkerSample {
    /// Packets the worker's engine handled (received from its queues or handed to it).
    pub fn packets(&self) -> Option<u64> {
        self.counters.as_ref().map(|c| c.ports.iter().map(|p| p.rx).sum())
    }

    /// Persistence templates in its table.
    pub fn templates(&self) -> Option<u64> {
        self.counters.as_ref().map(|c| c.servers.iter().map(|s| u64::from(s.persist)).sum())
    }
}

/// One health checker (`lbadm check show`'s row, reduced to numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSample {
    /// The service of the checked server.
    pub service: ServiceKey,
    /// The checked real server.
    pub addr: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// keepalived's name of the checker (`TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `MISC_CHECK`).
    pub kind: &'static str,
    /// Position among the server's checkers (1-based; keepalived allows several).
    pub index: usize,
    /// The checker's state: up (passing) or down.
    pub up: bool,
    /// State changes so far (0 before the engine ran it).
    pub transitions: u64,
    /// Failed probes since the last success.
    pub consecutive_failures: u32,
}

/// Health checking: every checker, the quorum of every managed service, engine counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthSample {
    /// Checkers in configuration order.
    pub checks: Vec<CheckSample>,
    /// Managed services with their quorum state (true: quorum held, the real servers serve;
    /// false: lost, the sorry server serves if there is one).
    pub quorum: Vec<(ServiceKey, bool)>,
    /// Engine counters.
    pub counters: control::health::board::HealthCounters,
}

/// Director-wide totals as IPVS keeps them in `/proc/net/ip_vs_stats`: monotonic, including
/// servers since deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets forwarded to real servers.
    pub inpkts: u64,
    /// Bytes forwarded to real servers.
    pub inbytes: u64,
}

/// Everything observable at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Services in `-L -n` order.
    pub services: Vec<ServiceSample>,
    /// Ports in id order.
    pub ports: Vec<PortSample>,
    /// Workers in index order.
    pub workers: Vec<WorkerSample>,
    /// IPVS totals.
    pub totals: Totals,
    /// Mark rules with their packets and bytes (rule order).
    pub marks: Vec<(MarkRule, u64, u64)>,
    /// Generated replies suppressed by the rate limit.
    pub replies_ratelimited: u64,
    /// Neighbour events lost (queue to the control side full).
    pub neigh_events_lost: u64,
    /// TSC frequency (cycles to seconds).
    pub tsc_hz: u64,
    /// Health checking (`None` when the director runs no checker engine).
    pub health: Option<HealthSample>,
    /// Connection sync, if the director has sync queues.
    pub sync: Option<SyncSample>,
}

/// Connection sync at one moment.
#[derive(Debug, Clone, Default)]
pub struct SyncSample {
    /// The master daemon runs.
    pub master: bool,
    /// The backup daemon runs.
    pub backup: bool,
    /// Counters, every drop reason included (`SyncCounters::totals`).
    pub counters: control::proto::SyncStatus,
}

/// Per-slot memory that keeps [`Totals`] monotonic when servers are deleted and their slots
/// reused, and the previous busy cycles for [`WorkerSample::busy_ratio`].
#[derive(Debug, Default)]
struct Memory {
    /// Slot → (incarnation, last counters seen).
    slots: HashMap<u32, (u64, ServerCounters)>,
    /// Counts of slots no longer counted by the workers.
    gone: Totals,
    /// Per worker: (busy, poll) cycles of the previous sample.
    cycles: Vec<Option<(u64, u64)>>,
}

/// Takes [`Sample`]s of a running director (see the module documentation).
pub struct Sampler {
    path: SlowPath,
    ports: Vec<Port>,
    lcores: Vec<u32>,
    tsc_hz: u64,
    health: Option<Arc<Board>>,
    memory: Mutex<Memory>,
    sync: Option<crate::sync::SyncCounters>,
}

impl Sampler {
    /// A sampler over a director's slow path, ports and worker lcores.
    pub fn new(path: SlowPath, ports: Vec<Port>, lcores: Vec<u32>) -> Self {
        Sampler {
            path,
            ports,
            lcores,
            tsc_hz: crate::dpdk::tsc_hz().max(1),
            health: None,
            memory: Mutex::new(Memory::default()),
            sync: None,
        }
    }

    /// The same, sampling connection sync too (atomic loads, no mailbox).
    pub fn with_sync(mut self, sync: crate::sync::SyncCounters) -> Self {
        self.sync = Some(sync);
        self
    }

    /// Also samples the health checker engine's board (see [`Director::health_board`]).
    ///
    /// [`Director::health_board`]: crate::director::Director::health_board
    pub fn with_health(mut self, board: Option<Arc<Board>>) -> Self {
        self.health = board;
        self
    }

    /// Takes one sample.
    pub fn take(&self) -> Sample {
        // 1. Configuration: services, servers (slot, incarnation), trash, marks.
        struct Srv {
            slot: u32,
            incarnation: u64,
            addr: Ipv4Addr,
            port: u16,
            weight: u32,
        }
        let (mut services, trash, marks, health) = {
            let slow = self.path.lock();
            let cfg = &slow.config;
            let health = self.health.as_ref().map(|board| health_sample(cfg, board));
            let inc = |id| match cfg.slot(id) {
                Slot::Live { incarnation, .. } | Slot::Trash { incarnation, .. } => incarnation,
                Slot::Free => 0,
            };
            let services: Vec<(ServiceSample, Vec<Srv>)> = cfg
                .services()
                .map(|s| {
                    let c = &s.config;
                    let servers = s
                        .servers
                        .iter()
                        .map(|r| Srv { slot: r.id.0, incarnation: inc(r.id), addr: r.addr, port: r.port, weight: r.weight })
                        .collect();
                    (
                        ServiceSample {
                            key: c.key,
                            scheduler: c.scheduler.name().to_string(),
                            persistent: c.persistent,
                            netmask: c.netmask,
                            servers: Vec::new(),
                            counters: ServerCounters::default(),
                        },
                        servers,
                    )
                })
                .collect();
            let trash: Vec<(ServiceKey, u32, u64)> = cfg.trash().map(|(k, r)| (*k, r.id.0, inc(r.id))).collect();
            (services, trash, cfg.marks().to_vec(), health)
        };
        services.sort_by(|a, b| ipvsadm_service_cmp(&a.0.key, &b.0.key).cmp(&0));

        // 2. Workers (mailbox exchange), then ports.
        let (total, each) = self.path.counters_per_worker();
        let server = |slot: u32| total.servers.get(slot as usize).copied().unwrap_or_default();
        let ports: Vec<PortSample> = self
            .ports
            .iter()
            .map(|p| {
                let i = p.id() as usize;
                PortSample {
                    name: p.name(),
                    id: p.id(),
                    device: p.device_name(),
                    stats: p.stats(),
                    link: p.link(),
                    mtu: p.mtu(),
                    counters: total.ports.get(i).copied().unwrap_or_default(),
                    drops: total.port_drops.get(i).copied().unwrap_or([0; DropReason::COUNT]),
                    kernel: self.path.leg.as_ref().and_then(|l| l.iface_of_port(p.id())).map(KernelSample::of),
                }
            })
            .collect();

        // 3. Services with their servers' counters; monotonic totals; busy ratios.
        let mut mem = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen: HashMap<u32, (u64, ServerCounters)> = HashMap::new();
        let mut out_services = Vec::with_capacity(services.len());
        for (mut svc, servers) in services {
            for r in servers {
                let c = server(r.slot);
                svc.counters.merge(&c);
                seen.insert(r.slot, (r.incarnation, c));
                svc.servers.push(ServerSample { addr: r.addr, port: r.port, weight: r.weight, counters: c });
            }
            for (_, slot, _) in trash.iter().filter(|(k, _, _)| *k == svc.key) {
                let c = server(*slot);
                let c = ServerCounters { active: 0, inactive: 0, persist: 0, ..c };
                svc.counters.merge(&c);
            }
            out_services.push(svc);
        }
        for (_, slot, inc) in &trash {
            seen.insert(*slot, (*inc, server(*slot)));
        }
        let Memory { slots, gone, cycles } = &mut *mem;
        for (slot, (inc, last)) in slots.iter() {
            let still = seen.get(slot).is_some_and(|(i, _)| i == inc);
            if !still {
                gone.conns += last.conns;
                gone.inpkts += last.inpkts;
                gone.inbytes += last.inbytes;
            }
        }
        *slots = seen;
        let mut totals = *gone;
        for (_, c) in slots.values() {
            totals.conns += c.conns;
            totals.inpkts += c.inpkts;
            totals.inbytes += c.inbytes;
        }
        cycles.resize(each.len(), None);
        let workers = each
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let busy_ratio = c.as_ref().and_then(|c| {
                    let (b0, p0) = cycles[i].unwrap_or((0, 0));
                    cycles[i] = Some((c.busy_cycles, c.poll_cycles));
                    let (db, dp) = (c.busy_cycles.saturating_sub(b0), c.poll_cycles.saturating_sub(p0));
                    (dp > 0).then(|| (db as f64 / dp as f64).min(1.0))
                });
                WorkerSample { index: i, lcore: self.lcores.get(i).copied().unwrap_or(i as u32), counters: c, busy_ratio }
            })
            .collect();
        drop(mem);
        let marks = marks.into_iter().zip(total.marks.iter().copied().chain(std::iter::repeat((0, 0)))).map(|(r, (p, b))| (r, p, b)).collect();
        Sample {
            services: out_services,
            ports,
            workers,
            totals,
            marks,
            replies_ratelimited: total.replies_ratelimited,
            neigh_events_lost: total.neigh_events_lost,
            tsc_hz: self.tsc_hz,
            sync: self.sync.as_ref().map(|c| {
                let (master, backup) = c.running();
                SyncSample { master, backup, counters: c.totals() }
            }),
            health,
        }
    }
}

/// The checkers of `cfg` (their up/down state is part of the configuration) with their
/// runtime rows from the engine's board (its mutex is held only to copy a row).
fn health_sample(cfg: &control::Config, board: &Board) -> HealthSample {
    let mut checks = Vec::new();
    let mut quorum = Vec::new();
    for (key, svc) in cfg.health().services() {
        quorum.push((*key, svc.quorum_up));
        for srv in &svc.servers {
            for (i, c) in srv.checks.iter().enumerate() {
                let row = board.get(c.id);
                checks.push(CheckSample {
                    service: *key,
                    addr: srv.spec.addr,
                    port: srv.spec.port,
                    kind: c.spec.kind.keepalived_name(),
                    index: i + 1,
                    up: c.up,
                    transitions: row.as_ref().map_or(0, |r| r.transitions),
                    consecutive_failures: row.as_ref().map_or(0, |r| r.consecutive_failures),
                });
            }
        }
    }
    HealthSample { checks, quorum, counters: board.snapshot() }
}
