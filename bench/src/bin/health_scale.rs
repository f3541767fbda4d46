//! `health_scale`: the health checker engine at scale. A measuring program, not a test: it
//! prints a table and one `RESULT {json}` line.
//!
//! Setup: the real control server (`control::server::serve_shared`) over a backend that
//! compiles every publication into a worker snapshot with `dataplane::director::compile`
//! (what the director does minus the hand-over to workers), `--services` × `--servers`
//! real servers (default 100 × 100 = 10,000), and the real checker engine
//! (`control::server::start_health`: one thread, tokio, non-blocking sockets). Every real
//! server gets a TCP_CHECK with `delay_loop 1`, `warmup 1`; the probes go to loopback
//! listeners (`--ports` listeners on 127.0.0.1, accepted and closed by a few threads).
//!
//! Measured over `--secs` seconds (default 10) after one warm-up second:
//! - checks/s: probes completed (the engine's own counter) per second, against the target
//!   of servers ÷ delay_loop;
//! - checker CPU: user+system time of the `health` thread (and the `health-apply` threads,
//!   which apply verdicts) in % of one core, from /proc/self/task;
//! - `lbadm -L -n` latency (p50, p99, max): the CLI's own code path against the control
//!   socket, listing the whole table, one request every 50 ms, while the checks run — and
//!   the same before any checker exists, for comparison.
//!
//! `cargo run --release -p bench --bin health_scale -- [--services N] [--servers M]
//! [--secs S] [--ports P]`

use std::io::Cursor;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control::cli::{run, CliIo};
use control::names::NumericOnly;
use control::proto::{ConnInfo, LinkInfo, NeighInfo, ServerStats};
use control::server::{lock, serve_shared, start_health, SharedController};
use control::{Backend, Config, Controller, CtlError, ServerId};
use dataplane::director::compile;
use dataplane::neigh::{NeighParams, NeighTable};
use dataplane::snapshot::PortInfo;
use dataplane::wire::MacAddr;

struct CompileBackend {
    ports: Vec<PortInfo>,
    neigh: NeighTable,
    publications: Arc<Mutex<(u64, Duration)>>,
}

impl Backend for CompileBackend {
    fn port_names(&self) -> Vec<String> {
        vec!["dpdk0".into()]
    }
    fn publish(&mut self, cfg: &Config) -> Result<(), CtlError> {
        let t = Instant::now();
        std::hint::black_box(compile(cfg, &self.neigh, &self.ports)?);
        let mut p = self.publications.lock().unwrap();
        p.0 += 1;
        p.1 += t.elapsed();
        Ok(())
    }
    fn server_stats(&mut self) -> Vec<(ServerId, ServerStats)> {
        Vec::new()
    }
    fn connections(&mut self) -> Vec<ConnInfo> {
        Vec::new()
    }
    fn neighbours(&mut self) -> Vec<NeighInfo> {
        Vec::new()
    }
    fn links(&mut self) -> Vec<LinkInfo> {
        Vec::new()
    }
    fn table_size(&self) -> u32 {
        1 << 20
    }
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

/// user+system clock ticks of this process's threads named `health` or `health-apply`
/// (the checker engine and its verdict appliers), and of the whole process.
fn thread_ticks() -> (u64, u64) {
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
    let all = parse(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default());
    let mut health = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == "health" {
                health += parse(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default());
            }
        }
    }
    (health, all)
}

