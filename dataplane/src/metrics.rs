//! The Prometheus text exposition (format 0.0.4) of a [`Sample`]: node_exporter's IPVS
//! collector, exactly, plus the director's own `director_*` metrics.
//!
//! **node_exporter compatibility** (prometheus/node_exporter `collector/ipvs_linux.go` over
//! procfs `ipvs.go`): the same eight metric names, types, help strings and label names, with
//! label values as node_exporter derives them from `/proc/net/ip_vs`: `proto` `TCP`/`UDP`, or
//! `FWM` for a firewall-mark service, whose `local_address` is empty, `local_port` `0` and
//! `local_mark` the mark as the kernel prints it (`%08X`, e.g. `0000000A`); address services
//! have an empty `local_mark`; ports are decimal. The totals count what IPVS counts in
//! `/proc/net/ip_vs_stats` (connections scheduled, packets and bytes forwarded); in direct
//! routing the replies bypass the director, so the outgoing totals stay 0, as with the kernel.
//! Labels are written sorted by name and series sorted by label values, as client_golang does.
//!
//! `director_*` metrics follow Prometheus naming: base units, `_total` on counters. Rendering
//! is a pure function of the sample (tested without EAL); `exporter` serves it.

use std::fmt::Write as _;

use control::model::ServiceKey;

use crate::counters::DropReason;
use crate::sample::{Sample, ServiceSample};

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Writes `# HELP` and `# TYPE`.
fn head(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one series; `labels` in the order given (callers keep them sorted by name).
fn series(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A whole family: head plus one series per row.
fn family<V: std::fmt::Display>(out: &mut String, name: &str, help: &str, kind: &str, rows: &[(Vec<(&str, &str)>, V)]) {
    head(out, name, help, kind);
    for (labels, v) in rows {
        series(out, name, labels, v);
    }
}

/// A float the way Prometheus clients print it (shortest round-trip form).
fn float(v: f64) -> String {
    if v.is_finite() && v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The service label values node_exporter derives from `/proc/net/ip_vs`:
/// (local_address, local_mark, local_port, proto).
pub fn service_labels(key: &ServiceKey) -> (String, String, String, String) {
    match key {
        ServiceKey::Addr { proto, addr, port } => (addr.to_string(), String::new(), port.to_string(), proto.name().to_string()),
        ServiceKey::Fwmark(m) => (String::new(), format!("{m:08X}"), "0".to_string(), "FWM".to_string()),
    }
}

/// One backend (service × real server) with its label values, sorted by name:
/// local_address, local_mark, local_port, proto, remote_address, remote_port.
struct Backend<'a> {
    labels: [String; 6],
    svc: &'a ServiceSample,
    server: usize,
}

fn backends(s: &Sample) -> Vec<Backend<'_>> {
    let mut v: Vec<Backend<'_>> = Vec::new();
    for svc in &s.services {
        let (la, lm, lp, proto) = service_labels(&svc.key);
        for (i, r) in svc.servers.iter().enumerate() {
            v.push(Backend {
                labels: [la.clone(), lm.clone(), lp.clone(), proto.clone(), r.addr.to_string(), r.port.to_string()],
                svc,
                server: i,
            });
        }
    }
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v
}

const BACKEND_LABELS: [&str; 6] = ["local_address", "local_mark", "local_port", "proto", "remote_address", "remote_port"];

fn backend_labels<'b>(b: &'b Backend<'_>) -> Vec<(&'static str, &'b str)> {
    BACKEND_LABELS.iter().copied().zip(b.labels.iter().map(String::as_str)).collect()
}

