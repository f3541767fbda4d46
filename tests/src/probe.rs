//! Multi-service real servers and multi-address clients, for the seeds' persistence
//! experiments (PPC, PCC, firewall marks, netmask): the real servers answer on several ports
//! and protocols with their name, the client speaks from several source addresses, and the
//! `ipvsadm -L -n -c` listing is parsed into rows.
//!
//! * [`NameServer`]: scripts/testbed-probe.py `serve-tcp` (the seeds' "telnet" on 23: sends its
//!   name and closes) or `serve-udp` (the "DNS" on 53: answers each datagram with its name,
//!   from the VIP the datagram was addressed to);
//! * [`curl_get_from`], [`tcp_name_from`], [`udp_name_from`]: one exchange from a chosen source
//!   address of the client namespace (`curl --interface ADDR` / bind);
//! * [`parse_conns`]: `-L -n -c` rows ([`ConnRow`]), templates recognised by client port 0.

use crate::http::python;
use crate::netns::{ChildGuard, Netns};
use crate::util::wait_until;
use std::time::Duration;

/// Source of scripts/testbed-probe.py.
pub const PROBE_SCRIPT: &str = include_str!("../../scripts/testbed-probe.py");

/// Layer-4 protocol of a [`NameServer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
}

/// A name responder in a namespace, stopped (by PID) on drop.
#[derive(Debug)]
pub struct NameServer {
    child: ChildGuard,
    pub name: String,
    pub port: u16,
    pub proto: L4,
}

impl NameServer {
    /// Starts a TCP or UDP name responder `name` on `0.0.0.0:port` in `ns`; waits (≤ 10 s)
    /// until it answers on 127.0.0.1 inside the namespace. Panics otherwise.
    pub fn start(ns: &Netns, name: &str, proto: L4, port: u16) -> NameServer {
        let py = python();
        let port_s = port.to_string();
        let mode = match proto {
            L4::Tcp => "serve-tcp",
            L4::Udp => "serve-udp",
        };
        let mut child = ns.spawn(&[
            &py,
            "-c",
            PROBE_SCRIPT,
            mode,
            "--name",
            name,
            "--port",
            &port_s,
        ]);
        let ready = wait_until(Duration::from_secs(10), || {
            if !child.is_running() {
                return true;
            }
            let r = match proto {
                L4::Tcp => tcp_name_from(ns, None, "127.0.0.1", port, 1),
                L4::Udp => udp_name_from(ns, None, "127.0.0.1", port, 1),
            };
            matches!(r, Ok(ref n) if n == name)
        });
        if !ready || !child.is_running() {
            panic!(
                "{mode} {name} did not start in {} on port {port}",
                ns.name()
            );
        }
        NameServer {
            child,
            name: name.to_string(),
            port,
            proto,
        }
    }

