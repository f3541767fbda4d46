//! The configuration model (virtual services, real servers, port addresses, timeouts, mark
//! rules, IPVS sysctls) and the authoritative config engine [`Config::apply`], which implements
//! IPVS/ipvsadm semantics (and iptables' for mark rules, sysctl's for sysctls).
//!
//! Invariants kept by `Config` (nothing outside this module can mutate it except through
//! [`Config::apply`] / [`Config::reclaim_trash`]):
//! - Every live or trashed real server owns one [`ServerId`] slot `< max_servers`; a slot is
//!   owned by at most one server. A server keeps its id for its whole life, across `-e` edits,
//!   `-E` edits of its service, and deletion into the trash and resurrection from it, so
//!   per-server counters and connection entries keyed by `ServerId` survive edits.
//! - Deleted servers (by `-d`, `-D`, `-C`) go to a trash list, as in the kernel. Re-adding the
//!   same (service, address, port) while it is there resurrects the same `ServerId` with the new
//!   parameters. A trash slot is freed only by `reclaim_trash`, once it has been unused for 120 s.
//!   Every fresh allocation of a slot gets a new `incarnation` number (see [`Slot`]), so a
//!   consumer can tell a resurrected server (same incarnation, keep its counters) from a reused
//!   slot (new incarnation, reset them).
//! - Each service's server list is in KERNEL ORDER: a newly added or resurrected server is
//!   inserted at the front (newest first); `-e` keeps the position. Schedulers (rr, wrr, ties of
//!   lc/wlc) depend on this order; listings sort separately (see [`ipvsadm_service_cmp`]).
//! - Address services whose servers forward by direct routing or tunnelling have
//!   `server.port == service port` (ipvsadm forces it; the engine enforces it again).
//! - Mark rules ([`MarkRule`], see [`crate::marks`] for their semantics and
//!   [`evaluate_marks`] for the reference evaluation) are kept in chain order: appended at the
//!   end, inserted at a 1-based position, deleted by identity (first identical rule) or by
//!   position. Stored rules are normalized (address masked to the prefix), structurally valid,
//!   name a known port in `in_dev` (if any), and number at most [`MAX_MARK_RULES`]. `-C`
//!   (`Clear`) does not touch them: they belong to "iptables", not to ipvsadm.
//! - [`Sysctls`] always hold valid values (0/1 switches, `conn_reuse_mode` 0..=3).
//! - `generation` increases by one on every successful change, and only then; a failed
//!   `apply` leaves the whole `Config` unchanged (checks run before any mutation).
//!
//! Concurrency: `Config` is plain data, owned by the control thread. The dataplane never sees it
//! directly: the control server hands `&Config` to `Backend::publish`, which compiles an
//! immutable snapshot for the workers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::CtlError;
pub use crate::marks::{evaluate_marks, MarkRule, MAX_MARK_RULES};
pub use crate::sysctl::Sysctls;

/// Persistence timeout used when `-p` is given without a value (ipvsadm 1.31: 360 s).
pub const DEFAULT_PERSISTENT_TIMEOUT: u32 = 360;
/// Largest persistence timeout and `--set` value ipvsadm accepts (31 days).
pub const MAX_TIMEOUT: u32 = 86_400 * 31;
/// A trashed server's slot is reclaimed after it has been unused for this long.
pub const TRASH_IDLE: Duration = Duration::from_secs(120);
/// Largest weight ipvsadm accepts.
pub const MAX_WEIGHT: u32 = 65_535;
/// Largest threshold ipvsadm accepts (INT_MAX).
pub const MAX_THRESHOLD: u32 = i32::MAX as u32;
/// Scheduler names longer than this are truncated by ipvsadm (IP_VS_SCHEDNAME_MAXLEN - 1).
pub const SCHED_NAME_MAX: usize = 15;

/// Transport protocol of an address service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// IP protocol number (6 or 17).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// Name as printed by `ipvsadm -L` ("TCP", "UDP").
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// The ipvsadm option selecting this protocol ("-t", "-u").
    pub fn option(self) -> &'static str {
        match self {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
        }
    }

    /// Lower-case name as used in /etc/services ("tcp", "udp").
    pub fn services_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The protocol with this IP protocol number (6 or 17).
    pub fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// Identity of a virtual service.
///
/// `Ord` is a total order matching ipvsadm's listing order for ordinary values: address
/// services first (TCP before UDP, then address, then port), fwmark services after them by
/// mark. ipvsadm itself compares with wrapped 32-bit signed differences, which is not a total
/// order (addresses more than 2^31 apart, marks above 2^31); listings reproduce that quirk
/// exactly with [`ipvsadm_service_cmp`] and [`glibc_msort`], not with this `Ord`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKey {
    /// `-t|-u VIP:port`; port 0 is the "any port" (persistent-only) service.
    Addr {
        /// Transport protocol.
        proto: Protocol,
        /// Virtual IP.
        addr: Ipv4Addr,
        /// Virtual port (0 = any port).
        port: u16,
    },
    /// `-f MARK` (mark 1..=u32::MAX).
    Fwmark(u32),
}

impl ServiceKey {
    /// True for a firewall-mark service.
    pub fn is_fwmark(&self) -> bool {
        matches!(self, ServiceKey::Fwmark(_))
    }

    /// The virtual port (0 for fwmark services).
    pub fn port(&self) -> u16 {
        match self {
            ServiceKey::Addr { port, .. } => *port,
            ServiceKey::Fwmark(_) => 0,
        }
    }

    /// The protocol ipvsadm associates with the service (fwmark services carry a dummy TCP).
    pub fn protocol(&self) -> Protocol {
        match self {
            ServiceKey::Addr { proto, .. } => *proto,
            ServiceKey::Fwmark(_) => Protocol::Tcp,
        }
    }

    /// The virtual address (0.0.0.0 for fwmark services).
    pub fn addr(&self) -> Ipv4Addr {
        match self {
            ServiceKey::Addr { addr, .. } => *addr,
            ServiceKey::Fwmark(_) => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The fwmark (0 for address services).
    pub fn fwmark(&self) -> u32 {
        match self {
            ServiceKey::Addr { .. } => 0,
            ServiceKey::Fwmark(m) => *m,
        }
    }
}

impl fmt::Display for ServiceKey {
    /// ipvsadm-style numeric name: `TCP 10.0.0.1:80` or `FWM 7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { proto, addr, port } => {
                write!(f, "{} {}:{}", proto.name(), addr, port)
            }
            ServiceKey::Fwmark(m) => write!(f, "FWM {m}"),
        }
    }
}

/// ipvsadm's service comparator (`ipvs_cmp_services`), reproduced with its quirks: each field
/// difference is a wrapped 32-bit subtraction read as a signed int, so addresses more than 2^31
/// apart (and marks above 2^31) sort "backwards". Returns <0, 0, >0 like C.
pub fn ipvsadm_service_cmp(a: &ServiceKey, b: &ServiceKey) -> i32 {
    let r = a.fwmark().wrapping_sub(b.fwmark()) as i32;
    if r != 0 {
        return r;
    }
    let r = i32::from(a.protocol().number()) - i32::from(b.protocol().number());
    if r != 0 {
        return r;
    }
    let r = u32::from(a.addr()).wrapping_sub(u32::from(b.addr())) as i32;
    if r != 0 {
        return r;
    }
    i32::from(a.port()) - i32::from(b.port())
}

/// ipvsadm's destination comparator (`ipvs_cmp_dests`): wrapped address difference, then port.
pub fn ipvsadm_dest_cmp(a: (Ipv4Addr, u16), b: (Ipv4Addr, u16)) -> i32 {
    let r = u32::from(a.0).wrapping_sub(u32::from(b.0)) as i32;
    if r != 0 {
        return r;
    }
    i32::from(a.1) - i32::from(b.1)
}

/// Sorts `v` exactly like glibc's `qsort` (a top-down merge sort taking from the left run while
/// `cmp(left, right) <= 0`), so that ipvsadm's non-transitive comparators give the same order
/// as on a glibc system. Never panics, whatever `cmp` returns.
pub fn glibc_msort<T: Clone>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    glibc_msort(&mut v[..n1], cmp);
    glibc_msort(&mut v[n1..], cmp);
    let mut merged: Vec<T> = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            merged.push(v[i].clone());
            i += 1;
        } else {
            merged.push(v[j].clone());
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..n1]);
    merged.extend_from_slice(&v[j..n]);
    v.clone_from_slice(&merged);
}

/// Scheduling algorithm of a virtual service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection (ipvsadm's default).
    #[default]
    Wlc,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Source hashing.
    Sh,
    /// Destination hashing.
    Dh,
    /// Maglev hashing.
    Mh,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
}

impl Scheduler {
    /// Every scheduler the director implements.
    pub const ALL: [Scheduler; 11] = [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Sed,
        Scheduler::Nq,
        Scheduler::Sh,
        Scheduler::Dh,
        Scheduler::Mh,
        Scheduler::Fo,
        Scheduler::Ovf,
    ];

