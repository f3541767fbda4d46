//! The two-director testbed of the HA tests (netns_sync, netns_ha): one LAN bridge with a
//! client namespace (its own address and six persistent clients), two director namespaces
//! with eth0 prepared for a DPDK port, and two DR real servers, each with a web server on
//! :80 and TCP name responders on the persistent ports (PCC 7001-7002, fwmark 9001-9002).
//! Everything started here is stopped when the [`HaLan`] is dropped (processes by PID, then
//! the namespaces and the bridge).

use crate::probe::{tcp_name_from, NameServer, L4};
use crate::topo::{add_addr, configure_dr_real_server, prepare_director_port};
use crate::{HttpServer, Netns, Switch, VIP};

/// Director A's and B's addresses on the LAN.
pub const DIP_A: &str = "198.51.100.2";
pub const DIP_B: &str = "198.51.100.3";
/// The client's own address.
pub const CLIENT: &str = "198.51.100.50";
/// The real servers.
pub const RS: [&str; 2] = ["198.51.100.11", "198.51.100.12"];
/// Ports of the persistent all-ports (port 0) service and of the firewall-mark group.
pub const PCC_PORTS: [u16; 2] = [7001, 7002];
pub const FWM_PORTS: [u16; 2] = [9001, 9002];
/// Persistent clients: extra addresses of the client namespace.
pub const PCLIENTS: [&str; 6] = ["198.51.100.61", "198.51.100.62", "198.51.100.63", "198.51.100.64", "198.51.100.65", "198.51.100.66"];

/// The testbed. Field order is drop order: servers first, namespaces, the bridge last.
pub struct HaLan {
    /// Name responders on the persistent ports.
    pub names: Vec<NameServer>,
    /// Web servers on :80, one per real server.
    pub web: Vec<HttpServer>,
    /// The real servers' namespaces.
    pub rs: Vec<Netns>,
    /// The client.
    pub client: Netns,
    /// Director A's and B's namespaces.
    pub a: Netns,
    pub b: Netns,
    /// The LAN.
    pub switch: Switch,
}

/// Builds the testbed; the directors' namespaces are called `a` and `b` (unique names are
/// derived from them).
pub fn ha_lan(a: &str, b: &str) -> HaLan {
    let switch = Switch::new();
    switch.add_bridge("lan");
    let client = Netns::new("client");
    let (ns_a, ns_b) = (Netns::new(a), Netns::new(b));
    for ns in [&client, &ns_a, &ns_b] {
        switch.plug("lan", ns, "eth0");
    }
    prepare_director_port(&ns_a, "eth0");
    prepare_director_port(&ns_b, "eth0");
    add_addr(&client, &format!("{CLIENT}/24"), "eth0");
    for c in PCLIENTS {
        add_addr(&client, &format!("{c}/24"), "eth0");
    }
    let (mut web, mut names, mut rs) = (Vec::new(), Vec::new(), Vec::new());
    for (i, ip) in RS.iter().enumerate() {
        let name = format!("rs{}", i + 1);
        let ns = Netns::new(&name);
        switch.plug("lan", &ns, "eth0");
        add_addr(&ns, &format!("{ip}/24"), "eth0");
        configure_dr_real_server(&ns, VIP, &["eth0"]);
        web.push(HttpServer::start(&ns, &name, 80));
        for p in PCC_PORTS.iter().chain(FWM_PORTS.iter()) {
            names.push(NameServer::start(&ns, &name, L4::Tcp, *p));
        }
        rs.push(ns);
    }
    HaLan { names, web, rs, client, a: ns_a, b: ns_b, switch }
}

/// One connection of every persistent client to every persistent port: (client, port,
/// server name, or `ERROR …`).
pub fn persistent_round(client: &Netns) -> Vec<(String, u16, String)> {
    let mut v = Vec::new();
    for c in PCLIENTS {
        for port in PCC_PORTS.iter().chain(FWM_PORTS.iter()) {
            let name = tcp_name_from(client, Some(c), VIP, *port, 5).unwrap_or_else(|e| format!("ERROR {e}"));
            v.push((c.to_string(), *port, name));
        }
    }
    v
}
