//! Ready-made DR testbeds (design.md "Testbeds"), built from [`Netns`], [`Switch`] and
//! [`HttpServer`]. Addresses come from the TEST-NET ranges and exist only inside the testbed's
//! own namespaces.
//!
//! ## One-armed ([`OneArmed`]) — the seeds' layout, also scripts/demo.sh
//! ```text
//!   client   198.51.100.50 ─┐
//!   director (dpdk0) ───────┤ bridge "lan"         VIP 198.51.100.100 (on the director's dpdk0
//!   rs1      198.51.100.11 ─┤ 198.51.100.0/24       and on every real server's lo)
//!   rs2      198.51.100.12 ─┘                       director address 198.51.100.2/24
//! ```
//!
//! ## Two-armed ([`TwoArmed`]) — the layout of the kernel's IPVS DR selftest
//! ```text
//!            segment A "front" 203.0.113.0/24           segment B "back" 192.0.2.0/24
//!   client 203.0.113.10 ──┐                       ┌── rs1 eth0 192.0.2.11
//!   director dpdk0 ───────┤ bridge front    bridge back ├── director dpdk1
//!     (203.0.113.2)       │                       │     (192.0.2.2)
//!   rs1 eth1 203.0.113.11 ┘                       └── (rs2 eth0 192.0.2.12 …)
//! ```
//! The client routes the VIP 198.51.100.100 via the director's A address. The director
//! forwards by DR out of dpdk1 to a real server on B; the real server (VIP on lo) answers the
//! client directly through its own leg on A (its connected route to 203.0.113.0/24), never
//! through the director.
//!
//! Both testbeds only build the network and the servers: the test starts the director with
//! [`OneArmed::start_director`] / [`TwoArmed::start_director`] and configures it through
//! `lbadm` (or with the `configure_*` helpers).

use crate::director::{DirectorOptions, DirectorProcess, EalLayout, NEIGH_TIMEOUT};
use crate::http::{curl_get, HttpServer};
use crate::netns::Netns;
use crate::topo::{
    add_addr, add_route_via, configure_dr_real_server, prepare_director_port, Switch,
};

/// The virtual IP of both testbeds.
pub const VIP: &str = "198.51.100.100";
/// The service port.
pub const VPORT: u16 = 80;

/// A real server of a testbed. Field order matters: the HTTP server is stopped before the
/// namespace is deleted.
#[derive(Debug)]
pub struct RealServerHost {
    /// `rs1`, `rs2`, …: also what its HTTP server answers.
    pub name: String,
    /// Its address on the segment the director forwards to.
    pub ip: String,
    pub http: HttpServer,
    pub ns: Netns,
}

impl RealServerHost {
    /// `ip:80`, as in `lbadm -L -n`.
    pub fn addr_port(&self) -> String {
        format!("{}:{VPORT}", self.ip)
    }
}

/// Asserts that a GET of `url` from `client` is answered by the real server `name` (plumbing
/// check, no director involved).
#[track_caller]
fn assert_served_by(client: &Netns, url: &str, name: &str) {
    match curl_get(client, url, 3) {
        Ok(body) => assert_eq!(body, name, "{url} answered by the wrong server"),
        Err(e) => panic!("testbed plumbing broken: client -> {url}: {e}"),
    }
}

/// One L2 segment with client, director and `n` real servers. See the module docs.
/// Field order = drop order: servers and hosts first, the switch last.
#[derive(Debug)]
pub struct OneArmed {
    pub rs: Vec<RealServerHost>,
    pub client: Netns,
    /// The director's namespace; its veth `eth0` has no kernel address (DPDK owns it).
    pub director_ns: Netns,
    pub switch: Switch,
}

impl OneArmed {
    pub const PREFIX_LEN: u8 = 24;
    pub const CLIENT_IP: &'static str = "198.51.100.50";
    pub const DIRECTOR_IP: &'static str = "198.51.100.2";
    /// The director's interface inside `director_ns`.
    pub const DIRECTOR_IF: &'static str = "eth0";

    /// Address of real server `i` (0-based): 198.51.100.11, .12, …
    pub fn rs_ip(i: usize) -> String {
        format!("198.51.100.{}", 11 + i)
    }

