//! Connection synchronisation daemons (IPVS sync protocol version 1, `control::sync_proto`):
//! the master thread that sends what the workers report, the backup thread that receives and
//! hands entries to their owner worker, and the lock-free queues between them and the workers.
//!
//! Data flow:
//! ```text
//! worker i ──SyncPort out ring (SPSC, bounded)──► master thread ─► UDP 224.0.0.81:8848
//!                                                  (MessageBuilder, maxlen, flush ≤ 2 s)
//! UDP ─► backup thread ─ decode, syncid filter, owner(caddr) ─► SyncPort.inbound of the owner
//!        ─► worker installs it between bursts (Engine::sync_poll)
//! ```
//!
//! Invariants and concurrency:
//! - Workers only push to a preallocated single-producer ring (`rtrb`, wait-free; the worker
//!   owns the producer end, [`SyncSender`]) and pop from a preallocated `ArrayQueue`
//!   (lock-free); no allocation, no syscall; a full queue drops the record and counts it (`ring_full`,
//!   `install_queue_full`). Their counters ([`PortStats`]) are single-writer atomics updated
//!   with a plain load and store (no read-modify-write), read by the control thread.
//! - Whether a role runs is two atomic flags ([`SyncShared`]) that workers load once per
//!   loop iteration; the per-packet send rules live in the engine (`engine::sync_conn`), the
//!   sysctls they use come with the configuration snapshot.
//! - The sockets are ordinary host UDP sockets on the `--mcast-interface` (a kernel
//!   interface such as the director's `dpdkN` kernel leg): the master binds to the
//!   interface's address and `SO_BINDTODEVICE`, sets the multicast interface, TTL, loopback
//!   off, and connects to group:port; the backup binds group:port on the device and joins
//!   the group there — the kernel's `make_send_sock` / `make_receive_sock`.
//! - Each daemon thread polls its stop flag and the director's stop flag at least every
//!   100 ms; [`SyncDaemons`] stops and joins them on `--stop-daemon` and when dropped.
//! - Events are logged one line each through the `log` facade (target `sync`), never by a
//!   worker: a daemon started, refused or stopped (control thread); per daemon run, the first
//!   message sent or received, the first send failure and the first rejected message of each
//!   reason (daemon threads; later ones are only counted). [`SyncCounters`] reads every
//!   counter from any thread (`lbadm sync show`, the `director_sync_*` metrics).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;

use control::error::CtlError;
use control::ipvsadm::{DaemonRole, DaemonSpec};
use control::proto::{DaemonInfo, SyncStatus};
use control::sync_proto::{
    self, flags, proto, Addrs, DecodeError, Entry, MessageBuilder, SyncConn, DEFAULT_MAXLEN,
    IPV4_UDP_HEADERS, SYNC_GROUP, SYNC_PORT, SYNC_TTL,
};

use crate::snapshot::Published;
use crate::steer::Steering;

/// Log target of connection-sync events.
pub const LOG_TARGET: &str = "sync";

/// Slots of each worker's outgoing queue (records waiting for the master thread).
pub const OUT_QUEUE: usize = 16384;
/// Slots of each worker's incoming queue (records waiting to be installed).
pub const IN_QUEUE: usize = 16384;
/// A partly filled message is sent once it is this old (the kernel: 2 s, `IPVS_SYNC_FLUSH_TIME`;
/// the director sends sooner so that a takeover loses less).
pub const FLUSH_DELAY: Duration = Duration::from_millis(200);
/// How long the master thread sleeps between rounds of draining the queues.
const MASTER_IDLE: Duration = Duration::from_millis(1);
/// Receive timeout of the backup socket (bounds the reaction to a stop request).
const BACKUP_POLL: Duration = Duration::from_millis(100);

/// One synchronised entry between a worker and the daemon threads: an IPv4 `SyncConn`
/// without options, host order (36 bytes, `Copy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncRecord {
    /// IP protocol (0 for fwmark templates).
    pub proto: u8,
    /// Protocol state (templates: 0 NONE, 1 ASSURED).
    pub state: u16,
    /// `IP_VS_CONN_F_*` flags as on the wire.
    pub flags: u32,
    /// Client port.
    pub cport: u16,
    /// Virtual port.
    pub vport: u16,
    /// Real-server port.
    pub dport: u16,
    /// Firewall mark (the fwmark service's mark, 0 for address services).
    pub fwmark: u32,
    /// Timeout in seconds.
    pub timeout: u32,
    /// Client address (templates: client & netmask).
    pub caddr: u32,
    /// Virtual address (fwmark templates: the mark).
    pub vaddr: u32,
    /// Real-server address.
    pub daddr: u32,
}