    /// The ipvsadm name ("wlc", ...).
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Sh => "sh",
            Scheduler::Dh => "dh",
            Scheduler::Mh => "mh",
            Scheduler::Fo => "fo",
            Scheduler::Ovf => "ovf",
        }
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheduler {
    type Err = CtlError;

    /// Exact (case-sensitive) name; unknown names give the kernel's ENOENT message.
    fn from_str(s: &str) -> Result<Self, CtlError> {
        Scheduler::ALL
            .iter()
            .copied()
            .find(|sch| sch.name() == s)
            .ok_or_else(CtlError::scheduler_not_found)
    }
}

/// Scheduler flags (`-b`). The kernel stores three generic bits; `sh` and `mh` give the first
/// two a name (flag-1 = sh-fallback / mh-fallback, flag-2 = sh-port / mh-port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchedFlags {
    /// IP_VS_SVC_F_SCHED1 (sh-fallback, mh-fallback).
    pub flag1: bool,
    /// IP_VS_SVC_F_SCHED2 (sh-port, mh-port).
    pub flag2: bool,
    /// IP_VS_SVC_F_SCHED3.
    pub flag3: bool,
}

impl SchedFlags {
    /// True when no flag is set.
    pub fn is_empty(&self) -> bool {
        !(self.flag1 || self.flag2 || self.flag3)
    }

    /// `sh-fallback` / `mh-fallback`: probe other buckets when the hashed server is unusable.
    pub fn fallback(&self) -> bool {
        self.flag1
    }

    /// `sh-port` / `mh-port`: include the client's source port in the hash.
    pub fn port(&self) -> bool {
        self.flag2
    }

    /// Parses ipvsadm's comma-separated `-b` list for scheduler `sched` (the name as given,
    /// possibly unknown). Errors: "invalid scheduler flag `X'", "incompatible scheduler flag
    /// `X'" (exit status 2).
    pub fn parse(list: &str, sched: &str) -> Result<SchedFlags, CtlError> {
        let mut flags = SchedFlags::default();
        let mut any = false;
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            any = true;
            let incompatible = |want: &str| -> Result<(), CtlError> {
                if sched != want {
                    Err(CtlError::input(format!(
                        "incompatible scheduler flag `{flag}'"
                    )))
                } else {
                    Ok(())
                }
            };
            match flag {
                "flag-1" => flags.flag1 = true,
                "flag-2" => flags.flag2 = true,
                "flag-3" => flags.flag3 = true,
                "sh-fallback" => {
                    flags.flag1 = true;
                    incompatible("sh")?;
                }
                "sh-port" => {
                    flags.flag2 = true;
                    incompatible("sh")?;
                }
                "mh-fallback" => {
                    flags.flag1 = true;
                    incompatible("mh")?;
                }
                "mh-port" => {
                    flags.flag2 = true;
                    incompatible("mh")?;
                }
                _ => return Err(CtlError::input(format!("invalid scheduler flag `{flag}'"))),
            }
        }
        if !any {
            return Err(CtlError::input(format!("invalid scheduler flag `{list}'")));
        }
        Ok(flags)
    }

    /// The comma-separated names ipvsadm prints for scheduler `sched` (may be empty even when
    /// flags are set, e.g. flag-3 on `sh`: ipvsadm then prints `()` / `-b `).
    pub fn names(&self, sched: Scheduler) -> String {
        let mut out: Vec<&str> = Vec::new();
        match sched {
            Scheduler::Sh | Scheduler::Mh => {
                let sh = sched == Scheduler::Sh;
                if self.flag1 {
                    out.push(if sh { "sh-fallback" } else { "mh-fallback" });
                }
                if self.flag2 {
                    out.push(if sh { "sh-port" } else { "mh-port" });
                }
            }
            _ => {
                if self.flag1 {
                    out.push("flag-1");
                }
                if self.flag2 {
                    out.push("flag-2");
                }
                if self.flag3 {
                    out.push("flag-3");
                }
            }
        }
        out.join(",")
    }
}

/// A virtual service as requested by `-A`/`-E` (before the engine validates the scheduler).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Service identity.
    pub key: ServiceKey,
    /// Scheduler name as given (validated by the engine: unknown → ENOENT).
    pub scheduler: String,
    /// Scheduler flags.
    pub flags: SchedFlags,
    /// Persistence timeout in seconds, `None` = not persistent.
    pub persistent: Option<u32>,
    /// Persistence granularity mask (default 255.255.255.255).
    pub netmask: Ipv4Addr,
    /// One-packet scheduling (`-o`).
    pub ops: bool,
    /// Persistence engine (`--pe`); the director has none, so `Some` is refused.
    pub pe: Option<String>,
}

impl ServiceSpec {
    /// A spec with ipvsadm's defaults (wlc, not persistent, /32 mask).
    pub fn new(key: ServiceKey) -> Self {
        ServiceSpec {
            key,
            scheduler: Scheduler::Wlc.name().to_string(),
            flags: SchedFlags::default(),
            persistent: None,
            netmask: Ipv4Addr::BROADCAST,
            ops: false,
            pe: None,
        }
    }
}

/// A configured virtual service (validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// Service identity.
    pub key: ServiceKey,
    /// Scheduler.
    pub scheduler: Scheduler,
    /// Scheduler flags.
    pub flags: SchedFlags,
    /// Persistence timeout in seconds (1..=2678400), `None` = not persistent.
    pub persistent: Option<u32>,
    /// Persistence granularity mask applied to the client address.
    pub netmask: Ipv4Addr,
    /// One-packet scheduling.
    pub ops: bool,
}

/// Forwarding method of a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FwdMethod {
    /// Direct routing (`-g`, the default and the only method the director forwards with).
    Route,
    /// Masquerading / NAT (`-m`).
    Masq,
    /// IP-in-IP tunnelling (`-i`).
    Tunnel,
    /// A local real server (IPVS's LOCALNODE: 127.0.0.0/8 or an address of the director).
    /// Never configured as such: listings show it for a `-g` server at a local address, as
    /// the kernel reports LOCALNODE for one; `-S` writes it back as `-g`.
    Local,
}

impl FwdMethod {
    /// Name in the Forward column ("Route", "Masq", "Tunnel", "Local").
    pub fn name(self) -> &'static str {
        match self {
            FwdMethod::Route => "Route",
            FwdMethod::Masq => "Masq",
            FwdMethod::Tunnel => "Tunnel",
            FwdMethod::Local => "Local",
        }
    }

    /// The ipvsadm switch ("-g", "-m", "-i"; ipvsadm writes a local node as "-g").
    pub fn switch(self) -> &'static str {
        match self {
            FwdMethod::Route | FwdMethod::Local => "-g",
            FwdMethod::Masq => "-m",
            FwdMethod::Tunnel => "-i",
        }
    }
}

/// Dense, stable real-server slot index (`< max_servers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServerId(pub u32);

impl ServerId {
    /// The slot index as `usize`, for indexing per-server arrays.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A real server as requested by `-a`/`-e` (everything but its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    /// Real server address.
    pub addr: Ipv4Addr,
    /// Real server port (forced to the service port for DR/tunnel on address services).
    pub port: u16,
    /// Forwarding method.
    pub fwd: FwdMethod,
    /// Weight (0 = quiesced).
    pub weight: u32,
    /// Upper connection threshold (0 = off).
    pub u_threshold: u32,
    /// Lower connection threshold (0 = off).
    pub l_threshold: u32,
}

impl ServerSpec {
    /// A spec with ipvsadm's defaults (DR, weight 1, no thresholds).
    pub fn new(addr: Ipv4Addr, port: u16) -> Self {
        ServerSpec {
            addr,
            port,
            fwd: FwdMethod::Route,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        }
    }
}

/// A configured real server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// Stable slot id.
    pub id: ServerId,
    /// Real server address.
    pub addr: Ipv4Addr,
    /// Real server port.
    pub port: u16,
    /// Forwarding method.
    pub fwd: FwdMethod,
    /// Weight (0 = quiesced: no new connections, persistent clients still served).
    pub weight: u32,
    /// Upper connection threshold (0 = off).
    pub u_threshold: u32,
    /// Lower connection threshold (0 = off).
    pub l_threshold: u32,
}

impl ServerConfig {
    fn from_spec(id: ServerId, s: &ServerSpec) -> Self {
        ServerConfig {
            id,
            addr: s.addr,
            port: s.port,
            fwd: s.fwd,
            weight: s.weight,
            u_threshold: s.u_threshold,
            l_threshold: s.l_threshold,
        }
    }

    fn update(&mut self, s: &ServerSpec) {
        self.fwd = s.fwd;
        self.weight = s.weight;
        self.u_threshold = s.u_threshold;
        self.l_threshold = s.l_threshold;
    }
}

