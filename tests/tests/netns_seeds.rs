//! The operators' persistence experiments from /work/shared/seeds (PPC, PCC, firewall-mark
//! persistence, netmask granularity, persistence timeout, quiescing and deleting a real server),
//! replayed end to end through the DPDK director with real clients and servers in network
//! namespaces (one-armed layout, tests/src/testbed.rs).
//!
//! Every real server answers with its name on every port the experiments use: HTTP on 80, 443
//! (plain HTTP) and 8080, a "telnet" banner on TCP 23 and a "DNS" answer on UDP 53
//! (tests/src/probe.rs). The client namespace holds several addresses and speaks from the one
//! a step names (`curl --interface`, bind), so one namespace plays several client hosts.
//!
//! rr makes the choices deterministic: with two real servers, two consecutive new scheduling
//! decisions of one service go to the two different servers. So "a new client gets the other
//! server" is asserted exactly, not statistically.
//!
//! Each test prints what it observed (client → VIP:port → server, and the `-L -n -c` listings
//! it reasoned on); the output is shown when a test fails (or with `--nocapture`).
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test netns_seeds -- --test-threads=1`.
//! Reference: /work/shared/docs/ipvs-semantics.md §1.2, §3, §5.4-5.6, §7.3-7.5.

use std::cell::RefCell;
use std::time::{Duration, Instant};
use tests::director::NEIGH_TIMEOUT;
use tests::http::HttpServer;
use tests::probe::{
    curl_get_from, parse_conns, tcp_name_from, udp_name_from, ConnRow, NameServer, L4,
};
use tests::topo::add_addr;
use tests::{require_root_and_tools, wait_until, DirectorProcess, OneArmed, VIP};

/// The client's first address (the testbed's own).
const C1: &str = OneArmed::CLIENT_IP;
/// More client addresses in the same /24, added to the client namespace when a test needs them.
const C2: &str = "198.51.100.51";
const C3: &str = "198.51.100.52";
const C4: &str = "198.51.100.53";
/// A client address in another /24 (netmask test).
const FAR: &str = "203.0.113.50";
const FAR_NET: &str = "203.0.113.0/24";

/// What the real servers run besides HTTP on 80.
#[derive(Default)]
struct Extra<'a> {
    http_ports: &'a [u16],
    tcp_name_ports: &'a [u16],
    udp_name_ports: &'a [u16],
    client_addrs: &'a [&'a str],
}

/// A one-armed testbed with two real servers (rs1, rs2), their extra responders, extra client
/// addresses, and a running director with its address and the VIP configured (no services).
/// Field order = drop order: the director stops first, then the responders, then the
/// namespaces go.
struct Bed {
    d: DirectorProcess,
    _http: Vec<HttpServer>,
    _names: Vec<NameServer>,
    tb: OneArmed,
    log: RefCell<Vec<String>>,
    t0: Instant,
}

fn bed(extra: Extra<'_>) -> Bed {
    let _ = (tests::director_bin(), tests::lbadm_bin()); // fail fast, before building anything
    let t0 = Instant::now();
    let tb = OneArmed::new(2);
    let mut http = Vec::new();
    let mut names = Vec::new();
    for r in &tb.rs {
        for &p in extra.http_ports {
            http.push(HttpServer::start(&r.ns, &r.name, p));
        }
        for &p in extra.tcp_name_ports {
            names.push(NameServer::start(&r.ns, &r.name, L4::Tcp, p));
        }
        for &p in extra.udp_name_ports {
            names.push(NameServer::start(&r.ns, &r.name, L4::Udp, p));
        }
    }
    for a in extra.client_addrs {
        add_addr(&tb.client, &format!("{a}/24"), "eth0");
    }
    let d = tb.start_director();
    d.lbadm_ok(&[
        "addr",
        "add",
        &format!("{}/{}", OneArmed::DIRECTOR_IP, OneArmed::PREFIX_LEN),
        "dev",
        "dpdk0",
    ]);
    d.lbadm_ok(&["addr", "add", &format!("{VIP}/32"), "dev", "dpdk0"]);
    let b = Bed {
        d,
        _http: http,
        _names: names,
        tb,
        log: RefCell::new(Vec::new()),
        t0,
    };
    b.note(&format!(
        "testbed up: rs1={} rs2={} VIP={VIP} client addrs {C1} {:?}",
        b.rs_ip("rs1"),
        b.rs_ip("rs2"),
        extra.client_addrs
    ));
    b
}

impl Bed {
    /// Records (and prints) one observation, with the time since the testbed started.
    fn note(&self, line: &str) {
        let l = format!("[{:6.1}s] {line}", self.t0.elapsed().as_secs_f64());
        println!("{l}");
        self.log.borrow_mut().push(l);
    }

    /// Everything observed so far (for panic messages).
    fn observed(&self) -> String {
        self.log.borrow().join("\n")
    }

    /// Fails the test with a message and the observations.
    #[track_caller]
    fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg}\n--- observed ---\n{}\n--- lbadm -L -n ---\n{}--- lbadm -L -n -c ---\n{}",
            self.observed(),
            self.lb_text(&["-L", "-n"]),
            self.lb_text(&["-L", "-n", "-c"])
        )
    }

    #[track_caller]
    fn check(&self, cond: bool, msg: &str) {
        if !cond {
            self.fail(msg);
        }
    }

    /// `lbadm ARGS` that must succeed (logged).
    #[track_caller]
    fn lb(&self, args: &[&str]) -> String {
        self.note(&format!("lbadm {}", args.join(" ")));
        let out = self.d.lbadm(args);
        if !out.status.success() {
            self.fail(&format!(
                "lbadm {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `lbadm ARGS` output (stdout + stderr), whatever the status: for messages.
    fn lb_text(&self, args: &[&str]) -> String {
        let out = self.d.lbadm(args);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `lbadm -a SERVICE -r RIP[:PORT] -g -w 1` for rs1 and then rs2 (logged, must succeed).
    #[track_caller]
    fn add_both_servers(&self, service: &[&str], port: Option<u16>) {
        for r in ["rs1", "rs2"] {
            let rip = match port {
                Some(port) => format!("{}:{port}", self.rs_ip(r)),
                None => self.rs_ip(r).to_string(),
            };
            let mut args = vec!["-a"];
            args.extend_from_slice(service);
            args.extend(["-r", &rip, "-g", "-w", "1"]);
            self.lb(&args);
        }
    }

    /// Waits until the director has resolved both real servers.
    fn wait_servers(&self) {
        let ips: Vec<&str> = self.tb.rs.iter().map(|r| r.ip.as_str()).collect();
        self.d.wait_neigh_reachable(&ips, NEIGH_TIMEOUT);
    }

    fn rs_ip(&self, name: &str) -> &str {
        self.tb
            .rs
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.ip.as_str())
            .unwrap_or_else(|| panic!("no real server named {name:?}"))
    }

    /// The other real server's name.
    fn other(&self, name: &str) -> String {
        self.tb
            .rs
            .iter()
            .find(|r| r.name != name)
            .map(|r| r.name.clone())
            .expect("two real servers")
    }

    /// `http://VIP:port/` from client address `src`: the answering server, or the error.
    fn try_web(&self, src: &str, port: u16) -> Result<String, String> {
        let r = curl_get_from(
            &self.tb.client,
            Some(src),
            &format!("http://{VIP}:{port}/"),
            3,
        );
        match &r {
            Ok(s) => self.note(&format!("{src} -> {VIP}:{port} tcp/http -> {s}")),
            Err(e) => self.note(&format!("{src} -> {VIP}:{port} tcp/http -> FAILED: {e}")),
        }
        r
    }

    /// [`Bed::try_web`] that must succeed.
    #[track_caller]
    fn web(&self, src: &str, port: u16) -> String {
        match self.try_web(src, port) {
            Ok(s) => self.known(s),
            Err(e) => self.fail(&format!("request through the VIP failed: {e}")),
        }
    }

    /// The "telnet" banner of TCP `port` from `src`: the answering server.
    #[track_caller]
    fn telnet(&self, src: &str, port: u16) -> String {
        match tcp_name_from(&self.tb.client, Some(src), VIP, port, 3) {
            Ok(s) => {
                self.note(&format!("{src} -> {VIP}:{port} tcp/telnet -> {s}"));
                self.known(s)
            }
            Err(e) => {
                self.note(&format!("{src} -> {VIP}:{port} tcp/telnet -> FAILED: {e}"));
                self.fail(&format!("telnet through the VIP failed: {e}"))
            }
        }
    }

    /// One UDP query to `port` from `src`: the answering server.
    #[track_caller]
    fn dns(&self, src: &str, port: u16) -> String {
        match udp_name_from(&self.tb.client, Some(src), VIP, port, 3) {
            Ok(s) => {
                self.note(&format!("{src} -> {VIP}:{port} udp/dns -> {s}"));
                self.known(s)
            }
            Err(e) => {
                self.note(&format!("{src} -> {VIP}:{port} udp/dns -> FAILED: {e}"));
                self.fail(&format!("UDP query through the VIP failed: {e}"))
            }
        }
    }

    #[track_caller]
    fn known(&self, s: String) -> String {
        if !self.tb.rs.iter().any(|r| r.name == s) {
            self.fail(&format!("answer {s:?} is not a real server's name"));
        }
        s
    }

    /// `lbadm -L -n -c`, printed and parsed.
    fn conns(&self) -> Vec<ConnRow> {
        let text = self.lb_text(&["-L", "-n", "-c"]);
        self.note(&format!("lbadm -L -n -c\n{}", text.trim_end()));
        parse_conns(&text)
    }

    /// `lbadm -L -n -c`, parsed, not printed (for polling).
    fn conns_quiet(&self) -> Vec<ConnRow> {
        parse_conns(&self.lb_text(&["-L", "-n", "-c"]))
    }

    /// `lbadm -L -n`, printed.
    fn listing(&self) -> String {
        let text = self.d.lbadm_ok(&["-L", "-n"]);
        self.note(&format!("lbadm -L -n\n{}", text.trim_end()));
        text
    }
}

