//! `health_scale`: ten thousand TCP_CHECKs a second in the real director while it forwards.
//! A measuring program, not a test: it prints a table and one `RESULT {json}` line
//! (`make healthscale`, docs/benchmarks.md).
//!
//! Setup, one process:
//! - the real director (`Director::start` + `run_until_stopped`, as `director-bench` mode
//!   (a), [`bench::director_run`]): one worker on EAL's main lcore (CPU 0), one `net_ring`
//!   port that this program fills and drains, its own control socket and its own health
//!   checker engine, which the director pins to the CPUs that are not worker lcores (CPU 1
//!   on a 2-core machine);
//! - the forwarding configuration of the `established-hot` scenario (4 services, 64 real
//!   servers, 1,024 established flows) plus `--services` × `--servers` checked real servers
//!   (default 100 × 100 = 10,000) loaded with `lbadm restore`. The checked servers' own
//!   addresses are off-link (172.20.0.0/16: the worker holds them, no ARP for them); their
//!   TCP_CHECKs (`delay_loop 1`, `connect_timeout 1`, `warmup 1`) go with `connect_ip
//!   127.0.0.1` to `--ports` loopback listeners that one `acceptor` thread accepts and closes;
//! - this program's threads (the generator, the acceptor, the `lbadm -L -n` poller) are
//!   pinned to the non-worker CPUs too: on 2 cores they share CPU 1 with the checker, and
//!   the worker has CPU 0 to itself (besides the director's control thread, which answers
//!   `-L -n` there in both phases).
//!
//! Two phases of `--secs` seconds each, same process, same table: **A** without checkers,
//! **B** with every checked server's TCP_CHECK running (added between them, then 2 s for the
//! warmup jitter to spread them). In each phase:
//! - forwarding: windows of `--packets` data packets of the established flows,
//!   each preloaded into the RX ring as fast as the generator goes (~50× the worker's rate)
//!   and timed until the last one is in the TX ring. Reported per window, median over the
//!   phase: **wall Mpps** (packets / window) and **busy Mpps** (packets / the worker's own
//!   busy cycles in the window: iterations that handled packets, so a generator that lost
//!   the shared CPU to the checker for a moment does not count against the worker). A
//!   forwarding slowdown caused by the checks shows in busy Mpps; the wall rate also shows
//!   the generator sharing CPU 1. Packets not forwarded and the port's drop counters too.
//!   Windows start at most every `--period-ms` (default 100 ms; 32,768 packets each: 0.33
//!   Mpps offered on average, bursts at full speed), so the generator leaves most of its CPU
//!   to the checker, and the worker idles between windows in both phases alike. **on-CPU
//!   Mpps** (packets / the worker thread's on-CPU time in the window) and the worker's
//!   on-CPU share of the window tell preemption of the worker (by the control thread or by
//!   other processes on a shared machine) apart from a slower worker.
//! - `lbadm -L -n` (the CLI's own code, the whole table of ~10,100 servers) every 100 ms
//!   (after the previous one returned): p50/p99/max latency.
//! - phase B only: **checks/s** (the engine's probe counter over the window, against the
//!   target servers ÷ delay_loop; keepalived schedules the next check delay_loop after a
//!   check ends, so the ceiling is servers ÷ (delay_loop + probe time)), failed probes, mean
//!   probe time, probes per checker in the window, and **checker CPU** (user+system time of
//!   the threads named `health`, % of one core, from /proc/self/task).
//!
//! `cargo run --release -p bench --bin health_scale -- [--services N] [--servers M]
//! [--secs S] [--ports P] [--packets K] [--period-ms T]` (root: EAL, hugepages or --no-huge).

use std::io::Cursor;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use bench::director_run::DirectorRig;
use bench::gen::Traffic;
use bench::rig::{self, Memory, Store};
use bench::scenario::{self, Pumped};
use bench::vdev_rig::ctl;
use control::cli::{run, CliIo};
use control::health::board::HealthCounters;
use control::names::NumericOnly;
use control::proto::{Op, Reply};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

