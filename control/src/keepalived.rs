//! keepalived.conf, verbatim: the LVS part of keepalived's configuration
//! (doc/man/man5/keepalived.conf.5.in, keepalived/check/check_parser.c, check_data.c) turned
//! into the director's configuration commands, for `director --keepalived FILE` and `lbadm
//! restore --keepalived FILE`.
//!
//! Accepted: `virtual_server IP PORT | fwmark N | group NAME { ... }` with its real servers
//! and TCP_CHECK, HTTP_GET, SSL_GET and MISC_CHECK checkers, `virtual_server_group`, the
//! global `SSL { ca certificate key }` block, `include` (globs, relative to the including
//! file), comments (`#`, `!`), braces anywhere on a line, quoted strings, and the legacy
//! aliases `lb_algo`/`lb_kind`. `global_defs`, `vrrp_*` and the other non-LVS blocks are
//! skipped, so one file can drive keepalived's VRRP and the director.
//!
//! keepalived's defaults apply, its surprises included: protocol UDP when omitted,
//! `persistence_timeout` alone = 360 s (as is a port-0 service or `persistence_granularity`
//! without a timeout), scheduler wlc, forwarding NAT when `lb_kind` is omitted — which the
//! director refuses, like NAT and TUN themselves, with a one-line reason (it forwards by
//! direct routing only). Direct-routing real servers take the virtual port (a differing
//! port is reset with a warning, as keepalived does; a checker still probes the port that
//! was written), fwmark services' servers have none. Timing inherits virtual server → real
//! server → checker, then keepalived's per-checker defaults ([`crate::health::spec`]).
//! keepalived's own corrections (quorum above the total weight, hysteresis >= quorum,
//! duplicated real servers, empty virtual servers) are made with a warning.
//!
//! Invariants: parsing is pure ([`parse`] reads no file and has no side effect; includes go
//! through a resolver callback, [`load`] supplies the file system); any keyword this parser
//! does not know, or a value it cannot use, is an error `FILE:LINE: reason` and nothing is
//! applied; keywords whose effect the director does not have (e-mail alerts, SNMP names)
//! are accepted with a warning naming them; each command remembers the file and line it
//! came from so that an apply-time refusal names the line too.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::CtlError;
use crate::health::spec::{
    default_delay_before_retry, default_retry, parse_bool, parse_digest, parse_secs, CheckKind,
    CheckSpec, HttpCheck, HttpProtocol, MiscCheck, ServerHealthOpts, ServiceHealth, SorryServer,
    StatusSet, Target, Timing, UrlSpec, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DELAY_LOOP,
};
use crate::health::{AddCheck, CheckSpec as _Spec};
use crate::ipvsadm::IpvsCommand;
use crate::model::{
    ConfigCommand, Protocol, SchedFlags, ServerSpec, ServiceKey, ServiceSpec, MAX_WEIGHT,
};
use crate::server::{Backend, Controller};

/// Deepest include nesting.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Most addresses one virtual_server_group range may expand to.
const MAX_RANGE: u64 = 4096;
/// keepalived's IPVS_SVC_PERSISTENT_TIMEOUT.
const PERSISTENT_TIMEOUT: u32 = 360;

/// A parse error at a line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KaError {
    /// File name as given (or as included).
    pub file: String,
    /// Line (1-based; 0: not about one line).
    pub line: usize,
    /// Why.
    pub message: String,
}

impl fmt::Display for KaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// A command and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// File.
    pub file: String,
    /// Line (1-based).
    pub line: usize,
    /// The command.
    pub cmd: ConfigCommand,
}

/// A parsed file: the commands in order and keepalived-style warnings (`FILE:LINE: text`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// Commands.
    pub commands: Vec<Located>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// Finds the files an `include` names: `(pattern, including file)` → `(name, text)` pairs.
pub type Resolver<'a> = dyn FnMut(&str, &str) -> Result<Vec<(String, String)>, String> + 'a;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    file: usize,
    line: usize,
}

#[derive(Debug, Clone)]
struct Stmt {
    words: Vec<String>,
    loc: Loc,
}

impl Stmt {
    fn is(&self, w: &str) -> bool {
        self.words.len() == 1 && self.words[0] == w
    }
}

struct Lexer<'r, 'a> {
    files: Vec<String>,
    out: Vec<Stmt>,
    resolve: &'r mut Resolver<'a>,
}

fn lex_err(files: &[String], loc: Loc, msg: impl Into<String>) -> KaError {
    KaError {
        file: files[loc.file].clone(),
        line: loc.line,
        message: msg.into(),
    }
}

/// Splits one line into statements: words (quotes removed, whitespace inside quotes kept)
/// with `{` and `}` as statements of their own; `#` and `!` start a comment outside quotes.
fn split_line(line: &str) -> Result<Vec<Vec<String>>, String> {
    let mut stmts: Vec<Vec<String>> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' | '\'' => {
                quote = Some(c);
                in_word = true;
            }
            '#' | '!' => break,
            '{' | '}' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                if !words.is_empty() {
                    stmts.push(std::mem::take(&mut words));
                }
                stmts.push(vec![c.to_string()]);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c if c.is_control() => return Err(format!("control character {:?} in the line", c)),
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quoted string".into());
    }
    if in_word {
        words.push(cur);
    }
    if !words.is_empty() {
        stmts.push(words);
    }
    Ok(stmts)
}

