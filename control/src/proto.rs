//! The control-socket protocol between `lbadm` (or any client) and `director`.
//!
//! # Transport
//! A Unix stream socket (default `/run/director.sock`, mode 0600, owned by the user running
//! `director`). A client connects, sends one or more requests, and reads one response after
//! each; requests on one connection are answered in order. Either side may close at any time.
//!
//! # Framing
//! Every message is a frame: a 4-byte **big-endian** unsigned length `N`, then `N` bytes of
//! UTF-8 JSON. Limits: a request body is at most [`MAX_REQUEST`] (1 MiB); a response body at
//! most [`MAX_RESPONSE`] (256 MiB, connection listings can be large). A request whose length
//! header exceeds the limit is answered with an error response and the connection is closed
//! (the server does not read the oversized body). A frame not completed within the server's
//! frame timeout (5 s) or a connection idle for 60 s is closed without an answer.
//!
//! # Messages (version 1)
//! Request: `{"v": 1, "op": OP}`. Response: `{"v": 1, "result": {"Ok": REPLY}}` or
//! `{"v": 1, "result": {"Err": {"message": "...", "exit_code": N}}}`. `exit_code` is the status
//! `lbadm` exits with (2 input error, 255 refused by the director, 1 listing/transport
//! failure) and `message` is the exact line it prints to stderr (ipvsadm's wording).
//! A request that is not JSON, lacks `v`, has an unknown `v`, or an unknown `op` gets an
//! `Err` response (exit code 1) and changes nothing; the connection stays usable.
//!
//! `OP` (serde's externally tagged enum encoding; unit variants are plain strings):
//! - `{"Ipvs": CMD}`: an ipvsadm command (see [`crate::ipvsadm::IpvsCommand`]), e.g.
//!   `{"Ipvs": {"AddService": {"key": {"addr": {"proto": "tcp", "addr": "10.0.0.1",
//!   "port": 80}}, "scheduler": "wlc", "flags": {"flag1": false, "flag2": false, "flag3":
//!   false}, "persistent": null, "netmask": "255.255.255.255", "ops": false, "pe": null}}}`,
//!   `{"Ipvs": "Clear"}`, `{"Ipvs": {"List": {...ListOptions}}}`. Changes answer `"Ok"`;
//!   `List`/`Save` answer `Services`, `Connections`, `Timeouts` or `Daemons`.
//! - `{"Restore": [CMD, ...]}`: `-R` input with non-configuration commands (`-Z`). Commands
//!   are applied in order to a copy of the configuration, which is published once at the end; answers `{"Batch": [RESULT, ...]}`
//!   with one `{"Ok": null}` or `{"Err": {...}}` per command.
//! - `{"AddrAdd": {"addr": "10.0.0.1", "prefix_len": 24, "dev": "dpdk0"}}`,
//!   `{"AddrDel": {"addr": ..., "prefix_len": 24 | null, "dev": ...}}`: answer `"Ok"`.
//! - `"AddrShow"` → `{"Addrs": [...]}`, `"NeighShow"` → `{"Neighs": [...]}`,
//!   `"LinkShow"` → `{"Links": [...]}`.
//! - Mark rules (`lbadm mark`, `lbadm iptables -t mangle ... PREROUTING`; semantics in
//!   [`crate::marks`]). `RULE` is a [`MarkRule`]: `{"in_dev": "dpdk0" | null, "dst":
//!   "192.168.195.200", "prefix_len": 32, "proto": "tcp" | "udp" | null, "dport": [80, 80] |
//!   null, "mark": 10}`. `{"MarkAdd": RULE}` appends, `{"MarkInsert": {"pos": 1, "rule":
//!   RULE}}` inserts at a 1-based position, `{"MarkDel": RULE}` deletes the first identical
//!   rule, `{"MarkDelAt": 2}` deletes by 1-based position, `"MarkFlush"` deletes all: each
//!   answers `"Ok"` (errors in iptables' words, see [`crate::model::ConfigCommand`]).
//!   `"MarkShow"` → `{"Marks": [{"rule": RULE, "packets": N, "bytes": N}, ...]}` in chain order
//!   (counters from [`crate::server::Backend::mark_counters`], 0 where the dataplane does not
//!   count).
//! - IPVS sysctls: `"SysctlShow"` → `{"Sysctls": SYSCTLS}`; `{"SysctlSet": {"name":
//!   "sloppy_tcp", "value": 1}}` (name short or `net.ipv4.vs.` form) → `{"Sysctls": SYSCTLS}`
//!   with the new values. `SYSCTLS` is a [`Sysctls`]: `{"expire_nodest_conn": false,
//!   "expire_quiescent_template": false, "sloppy_tcp": false, "conn_reuse_mode": 1,
//!   "schedule_icmp": false, "cache_bypass": false, "pmtu_disc": true}`.
//!
//! - Transactions (configuration files: `lbadm restore`, `lbadm -R` of configuration
//!   changes): `{"Stage": [CCMD, ...]}` appends [`crate::model::ConfigCommand`]s to this
//!   connection's pending transaction (→ `{"Staged": N}`), `{"Commit": {"atomic": B}}`
//!   applies it to one copy of the configuration and publishes once (→ `{"Batch": [...]}`;
//!   atomic: nothing changes if any command failed), `"Discard"` drops it (→ `"Ok"`).
//!   Pending commands die with the connection.
//! - `"ConfigShow"` → `{"Config": DUMP}` ([`ConfigDump`]), what `lbadm save` writes.
//!
//! Field names and units of every reply type are those of the Rust structs below (addresses
//! as dotted strings, counters as unsigned integers, rates per second). `docs/protocol.md`
//! documents all of it with examples (replayed against the server by a test) and the
//! `lbadm --json` schemas.
//!
//! # Versioning
//! `v` is [`PROTOCOL_VERSION`]. A server answers a request with a different `v` with an error
//! naming both versions. Compatible additions (new ops, new optional fields) keep the version;
//! anything else bumps it.

