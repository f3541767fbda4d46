//! Direct routing through the DPDK director, with real clients and servers in network
//! namespaces (layouts: tests/src/testbed.rs).
//!
//! * `plumbing_*`: the testbeds alone, without the director: bridge, veths, addresses, DR
//!   real-server settings and HTTP servers work. When one of these fails, the testbed (host,
//!   kernel, tools) is broken, not the director.
//! * `one_armed_*`: the seeds' one-armed LVS-DR: client, director and two real servers on one
//!   segment; rr alternates strictly, a 1 MiB upload arrives byte-identical, `-L -n` counts
//!   the connections, the director answers ping and stops cleanly on SIGTERM.
//! * `two_armed_*`: client segment A and real-server segment B (the kernel's IPVS DR selftest
//!   layout); the real server answers the client directly over its own leg on A.
//!
//! Run as root: `make test`, or after `cargo build --release`:
//! `cargo test -p tests --release --test netns_dr`.
//! Every test creates its own uniquely named namespaces and removes them, also on failure.

use tests::http::curl_get;
use tests::util::{sha256_file, write_random_file};
use tests::{
    curl_post_file, require_root_and_tools, OneArmed, TempDir, TwoArmed, UploadReply, VIP, VPORT,
};

const MIB: usize = 1024 * 1024;

/// Reads an interface counter (`/sys/class/net/<dev>/statistics/<name>`) inside a namespace.
fn if_counter(ns: &tests::Netns, dev: &str, name: &str) -> u64 {
    ns.exec_ok(&["cat", &format!("/sys/class/net/{dev}/statistics/{name}")])
        .trim()
        .parse()
        .expect("counter")
}

/// Uploads `len` random bytes to the VIP from `client` and checks the digest the real server
/// computed; returns the name of the server that received it.
fn upload_and_verify(client: &tests::Netns, len: usize, servers: &[&str]) -> String {
    let dir = TempDir::new("lbt-upload");
    let file = dir.join("payload.bin");
    write_random_file(&file, len);
    let local = sha256_file(&file);
    let body = curl_post_file(client, &format!("http://{VIP}/upload"), &file, 30)
        .unwrap_or_else(|e| panic!("upload of {len} bytes through the VIP failed: {e}"));
    let reply = UploadReply::parse(&body).unwrap_or_else(|| panic!("bad upload reply {body:?}"));
    assert!(
        servers.contains(&reply.server.as_str()),
        "upload answered by {:?}",
        reply.server
    );
    assert_eq!(
        reply.len, len as u64,
        "server received {} of {len} bytes",
        reply.len
    );
    assert_eq!(
        reply.sha256, local,
        "upload corrupted on the way (sha256 differs)"
    );
    reply.server
}

// ---------------------------------------------------------------------------------------------
// Testbeds without the director
// ---------------------------------------------------------------------------------------------

/// The one-armed segment works on its own: client reaches both real servers by their own
/// addresses, a 1 MiB upload to a real server is intact, and nobody answers for the VIP while
/// there is no director (the real servers' arp_ignore keeps them silent).
#[test]
fn plumbing_one_armed_without_director() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let tb = OneArmed::new(2); // checks client -> rs1/rs2 over HTTP

    let dir = TempDir::new("lbt-upload");
    let file = dir.join("payload.bin");
    write_random_file(&file, MIB);
    let body = curl_post_file(
        &tb.client,
        &format!("http://{}/upload", tb.rs[0].ip),
        &file,
        20,
    )
    .expect("upload to rs1");
    let reply = UploadReply::parse(&body).expect("upload reply");
    assert_eq!(
        reply,
        UploadReply {
            server: "rs1".into(),
            sha256: sha256_file(&file),
            len: MIB as u64
        }
    );

    // No director: the VIP must stay unanswered (a real server answering ARP for it would
    // steal the VIP from the director).
    let out = tb.client.exec(&["ping", "-c", "1", "-W", "1", VIP]);
    assert!(
        !out.status.success(),
        "someone answered for the VIP without a director"
    );
    let neigh = tb.client.exec_ok(&["ip", "neigh", "show", VIP]);
    assert!(
        !neigh.contains("lladdr"),
        "VIP resolved without a director: {neigh}"
    );
}

/// The two-armed segments work on their own: the client reaches the real server's front
/// address, and the real server's route back to the client (from the VIP) leaves via its
/// front leg.
#[test]
fn plumbing_two_armed_without_director() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let tb = TwoArmed::new(1); // checks HTTP over A and the return route
    let route = tb.client.exec_ok(&["ip", "route", "get", VIP]);
    assert!(
        route.contains(&format!("via {}", TwoArmed::DIRECTOR_A_IP)),
        "client route to VIP: {route}"
    );
}

/// The harness cleans up after a failing test: namespaces deleted, servers stopped.
#[test]
fn plumbing_cleanup_after_panic() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let seen = std::sync::Mutex::new((Vec::<String>::new(), Vec::<u32>::new()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let tb = OneArmed::new(1);
        let mut s = seen.lock().unwrap();
        s.0 = vec![
            tb.client.name().to_string(),
            tb.director_ns.name().to_string(),
            tb.switch.ns().name().to_string(),
            tb.rs[0].ns.name().to_string(),
        ];
        s.1 = vec![tb.rs[0].http.pid()];
        drop(s);
        panic!("deliberate panic: checking that the harness cleans up");
    }));
    assert!(result.is_err());
    let (names, pids) = seen.into_inner().unwrap();
    assert_eq!(names.len(), 4);
    for n in &names {
        assert!(
            !std::path::Path::new(&format!("/run/netns/{n}")).exists(),
            "namespace {n} left behind"
        );
    }
    for p in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "server pid {p} left running"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Through the director
