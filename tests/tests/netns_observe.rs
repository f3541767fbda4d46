//! Seeing inside a running director, with the tools operators already use (issue 14):
//!
//! * `prometheus_scrapes_ipvs_metrics_of_a_live_service`: the director runs with
//!   `--metrics 127.0.0.1:9120`; a real Prometheus server (Debian's binary, its own temporary
//!   config and storage, on the director namespace's loopback) scrapes it every second, and
//!   its HTTP API answers `node_ipvs_backend_connections_active` of a service with six held
//!   connections (3 + 3 under rr). The scraped text passes `promtool check metrics`, names a
//!   firewall-mark service the way node_exporter does (`proto="FWM"`, `local_mark="0000000A"`),
//!   and the director's log has one timestamped line per configuration change.
//! * `capture_and_telemetry_of_a_running_director`: `dpdk-dumpcap` attaches to the running
//!   director (a primary keeping its shared files: hugepages, no `--in-memory`) and captures
//!   two HTTP connections through the VIP; `tshark` reads the file back and finds the clients'
//!   SYNs both as received (to the director's MAC) and as forwarded (to the real server's MAC:
//!   the DR rewrite). `dpdk-telemetry.py` reads `/director/services`, `/director/workers` and
//!   `/director/drops`. Without hugepages the capture half is skipped (DPDK secondaries cannot
//!   attach to a `--no-huge` primary) and telemetry is still checked.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test netns_observe -- --test-threads=1 --nocapture`.

use std::time::Duration;

use tests::many::{HoldClient, HoldServer};
use tests::netns::Netns;
use tests::util::{describe, have_program, run_timeout, TempDir};
use tests::{hugepages_available, require_root_and_tools, wait_until, DirectorOptions, OneArmed, VIP};

/// Port of the held connections' service.
const HOLD_PORT: u16 = 9000;
/// Where the director serves metrics (its namespace's loopback).
const METRICS: &str = "127.0.0.1:9120";
/// Where the test's Prometheus listens (same namespace).
const PROMETHEUS: &str = "127.0.0.1:9091";

/// A program the test needs: on CI its absence fails the test (setup-host.sh installs it).
fn need(program: &str) -> bool {
    if have_program(program) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("missing program `{program}` (scripts/setup-host.sh installs it)");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: missing program `{program}` (run scripts/setup-host.sh)");
    false
}

