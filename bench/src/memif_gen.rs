//! The pktgen-style generator process (`director-gen`): its own EAL (own `--file-prefix`,
//! `--no-pci`, one lcore — CPU 1 by default, the director's worker has CPU 0) and one
//! `net_memif` port in the server role; the director's benchmark process is the memif client.
//!
//! The parent drives it with one command per line on stdin and reads one answer per line on
//! stdout (anything else goes to stderr):
//!
//! | command | what the generator does | answer |
//! | --- | --- | --- |
//! | (start-up) | EAL, port, waits for commands | `READY <own MAC>` |
//! | `MAC <mac>` | builds the scenario's traffic addressed to the director's MAC and the pre-built measured frames | `OK <frames>` |
//! | `SETUP` | phases 1-3 of [`crate::scenario`] (SYN per active flow, background fill, ACK per active flow), at most [`SETUP_INFLIGHT`] packets in flight so nothing is lost | `SETUP-DONE <json>` |
//! | `RUN` | sends the pre-built frames in a loop, as fast as the port takes them, until `STOP` | `RUN-DONE <json>` |
//! | `RAW <mac> <secs>` | the same blast for `secs` seconds to `<mac>` without a director (testpmd yardstick) | `RUN-DONE <json>` |
//! | `QUIT` | stops | — |
//!
//! All along, every received frame is counted and freed, and ARP requests for the scenario's
//! real servers are answered (the director resolves them on its memif port), so the
//! generator is also the servers' side of the wire. Transmission is pktgen-style: the
//! measured frames (the scenario's measured packet sequence, real headers and checksums from
//! [`crate::gen`]) are built once; each burst takes 32 mbufs from the pool and copies 32
//! frames in (the memif PMD copies them into shared memory and frees the mbufs), frames the
//! port refused are kept and offered again. Every loop is bounded in time; a closed stdin
//! (the parent died) or `--max-secs` ends the process, which removes its socket file.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use dataplane::dpdk::{Eal, MbufBatch, Mempool, Port, PortConfig};
use dataplane::wire::arp::{op, ArpPacket};
use dataplane::wire::{Frame, MacAddr};

use crate::gen::{PacketKind, Sequence, Traffic, Tuple, DIP};
use crate::rig::{self, Memory};
use crate::scenario::Scenario;

/// Packets in flight (sent, not yet back) allowed during the setup phases: below the memif
/// ring size (1024) each way, so neither direction can overflow and nothing is lost.
pub const SETUP_INFLIGHT: u64 = 512;

/// What the generator process is told on its command line.
#[derive(Debug, Clone)]
pub struct GenArgs {
    /// memif socket path (the generator is the server and creates it).
    pub socket: PathBuf,
    /// Scenario.
    pub scenario: Scenario,
    /// Pre-built measured frames.
    pub frames: usize,
    /// Memory scheme.
    pub memory: Memory,
    /// EAL lcore (CPU) of the generator.
    pub lcore: u32,
    /// The process ends after this long whatever happens.
    pub max_secs: u64,
}

/// Counts of one command, sent to the parent as JSON.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct GenCounts {
    /// Frames handed to the port.
    pub sent: u64,
    /// Frames received back that the director forwarded (destination MAC of a real server).
    pub forwarded: u64,
    /// Other frames received (ARP requests, anything else).
    pub other: u64,
    /// ARP requests answered.
    pub arp_answered: u64,
    /// tx_burst calls with something to send.
    pub bursts: u64,
    /// Of those, calls where the port took less than offered (back-pressure: the director,
    /// not the generator, was the bottleneck at that moment).
    pub short_bursts: u64,
    /// Setup: packets never seen back (lost or refused by the director).
    pub lost: u64,
    /// Seconds the command ran.
    pub secs: f64,
}

struct Gen {
    port: Port,
    pool: Mempool,
    servers: HashMap<Ipv4Addr, MacAddr>,
    my_mac: MacAddr,
    director_mac: MacAddr,
    pending: MbufBatch<32>,
    c: GenCounts,
}

