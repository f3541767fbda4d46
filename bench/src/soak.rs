//! Long-running and pressure benchmarks on the real director fed by the memif generator
//! (issue 13): the soak ([`soak`]) and the control plane under pressure ([`pressure`]).
//!
//! Both start the director as the memif mode does ([`crate::memif_run`]: `Director::start`
//! in this process, one worker on CPU 0, a memif client port as `dpdk0`; the `director-gen`
//! process on CPU 1 answers ARP, runs the scenario's setup phases, then replays the measured
//! frames of established flows until told to stop). While it sends, helper threads of this
//! process talk to the control socket: configuration edits as in-process protocol requests,
//! listings as real `lbadm` processes (the binary next to this one), so `-L -c` pages exactly
//! as an operator's would.
//!
//! Measurements are read from outside the worker: the director's RSS is this process's
//! `VmRSS` (the director runs in it; the bench's own threads add little and do not grow),
//! mbufs in use, connection-table entries and drop counters come from `link show`, the
//! forwarding rate from the port's TX counter over wall time. Nothing here touches the fast
//! path; every loop is bounded by the run's deadline, and the generator child is killed by
//! PID if this process fails ([`crate::memif_run::GenProc`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use control::ipvsadm::IpvsCommand;
use control::proto::{client, Op, Reply, Request};
use dataplane::dpdk::Port;
use dataplane::wire::MacAddr;

use crate::gen::Traffic;
use crate::memif_run::{self, memif_vdev, GenProc};
use crate::rig::{self, Memory};
use crate::scenario::{catalogue, Scenario};
use crate::vdev_rig::{ctl, VdevDirector};

/// A running director on a memif port with the generator attached, set up for a scenario.
pub struct MemifRig {
    /// The generator process.
    pub gen: GenProc,
    /// The director.
    pub dir: VdevDirector,
    /// Its memif port.
    pub port: Port,
    /// The scenario's traffic (addresses of the VIPs and real servers).
    pub traffic: Traffic,
    socket: PathBuf,
}

/// The scenario called `name`.
pub fn scenario(name: &str) -> Result<Scenario> {
    catalogue(false).into_iter().find(|s| s.name == name).with_context(|| format!("no scenario {name}"))
}

