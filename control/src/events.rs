//! Control events: every configuration change that took effect is logged as one line through
//! the `log` facade (target `control`), and so is every change that was refused.
//!
//! The lines name things the way `lbadm -L -n` does (`TCP 198.51.100.100:80`, `FWM 10`,
//! `198.51.100.11:80`), so an operator can grep the journal for a service or a server. The
//! process that owns the logger decides where lines go and how they are stamped (the director
//! writes them to stderr with a timestamp and a level: `dataplane::logging`); without a logger
//! installed these calls cost a load and a compare.
//!
//! Only the control path logs (the `Controller`, under its mutex, after a change was published
//! or refused); nothing here runs on a worker.

use std::fmt::Write as _;

use crate::error::CtlError;
use crate::model::{ConfigCommand, ServerSpec, ServiceSpec};

/// Log target of control events.
pub const TARGET: &str = "control";

fn service_settings(s: &ServiceSpec) -> String {
    let mut out = format!("scheduler {}", s.scheduler);
    let flags = [s.flags.flag1, s.flags.flag2, s.flags.flag3];
    for (i, on) in flags.iter().enumerate() {
        if *on {
            let _ = write!(out, " flag-{}", i + 1);
        }
    }
    match s.persistent {
        Some(t) => {
            let _ = write!(out, ", persistent {t} s, netmask {}", s.netmask);
        }
        None => out.push_str(", not persistent"),
    }
    out
}

fn server_settings(s: &ServerSpec) -> String {
    let mut out = format!("{}, weight {}", s.fwd.name(), s.weight);
    if s.u_threshold > 0 {
        let _ = write!(out, ", upper threshold {}", s.u_threshold);
    }
    if s.l_threshold > 0 {
        let _ = write!(out, ", lower threshold {}", s.l_threshold);
    }
    out
}

fn server_name(addr: std::net::Ipv4Addr, port: u16) -> String {
    format!("{addr}:{port}")
}

/// One line describing a configuration command that took effect.
pub fn describe(c: &ConfigCommand) -> String {
    match c {
        ConfigCommand::AddService(s) => format!("service {} added ({})", s.key, service_settings(s)),
        ConfigCommand::EditService(s) => format!("service {} edited ({})", s.key, service_settings(s)),
        ConfigCommand::DeleteService(k) => format!("service {k} deleted"),
        ConfigCommand::Clear => "all services deleted (-C)".to_string(),
        ConfigCommand::AddServer { service, server } => format!(
            "server {} added to {service} ({})",
            server_name(server.addr, server.port),
            server_settings(server)
        ),
        ConfigCommand::EditServer { service, server } => format!(
            "server {} of {service} edited ({})",
            server_name(server.addr, server.port),
            server_settings(server)
        ),
        ConfigCommand::DeleteServer { service, addr, port } => {
            format!("server {} deleted from {service}", server_name(*addr, *port))
        }
        ConfigCommand::SetTimeouts(t) => format!(
            "timeouts set: tcp {} tcpfin {} udp {} (0 = unchanged)",
            t.tcp, t.tcp_fin, t.udp
        ),
        ConfigCommand::AddAddr(a) => format!("address {}/{} added on {}", a.addr, a.prefix_len, a.dev),
        ConfigCommand::DelAddr { addr, prefix_len, dev } => match prefix_len {
            Some(l) => format!("address {addr}/{l} deleted from {dev}"),
            None => format!("address {addr} deleted from {dev}"),
        },
        ConfigCommand::AddMark(r) => format!("mark rule appended: {r}"),
        ConfigCommand::InsertMark { pos, rule } => format!("mark rule inserted at {pos}: {rule}"),
        ConfigCommand::DelMark(r) => format!("mark rule deleted: {r}"),
        ConfigCommand::DelMarkAt(pos) => format!("mark rule {pos} deleted"),
        ConfigCommand::FlushMarks => "mark rules flushed".to_string(),
        ConfigCommand::SetSysctl { name, value } => {
            let short = name.strip_prefix(crate::sysctl::SYSCTL_PREFIX).unwrap_or(name);
            format!("sysctl {}{short} set to {value}", crate::sysctl::SYSCTL_PREFIX)
        }
        ConfigCommand::SetSysctlValues { name, values } => {
            let short = name.strip_prefix(crate::sysctl::SYSCTL_PREFIX).unwrap_or(name);
            let v: Vec<String> = values.iter().map(i64::to_string).collect();
            format!("sysctl {}{short} set to \"{}\"", crate::sysctl::SYSCTL_PREFIX, v.join(" "))
        }
        ConfigCommand::AddCheck(a) => format!(
            "{} added on server {} of {}{}",
            a.spec.kind.keepalived_name(),
            server_name(a.addr, a.port),
            a.service,
            crate::health::cli::spec_options(&a.spec)
        ),
        ConfigCommand::DelCheck(d) => match &d.kind {
            Some(k) => format!("{k} check(s) deleted from server {} of {}", server_name(d.addr, d.port), d.service),
            None => format!("checks deleted from server {} of {}", server_name(d.addr, d.port), d.service),
        },
        ConfigCommand::SetServiceHealth { service, health } => {
            let mut out = format!("health settings of {service}: quorum {}, hysteresis {}", health.quorum, health.hysteresis);
            match health.sorry_server {
                Some(ss) => {
                    let _ = write!(out, ", sorry server {}:{}", ss.addr, ss.port);
                }
                None => out.push_str(", no sorry server"),
            }
            out
        }
    }
}

