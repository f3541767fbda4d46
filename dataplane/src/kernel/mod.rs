//! The kernel leg: a host network interface per DPDK port, so the host's own stack (ssh,
//! routing daemons, health-check probes, keepalived's VRRP, local real servers) reaches the
//! segment through the director's ports.
//!
//! For every port `dpdkN` the director hot-plugs a DPDK `net_tap` device whose kernel side
//! is an interface named `dpdkN` with the port's MAC and MTU, up. The engine decides which
//! frames belong to the host ([`crate::engine::Verdict::Host`]: traffic for the director's
//! addresses that no service takes, ARP copies, link-local multicast, IPv6 and other
//! ethertypes, local real servers' connections); the worker queues them, tagged with their
//! port, on its own single-producer ring. What the host sends out of `dpdkN` comes back
//! through one ring that worker 0 drains into its TX batches.
//!
//! **No syscalls on worker lcores.** The TAP device costs one `readv`/`writev` per packet;
//! those run only on this module's service thread ([`Service::run`]), an ordinary thread
//! outside EAL's lcores. Workers touch only lock-free DPDK rings (an enqueue per burst, a
//! dequeue per loop on worker 0), never a TAP port, never a file descriptor. The path into
//! the host is policed per worker by the engine (`--kernel-pps`), so a flood at the
//! director's addresses costs the workers a token check and a drop, and the host at most
//! the cap.
//!
//! Addresses have one truth, the kernel interface's ([`addrsync`]): `lbadm addr add/del`
//! writes them there, and what other programs (`ip addr`, keepalived) add or remove there
//! comes back into the configuration through rtnetlink.
//!
//! The TAP file descriptors belong to this process: the interfaces disappear when the
//! director exits, SIGKILL included. An interface deleted underneath the director is
//! recreated by the service thread (the address-sync thread notices and asks), and its
//! addresses are installed again.

pub mod addrsync;
pub mod rtnl;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::dpdk::vdev::VdevBus;
use crate::dpdk::{Mempool, MbufBatch, Port, PortConfig, Ring};
use crate::wire::MacAddr;

/// Default cap on packets per second handed to the host, over all workers.
pub const DEFAULT_PPS: u32 = 100_000;
/// Slots of each ring between the workers and the service thread.
pub const RING_SLOTS: u32 = 2048;
/// The service thread sleeps this long when a round moved nothing.
const IDLE: Duration = Duration::from_micros(100);
/// Packets per burst on the service thread.
const BURST: usize = 32;
/// How often the service thread reads the TAPs' own error counters.
const TAP_STATS: Duration = Duration::from_secs(1);

/// One port's kernel interface: what never changes, and its counters (written by the
/// service and address-sync threads, read by `lbadm link show`).
#[derive(Debug)]
pub struct Iface {
    /// The DPDK port.
    pub port: Port,
    /// Interface name (`dpdkN`, the port's name).
    pub name: String,
    /// DPDK device name of the TAP (`net_tap_dpdkN`).
    pub vdev: String,
    /// The port's MAC (the interface's too).
    pub mac: MacAddr,
    /// The port's MTU (the interface's too).
    pub mtu: u16,
    /// Frames written into the interface (to the host).
    pub to_host: AtomicU64,
    /// Frames the TAP refused (interface down or gone): dropped.
    pub to_host_errors: AtomicU64,
    /// Frames the host sent out of the interface, queued for the port.
    pub from_host: AtomicU64,
    /// Frames from the host dropped as malformed (runt, over the port's MTU, scattered):
    /// by the service thread, and by the TAP device itself (a frame larger than one mbuf).
    pub from_host_malformed: AtomicU64,
    /// Frames from the host dropped because the queue to the port was full.
    pub from_host_full: AtomicU64,
    /// Times the interface was recreated after being deleted underneath the director.
    pub recreated: AtomicU64,
    /// Current interface index (0 while it does not exist).
    pub ifindex: AtomicU32,
    /// Administratively up, as the kernel last reported.
    pub up: AtomicBool,
    /// MTU the kernel last reported.
    pub kernel_mtu: AtomicU32,
    /// True when the kernel reported a MAC other than the port's.
    pub mac_changed: AtomicBool,
    /// The interface's MAC as the kernel last reported it, when it differs from the port's
    /// (a port without a usable MAC, or a host that changed it), as a 48-bit number; 0 when
    /// they agree. The service thread then rewrites the port's MAC into it on the way in and
    /// back on the way out, so the host keeps receiving and the segment keeps seeing the
    /// port's MAC.
    pub kernel_mac: AtomicU64,
    /// Set by the address-sync thread when the interface is gone; the service thread
    /// recreates it and clears the flag.
    pub recreate: AtomicBool,
}

