//! Two workers end to end: the director with EAL `-l 0-1` (two workers, the main lcore's
//! included) on one net_af_packet port with `qpairs=2`, real clients and servers in network
//! namespaces (one-armed layout, tests/src/testbed.rs).
//!
//! af_packet has no RSS: with `qpairs=2` the kernel fans packets out over the two queues by
//! flow hash (the 4-tuple), so one client's connections arrive at both workers and about half
//! of its packets must be handed to the worker that owns the client (Toeplitz hash of the
//! source address masked with the widest persistence netmask). The tests check, through the
//! director, that
//! * PCC (`-p` on port 0) holds across workers: one client's 200 connections to 50 ports all
//!   reach one server, and hand-offs happened (`handoff_out > 0`: proof that the port really
//!   spread that client's flows over both queues);
//! * `-M 255.255.255.0`: 20 clients of one /24 share one server (and, as a control, the same
//!   clients under a /32 persistence service are spread over both servers);
//! * wlc on connection counts merged over the workers: 6,000 long-lived connections to weights
//!   1:2:3 land within 5% of each server's share (the distribution is printed); and, since an
//!   even spread would balance on per-worker counts too, connections scheduled by one worker
//!   avoid a server loaded by the other worker's clients;
//! * 5,000 configuration edits at 1,000 per second during traffic (banner exchanges from 8
//!   clients under persistence, and a rate-limited upload) lose or misroute nothing and leave
//!   the director's resident memory flat (printed).
//!
//! Every director here runs with `--idle-sleep-us 20`: the machines running these tests have
//! two cores, and two busy-polling workers would starve the clients and servers of CPU.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test netns_workers -- --test-threads=1 --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use control::marks::MarkRule;
use control::proto::Op;
use tests::director::NEIGH_TIMEOUT;
use tests::many::{counter, link_counters, tcp_many, Ctl, HoldClient, HoldServer, PortsServer};
use tests::probe::parse_conns;
use tests::topo::add_addr;
use tests::util::{sha256_file, write_random_file};
use tests::{
    require_root_and_tools, wait_until, DirectorOptions, DirectorProcess, EalLayout, OneArmed,
    TempDir, UploadReply, VIP,
};

/// Idle sleep of the workers (see the module documentation).
const IDLE_SLEEP_US: &str = "20";

/// Client address `i` (0-based) of the client namespace: 198.51.100.50, .51, … (.50 is the
/// testbed's own; the others are added by [`Bed::new`]).
fn client_ip(i: usize) -> String {
    assert!(i < 40, "client addresses stop before the VIP (.100)");
    format!("198.51.100.{}", 50 + i)
}

/// A one-armed testbed with `servers` real servers, `clients` client addresses and a running
/// two-worker director with its address and the VIP (no services). Drop order: director, then
/// responders, then namespaces.
struct Bed {
    d: DirectorProcess,
    _ports: Vec<PortsServer>,
    _hold: Vec<HoldServer>,
    tb: OneArmed,
    clients: Vec<String>,
    t0: Instant,
}