impl Lexer<'_, '_> {
    fn file(&mut self, name: &str, text: &str, depth: usize) -> Result<(), KaError> {
        let idx = self.files.len();
        self.files.push(name.to_string());
        for (i, line) in text.lines().enumerate() {
            let loc = Loc { file: idx, line: i + 1 };
            let stmts = split_line(line).map_err(|m| lex_err(&self.files, loc, m))?;
            for words in stmts {
                if words[0] == "include" {
                    if words.len() != 2 {
                        return Err(lex_err(&self.files, loc, "include takes one file name or pattern"));
                    }
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(lex_err(&self.files, loc, "includes nested too deeply"));
                    }
                    let found = (self.resolve)(&words[1], name).map_err(|m| lex_err(&self.files, loc, m))?;
                    for (n, t) in found {
                        self.file(&n, &t, depth + 1)?;
                    }
                    continue;
                }
                if words[0].starts_with('@') || words[0].starts_with('$') || words[0] == "~SEQ" {
                    return Err(lex_err(
                        &self.files,
                        loc,
                        format!(
                            "'{}': keepalived's conditional lines, parameter substitution and sequences are not supported",
                            words[0]
                        ),
                    ));
                }
                self.out.push(Stmt { words, loc });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
struct Ssl {
    ca: Option<String>,
    certificate: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Clone)]
enum VsKind {
    Addr(Ipv4Addr, u16),
    Fwmark(u32),
    Group(String),
}

#[derive(Debug, Clone)]
enum GroupEntry {
    Addr(Vec<Ipv4Addr>, u16),
    Fwmark(u32),
}

#[derive(Debug, Clone, Default)]
struct TimingDraft {
    delay_loop: Option<u64>,
    connect_timeout: Option<u64>,
    retry: Option<u32>,
    delay_before_retry: Option<u64>,
    warmup: Option<u64>,
    alpha: Option<bool>,
}

#[derive(Debug, Clone)]
struct CheckDraft {
    loc: Loc,
    name: String,
    timing: TimingDraft,
    log_all_failures: bool,
    target: Target,
    http: HttpCheck,
    misc_path: Option<String>,
    misc_timeout: Option<u64>,
    misc_dynamic: bool,
}

#[derive(Debug, Clone)]
struct RsDraft {
    loc: Loc,
    addr: Ipv4Addr,
    port: Option<u16>,
    weight: Option<u32>,
    fwd: Option<(String, Loc)>,
    u_threshold: u32,
    l_threshold: u32,
    inhibit: Option<bool>,
    notify_up: Option<String>,
    notify_down: Option<String>,
    timing: TimingDraft,
    virtualhost: Option<String>,
    checks: Vec<CheckDraft>,
}

#[derive(Debug, Clone)]
struct VsDraft {
    loc: Loc,
    kind: VsKind,
    timing: TimingDraft,
    sched: Option<(String, Loc)>,
    fwd: Option<(String, Loc)>,
    persistence: Option<u32>,
    granularity: Option<Ipv4Addr>,
    protocol: Option<Protocol>,
    flags: Vec<(String, Loc)>,
    ops: Option<Loc>,
    inhibit: bool,
    quorum: u32,
    hysteresis: u32,
    quorum_up: Option<String>,
    quorum_down: Option<String>,
    sorry: Option<(Ipv4Addr, Option<u16>, Loc)>,
    sorry_inhibit: bool,
    sorry_fwd: Option<(String, Loc)>,
    virtualhost: Option<String>,
    weight: u32,
    rs: Vec<RsDraft>,
}

struct Parser<'s> {
    st: &'s [Stmt],
    files: &'s [String],
    i: usize,
    warnings: Vec<String>,
    ssl: Ssl,
    groups: HashMap<String, (Vec<GroupEntry>, Loc)>,
    vs: Vec<VsDraft>,
}

type R<T> = Result<T, KaError>;

/// Top-level blocks that belong to other keepalived processes (VRRP, BFD) or to features
/// the director leaves to the host; skipped whole.
const SKIPPED_BLOCKS: &[&str] = &[
    "global_defs",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "linkbeat_interfaces",
    "garp_group",
    "track_group",
    "track_file",
    "track_process",
    "bfd_instance",
    "net_namespace",
];

impl Parser<'_> {
    fn err(&self, loc: Loc, msg: impl Into<String>) -> KaError {
        lex_err(self.files, loc, msg)
    }

    fn warn(&mut self, loc: Loc, msg: impl Into<String>) {
        let m = format!("{}:{}: {}", self.files[loc.file], loc.line, msg.into());
        self.warnings.push(m);
    }

    fn peek(&self) -> Option<&Stmt> {
        self.st.get(self.i)
    }

    fn next(&mut self) -> Option<Stmt> {
        let s = self.st.get(self.i).cloned();
        self.i += 1;
        s
    }

    /// Consumes the `{` that must follow a block keyword.
    fn open(&mut self, s: &Stmt) -> R<()> {
        match self.next() {
            Some(b) if b.is("{") => Ok(()),
            _ => Err(self.err(s.loc, format!("'{{' expected after {}", s.words[0]))),
        }
    }

