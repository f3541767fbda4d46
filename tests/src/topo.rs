//! Layer-2 plumbing between namespaces: a "switch" namespace holding Linux bridges, veth links
//! into it, and the per-host settings the testbeds need.
//!
//! Conventions (see design.md "Testbeds"):
//! * Every veth end gets checksum and segmentation offloads turned off
//!   (`ethtool -K IF tx off rx off tso off gso off gro off`): with TX checksum offload on, the
//!   kernel hands af_packet frames whose TCP checksum is not filled in, and TCP through the
//!   DPDK director fails.
//! * A bridge has STP off and forward delay 0, so ports forward as soon as they are up.
//! * Interface names inside a host namespace are short and fixed (`eth0`, `eth1`): they only
//!   need to be unique within that namespace. Switch-side names are generated per switch.

use crate::netns::Netns;
use std::cell::Cell;

/// Turns off checksum and segmentation offloads on `ifname` inside `ns` (both ends of every
/// veth must get this). Panics if ethtool fails.
pub fn offload_off(ns: &Netns, ifname: &str) {
    let full = ns.exec(&[
        "ethtool", "-K", ifname, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
    ]);
    if !full.status.success() {
        // Some kernels refuse one of the segmentation flags: checksums are what matters.
        ns.exec_ok(&["ethtool", "-K", ifname, "tx", "off", "rx", "off"]);
    }
}

/// Creates a veth pair `a_if` in `a` <-> `b_if` in `b`, offloads off on both ends, both up.
pub fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    a.exec_ok(&[
        "ip",
        "link",
        "add",
        "name",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]);
    offload_off(a, a_if);
    offload_off(b, b_if);
    a.exec_ok(&["ip", "link", "set", a_if, "up"]);
    b.exec_ok(&["ip", "link", "set", b_if, "up"]);
}

/// Adds an IPv4 address (`"198.51.100.11/24"`) to `dev` inside `ns`.
pub fn add_addr(ns: &Netns, cidr: &str, dev: &str) {
    ns.exec_ok(&["ip", "addr", "add", cidr, "dev", dev]);
}

/// Adds a route (`dest` like `"198.51.100.100/32"` or `"default"`) via `gateway` inside `ns`.
pub fn add_route_via(ns: &Netns, dest: &str, gateway: &str) {
    ns.exec_ok(&["ip", "route", "add", dest, "via", gateway]);
}

/// MAC address of `dev` inside `ns`, as `aa:bb:cc:dd:ee:ff`.
pub fn mac_of(ns: &Netns, dev: &str) -> String {
    ns.exec_ok(&["cat", &format!("/sys/class/net/{dev}/address")])
        .trim()
        .to_string()
}

/// Prepares a veth end that a director's DPDK net_af_packet port will own: no kernel address,
/// IPv6 off (no RS/DAD/MLD from the kernel on that link), link up, and the namespace's own
/// stack kept off it. An af_packet socket only taps the interface: the kernel still receives
/// every frame, and with the kernel leg the director's addresses are the host's too (on
/// `dpdkN`), so without this the host would answer the VIP's traffic itself (RST). Strict
/// reverse-path filtering on the veth drops every IPv4 packet there (no route points at it),
/// `arp_ignore=8` stops ARP answers; a NIC bound to DPDK needs none of this.
pub fn prepare_director_port(ns: &Netns, ifname: &str) {
    ns.sysctl(&[
        (&format!("net.ipv6.conf.{ifname}.disable_ipv6") as &str, "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        (&format!("net.ipv4.conf.{ifname}.rp_filter"), "1"),
        (&format!("net.ipv4.conf.{ifname}.arp_ignore"), "8"),
    ]);
    ns.exec_ok(&["ip", "link", "set", ifname, "up"]);
}

/// Makes `ns` a DR real server for `vip` (ipvs-semantics.md §6.4): VIP/32 on `lo`,
/// `arp_ignore=1` and `arp_announce=2` on `all` and on each uplink (so it never answers ARP for
/// the VIP nor uses it as ARP source), and `rp_filter=0` (the forwarded packets may arrive on
/// an interface other than the one its route to the client uses, as in the two-armed testbed).
pub fn configure_dr_real_server(ns: &Netns, vip: &str, uplinks: &[&str]) {
    add_addr(ns, &format!("{vip}/32"), "lo");
    let mut kv: Vec<(String, &str)> = vec![
        ("net.ipv4.conf.all.arp_ignore".into(), "1"),
        ("net.ipv4.conf.all.arp_announce".into(), "2"),
        ("net.ipv4.conf.all.rp_filter".into(), "0"),
        ("net.ipv4.conf.default.rp_filter".into(), "0"),
        ("net.ipv4.conf.lo.rp_filter".into(), "0"),
    ];
    for u in uplinks {
        kv.push((format!("net.ipv4.conf.{u}.arp_ignore"), "1"));
        kv.push((format!("net.ipv4.conf.{u}.arp_announce"), "2"));
        kv.push((format!("net.ipv4.conf.{u}.rp_filter"), "0"));
    }
    let refs: Vec<(&str, &str)> = kv.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    ns.sysctl(&refs);
}

/// A namespace holding Linux bridges: the testbed's Ethernet switch. Dropping it deletes the
/// namespace, which destroys its bridges and the switch-side veth ends (and so their peers in
/// the host namespaces).
#[derive(Debug)]
pub struct Switch {
    ns: Netns,
    next_port: Cell<u32>,
}

impl Switch {
    /// Creates the switch namespace (no bridges yet).
    pub fn new() -> Switch {
        Switch {
            ns: Netns::new("switch"),
            next_port: Cell::new(0),
        }
    }

    /// The switch's namespace (e.g. to run `bridge fdb` or tcpdump on a port).
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Adds a bridge `name` (STP off, forward delay 0, multicast snooping off), up.
    pub fn add_bridge(&self, name: &str) {
        self.ns.exec_ok(&[
            "ip",
            "link",
            "add",
            "name",
            name,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ]);
        self.ns.exec_ok(&["ip", "link", "set", name, "up"]);
    }

    /// Plugs host `node` into `bridge` with a new veth: `ifname` inside `node`, a generated
    /// port name inside the switch (returned). Offloads off on both ends, both ends up; the
    /// host end gets no address.
    pub fn plug(&self, bridge: &str, node: &Netns, ifname: &str) -> String {
        let n = self.next_port.get();
        self.next_port.set(n + 1);
        let port = format!("swp{n}");
        veth_pair(&self.ns, &port, node, ifname);
        self.ns
            .exec_ok(&["ip", "link", "set", &port, "master", bridge]);
        port
    }
}

impl Default for Switch {
    fn default() -> Self {
        Switch::new()
    }
}
