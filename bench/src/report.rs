//! The report: `report.json` (the fixed schema of the issue), `report.md` (tables with the
//! ratios to the yardstick and every detail), `details.json` (every process's raw result) and
//! two PNG plots against table size.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use crate::run::RunResult;
use crate::yardstick::Testpmd;

/// Everything measured in one `make bench`.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct Collected {
    /// Quick mode.
    pub quick: bool,
    /// Hugepages used for native runs.
    pub hugepages: bool,
    /// testpmd io on net_null.
    pub testpmd_io: Option<Testpmd>,
    /// testpmd macswap on net_null.
    pub testpmd_macswap: Option<Testpmd>,
    /// testpmd io on net_ring (pointer moves only; reference).
    pub testpmd_ring_io: Option<Testpmd>,
    /// Native io floor (own loop on the ring PMD).
    pub iofloor: Option<RunResult>,
    /// io floor under callgrind.
    pub iofloor_cg: Option<RunResult>,
    /// io floor instructions per packet.
    pub iofloor_ipp: Option<f64>,
    /// Per scenario: director native, loop native, loop callgrind (+ instructions per packet).
    pub scenarios: Vec<ScenarioResults>,
    /// What failed.
    pub errors: Vec<String>,
    /// Output of the control_scale benchmark, if it ran.
    pub control_scale: Option<String>,
    /// Wall seconds of the whole run.
    pub wall_secs: f64,
    /// The director fed by other inputs (memif generator process, net_pcap replay): one
    /// result per scenario and mode, reported as `<scenario>/<mode>`.
    #[serde(default)]
    pub inputs: Vec<RunResult>,
    /// testpmd io on a memif port fed by the generator process (yardstick of the memif mode).
    #[serde(default)]
    pub testpmd_memif_io: Option<Testpmd>,
    /// The generator's counts during that testpmd run.
    #[serde(default)]
    pub testpmd_memif_gen: Option<crate::memif_gen::GenCounts>,
    /// The kernel leg's throughput each way (mode `kernel`).
    #[serde(default)]
    pub kernel_leg: Option<RunResult>,
    /// Connection sync: the new-connections scenario in the engine loop without and with the
    /// sync master, alternated (off, on, off, on, …).
    #[serde(default)]
    pub sync_off: Vec<RunResult>,
    /// The runs with the sync master.
    #[serde(default)]
    pub sync_on: Vec<RunResult>,
    /// The engine loop with DPDK's capture server idle, then with a capture running.
    #[serde(default)]
    pub capture: Vec<RunResult>,
    /// The engine loop under callgrind with the capture server idle.
    #[serde(default)]
    pub capture_cg: Option<RunResult>,
    /// Its instructions per packet.
    #[serde(default)]
    pub capture_ready_ipp: Option<f64>,
}

/// All results of one scenario.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct ScenarioResults {
    /// Name.
    pub name: String,
    /// Part of the sweep.
    pub sweep: bool,
    /// New-connection scenario.
    pub new_connections: bool,
    /// Mode (a).
    pub director: Option<RunResult>,
    /// Mode (b) natively.
    pub engine_loop: Option<RunResult>,
    /// Mode (b) under callgrind.
    pub callgrind: Option<RunResult>,
    /// Instructions per packet (callgrind difference).
    pub ipp: Option<f64>,
    /// Top functions (self cost) of the second callgrind phase.
    pub profile: Option<String>,
}

fn f(v: Option<f64>, prec: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.prec$}"))
}

fn human(n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}M", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{}k", n >> 10)
    } else {
        n.to_string()
    }
}