impl SyncRecord {
    /// The wire entry.
    pub fn to_conn(&self) -> SyncConn {
        SyncConn::v4(
            self.proto,
            self.flags,
            self.state,
            (Ipv4Addr::from(self.caddr), self.cport),
            (Ipv4Addr::from(self.vaddr), self.vport),
            (Ipv4Addr::from(self.daddr), self.dport),
            self.fwmark,
            self.timeout,
        )
    }

    /// A received entry as a backup keeps it (flags masked to what a backup accepts, plus
    /// SYNC), or why the director cannot use it.
    pub fn from_conn(c: &SyncConn) -> Result<SyncRecord, &'static str> {
        let Addrs::V4 { caddr, vaddr, daddr } = c.addrs else { return Err("entry_ipv6") };
        if !c.pe_data.is_empty() {
            // No persistence engine in the director (the kernel without the PE module skips
            // such entries too).
            return Err("entry_pe");
        }
        let template = c.flags & flags::TEMPLATE != 0;
        let ok_proto = matches!(c.protocol, proto::TCP | proto::UDP) || (template && c.protocol == proto::IP);
        if !ok_proto {
            return Err("entry_protocol");
        }
        Ok(SyncRecord {
            proto: c.protocol,
            state: c.state,
            flags: (c.flags & flags::BACKUP_MASK) | flags::SYNC,
            cport: c.cport,
            vport: c.vport,
            dport: c.dport,
            fwmark: c.fwmark,
            timeout: c.timeout,
            caddr: u32::from(caddr),
            vaddr: u32::from(vaddr),
            daddr: u32::from(daddr),
        })
    }
}

/// Single-writer counter: the owner adds with a plain load and store (no read-modify-write),
/// readers load.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (owner only).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a worker did not install a received entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum InstallDrop {
    /// No service or no real server matches the entry (the kernel would keep it unbound).
    NoDest,
    /// The connection table is full.
    TableFull,
    /// An INACTIVE update for a connection already bound elsewhere (the kernel ignores these
    /// "expiration messages for a connection already replaced").
    Stale,
}

impl InstallDrop {
    /// Number of reasons.
    pub const COUNT: usize = 3;
    /// All reasons.
    pub const ALL: [InstallDrop; Self::COUNT] = [InstallDrop::NoDest, InstallDrop::TableFull, InstallDrop::Stale];

    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            InstallDrop::NoDest => "install_no_dest",
            InstallDrop::TableFull => "install_table_full",
            InstallDrop::Stale => "install_stale",
        }
    }
}

/// What one worker counts about synchronisation (written by the worker only).
#[derive(Debug, Default)]
pub struct PortStats {
    /// Records put in the outgoing queue.
    pub queued: Counter,
    /// Records dropped because the outgoing queue was full.
    pub ring_full: Counter,
    /// Received records installed or updated.
    pub applied: Counter,
    /// Received records not installed, by [`InstallDrop`].
    pub install_drops: [Counter; InstallDrop::COUNT],
}

/// Roles running, shared by every worker and the daemons.
#[derive(Debug, Default)]
pub struct SyncShared {
    /// The master daemon runs: workers report entries.
    pub master: AtomicBool,
    /// The backup daemon runs (with `backup_only` the workers stop forwarding).
    pub backup: AtomicBool,
}

/// One worker's connection to the daemons.
#[derive(Debug)]
pub struct SyncPort {
    /// Worker → master thread: the producer end of a single-producer single-consumer ring,
    /// until the worker takes it ([`Self::sender`]).
    out_tx: Mutex<Option<rtrb::Producer<SyncRecord>>>,
    /// The consumer end, read by the master thread ([`Self::drain`]); the lock is never
    /// taken by a worker.
    out_rx: Mutex<rtrb::Consumer<SyncRecord>>,
    /// Slots of the outgoing ring.
    out_capacity: usize,
    /// Backup thread → worker.
    pub inbound: ArrayQueue<SyncRecord>,
    /// Roles running.
    pub shared: Arc<SyncShared>,
    /// The worker's counters.
    pub stats: PortStats,
}

impl SyncPort {
    /// A port with the default queue sizes.
    pub fn new(shared: Arc<SyncShared>) -> SyncPort {
        Self::with_capacity(shared, OUT_QUEUE, IN_QUEUE)
    }

    /// A port with explicit queue sizes (tests, benchmarks).
    pub fn with_capacity(shared: Arc<SyncShared>, out: usize, inbound: usize) -> SyncPort {
        let (tx, rx) = rtrb::RingBuffer::new(out.max(1));
        SyncPort {
            out_tx: Mutex::new(Some(tx)),
            out_rx: Mutex::new(rx),
            out_capacity: out.max(1),
            inbound: ArrayQueue::new(inbound.max(1)),
            shared,
            stats: PortStats::default(),
        }
    }

