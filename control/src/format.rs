//! Rendering of replies: ipvsadm's listings byte for byte (`-L` in all its variants, `-L -c`,
//! `--timeout`, `-S`), iptables-legacy's `-L` and `-S` for the mark rules, sysctl's
//! `NAME = VALUE` lines, lbadm's own `addr`/`neigh`/`link`/`mark` tables, and `--json` for all
//! of them.
//!
//! Invariants: the ipvsadm formats reproduce ipvsadm 1.31's printf formats exactly, trailing
//! padding included (`"  -> %-28s %-7s %-6d %-10u %-10u"`), with its truncations (service
//! names cut to 33 bytes, destinations to 28) and its sort (glibc merge sort with ipvsadm's
//! wrapped-difference comparators, see [`crate::model::ipvsadm_service_cmp`]); `--nosort`
//! keeps the director's order (services by creation, servers newest first). Formatting is pure
//! (names come from a [`Names`]) and never panics.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::iptables::{IptablesListOptions, CHAIN};
use crate::ipvsadm::{DaemonRole, ListOptions};
use crate::model::{
    glibc_msort, ipvsadm_dest_cmp, ipvsadm_service_cmp, AddrConfig, FwdMethod, MarkRule, Protocol,
    ServiceConfig, ServiceKey, Timeouts,
};
use crate::names::Names;
use crate::proto::{
    ConfigDump, ConnInfo, ConnProto, DaemonInfo, LinkInfo, MarkStatus, NeighInfo, ServerStatus,
    ServiceStatus, SyncStatus,
};

/// The IPVS version ipvsadm prints.
pub const IPVS_VERSION: &str = "1.2.1";

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// `addr:port`, numerically or with names (`addrport_to_anyname`).
pub fn addrport(
    addr: Ipv4Addr,
    port: u16,
    proto: Option<Protocol>,
    numeric: bool,
    names: &dyn Names,
) -> String {
    if numeric {
        return format!("{addr}:{port}");
    }
    let host = names.addr_to_host(addr).unwrap_or_else(|| addr.to_string());
    let svc = proto
        .and_then(|p| names.port_to_service(port, p))
        .unwrap_or_else(|| port.to_string());
    format!("{host}:{svc}")
}

