//! Two directors, no single point of failure: unmodified keepalived VRRP moves the VIP over
//! the directors' kernel legs, and the IPVS sync daemons have already copied the connections
//! and persistence templates.
//!
//! ```text
//!   client 198.51.100.50 (+ .61-.66: persistent clients) ─┐
//!   director A dpdk0 198.51.100.2 (keepalived MASTER, prio 150) ─┤ bridge "lan"
//!   director B dpdk0 198.51.100.3 (keepalived BACKUP, prio 100) ─┤
//!   rs1 198.51.100.11, rs2 198.51.100.12 (VIP on lo) ─────────────┘
//! ```
//! Each director runs keepalived (Debian's, `vrrp_instance` on `interface dpdk0`,
//! `advert_int 1`, VIP 198.51.100.100/32) in its namespace, and both sync daemons on
//! `dpdk0` (master and backup at once, syncid 7): the multicast leaves and enters through
//! the kernel leg like the VRRP adverts. Services: `VIP:80` rr (the long transfers), `VIP:0`
//! PCC and fwmark 5 (ports 9001-9002) persistent.
//!
//! Failover: during an upload through the VIP, with persistent clients connected before,
//! SIGKILL director A. B's keepalived becomes MASTER and adds the VIP within 5 s; the upload
//! finishes byte-identical without reset; every persistent client keeps its real server.
//! Fail back: a second upload starts through B; A restarts (director, configuration, sync
//! daemons), learns B's connections, its keepalived takes the VIP back (higher priority);
//! the second upload finishes byte-identical; persistent clients still keep their servers.
//! The failover and fail-back times and the connections kept/lost are printed.

use std::path::Path;
use std::time::{Duration, Instant};

use tests::netns::ChildGuard;
use tests::probe::parse_conns;
use tests::util::{have_program, send_signal, sha256_file, wait_until, write_random_file, TempDir};
use tests::hapair::{ha_lan, persistent_round, CLIENT, DIP_A, DIP_B, PCLIENTS, RS};
use tests::{require_root_and_tools, DirectorOptions, DirectorProcess, Netns, VIP};


/// The documented keepalived.conf of director A (MASTER) or B (BACKUP): docs/keepalived/,
/// VRRP plus the virtual_server blocks; `keepalived --vrrp` uses the VRRP half.
fn keepalived_conf(state: &str) -> std::path::PathBuf {
    let who = if state == "MASTER" { "a" } else { "b" };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../docs/keepalived/director-{who}.conf"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.contains(&format!("state {state}")) && text.contains(&format!("{VIP}/32 dev dpdk0")), "{}", path.display());
    path
}

/// keepalived (VRRP only, foreground, logging to the console) in `ns`.
fn start_keepalived(ns: &Netns, dir: &Path, name: &str, state: &str) -> ChildGuard {
    let conf = keepalived_conf(state);
    let p = |s: &str| dir.join(format!("{name}.{s}")).display().to_string();
    ns.spawn_logged(
        &[
            "keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp", "-f", &conf.display().to_string(),
            "-p", &p("pid"), "-r", &p("vrrp.pid"), "-c", &p("checkers.pid"),
        ],
        &dir.join(format!("{name}.log")),
    )
}

/// Addresses, services, mark rule and both sync daemons (the VIP comes from keepalived).
fn configure(d: &DirectorProcess, dip: &str) {
    d.lbadm_ok(&["addr", "add", &format!("{dip}/24"), "dev", "dpdk0"]);
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
    for role in ["master", "backup"] {
        d.lbadm_ok(&["--start-daemon", role, "--mcast-interface", "dpdk0", "--syncid", "7"]);
    }
}

fn owns_vip(d: &DirectorProcess) -> bool {
    d.lbadm(&["addr", "show"]).status.success() && String::from_utf8_lossy(&d.lbadm(&["addr", "show"]).stdout).contains(&format!("{VIP}/32"))
}

