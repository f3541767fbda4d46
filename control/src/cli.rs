//! `lbadm`, the command-line client: ipvsadm syntax and output, plus the director's own
//! `addr`, `neigh`, `link`, `mark` and `sysctl` verbs and an `iptables` front end for mark
//! rules, over the control socket.
//!
//! ```text
//! lbadm [--socket PATH] [--json] <ipvsadm arguments>
//! lbadm [--socket PATH] [--json] addr add A.B.C.D/LEN dev dpdkN
//! lbadm [--socket PATH] [--json] addr del A.B.C.D[/LEN] dev dpdkN
//! lbadm [--socket PATH] [--json] addr [show] [dev dpdkN]
//! lbadm [--socket PATH] [--json] neigh [show]
//! lbadm [--socket PATH] [--json] link [show]
//! lbadm [--socket PATH] [--json] sync [show]
//! lbadm [--socket PATH] [--json] mark add|insert [NUM]|del [-i dpdkN] -d VIP[/LEN]
//!                                     [-p tcp|udp] [--dport P[:P2]] --set-mark N
//! lbadm [--socket PATH] [--json] mark del NUM | mark [show] | mark flush
//! lbadm [--socket PATH] [--json] iptables -t mangle -A|-I|-D|-C PREROUTING ... -j MARK --set-mark N
//! lbadm [--socket PATH] [--json] iptables -t mangle -D PREROUTING NUM | -F [PREROUTING]
//! lbadm [--socket PATH] [--json] iptables -t mangle -L [PREROUTING] [-n] [-v] [-x] [--line-numbers]
//! lbadm [--socket PATH] [--json] iptables -t mangle -S [PREROUTING] [-v]
//! lbadm [--socket PATH] [--json] sysctl [-a] [-n] [-q] [-w] [NAME | NAME=VALUE]...
//! lbadm [--socket PATH] [--json] save [FILE]
//! lbadm [--socket PATH] restore [--atomic] [FILE|-]
//! lbadm [--socket PATH] restore --keepalived FILE
//! lbadm [--socket PATH] [--json] check add|del|show|service ...   (see crate::health::cli)
//! ```
//!
//! `restore --keepalived FILE` reads a keepalived.conf ([`crate::keepalived`]) and applies
//! its virtual servers, real servers and checkers as one transaction: all or nothing, the
//! first refusal printed as `FILE:LINE: reason`; keepalived's warnings go to stderr.
//!
//! `save` and `restore` write and read configuration files ([`crate::config_file`]): `save`
//! prints the whole configuration (addresses, mark rules, non-default sysctls and timeouts,
//! rules) or writes it to FILE atomically; `restore --atomic` parses every line first and
//! applies them all as one transaction or nothing, `restore` applies them line by line with
//! `-R`'s rules; errors read `SOURCE:LINE: MESSAGE`.
//!
//! Mark rules (see [`crate::marks`] for their semantics, [`crate::iptables`] for both command
//! lines): `iptables` lines from existing LVS setups are accepted verbatim (any option order)
//! as long as they address `-t mangle` PREROUTING with `-j MARK`; `-i` must name a DPDK port
//! (`dpdkN`), the director refuses other names listing its ports. `-L` and `-S` print like
//! iptables-legacy; `mark show` prints a numbered table; errors keep iptables' texts and exit
//! statuses where iptables has one (`-D` of a missing rule: "iptables: Bad rule (does a
//! matching rule exist in that chain?)." exit 1). `-C` answers from a listing: exit 0 if an
//! identical rule exists, else that same error.
//!
//! `sysctl` behaves like sysctl(8) on `net.ipv4.vs.*` (see [`crate::sysctl`]): no argument or
//! `-a` lists all (sorted, `net.ipv4.vs.NAME = V`), `NAME` or `net.ipv4.vs.NAME` prints one,
//! `NAME=VALUE` (with or without `-w`) sets it and prints the new line (`-q`: nothing, `-n`:
//! values only). Each argument is handled in turn; errors are sysctl's texts; the exit status
//! is 255 if any argument failed, else 0. `--json` prints one object `{"net.ipv4.vs.NAME": V}`
//! with every value shown.
//!
//! Invariants:
//! - Socket path: `--socket PATH` (or `--socket=PATH`), else `$DIRECTOR_SOCKET`, else
//!   `/run/director.sock`. `--socket` and `--json` must precede the command; `--json` is also
//!   accepted anywhere later (ipvsadm has no such option).
//! - Everything that can be checked without the director (syntax, legality, values, refused
//!   modes) is checked before connecting, with ipvsadm's messages and exit codes.
//! - Output: listings on stdout exactly as ipvsadm prints them; errors as one line on stderr;
//!   exit status 0 on success, else the error's status (2 input, 255 refused, 1 listing
//!   failure). A director that cannot be reached: `lbadm: cannot connect to director at PATH:
//!   REASON` and exit status 1 (ipvsadm's "can't initialize ipvs" analogue); a connection
//!   that breaks later: `lbadm: director at PATH: REASON`, exit status 1.
//! - `-R` reads rules from stdin like ipvsadm: blank lines skipped, words `ipvsadm` dropped,
//!   each line parsed client-side; the rules up to the first parse error are applied in order
//!   (a refused rule is reported and skipped, the next ones still applied), each failed
//!   rule's error is printed in order, then the parse error if any (its exit status wins);
//!   otherwise the exit status is that of the last rule. Rules that are all configuration
//!   changes (the usual `-S` output) go as one non-atomic transaction (`Stage` requests of
//!   at most ~512 KiB, then `Commit`), published once; input with `-Z` goes as `Restore`
//!   requests of at most [`RESTORE_CHUNK`] rules, each published.