    /// The worker's end of the outgoing ring (once; `None` afterwards).
    pub fn sender(self: &Arc<Self>) -> Option<SyncSender> {
        let tx = self.out_tx.lock().ok()?.take()?;
        Some(SyncSender { tx, port: self.clone() })
    }

    /// Master thread: hands at most `max` queued records to `f`, oldest first; how many.
    pub fn drain(&self, max: usize, mut f: impl FnMut(SyncRecord)) -> usize {
        let Ok(mut rx) = self.out_rx.lock() else { return 0 };
        let n = rx.slots().min(max);
        let Ok(chunk) = rx.read_chunk(n) else { return 0 };
        let (a, b) = chunk.as_slices();
        a.iter().chain(b.iter()).for_each(|r| f(*r));
        chunk.commit_all();
        n
    }

    /// Slots of the outgoing ring.
    pub fn out_capacity(&self) -> usize {
        self.out_capacity
    }
}

/// A worker's end of its outgoing ring: wait-free, no allocation, one release store per
/// record.
#[derive(Debug)]
pub struct SyncSender {
    tx: rtrb::Producer<SyncRecord>,
    port: Arc<SyncPort>,
}

impl SyncSender {
    /// Queues an entry for the master; false (and counted) when the ring is full.
    #[inline]
    pub fn send(&mut self, r: SyncRecord) -> bool {
        if self.tx.push(r).is_ok() {
            self.port.stats.queued.add(1);
            true
        } else {
            self.port.stats.ring_full.add(1);
            false
        }
    }

    /// The port this end belongs to.
    pub fn port(&self) -> &Arc<SyncPort> {
        &self.port
    }
}

/// Counters of the daemon threads (each written by one thread).
#[derive(Debug, Default)]
pub struct DaemonStats {
    /// Entries sent.
    pub entries_sent: Counter,
    /// Messages sent.
    pub messages_sent: Counter,
    /// Bytes sent.
    pub bytes_sent: Counter,
    /// Messages the socket refused.
    pub send_errors: Counter,
    /// Datagrams received.
    pub messages_received: Counter,
    /// Entries in accepted messages.
    pub entries_received: Counter,
    /// Rejected messages by [`DecodeError`] index.
    pub msg_drops: [Counter; DecodeError::NAMES.len()],
    /// Datagrams longer than the backup's maximum length.
    pub msg_too_long: Counter,
    /// Entries skipped: unknown option, protocol, state, PE without name (decoder), then
    /// IPv6, persistence engine, protocol the director does not serve (conversion).
    pub entry_skips: [Counter; 7],
    /// Entries whose owner worker's queue was full.
    pub install_queue_full: Counter,
}

const ENTRY_SKIP_NAMES: [&str; 7] = [
    "entry_unknown_option",
    "entry_state",
    "entry_protocol_unknown",
    "entry_pe_without_name",
    "entry_ipv6",
    "entry_pe",
    "entry_protocol",
];

fn skip_index(name: &str) -> usize {
    match name {
        "unknown_option" => 0,
        "state" => 1,
        "protocol" => 2,
        "pe_without_name" => 3,
        "entry_ipv6" => 4,
        "entry_pe" => 5,
        _ => 6,
    }
}

fn role_name(r: DaemonRole) -> &'static str {
    match r {
        DaemonRole::Master => "master",
        DaemonRole::Backup => "backup",
    }
}

/// Every drop reason [`SyncCounters::totals`] reports, in its order.
pub fn drop_reasons() -> Vec<String> {
    let mut v: Vec<String> = vec!["ring_full".into(), "send_error".into(), "msg_too_long".into()];
    v.extend(DecodeError::NAMES.iter().map(|n| format!("msg_{n}")));
    v.extend(ENTRY_SKIP_NAMES.iter().map(|n| n.to_string()));
    v.push("install_queue_full".into());
    v.extend(InstallDrop::ALL.iter().map(|r| r.name().to_string()));
    v
}

/// Every counter of connection sync, readable from any thread (cheap to clone).
#[derive(Debug, Clone)]
pub struct SyncCounters {
    ports: Vec<Arc<SyncPort>>,
    stats: Arc<DaemonStats>,
    shared: Arc<SyncShared>,
}

impl SyncCounters {
    /// The counters of the workers' `ports` and of the daemon threads.
    pub fn new(ports: Vec<Arc<SyncPort>>, shared: Arc<SyncShared>) -> SyncCounters {
        SyncCounters { ports, stats: Arc::new(DaemonStats::default()), shared }
    }