/// node_exporter's IPVS collector.
fn node_ipvs(out: &mut String, s: &Sample) {
    let t = &s.totals;
    family(out, "node_ipvs_connections_total", "The total number of connections made.", "counter", &[(vec![], t.conns)]);
    family(out, "node_ipvs_incoming_packets_total", "The total number of incoming packets.", "counter", &[(vec![], t.inpkts)]);
    family(out, "node_ipvs_outgoing_packets_total", "The total number of outgoing packets.", "counter", &[(vec![], 0u64)]);
    family(out, "node_ipvs_incoming_bytes_total", "The total amount of incoming data.", "counter", &[(vec![], t.inbytes)]);
    family(out, "node_ipvs_outgoing_bytes_total", "The total amount of outgoing data.", "counter", &[(vec![], 0u64)]);
    let b = backends(s);
    let rows = |f: &dyn Fn(&Backend<'_>) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> { b.iter().map(|x| (backend_labels(x), f(x))).collect() };
    let server = |x: &Backend<'_>| x.svc.servers[x.server].clone();
    family(
        out,
        "node_ipvs_backend_connections_active",
        "The current active connections by local and remote address.",
        "gauge",
        &rows(&|x| u64::from(server(x).counters.active)),
    );
    family(
        out,
        "node_ipvs_backend_connections_inactive",
        "The current inactive connections by local and remote address.",
        "gauge",
        &rows(&|x| u64::from(server(x).counters.inactive)),
    );
    family(
        out,
        "node_ipvs_backend_weight",
        "The current backend weight by local and remote address.",
        "gauge",
        &rows(&|x| u64::from(server(x).weight)),
    );
}

fn director_services(out: &mut String, s: &Sample) {
    let mut svcs: Vec<([String; 4], &ServiceSample)> = s
        .services
        .iter()
        .map(|svc| {
            let (a, m, p, proto) = service_labels(&svc.key);
            ([a, m, p, proto], svc)
        })
        .collect();
    svcs.sort_by(|a, b| a.0.cmp(&b.0));
    const L: [&str; 4] = ["local_address", "local_mark", "local_port", "proto"];
    let labels = |v: &[String; 4]| -> Vec<(&'static str, String)> { L.iter().copied().zip(v.iter().cloned()).collect() };
    let rows = |f: &dyn Fn(&ServiceSample) -> String| -> Vec<(Vec<(&'static str, String)>, String)> {
        svcs.iter().map(|(v, svc)| (labels(v), f(svc))).collect()
    };
    let emit = |out: &mut String, name: &str, help: &str, kind: &str, rows: Vec<(Vec<(&'static str, String)>, String)>| {
        head(out, name, help, kind);
        for (l, v) in &rows {
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            series(out, name, &l, v);
        }
    };
    emit(out, "director_service_connections_total", "Connections scheduled by the virtual service (deleted real servers included).", "counter", rows(&|x| x.counters.conns.to_string()));
    emit(out, "director_service_incoming_packets_total", "Packets the virtual service forwarded to its real servers.", "counter", rows(&|x| x.counters.inpkts.to_string()));
    emit(out, "director_service_incoming_bytes_total", "Bytes the virtual service forwarded to its real servers.", "counter", rows(&|x| x.counters.inbytes.to_string()));
    emit(
        out,
        "director_service_persistence_timeout_seconds",
        "Persistence timeout of the virtual service (0: not persistent).",
        "gauge",
        rows(&|x| x.persistent.unwrap_or(0).to_string()),
    );
    head(out, "director_service_info", "The virtual service's scheduler and persistence netmask (value 1).", "gauge");
    for (v, svc) in &svcs {
        let nm = svc.netmask.to_string();
        let l: Vec<(&str, &str)> = vec![
            ("local_address", &v[0]),
            ("local_mark", &v[1]),
            ("local_port", &v[2]),
            ("netmask", &nm),
            ("proto", &v[3]),
            ("scheduler", &svc.scheduler),
        ];
        series(out, "director_service_info", &l, 1);
    }
    let b = backends(s);
    let rows = |f: &dyn Fn(&crate::sample::ServerSample) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
        b.iter().map(|x| (backend_labels(x), f(&x.svc.servers[x.server]))).collect()
    };
    family(out, "director_server_connections_total", "Connections scheduled to the real server.", "counter", &rows(&|r| r.counters.conns));
    family(out, "director_server_incoming_packets_total", "Packets forwarded to the real server.", "counter", &rows(&|r| r.counters.inpkts));
    family(out, "director_server_incoming_bytes_total", "Bytes forwarded to the real server.", "counter", &rows(&|r| r.counters.inbytes));
    family(
        out,
        "director_server_persistence_templates",
        "Persistence templates pointing at the real server (ipvsadm's PersistConn).",
        "gauge",
        &rows(&|r| u64::from(r.counters.persist)),
    );
}

fn director_ports(out: &mut String, s: &Sample) {
    let names: Vec<String> = s.ports.iter().map(|p| p.name.clone()).collect();
    let per_port = |f: &dyn Fn(usize) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
        names.iter().enumerate().map(|(i, n)| (vec![("port", n.as_str())], f(i))).collect()
    };
    let p = &s.ports;
    head(out, "director_port_info", "The port's DPDK device name and port id (for dpdk-dumpcap -i; value 1).", "gauge");
    for x in p {
        series(out, "director_port_info", &[("device", &x.device), ("port", &x.name), ("port_id", &x.id.to_string())], 1);
    }
    family(out, "director_port_up", "Whether the port's link is up.", "gauge", &per_port(&|i| u64::from(p[i].link.up)));
    family(
        out,
        "director_port_speed_bytes",
        "Link speed in bytes per second (0: unknown).",
        "gauge",
        &per_port(&|i| if p[i].link.speed_mbps == u32::MAX { 0 } else { u64::from(p[i].link.speed_mbps) * 125_000 }),
    );
    family(out, "director_port_mtu_bytes", "MTU of the port.", "gauge", &per_port(&|i| u64::from(p[i].mtu)));
    family(out, "director_port_receive_packets_total", "Packets received by the port (NIC counter).", "counter", &per_port(&|i| p[i].stats.rx_packets));
    family(out, "director_port_receive_bytes_total", "Bytes received by the port (NIC counter).", "counter", &per_port(&|i| p[i].stats.rx_bytes));
    family(out, "director_port_transmit_packets_total", "Packets sent by the port (NIC counter).", "counter", &per_port(&|i| p[i].stats.tx_packets));
    family(out, "director_port_transmit_bytes_total", "Bytes sent by the port (NIC counter).", "counter", &per_port(&|i| p[i].stats.tx_bytes));
    family(
        out,
        "director_port_receive_missed_packets_total",
        "Packets the NIC dropped for lack of receive descriptors.",
        "counter",
        &per_port(&|i| p[i].stats.rx_missed),
    );
    family(out, "director_port_receive_errors_total", "Erroneous packets received (NIC counter).", "counter", &per_port(&|i| p[i].stats.rx_errors));
    family(out, "director_port_transmit_errors_total", "Failed transmissions (NIC counter).", "counter", &per_port(&|i| p[i].stats.tx_errors));
    family(
        out,
        "director_port_receive_nombuf_total",
        "Receive buffer allocation failures (NIC counter).",
        "counter",
        &per_port(&|i| p[i].stats.rx_nombuf),
    );
    family(
        out,
        "director_port_forwarded_packets_total",
        "Packets the director forwarded to a real server out of this port.",
        "counter",
        &per_port(&|i| p[i].counters.forwarded),
    );
    family(
        out,
        "director_port_replied_packets_total",
        "Frames the director answered itself out of this port (ARP, ICMP echo, TCP RST, ICMP errors).",
        "counter",
        &per_port(&|i| p[i].counters.replied),
    );
    head(
        out,
        "director_port_drops_total",
        "Packets the director dropped, by port (arrival, or egress for transmit drops) and reason.",
        "counter",
    );
    for port in p {
        let mut reasons: Vec<(&str, u64)> = DropReason::ALL.iter().map(|r| (r.name(), port.drops[*r as usize])).collect();
        reasons.sort_by(|a, b| a.0.cmp(b.0));
        for (reason, v) in reasons {
            series(out, "director_port_drops_total", &[("port", &port.name), ("reason", reason)], v);
        }
    }
    // The kernel leg: the port's host interface (`dpdkN`), where it exists.
    let legs: Vec<(&str, crate::sample::KernelSample)> = p.iter().filter_map(|x| x.kernel.map(|k| (x.name.as_str(), k))).collect();
    let kernel = |f: &dyn Fn(&crate::sample::KernelSample) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
        legs.iter().map(|(n, k)| (vec![("port", *n)], f(k))).collect()
    };
    family(out, "director_kernel_interface_up", "Whether the port's kernel interface is administratively up.", "gauge", &kernel(&|k| u64::from(k.up)));
    family(
        out,
        "director_kernel_to_host_packets_total",
        "Frames handed to the host through the port's kernel interface.",
        "counter",
        &kernel(&|k| k.to_host),
    );
    family(
        out,
        "director_kernel_to_host_errors_total",
        "Frames for the host the kernel interface refused (down or gone).",
        "counter",
        &kernel(&|k| k.to_host_errors),
    );
    family(
        out,
        "director_kernel_from_host_packets_total",
        "Frames the host sent out of the kernel interface, queued for the port.",
        "counter",
        &kernel(&|k| k.from_host),
    );
    family(
        out,
        "director_kernel_from_host_malformed_total",
        "Frames from the host dropped as malformed (runt, over the MTU).",
        "counter",
        &kernel(&|k| k.from_host_malformed),
    );
    family(
        out,
        "director_kernel_from_host_dropped_total",
        "Frames from the host dropped because the queue to the port was full.",
        "counter",
        &kernel(&|k| k.from_host_full),
    );
    family(
        out,
        "director_kernel_interface_recreated_total",
        "Times the kernel interface was recreated after being deleted.",
        "counter",
        &kernel(&|k| k.recreated),
    );
}

fn director_workers(out: &mut String, s: &Sample) {
    let ids: Vec<(String, String)> = s.workers.iter().map(|w| (w.lcore.to_string(), w.index.to_string())).collect();
    let labels = |i: usize| vec![("lcore", ids[i].0.as_str()), ("worker", ids[i].1.as_str())];
    let hz = s.tsc_hz.max(1) as f64;
    family(
        out,
        "director_worker_up",
        "Whether the worker answered this scrape's counter request in time (1) or not (0).",
        "gauge",
        &s.workers.iter().map(|w| (labels(w.index), u64::from(w.counters.is_some()))).collect::<Vec<_>>(),
    );
    let answered: Vec<&crate::sample::WorkerSample> = s.workers.iter().filter(|w| w.counters.is_some()).collect();
    let rows = |f: &dyn Fn(&crate::counters::WorkerCounters) -> String| -> Vec<(Vec<(&str, &str)>, String)> {
        answered.iter().map(|w| (labels(w.index), f(w.counters.as_ref().expect("answered")))).collect()
    };
    family(
        out,
        "director_worker_packets_total",
        "Packets the worker's engine decided (received on its queues or handed to it).",
        "counter",
        &rows(&|c| c.ports.iter().map(|p| p.rx).sum::<u64>().to_string()),
    );
    family(
        out,
        "director_worker_busy_seconds_total",
        "Time the worker spent in poll-loop iterations that handled packets.",
        "counter",
        &rows(&|c| float(c.busy_cycles as f64 / hz)),
    );
    family(out, "director_worker_poll_seconds_total", "Time since the worker started polling.", "counter", &rows(&|c| float(c.poll_cycles as f64 / hz)));
    family(
        out,
        "director_worker_busy_ratio",
        "Share of the worker's time spent on packets since the previous sample (scrape or telemetry read).",
        "gauge",
        &answered.iter().filter_map(|w| w.busy_ratio.map(|r| (labels(w.index), float(r)))).collect::<Vec<_>>(),
    );
    family(
        out,
        "director_worker_handoff_out_packets_total",
        "Packets the worker handed to the worker owning their client.",
        "counter",
        &rows(&|c| c.handoff_out.to_string()),
    );
    family(out, "director_worker_handoff_in_packets_total", "Packets other workers handed to this worker.", "counter", &rows(&|c| c.handoff_in.to_string()));
    family(
        out,
        "director_worker_handoff_dropped_packets_total",
        "Hand-offs lost because the owner's ring was full.",
        "counter",
        &rows(&|c| c.handoff_dropped.to_string()),
    );
    family(
        out,
        "director_worker_evicted_unconfirmed_total",
        "Unconfirmed entries (handshakes, unassured templates) evicted to make room in a full connection table (SYN-flood defence).",
        "counter",
        &rows(&|c| c.evicted_unconfirmed.to_string()),
    );
    family(
        out,
        "director_worker_drop_entry_dropped_total",
        "Unconfirmed entries dropped by the drop_entry defence.",
        "counter",
        &rows(&|c| c.drop_entry_dropped.to_string()),
    );
    family(
        out,
        "director_worker_defense_active",
        "Whether the worker's automatic defences (drop_entry/drop_packet/secure_tcp modes 1, table memory below amemthresh) are on (1) or off (0).",
        "gauge",
        &rows(&|c| u64::from(c.defense_on).to_string()),
    );
    family(
        out,
        "director_worker_connection_entries",
        "Entries (connections and persistence templates) in the worker's connection table.",
        "gauge",
        &rows(&|c| c.conn_entries.to_string()),
    );
    family(
        out,
        "director_worker_connection_capacity",
        "Capacity of the worker's connection table (--conn-capacity).",
        "gauge",
        &rows(&|c| c.conn_capacity.to_string()),
    );
    family(
        out,
        "director_worker_persistence_templates",
        "Persistence templates in the worker's connection table.",
        "gauge",
        &rows(&|c| c.servers.iter().map(|x| u64::from(x.persist)).sum::<u64>().to_string()),
    );
}

fn director_misc(out: &mut String, s: &Sample) {
    family(
        out,
        "director_build_info",
        "The director's version and the DPDK it runs on (value 1).",
        "gauge",
        &[(vec![("dpdk", crate::dpdk::version().as_str()), ("version", env!("CARGO_PKG_VERSION"))], 1)],
    );
    family(out, "director_workers", "Number of workers (one per EAL lcore).", "gauge", &[(vec![], s.workers.len())]);
    family(
        out,
        "director_replies_ratelimited_total",
        "Generated replies (TCP RST, ICMP errors) suppressed by the rate limit.",
        "counter",
        &[(vec![], s.replies_ratelimited)],
    );
    family(
        out,
        "director_neighbour_events_lost_total",
        "ARP observations lost because the queue to the control side was full.",
        "counter",
        &[(vec![], s.neigh_events_lost)],
    );
    let ids: Vec<(String, String)> = s.marks.iter().enumerate().map(|(i, (r, _, _))| (r.mark.to_string(), (i + 1).to_string())).collect();
    let rows = |f: &dyn Fn(usize) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
        ids.iter().enumerate().map(|(i, (m, n))| (vec![("mark", m.as_str()), ("rule", n.as_str())], f(i))).collect()
    };
    family(
        out,
        "director_mark_rule_packets_total",
        "Packets that opened a connection and matched the mark rule (rule: position in `lbadm mark show`).",
        "counter",
        &rows(&|i| s.marks[i].1),
    );
    family(out, "director_mark_rule_bytes_total", "Bytes of those packets.", "counter", &rows(&|i| s.marks[i].2));
}

