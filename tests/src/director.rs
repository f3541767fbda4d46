//! Finding the binaries, the EAL arguments, and a `director` process under test.
//!
//! A [`DirectorProcess`] is started inside a namespace with one DPDK `net_af_packet` port per
//! veth it is given (port ids, and so names `dpdk0`, `dpdk1`, …, follow the order of the
//! list). It gets a unique control socket and DPDK file prefix, its stdout+stderr go to a log
//! file, and dropping it stops it (SIGTERM, bounded wait, SIGKILL) and removes what it left.
//! If the test is panicking at that moment, the log is printed.

use crate::ipvsadm::{self, Service};
use crate::netns::Netns;
use crate::util::{describe, run_timeout, unique_name, wait_until, TempDir};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the director may take from exec to creating its control socket.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the director may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit of one `lbadm` call.
pub const LBADM_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for neighbour resolution (ARP) of real servers.
pub const NEIGH_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of the `director` binary: `$DIRECTOR_BIN`, else `$CARGO_TARGET_DIR/release/director`,
/// else `<workspace>/target/release/director`. Panics with a hint if it does not exist.
pub fn director_bin() -> PathBuf {
    find_bin("DIRECTOR_BIN", "director")
}

/// Path of the `lbadm` binary: `$LBADM_BIN`, else `$CARGO_TARGET_DIR/release/lbadm`, else
/// `<workspace>/target/release/lbadm`. Panics with a hint if it does not exist.
pub fn lbadm_bin() -> PathBuf {
    find_bin("LBADM_BIN", "lbadm")
}

fn find_bin(var: &str, name: &str) -> PathBuf {
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return p;
        }
        panic!("{var}={} does not exist", p.display());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        // A relative CARGO_TARGET_DIR is relative to where cargo ran: the workspace root.
        tried.push(workspace.join(t).join("release").join(name));
    }
    tried.push(workspace.join("target").join("release").join(name));
    for p in &tried {
        if p.is_file() {
            return p.clone();
        }
    }
    panic!(
        "no `{name}` binary (tried {tried:?}). Build the release binaries first \
         (`cargo build --release`, or `make test` which does it), or set {var}."
    );
}

/// Whether the director can be given hugepages: `HugePages_Free` ≥ 128 (2 MiB pages, so the
/// 256 MiB asked for) and a hugetlbfs mounted. scripts/setup-host.sh tries to provide both.
pub fn hugepages_available() -> bool {
    let free = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("HugePages_Free:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false);
    free >= 128 && mounted
}

/// The EAL memory arguments for one director process; `unique` becomes its `--file-prefix`.
///
/// The single scheme used by every test (and mirrored by scripts/demo.sh):
/// * hugepages available ([`hugepages_available`]):
///   `--file-prefix <unique> --in-memory -m 256` — 256 MiB of hugepages, no hugepage files
///   and no shared config files (`--in-memory` implies `--huge-unlink` and `--no-shconf`);
/// * otherwise: `--file-prefix <unique> --no-huge -m 512 --no-shconf` — 512 MiB of ordinary
///   memory (`--no-huge` excludes `--in-memory`, so no shared config files via `--no-shconf`).
///
/// Either way DPDK leaves only an empty `/var/run/dpdk/<unique>/`, which
/// [`DirectorProcess`] removes. `LBTEST_HUGEPAGES=0` forces the second form, `=1` the first.
pub fn eal_memory_args(unique: &str) -> Vec<String> {
    let huge = match std::env::var("LBTEST_HUGEPAGES").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => hugepages_available(),
    };
    let mut v = vec!["--file-prefix".to_string(), unique.to_string()];
    if huge {
        v.extend(["--in-memory", "-m", "256"].map(String::from));
    } else {
        v.extend(["--no-huge", "-m", "512", "--no-shconf"].map(String::from));
    }
    v
}

/// EAL memory arguments that keep DPDK's shared runtime files, so that secondary processes
/// (`dpdk-dumpcap`, `dpdk-pdump`) can attach: `--file-prefix <unique> -m 256` on hugepages
/// (no `--in-memory`, no `--no-shconf`). A `--no-huge` primary publishes no hugepage
/// information, so secondaries cannot attach to it: without hugepages this returns `None`.
/// The hugepage files DPDK leaves (`<hugetlbfs>/<unique>map_*`) are removed by
/// [`DirectorProcess`] on drop.
pub fn eal_memory_args_shared(unique: &str) -> Option<Vec<String>> {
    let huge = match std::env::var("LBTEST_HUGEPAGES").as_deref() {
        Ok("0") => false,
        _ => hugepages_available(),
    };
    huge.then(|| vec!["--file-prefix".to_string(), unique.to_string(), "-m".into(), "256".into()])
}

