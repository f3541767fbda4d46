//! The dataplane side of the control protocol: `control::server::Backend` for a running
//! director. Configuration changes become published snapshots; listings ask the workers
//! (through their mailboxes) and the neighbour table; nothing here locks a worker's table.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use control::error::CtlError;
use control::model::{Config, ServerId};
use control::ipvsadm::{DaemonRole, DaemonSpec};
use control::proto::{
    ConnCursor, ConnInfo, ConnProto, KernelIfInfo, LinkInfo, MarkCounters, NeighInfo, ServerStats, SyncStatus,
};
use std::sync::atomic::Ordering;
use control::server::Backend;

use crate::conn::{state_name, F_TEMPLATE};
use crate::counters::DropReason;
use crate::director::SlowPath;
use crate::dpdk::Port;
use crate::sync::SyncDaemons;
use crate::worker::{ConnRow, WorkerReply, WorkerRequest};

/// Rows per connection-dump chunk (bounds the time a worker spends on one request).
const DUMP_CHUNK: usize = 1024;
/// Longest wait for one chunk.
const DUMP_TIMEOUT: Duration = Duration::from_secs(2);

/// `Backend` of a running director.
pub struct DirectorBackend {
    path: SlowPath,
    ports: Vec<Port>,
    conn_capacity: usize,
    sync: Option<SyncDaemons>,
    /// The changes being published came from the kernel interfaces (address sync): they are
    /// not written back there.
    kernel_origin: bool,
}

impl DirectorBackend {
    /// A backend over the director's slow path and ports.
    pub fn new(path: SlowPath, ports: Vec<Port>, conn_capacity: usize) -> Self {
        DirectorBackend { path, ports, conn_capacity, sync: None, kernel_origin: false }
    }

    /// The same with the connection-sync daemons (`--start-daemon`, `-L --daemon`,
    /// `lbadm sync show`).
    pub fn with_sync(mut self, sync: SyncDaemons) -> Self {
        self.sync = Some(sync);
        self
    }

    /// Marks the changes published from now on as coming from the kernel interfaces (the
    /// address-sync thread sets it around its own changes, under the controller's lock).
    pub fn set_kernel_origin(&mut self, yes: bool) {
        self.kernel_origin = yes;
    }

    /// Every connection row of every worker.
    fn dump(&self) -> Vec<ConnRow> {
        let mut out = Vec::new();
        for w in 0..self.path.shared.mailboxes.len() {
            self.dump_worker(w, 0, usize::MAX, &mut out);
        }
        out
    }

