//! `control_scale`: how long the control plane takes to restore and list a large
//! configuration (default 10,000 services × 4 real servers). A measuring program, not a test:
//! it prints a table and one `RESULT {json}` line.
//!
//! What is measured, each the median of `--runs` (default 3) runs, every run on a fresh
//! control server:
//! - `restore_R`: `lbadm -R` of the `-S -n` text (50,000 lines): the CLI's own code path
//!   (`control::cli::run`: parse every line; the rules, all configuration changes, go over
//!   the Unix socket as one non-atomic transaction — `Stage` requests of ~512 KiB, then
//!   `Commit` — applied line by line to a clone of the configuration and published once)
//!   against the real control server (`control::serve`), whose backend compiles every
//!   publication into a worker snapshot with the dataplane's own
//!   `dataplane::director::compile`, plus `wanted_neighbours`, which the director runs after
//!   every publication; every real server's MAC is already resolved. No EAL, no workers: the
//!   snapshot is built, not handed over. `restore_R_publish` is the part spent publishing.
//! - `restore_atomic`: `lbadm restore --atomic` of the `lbadm save` file (addresses + rules):
//!   staged in ~512 KiB requests, applied and published once (`restore_atomic_publish`).
//! - `list_n`, `list_stats`, `list_rate`: `lbadm -L -n` (and `--stats`, `--rate`) of the whole
//!   table, output formatted into memory; the backend reports counters for every server (a
//!   busy director), so the merge with counters is included.
//! - `save`: `lbadm save` to memory.
//! - `compile`, `wanted_neighbours`: one compilation of the final configuration, alone.
//! - With `--vip-addrs` (default on; `--no-vip-addrs` to drop), every VIP is also an address
//!   of the director (`addr add VIP/32 dev dpdk0`), as a real director needs for ARP; the
//!   addresses are loaded before the `-R` timing starts (`-R` takes only ipvsadm rules).
//! - If the `lbadm` binary sits next to this program (`target/release/lbadm`), the same
//!   `-R` and `-L -n` are also timed through it (process start, name tables, pipes
//!   included): `bin_restore_R`, `bin_list_n`.
//!
//! `cargo run --release -p bench --bin control_scale -- [--services N] [--servers M] [--runs R]
//! [--no-vip-addrs]`

use std::io::{Cursor, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control::cli::{run, CliIo};
use control::names::{Names, SystemNames};
use control::proto::{ConnInfo, LinkInfo, NeighInfo, ServerStats};
use control::{serve, Backend, Config, Controller, CtlError, ServerId};
use dataplane::director::{compile, wanted_neighbours};
use dataplane::neigh::{NeighParams, NeighTable};
use dataplane::snapshot::{PortInfo, Snapshot};
use dataplane::wire::MacAddr;

/// The director's own address: every real server is on its subnet.
const DIRECTOR_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 0, 0, 1), 8);

/// A control backend that does what the director's does on publish, minus the hand-over to
/// workers: compile the snapshot and compute the neighbours to resolve.
struct CompileBackend {
    ports: Vec<PortInfo>,
    neigh: NeighTable,
    snap: Option<Snapshot>,
    /// Publications and the time spent in them, readable while the server runs.
    publishing: Arc<Mutex<(usize, Duration)>>,
}

impl CompileBackend {
    fn new(servers: &[Ipv4Addr]) -> Self {
        let mut neigh = NeighTable::new(NeighParams::default());
        let now = Instant::now();
        for (i, ip) in servers.iter().enumerate() {
            let b = (i as u32).to_be_bytes();
            neigh.learn(
                *ip,
                MacAddr([0x52, 0x54, b[0], b[1], b[2], b[3]]),
                0,
                true,
                now,
            );
        }
        CompileBackend {
            ports: vec![PortInfo {
                id: 0,
                mac: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
                mtu: 1500,
                addrs: Vec::new(),
            }],
            neigh,
            snap: None,
            publishing: Arc::new(Mutex::new((0, Duration::ZERO))),
        }
    }
}

