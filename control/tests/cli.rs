//! lbadm end to end: CLI → socket → controller → fake backend, and back to ipvsadm text.

mod common;

use std::io::Cursor;
use std::process::Command;

use control::cli::{run, CliIo};
use control::names::{NumericOnly, SystemNames};
use control::proto::ServerStats;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn lbadm_with(
    sock: &std::path::Path,
    args: &str,
    stdin: &str,
    names: &dyn control::names::Names,
) -> Out {
    let mut argv = vec!["--socket".to_string(), sock.display().to_string()];
    argv.extend(args.split_whitespace().map(str::to_string));
    let mut input = Cursor::new(stdin.as_bytes().to_vec());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = {
        let mut io = CliIo {
            stdin: &mut input,
            stdout: &mut out,
            stderr: &mut err,
            socket_env: None,
            names,
        };
        run(&argv, &mut io)
    };
    Out {
        code,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    }
}

fn lbadm(sock: &std::path::Path, args: &str) -> Out {
    lbadm_with(sock, args, "", &NumericOnly)
}

fn ok(sock: &std::path::Path, args: &str) -> String {
    let o = lbadm(sock, args);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "lbadm {args}");
    o.stdout
}

/// `lbadm ARGS` exits with `code`, prints `msg` (and a newline) on stderr and nothing on stdout.
#[track_caller]
fn fails(sock: &std::path::Path, args: &str, code: i32, msg: &str) {
    let o = lbadm(sock, args);
    assert_eq!(
        (o.code, o.stderr.as_str(), o.stdout.as_str()),
        (code, format!("{msg}\n").as_str(), ""),
        "lbadm {args}"
    );
}

