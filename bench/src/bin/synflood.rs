//! `director-synflood`: the SYN-flood benchmark (see `bench::synflood`). Runs the plain and
//! the persistent case, each in its own process (one EAL per process), prints a timeline per
//! second and the results, and writes `OUT/synflood.md` and `OUT/synflood.json`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use clap::Parser;

use bench::synflood::{self, FloodArgs, FloodResult};

#[derive(Parser, Debug)]
#[command(name = "director-synflood", about = "SYN flood against a wlc service with a 1 M-entry table")]
struct Cli {
    /// Seconds of flood per case.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// plain, persistent or both (each case in a child process).
    #[arg(long, default_value = "both")]
    case: String,
    /// Connection-table capacity.
    #[arg(long, default_value_t = 1 << 20)]
    capacity: usize,
    /// Connections established before the flood.
    #[arg(long, default_value_t = 65536)]
    established: u32,
    /// New legitimate clients per second for each RTT.
    #[arg(long, default_value_t = 5000)]
    legit_per_sec: u32,
    /// Output directory of synflood.md / synflood.json (with --case both).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let one = |persistent: bool| FloodArgs {
        secs: cli.secs,
        persistent,
        capacity: cli.capacity,
        established: cli.established,
        legit_per_sec: cli.legit_per_sec,
        ..FloodArgs::default()
    };
    match cli.case.as_str() {
        "plain" | "persistent" => {
            let a = one(cli.case == "persistent");
            eprintln!("{} case: {:.0} s of flood, table {}, {} established, {} legitimate clients/s per RTT {:?} ms", cli.case, a.secs, a.capacity, a.established, a.legit_per_sec, a.rtts_ms);
            let r = synflood::run(&a)?;
            println!("RESULT {}", serde_json::to_string(&r)?);
            Ok(())
        }
        "both" => {
            let exe = std::env::current_exe()?;
            let mut results: Vec<FloodResult> = Vec::new();
            for case in ["plain", "persistent"] {
                let out = Command::new(&exe)
                    .args(["--case", case, "--secs", &cli.secs.to_string(), "--capacity", &cli.capacity.to_string()])
                    .args(["--established", &cli.established.to_string(), "--legit-per-sec", &cli.legit_per_sec.to_string()])
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .with_context(|| format!("running the {case} case"))?;
                let text = String::from_utf8_lossy(&out.stdout);
                let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).with_context(|| format!("{case} case: no result (status {})", out.status))?;
                results.push(serde_json::from_str(line)?);
            }
            let md = synflood::markdown(&results);
            println!("{md}");
            std::fs::create_dir_all(&cli.out)?;
            std::fs::write(cli.out.join("synflood.md"), &md)?;
            std::fs::write(cli.out.join("synflood.json"), serde_json::to_string_pretty(&results)?)?;
            eprintln!("director-synflood: wrote {}", cli.out.join("synflood.md").display());
            Ok(())
        }
        other => anyhow::bail!("--case must be plain, persistent or both, not {other}"),
    }
}