use std::io::{self, Read, Write};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::CtlError;
use crate::ipvsadm::{DaemonRole, IpvsCommand};
use crate::marks::MarkRule;
use crate::model::{AddrConfig, ConfigCommand, ServerConfig, ServiceConfig, Timeouts};
use crate::sysctl::Sysctls;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest accepted request body (bytes).
pub const MAX_REQUEST: usize = 1 << 20;
/// Largest accepted response body (bytes).
pub const MAX_RESPONSE: usize = 256 << 20;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    /// The operation.
    pub op: Op,
}

impl Request {
    /// A request of the current version.
    pub fn new(op: Op) -> Self {
        Request {
            v: PROTOCOL_VERSION,
            op,
        }
    }
}

/// An operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// An ipvsadm command (change or listing).
    Ipvs(IpvsCommand),
    /// `-R`: several commands, applied in order and published once.
    Restore(Vec<IpvsCommand>),
    /// Add an address to a port.
    AddrAdd {
        /// The address.
        addr: Ipv4Addr,
        /// Prefix length.
        prefix_len: u8,
        /// Port name.
        dev: String,
    },
    /// Remove an address from a port.
    AddrDel {
        /// The address.
        addr: Ipv4Addr,
        /// Prefix length to match (any if `None`).
        prefix_len: Option<u8>,
        /// Port name.
        dev: String,
    },
    /// List the addresses.
    AddrShow,
    /// List the neighbour (ARP) table.
    NeighShow,
    /// List the ports with their counters.
    LinkShow,
    /// Append a mark rule.
    MarkAdd(MarkRule),
    /// Insert a mark rule at a 1-based position.
    MarkInsert {
        /// Position the rule will have (1 = first).
        pos: u32,
        /// The rule.
        rule: MarkRule,
    },
    /// Delete the first mark rule identical to this one.
    MarkDel(MarkRule),
    /// Delete the mark rule at this 1-based position.
    MarkDelAt(u32),
    /// Delete every mark rule.
    MarkFlush,
    /// List the mark rules with their counters.
    MarkShow,
    /// The IPVS sysctls.
    SysctlShow,
    /// Set one IPVS sysctl; answers the new values.
    SysctlSet {
        /// Name (`sloppy_tcp` or `net.ipv4.vs.sloppy_tcp`).
        name: String,
        /// Value.
        value: i64,
    },
    /// Connection synchronisation: the daemons and their counters.
    SyncShow,
    /// Set one IPVS sysctl from several integers (a vector such as `sync_threshold`, or one
    /// integer for a scalar); answers the new values.
    SysctlSetValues {
        /// Name (`sync_threshold` or `net.ipv4.vs.sync_threshold`).
        name: String,
        /// The integers, in order.
        values: Vec<i64>,
    },
    /// Appends configuration commands to this connection's pending transaction (nothing is
    /// applied yet); answers `Staged` with the number of commands now pending.
    Stage(Vec<ConfigCommand>),
    /// Applies this connection's pending transaction and empties it; answers `Batch` with one
    /// result per pending command. `atomic`: all or nothing (every command is checked, and the
    /// configuration changes only if all succeed); otherwise like `-R` (failed commands are
    /// skipped, the others applied). Either way one publication.
    Commit {
        /// All or nothing.
        atomic: bool,
    },
    /// Empties this connection's pending transaction.
    Discard,
    /// The whole configuration (for `lbadm save`); answers `Config`.
    ConfigShow,
    /// Configuration changes applied atomically and published once (`lbadm check add|del|
    /// service`); answers `Ok`.
    Apply(Vec<ConfigCommand>),
    /// Health checkers of every managed service, or of one; answers `Checks`.
    CheckShow {
        /// Only this service.
        service: Option<crate::model::ServiceKey>,
    },
    /// One page of the connection listing (`-L -c` of any size with bounded memory on both
    /// sides): at most `max` rows (capped at [`MAX_CONN_PAGE`]) from `cursor` on; answers
    /// `ConnPage`. Start from the default cursor and repeat with `next` until it is `null`.
    ConnPage {
        /// Where to start.
        cursor: ConnCursor,
        /// Most rows wanted.
        max: u32,
    },
}