impl Bed {
    /// `banner_ports`: a `serve-tcp-ports` responder on each real server; `hold_port`: a
    /// `serve-hold` on each.
    fn new(
        servers: usize,
        clients: usize,
        banner_ports: Option<std::ops::RangeInclusive<u16>>,
        hold_port: Option<u16>,
    ) -> Bed {
        let _ = (tests::director_bin(), tests::lbadm_bin()); // fail fast
        let t0 = Instant::now();
        let tb = OneArmed::new(servers);
        let mut ports = Vec::new();
        let mut hold = Vec::new();
        for r in &tb.rs {
            if let Some(p) = &banner_ports {
                ports.push(PortsServer::start(&r.ns, &r.name, p.clone()));
            }
            if let Some(p) = hold_port {
                hold.push(HoldServer::start(&r.ns, p, 8192));
            }
        }
        let clients: Vec<String> = (0..clients).map(client_ip).collect();
        for c in clients.iter().skip(1) {
            add_addr(&tb.client, &format!("{c}/24"), "eth0");
        }
        let d = tb.start_director_layout(
            &DirectorOptions {
                conn_capacity: Some(65536),
                extra_args: vec!["--idle-sleep-us".into(), IDLE_SLEEP_US.into()],
                ..Default::default()
            },
            &EalLayout::workers(2),
        );
        // "director: running (N worker(s), …)" is printed just after the control socket
        // appears.
        wait_until(Duration::from_secs(10), || {
            d.log_text().contains("worker(s)")
        });
        let log = d.log_text();
        assert!(
            log.contains("running (2 worker(s), 1 port(s))"),
            "the director did not start two workers:\n{log}"
        );
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
            _ports: ports,
            _hold: hold,
            tb,
            clients,
            t0,
        };
        b.note(&format!(
            "testbed up: {} real servers, {} client addresses, director `{}`",
            servers,
            b.clients.len(),
            b.d.cmdline()
        ));
        b
    }

    fn note(&self, line: &str) {
        println!("[{:6.1}s] {line}", self.t0.elapsed().as_secs_f64());
    }

    /// `lbadm ARGS`, logged; must succeed.
    fn lb(&self, args: &[&str]) -> String {
        self.note(&format!("lbadm {}", args.join(" ")));
        self.d.lbadm_ok(args)
    }

    /// Adds every real server to `vs` (`-g`), weight `weights[i]` (1 when absent), real port
    /// `rport` (none for port-0 services), and waits until all are REACHABLE.
    fn add_servers(&self, vs: &str, rport: Option<u16>, weights: &[u32]) {
        for (i, r) in self.tb.rs.iter().enumerate() {
            let w = weights.get(i).copied().unwrap_or(1).to_string();
            let rs = match rport {
                Some(p) => format!("{}:{p}", r.ip),
                None => r.ip.clone(),
            };
            self.lb(&["-a", "-t", vs, "-r", &rs, "-g", "-w", &w]);
        }
        let ips: Vec<&str> = self.tb.rs.iter().map(|r| r.ip.as_str()).collect();
        self.d.wait_neigh_reachable(&ips, NEIGH_TIMEOUT);
    }

    fn srcs(&self) -> Vec<&str> {
        self.clients.iter().map(String::as_str).collect()
    }

    /// The hand-off counters, printed.
    fn handoffs(&self) -> Vec<(String, u64)> {
        let c = link_counters(&self.d);
        self.note(&format!("link counters: {c:?}"));
        c
    }

    /// `-L -n` and `-L -n -c` for failure messages.
    fn state(&self) -> String {
        let l = self.d.lbadm(&["-L", "-n"]);
        let ls = self.d.lbadm(&["link", "show"]);
        format!(
            "--- lbadm -L -n ---\n{}--- lbadm link show ---\n{}",
            String::from_utf8_lossy(&l.stdout),
            String::from_utf8_lossy(&ls.stdout)
        )
    }
}

/// src → answering servers (with counts), and the failed exchanges.
fn tally(ex: &[tests::many::Exchange]) -> (BTreeMap<String, BTreeMap<String, usize>>, Vec<String>) {
    let mut by_src: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut errs = Vec::new();
    for e in ex {
        match &e.answer {
            Ok(name) => {
                *by_src
                    .entry(e.src.clone())
                    .or_default()
                    .entry(name.clone())
                    .or_default() += 1
            }
            Err(msg) => errs.push(format!("{} -> :{}: {msg}", e.src, e.port)),
        }
    }
    (by_src, errs)
}

// ---------------------------------------------------------------------------------------------