    /// Which roles run: (master, backup).
    pub fn running(&self) -> (bool, bool) {
        (self.shared.master.load(Ordering::Relaxed), self.shared.backup.load(Ordering::Relaxed))
    }

    /// Totals over workers and daemons, with every reason of [`drop_reasons`] in its order
    /// (zeros included); `daemons` is empty.
    pub fn totals(&self) -> SyncStatus {
        let s = &self.stats;
        let (mut queued, mut applied, mut ring_full, mut install) = (0, 0, 0, [0u64; InstallDrop::COUNT]);
        for p in &self.ports {
            queued += p.stats.queued.get();
            applied += p.stats.applied.get();
            ring_full += p.stats.ring_full.get();
            for (a, c) in install.iter_mut().zip(&p.stats.install_drops) {
                *a += c.get();
            }
        }
        let mut values = vec![ring_full, s.send_errors.get(), s.msg_too_long.get()];
        values.extend(s.msg_drops.iter().map(Counter::get));
        values.extend(s.entry_skips.iter().map(Counter::get));
        values.push(s.install_queue_full.get());
        values.extend(install);
        SyncStatus {
            daemons: Vec::new(),
            entries_queued: queued,
            entries_sent: s.entries_sent.get(),
            messages_sent: s.messages_sent.get(),
            bytes_sent: s.bytes_sent.get(),
            messages_received: s.messages_received.get(),
            entries_received: s.entries_received.get(),
            entries_applied: applied,
            drops: drop_reasons().into_iter().zip(values).collect(),
        }
    }
}

/// Parameters of a running daemon, as `-L --daemon` reports them.
fn info(spec: &DaemonSpec, maxlen: u16) -> DaemonInfo {
    DaemonInfo {
        role: spec.role,
        mcast_interface: spec.mcast_interface.clone(),
        syncid: spec.syncid.unwrap_or(0),
        sync_maxlen: maxlen,
        mcast_group: spec.mcast_group.unwrap_or(SYNC_GROUP),
        mcast_port: spec.mcast_port.unwrap_or(SYNC_PORT),
        mcast_ttl: spec.mcast_ttl.unwrap_or(SYNC_TTL),
    }
}

/// The kernel's `sync_maxlen` (start_sync_thread): a master ignores the interface MTU
/// (1500 − 28 by default, a given value clamped to 1..=65507); a backup uses
/// clamp(MTU, 1500, 65535) − 28 by default, a given value clamped to 1024..=65507.
pub fn effective_maxlen(role: DaemonRole, given: Option<u16>, if_mtu: u32) -> u16 {
    let top = u16::MAX - IPV4_UDP_HEADERS;
    match (role, given) {
        (DaemonRole::Master, None) => DEFAULT_MAXLEN,
        (DaemonRole::Master, Some(v)) => v.clamp(1, top),
        (DaemonRole::Backup, None) => (if_mtu.clamp(1500, 65535) as u16) - IPV4_UDP_HEADERS,
        (DaemonRole::Backup, Some(v)) => v.clamp(1024, top),
    }
}

/// The interface's index, first IPv4 address and MTU, or the kernel's ENODEV message.
fn interface(name: &str) -> Result<(u32, Option<Ipv4Addr>, u32), CtlError> {
    let no_dev = || CtlError::refused("No such device");
    let index = nix::net::if_::if_nametoindex(name).map_err(|_| no_dev())?;
    let mut addr = None;
    if let Ok(list) = nix::ifaddrs::getifaddrs() {
        for ifa in list {
            if ifa.interface_name != name {
                continue;
            }
            if let Some(a) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
                addr = Some(a.ip());
                break;
            }
        }
    }
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500);
    Ok((index, addr, mtu))
}

fn io_err(what: &str, e: std::io::Error) -> CtlError {
    CtlError::refused(format!("sync daemon: {what}: {e}"))
}

/// The master's socket (`make_send_sock`).
fn send_socket(ifname: &str, addr: Option<Ipv4Addr>, d: &DaemonInfo) -> Result<UdpSocket, CtlError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| io_err("socket", e))?;
    s.bind_device(Some(ifname.as_bytes())).map_err(|e| io_err("SO_BINDTODEVICE", e))?;
    if let Some(a) = addr {
        s.set_multicast_if_v4(&a).map_err(|e| io_err("IP_MULTICAST_IF", e))?;
    }
    s.set_multicast_loop_v4(false).map_err(|e| io_err("IP_MULTICAST_LOOP", e))?;
    s.set_multicast_ttl_v4(u32::from(d.mcast_ttl)).map_err(|e| io_err("IP_MULTICAST_TTL", e))?;
    let local = SocketAddrV4::new(addr.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
    s.bind(&local.into()).map_err(|e| io_err("bind", e))?;
    s.connect(&SocketAddrV4::new(d.mcast_group, d.mcast_port).into()).map_err(|e| io_err("connect", e))?;
    Ok(s.into())
}