/// Most rows of one `ConnPage` answer.
pub const MAX_CONN_PAGE: u32 = 16384;

/// A position in the connection listing: the worker and the index of its table to go on
/// from. Opaque to clients; entries created or removed between pages may or may not show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnCursor {
    /// Worker.
    pub worker: u32,
    /// Entry index in that worker's table.
    pub index: u32,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version of the server.
    pub v: u32,
    /// The outcome.
    pub result: Result<Reply, CtlError>,
}

impl Response {
    /// A successful response.
    pub fn ok(reply: Reply) -> Self {
        Response {
            v: PROTOCOL_VERSION,
            result: Ok(reply),
        }
    }

    /// An error response.
    pub fn err(e: CtlError) -> Self {
        Response {
            v: PROTOCOL_VERSION,
            result: Err(e),
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The change was applied (and published).
    Ok,
    /// The change was applied (and published), with a warning for the operator (one line,
    /// printed on stderr; the exit status stays 0).
    Warning(String),
    /// Virtual services with their servers and counters (`-L`, `-S`). Services are in creation
    /// order and servers in kernel order (newest first), i.e. ipvsadm's `--nosort` order;
    /// clients sort for display.
    Services {
        /// Connection table size shown as `(size=N)`.
        table_size: u32,
        /// The services.
        services: Vec<ServiceStatus>,
    },
    /// Connection entries and templates (`-L -c`).
    Connections(Vec<ConnInfo>),
    /// `-L --timeout`.
    Timeouts(Timeouts),
    /// `-L --daemon`: the running sync daemons, master first.
    Daemons(Vec<DaemonInfo>),
    /// One result per command of a `Restore`.
    Batch(Vec<Result<(), CtlError>>),
    /// Addresses on the ports.
    Addrs(Vec<AddrConfig>),
    /// Neighbour table.
    Neighs(Vec<NeighInfo>),
    /// Ports.
    Links(Vec<LinkInfo>),
    /// Mark rules in chain order, with counters.
    Marks(Vec<MarkStatus>),
    /// The IPVS sysctls.
    Sysctls(Sysctls),
    /// Commands pending in this connection's transaction after a `Stage`.
    Staged(u64),
    /// The whole configuration (`ConfigShow`).
    Config(ConfigDump),
    /// Health checkers (`CheckShow`).
    Checks(crate::health::report::ChecksReport),
    /// One page of connection entries (`ConnPage`); `next` is `None` after the last.
    ConnPage {
        /// The rows.
        rows: Vec<ConnInfo>,
        /// Cursor of the next page.
        next: Option<ConnCursor>,
    },
    /// Connection synchronisation: daemons and counters (`SyncShow`).
    Sync(SyncStatus),
}

/// One running sync daemon as the kernel reports it (the values in effect: defaults filled
/// in, `sync_maxlen` computed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Master (sends) or backup (receives).
    pub role: DaemonRole,
    /// The host interface the multicast goes through.
    pub mcast_interface: String,
    /// Sync id (master: put in every message; backup: 0 accepts every id).
    pub syncid: u8,
    /// Maximum message length.
    pub sync_maxlen: u16,
    /// Multicast group.
    pub mcast_group: Ipv4Addr,
    /// UDP port.
    pub mcast_port: u16,
    /// Multicast TTL.
    pub mcast_ttl: u8,
}

/// Connection-synchronisation counters of the director (both roles, since it started).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Running daemons, master first.
    pub daemons: Vec<DaemonInfo>,
    /// Entries the workers handed to the master (connections and templates).
    pub entries_queued: u64,
    /// Entries sent in messages.
    pub entries_sent: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Bytes of messages sent (UDP payload).
    pub bytes_sent: u64,
    /// Datagrams received by the backup.
    pub messages_received: u64,
    /// Entries in accepted messages.
    pub entries_received: u64,
    /// Entries installed or updated in a worker's table.
    pub entries_applied: u64,
    /// What was dropped, by reason (`ring_full`, `send_error`, `msg_<decode reason>`,
    /// `entry_<skip reason>`, `install_<reason>`, …); only non-zero counters.
    pub drops: Vec<(String, u64)>,
}

