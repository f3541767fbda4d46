//! ipvsadm command-line parsing: an argv (without the program name) becomes an
//! [`IpvsCommand`], with ipvsadm 1.31's rules and messages.
//!
//! Invariants and choices:
//! - Option syntax is popt's, as ipvsadm uses it: short options may be clustered (`-Ln`,
//!   `-At VIP:80`, `-p600`), long options are exact (no abbreviations) and take `=value` or the
//!   next word; a required argument takes the next word even if it starts with `-`; the only
//!   optional argument (`-p`/`--persistent`) takes the next word only if it does not start with
//!   `-`. Non-option words are collected as leftovers (`--set 900 120 300`); `--` ends options.
//! - The first option must be a command, else "Try `PROG -h' ..." (exit 255); a second command
//!   gives "multiple commands specified" (exit 2). Options are validated in the order given,
//!   each as soon as it is seen (so the first bad one is reported, as ipvsadm does), then the
//!   command/option legality table is checked (same table, names and messages as ipvsadm).
//! - popt-level errors (unknown option, missing argument) exit 255; ipvsadm's own input
//!   checks exit 2 (see [`crate::error`]).
//! - IPv6 and SCTP are refused at parse time (exit 255): the model is IPv4 TCP/UDP only. Modes
//!   the director does not forward (`-m`, `-i`, `--pe`, `-o`) are parsed faithfully and
//!   refused by [`IpvsCommand::validate`] with a one-line reason.
//! - Parsing is pure (names come from a [`Names`]) and never panics on any input.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::error::CtlError;
use crate::model::{
    ConfigCommand, FwdMethod, Protocol, SchedFlags, ServerSpec, ServiceKey, ServiceSpec, Timeouts,
    DEFAULT_PERSISTENT_TIMEOUT, MAX_TIMEOUT, MAX_WEIGHT, SCHED_NAME_MAX,
};
use crate::names::{Names, NumericOnly};

/// Program name used in messages when none is given.
pub const DEFAULT_PROG: &str = "lbadm";

/// What `-L`/`-l` lists and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOptions {
    /// List only this service (`-L -t VIP:port`).
    pub service: Option<ServiceKey>,
    /// `-c`: connection entries.
    pub connections: bool,
    /// `--timeout`: the three settable timeouts.
    pub timeout: bool,
    /// `--daemon`: sync daemon state.
    pub daemon: bool,
    /// `-n`: numeric addresses and ports.
    pub numeric: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--rate`.
    pub rate: bool,
    /// `--thresholds`.
    pub thresholds: bool,
    /// `--persistent-conn`.
    pub persistent_conn: bool,
    /// `--nosort`: kernel order.
    pub nosort: bool,
    /// `--exact`: full numbers in --stats/--rate.
    pub exact: bool,
    /// `--tun-info`.
    pub tun_info: bool,
}

/// Sync daemon role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonRole {
    /// Sends connection updates.
    Master,
    /// Receives connection updates.
    Backup,
}

/// `--start-daemon` parameters as given (`None`: the kernel's default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonSpec {
    /// Role.
    pub role: DaemonRole,
    /// `--mcast-interface` (default eth0).
    pub mcast_interface: String,
    /// `--syncid`.
    pub syncid: Option<u8>,
    /// `--mcast-group`.
    pub mcast_group: Option<Ipv4Addr>,
    /// `--mcast-port`.
    pub mcast_port: Option<u16>,
    /// `--mcast-ttl`.
    pub mcast_ttl: Option<u8>,
    /// `--sync-maxlen`.
    pub sync_maxlen: Option<u16>,
}

/// One parsed ipvsadm invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpvsCommand {
    /// `-A`.
    AddService(ServiceSpec),
    /// `-E` (full replacement).
    EditService(ServiceSpec),
    /// `-D`.
    DeleteService(ServiceKey),
    /// `-C`.
    Clear,
    /// `-a`.
    AddServer {
        /// The service.
        service: ServiceKey,
        /// The server (port already normalised as ipvsadm does).
        server: ServerSpec,
    },
    /// `-e` (full replacement).
    EditServer {
        /// The service.
        service: ServiceKey,
        /// The server.
        server: ServerSpec,
    },
    /// `-d`.
    DeleteServer {
        /// The service.
        service: ServiceKey,
        /// Server address.
        addr: Ipv4Addr,
        /// Server port (the service port when omitted after the service option).
        port: u16,
    },
    /// `--set tcp tcpfin udp`.
    SetTimeouts(Timeouts),
    /// `-L`/`-l` (also what no arguments at all mean).
    List(ListOptions),
    /// `-S [-n]`.
    Save {
        /// `-n`.
        numeric: bool,
    },
    /// `-Z [service]`.
    Zero(Option<ServiceKey>),
    /// `-R`: rules follow on standard input (the CLI reads and parses them).
    Restore,
    /// `--start-daemon`.
    StartDaemon(DaemonSpec),
    /// `--stop-daemon`.
    StopDaemon(DaemonRole),
    /// `-h`.
    Help,
    /// `-v`.
    Version,
}

impl IpvsCommand {
    /// Refuses, with a one-line reason (exit status 255), what the director does not do:
    /// masquerading and tunnelling servers, persistence engines, one-packet scheduling.
    /// Everything else is left to the config engine (or, for the sync daemon, the backend).
    pub fn validate(&self) -> Result<(), CtlError> {
        match self {
            IpvsCommand::AddService(spec) | IpvsCommand::EditService(spec) => {
                if let Some(pe) = &spec.pe {
                    return Err(CtlError::refused(format!(
                        "director does not support persistence engines (--pe {pe})"
                    )));
                }
                if spec.ops {
                    return Err(CtlError::refused("director does not support one-packet scheduling (-o/--ops)"));
                }
                Ok(())
            }
            IpvsCommand::AddServer { server, .. } | IpvsCommand::EditServer { server, .. } => match server.fwd {
                FwdMethod::Route | FwdMethod::Local => Ok(()),
                FwdMethod::Masq => Err(CtlError::refused(
                    "director forwards by direct routing only: masquerading (-m) is not supported",
                )),
                FwdMethod::Tunnel => Err(CtlError::refused(
                    "director forwards by direct routing only: tunnelling (-i) is not supported",
                )),
            },
            _ => Ok(()),
        }
    }

    /// The configuration change this command makes, if it is one.
    pub fn config_command(&self) -> Option<ConfigCommand> {
        Some(match self {
            IpvsCommand::AddService(s) => ConfigCommand::AddService(s.clone()),
            IpvsCommand::EditService(s) => ConfigCommand::EditService(s.clone()),
            IpvsCommand::DeleteService(k) => ConfigCommand::DeleteService(*k),
            IpvsCommand::Clear => ConfigCommand::Clear,
            IpvsCommand::AddServer { service, server } => ConfigCommand::AddServer {
                service: *service,
                server: server.clone(),
            },
            IpvsCommand::EditServer { service, server } => ConfigCommand::EditServer {
                service: *service,
                server: server.clone(),
            },
            IpvsCommand::DeleteServer {
                service,
                addr,
                port,
            } => ConfigCommand::DeleteServer {
                service: *service,
                addr: *addr,
                port: *port,
            },
            IpvsCommand::SetTimeouts(t) => ConfigCommand::SetTimeouts(*t),
            _ => return None,
        })
    }
}

/// Context for parsing: name resolution and the program name used in messages.
pub struct ParseEnv<'a> {
    /// Host and service names for `host[:port]` arguments.
    pub names: &'a dyn Names,
    /// Program name for "Try `PROG -h' ...".
    pub prog: &'a str,
}

impl Default for ParseEnv<'static> {
    fn default() -> Self {
        ParseEnv {
            names: &NumericOnly,
            prog: DEFAULT_PROG,
        }
    }
}

/// Parses with numeric-only names and the default program name.
pub fn parse(args: &[String]) -> Result<IpvsCommand, CtlError> {
    parse_with(args, &ParseEnv::default())
}

// ---------------------------------------------------------------------------------------------
// Option table (popt view).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    AddService,
    EditService,
    DeleteService,
    Clear,
    List,
    Zero,
    AddServer,
    EditServer,
    DeleteServer,
    Set,
    Help,
    Version,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    TcpService,
    UdpService,
    SctpService,
    FwmarkService,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masquerading,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNoCsum,
    TunCsum,
    TunRemCsum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgKind {
    None,
    Required,
    Optional,
}

struct OptDef {
    long: Option<&'static str>,
    short: Option<char>,
    arg: ArgKind,
    tag: Tag,
}

const fn o(long: Option<&'static str>, short: Option<char>, arg: ArgKind, tag: Tag) -> OptDef {
    OptDef {
        long,
        short,
        arg,
        tag,
    }
}

use ArgKind::{None as NoArg, Optional as OptArg, Required as ReqArg};

