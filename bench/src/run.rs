//! One benchmark process: a scenario in one mode (director, engine loop, io floor), natively
//! (Mpps and cycles per packet, median of runs) or under callgrind (instructions per packet
//! from the difference of two packet counts). Prints one `RESULT {json}` line.

use anyhow::{Context, Result};
use serde::Serialize;

use dataplane::dpdk::Eal;

use crate::capture_run::Pdump;
use crate::director_run::DirectorRig;
use crate::engine_loop::{engine_for, EngineLoop};
use crate::gen::{PacketKind, Traffic};
use crate::rig::{self, median, Memory, Store};
use crate::scenario::{self, Dataplane, Scenario};

/// Benchmark modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// (a) The real director on a ring port, configured through its control socket.
    Director,
    /// (b) rx_burst → worker::process_burst → tx_burst in one thread.
    Loop,
    /// rx_burst → tx_burst in one thread (io floor).
    Iofloor,
    /// The real director on a memif port fed by the `director-gen` process (input (2)).
    Memif,
    /// The real director on a net_pcap `infinite_rx=1` port (input (3)).
    Pcap,
    /// The kernel leg's throughput each way (run in a network namespace of its own).
    Kernel,
}

/// memif and pcap modes: forwarded packets per measured window = this × `packets`
/// (`packets` is the number of distinct pre-built frames / pcap records).
pub const WINDOW_FACTOR: u64 = 8;

/// What a run should do.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// Mode.
    pub mode: Mode,
    /// Scenario (ignored for the io floor, which uses established-hot's frames).
    pub scenario: Scenario,
    /// Packets per measured run.
    pub packets: u64,
    /// Measured runs.
    pub runs: usize,
    /// Mbufs per chunk (pool size).
    pub chunk: usize,
    /// Memory scheme.
    pub memory: Memory,
    /// Under callgrind: the two packet counts.
    pub callgrind: Option<(u64, u64)>,
    /// Engine loop only: the connection-sync master runs (see [`crate::sync_run`]).
    pub sync: bool,
    /// Engine loop: packet capture server / a running capture (see [`crate::capture_run`]).
    pub pdump: crate::capture_run::Pdump,
}

/// One measured run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Sample {
    /// Packets sent in.
    pub packets: u64,
    /// Packets that came out.
    pub out: u64,
    /// TSC cycles of the measured window (wall).
    pub cycles: u64,
    /// On-CPU nanoseconds of the worker thread in the window.
    pub cpu_ns: u64,
}

/// What a benchmark process reports.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunResult {
    /// Scenario name.
    pub name: String,
    /// Mode.
    pub mode: Mode,
    /// Memory scheme.
    pub memory: Memory,
    /// Wire bytes per packet (with FCS).
    pub packet_bytes: u16,
    /// Active flows.
    pub active_flows: u32,
    /// Entries the scenario asks the table to hold.
    pub table_entries: u64,
    /// Entries the table held while measuring (engine loop only).
    pub table_len: Option<u64>,
    /// Table capacity.
    pub capacity: u64,
    /// Workers.
    pub workers: u32,
    /// TSC frequency.
    pub tsc_hz: u64,
    /// Native runs.
    pub samples: Vec<Sample>,
    /// Median Mpps of the runs (packets out / window).
    pub mpps: Option<f64>,
    /// Median busy TSC cycles per packet (worker on-CPU time × TSC rate / packets).
    pub cycles_per_packet: Option<f64>,
    /// Median Mpps over wall time (includes time the worker was preempted).
    pub wall_mpps: Option<f64>,
    /// Median share of the wall window the worker was on a CPU.
    pub on_cpu: Option<f64>,
    /// Callgrind: instructions of the two phases and per packet.
    pub instructions: Option<(u64, u64)>,
    /// Callgrind packet counts.
    pub callgrind_packets: Option<(u64, u64)>,
    /// Bytes per connection entry (engine loop only).
    pub bytes_per_entry: Option<f64>,
    /// Non-zero drop counters after the runs.
    pub drops: Vec<(String, u64)>,
    /// Seconds spent in preparation (open, fill, establish).
    pub prepare_secs: f64,
    /// memif / pcap modes: input device, setup check, generator counts.
    #[serde(default)]
    pub input: Option<crate::vdev_rig::InputInfo>,
    /// Kernel mode: the leg's rates each way.
    #[serde(default)]
    pub kernel_leg: Option<crate::kernel_run::KernelLegRates>,
    /// Engine loop with the sync master: what it queued and sent.
    #[serde(default)]
    pub sync: Option<crate::sync_run::SyncCounts>,
    /// Engine loop with the capture server: the mode, and what a capture saw.
    #[serde(default)]
    pub capture: Option<crate::capture_run::CaptureInfo>,
}