    /// The responder's PID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

fn out_result(what: &str, out: std::process::Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `curl -s -S --fail --max-time <secs> [--interface <src>] <url>` inside `ns`: the trimmed
/// body, else an error text that contains curl's exit status (7 = connection refused,
/// 28 = timeout) and message.
pub fn curl_get_from(
    ns: &Netns,
    src: Option<&str>,
    url: &str,
    max_time_secs: u32,
) -> Result<String, String> {
    let t = max_time_secs.to_string();
    let mut args = vec!["curl", "-s", "-S", "--fail", "--max-time", &t];
    if let Some(s) = src {
        args.extend(["--interface", s]);
    }
    args.push(url);
    let out = ns.exec_timeout(&args, Duration::from_secs(max_time_secs as u64 + 10));
    out_result(
        &format!("curl {url} from {}", src.unwrap_or("default")),
        out,
    )
}

/// One TCP exchange with a [`NameServer`] (`serve-tcp`) at `dst:port` from source `src` of
/// `ns`: connect, read until the server closes; the trimmed answer.
pub fn tcp_name_from(
    ns: &Netns,
    src: Option<&str>,
    dst: &str,
    port: u16,
    timeout_secs: u32,
) -> Result<String, String> {
    probe_client(ns, "tcp", src, dst, port, timeout_secs)
}

/// One UDP query to a [`NameServer`] (`serve-udp`) at `dst:port` from source `src` of `ns`;
/// the trimmed answer.
pub fn udp_name_from(
    ns: &Netns,
    src: Option<&str>,
    dst: &str,
    port: u16,
    timeout_secs: u32,
) -> Result<String, String> {
    probe_client(ns, "udp", src, dst, port, timeout_secs)
}

fn probe_client(
    ns: &Netns,
    mode: &str,
    src: Option<&str>,
    dst: &str,
    port: u16,
    timeout_secs: u32,
) -> Result<String, String> {
    let py = python();
    let port_s = port.to_string();
    let t = timeout_secs.to_string();
    let mut args = vec![
        py.as_str(),
        "-c",
        PROBE_SCRIPT,
        mode,
        "--dst",
        dst,
        "--port",
        &port_s,
        "--timeout",
        &t,
    ];
    if let Some(s) = src {
        args.extend(["--src", s]);
    }
    let out = ns.exec_timeout(&args, Duration::from_secs(timeout_secs as u64 + 10));
    out_result(
        &format!("{mode} {dst}:{port} from {}", src.unwrap_or("default")),
        out,
    )
}

/// One row of `ipvsadm -L -n -c` (ipvs-semantics.md §7.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnRow {
    /// `TCP`, `UDP`, `SCTP`, or `IP` (fwmark templates).
    pub proto: String,
    /// Remaining time in seconds (the `MM:SS` column).
    pub expire_secs: u64,
    pub state: String,
    /// `caddr:cport` (masked address and port 0 for templates).
    pub source: String,
    /// `vaddr:vport` (`0.0.0.MARK:0` for fwmark templates).
    pub virt: String,
    /// `daddr:dport`.
    pub dest: String,
}

impl ConnRow {
    /// Templates have client port 0.
    pub fn is_template(&self) -> bool {
        self.source.ends_with(":0")
    }

    /// Client address without the port.
    pub fn source_addr(&self) -> &str {
        self.source.rsplit_once(':').map(|(a, _)| a).unwrap_or("")
    }

    /// Real-server address without the port.
    pub fn dest_addr(&self) -> &str {
        self.dest.rsplit_once(':').map(|(a, _)| a).unwrap_or("")
    }
}

/// Parses an `-L -n -c` listing; the two header lines and malformed rows are skipped.
pub fn parse_conns(text: &str) -> Vec<ConnRow> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || !matches!(f[0], "TCP" | "UDP" | "SCTP" | "IP") {
            continue;
        }
        let Some((m, s)) = f[1].split_once(':') else {
            continue;
        };
        let (Ok(m), Ok(s)) = (m.parse::<u64>(), s.parse::<u64>()) else {
            continue;
        };
        rows.push(ConnRow {
            proto: f[0].into(),
            expire_secs: m * 60 + s,
            state: f[2].into(),
            source: f[3].into(),
            virt: f[4].into(),
            dest: f[5].into(),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conn_listing() {
        let t = "IPVS connection entries
pro expire state       source             virtual            destination
TCP 09:57  ASSURED     10.9.8.0:0         192.168.1.100:80   10.0.0.11:80
TCP 14:58  ESTABLISHED 10.9.8.7:51234     192.168.1.100:80   10.0.0.11:80
UDP 04:59  UDP         10.1.1.5:33000     192.168.1.100:53   10.0.0.21:53
IP  05:59  NONE        10.1.1.5:0         0.0.0.7:0          10.0.0.31:0
TCP 6000:05 FIN_WAIT   1.1.1.1:1          192.168.1.100:80   2.2.2.2:80
";
        let r = parse_conns(t);
        assert_eq!(r.len(), 5);
        assert!(r[0].is_template());
        assert_eq!(r[0].expire_secs, 597);
        assert_eq!(r[0].source_addr(), "10.9.8.0");
        assert!(!r[1].is_template());
        assert_eq!(r[2].proto, "UDP");
        assert_eq!(r[3].proto, "IP");
        assert_eq!(r[3].virt, "0.0.0.7:0");
        assert_eq!(r[3].dest_addr(), "10.0.0.31");
        assert_eq!(r[4].expire_secs, 360005);
    }
}