/// The templates of a listing whose client (masked) address is `caddr`.
fn templates_of<'a>(rows: &'a [ConnRow], caddr: &str) -> Vec<&'a ConnRow> {
    rows.iter()
        .filter(|r| r.is_template() && r.source_addr() == caddr)
        .collect()
}

/// Non-template entries of client address `caddr`.
fn entries_of<'a>(rows: &'a [ConnRow], caddr: &str) -> Vec<&'a ConnRow> {
    rows.iter()
        .filter(|r| !r.is_template() && r.source_addr() == caddr)
        .collect()
}

/// The service line of `-L -n` (or `--persistent-conn`) output for `name` (`TCP  VIP:80`,
/// `FWM  10`), and its destination lines, whitespace-split.
fn service_block(text: &str, proto: &str, name: &str) -> Option<(String, Vec<Vec<String>>)> {
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 2 && f[0] == proto && f[1] == name {
            let mut dests = Vec::new();
            while let Some(n) = lines.peek() {
                let t = n.trim_start();
                if let Some(rest) = t.strip_prefix("->") {
                    let g: Vec<String> = rest.split_whitespace().map(String::from).collect();
                    if g.first().map(|s| s.as_str()) != Some("RemoteAddress:Port") {
                        dests.push(g);
                    }
                    lines.next();
                } else {
                    break;
                }
            }
            return Some((l.trim().to_string(), dests));
        }
    }
    None
}