use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::error::CtlError;
use crate::format;
use crate::iptables::{self, IptablesListOptions, MarkCommand};
use crate::ipvsadm::{self, IpvsCommand, ListOptions, ParseEnv};
use crate::marks::MarkRule;
use crate::model::ConfigCommand;
use crate::names::Names;
use crate::proto::{client, Op, Reply, Request};
use crate::sysctl::{SysctlValue, Sysctls};

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/director.sock";
/// Environment variable overriding the default socket path.
pub const SOCKET_ENV: &str = "DIRECTOR_SOCKET";
/// Program name used in messages.
pub const PROG: &str = "lbadm";
/// `-R` rules per `Restore` request (keeps each request well under the 1 MiB limit; each
/// chunk is applied and published atomically).
pub const RESTORE_CHUNK: usize = 2000;

/// Where the CLI reads and writes, and how it resolves names (injectable for tests).
pub struct CliIo<'a> {
    /// Standard input (for `-R`).
    pub stdin: &'a mut dyn BufRead,
    /// Standard output.
    pub stdout: &'a mut dyn Write,
    /// Standard error.
    pub stderr: &'a mut dyn Write,
    /// Value of `$DIRECTOR_SOCKET`, if set.
    pub socket_env: Option<String>,
    /// Name resolution for arguments and non-numeric listings.
    pub names: &'a dyn Names,
}

#[derive(Debug)]
enum Rendering {
    /// Print nothing on success.
    Silent,
    /// ipvsadm listing with these options.
    List(ListOptions),
    /// `-S`.
    Save { numeric: bool },
    /// `addr show [dev X]`.
    Addrs(Option<String>),
    /// `neigh show`, `link show`.
    Table,
    /// `mark show`.
    Marks,
    /// `iptables -L`.
    IptablesList(IptablesListOptions),
    /// `iptables -S`.
    IptablesRules(IptablesListOptions),
    /// `iptables -C`: exit 0 if this rule is in the listing, else iptables' "Bad rule".
    MarkCheck(MarkRule),
}

fn version() -> String {
    format!(
        "{PROG} v{} (director; ipvsadm v1.31 syntax, IPVS v{})\n",
        env!("CARGO_PKG_VERSION"),
        format::IPVS_VERSION
    )
}

fn usage_err(msg: impl Into<String>) -> CtlError {
    CtlError::input(format!("{PROG}: {}", msg.into()))
}

/// Parses `A.B.C.D[/LEN]`.
fn parse_prefix(s: &str) -> Result<(Ipv4Addr, Option<u8>), CtlError> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| usage_err(format!("invalid address \"{s}\" (expected A.B.C.D/LEN)")))?;
    let len = match len {
        None => None,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= 32 => Some(n),
            _ => return Err(usage_err(format!("invalid prefix length \"{l}\" (0..32)"))),
        },
    };
    Ok((addr, len))
}

/// The operation of `addr|neigh|link ...` (for configuration files).
pub(crate) fn director_verb_op(words: &[String]) -> Result<Op, CtlError> {
    parse_director_verb(words).map(|(op, _)| op)
}

/// Parses `addr|neigh|link ...` into an operation.
fn parse_director_verb(words: &[String]) -> Result<(Op, Rendering), CtlError> {
    let verb = words.first().map(String::as_str).unwrap_or("");
    let rest = &words[1.min(words.len())..];
    let sub = rest.first().map(String::as_str);
    let is_show = |s: Option<&str>| matches!(s, None | Some("show") | Some("list") | Some("ls"));
    match verb {
        "addr" | "address" => match sub {
            Some("add") | Some("del") | Some("delete") => {
                let mut prefix = None;
                let mut dev = None;
                let mut it = rest[1..].iter();
                while let Some(w) = it.next() {
                    if w == "dev" {
                        let d = it
                            .next()
                            .ok_or_else(|| usage_err("\"dev\" needs a port name"))?;
                        if dev.replace(d.clone()).is_some() {
                            return Err(usage_err("\"dev\" given twice"));
                        }
                    } else if prefix.is_none() {
                        prefix = Some(parse_prefix(w)?);
                    } else {
                        return Err(usage_err(format!("unexpected argument \"{w}\"")));
                    }
                }
                let (addr, len) =
                    prefix.ok_or_else(|| usage_err("missing address (A.B.C.D/LEN)"))?;
                let dev = dev.ok_or_else(|| usage_err("missing \"dev PORT\""))?;
                let op = if sub == Some("add") {
                    Op::AddrAdd {
                        addr,
                        prefix_len: len.unwrap_or(32),
                        dev,
                    }
                } else {
                    Op::AddrDel {
                        addr,
                        prefix_len: len,
                        dev,
                    }
                };
                Ok((op, Rendering::Silent))
            }
            s if is_show(s) => {
                let args = if s.is_some() { &rest[1..] } else { rest };
                let dev = match args {
                    [] => None,
                    [d, name] if d == "dev" => Some(name.clone()),
                    _ => return Err(usage_err("usage: addr show [dev PORT]")),
                };
                Ok((Op::AddrShow, Rendering::Addrs(dev)))
            }
            Some(other) => Err(usage_err(format!(
                "unknown addr command \"{other}\" (add, del, show)"
            ))),
            None => Err(usage_err("usage: addr add|del|show")),
        },
        "neigh" | "neighbour" | "neighbor" => {
            if is_show(sub) && rest.len() <= 1 {
                Ok((Op::NeighShow, Rendering::Table))
            } else {
                Err(usage_err("usage: neigh show"))
            }
        }
        "link" => {
            if is_show(sub) && rest.len() <= 1 {
                Ok((Op::LinkShow, Rendering::Table))
            } else {
                Err(usage_err("usage: link show"))
            }
        }
        "sync" => {
            if is_show(sub) && rest.len() <= 1 {
                Ok((Op::SyncShow, Rendering::Table))
            } else {
                Err(usage_err("usage: sync show"))
            }
        }
        _ => Err(usage_err(format!("unknown command \"{verb}\""))),
    }
}