/// ipvsadm's large-number field (`print_largenum`): `%9llu` below 10^8, else an 8-wide value
/// with a K/M/G/T suffix; with `--exact` the full number right-aligned in max(9, digits+1).
pub fn largenum(i: u64, exact: bool) -> String {
    if exact {
        let digits = i.to_string().len();
        let width = if digits <= 8 { 9 } else { digits + 1 };
        return format!("{i:>width$}");
    }
    if i < 100_000_000 {
        format!("{i:>9}")
    } else if i < 1_000_000_000 {
        format!("{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        format!("{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        format!("{:>8}G", i / 1_000_000_000)
    } else {
        format!("{:>8}T", i / 1_000_000_000_000)
    }
}

/// Services sorted as ipvsadm sorts them (unless `nosort`), servers likewise.
pub fn sorted_services(services: &[ServiceStatus], nosort: bool) -> Vec<ServiceStatus> {
    let mut v = services.to_vec();
    if nosort {
        return v;
    }
    glibc_msort(&mut v, &|a: &ServiceStatus, b: &ServiceStatus| {
        ipvsadm_service_cmp(&a.config.key, &b.config.key)
    });
    for s in &mut v {
        glibc_msort(&mut s.servers, &|a: &ServerStatus, b: &ServerStatus| {
            ipvsadm_dest_cmp(
                (a.server.addr, a.server.port),
                (b.server.addr, b.server.port),
            )
        });
    }
    v
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fmt {
    Plain,
    Rule,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    TunInfo,
}

struct Style<'a> {
    fmt: Fmt,
    numeric: bool,
    exact: bool,
    names: &'a dyn Names,
    /// `Fmt::Rule` also writes `-x`/`-y` (config files; ipvsadm's `-S` does not).
    thresholds: bool,
}

fn title(fmt: Fmt) -> String {
    const PROT: &str = "Prot LocalAddress:Port";
    const REMOTE: &str = "  -> RemoteAddress:Port";
    match fmt {
        Fmt::Stats => format!("{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}\n", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"),
        Fmt::Rate => format!("{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}\n", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"),
        Fmt::Thresholds => {
            format!("{PROT:<33} {:<10} {:<10} {:<10} {:<10}\n{REMOTE}\n", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
        }
        Fmt::PersistentConn => {
            format!("{PROT:<33} {:<9} {:<11} {:<10} {:<10}\n{REMOTE}\n", "Weight", "PersistConn", "ActiveConn", "InActConn")
        }
        Fmt::TunInfo => format!(
            "{PROT} Scheduler Flags\n{REMOTE}           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        ),
        Fmt::Plain => format!("{PROT} Scheduler Flags\n{REMOTE}           Forward Weight ActiveConn InActConn\n"),
        Fmt::Rule => String::new(),
    }
}

fn service_name(cfg: &ServiceConfig, st: &Style<'_>) -> String {
    match cfg.key {
        // ipvsadm prints the (unsigned) mark with %d.
        ServiceKey::Fwmark(m) => {
            if st.fmt == Fmt::Rule {
                format!("-f {}", m as i32)
            } else {
                format!("FWM  {}", m as i32)
            }
        }
        ServiceKey::Addr { proto, addr, port } => {
            let v = addrport(addr, port, Some(proto), st.numeric, st.names);
            if st.fmt == Fmt::Rule {
                format!("{} {}", proto.option(), v)
            } else {
                truncate(format!("{:<4} {}", proto.name(), v), 33)
            }
        }
    }
}

/// The persistence timeout, its netmask (when not /32) and the one-packet flag of a service,
/// each after a space and its `words`: `[timeout, netmask, ops]`.
fn persistence_words(out: &mut String, cfg: &ServiceConfig, words: [&str; 3]) {
    let [timeout, netmask, ops] = words;
    if let Some(t) = cfg.persistent {
        let _ = write!(out, " {timeout} {t}");
        if cfg.netmask != Ipv4Addr::BROADCAST {
            let _ = write!(out, " {netmask} {}", cfg.netmask);
        }
    }
    if cfg.ops {
        out.push(' ');
        out.push_str(ops);
    }
}

/// Each counter through [`largenum`].
fn push_largenums(out: &mut String, values: impl IntoIterator<Item = u64>, exact: bool) {
    for v in values {
        out.push_str(&largenum(v, exact));
    }
}

fn service_entry(out: &mut String, s: &ServiceStatus, st: &Style<'_>) {
    let cfg = &s.config;
    let name = service_name(cfg, st);
    let ex = st.exact;
    match st.fmt {
        Fmt::Rule => {
            let _ = write!(out, "-A {} -s {}", name, cfg.scheduler);
            persistence_words(out, cfg, ["-p", "-M", "-o"]);
            if !cfg.flags.is_empty() {
                let _ = write!(out, " -b {}", cfg.flags.names(cfg.scheduler));
            }
        }
        Fmt::Stats => {
            let _ = write!(out, "{name:<33}");
            push_largenums(
                out,
                [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes],
                ex,
            );
        }
        Fmt::Rate => {
            let _ = write!(out, "{name:<33}");
            let r = &s.rates;
            push_largenums(out, [r.cps, r.inpps, r.outpps, r.inbps, r.outbps], ex);
        }
        _ => {
            let _ = write!(out, "{} {}", name, cfg.scheduler);
            if !cfg.flags.is_empty() {
                let _ = write!(out, " ({})", cfg.flags.names(cfg.scheduler));
            }
            persistence_words(out, cfg, ["persistent", "mask", "ops"]);
        }
    }
    out.push('\n');

    let proto = cfg.key.protocol();
    for d in &s.servers {
        let e = &d.server;
        let mut dname = addrport(e.addr, e.port, Some(proto), st.numeric, st.names);
        if st.fmt != Fmt::Rule {
            dname = truncate(dname, 28);
        }
        match st.fmt {
            Fmt::Rule => {
                let _ = write!(
                    out,
                    "-a {} -r {} {} -w {}",
                    name,
                    dname,
                    e.fwd.switch(),
                    e.weight
                );
                if e.fwd == FwdMethod::Tunnel {
                    out.push_str(" --tun-type ipip");
                }
                if st.thresholds {
                    if e.u_threshold != 0 {
                        let _ = write!(out, " -x {}", e.u_threshold);
                    }
                    if e.l_threshold != 0 {
                        let _ = write!(out, " -y {}", e.l_threshold);
                    }
                }
                out.push('\n');
            }
            Fmt::Stats => {
                let _ = write!(out, "  -> {dname:<28}");
                push_largenums(
                    out,
                    [d.conns, d.inpkts, d.outpkts, d.inbytes, d.outbytes],
                    ex,
                );
                out.push('\n');
            }
            Fmt::Rate => {
                let r = &d.rates;
                let _ = write!(
                    out,
                    "  -> {:<28} {:>8} {:>8} {:>8}",
                    dname, r.cps, r.inpps, r.outpps
                );
                push_largenums(out, [r.inbps, r.outbps], ex);
                out.push('\n');
            }
            Fmt::Thresholds => {
                let _ = writeln!(
                    out,
                    "  -> {:<28} {:<10} {:<10} {:<10} {:<10}",
                    dname, e.u_threshold, e.l_threshold, d.active, d.inactive
                );
            }
            Fmt::PersistentConn => {
                let _ = writeln!(
                    out,
                    "  -> {:<28} {:<9} {:<11} {:<10} {:<10}",
                    dname, e.weight, d.persist, d.active, d.inactive
                );
            }
            Fmt::TunInfo => {
                let ti = if e.fwd == FwdMethod::Tunnel {
                    "ipip"
                } else {
                    "n/a"
                };
                let _ = writeln!(
                    out,
                    "  -> {:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                    dname,
                    e.fwd.name(),
                    ti,
                    e.weight,
                    d.active,
                    d.inactive
                );
            }
            Fmt::Plain => {
                let _ = writeln!(
                    out,
                    "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                    dname,
                    e.fwd.name(),
                    e.weight,
                    d.active,
                    d.inactive
                );
            }
        }
    }
}

fn list_fmt(opts: &ListOptions) -> Fmt {
    if opts.stats {
        Fmt::Stats
    } else if opts.rate {
        Fmt::Rate
    } else if opts.thresholds {
        Fmt::Thresholds
    } else if opts.persistent_conn {
        Fmt::PersistentConn
    } else if opts.tun_info {
        Fmt::TunInfo
    } else {
        Fmt::Plain
    }
}

/// `ipvsadm -L` (all variants but `-c`, `--timeout`, `--daemon`). With `opts.service` set
/// the version header is omitted, as ipvsadm does for `-L -t VIP:port`.
pub fn list_services(
    table_size: u32,
    services: &[ServiceStatus],
    opts: &ListOptions,
    names: &dyn Names,
) -> String {
    let st = Style {
        fmt: list_fmt(opts),
        numeric: opts.numeric,
        exact: opts.exact,
        names,
        thresholds: false,
    };
    let mut out = String::new();
    if opts.service.is_none() {
        let _ = writeln!(
            out,
            "IP Virtual Server version {IPVS_VERSION} (size={table_size})"
        );
    }
    out.push_str(&title(st.fmt));
    for s in sorted_services(services, opts.nosort) {
        service_entry(&mut out, &s, &st);
    }
    out
}

/// `ipvsadm -S [-n]`: one rule per line, sorted like `-L`; thresholds are not saved.
pub fn save(services: &[ServiceStatus], numeric: bool, names: &dyn Names) -> String {
    let st = Style {
        fmt: Fmt::Rule,
        numeric,
        exact: false,
        names,
        thresholds: false,
    };
    let mut out = String::new();
    for s in sorted_services(services, false) {
        service_entry(&mut out, &s, &st);
    }
    out
}

/// A configuration file (`lbadm save`; read by `director --config` and `lbadm restore`):
/// a comment header, then `addr add` lines, the mark rules as `iptables -t mangle -A
/// PREROUTING …` lines, `sysctl -w` lines for the sysctls that differ from the kernel's
/// defaults, a `--set` line if the timeouts differ from the defaults, then the services as
/// `-S -n` rules. Unlike `-S`, services come in creation order and each service's servers
/// oldest first, so restoring the file into an empty director rebuilds the same kernel order
/// (what rr/wrr and `--nosort` see), and server lines keep their `-x`/`-y` thresholds.
pub fn config_file(dump: &ConfigDump) -> String {
    let mut out = String::from(
        "# director configuration written by `lbadm save`: one lbadm command per line.\n\
         # Load it with `director --config FILE` or `lbadm restore --atomic FILE`.\n",
    );
    for a in &dump.addrs {
        let _ = writeln!(out, "addr add {}/{} dev {}", a.addr, a.prefix_len, a.dev);
    }
    let marks: Vec<MarkStatus> = dump
        .marks
        .iter()
        .map(|r| MarkStatus {
            rule: r.clone(),
            packets: 0,
            bytes: 0,
        })
        .collect();
    // Every rule, without the "-P PREROUTING ACCEPT" policy line.
    let rules = iptables_rules(&marks, &IptablesListOptions::default());
    for line in rules.lines().filter(|l| l.starts_with("-A ")) {
        let _ = writeln!(out, "iptables -t mangle {line}");
    }
    let defaults = crate::sysctl::Sysctls::default();
    for (name, v) in dump.sysctls.entries() {
        if defaults.value(name).as_ref() != Some(&v) {
            // A vector's integers separated by blanks, as `sysctl -w` takes them.
            let v: Vec<String> = v.0.iter().map(i64::to_string).collect();
            let _ = writeln!(out, "sysctl -w {}{name}={}", crate::sysctl::SYSCTL_PREFIX, v.join(" "));
        }
    }
    let t = &dump.timeouts;
    if *t != Timeouts::default() {
        let _ = writeln!(out, "--set {} {} {}", t.tcp, t.tcp_fin, t.udp);
    }
    let st = Style {
        fmt: Fmt::Rule,
        numeric: true,
        exact: false,
        names: &crate::names::NumericOnly,
        thresholds: true,
    };
    for s in &dump.services {
        let status = ServiceStatus {
            config: s.config.clone(),
            servers: s
                .servers
                .iter()
                .rev()
                .map(|srv| ServerStatus {
                    server: srv.clone(),
                    active: 0,
                    inactive: 0,
                    persist: 0,
                    conns: 0,
                    inpkts: 0,
                    inbytes: 0,
                    outpkts: 0,
                    outbytes: 0,
                    rates: Default::default(),
                })
                .collect(),
            conns: 0,
            inpkts: 0,
            inbytes: 0,
            outpkts: 0,
            outbytes: 0,
            rates: Default::default(),
        };
        service_entry(&mut out, &status, &st);
    }
    out.push_str(&crate::health::cli::save_lines(&dump.health));
    out
}

fn conn_proto(p: ConnProto) -> Option<Protocol> {
    match p {
        ConnProto::Tcp => Some(Protocol::Tcp),
        ConnProto::Udp => Some(Protocol::Udp),
        ConnProto::Ip => None,
    }
}

/// `ipvsadm -L -c [-n] [--persistent-conn]`.
pub fn list_connections(conns: &[ConnInfo], opts: &ListOptions, names: &dyn Names) -> String {
    let mut out = connections_header(opts);
    out.push_str(&connection_rows(conns, opts, names));
    out
}

/// The two header lines of `ipvsadm -L -c`.
pub fn connections_header(opts: &ListOptions) -> String {
    let mut out = String::from("IPVS connection entries\n");
    // ipvsadm: "pro expire %-11s %-18s %-18s %s" (+ "%-18s %-16s" for --persistent-conn).
    if opts.persistent_conn {
        out.push_str("pro expire state       source             virtual            destination        pe name          pe_data\n");
    } else {
        out.push_str("pro expire state       source             virtual            destination\n");
    }
    out
}

/// The rows of `ipvsadm -L -c` for `conns` (a listing streamed page by page prints
/// [`connections_header`] once, then this for each page).
pub fn connection_rows(conns: &[ConnInfo], opts: &ListOptions, names: &dyn Names) -> String {
    let mut out = String::new();
    for c in conns {
        let proto = conn_proto(c.proto);
        let cname = addrport(c.caddr, c.cport, proto, opts.numeric, names);
        let vname = addrport(c.vaddr, c.vport, proto, opts.numeric, names);
        let dname = addrport(c.daddr, c.dport, proto, opts.numeric, names);
        let expire = format!("{:02}:{:02}", c.expires_secs / 60, c.expires_secs % 60);
        match (&c.pe, opts.persistent_conn) {
            (Some((pe_name, pe_data)), true) => {
                let _ = writeln!(
                    out,
                    "{:<3} {:<6} {:<11} {:<18} {:<18} {:<16} {:<18} {}",
                    c.proto.name(),
                    expire,
                    c.state,
                    cname,
                    vname,
                    dname,
                    pe_name,
                    pe_data
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
                    c.proto.name(),
                    expire,
                    c.state,
                    cname,
                    vname,
                    dname
                );
            }
        }
    }
    out
}

/// `ipvsadm -L --timeout`.
pub fn timeouts(t: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcp_fin, t.udp
    )
}

/// `ipvsadm -L --daemon` (ipvsadm 1.31 `list_daemon`): one line per running daemon, master
/// first: `ROLE sync daemon (mcast=IF, syncid=N` then `, maxlen=N`, `, group=A`, `, port=N`,
/// `, ttl=N` (each only when non-zero, as ipvsadm prints the kernel's values) and `)`.
pub fn daemons(d: &[DaemonInfo]) -> String {
    let mut out = String::new();
    for x in d {
        let role = match x.role {
            DaemonRole::Master => "master",
            DaemonRole::Backup => "backup",
        };
        let _ = write!(out, "{role} sync daemon (mcast={}, syncid={}", x.mcast_interface, x.syncid);
        if x.sync_maxlen != 0 {
            let _ = write!(out, ", maxlen={}", x.sync_maxlen);
        }
        if !x.mcast_group.is_unspecified() {
            let _ = write!(out, ", group={}", x.mcast_group);
        }
        if x.mcast_port != 0 {
            let _ = write!(out, ", port={}", x.mcast_port);
        }
        if x.mcast_ttl != 0 {
            let _ = write!(out, ", ttl={}", x.mcast_ttl);
        }
        out.push_str(")\n");
    }
    out
}

/// `lbadm sync show`: the daemons as `-L --daemon` prints them, then the counters:
/// ```text
/// master sync daemon (mcast=dpdk0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)
/// sent: entries 120 messages 3 bytes 4344 queued 120
/// received: messages 0 entries 0 applied 0
/// drops: ring_full 2 msg_size 1
/// ```
/// (`drops` only when something was dropped).
pub fn sync_status(s: &SyncStatus) -> String {
    let mut out = daemons(&s.daemons);
    if s.daemons.is_empty() {
        out.push_str("no sync daemon\n");
    }
    let _ = writeln!(
        out,
        "sent: entries {} messages {} bytes {} queued {}",
        s.entries_sent, s.messages_sent, s.bytes_sent, s.entries_queued
    );
    let _ = writeln!(
        out,
        "received: messages {} entries {} applied {}",
        s.messages_received, s.entries_received, s.entries_applied
    );
    if !s.drops.is_empty() {
        out.push_str("drops:");
        for (reason, n) in &s.drops {
            let _ = write!(out, " {reason} {n}");
        }
        out.push('\n');
    }
    out
}

/// Sort key putting `dpdk2` before `dpdk10`.
fn dev_key(dev: &str) -> (String, u64) {
    let digits = dev.len() - dev.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, num) = dev.split_at(dev.len() - digits);
    (prefix.to_string(), num.parse().unwrap_or(0))
}

/// `lbadm addr show`: one line per address, grouped by port (in port order), in the order
/// they were added:
/// ```text
/// DEV      ADDRESS
/// dpdk0    10.0.0.1/24
/// ```
pub fn addrs(list: &[AddrConfig]) -> String {
    let mut v: Vec<&AddrConfig> = list.iter().collect();
    v.sort_by_key(|a| dev_key(&a.dev));
    let mut out = format!("{:<8} {}\n", "DEV", "ADDRESS");
    for a in v {
        let _ = writeln!(out, "{:<8} {}/{}", a.dev, a.addr, a.prefix_len);
    }
    out
}

/// `lbadm neigh show`, sorted by address:
/// ```text
/// ADDRESS         DEV      LLADDR            STATE      AGE
/// 10.0.0.11       dpdk0    52:54:00:12:34:56 REACHABLE  3s
/// ```
pub fn neighs(list: &[NeighInfo]) -> String {
    let mut v: Vec<&NeighInfo> = list.iter().collect();
    v.sort_by_key(|n| (n.addr, dev_key(&n.dev)));
    let mut out = format!(
        "{:<15} {:<8} {:<17} {:<10} {}\n",
        "ADDRESS", "DEV", "LLADDR", "STATE", "AGE"
    );
    for n in v {
        let _ = writeln!(
            out,
            "{:<15} {:<8} {:<17} {:<10} {}s",
            n.addr,
            n.dev,
            n.mac.as_deref().unwrap_or("-"),
            n.state,
            n.age_secs
        );
    }
    out
}

/// `lbadm link show`, `ip -s link` style:
/// ```text
/// dpdk0: state UP mtu 1500 speed 10000Mb/s
///     link/ether 52:54:00:12:34:56
///     RX: packets 10 bytes 1000 missed 0 errors 0 nombuf 0
///     TX: packets 10 bytes 1000 errors 0
///     link: changes 2 down 3s              (when the link ever changed or is down)
///     mbufs: in use 1024 of 16383  connection entries 12   (first port: director-wide)
///     drops: no_service 3 bad_ipv4 1
/// ```
pub fn links(list: &[LinkInfo]) -> String {
    let mut out = String::new();
    for l in list {
        let speed = if l.speed_mbps == 0 {
            "unknown".to_string()
        } else {
            format!("{}Mb/s", l.speed_mbps)
        };
        let _ = writeln!(
            out,
            "{}: state {} mtu {} speed {}",
            l.name,
            if l.link_up { "UP" } else { "DOWN" },
            l.mtu,
            speed
        );
        let _ = writeln!(out, "    link/ether {}", l.mac);
        let _ = writeln!(
            out,
            "    RX: packets {} bytes {} missed {} errors {} nombuf {}",
            l.rx_packets, l.rx_bytes, l.rx_missed, l.rx_errors, l.rx_nombuf
        );
        let _ = writeln!(
            out,
            "    TX: packets {} bytes {} errors {}",
            l.tx_packets, l.tx_bytes, l.tx_errors
        );
        if l.link_changes > 0 || !l.link_up {
            let _ = writeln!(out, "    link: changes {} down {}s", l.link_changes, l.link_down_secs);
        }
        if l.mbufs_total > 0 {
            let _ = writeln!(out, "    mbufs: in use {} of {}  connection entries {}", l.mbufs_in_use, l.mbufs_total, l.conn_entries);
        }
        if let Some(k) = &l.kernel {
            let _ = writeln!(
                out,
                "    kernel: {} ifindex {} state {} mtu {}{}",
                k.name,
                k.ifindex,
                if k.ifindex == 0 { "GONE" } else if k.up { "UP" } else { "DOWN" },
                k.mtu,
                if k.mac_matches { "" } else { " (MAC changed by the host)" }
            );
            let _ = writeln!(
                out,
                "      to host: packets {} errors {}  from host: packets {} malformed {} queue_full {}  recreated {}",
                k.to_host, k.to_host_errors, k.from_host, k.from_host_malformed, k.from_host_full, k.recreated
            );
        }
        if !l.drops.is_empty() {
            out.push_str("    drops:");
            for (reason, n) in &l.drops {
                let _ = write!(out, " {reason} {n}");
            }
            out.push('\n');
        }
    }
    out
}

/// iptables' counter field (`xtables_print_num`): with K/M/G/T suffixes (rounded) unless
/// `exact`; `%5llu ` / `%8llu ` in tables, `%llu ` when `notable`.
fn ipt_num(n: u64, exact: bool, notable: bool) -> String {
    if exact {
        return if notable {
            format!("{n} ")
        } else {
            format!("{n:>8} ")
        };
    }
    if n <= 99_999 {
        return if notable {
            format!("{n} ")
        } else {
            format!("{n:>5} ")
        };
    }
    let mut v = n.saturating_add(500) / 1000;
    let mut unit = 'K';
    for next in ['M', 'G', 'T'] {
        if v <= 9999 {
            break;
        }
        v = v.saturating_add(500) / 1000;
        unit = next;
    }
    if notable {
        format!("{v}{unit} ")
    } else {
        format!("{v:>4}{unit} ")
    }
}

/// `xtables_ipmask_to_numeric`: nothing for /32, else `/LEN`.
fn ipt_mask(len: u8) -> String {
    if len >= 32 {
        String::new()
    } else {
        format!("/{len}")
    }
}

/// The tcp/udp match's `print`: ` tcp dpt:80`, ` udp dpts:1000:2000`, or just ` tcp` for the
/// full range.
fn ipt_match(r: &MarkRule, numeric: bool, names: &dyn Names) -> String {
    let (Some(proto), Some((lo, hi))) = (r.proto, r.dport) else {
        return String::new();
    };
    let port = |p: u16| {
        if numeric {
            p.to_string()
        } else {
            names
                .port_to_service(p, proto)
                .unwrap_or_else(|| p.to_string())
        }
    };
    let mut out = format!(" {}", proto.services_name());
    if lo != 0 || hi != u16::MAX {
        if lo == hi {
            let _ = write!(out, " dpt:{}", port(lo));
        } else {
            let _ = write!(out, " dpts:{}:{}", port(lo), port(hi));
        }
    }
    out
}

/// The MARK target's `print` (revision 2, mask 0xffffffff): `set 0x..`, with libxt_MARK's
/// special cases for 0 (`and 0x0`) and 0xffffffff (`or 0xffffffff`).
fn ipt_target(mark: u32) -> String {
    match mark {
        0 => " MARK and 0x0".to_string(),
        u32::MAX => " MARK or 0xffffffff".to_string(),
        m => format!(" MARK set {m:#x}"),
    }
}

/// `iptables -t mangle -L PREROUTING` as iptables-legacy prints it (`print_header` and
/// `print_firewall`), for `-n`, `-v`, `-x`, `--line-numbers` and a rule number:
/// ```text
/// Chain PREROUTING (policy ACCEPT)
/// target     prot opt source               destination
/// MARK       tcp  --  0.0.0.0/0            192.168.195.200      tcp dpt:80 MARK set 0xa
/// ```
/// (the header lines end with iptables' padding spaces). Only the PREROUTING chain is listed:
/// the director has no other chain. The policy counters are not kept (always 0).
pub fn iptables_list(marks: &[MarkStatus], o: &IptablesListOptions, names: &dyn Names) -> String {
    let mut out = String::new();
    if o.rulenum.is_none() {
        let _ = write!(out, "Chain {CHAIN} (policy ACCEPT");
        if o.verbose {
            let _ = write!(
                out,
                " {}packets, {}bytes",
                ipt_num(0, o.exact, true),
                ipt_num(0, o.exact, true)
            );
        }
        out.push_str(")\n");
        if o.line_numbers {
            let _ = write!(out, "{:<4} ", "num");
        }
        if o.verbose {
            if o.exact {
                let _ = write!(out, "{:>8} {:>10} ", "pkts", "bytes");
            } else {
                let _ = write!(out, "{:>5} {:>5} ", "pkts", "bytes");
            }
        }
        let _ = write!(out, "{:<9} ", "target");
        out.push_str(" prot opt");
        if o.verbose {
            let _ = write!(out, " {:<6} {:<6} ", "in", "out");
        }
        let _ = writeln!(out, " {:<19}  {:<19} ", "source", "destination");
    }
    for (i, m) in marks.iter().enumerate() {
        let num = i + 1;
        if o.rulenum.is_some_and(|n| n as usize != num) {
            continue;
        }
        let r = &m.rule;
        if o.line_numbers {
            let _ = write!(out, "{num:<4} ");
        }
        if o.verbose {
            out.push_str(&ipt_num(m.packets, o.exact, false));
            out.push_str(&ipt_num(m.bytes, o.exact, false));
        }
        let proto = r.proto.map_or("all", Protocol::services_name);
        let _ = write!(out, "{:<9}  {proto:<5}-- ", "MARK");
        if o.verbose {
            let any = if o.numeric { "*" } else { "any" };
            let _ = write!(
                out,
                " {:<6} {:<6} ",
                r.in_dev.as_deref().unwrap_or(any),
                any
            );
        }
        let src = if o.numeric { "0.0.0.0/0" } else { "anywhere" };
        let dst = if r.prefix_len == 0 && !o.numeric {
            "anywhere".to_string()
        } else {
            let host = if o.numeric {
                r.dst.to_string()
            } else {
                names
                    .addr_to_host(r.dst)
                    .unwrap_or_else(|| r.dst.to_string())
            };
            format!("{host}{}", ipt_mask(r.prefix_len))
        };
        let _ = writeln!(
            out,
            " {src:<19}  {dst:<19} {}{}",
            ipt_match(r, o.numeric, names),
            ipt_target(r.mark)
        );
    }
    out
}

/// `iptables -t mangle -S PREROUTING` (iptables-legacy's `print_rule4`), e.g.
/// `-A PREROUTING -d 192.168.195.200/32 -i dpdk0 -p tcp -m tcp --dport 80 -j MARK --set-xmark
/// 0xa/0xffffffff`; `-v` adds `-c PKTS BYTES`. A rule number prints only that rule.
pub fn iptables_rules(marks: &[MarkStatus], o: &IptablesListOptions) -> String {
    let mut out = String::new();
    if o.rulenum.is_none() {
        let _ = write!(out, "-P {CHAIN} ACCEPT");
        if o.verbose {
            out.push_str(" -c 0 0");
        }
        out.push('\n');
    }
    for (i, m) in marks.iter().enumerate() {
        if o.rulenum.is_some_and(|n| n as usize != i + 1) {
            continue;
        }
        let r = &m.rule;
        let _ = write!(out, "-A {CHAIN}");
        if r.prefix_len > 0 {
            let _ = write!(out, " -d {}/{}", r.dst, r.prefix_len);
        }
        if let Some(dev) = &r.in_dev {
            let _ = write!(out, " -i {dev}");
        }
        if let Some(p) = r.proto {
            let _ = write!(out, " -p {}", p.services_name());
            if let Some((lo, hi)) = r.dport {
                let _ = write!(out, " -m {}", p.services_name());
                if lo == hi {
                    let _ = write!(out, " --dport {lo}");
                } else if lo != 0 || hi != u16::MAX {
                    let _ = write!(out, " --dport {lo}:{hi}");
                }
            }
        }
        if o.verbose {
            let _ = write!(out, " -c {} {}", m.packets, m.bytes);
        }
        let _ = writeln!(out, " -j MARK --set-xmark {:#x}/0xffffffff", r.mark);
    }
    out
}

/// `lbadm mark show`: the rules in chain order, numbered from 1 (the numbers `mark del N`,
/// `mark insert N` and `iptables -D/-I PREROUTING N` use), with their counters:
/// ```text
/// NUM  IN       DESTINATION        PROTO DPORT       MARK          PACKETS        BYTES
/// 1    *        192.168.195.200/32 tcp   80          10                  0            0
/// ```
pub fn marks(list: &[MarkStatus]) -> String {
    let row =
        |num: &str, dev: &str, dst: &str, proto: &str, port: &str, mark: &str, p: &str, b: &str| {
            format!(
                "{num:<4} {dev:<8} {dst:<18} {proto:<5} {port:<11} {mark:<10} {p:>10} {b:>12}\n"
            )
        };
    let mut out = row(
        "NUM",
        "IN",
        "DESTINATION",
        "PROTO",
        "DPORT",
        "MARK",
        "PACKETS",
        "BYTES",
    );
    for (i, m) in list.iter().enumerate() {
        let r = &m.rule;
        let port = match r.dport {
            None => "*".to_string(),
            Some((lo, hi)) if lo == hi => lo.to_string(),
            Some((lo, hi)) => format!("{lo}:{hi}"),
        };
        out.push_str(&row(
            &(i + 1).to_string(),
            r.in_dev.as_deref().unwrap_or("*"),
            &format!("{}/{}", r.dst, r.prefix_len),
            r.proto.map_or("all", Protocol::services_name),
            &port,
            &r.mark.to_string(),
            &m.packets.to_string(),
            &m.bytes.to_string(),
        ));
    }
    out
}

/// sysctl(8) output: `net.ipv4.vs.NAME = VALUE` per line, or only the values (`-n`).
pub fn sysctls<V: std::fmt::Display>(entries: &[(&str, V)], values_only: bool) -> String {
    entries
        .iter()
        .map(|(name, v)| {
            if values_only {
                format!("{v}\n")
            } else {
                format!("{}{name} = {v}\n", crate::sysctl::SYSCTL_PREFIX)
            }
        })
        .collect()
}

/// The `--json` rendering of sysctls: `{"net.ipv4.vs.NAME": VALUE, ...}` (sorted keys).
pub fn json_sysctls<V: Serialize>(entries: &[(&str, V)]) -> String {
    let map: std::collections::BTreeMap<String, &V> = entries
        .iter()
        .map(|(n, v)| (format!("{}{n}", crate::sysctl::SYSCTL_PREFIX), v))
        .collect();
    json(&map)
}

/// Pretty JSON with a trailing newline (`--json`).
pub fn json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut s =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// Streams what [`json`] prints for a list, element by element: `start` before the first
/// page, `element` for each element (with `first` for the first of all), `end` after the last.
pub mod json_stream {
    use serde::Serialize;

    /// Text before the elements.
    pub fn start() -> &'static str {
        "["
    }

    /// One element, indented as `to_string_pretty` indents a list's elements.
    pub fn element<T: Serialize>(value: &T, first: bool) -> String {
        let body = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        let mut out = String::from(if first { "\n" } else { ",\n" });
        for (i, line) in body.lines().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str("  ");
            out.push_str(line);
        }
        out
    }

    /// Text after the elements (`any`: some element was printed).
    pub fn end(any: bool) -> &'static str {
        if any {
            "\n]\n"
        } else {
            "]\n"
        }
    }
}

/// The `--json` rendering of a service listing: `{"table_size": N, "services": [...]}` with
/// services and servers in display order.
pub fn json_services(table_size: u32, services: &[ServiceStatus], nosort: bool) -> String {
    #[derive(Serialize)]
    struct Out {
        table_size: u32,
        services: Vec<ServiceStatus>,
    }
    json(&Out {
        table_size,
        services: sorted_services(services, nosort),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SchedFlags, Scheduler, ServerConfig, ServerId};
    use crate::names::{NumericOnly, SystemNames};
    use crate::proto::Rates;

    fn srv(
        id: u32,
        a: [u8; 4],
        port: u16,
        weight: u32,
        active: u64,
        inactive: u64,
    ) -> ServerStatus {
        ServerStatus {
            server: ServerConfig {
                id: ServerId(id),
                addr: Ipv4Addr::from(a),
                port,
                fwd: FwdMethod::Route,
                weight,
                u_threshold: 0,
                l_threshold: 0,
            },
            active,
            inactive,
            persist: 0,
            conns: 0,
            inpkts: 0,
            inbytes: 0,
            outpkts: 0,
            outbytes: 0,
            rates: Rates::default(),
        }
    }

    fn svc(
        key: ServiceKey,
        sched: Scheduler,
        persistent: Option<u32>,
        servers: Vec<ServerStatus>,
    ) -> ServiceStatus {
        ServiceStatus {
            config: ServiceConfig {
                key,
                scheduler: sched,
                flags: SchedFlags::default(),
                persistent,
                netmask: Ipv4Addr::BROADCAST,
                ops: false,
            },
            servers,
            conns: 0,
            inpkts: 0,
            inbytes: 0,
            outpkts: 0,
            outbytes: 0,
            rates: Rates::default(),
        }
    }

    /// The example of ipvs-semantics.md §7.3-7.6, in the director's (unsorted) order.
    fn example() -> Vec<ServiceStatus> {
        let vip = [192, 168, 1, 100];
        let fw = {
            let mut s = svc(
                ServiceKey::Fwmark(7),
                Scheduler::Sh,
                Some(360),
                vec![srv(5, [10, 0, 0, 31], 0, 2, 3, 5)],
            );
            s.config.flags = SchedFlags {
                flag1: true,
                flag2: true,
                flag3: false,
            };
            s
        };
        let udp = svc(
            ServiceKey::Addr {
                proto: Protocol::Udp,
                addr: vip.into(),
                port: 53,
            },
            Scheduler::Rr,
            None,
            vec![srv(4, [10, 0, 0, 21], 53, 1, 0, 118)],
        );
        let mut tcp = svc(
            ServiceKey::Addr {
                proto: Protocol::Tcp,
                addr: vip.into(),
                port: 80,
            },
            Scheduler::Wlc,
            Some(600),
            // Kernel order: newest first.
            vec![
                srv(1, [10, 0, 0, 12], 80, 0, 0, 31),
                srv(0, [10, 0, 0, 11], 80, 1, 12, 40),
            ],
        );
        tcp.config.netmask = Ipv4Addr::new(255, 255, 255, 0);
        vec![fw, udp, tcp]
    }

    fn numeric() -> ListOptions {
        ListOptions {
            numeric: true,
            ..Default::default()
        }
    }

    #[test]
    fn golden_list_numeric() {
        let want = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.1.100:80 wlc persistent 600 mask 255.255.255.0
  -> 10.0.0.11:80                 Route   1      12         40        
  -> 10.0.0.12:80                 Route   0      0          31        
UDP  192.168.1.100:53 rr
  -> 10.0.0.21:53                 Route   1      0          118       
FWM  7 sh (sh-fallback,sh-port) persistent 360
  -> 10.0.0.31:0                  Route   2      3          5         
";
        assert_eq!(
            list_services(4096, &example(), &numeric(), &NumericOnly),
            want
        );
    }

    #[test]
    fn golden_seed_listing() {
        // From the operator notes: `ipvsadm -ln` of a persistent fwmark service.
        let want = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
FWM  10 wlc persistent 360
  -> 192.168.195.170:0            Route   1      0          0         
  -> 192.168.195.171:0            Route   1      0          0         
";
        let s = svc(
            ServiceKey::Fwmark(10),
            Scheduler::Wlc,
            Some(360),
            vec![
                srv(1, [192, 168, 195, 171], 0, 1, 0, 0),
                srv(0, [192, 168, 195, 170], 0, 1, 0, 0),
            ],
        );
        assert_eq!(list_services(4096, &[s], &numeric(), &NumericOnly), want);
    }

    #[test]
    fn golden_save() {
        let want = "-A -t 192.168.1.100:80 -s wlc -p 600 -M 255.255.255.0
-a -t 192.168.1.100:80 -r 10.0.0.11:80 -g -w 1
-a -t 192.168.1.100:80 -r 10.0.0.12:80 -g -w 0
-A -u 192.168.1.100:53 -s rr
-a -u 192.168.1.100:53 -r 10.0.0.21:53 -g -w 1
-A -f 7 -s sh -p 360 -b sh-fallback,sh-port
-a -f 7 -r 10.0.0.31:0 -g -w 2
";
        assert_eq!(save(&example(), true, &NumericOnly), want);
    }

    #[test]
    fn golden_stats() {
        let mut v = example();
        v.truncate(0);
        let mut s = example().pop().unwrap();
        s.servers
            .retain(|d| d.server.addr == Ipv4Addr::new(10, 0, 0, 11));
        s.conns = 1990;
        s.inpkts = 102_421;
        s.inbytes = 8_211_334;
        s.servers[0].conns = 1000;
        s.servers[0].inpkts = 52311;
        s.servers[0].inbytes = 4_210_332;
        v.push(s);
        let want = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.168.1.100:80                 1990   102421        0  8211334        0
  -> 10.0.0.11:80                     1000    52311        0  4210332        0
";
        let opts = ListOptions {
            numeric: true,
            stats: true,
            ..Default::default()
        };
        assert_eq!(list_services(4096, &v, &opts, &NumericOnly), want);
    }

    #[test]
    fn golden_persistent_conn() {
        let mut s = example().pop().unwrap();
        s.servers
            .retain(|d| d.server.addr == Ipv4Addr::new(10, 0, 0, 11));
        s.servers[0].persist = 3;
        let want = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  192.168.1.100:80 wlc persistent 600 mask 255.255.255.0
  -> 10.0.0.11:80                 1         3           12         40        
";
        let opts = ListOptions {
            numeric: true,
            persistent_conn: true,
            ..Default::default()
        };
        assert_eq!(list_services(4096, &[s], &opts, &NumericOnly), want);
    }

    #[test]
    fn thresholds_rate_tuninfo_and_single_service() {
        let mut s = example().pop().unwrap();
        s.servers.truncate(1);
        s.servers[0].server.u_threshold = 100;
        s.servers[0].server.l_threshold = 50;
        let opts = ListOptions {
            numeric: true,
            thresholds: true,
            service: Some(s.config.key),
            ..Default::default()
        };
        let want = "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n  -> RemoteAddress:Port\nTCP  192.168.1.100:80 wlc persistent 600 mask 255.255.255.0\n  -> 10.0.0.12:80                 100        50         0          31        \n";
        assert_eq!(
            list_services(4096, std::slice::from_ref(&s), &opts, &NumericOnly),
            want
        );

        s.rates = Rates {
            cps: 12,
            inpps: 340,
            outpps: 0,
            inbps: 123_456_789,
            outbps: 0,
        };
        s.servers[0].rates = Rates {
            cps: 1,
            inpps: 2,
            outpps: 0,
            inbps: 1_000_000_000,
            outbps: 0,
        };
        let opts = ListOptions {
            numeric: true,
            rate: true,
            ..Default::default()
        };
        let want = "IP Virtual Server version 1.2.1 (size=7)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  192.168.1.100:80                   12      340        0  123456K        0
  -> 10.0.0.12:80                        1        2        0    1000M        0
";
        assert_eq!(
            list_services(7, std::slice::from_ref(&s), &opts, &NumericOnly),
            want
        );

        let opts = ListOptions {
            numeric: true,
            tun_info: true,
            ..Default::default()
        };
        let want = "IP Virtual Server version 1.2.1 (size=7)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn
TCP  192.168.1.100:80 wlc persistent 600 mask 255.255.255.0
  -> 10.0.0.12:80                 Route   n/a           0      0          31        
";
        assert_eq!(list_services(7, &[s], &opts, &NumericOnly), want);
    }

    #[test]
    fn largenum_suffixes_and_exact() {
        assert_eq!(largenum(0, false), "        0");
        assert_eq!(largenum(99_999_999, false), " 99999999");
        assert_eq!(largenum(100_000_000, false), "  100000K");
        assert_eq!(largenum(999_999_999, false), "  999999K");
        assert_eq!(largenum(1_000_000_000, false), "    1000M");
        assert_eq!(largenum(99_999_999_999, false), "   99999M");
        assert_eq!(largenum(100_000_000_000, false), "     100G");
        assert_eq!(largenum(100_000_000_000_000, false), "     100T");
        assert_eq!(largenum(u64::MAX, false), "18446744T");
        assert_eq!(largenum(12, true), "       12");
        assert_eq!(largenum(123_456_789, true), " 123456789");
    }

    #[test]
    fn golden_connections() {
        let vip = Ipv4Addr::new(192, 168, 1, 100);
        let c = |proto, exp, state: &str, ca: [u8; 4], cp, va: Ipv4Addr, vp, da: [u8; 4], dp| {
            ConnInfo {
                proto,
                expires_secs: exp,
                state: state.to_string(),
                caddr: ca.into(),
                cport: cp,
                vaddr: va,
                vport: vp,
                daddr: da.into(),
                dport: dp,
                pe: None,
            }
        };
        let conns = vec![
            c(
                ConnProto::Tcp,
                597,
                "ASSURED",
                [10, 9, 8, 0],
                0,
                vip,
                80,
                [10, 0, 0, 11],
                80,
            ),
            c(
                ConnProto::Tcp,
                898,
                "ESTABLISHED",
                [10, 9, 8, 7],
                51234,
                vip,
                80,
                [10, 0, 0, 11],
                80,
            ),
            c(
                ConnProto::Tcp,
                59,
                "SYN_RECV",
                [10, 9, 8, 9],
                40000,
                vip,
                80,
                [10, 0, 0, 11],
                80,
            ),
            c(
                ConnProto::Tcp,
                112,
                "FIN_WAIT",
                [10, 9, 8, 7],
                51200,
                vip,
                80,
                [10, 0, 0, 11],
                80,
            ),
            c(
                ConnProto::Udp,
                299,
                "UDP",
                [10, 1, 1, 5],
                33000,
                vip,
                53,
                [10, 0, 0, 21],
                53,
            ),
            c(
                ConnProto::Ip,
                359,
                "NONE",
                [10, 1, 1, 5],
                0,
                Ipv4Addr::new(0, 0, 0, 7),
                0,
                [10, 0, 0, 31],
                0,
            ),
        ];
        let want = "IPVS connection entries
pro expire state       source             virtual            destination
TCP 09:57  ASSURED     10.9.8.0:0         192.168.1.100:80   10.0.0.11:80
TCP 14:58  ESTABLISHED 10.9.8.7:51234     192.168.1.100:80   10.0.0.11:80
TCP 00:59  SYN_RECV    10.9.8.9:40000     192.168.1.100:80   10.0.0.11:80
TCP 01:52  FIN_WAIT    10.9.8.7:51200     192.168.1.100:80   10.0.0.11:80
UDP 04:59  UDP         10.1.1.5:33000     192.168.1.100:53   10.0.0.21:53
IP  05:59  NONE        10.1.1.5:0         0.0.0.7:0          10.0.0.31:0
";
        assert_eq!(list_connections(&conns, &numeric(), &NumericOnly), want);
        // Streamed page by page (as lbadm pages a large table): the same text and JSON.
        let mut paged = connections_header(&numeric());
        let mut js = json_stream::start().to_string();
        for (i, page) in conns.chunks(4).enumerate() {
            paged.push_str(&connection_rows(page, &numeric(), &NumericOnly));
            for (j, c) in page.iter().enumerate() {
                js.push_str(&json_stream::element(c, i == 0 && j == 0));
            }
        }
        js.push_str(json_stream::end(true));
        assert_eq!(paged, want);
        assert_eq!(js, json(&conns));
        assert_eq!(format!("{}{}", json_stream::start(), json_stream::end(false)), json(&Vec::<ConnInfo>::new()));
        let opts = ListOptions {
            numeric: true,
            persistent_conn: true,
            ..Default::default()
        };
        let out = list_connections(&conns[..1], &opts, &NumericOnly);
        assert_eq!(
            out.lines().nth(1).unwrap(),
            "pro expire state       source             virtual            destination        pe name          pe_data"
        );
        // Minutes may exceed 99.
        let long = c(
            ConnProto::Tcp,
            6000 * 60 + 5,
            "ESTABLISHED",
            [1, 1, 1, 1],
            1,
            vip,
            80,
            [2, 2, 2, 2],
            80,
        );
        assert!(
            list_connections(&[long], &numeric(), &NumericOnly).contains("TCP 6000:05 ESTABLISHED")
        );
    }

    #[test]
    fn names_and_truncation() {
        let names = SystemNames::from_texts(
            "http 80/tcp www\n",
            "192.168.1.100 a-very-long-host-name.example.com\n10.0.0.11 rs1\n",
        );
        let mut s = example().pop().unwrap();
        s.servers.truncate(1);
        s.servers[0].server.addr = Ipv4Addr::new(10, 0, 0, 11);
        let out = list_services(4096, &[s.clone()], &ListOptions::default(), &names);
        let lines: Vec<&str> = out.lines().collect();
        // "TCP  " + host + ":http" cut to 33 bytes.
        assert_eq!(
            lines[3],
            "TCP  a-very-long-host-name.exampl wlc persistent 600 mask 255.255.255.0"
        );
        assert_eq!(
            lines[4],
            "  -> rs1:http                     Route   0      0          31        "
        );
        assert_eq!(
            save(&[s], false, &names).lines().next().unwrap(),
            "-A -t a-very-long-host-name.example.com:http -s wlc -p 600 -M 255.255.255.0"
        );
    }

    #[test]
    fn sort_quirk_and_nosort() {
        let a = svc(
            ServiceKey::Addr {
                proto: Protocol::Tcp,
                addr: [10, 0, 0, 1].into(),
                port: 80,
            },
            Scheduler::Rr,
            None,
            vec![],
        );
        let b = svc(
            ServiceKey::Addr {
                proto: Protocol::Tcp,
                addr: [192, 168, 0, 1].into(),
                port: 80,
            },
            Scheduler::Rr,
            None,
            vec![],
        );
        let sorted = sorted_services(&[a.clone(), b.clone()], false);
        assert_eq!(
            sorted[0].config.key, b.config.key,
            "ipvsadm's wrapped comparator puts 192.168.x first"
        );
        let unsorted = sorted_services(&[a.clone(), b], true);
        assert_eq!(unsorted[0].config.key, a.config.key);
        // Kernel order (newest first) is kept with --nosort.
        let ex = example();
        let opts = ListOptions {
            numeric: true,
            nosort: true,
            ..Default::default()
        };
        let out = list_services(1, &ex, &opts, &NumericOnly);
        let l: Vec<&str> = out.lines().collect();
        assert!(l[3].starts_with("FWM  7"));
        assert!(l[7].starts_with("TCP  192.168.1.100:80"));
        assert!(l[8].starts_with("  -> 10.0.0.12:80"));
    }

    #[test]
    fn fwmark_printed_as_signed_like_ipvsadm() {
        let s = svc(
            ServiceKey::Fwmark(4_294_967_295),
            Scheduler::Rr,
            None,
            vec![],
        );
        assert!(
            list_services(1, std::slice::from_ref(&s), &numeric(), &NumericOnly)
                .contains("FWM  -1 rr\n")
        );
        assert_eq!(save(&[s], true, &NumericOnly), "-A -f -1 -s rr\n");
    }

    #[test]
    fn flag3_on_sh_prints_empty_parens() {
        let mut s = svc(ServiceKey::Fwmark(1), Scheduler::Sh, None, vec![]);
        s.config.flags.flag3 = true;
        assert!(
            list_services(1, std::slice::from_ref(&s), &numeric(), &NumericOnly)
                .contains("FWM  1 sh ()\n")
        );
        assert_eq!(save(&[s], true, &NumericOnly), "-A -f 1 -s sh -b \n");
    }

    #[test]
    fn director_tables() {
        let a = vec![
            AddrConfig {
                addr: [192, 168, 1, 100].into(),
                prefix_len: 32,
                dev: "dpdk10".into(),
            },
            AddrConfig {
                addr: [10, 0, 0, 1].into(),
                prefix_len: 24,
                dev: "dpdk2".into(),
            },
        ];
        assert_eq!(
            addrs(&a),
            "DEV      ADDRESS\ndpdk2    10.0.0.1/24\ndpdk10   192.168.1.100/32\n"
        );
        let n = vec![
            NeighInfo {
                addr: [10, 0, 0, 12].into(),
                mac: None,
                dev: "dpdk0".into(),
                state: "INCOMPLETE".into(),
                age_secs: 1,
            },
            NeighInfo {
                addr: [10, 0, 0, 11].into(),
                mac: Some("52:54:00:12:34:56".into()),
                dev: "dpdk0".into(),
                state: "REACHABLE".into(),
                age_secs: 3,
            },
        ];
        assert_eq!(
            neighs(&n),
            "ADDRESS         DEV      LLADDR            STATE      AGE\n\
             10.0.0.11       dpdk0    52:54:00:12:34:56 REACHABLE  3s\n\
             10.0.0.12       dpdk0    -                 INCOMPLETE 1s\n"
        );
        let l = vec![LinkInfo {
            name: "dpdk0".into(),
            mac: "52:54:00:12:34:56".into(),
            link_up: true,
            speed_mbps: 10000,
            mtu: 1500,
            rx_packets: 10,
            rx_bytes: 1000,
            tx_packets: 9,
            tx_bytes: 900,
            rx_missed: 1,
            rx_errors: 0,
            tx_errors: 0,
            rx_nombuf: 0,
            drops: vec![("no_service".into(), 3)],
            link_changes: 0,
            link_down_secs: 0,
            mbufs_in_use: 0,
            mbufs_total: 0,
            conn_entries: 0,
            kernel: None,
        }];
        assert_eq!(
            links(&l),
            "dpdk0: state UP mtu 1500 speed 10000Mb/s\n    link/ether 52:54:00:12:34:56\n    RX: packets 10 bytes 1000 missed 1 errors 0 nombuf 0\n    TX: packets 9 bytes 900 errors 0\n    drops: no_service 3\n"
        );
        let j: serde_json::Value = serde_json::from_str(&json(&l)).unwrap();
        assert_eq!(j[0]["name"], "dpdk0");
        let j: serde_json::Value =
            serde_json::from_str(&json_services(4096, &example(), false)).unwrap();
        assert_eq!(j["table_size"], 4096);
        assert_eq!(j["services"][0]["config"]["key"]["addr"]["port"], 80);
        assert_eq!(
            j["services"][0]["servers"][0]["server"]["addr"],
            "10.0.0.11"
        );
    }

    #[test]
    fn timeouts_line() {
        assert_eq!(
            timeouts(&Timeouts::default()),
            "Timeout (tcp tcpfin udp): 900 120 300\n"
        );
    }

    fn mark_example() -> Vec<MarkStatus> {
        let st = |dev: Option<&str>,
                  dst: [u8; 4],
                  len: u8,
                  proto: Option<Protocol>,
                  dport: Option<(u16, u16)>,
                  mark: u32,
                  packets: u64,
                  bytes: u64| MarkStatus {
            rule: MarkRule {
                in_dev: dev.map(str::to_string),
                dst: Ipv4Addr::from(dst),
                prefix_len: len,
                proto,
                dport,
                mark,
            },
            packets,
            bytes,
        };
        let tcp = Some(Protocol::Tcp);
        vec![
            st(
                None,
                [192, 168, 195, 200],
                32,
                tcp,
                Some((80, 80)),
                10,
                0,
                0,
            ),
            st(
                None,
                [192, 168, 195, 200],
                32,
                tcp,
                Some((443, 443)),
                10,
                123_456,
                98_765_432,
            ),
            st(
                Some("dpdk0"),
                [172, 16, 100, 6],
                32,
                tcp,
                Some((80, 80)),
                1,
                5,
                300,
            ),
            st(
                None,
                [10, 1, 2, 0],
                24,
                Some(Protocol::Udp),
                Some((1000, 2000)),
                0,
                0,
                0,
            ),
            st(None, [0, 0, 0, 0], 0, None, None, u32::MAX, 0, 0),
            st(
                Some("dpdk1"),
                [10, 0, 0, 1],
                32,
                tcp,
                Some((0, 65535)),
                7,
                0,
                0,
            ),
        ]
    }

    /// Expected texts generated independently from iptables-legacy's printf formats
    /// (`print_header`, `print_firewall`, `print_num`, libxt_tcp/udp and libxt_MARK `print`).
    #[test]
    fn iptables_list_golden() {
        let m = mark_example();
        let numeric = IptablesListOptions {
            numeric: true,
            ..Default::default()
        };
        assert_eq!(
            iptables_list(&m, &numeric, &NumericOnly),
            "Chain PREROUTING (policy ACCEPT)\n\
             target     prot opt source               destination         \n\
             MARK       tcp  --  0.0.0.0/0            192.168.195.200      tcp dpt:80 MARK set 0xa\n\
             MARK       tcp  --  0.0.0.0/0            192.168.195.200      tcp dpt:443 MARK set 0xa\n\
             MARK       tcp  --  0.0.0.0/0            172.16.100.6         tcp dpt:80 MARK set 0x1\n\
             MARK       udp  --  0.0.0.0/0            10.1.2.0/24          udp dpts:1000:2000 MARK and 0x0\n\
             MARK       all  --  0.0.0.0/0            0.0.0.0/0            MARK or 0xffffffff\n\
             MARK       tcp  --  0.0.0.0/0            10.0.0.1             tcp MARK set 0x7\n"
        );
        let verbose = IptablesListOptions {
            numeric: true,
            verbose: true,
            line_numbers: true,
            ..Default::default()
        };
        assert_eq!(
            iptables_list(&m, &verbose, &NumericOnly),
            "Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)\n\
             num   pkts bytes target     prot opt in     out     source               destination         \n\
             1        0     0 MARK       tcp  --  *      *       0.0.0.0/0            192.168.195.200      tcp dpt:80 MARK set 0xa\n\
             2     123K   99M MARK       tcp  --  *      *       0.0.0.0/0            192.168.195.200      tcp dpt:443 MARK set 0xa\n\
             3        5   300 MARK       tcp  --  dpdk0  *       0.0.0.0/0            172.16.100.6         tcp dpt:80 MARK set 0x1\n\
             4        0     0 MARK       udp  --  *      *       0.0.0.0/0            10.1.2.0/24          udp dpts:1000:2000 MARK and 0x0\n\
             5        0     0 MARK       all  --  *      *       0.0.0.0/0            0.0.0.0/0            MARK or 0xffffffff\n\
             6        0     0 MARK       tcp  --  dpdk1  *       0.0.0.0/0            10.0.0.1             tcp MARK set 0x7\n"
        );
        let exact = IptablesListOptions {
            numeric: true,
            verbose: true,
            exact: true,
            ..Default::default()
        };
        assert_eq!(
            iptables_list(&m[..3], &exact, &NumericOnly),
            "Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)\n    pkts      bytes target     prot opt in     out     source               destination         \n       0        0 MARK       tcp  --  *      *       0.0.0.0/0            192.168.195.200      tcp dpt:80 MARK set 0xa\n  123456 98765432 MARK       tcp  --  *      *       0.0.0.0/0            192.168.195.200      tcp dpt:443 MARK set 0xa\n       5      300 MARK       tcp  --  dpdk0  *       0.0.0.0/0            172.16.100.6         tcp dpt:80 MARK set 0x1\n"
        );
        // One rule: no header.
        let one = IptablesListOptions {
            numeric: true,
            rulenum: Some(3),
            ..Default::default()
        };
        assert_eq!(
            iptables_list(&m, &one, &NumericOnly),
            "MARK       tcp  --  0.0.0.0/0            172.16.100.6         tcp dpt:80 MARK set 0x1\n"
        );
        // Without -n: "anywhere", host and service names, "any" interfaces.
        let names = SystemNames::from_texts("http 80/tcp www\n", "192.168.195.200 www.example\n");
        let text = iptables_list(
            &m,
            &IptablesListOptions {
                verbose: true,
                ..Default::default()
            },
            &names,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "    0     0 MARK       tcp  --  any    any     anywhere             www.example          tcp dpt:http MARK set 0xa"
        );
        assert_eq!(
            lines[6],
            "    0     0 MARK       all  --  any    any     anywhere             anywhere             MARK or 0xffffffff"
        );
        // Empty chain.
        assert_eq!(
            iptables_list(&[], &numeric, &NumericOnly),
            "Chain PREROUTING (policy ACCEPT)\ntarget     prot opt source               destination         \n"
        );
        assert_eq!(ipt_num(99_999, false, false), "99999 ");
        assert_eq!(ipt_num(100_000, false, false), " 100K ");
        assert_eq!(ipt_num(9_999_499, false, false), "9999K ");
        assert_eq!(ipt_num(9_999_500, false, false), "  10M ");
        assert_eq!(ipt_num(u64::MAX, false, false), "18446744T ");
    }

    #[test]
    fn iptables_rules_and_mark_table() {
        let m = mark_example();
        assert_eq!(
            iptables_rules(&m, &IptablesListOptions::default()),
            "-P PREROUTING ACCEPT\n\
             -A PREROUTING -d 192.168.195.200/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0xa/0xffffffff\n\
             -A PREROUTING -d 192.168.195.200/32 -p tcp -m tcp --dport 443 -j MARK --set-xmark 0xa/0xffffffff\n\
             -A PREROUTING -d 172.16.100.6/32 -i dpdk0 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffffffff\n\
             -A PREROUTING -d 10.1.2.0/24 -p udp -m udp --dport 1000:2000 -j MARK --set-xmark 0x0/0xffffffff\n\
             -A PREROUTING -j MARK --set-xmark 0xffffffff/0xffffffff\n\
             -A PREROUTING -d 10.0.0.1/32 -i dpdk1 -p tcp -m tcp -j MARK --set-xmark 0x7/0xffffffff\n"
        );
        assert_eq!(
            iptables_rules(
                &m[1..2],
                &IptablesListOptions {
                    verbose: true,
                    ..Default::default()
                }
            ),
            "-P PREROUTING ACCEPT -c 0 0\n\
             -A PREROUTING -d 192.168.195.200/32 -p tcp -m tcp --dport 443 -c 123456 98765432 -j MARK --set-xmark 0xa/0xffffffff\n"
        );
        assert_eq!(
            marks(&m[1..5]),
            "NUM  IN       DESTINATION        PROTO DPORT       MARK          PACKETS        BYTES\n\
             1    *        192.168.195.200/32 tcp   443         10             123456     98765432\n\
             2    dpdk0    172.16.100.6/32    tcp   80          1                   5          300\n\
             3    *        10.1.2.0/24        udp   1000:2000   0                   0            0\n\
             4    *        0.0.0.0/0          all   *           4294967295          0            0\n"
        );
        let j: serde_json::Value = serde_json::from_str(&json(&m)).unwrap();
        assert_eq!(j[1]["rule"]["dport"][0], 443);
        assert_eq!(j[1]["bytes"], 98_765_432);
    }

    #[test]
    fn daemon_lines_are_ipvsadms() {
        let m = DaemonInfo {
            role: DaemonRole::Master,
            mcast_interface: "dpdk0".into(),
            syncid: 0,
            sync_maxlen: 1472,
            mcast_group: Ipv4Addr::new(224, 0, 0, 81),
            mcast_port: 8848,
            mcast_ttl: 1,
        };
        let b = DaemonInfo {
            role: DaemonRole::Backup,
            mcast_interface: "eth1".into(),
            syncid: 9,
            sync_maxlen: 0,
            mcast_group: Ipv4Addr::UNSPECIFIED,
            mcast_port: 0,
            mcast_ttl: 0,
        };
        assert_eq!(
            daemons(&[m.clone(), b]),
            "master sync daemon (mcast=dpdk0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
             backup sync daemon (mcast=eth1, syncid=9)\n"
        );
        assert_eq!(daemons(&[]), "");
        let s = SyncStatus {
            daemons: vec![m],
            entries_queued: 5,
            entries_sent: 4,
            messages_sent: 1,
            bytes_sent: 152,
            drops: vec![("ring_full".into(), 1)],
            ..SyncStatus::default()
        };
        assert_eq!(
            sync_status(&s),
            "master sync daemon (mcast=dpdk0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
             sent: entries 4 messages 1 bytes 152 queued 5\n\
             received: messages 0 entries 0 applied 0\n\
             drops: ring_full 1\n"
        );
        assert!(sync_status(&SyncStatus::default()).starts_with("no sync daemon\n"));
    }

    #[test]
    fn sysctl_lines() {
        let s = crate::sysctl::Sysctls::default();
        assert_eq!(
            sysctls(&s.entries(), false),
            "net.ipv4.vs.am_droprate = 10\nnet.ipv4.vs.amemthresh = 1024\n\
             net.ipv4.vs.backup_only = 0\nnet.ipv4.vs.cache_bypass = 0\nnet.ipv4.vs.conn_reuse_mode = 1\n\
             net.ipv4.vs.drop_entry = 0\nnet.ipv4.vs.drop_packet = 0\n\
             net.ipv4.vs.expire_nodest_conn = 0\nnet.ipv4.vs.expire_quiescent_template = 0\n\
             net.ipv4.vs.pmtu_disc = 1\nnet.ipv4.vs.schedule_icmp = 0\n\
             net.ipv4.vs.secure_tcp = 0\nnet.ipv4.vs.sloppy_tcp = 0\n\
             net.ipv4.vs.sync_persist_mode = 0\nnet.ipv4.vs.sync_refresh_period = 0\n\
             net.ipv4.vs.sync_retries = 0\nnet.ipv4.vs.sync_threshold = 3\t50\n\
             net.ipv4.vs.sync_version = 1\n"
        );
        assert_eq!(sysctls(&[("sloppy_tcp", 1)], true), "1\n");
        let j: serde_json::Value = serde_json::from_str(&json_sysctls(&s.entries())).unwrap();
        assert_eq!(j["net.ipv4.vs.conn_reuse_mode"], 1);
        assert_eq!(j["net.ipv4.vs.sync_threshold"], serde_json::json!([3, 50]));
        assert_eq!(j.as_object().unwrap().len(), 18);
    }
}
