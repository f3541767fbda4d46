//! SYN-flood benchmark (`director-synflood`): a spoofed SYN flood from random sources at the
//! highest rate one thread reaches, against a wlc service with a 1 M-entry connection
//! table, while legitimate clients connect and connections established before the flood
//! carry on.
//!
//! The dataplane is the engine loop of mode (b) ([`crate::engine_loop`]): a `net_ring` port,
//! `rx_burst` → `worker::process_burst` (the worker's own burst code) → `tx_burst`, with the
//! engine on real time (TSC) so that round trips and timeouts are real. The same thread
//! generates the traffic, chunk by chunk, so the flood runs at the rate the generator and the
//! engine reach together (nothing is dropped before the engine: a closed loop).
//!
//! Per chunk of [`FloodArgs::chunk`] packets:
//! - **legitimate clients** (their own addresses in 10.0.0.0/8), [`FloodArgs::legit_per_sec`]
//!   new clients per second for each simulated round-trip time: each sends SYN, then after
//!   the RTT its ACK and a data packet, then opens a second connection the same way (SYN at
//!   once, ACK and data one RTT later). A connection succeeds when its SYN, ACK and data were
//!   all forwarded to one real server; with persistence the second connection must also go
//!   to the first one's server (the template held).
//! - **established connections** opened before the flood (SYN, ACK, data; their servers
//!   recorded): [`FloodArgs::checks_per_chunk`] data packets of random ones per chunk must go
//!   to their recorded server; after the flood every one of them is checked again.
//! - **flood**: the rest of the chunk, SYNs from random source addresses and ports (outside
//!   the clients' ranges) to the VIP.
//!
//! Forwarded frames are matched by source address, source port and IP identification (the
//! generator writes 1 = SYN, 2 = ACK, 3 = data, 4 = established-flow data; direct routing
//! leaves them intact) and their destination MAC names the real server. Every second a
//! timeline row is printed; at the end the success rates, table occupancy, eviction and drop
//! counters, and the process RSS and mbufs in use (memory must stay flat).

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use dataplane::counters::DropReason;
use dataplane::director::TICKS_PER_SEC;
use dataplane::dpdk::{tsc, Eal};

use crate::engine_loop::{engine_for, EngineLoop};
use crate::gen::{PacketKind, Rng, Traffic, TrafficSpec, Tuple};
use crate::rig::{self, Memory, Store};
use crate::scenario::{self, Dataplane, Scenario};

/// First legitimate client address (10.0.0.1); clients are numbered from it.
const LEGIT_BASE: u32 = u32::from_be_bytes([10, 0, 0, 1]);
/// Client port of a legitimate client's first connection (the second uses +1).
const LEGIT_PORT: u16 = 40000;
/// IP identification values the generator writes.
const ID_FLOOD: u16 = 0;
const ID_SYN: u16 = 1;
const ID_ACK: u16 = 2;
const ID_DATA: u16 = 3;
const ID_EST: u16 = 4;

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloodArgs {
    /// Seconds of flood.
    pub secs: f64,
    /// Persistent service (templates per client) instead of a plain one.
    pub persistent: bool,
    /// Connection-table capacity of the worker.
    pub capacity: usize,
    /// Connections established before the flood.
    pub established: u32,
    /// New legitimate clients per second, for each RTT.
    pub legit_per_sec: u32,
    /// Simulated round-trip times (ms) of the legitimate clients.
    pub rtts_ms: Vec<f64>,
    /// Packets per chunk (the generator's granularity: a chunk takes ~0.1 ms).
    pub chunk: usize,
    /// Data packets of established connections per chunk.
    pub checks_per_chunk: usize,
    /// Real servers of the service.
    pub servers: u32,
    /// Memory scheme.
    pub memory: Memory,
}