fn summarize(r: &mut RunResult) {
    if r.samples.is_empty() {
        return;
    }
    let hz = r.tsc_hz as f64;
    // Busy time: the worker's on-CPU time in the window (falls back to wall time).
    let busy = |s: &Sample| if s.cpu_ns > 0 { s.cpu_ns as f64 / 1e9 } else { s.cycles as f64 / hz };
    let mpps: Vec<f64> = r.samples.iter().map(|s| s.out as f64 / busy(s).max(1e-12) / 1e6).collect();
    let cpp: Vec<f64> = r.samples.iter().map(|s| busy(s) * hz / s.out.max(1) as f64).collect();
    let wall: Vec<f64> = r.samples.iter().map(|s| s.out as f64 / (s.cycles.max(1) as f64 / hz) / 1e6).collect();
    let on: Vec<f64> = r.samples.iter().map(|s| busy(s) / (s.cycles.max(1) as f64 / hz)).collect();
    r.mpps = Some(median(&mpps));
    r.cycles_per_packet = Some(median(&cpp));
    r.wall_mpps = Some(median(&wall));
    r.on_cpu = Some(median(&on));
}

fn base_result(a: &RunArgs, capacity: u64) -> RunResult {
    RunResult {
        name: a.scenario.name.clone(),
        mode: a.mode,
        memory: a.memory,
        packet_bytes: a.scenario.traffic.packet_bytes,
        active_flows: a.scenario.traffic.flows,
        table_entries: a.scenario.table_entries,
        table_len: None,
        capacity,
        workers: 1,
        tsc_hz: 0,
        samples: Vec::new(),
        mpps: None,
        cycles_per_packet: None,
        wall_mpps: None,
        on_cpu: None,
        instructions: None,
        callgrind_packets: None,
        bytes_per_entry: None,
        drops: Vec::new(),
        prepare_secs: 0.0,
        input: None,
        kernel_leg: None,
        sync: None,
        capture: None,
    }
}

fn measure_runs<D: Dataplane>(dp: &mut D, store: &mut Store, t: &Traffic, a: &RunArgs, r: &mut RunResult) -> Result<()> {
    let mut fresh = 0u64;
    // One unmeasured warm-up run (caches, branch predictors, first touches).
    scenario::measure(dp, store, t, 1000, a.packets.min(a.chunk as u64), a.chunk, &mut fresh)?;
    for run in 0..a.runs {
        let p = scenario::measure(dp, store, t, run as u64, a.packets, a.chunk, &mut fresh)?;
        r.samples.push(Sample { packets: a.packets, out: p.out, cycles: p.cycles, cpu_ns: p.cpu_ns });
    }
    Ok(())
}

/// Callgrind phases: zero, N1 packets, dump, N2 packets, dump.
fn callgrind_phases(lp: &mut EngineLoop, store: &mut Store, t: &Traffic, a: &RunArgs, n: (u64, u64), r: &mut RunResult) -> Result<()> {
    let mut fresh = 0u64;
    // Warm-up, uninstrumented.
    scenario::measure(lp, store, t, 1000, n.0.min(a.chunk as u64), a.chunk, &mut fresh)?;
    crate::valgrind::zero_stats();
    lp.callgrind = true;
    scenario::measure(lp, store, t, 0, n.0, a.chunk, &mut fresh)?;
    crate::valgrind::dump_stats_at("phase-n1");
    scenario::measure(lp, store, t, 1, n.1, a.chunk, &mut fresh)?;
    crate::valgrind::dump_stats_at("phase-n2");
    lp.callgrind = false;
    r.callgrind_packets = Some(n);
    Ok(())
}