    /// Builds the segment with `n_servers` real servers (1..=8), each running its HTTP server
    /// (`rs1`, `rs2`, …) on port 80, and checks each answers the client on its own address.
    pub fn new(n_servers: usize) -> OneArmed {
        assert!((1..=8).contains(&n_servers));
        let switch = Switch::new();
        switch.add_bridge("lan");
        let client = Netns::new("client");
        let director_ns = Netns::new("director");
        switch.plug("lan", &client, "eth0");
        switch.plug("lan", &director_ns, Self::DIRECTOR_IF);
        prepare_director_port(&director_ns, Self::DIRECTOR_IF);
        add_addr(
            &client,
            &format!("{}/{}", Self::CLIENT_IP, Self::PREFIX_LEN),
            "eth0",
        );

        let mut rs = Vec::new();
        for i in 0..n_servers {
            let name = format!("rs{}", i + 1);
            let ns = Netns::new(&name);
            switch.plug("lan", &ns, "eth0");
            let ip = Self::rs_ip(i);
            add_addr(&ns, &format!("{ip}/{}", Self::PREFIX_LEN), "eth0");
            configure_dr_real_server(&ns, VIP, &["eth0"]);
            let http = HttpServer::start(&ns, &name, VPORT);
            rs.push(RealServerHost { name, ip, http, ns });
        }
        let tb = OneArmed {
            rs,
            client,
            director_ns,
            switch,
        };
        tb.check_plumbing();
        tb
    }

    /// Asserts that the client reaches every real server's own address over HTTP (no director
    /// involved): the bridge, veths, addresses and servers work.
    pub fn check_plumbing(&self) {
        for r in &self.rs {
            let url = format!("http://{}/", r.ip);
            assert_served_by(&self.client, &url, &r.name);
        }
    }

    /// Starts the director in `director_ns` with dpdk0 on its veth.
    pub fn start_director(&self) -> DirectorProcess {
        DirectorProcess::start(&self.director_ns, &[Self::DIRECTOR_IF])
    }

    /// [`OneArmed::start_director`] with options.
    pub fn start_director_with(&self, opts: &DirectorOptions) -> DirectorProcess {
        DirectorProcess::start_with(&self.director_ns, &[Self::DIRECTOR_IF], opts)
    }

    /// [`OneArmed::start_director_with`] with several workers ([`EalLayout`]: EAL lcores and
    /// af_packet queue pairs on dpdk0).
    pub fn start_director_layout(
        &self,
        opts: &DirectorOptions,
        layout: &EalLayout,
    ) -> DirectorProcess {
        DirectorProcess::start_layout(&self.director_ns, &[Self::DIRECTOR_IF], opts, layout)
    }

    /// Standard configuration: director address and VIP on dpdk0, service `VIP:80` with
    /// `scheduler`, every real server added with `-g -w 1`, then waits until all real servers
    /// are REACHABLE in the director's neighbour table.
    pub fn configure_service(&self, d: &DirectorProcess, scheduler: &str) {
        let vs = format!("{VIP}:{VPORT}");
        d.lbadm_ok(&[
            "addr",
            "add",
            &format!("{}/{}", Self::DIRECTOR_IP, Self::PREFIX_LEN),
            "dev",
            "dpdk0",
        ]);
        d.lbadm_ok(&["addr", "add", &format!("{VIP}/32"), "dev", "dpdk0"]);
        d.lbadm_ok(&["-A", "-t", &vs, "-s", scheduler]);
        for r in &self.rs {
            d.lbadm_ok(&["-a", "-t", &vs, "-r", &r.addr_port(), "-g", "-w", "1"]);
        }
        let ips: Vec<&str> = self.rs.iter().map(|r| r.ip.as_str()).collect();
        d.wait_neigh_reachable(&ips, NEIGH_TIMEOUT);
    }

    /// One GET of `http://VIP/` from the client.
    pub fn get_vip(&self) -> Result<String, String> {
        curl_get(&self.client, &format!("http://{VIP}/"), 3)
    }
}

/// Two segments: client side A and real-server side B. See the module docs.
#[derive(Debug)]
pub struct TwoArmed {
    pub rs: Vec<RealServerHost>,
    pub client: Netns,
    /// The director's namespace: `eth0` on A (dpdk0), `eth1` on B (dpdk1), no kernel addresses.
    pub director_ns: Netns,
    pub switch: Switch,
}

impl TwoArmed {
    pub const PREFIX_LEN: u8 = 24;
    pub const CLIENT_IP: &'static str = "203.0.113.10";
    /// Director's address on A (dpdk0): the client's next hop for the VIP.
    pub const DIRECTOR_A_IP: &'static str = "203.0.113.2";
    /// Director's address on B (dpdk1).
    pub const DIRECTOR_B_IP: &'static str = "192.0.2.2";
    pub const DIRECTOR_A_IF: &'static str = "eth0";
    pub const DIRECTOR_B_IF: &'static str = "eth1";

    /// Real server `i`'s address on B (where the director forwards): 192.0.2.11, .12, …
    pub fn rs_ip(i: usize) -> String {
        format!("192.0.2.{}", 11 + i)
    }

