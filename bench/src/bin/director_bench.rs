//! `director-bench`: the director's benchmark driver (see docs/benchmarks.md).
//!
//! - `director-bench all [--quick] [--out DIR]`: everything `make bench` runs — testpmd
//!   yardstick, io floor, every scenario in mode (a) and (b) natively, then callgrind — each
//!   benchmark in its own process (one EAL per process), and writes the report.
//! - `director-bench run --mode director|loop|iofloor|memif|pcap --scenario NAME [...]`: one
//!   process's work; prints `RESULT {json}` (`memif` starts the `director-gen` process).
//! - `director-bench list`: scenario names.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use bench::capture_run::Pdump;
use bench::report::{Collected, ScenarioResults};
use bench::rig::{free_hugepages, Memory};
use bench::run::{Mode, RunArgs, RunResult};
use bench::scenario::catalogue;

#[derive(Parser)]
#[command(name = "director-bench", about = "Director benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run everything and write the report.
    All {
        /// Small sizes (BENCH_QUICK=1).
        #[arg(long)]
        quick: bool,
        /// Output directory.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Skip callgrind.
        #[arg(long)]
        no_callgrind: bool,
        /// Only scenarios whose name contains this.
        #[arg(long)]
        only: Option<String>,
    },
    /// One benchmark process.
    Run {
        #[arg(long, value_parser = ["director", "loop", "iofloor", "memif", "pcap", "kernel"])]
        mode: String,
        #[arg(long, default_value = "established-hot")]
        scenario: String,
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 131072)]
        packets: u64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 131072)]
        chunk: usize,
        #[arg(long, value_parser = ["huge", "nohuge"], default_value = "nohuge")]
        memory: String,
        /// Callgrind phases: N1,N2 packets.
        #[arg(long)]
        callgrind: Option<String>,
        /// Override the packet size (wire bytes).
        #[arg(long)]
        packet_bytes: Option<u16>,
        /// Engine loop: run the connection-sync master (sender thread to a loopback sink).
        #[arg(long)]
        sync_master: bool,
        /// Loop mode: DPDK's capture server (`ready`) or a running dpdk-dumpcap (`capture`).
        #[arg(long, value_parser = ["off", "ready", "capture"], default_value = "off")]
        pdump: String,
    },
    /// Scenario names.
    List,
    /// testpmd io on a memif port fed by director-gen (the memif yardstick) alone.
    MemifYardstick {
        /// Seconds of measurement.
        #[arg(long, default_value_t = 5)]
        secs: u64,
        #[arg(long, value_parser = ["huge", "nohuge"], default_value = "huge")]
        memory: String,
    },
    /// Soak (`make soak`): memif traffic, configuration edits and listings for `secs`, a
    /// reading every `interval` s; fails if RSS, mbufs in use or table entries grew.
    Soak {
        #[arg(long, default_value_t = 1800)]
        secs: u64,
        #[arg(long, default_value_t = 60)]
        interval: u64,
        #[arg(long, default_value_t = 1000)]
        edits_per_sec: u64,
        #[arg(long, default_value = "established-hot")]
        scenario: String,
        #[arg(long, value_parser = ["huge", "nohuge"], default_value = "nohuge")]
        memory: String,
    },
    /// Control plane under pressure (`make ctlpressure`): concurrent lbadm clients while the
    /// director forwards.
    Pressure {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 30)]
        secs: u64,
        #[arg(long, default_value_t = 10)]
        quiet_secs: u64,
        /// Every n-th client runs `-L -n -c`.
        #[arg(long, default_value_t = 10)]
        conn_every: usize,
        #[arg(long, default_value = "established-64k-of-1M")]
        scenario: String,
        #[arg(long, value_parser = ["huge", "nohuge"], default_value = "nohuge")]
        memory: String,
    },
    /// Rewrite report.json, report.md and the plots from a details.json.
    Report {
        /// details.json of an earlier `all`.
        #[arg(long, default_value = "target/bench/details.json")]
        from: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
}

