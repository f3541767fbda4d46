//! `lbadm check ...`: parsing (also for configuration-file lines) and the lines `lbadm save`
//! writes, which parse back to the same configuration.
//!
//! ```text
//! check add  -t|-u VIP:PORT | -f MARK  -r RIP[:PORT]  tcp|http|https|misc [OPTIONS]
//! check del  -t|-u VIP:PORT | -f MARK  -r RIP[:PORT]  [tcp|http|https|misc]
//! check show [-t|-u VIP:PORT | -f MARK]
//! check service -t|-u VIP:PORT | -f MARK [--quorum N] [--hysteresis N]
//!               [--sorry-server IP[:PORT]] [--sorry-server-inhibit]
//!               [--quorum-up CMD] [--quorum-down CMD]
//! ```
//! Options of `check add`, named after keepalived's keywords: `--delay-loop S`,
//! `--connect-timeout S`, `--retry N`, `--delay-before-retry S`, `--warmup S`, `--alpha`,
//! `--log-all-failures`, `--connect-ip A`, `--connect-port P`, `--bindto A`, `--bind-port
//! P`; for the server: `--inhibit-on-failure`, `--no-inhibit-on-failure`, `--notify-up
//! CMD`, `--notify-down CMD`; http/https: `--url PATH` (repeatable; `--digest HEX`,
//! `--status-code LIST`, `--url-virtualhost NAME` apply to the last `--url`),
//! `--virtualhost NAME`, `--http-protocol 1.0|1.0C|1.1`, `--fast-recovery`; https:
//! `--enable-sni`, `--sni-name NAME`, `--ca FILE`, `--certificate FILE`, `--key FILE`;
//! misc: `--misc-path CMD`, `--misc-timeout S`, `--misc-dynamic`. Times are keepalived
//! timers (decimal seconds); defaults are keepalived's (see [`super::spec`]).
//!
//! Invariants: the service and server arguments go through ipvsadm's own parser (same
//! names, same errors, same port normalisation as `-a`/`-d`); every error is an input error
//! (exit status 2) naming the option; [`save_lines`] writes every non-default value so that
//! parsing its output yields the same commands.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::error::CtlError;
use crate::ipvsadm::{self, IpvsCommand, ParseEnv};
use crate::model::{ConfigCommand, ServiceKey};
use crate::names::Names;

use super::model::{AddCheck, DelCheck, ServiceHealthDump};
use super::spec::{
    default_delay_before_retry, default_retry, format_secs, parse_digest, parse_secs, CheckKind,
    CheckSpec, HttpCheck, HttpProtocol, MiscCheck, ServerHealthOpts, ServiceHealth, SorryServer,
    StatusSet, UrlSpec, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DELAY_LOOP,
};

/// A parsed `check` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckCli {
    /// add, del, service: a configuration change.
    Change(ConfigCommand),
    /// show.
    Show(Option<ServiceKey>),
}

fn err(msg: impl Into<String>) -> CtlError {
    CtlError::input(format!("lbadm: check: {}", msg.into()))
}

/// Usage text of `lbadm check`.
pub const USAGE: &str = "usage: lbadm check add -t|-u VIP:PORT|-f MARK -r RIP[:PORT] tcp|http|https|misc [options]\n\
       lbadm check del -t|-u VIP:PORT|-f MARK -r RIP[:PORT] [tcp|http|https|misc]\n\
       lbadm check show [-t|-u VIP:PORT|-f MARK]\n\
       lbadm check service -t|-u VIP:PORT|-f MARK [--quorum N] [--hysteresis N] [--sorry-server IP[:PORT]] [--sorry-server-inhibit] [--quorum-up CMD] [--quorum-down CMD]";

struct Args<'a> {
    words: &'a [String],
    i: usize,
}

impl<'a> Args<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.i)?;
        self.i += 1;
        Some(w.as_str())
    }

    fn value(&mut self, opt: &str) -> Result<&'a str, CtlError> {
        self.next()
            .ok_or_else(|| err(format!("option {opt} needs a value")))
    }
}