impl Default for FloodArgs {
    fn default() -> Self {
        FloodArgs {
            secs: 10.0,
            persistent: false,
            capacity: 1 << 20,
            established: 65536,
            legit_per_sec: 5000,
            rtts_ms: vec![1.0, 50.0],
            chunk: 256,
            checks_per_chunk: 2,
            servers: 16,
            memory: if rig::free_hugepages() >= 256 { Memory::Huge } else { Memory::NoHuge },
        }
    }
}

/// Legitimate clients of one round-trip time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassResult {
    /// Simulated RTT (ms).
    pub rtt_ms: f64,
    /// Clients that completed both connections' packets.
    pub clients: u64,
    /// Connections (two per client).
    pub connections: u64,
    /// Connections whose SYN, ACK and data all reached one server.
    pub ok: u64,
    /// ok / connections.
    pub success: f64,
    /// Persistent: second connections that went to the first one's server.
    pub same_server: u64,
}

/// One second of the flood.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the flood started.
    pub t: f64,
    /// Flood SYNs per second (millions).
    pub flood_mpps: f64,
    /// Entries in the table.
    pub entries: u64,
    /// Unconfirmed entries evicted in this second.
    pub evicted: u64,
    /// New connections refused (table full) in this second.
    pub table_full: u64,
    /// Process RSS (KiB).
    pub rss_kib: u64,
}

/// What one case measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloodResult {
    /// "plain" or "persistent".
    pub case: String,
    /// Arguments.
    pub args: FloodArgs,
    /// Seconds the flood ran.
    pub flood_secs: f64,
    /// Flood SYNs sent (and processed).
    pub flood_syns: u64,
    /// Flood SYNs per second (millions) over the flood, wall time.
    pub flood_mpps: f64,
    /// Flood SYNs per second of the thread's on-CPU time (millions): the rate of a dedicated
    /// core (this shared VM preempts the thread).
    pub flood_mpps_cpu: f64,
    /// Share of the flood's wall time the thread was on a CPU.
    pub on_cpu: f64,
    /// All packets per second (millions) over the flood.
    pub total_mpps: f64,
    /// Per RTT.
    pub classes: Vec<ClassResult>,
    /// Established connections before the flood.
    pub established: u64,
    /// Data packets of established connections during the flood / not forwarded to their server.
    pub established_checked: u64,
    /// …of which lost (dropped, or sent to another server).
    pub established_lost: u64,
    /// Established connections not forwarded to their server after the flood.
    pub established_lost_after: u64,
    /// Table entries at the end / capacity.
    pub entries_end: u64,
    /// Capacity.
    pub capacity: u64,
    /// Evicted unconfirmed entries.
    pub evicted: u64,
    /// Non-zero drop counters.
    pub drops: Vec<(String, u64)>,
    /// RSS (KiB) before the flood, after its first second, at its end.
    pub rss_kib: (u64, u64, u64),
    /// Mbufs in use before and after the flood (the store's chunk is returned before each).
    pub mbufs_in_use: (u32, u32),
    /// Timeline.
    pub timeline: Vec<Second>,
}

/// The process's resident set (KiB).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// A legitimate client's progress: servers seen per connection and packet (0 = not
/// forwarded), indexed `[conn][SYN, ACK, data]`.
#[derive(Debug, Clone, Copy, Default)]
struct Client {
    seen: [[u8; 3]; 2],
    done: bool,
}

/// A pending legitimate event.
#[derive(Debug, Clone, Copy)]
struct Pending {
    due: u64,
    client: u32,
    stage: u8,
}

fn legit_tuple(vip: Ipv4Addr, vport: u16, client: u32, conn: u16) -> Tuple {
    Tuple { proto: 6, caddr: Ipv4Addr::from(LEGIT_BASE + client), cport: LEGIT_PORT + conn, vaddr: vip, vport }
}

/// Server index (1-based) from a forwarded frame's destination MAC (the generator's
/// `02:00:c6:12:SS:KK` server MACs), 0 if it is not one.
fn server_of(d: &[u8]) -> u8 {
    if d.len() >= 6 && d[0] == 2 && d[2] == 198 && d[3] == 18 {
        d[5]
    } else {
        0
    }
}