/// The kernel leg as the rest of the director sees it.
#[derive(Debug)]
pub struct Leg {
    /// One interface per DPDK port, in port order.
    pub ifaces: Vec<Iface>,
    /// Index into `ifaces` by DPDK port id.
    by_port: Vec<Option<usize>>,
}

impl Leg {
    /// The interface of DPDK port `port`.
    pub fn iface_of_port(&self, port: u16) -> Option<&Iface> {
        self.by_port.get(port as usize).copied().flatten().and_then(|i| self.ifaces.get(i))
    }

    /// The interface named `name`.
    pub fn iface(&self, name: &str) -> Option<&Iface> {
        self.ifaces.iter().find(|i| i.name == name)
    }
}

/// The TAP ports and everything the service thread moves packets with.
pub struct Service {
    leg: Arc<Leg>,
    /// TAP port of each interface (`None` while it is being recreated).
    taps: Vec<Option<Port>>,
    bus: VdevBus,
    pool: Arc<Mempool>,
    /// Frames each worker queued for the host (single producer: that worker).
    to_host: Vec<Arc<Ring>>,
    /// Frames from the host, for worker 0 to transmit (single consumer: worker 0).
    from_host: Arc<Ring>,
    /// Per interface: frames the service thread dropped itself, and the receive errors of
    /// the TAPs it replaced (the current TAP's are added when reported).
    own_malformed: Vec<u64>,
    past_tap_errors: Vec<u64>,
}

/// Creates the `net_tap` device of one port and starts it with the port's MTU.
fn create_tap(bus: &mut VdevBus, iface: &Iface, pool: &Mempool) -> Result<Port> {
    let args = format!("iface={},mac={}", iface.name, iface.mac);
    let tap = bus.create(&iface.vdev, &args).with_context(|| {
        format!("creating kernel interface {} (an interface of that name that is not the director's own TAP blocks it; --no-kernel-if turns the kernel leg off)", iface.name)
    })?;
    let cfg = PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 512,
        tx_desc: 512,
        rss_src_only: false,
        rss_key: None,
        reta: Vec::new(),
        promiscuous: false,
        allmulticast: false,
    };
    let setup = tap
        .configure(&cfg, pool)
        .and_then(|()| tap.set_mtu(iface.mtu))
        .and_then(|()| tap.start());
    if let Err(e) = setup {
        bus.remove(&iface.vdev);
        return Err(e).with_context(|| format!("starting kernel interface {}", iface.name));
    }
    Ok(tap)
}

