//! Named scenarios and the phases every benchmark mode runs them through.
//!
//! A scenario fixes the traffic (see [`crate::gen`]), how many entries the connection table
//! holds while measuring, and whether the measured packets open new connections. Phases:
//! 1. *open*: one opening packet (SYN, or the first UDP datagram) per active flow;
//! 2. *fill*: opening packets of background flows until the table holds `table_entries`
//!    entries (connections + persistence templates; the templates are bounded by
//!    clients × persistent services and counted in);
//! 3. *establish*: one data packet (ACK) per active flow, so active TCP flows are ESTABLISHED;
//! 4. *measure*: runs of packets from [`crate::gen::Sequence`] (epoch = run number): data
//!    packets of active flows drawn uniformly at random, or SYNs on fresh tuples.
//!
//! Phases 1-3 are never measured. The same deterministic phases drive every mode, so the
//! table the director holds is the table the engine loop holds.

use anyhow::Result;

use crate::gen::{PacketKind, Sequence, ServiceKind, Traffic, TrafficSpec, Tuple};
use crate::rig::Store;

/// A benchmark scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scenario {
    /// Name in the report.
    pub name: String,
    /// Traffic.
    pub traffic: TrafficSpec,
    /// Entries the table holds while measuring (at least active flows + templates).
    pub table_entries: u64,
    /// Measured packets open new connections (SYN-only): report connections per second.
    pub new_connections: bool,
    /// Part of the table-size sweep.
    pub sweep: bool,
    /// Run with the kernel leg on (host interfaces, `host_leg` snapshot, the worker's
    /// per-loop ring checks): what enabling it costs forwarding.
    pub kernel_leg: bool,
    /// rr/wrr with a cursor per worker instead of the shared rotation (the engine loop's
    /// yardstick of what sharing it costs new connections).
    pub per_worker_cursor: bool,
}

/// Upper bound on the persistence templates the traffic creates.
pub fn templates_bound(t: &Traffic) -> u64 {
    let persistent = t.services.iter().filter(|s| s.kind != ServiceKind::Plain).count() as u64;
    // Templates come from clients that send: at most one per opened flow.
    let senders = (t.spec.clients as u64).min(t.spec.flows as u64);
    persistent * senders
}

impl Scenario {
    /// Background flows to open so that the table holds `table_entries` entries.
    pub fn background(&self, t: &Traffic) -> u64 {
        self.table_entries.saturating_sub(self.traffic.flows as u64 + templates_bound(t))
    }

    /// Connection-table capacity: what the phases put in, plus the measured SYNs, plus 1/8.
    pub fn capacity(&self, t: &Traffic, measured_packets: u64) -> u64 {
        let base = self.table_entries.max(self.traffic.flows as u64 + templates_bound(t));
        // A SYN may bring a template along with its connection.
        let syns = if self.new_connections || self.traffic.syn_share > 0.0 { 2 * measured_packets } else { 0 };
        let c = base + syns;
        c + (c / 8).max(4096)
    }
}

/// Scenario catalogue. `quick` shrinks the sweep.
pub fn catalogue(quick: bool) -> Vec<Scenario> {
    let est = |name: &str, flows: u32, table: u64, sweep: bool| Scenario {
        name: name.into(),
        traffic: TrafficSpec { clients: 256, flows, ..TrafficSpec::default() },
        table_entries: table,
        new_connections: false,
        sweep,
        kernel_leg: false,
        per_worker_cursor: false,
    };
    let mut v = vec![
        est("established-hot", 1 << 10, 1 << 10, false),
        Scenario { kernel_leg: true, ..est("established-hot-kernel-leg", 1 << 10, 1 << 10, false) },
        est("established-64k-of-1M", 1 << 16, 1 << 20, false),
        Scenario {
            name: "new-connections".into(),
            // Every SYN comes from a new client (C exceeds every SYN sent), so each one
            // misses the templates, runs wlc over 16 servers, and inserts a template and a
            // connection: the same work per packet in every run (stationary for callgrind).
            traffic: TrafficSpec {
                clients: 4_000_000,
                flows: 0,
                services: 1,
                persistent_share: 1.0,
                port_zero_share: 0.0,
                fwmark_share: 0.0,
                syn_share: 1.0,
                servers_per_service: 16,
                scheduler: "wlc".into(),
                ..TrafficSpec::default()
            },
            table_entries: 0,
            new_connections: true,
            sweep: false,
            kernel_leg: false,
            per_worker_cursor: false,
        },
    ];
    // rr over 16 servers, non-persistent: each SYN schedules a connection with the shared
    // rotation (a compare-and-swap), then the same with a cursor per worker.
    let rr = |name: &str, per_worker_cursor: bool| Scenario {
        name: name.into(),
        traffic: TrafficSpec {
            clients: 4_000_000,
            flows: 0,
            services: 1,
            persistent_share: 0.0,
            port_zero_share: 0.0,
            fwmark_share: 0.0,
            syn_share: 1.0,
            servers_per_service: 16,
            scheduler: "rr".into(),
            ..TrafficSpec::default()
        },
        table_entries: 0,
        new_connections: true,
        sweep: false,
        kernel_leg: false,
        per_worker_cursor,
    };
    v.push(rr("new-connections-rr", false));
    v.push(rr("new-connections-rr-per-worker-cursor", true));
    let tables: &[(u64, &str)] =
        if quick { &[(1 << 10, "1k"), (1 << 16, "64k"), (1 << 20, "1M")] } else { &[(1 << 10, "1k"), (1 << 16, "64k"), (1 << 20, "1M"), (10 << 20, "10M")] };
    let actives: &[(u32, &str)] = if quick { &[(1 << 10, "1k"), (1 << 16, "64k")] } else { &[(1 << 10, "1k"), (1 << 16, "64k"), (1 << 20, "1M")] };
    for &(table, tn) in tables {
        for &(active, an) in actives {
            if active as u64 > table {
                continue;
            }
            v.push(est(&format!("sweep-table{tn}-active{an}"), active, table, true));
        }
    }
    v
}

