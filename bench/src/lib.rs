//! Traffic generators and benchmark drivers for the director (issue "Performance").
//!
//! | module | what |
//! | --- | --- |
//! | [`gen`] | deterministic generator of real Ethernet/IPv4/TCP/UDP frames: C clients, F flows, S services (plain / persistent / port-0 / fwmark shares), SYN share, packet size |
//! | [`scenario`] | named scenarios and the open → fill → establish → measure phases |
//! | [`rig`] | EAL arguments (hugepages or not), pools, rings, the mbuf store |
//! | [`director_run`] | mode (a): the real `Director` on a ring port, configured through its control socket |
//! | [`engine_loop`] | mode (b): rx_burst → `worker::process_burst` → tx_burst in one thread; with no engine, the io floor |
//! | [`capture_run`] | the engine loop with DPDK's capture server, idle or with `dpdk-dumpcap` attached |
//! | [`run`] | one benchmark process (native timing, or callgrind phases) → `RESULT {json}` |
//! | [`yardstick`] | `dpdk-testpmd` io / macswap runs |
//! | [`report`] | report.json, report.md, details.json and the PNG plots |
//! | [`valgrind`] | callgrind client requests |
//! | [`vdev_rig`] | the real `Director` on EAL `--vdev` ports (memif, pcap), measured from outside |
//! | [`memif_gen`] | the `director-gen` generator process: memif server, setup phases, pktgen-style blast |
//! | [`memif_run`] | input (2): director + generator process over `net_memif` |
//! | [`pcap`] | classic libpcap file writer |
//! | [`pcap_run`] | input (3): director on `net_pcap` with `infinite_rx=1` |
//! | [`soak`] | `make soak` and `make ctlpressure`: the director under traffic with configuration edits, listings and concurrent lbadm clients, read every interval |
//! | [`sync_run`] | the connection-sync master beside the engine loop: sender thread, loopback sink, counts |
//! | [`synflood`] | the SYN-flood benchmark (`director-synflood`): legitimate clients and established connections under a spoofed flood |
//!
//! The driver is the `director-bench` binary (`make bench`); docs/benchmarks.md explains the
//! method and the numbers.

pub mod capture_run;
pub mod cpu;
pub mod director_run;
pub mod engine_loop;
pub mod kernel_run;
pub mod gen;
pub mod memif_gen;
pub mod memif_run;
pub mod pcap;
pub mod pcap_run;
pub mod report;
pub mod rig;
pub mod run;
pub mod scenario;
pub mod soak;
pub mod sync_run;
pub mod synflood;
pub mod valgrind;
pub mod vdev_rig;
pub mod yardstick;