/// The whole configuration, as `lbadm save` writes it: everything needed to rebuild it in an
/// empty director (server ids, counters and the trash are not part of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDump {
    /// Addresses in the order they were added.
    pub addrs: Vec<AddrConfig>,
    /// Mark rules in chain order.
    pub marks: Vec<MarkRule>,
    /// The IPVS sysctls.
    pub sysctls: Sysctls,
    /// The `--set` timeouts.
    pub timeouts: Timeouts,
    /// Services in creation order. The servers of a service managed by health checkers
    /// are its configured servers (with their configured weights), whatever their state.
    pub services: Vec<ServiceDump>,
    /// Health checkers and settings of the managed services.
    #[serde(default)]
    pub health: Vec<crate::health::model::ServiceHealthDump>,
}

/// One virtual service of a [`ConfigDump`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDump {
    /// Configuration.
    pub config: ServiceConfig,
    /// Real servers in kernel order (newest first).
    pub servers: Vec<ServerConfig>,
}

/// Per-rule counters as the dataplane reports them: packets (and their bytes) that matched
/// the rule. Like iptables, a packet counts on every rule it matches, not only the one whose
/// mark wins; unlike iptables, only packets that start a new connection are evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkCounters {
    /// Matching packets.
    pub packets: u64,
    /// Their bytes (IP length).
    pub bytes: u64,
}

/// One mark rule in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkStatus {
    /// The rule.
    pub rule: MarkRule,
    /// Matching packets.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Per-server counters as the dataplane reports them (merged over all workers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStats {
    /// Connections in an active state (TCP ESTABLISHED, SYN_RECV, ...).
    pub active: u64,
    /// Other connections (UDP always, TCP FIN_WAIT, CLOSE, ...).
    pub inactive: u64,
    /// Persistence templates bound to the server.
    pub persist: u64,
    /// Connections ever created (templates not counted).
    pub conns: u64,
    /// Packets forwarded to the server.
    pub inpkts: u64,
    /// Bytes forwarded to the server.
    pub inbytes: u64,
    /// Packets from the server (0 in DR).
    pub outpkts: u64,
    /// Bytes from the server (0 in DR).
    pub outbytes: u64,
}

impl ServerStats {
    /// True if connection entries or templates still refer to the server.
    pub fn in_use(&self) -> bool {
        self.active + self.inactive + self.persist > 0
    }
}

/// Rates estimated over 2-second samples, per second (`--rate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Incoming packets per second.
    pub inpps: u64,
    /// Outgoing packets per second.
    pub outpps: u64,
    /// Incoming bytes per second.
    pub inbps: u64,
    /// Outgoing bytes per second.
    pub outbps: u64,
}

/// One real server in a listing: its configuration and counters (after `-Z`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Configuration.
    pub server: ServerConfig,
    /// ActiveConn.
    pub active: u64,
    /// InActConn.
    pub inactive: u64,
    /// PersistConn.
    pub persist: u64,
    /// Conns.
    pub conns: u64,
    /// InPkts.
    pub inpkts: u64,
    /// InBytes.
    pub inbytes: u64,
    /// OutPkts.
    pub outpkts: u64,
    /// OutBytes.
    pub outbytes: u64,
    /// Rates.
    pub rates: Rates,
}

/// One virtual service in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Configuration.
    pub config: ServiceConfig,
    /// Real servers in kernel order (newest first).
    pub servers: Vec<ServerStatus>,
    /// Conns (sum over the current servers).
    pub conns: u64,
    /// InPkts.
    pub inpkts: u64,
    /// InBytes.
    pub inbytes: u64,
    /// OutPkts.
    pub outpkts: u64,
    /// OutBytes.
    pub outbytes: u64,
    /// Rates (sum over the current servers).
    pub rates: Rates,
}

/// Protocol column of a connection entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConnProto {
    /// TCP entry or TCP-service template.
    Tcp,
    /// UDP entry or UDP-service template.
    Udp,
    /// Firewall-mark template (protocol 0).
    Ip,
}

impl ConnProto {
    /// Name printed by `-L -c`.
    pub fn name(self) -> &'static str {
        match self {
            ConnProto::Tcp => "TCP",
            ConnProto::Udp => "UDP",
            ConnProto::Ip => "IP",
        }
    }
}

/// One connection entry or persistence template (`-L -c`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// Protocol.
    pub proto: ConnProto,
    /// Seconds until expiry.
    pub expires_secs: u32,
    /// State name: TCP states (NONE, ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT, TIME_WAIT,
    /// CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, SYNACK), `UDP`, or for templates NONE/ASSURED.
    pub state: String,
    /// Client address (masked for templates).
    pub caddr: Ipv4Addr,
    /// Client port (0 for templates).
    pub cport: u16,
    /// Virtual address (the mark as an address for fwmark templates).
    pub vaddr: Ipv4Addr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub daddr: Ipv4Addr,
    /// Real server port.
    pub dport: u16,
    /// Persistence engine name and data (the director has none; always `None`).
    pub pe: Option<(String, String)>,
}