impl MemifRig {
    /// Starts the generator and the director, configures the scenario, runs its setup
    /// phases (every connection of the table created) and checks them. `max_secs` bounds the
    /// generator's life.
    pub fn start(s: &Scenario, memory: Memory, max_secs: u64) -> Result<MemifRig> {
        let frames = 65536u64;
        let socket = std::env::temp_dir().join(format!("director-soak-{}.memif", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let gargs: Vec<String> = vec![
            "--scenario".into(),
            s.name.clone(),
            "--frames".into(),
            frames.to_string(),
            "--memory".into(),
            if memory == Memory::Huge { "huge".into() } else { "nohuge".into() },
            "--lcore".into(),
            "1".into(),
            "--max-secs".into(),
            max_secs.to_string(),
            "--packet-bytes".into(),
            s.traffic.packet_bytes.to_string(),
        ];
        let mut g = GenProc::spawn(&socket, &gargs)?;
        g.expect("READY", Duration::from_secs(60))?;
        let vdev = memif_vdev("client", &socket);
        let probe = Traffic::new(s.traffic.clone(), MacAddr::ZERO)?;
        let capacity = s.capacity(&probe, 0);
        let mbufs = 8191u32;
        let veal = VdevDirector::init(memory, rig::mem_for(mbufs + 1024, 64), std::slice::from_ref(&vdev))?;
        let port = veal.port(0)?;
        let d = veal.start(capacity as usize, mbufs)?;
        let t = memif_run::connect(&mut g, &port, &d, &s.traffic)?;
        let t0 = Instant::now();
        g.send("SETUP")?;
        g.expect("SETUP-DONE", Duration::from_secs(600))?;
        let want = s.traffic.flows as u64 + s.background(&t);
        let got = d.conn_counts()?.0;
        anyhow::ensure!(got >= want, "setup created {got} connections, {want} expected");
        eprintln!("setup: {got} connections in {:.1} s", t0.elapsed().as_secs_f64());
        Ok(MemifRig { gen: g, dir: d, port, traffic: t, socket })
    }

    /// Starts the replay (until [`MemifRig::stop_traffic`]).
    pub fn start_traffic(&mut self) -> Result<()> {
        self.gen.send("RUN")
    }

    /// Stops the replay; returns the generator's count line.
    pub fn stop_traffic(&mut self) -> Result<String> {
        self.gen.send("STOP")?;
        self.gen.expect("RUN-DONE", Duration::from_secs(30))
    }

    /// Stops everything.
    pub fn finish(self) {
        self.gen.quit();
        self.dir.stop();
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Packets the port has transmitted (forwarded by the director).
    pub fn tx(&self) -> u64 {
        self.port.stats().tx_packets
    }
}

/// One reading of the director's state.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Reading {
    /// Seconds since the start of the soak.
    pub t: f64,
    /// Resident set of the process (KiB).
    pub rss_kib: u64,
    /// Mbufs of the pool in use.
    pub mbufs_in_use: u64,
    /// Connection-table entries.
    pub conn_entries: u64,
    /// All drop counters summed.
    pub drops: u64,
    /// Forwarded packets (port TX) so far.
    pub tx: u64,
}

/// This process's resident set in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn read(socket: &Path, port_tx: u64, t: f64) -> Result<Reading> {
    let mut r = Reading { t, rss_kib: rss_kib(), tx: port_tx, ..Reading::default() };
    if let Reply::Links(l) = ctl(socket, Op::LinkShow)? {
        for p in &l {
            r.mbufs_in_use = r.mbufs_in_use.max(p.mbufs_in_use);
            r.conn_entries = r.conn_entries.max(p.conn_entries);
            r.drops += p.drops.iter().map(|(_, c)| c).sum::<u64>();
        }
    }
    Ok(r)
}

/// The `lbadm` binary next to this executable.
pub fn lbadm_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?.with_file_name("lbadm");
    anyhow::ensure!(exe.exists(), "{} not found (cargo build --release)", exe.display());
    Ok(exe)
}

/// Runs `lbadm args` against `socket`, output discarded; returns its wall time.
fn lbadm(bin: &Path, socket: &Path, args: &[&str]) -> Result<Duration> {
    let t0 = Instant::now();
    let st = Command::new(bin)
        .args(args)
        .env(control::cli::SOCKET_ENV, socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running lbadm")?;
    anyhow::ensure!(st.status.success(), "lbadm {} failed: {}: {}", args.join(" "), st.status, first_line(&st.stderr));
    Ok(t0.elapsed())
}

/// The first line of a child's stderr (what lbadm said when it failed).
fn first_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr).lines().next().unwrap_or("").to_string()
}

fn parse_cmd(line: &str) -> IpvsCommand {
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    control::ipvsadm::parse(&args).unwrap_or_else(|e| panic!("bench command {line:?}: {e:?}"))
}

/// The edit loop's commands for unit `i`: a service on one of 64 VIPs of 203.0.113.0/24 (not one the
/// traffic uses) gets two of the scenario's real servers, both re-weighted, its scheduler
/// changed, then everything is deleted again, so the configuration returns to where it was.
fn edit_unit(i: u64, servers: &[Ipv4Addr]) -> Vec<IpvsCommand> {
    let vip = format!("203.0.113.{}:8000", 1 + i % 64);
    let (a, b) = (servers[(i as usize) % servers.len()], servers[(i as usize + 1) % servers.len()]);
    let w = 1 + i % 1000;
    let mut v = vec![
        parse_cmd(&format!("-A -t {vip} -s wlc")),
        parse_cmd(&format!("-a -t {vip} -r {a} -g -w {w}")),
        parse_cmd(&format!("-a -t {vip} -r {b} -g -w 1")),
        parse_cmd(&format!("-e -t {vip} -r {a} -g -w {}", w / 2)),
        parse_cmd(&format!("-e -t {vip} -r {b} -g -w 0")),
        parse_cmd(&format!("-E -t {vip} -s rr")),
        parse_cmd(&format!("-d -t {vip} -r {a}")),
        parse_cmd(&format!("-d -t {vip} -r {b}")),
        parse_cmd(&format!("-D -t {vip}")),
    ];
    if a == b {
        // One real server only: drop the second's commands.
        v.remove(7);
        v.remove(4);
        v.remove(2);
    }
    v
}

