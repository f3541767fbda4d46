//! Host and service name resolution for ipvsadm-style input (`-t www:http`) and non-numeric
//! listings (`-L` without `-n`).
//!
//! Invariants: resolution is pure Rust (no libc calls, so no `unsafe` in this crate).
//! [`NumericOnly`] resolves nothing (tests, fuzzing, `-n`). [`SystemNames`] reads
//! `/etc/services` and `/etc/hosts` once at construction; forward host lookups that miss
//! `/etc/hosts` go through the system resolver (`std::net::ToSocketAddrs`, i.e. NSS/DNS, like
//! ipvsadm's `gethostbyname`). Reverse lookups (address → name, for listings without `-n`) use
//! `/etc/hosts` only: unlike ipvsadm no DNS PTR query is made, so such addresses print
//! numerically. Lookups never panic and never block longer than the system resolver does.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};

use crate::model::Protocol;

/// Name ↔ address/port resolution used by the parser and the formatter.
pub trait Names {
    /// A host name → IPv4 address (`gethostbyname`).
    fn host_to_addr(&self, name: &str) -> Option<Ipv4Addr>;
    /// A service name → port for this protocol (`getservbyname`).
    fn service_to_port(&self, name: &str, proto: Protocol) -> Option<u16>;
    /// An address → host name (`gethostbyaddr`).
    fn addr_to_host(&self, addr: Ipv4Addr) -> Option<String>;
    /// A port → service name for this protocol (`getservbyport`).
    fn port_to_service(&self, port: u16, proto: Protocol) -> Option<String>;
}

/// Resolves nothing: every address and port stays numeric.
#[derive(Debug, Clone, Copy, Default)]
pub struct NumericOnly;

impl Names for NumericOnly {
    fn host_to_addr(&self, _: &str) -> Option<Ipv4Addr> {
        None
    }
    fn service_to_port(&self, _: &str, _: Protocol) -> Option<u16> {
        None
    }
    fn addr_to_host(&self, _: Ipv4Addr) -> Option<String> {
        None
    }
    fn port_to_service(&self, _: u16, _: Protocol) -> Option<String> {
        None
    }
}

#[derive(Debug, Clone)]
struct ServiceEntry {
    name: String,
    aliases: Vec<String>,
    port: u16,
    proto: String,
}

/// `/etc/services` + `/etc/hosts` (+ the system resolver for forward host lookups).
#[derive(Debug, Clone, Default)]
pub struct SystemNames {
    services: Vec<ServiceEntry>,
    hosts: Vec<(Ipv4Addr, Vec<String>)>,
    use_resolver: bool,
}

impl SystemNames {
    /// Reads `/etc/services` and `/etc/hosts` (missing files are treated as empty) and enables
    /// the system resolver for forward lookups.
    pub fn load() -> Self {
        let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let mut n = Self::from_texts(&services, &hosts);
        n.use_resolver = true;
        n
    }

    /// Builds from the text of a services file and a hosts file, without the system resolver.
    pub fn from_texts(services: &str, hosts: &str) -> Self {
        let mut out = SystemNames::default();
        for line in services.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut it = line.split_whitespace();
            let (Some(name), Some(pp)) = (it.next(), it.next()) else {
                continue;
            };
            let Some((port, proto)) = pp.split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            out.services.push(ServiceEntry {
                name: name.to_string(),
                aliases: it.map(str::to_string).collect(),
                port,
                proto: proto.to_string(),
            });
        }
        for line in hosts.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut it = line.split_whitespace();
            let Some(addr) = it.next() else { continue };
            let Ok(addr) = addr.parse::<Ipv4Addr>() else {
                continue;
            };
            let names: Vec<String> = it.map(str::to_string).collect();
            if !names.is_empty() {
                out.hosts.push((addr, names));
            }
        }
        out
    }
}

impl Names for SystemNames {
    fn host_to_addr(&self, name: &str) -> Option<Ipv4Addr> {
        if name.is_empty() {
            return None;
        }
        if let Some((a, _)) = self
            .hosts
            .iter()
            .find(|(_, names)| names.iter().any(|n| n == name))
        {
            return Some(*a);
        }
        if !self.use_resolver {
            return None;
        }
        (name, 0u16)
            .to_socket_addrs()
            .ok()?
            .find_map(|sa| match sa {
                SocketAddr::V4(v4) => Some(*v4.ip()),
                SocketAddr::V6(_) => None,
            })
    }

    fn service_to_port(&self, name: &str, proto: Protocol) -> Option<u16> {
        self.services
            .iter()
            .find(|s| {
                s.proto == proto.services_name()
                    && (s.name == name || s.aliases.iter().any(|a| a == name))
            })
            .map(|s| s.port)
    }

    fn addr_to_host(&self, addr: Ipv4Addr) -> Option<String> {
        self.hosts
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, n)| n[0].clone())
    }

    fn port_to_service(&self, port: u16, proto: Protocol) -> Option<String> {
        self.services
            .iter()
            .find(|s| s.port == port && s.proto == proto.services_name())
            .map(|s| s.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: &str = "# comment\nhttp\t\t80/tcp\t\twww\t# WorldWideWeb\nhttp 80/udp\ndomain 53/tcp\ndomain 53/udp\nbad line\nx 99999/tcp\n";
    const HOSTS: &str =
        "127.0.0.1 localhost\n::1 localhost ip6-localhost\n10.0.0.11 rs1.example rs1 # web\n";

    #[test]
    fn services_and_hosts() {
        let n = SystemNames::from_texts(SERVICES, HOSTS);
        assert_eq!(n.service_to_port("www", Protocol::Tcp), Some(80));
        assert_eq!(n.service_to_port("www", Protocol::Udp), None);
        assert_eq!(n.service_to_port("domain", Protocol::Udp), Some(53));
        assert_eq!(
            n.port_to_service(80, Protocol::Tcp).as_deref(),
            Some("http")
        );
        assert_eq!(n.port_to_service(81, Protocol::Tcp), None);
        assert_eq!(n.host_to_addr("rs1"), Some(Ipv4Addr::new(10, 0, 0, 11)));
        assert_eq!(
            n.host_to_addr("nosuchhost.invalid"),
            None,
            "no resolver in from_texts"
        );
        assert_eq!(
            n.addr_to_host(Ipv4Addr::new(10, 0, 0, 11)).as_deref(),
            Some("rs1.example")
        );
        assert_eq!(
            n.addr_to_host(Ipv4Addr::LOCALHOST).as_deref(),
            Some("localhost")
        );
    }
}