fn write_err(io: &mut CliIo<'_>, e: &CtlError) -> i32 {
    let _ = writeln!(io.stderr, "{}", e.message);
    e.exit_code
}

/// Runs lbadm with `args` (without the program name); returns the exit status.
pub fn run(args: &[String], io: &mut CliIo<'_>) -> i32 {
    let mut socket: Option<String> = None;
    let mut json = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--json" {
            json = true;
        } else if a == "--socket" {
            match args.get(i + 1) {
                Some(p) => socket = Some(p.clone()),
                None => return write_err(io, &usage_err("--socket needs a path")),
            }
            i += 1;
        } else if let Some(p) = a.strip_prefix("--socket=") {
            socket = Some(p.to_string());
        } else {
            break;
        }
        i += 1;
    }
    let mut rest: Vec<String> = Vec::with_capacity(args.len() - i);
    for a in &args[i..] {
        if a == "--json" {
            json = true;
        } else {
            rest.push(a.clone());
        }
    }
    let path = PathBuf::from(
        socket
            .or_else(|| io.socket_env.clone())
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string()),
    );

    let verb = rest.first().map(String::as_str);
    match verb {
        Some("sysctl") => return sysctl(&path, &rest[1..], io, json),
        Some("save") => return save(&path, &rest[1..], io, json),
        Some("restore") => return restore_file(&path, &rest[1..], io),
        Some("check") => return check(&path, &rest[1..], io, json),
        _ => {}
    }
    let is_director_verb = matches!(
        verb,
        Some("addr" | "address" | "neigh" | "neighbour" | "neighbor" | "link" | "sync")
    );
    let (op, rendering) = if matches!(verb, Some("mark" | "iptables")) {
        let parsed = if verb == Some("mark") {
            iptables::parse_mark(&rest[1..], io.names)
        } else {
            iptables::parse_iptables(&rest[1..], io.names)
        };
        match parsed.map(mark_op) {
            Ok(Some(x)) => x,
            Ok(None) => return 0,
            Err(e) => return write_err(io, &e),
        }
    } else if is_director_verb {
        match parse_director_verb(&rest) {
            Ok(x) => x,
            Err(e) => return write_err(io, &e),
        }
    } else {
        let env = ParseEnv {
            names: io.names,
            prog: PROG,
        };
        let cmd = match ipvsadm::parse_with(&rest, &env) {
            Ok(c) => c,
            Err(e) => return write_err(io, &e),
        };
        match cmd {
            IpvsCommand::Help => {
                let _ = io.stdout.write_all(ipvsadm::usage(PROG).as_bytes());
                return 0;
            }
            IpvsCommand::Version => {
                let _ = io.stdout.write_all(version().as_bytes());
                return 0;
            }
            IpvsCommand::Restore => return restore(&path, io),
            _ => {}
        }
        if let Err(e) = cmd.validate() {
            return write_err(io, &e);
        }
        if let IpvsCommand::List(o) = &cmd {
            if o.connections {
                return list_connections_paged(&path, o, io, json);
            }
        }
        let rendering = match &cmd {
            IpvsCommand::List(o) => Rendering::List(o.clone()),
            IpvsCommand::Save { numeric } => Rendering::Save { numeric: *numeric },
            _ => Rendering::Silent,
        };
        (Op::Ipvs(cmd), rendering)
    };

    let reply = match call(&path, Request::new(op), io) {
        Ok(r) => r,
        Err(code) => return code,
    };
    render(io, &reply, &rendering, json)
}

/// The request and rendering of a mark-rule command (`None` for `Nop`: nothing to ask).
fn mark_op(cmd: MarkCommand) -> Option<(Op, Rendering)> {
    Some(match cmd {
        MarkCommand::Nop => return None,
        MarkCommand::Append(r) => (Op::MarkAdd(r), Rendering::Silent),
        MarkCommand::Insert { pos, rule } => (Op::MarkInsert { pos, rule }, Rendering::Silent),
        MarkCommand::Delete(r) => (Op::MarkDel(r), Rendering::Silent),
        MarkCommand::DeleteAt(n) => (Op::MarkDelAt(n), Rendering::Silent),
        MarkCommand::Flush => (Op::MarkFlush, Rendering::Silent),
        MarkCommand::Check(r) => (Op::MarkShow, Rendering::MarkCheck(r)),
        MarkCommand::List(o) => (Op::MarkShow, Rendering::IptablesList(o)),
        MarkCommand::ListRules(o) => (Op::MarkShow, Rendering::IptablesRules(o)),
        MarkCommand::Show => (Op::MarkShow, Rendering::Marks),
    })
}

