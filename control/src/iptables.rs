//! Parsing of the two mark-rule command lines of `lbadm` into a [`MarkCommand`]:
//!
//! ```text
//! lbadm iptables -t mangle -A|-D|-I|-C PREROUTING [NUM] [-i dpdkN] [-d A[/LEN]] [-p tcp|udp|all]
//!       [-m tcp|udp] [--dport P[:P2]] -j MARK --set-mark N      (any option order)
//! lbadm iptables -t mangle -D PREROUTING NUM
//! lbadm iptables -t mangle -F [PREROUTING]
//! lbadm iptables -t mangle -L [PREROUTING [NUM]] [-n] [-v] [-x] [--line-numbers]
//! lbadm iptables -t mangle -S [PREROUTING [NUM]] [-v]
//! lbadm iptables -t mangle -P PREROUTING ACCEPT                 (accepted, changes nothing)
//! lbadm mark add|insert [NUM]|del [-i dpdkN] -d A[/LEN] [-p tcp|udp] [--dport P[:P2]] --set-mark N
//! lbadm mark del NUM | lbadm mark [show] | lbadm mark flush
//! ```
//!
//! Invariants and choices:
//! - Option syntax is iptables' (getopt_long): short options cluster (`-nvL`, `-tmangle`), long
//!   options take `=value` or the next word and may be abbreviated to a unique prefix, a
//!   required argument takes the next word whatever it looks like, and the optional chain of
//!   `-F`/`-L`/`-S` is the next word only if it does not start with `-` or `!`. Options may
//!   come in any order (the seeds put `-i`, `-t`, `-p`, `-d` in different places); unlike
//!   iptables, `--dport` may also come before `-p` and `--set-mark` before `-j`.
//! - Only the mangle table, its PREROUTING chain and the MARK target with a full-mask set
//!   (`--set-mark N`, `--set-xmark N[/0xffffffff]`) exist; anything else is refused with one
//!   clear line ("lbadm iptables: only -t mangle PREROUTING -j MARK is supported by the
//!   director", exit 2). So is every option the director cannot honour (`-s`, `-o`, `!`,
//!   `--sport`, other matches and targets), with the option named.
//! - `-i` is not checked against the director's ports here (the CLI does not know them); the
//!   director refuses unknown names with a message listing its `dpdkN` ports.
//! - Values: `-d` takes a dotted address or a host name, with `/LEN` or a contiguous dotted
//!   mask; `--dport` takes numbers or service names (for the rule's protocol), `P`, `P:P2`,
//!   `:P2`, `P:`; `--set-mark` takes a C integer (decimal, `0x` hex, leading-0 octal) as
//!   iptables does.
//! - Errors are one line prefixed with the command (`lbadm iptables: ...`, `lbadm mark: ...`),
//!   exit status 2, except iptables' own texts (`Invalid rule number`, MARK's missing option).
//!   Parsing is pure (names come from a [`Names`]) and never panics.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::CtlError;
use crate::ipvsadm::inet_aton;
use crate::marks::MarkRule;
use crate::model::Protocol;
use crate::names::Names;

/// The one error for tables, chains and targets the director does not have.
pub const ONLY_MANGLE_PREROUTING_MARK: &str =
    "lbadm iptables: only -t mangle PREROUTING -j MARK is supported by the director";

/// The only chain.
pub const CHAIN: &str = "PREROUTING";

/// How `iptables -L` / `-S` print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IptablesListOptions {
    /// `-n`: numeric addresses and ports.
    pub numeric: bool,
    /// `-v`: counters and interfaces.
    pub verbose: bool,
    /// `-x`: exact counters (no K/M/G suffixes).
    pub exact: bool,
    /// `--line-numbers`.
    pub line_numbers: bool,
    /// `-L PREROUTING NUM`: only that rule, without headers.
    pub rulenum: Option<u32>,
}

/// A parsed `lbadm iptables ...` or `lbadm mark ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkCommand {
    /// `-A`, `mark add`.
    Append(MarkRule),
    /// `-I [NUM]`, `mark insert [NUM]` (1-based position, default 1).
    Insert {
        /// Position the rule will have.
        pos: u32,
        /// The rule.
        rule: MarkRule,
    },
    /// `-D` with a rule, `mark del` with a rule.
    Delete(MarkRule),
    /// `-D PREROUTING NUM`, `mark del NUM`.
    DeleteAt(u32),
    /// `-C`: succeeds if an identical rule exists, else iptables' "Bad rule" (exit 1).
    Check(MarkRule),
    /// `-F`, `mark flush`.
    Flush,
    /// `-L`.
    List(IptablesListOptions),
    /// `-S`.
    ListRules(IptablesListOptions),
    /// `mark [show]`.
    Show,
    /// `-P PREROUTING ACCEPT`: the only policy there is; nothing to do.
    Nop,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    Optional,
}

