//! Connection synchronisation between two directors, with real clients and servers.
//!
//! Topology (one L2 segment "lan", plus a kernel veth "sync0" between the two directors'
//! namespaces carrying the IPVS sync multicast, as `--mcast-interface`):
//! ```text
//!   client 198.51.100.50 (+ .61-.66 for persistent clients) ─┐
//!   director A dpdk0 (198.51.100.2, VIP)  ─────────────────────┤ bridge "lan"
//!   director B dpdk0 (198.51.100.3)       ─────────────────────┤
//!   rs1 198.51.100.11, rs2 198.51.100.12 ──────────────────────┘
//!   A sync0 10.99.0.1/24 ══ veth ══ B sync0 10.99.0.2/24
//! ```
//! A runs the master daemon, B the backup; both have the same services: `VIP:80` rr (the long
//! transfer), `VIP:0` persistent (PCC, ports 7001/7002) and fwmark 5 persistent (ports
//! 9001/9002 marked by an iptables rule). The test then does by hand what keepalived does on
//! a failover — SIGKILL A, move the VIP to B (B announces it by gratuitous ARP) — and checks
//! that B carries on: the upload in flight finishes byte-identical, every persistent client
//! keeps its real server, B's listing shows the synchronised entries, and the counters and
//! `-L --daemon` lines are right. Malformed datagrams sent to B's sync port are counted and
//! change nothing.

use std::time::{Duration, Instant};

use tests::probe::{parse_conns, tcp_name_from};
use tests::topo::{add_addr, veth_pair};
use tests::util::{sha256_file, wait_until, write_random_file, TempDir};
use tests::hapair::{ha_lan, persistent_round, CLIENT, DIP_A, DIP_B, PCC_PORTS, PCLIENTS, RS};
use tests::{require_root_and_tools, DirectorOptions, DirectorProcess, VIP};

const SYNC_A: &str = "10.99.0.1";
const SYNC_B: &str = "10.99.0.2";

fn configure(d: &DirectorProcess, dip: &str, with_vip: bool) {
    d.lbadm_ok(&["addr", "add", &format!("{dip}/24"), "dev", "dpdk0"]);
    if with_vip {
        d.lbadm_ok(&["addr", "add", &format!("{VIP}/32"), "dev", "dpdk0"]);
    }
    let vs = format!("{VIP}:80");
    d.lbadm_ok(&["-A", "-t", &vs, "-s", "rr"]);
    d.lbadm_ok(&["-A", "-t", &format!("{VIP}:0"), "-s", "rr", "-p", "600"]);
    d.lbadm_ok(&["iptables", "-t", "mangle", "-A", "PREROUTING", "-d", VIP, "-p", "tcp", "--dport", "9001:9002", "-j", "MARK", "--set-mark", "5"]);
    d.lbadm_ok(&["-A", "-f", "5", "-s", "rr", "-p", "600"]);
    for rs in RS {
        d.lbadm_ok(&["-a", "-t", &vs, "-r", &format!("{rs}:80"), "-g", "-w", "1"]);
        d.lbadm_ok(&["-a", "-t", &format!("{VIP}:0"), "-r", rs, "-g", "-w", "1"]);
        d.lbadm_ok(&["-a", "-f", "5", "-r", rs, "-g", "-w", "1"]);
    }
    d.wait_neigh_reachable(&RS, Duration::from_secs(10));
}

fn sync_counter(d: &DirectorProcess, field: &str) -> u64 {
    let j: serde_json::Value = serde_json::from_str(&d.lbadm_ok(&["--json", "sync", "show"])).expect("sync show --json");
    j[field].as_u64().unwrap_or(0)
}

fn sync_drop(d: &DirectorProcess, name: &str) -> u64 {
    let j: serde_json::Value = serde_json::from_str(&d.lbadm_ok(&["--json", "sync", "show"])).expect("sync show --json");
    j["drops"].as_array().into_iter().flatten().find(|p| p[0] == name).and_then(|p| p[1].as_u64()).unwrap_or(0)
}