/// The backup's socket (`make_receive_sock`).
fn receive_socket(ifname: &str, index: u32, d: &DaemonInfo) -> Result<UdpSocket, CtlError> {
    use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| io_err("socket", e))?;
    s.set_reuse_address(true).map_err(|e| io_err("SO_REUSEADDR", e))?;
    s.bind_device(Some(ifname.as_bytes())).map_err(|e| io_err("SO_BINDTODEVICE", e))?;
    s.bind(&SocketAddrV4::new(d.mcast_group, d.mcast_port).into()).map_err(|e| io_err("bind", e))?;
    s.join_multicast_v4_n(&d.mcast_group, &InterfaceIndexOrAddress::Index(index))
        .map_err(|e| io_err("IP_ADD_MEMBERSHIP", e))?;
    s.set_read_timeout(Some(BACKUP_POLL)).map_err(|e| io_err("SO_RCVTIMEO", e))?;
    Ok(s.into())
}

/// Sends every record the workers queued, in messages of at most `maxlen` bytes, until
/// `stop` or `global_stop`. A partly filled message waits at most [`FLUSH_DELAY`].
pub fn master_loop(
    sock: &UdpSocket,
    ports: &[Arc<SyncPort>],
    syncid: u8,
    maxlen: u16,
    stats: &DaemonStats,
    stop: &AtomicBool,
    global_stop: &AtomicBool,
) {
    let mut b = MessageBuilder::new(syncid, maxlen);
    let mut first = Instant::now();
    // One log line for the first message sent and one for the first failure of this run.
    let (logged_sent, logged_error) = (std::cell::Cell::new(false), std::cell::Cell::new(false));
    let send = |b: &MessageBuilder| match sock.send(b.bytes()) {
        Ok(n) => {
            stats.messages_sent.add(1);
            stats.entries_sent.add(b.count() as u64);
            stats.bytes_sent.add(n as u64);
            if !logged_sent.replace(true) {
                let to = sock.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                log::info!(target: LOG_TARGET, "master: first sync message sent to {to} ({} entries, syncid {syncid})", b.count());
            }
        }
        Err(e) => {
            stats.send_errors.add(1);
            if !logged_error.replace(true) {
                log::warn!(target: LOG_TARGET, "master: sending a sync message failed: {e} (further failures are counted as send_error)");
            }
        }
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed) || global_stop.load(Ordering::Relaxed);
        let mut got = false;
        for p in ports {
            // At most one queue's worth per round, so one busy worker cannot starve the others.
            let n = p.drain(p.out_capacity(), |r| {
                let c = r.to_conn();
                if b.is_empty() {
                    first = Instant::now();
                }
                if !b.push(&c) {
                    send(&b);
                    b.reset();
                    first = Instant::now();
                    b.push(&c);
                }
            });
            got |= n > 0;
        }
        if !b.is_empty() && (stopping || first.elapsed() >= FLUSH_DELAY) {
            send(&b);
            b.reset();
        }
        if stopping {
            return;
        }
        // Drain in rounds, MASTER_IDLE apart even when busy: between rounds the workers fill
        // queue lines the sender is not reading, instead of fighting over each slot as it
        // is written (a 16384-slot queue holds 6.8 ms at 2.4 M entries/s).
        let _ = got;
        std::thread::sleep(MASTER_IDLE);
    }
}

/// What became of one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Accepted, with this many entries (some may have been skipped and counted).
    Accepted(usize),
    /// Rejected whole: index and name of the reason (`msg_too_long` is
    /// `DecodeError::NAMES.len()`).
    Rejected(usize, &'static str),
}

