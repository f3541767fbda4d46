//! Cost of one hand-off between workers: the steering decision (`steer_addr` + Toeplitz
//! owner lookup) on the receiving worker, an enqueue into the single-producer/single-consumer
//! ring and the dequeue on the owner: what a packet that arrived at the wrong worker costs
//! on top of normal forwarding.
//!
//! `handoff [PACKETS]` prints cycles per packet (rdtsc, median of 5 runs, single thread: the
//! producer and consumer sides run back to back, so cross-core cache-line transfer is not
//! included) and one JSON line. For instructions per packet, run it under callgrind with two
//! packet counts and divide the difference (the numbers scale linearly):
//! `valgrind --tool=callgrind target/release/handoff 100000` and `… 200000`.

use std::net::Ipv4Addr;

use dataplane::dpdk::{tsc, tsc_hz, Eal, MbufBatch, Mempool, Ring};
use dataplane::steer::{steer_addr, Steering};
use dataplane::wire::Frame;

const BURST: usize = 32;

fn main() -> anyhow::Result<()> {
    let packets: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let prefix = format!("handoff{}", std::process::id());
    let eal = Eal::init(&["handoff", "-l", "0", "--no-pci", "--no-huge", "-m", "256", "--no-shconf", "--file-prefix", &prefix, "--log-level", "3"])?;
    let pool = Mempool::new(&eal, "handoff_pool", 4095, 0, Mempool::default_data_room(), 0, true)?;
    let ring = Ring::new(&eal, "handoff_ring", 4096, true, true)?;
    let steering = Steering::new(2, 128);
    // One burst of real TCP frames from distinct clients.
    let mut batch: MbufBatch<BURST> = MbufBatch::new();
    for i in 0..BURST as u32 {
        let f = Frame::tcp().src(Ipv4Addr::from(0xcb00_7100 + i), 40000).dst(Ipv4Addr::new(198, 51, 100, 100), 80).build();
        let mut m = pool.alloc().ok_or_else(|| anyhow::anyhow!("mbuf"))?;
        m.append(f.len()).ok_or_else(|| anyhow::anyhow!("room"))?.copy_from_slice(&f);
        batch.push(m).map_err(|_| anyhow::anyhow!("batch"))?;
    }
    let mut out: MbufBatch<BURST> = MbufBatch::new();
    let bursts = packets.div_ceil(BURST as u64);
    let mut runs = Vec::new();
    let mut owners = 0u64;
    for _ in 0..5 {
        let t0 = tsc();
        for _ in 0..bursts {
            // Receiving side: decide the owner of every packet, hand the burst over.
            for m in batch.drain() {
                if let Some(a) = steer_addr(m.data()) {
                    owners += u64::from(steering.owner(a));
                }
                let _ = out.push(m);
            }
            ring.enqueue(&mut out);
            // Owner side: take them out again.
            ring.dequeue(&mut batch);
        }
        runs.push((tsc() - t0) as f64 / (bursts * BURST as u64) as f64);
    }
    runs.sort_by(|a, b| a.total_cmp(b));
    let median = runs[runs.len() / 2];
    println!("hand-off (steer + SP/SC enqueue + dequeue), burst {BURST}: {median:.1} cycles/packet (median of 5; TSC {:.2} GHz; owners sum {owners})", tsc_hz() as f64 / 1e9);
    println!("{{\"handoff_cycles_per_packet\": {median:.2}, \"burst\": {BURST}, \"packets_per_run\": {}}}", bursts * BURST as u64);
    Ok(())
}