/// PCC across two workers: one client's 200 connections to 50 ports of a port-0 persistent
/// service all reach one server although af_packet delivered them to both workers (hand-offs
/// counted); other clients also reach the other server, so persistence, not chance, keeps the
/// first one together.
#[test]
fn pcc_one_client_200_connections_over_two_workers_reach_one_server() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let b = Bed::new(2, 4, Some(9000..=9049), None);
    let vs = format!("{VIP}:0");
    b.lb(&["-A", "-t", &vs, "-s", "rr", "-p", "600"]);
    b.add_servers(&vs, None, &[]);
    let before = b.handoffs();

    let c1 = b.clients[0].clone();
    let t = Instant::now();
    let ex = tcp_many(
        &b.tb.client,
        VIP,
        9000..=9049,
        &[&c1],
        200,
        None,
        3,
        Duration::from_secs(120),
    );
    b.note(&format!(
        "{c1}: {} exchanges over ports 9000-9049 in {:.2}s",
        ex.len(),
        t.elapsed().as_secs_f64()
    ));
    let (by_src, errs) = tally(&ex);
    b.note(&format!("{c1} -> servers {:?}", by_src.get(&c1)));
    assert!(errs.is_empty(), "failed exchanges: {errs:?}\n{}", b.state());
    assert_eq!(ex.len(), 200, "{}", b.state());
    let servers = &by_src[&c1];
    assert_eq!(
        servers.len(),
        1,
        "PCC: one client's 200 connections reached {servers:?}\n{}",
        b.state()
    );
    let s1 = servers.keys().next().unwrap().clone();

    // The director saw 200 connections of that client on one server, and one template.
    let rows = parse_conns(&b.d.lbadm_ok(&["-L", "-n", "-c"]));
    let conns: Vec<_> = rows
        .iter()
        .filter(|r| !r.is_template() && r.source_addr() == c1)
        .collect();
    let templates: Vec<_> = rows
        .iter()
        .filter(|r| r.is_template() && r.source_addr() == c1)
        .collect();
    let dests: BTreeSet<&str> = conns.iter().map(|r| r.dest_addr()).collect();
    b.note(&format!(
        "-L -n -c: {} entries of {c1} to {dests:?}, templates {:?}",
        conns.len(),
        templates
            .iter()
            .map(|r| (&r.virt, &r.dest))
            .collect::<Vec<_>>()
    ));
    assert_eq!(conns.len(), 200, "{}", b.state());
    assert_eq!(
        dests.len(),
        1,
        "entries of {c1} on several servers: {dests:?}"
    );
    assert_eq!(templates.len(), 1, "templates of {c1}: {templates:?}");

    // af_packet spread that client's flows over both queues: the non-owner handed off.
    let after = b.handoffs();
    let out = counter(&after, "handoff_out") - counter(&before, "handoff_out");
    let inn = counter(&after, "handoff_in") - counter(&before, "handoff_in");
    b.note(&format!(
        "hand-offs during the 200 connections: out {out}, in {inn}, dropped {}; per worker: \
         w0 out {} in {}, w1 out {} in {}",
        counter(&after, "handoff_dropped"),
        counter(&after, "worker0_handoff_out"),
        counter(&after, "worker0_handoff_in"),
        counter(&after, "worker1_handoff_out"),
        counter(&after, "worker1_handoff_in"),
    ));
    assert!(
        out > 0,
        "no hand-off: af_packet qpairs=2 did not spread one client's flows over both queues\n{}",
        b.state()
    );
    assert_eq!(out, inn, "every handed-off packet arrives at its owner");
    assert_eq!(counter(&after, "handoff_dropped"), 0, "hand-offs dropped");

    // Other clients are new scheduling decisions. rr keeps one cursor per worker (each worker
    // schedules the clients it owns), so among three more clients (four over two workers) some
    // worker schedules twice and gives the other server: persistence, not chance, kept the
    // first client's 200 connections together.
    let mut others = BTreeMap::new();
    for c in &b.clients[1..] {
        let ex = tcp_many(
            &b.tb.client,
            VIP,
            9000..=9049,
            &[c],
            10,
            None,
            3,
            Duration::from_secs(60),
        );
        let (by_src, errs) = tally(&ex);
        assert!(errs.is_empty(), "failed exchanges: {errs:?}");
        let m = &by_src[c];
        assert_eq!(m.len(), 1, "PCC for {c}: {m:?}");
        others.insert(c.clone(), m.keys().next().unwrap().clone());
    }
    b.note(&format!("other clients (10 connections each): {others:?}"));
    assert!(
        others.values().any(|s| *s != s1),
        "no other client got the server {s1} does not use: {others:?}"
    );
    b.lb(&["-L", "-n"]);
}