    /// Skips a balanced block whose `{` is next (if it is).
    fn skip_block(&mut self, s: &Stmt) -> R<()> {
        if !self.peek().is_some_and(|b| b.is("{")) {
            return Ok(());
        }
        self.i += 1;
        let mut depth = 1usize;
        while let Some(t) = self.next() {
            if t.is("{") {
                depth += 1;
            } else if t.is("}") {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
        }
        Err(self.err(s.loc, format!("missing '}}' for the {} block", s.words[0])))
    }

    /// The statements of a block up to its `}` (the `{` already consumed).
    fn body(&mut self, s: &Stmt) -> R<Vec<Stmt>> {
        let mut out = Vec::new();
        loop {
            match self.next() {
                None => return Err(self.err(s.loc, format!("missing '}}' for the {} block", s.words[0]))),
                Some(t) if t.is("}") => return Ok(out),
                Some(t) => out.push(t),
            }
        }
    }

    fn top(&mut self) -> R<()> {
        while let Some(s) = self.next() {
            let kw = s.words[0].as_str();
            if s.is("{") || s.is("}") {
                return Err(self.err(s.loc, format!("unexpected '{kw}'")));
            }
            if SKIPPED_BLOCKS.contains(&kw) || kw.starts_with("vrrp_") {
                self.skip_block(&s)?;
                continue;
            }
            match kw {
                "SSL" => self.ssl_block(&s)?,
                "virtual_server_group" => self.group(&s)?,
                "virtual_server" => self.virtual_server(&s)?,
                "BFD_CHECK" | "bfd" => return Err(self.err(s.loc, format!("'{kw}': BFD is not supported"))),
                _ => return Err(self.err(s.loc, format!("unknown keyword '{kw}'"))),
            }
        }
        Ok(())
    }

    fn args(&self, s: &Stmt, n: usize) -> R<()> {
        if s.words.len() != n + 1 {
            return Err(self.err(
                s.loc,
                format!(
                    "{} takes {} argument{}",
                    s.words[0],
                    n,
                    if n == 1 { "" } else { "s" }
                ),
            ));
        }
        Ok(())
    }

    fn arg<'x>(&self, s: &'x Stmt) -> R<&'x str> {
        self.args(s, 1)?;
        Ok(&s.words[1])
    }

    fn uint(&self, s: &Stmt, min: u64, max: u64) -> R<u64> {
        let v = self.arg(s)?;
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) && v.chars().all(|c| c.is_ascii_digit()) => Ok(n),
            _ => Err(self.err(s.loc, format!("invalid {} '{v}' (expected {min}..{max})", s.words[0]))),
        }
    }

    fn timer(&self, s: &Stmt, allow_zero: bool) -> R<u64> {
        let v = self.arg(s)?;
        match parse_secs(v) {
            Some(t) if (allow_zero || t > 0) && t <= crate::health::spec::MAX_TIMER => Ok(t),
            _ => Err(self.err(s.loc, format!("invalid {} '{v}' (seconds{})", s.words[0], if allow_zero { "" } else { ", above 0" }))),
        }
    }

    /// `KEYWORD [BOOL]` (alone: true).
    fn flag(&self, s: &Stmt) -> R<bool> {
        match s.words.len() {
            1 => Ok(true),
            2 => parse_bool(&s.words[1]).ok_or_else(|| {
                self.err(s.loc, format!("invalid {} value '{}' (on|off|true|false|yes|no)", s.words[0], s.words[1]))
            }),
            _ => Err(self.err(s.loc, format!("{} takes at most one argument", s.words[0]))),
        }
    }

    fn ip(&self, loc: Loc, v: &str) -> R<Ipv4Addr> {
        if v.contains(':') {
            return Err(self.err(loc, format!("'{v}': IPv6 is not supported by this director")));
        }
        v.parse()
            .map_err(|_| self.err(loc, format!("invalid IPv4 address '{v}'")))
    }

    fn port(&self, loc: Loc, v: &str) -> R<u16> {
        match v.parse::<u32>() {
            Ok(p) if p <= 65535 && v.chars().all(|c| c.is_ascii_digit()) => Ok(p as u16),
            _ => Err(self.err(loc, format!("invalid port '{v}'"))),
        }
    }

    /// A script keyword: one command (quoted if it has arguments); a user after it is
    /// refused.
    fn script(&self, s: &Stmt) -> R<String> {
        if s.words.len() > 2 {
            return Err(self.err(
                s.loc,
                format!("{}: running scripts as another user is not supported (quote the command if it has arguments)", s.words[0]),
            ));
        }
        let c = self.arg(s)?;
        crate::health::spec::validate_command(&s.words[0], c).map_err(|e| self.err(s.loc, e.message))?;
        Ok(c.to_string())
    }

    fn ssl_block(&mut self, s: &Stmt) -> R<()> {
        self.open(s)?;
        for t in self.body(s)? {
            let v = match t.words[0].as_str() {
                "password" => {
                    return Err(self.err(t.loc, "SSL password: encrypted keys are not supported (use an unencrypted key)"))
                }
                "ca" | "certificate" | "key" => self.arg(&t)?.to_string(),
                k => return Err(self.err(t.loc, format!("unknown keyword '{k}' in SSL"))),
            };
            match t.words[0].as_str() {
                "ca" => self.ssl.ca = Some(v),
                "certificate" => self.ssl.certificate = Some(v),
                _ => self.ssl.key = Some(v),
            }
        }
        Ok(())
    }

    fn range(&self, loc: Loc, v: &str) -> R<Vec<Ipv4Addr>> {
        let (lo, hi): (u32, u32) = if let Some((a, len)) = v.split_once('/') {
            let a = u32::from(self.ip(loc, a)?);
            let len: u32 = match len.parse() {
                Ok(l) if l <= 32 => l,
                _ => return Err(self.err(loc, format!("invalid prefix length in '{v}'"))),
            };
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (a & mask, (a & mask) | !mask)
        } else if let Some((a, b)) = v.split_once('-') {
            let a = u32::from(self.ip(loc, a)?);
            let b = if b.contains('.') {
                u32::from(self.ip(loc, b)?)
            } else {
                match b.parse::<u8>() {
                    Ok(last) => (a & 0xffff_ff00) | u32::from(last),
                    Err(_) => return Err(self.err(loc, format!("invalid address range '{v}'"))),
                }
            };
            if b < a {
                return Err(self.err(loc, format!("address range '{v}' ends before it starts")));
            }
            (a, b)
        } else {
            let a = u32::from(self.ip(loc, v)?);
            (a, a)
        };
        if u64::from(hi - lo) + 1 > MAX_RANGE {
            return Err(self.err(loc, format!("address range '{v}' has more than {MAX_RANGE} addresses")));
        }
        Ok((lo..=hi).map(Ipv4Addr::from).collect())
    }

    fn group(&mut self, s: &Stmt) -> R<()> {
        self.args(s, 1)?;
        let name = s.words[1].clone();
        self.open(s)?;
        let mut entries = Vec::new();
        for t in self.body(s)? {
            if t.words[0] == "fwmark" {
                if t.words.len() == 3 {
                    if t.words[2] == "inet6" {
                        return Err(self.err(t.loc, "IPv6 is not supported by this director"));
                    }
                    if t.words[2] != "inet" {
                        return Err(self.err(t.loc, format!("unknown address family '{}'", t.words[2])));
                    }
                } else if t.words.len() != 2 {
                    return Err(self.err(t.loc, "fwmark takes a mark and an optional family"));
                }
                let m = match t.words[1].parse::<u32>() {
                    Ok(m) if m > 0 => m,
                    _ => return Err(self.err(t.loc, format!("invalid fwmark '{}' (1..4294967295)", t.words[1]))),
                };
                entries.push(GroupEntry::Fwmark(m));
            } else {
                if t.words.len() > 2 {
                    return Err(self.err(t.loc, "a group entry is ADDRESS[-RANGE|/LEN] [PORT]"));
                }
                let addrs = self.range(t.loc, &t.words[0])?;
                let port = match t.words.get(1) {
                    Some(p) => self.port(t.loc, p)?,
                    None => 0,
                };
                entries.push(GroupEntry::Addr(addrs, port));
            }
        }
        if entries.is_empty() {
            self.warn(s.loc, format!("virtual server group {name} has no entries - removing"));
            return Ok(());
        }
        if self.groups.insert(name.clone(), (entries, s.loc)).is_some() {
            return Err(self.err(s.loc, format!("virtual_server_group {name} defined twice")));
        }
        Ok(())
    }

    fn timing_kw(&self, t: &Stmt, d: &mut TimingDraft, retry_min: u64) -> R<bool> {
        match t.words[0].as_str() {
            "delay_loop" => d.delay_loop = Some(self.timer(t, false)?),
            "connect_timeout" => d.connect_timeout = Some(self.timer(t, false)?),
            "retry" => d.retry = Some(self.uint(t, retry_min, 1_000_000)? as u32),
            "delay_before_retry" => d.delay_before_retry = Some(self.timer(t, true)?),
            "warmup" => d.warmup = Some(self.timer(t, true)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn fwd(&self, t: &Stmt) -> R<(String, Loc)> {
        if t.words.len() < 2 {
            return Err(self.err(t.loc, format!("{} takes a method (DR)", t.words[0])));
        }
        let m = t.words[1].as_str();
        match m {
            "DR" if t.words.len() == 2 => Ok((m.to_string(), t.loc)),
            "DR" => Err(self.err(t.loc, format!("{} DR takes no options", t.words[0]))),
            "NAT" | "TUN" => Ok((m.to_string(), t.loc)),
            _ => Err(self.err(t.loc, format!("unknown forwarding method '{m}' (DR, NAT, TUN)"))),
        }
    }

    fn virtual_server(&mut self, s: &Stmt) -> R<()> {
        let kind = match s.words.get(1).map(String::as_str) {
            Some("group") => {
                self.args(s, 2)?;
                VsKind::Group(s.words[2].clone())
            }
            Some("fwmark") => {
                self.args(s, 2)?;
                match s.words[2].parse::<u32>() {
                    Ok(m) if m > 0 => VsKind::Fwmark(m),
                    _ => return Err(self.err(s.loc, format!("invalid fwmark '{}' (1..4294967295)", s.words[2]))),
                }
            }
            Some(ip) => {
                if s.words.len() > 3 {
                    return Err(self.err(s.loc, "virtual_server takes an address and a port"));
                }
                let ip = self.ip(s.loc, ip)?;
                let port = match s.words.get(2) {
                    Some(p) => self.port(s.loc, p)?,
                    None => 0,
                };
                VsKind::Addr(ip, port)
            }
            None => return Err(self.err(s.loc, "virtual_server needs an address, fwmark N or group NAME")),
        };
        self.open(s)?;
        let mut vs = VsDraft {
            loc: s.loc,
            kind,
            timing: TimingDraft::default(),
            sched: None,
            fwd: None,
            persistence: None,
            granularity: None,
            protocol: None,
            flags: Vec::new(),
            ops: None,
            inhibit: false,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry: None,
            sorry_inhibit: false,
            sorry_fwd: None,
            virtualhost: None,
            weight: 1,
            rs: Vec::new(),
        };
        loop {
            let Some(t) = self.next() else {
                return Err(self.err(s.loc, "missing '}' for the virtual_server block"));
            };
            if t.is("}") {
                break;
            }
            if t.is("{") {
                return Err(self.err(t.loc, "unexpected '{'"));
            }
            if self.timing_kw(&t, &mut vs.timing, 1)? {
                continue;
            }
            let kw = t.words[0].as_str();
            match kw {
                "lb_algo" | "lvs_sched" => {
                    let v = self.arg(&t)?.to_string();
                    vs.sched = Some((v, t.loc));
                }
                "lb_kind" | "lvs_method" => vs.fwd = Some(self.fwd(&t)?),
                "persistence_timeout" => {
                    vs.persistence = Some(if t.words.len() == 1 {
                        PERSISTENT_TIMEOUT
                    } else {
                        self.uint(&t, 1, u64::from(crate::model::MAX_TIMEOUT))? as u32
                    });
                }
                "persistence_granularity" => {
                    let v = self.arg(&t)?;
                    vs.granularity = Some(self.ip(t.loc, v)?);
                }
                "persistence_engine" => {
                    return Err(self.err(t.loc, "persistence_engine: the director does not support persistence engines"))
                }
                "protocol" => {
                    let v = self.arg(&t)?;
                    vs.protocol = Some(match v.to_ascii_uppercase().as_str() {
                        "TCP" => Protocol::Tcp,
                        "UDP" => Protocol::Udp,
                        "SCTP" => return Err(self.err(t.loc, "protocol SCTP is not supported by this director")),
                        _ => return Err(self.err(t.loc, format!("unknown protocol '{v}' (TCP, UDP)"))),
                    });
                }
                "ops" => {
                    self.args(&t, 0)?;
                    vs.ops = Some(t.loc);
                }
                "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" => {
                    self.args(&t, 0)?;
                    vs.flags.push((kw.to_string(), t.loc));
                }
                "hashed" => self.args(&t, 0)?,
                "inhibit_on_failure" => vs.inhibit = self.flag(&t)?,
                "alpha" => vs.timing.alpha = Some(self.flag(&t)?),
                "omega" => return Err(self.err(t.loc, "omega (notifiers at shutdown) is not supported by this director")),
                "ha_suspend" => return Err(self.err(t.loc, "ha_suspend is not supported by this director")),
                "ip_family" => match self.arg(&t)? {
                    "inet" => {}
                    "inet6" => return Err(self.err(t.loc, "IPv6 is not supported by this director")),
                    v => return Err(self.err(t.loc, format!("unknown address family '{v}'"))),
                },
                "quorum" => vs.quorum = self.uint(&t, 1, u64::from(u32::MAX))? as u32,
                "hysteresis" => vs.hysteresis = self.uint(&t, 0, u64::from(u32::MAX))? as u32,
                "quorum_up" => vs.quorum_up = Some(self.script(&t)?),
                "quorum_down" => vs.quorum_down = Some(self.script(&t)?),
                "sorry_server" => {
                    if t.words.len() < 2 || t.words.len() > 3 {
                        return Err(self.err(t.loc, "sorry_server takes an address and a port"));
                    }
                    let ip = self.ip(t.loc, &t.words[1])?;
                    let port = match t.words.get(2) {
                        Some(p) => Some(self.port(t.loc, p)?),
                        None => None,
                    };
                    vs.sorry = Some((ip, port, t.loc));
                }
                "sorry_server_inhibit" => {
                    self.flag(&t)?;
                    if vs.sorry.is_none() {
                        self.warn(t.loc, "Ignoring sorry_server inhibit used before or without sorry_server");
                    } else {
                        vs.sorry_inhibit = true;
                    }
                }
                "sorry_server_lvs_method" => vs.sorry_fwd = Some(self.fwd(&t)?),
                "virtualhost" => vs.virtualhost = Some(self.arg(&t)?.to_string()),
                "weight" => vs.weight = self.uint(&t, 1, u64::from(MAX_WEIGHT))? as u32,
                "smtp_alert" | "snmp_name" => {
                    self.warn(t.loc, format!("{kw}: ignored (the director sends no e-mail or SNMP notifications)"));
                }
                "real_server" => {
                    let rs = self.real_server(&t)?;
                    vs.rs.push(rs);
                }
                _ => return Err(self.err(t.loc, format!("unknown keyword '{kw}' in virtual_server"))),
            }
        }
        self.vs.push(vs);
        Ok(())
    }

    fn real_server(&mut self, s: &Stmt) -> R<RsDraft> {
        if s.words.len() < 2 || s.words.len() > 3 {
            return Err(self.err(s.loc, "real_server takes an address and a port"));
        }
        let addr = self.ip(s.loc, &s.words[1])?;
        let port = match s.words.get(2) {
            Some(p) => match self.port(s.loc, p)? {
                0 => None,
                p => Some(p),
            },
            None => None,
        };
        self.open(s)?;
        let mut rs = RsDraft {
            loc: s.loc,
            addr,
            port,
            weight: None,
            fwd: None,
            u_threshold: 0,
            l_threshold: 0,
            inhibit: None,
            notify_up: None,
            notify_down: None,
            timing: TimingDraft::default(),
            virtualhost: None,
            checks: Vec::new(),
        };
        loop {
            let Some(t) = self.next() else {
                return Err(self.err(s.loc, "missing '}' for the real_server block"));
            };
            if t.is("}") {
                break;
            }
            if t.is("{") {
                return Err(self.err(t.loc, "unexpected '{'"));
            }
            if self.timing_kw(&t, &mut rs.timing, 1)? {
                continue;
            }
            let kw = t.words[0].as_str();
            match kw {
                "weight" => rs.weight = Some(self.uint(&t, 0, u64::from(MAX_WEIGHT))? as u32),
                "lvs_method" | "lb_kind" => rs.fwd = Some(self.fwd(&t)?),
                "uthreshold" => rs.u_threshold = self.uint(&t, 0, u64::from(crate::model::MAX_THRESHOLD))? as u32,
                "lthreshold" => rs.l_threshold = self.uint(&t, 0, u64::from(crate::model::MAX_THRESHOLD))? as u32,
                "inhibit_on_failure" => rs.inhibit = Some(self.flag(&t)?),
                "notify_up" => rs.notify_up = Some(self.script(&t)?),
                "notify_down" => rs.notify_down = Some(self.script(&t)?),
                "alpha" => rs.timing.alpha = Some(self.flag(&t)?),
                "virtualhost" => rs.virtualhost = Some(self.arg(&t)?.to_string()),
                "smtp_alert" | "snmp_name" => {
                    self.warn(t.loc, format!("{kw}: ignored (the director sends no e-mail or SNMP notifications)"));
                }
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" => {
                    let c = self.checker(&t)?;
                    rs.checks.push(c);
                }
                "SMTP_CHECK" | "DNS_CHECK" | "PING_CHECK" | "UDP_CHECK" | "FILE_CHECK" | "BFD_CHECK" => {
                    return Err(self.err(
                        t.loc,
                        format!("{kw} is not supported by this director (TCP_CHECK, HTTP_GET, SSL_GET and MISC_CHECK are)"),
                    ))
                }
                _ => return Err(self.err(t.loc, format!("unknown keyword '{kw}' in real_server"))),
            }
        }
        Ok(rs)
    }

    fn checker(&mut self, s: &Stmt) -> R<CheckDraft> {
        if s.words.len() != 1 {
            return Err(self.err(s.loc, format!("{} takes no argument", s.words[0])));
        }
        self.open(s)?;
        let name = s.words[0].clone();
        let is_http = name == "HTTP_GET" || name == "SSL_GET";
        let is_ssl = name == "SSL_GET";
        let is_misc = name == "MISC_CHECK";
        let mut c = CheckDraft {
            loc: s.loc,
            name: name.clone(),
            timing: TimingDraft::default(),
            log_all_failures: false,
            target: Target::default(),
            http: HttpCheck::default(),
            misc_path: None,
            misc_timeout: None,
            misc_dynamic: false,
        };
        loop {
            let Some(t) = self.next() else {
                return Err(self.err(s.loc, format!("missing '}}' for the {name} block")));
            };
            if t.is("}") {
                break;
            }
            if t.is("{") {
                return Err(self.err(t.loc, "unexpected '{'"));
            }
            let kw = t.words[0].as_str();
            let only = |ok: bool, p: &Self| -> R<()> {
                if ok {
                    Ok(())
                } else {
                    Err(p.err(t.loc, format!("unknown keyword '{kw}' in {name}")))
                }
            };
            if (kw == "connect_timeout" && is_misc) || !self.timing_kw(&t, &mut c.timing, 0)? {
                match kw {
                    "alpha" => c.timing.alpha = Some(self.flag(&t)?),
                    "log_all_failures" => c.log_all_failures = self.flag(&t)?,
                    "connect_ip" => {
                        only(!is_misc, self)?;
                        c.target.connect_ip = Some(self.ip(t.loc, self.arg(&t)?)?);
                    }
                    "connect_port" => {
                        only(!is_misc, self)?;
                        let p = self.port(t.loc, self.arg(&t)?)?;
                        if p == 0 {
                            return Err(self.err(t.loc, "invalid connect_port '0'"));
                        }
                        c.target.connect_port = Some(p);
                    }
                    "bindto" => {
                        only(!is_misc, self)?;
                        c.target.bindto = Some(self.ip(t.loc, self.arg(&t)?)?);
                    }
                    "bind_port" => {
                        only(!is_misc, self)?;
                        let p = self.port(t.loc, self.arg(&t)?)?;
                        if p == 0 {
                            return Err(self.err(t.loc, "invalid bind_port '0'"));
                        }
                        c.target.bind_port = Some(p);
                    }
                    "bind_if" | "fwmark" if !is_misc => {
                        return Err(self.err(t.loc, format!("{kw} is not supported by this director")))
                    }
                    "nb_get_retry" if is_http => {
                        self.warn(t.loc, "nb_get_retry is deprecated - please use 'retry'");
                        c.timing.retry = Some(self.uint(&t, 0, 1_000_000)? as u32);
                    }
                    "virtualhost" if is_http => c.http.virtualhost = Some(self.arg(&t)?.to_string()),
                    "http_protocol" if is_http => {
                        let v = self.arg(&t)?;
                        c.http.http_protocol = HttpProtocol::parse(v)
                            .ok_or_else(|| self.err(t.loc, format!("invalid http_protocol '{v}' (1.0, 1.0C, 1.1)")))?;
                    }
                    "fast_recovery" if is_http => c.http.fast_recovery = self.flag(&t)?,
                    "enable_sni" if is_ssl => c.http.enable_sni = self.flag(&t)?,
                    "sni_name" if is_ssl => {
                        c.http.sni_name = Some(self.arg(&t)?.to_string());
                        c.http.enable_sni = true;
                    }
                    "enable_sni" | "sni_name" if is_http => {
                        return Err(self.err(t.loc, format!("{kw} applies to SSL_GET only")))
                    }
                    "tls_compliant" if is_ssl => {
                        self.flag(&t)?;
                    }
                    "url" if is_http => {
                        let u = self.url(&t, is_ssl)?;
                        c.http.urls.push(u);
                    }
                    "misc_path" if is_misc => c.misc_path = Some(self.script(&t)?),
                    "misc_timeout" if is_misc => {
                        c.misc_timeout = Some(self.uint(&t, 1, 86_400 * 365)? * crate::health::spec::SEC)
                    }
                    "misc_dynamic" if is_misc => {
                        self.args(&t, 0)?;
                        c.misc_dynamic = true;
                    }
                    "user" if is_misc => {
                        return Err(self.err(t.loc, "user: running scripts as another user is not supported"))
                    }
                    _ => return Err(self.err(t.loc, format!("unknown keyword '{kw}' in {name}"))),
                }
            }
        }
        if is_http && c.http.urls.is_empty() {
            return Err(self.err(s.loc, format!("{name} has no url")));
        }
        if is_misc && c.misc_path.is_none() {
            return Err(self.err(s.loc, "MISC_CHECK has no misc_path"));
        }
        Ok(c)
    }

    fn url(&mut self, s: &Stmt, is_ssl: bool) -> R<UrlSpec> {
        self.args(s, 0)?;
        self.open(s)?;
        let mut u = UrlSpec::new("");
        let mut path = None;
        for t in self.body(s)? {
            match t.words[0].as_str() {
                "path" => path = Some(self.arg(&t)?.to_string()),
                "digest" => {
                    let v = self.arg(&t)?;
                    if parse_digest(v).is_none() {
                        return Err(self.err(t.loc, format!("digest '{v}' is not 32 hexadecimal digits")));
                    }
                    if u.digest.is_some() {
                        return Err(self.err(t.loc, "digest given twice"));
                    }
                    u.digest = Some(v.to_ascii_lowercase());
                }
                "status_code" => {
                    if t.words.len() < 2 {
                        return Err(self.err(t.loc, "status_code needs codes or ranges"));
                    }
                    for w in &t.words[1..] {
                        u.status.0.push(
                            StatusSet::parse_word(w)
                                .ok_or_else(|| self.err(t.loc, format!("invalid HTTP status code '{w}' (100-599 or A-B)")))?,
                        );
                    }
                }
                "virtualhost" => u.virtualhost = Some(self.arg(&t)?.to_string()),
                "tls_compliant" if is_ssl => {
                    self.flag(&t)?;
                }
                k if k.starts_with("regex") => {
                    return Err(self.err(t.loc, format!("{k}: regular expression checks are not supported by this director")))
                }
                k => return Err(self.err(t.loc, format!("unknown keyword '{k}' in url"))),
            }
        }
        u.path = path.ok_or_else(|| self.err(s.loc, "url has no path"))?;
        Ok(u)
    }
}

fn loc_of(files: &[String], l: Loc) -> (String, usize) {
    (files[l.file].clone(), l.line)
}

/// Builds the commands of the parsed drafts.
fn build(p: &mut Parser<'_>) -> R<Vec<Located>> {
    let mut out = Vec::new();
    let drafts = std::mem::take(&mut p.vs);
    for vs in drafts {
        let push = |out: &mut Vec<Located>, l: Loc, cmd: ConfigCommand| {
            let (file, line) = loc_of(p.files, l);
            out.push(Located { file, line, cmd });
        };
        if vs.rs.is_empty() {
            p.warn(vs.loc, "virtual server has no real servers - ignoring");
            continue;
        }
        // Service keys.
        let keys: Vec<ServiceKey> = match &vs.kind {
            VsKind::Addr(ip, port) => {
                let proto = match vs.protocol {
                    Some(pr) => pr,
                    None => {
                        p.warn(vs.loc, "no protocol set - defaulting to UDP");
                        Protocol::Udp
                    }
                };
                vec![ServiceKey::Addr { proto, addr: *ip, port: *port }]
            }
            VsKind::Fwmark(m) => {
                if vs.protocol.is_some() {
                    p.warn(vs.loc, "protocol specified for fwmark - protocol will be ignored");
                }
                vec![ServiceKey::Fwmark(*m)]
            }
            VsKind::Group(name) => {
                let (entries, _) = p
                    .groups
                    .get(name)
                    .cloned()
                    .ok_or_else(|| p.err(vs.loc, format!("virtual_server_group {name} is not defined")))?;
                let has_addr = entries.iter().any(|e| matches!(e, GroupEntry::Addr(..)));
                let proto = match vs.protocol {
                    Some(pr) => pr,
                    None => {
                        if has_addr {
                            p.warn(vs.loc, "no protocol set - defaulting to UDP");
                        }
                        Protocol::Udp
                    }
                };
                let mut keys = Vec::new();
                for e in entries {
                    match e {
                        GroupEntry::Fwmark(m) => keys.push(ServiceKey::Fwmark(m)),
                        GroupEntry::Addr(addrs, port) => {
                            keys.extend(addrs.into_iter().map(|addr| ServiceKey::Addr { proto, addr, port }))
                        }
                    }
                }
                keys
            }
        };
        // Forwarding: DR only.
        let vs_fwd = vs.fwd.clone();
        let refuse = |p: &Parser<'_>, m: &str, l: Loc| -> KaError {
            p.err(
                l,
                format!("lb_kind {m} is not supported: the director forwards by direct routing only (lb_kind DR)"),
            )
        };
        for rs in &vs.rs {
            match rs.fwd.as_ref().or(vs_fwd.as_ref()) {
                Some((m, l)) if m != "DR" => return Err(refuse(p, m, *l)),
                Some(_) => {}
                None => {
                    return Err(p.err(
                        vs.loc,
                        "no lb_kind: keepalived's default is NAT, which the director does not do (add lb_kind DR)",
                    ))
                }
            }
        }
        if let Some((m, l)) = vs.sorry_fwd.as_ref().or(vs_fwd.as_ref()) {
            if m != "DR" && vs.sorry.is_some() {
                return Err(refuse(p, m, *l));
            }
        }
        // Scheduler.
        let (sched, sched_loc) = vs.sched.clone().unwrap_or_else(|| ("wlc".to_string(), vs.loc));
        const KA_SCHEDULERS: &[&str] = &[
            "rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed", "nq", "twos",
        ];
        if !KA_SCHEDULERS.contains(&sched.as_str()) {
            return Err(p.err(sched_loc, format!("invalid lvs_scheduler '{sched}'")));
        }
        if sched.parse::<crate::model::Scheduler>().is_err() {
            return Err(p.err(sched_loc, format!("scheduler {sched} is not available in this director")));
        }
        let flag_list = vs.flags.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(",");
        let flags = if flag_list.is_empty() {
            SchedFlags::default()
        } else {
            SchedFlags::parse(&flag_list, &sched).map_err(|e| {
                let l = vs.flags.first().map_or(vs.loc, |(_, l)| *l);
                p.err(l, format!("{}: {}", flag_list, e.message))
            })?
        };
        // Persistence (keepalived's corrections).
        let mut persistence = vs.persistence;
        if vs.granularity.is_some() && persistence.is_none() {
            persistence = Some(PERSISTENT_TIMEOUT);
        }
        let port_zero = keys.iter().any(|k| matches!(k, ServiceKey::Addr { port: 0, .. }));
        if port_zero && persistence.is_none() {
            p.warn(vs.loc, "zero port only valid for persistent services - setting");
            persistence = Some(PERSISTENT_TIMEOUT);
        }
        // Real servers: duplicates removed, ports as keepalived resets them.
        let mut servers: Vec<RsDraft> = Vec::new();
        for rs in &vs.rs {
            if servers.iter().any(|o| o.addr == rs.addr && o.port == rs.port) {
                p.warn(rs.loc, format!("real server {}:{} is duplicated - removing second rs", rs.addr, rs.port.unwrap_or(0)));
                continue;
            }
            servers.push(rs.clone());
        }
        let weight_sum: u64 = servers.iter().map(|r| u64::from(r.weight.unwrap_or(vs.weight))).sum();
        let mut quorum = vs.quorum;
        if u64::from(quorum) > weight_sum {
            let q = weight_sum.max(1) as u32;
            p.warn(vs.loc, format!("quorum {quorum} exceeds total weight of real servers {weight_sum}, reducing quorum to {q}"));
            quorum = q;
        }
        let mut hysteresis = vs.hysteresis;
        if hysteresis >= quorum {
            p.warn(vs.loc, format!("hysteresis {hysteresis} >= quorum {quorum}; setting hysteresis to {}", quorum - 1));
            hysteresis = quorum - 1;
        }
        for key in &keys {
            let spec = ServiceSpec {
                key: *key,
                scheduler: sched.clone(),
                flags,
                persistent: persistence,
                netmask: vs.granularity.unwrap_or(Ipv4Addr::BROADCAST),
                ops: vs.ops.is_some(),
                pe: None,
            };
            IpvsCommand::AddService(spec.clone())
                .validate()
                .map_err(|e| p.err(vs.ops.unwrap_or(vs.loc), e.message))?;
            push(&mut out, vs.loc, ConfigCommand::AddService(spec));
            let svc_port = key.port();
            for rs in &servers {
                let pool_port = if key.is_fwmark() { 0 } else { svc_port };
                if key.is_fwmark() {
                    if rs.port.is_some() {
                        p.warn(rs.loc, format!("fwmark virtual server, real server {} has port specified - clearing", rs.addr));
                    }
                } else if rs.port.is_some_and(|rp| rp != svc_port) {
                    p.warn(rs.loc, format!("virtual server and real server {}:{} ports don't match - resetting", rs.addr, rs.port.unwrap_or(0)));
                }
                let mut s = ServerSpec::new(rs.addr, pool_port);
                s.weight = rs.weight.unwrap_or(vs.weight);
                s.u_threshold = rs.u_threshold;
                s.l_threshold = rs.l_threshold;
                if s.l_threshold > s.u_threshold {
                    return Err(p.err(rs.loc, "lthreshold above uthreshold"));
                }
                push(&mut out, rs.loc, ConfigCommand::AddServer { service: *key, server: s });
            }
            let sorry = vs.sorry.map(|(ip, port, l)| {
                let sp = if key.is_fwmark() {
                    0
                } else {
                    if port.is_some_and(|sp| sp != svc_port) {
                        p.warn(l, "virtual server and sorry server ports don't match - resetting");
                    }
                    svc_port
                };
                SorryServer { addr: ip, port: sp, inhibit: vs.sorry_inhibit }
            });
            if let Some(s) = sorry {
                if servers.iter().any(|r| r.addr == s.addr) {
                    let l = vs.sorry.map_or(vs.loc, |(_, _, l)| l);
                    return Err(p.err(l, "a real server that is also the sorry server is not supported"));
                }
            }
            let health = ServiceHealth {
                quorum,
                hysteresis,
                sorry_server: sorry,
                quorum_up: vs.quorum_up.clone(),
                quorum_down: vs.quorum_down.clone(),
            };
            if health != ServiceHealth::default() {
                health.validate().map_err(|e| p.err(vs.loc, e.message))?;
                push(&mut out, vs.loc, ConfigCommand::SetServiceHealth { service: *key, health });
            }
            for rs in &servers {
                for c in &rs.checks {
                    let spec = resolve_check(p, &vs, rs, c)?;
                    let pool_port = if key.is_fwmark() { 0 } else { svc_port };
                    let mut spec = spec;
                    if spec.kind.connects() && spec.target.connect_port.is_none() {
                        // keepalived probes the port written on the real server.
                        match rs.port {
                            Some(wp) if wp != pool_port => spec.target.connect_port = Some(wp),
                            _ if pool_port == 0 => {
                                return Err(p.err(c.loc, format!("{} of a server without a port needs connect_port", c.name)))
                            }
                            _ => {}
                        }
                    }
                    spec.validate().map_err(|e| p.err(c.loc, e.message))?;
                    let server = ServerHealthOpts {
                        inhibit_on_failure: Some(rs.inhibit.unwrap_or(vs.inhibit)),
                        notify_up: rs.notify_up.clone(),
                        notify_down: rs.notify_down.clone(),
                    };
                    push(
                        &mut out,
                        c.loc,
                        ConfigCommand::AddCheck(AddCheck {
                            service: *key,
                            addr: rs.addr,
                            port: pool_port,
                            spec,
                            server,
                        }),
                    );
                }
            }
        }
    }
    Ok(out)
}