/// (short, long names, canonical name, argument).
const OPTIONS: &[(Option<char>, &[&str], &str, Arg)] = &[
    (Some('A'), &["append"], "-A", Arg::Required),
    (Some('D'), &["delete"], "-D", Arg::Required),
    (Some('I'), &["insert"], "-I", Arg::Required),
    (Some('C'), &["check"], "-C", Arg::Required),
    (Some('R'), &["replace"], "-R", Arg::Required),
    (Some('N'), &["new-chain"], "-N", Arg::Required),
    (Some('X'), &["delete-chain"], "-X", Arg::Optional),
    (Some('E'), &["rename-chain"], "-E", Arg::Required),
    (Some('P'), &["policy"], "-P", Arg::Required),
    (Some('F'), &["flush"], "-F", Arg::Optional),
    (Some('L'), &["list"], "-L", Arg::Optional),
    (Some('S'), &["list-rules"], "-S", Arg::Optional),
    (Some('Z'), &["zero"], "-Z", Arg::Optional),
    (Some('t'), &["table"], "-t", Arg::Required),
    (Some('i'), &["in-interface"], "-i", Arg::Required),
    (Some('o'), &["out-interface"], "-o", Arg::Required),
    (Some('s'), &["source", "src"], "-s", Arg::Required),
    (Some('d'), &["destination", "dst"], "-d", Arg::Required),
    (Some('p'), &["protocol"], "-p", Arg::Required),
    (Some('j'), &["jump"], "-j", Arg::Required),
    (Some('g'), &["goto"], "-g", Arg::Required),
    (Some('m'), &["match"], "-m", Arg::Required),
    (Some('n'), &["numeric"], "-n", Arg::No),
    (Some('v'), &["verbose"], "-v", Arg::No),
    (Some('x'), &["exact"], "-x", Arg::No),
    (Some('w'), &["wait"], "-w", Arg::Optional),
    (Some('W'), &["wait-interval"], "-W", Arg::Required),
    (Some('f'), &["fragment"], "-f", Arg::No),
    (Some('c'), &["set-counters"], "-c", Arg::Required),
    (Some('h'), &["help"], "-h", Arg::No),
    (Some('V'), &["version"], "-V", Arg::No),
    (Some('4'), &["ipv4"], "-4", Arg::No),
    (Some('6'), &["ipv6"], "-6", Arg::No),
    (None, &["line-numbers"], "--line-numbers", Arg::No),
    (None, &["modprobe"], "--modprobe", Arg::Required),
    (
        None,
        &["dport", "destination-port"],
        "--dport",
        Arg::Required,
    ),
    (None, &["sport", "source-port"], "--sport", Arg::Required),
    (None, &["set-mark"], "--set-mark", Arg::Required),
    (None, &["set-xmark"], "--set-xmark", Arg::Required),
    (None, &["and-mark"], "--and-mark", Arg::Required),
    (None, &["or-mark"], "--or-mark", Arg::Required),
    (None, &["xor-mark"], "--xor-mark", Arg::Required),
];

/// Options `lbadm mark` accepts (the rule options).
const MARK_OPTIONS: &[&str] = &[
    "-i",
    "-d",
    "-p",
    "-m",
    "-j",
    "--dport",
    "--set-mark",
    "--set-xmark",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An option by canonical name, with its argument.
    Opt(&'static str, Option<String>),
    /// A non-option word.
    Word(String),
    /// An option that could not be read (unknown, ambiguous, missing argument): reported when
    /// processing reaches it, so earlier, more telling errors win (`-m multiport --dports`).
    Bad(CtlError),
}

struct Ctx<'a> {
    prog: &'a str,
    /// Canonical names allowed (`None` = all).
    allowed: Option<&'a [&'a str]>,
}

impl Ctx<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> CtlError {
        CtlError::input(format!("{}: {msg}", self.prog))
    }
}

fn find_long(ctx: &Ctx<'_>, name: &str) -> Result<(&'static str, Arg), CtlError> {
    let allowed = |canon: &str| ctx.allowed.is_none_or(|a| a.contains(&canon));
    let mut prefix_hits: Vec<(&'static str, Arg)> = Vec::new();
    for (_, longs, canon, arg) in OPTIONS {
        if !allowed(canon) {
            continue;
        }
        for l in *longs {
            if *l == name {
                return Ok((canon, *arg));
            }
            if !name.is_empty() && l.starts_with(name) && !prefix_hits.iter().any(|h| h.0 == *canon)
            {
                prefix_hits.push((canon, *arg));
            }
        }
    }
    match prefix_hits.as_slice() {
        [one] => Ok(*one),
        [] => Err(ctx.err(format!("unknown option \"--{name}\""))),
        _ => Err(ctx.err(format!("option \"--{name}\" is ambiguous"))),
    }
}

fn find_short(ctx: &Ctx<'_>, c: char) -> Result<(&'static str, Arg), CtlError> {
    OPTIONS
        .iter()
        .find(|(s, _, canon, _)| *s == Some(c) && ctx.allowed.is_none_or(|a| a.contains(canon)))
        .map(|(_, _, canon, arg)| (*canon, *arg))
        .ok_or_else(|| ctx.err(format!("unknown option \"-{c}\"")))
}

/// Splits argv into options (getopt_long rules, see the module docs) and words.
fn tokenize(ctx: &Ctx<'_>, args: &[String]) -> Vec<Token> {
    let mut out = Vec::new();
    if let Err(e) = tokenize_into(ctx, args, &mut out) {
        out.push(Token::Bad(e));
    }
    out
}

fn tokenize_into(ctx: &Ctx<'_>, args: &[String], out: &mut Vec<Token>) -> Result<(), CtlError> {
    let mut i = 0;
    let takes_optional =
        |next: Option<&String>| next.is_some_and(|w| !w.starts_with('-') && !w.starts_with('!'));
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "!" {
            return Err(ctx.err("negation (!) is not supported by the director"));
        }
        if a == "--" {
            out.extend(args[i..].iter().cloned().map(Token::Word));
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let (canon, arg) = match find_long(ctx, name) {
                Ok(x) => x,
                Err(e) => {
                    out.push(Token::Bad(e));
                    continue;
                }
            };
            let value = match (arg, inline) {
                (Arg::No, Some(_)) => {
                    return Err(ctx.err(format!("option \"--{name}\" doesn't allow an argument")))
                }
                (Arg::No, None) => None,
                (_, Some(v)) => Some(v),
                (Arg::Required, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => {
                        return Err(ctx.err(format!("option \"--{name}\" requires an argument")))
                    }
                },
                (Arg::Optional, None) => {
                    if takes_optional(args.get(i)) {
                        i += 1;
                        Some(args[i - 1].clone())
                    } else {
                        None
                    }
                }
            };
            out.push(Token::Opt(canon, value));
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a.chars().skip(1).collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                k += 1;
                let (canon, arg) = match find_short(ctx, c) {
                    Ok(x) => x,
                    Err(e) => {
                        out.push(Token::Bad(e));
                        break;
                    }
                };
                let rest: String = chars[k..].iter().collect();
                let value = match arg {
                    Arg::No => None,
                    Arg::Required => {
                        k = chars.len();
                        if !rest.is_empty() {
                            Some(rest)
                        } else if let Some(v) = args.get(i) {
                            i += 1;
                            Some(v.clone())
                        } else {
                            return Err(ctx.err(format!("option \"-{c}\" requires an argument")));
                        }
                    }
                    Arg::Optional => {
                        k = chars.len();
                        if !rest.is_empty() {
                            Some(rest)
                        } else if takes_optional(args.get(i)) {
                            i += 1;
                            Some(args[i - 1].clone())
                        } else {
                            None
                        }
                    }
                };
                out.push(Token::Opt(canon, value));
            }
            continue;
        }
        out.push(Token::Word(a.clone()));
    }
    Ok(())
}