/// The hugetlbfs mount point, if any.
fn hugetlbfs_mount() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/mounts").ok().and_then(|m| {
        m.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.get(2) == Some(&"hugetlbfs"))
            .and_then(|f| f.get(1).map(PathBuf::from))
    })
}

/// The full EAL argument list for a director with net_af_packet ports on `ifaces`:
/// `-l 0 --no-pci --log-level 4 <memory> --vdev net_af_packet0,iface=<ifaces[0]> …`.
pub fn eal_args(unique: &str, ifaces: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["-l", "0", "--no-pci", "--log-level", "4"]
        .map(String::from)
        .to_vec();
    v.extend(eal_memory_args(unique));
    for (i, ifname) in ifaces.iter().enumerate() {
        v.push("--vdev".into());
        v.push(format!("net_af_packet{i},iface={ifname}"));
    }
    v
}

/// How many workers a director gets and how its af_packet ports spread packets over them
/// (for [`DirectorProcess::start_layout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalLayout {
    /// EAL `-l` list: one worker per lcore (`"0"`, `"0-1"`).
    pub lcores: String,
    /// `qpairs=N` of every net_af_packet port: N RX/TX queues, the kernel fanning packets out
    /// over them by flow hash (4-tuple). 1 = the PMD's default (no `qpairs` argument).
    pub qpairs: u16,
}

impl EalLayout {
    /// `n` workers (`-l 0-(n-1)`) on ports with `n` queue pairs.
    pub fn workers(n: u16) -> EalLayout {
        assert!(n >= 1);
        let lcores = if n == 1 {
            "0".to_string()
        } else {
            format!("0-{}", n - 1)
        };
        EalLayout { lcores, qpairs: n }
    }
}

/// [`eal_args`] for a [`EalLayout`]: `-l <lcores> --no-pci --log-level 4 <memory>
/// --vdev net_af_packet0,iface=<ifaces[0]>[,qpairs=N] …`.
pub fn eal_args_layout(unique: &str, ifaces: &[&str], layout: &EalLayout) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "-l".into(),
        layout.lcores.clone(),
        "--no-pci".into(),
        "--log-level".into(),
        "4".into(),
    ];
    v.extend(eal_memory_args(unique));
    for (i, ifname) in ifaces.iter().enumerate() {
        v.push("--vdev".into());
        if layout.qpairs > 1 {
            v.push(format!(
                "net_af_packet{i},iface={ifname},qpairs={}",
                layout.qpairs
            ));
        } else {
            v.push(format!("net_af_packet{i},iface={ifname}"));
        }
    }
    v
}

/// Options for [`DirectorProcess::start_with`].
#[derive(Debug, Clone, Default)]
pub struct DirectorOptions {
    /// `--conn-capacity N`.
    pub conn_capacity: Option<u64>,
    /// More application arguments (after `--`), appended last.
    pub extra_args: Vec<String>,
    /// Keep DPDK's shared runtime files ([`eal_memory_args_shared`]) so capture tools can
    /// attach; needs hugepages (the start panics without them: check
    /// [`hugepages_available`] first).
    pub shared_files: bool,
}

/// A running `director` under test. See the module documentation.
#[derive(Debug)]
pub struct DirectorProcess {
    child: Option<Child>,
    ns_name: String,
    socket: PathBuf,
    log: PathBuf,
    eal_prefix: String,
    cmdline: String,
    exit_status: Option<ExitStatus>,
    /// The log was already printed in a panic message (do not print it twice on drop).
    log_shown: bool,
    // Last: removed after the process is gone.
    workdir: TempDir,
}

impl DirectorProcess {
    /// Starts the director in `ns` with one net_af_packet port per interface of `ifaces`
    /// (`dpdk0` = `ifaces[0]`, …) and waits (≤ [`READY_TIMEOUT`]) for its control socket.
    /// Panics, printing the director's log, if it exits or is not ready in time.
    pub fn start(ns: &Netns, ifaces: &[&str]) -> DirectorProcess {
        Self::start_with(ns, ifaces, &DirectorOptions::default())
    }

