//! Input (3), `net_pcap` with `infinite_rx=1`: the real director (as mode (a)) whose `dpdk0`
//! is `--vdev=net_pcap0,rx_pcap=FILE,infinite_rx=1`. Without a `tx_pcap`/`tx_iface` argument
//! the PMD counts and frees what is sent (`eth_tx_drop`), so the worker does all the work of
//! the measured path itself: the PMD's RX copies each frame out of its replay ring into a
//! fresh mbuf, the engine decides, TX frees. No other thread touches a packet.
//!
//! The file ([`crate::pcap`]) holds the scenario's measured frames (ACKs of established
//! flows: the measured sequence of epoch 0, `--packets` records) and one ARP reply from every
//! real server: with no one on the other side of the port to answer the director's ARP
//! probes, the servers' replies come from the replay (one per server per pass over the file,
//! e.g. 64 of 131,136 records; they are processed, not forwarded, and their cost stays in
//! the measured busy time).
//!
//! The PMD reads the whole file into mbufs of the director's pool when the director
//! configures the port, and replays it from then on — before the connections exist. So:
//! - the frames must carry the pcap port's MAC, which is known only once EAL has created the
//!   port: the file is first written with a placeholder MAC (EAL's probe opens it), then,
//!   after EAL init, rewritten with the port's MAC under the same name (same records, same
//!   sizes; libpcap counts on the handle opened at probe time, then reopens the file by name
//!   and loads the new one);
//! - the setup phases (SYNs, background fill, ACKs) go through a second port of the same
//!   single worker, a `net_ring` port (`dpdk1`, created with `port_from_rings` after EAL
//!   init, no addresses), interleaved with the replay by the worker's port loop. Until then
//!   the replayed ACKs find no connection and are dropped (`sloppy_tcp` is off), so nothing
//!   is created by the replay.
//!
//! Measured per run: a window of at least W packets forwarded (the pcap port's TX counter),
//! the worker's on-CPU time and the TSC at both ends. The replay never runs dry, so the
//! worker is busy for the whole window.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use dataplane::dpdk::{Mempool, Ring};
use dataplane::wire::{Frame, MacAddr};

use crate::gen::{Traffic, DIP};
use crate::memif_gen::measured_frames;
use crate::rig::{self, Store};
use crate::run::{RunArgs, RunResult};
use crate::scenario::{self, Dataplane, Pumped};
use crate::vdev_rig::{drops_delta, sample_between, window, InputInfo, VdevDirector};

/// The records of the pcap file: one ARP reply from every real server to the director
/// (`dst_mac` = the traffic's destination), then `n` measured frames.
pub fn pcap_frames(t: &Traffic, n: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = t.servers().into_iter().map(|(ip, mac)| Frame::arp_reply(mac, ip, t.dst_mac, DIP).build()).collect();
    let len = t.frame_len();
    out.extend(measured_frames(t, n).chunks_exact(len).map(|f| f.to_vec()));
    out
}

/// Feeds the setup phases into the ring port's RX ring; the director forwards them out of
/// the pcap port (dropped there), so a chunk is done when the worker has taken it all.
struct RingFeeder {
    rx: Ring,
    pool: Mempool,
}