/// Runs one benchmark process's work.
pub fn run(a: &RunArgs) -> Result<RunResult> {
    let chunk = a.chunk;
    match a.mode {
        Mode::Kernel => {
            let mut r = base_result(a, 0);
            r.name = "kernel-leg".into();
            r.kernel_leg = Some(crate::kernel_run::run(a.memory, a.packets, &a.scenario.traffic)?);
            Ok(r)
        }
        Mode::Memif | Mode::Pcap => {
            let mut r = base_result(a, 0);
            let window = a.packets * WINDOW_FACTOR;
            if a.mode == Mode::Memif {
                crate::memif_run::run(a, window, &mut r)?;
            } else {
                crate::pcap_run::run(a, window, &mut r)?;
            }
            summarize(&mut r);
            Ok(r)
        }
        Mode::Director => {
            let probe = Traffic::new(a.scenario.traffic.clone(), dataplane::wire::MacAddr::ZERO)?;
            let capacity = a.scenario.capacity(&probe, a.packets * (a.runs as u64 + 1));
            let mut r = base_result(a, capacity);
            let extra = (capacity * 90 / (1 << 20)) as u32; // the table lives on the heap, not in EAL memory
            let _ = extra;
            let kernel = a.scenario.kernel_leg.then_some(dataplane::kernel::DEFAULT_PPS);
            let mut d = DirectorRig::start(a.memory, rig::mem_for(chunk as u32 + 1024, 64), capacity as usize, chunk as u32 + 1024, chunk as u32 + 1024, kernel)?;
            let t = Traffic::new(a.scenario.traffic.clone(), d.mac())?;
            d.configure(&t)?;
            let mut store = Store::new(chunk);
            let t0 = std::time::Instant::now();
            scenario::prepare(&mut d, &mut store, &t, &a.scenario, chunk)?;
            r.prepare_secs = t0.elapsed().as_secs_f64();
            r.tsc_hz = rig::tsc_hz();
            measure_runs(&mut d, &mut store, &t, a, &mut r)?;
            r.drops = d.drops()?;
            drop(store);
            d.stop();
            summarize(&mut r);
            Ok(r)
        }
        Mode::Loop | Mode::Iofloor => {
            let mem = rig::mem_for(chunk as u32 + 1024, 64);
            let args = match a.pdump {
                Pdump::Off => rig::eal_args("director-bench", "0", a.memory, mem),
                _ => crate::capture_run::eal_args("director-bench", "0", a.memory, mem),
            };
            let eal = Eal::init(&args).context("EAL init")?;
            let _pdump = match a.pdump {
                Pdump::Off => None,
                _ => Some(dataplane::dpdk::pdump::Pdump::init(&eal).context("rte_pdump_init")?),
            };
            let mut lp = EngineLoop::new(&eal, a.memory, chunk as u32 + 64, chunk as u32 + 1024)?;
            let port = lp.port();
            let t = Traffic::new(a.scenario.traffic.clone(), dataplane::wire::MacAddr(port.mac()))?;
            let capacity = a.scenario.capacity(&t, a.packets * (a.runs as u64 + 1) + a.callgrind.map_or(0, |c| c.0 + c.1 + chunk as u64));
            let mut r = base_result(a, capacity);
            let mut store = Store::new(chunk);
            let mut master = None;
            if a.mode == Mode::Loop {
                let mut engine = engine_for(&t, &port, capacity as usize, a.scenario.kernel_leg, a.scenario.per_worker_cursor)?;
                if a.sync {
                    master = Some(crate::sync_run::Master::start(&mut engine)?);
                }
                lp.engine = Some(engine);
                if a.scenario.kernel_leg {
                    lp.with_host_rings(&eal)?;
                }
                let t0 = std::time::Instant::now();
                scenario::prepare(&mut lp, &mut store, &t, &a.scenario, chunk)?;
                r.prepare_secs = t0.elapsed().as_secs_f64();
                let e = lp.engine.as_ref().context("engine")?;
                r.table_len = Some(e.conns().len() as u64);
                r.bytes_per_entry = Some(e.conns().bytes_per_entry());
            } else {
                r.name = "io-floor".into();
                r.capacity = 0;
            }
            r.tsc_hz = rig::tsc_hz();
            let before = master.as_ref().map(crate::sync_run::Master::counts);
            let dumpcap = match a.pdump {
                Pdump::Capture => Some(crate::capture_run::Dumpcap::start(port.id())?),
                _ => None,
            };
            match a.callgrind {
                Some(n) => callgrind_phases(&mut lp, &mut store, &t, a, n, &mut r)?,
                None => measure_runs(&mut lp, &mut store, &t, a, &mut r)?,
            }
            if let (Some(m), Some(b)) = (master.take(), before) {
                r.sync = Some(m.finish(b));
            }
            r.capture = match dumpcap {
                Some(d) => Some(d.stop(a.pdump)?),
                None => (a.pdump != Pdump::Off).then(|| crate::capture_run::CaptureInfo { pdump: a.pdump, ..Default::default() }),
            };
            if a.pdump != Pdump::Off {
                crate::capture_run::cleanup();
            }
            if let Some(e) = lp.engine.as_ref() {
                let c = e.counters();
                r.drops = dataplane::counters::DropReason::ALL
                    .iter()
                    .filter(|d| c.drops[**d as usize] > 0)
                    .map(|d| (d.name().to_string(), c.drops[*d as usize]))
                    .collect();
            }
            drop(store);
            summarize(&mut r);
            let _ = PacketKind::Syn;
            std::mem::forget(lp);
            std::mem::forget(eal);
            Ok(r)
        }
    }
}