fn parse_num<T: std::str::FromStr>(opt: &str, v: &str) -> Result<T, CtlError> {
    v.parse()
        .map_err(|_| err(format!("invalid value \"{v}\" for {opt}")))
}

fn parse_timer(opt: &str, v: &str) -> Result<u64, CtlError> {
    parse_secs(v).ok_or_else(|| err(format!("invalid time \"{v}\" for {opt} (decimal seconds)")))
}

fn parse_ip(opt: &str, v: &str) -> Result<Ipv4Addr, CtlError> {
    v.parse()
        .map_err(|_| err(format!("invalid address \"{v}\" for {opt}")))
}

fn parse_port(opt: &str, v: &str) -> Result<u16, CtlError> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(err(format!("invalid port \"{v}\" for {opt} (1-65535)"))),
    }
}

/// The service option (`-t X`, `-u X`, `-f X`) and `-r X`, pulled out of `words`; the rest
/// is returned in order.
fn split_targets(words: &[String]) -> Result<(Option<(String, String)>, Option<String>, Vec<String>), CtlError> {
    let mut svc = None;
    let mut rs = None;
    let mut rest = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let long = |s: &str| match s {
            "--tcp-service" => Some("-t"),
            "--udp-service" => Some("-u"),
            "--fwmark-service" => Some("-f"),
            "--real-server" => Some("-r"),
            _ => None,
        };
        let opt = match w.as_str() {
            "-t" | "-u" | "-f" | "-r" => Some(w.as_str()),
            other => long(other),
        };
        match opt {
            Some(o) => {
                let v = it
                    .next()
                    .ok_or_else(|| err(format!("option {w} needs a value")))?
                    .clone();
                if o == "-r" {
                    if rs.replace(v).is_some() {
                        return Err(err("-r given twice"));
                    }
                } else if svc.replace((o.to_string(), v)).is_some() {
                    return Err(err("more than one service given"));
                }
            }
            None => rest.push(w.clone()),
        }
    }
    Ok((svc, rs, rest))
}

fn env(names: &dyn Names) -> ParseEnv<'_> {
    ParseEnv {
        names,
        prog: crate::cli::PROG,
    }
}

fn service_of(svc: &(String, String), names: &dyn Names) -> Result<ServiceKey, CtlError> {
    let words = vec!["-D".to_string(), svc.0.clone(), svc.1.clone()];
    match ipvsadm::parse_with(&words, &env(names))? {
        IpvsCommand::DeleteService(k) => Ok(k),
        _ => Err(err("bad service")),
    }
}

fn server_of(
    svc: &(String, String),
    rs: &str,
    names: &dyn Names,
) -> Result<(ServiceKey, Ipv4Addr, u16), CtlError> {
    let words = vec![
        "-d".to_string(),
        svc.0.clone(),
        svc.1.clone(),
        "-r".to_string(),
        rs.to_string(),
    ];
    match ipvsadm::parse_with(&words, &env(names))? {
        IpvsCommand::DeleteServer { service, addr, port } => {
            // Normalised like -a (direct routing takes the service port).
            let spec = crate::model::Config::normalize_server(
                &service,
                &crate::model::ServerSpec::new(addr, port),
            );
            Ok((service, addr, spec.port))
        }
        _ => Err(err("bad real server")),
    }
}

fn kind_word(w: &str) -> Option<&'static str> {
    match w {
        "tcp" | "TCP_CHECK" => Some("tcp"),
        "http" | "HTTP_GET" => Some("http"),
        "https" | "ssl" | "SSL_GET" => Some("https"),
        "misc" | "MISC_CHECK" => Some("misc"),
        _ => None,
    }
}