/// Restricts the calling thread (and the threads it spawns later) to `cpus`.
fn pin(cpus: &[usize]) {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    for &c in cpus {
        let _ = set.set(c);
    }
    let _ = sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
}

/// user+system clock ticks of this process's threads named `health` (the checker engine:
/// its driver and runtime threads; verdicts are applied on its blocking pool, same name).
fn health_ticks() -> u64 {
    let parse = |stat: &str| -> u64 {
        stat.rsplit_once(") ")
            .map(|(_, rest)| {
                let f: Vec<&str> = rest.split_whitespace().collect();
                // utime and stime, fields 14 and 15 of stat: 12 and 13 after the name.
                f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                    + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let mut health = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == "health" {
                health += parse(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default());
            }
        }
    }
    health
}

/// Runs `lbadm ARGS` in-process (the CLI's code path against the control socket).
fn lbadm(socket: &Path, args: &[&str], stdin: &str) -> Result<String> {
    let mut all: Vec<String> = vec!["--socket".into(), socket.display().to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    let (mut i, mut o, mut e) = (Cursor::new(stdin.as_bytes().to_vec()), Vec::new(), Vec::new());
    let mut io = CliIo { stdin: &mut i, stdout: &mut o, stderr: &mut e, socket_env: None, names: &NumericOnly };
    let code = run(&all, &mut io);
    anyhow::ensure!(code == 0, "lbadm {}: {}", args.join(" "), String::from_utf8_lossy(&e));
    Ok(String::from_utf8_lossy(&o).into_owned())
}

/// `lbadm -L -n` every 50 ms until `stop`; the latencies.
fn list_latencies(socket: std::path::PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::Builder::new()
        .name("lbadm-poll".into())
        .spawn(move || {
            let mut out = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let text = lbadm(&socket, &["-L", "-n"], "").expect("lbadm -L -n");
                out.push(t.elapsed());
                std::hint::black_box(text.len());
                std::thread::sleep(Duration::from_millis(100));
            }
            out
        })
        .expect("spawn the lbadm poller")
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

fn ms(v: &[Duration]) -> Vec<f64> {
    v.iter().map(|d| d.as_secs_f64() * 1e3).collect()
}

fn counters(socket: &Path) -> Result<HealthCounters> {
    match ctl(socket, Op::CheckShow { service: None })? {
        Reply::Checks(r) => Ok(r.counters),
        other => anyhow::bail!("check show: {other:?}"),
    }
}

/// Probes so far of every checker, in listing order.
fn per_check(socket: &Path) -> Result<Vec<u64>> {
    match ctl(socket, Op::CheckShow { service: None })? {
        Reply::Checks(r) => Ok(r
            .services
            .iter()
            .flat_map(|s| s.servers.iter().flat_map(|v| v.checks.iter().map(|c| c.runtime.as_ref().map_or(0, |r| r.probes))))
            .collect()),
        other => anyhow::bail!("check show: {other:?}"),
    }
}

/// One phase's forwarding and listing numbers.
#[derive(Debug, Default)]
struct Phase {
    wall_mpps: Vec<f64>,
    busy_mpps: Vec<f64>,
    cpu_mpps: Vec<f64>,
    on_cpu: Vec<f64>,
    sent: u64,
    out: u64,
    list_ms: Vec<f64>,
    secs: f64,
}

/// Forwarding windows for `secs` while `lbadm -L -n` polls.
#[allow(clippy::too_many_arguments)]
fn phase(
    d: &mut DirectorRig,
    store: &mut Store,
    t: &Traffic,
    packets: u64,
    period: Duration,
    secs: u64,
    epoch: &mut u64,
    fresh: &mut u64,
) -> Result<Phase> {
    let hz = rig::tsc_hz() as f64;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = list_latencies(d.socket().to_path_buf(), Arc::clone(&stop));
    let mut p = Phase::default();
    let start = Instant::now();
    let mut next = start;
    while start.elapsed() < Duration::from_secs(secs) {
        // A window every `period` at most: the generator shares its CPU with the checker.
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += period;
        let b0 = d.busy_cycles();
        *epoch += 1;
        let r: Pumped = scenario::measure(d, store, t, *epoch, packets, packets as usize, fresh)?;
        let b1 = d.busy_cycles();
        p.sent += packets;
        p.out += r.out;
        if r.cycles > 0 {
            p.wall_mpps.push(r.out as f64 / (r.cycles as f64 / hz) / 1e6);
            p.on_cpu.push(r.cpu_ns as f64 / 1e9 / (r.cycles as f64 / hz) * 100.0);
        }
        if r.cpu_ns > 0 {
            p.cpu_mpps.push(r.out as f64 / (r.cpu_ns as f64 / 1e9) / 1e6);
        }
        if let (Some(Some(a)), Some(Some(b))) = (b0.first(), b1.first()) {
            if b > a {
                p.busy_mpps.push(r.out as f64 / ((b - a) as f64 / hz) / 1e6);
            }
        }
    }
    p.secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    p.list_ms = ms(&poller.join().map_err(|_| anyhow::anyhow!("lbadm poller panicked"))?);
    Ok(p)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let services = arg(&args, "--services", 100) as u32;
    let per = arg(&args, "--servers", 100) as u32;
    let secs = arg(&args, "--secs", 10);
    let nports = arg(&args, "--ports", 100) as usize;
    let packets = arg(&args, "--packets", 32768);
    let period = Duration::from_millis(arg(&args, "--period-ms", 100));
    let total = services * per;
    anyhow::ensure!(total <= 65536, "at most 65,536 checked servers");

    // Worker on CPU 0 (EAL -l 0); everything of ours on the others.
    let others = control::health::engine::cpus_except(&[0]).context("needs a CPU besides the worker's (CPU 0)")?;
    pin(&others);
    let load_start = load_average();

    // Loopback listeners: accept and close, one thread polling them all.
    let stop = Arc::new(AtomicBool::new(false));
    let mut ports = Vec::new();
    let mut listeners = Vec::new();
    for _ in 0..nports {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a loopback listener")?;
        l.set_nonblocking(true)?;
        ports.push(l.local_addr()?.port());
        listeners.push(l);
    }
    let acceptor = {
        let s = Arc::clone(&stop);
        std::thread::Builder::new().name("acceptor".into()).spawn(move || {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            while !s.load(Ordering::Relaxed) {
                let mut fds: Vec<PollFd<'_>> = listeners.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)).collect();
                if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) <= 0 {
                    continue;
                }
                let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN))).collect();
                drop(fds);
                for (l, r) in listeners.iter().zip(ready) {
                    while r {
                        match l.accept() {
                            Ok((c, _)) => drop(c),
                            Err(_) => break,
                        }
                    }
                }
            }
        })?
    };

    // The director, the forwarding configuration and its established flows.
    let sc = scenario::catalogue(true).into_iter().find(|s| s.name == "established-hot").context("scenario established-hot")?;
    let chunk = packets as usize;
    let probe_t = Traffic::new(sc.traffic.clone(), dataplane::wire::MacAddr::ZERO)?;
    let capacity = sc.capacity(&probe_t, packets * 1024);
    let memory = if rig::free_hugepages() >= 256 { Memory::Huge } else { Memory::NoHuge };
    let mut d = DirectorRig::start_with(
        memory,
        rig::mem_for(chunk as u32 + 1024, 64),
        capacity as usize,
        chunk as u32 + 1024,
        chunk as u32 + 1024,
        None,
        total + 1024,
    )?;
    let t = Traffic::new(sc.traffic.clone(), d.mac())?;
    d.configure(&t)?;

    // The checked servers (same table in both phases) and, for phase B, their checks.
    let mut servers = String::new();
    let mut checks = String::new();
    for s in 0..services {
        let vip = Ipv4Addr::new(203, 0, 113 - (s / 200) as u8, (s % 200 + 1) as u8);
        servers.push_str(&format!("-A -t {vip}:80 -s wlc\n"));
        for r in 0..per {
            let n = s * per + r;
            let rip = Ipv4Addr::new(172, 20, (n >> 8) as u8, n as u8);
            servers.push_str(&format!("-a -t {vip}:80 -r {rip}:80 -g -w 1\n"));
            let port = ports[n as usize % ports.len()];
            checks.push_str(&format!(
                "check add -t {vip}:80 -r {rip}:80 tcp --connect-ip 127.0.0.1 --connect-port {port} --delay-loop 1 --connect-timeout 1 --warmup 1\n"
            ));
        }
    }
    lbadm(d.socket(), &["restore", "--atomic", "-"], &servers)?;
    let mut store = Store::new(chunk);
    scenario::prepare(&mut d, &mut store, &t, &sc, chunk)?;
    let (mut epoch, mut fresh) = (0u64, 0u64);
    // One unmeasured window: caches, ring and pool warm.
    scenario::measure(&mut d, &mut store, &t, 0, packets, chunk, &mut fresh)?;

    eprintln!("health_scale: phase A, forwarding without checkers ({secs} s)");
    let mut a = phase(&mut d, &mut store, &t, packets, period, secs, &mut epoch, &mut fresh)?;

    let t_load = Instant::now();
    lbadm(d.socket(), &["restore", "-"], &checks)?;
    let load = t_load.elapsed();
    std::thread::sleep(Duration::from_secs(2)); // warmup spreads the first probes over 1 s
    eprintln!("health_scale: phase B, forwarding with {total} TCP_CHECKs ({secs} s)");
    let p0 = per_check(d.socket())?;
    let c0 = counters(d.socket())?;
    let h0 = health_ticks();
    let w0 = Instant::now();
    let mut b = phase(&mut d, &mut store, &t, packets, period, secs, &mut epoch, &mut fresh)?;
    let window = w0.elapsed().as_secs_f64();
    let h1 = health_ticks();
    let c1 = counters(d.socket())?;
    let p1 = per_check(d.socket())?;
    let drops = d.drops()?;
    let load_end = load_average();

    let mut hist = std::collections::BTreeMap::new();
    for (x, y) in p0.iter().zip(&p1) {
        *hist.entry(y - x).or_insert(0u32) += 1;
    }
    let hz = 100.0; // USER_HZ on Linux
    let cpu = (h1 - h0) as f64 / hz / window * 100.0;
    let rate = (c1.probes - c0.probes) as f64 / window;
    let failed = c1.probe_failures - c0.probe_failures;
    let mean_probe_ms = (c1.probe_us - c0.probe_us) as f64 / (c1.probes - c0.probes).max(1) as f64 / 1e3;
    let transitions = (c1.checks_down - c0.checks_down) + (c1.checks_up - c0.checks_up);

    println!(
        "health_scale: {total} checked real servers ({services} services x {per}), TCP_CHECK delay_loop 1 s to {} loopback listeners; \
         forwarding: established-hot, {} packets per window, 1 worker on CPU 0; checker, generator, acceptor and lbadm share CPU(s) {:?}",
        ports.len(),
        packets,
        others
    );
    println!("load average (1/5/15 min) at start: {load_start}, at end: {load_end}");
    println!("{:<48} {:>14} {:>14}", "measure", "no checks", "checks running");
    println!("{:<48} {:>14.2} {:>14.2}", "forwarding Mpps, worker busy time (median)", pct(&mut a.busy_mpps, 0.5), pct(&mut b.busy_mpps, 0.5));
    println!("{:<48} {:>14.2} {:>14.2}", "forwarding Mpps, worker on-CPU time (median)", pct(&mut a.cpu_mpps, 0.5), pct(&mut b.cpu_mpps, 0.5));
    println!("{:<48} {:>14.2} {:>14.2}", "forwarding Mpps, wall window (median)", pct(&mut a.wall_mpps, 0.5), pct(&mut b.wall_mpps, 0.5));
    println!("{:<48} {:>13.1}% {:>13.1}%", "worker on CPU in the windows (median)", pct(&mut a.on_cpu, 0.5), pct(&mut b.on_cpu, 0.5));
    println!("{:<48} {:>14.2} {:>14.2}", "offered Mpps (packets per window / period)", packets as f64 / period.as_secs_f64() / 1e6, packets as f64 / period.as_secs_f64() / 1e6);
    println!("{:<48} {:>14} {:>14}", "forwarding windows", a.busy_mpps.len(), b.busy_mpps.len());
    println!("{:<48} {:>14} {:>14}", "packets not forwarded", a.sent - a.out, b.sent - b.out);
    println!("{:<48} {:>14.2} {:>14.2}", "lbadm -L -n p50 ms", pct(&mut a.list_ms, 0.5), pct(&mut b.list_ms, 0.5));
    println!("{:<48} {:>14.2} {:>14.2}", "lbadm -L -n p99 ms", pct(&mut a.list_ms, 0.99), pct(&mut b.list_ms, 0.99));
    println!("{:<48} {:>14.2} {:>14.2}", "lbadm -L -n max ms", pct(&mut a.list_ms, 1.0), pct(&mut b.list_ms, 1.0));
    println!("{:<48} {:>14} {:>14}", "lbadm -L -n samples", a.list_ms.len(), b.list_ms.len());
    println!("{:<48} {:>14} {:>14.0}", "checks per second", "-", rate);
    println!("{:<48} {:>14} {:>14}", "target (servers / delay_loop)", "-", total);
    println!("{:<48} {:>14} {:>14}", "failed probes / state changes", "-", format!("{failed} / {transitions}"));
    println!("{:<48} {:>14} {:>14.3}", "mean probe duration (ms)", "-", mean_probe_ms);
    println!("{:<48} {:>14} {:>13.1}%", "checker CPU (threads `health`, % of one core)", "-", cpu);
    println!("{:<48} {:>14} {:>14.0}", "loading the checks (lbadm restore, ms)", "-", load.as_secs_f64() * 1e3);
    println!("probes per checker in the {window:.1} s window: {hist:?}");
    println!("port drops at the end: {drops:?}");
    println!(
        "RESULT {{\"servers\":{total},\"checks_per_sec\":{rate:.0},\"target_per_sec\":{total},\"failed_probes\":{failed},\"checker_cpu_pct\":{cpu:.1},\
         \"mean_probe_ms\":{mean_probe_ms:.3},\"busy_mpps_idle\":{:.3},\"busy_mpps_checking\":{:.3},\"cpu_mpps_idle\":{:.3},\"cpu_mpps_checking\":{:.3},\"wall_mpps_idle\":{:.3},\"wall_mpps_checking\":{:.3},\
         \"not_forwarded_idle\":{},\"not_forwarded_checking\":{},\"list_p50_ms_idle\":{:.2},\"list_p99_ms_idle\":{:.2},\"list_p50_ms_checking\":{:.2},\
         \"list_p99_ms_checking\":{:.2},\"load_start\":\"{load_start}\",\"load_end\":\"{load_end}\"}}",
        pct(&mut a.busy_mpps, 0.5),
        pct(&mut b.busy_mpps, 0.5),
        pct(&mut a.cpu_mpps, 0.5),
        pct(&mut b.cpu_mpps, 0.5),
        pct(&mut a.wall_mpps, 0.5),
        pct(&mut b.wall_mpps, 0.5),
        a.sent - a.out,
        b.sent - b.out,
        pct(&mut a.list_ms, 0.5),
        pct(&mut a.list_ms, 0.99),
        pct(&mut b.list_ms, 0.5),
        pct(&mut b.list_ms, 0.99),
    );
    let _ = (a.secs, b.secs);
    drop(store);
    d.stop();
    stop.store(true, Ordering::SeqCst);
    let _ = acceptor.join();
    Ok(())
}