fn memory_of(s: &str) -> Memory {
    if s == "huge" {
        Memory::Huge
    } else {
        Memory::NoHuge
    }
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::List => {
            for s in catalogue(false) {
                println!("{}", s.name);
            }
            Ok(())
        }
        Cmd::Run { mode, scenario, quick, packets, runs, chunk, memory, callgrind, packet_bytes, sync_master, pdump } => {
            let mut sc = catalogue(quick)
                .into_iter()
                .chain(catalogue(false))
                .find(|s| s.name == scenario)
                .with_context(|| format!("no scenario {scenario} (see `director-bench list`)"))?;
            if let Some(b) = packet_bytes {
                sc.traffic.packet_bytes = b;
            }
            let callgrind = match callgrind {
                Some(c) => {
                    let (a, b) = c.split_once(',').context("--callgrind N1,N2")?;
                    Some((a.parse()?, b.parse()?))
                }
                None => None,
            };
            let mode = match mode.as_str() {
                "director" => Mode::Director,
                "loop" => Mode::Loop,
                "memif" => Mode::Memif,
                "pcap" => Mode::Pcap,
                "kernel" => Mode::Kernel,
                _ => Mode::Iofloor,
            };
            let pdump = Pdump::parse(&pdump).context("--pdump off|ready|capture")?;
            let a = RunArgs { mode, scenario: sc, packets, runs, chunk, memory: memory_of(&memory), callgrind, sync: sync_master, pdump };
            let r = bench::run::run(&a)?;
            println!("RESULT {}", serde_json::to_string(&r)?);
            // EAL objects are left to process exit.
            std::process::exit(0);
        }
        Cmd::Soak { secs, interval, edits_per_sec, scenario, memory } => {
            let a = bench::soak::SoakArgs { secs, interval: interval.max(1), edits_per_sec, scenario, memory: memory_of(&memory) };
            bench::soak::soak(&a)?;
            std::process::exit(0);
        }
        Cmd::Pressure { clients, secs, quiet_secs, conn_every, scenario, memory } => {
            let a = bench::soak::PressureArgs { clients, secs, quiet_secs, conn_every, scenario, memory: memory_of(&memory) };
            bench::soak::pressure(&a)?;
            std::process::exit(0);
        }
        Cmd::MemifYardstick { secs, memory } => {
            let (t, g) = bench::memif_run::testpmd_io(secs, memory_of(&memory))?;
            println!("{}", serde_json::to_string(&serde_json::json!({"testpmd": t, "generator": g}))?);
            Ok(())
        }
        Cmd::Report { from, out } => {
            let c: Collected = serde_json::from_str(&std::fs::read_to_string(&from)?)?;
            c.write(&out)?;
            println!("{}", c.markdown());
            Ok(())
        }
        Cmd::All { quick, out, no_callgrind, only } => all(quick, &out, !no_callgrind, only.as_deref()),
    }
}