/// Parses the words after `check`.
pub fn parse(words: &[String], names: &dyn Names) -> Result<CheckCli, CtlError> {
    let Some(verb) = words.first() else {
        return Ok(CheckCli::Show(None));
    };
    let (svc, rs, rest) = split_targets(&words[1..])?;
    match verb.as_str() {
        "show" | "list" | "ls" => {
            if rs.is_some() || !rest.is_empty() {
                return Err(err("usage: check show [-t|-u VIP:PORT|-f MARK]"));
            }
            Ok(CheckCli::Show(svc.as_ref().map(|s| service_of(s, names)).transpose()?))
        }
        "add" => {
            let svc = svc.ok_or_else(|| err("missing service (-t, -u or -f)"))?;
            let rs = rs.ok_or_else(|| err("missing real server (-r)"))?;
            let (service, addr, port) = server_of(&svc, &rs, names)?;
            let (spec, server) = parse_add(&rest)?;
            spec.validate()
                .map_err(|e| err(e.message))?;
            server.validate().map_err(|e| err(e.message))?;
            Ok(CheckCli::Change(ConfigCommand::AddCheck(AddCheck {
                service,
                addr,
                port,
                spec,
                server,
            })))
        }
        "del" | "delete" => {
            let svc = svc.ok_or_else(|| err("missing service (-t, -u or -f)"))?;
            let rs = rs.ok_or_else(|| err("missing real server (-r)"))?;
            let (service, addr, port) = server_of(&svc, &rs, names)?;
            let kind = match rest.as_slice() {
                [] => None,
                [k] => Some(
                    kind_word(k)
                        .ok_or_else(|| err(format!("unknown checker \"{k}\" (tcp, http, https, misc)")))?
                        .to_string(),
                ),
                _ => return Err(err("usage: check del -t|-u VIP:PORT|-f MARK -r RIP[:PORT] [KIND]")),
            };
            Ok(CheckCli::Change(ConfigCommand::DelCheck(DelCheck {
                service,
                addr,
                port,
                kind,
            })))
        }
        "service" => {
            let svc = svc.ok_or_else(|| err("missing service (-t, -u or -f)"))?;
            if rs.is_some() {
                return Err(err("check service takes no -r"));
            }
            let service = service_of(&svc, names)?;
            let health = parse_service(&rest)?;
            health.validate().map_err(|e| err(e.message))?;
            Ok(CheckCli::Change(ConfigCommand::SetServiceHealth { service, health }))
        }
        other => Err(err(format!("unknown command \"{other}\" (add, del, show, service)"))),
    }
}

fn parse_service(words: &[String]) -> Result<ServiceHealth, CtlError> {
    let mut h = ServiceHealth::default();
    let mut a = Args { words, i: 0 };
    while let Some(w) = a.next() {
        match w {
            "--quorum" => h.quorum = parse_num(w, a.value(w)?)?,
            "--hysteresis" => h.hysteresis = parse_num(w, a.value(w)?)?,
            "--sorry-server" => {
                let v = a.value(w)?;
                let (ip, port) = match v.rsplit_once(':') {
                    Some((ip, p)) => (parse_ip(w, ip)?, parse_port(w, p)?),
                    None => (parse_ip(w, v)?, 0),
                };
                let inhibit = h.sorry_server.is_some_and(|s| s.inhibit);
                h.sorry_server = Some(SorryServer { addr: ip, port, inhibit });
            }
            "--sorry-server-inhibit" => match &mut h.sorry_server {
                Some(s) => s.inhibit = true,
                None => return Err(err("--sorry-server-inhibit must follow --sorry-server")),
            },
            "--quorum-up" => h.quorum_up = Some(a.value(w)?.to_string()),
            "--quorum-down" => h.quorum_down = Some(a.value(w)?.to_string()),
            other => return Err(err(format!("unknown option \"{other}\""))),
        }
    }
    Ok(h)
}

