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
    fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
        match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
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
             Engine loop: (b) rx_burst → Engine::process → tx_burst in one thread on the same PMD. \
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
        let bpc = self.report_json()["bytes_per_connection"].as_f64();
        let _ = writeln!(m, "\nBytes per connection entry (entry + its share of the hash index): {}\n", f(bpc, 1));
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
