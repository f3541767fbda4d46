//! The kernel leg: the host's own stack on the director's ports (a `dpdkN` interface per
//! port), with real programs in network namespaces.
//!
//! * `host_stack_*`: a TCP listener in the director's namespace is reachable at the
//!   director's address, ping works both ways, the host reaches a real server through
//!   `dpdk0` (curl), `ip addr` and `lbadm addr` are one truth, VIP traffic stays in the
//!   dataplane; a VIP that is not an address gets a warning.
//! * `local_node_*`: seed 003's local-node experiment: wlc over a real server and the
//!   director itself (`-r DIP:80`, then `-r 127.0.0.1`), a web server in the director's
//!   namespace answering through the kernel leg; `-L -n` says `Local`, `-S` round-trips.
//! * `health_sh_*`: seed 003's two health.sh scripts, verbatim (see `tests/data/`), run on the
//!   director host with `ipvsadm` being lbadm, while clients keep requesting the VIP: a real
//!   server whose web server stops is deleted and comes back; the healthy one is never
//!   removed.
//! * `flood_*`: a UDP flood at the director's address is policed (`--kernel-pps`) while a
//!   transfer through the VIP keeps flowing; both transfer rates are printed.
//! * `interface_*`: the interface deleted underneath the director is recreated with its
//!   addresses; a host that raises the MTU and sends jumbo frames is counted, not obeyed;
//!   SIGKILL takes the interface away, a restart brings it back.
//!
//! Run as root: `make test`, or after `make build`:
//! `cargo test -p tests --release --test netns_kernel`.

use std::path::Path;
use std::time::{Duration, Instant};

use tests::http::curl_get;
use tests::probe::{tcp_name_from, NameServer, L4};
use tests::topo::{add_addr, configure_dr_real_server, prepare_director_port};
use tests::util::{send_signal, sha256_file, TempDir};
use tests::{
    lbadm_bin, require_root_and_tools, wait_until, DirectorOptions, DirectorProcess, HttpServer,
    Netns, OneArmed, Switch, VIP,
};

/// `ip -4 -o addr show dev dpdk0` in the director's namespace: the `addr/len` entries.
fn kernel_addrs(ns: &Netns, dev: &str) -> Vec<String> {
    let out = ns.exec(&["ip", "-4", "-o", "addr", "show", "dev", dev]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.position(|w| w == "inet")?;
            it.next().map(str::to_string)
        })
        .collect()
}

