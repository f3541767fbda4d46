//! Poll-mode workers: one per lcore, run to completion, bursts of 32.
//!
//! A worker owns one RX and one TX queue on every port (queue index = worker index), its
//! [`Engine`] (connection table, schedulers, counters) and nothing else. The loop: check the
//! published snapshot generation (one atomic load), receive a burst per port, let the engine
//! decide each packet, transmit per egress port, serve at most a few control requests from
//! its mailbox, and expire connection entries with a bounded budget.
//!
//! Concurrency: nothing on the packet path takes a lock, allocates, logs or does an atomic
//! read-modify-write. The only shared structures touched are lock-free queues (the mailbox
//! and the neighbour-event queue, crossbeam `ArrayQueue`, preallocated) and the snapshot
//! generation counter (a plain load); a `Mutex` is taken only to fetch a new snapshot after a
//! configuration change.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

use crate::counters::{DropReason, WorkerCounters};
use crate::dpdk::{tsc, Mbuf, MbufBatch, Mempool, Port, Ring};
use crate::engine::{Engine, NeighEvent, Prep, Verdict};
use crate::snapshot::Published;
use crate::steer::{steer_addr, Steering};
use crate::wire::MacAddr;

/// Packets per RX/TX burst.
pub const BURST: usize = 32;
/// Most control requests served per loop iteration.
const MAILBOX_BUDGET: usize = 4;
/// Most connection entries examined by expiry per loop iteration.
const EXPIRE_BUDGET: u32 = 64;

/// A frame the control side asks a worker to send.
#[derive(Debug, Clone, Copy)]
pub enum TxRequest {
    /// ARP request for `target` from our `source` out of `port`.
    ArpRequest {
        /// Egress port.
        port: u16,
        /// Our address (sender protocol address).
        source: Ipv4Addr,
        /// Address to resolve.
        target: Ipv4Addr,
    },
    /// Gratuitous ARP announcing `addr` on `port`.
    Gratuitous {
        /// Egress port.
        port: u16,
        /// The address being announced.
        addr: Ipv4Addr,
    },
}

/// A request from the control side to one worker.
#[derive(Debug)]
pub enum WorkerRequest {
    /// Send a frame.
    Tx(TxRequest),
    /// Fill the box with a copy of the worker's counters and send it back.
    Counters(Box<WorkerCounters>),
    /// Copy connection entries with index ≥ `start` into `buf` (up to its capacity, which the
    /// control side reserved: no allocation in the worker) and send it back.
    Conns {
        /// Rows (empty, with capacity reserved).
        buf: Box<Vec<ConnRow>>,
        /// First entry index.
        start: u32,
    },
}

/// One connection entry as dumped for `-L -c`.
#[derive(Debug, Clone, Copy)]
pub struct ConnRow {
    /// Key (client, virtual).
    pub key: crate::conn::ConnKey,
    /// Real-server slot.
    pub server: u32,
    /// State byte.
    pub state: u8,
    /// Flags byte.
    pub flags: u8,
    /// Seconds until expiry.
    pub expires_secs: u32,
}

/// A worker's answer.
#[derive(Debug)]
pub enum WorkerReply {
    /// Counters copy.
    Counters(Box<WorkerCounters>),
    /// Connection rows; `next` is where to continue, `None` when the dump is complete.
    Conns {
        /// Rows.
        buf: Box<Vec<ConnRow>>,
        /// Next start index.
        next: Option<u32>,
    },
}

/// The control side's line to one worker.
#[derive(Debug)]
pub struct Mailbox {
    /// Control → worker.
    pub requests: ArrayQueue<WorkerRequest>,
    /// Worker → control.
    pub replies: ArrayQueue<WorkerReply>,
    /// Held by a slow-path thread (control, metrics, telemetry) for a whole request/reply
    /// exchange, so that two askers never take each other's replies. Workers never lock it;
    /// askers lock mailboxes in index order.
    pub exchange: std::sync::Mutex<()>,
}

impl Mailbox {
    /// A mailbox with room for `n` requests and replies.
    pub fn new(n: usize) -> Self {
        Mailbox { requests: ArrayQueue::new(n), replies: ArrayQueue::new(n), exchange: std::sync::Mutex::new(()) }
    }