/// One neighbour (ARP) entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighInfo {
    /// IPv4 address.
    pub addr: Ipv4Addr,
    /// MAC address (`aa:bb:cc:dd:ee:ff`) once resolved.
    pub mac: Option<String>,
    /// Port name.
    pub dev: String,
    /// REACHABLE, INCOMPLETE, STALE or FAILED.
    pub state: String,
    /// Seconds since the entry was last confirmed.
    pub age_secs: u64,
}

/// One DPDK port with its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// Port name (`dpdk0`, ...).
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// Link status.
    pub link_up: bool,
    /// Link speed in Mb/s (0 if unknown).
    pub speed_mbps: u32,
    /// MTU.
    pub mtu: u32,
    /// Received packets.
    pub rx_packets: u64,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Transmitted packets.
    pub tx_packets: u64,
    /// Transmitted bytes.
    pub tx_bytes: u64,
    /// Packets the NIC dropped for lack of RX descriptors.
    pub rx_missed: u64,
    /// Erroneous received packets.
    pub rx_errors: u64,
    /// Failed transmissions.
    pub tx_errors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
    /// Dataplane drop counters by reason.
    pub drops: Vec<(String, u64)>,
    /// Link up ↔ down changes seen since start-up.
    #[serde(default)]
    pub link_changes: u64,
    /// Seconds the link has been down in all since start-up.
    #[serde(default)]
    pub link_down_secs: u64,
    /// Mbufs of the director's pool in use (director-wide; shown with the first port).
    #[serde(default)]
    pub mbufs_in_use: u64,
    /// Size of the director's mbuf pool (0: not reported).
    #[serde(default)]
    pub mbufs_total: u64,
    /// Connection-table entries in use, all workers (director-wide; shown with the first
    /// port).
    #[serde(default)]
    pub conn_entries: u64,
    /// The port's kernel interface, when the kernel leg is on.
    #[serde(default)]
    pub kernel: Option<KernelIfInfo>,
}

/// A port's kernel interface (the kernel leg), as `lbadm link show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelIfInfo {
    /// Interface name (the port's).
    pub name: String,
    /// Interface index (0 while it is being recreated).
    pub ifindex: u32,
    /// Administratively up, as the kernel reports.
    pub up: bool,
    /// MTU as the kernel reports.
    pub mtu: u32,
    /// False when someone changed the interface's MAC away from the port's.
    pub mac_matches: bool,
    /// Frames written into the interface (to the host).
    pub to_host: u64,
    /// Frames the interface refused (down or gone).
    pub to_host_errors: u64,
    /// Frames the host sent out of the interface, queued for the port.
    pub from_host: u64,
    /// Frames from the host dropped as malformed (runt, over the MTU).
    pub from_host_malformed: u64,
    /// Frames from the host dropped because the queue to the port was full.
    pub from_host_full: u64,
    /// Times the interface was recreated after being deleted underneath the director.
    pub recreated: u64,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly before a new frame started.
    #[error("connection closed")]
    Eof,
    /// The peer closed the connection in the middle of a frame.
    #[error("truncated frame")]
    Truncated,
    /// The length header exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// Limit.
        max: usize,
    },
    /// An I/O error (including timeouts).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Writes one frame (length header + body) and flushes.