/// An IPv4 address on a DPDK port (answered for ARP and ICMP echo by the director; there is no
/// kernel stack behind it). VIPs are added as /32.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AddrConfig {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length (0..=32), defining the on-link subnet.
    pub prefix_len: u8,
    /// Port name (`dpdk0`, ...).
    pub dev: String,
}

/// The three timeouts ipvsadm can set (`--set tcp tcpfin udp`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// TCP ESTABLISHED idle timeout (default 900).
    pub tcp: u32,
    /// TCP FIN_WAIT timeout (default 120).
    pub tcp_fin: u32,
    /// UDP timeout (default 300).
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300,
        }
    }
}

/// A configuration change, the input of [`Config::apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigCommand {
    /// `-A`: add a virtual service.
    AddService(ServiceSpec),
    /// `-E`: replace a virtual service's settings (omitted fields take their defaults).
    EditService(ServiceSpec),
    /// `-D`: delete a virtual service (its servers go to the trash).
    DeleteService(ServiceKey),
    /// `-C`: delete every virtual service.
    Clear,
    /// `-a`: add a real server.
    AddServer {
        /// The service.
        service: ServiceKey,
        /// The server.
        server: ServerSpec,
    },
    /// `-e`: replace a real server's settings.
    EditServer {
        /// The service.
        service: ServiceKey,
        /// The server (identified by address and port).
        server: ServerSpec,
    },
    /// `-d`: delete a real server (it goes to the trash).
    DeleteServer {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: Ipv4Addr,
        /// Server port.
        port: u16,
    },
    /// `--set tcp tcpfin udp` (0 = leave unchanged).
    SetTimeouts(Timeouts),
    /// `addr add A/LEN dev X`.
    AddAddr(AddrConfig),
    /// `addr del A[/LEN] dev X` (`prefix_len: None` matches any prefix).
    DelAddr {
        /// The address.
        addr: Ipv4Addr,
        /// Prefix length to match, or any.
        prefix_len: Option<u8>,
        /// Port name.
        dev: String,
    },
    /// `iptables -t mangle -A PREROUTING ... -j MARK --set-mark N`, `mark add`: append a mark
    /// rule. Errors: structural ([`MarkRule::check`], exit 2), unknown `in_dev` (exit 2),
    /// table full (255).
    AddMark(MarkRule),
    /// `iptables -t mangle -I PREROUTING [POS] ...`, `mark insert`: insert a mark rule so it
    /// becomes rule `pos` (1-based; 1 = first). `pos` 0 → "Invalid rule number" (2); `pos`
    /// beyond the end + 1 → "iptables: Index of insertion too big." (1).
    InsertMark {
        /// 1-based position the rule will have.
        pos: u32,
        /// The rule.
        rule: MarkRule,
    },
    /// `iptables -t mangle -D PREROUTING ...`, `mark del`: delete the first rule identical to
    /// this one (after normalization); none → "iptables: Bad rule (does a matching rule exist
    /// in that chain?)." (exit 1).
    DelMark(MarkRule),
    /// `iptables -t mangle -D PREROUTING POS`, `mark del POS`: delete rule `pos` (1-based);
    /// out of range → "iptables: Index of deletion too big." (1).
    DelMarkAt(u32),
    /// `iptables -t mangle -F [PREROUTING]`, `mark flush`: delete every mark rule.
    FlushMarks,
    /// `sysctl -w net.ipv4.vs.NAME=VALUE`: set one IPVS sysctl (`name` short or full; errors in
    /// sysctl's words, exit 255, see [`Sysctls::set`]).
    SetSysctl {
        /// Sysctl name (`sloppy_tcp` or `net.ipv4.vs.sloppy_tcp`).
        name: String,
        /// New value.
        value: i64,
    },
    /// `sysctl -w net.ipv4.vs.NAME="V1 V2"`: set one IPVS sysctl from several integers (a
    /// vector such as `sync_threshold`; see [`Sysctls::set_values`]).
    SetSysctlValues {
        /// Sysctl name.
        name: String,
        /// The integers.
        values: Vec<i64>,
    },
    /// `lbadm check add`: a health checker on a real server (the service becomes managed by
    /// its checkers, see [`crate::health::model`]).
    AddCheck(crate::health::AddCheck),
    /// `lbadm check del`: remove a server's checkers.
    DelCheck(crate::health::DelCheck),
    /// `lbadm check service`: quorum, hysteresis, sorry server and quorum scripts of a
    /// service (full replacement; defaults for what is not given).
    SetServiceHealth {
        /// The service.
        service: ServiceKey,
        /// Its settings.
        health: crate::health::ServiceHealth,
    },
}

/// A virtual service with its real servers in kernel order (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service settings.
    pub config: ServiceConfig,
    /// Real servers, newest first (the order schedulers iterate).
    pub servers: Vec<ServerConfig>,
    seq: u64,
}

impl Service {
    /// Creation sequence number (services created earlier have smaller numbers).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The server with this address and port.
    pub fn server(&self, addr: Ipv4Addr, port: u16) -> Option<&ServerConfig> {
        self.servers
            .iter()
            .find(|s| s.addr == addr && s.port == port)
    }
}

/// State of one real-server slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Unused.
    Free,
    /// A live server of `service`.
    Live {
        /// Owning service.
        service: ServiceKey,
        /// Changes whenever the slot is freshly allocated (not on resurrection).
        incarnation: u64,
    },
    /// A deleted server waiting in the trash (its connections still refer to it).
    Trash {
        /// The service it belonged to.
        service: ServiceKey,
        /// Same numbering as `Live`.
        incarnation: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TrashEntry {
    service: ServiceKey,
    server: ServerConfig,
    idle_since: Instant,
}

/// The whole director configuration and its engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    services: BTreeMap<ServiceKey, Service>,
    addrs: Vec<AddrConfig>,
    timeouts: Timeouts,
    marks: Vec<MarkRule>,
    sysctls: Sysctls,
    generation: u64,
    port_names: Vec<String>,
    max_servers: u32,
    slots: Vec<Slot>,
    free: BTreeSet<u32>,
    trash: Vec<TrashEntry>,
    next_incarnation: u64,
    next_seq: u64,
    health: crate::health::HealthConfig,
}

fn is_unicast(a: Ipv4Addr) -> bool {
    // inet_addr_type(): 0.0.0.0/8 and 255.255.255.255 are "broadcast", 224/4 multicast.
    !(a.octets()[0] == 0 || a.is_broadcast() || a.is_multicast())
}

impl Config {
    /// An empty configuration for a director with these port names (`dpdk0`, ...) and room
    /// for `max_servers` real servers (live + trash).
    pub fn new(port_names: Vec<String>, max_servers: u32) -> Self {
        Config {
            services: BTreeMap::new(),
            addrs: Vec::new(),
            timeouts: Timeouts::default(),
            marks: Vec::new(),
            sysctls: Sysctls::default(),
            generation: 0,
            port_names,
            max_servers,
            slots: Vec::new(),
            free: BTreeSet::new(),
            trash: Vec::new(),
            next_incarnation: 1,
            next_seq: 0,
            health: crate::health::HealthConfig::default(),
        }
    }

    /// Health-check state: managed services, their configured servers and checkers.
    pub fn health(&self) -> &crate::health::HealthConfig {
        &self.health
    }

    pub(crate) fn health_mut(&mut self) -> &mut crate::health::HealthConfig {
        &mut self.health
    }

    /// Counts a change made outside [`Config::apply_raw`] (health state).
    pub(crate) fn bump_generation(&mut self) {
        self.generation += 1;
    }

    /// True if `AddServer` of every (address, port) in `servers` to `key` would find a slot
    /// (a trashed server of the same service comes back in its own slot).
    pub(crate) fn slots_available(&self, key: &ServiceKey, servers: &[(Ipv4Addr, u16)]) -> bool {
        let fresh = servers
            .iter()
            .filter(|(a, p)| {
                !self
                    .trash
                    .iter()
                    .any(|t| t.service == *key && t.server.addr == *a && t.server.port == *p)
            })
            .count();
        let free = self.free.len() + (self.max_servers as usize).saturating_sub(self.slots.len());
        fresh <= free
    }

    /// Checks a real-server spec the way `-a`/`-e` do (weight, thresholds, address).
    pub(crate) fn validate_server(spec: &ServerSpec) -> Result<(), CtlError> {
        Self::check_server_spec(spec)
    }

    /// Number of successful changes so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Size of the ServerId space.
    pub fn max_servers(&self) -> u32 {
        self.max_servers
    }

    /// The director's port names, in port-id order.
    pub fn port_names(&self) -> &[String] {
        &self.port_names
    }