    /// [`DirectorProcess::start`] with options.
    pub fn start_with(ns: &Netns, ifaces: &[&str], opts: &DirectorOptions) -> DirectorProcess {
        Self::start_inner(ns, ifaces, opts, None)
    }

    /// [`DirectorProcess::start_with`] with several workers: EAL lcores and af_packet queue
    /// pairs from `layout` ([`eal_args_layout`]).
    pub fn start_layout(
        ns: &Netns,
        ifaces: &[&str],
        opts: &DirectorOptions,
        layout: &EalLayout,
    ) -> DirectorProcess {
        Self::start_inner(ns, ifaces, opts, Some(layout))
    }

    fn start_inner(
        ns: &Netns,
        ifaces: &[&str],
        opts: &DirectorOptions,
        layout: Option<&EalLayout>,
    ) -> DirectorProcess {
        let bin = director_bin();
        let workdir = TempDir::new("lbt-director");
        let eal_prefix = unique_name(crate::netns::NS_PREFIX);
        let socket = workdir.join("director.sock");
        let log = workdir.join("director.log");

        let mut args: Vec<String> = vec!["netns".into(), "exec".into(), ns.name().into()];
        args.push(bin.to_string_lossy().into_owned());
        let mut eal = match layout {
            Some(l) => eal_args_layout(&eal_prefix, ifaces, l),
            None => eal_args(&eal_prefix, ifaces),
        };
        if opts.shared_files {
            let shared = eal_memory_args_shared(&eal_prefix)
                .expect("shared_files needs hugepages (check hugepages_available() first)");
            let memory = eal_memory_args(&eal_prefix);
            let at = eal
                .windows(memory.len())
                .position(|w| w == memory.as_slice())
                .expect("memory arguments in the EAL list");
            eal.splice(at..at + memory.len(), shared);
        }
        args.extend(eal);
        args.push("--".into());
        args.push("--socket".into());
        args.push(socket.to_string_lossy().into_owned());
        if let Some(n) = opts.conn_capacity {
            args.push("--conn-capacity".into());
            args.push(n.to_string());
        }
        args.extend(opts.extra_args.iter().cloned());
        let cmdline = format!("ip {}", args.join(" "));

        let f = File::create(&log).expect("create director log");
        let f2 = f.try_clone().expect("dup log fd");
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(f))
            .stderr(Stdio::from(f2))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
        let mut d = DirectorProcess {
            child: Some(child),
            ns_name: ns.name().to_string(),
            socket,
            log,
            eal_prefix,
            cmdline,
            exit_status: None,
            log_shown: false,
            workdir,
        };
        if let Err(e) = d.wait_ready(READY_TIMEOUT) {
            d.log_shown = true;
            panic!(
                "director not ready: {e}\ncommand: {}\n--- director log ---\n{}",
                d.cmdline,
                d.log_text()
            );
        }
        d
    }

    /// Waits until the control socket exists, failing early if the process exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit_status() {
                return Err(format!("director exited during start-up with {st}"));
            }
            if is_socket(&self.socket) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no control socket {} after {timeout:?}",
                    self.socket.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The control socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Its DPDK `--file-prefix` (for `dpdk-telemetry.py -f`, `dpdk-dumpcap --file-prefix`).
    pub fn eal_prefix(&self) -> &str {
        &self.eal_prefix
    }

    /// The namespace the director runs in.
    pub fn netns_name(&self) -> &str {
        &self.ns_name
    }

    /// The command line it was started with (for messages).
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// Everything the director printed so far (stdout and stderr, interleaved).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `lbadm --socket <ours> <args>` (from the root namespace: the socket is a path in
    /// the shared filesystem), bounded by [`LBADM_TIMEOUT`].
    pub fn lbadm(&self, args: &[&str]) -> Output {
        let mut full: Vec<String> = vec![
            "--socket".into(),
            self.socket.to_string_lossy().into_owned(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        run_timeout(
            lbadm_bin().to_str().expect("utf-8 path"),
            &full,
            LBADM_TIMEOUT,
        )
    }

    /// [`DirectorProcess::lbadm`], returning stdout; panics (with the director's log) if lbadm
    /// exits non-zero.
    pub fn lbadm_ok(&self, args: &[&str]) -> String {
        let out = self.lbadm(args);
        if !out.status.success() {
            panic!(
                "{}\n--- director log ---\n{}",
                describe(&format!("lbadm {}", args.join(" ")), &out),
                self.log_text()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether `lbadm neigh show` lists `ip` as REACHABLE.
    pub fn neigh_reachable(&self, ip: &str) -> bool {
        let out = self.lbadm(&["neigh", "show"]);
        out.status.success()
            && ipvsadm::neigh_is_reachable(&String::from_utf8_lossy(&out.stdout), ip)
    }

    /// Waits (≤ `timeout` in all) until every address of `ips` is REACHABLE; panics with the
    /// neighbour table and the director's log otherwise.
    pub fn wait_neigh_reachable(&self, ips: &[&str], timeout: Duration) {
        let ok = wait_until(timeout, || ips.iter().all(|ip| self.neigh_reachable(ip)));
        if !ok {
            let table = self.lbadm(&["neigh", "show"]);
            panic!(
                "neighbours {ips:?} not all REACHABLE within {timeout:?}\n{}\n--- director log ---\n{}",
                describe("lbadm neigh show", &table),
                self.log_text()
            );
        }
    }

    /// `lbadm -L -n`, parsed.
    pub fn list(&self) -> Vec<Service> {
        ipvsadm::parse_list(&self.lbadm_ok(&["-L", "-n"]))
    }

    /// The director's PID while it runs (`ip netns exec` execs it in place).
    pub fn pid(&self) -> Option<u32> {
        if self.exit_status.is_some() {
            return None;
        }
        self.child.as_ref().map(|c| c.id())
    }

    /// The director's resident set size (`VmRSS` of /proc/PID/status) in KiB, while it runs.
    pub fn vm_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_exit_status().is_none() && self.child.is_some()
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit_status.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.exit_status = Some(st);
                }
            }
        }
        self.exit_status
    }

    /// Stops the director: SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL. Returns its
    /// exit status (a clean stop is exit 0). Idempotent.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(st) = self.try_exit_status() {
            self.child = None;
            return st;
        }
        let mut child = self.child.take().expect("director child");
        // `ip netns exec` exec'd the director in place: this PID is the director itself, and
        // it is our unreaped child, so it cannot belong to anyone else.
        crate::util::send_signal(child.id() as i32, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        let st = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            if Instant::now() >= deadline {
                eprintln!("[harness] director ignored SIGTERM for {STOP_TIMEOUT:?}: SIGKILL");
                let _ = child.kill();
                break child.wait().expect("wait director");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.exit_status = Some(st);
        st
    }
}