/// Logs a change that took effect (published to the dataplane).
pub fn applied(c: &ConfigCommand) {
    log::info!(target: TARGET, "{}", describe(c));
}

/// Logs every command of a change that took effect.
pub fn applied_all(cmds: &[ConfigCommand]) {
    for c in cmds {
        applied(c);
    }
}

/// Logs a change that was refused (nothing changed).
pub fn refused(c: &ConfigCommand, e: &CtlError) {
    log::warn!(target: TARGET, "refused: {}: {}", describe(c), e.message);
}

/// Logs a change whose publication to the dataplane failed (nothing changed).
pub fn publish_failed(e: &CtlError) {
    log::error!(target: TARGET, "publishing a configuration failed, previous one kept: {}", e.message);
}

/// Logs a configuration file that was loaded.
pub fn config_loaded(path: &std::path::Path, commands: usize) {
    log::info!(target: TARGET, "configuration {} loaded: {commands} command(s)", path.display());
}

/// Logs a configuration file that could not be loaded (the message names the file and line).
pub fn config_failed(e: &CtlError) {
    log::error!(target: TARGET, "configuration not loaded: {}", e.message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AddrConfig, Protocol, ServiceKey};
    use crate::MarkRule;
    use std::net::Ipv4Addr;

    #[test]
    fn lines_name_things_as_the_listing_does() {
        let key = ServiceKey::Addr { proto: Protocol::Tcp, addr: Ipv4Addr::new(198, 51, 100, 100), port: 80 };
        let mut spec = ServiceSpec::new(key);
        spec.scheduler = "rr".into();
        spec.persistent = Some(360);
        assert_eq!(
            describe(&ConfigCommand::AddService(spec)),
            "service TCP 198.51.100.100:80 added (scheduler rr, persistent 360 s, netmask 255.255.255.255)"
        );
        let mut srv = ServerSpec::new(Ipv4Addr::new(198, 51, 100, 11), 80);
        srv.weight = 0;
        assert_eq!(
            describe(&ConfigCommand::EditServer { service: key, server: srv }),
            "server 198.51.100.11:80 of TCP 198.51.100.100:80 edited (Route, weight 0)"
        );
        assert_eq!(
            describe(&ConfigCommand::DeleteServer { service: ServiceKey::Fwmark(10), addr: Ipv4Addr::new(198, 51, 100, 12), port: 0 }),
            "server 198.51.100.12:0 deleted from FWM 10"
        );
        assert_eq!(
            describe(&ConfigCommand::AddAddr(AddrConfig { addr: Ipv4Addr::new(198, 51, 100, 100), prefix_len: 32, dev: "dpdk0".into() })),
            "address 198.51.100.100/32 added on dpdk0"
        );
        let mut rule = MarkRule::new(Ipv4Addr::new(198, 51, 100, 100), 32, 10);
        rule.proto = Some(Protocol::Tcp);
        rule.dport = Some((443, 443));
        assert_eq!(
            describe(&ConfigCommand::AddMark(rule)),
            "mark rule appended: -d 198.51.100.100/32 -p tcp --dport 443 --set-mark 10"
        );
        assert_eq!(
            describe(&ConfigCommand::SetSysctl { name: "sloppy_tcp".into(), value: 1 }),
            "sysctl net.ipv4.vs.sloppy_tcp set to 1"
        );
        assert_eq!(
            describe(&ConfigCommand::SetSysctl { name: "net.ipv4.vs.sloppy_tcp".into(), value: 0 }),
            "sysctl net.ipv4.vs.sloppy_tcp set to 0"
        );
        assert!(describe(&ConfigCommand::Clear).contains("all services deleted"));
    }
}