/// `lbadm addr show`: the `addr/len` entries of `dev`.
fn director_addrs(d: &DirectorProcess, dev: &str) -> Vec<String> {
    d.lbadm_ok(&["addr", "show"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next()? == dev).then(|| it.next().map(str::to_string)).flatten()
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A counter of `lbadm link show --json` for port 0's kernel interface.
fn kernel_counter(d: &DirectorProcess, name: &str) -> u64 {
    let j: serde_json::Value = serde_json::from_str(&d.lbadm_ok(&["link", "show", "--json"])).expect("link json");
    j[0]["kernel"][name].as_u64().unwrap_or_else(|| panic!("no kernel.{name} in {j}"))
}

/// A drop counter of `lbadm link show --json` (0 when absent).
fn drop_counter(d: &DirectorProcess, name: &str) -> u64 {
    let j: serde_json::Value = serde_json::from_str(&d.lbadm_ok(&["link", "show", "--json"])).expect("link json");
    j[0]["drops"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e[0] == name))
        .and_then(|e| e[1].as_u64())
        .unwrap_or(0)
}

#[test]
fn host_stack_reaches_the_segment_and_addresses_have_one_truth() {
    let Some(_serial) = require_root_and_tools() else { return };
    let tb = OneArmed::new(2);
    let d = tb.start_director();
    tb.configure_service(&d, "rr");
    let dir = &tb.director_ns;

    // lbadm's addresses are the kernel interface's.
    let want = sorted(vec![format!("{}/24", OneArmed::DIRECTOR_IP), format!("{VIP}/32")]);
    assert_eq!(sorted(kernel_addrs(dir, "dpdk0")), want, "ip addr show dev dpdk0");
    let link = dir.exec_ok(&["ip", "link", "show", "dev", "dpdk0"]);
    let port_mac = serde_json::from_str::<serde_json::Value>(&d.lbadm_ok(&["link", "show", "--json"])).unwrap()[0]["mac"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(link.contains(&port_mac) && link.contains("mtu 1500") && link.contains(",UP"), "{link}");

    // A TCP listener of the host answers the client at the director's address; ping works.
    let _listener = NameServer::start(dir, "director-host", L4::Tcp, 2222);
    assert_eq!(
        tcp_name_from(&tb.client, None, OneArmed::DIRECTOR_IP, 2222, 5).as_deref(),
        Ok("director-host"),
        "client -> director's own stack"
    );
    tb.client.exec_ok(&["ping", "-c", "2", "-i", "0.2", "-W", "2", OneArmed::DIRECTOR_IP]);
    // The host reaches the real servers through dpdk0 (ARP, TCP, ICMP).
    for r in &tb.rs {
        assert_eq!(curl_get(dir, &format!("http://{}/", r.ip), 5).as_deref(), Ok(r.name.as_str()), "host -> {}", r.ip);
        dir.exec_ok(&["ping", "-c", "1", "-W", "2", &r.ip]);
    }
    // Service traffic stays in the dataplane: rr still alternates through the VIP.
    let answers: Vec<String> = (0..4).map(|_| tb.get_vip().expect("GET through the VIP")).collect();
    assert!(answers.windows(2).all(|w| w[0] != w[1]), "rr alternates: {answers:?}");
    assert!(kernel_counter(&d, "to_host") > 0 && kernel_counter(&d, "from_host") > 0);

    // ip addr add/del on dpdk0 = lbadm addr add/del: the director learns it, answers ARP
    // and ping for it and serves services on it; removed, it stops.
    let extra = "198.51.100.101";
    dir.exec_ok(&["ip", "addr", "add", &format!("{extra}/32"), "dev", "dpdk0"]);
    assert!(
        wait_until(Duration::from_secs(5), || director_addrs(&d, "dpdk0").contains(&format!("{extra}/32"))),
        "lbadm addr show does not list the address ip addr added: {:?}",
        director_addrs(&d, "dpdk0")
    );
    tb.client.exec_ok(&["ping", "-c", "1", "-W", "2", extra]);
    let vs = format!("{extra}:80");
    // A DR real server holds every VIP it serves on lo.
    tb.rs[0].ns.exec_ok(&["ip", "addr", "add", &format!("{extra}/32"), "dev", "lo"]);
    d.lbadm_ok(&["-A", "-t", &vs, "-s", "rr"]);
    d.lbadm_ok(&["-a", "-t", &vs, "-r", &tb.rs[0].ip, "-g"]);
    assert_eq!(curl_get(&tb.client, &format!("http://{extra}/"), 5).as_deref(), Ok("rs1"));
    dir.exec_ok(&["ip", "addr", "del", &format!("{extra}/32"), "dev", "dpdk0"]);
    assert!(
        wait_until(Duration::from_secs(5), || !director_addrs(&d, "dpdk0").contains(&format!("{extra}/32"))),
        "the address ip addr removed is still the director's"
    );
    assert!(curl_get(&tb.client, &format!("http://{extra}/"), 2).is_err(), "a removed address is served no more");
    // lbadm addr del removes it from the kernel; the saved configuration agrees.
    d.lbadm_ok(&["addr", "del", &format!("{VIP}/32"), "dev", "dpdk0"]);
    assert_eq!(kernel_addrs(dir, "dpdk0"), vec![format!("{}/24", OneArmed::DIRECTOR_IP)]);
    let saved = d.lbadm_ok(&["save"]);
    assert!(saved.contains(&format!("addr add {}/24 dev dpdk0", OneArmed::DIRECTOR_IP)) && !saved.contains(&format!("{VIP}/32")), "{saved}");

    // A service on a VIP that is no address: accepted with ipvsadm's exit code, and a warning.
    let out = d.lbadm(&["-A", "-t", "198.51.100.200:80", "-s", "rr"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one warning line: {err}");
    assert!(err.contains("198.51.100.200") && err.contains("dropped"), "{err}");
}

#[test]
fn local_node_seed_003_wlc_over_a_real_server_and_the_director_itself() {
    let Some(_serial) = require_root_and_tools() else { return };
    let tb = OneArmed::new(1);
    let d = tb.start_director();
    tb.configure_service(&d, "wlc");
    // The director's own web server (seed 003: "果断开启本机web服务测试").
    let _web = HttpServer::start(&tb.director_ns, "director", 80);
    let vs = format!("{VIP}:80");
    let dip = OneArmed::DIRECTOR_IP;
    for (spelling, listed) in [(format!("{dip}:80"), format!("{dip}:80")), ("127.0.0.1".to_string(), "127.0.0.1:80".to_string())] {
        d.lbadm_ok(&["-a", "-t", &vs, "-r", &spelling, "-g", "-w", "1"]);
        let list = d.lbadm_ok(&["-L", "-n"]);
        let row = list.lines().find(|l| l.contains(&listed)).unwrap_or_else(|| panic!("{listed} not listed:\n{list}"));
        assert_eq!(row.split_whitespace().nth(2), Some("Local"), "Forward column of a local node: {row}");
        let rs_row = list.lines().find(|l| l.contains(&tb.rs[0].addr_port())).unwrap();
        assert_eq!(rs_row.split_whitespace().nth(2), Some("Route"));
        let save = d.lbadm_ok(&["-S", "-n"]);
        assert!(save.contains(&format!("-a -t {vs} -r {listed} -g -w 1")), "-S writes a local node as -g:\n{save}");

        let mut seen = std::collections::BTreeMap::new();
        for i in 0..20 {
            let who = tb.get_vip().unwrap_or_else(|e| panic!("request {i} with {spelling}: {e}\n{}", d.log_text()));
            *seen.entry(who).or_insert(0) += 1;
        }
        println!("{spelling}: {seen:?}");
        assert!(seen.get("director").copied().unwrap_or(0) >= 3 && seen.get("rs1").copied().unwrap_or(0) >= 3, "{spelling}: both serve: {seen:?}");
        d.lbadm_ok(&["-d", "-t", &vs, "-r", &spelling]);
    }
}

/// A one-armed segment with the addresses a script hard-codes: `prefix`.2 the director,
/// `prefix`.50 the client, `vip`, and one real server (web server on :80) per address of `rs`.
struct ScriptBed {
    rs: Vec<(String, Netns, Option<HttpServer>)>,
    client: Netns,
    director_ns: Netns,
    _switch: Switch,
}

impl ScriptBed {
    fn new(prefix: &str, len: u8, vip: &str, rs: &[&str]) -> ScriptBed {
        let switch = Switch::new();
        switch.add_bridge("lan");
        let client = Netns::new("client");
        let director_ns = Netns::new("director");
        switch.plug("lan", &client, "eth0");
        switch.plug("lan", &director_ns, "eth0");
        prepare_director_port(&director_ns, "eth0");
        add_addr(&client, &format!("{prefix}.50/{len}"), "eth0");
        let rs = rs
            .iter()
            .map(|ip| {
                let ns = Netns::new("rs");
                switch.plug("lan", &ns, "eth0");
                add_addr(&ns, &format!("{ip}/{len}"), "eth0");
                configure_dr_real_server(&ns, vip, &["eth0"]);
                let http = HttpServer::start(&ns, ip, 80);
                (ip.to_string(), ns, Some(http))
            })
            .collect();
        ScriptBed { rs, client, director_ns, _switch: switch }
    }
}

/// Runs one of seed 003's health.sh scripts verbatim against its own addresses.
fn run_health_script(script: &str, prefix: &str, len: u8, vip: &str, rs: [&str; 2], weights: [&str; 2], log: bool) {
    let mut bed = ScriptBed::new(prefix, len, vip, &rs);
    let d = DirectorProcess::start(&bed.director_ns, &["eth0"]);
    d.lbadm_ok(&["addr", "add", &format!("{prefix}.2/{len}"), "dev", "dpdk0"]);
    d.lbadm_ok(&["addr", "add", &format!("{vip}/32"), "dev", "dpdk0"]);
    let vs = format!("{vip}:80");
    d.lbadm_ok(&["-A", "-t", &vs, "-s", "wlc"]);
    for (ip, w) in rs.iter().zip(weights) {
        d.lbadm_ok(&["-a", "-t", &vs, "-r", &format!("{ip}:80"), "-g", "-w", w]);
    }
    d.wait_neigh_reachable(&rs, Duration::from_secs(10));

    // `ipvsadm` on PATH is lbadm under that name; DIRECTOR_SOCKET points it at this
    // director (the default is /run/director.sock). /var/log is a private directory: the
    // script writes /var/log/ipvsmonitor.log as written, inside `ip netns exec`'s own mount
    // namespace.
    let work = TempDir::new("lbt-health");
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(lbadm_bin(), bin.join("ipvsadm")).unwrap();
    let varlog = work.join("varlog");
    std::fs::create_dir_all(&varlog).unwrap();
    let script_path = work.join("health.sh");
    std::fs::write(&script_path, script).unwrap();
    let path = format!("PATH={}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display());
    let sock = format!("DIRECTOR_SOCKET={}", d.socket_path().display());
    let shell = format!("mount --bind {} /var/log && exec bash {}", varlog.display(), script_path.display());
    let script_log = work.join("script.out");
    let mut runner = bed.director_ns.spawn_logged(&["env", &path, &sock, "sh", "-c", &shell], &script_log);

    let listed = |ip: &str| d.list().iter().any(|s| s.servers.iter().any(|r| r.addr == format!("{ip}:80")));
    let monitor = || std::fs::read_to_string(varlog.join("ipvsmonitor.log")).unwrap_or_default();
    // Clients keep requesting the VIP all along.
    let client_ns = bed.client.name().to_string();
    let vip_url = format!("http://{vip}/");
    let traffic = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0u32, 0u32);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(40) {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &client_ns, "curl", "-s", "--max-time", "2", &vip_url])
                .output();
            match out {
                Ok(o) if o.status.success() => ok += 1,
                _ => failed += 1,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (ok, failed)
    });
    // The healthy server must be listed at every look.
    let healthy_always = |d: &DirectorProcess, until: Instant| {
        while Instant::now() < until {
            assert!(d.list().iter().any(|s| s.servers.iter().any(|r| r.addr == format!("{}:80", rs[1]))), "the healthy server was removed");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    healthy_always(&d, Instant::now() + Duration::from_secs(3));
    assert!(listed(rs[0]) && runner.is_running(), "script died:\n{}", std::fs::read_to_string(&script_log).unwrap_or_default());

    // Stop rs[0]'s web server: deleted within the script's period (sleep 5, three 1 s tries).
    let t = Instant::now();
    bed.rs[0].2 = None;
    let gone = wait_until(Duration::from_secs(15), || !listed(rs[0]));
    let took = t.elapsed();
    assert!(gone, "{} still listed 15 s after its web server stopped\n{}", rs[0], std::fs::read_to_string(&script_log).unwrap_or_default());
    println!("{}: removed {:.1} s after its web server stopped", rs[0], took.as_secs_f64());
    healthy_always(&d, Instant::now() + Duration::from_secs(2));
    if log {
        assert!(wait_until(Duration::from_secs(2), || monitor().contains(&format!("{} is gone.", rs[0]))), "log: {}", monitor());
    }

    // Restart it: re-added with its weight.
    let t = Instant::now();
    bed.rs[0].2 = Some(HttpServer::start(&bed.rs[0].1, rs[0], 80));
    assert!(wait_until(Duration::from_secs(15), || listed(rs[0])), "{} not back", rs[0]);
    println!("{}: back {:.1} s after its web server restarted", rs[0], t.elapsed().as_secs_f64());
    let row = d.list().into_iter().flat_map(|s| s.servers).find(|r| r.addr == format!("{}:80", rs[0])).unwrap();
    assert_eq!(row.weight.to_string(), weights[0]);
    if log {
        assert!(wait_until(Duration::from_secs(2), || monitor().contains(&format!("{} is back.", rs[0]))), "log: {}", monitor());
        println!("ipvsmonitor.log:\n{}", monitor());
    }
    healthy_always(&d, Instant::now() + Duration::from_secs(2));
    runner.stop(Duration::from_secs(2));
    let (ok, failed) = traffic.join().unwrap();
    println!("client requests during the run: {ok} answered, {failed} failed");
    assert!(ok > 50, "traffic flowed: {ok} answered, {failed} failed");
}

#[test]
fn health_sh_v2_verbatim_removes_and_restores_a_dead_real_server() {
    let Some(_serial) = require_root_and_tools() else { return };
    let script = include_str!("../data/health-v2.sh");
    run_health_script(script, "192.168.10", 24, "192.168.10.3", ["192.168.10.7", "192.168.10.8"], ["2", "1"], true);
}

#[test]
fn health_sh_v1_verbatim_removes_and_restores_a_dead_real_server() {
    let Some(_serial) = require_root_and_tools() else { return };
    let script = include_str!("../data/health-v1.sh");
    run_health_script(script, "172.16.0", 16, "172.16.0.1", ["172.16.0.7", "172.16.0.8"], ["2", "1"], false);
}

/// Downloads `bytes` through the VIP and returns MB/s (checks the digest the server sent).
fn vip_download_rate(tb: &OneArmed, bytes: usize, dir: &Path) -> f64 {
    let file = dir.join("download.bin");
    let t = Instant::now();
    let out = tb.client.exec_timeout(
        &["curl", "-s", "-S", "--fail", "--max-time", "60", "-D", "-", "-o", file.to_str().unwrap(), &format!("http://{VIP}/bytes/{bytes}")],
        Duration::from_secs(70),
    );
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "download through the VIP failed: {}", String::from_utf8_lossy(&out.stderr));
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let want = headers.lines().find_map(|l| l.strip_prefix("x-sha256:")).map(|v| v.trim().to_string()).expect("X-Sha256 header");
    assert_eq!(sha256_file(&file), want, "download corrupted");
    bytes as f64 / secs / 1e6
}

#[test]
fn flood_at_the_director_address_is_policed_while_vip_traffic_flows() {
    let Some(_serial) = require_root_and_tools() else { return };
    let tb = OneArmed::new(2);
    let pps = 2000;
    let d = tb.start_director_with(&DirectorOptions { extra_args: vec!["--kernel-pps".into(), pps.to_string()], ..Default::default() });
    tb.configure_service(&d, "rr");
    let work = TempDir::new("lbt-flood");
    let size = 16 << 20;
    let calm = vip_download_rate(&tb, size, work.path());

    // A UDP flood from the client at the director's address, port 9 (no service: the host's).
    let flood_secs = 20;
    let flood = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nend=time.time()+{flood_secs}\nn=0\nwhile time.time()<end:\n  for _ in range(1000):\n    s.sendto(b'x'*64,('{}',9)); n+=1\nprint(n)\n",
        OneArmed::DIRECTOR_IP
    );
    let flood_out = work.join("flood.out");
    let py = tests::http::python();
    let policed0 = drop_counter(&d, "host_policed");
    let host0 = kernel_counter(&d, "to_host");
    let mut flooder = tb.client.spawn_logged(&[&py, "-c", &flood], &flood_out);
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let busy = vip_download_rate(&tb, size, work.path());
    let busy2 = vip_download_rate(&tb, size, work.path());
    let window = t.elapsed().as_secs_f64();
    let policed = drop_counter(&d, "host_policed") - policed0;
    let to_host = kernel_counter(&d, "to_host") - host0;
    assert!(wait_until(Duration::from_secs(flood_secs + 10), || !flooder.is_running()), "flood did not end");
    let sent: u64 = std::fs::read_to_string(&flood_out).unwrap_or_default().trim().parse().unwrap_or(0);
    println!(
        "VIP transfer: {calm:.1} MB/s without the flood, {busy:.1} / {busy2:.1} MB/s during it; flood {sent} datagrams in {flood_secs} s, {policed} policed, {to_host} handed to the host in {window:.1}+2 s (cap {pps}/s)"
    );
    assert!(policed > 0, "nothing policed: flood sent {sent}");
    // What reached the host stays within the cap (plus its burst) over the measured window.
    let allowed = (pps as f64 * (window + 2.5)) as u64 + (pps / 10).max(64) as u64 + 200;
    assert!(to_host <= allowed, "{to_host} frames reached the host, cap allows {allowed}");
    // The host is still reachable after the flood, and the VIP is.
    let _listener = NameServer::start(&tb.director_ns, "director-host", L4::Tcp, 2222);
    assert!(wait_until(Duration::from_secs(5), || tcp_name_from(&tb.client, None, OneArmed::DIRECTOR_IP, 2222, 2).is_ok()));
    assert!(tb.get_vip().is_ok());
}

#[test]
fn interface_deleted_misconfigured_or_killed_is_recreated_counted_and_cleaned_up() {
    let Some(_serial) = require_root_and_tools() else { return };
    let tb = OneArmed::new(1);
    let mut d = tb.start_director();
    tb.configure_service(&d, "rr");
    let dir = &tb.director_ns;
    let want = sorted(vec![format!("{}/24", OneArmed::DIRECTOR_IP), format!("{VIP}/32")]);

    // Deleted underneath the director: recreated, with its addresses, and forwarding never
    // stopped.
    dir.exec_ok(&["ip", "link", "del", "dpdk0"]);
    assert!(
        wait_until(Duration::from_secs(10), || sorted(kernel_addrs(dir, "dpdk0")) == want),
        "dpdk0 not recreated with its addresses: {:?}\n{}",
        kernel_addrs(dir, "dpdk0"),
        d.log_text()
    );
    assert_eq!(sorted(director_addrs(&d, "dpdk0")), want, "the configuration kept its addresses");
    assert_eq!(kernel_counter(&d, "recreated"), 1);
    assert_eq!(tb.get_vip().as_deref(), Ok("rs1"));
    assert!(wait_until(Duration::from_secs(10), || curl_get(dir, &format!("http://{}/", tb.rs[0].ip), 2).is_ok()), "host -> rs1 after recreation");
    assert!(d.log_text().contains("recreated"));

    // A host that raises the MTU and sends jumbo frames: they are counted and dropped, the
    // director keeps forwarding.
    dir.exec_ok(&["ip", "link", "set", "dpdk0", "mtu", "9000"]);
    let _ = dir.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "-s", "4000", "-M", "do", &tb.rs[0].ip]);
    assert!(kernel_counter(&d, "from_host_malformed") >= 1, "jumbo frames from the host are counted");
    assert_eq!(tb.get_vip().as_deref(), Ok("rs1"));
    dir.exec_ok(&["ip", "link", "set", "dpdk0", "mtu", "1500"]);
    // Garbage of valid length written into the interface goes out as the host wrote it
    // (the host is trusted like any kernel), and changes nothing for the director.
    let junk = "import socket,os\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('dpdk0',0))\nfor i in range(200):\n  s.send(os.urandom(14+i*7))\n";
    dir.exec_ok(&[&tests::http::python(), "-c", junk]);
    assert_eq!(tb.get_vip().as_deref(), Ok("rs1"));

    // SIGKILL: the interface goes with the process; a restart brings it back.
    let pid = d.pid().expect("director pid");
    send_signal(pid as i32, "KILL");
    assert!(
        wait_until(Duration::from_secs(5), || !dir.exec(&["ip", "link", "show", "dev", "dpdk0"]).status.success()),
        "dpdk0 outlived the director"
    );
    let _ = d.stop();
    let d2 = tb.start_director();
    tb.configure_service(&d2, "rr");
    assert_eq!(sorted(kernel_addrs(dir, "dpdk0")), want);
    assert_eq!(tb.get_vip().as_deref(), Ok("rs1"));
}
