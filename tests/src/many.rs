//! Many connections at once, for the multi-worker testbeds (tests/tests/netns_workers.rs).
//!
//! * [`PortsServer`]: scripts/testbed-probe.py `serve-tcp-ports`, the name banner of
//!   [`crate::probe::NameServer`] on a whole range of ports (PCC: one client, many ports);
//! * [`HoldServer`]: `serve-hold`, accepts every connection and keeps it open (long-lived
//!   connections for wlc), in a namespace whose `somaxconn` / SYN backlog are raised;
//! * [`tcp_many`]: `tcp-many`, hundreds of banner exchanges from one process, over source
//!   addresses and destination ports, each result reported ([`Exchange`]);
//! * [`HoldClient`]: `hold`, opens thousands of connections from several source addresses and
//!   keeps them ESTABLISHED while the test reads the director's counters;
//! * [`Ctl`]: one open connection to the director's control socket, so a test can apply
//!   configuration edits at a thousand per second (one `lbadm` process per edit cannot);
//! * [`link_counters`]: the director-wide counters of `lbadm link show` (hand-offs, drops).
//!
//! Every wait is bounded; the processes are stopped by PID when their guard is dropped.

use crate::director::DirectorProcess;
use crate::http::python;
use crate::netns::{ChildGuard, Netns};
use crate::probe::PROBE_SCRIPT;
use crate::util::{wait_until, TempDir};
use control::error::CtlError;
use control::proto::{client, Op, Reply, Request};
use std::ops::RangeInclusive;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// `serve-tcp-ports` in a namespace: answers its name on every port of a range.
#[derive(Debug)]
pub struct PortsServer {
    child: ChildGuard,
    pub name: String,
    pub ports: RangeInclusive<u16>,
}