#[test]
fn ipvsadm_session_matches_reference_output() {
    let r = common::Running::start("cli");
    let s = &r.path;
    for cmd in [
        "addr add 192.168.1.100/32 dev dpdk0",
        "-A -t 192.168.1.100:80 -s wlc -p 600 -M 255.255.255.0",
        "-a -t 192.168.1.100:80 -r 10.0.0.11:80 -g -w 1",
        "-a -t 192.168.1.100:80 -r 10.0.0.12 -w 0",
        "-A -u 192.168.1.100:53 -s rr",
        "-a -u 192.168.1.100:53 -r 10.0.0.21",
        "-A -f 7 -s sh -p -b sh-fallback,sh-port",
        "-a -f 7 -r 10.0.0.31 -g -w 2",
    ] {
        assert_eq!(ok(s, cmd), "", "{cmd}");
    }
    {
        let mut st = r.state.lock().unwrap();
        let ids = st.last_servers.clone();
        // ids in service key order: TCP (newest first: .12, .11), UDP .21, FWM .31.
        st.stats.insert(
            ids[0],
            ServerStats {
                inactive: 31,
                ..Default::default()
            },
        );
        st.stats.insert(
            ids[1],
            ServerStats {
                active: 12,
                inactive: 40,
                ..Default::default()
            },
        );
        st.stats.insert(
            ids[2],
            ServerStats {
                inactive: 118,
                ..Default::default()
            },
        );
        st.stats.insert(
            ids[3],
            ServerStats {
                active: 3,
                inactive: 5,
                ..Default::default()
            },
        );
    }
    let want = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.1.100:80 wlc persistent 600 mask 255.255.255.0
  -> 10.0.0.11:80                 Route   1      12         40        
  -> 10.0.0.12:80                 Route   0      0          31        
UDP  192.168.1.100:53 rr
  -> 10.0.0.21:53                 Route   1      0          118       
FWM  7 sh (sh-fallback,sh-port) persistent 360
  -> 10.0.0.31:0                  Route   2      3          5         
";
    assert_eq!(ok(s, "-L -n"), want);
    assert_eq!(ok(s, "-ln"), want);
    let save = "-A -t 192.168.1.100:80 -s wlc -p 600 -M 255.255.255.0
-a -t 192.168.1.100:80 -r 10.0.0.11:80 -g -w 1
-a -t 192.168.1.100:80 -r 10.0.0.12:80 -g -w 0
-A -u 192.168.1.100:53 -s rr
-a -u 192.168.1.100:53 -r 10.0.0.21:53 -g -w 1
-A -f 7 -s sh -p 360 -b sh-fallback,sh-port
-a -f 7 -r 10.0.0.31:0 -g -w 2
";
    assert_eq!(ok(s, "-S -n"), save);

    // -S output fed back through -C and -R reproduces the same table.
    assert_eq!(ok(s, "-C"), "");
    assert_eq!(ok(s, "-L -n").lines().count(), 3);
    let o = lbadm_with(s, "-R", &format!("\n{save}"), &NumericOnly);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(ok(s, "-S -n"), save);

    // Single service, no header; --json.
    let one = ok(s, "-L -n -u 192.168.1.100:53");
    assert!(
        one.starts_with("Prot LocalAddress:Port Scheduler Flags\n"),
        "{one}"
    );
    let j: serde_json::Value = serde_json::from_str(&ok(s, "--json -L -n")).unwrap();
    assert_eq!(j["services"].as_array().unwrap().len(), 3);
    let j: serde_json::Value = serde_json::from_str(&ok(s, "-L -n --json")).unwrap();
    assert_eq!(j["table_size"], 4096);

    // Names: ports and hosts from the services/hosts files without -n.
    let names = SystemNames::from_texts("http 80/tcp www\ndomain 53/udp\n", "10.0.0.11 rs1\n");
    let o = lbadm_with(s, "-L", "", &names);
    assert!(
        o.stdout.contains("TCP  192.168.1.100:http wlc"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("  -> rs1:http "), "{}", o.stdout);
    assert!(
        o.stdout.contains("UDP  192.168.1.100:domain rr"),
        "{}",
        o.stdout
    );
    let o = lbadm_with(s, "-e -t 192.168.1.100:www -r rs1 -w 9", "", &names);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(ok(s, "-L -n").contains("  -> 10.0.0.11:80                 Route   9 "));

    // Other listings.
    r.state.lock().unwrap().conns = vec![common::conn(51234)];
    assert_eq!(
        ok(s, "-L -n -c"),
        "IPVS connection entries\npro expire state       source             virtual            destination\n\
         TCP 14:58  ESTABLISHED 10.9.8.7:51234     192.168.1.100:80   10.0.0.11:80\n"
    );
    assert_eq!(
        ok(s, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    assert_eq!(ok(s, "--set 1000 0 0"), "");
    assert_eq!(
        ok(s, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 1000 120 300\n"
    );
    assert_eq!(ok(s, "-L --daemon"), "");
    assert!(ok(s, "-L -n --stats").contains("Conns   InPkts  OutPkts  InBytes OutBytes"));
    assert_eq!(ok(s, "-Z"), "");
}

#[test]
fn errors_and_exit_codes() {
    let r = common::Running::start("cli-err");
    let s = &r.path;
    let check = |args: &str, code: i32, msg: &str| fails(s, args, code, msg);
    check(
        "-A -t 192.168.1.100",
        2,
        "Zero port specified for non-persistent service",
    );
    check(
        "-a -t 1.1.1.1:80 -r 2.2.2.2 -w 70000",
        2,
        "illegal weight specified",
    );
    check(
        "-n -L",
        255,
        "Try `lbadm -h' or 'lbadm --help' for more information.",
    );
    check("-L --bogus", 255, "--bogus: unknown option");
    check("-E -t 1.1.1.1:80", 255, "No such service");
    check("-D -t 1.1.1.1:80", 255, "No such service");
    check("-a -t 1.1.1.1:80 -r 2.2.2.2", 255, "Service not defined");
    check("-L -n -t 1.1.1.1:80", 1, "No such service");
    // A VIP that is no address of the director: done, exit 0, one warning line.
    let o = lbadm(s, "-A -t 1.1.1.1:80");
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
    assert_eq!(
        o.stderr,
        "lbadm: warning: 1.1.1.1 is not an address of this director: packets to 1.1.1.1:80 are dropped until it is added (lbadm addr add 1.1.1.1/32 dev dpdk0, or ip addr add on the kernel interface)\n"
    );
    ok(s, "addr add 1.1.1.1/32 dev dpdk0");
    assert_eq!(ok(s, "-E -t 1.1.1.1:80 -s rr"), "", "no warning once it is an address");
    ok(s, "-E -t 1.1.1.1:80 -s wlc");
    check("-A -t 1.1.1.1:80", 255, "Service already exists");
    check(
        "-A -t 1.1.1.2:80 -s lblc",
        255,
        "Scheduler or persistence engine not found",
    );
    check("-d -t 1.1.1.1:80 -r 2.2.2.2", 255, "No such destination");
    check("-e -t 1.1.1.1:80 -r 2.2.2.2", 255, "No such destination");
    assert_eq!(ok(s, "-a -t 1.1.1.1:80 -r 2.2.2.2"), "");
    check(
        "-a -t 1.1.1.1:80 -r 2.2.2.2",
        255,
        "Destination already exists",
    );
    check(
        "-e -t 1.1.1.1:80 -r 2.2.2.2 -x 1 -y 2",
        255,
        "Numerical result out of range",
    );
    check(
        "-a -t 1.1.1.1:80 -r 2.2.2.3 -m",
        255,
        "director forwards by direct routing only: masquerading (-m) is not supported",
    );
    check("--stop-daemon master", 255, "No daemon is running");
    check(
        "addr add 10.0.0.1/24 dev dpdk9",
        1,
        "Cannot find device \"dpdk9\"",
    );
    check("addr add 10.0.0.1/24", 2, "lbadm: missing \"dev PORT\"");
    check("--socket", 2, "lbadm: --socket needs a path");

    // A refused change sent by -R: reported in order, processing continues, last status wins.
    let o = lbadm_with(
        s,
        "-R",
        "-A -t 9.9.9.9:80\nipvsadm -A -t 9.9.9.9:80\n\n-a -t 9.9.9.9:80 -r 9.9.9.10\n",
        &NumericOnly,
    );
    assert_eq!((o.code, o.stderr.as_str()), (0, "Service already exists\n"));
    let o = lbadm_with(
        s,
        "-R",
        "-D -t 9.9.9.9:80\n-D -t 9.9.9.9:80\n",
        &NumericOnly,
    );
    assert_eq!((o.code, o.stderr.as_str()), (255, "No such service\n"));
    // A parse error stops the restore: earlier lines are applied, the error printed last, exit 2.
    let o = lbadm_with(
        s,
        "-R",
        "-A -t 8.8.8.8:80\n-A -t 8.8.8.9:80 -w 1\n-A -t 8.8.8.10:80\n",
        &NumericOnly,
    );
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "Illegal 'weight' option with the 'add-service' command\n"
        )
    );
    assert!(ok(s, "-L -n").contains("TCP  8.8.8.8:80 wlc"));
    assert!(!ok(s, "-L -n").contains("8.8.8.10"));

    // A large -R goes out in several requests, each under the size limit, and is published
    // once (only configuration changes: one non-atomic transaction).
    let big: String = (0..4500)
        .map(|i| format!("-A -t 10.{}.{}.1:80 -s rr\n", i / 250, i % 250))
        .collect();
    let before = r.state.lock().unwrap().published.len();
    let o = lbadm_with(s, "-R", &big, &NumericOnly);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(r.state.lock().unwrap().published.len() - before, 1);
    // With a -Z among them, -R falls back to Restore requests of RESTORE_CHUNK rules, each
    // published: same results.
    let zbig: String = (0..4500)
        .map(|i| format!("-E -t 10.{}.{}.1:80 -s wrr\n", i / 250, i % 250))
        .chain(std::iter::once(
            "-Z\n-D -t 10.0.0.1:80\n-D -t 10.0.0.1:80\n".to_string(),
        ))
        .collect();
    let before = r.state.lock().unwrap().published.len();
    let o = lbadm_with(s, "-R", &zbig, &NumericOnly);
    assert_eq!((o.code, o.stderr.as_str()), (255, "No such service\n"));
    assert_eq!(r.state.lock().unwrap().published.len() - before, 3);
    let o = lbadm_with(s, "-R", "-A -t 10.0.0.1:80 -s rr\n", &NumericOnly);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    // Refusals found client-side and by the director come out in line order.
    let o = lbadm_with(
        s,
        "-R",
        "-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.9.9.9 -m\n-a -t 10.0.0.1:80 -r 10.9.9.9\n-a -t 10.0.0.1:80 -r 10.9.9.9\n",
        &NumericOnly,
    );
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            255,
            "Service already exists\n\
             director forwards by direct routing only: masquerading (-m) is not supported\n\
             Destination already exists\n"
        )
    );
    assert_eq!(
        ok(s, "-S -n")
            .lines()
            .filter(|l| l.ends_with("-s wrr"))
            .count(),
        4499
    );

    // Help and version are local.
    assert!(ok(s, "-h").contains("Usage:"));
    assert!(ok(s, "--version").starts_with("lbadm v"));
}

