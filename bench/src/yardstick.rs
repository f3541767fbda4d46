//! The yardstick: `dpdk-testpmd` forwarding on virtual devices in the same run.
//!
//! testpmd runs with one forwarding core (`-l 0,1 --nb-cores=1`: lcore 1 forwards, lcore 0
//! prints statistics) between two ports, with `--stats-period 1`; the rate is the sum of both
//! ports' `Rx-pps`, median over the periods after the first. Devices: `net_null` (RX
//! allocates mbufs from the pool, TX frees them, `copy=0`: raw I/O overhead with real mbuf
//! churn) — the fair floor for a forwarder; and, for reference, `net_ring` with packets
//! circulating between the two ports' rings (`start tx_first 32` in interactive mode: 1024
//! packets in flight), which moves pointers only.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::rig::Memory;

/// One testpmd measurement.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Testpmd {
    /// Forwarding mode (io, macswap).
    pub mode: String,
    /// Devices.
    pub vdevs: String,
    /// Median forwarded packets per second (both ports), in millions, per busy second of the
    /// forwarding lcore (wall rate / its on-CPU share; equal to the wall rate on an idle
    /// machine). The same busy-time basis as the director's numbers.
    pub mpps: f64,
    /// Median wall-clock rate.
    pub wall_mpps: f64,
    /// Share of the window the forwarding lcore was on a CPU (from schedstat), if known.
    pub on_cpu: Option<f64>,
    /// Per-period totals.
    pub periods: Vec<f64>,
}

fn mem_args(memory: Memory, prefix: &str) -> Vec<String> {
    let mut v = vec!["--file-prefix".to_string(), prefix.to_string()];
    match memory {
        Memory::Huge => v.extend(["--in-memory".to_string(), "-m".into(), "512".into()]),
        Memory::NoHuge => v.extend(["--no-huge".to_string(), "-m".into(), "512".into(), "--no-shconf".into()]),
    }
    v
}

/// Sums `Rx-pps` per statistics period (one line per port, `ports` ports).
pub fn parse_rx_pps(log: &str, ports: usize) -> Vec<f64> {
    let vals: Vec<f64> = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Rx-pps:"))
        .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .collect();
    vals.chunks_exact(ports).map(|c| c.iter().sum::<f64>() / 1e6).collect()
}

/// Runs testpmd `mode` on `vdevs` for `secs` seconds.
pub fn run(mode: &str, vdevs: &[&str], secs: u64, memory: Memory, interactive_tx_first: bool) -> Result<Testpmd> {
    let prefix = format!("tp{}{}", std::process::id(), mode);
    let mut args: Vec<String> = vec!["-l".into(), "0,1".into(), "--no-pci".into(), "--log-level".into(), "3".into(), "--no-telemetry".into()];
    args.extend(mem_args(memory, &prefix));
    for v in vdevs {
        args.push(format!("--vdev={v}"));
    }
    args.push("--".into());
    args.extend([format!("--forward-mode={mode}"), "--nb-cores=1".into(), "--stats-period=1".into(), "--total-num-mbufs=16384".into()]);
    if interactive_tx_first {
        args.push("-i".into());
    }
    let log_path = std::env::temp_dir().join(format!("bench-testpmd-{}-{mode}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new("dpdk-testpmd")
        .args(&args)
        .stdin(if interactive_tx_first { Stdio::piped() } else { Stdio::null() })
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting dpdk-testpmd")?;
    let mut text = String::new();
    let mut on_cpu: Option<f64> = None;
    if interactive_tx_first {
        // Interactive: start with 32 bursts sent first, then read the port statistics twice.
        let mut stdin = child.stdin.take().context("stdin")?;
        std::thread::sleep(Duration::from_secs(3));
        writeln!(stdin, "start tx_first 32")?;
        std::thread::sleep(Duration::from_secs(1));
        for _ in 0..secs {
            writeln!(stdin, "show port stats all")?;
            std::thread::sleep(Duration::from_secs(1));
        }
        writeln!(stdin, "stop")?;
        writeln!(stdin, "quit")?;
        drop(stdin);
    } else {
        std::thread::sleep(Duration::from_secs(2));
        let s0 = worker_runtime(child.id());
        std::thread::sleep(Duration::from_secs(secs));
        let s1 = worker_runtime(child.id());
        if let (Some((r0, w0)), Some((r1, w1))) = (s0, s1) {
            on_cpu = Some((r1 - r0) as f64 / (w1 - w0).as_nanos().max(1) as f64);
        }
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    text.push_str(&std::fs::read_to_string(&log_path).unwrap_or_default());
    let _ = std::fs::remove_file(&log_path);
    let periods = parse_rx_pps(&text, vdevs.len());
    // Skip the ramp-up period(s); keep non-zero periods.
    let steady: Vec<f64> = periods.iter().skip(if interactive_tx_first { 0 } else { 1 }).copied().filter(|v| *v > 0.0).collect();
    anyhow::ensure!(!steady.is_empty(), "testpmd {mode} printed no rates:\n{}", text.lines().rev().take(15).collect::<Vec<_>>().join("\n"));
    let wall = crate::rig::median(&steady);
    let busy = match on_cpu {
        Some(f) if f > 0.05 => wall / f.min(1.0),
        _ => wall,
    };
    Ok(Testpmd { mode: mode.into(), vdevs: vdevs.join(" "), mpps: busy, wall_mpps: wall, on_cpu, periods })
}

/// On-CPU nanoseconds (schedstat) of testpmd's forwarding lcore thread, and when read.
pub fn worker_runtime(pid: u32) -> Option<(u64, Instant)> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with("lcore-worker") || comm.trim().starts_with("rte-worker") {
            let st = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            return Some((st.split_whitespace().next()?.parse().ok()?, Instant::now()));
        }
    }
    None
}