impl Backend for CompileBackend {
    fn port_names(&self) -> Vec<String> {
        vec!["dpdk0".into()]
    }

    fn publish(&mut self, cfg: &Config) -> Result<(), CtlError> {
        let t = Instant::now();
        let snap = compile(cfg, &self.neigh, &self.ports)?;
        std::hint::black_box(wanted_neighbours(&snap).len());
        self.snap = Some(snap);
        let mut p = self.publishing.lock().unwrap();
        p.0 += 1;
        p.1 += t.elapsed();
        Ok(())
    }

    fn server_stats(&mut self) -> Vec<(ServerId, ServerStats)> {
        // A busy director: every server has counters.
        let Some(s) = &self.snap else {
            return Vec::new();
        };
        s.servers
            .iter()
            .flatten()
            .map(|r| {
                let n = u64::from(r.slot);
                (
                    ServerId(r.slot),
                    ServerStats {
                        active: 3 + n % 17,
                        inactive: 40 + n % 7,
                        persist: 0,
                        conns: 1_000_000 + n,
                        inpkts: 123_456_789 + n,
                        inbytes: 98_765_432_100 + n,
                        outpkts: 0,
                        outbytes: 0,
                    },
                )
            })
            .collect()
    }

    fn connections(&mut self) -> Vec<ConnInfo> {
        Vec::new()
    }

    fn neighbours(&mut self) -> Vec<NeighInfo> {
        Vec::new()
    }

    fn links(&mut self) -> Vec<LinkInfo> {
        Vec::new()
    }

    fn table_size(&self) -> u32 {
        1 << 20
    }
}

struct Workload {
    /// `addr add` lines (director address + VIPs).
    addrs: String,
    /// The `-S -n` rules.
    rules: String,
    /// Every real server address (for the neighbour table).
    servers: Vec<Ipv4Addr>,
    lines: usize,
}

fn workload(services: u32, per_service: u32, vip_addrs: bool) -> Workload {
    let mut addrs = format!("addr add {}/{} dev dpdk0\n", DIRECTOR_NET.0, DIRECTOR_NET.1);
    let mut rules = String::new();
    let mut servers = Vec::new();
    let mut lines = 0;
    for s in 0..services {
        let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 1)) + s);
        if vip_addrs {
            addrs.push_str(&format!("addr add {vip}/32 dev dpdk0\n"));
        }
        rules.push_str(&format!("-A -t {vip}:80 -s wlc\n"));
        lines += 1;
        for k in 0..per_service {
            let rs = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 1)) + s * per_service + k);
            servers.push(rs);
            rules.push_str(&format!("-a -t {vip}:80 -r {rs}:80 -g -w {}\n", 1 + k));
            lines += 1;
        }
    }
    Workload {
        addrs,
        rules,
        servers,
        lines,
    }
}

/// A control server on a fresh socket; stopped on drop.
struct Server {
    path: PathBuf,
    publishing: Arc<Mutex<(usize, Duration)>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// (publications, time spent publishing) so far.
    fn published(&self) -> (usize, Duration) {
        *self.publishing.lock().unwrap()
    }