/// Runs the generator process; returns when told to quit or when the parent went away.
pub fn main(a: GenArgs) -> Result<()> {
    // The command reader starts before EAL so it is not pinned to the generator's CPU.
    let (cmd_tx, cmds) = mpsc::channel::<String>();
    std::thread::Builder::new().name("gen-stdin".into()).spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if cmd_tx.send(line.trim().to_string()).is_err() {
                break;
            }
        }
    })?;
    let _cleanup = RemoveOnDrop(a.socket.clone());
    let _ = std::fs::remove_file(&a.socket);
    let mbufs = 32767u32;
    let mut args = rig::eal_args("director-gen", &a.lcore.to_string(), a.memory, rig::mem_for(mbufs, 64));
    args.push(format!("--vdev=net_memif0,role=server,id=0,socket={},socket-abstract=no", a.socket.display()));
    let eal = Eal::init(&args).with_context(|| format!("EAL init ({})", args.join(" ")))?;
    let port = Port::all(&eal).into_iter().next().context("no memif port")?;
    let pool = rig::pool(&eal, mbufs, a.memory)?;
    let cfg = PortConfig { rss_src_only: false, promiscuous: false, ..PortConfig::default() };
    port.configure(&cfg, &pool).context("configuring the memif port")?;
    port.start().context("starting the memif port")?;
    let mut g = Gen {
        port,
        pool,
        servers: HashMap::new(),
        my_mac: MacAddr(port.mac()),
        director_mac: MacAddr::ZERO,
        pending: MbufBatch::new(),
        c: GenCounts::default(),
    };
    answer(&format!("READY {}", g.my_mac))?;
    let deadline = Instant::now() + Duration::from_secs(a.max_secs);
    let mut traffic: Option<Traffic> = None;
    let mut frames: Vec<u8> = Vec::new();
    loop {
        anyhow::ensure!(Instant::now() < deadline, "generator: --max-secs {} reached", a.max_secs);
        let cmd = match cmds.try_recv() {
            Ok(c) => c,
            Err(TryRecvError::Empty) => {
                // Idle: serve ARP, count strays, do not spin a whole CPU.
                g.poll_rx();
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let mut words = cmd.split_whitespace();
        match words.next() {
            Some("MAC") => {
                let mac: MacAddr = words.next().context("MAC <mac>")?.parse().context("bad MAC")?;
                let t = Traffic::new(a.scenario.traffic.clone(), mac)?;
                g.director_mac = mac;
                g.servers = t.servers().into_iter().collect();
                frames = measured_frames(&t, a.frames);
                traffic = Some(t);
                answer(&format!("OK {}", a.frames))?;
            }
            Some("SETUP") => {
                let t = traffic.as_ref().context("SETUP before MAC")?;
                let c = g.setup(t, &a.scenario, &cmds, deadline)?;
                answer(&format!("SETUP-DONE {}", serde_json::to_string(&c)?))?;
            }
            Some("RUN") => {
                let t = traffic.as_ref().context("RUN before MAC")?;
                let c = g.blast(&frames, t.frame_len(), &cmds, None, deadline)?;
                answer(&format!("RUN-DONE {}", serde_json::to_string(&c)?))?;
            }
            Some("RAW") => {
                let mac: MacAddr = words.next().context("RAW <mac> <secs>")?.parse().context("bad MAC")?;
                let secs: f64 = words.next().context("RAW <mac> <secs>")?.parse()?;
                let t = Traffic::new(a.scenario.traffic.clone(), mac)?;
                let f = measured_frames(&t, a.frames);
                let c = g.blast(&f, t.frame_len(), &cmds, Some(Duration::from_secs_f64(secs)), deadline)?;
                answer(&format!("RUN-DONE {}", serde_json::to_string(&c)?))?;
            }
            Some("QUIT") => break,
            Some(other) => anyhow::bail!("generator: unknown command {other:?}"),
            None => {}
        }
    }
    g.pending.clear();
    g.port.stop();
    Ok(())
}

fn answer(line: &str) -> Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}")?;
    o.flush()?;
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The measured frames, back to back: the scenario's measured sequence (epoch 0).
pub fn measured_frames(t: &Traffic, n: usize) -> Vec<u8> {
    let len = t.frame_len();
    let mut out = vec![0u8; n * len];
    let mut seq = Sequence::new(t, 0, 0);
    for (i, f) in out.chunks_exact_mut(len).enumerate() {
        let (tup, kind) = seq.next_packet();
        t.write(&tup, kind, i as u16, f);
    }
    out
}