/// Something that moves the first `n` mbufs of a store through the director's packet path
/// and gives them back (freed ones replaced).
pub trait Dataplane {
    /// Runs `n` packets (frames already written) through; returns what came out and the
    /// measured section's cost.
    fn pump(&mut self, store: &mut Store, n: usize) -> Result<Pumped>;
    /// Refills the store to `n` mbufs.
    fn top_up(&mut self, store: &mut Store, n: usize) -> Result<()>;
}

/// What one pump measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pumped {
    /// Packets that came out.
    pub out: u64,
    /// TSC cycles of the window (wall).
    pub cycles: u64,
    /// On-CPU nanoseconds of the packet-processing thread in the window.
    pub cpu_ns: u64,
}

/// Runs `count` packets given by `f(i)` through `dp` in chunks of `chunk` (unmeasured).
pub fn push_all<D: Dataplane>(
    dp: &mut D,
    store: &mut Store,
    t: &Traffic,
    count: u64,
    chunk: usize,
    mut f: impl FnMut(u64) -> (Tuple, PacketKind),
) -> Result<()> {
    let mut done = 0u64;
    while done < count {
        let n = ((count - done) as usize).min(chunk);
        dp.top_up(store, chunk)?;
        store.write(t, n, |i| f(done + i as u64))?;
        dp.pump(store, n)?;
        done += n as u64;
    }
    Ok(())
}

/// Phases 1-3 (see the module documentation).
pub fn prepare<D: Dataplane>(dp: &mut D, store: &mut Store, t: &Traffic, s: &Scenario, chunk: usize) -> Result<()> {
    let flows = s.traffic.flows as u64;
    push_all(dp, store, t, flows, chunk, |i| {
        let tup = t.flow(i as u32);
        (tup, Traffic::open_kind(&tup))
    })?;
    let bg = s.background(t);
    anyhow::ensure!(bg <= t.background_capacity(), "table too large for the clients' port space");
    push_all(dp, store, t, bg, chunk, |i| {
        let tup = t.background(i);
        (tup, Traffic::open_kind(&tup))
    })?;
    push_all(dp, store, t, flows, chunk, |i| {
        let tup = t.flow(i as u32);
        (tup, Traffic::data_kind(&tup))
    })?;
    Ok(())
}

/// One measured run of `packets` packets (epoch `run`), in chunks; returns the sums over the
/// chunks' measured sections. `fresh` carries the fresh-tuple counter across runs.
pub fn measure<D: Dataplane>(
    dp: &mut D,
    store: &mut Store,
    t: &Traffic,
    run: u64,
    packets: u64,
    chunk: usize,
    fresh: &mut u64,
) -> Result<Pumped> {
    let mut seq = Sequence::new(t, run, *fresh);
    let mut sum = Pumped::default();
    let mut done = 0u64;
    while done < packets {
        let n = ((packets - done) as usize).min(chunk);
        dp.top_up(store, chunk)?;
        store.write(t, n, |_| seq.next_packet())?;
        let p = dp.pump(store, n)?;
        sum.out += p.out;
        sum.cycles += p.cycles;
        sum.cpu_ns += p.cpu_ns;
        done += n as u64;
    }
    *fresh = seq.fresh_used();
    Ok(sum)
}