/// Threads sending configuration edits.
const EDIT_THREADS: u64 = 16;

/// Counts of the background clients.
#[derive(Debug, Default)]
struct Load {
    edits: AtomicU64,
    edit_errors: AtomicU64,
    listings: AtomicU64,
    listing_errors: AtomicU64,
}

/// Soak parameters.
pub struct SoakArgs {
    /// Total seconds of traffic.
    pub secs: u64,
    /// Seconds between readings.
    pub interval: u64,
    /// Configuration edits per second.
    pub edits_per_sec: u64,
    /// Scenario.
    pub scenario: String,
    /// Memory scheme.
    pub memory: Memory,
}

/// The soak: traffic, edits and listings for `secs`; a reading every `interval`. Returns
/// an error if RSS, mbufs in use or table entries grew without bound.
pub fn soak(a: &SoakArgs) -> Result<()> {
    let s = scenario(&a.scenario)?;
    let bin = lbadm_bin()?;
    let mut rig = MemifRig::start(&s, a.memory, a.secs + 900)?;
    let socket = rig.dir.socket.clone();
    let servers: Vec<Ipv4Addr> = rig.traffic.servers().into_iter().map(|(ip, _)| ip).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let result = (|| -> Result<Vec<Reading>> {
        rig.start_traffic()?;
        std::thread::sleep(Duration::from_secs(2));
        let start = Instant::now();
        let end = start + Duration::from_secs(a.secs);
        let mut threads = Vec::new();
        {
            // Edits: EDIT_THREADS threads, each on its own VIPs (unit numbers
            // thread, thread + EDIT_THREADS, ...), each paced to its share of the rate; one
            // request per edit (connect, request, answer), as lbadm does.
        }
        for th in 0..EDIT_THREADS {
            let (stop, load, socket, servers) = (stop.clone(), load.clone(), socket.clone(), servers.clone());
            let rate = (a.edits_per_sec.max(1) as f64) / EDIT_THREADS as f64;
            threads.push(std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut n = 0u64;
                let mut unit = th;
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    for cmd in edit_unit(unit, &servers) {
                        let due = t0 + Duration::from_secs_f64(n as f64 / rate);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        let text = format!("{cmd:?}");
                        let r = client::request_with_timeout(&socket, &Request { v: 1, op: Op::Ipvs(cmd) }, Duration::from_secs(20));
                        match r {
                            Ok(resp) if resp.result.is_ok() => {
                                load.edits.fetch_add(1, Ordering::Relaxed);
                            }
                            other => {
                                if load.edit_errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                    eprintln!("edit refused: {text}: {other:?}");
                                }
                            }
                        }
                        n += 1;
                    }
                    unit += EDIT_THREADS;
                }
            }));
        }
        {
            // Listings: real lbadm processes, one after the other.
            let (stop, load, socket, bin) = (stop.clone(), load.clone(), socket.clone(), bin.clone());
            threads.push(std::thread::spawn(move || {
                let kinds: [&[&str]; 3] = [&["-L", "-n"], &["-L", "-n", "-c"], &["-L", "-n", "--stats"]];
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    match lbadm(&bin, &socket, kinds[i % 3]) {
                        Ok(_) => load.listings.fetch_add(1, Ordering::Relaxed),
                        Err(_) => load.listing_errors.fetch_add(1, Ordering::Relaxed),
                    };
                    i += 1;
                }
            }));
        }
        let drops0 = rig.dir.drops()?;
        let mut readings = vec![read(&socket, rig.tx(), 0.0)?];
        println!(
            "{:>7} {:>10} {:>8} {:>10} {:>10} {:>10} {:>9} {:>9} {:>6}",
            "t s", "RSS KiB", "mbufs", "entries", "drops", "fwd Mpps", "edits", "listings", "errors"
        );
        let show = |r: &Reading, prev: &Reading, load: &Load| {
            let mpps = (r.tx - prev.tx) as f64 / (r.t - prev.t).max(1e-9) / 1e6;
            println!(
                "{:>7.0} {:>10} {:>8} {:>10} {:>10} {:>10.3} {:>9} {:>9} {:>6}",
                r.t,
                r.rss_kib,
                r.mbufs_in_use,
                r.conn_entries,
                r.drops,
                mpps,
                load.edits.load(Ordering::Relaxed),
                load.listings.load(Ordering::Relaxed),
                load.edit_errors.load(Ordering::Relaxed) + load.listing_errors.load(Ordering::Relaxed)
            );
        };
        show(&readings[0], &readings[0], &load);
        let mut next = start + Duration::from_secs(a.interval);
        while Instant::now() < end {
            let now = Instant::now();
            if next > now {
                std::thread::sleep((next - now).min(end - now));
            }
            next += Duration::from_secs(a.interval);
            let r = read(&socket, rig.tx(), start.elapsed().as_secs_f64())?;
            show(&r, readings.last().unwrap_or(&r), &load);
            readings.push(r);
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        println!("drops by reason over the run: {:?}", crate::vdev_rig::drops_delta(&drops0, &rig.dir.drops()?));
        Ok(readings)
    })();
    stop.store(true, Ordering::Relaxed);
    let gen = rig.stop_traffic();
    rig.finish();
    let readings = result?;
    if let Ok(g) = gen {
        println!("generator: {g}");
    }
    let edits = load.edits.load(Ordering::Relaxed);
    let secs = readings.last().map_or(0.0, |r| r.t);
    println!(
        "edits {edits} ({:.0}/s), edit errors {}, listings {}, listing errors {}",
        edits as f64 / secs.max(1e-9),
        load.edit_errors.load(Ordering::Relaxed),
        load.listings.load(Ordering::Relaxed),
        load.listing_errors.load(Ordering::Relaxed)
    );
    verdict(&readings)
}