impl PortsServer {
    /// Starts it in `ns` and waits (≤ 10 s) until the first and the last port answer on
    /// 127.0.0.1. Panics otherwise.
    pub fn start(ns: &Netns, name: &str, ports: RangeInclusive<u16>) -> PortsServer {
        let py = python();
        let range = format!("{}-{}", ports.start(), ports.end());
        let mut child = ns.spawn(&[
            &py,
            "-c",
            PROBE_SCRIPT,
            "serve-tcp-ports",
            "--name",
            name,
            "--ports",
            &range,
        ]);
        let ready = wait_until(Duration::from_secs(10), || {
            if !child.is_running() {
                return true;
            }
            [*ports.start(), *ports.end()].iter().all(|&p| {
                matches!(crate::probe::tcp_name_from(ns, None, "127.0.0.1", p, 1), Ok(ref n) if n == name)
            })
        });
        if !ready || !child.is_running() {
            panic!(
                "serve-tcp-ports {name} did not start in {} on {range}",
                ns.name()
            );
        }
        PortsServer {
            child,
            name: name.to_string(),
            ports,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// `serve-hold` in a namespace: accepts and holds every connection on one port.
#[derive(Debug)]
pub struct HoldServer {
    child: ChildGuard,
    pub port: u16,
}

impl HoldServer {
    /// Raises `net.core.somaxconn` and `net.ipv4.tcp_max_syn_backlog` in `ns` to `backlog`,
    /// starts the server with that listen backlog and waits (≤ 10 s) until a connection to
    /// 127.0.0.1:`port` succeeds. Panics otherwise.
    pub fn start(ns: &Netns, port: u16, backlog: u32) -> HoldServer {
        let b = backlog.to_string();
        ns.sysctl(&[
            ("net.core.somaxconn", b.as_str()),
            ("net.ipv4.tcp_max_syn_backlog", b.as_str()),
        ]);
        let py = python();
        let port_s = port.to_string();
        let mut child = ns.spawn(&[
            &py,
            "-c",
            PROBE_SCRIPT,
            "serve-hold",
            "--port",
            &port_s,
            "--backlog",
            &b,
        ]);
        let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
        let ready = wait_until(Duration::from_secs(10), || {
            !child.is_running() || ns.exec(&["bash", "-c", &probe]).status.success()
        });
        if !ready || !child.is_running() {
            panic!("serve-hold did not start in {} on port {port}", ns.name());
        }
        HoldServer { child, port }
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// One exchange of [`tcp_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Source address (`-` when none was given).
    pub src: String,
    /// Destination port.
    pub port: u16,
    /// The server's name, or the error.
    pub answer: Result<String, String>,
}

/// Runs `tcp-many` in `ns`: `count` banner exchanges with `dst`, exchange i to port
/// `ports.start() + i mod len` from `srcs[i mod k]`, one after the other, stopping early after
/// `duration` (if given); each exchange bounded by `timeout_secs`, the whole run by `bound`.
/// Panics if the run does not finish (no `done` line) within `bound`.
pub fn tcp_many(
    ns: &Netns,
    dst: &str,
    ports: RangeInclusive<u16>,
    srcs: &[&str],
    count: usize,
    duration: Option<Duration>,
    timeout_secs: u32,
    bound: Duration,
) -> Vec<Exchange> {
    let py = python();
    let range = format!("{}-{}", ports.start(), ports.end());
    let src = srcs.join(",");
    let count_s = count.to_string();
    let t = timeout_secs.to_string();
    let d = duration.map_or(0.0, |d| d.as_secs_f64()).to_string();
    let mut args = vec![
        py.as_str(),
        "-c",
        PROBE_SCRIPT,
        "tcp-many",
        "--dst",
        dst,
        "--ports",
        &range,
        "--count",
        &count_s,
        "--timeout",
        &t,
        "--duration",
        &d,
    ];
    if !src.is_empty() {
        args.extend(["--src", &src]);
    }
    let out = ns.exec_timeout(&args, bound);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = Vec::new();
    let mut done = false;
    for line in text.lines() {
        let mut f = line.splitn(4, ' ');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some(kind @ ("ok" | "err")), Some(src), Some(port), rest) => {
                let port = port.parse().unwrap_or(0);
                let rest = rest.unwrap_or("").to_string();
                v.push(Exchange {
                    src: src.to_string(),
                    port,
                    answer: if kind == "ok" { Ok(rest) } else { Err(rest) },
                });
            }
            (Some("done"), ..) => done = true,
            _ => {}
        }
    }
    if !done {
        panic!(
            "tcp-many to {dst}:{range} did not finish within {bound:?} ({} exchanges reported): {}\n{}",
            v.len(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    v
}

/// What a [`HoldClient`] reported once its connections were settled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldReport {
    pub established: usize,
    pub failed: usize,
    /// Seconds from start to settled.
    pub secs: f64,
}

/// `hold` in a namespace: opens many connections and keeps them open; killed on drop.
#[derive(Debug)]
pub struct HoldClient {
    child: ChildGuard,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl HoldClient {
    /// Starts `hold` in `ns`: `count` connections to `dst:port`, connection i from
    /// `srcs[i mod k]`, at most `window` handshakes in flight, settled within `timeout_secs`,
    /// then held for `hold_secs`.
    pub fn start(
        ns: &Netns,
        dst: &str,
        port: u16,
        srcs: &[&str],
        count: usize,
        window: usize,
        timeout_secs: u32,
        hold_secs: u32,
    ) -> HoldClient {
        let dir = TempDir::new("lbt-hold");
        let log = dir.join("hold.log");
        let py = python();
        let port_s = port.to_string();
        let src = srcs.join(",");
        let (count_s, window_s) = (count.to_string(), window.to_string());
        let (t, h) = (timeout_secs.to_string(), hold_secs.to_string());
        let mut args = vec![
            py.as_str(),
            "-c",
            PROBE_SCRIPT,
            "hold",
            "--dst",
            dst,
            "--port",
            &port_s,
            "--count",
            &count_s,
            "--window",
            &window_s,
            "--timeout",
            &t,
            "--hold-secs",
            &h,
        ];
        if !src.is_empty() {
            args.extend(["--src", &src]);
        }
        let child = ns.spawn_logged(&args, &log);
        HoldClient {
            child,
            log,
            _dir: dir,
        }
    }

    /// Everything the client printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (≤ `bound`) for the `established E failed F SECONDS` line. Panics with the
    /// client's output if it does not come or the client exits first.
    pub fn wait_settled(&mut self, bound: Duration) -> HoldReport {
        let deadline = Instant::now() + bound;
        loop {
            let text = self.output();
            if let Some(l) = text.lines().find(|l| l.starts_with("established ")) {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() >= 5 {
                    return HoldReport {
                        established: f[1].parse().unwrap_or(0),
                        failed: f[3].parse().unwrap_or(0),
                        secs: f[4].parse().unwrap_or(0.0),
                    };
                }
            }
            if !self.child.is_running() || Instant::now() >= deadline {
                panic!(
                    "hold client did not settle within {bound:?} (running: {})\n{text}",
                    self.child.is_running()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it (its connections close).
    pub fn stop(&mut self) {
        self.child.stop(Duration::from_secs(2));
    }
}

/// One open connection to a director's control socket.
pub struct Ctl {
    stream: UnixStream,
    timeout: Duration,
}

impl Ctl {
    /// Connects to `socket`. Panics if it cannot.
    pub fn connect(socket: &Path) -> Ctl {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
        Ctl {
            stream,
            timeout: Duration::from_secs(10),
        }
    }

    /// Sends one request and returns the director's answer. Panics on a transport error (the
    /// control socket broke: a director failure, not a refused command).
    pub fn op(&mut self, op: Op) -> Result<Reply, CtlError> {
        let req = Request::new(op);
        let resp = client::exchange(&mut self.stream, &req, self.timeout)
            .unwrap_or_else(|e| panic!("control socket: {e} (request {req:?})"));
        resp.result
    }

    /// An ipvsadm command line (whitespace-separated, without the program name), parsed with
    /// the director's own parser and sent. Panics if it does not parse.
    pub fn ipvs(&mut self, line: &str) -> Result<Reply, CtlError> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let cmd = control::ipvsadm::parse(&args)
            .unwrap_or_else(|e| panic!("ipvsadm {line:?} does not parse: {}", e.message));
        self.op(Op::Ipvs(cmd))
    }
}

/// The director-wide counters `lbadm link show` prints on its first port (`drops:` line):
/// drop reasons, `handoff_out`, `handoff_in`, `handoff_dropped`, `worker<i>_handoff_out`, …;
/// counters that are zero may be absent.
pub fn link_counters(d: &DirectorProcess) -> Vec<(String, u64)> {
    let mut ctl = Ctl::connect(d.socket_path());
    match ctl.op(Op::LinkShow) {
        Ok(Reply::Links(l)) => l.first().map(|p| p.drops.clone()).unwrap_or_default(),
        other => panic!("link show: {other:?}"),
    }
}

/// One counter of [`link_counters`] (0 when absent).
pub fn counter(counters: &[(String, u64)], name: &str) -> u64 {
    counters
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| *v)
}