/// Handles one received datagram as a backup: decode, filter, convert, steer.
pub fn backup_receive(
    buf: &[u8],
    maxlen: u16,
    syncid: u8,
    ports: &[Arc<SyncPort>],
    steering: &Steering,
    stats: &DaemonStats,
) -> Received {
    stats.messages_received.add(1);
    if buf.len() > usize::from(maxlen) {
        stats.msg_too_long.add(1);
        return Received::Rejected(DecodeError::NAMES.len(), "too_long");
    }
    let msg = match sync_proto::decode_filtered(buf, syncid) {
        Ok(m) => m,
        Err(e) => {
            stats.msg_drops[e.index()].add(1);
            return Received::Rejected(e.index(), e.name());
        }
    };
    stats.entries_received.add(msg.entries.len() as u64);
    for e in &msg.entries {
        let rec = match e {
            Entry::Skipped(r) => {
                stats.entry_skips[skip_index(r.name())].add(1);
                continue;
            }
            Entry::Conn(c) => match SyncRecord::from_conn(c) {
                Ok(r) => r,
                Err(why) => {
                    stats.entry_skips[skip_index(why)].add(1);
                    continue;
                }
            },
        };
        let owner = steering.owner(Ipv4Addr::from(rec.caddr)) as usize;
        match ports.get(owner) {
            Some(p) if p.inbound.push(rec).is_ok() => {}
            _ => stats.install_queue_full.add(1),
        }
    }
    Received::Accepted(msg.entries.len())
}

/// Receives until `stop` or `global_stop`, steering by the current snapshot's client mask.
#[allow(clippy::too_many_arguments)]
fn backup_loop(
    sock: &UdpSocket,
    ports: &[Arc<SyncPort>],
    published: &Published,
    syncid: u8,
    maxlen: u16,
    stats: &DaemonStats,
    stop: &AtomicBool,
    global_stop: &AtomicBool,
) {
    let mut steering = Steering::new(ports.len() as u16, crate::director::STEERING_RETA);
    let mut generation = u64::MAX;
    // One byte more than the longest datagram: a longer one is noticed, not truncated.
    let mut buf = vec![0u8; 65536];
    // One log line for the first accepted message and for the first rejected message of
    // each reason in this run (bit i: reason index i).
    let (mut logged_accepted, mut logged_rejected) = (false, 0u32);
    while !stop.load(Ordering::Relaxed) && !global_stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        let g = published.generation();
        if g != generation {
            generation = g;
            steering.set_mask(published.load().steer_mask);
        }
        match backup_receive(&buf[..n], maxlen, syncid, ports, &steering, stats) {
            Received::Accepted(entries) if !logged_accepted => {
                logged_accepted = true;
                log::info!(target: LOG_TARGET, "backup: first sync message received from {from} ({entries} entries)");
            }
            Received::Rejected(i, why) if logged_rejected & (1 << i) == 0 => {
                logged_rejected |= 1 << i;
                log::warn!(
                    target: LOG_TARGET,
                    "backup: sync message of {n} bytes from {from} dropped: {why} (further ones are counted as msg_{why})"
                );
            }
            _ => {}
        }
    }
}

struct Running {
    info: DaemonInfo,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The master and backup daemons of a director (owned by the control backend).
pub struct SyncDaemons {
    counters: SyncCounters,
    published: Arc<crate::worker::Shared>,
    master: Option<Running>,
    backup: Option<Running>,
}

impl SyncDaemons {
    /// Daemons over the workers' ports (`counters`, index = worker), stopping with the
    /// director.
    pub fn new(counters: SyncCounters, workers: Arc<crate::worker::Shared>) -> SyncDaemons {
        SyncDaemons { counters, published: workers, master: None, backup: None }
    }

    /// `--start-daemon`, logged: one line when the daemon starts, one when it is refused.
    pub fn start(&mut self, spec: &DaemonSpec) -> Result<(), CtlError> {
        let r = self.start_inner(spec);
        let role = role_name(spec.role);
        match (&r, self.info(spec.role)) {
            (Ok(()), Some(d)) => log::info!(
                target: LOG_TARGET,
                "{role} sync daemon started on {} (syncid {}, maxlen {}, group {}:{}, ttl {})",
                d.mcast_interface,
                d.syncid,
                d.sync_maxlen,
                d.mcast_group,
                d.mcast_port,
                d.mcast_ttl
            ),
            (Err(e), _) => log::warn!(target: LOG_TARGET, "{role} sync daemon on {} not started: {}", spec.mcast_interface, e.message),
            _ => {}
        }
        r
    }

    fn info(&self, role: DaemonRole) -> Option<&DaemonInfo> {
        match role {
            DaemonRole::Master => self.master.as_ref().map(|r| &r.info),
            DaemonRole::Backup => self.backup.as_ref().map(|r| &r.info),
        }
    }