/// A C `strtoul(s, &end, 0)` that must consume all of `s`: decimal, `0x` hex, leading-0 octal.
fn c_strtou32(s: &str) -> Option<u32> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// The rule options as given, before the rule is assembled.
#[derive(Default)]
struct RuleOpts {
    in_dev: Option<String>,
    dst: Option<(Ipv4Addr, u8)>,
    /// `Some(None)` = `-p all`.
    proto: Option<Option<Protocol>>,
    matches: Vec<String>,
    dport: Option<String>,
    jump: Option<String>,
    mark: Option<u32>,
    /// First rule option seen (for "illegal option with this command").
    first: Option<&'static str>,
}

fn parse_dst(ctx: &Ctx<'_>, s: &str, names: &dyn Names) -> Result<(Ipv4Addr, u8), CtlError> {
    if s.contains(',') {
        return Err(ctx.err(format!(
            "several addresses in one rule (`{s}') are not supported: add one rule per address"
        )));
    }
    let (host, mask) = match s.split_once('/') {
        Some((h, m)) => (h, Some(m)),
        None => (s, None),
    };
    let addr = host
        .parse::<Ipv4Addr>()
        .ok()
        .or_else(|| inet_aton(host))
        .or_else(|| names.host_to_addr(host))
        .ok_or_else(|| ctx.err(format!("host/network `{host}' not found")))?;
    let len = match mask {
        None => 32,
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => {
            match m.parse::<u8>() {
                Ok(n) if n <= 32 => n,
                _ => return Err(ctx.err(format!("invalid mask `{m}' specified"))),
            }
        }
        Some(m) => {
            let v = u32::from(
                m.parse::<Ipv4Addr>()
                    .map_err(|_| ctx.err(format!("invalid mask `{m}' specified")))?,
            );
            if v.leading_ones() + v.trailing_zeros() != 32 {
                return Err(ctx.err(format!(
                    "non-contiguous mask `{m}' is not supported by the director"
                )));
            }
            v.leading_ones() as u8
        }
    };
    Ok((addr, len))
}

fn parse_proto(ctx: &Ctx<'_>, s: &str) -> Result<Option<Protocol>, CtlError> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Ok(Some(Protocol::Tcp)),
        "udp" | "17" => Ok(Some(Protocol::Udp)),
        "all" | "0" => Ok(None),
        other => Err(ctx.err(format!(
            "protocol `{other}' is not supported by the director (tcp, udp or all)"
        ))),
    }
}

fn parse_port(ctx: &Ctx<'_>, s: &str, proto: Protocol, names: &dyn Names) -> Result<u16, CtlError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(p) = s.parse::<u16>() {
            return Ok(p);
        }
    } else if let Some(p) = names.service_to_port(s, proto) {
        return Ok(p);
    }
    Err(ctx.err(format!("invalid port/service `{s}' specified")))
}

fn parse_ports(
    ctx: &Ctx<'_>,
    s: &str,
    proto: Protocol,
    names: &dyn Names,
) -> Result<(u16, u16), CtlError> {
    if s.contains(',') {
        return Err(ctx.err(format!(
            "port lists (`{s}') are not supported: use one rule per port or a P:P2 range"
        )));
    }
    match s.split_once(':') {
        None => {
            let p = parse_port(ctx, s, proto, names)?;
            Ok((p, p))
        }
        Some((lo, hi)) => {
            let lo = if lo.is_empty() {
                0
            } else {
                parse_port(ctx, lo, proto, names)?
            };
            let hi = if hi.is_empty() {
                u16::MAX
            } else {
                parse_port(ctx, hi, proto, names)?
            };
            if lo > hi {
                return Err(ctx.err("invalid portrange (min > max)"));
            }
            Ok((lo, hi))
        }
    }
}

fn parse_mark_value(ctx: &Ctx<'_>, opt: &str, s: &str) -> Result<u32, CtlError> {
    let bad = || {
        ctx.err(format!(
            "MARK: bad value for option \"{opt}\", or out of range (0-4294967295)"
        ))
    };
    let (v, mask) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let value = c_strtou32(v).ok_or_else(bad)?;
    if let Some(m) = mask {
        if c_strtou32(m).ok_or_else(bad)? != u32::MAX {
            return Err(ctx.err(format!(
                "{opt} with a mask other than 0xffffffff is not supported by the director"
            )));
        }
    }
    Ok(value)
}