impl Dataplane for RingFeeder {
    fn pump(&mut self, store: &mut Store, n: usize) -> Result<Pumped> {
        store.enqueue(&self.rx, n)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.rx.count() > 0 {
            anyhow::ensure!(Instant::now() < deadline, "the worker did not take the setup packets in 120 s");
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(Pumped { out: n as u64, ..Pumped::default() })
    }

    fn top_up(&mut self, store: &mut Store, n: usize) -> Result<()> {
        // The worker frees the forwarded mbufs back into this pool a few µs after taking them.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match store.top_up(&self.pool, n) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the pcap mode; fills `r` (samples, drops, input details).
pub fn run(a: &RunArgs, window_packets: u64, r: &mut RunResult) -> Result<()> {
    let s = &a.scenario;
    anyhow::ensure!(
        !s.new_connections && s.traffic.syn_share == 0.0,
        "{}: a pcap file replays the same packets forever, so only scenarios of established flows can be measured this way",
        s.name
    );
    let n = a.packets.max(1) as usize;
    let file = std::env::temp_dir().join(format!("director-bench-{}.pcap", std::process::id()));
    let _cleanup = RemoveOnDrop(file.clone());
    let placeholder = Traffic::new(s.traffic.clone(), MacAddr::ZERO)?;
    let records = crate::pcap::write(&file, pcap_frames(&placeholder, n).iter().map(|f| f.as_slice()))?;
    let capacity = s.capacity(&placeholder, 0);
    r.capacity = capacity;
    // The replay holds one mbuf per record for good, from the director's pool.
    let mbufs = (records as u32 + 8192) | 1;
    let chunk = a.chunk.min(16384);
    let setup_mbufs = 2 * chunk as u32 + 1024;
    let vdev = format!("net_pcap0,rx_pcap={},infinite_rx=1", file.display());
    let veal = VdevDirector::init(a.memory, rig::mem_for(mbufs + setup_mbufs, 64), std::slice::from_ref(&vdev))?;
    let port = veal.port(0)?;
    anyhow::ensure!(port.device_name().contains("pcap"), "port 0 is {}, not the pcap vdev", port.device_name());
    let t = Traffic::new(s.traffic.clone(), MacAddr(port.mac()))?;
    let rewritten = crate::pcap::write(&file, pcap_frames(&t, n).iter().map(|f| f.as_slice()))?;
    anyhow::ensure!(rewritten == records, "pcap rewrite changed the record count");
    let eal = veal.eal();
    let rx = rig::ring(eal, "prx", chunk as u32 + 64)?;
    let tx = rig::ring(eal, "ptx", 1024)?;
    let ring_port = dataplane::dpdk::port_from_rings(eal, "pring", &[&rx], &[&tx])?;
    let pool = rig::pool(eal, setup_mbufs, a.memory)?;
    let t_ring = Traffic::new(s.traffic.clone(), MacAddr(ring_port.mac()))?;
    let d = veal.start(capacity as usize, mbufs)?;
    let result = (|| -> Result<()> {
        d.configure(&t)?;
        let servers: Vec<_> = t.servers().into_iter().map(|(ip, _)| ip).collect();
        d.wait_reachable(&servers, Duration::from_secs(30)).context("the servers' ARP replies come from the replayed file")?;
        let mut info = InputInfo { vdev: vdev.clone(), frames: records, window: window_packets, ..InputInfo::default() };
        let t0 = Instant::now();
        let mut feeder = RingFeeder { rx, pool };
        let mut store = Store::new(chunk);
        scenario::prepare(&mut feeder, &mut store, &t_ring, s, chunk)?;
        drop(store);
        std::thread::sleep(Duration::from_millis(200));
        info.setup_secs = t0.elapsed().as_secs_f64();
        r.prepare_secs = info.setup_secs;
        info.check_setup(d.conn_counts()?, s.traffic.flows as u64 + s.background(&t), "")?;
        r.tsc_hz = rig::tsc_hz();
        let drops0 = d.drops()?;
        let first = d.sample(&port);
        let mut last = first;
        for run in 0..=a.runs {
            let w = if run == 0 { (window_packets / 4).max(1) } else { window_packets };
            let (s0, s1) = window(&d, &port, w, Duration::from_millis(1), Duration::from_secs(120))?;
            last = s1;
            if run > 0 {
                r.samples.push(sample_between(w, &s0, &s1));
            }
        }
        info.set_port_delta(&first, &last);
        r.drops = drops_delta(&drops0, &d.drops()?);
        r.input = Some(info);
        Ok(())
    })();
    d.stop();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::TrafficSpec;

    #[test]
    fn file_holds_server_arp_replies_then_the_measured_frames() {
        let mac = MacAddr([0x02, 0x70, 0x63, 0x61, 0x70, 0]);
        let t = Traffic::new(TrafficSpec::default(), mac).unwrap();
        let f = pcap_frames(&t, 100);
        let servers = t.servers().len();
        assert_eq!(f.len(), servers + 100);
        for a in &f[..servers] {
            assert_eq!(&a[12..14], &[0x08, 0x06]);
            assert_eq!(&a[0..6], &mac.0);
        }
        for p in &f[servers..] {
            assert_eq!(p.len(), t.frame_len());
            assert_eq!(&p[0..6], &mac.0);
            assert_eq!(&p[12..14], &[0x08, 0x00]);
        }
        let path = std::env::temp_dir().join(format!("bench-pcap-frames-{}.pcap", std::process::id()));
        crate::pcap::write(&path, f.iter().map(|x| x.as_slice())).unwrap();
        assert_eq!(crate::pcap::read(&path).unwrap(), f);
        if std::env::var_os("KEEP_PCAP").is_some() {
            eprintln!("kept {}", path.display());
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}