    /// Locks the mailbox for one exchange (poisoning ignored: the lock guards no data).
    pub fn exchange(&self) -> std::sync::MutexGuard<'_, ()> {
        self.exchange.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// State shared by workers and the control side.
#[derive(Debug)]
pub struct Shared {
    /// The configuration snapshot.
    pub published: Published,
    /// Set to stop every worker (and the control threads).
    pub stop: Arc<AtomicBool>,
    /// What workers learned about neighbours (MPMC, bounded).
    pub neigh_events: Arc<ArrayQueue<NeighEvent>>,
    /// One mailbox per worker.
    pub mailboxes: Vec<Mailbox>,
    /// Hand-off rings: `handoff[from * workers + to]` carries packets worker `from` received
    /// for owner `to` (single producer, single consumer; `None` on the diagonal).
    pub handoff: Vec<Option<Ring>>,
    /// Kernel leg: frames worker `w` hands to the host go on `to_host[w]` (single producer:
    /// that worker; single consumer: the kernel-leg thread). Empty without the leg.
    pub to_host: Vec<Arc<Ring>>,
    /// Kernel leg: frames the host sent, each tagged with its DPDK port, for worker 0 to
    /// transmit (single producer: the kernel-leg thread; single consumer: worker 0).
    pub from_host: Option<Arc<Ring>>,
}

impl Shared {
    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.mailboxes.len()
    }

    #[inline]
    fn ring(&self, from: usize, to: usize) -> Option<&Ring> {
        self.handoff.get(from * self.workers() + to).and_then(Option::as_ref)
    }
}

/// Where the frames of a decided burst go: a TX batch per port (indexed by port id), the
/// batch of frames for the host (kernel leg; each tagged with its port), and the pool that
/// copies for the host come from (`None`: copies are dropped and counted as `no_mbuf`).
pub struct Sink {
    /// TX batches, indexed by port id.
    pub tx: Vec<MbufBatch<BURST>>,
    /// Frames for the host. A burst adds at most one frame per received frame, so it never
    /// overflows when it is flushed after every burst.
    pub host: MbufBatch<BURST>,
    /// Pool for copies.
    pub pool: Option<Arc<Mempool>>,
}

impl Sink {
    /// Batches for ports `0..=max_port`.
    pub fn new(max_port: usize, pool: Option<Arc<Mempool>>) -> Sink {
        Sink { tx: (0..=max_port).map(|_| MbufBatch::new()).collect(), host: MbufBatch::new(), pool }
    }
}

/// One worker's resources.
pub struct Worker {
    /// Worker index (= queue index on every port).
    pub index: u16,
    /// Ports to poll.
    pub ports: Vec<Port>,
    /// Pool for frames the worker builds itself (ARP requests).
    pub pool: Arc<Mempool>,
    /// Packet logic.
    pub engine: Engine,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// TSC ticks per engine tick.
    pub tsc_per_tick: u64,
    /// Owner computation (same function as the NIC's RSS).
    pub steering: Steering,
    /// Sleep this long when a loop iteration found no packet (0 = busy poll).
    pub idle_sleep: std::time::Duration,
}