impl Collected {
    /// The kernel leg's section: its throughput each way, and what it costs forwarding
    /// (established-hot with and without it, instructions per packet and Mpps).
    fn kernel_leg_markdown(&self, m: &mut String) {
        let find = |n: &str| self.scenarios.iter().find(|s| s.name == n);
        let (off, on) = (find("established-hot"), find("established-hot-kernel-leg"));
        let k = self.kernel_leg.as_ref().and_then(|r| r.kernel_leg.as_ref());
        if off.is_none() && on.is_none() && k.is_none() {
            return;
        }
        let _ = writeln!(m, "\n## Kernel leg\n");
        if let Some(k) = k {
            let _ = writeln!(m, "| direction | offered | delivered | packets/s |\n| --- | ---: | ---: | ---: |");
            let _ = writeln!(
                m,
                "| port → host (UDP to the director's address; written into the TAP / received by a host socket) | {} | {} / {} | {:.0} |",
                k.to_host_offered, k.to_host_written, k.to_host_received, k.to_host_pps()
            );
            let _ = writeln!(
                m,
                "| host → port (a host UDP socket through dpdk0; frames out of the port) | {} | {} | {:.0} |",
                k.from_host_sent, k.from_host_out, k.from_host_pps()
            );
        }
        let ipp = |s: Option<&ScenarioResults>| s.and_then(|s| s.ipp);
        let mpps = |s: Option<&ScenarioResults>| s.and_then(|s| s.director.as_ref()).and_then(|d| d.mpps);
        let _ = writeln!(
            m,
            "\nWhat it costs forwarding (established-hot, 1k flows): instructions/packet {} without the leg, {} with it ({}); real director {} Mpps without, {} Mpps with.",
            f(ipp(off), 1),
            f(ipp(on), 1),
            f(ipp(on).zip(ipp(off)).map(|(a, b)| a - b), 2),
            f(mpps(off), 2),
            f(mpps(on), 2)
        );
    }

    /// The packet-capture section: established-hot in the engine loop without the capture
    /// server, with it idle, and with dpdk-dumpcap capturing.
    fn capture_markdown(&self, m: &mut String) {
        use crate::capture_run::Pdump;
        let base = self.scenarios.iter().find(|s| s.name == "established-hot");
        let run = |p: Pdump| self.capture.iter().find(|r| r.capture.as_ref().is_some_and(|c| c.pdump == p));
        let (ready, cap) = (run(Pdump::Ready), run(Pdump::Capture));
        if ready.is_none() && cap.is_none() && self.capture_ready_ipp.is_none() {
            return;
        }
        let _ = writeln!(m, "\n## Packet capture (dpdk-dumpcap)\n");
        let _ = writeln!(m, "Engine loop, established-hot (1k flows), one core.\n");
        let _ = writeln!(m, "| capture | Mpps | cycles/packet | instructions/packet |\n| --- | ---: | ---: | ---: |");
        let row = |m: &mut String, name: &str, r: Option<&RunResult>, ipp: Option<f64>| {
            let _ = writeln!(
                m,
                "| {name} | {} | {} | {} |",
                f(r.and_then(|r| r.mpps), 2),
                f(r.and_then(|r| r.cycles_per_packet), 0),
                f(ipp, 1)
            );
        };
        row(m, "no capture server (`--in-memory`)", base.and_then(|s| s.engine_loop.as_ref()), base.and_then(|s| s.ipp));
        row(m, "capture server ready, no capture (`rte_pdump_init`)", ready, self.capture_ready_ipp);
        row(m, "dpdk-dumpcap capturing the port (RX and TX)", cap, None);
        if let Some(c) = cap.and_then(|r| r.capture.as_ref()) {
            let _ = writeln!(
                m,
                "\ndpdk-dumpcap (on another CPU) received {} packets and {} were dropped (its ring full or no mbuf); the capture file reached {} bytes.",
                c.received, c.dropped, c.file_bytes
            );
        }
    }

    fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
        match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }

    /// Table entries of an input-mode result: what the engine loop held for the same
    /// scenario, else the scenario's figure.
    fn table_entries_of(&self, r: &RunResult) -> u64 {
        self.scenarios
            .iter()
            .find(|s| s.name == r.name)
            .and_then(|s| s.engine_loop.as_ref().and_then(|l| l.table_len))
            .unwrap_or(r.table_entries)
    }

    /// Median new connections per second of runs.
    fn median_cps(v: &[RunResult]) -> Option<f64> {
        let x: Vec<f64> = v.iter().filter_map(|r| r.mpps.map(|m| m * 1e6)).collect();
        (!x.is_empty()).then(|| crate::rig::median(&x))
    }

    /// The "Connection sync" section of report.md.
    fn sync_markdown(&self, m: &mut String) {
        if self.sync_off.is_empty() && self.sync_on.is_empty() {
            return;
        }
        let off = Self::median_cps(&self.sync_off);
        let on = Self::median_cps(&self.sync_on);
        let _ = writeln!(m, "## Connection sync (master)\n");
        let _ = writeln!(
            m,
            "new-connections in the engine loop (one worker, CPU 0), without and with the sync master: the worker applies \
             the kernel's send rules (each SYN of a persistent service queues its template: 1 entry per connection) and the \
             director's sender thread (`sync::master_loop`, other core) builds 1472-byte messages and sends them over UDP to a \
             loopback sink. Runs alternate off/on; medians.\n"
        );
        let _ = writeln!(m, "| | new connections/s per worker | cost |\n| --- | ---: | ---: |");
        let _ = writeln!(m, "| sync master off | {} | |", f(off, 0));
        let cost = off.zip(on).map(|(a, b)| (a - b) / a * 100.0);
        let _ = writeln!(m, "| sync master on | {} | {} % |\n", f(on, 0), f(cost, 1));
        let _ = writeln!(m, "| run (on) | entries queued | queue full | entries sent | messages sent | messages/s | entries/s | send errors |");
        let _ = writeln!(m, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (i, r) in self.sync_on.iter().enumerate() {
            if let Some(s) = &r.sync {
                let secs = s.secs.max(1e-9);
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {} |",
                    i + 1,
                    s.entries_queued,
                    s.ring_full,
                    s.entries_sent,
                    s.messages_sent,
                    s.messages_sent as f64 / secs,
                    s.entries_sent as f64 / secs,
                    s.send_errors
                );
            }
        }
        let _ = writeln!(
            m,
            "\nmessages/s and entries/s are over the wall time of the measured runs, during which the loop also spends time \
             writing frames (not measured in connections/s): the sender's sustained rate is at least this.\n"
        );
    }

    /// The "other inputs" section of report.md.
    fn inputs_markdown(&self, m: &mut String) {
        if self.inputs.is_empty() && self.testpmd_memif_io.is_none() {
            return;
        }
        let io = self.testpmd_io.as_ref().map(|t| t.mpps);
        let ms = self.testpmd_macswap.as_ref().map(|t| t.mpps);
        let tpm = self.testpmd_memif_io.as_ref().map(|t| t.mpps);
        let _ = writeln!(m, "## Other inputs: memif generator process, net_pcap replay\n");
        let _ = writeln!(
            m,
            "The real director (as (a): Director::start, one worker on CPU 0, control socket) fed by (2) `memif`: the \
             `director-gen` process (own EAL, CPU 1) over `net_memif`, sending pre-built frames as fast as the port takes \
             them, or (3) `pcap`: `net_pcap` with `infinite_rx=1` replaying a file of the measured frames (TX drops). \
             Mpps and cycles/packet: forwarded packets over the worker's on-CPU time in windows of at least the stated \
             number of forwarded packets, median of runs. \"back-pressure\": share of the generator's bursts the port \
             took only partly (near 1 = the director, not the generator, was the bottleneck).\n"
        );
        if let Some(t) = &self.testpmd_memif_io {
            let g = self.testpmd_memif_gen.as_ref();
            let bp = g.filter(|g| g.bursts > 0).map(|g| g.short_bursts as f64 / g.bursts as f64);
            let _ = writeln!(
                m,
                "Yardstick of the memif input: testpmd io (`--port-topology=loop`, 1 forwarding core on CPU 0) on a memif port fed by the same generator: **{:.2} Mpps** (wall {:.2}; generator sent {}, got back {}, back-pressure {}{}).\n",
                t.mpps,
                t.wall_mpps,
                g.map_or(0, |g| g.sent),
                g.map_or(0, |g| g.forwarded + g.other),
                f(bp, 2),
                if bp.is_some_and(|b| b < 0.5) { ": the generator, not testpmd, set this rate, so it is a lower bound of testpmd's" } else { "" }
            );
        }
        let _ = writeln!(
            m,
            "| scenario | input | bytes | active flows | table entries | frames | window | Mpps | cycles/pkt | wall Mpps | on-CPU | Mpps (a) ring | ×testpmd io | ×testpmd macswap | ×testpmd io on memif | back-pressure | drops in windows |"
        );
        let _ = writeln!(m, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        for r in &self.inputs {
            let a = self.scenarios.iter().find(|s| s.name == r.name).and_then(|s| s.director.as_ref()).and_then(|d| d.mpps);
            let info = r.input.as_ref();
            let bp = info.map(|i| {
                let (b, s) = i.generator_runs.iter().fold((0u64, 0u64), |a, g| (a.0 + g.bursts, a.1 + g.short_bursts));
                if b == 0 { "–".to_string() } else { format!("{:.2}", s as f64 / b as f64) }
            });
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.name,
                input_mode(r),
                r.packet_bytes,
                human(r.active_flows as u64),
                self.table_entries_of(r),
                info.map_or(0, |i| i.frames),
                info.map_or(0, |i| i.window),
                f(r.mpps, 2),
                f(r.cycles_per_packet, 0),
                f(r.wall_mpps, 2),
                f(r.on_cpu, 2),
                f(a, 2),
                f(Self::ratio(r.mpps, io), 3),
                f(Self::ratio(r.mpps, ms), 3),
                if input_mode(r) == "memif" { f(Self::ratio(r.mpps, tpm), 3) } else { String::new() },
                bp.unwrap_or_else(|| "–".into()),
                if r.drops.is_empty() { "none".to_string() } else { format!("{:?}", r.drops) },
            );
        }
        let _ = writeln!(m);
        for r in &self.inputs {
            if let Some(i) = &r.input {
                let _ = writeln!(
                    m,
                    "- {}/{} ({:?}): `{}`; setup {:.1} s created {} connections ({} expected; ActiveConn {}, InActConn {}, PersistConn {}); port rx/tx over the windows {}/{}; runs (forwarded / busy ns / wall cycles): {}{}",
                    r.name,
                    input_mode(r),
                    r.memory,
                    i.vdev,
                    i.setup_secs,
                    i.setup_counts.0,
                    i.expected_conns,
                    i.setup_counts.1,
                    i.setup_counts.2,
                    i.setup_counts.3,
                    i.port_delta.0,
                    i.port_delta.1,
                    r.samples.iter().map(|x| format!("{}/{}/{}", x.out, x.cpu_ns, x.cycles)).collect::<Vec<_>>().join(", "),
                    if i.generator_runs.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; generator per run (sent / forwarded back / s): {}",
                            i.generator_runs.iter().map(|g| format!("{}/{}/{:.2}", g.sent, g.forwarded, g.secs)).collect::<Vec<_>>().join(", ")
                        )
                    }
                );
            }
        }
        let _ = writeln!(m);
    }

    /// The report.json value (schema fixed by the issue).
    pub fn report_json(&self) -> serde_json::Value {
        let scenarios: Vec<_> = self
            .scenarios
            .iter()
            .map(|s| {
                let d = s.director.as_ref();
                let any = d.or(s.engine_loop.as_ref()).or(s.callgrind.as_ref());
                let mpps = d.and_then(|d| d.mpps);
                json!({
                    "name": s.name,
                    "packet_bytes": any.map(|r| r.packet_bytes),
                    "active_flows": any.map(|r| r.active_flows),
                    "table_entries": s.engine_loop.as_ref().and_then(|r| r.table_len).or(any.map(|r| r.table_entries)),
                    "workers": d.map_or(1, |d| d.workers),
                    "mpps": mpps,
                    "cycles_per_packet": d.and_then(|d| d.cycles_per_packet),
                    "instructions_per_packet": s.ipp,
                    "cps": if s.new_connections { mpps.map(|m| m * 1e6) } else { None },
                })
            })
            .chain(self.inputs.iter().map(|r| {
                json!({
                    "name": format!("{}/{}", r.name, input_mode(r)),
                    "packet_bytes": r.packet_bytes,
                    "active_flows": r.active_flows,
                    "table_entries": self.table_entries_of(r),
                    "workers": r.workers,
                    "mpps": r.mpps,
                    "cycles_per_packet": r.cycles_per_packet,
                    "instructions_per_packet": null,
                    "cps": null,
                })
            }))
            .collect();
        let bpc = self
            .scenarios
            .iter()
            .filter_map(|s| s.engine_loop.as_ref().or(s.callgrind.as_ref()).and_then(|r| r.bytes_per_entry))
            .next();
        json!({
            "yardstick": {
                "testpmd_io_mpps": self.testpmd_io.as_ref().map(|t| t.mpps),
                "testpmd_macswap_mpps": self.testpmd_macswap.as_ref().map(|t| t.mpps),
                "io_floor_instructions_per_packet": self.iofloor_ipp,
            },
            "scenarios": scenarios,
            "bytes_per_connection": bpc,
        })
    }

    /// report.md.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let io = self.testpmd_io.as_ref().map(|t| t.mpps);
        let ms = self.testpmd_macswap.as_ref().map(|t| t.mpps);
        let floor = self.iofloor_ipp;
        let floor_mpps = self.iofloor.as_ref().and_then(|r| r.mpps);
        let _ = writeln!(m, "# Director benchmark report{}\n", if self.quick { " (BENCH_QUICK)" } else { "" });
        let _ = writeln!(
            m,
            "Machine: {} cores, TSC {:.2} GHz; native runs with {}; callgrind with --no-huge. One worker. Packet size is the wire size with FCS. Wall time {:.0} s.\n",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.iofloor.as_ref().map_or(0.0, |r| r.tsc_hz as f64 / 1e9),
            if self.hugepages { "2 MiB hugepages" } else { "--no-huge" },
            self.wall_secs
        );
        let _ = writeln!(m, "## Yardstick (same run)\n");
        let _ = writeln!(m, "| what | Mpps | instructions/packet |\n| --- | ---: | ---: |");
        let _ = writeln!(m, "| testpmd io, 2 × net_null (copy=0), 1 forwarding core | {} | |", f(io, 2));
        let _ = writeln!(m, "| testpmd macswap, 2 × net_null, 1 forwarding core | {} | |", f(ms, 2));
        if let Some(t) = &self.testpmd_ring_io {
            let _ = writeln!(m, "| testpmd io, 2 × net_ring, 1024 packets circulating (pointer moves only) | {:.2} | |", t.mpps);
        }
        let _ = writeln!(m, "| io floor: own rx_burst → tx_burst loop, net_ring port, preloaded ring | {} | {} |\n", f(floor_mpps, 2), f(floor, 1));
        let _ = writeln!(m, "## Scenarios\n");
        let _ = writeln!(
            m,
            "Mpps and cycles/packet: (a) the real director (Director::start + control socket) on a ring port, median of runs. \
             Engine loop: (b) rx_burst → worker::process_burst (the worker's burst code) → tx_burst in one thread on the same PMD. \
             Instructions/packet: callgrind on (b), difference of two packet counts; \"above floor\" subtracts the io floor.\n"
        );
        let _ = writeln!(
            m,
            "| scenario | bytes | active flows | table entries | workers | Mpps (a) | cycles/pkt (a) | Mpps (b) | cycles/pkt (b) | instr/pkt | above floor | ×testpmd io | ×testpmd macswap | cps |"
        );
        let _ = writeln!(m, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for s in &self.scenarios {
            let d = s.director.as_ref();
            let l = s.engine_loop.as_ref();
            let any = d.or(l).or(s.callgrind.as_ref());
            let mpps = d.and_then(|d| d.mpps);
            let entries = l.and_then(|r| r.table_len).or(any.map(|r| r.table_entries)).unwrap_or(0);
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | 1 | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                any.map_or(0, |r| r.packet_bytes),
                human(any.map_or(0, |r| r.active_flows as u64)),
                entries,
                f(mpps, 2),
                f(d.and_then(|d| d.cycles_per_packet), 0),
                f(l.and_then(|d| d.mpps), 2),
                f(l.and_then(|d| d.cycles_per_packet), 0),
                f(s.ipp, 1),
                f(s.ipp.zip(floor).map(|(a, b)| a - b), 1),
                f(Self::ratio(mpps, io), 3),
                f(Self::ratio(mpps, ms), 3),
                if s.new_connections { f(mpps.map(|x| x * 1e6), 0) } else { "".into() },
            );
        }
        self.kernel_leg_markdown(&mut m);
        self.capture_markdown(&mut m);
        let bpc = self.report_json()["bytes_per_connection"].as_f64();
        let _ = writeln!(m, "\nBytes per connection entry (entry + its share of the hash index): {}\n", f(bpc, 1));
        self.inputs_markdown(&mut m);
        self.sync_markdown(&mut m);
        let _ = writeln!(m, "## Details\n");
        for s in &self.scenarios {
            for r in [&s.director, &s.engine_loop].into_iter().flatten() {
                let _ = writeln!(
                    m,
                    "- {} ({:?}, {:?}): capacity {}, prepare {:.1} s, runs (packets out / cycles): {}{}",
                    s.name,
                    r.mode,
                    r.memory,
                    r.capacity,
                    r.prepare_secs,
                    r.samples.iter().map(|x| format!("{}/{}", x.out, x.cycles)).collect::<Vec<_>>().join(", "),
                    if r.drops.is_empty() { String::new() } else { format!("; drops {:?}", r.drops) }
                );
            }
            if let (Some(c), Some(n)) = (s.callgrind.as_ref().and_then(|c| c.instructions), s.callgrind.as_ref().and_then(|c| c.callgrind_packets)) {
                let _ = writeln!(m, "- {} (callgrind): {} instructions for {} packets, {} for {}", s.name, c.0, n.0, c.1, n.1);
            }
        }
        if let Some(c) = &self.iofloor_cg {
            if let (Some(i), Some(n)) = (c.instructions, c.callgrind_packets) {
                let _ = writeln!(m, "- io floor (callgrind): {} instructions for {} packets, {} for {}", i.0, n.0, i.1, n.1);
            }
        }
        let _ = writeln!(m, "\n## Where the instructions go (callgrind, self cost, second phase)\n");
        for s in self.scenarios.iter().filter(|s| !s.sweep) {
            if let Some(p) = &s.profile {
                let _ = writeln!(m, "{}:\n```\n{}\n```", s.name, p.trim_end());
            }
        }
        if let Some(c) = &self.control_scale {
            let _ = writeln!(m, "\n## control_scale\n\n```\n{}\n```", c.trim_end());
        }
        if !self.errors.is_empty() {
            let _ = writeln!(m, "\n## Errors\n");
            for e in &self.errors {
                let _ = writeln!(m, "- {e}");
            }
        }
        let _ = writeln!(m, "\nPlots: mpps_vs_table.png, instructions_vs_table.png.");
        m
    }

    /// Writes report.json, report.md, details.json and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&self.report_json())? + "\n")?;
        std::fs::write(dir.join("details.json"), serde_json::to_string_pretty(self)? + "\n")?;
        let mut md = self.markdown();
        if let Err(e) = self.plots(dir) {
            let _ = writeln!(md, "\nPlots could not be drawn: {e:#}");
        }
        std::fs::write(dir.join("report.md"), md)?;
        Ok(())
    }

    /// Series (active flows → [(table entries, value)]) of the sweep.
    fn series(&self, value: impl Fn(&ScenarioResults) -> Option<f64>) -> Vec<(u32, Vec<(f64, f64)>)> {
        let mut out: Vec<(u32, Vec<(f64, f64)>)> = Vec::new();
        for s in self.scenarios.iter().filter(|s| s.sweep) {
            let Some(r) = s.director.as_ref().or(s.engine_loop.as_ref()).or(s.callgrind.as_ref()) else { continue };
            let Some(v) = value(s) else { continue };
            let x = r.table_entries as f64;
            match out.iter_mut().find(|(a, _)| *a == r.active_flows) {
                Some((_, pts)) => pts.push((x, v)),
                None => out.push((r.active_flows, vec![(x, v)])),
            }
        }
        for (_, pts) in &mut out {
            pts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        }
        out
    }

    fn plots(&self, dir: &Path) -> Result<()> {
        register_font()?;
        let floor_mpps = self.testpmd_io.as_ref().map(|t| t.mpps);
        let title = match floor_mpps {
            Some(v) => format!("Mpps vs table size, 1 worker (testpmd io on net_null: {v:.1} Mpps)"),
            None => "Mpps vs table size, 1 worker".to_string(),
        };
        plot(
            &dir.join("mpps_vs_table.png"),
            &title,
            "Mpps (busy)",
            &self.series(|s| s.director.as_ref().and_then(|d| d.mpps)),
            &self.series(|s| s.engine_loop.as_ref().and_then(|d| d.mpps)),
            None,
            false,
        )?;
        plot(
            &dir.join("instructions_vs_table.png"),
            "Instructions per packet vs table size (callgrind)",
            "instructions / packet",
            &self.series(|s| s.ipp),
            &[],
            self.iofloor_ipp.map(|v| ("io floor", v)),
            true,
        )?;
        Ok(())
    }
}

