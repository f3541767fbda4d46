//! `director`: the DPDK direct-routing load balancer.
//!
//! `director [EAL options] -- [--socket PATH] [--config FILE] [--metrics ADDR:PORT] [--conn-capacity N] …`
//!
//! Every lcore given to EAL runs a worker (the main lcore included) with one RX and one TX
//! queue on every port; ports are `dpdk0`, `dpdk1`, … in port-id order. A control thread
//! serves the Unix socket `lbadm` talks to; a housekeeping thread resolves neighbours.
//! Observers: logs on stderr (`logging`), `--metrics` (`exporter`), DPDK telemetry commands
//! (`telemetry`), packet capture for dpdk-dumpcap (`dpdk::pdump`).
//! Ctrl-C / SIGTERM stop everything cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser};

use dataplane::director::{Director, DirectorOptions};
use dataplane::dpdk::pdump::{capture_possible, Pdump};
use dataplane::dpdk::Eal;
use dataplane::sample::Sampler;

/// Options after `--`.
#[derive(Debug, Parser)]
#[command(name = "director", about = "DPDK direct-routing Layer-4 load balancer (LVS/IPVS DR semantics)",
          override_usage = "director [EAL options] -- [OPTIONS]", after_help = AFTER_HELP)]
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
    /// keepalived.conf applied at start after --config: its virtual_server,
    /// virtual_server_group and real_server blocks with their health checkers (global_defs
    /// and vrrp_* blocks are skipped). A bad line stops the director with FILE:LINE: reason.
    #[arg(long, value_name = "FILE")]
    keepalived: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (node_exporter's IPVS metrics
    /// plus director_*; off by default), e.g. 127.0.0.1:9120.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
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

/// Said after the options in `--help`.
const AFTER_HELP: &str = "\
Logging: one line per event on stderr (timestamp, level, target); RUST_LOG sets the level
(default info). Under systemd the lines carry syslog priorities for the journal.

Observing a running director:
  lbadm -L -n [--stats|--rate|-c]    the ipvsadm view (socket --socket)
  lbadm link show                    ports and drop reasons
  --metrics ADDR:PORT                Prometheus text at /metrics
  dpdk-telemetry.py -f PREFIX        /director/services, /director/workers, /director/drops
  dpdk-dumpcap --file-prefix PREFIX -i dpdk0 -w FILE
                                     packet capture (needs EAL without --in-memory/--no-shconf)";

fn main() -> Result<()> {
    let all: Vec<String> = std::env::args().collect();
    let (eal_args, app_args) = match all.iter().position(|a| a == "--") {
        Some(i) => (all[..i].to_vec(), std::iter::once(all[0].clone()).chain(all[i + 1..].iter().cloned()).collect()),
        None => (all.clone(), vec![all[0].clone()]),
    };
    dataplane::logging::init();
    let opts = Opts::parse_from(app_args);
    // `director --help` goes to EAL, which prints its own options and then these.
    dataplane::dpdk::set_usage_text(format!("{}\n", Opts::command().render_long_help()));
    let metrics = opts.metrics.map(dataplane::exporter::bind).transpose()?;
    let no_huge = eal_args.iter().any(|a| a == "--no-huge");
    let eal = Eal::init(&eal_args).context("EAL initialisation failed")?;
    if eal.port_count() == 0 {
        bail!("no DPDK ports: bind a NIC to a DPDK driver or add --vdev (e.g. net_af_packet0,iface=eth1)");
    }
    let pdump = Pdump::init(&eal).context("packet capture server (rte_pdump_init)")?;
    if capture_possible(&eal_args) {
        log::info!("packet capture ready: dpdk-dumpcap / dpdk-pdump attach as secondary processes");
    } else {
        log::info!("packet capture unavailable: EAL runs with --in-memory or --no-shconf (no multi-process channel)");
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
            keepalived: opts.keepalived,
            kernel_if: !opts.no_kernel_if,
            kernel_pps: opts.kernel_pps,
        },
    )?;
    let stop = d.shared().clone();
    let sampler = Arc::new(
        Sampler::new(d.slow_path().clone(), d.ports().to_vec(), d.lcores().to_vec())
            .with_health(d.health_board())
            .with_sync(d.sync_counters().clone()),
    );
    if let Err(e) = dataplane::telemetry::register_all(sampler.clone()) {
        log::warn!("telemetry commands not registered: {e}");
    }
    let exporter = match metrics {
        Some(l) => Some(dataplane::exporter::spawn(l, sampler, stop.stop.clone())?),
        None => None,
    };
    ctrlc::set_handler(move || stop.stop.store(true, Ordering::SeqCst)).context("installing signal handler")?;
    for p in d.ports() {
        log::info!("port {}: DPDK device {} (port id {}, MAC {})", p.name(), p.device_name(), p.id(), dataplane::wire::MacAddr(p.mac()));
    }
    log::info!("running ({} worker(s), {} port(s))", d.workers(), d.ports().len());
    d.run_until_stopped(&eal);
    if let Some(t) = exporter {
        let _ = t.join();
    }
    dataplane::dpdk::telemetry::clear();
    drop(pdump);
    log::info!("stopped");
    drop(eal);
    Ok(())
}