/// All elements equal.
fn same(v: &[String]) -> bool {
    v.windows(2).all(|w| w[0] == w[1])
}

// ---------------------------------------------------------------------------------------------
// PPC: persistent port connections (seeds 000, 001, 003)
// ---------------------------------------------------------------------------------------------

/// Seeds 000/001/003, PPC. rr alone alternates ("每刷新一次就会变换一次WEB服务"); `-E … -p`
/// (default 360, `-L -n` shows `persistent 360`) makes every refresh stick to one server; a
/// second persistent service on telnet (23) has its own templates and its own rr, so the same
/// client can be on one server for web and on the other for telnet ("不同服务定的主机可能会不
/// 相同，但是同一服务定向的主机肯定相同"); `-L -n -c` shows two templates for the client
/// (vport 80 and 23) and `--persistent-conn` counts them.
#[test]
fn seed_ppc_web_and_telnet_stick_per_service() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let b = bed(Extra {
        tcp_name_ports: &[23],
        client_addrs: &[C2, C3, C4],
        ..Default::default()
    });
    let vs80 = format!("{VIP}:80");
    let vs23 = format!("{VIP}:23");
    b.lb(&["-A", "-t", &vs80, "-s", "rr"]);
    b.add_both_servers(&["-t", &vs80], Some(80));
    b.wait_servers();

    // 1. rr without persistence: every refresh changes the server.
    let plain: Vec<String> = (0..4).map(|_| b.web(C1, 80)).collect();
    b.check(
        plain.windows(2).all(|w| w[0] != w[1]),
        &format!("rr without -p did not alternate: {plain:?}"),
    );

    // 2. -E ... -p: persistence with the default timeout.
    b.lb(&["-E", "-t", &vs80, "-s", "rr", "-p"]);
    let list = b.listing();
    let (line, _) = service_block(&list, "TCP", &vs80).unwrap_or_else(|| b.fail("no VIP:80"));
    b.check(
        line.ends_with("rr persistent 360"),
        &format!("-p without a value must be 360 s: {line:?}"),
    );
    let web: Vec<String> = (0..6).map(|_| b.web(C1, 80)).collect();
    b.check(
        same(&web),
        &format!("PPC: 6 refreshes not on one server: {web:?}"),
    );
    let s80 = web[0].clone();

    // 3. telnet as a second persistent service.
    b.lb(&["-A", "-t", &vs23, "-s", "rr", "-p"]);
    b.add_both_servers(&["-t", &vs23], Some(23));
    b.wait_servers();
    // Other clients log in to telnet until one of them got s80: telnet's rr then hands the
    // next new client, C1, the other server (at most two such clients with two servers).
    let mut burned = Vec::new();
    for c in [C3, C4] {
        let s = b.telnet(c, 23);
        burned.push(format!("{c}={s}"));
        if s == s80 {
            break;
        }
    }
    b.check(
        burned.last().map(|x| x.ends_with(&s80)) == Some(true),
        &format!("telnet rr never chose {s80} for two new clients: {burned:?}"),
    );
    let mut tel = Vec::new();
    let mut web2 = Vec::new();
    for _ in 0..6 {
        tel.push(b.telnet(C1, 23));
        web2.push(b.web(C1, 80));
    }
    b.check(
        same(&tel),
        &format!("PPC: 6 telnet logins not on one server: {tel:?}"),
    );
    b.check(
        web2.iter().all(|s| *s == s80),
        &format!("web of {C1} moved away from {s80} while using telnet: {web2:?}"),
    );
    b.check(
        tel[0] != s80,
        &format!(
            "telnet of {C1} should have its own rr choice ({}), got {} (web is on {s80})",
            b.other(&s80),
            tel[0]
        ),
    );

    // 4. The persistence table: two templates for C1, one per service port.
    let rows = b.conns();
    let t = templates_of(&rows, C1);
    b.check(
        t.len() == 2,
        &format!("{C1} should have 2 templates: {t:?}"),
    );
    let t80 = t.iter().find(|r| r.virt == vs80);
    let t23 = t.iter().find(|r| r.virt == vs23);
    b.check(
        t80.map(|r| r.proto == "TCP" && r.dest == format!("{}:80", b.rs_ip(&s80))) == Some(true),
        &format!("template of {C1} for {vs80} should point to {s80}: {t80:?}"),
    );
    b.check(
        t23.map(|r| r.proto == "TCP" && r.dest == format!("{}:23", b.rs_ip(&tel[0]))) == Some(true),
        &format!(
            "template of {C1} for {vs23} should point to {}: {t23:?}",
            tel[0]
        ),
    );
    b.check(
        t.iter()
            .all(|r| r.expire_secs > 300 && r.expire_secs <= 360),
        &format!("templates should expire within 360 s (restarted by each new connection): {t:?}"),
    );
    let n_conns80 = entries_of(&rows, C1)
        .iter()
        .filter(|r| r.virt == vs80 && r.dest_addr() == b.rs_ip(&s80))
        .count();
    b.check(
        n_conns80 >= 12,
        &format!("expected the 12 persistent web connections of {C1} in -L -n -c, saw {n_conns80}"),
    );

    // 5. --persistent-conn: the PersistConn column counts templates per real server.
    let pc = b.d.lbadm_ok(&["-L", "-n", "--persistent-conn"]);
    b.note(&format!("lbadm -L -n --persistent-conn\n{}", pc.trim_end()));
    let (_, dests) = service_block(&pc, "TCP", &vs80)
        .unwrap_or_else(|| b.fail("no VIP:80 in --persistent-conn"));
    let persist_of = |name: &str| -> u64 {
        let a = format!("{}:80", b.rs_ip(name));
        dests
            .iter()
            .find(|d| d[0] == a)
            .and_then(|d| d.get(2))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| b.fail(&format!("no PersistConn for {a}: {dests:?}")))
    };
    // Templates on VIP:80: C1 → s80; no other client used web after -p.
    b.check(
        persist_of(&s80) == 1 && persist_of(&b.other(&s80)) == 0,
        &format!("PersistConn of VIP:80 should be 1 on {s80} and 0 on the other: {dests:?}"),
    );

    // 6. Another client: its own template, rr's next choice.
    let w2: Vec<String> = (0..3).map(|_| b.web(C2, 80)).collect();
    b.check(
        same(&w2) && w2[0] != s80,
        &format!("new client {C2} should stick to the other server than {s80}: {w2:?}"),
    );
}