/// `curl -s URL` inside `ns` (stdout; panics on failure).
fn curl(ns: &Netns, args: &[&str]) -> String {
    let mut full = vec!["curl", "-s", "--max-time", "5"];
    full.extend_from_slice(args);
    let out = ns.exec_timeout(&full, Duration::from_secs(10));
    assert!(out.status.success(), "{}", describe(&full.join(" "), &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `promtool check metrics` on `text`: (success, its output).
fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn prometheus_scrapes_ipvs_metrics_of_a_live_service() {
    let Some(_serial) = require_root_and_tools() else { return };
    if !need("prometheus") || !need("promtool") {
        return;
    }
    let tb = OneArmed::new(2);
    let _holds: Vec<HoldServer> = tb.rs.iter().map(|r| HoldServer::start(&r.ns, HOLD_PORT, 128)).collect();
    let d = tb.start_director_with(&DirectorOptions {
        extra_args: vec!["--metrics".into(), METRICS.into()],
        ..Default::default()
    });
    tb.configure_service(&d, "rr");
    let vs = format!("{VIP}:{HOLD_PORT}");
    d.lbadm_ok(&["-A", "-t", &vs, "-s", "rr"]);
    for r in &tb.rs {
        d.lbadm_ok(&["-a", "-t", &vs, "-r", &format!("{}:{HOLD_PORT}", r.ip), "-g", "-w", "1"]);
    }
    // A firewall-mark service (no traffic): its labels as node_exporter writes them.
    d.lbadm_ok(&["-A", "-f", "10", "-s", "rr"]);
    d.lbadm_ok(&["-a", "-f", "10", "-r", &tb.rs[0].ip, "-g", "-w", "3"]);

    let mut hold = HoldClient::start(&tb.client, VIP, HOLD_PORT, &[], 6, 6, 20, 120);
    let rep = hold.wait_settled(Duration::from_secs(30));
    assert_eq!((rep.established, rep.failed), (6, 0), "{}", hold.output());

    // The exposition itself: promtool-clean, node_exporter's names and labels.
    let text = curl(&tb.director_ns, &[&format!("http://{METRICS}/metrics")]);
    let (ok, lint) = promtool_check(&text);
    assert!(ok && lint.trim().is_empty(), "promtool check metrics failed:\n{lint}\n--- exposition ---\n{text}");
    for want in [
        "# HELP node_ipvs_backend_connections_active The current active connections by local and remote address.\n",
        "# TYPE node_ipvs_backend_connections_active gauge\n",
        &format!(
            "node_ipvs_backend_weight{{local_address=\"\",local_mark=\"0000000A\",local_port=\"0\",proto=\"FWM\",remote_address=\"{}\",remote_port=\"0\"}} 3\n",
            tb.rs[0].ip
        ),
        &format!(
            "node_ipvs_backend_connections_active{{local_address=\"{VIP}\",local_mark=\"\",local_port=\"{HOLD_PORT}\",proto=\"TCP\",remote_address=\"{}\",remote_port=\"{HOLD_PORT}\"}} 3\n",
            tb.rs[1].ip
        ),
        "node_ipvs_connections_total 6\n",
    ] {
        assert!(text.contains(want), "exposition lacks {want:?}\n--- exposition ---\n{text}");
    }

    // A real Prometheus server scraping the director every second.
    let dir = TempDir::new("lbt-prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: director\n    static_configs:\n      - targets: ['{METRICS}']\n"
        ),
    )
    .unwrap();
    let storage = dir.join("data");
    let log = dir.join("prometheus.log");
    let (c, s) = (format!("--config.file={}", config.display()), format!("--storage.tsdb.path={}", storage.display()));
    let listen = format!("--web.listen-address={PROMETHEUS}");
    let mut prom = tb.director_ns.spawn_logged(&["prometheus", &c, &s, &listen, "--log.level=warn"], &log);
    let api = format!("http://{PROMETHEUS}/api/v1/query");
    let query = format!("query=node_ipvs_backend_connections_active{{local_address=\"{VIP}\",local_port=\"{HOLD_PORT}\",proto=\"TCP\"}}");
    let mut last = String::new();
    let answered = wait_until(Duration::from_secs(40), || {
        if !prom.is_running() {
            return true;
        }
        let out = tb.director_ns.exec_timeout(&["curl", "-s", "--max-time", "3", &api, "--data-urlencode", &query], Duration::from_secs(5));
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
        v["data"]["result"].as_array().is_some_and(|r| r.len() == 2)
    });
    assert!(
        answered && prom.is_running(),
        "Prometheus did not answer with both backends within 40 s (running: {})\nlast answer: {last}\n--- prometheus log ---\n{}",
        prom.is_running(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    let mut got: Vec<(String, String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["remote_address"].as_str().unwrap_or("").to_string(),
                r["metric"]["job"].as_str().unwrap_or("").to_string(),
                r["value"][1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, String, String)> =
        tb.rs.iter().map(|r| (r.ip.clone(), "director".to_string(), "3".to_string())).collect();
    assert_eq!(got, want, "Prometheus answer: {last}");
    println!("Prometheus: node_ipvs_backend_connections_active of {VIP}:{HOLD_PORT} = {got:?}");
    prom.stop(Duration::from_secs(5));
    hold.stop();

    // The log: one timestamped line per change, level and target named.
    let log = d.log_text();
    let stamped = |needle: &str| {
        log.lines().any(|l| {
            let b = l.as_bytes();
            b.len() > 24 && b[4] == b'-' && b[10] == b'T' && b[23] == b'Z' && l[24..].starts_with(" INFO  control: ") && l.ends_with(needle)
        })
    };
    for needle in [
        format!("service TCP {VIP}:{HOLD_PORT} added (scheduler rr, not persistent)"),
        format!("server {}:{HOLD_PORT} added to TCP {VIP}:{HOLD_PORT} (Route, weight 1)", tb.rs[0].ip),
        "service FWM 10 added (scheduler rr, not persistent)".to_string(),
        format!("address {VIP}/32 added on dpdk0"),
    ] {
        assert!(stamped(&needle), "no log line ending {needle:?}:\n{log}");
    }
    assert_eq!(log.matches(&format!("service TCP {VIP}:{HOLD_PORT} added")).count(), 1, "{log}");
}

#[test]
fn capture_and_telemetry_of_a_running_director() {
    let Some(_serial) = require_root_and_tools() else { return };
    if !need("dpdk-telemetry.py") || !need("dpdk-dumpcap") || !need("tshark") {
        return;
    }
    let capture = hugepages_available();
    if !capture {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP (capture half): no hugepages; a --no-huge primary cannot take secondary processes"
        );
    }
    let tb = OneArmed::new(2);
    let d = tb.start_director_with(&DirectorOptions { shared_files: capture, ..Default::default() });
    tb.configure_service(&d, "rr");
    let dir = TempDir::new("lbt-capture");

    if capture {
        let file = dir.join("dpdk0.pcapng");
        let log = dir.join("dumpcap.log");
        let file_s = file.display().to_string();
        // -i 0: dpdk0 is port id 0 (dumpcap takes the DPDK device name or the port id);
        // -p: leave the port's promiscuous mode alone; -a: a bound, it is stopped by SIGTERM.
        let mut dumpcap = tb.director_ns.spawn_logged(
            &["dpdk-dumpcap", "--file-prefix", d.eal_prefix(), "-i", "0", "-p", "-w", &file_s, "-a", "duration:60"],
            &log,
        );
        // "Packets captured:" goes to stderr right after the primary installed its callbacks.
        let started = wait_until(Duration::from_secs(15), || {
            !dumpcap.is_running() || std::fs::read_to_string(&log).unwrap_or_default().contains("Packets captured:")
        });
        assert!(
            started && dumpcap.is_running(),
            "dpdk-dumpcap did not attach:\n{}\n--- director log ---\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            d.log_text()
        );
        let names: Vec<String> = (0..2).map(|_| tb.get_vip().expect("GET through the VIP during the capture")).collect();
        std::thread::sleep(Duration::from_millis(500));
        let st = dumpcap.stop(Duration::from_secs(10));
        assert!(st.is_some_and(|s| s.success()), "dpdk-dumpcap ended with {st:?}:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        let out = run_timeout(
            "tshark",
            &[
                "-r",
                &file_s,
                "-Y",
                "tcp.flags.syn == 1 && tcp.flags.ack == 0",
                "-T",
                "fields",
                "-e",
                "eth.dst",
                "-e",
                "ip.src",
                "-e",
                "ip.dst",
                "-e",
                "tcp.dstport",
            ],
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "{}", describe("tshark -r", &out));
        let text = String::from_utf8_lossy(&out.stdout);
        println!("captured SYNs (eth.dst ip.src ip.dst port) while {names:?} answered:\n{text}");
        let mac_of = |ns: &Netns, dev: &str| {
            let t = ns.exec_ok(&["cat", &format!("/sys/class/net/{dev}/address")]);
            t.trim().to_string()
        };
        let director_mac = mac_of(&tb.director_ns, OneArmed::DIRECTOR_IF);
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        let syn = |mac: &str| {
            rows.iter()
                .filter(|r| r.len() == 4 && r[0] == mac && r[1] == OneArmed::CLIENT_IP && r[2] == VIP && r[3] == "80")
                .count()
        };
        assert_eq!(syn(&director_mac), 2, "two SYNs received (to the director's MAC {director_mac}):\n{text}");
        let forwarded: usize = tb.rs.iter().map(|r| syn(&mac_of(&r.ns, "eth0"))).sum();
        assert_eq!(forwarded, 2, "two SYNs sent on to the real servers' MACs (DR):\n{text}");
    } else {
        for _ in 0..2 {
            tb.get_vip().expect("GET through the VIP");
        }
    }

    // Telemetry: the director's own commands next to DPDK's.
    let out = {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("dpdk-telemetry.py")
            .args(["-f", d.eal_prefix()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dpdk-telemetry.py");
        let cmds = "/director/services\n/director/services,0\n/director/workers\n/director/drops\n/director/drops,0\n/director/services,7\n";
        child.stdin.take().unwrap().write_all(cmds.as_bytes()).unwrap();
        let pid = child.id();
        let waiter = std::thread::spawn(move || child.wait_with_output());
        // Bounded: the script ends at EOF of its input.
        if !wait_until(Duration::from_secs(20), || waiter.is_finished()) {
            tests::util::send_signal(pid as i32, "KILL");
        }
        waiter.join().unwrap().expect("dpdk-telemetry.py")
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let replies: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("--> ").strip_prefix('{').map(|r| format!("{{{r}")))
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    println!("telemetry:\n{text}");
    assert_eq!(replies.len(), 6, "six JSON replies expected:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let vs = format!("TCP {VIP}:80");
    assert_eq!(replies[0]["/director/services"], serde_json::json!([vs]), "{text}");
    let svc = &replies[1]["/director/services"];
    assert_eq!(svc["service"], serde_json::json!(vs), "{text}");
    assert_eq!(svc["connections"], serde_json::json!(2), "{text}");
    let servers: Vec<String> = tb.rs.iter().rev().map(|r| format!("{}:80", r.ip)).collect();
    assert_eq!(svc["servers"], serde_json::json!(servers), "servers in -L order (newest first): {text}");
    assert_eq!(svc["server_connections"], serde_json::json!([1, 1]), "rr: one connection each: {text}");
    let w = &replies[2]["/director/workers"];
    assert_eq!(w["responding"], serde_json::json!([1]), "{text}");
    assert!(w["packets"][0].as_u64().unwrap_or(0) >= 10, "{text}");
    assert_eq!(w["conn_capacity"][0].as_u64(), Some(d_capacity(&d)), "{text}");
    let drops = &replies[3]["/director/drops"];
    assert!(drops["no_service"].is_u64() && drops["table_full"] == serde_json::json!(0), "{text}");
    assert!(replies[4]["/director/drops"]["no_service"].is_u64(), "{text}");
    assert_eq!(replies[5]["/director/services"], serde_json::Value::Null, "an unknown service is an error (null): {text}");
}

/// The connection-table capacity per worker `-L` shows as `(size=N)`.
fn d_capacity(d: &tests::DirectorProcess) -> u64 {
    let text = d.lbadm_ok(&["-L", "-n"]);
    text.split("(size=")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no (size=N) in {text}"))
}
