//! EAL plumbing shared by the benchmark modes: EAL arguments (hugepages or not), the mbuf
//! pool, ring ports, and a store of mbufs that is rewritten with generated frames outside the
//! measured sections and moved through rings by bursts.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use dataplane::dpdk::{Eal, Mbuf, MbufBatch, Mempool, Ring};

use crate::gen::{PacketKind, Traffic, Tuple};

/// Memory scheme of one benchmark process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Memory {
    /// 2 MiB hugepages (`--in-memory`).
    Huge,
    /// `--no-huge -m N` (mbuf pools with `RTE_MEMPOOL_F_NO_IOVA_CONTIG`).
    NoHuge,
}

/// Free 2 MiB hugepages (0 without a hugetlbfs mount).
pub fn free_hugepages() -> u64 {
    let mounted = std::fs::read_to_string("/proc/mounts").is_ok_and(|m| m.contains(" hugetlbfs "));
    if !mounted {
        return 0;
    }
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("HugePages_Free:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// EAL arguments: `lcores` (`-l`), memory scheme with `mem_mb` of memory, a unique file prefix.
pub fn eal_args(prog: &str, lcores: &str, memory: Memory, mem_mb: u32) -> Vec<String> {
    let mut v = eal_common(prog, lcores, &format!("bench{}", std::process::id()));
    match memory {
        Memory::Huge => v.extend(["--in-memory".to_string(), "-m".into(), mem_mb.to_string()]),
        Memory::NoHuge => v.extend(["--no-huge".to_string(), "-m".into(), mem_mb.to_string(), "--no-shconf".into()]),
    }
    v
}

/// The arguments every benchmark EAL starts with: `lcores`, no PCI, quiet, no telemetry
/// socket, file prefix `prefix`.
pub fn eal_common(prog: &str, lcores: &str, prefix: &str) -> Vec<String> {
    [prog, "-l", lcores, "--no-pci", "--log-level", "3", "--no-telemetry", "--file-prefix", prefix]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Memory (MiB) an EAL needs for a pool of `mbufs` default-size mbufs plus `extra_mb`.
pub fn mem_for(mbufs: u32, extra_mb: u32) -> u32 {
    // ~2.3 KiB per mbuf object with header and mempool overhead, plus rings and EAL.
    (mbufs as u64 * 2400 / (1 << 20)) as u32 + 128 + extra_mb
}

static NAMES: AtomicU32 = AtomicU32::new(0);

/// A unique DPDK object name with `stem`.
pub fn name(stem: &str) -> String {
    format!("{stem}{}", NAMES.fetch_add(1, Ordering::Relaxed))
}

/// A ring of at least `n` usable slots (single producer, single consumer).
pub fn ring(eal: &Eal, stem: &str, n: u32) -> Result<Ring> {
    let count = (n + 1).next_power_of_two().max(1024);
    Ring::new(eal, &name(stem), count, true, true).with_context(|| format!("creating ring of {count}"))
}

/// A pool of `n` default-size mbufs.
pub fn pool(eal: &Eal, n: u32, memory: Memory) -> Result<Mempool> {
    Mempool::new(eal, &name("bpool"), n, 256, Mempool::default_data_room(), 0, memory == Memory::NoHuge)
        .with_context(|| format!("creating a pool of {n} mbufs"))
}

/// Mbufs owned by the benchmark between passes.
pub struct Store {
    /// The mbufs, in the order they will be enqueued.
    pub mbufs: Vec<Mbuf>,
}

impl Store {
    /// An empty store with room for `n`.
    pub fn new(n: usize) -> Self {
        Store { mbufs: Vec::with_capacity(n) }
    }

    /// Tops the store up to `n` mbufs from `pool`.
    pub fn top_up(&mut self, pool: &Mempool, n: usize) -> Result<()> {
        while self.mbufs.len() < n {
            let m = pool.alloc().ok_or_else(|| anyhow::anyhow!("mbuf pool exhausted at {} of {n}", self.mbufs.len()))?;
            self.mbufs.push(m);
        }
        self.mbufs.truncate(n);
        Ok(())
    }

    /// Writes frame `i` = `f(i)` into mbuf `i` (first `n` mbufs).
    pub fn write(&mut self, traffic: &Traffic, n: usize, mut f: impl FnMut(usize) -> (Tuple, PacketKind)) -> Result<()> {
        let len = traffic.frame_len();
        for (i, m) in self.mbufs.iter_mut().take(n).enumerate() {
            anyhow::ensure!(m.set_len(len), "mbuf too small for {len} bytes");
            let (t, k) = f(i);
            traffic.write(&t, k, i as u16, m.data_mut());
        }
        Ok(())
    }

    /// Moves the first `n` mbufs into `ring` (all must fit).
    pub fn enqueue(&mut self, ring: &Ring, n: usize) -> Result<()> {
        let n = n.min(self.mbufs.len());
        let mut rest = self.mbufs.split_off(n);
        std::mem::swap(&mut rest, &mut self.mbufs);
        // `rest` now holds the first n; self.mbufs the remainder.
        let mut b: MbufBatch<32> = MbufBatch::new();
        let mut it = rest.into_iter();
        loop {
            while !b.is_full() {
                match it.next() {
                    Some(m) => {
                        if b.push(m).is_err() {
                            anyhow::bail!("batch push");
                        }
                    }
                    None => break,
                }
            }
            if b.is_empty() {
                break;
            }
            let want = b.len();
            if ring.enqueue(&mut b) != want {
                anyhow::bail!("ring full");
            }
        }
        Ok(())
    }

    /// Takes every mbuf out of `ring` (appending, in ring order); returns how many.
    pub fn drain(&mut self, ring: &Ring) -> usize {
        let mut b: MbufBatch<32> = MbufBatch::new();
        let mut n = 0;
        while ring.dequeue(&mut b) > 0 {
            for m in b.drain() {
                self.mbufs.push(m);
                n += 1;
            }
        }
        n
    }
}

/// TSC ticks per second: EAL's value when EAL is up, else calibrated against the clock.
pub fn tsc_hz() -> u64 {
    let hz = dataplane::dpdk::tsc_hz();
    if hz != 0 {
        return hz;
    }
    let (t0, c0) = (std::time::Instant::now(), dataplane::dpdk::tsc());
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (dt, dc) = (t0.elapsed().as_secs_f64(), dataplane::dpdk::tsc() - c0);
    (dc as f64 / dt) as u64
}

/// Median of a non-empty sample.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if s.is_empty() {
        return f64::NAN;
    }
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}