// ---------------------------------------------------------------------------------------------
// PCC: port 0 (seeds 000, 001, 002, 003)
// ---------------------------------------------------------------------------------------------

/// Seeds 001/003, PCC: `-A -t VIP:0 -s rr -p 600`, servers added without a port (`-r RIP`,
/// weights 2 and 1 as in seed 001). Web (80), https (443) and telnet (23) of one client all go
/// to one server; the next client gets the other one (rr, weights do not matter to rr); a port
/// the real servers do not serve is still forwarded and the real server refuses it ("如果它请求
/// 的端口在应用服务器上没有,那就报错了").
#[test]
fn seed_pcc_port_zero_one_server_for_all_ports() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let b = bed(Extra {
        http_ports: &[443],
        tcp_name_ports: &[23],
        client_addrs: &[C2],
        ..Default::default()
    });
    let vs0 = format!("{VIP}:0");
    b.lb(&["-A", "-t", &vs0, "-s", "rr", "-p", "600"]);
    b.lb(&["-a", "-t", &vs0, "-r", b.rs_ip("rs1"), "-g", "-w", "2"]);
    b.lb(&["-a", "-t", &vs0, "-r", b.rs_ip("rs2"), "-g", "-w", "1"]);
    b.wait_servers();

    let list = b.listing();
    let (line, dests) = service_block(&list, "TCP", &vs0).unwrap_or_else(|| b.fail("no VIP:0"));
    b.check(
        line.ends_with("rr persistent 600"),
        &format!("service line: {line:?}"),
    );
    for r in ["rs1", "rs2"] {
        let a = format!("{}:0", b.rs_ip(r));
        b.check(
            dests.iter().any(|d| d[0] == a && d[1] == "Route"),
            &format!("{a} Route missing: {dests:?}"),
        );
    }

    // Client 1: web, https, telnet, web, https, telnet.
    let mut c1 = Vec::new();
    for _ in 0..2 {
        c1.push(b.web(C1, 80));
        c1.push(b.web(C1, 443));
        c1.push(b.telnet(C1, 23));
    }
    b.check(
        same(&c1),
        &format!("PCC: ports 80/443/23 of {C1} on different servers: {c1:?}"),
    );
    let s1 = c1[0].clone();

    // Client 2, starting with telnet: the other server, for every port.
    let mut c2 = vec![b.telnet(C2, 23), b.web(C2, 443), b.web(C2, 80)];
    c2.push(b.telnet(C2, 23));
    b.check(
        same(&c2),
        &format!("PCC: ports of {C2} on different servers: {c2:?}"),
    );
    b.check(
        c2[0] != s1,
        &format!("rr: second client {C2} should get the other server than {s1}, got {c2:?}"),
    );

    // A port nobody listens on: forwarded to C1's server, which refuses it.
    let t = Instant::now();
    let r = b.try_web(C1, 9999);
    b.check(r.is_err(), &format!("port 9999 answered: {r:?}"));
    b.check(
        t.elapsed() < Duration::from_millis(2500),
        &format!(
            "port 9999 should be refused at once, took {:?}",
            t.elapsed()
        ),
    );

    let rows = b.conns();
    let t1 = templates_of(&rows, C1);
    let t2 = templates_of(&rows, C2);
    let s1_ip = b.rs_ip(&s1).to_string();
    let s2_ip = b.rs_ip(&c2[0]).to_string();
    b.check(
        t1.len() == 1
            && t1[0].proto == "TCP"
            && t1[0].virt == vs0
            && t1[0].dest == format!("{s1_ip}:0")
            && t1[0].expire_secs > 500
            && t1[0].expire_secs <= 600,
        &format!("{C1} should have one template {C1}:0 {vs0} {s1_ip}:0 (≤ 600 s): {t1:?}"),
    );
    b.check(
        t2.len() == 1 && t2[0].dest == format!("{s2_ip}:0"),
        &format!("{C2} should have one template to {s2_ip}:0: {t2:?}"),
    );
    // Connection entries keep the packet's port (§3.2 step 4: port-0 services keep the
    // original dport), so 443 → RIP:443, 9999 → RIP:9999.
    let e1 = entries_of(&rows, C1);
    for port in [80, 443, 23, 9999] {
        b.check(
            e1.iter()
                .any(|r| r.virt == format!("{VIP}:{port}") && r.dest == format!("{s1_ip}:{port}")),
            &format!("no entry {C1} -> {VIP}:{port} -> {s1_ip}:{port}: {e1:?}"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Firewall marks (seeds 000, 001, 002, 003)
// ---------------------------------------------------------------------------------------------

/// Seed 002, persistent firewall mark: `iptables -t mangle -A PREROUTING -d VIP -p tcp --dport
/// 80|443 -j MARK --set-mark 10` (one with `-i`, as seed 003 writes it) and `-A -f 10 -s rr -p`:
/// http and https of one client share a server; UDP 53 marked 10 too shares it as well (the
/// fwmark template has protocol IP, §3.1); a port that is not marked and has no service (8080,
/// where the servers do listen) is refused by the director; `-L -n -c` shows the `IP` template
/// with virtual `0.0.0.10:0`.
#[test]
fn seed_fwm_mark_groups_http_https_and_udp() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let b = bed(Extra {
        http_ports: &[443, 8080],
        udp_name_ports: &[53],
        client_addrs: &[C2],
        ..Default::default()
    });
    b.lb(&[
        "iptables",
        "-t",
        "mangle",
        "-A",
        "PREROUTING",
        "-d",
        VIP,
        "-i",
        "dpdk0",
        "-p",
        "tcp",
        "--dport",
        "80",
        "-j",
        "MARK",
        "--set-mark",
        "10",
    ]);
    b.lb(&[
        "iptables",
        "-t",
        "mangle",
        "-A",
        "PREROUTING",
        "-d",
        VIP,
        "-p",
        "tcp",
        "--dport",
        "443",
        "-j",
        "MARK",
        "--set-mark",
        "10",
    ]);
    b.lb(&[
        "mark",
        "add",
        "-d",
        VIP,
        "-p",
        "udp",
        "--dport",
        "53",
        "--set-mark",
        "10",
    ]);
    let marks = b.d.lbadm_ok(&["mark", "show"]);
    b.note(&format!("lbadm mark show\n{}", marks.trim_end()));
    for p in ["80", "443", "53"] {
        b.check(
            marks.lines().any(|l| l.contains(p) && l.contains("10")),
            &format!("mark show lacks the --dport {p} rule: {marks}"),
        );
    }
    b.lb(&["-A", "-f", "10", "-s", "rr", "-p"]);
    b.add_both_servers(&["-f", "10"], None);
    b.wait_servers();
    let list = b.listing();
    let (line, dests) = service_block(&list, "FWM", "10").unwrap_or_else(|| b.fail("no FWM 10"));
    b.check(
        line.ends_with("rr persistent 360"),
        &format!("service line {line:?}"),
    );
    b.check(
        dests
            .iter()
            .any(|d| d[0] == format!("{}:0", b.rs_ip("rs1"))),
        &format!("FWM servers are listed with port 0: {dests:?}"),
    );

    // One client: http, https, and a UDP query, all on one server.
    let mut c1 = vec![b.web(C1, 80), b.web(C1, 443), b.dns(C1, 53), b.web(C1, 443)];
    c1.push(b.web(C1, 80));
    c1.push(b.dns(C1, 53));
    b.check(
        same(&c1),
        &format!("FWM 10: {C1} on different servers: {c1:?}"),
    );
    let s1 = c1[0].clone();

    // Second client, starting with UDP: the other server for all three.
    let c2 = vec![b.dns(C2, 53), b.web(C2, 443), b.web(C2, 80)];
    b.check(
        same(&c2) && c2[0] != s1,
        &format!("FWM 10: second client {C2} should stick to the other server than {s1}: {c2:?}"),
    );

    // 8080: not marked, no service → refused by the director (RST from the VIP), although both
    // real servers listen there.
    let direct = curl_get_from(
        &b.tb.client,
        None,
        &format!("http://{}:8080/", b.rs_ip("rs1")),
        3,
    );
    b.check(
        direct.is_ok(),
        &format!("rs1 does not serve 8080 itself: {direct:?}"),
    );
    let t = Instant::now();
    let r = b.try_web(C1, 8080);
    let took = t.elapsed();
    b.check(r.is_err(), &format!("unmarked port 8080 was served: {r:?}"));
    let e = r.unwrap_err();
    b.check(
        e.contains("exit status: 7") && took < Duration::from_millis(2500),
        &format!("8080 should be refused at once (curl exit 7), got {e:?} after {took:?}"),
    );

    // The persistence table: one IP template per client, virtual 0.0.0.10:0.
    let rows = b.conns();
    let s1_ip = b.rs_ip(&s1).to_string();
    for (c, ip) in [(C1, s1_ip.clone()), (C2, b.rs_ip(&c2[0]).to_string())] {
        let t = templates_of(&rows, c);
        b.check(
            t.len() == 1
                && t[0].proto == "IP"
                && t[0].virt == "0.0.0.10:0"
                && t[0].dest == format!("{ip}:0")
                && t[0].expire_secs > 300
                && t[0].expire_secs <= 360,
            &format!("{c} should have one template `IP {c}:0 0.0.0.10:0 {ip}:0`: {t:?}"),
        );
    }
    b.check(
        !rows.iter().any(|r| r.virt.ends_with(":8080")),
        &format!("a refused 8080 connection must leave no entry: {rows:?}"),
    );

    // The rules counted the packets they marked (the first packet of each connection).
    let marks = b.d.lbadm_ok(&["mark", "show"]);
    b.note(&format!("lbadm mark show\n{}", marks.trim_end()));
    for p in ["80", "443", "53"] {
        let pkts = marks
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() >= 8 && f[4] == p)
            .and_then(|f| f[6].parse::<u64>().ok());
        b.check(
            matches!(pkts, Some(n) if n > 0),
            &format!("rule --dport {p} should have counted packets: {pkts:?}"),
        );
    }

    // Entries keep the packet's destination port (§3.2 step 4: fwmark services keep the
    // original dport): UDP 53 → RIP:53, TCP 443 → RIP:443.
    let e1 = entries_of(&rows, C1);
    b.check(
        e1.iter().any(|r| {
            r.proto == "UDP" && r.virt == format!("{VIP}:53") && r.dest == format!("{s1_ip}:53")
        }) && e1.iter().any(|r| {
            r.proto == "TCP" && r.virt == format!("{VIP}:443") && r.dest == format!("{s1_ip}:443")
        }),
        &format!(
            "expected entries {C1} -> {VIP}:53 -> {s1_ip}:53 (UDP) and {VIP}:443 -> {s1_ip}:443 \
             (TCP) in -L -n -c: {e1:?}"
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// Netmask granularity (seed 004, "persistence granularity")
// ---------------------------------------------------------------------------------------------

/// Seed 004: clients behind proxies come from several addresses of one class C; `-M
/// 255.255.255.0` makes all of them one persistent client (`-L -n` shows `mask
/// 255.255.255.0`, the template's client is `198.51.100.0:0`), while a client of another /24
/// is scheduled on its own.
#[test]
fn seed_netmask_24_one_server_per_class_c() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let b = bed(Extra {
        client_addrs: &[C2, C3, FAR],
        ..Default::default()
    });
    // The real servers answer the far client on the shared segment.
    for r in &b.tb.rs {
        r.ns.exec_ok(&["ip", "route", "add", FAR_NET, "dev", "eth0"]);
    }
    let vs = format!("{VIP}:80");
    b.lb(&[
        "-A",
        "-t",
        &vs,
        "-s",
        "rr",
        "-p",
        "360",
        "-M",
        "255.255.255.0",
    ]);
    b.add_both_servers(&["-t", &vs], Some(80));
    b.wait_servers();
    let list = b.listing();
    let (line, _) = service_block(&list, "TCP", &vs).unwrap_or_else(|| b.fail("no VIP:80"));
    b.check(
        line.ends_with("rr persistent 360 mask 255.255.255.0"),
        &format!("service line {line:?}"),
    );

    let mut near = Vec::new();
    for _ in 0..2 {
        for c in [C1, C2, C3] {
            near.push(b.web(c, 80));
        }
    }
    b.check(
        same(&near),
        &format!("/24 clients not on one server: {near:?}"),
    );
    let far: Vec<String> = (0..3).map(|_| b.web(FAR, 80)).collect();
    b.check(
        same(&far) && far[0] != near[0],
        &format!(
            "client {FAR} of another /24 should stick to the other server than {}: {far:?}",
            near[0]
        ),
    );

    let rows = b.conns();
    let tn = templates_of(&rows, "198.51.100.0");
    let tf = templates_of(&rows, "203.0.113.0");
    b.check(
        tn.len() == 1 && tn[0].dest == format!("{}:80", b.rs_ip(&near[0])),
        &format!(
            "one template 198.51.100.0:0 -> {} expected: {tn:?}",
            near[0]
        ),
    );
    b.check(
        tf.len() == 1 && tf[0].dest == format!("{}:80", b.rs_ip(&far[0])),
        &format!("one template 203.0.113.0:0 -> {} expected: {tf:?}", far[0]),
    );
    b.check(
        rows.iter().filter(|r| r.is_template()).count() == 2,
        &format!("exactly two templates expected: {rows:?}"),
    );
    // The entries keep the real client addresses.
    for c in [C1, C2, C3, FAR] {
        b.check(
            !entries_of(&rows, c).is_empty(),
            &format!("no connection entry of {c}: {rows:?}"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Persistence timeout (seeds: "在超时时长内")
// ---------------------------------------------------------------------------------------------

/// Waits (≤ `limit`) until `cond` holds on the `-L -n -c` rows; returns the time it took.
fn wait_rows(b: &Bed, limit: Duration, what: &str, cond: impl Fn(&[ConnRow]) -> bool) -> Duration {
    let t = Instant::now();
    let ok = wait_until(limit, || {
        let ok = cond(&b.conns_quiet());
        if !ok {
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    });
    let took = t.elapsed();
    if !ok {
        b.fail(&format!("not within {limit:?}: {what}"));
    }
    b.note(&format!("{what}: after {:.1}s", took.as_secs_f64()));
    took
}

/// `-p 3` with tcpfin 1 s (`--set 900 1 300`): the client's connection closes and its FIN_WAIT
/// entry is gone after about a second, so when the 3-s template timer fires it controls nothing
/// and the template goes; the next request is a new scheduling decision (rr → the other
/// server).
#[test]
fn seed_short_persistence_expires_and_reschedules() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let b = bed(Extra::default());
    b.lb(&["--set", "900", "1", "300"]);
    let to = b.d.lbadm_ok(&["-L", "--timeout"]);
    b.note(&format!("lbadm -L --timeout: {}", to.trim_end()));
    b.check(
        to.contains("Timeout (tcp tcpfin udp): 900 1 300"),
        &format!("--set not applied: {to}"),
    );
    let vs = format!("{VIP}:80");
    b.lb(&["-A", "-t", &vs, "-s", "rr", "-p", "3"]);
    b.add_both_servers(&["-t", &vs], Some(80));
    b.wait_servers();

    let s = b.web(C1, 80);
    let again = b.web(C1, 80);
    b.check(
        again == s,
        &format!("within 3 s the client must stay on {s}, got {again}"),
    );
    let rows = b.conns();
    let t = templates_of(&rows, C1);
    b.check(
        t.len() == 1 && t[0].expire_secs <= 3 && t[0].dest == format!("{}:80", b.rs_ip(&s)),
        &format!("one template (≤ 3 s) to {s} expected: {t:?}"),
    );

    wait_rows(
        &b,
        Duration::from_secs(15),
        "connection entries gone",
        |r| entries_of(r, C1).is_empty(),
    );
    wait_rows(&b, Duration::from_secs(15), "template gone", |r| {
        templates_of(r, C1).is_empty()
    });
    b.conns();
    let next = b.web(C1, 80);
    b.check(
        next != s,
        &format!(
            "after the template expired the client must be rescheduled (rr: {}), got {next}",
            b.other(&s)
        ),
    );
    let rows = b.conns();
    let t = templates_of(&rows, C1);
    b.check(
        t.len() == 1 && t[0].dest == format!("{}:80", b.rs_ip(&next)),
        &format!("new template to {next} expected: {t:?}"),
    );
}

/// `-p 3` with tcpfin 5 s (`--set 900 5 300`): when the template's 3-s timer fires the
/// client's connection is still in FIN_WAIT, so the template is kept and re-armed for 60 s,
/// and its timeout becomes 60 s (ipvs-semantics.md §3.5). What a user sees: 6 s after the first
/// request, a `-p 3` client still sticks to its server, that new connection restarts the
/// template to 60 s (not 3), and only about a minute after the last connection is the client
/// rescheduled. (About 70 s: the 60 s are the behaviour under test.)
#[test]
fn seed_short_persistence_template_kept_60s_while_controlling() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let b = bed(Extra::default());
    b.lb(&["--set", "900", "5", "300"]);
    let vs = format!("{VIP}:80");
    b.lb(&["-A", "-t", &vs, "-s", "rr", "-p", "3"]);
    b.add_both_servers(&["-t", &vs], Some(80));
    b.wait_servers();

    let s = b.web(C1, 80);
    let rows = b.conns();
    b.check(
        templates_of(&rows, C1).len() == 1 && entries_of(&rows, C1).len() == 1,
        &format!("one template and one entry for {C1} expected: {rows:?}"),
    );
    wait_rows(
        &b,
        Duration::from_secs(20),
        "connection entry gone (FIN_WAIT 5 s)",
        |r| entries_of(r, C1).is_empty(),
    );
    let rows = b.conns();
    let t = templates_of(&rows, C1);
    b.check(
        t.len() == 1 && t[0].expire_secs > 30 && t[0].expire_secs <= 60,
        &format!(
            "the template fired at 3 s while still controlling the FIN_WAIT entry: it must have \
             been re-armed for 60 s (§3.5), so it is still listed with 30..60 s left: {t:?}"
        ),
    );

    // More than 3 s after the first request the client still sticks, and the new connection
    // restarts the template to its (now) 60-s timeout.
    let again = b.web(C1, 80);
    b.check(
        again == s,
        &format!("the re-armed template still holds the client on {s}, got {again}"),
    );
    let rows = b.conns();
    let t = templates_of(&rows, C1);
    b.check(
        t.len() == 1 && t[0].expire_secs >= 55 && t[0].expire_secs <= 60,
        &format!("a new connection restarts the re-armed template to 60 s (§3.5), not 3: {t:?}"),
    );
    let t_last = Instant::now();
    wait_rows(
        &b,
        Duration::from_secs(20),
        "connection entry gone again",
        |r| entries_of(r, C1).is_empty(),
    );
    wait_rows(&b, Duration::from_secs(90), "template gone", |r| {
        templates_of(r, C1).is_empty()
    });
    let lived = t_last.elapsed();
    b.check(
        lived > Duration::from_secs(50),
        &format!("template lived only {lived:?} after the last connection; expected 60 s"),
    );
    let next = b.web(C1, 80);
    b.check(
        next != s,
        &format!(
            "after the template expired the client must be rescheduled to {}, got {next}",
            b.other(&s)
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// Quiescing and deleting a real server (seed 003 health-check script; §3.6)
// ---------------------------------------------------------------------------------------------

/// §3.6 with the seeds' health-check operations: `-e … -w 0` on the persistent client's server
/// keeps that client there (expire_quiescent_template=0) while new clients go to the other;
/// `lbadm sysctl expire_quiescent_template=1` moves it at its next connection (the old template
/// is invalidated, port 65535); `-d` of the client's server reschedules it to the remaining one.
#[test]
fn seed_weight0_and_delete_with_persistence() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let b = bed(Extra {
        client_addrs: &[C2, C3],
        ..Default::default()
    });
    let vs = format!("{VIP}:80");
    b.lb(&["-A", "-t", &vs, "-s", "rr", "-p"]);
    b.add_both_servers(&["-t", &vs], Some(80));
    b.wait_servers();

    let x = b.web(C1, 80);
    let y = b.other(&x);
    let x_rs = format!("{}:80", b.rs_ip(&x));
    let y_rs = format!("{}:80", b.rs_ip(&y));

    // Quiesce X.
    b.lb(&["-e", "-t", &vs, "-r", &x_rs, "-g", "-w", "0"]);
    let list = b.listing();
    let (_, dests) = service_block(&list, "TCP", &vs).unwrap_or_else(|| b.fail("no VIP:80"));
    b.check(
        dests.iter().any(|d| d[0] == x_rs && d[2] == "0"),
        &format!("{x_rs} should show weight 0: {dests:?}"),
    );
    let c1: Vec<String> = (0..3).map(|_| b.web(C1, 80)).collect();
    b.check(
        c1.iter().all(|s| *s == x),
        &format!("expire_quiescent_template=0: persistent {C1} must stay on quiesced {x}: {c1:?}"),
    );
    let c2: Vec<String> = (0..2).map(|_| b.web(C2, 80)).collect();
    b.check(
        c2.iter().all(|s| *s == y),
        &format!("new client {C2} must not be scheduled to weight-0 {x}: {c2:?}"),
    );

    // expire_quiescent_template=1: C1 moves at its next connection.
    b.lb(&["sysctl", "expire_quiescent_template=1"]);
    let c1: Vec<String> = (0..3).map(|_| b.web(C1, 80)).collect();
    b.check(
        c1.iter().all(|s| *s == y),
        &format!("expire_quiescent_template=1: {C1} must be rescheduled to {y}: {c1:?}"),
    );
    let rows = b.conns();
    let t = templates_of(&rows, C1);
    b.check(
        t.iter().any(|r| r.virt == vs && r.dest == y_rs),
        &format!("{C1}'s valid template should point to {y_rs}: {t:?}"),
    );
    b.check(
        !t.iter().any(|r| r.virt == vs && r.dest == x_rs),
        &format!("{C1}'s template to quiesced {x_rs} must no longer match {vs}: {t:?}"),
    );

    // Back to normal, then delete C1's server (now Y): C1 and C2 go to X.
    b.lb(&["sysctl", "expire_quiescent_template=0"]);
    b.lb(&["-e", "-t", &vs, "-r", &x_rs, "-g", "-w", "1"]);
    let before = b.web(C1, 80);
    b.check(
        before == y,
        &format!("{C1} should still be on {y}, got {before}"),
    );
    b.lb(&["-d", "-t", &vs, "-r", &y_rs]);
    let list = b.listing();
    let (_, dests) = service_block(&list, "TCP", &vs).unwrap_or_else(|| b.fail("no VIP:80"));
    b.check(
        dests.len() == 1 && dests[0][0] == x_rs,
        &format!("only {x_rs} should be left: {dests:?}"),
    );
    let after: Vec<String> = [C1, C2, C1, C3].iter().map(|c| b.web(c, 80)).collect();
    b.check(
        after.iter().all(|s| *s == x),
        &format!("after -d {y}, every client must be rescheduled to {x}: {after:?}"),
    );
    let rows = b.conns();
    let t = templates_of(&rows, C1);
    b.check(
        t.iter().any(|r| r.virt == vs && r.dest == x_rs),
        &format!("{C1} should have a template to {x_rs}: {t:?}"),
    );

    // The templates invalidated on the way (C1's to quiesced X, then C1's and C2's to deleted
    // Y) are re-keyed so they never match again: vport and dport 65535 (§3.4), shown as
    // `VIP:65535  RIP:65535` until their timers expire (§7.5).
    let dead = |c: &str, ip: &str| {
        templates_of(&rows, c)
            .iter()
            .any(|r| r.virt == format!("{VIP}:65535") && r.dest == format!("{ip}:65535"))
    };
    b.check(
        dead(C1, b.rs_ip(&x)) && dead(C1, b.rs_ip(&y)) && dead(C2, b.rs_ip(&y)),
        &format!(
            "invalidated templates should be listed as `{VIP}:65535 RIP:65535` (C1→{x}, C1→{y}, \
             C2→{y}): {:?}",
            rows.iter().filter(|r| r.is_template()).collect::<Vec<_>>()
        ),
    );
}