fn parse_add(words: &[String]) -> Result<(CheckSpec, ServerHealthOpts), CtlError> {
    let Some(kind) = words.first() else {
        return Err(err("missing checker kind (tcp, http, https, misc)"));
    };
    let kind = kind_word(kind).ok_or_else(|| err(format!("unknown checker \"{kind}\" (tcp, http, https, misc)")))?;
    let mut http = HttpCheck::default();
    let mut misc_path: Option<String> = None;
    let mut misc_timeout: Option<u64> = None;
    let mut misc_dynamic = false;
    let mut spec = CheckSpec::new(CheckKind::Tcp);
    let (mut delay_loop, mut warmup, mut retry, mut dbr) = (None, None, None, None);
    let mut connect_timeout = None;
    let mut server = ServerHealthOpts::default();
    let mut a = Args { words, i: 1 };
    let is_http = kind == "http" || kind == "https";
    let need = |ok: bool, opt: &str, kinds: &str| -> Result<(), CtlError> {
        if ok {
            Ok(())
        } else {
            Err(err(format!("{opt} applies to {kinds} checkers only")))
        }
    };
    while let Some(w) = a.next() {
        match w {
            "--delay-loop" => delay_loop = Some(parse_timer(w, a.value(w)?)?),
            "--connect-timeout" => connect_timeout = Some(parse_timer(w, a.value(w)?)?),
            "--retry" => retry = Some(parse_num::<u32>(w, a.value(w)?)?),
            "--delay-before-retry" => dbr = Some(parse_timer(w, a.value(w)?)?),
            "--warmup" => warmup = Some(parse_timer(w, a.value(w)?)?),
            "--alpha" => spec.timing.alpha = true,
            "--log-all-failures" => spec.timing.log_all_failures = true,
            "--connect-ip" => spec.target.connect_ip = Some(parse_ip(w, a.value(w)?)?),
            "--connect-port" => spec.target.connect_port = Some(parse_port(w, a.value(w)?)?),
            "--bindto" => spec.target.bindto = Some(parse_ip(w, a.value(w)?)?),
            "--bind-port" => spec.target.bind_port = Some(parse_port(w, a.value(w)?)?),
            "--inhibit-on-failure" => server.inhibit_on_failure = Some(true),
            "--no-inhibit-on-failure" => server.inhibit_on_failure = Some(false),
            "--notify-up" => server.notify_up = Some(a.value(w)?.to_string()),
            "--notify-down" => server.notify_down = Some(a.value(w)?.to_string()),
            "--url" => {
                need(is_http, w, "http/https")?;
                http.urls.push(UrlSpec::new(a.value(w)?));
            }
            "--digest" | "--status-code" | "--url-virtualhost" => {
                need(is_http, w, "http/https")?;
                let v = a.value(w)?;
                let url = http
                    .urls
                    .last_mut()
                    .ok_or_else(|| err(format!("{w} must follow --url")))?;
                match w {
                    "--digest" => {
                        if parse_digest(v).is_none() {
                            return Err(err(format!("digest \"{v}\" is not 32 hexadecimal digits")));
                        }
                        url.digest = Some(v.to_ascii_lowercase());
                    }
                    "--status-code" => {
                        for part in v.split(',') {
                            url.status.0.push(
                                StatusSet::parse_word(part)
                                    .ok_or_else(|| err(format!("invalid status code \"{part}\" (100-599 or A-B)")))?,
                            );
                        }
                    }
                    _ => url.virtualhost = Some(v.to_string()),
                }
            }
            "--virtualhost" => {
                need(is_http, w, "http/https")?;
                http.virtualhost = Some(a.value(w)?.to_string());
            }
            "--http-protocol" => {
                need(is_http, w, "http/https")?;
                let v = a.value(w)?;
                http.http_protocol =
                    HttpProtocol::parse(v).ok_or_else(|| err(format!("invalid http protocol \"{v}\" (1.0, 1.0C, 1.1)")))?;
            }
            "--fast-recovery" => {
                need(is_http, w, "http/https")?;
                http.fast_recovery = true;
            }
            "--enable-sni" => {
                need(kind == "https", w, "https")?;
                http.enable_sni = true;
            }
            "--sni-name" => {
                need(kind == "https", w, "https")?;
                http.sni_name = Some(a.value(w)?.to_string());
                http.enable_sni = true;
            }
            "--ca" | "--certificate" | "--key" => {
                need(kind == "https", w, "https")?;
                let v = a.value(w)?.to_string();
                match w {
                    "--ca" => http.ca = Some(v),
                    "--certificate" => http.certificate = Some(v),
                    _ => http.key = Some(v),
                }
            }
            "--misc-path" => {
                need(kind == "misc", w, "misc")?;
                misc_path = Some(a.value(w)?.to_string());
            }
            "--misc-timeout" => {
                need(kind == "misc", w, "misc")?;
                misc_timeout = Some(parse_timer(w, a.value(w)?)?);
            }
            "--misc-dynamic" => {
                need(kind == "misc", w, "misc")?;
                misc_dynamic = true;
            }
            other => return Err(err(format!("unknown option \"{other}\""))),
        }
    }
    spec.kind = match kind {
        "tcp" => CheckKind::Tcp,
        "http" => CheckKind::Http(http),
        "https" => CheckKind::Https(http),
        _ => {
            let path = misc_path.ok_or_else(|| err("misc checkers need --misc-path"))?;
            CheckKind::Misc(MiscCheck {
                path,
                timeout_us: 0,
                dynamic: misc_dynamic,
            })
        }
    };
    let t = &mut spec.timing;
    t.delay_loop_us = delay_loop.unwrap_or(DEFAULT_DELAY_LOOP);
    t.connect_timeout_us = connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    t.retry = retry.unwrap_or_else(|| default_retry(&spec.kind));
    t.delay_before_retry_us = dbr.unwrap_or_else(|| default_delay_before_retry(&spec.kind));
    t.warmup_us = warmup.unwrap_or(t.delay_loop_us);
    if let CheckKind::Misc(m) = &mut spec.kind {
        // keepalived: misc_timeout defaults to the delay loop.
        m.timeout_us = misc_timeout.unwrap_or(t.delay_loop_us);
    }
    Ok((spec, server))
}