/// Prints first / last / max of each quantity and fails if one grew: RSS by more than
/// 8 MiB plus 5 %, mbufs in use above 1,024 more than at the start (a burst in flight plus
/// the queues' fill), table entries above the first reading plus 5 %. Drops are reported (a
/// steady drop rate is not a leak).
pub fn verdict(r: &[Reading]) -> Result<()> {
    anyhow::ensure!(r.len() >= 2, "too few readings");
    // The first reading (traffic just started) is the baseline; the bound is on the last
    // half, so a warm-up step does not count but a steady climb does.
    let (first, last) = (r[1.min(r.len() - 1)], r[r.len() - 1]);
    let max = |f: fn(&Reading) -> u64| r.iter().map(f).max().unwrap_or(0);
    let mut bad = Vec::new();
    let mut line = |name: &str, f: fn(&Reading) -> u64, limit: u64| {
        let (a, b, m) = (f(&first), f(&last), max(f));
        let flat = b <= limit && m <= limit;
        println!("{name:<14} first {a:>10}  last {b:>10}  max {m:>10}  limit {limit:>10}  {}", if flat { "flat" } else { "GREW" });
        if !flat {
            bad.push(name.to_string());
        }
    };
    line("RSS KiB", |x| x.rss_kib, first.rss_kib + 8192 + first.rss_kib / 20);
    line("mbufs in use", |x| x.mbufs_in_use, first.mbufs_in_use + 1024);
    line("table entries", |x| x.conn_entries, first.conn_entries + first.conn_entries / 20 + 64);
    let secs = (last.t - first.t).max(1e-9);
    println!("drops          first {:>10}  last {:>10}  ({:.1}/s over the run)", first.drops, last.drops, (last.drops - first.drops) as f64 / secs);
    anyhow::ensure!(bad.is_empty(), "grew: {}", bad.join(", "));
    println!("SOAK OK");
    Ok(())
}