/// Runs one case.
pub fn run(a: &FloodArgs) -> Result<FloodResult> {
    let chunk = a.chunk.max(32);
    let mbufs = (chunk as u32 * 2 + 2048).max(8192);
    let args = rig::eal_args("director-synflood", "0", a.memory, rig::mem_for(mbufs + 1024, 64));
    let eal = Eal::init(&args).context("EAL init")?;
    let mut lp = EngineLoop::new(&eal, a.memory, mbufs, mbufs + 1024)?;
    let port = lp.port();
    let spec = TrafficSpec {
        clients: a.established.max(1),
        flows: a.established,
        services: 1,
        persistent_share: if a.persistent { 1.0 } else { 0.0 },
        port_zero_share: 0.0,
        fwmark_share: 0.0,
        udp_share: 0.0,
        syn_share: 0.0,
        packet_bytes: 64,
        servers_per_service: a.servers,
        scheduler: "wlc".into(),
        persistence_secs: 300,
        ..TrafficSpec::default()
    };
    let t = Traffic::new(spec.clone(), dataplane::wire::MacAddr(port.mac()))?;
    let (vip, vport) = (t.services[0].vip, t.services[0].vport);
    lp.engine = Some(engine_for(&t, &port, a.capacity, false, false)?);
    let hz = rig::tsc_hz();
    let per_tick = (hz / u64::from(TICKS_PER_SEC)).max(1);
    lp.clock = Some((tsc(), per_tick));
    let mut store = Store::new(chunk * 2);

    // Before the flood: open and establish the connections, then one data packet each to
    // learn their servers.
    let sc = Scenario { name: "synflood".into(), traffic: spec, table_entries: a.established as u64, new_connections: false, sweep: false, kernel_leg: false, per_worker_cursor: false };
    scenario::prepare(&mut lp, &mut store, &t, &sc, chunk)?;
    let flows: Vec<Tuple> = (0..a.established).map(|f| t.flow(f)).collect();
    let index: HashMap<(Ipv4Addr, u16), u32> = flows.iter().enumerate().map(|(i, f)| ((f.caddr, f.cport), i as u32)).collect();
    let mut est_server = vec![0u8; flows.len()];
    let check_all = |lp: &mut EngineLoop, store: &mut Store, out: &mut Vec<u8>| -> Result<()> {
        out.iter_mut().for_each(|s| *s = 0);
        for part in flows.chunks(chunk) {
            lp.top_up(store, part.len())?;
            for (m, f) in store.mbufs.iter_mut().zip(part) {
                anyhow::ensure!(m.set_len(t.frame_len()), "mbuf too small");
                t.write(f, PacketKind::Ack, ID_EST, m.data_mut());
            }
            let p = lp.pump(store, part.len())?;
            for m in store.mbufs.iter().rev().take(p.out as usize) {
                let d = m.data();
                if d.len() < 54 {
                    continue;
                }
                let src = Ipv4Addr::new(d[26], d[27], d[28], d[29]);
                let sport = u16::from_be_bytes([d[34], d[35]]);
                if let Some(&i) = index.get(&(src, sport)) {
                    if let Some(o) = out.get_mut(i as usize) {
                        *o = server_of(d);
                    }
                }
            }
        }
        Ok(())
    };
    check_all(&mut lp, &mut store, &mut est_server)?;
    let unestablished = est_server.iter().filter(|s| **s == 0).count();
    anyhow::ensure!(unestablished == 0, "{unestablished} connections did not establish before the flood");

    let engine_counts = |lp: &EngineLoop| {
        let e = lp.engine.as_ref().expect("engine");
        let c = e.counters();
        (e.conns().len() as u64, c.evicted_unconfirmed, c.drops[DropReason::TableFull as usize])
    };
    lp.top_up(&mut store, 0)?;
    let mbufs_before = lp.pool().in_use();
    let mut rss_1s = 0;

    // The flood.
    let classes = a.rtts_ms.len();
    let rtt_tsc: Vec<u64> = a.rtts_ms.iter().map(|ms| (ms / 1000.0 * hz as f64) as u64).collect();
    let max_clients = (a.legit_per_sec as f64 * a.secs).ceil() as usize + 1;
    // The bookkeeping is allocated and touched before the flood, so that the RSS measured
    // during the flood is the dataplane's.
    let mut clients: Vec<Vec<Client>> = (0..classes).map(|_| Vec::with_capacity(max_clients)).collect();
    for v in clients.iter_mut() {
        v.resize(max_clients, Client { done: true, ..Client::default() });
        v.clear();
    }
    let in_flight = a.legit_per_sec as usize * (a.rtts_ms.iter().fold(0.0f64, |m, r| m.max(*r)) as usize / 1000 + 1) * 4 + 4096;
    let mut pending: Vec<VecDeque<Pending>> = (0..classes)
        .map(|_| {
            let mut q = VecDeque::with_capacity(in_flight);
            q.resize(in_flight, Pending { due: 0, client: 0, stage: 0 });
            q.clear();
            q
        })
        .collect();
    let mut rng = Rng::new(0x5f10_0d5e_ed00_0001);
    let mut plan: Vec<(Tuple, PacketKind, u16)> = Vec::with_capacity(chunk * 2);
    let (mut flood_syns, mut total, mut est_sent, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let mut timeline = Vec::with_capacity(a.secs as usize + 16);
    let rss_before = rss_kib();
    let clock = crate::cpu::CpuClock::this_thread();
    let cpu0 = clock.ns();
    let t0 = tsc();
    let secs_tsc = (a.secs * hz as f64) as u64;
    let mut next_row = t0 + hz;
    let mut row_start = (t0, 0u64, engine_counts(&lp));
    let mut stopping = false;
    loop {
        let now = tsc();
        let elapsed = now - t0;
        if elapsed >= secs_tsc {
            stopping = true;
            if pending.iter().all(|p| p.is_empty()) {
                break;
            }
        }
        plan.clear();
        // Legitimate clients: new ones at the configured rate, then everything due.
        for c in 0..classes {
            if !stopping {
                let want = ((elapsed as f64 / hz as f64) * a.legit_per_sec as f64) as usize;
                while clients[c].len() < want.min(max_clients) {
                    let id = (clients[c].len() * classes + c) as u32;
                    clients[c].push(Client::default());
                    plan.push((legit_tuple(vip, vport, id, 0), PacketKind::Syn, ID_SYN));
                    pending[c].push_back(Pending { due: now + rtt_tsc[c], client: id, stage: 1 });
                }
            }
            while pending[c].front().is_some_and(|p| p.due <= now) {
                let Some(p) = pending[c].pop_front() else { break };
                let conn = u16::from(p.stage - 1);
                let tup = legit_tuple(vip, vport, p.client, conn);
                plan.push((tup, PacketKind::Ack, ID_ACK));
                plan.push((tup, PacketKind::Ack, ID_DATA));
                if p.stage == 1 {
                    plan.push((legit_tuple(vip, vport, p.client, 1), PacketKind::Syn, ID_SYN));
                    pending[c].push_back(Pending { due: now + rtt_tsc[c], client: p.client, stage: 2 });
                } else if let Some(cl) = clients[c].get_mut((p.client as usize - c) / classes) {
                    cl.done = true;
                }
            }
        }
        for _ in 0..a.checks_per_chunk.min(flows.len()) {
            let f = rng.below(flows.len() as u64) as usize;
            plan.push((flows[f], PacketKind::Ack, ID_EST));
            est_sent += 1;
        }
        while plan.len() < chunk {
            let r = rng.next_u64();
            let mut caddr = r as u32;
            // Never a legitimate client's or an established connection's address.
            if caddr >> 24 == 10 || caddr >> 22 == 0x191 {
                caddr ^= 0x8000_0000;
            }
            let tup = Tuple { proto: 6, caddr: Ipv4Addr::from(caddr), cport: (r >> 32) as u16 | 1, vaddr: vip, vport };
            plan.push((tup, PacketKind::Syn, ID_FLOOD));
            flood_syns += 1;
        }
        let n = plan.len();
        lp.top_up(&mut store, n)?;
        for (m, (tup, kind, id)) in store.mbufs.iter_mut().zip(plan.iter()) {
            anyhow::ensure!(m.set_len(t.frame_len()), "mbuf too small");
            t.write(tup, *kind, *id, m.data_mut());
        }
        let p = lp.pump(&mut store, n)?;
        total += n as u64;
        // Results of the legitimate and established packets (an established packet that
        // does not come out, or comes out toward another server, is lost).
        let mut est_ok = 0u64;
        for m in store.mbufs.iter().rev().take(p.out as usize) {
            let d = m.data();
            if d.len() < 54 || d[12] != 8 || d[13] != 0 {
                continue;
            }
            let id = u16::from_be_bytes([d[18], d[19]]);
            if id == ID_FLOOD {
                continue;
            }
            let src = u32::from_be_bytes([d[26], d[27], d[28], d[29]]);
            let sport = u16::from_be_bytes([d[34], d[35]]);
            let server = server_of(d);
            if id == ID_EST {
                if let Some(&i) = index.get(&(Ipv4Addr::from(src), sport)) {
                    if est_server.get(i as usize) == Some(&server) {
                        est_ok += 1;
                    }
                }
                continue;
            }
            if src >> 24 != 10 || !(ID_SYN..=ID_DATA).contains(&id) {
                continue;
            }
            let id_c = src - LEGIT_BASE;
            let (c, k) = (id_c as usize % classes, id_c as usize / classes);
            let conn = sport.wrapping_sub(LEGIT_PORT) as usize;
            if let Some(cl) = clients.get_mut(c).and_then(|v| v.get_mut(k)) {
                if conn < 2 {
                    cl.seen[conn][(id - ID_SYN) as usize] = server;
                }
            }
        }
        let est_this = (a.checks_per_chunk.min(flows.len())) as u64;
        lost += est_this.saturating_sub(est_ok);
        let now = tsc();
        if now >= next_row {
            let (entries, ev, full) = engine_counts(&lp);
            let (rt, rsyns, (_, ev0, full0)) = row_start;
            let dt = (now - rt) as f64 / hz as f64;
            let row = Second {
                t: (now - t0) as f64 / hz as f64,
                flood_mpps: (flood_syns - rsyns) as f64 / dt / 1e6,
                entries,
                evicted: ev - ev0,
                table_full: full - full0,
                rss_kib: rss_kib(),
            };
            eprintln!(
                "  t={:5.1}s flood {:5.2} Mpps  table {:>8}/{}  evicted {:>9}/s  table_full {:>6}/s  rss {} KiB",
                row.t, row.flood_mpps, row.entries, a.capacity, row.evicted, row.table_full, row.rss_kib
            );
            if rss_1s == 0 {
                rss_1s = row.rss_kib;
            }
            timeline.push(row);
            row_start = (now, flood_syns, (entries, ev, full));
            next_row = now + hz;
        }
    }
    let flood_secs = (tsc() - t0) as f64 / hz as f64;
    let cpu_secs = (clock.ns() - cpu0) as f64 / 1e9;
    let rss_end = rss_kib();
    let (entries_end, evicted, _) = engine_counts(&lp);
    let checked = est_sent;

    // After the flood: every established connection once more.
    let mut after = vec![0u8; flows.len()];
    check_all(&mut lp, &mut store, &mut after)?;
    let lost_after = est_server.iter().zip(&after).filter(|(a, b)| a != b).count() as u64;
    lp.top_up(&mut store, 0)?;
    let mbufs_after = lp.pool().in_use();

    let mut results = Vec::new();
    for (c, v) in clients.iter().enumerate() {
        let mut r = ClassResult { rtt_ms: a.rtts_ms[c], ..ClassResult::default() };
        for cl in v.iter().filter(|cl| cl.done) {
            r.clients += 1;
            let ok = |s: [u8; 3]| s[0] != 0 && s[0] == s[1] && s[1] == s[2];
            for conn in 0..2 {
                r.connections += 1;
                if ok(cl.seen[conn]) {
                    r.ok += 1;
                }
            }
            if ok(cl.seen[0]) && ok(cl.seen[1]) && cl.seen[0][0] == cl.seen[1][0] {
                r.same_server += 1;
            }
        }
        r.success = r.ok as f64 / r.connections.max(1) as f64;
        results.push(r);
    }
    let e = lp.engine.as_ref().context("engine")?;
    let c = e.counters();
    let mut drops: Vec<(String, u64)> =
        DropReason::ALL.iter().filter(|d| c.drops[**d as usize] > 0).map(|d| (d.name().to_string(), c.drops[*d as usize])).collect();
    drops.push(("replies_ratelimited".into(), c.replies_ratelimited));
    drops.push(("drop_entry_dropped".into(), c.drop_entry_dropped));
    let r = FloodResult {
        case: if a.persistent { "persistent".into() } else { "plain".into() },
        args: a.clone(),
        flood_secs,
        flood_syns,
        flood_mpps: flood_syns as f64 / flood_secs / 1e6,
        flood_mpps_cpu: flood_syns as f64 / cpu_secs.max(1e-9) / 1e6,
        on_cpu: cpu_secs / flood_secs,
        total_mpps: total as f64 / flood_secs / 1e6,
        classes: results,
        established: flows.len() as u64,
        established_checked: checked,
        established_lost: lost,
        established_lost_after: lost_after,
        entries_end,
        capacity: a.capacity as u64,
        evicted,
        drops,
        rss_kib: (rss_before, rss_1s, rss_end),
        mbufs_in_use: (mbufs_before, mbufs_after),
        timeline,
    };
    drop(store);
    std::mem::forget(lp);
    std::mem::forget(eal);
    Ok(r)
}

/// The result as a Markdown section.
pub fn markdown(rs: &[FloodResult]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "| case | flood Mpps (on-CPU / wall) | all Mpps (wall) | RTT | clients | connections | scheduled and kept their server | 2nd connection same server | established lost (during / after) | table at end | evicted | table_full | RSS KiB before / 1 s / end | mbufs in use before / after |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rs {
        let full = r.drops.iter().find(|d| d.0 == "table_full").map_or(0, |d| d.1);
        for c in &r.classes {
            let _ = writeln!(
                s,
                "| {} | {:.2} / {:.2} | {:.2} | {} ms | {} | {} | {:.3} % ({}) | {} | {} of {} / {} of {} | {} / {} | {} | {} | {} / {} / {} | {} / {} |",
                r.case,
                r.flood_mpps_cpu,
                r.flood_mpps,
                r.total_mpps,
                c.rtt_ms,
                c.clients,
                c.connections,
                100.0 * c.success,
                c.ok,
                if r.case == "persistent" { format!("{:.3} %", 100.0 * c.same_server as f64 / c.clients.max(1) as f64) } else { "–".into() },
                r.established_lost,
                r.established_checked,
                r.established_lost_after,
                r.established,
                r.entries_end,
                r.capacity,
                r.evicted,
                full,
                r.rss_kib.0,
                r.rss_kib.1,
                r.rss_kib.2,
                r.mbufs_in_use.0,
                r.mbufs_in_use.1,
            );
        }
    }
    for r in rs {
        let _ = writeln!(s, "\n{} — drop and defence counters: {}", r.case, r.drops.iter().map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join(", "));
    }
    s
}