// ---------------------------------------------------------------------------------------------

/// One-armed DR, rr over rs1 and rs2.
#[test]
fn one_armed_dr_round_robin_upload_and_counters() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let _ = (tests::director_bin(), tests::lbadm_bin()); // fail fast, before building anything
    let tb = OneArmed::new(2);
    let mut d = tb.start_director();
    tb.configure_service(&d, "rr");
    let names: Vec<&str> = tb.rs.iter().map(|r| r.name.as_str()).collect();

    // The director answers ICMP echo to its own address.
    let ping = tb
        .client
        .exec(&["ping", "-c", "1", "-W", "2", OneArmed::DIRECTOR_IP]);
    assert!(
        ping.status.success(),
        "director did not answer ping:\n{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // rr: 6 requests, each a new connection, must alternate strictly between rs1 and rs2.
    let mut answers = Vec::new();
    for i in 0..6 {
        match tb.get_vip() {
            Ok(body) => answers.push(body),
            Err(e) => {
                panic!("request {i} through the VIP failed: {e} (answers so far: {answers:?})")
            }
        }
    }
    for a in &answers {
        assert!(
            names.contains(&a.as_str()),
            "unexpected answer {a:?} in {answers:?}"
        );
    }
    for w in answers.windows(2) {
        assert_ne!(w[0], w[1], "rr did not alternate: {answers:?}");
    }

    // ipvsadm -L -n: the service, both servers by Route, and the 6 connections accounted.
    let list = d.list();
    let vs = format!("{VIP}:{VPORT}");
    let svc = list
        .iter()
        .find(|s| s.proto == "TCP" && s.addr == vs)
        .unwrap_or_else(|| panic!("service {vs} missing from -L -n: {list:?}"));
    assert_eq!(svc.scheduler, "rr");
    assert_eq!(svc.servers.len(), 2, "{svc:?}");
    for r in &tb.rs {
        let s = svc
            .server(&r.addr_port())
            .unwrap_or_else(|| panic!("{} missing: {svc:?}", r.addr_port()));
        assert_eq!(s.forward, "Route");
        assert!(
            s.active_conn + s.inact_conn >= 1,
            "no connection counted on {}: {svc:?}",
            r.name
        );
    }
    let total = svc.total_conns();
    assert!(
        total > 0 && total <= 6,
        "ActiveConn+InActConn over servers = {total} after 6 connections: {svc:?}"
    );

    // 1 MiB upload through the VIP arrives byte-identical.
    upload_and_verify(&tb.client, MIB, &names);
    let after = d.list();
    let total_after = after
        .iter()
        .find(|s| s.addr == vs)
        .map(|s| s.total_conns())
        .unwrap_or(0);
    assert!(
        total_after > 0 && total_after <= 7,
        "connections after upload: {total_after}: {after:?}"
    );

    // SIGTERM stops it cleanly.
    let st = d.stop();
    assert!(
        st.success(),
        "director exit status after SIGTERM: {st}\n{}",
        d.log_text()
    );
}

/// Two-armed DR: client on A routes the VIP via the director's A address; the director
/// forwards out of dpdk1 to the real server on B, which answers the client directly over A.
#[test]
fn two_armed_dr_real_server_answers_directly() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let _ = (tests::director_bin(), tests::lbadm_bin()); // fail fast, before building anything
    let tb = TwoArmed::new(1);
    let rs = &tb.rs[0];
    let d = tb.start_director();
    tb.configure_service(&d, "rr");

    let ping = tb
        .client
        .exec(&["ping", "-c", "1", "-W", "2", TwoArmed::DIRECTOR_A_IP]);
    assert!(ping.status.success(), "director did not answer ping on A");

    let back_rx_before = if_counter(&rs.ns, "eth0", "rx_packets");
    let front_tx_before = if_counter(&rs.ns, "eth1", "tx_packets");
    for i in 0..3 {
        let body = tb
            .get_vip()
            .unwrap_or_else(|e| panic!("request {i} through the VIP failed: {e}"));
        assert_eq!(body, rs.name);
    }
    // Requests came in on B (from the director), replies left on A (straight to the client).
    let back_rx = if_counter(&rs.ns, "eth0", "rx_packets") - back_rx_before;
    let front_tx = if_counter(&rs.ns, "eth1", "tx_packets") - front_tx_before;
    assert!(
        back_rx >= 9,
        "real server received only {back_rx} packets on its B leg"
    );
    assert!(
        front_tx >= 6,
        "real server sent only {front_tx} packets on its A leg"
    );

    upload_and_verify(&tb.client, 256 * 1024, &[rs.name.as_str()]);

    let list = d.list();
    let svc = list
        .iter()
        .find(|s| s.addr == format!("{VIP}:{VPORT}"))
        .expect("service listed");
    assert!(svc.server(&rs.addr_port()).is_some(), "{svc:?}");
    assert!(svc.total_conns() > 0, "no connection counted: {svc:?}");

    // Still reachable directly on A (the director did not disturb segment A).
    let direct = curl_get(
        &tb.client,
        &format!("http://{}/", TwoArmed::rs_front_ip(0)),
        3,
    );
    assert_eq!(direct.as_deref(), Ok(rs.name.as_str()));
}