#[test]
fn director_verbs() {
    let r = common::Running::start("cli-verbs");
    let s = &r.path;
    assert_eq!(ok(s, "addr add 192.168.1.100/32 dev dpdk0"), "");
    assert_eq!(ok(s, "addr add 10.0.0.1/24 dev dpdk1"), "");
    let o = lbadm(s, "addr add 10.0.0.1/24 dev dpdk1");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (2, "RTNETLINK answers: File exists\n")
    );
    assert_eq!(
        ok(s, "addr show"),
        "DEV      ADDRESS\ndpdk0    192.168.1.100/32\ndpdk1    10.0.0.1/24\n"
    );
    assert_eq!(
        ok(s, "addr show dev dpdk1"),
        "DEV      ADDRESS\ndpdk1    10.0.0.1/24\n"
    );
    let j: serde_json::Value = serde_json::from_str(&ok(s, "--json addr")).unwrap();
    assert_eq!(j[0]["dev"], "dpdk0");
    assert_eq!(ok(s, "addr del 10.0.0.1 dev dpdk1"), "");
    let o = lbadm(s, "addr del 10.0.0.1/24 dev dpdk1");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (2, "RTNETLINK answers: Cannot assign requested address\n")
    );
    assert!(
        ok(s, "neigh show").contains("10.0.0.11       dpdk0    52:54:00:00:00:11 REACHABLE  4s\n")
    );
    assert!(ok(s, "link show").starts_with("dpdk0: state UP mtu 1500 speed 10000Mb/s\n"));
    let j: serde_json::Value = serde_json::from_str(&ok(s, "--json link")).unwrap();
    assert_eq!(j[0]["drops"][0][0], "no_service");
}

