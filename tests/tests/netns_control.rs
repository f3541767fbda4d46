//! The control plane against a running director in the one-armed DR testbed
//! (tests/src/testbed.rs):
//!
//! * `control_never_stalls_forwarding`: a rate-limited 64 MiB upload through the VIP runs for
//!   about 20 s while another thread drives hundreds of `lbadm` edits (services, servers,
//!   weights, addresses, mark rules, sysctls, atomic restores, scheduler edits of the live
//!   service) and listings (`-L -n`, `-c`, `--stats`, `--rate`, `link show`, `save`), and a
//!   third sends hostile requests to the socket; the upload must arrive byte-identical.
//! * `config_file_survives_restart`: `director --config FILE` applies a file before traffic
//!   flows; `lbadm save FILE` of a changed configuration, loaded by a new director, gives the
//!   same configuration and forwards; a bad file stops the director with file, line, reason.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test netns_control -- --test-threads=1`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tests::util::{describe, run_timeout, sha256_file, unique_name, write_random_file};
use tests::{
    eal_args, require_root_and_tools, DirectorOptions, DirectorProcess, OneArmed, TempDir,
    UploadReply, VIP, VPORT,
};

const MIB: usize = 1024 * 1024;
/// Size and rate of the long upload: 64 MiB at 3.2 MB/s ≈ 20 s.
const UPLOAD_LEN: usize = 64 * MIB;
const UPLOAD_RATE: &str = "3200K";
/// Bounds of the edit loop.
const MAX_ROUNDS: usize = 400;
const EDIT_DEADLINE: Duration = Duration::from_secs(40);

/// `curl --limit-rate` POST of `file` to the VIP from the client namespace `ns`; the parsed
/// reply.
fn slow_upload(ns: &str, file: &Path, max_secs: u32) -> Result<UploadReply, String> {
    let data = format!("@{}", file.display());
    let t = max_secs.to_string();
    let url = format!("http://{VIP}/upload");
    let out = run_timeout(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "curl",
            "-s",
            "-S",
            "--fail",
            "--max-time",
            &t,
            "--limit-rate",
            UPLOAD_RATE,
            "-H",
            "Expect:",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &data,
            &url,
        ],
        Duration::from_secs(max_secs as u64 + 10),
    );
    if !out.status.success() {
        return Err(describe("curl upload", &out));
    }
    let body = String::from_utf8_lossy(&out.stdout);
    UploadReply::parse(body.trim()).ok_or_else(|| format!("bad upload reply {body:?}"))
}

/// Statistics of the control thread.
#[derive(Debug, Default)]
struct Tally {
    edits: usize,
    listings: usize,
    rounds: usize,
    failures: Vec<String>,
    slowest: Duration,
    slowest_cmd: String,
    total: Duration,
}