    /// Real server `i`'s address on A (its direct path back to the client): 203.0.113.11, …
    pub fn rs_front_ip(i: usize) -> String {
        format!("203.0.113.{}", 11 + i)
    }

    /// Builds both segments with `n_servers` real servers (1..=8), each with `eth0` on B,
    /// `eth1` on A, the VIP on lo and an HTTP server; checks the client reaches each real
    /// server's A address.
    pub fn new(n_servers: usize) -> TwoArmed {
        assert!((1..=8).contains(&n_servers));
        let switch = Switch::new();
        switch.add_bridge("front");
        switch.add_bridge("back");
        let client = Netns::new("client");
        let director_ns = Netns::new("director");
        switch.plug("front", &client, "eth0");
        switch.plug("front", &director_ns, Self::DIRECTOR_A_IF);
        switch.plug("back", &director_ns, Self::DIRECTOR_B_IF);
        prepare_director_port(&director_ns, Self::DIRECTOR_A_IF);
        prepare_director_port(&director_ns, Self::DIRECTOR_B_IF);
        add_addr(
            &client,
            &format!("{}/{}", Self::CLIENT_IP, Self::PREFIX_LEN),
            "eth0",
        );
        add_route_via(&client, &format!("{VIP}/32"), Self::DIRECTOR_A_IP);

        let mut rs = Vec::new();
        for i in 0..n_servers {
            let name = format!("rs{}", i + 1);
            let ns = Netns::new(&name);
            switch.plug("back", &ns, "eth0");
            switch.plug("front", &ns, "eth1");
            let ip = Self::rs_ip(i);
            add_addr(&ns, &format!("{ip}/{}", Self::PREFIX_LEN), "eth0");
            add_addr(
                &ns,
                &format!("{}/{}", Self::rs_front_ip(i), Self::PREFIX_LEN),
                "eth1",
            );
            // Route to the client: the connected 203.0.113.0/24 on eth1 (direct return path).
            configure_dr_real_server(&ns, VIP, &["eth0", "eth1"]);
            let http = HttpServer::start(&ns, &name, VPORT);
            rs.push(RealServerHost { name, ip, http, ns });
        }
        let tb = TwoArmed {
            rs,
            client,
            director_ns,
            switch,
        };
        tb.check_plumbing();
        tb
    }

    /// Asserts the client reaches every real server on its A address and that each real
    /// server's route to the client leaves through its A leg (`eth1`).
    pub fn check_plumbing(&self) {
        for (i, r) in self.rs.iter().enumerate() {
            let url = format!("http://{}/", Self::rs_front_ip(i));
            assert_served_by(&self.client, &url, &r.name);
            let route =
                r.ns.exec_ok(&["ip", "route", "get", Self::CLIENT_IP, "from", VIP]);
            assert!(
                route.contains("dev eth1"),
                "{}: reply route to the client is not via eth1: {route}",
                r.name
            );
        }
    }

    /// Starts the director with dpdk0 on A and dpdk1 on B.
    pub fn start_director(&self) -> DirectorProcess {
        DirectorProcess::start(
            &self.director_ns,
            &[Self::DIRECTOR_A_IF, Self::DIRECTOR_B_IF],
        )
    }

    /// Standard configuration: 203.0.113.2/24 and the VIP on dpdk0, 192.0.2.2/24 on dpdk1,
    /// service `VIP:80` with `scheduler`, every real server (B address) added with `-g -w 1`;
    /// waits until all real servers are REACHABLE.
    pub fn configure_service(&self, d: &DirectorProcess, scheduler: &str) {
        let vs = format!("{VIP}:{VPORT}");
        d.lbadm_ok(&[
            "addr",
            "add",
            &format!("{}/{}", Self::DIRECTOR_A_IP, Self::PREFIX_LEN),
            "dev",
            "dpdk0",
        ]);
        d.lbadm_ok(&[
            "addr",
            "add",
            &format!("{}/{}", Self::DIRECTOR_B_IP, Self::PREFIX_LEN),
            "dev",
            "dpdk1",
        ]);
        d.lbadm_ok(&["addr", "add", &format!("{VIP}/32"), "dev", "dpdk0"]);
        d.lbadm_ok(&["-A", "-t", &vs, "-s", scheduler]);
        for r in &self.rs {
            d.lbadm_ok(&["-a", "-t", &vs, "-r", &r.addr_port(), "-g", "-w", "1"]);
        }
        let ips: Vec<&str> = self.rs.iter().map(|r| r.ip.as_str()).collect();
        d.wait_neigh_reachable(&ips, NEIGH_TIMEOUT);
    }

    /// One GET of `http://VIP/` from the client.
    pub fn get_vip(&self) -> Result<String, String> {
        curl_get(&self.client, &format!("http://{VIP}/"), 3)
    }
}