impl Worker {
    /// Runs until `shared.stop` is set.
    pub fn run(&mut self) {
        let me = self.index as usize;
        let workers = self.shared.workers();
        let mut rx: MbufBatch<BURST> = MbufBatch::new();
        // One TX batch per port (indexed by port id), the host batch and one hand-off batch
        // per worker, allocated before the loop.
        let max_port = self.ports.iter().map(|p| p.id() as usize).max().unwrap_or(0);
        let mut sink = Sink::new(max_port, Some(self.pool.clone()));
        let mut out: Vec<MbufBatch<BURST>> = (0..workers).map(|_| MbufBatch::new()).collect();
        let tsc0 = tsc();
        let mut generation = u64::MAX;
        // Busy accounting (metrics): the previous iteration's cycles count as busy when it
        // handled a packet; one TSC read per iteration, shared with the engine clock.
        let (mut last, mut worked) = (tsc0, false);
        while !self.shared.stop.load(Ordering::Relaxed) {
            let g = self.shared.published.generation();
            if g != generation {
                generation = g;
                self.engine.set_snapshot(self.shared.published.load());
                self.steering.set_mask(self.engine.snapshot().steer_mask);
            }
            let t = tsc();
            {
                let c = self.engine.counters_mut();
                c.poll_cycles = t - tsc0;
                if worked {
                    c.busy_cycles += t - last;
                }
                last = t;
            }
            let now = ((t - tsc0) / self.tsc_per_tick) as u32;
            let mut work = 0;
            for pi in 0..self.ports.len() {
                let port = self.ports[pi];
                let n = port.rx_burst(self.index, &mut rx);
                if n == 0 {
                    continue;
                }
                work += n;
                prefetch_burst(&rx);
                if workers > 1 {
                    // Packets of clients another worker owns go to it (per-core state).
                    let (steering, engine) = (&self.steering, &mut self.engine);
                    rx.retain_with(|mut m| {
                        let owner = match steer_addr(m.data()) {
                            Some(a) => steering.owner(a) as usize,
                            None => me,
                        };
                        if owner == me {
                            return Some(m);
                        }
                        m.set_port(port.id());
                        match out.get_mut(owner).map(|b| b.push(m)) {
                            Some(Ok(())) => engine.counters_mut().handoff_out += 1,
                            _ => engine.counters_mut().handoff_dropped += 1,
                        }
                        None
                    });
                }
                process_burst(&mut self.engine, &mut rx, Some(port.id()), now, &mut sink);
                self.flush(&mut sink);
                self.hand_off(&mut out);
            }
            // Packets other workers received for clients this worker owns.
            for from in 0..workers {
                if from == me {
                    continue;
                }
                let n = match self.shared.ring(from, me) {
                    Some(r) => r.dequeue(&mut rx),
                    None => 0,
                };
                if n == 0 {
                    continue;
                }
                work += n;
                self.engine.counters_mut().handoff_in += n as u64;
                prefetch_burst(&rx);
                process_burst(&mut self.engine, &mut rx, None, now, &mut sink);
                self.flush(&mut sink);
            }
            // What the host sent out of its kernel interfaces (worker 0 only; one dequeue
            // per loop, no syscall: the kernel-leg thread did the reading).
            if let Some(r) = self.shared.from_host.as_ref().filter(|_| me == 0) {
                if r.dequeue(&mut rx) > 0 {
                    work += rx.len();
                    for m in rx.drain() {
                        let port = m.port() as usize;
                        match sink.tx.get_mut(port).map(|b| b.push(m)) {
                            Some(Ok(())) => {}
                            _ => self.engine.count_drop_at(port as u16, DropReason::TxFull),
                        }
                    }
                    self.flush(&mut sink);
                }
            }
            self.serve_mailbox(&mut sink);
            // Connection sync: which daemons run, and entries received for this worker.
            self.engine.sync_poll(now);
            self.engine.expire(now, EXPIRE_BUDGET);
            worked = work > 0;
            if work == 0 && !self.idle_sleep.is_zero() {
                std::thread::sleep(self.idle_sleep);
            }
        }
        self.flush(&mut sink);
        for b in &mut out {
            b.clear();
        }
    }

