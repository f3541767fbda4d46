//! Faults in the one-armed DR testbed (tests/src/testbed.rs):
//!
//! * `link_down_and_up`: the director's port loses its link for ~3 s; `lbadm link show` says
//!   DOWN while it lasts and counts the changes and the time down; traffic through the VIP
//!   resumes once the link is back.
//! * `real_server_changes_mac`: a real server's interface gets a new MAC (a replaced NIC or
//!   box, no gratuitous ARP); the director keeps the old one while the entry is REACHABLE,
//!   re-probes when it goes STALE and follows: traffic reaches the server again within the
//!   neighbour timeout (30 s REACHABLE + a probe), and `lbadm neigh show` shows the new MAC.
//! * `sigkill_under_traffic_then_restart`: the director is killed with SIGKILL while clients
//!   make requests and an upload is in flight, then started again with `--config` of its
//!   saved configuration: the service returns; the test prints how long it took and what
//!   was lost (requests during the outage, the connection in flight: the new director has no
//!   entry for it and answers its packets with a reset).
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test netns_faults -- --test-threads=1`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tests::topo::mac_of;
use tests::util::{send_signal, write_random_file};
use tests::{curl_post_file, require_root_and_tools, DirectorOptions, OneArmed, TempDir, VIP};

/// dpdk0 in `lbadm link show`: (up, changes, seconds down) from its `state` and `link:` lines.
fn link_state(d: &tests::DirectorProcess) -> (bool, u64, u64) {
    let text = d.lbadm_ok(&["link", "show"]);
    let up = text.starts_with("dpdk0: state UP");
    let (mut changes, mut down) = (0, 0);
    if let Some(l) = text.lines().find_map(|l| l.strip_prefix("    link: changes ")) {
        let f: Vec<&str> = l.split_whitespace().collect();
        changes = f.first().and_then(|v| v.parse().ok()).unwrap_or(0);
        down = f.get(2).and_then(|v| v.trim_end_matches('s').parse().ok()).unwrap_or(0);
    }
    (up, changes, down)
}

/// GETs through the VIP until one is answered (by anyone) or `limit` passes; the time it took.
fn until_served(tb: &OneArmed, limit: Duration) -> Option<(Duration, String)> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Ok(body) = tests::curl_get(&tb.client, &format!("http://{VIP}/"), 1) {
            return Some((t0.elapsed(), body));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn link_down_and_up() {
    let Some(_serial) = require_root_and_tools() else { return };
    let tb = OneArmed::new(1);
    let d = tb.start_director();
    tb.configure_service(&d, "rr");
    assert_eq!(tb.get_vip().expect("GET before the fault"), "rs1");
    assert_eq!(link_state(&d), (true, 0, 0));

    tb.director_ns.exec_ok(&["ip", "link", "set", OneArmed::DIRECTOR_IF, "down"]);
    let down_at = Instant::now();
    assert!(tests::wait_until(Duration::from_secs(3), || !link_state(&d).0), "link show never said DOWN");
    let text = d.lbadm_ok(&["link", "show"]);
    assert!(text.starts_with("dpdk0: state DOWN"), "{text}");
    assert!(tests::curl_get(&tb.client, &format!("http://{VIP}/"), 1).is_err(), "served with the link down");
    std::thread::sleep(Duration::from_secs(3).saturating_sub(down_at.elapsed()));
    tb.director_ns.exec_ok(&["ip", "link", "set", OneArmed::DIRECTOR_IF, "up"]);
    let down_for = down_at.elapsed();
    let (took, body) = until_served(&tb, Duration::from_secs(15)).expect("traffic never resumed after the link came back");
    assert_eq!(body, "rs1");
    let (up, changes, down_secs) = link_state(&d);
    assert!(up && changes == 2 && (2..=10).contains(&down_secs), "link show after the flap: up {up}, changes {changes}, down {down_secs}s");
    let text = d.lbadm_ok(&["link", "show"]);
    assert!(text.contains("    link: changes 2 down "), "{text}");
    println!("link down {:.1} s; traffic resumed {:.1} s after the link came back; link show:\n{text}", down_for.as_secs_f64(), took.as_secs_f64());
}

#[test]
fn real_server_changes_mac() {
    let Some(_serial) = require_root_and_tools() else { return };
    let tb = OneArmed::new(1);
    let d = tb.start_director();
    tb.configure_service(&d, "rr");
    assert_eq!(tb.get_vip().expect("GET before the change"), "rs1");
    let rs = &tb.rs[0];
    let old = mac_of(&rs.ns, "eth0");
    let new = "02:00:00:00:5e:77";
    assert_ne!(old, new);
    assert!(d.lbadm_ok(&["neigh", "show"]).contains(&old));

    // A new NIC: down, new address, up (no gratuitous ARP: arp_notify is off by default).
    rs.ns.exec_ok(&["ip", "link", "set", "eth0", "down"]);
    rs.ns.exec_ok(&["ip", "link", "set", "eth0", "address", new]);
    rs.ns.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    let changed = Instant::now();
    // REACHABLE lasts 30 s, then the entry goes STALE and is probed (one probe a second).
    let (took, body) = until_served(&tb, Duration::from_secs(45)).expect("traffic never followed the new MAC within 45 s");
    assert_eq!(body, "rs1");
    let neigh = d.lbadm_ok(&["neigh", "show"]);
    assert!(neigh.contains(new) && !neigh.contains(&old), "neigh show after the change:\n{neigh}");
    println!("traffic followed the new MAC after {:.1} s ({:.1} s since the change)\n{neigh}", took.as_secs_f64(), changed.elapsed().as_secs_f64());
}

#[test]
fn sigkill_under_traffic_then_restart() {
    let Some(_serial) = require_root_and_tools() else { return };
    let tb = OneArmed::new(2);
    let dir = TempDir::new("lbt-faults");
    let mut d = tb.start_director();
    tb.configure_service(&d, "rr");
    d.lbadm_ok(&["sysctl", "-w", "net.ipv4.vs.drop_entry=1"]);
    let saved = dir.join("director.conf");
    assert_eq!(d.lbadm_ok(&["save", &saved.display().to_string()]), "");

    // Clients: a GET every 100 ms, and one upload in flight (4 MiB at 400 KB/s: ~10 s).
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let client_ns = tb.client.name().to_string();
    let getter = {
        let (stop, log, ns) = (stop.clone(), log.clone(), client_ns.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let ok = tests::util::run_timeout(
                    "ip",
                    &["netns", "exec", &ns, "curl", "-s", "--fail", "--max-time", "1", &format!("http://{VIP}/")],
                    Duration::from_secs(5),
                )
                .status
                .success();
                log.lock().unwrap().push((Instant::now(), ok));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let upload_file = dir.join("upload.bin");
    write_random_file(&upload_file, 4 << 20);
    let upload = {
        let (ns, file) = (client_ns.clone(), upload_file.clone());
        std::thread::spawn(move || {
            tests::util::run_timeout(
                "ip",
                &[
                    "netns", "exec", &ns, "curl", "-s", "-S", "--fail", "--max-time", "40", "--limit-rate", "400K", "-H", "Expect:",
                    "-H", "Content-Type: application/octet-stream", "--data-binary", &format!("@{}", file.display()),
                    &format!("http://{VIP}/upload"),
                ],
                Duration::from_secs(50),
            )
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let entries_before = d.lbadm_ok(&["-L", "-n", "-c"]).lines().filter(|l| l.starts_with("TCP")).count();

    let pid = d.pid().expect("director pid") as i32;
    send_signal(pid, "KILL");
    let killed = Instant::now();
    assert!(tests::wait_until(Duration::from_secs(5), || !d.is_running()), "the director survived SIGKILL");
    drop(d);
    let opts = DirectorOptions { extra_args: vec!["--config".into(), saved.display().to_string()], ..Default::default() };
    let d2 = tb.start_director_with(&opts);
    let started = killed.elapsed();
    let ips: Vec<&str> = tb.rs.iter().map(|r| r.ip.as_str()).collect();
    d2.wait_neigh_reachable(&ips, tests::director::NEIGH_TIMEOUT);
    let resolved = killed.elapsed();
    let (_, body) = until_served(&tb, Duration::from_secs(20)).expect("the service did not return after the restart");
    assert!(body == "rs1" || body == "rs2", "{body}");
    let served = killed.elapsed();
    assert!(d2.lbadm_ok(&["sysctl", "net.ipv4.vs.drop_entry"]).contains("= "), "sysctls restored");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    getter.join().unwrap();
    let up = upload.join().unwrap();
    let log = log.lock().unwrap();
    let failed: Vec<&(Instant, bool)> = log.iter().filter(|(t, ok)| !ok && *t >= killed).collect();
    let first_ok = log.iter().find(|(t, ok)| *ok && *t >= killed).map(|(t, _)| t.duration_since(killed));
    assert!(first_ok.is_some(), "no request succeeded after the restart");
    assert!(log.iter().filter(|(t, _)| *t < killed).all(|(_, ok)| *ok), "requests failed before the kill");
    // The upload in flight crossed the restart: the new director has no entry for it.
    let upload_lost = !up.status.success();
    println!(
        "SIGKILL → new director ready {:.1} s, servers resolved {:.1} s, first GET served {:.1} s (client loop: {:.1} s); \
         lost: {} GETs during the outage, {} connection entries of the killed director (the in-flight upload {}: {})",
        started.as_secs_f64(),
        resolved.as_secs_f64(),
        served.as_secs_f64(),
        first_ok.unwrap_or_default().as_secs_f64(),
        failed.len(),
        entries_before,
        if upload_lost { "was reset" } else { "completed" },
        String::from_utf8_lossy(&up.stderr).trim()
    );
    assert!(upload_lost, "an upload in flight cannot survive the restart without connection sync");
    assert!(served < Duration::from_secs(45), "service took {served:?} to return");
    let _ = curl_post_file;
}