#[test]
fn backup_takes_over_connections_and_persistence() {
    let Some(_serial) = require_root_and_tools() else { return };
    let lan = ha_lan("dira", "dirb");
    let (client, ns_a, ns_b) = (&lan.client, &lan.a, &lan.b);
    veth_pair(ns_a, "sync0", ns_b, "sync0");
    add_addr(ns_a, &format!("{SYNC_A}/24"), "sync0");
    add_addr(ns_b, &format!("{SYNC_B}/24"), "sync0");
    let opts = DirectorOptions { extra_args: vec!["--idle-sleep-us".into(), "50".into()], ..Default::default() };
    let mut a = DirectorProcess::start_with(ns_a, &["eth0"], &opts);
    let b = DirectorProcess::start_with(ns_b, &["eth0"], &opts);
    configure(&a, DIP_A, true);
    configure(&b, DIP_B, false);

    // Daemons, as keepalived's lvs_sync_daemon would start them; -L --daemon as ipvsadm.
    a.lbadm_ok(&["--start-daemon", "master", "--mcast-interface", "sync0", "--syncid", "7"]);
    b.lbadm_ok(&["--start-daemon", "backup", "--mcast-interface", "sync0", "--syncid", "7"]);
    assert_eq!(
        a.lbadm_ok(&["-L", "--daemon"]),
        "master sync daemon (mcast=sync0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    assert_eq!(
        b.lbadm_ok(&["-L", "--daemon"]),
        "backup sync daemon (mcast=sync0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    let again = a.lbadm(&["--start-daemon", "master", "--mcast-interface", "sync0"]);
    assert_eq!((again.status.code(), String::from_utf8_lossy(&again.stderr).trim()), (Some(255), "Daemon has already run"));
    let nodev = b.lbadm(&["--start-daemon", "master", "--mcast-interface", "nosuch0"]);
    assert_eq!(String::from_utf8_lossy(&nodev.stderr).trim(), "No such device");

    // Persistent clients before the failover.
    let before = persistent_round(client);
    assert!(before.iter().all(|(_, _, n)| n == "rs1" || n == "rs2"), "{before:?}");
    for c in PCLIENTS {
        let mine: Vec<&String> = before.iter().filter(|(x, p, _)| x == c && PCC_PORTS.contains(p)).map(|x| &x.2).collect();
        assert!(mine.windows(2).all(|w| w[0] == w[1]), "PCC: one server per client: {before:?}");
    }

    // A long upload through the VIP: about 6 s at 256 KiB/s.
    let tmp = TempDir::new("lbt-sync");
    let file = tmp.join("upload.bin");
    write_random_file(&file, 1536 * 1024);
    let want = sha256_file(&file);
    let out = tmp.join("reply.txt");
    let mut upload = client.spawn_logged(
        &[
            "curl", "-s", "-S", "--fail", "--max-time", "60", "--limit-rate", "256k", "-H", "Expect:",
            "-H", "Content-Type: application/octet-stream", "--data-binary", &format!("@{}", file.display()),
            "-o", &out.display().to_string(), &format!("http://{VIP}/"),
        ],
        &tmp.join("curl.log"),
    );
    // The backup learns the connection (and the templates).
    let synced = wait_until(Duration::from_secs(10), || {
        let rows = parse_conns(&b.lbadm_ok(&["-L", "-n", "-c"]));
        rows.iter().any(|r| r.source_addr() == CLIENT && r.state == "ESTABLISHED")
            && rows.iter().filter(|r| r.is_template()).count() >= PCLIENTS.len() * 2
    });
    assert!(synced, "backup never showed the synced entries:\n{}", b.lbadm_ok(&["-L", "-n", "-c"]));
    assert!(sync_counter(&a, "entries_sent") > 0 && sync_counter(&a, "messages_sent") > 0);
    assert!(sync_counter(&b, "entries_applied") > 0);
    // The backup counts synchronised connections like its own.
    let web = b.list().into_iter().find(|s| s.addr == format!("{VIP}:80")).expect("VIP:80 on B");
    assert_eq!(web.servers.iter().map(|s| s.active_conn).sum::<u64>(), 1, "ActiveConn on the backup: {web:?}");

    // Garbage on the sync port is counted and ignored.
    let junk = ns_a.exec(&["python3", "-c", &format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'sync0')\n\
         s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('{SYNC_A}'))\n\
         for m in [b'\\x00\\x07\\x00\\x08\\x00\\x02\\x00\\x00', b'\\x00\\x07\\x00\\x09\\x00\\x01\\x00\\x00', b'\\x00\\x07\\x00\\x0c\\x01\\x01\\x00\\x00\\x00\\x06\\x00\\x24', b'\\x00\\x09\\x00\\x08\\x00\\x01\\x00\\x00']:\n    s.sendto(m,('224.0.0.81',8848))\n"
    )]);
    assert!(junk.status.success(), "{}", String::from_utf8_lossy(&junk.stderr));
    let counted = wait_until(Duration::from_secs(5), || {
        sync_drop(&b, "msg_version") >= 1 && sync_drop(&b, "msg_size") >= 1 && sync_drop(&b, "msg_truncated") >= 1 && sync_drop(&b, "msg_foreign_syncid") >= 1
    });
    assert!(counted, "malformed messages not counted:\n{}", b.lbadm_ok(&["sync", "show"]));

    // Failover: the master dies, the VIP moves to B (as keepalived would do it).
    std::thread::sleep(Duration::from_millis(500));
    assert!(upload.is_running(), "the upload must still be in flight at the failover");
    let t0 = Instant::now();
    let pid_a = a.pid().expect("A runs");
    tests::util::send_signal(pid_a as i32, "KILL");
    a.stop();
    b.lbadm_ok(&["addr", "add", &format!("{VIP}/32"), "dev", "dpdk0"]);
    let took_over = wait_until(Duration::from_secs(5), || {
        tcp_name_from(client, Some(PCLIENTS[0]), VIP, PCC_PORTS[0], 1).is_ok()
    });
    let failover = t0.elapsed();
    assert!(took_over, "B does not serve the VIP 5 s after the failover");

    // The upload finishes byte-identical, without reset.
    let deadline = Instant::now() + Duration::from_secs(60);
    while upload.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = upload.try_status();
    let reply = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(status.is_some_and(|s| s.success()), "upload failed ({status:?}): {}", std::fs::read_to_string(tmp.join("curl.log")).unwrap_or_default());
    let fields: Vec<&str> = reply.split_whitespace().collect();
    assert_eq!(fields.get(1).copied(), Some(want.as_str()), "upload reply {reply:?}");

    // B carried the rest of it: its counters for VIP:80 show the upload's packets.
    let stats = b.lbadm_ok(&["-L", "-n", "--stats", "-t", &format!("{VIP}:80")]);
    let inpkts: u64 = stats
        .lines()
        .find(|l| l.starts_with("TCP"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(inpkts > 100, "B forwarded only {inpkts} packets of the upload:\n{stats}");

    // Every persistent client keeps its server.
    let after = persistent_round(client);
    let kept = before.iter().zip(&after).filter(|(x, y)| x.2 == y.2).count();
    println!(
        "failover: VIP served by B {:.2} s after SIGKILL of A; upload kept; persistent clients kept {kept}/{} (lost {})",
        failover.as_secs_f64(),
        before.len(),
        before.len() - kept
    );
    assert_eq!(before, after, "persistent clients moved");
}