/// `-M 255.255.255.0` across two workers: 20 clients of one /24 (which hash to both workers
/// as /32s) share one server. Control: under a /32 persistence service the same 20 clients
/// each stick to a server and, rr alternating, use both.
#[test]
fn netmask_24_clients_of_one_subnet_share_a_server_over_two_workers() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let b = Bed::new(2, 20, Some(23..=24), None);
    let srcs = b.srcs();

    // Control: /32 persistence on port 23.
    let vs23 = format!("{VIP}:23");
    b.lb(&["-A", "-t", &vs23, "-s", "rr", "-p", "360"]);
    b.add_servers(&vs23, Some(23), &[]);
    let ex = tcp_many(
        &b.tb.client,
        VIP,
        23..=23,
        &srcs,
        60,
        None,
        3,
        Duration::from_secs(120),
    );
    let (by_src, errs) = tally(&ex);
    assert!(errs.is_empty(), "failed exchanges: {errs:?}\n{}", b.state());
    let mut used = BTreeMap::<String, usize>::new();
    for (src, servers) in &by_src {
        assert_eq!(
            servers.len(),
            1,
            "/32 persistence: {src} reached {servers:?}"
        );
        *used
            .entry(servers.keys().next().unwrap().clone())
            .or_default() += 1;
    }
    b.note(&format!(
        "-p 360 (/32), 20 clients x 3: clients per server {used:?}"
    ));
    assert_eq!(by_src.len(), 20);
    assert_eq!(
        used.len(),
        2,
        "/32 templates of 20 clients all on one server: {used:?}"
    );
    let h32 = b.handoffs();
    assert!(
        counter(&h32, "handoff_out") > 0,
        "no hand-off with 20 clients"
    );

    // /24 persistence on port 24: the whole subnet on one server.
    let vs24 = format!("{VIP}:24");
    b.lb(&[
        "-A",
        "-t",
        &vs24,
        "-s",
        "rr",
        "-p",
        "360",
        "-M",
        "255.255.255.0",
    ]);
    b.add_servers(&vs24, Some(24), &[]);
    b.lb(&["-L", "-n"]);
    let ex = tcp_many(
        &b.tb.client,
        VIP,
        24..=24,
        &srcs,
        60,
        None,
        3,
        Duration::from_secs(120),
    );
    let (by_src, errs) = tally(&ex);
    assert!(errs.is_empty(), "failed exchanges: {errs:?}\n{}", b.state());
    let all: BTreeMap<String, usize> =
        by_src
            .values()
            .flatten()
            .fold(BTreeMap::new(), |mut m, (k, v)| {
                *m.entry(k.clone()).or_default() += v;
                m
            });
    b.note(&format!(
        "-p 360 -M 255.255.255.0, 20 clients of 198.51.100.0/24 x 3: exchanges per server {all:?}"
    ));
    assert_eq!(by_src.len(), 20);
    assert_eq!(
        all.len(),
        1,
        "clients of one /24 under -M 255.255.255.0 reached several servers: {by_src:?}\n{}",
        b.state()
    );
    let rows = parse_conns(&b.d.lbadm_ok(&["-L", "-n", "-c"]));
    let t24: Vec<_> = rows
        .iter()
        .filter(|r| r.is_template() && r.virt == format!("{VIP}:24"))
        .collect();
    b.note(&format!("templates of {VIP}:24: {t24:?}"));
    assert_eq!(t24.len(), 1, "one /24 template: {t24:?}");
    assert_eq!(t24[0].source, "198.51.100.0:0");
    b.handoffs();
}