    /// Moves hand-off batches into the owners' rings; what does not fit is dropped and counted.
    fn hand_off(&mut self, out: &mut [MbufBatch<BURST>]) {
        let me = self.index as usize;
        for (to, b) in out.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            if let Some(r) = self.shared.ring(me, to) {
                r.enqueue(b);
            }
            let left = b.len() as u64;
            if left > 0 {
                b.clear();
                let c = self.engine.counters_mut();
                c.handoff_dropped += left;
                c.handoff_out -= left.min(c.handoff_out);
            }
        }
    }

    /// Transmits the TX batches and queues the host batch for the kernel leg; what the
    /// NIC or the ring refuses is dropped and counted.
    fn flush(&mut self, sink: &mut Sink) {
        if !sink.host.is_empty() {
            if let Some(r) = self.shared.to_host.get(self.index as usize) {
                r.enqueue(&mut sink.host);
            }
            for m in sink.host.drain() {
                self.engine.count_drop_at(m.port(), DropReason::HostQueueFull);
            }
        }
        let queue = self.index;
        for (id, b) in sink.tx.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            if let Some(port) = self.ports.iter().find(|p| p.id() as usize == id) {
                port.tx_burst(queue, b);
            }
            let refused = b.len();
            if refused > 0 {
                b.clear();
                for _ in 0..refused {
                    self.engine.count_drop_at(id as u16, DropReason::TxFull);
                }
            }
        }
    }

    fn serve_mailbox(&mut self, sink: &mut Sink) {
        let me = self.index as usize;
        let mut served = 0;
        for _ in 0..MAILBOX_BUDGET {
            // Borrow the mailbox only for each pop/push (no Arc clone: no atomic RMW here).
            let Some(req) = self.shared.mailboxes.get(me).and_then(|mb| mb.requests.pop()) else { break };
            served += 1;
            match req {
                WorkerRequest::Tx(t) => {
                    if let Some((port, m)) = self.build_tx(t) {
                        if let Some(b) = sink.tx.get_mut(port as usize) {
                            if b.push(m).is_err() {
                                self.engine.count_drop_at(port, DropReason::TxFull);
                            }
                        }
                    }
                }
                WorkerRequest::Conns { mut buf, start } => {
                    let next = self.engine.dump_conns(&mut buf, start);
                    if let Some(mb) = self.shared.mailboxes.get(me) {
                        let _ = mb.replies.push(WorkerReply::Conns { buf, next });
                    }
                }
                WorkerRequest::Counters(mut c) => {
                    c.copy_from(self.engine.counters());
                    c.conn_entries = self.engine.conns().len() as u64;
                    c.conn_capacity = self.engine.conns().capacity() as u64;
                    // The control side sizes the reply queue for its requests; if it is full
                    // the box is dropped here (slow path, rare) and the control side times out.
                    if let Some(mb) = self.shared.mailboxes.get(me) {
                        let _ = mb.replies.push(WorkerReply::Counters(c));
                    }
                }
            }
        }
        if served > 0 {
            self.flush(sink);
        }
    }

    /// Builds an ARP frame the control side asked for.
    fn build_tx(&mut self, t: TxRequest) -> Option<(u16, Mbuf)> {
        let (port, sip, tip) = match t {
            TxRequest::ArpRequest { port, source, target } => (port, source, target),
            TxRequest::Gratuitous { port, addr } => (port, addr, addr),
        };
        let mac = self.engine.snapshot().port_mac(port)?;
        let Some(mut m) = self.pool.alloc() else {
            self.engine.count_drop_at(port, DropReason::NoMbuf);
            return None;
        };
        let buf = m.append(ARP_FRAME_LEN)?;
        write_arp_request(buf, mac, sip, tip);
        Some((port, m))
    }
}

/// Length of a padded Ethernet ARP frame (without FCS).
pub const ARP_FRAME_LEN: usize = 60;

/// Lets `engine` decide a burst (received on `in_port`, or on each mbuf's own port for
/// handed-off packets) in three stages so that the table's cache misses overlap, and
/// queues the results in `sink` (for transmission, or for the host). The worker loop and
/// the benchmarks run exactly this.
#[inline]
pub fn process_burst(engine: &mut Engine, rx: &mut MbufBatch<BURST>, in_port: Option<u16>, now: u32, sink: &mut Sink) {
    // Once per burst: the sync master's flag picks the stage 3 compiled for it, so that a
    // director without a sync master pays nothing for it per packet.
    if engine.sync_master() {
        burst_with_sync(engine, rx, in_port, now, sink);
    } else {
        burst_as::<false>(engine, rx, in_port, now, sink);
    }
}

/// [`process_burst`] while the sync master runs: out of line, so that the common form
/// inlined into the worker loop is the same code as without connection sync.
#[inline(never)]
fn burst_with_sync(engine: &mut Engine, rx: &mut MbufBatch<BURST>, in_port: Option<u16>, now: u32, sink: &mut Sink) {
    burst_as::<true>(engine, rx, in_port, now, sink);
}

/// [`process_burst`] for one value of [`Engine::sync_master`].
#[inline(always)]
fn burst_as<const SYNC: bool>(engine: &mut Engine, rx: &mut MbufBatch<BURST>, in_port: Option<u16>, now: u32, sink: &mut Sink) {
    let mut preps = [Prep::default(); BURST];
    for (m, p) in rx.iter().zip(preps.iter_mut()) {
        engine.prepare(m.data(), in_port.unwrap_or_else(|| m.port()), p);
    }
    for p in preps.iter_mut().take(rx.len()) {
        engine.prefetch_entry(p);
    }
    for (m, p) in rx.drain().zip(preps.iter()) {
        let port = in_port.unwrap_or_else(|| m.port());
        handle::<SYNC>(engine, m, port, now, p, sink);
    }
}