/// `lbadm sysctl ARGS`: see the module documentation.
fn sysctl(path: &Path, args: &[String], io: &mut CliIo<'_>, json: bool) -> i32 {
    /// Why one argument failed.
    enum Fail {
        /// Print this error and go on with the next argument.
        Local(CtlError),
        /// The director was asked: `call` printed the error; this is its exit status.
        Printed(i32),
    }
    let (mut all, mut write, mut values_only, mut quiet) = (false, false, false, false);
    let mut keys: Vec<&String> = Vec::new();
    for a in args {
        match a.strip_prefix('-') {
            Some(flags) if keys.is_empty() && !flags.is_empty() && !a.contains('=') => {
                for f in flags.chars() {
                    match f {
                        'a' | 'A' | 'X' => all = true,
                        'w' => write = true,
                        'n' => values_only = true,
                        'q' => quiet = true,
                        _ => {
                            let e = CtlError::failure(format!("sysctl: invalid option -- '{f}'"));
                            return write_err(io, &e);
                        }
                    }
                }
            }
            _ => keys.push(a),
        }
    }
    if write && keys.is_empty() {
        return write_err(io, &CtlError::failure("sysctl: no variables specified"));
    }
    let fetch = |io: &mut CliIo<'_>, op: Op| -> Result<Sysctls, Fail> {
        match call(path, Request::new(op), io) {
            Ok(Reply::Sysctls(s)) => Ok(s),
            Ok(other) => Err(Fail::Printed(unexpected(io, &other))),
            Err(code) => Err(Fail::Printed(code)),
        }
    };
    let mut shown: Vec<(&'static str, SysctlValue)> = Vec::new();
    let mut failed = false;
    let mut current: Option<Sysctls> = None;
    let list_all = keys.is_empty() || (all && !write);
    let keys = if list_all { Vec::new() } else { keys };
    if list_all {
        match fetch(io, Op::SysctlShow) {
            Ok(s) => shown.extend(s.entries()),
            Err(Fail::Printed(code)) => return code,
            Err(Fail::Local(e)) => return write_err(io, &e),
        }
    }
    for key in keys {
        let step: Result<Option<(&'static str, SysctlValue)>, Fail> = if write || key.contains('=') {
            match key.split_once('=') {
                None => Err(Fail::Local(CtlError::sysctl_malformed(key))),
                Some((k, v)) => Sysctls::resolve(k)
                    .and_then(|name| {
                        // A vector takes blank-separated integers (`sync_threshold="3 50"`).
                        let op = if Sysctls::is_vector(name) {
                            Op::SysctlSetValues {
                                name: name.to_string(),
                                values: Sysctls::parse_values(k, v)?,
                            }
                        } else {
                            Op::SysctlSet {
                                name: name.to_string(),
                                value: Sysctls::parse_value(k, v)?,
                            }
                        };
                        Ok((name, op))
                    })
                    .map_err(Fail::Local)
                    .and_then(|(name, op)| {
                        let s = fetch(io, op)?;
                        current = Some(s);
                        Ok(if quiet { None } else { s.value(name).map(|v| (name, v)) })
                    }),
            }
        } else {
            Sysctls::resolve(key).map_err(Fail::Local).and_then(|name| {
                let s = match current {
                    Some(s) => s,
                    None => fetch(io, Op::SysctlShow)?,
                };
                current = Some(s);
                Ok(s.value(name).map(|v| (name, v)))
            })
        };
        match step {
            Ok(entry) => shown.extend(entry),
            Err(Fail::Local(e)) => {
                write_err(io, &e);
                failed = true;
            }
            // The director could not be reached: stop, like every other lbadm command.
            Err(Fail::Printed(1)) => return 1,
            Err(Fail::Printed(_)) => failed = true,
        }
    }
    let text = if json {
        format::json_sysctls(&shown)
    } else {
        format::sysctls(&shown, values_only)
    };
    if io
        .stdout
        .write_all(text.as_bytes())
        .and_then(|()| io.stdout.flush())
        .is_err()
    {
        return 1;
    }
    if failed {
        255
    } else {
        0
    }
}

fn unexpected(io: &mut CliIo<'_>, reply: &Reply) -> i32 {
    let _ = writeln!(
        io.stderr,
        "{PROG}: unexpected reply from director: {reply:?}"
    );
    1
}

/// Rows asked for per page of a connection listing.
const CONN_PAGE: u32 = 4096;

/// `-L -c`: the connection listing page by page ([`Op::ConnPage`]) on one connection, each
/// page printed as it arrives, so that neither lbadm nor the director holds more than a page
/// of a large table. A director that does not know `ConnPage` gets the one-reply request.
fn list_connections_paged(path: &Path, opts: &ListOptions, io: &mut CliIo<'_>, json: bool) -> i32 {
    let mut stream: Option<UnixStream> = None;
    let mut cursor = Some(crate::proto::ConnCursor::default());
    let mut first = true;
    let mut any = false;
    while let Some(c) = cursor {
        let req = Request::new(Op::ConnPage { cursor: c, max: CONN_PAGE });
        let resp = match stream.as_mut() {
            Some(s) => client::exchange(s, &req, client::DEFAULT_TIMEOUT)
                .map_err(|e| writeln!(io.stderr, "{PROG}: director at {}: {e}", path.display())),
            None => open(path, &req, io).map(|(s, resp)| {
                stream = Some(s);
                resp
            }).map_err(|_| Ok(())),
        };
        let reply = match resp {
            Ok(resp) => resp.result,
            Err(_) => return 1,
        };
        let (rows, next) = match reply {
            Ok(Reply::ConnPage { rows, next }) => (rows, next),
            // An older director: the whole listing in one reply.
            Err(_) if first => {
                let op = Op::Ipvs(IpvsCommand::List(opts.clone()));
                return match call(path, Request::new(op), io) {
                    Ok(r) => render(io, &r, &Rendering::List(opts.clone()), json),
                    Err(code) => code,
                };
            }
            Err(e) => return write_err(io, &e),
            Ok(other) => return unexpected(io, &other),
        };
        let mut text = String::new();
        if first {
            text.push_str(if json { format::json_stream::start() } else { "" });
            if !json {
                text.push_str(&format::connections_header(opts));
            }
        }
        if json {
            for r in &rows {
                text.push_str(&format::json_stream::element(r, !any));
                any = true;
            }
        } else {
            text.push_str(&format::connection_rows(&rows, opts, io.names));
        }
        if next.is_none() && json {
            text.push_str(format::json_stream::end(any));
        }
        if io.stdout.write_all(text.as_bytes()).and_then(|()| io.stdout.flush()).is_err() {
            return 1;
        }
        first = false;
        cursor = next;
    }
    0
}