/// `memif` or `pcap` (the input of a result from [`Collected::inputs`]).
fn input_mode(r: &RunResult) -> &'static str {
    match r.mode {
        crate::run::Mode::Memif => "memif",
        crate::run::Mode::Pcap => "pcap",
        crate::run::Mode::Director => "director",
        crate::run::Mode::Loop => "loop",
        crate::run::Mode::Iofloor => "iofloor",
        crate::run::Mode::Kernel => "kernel",
    }
}

fn register_font() -> Result<()> {
    use plotters::style::FontStyle;
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];
    let path = candidates
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| anyhow::anyhow!("no TTF font found (install fonts-dejavu-core)"))?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(&path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| anyhow::anyhow!("bad font {}", path.display()))?;
    Ok(())
}

type Series = [(u32, Vec<(f64, f64)>)];

fn plot(path: &Path, title: &str, ylabel: &str, main: &Series, dashed: &Series, hline: Option<(&str, f64)>, legend_mid: bool) -> Result<()> {
    use plotters::prelude::*;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let ymax = main
        .iter()
        .chain(dashed.iter())
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .chain(hline.map(|h| h.1))
        .fold(1.0f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((500f64..2e7f64).log_scale(), 0f64..ymax)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("connection-table entries")
        .y_desc(ylabel)
        .x_label_formatter(&|x| human(*x as u64))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN];
    for (i, (active, pts)) in main.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .label(format!("{} active flows{}", human(*active as u64), if dashed.is_empty() { "" } else { ", director (a)" }))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled()))).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    for (i, (active, pts)) in dashed.iter().enumerate() {
        let c = colors[i % colors.len()].mix(0.5);
        chart
            .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, c.stroke_width(1)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .label(format!("{} active, engine loop (b)", human(*active as u64)))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(1)));
    }
    if let Some((name, v)) = hline {
        chart
            .draw_series(LineSeries::new(vec![(500.0, v), (2e7, v)], BLACK.stroke_width(1)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .label(format!("{name}: {v:.1}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(if legend_mid { SeriesLabelPosition::MiddleRight } else { SeriesLabelPosition::UpperRight })
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}