/// Control-plane pressure parameters.
pub struct PressureArgs {
    /// Concurrent lbadm clients.
    pub clients: usize,
    /// Seconds of clients.
    pub secs: u64,
    /// Seconds of each quiet window (before and after).
    pub quiet_secs: u64,
    /// Every n-th client lists the connections (`-L -n -c`).
    pub conn_every: usize,
    /// Scenario (its table is what `-L -c` lists).
    pub scenario: String,
    /// Memory scheme.
    pub memory: Memory,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Runs `lbadm args` like [`lbadm`], polling its `VmHWM` (peak RSS, KiB) every 2 ms while it
/// runs; returns the wall time and the largest peak seen.
fn lbadm_hwm(bin: &Path, socket: &Path, args: &[&str]) -> Result<(Duration, u64)> {
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .env(control::cli::SOCKET_ENV, socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running lbadm")?;
    // lbadm writes at most an error line or two: the pipe never fills before it exits.
    let mut stderr = child.stderr.take();
    let status = format!("/proc/{}/status", child.id());
    let mut hwm = 0u64;
    let deadline = t0 + Duration::from_secs(600);
    let st = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        // Before `exec` the child is a copy of this process: read it only once it is lbadm.
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).ok();
        let is_lbadm = exe.as_deref() == Some(bin);
        if let Some(v) = is_lbadm.then(|| std::fs::read_to_string(&status).ok()).flatten()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        {
            hwm = hwm.max(v);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("lbadm {} still running after 600 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if !st.success() {
        let mut err = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = std::io::Read::read_to_end(e, &mut err);
        }
        anyhow::bail!("lbadm {} failed: {st}: {}", args.join(" "), first_line(&err));
    }
    Ok((t0.elapsed(), hwm))
}

/// One measuring window of the pressure run: forwarded and received packets, the worker
/// thread's and the generator process's CPU time.
struct Window {
    t: Instant,
    snap: crate::vdev_rig::Snap,
    gen_ticks: u64,
}

/// A process's user + system CPU time in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn proc_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// The rates of a window.
struct Rates {
    fwd_mpps: f64,
    rx_mpps: f64,
    worker_cpu: f64,
    gen_cpu: f64,
}

impl std::fmt::Display for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "forwarding {:.3} Mpps (received {:.3}); worker on CPU {:.0} %, generator {:.0} %",
            self.fwd_mpps,
            self.rx_mpps,
            self.worker_cpu * 100.0,
            self.gen_cpu * 100.0
        )
    }
}

impl Window {
    fn start(rig: &MemifRig) -> Window {
        Window { t: Instant::now(), snap: rig.dir.sample(&rig.port), gen_ticks: proc_ticks(rig.gen.pid()) }
    }

    fn end(&self, rig: &MemifRig) -> Rates {
        let s = rig.dir.sample(&rig.port);
        let secs = self.t.elapsed().as_secs_f64();
        // USER_HZ (sysconf(_SC_CLK_TCK)) is 100 on Linux.
        let gen_secs = (proc_ticks(rig.gen.pid()) - self.gen_ticks) as f64 / 100.0;
        Rates {
            fwd_mpps: (s.stats.tx_packets - self.snap.stats.tx_packets) as f64 / secs / 1e6,
            rx_mpps: (s.stats.rx_packets - self.snap.stats.rx_packets) as f64 / secs / 1e6,
            worker_cpu: (s.cpu_ns - self.snap.cpu_ns) as f64 / 1e9 / secs,
            gen_cpu: gen_secs / secs,
        }
    }
}