/// Sends one request; on failure prints the error and returns the exit status.
fn call(path: &Path, req: Request, io: &mut CliIo<'_>) -> Result<Reply, i32> {
    let (_, resp) = open(path, &req, io)?;
    resp.result.map_err(|e| write_err(io, &e))
}

/// Connects and sends `req` as the first request of the connection
/// ([`client::open`]: a busy director is retried for [`client::BUSY_PATIENCE`]); transport
/// failures are printed (`Err(status)`), the director's answer is returned as it is.
fn open(path: &Path, req: &Request, io: &mut CliIo<'_>) -> Result<(UnixStream, crate::proto::Response), i32> {
    client::open(path, req, client::DEFAULT_TIMEOUT, client::BUSY_PATIENCE).map_err(|e| {
        let _ = match e {
            client::OpenError::Connect(e) => {
                writeln!(io.stderr, "{PROG}: cannot connect to director at {}: {e}", path.display())
            }
            client::OpenError::Exchange(e) => writeln!(io.stderr, "{PROG}: director at {}: {e}", path.display()),
        };
        1
    })
}

/// `value` as JSON when `json` is set, otherwise as `text` renders it.
fn json_or<T: serde::Serialize + ?Sized>(json: bool, value: &T, text: fn(&T) -> String) -> String {
    if json {
        format::json(value)
    } else {
        text(value)
    }
}

fn render(io: &mut CliIo<'_>, reply: &Reply, rendering: &Rendering, json: bool) -> i32 {
    let names = io.names;
    let text = match (reply, rendering) {
        (Reply::Ok, _) => String::new(),
        (Reply::Warning(w), _) => {
            let _ = writeln!(io.stderr, "{PROG}: warning: {w}");
            String::new()
        }
        (
            Reply::Services {
                table_size,
                services,
            },
            Rendering::List(o),
        ) => {
            if json {
                format::json_services(*table_size, services, o.nosort)
            } else {
                format::list_services(*table_size, services, o, names)
            }
        }
        (
            Reply::Services {
                table_size,
                services,
            },
            Rendering::Save { numeric },
        ) => {
            if json {
                format::json_services(*table_size, services, false)
            } else {
                format::save(services, *numeric, names)
            }
        }
        (Reply::Connections(c), Rendering::List(o)) => {
            if json {
                format::json(c)
            } else {
                format::list_connections(c, o, names)
            }
        }
        (Reply::Timeouts(t), _) => json_or(json, t, format::timeouts),
        (Reply::Daemons(d), _) => json_or(json, &d[..], format::daemons),
        (Reply::Addrs(a), r) => {
            let filtered: Vec<_> = match r {
                Rendering::Addrs(Some(dev)) => {
                    a.iter().filter(|x| &x.dev == dev).cloned().collect()
                }
                _ => a.clone(),
            };
            json_or(json, &filtered[..], format::addrs)
        }
        (Reply::Neighs(n), _) => json_or(json, &n[..], format::neighs),
        (Reply::Links(l), _) => json_or(json, &l[..], format::links),
        (Reply::Sync(s), _) => json_or(json, s, format::sync_status),
        (Reply::Marks(m), Rendering::MarkCheck(rule)) => {
            if m.iter().any(|s| s.rule == *rule) {
                String::new()
            } else {
                return write_err(io, &CtlError::mark_rule_not_found());
            }
        }
        (Reply::Marks(m), r) => {
            if json {
                format::json(m)
            } else {
                match r {
                    Rendering::IptablesList(o) => format::iptables_list(m, o, names),
                    Rendering::IptablesRules(o) => format::iptables_rules(m, o),
                    _ => format::marks(m),
                }
            }
        }
        (other, _) => {
            let _ = writeln!(
                io.stderr,
                "{PROG}: unexpected reply from director: {other:?}"
            );
            return 1;
        }
    };
    if io
        .stdout
        .write_all(text.as_bytes())
        .and_then(|()| io.stdout.flush())
        .is_err()
    {
        return 1;
    }
    0
}

/// Like [`call`] but returns the director's error instead of printing it; transport failures
/// are printed (`Err(status)`).
fn call_raw(
    stream: &mut UnixStream,
    path: &Path,
    req: Request,
    io: &mut CliIo<'_>,
) -> Result<Result<Reply, CtlError>, i32> {
    match client::exchange(stream, &req, client::DEFAULT_TIMEOUT) {
        Ok(resp) => Ok(resp.result),
        Err(e) => {
            let _ = writeln!(io.stderr, "{PROG}: director at {}: {e}", path.display());
            Err(1)
        }
    }
}

/// Largest encoded size of the commands of one `Stage` request (half the request limit).
const STAGE_BYTES: usize = crate::proto::MAX_REQUEST / 2;