#[test]
fn binary_reports_unreachable_director() {
    let path = common::socket_path("absent");
    let out = Command::new(env!("CARGO_BIN_EXE_lbadm"))
        .args(["-L", "-n"])
        .env("DIRECTOR_SOCKET", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!(
            "lbadm: cannot connect to director at {}: ",
            path.display()
        )),
        "{err}"
    );
    // Parse errors are found before connecting.
    let out = Command::new(env!("CARGO_BIN_EXE_lbadm"))
        .args(["--socket", "/nonexistent/x", "-A", "-t", "1.1.1.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "Zero port specified for non-persistent service\n"
    );
    // The real binary against a real server, with the socket from the environment.
    let r = common::Running::start("bin");
    let out = Command::new(env!("CARGO_BIN_EXE_lbadm"))
        .args(["-A", "-t", "10.1.1.1:80"])
        .env("DIRECTOR_SOCKET", &r.path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lbadm"))
        .args(["-Sn"])
        .env("DIRECTOR_SOCKET", &r.path)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "-A -t 10.1.1.1:80 -s wlc\n"
    );
}

#[test]
fn mark_rules_iptables_and_mark_verbs() {
    let r = common::Running::start("cli-marks");
    let s = &r.path;
    let check = |args: &str, code: i32, msg: &str| fails(s, args, code, msg);
    // seeds/002 verbatim, then the fwmark service they feed.
    assert_eq!(
        ok(s, "iptables -t mangle -A PREROUTING  -d 192.168.195.200 -p tcp --dport 80 -j MARK --set-mark 10"),
        ""
    );
    assert_eq!(
        ok(s, "iptables -t mangle -A PREROUTING  -d 192.168.195.200 -p tcp --dport 443 -j MARK --set-mark 10"),
        ""
    );
    assert_eq!(ok(s, "-A -f 10 -s rr -p 1200"), "");
    // seeds/001 verbatim: eth0 is not a director port.
    check(
        "iptables -A PREROUTING -i eth0 -t mangle -p tcp -d 172.16.100.6 --dport 80 -j MARK --set-mark 1",
        2,
        "unknown interface \"eth0\": mark rules match the director's DPDK ports (dpdk0, dpdk1); use -i dpdkN or omit -i",
    );
    assert_eq!(
        ok(s, "iptables -A PREROUTING -i dpdk0 -t mangle -p tcp -d 172.16.100.6 --dport 80 -j MARK --set-mark 1"),
        ""
    );
    assert_eq!(
        ok(
            s,
            "mark add -d 10.1.2.3/24 -p udp --dport 1000:2000 --set-mark 0"
        ),
        ""
    );
    let listing = "Chain PREROUTING (policy ACCEPT)\n\
                   target     prot opt source               destination         \n\
                   MARK       tcp  --  0.0.0.0/0            192.168.195.200      tcp dpt:80 MARK set 0xa\n\
                   MARK       tcp  --  0.0.0.0/0            192.168.195.200      tcp dpt:443 MARK set 0xa\n\
                   MARK       tcp  --  0.0.0.0/0            172.16.100.6         tcp dpt:80 MARK set 0x1\n\
                   MARK       udp  --  0.0.0.0/0            10.1.2.0/24          udp dpts:1000:2000 MARK and 0x0\n";
    assert_eq!(ok(s, "iptables -t mangle -L -n"), listing);
    assert_eq!(ok(s, "iptables -nL PREROUTING -t mangle"), listing);
    assert_eq!(
        ok(s, "iptables -t mangle -S"),
        "-P PREROUTING ACCEPT\n\
         -A PREROUTING -d 192.168.195.200/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0xa/0xffffffff\n\
         -A PREROUTING -d 192.168.195.200/32 -p tcp -m tcp --dport 443 -j MARK --set-xmark 0xa/0xffffffff\n\
         -A PREROUTING -d 172.16.100.6/32 -i dpdk0 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffffffff\n\
         -A PREROUTING -d 10.1.2.0/24 -p udp -m udp --dport 1000:2000 -j MARK --set-xmark 0x0/0xffffffff\n"
    );
    assert_eq!(
        ok(s, "mark show"),
        "NUM  IN       DESTINATION        PROTO DPORT       MARK          PACKETS        BYTES\n\
         1    *        192.168.195.200/32 tcp   80          10                  0            0\n\
         2    *        192.168.195.200/32 tcp   443         10                  0            0\n\
         3    dpdk0    172.16.100.6/32    tcp   80          1                   0            0\n\
         4    *        10.1.2.0/24        udp   1000:2000   0                   0            0\n"
    );
    let j: serde_json::Value = serde_json::from_str(&ok(s, "--json mark")).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 4);
    assert_eq!(j[2]["rule"]["in_dev"], "dpdk0");
    assert_eq!(j[3]["rule"]["dst"], "10.1.2.0");
    // ipvsadm's -S is services only.
    assert_eq!(ok(s, "-S -n"), "-A -f 10 -s rr -p 1200\n");

    // -C, -D by rule and number, -I positions, with iptables' errors and statuses.
    assert_eq!(
        ok(s, "iptables -t mangle -C PREROUTING -d 192.168.195.200 -p tcp --dport 443 -j MARK --set-mark 10"),
        ""
    );
    let bad_rule = "iptables: Bad rule (does a matching rule exist in that chain?).";
    check(
        "iptables -t mangle -C PREROUTING -d 192.168.195.200 -p tcp --dport 443 -j MARK --set-mark 11",
        1,
        bad_rule,
    );
    check(
        "iptables -t mangle -D PREROUTING -d 192.168.195.201 -p tcp --dport 80 -j MARK --set-mark 10",
        1,
        bad_rule,
    );
    assert_eq!(
        ok(s, "iptables -t mangle -D PREROUTING -d 192.168.195.200 -p tcp --dport 80 -j MARK --set-mark 10"),
        ""
    );
    check(
        "iptables -t mangle -D PREROUTING 9",
        1,
        "iptables: Index of deletion too big.",
    );
    check(
        "iptables -t mangle -I PREROUTING 9 -j MARK --set-mark 1",
        1,
        "iptables: Index of insertion too big.",
    );
    assert_eq!(
        ok(
            s,
            "iptables -t mangle -I PREROUTING 2 -d 10.0.0.9 -j MARK --set-mark 9"
        ),
        ""
    );
    assert_eq!(ok(s, "mark del 1"), "");
    assert_eq!(
        ok(s, "iptables -t mangle -L PREROUTING 1 -n"),
        "MARK       all  --  0.0.0.0/0            10.0.0.9             MARK set 0x9\n"
    );
    check("mark del -d 10.0.0.9 --set-mark 8", 1, bad_rule);
    assert_eq!(ok(s, "mark del -d 10.0.0.9 --set-mark 9"), "");
    assert_eq!(ok(s, "iptables -t mangle -P PREROUTING ACCEPT"), "");

    // Refusals found before connecting (exit 2).
    check(
        "iptables -t nat -A PREROUTING -d 1.1.1.1 -j MARK --set-mark 1",
        2,
        "lbadm iptables: only -t mangle PREROUTING -j MARK is supported by the director",
    );
    check(
        "iptables -A PREROUTING -d 1.1.1.1 -j MARK --set-mark 1",
        2,
        "lbadm iptables: only -t mangle PREROUTING -j MARK is supported by the director",
    );
    check(
        "iptables -t mangle -A PREROUTING -d 1.1.1.1 --dport 80 -j MARK --set-mark 1",
        2,
        "lbadm iptables: unknown option \"--dport\" (--dport needs -p tcp or -p udp)",
    );
    check(
        "mark add -p tcp --set-mark 1",
        2,
        "lbadm mark: -d VIP[/LEN] is required",
    );

    // seeds/003: flush with the table after -F.
    assert_eq!(ok(s, "iptables -F -t mangle"), "");
    assert_eq!(
        ok(s, "iptables -t mangle -L -n"),
        "Chain PREROUTING (policy ACCEPT)\ntarget     prot opt source               destination         \n"
    );
    assert_eq!(ok(s, "mark add -i dpdk1 -d 10.0.0.1 --set-mark 3"), "");
    assert_eq!(ok(s, "mark flush"), "");
    assert_eq!(r.state.lock().unwrap().last_marks.len(), 0);
}