/// 100 concurrent lbadm clients (by default) while the director forwards; prints the
/// forwarding rate before, during and after, the clients' latencies and the RSS.
pub fn pressure(a: &PressureArgs) -> Result<()> {
    let s = scenario(&a.scenario)?;
    let bin = lbadm_bin()?;
    let mut rig = MemifRig::start(&s, a.memory, a.secs + 2 * a.quiet_secs + 900)?;
    let socket = rig.dir.socket.clone();
    let result = (|| -> Result<()> {
        rig.start_traffic()?;
        std::thread::sleep(Duration::from_secs(2));
        let rate = |rig: &MemifRig, secs: u64| -> Rates {
            let w0 = Window::start(rig);
            std::thread::sleep(Duration::from_secs(secs));
            w0.end(rig)
        };
        let rss0 = rss_kib();
        let entries = read(&socket, 0, 0.0)?.conn_entries;
        let before = rate(&rig, a.quiet_secs);
        println!("table entries {entries}; before the clients: {before}; RSS {rss0} KiB");
        let stop = Arc::new(AtomicBool::new(false));
        let lat: Arc<Mutex<Vec<(usize, f64)>>> = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let reasons: Arc<Mutex<std::collections::BTreeMap<String, u64>>> = Arc::default();
        let hwm = Arc::new(AtomicU64::new(0));
        let kinds: [&'static [&'static str]; 4] = [&["-L", "-n", "-c"], &["-L", "-n"], &["-L", "-n", "--stats"], &["link", "show"]];
        let mut threads = Vec::new();
        for c in 0..a.clients {
            let (stop, lat, errors, socket, bin, hwm) = (stop.clone(), lat.clone(), errors.clone(), socket.clone(), bin.clone(), hwm.clone());
            let reasons = reasons.clone();
            let kind = if c % a.conn_every.max(1) == 0 { 0 } else { 1 + c % 3 };
            threads.push(std::thread::spawn(move || {
                // Off the worker's CPU, like the director's own slow-path threads (an
                // operator's lbadm runs on the housekeeping CPUs); its lbadm processes inherit it.
                if let Some(cpus) = control::health::engine::cpus_except(&[0]) {
                    control::health::engine::pin(&cpus);
                }
                while !stop.load(Ordering::Relaxed) {
                    let r = if kind == 0 {
                        lbadm_hwm(&bin, &socket, kinds[kind]).map(|(d, h)| {
                            hwm.fetch_max(h, Ordering::Relaxed);
                            d
                        })
                    } else {
                        lbadm(&bin, &socket, kinds[kind])
                    };
                    match r {
                        Ok(d) => lat.lock().unwrap_or_else(|e| e.into_inner()).push((kind, d.as_secs_f64() * 1e3)),
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            // Tally by lbadm's message (the part after the exit status).
                            let msg = e.to_string();
                            let why = msg.splitn(3, ": ").nth(2).unwrap_or(&msg).to_string();
                            *reasons.lock().unwrap_or_else(|e| e.into_inner()).entry(why).or_default() += 1;
                        }
                    }
                }
            }));
        }
        let t0 = Instant::now();
        let w0 = Window::start(&rig);
        let mut rss_max = rss0;
        while t0.elapsed() < Duration::from_secs(a.secs) {
            std::thread::sleep(Duration::from_millis(500));
            rss_max = rss_max.max(rss_kib());
        }
        let during = w0.end(&rig);
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        let rss1 = rss_kib();
        let after = rate(&rig, a.quiet_secs);
        let lbadm_rss = hwm.load(Ordering::Relaxed);
        println!("during {} clients ({} s): {during}", a.clients, a.secs);
        println!("after: {after}");
        println!("director RSS KiB: before {rss0}, max during {rss_max}, after {rss1}; peak RSS of an lbadm -L -n -c {lbadm_rss} KiB");
        let lat = lat.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let names = ["-L -n -c", "-L -n", "-L -n --stats", "link show"];
        println!("{:<14} {:>8} {:>10} {:>10} {:>10}", "request", "count", "p50 ms", "p99 ms", "max ms");
        for (k, name) in names.iter().enumerate() {
            let mut v: Vec<f64> = lat.iter().filter(|(kk, _)| *kk == k).map(|(_, d)| *d).collect();
            let n = v.len();
            let (p50, p99) = (pct(&mut v, 0.5), pct(&mut v, 0.99));
            let m = v.last().copied().unwrap_or(0.0);
            println!("{name:<14} {n:>8} {p50:>10.1} {p99:>10.1} {m:>10.1}");
        }
        let errs = errors.load(Ordering::Relaxed);
        println!("client errors {errs}");
        for (why, n) in reasons.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            println!("  {n:>8} × {why}");
        }
        anyhow::ensure!(errs == 0, "{errs} lbadm invocations failed");
        Ok(())
    })();
    let _ = rig.stop_traffic();
    rig.finish();
    result
}