impl Tally {
    fn run(&mut self, d: &DirectorProcess, args: &[&str], listing: bool) -> String {
        let t = Instant::now();
        let out = d.lbadm(args);
        let took = t.elapsed();
        self.total += took;
        if took > self.slowest {
            self.slowest = took;
            self.slowest_cmd = args.join(" ");
        }
        if listing {
            self.listings += 1;
        } else {
            self.edits += 1;
        }
        if !out.status.success() {
            self.failures
                .push(describe(&format!("lbadm {}", args.join(" ")), &out));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// One round of edits and listings that leave the VIP's service forwarding (see module docs).
fn edit_round(d: &DirectorProcess, t: &mut Tally, round: usize, restore_file: &Path) {
    let vs = format!("{VIP}:{VPORT}");
    let other = format!("203.0.113.{}:80", 1 + round % 200);
    let udp = format!("203.0.113.{}:53", 1 + round % 200);
    let fwm = (1000 + round % 50).to_string();
    let extra_vip = format!("198.51.100.{}/32", 150 + round % 50);
    let rs_a = format!("192.0.2.{}", 1 + round % 250);
    let rs_b = format!("192.0.2.{}", 1 + (round + 1) % 250);
    let w = (round % 7).to_string();
    let mark = (2000 + round % 100).to_string();
    let mark_vip = format!("203.0.113.{}", 1 + round % 200);

    // Unrelated services and servers: add, edit, weight changes, delete.
    t.run(d, &["-A", "-t", &other, "-s", "wrr"], false);
    t.run(
        d,
        &["-a", "-t", &other, "-r", &rs_a, "-g", "-w", "2"],
        false,
    );
    t.run(
        d,
        &["-a", "-t", &other, "-r", &rs_b, "-g", "-w", "1"],
        false,
    );
    t.run(d, &["-e", "-t", &other, "-r", &rs_a, "-g", "-w", &w], false);
    t.run(d, &["-E", "-t", &other, "-s", "lc", "-p", "60"], false);
    t.run(d, &["-A", "-u", &udp, "-s", "rr"], false);
    t.run(d, &["-a", "-u", &udp, "-r", &rs_a, "-w", &w], false);
    t.run(d, &["-A", "-f", &fwm, "-s", "sh", "-b", "sh-port"], false);
    t.run(d, &["-a", "-f", &fwm, "-r", &rs_b], false);
    // Addresses and mark rules of unrelated VIPs.
    t.run(d, &["addr", "add", &extra_vip, "dev", "dpdk0"], false);
    let mark_rule = [
        "iptables",
        "-t",
        "mangle",
        "-A",
        "PREROUTING",
        "-d",
        &mark_vip,
        "-p",
        "tcp",
        "--dport",
        "8443",
        "-j",
        "MARK",
        "--set-mark",
        &mark,
    ];
    t.run(d, &mark_rule, false);
    // The live service: a scheduler edit and a new server (existing connections keep theirs).
    let sched = if round % 2 == 0 { "wrr" } else { "rr" };
    t.run(d, &["-E", "-t", &vs, "-s", sched], false);
    // Listings.
    t.run(d, &["-L", "-n"], true);
    t.run(d, &["-L", "-n", "-c"], true);
    t.run(d, &["-L", "-n", "--stats"], true);
    t.run(d, &["-L", "-n", "--rate", "--exact"], true);
    t.run(d, &["--json", "-L", "-n"], true);
    t.run(d, &["link", "show"], true);
    t.run(d, &["sysctl", "net.ipv4.vs.conn_reuse_mode"], true);
    t.run(d, &["iptables", "-t", "mangle", "-L", "-n", "-v"], true);
    if round % 5 == 0 {
        t.run(d, &["save"], true);
        t.run(
            d,
            &["restore", "--atomic", &restore_file.display().to_string()],
            false,
        );
        t.run(d, &["-D", "-t", "203.0.113.250:80"], false);
        t.run(d, &["-D", "-t", "203.0.113.251:80"], false);
        t.run(
            d,
            &["sysctl", "-w", "net.ipv4.vs.expire_nodest_conn=1"],
            false,
        );
        t.run(
            d,
            &["sysctl", "-w", "net.ipv4.vs.expire_nodest_conn=0"],
            false,
        );
    }
    // Undo.
    let mut del = mark_rule;
    del[3] = "-D";
    t.run(d, &del, false);
    t.run(d, &["addr", "del", &extra_vip, "dev", "dpdk0"], false);
    t.run(d, &["-d", "-t", &other, "-r", &rs_b], false);
    t.run(d, &["-D", "-t", &other], false);
    t.run(d, &["-D", "-u", &udp], false);
    t.run(d, &["-D", "-f", &fwm], false);
}

/// Hostile clients on the director's socket: garbage, wrong version, oversized and truncated
/// frames, a stalled half frame. Returns how many were sent.
fn hostile_round(socket: &Path) -> usize {
    let mut n = 0;
    let frame = |body: &[u8]| {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    };
    let mut send = |bytes: &[u8], want_answer: bool| {
        n += 1;
        let Ok(mut s) = UnixStream::connect(socket) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(bytes);
        if want_answer {
            let mut hdr = [0u8; 4];
            assert!(
                s.read_exact(&mut hdr).is_ok(),
                "no answer to a bad request {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            );
        }
    };
    send(&frame(b"\x00garbage{{"), true);
    send(&frame(br#"{"v":7,"op":"AddrShow"}"#), true);
    send(&frame(br#"{"v":1,"op":{"Ipvs":{"AddService":{}}}}"#), true);
    send(&frame(br#"{"v":1,"op":{"Stage":[{"Bogus":1}]}}"#), true);
    send(&(64u32 << 20).to_be_bytes(), true);
    send(&[0, 0, 0, 200, b'{', b'"'], false);
    send(&[0x7f], false);
    n
}

#[test]
fn control_never_stalls_forwarding() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let _ = (tests::director_bin(), tests::lbadm_bin());
    let tb = OneArmed::new(2);
    let d = tb.start_director();
    tb.configure_service(&d, "rr");
    let names: Vec<String> = tb.rs.iter().map(|r| r.name.clone()).collect();
    assert!(tb.get_vip().is_ok(), "VIP does not answer before the test");

    let dir = TempDir::new("lbt-control");
    let payload = dir.join("payload.bin");
    write_random_file(&payload, UPLOAD_LEN);
    let local = sha256_file(&payload);
    let restore_file = dir.join("restore.conf");
    std::fs::write(
        &restore_file,
        "-A -t 203.0.113.250:80 -s rr\n-a -t 203.0.113.250:80 -r 192.0.2.1 -w 3\n\
         -A -t 203.0.113.251:80 -s wlc\n-a -t 203.0.113.251:80 -r 192.0.2.2\n",
    )
    .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let client_ns = tb.client.name().to_string();
    let started = Instant::now();
    let (up_result, tally, hostile, up_time) = std::thread::scope(|s| {
        let upload = s.spawn(|| {
            let t = Instant::now();
            let r = slow_upload(&client_ns, &payload, 50);
            done.store(true, Ordering::SeqCst);
            (r, t.elapsed())
        });
        let hostile = s.spawn(|| {
            let mut n = 0;
            let deadline = Instant::now() + EDIT_DEADLINE;
            for _ in 0..200 {
                if done.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                n += hostile_round(d.socket_path());
                std::thread::sleep(Duration::from_millis(200));
            }
            n
        });
        let mut tally = Tally::default();
        let deadline = Instant::now() + EDIT_DEADLINE;
        // At least 5 rounds even if the upload were quick, then until it ends.
        while tally.rounds < MAX_ROUNDS
            && Instant::now() < deadline
            && (tally.rounds < 5 || !done.load(Ordering::SeqCst))
        {
            let round = tally.rounds;
            edit_round(&d, &mut tally, round, &restore_file);
            tally.rounds += 1;
        }
        let (r, up_time) = upload.join().unwrap();
        (r, tally, hostile.join().unwrap(), up_time)
    });
    eprintln!(
        "netns_control: upload of {} MiB in {:.1} s; {} rounds, {} edits + {} listings in {:.1} s \
         (mean {:.1} ms, slowest {:.0} ms: lbadm {}); {} hostile requests; total {:.1} s",
        UPLOAD_LEN / MIB,
        up_time.as_secs_f64(),
        tally.rounds,
        tally.edits,
        tally.listings,
        tally.total.as_secs_f64(),
        tally.total.as_secs_f64() * 1000.0 / (tally.edits + tally.listings).max(1) as f64,
        tally.slowest.as_secs_f64() * 1000.0,
        tally.slowest_cmd,
        hostile,
        started.elapsed().as_secs_f64()
    );

    let reply = up_result.unwrap_or_else(|e| {
        panic!(
            "upload through the VIP failed while control ran: {e}\n--- director log ---\n{}",
            d.log_text()
        )
    });
    assert!(
        names.contains(&reply.server),
        "answered by {:?}",
        reply.server
    );
    assert_eq!(reply.len, UPLOAD_LEN as u64, "bytes lost");
    assert_eq!(reply.sha256, local, "upload corrupted (sha256 differs)");
    assert!(
        tally.failures.is_empty(),
        "{} lbadm command(s) failed; first:\n{}",
        tally.failures.len(),
        tally.failures[0]
    );
    assert!(
        tally.edits + tally.listings >= 200,
        "only {} control commands ran during the transfer",
        tally.edits + tally.listings
    );
    assert!(
        up_time > Duration::from_secs(10),
        "upload took only {up_time:?}: not long enough to overlap the edits"
    );
    // Everything the rounds added was removed again; the live service still forwards.
    let saved = d.lbadm_ok(&["-S", "-n"]);
    let vs_line = saved
        .lines()
        .filter(|l| l.starts_with("-A "))
        .collect::<Vec<_>>();
    assert_eq!(vs_line.len(), 1, "left-over services:\n{saved}");
    assert!(tb.get_vip().is_ok(), "VIP stopped answering");
}

/// Starts a director that must refuse its configuration file; returns its exit status and
/// output.
fn director_refusing(tb: &OneArmed, config: &Path) -> std::process::Output {
    let unique = unique_name("lbt");
    let dir = TempDir::new("lbt-bad");
    let socket = dir.join("director.sock");
    let mut args: Vec<String> = vec!["netns".into(), "exec".into(), tb.director_ns.name().into()];
    args.push(tests::director_bin().display().to_string());
    args.extend(eal_args(&unique, &[OneArmed::DIRECTOR_IF]));
    args.extend([
        "--".to_string(),
        "--socket".into(),
        socket.display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ]);
    let out = run_timeout("ip", &args, Duration::from_secs(30));
    assert!(
        !socket.exists(),
        "a director with a bad file opened its socket"
    );
    out
}

#[test]
fn config_file_survives_restart() {
    let Some(_serial) = require_root_and_tools() else {
        return;
    };
    let _ = (tests::director_bin(), tests::lbadm_bin());
    let tb = OneArmed::new(2);
    let dir = TempDir::new("lbt-config");
    let vs = format!("{VIP}:{VPORT}");
    let first = dir.join("first.conf");
    let mut text = format!(
        "# one-armed DR, loaded by director --config\n\
         addr add {}/{} dev dpdk0\n\
         addr add {VIP}/32 dev dpdk0\n\
         iptables -t mangle -A PREROUTING -d {VIP}/32 -p tcp --dport 8080 -j MARK --set-mark 5\n\
         sysctl -w net.ipv4.vs.expire_nodest_conn=1\n\
         -A -t {vs} -s rr\n",
        OneArmed::DIRECTOR_IP,
        OneArmed::PREFIX_LEN
    );
    for r in &tb.rs {
        text.push_str(&format!("-a -t {vs} -r {} -g -w 1\n", r.addr_port()));
    }
    std::fs::write(&first, &text).unwrap();

    let opts = DirectorOptions {
        extra_args: vec!["--config".into(), first.display().to_string()],
        ..Default::default()
    };
    let mut d = tb.start_director_with(&opts);
    assert!(
        d.log_text()
            .contains(&format!("configuration {} loaded", first.display())),
        "{}",
        d.log_text()
    );
    let ips: Vec<&str> = tb.rs.iter().map(|r| r.ip.as_str()).collect();
    d.wait_neigh_reachable(&ips, tests::director::NEIGH_TIMEOUT);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(
            tb.get_vip()
                .expect("GET through the VIP configured by --config"),
        );
    }
    assert_ne!(seen[0], seen[1], "rr alternates: {seen:?}");

    // Change it at run time, save, restart from the saved file.
    d.lbadm_ok(&[
        "-e",
        "-t",
        &vs,
        "-r",
        &tb.rs[0].addr_port(),
        "-g",
        "-w",
        "3",
    ]);
    d.lbadm_ok(&["-A", "-f", "5", "-s", "wrr"]);
    d.lbadm_ok(&[
        "-a",
        "-f",
        "5",
        "-r",
        &tb.rs[1].ip,
        "-g",
        "-w",
        "2",
        "-x",
        "100",
    ]);
    d.lbadm_ok(&["--set", "1000", "100", "200"]);
    let saved_file = dir.join("saved.conf");
    assert_eq!(d.lbadm_ok(&["save", &saved_file.display().to_string()]), "");
    let show = |d: &DirectorProcess| -> Vec<String> {
        [
            // (no listing with connection counters: the first director has served traffic)
            &["-S", "-n"][..],
            &["-L", "--timeout"],
            &["addr", "show"],
            &["iptables", "-t", "mangle", "-S"],
            &["sysctl", "-a"],
            &["save"],
        ]
        .iter()
        .map(|a| d.lbadm_ok(a))
        .collect()
    };
    let before = show(&d);
    assert!(d.stop().success());

    let opts = DirectorOptions {
        extra_args: vec!["--config".into(), saved_file.display().to_string()],
        ..Default::default()
    };
    let d2 = tb.start_director_with(&opts);
    assert_eq!(
        show(&d2),
        before,
        "the restarted director has the saved configuration"
    );
    d2.wait_neigh_reachable(&ips, tests::director::NEIGH_TIMEOUT);
    let body = tb.get_vip().expect("GET through the VIP after the restart");
    assert!(tb.rs.iter().any(|r| r.name == body), "{body}");
    drop(d2);

    // A bad file: the director refuses to start, naming file, line and reason.
    let bad = dir.join("bad.conf");
    std::fs::write(
        &bad,
        format!("addr add {VIP}/32 dev dpdk0\n-A -t {vs}\n-a -t {VIP}:81 -r 198.51.100.11\n"),
    )
    .unwrap();
    let out = director_refusing(&tb, &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "director started with a bad file");
    assert!(
        err.contains(&format!("{}:3: Service not defined", bad.display())),
        "{}",
        describe("director --config bad.conf", &out)
    );
    std::fs::write(&bad, "addr add 10.0.0.1/24 dev eth0\n").unwrap();
    let out = director_refusing(&tb, &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!("{}:1: Cannot find device \"eth0\"", bad.display())),
        "{}",
        describe("director --config bad.conf", &out)
    );
}