const OPTIONS: &[OptDef] = &[
    o(Some("add-service"), Some('A'), NoArg, Tag::AddService),
    o(Some("edit-service"), Some('E'), NoArg, Tag::EditService),
    o(Some("delete-service"), Some('D'), NoArg, Tag::DeleteService),
    o(Some("clear"), Some('C'), NoArg, Tag::Clear),
    o(Some("list"), Some('L'), NoArg, Tag::List),
    o(None, Some('l'), NoArg, Tag::List),
    o(Some("zero"), Some('Z'), NoArg, Tag::Zero),
    o(Some("add-server"), Some('a'), NoArg, Tag::AddServer),
    o(Some("edit-server"), Some('e'), NoArg, Tag::EditServer),
    o(Some("delete-server"), Some('d'), NoArg, Tag::DeleteServer),
    o(Some("set"), None, NoArg, Tag::Set),
    o(Some("help"), Some('h'), NoArg, Tag::Help),
    o(Some("version"), Some('v'), NoArg, Tag::Version),
    o(Some("restore"), Some('R'), NoArg, Tag::Restore),
    o(Some("save"), Some('S'), NoArg, Tag::Save),
    o(Some("start-daemon"), None, ReqArg, Tag::StartDaemon),
    o(Some("stop-daemon"), None, ReqArg, Tag::StopDaemon),
    o(Some("tcp-service"), Some('t'), ReqArg, Tag::TcpService),
    o(Some("udp-service"), Some('u'), ReqArg, Tag::UdpService),
    o(Some("sctp-service"), None, ReqArg, Tag::SctpService),
    o(
        Some("fwmark-service"),
        Some('f'),
        ReqArg,
        Tag::FwmarkService,
    ),
    o(Some("scheduler"), Some('s'), ReqArg, Tag::Scheduler),
    o(Some("persistent"), Some('p'), OptArg, Tag::Persistent),
    o(Some("netmask"), Some('M'), ReqArg, Tag::Netmask),
    o(Some("real-server"), Some('r'), ReqArg, Tag::RealServer),
    o(Some("masquerading"), Some('m'), NoArg, Tag::Masquerading),
    o(Some("ipip"), Some('i'), NoArg, Tag::Ipip),
    o(Some("gatewaying"), Some('g'), NoArg, Tag::Gatewaying),
    o(Some("weight"), Some('w'), ReqArg, Tag::Weight),
    o(Some("u-threshold"), Some('x'), ReqArg, Tag::UThreshold),
    o(Some("l-threshold"), Some('y'), ReqArg, Tag::LThreshold),
    o(Some("numeric"), Some('n'), NoArg, Tag::Numeric),
    o(Some("connection"), Some('c'), NoArg, Tag::Connection),
    o(Some("mcast-interface"), None, ReqArg, Tag::McastInterface),
    o(Some("syncid"), None, ReqArg, Tag::SyncId),
    o(Some("timeout"), None, NoArg, Tag::Timeout),
    o(Some("daemon"), None, NoArg, Tag::Daemon),
    o(Some("stats"), None, NoArg, Tag::Stats),
    o(Some("rate"), None, NoArg, Tag::Rate),
    o(Some("thresholds"), None, NoArg, Tag::Thresholds),
    o(Some("persistent-conn"), None, NoArg, Tag::PersistentConn),
    o(Some("nosort"), None, NoArg, Tag::NoSort),
    o(Some("sort"), None, NoArg, Tag::Sort),
    o(Some("exact"), Some('X'), NoArg, Tag::Exact),
    o(Some("ipv6"), Some('6'), NoArg, Tag::Ipv6),
    o(Some("ops"), Some('o'), NoArg, Tag::Ops),
    o(Some("pe"), None, ReqArg, Tag::Pe),
    o(Some("sched-flags"), Some('b'), ReqArg, Tag::SchedFlags),
    o(Some("mcast-group"), None, ReqArg, Tag::McastGroup),
    o(Some("mcast-port"), None, ReqArg, Tag::McastPort),
    o(Some("mcast-ttl"), None, ReqArg, Tag::McastTtl),
    o(Some("sync-maxlen"), None, ReqArg, Tag::SyncMaxlen),
    o(Some("tun-info"), None, NoArg, Tag::TunInfo),
    o(Some("tun-type"), None, ReqArg, Tag::TunType),
    o(Some("tun-port"), None, ReqArg, Tag::TunPort),
    o(Some("tun-nocsum"), None, NoArg, Tag::TunNoCsum),
    o(Some("tun-csum"), None, NoArg, Tag::TunCsum),
    o(Some("tun-remcsum"), None, NoArg, Tag::TunRemCsum),
];

// Option bits of the legality table, in ipvsadm's column order.
const OPT_NUMERIC: usize = 0;
const OPT_CONNECTION: usize = 1;
const OPT_SERVICE: usize = 2;
const OPT_SCHEDULER: usize = 3;
const OPT_PERSISTENT: usize = 4;
const OPT_NETMASK: usize = 5;
const OPT_SERVER: usize = 6;
const OPT_FORWARD: usize = 7;
const OPT_WEIGHT: usize = 8;
const OPT_UTHRESHOLD: usize = 9;
const OPT_LTHRESHOLD: usize = 10;
const OPT_MCAST: usize = 11;
const OPT_TIMEOUT: usize = 12;
const OPT_DAEMON: usize = 13;
const OPT_STATS: usize = 14;
const OPT_RATE: usize = 15;
const OPT_THRESHOLDS: usize = 16;
const OPT_PERSISTENTCONN: usize = 17;
const OPT_NOSORT: usize = 18;
const OPT_SYNCID: usize = 19;
const OPT_EXACT: usize = 20;
const OPT_ONEPACKET: usize = 21;
const OPT_PE: usize = 22;
const OPT_SCHED_FLAGS: usize = 23;
const OPT_MCAST_GROUP: usize = 24;
const OPT_MCAST_PORT: usize = 25;
const OPT_MCAST_TTL: usize = 26;
const OPT_SYNC_MAXLEN: usize = 27;
const OPT_TUN_INFO: usize = 28;
const OPT_TUN_TYPE: usize = 29;
const OPT_TUN_PORT: usize = 30;
const OPT_TUN_NOCSUM: usize = 31;
const OPT_TUN_CSUM: usize = 32;
const OPT_TUN_REMCSUM: usize = 33;
const NUMBER_OF_OPT: usize = 34;

const OPT_NAMES: [&str; NUMBER_OF_OPT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Del => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DelDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Timeout => "set",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
        }
    }

    /// Row of the legality table: one char per option column. '+' compulsory, 'x' illegal,
    /// '1' exclusive (at most one of the '1' options), '.' optional.
    fn legality(self) -> &'static str {
        match self {
            Cmd::Add | Cmd::Edit => "xx+...xxxxxxxxxxxxxxx...xxxxxxxxxx",
            Cmd::Del => "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            Cmd::Flush | Cmd::Timeout | Cmd::Restore => "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            Cmd::List => ".11xxxxxxxxx11.......xxxxxxx.xxxxx",
            Cmd::AddDest | Cmd::EditDest => "xx+xxx+....xxxxxxxxxxxxxxxxxx.....",
            Cmd::DelDest => "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
            Cmd::StartDaemon => "xxxxxxxxxxx.xxxxxxx.xxxx....xxxxxx",
            Cmd::StopDaemon => "xxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxx",
            Cmd::Save => ".xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            Cmd::Zero => "xx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        }
    }
}

fn generic_opt_check(cmd: Cmd, options: u64) -> Result<(), CtlError> {
    let row = cmd.legality().as_bytes();
    let rules = row
        .iter()
        .enumerate()
        .take(NUMBER_OF_OPT)
        .map(|(j, &rule)| (j, rule));
    check_legality(rules, options, cmd.name(), "command")
}

/// Checks the set `options` against `(option column, rule)` pairs of a legality row; `name`
/// and `kind` (e.g. "command", "tunnel type") describe what the row belongs to in errors.
fn check_legality(
    rules: impl Iterator<Item = (usize, u8)>,
    options: u64,
    name: &str,
    kind: &str,
) -> Result<(), CtlError> {
    let mut last: Option<usize> = None;
    for (k, rule) in rules {
        if options & (1u64 << k) == 0 {
            if rule == b'+' {
                return Err(CtlError::input(format!(
                    "You need to supply the '{}' option for the '{}' {}",
                    OPT_NAMES[k], name, kind
                )));
            }
            continue;
        }
        if rule == b'x' {
            return Err(CtlError::input(format!(
                "Illegal '{}' option with the '{}' {}",
                OPT_NAMES[k], name, kind
            )));
        }
        if rule == b'1' {
            if let Some(l) = last {
                return Err(CtlError::input(format!(
                    "The option '{}' conflicts with the '{}' option in the '{}' {}",
                    OPT_NAMES[k], OPT_NAMES[l], name, kind
                )));
            }
            last = Some(k);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TunType {
    Ipip,
    Gue,
    Gre,
}

impl TunType {
    fn name(self) -> &'static str {
        match self {
            TunType::Ipip => "ipip",
            TunType::Gue => "gue",
            TunType::Gre => "gre",
        }
    }

    /// Legality of tun-port, tun-nocsum, tun-csum, tun-remcsum for this tunnel type.
    fn legality(self) -> &'static str {
        match self {
            TunType::Ipip => "xxxx",
            TunType::Gue => "+111",
            TunType::Gre => "x111",
        }
    }
}

fn tunnel_opt_check(tun: TunType, options: u64) -> Result<(), CtlError> {
    const COLS: [usize; 4] = [OPT_TUN_PORT, OPT_TUN_NOCSUM, OPT_TUN_CSUM, OPT_TUN_REMCSUM];
    let rules = tun
        .legality()
        .bytes()
        .enumerate()
        .map(|(j, rule)| (COLS[j], rule));
    check_legality(rules, options, tun.name(), "tunnel type")
}

// ---------------------------------------------------------------------------------------------
// popt-style tokenizer.

struct Event {
    tag: Tag,
    arg: Option<String>,
}

struct Popt<'a> {
    args: &'a [String],
    next: usize,
    /// (argv index, byte offset) inside a short-option cluster being consumed.
    cluster: Option<(usize, usize)>,
    only_args: bool,
    leftovers: Vec<String>,
}