fn quote(s: &str) -> String {
    shlex::try_quote(s).map_or_else(|_| format!("'{s}'"), |q| q.into_owned())
}

fn service_arg(k: &ServiceKey) -> String {
    match k {
        ServiceKey::Addr { proto, addr, port } => format!("{} {addr}:{port}", proto.option()),
        ServiceKey::Fwmark(m) => format!("-f {m}"),
    }
}

/// The `check ...` options of one checker (after the kind word), non-default values only.
pub fn spec_options(spec: &CheckSpec) -> String {
    let mut o = String::new();
    let t = &spec.timing;
    if t.delay_loop_us != DEFAULT_DELAY_LOOP {
        let _ = write!(o, " --delay-loop {}", format_secs(t.delay_loop_us));
    }
    if t.connect_timeout_us != DEFAULT_CONNECT_TIMEOUT && spec.kind.connects() {
        let _ = write!(o, " --connect-timeout {}", format_secs(t.connect_timeout_us));
    }
    if t.retry != default_retry(&spec.kind) {
        let _ = write!(o, " --retry {}", t.retry);
    }
    if t.delay_before_retry_us != default_delay_before_retry(&spec.kind) {
        let _ = write!(o, " --delay-before-retry {}", format_secs(t.delay_before_retry_us));
    }
    if t.warmup_us != t.delay_loop_us {
        let _ = write!(o, " --warmup {}", format_secs(t.warmup_us));
    }
    if t.alpha {
        o.push_str(" --alpha");
    }
    if t.log_all_failures {
        o.push_str(" --log-all-failures");
    }
    let tg = &spec.target;
    if let Some(v) = tg.connect_ip {
        let _ = write!(o, " --connect-ip {v}");
    }
    if let Some(v) = tg.connect_port {
        let _ = write!(o, " --connect-port {v}");
    }
    if let Some(v) = tg.bindto {
        let _ = write!(o, " --bindto {v}");
    }
    if let Some(v) = tg.bind_port {
        let _ = write!(o, " --bind-port {v}");
    }
    match &spec.kind {
        CheckKind::Tcp => {}
        CheckKind::Http(h) | CheckKind::Https(h) => {
            for u in &h.urls {
                let _ = write!(o, " --url {}", quote(&u.path));
                if let Some(d) = &u.digest {
                    let _ = write!(o, " --digest {d}");
                }
                if !u.status.0.is_empty() {
                    let _ = write!(o, " --status-code {}", u.status.to_list());
                }
                if let Some(v) = &u.virtualhost {
                    let _ = write!(o, " --url-virtualhost {}", quote(v));
                }
            }
            if let Some(v) = &h.virtualhost {
                let _ = write!(o, " --virtualhost {}", quote(v));
            }
            if h.http_protocol != HttpProtocol::V10 {
                let _ = write!(o, " --http-protocol {}", h.http_protocol.name());
            }
            if h.fast_recovery {
                o.push_str(" --fast-recovery");
            }
            if h.enable_sni && h.sni_name.is_none() {
                o.push_str(" --enable-sni");
            }
            if let Some(v) = &h.sni_name {
                let _ = write!(o, " --sni-name {}", quote(v));
            }
            for (opt, v) in [("--ca", &h.ca), ("--certificate", &h.certificate), ("--key", &h.key)] {
                if let Some(v) = v {
                    let _ = write!(o, " {opt} {}", quote(v));
                }
            }
        }
        CheckKind::Misc(m) => {
            let _ = write!(o, " --misc-path {}", quote(&m.path));
            if m.timeout_us != t.delay_loop_us {
                let _ = write!(o, " --misc-timeout {}", format_secs(m.timeout_us));
            }
            if m.dynamic {
                o.push_str(" --misc-dynamic");
            }
        }
    }
    o
}