/// Handles one rule option token; `Ok(false)` if `canon` is not a rule option.
fn rule_opt(
    ctx: &Ctx<'_>,
    r: &mut RuleOpts,
    canon: &'static str,
    value: Option<String>,
    names: &dyn Names,
) -> Result<bool, CtlError> {
    let v = value.unwrap_or_default();
    let twice = |set: bool| -> Result<(), CtlError> {
        if set {
            Err(ctx.err(format!("multiple {canon} flags not allowed")))
        } else {
            Ok(())
        }
    };
    match canon {
        "-i" => {
            twice(r.in_dev.is_some())?;
            if v.is_empty() || v.len() > 15 {
                return Err(ctx.err(format!(
                    "interface name `{v}' must be shorter than IFNAMSIZ (15)"
                )));
            }
            r.in_dev = Some(v);
        }
        "-d" => {
            twice(r.dst.is_some())?;
            r.dst = Some(parse_dst(ctx, &v, names)?);
        }
        "-p" => {
            twice(r.proto.is_some())?;
            r.proto = Some(parse_proto(ctx, &v)?);
        }
        "-m" => match v.to_ascii_lowercase().as_str() {
            m @ ("tcp" | "udp") => r.matches.push(m.to_string()),
            other => {
                return Err(ctx.err(format!(
                    "match `{other}' is not supported by the director (only -m tcp|udp with --dport)"
                )))
            }
        },
        "--dport" => {
            twice(r.dport.is_some())?;
            r.dport = Some(v);
        }
        "-j" => {
            twice(r.jump.is_some())?;
            r.jump = Some(v);
        }
        "--set-mark" | "--set-xmark" => {
            if r.mark.is_some() {
                return Err(ctx.err("MARK target: Can't specify --set-mark twice"));
            }
            r.mark = Some(parse_mark_value(ctx, canon, &v)?);
        }
        "-s" | "-o" | "--sport" | "-f" | "-g" | "--and-mark" | "--or-mark" | "--xor-mark"
        | "-c" => {
            return Err(ctx.err(format!(
                "{canon} is not supported by the director (mark rules match -i, -d, -p and --dport, and set --set-mark)"
            )))
        }
        _ => return Ok(false),
    }
    r.first.get_or_insert(canon);
    Ok(true)
}

/// Assembles the rule (`need_dst`: `lbadm mark` requires `-d`).
fn build_rule(
    ctx: &Ctx<'_>,
    r: RuleOpts,
    need_jump: bool,
    need_dst: bool,
    names: &dyn Names,
) -> Result<MarkRule, CtlError> {
    match r.jump.as_deref() {
        Some("MARK") => {}
        None if !need_jump => {}
        _ => return Err(CtlError::input(ONLY_MANGLE_PREROUTING_MARK)),
    }
    let mark = r.mark.ok_or_else(|| {
        if need_jump {
            ctx.err("MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required")
        } else {
            ctx.err("--set-mark N is required")
        }
    })?;
    if need_dst && r.dst.is_none() {
        return Err(ctx.err("-d VIP[/LEN] is required"));
    }
    let proto = r.proto.flatten();
    for m in &r.matches {
        if proto.map(Protocol::services_name) != Some(m.as_str()) {
            return Err(ctx.err(format!("-m {m} needs -p {m}")));
        }
    }
    let dport = match (&r.dport, proto) {
        (Some(_), None) => {
            return Err(CtlError::input(format!(
                "{}: {}",
                ctx.prog,
                CtlError::dport_needs_proto().message
            )))
        }
        (Some(s), Some(p)) => Some(parse_ports(ctx, s, p, names)?),
        // `-m tcp` alone loads the match with the full port range (iptables lists " tcp").
        (None, Some(_)) if !r.matches.is_empty() => Some((0, u16::MAX)),
        (None, _) => None,
    };
    let (dst, prefix_len) = r.dst.unwrap_or((Ipv4Addr::UNSPECIFIED, 0));
    let rule = MarkRule {
        in_dev: r.in_dev,
        dst,
        prefix_len,
        proto,
        dport,
        mark,
    };
    Ok(rule.normalized())
}

fn rulenum(s: &str) -> Result<u32, CtlError> {
    match s.parse::<u32>() {
        Ok(n) if n >= 1 && n <= i32::MAX as u32 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(CtlError::invalid_rule_number(s)),
    }
}