/// A rate-limited upload through the VIP (about `secs` seconds), in the background.
struct Upload {
    child: ChildGuard,
    want: String,
    reply: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Upload {
    fn start(client: &Netns, dir: &Path, name: &str, kib: usize) -> Upload {
        let file = dir.join(format!("{name}.bin"));
        write_random_file(&file, kib * 1024);
        let reply = dir.join(format!("{name}.reply"));
        let log = dir.join(format!("{name}.log"));
        let child = client.spawn_logged(
            &[
                "curl", "-s", "-S", "--fail", "--max-time", "90", "--limit-rate", "192k", "-H", "Expect:",
                "-H", "Content-Type: application/octet-stream", "--data-binary", &format!("@{}", file.display()),
                "-o", &reply.display().to_string(), &format!("http://{VIP}/"),
            ],
            &log,
        );
        Upload { child, want: sha256_file(&file), reply, log }
    }

    /// Waits (≤ 90 s) and checks the upload arrived byte-identical, without error.
    fn finish(mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.child.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = self.child.try_status();
        assert!(
            status.is_some_and(|s| s.success()),
            "{what}: curl failed ({status:?}): {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        let reply = std::fs::read_to_string(&self.reply).unwrap_or_default();
        assert_eq!(reply.split_whitespace().nth(1), Some(self.want.as_str()), "{what}: upload reply {reply:?}");
    }
}

/// The backup `d` lists an ESTABLISHED connection of `client` to VIP:80.
fn has_synced_upload(d: &DirectorProcess) -> bool {
    parse_conns(&d.lbadm_ok(&["-L", "-n", "-c"]))
        .iter()
        .any(|r| r.source_addr() == CLIENT && r.virt == format!("{VIP}:80") && r.state == "ESTABLISHED")
}

/// keepalived's VRRP child processes still in `ns` (started by this test: the namespace is
/// the test's own), killed by PID.
fn kill_keepalived_left_in(ns: &Netns) {
    for pid in ns.pids() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim().starts_with("keepalived") {
            send_signal(pid, "KILL");
        }
    }
    let gone = wait_until(Duration::from_secs(5), || {
        ns.pids().iter().all(|p| !std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().starts_with("keepalived"))
    });
    assert!(gone, "keepalived processes left in {}", ns.name());
}

#[test]
fn keepalived_pair_fails_over_and_back_keeping_connections() {
    let Some(_serial) = require_root_and_tools() else { return };
    if !have_program("keepalived") {
        if std::env::var_os("CI").is_some() {
            panic!("keepalived missing on CI (scripts/setup-host.sh installs it)");
        }
        eprintln!("SKIP: keepalived not installed (scripts/setup-host.sh installs it)");
        return;
    }
    let lan = ha_lan("hadira", "hadirb");
    let (client, ns_a, ns_b) = (&lan.client, &lan.a, &lan.b);
    let tmp = TempDir::new("lbt-ha");
    let opts = DirectorOptions { extra_args: vec!["--idle-sleep-us".into(), "50".into()], ..Default::default() };
    let mut a = DirectorProcess::start_with(ns_a, &["eth0"], &opts);
    let b = DirectorProcess::start_with(ns_b, &["eth0"], &opts);
    configure(&a, DIP_A);
    configure(&b, DIP_B);
    assert_eq!(
        b.lbadm_ok(&["-L", "--daemon"]),
        "master sync daemon (mcast=dpdk0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=dpdk0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    let mut ka_a = start_keepalived(ns_a, tmp.path(), "dira", "MASTER");
    let _ka_b = start_keepalived(ns_b, tmp.path(), "dirb", "BACKUP");
    let settled = wait_until(Duration::from_secs(15), || owns_vip(&a) && !owns_vip(&b));
    assert!(
        settled,
        "keepalived did not give the VIP to A (A {}, B {}):\n{}",
        owns_vip(&a),
        owns_vip(&b),
        std::fs::read_to_string(tmp.join("dira.log")).unwrap_or_default()
    );
    assert!(ns_a.exec_ok(&["ip", "-4", "addr", "show", "dev", "dpdk0"]).contains(VIP), "keepalived put the VIP on dpdk0");

    // Persistent clients through A; then a long upload.
    let before = persistent_round(client);
    assert!(before.iter().all(|(_, _, n)| n == "rs1" || n == "rs2"), "{before:?}");
    let up1 = Upload::start(client, tmp.path(), "upload1", 1536);
    assert!(
        wait_until(Duration::from_secs(10), || has_synced_upload(&b)),
        "B never learned the upload:\n{}",
        b.lbadm_ok(&["-L", "-n", "-c"])
    );
    let templates = parse_conns(&b.lbadm_ok(&["-L", "-n", "-c"])).iter().filter(|r| r.is_template()).count();
    assert!(templates >= PCLIENTS.len() * 2, "B holds {templates} templates");

    // Failover: SIGKILL the master director.
    let t0 = Instant::now();
    send_signal(a.pid().expect("A runs") as i32, "KILL");
    let owned = wait_until(Duration::from_secs(10), || owns_vip(&b));
    let failover = t0.elapsed();
    assert!(owned, "B did not get the VIP:\n{}", std::fs::read_to_string(tmp.join("dirb.log")).unwrap_or_default());
    assert!(failover <= Duration::from_secs(5), "B owned the VIP after {failover:?} (> 5 s)");
    a.stop();
    up1.finish("upload through the failover");
    let after = persistent_round(client);
    let kept1 = before.iter().zip(&after).filter(|(x, y)| x.2 == y.2).count();
    assert_eq!(before, after, "persistent clients moved at the failover");

    // Fail back: a second upload through B; A comes back, learns it, takes the VIP back.
    let up2 = Upload::start(client, tmp.path(), "upload2", 1536);
    std::thread::sleep(Duration::from_millis(500));
    // A's keepalived lost its interface with the director: restart it after the director,
    // as a host coming back would (keepalived after the director, once it is in sync).
    ka_a.stop(Duration::from_secs(2));
    kill_keepalived_left_in(&ns_a);
    let a2 = DirectorProcess::start_with(ns_a, &["eth0"], &opts);
    configure(&a2, DIP_A);
    assert!(
        wait_until(Duration::from_secs(15), || has_synced_upload(&a2)),
        "A never learned B's upload:\n{}",
        a2.lbadm_ok(&["-L", "-n", "-c"])
    );
    // Persistent clients keep reconnecting through B: their templates reach A as well.
    let during = persistent_round(client);
    assert!(
        wait_until(Duration::from_secs(10), || parse_conns(&a2.lbadm_ok(&["-L", "-n", "-c"])).iter().filter(|r| r.is_template()).count() >= PCLIENTS.len() * 2),
        "A did not learn the templates"
    );
    let t1 = Instant::now();
    let _ka_a2 = start_keepalived(ns_a, tmp.path(), "dira2", "MASTER");
    let back = wait_until(Duration::from_secs(15), || owns_vip(&a2) && !owns_vip(&b));
    let failback = t1.elapsed();
    assert!(back, "A did not take the VIP back:\n{}", std::fs::read_to_string(tmp.join("dira2.log")).unwrap_or_default());
    up2.finish("upload through the fail back");
    let final_round = persistent_round(client);
    let kept2 = during.iter().zip(&final_round).filter(|(x, y)| x.2 == y.2).count();
    println!(
        "HA pair: failover (SIGKILL of the master director -> backup owns the VIP) {:.2} s; fail back (keepalived restarted on A -> A owns the VIP) {:.2} s; \
         uploads kept 2/2; persistent connections kept {}/{} at failover and {}/{} at fail back (lost {} and {})",
        failover.as_secs_f64(),
        failback.as_secs_f64(),
        kept1,
        before.len(),
        kept2,
        during.len(),
        before.len() - kept1,
        during.len() - kept2
    );
    assert_eq!(during, before, "persistent clients moved while B served");
    assert_eq!(final_round, before, "persistent clients moved at the fail back");
    drop(lan);
}