impl Service {
    /// Creates one kernel interface per port of `ports` (named as the port, with its MAC and
    /// MTU, up) and the rings to and from `workers` workers.
    pub fn create(mut bus: VdevBus, ports: &[Port], pool: Arc<Mempool>, workers: usize, rings: impl Fn(&str, bool, bool) -> Result<Ring>) -> Result<Service> {
        let mut ifaces = Vec::new();
        let mut by_port = Vec::new();
        for p in ports {
            let name = p.name();
            if by_port.len() <= p.id() as usize {
                by_port.resize(p.id() as usize + 1, None);
            }
            by_port[p.id() as usize] = Some(ifaces.len());
            ifaces.push(Iface {
                port: *p,
                vdev: format!("net_tap_{name}"),
                name,
                mac: MacAddr(p.mac()),
                mtu: p.mtu(),
                to_host: AtomicU64::new(0),
                to_host_errors: AtomicU64::new(0),
                from_host: AtomicU64::new(0),
                from_host_malformed: AtomicU64::new(0),
                from_host_full: AtomicU64::new(0),
                recreated: AtomicU64::new(0),
                ifindex: AtomicU32::new(0),
                up: AtomicBool::new(false),
                kernel_mtu: AtomicU32::new(0),
                mac_changed: AtomicBool::new(false),
                kernel_mac: AtomicU64::new(0),
                recreate: AtomicBool::new(false),
            });
        }
        let mut taps = Vec::new();
        for iface in &ifaces {
            match create_tap(&mut bus, iface, &pool) {
                Ok(t) => taps.push(Some(t)),
                Err(e) => {
                    for (t, i) in taps.iter().zip(&ifaces) {
                        if t.is_some() {
                            bus.remove(&i.vdev);
                        }
                    }
                    return Err(e);
                }
            }
        }
        let to_host = (0..workers)
            .map(|w| rings(&format!("to_host_{w}"), true, true).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let from_host = Arc::new(rings("from_host", true, true)?);
        let n = ifaces.len();
        Ok(Service {
            leg: Arc::new(Leg { ifaces, by_port }),
            taps,
            bus,
            pool,
            to_host,
            from_host,
            own_malformed: vec![0; n],
            past_tap_errors: vec![0; n],
        })
    }

    /// The interfaces and their counters.
    pub fn leg(&self) -> Arc<Leg> {
        self.leg.clone()
    }

    /// The ring worker `w` queues host-bound frames on (it is that ring's only producer).
    pub fn to_host_ring(&self, w: usize) -> Option<Arc<Ring>> {
        self.to_host.get(w).cloned()
    }

    /// The ring of frames from the host (worker 0 is its only consumer).
    pub fn from_host_ring(&self) -> Arc<Ring> {
        self.from_host.clone()
    }

    /// The service loop, until `stop`: workers' host-bound frames into the TAPs, the
    /// host's frames (checked) onto the ring to worker 0, interfaces recreated on request.
    /// Sleeps [`IDLE`] after a round that moved nothing. Removes the TAPs when it ends, so
    /// the interfaces disappear with the director.
    pub fn run(mut self, stop: &AtomicBool) {
        let mut batch: MbufBatch<BURST> = MbufBatch::new();
        let mut per_tap: Vec<MbufBatch<BURST>> = self.taps.iter().map(|_| MbufBatch::new()).collect();
        let mut stats_at = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut moved = 0;
            for ring in &self.to_host {
                let n = ring.dequeue(&mut batch);
                if n == 0 {
                    continue;
                }
                moved += n;
                for m in batch.drain() {
                    // The worker tagged the frame with the port it arrived on.
                    if let Some(&Some(i)) = self.leg.by_port.get(m.port() as usize) {
                        if let Some(b) = per_tap.get_mut(i) {
                            let _ = b.push(m);
                        }
                    }
                }
                for (i, b) in per_tap.iter_mut().enumerate() {
                    self.write_to_host(i, b);
                }
            }
            for i in 0..self.taps.len() {
                moved += self.read_from_host(i, &mut batch);
            }
            for i in 0..self.taps.len() {
                if self.leg.ifaces[i].recreate.swap(false, Ordering::AcqRel) {
                    self.recreate(i);
                }
            }
            if stats_at.elapsed() >= TAP_STATS {
                stats_at = std::time::Instant::now();
                for i in 0..self.taps.len() {
                    self.report_malformed(i);
                }
            }
            if moved == 0 {
                std::thread::sleep(IDLE);
            }
        }
        // Dropping `self` removes the TAPs.
    }

    /// Writes a batch of host-bound frames into interface `i`; what the TAP refuses is
    /// dropped and counted.
    fn write_to_host(&self, i: usize, b: &mut MbufBatch<BURST>) {
        if b.is_empty() {
            return;
        }
        let iface = &self.leg.ifaces[i];
        let kmac = iface.kernel_mac.load(Ordering::Relaxed);
        if kmac != 0 {
            let k = mac_bytes(kmac);
            for m in b.iter_mut() {
                let d = m.data_mut();
                if d.len() >= 12 && d[..6] == iface.mac.0 {
                    d[..6].copy_from_slice(&k);
                }
            }
        }
        let sent = match self.taps.get(i).copied().flatten() {
            Some(tap) => tap.tx_burst(0, b),
            None => 0,
        };
        iface.to_host.fetch_add(sent as u64, Ordering::Relaxed);
        iface.to_host_errors.fetch_add(b.len() as u64, Ordering::Relaxed);
        b.clear();
    }