impl Drop for DirectorProcess {
    fn drop(&mut self) {
        let st = self.stop();
        if std::thread::panicking() && !self.log_shown {
            eprintln!(
                "---- director ({}) exit: {st} ----\n{}\n---- end of director log ----",
                self.cmdline,
                self.log_text()
            );
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.eal_prefix));
        // Hugepage files of a director that kept its shared files (our unique prefix only).
        if let Some(dir) = hugetlbfs_mount() {
            let mine = format!("{}map_", self.eal_prefix);
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&mine) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        // self.workdir (log, socket dir) is removed when it drops, after this.
        let _ = &self.workdir;
    }
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eal_args_shape() {
        let a = eal_args("lbt-x-1", &["eth0", "eth1"]);
        let s = a.join(" ");
        assert!(
            s.starts_with("-l 0 --no-pci --log-level 4 --file-prefix lbt-x-1 "),
            "{s}"
        );
        assert!(
            s.ends_with("--vdev net_af_packet0,iface=eth0 --vdev net_af_packet1,iface=eth1"),
            "{s}"
        );
        // A layout of 1 worker gives exactly the default arguments; 2 workers add qpairs.
        assert_eq!(
            eal_args_layout("lbt-x-1", &["eth0", "eth1"], &EalLayout::workers(1)),
            a
        );
        let l2 = eal_args_layout("lbt-x-1", &["eth0"], &EalLayout::workers(2)).join(" ");
        assert!(
            l2.starts_with("-l 0-1 --no-pci --log-level 4 --file-prefix lbt-x-1 "),
            "{l2}"
        );
        assert!(
            l2.ends_with("--vdev net_af_packet0,iface=eth0,qpairs=2"),
            "{l2}"
        );
        // Exactly one of the two memory schemes; --no-huge never with --in-memory.
        let huge = a.iter().any(|x| x == "--in-memory");
        let nohuge = a.iter().any(|x| x == "--no-huge");
        assert!(huge ^ nohuge, "{s}");
        assert_eq!(nohuge, a.iter().any(|x| x == "--no-shconf"), "{s}");
    }
}
