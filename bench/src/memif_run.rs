//! Input (2), a separate generator process over `net_memif`: this process runs the real
//! director (as mode (a): `Director::start`, one worker on CPU 0, configured through the
//! control socket) with a memif client port as `dpdk0`; the `director-gen` process
//! ([`crate::memif_gen`], own EAL, CPU 1) is the memif server, answers the director's ARP
//! probes for the real servers, runs the setup phases, and then sends the scenario's measured
//! frames as fast as the port takes them while counting what the director forwards back.
//!
//! Measured per run (a window of at least W forwarded packets): the worker thread's on-CPU
//! time and the TSC, read together with the memif port's TX counter at both ends of the
//! window. Mpps = forwarded / on-CPU time, cycles/packet = on-CPU time × TSC rate /
//! forwarded; the wall rate and the generator's counts (frames sent, forwarded frames back,
//! bursts the port took only partly = back-pressure) are kept beside them. The worker
//! busy-polls, so its on-CPU time is busy time only while the generator keeps it fed: the
//! generator's short-burst share says whether it did.
//!
//! The generator is a child process: killed by PID (its `Child`) if this process fails, and
//! it exits by itself when its stdin closes; the socket file is removed by both sides.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use dataplane::wire::MacAddr;

use crate::gen::Traffic;
use crate::memif_gen::GenCounts;
use crate::rig::{self, Memory};
use crate::run::{RunArgs, RunResult};
use crate::vdev_rig::{drops_delta, sample_between, window, InputInfo, VdevDirector};

/// The generator child process and its line protocol.
pub struct GenProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    log: PathBuf,
    socket: PathBuf,
}

impl GenProc {
    /// Starts `director-gen` (next to this executable) with `args`; its stderr goes to a log
    /// file shown on errors.
    pub fn spawn(socket: &std::path::Path, args: &[String]) -> Result<GenProc> {
        let exe = std::env::current_exe()?.with_file_name("director-gen");
        anyhow::ensure!(exe.exists(), "{} not found (cargo build --release -p bench)", exe.display());
        let log = std::env::temp_dir().join(format!("director-gen-{}.log", std::process::id()));
        let err = std::fs::File::create(&log)?;
        let mut child = Command::new(&exe)
            .arg("--socket")
            .arg(socket)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdin = child.stdin.take();
        let out = child.stdout.take().context("generator stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(GenProc { child, stdin, lines, log, socket: socket.to_path_buf() })
    }

    /// The generator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = s.lines().rev().take(10).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let s = self.stdin.as_mut().context("generator stdin closed")?;
        writeln!(s, "{line}").and_then(|_| s.flush()).with_context(|| format!("generator gone ({})", self.log_tail()))
    }