/// wlc on counts merged over both workers: 6,000 connections held open from 20 client
/// addresses (flows spread over both workers by af_packet and by owner), weights 1:2:3; each
/// server's ActiveConn is within 5% of its share (1,000 / 2,000 / 3,000).
#[test]
fn wlc_6000_long_lived_connections_weights_1_2_3_within_5_percent() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    const PORT: u16 = 7000;
    const TOTAL: usize = 6000;
    let b = Bed::new(3, 20, None, Some(PORT));
    let vs = format!("{VIP}:{PORT}");
    b.lb(&["-A", "-t", &vs, "-s", "wlc"]);
    b.add_servers(&vs, Some(PORT), &[1, 2, 3]);

    let mut hold = HoldClient::start(&b.tb.client, VIP, PORT, &b.srcs(), TOTAL, 100, 90, 150);
    let rep = hold.wait_settled(Duration::from_secs(110));
    b.note(&format!(
        "hold client: {} established, {} failed in {:.1}s",
        rep.established, rep.failed, rep.secs
    ));
    assert_eq!(rep.established, TOTAL, "{}", b.state());

    // Wait until the director has seen every handshake complete (ActiveConn sums to TOTAL).
    let active = || -> Vec<(String, i64, u64, u64)> {
        b.d.list()
            .iter()
            .filter(|s| s.addr == vs)
            .flat_map(|s| {
                s.servers
                    .iter()
                    .map(|r| (r.addr.clone(), r.weight, r.active_conn, r.inact_conn))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let settled = wait_until(Duration::from_secs(20), || {
        active().iter().map(|x| x.2).sum::<u64>() == TOTAL as u64
    });
    let dist = active();
    b.note(&format!(
        "lbadm -L -n:\n{}",
        b.d.lbadm_ok(&["-L", "-n"]).trim_end()
    ));
    let sum: u64 = dist.iter().map(|x| x.2).sum();
    println!("wlc 1:2:3 over 2 workers, {TOTAL} long-lived connections:");
    for (addr, w, a, i) in &dist {
        let share = TOTAL as f64 * *w as f64 / 6.0;
        println!(
            "  {addr:>18}  weight {w}  ActiveConn {a:5}  InActConn {i:3}  share {share:6.0}  \
             {:+.2}%",
            (*a as f64 - share) / share * 100.0
        );
    }
    let h = b.handoffs();
    println!(
        "  hand-offs: out {} in {} dropped {}",
        counter(&h, "handoff_out"),
        counter(&h, "handoff_in"),
        counter(&h, "handoff_dropped")
    );
    assert!(
        settled,
        "ActiveConn sums to {sum}, not {TOTAL}, with every connection established: {dist:?}"
    );
    assert_eq!(dist.len(), 3);
    for (addr, w, a, _) in &dist {
        let share = TOTAL as f64 * *w as f64 / 6.0;
        let dev = (*a as f64 - share).abs() / share;
        assert!(
            dev <= 0.05,
            "{addr} (weight {w}) holds {a} connections, share {share:.0} ({:.1}% off): {dist:?}",
            dev * 100.0
        );
    }
    assert!(
        counter(&h, "handoff_out") > 0,
        "no hand-off with 6,000 flows"
    );
    hold.stop();
}

/// wlc decides on counts merged over the workers, not on each worker's own. Clients owned by
/// one worker (found from the hand-off counters) open 1,200 connections while only rs1 has a
/// weight (rs2, rs3 at 0); then weights become 1:2:3 and clients owned by the *other* worker
/// open 1,800 more. On merged counts rs1 (1,200 held, weight 1) is far above its share, so the
/// new connections go to rs2 and rs3 only, 2:3 (720 / 1,080); a worker scheduling on its own
/// counts (all zero) would give rs1 300 of them.
#[test]
fn wlc_decides_on_counts_merged_over_workers() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    const PORT: u16 = 7000;
    let b = Bed::new(3, 20, Some(23..=23), Some(PORT));

    // Owner worker of each client address: a few exchanges with a plain rr service, then the
    // worker whose handoff_in grew is the owner.
    let vs23 = format!("{VIP}:23");
    b.lb(&["-A", "-t", &vs23, "-s", "rr"]);
    b.add_servers(&vs23, Some(23), &[]);
    let mut owned: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for c in &b.clients {
        let before = link_counters(&b.d);
        let ex = tcp_many(
            &b.tb.client,
            VIP,
            23..=23,
            &[c],
            12,
            None,
            3,
            Duration::from_secs(60),
        );
        let (_, errs) = tally(&ex);
        assert!(errs.is_empty(), "failed exchanges from {c}: {errs:?}");
        let after = link_counters(&b.d);
        let grew = |w: usize| {
            let k = format!("worker{w}_handoff_in");
            counter(&after, &k) - counter(&before, &k)
        };
        match (grew(0), grew(1)) {
            (0, 0) => b.note(&format!(
                "{c}: no hand-off in 12 connections, owner unknown"
            )),
            (_, 0) => owned[0].push(c.clone()),
            (0, _) => owned[1].push(c.clone()),
            (x, y) => panic!("{c}: both workers received hand-offs ({x}, {y}) for one client"),
        }
    }
    b.note(&format!(
        "owners: worker0 {:?}, worker1 {:?}",
        owned[0], owned[1]
    ));
    assert!(
        !owned[0].is_empty() && !owned[1].is_empty(),
        "20 clients not spread over both workers: {owned:?}"
    );

    let vs = format!("{VIP}:{PORT}");
    b.lb(&["-A", "-t", &vs, "-s", "wlc"]);
    b.add_servers(&vs, Some(PORT), &[1, 0, 0]);
    let held = |want: u64| {
        let ok = wait_until(Duration::from_secs(20), || {
            b.d.list()
                .iter()
                .filter(|s| s.addr == vs)
                .flat_map(|s| s.servers.iter().map(|r| r.active_conn))
                .sum::<u64>()
                == want
        });
        let l = b.d.list();
        let svc = l
            .iter()
            .find(|s| s.addr == vs)
            .expect("service listed")
            .clone();
        assert!(ok, "ActiveConn does not sum to {want}: {svc:?}");
        svc
    };
    let a: Vec<&str> = owned[0].iter().map(String::as_str).collect();
    let mut h1 = HoldClient::start(&b.tb.client, VIP, PORT, &a, 1200, 100, 60, 120);
    let r1 = h1.wait_settled(Duration::from_secs(80));
    assert_eq!(r1.established, 1200, "phase 1: {r1:?}");
    let svc1 = held(1200);
    b.note(&format!(
        "phase 1 (worker0's clients, weights 1:0:0): {:?}",
        svc1.servers
    ));

    for (i, w) in [(1usize, "2"), (2, "3")] {
        let rs = format!("{}:{PORT}", b.tb.rs[i].ip);
        b.lb(&["-e", "-t", &vs, "-r", &rs, "-g", "-w", w]);
    }
    let bb: Vec<&str> = owned[1].iter().map(String::as_str).collect();
    let mut h2 = HoldClient::start(&b.tb.client, VIP, PORT, &bb, 1800, 100, 60, 120);
    let r2 = h2.wait_settled(Duration::from_secs(80));
    assert_eq!(r2.established, 1800, "phase 2: {r2:?}");
    let svc2 = held(3000);
    b.note(&format!(
        "lbadm -L -n:\n{}",
        b.d.lbadm_ok(&["-L", "-n"]).trim_end()
    ));
    let get = |svc: &tests::ipvsadm::Service, i: usize| {
        svc.server(&format!("{}:{PORT}", b.tb.rs[i].ip))
            .map_or(0, |r| r.active_conn) as f64
    };
    let new: Vec<f64> = (0..3).map(|i| get(&svc2, i) - get(&svc1, i)).collect();
    println!("wlc on merged counts: 1,800 new connections from worker1's clients with rs1 holding 1,200 of worker0's:");
    for (i, (n, want)) in new.iter().zip([0.0, 720.0, 1080.0]).enumerate() {
        println!(
            "  rs{} weight {}  new {n:5}  expected (merged) {want:5}  per-worker counts would give {}",
            i + 1,
            i + 1,
            [300, 600, 900][i]
        );
    }
    b.handoffs();
    assert!(
        new[0] <= 18.0,
        "rs1 got {} of the 1,800 new connections: worker1 did not see worker0's 1,200 on rs1",
        new[0]
    );
    for (i, want) in [(1usize, 720.0), (2, 1080.0)] {
        let dev = (new[i] - want).abs() / want;
        assert!(
            dev <= 0.05,
            "rs{} got {} new, expected {want} ({:.1}% off)",
            i + 1,
            new[i],
            dev * 100.0
        );
    }
    h2.stop();
    h1.stop();
}

/// 5,000 configuration edits at 1,000 per second while 8 clients exchange banners with a
/// persistent service and one client uploads 4 MiB (rate-limited to span the edits): every
/// exchange succeeds on the client's persistence server, the upload arrives intact, every edit
/// is accepted, and the director's VmRSS grows by less than 8 MiB over the 5,000 edits
/// (measured after 4,000 warm-up edits under the same traffic).
///
/// The edits, in a cycle of 8: add a scratch service, add a server to it, flip a weight of an
/// unrelated service (1 ↔ 5), add a mark rule, delete the scratch server, delete the scratch
/// service, flip a weight of the live persistent service (1 ↔ 2: templates keep every client
/// where it is), flush the mark rules. Sent over one control-socket connection, paced to one
/// per millisecond.
#[test]
fn edits_1000_per_second_during_traffic_lose_nothing_and_memory_stays_flat() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    const EDITS: usize = 5000;
    const WARMUP_EDITS: usize = 4000;
    const RSS_BOUND_KIB: i64 = 8 * 1024;
    let b = Bed::new(2, 8, Some(23..=23), None);
    let srcs = b.srcs();
    let vs23 = format!("{VIP}:23");
    let vs80 = format!("{VIP}:80");
    let vs443 = format!("{VIP}:443");
    b.lb(&["-A", "-t", &vs23, "-s", "rr", "-p", "600"]);
    b.add_servers(&vs23, Some(23), &[]);
    b.lb(&["-A", "-t", &vs80, "-s", "rr", "-p", "600"]);
    b.add_servers(&vs80, Some(80), &[]);
    b.lb(&["-A", "-t", &vs443, "-s", "wlc"]);
    b.add_servers(&vs443, Some(443), &[]);

    // Each client's persistence server, before the edits.
    let ex = tcp_many(
        &b.tb.client,
        VIP,
        23..=23,
        &srcs,
        16,
        None,
        3,
        Duration::from_secs(60),
    );
    let (by_src, errs) = tally(&ex);
    assert!(
        errs.is_empty(),
        "failed exchanges before the edits: {errs:?}"
    );
    let home: BTreeMap<String, String> = by_src
        .iter()
        .map(|(s, m)| {
            assert_eq!(m.len(), 1, "{s} not persistent before the edits: {m:?}");
            (s.clone(), m.keys().next().unwrap().clone())
        })
        .collect();
    b.note(&format!("persistence servers: {home:?}"));
    let upload_home =
        tests::curl_get(&b.tb.client, &format!("http://{VIP}/"), 3).expect("GET through the VIP");
    b.note(&format!("{} -> {VIP}:80 -> {upload_home}", b.clients[0]));

    let rs_ip: Vec<String> = b.tb.rs.iter().map(|r| r.ip.clone()).collect();
    let edit = move |ctl: &mut Ctl, i: usize| -> Result<(), String> {
        let k = i / 8;
        let r = match i % 8 {
            0 => ctl.ipvs(&format!("-A -t {VIP}:8081 -s wlc")),
            1 => ctl.ipvs(&format!(
                "-a -t {VIP}:8081 -r {}:8081 -g -w 1",
                rs_ip[k % 2]
            )),
            2 => ctl.ipvs(&format!(
                "-e -t {VIP}:443 -r {}:443 -g -w {}",
                rs_ip[k % 2],
                if k % 4 < 2 { 5 } else { 1 }
            )),
            3 => ctl.op(Op::MarkAdd(MarkRule::new(
                std::net::Ipv4Addr::new(10, 99, (k % 256) as u8, 0),
                24,
                7,
            ))),
            4 => ctl.ipvs(&format!("-d -t {VIP}:8081 -r {}:8081", rs_ip[k % 2])),
            5 => ctl.ipvs(&format!("-D -t {VIP}:8081")),
            6 => ctl.ipvs(&format!(
                "-e -t {VIP}:23 -r {}:23 -g -w {}",
                rs_ip[k % 2],
                if k % 4 < 2 { 2 } else { 1 }
            )),
            _ => ctl.op(Op::MarkFlush),
        };
        r.map(|_| ())
            .map_err(|e| format!("edit {i}: {}", e.message))
    };
    let mut ctl = Ctl::connect(b.d.socket_path());
    // Paced edits (one per millisecond); samples VmRSS every 1,000; returns (seconds, errors).
    let run_edits = |ctl: &mut Ctl, from: usize, n: usize, rss: &mut Vec<(f64, u64)>| {
        let t = Instant::now();
        let mut errs = Vec::new();
        for j in 0..n {
            let due = t + Duration::from_micros(1000 * j as u64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if let Err(e) = edit(ctl, from + j) {
                errs.push(e);
            }
            if j % 1000 == 999 {
                rss.push((t.elapsed().as_secs_f64(), b.d.vm_rss_kib().unwrap_or(0)));
            }
        }
        (t.elapsed().as_secs_f64(), errs)
    };

    // Traffic runs throughout; the first 4,000 edits are a warm-up, then VmRSS is sampled, the
    // upload starts and 5,000 edits follow; VmRSS is sampled again as the last edit is done.
    // The warm-up is long enough for the control thread's allocator to reach its steady state:
    // every 2 s it samples the per-server counters of every worker (buffers of
    // max-servers × 40 bytes, 2.5 MiB each by default); glibc serves the first sample from
    // mmap, raises its mmap threshold when that is freed, and from the second sample on keeps
    // those buffers in the thread's arena: a one-time step of about 2.7 MiB of VmRSS.
    let dir = TempDir::new("lbt-upload");
    let file = dir.join("payload.bin");
    const UPLOAD: usize = 4 * 1024 * 1024;
    write_random_file(&file, UPLOAD);
    let digest = sha256_file(&file);
    let retrans0 = tcp_retrans(&b.tb.client);
    let mut rss = Vec::new();
    let mut warm_rss = Vec::new();
    let mut rss0 = 0;
    let mut rss1 = 0;
    let (exchanges, upload, (secs, errs)) = std::thread::scope(|s| {
        let traffic = s.spawn(|| {
            tcp_many(
                &b.tb.client,
                VIP,
                23..=23,
                &srcs,
                1_000_000,
                Some(Duration::from_secs(10)),
                3,
                Duration::from_secs(60),
            )
        });
        std::thread::sleep(Duration::from_millis(200));
        let (wsecs, werrs) = run_edits(&mut ctl, 0, WARMUP_EDITS, &mut warm_rss);
        assert!(
            werrs.is_empty(),
            "warm-up edits refused: {:?}",
            &werrs[..werrs.len().min(5)]
        );
        b.note(&format!(
            "warm-up with traffic: {WARMUP_EDITS} edits in {wsecs:.2}s, VmRSS {warm_rss:?} KiB"
        ));
        rss0 = b.d.vm_rss_kib().expect("director VmRSS");
        let upload = s.spawn(|| {
            let data = format!("@{}", file.display());
            b.tb.client.exec_timeout(
                &[
                    "curl",
                    "-s",
                    "-S",
                    "--fail",
                    "--max-time",
                    "30",
                    "--limit-rate",
                    "900K",
                    "-H",
                    "Expect:",
                    "-H",
                    "Content-Type: application/octet-stream",
                    "--data-binary",
                    &data,
                    &format!("http://{VIP}/upload"),
                ],
                Duration::from_secs(40),
            )
        });
        let r = run_edits(&mut ctl, WARMUP_EDITS, EDITS, &mut rss);
        rss1 = b.d.vm_rss_kib().expect("director VmRSS");
        (traffic.join().unwrap(), upload.join().unwrap(), r)
    });
    let retrans = tcp_retrans(&b.tb.client) - retrans0;
    let rate = EDITS as f64 / secs;
    let growth = rss1 as i64 - rss0 as i64;

    let (by_src, xerrs) = tally(&exchanges);
    let ok: usize = by_src.values().flat_map(|m| m.values()).sum();
    println!("1,000 edits/s during traffic:");
    println!(
        "  edits: {EDITS} in {secs:.2}s = {rate:.0}/s, refused {}",
        errs.len()
    );
    println!(
        "  banner exchanges (10 s, over warm-up and edits): {ok} ok, {} failed; per client {by_src:?}",
        xerrs.len()
    );
    println!("  client TCP retransmissions during the phase: {retrans}");
    println!(
        "  director VmRSS: before {rss0} KiB, after {rss1} KiB, growth {growth} KiB; \
         during {rss:?}"
    );
    let up_body = String::from_utf8_lossy(&upload.stdout).trim().to_string();
    println!("  upload: {} {up_body}", upload.status);
    b.handoffs();
    b.lb(&["-L", "-n"]);

    assert!(
        errs.is_empty(),
        "edits refused: {:?}",
        &errs[..errs.len().min(5)]
    );
    assert!(
        xerrs.is_empty(),
        "exchanges failed during the edits: {:?}\n{}",
        &xerrs[..xerrs.len().min(10)],
        b.state()
    );
    assert!(ok >= 200, "only {ok} exchanges in 10 s");
    for (src, m) in &by_src {
        let want = &home[src];
        assert!(
            m.len() == 1 && m.contains_key(want),
            "misrouted: {src} (persistent on {want}) reached {m:?} during the edits"
        );
    }
    assert!(
        upload.status.success(),
        "upload failed: {}",
        String::from_utf8_lossy(&upload.stderr)
    );
    let reply = UploadReply::parse(&up_body).unwrap_or_else(|| panic!("upload reply {up_body:?}"));
    assert_eq!(reply.len, UPLOAD as u64, "upload truncated");
    assert_eq!(reply.sha256, digest, "upload corrupted");
    assert_eq!(
        reply.server, upload_home,
        "upload left its persistence server"
    );
    assert!(rate >= 900.0, "edits ran at {rate:.0}/s, not 1,000/s");
    assert!(
        growth < RSS_BOUND_KIB,
        "director VmRSS grew by {growth} KiB over {EDITS} edits ({rss0} -> {rss1} KiB)"
    );
    // The scratch state is gone: edit 5999 was the last of a cycle (mark flush).
    let list = b.d.list();
    assert!(
        !list.iter().any(|s| s.addr == format!("{VIP}:8081")),
        "scratch service left: {list:?}"
    );
}

/// `TcpRetransSegs` of a namespace (from /proc/net/snmp).
fn tcp_retrans(ns: &tests::Netns) -> i64 {
    let snmp = ns.exec_ok(&["cat", "/proc/net/snmp"]);
    let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    if tcp.len() < 2 {
        return 0;
    }
    let names: Vec<&str> = tcp[0].split_whitespace().collect();
    let vals: Vec<&str> = tcp[1].split_whitespace().collect();
    names
        .iter()
        .position(|n| *n == "RetransSegs")
        .and_then(|i| vals.get(i))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