impl Gen {
    /// Receives one burst: counts forwarded frames, answers ARP requests for real servers.
    fn poll_rx(&mut self) -> usize {
        let mut rx: MbufBatch<32> = MbufBatch::new();
        let n = self.port.rx_burst(0, &mut rx);
        let mut replies: Vec<(MacAddr, Ipv4Addr)> = Vec::new();
        for m in rx.drain() {
            let d = m.data();
            if d.len() >= 14 && d[0..4] == [0x02, 0, 198, 18] {
                self.c.forwarded += 1;
                continue;
            }
            self.c.other += 1;
            if d.len() >= 42 && d[12..14] == [0x08, 0x06] {
                if let Ok(arp) = ArpPacket::new_checked(&d[14..]) {
                    if arp.operation() == op::REQUEST {
                        if let Some(mac) = self.servers.get(&arp.tpa()) {
                            replies.push((*mac, arp.tpa()));
                        }
                    }
                }
            }
        }
        for (mac, ip) in replies {
            let f = Frame::arp_reply(mac, ip, self.director_mac, DIP).build();
            if let Some(mut m) = self.pool.alloc() {
                if let Some(buf) = m.append(f.len()) {
                    buf.copy_from_slice(&f);
                    if self.port.tx_one(0, m).is_ok() {
                        self.c.arp_answered += 1;
                    }
                }
            }
        }
        n
    }

    /// Fills the pending batch up to `room` frames from `next` (which writes frame bytes
    /// into a buffer of the frame length) and offers it to the port; returns frames sent.
    fn send(&mut self, room: usize, len: usize, mut next: impl FnMut(&mut [u8])) -> Result<u64> {
        while self.pending.len() < room.min(32) {
            let Some(mut m) = self.pool.alloc() else { break };
            anyhow::ensure!(m.set_len(len), "mbuf too small for {len} bytes");
            next(m.data_mut());
            if self.pending.push(m).is_err() {
                break;
            }
        }
        if self.pending.is_empty() {
            return Ok(0);
        }
        let offered = self.pending.len();
        let sent = self.port.tx_burst(0, &mut self.pending);
        self.c.bursts += 1;
        if sent < offered {
            self.c.short_bursts += 1;
        }
        self.c.sent += sent as u64;
        Ok(sent as u64)
    }