/// Connection synchronisation (`lbadm sync show`): whether each daemon runs, what the master
/// sent, what the backup received and applied, and every drop reason (zeros included, so the
/// series exist before the first drop).
fn director_sync(out: &mut String, s: &Sample) {
    let Some(y) = &s.sync else { return };
    let c = &y.counters;
    family(
        out,
        "director_sync_daemon_running",
        "Whether the connection-sync daemon of the role runs (--start-daemon).",
        "gauge",
        &[(vec![("role", "backup")], u8::from(y.backup)), (vec![("role", "master")], u8::from(y.master))],
    );
    let one = |out: &mut String, name: &str, help: &str, v: u64| family(out, name, help, "counter", &[(vec![], v)]);
    one(out, "director_sync_entries_queued_total", "Connections and templates the workers handed to the sync master.", c.entries_queued);
    one(out, "director_sync_sent_entries_total", "Entries the sync master sent.", c.entries_sent);
    one(out, "director_sync_sent_messages_total", "Sync messages the master sent.", c.messages_sent);
    one(out, "director_sync_sent_bytes_total", "Bytes of sync messages sent (UDP payload).", c.bytes_sent);
    one(out, "director_sync_received_messages_total", "Datagrams the sync backup received.", c.messages_received);
    one(out, "director_sync_received_entries_total", "Entries in sync messages the backup accepted.", c.entries_received);
    one(out, "director_sync_applied_entries_total", "Received entries installed or updated in a worker's connection table.", c.entries_applied);
    let rows: Vec<(Vec<(&str, &str)>, u64)> = c.drops.iter().map(|(r, v)| (vec![("reason", r.as_str())], *v)).collect();
    family(
        out,
        "director_sync_dropped_total",
        "Sync messages or entries dropped, by reason (ring_full, send_error, msg_* whole messages, entry_* skipped entries, install_* refused installs).",
        "counter",
        &rows,
    );
}

