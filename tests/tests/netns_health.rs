//! Health checks the way keepalived does them, end to end: a real director in a namespace,
//! Debian's nginx as the real servers, curl clients through the VIP, and the checkers'
//! probes going out through the kernel leg (`dpdk0` in the director's namespace) from the
//! director's address.
//!
//! * `kill_nginx_*`: one server's nginx stops under steady curl traffic; it leaves rotation
//!   within delay_loop × (1 + retry) + connect_timeout, after which no client request
//!   reaches it (tcpdump on the server counts the clients' SYNs: zero); restarted, it is
//!   back within one delay_loop.
//! * `http_and_ssl_*`: HTTP_GET fails on status 500 and on a wrong digest; SSL_GET with a CA
//!   fails on an expired and on a foreign certificate, passes on a good one.
//! * `misc_quorum_*`: MISC_CHECK exit codes and misc_dynamic weights in `-L -n`;
//!   inhibit_on_failure keeps the server listed at weight 0; quorum loss puts the local-node
//!   sorry server (seed 003's FAIL_BACK=127.0.0.1: nginx on the director host) alone in the
//!   pool and back; `lbadm save` round-trips the checks.
//! * `keepalived_*`: DR adaptations of keepalived's doc/samples/keepalived.conf.sample
//!   (`director --keepalived`) and keepalived.conf.fwmark (`lbadm restore --keepalived`)
//!   load and behave; a malformed file changes nothing and names the line, for both.
//!
//! Run as root: `make test`, or after `make build`:
//! `cargo test -p tests --release --test netns_health`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tests::nginx::{md5_hex, NginxBed, TestCa, HEALTH_MD5, SAMPLE_MD5};
use tests::util::TempDir;
use tests::{require_root_and_tools, wait_until, DirectorProcess, VIP};