    /// Services in key order ([`ServiceKey`]'s `Ord`).
    pub fn services(&self) -> impl Iterator<Item = &Service> + '_ {
        self.services.values()
    }

    /// Services in creation order (ipvsadm `--nosort`).
    pub fn services_in_creation_order(&self) -> Vec<&Service> {
        let mut v: Vec<&Service> = self.services.values().collect();
        v.sort_by_key(|s| s.seq);
        v
    }

    /// Number of virtual services.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// One service.
    pub fn service(&self, key: &ServiceKey) -> Option<&Service> {
        self.services.get(key)
    }

    /// True when a real server at `addr` is a local node (IPVS LOCALNODE): 127.0.0.0/8 or
    /// one of the director's own addresses.
    pub fn is_local_addr(&self, addr: Ipv4Addr) -> bool {
        addr.is_loopback() || self.addrs.iter().any(|a| a.addr == addr)
    }

    /// Addresses on the director's ports, in the order they were added.
    pub fn addrs(&self) -> &[AddrConfig] {
        &self.addrs
    }

    /// The `--set` timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Mark rules in chain order (evaluate with [`evaluate_marks`]: last match wins).
    pub fn marks(&self) -> &[MarkRule] {
        &self.marks
    }

    /// The IPVS sysctls.
    pub fn sysctls(&self) -> &Sysctls {
        &self.sysctls
    }

    /// State of slot `id` (`Free` for ids never used or out of range).
    pub fn slot(&self, id: ServerId) -> Slot {
        self.slots.get(id.index()).copied().unwrap_or(Slot::Free)
    }

    /// The live server with this id, with its service.
    pub fn server(&self, id: ServerId) -> Option<(&Service, &ServerConfig)> {
        match self.slot(id) {
            Slot::Live { service, .. } => {
                let svc = self.services.get(&service)?;
                let srv = svc.servers.iter().find(|s| s.id == id)?;
                Some((svc, srv))
            }
            _ => None,
        }
    }

    /// Trashed servers with the service they belonged to.
    pub fn trash(&self) -> impl Iterator<Item = (&ServiceKey, &ServerConfig)> + '_ {
        self.trash.iter().map(|t| (&t.service, &t.server))
    }

    /// Number of live real servers over all services.
    pub fn live_server_count(&self) -> usize {
        self.services.values().map(|s| s.servers.len()).sum()
    }

    /// Applies one change with ipvsadm/kernel semantics, stamping trash entries with the
    /// current time. On error nothing changes.
    pub fn apply(&mut self, cmd: &ConfigCommand) -> Result<(), CtlError> {
        self.apply_at(cmd, Instant::now())
    }

    /// [`Config::apply`] with an explicit clock (trash entries are stamped with `now`).
    /// Server commands on a service managed by health checkers, and the checker commands,
    /// go through [`crate::health::model::apply`].
    pub fn apply_at(&mut self, cmd: &ConfigCommand, now: Instant) -> Result<(), CtlError> {
        crate::health::model::apply(self, cmd, now)
    }

    /// The change itself, without health semantics (used by [`crate::health::model`]).
    pub(crate) fn apply_raw(&mut self, cmd: &ConfigCommand, now: Instant) -> Result<(), CtlError> {
        match cmd {
            ConfigCommand::AddCheck(_)
            | ConfigCommand::DelCheck(_)
            | ConfigCommand::SetServiceHealth { .. } => crate::health::model::apply(self, cmd, now),
            ConfigCommand::AddService(spec) => self.add_service(spec),
            ConfigCommand::EditService(spec) => self.edit_service(spec),
            ConfigCommand::DeleteService(key) => self.delete_service(key, now),
            ConfigCommand::Clear => {
                for (key, svc) in std::mem::take(&mut self.services) {
                    for server in svc.servers {
                        self.put_in_trash(key, server, now);
                    }
                }
                self.generation += 1;
                Ok(())
            }
            ConfigCommand::AddServer { service, server } => self.add_server(service, server),
            ConfigCommand::EditServer { service, server } => self.edit_server(service, server),
            ConfigCommand::DeleteServer {
                service,
                addr,
                port,
            } => self.delete_server(service, *addr, *port, now),
            ConfigCommand::SetTimeouts(t) => {
                for v in [t.tcp, t.tcp_fin, t.udp] {
                    if v > MAX_TIMEOUT {
                        return Err(CtlError::invalid_timeout(&v.to_string()));
                    }
                }
                if t.tcp != 0 {
                    self.timeouts.tcp = t.tcp;
                }
                if t.tcp_fin != 0 {
                    self.timeouts.tcp_fin = t.tcp_fin;
                }
                if t.udp != 0 {
                    self.timeouts.udp = t.udp;
                }
                self.generation += 1;
                Ok(())
            }
            ConfigCommand::AddAddr(a) => self.add_addr(a),
            ConfigCommand::DelAddr {
                addr,
                prefix_len,
                dev,
            } => self.del_addr(*addr, *prefix_len, dev),
            ConfigCommand::AddMark(rule) => {
                let rule = self.check_mark(rule)?;
                self.marks.push(rule);
                self.generation += 1;
                Ok(())
            }
            ConfigCommand::InsertMark { pos, rule } => {
                let rule = self.check_mark(rule)?;
                let idx = match *pos {
                    0 => return Err(CtlError::invalid_rule_number("0")),
                    p if p as usize > self.marks.len() + 1 => {
                        return Err(CtlError::mark_insert_index_too_big())
                    }
                    p => p as usize - 1,
                };
                self.marks.insert(idx, rule);
                self.generation += 1;
                Ok(())
            }
            ConfigCommand::DelMark(rule) => {
                rule.check()?;
                if let Some(dev) = &rule.in_dev {
                    self.check_mark_dev(dev)?;
                }
                let rule = rule.normalized();
                let pos = self
                    .marks
                    .iter()
                    .position(|r| *r == rule)
                    .ok_or_else(CtlError::mark_rule_not_found)?;
                self.marks.remove(pos);
                self.generation += 1;
                Ok(())
            }
            ConfigCommand::DelMarkAt(pos) => {
                let idx = match *pos {
                    0 => return Err(CtlError::invalid_rule_number("0")),
                    p if p as usize > self.marks.len() => {
                        return Err(CtlError::mark_delete_index_too_big())
                    }
                    p => p as usize - 1,
                };
                self.marks.remove(idx);
                self.generation += 1;
                Ok(())
            }
            ConfigCommand::FlushMarks => {
                self.marks.clear();
                self.generation += 1;
                Ok(())
            }
            ConfigCommand::SetSysctl { name, value } => {
                self.sysctls.set(name, *value)?;
                self.generation += 1;
                Ok(())
            }
            ConfigCommand::SetSysctlValues { name, values } => {
                self.sysctls.set_values(name, values)?;
                self.generation += 1;
                Ok(())
            }
        }
    }

    fn check_mark_dev(&self, dev: &str) -> Result<(), CtlError> {
        if self.port_names.iter().any(|p| p == dev) {
            Ok(())
        } else {
            Err(CtlError::unknown_mark_dev(dev, &self.port_names))
        }
    }

    /// Validates a rule to be added and returns it normalized.
    fn check_mark(&self, rule: &MarkRule) -> Result<MarkRule, CtlError> {
        rule.check()?;
        if let Some(dev) = &rule.in_dev {
            self.check_mark_dev(dev)?;
        }
        if self.marks.len() >= MAX_MARK_RULES {
            return Err(CtlError::mark_table_full(MAX_MARK_RULES));
        }
        Ok(rule.normalized())
    }

    fn validate_spec(spec: &ServiceSpec) -> Result<ServiceConfig, CtlError> {
        match spec.key {
            ServiceKey::Fwmark(0) => return Err(CtlError::invalid_fwmark("0")),
            ServiceKey::Addr { port: 0, .. } if spec.persistent.is_none() => {
                return Err(CtlError::zero_port())
            }
            ServiceKey::Addr {
                proto: Protocol::Tcp,
                ..
            } if spec.ops => return Err(CtlError::ops_udp_only()),
            _ => {}
        }
        if let Some(t) = spec.persistent {
            if !(1..=MAX_TIMEOUT).contains(&t) {
                return Err(CtlError::invalid_timeout(&t.to_string()));
            }
        }
        let scheduler: Scheduler = spec.scheduler.parse()?;
        if spec.pe.is_some() {
            // No persistence engine module exists in the director: the kernel's ENOENT.
            return Err(CtlError::scheduler_not_found());
        }
        Ok(ServiceConfig {
            key: spec.key,
            scheduler,
            flags: spec.flags,
            persistent: spec.persistent,
            netmask: spec.netmask,
            ops: spec.ops,
        })
    }

    fn add_service(&mut self, spec: &ServiceSpec) -> Result<(), CtlError> {
        // Kernel order: the existence check comes before the scheduler lookup.
        if let ServiceKey::Addr { port: 0, .. } = spec.key {
            if spec.persistent.is_none() {
                return Err(CtlError::zero_port());
            }
        }
        if self.services.contains_key(&spec.key) {
            return Err(CtlError::service_exists());
        }
        let config = Self::validate_spec(spec)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.services.insert(
            spec.key,
            Service {
                config,
                servers: Vec::new(),
                seq,
            },
        );
        self.generation += 1;
        Ok(())
    }

    fn edit_service(&mut self, spec: &ServiceSpec) -> Result<(), CtlError> {
        if let ServiceKey::Addr { port: 0, .. } = spec.key {
            if spec.persistent.is_none() {
                return Err(CtlError::zero_port());
            }
        }
        if !self.services.contains_key(&spec.key) {
            return Err(CtlError::no_such_service());
        }
        let config = Self::validate_spec(spec)?;
        if let Some(svc) = self.services.get_mut(&spec.key) {
            svc.config = config;
        }
        self.generation += 1;
        Ok(())
    }

    fn delete_service(&mut self, key: &ServiceKey, now: Instant) -> Result<(), CtlError> {
        let svc = self
            .services
            .remove(key)
            .ok_or_else(CtlError::no_such_service)?;
        for server in svc.servers {
            self.put_in_trash(*key, server, now);
        }
        self.generation += 1;
        Ok(())
    }

    fn put_in_trash(&mut self, service: ServiceKey, server: ServerConfig, now: Instant) {
        if let Some(Slot::Live { incarnation, .. }) = self.slots.get(server.id.index()).copied() {
            self.slots[server.id.index()] = Slot::Trash {
                service,
                incarnation,
            };
        }
        self.trash.push(TrashEntry {
            service,
            server,
            idle_since: now,
        });
    }

    /// Normalises a server spec for `service` like ipvsadm and the kernel: DR and tunnel
    /// servers of address services take the service port.
    pub fn normalize_server(service: &ServiceKey, spec: &ServerSpec) -> ServerSpec {
        let mut s = spec.clone();
        if let ServiceKey::Addr { port, .. } = service {
            if matches!(s.fwd, FwdMethod::Route | FwdMethod::Tunnel | FwdMethod::Local) {
                s.port = *port;
            }
        }
        s
    }

    fn check_server_spec(spec: &ServerSpec) -> Result<(), CtlError> {
        if spec.weight > i32::MAX as u32
            || spec.u_threshold > MAX_THRESHOLD
            || spec.l_threshold > MAX_THRESHOLD
            || spec.l_threshold > spec.u_threshold
        {
            return Err(CtlError::out_of_range());
        }
        if !is_unicast(spec.addr) {
            return Err(CtlError::invalid_operation());
        }
        Ok(())
    }

    fn alloc_slot(&mut self) -> Option<ServerId> {
        if let Some(&i) = self.free.iter().next() {
            self.free.remove(&i);
            return Some(ServerId(i));
        }
        if (self.slots.len() as u64) < u64::from(self.max_servers) {
            self.slots.push(Slot::Free);
            return Some(ServerId((self.slots.len() - 1) as u32));
        }
        None
    }

    fn add_server(&mut self, key: &ServiceKey, spec: &ServerSpec) -> Result<(), CtlError> {
        if !self.services.contains_key(key) {
            return Err(CtlError::service_not_defined());
        }
        let spec = Self::normalize_server(key, spec);
        Self::check_server_spec(&spec)?;
        if let Some(svc) = self.services.get(key) {
            if svc.server(spec.addr, spec.port).is_some() {
                return Err(CtlError::destination_exists());
            }
        }
        let trashed = self.trash.iter().position(|t| {
            t.service == *key && t.server.addr == spec.addr && t.server.port == spec.port
        });
        let server = match trashed {
            Some(pos) => {
                let t = self.trash.remove(pos);
                let mut server = t.server;
                server.update(&spec);
                if let Some(Slot::Trash { incarnation, .. }) =
                    self.slots.get(server.id.index()).copied()
                {
                    self.slots[server.id.index()] = Slot::Live {
                        service: *key,
                        incarnation,
                    };
                }
                server
            }
            None => {
                let id = self.alloc_slot().ok_or_else(|| {
                    CtlError::server_table_full(self.max_servers, self.trash.len())
                })?;
                let incarnation = self.next_incarnation;
                self.next_incarnation += 1;
                self.slots[id.index()] = Slot::Live {
                    service: *key,
                    incarnation,
                };
                ServerConfig::from_spec(id, &spec)
            }
        };
        if let Some(svc) = self.services.get_mut(key) {
            svc.servers.insert(0, server);
        }
        self.generation += 1;
        Ok(())
    }

    fn edit_server(&mut self, key: &ServiceKey, spec: &ServerSpec) -> Result<(), CtlError> {
        if !self.services.contains_key(key) {
            return Err(CtlError::service_not_defined());
        }
        let spec = Self::normalize_server(key, spec);
        Self::check_server_spec(&spec)?;
        let svc = self
            .services
            .get_mut(key)
            .ok_or_else(CtlError::service_not_defined)?;
        let server = svc
            .servers
            .iter_mut()
            .find(|s| s.addr == spec.addr && s.port == spec.port)
            .ok_or_else(CtlError::no_such_destination)?;
        server.update(&spec);
        self.generation += 1;
        Ok(())
    }

    fn delete_server(
        &mut self,
        key: &ServiceKey,
        addr: Ipv4Addr,
        port: u16,
        now: Instant,
    ) -> Result<(), CtlError> {
        let svc = self
            .services
            .get_mut(key)
            .ok_or_else(CtlError::service_not_defined)?;
        let pos = svc
            .servers
            .iter()
            .position(|s| s.addr == addr && s.port == port)
            .ok_or_else(CtlError::no_such_destination)?;
        let server = svc.servers.remove(pos);
        self.put_in_trash(*key, server, now);
        self.generation += 1;
        Ok(())
    }

    fn check_dev(&self, dev: &str) -> Result<(), CtlError> {
        if self.port_names.iter().any(|p| p == dev) {
            Ok(())
        } else {
            Err(CtlError::no_such_device(dev))
        }
    }

    fn add_addr(&mut self, a: &AddrConfig) -> Result<(), CtlError> {
        self.check_dev(&a.dev)?;
        if a.prefix_len > 32 {
            return Err(CtlError::input(format!(
                "invalid prefix length {} (0..32)",
                a.prefix_len
            )));
        }
        if !is_unicast(a.addr) {
            return Err(CtlError::input(format!(
                "{} is not a unicast address",
                a.addr
            )));
        }
        if self
            .addrs
            .iter()
            .any(|x| x.addr == a.addr && x.dev == a.dev)
        {
            return Err(CtlError::addr_exists());
        }
        self.addrs.push(a.clone());
        self.generation += 1;
        Ok(())
    }

    fn del_addr(
        &mut self,
        addr: Ipv4Addr,
        prefix_len: Option<u8>,
        dev: &str,
    ) -> Result<(), CtlError> {
        self.check_dev(dev)?;
        let pos = self
            .addrs
            .iter()
            .position(|x| {
                x.addr == addr
                    && x.dev == dev
                    && (prefix_len.is_none() || prefix_len == Some(x.prefix_len))
            })
            .ok_or_else(CtlError::addr_not_found)?;
        self.addrs.remove(pos);
        self.generation += 1;
        Ok(())
    }

    /// Frees trash slots that have not been in use (`in_use(id) == false`) for at least
    /// [`TRASH_IDLE`]; a slot seen in use restarts its idle clock at `now`. Returns the freed
    /// ids. Does not change `generation` (freed slots are invisible to forwarding; a later
    /// reuse shows up as a new [`Slot`] incarnation).
    pub fn reclaim_trash(
        &mut self,
        now: Instant,
        in_use: impl Fn(ServerId) -> bool,
    ) -> Vec<ServerId> {
        let mut freed = Vec::new();
        let mut kept = Vec::with_capacity(self.trash.len());
        for mut t in std::mem::take(&mut self.trash) {
            let id = t.server.id;
            if in_use(id) {
                t.idle_since = now;
                kept.push(t);
            } else if now.saturating_duration_since(t.idle_since) >= TRASH_IDLE {
                if let Some(slot) = self.slots.get_mut(id.index()) {
                    *slot = Slot::Free;
                }
                self.free.insert(id.0);
                freed.push(id);
            } else {
                kept.push(t);
            }
        }
        self.trash = kept;
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(a: [u8; 4], port: u16) -> ServiceKey {
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: Ipv4Addr::from(a),
            port,
        }
    }

    fn cfg() -> Config {
        Config::new(vec!["dpdk0".into(), "dpdk1".into()], 4)
    }

    fn add_svc(c: &mut Config, key: ServiceKey) {
        c.apply(&ConfigCommand::AddService(ServiceSpec::new(key)))
            .unwrap();
    }

    fn add_srv(c: &mut Config, key: ServiceKey, a: [u8; 4], port: u16) -> Result<(), CtlError> {
        c.apply(&ConfigCommand::AddServer {
            service: key,
            server: ServerSpec::new(Ipv4Addr::from(a), port),
        })
    }

    #[test]
    fn service_lifecycle_and_errors() {
        let mut c = cfg();
        let k = tcp([192, 168, 1, 100], 80);
        add_svc(&mut c, k);
        assert_eq!(c.generation(), 1);
        assert_eq!(
            c.apply(&ConfigCommand::AddService(ServiceSpec::new(k))),
            Err(CtlError::service_exists())
        );
        let mut bad = ServiceSpec::new(tcp([1, 1, 1, 1], 80));
        bad.scheduler = "lblc".into();
        assert_eq!(
            c.apply(&ConfigCommand::AddService(bad)),
            Err(CtlError::scheduler_not_found())
        );
        // -E on a missing service is ESRCH even with a bad scheduler (kernel check order).
        let mut bad = ServiceSpec::new(tcp([1, 1, 1, 1], 80));
        bad.scheduler = "nope".into();
        assert_eq!(
            c.apply(&ConfigCommand::EditService(bad)),
            Err(CtlError::no_such_service())
        );
        assert_eq!(
            c.apply(&ConfigCommand::DeleteService(tcp([1, 1, 1, 1], 80))),
            Err(CtlError::no_such_service())
        );
        assert_eq!(
            c.generation(),
            1,
            "failed commands do not bump the generation"
        );
        let z = ServiceSpec::new(tcp([1, 1, 1, 1], 0));
        assert_eq!(
            c.apply(&ConfigCommand::AddService(z.clone()))
                .unwrap_err()
                .exit_code,
            2
        );
        let mut z = z;
        z.persistent = Some(360);
        c.apply(&ConfigCommand::AddService(z)).unwrap();
    }

    #[test]
    fn edit_service_is_full_replacement() {
        let mut c = cfg();
        let k = tcp([10, 0, 0, 1], 80);
        let mut s = ServiceSpec::new(k);
        s.scheduler = "rr".into();
        s.persistent = Some(600);
        s.netmask = Ipv4Addr::new(255, 255, 255, 0);
        c.apply(&ConfigCommand::AddService(s)).unwrap();
        add_srv(&mut c, k, [10, 0, 0, 11], 80).unwrap();
        c.apply(&ConfigCommand::EditService(ServiceSpec::new(k)))
            .unwrap();
        let svc = c.service(&k).unwrap();
        assert_eq!(svc.config.scheduler, Scheduler::Wlc);
        assert_eq!(svc.config.persistent, None);
        assert_eq!(svc.config.netmask, Ipv4Addr::BROADCAST);
        assert_eq!(svc.servers.len(), 1, "servers survive -E");
    }

    #[test]
    fn servers_newest_first_and_dr_port_forced() {
        let mut c = cfg();
        let k = tcp([10, 0, 0, 1], 80);
        add_svc(&mut c, k);
        add_srv(&mut c, k, [10, 0, 0, 11], 8080).unwrap();
        add_srv(&mut c, k, [10, 0, 0, 12], 0).unwrap();
        let svc = c.service(&k).unwrap();
        assert_eq!(svc.servers[0].addr, Ipv4Addr::new(10, 0, 0, 12));
        assert!(svc.servers.iter().all(|s| s.port == 80));
        assert_eq!(
            add_srv(&mut c, k, [10, 0, 0, 11], 80),
            Err(CtlError::destination_exists())
        );
        assert_eq!(
            add_srv(&mut c, tcp([9, 9, 9, 9], 1), [10, 0, 0, 11], 80),
            Err(CtlError::service_not_defined())
        );
        assert_eq!(
            add_srv(&mut c, k, [224, 0, 0, 1], 80),
            Err(CtlError::invalid_operation())
        );
        let mut s = ServerSpec::new(Ipv4Addr::new(10, 0, 0, 13), 80);
        s.l_threshold = 5;
        assert_eq!(
            c.apply(&ConfigCommand::AddServer {
                service: k,
                server: s
            }),
            Err(CtlError::out_of_range())
        );
    }

    #[test]
    fn fwmark_servers_keep_their_port() {
        let mut c = cfg();
        let k = ServiceKey::Fwmark(7);
        add_svc(&mut c, k);
        add_srv(&mut c, k, [10, 0, 0, 31], 0).unwrap();
        add_srv(&mut c, k, [10, 0, 0, 32], 8080).unwrap();
        let svc = c.service(&k).unwrap();
        assert_eq!(svc.servers[0].port, 8080);
        assert_eq!(svc.servers[1].port, 0);
    }

    #[test]
    fn edit_and_delete_server() {
        let mut c = cfg();
        let k = tcp([10, 0, 0, 1], 80);
        add_svc(&mut c, k);
        add_srv(&mut c, k, [10, 0, 0, 11], 80).unwrap();
        add_srv(&mut c, k, [10, 0, 0, 12], 80).unwrap();
        let mut s = ServerSpec::new(Ipv4Addr::new(10, 0, 0, 11), 80);
        s.weight = 5;
        c.apply(&ConfigCommand::EditServer {
            service: k,
            server: s,
        })
        .unwrap();
        let svc = c.service(&k).unwrap();
        assert_eq!(svc.servers[1].weight, 5, "-e keeps the position");
        let missing = ServerSpec::new(Ipv4Addr::new(10, 0, 0, 99), 80);
        assert_eq!(
            c.apply(&ConfigCommand::EditServer {
                service: k,
                server: missing
            }),
            Err(CtlError::no_such_destination())
        );
        let del = |a, p| ConfigCommand::DeleteServer {
            service: k,
            addr: a,
            port: p,
        };
        assert_eq!(
            c.apply(&del(Ipv4Addr::new(10, 0, 0, 11), 81)),
            Err(CtlError::no_such_destination())
        );
        c.apply(&del(Ipv4Addr::new(10, 0, 0, 11), 80)).unwrap();
        assert_eq!(c.service(&k).unwrap().servers.len(), 1);
        assert_eq!(c.trash().count(), 1);
    }

    #[test]
    fn trash_resurrects_same_id_and_reclaims_after_idle() {
        let mut c = cfg();
        let k = tcp([10, 0, 0, 1], 80);
        let t0 = Instant::now();
        add_svc(&mut c, k);
        add_srv(&mut c, k, [10, 0, 0, 11], 80).unwrap();
        add_srv(&mut c, k, [10, 0, 0, 12], 80).unwrap();
        let id11 = c.service(&k).unwrap().servers[1].id;
        let inc = match c.slot(id11) {
            Slot::Live { incarnation, .. } => incarnation,
            s => panic!("{s:?}"),
        };
        let del = ConfigCommand::DeleteServer {
            service: k,
            addr: Ipv4Addr::new(10, 0, 0, 11),
            port: 80,
        };
        c.apply_at(&del, t0).unwrap();
        assert!(matches!(c.slot(id11), Slot::Trash { .. }));
        // Resurrect: same id, same incarnation, front of the list, new weight.
        let mut s = ServerSpec::new(Ipv4Addr::new(10, 0, 0, 11), 80);
        s.weight = 3;
        c.apply(&ConfigCommand::AddServer {
            service: k,
            server: s,
        })
        .unwrap();
        let front = &c.service(&k).unwrap().servers[0];
        assert_eq!((front.id, front.weight), (id11, 3));
        assert_eq!(
            c.slot(id11),
            Slot::Live {
                service: k,
                incarnation: inc
            }
        );

        // Delete the service: both servers trashed, slots not reusable until reclaimed.
        c.apply_at(&ConfigCommand::DeleteService(k), t0).unwrap();
        assert_eq!(c.trash().count(), 2);
        assert!(c
            .reclaim_trash(t0 + Duration::from_secs(119), |_| false)
            .is_empty());
        // In use: idle clock restarts.
        assert!(
            c.reclaim_trash(t0 + Duration::from_secs(130), |id| id == id11)
                .len()
                == 1
        );
        assert!(c
            .reclaim_trash(t0 + Duration::from_secs(200), |_| false)
            .is_empty());
        assert_eq!(
            c.reclaim_trash(t0 + Duration::from_secs(250), |_| false),
            vec![id11]
        );
        assert_eq!(c.slot(id11), Slot::Free);
        // Re-adding now allocates a fresh incarnation.
        add_svc(&mut c, k);
        add_srv(&mut c, k, [10, 0, 0, 11], 80).unwrap();
        let s = &c.service(&k).unwrap().servers[0];
        match c.slot(s.id) {
            Slot::Live { incarnation, .. } => assert_ne!(incarnation, inc),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn slot_space_full_is_a_clear_error() {
        let mut c = cfg(); // 4 slots
        let k = tcp([10, 0, 0, 1], 80);
        add_svc(&mut c, k);
        for i in 0..4 {
            add_srv(&mut c, k, [10, 0, 1, i], 80).unwrap();
        }
        let err = add_srv(&mut c, k, [10, 0, 1, 9], 80).unwrap_err();
        assert_eq!(err.exit_code, 255);
        assert!(err.message.contains("server table full"), "{}", err.message);
        let ids: BTreeSet<u32> = c
            .service(&k)
            .unwrap()
            .servers
            .iter()
            .map(|s| s.id.0)
            .collect();
        assert_eq!(ids, (0..4).collect());
    }

    #[test]
    fn clear_trashes_everything() {
        let mut c = cfg();
        add_svc(&mut c, tcp([10, 0, 0, 1], 80));
        add_svc(&mut c, ServiceKey::Fwmark(3));
        add_srv(&mut c, ServiceKey::Fwmark(3), [10, 0, 0, 2], 0).unwrap();
        c.apply(&ConfigCommand::Clear).unwrap();
        assert_eq!(c.service_count(), 0);
        assert_eq!(c.trash().count(), 1);
    }

    #[test]
    fn addresses() {
        let mut c = cfg();
        let a = AddrConfig {
            addr: Ipv4Addr::new(192, 168, 1, 100),
            prefix_len: 32,
            dev: "dpdk0".into(),
        };
        c.apply(&ConfigCommand::AddAddr(a.clone())).unwrap();
        assert_eq!(
            c.apply(&ConfigCommand::AddAddr(a.clone())),
            Err(CtlError::addr_exists())
        );
        let mut b = a.clone();
        b.dev = "dpdk9".into();
        assert_eq!(
            c.apply(&ConfigCommand::AddAddr(b)),
            Err(CtlError::no_such_device("dpdk9"))
        );
        let del = |p| ConfigCommand::DelAddr {
            addr: a.addr,
            prefix_len: p,
            dev: "dpdk0".into(),
        };
        assert_eq!(c.apply(&del(Some(24))), Err(CtlError::addr_not_found()));
        c.apply(&del(None)).unwrap();
        assert!(c.addrs().is_empty());
        assert_eq!(c.apply(&del(None)), Err(CtlError::addr_not_found()));
    }

    #[test]
    fn timeouts_zero_means_unchanged() {
        let mut c = cfg();
        c.apply(&ConfigCommand::SetTimeouts(Timeouts {
            tcp: 0,
            tcp_fin: 60,
            udp: 0,
        }))
        .unwrap();
        assert_eq!(
            *c.timeouts(),
            Timeouts {
                tcp: 900,
                tcp_fin: 60,
                udp: 300
            }
        );
    }

    fn mrule(dev: Option<&str>, dst: [u8; 4], len: u8, port: Option<u16>, mark: u32) -> MarkRule {
        MarkRule {
            in_dev: dev.map(str::to_string),
            dst: Ipv4Addr::from(dst),
            prefix_len: len,
            proto: port.map(|_| Protocol::Tcp),
            dport: port.map(|p| (p, p)),
            mark,
        }
    }

    #[test]
    fn mark_rules_append_insert_delete_flush() {
        let mut c = cfg();
        let r80 = mrule(None, [192, 168, 195, 200], 32, Some(80), 10);
        let r443 = mrule(None, [192, 168, 195, 200], 32, Some(443), 10);
        c.apply(&ConfigCommand::AddMark(r80.clone())).unwrap();
        c.apply(&ConfigCommand::AddMark(r443.clone())).unwrap();
        // Duplicates are allowed, as in iptables.
        c.apply(&ConfigCommand::AddMark(r80.clone())).unwrap();
        assert_eq!(c.marks(), &[r80.clone(), r443.clone(), r80.clone()]);
        assert_eq!(c.generation(), 3);
        // -D deletes the FIRST identical rule.
        c.apply(&ConfigCommand::DelMark(r80.clone())).unwrap();
        assert_eq!(c.marks(), &[r443.clone(), r80.clone()]);
        // Insert at 1 (front), at len+1 (end); beyond → error.
        let first = mrule(Some("dpdk1"), [10, 0, 0, 0], 8, None, 0);
        c.apply(&ConfigCommand::InsertMark {
            pos: 1,
            rule: first.clone(),
        })
        .unwrap();
        let last = mrule(None, [10, 0, 0, 1], 32, None, 7);
        c.apply(&ConfigCommand::InsertMark {
            pos: 4,
            rule: last.clone(),
        })
        .unwrap();
        assert_eq!(
            c.marks(),
            &[first.clone(), r443.clone(), r80.clone(), last.clone()]
        );
        let gen = c.generation();
        let e = c
            .apply(&ConfigCommand::InsertMark {
                pos: 6,
                rule: last.clone(),
            })
            .unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            ("iptables: Index of insertion too big.", 1)
        );
        let e = c
            .apply(&ConfigCommand::InsertMark {
                pos: 0,
                rule: last.clone(),
            })
            .unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            ("Invalid rule number `0'", 2)
        );
        let e = c.apply(&ConfigCommand::DelMarkAt(5)).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            ("iptables: Index of deletion too big.", 1)
        );
        let e = c
            .apply(&ConfigCommand::DelMark(mrule(
                None,
                [1, 1, 1, 1],
                32,
                None,
                1,
            )))
            .unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            (
                "iptables: Bad rule (does a matching rule exist in that chain?).",
                1
            )
        );
        // Same rule with another mark is another rule.
        assert!(c
            .apply(&ConfigCommand::DelMark(mrule(
                None,
                [192, 168, 195, 200],
                32,
                Some(443),
                11
            )))
            .is_err());
        assert_eq!(
            c.generation(),
            gen,
            "failed mark commands do not bump the generation"
        );
        c.apply(&ConfigCommand::DelMarkAt(2)).unwrap();
        assert_eq!(c.marks(), &[first, r80, last]);
        // -C leaves mark rules alone; flush empties them (and bumps even when empty).
        c.apply(&ConfigCommand::Clear).unwrap();
        assert_eq!(c.marks().len(), 3);
        c.apply(&ConfigCommand::FlushMarks).unwrap();
        assert!(c.marks().is_empty());
        let gen = c.generation();
        c.apply(&ConfigCommand::FlushMarks).unwrap();
        assert_eq!(c.generation(), gen + 1);
    }

    #[test]
    fn mark_rules_are_validated_and_normalized() {
        let mut c = cfg();
        // The address is stored masked, and -D matches the masked form.
        c.apply(&ConfigCommand::AddMark(mrule(
            None,
            [10, 1, 2, 3],
            24,
            None,
            1,
        )))
        .unwrap();
        assert_eq!(c.marks()[0].dst, Ipv4Addr::new(10, 1, 2, 0));
        c.apply(&ConfigCommand::DelMark(mrule(
            None,
            [10, 1, 2, 99],
            24,
            None,
            1,
        )))
        .unwrap();
        // -i must name a port; the error lists them.
        let e = c
            .apply(&ConfigCommand::AddMark(mrule(
                Some("eth0"),
                [1, 1, 1, 1],
                32,
                Some(80),
                1,
            )))
            .unwrap_err();
        assert_eq!(e.exit_code, 2);
        assert_eq!(
            e.message,
            "unknown interface \"eth0\": mark rules match the director's DPDK ports \
             (dpdk0, dpdk1); use -i dpdkN or omit -i"
        );
        assert_eq!(
            c.apply(&ConfigCommand::DelMark(mrule(
                Some("eth0"),
                [1, 1, 1, 1],
                32,
                None,
                1
            )))
            .unwrap_err(),
            e
        );
        let mut no_proto = mrule(None, [1, 1, 1, 1], 32, Some(80), 1);
        no_proto.proto = None;
        assert_eq!(
            c.apply(&ConfigCommand::AddMark(no_proto)),
            Err(CtlError::dport_needs_proto())
        );
        let mut bad_range = mrule(None, [1, 1, 1, 1], 32, Some(80), 1);
        bad_range.dport = Some((90, 80));
        assert_eq!(
            c.apply(&ConfigCommand::AddMark(bad_range))
                .unwrap_err()
                .exit_code,
            2
        );
        assert!(c
            .apply(&ConfigCommand::AddMark(mrule(
                None,
                [1, 1, 1, 1],
                33,
                None,
                1
            )))
            .is_err());
        assert!(c.marks().is_empty());
        assert_eq!(c.generation(), 2);
        // The table is bounded.
        for i in 0..MAX_MARK_RULES {
            c.apply(&ConfigCommand::AddMark(mrule(
                None,
                [10, 0, 0, 1],
                32,
                None,
                i as u32,
            )))
            .unwrap();
        }
        let e = c
            .apply(&ConfigCommand::AddMark(mrule(
                None,
                [10, 0, 0, 1],
                32,
                None,
                0,
            )))
            .unwrap_err();
        assert_eq!(e.exit_code, 255);
        assert!(e.message.contains("Mark rule table full"), "{}", e.message);
    }

    #[test]
    fn sysctls_set_and_errors() {
        let mut c = cfg();
        assert_eq!(*c.sysctls(), Sysctls::default());
        let set = |n: &str, v| ConfigCommand::SetSysctl {
            name: n.into(),
            value: v,
        };
        c.apply(&set("sloppy_tcp", 1)).unwrap();
        c.apply(&set("net.ipv4.vs.conn_reuse_mode", 2)).unwrap();
        assert!(c.sysctls().sloppy_tcp);
        assert_eq!(c.sysctls().conn_reuse_mode, 2);
        assert_eq!(c.generation(), 2);
        let e = c.apply(&set("expire_nodest_conn", 2)).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            (
                "sysctl: setting key \"net.ipv4.vs.expire_nodest_conn\": Invalid argument",
                255
            )
        );
        let e = c.apply(&set("foo", 1)).unwrap_err();
        assert_eq!(
            e.message,
            "sysctl: cannot stat /proc/sys/net/ipv4/vs/foo: No such file or directory"
        );
        assert_eq!(c.generation(), 2);
        // -C does not reset sysctls.
        c.apply(&ConfigCommand::Clear).unwrap();
        assert!(c.sysctls().sloppy_tcp);
    }

    #[test]
    fn sched_flags_parse_and_names() {
        let f = SchedFlags::parse("sh-fallback,sh-port", "sh").unwrap();
        assert_eq!(f.names(Scheduler::Sh), "sh-fallback,sh-port");
        assert_eq!(
            SchedFlags::parse("sh-port", "wlc").unwrap_err().message,
            "incompatible scheduler flag `sh-port'"
        );
        assert_eq!(
            SchedFlags::parse("bogus", "rr").unwrap_err().message,
            "invalid scheduler flag `bogus'"
        );
        let f = SchedFlags::parse("flag-3", "sh").unwrap();
        assert_eq!(f.names(Scheduler::Sh), "");
        assert!(!f.is_empty());
        assert_eq!(
            SchedFlags::parse("flag-1,flag-3", "rr")
                .unwrap()
                .names(Scheduler::Rr),
            "flag-1,flag-3"
        );
    }

    #[test]
    fn ipvsadm_order_and_quirk() {
        let a = tcp([10, 0, 0, 1], 80);
        let b = tcp([192, 168, 0, 1], 80);
        // 192.168.x - 10.x wraps past 2^31: ipvsadm sorts 192.168.x first.
        assert!(ipvsadm_service_cmp(&b, &a) < 0);
        assert!(a < b, "Ord is the sane total order");
        let u = ServiceKey::Addr {
            proto: Protocol::Udp,
            addr: Ipv4Addr::new(1, 1, 1, 1),
            port: 1,
        };
        assert!(ipvsadm_service_cmp(&a, &u) < 0);
        assert!(ipvsadm_service_cmp(&u, &ServiceKey::Fwmark(1)) < 0);
        assert!(
            ipvsadm_service_cmp(&ServiceKey::Fwmark(0x8000_0001), &u) < 0,
            "mark quirk"
        );
        let mut v = vec![ServiceKey::Fwmark(2), b, u, a, ServiceKey::Fwmark(1)];
        glibc_msort(&mut v, &|x, y| ipvsadm_service_cmp(x, y));
        assert_eq!(
            v,
            vec![b, a, u, ServiceKey::Fwmark(1), ServiceKey::Fwmark(2)]
        );
    }

    #[test]
    fn msort_is_a_stable_sort_for_total_orders() {
        let mut v: Vec<(u8, u32)> = (0..200u32).map(|i| ((i * 7 % 13) as u8, i)).collect();
        let mut w = v.clone();
        glibc_msort(&mut v, &|a, b| i32::from(a.0) - i32::from(b.0));
        w.sort_by_key(|x| x.0);
        assert_eq!(v, w);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn key() -> impl Strategy<Value = ServiceKey> {
            prop_oneof![
                (0u8..2, 0u16..3).prop_map(|(a, p)| tcp([10, 0, 0, a], p * 40)),
                (1u32..3).prop_map(ServiceKey::Fwmark),
            ]
        }

        fn cmd() -> impl Strategy<Value = ConfigCommand> {
            let server = (0u8..4, 0u16..2, 0u32..3, prop::bool::ANY).prop_map(|(a, p, w, masq)| {
                ServerSpec {
                    fwd: if masq {
                        FwdMethod::Masq
                    } else {
                        FwdMethod::Route
                    },
                    weight: w,
                    ..ServerSpec::new(Ipv4Addr::new(10, 0, 1, a), p * 80)
                }
            });
            prop_oneof![
                (key(), prop::option::of(1u32..5)).prop_map(|(k, p)| {
                    let mut s = ServiceSpec::new(k);
                    s.persistent = p;
                    ConfigCommand::AddService(s)
                }),
                (key(), prop::option::of(1u32..5)).prop_map(|(k, p)| {
                    let mut s = ServiceSpec::new(k);
                    s.persistent = p;
                    s.scheduler = "rr".into();
                    ConfigCommand::EditService(s)
                }),
                key().prop_map(ConfigCommand::DeleteService),
                Just(ConfigCommand::Clear),
                (key(), server.clone())
                    .prop_map(|(service, server)| ConfigCommand::AddServer { service, server }),
                (key(), server.clone())
                    .prop_map(|(service, server)| ConfigCommand::EditServer { service, server }),
                (key(), server).prop_map(|(service, s)| ConfigCommand::DeleteServer {
                    service,
                    addr: s.addr,
                    port: s.port
                }),
                mark_cmd(),
            ]
        }

        fn mark_cmd() -> impl Strategy<Value = ConfigCommand> {
            let rule = (
                prop::option::of(prop::sample::select(vec!["dpdk0", "eth0"])),
                0u8..3,
                prop::sample::select(vec![0u8, 24, 32, 40]),
                prop::option::of(75u16..78),
                prop::bool::ANY,
                0u32..3,
            )
                .prop_map(|(dev, d, len, port, proto, mark)| MarkRule {
                    in_dev: dev.map(str::to_string),
                    dst: Ipv4Addr::new(10, 0, 0, d),
                    prefix_len: len,
                    proto: if proto || port.is_some() {
                        Some(Protocol::Udp)
                    } else {
                        None
                    },
                    dport: port.map(|p| (p, p + u16::from(proto))),
                    mark,
                });
            prop_oneof![
                rule.clone().prop_map(ConfigCommand::AddMark),
                (0u32..5, rule.clone())
                    .prop_map(|(pos, rule)| ConfigCommand::InsertMark { pos, rule }),
                rule.prop_map(ConfigCommand::DelMark),
                (0u32..5).prop_map(ConfigCommand::DelMarkAt),
                Just(ConfigCommand::FlushMarks),
                (
                    prop::sample::select(vec!["sloppy_tcp", "conn_reuse_mode", "bogus"]),
                    -1i64..5
                )
                    .prop_map(|(n, value)| ConfigCommand::SetSysctl {
                        name: n.into(),
                        value
                    }),
            ]
        }

        fn check_invariants(c: &Config) {
            assert!(c.marks().len() <= MAX_MARK_RULES);
            for r in c.marks() {
                assert_eq!(*r, r.normalized());
                assert!(r.check().is_ok());
                assert!(r.in_dev.as_ref().is_none_or(|d| c.port_names().contains(d)));
            }
            assert!(c.sysctls().conn_reuse_mode <= 3);
            let mut seen = BTreeSet::new();
            for svc in c.services() {
                for s in &svc.servers {
                    assert!(s.id.0 < c.max_servers());
                    assert!(seen.insert(s.id), "duplicate id {:?}", s.id);
                    assert!(
                        matches!(c.slot(s.id), Slot::Live { service, .. } if service == svc.config.key)
                    );
                    if !svc.config.key.is_fwmark() && s.fwd == FwdMethod::Route {
                        assert_eq!(s.port, svc.config.key.port());
                    }
                }
                let mut addrs: Vec<_> = svc.servers.iter().map(|s| (s.addr, s.port)).collect();
                addrs.sort();
                addrs.dedup();
                assert_eq!(
                    addrs.len(),
                    svc.servers.len(),
                    "one server per (addr, port)"
                );
            }
            for (k, s) in c.trash() {
                assert!(seen.insert(s.id), "duplicate id {:?} in trash", s.id);
                assert!(matches!(c.slot(s.id), Slot::Trash { service, .. } if service == *k));
            }
            for id in &c.free {
                assert!(!seen.contains(&ServerId(*id)));
                assert_eq!(c.slot(ServerId(*id)), Slot::Free);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]
            #[test]
            fn random_commands_keep_invariants(cmds in prop::collection::vec(cmd(), 1..60), reclaim_at in 0usize..60) {
                let mut c = Config::new(vec!["dpdk0".into()], 6);
                let t0 = Instant::now();
                for (i, cmd) in cmds.iter().enumerate() {
                    let before = c.clone();
                    match c.apply_at(cmd, t0) {
                        Ok(()) => prop_assert_eq!(c.generation(), before.generation() + 1),
                        Err(e) => {
                            prop_assert!([1, 2, 255].contains(&e.exit_code));
                            prop_assert!(c == before, "a failed command changed the config");
                        }
                    }
                    if i == reclaim_at {
                        c.reclaim_trash(t0 + TRASH_IDLE, |id| id.0 % 2 == 0);
                    }
                    check_invariants(&c);
                }
            }
        }
    }
}