pub fn write_frame<W: Write>(w: &mut W, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` if EOF came before the first byte.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return if got == 0 {
                    Ok(false)
                } else {
                    Err(FrameError::Truncated)
                }
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(true)
}

/// Reads one frame whose body may be at most `max` bytes.
pub fn read_frame<R: Read>(r: &mut R, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut hdr = [0u8; 4];
    if !read_full(r, &mut hdr)? {
        return Err(FrameError::Eof);
    }
    let len = u32::from_be_bytes(hdr) as u64;
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len as usize];
    if !read_full(r, &mut body)? && len > 0 {
        return Err(FrameError::Truncated);
    }
    Ok(body)
}

/// Serialises a request body.
pub fn encode_request(req: &Request) -> Vec<u8> {
    serde_json::to_vec(req).unwrap_or_default()
}

/// Serialises a response body.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    match serde_json::to_vec(resp) {
        Ok(v) => v,
        Err(e) => serde_json::to_vec(&Response::err(CtlError::protocol(format!(
            "cannot encode response: {e}"
        ))))
        .unwrap_or_default(),
    }
}

fn check_version(body: &[u8], what: &str) -> Result<(), CtlError> {
    /// Only the version; every other field is skipped without being built (bodies can be
    /// megabytes: a `Value` tree of them would cost more than the typed decoding).
    #[derive(Deserialize)]
    struct Versioned {
        v: Option<serde_json::Value>,
    }
    let probe: Versioned = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            CtlError::protocol(format!(
                "malformed {what}: missing protocol version field `v` ({e})"
            ))
        } else {
            CtlError::protocol(format!("malformed {what}: not JSON ({e})"))
        }
    })?;
    match probe.v.as_ref().and_then(serde_json::Value::as_u64) {
        None => Err(CtlError::protocol(format!(
            "malformed {what}: missing protocol version field `v`"
        ))),
        Some(v) if v != u64::from(PROTOCOL_VERSION) => Err(CtlError::protocol(format!(
            "unsupported protocol version {v} (this side speaks version {PROTOCOL_VERSION})"
        ))),
        Some(_) => Ok(()),
    }
}

/// Parses a request body, with clear errors for non-JSON, a missing or unknown version, and
/// unknown operations.
pub fn decode_request(body: &[u8]) -> Result<Request, CtlError> {
    check_version(body, "request")?;
    serde_json::from_slice(body).map_err(|e| CtlError::protocol(format!("malformed request: {e}")))
}

/// Parses a response body.
pub fn decode_response(body: &[u8]) -> Result<Response, CtlError> {
    check_version(body, "response")?;
    serde_json::from_slice(body).map_err(|e| CtlError::protocol(format!("malformed response: {e}")))
}

/// A blocking client.
pub mod client {
    use std::io;
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::{
        decode_response, encode_request, read_frame, write_frame, FrameError, Request, Response,
        MAX_RESPONSE,
    };

    /// Default time allowed for sending a request and receiving its response.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long [`open`] keeps retrying while the director answers [`BUSY`]: a burst of
    /// clients above the director's limit is queued by retrying, and only a director that
    /// stays full this long is reported busy.
    pub const BUSY_PATIENCE: Duration = Duration::from_secs(10);
    /// The error message of a director that has no client slot free. It is sent unsolicited
    /// on the new connection, before any request is read: the request was not executed, so
    /// retrying it on a new connection is always safe.
    pub const BUSY: &str = "director busy: too many control clients";

    /// Connects to `socket_path`, sends `req` and returns the response, with
    /// [`DEFAULT_TIMEOUT`] and [`BUSY_PATIENCE`].
    pub fn request(socket_path: &Path, req: &Request) -> io::Result<Response> {
        request_with_timeout(socket_path, req, DEFAULT_TIMEOUT)
    }

    /// Like [`request`] with an explicit timeout for each read and write.
    pub fn request_with_timeout(
        socket_path: &Path,
        req: &Request,
        timeout: Duration,
    ) -> io::Result<Response> {
        open(socket_path, req, timeout, BUSY_PATIENCE)
            .map(|(_, resp)| resp)
            .map_err(OpenError::into_io)
    }

    /// Why [`open`] failed: connecting, or the first exchange.
    #[derive(Debug)]
    pub enum OpenError {
        /// The connect failed (no director at the path, permissions, ...).
        Connect(io::Error),
        /// Connected, but sending the request or reading its response failed.
        Exchange(io::Error),
    }

    impl OpenError {
        /// The underlying I/O error.
        pub fn into_io(self) -> io::Error {
            match self {
                OpenError::Connect(e) | OpenError::Exchange(e) => e,
            }
        }
    }

    /// True if `resp` is the director's "no client slot free" answer.
    pub fn is_busy(resp: &Response) -> bool {
        matches!(&resp.result, Err(e) if e.message == BUSY)
    }

    /// Connects, sends `req` as the connection's first request and returns the connection
    /// (for further requests) with the response. While the director answers [`BUSY`] it
    /// reconnects and resends after a growing, jittered pause (1 ms doubling to 100 ms) for at
    /// most `patience`; then the busy response is returned as it is (a clear error on true
    /// overload). A refused connect with `EAGAIN` (the listen backlog is full) is retried
    /// the same way.
    pub fn open(
        socket_path: &Path,
        req: &Request,
        timeout: Duration,
        patience: Duration,
    ) -> Result<(UnixStream, Response), OpenError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let attempt = UnixStream::connect(socket_path).map_err(OpenError::Connect).and_then(|mut s| {
                let resp = exchange(&mut s, req, timeout).map_err(OpenError::Exchange)?;
                Ok((s, resp))
            });
            let retry = match &attempt {
                Ok((_, resp)) => is_busy(resp),
                Err(OpenError::Connect(e)) => e.kind() == io::ErrorKind::WouldBlock,
                Err(OpenError::Exchange(_)) => false,
            };
            if !retry || start.elapsed() + pause > patience {
                return attempt;
            }
            drop(attempt);
            std::thread::sleep(pause + jitter(pause));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Up to `d` of pseudo-random extra pause, so that clients turned away together do not
    /// come back together (the clock's nanoseconds mixed with the process id).
    fn jitter(d: Duration) -> Duration {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|t| t.subsec_nanos()).unwrap_or(0);
        let x = u64::from(nanos ^ std::process::id().wrapping_mul(2_654_435_761));
        let max = (d.as_micros() as u64).max(1);
        Duration::from_micros((x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % max)
    }

    /// Sends `req` on an open connection and reads the response. If the director has closed
    /// the connection before the request could be written (it turned the client away as
    /// busy), the response it sent is still read and returned.
    pub fn exchange(
        stream: &mut UnixStream,
        req: &Request,
        timeout: Duration,
    ) -> io::Result<Response> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        if let Err(e) = write_frame(stream, &encode_request(req)) {
            if !matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) {
                return Err(e);
            }
            return match read_frame(stream, MAX_RESPONSE).ok().and_then(|b| decode_response(&b).ok()) {
                Some(resp) => Ok(resp),
                None => Err(e),
            };
        }
        let body = read_frame(stream, MAX_RESPONSE).map_err(|e| match e {
            FrameError::Io(e) => e,
            FrameError::Eof => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "director closed the connection",
            ),
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        })?;
        decode_response(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvsadm::ListOptions;
    use crate::model::{ServiceKey, ServiceSpec};
    use proptest::prelude::*;
    use std::io::Cursor;

    #[test]
    fn frame_roundtrip_and_limits() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").unwrap();
        write_frame(&mut buf, b"").unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 5]);
        let mut r = Cursor::new(buf);
        assert_eq!(read_frame(&mut r, 10).unwrap(), b"hello");
        assert_eq!(read_frame(&mut r, 10).unwrap(), b"");
        assert!(matches!(read_frame(&mut r, 10), Err(FrameError::Eof)));
        let mut r = Cursor::new(vec![0, 0, 0, 11, 1]);
        assert!(matches!(
            read_frame(&mut r, 10),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        ));
        let mut r = Cursor::new(vec![0, 0, 0, 5, 1, 2]);
        assert!(matches!(read_frame(&mut r, 10), Err(FrameError::Truncated)));
        let mut r = Cursor::new(vec![0, 0]);
        assert!(matches!(read_frame(&mut r, 10), Err(FrameError::Truncated)));
    }

    #[test]
    fn request_json_roundtrip() {
        let key = ServiceKey::Addr {
            proto: crate::model::Protocol::Tcp,
            addr: Ipv4Addr::new(10, 0, 0, 1),
            port: 80,
        };
        for op in [
            Op::Ipvs(IpvsCommand::AddService(ServiceSpec::new(key))),
            Op::Ipvs(IpvsCommand::Clear),
            Op::Ipvs(IpvsCommand::List(ListOptions {
                numeric: true,
                ..Default::default()
            })),
            Op::Restore(vec![
                IpvsCommand::Clear,
                IpvsCommand::DeleteService(ServiceKey::Fwmark(3)),
            ]),
            Op::AddrAdd {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 24,
                dev: "dpdk0".into(),
            },
            Op::AddrDel {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: None,
                dev: "dpdk0".into(),
            },
            Op::AddrShow,
            Op::NeighShow,
            Op::LinkShow,
            Op::MarkAdd(MarkRule::new(Ipv4Addr::new(10, 0, 0, 1), 32, 7)),
            Op::MarkInsert {
                pos: 1,
                rule: MarkRule::new(Ipv4Addr::new(10, 0, 0, 0), 8, 0),
            },
            Op::MarkDel(MarkRule::new(Ipv4Addr::new(10, 0, 0, 1), 32, 7)),
            Op::MarkDelAt(2),
            Op::MarkFlush,
            Op::MarkShow,
            Op::SysctlShow,
            Op::SysctlSet {
                name: "sloppy_tcp".into(),
                value: 1,
            },
        ] {
            let req = Request::new(op);
            assert_eq!(decode_request(&encode_request(&req)).unwrap(), req);
        }
        let body = br#"{"v":1,"op":{"Ipvs":{"AddService":{"key":{"addr":{"proto":"tcp","addr":"10.0.0.1","port":80}},"scheduler":"wlc","flags":{"flag1":false,"flag2":false,"flag3":false},"persistent":null,"netmask":"255.255.255.255","ops":false,"pe":null}}}}"#;
        assert_eq!(
            decode_request(body).unwrap().op,
            Op::Ipvs(IpvsCommand::AddService(ServiceSpec::new(key)))
        );
        assert_eq!(
            decode_request(br#"{"v":1,"op":"AddrShow"}"#).unwrap().op,
            Op::AddrShow
        );
        // The documented JSON forms.
        let rule = MarkRule {
            in_dev: Some("dpdk0".into()),
            dst: Ipv4Addr::new(192, 168, 195, 200),
            prefix_len: 32,
            proto: Some(crate::model::Protocol::Tcp),
            dport: Some((80, 80)),
            mark: 10,
        };
        assert_eq!(
            decode_request(
                br#"{"v":1,"op":{"MarkAdd":{"in_dev":"dpdk0","dst":"192.168.195.200","prefix_len":32,"proto":"tcp","dport":[80,80],"mark":10}}}"#
            )
            .unwrap()
            .op,
            Op::MarkAdd(rule.clone())
        );
        assert_eq!(
            decode_request(br#"{"v":1,"op":{"MarkInsert":{"pos":1,"rule":{"in_dev":null,"dst":"10.0.0.0","prefix_len":8,"proto":null,"dport":null,"mark":0}}}}"#)
                .unwrap()
                .op,
            Op::MarkInsert {
                pos: 1,
                rule: MarkRule::new(Ipv4Addr::new(10, 0, 0, 0), 8, 0)
            }
        );
        assert_eq!(
            decode_request(br#"{"v":1,"op":{"MarkDelAt":2}}"#)
                .unwrap()
                .op,
            Op::MarkDelAt(2)
        );
        assert_eq!(
            decode_request(br#"{"v":1,"op":"MarkFlush"}"#).unwrap().op,
            Op::MarkFlush
        );
        assert_eq!(
            decode_request(
                br#"{"v":1,"op":{"SysctlSet":{"name":"net.ipv4.vs.sloppy_tcp","value":1}}}"#
            )
            .unwrap()
            .op,
            Op::SysctlSet {
                name: "net.ipv4.vs.sloppy_tcp".into(),
                value: 1
            }
        );
        let sys = serde_json::to_value(Reply::Sysctls(Sysctls::default())).unwrap();
        assert_eq!(sys["Sysctls"]["conn_reuse_mode"], 1);
        assert_eq!(sys["Sysctls"]["pmtu_disc"], true);
        let marks = serde_json::to_value(Reply::Marks(vec![MarkStatus {
            rule,
            packets: 3,
            bytes: 180,
        }]))
        .unwrap();
        assert_eq!(marks["Marks"][0]["rule"]["dport"][1], 80);
        assert_eq!(marks["Marks"][0]["packets"], 3);
        assert_eq!(
            decode_request(br#"{"v":1,"op":{"Ipvs":"Clear"}}"#)
                .unwrap()
                .op,
            Op::Ipvs(IpvsCommand::Clear)
        );
    }

    #[test]
    fn bad_requests_get_clear_errors() {
        let e = decode_request(b"\xff garbage").unwrap_err();
        assert!(
            e.message.starts_with("malformed request: not JSON"),
            "{}",
            e.message
        );
        let e = decode_request(br#"{"op":"AddrShow"}"#).unwrap_err();
        assert!(
            e.message.contains("missing protocol version"),
            "{}",
            e.message
        );
        for body in [
            &br#""AddrShow""#[..],
            b"17",
            br#"{"v":"1","op":"AddrShow"}"#,
        ] {
            let e = decode_request(body).unwrap_err();
            assert!(
                e.message.contains("missing protocol version"),
                "{}",
                e.message
            );
        }
        let e = decode_request(br#"{"v":2,"op":"AddrShow"}"#).unwrap_err();
        assert_eq!(
            e.message,
            "unsupported protocol version 2 (this side speaks version 1)"
        );
        let e = decode_request(br#"{"v":1,"op":"Reboot"}"#).unwrap_err();
        assert!(
            e.message.starts_with("malformed request:") && e.message.contains("Reboot"),
            "{}",
            e.message
        );
        assert_eq!(e.exit_code, 1);
    }

    #[test]
    fn response_roundtrip() {
        let r = Response::err(CtlError::no_such_service());
        assert_eq!(decode_response(&encode_response(&r)).unwrap(), r);
        let r = Response::ok(Reply::Batch(vec![Ok(()), Err(CtlError::service_exists())]));
        assert_eq!(decode_response(&encode_response(&r)).unwrap(), r);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Cursor::new(bytes.clone());
            while read_frame(&mut r, 32).is_ok() {}
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }

        #[test]
        fn framed_random_json_never_panics(s in "\\PC{0,80}") {
            let mut buf = Vec::new();
            write_frame(&mut buf, s.as_bytes()).unwrap();
            let body = read_frame(&mut Cursor::new(buf), MAX_REQUEST).unwrap();
            prop_assert_eq!(&body, s.as_bytes());
            let _ = decode_request(&body);
        }
    }
}