/// `(server addr:port, weight)` of service `svc` in `-L -n` (empty if the service is gone).
fn pool(d: &DirectorProcess, svc: &str) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = d
        .list()
        .into_iter()
        .find(|s| s.addr == svc)
        .map(|s| s.servers.into_iter().map(|r| (r.addr, r.weight)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn p(entries: &[(&str, i64)]) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = entries.iter().map(|(a, w)| (a.to_string(), *w)).collect();
    v.sort();
    v
}

/// Polls (every 50 ms, at most `limit`) until `cond`; the time it took, or a panic with the
/// listing and the checkers' state.
fn wait_for(d: &DirectorProcess, limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if cond() {
            return t0.elapsed();
        }
        if t0.elapsed() > limit {
            panic!(
                "{what}: not within {limit:?}\n{}\n{}\n--- director log ---\n{}",
                d.lbadm_ok(&["-L", "-n"]),
                d.lbadm_ok(&["check", "show"]),
                d.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every checker of `lbadm check show --json` has run at least once.
fn all_checked(d: &DirectorProcess) -> bool {
    let j: serde_json::Value = serde_json::from_str(&d.lbadm_ok(&["check", "show", "--json"])).unwrap();
    let checks: Vec<&serde_json::Value> = j["services"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["servers"].as_array().unwrap().iter())
        .flat_map(|s| s["checks"].as_array().unwrap().iter())
        .collect();
    !checks.is_empty() && checks.iter().all(|c| c["runtime"]["probes"].as_u64().unwrap_or(0) > 0)
}

#[test]
fn kill_nginx_under_traffic_leaves_rotation_in_bound_and_comes_back_within_one_delay_loop() {
    let Some(_serial) = require_root_and_tools() else { return };
    let tb = NginxBed::new(2, |_| None, TempDir::new("lbt-health"));
    let d = tb.start_director(&[]);
    tb.addresses(&d);
    let vs = format!("{VIP}:80");
    d.lbadm_ok(&["-A", "-t", &vs, "-s", "rr"]);
    for r in &tb.rs {
        d.lbadm_ok(&["-a", "-t", &vs, "-r", &format!("{}:80", r.ip), "-g", "-w", "1"]);
    }
    tb.wait_neigh(&d);
    // keepalived's timing, shortened: delay_loop 1, retry 1, delay_before_retry 0.5,
    // connect_timeout 1.
    for r in &tb.rs {
        d.lbadm_ok(&[
            "check", "add", "-t", &vs, "-r", &r.ip, "tcp", "--delay-loop", "1", "--retry", "1",
            "--delay-before-retry", "0.5", "--connect-timeout", "1", "--warmup", "0",
        ]);
    }
    wait_for(&d, Duration::from_secs(5), "first probes through the kernel leg", || all_checked(&d));
    let rs1 = format!("{}:80", tb.rs[0].ip);
    let rs2 = format!("{}:80", tb.rs[1].ip);
    assert_eq!(pool(&d, &vs), p(&[(&rs1, 1), (&rs2, 1)]));

    // Steady traffic: one curl every 50 ms, each a new connection.
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<(Instant, Result<String, String>)>>> = Arc::new(Mutex::new(Vec::new()));
    let traffic = {
        let (stop, log) = (Arc::clone(&stop), Arc::clone(&log));
        let client = tb.client.name().to_string();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(60) {
                let out = tests::util::run_timeout(
                    "ip",
                    &["netns", "exec", &client, "curl", "-s", "-S", "--fail", "--max-time", "1", &format!("http://{VIP}/")],
                    Duration::from_secs(3),
                );
                let r = if out.status.success() {
                    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
                };
                log.lock().unwrap().push((Instant::now(), r));
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));

    let mut tb = tb;
    let killed = Instant::now();
    tb.rs[0].nginx.stop();
    let bound = Duration::from_millis(1000 * (1 + 1) + 1000);
    let took = wait_for(&d, bound + Duration::from_secs(2), "removal of the dead server", || pool(&d, &vs) == p(&[(&rs2, 1)]));
    let removed = Instant::now();
    println!("nginx on rs1 stopped: removed from the pool after {took:?} (bound delay_loop x (1 + retry) + connect_timeout = {bound:?})");
    assert!(took <= bound + Duration::from_millis(200), "{took:?} > {bound:?}");

    // After the transition no client request reaches rs1: its SYNs from the client, counted
    // on rs1 itself, are zero (the checker's own probes come from the director's address).
    let client_syns = |tb: &NginxBed, file: &str| -> usize {
        let cap = tb.dir.join(file);
        let mut tcpdump = tb.rs[0].ns.spawn_logged(
            &["tcpdump", "-i", "eth0", "-nn", "-l", "-p", &format!("tcp[tcpflags] & tcp-syn != 0 and src host {} and dst port 80", NginxBed::CLIENT_IP)],
            &cap,
        );
        std::thread::sleep(Duration::from_secs(3));
        tcpdump.stop(Duration::from_secs(2));
        std::fs::read_to_string(&cap).unwrap_or_default().lines().filter(|l| l.contains(" > ")).count()
    };
    let cap = tb.dir.join("rs1-syns.txt");
    let syns = client_syns(&tb, "rs1-syns.txt");
    let (before, after, failed_after): (usize, usize, usize) = {
        let l = log.lock().unwrap();
        let before = l.iter().filter(|(t, r)| *t < removed && *t > killed && r.is_err()).count();
        let after: Vec<_> = l.iter().filter(|(t, _)| *t > removed).collect();
        let failed = after.iter().filter(|(_, r)| r.as_deref() != Ok("rs2")).count();
        (before, after.len(), failed)
    };
    println!("requests failing between the kill and the removal: {before}; after the removal: {after} requests, {failed_after} not answered by rs2, {syns} client SYNs seen on rs1");
    assert!(after >= 10, "too little traffic after the removal: {after}");
    assert_eq!(failed_after, 0, "a request after the transition did not get rs2");
    assert_eq!(syns, 0, "client connections reached rs1 after the transition:\n{}", std::fs::read_to_string(&cap).unwrap_or_default());

    // Restarted: back within one delay_loop (plus the probe and one publication).
    let restarted = Instant::now();
    let NginxBed { rs, director_ns: _, .. } = &mut tb;
    let r0 = &mut rs[0];
    r0.nginx.restart(&r0.ns);
    let ready = restarted.elapsed();
    let took = wait_for(&d, Duration::from_secs(3), "return of rs1", || pool(&d, &vs) == p(&[(&rs1, 1), (&rs2, 1)]));
    println!("nginx on rs1 restarted ({ready:?} to answer): back in the pool {took:?} later (delay_loop 1 s)");
    assert!(took <= Duration::from_millis(1000 + 300), "{took:?}");
    assert!(
        wait_until(Duration::from_secs(5), || log.lock().unwrap().iter().any(|(t, r)| *t > restarted && r.as_deref() == Ok("rs1"))),
        "no request reached rs1 after it came back"
    );
    // The same capture sees the clients' SYNs once rs1 is back (it does count them).
    let back = client_syns(&tb, "rs1-syns-back.txt");
    assert!(back > 0, "tcpdump saw no client SYN on rs1 after its return");
    stop.store(true, Ordering::SeqCst);
    traffic.join().unwrap();
    let show = d.lbadm_ok(&["check", "show"]);
    assert!(show.contains("servers up/down 1/1"), "{show}");
    assert!(d.log_text().contains(&format!("Removing service {rs1} from VS TCP {vs}")), "one log line per change:\n{}", d.log_text());
}

#[test]
fn http_get_and_ssl_get_fail_on_bad_status_digest_and_certificates() {
    let Some(_serial) = require_root_and_tools() else { return };
    let dir = TempDir::new("lbt-health");
    let ca = TestCa::new(dir.path(), "test-ca");
    let other = TestCa::new(dir.path(), "other-ca");
    let good = ca.issue("www.example", None);
    let expired = ca.issue("www.example", Some(("20200101000000Z", "20200102000000Z")));
    let foreign = other.issue("www.example", None);
    let certs = [good, expired, foreign];
    let tb = NginxBed::new(3, |i| Some(certs[i].clone()), dir);
    assert_eq!(md5_hex(b"ok\n"), HEALTH_MD5);
    let d = tb.start_director(&[]);
    tb.addresses(&d);
    let (web, tls) = (format!("{VIP}:80"), format!("{VIP}:443"));
    for vs in [&web, &tls] {
        d.lbadm_ok(&["-A", "-t", vs, "-s", "rr"]);
        for r in &tb.rs {
            d.lbadm_ok(&["-a", "-t", vs, "-r", &r.ip, "-g", "-w", "1"]);
        }
    }
    tb.wait_neigh(&d);
    let quick = ["--delay-loop", "0.5", "--retry", "0", "--warmup", "0", "--connect-timeout", "2"];
    let add = |vs: &str, ip: &str, extra: &[&str]| {
        let mut a = vec!["check", "add", "-t", vs, "-r", ip];
        a.extend(extra);
        a.extend(quick);
        d.lbadm_ok(&a);
    };
    let (ip1, ip2, ip3) = (tb.rs[0].ip.as_str(), tb.rs[1].ip.as_str(), tb.rs[2].ip.as_str());
    add(&web, ip1, &["http", "--url", "/fail"]);
    add(&web, ip2, &["http", "--url", "/health", "--digest", "00000000000000000000000000000000"]);
    add(&web, ip3, &["http", "--url", "/health", "--digest", HEALTH_MD5, "--status-code", "200"]);
    let ca_pem = ca.pem();
    let ca_s = ca_pem.to_str().unwrap();
    for ip in [ip1, ip2, ip3] {
        add(&tls, ip, &["https", "--url", "/health", "--ca", ca_s, "--sni-name", "www.example"]);
    }
    wait_for(&d, Duration::from_secs(10), "verdicts", || {
        pool(&d, &web) == p(&[(&format!("{ip3}:80"), 1)]) && pool(&d, &tls) == p(&[(&format!("{ip1}:443"), 1)])
    });
    let j: serde_json::Value = serde_json::from_str(&d.lbadm_ok(&["check", "show", "--json"])).unwrap();
    let reason = |svc_port: u64, ip: &str| -> String {
        j["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"]["addr"]["port"].as_u64() == Some(svc_port))
            .and_then(|s| s["servers"].as_array().unwrap().iter().find(|r| r["addr"] == ip))
            .map(|r| r["checks"][0]["runtime"]["reason"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(reason(80, ip1), "/fail: HTTP status 500");
    assert!(reason(80, ip2).starts_with(&format!("/health: MD5 digest mismatch (got {HEALTH_MD5})")), "{}", reason(80, ip2));
    assert_eq!(reason(80, ip3), "/health: HTTP status 200, MD5 digest");
    assert!(reason(443, ip2).to_lowercase().contains("expired"), "{}", reason(443, ip2));
    assert!(reason(443, ip3).contains("TLS handshake failed"), "{}", reason(443, ip3));
    // The pool serves: HTTP through the VIP reaches the one healthy server.
    assert_eq!(tb.get_vip(80).as_deref(), Ok("rs3"));
}

#[test]
fn misc_check_weights_inhibit_and_quorum_with_a_local_sorry_server() {
    let Some(_serial) = require_root_and_tools() else { return };
    let dir = TempDir::new("lbt-health");
    let mut tb = NginxBed::new(3, |_| None, dir);
    // Seed 003's FAIL_BACK=127.0.0.1: a web server on the director host itself.
    let mut sorry = tests::nginx::Nginx::start(&tb.director_ns, tb.dir.path(), "sorry", None);
    let d = tb.start_director(&[]);
    tb.addresses(&d);
    let vs = format!("{VIP}:80");
    d.lbadm_ok(&["-A", "-t", &vs, "-s", "rr"]);
    for r in &tb.rs {
        d.lbadm_ok(&["-a", "-t", &vs, "-r", &r.ip, "-g", "-w", "2"]);
    }
    tb.wait_neigh(&d);
    let state = |i: usize| tb.dir.join(&format!("status{i}"));
    let script = tb.dir.join("check.sh");
    std::fs::write(&script, "#!/bin/sh\nexit $(cat \"$1\")\n").unwrap();
    tests::util::run_ok(&["chmod", "755", script.to_str().unwrap()]);
    for i in 0..3 {
        std::fs::write(state(i), "0").unwrap();
    }
    d.lbadm_ok(&["check", "service", "-t", &vs, "--quorum", "4", "--sorry-server", "127.0.0.1"]);
    for (i, r) in tb.rs.iter().enumerate() {
        let cmd = format!("{} {}", script.display(), state(i).display());
        let mut a = vec!["check", "add", "-t", &vs, "-r", &r.ip, "misc", "--misc-path", &cmd, "--misc-dynamic", "--delay-loop", "0.3", "--warmup", "0"];
        if i == 2 {
            a.push("--inhibit-on-failure");
        }
        d.lbadm_ok(&a);
    }
    let (a, b, c) = (format!("{}:80", tb.rs[0].ip), format!("{}:80", tb.rs[1].ip), format!("{}:80", tb.rs[2].ip));
    wait_for(&d, Duration::from_secs(5), "all up", || all_checked(&d));
    assert_eq!(pool(&d, &vs), p(&[(&a, 2), (&b, 2), (&c, 2)]));
    // misc_dynamic: exit 7 sets weight 5; exit 0 the configured weight again.
    std::fs::write(state(0), "7").unwrap();
    wait_for(&d, Duration::from_secs(3), "weight 5", || pool(&d, &vs) == p(&[(&a, 5), (&b, 2), (&c, 2)]));
    // Exit 1 fails: deleted; the inhibited server stays listed at weight 0.
    std::fs::write(state(1), "1").unwrap();
    std::fs::write(state(2), "1").unwrap();
    wait_for(&d, Duration::from_secs(3), "failures", || pool(&d, &vs) == p(&[(&a, 5), (&c, 0)]));
    // Live weight 5 >= quorum 4: still served by the real server.
    assert_eq!(tb.get_vip(80).as_deref(), Ok("rs1"));
    // rs1's weight drops to 1 (exit 3): quorum lost, the local sorry server serves alone.
    std::fs::write(state(0), "3").unwrap();
    wait_for(&d, Duration::from_secs(3), "sorry server", || pool(&d, &vs) == p(&[("127.0.0.1:80", 1), (&c, 0)]));
    let listing = d.lbadm_ok(&["-L", "-n"]);
    assert!(listing.lines().any(|l| l.contains("127.0.0.1:80") && l.contains("Local")), "{listing}");
    assert!(wait_until(Duration::from_secs(3), || tb.get_vip(80).as_deref() == Ok("sorry")), "the sorry server does not answer through the VIP");
    // Back: quorum regained, the sorry server leaves, configured weights return.
    for i in 0..3 {
        std::fs::write(state(i), "0").unwrap();
    }
    wait_for(&d, Duration::from_secs(3), "quorum back", || pool(&d, &vs) == p(&[(&a, 2), (&b, 2), (&c, 2)]));
    assert!(wait_until(Duration::from_secs(3), || tb.get_vip(80).as_deref().is_ok_and(|n| n.starts_with("rs"))));
    // save round-trips the checks: a second director restored from it has the same checks.
    let saved = d.lbadm_ok(&["save"]);
    assert!(saved.contains("check service -t 198.51.100.100:80 --quorum 4 --sorry-server 127.0.0.1:80"), "{saved}");
    assert_eq!(saved.matches("check add").count(), 3, "{saved}");
    assert!(saved.contains("--inhibit-on-failure"), "{saved}");
    let log = d.log_text();
    for line in ["Lost quorum", "adding sorry server 127.0.0.1:80", "Gained quorum", "Disabling service", "Changing weight from 2 to 5"] {
        assert!(log.contains(line), "missing log line {line:?}:\n{log}");
    }
    sorry.stop();
    drop(d);
    let _ = &mut tb;
}

#[test]
fn keepalived_samples_in_dr_load_and_behave_and_a_malformed_file_changes_nothing() {
    let Some(_serial) = require_root_and_tools() else { return };
    let tb = NginxBed::new(2, |_| None, TempDir::new("lbt-health"));
    let (r1, r2) = (tb.rs[0].ip.clone(), tb.rs[1].ip.clone());
    // keepalived.conf.sample, DR: the addresses are the testbed's, the digest the one of
    // nginx's /testurl3/test.jsp (keepalived's genhash would print it), port 80.
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../control/tests/data/keepalived/keepalived.conf.sample.dr"))
        .unwrap()
        .replace("10.10.10.2 1358", &format!("{VIP} 80"))
        .replace("192.168.200.200 1358", "127.0.0.1 80")
        .replace("real_server 192.168.200.2 1358 {", &format!("real_server {r1} 80 {{\n        weight 1\n        HTTP_GET {{\n            url {{\n              path /testurl3/test.jsp\n              digest {SAMPLE_MD5}\n            }}\n            connect_timeout 3\n            delay_loop 1\n        }}\n    }}\n    real_server {r2} 80 {{"))
        .replace("640205b7b0fc66c1ea91c463fac6334d", SAMPLE_MD5)
        .replace("delay_loop 6", "delay_loop 1");
    let conf = tb.dir.join("keepalived.conf");
    std::fs::write(&conf, &sample).unwrap();
    // A malformed file stops the director, naming the line, before anything runs.
    let bad = tb.dir.join("bad.conf");
    std::fs::write(&bad, sample.replace("lb_algo rr", "lb_algo rr\n    persistence_timeout fifty")).unwrap();
    let mut args: Vec<String> = ["-l", "0", "--no-pci", "--log-level", "4"].map(String::from).to_vec();
    args.extend(tests::eal_memory_args(&tests::util::unique_name("lbt-kabad")));
    args.extend(["--vdev", "net_null0", "--", "--no-kernel-if", "--socket"].map(String::from));
    args.push(tb.dir.join("bad.sock").display().to_string());
    args.push("--keepalived".into());
    args.push(bad.display().to_string());
    let out = tests::util::run_timeout(tests::director_bin().to_str().unwrap(), &args, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = sample.lines().position(|l| l.contains("lb_algo rr")).unwrap() + 2;
    assert!(!out.status.success());
    assert!(err.contains(&format!("{}:{line}: invalid persistence_timeout 'fifty'", bad.display())), "{err}");

    let d = tb.start_director(&["--keepalived", conf.to_str().unwrap()]);
    tb.addresses(&d);
    tb.wait_neigh(&d);
    let vs = format!("{VIP}:80");
    let listing = d.lbadm_ok(&["-L", "-n"]);
    assert!(listing.contains(&format!("TCP  {vs} rr persistent 50")), "{listing}");
    wait_for(&d, Duration::from_secs(8), "checked", || all_checked(&d) && pool(&d, &vs).len() == 2);
    assert!(wait_until(Duration::from_secs(3), || tb.get_vip(80).is_ok()), "the VIP does not answer");
    // Behaves: rs1's nginx stops, its HTTP_GET fails, rs1 leaves the pool.
    let mut tb = tb;
    tb.rs[0].nginx.stop();
    wait_for(&d, Duration::from_secs(6), "rs1 removed", || pool(&d, &vs) == p(&[(&format!("{r2}:80"), 1)]));
    assert!(wait_until(Duration::from_secs(3), || tb.get_vip(80).as_deref() == Ok("rs2")));

    // keepalived.conf.fwmark, DR, on the running director with lbadm restore --keepalived:
    // fwmark 1 marks the VIP's port 8080 (lbadm's iptables syntax), TCP_CHECK on port 80.
    let fw = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../control/tests/data/keepalived/keepalived.conf.fwmark.dr"))
        .unwrap()
        .replace("192.168.201.100", &r1)
        .replace("192.168.201.101", &r2)
        .replace("delay_loop 6", "delay_loop 1");
    let fw_conf = tb.dir.join("fwmark.conf");
    std::fs::write(&fw_conf, &fw).unwrap();
    let before = d.lbadm_ok(&["-S", "-n"]);
    let broken = tb.dir.join("fwmark-bad.conf");
    std::fs::write(&broken, fw.replace("connect_timeout 3", "connect_timout 3")).unwrap();
    let out = d.lbadm(&["restore", "--keepalived", broken.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    let line = fw.lines().position(|l| l.contains("connect_timeout 3")).unwrap() + 1;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with(&format!("{}:{line}: unknown keyword 'connect_timout' in TCP_CHECK", broken.display())), "{err}");
    assert_eq!(d.lbadm_ok(&["-S", "-n"]), before, "a malformed file changed the configuration");
    d.lbadm_ok(&["restore", "--keepalived", fw_conf.to_str().unwrap()]);
    d.lbadm_ok(&["iptables", "-t", "mangle", "-A", "PREROUTING", "-d", VIP, "-p", "tcp", "--dport", "8080", "-j", "MARK", "--set-mark", "1"]);
    wait_for(&d, Duration::from_secs(6), "fwmark pool", || pool(&d, "1") == p(&[(&format!("{r2}:0"), 1)]));
    let NginxBed { rs, .. } = &mut tb;
    let r0 = &mut rs[0];
    r0.nginx.restart(&r0.ns);
    wait_for(&d, Duration::from_secs(4), "both back", || {
        pool(&d, "1") == p(&[(&format!("{r1}:0"), 1), (&format!("{r2}:0"), 1)]) && pool(&d, &vs).len() == 2
    });
}