fn list_latencies(socket: &Path, window: Duration) -> Vec<Duration> {
    let args: Vec<String> = ["--socket", &socket.display().to_string(), "-L", "-n"].iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let end = Instant::now() + window;
    while Instant::now() < end {
        let (mut stdin, mut stdout, mut stderr) = (Cursor::new(Vec::new()), Vec::new(), Vec::new());
        let mut io = CliIo {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
            socket_env: None,
            names: &NumericOnly,
        };
        let t = Instant::now();
        let code = run(&args, &mut io);
        out.push(t.elapsed());
        assert_eq!(code, 0, "lbadm -L -n: {}", String::from_utf8_lossy(&stderr));
        std::hint::black_box(stdout.len());
        std::thread::sleep(Duration::from_millis(50));
    }
    out
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let services = arg(&args, "--services", 100) as u32;
    let per = arg(&args, "--servers", 100) as u32;
    let secs = arg(&args, "--secs", 10);
    let nports = arg(&args, "--ports", 100) as usize;
    let total = services * per;

    // Loopback listeners: accept and close.
    let stop = Arc::new(AtomicBool::new(false));
    let mut ports = Vec::new();
    let mut listeners = Vec::new();
    for _ in 0..nports {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback listener");
        l.set_nonblocking(true).unwrap();
        ports.push(l.local_addr().unwrap().port());
        listeners.push(l);
    }
    // One acceptor thread waiting in poll(2) on every listener.
    let acceptor = {
        let s = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                use std::os::fd::AsFd;
                while !s.load(Ordering::Relaxed) {
                    let mut fds: Vec<PollFd<'_>> =
                        listeners.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)).collect();
                    if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) <= 0 {
                        continue;
                    }
                    let ready: Vec<bool> =
                        fds.iter().map(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN))).collect();
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
            })
            .unwrap()
    };

    // The configuration: services × servers, one TCP_CHECK each (added later).
    let mut text = String::new();
    let mut checks = String::new();
    for s in 0..services {
        let vip = Ipv4Addr::new(10, 1, (s / 256) as u8, (s % 256) as u8);
        text.push_str(&format!("-A -t {vip}:80 -s wlc\n"));
        for r in 0..per {
            let n = s * per + r;
            let rip = Ipv4Addr::new(10, 2 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
            text.push_str(&format!("-a -t {vip}:80 -r {rip}:80 -g -w 1\n"));
            let port = ports[n as usize % ports.len()];
            checks.push_str(&format!(
                "check add -t {vip}:80 -r {rip}:80 tcp --connect-ip 127.0.0.1 --connect-port {port} --delay-loop 1 --connect-timeout 1 --warmup 1\n"
            ));
        }
    }
    let publications = Arc::new(Mutex::new((0u64, Duration::ZERO)));
    let backend = CompileBackend {
        ports: vec![PortInfo { id: 0, mac: MacAddr([0x52, 0x54, 0, 0, 0, 1]), mtu: 1500, addrs: Vec::new() }],
        neigh: NeighTable::new(NeighParams::default()),
        publications: Arc::clone(&publications),
    };
    let ctl: SharedController<CompileBackend> = Arc::new(Mutex::new(Controller::new(backend, total + 1024)));
    control::config_file::apply_text(&mut lock(&ctl), &text, &NumericOnly).expect("configuration");
    let socket: PathBuf = std::env::temp_dir().join(format!("health-scale-{}.sock", std::process::id()));
    let server = {
        let (c, s, p) = (Arc::clone(&ctl), Arc::clone(&stop), socket.clone());
        std::thread::spawn(move || serve_shared(&p, c, s).expect("control socket"))
    };
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(5), "control socket did not come up");
        std::thread::sleep(Duration::from_millis(10));
    }
    let engine = start_health(&ctl, Arc::clone(&stop)).expect("health engine");

    // Phase A: -L -n without checkers.
    let mut base = list_latencies(&socket, Duration::from_secs(secs.min(5)));

    // Phase B: every server checked.
    let t = Instant::now();
    control::config_file::apply_text(&mut lock(&ctl), &checks, &NumericOnly).expect("checks");
    let load = t.elapsed();
    std::thread::sleep(Duration::from_secs(2)); // warmup spreads the first probes over 1 s
    let board_probes = |ctl: &SharedController<CompileBackend>| lock(ctl).checks(None).map(|r| r.counters).unwrap();
    let per_check = |ctl: &SharedController<CompileBackend>| -> Vec<u64> {
        let r = lock(ctl).checks(None).unwrap();
        r.services
            .iter()
            .flat_map(|s| s.servers.iter().flat_map(|v| v.checks.iter().map(|c| c.runtime.as_ref().map_or(0, |r| r.probes))))
            .collect()
    };
    let p0 = per_check(&ctl);
    let c0 = board_probes(&ctl);
    let (ticks0, all0) = thread_ticks();
    let w0 = Instant::now();
    let mut lat = list_latencies(&socket, Duration::from_secs(secs));
    let window = w0.elapsed().as_secs_f64();
    let (ticks1, all1) = thread_ticks();
    let ticks = ticks1 - ticks0;
    let c1 = board_probes(&ctl);
    let p1 = per_check(&ctl);
    let mut hist = std::collections::BTreeMap::new();
    for (a, b) in p0.iter().zip(&p1) {
        *hist.entry(b - a).or_insert(0u32) += 1;
    }
    eprintln!("probes per checker in the window: {hist:?}");
    let hz = 100.0; // USER_HZ on Linux
    let cpu = ticks as f64 / hz / window * 100.0;
    let cpu_all = (all1 - all0) as f64 / hz / window * 100.0;
    let rate = (c1.probes - c0.probes) as f64 / window;
    let failed = c1.probe_failures - c0.probe_failures;
    let mean_probe_ms = (c1.probe_us - c0.probe_us) as f64 / (c1.probes - c0.probes).max(1) as f64 / 1e3;
    let (pubs, pub_time) = *publications.lock().unwrap();

    println!("health_scale: {total} real servers ({services} services x {per}), TCP_CHECK delay_loop 1 s, {} loopback listeners", ports.len());
    println!("{:<44} {:>12}", "measure", "value");
    println!("{:<44} {:>12.0}", "checks per second (target servers/delay_loop)", rate);
    println!("{:<44} {:>12}", "target", total);
    println!("{:<44} {:>12}", "failed probes in the window", failed);
    println!("{:<44} {:>12.3}", "mean probe duration (ms)", mean_probe_ms);
    println!("{:<44} {:>11.1}%", "checker CPU (health threads, % of one core)", cpu);
    println!("{:<44} {:>11.1}%", "whole process (+listeners, lbadm, control)", cpu_all);
    println!("{:<44} {:>12.2}", "loading the checkers (ms)", load.as_secs_f64() * 1e3);
    println!("{:<44} {:>12}", "publications during the run", pubs);
    println!("{:<44} {:>7.2} / {:.2} / {:.2}", "lbadm -L -n p50/p99/max ms, no checkers", pct(&mut base, 0.5), pct(&mut base, 0.99), pct(&mut base, 1.0));
    println!("{:<44} {:>7.2} / {:.2} / {:.2}", "lbadm -L -n p50/p99/max ms, checks running", pct(&mut lat, 0.5), pct(&mut lat, 0.99), pct(&mut lat, 1.0));
    println!(
        "RESULT {{\"servers\":{total},\"checks_per_sec\":{rate:.0},\"target_per_sec\":{total},\"failed_probes\":{failed},\"checker_cpu_pct\":{cpu:.1},\"list_p99_ms_idle\":{:.2},\"list_p99_ms_checking\":{:.2},\"list_samples\":{},\"publications\":{pubs},\"publish_ms_total\":{:.1}}}",
        pct(&mut base, 0.99),
        pct(&mut lat, 0.99),
        lat.len(),
        pub_time.as_secs_f64() * 1e3
    );
    stop.store(true, Ordering::SeqCst);
    let _ = engine.join();
    let _ = server.join();
    let _ = acceptor.join();
}
