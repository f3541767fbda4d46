//! `director-gen`: the pktgen-style generator process of the memif benchmark mode (see
//! `bench::memif_gen` for the line protocol). Started and stopped by
//! `director-bench run --mode memif`; not meant to be run by hand, although it can be:
//!
//! ```text
//! director-gen --socket /tmp/x.memif --scenario established-hot   # then type MAC/SETUP/RUN/STOP/QUIT
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use bench::memif_gen::{self, GenArgs};
use bench::rig::Memory;
use bench::scenario::catalogue;

#[derive(Parser)]
#[command(name = "director-gen", about = "memif traffic generator process for director-bench")]
struct Cli {
    /// memif socket path (this process is the memif server and creates it).
    #[arg(long)]
    socket: PathBuf,
    /// Scenario name (see `director-bench list`).
    #[arg(long, default_value = "established-hot")]
    scenario: String,
    /// Quick catalogue.
    #[arg(long)]
    quick: bool,
    /// Pre-built measured frames.
    #[arg(long, default_value_t = 131072)]
    frames: usize,
    /// Memory scheme.
    #[arg(long, value_parser = ["huge", "nohuge"], default_value = "huge")]
    memory: String,
    /// EAL lcore (= CPU) of the generator.
    #[arg(long, default_value_t = 1)]
    lcore: u32,
    /// Hard time limit of the process.
    #[arg(long, default_value_t = 900)]
    max_secs: u64,
    /// Override the packet size (wire bytes).
    #[arg(long)]
    packet_bytes: Option<u16>,
}

fn main() -> Result<()> {
    let c = Cli::parse();
    let mut scenario = catalogue(c.quick)
        .into_iter()
        .chain(catalogue(false))
        .find(|s| s.name == c.scenario)
        .with_context(|| format!("no scenario {}", c.scenario))?;
    if let Some(b) = c.packet_bytes {
        scenario.traffic.packet_bytes = b;
    }
    anyhow::ensure!(c.frames > 0, "--frames must be positive");
    let memory = if c.memory == "huge" { Memory::Huge } else { Memory::NoHuge };
    memif_gen::main(GenArgs { socket: c.socket, scenario, frames: c.frames, memory, lcore: c.lcore, max_secs: c.max_secs })?;
    // EAL objects are left to process exit.
    std::process::exit(0);
}
