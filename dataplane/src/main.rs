//! `director`: the DPDK direct-routing load balancer.
//!
//! `director [EAL options] -- [--socket PATH] [--config FILE] [--conn-capacity N] [--max-servers N] …`
//!
//! Every lcore given to EAL runs a worker (the main lcore included) with one RX and one TX
//! queue on every port; ports are `dpdk0`, `dpdk1`, … in port-id order. A control thread
//! serves the Unix socket `lbadm` talks to; a housekeeping thread resolves neighbours.
//! Ctrl-C / SIGTERM stop everything cleanly.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use clap::Parser;

use dataplane::director::{Director, DirectorOptions};
use dataplane::dpdk::Eal;

/// Options after `--`.
#[derive(Debug, Parser)]
#[command(name = "director", about = "DPDK direct-routing Layer-4 load balancer (LVS/IPVS DR semantics)",
          override_usage = "director [EAL options] -- [OPTIONS]")]
struct Opts {
    /// Control socket path (mode 0600).
    #[arg(long, default_value = "/run/director.sock")]
    socket: PathBuf,
    /// Connection-table capacity per worker (connections + persistence templates); a full
    /// table refuses new connections and counts them.
    #[arg(long, default_value_t = 1 << 20)]
    conn_capacity: usize,
    /// Real-server slots.
    #[arg(long, default_value_t = 65536)]
    max_servers: u32,
    /// Mbufs in the packet pool.
    #[arg(long, default_value_t = 16383)]
    mbufs: u32,
    /// RX/TX descriptors per queue.
    #[arg(long, default_value_t = 1024)]
    descriptors: u16,
    /// Sleep this many microseconds when a worker finds no packet (0 = busy poll, the
    /// default; a small value leaves CPU to other processes on small test machines).
    #[arg(long, default_value_t = 0)]
    idle_sleep_us: u64,
    /// Configuration file applied at start, before traffic flows (lbadm lines: `addr add`,
    /// `iptables`/`mark` rules, `sysctl -w`, `-S` rules; `lbadm save FILE` writes one). A bad
    /// line stops the director with the file name, line number and reason.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Do not create the kernel leg (the host interface `dpdkN` of every port, through which
    /// the host's own stack, ssh, routing daemons, health checks and keepalived reach the
    /// segment, and local real servers get their connections).
    #[arg(long)]
    no_kernel_if: bool,
    /// Packets per second handed to the host through the kernel leg at most (all workers
    /// together); the excess is dropped and counted as `host_policed`. Local real servers'
    /// connections are not counted against it.
    #[arg(long, default_value_t = dataplane::kernel::DEFAULT_PPS, value_name = "N")]
    kernel_pps: u32,
}

fn main() -> Result<()> {
    let all: Vec<String> = std::env::args().collect();
    let (eal_args, app_args) = match all.iter().position(|a| a == "--") {
        Some(i) => (all[..i].to_vec(), std::iter::once(all[0].clone()).chain(all[i + 1..].iter().cloned()).collect()),
        None => (all.clone(), vec![all[0].clone()]),
    };
    let opts = Opts::parse_from(app_args);
    let no_huge = eal_args.iter().any(|a| a == "--no-huge");
    let eal = Eal::init(&eal_args).context("EAL initialisation failed")?;
    if eal.port_count() == 0 {
        bail!("no DPDK ports: bind a NIC to a DPDK driver or add --vdev (e.g. net_af_packet0,iface=eth1)");
    }
    let d = Director::start(
        &eal,
        DirectorOptions {
            socket: opts.socket,
            conn_capacity: opts.conn_capacity,
            max_servers: opts.max_servers,
            mbufs: opts.mbufs,
            descriptors: opts.descriptors,
            no_huge,
            idle_sleep_us: opts.idle_sleep_us,
            config: opts.config,
            kernel_if: !opts.no_kernel_if,
            kernel_pps: opts.kernel_pps,
        },
    )?;
    let stop = d.shared().clone();
    ctrlc::set_handler(move || stop.stop.store(true, Ordering::SeqCst)).context("installing signal handler")?;
    eprintln!("director: running ({} worker(s), {} port(s))", d.workers(), d.ports().len());
    d.run_until_stopped(&eal);
    eprintln!("director: stopped");
    drop(eal);
    Ok(())
}
