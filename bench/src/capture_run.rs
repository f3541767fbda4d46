//! Packet capture in the engine loop: what `rte_pdump_init` costs forwarding when no capture
//! runs (nothing, by construction: DPDK installs its RX/TX callbacks only when a capture
//! starts), and what a running `dpdk-dumpcap` costs (a copy of every packet each way, made on
//! the worker).
//!
//! Capture needs DPDK's multi-process channel, so these runs start EAL with a file prefix of
//! their own and without `--in-memory`/`--no-shconf` ([`eal_args`]); a capture also needs
//! hugepages (a `--no-huge` primary publishes no memory a secondary can map). The runtime
//! directory and hugepage files of the prefix are removed when the run ends ([`cleanup`]).
//!
//! `dpdk-dumpcap` is a secondary process whose EAL pins it to the first CPU, the one the
//! measured loop runs on; once attached it is moved to the other CPUs (all its threads), so
//! the numbers are the worker's copy cost, not two processes sharing one core.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::rig::Memory;

/// Packet capture during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pdump {
    /// No capture server (the default of every other run: `--in-memory`).
    #[default]
    Off,
    /// `rte_pdump_init` done, no capture running (a director started capture-ready).
    Ready,
    /// `dpdk-dumpcap` capturing the port while the runs are measured.
    Capture,
}

impl Pdump {
    /// The command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            Pdump::Off => "off",
            Pdump::Ready => "ready",
            Pdump::Capture => "capture",
        }
    }

    /// Parses the command-line spelling.
    pub fn parse(s: &str) -> Option<Pdump> {
        [Pdump::Off, Pdump::Ready, Pdump::Capture].into_iter().find(|p| p.name() == s)
    }
}

/// What a capture saw, from dumpcap's own summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CaptureInfo {
    /// The mode of the run.
    pub pdump: Pdump,
    /// Packets dumpcap received from the director (both directions).
    pub received: u64,
    /// Packets the director could not hand to dumpcap (its ring full, no mbuf).
    pub dropped: u64,
    /// Bytes of the capture file.
    pub file_bytes: u64,
}

/// The EAL prefix of this process's capture-ready runs.
pub fn prefix() -> String {
    format!("benchcap{}", std::process::id())
}

/// EAL arguments keeping the multi-process channel on (no `--in-memory`, no `--no-shconf`).
pub fn eal_args(prog: &str, lcores: &str, memory: Memory, mem_mb: u32) -> Vec<String> {
    let mut v = crate::rig::eal_common(prog, lcores, &prefix());
    v.extend(["-m".into(), mem_mb.to_string()]);
    if memory == Memory::NoHuge {
        v.push("--no-huge".into());
    }
    v
}

/// A running `dpdk-dumpcap` attached to this process.
pub struct Dumpcap {
    child: Child,
    log: PathBuf,
    file: PathBuf,
}

impl Dumpcap {
    /// Starts `dpdk-dumpcap` on `port_id` and waits (at most 30 s) until it reports that it
    /// captures, then moves it off CPU 0.
    pub fn start(port_id: u16) -> Result<Dumpcap> {
        let dir = std::env::temp_dir();
        let log = dir.join(format!("{}-dumpcap.log", prefix()));
        let file = dir.join(format!("{}.pcapng", prefix()));
        let out = std::fs::File::create(&log)?;
        let child = Command::new("dpdk-dumpcap")
            .arg(format!("--file-prefix={}", prefix()))
            .args(["-i", &port_id.to_string(), "-p", "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("dpdk-dumpcap (Debian package dpdk)")?;
        let mut d = Dumpcap { child, log, file };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&d.log).unwrap_or_default();
            if text.contains("Packets captured") {
                break;
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                anyhow::bail!("dpdk-dumpcap exited with {st}: {text}");
            }
            anyhow::ensure!(Instant::now() < deadline, "dpdk-dumpcap did not attach in 30 s: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus > 1 {
            let list = format!("1-{}", cpus - 1);
            let _ = Command::new("taskset").args(["-a", "-p", "-c", &list, &d.child.id().to_string()]).stdout(Stdio::null()).status();
        }
        Ok(d)
    }

    /// Stops the capture (SIGTERM, as Ctrl-C) and reads its summary; removes its files.
    pub fn stop(mut self, pdump: Pdump) -> Result<CaptureInfo> {
        let pid = self.child.id() as i32;
        // A child of ours, by PID.
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let file_bytes = std::fs::metadata(&self.file).map_or(0, |m| m.len());
        let (received, dropped) = parse_summary(&text).with_context(|| format!("no summary from dpdk-dumpcap: {text}"))?;
        Ok(CaptureInfo { pdump, received, dropped, file_bytes })
    }
}

impl Drop for Dumpcap {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.file);
    }
}

/// dumpcap's last line per interface: `Packets received/dropped on interface 'X': R/D (…)`.
fn parse_summary(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().rev().find(|l| l.contains("Packets received/dropped"))?;
    let counts = line.rsplit(": ").next()?.split_whitespace().next()?;
    let (r, d) = counts.split_once('/')?;
    Some((r.parse().ok()?, d.parse().ok()?))
}

/// Removes the runtime directory and hugepage files of this process's prefix (unlinking
/// what is still mapped is fine: the mappings live until exit).
pub fn cleanup() {
    let p = prefix();
    let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&p));
    if let Ok(rd) = std::fs::read_dir("/dev/hugepages") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&format!("{p}map_")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumpcap_summary() {
        let t = "File: /tmp/x.pcapng\nPackets captured: 10 \rPackets captured: 393216 \nPackets received/dropped on interface '0': 393216/12 (99.9)\n";
        assert_eq!(parse_summary(t), Some((393216, 12)));
        assert_eq!(parse_summary("Packets captured: 3"), None);
    }

    #[test]
    fn capture_runs_keep_the_multiprocess_channel() {
        let a = eal_args("x", "0", Memory::Huge, 256);
        assert!(dataplane::dpdk::pdump::capture_possible(&a));
        assert!(a.contains(&prefix()));
    }
}
