//! The checker engine end to end on loopback: a controller over a fake dataplane, the real
//! engine thread, real sockets, HTTP and TLS servers and scripts. Asserts what an operator
//! would see in the pool (`-L -n`) and in `lbadm check show`, and keepalived's time bounds.
//! Every wait is bounded; servers listen on 127.0.0.x only.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use control::config_file;
use control::model::{Protocol, ServiceKey};
use control::names::NumericOnly;
use control::server::{lock, start_health, SharedController};

use common::FakeBackend;

const KEY: ServiceKey = ServiceKey::Addr {
    proto: Protocol::Tcp,
    addr: Ipv4Addr::new(10, 0, 0, 1),
    port: 80,
};

struct Rig {
    ctl: SharedController<FakeBackend>,
    stop: Arc<AtomicBool>,
    engine: Option<JoinHandle<()>>,
}

impl Rig {
    fn new(text: &str) -> Rig {
        let (c, _) = common::controller();
        let ctl = Arc::new(Mutex::new(c));
        config_file::apply_text(&mut lock(&ctl), text, &NumericOnly).unwrap_or_else(|e| panic!("{e:?}"));
        let stop = Arc::new(AtomicBool::new(false));
        let engine = Some(start_health(&ctl, Arc::clone(&stop)).unwrap());
        Rig { ctl, stop, engine }
    }