/// Splits `cmds` into `Stage` requests of at most [`STAGE_BYTES`] of JSON each.
fn stage_chunks(cmds: &[ConfigCommand]) -> Result<Vec<&[ConfigCommand]>, CtlError> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, c) in cmds.iter().enumerate() {
        let n = serde_json::to_vec(c)
            .map(|v| v.len() + 1)
            .unwrap_or(usize::MAX);
        if n > STAGE_BYTES {
            return Err(CtlError::input(format!(
                "{PROG}: command {} is too large to send ({n} bytes)",
                i + 1
            )));
        }
        if bytes + n > STAGE_BYTES {
            chunks.push(&cmds[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += n;
    }
    if start < cmds.len() {
        chunks.push(&cmds[start..]);
    }
    Ok(chunks)
}

/// Stages `cmds` on one connection and commits them; the director's per-command results, or
/// its error (an atomic transaction whose publication failed).
fn transaction(
    path: &Path,
    cmds: &[ConfigCommand],
    atomic: bool,
    io: &mut CliIo<'_>,
) -> Result<Result<Vec<Result<(), CtlError>>, CtlError>, i32> {
    let chunks = stage_chunks(cmds).map_err(|e| write_err(io, &e))?;
    let mut stream: Option<UnixStream> = None;
    // The first request opens the connection (retrying a busy director); the rest follow on it.
    let mut send = |req: Request, io: &mut CliIo<'_>| -> Result<Result<Reply, CtlError>, i32> {
        match stream.as_mut() {
            Some(s) => call_raw(s, path, req, io),
            None => {
                let (s, resp) = open(path, &req, io)?;
                stream = Some(s);
                Ok(resp.result)
            }
        }
    };
    for chunk in chunks {
        match send(Request::new(Op::Stage(chunk.to_vec())), io)? {
            Ok(Reply::Staged(_)) => {}
            Ok(other) => return Err(unexpected(io, &other)),
            Err(e) => return Ok(Err(e)),
        }
    }
    match send(Request::new(Op::Commit { atomic }), io)? {
        Ok(Reply::Batch(results)) if results.len() == cmds.len() => Ok(Ok(results)),
        Ok(other) => Err(unexpected(io, &other)),
        Err(e) => Ok(Err(e)),
    }
}

/// `lbadm save [FILE]`: the whole configuration as a configuration file (see
/// [`crate::config_file`]), on stdout or written atomically to FILE; `--json`: the
/// [`crate::proto::ConfigDump`] as JSON.
fn save(path: &Path, args: &[String], io: &mut CliIo<'_>, json: bool) -> i32 {
    let mut file: Option<&String> = None;
    for a in args {
        if a == "-n" || a == "--numeric" {
            continue; // always numeric
        }
        if (a.starts_with('-') && a != "-") || file.replace(a).is_some() {
            return write_err(io, &usage_err("usage: save [FILE]"));
        }
    }
    let dump = match call(path, Request::new(Op::ConfigShow), io) {
        Ok(Reply::Config(d)) => d,
        Ok(other) => return unexpected(io, &other),
        Err(code) => return code,
    };
    let text = if json {
        format::json(&dump)
    } else {
        format::config_file(&dump)
    };
    match file.filter(|f| f.as_str() != "-") {
        None => {
            if io
                .stdout
                .write_all(text.as_bytes())
                .and_then(|()| io.stdout.flush())
                .is_err()
            {
                return 1;
            }
            0
        }
        Some(f) => match crate::config_file::write_atomic(Path::new(f), text.as_bytes()) {
            Ok(()) => 0,
            Err(e) => write_err(
                io,
                &CtlError::failure(format!("{PROG}: cannot write {f}: {e}")),
            ),
        },
    }
}

/// `lbadm restore [--atomic] [FILE|-]`: applies a configuration file (stdin without FILE or
/// with `-`). Errors are printed as `SOURCE:LINE: MESSAGE`.
/// - `--atomic`: every line is parsed first (a parse error: nothing is sent), then all of
///   them are applied as one transaction: if any command fails, each failure is printed, then
///   `SOURCE: nothing changed (N of M commands failed)`, and the exit status is the first
///   failure's; else everything was applied, published once (exit 0).
/// - without: `-R` semantics: the lines before the first parse error are applied in order,
///   failed commands are reported and skipped; the parse error, if any, is printed last and
///   its status wins, else the status is that of the last command.
fn restore_file(path: &Path, args: &[String], io: &mut CliIo<'_>) -> i32 {
    let mut atomic = false;
    let mut keepalived = false;
    let mut file: Option<&String> = None;
    for a in args {
        if a == "--keepalived" {
            keepalived = true;
        } else if a == "--atomic" {
            atomic = true;
        } else if (a.starts_with('-') && a != "-") || file.replace(a).is_some() {
            return write_err(io, &usage_err("usage: restore [--atomic] [FILE|-] | restore --keepalived FILE"));
        }
    }
    if keepalived {
        return match file.filter(|f| f.as_str() != "-") {
            Some(f) => restore_keepalived(path, Path::new(f), io),
            None => write_err(io, &usage_err("usage: restore --keepalived FILE")),
        };
    }
    let (source, text) = match file.filter(|f| f.as_str() != "-") {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(t) => (f.clone(), t),
            Err(e) => {
                return write_err(
                    io,
                    &CtlError::failure(format!("{PROG}: cannot read {f}: {e}")),
                )
            }
        },
        None => {
            let mut t = String::new();
            if let Err(e) = io.stdin.read_to_string(&mut t) {
                return write_err(
                    io,
                    &CtlError::failure(format!("{PROG}: reading standard input: {e}")),
                );
            }
            ("stdin".to_string(), t)
        }
    };
    let (located, parse_error) = crate::config_file::parse_prefix(&text, io.names);
    if atomic {
        if let Some(e) = parse_error {
            let _ = writeln!(io.stderr, "{}", e.describe(&source));
            let _ = writeln!(io.stderr, "{PROG}: {source}: nothing changed");
            return e.error.exit_code;
        }
    }
    let cmds: Vec<ConfigCommand> = located.iter().map(|l| l.cmd.clone()).collect();
    let mut status = 0;
    if !cmds.is_empty() {
        let results = match transaction(path, &cmds, atomic, io) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let _ = writeln!(io.stderr, "{PROG}: {source}: {}", e.message);
                if atomic {
                    let _ = writeln!(io.stderr, "{PROG}: {source}: nothing changed");
                }
                return e.exit_code;
            }
            Err(code) => return code,
        };
        let mut first_failure = None;
        let mut failures = 0;
        for (l, r) in located.iter().zip(&results) {
            status = match r {
                Ok(()) => 0,
                Err(e) => {
                    failures += 1;
                    first_failure.get_or_insert(e.exit_code);
                    let le = crate::config_file::LineError {
                        line: l.line,
                        error: e.clone(),
                    };
                    let _ = writeln!(io.stderr, "{}", le.describe(&source));
                    e.exit_code
                }
            };
        }
        if atomic {
            if let Some(code) = first_failure {
                let _ = writeln!(
                    io.stderr,
                    "{PROG}: {source}: nothing changed ({failures} of {} commands failed)",
                    cmds.len()
                );
                return code;
            }
        }
    }
    match parse_error {
        Some(e) => {
            let _ = writeln!(io.stderr, "{}", e.describe(&source));
            e.error.exit_code
        }
        None => status,
    }
}