#[test]
fn sysctl_verb() {
    let r = common::Running::start("cli-sysctl");
    let s = &r.path;
    let all = "net.ipv4.vs.am_droprate = 10\nnet.ipv4.vs.amemthresh = 1024\n\
               net.ipv4.vs.backup_only = 0\nnet.ipv4.vs.cache_bypass = 0\nnet.ipv4.vs.conn_reuse_mode = 1\n\
               net.ipv4.vs.drop_entry = 0\nnet.ipv4.vs.drop_packet = 0\n\
               net.ipv4.vs.expire_nodest_conn = 0\nnet.ipv4.vs.expire_quiescent_template = 0\n\
               net.ipv4.vs.pmtu_disc = 1\nnet.ipv4.vs.schedule_icmp = 0\n\
               net.ipv4.vs.secure_tcp = 0\nnet.ipv4.vs.sloppy_tcp = 0\n\
               net.ipv4.vs.sync_persist_mode = 0\nnet.ipv4.vs.sync_refresh_period = 0\n\
               net.ipv4.vs.sync_retries = 0\nnet.ipv4.vs.sync_threshold = 3\t50\n\
               net.ipv4.vs.sync_version = 1\n";
    assert_eq!(ok(s, "sysctl"), all);
    assert_eq!(ok(s, "sysctl -a"), all);
    assert_eq!(ok(s, "sysctl sloppy_tcp"), "net.ipv4.vs.sloppy_tcp = 0\n");
    assert_eq!(
        ok(s, "sysctl net.ipv4.vs.conn_reuse_mode"),
        "net.ipv4.vs.conn_reuse_mode = 1\n"
    );
    assert_eq!(
        ok(s, "sysctl net.ipv4.vs.sloppy_tcp=1"),
        "net.ipv4.vs.sloppy_tcp = 1\n"
    );
    assert_eq!(
        ok(s, "sysctl -w conn_reuse_mode=2"),
        "net.ipv4.vs.conn_reuse_mode = 2\n"
    );
    assert_eq!(ok(s, "sysctl -q expire_nodest_conn=1"), "");
    // The defense strategies take the kernel's modes and thresholds (an operator's tuning
    // script works unchanged).
    assert_eq!(
        ok(s, "sysctl -w net.ipv4.vs.drop_entry=1 net.ipv4.vs.amemthresh=2048"),
        "net.ipv4.vs.drop_entry = 1\nnet.ipv4.vs.amemthresh = 2048\n"
    );
    assert_eq!(r.state.lock().unwrap().last_sysctls.drop_entry, 1);
    assert_eq!(ok(s, "sysctl -n sloppy_tcp expire_nodest_conn"), "1\n1\n");
    assert!(r.state.lock().unwrap().last_sysctls.sloppy_tcp);
    let j: serde_json::Value = serde_json::from_str(&ok(s, "--json sysctl")).unwrap();
    assert_eq!(j["net.ipv4.vs.conn_reuse_mode"], 2);
    let j: serde_json::Value = serde_json::from_str(&ok(s, "sysctl pmtu_disc --json")).unwrap();
    assert_eq!(j, serde_json::json!({"net.ipv4.vs.pmtu_disc": 1}));

    let err = |args: &str, stdout: &str, stderr: &str| {
        let o = lbadm(s, args);
        assert_eq!(
            (o.code, o.stdout.as_str(), o.stderr.as_str()),
            (255, stdout, stderr),
            "lbadm {args}"
        );
    };
    err(
        "sysctl foo",
        "",
        "sysctl: cannot stat /proc/sys/net/ipv4/vs/foo: No such file or directory\n",
    );
    err(
        "sysctl -w net.ipv4.vs.foo=1",
        "",
        "sysctl: cannot stat /proc/sys/net/ipv4/vs/foo: No such file or directory\n",
    );
    err(
        "sysctl sloppy_tcp=2",
        "",
        "sysctl: setting key \"net.ipv4.vs.sloppy_tcp\": Invalid argument\n",
    );
    err(
        "sysctl conn_reuse_mode=x",
        "",
        "sysctl: setting key \"net.ipv4.vs.conn_reuse_mode\": Invalid argument\n",
    );
    err(
        "sysctl secure_tcp=4",
        "",
        "sysctl: setting key \"net.ipv4.vs.secure_tcp\": Invalid argument\n",
    );
    err(
        "sysctl -w sloppy_tcp",
        "",
        "sysctl: \"sloppy_tcp\" must be of the form name=value\n",
    );
    let o = lbadm(s, "sysctl -w");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (1, "sysctl: no variables specified\n")
    );
    // Each argument in turn; any failure makes the status 255.
    err(
        "sysctl sloppy_tcp nope pmtu_disc=0",
        "net.ipv4.vs.sloppy_tcp = 1\nnet.ipv4.vs.pmtu_disc = 0\n",
        "sysctl: cannot stat /proc/sys/net/ipv4/vs/nope: No such file or directory\n",
    );
    assert_eq!(ok(s, "sysctl pmtu_disc"), "net.ipv4.vs.pmtu_disc = 0\n");
}