/// Lets the engine decide one packet (stage 3) and queues it for transmission.
#[inline(always)]
fn handle<const SYNC: bool>(engine: &mut Engine, mut m: Mbuf, in_port: u16, now: u32, p: &Prep, sink: &mut Sink) {
    if m.segments() != 1 {
        engine.count_drop_at(in_port, DropReason::MultiSegment);
        return;
    }
    let verdict = engine.process_prepared_as::<SYNC>(m.data_mut(), in_port, now, p);
    let out = match verdict {
        Verdict::Forward(p) => p,
        Verdict::Reply => in_port,
        Verdict::Emit { len, .. } => {
            // Replace the frame by the generated reply (RST, ICMP error).
            let len = len as usize;
            if !m.set_len(len) {
                return;
            }
            let Some(src) = engine.scratch().get(..len) else { return };
            m.data_mut().copy_from_slice(src);
            in_port
        }
        Verdict::Host => {
            // Tagged with its port: the kernel-leg thread writes it into that port's
            // interface.
            m.set_port(in_port);
            if sink.host.push(m).is_err() {
                engine.count_drop_at(in_port, DropReason::HostQueueFull);
            }
            return;
        }
        Verdict::ReplyAndHost { len } => {
            host_copy(engine, len as usize, in_port, sink);
            in_port
        }
        Verdict::Consumed | Verdict::Drop(_) => return,
    };
    if let Some(b) = sink.tx.get_mut(out as usize) {
        if b.push(m).is_err() {
            engine.count_drop_at(out, DropReason::TxFull);
        }
    }
}

/// Queues for the host a copy of the frame the engine saved in its scratch buffer.
#[cold]
fn host_copy(engine: &mut Engine, len: usize, in_port: u16, sink: &mut Sink) {
    let Some(mut c) = sink.pool.as_ref().and_then(|p| p.alloc()) else {
        engine.count_drop_at(in_port, DropReason::NoMbuf);
        return;
    };
    match (c.append(len), engine.scratch().get(..len)) {
        (Some(dst), Some(src)) => dst.copy_from_slice(src),
        _ => return,
    }
    c.set_port(in_port);
    if sink.host.push(c).is_err() {
        engine.count_drop_at(in_port, DropReason::HostQueueFull);
    }
}

/// Prefetches a received burst: every mbuf header first, then every packet's first line
/// (which needs the header's data pointer), so the misses of a burst overlap.
#[inline(always)]
pub fn prefetch_burst(rx: &MbufBatch<BURST>) {
    for m in rx.iter() {
        m.prefetch_header();
    }
    for m in rx.iter() {
        m.prefetch_data();
    }
}

/// Writes a broadcast ARP request (who-has `tip` tell `sip`) into a buffer of at least
/// [`ARP_FRAME_LEN`] bytes, without allocating. A gratuitous ARP has `sip == tip`.
pub fn write_arp_request(buf: &mut [u8], mac: MacAddr, sip: Ipv4Addr, tip: Ipv4Addr) {
    if buf.len() < ARP_FRAME_LEN {
        return;
    }
    buf[..ARP_FRAME_LEN].fill(0);
    buf[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    buf[6..12].copy_from_slice(&mac.0);
    buf[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    buf[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    buf[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    buf[18] = 6;
    buf[19] = 4;
    buf[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    buf[22..28].copy_from_slice(&mac.0);
    buf[28..32].copy_from_slice(&sip.octets());
    buf[38..42].copy_from_slice(&tip.octets());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ArpPacket, Frame};

    #[test]
    fn arp_request_matches_the_builder_and_parses() {
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let (s, t) = (Ipv4Addr::new(198, 51, 100, 2), Ipv4Addr::new(198, 51, 100, 11));
        let mut buf = [0xAAu8; ARP_FRAME_LEN];
        write_arp_request(&mut buf, mac, s, t);
        assert_eq!(&buf[..], &Frame::arp_request(mac, s, t).build()[..]);
        let a = ArpPacket::new_checked(&buf[14..]).unwrap();
        assert_eq!((a.spa(), a.tpa()), (s, t));
    }
}