/// `lbadm restore --keepalived FILE`: all of the file's commands as one atomic transaction.
fn restore_keepalived(path: &Path, file: &Path, io: &mut CliIo<'_>) -> i32 {
    let parsed = match crate::keepalived::load(file) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(io.stderr, "{e}");
            let _ = writeln!(io.stderr, "{PROG}: {}: nothing changed", file.display());
            return crate::error::EXIT_INPUT;
        }
    };
    for w in &parsed.warnings {
        let _ = writeln!(io.stderr, "{PROG}: warning: {w}");
    }
    let cmds: Vec<ConfigCommand> = parsed.commands.iter().map(|l| l.cmd.clone()).collect();
    if cmds.is_empty() {
        return 0;
    }
    let results = match transaction(path, &cmds, true, io) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let _ = writeln!(io.stderr, "{PROG}: {}: {}", file.display(), e.message);
            let _ = writeln!(io.stderr, "{PROG}: {}: nothing changed", file.display());
            return e.exit_code;
        }
        Err(code) => return code,
    };
    if let Some((l, e)) = parsed
        .commands
        .iter()
        .zip(&results)
        .find_map(|(l, r)| r.as_ref().err().map(|e| (l, e)))
    {
        let _ = writeln!(io.stderr, "{}:{}: {}", l.file, l.line, e.message);
        let _ = writeln!(io.stderr, "{PROG}: {}: nothing changed", file.display());
        return e.exit_code;
    }
    0
}

/// `lbadm check ...`.
fn check(path: &Path, args: &[String], io: &mut CliIo<'_>, json: bool) -> i32 {
    use crate::health::cli::CheckCli;
    if args.first().is_some_and(|a| a == "-h" || a == "--help" || a == "help") {
        let _ = writeln!(io.stdout, "{}", crate::health::cli::USAGE);
        return 0;
    }
    match crate::health::cli::parse(args, io.names) {
        Err(e) => write_err(io, &e),
        Ok(CheckCli::Change(cmd)) => match call(path, Request::new(Op::Apply(vec![cmd])), io) {
            Ok(Reply::Ok) => 0,
            Ok(other) => unexpected(io, &other),
            Err(code) => code,
        },
        Ok(CheckCli::Show(service)) => match call(path, Request::new(Op::CheckShow { service }), io) {
            Ok(Reply::Checks(r)) => {
                let text = if json {
                    format::json(&r)
                } else {
                    crate::health::report::format(&r)
                };
                if io.stdout.write_all(text.as_bytes()).and_then(|()| io.stdout.flush()).is_err() {
                    return 1;
                }
                0
            }
            Ok(other) => unexpected(io, &other),
            Err(code) => code,
        },
    }
}