impl<'a> Popt<'a> {
    fn new(args: &'a [String]) -> Self {
        Popt {
            args,
            next: 0,
            cluster: None,
            only_args: false,
            leftovers: Vec::new(),
        }
    }

    /// The next option event; `None` at the end of argv.
    fn next_event(&mut self) -> Option<Result<Event, CtlError>> {
        loop {
            if let Some((idx, off)) = self.cluster {
                let args = self.args;
                let tok = &args[idx];
                let Some(c) = tok[off..].chars().next() else {
                    self.cluster = None;
                    continue;
                };
                let after = off + c.len_utf8();
                let Some(def) = OPTIONS.iter().find(|d| d.short == Some(c)) else {
                    self.cluster = None;
                    return Some(Err(CtlError::unknown_option(tok)));
                };
                let rest = &tok[after..];
                let raw = tok.clone();
                match def.arg {
                    ArgKind::None => {
                        self.cluster = if rest.is_empty() {
                            None
                        } else {
                            Some((idx, after))
                        };
                        return Some(Ok(Event {
                            tag: def.tag,
                            arg: None,
                        }));
                    }
                    ArgKind::Required | ArgKind::Optional => {
                        self.cluster = None;
                        if !rest.is_empty() {
                            return Some(Ok(Event {
                                tag: def.tag,
                                arg: Some(rest.to_string()),
                            }));
                        }
                        return Some(self.take_next_arg(def, raw));
                    }
                }
            }
            let tok = self.args.get(self.next)?;
            let idx = self.next;
            self.next += 1;
            if self.only_args || tok == "-" || !tok.starts_with('-') {
                self.leftovers.push(tok.clone());
                continue;
            }
            if tok == "--" {
                self.only_args = true;
                continue;
            }
            if let Some(body) = tok.strip_prefix("--") {
                let (name, value) = match body.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (body, None),
                };
                let Some(def) = OPTIONS.iter().find(|d| d.long == Some(name)) else {
                    return Some(Err(CtlError::unknown_option(tok)));
                };
                let raw = tok.clone();
                return Some(match (def.arg, value) {
                    (ArgKind::None, Some(_)) => Err(CtlError::unwanted_argument(tok)),
                    (ArgKind::None, None) => Ok(Event {
                        tag: def.tag,
                        arg: None,
                    }),
                    (_, Some(v)) => Ok(Event {
                        tag: def.tag,
                        arg: Some(v.to_string()),
                    }),
                    (_, None) => self.take_next_arg(def, raw),
                });
            }
            // Short option cluster.
            self.cluster = Some((idx, 1));
        }
    }

    fn take_next_arg(&mut self, def: &OptDef, raw: String) -> Result<Event, CtlError> {
        match self.args.get(self.next) {
            Some(next) if def.arg == ArgKind::Required || !next.starts_with('-') => {
                self.next += 1;
                Ok(Event {
                    tag: def.tag,
                    arg: Some(next.clone()),
                })
            }
            _ if def.arg == ArgKind::Optional => Ok(Event {
                tag: def.tag,
                arg: None,
            }),
            _ => Err(CtlError::missing_argument(&raw)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// C-compatible number and address parsing.

fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// `strtol(s, &end, 10)` requiring the whole string to be consumed; `None` on no digits,
/// trailing garbage or overflow of a 64-bit long.
fn c_strtol(s: &str) -> Option<i64> {
    let t = s.trim_start_matches(is_c_space);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i64 = 0;
    for b in digits.bytes() {
        v = v.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

/// ipvsadm's `string_to_number`: whole-string decimal in `[min, max]`.
fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    c_strtol(s).filter(|v| (min..=max).contains(v))
}

/// ipvsadm's `str_is_digit` (true for the empty string, as in C).
/// `arg` as a number in `min..=max`, or "illegal WHAT specified".
fn number_arg(arg: &str, min: i64, max: i64, what: &str) -> Result<i64, CtlError> {
    string_to_number(arg, min, max)
        .ok_or_else(|| CtlError::input(format!("illegal {what} specified")))
}

fn str_is_digit(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// glibc `inet_aton`: 1 to 4 parts, each decimal, octal (`0`) or hex (`0x`); the last part
/// fills the remaining bytes; trailing whitespace (and anything after it) is ignored.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut parts: Vec<u64> = Vec::with_capacity(4);
    let mut val: u64;
    loop {
        if !b.get(i).is_some_and(|c| c.is_ascii_digit()) {
            return None;
        }
        val = 0;
        let mut base = 10u64;
        if b[i] == b'0' {
            i += 1;
            if matches!(b.get(i), Some(b'x') | Some(b'X')) {
                base = 16;
                i += 1;
            } else {
                base = 8;
            }
        }
        while let Some(&c) = b.get(i) {
            let d = match c {
                b'0'..=b'9' => u64::from(c - b'0'),
                b'a'..=b'f' if base == 16 => u64::from(c - b'a' + 10),
                b'A'..=b'F' if base == 16 => u64::from(c - b'A' + 10),
                _ => break,
            };
            if base == 8 && d >= 8 {
                return None;
            }
            val = val * base + d;
            if val > 0xffff_ffff {
                return None;
            }
            i += 1;
        }
        if b.get(i) == Some(&b'.') {
            if parts.len() >= 3 || val > 0xff {
                return None;
            }
            parts.push(val);
            i += 1;
        } else {
            break;
        }
    }
    if let Some(&c) = b.get(i) {
        if !is_c_space(c as char) {
            return None;
        }
    }
    let max: u64 = match parts.len() {
        0 => 0xffff_ffff,
        1 => 0x00ff_ffff,
        2 => 0xffff,
        _ => 0xff,
    };
    if val > max {
        return None;
    }
    let mut out: u64 = 0;
    for (k, p) in parts.iter().enumerate() {
        out |= p << (24 - 8 * k);
    }
    Some(Ipv4Addr::from((out | val) as u32))
}

fn unsupported_ipv6(what: &str) -> CtlError {
    CtlError::refused(format!("director does not support IPv6 ({what})"))
}

/// ipvsadm's `parse_service`: `Ok(None)` is SERVICE_NONE (caller reports its own message),
/// `Ok(Some((addr, port)))` with `port: None` when no port was given.
fn parse_service(
    buf: &str,
    proto: Option<Protocol>,
    names: &dyn Names,
) -> Result<Option<(Ipv4Addr, Option<u16>)>, CtlError> {
    if str_is_digit(buf) {
        return Ok(None);
    }
    let mut s = buf;
    if let Some(inner) = buf.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Ok(None);
        };
        if !after.starts_with(':') {
            return Ok(None);
        }
        s = host;
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return Err(unsupported_ipv6(buf));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let Some(addr) = inet_aton(host).or_else(|| names.host_to_addr(host)) else {
        return Ok(None);
    };
    let port = match port {
        None => None,
        Some(p) => match string_to_number(p, 0, 65535) {
            Some(n) => Some(n as u16),
            None => match proto.and_then(|pr| names.service_to_port(p, pr)) {
                Some(n) => Some(n),
                None => return Ok(None),
            },
        },
    };
    Ok(Some((addr, port)))
}

fn parse_timeout(arg: Option<&str>, min: u32, max: u32) -> Result<u32, CtlError> {
    match arg {
        None => Ok(DEFAULT_PERSISTENT_TIMEOUT),
        Some(s) => string_to_number(s, i64::from(min), i64::from(max))
            .map(|v| v as u32)
            .ok_or_else(|| CtlError::invalid_timeout(s)),
    }
}

fn parse_fwmark(s: &str) -> Result<u32, CtlError> {
    match c_strtol(s) {
        Some(v) if v > 0 && v <= i64::from(u32::MAX) => Ok(v as u32),
        _ => Err(CtlError::invalid_fwmark(s)),
    }
}

fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

// ---------------------------------------------------------------------------------------------
// The parser proper.

struct State {
    options: u64,
    proto: Option<Protocol>,
    svc_addr: Ipv4Addr,
    svc_port: u16,
    fwmark: u32,
    sched: Option<String>,
    persistent: Option<u32>,
    netmask: Ipv4Addr,
    ops: bool,
    pe: Option<String>,
    sched_flags_arg: Option<String>,
    dest_addr: Ipv4Addr,
    dest_port: u16,
    fwd: FwdMethod,
    weight: u32,
    u_threshold: u32,
    l_threshold: u32,
    tun_type: TunType,
    list: ListOptions,
    daemon: Option<DaemonSpec>,
    stop_role: Option<DaemonRole>,
}

impl State {
    fn set_option(&mut self, opt: usize) -> Result<(), CtlError> {
        let bit = 1u64 << opt;
        if self.options & bit != 0 {
            return Err(CtlError::input(format!(
                "multiple '{}' options specified",
                OPT_NAMES[opt]
            )));
        }
        self.options |= bit;
        Ok(())
    }

    fn has(&self, opt: usize) -> bool {
        self.options & (1u64 << opt) != 0
    }

    fn service_key(&self) -> ServiceKey {
        if self.fwmark != 0 {
            ServiceKey::Fwmark(self.fwmark)
        } else {
            ServiceKey::Addr {
                proto: self.proto.unwrap_or(Protocol::Tcp),
                addr: self.svc_addr,
                port: self.svc_port,
            }
        }
    }
}

fn daemon_role(arg: &str, err: &str) -> Result<DaemonRole, CtlError> {
    match arg {
        "master" => Ok(DaemonRole::Master),
        "backup" => Ok(DaemonRole::Backup),
        _ => Err(CtlError::input(err)),
    }
}

/// Parses an ipvsadm argv (without the program name). No arguments at all means `-L`.
pub fn parse_with(args: &[String], env: &ParseEnv<'_>) -> Result<IpvsCommand, CtlError> {
    if args.is_empty() {
        return Ok(IpvsCommand::List(ListOptions::default()));
    }
    let mut p = Popt::new(args);
    let first = match p.next_event() {
        Some(Ok(ev)) => ev,
        _ => return Err(CtlError::try_help(env.prog)),
    };
    let mut st = State {
        options: 0,
        proto: None,
        svc_addr: Ipv4Addr::UNSPECIFIED,
        svc_port: 0,
        fwmark: 0,
        sched: None,
        persistent: None,
        netmask: Ipv4Addr::BROADCAST,
        ops: false,
        pe: None,
        sched_flags_arg: None,
        dest_addr: Ipv4Addr::UNSPECIFIED,
        dest_port: 0,
        fwd: FwdMethod::Route,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
        tun_type: TunType::Ipip,
        list: ListOptions::default(),
        daemon: None,
        stop_role: None,
    };
    let cmd = match first.tag {
        Tag::AddService => Cmd::Add,
        Tag::EditService => Cmd::Edit,
        Tag::DeleteService => Cmd::Del,
        Tag::AddServer => Cmd::AddDest,
        Tag::EditServer => Cmd::EditDest,
        Tag::DeleteServer => Cmd::DelDest,
        Tag::Clear => Cmd::Flush,
        Tag::List => Cmd::List,
        Tag::Zero => Cmd::Zero,
        Tag::Set => Cmd::Timeout,
        Tag::Restore => Cmd::Restore,
        Tag::Save => Cmd::Save,
        Tag::StartDaemon => {
            let role = daemon_role(
                first.arg.as_deref().unwrap_or(""),
                "illegal start-daemon parameter specified",
            )?;
            st.daemon = Some(DaemonSpec {
                role,
                mcast_interface: String::new(),
                syncid: None,
                mcast_group: None,
                mcast_port: None,
                mcast_ttl: None,
                sync_maxlen: None,
            });
            Cmd::StartDaemon
        }
        Tag::StopDaemon => {
            st.stop_role = Some(daemon_role(
                first.arg.as_deref().unwrap_or(""),
                "illegal start_daemon specified",
            )?);
            Cmd::StopDaemon
        }
        Tag::Help => return Ok(IpvsCommand::Help),
        Tag::Version => return Ok(IpvsCommand::Version),
        _ => return Err(CtlError::try_help(env.prog)),
    };

    while let Some(ev) = p.next_event() {
        let ev = ev?;
        let arg = ev.arg.as_deref().unwrap_or("");
        match ev.tag {
            Tag::AddService
            | Tag::EditService
            | Tag::DeleteService
            | Tag::AddServer
            | Tag::EditServer
            | Tag::DeleteServer
            | Tag::Clear
            | Tag::List
            | Tag::Zero
            | Tag::Set
            | Tag::Restore
            | Tag::Save
            | Tag::StartDaemon
            | Tag::StopDaemon
            | Tag::Help
            | Tag::Version => return Err(CtlError::input("multiple commands specified")),
            Tag::TcpService | Tag::UdpService => {
                st.set_option(OPT_SERVICE)?;
                let proto = if ev.tag == Tag::TcpService {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                st.proto = Some(proto);
                match parse_service(arg, Some(proto), env.names)? {
                    Some((addr, port)) => {
                        st.svc_addr = addr;
                        if let Some(port) = port {
                            st.svc_port = port;
                        }
                    }
                    None => {
                        return Err(CtlError::input(
                            "illegal virtual server address[:port] specified",
                        ))
                    }
                }
            }
            Tag::SctpService => {
                return Err(CtlError::refused(
                    "director does not support SCTP services (--sctp-service)",
                ))
            }
            Tag::FwmarkService => {
                st.set_option(OPT_SERVICE)?;
                st.proto = Some(Protocol::Tcp);
                st.fwmark = parse_fwmark(arg)?;
            }
            Tag::Scheduler => {
                st.set_option(OPT_SCHEDULER)?;
                st.sched = Some(truncate_bytes(arg, SCHED_NAME_MAX));
            }
            Tag::Persistent => {
                st.set_option(OPT_PERSISTENT)?;
                st.persistent = Some(parse_timeout(ev.arg.as_deref(), 1, MAX_TIMEOUT)?);
            }
            Tag::Netmask => {
                st.set_option(OPT_NETMASK)?;
                st.netmask = inet_aton(arg)
                    .or_else(|| env.names.host_to_addr(arg))
                    .ok_or_else(|| {
                        CtlError::input("illegal virtual server persistent mask specified")
                    })?;
            }
            Tag::RealServer => {
                st.set_option(OPT_SERVER)?;
                match parse_service(arg, st.proto, env.names)? {
                    Some((addr, port)) => {
                        st.dest_addr = addr;
                        st.dest_port = port.unwrap_or(st.svc_port);
                    }
                    None => {
                        return Err(CtlError::input(
                            "illegal real server address[:port] specified",
                        ))
                    }
                }
            }
            Tag::Masquerading | Tag::Ipip | Tag::Gatewaying => {
                st.set_option(OPT_FORWARD)?;
                st.fwd = match ev.tag {
                    Tag::Masquerading => FwdMethod::Masq,
                    Tag::Ipip => FwdMethod::Tunnel,
                    _ => FwdMethod::Route,
                };
            }
            Tag::Weight => {
                st.set_option(OPT_WEIGHT)?;
                st.weight = number_arg(arg, 0, i64::from(MAX_WEIGHT), "weight")? as u32;
            }
            Tag::UThreshold => {
                st.set_option(OPT_UTHRESHOLD)?;
                st.u_threshold = number_arg(arg, 0, i64::from(i32::MAX), "u_threshold")? as u32;
            }
            Tag::LThreshold => {
                st.set_option(OPT_LTHRESHOLD)?;
                st.l_threshold = number_arg(arg, 0, i64::from(i32::MAX), "l_threshold")? as u32;
            }
            Tag::Connection => {
                st.set_option(OPT_CONNECTION)?;
                st.list.connections = true;
            }
            Tag::Numeric => {
                st.set_option(OPT_NUMERIC)?;
                st.list.numeric = true;
            }
            Tag::McastInterface => {
                st.set_option(OPT_MCAST)?;
                if let Some(d) = st.daemon.as_mut() {
                    d.mcast_interface = truncate_bytes(arg, 15);
                }
            }
            Tag::SyncId => {
                st.set_option(OPT_SYNCID)?;
                let v = number_arg(arg, 0, 255, "syncid")?;
                if let Some(d) = st.daemon.as_mut() {
                    d.syncid = Some(v as u8);
                }
            }
            Tag::Timeout => {
                st.set_option(OPT_TIMEOUT)?;
                st.list.timeout = true;
            }
            Tag::Daemon => {
                st.set_option(OPT_DAEMON)?;
                st.list.daemon = true;
            }
            Tag::Stats => {
                st.set_option(OPT_STATS)?;
                st.list.stats = true;
            }
            Tag::Rate => {
                st.set_option(OPT_RATE)?;
                st.list.rate = true;
            }
            Tag::Thresholds => {
                st.set_option(OPT_THRESHOLDS)?;
                st.list.thresholds = true;
            }
            Tag::PersistentConn => {
                st.set_option(OPT_PERSISTENTCONN)?;
                st.list.persistent_conn = true;
            }
            Tag::NoSort => {
                st.set_option(OPT_NOSORT)?;
                st.list.nosort = true;
            }
            Tag::Sort => {}
            Tag::Exact => {
                st.set_option(OPT_EXACT)?;
                st.list.exact = true;
            }
            Tag::Ipv6 => {
                if st.fwmark != 0 {
                    return Err(unsupported_ipv6("-6"));
                }
                return Err(CtlError::input("-6 used before -f\n"));
            }
            Tag::Ops => {
                st.set_option(OPT_ONEPACKET)?;
                st.ops = true;
            }
            Tag::Pe => {
                st.set_option(OPT_PE)?;
                st.pe = Some(truncate_bytes(arg, 16));
            }
            Tag::SchedFlags => {
                st.set_option(OPT_SCHED_FLAGS)?;
                st.sched_flags_arg = Some(truncate_bytes(arg, 127));
            }
            Tag::McastGroup => {
                st.set_option(OPT_MCAST_GROUP)?;
                if arg.contains(':') {
                    if arg
                        .parse::<Ipv6Addr>()
                        .map(|a| a.is_multicast())
                        .unwrap_or(false)
                    {
                        return Err(unsupported_ipv6(arg));
                    }
                    return Err(CtlError::input(format!("invalid IPv6 mcast-group `{arg}'")));
                }
                let g = arg
                    .parse::<Ipv4Addr>()
                    .ok()
                    .filter(|g| g.is_multicast())
                    .ok_or_else(|| CtlError::input(format!("invalid IPv4 mcast-group `{arg}'")))?;
                if let Some(d) = st.daemon.as_mut() {
                    d.mcast_group = Some(g);
                }
            }
            Tag::McastPort => {
                st.set_option(OPT_MCAST_PORT)?;
                let v = number_arg(arg, 1, 65535, "mcast-port")?;
                if let Some(d) = st.daemon.as_mut() {
                    d.mcast_port = Some(v as u16);
                }
            }
            Tag::McastTtl => {
                st.set_option(OPT_MCAST_TTL)?;
                let v = number_arg(arg, 1, 255, "mcast-ttl")?;
                if let Some(d) = st.daemon.as_mut() {
                    d.mcast_ttl = Some(v as u8);
                }
            }
            Tag::SyncMaxlen => {
                st.set_option(OPT_SYNC_MAXLEN)?;
                let v = number_arg(arg, 1, 65535 - 20 - 8, "sync-maxlen")?;
                if let Some(d) = st.daemon.as_mut() {
                    d.sync_maxlen = Some(v as u16);
                }
            }
            Tag::TunInfo => {
                st.set_option(OPT_TUN_INFO)?;
                st.list.tun_info = true;
            }
            Tag::TunType => {
                st.set_option(OPT_TUN_TYPE)?;
                st.tun_type = match arg {
                    "ipip" => TunType::Ipip,
                    "gue" => TunType::Gue,
                    "gre" => TunType::Gre,
                    _ => return Err(CtlError::input("illegal tunnel type specified")),
                };
            }
            Tag::TunPort => {
                st.set_option(OPT_TUN_PORT)?;
                number_arg(arg, 1, 65535, "tunnel port")?;
            }
            Tag::TunNoCsum => st.set_option(OPT_TUN_NOCSUM)?,
            Tag::TunCsum => st.set_option(OPT_TUN_CSUM)?,
            Tag::TunRemCsum => st.set_option(OPT_TUN_REMCSUM)?,
        }
    }

    let mut leftovers = std::mem::take(&mut p.leftovers).into_iter();
    let mut timeouts = Timeouts {
        tcp: 0,
        tcp_fin: 0,
        udp: 0,
    };
    if cmd == Cmd::Timeout {
        let (Some(a), Some(b), Some(c)) = (leftovers.next(), leftovers.next(), leftovers.next())
        else {
            return Err(CtlError::input("--set option requires 3 timeout values"));
        };
        timeouts = Timeouts {
            tcp: parse_timeout(Some(&a), 0, MAX_TIMEOUT)?,
            tcp_fin: parse_timeout(Some(&b), 0, MAX_TIMEOUT)?,
            udp: parse_timeout(Some(&c), 0, MAX_TIMEOUT)?,
        };
    }
    if let Some(extra) = leftovers.next() {
        return Err(CtlError::input(format!("unexpected argument {extra}")));
    }
    let mut flags = SchedFlags::default();
    if let Some(list) = &st.sched_flags_arg {
        flags = SchedFlags::parse(
            list,
            st.sched
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("wlc"),
        )?;
    }

    generic_opt_check(cmd, st.options)?;

    match cmd {
        Cmd::Add | Cmd::Edit => {
            if st.fwmark == 0 && st.svc_port == 0 && st.persistent.is_none() {
                return Err(CtlError::zero_port());
            }
            if st.ops && st.fwmark == 0 && st.proto != Some(Protocol::Udp) {
                return Err(CtlError::ops_udp_only());
            }
        }
        Cmd::AddDest | Cmd::EditDest => {
            if st.fwmark == 0 && matches!(st.fwd, FwdMethod::Route | FwdMethod::Tunnel) {
                st.dest_port = st.svc_port;
            }
            let tun_opts = (1u64 << OPT_TUN_TYPE)
                | (1u64 << OPT_TUN_PORT)
                | (1u64 << OPT_TUN_NOCSUM)
                | (1u64 << OPT_TUN_CSUM)
                | (1u64 << OPT_TUN_REMCSUM);
            if st.options & tun_opts != 0 && st.fwd != FwdMethod::Tunnel {
                return Err(CtlError::input(
                    "Tunnel options conflict with forward method",
                ));
            }
            tunnel_opt_check(st.tun_type, st.options)?;
        }
        Cmd::List => {
            let a = st.has(OPT_CONNECTION) || st.has(OPT_TIMEOUT) || st.has(OPT_DAEMON);
            let b = st.has(OPT_STATS) || st.has(OPT_RATE) || st.has(OPT_THRESHOLDS);
            let c = (st.has(OPT_TIMEOUT) || st.has(OPT_DAEMON)) && st.has(OPT_PERSISTENTCONN);
            if (a && b) || c {
                return Err(CtlError::input("options conflicts in the list command"));
            }
        }
        _ => {}
    }

    let key = st.service_key();
    let has_service = st.has(OPT_SERVICE);
    let spec = || ServiceSpec {
        key,
        scheduler: st
            .sched
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "wlc".to_string()),
        flags,
        persistent: st.persistent,
        netmask: st.netmask,
        ops: st.ops,
        pe: st.pe.clone(),
    };
    let server = || ServerSpec {
        addr: st.dest_addr,
        port: st.dest_port,
        fwd: st.fwd,
        weight: st.weight,
        u_threshold: st.u_threshold,
        l_threshold: st.l_threshold,
    };
    Ok(match cmd {
        Cmd::Add => IpvsCommand::AddService(spec()),
        Cmd::Edit => IpvsCommand::EditService(spec()),
        Cmd::Del => IpvsCommand::DeleteService(key),
        Cmd::Flush => IpvsCommand::Clear,
        Cmd::List => {
            let mut l = st.list.clone();
            l.service = has_service.then_some(key);
            IpvsCommand::List(l)
        }
        Cmd::AddDest => IpvsCommand::AddServer {
            service: key,
            server: server(),
        },
        Cmd::EditDest => IpvsCommand::EditServer {
            service: key,
            server: server(),
        },
        Cmd::DelDest => IpvsCommand::DeleteServer {
            service: key,
            addr: st.dest_addr,
            port: st.dest_port,
        },
        Cmd::Timeout => IpvsCommand::SetTimeouts(timeouts),
        Cmd::StartDaemon => {
            let mut d = st.daemon.clone().unwrap_or(DaemonSpec {
                role: DaemonRole::Master,
                mcast_interface: String::new(),
                syncid: None,
                mcast_group: None,
                mcast_port: None,
                mcast_ttl: None,
                sync_maxlen: None,
            });
            if d.mcast_interface.is_empty() {
                d.mcast_interface = "eth0".to_string();
            }
            IpvsCommand::StartDaemon(d)
        }
        Cmd::StopDaemon => IpvsCommand::StopDaemon(st.stop_role.unwrap_or(DaemonRole::Master)),
        Cmd::Restore => IpvsCommand::Restore,
        Cmd::Save => IpvsCommand::Save {
            numeric: st.list.numeric,
        },
        Cmd::Zero => IpvsCommand::Zero(has_service.then_some(key)),
    })
}

/// Splits one `-R` input line into an argv like ipvsadm's restore reader: blanks and tabs
/// separate words, and words `ipvsadm` (or `lbadm`) are dropped so lines may start with the
/// program name. An empty result means "skip this line".
pub fn restore_words(line: &str) -> Vec<String> {
    line.split([' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty() && *w != "ipvsadm" && *w != "lbadm")
        .map(str::to_string)
        .collect()
}

/// ipvsadm-style usage text (printed by `-h`), extended with lbadm's own verbs.
pub fn usage(prog: &str) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{prog} {} (director control; ipvsadm v1.31 syntax, IPVS v1.2.1)\n",
        env!("CARGO_PKG_VERSION")
    ));
    s.push_str("Usage:\n");
    for l in [
        "-A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]",
        "-D virtual-service",
        "-C",
        "-R",
        "-S [-n]",
        "-a|e virtual-service -r server-address [options]",
        "-d virtual-service -r server-address",
        "-L|l [virtual-service] [options]",
        "-Z [virtual-service]",
        "--set tcp tcpfin udp",
        "--start-daemon {master|backup} [daemon-options]",
        "--stop-daemon {master|backup}",
        "-h",
        "addr add A.B.C.D/LEN dev dpdkN",
        "addr del A.B.C.D[/LEN] dev dpdkN",
        "addr show [dev dpdkN]",
        "neigh show",
        "link show",
        "sync show",
        "mark add|insert [NUM]|del ... | mark del NUM | mark [show] | mark flush",
        "iptables -t mangle -A|-I|-D|-C|-F|-L|-S PREROUTING ... -j MARK --set-mark N",
        "sysctl [-a] [-n] [-q] [-w] [NAME | NAME=VALUE]...",
        "save [FILE]",
        "restore [--atomic] [FILE|-]",
    ] {
        s.push_str(&format!("  {prog} [--socket PATH] [--json] {l}\n"));
    }
    s.push_str(
        "\nCommands:\n\
Either long or short options are allowed.\n\
  --add-service     -A        add virtual service with options\n\
  --edit-service    -E        edit virtual service with options\n\
  --delete-service  -D        delete virtual service\n\
  --clear           -C        clear the whole table\n\
  --restore         -R        restore rules from stdin\n\
  --save            -S        save rules to stdout\n\
  --add-server      -a        add real server with options\n\
  --edit-server     -e        edit real server with options\n\
  --delete-server   -d        delete real server\n\
  --list            -L|-l     list the table\n\
  --zero            -Z        zero counters in a service or all services\n\
  --set tcp tcpfin udp        set connection timeout values\n\
  --start-daemon              start connection sync daemon\n\
  --stop-daemon               stop connection sync daemon\n\
  --help            -h        display this help message\n\
\n\
virtual-service:\n\
  --tcp-service|-t  service-address   service-address is host[:port]\n\
  --udp-service|-u  service-address   service-address is host[:port]\n\
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n\
\n\
Options:\n\
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|sed|nq|sh|dh|mh|fo|ovf,\n\
                                      the default scheduler is wlc.\n\
  --persistent   -p [timeout]         persistent service (default 360 s)\n\
  --netmask      -M netmask           persistent granularity mask\n\
  --real-server  -r server-address    server-address is host (and port)\n\
  --gatewaying   -g                   gatewaying (direct routing) (default, the only one)\n\
  --weight       -w weight            capacity of real server\n\
  --u-threshold  -x uthreshold        upper threshold of connections\n\
  --l-threshold  -y lthreshold        lower threshold of connections\n\
  --connection   -c                   output of current IPVS connections\n\
  --timeout                           output of timeout (tcp tcpfin udp)\n\
  --daemon                            output of daemon information\n\
  --stats                             output of statistics information\n\
  --rate                              output of rate information\n\
  --exact                             expand numbers (display exact values)\n\
  --thresholds                        output of thresholds information\n\
  --persistent-conn                   output of persistent connection info\n\
  --tun-info                          output of tunnel information\n\
  --nosort                            disable sorting output of service/server entries\n\
  --sort                              does nothing, for backwards compatibility\n\
  --numeric      -n                   numeric output of addresses and ports\n\
  --sched-flags  -b flags             scheduler flags (comma-separated)\n\
\n\
Daemon Options:\n\
  --syncid sid                        syncid for connection sync (default=255)\n\
  --sync-maxlen length                Max sync message length (default=1472)\n\
  --mcast-interface interface         multicast interface for connection sync\n\
  --mcast-group address               IPv4 group (default=224.0.0.81)\n\
  --mcast-port port                   UDP port (default=8848)\n\
  --mcast-ttl ttl                     Multicast TTL (default=1)\n\
\n\
lbadm options (before the command):\n\
  --socket PATH                       control socket (default $DIRECTOR_SOCKET or /run/director.sock)\n\
  --json                              print listings as JSON\n\
\n\
Configuration files (lbadm lines: addr, mark/iptables, sysctl, -S rules):\n\
  save [FILE]                         write the whole configuration (stdout without FILE)\n\
  restore [FILE|-]                    apply a file line by line, like -R\n\
  restore --atomic [FILE|-]           apply a file as one change: all lines or none\n\
\n\
Not supported by the director (refused): -m, -i, --pe, -o, IPv6, SCTP.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::SystemNames;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn p(s: &str) -> Result<IpvsCommand, CtlError> {
        parse(&argv(s))
    }

    fn err(s: &str) -> (String, i32) {
        let e = p(s).expect_err(s);
        (e.message, e.exit_code)
    }

    fn tcp(a: [u8; 4], port: u16) -> ServiceKey {
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: Ipv4Addr::from(a),
            port,
        }
    }

    #[test]
    fn legality_rows_have_one_char_per_option() {
        for c in [
            Cmd::Add,
            Cmd::Edit,
            Cmd::Del,
            Cmd::Flush,
            Cmd::List,
            Cmd::AddDest,
            Cmd::DelDest,
            Cmd::EditDest,
            Cmd::Timeout,
            Cmd::StartDaemon,
            Cmd::StopDaemon,
            Cmd::Restore,
            Cmd::Save,
            Cmd::Zero,
        ] {
            assert_eq!(c.legality().len(), NUMBER_OF_OPT, "{c:?}");
        }
    }

    #[test]
    fn no_args_is_list() {
        assert_eq!(
            parse(&[]).unwrap(),
            IpvsCommand::List(ListOptions::default())
        );
    }

    #[test]
    fn add_service_defaults_and_options() {
        let c = p("-A -t 192.168.1.100:80").unwrap();
        let mut s = ServiceSpec::new(tcp([192, 168, 1, 100], 80));
        assert_eq!(c, IpvsCommand::AddService(s.clone()));
        s.scheduler = "rr".into();
        s.persistent = Some(600);
        s.netmask = Ipv4Addr::new(255, 255, 255, 0);
        assert_eq!(
            p("-A -t 192.168.1.100:80 -s rr -p 600 -M 255.255.255.0").unwrap(),
            IpvsCommand::AddService(s.clone())
        );
        assert_eq!(
            p("--add-service --tcp-service=192.168.1.100:80 --scheduler rr --persistent=600 --netmask 255.255.255.0")
                .unwrap(),
            IpvsCommand::AddService(s.clone())
        );
        // Clustered short options and attached arguments.
        assert_eq!(
            p("-At 192.168.1.100:80 -srr -p600 -M255.255.255.0").unwrap(),
            IpvsCommand::AddService(s)
        );
    }

    #[test]
    fn persistent_optional_value() {
        let get = |s: &str| match p(s).unwrap() {
            IpvsCommand::AddService(spec) | IpvsCommand::EditService(spec) => spec.persistent,
            other => panic!("{other:?}"),
        };
        assert_eq!(get("-A -f 10 -s wlc -p"), Some(360));
        assert_eq!(get("-A -t 1.2.3.4:0 -p -s rr"), Some(360));
        assert_eq!(get("-E -t 1.2.3.4:80 -p 2678400"), Some(2_678_400));
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p 0"),
            ("invalid timeout value `0' specified".into(), 2)
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p 2678401"),
            ("invalid timeout value `2678401' specified".into(), 2)
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p x"),
            ("invalid timeout value `x' specified".into(), 2)
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p 5 -p 6"),
            ("multiple 'persistent' options specified".into(), 2)
        );
    }

    #[test]
    fn zero_port_and_ops_rules() {
        assert_eq!(
            err("-A -t 1.2.3.4"),
            ("Zero port specified for non-persistent service".into(), 2)
        );
        assert_eq!(
            err("-E -t 1.2.3.4:0 -s rr"),
            ("Zero port specified for non-persistent service".into(), 2)
        );
        assert!(p("-A -t 1.2.3.4 -p").is_ok());
        assert!(p("-A -f 8 -s rr").is_ok(), "fwmark services have no port");
        assert_eq!(
            err("-A -t 1.2.3.4:80 -o"),
            (
                "One-Packet Scheduling is only for UDP virtual services".into(),
                2
            )
        );
        let c = p("-A -u 1.2.3.4:53 -o").unwrap();
        assert!(matches!(&c, IpvsCommand::AddService(s) if s.ops));
        assert_eq!(c.validate().unwrap_err().exit_code, 255);
    }

    #[test]
    fn servers_and_port_rules() {
        let k = tcp([172, 16, 0, 1], 80);
        assert_eq!(
            p("-a -t 172.16.0.1:80 -r 172.16.0.7:8080 -g -w 5").unwrap(),
            IpvsCommand::AddServer {
                service: k,
                server: ServerSpec {
                    weight: 5,
                    ..ServerSpec::new(Ipv4Addr::new(172, 16, 0, 7), 80)
                }
            }
        );
        // Port omitted: the service port.
        assert!(matches!(p("-a -t 172.16.0.1:80 -r 172.16.0.7").unwrap(),
            IpvsCommand::AddServer { server, .. } if server.port == 80 && server.weight == 1));
        // fwmark: port 0 unless given.
        assert!(matches!(p("-a -f 8 -r 192.168.10.7 -g -w 2").unwrap(),
            IpvsCommand::AddServer { service: ServiceKey::Fwmark(8), server } if server.port == 0 && server.weight == 2));
        assert!(matches!(p("-a -f 8 -r 192.168.10.7:81").unwrap(),
            IpvsCommand::AddServer { server, .. } if server.port == 81));
        // -d is not forced to the service port (ipvsadm forces only for -a/-e).
        assert_eq!(
            p("-d -t 172.16.0.1:80 -r 172.16.0.7:8080").unwrap(),
            IpvsCommand::DeleteServer {
                service: k,
                addr: Ipv4Addr::new(172, 16, 0, 7),
                port: 8080
            }
        );
        assert_eq!(
            p("-d -t 172.16.0.1:80 -r 127.0.0.1").unwrap(),
            IpvsCommand::DeleteServer {
                service: k,
                addr: Ipv4Addr::LOCALHOST,
                port: 80
            }
        );
        // -r before -t: the port is copied from the service as it was then (0).
        assert_eq!(
            p("-d -r 10.0.0.1 -t 172.16.0.1:80").unwrap(),
            IpvsCommand::DeleteServer {
                service: k,
                addr: Ipv4Addr::new(10, 0, 0, 1),
                port: 0
            }
        );
        let e = p("-e -t 172.16.0.1:80 -r 1.1.1.1 -w 0 -x 10 -y 5").unwrap();
        assert!(matches!(e, IpvsCommand::EditServer { server, .. }
            if server.weight == 0 && server.u_threshold == 10 && server.l_threshold == 5));
    }

    #[test]
    fn masq_and_tunnel_parse_but_are_refused() {
        let m = p("-a -t 172.16.0.43:80 -r 192.168.3.87 -m").unwrap();
        assert!(
            matches!(&m, IpvsCommand::AddServer { server, .. } if server.fwd == FwdMethod::Masq)
        );
        let e = m.validate().unwrap_err();
        assert_eq!(e.exit_code, 255);
        assert!(e.message.contains("masquerading (-m)"));
        let i = p("-e -t 1.1.1.1:80 -r 2.2.2.2 -i --tun-type gue --tun-port 6080").unwrap();
        assert!(i
            .validate()
            .unwrap_err()
            .message
            .contains("tunnelling (-i)"));
        assert_eq!(
            err("-a -t 1.1.1.1:80 -r 2.2.2.2 --tun-type ipip"),
            ("Tunnel options conflict with forward method".into(), 2)
        );
        assert_eq!(
            err("-a -t 1.1.1.1:80 -r 2.2.2.2 -i --tun-type gue"),
            (
                "You need to supply the 'tun-port' option for the 'gue' tunnel type".into(),
                2
            )
        );
        assert_eq!(
            err("-a -t 1.1.1.1:80 -r 2.2.2.2 -i --tun-port 5"),
            (
                "Illegal 'tun-port' option with the 'ipip' tunnel type".into(),
                2
            )
        );
        assert_eq!(
            err("-a -t 1.1.1.1:80 -r 2.2.2.2 -i --tun-type gue --tun-port 5 --tun-csum --tun-nocsum"),
            ("The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type".into(), 2)
        );
        let pe = p("-A -u 1.1.1.1:5060 -p --pe sip").unwrap();
        assert!(pe.validate().unwrap_err().message.contains("--pe sip"));
        let d = p("--start-daemon master --mcast-interface eth1 --syncid 3").unwrap();
        assert!(
            matches!(&d, IpvsCommand::StartDaemon(s) if s.mcast_interface == "eth1" && s.syncid == Some(3))
        );
        assert_eq!(d.validate(), Ok(()), "the backend decides");
        assert_eq!(
            p("--start-daemon backup --mcast-interface dpdk0 --mcast-group 239.1.2.3 --mcast-port 9000 --mcast-ttl 2 --sync-maxlen 1000").unwrap(),
            IpvsCommand::StartDaemon(DaemonSpec {
                role: DaemonRole::Backup,
                mcast_interface: "dpdk0".into(),
                syncid: None,
                mcast_group: Some(std::net::Ipv4Addr::new(239, 1, 2, 3)),
                mcast_port: Some(9000),
                mcast_ttl: Some(2),
                sync_maxlen: Some(1000),
            })
        );
        assert_eq!(
            p("--stop-daemon backup").unwrap(),
            IpvsCommand::StopDaemon(DaemonRole::Backup)
        );
        assert_eq!(
            err("--start-daemon both"),
            ("illegal start-daemon parameter specified".into(), 2)
        );
        assert_eq!(
            err("--stop-daemon both"),
            ("illegal start_daemon specified".into(), 2)
        );
    }

    #[test]
    fn value_errors() {
        assert_eq!(
            err("-a -t 1.1.1.1:80 -r 2.2.2.2 -w 65536"),
            ("illegal weight specified".into(), 2)
        );
        assert_eq!(
            err("-a -t 1.1.1.1:80 -r 2.2.2.2 -w -1"),
            ("illegal weight specified".into(), 2)
        );
        assert_eq!(
            err("-a -t 1.1.1.1:80 -r 2.2.2.2 -x 2147483648"),
            ("illegal u_threshold specified".into(), 2)
        );
        assert_eq!(
            err("-a -t 1.1.1.1:80 -r 2.2.2.2 -y z"),
            ("illegal l_threshold specified".into(), 2)
        );
        assert_eq!(
            err("-A -t 80 -s rr"),
            ("illegal virtual server address[:port] specified".into(), 2)
        );
        assert_eq!(
            err("-A -t 1.2.3.4:http"),
            ("illegal virtual server address[:port] specified".into(), 2)
        );
        assert_eq!(
            err("-A -t 1.2.3.4:65536"),
            ("illegal virtual server address[:port] specified".into(), 2)
        );
        assert_eq!(
            err("-A -t nosuchhost:80"),
            ("illegal virtual server address[:port] specified".into(), 2)
        );
        assert!(
            p("-a -t 1.1.1.1:80 -r 2.2.2").is_ok(),
            "inet_aton accepts a.b.c"
        );
        assert_eq!(
            err("-a -t 1.1.1.1:80 -r x.y"),
            ("illegal real server address[:port] specified".into(), 2)
        );
        assert_eq!(
            err("-A -f 0"),
            ("invalid fwmark value `0' specified".into(), 2)
        );
        assert_eq!(
            err("-A -f 4294967296"),
            ("invalid fwmark value `4294967296' specified".into(), 2)
        );
        assert_eq!(
            err("-A -f 7x"),
            ("invalid fwmark value `7x' specified".into(), 2)
        );
        assert!(p("-A -f 4294967295").is_ok());
        assert_eq!(
            err("-A -t 1.1.1.1:80 -p -M 300.0.0.0"),
            ("illegal virtual server persistent mask specified".into(), 2)
        );
        assert_eq!(
            err("-A -t 1.1.1.1:80 -b bogus"),
            ("invalid scheduler flag `bogus'".into(), 2)
        );
        assert_eq!(
            err("-A -t 1.1.1.1:80 -b sh-port"),
            ("incompatible scheduler flag `sh-port'".into(), 2)
        );
        assert_eq!(
            err("-A -t 1.1.1.1:80 -s rr -b mh-port"),
            ("incompatible scheduler flag `mh-port'".into(), 2)
        );
        let c = p("-A -f 7 -s sh -p -b sh-fallback,sh-port").unwrap();
        assert!(
            matches!(c, IpvsCommand::AddService(s) if s.flags.flag1 && s.flags.flag2 && !s.flags.flag3)
        );
        // Unknown schedulers pass the parser: the engine answers ENOENT (exit 255).
        assert!(
            matches!(p("-A -t 1.1.1.1:80 -s lblcr").unwrap(), IpvsCommand::AddService(s) if s.scheduler == "lblcr")
        );
        assert!(
            matches!(p("-A -t 1.1.1.1:80 -s abcdefghijklmnopq").unwrap(),
            IpvsCommand::AddService(s) if s.scheduler == "abcdefghijklmno")
        );
    }

    #[test]
    fn partial_inet_aton_forms_are_accepted_like_glibc() {
        assert_eq!(inet_aton("10.1"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(inet_aton("10.1.2"), Some(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(inet_aton("0x7f.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(inet_aton("010.0.0.1"), Some(Ipv4Addr::new(8, 0, 0, 1)));
        assert_eq!(inet_aton("3232235777"), Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(
            inet_aton("1.2.3.4 trailing"),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        for bad in [
            "",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "08.1.1.1",
            "a.b.c.d",
            "1..2",
            "1.2.3.4x",
            "4294967296",
        ] {
            assert_eq!(inet_aton(bad), None, "{bad}");
        }
        // A bare number is refused as a service address (str_is_digit), dotted forms are not.
        assert!(
            matches!(p("-A -t 10.1:80").unwrap(), IpvsCommand::AddService(s) if s.key == tcp([10, 0, 0, 1], 80))
        );
    }

    #[test]
    fn names_are_resolved_through_the_names_trait() {
        let names = SystemNames::from_texts(
            "http 80/tcp www\ndomain 53/udp\n",
            "10.0.0.9 lb.example lb\n",
        );
        let env = ParseEnv {
            names: &names,
            prog: "ipvsadm",
        };
        let c = parse_with(&argv("-A -t lb.example:http"), &env).unwrap();
        assert!(matches!(c, IpvsCommand::AddService(s) if s.key == tcp([10, 0, 0, 9], 80)));
        let c = parse_with(&argv("-a -u lb:domain -r lb"), &env).unwrap();
        assert!(matches!(c, IpvsCommand::AddServer { server, .. } if server.port == 53));
        assert!(
            parse_with(&argv("-A -u lb:http"), &env).is_err(),
            "http is tcp-only here"
        );
        assert_eq!(
            parse_with(&argv("-t x"), &env).unwrap_err().message,
            "Try `ipvsadm -h' or 'ipvsadm --help' for more information."
        );
    }

    #[test]
    fn ipv6_and_sctp_refused() {
        assert!(err("-A -t [2001:db8::1]:80").0.contains("IPv6"));
        assert!(err("-A -t 2001:db8::1").0.contains("IPv6"));
        assert_eq!(err("-A -t [2001:db8::1]:80").1, 255);
        assert!(err("-A --sctp-service 1.1.1.1:80").0.contains("SCTP"));
        assert!(err("-A -f 7 -6").0.contains("IPv6"));
        assert_eq!(err("-A -6 -f 7"), ("-6 used before -f\n".into(), 2));
        // Brackets around a non-IPv6 host: ipvsadm then looks for the port inside the brackets.
        assert!(
            matches!(p("-A -t [1.2.3.4]:80 -p").unwrap(), IpvsCommand::AddService(s) if s.key == tcp([1, 2, 3, 4], 0))
        );
    }

    #[test]
    fn command_errors() {
        let try_help = (
            "Try `lbadm -h' or 'lbadm --help' for more information.".to_string(),
            255,
        );
        assert_eq!(err("-n -L"), try_help, "the first option must be a command");
        assert_eq!(err("foo"), try_help);
        assert_eq!(err("--bogus"), try_help);
        assert_eq!(
            err("-A -t 1.1.1.1:80 -E"),
            ("multiple commands specified".into(), 2)
        );
        assert_eq!(err("-L -C"), ("multiple commands specified".into(), 2));
        assert_eq!(err("-L --bogus"), ("--bogus: unknown option".into(), 255));
        assert_eq!(err("-L -q"), ("-q: unknown option".into(), 255));
        assert_eq!(err("-Lq"), ("-Lq: unknown option".into(), 255));
        assert_eq!(err("-A -t"), ("-t: missing argument".into(), 255));
        assert_eq!(
            err("-L --numeric=1"),
            ("--numeric=1: option does not take an argument".into(), 255)
        );
        assert_eq!(
            err("-A -s rr"),
            (
                "You need to supply the 'service-address' option for the 'add-service' command"
                    .into(),
                2
            )
        );
        assert_eq!(
            err("-a -t 1.1.1.1:80"),
            (
                "You need to supply the 'real-server' option for the 'add-server' command".into(),
                2
            )
        );
        assert_eq!(
            err("-A -t 1.1.1.1:80 -w 3"),
            (
                "Illegal 'weight' option with the 'add-service' command".into(),
                2
            )
        );
        assert_eq!(
            err("-D -t 1.1.1.1:80 -s rr"),
            (
                "Illegal 'scheduler' option with the 'delete-service' command".into(),
                2
            )
        );
        assert_eq!(
            err("-C -n"),
            (
                "Illegal 'numeric' option with the 'flush' command".into(),
                2
            )
        );
        assert_eq!(
            err("-S -c"),
            (
                "Illegal 'connection' option with the 'save' command".into(),
                2
            )
        );
        assert_eq!(
            err("-A -t 1.1.1.1:80 -u 1.1.1.1:80"),
            ("multiple 'service-address' options specified".into(), 2)
        );
        assert_eq!(
            err("-a -t 1.1.1.1:80 -r 2.2.2.2 -g -m"),
            ("multiple 'forwarding-method' options specified".into(), 2)
        );
        assert_eq!(
            err("-A -t 1.1.1.1:80 extra"),
            ("unexpected argument extra".into(), 2)
        );
        assert_eq!(
            err("-L -n -n"),
            ("multiple 'numeric' options specified".into(), 2)
        );
    }

    #[test]
    fn list_variants_and_conflicts() {
        let l = |s: &str| match p(s).unwrap() {
            IpvsCommand::List(l) => l,
            other => panic!("{other:?}"),
        };
        assert!(l("-L -n").numeric);
        assert!(l("-ln").numeric);
        assert!(l("-Ln --stats").stats);
        let x = l("-l -n --rate --exact --nosort --sort");
        assert!(x.rate && x.exact && x.nosort);
        assert!(l("-L -n -c").connections);
        assert!(l("-L -c --persistent-conn").persistent_conn);
        assert!(l("--list --timeout").timeout);
        assert!(l("-L --daemon").daemon);
        assert!(l("-L --thresholds -n").thresholds);
        assert!(l("-L --tun-info").tun_info);
        assert_eq!(
            l("-L -n -t 10.0.0.1:80").service,
            Some(tcp([10, 0, 0, 1], 80))
        );
        assert_eq!(l("-L -f 7").service, Some(ServiceKey::Fwmark(7)));
        assert_eq!(
            err("-L -c --stats"),
            ("options conflicts in the list command".into(), 2)
        );
        assert_eq!(
            err("-L --timeout --persistent-conn"),
            ("options conflicts in the list command".into(), 2)
        );
        assert_eq!(
            err("-L -c -t 1.1.1.1:80"),
            ("The option 'service-address' conflicts with the 'connection' option in the 'list' command".into(), 2)
        );
        assert_eq!(
            err("-L -c --timeout"),
            (
                "The option 'timeout' conflicts with the 'connection' option in the 'list' command"
                    .into(),
                2
            )
        );
        assert_eq!(
            err("-L -s rr"),
            (
                "Illegal 'scheduler' option with the 'list' command".into(),
                2
            )
        );
    }

    #[test]
    fn other_commands() {
        assert_eq!(p("-C").unwrap(), IpvsCommand::Clear);
        assert_eq!(p("--clear").unwrap(), IpvsCommand::Clear);
        assert_eq!(p("-S").unwrap(), IpvsCommand::Save { numeric: false });
        assert_eq!(p("-S -n").unwrap(), IpvsCommand::Save { numeric: true });
        assert_eq!(p("-Sn").unwrap(), IpvsCommand::Save { numeric: true });
        assert_eq!(p("-R").unwrap(), IpvsCommand::Restore);
        assert_eq!(p("-Z").unwrap(), IpvsCommand::Zero(None));
        assert_eq!(
            p("-Z -t 1.1.1.1:80").unwrap(),
            IpvsCommand::Zero(Some(tcp([1, 1, 1, 1], 80)))
        );
        assert_eq!(
            p("-D -f 9").unwrap(),
            IpvsCommand::DeleteService(ServiceKey::Fwmark(9))
        );
        assert_eq!(p("-h anything").unwrap(), IpvsCommand::Help);
        assert_eq!(p("--version").unwrap(), IpvsCommand::Version);
        assert_eq!(
            p("--set 900 120 300").unwrap(),
            IpvsCommand::SetTimeouts(Timeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300
            })
        );
        assert_eq!(
            p("--set 0 0 5").unwrap(),
            IpvsCommand::SetTimeouts(Timeouts {
                tcp: 0,
                tcp_fin: 0,
                udp: 5
            })
        );
        assert_eq!(
            err("--set 900 120"),
            ("--set option requires 3 timeout values".into(), 2)
        );
        assert_eq!(
            err("--set 900 120 x"),
            ("invalid timeout value `x' specified".into(), 2)
        );
        assert_eq!(err("--set 1 2 3 4"), ("unexpected argument 4".into(), 2));
        assert_eq!(
            err("--set -n 1 2 3"),
            ("Illegal 'numeric' option with the 'set' command".into(), 2)
        );
        // `--` ends options: what follows are plain arguments.
        assert_eq!(
            p("--set -- 1 2 3").unwrap(),
            IpvsCommand::SetTimeouts(Timeouts {
                tcp: 1,
                tcp_fin: 2,
                udp: 3
            })
        );
    }

    #[test]
    fn config_command_mapping() {
        assert_eq!(
            p("-C").unwrap().config_command(),
            Some(ConfigCommand::Clear)
        );
        assert_eq!(p("-L").unwrap().config_command(), None);
        assert!(matches!(
            p("-a -f 1 -r 1.1.1.1").unwrap().config_command(),
            Some(ConfigCommand::AddServer { .. })
        ));
    }

    #[test]
    fn restore_words_drop_program_names() {
        assert_eq!(
            restore_words("ipvsadm -A -t 1.1.1.1:80\t-s rr\r"),
            argv("-A -t 1.1.1.1:80 -s rr")
        );
        assert!(restore_words("   \t ").is_empty());
        assert_eq!(
            restore_words("-a  -t 1.1.1.1:80 -r 2.2.2.2 lbadm"),
            argv("-a -t 1.1.1.1:80 -r 2.2.2.2")
        );
    }

    #[test]
    fn save_output_lines_parse_back() {
        for line in [
            "-A -t 192.168.1.100:80 -s wlc -p 600 -M 255.255.255.0",
            "-a -t 192.168.1.100:80 -r 10.0.0.11:80 -g -w 1",
            "-A -u 192.168.1.100:53 -s rr",
            "-A -f 7 -s sh -p 360 -b sh-fallback,sh-port",
            "-a -f 7 -r 10.0.0.31:0 -g -w 2",
        ] {
            let c = parse(&restore_words(line)).unwrap();
            c.validate().unwrap();
            assert!(c.config_command().is_some(), "{line}");
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn word() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "-A",
                    "-E",
                    "-D",
                    "-C",
                    "-a",
                    "-e",
                    "-d",
                    "-L",
                    "-l",
                    "-Z",
                    "-S",
                    "-R",
                    "-h",
                    "-v",
                    "-t",
                    "-u",
                    "-f",
                    "-s",
                    "-p",
                    "-M",
                    "-r",
                    "-g",
                    "-m",
                    "-i",
                    "-w",
                    "-x",
                    "-y",
                    "-n",
                    "-c",
                    "-b",
                    "-o",
                    "-6",
                    "-X",
                    "--set",
                    "--stats",
                    "--rate",
                    "--pe",
                    "--tun-type",
                    "--tun-port",
                    "--tun-csum",
                    "--",
                    "-Ln",
                    "-At",
                    "-p600",
                    "--persistent=5",
                    "--sched-flags=sh-port",
                    "--start-daemon",
                    "-",
                    "1.2.3.4:80",
                    "10.0.0.1",
                    "[::1]:80",
                    "0",
                    "65536",
                    "rr",
                    "sh",
                    "wlc",
                    "master",
                    "gue",
                    "255.255.255.0",
                    ",",
                    "",
                ])
                .prop_map(str::to_string),
                "\\PC{0,12}",
                "-[a-zA-Z0-9]{1,4}",
                "--[a-z-]{1,12}(=[a-z0-9.:]{0,6})?",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn random_argv_never_panics(args in prop::collection::vec(word(), 0..10)) {
                let r = parse(&args);
                if let Err(e) = &r {
                    prop_assert!([1, 2, 255].contains(&e.exit_code));
                }
                if let Ok(c) = r {
                    let _ = c.validate();
                    let _ = c.config_command();
                }
            }
        }
    }
}