    /// Reads what the host sent out of interface `i`, drops malformed frames (counted) and
    /// queues the rest for worker 0, tagged with the DPDK port. Returns how many were read.
    fn read_from_host(&mut self, i: usize, batch: &mut MbufBatch<BURST>) -> usize {
        let Some(tap) = self.taps.get(i).copied().flatten() else { return 0 };
        let n = tap.rx_burst(0, batch);
        if n == 0 {
            return 0;
        }
        let iface = &self.leg.ifaces[i];
        let port = iface.port.id();
        // Ethernet header, the port's MTU, and room for one VLAN tag.
        let max = iface.mtu as usize + 14 + 4;
        let mut bad = 0u64;
        let kmac = mac_bytes(iface.kernel_mac.load(Ordering::Relaxed));
        let mac = iface.mac.0;
        batch.retain_with(|mut m| {
            if m.segments() != 1 || m.len() < 14 || m.len() > max {
                bad += 1;
                return None;
            }
            // The segment knows the port's MAC, whatever the interface's is.
            let d = m.data_mut();
            if kmac != [0; 6] && d[6..12] == kmac {
                d[6..12].copy_from_slice(&mac);
            }
            m.set_port(port);
            Some(m)
        });
        self.own_malformed[i] += bad;
        if bad > 0 {
            self.report_malformed(i);
        }
        let queued = self.from_host.enqueue(batch);
        iface.from_host.fetch_add(queued as u64, Ordering::Relaxed);
        iface.from_host_full.fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch.clear();
        n
    }

    /// Publishes interface `i`'s malformed count: the service thread's own drops plus the
    /// receive errors of its TAPs (frames the TAP could not fit into one mbuf).
    fn report_malformed(&self, i: usize) {
        let tap = self.taps[i].map_or(0, |t| t.stats().rx_errors);
        let n = self.own_malformed[i] + self.past_tap_errors[i] + tap;
        self.leg.ifaces[i].from_host_malformed.store(n, Ordering::Relaxed);
    }

    /// Replaces interface `i`'s TAP by a new one (after it was deleted underneath us).
    fn recreate(&mut self, i: usize) {
        let iface = &self.leg.ifaces[i];
        if let Some(old) = self.taps[i].take() {
            self.past_tap_errors[i] += old.stats().rx_errors;
            self.bus.remove(&iface.vdev);
        }
        match create_tap(&mut self.bus, iface, &self.pool) {
            Ok(t) => {
                self.taps[i] = Some(t);
                iface.recreated.fetch_add(1, Ordering::Relaxed);
                log_line(&format!("kernel interface {} recreated", iface.name));
            }
            Err(e) => {
                log_line(&format!("kernel interface {} could not be recreated: {e:#}", iface.name));
                // Try again at the address-sync thread's next check.
            }
        }
    }
}

impl Drop for Service {
    /// Removes the TAP devices (their interfaces disappear) while the pool they receive into
    /// is still alive: at the end of [`Service::run`], or when start-up fails after creating
    /// them.
    fn drop(&mut self) {
        for (t, i) in self.taps.iter_mut().zip(&self.leg.ifaces) {
            if t.take().is_some() {
                self.bus.remove(&i.vdev);
            }
        }
    }
}

/// A MAC address kept in the low 48 bits of a number, as bytes.
fn mac_bytes(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// A MAC address as the low 48 bits of a number.
pub(crate) fn mac_number(m: &[u8]) -> u64 {
    m.iter().take(6).fold(0u64, |a, &b| (a << 8) | u64::from(b))
}

/// One log line (stderr, see `logging`), for the slow-path threads of the kernel leg.
pub(crate) fn log_line(s: &str) {
    log::info!(target: "kernel", "{s}");
}