/// The `check service` and `check add` lines of a configuration file.
pub fn save_lines(health: &[ServiceHealthDump]) -> String {
    let mut out = String::new();
    for s in health {
        let svc = service_arg(&s.service);
        if s.settings != ServiceHealth::default() {
            let h = &s.settings;
            let _ = write!(out, "check service {svc}");
            if h.quorum != 1 {
                let _ = write!(out, " --quorum {}", h.quorum);
            }
            if h.hysteresis != 0 {
                let _ = write!(out, " --hysteresis {}", h.hysteresis);
            }
            if let Some(ss) = h.sorry_server {
                if ss.port == 0 {
                    let _ = write!(out, " --sorry-server {}", ss.addr);
                } else {
                    let _ = write!(out, " --sorry-server {}:{}", ss.addr, ss.port);
                }
                if ss.inhibit {
                    out.push_str(" --sorry-server-inhibit");
                }
            }
            if let Some(c) = &h.quorum_up {
                let _ = write!(out, " --quorum-up {}", quote(c));
            }
            if let Some(c) = &h.quorum_down {
                let _ = write!(out, " --quorum-down {}", quote(c));
            }
            out.push('\n');
        }
        // Oldest server first, like the -a lines.
        for srv in s.servers.iter().rev() {
            for (i, c) in srv.checks.iter().enumerate() {
                let _ = write!(
                    out,
                    "check add {svc} -r {}:{} {}{}",
                    srv.spec.addr,
                    srv.spec.port,
                    c.kind.word(),
                    spec_options(c)
                );
                if i == 0 {
                    if srv.inhibit_on_failure {
                        out.push_str(" --inhibit-on-failure");
                    }
                    if let Some(v) = &srv.notify_up {
                        let _ = write!(out, " --notify-up {}", quote(v));
                    }
                    if let Some(v) = &srv.notify_down {
                        let _ = write!(out, " --notify-down {}", quote(v));
                    }
                }
                out.push('\n');
            }
        }
    }
    out
}