/// Runs a child command with a time limit; returns (success, stdout, stderr tail).
fn child(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let started = Instant::now();
    let mut c = match cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => return (false, String::new(), format!("spawn: {e}")),
    };
    let mut so = c.stdout.take().expect("stdout");
    let mut se = c.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let ok = loop {
        match c.try_wait() {
            Ok(Some(st)) => break st.success(),
            Ok(None) => {}
            Err(_) => break false,
        }
        if started.elapsed() > limit {
            let _ = c.kill();
            let _ = c.wait();
            remove_temp_files(c.id());
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = t1.join().unwrap_or_default();
    let err = t2.join().unwrap_or_default();
    let tail: Vec<&str> = err.lines().rev().take(12).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    (ok, out, if started.elapsed() > limit { format!("timed out after {limit:?}\n{tail}") } else { tail })
}

/// Removes what a benchmark process killed by [`child`] could not clean up itself: its
/// control socket, memif socket, pcap file and generator log (all named with its PID).
fn remove_temp_files(pid: u32) {
    let tmp = std::env::temp_dir();
    for name in [
        format!("director-bench-{pid}.sock"),
        format!("director-bench-{pid}.memif"),
        format!("director-bench-{pid}.pcap"),
        format!("director-bench-{pid}.pcap.tmp"),
        format!("director-gen-{pid}.log"),
    ] {
        let _ = std::fs::remove_file(tmp.join(name));
    }
}

/// A network namespace for one benchmark process, deleted on drop.
struct BenchNetns(String);

impl BenchNetns {
    fn new() -> Result<BenchNetns> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!("dbench-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let ok = |args: &[&str]| Command::new("ip").args(args).status().map(|s| s.success()).unwrap_or(false);
        anyhow::ensure!(ok(&["netns", "add", &name]), "ip netns add {name} failed (root needed)");
        let ns = BenchNetns(name);
        anyhow::ensure!(ok(&["-n", &ns.0, "link", "set", "lo", "up"]), "lo up in {}", ns.0);
        Ok(ns)
    }
}

impl Drop for BenchNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn parse_result(out: &str) -> Option<RunResult> {
    out.lines().find_map(|l| l.strip_prefix("RESULT ")).and_then(|j| serde_json::from_str(j).ok())
}

#[derive(Clone)]
struct Plan {
    exe: PathBuf,
    quick: bool,
    memory: Memory,
    packets: u64,
    runs: usize,
    chunk: usize,
    cg_chunk: usize,
    cg: (u64, u64),
    /// Capture server / running capture for loop runs (section 2c).
    pdump: Pdump,
}

impl Plan {
    fn args(&self, mode: &str, scenario: &str, memory: Memory, callgrind: Option<(u64, u64)>) -> Vec<String> {
        let mut v: Vec<String> = vec!["run".into(), "--mode".into(), mode.into(), "--scenario".into(), scenario.into()];
        if self.pdump != Pdump::Off {
            v.extend(["--pdump".into(), self.pdump.name().into()]);
        }
        if self.quick {
            v.push("--quick".into());
        }
        let chunk = if callgrind.is_some() { self.cg_chunk } else { self.chunk };
        v.extend([
            "--packets".into(),
            self.packets.to_string(),
            "--runs".into(),
            self.runs.to_string(),
            "--chunk".into(),
            chunk.to_string(),
            "--memory".into(),
            if memory == Memory::Huge { "huge".into() } else { "nohuge".into() },
        ]);
        if let Some((a, b)) = callgrind {
            v.extend(["--callgrind".into(), format!("{a},{b}")]);
        }
        v
    }

    fn native(&self, mode: &str, scenario: &str, errors: &mut Vec<String>) -> Option<RunResult> {
        let t0 = Instant::now();
        let mut r = self.native_with(mode, scenario, self.memory, errors);
        if r.is_none() && self.memory == Memory::Huge {
            eprintln!("  retrying {mode} {scenario} with --no-huge");
            r = self.native_with(mode, scenario, Memory::NoHuge, errors);
        }
        if let Some(r) = &r {
            eprintln!(
                "  {:<34} {:<8} {:>7} Mpps {:>6} cycles/pkt   ({:.1} s)",
                scenario,
                mode,
                r.mpps.map_or("-".into(), |v| format!("{v:.2}")),
                r.cycles_per_packet.map_or("-".into(), |v| format!("{v:.0}")),
                t0.elapsed().as_secs_f64()
            );
        }
        r
    }

    fn native_with(&self, mode: &str, scenario: &str, memory: Memory, errors: &mut Vec<String>) -> Option<RunResult> {
        self.native_extra(mode, scenario, memory, &[], errors)
    }

    /// The engine loop on `scenario` with (`on`) or without the connection-sync master.
    fn native_sync(&self, scenario: &str, on: bool, errors: &mut Vec<String>) -> Option<RunResult> {
        let extra: &[&str] = if on { &["--sync-master"] } else { &[] };
        let r = self.native_extra("loop", scenario, self.memory, extra, errors);
        if let Some(r) = &r {
            eprintln!(
                "  {:<34} sync {:<3} {:>9} connections/s{}",
                scenario,
                if on { "on" } else { "off" },
                r.mpps.map_or("-".into(), |v| format!("{:.0}", v * 1e6)),
                r.sync.map_or(String::new(), |s| format!(
                    "  ({} entries, {} messages in {:.2} s, {} queue-full)",
                    s.entries_sent, s.messages_sent, s.secs, s.ring_full
                ))
            );
        }
        r
    }

    fn native_extra(&self, mode: &str, scenario: &str, memory: Memory, extra: &[&str], errors: &mut Vec<String>) -> Option<RunResult> {
        // A director with the kernel leg creates the interface dpdk0: in a namespace of its
        // own, never in the machine's.
        let kernel_leg = mode == "kernel" || (mode == "director" && catalogue(self.quick).iter().any(|s| s.name == scenario && s.kernel_leg));
        let netns = kernel_leg.then(|| BenchNetns::new());
        let mut cmd = match &netns {
            Some(Ok(ns)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.0]).arg(&self.exe);
                c
            }
            Some(Err(e)) => {
                errors.push(format!("{mode} {scenario}: {e:#}"));
                return None;
            }
            None => Command::new(&self.exe),
        };
        let (ok, out, err) = child(cmd.args(self.args(mode, scenario, memory, None)).args(extra), Duration::from_secs(240));
        drop(netns);
        match parse_result(&out) {
            Some(r) if ok => Some(r),
            _ => {
                errors.push(format!("{mode} {scenario} ({memory:?}): failed: {err}"));
                None
            }
        }
    }

    /// Callgrind run; returns the result with `instructions` filled, instructions/packet and
    /// the top functions of the second phase.
    fn callgrind(&self, mode: &str, scenario: &str, dir: &Path) -> Result<(RunResult, f64, Option<String>)> {
        let pd = if self.pdump == Pdump::Off { String::new() } else { format!("-pdump-{}", self.pdump.name()) };
        let file = dir.join(format!("{scenario}.{mode}{pd}.cg"));
        for n in ["", ".1", ".2"] {
            let _ = std::fs::remove_file(format!("{}{n}", file.display()));
        }
        let mut cmd = Command::new("valgrind");
        cmd.args(["--tool=callgrind", "--instr-atstart=no", "--dump-instr=no", "--dump-line=no"])
            .arg(format!("--callgrind-out-file={}", file.display()))
            .arg(&self.exe)
            .args(self.args(mode, scenario, Memory::NoHuge, Some(self.cg)));
        let (ok, out, err) = child(&mut cmd, Duration::from_secs(600));
        let mut r = parse_result(&out).filter(|_| ok).ok_or_else(|| anyhow::anyhow!("callgrind {mode} {scenario} failed: {err}"))?;
        let i1 = bench::valgrind::instructions_in(Path::new(&format!("{}.1", file.display())))?;
        let i2 = bench::valgrind::instructions_in(Path::new(&format!("{}.2", file.display())))?;
        r.instructions = Some((i1, i2));
        let (n1, n2) = self.cg;
        let ipp = (i2 as f64 - i1 as f64) / (n2 - n1) as f64;
        let profile = Command::new("callgrind_annotate").arg("--auto=no").arg(format!("{}.2", file.display())).output().ok().map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            // The function table: after the "file:function" header and its dashed line.
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.iter().position(|l| l.contains("file:function")).map_or(lines.len(), |i| i + 2);
            lines[start.min(lines.len())..].iter().take_while(|l| !l.trim().is_empty() && !l.starts_with("----")).take(10).map(|l| {
                let l = l.replace("/work/main/", "");
                if l.len() > 160 { format!("{}…", &l[..l.char_indices().nth(159).map_or(l.len(), |c| c.0)]) } else { l }
            }).collect::<Vec<_>>().join("\n")
        });
        Ok((r, ipp, profile))
    }
}