    /// Sends `count` packets `f(i)` with at most [`SETUP_INFLIGHT`] in flight, then waits for
    /// them to come back. Packets not back after 200 ms without progress count as lost.
    fn phase(
        &mut self,
        t: &Traffic,
        count: u64,
        cmds: &Receiver<String>,
        deadline: Instant,
        mut f: impl FnMut(u64) -> (Tuple, PacketKind),
    ) -> Result<()> {
        let len = t.frame_len();
        let (sent0, fwd0) = (self.c.sent, self.c.forwarded);
        let mut next = 0u64;
        let mut lost = 0u64;
        let mut last_progress = Instant::now();
        let mut last_fwd = self.c.forwarded;
        let mut stall = (Instant::now(), self.c.sent, self.c.forwarded);
        loop {
            let sent = self.c.sent - sent0;
            let back = self.c.forwarded - fwd0 + lost;
            if sent >= count && self.pending.is_empty() && back >= sent {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "generator: time limit reached during setup");
            match cmds.try_recv() {
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => anyhow::bail!("generator: the parent went away during setup"),
                Ok(c) => anyhow::bail!("generator: {c:?} during setup"),
            }
            if (self.c.sent, self.c.forwarded) != (stall.1, stall.2) {
                stall = (Instant::now(), self.c.sent, self.c.forwarded);
            }
            anyhow::ensure!(
                stall.0.elapsed() < Duration::from_secs(10),
                "generator: setup stalled for 10 s ({sent} of {count} sent, {back} back; is the memif link up?)"
            );
            let inflight = sent.saturating_sub(back);
            if inflight < SETUP_INFLIGHT && (next < count || !self.pending.is_empty()) {
                let room = (SETUP_INFLIGHT - inflight).min(count - next + self.pending.len() as u64) as usize;
                let mut i = next;
                self.send(room, len, |buf| {
                    let (tup, kind) = f(i);
                    t.write(&tup, kind, i as u16, buf);
                    i += 1;
                })?;
                // Frames written into pending (sent or not) are consumed from the sequence.
                next = i;
            }
            self.poll_rx();
            if self.c.forwarded != last_fwd {
                last_fwd = self.c.forwarded;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > Duration::from_millis(200) {
                // Whatever is in flight is not coming back (dropped by the director).
                lost += inflight;
                last_progress = Instant::now();
            }
        }
        self.c.lost += lost;
        Ok(())
    }

    /// Phases 1-3 of the scenario.
    fn setup(&mut self, t: &Traffic, s: &Scenario, cmds: &Receiver<String>, deadline: Instant) -> Result<GenCounts> {
        let started = Instant::now();
        self.c = GenCounts::default();
        let flows = s.traffic.flows as u64;
        self.phase(t, flows, cmds, deadline, |i| {
            let tup = t.flow(i as u32);
            (tup, Traffic::open_kind(&tup))
        })?;
        let bg = s.background(t);
        anyhow::ensure!(bg <= t.background_capacity(), "table too large for the clients' port space");
        self.phase(t, bg, cmds, deadline, |i| {
            let tup = t.background(i);
            (tup, Traffic::open_kind(&tup))
        })?;
        self.phase(t, flows, cmds, deadline, |i| {
            let tup = t.flow(i as u32);
            (tup, Traffic::data_kind(&tup))
        })?;
        let mut c = std::mem::take(&mut self.c);
        c.secs = started.elapsed().as_secs_f64();
        Ok(c)
    }

    /// Sends `frames` (back to back, `len` bytes each) in a loop as fast as the port takes
    /// them, receiving all along, until `STOP` arrives (or `limit` passed); then collects
    /// what is still coming back for up to 20 ms of silence.
    fn blast(&mut self, frames: &[u8], len: usize, cmds: &Receiver<String>, limit: Option<Duration>, deadline: Instant) -> Result<GenCounts> {
        anyhow::ensure!(!frames.is_empty() && len > 0, "no frames to send");
        let started = Instant::now();
        self.c = GenCounts::default();
        let n = frames.len() / len;
        let mut at = 0usize;
        let mut iter = 0u64;
        loop {
            self.send(32, len, |buf| {
                buf.copy_from_slice(&frames[at * len..(at + 1) * len]);
                at += 1;
                if at == n {
                    at = 0;
                }
            })?;
            self.poll_rx();
            iter += 1;
            if iter.is_multiple_of(256) {
                match cmds.try_recv() {
                    Ok(c) if c == "STOP" => break,
                    Ok(c) => anyhow::bail!("generator: {c:?} while running (expected STOP)"),
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {}
                }
                let now = Instant::now();
                anyhow::ensure!(now < deadline, "generator: time limit reached while sending");
                if limit.is_some_and(|l| now.duration_since(started) >= l) {
                    break;
                }
            }
        }
        let sending = started.elapsed().as_secs_f64();
        // Frames still pending were never handed over: give them back to the pool.
        self.pending.clear();
        let mut quiet = Instant::now();
        let drain_until = Instant::now() + Duration::from_secs(1);
        while quiet.elapsed() < Duration::from_millis(20) && Instant::now() < drain_until {
            if self.poll_rx() > 0 {
                quiet = Instant::now();
            }
        }
        let mut c = std::mem::take(&mut self.c);
        c.secs = sending;
        Ok(c)
    }
}