/// Parses `lbadm iptables ARGS` (ARGS without the word `iptables`).
pub fn parse_iptables(args: &[String], names: &dyn Names) -> Result<MarkCommand, CtlError> {
    let ctx = Ctx {
        prog: "lbadm iptables",
        allowed: None,
    };
    let tokens = tokenize(&ctx, args);
    let mut cmd: Option<(&'static str, Option<String>)> = None;
    let mut num: Option<u32> = None;
    let mut policy: Option<String> = None;
    // The positional word a command may take next: a rule number or a policy.
    let mut positional_ok = false;
    let mut table: Option<String> = None;
    let mut r = RuleOpts::default();
    let mut list = IptablesListOptions::default();
    let mut list_opt: Option<&'static str> = None;
    for t in tokens {
        let (canon, value) = match t {
            Token::Word(w) => {
                match cmd.as_ref().map(|c| c.0) {
                    Some("-D" | "-I" | "-L" | "-S") if positional_ok && num.is_none() => {
                        num = Some(rulenum(&w)?);
                    }
                    Some("-P") if positional_ok && policy.is_none() => policy = Some(w),
                    _ => return Err(ctx.err(format!("Bad argument `{w}'"))),
                }
                continue;
            }
            Token::Opt(c, v) => (c, v),
            Token::Bad(e) => return Err(e),
        };
        positional_ok = false;
        match canon {
            "-A" | "-D" | "-I" | "-C" | "-F" | "-L" | "-S" | "-P" | "-R" | "-N" | "-X" | "-E"
            | "-Z" => {
                if let Some((prev, _)) = &cmd {
                    return Err(ctx.err(format!("Cannot use {canon} with {prev}")));
                }
                if matches!(canon, "-R" | "-N" | "-X" | "-E" | "-Z") {
                    return Err(ctx.err(format!(
                        "{canon} is not supported by the director (only -A, -I, -D, -C, -F, -L, -S)"
                    )));
                }
                positional_ok = true;
                cmd = Some((canon, value));
            }
            "-t" => {
                if table.is_some() {
                    return Err(ctx.err("multiple -t flags not allowed"));
                }
                table = value;
            }
            "-n" => {
                list.numeric = true;
                list_opt.get_or_insert(canon);
            }
            "-x" => {
                list.exact = true;
                list_opt.get_or_insert(canon);
            }
            "--line-numbers" => {
                list.line_numbers = true;
                list_opt.get_or_insert(canon);
            }
            "-v" => list.verbose = true,
            "-w" | "-W" | "-4" => {}
            "-6" => return Err(ctx.err("the director does not support IPv6 (-6)")),
            "-h" | "-V" | "--modprobe" => {
                return Err(ctx.err(format!("{canon} is not supported by the director")))
            }
            _ => {
                if !rule_opt(&ctx, &mut r, canon, value, names)? {
                    return Err(ctx.err(format!("unknown option \"{canon}\"")));
                }
            }
        }
    }
    let Some((cmd, chain)) = cmd else {
        return Err(ctx.err("no command specified"));
    };
    if table.as_deref().unwrap_or("filter") != "mangle" {
        return Err(CtlError::input(ONLY_MANGLE_PREROUTING_MARK));
    }
    if chain.as_deref().is_some_and(|c| c != CHAIN) {
        return Err(CtlError::input(ONLY_MANGLE_PREROUTING_MARK));
    }
    let is_rule_cmd = matches!(cmd, "-A" | "-I" | "-C") || (cmd == "-D" && num.is_none());
    if !is_rule_cmd {
        if let Some(opt) = r.first {
            return Err(ctx.err(format!("Illegal option `{opt}' with this command")));
        }
    }
    if !matches!(cmd, "-L" | "-S") {
        if let Some(opt) = list_opt {
            return Err(ctx.err(format!("Illegal option `{opt}' with this command")));
        }
    }
    Ok(match cmd {
        "-A" => MarkCommand::Append(build_rule(&ctx, r, true, false, names)?),
        "-I" => MarkCommand::Insert {
            pos: num.unwrap_or(1),
            rule: build_rule(&ctx, r, true, false, names)?,
        },
        "-C" => MarkCommand::Check(build_rule(&ctx, r, true, false, names)?),
        "-D" => match num {
            Some(n) => MarkCommand::DeleteAt(n),
            None => MarkCommand::Delete(build_rule(&ctx, r, true, false, names)?),
        },
        "-F" => MarkCommand::Flush,
        "-L" => MarkCommand::List(IptablesListOptions {
            rulenum: num,
            ..list
        }),
        "-S" => MarkCommand::ListRules(IptablesListOptions {
            rulenum: num,
            ..list
        }),
        "-P" => match policy.as_deref() {
            Some("ACCEPT") => MarkCommand::Nop,
            Some(p) => {
                return Err(ctx.err(format!(
                "policy `{p}' is not supported: the director's PREROUTING policy is always ACCEPT"
            )))
            }
            None => return Err(ctx.err("-P requires a chain and a policy")),
        },
        other => return Err(ctx.err(format!("{other} is not supported by the director"))),
    })
}

/// Parses `lbadm mark ARGS` (ARGS without the word `mark`).
pub fn parse_mark(args: &[String], names: &dyn Names) -> Result<MarkCommand, CtlError> {
    let ctx = Ctx {
        prog: "lbadm mark",
        allowed: Some(MARK_OPTIONS),
    };
    let sub = args.first().map(String::as_str);
    let rest = if args.is_empty() { args } else { &args[1..] };
    let none_else = |cmd: MarkCommand| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(ctx.err(format!("unexpected argument \"{}\"", rest[0])))
        }
    };
    match sub {
        None | Some("show" | "list" | "ls") => none_else(MarkCommand::Show),
        Some("flush") => none_else(MarkCommand::Flush),
        Some(s @ ("add" | "append" | "insert" | "del" | "delete")) => {
            let mut pos: Option<u32> = None;
            let mut r = RuleOpts::default();
            for (i, t) in tokenize(&ctx, rest).into_iter().enumerate() {
                match t {
                    Token::Bad(e) => return Err(e),
                    Token::Word(w) if i == 0 && matches!(s, "insert" | "del" | "delete") => {
                        pos = Some(rulenum(&w)?);
                    }
                    Token::Word(w) => return Err(ctx.err(format!("unexpected argument \"{w}\""))),
                    Token::Opt(canon, value) => {
                        if !rule_opt(&ctx, &mut r, canon, value, names)? {
                            return Err(ctx.err(format!("unknown option \"{canon}\"")));
                        }
                    }
                }
            }
            let is_del = matches!(s, "del" | "delete");
            if is_del && pos.is_some() {
                if let Some(opt) = r.first {
                    return Err(ctx.err(format!(
                        "give either a rule number or a rule, not both ({opt})"
                    )));
                }
                return Ok(MarkCommand::DeleteAt(pos.unwrap_or(1)));
            }
            let rule = build_rule(&ctx, r, false, true, names)?;
            Ok(match s {
                "insert" => MarkCommand::Insert {
                    pos: pos.unwrap_or(1),
                    rule,
                },
                "del" | "delete" => MarkCommand::Delete(rule),
                _ => MarkCommand::Append(rule),
            })
        }
        Some(other) => Err(ctx.err(format!(
            "unknown mark command \"{other}\" (add, insert, del, show, flush)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{NumericOnly, SystemNames};

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn ipt(s: &str) -> Result<MarkCommand, CtlError> {
        parse_iptables(&w(s), &NumericOnly)
    }

    fn mark(s: &str) -> Result<MarkCommand, CtlError> {
        parse_mark(&w(s), &NumericOnly)
    }

    /// The words after `iptables` in a seed line.
    fn seed(line: &str) -> Result<MarkCommand, CtlError> {
        let words = w(line);
        let at = words.iter().position(|x| x == "iptables").unwrap();
        parse_iptables(&words[at + 1..], &NumericOnly)
    }

    fn rule(dev: Option<&str>, dst: [u8; 4], port: u16, mark: u32) -> MarkRule {
        MarkRule {
            in_dev: dev.map(str::to_string),
            dst: Ipv4Addr::from(dst),
            prefix_len: 32,
            proto: Some(Protocol::Tcp),
            dport: Some((port, port)),
            mark,
        }
    }

    #[test]
    fn every_seed_line_parses_verbatim() {
        use MarkCommand::{Append, Flush};
        let cases: &[(&str, MarkCommand)] = &[
            // seeds/001
            (
                "iptables -A PREROUTING -i eth0 -t mangle -p tcp -d 172.16.100.6 --dport 80 -j MARK --set-mark 1",
                Append(rule(Some("eth0"), [172, 16, 100, 6], 80, 1)),
            ),
            (
                "iptables -A PREROUTING -i eth0 -t mangle -d 192.16.10.3 -p tcp --dport 80 -j MARK --set-mark 8",
                Append(rule(Some("eth0"), [192, 16, 10, 3], 80, 8)),
            ),
            (
                "iptables -A PREROUTING -i eth0 -t mangle -d 192.16.10.3 -p tcp --dport 23 -j MARK --set-mark 8",
                Append(rule(Some("eth0"), [192, 16, 10, 3], 23, 8)),
            ),
            // seeds/002 (two spaces after PREROUTING, shell prompt before)
            (
                "[root@nod1 ~]# iptables -t mangle -A PREROUTING  -d 192.168.195.200 -p tcp --dport 80 -j MARK --set-mark 10",
                Append(rule(None, [192, 168, 195, 200], 80, 10)),
            ),
            (
                "[root@nod1 ~]# iptables -t mangle -A PREROUTING  -d 192.168.195.200 -p tcp --dport 443 -j MARK --set-mark 10",
                Append(rule(None, [192, 168, 195, 200], 443, 10)),
            ),
            // seeds/003
            ("iptables -F -t mangle", Flush),
            (
                "iptables -t mangle -A PREROUTING -d 172.16.0.1 -i eth2 -p tcp --dport 80 -j MARK --set-mark 8",
                Append(rule(Some("eth2"), [172, 16, 0, 1], 80, 8)),
            ),
            (
                "iptables -t mangle -A PREROUTING -d 172.16.0.1 -i eth2 -p tcp --dport 23 -j MARK --set-mark 8",
                Append(rule(Some("eth2"), [172, 16, 0, 1], 23, 8)),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(&seed(line).unwrap(), want, "{line}");
        }
        // The same lines addressed to a DPDK port.
        assert_eq!(
            ipt("-A PREROUTING -i dpdk0 -t mangle -p tcp -d 172.16.100.6 --dport 80 -j MARK --set-mark 1")
                .unwrap(),
            Append(rule(Some("dpdk0"), [172, 16, 100, 6], 80, 1))
        );
    }

    #[test]
    fn getopt_forms() {
        let want = MarkCommand::Append(rule(None, [10, 0, 0, 1], 80, 10));
        for line in [
            "-t mangle -A PREROUTING -d 10.0.0.1 -p tcp --dport 80 -j MARK --set-mark 10",
            "-tmangle -APREROUTING -d10.0.0.1 -ptcp --dport=80 -jMARK --set-mark=0xa",
            "--table mangle --append PREROUTING --destination 10.0.0.1/32 --protocol TCP -m tcp --destination-port 80 --jump MARK --set-mark 012",
            "--table=mangle --app PREROUTING --dst 10.0.0.1/255.255.255.255 -p 6 --dport 80 -j MARK --set-xmark 10/0xffffffff",
            // Lenient orders: --dport before -p, --set-mark before -j.
            "--dport 80 --set-mark 10 -j MARK -p tcp -d 10.0.0.1 -A PREROUTING -t mangle -w",
        ] {
            assert_eq!(ipt(line).unwrap(), want, "{line}");
        }
        assert_eq!(
            ipt("-t mangle -nvL").unwrap(),
            MarkCommand::List(IptablesListOptions {
                numeric: true,
                verbose: true,
                ..Default::default()
            })
        );
        assert_eq!(
            ipt("-L PREROUTING -n -t mangle --line-numbers -x").unwrap(),
            MarkCommand::List(IptablesListOptions {
                numeric: true,
                exact: true,
                line_numbers: true,
                ..Default::default()
            })
        );
        assert_eq!(
            ipt("-t mangle -L PREROUTING 2").unwrap(),
            MarkCommand::List(IptablesListOptions {
                rulenum: Some(2),
                ..Default::default()
            })
        );
        assert_eq!(
            ipt("-t mangle -LPREROUTING").unwrap(),
            MarkCommand::List(Default::default())
        );
        assert_eq!(
            ipt("-t mangle -S").unwrap(),
            MarkCommand::ListRules(Default::default())
        );
        assert_eq!(ipt("-t mangle -F PREROUTING").unwrap(), MarkCommand::Flush);
        assert_eq!(
            ipt("-t mangle -D PREROUTING 3").unwrap(),
            MarkCommand::DeleteAt(3)
        );
        assert_eq!(
            ipt("-t mangle -P PREROUTING ACCEPT").unwrap(),
            MarkCommand::Nop
        );
        assert_eq!(
            ipt("-t mangle -I PREROUTING 2 -d 10.0.0.1 -j MARK --set-mark 0").unwrap(),
            MarkCommand::Insert {
                pos: 2,
                rule: MarkRule::new(Ipv4Addr::new(10, 0, 0, 1), 32, 0)
            }
        );
        assert_eq!(
            ipt("-t mangle -I PREROUTING -j MARK --set-mark 4294967295").unwrap(),
            MarkCommand::Insert {
                pos: 1,
                rule: MarkRule::new(Ipv4Addr::UNSPECIFIED, 0, u32::MAX)
            }
        );
        assert_eq!(
            ipt("-t mangle -C PREROUTING -d 10.0.0.1 -p tcp --dport 80 -j MARK --set-mark 10")
                .unwrap(),
            MarkCommand::Check(rule(None, [10, 0, 0, 1], 80, 10))
        );
    }

    #[test]
    fn values() {
        let r = |s: &str| match ipt(&format!("-t mangle -A PREROUTING {s} -j MARK --set-mark 1")) {
            Ok(MarkCommand::Append(r)) => r,
            other => panic!("{s}: {other:?}"),
        };
        let x = r("-d 10.1.2.3/24 -p udp --dport 1000:2000");
        assert_eq!((x.dst, x.prefix_len), (Ipv4Addr::new(10, 1, 2, 0), 24));
        assert_eq!(
            (x.proto, x.dport),
            (Some(Protocol::Udp), Some((1000, 2000)))
        );
        assert_eq!(r("-p tcp --dport :1023").dport, Some((0, 1023)));
        assert_eq!(r("-p tcp --dport 1024:").dport, Some((1024, 65535)));
        assert_eq!(r("-p tcp -m tcp").dport, Some((0, 65535)));
        assert_eq!(r("-p tcp").dport, None);
        assert_eq!(r("-p all").proto, None);
        assert_eq!(r("-d 0/0").prefix_len, 0);
        assert_eq!(r("-d 10.0.0.0/255.0.0.0").prefix_len, 8);
        let names = SystemNames::from_texts("http 80/tcp www\n", "10.0.0.7 vip1\n");
        let Ok(MarkCommand::Append(x)) = parse_iptables(
            &w("-t mangle -A PREROUTING -d vip1 -p tcp --dport www -j MARK --set-mark 1"),
            &names,
        ) else {
            panic!()
        };
        assert_eq!(
            (x.dst, x.dport),
            (Ipv4Addr::new(10, 0, 0, 7), Some((80, 80)))
        );
    }

    #[test]
    fn errors_are_clear_one_liners() {
        let only = ONLY_MANGLE_PREROUTING_MARK;
        for (line, msg) in [
            ("-A PREROUTING -d 1.1.1.1 -j MARK --set-mark 1", only.to_string()),
            ("-t nat -A PREROUTING -d 1.1.1.1 -j MARK --set-mark 1", only.to_string()),
            ("-t filter -L", only.to_string()),
            ("-F", only.to_string()),
            ("-t mangle -A INPUT -d 1.1.1.1 -j MARK --set-mark 1", only.to_string()),
            ("-t mangle -L OUTPUT", only.to_string()),
            ("-t mangle -A PREROUTING -d 1.1.1.1 -j ACCEPT", only.to_string()),
            ("-t mangle -A PREROUTING -d 1.1.1.1 --set-mark 1", only.to_string()),
            (
                "-t mangle -A PREROUTING -d 1.1.1.1 --dport 80 -j MARK --set-mark 1",
                "lbadm iptables: unknown option \"--dport\" (--dport needs -p tcp or -p udp)".into(),
            ),
            (
                "-t mangle -A PREROUTING -d 1.1.1.1 -p all --dport 80 -j MARK --set-mark 1",
                "lbadm iptables: unknown option \"--dport\" (--dport needs -p tcp or -p udp)".into(),
            ),
            (
                "-t mangle -A PREROUTING -d 1.1.1.1 -j MARK",
                "lbadm iptables: MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required".into(),
            ),
            ("-t mangle", "lbadm iptables: no command specified".into()),
            ("-t mangle -A", "lbadm iptables: option \"-A\" requires an argument".into()),
            ("-t mangle -L -A PREROUTING", "lbadm iptables: Cannot use -A with -L".into()),
            ("-t mangle -N foo", "lbadm iptables: -N is not supported by the director (only -A, -I, -D, -C, -F, -L, -S)".into()),
            ("-t mangle -L --bogus", "lbadm iptables: unknown option \"--bogus\"".into()),
            ("-t mangle -L -q", "lbadm iptables: unknown option \"-q\"".into()),
            ("-t mangle --set 1 -L", "lbadm iptables: option \"--set\" is ambiguous".into()),
            ("-t mangle -L -d 1.1.1.1", "lbadm iptables: Illegal option `-d' with this command".into()),
            ("-t mangle -F -d 1.1.1.1", "lbadm iptables: Illegal option `-d' with this command".into()),
            ("-t mangle -D PREROUTING 1 -d 1.1.1.1", "lbadm iptables: Illegal option `-d' with this command".into()),
            ("-t mangle -n -A PREROUTING -j MARK --set-mark 1", "lbadm iptables: Illegal option `-n' with this command".into()),
            ("-t mangle -D PREROUTING 0", "Invalid rule number `0'".into()),
            ("-t mangle -D PREROUTING x1", "Invalid rule number `x1'".into()),
            ("-t mangle -F PREROUTING extra", "lbadm iptables: Bad argument `extra'".into()),
            ("-t mangle -t mangle -L", "lbadm iptables: multiple -t flags not allowed".into()),
            ("-t mangle -A PREROUTING ! -d 1.1.1.1 -j MARK --set-mark 1", "lbadm iptables: negation (!) is not supported by the director".into()),
            (
                "-t mangle -A PREROUTING -s 10.0.0.0/8 -j MARK --set-mark 1",
                "lbadm iptables: -s is not supported by the director (mark rules match -i, -d, -p and --dport, and set --set-mark)".into(),
            ),
            (
                "-t mangle -A PREROUTING -p tcp --sport 80 -j MARK --set-mark 1",
                "lbadm iptables: --sport is not supported by the director (mark rules match -i, -d, -p and --dport, and set --set-mark)".into(),
            ),
            (
                "-t mangle -A PREROUTING -p tcp -m multiport --dports 80,443 -j MARK --set-mark 1",
                "lbadm iptables: match `multiport' is not supported by the director (only -m tcp|udp with --dport)".into(),
            ),
            ("-t mangle -A PREROUTING -p icmp -j MARK --set-mark 1", "lbadm iptables: protocol `icmp' is not supported by the director (tcp, udp or all)".into()),
            ("-t mangle -A PREROUTING -p udp -m tcp -j MARK --set-mark 1", "lbadm iptables: -m tcp needs -p tcp".into()),
            ("-t mangle -A PREROUTING -d 1.1.1.1/33 -j MARK --set-mark 1", "lbadm iptables: invalid mask `33' specified".into()),
            ("-t mangle -A PREROUTING -d 1.1.1.1/255.0.255.0 -j MARK --set-mark 1", "lbadm iptables: non-contiguous mask `255.0.255.0' is not supported by the director".into()),
            ("-t mangle -A PREROUTING -d nohost -j MARK --set-mark 1", "lbadm iptables: host/network `nohost' not found".into()),
            ("-t mangle -A PREROUTING -d 1.1.1.1,2.2.2.2 -j MARK --set-mark 1", "lbadm iptables: several addresses in one rule (`1.1.1.1,2.2.2.2') are not supported: add one rule per address".into()),
            ("-t mangle -A PREROUTING -p tcp --dport 90:80 -j MARK --set-mark 1", "lbadm iptables: invalid portrange (min > max)".into()),
            ("-t mangle -A PREROUTING -p tcp --dport 70000 -j MARK --set-mark 1", "lbadm iptables: invalid port/service `70000' specified".into()),
            ("-t mangle -A PREROUTING -p tcp --dport http -j MARK --set-mark 1", "lbadm iptables: invalid port/service `http' specified".into()),
            ("-t mangle -A PREROUTING -j MARK --set-mark 4294967296", "lbadm iptables: MARK: bad value for option \"--set-mark\", or out of range (0-4294967295)".into()),
            ("-t mangle -A PREROUTING -j MARK --set-mark 0x", "lbadm iptables: MARK: bad value for option \"--set-mark\", or out of range (0-4294967295)".into()),
            ("-t mangle -A PREROUTING -j MARK --set-mark 1/0xff", "lbadm iptables: --set-mark with a mask other than 0xffffffff is not supported by the director".into()),
            ("-t mangle -A PREROUTING -j MARK --or-mark 1", "lbadm iptables: --or-mark is not supported by the director (mark rules match -i, -d, -p and --dport, and set --set-mark)".into()),
            ("-t mangle -A PREROUTING -j MARK --set-mark 1 --set-mark 2", "lbadm iptables: MARK target: Can't specify --set-mark twice".into()),
            ("-t mangle -A PREROUTING -d 1.1.1.1 -d 1.1.1.2 -j MARK --set-mark 1", "lbadm iptables: multiple -d flags not allowed".into()),
            ("-t mangle -A PREROUTING -i averyveryverylongname -j MARK --set-mark 1", "lbadm iptables: interface name `averyveryverylongname' must be shorter than IFNAMSIZ (15)".into()),
            ("-t mangle -P PREROUTING DROP", "lbadm iptables: policy `DROP' is not supported: the director's PREROUTING policy is always ACCEPT".into()),
            ("-t mangle -L --numeric=1", "lbadm iptables: option \"--numeric\" doesn't allow an argument".into()),
        ] {
            let e = ipt(line).unwrap_err();
            assert_eq!((e.message.as_str(), e.exit_code), (msg.as_str(), 2), "{line}");
        }
    }

    #[test]
    fn lbadm_mark_syntax() {
        let r = rule(Some("dpdk0"), [192, 168, 195, 200], 80, 10);
        assert_eq!(
            mark("add -i dpdk0 -d 192.168.195.200 -p tcp --dport 80 --set-mark 10").unwrap(),
            MarkCommand::Append(r.clone())
        );
        assert_eq!(
            mark("del --set-mark 10 --dport 80 -p tcp -d 192.168.195.200/32 -i dpdk0").unwrap(),
            MarkCommand::Delete(r.clone())
        );
        assert_eq!(
            mark("insert 2 -i dpdk0 -d 192.168.195.200 -p tcp --dport 80 --set-mark 10").unwrap(),
            MarkCommand::Insert {
                pos: 2,
                rule: r.clone()
            }
        );
        assert_eq!(
            mark("insert -d 10.0.0.0/8 --set-mark 0").unwrap(),
            MarkCommand::Insert {
                pos: 1,
                rule: MarkRule::new(Ipv4Addr::new(10, 0, 0, 0), 8, 0)
            }
        );
        assert_eq!(mark("del 3").unwrap(), MarkCommand::DeleteAt(3));
        assert_eq!(mark("").unwrap(), MarkCommand::Show);
        assert_eq!(mark("show").unwrap(), MarkCommand::Show);
        assert_eq!(mark("flush").unwrap(), MarkCommand::Flush);
        for (line, msg) in [
            (
                "add -p tcp --dport 80 --set-mark 1",
                "lbadm mark: -d VIP[/LEN] is required",
            ),
            ("add -d 1.1.1.1", "lbadm mark: --set-mark N is required"),
            (
                "add -d 1.1.1.1 --dport 80 --set-mark 1",
                "lbadm mark: unknown option \"--dport\" (--dport needs -p tcp or -p udp)",
            ),
            (
                "add -t mangle -d 1.1.1.1 --set-mark 1",
                "lbadm mark: unknown option \"-t\"",
            ),
            (
                "add 2 -d 1.1.1.1 --set-mark 1",
                "lbadm mark: unexpected argument \"2\"",
            ),
            (
                "del 2 -d 1.1.1.1",
                "lbadm mark: give either a rule number or a rule, not both (-d)",
            ),
            ("show x", "lbadm mark: unexpected argument \"x\""),
            (
                "frob",
                "lbadm mark: unknown mark command \"frob\" (add, insert, del, show, flush)",
            ),
        ] {
            let e = mark(line).unwrap_err();
            assert_eq!((e.message.as_str(), e.exit_code), (msg, 2), "{line}");
        }
    }

    proptest::proptest! {
        #[test]
        fn random_words_never_panic(words in proptest::collection::vec(
            proptest::sample::select(vec![
                "-t", "mangle", "-A", "-D", "-I", "-L", "-F", "-S", "-C", "-P", "PREROUTING",
                "-i", "dpdk0", "-d", "10.0.0.1/8", "-p", "tcp", "udp", "--dport", "80:90", "-j",
                "MARK", "--set-mark", "0x10", "-nvx", "--line-numbers", "1", "!", "-m", "--",
                "-", "--=", "--set", "-tmangle", "ACCEPT", "add", "del", "show",
            ]),
            0..14,
        )) {
            let args: Vec<String> = words.iter().map(|s| s.to_string()).collect();
            let _ = parse_iptables(&args, &NumericOnly);
            let _ = parse_mark(&args, &NumericOnly);
        }
    }
}