fn all(quick: bool, out: &Path, with_callgrind: bool, only: Option<&str>) -> Result<()> {
    let start = Instant::now();
    let exe = std::env::current_exe()?;
    let (packets, runs, chunk) = if quick { (65536u64, 3usize, 65536usize) } else { (131072, 5, 131072) };
    // Hugepages for native runs when enough are free for the traffic pool (+ EAL, director pool).
    let need_pages = (bench::rig::mem_for(chunk as u32 + 1024, 64) as u64).div_ceil(2) + 16;
    let memory = if free_hugepages() >= need_pages { Memory::Huge } else { Memory::NoHuge };
    let cg_chunk = 16384usize;
    let cg = if quick { (16384u64, 32768u64) } else { (32768, 65536) };
    let plan = Plan { exe, quick, memory, packets, runs, chunk, cg_chunk, cg, pdump: Pdump::Off };
    let mut c = Collected { quick, hugepages: memory == Memory::Huge, ..Collected::default() };
    eprintln!(
        "director-bench: {} mode, native runs with {:?} ({} free hugepages, {} needed), {} packets × {} runs",
        if quick { "quick" } else { "full" },
        memory,
        free_hugepages(),
        need_pages,
        packets,
        runs
    );

    // 1. Yardstick.
    let secs = if quick { 3 } else { 5 };
    for (mode, slot) in [("io", 0), ("macswap", 1)] {
        match bench::yardstick::run(mode, &["net_null0", "net_null1"], secs, memory, false) {
            Ok(t) => {
                eprintln!("  testpmd {mode:<8} net_null  {:.2} Mpps", t.mpps);
                if slot == 0 {
                    c.testpmd_io = Some(t);
                } else {
                    c.testpmd_macswap = Some(t);
                }
            }
            Err(e) => c.errors.push(format!("testpmd {mode}: {e:#}")),
        }
    }
    if !quick {
        match bench::yardstick::run("io", &["net_ring0", "net_ring1"], 3, memory, true) {
            Ok(t) => {
                eprintln!("  testpmd io       net_ring  {:.2} Mpps", t.mpps);
                c.testpmd_ring_io = Some(t);
            }
            Err(e) => c.errors.push(format!("testpmd ring io: {e:#}")),
        }
    }

    // 2. Native timings, one process each, one at a time.
    c.iofloor = plan.native("iofloor", "established-hot", &mut c.errors);
    for s in catalogue(quick) {
        if only.is_some_and(|o| !s.name.contains(o)) {
            continue;
        }
        let director = plan.native("director", &s.name, &mut c.errors);
        let engine_loop = plan.native("loop", &s.name, &mut c.errors);
        c.scenarios.push(ScenarioResults {
            name: s.name.clone(),
            sweep: s.sweep,
            new_connections: s.new_connections,
            director,
            engine_loop,
            ..ScenarioResults::default()
        });
    }

    // 2a. The kernel leg's throughput each way (own namespace).
    if only.is_none_or(|o| "kernel-leg".contains(o)) {
        let t0 = Instant::now();
        c.kernel_leg = plan.native_with("kernel", "established-hot", memory, &mut c.errors);
        if let Some(k) = c.kernel_leg.as_ref().and_then(|r| r.kernel_leg.as_ref()) {
            eprintln!(
                "  kernel leg: port -> host {:.0} packets/s, host -> port {:.0} packets/s ({:.1} s)",
                k.to_host_pps(),
                k.from_host_pps(),
                t0.elapsed().as_secs_f64()
            );
        }
    }

    // 2c. Connection sync: new connections per second without and with the sync master,
    // alternated so that both see the same machine.
    if only.map_or(true, |o| "new-connections".contains(o)) {
        for _ in 0..2 {
            if let Some(r) = plan.native_sync("new-connections", false, &mut c.errors) {
                c.sync_off.push(r);
            }
            if let Some(r) = plan.native_sync("new-connections", true, &mut c.errors) {
                c.sync_on.push(r);
            }
        }
    }

    // 2c. Packet capture: the engine loop with DPDK's capture server idle, then with
    // dpdk-dumpcap capturing (hugepages needed: a --no-huge primary cannot be captured).
    if only.is_none_or(|o| "capture".contains(o)) {
        for pdump in [Pdump::Ready, Pdump::Capture] {
            let p = Plan { pdump, ..plan.clone() };
            let t0 = Instant::now();
            if pdump == Pdump::Capture && memory != Memory::Huge {
                c.errors.push("capture run skipped: no free hugepages (a --no-huge primary cannot be captured)".into());
                continue;
            }
            if let Some(r) = p.native_with("loop", "established-hot", memory, &mut c.errors) {
                eprintln!(
                    "  established-hot loop, pdump {:<7} {:>7} Mpps ({:.1} s){}",
                    pdump.name(),
                    r.mpps.map_or("-".into(), |v| format!("{v:.2}")),
                    t0.elapsed().as_secs_f64(),
                    r.capture.as_ref().filter(|_| pdump == Pdump::Capture).map_or(String::new(), |k| format!(", dumpcap received {} dropped {}", k.received, k.dropped))
                );
                c.capture.push(r);
            }
        }
    }

    // 2b. The director fed by the other inputs: a generator process over memif and a
    // net_pcap infinite_rx replay (established-flow scenarios only: both replay frames).
    let input_scenarios: &[&str] = if quick { &["established-hot"] } else { &["established-hot", "established-64k-of-1M"] };
    let mut inputs_ran = false;
    for name in input_scenarios {
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        inputs_ran = true;
        for mode in ["memif", "pcap"] {
            if let Some(r) = plan.native(mode, name, &mut c.errors) {
                c.inputs.push(r);
            }
        }
    }
    if inputs_ran {
        match bench::memif_run::testpmd_io(secs, memory) {
            Ok((t, g)) => {
                eprintln!("  testpmd io       memif     {:.2} Mpps (generator process: sent {}, back {})", t.mpps, g.sent, g.forwarded + g.other);
                c.testpmd_memif_io = Some(t);
                c.testpmd_memif_gen = Some(g);
            }
            Err(e) => c.errors.push(format!("testpmd io on memif: {e:#}")),
        }
    }

    // 3. Callgrind, two processes at a time (no timing is running any more).
    if with_callgrind {
        let cgdir = out.join("callgrind");
        std::fs::create_dir_all(&cgdir)?;
        let mut jobs: Vec<(String, String)> = vec![("iofloor".into(), "established-hot".into())];
        if only.is_none_or(|o| "capture".contains(o)) {
            jobs.push(("loop-pdump-ready".into(), "established-hot".into()));
        }
        jobs.extend(c.scenarios.iter().map(|s| ("loop".to_string(), s.name.clone())));
        let results = std::sync::Mutex::new(Vec::new());
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..2 {
                sc.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((mode, name)) = jobs.get(i) else { break };
                    let t0 = Instant::now();
                    let r = match mode.strip_suffix("-pdump-ready") {
                        Some(m) => Plan { pdump: Pdump::Ready, ..plan.clone() }.callgrind(m, name, &cgdir),
                        None => plan.callgrind(mode, name, &cgdir),
                    };
                    match &r {
                        Ok((_, ipp, _)) => eprintln!("  {name:<34} {mode:<8} {ipp:>7.1} instructions/packet (callgrind, {:.0} s)", t0.elapsed().as_secs_f64()),
                        Err(e) => eprintln!("  {name:<34} {mode:<8} callgrind failed: {e:#}"),
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner()).push((mode.clone(), name.clone(), r));
                });
            }
        });
        for (mode, name, r) in results.into_inner().unwrap_or_default() {
            match r {
                Ok((r, ipp, _)) if mode == "loop-pdump-ready" => {
                    c.capture_cg = Some(r);
                    c.capture_ready_ipp = Some(ipp);
                }
                Ok((r, ipp, _)) if mode == "iofloor" => {
                    c.iofloor_cg = Some(r);
                    c.iofloor_ipp = Some(ipp);
                }
                Ok((r, ipp, profile)) => {
                    if let Some(s) = c.scenarios.iter_mut().find(|s| s.name == name) {
                        s.callgrind = Some(r);
                        s.ipp = Some(ipp);
                        s.profile = profile;
                    }
                }
                Err(e) => c.errors.push(format!("{e:#}")),
            }
        }
    }

    // 4. control_scale (another benchmark of the workspace), if built.
    let cs = plan.exe.with_file_name("control_scale");
    if cs.exists() {
        let mut cmd = Command::new(&cs);
        if quick {
            cmd.args(["--services", "2500", "--runs", "1"]);
        }
        let (ok, so, se) = child(&mut cmd, Duration::from_secs(if quick { 60 } else { 300 }));
        if ok {
            eprint!("{so}");
            c.control_scale = Some(so);
        } else {
            c.errors.push(format!("control_scale failed: {se}"));
        }
    }

    c.wall_secs = start.elapsed().as_secs_f64();
    c.write(out)?;
    println!("{}", c.markdown());
    eprintln!("director-bench: wrote {}/report.json, report.md, details.json, *.png in {:.0} s", out.display(), c.wall_secs);
    Ok(())
}