/// `-R`: reads rules from stdin, sends them as one batch, reports like ipvsadm.
fn restore(path: &Path, io: &mut CliIo<'_>) -> i32 {
    let mut cmds: Vec<IpvsCommand> = Vec::new();
    // What ends the input early: a parse error (printed after the batch) or -h/-v output.
    let mut abort: Option<Result<String, CtlError>> = None;
    let mut line = String::new();
    loop {
        line.clear();
        match io.stdin.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                abort = Some(Err(CtlError::failure(format!(
                    "{PROG}: reading standard input: {e}"
                ))));
                break;
            }
        }
        let words = ipvsadm::restore_words(&line);
        if words.is_empty() {
            continue;
        }
        let env = ParseEnv {
            names: io.names,
            prog: PROG,
        };
        match ipvsadm::parse_with(&words, &env) {
            Ok(IpvsCommand::Restore) => {
                abort = Some(Err(CtlError::try_help(PROG)));
                break;
            }
            Ok(IpvsCommand::Help) => {
                abort = Some(Ok(ipvsadm::usage(PROG)));
                break;
            }
            Ok(IpvsCommand::Version) => {
                abort = Some(Ok(version()));
                break;
            }
            Ok(c) => cmds.push(c),
            Err(e) => {
                abort = Some(Err(e));
                break;
            }
        }
    }
    let mut status = 0;
    if !cmds.is_empty() && cmds.iter().all(|c| c.config_command().is_some()) {
        // Only configuration changes (the usual `-S` output): one transaction, applied
        // line by line with failures skipped (`Commit { atomic: false }`), published once.
        // The refusals `validate` makes are found here, in line order like the others.
        let mut local: Vec<Option<CtlError>> = Vec::with_capacity(cmds.len());
        let mut changes: Vec<ConfigCommand> = Vec::with_capacity(cmds.len());
        for c in &cmds {
            match c.validate() {
                Ok(()) => {
                    changes.extend(c.config_command());
                    local.push(None);
                }
                Err(e) => local.push(Some(e)),
            }
        }
        let mut remote = match transaction(path, &changes, false, io) {
            Ok(Ok(results)) => results.into_iter(),
            Ok(Err(e)) => return write_err(io, &e),
            Err(code) => return code,
        };
        for l in local {
            let r = match l {
                Some(e) => Err(e),
                None => remote.next().unwrap_or(Ok(())),
            };
            status = match r {
                Ok(()) => 0,
                Err(e) => write_err(io, &e),
            };
        }
        return match abort {
            None => status,
            Some(Ok(text)) => {
                let _ = io.stdout.write_all(text.as_bytes());
                0
            }
            Some(Err(e)) => write_err(io, &e),
        };
    }
    for chunk in cmds.chunks(RESTORE_CHUNK) {
        match call(path, Request::new(Op::Restore(chunk.to_vec())), io) {
            Ok(Reply::Batch(results)) => {
                for r in &results {
                    status = match r {
                        Ok(()) => 0,
                        Err(e) => write_err(io, e),
                    };
                }
            }
            Ok(other) => {
                let _ = writeln!(
                    io.stderr,
                    "{PROG}: unexpected reply from director: {other:?}"
                );
                return 1;
            }
            Err(code) => return code,
        }
    }
    match abort {
        None => status,
        Some(Ok(text)) => {
            let _ = io.stdout.write_all(text.as_bytes());
            0
        }
        Some(Err(e)) => write_err(io, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn worst_case_restore_chunk_fits_a_request() {
        use crate::model::{FwdMethod, SchedFlags, ServerSpec, ServiceKey, ServiceSpec};
        let key = ServiceKey::Addr {
            proto: crate::Protocol::Udp,
            addr: Ipv4Addr::new(255, 255, 255, 255),
            port: 65535,
        };
        let svc = IpvsCommand::EditService(ServiceSpec {
            key,
            scheduler: "x".repeat(15),
            flags: SchedFlags {
                flag1: true,
                flag2: true,
                flag3: true,
            },
            persistent: Some(2_678_400),
            netmask: Ipv4Addr::new(255, 255, 255, 255),
            ops: true,
            pe: Some("y".repeat(16)),
        });
        let srv = IpvsCommand::EditServer {
            service: key,
            server: ServerSpec {
                addr: Ipv4Addr::new(255, 255, 255, 255),
                port: 65535,
                fwd: FwdMethod::Tunnel,
                weight: 65535,
                u_threshold: i32::MAX as u32,
                l_threshold: i32::MAX as u32,
            },
        };
        for c in [svc, srv] {
            let body =
                crate::proto::encode_request(&Request::new(Op::Restore(vec![c; RESTORE_CHUNK])));
            assert!(
                body.len() < crate::proto::MAX_REQUEST,
                "{} bytes",
                body.len()
            );
        }
    }

    #[test]
    fn director_verbs() {
        let (op, _) = parse_director_verb(&w("addr add 10.0.0.1/24 dev dpdk0")).unwrap();
        assert_eq!(
            op,
            Op::AddrAdd {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 24,
                dev: "dpdk0".into()
            }
        );
        let (op, _) = parse_director_verb(&w("addr add dev dpdk1 192.168.1.100")).unwrap();
        assert_eq!(
            op,
            Op::AddrAdd {
                addr: Ipv4Addr::new(192, 168, 1, 100),
                prefix_len: 32,
                dev: "dpdk1".into()
            }
        );
        let (op, _) = parse_director_verb(&w("addr del 10.0.0.1 dev dpdk0")).unwrap();
        assert_eq!(
            op,
            Op::AddrDel {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: None,
                dev: "dpdk0".into()
            }
        );
        assert_eq!(parse_director_verb(&w("addr")).unwrap().0, Op::AddrShow);
        assert_eq!(
            parse_director_verb(&w("addr show dev dpdk0")).unwrap().0,
            Op::AddrShow
        );
        assert_eq!(
            parse_director_verb(&w("neigh show")).unwrap().0,
            Op::NeighShow
        );
        assert_eq!(parse_director_verb(&w("link")).unwrap().0, Op::LinkShow);
        for bad in [
            "addr add 10.0.0.1/33 dev dpdk0",
            "addr add 10.0.0.1/24",
            "addr add dev dpdk0",
            "addr add 10.0.0/24 dev dpdk0",
            "addr add 10.0.0.1/24 10.0.0.2/24 dev dpdk0",
            "addr add 10.0.0.1/24 dev",
            "addr flush",
            "addr show dev",
            "neigh flush",
            "link set up",
        ] {
            let e = parse_director_verb(&w(bad)).unwrap_err();
            assert_eq!(e.exit_code, 2, "{bad}");
            assert!(e.message.starts_with("lbadm: "), "{bad}: {}", e.message);
        }
    }
}
