//! Link state of the director's ports as `lbadm link show` reports it, and its history:
//! how often each port's link changed and how long it has been down.
//!
//! The state is DPDK's link status, except for ports bound to a kernel interface (the PMD
//! reports its `if_index`, e.g. `net_af_packet`, which reports every port UP for ever): for
//! those the kernel interface's `operstate` (`/sys/class/net/NAME/operstate`, of the
//! director's network namespace) decides, so that a veth or NIC whose link drops is seen
//! DOWN. [`LinkWatch::poll`] runs on the housekeeping thread (every 100 ms): a flap shorter
//! than that may go unseen; every change it sees is counted.
//!
//! Concurrency: owned by the slow-path state (under its mutex); never touched by workers.

use std::time::{Duration, Instant};

use crate::dpdk::Port;

/// What is known about one port's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// Link up now.
    pub up: bool,
    /// Up ↔ down transitions seen since start-up.
    pub changes: u64,
    /// Time the link has been down in all (including the current outage).
    pub down_total: Duration,
}

#[derive(Debug)]
struct Watched {
    port: Port,
    kernel: Option<String>,
    up: bool,
    changes: u64,
    down_since: Option<Instant>,
    down_total: Duration,
}

/// The link state of every port (see the module documentation).
#[derive(Debug, Default)]
pub struct LinkWatch {
    ports: Vec<Watched>,
}

/// The kernel interface whose `ifindex` is `idx`.
fn kernel_name(idx: u32) -> Option<String> {
    let dir = std::fs::read_dir("/sys/class/net").ok()?;
    for e in dir.flatten() {
        let p = e.path().join("ifindex");
        if std::fs::read_to_string(&p).ok().and_then(|s| s.trim().parse::<u32>().ok()) == Some(idx) {
            return Some(e.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// The link of kernel interface `name` is up (`operstate` up, or unknown as for devices that
/// do not report one); `None` if it cannot be read.
fn kernel_up(name: &str) -> Option<bool> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/operstate")).ok()?;
    Some(matches!(s.trim(), "up" | "unknown"))
}

impl LinkWatch {
    /// Watches `ports`, starting from their current state.
    pub fn new(ports: &[Port], now: Instant) -> Self {
        let ports = ports
            .iter()
            .map(|&port| {
                let kernel = port.kernel_ifindex().and_then(kernel_name);
                let mut w = Watched { port, kernel, up: true, changes: 0, down_since: None, down_total: Duration::ZERO };
                w.up = w.read();
                if !w.up {
                    w.down_since = Some(now);
                }
                w
            })
            .collect();
        LinkWatch { ports }
    }

    /// Reads every port's link and counts the changes.
    pub fn poll(&mut self, now: Instant) {
        for w in &mut self.ports {
            let up = w.read();
            if up == w.up {
                continue;
            }
            w.up = up;
            w.changes += 1;
            if up {
                if let Some(t) = w.down_since.take() {
                    w.down_total += now.saturating_duration_since(t);
                }
            } else {
                w.down_since = Some(now);
            }
        }
    }

    /// The state of `port` (up, with no history, for a port not watched).
    pub fn state(&self, port: Port, now: Instant) -> LinkState {
        match self.ports.iter().find(|w| w.port == port) {
            Some(w) => LinkState {
                up: w.up,
                changes: w.changes,
                down_total: w.down_total + w.down_since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
            },
            None => LinkState { up: port.link().up, changes: 0, down_total: Duration::ZERO },
        }
    }
}

impl Watched {
    fn read(&self) -> bool {
        match self.kernel.as_deref().and_then(kernel_up) {
            Some(up) => up,
            None => self.port.link().up,
        }
    }
}