    /// Appends worker `w`'s rows from entry index `start` on to `out`, at most `max` of them
    /// (in chunks of [`DUMP_CHUNK`]: a worker copies one chunk between bursts). Returns the
    /// index to continue from, or `None` when the worker's table was listed to its end (or
    /// the worker did not answer in time).
    fn dump_worker(&self, w: usize, start: u32, max: usize, out: &mut Vec<ConnRow>) -> Option<u32> {
        let mb = self.path.shared.mailboxes.get(w)?;
        let _exchange = mb.exchange();
        while mb.replies.pop().is_some() {}
        let mut start = start;
        let mut left = max;
        while left > 0 {
            let buf = Box::new(Vec::with_capacity(DUMP_CHUNK.min(left)));
            if mb.requests.push(WorkerRequest::Conns { buf, start }).is_err() {
                return None;
            }
            let deadline = Instant::now() + DUMP_TIMEOUT;
            let reply = loop {
                if let Some(r) = mb.replies.pop() {
                    break Some(r);
                }
                if Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            match reply {
                Some(WorkerReply::Conns { buf, next }) => {
                    left = left.saturating_sub(buf.len());
                    out.extend_from_slice(&buf);
                    match next {
                        Some(n) => start = n,
                        None => return None,
                    }
                }
                _ => return None,
            }
        }
        Some(start)
    }

    /// The listing rows of `rows` (server addresses and ports from the configuration).
    fn conn_infos(&self, rows: &[ConnRow]) -> Vec<ConnInfo> {
        let slow = self.path.lock();
        let cfg = &slow.config;
        rows.iter()
            .map(|r| {
                let (daddr, server_port, service_port) = server_addr(cfg, r.server);
                let template = r.flags & F_TEMPLATE != 0;
                let proto = match r.key.proto {
                    6 => ConnProto::Tcp,
                    17 => ConnProto::Udp,
                    _ => ConnProto::Ip,
                };
                ConnInfo {
                    proto,
                    expires_secs: r.expires_secs,
                    state: state_name(r.key.proto, r.flags, r.state).to_string(),
                    caddr: Ipv4Addr::from(r.key.caddr),
                    cport: r.key.cport,
                    vaddr: Ipv4Addr::from(r.key.vaddr),
                    vport: r.key.vport,
                    daddr,
                    dport: shown_dport(template, r.key.vport, server_port, service_port),
                    pe: None,
                }
            })
            .collect()
    }
}

/// Real-server address and port of a slot (live or in the trash), and its service's port.
fn server_addr(cfg: &Config, slot: u32) -> (Ipv4Addr, u16, u16) {
    if let Some((svc, s)) = cfg.server(ServerId(slot)) {
        return (s.addr, s.port, svc.config.key.port());
    }
    cfg.trash()
        .find(|(_, s)| s.id.0 == slot)
        .map_or((Ipv4Addr::UNSPECIFIED, 0, 0), |(key, s)| (s.addr, s.port, key.port()))
}

/// The destination port `-L -c` shows (ipvs-semantics §3.2 step 4, §3.4): a connection goes
/// to the real server's port when the packet was for the service port and the server has
/// one, else to the packet's own port (port-0 and fwmark services); a template shows the
/// server's port, 0 for port-0/fwmark templates, 65535 once invalidated.
fn shown_dport(template: bool, vport: u16, server_port: u16, service_port: u16) -> u16 {
    if template {
        match vport {
            65535 => 65535,
            0 => 0,
            _ => server_port,
        }
    } else if service_port != 0 && vport == service_port && server_port != 0 {
        server_port
    } else {
        vport
    }
}

/// What `lbadm link show` reports of a kernel interface.
fn kernel_info(i: &crate::kernel::Iface) -> KernelIfInfo {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    KernelIfInfo {
        name: i.name.clone(),
        ifindex: i.ifindex.load(Ordering::Relaxed),
        up: i.up.load(Ordering::Relaxed),
        mtu: i.kernel_mtu.load(Ordering::Relaxed),
        mac_matches: !i.mac_changed.load(Ordering::Relaxed),
        to_host: get(&i.to_host),
        to_host_errors: get(&i.to_host_errors),
        from_host: get(&i.from_host),
        from_host_malformed: get(&i.from_host_malformed),
        from_host_full: get(&i.from_host_full),
        recreated: get(&i.recreated),
    }
}

impl Backend for DirectorBackend {
    fn port_names(&self) -> Vec<String> {
        self.ports.iter().map(|p| p.name()).collect()
    }

    fn publish(&mut self, cfg: &Config) -> Result<(), CtlError> {
        self.path.publish(cfg, self.kernel_origin)
    }

    fn server_stats(&mut self) -> Vec<(ServerId, ServerStats)> {
        let c = self.path.counters();
        c.servers
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != Default::default())
            .map(|(i, s)| {
                (
                    ServerId(i as u32),
                    ServerStats {
                        active: s.active as u64,
                        inactive: s.inactive as u64,
                        persist: s.persist as u64,
                        conns: s.conns,
                        inpkts: s.inpkts,
                        inbytes: s.inbytes,
                        outpkts: 0,
                        outbytes: 0,
                    },
                )
            })
            .collect()
    }

    fn connections(&mut self) -> Vec<ConnInfo> {
        let rows = self.dump();
        self.conn_infos(&rows)
    }

    fn connections_page(&mut self, from: ConnCursor, max: usize) -> (Vec<ConnInfo>, Option<ConnCursor>) {
        let workers = self.path.shared.mailboxes.len();
        let mut rows = Vec::with_capacity(max.min(1 << 16));
        let mut cur = Some(from);
        while let Some(c) = cur {
            let w = c.worker as usize;
            if w >= workers {
                cur = None;
                break;
            }
            let left = max - rows.len();
            if left == 0 {
                break;
            }
            cur = match self.dump_worker(w, c.index, left, &mut rows) {
                Some(index) => Some(ConnCursor { worker: c.worker, index }),
                None if w + 1 < workers => Some(ConnCursor { worker: c.worker + 1, index: 0 }),
                None => None,
            };
        }
        (self.conn_infos(&rows), cur)
    }

    fn neighbours(&mut self) -> Vec<NeighInfo> {
        let now = Instant::now();
        let slow = self.path.lock();
        slow.neigh
            .iter()
            .map(|(ip, e)| NeighInfo {
                addr: *ip,
                mac: e.mac.map(|m| m.to_string()),
                dev: format!("dpdk{}", e.port),
                state: e.state.name().to_string(),
                age_secs: e.confirmed.map_or(0, |c| now.saturating_duration_since(c).as_secs()),
            })
            .collect()
    }