    /// `--start-daemon`: "Daemon has already run" if the role runs, "No such device" for an
    /// unknown interface, else the socket is set up and the thread started.
    fn start_inner(&mut self, spec: &DaemonSpec) -> Result<(), CtlError> {
        let running = match spec.role {
            DaemonRole::Master => self.master.is_some(),
            DaemonRole::Backup => self.backup.is_some(),
        };
        if running {
            return Err(CtlError::daemon_running());
        }
        let (index, addr, mtu) = interface(&spec.mcast_interface)?;
        let maxlen = effective_maxlen(spec.role, spec.sync_maxlen, mtu);
        let d = info(spec, maxlen);
        let stop = Arc::new(AtomicBool::new(false));
        let (ports, stats, st, global) =
            (self.counters.ports.clone(), self.counters.stats.clone(), stop.clone(), self.published.stop.clone());
        let thread = match spec.role {
            DaemonRole::Master => {
                let sock = send_socket(&spec.mcast_interface, addr, &d)?;
                let syncid = d.syncid;
                std::thread::Builder::new()
                    .name("sync-master".into())
                    .spawn(move || master_loop(&sock, &ports, syncid, maxlen, &stats, &st, &global))
            }
            DaemonRole::Backup => {
                let sock = receive_socket(&spec.mcast_interface, index, &d)?;
                let (syncid, workers) = (d.syncid, self.published.clone());
                std::thread::Builder::new().name("sync-backup".into()).spawn(move || {
                    backup_loop(&sock, &ports, &workers.published, syncid, maxlen, &stats, &st, &global)
                })
            }
        }
        .map_err(|e| io_err("thread", e))?;
        let r = Some(Running { info: d, stop, thread: Some(thread) });
        match spec.role {
            DaemonRole::Master => {
                self.master = r;
                self.counters.shared.master.store(true, Ordering::SeqCst);
            }
            DaemonRole::Backup => {
                self.backup = r;
                self.counters.shared.backup.store(true, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// `--stop-daemon`: "No daemon is running" if the role does not run.
    pub fn stop(&mut self, role: DaemonRole) -> Result<(), CtlError> {
        let slot = match role {
            DaemonRole::Master => &mut self.master,
            DaemonRole::Backup => &mut self.backup,
        };
        let mut r = slot.take().ok_or_else(CtlError::no_daemon)?;
        match role {
            DaemonRole::Master => self.counters.shared.master.store(false, Ordering::SeqCst),
            DaemonRole::Backup => self.counters.shared.backup.store(false, Ordering::SeqCst),
        }
        r.halt();
        let t = self.counters.totals();
        match role {
            DaemonRole::Master => log::info!(
                target: LOG_TARGET,
                "master sync daemon on {} stopped ({} entries sent in {} messages since the director started)",
                r.info.mcast_interface,
                t.entries_sent,
                t.messages_sent
            ),
            DaemonRole::Backup => log::info!(
                target: LOG_TARGET,
                "backup sync daemon on {} stopped ({} messages received, {} entries applied since the director started)",
                r.info.mcast_interface,
                t.messages_received,
                t.entries_applied
            ),
        }
        Ok(())
    }

    /// Daemons and counters (only the drop reasons that counted something).
    pub fn status(&self) -> SyncStatus {
        let mut t = self.counters.totals();
        t.drops.retain(|(_, v)| *v > 0);
        t.daemons = self.master.iter().chain(self.backup.iter()).map(|r| r.info.clone()).collect();
        t
    }
}

impl Drop for SyncDaemons {
    fn drop(&mut self) {
        for role in [DaemonRole::Master, DaemonRole::Backup] {
            let _ = self.stop(role);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32) -> SyncRecord {
        SyncRecord {
            proto: 6,
            state: 1,
            flags: flags::DROUTE | flags::NOOUTPUT,
            cport: 1000 + i as u16,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 900,
            caddr: 0x0a00_0000 + i,
            vaddr: 0xc633_6464,
            daddr: 0xc633_640b,
        }
    }

    #[test]
    fn records_round_trip_through_the_wire_format() {
        let r = rec(7);
        let back = SyncRecord::from_conn(&r.to_conn()).unwrap();
        assert_eq!(back, SyncRecord { flags: r.flags | flags::SYNC, ..r });
        let mut c = r.to_conn();
        c.flags |= flags::HASHED | flags::ONE_PACKET;
        assert_eq!(SyncRecord::from_conn(&c).unwrap().flags, r.flags | flags::SYNC, "masked like the kernel");
        c.pe_data = b"x".to_vec();
        assert_eq!(SyncRecord::from_conn(&c), Err("entry_pe"));
        let mut c = r.to_conn();
        c.protocol = 132;
        assert_eq!(SyncRecord::from_conn(&c), Err("entry_protocol"));
        c.addrs = Addrs::V6 { caddr: "::1".parse().unwrap(), vaddr: "::2".parse().unwrap(), daddr: "::3".parse().unwrap() };
        assert_eq!(SyncRecord::from_conn(&c), Err("entry_ipv6"));
        let mut t = r.to_conn();
        t.protocol = 0;
        t.flags |= flags::TEMPLATE;
        assert!(SyncRecord::from_conn(&t).is_ok(), "fwmark templates have protocol IP");
        assert_eq!(std::mem::size_of::<SyncRecord>(), 36);
    }

    #[test]
    fn maxlen_follows_start_sync_thread() {
        assert_eq!(effective_maxlen(DaemonRole::Master, None, 9000), 1472);
        assert_eq!(effective_maxlen(DaemonRole::Master, Some(100), 1500), 100);
        assert_eq!(effective_maxlen(DaemonRole::Backup, None, 1400), 1472);
        assert_eq!(effective_maxlen(DaemonRole::Backup, None, 9000), 8972);
        assert_eq!(effective_maxlen(DaemonRole::Backup, Some(100), 1500), 1024);
        assert_eq!(effective_maxlen(DaemonRole::Master, Some(65535), 1500), 65507);
    }

    #[test]
    fn backup_steers_valid_entries_and_counts_the_rest() {
        let shared = Arc::new(SyncShared::default());
        let ports: Vec<Arc<SyncPort>> = (0..2).map(|_| Arc::new(SyncPort::with_capacity(shared.clone(), 4, 3))).collect();
        let steering = Steering::new(2, 128);
        let counters = SyncCounters::new(ports.clone(), shared);
        let stats = &*counters.stats;
        let recs: Vec<SyncRecord> = (0..8).map(rec).collect();
        let conns: Vec<SyncConn> = recs.iter().map(SyncRecord::to_conn).collect();
        let msg = sync_proto::encode_all(3, 1472, &conns).remove(0);
        assert_eq!(backup_receive(&msg, 1472, 0, &ports, &steering, stats), Received::Accepted(8));
        // Every record lands at its owner, in order; a full queue (3 slots) counts the rest.
        let mut delivered = 0;
        for (w, p) in ports.iter().enumerate() {
            while let Some(r) = p.inbound.pop() {
                assert_eq!(steering.owner(Ipv4Addr::from(r.caddr)) as usize, w);
                assert!(r.flags & flags::SYNC != 0);
                delivered += 1;
            }
        }
        assert_eq!(delivered as u64 + stats.install_queue_full.get(), 8);
        assert_eq!((stats.messages_received.get(), stats.entries_received.get()), (1, 8));
        // Filtered, malformed and oversize messages are counted by reason.
        let foreign = DecodeError::ForeignSyncid { syncid: 0 }.index();
        assert_eq!(backup_receive(&msg, 1472, 4, &ports, &steering, stats), Received::Rejected(foreign, "foreign_syncid"));
        assert!(matches!(backup_receive(&msg[..msg.len() - 1], 1472, 0, &ports, &steering, stats), Received::Rejected(_, "size")));
        assert_eq!(backup_receive(&msg, 100, 0, &ports, &steering, stats), Received::Rejected(DecodeError::NAMES.len(), "too_long"));
        assert_eq!(stats.msg_drops[foreign].get(), 1);
        assert_eq!(stats.msg_drops[DecodeError::Size { size: 0, len: 0 }.index()].get(), 1);
        assert_eq!(stats.msg_too_long.get(), 1);
        // The totals (lbadm sync show, metrics) name every reason once, in drop_reasons order.
        let t = counters.totals();
        assert_eq!(t.drops.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(), drop_reasons());
        let get = |name: &str| t.drops.iter().find(|(r, _)| r == name).map(|(_, v)| *v);
        assert_eq!((get("msg_foreign_syncid"), get("msg_size"), get("msg_too_long")), (Some(1), Some(1), Some(1)));
        assert_eq!(get("install_queue_full"), Some(stats.install_queue_full.get()));
        assert_eq!((t.messages_received, t.entries_received), (4, 8));
    }

    #[test]
    fn full_outgoing_queue_drops_and_counts() {
        let p = Arc::new(SyncPort::with_capacity(Arc::new(SyncShared::default()), 2, 1));
        let mut tx = p.sender().unwrap();
        assert!(p.sender().is_none(), "one producer");
        assert!(tx.send(rec(1)) && tx.send(rec(2)));
        assert!(!tx.send(rec(3)));
        assert_eq!((p.stats.queued.get(), p.stats.ring_full.get()), (2, 1));
        let mut got = Vec::new();
        assert_eq!(p.drain(1, |r| got.push(r)), 1);
        assert_eq!(p.drain(8, |r| got.push(r)), 1);
        assert_eq!(got, vec![rec(1), rec(2)], "oldest first, at most max per call");
        assert!(tx.send(rec(4)), "room again");
    }
}