    /// (last octet of the server, weight) of every server in the pool, sorted.
    fn pool(&self) -> Vec<(u8, u32)> {
        let c = lock(&self.ctl);
        let mut v: Vec<(u8, u32)> = c
            .config()
            .service(&KEY)
            .map(|s| s.servers.iter().map(|x| (x.addr.octets()[3], x.weight)).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    fn report(&self) -> control::health::report::ChecksReport {
        lock(&self.ctl).checks(None).unwrap()
    }

    /// The first checker's last reason on server `.h`.
    fn reason(&self, h: u8) -> String {
        let r = self.report();
        r.services[0]
            .servers
            .iter()
            .find(|s| s.addr.octets()[3] == h)
            .and_then(|s| s.checks[0].runtime.clone())
            .map(|rt| rt.reason)
            .unwrap_or_default()
    }

    /// Waits (at most `limit`) for `cond`; returns how long it took.
    fn wait(&self, limit: Duration, what: &str, cond: impl Fn(&Rig) -> bool) -> Duration {
        let t0 = Instant::now();
        while !cond(self) {
            assert!(
                t0.elapsed() < limit,
                "{what}: not within {limit:?}; pool {:?}\n{}",
                self.pool(),
                control::health::report::format(&self.report())
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        t0.elapsed()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.engine.take() {
            let _ = h.join();
        }
    }
}

/// A TCP server on 127.0.0.x that accepts and closes, until dropped.
struct TcpServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    fn start(ip: Ipv4Addr, port: u16) -> TcpServer {
        let l = TcpListener::bind((ip, port)).unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => drop(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        TcpServer { port, stop, thread: Some(thread) }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An HTTP/1.0 server answering every request with the current status and body.
struct HttpServer {
    port: u16,
    answer: Arc<Mutex<(u16, Vec<u8>)>>,
    requests: Arc<AtomicU64>,
    _tcp: TcpServer,
}

impl HttpServer {
    fn start(ip: Ipv4Addr) -> HttpServer {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let answer = Arc::new(Mutex::new((200u16, b"hello".to_vec())));
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, s) = (Arc::clone(&answer), Arc::clone(&requests), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                r.fetch_add(1, Ordering::Relaxed);
                let (status, body) = a.lock().unwrap().clone();
                let _ = write!(c, "HTTP/1.0 {status} X\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = c.write_all(&body);
            }
        });
        HttpServer {
            port,
            answer,
            requests,
            _tcp: TcpServer { port, stop, thread: Some(thread) },
        }
    }

    fn set(&self, status: u16, body: &[u8]) {
        *self.answer.lock().unwrap() = (status, body.to_vec());
    }
}

fn ip(h: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, h)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("health-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn tcp_check_leaves_rotation_within_keepalived_bounds_and_comes_back_within_one_delay_loop() {
    let srv = TcpServer::start(ip(11), 0);
    let port = srv.port;
    let other = TcpServer::start(ip(12), 0);
    let rig = Rig::new(&format!(
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 127.0.0.11 -w 3\n-a -t 10.0.0.1:80 -r 127.0.0.12\n\
         check add -t 10.0.0.1:80 -r 127.0.0.11 tcp --connect-port {port} --delay-loop 0.4 --retry 1 --delay-before-retry 0.2 --connect-timeout 0.5 --warmup 0\n\
         check add -t 10.0.0.1:80 -r 127.0.0.12 tcp --connect-port {} --delay-loop 0.4 --warmup 0\n",
        other.port
    ));
    rig.wait(Duration::from_secs(3), "first probes", |r| r.report().counters.probes >= 2);
    assert_eq!(rig.pool(), vec![(11, 3), (12, 1)]);
    drop(srv);
    // delay_loop x (1 + retry) + connect_timeout.
    let bound = Duration::from_millis(400 * 2 + 500);
    let took = rig.wait(bound + Duration::from_millis(300), "removal", |r| r.pool() == vec![(12, 1)]);
    eprintln!("removed {took:?} after the server stopped (bound {bound:?})");
    assert!(took <= bound, "{took:?} > {bound:?}");
    assert!(rig.reason(11).contains("connection refused"), "{}", rig.reason(11));
    let r = rig.report();
    let s11 = r.services[0].servers.iter().find(|s| s.addr == ip(11)).unwrap();
    assert!(!s11.alive && s11.weight.is_none() && s11.configured_weight == 3);
    assert!(s11.checks[0].runtime.as_ref().unwrap().consecutive_failures >= 2, "1 + retry failures");
    let srv = TcpServer::start(ip(11), port);
    let took = rig.wait(Duration::from_millis(400 + 300), "return", |r| r.pool() == vec![(11, 3), (12, 1)]);
    eprintln!("back {took:?} after the server restarted (delay_loop 400 ms)");
    let c = rig.report().counters;
    assert_eq!((c.servers_down, c.servers_up, c.checks_down, c.checks_up), (1, 1, 1, 1));
    drop(srv);
}

#[test]
fn http_get_fails_on_status_500_and_on_a_wrong_digest() {
    let web = HttpServer::start(ip(21));
    let md5_hello = "5d41402abc4b2a76b9719d911017c592";
    let rig = Rig::new(&format!(
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 127.0.0.21\n\
         check add -t 10.0.0.1:80 -r 127.0.0.21 http --connect-port {} --url /health --digest {md5_hello} --delay-loop 0.15 --delay-before-retry 0.1 --retry 0 --warmup 0 --connect-timeout 1\n",
        web.port
    ));
    rig.wait(Duration::from_secs(3), "first request", |_| web.requests.load(Ordering::Relaxed) >= 1);
    assert_eq!(rig.pool(), vec![(21, 1)]);
    assert!(rig.reason(21).contains("HTTP status 200, MD5 digest"), "{}", rig.reason(21));
    web.set(200, b"changed");
    rig.wait(Duration::from_secs(2), "digest failure", |r| r.pool().is_empty());
    assert!(rig.reason(21).contains("MD5 digest mismatch"), "{}", rig.reason(21));
    web.set(200, b"hello");
    rig.wait(Duration::from_secs(2), "recovery", |r| r.pool() == vec![(21, 1)]);
    web.set(500, b"hello");
    rig.wait(Duration::from_secs(2), "status failure", |r| r.pool().is_empty());
    assert_eq!(rig.reason(21), "/health: HTTP status 500");
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    Command::new("chmod").arg("755").arg(&p).status().unwrap();
    p.display().to_string()
}

#[test]
fn misc_check_exit_codes_dynamic_weights_and_timeout_kill() {
    let dir = tmpdir("misc");
    let state = dir.join("status");
    std::fs::write(&state, "5").unwrap();
    let check = script(&dir, "check.sh", &format!("exit $(cat {})", state.display()));
    let slow = script(&dir, "slow.sh", &format!("echo $$ > {}/slow.pid; exec sleep 30", dir.display()));
    let started = Instant::now();
    let rig = Rig::new(&format!(
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 127.0.0.31 -w 7\n-a -t 10.0.0.1:80 -r 127.0.0.32\n\
         check add -t 10.0.0.1:80 -r 127.0.0.31 misc --misc-path {check} --misc-dynamic --delay-loop 0.15 --warmup 0\n\
         check add -t 10.0.0.1:80 -r 127.0.0.32 misc --misc-path '{slow} --ignored-arg' --misc-timeout 1 --delay-loop 5 --warmup 0\n"
    ));
    rig.wait(Duration::from_secs(2), "exit 5: weight 3", |r| r.pool().contains(&(31, 3)));
    std::fs::write(&state, "1").unwrap();
    rig.wait(Duration::from_secs(2), "exit 1: removed", |r| !r.pool().iter().any(|p| p.0 == 31));
    assert!(rig.reason(31).contains("exit status 1"), "{}", rig.reason(31));
    std::fs::write(&state, "0").unwrap();
    rig.wait(Duration::from_secs(2), "exit 0: configured weight", |r| r.pool().contains(&(31, 7)));
    std::fs::write(&state, "12").unwrap();
    rig.wait(Duration::from_secs(2), "exit 12: weight 10", |r| r.pool().contains(&(31, 10)));
    // The slow script is killed after misc_timeout (SIGTERM, then SIGKILL) and fails.
    rig.wait(Duration::from_secs(4), "timeout", |r| !r.pool().iter().any(|p| p.0 == 32));
    assert!(started.elapsed() >= Duration::from_secs(1), "killed after misc_timeout, not before");
    assert!(rig.reason(32).starts_with("timed out after 1s"), "{}", rig.reason(32));
    let pid: i32 = std::fs::read_to_string(dir.join("slow.pid")).unwrap().trim().parse().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z"),
        "the timed-out script's process is gone"
    );
    drop(rig);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quorum_loss_switches_to_the_sorry_server_runs_scripts_and_switches_back() {
    let dir = tmpdir("quorum");
    let a = TcpServer::start(ip(41), 0);
    let b = TcpServer::start(ip(42), 0);
    let (pa, pb) = (a.port, b.port);
    let log = dir.join("events");
    let note = script(&dir, "note.sh", &format!("echo \"$1\" >> {}", log.display()));
    let rig = Rig::new(&format!(
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 127.0.0.41\n-a -t 10.0.0.1:80 -r 127.0.0.42\n\
         check service -t 10.0.0.1:80 --quorum 2 --sorry-server 127.0.0.1 --quorum-down '{note} quorum-down' --quorum-up '{note} quorum-up'\n\
         check add -t 10.0.0.1:80 -r 127.0.0.41 tcp --connect-port {pa} --delay-loop 0.15 --retry 0 --warmup 0 --notify-down '{note} down-41' --notify-up '{note} up-41'\n\
         check add -t 10.0.0.1:80 -r 127.0.0.42 tcp --connect-port {pb} --delay-loop 0.15 --retry 0 --warmup 0 --inhibit-on-failure\n"
    ));
    rig.wait(Duration::from_secs(2), "probes", |r| r.report().counters.probes >= 2);
    assert_eq!(rig.pool(), vec![(41, 1), (42, 1)]);
    drop(a);
    // Only the sorry server serves; the inhibited server stays listed at weight 0.
    rig.wait(Duration::from_secs(2), "sorry server", |r| r.pool() == vec![(1, 1), (42, 0)]);
    let r = rig.report();
    assert!(!r.services[0].quorum_up && r.services[0].sorry_active);
    let a = TcpServer::start(ip(41), pa);
    rig.wait(Duration::from_secs(2), "quorum back", |r| r.pool() == vec![(41, 1), (42, 1)]);
    rig.wait(Duration::from_secs(2), "scripts", |_| {
        std::fs::read_to_string(&log).unwrap_or_default().lines().count() >= 4
    });
    let mut events: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    events.sort();
    assert_eq!(events, vec!["down-41", "quorum-down", "quorum-up", "up-41"]);
    // The other server fails: the quorum (2) is lost again; the inhibited one stays listed
    // at weight 0 next to the sorry server.
    drop(b);
    rig.wait(Duration::from_secs(2), "inhibited", |r| r.pool() == vec![(1, 1), (42, 0)]);
    drop(rig);
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

/// openssl, as the seeds do it: a CA, a server certificate it signed, one it signed that
/// expired in 2020, and a second CA.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (setup-host.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for ca in ["ca", "other-ca"] {
        let (key, pem, subj) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN={ca}"));
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &pem, "-days", "30", "-subj", &subj]);
        run(&a);
    }
    std::fs::write(dir.join("ext.cnf"), "basicConstraints=CA:FALSE\nsubjectAltName=DNS:www.example,IP:127.0.0.51\n").unwrap();
    for s in ["srv", "old"] {
        let mut a = vec!["req"];
        a.extend(ec);
        let (key, csr) = (format!("{s}.key"), format!("{s}.csr"));
        a.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=www.example"]);
        run(&a);
    }
    run(&["x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "30", "-extfile", "ext.cnf", "-out", "srv.pem"]);
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "1000\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\n\
         copy_extensions=none\nx509_extensions=e\n[p]\ncommonName=supplied\n[e]\nbasicConstraints=CA:FALSE\nsubjectAltName=DNS:www.example,IP:127.0.0.51\n",
    )
    .unwrap();
    run(&["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", "old.csr", "-out", "old.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext"]);
}

struct SServer(Child);

impl SServer {
    fn start(dir: &Path, cert: &str, port: u16) -> SServer {
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.51:{port}"), "-cert", &format!("{cert}.pem"), "-key", &format!("{cert}.key")])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while TcpStream::connect(SocketAddr::from((ip(51), port))).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(5), "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        SServer(child)
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ssl_get_with_a_ca_fails_on_an_expired_or_foreign_certificate() {
    let dir = tmpdir("tls");
    certificates(&dir);
    let port = TcpListener::bind((ip(51), 0)).unwrap().local_addr().unwrap().port();
    let mut tls = Some(SServer::start(&dir, "srv", port));
    let d = dir.display();
    let rig = Rig::new(&format!(
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 127.0.0.51\n-a -t 10.0.0.1:80 -r 127.0.0.52\n-a -t 10.0.0.1:80 -r 127.0.0.53\n\
         check add -t 10.0.0.1:80 -r 127.0.0.51 https --connect-port {port} --url / --ca {d}/ca.pem --sni-name www.example --delay-loop 0.2 --retry 0 --warmup 0 --connect-timeout 2\n\
         check add -t 10.0.0.1:80 -r 127.0.0.52 https --connect-ip 127.0.0.51 --connect-port {port} --url / --ca {d}/other-ca.pem --delay-loop 0.2 --retry 0 --warmup 0 --connect-timeout 2\n\
         check add -t 10.0.0.1:80 -r 127.0.0.53 https --connect-ip 127.0.0.51 --connect-port {port} --url / --delay-loop 0.2 --retry 0 --warmup 0 --connect-timeout 2\n"
    ));
    rig.wait(Duration::from_secs(4), "verdicts", |r| r.pool() == vec![(51, 1), (53, 1)]);
    assert!(rig.reason(51).contains("HTTP status 200"), "{}", rig.reason(51));
    assert!(rig.reason(52).contains("TLS handshake failed"), "wrong CA: {}", rig.reason(52));
    // The same CA, but an expired certificate: fails; without a CA nothing is verified.
    tls.take();
    let _old = SServer::start(&dir, "old", port);
    rig.wait(Duration::from_secs(4), "expired", |r| r.pool() == vec![(53, 1)]);
    assert!(rig.reason(51).to_lowercase().contains("expired"), "{}", rig.reason(51));
    drop(rig);
    let _ = std::fs::remove_dir_all(&dir);
}