fn resolve_check(p: &Parser<'_>, vs: &VsDraft, rs: &RsDraft, c: &CheckDraft) -> R<_Spec> {
    let kind = match c.name.as_str() {
        "TCP_CHECK" => CheckKind::Tcp,
        "HTTP_GET" | "SSL_GET" => {
            let mut h = c.http.clone();
            h.virtualhost = h
                .virtualhost
                .or_else(|| rs.virtualhost.clone())
                .or_else(|| vs.virtualhost.clone());
            if c.name == "SSL_GET" {
                h.ca = p.ssl.ca.clone();
                h.certificate = p.ssl.certificate.clone();
                h.key = p.ssl.key.clone();
                CheckKind::Https(h)
            } else {
                CheckKind::Http(h)
            }
        }
        _ => CheckKind::Misc(MiscCheck {
            path: c.misc_path.clone().unwrap_or_default(),
            // keepalived: the virtual server's delay loop when misc_timeout is not given.
            timeout_us: c
                .misc_timeout
                .unwrap_or_else(|| vs.timing.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP)),
            dynamic: c.misc_dynamic,
        }),
    };
    let pick = |f: fn(&TimingDraft) -> Option<u64>| f(&c.timing).or_else(|| f(&rs.timing)).or_else(|| f(&vs.timing));
    let delay_loop = pick(|t| t.delay_loop).unwrap_or(DEFAULT_DELAY_LOOP);
    let timing = Timing {
        delay_loop_us: delay_loop,
        connect_timeout_us: pick(|t| t.connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        retry: c
            .timing
            .retry
            .or(rs.timing.retry)
            .or(vs.timing.retry)
            .unwrap_or_else(|| default_retry(&kind)),
        delay_before_retry_us: pick(|t| t.delay_before_retry).unwrap_or_else(|| default_delay_before_retry(&kind)),
        warmup_us: pick(|t| t.warmup).unwrap_or(delay_loop),
        alpha: c.timing.alpha.or(rs.timing.alpha).or(vs.timing.alpha).unwrap_or(false),
        log_all_failures: c.log_all_failures,
    };
    Ok(CheckSpec {
        kind,
        target: c.target,
        timing,
    })
}