    /// Waits up to `limit` for a line starting with `word`; returns the rest.
    pub fn expect(&mut self, word: &str, limit: Duration) -> Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(word) {
                        return Ok(rest.trim().to_string());
                    }
                    eprintln!("director-gen: {l}");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    anyhow::bail!("no {word} from the generator within {limit:?}; its log:\n{}", self.log_tail())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = self.child.try_wait().ok().flatten();
                    anyhow::bail!("the generator exited ({st:?}) before {word}; its log:\n{}", self.log_tail())
                }
            }
        }
    }

    /// Asks the generator to quit and waits up to 10 s; kills it (by PID) otherwise.
    pub fn quit(mut self) {
        let _ = self.send("QUIT");
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GenProc {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The memif vdev argument of one side.
pub fn memif_vdev(role: &str, socket: &std::path::Path) -> String {
    format!("net_memif0,role={role},id=0,socket={},socket-abstract=no", socket.display())
}

fn counts(s: &str) -> Result<GenCounts> {
    serde_json::from_str(s).with_context(|| format!("bad generator counts {s:?}"))
}

/// Runs the memif mode; fills `r` (samples, drops, input details).
/// Once the director runs on the memif port: waits (≤ 20 s) for the link, gives the
/// generator the port's MAC, configures the director for `spec`'s traffic and waits until
/// its real servers are resolved. The traffic, built with the port's MAC.
pub fn connect(g: &mut GenProc, port: &dataplane::dpdk::Port, d: &VdevDirector, spec: &crate::gen::TrafficSpec) -> Result<Traffic> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !port.link().up {
        anyhow::ensure!(Instant::now() < deadline, "memif link never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mac = MacAddr(port.mac());
    g.send(&format!("MAC {mac}"))?;
    g.expect("OK", Duration::from_secs(60))?;
    let t = Traffic::new(spec.clone(), mac)?;
    d.configure(&t)?;
    let servers: Vec<_> = t.servers().into_iter().map(|(ip, _)| ip).collect();
    d.wait_reachable(&servers, Duration::from_secs(30))?;
    Ok(t)
}

pub fn run(a: &RunArgs, window_packets: u64, r: &mut RunResult) -> Result<()> {
    let s = &a.scenario;
    anyhow::ensure!(
        !s.new_connections && s.traffic.syn_share == 0.0,
        "{}: the memif generator replays pre-built frames, so it only runs scenarios of established flows",
        s.name
    );
    let frames = a.packets.max(1);
    let socket = std::env::temp_dir().join(format!("director-bench-{}.memif", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let gargs: Vec<String> = vec![
        "--scenario".into(),
        s.name.clone(),
        "--frames".into(),
        frames.to_string(),
        "--memory".into(),
        if a.memory == Memory::Huge { "huge".into() } else { "nohuge".into() },
        "--lcore".into(),
        "1".into(),
        "--max-secs".into(),
        "600".into(),
        "--packet-bytes".into(),
        s.traffic.packet_bytes.to_string(),
    ];
    let mut g = GenProc::spawn(&socket, &gargs)?;
    let gen_mac = g.expect("READY", Duration::from_secs(60))?;
    eprintln!("memif: generator pid {} up (MAC {gen_mac})", g.pid());

    let vdev = memif_vdev("client", &socket);
    let probe = Traffic::new(s.traffic.clone(), MacAddr::ZERO)?;
    let capacity = s.capacity(&probe, 0);
    r.capacity = capacity;
    let mbufs = 8191u32;
    let veal = VdevDirector::init(a.memory, rig::mem_for(mbufs + 1024, 64), std::slice::from_ref(&vdev))?;
    let port = veal.port(0)?;
    anyhow::ensure!(port.device_name().contains("memif"), "port 0 is {}, not the memif vdev", port.device_name());
    let d = veal.start(capacity as usize, mbufs)?;
    let result = (|| -> Result<()> {
        let t = connect(&mut g, &port, &d, &s.traffic)?;
        let t0 = Instant::now();
        g.send("SETUP")?;
        let setup = counts(&g.expect("SETUP-DONE", Duration::from_secs(300))?)?;
        let mut info = InputInfo { vdev: vdev.clone(), frames, window: window_packets, ..InputInfo::default() };
        info.setup_secs = t0.elapsed().as_secs_f64();
        info.generator_setup = Some(setup.clone());
        r.prepare_secs = info.setup_secs;
        info.check_setup(d.conn_counts()?, s.traffic.flows as u64 + s.background(&t), &format!(" (generator: {setup:?})"))?;
        r.tsc_hz = rig::tsc_hz();
        let drops0 = d.drops()?;
        let first = d.sample(&port);
        let mut last = first;
        for run in 0..=a.runs {
            let w = if run == 0 { (window_packets / 4).max(1) } else { window_packets };
            let base = d.sample(&port).stats.rx_packets;
            g.send("RUN")?;
            let until = Instant::now() + Duration::from_secs(5);
            while d.sample(&port).stats.rx_packets == base {
                anyhow::ensure!(Instant::now() < until, "no packet arrived from the generator in 5 s");
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20));
            let res = window(&d, &port, w, Duration::from_millis(1), Duration::from_secs(120));
            g.send("STOP")?;
            let c = counts(&g.expect("RUN-DONE", Duration::from_secs(30))?)?;
            let (s0, s1) = res?;
            last = s1;
            if run > 0 {
                r.samples.push(sample_between(w, &s0, &s1));
                info.generator_runs.push(c);
            }
        }
        info.set_port_delta(&first, &last);
        r.drops = drops_delta(&drops0, &d.drops()?);
        r.input = Some(info);
        Ok(())
    })();
    g.quit();
    d.stop();
    let _ = std::fs::remove_file(&socket);
    result
}

/// Yardstick over memif: `dpdk-testpmd` io forwarding (`--port-topology=loop`, one
/// forwarding lcore on CPU 0) on a memif client port, fed by the same generator process
/// (CPU 1) that feeds the director in the memif mode, for `secs` seconds. Rate = testpmd's
/// `Rx-pps` per period (median after the first), per busy second of its forwarding lcore
/// as in [`crate::yardstick::run`]. Returns the measurement and the generator's counts.
pub fn testpmd_io(secs: u64, memory: Memory) -> Result<(crate::yardstick::Testpmd, GenCounts)> {
    let socket = std::env::temp_dir().join(format!("director-bench-tp-{}.memif", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let mem = if memory == Memory::Huge { "huge" } else { "nohuge" };
    let gargs: Vec<String> = ["--scenario", "established-hot", "--frames", "65536", "--memory", mem, "--lcore", "1", "--max-secs", "120"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut g = GenProc::spawn(&socket, &gargs)?;
    g.expect("READY", Duration::from_secs(60))?;
    let prefix = format!("tpm{}", std::process::id());
    let mut args: Vec<String> = ["-l", "0,1", "--main-lcore", "1", "--no-pci", "--log-level", "3", "--no-telemetry", "--file-prefix", &prefix]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match memory {
        Memory::Huge => args.extend(["--in-memory".to_string(), "-m".into(), "256".into()]),
        Memory::NoHuge => args.extend(["--no-huge".to_string(), "-m".into(), "256".into(), "--no-shconf".into()]),
    }
    args.push(format!("--vdev={}", memif_vdev("client", &socket)));
    args.extend(
        ["--", "--forward-mode=io", "--port-topology=loop", "--nb-cores=1", "--stats-period=1", "--total-num-mbufs=16384"]
            .iter()
            .map(|s| s.to_string()),
    );
    let log_path = std::env::temp_dir().join(format!("bench-testpmd-memif-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)?;
    // Line-buffered (stdbuf), so the log shows when forwarding has started.
    let mut tp = Command::new("stdbuf")
        .arg("-oL")
        .arg("dpdk-testpmd")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting dpdk-testpmd")?;
    let result = (|| -> Result<(crate::yardstick::Testpmd, GenCounts)> {
        // testpmd checks the links (the memif client connects on a timer) before it starts
        // forwarding and printing statistics: wait for its first statistics block.
        let ready = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log_path).unwrap_or_default().contains("Rx-pps") {
            anyhow::ensure!(Instant::now() < ready, "testpmd on memif did not start forwarding in 30 s");
            anyhow::ensure!(tp.try_wait()?.is_none(), "testpmd exited early");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The generator sends for secs + 4 s; testpmd's CPU share is taken over `secs`
        // seconds inside, its rates over the statistics periods in between (the first and the
        // last, partial, dropped; testpmd prints about every 1-2 s here).
        g.send(&format!("RAW 02:00:00:00:00:01 {}", secs + 4))?;
        std::thread::sleep(Duration::from_secs(1));
        let s0 = crate::yardstick::worker_runtime(tp.id());
        std::thread::sleep(Duration::from_secs(secs));
        let s1 = crate::yardstick::worker_runtime(tp.id());
        let c = counts(&g.expect("RUN-DONE", Duration::from_secs(secs + 30))?)?;
        let on_cpu = match (s0, s1) {
            (Some((r0, w0)), Some((r1, w1))) => Some((r1 - r0) as f64 / (w1 - w0).as_nanos().max(1) as f64),
            _ => None,
        };
        Ok((crate::yardstick::Testpmd { mode: "io".into(), vdevs: "net_memif0 (director-gen)".into(), mpps: 0.0, wall_mpps: 0.0, on_cpu, periods: Vec::new() }, c))
    })();
    // Stop testpmd (SIGINT, then kill after 20 s), by its PID.
    let _ = Command::new("kill").args(["-INT", &tp.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tp.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = tp.kill();
            let _ = tp.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    g.quit();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if std::env::var_os("BENCH_KEEP_LOGS").is_none() {
        let _ = std::fs::remove_file(&log_path);
    }
    let _ = std::fs::remove_file(&socket);
    let (mut t, c) = result?;
    // Periods while the generator was sending, without the first and the last (partial).
    let periods = crate::yardstick::parse_rx_pps(&text, 1);
    let busy: Vec<f64> = periods.iter().copied().filter(|v| *v > 0.0).collect();
    let steady: Vec<f64> = busy.iter().copied().skip(1).take(busy.len().saturating_sub(2)).collect();
    anyhow::ensure!(!steady.is_empty(), "testpmd on memif printed no rates:\n{}", text.lines().rev().take(15).collect::<Vec<_>>().join("\n"));
    t.wall_mpps = rig::median(&steady);
    t.mpps = match t.on_cpu {
        Some(f) if f > 0.05 => t.wall_mpps / f.min(1.0),
        _ => t.wall_mpps,
    };
    t.periods = periods;
    Ok((t, c))
}