/// Health checking (`director_health_*`): each checker's state, transitions and consecutive
/// failures labelled as backends are (plus `check`, keepalived's checker name, and `index`,
/// its position on the server), each managed service's quorum, and the engine's counters.
fn director_health(out: &mut String, s: &Sample) {
    let Some(h) = &s.health else { return };
    let mut checks: Vec<([String; 8], &crate::sample::CheckSample)> = h
        .checks
        .iter()
        .map(|c| {
            let (la, lm, lp, proto) = service_labels(&c.service);
            (
                [c.kind.to_string(), c.index.to_string(), la, lm, lp, proto, c.addr.to_string(), c.port.to_string()],
                c,
            )
        })
        .collect();
    checks.sort_by(|a, b| a.0.cmp(&b.0));
    const CHECK_LABELS: [&str; 8] =
        ["check", "index", "local_address", "local_mark", "local_port", "proto", "remote_address", "remote_port"];
    let rows = |f: &dyn Fn(&crate::sample::CheckSample) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
        checks
            .iter()
            .map(|(l, c)| (CHECK_LABELS.iter().copied().zip(l.iter().map(String::as_str)).collect(), f(c)))
            .collect()
    };
    family(
        out,
        "director_health_check_up",
        "State of a health checker: 1 passing, 0 failed (a server is alive while all its checkers pass).",
        "gauge",
        &rows(&|c| u64::from(c.up)),
    );
    family(
        out,
        "director_health_check_transitions_total",
        "State changes of a health checker (up to down or down to up).",
        "counter",
        &rows(&|c| c.transitions),
    );
    family(
        out,
        "director_health_check_consecutive_failures",
        "Failed probes of a health checker since its last success.",
        "gauge",
        &rows(&|c| u64::from(c.consecutive_failures)),
    );
    let mut quorum: Vec<([String; 4], bool)> = h
        .quorum
        .iter()
        .map(|(k, up)| {
            let (la, lm, lp, proto) = service_labels(k);
            ([la, lm, lp, proto], *up)
        })
        .collect();
    quorum.sort();
    let qrows: Vec<(Vec<(&str, &str)>, u8)> = quorum
        .iter()
        .map(|(l, up)| {
            (
                ["local_address", "local_mark", "local_port", "proto"].into_iter().zip(l.iter().map(String::as_str)).collect(),
                u8::from(*up),
            )
        })
        .collect();
    family(
        out,
        "director_health_quorum_up",
        "Quorum of a service managed by health checkers: 1 held, 0 lost (the sorry server, if any, serves).",
        "gauge",
        &qrows,
    );
    let c = &h.counters;
    family(out, "director_health_checkers", "Health checkers running.", "gauge", &[(vec![], c.checkers)]);
    family(out, "director_health_probes_total", "Health probes run (connections, requests, script runs).", "counter", &[(vec![], c.probes)]);
    family(out, "director_health_probe_failures_total", "Health probes that failed.", "counter", &[(vec![], c.probe_failures)]);
    family(
        out,
        "director_health_probe_seconds_total",
        "Time spent in health probes, summed (divide by the probes for the mean probe time).",
        "counter",
        &[(vec![], float(c.probe_us as f64 / 1e6))],
    );
    family(
        out,
        "director_health_server_transitions_total",
        "Real servers that went up (back into the pool) or down (out of it, or to weight 0 with inhibit_on_failure).",
        "counter",
        &[(vec![("to", "down")], c.servers_down), (vec![("to", "up")], c.servers_up)],
    );
    family(
        out,
        "director_health_quorum_transitions_total",
        "Quorum gained (up) or lost (down) by managed services.",
        "counter",
        &[(vec![("to", "down")], c.quorum_lost), (vec![("to", "up")], c.quorum_gained)],
    );
    family(
        out,
        "director_health_weight_changes_total",
        "Weights changed by misc_dynamic checkers.",
        "counter",
        &[(vec![], c.weight_changes)],
    );
    family(out, "director_health_scripts_total", "notify and quorum scripts started.", "counter", &[(vec![], c.scripts)]);
    family(
        out,
        "director_health_script_failures_total",
        "notify and quorum scripts that could not start, exited non-zero or were killed.",
        "counter",
        &[(vec![], c.script_failures)],
    );
}