#[test]
fn binary_marks_and_sysctl() {
    let r = common::Running::start("bin-marks");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lbadm"))
            .args(args)
            .env("DIRECTOR_SOCKET", &r.path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let seed = "iptables -A PREROUTING -i dpdk0 -t mangle -d 192.16.10.3 -p tcp --dport 23 -j MARK --set-mark 8";
    let args: Vec<&str> = seed.split_whitespace().collect();
    assert_eq!(run(&args), (Some(0), String::new(), String::new()));
    let (code, out, _) = run(&["iptables", "-t", "mangle", "-nvL"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out.lines().nth(2).unwrap(),
        "    0     0 MARK       tcp  --  dpdk0  *       0.0.0.0/0            192.16.10.3          tcp dpt:23 MARK set 0x8"
    );
    assert_eq!(
        run(&["iptables", "-t", "mangle", "-A", "PREROUTING", "-j", "DNAT"]),
        (
            Some(2),
            String::new(),
            "lbadm iptables: only -t mangle PREROUTING -j MARK is supported by the director\n"
                .into()
        )
    );
    assert_eq!(
        run(&["sysctl", "-w", "net.ipv4.vs.sloppy_tcp=1"]),
        (
            Some(0),
            "net.ipv4.vs.sloppy_tcp = 1\n".into(),
            String::new()
        )
    );
    // A vector sysctl takes blank-separated integers in one argument, as sysctl(8).
    assert_eq!(
        run(&["sysctl", "-w", "net.ipv4.vs.sync_threshold=5 100"]),
        (Some(0), "net.ipv4.vs.sync_threshold = 5\t100\n".into(), String::new())
    );
    assert_eq!(
        run(&["sysctl", "-w", "sync_threshold=7"]),
        (Some(0), "net.ipv4.vs.sync_threshold = 7\t100\n".into(), String::new())
    );
    assert_eq!(
        run(&["sysctl", "-w", "sync_threshold=100 100"]),
        (
            Some(255),
            String::new(),
            "sysctl: setting key \"net.ipv4.vs.sync_threshold\": Invalid argument\n".into()
        )
    );
    assert_eq!(
        run(&["--json", "sysctl", "sync_threshold"]),
        (Some(0), "{\n  \"net.ipv4.vs.sync_threshold\": [\n    7,\n    100\n  ]\n}\n".into(), String::new())
    );
    assert_eq!(
        run(&["sysctl", "sloppy_tcp=5"]),
        (
            Some(255),
            String::new(),
            "sysctl: setting key \"net.ipv4.vs.sloppy_tcp\": Invalid argument\n".into()
        )
    );
}

/// `-L -c` pages through the table (4096 rows per `ConnPage`): a 10,000-entry table prints the
/// header once and every row once, in table order, and `--json` is the same document as the
/// one-reply listing; the controller caps a page at `MAX_CONN_PAGE` and ends with `next: null`.
#[test]
fn connection_listing_streams_page_by_page() {
    use control::proto::{ConnCursor, Op, Reply, Request, MAX_CONN_PAGE};
    let mut r = common::Running::start("connpage");
    let conns: Vec<_> = (0..10_000u32)
        .map(|i| {
            let mut c = common::conn((i % 60_000) as u16 + 1);
            c.caddr = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            c
        })
        .collect();
    r.state.lock().unwrap().conns = conns.clone();
    let s = &r.path;
    let text = ok(s, "-L -n -c");
    let want = control::format::list_connections(
        &conns,
        &control::ipvsadm::ListOptions {
            numeric: true,
            connections: true,
            ..Default::default()
        },
        &NumericOnly,
    );
    assert_eq!(text.matches("IPVS connection entries").count(), 1);
    assert_eq!(text.lines().filter(|l| l.starts_with("TCP")).count(), 10_000);
    assert_eq!(text, want);
    let js = ok(s, "--json -L -n -c");
    assert_eq!(js, control::format::json(&conns));
    // The protocol: pages of at most MAX_CONN_PAGE rows that cover the table exactly once.
    let (mut ctl, state) = common::controller();
    state.lock().unwrap().conns = conns.clone();
    let mut cursor = Some(ConnCursor::default());
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(c) = cursor {
        match ctl.handle(Request::new(Op::ConnPage { cursor: c, max: u32::MAX })).result {
            Ok(Reply::ConnPage { rows, next }) => {
                assert!(rows.len() <= MAX_CONN_PAGE as usize);
                seen.extend(rows);
                cursor = next;
            }
            other => panic!("ConnPage answered {other:?}"),
        }
        pages += 1;
        assert!(pages <= 10, "paging does not end");
    }
    assert_eq!(seen, conns);
    r.stop();
}