    fn start(tag: &str, w: &Workload) -> Server {
        let path =
            std::env::temp_dir().join(format!("control-scale-{}-{tag}.sock", std::process::id()));
        let ctl = Controller::new(CompileBackend::new(&w.servers), 65_536);
        let publishing = Arc::clone(&ctl.backend().publishing);
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (path.clone(), Arc::clone(&stop));
        let handle = std::thread::spawn(move || serve(&p, ctl, s));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            assert!(Instant::now() < deadline, "control server did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
        Server {
            path,
            publishing,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Runs lbadm's code in-process; returns (exit status, stdout bytes, stderr, wall time).
fn lbadm(
    sock: &Path,
    args: &[&str],
    stdin: &str,
    names: &dyn Names,
) -> (i32, Vec<u8>, String, Duration) {
    let mut argv = vec!["--socket".to_string(), sock.display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut input = Cursor::new(stdin.as_bytes());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let t = Instant::now();
    let code = {
        let mut io = CliIo {
            stdin: &mut input,
            stdout: &mut out,
            stderr: &mut err,
            socket_env: None,
            names,
        };
        run(&argv, &mut io)
    };
    let took = t.elapsed();
    (code, out, String::from_utf8_lossy(&err).into_owned(), took)
}

fn ok(r: (i32, Vec<u8>, String, Duration), what: &str) -> (Vec<u8>, Duration) {
    if r.0 != 0 {
        eprintln!(
            "control_scale: {what} failed ({}): {}",
            r.0,
            r.2.lines().next().unwrap_or("")
        );
        std::process::exit(1);
    }
    (r.1, r.3)
}

/// `lbadm` through the real binary: (status, stdout length, wall time).
fn lbadm_bin(bin: &Path, sock: &Path, args: &[&str], stdin: &[u8]) -> (bool, usize, Duration) {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lbadm");
    let mut si = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = si.write_all(&data);
    });
    let out = child.wait_with_output().expect("lbadm output");
    let took = t.elapsed();
    let _ = writer.join();
    (out.status.success(), out.stdout.len(), took)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut services = 10_000u32;
    let mut per_service = 4u32;
    let mut runs = 3usize;
    let mut vip_addrs = true;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let num = |i: usize| -> u64 {
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    eprintln!("control_scale: {} needs a number", args[i]);
                    std::process::exit(2)
                })
        };
        match args[i].as_str() {
            "--services" => {
                services = num(i) as u32;
                i += 1;
            }
            "--servers" => {
                per_service = num(i) as u32;
                i += 1;
            }
            "--runs" => {
                runs = (num(i) as usize).max(1);
                i += 1;
            }
            "--vip-addrs" => vip_addrs = true,
            "--no-vip-addrs" => vip_addrs = false,
            "-h" | "--help" => {
                println!("control_scale [--services N] [--servers M] [--runs R] [--no-vip-addrs]");
                return;
            }
            other => {
                eprintln!("control_scale: unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    assert!(
        u64::from(services) * u64::from(per_service) <= 65_536,
        "at most 65,536 real servers (the director's default --max-servers)"
    );
    let w = workload(services, per_service, vip_addrs);
    let names = SystemNames::load();
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("lbadm")))
        .filter(|p| p.is_file());
    println!(
        "control_scale: {services} services x {per_service} servers ({} -R lines, {} addresses), {runs} run(s){}",
        w.lines,
        w.addrs.lines().count(),
        if bin.is_some() { ", with the lbadm binary" } else { "" }
    );

    let mut m: Vec<(&str, Vec<f64>)> = [
        "restore_R",
        "restore_R_publish",
        "restore_atomic",
        "restore_atomic_publish",
        "list_n",
        "list_stats",
        "list_rate",
        "save",
        "compile",
        "wanted_neighbours",
        "bin_restore_R",
        "bin_list_n",
    ]
    .iter()
    .map(|n| (*n, Vec::new()))
    .collect();
    let mut record = |name: &str, d: Duration| {
        if let Some((_, v)) = m.iter_mut().find(|(n, _)| *n == name) {
            v.push(d.as_secs_f64());
        }
    };
    let mut list_bytes = 0;
    let (mut r_publishes, mut atomic_publishes) = (0, 0);
    for r in 0..runs {
        // -R into a director that already has its addresses.
        let a = Server::start(&format!("r{r}"), &w);
        ok(
            lbadm(&a.path, &["restore", "--atomic"], &w.addrs, &names),
            "addresses",
        );
        let p0 = a.published();
        let (_, t) = ok(lbadm(&a.path, &["-R"], &w.rules, &names), "-R");
        let p1 = a.published();
        record("restore_R", t);
        record("restore_R_publish", p1.1 - p0.1);
        r_publishes = p1.0 - p0.0;
        let (out, t) = ok(lbadm(&a.path, &["-L", "-n"], "", &names), "-L -n");
        let lines = out.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lines, 3 + w.lines, "listing has every service and server");
        list_bytes = out.len();
        record("list_n", t);
        let (_, t) = ok(
            lbadm(&a.path, &["-L", "-n", "--stats"], "", &names),
            "--stats",
        );
        record("list_stats", t);
        let (_, t) = ok(
            lbadm(&a.path, &["-L", "-n", "--rate"], "", &names),
            "--rate",
        );
        record("list_rate", t);
        let (saved, t) = ok(lbadm(&a.path, &["save"], "", &names), "save");
        record("save", t);
        let saved = String::from_utf8(saved).expect("utf-8");

        // restore --atomic of the saved file into an empty director.
        let b = Server::start(&format!("a{r}"), &w);
        let p0 = b.published();
        let (_, t) = ok(
            lbadm(&b.path, &["restore", "--atomic"], &saved, &names),
            "restore --atomic",
        );
        let p1 = b.published();
        record("restore_atomic", t);
        record("restore_atomic_publish", p1.1 - p0.1);
        atomic_publishes = p1.0 - p0.0;
        let (check, _) = ok(lbadm(&b.path, &["save"], "", &names), "save");
        assert_eq!(check, saved.as_bytes(), "restored configuration differs");
        drop(b);

        // The compile step alone, on the final configuration.
        {
            let mut ctl = Controller::new(CompileBackend::new(&w.servers), 65_536);
            control::config_file::apply_text(&mut ctl, &saved, &control::names::NumericOnly)
                .expect("apply");
            let cfg = ctl.config().clone();
            let be = ctl.backend_mut();
            let t = Instant::now();
            let snap = compile(&cfg, &be.neigh, &be.ports).expect("compile");
            record("compile", t.elapsed());
            let t = Instant::now();
            std::hint::black_box(wanted_neighbours(&snap).len());
            record("wanted_neighbours", t.elapsed());
        }
        drop(a);

        if let Some(bin) = &bin {
            let c = Server::start(&format!("b{r}"), &w);
            ok(
                lbadm(&c.path, &["restore", "--atomic"], &w.addrs, &names),
                "addresses",
            );
            let (good, _, t) = lbadm_bin(bin, &c.path, &["-R"], w.rules.as_bytes());
            assert!(good, "lbadm -R failed");
            record("bin_restore_R", t);
            let (good, n, t) = lbadm_bin(bin, &c.path, &["-L", "-n"], b"");
            assert!(good && n == list_bytes, "lbadm -L -n failed");
            record("bin_list_n", t);
        }
    }
    println!(
        "  publications: -R {r_publishes} (one transaction), restore --atomic {atomic_publishes}"
    );
    println!(
        "  {:<24} {:>10} {:>10} {:>10}",
        "step", "median s", "min s", "max s"
    );
    let mut json = serde_json::Map::new();
    json.insert("services".into(), services.into());
    json.insert("servers_per_service".into(), per_service.into());
    json.insert("vip_addrs".into(), vip_addrs.into());
    json.insert("runs".into(), runs.into());
    json.insert("list_bytes".into(), list_bytes.into());
    for (name, v) in &m {
        if v.is_empty() {
            continue;
        }
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        let med = median(v.clone());
        println!("  {name:<24} {med:>10.3} {min:>10.3} {max:>10.3}");
        json.insert(
            format!("{name}_s"),
            serde_json::json!((med * 1e4).round() / 1e4),
        );
    }
    let get = |n: &str| {
        json.get(&format!("{n}_s"))
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN)
    };
    println!(
        "  aims: restore < 2 s: {} (-R {:.3} s, --atomic {:.3} s); list < 1 s: {} (-L -n {:.3} s)",
        if get("restore_R") < 2.0 && get("restore_atomic") < 2.0 {
            "met"
        } else {
            "NOT met"
        },
        get("restore_R"),
        get("restore_atomic"),
        if get("list_n") < 1.0 {
            "met"
        } else {
            "NOT met"
        },
        get("list_n"),
    );
    println!("RESULT {}", serde_json::Value::Object(json));
}