/// The whole exposition.
pub fn render(s: &Sample) -> String {
    let mut out = String::with_capacity(16 * 1024);
    node_ipvs(&mut out, s);
    director_misc(&mut out, s);
    director_ports(&mut out, s);
    director_workers(&mut out, s);
    director_services(&mut out, s);
    director_sync(&mut out, s);
    director_health(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{ServerCounters, WorkerCounters};
    use crate::sample::{PortSample, ServerSample, Totals, WorkerSample};
    use control::model::Protocol;
    use std::net::Ipv4Addr;

    fn srv(h: u8, port: u16, weight: u32, active: u32, inactive: u32) -> ServerSample {
        ServerSample {
            addr: Ipv4Addr::new(198, 51, 100, h),
            port,
            weight,
            counters: ServerCounters { active, inactive, conns: 9, inpkts: 90, inbytes: 9000, ..Default::default() },
        }
    }

    fn svc(key: ServiceKey, servers: Vec<ServerSample>) -> ServiceSample {
        ServiceSample { key, scheduler: "rr".into(), persistent: None, netmask: Ipv4Addr::BROADCAST, servers, counters: ServerCounters::default() }
    }

    fn sample() -> Sample {
        let vip = Ipv4Addr::new(198, 51, 100, 100);
        let mut wc = WorkerCounters::new(1, 2);
        wc.busy_cycles = 1_000;
        wc.poll_cycles = 4_000;
        Sample {
            services: vec![
                svc(ServiceKey::Addr { proto: Protocol::Tcp, addr: vip, port: 80 }, vec![srv(12, 80, 1, 3, 1), srv(11, 80, 2, 0, 4)]),
                svc(ServiceKey::Fwmark(10), vec![srv(11, 0, 1, 5, 0)]),
            ],
            ports: vec![PortSample {
                name: "dpdk0".into(),
                id: 0,
                device: "net_af_packet0".into(),
                stats: Default::default(),
                link: Default::default(),
                mtu: 1500,
                counters: Default::default(),
                drops: [0; DropReason::COUNT],
                kernel: Some(crate::sample::KernelSample { up: true, to_host: 4, ..Default::default() }),
            }],
            workers: vec![WorkerSample { index: 0, lcore: 0, counters: Some(wc), busy_ratio: Some(0.25) }],
            totals: Totals { conns: 27, inpkts: 270, inbytes: 27000 },
            tsc_hz: 1_000,
            sync: Some(crate::sample::SyncSample {
                master: true,
                backup: false,
                counters: control::proto::SyncStatus {
                    entries_sent: 7,
                    messages_sent: 2,
                    drops: crate::sync::drop_reasons().into_iter().map(|r| {
                        let v = u64::from(r == "msg_foreign_syncid") * 3;
                        (r, v)
                    }).collect(),
                    ..Default::default()
                },
            }),
            health: Some(crate::sample::HealthSample {
                checks: vec![crate::sample::CheckSample {
                    service: ServiceKey::Addr { proto: Protocol::Tcp, addr: vip, port: 80 },
                    addr: Ipv4Addr::new(198, 51, 100, 12),
                    port: 80,
                    kind: "TCP_CHECK",
                    index: 1,
                    up: false,
                    transitions: 3,
                    consecutive_failures: 2,
                }],
                quorum: vec![(ServiceKey::Addr { proto: Protocol::Tcp, addr: vip, port: 80 }, true)],
                counters: control::health::board::HealthCounters {
                    checkers: 1,
                    probes: 10,
                    probe_us: 2_500_000,
                    servers_down: 2,
                    servers_up: 1,
                    ..Default::default()
                },
            }),
            ..Default::default()
        }
    }

    /// node_exporter's families, byte for byte as it would expose the same /proc/net/ip_vs.
    #[test]
    fn node_exporter_ipvs_families_exactly() {
        let mut out = String::new();
        node_ipvs(&mut out, &sample());
        let want = "\
# HELP node_ipvs_connections_total The total number of connections made.
# TYPE node_ipvs_connections_total counter
node_ipvs_connections_total 27
# HELP node_ipvs_incoming_packets_total The total number of incoming packets.
# TYPE node_ipvs_incoming_packets_total counter
node_ipvs_incoming_packets_total 270
# HELP node_ipvs_outgoing_packets_total The total number of outgoing packets.
# TYPE node_ipvs_outgoing_packets_total counter
node_ipvs_outgoing_packets_total 0
# HELP node_ipvs_incoming_bytes_total The total amount of incoming data.
# TYPE node_ipvs_incoming_bytes_total counter
node_ipvs_incoming_bytes_total 27000
# HELP node_ipvs_outgoing_bytes_total The total amount of outgoing data.
# TYPE node_ipvs_outgoing_bytes_total counter
node_ipvs_outgoing_bytes_total 0
# HELP node_ipvs_backend_connections_active The current active connections by local and remote address.
# TYPE node_ipvs_backend_connections_active gauge
node_ipvs_backend_connections_active{local_address=\"\",local_mark=\"0000000A\",local_port=\"0\",proto=\"FWM\",remote_address=\"198.51.100.11\",remote_port=\"0\"} 5
node_ipvs_backend_connections_active{local_address=\"198.51.100.100\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"198.51.100.11\",remote_port=\"80\"} 0
node_ipvs_backend_connections_active{local_address=\"198.51.100.100\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"198.51.100.12\",remote_port=\"80\"} 3
# HELP node_ipvs_backend_connections_inactive The current inactive connections by local and remote address.
# TYPE node_ipvs_backend_connections_inactive gauge
node_ipvs_backend_connections_inactive{local_address=\"\",local_mark=\"0000000A\",local_port=\"0\",proto=\"FWM\",remote_address=\"198.51.100.11\",remote_port=\"0\"} 0
node_ipvs_backend_connections_inactive{local_address=\"198.51.100.100\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"198.51.100.11\",remote_port=\"80\"} 4
node_ipvs_backend_connections_inactive{local_address=\"198.51.100.100\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"198.51.100.12\",remote_port=\"80\"} 1
# HELP node_ipvs_backend_weight The current backend weight by local and remote address.
# TYPE node_ipvs_backend_weight gauge
node_ipvs_backend_weight{local_address=\"\",local_mark=\"0000000A\",local_port=\"0\",proto=\"FWM\",remote_address=\"198.51.100.11\",remote_port=\"0\"} 1
node_ipvs_backend_weight{local_address=\"198.51.100.100\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"198.51.100.11\",remote_port=\"80\"} 2
node_ipvs_backend_weight{local_address=\"198.51.100.100\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"198.51.100.12\",remote_port=\"80\"} 1
";
        assert_eq!(out, want);
    }

    #[test]
    fn director_families_have_one_head_each_and_sane_values() {
        let text = render(&sample());
        let mut names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap()).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a family is declared twice");
        assert!(text.contains("director_worker_busy_seconds_total{lcore=\"0\",worker=\"0\"} 1\n"), "{text}");
        assert!(text.contains("director_worker_busy_ratio{lcore=\"0\",worker=\"0\"} 0.25\n"), "{text}");
        assert!(text.contains("director_port_drops_total{port=\"dpdk0\",reason=\"no_service\"} 0\n"), "{text}");
        assert!(text.contains("director_port_drops_total{port=\"dpdk0\",reason=\"drop_packet\"} 0\n"), "{text}");
        assert!(text.contains("director_worker_defense_active{lcore=\"0\",worker=\"0\"} 0\n"), "{text}");
        assert!(text.contains("director_kernel_to_host_packets_total{port=\"dpdk0\"} 4\n"), "{text}");
        let check = "check=\"TCP_CHECK\",index=\"1\",local_address=\"198.51.100.100\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"198.51.100.12\",remote_port=\"80\"";
        assert!(text.contains(&format!("director_health_check_up{{{check}}} 0\n")), "{text}");
        assert!(text.contains(&format!("director_health_check_transitions_total{{{check}}} 3\n")), "{text}");
        assert!(text.contains(&format!("director_health_check_consecutive_failures{{{check}}} 2\n")), "{text}");
        assert!(text.contains("director_health_quorum_up{local_address=\"198.51.100.100\",local_mark=\"\",local_port=\"80\",proto=\"TCP\"} 1\n"), "{text}");
        assert!(text.contains("director_health_probe_seconds_total 2.5\n"), "{text}");
        assert!(text.contains("director_health_server_transitions_total{to=\"down\"} 2\n"), "{text}");
        assert!(text.contains("director_service_info{local_address=\"\",local_mark=\"0000000A\",local_port=\"0\",netmask=\"255.255.255.255\",proto=\"FWM\",scheduler=\"rr\"} 1\n"), "{text}");
        assert!(text.contains("director_sync_daemon_running{role=\"backup\"} 0\ndirector_sync_daemon_running{role=\"master\"} 1\n"), "{text}");
        assert!(text.contains("director_sync_sent_entries_total 7\n"), "{text}");
        assert!(text.contains("director_sync_dropped_total{reason=\"msg_foreign_syncid\"} 3\n"), "{text}");
        assert!(text.contains("director_sync_dropped_total{reason=\"install_table_full\"} 0\n"), "{text}");
        // Every series line belongs to the family declared last (series of a family are contiguous).
        let mut current = "";
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{l}");
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