    fn links(&mut self) -> Vec<LinkInfo> {
        let (c, each) = self.path.counters_per_worker();
        let mut drops: Vec<(String, u64)> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), c.drops[*r as usize]))
            .filter(|(_, n)| *n > 0)
            .collect();
        // Director-wide counters that are not drops, then the per-worker hand-offs.
        for (name, v) in [
            ("replies_ratelimited", c.replies_ratelimited),
            ("neigh_events_lost", c.neigh_events_lost),
            ("handoff_out", c.handoff_out),
            ("handoff_in", c.handoff_in),
            ("handoff_dropped", c.handoff_dropped),
            ("evicted_unconfirmed", c.evicted_unconfirmed),
            ("drop_entry_dropped", c.drop_entry_dropped),
        ] {
            if v > 0 {
                drops.push((name.to_string(), v));
            }
        }
        if each.len() > 1 {
            for (i, w) in each.iter().enumerate() {
                if let Some(w) = w {
                    drops.push((format!("worker{i}_handoff_out"), w.handoff_out));
                    drops.push((format!("worker{i}_handoff_in"), w.handoff_in));
                }
            }
        }
        let now = std::time::Instant::now();
        let (states, pool): (Vec<_>, _) = {
            let slow = self.path.lock();
            let pool = slow.pool.as_ref().map(|p| (u64::from(p.in_use()), u64::from(p.in_use()) + u64::from(p.available())));
            (self.ports.iter().map(|p| slow.links.state(*p, now)).collect(), pool)
        };
        self.ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let st = p.stats();
                let link = p.link();
                let state = states[i];
                LinkInfo {
                    name: p.name(),
                    mac: crate::wire::MacAddr(p.mac()).to_string(),
                    link_up: state.up,
                    speed_mbps: link.speed_mbps,
                    mtu: p.mtu() as u32,
                    rx_packets: st.rx_packets,
                    rx_bytes: st.rx_bytes,
                    tx_packets: st.tx_packets,
                    tx_bytes: st.tx_bytes,
                    rx_missed: st.rx_missed,
                    rx_errors: st.rx_errors,
                    tx_errors: st.tx_errors,
                    rx_nombuf: st.rx_nombuf,
                    // Dataplane drop reasons are per director, shown with the first port.
                    drops: if i == 0 { drops.clone() } else { Vec::new() },
                    link_changes: state.changes,
                    link_down_secs: state.down_total.as_secs(),
                    mbufs_in_use: if i == 0 { pool.map_or(0, |p| p.0) } else { 0 },
                    mbufs_total: if i == 0 { pool.map_or(0, |p| p.1) } else { 0 },
                    conn_entries: if i == 0 { c.conn_entries } else { 0 },
                    kernel: self.path.leg.as_ref().and_then(|l| l.iface_of_port(p.id())).map(kernel_info),
                }
            })
            .collect()
    }

    fn mark_counters(&mut self) -> Vec<MarkCounters> {
        let n = self.path.lock().config.marks().len();
        let c = self.path.counters();
        c.marks.iter().take(n).map(|&(packets, bytes)| MarkCounters { packets, bytes }).collect()
    }

    fn defense_on(&mut self) -> bool {
        self.path.counters().defense_on
    }

    fn table_size(&self) -> u32 {
        u32::try_from(self.conn_capacity).unwrap_or(u32::MAX)
    }

    fn start_daemon(&mut self, spec: &DaemonSpec) -> Result<(), CtlError> {
        match self.sync.as_mut() {
            Some(s) => s.start(spec),
            None => Err(CtlError::refused("this director was started without sync queues")),
        }
    }

    fn stop_daemon(&mut self, role: DaemonRole) -> Result<(), CtlError> {
        match self.sync.as_mut() {
            Some(s) => s.stop(role),
            None => Err(CtlError::no_daemon()),
        }
    }

    fn sync_status(&mut self) -> SyncStatus {
        self.sync.as_ref().map(SyncDaemons::status).unwrap_or_default()
    }
}


#[cfg(test)]
mod tests {
    use super::shown_dport;

    #[test]
    fn listed_destination_ports_follow_ipvs() {
        // VIP:80 service, server port 80.
        assert_eq!(shown_dport(false, 80, 80, 80), 80);
        assert_eq!(shown_dport(true, 80, 80, 80), 80);
        // Port-0 (PCC) service: connections keep the packet's port, templates show 0.
        assert_eq!(shown_dport(false, 443, 0, 0), 443);
        assert_eq!(shown_dport(true, 0, 0, 0), 0);
        // Fwmark service with servers on port 0.
        assert_eq!(shown_dport(false, 53, 0, 0), 53);
        // Invalidated template.
        assert_eq!(shown_dport(true, 65535, 80, 80), 65535);
    }
}