/// Parses keepalived.conf text named `name`, resolving `include`s with `resolve`.
pub fn parse_with(text: &str, name: &str, resolve: &mut Resolver<'_>) -> Result<Parsed, KaError> {
    let mut lx = Lexer {
        files: Vec::new(),
        out: Vec::new(),
        resolve,
    };
    lx.file(name, text, 0)?;
    let files = lx.files;
    let stmts = lx.out;
    let mut p = Parser {
        st: &stmts,
        files: &files,
        i: 0,
        warnings: Vec::new(),
        ssl: Ssl::default(),
        groups: HashMap::new(),
        vs: Vec::new(),
    };
    p.top()?;
    let commands = build(&mut p)?;
    Ok(Parsed {
        commands,
        warnings: p.warnings,
    })
}

/// Parses keepalived.conf text (pure: `include` is refused). The entry point for fuzzing.
pub fn parse(text: &str) -> Result<Parsed, KaError> {
    parse_with(text, "keepalived.conf", &mut |pat, _| {
        Err(format!("include {pat}: includes need a file (use lbadm restore --keepalived FILE)"))
    })
}

/// Reads `path` and everything it includes (glob patterns, relative to the including file's
/// directory) and parses it.
pub fn load(path: &Path) -> Result<Parsed, KaError> {
    let name = path.display().to_string();
    let text = read_text(path).map_err(|message| KaError {
        file: name.clone(),
        line: 0,
        message,
    })?;
    parse_with(&text, &name, &mut |pattern, including| {
        let base: PathBuf = Path::new(including).parent().map(Path::to_path_buf).unwrap_or_default();
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let pat = full.to_string_lossy().into_owned();
        let mut out = Vec::new();
        let paths = glob::glob(&pat).map_err(|e| format!("include {pattern}: {e}"))?;
        for p in paths {
            let p = p.map_err(|e| format!("include {pattern}: {e}"))?;
            let text = read_text(&p).map_err(|e| format!("include {}: {e}", p.display()))?;
            out.push((p.display().to_string(), text));
        }
        if out.is_empty() && !pattern.contains(['*', '?', '[']) {
            return Err(format!("include {pattern}: no such file"));
        }
        Ok(out)
    })
}

fn read_text(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "not a UTF-8 text file".to_string())
}

/// `director --keepalived FILE`: loads `path` and applies it to `controller` as one
/// transaction. Returns the number of commands and the warnings; on error nothing changed
/// and the message is `FILE:LINE: reason`.
pub fn apply_file<B: Backend>(controller: &mut Controller<B>, path: &Path) -> Result<(usize, Vec<String>), CtlError> {
    let parsed = load(path).map_err(|e| CtlError::input(e.to_string()))?;
    let cmds: Vec<ConfigCommand> = parsed.commands.iter().map(|l| l.cmd.clone()).collect();
    controller.apply_transaction(&cmds).map_err(|e| {
        let msg = match e.index.and_then(|i| parsed.commands.get(i)) {
            Some(l) => format!("{}:{}: {}", l.file, l.line, e.error.message),
            None => format!("{}: {}", path.display(), e.error.message),
        };
        CtlError::new(msg, e.error.exit_code)
    })?;
    Ok((cmds.len(), parsed.warnings))
}
